/*
 * sections.c - one report section per kind of result: tables of what the
 * JSON holds and the plots that show it. A field that is absent or of
 * the wrong type is skipped (shown "n/a" in a table); nothing is invented.
 * Every string from a result enters the document as RP_TEXT or RP_CODE
 * (escaped at render time); ms_rp_spanf/ms_rp_cellf format only our numbers.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define MAX_NAMES 64
#define MAX_ROWS 4096

typedef struct names {
    const char *v[MAX_NAMES];
    size_t n;
} names;

static size_t names_find(const names *ns, const char *s)
{
    for (size_t i = 0; s && i < ns->n; i++)
        if (!strcmp(ns->v[i], s))
            return i;
    return (size_t)-1;
}

static void names_add(names *ns, const char *s)
{
    if (s && ns->n < MAX_NAMES && names_find(ns, s) == (size_t)-1)
        ns->v[ns->n++] = s;
}

/* The names of audit donors that are not the base. */
static void donor_names(names *ns, const cJSON *donors)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, donors)
        if (!cJSON_IsTrue(ms_rp_get(e, "is_base")))
            names_add(ns, ms_rp_str(e, "name"));
}

/* The "name" of every element of arr (or the element itself if a string). */
static void names_from(names *ns, const cJSON *arr, const char *key)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
        names_add(ns, cJSON_IsString(e) ? e->valuestring : ms_rp_str(e, key));
}

static void cell_num(ms_rp_doc *d, const cJSON *o, const char *key, int prec)
{
    char b[48];
    ms_rp_cell(d, RP_OURS, ms_rp_fmt(b, sizeof(b), o, key, prec));
}

static void cell_pct(ms_rp_doc *d, const cJSON *o, const char *key)
{
    char b[48];
    ms_rp_cell(d, RP_OURS, ms_rp_pct(b, sizeof(b), o, key));
}

static void source_line(ms_rp_doc *d, const ms_rp_input *in, const char *what)
{
    ms_rp_p(d);
    ms_rp_spanf(d, "%s, from ", what);
    ms_rp_span(d, RP_CODE, ms_path_basename(in->label));
    ms_rp_span(d, RP_OURS, ".");
}

/* A layer entry's index, when it has one. */
static bool layer_index(const cJSON *l, double *v)
{
    return ms_rp_num(l, "layer", v) && *v >= 0 && *v < 1e6;
}

/*
 * A per-layer, per-donor value: layer[key][donor] (a map), layer.donors
 * {donor: {key: v}} (audit's per-layer task-vector figures), or the element
 * of layer.donors[] named donor, its key.
 */
static bool layer_value(const cJSON *layer, const char *key, const char *donor, double *v)
{
    const cJSON *m = ms_rp_obj(layer, key), *e;
    if (m)
        return ms_rp_num(m, donor, v);
    m = ms_rp_obj(layer, "donors");
    if (m)
        return ms_rp_num(ms_rp_obj(m, donor), key, v);
    cJSON_ArrayForEach(e, ms_rp_arr(layer, "donors")) {
        const char *n = ms_rp_str(e, "name");
        if (n && !strcmp(n, donor))
            return ms_rp_num(e, key, v);
    }
    return false;
}

/*
 * Plot layers[] x donors of layer_value(key); extra names a per-layer
 * number added as one more series (e.g. the residual). Nothing is added
 * when no value exists.
 */
static ms_rp_plot *plot_layer_values(ms_rp_ctx *c, ms_rp_plot_kind kind, const char *name,
                                  const cJSON *layers, const char *key, const names *ns,
                                  const char *extra, const char *extra_label)
{
    size_t nrow = 0, found = 0, ncol = ns->n + (extra ? 1 : 0);
    const cJSON *l;
    double v;
    cJSON_ArrayForEach(l, layers) {
        if (!layer_index(l, &v) || nrow >= MAX_ROWS)
            continue;
        nrow++;
        for (size_t j = 0; j < ns->n; j++)
            found += layer_value(l, key, ns->v[j], &v);
        found += extra && ms_rp_num(l, extra, &v);
    }
    if (!found || !ncol)
        return NULL;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, kind, name, nrow, ncol);
    if (!p)
        return NULL;
    for (size_t j = 0; j < ns->n; j++)
        ms_rp_plot_set_col(p, j, ns->v[j]);
    if (extra)
        ms_rp_plot_set_col(p, ns->n, extra_label);
    size_t r = 0;
    cJSON_ArrayForEach(l, layers) {
        double li;
        char lab[32];
        if (!layer_index(l, &li) || r >= nrow)
            continue;
        snprintf(lab, sizeof(lab), "%.0f", li);
        ms_rp_plot_set_row(p, r, lab);
        for (size_t j = 0; j < ns->n; j++)
            if (layer_value(l, key, ns->v[j], &v))
                p->v[r * ncol + j] = v;
        if (extra && ms_rp_num(l, extra, &v))
            p->v[r * ncol + ns->n] = v;
        r++;
    }
    return p;
}

static void fig(ms_rp_ctx *c, ms_rp_plot *p, const char *caption)
{
    if (p && ms_rp_plot_has_data(p))
        ms_rp_fig(c->doc, p->name, caption);
}

/* ==== merge methods in plain words ==== */

typedef struct method_info {
    const char *id, *name, *words;
} method_info;

static const method_info methods[] = {
    {"linear", "Linear", "a weighted average of the models' weights, tensor by tensor "
     "(divided by the sum of the weights unless normalize is off)"},
    {"slerp", "SLERP", "spherical interpolation between the base and one other model: each "
     "tensor moves along the arc between the two, t = 0 giving the base and t = 1 the other"},
    {"nuslerp", "NuSLERP", "spherical interpolation between two models (or their task vectors "
     "when a base is given), with t taken from the two weights"},
    {"multislerp", "Multi-SLERP", "a weighted spherical average of several models (or of their "
     "task vectors from the base)"},
    {"karcher", "Karcher Mean", "the Riemannian (Karcher) mean of the models' tensors on the "
     "sphere, with equal weights"},
    {"passthrough", "Passthrough", "layers copied unchanged from the sources (optionally "
     "scaled): a stacked \"frankenmerge\" when slices repeat or mix layers"},
    {"model_stock", "Model Stock", "the base moved towards the donors' average by a factor "
     "computed from how well the donors' task vectors agree (their mean cosine)"},
    {"arcee_fusion", "Arcee Fusion", "the base plus only the elements of one other model's "
     "task vector that matter most by a KL-weighted importance score"},
    {"task_arithmetic", "Task Arithmetic", "the base plus a weighted sum of the donors' task "
     "vectors (donor minus base)"},
    {"ties", "TIES", "the base plus the donors' task vectors after keeping each donor's "
     "largest-magnitude fraction (density), electing one sign per weight by weighted mass, "
     "and averaging only the donors that agree with it"},
    {"dare_ties", "DARE TIES", "the base plus the donors' task vectors after randomly dropping "
     "elements (keeping a fraction = density, rescaled), then TIES sign election"},
    {"dare_linear", "Linear DARE", "the base plus a weighted sum of the donors' task vectors "
     "after randomly dropping elements (keeping a fraction = density, rescaled)"},
    {"breadcrumbs", "Model Breadcrumbs", "the base plus a weighted sum of the donors' task "
     "vectors with both the smallest and the largest-magnitude elements removed"},
    {"breadcrumbs_ties", "Model Breadcrumbs with TIES", "Model Breadcrumbs pruning followed "
     "by TIES sign election"},
    {"della", "DELLA", "the base plus the donors' task vectors after magnitude-ranked random "
     "dropping (larger elements kept more often), rescaled, then TIES sign election"},
    {"della_linear", "Linear DELLA", "the base plus a weighted sum of the donors' task vectors "
     "after magnitude-ranked random dropping, rescaled"},
    {"sce", "SCE", "the base plus the donors' task vectors restricted to the highest-variance "
     "elements, sign-elected, weighted by each donor's mean squared delta"},
    {"nearswap", "NearSwap", "the base, with each element taken from the other model where "
     "the two are already close (by t)"},
    {"ram", "Reinforced Agent Merging", "the base plus the donors' task vectors, elements "
     "unique to one donor kept as they are and shared ones averaged"},
    {"ramplus_tl", "Reinforced Agent Merging Plus (Tensor-Local)", "Reinforced Agent Merging "
     "with a per-donor boost of unique elements"},
};

