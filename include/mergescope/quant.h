/*
 * quant.h - quantization error of a model against its higher-precision
 * source, and per-tensor quant plans for llama-quantize (issue 4).
 *
 * ms_quant_run streams every tensor the two models share (matched by
 * canonical name, rows in HF order, so the GGUF Q/K permutation is undone
 * on both sides) and accumulates, in float64, for q = the model's decoded
 * value and r = the source value:
 *   sum (q-r)^2, sum r^2, sum q^2, sum q*r, max |q-r|,
 * and with an importance matrix giving w_j for input column j:
 *   sum w_j (q-r)^2, sum w_j r^2.
 * Figures: rmse = sqrt(sum e^2 / n); rel_rmse = sqrt(sum e^2 / sum r^2);
 * snr_db = 10 log10(sum r^2 / sum e^2); cosine = sum qr / sqrt(sum q^2 sum
 * r^2); weighted_rel_err = sqrt(sum w e^2 / sum w r^2). Figures for a type,
 * a layer or the whole model pool the sums of their tensors (never an
 * average of ratios). A figure that cannot be computed is NAN.
 *
 * Determinism: each chunk's sums are kept apart and added in row order, so
 * results do not depend on the number of threads.
 *
 * Ownership: result structs own everything they point to (names are
 * copied; the models may be closed first) and are freed by their _free.
 * Return convention: ms_status, the first error in err.
 */
#ifndef MERGESCOPE_QUANT_H
#define MERGESCOPE_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/dtype.h"
#include "mergescope/error.h"
#include "mergescope/imatrix.h"
#include "mergescope/model.h"
#include "mergescope/stream.h"

/* Pooled sums of a scope (tensor, type, layer, model). */
typedef struct ms_quant_sums {
    uint64_t n;            /* elements compared */
    double e2, r2, q2, qr; /* sum (q-r)^2, r^2, q^2, q*r */
    double max_abs;        /* max |q-r| */
    uint64_t wn;           /* elements with importance weights */
    double we2, wr2;       /* sum w (q-r)^2, sum w r^2 */
} ms_quant_sums;

typedef struct ms_quant_figures {
    double rmse, rel_rmse, snr_db, cosine, max_abs;
    double weighted_rel_err; /* NAN without importance weights */
} ms_quant_figures;

void ms_quant_sums_add(ms_quant_sums *a, const ms_quant_sums *b);
void ms_quant_figures_of(const ms_quant_sums *s, ms_quant_figures *f);

typedef struct ms_quant_tensor {
    char *name;            /* canonical */
    char *source_name;     /* the name in the quantized model's file */
    int layer;             /* -1 if none */
    ms_kind kind;
    ms_dtype type;         /* the quantized model's type */
    uint64_t n_params, bytes;
    double bpw;            /* bytes * 8 / n_params */
    bool weighted;         /* an imatrix entry applied */
    ms_quant_sums sums;
    ms_quant_figures fig;
} ms_quant_tensor;

/* A pooled group: one ggml type, or one layer (layer -1: non-layer). */
typedef struct ms_quant_group {
    ms_dtype type;         /* for types[] */
    int layer;             /* for layers[] */
    size_t n_tensors;
    uint64_t n_params, bytes;
    double share;          /* n_params / all parameters of the model */
    double bpw;
    ms_quant_sums sums;    /* over the compared tensors of the group */
    ms_quant_figures fig;
} ms_quant_group;

typedef struct ms_quant_unmatched {
    char *name;            /* canonical */
    int reason;            /* 0 not in reference, 1 shape differs,
                              2 cannot decode, 3 not in model */
} ms_quant_unmatched;

typedef struct ms_quant_result {
    char *model, *reference, *imatrix; /* as named; imatrix NULL if none */
    char *model_format, *reference_format;
    uint64_t n_params, bytes;          /* all tensors of the model */
    double bits_per_weight;            /* bytes * 8 / n_params */
    ms_quant_tensor *tensors;          /* compared tensors, model order */
    size_t n_tensors;
    ms_quant_group *types;             /* every type in the model, by
                                          decreasing n_params then name */
    size_t n_types;
    ms_quant_group *layers;            /* non-layer (-1) first, then by layer */
    size_t n_layers;
    ms_quant_group overall;            /* all compared tensors */
    ms_quant_unmatched *unmatched;
    size_t n_unmatched;
} ms_quant_result;

/*
 * Compare model (quantized, any format) with ref (higher precision).
 * im may be NULL. An imatrix whose entries name tensors the model lacks, or
 * with another column count, is MS_ERR_MISMATCH ("for another model"), and
 * so is a reference that shares no tensor (name and shape) with the model.
 */
ms_status ms_quant_run(const ms_model *model, const ms_model *ref,
                       const ms_imatrix *im, const ms_stream_opts *opts,
                       ms_quant_result **out, ms_error *err);
void ms_quant_result_free(ms_quant_result *r);

/*
 * The imatrix entry for a tensor of m (by its GGUF name, or for a
 * safetensors model by the canonical name of each entry), or NULL.
 */
