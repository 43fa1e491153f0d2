/*
 * analyze.h - what a finished merge is made of: compare, attribute and
 * provenance (issue 6).
 *
 * All three run on the streaming core (stream.h): tensors are read in row
 * chunks as float32, reduced and dropped. Figures for a layer, a filter
 * class or the whole model are pooled, per DESIGN.md: sums over the tensors
 * in scope, then the ratio (never an average of ratios).
 *
 * The Gram pass
 * -------------
 * compare and attribute share one reduction: for K aligned vectors x_0 ..
 * x_{K-1} (one tensor slot of K models), an ms_gram holds the Gram matrix of
 * [x_0, x_1 - x_0, ..., x_{K-1} - x_0] in float64 and, as the caller asks
 * (MS_GRAM_* flags: each computes only what its command reads), per pair
 * (i < j) the max |x_i - x_j| and the count of exactly equal elements, or
 * the sign agreement of the deltas d_i = x_i - x_0, d_j = x_j - x_0. Distances
 * between near-identical models come from the deltas, never as the
 * difference of two large numbers. Products are summed in float32 over
 * runs of 256 elements (at most 32 products per float32 lane) and the
 * runs in float64 (a fused vector kernel, SSE2
 * or AVX2 chosen at run time: BLAS dsyrk on k <= 8 rows spends most of its
 * time packing, ~4x slower measured). Chunks default to 256 Ki elements per
 * model so a worker's decoded rows stay in cache.
 *
 * Determinism: every chunk gets its own partial, reduced in chunk order per
 * slot, so results are bit-identical whatever --threads is.
 *
 * Ownership: result structs own everything they point to and are freed by
 * their _free function; they borrow nothing from the models (names are
 * copied), so models may be closed before a result is rendered.
 * Return convention: ms_status, first error in err.
 */
#ifndef MERGESCOPE_ANALYZE_H
#define MERGESCOPE_ANALYZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/error.h"
#include "mergescope/model.h"
#include "mergescope/stream.h"

/* ================================================================ Gram */

typedef struct ms_pair_stats {
    double max_abs;      /* max |x_i - x_j| */
    uint64_t identical;  /* elements with x_i == x_j exactly */
    uint64_t sign_same;  /* d_i, d_j both non-zero with the same sign */
    uint64_t sign_both;  /* d_i, d_j both non-zero */
} ms_pair_stats;

typedef struct ms_gram {
    size_t k;            /* vectors */
    uint64_t n;          /* elements summed */
    double *g;           /* k*k, row-major, symmetric: Gram of
                            [x_0, x_1 - x_0, ..., x_{k-1} - x_0] */
    ms_pair_stats *pairs; /* k*(k-1)/2, see ms_gram_pair_index */
} ms_gram;

/* Allocate a zeroed accumulator for k >= 1 vectors. */
ms_status ms_gram_init(ms_gram *a, size_t k, ms_error *err);
void ms_gram_free(ms_gram *a);
void ms_gram_zero(ms_gram *a);
/* a += b (same k). Sums, counts; max for max_abs. */
void ms_gram_add(ms_gram *a, const ms_gram *b);
/* Index of pair (i, j), i < j < k, in pairs[]. */
size_t ms_gram_pair_index(size_t k, size_t i, size_t j);

/*
 * What a Gram pass computes besides the Gram matrix (flags, OR-ed; 0 =
 * the Gram alone, all of it):
 * MS_GRAM_PAIRS  max |x_i - x_j| and the identical count of every pair.
 * MS_GRAM_SIGNS  the attribute layout (row 0 base, row 1 merged): the sign
 *                agreement of d_1 with every later delta, in pairs (1, j),
 *                and Gram entries only among the deltas (row 0's products
 *                stay zero: ms_gram_dot is then undefined, ms_gram_delta_dot
 *                against row 0 and ms_gram_dist2 are exact).
 * Fields not asked for stay zero. MS_GRAM_SIGNS is 1 so that a caller of
 * the former bool signs = true still gets what attribute used.
 */
