/*
 * test_audit.c - the audit: selection kernels against brute force, the
 * Q8_0 lattice test, shares against ../shared/bench/ref_merge.py on a
 * generated family for every method, fingerprints, the real stories260K
 * family's reference norms and cosines, and --suggest re-audited.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <cjson/cJSON.h>

#include "testutil.h"
#include "mergescope/audit.h"
#include "mergescope/dtype.h"
#include "mergescope/merge.h"
#include "mergescope/util.h"

/* ================================================================ kernels */

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Brute force: keep the k largest |x|, equal values by lowest index. */
static void brute_topk(const float *x, size_t n, size_t k, uint8_t *keep)
{
    memset(keep, 0, n);
    for (size_t c = 0; c < k; c++) {
        size_t best = n;
        for (size_t j = 0; j < n; j++)
            if (!keep[j] && (best == n || fabsf(x[j]) > fabsf(x[best])))
                best = j;
        keep[best] = 1;
    }
}

static void cut_select(const float *x, size_t n, ms_select *s)
{
    static uint64_t hist[MS_HIST_BINS];
    memset(hist, 0, sizeof(hist));
    ms_hist_hi_add(hist, x, n);
    ms_select_hi(s, hist);
    memset(hist, 0, sizeof(hist));
    ms_hist_lo_add(hist, s->hi, x, n);
    ms_select_lo(s, hist);
}

Test(audit_kernels, topk_matches_brute_force_with_ties)
{
    enum { N = 600 };
    float x[N];
    uint8_t a[N], b[N];
    uint32_t seed = 7;
    for (size_t j = 0; j < N; j++) /* few distinct magnitudes: many ties */
        x[j] = (float)((int)(lcg(&seed) % 9) - 4) * 0.125f;
    size_t ks[] = {1, 5, 100, 299, 300, 599};
    for (size_t q = 0; q < sizeof(ks) / sizeof(ks[0]); q++) {
        ms_select s = {.pos = N - ks[q]};
        cut_select(x, N, &s);
        ms_cut c;
        ms_cut_topk(&c, N, ks[q], &s);
        for (size_t off = 0; off < N; off += 37) /* chunks in order */
            ms_cut_apply(&c, x + off, N - off < 37 ? N - off : 37, a + off);
        brute_topk(x, N, ks[q], b);
        cr_assert_arr_eq(a, b, N, "top-%zu differs", ks[q]);
    }
}

Test(audit_kernels, range_matches_stable_sort_positions)
{
    enum { N = 500 };
    float x[N];
    uint8_t a[N];
    size_t pos[N];
    uint32_t seed = 11;
    for (size_t j = 0; j < N; j++)
        x[j] = (float)((int)(lcg(&seed) % 13) - 6) * 0.25f;
    /* position of each element in a stable ascending sort by |x| */
    for (size_t j = 0; j < N; j++) {
        size_t p = 0;
        for (size_t i = 0; i < N; i++)
            p += fabsf(x[i]) < fabsf(x[j]) || (fabsf(x[i]) == fabsf(x[j]) && i < j);
        pos[j] = p;
    }
    size_t lo = 123, hi = 431;
    ms_select sa = {.pos = lo}, sb = {.pos = hi - 1};
    cut_select(x, N, &sa);
    cut_select(x, N, &sb);
    ms_cut c;
    ms_cut_range(&c, lo, hi, &sa, &sb);
    for (size_t off = 0; off < N; off += 64)
        ms_cut_apply(&c, x + off, N - off < 64 ? N - off : 64, a + off);
    for (size_t j = 0; j < N; j++)
        cr_assert_eq(a[j], pos[j] >= lo && pos[j] < hi, "element %zu", j);
}

Test(audit_kernels, uniform_draws_are_uniform_and_keyed)
{
    uint64_t k1 = ms_rng_key(1, "t", 0, 0), k2 = ms_rng_key(2, "t", 0, 0);
    double sum = 0.0;
    size_t same = 0, n = 200000;
    for (size_t j = 0; j < n; j++) {
        float u = ms_rng_uniform(k1, j);
        cr_assert(u >= 0.0f && u < 1.0f);
        sum += u;
        same += u == ms_rng_uniform(k2, j);
    }
    /* mean of n uniforms: sd = 1/sqrt(12 n) = 6.5e-4 */
    cr_assert(fabs(sum / (double)n - 0.5) < 0.004, "mean %g", sum / (double)n);
    cr_assert(same < 100, "seeds give the same stream");
}

/* llama.cpp's Q8_0 reference round trip of one block, then bf16. */
static void q8_roundtrip(const float *x, float *out)
{
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    float d16 = ms_f16_to_f32(ms_f32_to_f16(d));
    for (int j = 0; j < 32; j++) {
        float v = x[j] * id;
        float q = copysignf(floorf(fabsf(v) + 0.5f), v);
        out[j] = ms_bf16_to_f32(ms_f32_to_bf16(q * d16));
    }
}

Test(audit_kernels, q8_lattice_detects_roundtrip_not_noise)
{
    uint32_t seed = 3;
    int fit_rt = 0, fit_raw = 0;
    for (int b = 0; b < 200; b++) {
        float x[32], y[32];
        for (int j = 0; j < 32; j++)
            x[j] = ms_bf16_to_f32(ms_f32_to_bf16(((float)(lcg(&seed) % 20001) - 10000.0f) * 1e-5f));
        q8_roundtrip(x, y);
        bool tested;
        fit_rt += ms_q8_block_fits(y, 32, MS_DTYPE_BF16, &tested);
        fit_raw += ms_q8_block_fits(x, 32, MS_DTYPE_BF16, &tested);
    }
    cr_assert_eq(fit_rt, 200, "round-tripped blocks that fit: %d", fit_rt);
    cr_assert_eq(fit_raw, 0, "plain bf16 blocks that fit: %d", fit_raw);
}

/* ===================================================== end to end helpers */

