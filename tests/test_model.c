/*
 * test_model.c - opening models in every layout, canonical names, rows read
 * in HF order, and name resolution.
 *
 * Independent references: the real-gguf fixtures' ref/X.ref.json (written by
 * gguf-py), their safetensors sources (plain numpy, HF order), the
 * stories260K family, and numpy's reshape/swapaxes definition of the Q/K
 * permutation. Small models for layouts the fixtures lack (shards, split
 * GGUF) are written here by hand.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "mergescope/model.h"
#include "mergescope/util.h"
#include "testutil.h"
#include "mergescope/banned.h"

/* ==== helpers ==== */

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
    cr_assert_not_null(j, "%s does not parse", path);
    return j;
}

static ms_model *open_ok(const char *path)
{
    ms_model *m = NULL;
    ms_error err;
    ms_error_clear(&err);
    ms_status st = ms_model_open(path, &m, &err);
    cr_assert_eq(st, MS_OK, "open %s: %s: %s", path, err.path, err.msg);
    return m;
}

static const ms_tensor *by_source(const ms_model *m, const char *src)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].source_name, src) == 0)
            return &m->tensors[i];
    return NULL;
}

static float *read_all(const ms_model *m, const ms_tensor *t)
{
    ms_error err;
    ms_error_clear(&err);
    float *buf = malloc(((size_t)t->n_elems + 1) * sizeof(float));
    cr_assert_not_null(buf);
    ms_status st = ms_model_read_rows(m, t, 0, t->n_rows, buf, &err);
    cr_assert_eq(st, MS_OK, "%s: %s", t->name, err.msg);
    return buf;
}

/*
 * HF row of GGUF row g, from numpy's definition of the undo step:
 * W_hf = W_gguf.reshape(n, hd/2, 2, cols).swapaxes(1, 2): the GGUF index
 * (a, b, c) of shape (n, hd/2, 2) becomes (a, c, b) of shape (n, 2, hd/2).
 */
static int64_t hf_row_of(int64_t g, int64_t hd)
{
    int64_t half = hd / 2;
    int64_t a = g / hd, b = (g % hd) / 2, c = g % 2;
    return a * hd + c * half + b;
}

/* ==== real-gguf: inventory and values against gguf-py's references ==== */

/* Per the fixture README: 4 attention heads, 2 KV heads, llama arch. */
static int64_t real_gguf_heads(const char *gguf_name)
{
    if (strstr(gguf_name, ".attn_q."))
        return 4;
    if (strstr(gguf_name, ".attn_k."))
        return 2;
    return 0;
}

static void check_inventory(const char *dir, const char *file)
{
    char rel[512];
    char *path = ms_path_join(dir, file);
    ms_model *m = open_ok(path);
    size_t stem = strlen(file) - strlen(".gguf");
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.ref.json", (int)stem, file);
    char *refp = ms_test_shared(rel);
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.summary.json", (int)stem, file);
    char *sump = ms_test_shared(rel);
    cr_assert(refp && sump, "references for %s", file);
    cJSON *ref = load_json(refp), *sum = load_json(sump);
    const cJSON *tensors = cJSON_GetObjectItem(ref, "tensors");

    cr_expect_eq(m->format, MS_FORMAT_GGUF);
    cr_expect_str_eq(m->architecture, "llama");
    cr_expect_eq(m->n_layers, 2, "%s layers", file);
    cr_expect_eq(m->n_heads, 4);
    cr_expect_eq(m->n_kv_heads, 2);
    cr_expect_eq((int)m->n_tensors, cJSON_GetArraySize(tensors), "%s count", file);
    const cJSON *rt;
    cJSON_ArrayForEach(rt, tensors) {
        const char *name = cJSON_GetObjectItem(rt, "name")->valuestring;
        const ms_tensor *t = by_source(m, name);
        cr_assert_not_null(t, "%s: %s missing", file, name);
        cr_expect_str_eq(ms_dtype_name(t->dtype),
                         cJSON_GetObjectItem(rt, "ggml_type")->valuestring,
                         "%s %s", file, name);
        const cJSON *shape = cJSON_GetObjectItem(rt, "shape_numpy");
        cr_expect_eq(t->ndim, cJSON_GetArraySize(shape), "%s %s ndim", file, name);
        for (int d = 0; d < t->ndim; d++)
            cr_expect_eq(t->shape[d],
                         (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble,
                         "%s %s dim %d", file, name, d);
        cr_expect_eq(t->nbytes,
                     (uint64_t)cJSON_GetObjectItem(rt, "n_bytes")->valuedouble);
        cr_expect_eq(t->file_offset,
                     (uint64_t)cJSON_GetObjectItem(rt, "data_offset_abs")->valuedouble);
        cr_expect_eq(t->permute_heads, real_gguf_heads(name), "%s", name);
    }
    double bpw = 8.0 * (double)m->data_bytes / (double)m->n_params;
    double want = cJSON_GetObjectItem(sum, "total_bits_per_weight")->valuedouble;
    cr_expect(fabs(bpw - want) < 1e-9, "%s bpw %.6f want %.6f", file, bpw, want);
    cJSON_Delete(ref);
    cJSON_Delete(sum);
    free(refp);
    free(sump);
    free(path);
    ms_model_close(m);
}

static void for_each_real_gguf(void (*fn)(const char *, const char *))
{
    char *dir = ms_test_shared("real-gguf/gguf");
    if (!dir)
        cr_skip_test("../shared/fixtures/real-gguf is absent");
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (!ms_str_endswith(e->d_name, ".gguf"))
            continue;
        fn(dir, e->d_name);
        n++;
    }
    closedir(d);
    cr_expect_eq(n, 24, "the README lists 24 files");
    free(dir);
}

