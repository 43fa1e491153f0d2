/*
 * cli.h - what every command shares: declared options, the common options
 * (--json, --quiet, --threads, --model, --models-dir), error reporting and
 * the progress bar. Only cli/ and the cmd_*.c files include this.
 */
#ifndef MERGESCOPE_CLI_H
#define MERGESCOPE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/error.h"
#include "mergescope/model.h"

/* Exit statuses, per DESIGN.md. */
#define MS_EXIT_OK 0
#define MS_EXIT_FAIL 1
#define MS_EXIT_USAGE 2

typedef enum ms_opt_type {
    MS_OPT_END = 0,
    MS_OPT_BOOL,     /* bool *, set to true */
    MS_OPT_INT,      /* long *, decimal, range-checked by min/max */
    MS_OPT_DOUBLE,   /* double * */
    MS_OPT_STRING,   /* const char ** (points into argv) */
    MS_OPT_LIST,     /* ms_strlist *: may repeat; each use appends */
    MS_OPT_GROUP     /* a heading in the help text; help is the heading */
} ms_opt_type;

typedef struct ms_strlist {
    const char **items;
    size_t n;
} ms_strlist;

typedef struct ms_option {
    ms_opt_type type;
    char short_name;        /* 0 if none */
    const char *long_name;  /* without "--" */
    void *value;
    const char *argh;       /* argument placeholder in help, e.g. "FILE" */
    const char *help;
    long min, max;          /* for MS_OPT_INT when min < max */
} ms_option;

#define MS_OPT_BOOL_(s, l, v, h) {MS_OPT_BOOL, s, l, v, NULL, h, 0, 0}
#define MS_OPT_INT_(s, l, v, a, h, lo, hi) {MS_OPT_INT, s, l, v, a, h, lo, hi}
#define MS_OPT_DOUBLE_(s, l, v, a, h) {MS_OPT_DOUBLE, s, l, v, a, h, 0, 0}
#define MS_OPT_STRING_(s, l, v, a, h) {MS_OPT_STRING, s, l, v, a, h, 0, 0}
#define MS_OPT_LIST_(s, l, v, a, h) {MS_OPT_LIST, s, l, v, a, h, 0, 0}
#define MS_OPT_GROUP_(h) {MS_OPT_GROUP, 0, NULL, NULL, NULL, h, 0, 0}
#define MS_OPT_END_ {MS_OPT_END, 0, NULL, NULL, NULL, NULL, 0, 0}

/* Options every command takes. */
typedef struct ms_common {
    const char *json;        /* --json FILE, "-" for stdout */
    bool quiet;              /* --quiet */
    long threads;            /* --threads N, 0 = all cores */
    ms_strlist model_map;    /* --model NAME=PATH */
    const char *models_dir;  /* --models-dir DIR */
    const char *max_memory;  /* --max-memory SIZE */
} ms_common;

#define MS_COMMON_OPTIONS(c) \
    MS_OPT_GROUP_("common options"), \
    MS_OPT_STRING_(0, "json", &(c)->json, "FILE", "write the full result as JSON ('-' for stdout)"), \
    MS_OPT_BOOL_('q', "quiet", &(c)->quiet, "no progress bar"), \
    MS_OPT_INT_('j', "threads", &(c)->threads, "N", "worker threads (default: all cores)", 0, 1024), \
    MS_OPT_LIST_(0, "model", &(c)->model_map, "NAME=PATH", "where the model NAME is on disk (repeatable)"), \
    MS_OPT_STRING_(0, "models-dir", &(c)->models_dir, "DIR", "look for models by name under DIR"), \
    MS_OPT_STRING_(0, "max-memory", &(c)->max_memory, "SIZE", "memory budget for buffers, e.g. 512M")

/*
 * Parse argv[1..argc) (argv[0] is the command name) against opts. Options
 * may come anywhere; "--" ends them. Positional arguments are collected in
 * *pos (caller frees the array only). -h/--help prints the usage to stdout
 * and returns 1 with *exit_code 0; a bad option prints "mergescope: ..."
 * and the usage to stderr and returns 1 with *exit_code 2. Returns 0 when
 * the command should run.
 */
int ms_parse_options(int argc, char **argv, const ms_option *opts,
                     const char *const *usage, ms_strlist *pos, int *exit_code);
void ms_usage(FILE *fp, const ms_option *opts, const char *const *usage);

/* Print "mergescope: <formatted error>" and return its exit status. */
int ms_report_error(const ms_error *err);
/* Print "mergescope: <fmt>" for a usage problem and return 2. */
int ms_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "warning: ..." on stderr. */
void ms_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The common options made into the library's resolve options. */
void ms_common_resolve_opts(const ms_common *c, ms_resolve_opts *ro);
/* threads to use: --threads or the core count. */
int ms_common_threads(const ms_common *c);
/* Bytes of --max-memory (0 when unset); -1 on a malformed value. */
int64_t ms_common_max_memory(const ms_common *c);

/* A progress bar on stderr, only when stderr is a terminal and not quiet. */
typedef struct ms_progress {
    bool enabled;
    const char *label;
    double start, last;
    int last_pct;
} ms_progress;
void ms_progress_init(ms_progress *p, const char *label, bool quiet);
void ms_progress_update(void *p, uint64_t done, uint64_t total); /* ms_progress_fn */
void ms_progress_finish(ms_progress *p);

/* Write a cJSON result to c->json (atomically); no-op when unset. Frees
 * nothing. Returns an exit status (0 ok). */
struct cJSON;
int ms_write_json_result(const ms_common *c, struct cJSON *root);
/* Add "schema" and "tool_version" to a fresh result object. */
struct cJSON *ms_json_result_new(const char *command);

/*
 * Refuse to run when an output option (--json, --suggest, --emit-recipe,
 * --plan-file) names an existing input file or a model file inside an
 * input directory; with in_place, copy that input to INPUT.bak instead.
 * Returns 0 to go on, else the exit status (the message is printed).
 */
int ms_guard_outputs(int argc, char **argv, bool in_place);

/* Commands, each in its own cmd_*.c. */
int cmd_inspect(int argc, char **argv);
int cmd_recipe(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_attribute(int argc, char **argv);
int cmd_provenance(int argc, char **argv);
int cmd_quant(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
