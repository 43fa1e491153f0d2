/*
 * audit.h - donors vs base under a mergekit recipe: task-vector statistics,
 * a simulation of the recipe's merge method on every tensor, each donor's
 * share of the merged delta (DESIGN.md "Shares"), fingerprints with their
 * evidence, and reweighting towards target shares.
 *
 * How it runs: the recipe's plan gives, for every output tensor, its input
 * tensors (base and donors). Worker threads take whole tensors (largest
 * first) and visit their row chunks IN ORDER, in up to three passes:
 * statistics (Gram matrices by BLAS, sign counts, sparsity, magnitude
 * histograms, Q8_0 lattice tests, a 16-probe sketch for the stable rank of
 * residual-stream matrices); selection (exact cut values, masked L1 norms,
 * small-delta counts); simulation (elementwise merge, <c_i, M> and ||M||^2
 * summed in float64). Without a selection pass a base-only pass first gives
 * the base's rms for the small-delta threshold. Methods that are linear in
 * the inputs (linear, task_arithmetic, slerp, nuslerp, model_stock,
 * passthrough) are simulated from the Gram matrices alone. Mapped pages are
 * dropped as chunks pass (tensors up to 96 MB: when the tensor is done), so
 * memory is the per-worker buffers plus small per-tensor state. Results do
 * not depend on the thread count: each tensor is reduced on one worker and
 * tensors are combined in plan order.
 *
 * DARE/DELLA draws come from a counter-based generator keyed by (--seed,
 * tensor, donor, draw) and the element index. With `replicates` R > 0 the
 * simulation is repeated with R more independent draws and each random
 * share gets an interval: another draw (another seed, or mergekit's own
 * RNG) lands within +-h of the reported share with probability about
 * 99.9%, h = t(0.9995, R) * sqrt(2) * sd over the R + 1 draws.
 *
 * With sample in (0, 1) only a deterministic random subset of row chunks of
 * every tensor is read (at least one chunk); shares are ratio estimates and
 * the interval is the 99.9% normal interval of the stratified (per tensor)
 * ratio estimator's variance from between-chunk spread.
 *
 * Ownership: ms_audit owns everything it returns pointers to; one
 * ms_audit_free releases it all.
 */
#ifndef MERGESCOPE_AUDIT_H
#define MERGESCOPE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "mergescope/error.h"
#include "mergescope/model.h"
#include "mergescope/names.h"
#include "mergescope/recipe.h"
#include "mergescope/stream.h"

#define MS_AUDIT_MAX_INPUTS 32   /* inputs of one output tensor */
#define MS_AUDIT_SKETCH 16       /* random probes for the stable rank */
/* Worker buffer bytes per model per chunk element: decoded values and
 * deltas (float32 each), keep mask (1), DELLA drop probabilities (4),
 * file bytes read before decoding (at most 2). */
#define MS_AUDIT_BUF_BYTES 15

typedef struct ms_audit_opts {
    int threads;              /* <= 0: all cores */
    size_t chunk_elems;       /* 0: 32 Ki elements per model per chunk */
    uint64_t max_memory;      /* bytes for the workers' chunk buffers
                                 (threads x models x chunk x
                                 MS_AUDIT_BUF_BYTES); 0: no limit. Chunks
                                 shrink until one worker fits (never
                                 depending on the thread count), then
                                 fewer threads run; MS_ERR_NOMEM from
                                 ms_audit_open when one row per model does
                                 not fit. Per-tensor state, the stable-rank
                                 sketch and mapped pages are not counted.
                                 A worker's store of |delta| values near
                                 the trim cuts (TIES) takes at most 96 MiB,
                                 and at most a quarter of max_memory. */
    uint64_t seed;            /* DARE / DELLA draws */
    int replicates;           /* extra draws for intervals; < 0: 8 */
    double sample;            /* fraction of row chunks; 0 or >= 1: all */
    bool stats_only;          /* no simulation (no shares) */
    bool exact_select;        /* trim cuts (TIES) from two exact histogram
                                 passes, not from sampled bounds: slower,
                                 the same result (for checking) */
    size_t stage;             /* MS_RECIPE_NONE: the last stage */
    const ms_resolve_opts *resolve;
    ms_progress_fn progress;  /* bytes done / total, serialised */
    void *progress_ctx;
} ms_audit_opts;

/* One fingerprint of a donor. */
typedef struct ms_audit_fp {
    char *kind;        /* "dequantized:Q8_0", "low_rank", "identical_to_base",
                          "shape_mismatch", "vocab_mismatch", "missing_tensor",
                          "unrelated_to_base" */
    char **tensors;    /* canonical names (input tensors of the donor) */
    size_t n_tensors;
    char *evidence;    /* one sentence with the numbers */
} ms_audit_fp;

/* Figures of one donor over one scope (all, a filter class, a layer). */
typedef struct ms_audit_figs {
    bool has_share;
    double share;           /* sum <c_i, M> / sum ||M||^2 */
    double share_lo, share_hi; /* interval (== share when deterministic) */
    bool has_tv;            /* a base exists for these tensors */
    double tv_norm, base_norm, rel_norm, cos_to_base;
    double zero_frac, sparsity; /* d == 0; |d| < 1e-6 rms(base tensor) */
} ms_audit_figs;