static char *bench_dir(void)
{
    char *fx = ms_test_shared("");
    if (!fx)
        return NULL;
    char *b = ms_path_join(fx, "../bench");
    free(fx);
    if (b && !ms_path_is_file(b) && !ms_path_is_dir(b)) {
        free(b);
        return NULL;
    }
    return b;
}

/* The reference family and shares, generated once per build directory. */
static char *ref_dir(void)
{
    char *bench = bench_dir();
    if (!bench)
        return NULL;
    char *dir = ms_test_gen("audit-ref");
    char *mark = ms_path_join(dir, "peer.json"); /* audit_ref.py's last output */
    if (!ms_path_is_file(mark)) {
        mkdir(MS_GEN_DIR, 0755);
        mkdir(dir, 0755);
        char cmd[4096];
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/audit_ref.py '%s' '%s'",
                 MS_SOURCE_DIR, dir, bench);
        cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    }
    free(mark);
    free(bench);
    return dir;
}

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_read_file(path, 1u << 28, &text, &len, &err), MS_OK, "read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert_not_null(j, "parse %s", path);
    return j;
}

/* Run `mergescope audit RECIPE --models-dir FAM --json OUT [extra]`. */
/* `audit RECIPE --models-dir FAM --json OUT -q [EXTRA1 [EXTRA2]]`, which
 * must succeed; its JSON. */
static cJSON *audit_json(const char *recipe, const char *fam, const char *out,
                         const char *extra1, const char *extra2)
{
    const char *argv[] = {"audit", recipe, "--models-dir", fam, "--json", out, "-q",
                          extra1, extra2, NULL};
    char *so = NULL, *se = NULL;
    int rc = ms_test_run(argv, &so, &se);
    cr_assert_eq(rc, 0, "audit %s: exit %d\n%s", recipe, rc, se);
    free(so);
    free(se);
    return load_json(out);
}

static cJSON *run_audit(const char *dir, const char *method, const char *extra1,
                        const char *extra2)
{
    char recipe[1024], fam[1024], out[1024];
    snprintf(recipe, sizeof(recipe), "%s/fam/recipes/%s.yml", dir, method);
    snprintf(fam, sizeof(fam), "%s/fam", dir);
    /* tests run in parallel: each set of options writes its own file */
    snprintf(out, sizeof(out), "%s/audit-%s%s%s.json", dir, method, extra1 ? extra1 : "",
             extra2 ? extra2 : "");
    return audit_json(recipe, fam, out, extra1, extra2);
}

static const cJSON *donor(const cJSON *audit, const char *name)
{
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(audit, "donors"))
        if (strcmp(cJSON_GetObjectItem(d, "name")->valuestring, name) == 0)
            return d;
    cr_assert_fail("donor %s missing", name);
    return NULL;
}

static void check_share(const char *what, const cJSON *got, double want, const cJSON *iv,
                        bool random)
{
    cr_assert(cJSON_IsNumber(got), "%s: no share", what);
    if (!random) {
        cr_assert(fabs(got->valuedouble - want) <= 1e-4, "%s: %.6f vs reference %.6f", what,
                  got->valuedouble, want);
        return;
    }
    cr_assert(cJSON_IsArray(iv), "%s: no interval", what);
    double lo = cJSON_GetArrayItem(iv, 0)->valuedouble, hi = cJSON_GetArrayItem(iv, 1)->valuedouble;
    cr_assert(want >= lo && want <= hi, "%s: reference %.5f outside [%.5f, %.5f]", what, want,
              lo, hi);
    cr_assert(hi - lo < 0.2, "%s: interval [%.4f, %.4f] too wide to mean anything", what, lo, hi);
}

static void compare_method(const char *method, bool random)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char refp[1024];
    snprintf(refp, sizeof(refp), "%s/ref-%s.json", dir, method);
    cJSON *ref = load_json(refp);
    cJSON *au = run_audit(dir, method, NULL, NULL);
    const cJSON *sh = cJSON_GetObjectItem(ref, "shares");
    const cJSON *ov = cJSON_GetObjectItem(sh, "overall"), *x;
    int n = 0;
    cJSON_ArrayForEach(x, ov) {
        const cJSON *d = donor(au, x->string);
        check_share(x->string, cJSON_GetObjectItem(d, "share"), x->valuedouble,
                    cJSON_GetObjectItem(d, "share_interval"), random);
        n++;
        if (random)
            continue;
        const char *cls[] = {"self_attn", "mlp", "other"};
        for (int c = 0; c < 3; c++) {
            double want = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(sh, "per_class"),
                                                                  cls[c]), x->string)->valuedouble;
            const cJSON *got = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "share_by_filter"), cls[c]);
            if (cJSON_IsNull(got))
                cr_assert(fabs(want) < 1e-12, "%s %s: null share, reference %g", x->string,
                          cls[c], want);
            else
                check_share(cls[c], got, want, NULL, false);
        }
    }
    cr_assert_eq(n, cJSON_GetArraySize(cJSON_GetObjectItem(au, "donors")), "donor count");
    if (!random) {
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItem(au, "layers")) {
            char key[16];
            snprintf(key, sizeof(key), "%d", cJSON_GetObjectItem(l, "layer")->valueint);
            const cJSON *rl = cJSON_GetObjectItem(cJSON_GetObjectItem(sh, "per_layer"), key);
            cJSON_ArrayForEach(x, cJSON_GetObjectItem(l, "shares"))
                check_share(key, x, cJSON_GetObjectItem(rl, x->string)->valuedouble, NULL, false);
        }
    }
    cJSON_Delete(ref);
    cJSON_Delete(au);
    free(dir);
}

