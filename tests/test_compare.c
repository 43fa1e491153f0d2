/*
 * test_compare.c - compare against the numpy peer (peer_audit.py's
 * model_cosine / model_rel_l2 over base, donors and merged), the real
 * family's README numbers, GGUF against its safetensors source, unmatched
 * tensors, and thread-count independence.
 */
#include <math.h>

#include "analyze_test.h"
#include "mergescope/analyze.h"
#include "mergescope/banned.h"

static ms_compare_result *compare(ms_model **m, size_t n, int threads)
{
    ms_stream_opts o = {threads, 0, NULL, NULL, 0};
    ms_compare_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_compare_run((const ms_model *const *)m, n, &o, &r, &err), MS_OK,
                 "%s", err.msg);
    return r;
}

static double peer_at(const cJSON *scope, const char *key, size_t i, size_t j)
{
    const cJSON *row = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(scope, key), (int)i);
    return cJSON_GetArrayItem(row, (int)j)->valuedouble;
}

static void check_scope(const ms_compare_scope *sc, const cJSON *peer, size_t n,
                        const char *what)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            const ms_pair_figures *f = &sc->pairs[ms_gram_pair_index(n, i, j)];
            cr_assert_eq(f->a, i);
            cr_assert_eq(f->b, j);
            cr_assert_float_eq(f->cosine, peer_at(peer, "model_cosine", i, j), 1e-6,
                               "%s cosine %zu-%zu", what, i, j);
            cr_assert_float_eq(f->rel_l2, peer_at(peer, "model_rel_l2", i, j), 1e-6,
                               "%s rel_l2 %zu-%zu: %.9f", what, i, j, f->rel_l2);
        }
}

Test(compare, equals_numpy_peer)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    const char *names[] = {"fam/base", "fam/donor1", "fam/donor2", "fam/donor3", "merged-ties"};
    ms_model *m[5];
    for (int i = 0; i < 5; i++)
        m[i] = an_open(dir, names[i]);
    ms_compare_result *r = compare(m, 5, 2);
    cJSON *p = an_load_json(dir, "peer-ties.json");
    check_scope(&r->overall, cJSON_GetObjectItemCaseSensitive(p, "overall"), 5, "overall");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(p, "layers");
    cr_assert_eq((size_t)cJSON_GetArraySize(layers), r->n_layers);
    for (size_t l = 0; l < r->n_layers; l++) {
        const cJSON *pl = cJSON_GetArrayItem(layers, (int)l);
        cr_assert_eq((int)an_num(pl, "layer"), r->layers[l].layer);
        check_scope(&r->layers[l], pl, 5, "layer");
    }
    const cJSON *pt;
    size_t seen = 0;
    cJSON_ArrayForEach(pt, cJSON_GetObjectItemCaseSensitive(p, "tensors")) {
        const char *name = cJSON_GetObjectItemCaseSensitive(pt, "name")->valuestring;
        for (size_t t = 0; t < r->n_tensors; t++)
            if (!strcmp(r->tensors[t].name, name)) {
                check_scope(&r->tensors[t], pt, 5, name);
                seen++;
            }
    }
    cr_assert_eq(seen, r->n_tensors);
    cr_assert_eq(r->n_unmatched, 0);
    /* donors are continuous float32 deltas: no identical elements */
    cr_assert_lt(r->overall.pairs[ms_gram_pair_index(5, 0, 1)].identical, 0.01);
    cJSON_Delete(p);
    ms_compare_result_free(r);
    for (int i = 0; i < 5; i++)
        ms_model_close(m[i]);
    free(dir);
}

