/*
 * provenance_sketch.c - random-projection sketches of every layer of a
 * model in one pass: S_l = sum over the layer's tensors of Rr^T W Rc, with
 * +-1 projections drawn from a counter-based hash so every model and every
 * layer sees the same projection for a tensor kind (see analyze.h).
 */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* splitmix64 finaliser: a counter-based generator, no state. */
static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* +-1 for (seed, kind, side, index, output). */
static float rsign(uint64_t seed, uint64_t kind, uint64_t side, uint64_t idx,
                   uint64_t out)
{
    uint64_t h = mix64(seed ^ mix64(kind * 4 + side) ^ mix64(idx * 64 + out + 0x5bd1e995ull));
    return (h >> 63) ? -1.0f : 1.0f;
}

/* Per-worker scratch: the column projection of the last (kind, width)
 * seen (regenerating it per chunk cost ~10%), and the row products. */
typedef struct sketch_scratch {
    uint64_t kind;
    int64_t cols;
    float *rc;             /* cols x B */
    float *t;              /* B */
} sketch_scratch;

typedef struct sketch_ctx {
    uint64_t seed;
    const ms_tensor *const *slots;
    double **partials;     /* per chunk: SK_STRIDE doubles, allocated by
                              the chunk's worker, freed in sketch_done */
    size_t n_partials;
    size_t *first;         /* n_slots + 1 */
    int64_t *rows;
    double *slot_sk;       /* (MS_SKETCH_DIM + 1) per slot */
    sketch_scratch *scr;   /* one per worker */
    int n_scr;
} sketch_ctx;

#define SK_STRIDE (MS_SKETCH_DIM + 1)

/* Four-lane float vectors (GCC/clang vector extension); B = 16 columns
 * are four of them. A hand loop rather than sgemm: with 16 output
 * columns OpenBLAS spends as long packing as multiplying, and its own
 * threads spin against our workers (measured). */
typedef float v4f __attribute__((vector_size(16)));

