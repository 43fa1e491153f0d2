/*
 * error.c - recording and rendering the first error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mergescope/error.h"
#include "mergescope/banned.h"

void ms_error_clear(ms_error *err)
{
    if (!err)
        return;
    memset(err, 0, sizeof(*err));
    err->offset = -1;
}

static void set_path(ms_error *err, const char *path)
{
    if (path)
        snprintf(err->path, sizeof(err->path), "%s", path);
    else
        err->path[0] = '\0';
}

ms_status ms_error_set(ms_error *err, ms_status code, const char *path,
                       int64_t offset, const char *fmt, ...)
{
    va_list ap;
    if (!err || err->code != MS_OK)
        return code;
    err->code = code;
    set_path(err, path);
    err->offset = offset;
    err->line = err->col = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

ms_status ms_error_set_at(ms_error *err, ms_status code, const char *path,
                          int line, int col, const char *fmt, ...)
{
    va_list ap;
    if (!err || err->code != MS_OK)
        return code;
    err->code = code;
    set_path(err, path);
    err->offset = -1;
    err->line = line;
    err->col = col;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

void ms_error_format(const ms_error *err, char *buf, size_t cap)
{
    const char *msg = err->msg[0] ? err->msg : ms_status_name(err->code);
    if (!cap)
        return;
    if (!err->path[0])
        snprintf(buf, cap, "%s", msg);
    else if (err->line > 0 && err->col > 0)
        snprintf(buf, cap, "%s:%d:%d: %s", err->path, err->line, err->col, msg);
    else if (err->line > 0)
        snprintf(buf, cap, "%s:%d: %s", err->path, err->line, msg);
    else if (err->offset >= 0)
        snprintf(buf, cap, "%s: offset %lld: %s", err->path, (long long)err->offset, msg);
    else
        snprintf(buf, cap, "%s: %s", err->path, msg);
}

int ms_error_exit_code(const ms_error *err)
{
    switch (err->code) {
    case MS_OK:
        return 0;
    case MS_ERR_USAGE:
    case MS_ERR_FORMAT:
    case MS_ERR_UNSUPPORTED:
    case MS_ERR_NOTFOUND:
    case MS_ERR_MISMATCH:
        return 2;
    default:
        return 1;
    }
}

const char *ms_status_name(ms_status code)
{
    switch (code) {
    case MS_OK: return "ok";
    case MS_ERR_USAGE: return "bad usage";
    case MS_ERR_FORMAT: return "malformed input";
    case MS_ERR_UNSUPPORTED: return "unsupported input";
    case MS_ERR_NOTFOUND: return "not found";
    case MS_ERR_MISMATCH: return "inputs do not match";
    case MS_ERR_IO: return "input/output error";
    case MS_ERR_NOMEM: return "out of memory";
    case MS_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}
