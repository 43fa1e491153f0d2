/*
 * recipe_yaml.c - YAML text to bounded node trees (see recipe_int.h), and
 * YAML 1.1 scalar resolution as PyYAML's safe_load does it.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "mergescope/util.h"
#include "recipe_int.h"
#include "mergescope/banned.h"

/* ================================================= scalar resolution */

static bool all_in(const char *s, size_t len, const char *set)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(set, s[i]))
            return false;
    return true;
}

static bool is_one_of(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* Copy s without underscores into buf (cap bytes); false if too long. */
static bool strip_underscores(const char *s, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '_')
            continue;
        if (o + 1 >= cap)
            return false;
        buf[o++] = s[i];
    }
    buf[o] = '\0';
    return true;
}

/* [0-9][0-9_]* at s[*i]; true when at least the first digit is there. */
static bool digits_us(const char *s, size_t len, size_t *i)
{
    if (*i >= len || !isdigit((unsigned char)s[*i]))
        return false;
    while (*i < len && (isdigit((unsigned char)s[*i]) || s[*i] == '_'))
        (*i)++;
    return true;
}

/* (:[0-5]?[0-9])+ at s[*i]; returns the sexagesimal value of the groups
 * folded onto *acc. */
static bool sexagesimal_tail(const char *s, size_t len, size_t *i, double *acc)
{
    bool any = false;
    while (*i < len && s[*i] == ':') {
        size_t j = *i + 1, start = j;
        while (j < len && isdigit((unsigned char)s[j]) && j - start < 2)
            j++;
        if (j == start || (j - start == 2 && s[start] > '5'))
            return false;
        double part = 0;
        for (size_t k = start; k < j; k++)
            part = part * 10 + (s[k] - '0');
        *acc = *acc * 60 + part;
        *i = j;
        any = true;
    }
    return any;
}

static bool parse_int11(const char *s, size_t len, double *num)
{
    size_t i = 0;
    double sign = 1;
    char buf[128];
    if (len == 0)
        return false;
    if (s[0] == '-' || s[0] == '+') {
        sign = s[0] == '-' ? -1 : 1;
        i = 1;
    }
    const char *p = s + i;
    size_t n = len - i;
    if (n == 0 || !strip_underscores(p, n, buf, sizeof(buf)))
        return false;
    if (n > 2 && p[0] == '0' && p[1] == 'b' && all_in(p + 2, n - 2, "01_")) {
        *num = sign * (double)strtoull(buf + 2, NULL, 2);
        return buf[2] != '\0';
    }
    if (n > 2 && p[0] == '0' && p[1] == 'x' && all_in(p + 2, n - 2, "0123456789abcdefABCDEF_")) {
        *num = sign * (double)strtoull(buf + 2, NULL, 16);
        return buf[2] != '\0';
    }
    if (n > 1 && p[0] == '0' && all_in(p + 1, n - 1, "01234567_")) {
        *num = sign * (double)strtoull(buf, NULL, 8);
        return true;
    }
    if (n == 1 && p[0] == '0') {
        *num = 0;
        return true;
    }
    if (p[0] >= '1' && p[0] <= '9') {
        size_t j = i;
        digits_us(s, len, &j);
        if (j == len) {
            *num = sign * strtod(buf, NULL);
            return true;
        }
        char head[128];
        if (!strip_underscores(s + i, j - i, head, sizeof(head)))
            return false;
        double acc = strtod(head, NULL);
        if (sexagesimal_tail(s, len, &j, &acc) && j == len) {
            *num = sign * acc;
            return true;
        }
    }
    return false;
}

/* ([eE][-+][0-9]+)? at s[*i] */
static bool exponent11(const char *s, size_t len, size_t *i)
{
    if (*i >= len)
        return true;
    if (s[*i] != 'e' && s[*i] != 'E')
        return false;
    size_t j = *i + 1;
    if (j >= len || (s[j] != '-' && s[j] != '+'))
        return false;
    j++;
    size_t start = j;
    while (j < len && isdigit((unsigned char)s[j]))
        j++;
    if (j == start)
        return false;
    *i = j;
    return true;
}