Test(model, real_gguf_inventory)
{
    for_each_real_gguf(check_inventory);
}

static void check_rows(const ms_model *m, const ms_tensor *t, const cJSON *rt,
                       const float *ref, const char *file)
{
    const cJSON *rows = cJSON_GetObjectItem(rt, "rows");
    size_t off = (size_t)cJSON_GetObjectItem(rt, "ref_offset")->valuedouble / 4;
    float *buf = malloc((size_t)t->n_cols * sizeof(float));
    ms_error err;
    ms_error_clear(&err);
    if (cJSON_IsString(rows)) {
        float *all = read_all(m, t);
        cr_expect_eq(memcmp(all, ref + off, t->n_elems * 4), 0, "%s %s",
                     file, t->source_name);
        free(all);
        free(buf);
        return;
    }
    int64_t heads = real_gguf_heads(t->source_name);
    const cJSON *r;
    size_t k = 0;
    cJSON_ArrayForEach(r, rows) {
        int64_t g = (int64_t)r->valuedouble;
        int64_t hf = heads ? hf_row_of(g, t->n_rows / heads) : g;
        cr_assert_eq(ms_model_read_rows(m, t, hf, 1, buf, &err), MS_OK, "%s", err.msg);
        cr_expect_eq(memcmp(buf, ref + off + k * (size_t)t->n_cols,
                            (size_t)t->n_cols * 4), 0,
                     "%s %s gguf row %lld", file, t->source_name, (long long)g);
        k++;
    }
    free(buf);
}

static void check_values(const char *dir, const char *file)
{
    char rel[512];
    char *path = ms_path_join(dir, file);
    ms_model *m = open_ok(path);
    size_t stem = strlen(file) - strlen(".gguf");
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.ref.json", (int)stem, file);
    char *refp = ms_test_shared(rel);
    snprintf(rel, sizeof(rel), "real-gguf/ref/%.*s.ref.f32", (int)stem, file);
    char *f32p = ms_test_shared(rel);
    cr_assert(refp && f32p);
    cJSON *ref = load_json(refp);
    char *raw = NULL;
    size_t rawlen = 0;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_read_file(f32p, 64u << 20, &raw, &rawlen, &err), MS_OK);
    float *vals = malloc(rawlen + 4);
    memcpy(vals, raw, rawlen);
    const cJSON *rt;
    cJSON_ArrayForEach(rt, cJSON_GetObjectItem(ref, "tensors")) {
        const char *name = cJSON_GetObjectItem(rt, "name")->valuestring;
        const ms_tensor *t = by_source(m, name);
        cr_assert_not_null(t);
        float *all = read_all(m, t);
        double s = 0, ss = 0, lo = INFINITY, hi = -INFINITY;
        for (uint64_t i = 0; i < t->n_elems; i++) {
            s += all[i];
            ss += (double)all[i] * all[i];
            lo = fmin(lo, all[i]);
            hi = fmax(hi, all[i]);
        }
        free(all);
        /* sums do not depend on the row order we read in */
        double ws = cJSON_GetObjectItem(rt, "full_sum_f64")->valuedouble;
        double wss = cJSON_GetObjectItem(rt, "full_sumsq_f64")->valuedouble;
        cr_expect(fabs(s - ws) <= 1e-9 * (fabs(ws) + sqrt(wss * t->n_elems)),
                  "%s %s sum %.12g want %.12g", file, name, s, ws);
        cr_expect(fabs(ss - wss) <= 1e-9 * wss, "%s %s sumsq", file, name);
        cr_expect_eq(lo, cJSON_GetObjectItem(rt, "full_min")->valuedouble, "%s %s min", file, name);
        cr_expect_eq(hi, cJSON_GetObjectItem(rt, "full_max")->valuedouble, "%s %s max", file, name);
        check_rows(m, t, rt, vals, file);
    }
    free(vals);
    free(raw);
    cJSON_Delete(ref);
    free(refp);
    free(f32p);
    free(path);
    ms_model_close(m);
}

Test(model, real_gguf_values_in_hf_order, .timeout = 300)
{
    for_each_real_gguf(check_values);
}

/* ==== Q/K un-permutation against safetensors sources ==== */

static void compare_models(const char *gguf_rel, const char *st_rel, size_t n_want)
{
    char *gp = ms_test_shared(gguf_rel), *sp = ms_test_shared(st_rel);
    if (!gp || !sp)
        cr_skip_test("shared fixture %s or %s is absent", gguf_rel, st_rel);
    ms_model *g = open_ok(gp), *s = open_ok(sp);
    cr_expect_eq(s->n_tensors, n_want);
    cr_expect_eq(g->n_tensors, s->n_tensors);
    cr_expect_eq(g->n_params, s->n_params);
    int permuted = 0;
    for (size_t i = 0; i < s->n_tensors; i++) {
        const ms_tensor *ts = &s->tensors[i];
        const ms_tensor *tg = ms_model_find(g, ts->name);
        cr_assert_not_null(tg, "%s not in the gguf", ts->name);
        cr_expect_eq(tg->layer, ts->layer);
        cr_expect_eq(tg->kind, ts->kind, "%s", ts->name);
        cr_expect_eq(tg->filter, ts->filter);
        cr_assert_eq(tg->ndim, ts->ndim, "%s", ts->name);
        for (int d = 0; d < ts->ndim; d++)
            cr_expect_eq(tg->shape[d], ts->shape[d]);
        float *a = read_all(g, tg), *b = read_all(s, ts);
        cr_expect_eq(memcmp(a, b, ts->n_elems * 4), 0, "%s differs", ts->name);
        permuted += tg->permute_heads > 0;
        free(a);
        free(b);
    }
    cr_expect_gt(permuted, 0, "some q/k tensors were permuted");
    free(gp);
    free(sp);
    ms_model_close(g);
    ms_model_close(s);
}