enum {
    MS_GRAM_SIGNS = 1u << 0,
    MS_GRAM_PAIRS = 1u << 1
};

/*
 * Add n elements of k aligned float32 vectors x[0..k) to a. work is
 * caller scratch of ms_gram_work_doubles(k) doubles. flags: MS_GRAM_*.
 */
size_t ms_gram_work_doubles(size_t k);
void ms_gram_add_chunk(ms_gram *a, const float *const *x, size_t n,
                       unsigned flags, double *work);

/* <x_i, x_j> (raw inner product). */
double ms_gram_dot(const ms_gram *a, size_t i, size_t j);
/* <x_i - x_r, x_j - x_r>: inner product of deltas against vector r, from
 * the delta Gram (no cancellation when the models are close). */
double ms_gram_delta_dot(const ms_gram *a, size_t r, size_t i, size_t j);
/* ||x_i - x_j||^2, from the delta Gram, clamped at 0. */
double ms_gram_dist2(const ms_gram *a, size_t i, size_t j);

/*
 * One pass over the slots of job (see stream.h): out[s] receives slot s's
 * Gram (out is n_slots accumulators, initialised here; free each with
 * ms_gram_free and the array with free()). flags as for add_chunk.
 */
ms_status ms_gram_run(const ms_stream_job *job, const ms_stream_opts *opts,
                      unsigned flags, ms_gram **out, ms_error *err);

/* ================================================================ scopes */

/* Which pooled scope a tensor belongs to: overall, its filter class and its
 * layer (-1 = no layer). */
typedef struct ms_scope_key {
    int layer;
    int filter;          /* ms_filter */
} ms_scope_key;

/* A tensor that could not be paired across the models. */
typedef struct ms_unmatched {
    char *name;          /* canonical name */
    size_t model;        /* the model where it is missing or differs */
    int reason;          /* 0 missing, 1 shape differs, 2 cannot decode */
} ms_unmatched;

/* ================================================================ compare */

typedef struct ms_pair_figures {
    size_t a, b;          /* model indices, a < b */
    double cosine;        /* NaN when a norm is 0 */
    double rel_l2;        /* ||x_a - x_b|| / ||x_a||; NaN when ||x_a|| = 0 */
    double l2;            /* ||x_a - x_b|| */
    double max_abs;
    double identical;     /* fraction of exactly equal elements */
} ms_pair_figures;

typedef struct ms_compare_scope {
    char *name;           /* tensor name, or NULL for layers / overall */
    int layer;            /* -1 none */
    int filter;           /* ms_filter, or -1 for a pooled scope */
    uint64_t n;
    ms_pair_figures *pairs; /* n_pairs */
} ms_compare_scope;

typedef struct ms_compare_result {
    size_t n_models;
    char **models;        /* names as given */
    char **formats;       /* "safetensors" / "gguf" */
    size_t n_pairs;       /* n_models * (n_models - 1) / 2 */
    ms_compare_scope overall;
    ms_compare_scope *layers;   /* ascending layer */
    size_t n_layers;
    ms_compare_scope *tensors;  /* models[0]'s order */
    size_t n_tensors;
    ms_unmatched *unmatched;
    size_t n_unmatched;
} ms_compare_result;

/* Compare n >= 2 open models. *out caller-owned (ms_compare_result_free). */
ms_status ms_compare_run(const ms_model *const *models, size_t n,
                         const ms_stream_opts *opts, ms_compare_result **out,
                         ms_error *err);
void ms_compare_result_free(ms_compare_result *r);
/* Fill figures for pair (i, j) from a pooled Gram. */
void ms_compare_figures(const ms_gram *g, size_t i, size_t j,
                        ms_pair_figures *f);

/* Tensors present in some models only, or with different shapes, in a
 * stable order (models[0]'s tensors first, then the others'). *out and its
 * names are caller-freed (ms_unmatched_free). */
