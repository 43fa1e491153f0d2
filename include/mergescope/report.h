/*
 * report.h - the `report` module: JSON results of the other commands in,
 * a Markdown report, a self-contained HTML report, gnuplot plots and a
 * model-card draft out. It opens no model; it reads only the JSON written
 * by inspect, recipe explain, audit, compare, attribute, provenance and
 * quant ("schema": "mergescope.<command>/1").
 *
 * Everything read from a result (tensor names, model names, GGUF metadata,
 * recipe text) is untrusted. Every string that reaches an output goes
 * through one of the escapers below; nothing from an input reaches a
 * gnuplot script (labels are sanitised and passed in data files).
 *
 * Return convention: ms_status functions fill err on failure; bool
 * functions return false only when memory runs out.
 */
#ifndef MERGESCOPE_REPORT_H
#define MERGESCOPE_REPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "mergescope/error.h"
#include "mergescope/util.h"

struct cJSON;

/* The kinds of result a report reads, one per schema. */
typedef enum ms_report_kind {
    MS_RK_INSPECT = 0,
    MS_RK_RECIPE,
    MS_RK_AUDIT,
    MS_RK_COMPARE,
    MS_RK_ATTRIBUTE,
    MS_RK_PROVENANCE,
    MS_RK_QUANT,
    MS_RK_COUNT
} ms_report_kind;

/* The largest result file report reads (bytes). */
#define MS_REPORT_MAX_INPUT (512ull << 20)

typedef struct ms_report ms_report; /* opaque: the loaded results */

/* An empty report; NULL when memory runs out. Free with ms_report_free. */
ms_report *ms_report_new(void);
void ms_report_free(ms_report *r);

/*
 * Read and validate one result file. A file that is not JSON, or whose
 * "schema" is not one of ours, is MS_ERR_FORMAT naming path. Results of the
 * same kind may be added more than once (e.g. two quantizations); they are
 * reported in the order added.
 */
ms_status ms_report_add_file(ms_report *r, const char *path, ms_error *err);
/* The same for text already in memory; label names it in errors and in
 * the report. */
ms_status ms_report_add_text(ms_report *r, const char *label, const char *text,
                             size_t len, ms_error *err);
/* How many results of a kind were added. */
size_t ms_report_count(const ms_report *r, ms_report_kind kind);
/* The schema command name of a kind ("audit", ...). */
const char *ms_report_kind_name(ms_report_kind kind);

typedef struct ms_report_opts {
    const char *gnuplot; /* program looked up on PATH; NULL = "gnuplot" */
} ms_report_opts;

typedef struct ms_report_outcome {
    int n_plots;         /* plot scripts written to DIR/plots */
    int n_rendered;      /* of those, rendered to PNG and SVG */
    bool gnuplot_missing; /* the program was not found: scripts left to run */
    bool gnuplot_failed; /* it ran but a plot failed; see failed_plot */
    char failed_plot[64];
} ms_report_outcome;

/*
 * Write DIR/report.md, DIR/report.html, DIR/MODEL_CARD.md and
 * DIR/plots/ (NAME.dat data, NAME.gp script, NAME.png and NAME.svg when
 * gnuplot is available). dir is created if missing. Every file is written
 * atomically. gnuplot is run without a shell, in DIR/plots, with the
 * script on its standard input. A missing or failing gnuplot is not an
 * error: out says so and the reports are written without the images.
 */
ms_status ms_report_write(const ms_report *r, const char *dir, const ms_report_opts *opts,
                          ms_report_outcome *out, ms_error *err);

/* ---- escaping (escape.c). Each appends to sb. Invalid UTF-8 becomes
 * U+FFFD; control characters become their visible U+24xx pictures. */

/* Text for HTML element content or a quoted attribute value. */
bool ms_esc_html(ms_sb *sb, const char *s);
/* Inline Markdown text (paragraphs, list items, table cells): every
 * character with a Markdown or HTML meaning is backslash-escaped, so the
 * text can neither format, link, start a block nor break a table row. */
bool ms_esc_md(ms_sb *sb, const char *s);
/* A YAML double-quoted scalar, quotes included. */
bool ms_esc_yaml(ms_sb *sb, const char *s);
/*
 * Text for a fenced code block: control characters other than newline and
 * tab made visible, invalid UTF-8 replaced. Returns the backtick fence
 * length to use (longer than any backtick run in s, at least 3), or 0 when
 * memory runs out.
 */
size_t ms_esc_code_block(ms_sb *sb, const char *s);
/*
 * A label safe for gnuplot data files: only [A-Za-z0-9._/-] kept, any
 * other byte run replaced by one '_', at most cap-1 bytes, never empty
 * ("_" then). dst is always NUL-terminated.
 */
void ms_esc_gnuplot(char *dst, size_t cap, const char *s);

#endif
