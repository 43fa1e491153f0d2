/*
 * provenance_sketch.c - random-projection sketches of every layer of a
 * model in one pass: S_l = sum over the layer's tensors of Rr^T W Rc, with
 * +-1 projections drawn from a counter-based hash so every model and every
 * layer sees the same projection for a tensor kind (see analyze.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

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

typedef struct sketch_ctx {
    uint64_t seed;
    const ms_tensor *const *slots;
    double *partials;      /* (MS_SKETCH_DIM + 1) per chunk */
    size_t *first;         /* n_slots + 1 */
    int64_t *rows;
    double *slot_sk;       /* (MS_SKETCH_DIM + 1) per slot */
} sketch_ctx;

#define SK_STRIDE (MS_SKETCH_DIM + 1)

static ms_status sketch_chunk(void *vctx, const ms_stream_chunk *c, ms_error *err)
{
    sketch_ctx *ctx = vctx;
    const ms_tensor *t = ctx->slots[c->slot];
    size_t nr = (size_t)c->nrows, nc = (size_t)c->n_cols;
    uint64_t kind = (uint64_t)t->kind;
    float *rc = ms_alloc_array(nc * MS_SKETCH_B, sizeof(float));
    float *tt = ms_alloc_array(nr * MS_SKETCH_B, sizeof(float));
    if (!rc || !tt) {
        free(rc);
        free(tt);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    for (size_t j = 0; j < nc; j++)
        for (size_t b = 0; b < MS_SKETCH_B; b++)
            rc[j * MS_SKETCH_B + b] = rsign(ctx->seed, kind, 1, j, b);
    /* T = X Rc: (nr x nc) (nc x B) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nr,
                MS_SKETCH_B, (int)nc, 1.0f, c->x[0], (int)nc, rc,
                MS_SKETCH_B, 0.0f, tt, MS_SKETCH_B);
    double *p = ctx->partials
        + (ctx->first[c->slot] + (size_t)(c->row0 / ctx->rows[c->slot])) * SK_STRIDE;
    for (size_t r = 0; r < nr; r++) {
        uint64_t row = (uint64_t)c->row0 + r;
        const float *tr = tt + r * MS_SKETCH_B;
        for (size_t a = 0; a < MS_SKETCH_A; a++) {
            double s = rsign(ctx->seed, kind, 0, row, a);
            double *pa = p + a * MS_SKETCH_B;
            for (size_t b = 0; b < MS_SKETCH_B; b++)
                pa[b] += s * tr[b];
        }
    }
    double sq = 0;
    const float *x = c->x[0];
    for (size_t e = 0; e < nr * nc; e++)
        sq += (double)x[e] * x[e];
    p[MS_SKETCH_DIM] += sq;
    free(rc);
    free(tt);
    return MS_OK;
}

static ms_status sketch_done(void *vctx, size_t slot, ms_error *err)
{
    sketch_ctx *ctx = vctx;
    (void)err;
    double *dst = ctx->slot_sk + slot * SK_STRIDE;
    for (size_t p = ctx->first[slot]; p < ctx->first[slot + 1]; p++)
        for (size_t i = 0; i < SK_STRIDE; i++)
            dst[i] += ctx->partials[p * SK_STRIDE + i];
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
    ctx->partials = ms_zalloc_array((total ? total : 1) * SK_STRIDE, sizeof(double));
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
    free(ctx.partials);
    free(ctx.first);
    free(ctx.rows);
    free(ctx.slot_sk);
    free(sl);
    if (st)
        ms_sketch_free(out);
    return st;
}
