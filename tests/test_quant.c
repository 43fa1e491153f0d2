/*
 * test_quant.c - quantization error against the numpy summaries shipped
 * with the real llama-quantize fixtures, importance weighting, and plans.
 *
 * ref/X.summary.json was computed by numpy in float64 against
 * source/model-f32.gguf (GGUF orientation). The same figures must come out
 * with the GGUF source and with the safetensors source (HF row order: the
 * Q/K permutation is undone on both sides, and every figure is invariant
 * under a row permutation).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "mergescope/imatrix.h"
#include "mergescope/model.h"
#include "mergescope/quant.h"
#include "mergescope/util.h"
#include "testutil.h"

static char *shared_or_skip(const char *rel)
{
    char *p = ms_test_shared(rel);
    if (!p || (!ms_path_is_file(p) && !ms_path_is_dir(p)))
        cr_skip_test("shared fixture %s not found", rel);
    return p;
}

static ms_model *open_model(const char *rel)
{
    char *p = shared_or_skip(rel);
    ms_model *m = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_open(p, &m, &err), MS_OK, "%s: %s", rel, err.msg);
    free(p);
    return m;
}

static cJSON *load_json(const char *rel)
{
    char *p = shared_or_skip(rel), *text = NULL;
    size_t len;
    ms_error err;
    cr_assert_eq(ms_read_file(p, 1 << 24, &text, &len, &err), MS_OK);
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j);
    free(text);
    free(p);
    return j;
}

static void near(double got, double want, const char *what, const char *name)
{
    double tol = 1e-6 * fabs(want) + 1e-12;
    cr_assert(fabs(got - want) <= tol, "%s %s: got %.17g, numpy %.17g", name, what, got, want);
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "missing %s", k);
    return v->valuedouble;
}

static ms_quant_result *run(const ms_model *m, const ms_model *ref, const ms_imatrix *im,
                            int threads)
{
    ms_stream_opts so;
    memset(&so, 0, sizeof(so));
    so.threads = threads;
    ms_quant_result *r = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_quant_run(m, ref, im, &so, &r, &err), MS_OK, "%s", err.msg);
    return r;
}

static void check_against_summary(const char *stem, const ms_model *ref)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "real-gguf/gguf/%s.gguf", stem);
    ms_model *m = open_model(rel);
    snprintf(rel, sizeof(rel), "real-gguf/ref/%s.summary.json", stem);
    cJSON *sum = load_json(rel);
    ms_quant_result *r = run(m, ref, NULL, 2);
    cr_assert_eq(r->n_unmatched, 0, "%s: unmatched tensors", stem);
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(sum, "tensors");
    cr_assert_eq((size_t)cJSON_GetArraySize(ts), r->n_tensors, "%s: tensor count", stem);
    const cJSON *t;
    cJSON_ArrayForEach(t, ts) {
        const char *name = cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring;
        const ms_quant_tensor *q = NULL;
        for (size_t i = 0; i < r->n_tensors; i++)
            if (!strcmp(r->tensors[i].source_name, name))
                q = &r->tensors[i];
        cr_assert_not_null(q, "%s: %s not compared", stem, name);
        cr_assert_str_eq(ms_dtype_name(q->type),
                         cJSON_GetObjectItemCaseSensitive(t, "ggml_type")->valuestring);
        near(q->fig.rmse, jnum(t, "rmse"), "rmse", name);
        near(q->fig.max_abs, jnum(t, "max_abs"), "max_abs", name);
        near(q->fig.cosine, jnum(t, "cosine"), "cosine", name);
        near(q->fig.rel_rmse, jnum(t, "rel_rmse"), "rel_rmse", name);
        near(q->bpw, jnum(t, "bits_per_weight"), "bpw", name);
        cr_assert_eq(q->sums.e2 == 0, cJSON_IsTrue(cJSON_GetObjectItem(t, "exact")), "%s exact", name);
        cr_assert(isnan(q->fig.weighted_rel_err), "no imatrix: weighted error undefined");
    }
    near(r->overall.fig.rmse, jnum(sum, "overall_rmse"), "overall rmse", stem);
    near(r->bits_per_weight, jnum(sum, "total_bits_per_weight"), "bpw", stem);
    ms_quant_result_free(r);
    cJSON_Delete(sum);
    ms_model_close(m);
}

/* Every real fixture against both sources. */
Test(quant, errors_match_numpy_summaries)
{
    ms_model *gsrc = open_model("real-gguf/source/model-f32.gguf");
    ms_model *ssrc = open_model("real-gguf/source/model-f32.safetensors");
    char *dir = shared_or_skip("real-gguf/gguf");
    DIR *d = opendir(dir);
    cr_assert(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (!ms_str_endswith(de->d_name, ".gguf"))
            continue;
        char stem[256];
        snprintf(stem, sizeof(stem), "%.*s", (int)strlen(de->d_name) - 5, de->d_name);
        check_against_summary(stem, gsrc);
        check_against_summary(stem, ssrc);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, 24);
    free(dir);
    ms_model_close(gsrc);
    ms_model_close(ssrc);
}

