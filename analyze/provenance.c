/*
 * provenance.c - which donor layer(s) each merged layer comes from: sketch
 * cosines, then least squares on the sketches for the best single source
 * and the best pair among the top candidates; contiguous copies become
 * mergekit slices.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define SKETCH_SEED 0x6d657267ull  /* fixed: sketches must agree across runs */
#define N_CANDIDATES 6
/* a single source whose fit leaves less than this is a copy (rounding) */
#define COPY_RESIDUAL 1e-6
/* a pair must at least halve the single-source residual to be a blend */
#define BLEND_GAIN 0.5
#define BLEND_MIN_WEIGHT 0.02

typedef struct cand {
    size_t model;
    int layer;
    const double *s;
    double cosine;
} cand;

static double dot(const double *a, const double *b)
{
    double s = 0;
    for (size_t i = 0; i < MS_SKETCH_DIM; i++)
        s += a[i] * b[i];
    return s;
}

static int cand_cmp(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->cosine != b->cosine)
        return a->cosine > b->cosine ? -1 : 1;
    if (a->model != b->model)
        return a->model < b->model ? -1 : 1;
    return a->layer - b->layer;
}

/* Residual ||m - w s|| / ||m|| of the one-source fit; weight out. */
static double fit1(const double *m, double mm, const double *s, double *w)
{
    double ss = dot(s, s), ms = dot(m, s);
    *w = ss > 0 ? ms / ss : 0;
    double r2 = mm - (*w) * ms;
    return sqrt(r2 > 0 ? r2 / mm : 0);
}

/* Two-source least squares; false when singular. */
static bool fit2(const double *m, double mm, const double *a, const double *b,
                 double w[2], double *res)
{
    double aa = dot(a, a), bb = dot(b, b), ab = dot(a, b);
    double am = dot(a, m), bm = dot(b, m);
    double det = aa * bb - ab * ab;
    if (!(det > 1e-14 * aa * bb))
        return false;
    w[0] = (bb * am - ab * bm) / det;
    w[1] = (aa * bm - ab * am) / det;
    double r2 = mm - w[0] * am - w[1] * bm;
    *res = sqrt(r2 > 0 ? r2 / mm : 0);
    return true;
}

static void match_layer(const double *m, const cand *c, size_t nc,
                        ms_prov_layer *out)
{
    double mm = dot(m, m);
    out->n_src = 0;
    if (!(mm > 0) || nc == 0)
        return;
    double w1;
    double r1 = fit1(m, mm, c[0].s, &w1);
    out->n_src = 1;
    out->src[0] = (ms_prov_source){c[0].model, c[0].layer, w1, c[0].cosine};
    out->residual = r1;
    out->exact = r1 < COPY_RESIDUAL && fabs(w1 - 1) < 1e-4;
    if (out->exact) {
        out->src[0].weight = 1.0;
        return;
    }
    size_t top = nc < N_CANDIDATES ? nc : N_CANDIDATES;
    double best = r1;
    for (size_t i = 0; i < top; i++)
        for (size_t j = i + 1; j < top; j++) {
            double w[2], r;
            if (!fit2(m, mm, c[i].s, c[j].s, w, &r))
                continue;
            if (r < best && r < BLEND_GAIN * r1 && w[0] > BLEND_MIN_WEIGHT
                && w[1] > BLEND_MIN_WEIGHT) {
                best = r;
                out->n_src = 2;
                out->src[0] = (ms_prov_source){c[i].model, c[i].layer, w[0], c[i].cosine};
                out->src[1] = (ms_prov_source){c[j].model, c[j].layer, w[1], c[j].cosine};
                out->residual = r;
            }
        }
    /* sources in donor, layer order for a stable output */
    if (out->n_src == 2 && (out->src[1].model < out->src[0].model
        || (out->src[1].model == out->src[0].model && out->src[1].layer < out->src[0].layer))) {
        ms_prov_source t = out->src[0];
        out->src[0] = out->src[1];
        out->src[1] = t;
    }
}

/* ================================================================ slices */

static bool extends(const ms_prov_slice *s, const ms_prov_layer *l)
{
    if (l->n_src != s->n_src || l->layer != s->out_end)
        return false;
    int len = s->out_end - s->out_start;
    for (size_t i = 0; i < s->n_src; i++) {
        if (l->src[i].model != s->model[i] || l->src[i].layer != s->start[i] + len)
            return false;
        if (s->n_src == 2 && fabs(l->src[i].weight - s->weight[i]) > 1e-4)
            return false;
    }
    return true;
}

static ms_status build_slices(ms_provenance_result *r, ms_error *err)
{
    r->slices = ms_zalloc_array(r->n_layers ? r->n_layers : 1, sizeof(ms_prov_slice));
    if (!r->slices)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < r->n_layers; i++) {
        const ms_prov_layer *l = &r->layers[i];
        if (l->n_src == 0)
            continue;
        if (r->n_slices && extends(&r->slices[r->n_slices - 1], l)) {
            r->slices[r->n_slices - 1].out_end++;
            continue;
        }
        ms_prov_slice *s = &r->slices[r->n_slices++];
        s->out_start = l->layer;
        s->out_end = l->layer + 1;
        s->n_src = l->n_src;
        for (size_t k = 0; k < l->n_src; k++) {
            s->model[k] = l->src[k].model;
            s->start[k] = l->src[k].layer;
            s->weight[k] = l->n_src == 1 ? 1.0 : l->src[k].weight;
        }
    }
    return MS_OK;
}

