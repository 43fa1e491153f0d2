/*
 * main.c - the mergescope dispatcher: finds the command in commands[] and
 * hands it argv from the command name on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

struct cmd_struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct cmd_struct commands[] = {
    {"inspect", cmd_inspect, "format, architecture, tensors, types and metadata of a model"},
    {"recipe", cmd_recipe, "check a mergekit recipe or explain what every layer gets"},
    {"audit", cmd_audit, "donors vs base under a recipe: shares, conflicts, fingerprints"},
    {"compare", cmd_compare, "layer-wise distances between checkpoints"},
    {"attribute", cmd_attribute, "least-squares donor coefficients of a finished merge"},
    {"provenance", cmd_provenance, "which donor layer each merged layer came from"},
    {"quant", cmd_quant, "per-tensor quantization error of a GGUF against its source"},
    {"report", cmd_report, "Markdown/HTML report, plots and model card from JSON results"},
};

static void usage(FILE *fp)
{
    fprintf(fp, "usage: mergescope COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < MS_ARRAY_SIZE(commands); i++)
        fprintf(fp, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\n'mergescope COMMAND --help' shows a command's options.\n"
                "An output never replaces an input unless --in-place is given"
                " (the input is kept as INPUT.bak).\n");
}

/*
 * Our workers are the parallelism; OpenBLAS threads on top of them only
 * oversubscribe the cores, and under an address-space limit OpenBLAS's
 * start-up threads can spin forever retrying their buffers. The thread
 * count is read when the library loads, before main, so the first run sets
 * it and starts again.
 */
static void single_threaded_blas(char **argv)
{
    if (getenv("OPENBLAS_NUM_THREADS"))
        return;
    if (setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* no /proc: carry on with OpenBLAS's default */
}

int main(int argc, char **argv)
{
    single_threaded_blas(argv);
    if (argc < 2) {
        usage(stderr);
        return MS_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return MS_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("mergescope %s\n", MS_VERSION);
        return MS_EXIT_OK;
    }
    bool in_place = false;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--in-place"))
            in_place = true;
        else
            argv[n++] = argv[i];
    }
    argc = n;
    argv[argc] = NULL;
    for (size_t i = 0; i < MS_ARRAY_SIZE(commands); i++) {
        if (strcmp(argv[1], commands[i].name))
            continue;
        int rc = ms_guard_outputs(argc - 1, argv + 1, in_place);
        return rc ? rc : commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "mergescope: '%s' is not a command\n", argv[1]);
    usage(stderr);
    return MS_EXIT_USAGE;
}
