/*
 * imatrix.h - llama.cpp importance matrices, both formats.
 *
 * An importance matrix gives, for each weight matrix W that was seen during
 * calibration, the mean squared activation of every input column of W
 * (w_j = E[x_j^2]); it weights quantization error by how much each column
 * matters. Two formats are read, detected by content:
 *
 * - GGUF (llama-imatrix default since mid-2025): general.type = "imatrix",
 *   per weight W two F32 tensors W.in_sum2 (ne = [n_cols, n_mat], raw sum of
 *   x^2) and W.counts (ne = [1, n_mat], tokens). w = in_sum2 / counts, and 1
 *   where the count is 0 (as llama.cpp's loader does).
 * - legacy .dat: i32 n_entries, then per entry i32 name_len, name, i32
 *   ncall, i32 nval, f32 values[nval] holding (sum x^2 / count) * ncall;
 *   an optional trailer i32 chunk_count, i32 len, dataset name. w = v/ncall.
 *
 * Every count and length is checked against the bytes available before it
 * is used; errors are MS_ERR_FORMAT with the path and offset.
 * Ownership: an ms_imatrix owns every string and array it points to.
 */
#ifndef MERGESCOPE_IMATRIX_H
#define MERGESCOPE_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "mergescope/error.h"

typedef enum ms_imatrix_format {
    MS_IMATRIX_GGUF,
    MS_IMATRIX_DAT
} ms_imatrix_format;

typedef struct ms_imatrix_entry {
    char *name;          /* the weight's GGUF name, e.g. "blk.0.attn_q.weight" */
    uint32_t n_cols;     /* input columns of one matrix */
    uint32_t n_mat;      /* matrices (experts), 1 for a dense weight */
    float *w;            /* n_mat * n_cols mean squared activations, >= 0 */
    double count;        /* tokens seen (counts of matrix 0, or ncall) */
} ms_imatrix_entry;

typedef struct ms_imatrix {
    char *path;
    ms_imatrix_format format;
    ms_imatrix_entry *entries; /* sorted by name */
    size_t n_entries;
    int64_t chunk_count;       /* -1 when the file does not say */
    char *dataset;             /* first dataset name, or NULL */
} ms_imatrix;

/* Read either format from path. *out is caller-owned (ms_imatrix_free). */
ms_status ms_imatrix_load(const char *path, ms_imatrix **out, ms_error *err);
/* The same from memory; label names the input in errors. */
ms_status ms_imatrix_load_mem(const void *buf, size_t len, const char *label,
                              ms_imatrix **out, ms_error *err);
void ms_imatrix_free(ms_imatrix *im);

/* The entry for a GGUF weight name, or NULL. */
const ms_imatrix_entry *ms_imatrix_find(const ms_imatrix *im, const char *gguf_name);

const char *ms_imatrix_format_name(ms_imatrix_format f); /* "gguf", "dat" */

#endif