Test(model, unpermute_real_gguf_source)
{
    compare_models("real-gguf/source/model-f32.gguf",
                   "real-gguf/source/model-f32.safetensors", 21);
}

Test(model, unpermute_stories260k_head_dim_8)
{
    compare_models("real-models/stories260K-family/stories260K-base.f32.gguf",
                   "real-models/stories260K-family/stories260K-base.safetensors", 47);
    char *p = ms_test_shared("real-models/stories260K-family/stories260K-base.f32.gguf");
    ms_model *m = open_ok(p);
    /* tied embeddings: no output head is invented */
    cr_expect_null(ms_model_find(m, "lm_head.weight"));
    cr_expect_not_null(ms_model_find(m, "model.embed_tokens.weight"));
    cr_expect_eq(m->n_layers, 5);
    cr_expect_eq(m->n_heads, 8);
    cr_expect_eq(m->n_kv_heads, 4);
    ms_model_close(m);
    free(p);
}

Test(model, safetensors_bf16_source_with_config)
{
    char *p = ms_test_shared("real-gguf/source/model.safetensors");
    if (!p)
        cr_skip_test("real-gguf fixture absent");
    ms_model *m = open_ok(p);
    /* config.json beside it: LlamaForCausalLM, hidden 256, 2 layers */
    cr_expect_str_eq(m->architecture, "llama");
    cr_expect_eq(m->n_layers, 2);
    cr_expect_eq(m->hidden_size, 256);
    cr_expect_eq(m->n_heads, 4);
    cr_expect_eq(m->n_kv_heads, 2);
    cr_expect_eq(m->vocab_size, 512);
    cr_expect_eq(m->n_tensors, 21);
    /* sorted: non-layer tensors first, then by layer and name */
    for (size_t i = 1; i < m->n_tensors; i++) {
        const ms_tensor *a = &m->tensors[i - 1], *b = &m->tensors[i];
        cr_expect(a->layer < b->layer
                  || (a->layer == b->layer && strcmp(a->name, b->name) < 0));
    }
    const ms_tensor *q = ms_model_find(m, "model.layers.1.self_attn.q_proj.weight");
    cr_assert_not_null(q);
    cr_expect_eq(q->dtype, MS_DTYPE_BF16);
    cr_expect_eq(q->layer, 1);
    cr_expect_eq(q->kind, MS_KIND_ATTN_Q);
    cr_expect_eq(q->n_rows, 256);
    cr_expect_eq(q->n_cols, 256);
    cr_expect_eq(q->permute_heads, 0);
    cr_expect_null(ms_model_find(m, "model.layers.1.self_attn.nope.weight"));
    /* the bf16 file holds the f32 file's values exactly (README) */
    char *p32 = ms_test_shared("real-gguf/source/model-f32.safetensors");
    ms_model *f = open_ok(p32);
    const ms_tensor *q32 = ms_model_find(f, q->name);
    float *a = read_all(m, q), *b = read_all(f, q32);
    cr_expect_eq(memcmp(a, b, q->n_elems * 4), 0);
    /* a sub-range is the same as the matching slice of the whole */
    float part[3 * 256];
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_read_rows(m, q, 100, 3, part, &err), MS_OK);
    cr_expect_eq(memcmp(part, a + 100 * 256, sizeof(part)), 0);
    cr_expect_eq(ms_model_read_rows(m, q, 255, 2, part, &err), MS_ERR_USAGE);
    ms_model_release_rows(m, q, 0, q->n_rows);
    free(a);
    free(b);
    free(p);
    free(p32);
    ms_model_close(m);
    ms_model_close(f);
}

/* ==== a tiny safetensors writer for sharded layouts ==== */

typedef struct wt {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16" */
    int64_t rows, cols;
} wt;

static size_t dsize(const char *dt)
{
    return strcmp(dt, "F32") == 0 ? 4 : 2;
}

/* Deterministic contents: element e of tensor k. */
static float value(size_t k, size_t e)
{
    return (float)((int)((k * 131 + e * 17) % 97) - 48) / 64.0f;
}

static void put_elem(uint8_t *p, const char *dt, float v)
{
    if (strcmp(dt, "F32") == 0) {
        memcpy(p, &v, 4);
    } else {
        uint16_t h = strcmp(dt, "F16") == 0 ? ms_f32_to_f16(v) : ms_f32_to_bf16(v);
        memcpy(p, &h, 2);
    }
}

