/*
 * recipe_check.c - the checks mergekit makes at plan and run time that need
 * no model weights: value ranges per method, input counts, base presence,
 * required parameters (resolved over a llama-shaped tensor list), DELLA's
 * density +- epsilon window; and warnings for what it silently ignores.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/util.h"
#include "recipe_int.h"
#include "mergescope/banned.h"

/* Layer count used to resolve a models: recipe when the models are not at
 * hand: two layers give both ends of every gradient. */
#define SAMPLE_LAYERS 2

/* (layer, input) pairs resolved in full before sampling layers. */
#define CHECK_BUDGET 100000

static const char *const layer_suffixes[] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.o_proj.weight",
    "post_attention_layernorm.weight", "mlp.up_proj.weight", "mlp.gate_proj.weight",
    "mlp.down_proj.weight",
};

typedef struct cctx {
    ms_recipe *r;
    ms_recipe_stage *st;
    ms_error *err;
    bool *warned_density;  /* per model */
} cctx;

static ms_status nomem(cctx *c)
{
    return ms_error_set(c->err, MS_ERR_NOMEM, c->r->path, -1, "out of memory");
}

/* ================================================= ranges */

typedef struct prange {
    double lo, hi;
    bool lo_open, hi_open, whole;
    const char *text;
} prange;

/* The accepted range of p under method m; false when any finite value goes. */
static bool range_of(ms_merge_method m, ms_param p, prange *r)
{
    static const prange unit_oc = {0, 1, true, false, false, "(0, 1]"};
    static const prange unit_cc = {0, 1, false, false, false, "[0, 1]"};
    static const prange unit_co = {0, 1, false, true, false, "[0, 1)"};
    static const prange positive = {0, 1e300, true, false, false, "(0, inf)"};
    static const prange nonneg = {0, 1e300, false, false, false, "[0, inf)"};
    static const prange count = {1, 1e9, false, false, true, "whole number >= 1"};
    switch (p) {
    case MS_PARAM_DENSITY: case MS_PARAM_SELECT_TOPK: *r = unit_oc; return true;
    case MS_PARAM_GAMMA: *r = unit_cc; return true;
    case MS_PARAM_EPSILON:
        *r = (m == MS_METHOD_RAM || m == MS_METHOD_RAMPLUS_TL) ? nonneg : unit_co;
        return true;
    case MS_PARAM_TOL: case MS_PARAM_EPS: *r = positive; return true;
    case MS_PARAM_R: case MS_PARAM_ALPHA: *r = nonneg; return true;
    case MS_PARAM_MAX_ITER: *r = count; return true;
    default: return false;
    }
}

static ms_status check_number(cctx *c, const ms_recipe_setting *s, const prange *r,
                              double v, int line, int col)
{
    bool ok = (r->lo_open ? v > r->lo : v >= r->lo) && (r->hi_open ? v < r->hi : v <= r->hi);
    if (r->whole && v != (double)(long long)v)
        ok = false;
    if (ok)
        return MS_OK;
    return ms_error_set_at(c->err, MS_ERR_FORMAT, c->r->path, line, col,
                           "%s must be %s %s, got %.10g", s->name,
                           r->whole ? "a" : "in", r->text, v);
}

static ms_status check_value(cctx *c, const ms_recipe_setting *s, const prange *r,
                             const ms_recipe_value *v)
{
    for (size_t i = 0; i < v->n; i++) {
        int line = v->elem_line ? v->elem_line[i] : v->line;
        int col = v->elem_col ? v->elem_col[i] : v->col;
        ms_status rc = check_number(c, s, r, v->v[i], line, col);
        if (rc)
            return rc;
    }
    return MS_OK;
}

