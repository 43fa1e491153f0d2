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

typedef struct ms_rp_input {
    ms_report_kind kind;
    char *label;  /* file name as given (untrusted: escape it) */
    cJSON *root;
} ms_rp_input;

struct ms_report {
    ms_rp_input *in;
    size_t n;
};

/* ==== JSON access: tolerant of missing fields and wrong types ==== */

const cJSON *ms_rp_get(const cJSON *obj, const char *key);     /* NULL if absent */
const char *ms_rp_str(const cJSON *obj, const char *key);      /* NULL unless a string */
bool ms_rp_num(const cJSON *obj, const char *key, double *v);  /* false unless finite number */
const cJSON *ms_rp_arr(const cJSON *obj, const char *key);     /* NULL unless an array */
const cJSON *ms_rp_obj(const cJSON *obj, const char *key);     /* NULL unless an object */
/* A number's text for tables: "%.*f" or "n/a" when absent. */
const char *ms_rp_fmt(char *buf, size_t cap, const cJSON *obj, const char *key, int prec);
/* A share as a percentage: "41.3%" or "n/a". */
const char *ms_rp_pct(char *buf, size_t cap, const cJSON *obj, const char *key);

/* ==== the document: one tree, two renderings ==== */

typedef enum ms_rp_style {
    RP_TEXT = 0, /* untrusted text: escaped in every output */
    RP_OURS,     /* text this program made (numbers, fixed words) */
    RP_CODE,     /* untrusted text shown as code (HTML <code>) */
    RP_BOLD      /* untrusted text in bold */
} ms_rp_style;

typedef struct ms_rp_doc ms_rp_doc;

ms_rp_doc *ms_rp_doc_new(void);
void ms_rp_doc_free(ms_rp_doc *d);
bool ms_rp_doc_failed(const ms_rp_doc *d);    /* true once memory ran out */

