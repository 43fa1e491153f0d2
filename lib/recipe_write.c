/*
 * recipe_write.c - a recipe back to YAML through libyaml's emitter, with
 * chosen parameters changed. The node trees the recipe was read from are
 * re-emitted as they were (key order, scalar and collection styles; merge
 * keys and aliases expanded); only parameter settings named by a change
 * are rebuilt from the parsed model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "mergescope/util.h"
#include "recipe_int.h"
#include "mergescope/banned.h"

typedef struct wctx {
    const ms_recipe *r;
    yaml_emitter_t em;
    ms_error *err;
    const ms_ydoc *d;
    size_t stage;
    const ms_recipe_change *changes;
    size_t n_changes;
} wctx;

/* ================================================= events */

static ms_status emit(wctx *w, yaml_event_t *ev)
{
    if (!yaml_emitter_emit(&w->em, ev))
        return ms_error_set(w->err, MS_ERR_INTERNAL, w->r->path, -1,
                            "yaml emitter: %s", w->em.problem ? w->em.problem : "failed");
    return MS_OK;
}

static ms_status scalar(wctx *w, const char *text, int style)
{
    yaml_event_t ev;
    if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (const yaml_char_t *)text,
                                      (int)strlen(text), 1, 1, (yaml_scalar_style_t)style))
        return ms_error_set(w->err, MS_ERR_NOMEM, w->r->path, -1, "out of memory");
    return emit(w, &ev);
}

static ms_status plain(wctx *w, const char *text)
{
    return scalar(w, text, YAML_PLAIN_SCALAR_STYLE);
}

static ms_status seq_start(wctx *w, bool flow)
{
    yaml_event_t ev;
    yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
                                         flow ? YAML_FLOW_SEQUENCE_STYLE
                                              : YAML_BLOCK_SEQUENCE_STYLE);
    return emit(w, &ev);
}

static ms_status seq_end(wctx *w)
{
    yaml_event_t ev;
    yaml_sequence_end_event_initialize(&ev);
    return emit(w, &ev);
}

static ms_status map_start(wctx *w, bool flow)
{
    yaml_event_t ev;
    yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
                                        flow ? YAML_FLOW_MAPPING_STYLE
                                             : YAML_BLOCK_MAPPING_STYLE);
    return emit(w, &ev);
}

static ms_status map_end(wctx *w)
{
    yaml_event_t ev;
    yaml_mapping_end_event_initialize(&ev);
    return emit(w, &ev);
}

/* ================================================= raw nodes */

static ms_status raw_node(wctx *w, const ms_ynode *n, int depth);

static ms_status raw_pairs(wctx *w, const ms_ynode *n, int depth)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = ms_ymap_pairs(w->d, n, w->r->path, &p, &np, w->err);
    if (!st)
        st = map_start(w, n->flow);
    for (size_t i = 0; st == MS_OK && i < np; i++) {
        st = raw_node(w, p[i].key, depth + 1);
        if (!st)
            st = raw_node(w, p[i].value, depth + 1);
    }
    free(p);
    return st ? st : map_end(w);
}

static ms_status raw_node(wctx *w, const ms_ynode *n, int depth)
{
    ms_status st;
    /* the reader bounded depth without aliases; aliases can stack them */
    if (depth > 4 * MS_RECIPE_MAX_DEPTH)
        return ms_error_set(w->err, MS_ERR_FORMAT, w->r->path, -1, "yaml nested too deeply");
    if (n->type == MS_Y_SCALAR) {
        double num;
        int style = n->style;
        /* a string that was plain only thanks to an explicit !!str tag */
        if (style == YAML_PLAIN_SCALAR_STYLE && n->kind == MS_YS_STR &&
            ms_yaml_resolve_plain(n->text, n->len, &num) != MS_YS_STR)
            style = YAML_SINGLE_QUOTED_SCALAR_STYLE;
        return scalar(w, n->text, style);
    }
    if (n->type == MS_Y_MAP)
        return raw_pairs(w, n, depth);
    if ((st = seq_start(w, n->flow)))
        return st;
    for (size_t i = 0; i < n->n_items; i++)
        if ((st = raw_node(w, ms_ychild(w->d, n, i), depth + 1)))
            return st;
    return seq_end(w);
}

/* ================================================= changed settings */

/* Shortest text that reads back as the same double and that YAML 1.1
 * resolves as a number (a float needs a dot before its exponent). */
