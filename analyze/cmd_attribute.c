/*
 * cmd_attribute.c - `mergescope attribute --base B MERGED DONOR...` or
 * `--recipe R MERGED`: least-squares coefficients of the merged delta on
 * the donor deltas, shares and residual, per tensor, layer, filter class
 * and overall; with a recipe, its intended weights beside the measured.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd_analyze_util.h"
#include "mergescope/analyze.h"
#include "mergescope/names.h"
#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const usage[] = {
    "mergescope attribute [options] --base BASE MERGED DONOR...",
    "mergescope attribute [options] --recipe RECIPE MERGED",
    "",
    "Least-squares coefficients of the merged delta (MERGED - BASE) on the",
    "donor deltas (DONOR - BASE), with shares share_i = coef_i <d_i, M> / ||M||^2",
    "and the residual share no linear mix explains. Without a base (linear",
    "merges: --base omitted, or a recipe without base_model) MERGED itself is",
    "fitted on the donors. Each layer, filter class and the whole model is one",
    "fit over the summed normal equations of its tensors. --consensus adds a",
    "second pass splitting each element of M among the donors that agree with",
    "its sign (closer to the true contributions of TIES / DARE-TIES merges).",
    NULL
};

/* ================================================================ recipe */

typedef struct recipe_ctx {
    const ms_recipe_stage *stage;
    ms_recipe_plan *plan;
    size_t *donor_model;   /* stage model index per donor */
    size_t k;
} recipe_ctx;

/* The coefficient the recipe means for donor i on tensor t: linear
 * w_i / sum w (normalize), task-vector methods w_i * lambda (/ sum w when
 * normalize), others the weight as written; NaN when not resolvable. */
static ms_status intended_fn(void *vctx, const ms_tensor *t, double *w,
                             ms_error *err)
{
    recipe_ctx *rc = vctx;
    ms_merge_method m = rc->stage->method;
    double sum = 0, lambda = 1, normalize = 0;
    (void)err;
    for (size_t i = 0; i < rc->k; i++) {
        ms_recipe_params p;
        ms_error e2;
        ms_error_clear(&e2);
        w[i] = NAN;
        if (ms_recipe_resolve(rc->plan, m, t->name, t->layer, rc->donor_model[i], &p, &e2))
            continue;
        if (ms_params_has(&p, MS_PARAM_WEIGHT))
            w[i] = p.value[MS_PARAM_WEIGHT];
        if (ms_params_has(&p, MS_PARAM_LAMBDA))
            lambda = p.value[MS_PARAM_LAMBDA];
        if (ms_params_has(&p, MS_PARAM_NORMALIZE))
            normalize = p.value[MS_PARAM_NORMALIZE];
        sum += isfinite(w[i]) ? w[i] : 0;
    }
    bool gta = ms_method_is_gta(m);
    for (size_t i = 0; i < rc->k; i++) {
        if (gta)
            w[i] *= lambda;
        if ((m == MS_METHOD_LINEAR || gta) && normalize != 0 && sum != 0)
            w[i] /= sum;
    }
    return MS_OK;
}

typedef struct recipe_models {
    ms_recipe *recipe;
    const char *base;      /* names as in the recipe, or NULL */
    const char **donors;
    size_t k;
    char *dir;
} recipe_models;

static int load_recipe(const char *path, recipe_ctx *rc, recipe_models *rm)
{
    ms_error err;
    ms_error_clear(&err);
    if (ms_recipe_load(path, &rm->recipe, &err))
        return ms_report_error(&err);
    /* the last stage is the final output */
    const ms_recipe_stage *st = &rm->recipe->stages[rm->recipe->n_stages - 1];
    rc->stage = st;
    rm->dir = ms_path_dirname(path);
    rm->donors = calloc(st->n_models ? st->n_models : 1, sizeof(char *));
    rc->donor_model = calloc(st->n_models ? st->n_models : 1, sizeof(size_t));
    if (!rm->dir || !rm->donors || !rc->donor_model) {
        fprintf(stderr, "mergescope: out of memory\n");
        return MS_EXIT_FAIL;
    }
    for (size_t i = 0; i < st->n_models; i++) {
        if (st->models[i].stage != MS_RECIPE_NONE)
            return ms_die_usage("%s: model '%s' is an earlier stage's output; "
                                "attribute the final stage against its own inputs",
                                path, st->models[i].path);
        if (i == st->base_model) {
            rm->base = st->models[i].path;
            continue;
        }
        rc->donor_model[rm->k] = i;
        rm->donors[rm->k++] = st->models[i].path;
    }
    rc->k = rm->k;
    if (rm->k == 0)
        return ms_die_usage("%s: the recipe has no donor besides its base", path);
    return MS_EXIT_OK;
}