ms_status ms_analyze_unmatched(const ms_model *const *models, size_t n,
                               ms_unmatched **out, size_t *n_out,
                               ms_error *err);
void ms_unmatched_free(ms_unmatched *u, size_t n);
/* Append the tensors ms_stream_match skipped as undecodable (reason 2). */
ms_status ms_analyze_add_undecodable(ms_unmatched **u, size_t *n,
                                     const ms_stream_skip *sk, size_t n_sk,
                                     ms_error *err);

/* ================================================================ attribute */

/*
 * Least squares of M on the donor vectors d_1..d_K given the normal
 * equations A (K x K, <d_i, d_j>), b (<d_i, M>) and mm = ||M||^2:
 * coef = argmin ||M - sum coef_i d_i||, share_i = coef_i b_i / mm,
 * residual = 1 - sum share_i. The system is equilibrated (unit diagonal)
 * and solved through its eigen-decomposition (LAPACK dsyevd); eigenvalues
 * below 1e-12 of the largest are dropped (minimum-norm solution), as
 * numpy's lstsq does. condition = largest / smallest eigenvalue of the
 * equilibrated matrix (INFINITY when rank deficient).
 */
typedef struct ms_fit {
    size_t k;
    double *coef;         /* k */
    double *share;        /* k */
    double residual;      /* 1 - sum share; NaN when mm = 0 */
    double condition;
    bool ill_conditioned; /* condition > MS_FIT_ILL_CONDITION */
    double mm;            /* ||M||^2 */
} ms_fit;

#define MS_FIT_ILL_CONDITION 1e8

ms_status ms_fit_solve(const double *A, const double *b, double mm, size_t k,
                       ms_fit *out, ms_error *err);
void ms_fit_free(ms_fit *f);

typedef struct ms_attr_scope {
    char *name;           /* tensor name, or NULL */
    int layer;            /* -1 none */
    int filter;           /* ms_filter, -1 when pooled over classes */
    ms_fit fit;
    double *sign_agreement; /* k: among elements where M and d_i are both
                               non-zero, the fraction with equal signs;
                               NaN when there are none */
    double *intended;     /* k recipe weights (pooled: element-weighted
                             mean), or NULL without a recipe */
    double *consensus;    /* k consensus shares (ms_attribute_consensus),
                             or NULL */
    double consensus_unattributed; /* share of ||M||^2 no donor agrees with */
} ms_attr_scope;

/* Per-tensor intended weights, asked once per matched tensor. */
typedef ms_status (*ms_attribute_intended_fn)(void *ctx, const ms_tensor *t,
                                              double *weights, ms_error *err);

typedef struct ms_attribute_result {
    bool has_base;
    char *base;           /* NULL without base */
    char *merged;
    size_t k;
    char **donors;        /* k */
    ms_attr_scope overall;
    ms_attr_scope filters[3]; /* self_attn, mlp, other; n == 0 if absent */
    uint64_t filter_n[3];
    ms_attr_scope *layers;
    size_t n_layers;
    ms_attr_scope *tensors;
    size_t n_tensors;
    size_t n_ill_conditioned; /* tensors flagged */
    ms_unmatched *unmatched;
    size_t n_unmatched;
    bool has_intended;
    char *method;         /* recipe merge_method or NULL */
} ms_attribute_result;

/*
 * Attribute merged to the donors. base may be NULL (methods without a
 * base: the merged tensor itself is fitted on the donors themselves).
 * intended (may be NULL) is called per tensor to get the recipe's weights.
 */
ms_status ms_attribute_run(const ms_model *base, const ms_model *merged,
                           const ms_model *const *donors, size_t k,
                           const ms_stream_opts *opts,
                           ms_attribute_intended_fn intended, void *ictx,
                           ms_attribute_result **out, ms_error *err);
void ms_attribute_result_free(ms_attribute_result *r);