static void fmt_number(double v, char *buf, size_t cap)
{
    char tmp[64];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    char *e = strchr(tmp, 'e');
    if (e && !memchr(tmp, '.', (size_t)(e - tmp)))
        snprintf(buf, cap, "%.*s.0%s", (int)(e - tmp), tmp, e);
    else
        snprintf(buf, cap, "%s", tmp);
}

typedef struct wval {
    double *v;
    size_t n;
    bool is_list;
} wval;

typedef struct wcond {
    const char *filter;
    wval value;
} wcond;

/* A setting being rewritten: borrowed pointers into the recipe and the
 * changes, so nothing here needs freeing but the conds array. */
typedef struct wset {
    bool conditional;
    wval value;
    bool has_value;
    wcond *conds;
    size_t n_conds;
} wset;

static wval wval_of(const ms_recipe_value *v)
{
    wval o = {v->v, v->n, v->is_list};
    return o;
}

static ms_status wset_init(wctx *w, wset *s, const ms_recipe_setting *from)
{
    memset(s, 0, sizeof(*s));
    /* room for every existing condition plus one per change */
    s->conds = ms_alloc_array((from ? from->n_conds : 0) + w->n_changes + 1, sizeof(wcond));
    if (!s->conds)
        return ms_error_set(w->err, MS_ERR_NOMEM, w->r->path, -1, "out of memory");
    if (!from)
        return MS_OK;
    s->conditional = from->conditional;
    if (!from->conditional) {
        s->value = wval_of(&from->value);
        s->has_value = true;
    }
    for (size_t i = 0; i < from->n_conds; i++) {
        s->conds[i].filter = from->conds[i].filter;
        s->conds[i].value = wval_of(&from->conds[i].value);
    }
    s->n_conds = from->n_conds;
    return MS_OK;
}

static bool is_fallback(const char *f)
{
    return !f || !*f || strcmp(f, "*") == 0;
}

static void wset_apply(wset *s, const ms_recipe_change *c)
{
    wval nv = {(double *)c->values, c->n_values, c->n_values > 1};
    if (!c->filter) {
        s->conditional = false;
        s->n_conds = 0;
        s->value = nv;
        s->has_value = true;
        return;
    }
    if (!s->conditional) {
        s->conditional = true;
        s->n_conds = 0;
        s->conds[s->n_conds].filter = c->filter;
        s->conds[s->n_conds++].value = nv;
        if (s->has_value) {
            s->conds[s->n_conds].filter = NULL;
            s->conds[s->n_conds++].value = s->value;
        }
        return;
    }
    for (size_t i = 0; i < s->n_conds; i++) {
        if (s->conds[i].filter && strcmp(s->conds[i].filter, c->filter) == 0) {
            s->conds[i].value = nv;
            return;
        }
    }
    size_t at = s->n_conds;
    for (size_t i = 0; i < s->n_conds; i++) {
        if (is_fallback(s->conds[i].filter)) {
            at = i;
            break;
        }
    }
    memmove(&s->conds[at + 1], &s->conds[at], (s->n_conds - at) * sizeof(wcond));
    s->conds[at].filter = c->filter;
    s->conds[at].value = nv;
    s->n_conds++;
}

static ms_status emit_wval(wctx *w, const wval *v)
{
    char buf[64];
    ms_status st;
    if (!v->is_list && v->n == 1) {
        fmt_number(v->v[0], buf, sizeof(buf));
        return plain(w, buf);
    }
    if ((st = seq_start(w, true)))
        return st;
    for (size_t i = 0; i < v->n; i++) {
        fmt_number(v->v[i], buf, sizeof(buf));
        if ((st = plain(w, buf)))
            return st;
    }
    return seq_end(w);
}

static ms_status emit_wset(wctx *w, const wset *s)
{
    ms_status st;
    if (!s->conditional)
        return emit_wval(w, &s->value);
    if ((st = seq_start(w, false)))
        return st;
    for (size_t i = 0; st == MS_OK && i < s->n_conds; i++) {
        st = map_start(w, false);
        if (!st && s->conds[i].filter) {
            st = plain(w, "filter");
            if (!st)
                st = scalar(w, s->conds[i].filter, YAML_ANY_SCALAR_STYLE);
        }
        if (!st)
            st = plain(w, "value");
        if (!st)
            st = emit_wval(w, &s->conds[i].value);
        if (!st)
            st = map_end(w);
    }
    return st ? st : seq_end(w);
}

/* ================================================= parameters mappings */

/* Does change c apply to `model` (NONE = top level) of the current stage? */
static bool applies(const wctx *w, const ms_recipe_change *c, size_t model)
{
    const ms_recipe_stage *st = &w->r->stages[w->stage];
    if (c->stage != w->stage)
        return false;
    if (!c->model)
        return model == MS_RECIPE_NONE;
    return model != MS_RECIPE_NONE && ms_recipe_find_model(st, c->model) == model;
}

