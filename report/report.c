/*
 * report.c - loading and validating results, JSON accessors, and writing
 * the report directory: plots first (the HTML embeds them), then
 * report.md, report.html and MODEL_CARD.md, each atomically.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const kind_names[MS_RK_COUNT] = {
    "inspect", "recipe", "audit", "compare", "attribute", "provenance", "quant",
};

const char *ms_report_kind_name(ms_report_kind kind)
{
    return (unsigned)kind < MS_RK_COUNT ? kind_names[kind] : "?";
}

/* ==== JSON access ==== */

const cJSON *ms_rp_get(const cJSON *obj, const char *key)
{
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

const char *ms_rp_str(const cJSON *obj, const char *key)
{
    const cJSON *v = ms_rp_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool ms_rp_num(const cJSON *obj, const char *key, double *v)
{
    const cJSON *n = ms_rp_get(obj, key);
    if (!cJSON_IsNumber(n) || !isfinite(n->valuedouble))
        return false;
    *v = n->valuedouble;
    return true;
}

const cJSON *ms_rp_arr(const cJSON *obj, const char *key)
{
    const cJSON *v = ms_rp_get(obj, key);
    return cJSON_IsArray(v) ? v : NULL;
}

const cJSON *ms_rp_obj(const cJSON *obj, const char *key)
{
    const cJSON *v = ms_rp_get(obj, key);
    return cJSON_IsObject(v) ? v : NULL;
}

const char *ms_rp_fmt(char *buf, size_t cap, const cJSON *obj, const char *key, int prec)
{
    double v;
    if (!ms_rp_num(obj, key, &v))
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.*f", prec, v);
    return buf;
}

const char *ms_rp_pct(char *buf, size_t cap, const cJSON *obj, const char *key)
{
    double v;
    if (!ms_rp_num(obj, key, &v))
        snprintf(buf, cap, "n/a");
    else
        snprintf(buf, cap, "%.1f%%", v * 100.0);
    return buf;
}

/* "dir/org/model" names the same model as "org/model"; so does equality. */
static bool path_tail(const char *path, const char *name)
{
    size_t a = strlen(path), b = strlen(name);
    return a > b && path[a - b - 1] == '/' && !strcmp(path + a - b, name);
}

bool ms_rp_same_model(const char *a, const char *b)
{
    return a && b && (!strcmp(a, b) || path_tail(a, b) || path_tail(b, a));
}

const ms_rp_input *ms_rp_first(const ms_report *r, ms_report_kind kind)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->in[i].kind == kind)
            return &r->in[i];
    return NULL;
}

/* ==== loading ==== */

ms_report *ms_report_new(void)
{
    return calloc(1, sizeof(ms_report));
}

void ms_report_free(ms_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        free(r->in[i].label);
        cJSON_Delete(r->in[i].root);
    }
    free(r->in);
    free(r);
}

size_t ms_report_count(const ms_report *r, ms_report_kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        n += r->in[i].kind == kind;
    return n;
}

/* "mergescope.<kind>/<version>": the kind, or an error. */
static ms_status schema_kind(const cJSON *root, const char *label, ms_report_kind *kind,
                             ms_error *err)
{
    const char *schema = ms_rp_str(root, "schema");
    if (!schema || !ms_str_startswith(schema, "mergescope."))
        return ms_error_set(err, MS_ERR_FORMAT, label, -1,
                            "not a mergescope result (no \"schema\": \"mergescope.<command>/1\")");
    const char *name = schema + strlen("mergescope.");
    const char *slash = strchr(name, '/');
    for (int k = 0; k < MS_RK_COUNT && slash; k++) {
        size_t n = strlen(kind_names[k]);
        if ((size_t)(slash - name) != n || strncmp(name, kind_names[k], n))
            continue;
        if (strcmp(slash, "/1"))
            return ms_error_set(err, MS_ERR_UNSUPPORTED, label, -1,
                                "unsupported %s result version (this report reads /1)",
                                kind_names[k]);
        *kind = (ms_report_kind)k;
        return MS_OK;
    }
    return ms_error_set(err, MS_ERR_FORMAT, label, -1,
                        "not a result report reads (expected the schema of inspect, recipe, "
                        "audit, compare, attribute, provenance or quant)");
}

