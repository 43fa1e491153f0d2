/*
 * compare_gram.c - the fused Gram pass shared by compare and attribute:
 * per chunk, the float64 Gram matrix of [x_0, x_1 - x_0, ...] (a fused
 * vector kernel on blocks) plus per-pair max abs difference, identical
 * count and delta sign agreement; partials kept per chunk and reduced in
 * chunk order.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* Elements per dsyrk block: k blocks of doubles stay in L2. */
#define MS_GRAM_CHUNK_ELEMS ((size_t)256 << 10)
#define GRAM_BLOCK 4096 /* a multiple of RUN */

/* ================================================================ accumulator */

size_t ms_gram_pair_index(size_t k, size_t i, size_t j)
{
    /* pairs (0,1) (0,2) .. (0,k-1) (1,2) .. : row i starts after
     * sum_{r<i} (k-1-r) entries */
    return i * (2 * k - i - 1) / 2 + (j - i - 1);
}

static size_t n_pairs(size_t k)
{
    return k * (k - 1) / 2;
}

ms_status ms_gram_init(ms_gram *a, size_t k, ms_error *err)
{
    memset(a, 0, sizeof(*a));
    if (k == 0)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "gram of zero vectors");
    a->k = k;
    a->g = ms_zalloc_array(k * k, sizeof(double));
    a->pairs = ms_zalloc_array(k > 1 ? n_pairs(k) : 1, sizeof(ms_pair_stats));
    if (!a->g || !a->pairs) {
        ms_gram_free(a);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    return MS_OK;
}

void ms_gram_free(ms_gram *a)
{
    if (!a)
        return;
    free(a->g);
    free(a->pairs);
    a->g = NULL;
    a->pairs = NULL;
}

void ms_gram_zero(ms_gram *a)
{
    a->n = 0;
    memset(a->g, 0, a->k * a->k * sizeof(double));
    if (a->k > 1)
        memset(a->pairs, 0, n_pairs(a->k) * sizeof(ms_pair_stats));
}

void ms_gram_add(ms_gram *a, const ms_gram *b)
{
    a->n += b->n;
    for (size_t i = 0; i < a->k * a->k; i++)
        a->g[i] += b->g[i];
    for (size_t p = 0; p < (a->k > 1 ? n_pairs(a->k) : 0); p++) {
        ms_pair_stats *x = &a->pairs[p];
        const ms_pair_stats *y = &b->pairs[p];
        if (y->max_abs > x->max_abs)
            x->max_abs = y->max_abs;
        x->identical += y->identical;
        x->sign_same += y->sign_same;
        x->sign_both += y->sign_both;
    }
}

/* Upper triangle holds the data (dsyrk writes only that half). */
static double G(const ms_gram *a, size_t i, size_t j)
{
    return i <= j ? a->g[i * a->k + j] : a->g[j * a->k + i];
}

double ms_gram_dot(const ms_gram *a, size_t i, size_t j)
{
    /* x_i = x_0 + d_i with d_0 = 0 */
    double v = G(a, 0, 0);
    if (i > 0)
        v += G(a, 0, i);
    if (j > 0)
        v += G(a, 0, j);
    if (i > 0 && j > 0)
        v += G(a, i, j);
    return v;
}

/* <d_i, d_j> with d_0 = 0. */
static double dd(const ms_gram *a, size_t i, size_t j)
{
    return (i == 0 || j == 0) ? 0.0 : G(a, i, j);
}

double ms_gram_delta_dot(const ms_gram *a, size_t r, size_t i, size_t j)
{
    /* (x_i - x_r) = d_i - d_r */
    return dd(a, i, j) - dd(a, i, r) - dd(a, r, j) + dd(a, r, r);
}

double ms_gram_dist2(const ms_gram *a, size_t i, size_t j)
{
    double v = dd(a, i, i) + dd(a, j, j) - 2.0 * dd(a, i, j);
    return v > 0 ? v : 0.0;
}

/* ================================================================ kernel */

/*
 * The Gram is hand-fused rather than BLAS dsyrk: for the k <= 8 rows we
 * have, OpenBLAS's packing costs ~4 ns of CPU per element (measured), this
 * kernel ~1.2 with 4 lanes. GCC/clang vector extensions: 4 lanes always
 * (SSE2 on x86-64, NEON on arm64), 8 lanes under AVX2 when the CPU has it.
 */
#define RUN 256 /* elements per float32 run; 256 measured 25% faster than 64 */

#define KW 4
#define KSUF v4
#include "compare_gram_kernel.h"
#undef KW
#undef KSUF

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MS_GRAM_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
#define KW 8
#define KSUF v8
#include "compare_gram_kernel.h"
#undef KW
#undef KSUF
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

size_t ms_gram_work_doubles(size_t k)
{
    /* k rows of GRAM_BLOCK floats */
    return (k * GRAM_BLOCK + 1) / 2;
}