static const ms_recipe_setting *parsed_setting(const ms_recipe_paramset *ps, const char *name)
{
    for (size_t i = ps ? ps->n : 0; i-- > 0;)
        if (strcmp(ps->items[i].name, name) == 0)
            return &ps->items[i];
    return NULL;
}

/* Emit the setting called name with every applicable change applied. */
static ms_status emit_changed(wctx *w, const ms_recipe_paramset *ps, const char *name,
                              size_t model)
{
    wset s;
    ms_status st = wset_init(w, &s, parsed_setting(ps, name));
    for (size_t i = 0; !st && i < w->n_changes; i++)
        if (applies(w, &w->changes[i], model) && strcmp(w->changes[i].param, name) == 0)
            wset_apply(&s, &w->changes[i]);
    if (!st)
        st = emit_wset(w, &s);
    free(s.conds);
    return st;
}

static bool changed_name(const wctx *w, const char *name, size_t model)
{
    for (size_t i = 0; i < w->n_changes; i++)
        if (applies(w, &w->changes[i], model) && strcmp(w->changes[i].param, name) == 0)
            return true;
    return false;
}

static bool any_change(const wctx *w, size_t model)
{
    for (size_t i = 0; i < w->n_changes; i++)
        if (applies(w, &w->changes[i], model))
            return true;
    return false;
}

/* A parameters mapping (node may be NULL or null) with changes for model. */
static ms_status emit_params(wctx *w, const ms_ynode *node, const ms_recipe_paramset *ps,
                             size_t model)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = MS_OK;
    bool flow = false;
    if (node && node->type == MS_Y_MAP) {
        st = ms_ymap_pairs(w->d, node, w->r->path, &p, &np, w->err);
        flow = node->flow;
    }
    if (!st)
        st = map_start(w, flow);
    for (size_t i = 0; !st && i < np; i++) {
        const char *k = p[i].key->text;
        st = raw_node(w, p[i].key, 1);
        if (!st)
            st = changed_name(w, k, model) ? emit_changed(w, ps, k, model)
                                           : raw_node(w, p[i].value, 1);
    }
    /* changed parameters not present yet, in the order of the changes */
    for (size_t i = 0; !st && i < w->n_changes; i++) {
        const ms_recipe_change *c = &w->changes[i];
        bool seen = false;
        if (!applies(w, c, model))
            continue;
        for (size_t j = 0; j < np; j++)
            seen |= strcmp(p[j].key->text, c->param) == 0;
        for (size_t j = 0; j < i; j++)
            seen |= applies(w, &w->changes[j], model) &&
                    strcmp(w->changes[j].param, c->param) == 0;
        if (seen)
            continue;
        st = plain(w, c->param);
        if (!st)
            st = emit_changed(w, ps, c->param, model);
    }
    free(p);
    return st ? st : map_end(w);
}

/* ================================================= structure */

/* A models: entry or a slice source. */
static ms_status emit_source(wctx *w, const ms_ynode *n, const ms_recipe_source *src)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    bool had_params = false;
    ms_status st = ms_ymap_pairs(w->d, n, w->r->path, &p, &np, w->err);
    if (!st)
        st = map_start(w, n->flow && !any_change(w, src->model));
    for (size_t i = 0; !st && i < np; i++) {
        st = raw_node(w, p[i].key, 1);
        if (st)
            break;
        if (strcmp(p[i].key->text, "parameters") == 0) {
            had_params = true;
            st = emit_params(w, p[i].value, &src->params, src->model);
        } else {
            st = raw_node(w, p[i].value, 1);
        }
    }
    if (!st && !had_params && any_change(w, src->model)) {
        st = plain(w, "parameters");
        if (!st)
            st = emit_params(w, NULL, &src->params, src->model);
    }
    free(p);
    return st ? st : map_end(w);
}

static ms_status emit_sources(wctx *w, const ms_ynode *n, const ms_recipe_slice *sl)
{
    ms_status st = seq_start(w, n->flow);
    for (size_t i = 0; !st && i < n->n_items && i < sl->n_sources; i++)
        st = emit_source(w, ms_ychild(w->d, n, i), &sl->sources[i]);
    return st ? st : seq_end(w);
}

