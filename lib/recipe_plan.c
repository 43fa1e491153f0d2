/*
 * recipe_plan.c - mergekit's planner over a recipe (output layers, their
 * inputs and gradient positions) and the parameter resolver
 * (ConfigReader.parameter + evaluate_setting).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/util.h"
#include "recipe_int.h"
#include "mergescope/banned.h"

/* Output layers beyond this are refused: no real model has them, and a
 * hostile layer_range must not drive a huge allocation. */
#define MAX_OUT_LAYERS 100000

/* ================================================= evaluation */

static double eval_value(const ms_recipe_value *v, double t)
{
    if (v->n == 1)
        return v->v[0];
    /* mergekit: s = t (n-1), i = int(s), j = min(n-1, i+1), lerp by s - i */
    double scaled = t * (double)(v->n - 1);
    size_t i0 = scaled <= 0 ? 0 : (size_t)scaled;
    if (i0 > v->n - 1)
        i0 = v->n - 1;
    size_t i1 = i0 + 1 < v->n ? i0 + 1 : v->n - 1;
    double frac = scaled - (double)i0;
    return (1 - frac) * v->v[i0] + frac * v->v[i1];
}

static bool filter_matches(const char *filter, const char *tensor)
{
    return !filter || !*filter || strcmp(filter, "*") == 0 ||
           (tensor && strstr(tensor, filter));
}

bool ms_recipe_setting_eval(const ms_recipe_setting *s, const char *tensor,
                            double t, double *value)
{
    if (!s->conditional) {
        *value = eval_value(&s->value, t);
        return true;
    }
    for (size_t i = 0; i < s->n_conds; i++) {
        if (filter_matches(s->conds[i].filter, tensor)) {
            *value = eval_value(&s->conds[i].value, t);
            return true;
        }
    }
    return false;
}

/* ================================================= the plan */

void ms_recipe_plan_free(ms_recipe_plan *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_layers; i++)
        free(p->layers[i].inputs);
    free(p->layers);
    free(p->slices);
    free(p->pre.inputs);
    free(p->post.inputs);
    free(p);
}

static int source_len(const ms_recipe_source *s, int n_layers)
{
    return s->has_range ? s->layer_end - s->layer_start : n_layers;
}

/*
 * The inputs of a slice, once: unique models in source order (a model
 * listed twice is one input, from its first entry), plus the base for
 * models: syntax when it is not listed. in_layer holds the source's start.
 * *dup tells whether any model was listed twice. seen has n_models slots.
 */
static ms_status slice_inputs(const ms_recipe_stage *st, const ms_recipe_slice *sl,
                              bool add_base, size_t base, bool *seen,
                              ms_recipe_plan_layer *tmpl, bool *dup, ms_error *err)
{
    memset(seen, 0, st->n_models * sizeof(*seen));
    tmpl->inputs = ms_alloc_array(sl->n_sources + 1, sizeof(*tmpl->inputs));
    if (!tmpl->inputs)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    tmpl->n_inputs = 0;
    *dup = false;
    for (size_t i = 0; i < sl->n_sources; i++) {
        const ms_recipe_source *s = &sl->sources[i];
        if (seen[s->model]) {
            *dup = true;
            continue;
        }
        seen[s->model] = true;
        ms_recipe_input *in = &tmpl->inputs[tmpl->n_inputs++];
        in->model = s->model;
        in->source = i;
        in->in_layer = s->has_range ? s->layer_start : 0;
    }
    if (add_base && base != MS_RECIPE_NONE && !seen[base]) {
        ms_recipe_input *in = &tmpl->inputs[tmpl->n_inputs++];
        in->model = base;
        in->source = MS_RECIPE_NONE;
        in->in_layer = 0;
    }
    return MS_OK;
}

/* Row inputs from the slice template: layer offset idx, or -1 (pre/post). */
static ms_status fill_inputs(const ms_recipe_plan_layer *tmpl, int idx,
                             ms_recipe_plan_layer *row, ms_error *err)
{
    row->inputs = ms_alloc_array(tmpl->n_inputs ? tmpl->n_inputs : 1, sizeof(*row->inputs));
    if (!row->inputs)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    row->n_inputs = tmpl->n_inputs;
    for (size_t i = 0; i < tmpl->n_inputs; i++) {
        row->inputs[i] = tmpl->inputs[i];
        row->inputs[i].in_layer = idx < 0 ? -1 : tmpl->inputs[i].in_layer + idx;
    }
    return MS_OK;
}