/* Write tensors ks[0..n) of ts into path. */
static void st_write(const char *path, const wt *ts, const size_t *ks, size_t n)
{
    ms_sb h = MS_SB_INIT;
    uint64_t off = 0;
    ms_sb_add(&h, "{");
    for (size_t i = 0; i < n; i++) {
        const wt *t = &ts[ks[i]];
        uint64_t nb = (uint64_t)(t->rows * t->cols) * dsize(t->dtype);
        ms_sb_addf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],"
                   "\"data_offsets\":[%llu,%llu]}", i ? "," : "", t->name,
                   t->dtype, (long long)t->rows, (long long)t->cols,
                   (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    ms_sb_add(&h, "}");
    while (h.len % 8)
        ms_sb_addc(&h, ' ');
    size_t total = 8 + h.len + off;
    uint8_t *buf = calloc(1, total);
    uint64_t hl = h.len;
    memcpy(buf, &hl, 8);
    memcpy(buf + 8, h.buf, h.len);
    uint8_t *p = buf + 8 + h.len;
    for (size_t i = 0; i < n; i++) {
        const wt *t = &ts[ks[i]];
        for (int64_t e = 0; e < t->rows * t->cols; e++) {
            put_elem(p, t->dtype, value(ks[i], (size_t)e));
            p += dsize(t->dtype);
        }
    }
    cr_assert(ms_test_write(path, buf, total));
    free(buf);
    ms_sb_free(&h);
}

static const wt TINY[] = {
    {"model.embed_tokens.weight", "BF16", 16, 8},
    {"model.layers.0.self_attn.q_proj.weight", "F16", 8, 8},
    {"model.layers.0.mlp.down_proj.weight", "F32", 8, 12},
    {"model.layers.1.self_attn.q_proj.weight", "BF16", 8, 8},
    {"model.layers.1.input_layernorm.weight", "F32", 1, 8},
    {"model.norm.weight", "F32", 1, 8},
};
#define N_TINY (sizeof(TINY) / sizeof(TINY[0]))

static void write_index(const char *dir, const char *const *names,
                        const char *const *files, size_t n)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (size_t i = 0; i < n; i++)
        ms_sb_addf(&sb, "%s\"%s\":\"%s\"", i ? "," : "", names[i], files[i]);
    ms_sb_add(&sb, "}}");
    char *p = ms_path_join(dir, "model.safetensors.index.json");
    cr_assert(ms_test_write(p, sb.buf, sb.len));
    free(p);
    ms_sb_free(&sb);
}

/* A sharded copy of TINY in dir: shard 1 has tensors 0-2, shard 2 3-5. */
static void write_sharded(const char *dir)
{
    size_t a[] = {2, 0, 1}, b[] = {5, 3, 4};
    char *p1 = ms_path_join(dir, "model-00001-of-00002.safetensors");
    char *p2 = ms_path_join(dir, "model-00002-of-00002.safetensors");
    st_write(p1, TINY, a, 3);
    st_write(p2, TINY, b, 3);
    const char *names[N_TINY], *files[N_TINY];
    for (size_t i = 0; i < N_TINY; i++) {
        names[i] = TINY[i].name;
        files[i] = i < 3 ? "model-00001-of-00002.safetensors"
                         : "model-00002-of-00002.safetensors";
    }
    write_index(dir, names, files, N_TINY);
    free(p1);
    free(p2);
}

Test(model, sharded_equals_single)
{
    char *tmp = ms_test_tmpdir();
    char *one = ms_path_join(tmp, "single"), *sh = ms_path_join(tmp, "sharded");
    mkdir(one, 0700);
    mkdir(sh, 0700);
    size_t all[N_TINY];
    for (size_t i = 0; i < N_TINY; i++)
        all[i] = i;
    char *single = ms_path_join(one, "model.safetensors");
    st_write(single, TINY, all, N_TINY);
    write_sharded(sh);

    ms_model *a = open_ok(one), *b = open_ok(sh);
    cr_expect_eq(a->n_files, 1);
    cr_expect_eq(b->n_files, 2);
    cr_expect_str_eq(ms_path_basename(b->files[0]), "model-00001-of-00002.safetensors");
    cr_assert_eq(a->n_tensors, N_TINY);
    cr_assert_eq(b->n_tensors, N_TINY);
    cr_expect_eq(a->n_params, b->n_params);
    cr_expect_eq(a->data_bytes, b->data_bytes);
    cr_expect_eq(a->n_layers, 2);
    cr_expect_str_eq(a->architecture, "unknown");
    for (size_t i = 0; i < N_TINY; i++) {
        const ms_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        cr_expect_str_eq(x->name, y->name);
        cr_expect_eq(x->dtype, y->dtype);
        cr_expect_eq(x->n_rows, y->n_rows);
        cr_expect_eq(x->n_cols, y->n_cols);
        float *u = read_all(a, x), *v = read_all(b, y);
        cr_expect_eq(memcmp(u, v, x->n_elems * 4), 0, "%s", x->name);
        /* and both hold what was written (f16/bf16 round-trip exactly for
         * these multiples of 1/64) */
        size_t k = 0;
        while (strcmp(TINY[k].name, x->name) != 0)
            k++;
        for (uint64_t e = 0; e < x->n_elems; e++)
            cr_expect_eq(u[e], value(k, e), "%s[%llu]", x->name, (unsigned long long)e);
        free(u);
        free(v);
    }
    /* the 1-D norm is one row of 8 */
    const ms_tensor *n = ms_model_find(a, "model.norm.weight");
    cr_assert_not_null(n);
    ms_model_close(a);
    ms_model_close(b);
    free(single);
    free(one);
    free(sh);
    free(tmp);
}

static ms_status open_err(const char *path, ms_error *err)
{
    ms_model *m = NULL;
    ms_error_clear(err);
    ms_status st = ms_model_open(path, &m, err);
    cr_expect_null(m);
    return st;
}