/* Range-check one setting, or warn that the method ignores it. */
static ms_status check_setting(cctx *c, const ms_recipe_setting *s, bool per_model,
                               bool on_base)
{
    ms_merge_method m = c->st->method;
    ms_param_def def = ms_method_param(m, s->param);
    const char *mn = ms_method_name(m);
    prange r;
    if (s->param == MS_PARAM_UNKNOWN)
        return ms_recipe_warn(c->r, s->line, s->col,
                              "unknown parameter '%s' is ignored by mergekit", s->name)
            ? nomem(c) : MS_OK;
    if (def.scope == MS_SCOPE_UNUSED)
        return ms_recipe_warn(c->r, s->line, s->col,
                              "parameter '%s' is not used by %s (ignored)", s->name, mn)
            ? nomem(c) : MS_OK;
    if (per_model && def.scope == MS_SCOPE_GLOBAL)
        return ms_recipe_warn(c->r, s->line, s->col,
                              "'%s' is a global parameter of %s: mergekit ignores it in a "
                              "model's parameters", s->name, mn) ? nomem(c) : MS_OK;
    if (on_base)
        return MS_OK; /* warned once per source by the caller */
    if (!range_of(m, s->param, &r))
        return MS_OK;
    if (!s->conditional)
        return check_value(c, s, &r, &s->value);
    for (size_t i = 0; i < s->n_conds; i++) {
        ms_status rc = check_value(c, s, &r, &s->conds[i].value);
        if (rc)
            return rc;
    }
    return MS_OK;
}

static ms_status check_paramset(cctx *c, const ms_recipe_paramset *ps, bool per_model,
                                bool on_base)
{
    for (size_t i = 0; i < ps->n; i++) {
        ms_status rc = check_setting(c, &ps->items[i], per_model, on_base);
        if (rc)
            return rc;
    }
    return MS_OK;
}

static size_t slice_base(const ms_recipe_stage *st, const ms_recipe_slice *sl)
{
    return sl->base_model != MS_RECIPE_NONE ? sl->base_model : st->base_model;
}

static ms_status check_slice_params(cctx *c, const ms_recipe_slice *sl, size_t si)
{
    ms_recipe_stage *st = c->st;
    size_t base = slice_base(st, sl);
    ms_status rc = check_paramset(c, &sl->params, false, false);
    for (size_t k = 0; !rc && k < sl->n_sources; k++) {
        const ms_recipe_source *src = &sl->sources[k];
        bool on_base = ms_method_is_gta(st->method) && src->model == base;
        if (on_base && src->params.n > 0 &&
            ms_recipe_warn(c->r, src->line, src->col,
                           "parameters of the base model '%s' are ignored by %s",
                           st->models[base].ref, ms_method_name(st->method)))
            return nomem(c);
        for (size_t j = 0; j < k; j++) {
            if (sl->sources[j].model == src->model &&
                ms_recipe_warn(c->r, src->line, src->col,
                               "model '%s' is listed more than once in slice %zu: mergekit "
                               "merges it once, with the parameters of its first entry",
                               st->models[src->model].ref, si))
                return nomem(c);
            if (sl->sources[j].model == src->model)
                break;
        }
        rc = check_paramset(c, &src->params, true, on_base);
    }
    return rc;
}

/* ================================================= inputs */

static ms_status input_error(cctx *c, const ms_recipe_slice *sl, const char *what)
{
    return ms_error_set_at(c->err, MS_ERR_FORMAT, c->r->path, sl->line, sl->col,
                           "%s %s", ms_method_name(c->st->method), what);
}

