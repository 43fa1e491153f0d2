/*
 * test_provenance.c - the layer map of merges whose construction is known:
 * a passthrough stack of two donors with repeated and overlapping ranges
 * (slice map from ref_merge.py), and a linear slice merge with one
 * 0.3/0.7 blended layer; the emitted recipe read back by the recipe module.
 */
#include <math.h>

#include "analyze_test.h"
#include "mergescope/analyze.h"
#include "mergescope/recipe.h"
#include "mergescope/banned.h"

static ms_provenance_result *prov(const char *dir, const char *merged)
{
    ms_model *m = an_open(dir, merged);
    /* donor3 is a distractor from the same family */
    ms_model *d[3] = {an_open(dir, "fam/donor1"), an_open(dir, "fam/donor2"),
                      an_open(dir, "fam/donor3")};
    ms_stream_opts o = {2, 0, NULL, NULL, 0};
    ms_provenance_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_provenance_run(m, (const ms_model *const *)d, 3, &o, &r, &err), MS_OK,
                 "%s", err.msg);
    ms_model_close(m);
    for (int i = 0; i < 3; i++)
        ms_model_close(d[i]);
    return r;
}

/* "fam/donorN" -> N - 1 */
static size_t donor_index(const char *name)
{
    return (size_t)(name[strlen(name) - 1] - '1');
}

Test(provenance, stack_slice_map_exact)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    cJSON *truth = an_load_json(dir, "truth.json");
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(truth, "slice_map"), "stack");
    ms_provenance_result *r = prov(dir, "merged-stack");
    cr_assert_eq(r->n_layers, (size_t)cJSON_GetArraySize(map));
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        int out = (int)an_num(e, "out_layer");
        const cJSON *src = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "sources"), 0);
        const ms_prov_layer *l = &r->layers[out];
        cr_assert_eq(l->n_src, 1, "layer %d", out);
        cr_assert(l->exact, "layer %d is a copy", out);
        cr_assert_eq(l->src[0].model,
                     donor_index(cJSON_GetObjectItemCaseSensitive(src, "model")->valuestring),
                     "layer %d", out);
        cr_assert_eq(l->src[0].layer, (int)an_num(src, "layer"), "layer %d", out);
        cr_assert_float_eq(l->src[0].cosine, 1.0, 1e-12);
    }
    /* d1 [0,4), d2 [2,6), d1 [3,5), d1 [3,5) again, d2 [0,1) */
    cr_assert_eq(r->n_slices, 5);
    const int want[5][4] = {{0, 4, 0, 0}, {4, 8, 1, 2}, {8, 10, 0, 3}, {10, 12, 0, 3},
                            {12, 13, 1, 0}};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(r->slices[i].out_start, want[i][0]);
        cr_assert_eq(r->slices[i].out_end, want[i][1]);
        cr_assert_eq(r->slices[i].model[0], (size_t)want[i][2]);
        cr_assert_eq(r->slices[i].start[0], want[i][3]);
    }
    /* the emitted recipe is a valid passthrough recipe with the same plan */
    ms_recipe *rec = NULL;
    ms_recipe_plan *plan = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_parse(r->recipe, strlen(r->recipe), "emitted", &rec, &err), MS_OK,
                 "%s:%d:%d: %s\n%s", err.path, err.line, err.col, err.msg, r->recipe);
    cr_assert_eq(rec->stages[0].method, MS_METHOD_PASSTHROUGH);
    cr_assert_eq(ms_recipe_plan_build(&rec->stages[0], 0, 0, &plan, &err), MS_OK, "%s", err.msg);
    cr_assert_eq((size_t)plan->n_layers, r->n_layers);
    for (int l = 0; l < plan->n_layers; l++) {
        const ms_recipe_plan_layer *pl = &plan->layers[l];
        cr_assert_eq(pl->n_inputs, 1);
        cr_assert_eq(pl->inputs[0].in_layer, r->layers[l].src[0].layer);
        const char *path = rec->stages[0].models[pl->inputs[0].model].path;
        cr_assert_str_eq(path, r->donors[r->layers[l].src[0].model]);
    }
    ms_recipe_plan_free(plan);
    ms_recipe_free(rec);
    ms_provenance_result_free(r);
    cJSON_Delete(truth);
    free(dir);
}

Test(provenance, blended_layer_weights)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    cJSON *truth = an_load_json(dir, "truth.json");
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(truth, "slice_map"), "blend");
    const cJSON *blend = cJSON_GetObjectItemCaseSensitive(truth, "blend");
    int bl = (int)an_num(blend, "layer");
    const cJSON *bw = cJSON_GetObjectItemCaseSensitive(blend, "weights");
    ms_provenance_result *r = prov(dir, "merged-blend");
    cr_assert_eq(r->n_layers, (size_t)cJSON_GetArraySize(map));
    const cJSON *e;
    cJSON_ArrayForEach(e, map) {
        int out = (int)an_num(e, "out_layer");
        const cJSON *srcs = cJSON_GetObjectItemCaseSensitive(e, "sources");
        const ms_prov_layer *l = &r->layers[out];
        cr_assert_eq(l->n_src, (size_t)cJSON_GetArraySize(srcs), "layer %d", out);
        for (size_t k = 0; k < l->n_src; k++) {
            const cJSON *s = cJSON_GetArrayItem(srcs, (int)k);
            const char *model = cJSON_GetObjectItemCaseSensitive(s, "model")->valuestring;
            cr_assert_eq(l->src[k].model, donor_index(model), "layer %d", out);
            cr_assert_eq(l->src[k].layer, (int)an_num(s, "layer"), "layer %d", out);
            if (out == bl)
                cr_assert_float_eq(l->src[k].weight, an_num(bw, model), 1e-6,
                                   "blend weight %.8f", l->src[k].weight);
        }
    }
    cr_assert_eq(r->layers[bl].n_src, 2);
    cr_assert(r->layers[bl].confirmed, "blend re-fitted on the exact weights");
    cr_assert_lt(r->layers[bl].residual, 1e-5);
    cr_assert(strstr(r->recipe, "merge_method: linear"), "%s", r->recipe);
    ms_provenance_result_free(r);
    cJSON_Delete(truth);
    free(dir);
}

Test(provenance, cli_emits_recipe_atomically)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    char *tmp = ms_test_tmpdir();
    char *out_yml = ms_path_join(tmp, "stack.yml");
    char *m = ms_path_join(dir, "merged-stack");
    char *d1 = ms_path_join(dir, "fam/donor1");
    char *d2 = ms_path_join(dir, "fam/donor2");
    const char *argv[] = {"provenance", m, d1, d2, "--emit-recipe", out_yml, "--quiet", NULL};
    char *out = NULL, *errout = NULL;
    cr_assert_eq(ms_test_run(argv, &out, &errout), 0, "%s", errout);
    ms_recipe *rec = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_recipe_load(out_yml, &rec, &err), MS_OK, "%s", err.msg);
    cr_assert_eq(rec->stages[0].modules[0].n_slices, 5);
    ms_recipe_free(rec);
    cr_assert(strstr(out, "copy"), "%s", out);
    unlink(out_yml);
    rmdir(tmp);
    free(out);
    free(errout);
    free(out_yml);
    free(m);
    free(d1);
    free(d2);
    free(tmp);
    free(dir);
}