Test(model, shard_errors)
{
    char *tmp = ms_test_tmpdir();
    ms_error err;
    write_sharded(tmp);
    /* a shard the index names is missing */
    char *p2 = ms_path_join(tmp, "model-00002-of-00002.safetensors");
    char *moved = ms_path_join(tmp, "elsewhere.safetensors");
    cr_assert_eq(rename(p2, moved), 0);
    ms_status st = open_err(tmp, &err);
    cr_expect_eq(st, MS_ERR_NOTFOUND);
    cr_expect(strstr(err.msg, "model-00002-of-00002.safetensors"), "%s", err.msg);
    cr_expect_eq(ms_error_exit_code(&err), 2);
    cr_assert_eq(rename(moved, p2), 0);

    /* a tensor listed in the index is not in its shard */
    const char *names[] = {TINY[0].name, TINY[3].name};
    const char *files[] = {"model-00001-of-00002.safetensors",
                           "model-00001-of-00002.safetensors"};
    write_index(tmp, names, files, 2);
    st = open_err(tmp, &err);
    cr_expect_eq(st, MS_ERR_FORMAT);
    cr_expect(strstr(err.msg, TINY[3].name), "%s", err.msg);
    cr_expect(ms_str_endswith(err.path, "model.safetensors.index.json"), "%s", err.path);

    /* traversal out of the model directory */
    const char *bad[] = {"../model-00001-of-00002.safetensors"};
    write_index(tmp, names, bad, 1);
    st = open_err(tmp, &err);
    cr_expect_eq(st, MS_ERR_FORMAT, "%s", err.msg);
    cr_expect_eq(ms_error_exit_code(&err), 2);

    /* a directory with no model in it */
    char *empty = ms_path_join(tmp, "empty");
    mkdir(empty, 0700);
    cr_expect_eq(open_err(empty, &err), MS_ERR_NOTFOUND);
    cr_expect_eq(open_err("/nonexistent/model.safetensors", &err), MS_ERR_NOTFOUND);
    free(empty);
    free(p2);
    free(moved);
    free(tmp);
}

/* ==== a tiny GGUF writer for split files ==== */

typedef struct gw {
    ms_sb b;
} gw;

