/*
 * cmd_recipe.c - `mergescope recipe check RECIPE...` (validate, list what
 * mergekit would silently ignore) and `mergescope recipe explain RECIPE`
 * (the parameters every layer, filter class and model really gets, and the
 * layer map of a slices recipe).
 *
 * explain resolves every tensor of a llama-shaped layer (9 tensors) and
 * folds the rows of one filter class into one when all its tensors agree;
 * a class whose tensors differ (a filter naming o_proj, say) gets a row
 * per tensor. Text and JSON are rendered from the same row list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/model.h"
#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const usage_lines[] = {
    "mergescope recipe check [OPTIONS] RECIPE...",
    "mergescope recipe explain [OPTIONS] RECIPE [--layers N]",
    NULL,
};

static const char *const layer_suffixes[] = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.o_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.weight",
    "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight",
};

static const char *const filter_names[] = {"self_attn", "mlp", "other"};

static int filter_of(const char *suffix)
{
    if (strstr(suffix, "self_attn"))
        return 0;
    return strstr(suffix, "mlp") ? 1 : 2;
}

static void print_warnings(const ms_recipe *r)
{
    for (size_t i = 0; i < r->n_warnings; i++) {
        const ms_recipe_warning *w = &r->warnings[i];
        if (w->line > 0)
            ms_warn("%s:%d:%d: %s", r->path, w->line, w->col, w->msg);
        else
            ms_warn("%s: %s", r->path, w->msg);
    }
}

static cJSON *warnings_json(const ms_recipe *r)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < r->n_warnings; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "line", r->warnings[i].line);
        cJSON_AddNumberToObject(o, "col", r->warnings[i].col);
        cJSON_AddStringToObject(o, "message", r->warnings[i].msg);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

/* ================================================================ check */

static void summary(const ms_recipe *r, ms_sb *sb)
{
    if (r->n_stages == 1) {
        ms_sb_addf(sb, "%s, %zu models", r->stages[0].method_name, r->stages[0].n_models);
        return;
    }
    ms_sb_addf(sb, "%zu stages:", r->n_stages);
    for (size_t i = 0; i < r->n_stages; i++)
        ms_sb_addf(sb, "%s %s %zu models", i ? "," : "", r->stages[i].method_name,
                   r->stages[i].n_models);
}

static cJSON *check_json_one(const char *path, const ms_recipe *r, const ms_error *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddBoolToObject(o, "valid", r != NULL);
    if (!r) {
        char msg[MS_ERROR_MSG_MAX + MS_ERROR_PATH_MAX + 64];
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        ms_error_format(err, msg, sizeof(msg));
        cJSON_AddStringToObject(e, "message", msg);
        if (err->line > 0) {
            cJSON_AddNumberToObject(e, "line", err->line);
            cJSON_AddNumberToObject(e, "col", err->col);
        } else {
            cJSON_AddNullToObject(e, "line");
            cJSON_AddNullToObject(e, "col");
        }
        return o;
    }
    cJSON *stages = cJSON_AddArrayToObject(o, "stages");
    for (size_t i = 0; i < r->n_stages; i++) {
        cJSON *s = cJSON_CreateObject();
        const ms_recipe_stage *st = &r->stages[i];
        if (st->name)
            cJSON_AddStringToObject(s, "name", st->name);
        else
            cJSON_AddNullToObject(s, "name");
        cJSON_AddStringToObject(s, "merge_method", st->method_name);
        cJSON_AddNumberToObject(s, "n_models", (double)st->n_models);
        cJSON_AddItemToArray(stages, s);
    }
    cJSON_AddItemToObject(o, "warnings", warnings_json(r));
    return o;
}

static int run_check(const ms_common *c, const ms_strlist *pos)
{
    int rc = MS_EXIT_OK;
    bool json_stdout = c->json && strcmp(c->json, "-") == 0;
    cJSON *root = c->json ? ms_json_result_new("recipe") : NULL;
    cJSON *list = root ? cJSON_AddArrayToObject(root, "recipes") : NULL;
    if (root)
        cJSON_AddStringToObject(root, "mode", "check");
    for (size_t i = 1; i < pos->n; i++) {
        ms_recipe *r = NULL;
        ms_error err;
        ms_error_clear(&err);
        if (ms_recipe_load(pos->items[i], &r, &err)) {
            int code = ms_report_error(&err);
            rc = rc > code ? rc : code;
        } else {
            ms_sb sb = MS_SB_INIT;
            summary(r, &sb);
            print_warnings(r);
            if (!json_stdout)
                printf("ok: %s (%s)\n", pos->items[i], ms_sb_str(&sb));
            ms_sb_free(&sb);
        }
        if (list)
            cJSON_AddItemToArray(list, check_json_one(pos->items[i], r, &err));
        ms_recipe_free(r);
    }
    if (root) {
        cJSON_AddBoolToObject(root, "valid", rc == MS_EXIT_OK);
        int jrc = ms_write_json_result(c, root);
        cJSON_Delete(root);
        if (rc == MS_EXIT_OK)
            rc = jrc;
    }
    return rc;
}

