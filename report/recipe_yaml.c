/*
 * recipe_yaml.c - a mergekit YAML rebuilt from `recipe explain` JSON, for
 * the card's "Configuration" section when the result carries no recipe
 * text. It states the resolved values (defaults included) in a form
 * mergekit reads back to the same per-layer values: a constant becomes a
 * scalar, a per-layer sequence a list of exactly n_layers values (mergekit
 * then gives layer i entry i), a per-filter difference a list of
 * {filter, value} conditions. Global parameters go to the top-level
 * `parameters` (a slice's, for slices, whose gradients restart per slice),
 * as mergekit ignores them under a model. A recipe whose values differ
 * below the filter class (a filter on o_proj, say) is not rebuilt.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define MAX_L 1024
#define MAX_P 24

static const char *const filters[] = {"self_attn", "mlp", "other"};

/* mergekit's global parameters (never read from a model's parameters). */
static bool is_global(const char *p, const char *method)
{
    static const char *const g[] = {"t", "normalize", "rescale", "lambda", "int8_mask",
                                    "select_topk", "filter_wise", "nuslerp_flatten",
                                    "nuslerp_row_wise", "normalize_weights", "eps",
                                    "max_iter", "tol", "r", "alpha"};
    for (size_t i = 0; i < MS_ARRAY_SIZE(g); i++)
        if (!strcmp(p, g[i]))
            return true;
    /* epsilon is per model for della, global for ram */
    return !strcmp(p, "epsilon") && method && ms_str_startswith(method, "ram");
}

static bool is_bool_param(const char *p)
{
    static const char *const b[] = {"normalize", "rescale", "int8_mask", "filter_wise",
                                    "nuslerp_flatten", "nuslerp_row_wise",
                                    "normalize_weights"};
    for (size_t i = 0; i < MS_ARRAY_SIZE(b); i++)
        if (!strcmp(p, b[i]))
            return true;
    return false;
}

/* One parameter's values for one model: per filter, per layer. */
typedef struct seq {
    double v[3][MAX_L];
    bool has[3][MAX_L];
    double any;      /* a value seen on any row */
    bool seen, constant;
    bool conflict;   /* two rows of one layer and filter class disagree */
} seq;

/*
 * Values of param for model (NULL: any model) on the rows of output layers
 * [lo, hi), at index layer - lo; with_null also counts the rows of tensors
 * outside the layers (embeddings, final norm) in "constant".
 */
static void gather(const cJSON *layers, const char *model, const char *param, size_t lo,
                   size_t hi, bool with_null, seq *s)
{
    const cJSON *l;
    memset(s, 0, sizeof(*s));
    s->constant = true;
    cJSON_ArrayForEach(l, layers) {
        const char *m = ms_rp_str(l, "model"), *f = ms_rp_str(l, "filter");
        double v, li;
        if (!m || (model && strcmp(m, model)) || !ms_rp_num(ms_rp_obj(l, "params"), param, &v))
            continue;
        bool in = ms_rp_num(l, "layer", &li) && li >= (double)lo && li < (double)hi;
        if (!in && !(with_null && cJSON_IsNull(ms_rp_get(l, "layer"))))
            continue;
        if (s->seen && v != s->any)
            s->constant = false;
        if (!s->seen)
            s->any = v;
        s->seen = true;
        for (int k = 0; in && f && k < 3; k++) {
            size_t i = (size_t)li - lo;
            if (strcmp(f, filters[k]))
                continue;
            /* finer filters (o_proj, down_proj) cannot be said per class */
            s->conflict = s->conflict || (s->has[k][i] && s->v[k][i] != v);
            s->v[k][i] = v;
            s->has[k][i] = true;
        }
    }
}

static bool put_num(ms_sb *o, const char *param, double v)
{
    if (is_bool_param(param) && (v == 0 || v == 1))
        return ms_sb_add(o, v ? "true" : "false");
    return ms_sb_addf(o, "%.9g", v);
}

/* "[a, b, ...]" for filter k when every layer has a value, else false. */
static bool put_list(ms_sb *o, const char *param, const seq *s, int k, size_t nl)
{
    bool flat = true;
    for (size_t i = 0; i < nl; i++) {
        if (!s->has[k][i])
            return false;
        flat = flat && s->v[k][i] == s->v[k][0];
    }
    if (flat)
        return put_num(o, param, s->v[k][0]);
    bool ok = ms_sb_addc(o, '[');
    for (size_t i = 0; i < nl && ok; i++)
        ok = (i == 0 || ms_sb_add(o, ", ")) && put_num(o, param, s->v[k][i]);
    return ok && ms_sb_addc(o, ']');
}

