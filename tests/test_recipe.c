/*
 * test_recipe.c - the recipe module and `mergescope recipe`.
 *
 * Expected values come from outside mergescope: the verdict column of the
 * shared corpus READMEs, gradient values worked out by hand from mergekit's
 * rule, ../shared/bench/ref_merge.py's planner (run through
 * tests/recipe_ref.py with /usr/bin/python3), layer counts stated in the
 * corpus README, and YAML 1.1 facts (PyYAML's resolver rules).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "testutil.h"

/* ================================================================ helpers */

static ms_recipe *parse_ok(const char *text)
{
    ms_recipe *r = NULL;
    ms_error err;
    char msg[2048];
    ms_error_clear(&err);
    ms_status st = ms_recipe_parse(text, strlen(text), "t.yml", &r, &err);
    ms_error_format(&err, msg, sizeof(msg));
    cr_assert_eq(st, MS_OK, "expected a valid recipe, got: %s", msg);
    return r;
}

/* Parse text expecting MS_ERR_FORMAT at line (any line when 0) and col
 * (when > 0) with a message containing want. */
static void parse_bad(const char *text, int line, int col, const char *want)
{
    ms_recipe *r = NULL;
    ms_error err;
    char msg[2048];
    ms_error_clear(&err);
    ms_status st = ms_recipe_parse(text, strlen(text), "t.yml", &r, &err);
    ms_error_format(&err, msg, sizeof(msg));
    cr_assert_eq(st, MS_ERR_FORMAT, "expected a format error, got %d: %s", st, msg);
    cr_assert_null(r);
    if (line > 0)
        cr_assert_eq(err.line, line, "line %d, wanted %d: %s", err.line, line, msg);
    else
        cr_assert_gt(err.line, 0, "no line: %s", msg);
    if (col > 0)
        cr_assert_eq(err.col, col, "col %d, wanted %d: %s", err.col, col, msg);
    cr_assert(strstr(msg, want), "message '%s' lacks '%s'", msg, want);
    cr_assert(strncmp(msg, "t.yml:", 6) == 0, "message '%s' does not start with the file", msg);
}

static ms_recipe_plan *plan_of(const ms_recipe *r, size_t stage, int n_layers)
{
    ms_recipe_plan *p = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_plan_build(&r->stages[stage], 0, n_layers, &p, &err), MS_OK,
                 "plan: %s", err.msg);
    return p;
}

static double resolve1(const ms_recipe_plan *p, const char *tensor, int layer,
                       const char *model, ms_param k)
{
    ms_recipe_params out;
    ms_error err;
    ms_error_clear(&err);
    size_t m = model ? ms_recipe_find_model(p->stage, model) : MS_RECIPE_NONE;
    if (model)
        cr_assert_neq(m, MS_RECIPE_NONE, "no model %s", model);
    cr_assert_eq(ms_recipe_resolve(p, p->stage->method, tensor, layer, m, &out, &err), MS_OK,
                 "resolve %s: %s", tensor, err.msg);
    cr_assert(ms_params_has(&out, k), "%s unset for %s", ms_param_name(k), tensor);
    return out.value[k];
}

/* ================================================================ corpus */

/*
 * Walk a corpus README's verdict table: each row "| `FILE` | ... |" is one
 * recipe; it is invalid when the row says **rejected**. Returns the number
 * of rows checked.
 */
static int walk_readme(const char *dir)
{
    char *readme_path = ms_path_join(dir, "README.md");
    char *text = NULL;
    size_t len;
    ms_error err;
    int n = 0;
    ms_error_clear(&err);
    cr_assert_eq(ms_read_file(readme_path, 1 << 20, &text, &len, &err), MS_OK);
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (strncmp(line, "| `", 3) == 0) {
            char *end = strchr(line + 3, '`');
            cr_assert_not_null(end);
            *end = '\0';
            bool invalid = strstr(end + 1, "**rejected**") != NULL;
            char *path = ms_path_join(dir, line + 3);
            ms_recipe *r = NULL;
            char msg[2048];
            ms_error_clear(&err);
            ms_status st = ms_recipe_load(path, &r, &err);
            ms_error_format(&err, msg, sizeof(msg));
            if (invalid) {
                cr_expect_eq(st, MS_ERR_FORMAT, "%s should be rejected", path);
                cr_expect_gt(err.line, 0, "%s: rejection without a line: %s", path, msg);
            } else {
                cr_expect_eq(st, MS_OK, "%s should be valid: %s", path, msg);
            }
            ms_recipe_free(r);
            free(path);
            n++;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    free(readme_path);
    return n;
}

Test(recipe, corpus_real)
{
    char *dir = ms_test_shared("recipes/real");
    if (!dir)
        cr_skip_test("../shared/fixtures/recipes is absent");
    /* the README lists 38 recipes */
    cr_assert_eq(walk_readme(dir), 38);
    free(dir);
}

Test(recipe, corpus_mergekit_examples)
{
    char *dir = ms_test_shared("recipes/mergekit-examples");
    if (!dir)
        cr_skip_test("../shared/fixtures/recipes is absent");
    /* 9 top-level files and 10 under history/ */
    cr_assert_eq(walk_readme(dir), 19);
    free(dir);
}

/* The corpus README names what mergekit silently ignores; check and explain
 * must say so (with the line). */
Test(recipe, corpus_warnings)
{
    static const struct {
        const char *file, *want;
        int line;
    } cases[] = {
        {"real/ties-typo-nomalize-qwen25.yml", "'nomalize'", 27},
        {"real/passthrough-revision-key-dpopenhermes-11b.yml", "revision", 5},
        {"real/karcher-seventeen-models-duplicate.yml", "more than once", 19},
        {"mergekit-examples/history/zipit.yml", "'align_weights'", 24},
        {"real/multislerp-base-and-normalize.yml", "'normalize' is not used by multislerp", 18},
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(cases); i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "recipes/%s", cases[i].file);
        char *path = ms_test_shared(rel);
        if (!path)
            cr_skip_test("../shared/fixtures/recipes is absent");
        ms_recipe *r = NULL;
        ms_error err;
        ms_error_clear(&err);
        cr_assert_eq(ms_recipe_load(path, &r, &err), MS_OK, "%s: %s", path, err.msg);
        bool found = false;
        for (size_t w = 0; w < r->n_warnings; w++)
            found |= strstr(r->warnings[w].msg, cases[i].want) && r->warnings[w].line == cases[i].line;
        cr_expect(found, "%s: no warning with '%s' on line %d", cases[i].file, cases[i].want,
                  cases[i].line);
        ms_recipe_free(r);
        free(path);
    }
}