static const method_info *method_find(const char *m)
{
    for (size_t i = 0; m && i < MS_ARRAY_SIZE(methods); i++)
        if (!strcmp(methods[i].id, m))
            return &methods[i];
    return NULL;
}

const char *ms_rp_method_words(const char *m)
{
    const method_info *mi = method_find(m);
    return mi ? mi->words : NULL;
}

const char *ms_rp_method_name(const char *m)
{
    const method_info *mi = method_find(m);
    return mi ? mi->name : NULL;
}

static void method_para(ms_rp_doc *d, const char *method, const char *base)
{
    const char *words = ms_rp_method_words(method);
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "Merge method: ");
    ms_rp_span(d, RP_CODE, method ? method : "unknown");
    if (words) {
        ms_rp_spanf(d, " (%s): %s.", ms_rp_method_name(method), words);
    } else {
        ms_rp_span(d, RP_OURS, ".");
    }
    if (base) {
        ms_rp_span(d, RP_OURS, " Base model: ");
        ms_rp_span(d, RP_CODE, base);
        ms_rp_span(d, RP_OURS, ".");
    }
}

/* ==== overview ==== */

void ms_rp_section_overview(ms_rp_ctx *c)
{
    ms_rp_doc *d = c->doc;
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "Written by mergescope report from the results below. Figures are "
                        "the tools' measurements; a section is absent when its result was "
                        "not given.");
    ms_rp_h(d, 2, "Inputs");
    static const char *const hdr[] = {"result", "file", "tool version"};
    ms_rp_table(d, 3, hdr);
    for (size_t i = 0; i < c->r->n; i++) {
        const ms_rp_input *in = &c->r->in[i];
        const char *ver = ms_rp_str(in->root, "tool_version");
        ms_rp_cell(d, RP_OURS, ms_report_kind_name(in->kind));
        ms_rp_cell(d, RP_CODE, ms_path_basename(in->label));
        ms_rp_cell(d, RP_CODE, ver ? ver : "n/a");
        ms_rp_row(d);
    }
}

/* ==== recipe explain ==== */

/* "0.50" or "0.30 to 0.70" for a parameter over a model's rows of a filter. */
bool ms_rp_param_range(const cJSON *layers, const char *model, const char *filter,
                       const char *param, double *lo, double *hi)
{
    const cJSON *l;
    bool any = false;
    cJSON_ArrayForEach(l, layers) {
        const char *m = ms_rp_str(l, "model"), *f = ms_rp_str(l, "filter");
        double v;
        if (!ms_rp_same_model(m, model) || (filter && (!f || strcmp(f, filter))) ||
            !ms_rp_num(ms_rp_obj(l, "params"), param, &v))
            continue;
        if (!any || v < *lo)
            *lo = v;
        if (!any || v > *hi)
            *hi = v;
        any = true;
    }
    return any;
}

static void recipe_params(ms_rp_doc *d, const cJSON *layers)
{
    static const char *const filters[] = {"self_attn", "mlp", "other"};
    static const char *const hdr[] = {"model", "parameter", "self_attn", "mlp", "other"};
    names models = {0}, params = {0};
    const cJSON *l, *p;
    names_from(&models, layers, "model");
    cJSON_ArrayForEach(l, layers)
        cJSON_ArrayForEach(p, ms_rp_obj(l, "params"))
            if (cJSON_IsNumber(p))
                names_add(&params, p->string);
    if (!models.n || !params.n)
        return;
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "Resolved parameters per model and filter class, over all layers "
                        "(a range means a gradient):");
    ms_rp_table(d, 5, hdr);
    for (size_t m = 0; m < models.n; m++)
        for (size_t k = 0; k < params.n; k++) {
            double lo = 0, hi = 0;
            if (!ms_rp_param_range(layers, models.v[m], NULL, params.v[k], &lo, &hi))
                continue;
            ms_rp_cell(d, RP_CODE, models.v[m]);
            ms_rp_cell(d, RP_CODE, params.v[k]);
            for (size_t f = 0; f < 3; f++) {
                if (!ms_rp_param_range(layers, models.v[m], filters[f], params.v[k], &lo, &hi))
                    ms_rp_cell(d, RP_OURS, "n/a");
                else if (lo == hi)
                    ms_rp_cellf(d, "%.4g", lo);
                else
                    ms_rp_cellf(d, "%.4g to %.4g", lo, hi);
            }
            ms_rp_row(d);
        }
}

void ms_rp_cell_param(ms_rp_doc *d, const cJSON *explain, const char *model, const char *param)
{
    double lo = 0, hi = 0;
    if (!ms_rp_param_range(ms_rp_arr(explain, "layers"), model, NULL, param, &lo, &hi))
        ms_rp_cell(d, RP_OURS, "n/a");
    else if (lo == hi)
        ms_rp_cellf(d, "%.4g", lo);
    else
        ms_rp_cellf(d, "%.4g to %.4g", lo, hi);
}

/* A mergekit-multi file: its stages in order (the rest describes the last). */
static void recipe_stages(ms_rp_doc *d, const cJSON *stages)
{
    static const char *const hdr[] = {"stage", "name", "merge method", "base model"};
    const cJSON *s;
    int i = 0;
    if (cJSON_GetArraySize(stages) < 2)
        return;
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "A multi-stage recipe; the tables below describe its final stage.");
    ms_rp_table(d, 4, hdr);
    cJSON_ArrayForEach(s, stages) {
        const char *n = ms_rp_str(s, "name"), *m = ms_rp_str(s, "merge_method");
        const char *b = ms_rp_str(s, "base_model");
        ms_rp_cellf(d, "%d", ++i);
        ms_rp_cell(d, RP_CODE, n ? n : "(final)");
        ms_rp_cell(d, RP_CODE, m ? m : "n/a");
        ms_rp_cell(d, RP_CODE, b ? b : "none");
        ms_rp_row(d);
    }
}

/* "a to b-1" for a half-open [a, b) range, or "n/a". */
static void range_cell(ms_rp_doc *d, const cJSON *r)
{
    if (cJSON_GetArraySize(r) == 2 && cJSON_IsNumber(r->child) &&
        cJSON_IsNumber(r->child->next))
        ms_rp_cellf(d, "%.0f to %.0f", r->child->valuedouble, r->child->next->valuedouble - 1);
    else
        ms_rp_cell(d, RP_OURS, "n/a");
}

static void recipe_slices(ms_rp_doc *d, const cJSON *slices)
{
    static const char *const hdr[] = {"output layers", "model", "source layers"};
    const cJSON *s;
    if (!cJSON_GetArraySize(slices))
        return;
    ms_rp_table(d, 3, hdr);
    cJSON_ArrayForEach(s, slices) {
        const char *m = ms_rp_str(s, "model");
        range_cell(d, ms_rp_arr(s, "out_layers"));
        ms_rp_cell(d, RP_CODE, m ? m : "n/a");
        range_cell(d, ms_rp_arr(s, "layer_range"));
        ms_rp_row(d);
    }
}

/* The recipe's own text, when the result carries it. */
const char *ms_rp_recipe_text(const cJSON *root)
{
    static const char *const keys[] = {"recipe_text", "yaml", "text", "source", "recipe"};
    for (size_t i = 0; i < MS_ARRAY_SIZE(keys); i++) {
        const char *s = ms_rp_str(root, keys[i]);
        /* "recipe" may also be the file's path: text has lines */
        if (s && strchr(s, '\n'))
            return s;
    }
    return NULL;
}

