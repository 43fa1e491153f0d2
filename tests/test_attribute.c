/*
 * test_attribute.c - least-squares attribution against known truth: merges
 * with known coefficients (ref_merge.py, gen_family.py's formula), the
 * numpy peer (peer_audit.py) for TIES/DARE, the real stories260K family's
 * README numbers, closed-form fits, and ill-conditioned inputs.
 */
#include <math.h>

#include "analyze_test.h"
#include "mergescope/analyze.h"
#include "mergescope/names.h"
#include "mergescope/banned.h"

static ms_stream_opts opts2 = {2, 0, NULL, NULL, 0};

static ms_attribute_result *attribute(const char *dir, const char *base,
                                      const char *merged)
{
    ms_model *m[5];
    m[0] = base ? an_open(dir, base) : NULL;
    m[1] = an_open(dir, merged);
    m[2] = an_open(dir, "fam/donor1");
    m[3] = an_open(dir, "fam/donor2");
    m[4] = an_open(dir, "fam/donor3");
    ms_attribute_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_attribute_run(m[0], m[1], (const ms_model *const *)m + 2, 3,
                                  &opts2, NULL, NULL, &r, &err), MS_OK, "%s", err.msg);
    for (int i = 0; i < 5; i++)
        ms_model_close(m[i]);
    return r;
}

/* truth.coefficients[method][donor][class]: a number, or per tensor. */
static double truth_coef(const cJSON *truth, const char *method, int donor,
                         const char *cls, const char *tensor)
{
    char name[32];
    snprintf(name, sizeof(name), "fam/donor%d", donor + 1);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(truth, "coefficients");
    c = cJSON_GetObjectItemCaseSensitive(c, method);
    c = cJSON_GetObjectItemCaseSensitive(c, name);
    c = cJSON_GetObjectItemCaseSensitive(c, cls);
    if (cJSON_IsObject(c))
        c = cJSON_GetObjectItemCaseSensitive(c, tensor);
    cr_assert(cJSON_IsNumber(c), "no truth for %s %s %s", method, name, tensor);
    return c->valuedouble;
}

static void check_known(const char *method, bool has_base)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    cJSON *truth = an_load_json(dir, "truth.json");
    char merged[64];
    snprintf(merged, sizeof(merged), "merged-%s", method);
    ms_attribute_result *r = attribute(dir, has_base ? "fam/base" : NULL, merged);
    cr_assert_gt(r->n_tensors, 50);
    for (size_t t = 0; t < r->n_tensors; t++) {
        const ms_attr_scope *sc = &r->tensors[t];
        const char *cls = ms_filter_name((ms_filter)sc->filter);
        for (int i = 0; i < 3; i++)
            cr_assert_float_eq(sc->fit.coef[i], truth_coef(truth, method, i, cls, sc->name),
                               1e-4, "%s %s donor%d: %.8f", method, sc->name, i + 1, sc->fit.coef[i]);
        cr_assert_lt(fabs(sc->fit.residual), 1e-6, "%s %s residual %g", method, sc->name,
                     sc->fit.residual);
    }
    /* one fit per filter class: the class coefficients, nothing left over */
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < 3; i++)
            cr_assert_float_eq(r->filters[f].fit.coef[i],
                               truth_coef(truth, method, i, ms_filter_name((ms_filter)f), NULL),
                               1e-4, "%s class %d donor%d", method, f, i + 1);
        cr_assert_lt(fabs(r->filters[f].fit.residual), 1e-6);
    }
    ms_attribute_result_free(r);
    cJSON_Delete(truth);
    free(dir);
}

Test(attribute, linear_recovers_weights_without_base)
{
    check_known("linear", false);
}

Test(attribute, task_arithmetic_recovers_filtered_weights)
{
    check_known("task_arithmetic", true);
}

/* TIES / DARE: no linear mix explains the merge; the fit must equal the
 * numpy peer's least squares and report the residual. */
