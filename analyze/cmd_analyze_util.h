/*
 * cmd_analyze_util.h - what the compare, attribute and provenance commands
 * share: opening the models named on the command line, stream options from
 * the common options, JSON numbers that may be undefined, short labels.
 */
#ifndef MERGESCOPE_CMD_ANALYZE_UTIL_H
#define MERGESCOPE_CMD_ANALYZE_UTIL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/model.h"
#include "mergescope/stream.h"

/*
 * Open n models by name (path or org/model, per the common options).
 * base_dir resolves relative paths (a recipe's directory) or NULL. On
 * failure prints the error, closes what was opened and returns the exit
 * status; on success *out (n models) is freed with an_close_models.
 */
int an_open_models(const ms_common *c, const char *const *names, size_t n,
                   const char *base_dir, ms_model ***out);
void an_close_models(ms_model **m, size_t n);

/* Stream options from --threads, --max-memory and the progress bar.
 * Returns an exit status (2 for a malformed --max-memory). */
int an_stream_opts(const ms_common *c, ms_progress *bar, ms_stream_opts *o);

/* obj[key] = v, or null when v is not finite (the caller adds a note). */
void an_json_num(cJSON *obj, const char *key, double v);
/* A short label for text output: the last path component of name. */
const char *an_label(const char *name);
/* "%.*f" or "-" for a non-finite value, into buf. */
const char *an_fmt(char *buf, size_t cap, const char *fmt, double v);

#endif