static bool same_seq(const seq *s, int a, int b, size_t nl)
{
    for (size_t i = 0; i < nl; i++)
        if (s->has[a][i] != s->has[b][i] || (s->has[a][i] && s->v[a][i] != s->v[b][i]))
            return false;
    return true;
}

/* "name: value" at indent, in the simplest form that gives the same values. */
static bool put_param(ms_sb *o, int indent, const char *param, const seq *s, size_t nl)
{
    if (s->conflict && !s->constant)
        return false;
    bool ok = ms_sb_addf(o, "%*s%s:", indent, "", param);
    if (s->constant)
        return ok && ms_sb_addc(o, ' ') && put_num(o, param, s->any) && ms_sb_addc(o, '\n');
    /* a filter class whose rows do not cover every layer cannot be a list */
    int full[3], nfull = 0;
    for (int k = 0; k < 3; k++) {
        full[k] = 1;
        for (size_t i = 0; i < nl; i++)
            full[k] = full[k] && s->has[k][i];
        nfull += full[k];
    }
    if (!nfull)
        return false;
    int first = full[0] ? 0 : full[1] ? 1 : 2;
    bool all_same = true;
    for (int k = 0; k < 3; k++)
        all_same = all_same && (!full[k] || same_seq(s, first, k, nl));
    if (all_same)
        return ok && ms_sb_addc(o, ' ') && put_list(o, param, s, first, nl) &&
               ms_sb_addc(o, '\n');
    ok = ok && ms_sb_addc(o, '\n');
    /* self_attn and mlp are mergekit filters (substrings of the tensor
     * name); "other" is the catch-all entry, last */
    for (int k = 0; k < 3 && ok; k++) {
        if (!full[k])
            continue;
        if (k < 2)
            ok = ms_sb_addf(o, "%*s  - filter: %s\n%*s    value: ", indent, "", filters[k],
                            indent, "");
        else
            ok = ms_sb_addf(o, "%*s  - value: ", indent, "");
        ok = ok && put_list(o, param, s, k, nl) && ms_sb_addc(o, '\n');
    }
    return ok;
}

static void param_names(const cJSON *layers, const char *model, const char *method,
                        bool global, const char **out, size_t *n)
{
    const cJSON *l, *p;
    *n = 0;
    cJSON_ArrayForEach(l, layers) {
        const char *m = ms_rp_str(l, "model");
        if (!m || (model && strcmp(m, model)))
            continue;
        cJSON_ArrayForEach(p, ms_rp_obj(l, "params")) {
            bool dup = false;
            if (!cJSON_IsNumber(p) || is_global(p->string, method) != global)
                continue;
            for (size_t i = 0; i < *n; i++)
                dup = dup || !strcmp(out[i], p->string);
            if (!dup && *n < MAX_P)
                out[(*n)++] = p->string;
        }
    }
}

static bool put_models(ms_sb *o, const cJSON *root, const char *method, size_t nl, seq *s)
{
    const cJSON *layers = ms_rp_arr(root, "layers"), *m;
    const char *base = ms_rp_str(root, "base_model"), *names[MAX_P];
    size_t np;
    bool ok = ms_sb_add(o, "models:\n");
    cJSON_ArrayForEach(m, ms_rp_arr(root, "models")) {
        if (!cJSON_IsString(m) || !ok)
            continue;
        ok = ms_sb_add(o, "  - model: ") && ms_esc_yaml(o, m->valuestring) &&
             ms_sb_addc(o, '\n');
        /* the base's own parameters are ignored by the methods that have one */
        if (base && !strcmp(base, m->valuestring) && strcmp(method, "linear"))
            continue;
        param_names(layers, m->valuestring, method, false, names, &np);
        if (np)
            ok = ok && ms_sb_add(o, "    parameters:\n");
        for (size_t i = 0; i < np && ok; i++) {
            gather(layers, m->valuestring, names[i], 0, nl, true, s);
            ok = put_param(o, 6, names[i], s, nl);
        }
    }
    return ok;
}

/* Parameters of the rows in output layers [a, b): a source's own (model
 * set, not global) or the slice's (model NULL, global), at indent. */
