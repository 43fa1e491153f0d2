/*
 * recipe.h - mergekit recipes: read (libyaml), plan, resolve parameters per
 * tensor, and write back with chosen parameters changed.
 *
 * Semantics follow ../shared/research/mergekit-facts.md (mergekit a6e40288)
 * and ../shared/bench/ref_merge.py (evaluate_setting, plan):
 *
 * - Plain scalars are resolved as PyYAML (YAML 1.1) does; parameter values
 *   are then coerced as pydantic does (booleans -> 1/0, numeric strings ->
 *   numbers; text and null are errors).
 * - A parameter setting is a number, a gradient (list of numbers), or a list
 *   of {filter, value} conditions (first whose filter is absent, "*", empty
 *   or a substring of the tensor name wins; no match = unset).
 * - Lookup: the model's own source entry (per-model parameters only), the
 *   slice, the module, the top level, then the method default. Per-model
 *   parameters are matched against the INPUT tensor name (source layer),
 *   global ones against the OUTPUT name.
 * - Gradient position t = i/(L-1) for layer i of a slice of L layers (t = 1
 *   for a one-layer slice); t = 0 for tensors outside layers (embeddings use
 *   the first slice, final norm / lm_head the last slice).
 *
 * A file may hold several YAML documents (mergekit-multi): each is a stage;
 * a model reference equal to an earlier stage's `name` refers to that stage.
 *
 * Ownership: an ms_recipe owns every string, array and nested struct it
 * points to; ms_recipe_free releases all of it. A plan is owned by its
 * caller (ms_recipe_plan_free) and borrows from the recipe it was built
 * from (the recipe must outlive it). Lines and columns are 1-based.
 *
 * Return convention: ms_status (MS_OK = 0); on failure err holds the file,
 * line and column and what was expected. Bad recipes are MS_ERR_FORMAT.
 */
#ifndef MERGESCOPE_RECIPE_H
#define MERGESCOPE_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

#include "mergescope/error.h"

/* Bounds against hostile YAML: file size, nesting depth, the number of
 * nodes in the file, and of nodes visited with aliases expanded (billion
 * laughs) in one document. */
#define MS_RECIPE_MAX_BYTES (16u << 20)
#define MS_RECIPE_MAX_DEPTH 64
#define MS_RECIPE_MAX_NODES 100000

/* "no such index" for size_t indices below. */
#define MS_RECIPE_NONE ((size_t)-1)

/* ------------------------------------------------------------ methods */

typedef enum ms_merge_method {
    MS_METHOD_LINEAR, MS_METHOD_SLERP, MS_METHOD_NUSLERP, MS_METHOD_PASSTHROUGH,
    MS_METHOD_MODEL_STOCK, MS_METHOD_ARCEE_FUSION, MS_METHOD_KARCHER,
    MS_METHOD_TASK_ARITHMETIC, MS_METHOD_TIES, MS_METHOD_DARE_TIES,
    MS_METHOD_DARE_LINEAR, MS_METHOD_BREADCRUMBS, MS_METHOD_BREADCRUMBS_TIES,
    MS_METHOD_DELLA, MS_METHOD_DELLA_LINEAR, MS_METHOD_MULTISLERP,
    MS_METHOD_NEARSWAP, MS_METHOD_SCE, MS_METHOD_RAM, MS_METHOD_RAMPLUS_TL,
    MS_METHOD_COUNT,
    MS_METHOD_UNKNOWN = MS_METHOD_COUNT
} ms_merge_method;

/* "linear", ...; NULL for MS_METHOD_UNKNOWN. */
const char *ms_method_name(ms_merge_method m);
/* The method named name, or MS_METHOD_UNKNOWN. */
ms_merge_method ms_method_from_name(const char *name);
/* True for the task-vector family (task_arithmetic, ties, dare_*,
 * breadcrumbs*, della*). */
bool ms_method_is_gta(ms_merge_method m);
/* True when the method needs base_model (GTA, slerp, nearswap, sce,
 * model_stock, arcee_fusion, ram*). */
bool ms_method_needs_base(ms_merge_method m);

/* ------------------------------------------------------------ parameters */