Test(compare, bit_identical_whatever_the_threads)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    ms_model *m[3] = {an_open(dir, "fam/base"), an_open(dir, "fam/donor1"),
                      an_open(dir, "merged-task_arithmetic")};
    ms_compare_result *a = compare(m, 3, 1), *b = compare(m, 3, 2);
    for (size_t t = 0; t < a->n_tensors; t++)
        for (size_t p = 0; p < a->n_pairs; p++)
            cr_assert(memcmp(&a->tensors[t].pairs[p], &b->tensors[t].pairs[p],
                             sizeof(ms_pair_figures)) == 0);
    cr_assert(memcmp(a->overall.pairs, b->overall.pairs, 3 * sizeof(ms_pair_figures)) == 0);
    ms_compare_result_free(a);
    ms_compare_result_free(b);
    for (int i = 0; i < 3; i++)
        ms_model_close(m[i]);
    free(dir);
}

Test(compare, lists_tensors_missing_somewhere)
{
    char *dir = an_ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench or /usr/bin/python3 is absent");
    /* the stack has 13 layers, the donor 6: layers 6..12 exist only in
     * the stack and must be listed, not dropped silently */
    ms_model *m[2] = {an_open(dir, "fam/donor1"), an_open(dir, "merged-stack")};
    ms_compare_result *r = compare(m, 2, 2);
    size_t extra = 0;
    for (size_t i = 0; i < r->n_unmatched; i++) {
        cr_assert_eq(r->unmatched[i].model, 0, "missing in the donor");
        cr_assert_eq(r->unmatched[i].reason, 0);
        extra++;
    }
    cr_assert_eq(extra, 7 * 9, "7 layers of 9 tensors: %zu", extra);
    /* layer 0 of the stack is donor1's layer 0 */
    cr_assert_eq(r->layers[0].layer, 0);
    cr_assert_float_eq(r->layers[0].pairs[0].identical, 1.0, 0);
    cr_assert_float_eq(r->layers[0].pairs[0].rel_l2, 0.0, 0);
    cr_assert_lt(r->layers[4].pairs[0].cosine, 0.5, "stack layer 4 is donor2's layer 2");
    ms_compare_result_free(r);
    ms_model_close(m[0]);
    ms_model_close(m[1]);
    free(dir);
}

/* ------------------------------------------------------------ real family */

static ms_model *real(const char *file)
{
    char *dir = ms_test_shared("real-models/stories260K-family");
    if (!dir)
        return NULL;
    ms_model *m = an_open(dir, file);
    free(dir);
    return m;
}

Test(compare, real_family_readme_norms)
{
    ms_model *m[5] = {real("stories260K-base.safetensors"), NULL, NULL, NULL, NULL};
    if (!m[0])
        cr_skip_test("../shared/fixtures is absent");
    m[1] = real("stories260K-ft-kjv.safetensors");
    m[2] = real("stories260K-ft-devil.safetensors");
    m[3] = real("stories260K-ft-pycode.safetensors");
    m[4] = real("stories260K-merge-ties.safetensors");
    ms_compare_result *r = compare(m, 5, 2);
    /* ||tau|| of each donor and ||merge - base||, README "Reference values" */
    const double want[4] = {4.542237, 3.244760, 4.682302, 4.992456};
    for (size_t i = 0; i < 4; i++)
        cr_assert_float_eq(r->overall.pairs[ms_gram_pair_index(5, 0, i + 1)].l2, want[i], 1e-6,
                           "model %zu: %.7f", i + 1,
                           r->overall.pairs[ms_gram_pair_index(5, 0, i + 1)].l2);
    /* ||tau_a - tau_b||^2 = |a|^2 + |b|^2 - 2 cos |a||b| with the README cosines */
    double cos_kd = 0.323099;
    double d = sqrt(want[0] * want[0] + want[1] * want[1] - 2 * cos_kd * want[0] * want[1]);
    cr_assert_float_eq(r->overall.pairs[ms_gram_pair_index(5, 1, 2)].l2, d, 2e-6);
    cr_assert_eq(r->n_tensors, 47);
    ms_compare_result_free(r);
    for (int i = 0; i < 5; i++)
        ms_model_close(m[i]);
}