static ms_status check_inputs(cctx *c, const ms_recipe_slice *sl,
                              const ms_recipe_plan_layer *row, size_t base)
{
    char msg[256];
    ms_merge_method m = c->st->method;
    size_t n = row->n_inputs;
    bool has_base = false;
    for (size_t i = 0; i < n; i++)
        has_base |= row->inputs[i].model == base;
    if (ms_method_needs_base(m) && base == MS_RECIPE_NONE)
        return ms_error_set_at(c->err, MS_ERR_FORMAT, c->r->path, c->st->line, c->st->col,
                               "%s needs 'base_model'", ms_method_name(m));
    if (ms_method_needs_base(m) && !has_base && !(m == MS_METHOD_SLERP && n == 1)) {
        snprintf(msg, sizeof(msg), "needs the base model '%s' among the sources of every "
                 "slice", c->st->models[base].ref);
        return input_error(c, sl, msg);
    }
    size_t others = n - (has_base ? 1 : 0);
    switch (m) {
    case MS_METHOD_SLERP:
        if (n > 2) {
            snprintf(msg, sizeof(msg), "merges exactly two models (the base and one "
                     "other), got %zu", n);
            return input_error(c, sl, msg);
        }
        break;
    case MS_METHOD_NEARSWAP:
    case MS_METHOD_ARCEE_FUSION:
        if (n != 2) {
            snprintf(msg, sizeof(msg), "needs exactly two models (the base and one "
                     "other), got %zu", n);
            return input_error(c, sl, msg);
        }
        break;
    case MS_METHOD_NUSLERP:
        if (others != 2) {
            snprintf(msg, sizeof(msg), "needs exactly two models besides an optional "
                     "base, got %zu", others);
            return input_error(c, sl, msg);
        }
        break;
    case MS_METHOD_MODEL_STOCK:
        if (others < 2) {
            snprintf(msg, sizeof(msg), "needs the base and at least two other models, "
                     "got %zu other", others);
            return input_error(c, sl, msg);
        }
        break;
    case MS_METHOD_PASSTHROUGH:
        if (n != 1) {
            snprintf(msg, sizeof(msg), "takes exactly one model per slice, got %zu "
                     "(list each source in its own slice)", n);
            return input_error(c, sl, msg);
        }
        break;
    default:
        break;
    }
    return MS_OK;
}

/* ================================================= resolution over a sample */

static ms_status check_della(cctx *c, const ms_recipe_params *p, const char *model,
                             const char *tensor)
{
    double d = p->value[MS_PARAM_DENSITY], e = p->value[MS_PARAM_EPSILON];
    if (!(d > 0 && d < 1) || (d - e > 0 && d + e < 1))
        return MS_OK;
    int line = p->line[MS_PARAM_DENSITY], col = p->col[MS_PARAM_DENSITY];
    if (line == 0) {
        line = p->line[MS_PARAM_EPSILON];
        col = p->col[MS_PARAM_EPSILON];
    }
    return ms_error_set_at(c->err, MS_ERR_FORMAT, c->r->path, line, col,
                           "%s needs 0 < density - epsilon and density + epsilon < 1, got "
                           "density %.6g and epsilon %.6g for model '%s' at %s",
                           ms_method_name(c->st->method), d, e, model, tensor);
}

static ms_status check_tensor(cctx *c, const ms_recipe_plan *plan,
                              const ms_recipe_plan_layer *row, const char *tensor)
{
    ms_recipe_stage *st = c->st;
    ms_recipe_params p;
    ms_status rc = ms_recipe_resolve(plan, st->method, tensor, row->out_layer,
                                     MS_RECIPE_NONE, &p, c->err);
    bool della = st->method == MS_METHOD_DELLA || st->method == MS_METHOD_DELLA_LINEAR;
    bool dare = st->method == MS_METHOD_DARE_TIES || st->method == MS_METHOD_DARE_LINEAR;
    for (size_t i = 0; !rc && i < row->n_inputs; i++) {
        size_t m = row->inputs[i].model;
        rc = ms_recipe_resolve(plan, st->method, tensor, row->out_layer, m, &p, c->err);
        if (rc || p.is_base)
            continue;
        if (della)
            rc = check_della(c, &p, st->models[m].ref, tensor);
        if (!rc && (della || dare) && p.origin[MS_PARAM_DENSITY] == MS_ORIGIN_DEFAULT &&
            !c->warned_density[m]) {
            c->warned_density[m] = true;
            if (ms_recipe_warn(c->r, st->models[m].line, st->models[m].col,
                               "density is not set for '%s': %s defaults to 1.0 (nothing "
                               "is dropped)", st->models[m].ref, ms_method_name(st->method)))
                rc = nomem(c);
        }
    }
    return rc;
}