Test(audit_ref, linear, .timeout = 300) { compare_method("linear", false); }
Test(audit_ref, task_arithmetic, .timeout = 300) { compare_method("task_arithmetic", false); }
Test(audit_ref, ties, .timeout = 300) { compare_method("ties", false); }
Test(audit_ref, breadcrumbs, .timeout = 300) { compare_method("breadcrumbs", false); }
Test(audit_ref, breadcrumbs_ties, .timeout = 300) { compare_method("breadcrumbs_ties", false); }
Test(audit_ref, slerp, .timeout = 300) { compare_method("slerp", false); }
Test(audit_ref, passthrough, .timeout = 300) { compare_method("passthrough", false); }
Test(audit_ref, dare_ties, .timeout = 300) { compare_method("dare_ties", true); }
Test(audit_ref, dare_linear, .timeout = 300) { compare_method("dare_linear", true); }
Test(audit_ref, della, .timeout = 300) { compare_method("della", true); }
Test(audit_ref, della_linear, .timeout = 300) { compare_method("della_linear", true); }

/* sce, model_stock, nuslerp: references from audit_ref.py (overall only). */
static void compare_overall(const char *method)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char refp[1024];
    snprintf(refp, sizeof(refp), "%s/ref-%s.json", dir, method);
    cJSON *ref = load_json(refp), *au = run_audit(dir, method, NULL, NULL);
    const cJSON *x;
    int n = 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "shares"), "overall")) {
        check_share(x->string, cJSON_GetObjectItem(donor(au, x->string), "share"),
                    x->valuedouble, NULL, false);
        n++;
    }
    cr_assert_eq(n, cJSON_GetArraySize(cJSON_GetObjectItem(au, "donors")), "donor count");
    cJSON_Delete(ref);
    cJSON_Delete(au);
    free(dir);
}

Test(audit_ref, sce, .timeout = 300) { compare_overall("sce"); }
Test(audit_ref, model_stock, .timeout = 300) { compare_overall("model_stock"); }
Test(audit_ref, nuslerp, .timeout = 300) { compare_overall("nuslerp"); }

static bool has_fp(const cJSON *d, const char *kind)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(d, "fingerprints"))
        if (strcmp(cJSON_GetObjectItem(f, "kind")->valuestring, kind) == 0)
            return true;
    return false;
}

Test(audit_ref, fingerprints_flag_special_donors_only, .timeout = 300)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    cJSON *au = run_audit(dir, "task_arithmetic", NULL, NULL);
    char tp[1024];
    snprintf(tp, sizeof(tp), "%s/fam/truth.json", dir);
    cJSON *truth = load_json(tp);
    const cJSON *abl = cJSON_GetObjectItem(cJSON_GetObjectItem(truth, "abliterated"), "fam/donor2");
    cr_assert_not_null(abl);
    const cJSON *d2 = donor(au, "fam/donor2"), *f;
    cr_assert(has_fp(d2, "low_rank"), "abliterated donor not flagged");
    /* the flagged tensors are exactly the edited ones */
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(d2, "fingerprints")) {
        if (strcmp(cJSON_GetObjectItem(f, "kind")->valuestring, "low_rank") != 0)
            continue;
        const cJSON *t;
        int n = 0;
        cJSON_ArrayForEach(t, cJSON_GetObjectItem(f, "tensors")) {
            bool found = false;
            const cJSON *e;
            cJSON_ArrayForEach(e, cJSON_GetObjectItem(abl, "tensors"))
                found |= strcmp(e->valuestring, t->valuestring) == 0;
            cr_assert(found, "%s flagged but not abliterated", t->valuestring);
            n++;
        }
        cr_assert_eq(n, cJSON_GetArraySize(cJSON_GetObjectItem(abl, "tensors")));
    }
    cr_assert(has_fp(donor(au, "fam/donor3"), "dequantized:Q8_0"), "Q8_0 donor not flagged");
    cr_assert(!has_fp(donor(au, "fam/donor3"), "low_rank"));
    cr_assert(!has_fp(d2, "dequantized:Q8_0"));
    const char *clean[] = {"fam/donor1", "fam/donor4"};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(donor(au, clean[i]), "fingerprints")),
                     0, "clean donor %s flagged", clean[i]);
    cJSON_Delete(truth);
    cJSON_Delete(au);
    free(dir);
}

static void check_suggest(const char *method, const char *target, const char *per,
                          const double *want, const char *const *names, int n)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char recipe[1024], fam[1024], out[1024], js[1024];
    snprintf(recipe, sizeof(recipe), "%s/fam/recipes/%s.yml", dir, method);
    snprintf(fam, sizeof(fam), "%s/fam", dir);
    snprintf(out, sizeof(out), "%s/fam/recipes/suggest-%s-%s.yml", dir, method, per);
    snprintf(js, sizeof(js), "%s/suggest-%s-%s.json", dir, method, per);
    const char *argv[] = {"audit", recipe, "--models-dir", fam, "-q", "--suggest", out,
                          "--target", target, "--per", per, "--tolerance", "0.01", NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    free(so);
    free(se);
    const char *argv2[] = {"audit", out, "--models-dir", fam, "-q", "--json", js, NULL};
    cr_assert_eq(ms_test_run(argv2, &so, &se), 0, "re-audit: %s", se);
    free(so);
    free(se);
    cJSON *au = load_json(js);
    for (int i = 0; i < n; i++) {
        double got = cJSON_GetObjectItem(donor(au, names[i]), "share")->valuedouble;
        cr_assert(fabs(got - want[i]) <= 0.0101, "%s: re-audited share %.4f, target %.4f",
                  names[i], got, want[i]);
    }
    cJSON_Delete(au);
    free(dir);
}

Test(audit_suggest, ties_equal_shares_reaudited, .timeout = 300)
{
    const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
    double want[] = {0.25, 0.25, 0.25, 0.25};
    check_suggest("ties", "equal", "donor", want, names, 4);
}

Test(audit_suggest, task_arithmetic_named_target_per_filter, .timeout = 300)
{
    const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
    double want[] = {0.4, 0.2, 0.2, 0.2};
    check_suggest("task_arithmetic", "fam/donor1=0.4", "filter", want, names, 4);
}

/* ================================================= real stories260K family */