/* README: orcamini-platy is 24 + 20 = 44 layers; orca2flat-mythalion
 * 13 + 19 + 13 + 17 = 62 layers. */
Test(recipe, passthrough_layer_maps)
{
    static const struct {
        const char *file;
        int n;
    } cases[] = {
        {"recipes/mergekit-examples/orcamini-platy-44layer.yml", 44},
        {"recipes/real/passthrough-orca2flat-mythalion-frankenmerge.yml", 62},
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(cases); i++) {
        char *path = ms_test_shared(cases[i].file);
        if (!path)
            cr_skip_test("../shared/fixtures/recipes is absent");
        ms_recipe *r = NULL;
        ms_error err;
        ms_error_clear(&err);
        cr_assert_eq(ms_recipe_load(path, &r, &err), MS_OK);
        ms_recipe_plan *p = plan_of(r, 0, 0);
        cr_expect_eq(p->n_layers, cases[i].n, "%s: %d layers", cases[i].file, p->n_layers);
        /* every output layer has one input, renumbered consecutively */
        for (int l = 0; l < p->n_layers; l++) {
            cr_assert_eq(p->layers[l].n_inputs, 1);
            cr_assert_eq(p->layers[l].out_layer, l);
        }
        ms_recipe_plan_free(p);
        ms_recipe_free(r);
        free(path);
    }
}

/* ================================================================ slerp by hand */

/*
 * slerp-lazymergekit-mistral-32-layers.yml: one slice of 32 layers,
 * t: self_attn [0, 0.5, 0.3, 0.7, 1], mlp [1, 0.5, 0.7, 0.3, 0], else 0.5.
 *
 * mergekit: layer i has position p = i/31, s = p*(5-1) = 4i/31, k = floor(s),
 * f = s - k, t = (1-f) v[k] + f v[k+1]. By hand (exact fractions):
 *   i = 0:  s = 0            -> self_attn 0,                 mlp 1
 *   i = 7:  s = 28/31 (k 0)  -> 0.5 * 28/31 = 14/31,         mlp 1 - 0.5*28/31 = 17/31
 *   i = 8:  s = 32/31 (k 1, f 1/31)
 *           -> 0.5*30/31 + 0.3*1/31 = 15.3/31,               mlp 0.5*30/31 + 0.7/31 = 15.7/31
 *   i = 15: s = 60/31 (k 1, f 29/31) -> (0.5*2 + 0.3*29)/31 = 9.7/31
 *   i = 16: s = 64/31 (k 2, f 2/31)  -> (0.3*29 + 0.7*2)/31 = 10.1/31
 *   i = 24: s = 96/31 (k 3, f 3/31)  -> (0.7*28 + 1*3)/31 = 22.6/31
 *   i = 31: s = 4 (k 4)              -> 1,                   mlp 0
 * Norms (input_layernorm, post_attention_layernorm), embed_tokens, norm and
 * lm_head match neither filter: 0.5.
 */
static const struct {
    int layer;
    double self_attn, mlp;
} slerp_hand[] = {
    {0, 0.0, 1.0},
    {7, 14.0 / 31, 17.0 / 31},
    {8, 15.3 / 31, 15.7 / 31},
    {15, 9.7 / 31, -1},
    {16, 10.1 / 31, -1},
    {24, 22.6 / 31, -1},
    {31, 1.0, 0.0},
};

/* The same rule in integer arithmetic for every layer: s = 4i/31 split as
 * k = 4i div 31, f = (4i mod 31)/31. */
static double slerp_rule(const double *v, int i)
{
    int k = (4 * i) / 31;
    double f = (double)((4 * i) % 31) / 31.0;
    return k >= 4 ? v[4] : (1 - f) * v[k] + f * v[k + 1];
}

Test(recipe, slerp_gradient_by_hand)
{
    static const double sa[] = {0, 0.5, 0.3, 0.7, 1}, mlp[] = {1, 0.5, 0.7, 0.3, 0};
    char *path = ms_test_shared("recipes/real/slerp-lazymergekit-mistral-32-layers.yml");
    if (!path)
        cr_skip_test("../shared/fixtures/recipes is absent");
    ms_recipe *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_load(path, &r, &err), MS_OK);
    ms_recipe_plan *p = plan_of(r, 0, 0);
    cr_assert_eq(p->n_layers, 32);
    char name[128];
    for (size_t i = 0; i < MS_ARRAY_SIZE(slerp_hand); i++) {
        int l = slerp_hand[i].layer;
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.o_proj.weight", l);
        cr_expect_float_eq(resolve1(p, name, l, NULL, MS_PARAM_T), slerp_hand[i].self_attn, 1e-12,
                           "self_attn layer %d", l);
        if (slerp_hand[i].mlp >= 0) {
            snprintf(name, sizeof(name), "model.layers.%d.mlp.down_proj.weight", l);
            cr_expect_float_eq(resolve1(p, name, l, NULL, MS_PARAM_T), slerp_hand[i].mlp, 1e-12,
                               "mlp layer %d", l);
        }
    }
    for (int l = 0; l < 32; l++) {
        snprintf(name, sizeof(name), "model.layers.%d.self_attn.q_proj.weight", l);
        cr_expect_float_eq(resolve1(p, name, l, NULL, MS_PARAM_T), slerp_rule(sa, l), 1e-12);
        snprintf(name, sizeof(name), "model.layers.%d.mlp.up_proj.weight", l);
        cr_expect_float_eq(resolve1(p, name, l, NULL, MS_PARAM_T), slerp_rule(mlp, l), 1e-12);
        snprintf(name, sizeof(name), "model.layers.%d.input_layernorm.weight", l);
        cr_expect_float_eq(resolve1(p, name, l, NULL, MS_PARAM_T), 0.5, 1e-15);
    }
    cr_expect_float_eq(resolve1(p, "model.embed_tokens.weight", -1, NULL, MS_PARAM_T), 0.5, 1e-15);
    cr_expect_float_eq(resolve1(p, "lm_head.weight", -1, NULL, MS_PARAM_T), 0.5, 1e-15);
    ms_recipe_plan_free(p);
    ms_recipe_free(r);
    free(path);
}