static void put(gw *w, const void *p, size_t n)
{
    ms_sb_addn(&w->b, p, n);
}
static void put_u32(gw *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(gw *w, uint64_t v) { put(w, &v, 8); }
static void put_str(gw *w, const char *s)
{
    put_u64(w, strlen(s));
    put(w, s, strlen(s));
}

typedef struct gt {
    const char *name;
    int64_t ne0, ne1;
    size_t seed;
} gt;

/* One GGUF v3 file: general.architecture, optional head counts and split
 * keys (-1 = absent), F32 tensors. */
static void gguf_write(const char *path, const char *arch, int heads, int kv,
                       int split_no, int split_count, const gt *ts, size_t n)
{
    gw w = {MS_SB_INIT};
    uint64_t n_kv = 1 + (heads >= 0) + (kv >= 0) + (split_no >= 0) + (split_count >= 0);
    put(&w, "GGUF", 4);
    put_u32(&w, 3);
    put_u64(&w, n);
    put_u64(&w, n_kv);
    put_str(&w, "general.architecture");
    put_u32(&w, 8);
    put_str(&w, arch);
    char key[128];
    if (heads >= 0) {
        snprintf(key, sizeof(key), "%s.attention.head_count", arch);
        put_str(&w, key);
        put_u32(&w, 4);
        put_u32(&w, (uint32_t)heads);
    }
    if (kv >= 0) {
        snprintf(key, sizeof(key), "%s.attention.head_count_kv", arch);
        put_str(&w, key);
        put_u32(&w, 4);
        put_u32(&w, (uint32_t)kv);
    }
    if (split_no >= 0) {
        uint16_t v = (uint16_t)split_no;
        put_str(&w, "split.no");
        put_u32(&w, 2);
        put(&w, &v, 2);
    }
    if (split_count >= 0) {
        uint16_t v = (uint16_t)split_count;
        put_str(&w, "split.count");
        put_u32(&w, 2);
        put(&w, &v, 2);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        put_str(&w, ts[i].name);
        put_u32(&w, 2);
        put_u64(&w, (uint64_t)ts[i].ne0);
        put_u64(&w, (uint64_t)ts[i].ne1);
        put_u32(&w, 0);
        put_u64(&w, off);
        off += (uint64_t)(ts[i].ne0 * ts[i].ne1) * 4;
        off = (off + 31) / 32 * 32;
    }
    while (w.b.len % 32)
        ms_sb_addc(&w.b, 0);
    for (size_t i = 0; i < n; i++) {
        for (int64_t e = 0; e < ts[i].ne0 * ts[i].ne1; e++) {
            float v = value(ts[i].seed, (size_t)e);
            put(&w, &v, 4);
        }
        while (w.b.len % 32)
            ms_sb_addc(&w.b, 0);
    }
    cr_assert(ms_test_write(path, w.b.buf, w.b.len));
    ms_sb_free(&w.b);
}

static const gt SPLIT_A[] = {
    {"token_embd.weight", 4, 6, 1},
    {"blk.0.attn_q.weight", 4, 8, 2}, /* 8 rows, 2 heads of 4 */
};
static const gt SPLIT_B[] = {
    {"blk.0.attn_k.weight", 4, 4, 3}, /* 4 rows, 1 kv head of 4 */
    {"blk.0.ffn_down.weight", 6, 4, 4},
};

Test(model, split_gguf)
{
    char *tmp = ms_test_tmpdir();
    char *a = ms_path_join(tmp, "m-00001-of-00002.gguf");
    char *b = ms_path_join(tmp, "m-00002-of-00002.gguf");
    gguf_write(a, "llama", 2, 1, 0, 2, SPLIT_A, 2);
    gguf_write(b, "llama", -1, -1, 1, 2, SPLIT_B, 2);
    ms_model *m = open_ok(a);
    cr_expect_eq(m->n_files, 2);
    cr_expect_eq(m->n_tensors, 4);
    cr_expect_eq(m->n_layers, 1);
    cr_expect_str_eq(m->tensors[0].name, "model.embed_tokens.weight");
    const ms_tensor *q = ms_model_find(m, "model.layers.0.self_attn.q_proj.weight");
    const ms_tensor *k = ms_model_find(m, "model.layers.0.self_attn.k_proj.weight");
    const ms_tensor *d = ms_model_find(m, "model.layers.0.mlp.down_proj.weight");
    cr_assert(q && k && d);
    cr_expect_eq(q->permute_heads, 2);
    cr_expect_eq(k->permute_heads, 1);
    cr_expect_eq(d->permute_heads, 0);
    cr_expect_eq(k->file_index, 1);
    cr_expect_eq(d->shape[0], 4);
    cr_expect_eq(d->shape[1], 6);
    /* every HF row holds the GGUF row numpy's undo step puts there */
    float *hf = read_all(m, q);
    for (int64_t g = 0; g < 8; g++)
        for (int64_t c = 0; c < 4; c++)
            cr_expect_eq(hf[hf_row_of(g, 4) * 4 + c], value(2, (size_t)(g * 4 + c)));
    free(hf);
    hf = read_all(m, k);
    for (int64_t g = 0; g < 4; g++)
        for (int64_t c = 0; c < 4; c++)
            cr_expect_eq(hf[hf_row_of(g, 4) * 4 + c], value(3, (size_t)(g * 4 + c)));
    free(hf);
    ms_model_release_rows(m, q, 0, 8);
    ms_model_close(m);
    /* naming the second split opens the whole model too */
    m = open_ok(b);
    cr_expect_eq(m->n_tensors, 4);
    ms_model_close(m);
    /* so does the folder (a "-GGUF" repository snapshot) */
    m = open_ok(tmp);
    cr_expect_eq(m->format, MS_FORMAT_GGUF);
    cr_expect_eq(m->n_files, 2);
    ms_model_close(m);
    /* but not when it holds two models */
    char *c = ms_path_join(tmp, "another.gguf");
    gguf_write(c, "llama", 2, 1, -1, -1, SPLIT_A, 2);
    ms_error err;
    cr_expect_eq(open_err(tmp, &err), MS_ERR_USAGE);
    cr_expect(strstr(err.msg, "(another.gguf, m-00001-of-00002.gguf)"), "%s", err.msg);
    free(c);
    free(a);
    free(b);
    free(tmp);
}

Test(model, split_gguf_errors)
{
    char *tmp = ms_test_tmpdir();
    char *a = ms_path_join(tmp, "m-00001-of-00002.gguf");
    char *b = ms_path_join(tmp, "m-00002-of-00002.gguf");
    ms_error err;
    gguf_write(a, "llama", 2, 1, 0, 2, SPLIT_A, 2);
    cr_expect_eq(open_err(a, &err), MS_ERR_NOTFOUND, "missing split: %s", err.msg);
    cr_expect(strstr(err.path, "m-00002-of-00002.gguf"), "%s", err.path);
    /* split.count disagrees with the file name */
    gguf_write(b, "llama", -1, -1, 1, 3, SPLIT_B, 2);
    cr_expect_eq(open_err(a, &err), MS_ERR_FORMAT);
    cr_expect(strstr(err.msg, "split.count"), "%s", err.msg);
    /* the same tensor in both splits */
    gguf_write(b, "llama", -1, -1, 1, 2, SPLIT_A, 2);
    cr_expect_eq(open_err(a, &err), MS_ERR_FORMAT);
    cr_expect(strstr(err.msg, "token_embd.weight"), "%s", err.msg);
    free(a);
    free(b);
    free(tmp);
}

Test(model, permuted_without_head_count)
{
    char *tmp = ms_test_tmpdir();
    char *p = ms_path_join(tmp, "m.gguf");
    gguf_write(p, "llama", -1, -1, -1, -1, SPLIT_A, 2);
    ms_model *m = open_ok(p);
    const ms_tensor *q = ms_model_find(m, "model.layers.0.self_attn.q_proj.weight");
    cr_assert_not_null(q);
    float buf[32];
    ms_error err;
    ms_error_clear(&err);
    cr_expect_neq(ms_model_read_rows(m, q, 0, 1, buf, &err), MS_OK);
    cr_expect(strstr(err.msg, "head count"), "%s", err.msg);
    /* an unpermuted tensor still reads */
    const ms_tensor *e = ms_model_find(m, "model.embed_tokens.weight");
    ms_error_clear(&err);
    cr_expect_eq(ms_model_read_rows(m, e, 5, 1, buf, &err), MS_OK);
    cr_expect_eq(buf[3], value(1, 5 * 4 + 3));
    ms_model_close(m);
    /* qwen2 never permutes: rows come back as stored */
    gguf_write(p, "qwen2", 2, 1, -1, -1, SPLIT_A, 2);
    m = open_ok(p);
    q = ms_model_find(m, "model.layers.0.self_attn.q_proj.weight");
    cr_expect_eq(q->permute_heads, 0);
    ms_error_clear(&err);
    cr_expect_eq(ms_model_read_rows(m, q, 1, 1, buf, &err), MS_OK);
    cr_expect_eq(buf[0], value(2, 4));
    ms_model_close(m);
    free(p);
    free(tmp);
}

/* ==== resolution ==== */

static void mkdirs(const char *base, const char *rel)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s/%s", base, rel);
    for (char *s = buf + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(buf, 0700);
            *s = '/';
        }
    }
    mkdir(buf, 0700);
}

