/*
 * cmd_analyze_util.c - shared command-side helpers of compare, attribute
 * and provenance (see cmd_analyze_util.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_analyze_util.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

int an_open_models(const ms_common *c, const char *const *names, size_t n,
                   const char *base_dir, ms_model ***out)
{
    ms_resolve_opts ro;
    ms_error err;
    ms_common_resolve_opts(c, &ro);
    ro.base_dir = base_dir;
    *out = NULL;
    ms_model **m = ms_zalloc_array(n ? n : 1, sizeof(*m));
    if (!m) {
        fprintf(stderr, "mergescope: out of memory\n");
        return MS_EXIT_FAIL;
    }
    for (size_t i = 0; i < n; i++) {
        ms_error_clear(&err);
        if (ms_model_open_name(names[i], &ro, &m[i], &err)) {
            an_close_models(m, i);
            return ms_report_error(&err);
        }
    }
    *out = m;
    return MS_EXIT_OK;
}

void an_close_models(ms_model **m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++)
        ms_model_close(m[i]);
    free(m);
}

int an_stream_opts(const ms_common *c, ms_progress *bar, ms_stream_opts *o)
{
    memset(o, 0, sizeof(*o));
    int64_t mem = ms_common_max_memory(c);
    if (mem < 0)
        return ms_die_usage("bad --max-memory '%s' (e.g. 512M)", c->max_memory);
    o->threads = ms_common_threads(c);
    o->max_memory = (uint64_t)mem;
    o->progress = ms_progress_update;
    o->progress_ctx = bar;
    return MS_EXIT_OK;
}

void an_json_num(cJSON *obj, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_AddNullToObject(obj, key);
}

const char *an_label(const char *name)
{
    const char *b = ms_path_basename(name);
    return (b && *b) ? b : name;
}

const char *an_fmt(char *buf, size_t cap, const char *fmt, double v)
{
    if (!isfinite(v))
        snprintf(buf, cap, "%s", "-");
    else
        snprintf(buf, cap, fmt, v);
    /* "-0.000000" (a tiny negative rounded away) reads as a sign error */
    if (buf[0] == '-' && buf[1] && strspn(buf + 1, "0.") == strlen(buf + 1))
        memmove(buf, buf + 1, strlen(buf));
    return buf;
}
