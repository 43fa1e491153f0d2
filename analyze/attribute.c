/*
 * attribute.c - least-squares attribution of a merged model to its donors:
 * per tensor, layer, filter class and overall, each scope one fit over the
 * summed Gram matrices of its tensors (DESIGN.md "Shares").
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* LAPACK from libopenblas (no LAPACKE header on Debian); the trailing
 * size_t arguments are the hidden lengths of the character arguments. */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n,
                    double *a, const int *lda, double *w, double *work,
                    const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);

/* ================================================================ the fit */

void ms_fit_free(ms_fit *f)
{
    if (!f)
        return;
    free(f->coef);
    free(f->share);
    f->coef = NULL;
    f->share = NULL;
}

/* Eigen-decomposition of the m x m symmetric a (overwritten with the
 * eigenvectors, column-major) into w ascending. */
static ms_status eig(double *a, int m, double *w, ms_error *err)
{
    int lwork = -1, liwork = -1, info = 0, iw = 0;
    double wq = 0;
    dsyevd_("V", "U", &m, a, &m, w, &wq, &lwork, &iw, &liwork, &info, 1, 1);
    if (info != 0)
        return ms_error_set(err, MS_ERR_INTERNAL, NULL, -1, "dsyevd workspace query failed (info %d)", info);
    lwork = (int)wq + 1;
    liwork = iw + 1;
    double *work = ms_alloc_array((size_t)lwork, sizeof(double));
    int *iwork = ms_alloc_array((size_t)liwork, sizeof(int));
    if (!work || !iwork) {
        free(work);
        free(iwork);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    dsyevd_("V", "U", &m, a, &m, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    free(work);
    free(iwork);
    if (info != 0)
        return ms_error_set(err, MS_ERR_INTERNAL, NULL, -1, "dsyevd failed (info %d)", info);
    return MS_OK;
}

/* Minimum-norm solution of the equilibrated system over the active
 * (non-zero) donors; coef and condition out. */
static ms_status solve_active(const double *A, const double *b, size_t k,
                              double *coef, double *cond, ms_error *err)
{
    size_t m = 0;
    size_t *act = ms_alloc_array(k, sizeof(size_t));
    double *sc = ms_alloc_array(k, sizeof(double));
    double *a = ms_zalloc_array(k * k, sizeof(double));
    double *w = ms_zalloc_array(k, sizeof(double));
    double *y = ms_zalloc_array(k, sizeof(double));
    ms_status st = MS_OK;
    if (!act || !sc || !a || !w || !y) {
        st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < k; i++) {
        coef[i] = 0;
        if (A[i * k + i] > 0 && isfinite(A[i * k + i])) {
            sc[m] = 1.0 / sqrt(A[i * k + i]);
            act[m++] = i;
        }
    }
    *cond = m < k ? INFINITY : 1.0;
    if (m == 0)
        goto done;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < m; j++)
            a[j * m + i] = A[act[i] * k + act[j]] * sc[i] * sc[j];
    st = eig(a, (int)m, w, err);
    if (st)
        goto done;
    double wmax = w[m - 1], cut = 1e-12 * wmax;
    for (size_t e = 0; e < m; e++) {
        if (!(w[e] > cut))
            continue;
        double p = 0;
        for (size_t i = 0; i < m; i++)
            p += a[e * m + i] * b[act[i]] * sc[i];
        for (size_t i = 0; i < m; i++)
            y[i] += a[e * m + i] * p / w[e];
    }
    for (size_t i = 0; i < m; i++)
        coef[act[i]] = y[i] * sc[i];
    if (m == k)
        *cond = w[0] > cut ? wmax / w[0] : INFINITY;
done:
    free(act);
    free(sc);
    free(a);
    free(w);
    free(y);
    return st;
}

ms_status ms_fit_solve(const double *A, const double *b, double mm, size_t k,
                       ms_fit *out, ms_error *err)
{
    memset(out, 0, sizeof(*out));
    out->k = k;
    out->mm = mm;
    out->coef = ms_zalloc_array(k ? k : 1, sizeof(double));
    out->share = ms_zalloc_array(k ? k : 1, sizeof(double));
    if (!out->coef || !out->share) {
        ms_fit_free(out);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    ms_status st = solve_active(A, b, k, out->coef, &out->condition, err);
    if (st) {
        ms_fit_free(out);
        return st;
    }
    out->ill_conditioned = !(out->condition <= MS_FIT_ILL_CONDITION);
    double sum = 0;
    for (size_t i = 0; i < k; i++) {
        out->share[i] = mm > 0 ? out->coef[i] * b[i] / mm : 0.0;
        sum += out->share[i];
    }
    out->residual = mm > 0 ? 1.0 - sum : NAN;
    return MS_OK;
}

/* ================================================================ scopes */

typedef struct attr_rows {
    size_t k;          /* donors */
    bool has_base;
    size_t m;          /* row of the merged model */
    size_t d0;         /* row of donor 0 */
} attr_rows;

/* <u, v> of the fitted vectors: deltas vs base, or raw without a base. */
static double fdot(const attr_rows *r, const ms_gram *g, size_t i, size_t j)
{
    return r->has_base ? ms_gram_delta_dot(g, 0, i, j) : ms_gram_dot(g, i, j);
}

static ms_status scope_fit(const attr_rows *r, const ms_gram *g,
                           ms_attr_scope *sc, ms_error *err)
{
    size_t k = r->k;
    double *A = ms_alloc_array(k * k, sizeof(double));
    double *b = ms_alloc_array(k, sizeof(double));
    sc->sign_agreement = ms_alloc_array(k, sizeof(double));
    if (!A || !b || !sc->sign_agreement) {
        free(A);
        free(b);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < k; j++)
            A[i * k + j] = fdot(r, g, r->d0 + i, r->d0 + j);
        b[i] = fdot(r, g, r->d0 + i, r->m);
        const ms_pair_stats *ps = &g->pairs[ms_gram_pair_index(g->k, r->m, r->d0 + i)];
        /* without a base the kernel's deltas are vs the merged model:
         * no sign figure */
        sc->sign_agreement[i] = (r->has_base && ps->sign_both)
            ? (double)ps->sign_same / (double)ps->sign_both : NAN;
    }
    ms_status st = ms_fit_solve(A, b, fdot(r, g, r->m, r->m), k, &sc->fit, err);
    free(A);
    free(b);
    return st;
}

static void scope_free(ms_attr_scope *sc)
{
    free(sc->name);
    ms_fit_free(&sc->fit);
    free(sc->sign_agreement);
    free(sc->intended);
    free(sc->consensus);
}

void ms_attribute_result_free(ms_attribute_result *r)
{
    if (!r)
        return;
    free(r->base);
    free(r->merged);
    for (size_t i = 0; i < r->k; i++)
        if (r->donors)
            free(r->donors[i]);
    free(r->donors);
    scope_free(&r->overall);
    for (int f = 0; f < 3; f++)
        scope_free(&r->filters[f]);
    for (size_t i = 0; i < r->n_layers; i++)
        scope_free(&r->layers[i]);
    free(r->layers);
    for (size_t i = 0; i < r->n_tensors; i++)
        scope_free(&r->tensors[i]);
    free(r->tensors);
    ms_unmatched_free(r->unmatched, r->n_unmatched);
    free(r->method);
    free(r);
}

/* A pooled scope under construction: its Gram and element-weighted sum of
 * intended weights. */
typedef struct pool {
    ms_gram g;
    double *iw;
    double n;
} pool;

static ms_status pool_init(pool *p, size_t rows, size_t k, ms_error *err)
{
    p->n = 0;
    p->iw = ms_zalloc_array(k, sizeof(double));
    if (!p->iw)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    return ms_gram_init(&p->g, rows, err);
}

static void pool_add(pool *p, const ms_gram *g, const double *iw, size_t k)
{
    ms_gram_add(&p->g, g);
    if (iw)
        for (size_t i = 0; i < k; i++)
            p->iw[i] += iw[i] * (double)g->n;
    p->n += (double)g->n;
}

static ms_status pool_finish(const attr_rows *r, pool *p, bool intended,
                             ms_attr_scope *sc, ms_error *err)
{
    ms_status st = scope_fit(r, &p->g, sc, err);
    if (!st && intended) {
        sc->intended = ms_alloc_array(r->k, sizeof(double));
        if (!sc->intended)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        for (size_t i = 0; i < r->k; i++)
            sc->intended[i] = p->n > 0 ? p->iw[i] / p->n : NAN;
    }
    return st;
}

static void pool_free(pool *p)
{
    ms_gram_free(&p->g);
    free(p->iw);
}

/* Every scope from the per-slot Grams. */
static ms_status build_scopes(ms_attribute_result *res, const attr_rows *r,
                              const ms_gram *grams, const double *iw,
                              const ms_tensor *const *slots, size_t n_slots,
                              size_t rows, ms_error *err)
{
    size_t k = r->k;
    int max_layer = -1;
    for (size_t s = 0; s < n_slots; s++)
        if (slots[s * rows]->layer > max_layer)
            max_layer = slots[s * rows]->layer;
    size_t nl = (size_t)(max_layer + 1), np = nl + 4;
    pool *pools = ms_zalloc_array(np, sizeof(pool)); /* layers, 3 filters, all */
    res->tensors = ms_zalloc_array(n_slots ? n_slots : 1, sizeof(ms_attr_scope));
    res->layers = ms_zalloc_array(nl ? nl : 1, sizeof(ms_attr_scope));
    ms_status st = (pools && res->tensors && res->layers) ? MS_OK
        : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t p = 0; p < np && !st; p++)
        st = pool_init(&pools[p], rows, k, err);
    for (size_t s = 0; s < n_slots && !st; s++) {
        const ms_tensor *t = slots[s * rows];
        const double *w = iw ? iw + s * k : NULL;
        ms_attr_scope *sc = &res->tensors[res->n_tensors++];
        sc->name = ms_strdup(t->name);
        sc->layer = t->layer;
        sc->filter = (int)t->filter;
        if (!sc->name) {
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
            break;
        }
        st = scope_fit(r, &grams[s], sc, err);
        if (!st && w) {
            sc->intended = ms_alloc_array(k, sizeof(double));
            if (!sc->intended)
                st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
            else
                memcpy(sc->intended, w, k * sizeof(double));
        }
        if (!st && sc->fit.ill_conditioned)
            res->n_ill_conditioned++;
        if (t->layer >= 0)
            pool_add(&pools[t->layer], &grams[s], w, k);
        if ((int)t->filter >= 0 && t->filter < 3)
            pool_add(&pools[nl + t->filter], &grams[s], w, k);
        pool_add(&pools[nl + 3], &grams[s], w, k);
    }
    for (size_t l = 0; l < nl && !st; l++) {
        if (pools[l].g.n == 0)
            continue;
        ms_attr_scope *sc = &res->layers[res->n_layers++];
        sc->layer = (int)l;
        sc->filter = -1;
        st = pool_finish(r, &pools[l], iw != NULL, sc, err);
    }
    for (int f = 0; f < 3 && !st; f++) {
        res->filters[f].layer = -1;
        res->filters[f].filter = f;
        res->filter_n[f] = pools[nl + (size_t)f].g.n;
        st = pool_finish(r, &pools[nl + (size_t)f], iw != NULL, &res->filters[f], err);
    }
    res->overall.layer = -1;
    res->overall.filter = -1;
    if (!st)
        st = pool_finish(r, &pools[nl + 3], iw != NULL, &res->overall, err);
    for (size_t p = 0; pools && p < np; p++)
        pool_free(&pools[p]);
    free(pools);
    return st;
}