static char *resolve_ok(const char *name, const ms_resolve_opts *o)
{
    char *out = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_resolve(name, o, &out, &err), MS_OK, "%s: %s", name, err.msg);
    return out;
}

static void expect_under(const char *got, const char *base, const char *rel)
{
    char want[1024];
    snprintf(want, sizeof(want), "%s/%s", base, rel);
    cr_expect_str_eq(got, want);
}

static void set_mtime(const char *base, const char *rel, time_t t)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", base, rel);
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
}

Test(model, resolve_models_dir_and_map)
{
    char *tmp = ms_test_tmpdir();
    setenv("HOME", tmp, 1);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    char *md = ms_path_join(tmp, "models");
    mkdirs(md, "org--a");
    mkdirs(md, "org/b");
    mkdirs(md, "c");
    mkdirs(md, "org--c");
    mkdirs(tmp, "elsewhere/x");
    char map[1024];
    snprintf(map, sizeof(map), "org/mapped=%s/elsewhere/x", tmp);
    const char *maps[] = {map};
    ms_resolve_opts o = {maps, 1, md, NULL};
    char *r;
    expect_under(r = resolve_ok("org/a", &o), md, "org--a"); free(r);
    expect_under(r = resolve_ok("org/b", &o), md, "org/b"); free(r);
    /* org--c wins over DIR/c: the order DESIGN.md gives */
    expect_under(r = resolve_ok("org/c", &o), md, "org--c"); free(r);
    expect_under(r = resolve_ok("other/c", &o), md, "c"); free(r);
    expect_under(r = resolve_ok("org/mapped", &o), tmp, "elsewhere/x"); free(r);
    /* an existing path is itself */
    cr_expect_str_eq(r = resolve_ok(md, &o), md); free(r);
    /* relative to a recipe's folder */
    ms_resolve_opts rel = {NULL, 0, NULL, tmp};
    expect_under(r = resolve_ok("elsewhere/x", &rel), tmp, "elsewhere/x"); free(r);

    ms_error err;
    ms_error_clear(&err);
    cr_expect_eq(ms_model_resolve("org/none", &o, &r, &err), MS_ERR_NOTFOUND);
    cr_expect_null(r);
    cr_expect(strstr(err.msg, "org--none"), "%s", err.msg);
    cr_expect(strstr(err.msg, "models--org--none"), "%s", err.msg);
    cr_expect_str_eq(err.path, "org/none");
    /* a --model mapping to nothing is an error, not a fall-through */
    const char *badmap[] = {"org/a=/nonexistent/dir"};
    ms_resolve_opts ob = {badmap, 1, md, NULL};
    ms_error_clear(&err);
    cr_expect_eq(ms_model_resolve("org/a", &ob, &r, &err), MS_ERR_NOTFOUND);
    cr_expect_str_eq(err.path, "/nonexistent/dir");
    cr_expect(strstr(err.msg, "--model"), "%s", err.msg);
    /* a name cannot climb out of the models folder */
    mkdirs(tmp, "secret");
    ms_error_clear(&err);
    cr_expect_eq(ms_model_resolve("../secret", &(ms_resolve_opts){NULL, 0, md, NULL},
                                  &r, &err), MS_ERR_NOTFOUND);
    free(md);
    free(tmp);
}

Test(model, resolve_hf_cache)
{
    char *tmp = ms_test_tmpdir();
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    setenv("HOME", tmp, 1);
    mkdirs(tmp, ".cache/huggingface/hub/models--org--m/snapshots/aaa");
    mkdirs(tmp, ".cache/huggingface/hub/models--org--m/snapshots/bbb");
    set_mtime(tmp, ".cache/huggingface/hub/models--org--m/snapshots/aaa", 2000000000);
    set_mtime(tmp, ".cache/huggingface/hub/models--org--m/snapshots/bbb", 1000000000);
    char *r = resolve_ok("org/m", NULL);
    expect_under(r, tmp, ".cache/huggingface/hub/models--org--m/snapshots/aaa");
    free(r);
    /* $HF_HOME/hub comes before ~/.cache */
    mkdirs(tmp, "hfhome/hub/models--org--m/snapshots/ccc");
    setenv("HF_HOME", "", 1);
    r = resolve_ok("org/m", NULL);
    expect_under(r, tmp, ".cache/huggingface/hub/models--org--m/snapshots/aaa");
    free(r);
    char hh[1024];
    snprintf(hh, sizeof(hh), "%s/hfhome", tmp);
    setenv("HF_HOME", hh, 1);
    r = resolve_ok("org/m", NULL);
    expect_under(r, tmp, "hfhome/hub/models--org--m/snapshots/ccc");
    free(r);
    /* and $HF_HUB_CACHE before both */
    mkdirs(tmp, "hubcache/models--org--m/snapshots/ddd");
    snprintf(hh, sizeof(hh), "%s/hubcache", tmp);
    setenv("HF_HUB_CACHE", hh, 1);
    r = resolve_ok("org/m", NULL);
    expect_under(r, tmp, "hubcache/models--org--m/snapshots/ddd");
    free(r);
    /* --models-dir comes before the cache */
    char *md = ms_path_join(tmp, "models");
    mkdirs(md, "org--m");
    ms_resolve_opts o = {NULL, 0, md, NULL};
    expect_under(r = resolve_ok("org/m", &o), md, "org--m");
    free(r);
    free(md);
    free(tmp);
}