/* Every parameter any method reads. */
typedef enum ms_param {
    MS_PARAM_WEIGHT, MS_PARAM_DENSITY, MS_PARAM_EPSILON, MS_PARAM_GAMMA,
    MS_PARAM_LAMBDA, MS_PARAM_T, MS_PARAM_NORMALIZE, MS_PARAM_RESCALE,
    MS_PARAM_INT8_MASK, MS_PARAM_SELECT_TOPK, MS_PARAM_SCALE,
    MS_PARAM_FILTER_WISE, MS_PARAM_NUSLERP_FLATTEN, MS_PARAM_NUSLERP_ROW_WISE,
    MS_PARAM_NORMALIZE_WEIGHTS, MS_PARAM_EPS, MS_PARAM_MAX_ITER, MS_PARAM_TOL,
    MS_PARAM_R, MS_PARAM_ALPHA,
    MS_PARAM_COUNT,
    MS_PARAM_UNKNOWN = MS_PARAM_COUNT
} ms_param;

const char *ms_param_name(ms_param p);     /* "weight", ... */
ms_param ms_param_from_name(const char *name);

/* How a method uses a parameter. */
typedef enum ms_param_scope {
    MS_SCOPE_UNUSED = 0, /* the method ignores it */
    MS_SCOPE_GLOBAL,     /* slice / module / top level only */
    MS_SCOPE_MODEL       /* per model, falling back to slice / top level */
} ms_param_scope;

typedef struct ms_param_def {
    ms_param_scope scope;
    bool required;      /* no default: missing is an error */
    bool has_default;
    double default_value;
} ms_param_def;

/* The definition of parameter p for method m (scope UNUSED if unused). */
ms_param_def ms_method_param(ms_merge_method m, ms_param p);

/* ------------------------------------------------------------ the model */

/* A number or a gradient. n >= 1; is_list keeps "[x]" apart from "x" so
 * the writer can keep the form. */
typedef struct ms_recipe_value {
    double *v;
    size_t n;
    bool is_list;
    int line, col;
    int *elem_line, *elem_col; /* per entry when is_list, else NULL */
} ms_recipe_value;

typedef struct ms_recipe_cond {
    char *filter;          /* NULL when the entry has no filter */
    ms_recipe_value value;
    int line, col;         /* of the list entry */
} ms_recipe_cond;

/* One `name: setting` entry of a parameters mapping. */
typedef struct ms_recipe_setting {
    char *name;
    ms_param param;        /* MS_PARAM_UNKNOWN for names no method reads */
    bool conditional;      /* list of conditions (conds) or a value */
    ms_recipe_value value; /* when !conditional */
    ms_recipe_cond *conds; /* when conditional */
    size_t n_conds;
    int line, col;         /* of the key */
} ms_recipe_setting;

typedef struct ms_recipe_paramset {
    ms_recipe_setting *items;
    size_t n;
} ms_recipe_paramset;

/* A model referenced anywhere in a stage (deduplicated by ref). */
typedef struct ms_recipe_model {
    char *ref;       /* canonical text: path[@revision][+lora] */
    char *path;      /* the path / repo id part */
    char *revision;  /* NULL if none */
    char *lora;      /* NULL if none */
    size_t stage;    /* an earlier stage this name refers to, or NONE */
    int line, col;   /* first mention */
} ms_recipe_model;

typedef struct ms_recipe_source {
    size_t model;          /* index into stage->models */
    bool has_range;
    int layer_start;       /* [start, end) when has_range */
    int layer_end;
    ms_recipe_paramset params;
    int line, col;
} ms_recipe_source;

typedef struct ms_recipe_slice {
    ms_recipe_source *sources;
    size_t n_sources;
    size_t base_model;     /* slice-level base_model override, or NONE */
    ms_recipe_paramset params;
    int line, col;
} ms_recipe_slice;

/*
 * A module (mergekit `modules:`). Top-level models:/slices: form one module
 * named "default". With models: syntax (models_syntax) the module has one
 * slice whose sources have no range; the base is NOT added to it here (the
 * plan adds it).
 */
typedef struct ms_recipe_module {
    char *name;
    bool models_syntax;
    ms_recipe_slice *slices;
    size_t n_slices;
    ms_recipe_paramset params; /* module-level parameters (empty for default) */
    int line, col;
} ms_recipe_module;