const ms_imatrix_entry *ms_quant_imatrix_entry(const ms_imatrix *im,
                                               const ms_model *m,
                                               const ms_tensor *t);
/* Every imatrix entry names a tensor of m with its column count, else
 * MS_ERR_MISMATCH naming the first entry that does not. */
ms_status ms_quant_imatrix_check(const ms_imatrix *im, const ms_model *m,
                                 ms_error *err);

/* ================================================================ plans */

typedef enum ms_plan_rank {
    MS_PLAN_RANK_MEAN_ABS,  /* mean |w| of the source tensor */
    MS_PLAN_RANK_IMATRIX    /* sum_ij w_j r_ij^2 / n: importance-weighted energy */
} ms_plan_rank;

/*
 * A policy: per-role types (MS_DTYPE_INVALID: use base), and a top fraction
 * of the FFN matrices, ranked by `rank`, promoted to `promote`.
 * Parsed from "key=value,..." with keys base, embed, output, attn, ffn,
 * promote, top, rank (mean_abs | imatrix), or a preset name:
 *   mixed    base=iq3_s,embed=q5_k,output=q5_k,attn=iq4_nl,ffn=iq3_s,
 *            promote=iq4_nl,top=0.15,rank=mean_abs
 *   imatrix  the same with rank=imatrix
 */
typedef struct ms_plan_policy {
    ms_dtype base, embed, output, attn, ffn, promote;
    double top;
    ms_plan_rank rank;
} ms_plan_policy;

ms_status ms_plan_policy_parse(const char *text, ms_plan_policy *p, ms_error *err);

typedef struct ms_plan_entry {
    char *gguf_name;       /* llama.cpp's name for the tensor */
    char *name;            /* canonical */
    ms_kind kind;
    int layer;
    ms_dtype type;         /* planned type after llama-quantize's shape
                              fallback; F32 for tensors it never quantizes */
    bool quantized;        /* a 2-D weight llama-quantize converts */
    bool promoted;
    double score;          /* the ranking score (FFN tensors), else NAN */
    uint64_t n_params, bytes;
} ms_plan_entry;

typedef struct ms_plan {
    ms_plan_policy policy;
    ms_plan_entry *entries; /* model order */
    size_t n_entries;
    uint64_t n_params, bytes;
    double bits_per_weight; /* predicted */
} ms_plan;

/* Plan the types of src's tensors under policy p (im needed for rank
 * imatrix). Reads the FFN tensors of src once, in row chunks, to rank
 * them; opts is reserved (may be NULL). */
ms_status ms_plan_make(const ms_model *src, const ms_plan_policy *p,
                       const ms_imatrix *im, const ms_stream_opts *opts,
                       ms_plan **out, ms_error *err);
void ms_plan_free(ms_plan *p);

/* The plan as llama-quantize arguments, one per line:
 * "--token-embedding-type T", "--output-tensor-type T", then
 * "--tensor-type '^NAME$=T'" per other quantized tensor (dots escaped,
 * anchored: llama-quantize searches patterns anywhere in the name;
 * single-quoted for the shell). Caller frees; NULL when memory runs out. */
char *ms_plan_format_args(const ms_plan *p);
/* The plan as a llama-quantize --tensor-type-file: one "^NAME$=T" entry
 * per line for every quantized tensor, embeddings and output included. */
char *ms_plan_format_file(const ms_plan *p);
/* The llama-quantize command line for the plan ("llama-quantize [--imatrix
 * IMATRIX] --token-embedding-type ... --tensor-type-file PLAN SRC OUT
 * FTYPE"), FTYPE from the base type. Caller frees. */
char *ms_plan_format_command(const ms_plan *p, bool has_imatrix);

/* ---- checking a GGUF against a plan file */

typedef struct ms_plan_check_row {
    char *gguf_name;
    ms_dtype expected;      /* MS_DTYPE_INVALID: no rule of the plan applies */
    ms_dtype found;
    int status;             /* 0 follows, 1 departs, 2 not covered */
} ms_plan_check_row;

typedef struct ms_plan_check {
    ms_plan_check_row *rows; /* the model's tensors, in file order */
    size_t n_rows;
    size_t n_follow, n_depart, n_uncovered;
} ms_plan_check;

/*
 * Check the GGUF tensors of m against the plan text (the lines
 * ms_plan_format_args writes, or a llama-quantize --tensor-type-file with
 * whitespace-separated NAME=TYPE entries). Patterns are lowercased and
 * matched as extended regular expressions searched in the tensor name,
 * first match wins, as llama-quantize does; --token-embedding-type and
 * --output-tensor-type take priority. 1-D tensors are not covered.
 * Errors: MS_ERR_FORMAT (path, line) for a bad rule or type.
 */
ms_status ms_plan_check_run(const char *plan_text, const char *plan_path,
                            const ms_model *m, ms_plan_check **out, ms_error *err);
void ms_plan_check_free(ms_plan_check *c);

#endif
