/*
 * recipe.c - YAML node trees (recipe_yaml.c) to the recipe model of
 * recipe.h: the schema mergekit's pydantic config accepts, with the same
 * coercions, plus warnings for everything it silently ignores. Checks that
 * need the method (ranges, input counts, required parameters) are in
 * recipe_check.c.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/util.h"
#include "recipe_int.h"
#include "mergescope/banned.h"

/* Parsing state for one document. */
typedef struct rctx {
    const char *label;
    ms_error *err;
    ms_recipe *r;
    const ms_ydoc *d;
    ms_recipe_stage *st;
} rctx;

/* ================================================= small helpers */

static ms_status nomem(rctx *c)
{
    return ms_error_set(c->err, MS_ERR_NOMEM, c->label, -1, "out of memory");
}

static ms_status bad(rctx *c, const ms_ynode *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ms_status bad(rctx *c, const ms_ynode *n, const char *fmt, ...)
{
    char msg[MS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ms_error_set_at(c->err, MS_ERR_FORMAT, c->label, n->line, n->col, "%s", msg);
}

ms_status ms_recipe_warn(ms_recipe *r, int line, int col, const char *fmt, ...)
{
    char msg[MS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ms_recipe_warning *w = ms_realloc_array(r->warnings, r->n_warnings + 1, sizeof(*w));
    if (!w)
        return MS_ERR_NOMEM;
    r->warnings = w;
    w[r->n_warnings].msg = ms_strdup(msg);
    if (!w[r->n_warnings].msg)
        return MS_ERR_NOMEM;
    w[r->n_warnings].line = line;
    w[r->n_warnings].col = col;
    r->n_warnings++;
    return MS_OK;
}

static const char *type_name(const ms_ynode *n)
{
    if (n->type == MS_Y_SEQ)
        return "a list";
    if (n->type == MS_Y_MAP)
        return "a mapping";
    switch (n->kind) {
    case MS_YS_NULL: return "null";
    case MS_YS_BOOL: return "a boolean";
    case MS_YS_INT: case MS_YS_FLOAT: return "a number";
    default: return "text";
    }
}

static bool is_null(const ms_ynode *n)
{
    return n->type == MS_Y_SCALAR && n->kind == MS_YS_NULL;
}

static ms_status pairs_of(rctx *c, const ms_ynode *n, const char *what,
                          ms_ypair **p, size_t *np)
{
    if (n->type != MS_Y_MAP)
        return bad(c, n, "%s must be a mapping, got %s", what, type_name(n));
    return ms_ymap_pairs(c->d, n, c->label, p, np, c->err);
}

/* A text value. pydantic's str fields refuse numbers, booleans and null
 * (YAML 1.1 resolves plain `123` or `yes` to those), so do we, suggesting
 * quotes. */
static ms_status get_text(rctx *c, const ms_ynode *n, const char *what, char **out)
{
    if (n->type != MS_Y_SCALAR || n->kind == MS_YS_NULL)
        return bad(c, n, "%s must be text, got %s", what, type_name(n));
    if (n->kind != MS_YS_STR)
        return bad(c, n, "%s must be text, got %s '%s' (quote it)", what,
                   type_name(n), n->text);
    free(*out);
    *out = ms_strdup(n->text);
    return *out ? MS_OK : nomem(c);
}

/* A parameter number: numbers, booleans (1/0) and numeric strings, as
 * pydantic's lax float; text, null and non-finite values are refused. */
static ms_status get_number(rctx *c, const ms_ynode *n, const char *what, double *v)
{
    if (n->type != MS_Y_SCALAR)
        return bad(c, n, "%s must be a number, got %s", what, type_name(n));
    switch (n->kind) {
    case MS_YS_BOOL: case MS_YS_INT: case MS_YS_FLOAT:
        *v = n->num;
        break;
    case MS_YS_STR:
        if (!ms_yaml_parse_number(n->text, v))
            return bad(c, n, "%s must be a number, got '%s'", what, n->text);
        break;
    default:
        return bad(c, n, "%s must be a number, got null", what);
    }
    if (!isfinite(*v))
        return bad(c, n, "%s must be a finite number, got '%s'", what, n->text);
    return MS_OK;
}

static ms_status add_unknown(rctx *c, const ms_ynode *key, const char *where)
{
    ms_recipe_stage *st = c->st;
    char full[512];
    ms_recipe_unknown *u = ms_realloc_array(st->unknown, st->n_unknown + 1, sizeof(*u));
    if (!u)
        return nomem(c);
    st->unknown = u;
    if (where && *where)
        snprintf(full, sizeof(full), "%s.%s", where, key->text);
    else
        snprintf(full, sizeof(full), "%s", key->text);
    u[st->n_unknown].where = ms_strdup(full);
    if (!u[st->n_unknown].where)
        return nomem(c);
    u[st->n_unknown].line = key->line;
    u[st->n_unknown].col = key->col;
    st->n_unknown++;
    if (ms_recipe_warn(c->r, key->line, key->col,
                       "unknown key '%s' is ignored by mergekit", full))
        return nomem(c);
    return MS_OK;
}

/* ================================================= parameter settings */

static ms_status parse_value(rctx *c, const ms_ynode *n, const char *what,
                             ms_recipe_value *v)
{
    v->line = n->line;
    v->col = n->col;
    if (n->type == MS_Y_SCALAR) {
        v->v = malloc(sizeof(double));
        if (!v->v)
            return nomem(c);
        v->n = 1;
        return get_number(c, n, what, &v->v[0]);
    }
    if (n->type != MS_Y_SEQ)
        return bad(c, n, "%s must be a number or a list of numbers, got %s", what,
                   type_name(n));
    if (n->n_items == 0)
        return bad(c, n, "%s is an empty list (a gradient needs at least one number)", what);
    v->v = ms_alloc_array(n->n_items, sizeof(double));
    v->elem_line = ms_alloc_array(n->n_items, sizeof(int));
    v->elem_col = ms_alloc_array(n->n_items, sizeof(int));
    if (!v->v || !v->elem_line || !v->elem_col)
        return nomem(c);
    v->n = n->n_items;
    v->is_list = true;
    for (size_t i = 0; i < n->n_items; i++) {
        const ms_ynode *e = ms_ychild(c->d, n, i);
        v->elem_line[i] = e->line;
        v->elem_col[i] = e->col;
        if (e->type != MS_Y_SCALAR)
            return bad(c, e, "%s: a gradient holds numbers only, got %s", what,
                       type_name(e));
        ms_status st = get_number(c, e, what, &v->v[i]);
        if (st)
            return st;
    }
    return MS_OK;
}

static ms_status parse_cond(rctx *c, const ms_ynode *n, const char *what,
                            ms_recipe_cond *cond)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    const ms_ynode *value = NULL;
    ms_status st = pairs_of(c, n, what, &p, &np);
    cond->line = n->line;
    cond->col = n->col;
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        if (strcmp(k, "value") == 0) {
            value = p[i].value;
        } else if (strcmp(k, "filter") == 0) {
            if (!is_null(p[i].value))
                st = get_text(c, p[i].value, "filter", &cond->filter);
        } else {
            st = add_unknown(c, p[i].key, what);
        }
    }
    free(p);
    if (st)
        return st;
    if (!value)
        return bad(c, n, "%s: a condition needs 'value' (and optionally 'filter')", what);
    if (value->type == MS_Y_MAP ||
        (value->type == MS_Y_SEQ && value->n_items > 0 &&
         ms_ychild(c->d, value, 0)->type == MS_Y_MAP))
        return bad(c, value, "%s: nested conditions are not accepted by mergekit", what);
    return parse_value(c, value, what, &cond->value);
}

static ms_status parse_setting(rctx *c, const ms_ynode *key, const ms_ynode *n,
                               ms_recipe_setting *s)
{
    char what[160];
    s->name = ms_strdup(key->text);
    if (!s->name)
        return nomem(c);
    s->param = ms_param_from_name(s->name);
    s->line = key->line;
    s->col = key->col;
    snprintf(what, sizeof(what), "parameter '%s'", key->text);
    if (n->type == MS_Y_MAP)
        return bad(c, n, "%s: a {filter, value} condition must be an entry of a list "
                   "(mergekit fails on a bare one)", what);
    bool conds = n->type == MS_Y_SEQ && n->n_items > 0 &&
                 ms_ychild(c->d, n, 0)->type == MS_Y_MAP;
    if (!conds)
        return parse_value(c, n, what, &s->value);
    s->conditional = true;
    s->conds = calloc(n->n_items, sizeof(*s->conds));
    if (!s->conds)
        return nomem(c);
    s->n_conds = n->n_items;
    for (size_t i = 0; i < n->n_items; i++) {
        const ms_ynode *e = ms_ychild(c->d, n, i);
        if (e->type != MS_Y_MAP)
            return bad(c, e, "%s mixes {filter, value} entries with %s", what,
                       type_name(e));
        ms_status st = parse_cond(c, e, what, &s->conds[i]);
        if (st)
            return st;
    }
    return MS_OK;
}

static ms_status parse_paramset(rctx *c, const ms_ynode *n, ms_recipe_paramset *ps)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    if (is_null(n))
        return MS_OK;
    ms_status st = pairs_of(c, n, "parameters", &p, &np);
    if (st)
        return st;
    ps->items = calloc(np ? np : 1, sizeof(*ps->items));
    if (!ps->items) {
        free(p);
        return nomem(c);
    }
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        ps->n = i + 1;
        st = parse_setting(c, p[i].key, p[i].value, &ps->items[i]);
    }
    free(p);
    return st;
}

