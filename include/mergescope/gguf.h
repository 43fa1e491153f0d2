/*
 * gguf.h - one GGUF file (v2 or v3, little-endian), mapped read-only and
 * validated.
 *
 * Every length read from the file is checked against the bytes that remain
 * before anything is allocated or read: key and string lengths, array counts
 * times element sizes (nested arrays too), tensor counts, dims (at most 4,
 * each > 0, product without overflow), ggml type known, the row length a
 * multiple of the block size, data offsets aligned and inside the file, no
 * overlap. general.alignment must be a u32 power of two (default 32).
 * Errors are MS_ERR_FORMAT (MS_ERR_UNSUPPORTED for an unknown ggml type or
 * version) with the path and the byte offset of the offending field.
 */
#ifndef MERGESCOPE_GGUF_H
#define MERGESCOPE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/dtype.h"
#include "mergescope/error.h"
#include "mergescope/util.h"

typedef enum ms_gguf_type {
    MS_GGUF_UINT8 = 0, MS_GGUF_INT8 = 1, MS_GGUF_UINT16 = 2, MS_GGUF_INT16 = 3,
    MS_GGUF_UINT32 = 4, MS_GGUF_INT32 = 5, MS_GGUF_FLOAT32 = 6, MS_GGUF_BOOL = 7,
    MS_GGUF_STRING = 8, MS_GGUF_ARRAY = 9, MS_GGUF_UINT64 = 10, MS_GGUF_INT64 = 11,
    MS_GGUF_FLOAT64 = 12
} ms_gguf_type;

/* A string inside the mapped file: not NUL-terminated, may be invalid UTF-8. */
typedef struct ms_gguf_str {
    const char *ptr;
    uint64_t len;
} ms_gguf_str;

typedef struct ms_gguf_value ms_gguf_value;
struct ms_gguf_value {
    ms_gguf_type type;
    union {
        uint64_t u;            /* UINT8..UINT64, BOOL */
        int64_t i;             /* INT8..INT64 */
        double f;              /* FLOAT32, FLOAT64 */
        ms_gguf_str s;         /* STRING */
        struct {
            ms_gguf_type elem_type;
            uint64_t count;
            ms_gguf_value *items; /* count decoded items (arrays of scalars,
                                     strings, or nested arrays) */
        } arr;
    } v;
};

typedef struct ms_gguf_kv {
    char *key;                /* NUL-terminated copy */
    uint64_t offset;          /* file offset of the key */
    ms_gguf_value value;
} ms_gguf_kv;

typedef struct ms_gguf_tensor {
    char *name;               /* NUL-terminated copy, as in the file */
    ms_dtype dtype;
    uint32_t ggml_type;
    int n_dims;
    int64_t ne[4];            /* ggml order: ne[0] is the contiguous row length */
    uint64_t n_elems;
    uint64_t offset;          /* absolute byte offset in the file */
    uint64_t nbytes;
    uint64_t info_offset;     /* file offset of this tensor info, for errors */
} ms_gguf_tensor;

typedef struct ms_gguf_file {
    char *path;
    ms_map map;
    const uint8_t *data;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;      /* absolute offset of the data section */
    ms_gguf_kv *kvs;
    size_t n_kvs;
    ms_gguf_tensor *tensors;  /* in file order */
    size_t n_tensors;
} ms_gguf_file;

ms_status ms_gguf_open(const char *path, ms_gguf_file **out, ms_error *err);
ms_status ms_gguf_open_mem(const void *buf, size_t len, const char *label,
                           ms_gguf_file **out, ms_error *err);
void ms_gguf_close(ms_gguf_file *f);

const ms_gguf_kv *ms_gguf_find_kv(const ms_gguf_file *f, const char *key);
const ms_gguf_tensor *ms_gguf_find_tensor(const ms_gguf_file *f, const char *name);

/* Typed look-ups: true and *out set when key exists with a compatible type
 * (any integer type for _int, integer or float for _float). */
bool ms_gguf_get_int(const ms_gguf_file *f, const char *key, int64_t *out);
bool ms_gguf_get_float(const ms_gguf_file *f, const char *key, double *out);
/* A NUL-terminated copy of a string value, caller frees; NULL if absent. */
char *ms_gguf_get_str(const ms_gguf_file *f, const char *key);

const char *ms_gguf_type_name(ms_gguf_type t);

#endif
