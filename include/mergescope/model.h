/*
 * model.h - a model on disk, whatever its format: one safetensors file, a
 * directory of shards with model.safetensors.index.json, a GGUF file or a
 * split GGUF. Files are mapped read-only; tensors are described, never
 * loaded whole. Rows are read on demand into caller buffers as float32, in
 * Hugging Face row order (GGUF Q/K permutation undone).
 *
 * Shapes are in numpy order: shape[ndim-1] is the contiguous dimension
 * ("columns"); n_rows is the product of the other dimensions (1 for a
 * vector). Ownership: an ms_model owns every string and array it points to;
 * ms_model_close frees them and unmaps the files.
 */
#ifndef MERGESCOPE_MODEL_H
#define MERGESCOPE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mergescope/dtype.h"
#include "mergescope/error.h"
#include "mergescope/gguf.h"
#include "mergescope/names.h"
#include "mergescope/safetensors.h"

typedef enum ms_format {
    MS_FORMAT_SAFETENSORS,
    MS_FORMAT_GGUF
} ms_format;

typedef struct ms_tensor {
    char *name;            /* canonical (HF) name */
    char *source_name;     /* the name in its file */
    int layer;             /* -1 if none */
    ms_kind kind;
    ms_filter filter;
    ms_dtype dtype;
    int ndim;
    int64_t shape[MS_MAX_DIMS]; /* numpy order */
    int64_t n_rows, n_cols;
    uint64_t n_elems;
    uint64_t nbytes;
    uint64_t row_bytes;    /* bytes of one row in the file */
    const uint8_t *data;   /* into the mapped file */
    uint64_t file_offset;  /* absolute offset of data in its file */
    int file_index;        /* index into ms_model.files */
    int permute_heads;     /* > 0: GGUF rows are llama-permuted with this
                              many heads; read_rows undoes it. -1: permuted
                              but the head count is missing from the
                              metadata (read_rows fails with a message) */
    float value_offset;    /* added to every value read: -1 for the norms
                              of gemma/gemma2/gemma3 GGUFs, which llama.cpp
                              stores as weight + 1; else 0 */
} ms_tensor;

typedef struct ms_model {
    char *path;            /* what was opened (file or directory) */
    char *name;            /* how the user named it (path or org/model) */
    ms_format format;
    char **files;          /* every mapped file, in shard order */
    size_t n_files;
    ms_st_file **st;       /* safetensors shards (n_files) or NULL */
    ms_gguf_file **gguf;   /* GGUF splits (n_files) or NULL */
    cJSON *config;         /* config.json when present, else NULL */
    char *architecture;    /* "llama", "qwen2", ...; "unknown" if not known */
    int n_layers;          /* from config/metadata, else max layer + 1 */
    int64_t hidden_size, n_heads, n_kv_heads, vocab_size; /* 0 if unknown */
    ms_tensor *tensors;    /* sorted by (layer, canonical name); non-layer
                              tensors (-1) first */
    size_t n_tensors;
    uint64_t n_params;     /* sum of n_elems */
    uint64_t data_bytes;   /* sum of nbytes */
} ms_model;

/* How a NAME (org/model) is found, per DESIGN.md "Inputs". */
typedef struct ms_resolve_opts {
    const char *const *model_map; /* "NAME=PATH" strings from --model */
    size_t n_model_map;
    const char *models_dir;       /* --models-dir, or NULL */
    const char *base_dir;         /* for relative paths in a recipe, or NULL */
} ms_resolve_opts;

/*
 * Find what name refers to: an existing path (file or directory), a
 * --model mapping, DIR/org--model, DIR/org/model, DIR/model under
 * --models-dir, then the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub,
 * ~/.cache/huggingface/hub; models--org--model/snapshots/<newest>).
 * *path_out is caller-freed. MS_ERR_NOTFOUND names every place tried.
 */
ms_status ms_model_resolve(const char *name, const ms_resolve_opts *opts,
                           char **path_out, ms_error *err);

/* Open a model at path (see above). *out is caller-owned. */
ms_status ms_model_open(const char *path, ms_model **out, ms_error *err);
/* Resolve, then open; model->name keeps `name`. */
ms_status ms_model_open_name(const char *name, const ms_resolve_opts *opts,
                             ms_model **out, ms_error *err);
void ms_model_close(ms_model *m);

/* Find by canonical name; NULL if absent. O(log n). */
const ms_tensor *ms_model_find(const ms_model *m, const char *name);

/*
 * Decode rows [row0, row0 + nrows) of t as float32 into dst (nrows * n_cols
 * floats), in HF row order. MS_ERR_UNSUPPORTED (with the tensor named) for
 * a dtype that cannot be decoded; MS_ERR_USAGE for rows out of range.
 */
ms_status ms_model_read_rows(const ms_model *m, const ms_tensor *t,
                             int64_t row0, int64_t nrows, float *dst,
                             ms_error *err);

/*
 * Copy the file bytes of rows [row0, row0 + nrows) of t into dst
 * (nrows * row_bytes bytes) with pread, leaving the mapping untouched: a
 * copy out of the page cache is cheaper than faulting the pages in and
 * releasing them again, and adds nothing to the resident set. False when
 * t cannot be read so (rows stored permuted, a model opened from memory,
 * rows out of range) or the read came back short; the caller then reads
 * the mapping.
 */
bool ms_model_pread_bytes(const ms_model *m, const ms_tensor *t, int64_t row0,
                          int64_t nrows, void *dst);

/*
 * ms_model_read_rows through ms_model_pread_bytes: the rows' file bytes go
 * into scratch (scratch_bytes long; F32 rows go straight into dst) and are
 * decoded from there. Whatever pread cannot serve is read from the mapping
 * as ms_model_read_rows does, so the result is always the same; *mapped
 * then tells the caller the mapping was touched (release its pages).
 */
ms_status ms_model_pread_rows(const ms_model *m, const ms_tensor *t, int64_t row0,
                              int64_t nrows, float *dst, void *scratch,
                              size_t scratch_bytes, bool *mapped, ms_error *err);

/* Release the mapped pages behind rows [row0, row0 + nrows) of t. */
void ms_model_release_rows(const ms_model *m, const ms_tensor *t,
                           int64_t row0, int64_t nrows);

/* The GGUF metadata of the first split, or NULL for safetensors. */
const ms_gguf_file *ms_model_gguf(const ms_model *m);

const char *ms_format_name(ms_format f); /* "safetensors", "gguf" */

#endif
