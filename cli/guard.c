/*
 * guard.c - outputs never replace inputs. Before a command runs, every
 * output path given on the command line is checked against every input:
 * the same file (by device and inode), or a model file inside an input
 * model directory, is refused unless --in-place was given, in which case
 * the input is first copied to INPUT.bak.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const output_opts[] = {
    "--json", "--suggest", "--emit-recipe", "--plan-file",
};

/* The output path named by argv[i] (and perhaps argv[i + 1]), or NULL. */
static const char *output_at(int argc, char **argv, int i, int *used)
{
    *used = 0;
    for (size_t k = 0; k < MS_ARRAY_SIZE(output_opts); k++) {
        size_t n = strlen(output_opts[k]);
        if (strncmp(argv[i], output_opts[k], n))
            continue;
        if (argv[i][n] == '=')
            return argv[i] + n + 1;
        if (!argv[i][n] && i + 1 < argc) {
            *used = 1;
            return argv[i + 1];
        }
    }
    return NULL;
}

/* The input path an argument names: itself, or PATH in --model NAME=PATH. */
static const char *input_path(const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (arg[0] == '-' && eq)
        return eq + 1;
    return arg;
}

static bool is_model_file(const char *name)
{
    return ms_str_endswith(name, ".safetensors") || ms_str_endswith(name, ".gguf")
           || !strcmp(name, "config.json") || ms_str_endswith(name, ".index.json");
}

/* True when out (an existing file) is the input arg or a model file in it. */
static bool replaces(const struct stat *o, const char *out, const char *arg)
{
    struct stat st;
    if (stat(arg, &st) != 0)
        return false;
    if (S_ISREG(st.st_mode))
        return st.st_dev == o->st_dev && st.st_ino == o->st_ino;
    if (!S_ISDIR(st.st_mode) || !is_model_file(ms_path_basename(out)))
        return false;
    char *dir = ms_path_dirname(out);
    struct stat d;
    bool inside = dir && stat(dir, &d) == 0 && d.st_dev == st.st_dev && d.st_ino == st.st_ino;
    free(dir);
    return inside;
}

static int backup(const char *path)
{
    ms_error err;
    char *text = NULL;
    size_t len = 0;
    ms_error_clear(&err);
    char *bak = NULL;
    ms_sb sb = MS_SB_INIT;
    if (ms_sb_addf(&sb, "%s.bak", path))
        bak = ms_sb_detach(&sb);
    ms_status st = bak ? ms_read_file(path, UINT64_C(1) << 30, &text, &len, &err)
                       : ms_error_set(&err, MS_ERR_NOMEM, path, -1, "out of memory");
    if (!st)
        st = ms_write_file_atomic(bak, text, len, &err);
    free(text);
    free(bak);
    ms_sb_free(&sb);
    return st ? ms_report_error(&err) : 0;
}

int ms_guard_outputs(int argc, char **argv, bool in_place)
{
    for (int i = 1; i < argc; i++) {
        int used;
        const char *out = output_at(argc, argv, i, &used);
        struct stat o;
        if (!out || !strcmp(out, "-") || stat(out, &o) != 0 || !S_ISREG(o.st_mode))
            continue;
        for (int j = 1; j < argc; j++) {
            if (j >= i && j <= i + used)
                continue;
            if (!replaces(&o, out, input_path(argv[j])))
                continue;
            if (!in_place)
                return ms_die_usage("%s: refusing to replace the input '%s' with an output "
                                    "(give another path, or --in-place to keep a .bak copy)",
                                    out, argv[j]);
            int rc = backup(out);
            if (rc)
                return rc;
            break;
        }
    }
    return 0;
}