static void add_block(ms_gram *acc, const float *const *x, size_t off,
                      size_t b, unsigned flags, float *w)
{
#ifdef MS_GRAM_AVX2
    if (__builtin_cpu_supports("avx2")) {
        add_block_v8(acc, x, off, b, flags, w);
        return;
    }
#endif
    add_block_v4(acc, x, off, b, flags, w);
}

void ms_gram_add_chunk(ms_gram *acc, const float *const *x, size_t n,
                       unsigned flags, double *work)
{
    float *w = (float *)(void *)work;
    for (size_t off = 0; off < n; off += GRAM_BLOCK) {
        size_t b = n - off < GRAM_BLOCK ? n - off : GRAM_BLOCK;
        add_block(acc, x, off, b, flags, w);
    }
    acc->n += n;
}

/*
 * The same as ms_gram_add_chunk on c->x, block by block, but undecoded
 * rows (a lazy stream) are decoded one block at a time into scratch (k x
 * GRAM_BLOCK floats): the decode output stays in L1 for the kernel rather
 * than a whole chunk going through L3 (decode and Gram were memory-bound
 * on the chunk buffers). Same blocks, same values: same bits.
 */
static void add_stream_chunk(ms_gram *acc, const ms_stream_chunk *c,
                             unsigned flags, double *work, float *scratch,
                             const float **xb)
{
    float *w = (float *)(void *)work;
    size_t n = (size_t)c->nrows * (size_t)c->n_cols;
    for (size_t off = 0; off < n; off += GRAM_BLOCK) {
        size_t b = n - off < GRAM_BLOCK ? n - off : GRAM_BLOCK;
        for (size_t i = 0; i < c->k; i++)
            xb[i] = ms_stream_chunk_elems(c, i, off, b, scratch + i * GRAM_BLOCK);
        add_block(acc, xb, 0, b, flags, w);
    }
    acc->n += n;
}

/* ================================================================ the pass */

typedef struct gram_ctx {
    size_t k;
    unsigned flags;
    ms_gram *partials;     /* all chunks of all slots */
    size_t *first;         /* n_slots + 1: partial index of a slot's chunk 0 */
    int64_t *rows;         /* rows per chunk per slot */
    double *work;          /* threads * work doubles */
    size_t work_n;
    float *scratch;        /* threads * k * GRAM_BLOCK: lazy decode */
    const float **xb;      /* threads * k block pointers */
    ms_gram *out;
} gram_ctx;

static ms_status gram_chunk(void *vctx, const ms_stream_chunk *c, ms_error *err)
{
    gram_ctx *ctx = vctx;
    size_t idx = ctx->first[c->slot] + (size_t)(c->row0 / ctx->rows[c->slot]);
    /* each chunk index belongs to exactly one worker: no lock; allocated
     * here and freed in gram_done so only slots in flight hold partials */
    if (!ctx->partials[idx].g) {
        ms_status st = ms_gram_init(&ctx->partials[idx], ctx->k, err);
        if (st)
            return st;
    }
    size_t wk = (size_t)c->worker;
    add_stream_chunk(&ctx->partials[idx], c, ctx->flags,
                     ctx->work + wk * ctx->work_n,
                     ctx->scratch + wk * ctx->k * GRAM_BLOCK, ctx->xb + wk * ctx->k);
    return MS_OK;
}

static ms_status gram_done(void *vctx, size_t slot, ms_error *err)
{
    gram_ctx *ctx = vctx;
    (void)err;
    for (size_t p = ctx->first[slot]; p < ctx->first[slot + 1]; p++) {
        if (ctx->partials[p].g)
            ms_gram_add(&ctx->out[slot], &ctx->partials[p]);
        ms_gram_free(&ctx->partials[p]);
    }
    return MS_OK;
}

static void gram_ctx_free(gram_ctx *ctx, size_t n_partials)
{
    if (ctx->partials)
        for (size_t p = 0; p < n_partials; p++)
            ms_gram_free(&ctx->partials[p]);
    free(ctx->partials);
    free(ctx->first);
    free(ctx->rows);
    free(ctx->work);
    free(ctx->scratch);
    free(ctx->xb);
}

static ms_status gram_plan(gram_ctx *ctx, const ms_stream_job *job,
                           const ms_stream_opts *opts, size_t *n_partials,
                           ms_error *err)
{
    ctx->first = ms_zalloc_array(job->n_slots + 1, sizeof(size_t));
    ctx->rows = ms_zalloc_array(job->n_slots + 1, sizeof(int64_t));
    if (!ctx->first || !ctx->rows)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t total = 0;
    for (size_t s = 0; s < job->n_slots; s++) {
        const ms_tensor *t = job->tensors[s * job->k];
        int64_t r = ms_stream_rows_per_chunk(opts, t->n_rows, t->n_cols);
        ctx->first[s] = total;
        ctx->rows[s] = r > 0 ? r : 1;
        if (r > 0)
            total += (size_t)((t->n_rows + r - 1) / r);
    }
    ctx->first[job->n_slots] = total;
    *n_partials = total;
    ctx->partials = ms_zalloc_array(total ? total : 1, sizeof(ms_gram));
    if (!ctx->partials)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    return MS_OK;
}