Test(compare, gguf_against_its_safetensors_source)
{
    ms_model *m[4] = {real("stories260K-merge-ta.safetensors"), NULL, NULL, NULL};
    if (!m[0])
        cr_skip_test("../shared/fixtures is absent");
    m[1] = real("stories260K-merge-ta.f32.gguf");
    m[2] = real("stories260K-merge-ta.Q8_0.gguf");
    m[3] = real("stories260K-base.safetensors");
    ms_compare_result *r = compare(m, 4, 2);
    cr_assert_eq(r->n_tensors, 47);
    cr_assert_eq(r->n_unmatched, 0);
    /* F32 GGUF: names mapped, Q/K un-permuted: bit-identical */
    const ms_pair_figures *f = &r->overall.pairs[ms_gram_pair_index(4, 0, 1)];
    cr_assert_eq(f->identical, 1.0);
    cr_assert_eq(f->max_abs, 0.0);
    cr_assert_eq(f->l2, 0.0);
    for (size_t t = 0; t < r->n_tensors; t++)
        cr_assert_eq(r->tensors[t].pairs[ms_gram_pair_index(4, 0, 1)].identical, 1.0,
                     "%s", r->tensors[t].name);
    /* Q8_0: close (8-bit blocks), far closer than the base is */
    const ms_pair_figures *q = &r->overall.pairs[ms_gram_pair_index(4, 0, 2)];
    const ms_pair_figures *b = &r->overall.pairs[ms_gram_pair_index(4, 0, 3)];
    cr_assert_gt(q->cosine, 0.9999);
    cr_assert_lt(q->rel_l2, 0.01);
    cr_assert_lt(q->rel_l2, b->rel_l2 / 3);
    /* merge-ta vs base: ||M|| from the README */
    cr_assert_float_eq(b->l2, 3.060493, 1e-6);
    ms_compare_result_free(r);
    for (int i = 0; i < 4; i++)
        ms_model_close(m[i]);
}

Test(compare, readme_numbers_from_ggufs_alone)
{
    ms_model *m[3] = {real("stories260K-base.f32.gguf"), NULL, NULL};
    if (!m[0])
        cr_skip_test("../shared/fixtures is absent");
    m[1] = real("stories260K-merge-ta.f32.gguf");
    m[2] = real("stories260K-merge-ta.Q4_K_M.gguf");
    ms_compare_result *r = compare(m, 3, 2);
    cr_assert_eq(r->n_unmatched, 0);
    /* ||merge-ta - base|| (README) between two GGUF files */
    cr_assert_float_eq(r->overall.pairs[ms_gram_pair_index(3, 0, 1)].l2, 3.060493, 1e-6);
    /* Q4_K_M (mostly Q5_0 here): a few percent off, still the same model */
    const ms_pair_figures *q = &r->overall.pairs[ms_gram_pair_index(3, 1, 2)];
    cr_assert_gt(q->cosine, 0.999);
    cr_assert_lt(q->rel_l2, 0.05);
    ms_compare_result_free(r);
    for (int i = 0; i < 3; i++)
        ms_model_close(m[i]);
}

Test(compare, cli_needs_two_models)
{
    const char *argv[] = {"compare", "only-one", NULL};
    char *out = NULL, *errout = NULL;
    cr_assert_eq(ms_test_run(argv, &out, &errout), 2);
    cr_assert(strstr(errout, "at least two"), "%s", errout);
    free(out);
    free(errout);
}

Test(compare, gram_pair_index_is_dense)
{
    for (size_t k = 2; k < 9; k++) {
        size_t want = 0;
        for (size_t i = 0; i < k; i++)
            for (size_t j = i + 1; j < k; j++)
                cr_assert_eq(ms_gram_pair_index(k, i, j), want++);
    }
}

/* Element e of test vector i: a shared base plus per-row deltas of both
 * signs, with exact zeros (x_i == x_0) at every seventh element. */