/* ================================================================ explain */

typedef struct row {
    int layer;              /* -1 for embeddings / final tensors */
    const char *tensor;     /* a single tensor, or NULL for a whole class */
    char *tensor_owned;
    int filter;
    size_t model;
    ms_recipe_params p;
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
} rows;

static bool rows_push(rows *rs, const row *r)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? 2 * rs->cap : 64;
        row *v = ms_realloc_array(rs->v, cap, sizeof(*v));
        if (!v)
            return false;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n++] = *r;
    return true;
}

static void rows_free(rows *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        free(rs->v[i].tensor_owned);
    free(rs->v);
}

static bool same_params(const ms_recipe_params *a, const ms_recipe_params *b)
{
    for (int k = 0; k < MS_PARAM_COUNT; k++) {
        if ((a->origin[k] != MS_ORIGIN_UNSET) != (b->origin[k] != MS_ORIGIN_UNSET))
            return false;
        if (a->origin[k] != MS_ORIGIN_UNSET && a->value[k] != b->value[k])
            return false;
    }
    return true;
}

/* Resolve names[0..n) (one filter class of one layer) for model; push one
 * row when all agree, else one row per tensor. */
static ms_status push_class(rows *rs, const ms_recipe_plan *plan, int layer, int filter,
                            size_t model, const char *const *names, size_t n, ms_error *err)
{
    ms_recipe_params *ps = ms_alloc_array(n, sizeof(*ps));
    ms_status st = MS_OK;
    bool agree = true;
    if (!ps)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        st = ms_recipe_resolve(plan, plan->stage->method, names[i], layer, model, &ps[i], err);
        agree &= st || same_params(&ps[0], &ps[i]);
    }
    for (size_t i = 0; !st && i < (agree ? 1 : n); i++) {
        row r = {layer, NULL, NULL, filter, model, ps[i]};
        if (!agree || layer < 0) {
            r.tensor_owned = ms_strdup(names[i]);
            r.tensor = r.tensor_owned;
        }
        if ((!agree || layer < 0) && !r.tensor_owned)
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        else if (!rows_push(rs, &r)) {
            free(r.tensor_owned);
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        }
    }
    free(ps);
    return st;
}

static ms_status layer_rows(rows *rs, const ms_recipe_plan *plan,
                            const ms_recipe_plan_layer *pl, ms_error *err)
{
    char names[MS_ARRAY_SIZE(layer_suffixes)][160];
    const char *ptrs[MS_ARRAY_SIZE(layer_suffixes)];
    ms_status st = MS_OK;
    for (size_t mi = 0; !st && mi < pl->n_inputs; mi++) {
        for (int f = 0; !st && f < 3; f++) {
            size_t n = 0;
            for (size_t k = 0; k < MS_ARRAY_SIZE(layer_suffixes); k++) {
                if (filter_of(layer_suffixes[k]) != f)
                    continue;
                snprintf(names[n], sizeof(names[n]), "model.layers.%d.%s", pl->out_layer,
                         layer_suffixes[k]);
                ptrs[n] = names[n];
                n++;
            }
            st = push_class(rs, plan, pl->out_layer, f, pl->inputs[mi].model, ptrs, n, err);
        }
    }
    return st;
}

static ms_status edge_rows(rows *rs, const ms_recipe_plan *plan, bool pre, ms_error *err)
{
    static const char *const pre_names[] = {"model.embed_tokens.weight"};
    static const char *const post_names[] = {"model.norm.weight", "lm_head.weight"};
    const ms_recipe_plan_layer *pl = pre ? &plan->pre : &plan->post;
    ms_status st = MS_OK;
    for (size_t mi = 0; !st && mi < pl->n_inputs; mi++) {
        size_t n = pre ? 1 : 2;
        for (size_t k = 0; !st && k < n; k++)
            st = push_class(rs, plan, -1, 2, pl->inputs[mi].model,
                            pre ? &pre_names[k] : &post_names[k], 1, err);
    }
    return st;
}