static char *model_label(const ms_model *m)
{
    return ms_strdup(m->name ? m->name : m->path);
}

static ms_status fill_names(ms_attribute_result *res, const ms_model *base,
                            const ms_model *merged,
                            const ms_model *const *donors, size_t k,
                            ms_error *err)
{
    res->has_base = base != NULL;
    res->k = k;
    res->base = base ? model_label(base) : NULL;
    res->merged = model_label(merged);
    res->donors = ms_zalloc_array(k, sizeof(char *));
    bool ok = res->merged && res->donors && (!base || res->base);
    for (size_t i = 0; ok && i < k; i++)
        ok = (res->donors[i] = model_label(donors[i])) != NULL;
    return ok ? MS_OK : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
}

static ms_status ask_intended(ms_attribute_intended_fn fn, void *ctx,
                              const ms_tensor *const *slots, size_t n_slots,
                              size_t rows, size_t k, double **out,
                              ms_error *err)
{
    *out = NULL;
    if (!fn)
        return MS_OK;
    double *iw = ms_zalloc_array(n_slots ? n_slots * k : 1, sizeof(double));
    if (!iw)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t s = 0; s < n_slots; s++) {
        /* the merged model's tensor names the output tensor */
        ms_status st = fn(ctx, slots[s * rows + (rows - k - 1)], iw + s * k, err);
        if (st) {
            free(iw);
            return st;
        }
    }
    *out = iw;
    return MS_OK;
}

