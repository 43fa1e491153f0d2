/*
 * util.h - small shared pieces: overflow-checked sizes, a growable string
 * buffer, read-only file mapping, and outputs written atomically.
 *
 * Return convention: functions returning bool return true on success (for
 * the checked arithmetic: true when the result fits); functions returning
 * ms_status fill err on failure.
 */
#ifndef MERGESCOPE_UTIL_H
#define MERGESCOPE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mergescope/error.h"

#define MS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- overflow-checked arithmetic: true when *out holds the exact result */
static inline bool ms_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool ms_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool ms_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/*
 * Allocation helpers that refuse sizes that overflow. They return NULL on
 * failure (the caller reports MS_ERR_NOMEM); calloc semantics for _zalloc.
 */
void *ms_alloc_array(size_t n, size_t size);
void *ms_zalloc_array(size_t n, size_t size);
void *ms_realloc_array(void *p, size_t n, size_t size);
char *ms_strdup(const char *s);             /* NULL on failure or NULL input */
char *ms_strndup(const char *s, size_t n);  /* copies at most n bytes */

/* ---- strbuf: a NUL-terminated, growable string. Zero-initialise or
 * MS_SB_INIT; ms_sb_free releases. Append functions return false when
 * memory runs out (the buffer then keeps what it had). */
typedef struct ms_sb {
    char *buf;  /* NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
} ms_sb;
#define MS_SB_INIT {NULL, 0, 0}

bool ms_sb_add(ms_sb *sb, const char *s);
bool ms_sb_addn(ms_sb *sb, const char *s, size_t n);
bool ms_sb_addc(ms_sb *sb, char c);
bool ms_sb_addf(ms_sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ms_sb_str(const ms_sb *sb);   /* "" when empty */
char *ms_sb_detach(ms_sb *sb);            /* caller frees; buffer becomes empty */
void ms_sb_reset(ms_sb *sb);              /* length 0, keeps the allocation */
void ms_sb_free(ms_sb *sb);

/* ---- read-only mapping of a whole file. */
typedef struct ms_map {
    const uint8_t *data; /* NULL for an empty file */
    uint64_t size;
    int fd;
} ms_map;

/* Open path O_RDONLY and map it PROT_READ, MAP_PRIVATE. */
ms_status ms_map_open(const char *path, ms_map *map, ms_error *err);
void ms_map_close(ms_map *map);
/*
 * Drop the pages of [data, data+len) from this process's resident set once
 * a stream has passed them (they are re-read from the page cache if touched
 * again). Only whole pages inside the range are released.
 */
void ms_map_release(const void *data, uint64_t len);
/* Hint that [data, data+len) will be read soon, sequentially. */
void ms_map_willneed(const void *data, uint64_t len);

/* ---- outputs: written to a temporary file beside the target, renamed
 * into place on commit, removed on abort. An existing file is never
 * truncated by a failed run. path "-" writes to stdout directly. */
typedef struct ms_outfile {
    FILE *fp;
    char *path;
    char *tmp_path;  /* NULL for stdout */
} ms_outfile;

ms_status ms_outfile_open(ms_outfile *out, const char *path, ms_error *err);
ms_status ms_outfile_commit(ms_outfile *out, ms_error *err);
void ms_outfile_abort(ms_outfile *out);
/* Write len bytes to path atomically (or to stdout for "-"). */
ms_status ms_write_file_atomic(const char *path, const void *data, size_t len,
                               ms_error *err);

/* Read a whole (small) text file into a NUL-terminated buffer of at most
 * max_size bytes; caller frees *out. */
ms_status ms_read_file(const char *path, uint64_t max_size, char **out,
                       size_t *len, ms_error *err);

/* ---- text */
/*
 * Length of the well-formed UTF-8 sequence at s[0..n) (1 to 4), or 0 when
 * the bytes there are not one: overlong forms, surrogates and code points
 * above U+10FFFF are not well formed.
 */
size_t ms_utf8_seq(const uint8_t *s, size_t n);
/* True when s[0..n) is well-formed UTF-8; *bad (may be NULL) gets the
 * offset of the first byte that is not. */
bool ms_utf8_valid(const uint8_t *s, size_t n, size_t *bad);
/*
 * Append s[0..n) to sb for a terminal: control characters and bytes that
 * are not well-formed UTF-8 become \xNN, so text from a file can neither
 * forge lines nor send escape sequences.
 */
bool ms_sb_add_escaped(ms_sb *sb, const char *s, size_t n);

/* ---- paths */
bool ms_path_is_dir(const char *path);
bool ms_path_is_file(const char *path);
/* dir + "/" + name, caller frees; NULL on allocation failure. */
char *ms_path_join(const char *dir, const char *name);
/* The directory part of path ("." when none), caller frees. */
char *ms_path_dirname(const char *path);
/* The last component of path (points into path). */
const char *ms_path_basename(const char *path);
bool ms_str_endswith(const char *s, const char *suffix);
bool ms_str_startswith(const char *s, const char *prefix);

/* Number of online CPUs, at least 1. */
int ms_cpu_count(void);
/* Monotonic seconds. */
double ms_now(void);

#endif