static bool parse_float11(const char *s, size_t len, double *num)
{
    static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nan_[] = {".nan", ".NaN", ".NAN", NULL};
    char buf[256];
    size_t i = 0;
    double sign = 1;
    if (is_one_of(s, nan_)) {
        *num = NAN;
        return true;
    }
    if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        sign = s[0] == '-' ? -1 : 1;
        i = 1;
    }
    if (is_one_of(s + i, inf)) {
        *num = sign * INFINITY;
        return true;
    }
    if (i == 0 && len > 1 && s[0] == '.') {
        /* \.[0-9_]+ exponent? (no sign allowed in this form) */
        size_t j = 1;
        if (!digits_us(s, len, &j) || !exponent11(s, len, &j) || j != len)
            return false;
    } else {
        size_t j = i;
        if (!digits_us(s, len, &j))
            return false;
        if (j < len && s[j] == ':') {
            double acc = 0;
            char head[128];
            if (!strip_underscores(s + i, j - i, head, sizeof(head)))
                return false;
            acc = strtod(head, NULL);
            if (!sexagesimal_tail(s, len, &j, &acc) || j >= len || s[j] != '.')
                return false;
            j++;
            while (j < len && (isdigit((unsigned char)s[j]) || s[j] == '_'))
                j++;
            if (j != len)
                return false;
            char frac[128];
            size_t dot = (size_t)(strchr(s + i, '.') - s);
            if (!strip_underscores(s + dot, len - dot, frac, sizeof(frac)))
                return false;
            *num = sign * (acc + (frac[1] ? strtod(frac, NULL) : 0.0));
            return true;
        }
        if (j >= len || s[j] != '.')
            return false;
        j++;
        while (j < len && (isdigit((unsigned char)s[j]) || s[j] == '_'))
            j++;
        if (!exponent11(s, len, &j) || j != len)
            return false;
    }
    if (!strip_underscores(s, len, buf, sizeof(buf)))
        return false;
    *num = strtod(buf, NULL);
    return true;
}

ms_yscalar ms_yaml_resolve_plain(const char *s, size_t len, double *num)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const yes[] = {"yes", "Yes", "YES", "true", "True", "TRUE",
                                      "on", "On", "ON", NULL};
    static const char *const no[] = {"no", "No", "NO", "false", "False", "FALSE",
                                     "off", "Off", "OFF", NULL};
    *num = 0;
    if (is_one_of(s, nulls))
        return MS_YS_NULL;
    if (is_one_of(s, yes)) {
        *num = 1;
        return MS_YS_BOOL;
    }
    if (is_one_of(s, no))
        return MS_YS_BOOL;
    if (parse_int11(s, len, num))
        return MS_YS_INT;
    if (parse_float11(s, len, num))
        return MS_YS_FLOAT;
    *num = 0;
    return MS_YS_STR;
}

bool ms_yaml_parse_number(const char *s, double *out)
{
    char buf[256];
    size_t len;
    while (isspace((unsigned char)*s))
        s++;
    len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* strtod takes hex floats; Python's float() does not */
    for (size_t i = 0; i < len; i++)
        if (buf[i] == 'x' || buf[i] == 'X')
            return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + len)
        return false;
    *out = v;
    return true;
}

/* ================================================= tree building */

typedef struct anchor {
    char *name;
    size_t node;
} anchor;

typedef struct builder {
    const char *label;
    ms_error *err;
    struct ms_recipe_doc *out;
    ms_ydoc *doc;              /* current document */
    size_t stack[MS_RECIPE_MAX_DEPTH];
    int depth;
    anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t total_nodes;        /* over all documents of the stream */
} builder;

/* Anchors per document: real recipes use a handful; the cap keeps alias
 * lookups (a linear scan) cheap on hostile input. */
#define MAX_ANCHORS 1000

static ms_status nomem(builder *b)
{
    return ms_error_set(b->err, MS_ERR_NOMEM, b->label, -1,
                        "out of memory reading yaml");
}

static ms_status fail_at(builder *b, const yaml_mark_t *m, const char *msg,
                         const char *arg)
{
    return ms_error_set_at(b->err, MS_ERR_FORMAT, b->label, (int)m->line + 1,
                           (int)m->column + 1, msg, arg);
}

static void clear_anchors(builder *b)
{
    for (size_t i = 0; i < b->n_anchors; i++)
        free(b->anchors[i].name);
    b->n_anchors = 0;
}

static ms_status add_anchor(builder *b, const yaml_char_t *name, size_t node)
{
    if (!name)
        return MS_OK;
    if (b->n_anchors >= MAX_ANCHORS)
        return ms_error_set_at(b->err, MS_ERR_FORMAT, b->label, b->doc->nodes[node].line,
                               b->doc->nodes[node].col, "more than %d yaml anchors",
                               MAX_ANCHORS);
    /* a redefined anchor shadows the old one, as in PyYAML */
    if (b->n_anchors == b->cap_anchors) {
        size_t cap = b->cap_anchors ? 2 * b->cap_anchors : 16;
        anchor *a = ms_realloc_array(b->anchors, cap, sizeof(*a));
        if (!a)
            return nomem(b);
        b->anchors = a;
        b->cap_anchors = cap;
    }
    char *s = ms_strdup((const char *)name);
    if (!s)
        return nomem(b);
    b->anchors[b->n_anchors].name = s;
    b->anchors[b->n_anchors].node = node;
    b->n_anchors++;
    return MS_OK;
}