/* ================================================= model references */

/* Check one "path[@revision]" part: at most one '@', a non-empty path. */
static ms_status check_ref_part(rctx *c, const ms_ynode *n, const char *part,
                                size_t len)
{
    int ats = 0;
    for (size_t i = 0; i < len; i++)
        ats += part[i] == '@';
    if (ats > 1)
        return bad(c, n, "model reference '%s' has more than one '@' in a part", n->text);
    if (len == 0 || part[0] == '@')
        return bad(c, n, "model reference '%s' has an empty path", n->text);
    return MS_OK;
}

static ms_status split_ref(rctx *c, const ms_ynode *n, ms_recipe_model *m)
{
    const char *s = n->text;
    const char *plus = strchr(s, '+');
    if (plus && strchr(plus + 1, '+'))
        return bad(c, n, "model reference '%s' has more than one '+'", s);
    size_t base_len = plus ? (size_t)(plus - s) : strlen(s);
    ms_status st = check_ref_part(c, n, s, base_len);
    if (!st && plus)
        st = check_ref_part(c, n, plus + 1, strlen(plus + 1));
    if (st)
        return st;
    const char *at = memchr(s, '@', base_len);
    m->path = ms_strndup(s, at ? (size_t)(at - s) : base_len);
    if (at)
        m->revision = ms_strndup(at + 1, base_len - (size_t)(at - s) - 1);
    if (plus)
        m->lora = ms_strdup(plus + 1);
    m->ref = ms_strdup(s);
    if (!m->path || !m->ref || (at && !m->revision) || (plus && !m->lora))
        return nomem(c);
    return MS_OK;
}

