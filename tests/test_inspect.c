/*
 * test_inspect.c - `mergescope inspect` as a user runs it: the JSON against
 * gguf-py's references for every real-gguf file, text output, metadata
 * escaping and summaries, and one-line errors with exit status 2.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "mergescope/util.h"
#include "testutil.h"
#include "mergescope/banned.h"

static cJSON *load_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_read_file(path, 64u << 20, &text, &len, &err), MS_OK,
                 "%s: %s", path, err.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    cr_assert_not_null(j, "%s is not valid JSON", path);
    return j;
}

/* Run inspect with --json into a scratch file; returns the parsed result. */
static cJSON *inspect_json(const char *model, const char *tmp)
{
    char *out = ms_path_join(tmp, "inspect.json");
    const char *argv[] = {"inspect", "--quiet", "--json", out, model, NULL};
    char *so = NULL, *se = NULL;
    int rc = ms_test_run(argv, &so, &se);
    cr_assert_eq(rc, 0, "inspect %s: exit %d: %s", model, rc, se);
    cr_expect(so && strstr(so, "bits/weight:"), "the table is still printed");
    cJSON *j = load_json(out);
    free(so);
    free(se);
    free(out);
    return j;
}

static const cJSON *find_by(const cJSON *arr, const char *key, const char *val)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const cJSON *k = cJSON_GetObjectItem(e, key);
        if (cJSON_IsString(k) && strcmp(k->valuestring, val) == 0)
            return e;
    }
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItem(o, key);
    cr_assert(cJSON_IsNumber(v), "'%s' is not a number", key);
    return v->valuedouble;
}

static void check_file(const char *dir, const char *file, const char *tmp)
{
    char rel[512];
    char *path = ms_path_join(dir, file);
    size_t stem = strlen(file) - strlen(".gguf");
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.ref.json", (int)stem, file);
    char *refp = ms_test_shared(rel);
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.summary.json", (int)stem, file);
    char *sump = ms_test_shared(rel);
    cr_assert(refp && sump);
    cJSON *ref = load_json(refp), *sum = load_json(sump), *j = inspect_json(path, tmp);

    cr_expect_str_eq(cJSON_GetObjectItem(j, "schema")->valuestring, "mergescope.inspect/1");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "format")->valuestring, "gguf");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "architecture")->valuestring, "llama");
    cr_expect_eq(num(j, "n_layers"), 2);
    const cJSON *rts = cJSON_GetObjectItem(ref, "tensors");
    const cJSON *ts = cJSON_GetObjectItem(j, "tensors");
    cr_expect_eq(cJSON_GetArraySize(ts), cJSON_GetArraySize(rts));
    double params = 0;
    const cJSON *rt;
    cJSON_ArrayForEach(rt, rts) {
        const char *name = cJSON_GetObjectItem(rt, "name")->valuestring;
        const cJSON *t = find_by(ts, "source_name", name);
        cr_assert_not_null(t, "%s: %s", file, name);
        cr_expect_str_eq(cJSON_GetObjectItem(t, "dtype")->valuestring,
                         cJSON_GetObjectItem(rt, "ggml_type")->valuestring);
        cr_expect_eq(num(t, "bytes"), num(rt, "n_bytes"), "%s %s", file, name);
        const cJSON *s = cJSON_GetObjectItem(t, "shape");
        const cJSON *rs = cJSON_GetObjectItem(rt, "shape_numpy");
        cr_assert_eq(cJSON_GetArraySize(s), cJSON_GetArraySize(rs));
        for (int d = 0; d < cJSON_GetArraySize(rs); d++)
            cr_expect_eq(cJSON_GetArrayItem(s, d)->valuedouble,
                         cJSON_GetArrayItem(rs, d)->valuedouble);
        const cJSON *layer = cJSON_GetObjectItem(t, "layer");
        if (strncmp(name, "blk.", 4) == 0)
            cr_expect_eq(layer->valuedouble, name[4] - '0', "%s", name);
        else
            cr_expect(cJSON_IsNull(layer), "%s has no layer", name);
        params += num(rt, "n_elements");
    }
    cr_expect_eq(num(j, "n_params"), params);
    double want = num(sum, "total_bits_per_weight");
    cr_expect(fabs(num(j, "bits_per_weight") - want) < 1e-9, "%s bpw", file);

    /* the type histogram against the reference's type counts */
    const cJSON *counts = cJSON_GetObjectItem(ref, "type_counts"), *c;
    const cJSON *types = cJSON_GetObjectItem(j, "types");
    cr_expect_eq(cJSON_GetArraySize(types), cJSON_GetArraySize(counts));
    double share = 0;
    cJSON_ArrayForEach(c, counts) {
        const cJSON *ty = find_by(types, "type", c->string);
        cr_assert_not_null(ty, "%s: type %s", file, c->string);
        cr_expect_eq(num(ty, "n_tensors"), c->valuedouble, "%s %s", file, c->string);
        share += num(ty, "share");
    }
    cr_expect(fabs(share - 1) < 1e-12);

    /* metadata: scalars as values, the 512-token vocabulary summarised */
    const cJSON *md = cJSON_GetObjectItem(j, "metadata");
    cr_expect_str_eq(cJSON_GetObjectItem(md, "general.architecture")->valuestring, "llama");
    cr_expect_eq(num(md, "general.file_type"), num(ref, "general.file_type"));
    const cJSON *tok = cJSON_GetObjectItem(md, "tokenizer.ggml.tokens");
    cr_expect_str_eq(cJSON_GetObjectItem(tok, "type")->valuestring, "string");
    cr_expect_eq(num(tok, "count"), 512);
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(tok, "head"), 1)->valuestring, "<s>");
    cr_expect_eq(cJSON_GetArraySize(md), num(ref, "n_kv"));

    cJSON_Delete(j);
    cJSON_Delete(ref);
    cJSON_Delete(sum);
    free(refp);
    free(sump);
    free(path);
}