/*
 * Consensus shares, for sign-electing merges (TIES, DARE-TIES, DELLA) whose
 * merged delta no linear mix explains: a second pass that splits every
 * element of M among the donors whose fitted contribution alpha_i d_i (with
 * the tensor's own least-squares alpha) has M's sign, in proportion to it:
 * consensus_i = sum_e M_e^2 (alpha_i d_i,e / sum_agreeing alpha_j d_j,e) /
 * ||M||^2, pooled like every other figure. Elements where no donor agrees
 * go to consensus_unattributed. Needs the base (MS_ERR_USAGE without) and
 * the same models r was computed from.
 */
ms_status ms_attribute_consensus(ms_attribute_result *r, const ms_model *base,
                                 const ms_model *merged,
                                 const ms_model *const *donors, size_t k,
                                 const ms_stream_opts *opts, ms_error *err);

/* ================================================================ provenance */

#define MS_SKETCH_A 16   /* row projections */
#define MS_SKETCH_B 16   /* column projections */
#define MS_SKETCH_DIM (MS_SKETCH_A * MS_SKETCH_B)

/*
 * Sketch of every layer of a model (one streaming pass): for each tensor W
 * (rows x cols) of layer l, S_l += Rr^T W Rc, with Rr (rows x A) and Rc (cols x B) random
 * +-1 matrices drawn from a counter-based hash of (seed, tensor kind, row
 * or column index, output index). The projection depends only on the kind
 * and the indices, never on the model or the layer, so sketches of any two
 * layers of any two models are comparable: the sketch is linear, so a layer
 * that is a * A + b * B has sketch a * S(A) + b * S(B), and an exact copy
 * has an identical sketch. sketch[l * MS_SKETCH_DIM ..] for l < n_layers
 * (layers with no tensor are all zero).
 */
typedef struct ms_sketch {
    int n_layers;
    double *s;            /* n_layers * MS_SKETCH_DIM */
    double *sqnorm;       /* n_layers: exact ||layer||^2 */
} ms_sketch;

ms_status ms_sketch_model(const ms_model *m, const ms_stream_opts *opts,
                          uint64_t seed, ms_sketch *out, ms_error *err);
void ms_sketch_free(ms_sketch *s);

typedef struct ms_prov_source {
    size_t model;         /* donor index */
    int layer;
    double weight;
    double cosine;        /* sketch cosine of the merged layer with it */
} ms_prov_source;

typedef struct ms_prov_layer {
    int layer;
    ms_prov_source src[2];
    size_t n_src;         /* 1 copy, 2 blend, 0 no donor layer found */
    double residual;      /* ||S_M - sum w S||/||S_M|| of the chosen fit */
    bool exact;           /* the single source matches to rounding */
    bool confirmed;       /* blend weights and residual re-fitted on the
                             exact weights (one Gram pass over the layer) */
} ms_prov_layer;

typedef struct ms_prov_slice {
    int out_start, out_end;   /* [start, end) merged layers */
    size_t n_src;             /* 1 or 2 */
    size_t model[2];
    int start[2];             /* source layer_range start */
    double weight[2];
} ms_prov_slice;

typedef struct ms_provenance_result {
    char *merged;
    size_t n_donors;
    char **donors;
    ms_prov_layer *layers;
    size_t n_layers;
    ms_prov_slice *slices;
    size_t n_slices;
    double *cosine;       /* n_layers x (sum of donor layers), row-major,
                             donors concatenated in order */
    int *donor_layers;    /* n_donors: layers of each donor */
    char *recipe;         /* mergekit YAML of the slices */
} ms_provenance_result;

ms_status ms_provenance_run(const ms_model *merged,
                            const ms_model *const *donors, size_t n_donors,
                            const ms_stream_opts *opts,
                            ms_provenance_result **out, ms_error *err);
void ms_provenance_result_free(ms_provenance_result *r);

#endif