/* {path, revision} or a plain string, for the mapping form of a reference */
static ms_status path_rev(rctx *c, const ms_ynode *n, const char *what,
                          char **path, char **rev)
{
    if (n->type == MS_Y_SCALAR)
        return get_text(c, n, what, path);
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = pairs_of(c, n, what, &p, &np);
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        if (strcmp(p[i].key->text, "path") == 0)
            st = get_text(c, p[i].value, "path", path);
        else if (strcmp(p[i].key->text, "revision") == 0 && !is_null(p[i].value))
            st = get_text(c, p[i].value, "revision", rev);
        else if (strcmp(p[i].key->text, "revision") != 0)
            st = add_unknown(c, p[i].key, what);
    }
    free(p);
    if (!st && !*path)
        return bad(c, n, "%s needs a 'path'", what);
    return st;
}

static ms_status ref_from_map(rctx *c, const ms_ynode *n, ms_recipe_model *m)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    char *lora_path = NULL, *lora_rev = NULL;
    ms_status st = pairs_of(c, n, "model", &p, &np);
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        if (strcmp(k, "model") == 0)
            st = path_rev(c, p[i].value, "model", &m->path, &m->revision);
        else if (strcmp(k, "lora") == 0 && !is_null(p[i].value))
            st = path_rev(c, p[i].value, "lora", &lora_path, &lora_rev);
        else if (strcmp(k, "override_architecture") != 0 && strcmp(k, "lora") != 0)
            st = add_unknown(c, p[i].key, "model");
    }
    free(p);
    if (!st && !m->path)
        st = bad(c, n, "a model reference mapping needs 'model'");
    if (!st && lora_path) {
        ms_sb sb = MS_SB_INIT;
        ms_sb_add(&sb, lora_path);
        if (lora_rev)
            ms_sb_addf(&sb, "@%s", lora_rev);
        m->lora = ms_sb_detach(&sb);
        if (!m->lora)
            st = nomem(c);
    }
    if (!st) {
        ms_sb sb = MS_SB_INIT;
        ms_sb_add(&sb, m->path);
        if (m->revision)
            ms_sb_addf(&sb, "@%s", m->revision);
        if (m->lora)
            ms_sb_addf(&sb, "+%s", m->lora);
        m->ref = ms_sb_detach(&sb);
        if (!m->ref)
            st = nomem(c);
    }
    free(lora_path);
    free(lora_rev);
    return st;
}