Test(inspect, every_real_gguf_matches_reference, .timeout = 300)
{
    char *dir = ms_test_shared("real-gguf/gguf");
    if (!dir)
        cr_skip_test("../shared/fixtures/real-gguf is absent");
    char *tmp = ms_test_tmpdir();
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (ms_str_endswith(e->d_name, ".gguf")) {
            check_file(dir, e->d_name, tmp);
            n++;
        }
    }
    closedir(d);
    cr_expect_eq(n, 24);
    free(tmp);
    free(dir);
}

Test(inspect, text_table_and_json_stdout)
{
    char *p = ms_test_shared("real-gguf/gguf/model-Q4_K_M.gguf");
    if (!p)
        cr_skip_test("../shared/fixtures/real-gguf is absent");
    const char *argv[] = {"inspect", p, NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    /* README: 4.946 bpw, "Q4_K×13, F32×5, Q6_K×3" */
    const char *bpw = strstr(so, "bits/weight:");
    cr_assert_not_null(bpw);
    cr_expect(fabs(strtod(bpw + 12, NULL) - 4.946) <= 0.0005, "%s", bpw);
    cr_expect(strstr(so, "\nQ4_K             13"), "%s", so);
    cr_expect(strstr(so, "\nQ6_K              3"), "%s", so);
    cr_expect(strstr(so, "\nF32               5"), "%s", so);
    cr_expect(strstr(so, "model.layers.1.self_attn.q_proj.weight"));
    cr_expect(strstr(so, "blk.1.attn_q.weight"));
    cr_expect(strstr(so, "tokenizer.ggml.tokens = array[512] of string"), "%s", so);
    cr_expect_null(strstr(so, "/work"), "no absolute paths in the table");
    free(so);
    free(se);

    const char *argj[] = {"inspect", "--json", "-", p, NULL};
    cr_assert_eq(ms_test_run(argj, &so, &se), 0, "%s", se);
    cJSON *j = cJSON_Parse(so);
    cr_assert_not_null(j, "stdout is exactly the JSON");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "format")->valuestring, "gguf");
    cJSON_Delete(j);
    free(so);
    free(se);
    free(p);
}