/* The same values through `mergescope recipe explain --json -`. */
Test(recipe, slerp_explain_cli)
{
    char *path = ms_test_shared("recipes/real/slerp-lazymergekit-mistral-32-layers.yml");
    if (!path)
        cr_skip_test("../shared/fixtures/recipes is absent");
    const char *argv[] = {"recipe", "explain", path, "--json", "-", NULL};
    char *out = NULL, *errout = NULL;
    int rc = ms_test_run(argv, &out, &errout);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, errout);
    cJSON *root = cJSON_Parse(out);
    cr_assert_not_null(root);
    cr_expect_str_eq(cJSON_GetObjectItem(root, "merge_method")->valuestring, "slerp");
    cr_expect_str_eq(cJSON_GetObjectItem(root, "base_model")->valuestring,
                     "OpenPipe/mistral-ft-optimized-1218");
    cJSON *layers = cJSON_GetObjectItem(root, "layers");
    int seen = 0;
    cJSON *row;
    cJSON_ArrayForEach(row, layers) {
        cJSON *lj = cJSON_GetObjectItem(row, "layer");
        if (!cJSON_IsNumber(lj))
            continue;
        int l = lj->valueint;
        const char *f = cJSON_GetObjectItem(row, "filter")->valuestring;
        double t = cJSON_GetObjectItem(cJSON_GetObjectItem(row, "params"), "t")->valuedouble;
        for (size_t i = 0; i < MS_ARRAY_SIZE(slerp_hand); i++) {
            if (slerp_hand[i].layer != l)
                continue;
            if (strcmp(f, "self_attn") == 0) {
                cr_expect_float_eq(t, slerp_hand[i].self_attn, 1e-12, "layer %d", l);
                seen++;
            } else if (strcmp(f, "other") == 0) {
                cr_expect_float_eq(t, 0.5, 1e-15);
            }
        }
    }
    /* 7 hand layers x 2 models (t is global: both rows carry it) */
    cr_expect_eq(seen, 14);
    cJSON_Delete(root);
    free(out);
    free(errout);
    free(path);
}

/* ================================================================ vs ref_merge.py */

static cJSON *run_ref(const char *recipe, int n_layers)
{
    char cmd[4096];
    char *bench = ms_test_shared("../bench/ref_merge.py");
    if (!bench)
        return NULL;
    char *dir = ms_path_dirname(bench);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/tests/recipe_ref.py' '%s' '%s' %d",
             MS_SOURCE_DIR, dir, recipe, n_layers);
    FILE *fp = popen(cmd, "r");
    cr_assert_not_null(fp);
    ms_sb sb = MS_SB_INIT;
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), fp)) > 0)
        ms_sb_addn(&sb, buf, n);
    cr_assert_eq(pclose(fp), 0, "recipe_ref.py failed on %s", recipe);
    cJSON *j = cJSON_Parse(ms_sb_str(&sb));
    ms_sb_free(&sb);
    free(dir);
    free(bench);
    return j;
}

/* Compare one ref_merge params object with ours: null <-> unset. */
static int compare_params(cJSON *want, const ms_recipe_params *got, const char *what)
{
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, want) {
        ms_param k = ms_param_from_name(it->string);
        cr_assert_neq(k, MS_PARAM_UNKNOWN, "unknown parameter %s", it->string);
        if (cJSON_IsNull(it)) {
            cr_expect(!ms_params_has(got, k), "%s: %s should be unset, got %g", what,
                      it->string, got->value[k]);
        } else {
            cr_expect(ms_params_has(got, k), "%s: %s unset, want %g", what, it->string,
                      it->valuedouble);
            cr_expect_float_eq(got->value[k], it->valuedouble, 1e-12, "%s: %s = %.17g, want %.17g",
                               what, it->string, got->value[k], it->valuedouble);
        }
        n++;
    }
    return n;
}

