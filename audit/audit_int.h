/*
 * audit_int.h - private state of the audit engine, shared by audit.c
 * (plan, threads, reduction), audit_pass.c (the per-tensor passes),
 * audit_suggest.c and audit_json.c.
 */
#ifndef MS_AUDIT_INT_H
#define MS_AUDIT_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "mergescope/audit.h"
#include "mergescope/merge.h"

#define AU_NONE ((size_t)-1)
#define AU_MAXIN MS_AUDIT_MAX_INPUTS
#define AU_P MS_AUDIT_SKETCH

/* How the method is simulated. */
typedef enum au_kind {
    AU_NOSIM,      /* not simulated: statistics only */
    AU_GRAM,       /* linear in the inputs: shares from the Gram matrix */
    AU_APPLY,      /* elementwise GTA pass (trim / drop / sign election) */
    AU_SCE         /* elementwise SCE pass */
} au_kind;

typedef enum au_sparse {
    AU_SP_NONE, AU_SP_MAGNITUDE, AU_SP_RANDOM, AU_SP_OUTLIERS, AU_SP_DELLA
} au_sparse;

typedef struct au_input {
    size_t model;           /* stage model index */
    size_t donor;           /* result donor index, AU_NONE for the origin base */
    const ms_tensor *t;
    int srow;               /* row in the stacked matrix */
    double weight, density, gamma, epsilon, scale;
    bool sparsify;          /* this donor is trimmed / dropped here */
} au_input;

typedef struct au_task {
    char *name;
    int layer;              /* output layer, -1 outside layers */
    ms_filter filter;
    ms_kind kind;
    int64_t rows, cols, rows_per_chunk;
    uint64_t n;
    size_t n_in;
    au_input in[AU_MAXIN];
    int base;               /* input index of the base, -1 */
    size_t m;               /* stacked rows: [base; deltas] or [inputs] */
    bool origin;            /* M = merged - base (task vectors) */
    /* globals */
    double lambda, t, select_topk;
    uint64_t seed;
    bool normalize, rescale, consensus;
    au_sparse sparse;
    /* chunks read (sampling) */
    uint64_t n_chunks;
    uint8_t *chunk_on;      /* NULL: all */
    uint64_t n_chunks_on, n_elems_on;
    /* pass 0 / 1 */
    double base_sq;
    float small_thr;
    bool small_late;        /* small deltas counted in the selection pass */
    double *gram;           /* m * m, float64 */
    double *chunk_gram;     /* sampling: per read chunk, m * m */
    uint64_t zeros[AU_MAXIN], small[AU_MAXIN];
    uint64_t q8_tested[AU_MAXIN], q8_fit[AU_MAXIN];
    double l1[AU_MAXIN];
    uint64_t *pair_nn, *pair_opp;   /* n_in * n_in */
    uint64_t *kept_nn, *kept_opp;   /* after sparsification */
    bool sketch;
    float *u[AU_MAXIN];     /* top left singular direction (rows) */
    double sr[AU_MAXIN];    /* sketched stable rank, -1 none */
    /* pass 2 */
    int n_sel[AU_MAXIN];
    ms_select sel[AU_MAXIN][2];
    ms_cut cut[AU_MAXIN];
    double *masked_l1;      /* n_in * draws */
    float *rscale;          /* n_in * draws: L1 rescale factor (1 = none) */
    /* pass 3 results, per draw */
    int draws;
    double *dot;            /* draws * n_in: <c_i, M> */
    double *mm;             /* draws: ||M||^2 */
    double *chunk_dot;      /* sampling: per read chunk, n_in + 1 */
    double disc_sq[AU_MAXIN], disc_trim[AU_MAXIN], disc_sign[AU_MAXIN];
    uint64_t bytes;         /* input bytes of one pass */
    bool skipped;
    double wscale[AU_MAXIN];/* weight multipliers for this run */
    /* audit_fast.c: trim bounds (|delta| bits), values above them */
    bool fast, bounds, keys_full;
    uint32_t lo_key[AU_MAXIN], hi_key[AU_MAXIN];
    uint64_t above[AU_MAXIN];
} au_task;

typedef struct au_worker {
    size_t cap;             /* floats per buffer */
    size_t n_in;            /* buffers (the most inputs of any tensor) */
    float *x;               /* n_in_max * cap */
    float *s;               /* n_in_max * cap (stacked) */
    uint8_t *keep;          /* n_in_max * cap */
    uint16_t *hx;           /* n_in_max * cap: the inputs' bf16 bits */
    uint8_t *raw;           /* one input's file bytes (pread), raw_cap (in hx) */
    size_t raw_cap;
    float *prob;            /* n_in_max * cap (della) */
    uint64_t *scratch;      /* cols_max */
    uint64_t *hist;         /* n_in_max * 2 * MS_HIST_BINS, lazily */
    float *sign;            /* cols_max + AU_SKETCH_BUCKETS: sketch signs */
    float *g;               /* AU_SKETCH_BUCKETS x AU_P sketch projection */
    struct au_stats_out *stats; /* one chunk's fused statistics */
    float *y;               /* rows_max * AU_P * n_in_max, lazily */
    size_t y_cap;
    uint32_t *keys[AU_MAXIN]; /* audit_fast.c: |delta| bits inside bounds */
    size_t keys_cap[AU_MAXIN], n_keys[AU_MAXIN];
} au_worker;