static ms_status emit_slice(wctx *w, const ms_ynode *n, const ms_recipe_slice *sl)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = ms_ymap_pairs(w->d, n, w->r->path, &p, &np, w->err);
    if (!st)
        st = map_start(w, n->flow);
    for (size_t i = 0; !st && i < np; i++) {
        st = raw_node(w, p[i].key, 1);
        if (!st && strcmp(p[i].key->text, "sources") == 0)
            st = emit_sources(w, p[i].value, sl);
        else if (!st)
            st = raw_node(w, p[i].value, 1);
    }
    free(p);
    return st ? st : map_end(w);
}

/* models: or slices: of a module. */
static ms_status emit_body(wctx *w, const char *key, const ms_ynode *n,
                           const ms_recipe_module *mod)
{
    ms_status st;
    if (strcmp(key, "models") == 0)
        return emit_sources(w, n, &mod->slices[0]);
    if ((st = seq_start(w, n->flow)))
        return st;
    for (size_t i = 0; !st && i < n->n_items && i < mod->n_slices; i++)
        st = emit_slice(w, ms_ychild(w->d, n, i), &mod->slices[i]);
    return st ? st : seq_end(w);
}

static ms_status emit_module(wctx *w, const ms_ynode *n, const ms_recipe_module *mod)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status st = ms_ymap_pairs(w->d, n, w->r->path, &p, &np, w->err);
    if (!st)
        st = map_start(w, n->flow);
    for (size_t i = 0; !st && i < np; i++) {
        const char *k = p[i].key->text;
        st = raw_node(w, p[i].key, 1);
        if (!st && (strcmp(k, "models") == 0 || strcmp(k, "slices") == 0) &&
            p[i].value->type == MS_Y_SEQ)
            st = emit_body(w, k, p[i].value, mod);
        else if (!st)
            st = raw_node(w, p[i].value, 1);
    }
    free(p);
    return st ? st : map_end(w);
}

static ms_status emit_modules(wctx *w, const ms_ynode *n, const ms_recipe_stage *st)
{
    ms_ypair *p = NULL;
    size_t np = 0;
    ms_status rc = ms_ymap_pairs(w->d, n, w->r->path, &p, &np, w->err);
    if (!rc)
        rc = map_start(w, n->flow);
    for (size_t i = 0; !rc && i < np && i < st->n_modules; i++) {
        rc = raw_node(w, p[i].key, 1);
        if (!rc)
            rc = emit_module(w, p[i].value, &st->modules[i]);
    }
    free(p);
    return rc ? rc : map_end(w);
}

static ms_status emit_stage(wctx *w, const ms_ynode *root)
{
    const ms_recipe_stage *st = &w->r->stages[w->stage];
    ms_ypair *p = NULL;
    size_t np = 0;
    bool had_params = false;
    ms_status rc = ms_ymap_pairs(w->d, root, w->r->path, &p, &np, w->err);
    if (!rc)
        rc = map_start(w, root->flow);
    for (size_t i = 0; !rc && i < np; i++) {
        const char *k = p[i].key->text;
        const ms_ynode *v = p[i].value;
        rc = raw_node(w, p[i].key, 1);
        if (rc)
            break;
        if (strcmp(k, "parameters") == 0) {
            had_params = true;
            rc = emit_params(w, v, &st->params, MS_RECIPE_NONE);
        } else if ((strcmp(k, "models") == 0 || strcmp(k, "slices") == 0) &&
                   v->type == MS_Y_SEQ && st->n_modules > 0) {
            rc = emit_body(w, k, v, &st->modules[0]);
        } else if (strcmp(k, "modules") == 0 && v->type == MS_Y_MAP) {
            rc = emit_modules(w, v, st);
        } else {
            rc = raw_node(w, v, 1);
        }
    }
    if (!rc && !had_params && any_change(w, MS_RECIPE_NONE)) {
        rc = plain(w, "parameters");
        if (!rc)
            rc = emit_params(w, NULL, &st->params, MS_RECIPE_NONE);
    }
    free(p);
    return rc ? rc : map_end(w);
}

/* ================================================= entry points */