/* "where: message" lines for a recipe's warnings (or one error). */
static void recipe_messages(ms_rp_doc *d, const char *path, const cJSON *list)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, list) {
        const char *m = ms_rp_str(w, "message");
        double line, col;
        if (!m)
            continue;
        ms_rp_li(d);
        if (path)
            ms_rp_span(d, RP_CODE, ms_path_basename(path));
        if (ms_rp_num(w, "line", &line) && ms_rp_num(w, "col", &col) && line > 0)
            ms_rp_spanf(d, "%s%.0f:%.0f: ", path ? ":" : "line ", line, col);
        else if (path)
            ms_rp_span(d, RP_OURS, ": ");
        ms_rp_span(d, RP_TEXT, m);
    }
}

/* `recipe check --json`: every recipe checked, valid or not, and why. */
static void recipe_check(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const hdr[] = {"recipe", "valid", "stages", "warnings"};
    ms_rp_doc *d = c->doc;
    const cJSON *e, *st;
    ms_rp_h(d, 2, "Recipe check");
    source_line(d, in, "Recipes checked by mergescope recipe check");
    ms_rp_table(d, 4, hdr);
    cJSON_ArrayForEach(e, ms_rp_arr(in->root, "recipes")) {
        const char *p = ms_rp_str(e, "path");
        ms_sb methods = MS_SB_INIT;
        cJSON_ArrayForEach(st, ms_rp_arr(e, "stages")) {
            const char *m = ms_rp_str(st, "merge_method");
            if (m && methods.len < 200)
                ms_sb_addf(&methods, "%s%s", methods.len ? ", " : "", m);
        }
        ms_rp_cell(d, RP_CODE, p ? ms_path_basename(p) : "n/a");
        ms_rp_cell(d, RP_OURS, cJSON_IsTrue(ms_rp_get(e, "valid")) ? "yes" : "no");
        ms_rp_cell(d, RP_TEXT, methods.len ? ms_sb_str(&methods) : "n/a");
        ms_rp_cellf(d, "%d", cJSON_GetArraySize(ms_rp_arr(e, "warnings")));
        ms_rp_row(d);
        ms_sb_free(&methods);
    }
    cJSON_ArrayForEach(e, ms_rp_arr(in->root, "recipes")) {
        const cJSON *err = ms_rp_obj(e, "error");
        const char *p = ms_rp_str(e, "path");
        if (err) {
            /* the error message already names the file */
            ms_rp_li(d);
            ms_rp_span(d, RP_BOLD, "error");
            ms_rp_span(d, RP_OURS, ": ");
            ms_rp_span(d, RP_TEXT, ms_rp_str(err, "message") ? ms_rp_str(err, "message") : "?");
        }
        recipe_messages(d, p, ms_rp_arr(e, "warnings"));
    }
}

void ms_rp_section_recipe(ms_rp_ctx *c, const ms_rp_input *in)
{
    const char *mode = ms_rp_str(in->root, "mode");
    if ((mode && !strcmp(mode, "check")) ||
        (!ms_rp_str(in->root, "merge_method") && ms_rp_arr(in->root, "recipes"))) {
        recipe_check(c, in);
        return;
    }
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root;
    names models = {0};
    ms_rp_h(d, 2, "Recipe");
    source_line(d, in, "The recipe as mergescope recipe explain resolved it");
    method_para(d, ms_rp_str(root, "merge_method"), ms_rp_str(root, "base_model"));
    names_from(&models, ms_rp_arr(root, "models"), "model");
    for (size_t i = 0; i < models.n; i++) {
        ms_rp_li(d);
        ms_rp_span(d, RP_CODE, models.v[i]);
    }
    if (cJSON_GetArraySize(ms_rp_arr(root, "warnings"))) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Warnings about the recipe:");
        recipe_messages(d, NULL, ms_rp_arr(root, "warnings"));
    }
    recipe_stages(d, ms_rp_arr(root, "stages"));
    recipe_params(d, ms_rp_arr(root, "layers"));
    recipe_slices(d, ms_rp_arr(root, "slices"));
    const char *text = ms_rp_recipe_text(root);
    ms_sb y = MS_SB_INIT;
    if (text) {
        ms_rp_code(d, "yaml", text);
    } else if (ms_rp_recipe_yaml(root, &y) && y.len) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "The same recipe rebuilt from these resolved values (defaults "
                            "written out):");
        ms_rp_code(d, "yaml", ms_sb_str(&y));
    }
    ms_sb_free(&y);
}

/* ==== audit ==== */

static void fingerprint_kinds(ms_rp_doc *d, const cJSON *donor)
{
    ms_sb sb = MS_SB_INIT;
    const cJSON *f;
    cJSON_ArrayForEach(f, ms_rp_arr(donor, "fingerprints")) {
        const char *k = ms_rp_str(f, "kind");
        if (k && sb.len < 400 && (sb.len ? ms_sb_add(&sb, ", ") : true))
            ms_sb_add(&sb, k);
    }
    ms_rp_cell(d, RP_TEXT, sb.len ? ms_sb_str(&sb) : "none");
    ms_sb_free(&sb);
}

static void audit_donors(ms_rp_doc *d, const cJSON *donors)
{
    static const char *const hdr[] = {"donor", "share", "self_attn", "mlp", "other",
                                      "rel. norm", "cos. to base", "sparsity",
                                      "fingerprints"};
    const cJSON *e;
    ms_rp_table(d, 9, hdr);
    cJSON_ArrayForEach(e, donors) {
        const cJSON *bf = ms_rp_obj(e, "share_by_filter"), *iv = ms_rp_arr(e, "share_interval");
        const char *n = ms_rp_str(e, "name");
        if (cJSON_IsTrue(ms_rp_get(e, "is_base")))
            continue;
        ms_rp_cell(d, RP_CODE, n ? n : "n/a");
        double s;
        if (ms_rp_num(e, "share", &s) && cJSON_GetArraySize(iv) == 2 &&
            cJSON_IsNumber(iv->child) && cJSON_IsNumber(iv->child->next))
            ms_rp_cellf(d, "%.1f%% (%.1f to %.1f%%)", s * 100, iv->child->valuedouble * 100,
                     iv->child->next->valuedouble * 100);
        else
            cell_pct(d, e, "share");
        cell_pct(d, bf, "self_attn");
        cell_pct(d, bf, "mlp");
        cell_pct(d, bf, "other");
        cell_num(d, e, "rel_norm", 4);
        cell_num(d, e, "cos_to_base", 4);
        cell_pct(d, e, "sparsity");
        fingerprint_kinds(d, e);
        ms_rp_row(d);
    }
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "Share: the donor's part of the merged delta, sum over tensors of "
                        "(contribution . merged delta) / sum of (merged delta . merged "
                        "delta); rel. norm: "
                        "|donor - base| / |base|; cos. to base: cosine of the donor's weights to "
                        "the base's; sparsity: fraction of the task vector that is exactly "
                        "zero.");
}

static void audit_fingerprints(ms_rp_doc *d, const cJSON *donors)
{
    const cJSON *e, *f;
    bool head = false;
    cJSON_ArrayForEach(e, donors) {
        cJSON_ArrayForEach(f, ms_rp_arr(e, "fingerprints")) {
            const char *k = ms_rp_str(f, "kind"), *n = ms_rp_str(e, "name");
            const cJSON *ev = ms_rp_get(f, "evidence");
            if (!head) {
                ms_rp_h(d, 3, "Fingerprints");
                head = true;
            }
            ms_rp_li(d);
            ms_rp_span(d, RP_CODE, n ? n : "?");
            ms_rp_span(d, RP_OURS, ": ");
            ms_rp_span(d, RP_BOLD, k ? k : "?");
            ms_rp_spanf(d, " (%d tensors)", cJSON_GetArraySize(ms_rp_arr(f, "tensors")));
            if (cJSON_IsString(ev)) {
                ms_rp_span(d, RP_OURS, ": ");
                ms_rp_span(d, RP_TEXT, ev->valuestring);
            } else if (cJSON_IsNumber(ev)) {
                ms_rp_spanf(d, ": %.6g", ev->valuedouble);
            }
        }
    }
}