static bool put_range_params(ms_sb *o, const cJSON *root, const char *model, const char *method,
                             double a, double b, int indent, seq *s)
{
    const cJSON *layers = ms_rp_arr(root, "layers");
    const char *names[MAX_P];
    size_t np, lo = (size_t)a, hi = (size_t)b;
    bool ok = true, head = false;
    param_names(layers, model, method, model == NULL, names, &np);
    for (size_t i = 0; i < np && ok; i++) {
        gather(layers, model, names[i], lo, hi, false, s);
        if (!s->seen)
            continue;
        if (!head)
            ok = ms_sb_addf(o, "%*sparameters:\n", indent, "");
        head = true;
        ok = ok && put_param(o, indent + 2, names[i], s, hi - lo);
    }
    return ok;
}

/* One slice per distinct out_layers; parameters per source and per slice,
 * so that gradients restart in every slice as mergekit's do. */
static bool put_slices(ms_sb *o, const cJSON *root, const char *method, size_t nl, seq *s)
{
    const cJSON *e;
    double last[2] = {-1, -1};
    bool ok = ms_sb_add(o, "slices:\n");
    cJSON_ArrayForEach(e, ms_rp_arr(root, "slices")) {
        const cJSON *ol = ms_rp_arr(e, "out_layers"), *lr = ms_rp_arr(e, "layer_range");
        const char *m = ms_rp_str(e, "model");
        if (cJSON_GetArraySize(ol) != 2 || cJSON_GetArraySize(lr) != 2 || !m ||
            !cJSON_IsNumber(ol->child) || !cJSON_IsNumber(ol->child->next) ||
            !cJSON_IsNumber(lr->child) || !cJSON_IsNumber(lr->child->next))
            return false;
        double a = ol->child->valuedouble, b = ol->child->next->valuedouble;
        if (!(a >= 0 && b > a && b <= (double)nl))
            return false;
        if (a != last[0] || b != last[1]) {
            if (last[0] >= 0)
                ok = ok && put_range_params(o, root, NULL, method, last[0], last[1], 4, s);
            ok = ok && ms_sb_add(o, "  - sources:\n");
        }
        last[0] = a;
        last[1] = b;
        ok = ok && ms_sb_add(o, "      - model: ") && ms_esc_yaml(o, m) &&
             ms_sb_addf(o, "\n        layer_range: [%.0f, %.0f]\n", lr->child->valuedouble,
                        lr->child->next->valuedouble) &&
             put_range_params(o, root, m, method, a, b, 8, s);
    }
    if (last[0] >= 0)
        ok = ok && put_range_params(o, root, NULL, method, last[0], last[1], 4, s);
    return ok;
}

bool ms_rp_recipe_yaml(const cJSON *root, ms_sb *o)
{
    const char *method = ms_rp_str(root, "merge_method"), *base = ms_rp_str(root, "base_model");
    const char *names[MAX_P];
    double nld;
    size_t np;
    const cJSON *slices = ms_rp_arr(root, "slices");
    if (!method || !ms_rp_num(root, "n_layers", &nld) || nld < 1 || nld > MAX_L)
        return false;
    size_t nl = (size_t)nld;
    seq *s = calloc(1, sizeof(*s));
    if (!s)
        return false;
    ms_sb body = MS_SB_INIT;
    bool ok = ms_sb_add(&body, "merge_method: ") && ms_esc_yaml(&body, method) &&
              ms_sb_addc(&body, '\n');
    if (ok && base)
        ok = ms_sb_add(&body, "base_model: ") && ms_esc_yaml(&body, base) &&
             ms_sb_addc(&body, '\n');
    bool sliced = cJSON_GetArraySize(slices) > 0;
    if (ok && sliced)
        ok = put_slices(&body, root, method, nl, s);
    else if (ok)
        ok = put_models(&body, root, method, nl, s);
    /* globals: per slice above, else once at the top */
    np = 0;
    if (!sliced)
        param_names(ms_rp_arr(root, "layers"), NULL, method, true, names, &np);
    if (ok && np)
        ok = ms_sb_add(&body, "parameters:\n");
    for (size_t i = 0; i < np && ok; i++) {
        gather(ms_rp_arr(root, "layers"), NULL, names[i], 0, nl, true, s);
        ok = put_param(&body, 2, names[i], s, nl);
    }
    if (ok)
        ok = ms_sb_add(o, ms_sb_str(&body));
    ms_sb_free(&body);
    free(s);
    return ok;
}