static void model_free(ms_recipe_model *m)
{
    free(m->ref);
    free(m->path);
    free(m->revision);
    free(m->lora);
}

/* Parse a model reference node and return its index in st->models. */
static ms_status parse_model_ref(rctx *c, const ms_ynode *n, size_t *index)
{
    ms_recipe_model m;
    ms_status st;
    memset(&m, 0, sizeof(m));
    m.stage = MS_RECIPE_NONE;
    m.line = n->line;
    m.col = n->col;
    if (n->type == MS_Y_MAP)
        st = ref_from_map(c, n, &m);
    else if (n->type == MS_Y_SCALAR && n->kind != MS_YS_NULL && n->kind != MS_YS_STR)
        st = bad(c, n, "model must be a model reference, got %s '%s' (quote it)",
                 type_name(n), n->text);
    else if (n->type != MS_Y_SCALAR || n->kind == MS_YS_NULL)
        st = bad(c, n, "model must be a model reference (text), got %s", type_name(n));
    else
        st = split_ref(c, n, &m);
    if (st) {
        model_free(&m);
        return st;
    }
    ms_recipe_stage *s = c->st;
    for (size_t i = 0; i < s->n_models; i++) {
        if (strcmp(s->models[i].ref, m.ref) == 0) {
            model_free(&m);
            *index = i;
            return MS_OK;
        }
    }
    ms_recipe_model *nm = ms_realloc_array(s->models, s->n_models + 1, sizeof(*nm));
    if (!nm) {
        model_free(&m);
        return nomem(c);
    }
    s->models = nm;
    nm[s->n_models] = m;
    *index = s->n_models++;
    return MS_OK;
}

/* ================================================= sources, slices, modules */

static ms_status parse_range(rctx *c, const ms_ynode *n, ms_recipe_source *src)
{
    double v[2];
    if (n->type != MS_Y_SEQ || n->n_items != 2)
        return bad(c, n, "layer_range must be a list of two layer indices [start, end], "
                   "got %s", type_name(n));
    for (int i = 0; i < 2; i++) {
        const ms_ynode *e = ms_ychild(c->d, n, (size_t)i);
        ms_status st = get_number(c, e, "layer_range", &v[i]);
        if (st)
            return st;
        if (v[i] != floor(v[i]) || v[i] < 0 || v[i] > 1000000)
            return bad(c, e, "layer_range entries must be whole numbers in [0, 1000000], "
                       "got %s", e->text);
    }
    if (v[0] >= v[1])
        return bad(c, n, "layer_range [%d, %d] is empty: the end is exclusive and must "
                   "be greater than the start", (int)v[0], (int)v[1]);
    src->has_range = true;
    src->layer_start = (int)v[0];
    src->layer_end = (int)v[1];
    return MS_OK;
}

static ms_status parse_source(rctx *c, const ms_ynode *n, bool models_syntax,
                              const char *where, ms_recipe_source *src)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    const ms_ynode *model = NULL;
    ms_status st = pairs_of(c, n, models_syntax ? "an entry of models" : "a source", &p, &np);
    src->line = n->line;
    src->col = n->col;
    src->model = MS_RECIPE_NONE;
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        if (strcmp(k, "model") == 0)
            model = p[i].value;
        else if (strcmp(k, "parameters") == 0)
            st = parse_paramset(c, p[i].value, &src->params);
        else if (strcmp(k, "layer_range") == 0 && !models_syntax)
            st = parse_range(c, p[i].value, src);
        else
            st = add_unknown(c, p[i].key, where);
    }
    free(p);
    if (st)
        return st;
    if (!model)
        return bad(c, n, "%s needs 'model'", models_syntax ? "an entry of models" : "a source");
    if ((st = parse_model_ref(c, model, &src->model)))
        return st;
    if (!models_syntax && !src->has_range)
        return bad(c, n, "a source of a slice needs 'layer_range: [start, end]'");
    return MS_OK;
}

static ms_status parse_sources(rctx *c, const ms_ynode *n, bool models_syntax,
                               const char *where, ms_recipe_slice *sl)
{
    char w[128];
    if (n->type != MS_Y_SEQ)
        return bad(c, n, "%s must be a list, got %s", models_syntax ? "models" : "sources",
                   type_name(n));
    if (n->n_items == 0)
        return bad(c, n, "%s is empty", models_syntax ? "models" : "sources");
    sl->sources = calloc(n->n_items, sizeof(*sl->sources));
    if (!sl->sources)
        return nomem(c);
    for (size_t i = 0; i < n->n_items; i++) {
        snprintf(w, sizeof(w), "%s[%zu]", where, i);
        sl->n_sources = i + 1;
        ms_status st = parse_source(c, ms_ychild(c->d, n, i), models_syntax, w,
                                    &sl->sources[i]);
        if (st)
            return st;
    }
    return MS_OK;
}