static void audit_pairs(ms_rp_ctx *c, const cJSON *pairs, const names *donors)
{
    static const char *const hdr[] = {"donor A", "donor B", "cosine", "sign conflict"};
    ms_rp_doc *d = c->doc;
    const cJSON *e;
    if (!cJSON_GetArraySize(pairs))
        return;
    ms_rp_h(d, 3, "Donor pairs");
    ms_rp_table(d, 4, hdr);
    cJSON_ArrayForEach(e, pairs) {
        const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
        ms_rp_cell(d, RP_CODE, a ? a : "n/a");
        ms_rp_cell(d, RP_CODE, b ? b : "n/a");
        cell_num(d, e, "cosine", 4);
        cell_pct(d, e, "sign_conflict");
        ms_rp_row(d);
    }
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "Cosine between the two task vectors; sign conflict: the fraction of "
                        "weights where both deltas are non-zero and of opposite sign.");
    if (donors->n < 2)
        return;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_HEATMAP, "audit_pair_cosine", donors->n,
                             donors->n);
    if (!p)
        return;
    snprintf(p->title, sizeof(p->title), "Task-vector cosine between donors");
    p->xlabel = "donor";
    p->ylabel = "donor";
    for (size_t i = 0; i < donors->n; i++) {
        ms_rp_plot_set_row(p, i, donors->v[i]);
        ms_rp_plot_set_col(p, i, donors->v[i]);
        p->v[i * donors->n + i] = 1.0;
    }
    cJSON_ArrayForEach(e, pairs) {
        size_t i = names_find(donors, ms_rp_str(e, "a")), j = names_find(donors, ms_rp_str(e, "b"));
        double v;
        if (i != (size_t)-1 && j != (size_t)-1 && ms_rp_num(e, "cosine", &v))
            p->v[i * donors->n + j] = p->v[j * donors->n + i] = v;
    }
    fig(c, p, "Cosine similarity of the donors' task vectors (1 on the diagonal)");
}

/* Without per-layer figures: the whole-model rate of each pair. */
static void conflict_bars(ms_rp_ctx *c, const cJSON *pairs, const names *series)
{
    const cJSON *e;
    size_t r = 0;
    bool ties = false;
    double v;
    cJSON_ArrayForEach(e, pairs)
        ties = ties || ms_rp_num(e, "ties_conflict", &v);
    if (!series->n)
        return;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_BARS, "audit_sign_conflict", series->n,
                             ties ? 2 : 1);
    if (!p)
        return;
    cJSON_ArrayForEach(e, pairs) {
        if (r >= series->n)
            break;
        ms_rp_plot_set_row(p, r, series->v[r]);
        if (ms_rp_num(e, "sign_conflict", &v))
            p->v[r * p->ncol] = v;
        if (ties && ms_rp_num(e, "ties_conflict", &v))
            p->v[r * p->ncol + 1] = v;
        r++;
    }
    ms_rp_plot_set_col(p, 0, "sign_conflict");
    if (ties)
        ms_rp_plot_set_col(p, 1, "ties_conflict");
    snprintf(p->title, sizeof(p->title), "Sign conflict between donors (whole model)");
    p->xlabel = "donor pair";
    p->ylabel = "sign conflict (% of weights)";
    p->y_percent = true;
    fig(c, p, "Fraction of weights where two donors' deltas disagree in sign, over the whole "
              "model (the audit result has no per-layer figure)");
}

/* Per-layer sign conflict: a number per layer, or layer.pairs[]. */
static void audit_conflict_plot(ms_rp_ctx *c, const cJSON *layers, const cJSON *pairs)
{
    names series = {0};
    char labels[MAX_NAMES][96];
    const cJSON *e, *l;
    size_t nrow = 0;
    bool pooled = false;
    size_t found = 0;
    cJSON_ArrayForEach(l, layers) {
        double v;
        if (!layer_index(l, &v) || nrow >= MAX_ROWS)
            continue;
        nrow++;
        pooled = pooled || ms_rp_num(l, "sign_conflict", &v);
        cJSON_ArrayForEach(e, ms_rp_arr(l, "pairs"))
            found += ms_rp_num(e, "sign_conflict", &v);
    }
    cJSON_ArrayForEach(e, pairs) {
        if (series.n >= MAX_NAMES)
            break;
        const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
        snprintf(labels[series.n], sizeof(labels[0]), "%.40s-vs-%.40s", a ? a : "?", b ? b : "?");
        series.v[series.n] = labels[series.n];
        series.n++;
    }
    size_t ncol = pooled ? 1 : series.n;
    if (!pooled && !found) {
        conflict_bars(c, pairs, &series);
        return;
    }
    if (!nrow || !ncol)
        return;
    /* per-pair values: layer.pairs[] matched by (a, b) */
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_LINES, "audit_sign_conflict", nrow, ncol);
    if (!p)
        return;
    size_t r = 0;
    cJSON_ArrayForEach(l, layers) {
        double li, v;
        if (!layer_index(l, &li) || r >= nrow)
            continue;
        char lab[32];
        snprintf(lab, sizeof(lab), "%.0f", li);
        ms_rp_plot_set_row(p, r, lab);
        if (pooled && ms_rp_num(l, "sign_conflict", &v))
            p->v[r] = v;
        const cJSON *lp = pooled ? NULL : ms_rp_arr(l, "pairs");
        cJSON_ArrayForEach(e, lp) {
            char key[96];
            const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
            snprintf(key, sizeof(key), "%.40s-vs-%.40s", a ? a : "?", b ? b : "?");
            size_t j = names_find(&series, key);
            if (j != (size_t)-1 && ms_rp_num(e, "sign_conflict", &v))
                p->v[r * ncol + j] = v;
        }
        r++;
    }
    if (pooled)
        ms_rp_plot_set_col(p, 0, "all_pairs");
    for (size_t j = 0; !pooled && j < ncol; j++)
        ms_rp_plot_set_col(p, j, series.v[j]);
    snprintf(p->title, sizeof(p->title), "Sign conflict between donors per layer");
    p->xlabel = "layer";
    p->ylabel = "sign conflict (% of weights)";
    p->y_percent = true;
    fig(c, p, "Fraction of weights where donors' deltas disagree in sign, per layer");
}

static void audit_suggestion(ms_rp_doc *d, const cJSON *sug, const cJSON *donors,
                             const names *dn)
{
    static const char *const hdr[] = {"donor", "target", "share now", "suggested weight",
                                      "share after"};
    const cJSON *w = ms_rp_obj(sug, "weights"), *after = ms_rp_obj(sug, "shares_after");
    const cJSON *target = ms_rp_obj(sug, "target"), *e;
    if (!w && !after)
        return;
    ms_rp_h(d, 3, "Suggested rebalancing");
    ms_rp_table(d, 5, hdr);
    for (size_t i = 0; i < dn->n; i++) {
        const cJSON *now = NULL;
        cJSON_ArrayForEach(e, donors)
            if (ms_rp_same_model(ms_rp_str(e, "name"), dn->v[i]))
                now = e;
        ms_rp_cell(d, RP_CODE, dn->v[i]);
        cell_pct(d, target, dn->v[i]);
        cell_pct(d, now, "share");
        cell_num(d, w, dn->v[i], 4);
        cell_pct(d, after, dn->v[i]);
        ms_rp_row(d);
    }
    const char *recipe = ms_rp_str(sug, "recipe");
    /* the reweighted recipe's text, or where audit --suggest wrote it */
    if (recipe && strchr(recipe, '\n')) {
        ms_rp_code(d, "yaml", recipe);
    } else if (recipe) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "The reweighted recipe was written to ");
        ms_rp_span(d, RP_CODE, recipe);
        ms_rp_span(d, RP_OURS, ".");
    }
}