Test(audit_real, stories260k_task_vector_norms_and_cosines, .timeout = 120)
{
    char *fam = ms_test_shared("real-models/stories260K-family");
    if (!fam)
        cr_skip_test("../shared/fixtures/real-models is absent");
    char *tmp = ms_test_tmpdir();
    char *recipe = ms_path_join(tmp, "ta.yml");
    const char *text =
        "merge_method: task_arithmetic\n"
        "base_model: stories260K-base\n"
        "models:\n"
        "  - model: ft-kjv\n    parameters: {weight: 0.5}\n"
        "  - model: ft-devil\n    parameters: {weight: 0.3}\n"
        "  - model: ft-pycode\n    parameters: {weight: 0.2}\n";
    cr_assert(ms_test_write(recipe, text, strlen(text)));
    char m[4][1200], js[1024];
    const char *names[] = {"stories260K-base", "ft-kjv", "ft-devil", "ft-pycode"};
    const char *files[] = {"base", "ft-kjv", "ft-devil", "ft-pycode"};
    for (int i = 0; i < 4; i++)
        snprintf(m[i], sizeof(m[i]), "%s=%s/stories260K-%s.safetensors", names[i], fam, files[i]);
    snprintf(js, sizeof(js), "%s/out.json", tmp);
    const char *argv[] = {"audit", recipe, "--model", m[0], "--model", m[1], "--model", m[2],
                          "--model", m[3], "--json", js, "-q", NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    free(so);
    free(se);
    cJSON *au = load_json(js);
    /* README.md of the fixture: ||tau|| and task-vector cosines */
    const double norms[] = {4.542237, 3.244760, 4.682302};
    for (int i = 0; i < 3; i++) {
        double got = cJSON_GetObjectItem(donor(au, names[i + 1]), "tv_norm")->valuedouble;
        cr_assert(fabs(got - norms[i]) < 2e-6, "%s: ||tau|| %.7f, reference %.6f", names[i + 1],
                  got, norms[i]);
    }
    struct { const char *a, *b; double c; } cos[] = {
        {"ft-kjv", "ft-devil", 0.323099}, {"ft-kjv", "ft-pycode", 0.113117},
        {"ft-devil", "ft-pycode", 0.260187}};
    for (int k = 0; k < 3; k++) {
        const cJSON *p;
        bool found = false;
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(au, "pairs")) {
            const char *a = cJSON_GetObjectItem(p, "a")->valuestring;
            const char *b = cJSON_GetObjectItem(p, "b")->valuestring;
            if (!((strcmp(a, cos[k].a) == 0 && strcmp(b, cos[k].b) == 0) ||
                  (strcmp(a, cos[k].b) == 0 && strcmp(b, cos[k].a) == 0)))
                continue;
            found = true;
            double got = cJSON_GetObjectItem(p, "cosine")->valuedouble;
            cr_assert(fabs(got - cos[k].c) < 1e-6, "%s/%s: cosine %.7f, reference %.6f",
                      cos[k].a, cos[k].b, got, cos[k].c);
        }
        cr_assert(found);
    }
    /* real fine-tunes: nothing to fingerprint */
    for (int i = 1; i < 4; i++)
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(donor(au, names[i]), "fingerprints")),
                     0, "%s flagged", names[i]);
    cJSON_Delete(au);
    free(recipe);
    free(tmp);
    free(fam);
}

Test(audit_cli, missing_recipe_is_a_usage_error)
{
    const char *argv[] = {"audit", "/nonexistent/recipe.yml", "-q", NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 2);
    cr_assert(strstr(se, "mergescope: ") == se, "%s", se);
    free(so);
    free(se);
}

Test(audit_ref, sample_interval_covers_full_run, .timeout = 300)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    cJSON *full = run_audit(dir, "task_arithmetic", NULL, NULL);
    double want[4];
    const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
    for (int i = 0; i < 4; i++)
        want[i] = cJSON_GetObjectItem(donor(full, names[i]), "share")->valuedouble;
    cJSON_Delete(full);
    /* small chunks so every tensor has many; read about half of them */
    cJSON *au = run_audit(dir, "task_arithmetic", "--sample=0.5", "--chunk-elems=256");
    cr_assert_eq(cJSON_GetObjectItem(au, "sample")->valuedouble, 0.5);
    for (int i = 0; i < 4; i++) {
        const cJSON *d = donor(au, names[i]);
        check_share(names[i], cJSON_GetObjectItem(d, "share"), want[i],
                    cJSON_GetObjectItem(d, "share_interval"), true);
    }
    cJSON_Delete(au);
    free(dir);
}

/* ms-fixtures' own family: donor4 is a Q8_0 round trip, donor5 abliterated. */
Test(audit_fixtures, generated_family_fingerprints, .timeout = 120)
{
    char *truth_path = ms_test_gen("tiny/truth.json");
    if (!ms_path_is_file(truth_path)) {
        free(truth_path);
        cr_skip_test("generated fixtures are absent");
    }
    char *tmp = ms_test_tmpdir();
    char *recipe = ms_path_join(tmp, "ta.yml");
    const char *text =
        "merge_method: task_arithmetic\nbase_model: tiny/base\nmodels:\n"
        "  - model: tiny/donor1\n    parameters: {weight: 0.3}\n"
        "  - model: tiny/donor2\n    parameters: {weight: 0.3}\n"
        "  - model: tiny/donor3\n    parameters: {weight: 0.3}\n"
        "  - model: tiny/donor4\n    parameters: {weight: 0.3}\n"
        "  - model: tiny/donor5\n    parameters: {weight: 0.3}\n";
    cr_assert(ms_test_write(recipe, text, strlen(text)));
    char js[1024];
    snprintf(js, sizeof(js), "%s/out.json", tmp);
    const char *argv[] = {"audit", recipe, "--models-dir", MS_GEN_DIR, "--json", js, "-q", NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    free(so);
    free(se);
    cJSON *au = load_json(js), *truth = load_json(truth_path);
    cr_assert(has_fp(donor(au, "tiny/donor4"), "dequantized:Q8_0"));
    const cJSON *d5 = donor(au, "tiny/donor5"), *f, *want = NULL, *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(truth, "donors"))
        if (strcmp(cJSON_GetObjectItem(x, "name")->valuestring, "tiny/donor5") == 0)
            want = cJSON_GetObjectItem(x, "tensors");
    cr_assert_not_null(want);
    bool seen = false;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(d5, "fingerprints")) {
        if (strcmp(cJSON_GetObjectItem(f, "kind")->valuestring, "low_rank") != 0)
            continue;
        seen = true;
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(f, "tensors")),
                     cJSON_GetArraySize(want), "flagged tensor count");
    }
    cr_assert(seen, "abliterated donor5 not flagged");
    const char *clean[] = {"tiny/donor1", "tiny/donor2", "tiny/donor3"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(donor(au, clean[i]), "fingerprints")),
                     0, "clean donor %s flagged", clean[i]);
    cJSON_Delete(au);
    cJSON_Delete(truth);
    free(recipe);
    free(tmp);
    free(truth_path);
}