void ms_rp_h(ms_rp_doc *d, int level, const char *text);     /* our heading text */
/* A paragraph (or list item, or note) is a run of spans. */
void ms_rp_p(ms_rp_doc *d);
void ms_rp_li(ms_rp_doc *d);
void ms_rp_note(ms_rp_doc *d);                 /* an aside: a TODO or a caveat */
void ms_rp_span(ms_rp_doc *d, ms_rp_style st, const char *text);
void ms_rp_spanf(ms_rp_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A table: ms_rp_table with the header cells (ours), then ms_rp_cell and ms_rp_row
 * per row. With header NULL the first ncols cells added are the header. */
void ms_rp_table(ms_rp_doc *d, size_t ncols, const char *const *header);
void ms_rp_row(ms_rp_doc *d);
void ms_rp_cell(ms_rp_doc *d, ms_rp_style st, const char *text);
void ms_rp_cellf(ms_rp_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ms_rp_code(ms_rp_doc *d, const char *lang, const char *text);
/* A figure: plots/NAME.png with our caption. */
void ms_rp_fig(ms_rp_doc *d, const char *name, const char *caption);

/* Markdown: figures as links to plots/NAME.png. */
bool ms_rp_render_md(const ms_rp_doc *d, ms_sb *out);
/* HTML body content; figures read from plots_dir and embedded in base64,
 * or a note when the PNG is absent. */
bool ms_rp_render_html(const ms_rp_doc *d, const char *plots_dir, ms_sb *out);

/* ==== plots ==== */

typedef enum ms_rp_plot_kind {
    RP_PLOT_STACKED,   /* rows = x categories, cols = stacked series */
    RP_PLOT_LINES,     /* rows = numeric x, cols = series */
    RP_PLOT_BARS,      /* rows = categories, cols = clustered series */
    RP_PLOT_HEATMAP,   /* square matrix, row and col labels */
    RP_PLOT_GROUPS     /* points: col 0 = x, col 1 = y, col 2 = group index */
} ms_rp_plot_kind;

/* A table of numbers with labels; NaN marks a missing value. All label
 * strings are copies; untrusted ones are sanitised when written. */
typedef struct ms_rp_plot {
    ms_rp_plot_kind kind;
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
} ms_rp_plot;

typedef struct ms_rp_plots {
    ms_rp_plot **p;
    size_t n;
    bool oom;
} ms_rp_plots;

/* A new plot of nrow x ncol values (all NaN) added to the set; NULL when
 * memory runs out. name is made unique by a suffix when taken. */
ms_rp_plot *ms_rp_plot_add(ms_rp_plots *ps, ms_rp_plot_kind kind, const char *name, size_t nrow,
                     size_t ncol);
void ms_rp_plot_set_row(ms_rp_plot *p, size_t i, const char *label);
void ms_rp_plot_set_col(ms_rp_plot *p, size_t j, const char *label);
/* GROUPS plots: the names of groups 0..n-1 (copied). */
void ms_rp_plot_set_groups(ms_rp_plot *p, const char *const *names, size_t n);
/* Whether a plot has at least one value to draw. */
bool ms_rp_plot_has_data(const ms_rp_plot *p);
/* Remove the plot added last (it turned out to have no data). */
void ms_rp_plot_drop_last(ms_rp_plots *ps);
void ms_rp_plots_free(ms_rp_plots *ps);
/* Write NAME.dat (and group files) and NAME.gp for every plot into dir. */
ms_status ms_rp_plots_write(const ms_rp_plots *ps, const char *dir, ms_error *err);
/* Run gnuplot on each script; fills the outcome counters. */
void ms_rp_plots_render(const ms_rp_plots *ps, const char *dir, const char *program,
                     ms_report_outcome *out);

/* ==== sections (sections.c) and the card (card.c) ==== */

typedef struct ms_rp_ctx {
    const ms_report *r;
    ms_rp_doc *doc;
    ms_rp_plots *plots;
} ms_rp_ctx;

void ms_rp_section_overview(ms_rp_ctx *c);
void ms_rp_section_inspect(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_recipe(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_audit(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_compare(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_attribute(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_provenance(ms_rp_ctx *c, const ms_rp_input *in);
void ms_rp_section_quant(ms_rp_ctx *c, const ms_rp_input *in);

/* Whether two model references name the same model: equal, or one a path
 * ending in "/" + the other (a NAME and where --models-dir found it). */
bool ms_rp_same_model(const char *a, const char *b);
/* The first result of a kind, or NULL. */
const ms_rp_input *ms_rp_first(const ms_report *r, ms_report_kind kind);
/* A plain-words explanation of a merge method; NULL when unknown. */
const char *ms_rp_method_words(const char *method);
/* The "pretty" name of a merge method, or NULL. */
const char *ms_rp_method_name(const char *method);

/* The first `recipe explain` result (not `recipe check`), or NULL. */
const cJSON *ms_rp_explain(const ms_report *r);
/* The range of a resolved parameter over a model's rows (filter NULL: all
 * filter classes) of recipe explain layers[]; false when it has none. */
bool ms_rp_param_range(const cJSON *layers, const char *model, const char *filter,
                       const char *param, double *lo, double *hi);
/* A table cell: that range as "0.5" or "0.2 to 0.4", or "n/a". */
void ms_rp_cell_param(ms_rp_doc *d, const cJSON *explain, const char *model, const char *param);
/* The recipe's own text when a result carries it (a string with lines
 * under recipe_text, yaml, text, source or recipe), else NULL. */
const char *ms_rp_recipe_text(const cJSON *root);
/* A mergekit YAML rebuilt from `recipe explain` JSON (recipe_yaml.c);
 * false when the result does not allow it. */
bool ms_rp_recipe_yaml(const cJSON *root, ms_sb *o);
/* "Q5_K 12%, IQ4_NL 40%" from quant or inspect types[]; markdown escapes
 * the type names. */
bool ms_rp_type_mix(const cJSON *types, ms_sb *out, bool markdown);

/* The card's layer-wise findings as a report section (card.c). */
void ms_rp_findings(ms_rp_doc *d, const ms_report *r);
/* The model card: front matter and Markdown, into out. */
bool ms_rp_card_build(const ms_report *r, ms_sb *out);

#endif