/* Pooled figures: a type's rel_rmse is sqrt(sum e^2 / sum r^2) over its
 * tensors, shares add up to 1, and threads do not change a bit. */
Test(quant, pooled_groups_and_determinism)
{
    ms_model *m = open_model("real-gguf/gguf/model-MIXED.gguf");
    ms_model *ref = open_model("real-gguf/source/model-f32.safetensors");
    ms_quant_result *a = run(m, ref, NULL, 1), *b = run(m, ref, NULL, 2);
    double share = 0;
    for (size_t i = 0; i < a->n_types; i++) {
        double e2 = 0, r2 = 0;
        for (size_t t = 0; t < a->n_tensors; t++)
            if (a->tensors[t].type == a->types[i].type) {
                e2 += a->tensors[t].sums.e2;
                r2 += a->tensors[t].sums.r2;
            }
        near(a->types[i].fig.rel_rmse, sqrt(e2 / r2), "type rel_rmse",
             ms_dtype_name(a->types[i].type));
        share += a->types[i].share;
    }
    near(share, 1.0, "shares", "MIXED");
    /* the MIXED recipe: IQ4_NL, IQ3_S, Q5_K and F32 (README) */
    cr_assert_eq(a->n_types, 4);
    cr_assert_eq(a->n_layers, 3, "non-layer tensors, then layers 0 and 1");
    cr_assert_eq(a->layers[0].layer, -1);
    for (size_t t = 0; t < a->n_tensors; t++)
        cr_assert(!memcmp(&a->tensors[t].sums, &b->tensors[t].sums, sizeof(ms_quant_sums)),
                  "%s differs between 1 and 2 threads", a->tensors[t].name);
    ms_quant_result_free(a);
    ms_quant_result_free(b);
    ms_model_close(m);
    ms_model_close(ref);
}

/* With the imatrix, the weighted error is computed from the same numbers
 * in numpy (an independent float64 computation). */