/* Every source of a slice spans the same number of layers. */
static ms_status check_lengths(const ms_recipe_stage *st, const ms_recipe_slice *sl,
                               size_t si, ms_error *err)
{
    ms_sb sb = MS_SB_INIT;
    bool same = true;
    for (size_t i = 0; i < sl->n_sources; i++) {
        same &= source_len(&sl->sources[i], 0) == source_len(&sl->sources[0], 0);
        ms_sb_addf(&sb, "%s%d", i ? ", " : "", source_len(&sl->sources[i], 0));
    }
    ms_status rc = MS_OK;
    (void)st;
    if (!same)
        rc = ms_error_set_at(err, MS_ERR_FORMAT, NULL, sl->line, sl->col,
                             "the sources of slice %zu span different numbers of layers "
                             "(%s); mergekit needs the same count for every source of a "
                             "slice", si, ms_sb_str(&sb));
    ms_sb_free(&sb);
    return rc;
}

/* (layer, input) pairs a plan may hold: 4M entries are under 100 MB, far
 * beyond any real recipe (80 layers x 20 models is 1600). */
#define MAX_PLAN_INPUTS 4000000

static ms_status plan_slices(ms_recipe_plan *p, const ms_recipe_module *mod,
                             int n_layers, ms_recipe_plan_layer *tmpl, ms_error *err)
{
    const ms_recipe_stage *st = p->stage;
    int total = 0;
    size_t pairs = 0;
    ms_status rc;
    for (size_t si = 0; si < mod->n_slices; si++) {
        const ms_recipe_slice *sl = &mod->slices[si];
        if (!mod->models_syntax && (rc = check_lengths(st, sl, si, err)))
            return rc;
        int len = source_len(&sl->sources[0], n_layers);
        if (len > MAX_OUT_LAYERS - total)
            return ms_error_set_at(err, MS_ERR_FORMAT, NULL, sl->line, sl->col,
                                   "more than %d output layers", MAX_OUT_LAYERS);
        pairs += (size_t)len * (tmpl[si].n_inputs);
        if (pairs > MAX_PLAN_INPUTS)
            return ms_error_set_at(err, MS_ERR_FORMAT, NULL, sl->line, sl->col,
                                   "recipe too large: more than %d (layer, model) pairs",
                                   MAX_PLAN_INPUTS);
        p->slices[si].out_start = total;
        p->slices[si].out_end = total + len;
        total += len;
    }
    p->layers = calloc(total ? (size_t)total : 1, sizeof(*p->layers));
    if (!p->layers)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t si = 0; si < mod->n_slices; si++) {
        const ms_recipe_plan_slice *ps = &p->slices[si];
        int len = ps->out_end - ps->out_start;
        for (int i = 0; i < len; i++) {
            ms_recipe_plan_layer *row = &p->layers[ps->out_start + i];
            row->out_layer = ps->out_start + i;
            row->slice = si;
            row->index = i;
            row->slice_len = len;
            row->t = len > 1 ? (double)i / (double)(len - 1) : 1.0;
            p->n_layers = row->out_layer + 1;
            if ((rc = fill_inputs(&tmpl[si], i, row, err)))
                return rc;
        }
    }
    return MS_OK;
}

/* One template row per slice (its unique inputs), then layers and edges. */
static ms_status plan_all(ms_recipe_plan *p, const ms_recipe_module *mod, int n_layers,
                          ms_error *err)
{
    const ms_recipe_stage *st = p->stage;
    size_t last = mod->n_slices - 1;
    ms_recipe_plan_layer *tmpl = calloc(mod->n_slices, sizeof(*tmpl));
    bool *seen = calloc(st->n_models + 1, sizeof(bool));
    ms_status rc = tmpl && seen ? MS_OK
                                : ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t si = 0; !rc && si < mod->n_slices; si++) {
        const ms_recipe_slice *sl = &mod->slices[si];
        p->slices[si].base_model = sl->base_model != MS_RECIPE_NONE ? sl->base_model
                                                                   : st->base_model;
        rc = slice_inputs(st, sl, mod->models_syntax, p->slices[si].base_model, seen,
                          &tmpl[si], &p->slices[si].has_duplicates, err);
    }
    if (!rc)
        rc = plan_slices(p, mod, n_layers, tmpl, err);
    p->pre.out_layer = p->post.out_layer = -1;
    p->pre.slice = 0;
    p->post.slice = last;
    if (!rc)
        rc = fill_inputs(&tmpl[0], -1, &p->pre, err);
    if (!rc)
        rc = fill_inputs(&tmpl[last], -1, &p->post, err);
    for (size_t si = 0; tmpl && si < mod->n_slices; si++)
        free(tmpl[si].inputs);
    free(tmpl);
    free(seen);
    return rc;
}