static int compare_path_with_ref(const char *path, const char *rel, int n_layers)
{
    cJSON *ref = run_ref(path, n_layers);
    if (!ref)
        cr_skip_test("../shared/bench/ref_merge.py is absent");
    ms_recipe *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_load(path, &r, &err), MS_OK, "%s: %s", rel, err.msg);
    const ms_recipe_stage *st = &r->stages[0];
    ms_recipe_plan *p = plan_of(r, 0, st->modules[0].models_syntax ? n_layers : 0);
    cr_expect_eq(p->n_layers, cJSON_GetObjectItem(ref, "n_layers_out")->valueint, "%s", rel);
    int lookups = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ref, "entries")) {
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        cJSON *lj = cJSON_GetObjectItem(e, "layer");
        int layer = cJSON_IsNumber(lj) ? lj->valueint : -1;
        ms_recipe_params got;
        char what[512];
        cr_assert_eq(ms_recipe_resolve(p, st->method, name, layer, MS_RECIPE_NONE, &got, &err),
                     MS_OK, "%s: %s", name, err.msg);
        snprintf(what, sizeof(what), "%s %s", rel, name);
        lookups += compare_params(cJSON_GetObjectItem(e, "gparams"), &got, what);
        const ms_recipe_plan_layer *row = ms_recipe_plan_row(p, name, layer);
        cJSON *models = cJSON_GetObjectItem(e, "models");
        /* ref_merge lists a model named twice in a slice twice; mergekit
         * (and the plan) keep one input per model, in first-mention order */
        size_t n_unique = 0;
        for (int i = 0; i < cJSON_GetArraySize(models); i++) {
            const char *model = cJSON_GetArrayItem(models, i)->valuestring;
            size_t m = ms_recipe_find_model(st, model);
            cr_assert_neq(m, MS_RECIPE_NONE, "%s: model %s", what, model);
            bool first = true;
            for (int j = 0; j < i; j++)
                first &= strcmp(cJSON_GetArrayItem(models, j)->valuestring, model) != 0;
            if (layer >= 0 && first) {
                cr_expect_lt(n_unique, row->n_inputs, "%s: too few inputs", what);
                if (n_unique < row->n_inputs)
                    cr_expect_eq(row->inputs[n_unique].model, m, "%s: input %zu", what, n_unique);
            }
            n_unique += first;
            cr_assert_eq(ms_recipe_resolve(p, st->method, name, layer, m, &got, &err), MS_OK,
                         "%s %s: %s", name, model, err.msg);
            snprintf(what, sizeof(what), "%s %s [%s]", rel, name, model);
            lookups += compare_params(cJSON_GetArrayItem(cJSON_GetObjectItem(e, "tparams"), i),
                                      &got, what);
        }
        if (layer >= 0)
            cr_expect_eq(n_unique, row->n_inputs, "%s inputs", what);
    }
    ms_recipe_plan_free(p);
    ms_recipe_free(r);
    cJSON_Delete(ref);
    return lookups;
}

static int compare_with_ref(const char *rel, int n_layers)
{
    char *path = ms_test_shared(rel);
    if (!path)
        cr_skip_test("../shared/fixtures/recipes is absent");
    int n = compare_path_with_ref(path, rel, n_layers);
    free(path);
    return n;
}

Test(recipe, versus_ref_merge)
{
    static const struct {
        const char *file;
        int n_layers;  /* for models: recipes */
    } cases[] = {
        {"recipes/mergekit-examples/ties.yml", 5},
        {"recipes/mergekit-examples/gradient-slerp.yml", 0},
        {"recipes/mergekit-examples/linear.yml", 3},
        {"recipes/mergekit-examples/orcamini-platy-44layer.yml", 0},
        {"recipes/real/slerp-lazymergekit-mistral-32-layers.yml", 0},
        {"recipes/real/breadcrumbs_ties-per-model-gamma-gradients.yml", 7},
        {"recipes/real/della_linear-filtered-weights-angelslayer.yml", 4},
        {"recipes/real/della_linear-weight-gradients-scarlet-ink.yml", 9},
        {"recipes/real/dare_ties-llama32-3b-commented-interpolation_factor.yml", 4},
        {"recipes/real/passthrough-scale-filters-one-space-indent.yml", 0},
        {"recipes/real/ties-typo-nomalize-qwen25.yml", 3},
        {"recipes/real/task_arithmetic-orca2flat.yml", 4},
        {"recipes/real/della-global-density-epsilon-wingless.yml", 3},
        {"recipes/real/dare_linear-midnight-miqu-70b-v1.5.yml", 2},
    };
    int total = 0;
    for (size_t i = 0; i < MS_ARRAY_SIZE(cases); i++)
        total += compare_with_ref(cases[i].file, cases[i].n_layers);
    /* a sanity floor: thousands of lookups were compared */
    cr_expect_gt(total, 5000, "only %d lookups compared", total);
}

/*
 * Corner cases of the lookup rules, against ref_merge.py too: per-model
 * filters on the INPUT layer name ("layers.3." while the output layer is
 * 0), an empty filter (matches everything), "*", a model listed twice in
 * a slice with its parameter only on the second entry, slice parameters
 * and a slice base_model, one-layer slices (t = 1), gradients restarting
 * per slice, embeddings from the first slice and lm_head from the last
 * (t = 0), the base added to a models: recipe with a top-level weight.
 */
static const char *const corner_recipes[] = {
    "merge_method: ties\n"
    "base_model: base\n"
    "slices:\n"
    "  - sources:\n"
    "      - model: base\n"
    "        layer_range: [0, 1]\n"
    "      - model: a\n"
    "        layer_range: [3, 4]\n"
    "        parameters:\n"
    "          weight: [0.1, 0.9]\n"
    "          density:\n"
    "            - filter: \"layers.3.\"\n"
    "              value: 0.3\n"
    "            - filter: \"\"\n"
    "              value: [0.2, 0.4]\n"
    "      - model: b\n"
    "        layer_range: [5, 6]\n"
    "    parameters:\n"
    "      weight: 0.5\n"
    "      normalize: 0\n"
    "  - sources:\n"
    "      - model: base\n"
    "        layer_range: [1, 5]\n"
    "      - model: a\n"
    "        layer_range: [1, 5]\n"
    "      - model: a\n"
    "        layer_range: [1, 5]\n"
    "        parameters:\n"
    "          density: 0.7\n"
    "      - model: b\n"
    "        layer_range: [0, 4]\n"
    "        parameters:\n"
    "          weight:\n"
    "            - filter: self_attn\n"
    "              value: [1, 0, 2]\n"
    "            - filter: \"*\"\n"
    "              value: 0.25\n"
    "    base_model: base\n"
    "    parameters:\n"
    "      lambda: [0.5, 1.5]\n"
    "parameters:\n"
    "  weight: 0.33\n"
    "  density: 0.8\n"
    "  lambda: 1.1\n"
    "  int8_mask: true\n",

    "merge_method: linear\n"
    "base_model: base\n"
    "models:\n"
    "  - model: x\n"
    "    parameters:\n"
    "      weight:\n"
    "        - filter: mlp\n"
    "          value: [2, 4]\n"
    "  - model: y\n"
    "parameters:\n"
    "  weight: [1, 3]\n"
    "  normalize: false\n",

    "merge_method: slerp\n"
    "base_model: p\n"
    "slices:\n"
    "  - sources:\n"
    "      - {model: p, layer_range: [0, 1]}\n"
    "      - {model: q, layer_range: [0, 1]}\n"
    "    parameters:\n"
    "      t: [0.2, 0.8]\n"
    "  - sources:\n"
    "      - {model: q, layer_range: [1, 4]}\n"
    "      - {model: p, layer_range: [1, 4]}\n"
    "parameters:\n"
    "  t:\n"
    "    - filter: o_proj\n"
    "      value: [0, 1]\n"
    "    - value: 0.6\n",

    "merge_method: passthrough\n"
    "slices:\n"
    "  - sources: [{model: m, layer_range: [0, 2]}]\n"
    "  - sources: [{model: m, layer_range: [1, 2], parameters: {scale: [0.5, 2]}}]\n"
    "  - sources: [{model: n, layer_range: [0, 3]}]\n"
    "    parameters:\n"
    "      scale:\n"
    "        - filter: down_proj\n"
    "          value: [0, 1]\n",
};