Test(quant, weighted_error_matches_numpy)
{
    ms_model *m = open_model("real-gguf/gguf/model-IQ2_XS.gguf");
    ms_model *ref = open_model("real-gguf/source/model-f32.gguf");
    char *imp = shared_or_skip("real-gguf/source/imatrix.gguf");
    ms_imatrix *im = NULL;
    ms_error err;
    cr_assert_eq(ms_imatrix_load(imp, &im, &err), MS_OK);
    ms_quant_result *r = run(m, ref, im, 2);
    /* numpy: w = in_sum2/counts; sqrt(sum w (q-r)^2 / sum w r^2), q from
     * gguf-py's dequantize (equal to ours bit for bit, see test_dequant) */
    char *dir = shared_or_skip("real-gguf");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 - '%s' <<'EOF'\n"
             "import json, sys, struct, numpy as np\n"
             "d = sys.argv[1]\n"
             "def tensors(path):\n"
             "    b = open(path, 'rb').read(); o = 8\n"
             "    n_t, n_kv = struct.unpack_from('<QQ', b, o); o += 16\n"
             "    def s(o):\n"
             "        n, = struct.unpack_from('<Q', b, o); return b[o+8:o+8+n].decode(), o+8+n\n"
             "    def val(t, o):\n"
             "        if t == 8: return s(o)\n"
             "        if t == 9:\n"
             "            et, n = struct.unpack_from('<IQ', b, o); o += 12; v = []\n"
             "            for _ in range(n): x, o = val(et, o); v.append(x)\n"
             "            return v, o\n"
             "        sz = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}[t]\n"
             "        return None, o + sz\n"
             "    for _ in range(n_kv):\n"
             "        k, o = s(o); t, = struct.unpack_from('<I', b, o); _, o = val(t, o + 4)\n"
             "    out = {}\n"
             "    for _ in range(n_t):\n"
             "        name, o = s(o); nd, = struct.unpack_from('<I', b, o); o += 4\n"
             "        ne = struct.unpack_from('<%%dQ' %% nd, b, o); o += 8 * nd\n"
             "        ty, off = struct.unpack_from('<IQ', b, o); o += 12\n"
             "        out[name] = (ne, off)\n"
             "    return b, out, (o + 31) // 32 * 32\n"
             "b, im, ds = tensors(d + '/source/imatrix.gguf')\n"
             "sb, src, sds = tensors(d + '/source/model-f32.gguf')\n"
             "ref = json.load(open(d + '/ref/model-IQ2_XS.ref.json'))\n"
             "for t in ref['tensors']:\n"
             "    k = t['name'] + '.in_sum2'\n"
             "    if k not in im: continue\n"
             "    ne, off = im[k]; s2 = np.frombuffer(b, '<f4', ne[0], ds + off).astype(np.float64)\n"
             "    ne2, off2 = im[t['name'] + '.counts']; c = np.frombuffer(b, '<f4', 1, ds + off2)[0]\n"
             "    w = s2 / c\n"
             "    ne3, off3 = src[t['name']]; n = ne3[0] * ne3[1]\n"
             "    r = np.frombuffer(sb, '<f4', n, sds + off3).astype(np.float64).reshape(ne3[1], ne3[0])\n"
             "    print(t['name'], '%%.17g' %% (w * r * r).sum())\n"
             "EOF",
             dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[512];
    int seen = 0;
    while (fgets(line, sizeof(line), p)) {
        char name[256];
        double wr2;
        cr_assert_eq(sscanf(line, "%255s %lf", name, &wr2), 2, "python: %s", line);
        for (size_t i = 0; i < r->n_tensors; i++)
            if (!strcmp(r->tensors[i].source_name, name)) {
                cr_assert(r->tensors[i].weighted);
                near(r->tensors[i].sums.wr2, wr2, "sum w r^2", name);
                cr_assert(isfinite(r->tensors[i].fig.weighted_rel_err));
                seen++;
            }
    }
    cr_assert_eq(pclose(p), 0);
    cr_assert_eq(seen, 15, "every imatrix entry weighted one tensor");
    for (size_t i = 0; i < r->n_tensors; i++)
        if (!strcmp(r->tensors[i].source_name, "token_embd.weight"))
            cr_assert(isnan(r->tensors[i].fig.weighted_rel_err), "no entry: null");
    ms_quant_result_free(r);
    ms_imatrix_free(im);
    free(imp);
    free(dir);
    ms_model_close(m);
    ms_model_close(ref);
}

/* An imatrix made for another model is refused with a mismatch error. */
Test(quant, imatrix_for_another_model)
{
    ms_model *m = open_model("real-models/stories260K-family/stories260K-base.Q8_0.gguf");
    ms_model *ref = open_model("real-models/stories260K-family/stories260K-base.f32.gguf");
    char *imp = shared_or_skip("real-gguf/source/imatrix.gguf");
    ms_imatrix *im = NULL;
    ms_error err;
    cr_assert_eq(ms_imatrix_load(imp, &im, &err), MS_OK);
    ms_error_clear(&err);
    ms_stream_opts so;
    memset(&so, 0, sizeof(so));
    so.threads = 1;
    ms_quant_result *r = NULL;
    cr_assert_eq(ms_quant_run(m, ref, im, &so, &r, &err), MS_ERR_MISMATCH);
    cr_assert_null(r);
    cr_assert(strstr(err.msg, "another model"), "%s", err.msg);
    cr_assert_eq(ms_error_exit_code(&err), 2);
    ms_imatrix_free(im);
    free(imp);
    ms_model_close(m);
    ms_model_close(ref);
}