/* A key mergekit ignores, kept for warnings (and kept by the writer). */
typedef struct ms_recipe_unknown {
    char *where;     /* e.g. "slices[0].sources[1].revision" */
    int line, col;
} ms_recipe_unknown;

typedef struct ms_recipe_stage {
    char *name;                 /* `name:` or NULL */
    char *method_name;          /* merge_method as written */
    ms_merge_method method;
    size_t base_model;          /* index into models, or NONE */
    ms_recipe_model *models;
    size_t n_models;
    ms_recipe_module *modules;
    size_t n_modules;
    ms_recipe_paramset params;  /* top-level parameters */
    char *dtype, *out_dtype;    /* NULL when absent */
    char *tokenizer_source;     /* NULL when absent */
    bool has_tokenizer;         /* a `tokenizer:` block */
    char *chat_template;        /* NULL when absent */
    ms_recipe_unknown *unknown;
    size_t n_unknown;
    int line, col;              /* document start */
} ms_recipe_stage;

typedef struct ms_recipe_warning {
    char *msg;       /* lowercase, no full stop */
    int line, col;   /* 0 when not tied to a place */
} ms_recipe_warning;

struct ms_recipe_doc; /* private: the YAML node trees, for the writer */

typedef struct ms_recipe {
    char *path;                 /* label used in messages */
    ms_recipe_stage *stages;    /* >= 1 */
    size_t n_stages;
    ms_recipe_warning *warnings; /* silently ignored things mergekit accepts */
    size_t n_warnings;
    struct ms_recipe_doc *doc;
} ms_recipe;

/*
 * Read and validate a recipe file (at most MS_RECIPE_MAX_BYTES). Validation
 * covers the schema, method names, required parameters, value ranges per
 * method, input counts and layer ranges that can be checked without the
 * models. *out is caller-owned (ms_recipe_free).
 */
ms_status ms_recipe_load(const char *path, ms_recipe **out, ms_error *err);
/* The same from memory; label names the text in messages. */
ms_status ms_recipe_parse(const char *text, size_t len, const char *label,
                          ms_recipe **out, ms_error *err);
void ms_recipe_free(ms_recipe *r);

/* The stage called name, or NONE. */
size_t ms_recipe_find_stage(const ms_recipe *r, const char *name);
/* The model whose ref (or path) is name in stage st, or NONE. */
size_t ms_recipe_find_model(const ms_recipe_stage *st, const char *name);

/* ------------------------------------------------------------ the plan */

typedef struct ms_recipe_input {
    size_t model;    /* index into stage->models */
    int in_layer;    /* the source layer (-1 for pre/post tensors) */
    size_t source;   /* first source entry of this model in the slice, or
                        NONE for a base added by the planner */
} ms_recipe_input;

typedef struct ms_recipe_plan_layer {
    int out_layer;
    size_t slice;
    int index;       /* offset within the slice */
    int slice_len;
    double t;        /* gradient position */
    ms_recipe_input *inputs;  /* duplicates collapsed, source order */
    size_t n_inputs;
} ms_recipe_plan_layer;

typedef struct ms_recipe_plan_slice {
    int out_start, out_end;   /* [start, end) output layers */
    size_t base_model;        /* effective base (slice or top), or NONE */
    bool has_duplicates;      /* a model is listed more than once */
} ms_recipe_plan_slice;

typedef struct ms_recipe_plan {
    const ms_recipe_stage *stage;
    size_t module;
    int n_layers;                 /* output layers */
    ms_recipe_plan_layer *layers; /* n_layers */
    ms_recipe_plan_slice *slices; /* one per module slice */
    size_t n_slices;
    ms_recipe_plan_layer pre;     /* embeddings: first slice, t = 0 */
    ms_recipe_plan_layer post;    /* final norm, lm_head: last slice, t = 0 */
} ms_recipe_plan;

/*
 * Build the plan of one module of a stage. n_layers is the input models'
 * layer count, needed only for models: syntax (pass 0 otherwise; 0 with
 * models: syntax is MS_ERR_USAGE "layer count needed"). *out caller-owned.
 */