/*
 * An audit result without per-layer cosine to the base (layers[].donors,
 * older results): take it from a compare result that has the base and the
 * donors among its models.
 */
static void cosine_base_from_compare(ms_rp_ctx *c, const char *base, const names *dn)
{
    const cJSON *l, *e;
    for (size_t i = 0; base && i < c->r->n; i++) {
        const ms_rp_input *in = &c->r->in[i];
        const cJSON *layers = ms_rp_arr(in->root, "layers");
        size_t nrow = 0, found = 0;
        double v;
        if (in->kind != MS_RK_COMPARE)
            continue;
        cJSON_ArrayForEach(l, layers)
            nrow += layer_index(l, &v) && nrow < MAX_ROWS;
        if (!nrow || !dn->n)
            continue;
        ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_LINES, "audit_cosine_base_by_layer", nrow,
                                 dn->n);
        if (!p)
            return;
        size_t r = 0;
        cJSON_ArrayForEach(l, layers) {
            double li;
            char lab[32];
            if (!layer_index(l, &li) || r >= nrow)
                continue;
            snprintf(lab, sizeof(lab), "%.0f", li);
            ms_rp_plot_set_row(p, r, lab);
            cJSON_ArrayForEach(e, ms_rp_arr(l, "pairs")) {
                const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
                const char *other = ms_rp_same_model(a, base)   ? b
                                    : ms_rp_same_model(b, base) ? a
                                                             : NULL;
                for (size_t j = 0; other && j < dn->n; j++)
                    if (ms_rp_same_model(other, dn->v[j]) && ms_rp_num(e, "cosine", &v)) {
                        p->v[r * dn->n + j] = v;
                        found++;
                    }
            }
            r++;
        }
        for (size_t j = 0; j < dn->n; j++)
            ms_rp_plot_set_col(p, j, dn->v[j]);
        snprintf(p->title, sizeof(p->title), "Cosine of each donor to the base per layer");
        p->xlabel = "layer";
        p->ylabel = "cosine(donor, base)";
        if (found) {
            ms_rp_fig(c->doc, p->name, "Cosine similarity of each donor's weights to the base's, "
                                    "per layer (from the compare result)");
            return;
        }
        ms_rp_plot_drop_last(c->plots);
    }
}

static void audit_notes(ms_rp_doc *d, const cJSON *notes)
{
    const cJSON *e;
    bool head = false;
    cJSON_ArrayForEach(e, notes) {
        if (!cJSON_IsString(e))
            continue;
        if (!head) {
            ms_rp_h(d, 3, "Notes from the audit");
            head = true;
        }
        ms_rp_li(d);
        ms_rp_span(d, RP_TEXT, e->valuestring);
    }
}

void ms_rp_section_audit(ms_rp_ctx *c, const ms_rp_input *in)
{
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *donors = ms_rp_arr(root, "donors");
    const cJSON *layers = ms_rp_arr(root, "layers");
    names dn = {0};
    bool cos_plotted = false;
    donor_names(&dn, donors);
    ms_rp_h(d, 2, "Donor audit");
    source_line(d, in, "Donors against the base under the recipe (mergescope audit)");
    method_para(d, ms_rp_str(root, "method"), ms_rp_str(root, "base"));
    audit_donors(d, donors);
    ms_rp_plot *p = plot_layer_values(c, RP_PLOT_STACKED, "audit_shares_by_layer", layers,
                                   "shares", &dn, NULL, NULL);
    if (p) {
        snprintf(p->title, sizeof(p->title), "Donor shares of the merged delta per layer");
        p->xlabel = "layer";
        p->ylabel = "share of merged delta (%)";
        p->y_percent = true;
        fig(c, p, "Each donor's share of the merged delta, per layer (stacked)");
    }
    static const struct { const char *keys[4], *name, *title, *ylabel, *caption; bool log; }
    per_layer[] = {
        {{"rel_norm", "task_vector_norm", "norm", NULL}, "audit_norm_by_layer",
         "Task-vector norm per layer", "|donor - base| / |base|",
         "Relative task-vector norm of each donor, per layer", true},
        {{"cos_to_base", "cosine_to_base", "cos_base", "cosine"}, "audit_cosine_base_by_layer",
         "Cosine of each donor to the base per layer", "cosine(donor, base)",
         "Cosine similarity of each donor's weights to the base's, per layer", false},
    };
    for (size_t k = 0; k < MS_ARRAY_SIZE(per_layer); k++)
        for (size_t i = 0; i < 4 && per_layer[k].keys[i]; i++) {
            p = plot_layer_values(c, RP_PLOT_LINES, per_layer[k].name, layers,
                                  per_layer[k].keys[i], &dn, NULL, NULL);
            if (!p)
                continue;
            snprintf(p->title, sizeof(p->title), "%s", per_layer[k].title);
            p->xlabel = "layer";
            p->ylabel = per_layer[k].ylabel;
            p->y_log = per_layer[k].log;
            fig(c, p, per_layer[k].caption);
            cos_plotted = cos_plotted || k == 1;
            break;
        }
    if (!cos_plotted)
        cosine_base_from_compare(c, ms_rp_str(root, "base"), &dn);
    audit_fingerprints(d, donors);
    audit_notes(d, ms_rp_arr(root, "notes"));
    audit_pairs(c, ms_rp_arr(root, "pairs"), &dn);
    audit_conflict_plot(c, layers, ms_rp_arr(root, "pairs"));
    audit_suggestion(d, ms_rp_obj(root, "suggestion"), donors, &dn);
}

/* ==== attribute ==== */

/* The first recipe explain result (not a recipe check), or NULL. */
const cJSON *ms_rp_explain(const ms_report *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->in[i].kind == MS_RK_RECIPE && ms_rp_str(r->in[i].root, "merge_method"))
            return r->in[i].root;
    return NULL;
}

void ms_rp_section_attribute(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const hdr[] = {"donor", "coefficient", "share", "sign agreement",
                                      "recipe weight"};
    static const char *const filters[] = {"self_attn", "mlp", "other"};
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *donors = ms_rp_arr(root, "donors"), *e;
    names dn = {0};
    names_from(&dn, donors, "name");
    ms_rp_h(d, 2, "Attribution of the finished merge");
    source_line(d, in, "Least-squares fit of the merged delta on the donor deltas "
                       "(mergescope attribute)");
    const char *merged = ms_rp_str(root, "merged"), *base = ms_rp_str(root, "base");
    if (merged || base) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Merged checkpoint: ");
        ms_rp_span(d, RP_CODE, merged ? merged : "n/a");
        ms_rp_span(d, RP_OURS, "; base: ");
        ms_rp_span(d, RP_CODE, base ? base : "n/a");
        ms_rp_span(d, RP_OURS, ".");
    }
    const cJSON *ill = ms_rp_get(root, "ill_conditioned");
    if (cJSON_IsTrue(ill)) {
        ms_rp_note(d);
        ms_rp_span(d, RP_OURS, "The donor deltas are nearly collinear (ill-conditioned fit): "
                            "individual coefficients are unreliable (the condition "
                            "number is in the JSON).");
    }
    const cJSON *explain = ms_rp_explain(c->r);
    size_t ncol = explain ? 5 : 4;
    ms_rp_table(d, ncol, hdr);
    cJSON_ArrayForEach(e, donors) {
        const char *n = ms_rp_str(e, "name");
        ms_rp_cell(d, RP_CODE, n ? n : "n/a");
        cell_num(d, e, "coefficient", 4);
        cell_pct(d, e, "share");
        cell_pct(d, e, "sign_agreement");
        if (explain)
            ms_rp_cell_param(d, explain, n, "weight");
        ms_rp_row(d);
    }
    ms_rp_cell(d, RP_OURS, "residual (unexplained)");
    ms_rp_cell(d, RP_OURS, "");
    cell_pct(d, root, "residual_share");
    ms_rp_row(d);
    const cJSON *fo = ms_rp_obj(root, "filters");
    if (fo && dn.n) {
        ms_rp_h(d, 3, "By filter class");
        ms_rp_table(d, dn.n + 2, NULL);
        ms_rp_cell(d, RP_OURS, "filter");
        for (size_t i = 0; i < dn.n; i++)
            ms_rp_cell(d, RP_CODE, dn.v[i]);
        ms_rp_cell(d, RP_OURS, "residual");
        for (size_t f = 0; f < 3; f++) {
            const cJSON *fe = ms_rp_obj(fo, filters[f]);
            if (!fe)
                continue;
            ms_rp_cell(d, RP_CODE, filters[f]);
            for (size_t i = 0; i < dn.n; i++)
                cell_pct(d, ms_rp_obj(fe, "shares"), dn.v[i]);
            cell_pct(d, fe, "residual_share");
            ms_rp_row(d);
        }
    }
    ms_rp_plot *p = plot_layer_values(c, RP_PLOT_STACKED, "attribute_shares_by_layer",
                                   ms_rp_arr(root, "layers"), "shares", &dn, "residual_share",
                                   "residual");
    if (p) {
        snprintf(p->title, sizeof(p->title), "Measured donor shares per layer");
        p->xlabel = "layer";
        p->ylabel = "share of merged delta (%)";
        p->y_percent = true;
        fig(c, p, "Measured share of the merged delta per donor and layer, with the "
                  "unexplained residual (stacked)");
    }
}