/* A donor from another family: shapes, vocabulary and layers differ. */
Test(audit_real, foreign_donor_mismatches_are_reported, .timeout = 120)
{
    char *fam = ms_test_shared("real-models/stories260K-family");
    char *dir = ref_dir();
    if (!fam || !dir)
        cr_skip_test("shared fixtures or ../shared/bench are absent");
    char *tmp = ms_test_tmpdir();
    char *recipe = ms_path_join(tmp, "mm.yml");
    const char *text = "merge_method: ties\nbase_model: base\nmodels:\n"
                       "  - model: other\n    parameters: {weight: 0.5, density: 0.5}\n"
                       "  - model: kjv\n    parameters: {weight: 0.5, density: 0.5}\n";
    cr_assert(ms_test_write(recipe, text, strlen(text)));
    char mb[1200], mo[1200], mk[1200], js[1024];
    snprintf(mb, sizeof(mb), "base=%s/stories260K-base.safetensors", fam);
    snprintf(mo, sizeof(mo), "other=%s/fam/donor1", dir);
    snprintf(mk, sizeof(mk), "kjv=%s/stories260K-ft-kjv.safetensors", fam);
    snprintf(js, sizeof(js), "%s/out.json", tmp);
    const char *argv[] = {"audit", recipe, "--model", mb, "--model", mo, "--model", mk,
                          "--json", js, "-q", NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    free(so);
    free(se);
    cJSON *au = load_json(js);
    const cJSON *o = donor(au, "other");
    /* stories260K: 5 layers, vocab 512, ffn 172; the generated tiny family:
     * 2 layers, vocab 256, ffn 176 */
    cr_assert(has_fp(o, "vocab_mismatch"));
    cr_assert(has_fp(o, "shape_mismatch"));
    cr_assert(has_fp(o, "missing_tensor"));
    cr_assert(has_fp(o, "unrelated_to_base"));
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(donor(au, "kjv"), "fingerprints")), 0);
    cJSON_Delete(au);
    free(recipe);
    free(tmp);
    free(fam);
    free(dir);
}

/* Each tensor is reduced on one worker and tensors are combined in plan
 * order: the result cannot depend on the thread count. */
/* Two audits' JSON, timing left out, are the same text; frees both. */
static void expect_same_result(cJSON *a, cJSON *b)
{
    cJSON_DeleteItemFromObject(a, "timing");
    cJSON_DeleteItemFromObject(b, "timing");
    char *s1 = cJSON_PrintUnformatted(a), *s2 = cJSON_PrintUnformatted(b);
    cr_expect_str_eq(s1, s2);
    free(s1);
    free(s2);
    cJSON_Delete(a);
    cJSON_Delete(b);
}

Test(audit_ref, same_result_with_one_or_two_threads, .timeout = 300)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    expect_same_result(run_audit(dir, "della", "--threads=1", NULL),
                       run_audit(dir, "della", "--threads=2", NULL));
    free(dir);
}

static const cJSON *layer_of(const cJSON *arr, int layer)
{
    const cJSON *l;
    cJSON_ArrayForEach(l, arr)
        if (cJSON_GetObjectItem(l, "layer")->valueint == layer)
            return l;
    return NULL;
}

/* Per-layer figures (pooled over the layer's tensors) against the peer's
 * layers[]: task-vector norm, relative norm, cosine of the weights with the
 * base's, pair cosine and sign conflict. The peer sums the weights' Gram in
 * float32 per chunk, so its cosine to base is good to about 6e-7 here (a
 * float64 numpy sum agrees with ours to 4e-10): 1e-6 still holds. */