/* A YAML double-quoted scalar (JSON escapes are valid YAML). */
static bool add_quoted(ms_sb *sb, const char *s)
{
    bool ok = ms_sb_addc(sb, '"');
    for (; ok && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            ok = ms_sb_addc(sb, '\\') && ms_sb_addc(sb, (char)ch);
        else if (ch < 0x20)
            ok = ms_sb_addf(sb, "\\x%02x", ch);
        else
            ok = ms_sb_addc(sb, (char)ch);
    }
    return ok && ms_sb_addc(sb, '"');
}

static ms_status build_recipe(ms_provenance_result *r, ms_error *err)
{
    bool blend = false;
    for (size_t i = 0; i < r->n_slices; i++)
        blend |= r->slices[i].n_src == 2;
    ms_sb sb = MS_SB_INIT;
    bool ok = ms_sb_add(&sb, "# recovered by mergescope provenance from ")
        && ms_sb_add(&sb, ms_path_basename(r->merged))
        && ms_sb_addf(&sb, "\nmerge_method: %s\nslices:\n", blend ? "linear" : "passthrough");
    for (size_t i = 0; ok && i < r->n_slices; i++) {
        const ms_prov_slice *s = &r->slices[i];
        int len = s->out_end - s->out_start;
        ok = ms_sb_add(&sb, "  - sources:\n");
        for (size_t k = 0; ok && k < s->n_src; k++) {
            ok = ms_sb_add(&sb, "      - model: ")
                && add_quoted(&sb, r->donors[s->model[k]])
                && ms_sb_addf(&sb, "\n        layer_range: [%d, %d]\n", s->start[k],
                              s->start[k] + len);
            if (ok && blend)
                ok = ms_sb_addf(&sb, "        parameters:\n          weight: %.6f\n",
                                s->weight[k]);
        }
    }
    if (ok && blend)
        ok = ms_sb_add(&sb, "parameters:\n  normalize: false\n");
    if (!ok) {
        ms_sb_free(&sb);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    r->recipe = ms_sb_detach(&sb);
    return MS_OK;
}

/* ================================================================ confirm */

/* The part of a canonical name after "layers.<layer>." or NULL. */
static const char *layer_suffix(const char *name, int layer)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "layers.%d.", layer);
    const char *p = strstr(name, pat);
    return p ? p + strlen(pat) : NULL;
}

static const ms_tensor *find_layer_tensor(const ms_model *m, int layer,
                                          const char *suffix,
                                          const ms_tensor *like)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        const char *sx = t->layer == layer ? layer_suffix(t->name, layer) : NULL;
        if (sx && !strcmp(sx, suffix) && t->n_rows == like->n_rows
            && t->n_cols == like->n_cols)
            return t;
    }
    return NULL;
}

/*
 * Re-fit a blended layer on the exact weights: one Gram pass over the
 * merged layer's tensors and the two source layers' (cheap: one layer of
 * three models). Leaves the sketch fit in place when a tensor has no
 * counterpart.
 */
static ms_status confirm_blend(ms_prov_layer *l, const ms_model *merged,
                               const ms_model *const *donors,
                               const ms_stream_opts *opts, ms_error *err)
{
    const ms_model *mods[3] = {merged, donors[l->src[0].model], donors[l->src[1].model]};
    const ms_tensor **sl = ms_zalloc_array(merged->n_tensors * 3 + 1, sizeof(*sl));
    if (!sl)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < merged->n_tensors; i++) {
        const ms_tensor *t = &merged->tensors[i];
        const char *sx = t->layer == l->layer ? layer_suffix(t->name, l->layer) : NULL;
        if (!sx)
            continue;
        const ms_tensor *a = find_layer_tensor(mods[1], l->src[0].layer, sx, t);
        const ms_tensor *b = find_layer_tensor(mods[2], l->src[1].layer, sx, t);
        if (!a || !b) {
            free(sl);
            return MS_OK;
        }
        sl[n * 3] = t;
        sl[n * 3 + 1] = a;
        sl[n * 3 + 2] = b;
        n++;
    }
    ms_gram *g = NULL, tot;
    ms_stream_job job = {mods, 3, sl, n};
    ms_status st = n ? ms_gram_run(&job, opts, 0, &g, err) : MS_OK;
    if (!st && n && !(st = ms_gram_init(&tot, 3, err))) {
        for (size_t s = 0; s < n; s++)
            ms_gram_add(&tot, &g[s]);
        double aa = ms_gram_dot(&tot, 1, 1), bb = ms_gram_dot(&tot, 2, 2);
        double ab = ms_gram_dot(&tot, 1, 2), am = ms_gram_dot(&tot, 1, 0);
        double bm = ms_gram_dot(&tot, 2, 0), mm = ms_gram_dot(&tot, 0, 0);
        /* double precision leaves ~13 digits for 1 - cos^2 ~ 1e-3 */
        double det = aa * bb - ab * ab;
        if (det > 0 && mm > 0) {
            l->src[0].weight = (bb * am - ab * bm) / det;
            l->src[1].weight = (aa * bm - ab * am) / det;
            double res = mm - l->src[0].weight * am - l->src[1].weight * bm;
            l->residual = sqrt(res > 0 ? res / mm : 0);
            l->confirmed = true;
        }
        ms_gram_free(&tot);
    }
    for (size_t s = 0; g && s < n; s++)
        ms_gram_free(&g[s]);
    free(g);
    free(sl);
    return st;
}