Test(inspect, tied_embeddings_and_safetensors)
{
    char *g = ms_test_shared("real-models/stories260K-family/stories260K-base.f32.gguf");
    char *s = ms_test_shared("real-models/stories260K-family/stories260K-base.safetensors");
    if (!g || !s)
        cr_skip_test("../shared/fixtures/real-models is absent");
    char *tmp = ms_test_tmpdir();
    cJSON *a = inspect_json(g, tmp), *b = inspect_json(s, tmp);
    const cJSON *ta = cJSON_GetObjectItem(a, "tensors");
    const cJSON *tb = cJSON_GetObjectItem(b, "tensors");
    /* README: 47 tensors, no lm_head.weight, 260K parameters */
    cr_expect_eq(cJSON_GetArraySize(ta), 47);
    cr_expect_eq(cJSON_GetArraySize(tb), 47);
    cr_expect_null(find_by(ta, "name", "lm_head.weight"));
    cr_expect_null(find_by(tb, "name", "lm_head.weight"));
    cr_expect_eq(num(a, "n_params"), num(b, "n_params"));
    cr_expect_eq(num(b, "bits_per_weight"), 32);
    cr_expect_str_eq(cJSON_GetObjectItem(b, "format")->valuestring, "safetensors");
    cr_expect_eq(num(b, "n_layers"), 5);
    cr_expect_eq(num(b, "n_kv_heads"), 4);
    /* the same canonical names, kinds and filters in both formats */
    for (int i = 0; i < cJSON_GetArraySize(tb); i++) {
        const cJSON *x = cJSON_GetArrayItem(tb, i);
        const char *name = cJSON_GetObjectItem(x, "name")->valuestring;
        const cJSON *y = find_by(ta, "name", name);
        cr_assert_not_null(y, "%s", name);
        cr_expect_str_eq(cJSON_GetObjectItem(x, "kind")->valuestring,
                         cJSON_GetObjectItem(y, "kind")->valuestring);
        cr_expect_str_eq(cJSON_GetObjectItem(x, "filter")->valuestring,
                         cJSON_GetObjectItem(y, "filter")->valuestring);
        const char *f = cJSON_GetObjectItem(x, "filter")->valuestring;
        const char *want = strstr(name, "self_attn") ? "self_attn"
                         : strstr(name, "mlp") ? "mlp" : "other";
        cr_expect_str_eq(f, want, "%s", name);
    }
    /* safetensors __metadata__ is the metadata */
    const cJSON *md = cJSON_GetObjectItem(b, "metadata");
    cr_expect_str_eq(cJSON_GetObjectItem(md, "role")->valuestring, "base");
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(tmp);
    free(g);
    free(s);
}

/* ==== metadata escaping and summaries on a hand-written GGUF ==== */

