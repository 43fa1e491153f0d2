/*
 * options.c - declared options for every command: parse, check, print usage.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static int fail(int *exit_code, const ms_option *opts, const char *const *usage,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail(int *exit_code, const ms_option *opts, const char *const *usage,
                const char *fmt, ...)
{
    va_list ap;
    fputs("mergescope: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ms_usage(stderr, opts, usage);
    *exit_code = MS_EXIT_USAGE;
    return 1;
}

static const ms_option *find_long(const ms_option *opts, const char *name, size_t len)
{
    for (; opts->type != MS_OPT_END; opts++)
        if (opts->long_name && strlen(opts->long_name) == len &&
            !strncmp(opts->long_name, name, len))
            return opts;
    return NULL;
}

static const ms_option *find_short(const ms_option *opts, char c)
{
    for (; opts->type != MS_OPT_END; opts++)
        if (opts->type != MS_OPT_GROUP && opts->short_name == c)
            return opts;
    return NULL;
}

static bool list_push(ms_strlist *l, const char *s)
{
    const char **items = ms_realloc_array(l->items, l->n + 1, sizeof(*items));
    if (!items)
        return false;
    items[l->n++] = s;
    l->items = items;
    return true;
}

static const char *opt_label(const ms_option *o, char *buf, size_t cap)
{
    if (o->long_name)
        snprintf(buf, cap, "--%s", o->long_name);
    else
        snprintf(buf, cap, "-%c", o->short_name);
    return buf;
}

/* Store arg into the option's value; returns 0 or a usage failure. */
static int set_value(const ms_option *o, const char *arg, int *exit_code,
                     const ms_option *opts, const char *const *usage)
{
    char label[64];
    char *end;
    switch (o->type) {
    case MS_OPT_INT: {
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno || end == arg || *end)
            return fail(exit_code, opts, usage, "%s expects a whole number, got '%s'",
                        opt_label(o, label, sizeof(label)), arg);
        if (o->min < o->max && (v < o->min || v > o->max))
            return fail(exit_code, opts, usage, "%s must be between %ld and %ld, got %ld",
                        opt_label(o, label, sizeof(label)), o->min, o->max, v);
        *(long *)o->value = v;
        return 0;
    }
    case MS_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(arg, &end);
        if (errno || end == arg || *end || v != v)
            return fail(exit_code, opts, usage, "%s expects a number, got '%s'",
                        opt_label(o, label, sizeof(label)), arg);
        *(double *)o->value = v;
        return 0;
    }
    case MS_OPT_STRING:
        *(const char **)o->value = arg;
        return 0;
    case MS_OPT_LIST:
        if (!list_push(o->value, arg))
            return fail(exit_code, opts, usage, "out of memory");
        return 0;
    default:
        return 0;
    }
}

int ms_parse_options(int argc, char **argv, const ms_option *opts,
                     const char *const *usage, ms_strlist *pos, int *exit_code)
{
    bool only_pos = false;
    *exit_code = MS_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const ms_option *o = NULL;
        const char *arg = NULL;
        if (only_pos || a[0] != '-' || !a[1]) {
            if (!list_push(pos, a))
                return fail(exit_code, opts, usage, "out of memory");
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ms_usage(stdout, opts, usage);
            return 1;
        }
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
            o = find_long(opts, a + 2, len);
            if (!o)
                return fail(exit_code, opts, usage, "unknown option '%.*s'", (int)len + 2, a);
            if (eq)
                arg = eq + 1;
        } else {
            o = find_short(opts, a[1]);
            if (!o)
                return fail(exit_code, opts, usage, "unknown option '-%c'", a[1]);
            if (a[2])
                arg = a + 2;
        }
        if (o->type == MS_OPT_BOOL) {
            if (arg)
                return fail(exit_code, opts, usage, "option '%s' takes no value", a);
            *(bool *)o->value = true;
            continue;
        }
        if (!arg) {
            if (i + 1 >= argc)
                return fail(exit_code, opts, usage, "option '%s' needs a value", a);
            arg = argv[++i];
        }
        if (set_value(o, arg, exit_code, opts, usage))
            return 1;
    }
    return 0;
}

void ms_usage(FILE *fp, const ms_option *opts, const char *const *usage)
{
    /* Lines that start with a space continue the one before (a description);
     * others are alternative forms of the command. */
    for (size_t i = 0; usage && usage[i]; i++) {
        const char *lead = !i ? "usage: " : usage[i][0] == ' ' ? "      " : "   or: ";
        fprintf(fp, "%s%s\n", lead, usage[i]);
    }
    for (; opts && opts->type != MS_OPT_END; opts++) {
        char head[96];
        if (opts->type == MS_OPT_GROUP) {
            fprintf(fp, "\n%s:\n", opts->help);
            continue;
        }
        int n = 0;
        if (opts->short_name && opts->long_name)
            n = snprintf(head, sizeof(head), "-%c, --%s", opts->short_name, opts->long_name);
        else if (opts->long_name)
            n = snprintf(head, sizeof(head), "    --%s", opts->long_name);
        else
            n = snprintf(head, sizeof(head), "-%c", opts->short_name);
        if (opts->argh && n > 0 && (size_t)n < sizeof(head))
            snprintf(head + n, sizeof(head) - (size_t)n, " %s", opts->argh);
        fprintf(fp, "    %-28s %s\n", head, opts->help ? opts->help : "");
    }
}