static int build_plan(const char *path, recipe_ctx *rc, const ms_model *merged)
{
    ms_error err;
    ms_error_clear(&err);
    const ms_recipe_module *mod = &rc->stage->modules[0];
    int nl = mod->models_syntax ? (merged->n_layers > 0 ? merged->n_layers : 1) : 0;
    if (ms_recipe_plan_build(rc->stage, 0, nl, &rc->plan, &err)) {
        if (!err.path[0])
            snprintf(err.path, sizeof(err.path), "%s", path);
        return ms_report_error(&err);
    }
    return MS_EXIT_OK;
}

/* ================================================================ output */

static cJSON *donor_map(const ms_attribute_result *r, const double *v)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < r->k; i++)
        an_json_num(o, r->donors[i], v[i]);
    return o;
}

static void scope_json(cJSON *o, const ms_attribute_result *r,
                       const ms_attr_scope *sc)
{
    cJSON_AddItemToObject(o, "coefficients", donor_map(r, sc->fit.coef));
    cJSON_AddItemToObject(o, "shares", donor_map(r, sc->fit.share));
    if (sc->intended)
        cJSON_AddItemToObject(o, "intended", donor_map(r, sc->intended));
    if (sc->consensus) {
        cJSON_AddItemToObject(o, "consensus_shares", donor_map(r, sc->consensus));
        an_json_num(o, "consensus_unattributed", sc->consensus_unattributed);
    }
    an_json_num(o, "residual_share", sc->fit.residual);
    an_json_num(o, "condition", sc->fit.condition);
    cJSON_AddBoolToObject(o, "ill_conditioned", sc->fit.ill_conditioned);
    if (!isfinite(sc->fit.residual))
        cJSON_AddStringToObject(o, "note", "the merged delta is zero here");
    else if (!isfinite(sc->fit.condition))
        cJSON_AddStringToObject(o, "note", "donor deltas are linearly dependent or zero (minimum-norm solution)");
}

