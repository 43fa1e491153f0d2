/*
 * doc.c - the report as a list of blocks (headings, paragraphs, list
 * items, notes, tables, code, figures) of styled spans, rendered once to
 * Markdown and once to HTML. Every span is escaped for its output at
 * render time, so a section builder cannot forget to.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

typedef enum bk_kind { BK_H, BK_P, BK_LI, BK_NOTE, BK_TABLE, BK_CODE, BK_FIG } bk_kind;

typedef struct span {
    ms_rp_style st;
    char *text;
} span;

typedef struct block {
    bk_kind kind;
    int level;        /* headings */
    char *text;       /* heading, code text, figure name */
    char *aux;        /* code language, figure caption */
    span *spans;      /* paragraph spans, or table cells row-major (row 0 = header) */
    size_t nspans, cap;
    size_t ncols;
} block;

struct ms_rp_doc {
    block *b;
    size_t n, cap;
    bool oom;
};

ms_rp_doc *ms_rp_doc_new(void)
{
    return calloc(1, sizeof(ms_rp_doc));
}

void ms_rp_doc_free(ms_rp_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        block *b = &d->b[i];
        for (size_t j = 0; j < b->nspans; j++)
            free(b->spans[j].text);
        free(b->spans);
        free(b->text);
        free(b->aux);
    }
    free(d->b);
    free(d);
}

bool ms_rp_doc_failed(const ms_rp_doc *d)
{
    return !d || d->oom;
}

/* ==== building ==== */

static block *push_block(ms_rp_doc *d, bk_kind kind)
{
    if (d->oom)
        return NULL;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 64;
        block *nb = ms_realloc_array(d->b, cap, sizeof(*nb));
        if (!nb) {
            d->oom = true;
            return NULL;
        }
        d->b = nb;
        d->cap = cap;
    }
    block *b = &d->b[d->n++];
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    return b;
}

static char *dup_or_oom(ms_rp_doc *d, const char *s)
{
    char *p = ms_strdup(s ? s : "");
    if (!p)
        d->oom = true;
    return p;
}

/* Append a span to the last block (a paragraph-like block or a table). */
static void push_span(ms_rp_doc *d, ms_rp_style st, const char *text)
{
    if (d->oom || !d->n)
        return;
    block *b = &d->b[d->n - 1];
    if (b->nspans == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        span *ns = ms_realloc_array(b->spans, cap, sizeof(*ns));
        if (!ns) {
            d->oom = true;
            return;
        }
        b->spans = ns;
        b->cap = cap;
    }
    char *t = dup_or_oom(d, text);
    if (!t)
        return;
    b->spans[b->nspans].st = st;
    b->spans[b->nspans].text = t;
    b->nspans++;
}

void ms_rp_h(ms_rp_doc *d, int level, const char *text)
{
    block *b = push_block(d, BK_H);
    if (b) {
        b->level = level < 1 ? 1 : level > 4 ? 4 : level;
        b->text = dup_or_oom(d, text);
    }
}

void ms_rp_p(ms_rp_doc *d) { push_block(d, BK_P); }
void ms_rp_li(ms_rp_doc *d) { push_block(d, BK_LI); }
void ms_rp_note(ms_rp_doc *d) { push_block(d, BK_NOTE); }

void ms_rp_span(ms_rp_doc *d, ms_rp_style st, const char *text)
{
    push_span(d, st, text);
}

static void vspan(ms_rp_doc *d, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    push_span(d, RP_OURS, buf);
}

void ms_rp_spanf(ms_rp_doc *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vspan(d, fmt, ap);
    va_end(ap);
}

void ms_rp_table(ms_rp_doc *d, size_t ncols, const char *const *header)
{
    block *b = push_block(d, BK_TABLE);
    if (!b)
        return;
    b->ncols = ncols ? ncols : 1;
    for (size_t i = 0; header && i < ncols; i++)
        push_span(d, RP_OURS, header[i]);
}

/* Rows are implicit (ncols cells each); ms_rp_row pads a short row. */
void ms_rp_row(ms_rp_doc *d)
{
    if (d->oom || !d->n || d->b[d->n - 1].kind != BK_TABLE)
        return;
    block *b = &d->b[d->n - 1];
    while (b->nspans % b->ncols && !d->oom)
        push_span(d, RP_OURS, "");
}

void ms_rp_cell(ms_rp_doc *d, ms_rp_style st, const char *text)
{
    push_span(d, st, text);
}

void ms_rp_cellf(ms_rp_doc *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vspan(d, fmt, ap);
    va_end(ap);
}

void ms_rp_code(ms_rp_doc *d, const char *lang, const char *text)
{
    block *b = push_block(d, BK_CODE);
    if (b) {
        b->aux = dup_or_oom(d, lang);
        b->text = dup_or_oom(d, text);
    }
}

void ms_rp_fig(ms_rp_doc *d, const char *name, const char *caption)
{
    block *b = push_block(d, BK_FIG);
    if (b) {
        b->text = dup_or_oom(d, name);
        b->aux = dup_or_oom(d, caption);
    }
}

/* ==== Markdown ==== */