static void check_peer(const char *method)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    char merged[64], peer[64];
    snprintf(merged, sizeof(merged), "merged-%s", method);
    snprintf(peer, sizeof(peer), "peer-%s.json", method);
    cJSON *p = an_load_json(dir, peer);
    ms_attribute_result *r = attribute(dir, "fam/base", merged);
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(p, "overall"), "merged");
    double resid = an_num(pm, "residual_share");
    cr_assert_gt(r->overall.fit.residual, 0.05, "a sparsifying merge leaves a residual");
    cr_assert_float_eq(r->overall.fit.residual, resid, 1e-6);
    for (int i = 0; i < 3; i++) {
        cr_assert_float_eq(r->overall.fit.coef[i],
                           cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pm, "coef"), i)->valuedouble,
                           1e-6);
        cr_assert_float_eq(r->overall.fit.share[i],
                           cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pm, "shares"), i)->valuedouble,
                           1e-6);
    }
    /* per layer: one fit over the layer's summed Gram matrices */
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(p, "layers");
    cr_assert_eq((size_t)cJSON_GetArraySize(layers), r->n_layers);
    for (size_t l = 0; l < r->n_layers; l++) {
        const cJSON *pl = cJSON_GetArrayItem(layers, (int)l);
        cr_assert_eq((int)an_num(pl, "layer"), r->layers[l].layer);
        const cJSON *lm = cJSON_GetObjectItemCaseSensitive(pl, "merged");
        cr_assert_float_eq(r->layers[l].fit.residual, an_num(lm, "residual_share"), 1e-6);
    }
    /* TIES keeps only entries that agree with the elected sign: the merged
     * delta agrees with each donor far more often than chance */
    for (int i = 0; i < 3; i++)
        cr_assert_gt(r->overall.sign_agreement[i], 0.6);
    ms_attribute_result_free(r);
    cJSON_Delete(p);
    free(dir);
}

/* Consensus shares against ref_merge.py's true contributions
 * sum_t <c_i,t, M_t> / sum_t ||M_t||^2 (c_i after trimming, sign election
 * and rescaling): within 0.02. */
static void check_consensus(const char *method)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    char merged[64], shares[64];
    snprintf(merged, sizeof(merged), "merged-%s", method);
    snprintf(shares, sizeof(shares), "shares-%s.json", method);
    cJSON *ref = an_load_json(dir, shares);
    const cJSON *ov = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(ref, "shares"), "overall");
    ms_model *m[5] = {an_open(dir, "fam/base"), an_open(dir, merged), an_open(dir, "fam/donor1"),
                      an_open(dir, "fam/donor2"), an_open(dir, "fam/donor3")};
    ms_attribute_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_attribute_run(m[0], m[1], (const ms_model *const *)m + 2, 3, &opts2, NULL,
                                  NULL, &r, &err), MS_OK, "%s", err.msg);
    cr_assert_eq(ms_attribute_consensus(r, m[0], m[1], (const ms_model *const *)m + 2, 3,
                                        &opts2, &err), MS_OK, "%s", err.msg);
    double sum = r->overall.consensus_unattributed;
    for (int i = 0; i < 3; i++) {
        char d[32];
        snprintf(d, sizeof(d), "fam/donor%d", i + 1);
        cr_assert_float_eq(r->overall.consensus[i], an_num(ov, d), 0.02, "%s %s: %.4f vs %.4f",
                           method, d, r->overall.consensus[i], an_num(ov, d));
        sum += r->overall.consensus[i];
    }
    /* the split is exact; ||M||^2 comes from the Gram pass (float32 runs
     * summed in float64), hence 1e-6 */
    cr_assert_float_eq(sum, 1.0, 1e-6, "consensus shares split ||M||^2 completely: %.9f", sum);
    ms_attribute_result_free(r);
    for (int i = 0; i < 5; i++)
        ms_model_close(m[i]);
    cJSON_Delete(ref);
    free(dir);
}

Test(attribute, ties_consensus_shares_near_true_contributions)
{
    check_consensus("ties");
}

Test(attribute, dare_ties_consensus_shares_near_true_contributions)
{
    check_consensus("dare_ties");
}

Test(attribute, ties_matches_numpy_least_squares)
{
    check_peer("ties");
}