static ms_status check_row(cctx *c, const ms_recipe_plan *plan,
                           const ms_recipe_plan_layer *row, bool pre)
{
    char name[128];
    ms_status rc = MS_OK;
    if (row->out_layer < 0 && pre)
        return check_tensor(c, plan, row, "model.embed_tokens.weight");
    if (row->out_layer < 0) {
        rc = check_tensor(c, plan, row, "model.norm.weight");
        return rc ? rc : check_tensor(c, plan, row, "lm_head.weight");
    }
    for (size_t i = 0; !rc && i < MS_ARRAY_SIZE(layer_suffixes); i++) {
        snprintf(name, sizeof(name), "model.layers.%d.%s", row->out_layer, layer_suffixes[i]);
        rc = check_tensor(c, plan, row, name);
    }
    return rc;
}

/* Whether offset i of a slice of len layers is checked with stride: both
 * ends of every slice always, the rest every stride-th layer. */
static bool sampled(int i, int len, size_t stride)
{
    return i < 2 || i >= len - 2 || (size_t)i % stride == 0;
}

/*
 * Resolve every layer row. A hostile recipe can ask for 10^5 layers times
 * thousands of sources; past CHECK_BUDGET (layer, input) pairs only a
 * sample of layers is resolved, and a warning says so.
 */
static ms_status check_layers(cctx *c, const ms_recipe_plan *plan)
{
    size_t total = 0, checked = 0;
    for (int l = 0; l < plan->n_layers; l++)
        total += plan->layers[l].n_inputs;
    size_t stride = total > CHECK_BUDGET ? (total + CHECK_BUDGET - 1) / CHECK_BUDGET : 1;
    ms_status rc = MS_OK;
    for (int l = 0; !rc && l < plan->n_layers; l++) {
        const ms_recipe_plan_layer *row = &plan->layers[l];
        if (!sampled(row->index, row->slice_len, stride))
            continue;
        checked++;
        rc = check_row(c, plan, row, false);
    }
    if (!rc && stride > 1 &&
        ms_recipe_warn(c->r, c->st->line, c->st->col,
                       "large recipe: parameters were checked on %zu of %d output layers",
                       checked, plan->n_layers))
        rc = nomem(c);
    return rc;
}

static ms_status check_module(cctx *c, size_t mi)
{
    ms_recipe_stage *st = c->st;
    const ms_recipe_module *mod = &st->modules[mi];
    ms_recipe_plan *plan = NULL;
    ms_status rc = check_paramset(c, &mod->params, false, false);
    for (size_t si = 0; !rc && si < mod->n_slices; si++)
        rc = check_slice_params(c, &mod->slices[si], si);
    if (!rc)
        rc = ms_recipe_plan_build(st, mi, mod->models_syntax ? SAMPLE_LAYERS : 0, &plan,
                                  c->err);
    for (size_t si = 0; !rc && si < plan->n_slices; si++) {
        const ms_recipe_plan_slice *ps = &plan->slices[si];
        rc = check_inputs(c, &mod->slices[si], &plan->layers[ps->out_start], ps->base_model);
    }
    if (!rc)
        rc = check_row(c, plan, &plan->pre, true);
    if (!rc)
        rc = check_layers(c, plan);
    if (!rc)
        rc = check_row(c, plan, &plan->post, false);
    ms_recipe_plan_free(plan);
    return rc;
}

ms_status ms_recipe_check_stage(ms_recipe *r, size_t index, ms_error *err)
{
    cctx c = {r, &r->stages[index], err, NULL};
    ms_status rc;
    c.warned_density = calloc(c.st->n_models + 1, sizeof(bool));
    if (!c.warned_density)
        return nomem(&c);
    rc = check_paramset(&c, &c.st->params, false, false);
    for (size_t mi = 0; !rc && mi < c.st->n_modules; mi++)
        rc = check_module(&c, mi);
    free(c.warned_density);
    /* plan and resolve errors carry no file name: add the recipe's */
    if (rc && err && err->path[0] == '\0')
        snprintf(err->path, sizeof(err->path), "%s", r->path);
    return rc;
}