static ms_status parse_slice(rctx *c, const ms_ynode *n, const char *where,
                             ms_recipe_slice *sl)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    const ms_ynode *sources = NULL;
    char w[160];
    ms_status st = pairs_of(c, n, "a slice", &p, &np);
    sl->line = n->line;
    sl->col = n->col;
    sl->base_model = MS_RECIPE_NONE;
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        if (strcmp(k, "sources") == 0)
            sources = p[i].value;
        else if (strcmp(k, "parameters") == 0)
            st = parse_paramset(c, p[i].value, &sl->params);
        else if (strcmp(k, "base_model") == 0) {
            if (!is_null(p[i].value))
                st = parse_model_ref(c, p[i].value, &sl->base_model);
        } else if (strcmp(k, "residual_weight") == 0) {
            double v;
            if (!is_null(p[i].value))
                st = get_number(c, p[i].value, "residual_weight", &v);
        } else
            st = add_unknown(c, p[i].key, where);
    }
    free(p);
    if (st)
        return st;
    if (!sources)
        return bad(c, n, "a slice needs 'sources'");
    snprintf(w, sizeof(w), "%s.sources", where);
    return parse_sources(c, sources, false, w, sl);
}

static ms_status parse_slices(rctx *c, const ms_ynode *n, const char *where,
                              ms_recipe_module *mod)
{
    char w[128];
    if (n->type != MS_Y_SEQ)
        return bad(c, n, "slices must be a list, got %s", type_name(n));
    if (n->n_items == 0)
        return bad(c, n, "slices is empty");
    mod->slices = calloc(n->n_items, sizeof(*mod->slices));
    if (!mod->slices)
        return nomem(c);
    for (size_t i = 0; i < n->n_items; i++) {
        snprintf(w, sizeof(w), "%sslices[%zu]", where, i);
        mod->n_slices = i + 1;
        ms_status st = parse_slice(c, ms_ychild(c->d, n, i), w, &mod->slices[i]);
        if (st)
            return st;
    }
    return MS_OK;
}

static ms_status parse_models(rctx *c, const ms_ynode *n, const char *where,
                              ms_recipe_module *mod)
{
    char w[128];
    mod->models_syntax = true;
    mod->slices = calloc(1, sizeof(*mod->slices));
    if (!mod->slices)
        return nomem(c);
    mod->n_slices = 1;
    mod->slices[0].base_model = MS_RECIPE_NONE;
    mod->slices[0].line = n->line;
    mod->slices[0].col = n->col;
    snprintf(w, sizeof(w), "%smodels", where);
    return parse_sources(c, n, true, w, &mod->slices[0]);
}

static ms_status add_module(rctx *c, const char *name, int line, int col,
                            ms_recipe_module **out)
{
    ms_recipe_stage *st = c->st;
    ms_recipe_module *m = ms_realloc_array(st->modules, st->n_modules + 1, sizeof(*m));
    if (!m)
        return nomem(c);
    st->modules = m;
    m = &m[st->n_modules++];
    memset(m, 0, sizeof(*m));
    m->name = ms_strdup(name);
    m->line = line;
    m->col = col;
    *out = m;
    return m->name ? MS_OK : nomem(c);
}

/* One entry of `modules:`: {models | slices, parameters}. */
static ms_status parse_module(rctx *c, const ms_ynode *key, const ms_ynode *n)
{
    ms_recipe_module *mod;
    ms_ypair *p = NULL;
    size_t np = 0;
    char where[128];
    int bodies = 0;
    ms_status st = add_module(c, key->text, key->line, key->col, &mod);
    if (!st)
        st = pairs_of(c, n, "a module", &p, &np);
    snprintf(where, sizeof(where), "modules.%s.", key->text);
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        if (strcmp(k, "models") == 0 && !is_null(p[i].value)) {
            bodies++;
            if (bodies == 1)
                st = parse_models(c, p[i].value, where, mod);
        } else if (strcmp(k, "slices") == 0 && !is_null(p[i].value)) {
            bodies++;
            if (bodies == 1)
                st = parse_slices(c, p[i].value, where, mod);
        } else if (strcmp(k, "parameters") == 0) {
            st = parse_paramset(c, p[i].value, &mod->params);
        } else if (strcmp(k, "models") != 0 && strcmp(k, "slices") != 0) {
            char uw[128];
            snprintf(uw, sizeof(uw), "modules.%s", key->text);
            st = add_unknown(c, p[i].key, uw);
        }
    }
    free(p);
    if (!st && bodies != 1)
        st = bad(c, n, "module '%s' needs exactly one of 'models' or 'slices'", key->text);
    return st;
}