Test(recipe, corner_cases_versus_ref_merge)
{
    char *dir = ms_test_tmpdir();
    int total = 0;
    for (size_t i = 0; i < MS_ARRAY_SIZE(corner_recipes); i++) {
        char name[32];
        snprintf(name, sizeof(name), "corner%zu.yml", i);
        char *path = ms_path_join(dir, name);
        cr_assert(ms_test_write(path, corner_recipes[i], strlen(corner_recipes[i])));
        total += compare_path_with_ref(path, name, 6);
        remove(path);
        free(path);
    }
    remove(dir);
    free(dir);
    cr_expect_gt(total, 500, "only %d lookups compared", total);
}

/* ================================================================ round trip */

/* Resolve every parameter of every llama tensor, model and layer of both
 * recipes and require identical results. */
static void same_resolution(const ms_recipe *a, const ms_recipe *b, int n_layers, const char *what)
{
    static const char *const sfx[] = {"self_attn.q_proj.weight", "self_attn.o_proj.weight",
                                      "mlp.down_proj.weight", "input_layernorm.weight"};
    cr_assert_eq(a->n_stages, b->n_stages, "%s", what);
    for (size_t s = 0; s < a->n_stages; s++) {
        const ms_recipe_stage *sa = &a->stages[s], *sb = &b->stages[s];
        cr_assert_eq(sa->method, sb->method);
        cr_assert_eq(sa->n_models, sb->n_models, "%s", what);
        ms_recipe_plan *pa = plan_of(a, s, n_layers), *pb = plan_of(b, s, n_layers);
        cr_assert_eq(pa->n_layers, pb->n_layers);
        for (int l = -1; l < pa->n_layers; l++) {
            for (size_t k = 0; k < MS_ARRAY_SIZE(sfx) + 2; k++) {
                char name[160];
                if (l < 0)
                    snprintf(name, sizeof(name), "%s",
                             k == 0 ? "model.embed_tokens.weight" : "lm_head.weight");
                else if (k < MS_ARRAY_SIZE(sfx))
                    snprintf(name, sizeof(name), "model.layers.%d.%s", l, sfx[k]);
                else
                    continue;
                const ms_recipe_plan_layer *row = ms_recipe_plan_row(pa, name, l);
                for (size_t i = 0; i < row->n_inputs; i++) {
                    size_t m = row->inputs[i].model;
                    size_t mb = ms_recipe_find_model(sb, sa->models[m].ref);
                    ms_recipe_params x, y;
                    ms_error err;
                    ms_error_clear(&err);
                    cr_assert_eq(ms_recipe_resolve(pa, sa->method, name, l, m, &x, &err), MS_OK);
                    cr_assert_eq(ms_recipe_resolve(pb, sb->method, name, l, mb, &y, &err), MS_OK,
                                 "%s: %s", what, err.msg);
                    for (int p = 0; p < MS_PARAM_COUNT; p++) {
                        cr_assert_eq(ms_params_has(&x, p), ms_params_has(&y, p), "%s %s", what, name);
                        cr_assert_eq(x.value[p], y.value[p], "%s %s %s", what, name, ms_param_name(p));
                    }
                }
            }
        }
        ms_recipe_plan_free(pa);
        ms_recipe_plan_free(pb);
    }
}

static ms_recipe *reparse(const ms_recipe *r, const ms_recipe_change *c, size_t n, char **text)
{
    size_t len;
    ms_error err;
    ms_recipe *back = NULL;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_emit(r, c, n, "rebalanced by a test\nsecond line", text, &len, &err),
                 MS_OK, "emit: %s", err.msg);
    static const char head[] = "# rebalanced by a test\n# second line\n";
    cr_assert(strncmp(*text, head, strlen(head)) == 0, "header: %s", *text);
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_parse(*text, len, "written.yml", &back, &err), MS_OK,
                 "re-read: %s\n%s", err.msg, *text);
    return back;
}

static void roundtrip_dir(const char *rel, int min_valid)
{
    char *dir = ms_test_shared(rel);
    if (!dir)
        cr_skip_test("../shared/fixtures/recipes is absent");
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        if (!ms_str_endswith(de->d_name, ".yml"))
            continue;
        char *path = ms_path_join(dir, de->d_name);
        ms_recipe *r = NULL;
        ms_error err;
        ms_error_clear(&err);
        if (ms_recipe_load(path, &r, &err) == MS_OK) {
            char *text = NULL;
            ms_recipe *back = reparse(r, NULL, 0, &text);
            same_resolution(r, back, 3, path);
            ms_recipe_free(back);
            free(text);
            n++;
        }
        /* invalid corpus files are covered by the corpus tests */
        ms_recipe_free(r);
        free(path);
    }
    closedir(d);
    cr_assert_geq(n, min_valid, "%s: %d valid recipes", rel, n);
    free(dir);
}