ms_status ms_recipe_plan_build(const ms_recipe_stage *st, size_t module,
                               int n_layers, ms_recipe_plan **out, ms_error *err)
{
    ms_recipe_plan *p;
    ms_status rc;
    *out = NULL;
    if (module >= st->n_modules)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "no module %zu in the recipe", module);
    const ms_recipe_module *mod = &st->modules[module];
    if (mod->models_syntax && (n_layers <= 0 || n_layers > MAX_OUT_LAYERS))
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "layer count needed: a 'models:' recipe spans all layers of its "
                            "models (give --layers N or a model to read it from)");
    p = calloc(1, sizeof(*p));
    if (!p)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    p->stage = st;
    p->module = module;
    p->n_slices = mod->n_slices;
    p->slices = calloc(mod->n_slices, sizeof(*p->slices));
    if (!p->slices) {
        free(p);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    rc = plan_all(p, mod, n_layers, err);
    if (rc) {
        ms_recipe_plan_free(p);
        return rc;
    }
    *out = p;
    return MS_OK;
}

static bool is_pre_weight(const char *tensor)
{
    return tensor && (strstr(tensor, "embed") || strstr(tensor, "wte") ||
                      strstr(tensor, "wpe"));
}

const ms_recipe_plan_layer *ms_recipe_plan_row(const ms_recipe_plan *p,
                                               const char *tensor, int out_layer)
{
    if (out_layer < 0)
        return is_pre_weight(tensor) ? &p->pre : &p->post;
    if (out_layer >= p->n_layers)
        return NULL;
    return &p->layers[out_layer];
}

/* ================================================= resolution */

/*
 * The input tensor name: the first ".N." segment equal to the output layer
 * becomes the source layer ("model.layers.40.mlp" -> "model.layers.8.mlp").
 */
static void input_name(const char *tensor, int out_layer, int in_layer, char *buf,
                       size_t cap)
{
    char pat[32];
    snprintf(buf, cap, "%s", tensor);
    if (out_layer < 0 || in_layer < 0 || out_layer == in_layer)
        return;
    int n = snprintf(pat, sizeof(pat), ".%d.", out_layer);
    const char *hit = strstr(tensor, pat);
    if (!hit)
        return;
    snprintf(buf, cap, "%.*s.%d.%s", (int)(hit - tensor), tensor, in_layer, hit + n);
}

static const ms_recipe_setting *find_setting(const ms_recipe_paramset *ps, ms_param p)
{
    const char *name = ms_param_name(p);
    /* the last of duplicate keys wins, as in a python dict */
    for (size_t i = ps->n; i-- > 0;)
        if (strcmp(ps->items[i].name, name) == 0)
            return &ps->items[i];
    return NULL;
}

static bool lookup(const ms_recipe_paramset *ps, ms_param p, const char *tensor, double t,
                   ms_param_origin origin, ms_recipe_params *out)
{
    const ms_recipe_setting *s = find_setting(ps, p);
    double v;
    if (!s || !ms_recipe_setting_eval(s, tensor, t, &v))
        return false;
    out->value[p] = v;
    out->origin[p] = (unsigned char)origin;
    out->line[p] = s->line;
    out->col[p] = s->col;
    return true;
}

typedef struct rq {
    const ms_recipe_plan *plan;
    const ms_recipe_module *mod;
    const ms_recipe_slice *slice;
    const ms_recipe_plan_layer *row;
    const ms_recipe_input *input; /* NULL for globals only */
} rq;