static void put(ms_sb *b, const void *p, size_t n) { ms_sb_addn(b, p, n); }
static void put_u32(ms_sb *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(ms_sb *b, uint64_t v) { put(b, &v, 8); }
static void put_bytes(ms_sb *b, const char *s, size_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

static void write_odd_gguf(const char *path)
{
    ms_sb b = MS_SB_INIT;
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 2);
    put_u64(&b, 4);
    put_bytes(&b, "general.architecture", 20);
    put_u32(&b, 8);
    put_bytes(&b, "llama", 5);
    /* a string with a control character, a quote and invalid UTF-8; and a
     * valid two-byte character that must survive */
    put_bytes(&b, "general.name", 12);
    put_u32(&b, 8);
    put_bytes(&b, "a\x01\"b\xff\xc3\xa9", 7);
    put_bytes(&b, "test.ids", 8);
    put_u32(&b, 9);
    put_u32(&b, 4);
    put_u64(&b, 100);
    for (uint32_t i = 0; i < 100; i++)
        put_u32(&b, i * 3);
    put_bytes(&b, "test.short", 10);
    put_u32(&b, 9);
    put_u32(&b, 5);
    put_u64(&b, 3);
    for (int32_t i = -1; i < 2; i++)
        put(&b, &i, 4);
    put_bytes(&b, "token_embd.weight", 17);
    put_u32(&b, 2);
    put_u64(&b, 4);
    put_u64(&b, 2);
    put_u32(&b, 0);
    put_u64(&b, 0);
    /* a tensor name with a control character (names must be UTF-8) */
    put_bytes(&b, "x\x02\xc3\xa9.weight", 11);
    put_u32(&b, 1);
    put_u64(&b, 8);
    put_u32(&b, 0);
    put_u64(&b, 32);
    while (b.len % 32)
        ms_sb_addc(&b, 0);
    float z[16] = {0};
    put(&b, z, sizeof(z));
    cr_assert(ms_test_write(path, b.buf, b.len));
    ms_sb_free(&b);
}

Test(inspect, metadata_escaped_and_summarised)
{
    char *tmp = ms_test_tmpdir();
    char *p = ms_path_join(tmp, "odd.gguf");
    write_odd_gguf(p);
    const char *argv[] = {"inspect", p, NULL};
    char *so = NULL, *se = NULL;
    cr_assert_eq(ms_test_run(argv, &so, &se), 0, "%s", se);
    cr_expect(strstr(so, "general.name = \"a\\x01\\\"b\\xff\xc3\xa9\""), "%s", so);
    cr_expect(strstr(so, "test.ids = array[100] of uint32: [0, 3, 6, ...]"), "%s", so);
    cr_expect(strstr(so, "test.short = [-1, 0, 1]"), "%s", so);
    cr_expect(strstr(so, "x\\x02\xc3\xa9.weight"), "%s", so);
    free(so);
    free(se);
    cJSON *j = inspect_json(p, tmp);
    const cJSON *md = cJSON_GetObjectItem(j, "metadata");
    cr_expect_str_eq(cJSON_GetObjectItem(md, "general.name")->valuestring,
                     "a\x01\"b\\xff\xc3\xa9");
    const cJSON *ids = cJSON_GetObjectItem(md, "test.ids");
    cr_expect_str_eq(cJSON_GetObjectItem(ids, "type")->valuestring, "uint32");
    cr_expect_eq(num(ids, "count"), 100);
    const cJSON *head = cJSON_GetObjectItem(ids, "head");
    cr_expect_gt(cJSON_GetArraySize(head), 0);
    for (int i = 0; i < cJSON_GetArraySize(head); i++)
        cr_expect_eq(cJSON_GetArrayItem(head, i)->valuedouble, 3 * i);
    const cJSON *ts = cJSON_GetObjectItem(j, "tensors");
    cr_expect_not_null(find_by(ts, "source_name", "x\x02\xc3\xa9.weight"));
    const cJSON *sh = cJSON_GetObjectItem(md, "test.short");
    cr_expect(cJSON_IsArray(sh));
    cr_expect_eq(cJSON_GetArraySize(sh), 3);
    cr_expect_eq(cJSON_GetArrayItem(sh, 0)->valuedouble, -1);
    cJSON_Delete(j);
    free(p);
    free(tmp);
}

/* ==== errors: one line, "mergescope: PATH: ...", exit 2 ==== */

static void expect_error(const char *model, const char *in_path, const char *in_msg)
{
    const char *argv[] = {"inspect", model, NULL};
    char *so = NULL, *se = NULL;
    int rc = ms_test_run(argv, &so, &se);
    cr_expect_eq(rc, 2, "%s: exit %d", model, rc);
    cr_expect(ms_str_startswith(se, "mergescope: "), "%s", se);
    cr_expect(strstr(se, in_path), "%s lacks %s", se, in_path);
    cr_expect(strstr(se, in_msg), "%s lacks %s", se, in_msg);
    size_t len = strlen(se);
    cr_expect(len > 0 && se[len - 1] == '\n' && !memchr(se, '\n', len - 1),
              "one line: %s", se);
    cr_expect_str_eq(so, "");
    free(so);
    free(se);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = ms_path_join(dir, name);
    cr_assert(ms_test_write(p, text, strlen(text)));
    free(p);
}

Test(inspect, errors_are_one_line_exit_2)
{
    char *tmp = ms_test_tmpdir();
    char *d = ms_path_join(tmp, "m");
    mkdir(d, 0700);
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a.weight\":\"../x.safetensors\"}}");
    expect_error(d, "model.safetensors.index.json", "..");
    write_text(d, "model.safetensors.index.json",
               "{\"weight_map\":{\"a.weight\":\"model-00001-of-00002.safetensors\"}}");
    expect_error(d, "model.safetensors.index.json", "model-00001-of-00002.safetensors");
    /* a shard that exists but lacks the tensor the index names */
    const char hdr[] = "{\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = sizeof(hdr) - 1, total = 8 + hl + 8;
    uint8_t *buf = calloc(1, total);
    uint64_t hl64 = hl;
    memcpy(buf, &hl64, 8);
    memcpy(buf + 8, hdr, hl);
    char *shard = ms_path_join(d, "model-00001-of-00002.safetensors");
    cr_assert(ms_test_write(shard, buf, total));
    expect_error(d, "model.safetensors.index.json", "a.weight");
    /* a truncated GGUF */
    char *g = ms_path_join(tmp, "cut.gguf");
    cr_assert(ms_test_write(g, "GGUF\x03\0\0\0", 8));
    expect_error(g, "cut.gguf", "offset");
    expect_error("no-such-org/no-such-model", "no-such-org/no-such-model", "not found");
    free(g);
    free(shard);
    free(buf);
    free(d);
    free(tmp);
}

Test(inspect, usage_errors)
{
    const char *none[] = {"inspect", NULL};
    const char *two[] = {"inspect", "a", "b", NULL};
    const char *bad[] = {"inspect", "--no-such-option", "a", NULL};
    char *so = NULL, *se = NULL;
    cr_expect_eq(ms_test_run(none, &so, &se), 2);
    free(so); free(se);
    cr_expect_eq(ms_test_run(two, &so, &se), 2);
    free(so); free(se);
    cr_expect_eq(ms_test_run(bad, &so, &se), 2);
    free(so); free(se);
}
