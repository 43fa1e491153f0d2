/*
 * error.h - how the library reports failure.
 *
 * The library never prints and never exits. Every fallible function returns
 * an ms_status (MS_OK is 0) and, on failure, fills the caller's ms_error with
 * the first thing that went wrong: the file, where in it (byte offset, or
 * line and column for text), and a lowercase reason without a trailing full
 * stop. Only cli/ turns an ms_error into a message and an exit status.
 *
 * An ms_error is a plain value: no allocation, nothing to free. Functions
 * that fail leave the first error in place if one is already set, so a
 * deeper, more precise detail is never overwritten by a caller's summary.
 */
#ifndef MERGESCOPE_ERROR_H
#define MERGESCOPE_ERROR_H

#include <stdint.h>
#include <stddef.h>

typedef enum ms_status {
    MS_OK = 0,
    MS_ERR_USAGE,       /* bad arguments from the caller or the user (exit 2) */
    MS_ERR_FORMAT,      /* the input file is malformed (exit 2) */
    MS_ERR_UNSUPPORTED, /* well-formed but not something we handle (exit 2) */
    MS_ERR_NOTFOUND,    /* a file, model or tensor does not exist (exit 2) */
    MS_ERR_MISMATCH,    /* inputs disagree: shapes, vocab, architecture (exit 2) */
    MS_ERR_IO,          /* the system failed us: read, write, mmap (exit 1) */
    MS_ERR_NOMEM,       /* allocation failed or a budget was exceeded (exit 1) */
    MS_ERR_INTERNAL     /* a bug in mergescope (exit 1) */
} ms_status;

#define MS_ERROR_PATH_MAX 1024
#define MS_ERROR_MSG_MAX 512

typedef struct ms_error {
    ms_status code;
    char path[MS_ERROR_PATH_MAX]; /* file the error is about, "" if none */
    int64_t offset;               /* byte offset in path, -1 if unknown */
    int line, col;                /* 1-based position in a text file, 0 if unknown */
    char msg[MS_ERROR_MSG_MAX];   /* the reason: lowercase, no full stop */
} ms_error;

/* Reset to "no error". */
void ms_error_clear(ms_error *err);

/*
 * Record an error unless one is already recorded. path may be NULL, offset
 * -1 when unknown. Returns code, so callers write
 *     return ms_error_set(err, MS_ERR_FORMAT, path, off, "bad magic");
 */
ms_status ms_error_set(ms_error *err, ms_status code, const char *path,
                       int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The same for text files: line and column are 1-based. */
ms_status ms_error_set_at(ms_error *err, ms_status code, const char *path,
                          int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * Render "PATH: offset N: reason", "PATH:LINE:COL: reason", "PATH: reason"
 * or "reason" into buf (always NUL-terminated, truncated to cap).
 */
void ms_error_format(const ms_error *err, char *buf, size_t cap);

/* The exit status for an error: 2 for bad input or usage, 1 otherwise. */
int ms_error_exit_code(const ms_error *err);

/* A short name for a status ("format error", ...). */
const char *ms_status_name(ms_status code);

#endif