ms_status ms_report_add_text(ms_report *r, const char *label, const char *text, size_t len,
                             ms_error *err)
{
    const char *end = NULL;
    ms_report_kind kind = MS_RK_INSPECT;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        int64_t off = end && end >= text ? (int64_t)(end - text) : -1;
        return ms_error_set(err, MS_ERR_FORMAT, label, off, "not valid JSON");
    }
    ms_status st = cJSON_IsObject(root)
                       ? schema_kind(root, label, &kind, err)
                       : ms_error_set(err, MS_ERR_FORMAT, label, 0, "not a JSON object");
    if (st) {
        cJSON_Delete(root);
        return st;
    }
    ms_rp_input *in = ms_realloc_array(r->in, r->n + 1, sizeof(*in));
    char *lab = ms_strdup(label);
    if (!in || !lab) {
        if (in)
            r->in = in;
        free(lab);
        cJSON_Delete(root);
        return ms_error_set(err, MS_ERR_NOMEM, label, -1, "out of memory");
    }
    r->in = in;
    r->in[r->n].kind = kind;
    r->in[r->n].label = lab;
    r->in[r->n].root = root;
    r->n++;
    return MS_OK;
}

ms_status ms_report_add_file(ms_report *r, const char *path, ms_error *err)
{
    char *text = NULL;
    size_t len = 0;
    ms_status st = ms_read_file(path, MS_REPORT_MAX_INPUT, &text, &len, err);
    if (st)
        return st;
    st = ms_report_add_text(r, path, text, len, err);
    free(text);
    return st;
}

/* ==== writing ==== */

/* mkdir -p */
static ms_status make_dirs(const char *dir, ms_error *err)
{
    char *p = ms_strdup(dir);
    if (!p)
        return ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    for (char *s = p + 1; ; s++) {
        bool last = *s == '\0';
        if (*s != '/' && !last)
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            return ms_error_set(err, MS_ERR_IO, dir, -1, "cannot create directory: %s",
                                strerror(e));
        }
        if (last)
            break;
        *s = '/';
    }
    free(p);
    if (!ms_path_is_dir(dir))
        return ms_error_set(err, MS_ERR_IO, dir, -1, "not a directory");
    return MS_OK;
}

static const char html_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
    "img-src data:; style-src 'unsafe-inline'\">\n"
    "<title>mergescope report</title>\n<style>\n"
    "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;line-height:1.5;"
    "color:#1a1a1a;background:#fff;max-width:62rem;margin:0 auto;padding:1rem}\n"
    "h1{font-size:1.7rem;margin-top:0.5rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;"
    "padding-bottom:0.2rem}h3{margin-top:1.6rem}\n"
    "nav ul{columns:2 12rem;padding-left:1.2rem}\n"
    ".tw{overflow-x:auto;margin:0.8rem 0}\n"
    "table{border-collapse:collapse;font-size:0.92rem}\n"
    "th,td{border:1px solid #ccc;padding:0.25rem 0.55rem;text-align:left;vertical-align:top}\n"
    "th{background:#f2f4f7}td.n{text-align:right;font-variant-numeric:tabular-nums;"
    "white-space:nowrap}\n"
    "tr:nth-child(even) td{background:#fafafa}\n"
    "code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em;"
    "background:#f2f4f7;padding:0 0.2em;border-radius:3px}\n"
    "p code,li code{overflow-wrap:anywhere}\n"
    "pre{background:#f6f8fa;padding:0.8rem;overflow-x:auto;border-radius:4px}\n"
    "pre code{background:none;padding:0}\n"
    "figure{margin:1.2rem 0}img{max-width:100%;height:auto;border:1px solid #eee}\n"
    "figcaption{font-size:0.9rem;color:#555}\n"
    ".note{background:#fff8e1;border-left:4px solid #f0b400;padding:0.4rem 0.7rem}\n"
    "@media (max-width:600px){body{padding:0.6rem}table{font-size:0.82rem}}\n"
    "</style>\n</head>\n<body>\n";