Test(attribute, dare_ties_matches_numpy_least_squares)
{
    check_peer("dare_ties");
}

Test(attribute, recipe_puts_intended_weights_beside_measured)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    char *recipe = ms_path_join(dir, "recipes/task_arithmetic.yml");
    char *merged = ms_path_join(dir, "merged-task_arithmetic");
    char *fam = ms_path_join(dir, "fam");
    const char *argv[] = {"attribute", "--recipe", recipe, "--models-dir", fam, merged,
                          "--json", "-", "--threads", "1", NULL};
    char *out = NULL, *errout = NULL;
    int rc = ms_test_run(argv, &out, &errout);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, errout);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j);
    cJSON *truth = an_load_json(dir, "truth.json");
    const cJSON *t;
    int seen = 0;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "tensors")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring;
        const char *cls = cJSON_GetObjectItemCaseSensitive(t, "filter")->valuestring;
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(t, "intended");
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(t, "coefficients");
        for (int i = 0; i < 3; i++) {
            char d[32];
            snprintf(d, sizeof(d), "fam/donor%d", i + 1);
            double want = truth_coef(truth, "task_arithmetic", i, cls, name);
            cr_assert_float_eq(an_num(in, d), want, 1e-9, "%s %s intended", name, d);
            cr_assert_float_eq(an_num(co, d), want, 1e-4, "%s %s measured", name, d);
        }
        seen++;
    }
    cr_assert_gt(seen, 50);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "schema")->valuestring,
                     "mergescope.attribute/1");
    cJSON_Delete(truth);
    cJSON_Delete(j);
    free(out);
    free(errout);
    free(recipe);
    free(merged);
    free(fam);
    free(dir);
}

/* ------------------------------------------------------------ real family */

static ms_attribute_result *real(const char *merged, const char *base)
{
    char *dir = ms_test_shared("real-models/stories260K-family");
    if (!dir)
        return NULL;
    const char *dn[3] = {"stories260K-ft-kjv.safetensors", "stories260K-ft-devil.safetensors",
                         "stories260K-ft-pycode.safetensors"};
    ms_model *b = an_open(dir, base), *m = an_open(dir, merged), *d[3];
    for (int i = 0; i < 3; i++)
        d[i] = an_open(dir, dn[i]);
    ms_attribute_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_attribute_run(b, m, (const ms_model *const *)d, 3, &opts2, NULL, NULL,
                                  &r, &err), MS_OK, "%s", err.msg);
    ms_model_close(b);
    ms_model_close(m);
    for (int i = 0; i < 3; i++)
        ms_model_close(d[i]);
    free(dir);
    return r;
}

Test(attribute, real_task_arithmetic_weights)
{
    const double want[3] = {0.5, 0.3, 0.2};
    const char *files[][2] = {
        {"stories260K-merge-ta.safetensors", "stories260K-base.safetensors"},
        {"stories260K-merge-ta.f32.gguf", "stories260K-base.f32.gguf"},
    };
    for (size_t f = 0; f < 2; f++) {
        ms_attribute_result *r = real(files[f][0], files[f][1]);
        if (!r)
            cr_skip_test("../shared/fixtures is absent");
        for (int i = 0; i < 3; i++)
            cr_assert_float_eq(r->overall.fit.coef[i], want[i], 1e-5, "%s donor %d: %.7f",
                               files[f][0], i, r->overall.fit.coef[i]);
        cr_assert_lt(fabs(r->overall.fit.residual), 1e-6);
        cr_assert_eq(r->n_tensors, 47);
        ms_attribute_result_free(r);
    }
}

Test(attribute, real_task_arithmetic_from_quantized_gguf)
{
    /* Q8_0 keeps ~8 bits per weight: the weights survive to ~1e-3 and the
     * quantization noise shows up as residual */
    const double want[3] = {0.5, 0.3, 0.2};
    ms_attribute_result *r = real("stories260K-merge-ta.Q8_0.gguf", "stories260K-base.safetensors");
    if (!r)
        cr_skip_test("../shared/fixtures is absent");
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(r->overall.fit.coef[i], want[i], 5e-3);
    cr_assert_gt(r->overall.fit.residual, 1e-4);
    cr_assert_lt(r->overall.fit.residual, 0.1);
    ms_attribute_result_free(r);
}