/* ================================================================ plans */

static ms_plan *make_plan(const ms_model *src, const char *policy, const ms_imatrix *im)
{
    ms_plan_policy p;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_plan_policy_parse(policy, &p, &err), MS_OK, "%s", err.msg);
    ms_plan *pl = NULL;
    cr_assert_eq(ms_plan_make(src, &p, im, NULL, &pl, &err), MS_OK, "%s", err.msg);
    return pl;
}

static ms_plan_check *check(const char *text, const ms_model *m)
{
    ms_plan_check *c = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_plan_check_run(text, "plan.txt", m, &c, &err), MS_OK, "%s", err.msg);
    return c;
}

/* The README's MIXED recipe, as the llama-quantize flags it lists. */
static const char readme_recipe[] =
    "--token-embedding-type q5_K --output-tensor-type q5_K\n"
    "--tensor-type attn_q=iq4_nl --tensor-type attn_k=iq4_nl\n"
    "--tensor-type attn_v=iq4_nl --tensor-type attn_output=iq4_nl\n"
    "--tensor-type blk\\.1\\.ffn_gate=iq4_nl\n"
    "--tensor-type ffn_(gate|up|down)=iq3_s\n";

Test(quant, mixed_follows_the_readme_recipe)
{
    ms_model *mixed = open_model("real-gguf/gguf/model-MIXED.gguf");
    ms_plan_check *c = check(readme_recipe, mixed);
    cr_assert_eq(c->n_depart, 0);
    cr_assert_eq(c->n_follow, 16, "every 2-D tensor is covered");
    cr_assert_eq(c->n_uncovered, 5, "the five norms are 1-D");
    ms_plan_check_free(c);
    /* and the same recipe does not describe the plain IQ3_S file */
    ms_model *iq3 = open_model("real-gguf/gguf/model-IQ3_S.gguf");
    c = check(readme_recipe, iq3);
    cr_assert_gt(c->n_depart, 8, "attention and embeddings differ");
    ms_plan_check_free(c);
    ms_model_close(iq3);
    ms_model_close(mixed);
}

/* The policy of the README, planned from the F32 source (GGUF or
 * safetensors), reproduces model-MIXED.gguf tensor for tensor, and the
 * predicted bits per weight are the file's. */
Test(quant, mixed_policy_reproduces_the_mixed_file)
{
    ms_model *mixed = open_model("real-gguf/gguf/model-MIXED.gguf");
    cJSON *sum = load_json("real-gguf/ref/model-MIXED.summary.json");
    const char *srcs[] = {"real-gguf/source/model-f32.gguf",
                          "real-gguf/source/model-f32.safetensors"};
    char *first = NULL;
    for (int s = 0; s < 2; s++) {
        ms_model *src = open_model(srcs[s]);
        ms_plan *pl = make_plan(src, "mixed", NULL);
        size_t promoted = 0;
        for (size_t i = 0; i < pl->n_entries; i++)
            if (pl->entries[i].promoted) {
                promoted++;
                cr_assert_str_eq(pl->entries[i].gguf_name, "blk.1.ffn_gate.weight");
            }
        cr_assert_eq(promoted, 1, "ceil(15%% of 6 FFN matrices) = 1");
        near(pl->bits_per_weight, jnum(sum, "total_bits_per_weight"), "predicted bpw", srcs[s]);
        char *args = ms_plan_format_args(pl), *file = ms_plan_format_file(pl);
        ms_plan_check *c = check(args, mixed);
        cr_assert_eq(c->n_depart, 0, "%s", args);
        cr_assert_eq(c->n_follow, 16);
        ms_plan_check_free(c);
        /* the --tensor-type-file form says the same */
        c = check(file, mixed);
        cr_assert_eq(c->n_depart, 0, "%s", file);
        cr_assert_eq(c->n_follow, 16);
        ms_plan_check_free(c);
        free(file);
        if (first)
            cr_assert_str_eq(args, first, "GGUF and safetensors sources plan alike");
        else
            first = ms_strdup(args);
        free(args);
        ms_plan_free(pl);
        ms_model_close(src);
    }
    free(first);
    cJSON_Delete(sum);
    ms_model_close(mixed);
}

