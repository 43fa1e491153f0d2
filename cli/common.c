/*
 * common.c - error messages, warnings, the progress bar and JSON results,
 * shared by every command.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* One line on stderr: text from files may hold newlines or escape
 * sequences, so everything after the prefix is escaped. */
static void print_line(const char *prefix, const char *text)
{
    ms_sb sb = MS_SB_INIT;
    if (ms_sb_add(&sb, prefix) && ms_sb_add_escaped(&sb, text, strlen(text)))
        fprintf(stderr, "%s\n", sb.buf);
    else
        fprintf(stderr, "%sout of memory\n", prefix);
    ms_sb_free(&sb);
}

static void print_linev(const char *prefix, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    print_line(prefix, buf);
}

int ms_report_error(const ms_error *err)
{
    char buf[MS_ERROR_PATH_MAX + MS_ERROR_MSG_MAX + 64];
    ms_error_format(err, buf, sizeof(buf));
    print_line("mergescope: ", buf);
    return ms_error_exit_code(err);
}

int ms_die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_linev("mergescope: ", fmt, ap);
    va_end(ap);
    return MS_EXIT_USAGE;
}

void ms_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_linev("warning: ", fmt, ap);
    va_end(ap);
}

void ms_common_resolve_opts(const ms_common *c, ms_resolve_opts *ro)
{
    memset(ro, 0, sizeof(*ro));
    ro->model_map = c->model_map.items;
    ro->n_model_map = c->model_map.n;
    ro->models_dir = c->models_dir;
}

int ms_common_threads(const ms_common *c)
{
    return c->threads > 0 ? (int)c->threads : ms_cpu_count();
}

int64_t ms_common_max_memory(const ms_common *c)
{
    char *end;
    if (!c->max_memory)
        return 0;
    double v = strtod(c->max_memory, &end);
    if (end == c->max_memory || !(v > 0))
        return -1;
    double mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1024.0; end++; break;
    case 'm': case 'M': mult = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mult > 9.0e18)
        return -1;
    return (int64_t)(v * mult);
}

void ms_progress_init(ms_progress *p, const char *label, bool quiet)
{
    memset(p, 0, sizeof(*p));
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->label = label;
    p->start = ms_now();
    p->last_pct = -1;
}

/* Called from worker threads: a torn line is cosmetic, so no lock. */
void ms_progress_update(void *ctx, uint64_t done, uint64_t total)
{
    ms_progress *p = ctx;
    if (!p || !p->enabled || !total)
        return;
    int pct = (int)(done * 100 / total);
    double now = ms_now();
    if (pct == p->last_pct && now - p->last < 0.25)
        return;
    p->last_pct = pct;
    p->last = now;
    int bar = pct * 30 / 100;
    double el = now - p->start;
    fprintf(stderr, "\r%s [%.*s%*s] %3d%% %.1fs", p->label ? p->label : "",
            bar, "##############################", 30 - bar, "", pct, el);
}

void ms_progress_finish(ms_progress *p)
{
    if (p->enabled && p->last_pct >= 0)
        fputs("\r\033[K", stderr);
}

cJSON *ms_json_result_new(const char *command)
{
    char schema[64];
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    snprintf(schema, sizeof(schema), "mergescope.%s/1", command);
    cJSON_AddStringToObject(root, "schema", schema);
    cJSON_AddStringToObject(root, "tool_version", MS_VERSION);
    return root;
}

int ms_write_json_result(const ms_common *c, cJSON *root)
{
    ms_error err;
    if (!c->json)
        return MS_EXIT_OK;
    char *text = cJSON_Print(root);
    if (!text) {
        fprintf(stderr, "mergescope: out of memory rendering JSON\n");
        return MS_EXIT_FAIL;
    }
    size_t len = strlen(text);
    ms_sb sb = MS_SB_INIT;
    bool ok = ms_sb_addn(&sb, text, len) && ms_sb_addc(&sb, '\n');
    cJSON_free(text);
    if (!ok) {
        ms_sb_free(&sb);
        fprintf(stderr, "mergescope: out of memory rendering JSON\n");
        return MS_EXIT_FAIL;
    }
    ms_error_clear(&err);
    ms_status st = ms_write_file_atomic(c->json, sb.buf, sb.len, &err);
    ms_sb_free(&sb);
    return st ? ms_report_error(&err) : MS_EXIT_OK;
}