typedef struct ms_audit_donor {
    char *name;             /* the recipe's model reference */
    size_t model;           /* index into the stage's models */
    bool is_base;           /* the base of a method without task vectors */
    ms_audit_figs all;
    ms_audit_figs by_filter[MS_FILTER_COUNT];
    /* fraction of ||delta||^2 the method threw away (null when no sim) */
    bool has_discarded;
    double discarded, discarded_trim, discarded_drop, discarded_sign;
    ms_audit_fp *fps;
    size_t n_fps;
} ms_audit_donor;

typedef struct ms_audit_pair {
    size_t a, b;            /* donor indices */
    bool has_cosine, has_conflict, has_ties_conflict;
    double cosine;          /* of the task vectors */
    double sign_conflict;   /* both nonzero, opposite signs */
    double ties_conflict;   /* the same among elements both keep after
                               trimming / dropping */
} ms_audit_pair;

typedef struct ms_audit_layer {
    int layer;              /* output layer */
    ms_audit_figs *donors;  /* n_donors */
    ms_audit_pair *pairs;   /* pooled over the layer's tensors (may be NULL) */
    size_t n_pairs;
} ms_audit_layer;

typedef struct ms_audit_tensor {
    char *name;             /* output tensor (canonical) */
    int layer;
    ms_filter filter;
    double m_sqnorm;        /* ||M||^2 (0 when not simulated) */
    ms_audit_figs *donors;  /* n_donors; has_share false when not an input */
    double *stable_rank;    /* n_donors, sketched; < 0 when not computed */
} ms_audit_tensor;

typedef struct ms_audit_result {
    const char *method;
    const char *base;       /* NULL without base_model */
    bool simulated;
    bool random;            /* the method draws masks */
    int replicates;
    double sample;          /* 1 when everything was read */
    uint64_t seed;
    ms_audit_donor *donors;
    size_t n_donors;
    ms_audit_pair *pairs;
    size_t n_pairs;
    ms_audit_layer *layers;
    size_t n_layers;
    ms_audit_tensor *tensors;
    size_t n_tensors;
    char **notes;           /* things the user should know */
    size_t n_notes;
    uint64_t bytes_read;    /* bytes of tensor data decoded (all passes) */
    uint64_t bytes_model;   /* bytes of the input tensors (one pass) */
    double seconds;
} ms_audit_result;

typedef struct ms_audit ms_audit;

/*
 * Open the models of the recipe's stage, build the plan and the tensor
 * list. Models are named as the recipe names them and found with
 * opts->resolve (base_dir should be the recipe's directory).
 */
ms_status ms_audit_open(const ms_recipe *r, const ms_audit_opts *opts,
                        ms_audit **out, ms_error *err);
void ms_audit_free(ms_audit *a);

/* Run every pass and fill the result. */
ms_status ms_audit_run(ms_audit *a, ms_error *err);
const ms_audit_result *ms_audit_get(const ms_audit *a);

/*
 * Shares with every donor's weight multiplied by scale[d * n_scopes + s]
 * (scope s: 0 for per-donor scaling; filter class for per filter; output
 * layer for per layer, where tensors outside layers count as layer 0, as a
 * gradient evaluates them at t = 0).
 * Re-runs only the simulation pass. shares_out: n_donors overall shares;
 * by_scope (may be NULL): n_donors * n_scopes shares per scope (0 when a
 * scope has no merged delta).
 */
typedef enum ms_audit_per {
    MS_AUDIT_PER_DONOR, MS_AUDIT_PER_FILTER, MS_AUDIT_PER_LAYER
} ms_audit_per;
size_t ms_audit_n_scopes(const ms_audit *a, ms_audit_per per);
ms_status ms_audit_simulate(ms_audit *a, ms_audit_per per, const double *scale,
                            double *shares_out, double *by_scope,
                            ms_error *err);

/*
 * Find weight multipliers bringing the simulated shares to target
 * (n_donors values summing to 1) within tol, per donor / filter / layer.
 * scale_out: n_donors * n_scopes. *achieved gets the largest remaining
 * deviation over scopes with a merged delta; *iters the simulations run.
 */
ms_status ms_audit_rebalance(ms_audit *a, ms_audit_per per,
                             const double *target, double tol, int max_iter,
                             double *scale_out, double *achieved, int *iters,
                             ms_error *err);

/*
 * The recipe changes that apply scale (from ms_audit_rebalance) to the
 * recipe's weights: per donor, a filter list (per filter) or a gradient over
 * the output layers (per layer). *changes and the value arrays are owned by
 * the audit (valid until the next call or ms_audit_free). Methods without
 * per-model weights (model_stock, sce, passthrough, slerp) are
 * MS_ERR_UNSUPPORTED.
 */
ms_status ms_audit_changes(ms_audit *a, ms_audit_per per, const double *scale,
                           const ms_recipe_change **changes, size_t *n,
                           double *new_weights, ms_error *err);

/* The result as the "mergescope.audit/1" body (no schema/tool_version:
 * the caller starts from ms_json_result_new). Adds to obj. */
void ms_audit_to_json(const ms_audit *a, cJSON *obj);

#endif