/* ================================================================ run */

void ms_provenance_result_free(ms_provenance_result *r)
{
    if (!r)
        return;
    free(r->merged);
    for (size_t i = 0; r->donors && i < r->n_donors; i++)
        free(r->donors[i]);
    free(r->donors);
    free(r->layers);
    free(r->slices);
    free(r->cosine);
    free(r->donor_layers);
    free(r->recipe);
    free(r);
}

static ms_status match_all(ms_provenance_result *r, const ms_sketch *ms,
                           const ms_sketch *ds, size_t nd, ms_error *err)
{
    size_t total = 0;
    for (size_t d = 0; d < nd; d++)
        total += (size_t)ds[d].n_layers;
    cand *c = ms_zalloc_array(total ? total : 1, sizeof(cand));
    r->layers = ms_zalloc_array(r->n_layers ? r->n_layers : 1, sizeof(ms_prov_layer));
    r->cosine = ms_zalloc_array((r->n_layers ? r->n_layers : 1) * (total ? total : 1),
                                sizeof(double));
    if (!c || !r->layers || !r->cosine) {
        free(c);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    for (size_t l = 0; l < r->n_layers; l++) {
        const double *m = ms->s + l * MS_SKETCH_DIM;
        double mn = sqrt(dot(m, m));
        size_t nc = 0;
        for (size_t d = 0; d < nd; d++)
            for (int j = 0; j < ds[d].n_layers; j++) {
                const double *s = ds[d].s + (size_t)j * MS_SKETCH_DIM;
                double sn = sqrt(dot(s, s));
                double cs = (mn > 0 && sn > 0) ? dot(m, s) / (mn * sn) : NAN;
                r->cosine[l * total + nc] = cs;
                c[nc++] = (cand){d, j, s, isnan(cs) ? -2.0 : cs};
            }
        qsort(c, nc, sizeof(cand), cand_cmp);
        r->layers[l].layer = (int)l;
        match_layer(m, c, nc, &r->layers[l]);
    }
    free(c);
    return MS_OK;
}

static ms_status fill_names(ms_provenance_result *r, const ms_model *merged,
                            const ms_model *const *donors, size_t nd,
                            ms_error *err)
{
    r->merged = ms_strdup(merged->name ? merged->name : merged->path);
    r->n_donors = nd;
    r->donors = ms_zalloc_array(nd, sizeof(char *));
    r->donor_layers = ms_zalloc_array(nd, sizeof(int));
    bool ok = r->merged && r->donors && r->donor_layers;
    for (size_t d = 0; ok && d < nd; d++)
        ok = (r->donors[d] = ms_strdup(donors[d]->name ? donors[d]->name
                                                       : donors[d]->path)) != NULL;
    return ok ? MS_OK : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
}

ms_status ms_provenance_run(const ms_model *merged,
                            const ms_model *const *donors, size_t nd,
                            const ms_stream_opts *opts,
                            ms_provenance_result **out, ms_error *err)
{
    *out = NULL;
    if (nd == 0)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "provenance needs at least one donor");
    ms_provenance_result *r = calloc(1, sizeof(*r));
    ms_sketch *ds = ms_zalloc_array(nd, sizeof(ms_sketch));
    ms_sketch msk;
    memset(&msk, 0, sizeof(msk));
    if (!r || !ds) {
        free(r);
        free(ds);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    ms_status st = fill_names(r, merged, donors, nd, err);
    if (!st)
        st = ms_sketch_model(merged, opts, SKETCH_SEED, &msk, err);
    for (size_t d = 0; d < nd && !st; d++) {
        st = ms_sketch_model(donors[d], opts, SKETCH_SEED, &ds[d], err);
        r->donor_layers[d] = ds[d].n_layers;
    }
    r->n_layers = (size_t)msk.n_layers;
    if (!st)
        st = match_all(r, &msk, ds, nd, err);
    for (size_t l = 0; l < r->n_layers && !st; l++)
        if (r->layers[l].n_src == 2)
            st = confirm_blend(&r->layers[l], merged, donors, opts, err);
    if (!st)
        st = build_slices(r, err);
    if (!st)
        st = build_recipe(r, err);
    ms_sketch_free(&msk);
    for (size_t d = 0; d < nd; d++)
        ms_sketch_free(&ds[d]);
    free(ds);
    if (st) {
        ms_provenance_result_free(r);
        return st;
    }
    *out = r;
    return MS_OK;
}