/* Text that is safe verbatim inside a Markdown code span. */
static bool code_safe(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/:@ ,=+-",
                    *s))
            return false;
    return true;
}

static bool md_span(ms_sb *o, const span *s)
{
    switch (s->st) {
    case RP_OURS:
        return ms_sb_add(o, s->text);
    case RP_CODE:
        if (code_safe(s->text))
            return ms_sb_addc(o, '`') && ms_sb_add(o, s->text) && ms_sb_addc(o, '`');
        return ms_esc_md(o, s->text);
    case RP_BOLD:
        return ms_sb_add(o, "**") && ms_esc_md(o, s->text) && ms_sb_add(o, "**");
    default:
        return ms_esc_md(o, s->text);
    }
}

static bool md_spans(ms_sb *o, const block *b)
{
    bool ok = true;
    for (size_t i = 0; i < b->nspans && ok; i++)
        ok = md_span(o, &b->spans[i]);
    return ok;
}

static bool md_table(ms_sb *o, const block *b)
{
    bool ok = true;
    size_t nrows = b->nspans / b->ncols;
    for (size_t r = 0; r < nrows && ok; r++) {
        for (size_t c = 0; c < b->ncols && ok; c++)
            ok = ms_sb_add(o, "| ") && md_span(o, &b->spans[r * b->ncols + c]) &&
                 ms_sb_addc(o, ' ');
        ok = ok && ms_sb_add(o, "|\n");
        for (size_t c = 0; r == 0 && c < b->ncols && ok; c++)
            ok = ms_sb_add(o, c ? "---|" : "|---|");
        if (r == 0)
            ok = ok && ms_sb_addc(o, '\n');
    }
    return ok && ms_sb_addc(o, '\n');
}

static bool md_block(ms_sb *o, const block *b, const block *next)
{
    static const char hashes[] = "####";
    ms_sb body = MS_SB_INIT;
    bool ok = true;
    switch (b->kind) {
    case BK_H:
        return ms_sb_addf(o, "%.*s %s\n\n", b->level, hashes, b->text);
    case BK_P:
        return md_spans(o, b) && ms_sb_add(o, "\n\n");
    case BK_LI:
        ok = ms_sb_add(o, "- ") && md_spans(o, b) && ms_sb_addc(o, '\n');
        return ok && ((next && next->kind == BK_LI) || ms_sb_addc(o, '\n'));
    case BK_NOTE:
        return ms_sb_add(o, "> ") && md_spans(o, b) && ms_sb_add(o, "\n\n");
    case BK_TABLE:
        return md_table(o, b);
    case BK_CODE: {
        size_t fence = ms_esc_code_block(&body, b->text);
        ok = fence && ms_sb_addf(o, "%.*s%s\n", (int)fence,
                                 "``````````````````````````````````````````````````",
                                 b->aux) &&
             ms_sb_add(o, ms_sb_str(&body));
        if (ok && body.len && body.buf[body.len - 1] != '\n')
            ok = ms_sb_addc(o, '\n');
        ok = ok && ms_sb_addf(o, "%.*s\n\n", (int)fence,
                              "``````````````````````````````````````````````````");
        ms_sb_free(&body);
        return ok && fence <= 50;
    }
    case BK_FIG:
        return ms_sb_add(o, "![") && ms_esc_md(o, b->aux) &&
               ms_sb_addf(o, "](plots/%s.png)\n\n*", b->text) && ms_esc_md(o, b->aux) &&
               ms_sb_add(o, "*\n\n");
    }
    return false;
}

bool ms_rp_render_md(const ms_rp_doc *d, ms_sb *out)
{
    bool ok = !d->oom;
    for (size_t i = 0; i < d->n && ok; i++)
        ok = md_block(out, &d->b[i], i + 1 < d->n ? &d->b[i + 1] : NULL);
    return ok;
}

/* ==== HTML ==== */

static bool html_span(ms_sb *o, const span *s)
{
    switch (s->st) {
    case RP_CODE:
        return ms_sb_add(o, "<code>") && ms_esc_html(o, s->text) && ms_sb_add(o, "</code>");
    case RP_BOLD:
        return ms_sb_add(o, "<strong>") && ms_esc_html(o, s->text) &&
               ms_sb_add(o, "</strong>");
    default:
        return ms_esc_html(o, s->text);
    }
}

static bool html_spans(ms_sb *o, const block *b)
{
    bool ok = true;
    for (size_t i = 0; i < b->nspans && ok; i++)
        ok = html_span(o, &b->spans[i]);
    return ok;
}

/* A cell of ours that holds a number is right-aligned. */
static bool numeric_cell(const span *s)
{
    const char *t = s->text;
    if (s->st != RP_OURS || !*t)
        return false;
    if (*t == '-' || *t == '+')
        t++;
    return (*t >= '0' && *t <= '9') || !strcmp(t, "n/a");
}