static ms_status scratch_get(sketch_ctx *ctx, int worker, uint64_t kind,
                             int64_t cols, sketch_scratch **out, ms_error *err)
{
    if (worker < 0 || worker >= ctx->n_scr)
        return ms_error_set(err, MS_ERR_INTERNAL, NULL, -1, "worker %d out of range", worker);
    sketch_scratch *s = &ctx->scr[worker];
    if (!s->t) {
        s->t = ms_alloc_array(MS_SKETCH_B, sizeof(float));
        if (!s->t)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    if (!s->rc || s->kind != kind || s->cols != cols) {
        float *rc = ms_alloc_array((size_t)cols * MS_SKETCH_B, sizeof(float));
        if (!rc)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        free(s->rc);
        s->rc = rc;
        s->kind = kind;
        s->cols = cols;
        for (int64_t j = 0; j < cols; j++)
            for (size_t b = 0; b < MS_SKETCH_B; b++)
                rc[(size_t)j * MS_SKETCH_B + b] = rsign(ctx->seed, kind, 1, (uint64_t)j, b);
    }
    *out = s;
    return MS_OK;
}

/* t[0..16) = x[0..nc) Rc (nc x 16), float32, fixed order; returns the
 * row's sum of squares (float32 over the row, the caller sums rows in
 * float64). */
static float row_project(const float *x, const float *rc, size_t nc, float *t)
{
    v4f a0 = {0, 0, 0, 0}, a1 = a0, a2 = a0, a3 = a0, q = a0, r;
    for (size_t j = 0; j < nc; j++) {
        v4f xv = {x[j], x[j], x[j], x[j]};
        const float *rj = rc + j * MS_SKETCH_B;
        memcpy(&r, rj, sizeof(r));
        a0 += xv * r;
        memcpy(&r, rj + 4, sizeof(r));
        a1 += xv * r;
        memcpy(&r, rj + 8, sizeof(r));
        a2 += xv * r;
        memcpy(&r, rj + 12, sizeof(r));
        a3 += xv * r;
        q += xv * xv;
    }
    memcpy(t, &a0, sizeof(a0));
    memcpy(t + 4, &a1, sizeof(a1));
    memcpy(t + 8, &a2, sizeof(a2));
    memcpy(t + 12, &a3, sizeof(a3));
    return q[0];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SKETCH_AVX2 1
typedef float v8f __attribute__((vector_size(32)));

/* The same with eight lanes (two vectors for 16 columns) and FMA. Results
 * differ from the four-lane version only by rounding; a run uses one
 * version for every model, so copies still give identical sketches. */
__attribute__((target("avx2,fma")))
static float row_project_avx2(const float *x, const float *rc, size_t nc, float *t)
{
    v8f a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0}, q = {0}, r;
    size_t j = 0;
    for (; j + 2 <= nc; j += 2) {
        v8f xv = {x[j], x[j], x[j], x[j], x[j], x[j], x[j], x[j]};
        v8f yv = {x[j + 1], x[j + 1], x[j + 1], x[j + 1], x[j + 1], x[j + 1], x[j + 1], x[j + 1]};
        const float *rj = rc + j * MS_SKETCH_B;
        memcpy(&r, rj, sizeof(r));
        a0 += xv * r;
        memcpy(&r, rj + 8, sizeof(r));
        a1 += xv * r;
        memcpy(&r, rj + 16, sizeof(r));
        b0 += yv * r;
        memcpy(&r, rj + 24, sizeof(r));
        b1 += yv * r;
        q += xv * xv + yv * yv;
    }
    for (; j < nc; j++) {
        v8f xv = {x[j], x[j], x[j], x[j], x[j], x[j], x[j], x[j]};
        const float *rj = rc + j * MS_SKETCH_B;
        memcpy(&r, rj, sizeof(r));
        a0 += xv * r;
        memcpy(&r, rj + 8, sizeof(r));
        a1 += xv * r;
        q += xv * xv;
    }
    a0 += b0;
    a1 += b1;
    memcpy(t, &a0, sizeof(a0));
    memcpy(t + 8, &a1, sizeof(a1));
    return q[0];
}
#endif

static ms_status sketch_chunk(void *vctx, const ms_stream_chunk *c, ms_error *err)
{
    sketch_ctx *ctx = vctx;
    const ms_tensor *t = ctx->slots[c->slot];
    size_t nr = (size_t)c->nrows, nc = (size_t)c->n_cols;
    uint64_t kind = (uint64_t)t->kind;
    sketch_scratch *s = NULL;
    ms_status st = scratch_get(ctx, c->worker, kind, c->n_cols, &s, err);
    if (st)
        return st;
    size_t idx = ctx->first[c->slot] + (size_t)(c->row0 / ctx->rows[c->slot]);
    if (!ctx->partials[idx]) {
        ctx->partials[idx] = ms_zalloc_array(SK_STRIDE, sizeof(double));
        if (!ctx->partials[idx])
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    double *p = ctx->partials[idx];
    double sq = 0;
#ifdef SKETCH_AVX2
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    for (size_t r = 0; r < nr; r++) {
        const float *x = c->x[0] + r * nc;
#ifdef SKETCH_AVX2
        if (avx2)
            sq += row_project_avx2(x, s->rc, nc, s->t);
        else
#endif
            sq += row_project(x, s->rc, nc, s->t);
        uint64_t row = (uint64_t)c->row0 + r;
        for (size_t a = 0; a < MS_SKETCH_A; a++) {
            double sg = rsign(ctx->seed, kind, 0, row, a);
            double *pa = p + a * MS_SKETCH_B;
            for (size_t b = 0; b < MS_SKETCH_B; b++)
                pa[b] += sg * s->t[b];
        }
    }
    p[MS_SKETCH_DIM] += sq;
    return MS_OK;
}

static ms_status sketch_done(void *vctx, size_t slot, ms_error *err)
{
    sketch_ctx *ctx = vctx;
    (void)err;
    double *dst = ctx->slot_sk + slot * SK_STRIDE;
    for (size_t p = ctx->first[slot]; p < ctx->first[slot + 1]; p++) {
        for (size_t i = 0; ctx->partials[p] && i < SK_STRIDE; i++)
            dst[i] += ctx->partials[p][i];
        free(ctx->partials[p]);
        ctx->partials[p] = NULL;
    }
    return MS_OK;
}

void ms_sketch_free(ms_sketch *s)
{
    if (!s)
        return;
    free(s->s);
    free(s->sqnorm);
    s->s = NULL;
    s->sqnorm = NULL;
}

/* The layer tensors of m, and the number of layers they span. */
static ms_status layer_slots(const ms_model *m, const ms_tensor ***out,
                             size_t *n, int *n_layers, ms_error *err)
{
    const ms_tensor **sl = ms_zalloc_array(m->n_tensors ? m->n_tensors : 1,
                                           sizeof(*sl));
    if (!sl)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t c = 0;
    int nl = m->n_layers > 0 ? m->n_layers : 0;
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        if (t->layer < 0)
            continue;
        sl[c++] = t;
        if (t->layer + 1 > nl)
            nl = t->layer + 1;
    }
    *out = sl;
    *n = c;
    *n_layers = nl;
    return MS_OK;
}

static ms_status plan_chunks(sketch_ctx *ctx, size_t n, const ms_stream_opts *opts,
                             ms_error *err)
{
    ctx->first = ms_zalloc_array(n + 1, sizeof(size_t));
    ctx->rows = ms_zalloc_array(n + 1, sizeof(int64_t));
    ctx->slot_sk = ms_zalloc_array((n ? n : 1) * SK_STRIDE, sizeof(double));
    if (!ctx->first || !ctx->rows || !ctx->slot_sk)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t total = 0;
    for (size_t s = 0; s < n; s++) {
        const ms_tensor *t = ctx->slots[s];
        int64_t r = ms_stream_rows_per_chunk(opts, t->n_rows, t->n_cols);
        ctx->first[s] = total;
        ctx->rows[s] = r > 0 ? r : 1;
        if (r > 0)
            total += (size_t)((t->n_rows + r - 1) / r);
    }
    ctx->first[n] = total;
    ctx->n_partials = total;
    ctx->partials = ms_zalloc_array(total ? total : 1, sizeof(double *));
    if (!ctx->partials)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    return MS_OK;
}

ms_status ms_sketch_model(const ms_model *m, const ms_stream_opts *opts,
                          uint64_t seed, ms_sketch *out, ms_error *err)
{
    memset(out, 0, sizeof(*out));
    sketch_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.seed = seed;
    const ms_tensor **sl = NULL;
    size_t n = 0;
    int nl = 0;
    ms_status st = layer_slots(m, &sl, &n, &nl, err);
    ctx.slots = sl;
    ctx.n_scr = opts && opts->threads > 0 ? opts->threads : ms_cpu_count();
    ctx.scr = ms_zalloc_array((size_t)ctx.n_scr, sizeof(sketch_scratch));
    if (!st && !ctx.scr)
        st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if (!st)
        st = plan_chunks(&ctx, n, opts, err);
    if (!st) {
        const ms_model *one[1] = {m};
        ms_stream_job job = {one, 1, sl, n};
        st = ms_stream_run(&job, opts, sketch_chunk, sketch_done, &ctx, err);
    }
    if (!st) {
        out->n_layers = nl;
        out->s = ms_zalloc_array((size_t)(nl ? nl : 1) * MS_SKETCH_DIM, sizeof(double));
        out->sqnorm = ms_zalloc_array((size_t)(nl ? nl : 1), sizeof(double));
        if (!out->s || !out->sqnorm)
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    /* slots in model order: a fixed summation order per layer */
    for (size_t s = 0; s < n && !st; s++) {
        const double *src = ctx.slot_sk + s * SK_STRIDE;
        double *dst = out->s + (size_t)sl[s]->layer * MS_SKETCH_DIM;
        for (size_t i = 0; i < MS_SKETCH_DIM; i++)
            dst[i] += src[i];
        out->sqnorm[sl[s]->layer] += src[MS_SKETCH_DIM];
    }
    for (int w = 0; ctx.scr && w < ctx.n_scr; w++) {
        free(ctx.scr[w].rc);
        free(ctx.scr[w].t);
    }
    free(ctx.scr);
    for (size_t p = 0; ctx.partials && p < ctx.n_partials; p++)
        free(ctx.partials[p]);
    free(ctx.partials);
    free(ctx.first);
    free(ctx.rows);
    free(ctx.slot_sk);
    free(sl);
    if (st)
        ms_sketch_free(out);
    return st;
}
