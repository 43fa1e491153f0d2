/*
 * safetensors.h - one .safetensors file, mapped read-only and validated.
 *
 * Layout: u64 LE header length N, N bytes of JSON header, data region. The
 * header maps tensor names to {dtype, shape, data_offsets [begin, end)}
 * relative to the data region, plus an optional "__metadata__" object of
 * string to string. Everything in it is checked before use: N within the
 * file and below MS_ST_MAX_HEADER, valid JSON object, known dtype, shape
 * dims non-negative and their product times the dtype size equal to
 * end - begin without overflow, offsets inside the data region, no two
 * tensors overlapping, unique names. Any violation is MS_ERR_FORMAT with the
 * path and the byte offset of the header (8) or of the tensor's data.
 *
 * Sharded checkpoints (model.safetensors.index.json) are opened by model.h.
 */
#ifndef MERGESCOPE_SAFETENSORS_H
#define MERGESCOPE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "mergescope/dtype.h"
#include "mergescope/error.h"
#include "mergescope/util.h"

#define MS_ST_MAX_HEADER (100u * 1024u * 1024u) /* 100 MiB, as the reference reader */
#define MS_MAX_DIMS 8

typedef struct ms_st_tensor {
    char *name;               /* as in the file */
    ms_dtype dtype;
    int ndim;                 /* 0..MS_MAX_DIMS; 0 is a scalar */
    int64_t shape[MS_MAX_DIMS]; /* numpy order: shape[ndim-1] is contiguous */
    uint64_t n_elems;
    uint64_t offset;          /* absolute byte offset in the file */
    uint64_t nbytes;
} ms_st_tensor;

typedef struct ms_st_kv {
    char *key;
    char *value;
} ms_st_kv;

typedef struct ms_st_file {
    char *path;
    ms_map map;               /* zeroed when opened from memory */
    const uint8_t *data;      /* the whole file's bytes */
    uint64_t size;
    uint64_t header_len;
    uint64_t data_start;      /* 8 + header_len */
    ms_st_tensor *tensors;    /* sorted by data offset */
    size_t n_tensors;
    ms_st_kv *metadata;       /* __metadata__, in file order */
    size_t n_metadata;
} ms_st_file;

/* Map and validate path. On success *out is owned by the caller. */
ms_status ms_st_open(const char *path, ms_st_file **out, ms_error *err);
/* Validate a file image already in memory (fuzzing, tests); buf must
 * outlive the result. label names it in errors. */
ms_status ms_st_open_mem(const void *buf, size_t len, const char *label,
                         ms_st_file **out, ms_error *err);
void ms_st_close(ms_st_file *f);

/* Find a tensor by its name in the file, NULL if absent. */
const ms_st_tensor *ms_st_find(const ms_st_file *f, const char *name);

/*
 * Parse a model.safetensors.index.json text: fills *names and *files
 * (parallel arrays of n entries, caller frees each string and both arrays
 * with ms_st_index_free). Shard file names must be plain relative names:
 * no "..", no absolute path, no empty component. label names it in errors.
 */
ms_status ms_st_index_parse(const char *text, size_t len, const char *label,
                            char ***names, char ***files, size_t *n,
                            ms_error *err);
void ms_st_index_free(char **names, char **files, size_t n);

#endif
