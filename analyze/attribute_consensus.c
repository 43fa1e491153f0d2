/*
 * attribute_consensus.c - consensus shares (see analyze.h): a second pass
 * that splits each element of the merged delta among the donors agreeing
 * with its sign, in proportion to their fitted contributions.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

typedef struct cons_ctx {
    size_t k;
    const ms_attribute_result *r;
    double *partials;      /* (k + 1) per chunk */
    size_t *first;         /* n_slots + 1 */
    int64_t *rows;
    double *slot;          /* (k + 1) per slot */
} cons_ctx;

static ms_status cons_chunk(void *vctx, const ms_stream_chunk *c, ms_error *err)
{
    cons_ctx *ctx = vctx;
    size_t k = ctx->k, n = (size_t)c->nrows * (size_t)c->n_cols;
    const double *alpha = ctx->r->tensors[c->slot].fit.coef;
    double *p = ctx->partials
        + (ctx->first[c->slot] + (size_t)(c->row0 / ctx->rows[c->slot])) * (k + 1);
    double *ci = ms_alloc_array(k, sizeof(double));
    if (!ci)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    const float *x0 = c->x[0], *xm = c->x[1];
    for (size_t e = 0; e < n; e++) {
        double m = (double)xm[e] - (double)x0[e];
        if (m == 0)
            continue;
        double tot = 0;
        for (size_t i = 0; i < k; i++) {
            double v = alpha[i] * ((double)c->x[2 + i][e] - (double)x0[e]);
            ci[i] = (v > 0) == (m > 0) && v != 0 ? v : 0;
            tot += ci[i];
        }
        double m2 = m * m;
        if (tot == 0) {
            p[k] += m2;
            continue;
        }
        for (size_t i = 0; i < k; i++)
            p[i] += ci[i] / tot * m2;
    }
    free(ci);
    return MS_OK;
}

static ms_status cons_done(void *vctx, size_t slot, ms_error *err)
{
    cons_ctx *ctx = vctx;
    (void)err;
    size_t w = ctx->k + 1;
    for (size_t p = ctx->first[slot]; p < ctx->first[slot + 1]; p++)
        for (size_t i = 0; i < w; i++)
            ctx->slot[slot * w + i] += ctx->partials[p * w + i];
    return MS_OK;
}

static ms_status cons_plan(cons_ctx *ctx, const ms_stream_job *job,
                           const ms_stream_opts *opts, ms_error *err)
{
    size_t w = ctx->k + 1, n = job->n_slots;
    ctx->first = ms_zalloc_array(n + 1, sizeof(size_t));
    ctx->rows = ms_zalloc_array(n + 1, sizeof(int64_t));
    ctx->slot = ms_zalloc_array((n ? n : 1) * w, sizeof(double));
    if (!ctx->first || !ctx->rows || !ctx->slot)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t total = 0;
    for (size_t s = 0; s < n; s++) {
        const ms_tensor *t = job->tensors[s * job->k];
        int64_t r = ms_stream_rows_per_chunk(opts, t->n_rows, t->n_cols);
        ctx->first[s] = total;
        ctx->rows[s] = r > 0 ? r : 1;
        if (r > 0)
            total += (size_t)((t->n_rows + r - 1) / r);
    }
    ctx->first[n] = total;
    ctx->partials = ms_zalloc_array((total ? total : 1) * w, sizeof(double));
    return ctx->partials ? MS_OK : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
}

/* Scope figures from summed per-slot numerators and the fit's ||M||^2. */
static ms_status cons_set(ms_attr_scope *sc, const double *num, size_t k,
                          ms_error *err)
{
    sc->consensus = ms_alloc_array(k, sizeof(double));
    if (!sc->consensus)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    double mm = sc->fit.mm;
    for (size_t i = 0; i < k; i++)
        sc->consensus[i] = mm > 0 ? num[i] / mm : NAN;
    sc->consensus_unattributed = mm > 0 ? num[k] / mm : NAN;
    return MS_OK;
}

static ms_status cons_pool(ms_attribute_result *r, const double *slot,
                           ms_error *err)
{
    size_t k = r->k, w = k + 1;
    int max_layer = -1;
    for (size_t s = 0; s < r->n_tensors; s++)
        if (r->tensors[s].layer > max_layer)
            max_layer = r->tensors[s].layer;
    size_t nl = (size_t)(max_layer + 1);
    /* layers, 3 filters, overall */
    double *acc = ms_zalloc_array((nl + 4) * w, sizeof(double));
    if (!acc)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    ms_status st = MS_OK;
    for (size_t s = 0; s < r->n_tensors && !st; s++) {
        const ms_attr_scope *t = &r->tensors[s];
        size_t dst[3] = {t->layer >= 0 ? (size_t)t->layer : (size_t)-1,
                         nl + (size_t)t->filter, nl + 3};
        for (size_t d = 0; d < 3; d++)
            for (size_t i = 0; dst[d] != (size_t)-1 && i < w; i++)
                acc[dst[d] * w + i] += slot[s * w + i];
        st = cons_set(&r->tensors[s], slot + s * w, k, err);
    }
    for (size_t l = 0; l < r->n_layers && !st; l++)
        st = cons_set(&r->layers[l], acc + (size_t)r->layers[l].layer * w, k, err);
    for (size_t f = 0; f < 3 && !st; f++)
        st = cons_set(&r->filters[f], acc + (nl + f) * w, k, err);
    if (!st)
        st = cons_set(&r->overall, acc + (nl + 3) * w, k, err);
    free(acc);
    return st;
}

ms_status ms_attribute_consensus(ms_attribute_result *r, const ms_model *base,
                                 const ms_model *merged,
                                 const ms_model *const *donors, size_t k,
                                 const ms_stream_opts *opts, ms_error *err)
{
    if (!base || !r->has_base || k != r->k)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "consensus shares need the base and the result's donors");
    size_t rows = k + 2;
    const ms_model **models = ms_zalloc_array(rows, sizeof(*models));
    if (!models)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    models[0] = base;
    models[1] = merged;
    for (size_t i = 0; i < k; i++)
        models[2 + i] = donors[i];
    const ms_tensor **slots = NULL;
    size_t n_slots = 0, n_sk = 0;
    ms_stream_skip *sk = NULL;
    cons_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.k = k;
    ctx.r = r;
    ms_status st = ms_stream_match(models, rows, &slots, &n_slots, &sk, &n_sk, err);
    if (!st && n_slots != r->n_tensors)
        st = ms_error_set(err, MS_ERR_USAGE, NULL, -1, "models differ from the attribution's");
    ms_stream_job job = {models, rows, slots, n_slots};
    if (!st)
        st = cons_plan(&ctx, &job, opts, err);
    if (!st)
        st = ms_stream_run(&job, opts, cons_chunk, cons_done, &ctx, err);
    if (!st)
        st = cons_pool(r, ctx.slot, err);
    free(ctx.partials);
    free(ctx.first);
    free(ctx.rows);
    free(ctx.slot);
    free(slots);
    free(sk);
    free(models);
    return st;
}