static bool find_anchor(const builder *b, const yaml_char_t *name, size_t *node)
{
    for (size_t i = b->n_anchors; i-- > 0;) {
        if (strcmp(b->anchors[i].name, (const char *)name) == 0) {
            *node = b->anchors[i].node;
            return true;
        }
    }
    return false;
}

static ms_status new_node(builder *b, const yaml_event_t *ev, ms_ytype type,
                          size_t *index)
{
    ms_ydoc *d = b->doc;
    if (b->total_nodes >= MS_RECIPE_MAX_NODES)
        return fail_at(b, &ev->start_mark, "too many yaml nodes (more than %s)",
                       "100000");
    b->total_nodes++;
    if (d->n_nodes == d->cap_nodes) {
        size_t cap = d->cap_nodes ? 2 * d->cap_nodes : 64;
        ms_ynode *n = ms_realloc_array(d->nodes, cap, sizeof(*n));
        if (!n)
            return nomem(b);
        d->nodes = n;
        d->cap_nodes = cap;
    }
    ms_ynode *n = &d->nodes[d->n_nodes];
    memset(n, 0, sizeof(*n));
    n->type = type;
    n->line = (int)ev->start_mark.line + 1;
    n->col = (int)ev->start_mark.column + 1;
    n->expanded = 1;
    *index = d->n_nodes++;
    return MS_OK;
}

/* Attach node index child to the open collection (or make it the root). */
static ms_status attach(builder *b, const yaml_event_t *ev, size_t child)
{
    ms_ydoc *d = b->doc;
    if (b->depth == 0) {
        d->root = child;
        return MS_OK;
    }
    ms_ynode *p = &d->nodes[b->stack[b->depth - 1]];
    if (p->n_items == p->cap_items) {
        size_t cap = p->cap_items ? 2 * p->cap_items : 8;
        size_t *it = ms_realloc_array(p->items, cap, sizeof(*it));
        if (!it)
            return nomem(b);
        p->items = it;
        p->cap_items = cap;
    }
    p->items[p->n_items++] = child;
    /* expansion is accounted where it is added, so a billion-laughs tree is
     * refused as soon as the count passes the cap */
    size_t add = d->nodes[child].expanded;
    if (p->expanded > MS_RECIPE_MAX_NODES - add)
        return fail_at(b, &ev->start_mark,
                       "alias expansion exceeds %s nodes (recursive or "
                       "exponential aliases)", "100000");
    p->expanded += add;
    return MS_OK;
}

static ms_status check_tag(builder *b, const yaml_event_t *ev, const yaml_char_t *tag,
                           const char *const *allowed)
{
    if (!tag || strcmp((const char *)tag, "!") == 0)
        return MS_OK;
    for (size_t i = 0; allowed[i]; i++)
        if (strcmp((const char *)tag, allowed[i]) == 0)
            return MS_OK;
    return fail_at(b, &ev->start_mark, "unsupported yaml tag '%s'", (const char *)tag);
}

static ms_status on_scalar(builder *b, const yaml_event_t *ev)
{
    static const char *const tags[] = {
        "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", NULL};
    size_t idx;
    ms_status st = check_tag(b, ev, ev->data.scalar.tag, tags);
    if (st)
        return st;
    const char *val = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(val, '\0', len))
        return fail_at(b, &ev->start_mark, "%s", "a scalar contains a NUL character");
    if ((st = new_node(b, ev, MS_Y_SCALAR, &idx)))
        return st;
    ms_ynode *n = &b->doc->nodes[idx];
    n->text = ms_strndup(val, len);
    if (!n->text)
        return nomem(b);
    n->len = len;
    n->style = (int)ev->data.scalar.style;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, "!") != 0) {
        /* an explicit standard tag: resolve as that type */
        n->kind = ms_yaml_resolve_plain(n->text, len, &n->num);
        if (strstr(tag, ":str"))
            n->kind = MS_YS_STR;
        else if (strstr(tag, ":float") && (n->kind == MS_YS_INT || ms_yaml_parse_number(n->text, &n->num)))
            n->kind = MS_YS_FLOAT;
        else if (n->kind == MS_YS_STR)
            return fail_at(b, &ev->start_mark, "scalar does not match its tag '%s'", tag);
    } else if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        n->kind = ms_yaml_resolve_plain(n->text, len, &n->num);
    } else {
        n->kind = MS_YS_STR;
    }
    if ((st = add_anchor(b, ev->data.scalar.anchor, idx)))
        return st;
    return attach(b, ev, idx);
}