struct ms_audit {
    ms_audit_opts opts;
    const ms_recipe *recipe;
    const ms_recipe_stage *st;
    ms_recipe_plan *plan;
    ms_merge_method method;
    au_kind sim;
    size_t base_model;      /* stage model index or AU_NONE */
    bool origin;
    ms_model **models;      /* per stage model (NULL when unused) */
    au_task *tasks;
    size_t n_tasks;
    size_t *order;          /* largest first */
    size_t n_in_max;
    int64_t cols_max, rows_max;
    size_t cap;
    size_t chunk_limit;     /* elements per model per chunk (budget applied) */
    int draws;              /* 1 + replicates for random methods */
    /* run state */
    int pass_mask;          /* which passes the current run does */
    atomic_size_t next;
    atomic_bool stop;
    pthread_mutex_t mu;
    ms_error first_err;
    ms_status first_st;
    atomic_uint_fast64_t done_bytes;
    uint64_t total_bytes;
    /* result */
    ms_audit_result res;
    size_t *donor_model;    /* donor -> stage model */
    size_t n_donors;
    /* fingerprints found while planning (shape / vocab / missing) */
    char **mismatch_tensor; size_t *mismatch_donor; int *mismatch_kind;
    size_t n_mismatch;
    /* suggestion scratch */
    ms_recipe_change *changes;
    size_t n_changes;
    double *change_values;
    char **change_filters;
};

/* audit_pass.c */
ms_status au_task_passes(ms_audit *a, au_task *t, au_worker *w, int passes,
                         ms_error *err);
void au_gram_sim(const ms_audit *a, au_task *t);
bool au_chunk_on(const au_task *t, uint64_t c);
/* Rows of chunk c: its first row in *row0, the count returned. */
int64_t au_chunk_rows(const au_task *t, uint64_t c, int64_t *row0);
ms_status au_worker_init(au_worker *w, const ms_audit *a);
/* The worker's histogram space, allocated on first use; NULL: no memory. */
uint64_t *au_worker_hist(au_worker *w, const ms_audit *a);
void au_worker_free(au_worker *w);

#define AU_PASS_BASE 1
#define AU_PASS_STATS 2
#define AU_PASS_SELECT 4
#define AU_PASS_APPLY 8

/* Kernels in audit/isa/ are built per x86-64 level: AU_ISA(f) names the
 * level's copy, and audit_isa.c calls the best one the CPU runs. */
#define AU_ISA_CAT2(f, l) f##_##l
#define AU_ISA_CAT(f, l) AU_ISA_CAT2(f, l)
#define AU_ISA(f) AU_ISA_CAT(f, MS_ISA_LEVEL)

/* isa/stats.c: one row chunk's statistics in one sweep (tasks with at
 * most AU_STATS_MAXIN inputs, a base among them). */
#define AU_STATS_MAXIN 16
typedef struct au_stats_in {
    const float *b;                 /* base, nr * cols */
    const float *x[AU_STATS_MAXIN]; /* the k donors' inputs, nr * cols each */
    /* or, when bh is set, the bf16 bits of the inputs (b and x unused) */
    const uint16_t *bh, *xh[AU_STATS_MAXIN];
    size_t k, nr, cols;
    float small_thr;                /* count |delta| < small_thr (> 0) */
    bool count_small;
    const float *sign;              /* sketch signs, cols rounded up to
                                     * AU_SKETCH_BUCKETS (zeros past cols);
                                     * NULL: no sketch */
    const float *g;                 /* AU_SKETCH_BUCKETS x AU_P projection */
    float *y[AU_STATS_MAXIN];       /* sketch rows of this chunk (nr x AU_P),
                                     * added to */
    /* with bounds: count |delta| bits above hi[q] and append the nonzero
     * ones in [lo[q], hi[q]] to keys[q] (room for nr * cols + 16) */
    bool bounds;
    uint32_t lo[AU_STATS_MAXIN], hi[AU_STATS_MAXIN];
    uint32_t *keys[AU_STATS_MAXIN];
} au_stats_in;

/* Totals the chunk is added to. gram is (k+1) x (k+1), upper triangle,
 * row 0 the base, row 1 + q donor q; nn / opp are k x k, [p * k + q] for
 * p < q. */
struct au_stats_out {
    double gram[AU_STATS_MAXIN * AU_STATS_MAXIN];
    double l1[AU_STATS_MAXIN];
    uint64_t zeros[AU_STATS_MAXIN], small[AU_STATS_MAXIN];
    uint64_t nn[AU_STATS_MAXIN * AU_STATS_MAXIN], opp[AU_STATS_MAXIN * AU_STATS_MAXIN];
    uint64_t above[AU_STATS_MAXIN];
    size_t n_keys[AU_STATS_MAXIN];  /* keys appended */
};
typedef struct au_stats_out au_stats_out;