static ms_status parse_modules(rctx *c, const ms_ynode *n)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = pairs_of(c, n, "modules", &p, &np);
    if (!st && np == 0)
        st = bad(c, n, "modules is empty");
    for (size_t i = 0; st == MS_OK && i < np; i++)
        st = parse_module(c, p[i].key, p[i].value);
    free(p);
    return st;
}

/* ================================================= top level */

static bool dtype_ok(const char *s)
{
    static const char *const ok[] = {"bfloat16", "float16", "float32", "int64", NULL};
    if (ms_str_startswith(s, "torch."))
        s += 6;
    for (size_t i = 0; ok[i]; i++)
        if (strcmp(s, ok[i]) == 0)
            return true;
    return false;
}

static ms_status parse_dtype(rctx *c, const ms_ynode *n, const char *what, char **out)
{
    ms_status st = get_text(c, n, what, out);
    if (st)
        return st;
    if (!dtype_ok(*out))
        return bad(c, n, "%s must be bfloat16, float16, float32 or int64, got '%s'",
                   what, *out);
    return MS_OK;
}

static ms_status parse_chat_template(rctx *c, const ms_ynode *n)
{
    static const char *const builtin[] = {"auto", "alpaca", "chatml", "llama3",
                                          "mistral", "exaone", NULL};
    ms_status st = get_text(c, n, "chat_template", &c->st->chat_template);
    if (st)
        return st;
    const char *s = c->st->chat_template;
    for (size_t i = 0; builtin[i]; i++)
        if (strcmp(s, builtin[i]) == 0)
            return MS_OK;
    if (strlen(s) < 20 || !strchr(s, '{'))
        return bad(c, n, "chat_template must be auto, alpaca, chatml, llama3, mistral, "
                   "exaone or a jinja template, got '%s'", s);
    return MS_OK;
}

static ms_status parse_tokenizer(rctx *c, const ms_ynode *n)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    c->st->has_tokenizer = true;
    if (is_null(n))
        return MS_OK;
    ms_status st = pairs_of(c, n, "tokenizer", &p, &np);
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        const char *k = p[i].key->text;
        const ms_ynode *v = p[i].value;
        if (strcmp(k, "source") == 0) {
            char *s = NULL;
            if (v->type == MS_Y_MAP) {
                size_t idx;
                st = parse_model_ref(c, v, &idx);
            } else {
                st = get_text(c, v, "tokenizer source", &s);
            }
            free(s);
        } else if (strcmp(k, "tokens") == 0) {
            if (!is_null(v) && v->type != MS_Y_MAP)
                st = bad(c, v, "tokenizer tokens must be a mapping, got %s", type_name(v));
        } else if (strcmp(k, "pad_to_multiple_of") == 0) {
            double x;
            if (!is_null(v))
                st = get_number(c, v, "pad_to_multiple_of", &x);
            if (!st && !is_null(v) && (x != floor(x) || x < 1))
                st = bad(c, v, "pad_to_multiple_of must be a positive whole number");
        } else {
            st = add_unknown(c, p[i].key, "tokenizer");
        }
    }
    free(p);
    return st;
}

/* One top-level key; *bodies counts models/slices/modules. */
static ms_status top_key(rctx *c, const ms_ypair *kv, int *bodies,
                         const ms_ynode **method, const ms_ynode **base)
{
    const char *k = kv->key->text;
    const ms_ynode *v = kv->value;
    ms_recipe_stage *st = c->st;
    ms_recipe_module *mod;
    ms_status s;
    if (strcmp(k, "merge_method") == 0) {
        *method = v;
        return get_text(c, v, "merge_method", &st->method_name);
    }
    if (strcmp(k, "base_model") == 0) {
        *base = is_null(v) ? NULL : v;
        return MS_OK;
    }
    if (strcmp(k, "parameters") == 0)
        return parse_paramset(c, v, &st->params);
    if (strcmp(k, "models") == 0 || strcmp(k, "slices") == 0 || strcmp(k, "modules") == 0) {
        if (is_null(v))
            return MS_OK;
        if (++*bodies > 1)
            return bad(c, kv->key, "a recipe has exactly one of 'models', 'slices' or "
                       "'modules'; '%s' is a second one", k);
        if (k[1] == 'o' && k[2] == 'd' && k[3] == 'u')
            return parse_modules(c, v);
        if ((s = add_module(c, "default", kv->key->line, kv->key->col, &mod)))
            return s;
        return k[0] == 'm' ? parse_models(c, v, "", mod) : parse_slices(c, v, "", mod);
    }
    if (strcmp(k, "dtype") == 0)
        return is_null(v) ? MS_OK : parse_dtype(c, v, "dtype", &st->dtype);
    if (strcmp(k, "out_dtype") == 0)
        return is_null(v) ? MS_OK : parse_dtype(c, v, "out_dtype", &st->out_dtype);
    if (strcmp(k, "tokenizer_source") == 0)
        return is_null(v) ? MS_OK : get_text(c, v, "tokenizer_source", &st->tokenizer_source);
    if (strcmp(k, "tokenizer") == 0)
        return parse_tokenizer(c, v);
    if (strcmp(k, "chat_template") == 0)
        return is_null(v) ? MS_OK : parse_chat_template(c, v);
    if (strcmp(k, "name") == 0)
        return is_null(v) ? MS_OK : get_text(c, v, "name", &st->name);
    return add_unknown(c, kv->key, "");
}