static bool html_table(ms_sb *o, const block *b)
{
    size_t nrows = b->nspans / b->ncols;
    bool ok = ms_sb_add(o, "<div class=\"tw\"><table>\n");
    for (size_t r = 0; r < nrows && ok; r++) {
        ok = ms_sb_add(o, "<tr>");
        for (size_t c = 0; c < b->ncols && ok; c++) {
            const span *s = &b->spans[r * b->ncols + c];
            const char *tag = r == 0 ? "th" : "td";
            ok = ms_sb_addf(o, "<%s%s>", tag, r && numeric_cell(s) ? " class=\"n\"" : "") &&
                 html_span(o, s) && ms_sb_addf(o, "</%s>", tag);
        }
        ok = ok && ms_sb_add(o, "</tr>\n");
    }
    return ok && ms_sb_add(o, "</table></div>\n");
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static bool base64(ms_sb *o, const unsigned char *p, size_t n)
{
    bool ok = true;
    for (size_t i = 0; i < n && ok; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char q[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                     i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
        ok = ms_sb_addn(o, q, 4);
    }
    return ok;
}

static bool html_fig(ms_sb *o, const block *b, const char *plots_dir)
{
    ms_sb path = MS_SB_INIT;
    ms_error err;
    char *png = NULL;
    size_t len = 0;
    bool ok = ms_sb_addf(&path, "%s/%s.png", plots_dir, b->text);
    ms_error_clear(&err);
    if (ok && ms_read_file(path.buf, 64u << 20, &png, &len, &err) != MS_OK)
        png = NULL;
    ms_sb_free(&path);
    ok = ok && ms_sb_add(o, "<figure>");
    if (ok && png && len > 8 && !memcmp(png, "\x89PNG", 4))
        ok = ms_sb_add(o, "<img alt=\"") && ms_esc_html(o, b->aux) &&
             ms_sb_add(o, "\" src=\"data:image/png;base64,") &&
             base64(o, (const unsigned char *)png, len) && ms_sb_add(o, "\">");
    else
        ok = ok && ms_sb_addf(o, "<p class=\"note\">plot not rendered: run "
                                 "<code>gnuplot %s.gp</code> in <code>plots/</code></p>",
                              b->text);
    free(png);
    return ok && ms_sb_add(o, "<figcaption>") && ms_esc_html(o, b->aux) &&
           ms_sb_add(o, "</figcaption></figure>\n");
}

static bool html_block(ms_sb *o, const block *b, const block *prev, const block *next,
                       const char *plots_dir, size_t idx)
{
    bool ok = true;
    switch (b->kind) {
    case BK_H:
        ok = ms_sb_addf(o, "<h%d id=\"s%zu\">", b->level, idx) && ms_esc_html(o, b->text);
        return ok && ms_sb_addf(o, "</h%d>\n", b->level);
    case BK_P:
        return ms_sb_add(o, "<p>") && html_spans(o, b) && ms_sb_add(o, "</p>\n");
    case BK_NOTE:
        return ms_sb_add(o, "<p class=\"note\">") && html_spans(o, b) &&
               ms_sb_add(o, "</p>\n");
    case BK_LI:
        if (!prev || prev->kind != BK_LI)
            ok = ms_sb_add(o, "<ul>\n");
        ok = ok && ms_sb_add(o, "<li>") && html_spans(o, b) && ms_sb_add(o, "</li>\n");
        return ok && ((next && next->kind == BK_LI) || ms_sb_add(o, "</ul>\n"));
    case BK_TABLE:
        return html_table(o, b);
    case BK_CODE: {
        ms_sb body = MS_SB_INIT;
        ok = ms_esc_code_block(&body, b->text) && ms_sb_add(o, "<pre><code>");
        /* escape line by line so that the newlines stay newlines */
        for (char *line = body.buf; ok && line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            ok = ms_esc_html(o, line) && (!nl || ms_sb_addc(o, '\n'));
            line = nl ? nl + 1 : NULL;
        }
        ok = ok && ms_sb_add(o, "</code></pre>\n");
        ms_sb_free(&body);
        return ok;
    }
    case BK_FIG:
        return html_fig(o, b, plots_dir);
    }
    return false;
}

/* The contents list: every level-2 heading. */
static bool html_toc(ms_sb *o, const ms_rp_doc *d)
{
    bool ok = ms_sb_add(o, "<nav><ul>\n");
    for (size_t i = 0; i < d->n && ok; i++)
        if (d->b[i].kind == BK_H && d->b[i].level == 2)
            ok = ms_sb_addf(o, "<li><a href=\"#s%zu\">", i) && ms_esc_html(o, d->b[i].text) &&
                 ms_sb_add(o, "</a></li>\n");
    return ok && ms_sb_add(o, "</ul></nav>\n");
}

bool ms_rp_render_html(const ms_rp_doc *d, const char *plots_dir, ms_sb *out)
{
    bool ok = !d->oom;
    for (size_t i = 0; i < d->n && ok; i++) {
        const block *b = &d->b[i];
        ok = html_block(out, b, i ? &d->b[i - 1] : NULL, i + 1 < d->n ? &d->b[i + 1] : NULL,
                        plots_dir, i);
        /* the contents go right after the title */
        if (ok && b->kind == BK_H && b->level == 1)
            ok = html_toc(out, d);
    }
    return ok;
}