Test(attribute, real_ties_readme_weights)
{
    const double want[3] = {0.551505, 0.405822, 0.369490};
    ms_attribute_result *r = real("stories260K-merge-ties.safetensors", "stories260K-base.safetensors");
    if (!r)
        cr_skip_test("../shared/fixtures is absent");
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(r->overall.fit.coef[i], want[i], 1e-6);
    cr_assert_gt(r->overall.fit.residual, 0.1);
    ms_attribute_result_free(r);
}

/* ------------------------------------------------------------ the solver */

Test(attribute, fit_closed_form)
{
    /* d1 = (1,0,0), d2 = (1,1,0), M = (3,2,5): coef (1, 2), residual 25/38 */
    double A[4] = {1, 1, 1, 2}, b[2] = {3, 5}, mm = 38;
    ms_fit f;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_fit_solve(A, b, mm, 2, &f, &err), MS_OK);
    cr_assert_float_eq(f.coef[0], 1.0, 1e-12);
    cr_assert_float_eq(f.coef[1], 2.0, 1e-12);
    cr_assert_float_eq(f.share[0], 3.0 / 38, 1e-12);
    cr_assert_float_eq(f.share[1], 10.0 / 38, 1e-12);
    cr_assert_float_eq(f.residual, 25.0 / 38, 1e-12);
    /* equilibrated matrix [[1, 1/sqrt2], [1/sqrt2, 1]]: (1+r)/(1-r) */
    double r = 1 / sqrt(2.0);
    cr_assert_float_eq(f.condition, (1 + r) / (1 - r), 1e-9);
    cr_assert(!f.ill_conditioned);
    ms_fit_free(&f);
}

Test(attribute, duplicate_donor_is_flagged_not_hidden)
{
    /* two identical donors: singular normal equations; the minimum-norm
     * solution splits the weight, the fit is flagged */
    double A[4] = {2, 2, 2, 2}, b[2] = {4, 4}, mm = 8;
    ms_fit f;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_fit_solve(A, b, mm, 2, &f, &err), MS_OK);
    cr_assert(f.ill_conditioned);
    cr_assert(isinf(f.condition));
    cr_assert_float_eq(f.coef[0], 1.0, 1e-12);
    cr_assert_float_eq(f.coef[1], 1.0, 1e-12);
    cr_assert_float_eq(f.residual, 0.0, 1e-12);
    ms_fit_free(&f);
    /* a zero donor delta gets coefficient 0 */
    double A2[4] = {0, 0, 0, 1}, b2[2] = {0, 2};
    cr_assert_eq(ms_fit_solve(A2, b2, 5, 2, &f, &err), MS_OK);
    cr_assert_float_eq(f.coef[0], 0.0, 1e-15);
    cr_assert_float_eq(f.coef[1], 2.0, 1e-12);
    cr_assert(f.ill_conditioned);
    ms_fit_free(&f);
}

Test(attribute, cli_duplicate_donor_warns)
{
    char *dir = ms_test_shared("real-models/stories260K-family");
    if (!dir)
        cr_skip_test("../shared/fixtures is absent");
    char *b = ms_path_join(dir, "stories260K-base.safetensors");
    char *m = ms_path_join(dir, "stories260K-merge-ta.safetensors");
    char *d = ms_path_join(dir, "stories260K-ft-kjv.safetensors");
    const char *argv[] = {"attribute", "--base", b, m, d, d, NULL};
    char *out = NULL, *errout = NULL;
    int rc = ms_test_run(argv, &out, &errout);
    cr_assert_eq(rc, 0, "%s", errout);
    cr_assert(strstr(errout, "ill-conditioned"), "stderr: %s", errout);
    cr_assert(strstr(out, "ill-conditioned"), "stdout: %s", out);
    free(out);
    free(errout);
    free(b);
    free(m);
    free(d);
    free(dir);
}