ms_status ms_recipe_plan_build(const ms_recipe_stage *st, size_t module,
                               int n_layers, ms_recipe_plan **out,
                               ms_error *err);
void ms_recipe_plan_free(ms_recipe_plan *p);

/*
 * The plan row of a tensor: out_layer >= 0 gives that layer; -1 gives pre
 * (names containing "embed", "wte" or "wpe") or post (anything else).
 * NULL when out_layer is out of range.
 */
const ms_recipe_plan_layer *ms_recipe_plan_row(const ms_recipe_plan *p,
                                               const char *tensor,
                                               int out_layer);

/* ------------------------------------------------------------ resolution */

typedef enum ms_param_origin {
    MS_ORIGIN_UNSET = 0, MS_ORIGIN_MODEL, MS_ORIGIN_SLICE, MS_ORIGIN_MODULE,
    MS_ORIGIN_TOP, MS_ORIGIN_DEFAULT
} ms_param_origin;

/* Effective values for one (tensor, model). A parameter is present when
 * origin[p] != MS_ORIGIN_UNSET; line/col name the setting it came from
 * (0 for defaults). Booleans are 1.0 / 0.0. */
typedef struct ms_recipe_params {
    double value[MS_PARAM_COUNT];
    unsigned char origin[MS_PARAM_COUNT]; /* ms_param_origin */
    int line[MS_PARAM_COUNT], col[MS_PARAM_COUNT];
    double t;          /* gradient position used */
    bool is_base;      /* the model is the row's base model */
} ms_recipe_params;

static inline bool ms_params_has(const ms_recipe_params *p, ms_param k)
{
    return p->origin[k] != MS_ORIGIN_UNSET;
}

/*
 * Resolve every parameter that `method` defines (pass the stage's method,
 * or another to simulate it) for output tensor `tensor` (canonical HF name)
 * at out_layer (-1 for non-layer tensors), for input `model` (index into
 * stage->models; NONE resolves the global parameters only). Per-model
 * parameters use the input tensor name (the layer index replaced by the
 * source layer). A required parameter with no value is MS_ERR_FORMAT
 * ("missing required parameter weight for MODEL at TENSOR") except for
 * the base of a GTA method. A model that is not an input of that row is
 * MS_ERR_USAGE.
 */
ms_status ms_recipe_resolve(const ms_recipe_plan *p, ms_merge_method method,
                            const char *tensor, int out_layer, size_t model,
                            ms_recipe_params *out, ms_error *err);

/*
 * Evaluate one setting as mergekit does for tensor name at position t.
 * Returns false when the setting yields nothing (no filter matched).
 */
bool ms_recipe_setting_eval(const ms_recipe_setting *s, const char *tensor,
                            double t, double *value);

/* ------------------------------------------------------------ writing */

/*
 * One change: set parameter `param` of `model` (a model ref or path as in
 * the recipe; NULL = the top-level parameters) in stage `stage`. With
 * models: syntax the model's entry is changed; with slices, every source
 * entry of that model. filter NULL replaces the whole setting; otherwise
 * only the value of the condition with that filter (added before the
 * unfiltered fallback if missing, turning a plain value into a condition
 * list when needed). n_values == 1 writes a number, more a gradient list.
 */
typedef struct ms_recipe_change {
    size_t stage;
    const char *model;
    const char *param;
    const char *filter;
    const double *values;
    size_t n_values;
} ms_recipe_change;

/*
 * Render the recipe with the changes applied through libyaml's emitter:
 * same structure, key order and scalar styles as the input, aliases
 * expanded, comments lost except header_comment (may be NULL or several
 * lines), written as "# " lines on top. *text is caller-freed. A change
 * naming an unknown stage, model or parameter is MS_ERR_USAGE.
 */
ms_status ms_recipe_emit(const ms_recipe *r, const ms_recipe_change *changes,
                         size_t n_changes, const char *header_comment,
                         char **text, size_t *len, ms_error *err);
/* The same, written atomically to path ("-" = stdout). */
ms_status ms_recipe_write(const ms_recipe *r, const ms_recipe_change *changes,
                          size_t n_changes, const char *header_comment,
                          const char *path, ms_error *err);

#endif