/*
 * The stable-rank sketch Y = D * S * G: S sends column c, times a random
 * sign, to bucket c mod AU_SKETCH_BUCKETS of its row (one multiply-add per
 * element where a dense probe matrix costs AU_P), and G, a random sign
 * matrix, projects a row's buckets onto the AU_P probes once per row. With
 * at most AU_SKETCH_BUCKETS columns S is a signed identity and the sketch
 * is a dense random-sign sketch; wider rows keep their geometry well in
 * that many buckets.
 */
#define AU_SKETCH_BUCKETS 256
void au_stats_chunk(const au_stats_in *in, au_stats_out *o);
void au_stats_chunk_v4(const au_stats_in *in, au_stats_out *o);
void au_stats_chunk_v3(const au_stats_in *in, au_stats_out *o);
void au_stats_chunk_base(const au_stats_in *in, au_stats_out *o);

/* isa/gta.c: the trim-elect-merge simulation of n elements. */
typedef struct au_gta_in {
    const float *b;                   /* base, n */
    const float *x[AU_STATS_MAXIN];   /* the k donors' inputs (not deltas) */
    /* or, when bh is set, the bf16 bits of the inputs (b and x unused) */
    const uint16_t *bh, *xh[AU_STATS_MAXIN];
    size_t k, n;
    float w[AU_STATS_MAXIN];          /* weights */
    float lam, divisor;               /* lambda; sum of weights (no consensus) */
    bool normalize, consensus;
    /* Trim by |delta| float bits: above thr[q] kept, equal to it kept when
     * tie[q] (the caller settles a run where the ties' cut falls: see
     * audit_fast.c). Keep all: thr 0 and tie; keep none: UINT32_MAX. */
    uint32_t thr[AU_STATS_MAXIN];
    bool tie[AU_STATS_MAXIN];
    /* instead of thr / tie: these keep flags (0/1) */
    const uint8_t *keep[AU_STATS_MAXIN];
    bool explicit_keep;
    uint32_t small_key;               /* count |delta| bits below; 0: none */
} au_gta_in;

/* Added to: per donor <part, M>, the part trimmed and the part lost in
 * the sign election (squared), values equal to thr, small deltas; ||M||^2;
 * conflicts among kept pairs [p * k + q], p < q. (||delta||^2 is the Gram
 * diagonal of the statistics pass.) */
typedef struct au_gta_out {
    double dot[AU_STATS_MAXIN], mm, lost[AU_STATS_MAXIN], sign[AU_STATS_MAXIN];
    uint64_t eq[AU_STATS_MAXIN], small[AU_STATS_MAXIN];
    uint64_t nn[AU_STATS_MAXIN * AU_STATS_MAXIN], opp[AU_STATS_MAXIN * AU_STATS_MAXIN];
} au_gta_out;

void au_gta_chunk(const au_gta_in *in, au_gta_out *o);
void au_gta_chunk_v4(const au_gta_in *in, au_gta_out *o);
void au_gta_chunk_v3(const au_gta_in *in, au_gta_out *o);
void au_gta_chunk_base(const au_gta_in *in, au_gta_out *o);

/* audit_pass.c helpers shared with audit_fast.c */
ms_status au_read_inputs(ms_audit *a, au_task *t, au_worker *w, int64_t row0, int64_t nr,
                         ms_error *err);
void au_progress(ms_audit *a, uint64_t bytes);
/* Read a chunk of every input as bf16 bits into w->hx (input i at i * cap)
 * when all are stored so; false: read them as floats instead. */
bool au_read_bf16(ms_audit *a, const au_task *t, au_worker *w, int64_t row0, int64_t nr);
uint64_t au_chunk_bytes(const au_task *t, int64_t nr);
/* Zero the simulation's results of t (every draw) before a simulation. */
void au_clear_sim(au_task *t);

/* audit_fast.c (see there) */
bool au_fast_ok(const ms_audit *a, const au_task *t);
/* Pre-pass: trim bounds of the cut donors; sets t->bounds when any. */
ms_status au_fast_sample_pass(ms_audit *a, au_task *t, au_worker *w, ms_error *err);
void au_fast_keys_reset(au_task *t, au_worker *w);
/* Room for nn more kept keys per cut donor; false past the budget. */
bool au_fast_keys_room(const ms_audit *a, const au_task *t, au_worker *w, size_t nn);
/* Exact cuts after the statistics pass; false: select them exactly. */
bool au_fast_cuts(au_task *t, au_worker *w);
/* The simulation pass with t->cut. */
ms_status au_fast_apply(ms_audit *a, au_task *t, au_worker *w, bool count_small,
                        ms_error *err);

/* audit.c */
ms_status au_run_tasks(ms_audit *a, int passes, ms_error *err);
void au_reduce(ms_audit *a);
size_t au_scope_of(const ms_audit *a, const au_task *t, ms_audit_per per);

#endif