Test(recipe, roundtrip_corpus)
{
    /* the READMEs list 33, 7 and 4 accepted recipes */
    roundtrip_dir("recipes/real", 33);
    roundtrip_dir("recipes/mergekit-examples", 7);
    roundtrip_dir("recipes/mergekit-examples/history", 4);
}

/* Changes land where asked, everything else resolves as before. */
Test(recipe, write_changes)
{
    ms_recipe *r = parse_ok(
        "models:\n"
        "  - model: org/a\n"
        "    parameters:\n"
        "      weight: 0.5\n"
        "      density: [0.2, 0.8]\n"
        "  - model: org/b\n"
        "    parameters:\n"
        "      weight:\n"
        "        - filter: mlp\n"
        "          value: 0.1\n"
        "        - value: 0.9\n"
        "  - model: org/c\n"
        "merge_method: ties\n"
        "base_model: org/base\n"
        "parameters:\n"
        "  density: 0.5\n"
        "  weight: 0.3\n"
        "  custom_unknown: 7\n"
        "dtype: bfloat16\n"
        "extra_key: {kept: true}\n");
    static const double w_a[] = {0.25}, grad[] = {0.1, 0.2, 0.3}, w_b_attn[] = {0.7},
                        w_c[] = {0.4}, lam[] = {0.9};
    const ms_recipe_change ch[] = {
        {0, "org/a", "weight", NULL, w_a, 1},
        {0, "org/a", "density", NULL, grad, 3},
        {0, "org/b", "weight", "self_attn", w_b_attn, 1},
        {0, "org/c", "weight", "mlp", w_c, 1},
        {0, NULL, "lambda", NULL, lam, 1},
    };
    char *text = NULL;
    ms_recipe *b = reparse(r, ch, MS_ARRAY_SIZE(ch), &text);
    cr_expect(strstr(text, "extra_key"), "unknown keys are kept:\n%s", text);
    cr_expect(strstr(text, "custom_unknown"), "unknown parameters are kept:\n%s", text);
    ms_recipe_plan *p = plan_of(b, 0, 5);
    const char *q = "model.layers.4.self_attn.q_proj.weight";
    const char *u = "model.layers.4.mlp.up_proj.weight";
    const char *n = "model.layers.4.input_layernorm.weight";
    cr_expect_float_eq(resolve1(p, q, 4, "org/a", MS_PARAM_WEIGHT), 0.25, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 4, "org/a", MS_PARAM_DENSITY), 0.3, 1e-15); /* last point */
    cr_expect_float_eq(resolve1(p, "model.layers.2.mlp.up_proj.weight", 2, "org/a",
                                MS_PARAM_DENSITY), 0.2, 1e-15);   /* t = 0.5 -> middle */
    cr_expect_float_eq(resolve1(p, q, 4, "org/b", MS_PARAM_WEIGHT), 0.7, 1e-15);
    cr_expect_float_eq(resolve1(p, u, 4, "org/b", MS_PARAM_WEIGHT), 0.1, 1e-15);
    cr_expect_float_eq(resolve1(p, n, 4, "org/b", MS_PARAM_WEIGHT), 0.9, 1e-15);
    /* org/c had no own weight: mlp now 0.4, the rest still falls to the top level */
    cr_expect_float_eq(resolve1(p, u, 4, "org/c", MS_PARAM_WEIGHT), 0.4, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 4, "org/c", MS_PARAM_WEIGHT), 0.3, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 4, "org/c", MS_PARAM_DENSITY), 0.5, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 4, NULL, MS_PARAM_LAMBDA), 0.9, 1e-15);
    cr_expect_str_eq(b->stages[0].dtype, "bfloat16");
    ms_recipe_plan_free(p);
    ms_recipe_free(b);
    free(text);

    /* a change naming an unknown model is refused */
    const ms_recipe_change bad = {0, "org/nope", "weight", NULL, w_a, 1};
    size_t len;
    ms_error err;
    ms_error_clear(&err);
    cr_expect_eq(ms_recipe_emit(r, &bad, 1, NULL, &text, &len, &err), MS_ERR_USAGE);
    ms_recipe_free(r);
}

Test(recipe, write_file_atomic)
{
    ms_recipe *r = parse_ok("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n"
                            "  - model: b\n    parameters: {weight: 2}\n");
    char *dir = ms_test_tmpdir();
    char *out = ms_path_join(dir, "new.yml");
    static const double w[] = {0.5};
    const ms_recipe_change ch = {0, "b", "weight", NULL, w, 1};
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_write(r, &ch, 1, "weights rebalanced", out, &err), MS_OK);
    ms_recipe *b = NULL;
    cr_assert_eq(ms_recipe_load(out, &b, &err), MS_OK, "%s", err.msg);
    ms_recipe_plan *p = plan_of(b, 0, 2);
    cr_expect_float_eq(resolve1(p, "model.layers.1.mlp.up_proj.weight", 1, "b", MS_PARAM_WEIGHT),
                       0.5, 1e-15);
    cr_expect_float_eq(resolve1(p, "model.layers.1.mlp.up_proj.weight", 1, "a", MS_PARAM_WEIGHT),
                       1.0, 1e-15);
    ms_recipe_plan_free(p);
    ms_recipe_free(b);
    ms_recipe_free(r);
    remove(out);
    remove(dir);
    free(out);
    free(dir);
}

/* ================================================================ YAML facts */

/* PyYAML (YAML 1.1) + pydantic: 1e-5 is a string that pydantic turns into
 * a float; yes/on are booleans (1); 010 is octal 8; .5 is 0.5; 1_000 is
 * 1000; quoted numbers are numbers; anchors, aliases and << merge keys. */
