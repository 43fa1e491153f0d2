/*
 * main.c - the mergescope dispatcher: finds the command in commands[] and
 * hands it argv from the command name on.
 */
#include <stdio.h>
#include <string.h>

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
    fprintf(fp, "\n'mergescope COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
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
    for (size_t i = 0; i < MS_ARRAY_SIZE(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "mergescope: '%s' is not a command\n", argv[1]);
    usage(stderr);
    return MS_EXIT_USAGE;
}