static ms_status parse_stage(rctx *c, const ms_ynode *root)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    int bodies = 0;
    const ms_ynode *method = NULL, *base = NULL;
    ms_status st;
    if (root->type != MS_Y_MAP)
        return bad(c, root, "a recipe document must be a mapping of keys "
                   "(merge_method, models, ...), got %s", type_name(root));
    c->st->line = root->line;
    c->st->col = root->col;
    c->st->base_model = MS_RECIPE_NONE;
    st = ms_ymap_pairs(c->d, root, c->label, &p, &np, c->err);
    for (size_t i = 0; st == MS_OK && i < np; i++)
        st = top_key(c, &p[i], &bodies, &method, &base);
    free(p);
    if (st)
        return st;
    if (!method)
        return bad(c, root, "missing 'merge_method' (this is not a mergekit-yaml recipe)");
    c->st->method = ms_method_from_name(c->st->method_name);
    if (c->st->method == MS_METHOD_UNKNOWN)
        return bad(c, method, "unknown merge_method '%s' (mergekit has linear, slerp, "
                   "nuslerp, passthrough, model_stock, arcee_fusion, karcher, "
                   "task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, "
                   "breadcrumbs_ties, della, della_linear, multislerp, nearswap, sce, "
                   "ram, ramplus_tl)", c->st->method_name);
    if (bodies == 0)
        return bad(c, root, "missing 'models', 'slices' or 'modules'");
    if (c->st->has_tokenizer && c->st->tokenizer_source)
        return bad(c, root, "'tokenizer' and 'tokenizer_source' cannot both be given");
    if (base)
        return parse_model_ref(c, base, &c->st->base_model);
    return MS_OK;
}

/* ================================================= stages and lifetime */

static void value_free(ms_recipe_value *v)
{
    free(v->v);
    free(v->elem_line);
    free(v->elem_col);
}

static void paramset_free(ms_recipe_paramset *ps)
{
    for (size_t i = 0; i < ps->n; i++) {
        ms_recipe_setting *s = &ps->items[i];
        free(s->name);
        value_free(&s->value);
        for (size_t j = 0; j < s->n_conds; j++) {
            free(s->conds[j].filter);
            value_free(&s->conds[j].value);
        }
        free(s->conds);
    }
    free(ps->items);
}

static void stage_free(ms_recipe_stage *st)
{
    for (size_t i = 0; i < st->n_models; i++)
        model_free(&st->models[i]);
    free(st->models);
    for (size_t i = 0; i < st->n_modules; i++) {
        ms_recipe_module *m = &st->modules[i];
        for (size_t j = 0; j < m->n_slices; j++) {
            for (size_t k = 0; k < m->slices[j].n_sources; k++)
                paramset_free(&m->slices[j].sources[k].params);
            free(m->slices[j].sources);
            paramset_free(&m->slices[j].params);
        }
        free(m->slices);
        paramset_free(&m->params);
        free(m->name);
    }
    free(st->modules);
    paramset_free(&st->params);
    for (size_t i = 0; i < st->n_unknown; i++)
        free(st->unknown[i].where);
    free(st->unknown);
    free(st->name);
    free(st->method_name);
    free(st->dtype);
    free(st->out_dtype);
    free(st->tokenizer_source);
    free(st->chat_template);
}

void ms_recipe_free(ms_recipe *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_stages; i++)
        stage_free(&r->stages[i]);
    free(r->stages);
    for (size_t i = 0; i < r->n_warnings; i++)
        free(r->warnings[i].msg);
    free(r->warnings);
    ms_yaml_free(r->doc);
    free(r->path);
    free(r);
}