static void build_doc(const ms_report *r, ms_rp_ctx *c)
{
    static const ms_report_kind order[] = {
        MS_RK_RECIPE, MS_RK_AUDIT, MS_RK_ATTRIBUTE, MS_RK_PROVENANCE,
        MS_RK_COMPARE, MS_RK_QUANT, MS_RK_INSPECT,
    };
    static void (*const fn[MS_RK_COUNT])(ms_rp_ctx *, const ms_rp_input *) = {
        [MS_RK_INSPECT] = ms_rp_section_inspect, [MS_RK_RECIPE] = ms_rp_section_recipe,
        [MS_RK_AUDIT] = ms_rp_section_audit, [MS_RK_COMPARE] = ms_rp_section_compare,
        [MS_RK_ATTRIBUTE] = ms_rp_section_attribute, [MS_RK_PROVENANCE] = ms_rp_section_provenance,
        [MS_RK_QUANT] = ms_rp_section_quant,
    };
    ms_rp_h(c->doc, 1, "mergescope report");
    ms_rp_section_overview(c);
    ms_rp_findings(c->doc, r);
    for (size_t k = 0; k < MS_ARRAY_SIZE(order); k++)
        for (size_t i = 0; i < r->n; i++)
            if (r->in[i].kind == order[k])
                fn[order[k]](c, &r->in[i]);
}

static ms_status write_out(const char *dir, const char *name, const ms_sb *sb, ms_error *err)
{
    char *path = ms_path_join(dir, name);
    if (!path)
        return ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    ms_status st = ms_write_file_atomic(path, ms_sb_str(sb), sb->len, err);
    free(path);
    return st;
}

static ms_status render_all(const ms_rp_doc *doc, const ms_report *r, const char *dir,
                            const char *plots_dir, ms_error *err)
{
    ms_sb md = MS_SB_INIT, html = MS_SB_INIT, card = MS_SB_INIT;
    bool ok = ms_rp_render_md(doc, &md) && ms_sb_add(&html, html_head) &&
              ms_rp_render_html(doc, plots_dir, &html) &&
              ms_sb_add(&html, "</body>\n</html>\n") && ms_rp_card_build(r, &card);
    ms_status st = ok ? MS_OK : ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    if (!st)
        st = write_out(dir, "report.md", &md, err);
    if (!st)
        st = write_out(dir, "report.html", &html, err);
    if (!st)
        st = write_out(dir, "MODEL_CARD.md", &card, err);
    ms_sb_free(&md);
    ms_sb_free(&html);
    ms_sb_free(&card);
    return st;
}

ms_status ms_report_write(const ms_report *r, const char *dir, const ms_report_opts *opts,
                          ms_report_outcome *out, ms_error *err)
{
    ms_rp_plots plots = {0};
    ms_rp_ctx c = {r, ms_rp_doc_new(), &plots};
    char *plots_dir = ms_path_join(dir, "plots");
    memset(out, 0, sizeof(*out));
    ms_status st = c.doc && plots_dir ? MS_OK
                                      : ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    if (!st)
        st = make_dirs(dir, err);
    if (!st)
        st = make_dirs(plots_dir, err);
    if (!st) {
        build_doc(r, &c);
        if (ms_rp_doc_failed(c.doc) || plots.oom)
            st = ms_error_set(err, MS_ERR_NOMEM, dir, -1, "out of memory");
    }
    if (!st)
        st = ms_rp_plots_write(&plots, plots_dir, err);
    if (!st) {
        ms_rp_plots_render(&plots, plots_dir, opts ? opts->gnuplot : NULL, out);
        st = render_all(c.doc, r, dir, plots_dir, err);
    }
    ms_rp_plots_free(&plots);
    ms_rp_doc_free(c.doc);
    free(plots_dir);
    return st;
}