static cJSON *result_json(const ms_attribute_result *r)
{
    cJSON *root = ms_json_result_new("attribute");
    if (r->method)
        cJSON_AddStringToObject(root, "method", r->method);
    if (r->base)
        cJSON_AddStringToObject(root, "base", r->base);
    else
        cJSON_AddNullToObject(root, "base");
    cJSON_AddStringToObject(root, "merged", r->merged);
    cJSON_AddStringToObject(root, "delta_reference", r->has_base ? "merged - base" : "merged tensor itself (no base)");
    cJSON *donors = cJSON_AddArrayToObject(root, "donors");
    for (size_t i = 0; i < r->k; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", r->donors[i]);
        an_json_num(d, "coefficient", r->overall.fit.coef[i]);
        an_json_num(d, "share", r->overall.fit.share[i]);
        an_json_num(d, "sign_agreement", r->overall.sign_agreement[i]);
        if (r->overall.intended)
            an_json_num(d, "intended_weight", r->overall.intended[i]);
        if (r->overall.consensus)
            an_json_num(d, "consensus_share", r->overall.consensus[i]);
        cJSON_AddItemToArray(donors, d);
    }
    an_json_num(root, "residual_share", r->overall.fit.residual);
    if (r->overall.consensus)
        an_json_num(root, "consensus_unattributed", r->overall.consensus_unattributed);
    an_json_num(root, "condition", r->overall.fit.condition);
    cJSON_AddBoolToObject(root, "ill_conditioned", r->overall.fit.ill_conditioned);
    cJSON_AddNumberToObject(root, "n_ill_conditioned_tensors", (double)r->n_ill_conditioned);
    if (!r->has_base)
        cJSON_AddStringToObject(root, "note", "no base: sign_agreement is not defined");
    cJSON *filters = cJSON_AddObjectToObject(root, "filters");
    for (int f = 0; f < 3; f++) {
        if (!r->filter_n[f])
            continue;
        cJSON *o = cJSON_AddObjectToObject(filters, ms_filter_name((ms_filter)f));
        scope_json(o, r, &r->filters[f]);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (size_t l = 0; l < r->n_layers; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", r->layers[l].layer);
        scope_json(o, r, &r->layers[l]);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
    for (size_t t = 0; t < r->n_tensors; t++) {
        const ms_attr_scope *sc = &r->tensors[t];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sc->name);
        if (sc->layer >= 0)
            cJSON_AddNumberToObject(o, "layer", sc->layer);
        else
            cJSON_AddNullToObject(o, "layer");
        cJSON_AddStringToObject(o, "filter", ms_filter_name((ms_filter)sc->filter));
        scope_json(o, r, sc);
        cJSON_AddItemToObject(o, "sign_agreement", donor_map(r, sc->sign_agreement));
        cJSON_AddItemToArray(tensors, o);
    }
    cJSON *un = cJSON_AddArrayToObject(root, "unmatched");
    for (size_t i = 0; i < r->n_unmatched; i++)
        cJSON_AddItemToArray(un, cJSON_CreateString(r->unmatched[i].name));
    return root;
}

static void print_scope_row(const char *label, const ms_attribute_result *r,
                            const ms_attr_scope *sc)
{
    char b[32];
    printf("  %-10s", label);
    for (size_t i = 0; i < r->k; i++)
        printf(" %9s", an_fmt(b, sizeof(b), "%.4f", sc->fit.share[i]));
    printf(" %9s", an_fmt(b, sizeof(b), "%.4f", sc->fit.residual));
    printf(" %10s%s\n", an_fmt(b, sizeof(b), "%.3g", sc->fit.condition),
           sc->fit.ill_conditioned ? " ill-conditioned" : "");
}

static void print_text(const ms_attribute_result *r, bool per_tensor)
{
    char b[4][32];
    printf("attribute: %s", an_label(r->merged));
    if (r->base)
        printf(" - %s", an_label(r->base));
    printf(" on %zu donors, %zu tensors\n", r->k, r->n_tensors);
    printf("  %-3s %-32s %12s %9s %10s%s%s\n", "", "donor", "coefficient", "share",
           "sign_agree", r->overall.intended ? "   intended" : "",
           r->overall.consensus ? "  consensus" : "");
    for (size_t i = 0; i < r->k; i++) {
        printf("  d%-2zu %-32s %12s %9s %10s", i, an_label(r->donors[i]),
               an_fmt(b[0], 32, "%.6f", r->overall.fit.coef[i]),
               an_fmt(b[1], 32, "%.4f", r->overall.fit.share[i]),
               an_fmt(b[2], 32, "%.4f", r->overall.sign_agreement[i]));
        if (r->overall.intended)
            printf(" %10s", an_fmt(b[3], 32, "%.6f", r->overall.intended[i]));
        if (r->overall.consensus)
            printf(" %10s", an_fmt(b[3], 32, "%.4f", r->overall.consensus[i]));
        printf("\n");
    }
    printf("  residual share %s, condition %s%s; %zu tensor fits ill-conditioned\n",
           an_fmt(b[0], 32, "%.6f", r->overall.fit.residual),
           an_fmt(b[1], 32, "%.3g", r->overall.fit.condition),
           r->overall.fit.ill_conditioned ? " (ill-conditioned)" : "",
           r->n_ill_conditioned);
    if (r->overall.consensus)
        printf("  consensus: share of ||M||^2 no donor agrees with %s\n",
               an_fmt(b[0], 32, "%.6f", r->overall.consensus_unattributed));
    printf("\nshares by scope\n  %-10s", "scope");
    for (size_t i = 0; i < r->k; i++)
        printf("  share d%-2zu", i);
    printf(" %9s %10s\n", "residual", "condition");
    for (int f = 0; f < 3; f++)
        if (r->filter_n[f])
            print_scope_row(ms_filter_name((ms_filter)f), r, &r->filters[f]);
    for (size_t l = 0; l < r->n_layers; l++) {
        char lab[32];
        snprintf(lab, sizeof(lab), "layer %d", r->layers[l].layer);
        print_scope_row(lab, r, &r->layers[l]);
    }
    if (per_tensor) {
        printf("\nper tensor: coefficients\n");
        for (size_t t = 0; t < r->n_tensors; t++) {
            const ms_attr_scope *sc = &r->tensors[t];
            printf("  %-48s", sc->name);
            for (size_t i = 0; i < r->k; i++)
                printf(" %10s", an_fmt(b[0], 32, "%.6f", sc->fit.coef[i]));
            printf(" resid %s%s\n", an_fmt(b[1], 32, "%.2e", sc->fit.residual),
                   sc->fit.ill_conditioned ? " ill-conditioned" : "");
        }
    }
    if (r->n_unmatched) {
        printf("\nunmatched tensors (not attributed)\n");
        for (size_t i = 0; i < r->n_unmatched; i++)
            printf("  %s\n", r->unmatched[i].name);
    }
}

/* ================================================================ main */

typedef struct attr_args {
    const char *base, *recipe;
    bool per_tensor, consensus;
} attr_args;

static int run(const ms_common *c, const attr_args *a, const char *const *names,
               size_t n_names, const char *dir, recipe_ctx *rc,
               const char *recipe_path)
{
    ms_progress bar;
    ms_stream_opts so;
    ms_model **m = NULL;
    ms_progress_init(&bar, "attribute", c->quiet);
    int code = an_stream_opts(c, &bar, &so);
    size_t off = rc ? (rc->stage->base_model != MS_RECIPE_NONE ? 1 : 0) : (a->base ? 1 : 0);
    if (!code) {
        m = calloc(n_names, sizeof(*m));
        if (!m)
            code = MS_EXIT_FAIL;
    }
    /* recipe models resolve against the recipe's directory, MERGED not */
    for (size_t i = 0; !code && i < n_names; i++) {
        ms_model **one = NULL;
        code = an_open_models(c, names + i, 1, (rc && i != off) ? dir : NULL, &one);
        if (!code) {
            m[i] = one[0];
            free(one);
        }
    }
    if (code) {
        an_close_models(m, m ? n_names : 0);
        return code;
    }
    const ms_model *base = off ? m[0] : NULL;
    const ms_model *merged = m[off];
    if (rc)
        code = build_plan(recipe_path, rc, merged);
    ms_attribute_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    if (!code && ms_attribute_run(base, merged, (const ms_model *const *)m + off + 1,
                                  n_names - off - 1, &so, rc ? intended_fn : NULL, rc,
                                  &r, &err))
        code = ms_report_error(&err);
    if (!code && a->consensus && !base)
        code = ms_die_usage("--consensus needs a base model");
    if (!code && a->consensus
        && ms_attribute_consensus(r, base, merged, (const ms_model *const *)m + off + 1,
                                  n_names - off - 1, &so, &err))
        code = ms_report_error(&err);
    ms_progress_finish(&bar);
    if (!code) {
        if (rc)
            r->method = ms_strdup(rc->stage->method_name);
        for (size_t i = 0; i < r->n_unmatched && i < 10; i++)
            ms_warn("%s: not in every model, not attributed", r->unmatched[i].name);
        if (r->n_unmatched > 10)
            ms_warn("and %zu more tensors not attributed", r->n_unmatched - 10);
        if (r->n_ill_conditioned)
            ms_warn("%zu tensor fits are ill-conditioned (condition > %.0e)",
                    r->n_ill_conditioned, MS_FIT_ILL_CONDITION);
        cJSON *root = result_json(r);
        if (!(c->json && !strcmp(c->json, "-")))
            print_text(r, a->per_tensor);
        code = ms_write_json_result(c, root);
        cJSON_Delete(root);
    }
    ms_attribute_result_free(r);
    an_close_models(m, n_names);
    return code;
}

int cmd_attribute(int argc, char **argv)
{
    ms_common c;
    attr_args a;
    memset(&c, 0, sizeof(c));
    memset(&a, 0, sizeof(a));
    const ms_option opts[] = {
        MS_OPT_STRING_(0, "base", &a.base, "MODEL", "the base model the deltas are taken against"),
        MS_OPT_STRING_(0, "recipe", &a.recipe, "RECIPE", "take base and donors from a mergekit recipe"),
        MS_OPT_BOOL_(0, "per-tensor", &a.per_tensor, "print the per-tensor coefficients too"),
        MS_OPT_BOOL_(0, "consensus", &a.consensus, "also consensus shares (a second pass; for TIES/DARE-like merges)"),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_
    };
    ms_strlist pos = {NULL, 0};
    int code = 0;
    if (ms_parse_options(argc, argv, opts, usage, &pos, &code))
        return code;
    recipe_ctx rc;
    recipe_models rm;
    memset(&rc, 0, sizeof(rc));
    memset(&rm, 0, sizeof(rm));
    const char **names = NULL;
    size_t n = 0;
    if (a.recipe) {
        if (a.base || pos.n != 1)
            code = ms_die_usage("--recipe takes exactly one MERGED model and no --base");
        if (!code)
            code = load_recipe(a.recipe, &rc, &rm);
        if (!code) {
            names = calloc(rm.k + 2, sizeof(char *));
            if (rm.base)
                names[n++] = rm.base;
            names[n++] = pos.items[0];
            for (size_t i = 0; i < rm.k; i++)
                names[n++] = rm.donors[i];
        }
    } else if (pos.n < 2) {
        code = ms_die_usage("attribute needs MERGED and at least one DONOR (see --help)");
    } else {
        names = calloc(pos.n + 1, sizeof(char *));
        if (a.base)
            names[n++] = a.base;
        for (size_t i = 0; i < pos.n; i++)
            names[n++] = pos.items[i];
    }
    if (!code) {
        /* MERGED is named on the command line: resolve it from the cwd;
         * recipe models resolve from the recipe's directory as well */
        code = run(&c, &a, names, n, rm.dir, a.recipe ? &rc : NULL, a.recipe);
    }
    ms_recipe_plan_free(rc.plan);
    free(rc.donor_model);
    free(rm.donors);
    free(rm.dir);
    ms_recipe_free(rm.recipe);
    free(names);
    free(pos.items);
    return code;
}
