/*
 * report_int.h - pieces shared inside report/: the document model that
 * renders to Markdown and HTML, the plot writer, the JSON accessors and
 * the section builders. Not a public header.
 */
#ifndef MERGESCOPE_REPORT_INT_H
#define MERGESCOPE_REPORT_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "mergescope/report.h"

/* ==== the loaded results ==== */

typedef struct rp_input {
    ms_report_kind kind;
    char *label;  /* file name as given (untrusted: escape it) */
    cJSON *root;
} rp_input;

struct ms_report {
    rp_input *in;
    size_t n;
};

/* ==== JSON access: tolerant of missing fields and wrong types ==== */

const cJSON *rp_get(const cJSON *obj, const char *key);     /* NULL if absent */
const char *rp_str(const cJSON *obj, const char *key);      /* NULL unless a string */
bool rp_num(const cJSON *obj, const char *key, double *v);  /* false unless finite number */
const cJSON *rp_arr(const cJSON *obj, const char *key);     /* NULL unless an array */
const cJSON *rp_obj(const cJSON *obj, const char *key);     /* NULL unless an object */
/* A number's text for tables: "%.*f" or "n/a" when absent. */
const char *rp_fmt(char *buf, size_t cap, const cJSON *obj, const char *key, int prec);
/* A share as a percentage: "41.3%" or "n/a". */
const char *rp_pct(char *buf, size_t cap, const cJSON *obj, const char *key);

/* ==== the document: one tree, two renderings ==== */

typedef enum rp_style {
    RP_TEXT = 0, /* untrusted text: escaped in every output */
    RP_OURS,     /* text this program made (numbers, fixed words) */
    RP_CODE,     /* untrusted text shown as code (HTML <code>) */
    RP_BOLD      /* untrusted text in bold */
} rp_style;

typedef struct rp_doc rp_doc;

rp_doc *rp_doc_new(void);
void rp_doc_free(rp_doc *d);
bool rp_doc_failed(const rp_doc *d);    /* true once memory ran out */

void rp_h(rp_doc *d, int level, const char *text);     /* our heading text */
/* A paragraph (or list item, or note) is a run of spans. */
void rp_p(rp_doc *d);
void rp_li(rp_doc *d);
void rp_note(rp_doc *d);                 /* an aside: a TODO or a caveat */
void rp_span(rp_doc *d, rp_style st, const char *text);
void rp_spanf(rp_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A table: rp_table with the header cells (ours), then rp_cell and rp_row
 * per row. With header NULL the first ncols cells added are the header. */
void rp_table(rp_doc *d, size_t ncols, const char *const *header);
void rp_row(rp_doc *d);
void rp_cell(rp_doc *d, rp_style st, const char *text);
void rp_cellf(rp_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rp_code(rp_doc *d, const char *lang, const char *text);
/* A figure: plots/NAME.png with our caption. */
void rp_fig(rp_doc *d, const char *name, const char *caption);

/* Markdown: figures as links to plots/NAME.png. */
bool rp_render_md(const rp_doc *d, ms_sb *out);
/* HTML body content; figures read from plots_dir and embedded in base64,
 * or a note when the PNG is absent. */
bool rp_render_html(const rp_doc *d, const char *plots_dir, ms_sb *out);

/* ==== plots ==== */

typedef enum rp_plot_kind {
    RP_PLOT_STACKED,   /* rows = x categories, cols = stacked series */
    RP_PLOT_LINES,     /* rows = numeric x, cols = series */
    RP_PLOT_BARS,      /* rows = categories, cols = clustered series */
    RP_PLOT_HEATMAP,   /* square matrix, row and col labels */
    RP_PLOT_GROUPS     /* points: col 0 = x, col 1 = y, col 2 = group index */
} rp_plot_kind;

/* A table of numbers with labels; NaN marks a missing value. All label
 * strings are copies; untrusted ones are sanitised when written. */
typedef struct rp_plot {
    rp_plot_kind kind;
    char name[48];       /* file stem: ours */
    char title[128];     /* ours: fixed words and numbers only */
    const char *xlabel, *ylabel;  /* ours (static strings) */
    size_t nrow, ncol;
    char **row_label;    /* nrow */
    char **col_label;    /* ncol (series names; for GROUPS the group names) */
    double *v;           /* nrow * ncol */
    char **group;        /* GROUPS: the group names */
    size_t ngroup;
    bool y_percent;      /* values are fractions shown as % */
    bool y_log;
    bool has_yrange;
    double ymin, ymax;
} rp_plot;

typedef struct rp_plots {
    rp_plot **p;
    size_t n;
    bool oom;
} rp_plots;

/* A new plot of nrow x ncol values (all NaN) added to the set; NULL when
 * memory runs out. name is made unique by a suffix when taken. */
rp_plot *rp_plot_add(rp_plots *ps, rp_plot_kind kind, const char *name, size_t nrow,
                     size_t ncol);
void rp_plot_set_row(rp_plot *p, size_t i, const char *label);
void rp_plot_set_col(rp_plot *p, size_t j, const char *label);
/* GROUPS plots: the names of groups 0..n-1 (copied). */
void rp_plot_set_groups(rp_plot *p, const char *const *names, size_t n);
/* Whether a plot has at least one value to draw. */
bool rp_plot_has_data(const rp_plot *p);
/* Remove the plot added last (it turned out to have no data). */
void rp_plot_drop_last(rp_plots *ps);
void rp_plots_free(rp_plots *ps);
/* Write NAME.dat (and group files) and NAME.gp for every plot into dir. */
ms_status rp_plots_write(const rp_plots *ps, const char *dir, ms_error *err);
/* Run gnuplot on each script; fills the outcome counters. */
void rp_plots_render(const rp_plots *ps, const char *dir, const char *program,
                     ms_report_outcome *out);

/* ==== sections (sections.c) and the card (card.c) ==== */

typedef struct rp_ctx {
    const ms_report *r;
    rp_doc *doc;
    rp_plots *plots;
} rp_ctx;

void rp_section_overview(rp_ctx *c);
void rp_section_inspect(rp_ctx *c, const rp_input *in);
void rp_section_recipe(rp_ctx *c, const rp_input *in);
void rp_section_audit(rp_ctx *c, const rp_input *in);
void rp_section_compare(rp_ctx *c, const rp_input *in);
void rp_section_attribute(rp_ctx *c, const rp_input *in);
void rp_section_provenance(rp_ctx *c, const rp_input *in);
void rp_section_quant(rp_ctx *c, const rp_input *in);

/* Whether two model references name the same model: equal, or one a path
 * ending in "/" + the other (a NAME and where --models-dir found it). */
bool rp_same_model(const char *a, const char *b);
/* The first result of a kind, or NULL. */
const rp_input *rp_first(const ms_report *r, ms_report_kind kind);
/* A plain-words explanation of a merge method; NULL when unknown. */
const char *rp_method_words(const char *method);
/* The "pretty" name of a merge method, or NULL. */
const char *rp_method_name(const char *method);

/* The model card: front matter and Markdown, into out. */
bool rp_card_build(const ms_report *r, ms_sb *out);

#endif