static ms_status on_start(builder *b, const yaml_event_t *ev, ms_ytype type)
{
    static const char *const seq_tags[] = {"tag:yaml.org,2002:seq", NULL};
    static const char *const map_tags[] = {"tag:yaml.org,2002:map", NULL};
    const yaml_char_t *tag = type == MS_Y_SEQ ? ev->data.sequence_start.tag
                                              : ev->data.mapping_start.tag;
    const yaml_char_t *anc = type == MS_Y_SEQ ? ev->data.sequence_start.anchor
                                              : ev->data.mapping_start.anchor;
    size_t idx;
    ms_status st = check_tag(b, ev, tag, type == MS_Y_SEQ ? seq_tags : map_tags);
    if (st)
        return st;
    if (b->depth >= MS_RECIPE_MAX_DEPTH)
        return fail_at(b, &ev->start_mark, "yaml nested deeper than %s levels", "64");
    if ((st = new_node(b, ev, type, &idx)))
        return st;
    b->doc->nodes[idx].flow = type == MS_Y_SEQ
        ? ev->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
        : ev->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
    if ((st = add_anchor(b, anc, idx)))
        return st;
    b->stack[b->depth++] = idx;
    return MS_OK;
}

static ms_status on_end(builder *b, const yaml_event_t *ev)
{
    if (b->depth == 0)
        return fail_at(b, &ev->start_mark, "%s", "unbalanced yaml collection");
    size_t idx = b->stack[--b->depth];
    return attach(b, ev, idx);
}

static ms_status on_alias(builder *b, const yaml_event_t *ev)
{
    size_t target;
    const yaml_char_t *name = ev->data.alias.anchor;
    if (!find_anchor(b, name, &target))
        return fail_at(b, &ev->start_mark, "undefined alias '%s'", (const char *)name);
    for (int i = 0; i < b->depth; i++)
        if (b->stack[i] == target)
            return fail_at(b, &ev->start_mark,
                           "recursive alias '%s' (refers to a collection that contains it)",
                           (const char *)name);
    return attach(b, ev, target);
}

static ms_status on_doc_start(builder *b, const yaml_event_t *ev)
{
    struct ms_recipe_doc *o = b->out;
    ms_ydoc *docs = ms_realloc_array(o->docs, o->n_docs + 1, sizeof(*docs));
    if (!docs)
        return nomem(b);
    o->docs = docs;
    b->doc = &docs[o->n_docs++];
    memset(b->doc, 0, sizeof(*b->doc));
    b->doc->root = MS_RECIPE_NONE;
    b->doc->line = (int)ev->start_mark.line + 1;
    b->doc->col = (int)ev->start_mark.column + 1;
    b->depth = 0;
    clear_anchors(b);
    return MS_OK;
}

static ms_status on_event(builder *b, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        return on_doc_start(b, ev);
    case YAML_SCALAR_EVENT:
        return on_scalar(b, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(b, ev, MS_Y_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(b, ev, MS_Y_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(b, ev);
    case YAML_ALIAS_EVENT:
        return on_alias(b, ev);
    default:
        return MS_OK;
    }
}

static ms_status parser_error(builder *b, const yaml_parser_t *p)
{
    const yaml_mark_t *m = &p->problem_mark;
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_MEMORY_ERROR)
        return nomem(b);
    if (p->context)
        return ms_error_set_at(b->err, MS_ERR_FORMAT, b->label, (int)m->line + 1,
                               (int)m->column + 1, "invalid yaml: %s %s", problem,
                               p->context);
    return ms_error_set_at(b->err, MS_ERR_FORMAT, b->label, (int)m->line + 1,
                           (int)m->column + 1, "invalid yaml: %s", problem);
}

ms_status ms_yaml_read(const char *text, size_t len, const char *label,
                       struct ms_recipe_doc **out, ms_error *err)
{
    yaml_parser_t parser;
    builder b;
    ms_status st = MS_OK;
    bool done = false;

    *out = NULL;
    memset(&b, 0, sizeof(b));
    b.label = label;
    b.err = err;
    b.out = calloc(1, sizeof(*b.out));
    if (!b.out)
        return nomem(&b);
    if (!yaml_parser_initialize(&parser)) {
        free(b.out);
        return nomem(&b);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && st == MS_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            st = parser_error(&b, &parser);
            break;
        }
        st = on_event(&b, &ev);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    clear_anchors(&b);
    free(b.anchors);
    if (st) {
        ms_yaml_free(b.out);
        return st;
    }
    *out = b.out;
    return MS_OK;
}

void ms_yaml_free(struct ms_recipe_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_docs; i++) {
        ms_ydoc *doc = &d->docs[i];
        for (size_t j = 0; j < doc->n_nodes; j++) {
            free(doc->nodes[j].text);
            free(doc->nodes[j].items);
        }
        free(doc->nodes);
    }
    free(d->docs);
    free(d);
}