static ms_status build_rows(rows *rs, const ms_recipe_plan *plan, ms_error *err)
{
    ms_status st = edge_rows(rs, plan, true, err);
    for (int l = 0; !st && l < plan->n_layers; l++)
        st = layer_rows(rs, plan, &plan->layers[l], err);
    if (!st)
        st = edge_rows(rs, plan, false, err);
    return st;
}

/* Parameters the method reads, in table order. */
static size_t used_params(ms_merge_method m, ms_param *out)
{
    size_t n = 0;
    for (int k = 0; k < MS_PARAM_COUNT; k++)
        if (ms_method_param(m, (ms_param)k).scope != MS_SCOPE_UNUSED)
            out[n++] = (ms_param)k;
    return n;
}

static const char *model_label(const ms_recipe_stage *st, size_t m)
{
    return st->models[m].ref;
}

static void print_header(const ms_recipe_stage *st, size_t si, size_t n_stages,
                         const ms_recipe_plan *plan, const char *layers_from)
{
    printf("stage %zu of %zu%s%s%s: %s", si + 1, n_stages, st->name ? " '" : "",
           st->name ? st->name : "", st->name ? "'" : "", st->method_name);
    if (st->n_modules > 1)
        printf(", module '%s'", st->modules[plan->module].name);
    if (st->base_model != MS_RECIPE_NONE)
        printf(", base %s", model_label(st, st->base_model));
    printf("\n%d output layers (%s)\n", plan->n_layers, layers_from);
    printf("models:\n");
    for (size_t m = 0; m < st->n_models; m++)
        printf("  %s%s%s\n", model_label(st, m), m == st->base_model ? "  (base)" : "",
               st->models[m].stage != MS_RECIPE_NONE ? "  (an earlier stage)" : "");
    const ms_recipe_module *mod = &st->modules[plan->module];
    if (mod->models_syntax)
        return;
    printf("layer map:\n");
    for (size_t s = 0; s < plan->n_slices; s++) {
        const ms_recipe_slice *sl = &mod->slices[s];
        for (size_t k = 0; k < sl->n_sources; k++)
            printf("  out [%d, %d)  <- %s [%d, %d)\n", plan->slices[s].out_start,
                   plan->slices[s].out_end, model_label(st, sl->sources[k].model),
                   sl->sources[k].layer_start, sl->sources[k].layer_end);
    }
}

/* The tensor column: "*" for a whole class, else the name without the
 * "model.layers.N." prefix. */
static const char *tensor_label(const row *r)
{
    const char *t = r->tensor;
    if (!t)
        return "*";
    if (r->layer >= 0 && ms_str_startswith(t, "model.layers.")) {
        const char *dot = strchr(t + strlen("model.layers."), '.');
        if (dot)
            return dot + 1;
    }
    return t;
}

static void print_rows(const ms_recipe_stage *st, const rows *rs)
{
    ms_param used[MS_PARAM_COUNT];
    size_t nu = used_params(st->method, used);
    int wm = 5, wt = 6;
    for (size_t i = 0; i < rs->n; i++) {
        int lm = (int)strlen(model_label(st, rs->v[i].model)) + (rs->v[i].p.is_base ? 7 : 0);
        int lt = (int)strlen(tensor_label(&rs->v[i]));
        wm = lm > wm ? lm : wm;
        wt = lt > wt ? lt : wt;
    }
    printf("%-5s  %-9s  %-*s  %-*s", "layer", "filter", wt, "tensor", wm, "model");
    for (size_t k = 0; k < nu; k++)
        printf("  %10s", ms_param_name(used[k]));
    printf("\n");
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        char layer[16], label[512];
        if (r->layer < 0)
            snprintf(layer, sizeof(layer), "-");
        else
            snprintf(layer, sizeof(layer), "%d", r->layer);
        snprintf(label, sizeof(label), "%s%s", model_label(st, r->model),
                 r->p.is_base ? " (base)" : "");
        printf("%-5s  %-9s  %-*s  %-*s", layer, filter_names[r->filter], wt, tensor_label(r),
               wm, label);
        for (size_t k = 0; k < nu; k++) {
            if (ms_params_has(&r->p, used[k]))
                printf("  %10.6f", r->p.value[used[k]]);
            else
                printf("  %10s", "-");
        }
        printf("\n");
    }
}