/* ==== provenance ==== */

void ms_rp_section_provenance(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const hdr[] = {"merged layer", "source model", "source layer",
                                      "weight", "cosine"};
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *layers = ms_rp_arr(root, "layers"), *l, *s;
    names models = {0};
    size_t npts = 0;
    ms_rp_h(d, 2, "Layer provenance");
    source_line(d, in, "Which donor layer each merged layer comes from (mergescope provenance)");
    ms_rp_table(d, 5, hdr);
    cJSON_ArrayForEach(l, layers) {
        cJSON_ArrayForEach(s, ms_rp_arr(l, "sources")) {
            names_add(&models, ms_rp_str(s, "model"));
            cell_num(d, l, "layer", 0);
            const char *m = ms_rp_str(s, "model");
            ms_rp_cell(d, RP_CODE, m ? m : "n/a");
            cell_num(d, s, "layer", 0);
            cell_num(d, s, "weight", 3);
            cell_num(d, s, "cosine", 4);
            ms_rp_row(d);
            npts++;
        }
    }
    const char *text = ms_rp_str(root, "recipe");
    if (text) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Recovered slice recipe:");
        ms_rp_code(d, "yaml", text);
    }
    if (!npts || !models.n || npts > MAX_ROWS)
        return;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_GROUPS, "provenance_map", npts, 3);
    if (!p)
        return;
    /* GROUPS: col labels are the group names; reuse ncol for the groups */
    size_t k = 0;
    cJSON_ArrayForEach(l, layers) {
        double ml;
        if (!ms_rp_num(l, "layer", &ml))
            continue;
        cJSON_ArrayForEach(s, ms_rp_arr(l, "sources")) {
            double sl;
            size_t g = names_find(&models, ms_rp_str(s, "model"));
            if (k < npts && g != (size_t)-1 && ms_rp_num(s, "layer", &sl)) {
                p->v[k * 3] = ml;
                p->v[k * 3 + 1] = sl;
                p->v[k * 3 + 2] = (double)g;
            }
            k++;
        }
    }
    ms_rp_plot_set_groups(p, models.v, models.n);
    snprintf(p->title, sizeof(p->title), "Provenance: merged layer to donor layer");
    p->xlabel = "merged layer";
    p->ylabel = "donor layer";
    fig(c, p, "Each merged layer plotted at the donor layer it comes from, coloured by donor");
}

/* ==== compare ==== */

static void compare_most_different(ms_rp_doc *d, const cJSON *md)
{
    static const char *const hdr[] = {"A", "B", "layer", "rel. L2", "cosine"};
    const cJSON *e;
    int shown = 0;
    if (!cJSON_GetArraySize(md))
        return;
    ms_rp_h(d, 3, "Most different layers");
    ms_rp_table(d, 5, hdr);
    cJSON_ArrayForEach(e, md) {
        const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
        if (shown++ >= 12)
            break;
        ms_rp_cell(d, RP_CODE, a ? a : "n/a");
        ms_rp_cell(d, RP_CODE, b ? b : "n/a");
        cell_num(d, e, "layer", 0);
        cell_num(d, e, "rel_l2", 4);
        cell_num(d, e, "cosine", 6);
        ms_rp_row(d);
    }
}

typedef struct metric {
    const char *key, *name, *title, *ylabel, *caption;
    bool log;
} metric;

static const metric compare_metrics[] = {
    {"rel_l2", "compare_rel_l2_by_layer", "Relative L2 distance per layer", "|A - B| / |A|",
     "Relative L2 distance between each pair, per layer", true},
    {"cosine", "compare_cosine_by_layer", "Cosine similarity per layer", "cosine(A, B)",
     "Cosine similarity between each pair, per layer", false},
};

/* "A-vs-B" from the two models' last path components. */
static void pair_label(char *buf, size_t cap, const char *a, const char *b)
{
    snprintf(buf, cap, "%.40s-vs-%.40s", ms_path_basename(a ? a : "?"),
             ms_path_basename(b ? b : "?"));
}

/* One metric of layers[].pairs[], one series per pair (matched by name). */
static void compare_layer_plot(ms_rp_ctx *c, const cJSON *layers, size_t nrow, const names *pn,
                               const metric *m)
{
    const cJSON *l, *e;
    size_t r = 0, found = 0;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_LINES, m->name, nrow, pn->n);
    if (!p)
        return;
    cJSON_ArrayForEach(l, layers) {
        double li, v;
        char lab[32];
        size_t j = 0;
        if (!layer_index(l, &li) || r >= nrow)
            continue;
        snprintf(lab, sizeof(lab), "%.0f", li);
        ms_rp_plot_set_row(p, r, lab);
        cJSON_ArrayForEach(e, ms_rp_arr(l, "pairs")) {
            const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
            char key[96];
            pair_label(key, sizeof(key), a, b);
            /* unnamed pairs are taken in the order of the top-level pairs[] */
            size_t idx = a && b ? names_find(pn, key) : j;
            if (idx < pn->n && ms_rp_num(e, m->key, &v)) {
                p->v[r * pn->n + idx] = v;
                found++;
            }
            j++;
        }
        r++;
    }
    for (size_t j = 0; j < pn->n; j++)
        ms_rp_plot_set_col(p, j, pn->v[j]);
    snprintf(p->title, sizeof(p->title), "%s", m->title);
    p->xlabel = "layer";
    p->ylabel = m->ylabel;
    p->y_log = m->log;
    if (found)
        fig(c, p, m->caption);
}

void ms_rp_section_compare(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const hdr[] = {"A", "B", "cosine", "rel. L2", "max abs", "identical"};
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *pairs = ms_rp_arr(root, "pairs"), *e, *l;
    names pn = {0};
    char labels[MAX_NAMES][96];
    ms_rp_h(d, 2, "Distances between checkpoints");
    source_line(d, in, "Whole-model and per-layer distances (mergescope compare)");
    ms_rp_table(d, 6, hdr);
    cJSON_ArrayForEach(e, pairs) {
        const char *a = ms_rp_str(e, "a"), *b = ms_rp_str(e, "b");
        ms_rp_cell(d, RP_CODE, a ? a : "n/a");
        ms_rp_cell(d, RP_CODE, b ? b : "n/a");
        cell_num(d, e, "cosine", 5);
        cell_num(d, e, "rel_l2", 4);
        cell_num(d, e, "max_abs", 4);
        cell_pct(d, e, "identical");
        ms_rp_row(d);
        if (pn.n < MAX_NAMES) {
            pair_label(labels[pn.n], sizeof(labels[0]), a, b);
            pn.v[pn.n] = labels[pn.n];
            pn.n++;
        }
    }
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "rel. L2: |A - B| / |A|; identical: fraction of weights exactly equal.");
    compare_most_different(d, ms_rp_arr(root, "most_different"));
    const cJSON *layers = ms_rp_arr(root, "layers");
    size_t nrow = 0;
    cJSON_ArrayForEach(l, layers) {
        double v;
        nrow += layer_index(l, &v) && nrow < MAX_ROWS;
    }
    for (size_t k = 0; nrow && pn.n && k < MS_ARRAY_SIZE(compare_metrics); k++)
        compare_layer_plot(c, layers, nrow, &pn, &compare_metrics[k]);
}