static bool lookup_levels(const rq *q, ms_param p, const char *name, bool per_model,
                          ms_recipe_params *out)
{
    const ms_recipe_stage *st = q->plan->stage;
    double t = q->row->t;
    if (per_model && q->input->source != MS_RECIPE_NONE &&
        !q->plan->slices[q->row->slice].has_duplicates) {
        if (lookup(&q->slice->sources[q->input->source].params, p, name, t, MS_ORIGIN_MODEL,
                   out))
            return true;
    } else if (per_model) {
        /* mergekit tries every entry naming the model, in order */
        for (size_t i = 0; i < q->slice->n_sources; i++) {
            const ms_recipe_source *s = &q->slice->sources[i];
            if (s->model == q->input->model &&
                lookup(&s->params, p, name, t, MS_ORIGIN_MODEL, out))
                return true;
        }
    }
    return lookup(&q->slice->params, p, name, t, MS_ORIGIN_SLICE, out) ||
           lookup(&q->mod->params, p, name, t, MS_ORIGIN_MODULE, out) ||
           lookup(&st->params, p, name, t, MS_ORIGIN_TOP, out);
}

static ms_status missing(const rq *q, ms_merge_method method, ms_param p,
                         const char *tensor, ms_error *err)
{
    const ms_recipe_stage *st = q->plan->stage;
    if (!q->input)
        return ms_error_set_at(err, MS_ERR_FORMAT, NULL, st->line, st->col,
                               "missing required parameter '%s' for %s (%s needs it at "
                               "the top level or in a slice)", ms_param_name(p), tensor,
                               ms_method_name(method));
    const ms_recipe_model *m = &st->models[q->input->model];
    int line = m->line, col = m->col;
    if (q->input->source != MS_RECIPE_NONE) {
        line = q->slice->sources[q->input->source].line;
        col = q->slice->sources[q->input->source].col;
    }
    return ms_error_set_at(err, MS_ERR_FORMAT, NULL, line, col,
                           "missing required parameter '%s' for model '%s' at %s (%s needs "
                           "a %s for every %smodel)", ms_param_name(p), m->ref, tensor,
                           ms_method_name(method), ms_param_name(p),
                           method == MS_METHOD_LINEAR ? "" : "non-base ");
}

ms_status ms_recipe_resolve(const ms_recipe_plan *plan, ms_merge_method method,
                            const char *tensor, int out_layer, size_t model,
                            ms_recipe_params *out, ms_error *err)
{
    const ms_recipe_stage *st = plan->stage;
    rq q = {plan, &st->modules[plan->module], NULL, NULL, NULL};
    char in_name[512];
    memset(out, 0, sizeof(*out));
    q.row = ms_recipe_plan_row(plan, tensor, out_layer);
    if (!q.row)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "layer %d is outside the plan (%d output layers)", out_layer,
                            plan->n_layers);
    q.slice = &q.mod->slices[q.row->slice];
    out->t = q.row->t;
    size_t base = plan->slices[q.row->slice].base_model;
    if (model != MS_RECIPE_NONE) {
        for (size_t i = 0; i < q.row->n_inputs; i++)
            if (q.row->inputs[i].model == model)
                q.input = &q.row->inputs[i];
        if (!q.input)
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                "model '%s' is not an input of %s",
                                model < st->n_models ? st->models[model].ref : "?", tensor);
        out->is_base = model == base;
        input_name(tensor, out_layer, q.input->in_layer, in_name, sizeof(in_name));
    }
    for (int i = 0; i < MS_PARAM_COUNT; i++) {
        ms_param p = (ms_param)i;
        ms_param_def def = ms_method_param(method, p);
        bool per_model = def.scope == MS_SCOPE_MODEL;
        if (def.scope == MS_SCOPE_UNUSED || (per_model && !q.input))
            continue;
        if (lookup_levels(&q, p, per_model ? in_name : tensor, per_model, out))
            continue;
        if (def.has_default) {
            out->value[p] = def.default_value;
            out->origin[p] = MS_ORIGIN_DEFAULT;
            continue;
        }
        /* mergekit exempts the base from required per-model parameters;
         * linear then fails on the base's missing weight anyway */
        if (def.required && (!per_model || !out->is_base || method == MS_METHOD_LINEAR))
            return missing(&q, method, p, tensor, err);
    }
    return MS_OK;
}