static float flag_vec(size_t i, size_t e)
{
    float base = (float)((e * 37) % 101) / 50.0f - 1.0f;
    if (i == 0 || e % 7 == 0)
        return base;
    return base + (float)((e * (i + 3) * 13) % 29) / 64.0f - 0.2f;
}

/* Each flag computes what it names and leaves the rest zero, against
 * plain scalar loops; two blocks and a ragged tail. */
Test(compare, gram_flags_compute_what_is_asked)
{
    enum { K = 4, N = 4096 + 1003 };
    float *x[K];
    for (size_t i = 0; i < K; i++) {
        x[i] = malloc(N * sizeof(float));
        for (size_t e = 0; e < N; e++)
            x[i][e] = flag_vec(i, e);
    }
    double *work = malloc(ms_gram_work_doubles(K) * sizeof(double));
    double delta_g[4][K * K];
    const unsigned flags[] = {0, MS_GRAM_PAIRS, MS_GRAM_SIGNS, MS_GRAM_PAIRS | MS_GRAM_SIGNS};
    for (size_t f = 0; f < 4; f++) {
        ms_gram g;
        ms_error err;
        cr_assert_eq(ms_gram_init(&g, K, &err), MS_OK);
        ms_gram_add_chunk(&g, (const float *const *)x, N, flags[f], work);
        bool pairs = flags[f] & MS_GRAM_PAIRS, signs = flags[f] & MS_GRAM_SIGNS;
        for (size_t i = 0; i < K; i++)
            for (size_t j = i + 1; j < K; j++) {
                double mx = 0, dd = 0;
                uint64_t same = 0, both = 0, eq = 0;
                for (size_t e = 0; e < N; e++) {
                    float di = x[i][e] - x[0][e], dj = x[j][e] - x[0][e];
                    float d = fabsf(x[i][e] - x[j][e]);
                    mx = d > mx ? d : mx;
                    eq += x[i][e] == x[j][e];
                    both += di != 0 && dj != 0;
                    same += (di > 0 && dj > 0) || (di < 0 && dj < 0);
                    dd += (double)di * dj;
                }
                const ms_pair_stats *ps = &g.pairs[ms_gram_pair_index(K, i, j)];
                cr_assert_eq(ps->max_abs, pairs ? mx : 0.0, "flags %u (%zu,%zu)", flags[f], i, j);
                cr_assert_eq(ps->identical, pairs ? eq : 0, "flags %u (%zu,%zu)", flags[f], i, j);
                bool sg = signs && i == 1;
                cr_assert_eq(ps->sign_same, sg ? same : 0, "flags %u (%zu,%zu)", flags[f], i, j);
                cr_assert_eq(ps->sign_both, sg ? both : 0, "flags %u (%zu,%zu)", flags[f], i, j);
                if (i > 0)
                    cr_assert_float_eq(ms_gram_delta_dot(&g, 0, i, j), dd, 1e-6 * (1 + fabs(dd)),
                                       "flags %u <d%zu, d%zu>", flags[f], i, j);
            }
        cr_assert_eq(g.n, (uint64_t)N);
        for (size_t i = 1; i < K; i++)
            for (size_t j = 1; j < K; j++)
                delta_g[f][i * K + j] = ms_gram_delta_dot(&g, 0, i, j);
        ms_gram_free(&g);
    }
    /* the delta products are the same bits whichever flags (attribute
     * alone forms them in registers, the others through the w rows) */
    for (size_t f = 1; f < 4; f++)
        for (size_t i = 1; i < K; i++)
            for (size_t j = 1; j < K; j++)
                cr_assert(memcmp(&delta_g[f][i * K + j], &delta_g[0][i * K + j],
                                 sizeof(double)) == 0, "flags %u <d%zu, d%zu>", flags[f], i, j);
    free(work);
    for (size_t i = 0; i < K; i++)
        free(x[i]);
}
