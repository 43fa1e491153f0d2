/*
 * compare.c - every pair of n models, per tensor, per layer (pooled) and
 * overall, from one Gram pass over the files.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

void ms_compare_figures(const ms_gram *g, size_t i, size_t j,
                        ms_pair_figures *f)
{
    double ii = ms_gram_dot(g, i, i), jj = ms_gram_dot(g, j, j);
    double d2 = ms_gram_dist2(g, i, j);
    const ms_pair_stats *ps = &g->pairs[ms_gram_pair_index(g->k, i, j)];
    f->a = i;
    f->b = j;
    f->cosine = (ii > 0 && jj > 0) ? ms_gram_dot(g, i, j) / sqrt(ii * jj) : NAN;
    f->rel_l2 = ii > 0 ? sqrt(d2 / ii) : NAN;
    f->l2 = sqrt(d2);
    f->max_abs = ps->max_abs;
    f->identical = g->n ? (double)ps->identical / (double)g->n : NAN;
}

static ms_status scope_fill(ms_compare_scope *sc, const ms_gram *g,
                            ms_error *err)
{
    size_t k = g->k, np = k * (k - 1) / 2;
    sc->pairs = ms_zalloc_array(np, sizeof(ms_pair_figures));
    if (!sc->pairs)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    sc->n = g->n;
    for (size_t i = 0; i < k; i++)
        for (size_t j = i + 1; j < k; j++)
            ms_compare_figures(g, i, j, &sc->pairs[ms_gram_pair_index(k, i, j)]);
    return MS_OK;
}

static void scope_free(ms_compare_scope *sc)
{
    free(sc->name);
    free(sc->pairs);
}

void ms_compare_result_free(ms_compare_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_models; i++) {
        if (r->models)
            free(r->models[i]);
        if (r->formats)
            free(r->formats[i]);
    }
    free(r->models);
    free(r->formats);
    scope_free(&r->overall);
    for (size_t i = 0; i < r->n_layers; i++)
        scope_free(&r->layers[i]);
    free(r->layers);
    for (size_t i = 0; i < r->n_tensors; i++)
        scope_free(&r->tensors[i]);
    free(r->tensors);
    ms_unmatched_free(r->unmatched, r->n_unmatched);
    free(r);
}

/* Pool per-slot Grams into overall and per-layer scopes. */
static ms_status pool_scopes(ms_compare_result *r, const ms_gram *grams,
                             const ms_tensor *const *slots, size_t n_slots,
                             size_t k, ms_error *err)
{
    int max_layer = -1;
    for (size_t s = 0; s < n_slots; s++)
        if (slots[s * k]->layer > max_layer)
            max_layer = slots[s * k]->layer;
    size_t nl = (size_t)(max_layer + 1);
    ms_gram tot, *lay = ms_zalloc_array(nl ? nl : 1, sizeof(ms_gram));
    ms_status st = lay ? ms_gram_init(&tot, k, err)
                       : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if (st) {
        free(lay);
        return st;
    }
    for (size_t l = 0; l < nl && !st; l++)
        st = ms_gram_init(&lay[l], k, err);
    for (size_t s = 0; s < n_slots && !st; s++) {
        ms_gram_add(&tot, &grams[s]);
        if (slots[s * k]->layer >= 0)
            ms_gram_add(&lay[slots[s * k]->layer], &grams[s]);
    }
    r->overall.layer = -1;
    r->overall.filter = -1;
    if (!st)
        st = scope_fill(&r->overall, &tot, err);
    if (!st) {
        r->layers = ms_zalloc_array(nl ? nl : 1, sizeof(ms_compare_scope));
        if (!r->layers)
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    for (size_t l = 0; l < nl && !st; l++) {
        if (lay[l].n == 0)
            continue;
        ms_compare_scope *sc = &r->layers[r->n_layers++];
        sc->layer = (int)l;
        sc->filter = -1;
        st = scope_fill(sc, &lay[l], err);
    }
    ms_gram_free(&tot);
    for (size_t l = 0; l < nl; l++)
        ms_gram_free(&lay[l]);
    free(lay);
    return st;
}

static ms_status fill_models(ms_compare_result *r, const ms_model *const *models,
                             size_t n, ms_error *err)
{
    r->n_models = n;
    r->models = ms_zalloc_array(n, sizeof(char *));
    r->formats = ms_zalloc_array(n, sizeof(char *));
    if (!r->models || !r->formats)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < n; i++) {
        r->models[i] = ms_strdup(models[i]->name ? models[i]->name : models[i]->path);
        r->formats[i] = ms_strdup(ms_format_name(models[i]->format));
        if (!r->models[i] || !r->formats[i])
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    return MS_OK;
}

static ms_status fill_tensors(ms_compare_result *r, const ms_gram *grams,
                              const ms_tensor *const *slots, size_t n_slots,
                              size_t k, ms_error *err)
{
    r->tensors = ms_zalloc_array(n_slots ? n_slots : 1, sizeof(ms_compare_scope));
    if (!r->tensors)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t s = 0; s < n_slots; s++) {
        ms_compare_scope *sc = &r->tensors[r->n_tensors++];
        const ms_tensor *t = slots[s * k];
        sc->name = ms_strdup(t->name);
        sc->layer = t->layer;
        sc->filter = (int)t->filter;
        if (!sc->name)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        ms_status st = scope_fill(sc, &grams[s], err);
        if (st)
            return st;
    }
    return MS_OK;
}

ms_status ms_compare_run(const ms_model *const *models, size_t n,
                         const ms_stream_opts *opts, ms_compare_result **out,
                         ms_error *err)
{
    *out = NULL;
    if (n < 2)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "compare needs at least two models");
    ms_compare_result *r = calloc(1, sizeof(*r));
    if (!r)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    r->n_pairs = n * (n - 1) / 2;
    const ms_tensor **slots = NULL;
    size_t n_slots = 0, n_sk = 0;
    ms_stream_skip *sk = NULL;
    ms_gram *grams = NULL;
    ms_status st = fill_models(r, models, n, err);
    if (!st)
        st = ms_analyze_unmatched(models, n, &r->unmatched, &r->n_unmatched, err);
    if (!st)
        st = ms_stream_match(models, n, &slots, &n_slots, &sk, &n_sk, err);
    if (!st)
        st = ms_analyze_add_undecodable(&r->unmatched, &r->n_unmatched, sk, n_sk, err);
    if (!st) {
        ms_stream_job job = {models, n, slots, n_slots};
        st = ms_gram_run(&job, opts, MS_GRAM_PAIRS, &grams, err);
    }
    if (!st)
        st = fill_tensors(r, grams, slots, n_slots, n, err);
    if (!st)
        st = pool_scopes(r, grams, slots, n_slots, n, err);
    if (grams)
        for (size_t s = 0; s < n_slots; s++)
            ms_gram_free(&grams[s]);
    free(grams);
    free(slots);
    free(sk);
    if (st) {
        ms_compare_result_free(r);
        return st;
    }
    *out = r;
    return MS_OK;
}