ms_status ms_attribute_run(const ms_model *base, const ms_model *merged,
                           const ms_model *const *donors, size_t k,
                           const ms_stream_opts *opts,
                           ms_attribute_intended_fn intended, void *ictx,
                           ms_attribute_result **out, ms_error *err)
{
    *out = NULL;
    if (k == 0)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "attribute needs at least one donor");
    attr_rows r = {k, base != NULL, base ? 1 : 0, base ? 2 : 1};
    size_t rows = k + (base ? 2 : 1);
    const ms_model **models = ms_zalloc_array(rows, sizeof(*models));
    ms_attribute_result *res = calloc(1, sizeof(*res));
    if (!models || !res) {
        free(models);
        free(res);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    size_t at = 0;
    if (base)
        models[at++] = base;
    models[at++] = merged;
    for (size_t i = 0; i < k; i++)
        models[at++] = donors[i];
    const ms_tensor **slots = NULL;
    size_t n_slots = 0, n_sk = 0;
    ms_stream_skip *sk = NULL;
    ms_gram *grams = NULL;
    double *iw = NULL;
    ms_status st = fill_names(res, base, merged, donors, k, err);
    if (!st)
        st = ms_analyze_unmatched(models, rows, &res->unmatched, &res->n_unmatched, err);
    if (!st)
        st = ms_stream_match(models, rows, &slots, &n_slots, &sk, &n_sk, err);
    if (!st)
        st = ms_analyze_add_undecodable(&res->unmatched, &res->n_unmatched, sk, n_sk, err);
    if (!st)
        st = ask_intended(intended, ictx, slots, n_slots, rows, k, &iw, err);
    res->has_intended = iw != NULL;
    if (!st) {
        ms_stream_job job = {models, rows, slots, n_slots};
        st = ms_gram_run(&job, opts, base ? MS_GRAM_SIGNS : 0, &grams, err);
    }
    if (!st)
        st = build_scopes(res, &r, grams, iw, slots, n_slots, rows, err);
    if (grams)
        for (size_t s = 0; s < n_slots; s++)
            ms_gram_free(&grams[s]);
    free(grams);
    free(slots);
    free(sk);
    free(iw);
    free(models);
    if (st) {
        ms_attribute_result_free(res);
        return st;
    }
    *out = res;
    return MS_OK;
}
