/*
 * recipe_int.h - private to lib/recipe*.c: the YAML node trees a recipe is
 * read from and written back from.
 *
 * The trees are built from libyaml's event stream (not yaml_parser_load) so
 * that nesting depth, node counts and alias expansion are bounded while
 * reading, and a recursive alias is an error instead of a cycle. Aliases
 * are stored as references to the anchored node (no copies); `expanded`
 * counts what a full expansion would visit.
 */
#ifndef MERGESCOPE_RECIPE_INT_H
#define MERGESCOPE_RECIPE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "mergescope/error.h"
#include "mergescope/recipe.h"

typedef enum ms_ytype { MS_Y_SCALAR, MS_Y_SEQ, MS_Y_MAP } ms_ytype;

/* How a plain scalar resolves under YAML 1.1 (PyYAML's implicit rules);
 * quoted or block scalars are always strings. */
typedef enum ms_yscalar {
    MS_YS_NULL, MS_YS_BOOL, MS_YS_INT, MS_YS_FLOAT, MS_YS_STR
} ms_yscalar;

typedef struct ms_ynode {
    ms_ytype type;
    int line, col;      /* 1-based start */
    /* scalars */
    char *text;         /* NUL-terminated (embedded NULs rejected) */
    size_t len;
    int style;          /* yaml_scalar_style_t */
    ms_yscalar kind;
    double num;         /* for BOOL (1/0), INT, FLOAT */
    /* collections: child node indices; for maps key, value, key, value... */
    size_t *items;
    size_t n_items, cap_items;
    int flow;           /* flow style collection */
    size_t expanded;    /* nodes visited by a full alias expansion */
} ms_ynode;

typedef struct ms_ydoc {
    ms_ynode *nodes;
    size_t n_nodes, cap_nodes;
    size_t root;        /* MS_RECIPE_NONE for an empty document */
    int line, col;
} ms_ydoc;

struct ms_recipe_doc {
    ms_ydoc *docs;
    size_t n_docs;
};

/* Parse all documents of text. *out caller-owned (ms_ydoc_free). */
ms_status ms_yaml_read(const char *text, size_t len, const char *label,
                       struct ms_recipe_doc **out, ms_error *err);
void ms_yaml_free(struct ms_recipe_doc *d);

/* A key/value pair of a mapping after `<<` merge keys are applied. */
typedef struct ms_ypair {
    const ms_ynode *key, *value;
} ms_ypair;

/*
 * The entries of mapping node m with merge keys resolved as PyYAML does
 * (explicit keys win over merged ones, earlier merged maps over later,
 * the last duplicate key wins but keeps its first position). *pairs is
 * caller-freed. Non-scalar keys are an error.
 */
ms_status ms_ymap_pairs(const ms_ydoc *d, const ms_ynode *m, const char *label,
                        ms_ypair **pairs, size_t *n, ms_error *err);

static inline const ms_ynode *ms_ychild(const ms_ydoc *d, const ms_ynode *n,
                                        size_t i)
{
    return &d->nodes[n->items[i]];
}

/* Resolve a plain scalar's text as YAML 1.1 does; *num set for numbers
 * and booleans. */
ms_yscalar ms_yaml_resolve_plain(const char *s, size_t len, double *num);

/* Parse text as a number the way pydantic's lax float does; false if it
 * is not one. */
bool ms_yaml_parse_number(const char *s, double *out);

/* Append a warning to r; MS_ERR_NOMEM when memory runs out. */
ms_status ms_recipe_warn(ms_recipe *r, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The method-level checks of stage index (recipe_check.c). */
ms_status ms_recipe_check_stage(ms_recipe *r, size_t index, ms_error *err);

#endif