ms_status ms_gram_run(const ms_stream_job *job, const ms_stream_opts *user,
                      unsigned flags, ms_gram **out, ms_error *err)
{
    /* chunks of 256 Ki elements per model keep a worker's k decoded rows
     * in L2/L3 between the decoder and this kernel (measured ~15% faster
     * than 1 Mi on tinyllama) */
    ms_stream_opts local;
    memset(&local, 0, sizeof(local));
    if (user)
        local = *user;
    if (!local.chunk_elems)
        local.chunk_elems = MS_GRAM_CHUNK_ELEMS;
    const ms_stream_opts *opts = &local;
    gram_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.k = job->k;
    ctx.flags = flags;
    *out = NULL;
    size_t n_partials = 0;
    ms_gram *res = ms_zalloc_array(job->n_slots ? job->n_slots : 1, sizeof(ms_gram));
    if (!res)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    ms_status st = MS_OK;
    for (size_t s = 0; s < job->n_slots && !st; s++)
        st = ms_gram_init(&res[s], job->k, err);
    if (!st)
        st = gram_plan(&ctx, job, opts, &n_partials, err);
    int threads = opts && opts->threads > 0 ? opts->threads : ms_cpu_count();
    ctx.work_n = ms_gram_work_doubles(job->k);
    if (!st) {
        ctx.work = ms_alloc_array((size_t)threads * ctx.work_n, sizeof(double));
        ctx.scratch = ms_alloc_array((size_t)threads * job->k,
                                     GRAM_BLOCK * sizeof(float));
        ctx.xb = ms_alloc_array((size_t)threads * job->k, sizeof(*ctx.xb));
        if (!ctx.work || !ctx.scratch || !ctx.xb)
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    ctx.out = res;
    if (!st)
        st = ms_stream_run_lazy(job, opts, gram_chunk, gram_done, &ctx, err);
    gram_ctx_free(&ctx, n_partials);
    if (st) {
        for (size_t s = 0; s < job->n_slots; s++)
            ms_gram_free(&res[s]);
        free(res);
        return st;
    }
    *out = res;
    return MS_OK;
}

/* ================================================================ matching */

static ms_status add_unmatched(ms_unmatched **u, size_t *n, size_t *cap,
                               const char *name, size_t model, int reason,
                               ms_error *err)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        ms_unmatched *nu = ms_realloc_array(*u, nc, sizeof(**u));
        if (!nu)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        *u = nu;
        *cap = nc;
    }
    (*u)[*n].name = ms_strdup(name);
    if (!(*u)[*n].name)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    (*u)[*n].model = model;
    (*u)[*n].reason = reason;
    (*n)++;
    return MS_OK;
}

static bool same_shape(const ms_tensor *a, const ms_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

ms_status ms_analyze_unmatched(const ms_model *const *models, size_t n,
                               ms_unmatched **out, size_t *n_out,
                               ms_error *err)
{
    ms_unmatched *u = NULL;
    size_t nu = 0, cap = 0;
    ms_status st = MS_OK;
    /* models[0]'s tensors missing or different elsewhere */
    for (size_t t = 0; t < models[0]->n_tensors && !st; t++) {
        const ms_tensor *a = &models[0]->tensors[t];
        for (size_t m = 1; m < n && !st; m++) {
            const ms_tensor *b = ms_model_find(models[m], a->name);
            if (!b || !same_shape(a, b)) {
                st = add_unmatched(&u, &nu, &cap, a->name, m, b ? 1 : 0, err);
                break;
            }
        }
    }
    /* tensors of later models that models[0] lacks (listed once) */
    for (size_t m = 1; m < n && !st; m++)
        for (size_t t = 0; t < models[m]->n_tensors && !st; t++) {
            const char *name = models[m]->tensors[t].name;
            if (ms_model_find(models[0], name))
                continue;
            bool seen = false;
            for (size_t p = 1; p < m && !seen; p++)
                seen = ms_model_find(models[p], name) != NULL;
            if (!seen)
                st = add_unmatched(&u, &nu, &cap, name, 0, 0, err);
        }
    if (st) {
        ms_unmatched_free(u, nu);
        return st;
    }
    *out = u;
    *n_out = nu;
    return MS_OK;
}

ms_status ms_analyze_add_undecodable(ms_unmatched **u, size_t *n,
                                     const ms_stream_skip *sk, size_t n_sk,
                                     ms_error *err)
{
    size_t cap = *n;
    for (size_t i = 0; i < n_sk; i++) {
        if (sk[i].reason != 2)
            continue;
        ms_status st = add_unmatched(u, n, &cap, sk[i].name, sk[i].model, 2, err);
        if (st)
            return st;
    }
    return MS_OK;
}

void ms_unmatched_free(ms_unmatched *u, size_t n)
{
    if (!u)
        return;
    for (size_t i = 0; i < n; i++)
        free(u[i].name);
    free(u);
}