size_t ms_recipe_find_stage(const ms_recipe *r, const char *name)
{
    for (size_t i = 0; name && i < r->n_stages; i++)
        if (r->stages[i].name && strcmp(r->stages[i].name, name) == 0)
            return i;
    return MS_RECIPE_NONE;
}

size_t ms_recipe_find_model(const ms_recipe_stage *st, const char *name)
{
    for (size_t i = 0; name && i < st->n_models; i++)
        if (strcmp(st->models[i].ref, name) == 0)
            return i;
    for (size_t i = 0; name && i < st->n_models; i++)
        if (strcmp(st->models[i].path, name) == 0)
            return i;
    return MS_RECIPE_NONE;
}

/* Stage names are unique; a reference to an earlier stage's name is bound. */
static ms_status link_stages(rctx *c)
{
    ms_recipe *r = c->r;
    for (size_t i = 0; i < r->n_stages; i++) {
        ms_recipe_stage *st = &r->stages[i];
        for (size_t j = 0; st->name && j < i; j++)
            if (r->stages[j].name && strcmp(r->stages[j].name, st->name) == 0)
                return ms_error_set_at(c->err, MS_ERR_FORMAT, c->label, st->line, st->col,
                                       "stage name '%s' is used twice", st->name);
        for (size_t m = 0; m < st->n_models; m++) {
            ms_recipe_model *md = &st->models[m];
            for (size_t j = 0; j < i && !md->lora && !md->revision; j++)
                if (r->stages[j].name && strcmp(r->stages[j].name, md->path) == 0)
                    md->stage = j;
        }
    }
    return MS_OK;
}

/* Warnings in file order (stable: same line keeps discovery order). */
static void sort_warnings(ms_recipe *r)
{
    for (size_t i = 1; i < r->n_warnings; i++) {
        ms_recipe_warning w = r->warnings[i];
        size_t j = i;
        while (j > 0 && (r->warnings[j - 1].line > w.line ||
                         (r->warnings[j - 1].line == w.line && r->warnings[j - 1].col > w.col))) {
            r->warnings[j] = r->warnings[j - 1];
            j--;
        }
        r->warnings[j] = w;
    }
}

static ms_status build(ms_recipe *r, ms_error *err)
{
    rctx c = {r->path, err, r, NULL, NULL};
    size_t n_nonempty = 0;
    ms_status st = MS_OK;
    for (size_t i = 0; i < r->doc->n_docs; i++)
        n_nonempty += r->doc->docs[i].root != MS_RECIPE_NONE;
    if (n_nonempty == 0)
        return ms_error_set_at(err, MS_ERR_FORMAT, r->path, 1, 1,
                               "empty recipe (no yaml document)");
    r->stages = calloc(n_nonempty, sizeof(*r->stages));
    if (!r->stages)
        return nomem(&c);
    for (size_t i = 0; st == MS_OK && i < r->doc->n_docs; i++) {
        const ms_ydoc *d = &r->doc->docs[i];
        if (d->root == MS_RECIPE_NONE)
            continue;
        c.d = d;
        c.st = &r->stages[r->n_stages++];
        st = parse_stage(&c, &d->nodes[d->root]);
    }
    if (!st)
        st = link_stages(&c);
    for (size_t i = 0; st == MS_OK && i < r->n_stages; i++)
        st = ms_recipe_check_stage(r, i, err);
    sort_warnings(r);
    return st;
}

ms_status ms_recipe_parse(const char *text, size_t len, const char *label,
                          ms_recipe **out, ms_error *err)
{
    ms_recipe *r;
    ms_status st;
    *out = NULL;
    if (!label)
        label = "<recipe>";
    if (len > MS_RECIPE_MAX_BYTES)
        return ms_error_set(err, MS_ERR_FORMAT, label, -1,
                            "recipe is larger than %u bytes", MS_RECIPE_MAX_BYTES);
    r = calloc(1, sizeof(*r));
    if (!r || !(r->path = ms_strdup(label))) {
        free(r);
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    }
    st = ms_yaml_read(text, len, label, &r->doc, err);
    if (!st)
        st = build(r, err);
    if (st) {
        ms_recipe_free(r);
        return st;
    }
    *out = r;
    return MS_OK;
}

ms_status ms_recipe_load(const char *path, ms_recipe **out, ms_error *err)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    ms_status st = ms_read_file(path, MS_RECIPE_MAX_BYTES, &text, &len, err);
    if (st)
        return st;
    st = ms_recipe_parse(text, len, path, out, err);
    free(text);
    return st;
}