/* ==== quant ==== */

/* "Q5_K 12%, IQ4_NL 40%" from types[] shares (or n_params). */
bool ms_rp_type_mix(const cJSON *types, ms_sb *out, bool markdown)
{
    const cJSON *t;
    double total = 0, v;
    bool ok = true, first = true;
    cJSON_ArrayForEach(t, types)
        if (!ms_rp_num(t, "share", &v) && ms_rp_num(t, "n_params", &v))
            total += v;
    cJSON_ArrayForEach(t, types) {
        const char *name = ms_rp_str(t, "type");
        double share;
        if (!name)
            continue;
        if (!ms_rp_num(t, "share", &share)) {
            if (!(total > 0) || !ms_rp_num(t, "n_params", &v))
                continue;
            share = v / total;
        }
        ok = ok && (first || ms_sb_add(out, ", "));
        ok = ok && (markdown ? ms_esc_md(out, name) : ms_sb_add(out, name));
        /* whole percent, but a sliver of the model is not "0%" */
        ok = ok && (share >= 0.01 || share <= 0 ? ms_sb_addf(out, " %.0f%%", share * 100.0)
                    : share >= 0.001            ? ms_sb_addf(out, " %.1f%%", share * 100.0)
                                                : ms_sb_add(out, " <0.1%"));
        first = false;
    }
    return ok;
}

static void quant_worst(ms_rp_doc *d, const cJSON *tensors)
{
    static const char *const hdr[] = {"tensor", "type", "bpw", "rel. RMSE", "SNR dB",
                                      "cosine", "weighted rel. err"};
    const cJSON *best[10] = {0}, *t;
    double bv[10];
    size_t n = 0;
    cJSON_ArrayForEach(t, tensors) {
        double v;
        if (!ms_rp_num(t, "rel_rmse", &v))
            continue;
        size_t i = n < 10 ? n++ : 10;
        if (i == 10 && !(v > bv[9]))
            continue;
        if (i == 10)
            i = 9;
        while (i > 0 && bv[i - 1] < v) {
            best[i] = best[i - 1];
            bv[i] = bv[i - 1];
            i--;
        }
        best[i] = t;
        bv[i] = v;
    }
    if (!n)
        return;
    ms_rp_h(d, 3, "Tensors with the largest error");
    ms_rp_table(d, 7, hdr);
    for (size_t i = 0; i < n; i++) {
        const char *name = ms_rp_str(best[i], "name"), *type = ms_rp_str(best[i], "type");
        ms_rp_cell(d, RP_CODE, name ? name : "n/a");
        ms_rp_cell(d, RP_CODE, type ? type : "n/a");
        cell_num(d, best[i], "bpw", 2);
        cell_num(d, best[i], "rel_rmse", 5);
        cell_num(d, best[i], "snr_db", 2);
        cell_num(d, best[i], "cosine", 6);
        cell_num(d, best[i], "weighted_rel_err", 5);
        ms_rp_row(d);
    }
}

/* Per-layer relative RMSE, and the importance-weighted error when the
 * result has one (quant --imatrix). */
static ms_rp_plot *quant_layer_plot(ms_rp_ctx *c, const cJSON *layers)
{
    static const char *const keys[] = {"rel_rmse", "weighted_rel_err"};
    static const char *const labels[] = {"rel_RMSE", "imatrix-weighted_rel_error"};
    const cJSON *l;
    size_t nrow = 0, ncol = 1, found = 0;
    double v;
    cJSON_ArrayForEach(l, layers) {
        if (!layer_index(l, &v) || nrow >= MAX_ROWS)
            continue;
        nrow++;
        found += ms_rp_num(l, "rel_rmse", &v);
        ncol = ms_rp_num(l, "weighted_rel_err", &v) ? 2 : ncol;
    }
    if (!found)
        return NULL;
    ms_rp_plot *p = ms_rp_plot_add(c->plots, RP_PLOT_LINES, "quant_error_by_layer", nrow, ncol);
    size_t r = 0;
    const cJSON *rows = p ? layers : NULL;
    cJSON_ArrayForEach(l, rows) {
        double li;
        char lab[32];
        if (!layer_index(l, &li) || r >= nrow)
            continue;
        snprintf(lab, sizeof(lab), "%.0f", li);
        ms_rp_plot_set_row(p, r, lab);
        for (size_t k = 0; k < ncol; k++)
            if (ms_rp_num(l, keys[k], &v))
                p->v[r * ncol + k] = v;
        r++;
    }
    for (size_t k = 0; p && k < ncol; k++)
        ms_rp_plot_set_col(p, k, labels[k]);
    return p;
}

static void quant_plots(ms_rp_ctx *c, const cJSON *root, double bpw, bool has_bpw)
{
    const cJSON *types = ms_rp_arr(root, "types"), *t;
    size_t nt = 0;
    cJSON_ArrayForEach(t, types)
        nt += ms_rp_str(t, "type") != NULL && nt < MAX_ROWS;
    ms_rp_plot *p = quant_layer_plot(c, ms_rp_arr(root, "layers"));
    if (p) {
        snprintf(p->title, sizeof(p->title), "Quantization error per layer");
        p->xlabel = "layer";
        p->ylabel = "relative RMSE (%)";
        p->y_percent = true;
        fig(c, p, "Relative RMSE of the quantized weights against the reference, per layer");
    }
    if (!nt)
        return;
    double w;
    size_t ecols = 1;
    cJSON_ArrayForEach(t, types)
        ecols = ms_rp_num(t, "weighted_rel_err", &w) ? 2 : ecols;
    ms_rp_plot *e = ms_rp_plot_add(c->plots, RP_PLOT_BARS, "quant_error_by_type", nt, ecols);
    ms_rp_plot *m = ms_rp_plot_add(c->plots, RP_PLOT_BARS, "quant_type_mix", nt, 1);
    if (!e || !m)
        return;
    size_t r = 0;
    double total = 0, v;
    cJSON_ArrayForEach(t, types)
        if (ms_rp_num(t, "n_params", &v))
            total += v;
    cJSON_ArrayForEach(t, types) {
        const char *name = ms_rp_str(t, "type");
        if (!name || r >= nt)
            continue;
        ms_rp_plot_set_row(e, r, name);
        ms_rp_plot_set_row(m, r, name);
        if (ms_rp_num(t, "rel_rmse", &v))
            e->v[r * ecols] = v;
        if (ecols == 2 && ms_rp_num(t, "weighted_rel_err", &v))
            e->v[r * ecols + 1] = v;
        if (ms_rp_num(t, "share", &v))
            m->v[r] = v;
        else if (total > 0 && ms_rp_num(t, "n_params", &v))
            m->v[r] = v / total;
        r++;
    }
    ms_rp_plot_set_col(e, 0, "rel_RMSE");
    if (ecols == 2)
        ms_rp_plot_set_col(e, 1, "imatrix-weighted_rel_error");
    ms_rp_plot_set_col(m, 0, "share_of_weights");
    snprintf(e->title, sizeof(e->title), "Quantization error per ggml type");
    e->xlabel = "ggml type";
    e->ylabel = "relative RMSE (%)";
    e->y_percent = true;
    fig(c, e, "Relative RMSE pooled over the tensors of each ggml type");
    if (has_bpw)
        snprintf(m->title, sizeof(m->title), "Type mix: %.3f bits per weight overall", bpw);
    else
        snprintf(m->title, sizeof(m->title), "Type mix");
    m->xlabel = "ggml type";
    m->ylabel = "share of weights (%)";
    m->y_percent = true;
    fig(c, m, "Share of the model's weights stored in each ggml type");
}