static void check_layers_vs_peer(const cJSON *peer, const cJSON *au)
{
    const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
    const cJSON *pl, *pr;
    int nl = 0;
    cJSON_ArrayForEach(pl, cJSON_GetObjectItem(peer, "layers")) {
        int layer = cJSON_GetObjectItem(pl, "layer")->valueint;
        const cJSON *ol = layer_of(cJSON_GetObjectItem(au, "layers"), layer);
        cr_assert_not_null(ol, "layer %d missing", layer);
        const cJSON *ld = cJSON_GetObjectItem(ol, "donors");
        const cJSON *tv = cJSON_GetObjectItem(pl, "task_vectors");
        const cJSON *mc = cJSON_GetArrayItem(cJSON_GetObjectItem(pl, "model_cosine"), 0);
        for (int i = 0; i < 4; i++) {
            const cJSON *d = cJSON_GetObjectItem(ld, names[i]);
            cr_assert_not_null(d, "layer %d: %s missing", layer, names[i]);
            const cJSON *p = cJSON_GetArrayItem(tv, i);
            double got[] = {cJSON_GetObjectItem(d, "tv_norm")->valuedouble,
                            cJSON_GetObjectItem(d, "rel_norm")->valuedouble,
                            cJSON_GetObjectItem(d, "cos_to_base")->valuedouble,
                            cJSON_GetObjectItem(d, "sparsity")->valuedouble};
            double want[] = {cJSON_GetObjectItem(p, "norm")->valuedouble,
                             cJSON_GetObjectItem(p, "rel_norm")->valuedouble,
                             cJSON_GetArrayItem(mc, i + 1)->valuedouble,
                             cJSON_GetObjectItem(p, "small_frac")->valuedouble};
            for (int k = 0; k < 4; k++)
                cr_assert(fabs(got[k] - want[k]) <= 1e-6 * fmax(1.0, fabs(want[k])),
                          "layer %d %s figure %d: %.9g vs peer %.9g", layer, names[i], k,
                          got[k], want[k]);
        }
        const cJSON *cos = cJSON_GetObjectItem(pl, "tv_cosine");
        const cJSON *conf = cJSON_GetObjectItem(pl, "sign_conflict");
        int n = 0;
        cJSON_ArrayForEach(pr, cJSON_GetObjectItem(ol, "pairs")) {
            int ia = cJSON_GetObjectItem(pr, "a")->valuestring[9] - '1';
            int ib = cJSON_GetObjectItem(pr, "b")->valuestring[9] - '1';
            double c = cJSON_GetArrayItem(cJSON_GetArrayItem(cos, ia), ib)->valuedouble;
            double s = cJSON_GetArrayItem(cJSON_GetArrayItem(conf, ia), ib)->valuedouble;
            cr_assert(fabs(cJSON_GetObjectItem(pr, "cosine")->valuedouble - c) < 1e-6,
                      "layer %d pair %d-%d cosine", layer, ia, ib);
            cr_assert(fabs(cJSON_GetObjectItem(pr, "sign_conflict")->valuedouble - s) < 1e-6,
                      "layer %d pair %d-%d sign conflict", layer, ia, ib);
            n++;
        }
        cr_assert_eq(n, 6, "layer %d: %d pairs", layer, n);
        nl++;
    }
    cr_assert_gt(nl, 0, "the peer reports no layers");
}

/* Task-vector statistics against peer_audit.py (numpy, float64 sums). */
Test(audit_ref, statistics_match_peer_audit, .timeout = 300)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char pp[1024];
    snprintf(pp, sizeof(pp), "%s/peer.json", dir);
    if (!ms_path_is_file(pp)) { /* made by an older audit_ref.py run */
        free(dir);
        cr_skip_test("peer.json missing");
    }
    cJSON *peer = load_json(pp);
    /* task_arithmetic counts small deltas in a base-norm pass, ties in its
     * selection pass: both must agree with the peer */
    for (int m = 0; m < 2; m++) {
        cJSON *au = run_audit(dir, m ? "ties" : "task_arithmetic", NULL, NULL);
        const cJSON *ov = cJSON_GetObjectItem(peer, "overall");
        const cJSON *tv = cJSON_GetObjectItem(ov, "task_vectors");
        const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
        for (int i = 0; i < 4; i++) {
            const cJSON *p = cJSON_GetArrayItem(tv, i), *d = donor(au, names[i]);
            struct { const char *ours, *theirs; double tol; } f[] = {
                {"tv_norm", "norm", 1e-6}, {"rel_norm", "rel_norm", 1e-7},
                {"zero_frac", "zero_frac", 1e-12}, {"sparsity", "small_frac", 1e-12}};
            for (int k = 0; k < 4; k++) {
                double a = cJSON_GetObjectItem(d, f[k].ours)->valuedouble;
                double b = cJSON_GetObjectItem(p, f[k].theirs)->valuedouble;
                cr_assert(fabs(a - b) <= f[k].tol * fmax(1.0, fabs(b)), "%s %s: %.9g vs peer %.9g",
                          names[i], f[k].ours, a, b);
            }
        }
        const cJSON *cos = cJSON_GetObjectItem(ov, "tv_cosine");
        const cJSON *conf = cJSON_GetObjectItem(ov, "sign_conflict"), *pr;
        int n = 0;
        cJSON_ArrayForEach(pr, cJSON_GetObjectItem(au, "pairs")) {
            int ia = cJSON_GetObjectItem(pr, "a")->valuestring[9] - '1';
            int ib = cJSON_GetObjectItem(pr, "b")->valuestring[9] - '1';
            double c = cJSON_GetArrayItem(cJSON_GetArrayItem(cos, ia), ib)->valuedouble;
            double s = cJSON_GetArrayItem(cJSON_GetArrayItem(conf, ia), ib)->valuedouble;
            cr_assert(fabs(cJSON_GetObjectItem(pr, "cosine")->valuedouble - c) < 1e-6);
            cr_assert(fabs(cJSON_GetObjectItem(pr, "sign_conflict")->valuedouble - s) < 1e-9);
            n++;
        }
        cr_assert_eq(n, 6);
        check_layers_vs_peer(peer, au);
        cJSON_Delete(au);
    }
    cJSON_Delete(peer);
    free(dir);
}

/*
 * --max-memory: the workers' chunk buffers take MS_AUDIT_BUF_BYTES per
 * element for each of the recipe's models (base + 4 donors here), so the
 * smallest budget that fits is one row of the widest tensor (the
 * intermediate size, from config.json) for each model. At that budget the
 * audit reads one row per chunk, and every figure equals the unbudgeted
 * audit's up to float32 rounding of the per-chunk Gram sums; a byte less is
 * a one-line error, exit 1.
 */