Test(recipe, yaml11_scalars_and_aliases)
{
    ms_recipe *r = parse_ok(
        "defaults: &d {weight: '0.5', density: .5}\n"
        "merge_method: dare_ties\n"
        "base_model: base\n"
        "models:\n"
        "  - model: a\n"
        "    parameters:\n"
        "      <<: *d\n"
        "      density: \"0.25\"\n"
        "  - model: b\n"
        "    parameters: *d\n"
        "parameters:\n"
        "  lambda: 1e-5\n"
        "  normalize: yes\n"
        "  int8_mask: off\n"
        "  rescale: 010\n");
    ms_recipe_plan *p = plan_of(r, 0, 2);
    const char *q = "model.layers.0.self_attn.q_proj.weight";
    cr_expect_float_eq(resolve1(p, q, 0, "a", MS_PARAM_WEIGHT), 0.5, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 0, "a", MS_PARAM_DENSITY), 0.25, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 0, "b", MS_PARAM_DENSITY), 0.5, 1e-15);
    cr_expect_float_eq(resolve1(p, q, 0, NULL, MS_PARAM_LAMBDA), 1e-5, 1e-20);
    cr_expect_float_eq(resolve1(p, q, 0, NULL, MS_PARAM_NORMALIZE), 1.0, 0);
    cr_expect_float_eq(resolve1(p, q, 0, NULL, MS_PARAM_INT8_MASK), 0.0, 0);
    cr_expect_float_eq(resolve1(p, q, 0, NULL, MS_PARAM_RESCALE), 8.0, 0);
    /* the unknown top-level key is kept and warned about, with its line */
    cr_expect_eq(r->n_warnings, 1);
    cr_expect_eq(r->warnings[0].line, 1);
    cr_expect(strstr(r->warnings[0].msg, "'defaults'"));
    ms_recipe_plan_free(p);
    ms_recipe_free(r);
}

Test(recipe, models_need_layer_count)
{
    ms_recipe *r = parse_ok("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n");
    ms_recipe_plan *p = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_expect_eq(ms_recipe_plan_build(&r->stages[0], 0, 0, &p, &err), MS_ERR_USAGE);
    cr_expect(strstr(err.msg, "layer count"));
    ms_recipe_free(r);
}

/* ================================================================ bad input */

Test(recipe, bad_ranges_and_types)
{
    /* the example, at the value's line and column */
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: 1\n      density: 1.4\n", 7, 16, "density must be in (0, 1], got 1.4");
    /* inside a gradient: the offending entry's own column */
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: 1\n      density: [0.5, 0.9, 1.2]\n", 7, 27,
              "density must be in (0, 1], got 1.2");
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: 1\n      density: abc\n", 7, 16, "must be a number, got 'abc'");
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: ~\n", 6, 15, "must be a number, got null");
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: [[1, 2]]\n", 6, 16, "numbers only");
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: {filter: mlp, value: 1}\n", 6, 15, "must be an entry of a list");
    parse_bad("merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: []\n", 6, 15, "empty list");
    parse_bad("merge_method: breadcrumbs\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: 1\n      gamma: -0.1\n", 7, 14, "gamma must be in [0, 1]");
    parse_bad("merge_method: della\nbase_model: b\nmodels:\n  - model: a\n    parameters:\n"
              "      weight: 1\n      density: 0.1\n", 7, 7, "density - epsilon");
    parse_bad("merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n"
              "        layer_range: [0]\n", 5, 22, "two layer indices");
    parse_bad("merge_method: passthrough\nslices:\n  - sources:\n      - model: a\n"
              "        layer_range: [4, 2]\n", 5, 22, "is empty");
    parse_bad("merge_method: linear\nmodels: {a: 1}\n", 2, 9, "models must be a list");
    parse_bad("merge_method: linear\ndtype: bf16\nmodels:\n  - model: a\n    parameters: {weight: 1}\n",
              2, 8, "dtype must be bfloat16");
    parse_bad("merge_method: slerp\nbase_model: a\nmodels:\n  - model: a\n  - model: b\n",
              1, 1, "missing required parameter 't'");
    parse_bad("merge_method: ties\nmodels:\n  - model: a\n    parameters: {weight: 1}\n",
              1, 1, "ties needs 'base_model'");
    parse_bad("merge_method: linear\nmodels:\n  - model: a@b@c\n", 3, 12, "more than one '@'");
    parse_bad("merge_method: linear\nmodels:\n  - model: a\nslices:\n  - sources: []\n", 4, 1,
              "exactly one of");
    parse_bad("merge_method: frankenmerge\nmodels:\n  - model: a\n", 1, 15, "unknown merge_method");
}

Test(recipe, malformed_yaml)
{
    /* broken syntax: libyaml's own position */
    parse_bad("merge_method: linear\nmodels:\n  - model: a\n   parameters: {weight: 1\n", 4, 0,
              "invalid yaml");
    parse_bad("merge_method: [linear\n", 2, 0, "invalid yaml");
    parse_bad("a: b\n\tc: d\n", 2, 0, "invalid yaml");
    /* undefined and recursive aliases */
    parse_bad("merge_method: *nope\n", 1, 15, "undefined alias 'nope'");
    parse_bad("a: &x [1, *x]\n", 1, 11, "recursive alias 'x'");
    parse_bad("a: &x {b: *x}\n", 1, 11, "recursive alias 'x'");
    /* a non-mapping document */
    parse_bad("- merge_method: linear\n", 1, 1, "must be a mapping");
    /* a multi-document mix: a good recipe, then a list */
    parse_bad("merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n"
              "---\n- 1\n- 2\n", 6, 1, "must be a mapping");
    /* two documents with the same stage name */
    parse_bad("name: s\nmerge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n"
              "---\nname: s\nmerge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: 1}\n",
              7, 1, "used twice");
    parse_bad("# nothing\n", 1, 1, "empty recipe");
    parse_bad("merge_method: !!python/object:os.system linear\n", 1, 15, "unsupported yaml tag");
}