static cJSON *stage_json(const ms_recipe_stage *st, const ms_recipe_plan *plan,
                         const rows *rs)
{
    cJSON *o = cJSON_CreateObject();
    ms_param used[MS_PARAM_COUNT];
    size_t nu = used_params(st->method, used);
    if (st->name)
        cJSON_AddStringToObject(o, "name", st->name);
    else
        cJSON_AddNullToObject(o, "name");
    cJSON_AddStringToObject(o, "merge_method", st->method_name);
    cJSON_AddStringToObject(o, "module", st->modules[plan->module].name);
    if (st->base_model != MS_RECIPE_NONE)
        cJSON_AddStringToObject(o, "base_model", model_label(st, st->base_model));
    else
        cJSON_AddNullToObject(o, "base_model");
    cJSON_AddNumberToObject(o, "n_layers", plan->n_layers);
    cJSON *models = cJSON_AddArrayToObject(o, "models");
    for (size_t m = 0; m < st->n_models; m++)
        cJSON_AddItemToArray(models, cJSON_CreateString(model_label(st, m)));
    const ms_recipe_module *mod = &st->modules[plan->module];
    cJSON *slices = cJSON_AddArrayToObject(o, "slices");
    for (size_t s = 0; !mod->models_syntax && s < plan->n_slices; s++) {
        const ms_recipe_slice *sl = &mod->slices[s];
        for (size_t k = 0; k < sl->n_sources; k++) {
            cJSON *e = cJSON_CreateObject();
            int out[2] = {plan->slices[s].out_start, plan->slices[s].out_end};
            int in[2] = {sl->sources[k].layer_start, sl->sources[k].layer_end};
            cJSON_AddItemToObject(e, "out_layers", cJSON_CreateIntArray(out, 2));
            cJSON_AddStringToObject(e, "model", model_label(st, sl->sources[k].model));
            cJSON_AddItemToObject(e, "layer_range", cJSON_CreateIntArray(in, 2));
            cJSON_AddItemToArray(slices, e);
        }
    }
    cJSON *layers = cJSON_AddArrayToObject(o, "layers");
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        cJSON *e = cJSON_CreateObject();
        if (r->layer < 0)
            cJSON_AddNullToObject(e, "layer");
        else
            cJSON_AddNumberToObject(e, "layer", r->layer);
        cJSON_AddStringToObject(e, "model", model_label(st, r->model));
        cJSON_AddStringToObject(e, "filter", filter_names[r->filter]);
        if (r->tensor)
            cJSON_AddStringToObject(e, "tensor", r->tensor);
        else
            cJSON_AddNullToObject(e, "tensor");
        cJSON_AddBoolToObject(e, "base", r->p.is_base);
        cJSON_AddNumberToObject(e, "position", r->p.t);
        cJSON *p = cJSON_AddObjectToObject(e, "params");
        for (size_t k = 0; k < nu; k++) {
            if (ms_params_has(&r->p, used[k]))
                cJSON_AddNumberToObject(p, ms_param_name(used[k]), r->p.value[used[k]]);
            else
                cJSON_AddNullToObject(p, ms_param_name(used[k]));
        }
        cJSON_AddItemToArray(layers, e);
    }
    return o;
}

/* The input layer count of a models: stage: --layers, an earlier stage's
 * output, or the config of the first model that resolves. */
static ms_status stage_layers(const ms_common *c, const ms_recipe *r, size_t si, size_t mi,
                              long layers_opt, const int *out_layers, int *n,
                              const char **from, ms_error *err)
{
    const ms_recipe_stage *st = &r->stages[si];
    *n = 0;
    if (!st->modules[mi].models_syntax)
        return MS_OK;
    *from = "from --layers";
    if (layers_opt > 0) {
        *n = (int)layers_opt;
        return MS_OK;
    }
    for (size_t m = 0; m < st->n_models; m++) {
        if (st->models[m].stage != MS_RECIPE_NONE) {
            *n = out_layers[st->models[m].stage];
            *from = "from an earlier stage";
            return MS_OK;
        }
    }
    if (c->model_map.n > 0 || c->models_dir) {
        ms_resolve_opts ro;
        ms_model *model = NULL;
        ms_common_resolve_opts(c, &ro);
        for (size_t m = 0; m < st->n_models; m++) {
            ms_error e2;
            ms_error_clear(&e2);
            if (ms_model_open_name(st->models[m].path, &ro, &model, &e2) == MS_OK) {
                *n = model->n_layers;
                ms_model_close(model);
                *from = "from the model's config";
                if (*n > 0)
                    return MS_OK;
            }
        }
    }
    return ms_error_set(err, MS_ERR_USAGE, r->path, -1,
                        "stage %zu uses 'models:', which spans every layer of its models: "
                        "give --layers N (or --model NAME=PATH / --models-dir DIR so that "
                        "a model's config can be read)", si + 1);
}