Test(audit_ref, max_memory_small_budget_same_shares, .timeout = 300)
{
    char *dir = ref_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char cfg[1024];
    snprintf(cfg, sizeof(cfg), "%s/fam/base/config.json", dir);
    cJSON *c = load_json(cfg);
    int hid = cJSON_GetObjectItem(c, "hidden_size")->valueint;
    int ffn = cJSON_GetObjectItem(c, "intermediate_size")->valueint;
    cJSON_Delete(c);
    long fit = (long)MS_AUDIT_BUF_BYTES * 5 * (ffn > hid ? ffn : hid);
    char opt[64];
    const char *methods[] = {"ties", "della"};
    const char *names[] = {"fam/donor1", "fam/donor2", "fam/donor3", "fam/donor4"};
    for (int m = 0; m < 2; m++) {
        cJSON *full = run_audit(dir, methods[m], NULL, NULL);
        snprintf(opt, sizeof(opt), "--max-memory=%ld", fit);
        cJSON *small = run_audit(dir, methods[m], opt, "--threads=2");
        for (int i = 0; i < 4; i++) {
            const cJSON *a = donor(full, names[i]), *b = donor(small, names[i]);
            const char *keys[] = {"share", "tv_norm", "discarded"};
            for (int k = 0; k < 3; k++) {
                double x = cJSON_GetObjectItem(a, keys[k])->valuedouble;
                double y = cJSON_GetObjectItem(b, keys[k])->valuedouble;
                cr_assert(fabs(x - y) <= 1e-7 * fmax(1.0, fabs(x)), "%s %s %s: %.12g vs %.12g "
                          "under %s", methods[m], names[i], keys[k], y, x, opt);
            }
        }
        cJSON_Delete(full);
        cJSON_Delete(small);
    }
    char recipe[1024], fam[1024];
    snprintf(recipe, sizeof(recipe), "%s/fam/recipes/ties.yml", dir);
    snprintf(fam, sizeof(fam), "%s/fam", dir);
    snprintf(opt, sizeof(opt), "--max-memory=%ld", fit - 1);
    const char *argv[] = {"audit", recipe, "--models-dir", fam, "-q", opt, NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 1, "stderr: %s", se);
    cr_assert(strstr(se, "too small") && strchr(se, '\n') == se + strlen(se) - 1,
              "one line naming the problem: %s", se);
    free(so);
    free(se);
    free(dir);
}

/*
 * Normalised TIES on the demo family cannot reach equal shares (donor2's
 * task vector dominates whatever the weights): --suggest must then keep
 * the closest point it simulated, with weights within 20x of the recipe's,
 * and the shares it reports must be those of the recipe it wrote.
 */
Test(audit, suggest_unreachable_target_stays_sane)
{
    char *dir = ms_test_tmpdir();
    char *models = ms_test_gen("");
    char *recipe = ms_test_gen("demo/recipes/ties.yml");
    char *out = ms_path_join(dir, "s.yml"), *j1 = ms_path_join(dir, "a.json");
    char *j2 = ms_path_join(dir, "b.json");
    /* few simulations: enough to leave the reachable region, and quick
     * under the sanitizers */
    const char *a1[] = {"audit", "-q", "--models-dir", models, recipe, "--suggest", out,
                        "--max-iter", "6", "--json", j1, NULL};
    char *so, *se;
    cr_assert_eq(ms_test_run(a1, &so, &se), 0, "%s", se);
    cr_expect(strstr(se, "was not reached"), "the miss must be said: %s", se);
    free(so);
    free(se);
    const char *a2[] = {"audit", "-q", "--models-dir", models, out, "--json", j2, NULL};
    cr_assert_eq(ms_test_run(a2, &so, &se), 0, "%s", se);
    free(so);
    free(se);
    char *t1, *t2;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_read_file(j1, 1u << 26, &t1, NULL, &e), MS_OK);
    cr_assert_eq(ms_read_file(j2, 1u << 26, &t2, NULL, &e), MS_OK);
    cJSON *r1 = cJSON_Parse(t1), *r2 = cJSON_Parse(t2);
    const cJSON *sg = cJSON_GetObjectItem(r1, "suggestion");
    const cJSON *w = cJSON_GetObjectItem(sg, "weights");
    const cJSON *after = cJSON_GetObjectItem(sg, "shares_after");
    static const struct { const char *name; double weight; } orig[] = {
        {"demo/donor1", 0.6}, {"demo/donor2", 0.35}, {"demo/donor3", 0.5}};
    for (size_t i = 0; i < 3; i++) {
        double nw = cJSON_GetObjectItem(w, orig[i].name)->valuedouble;
        cr_expect(nw >= orig[i].weight / 20.0 - 1e-12 && nw <= orig[i].weight * 20.0 + 1e-12,
                  "%s: weight %g is more than 20x from %g", orig[i].name, nw, orig[i].weight);
    }
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(r2, "donors")) {
        const char *name = cJSON_GetObjectItem(d, "name")->valuestring;
        double share = cJSON_GetObjectItem(d, "share")->valuedouble;
        cr_expect_float_eq(share, cJSON_GetObjectItem(after, name)->valuedouble, 1e-6,
                           "%s: re-audited share differs from shares_after", name);
    }
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    free(t1);
    free(t2);
    unlink(out);
    unlink(j1);
    unlink(j2);
    rmdir(dir);
    free(j2);
    free(j1);
    free(out);
    free(recipe);
    free(models);
    free(dir);
}

/* ======================================== TIES cuts from sampled bounds */

/*
 * A bf16 family large enough that the trim bounds come from a sample
 * (tensors over 64 Ki values), whose deltas repeat a few values so that
 * the cuts fall inside runs of thousands of equal values, with half of
 * donor 2's tensors equal to the base (their cut falls among zeros) and
 * donor 3 abliterated (rank-1 edits of matrices wider than the sketch's
 * 256 buckets).
 * Generated once per build directory by gen_family.py.
 */
static char *bf16_dir(void)
{
    char *bench = bench_dir();
    if (!bench)
        return NULL;
    char *dir = ms_test_gen("audit-bf16");
    char *mark = ms_path_join(dir, "truth.json");
    if (!ms_path_is_file(mark)) {
        mkdir(MS_GEN_DIR, 0755);
        char cmd[4096];
        snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/gen_family.py '%s' --preset small "
                 "--dtype bf16 --donors 3 --merges ties --identical-tensors 2 "
                 "--identical-frac 0.5 --abliterated 3 --quiet", bench, dir);
        cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    }
    free(mark);
    free(bench);
    return dir;
}