static ms_status check_changes(const ms_recipe *r, const ms_recipe_change *c, size_t n,
                               ms_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i].stage >= r->n_stages)
            return ms_error_set(err, MS_ERR_USAGE, r->path, -1, "no stage %zu in the recipe",
                                c[i].stage);
        const ms_recipe_stage *st = &r->stages[c[i].stage];
        if (!c[i].param || !*c[i].param || !c[i].values || c[i].n_values == 0)
            return ms_error_set(err, MS_ERR_USAGE, r->path, -1,
                                "a recipe change needs a parameter name and values");
        for (size_t j = 0; j < c[i].n_values; j++)
            if (!isfinite(c[i].values[j]))
                return ms_error_set(err, MS_ERR_USAGE, r->path, -1,
                                    "parameter '%s': cannot write a non-finite value",
                                    c[i].param);
        if (!c[i].model)
            continue;
        size_t m = ms_recipe_find_model(st, c[i].model);
        bool listed = false;
        for (size_t mi = 0; m != MS_RECIPE_NONE && mi < st->n_modules; mi++)
            for (size_t si = 0; si < st->modules[mi].n_slices; si++)
                for (size_t k = 0; k < st->modules[mi].slices[si].n_sources; k++)
                    listed |= st->modules[mi].slices[si].sources[k].model == m;
        if (!listed)
            return ms_error_set(err, MS_ERR_USAGE, r->path, -1,
                                "model '%s' has no entry in the recipe to change", c[i].model);
    }
    return MS_OK;
}

static int sb_writer(void *data, unsigned char *buf, size_t size)
{
    return ms_sb_addn((ms_sb *)data, (const char *)buf, size) ? 1 : 0;
}

static ms_status header(ms_sb *sb, const char *comment)
{
    const char *s = comment;
    bool ok = true;
    while (s && *s) {
        const char *nl = strchr(s, '\n');
        size_t len = nl ? (size_t)(nl - s) : strlen(s);
        ok &= ms_sb_add(sb, len ? "# " : "#");
        ok &= ms_sb_addn(sb, s, len);
        ok &= ms_sb_addc(sb, '\n');
        s = nl ? nl + 1 : s + len;
    }
    return ok ? MS_OK : MS_ERR_NOMEM;
}

static ms_status emit_all(wctx *w)
{
    yaml_event_t ev;
    ms_status st;
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    if ((st = emit(w, &ev)))
        return st;
    for (size_t i = 0, s = 0; i < w->r->doc->n_docs; i++) {
        const ms_ydoc *d = &w->r->doc->docs[i];
        if (d->root == MS_RECIPE_NONE)
            continue;
        w->d = d;
        w->stage = s++;
        yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, s == 1);
        if ((st = emit(w, &ev)) || (st = emit_stage(w, &d->nodes[d->root])))
            return st;
        yaml_document_end_event_initialize(&ev, 1);
        if ((st = emit(w, &ev)))
            return st;
    }
    yaml_stream_end_event_initialize(&ev);
    return emit(w, &ev);
}

ms_status ms_recipe_emit(const ms_recipe *r, const ms_recipe_change *changes,
                         size_t n_changes, const char *header_comment,
                         char **text, size_t *len, ms_error *err)
{
    wctx w;
    ms_sb sb = MS_SB_INIT;
    ms_status st = check_changes(r, changes, n_changes, err);
    *text = NULL;
    *len = 0;
    if (st)
        return st;
    memset(&w, 0, sizeof(w));
    w.r = r;
    w.err = err;
    w.changes = changes;
    w.n_changes = n_changes;
    if (header(&sb, header_comment)) {
        ms_sb_free(&sb);
        return ms_error_set(err, MS_ERR_NOMEM, r->path, -1, "out of memory");
    }
    if (!yaml_emitter_initialize(&w.em)) {
        ms_sb_free(&sb);
        return ms_error_set(err, MS_ERR_NOMEM, r->path, -1, "out of memory");
    }
    yaml_emitter_set_output(&w.em, sb_writer, &sb);
    yaml_emitter_set_unicode(&w.em, 1);
    yaml_emitter_set_width(&w.em, -1);
    yaml_emitter_set_indent(&w.em, 2);
    st = emit_all(&w);
    if (!st && !yaml_emitter_flush(&w.em))
        st = ms_error_set(err, MS_ERR_NOMEM, r->path, -1, "yaml emitter: cannot flush");
    yaml_emitter_delete(&w.em);
    if (st) {
        ms_sb_free(&sb);
        return st;
    }
    *len = sb.len;
    *text = ms_sb_detach(&sb);
    if (!*text) {
        *text = ms_strdup("");
        if (!*text)
            return ms_error_set(err, MS_ERR_NOMEM, r->path, -1, "out of memory");
    }
    return MS_OK;
}

ms_status ms_recipe_write(const ms_recipe *r, const ms_recipe_change *changes,
                          size_t n_changes, const char *header_comment,
                          const char *path, ms_error *err)
{
    char *text;
    size_t len;
    ms_status st = ms_recipe_emit(r, changes, n_changes, header_comment, &text, &len, err);
    if (st)
        return st;
    st = ms_write_file_atomic(path, text, len, err);
    free(text);
    return st;
}