void ms_rp_section_quant(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const hdr[] = {"type", "weights", "share", "rel. RMSE"};
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *t;
    double bpw = 0;
    bool has_bpw = ms_rp_num(root, "bits_per_weight", &bpw);
    ms_sb mix = MS_SB_INIT;
    ms_rp_h(d, 2, "Quantization error");
    source_line(d, in, "Quantized model against its reference (mergescope quant)");
    ms_rp_p(d);
    if (has_bpw)
        ms_rp_spanf(d, "Bits per weight: %.3f. ", bpw);
    if (ms_rp_type_mix(ms_rp_arr(root, "types"), &mix, false) && mix.len) {
        ms_rp_span(d, RP_OURS, "Type mix (share of weights): ");
        ms_rp_span(d, RP_TEXT, ms_sb_str(&mix));
        ms_rp_span(d, RP_OURS, ".");
    }
    ms_sb_free(&mix);
    const cJSON *ov = ms_rp_obj(root, "overall");
    double v;
    if (ms_rp_num(ov, "rel_rmse", &v)) {
        ms_rp_spanf(d, " Overall relative RMSE %.5f", v);
        if (ms_rp_num(ov, "snr_db", &v))
            ms_rp_spanf(d, ", SNR %.2f dB", v);
        if (ms_rp_num(ov, "cosine", &v))
            ms_rp_spanf(d, ", cosine %.6f", v);
        ms_rp_span(d, RP_OURS, ".");
    }
    ms_rp_table(d, 4, hdr);
    cJSON_ArrayForEach(t, ms_rp_arr(root, "types")) {
        const char *name = ms_rp_str(t, "type");
        ms_rp_cell(d, RP_CODE, name ? name : "n/a");
        cell_num(d, t, "n_params", 0);
        cell_pct(d, t, "share");
        cell_num(d, t, "rel_rmse", 5);
        ms_rp_row(d);
    }
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, "rel. RMSE: sqrt(sum (q - r)^2) / sqrt(sum r^2) over the weights in "
                        "scope, q quantized, r reference.");
    quant_plots(c, root, bpw, has_bpw);
    quant_worst(d, ms_rp_arr(root, "tensors"));
}

/* ==== inspect ==== */

static void inspect_metadata(ms_rp_doc *d, const cJSON *meta)
{
    static const char *const hdr[] = {"key", "value"};
    const cJSON *m;
    int shown = 0, total = cJSON_GetArraySize(meta);
    if (!total)
        return;
    ms_rp_h(d, 3, "Metadata");
    ms_rp_table(d, 2, hdr);
    cJSON_ArrayForEach(m, meta) {
        char buf[200];
        double cnt;
        if (shown >= 40)
            break;
        ms_rp_cell(d, RP_CODE, m->string ? m->string : "");
        if (cJSON_IsString(m)) {
            snprintf(buf, sizeof(buf), "%.160s%s", m->valuestring,
                     strlen(m->valuestring) > 160 ? "..." : "");
            ms_rp_cell(d, RP_TEXT, buf);
        } else if (cJSON_IsNumber(m)) {
            ms_rp_cellf(d, "%.10g", m->valuedouble);
        } else if (cJSON_IsBool(m)) {
            ms_rp_cell(d, RP_OURS, cJSON_IsTrue(m) ? "true" : "false");
        } else if (cJSON_IsArray(m)) {
            ms_rp_cellf(d, "[%d values]", cJSON_GetArraySize(m));
        } else if (ms_rp_num(m, "count", &cnt)) {
            ms_rp_cellf(d, "[%.0f values]", cnt);
        } else {
            ms_rp_cell(d, RP_OURS, "(object)");
        }
        ms_rp_row(d);
        shown++;
    }
    if (total > shown) {
        ms_rp_p(d);
        ms_rp_spanf(d, "%d more keys in the JSON.", total - shown);
    }
}

void ms_rp_section_inspect(ms_rp_ctx *c, const ms_rp_input *in)
{
    static const char *const thdr[] = {"type", "tensors", "weights", "bytes"};
    static const char *const nhdr[] = {"tensor", "kind", "type", "shape", "bytes"};
    ms_rp_doc *d = c->doc;
    const cJSON *root = in->root, *t;
    const char *fmt = ms_rp_str(root, "format"), *arch = ms_rp_str(root, "architecture");
    double v;
    const char *model = ms_rp_str(root, "model");
    ms_rp_h(d, 2, "Model");
    source_line(d, in, "File summary (mergescope inspect)");
    if (model) {
        ms_rp_li(d);
        ms_rp_span(d, RP_OURS, "model: ");
        ms_rp_span(d, RP_CODE, model);
    }
    ms_rp_li(d);
    ms_rp_span(d, RP_OURS, "format: ");
    ms_rp_span(d, RP_CODE, fmt ? fmt : "n/a");
    ms_rp_li(d);
    ms_rp_span(d, RP_OURS, "architecture: ");
    ms_rp_span(d, RP_CODE, arch ? arch : "n/a");
    if (ms_rp_num(root, "n_layers", &v)) {
        ms_rp_li(d);
        ms_rp_spanf(d, "layers: %.0f", v);
    }
    if (ms_rp_num(root, "n_params", &v)) {
        ms_rp_li(d);
        ms_rp_spanf(d, "parameters: %.0f", v);
    }
    if (ms_rp_num(root, "bits_per_weight", &v)) {
        ms_rp_li(d);
        ms_rp_spanf(d, "bits per weight: %.3f", v);
    }
    ms_rp_table(d, 4, thdr);
    cJSON_ArrayForEach(t, ms_rp_arr(root, "types")) {
        const char *name = ms_rp_str(t, "type");
        ms_rp_cell(d, RP_CODE, name ? name : "n/a");
        cell_num(d, t, "n_tensors", 0);
        cell_num(d, t, "n_params", 0);
        cell_num(d, t, "bytes", 0);
        ms_rp_row(d);
    }
    inspect_metadata(d, ms_rp_obj(root, "metadata"));
    const cJSON *tensors = ms_rp_arr(root, "tensors");
    int nt = cJSON_GetArraySize(tensors), shown = 0;
    if (!nt)
        return;
    ms_rp_h(d, 3, "Tensors");
    ms_rp_table(d, 5, nhdr);
    cJSON_ArrayForEach(t, tensors) {
        ms_sb shape = MS_SB_INIT;
        const cJSON *s;
        if (shown++ >= 30)
            break;
        const char *name = ms_rp_str(t, "name"), *kind = ms_rp_str(t, "kind"),
                   *dt = ms_rp_str(t, "dtype");
        ms_rp_cell(d, RP_CODE, name ? name : "n/a");
        ms_rp_cell(d, RP_CODE, kind ? kind : "n/a");
        ms_rp_cell(d, RP_CODE, dt ? dt : "n/a");
        cJSON_ArrayForEach(s, ms_rp_arr(t, "shape"))
            if (cJSON_IsNumber(s) && shape.len < 80)
                ms_sb_addf(&shape, "%s%.0f", shape.len ? " x " : "", s->valuedouble);
        ms_rp_cell(d, RP_OURS, shape.len ? ms_sb_str(&shape) : "n/a");
        ms_sb_free(&shape);
        cell_num(d, t, "bytes", 0);
        ms_rp_row(d);
    }
    if (nt > 30) {
        ms_rp_p(d);
        ms_rp_spanf(d, "First 30 of %d tensors; the JSON lists all.", nt);
    }
}