static cJSON *audit_bf16(const char *dir, const char *tag, const char *extra1,
                         const char *extra2)
{
    char recipe[1024], out[1024];
    snprintf(recipe, sizeof(recipe), "%s/recipes/ties.yml", dir);
    snprintf(out, sizeof(out), "%s/audit-%s.json", dir, tag);
    return audit_json(recipe, dir, out, extra1, extra2);
}

/*
 * The one-pass simulation (cuts selected among the values inside sampled
 * bounds), the exact two-pass selection (--exact-select) and the fallback
 * to it (a memory budget too small for the values inside the bounds) give
 * the same cuts: the same kept-pair conflict counts, and shares that agree
 * to float32 summation noise; all equal ref_merge.py's shares.
 */
Test(audit_fast, sampled_bounds_give_the_exact_ties_cuts, .timeout = 300)
{
    char *dir = bf16_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    cJSON *fast = audit_bf16(dir, "fast", NULL, NULL);
    cJSON *exact = audit_bf16(dir, "exact", "--exact-select", NULL);
    cJSON *fall = audit_bf16(dir, "fallback", "--max-memory", "2M");
    char tp[1200];
    snprintf(tp, sizeof(tp), "%s/truth.json", dir);
    cJSON *truth = load_json(tp);
    const cJSON *want = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(truth, "recipes"), "ties"), "shares");
    cr_assert(want, "truth.json has no ties shares");
    const cJSON *w;
    cJSON_ArrayForEach(w, want) {
        double f = cJSON_GetObjectItem(donor(fast, w->string), "share")->valuedouble;
        double e = cJSON_GetObjectItem(donor(exact, w->string), "share")->valuedouble;
        double b = cJSON_GetObjectItem(donor(fall, w->string), "share")->valuedouble;
        cr_expect(fabs(f - w->valuedouble) < 1e-6, "%s: share %.9f, ref_merge %.9f",
                  w->string, f, w->valuedouble);
        cr_expect(fabs(f - e) < 1e-7 && fabs(f - b) < 1e-7,
                  "%s: shares %.10f (fast), %.10f (exact), %.10f (fallback)", w->string, f, e, b);
        const char *keys[] = {"discarded", "sparsity"};
        for (int k = 0; k < 2; k++) {
            double x = cJSON_GetObjectItem(donor(fast, w->string), keys[k])->valuedouble;
            double y = cJSON_GetObjectItem(donor(exact, w->string), keys[k])->valuedouble;
            cr_expect(fabs(x - y) < 1e-7, "%s: %s %.10f vs %.10f", w->string, keys[k], x, y);
        }
    }
    const cJSON *pf = cJSON_GetObjectItem(fast, "pairs"), *pe = cJSON_GetObjectItem(exact, "pairs"),
                *pb = cJSON_GetObjectItem(fall, "pairs");
    cr_assert_eq(cJSON_GetArraySize(pf), 3);
    for (int p = 0; p < 3; p++) {
        double f = cJSON_GetObjectItem(cJSON_GetArrayItem(pf, p), "ties_conflict")->valuedouble;
        double e = cJSON_GetObjectItem(cJSON_GetArrayItem(pe, p), "ties_conflict")->valuedouble;
        double b = cJSON_GetObjectItem(cJSON_GetArrayItem(pb, p), "ties_conflict")->valuedouble;
        cr_expect(f == e && f == b, "pair %d: ties_conflict %.12f / %.12f / %.12f", p, f, e, b);
    }
    /* one worker or two: the same bits */
    expect_same_result(audit_bf16(dir, "fast-j1", "--threads=1", NULL),
                       audit_bf16(dir, "fast-j2", "--threads=2", NULL));
    cJSON_Delete(truth);
    cJSON_Delete(fast);
    cJSON_Delete(exact);
    cJSON_Delete(fall);
    free(dir);
}

/*
 * The sketched stable rank of every sketched matrix against the exact one
 * (float64 SVD, tests/stable_rank_ref.py). Sixteen probes see a near
 * rank-1 edit (exact stable rank <= 2: the abliteration, plus bf16
 * rounding) within 20%, never more spread than there is (at most 10% above
 * the exact value), and keep a task vector of stable rank over 4 above
 * 1.5, where the low_rank fingerprint starts.
 */
Test(audit_fast, sketched_stable_rank_against_the_svd, .timeout = 300)
{
    char *dir = bf16_dir();
    if (!dir)
        cr_skip_test("../shared/bench is absent");
    char *bench = bench_dir(), ref[1200], cmd[4096];
    snprintf(ref, sizeof(ref), "%s/stable-rank.json", dir);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/stable_rank_ref.py '%s' '%s' '%s'",
             MS_SOURCE_DIR, dir, ref, bench);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    cJSON *exact = load_json(ref);
    cJSON *au = audit_bf16(dir, "sketch", NULL, NULL);
    int low = 0, high = 0;
    const cJSON *t, *sr;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(au, "tensors")) {
        const char *name = cJSON_GetObjectItem(t, "name")->valuestring;
        cJSON_ArrayForEach(sr, cJSON_GetObjectItem(t, "stable_rank")) {
            const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(exact, name), sr->string);
            cr_assert(cJSON_IsNumber(e), "%s / %s: no exact stable rank", name, sr->string);
            double got = sr->valuedouble, want = e->valuedouble;
            cr_expect(got <= 1.1 * want, "%s / %s: sketched %.3f above exact %.3f", name,
                      sr->string, got, want);
            if (want <= 2.0) {
                low++;
                cr_expect(fabs(got - want) <= 0.2 * want, "%s / %s: sketched %.3f, exact %.3f",
                          name, sr->string, got, want);
            } else if (want > 4.0) {
                high++;
                cr_expect(got > 1.5, "%s / %s: sketched %.3f looks rank-1, exact %.3f", name,
                          sr->string, got, want);
            }
        }
    }
    cr_expect(low > 0 && high > 0, "rank-1 edits %d, full fine-tunes %d: both must occur", low,
              high);
    cJSON_Delete(au);
    cJSON_Delete(exact);
    free(bench);
    free(dir);
}