Test(model, open_name_keeps_name)
{
    char *tmp = ms_test_tmpdir();
    char *md = ms_path_join(tmp, "models");
    mkdirs(md, "org--tiny");
    char *dir = ms_path_join(md, "org--tiny");
    char *f = ms_path_join(dir, "model.safetensors");
    size_t all[N_TINY];
    for (size_t i = 0; i < N_TINY; i++)
        all[i] = i;
    st_write(f, TINY, all, N_TINY);
    ms_resolve_opts o = {NULL, 0, md, NULL};
    ms_model *m = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_open_name("org/tiny", &o, &m, &err), MS_OK, "%s", err.msg);
    cr_expect_str_eq(m->name, "org/tiny");
    cr_expect_str_eq(m->path, dir);
    cr_expect_eq(m->n_tensors, N_TINY);
    ms_model_close(m);
    free(f);
    free(dir);
    free(md);
    free(tmp);
}

/* ==== the generated families: sharded and GGUF copies of a source ==== */

static void expect_same_model(const char *pa, const char *pb)
{
    ms_model *a = open_ok(pa), *b = open_ok(pb);
    cr_assert_eq(a->n_tensors, b->n_tensors, "%s vs %s", pa, pb);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const ms_tensor *x = &a->tensors[i];
        const ms_tensor *y = ms_model_find(b, x->name);
        cr_assert_not_null(y, "%s not in %s", x->name, pb);
        cr_expect_eq(x->n_rows, y->n_rows);
        cr_expect_eq(x->n_cols, y->n_cols);
        float *u = read_all(a, x), *v = read_all(b, y);
        cr_expect_eq(memcmp(u, v, x->n_elems * 4), 0, "%s: %s", pb, x->name);
        free(u);
        free(v);
    }
    ms_model_close(a);
    ms_model_close(b);
}

Test(model, generated_sharded_and_gguf_copies)
{
    char *truth_p = ms_test_gen("tiny/truth.json");
    if (!ms_path_is_file(truth_p)) {
        free(truth_p);
        cr_skip_test("generated fixtures are absent (run ctest, or ms-fixtures %s)",
                     MS_GEN_DIR);
    }
    cJSON *truth = load_json(truth_p);
    const cJSON *e;
    int n = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(truth, "sharded")) {
        char rel[256];
        snprintf(rel, sizeof(rel), "tiny/%s", e->string);
        char *sh = ms_test_gen(rel);
        snprintf(rel, sizeof(rel), "tiny/%s",
                 cJSON_GetObjectItem(e, "source")->valuestring);
        char *src = ms_test_gen(rel);
        ms_model *m = open_ok(sh);
        cr_expect_eq((double)m->n_files, cJSON_GetObjectItem(e, "n_shards")->valuedouble);
        ms_model_close(m);
        expect_same_model(src, sh);
        free(sh);
        free(src);
        n++;
    }
    /* F32 GGUF copies hold the source's values, Q/K permuted the llama.cpp
     * way: reading them in HF order gives the source back exactly */
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(truth, "gguf")) {
        if (strcmp(cJSON_GetObjectItem(e, "file_type")->valuestring, "F32") != 0)
            continue;
        char rel[256];
        snprintf(rel, sizeof(rel), "tiny/gguf/%s", e->string);
        char *g = ms_test_gen(rel);
        snprintf(rel, sizeof(rel), "tiny/%s",
                 cJSON_GetObjectItem(e, "source")->valuestring);
        char *src = ms_test_gen(rel);
        expect_same_model(src, g);
        free(g);
        free(src);
        n++;
    }
    cr_expect_gt(n, 0);
    cJSON_Delete(truth);
    free(truth_p);
}

Test(model, gemma_norms_lose_the_plus_one)
{
    static const gt G[] = {
        {"output_norm.weight", 4, 1, 5},
        {"blk.0.attn_q_norm.weight", 4, 1, 6},
        {"blk.0.attn_q.weight", 4, 8, 2},
    };
    char *tmp = ms_test_tmpdir();
    char *p = ms_path_join(tmp, "g.gguf");
    const char *archs[] = {"gemma", "gemma2", "gemma3", "gemma4", "llama"};
    for (size_t a = 0; a < sizeof(archs) / sizeof(archs[0]); a++) {
        /* convert_hf_to_gguf stores Gemma 1-3 norms as w + 1 (research notes) */
        float off = a < 3 ? -1.0f : 0.0f;
        gguf_write(p, archs[a], 2, 1, -1, -1, G, 3);
        ms_model *m = open_ok(p);
        const ms_tensor *n = ms_model_find(m, "model.norm.weight");
        const ms_tensor *qn = ms_model_find(m, "model.layers.0.self_attn.q_norm.weight");
        const ms_tensor *q = ms_model_find(m, "model.layers.0.self_attn.q_proj.weight");
        cr_assert(n && qn && q, "%s", archs[a]);
        float buf[32];
        ms_error err;
        ms_error_clear(&err);
        cr_assert_eq(ms_model_read_rows(m, n, 0, 1, buf, &err), MS_OK);
        for (int e = 0; e < 4; e++)
            cr_expect_eq(buf[e], value(5, (size_t)e) + off, "%s", archs[a]);
        cr_assert_eq(ms_model_read_rows(m, qn, 0, 1, buf, &err), MS_OK);
        cr_expect_eq(buf[2], value(6, 2) + off, "%s", archs[a]);
        /* projections are untouched */
        cr_assert_eq(ms_model_read_rows(m, q, 0, 1, buf, &err), MS_OK);
        cr_expect_eq(buf[0], value(2, 0), "%s", archs[a]);
        ms_model_close(m);
    }
    free(p);
    free(tmp);
}