Test(recipe, billion_laughs)
{
    /* 9 levels of 10 aliases: 10^9 nodes if expanded */
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, "l0: &l0 [lol]\n");
    for (int i = 1; i <= 9; i++) {
        ms_sb_addf(&sb, "l%d: &l%d [", i, i);
        for (int k = 0; k < 10; k++)
            ms_sb_addf(&sb, "%s*l%d", k ? ", " : "", i - 1);
        ms_sb_add(&sb, "]\n");
    }
    ms_sb_add(&sb, "merge_method: linear\n");
    double t0 = ms_now();
    parse_bad(ms_sb_str(&sb), 6, 0, "alias expansion exceeds");
    cr_expect_lt(ms_now() - t0, 2.0, "refusing must be immediate");
    ms_sb_free(&sb);
}

Test(recipe, deep_nesting)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, "merge_method: linear\nx: ");
    for (int i = 0; i < 100000; i++)
        ms_sb_addc(&sb, '[');
    ms_sb_add(&sb, "\n");
    parse_bad(ms_sb_str(&sb), 2, 0, "nested deeper than 64");
    ms_sb_reset(&sb);
    ms_sb_add(&sb, "merge_method: linear\nx:\n");
    for (int i = 0; i < 70; i++)
        ms_sb_addf(&sb, "%*s- \n", 2 * i, "");
    parse_bad(ms_sb_str(&sb), 0, 0, "nested deeper than 64");
    ms_sb_free(&sb);
}

/* modules: module parameters sit between slice and top level. */
Test(recipe, modules)
{
    ms_recipe *r = parse_ok(
        "merge_method: linear\n"
        "modules:\n"
        "  text_decoder:\n"
        "    models:\n"
        "      - model: a\n"
        "        parameters: {weight: 1}\n"
        "      - model: b\n"
        "    parameters:\n"
        "      normalize: false\n"
        "      weight: 3\n"
        "  vision_tower:\n"
        "    slices:\n"
        "      - sources:\n"
        "          - {model: a, layer_range: [0, 2], parameters: {weight: 0.5}}\n"
        "          - {model: b, layer_range: [2, 4]}\n"
        "parameters:\n"
        "  weight: 2\n");
    cr_assert_eq(r->stages[0].n_modules, 2);
    cr_expect_str_eq(r->stages[0].modules[1].name, "vision_tower");
    ms_recipe_plan *p0 = NULL, *p1 = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_plan_build(&r->stages[0], 0, 3, &p0, &err), MS_OK);
    cr_assert_eq(ms_recipe_plan_build(&r->stages[0], 1, 0, &p1, &err), MS_OK);
    const char *q = "model.layers.1.self_attn.q_proj.weight";
    cr_expect_float_eq(resolve1(p0, q, 1, "a", MS_PARAM_WEIGHT), 1.0, 0);
    cr_expect_float_eq(resolve1(p0, q, 1, "b", MS_PARAM_WEIGHT), 3.0, 0);   /* module */
    cr_expect_float_eq(resolve1(p0, q, 1, NULL, MS_PARAM_NORMALIZE), 0.0, 0);
    cr_expect_float_eq(resolve1(p1, q, 1, "a", MS_PARAM_WEIGHT), 0.5, 0);
    cr_expect_float_eq(resolve1(p1, q, 1, "b", MS_PARAM_WEIGHT), 2.0, 0);   /* top level */
    cr_expect_float_eq(resolve1(p1, q, 1, NULL, MS_PARAM_NORMALIZE), 1.0, 0); /* default */
    cr_expect_eq(p1->layers[1].inputs[1].in_layer, 3);
    ms_recipe_plan_free(p0);
    ms_recipe_plan_free(p1);
    char *text = NULL;
    static const double w[] = {0.25};
    const ms_recipe_change ch = {0, "b", "weight", NULL, w, 1};
    ms_recipe *b = reparse(r, &ch, 1, &text);
    cr_assert_eq(ms_recipe_plan_build(&b->stages[0], 1, 0, &p1, &err), MS_OK);
    cr_expect_float_eq(resolve1(p1, q, 1, "b", MS_PARAM_WEIGHT), 0.25, 0);
    cr_expect_float_eq(resolve1(p1, q, 1, "a", MS_PARAM_WEIGHT), 0.5, 0);
    ms_recipe_plan_free(p1);
    ms_recipe_free(b);
    free(text);
    ms_recipe_free(r);
}

/* Many nodes, many anchors: refused early, never slow. */
Test(recipe, node_and_anchor_caps)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, "merge_method: linear\nx: [");
    for (int i = 0; i < 150000; i++)
        ms_sb_add(&sb, "1, ");
    ms_sb_add(&sb, "1]\n");
    double t0 = ms_now();
    parse_bad(ms_sb_str(&sb), 2, 0, "too many yaml nodes");
    ms_sb_reset(&sb);
    /* the node cap holds over all documents, not per document */
    for (int d = 0; d < 40; d++) {
        ms_sb_add(&sb, "---\nx: [");
        for (int i = 0; i < 5000; i++)
            ms_sb_add(&sb, "1, ");
        ms_sb_add(&sb, "1]\n");
    }
    parse_bad(ms_sb_str(&sb), 0, 0, "too many yaml nodes");
    ms_sb_reset(&sb);
    ms_sb_add(&sb, "x:\n");
    for (int i = 0; i < 5000; i++)
        ms_sb_addf(&sb, "  - &a%d %d\n", i, i);
    parse_bad(ms_sb_str(&sb), 1002, 0, "more than 1000 yaml anchors");
    cr_expect_lt(ms_now() - t0, 5.0);
    ms_sb_free(&sb);
}