/* Plan, resolve and print (or add to stages) one module of stage si. */
static ms_status explain_module(const ms_common *c, const ms_recipe *r, size_t si, size_t mi,
                                long layers_opt, int *out_layers, bool json_stdout,
                                cJSON *stages, cJSON **last, ms_error *err)
{
    const ms_recipe_stage *stg = &r->stages[si];
    const char *from = "from the layer ranges";
    ms_recipe_plan *plan = NULL;
    rows rs = {NULL, 0, 0};
    int n = 0;
    ms_status st = stage_layers(c, r, si, mi, layers_opt, out_layers, &n, &from, err);
    if (!st)
        st = ms_recipe_plan_build(stg, mi, n, &plan, err);
    if (!st)
        st = build_rows(&rs, plan, err);
    if (!st) {
        if (mi == 0)
            out_layers[si] = plan->n_layers;
        if (!json_stdout) {
            printf("\n");
            print_header(stg, si, r->n_stages, plan, from);
            print_rows(stg, &rs);
        }
        if (stages) {
            *last = stage_json(stg, plan, &rs);
            cJSON_AddItemToArray(stages, *last);
        }
    }
    rows_free(&rs);
    ms_recipe_plan_free(plan);
    return st;
}

static int run_explain(const ms_common *c, const ms_strlist *pos, long layers_opt)
{
    ms_recipe *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    if (pos->n != 2)
        return ms_die_usage("recipe explain takes one RECIPE (see 'mergescope recipe --help')");
    if (ms_recipe_load(pos->items[1], &r, &err))
        return ms_report_error(&err);
    print_warnings(r);
    bool json_stdout = c->json && strcmp(c->json, "-") == 0;
    cJSON *root = c->json ? ms_json_result_new("recipe") : NULL;
    cJSON *stages = root ? cJSON_CreateArray() : NULL;
    int *out_layers = calloc(r->n_stages, sizeof(int));
    ms_status st = out_layers ? MS_OK : ms_error_set(&err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    cJSON *last = NULL;
    if (!json_stdout)
        printf("recipe: %s\n", ms_path_basename(pos->items[1]));
    for (size_t si = 0; !st && si < r->n_stages; si++) {
        for (size_t mi = 0; !st && mi < r->stages[si].n_modules; mi++)
            st = explain_module(c, r, si, mi, layers_opt, out_layers, json_stdout, stages,
                                &last, &err);
    }
    int rc = MS_EXIT_OK;
    if (st) {
        rc = ms_report_error(&err);
    } else if (root) {
        cJSON_AddStringToObject(root, "mode", "explain");
        cJSON_AddStringToObject(root, "recipe", pos->items[1]);
        /* the final stage's fields at the top, every stage under "stages" */
        for (cJSON *it = last ? last->child : NULL; it; it = it->next)
            cJSON_AddItemToObject(root, it->string, cJSON_Duplicate(it, 1));
        cJSON_AddItemToObject(root, "stages", stages);
        stages = NULL;
        cJSON_AddItemToObject(root, "warnings", warnings_json(r));
        rc = ms_write_json_result(c, root);
    }
    cJSON_Delete(stages);
    cJSON_Delete(root);
    free(out_layers);
    ms_recipe_free(r);
    return rc;
}

int cmd_recipe(int argc, char **argv)
{
    ms_common c;
    long layers = 0;
    memset(&c, 0, sizeof(c));
    const ms_option opts[] = {
        MS_OPT_GROUP_("explain options"),
        MS_OPT_INT_(0, "layers", &layers, "N",
                    "layer count of the input models of a 'models:' recipe", 1, 100000),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_,
    };
    ms_strlist pos = {NULL, 0};
    int code;
    if (ms_parse_options(argc, argv, opts, usage_lines, &pos, &code)) {
        free(pos.items);
        free(c.model_map.items);
        return code;
    }
    if (pos.n >= 2 && strcmp(pos.items[0], "check") == 0)
        code = run_check(&c, &pos);
    else if (pos.n >= 1 && strcmp(pos.items[0], "explain") == 0)
        code = run_explain(&c, &pos, layers);
    else
        code = ms_die_usage("recipe needs 'check RECIPE...' or 'explain RECIPE' "
                            "(see 'mergescope recipe --help')");
    free(pos.items);
    free(c.model_map.items);
    return code;
}