/* rank=imatrix scores each FFN matrix by sum w_j r^2 / n, the same sum the
 * weighted error uses (computed there by the streaming pass). */
Test(quant, imatrix_ranked_plan)
{
    ms_model *src = open_model("real-gguf/source/model-f32.safetensors");
    char *imp = shared_or_skip("real-gguf/source/imatrix.dat");
    ms_imatrix *im = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_imatrix_load(imp, &im, &err), MS_OK);
    ms_plan_policy p;
    cr_assert_eq(ms_plan_policy_parse("imatrix", &p, &err), MS_OK);
    ms_plan *pl = NULL;
    cr_assert_eq(ms_plan_make(src, &p, NULL, NULL, &pl, &err), MS_ERR_USAGE, "needs --imatrix");
    pl = make_plan(src, "imatrix", im);
    ms_quant_result *r = run(src, src, im, 2);
    size_t promoted = 0, scored = 0;
    for (size_t i = 0; i < pl->n_entries; i++) {
        const ms_plan_entry *e = &pl->entries[i];
        promoted += e->promoted;
        if (isnan(e->score))
            continue;
        for (size_t t = 0; t < r->n_tensors; t++)
            if (!strcmp(r->tensors[t].name, e->name)) {
                near(e->score, r->tensors[t].sums.wr2 / (double)r->tensors[t].n_params,
                     "imatrix score", e->name);
                scored++;
            }
    }
    cr_assert_eq(scored, 6);
    cr_assert_eq(promoted, 1);
    ms_quant_result_free(r);
    ms_plan_free(pl);
    ms_imatrix_free(im);
    free(imp);
    ms_model_close(src);
}

Test(quant, bad_policies_and_plans)
{
    ms_plan_policy p;
    ms_error err;
    const char *bad[] = {"", "base=q9_k", "base=q4_0,top=2", "base=q4_0,top=0.1",
                         "base=q4_0,rank=bogus", "nonsense", "base=q4_0,colour=red"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms_error_clear(&err);
        cr_assert_eq(ms_plan_policy_parse(bad[i], &p, &err), MS_ERR_USAGE, "'%s'", bad[i]);
    }
    ms_model *m = open_model("real-gguf/gguf/model-Q4_0.gguf");
    ms_plan_check *c = NULL;
    ms_error_clear(&err);
    cr_assert_eq(ms_plan_check_run("attn_q=q17_k\n", "p.txt", m, &c, &err), MS_ERR_FORMAT);
    cr_assert_eq(err.line, 1);
    ms_error_clear(&err);
    cr_assert_eq(ms_plan_check_run("ok=q4_0\nattn_(q=q4_0\n", "p.txt", m, &c, &err),
                 MS_ERR_FORMAT);
    cr_assert_eq(err.line, 2);
    ms_model_close(m);
}

/* The real-models GGUFs (llama-quantize output, no reference dump): every
 * tensor decodes, and each type's error against the F32 GGUF stays within
 * what its bits allow (float16 scale steps: Q8_0 about 2^-8 of a block's
 * range, Q5_0 2^-5, F16 exact to 2^-11). */
Test(quant, real_models_decode_within_type_bounds)
{
    const char *files[] = {"stories260K-base.Q8_0.gguf", "stories260K-base.Q4_K_M.gguf",
                           "stories260K-merge-ta.Q8_0.gguf", "stories260K-merge-ta.Q4_K_M.gguf"};
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "real-models/stories260K-family/%s", files[f]);
        ms_model *m = open_model(rel);
        snprintf(rel, sizeof(rel), "real-models/stories260K-family/%.*s.f32.gguf",
                 (int)(strchr(files[f], '.') - files[f]), files[f]);
        ms_model *ref = open_model(rel);
        ms_quant_result *r = run(m, ref, NULL, 2);
        cr_assert_eq(r->n_tensors, 47, "%s", files[f]);
        cr_assert_eq(r->n_unmatched, 0);
        for (size_t i = 0; i < r->n_tensors; i++) {
            const ms_quant_tensor *t = &r->tensors[i];
            double bound = t->type == MS_DTYPE_F32 ? 0 : t->type == MS_DTYPE_F16 ? 1e-3
                           : t->type == MS_DTYPE_Q8_0 ? 1e-2 : 0.1;
            cr_assert_leq(t->fig.rel_rmse, bound, "%s %s (%s)", files[f], t->name,
                          ms_dtype_name(t->type));
            cr_assert_gt(t->fig.cosine, 0.99);
        }
        ms_quant_result_free(r);
        ms_model_close(m);
        ms_model_close(ref);
    }
}