/* ================================================= merge keys */

typedef struct pairlist {
    ms_ypair *v;
    size_t n, cap;
} pairlist;

static bool is_merge_key(const ms_ynode *k)
{
    return k->type == MS_Y_SCALAR && k->style == YAML_PLAIN_SCALAR_STYLE &&
           strcmp(k->text, "<<") == 0;
}

static ms_status add_pair(pairlist *pl, const ms_ynode *k, const ms_ynode *v,
                          bool override, const char *label, ms_error *err)
{
    for (size_t i = 0; i < pl->n; i++) {
        if (strcmp(pl->v[i].key->text, k->text) == 0) {
            if (override)
                pl->v[i].value = v;
            return MS_OK;
        }
    }
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 16;
        ms_ypair *nv = ms_realloc_array(pl->v, cap, sizeof(*nv));
        if (!nv)
            return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
        pl->v = nv;
        pl->cap = cap;
    }
    pl->v[pl->n].key = k;
    pl->v[pl->n].value = v;
    pl->n++;
    return MS_OK;
}

static ms_status collect(const ms_ydoc *d, const ms_ynode *m, pairlist *pl,
                         bool explicit_level, int depth, const char *label,
                         ms_error *err);

/* Merge the mapping(s) named by a `<<` value: they never override. */
static ms_status merge_from(const ms_ydoc *d, const ms_ynode *v, pairlist *pl,
                            int depth, const char *label, ms_error *err)
{
    if (v->type == MS_Y_MAP)
        return collect(d, v, pl, false, depth + 1, label, err);
    if (v->type == MS_Y_SEQ) {
        for (size_t i = 0; i < v->n_items; i++) {
            const ms_ynode *e = ms_ychild(d, v, i);
            if (e->type != MS_Y_MAP)
                return ms_error_set_at(err, MS_ERR_FORMAT, label, e->line, e->col,
                                       "a '<<' merge list must hold mappings");
            ms_status st = collect(d, e, pl, false, depth + 1, label, err);
            if (st)
                return st;
        }
        return MS_OK;
    }
    return ms_error_set_at(err, MS_ERR_FORMAT, label, v->line, v->col,
                           "a '<<' merge key needs a mapping or a list of mappings");
}

static ms_status collect(const ms_ydoc *d, const ms_ynode *m, pairlist *pl,
                         bool explicit_level, int depth, const char *label,
                         ms_error *err)
{
    ms_status st;
    if (depth > MS_RECIPE_MAX_DEPTH)
        return ms_error_set_at(err, MS_ERR_FORMAT, label, m->line, m->col,
                               "'<<' merge keys nested too deeply");
    /* explicit keys first so that they win over merged ones */
    for (size_t i = 0; i + 1 < m->n_items; i += 2) {
        const ms_ynode *k = ms_ychild(d, m, i);
        if (k->type != MS_Y_SCALAR)
            return ms_error_set_at(err, MS_ERR_FORMAT, label, k->line, k->col,
                                   "mapping keys must be plain text, not a list or a mapping");
        if (is_merge_key(k))
            continue;
        if ((st = add_pair(pl, k, ms_ychild(d, m, i + 1), explicit_level, label, err)))
            return st;
    }
    for (size_t i = 0; i + 1 < m->n_items; i += 2) {
        const ms_ynode *k = ms_ychild(d, m, i);
        if (!is_merge_key(k))
            continue;
        if ((st = merge_from(d, ms_ychild(d, m, i + 1), pl, depth, label, err)))
            return st;
    }
    return MS_OK;
}

ms_status ms_ymap_pairs(const ms_ydoc *d, const ms_ynode *m, const char *label,
                        ms_ypair **pairs, size_t *n, ms_error *err)
{
    pairlist pl = {NULL, 0, 0};
    ms_status st = collect(d, m, &pl, true, 0, label, err);
    if (st) {
        free(pl.v);
        return st;
    }
    *pairs = pl.v;
    *n = pl.n;
    return MS_OK;
}