/* Truncated quantized data, or a tensor whose type and shape need more
 * bytes than the file has: a clear error naming the file, exit status 2. */
Test(quant, corrupt_models_exit_2)
{
    char *src = shared_or_skip("real-gguf/gguf/model-Q4_0.gguf");
    char *ref = shared_or_skip("real-gguf/source/model-f32.gguf");
    ms_map map;
    ms_error err;
    cr_assert_eq(ms_map_open(src, &map, &err), MS_OK);
    char *dir = ms_test_tmpdir();
    char *cut = ms_path_join(dir, "cut.gguf"), *bad = ms_path_join(dir, "bad.gguf");
    cr_assert(ms_test_write(cut, map.data, (size_t)map.size - 1000));
    /* the first tensor's ggml type: Q4_0 (2) becomes Q8_0 (8), whose
     * blocks are larger, so the data no longer fits its place */
    uint8_t *copy = malloc(map.size);
    memcpy(copy, map.data, map.size);
    const ms_gguf_file *g = NULL;
    ms_model *m = NULL;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_open(src, &m, &err), MS_OK);
    g = ms_model_gguf(m);
    for (size_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].dtype == MS_DTYPE_Q4_0) {
            /* info: name, n_dims u32, ne u64 x n_dims, type u32, offset u64 */
            uint64_t at = g->tensors[i].info_offset + 8 + strlen(g->tensors[i].name) + 4 +
                          8 * (uint64_t)g->tensors[i].n_dims;
            cr_assert_eq(copy[at], 2);
            copy[at] = 8;
            break;
        }
    ms_model_close(m);
    cr_assert(ms_test_write(bad, copy, (size_t)map.size));
    const char *files[] = {cut, bad};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"quant", files[i], "--reference", ref, "-q", NULL};
        char *out = NULL, *errout = NULL;
        int rc = ms_test_run(argv, &out, &errout);
        cr_assert_eq(rc, 2, "%s: exit %d, stderr %s", files[i], rc, errout);
        cr_assert(strstr(errout, files[i]), "the message names the file: %s", errout);
        free(out);
        free(errout);
    }
    free(copy);
    ms_map_close(&map);
    free(cut);
    free(bad);
    free(dir);
    free(src);
    free(ref);
}

/* ECMAScript escapes llama-quantize users write (\d, \w) work, patterns
 * are case-insensitive, and the first matching rule wins. */
Test(quant, plan_patterns_as_llama_quantize_reads_them)
{
    ms_model *mixed = open_model("real-gguf/gguf/model-MIXED.gguf");
    ms_plan_check *c = check("--tensor-type BLK\\.\\d\\.ATTN_\\w+=iq4_nl\n"
                             "# the promoted FFN matrix, then the rest\n"
                             "blk\\.1\\.ffn_gate=iq4_nl ffn_\\w+=iq3_s\n"
                             "--token-embedding-type q5_k\n"
                             "--output-tensor-type Q5_K\n", mixed);
    cr_assert_eq(c->n_depart, 0);
    cr_assert_eq(c->n_follow, 16);
    ms_plan_check_free(c);
    /* order matters: the general FFN rule first takes blk.1.ffn_gate too */
    c = check("ffn_\\w+=iq3_s blk\\.1\\.ffn_gate=iq4_nl attn=iq4_nl\n", mixed);
    cr_assert_eq(c->n_depart, 1);
    cr_assert_eq(c->n_uncovered, 5 + 2, "norms, and embeddings without a rule");
    ms_plan_check_free(c);
    ms_model_close(mixed);
}
