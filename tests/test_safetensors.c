/*
 * test_safetensors.c - the safetensors reader on real files and on a
 * malformed-input corpus generated here, plus the shard index parser.
 *
 * Reference values come from outside our reader: the GGUF reference index
 * of the same model (shapes, element counts, exact F32 norm values) and the
 * fixture READMEs (tensor counts, dtypes, layout).
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mergescope/safetensors.h"
#include "mergescope/util.h"
#include "testutil.h"

/* ==== helpers ==== */

static cJSON *load_json(const char *rel)
{
    char *p = ms_test_shared(rel);
    if (!p)
        return NULL;
    char *text;
    size_t len;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_read_file(p, 64u << 20, &text, &len, &e), MS_OK, "%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(j, "%s is not JSON", p);
    free(text);
    free(p);
    return j;
}

/* HF llama name -> GGUF name, as the real-gguf README lists the mapping. */
static void hf_to_gguf(const char *hf, char *out, size_t cap)
{
    static const char *const pairs[][2] = {
        {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
        {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
        {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"}, {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"},
    };
    int layer;
    char rest[128];
    if (!strcmp(hf, "model.embed_tokens.weight")) {
        snprintf(out, cap, "token_embd.weight");
    } else if (!strcmp(hf, "lm_head.weight")) {
        snprintf(out, cap, "output.weight");
    } else if (!strcmp(hf, "model.norm.weight")) {
        snprintf(out, cap, "output_norm.weight");
    } else if (sscanf(hf, "model.layers.%d.%127s", &layer, rest) == 2) {
        char *dot = strrchr(rest, '.');
        cr_assert_not_null(dot);
        *dot = '\0';
        const char *g = NULL;
        for (size_t i = 0; i < MS_ARRAY_SIZE(pairs); i++)
            if (!strcmp(rest, pairs[i][0]))
                g = pairs[i][1];
        cr_assert_not_null(g, "unexpected tensor %s", hf);
        snprintf(out, cap, "blk.%d.%s.weight", layer, g);
    } else {
        cr_assert_fail("unexpected tensor %s", hf);
    }
}

static const cJSON *ref_tensor(const cJSON *ref, const char *gguf_name)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(ref, "tensors"))
        if (!strcmp(cJSON_GetObjectItem(t, "name")->valuestring, gguf_name))
            return t;
    return NULL;
}

/* Tensors written by numpy one after the other: the sorted list must tile
 * the data region exactly. */
static void assert_tiles(const ms_st_file *f)
{
    uint64_t at = f->data_start;
    for (size_t i = 0; i < f->n_tensors; i++) {
        cr_assert_eq(f->tensors[i].offset, at, "%s", f->tensors[i].name);
        at += f->tensors[i].nbytes;
    }
    cr_assert_eq(at, f->size);
}

/* ==== real files ==== */

static void check_real_llama(const char *rel, ms_dtype want_dtype)
{
    char *path = ms_test_shared(rel);
    cJSON *ref = load_json("real-gguf/ref/model-F16.ref.json");
    if (!path || !ref)
        cr_skip_test("shared fixtures absent");
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open(path, &f, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(f->n_tensors, 21u);
    cr_assert_eq(f->data_start % 8, 0u, "numpy pads the header to 8 bytes");
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_st_tensor *t = &f->tensors[i];
        char g[128];
        hf_to_gguf(t->name, g, sizeof(g));
        const cJSON *r = ref_tensor(ref, g);
        cr_assert_not_null(r, "%s (%s) not in the reference", t->name, g);
        cr_assert_eq(t->dtype, want_dtype, "%s", t->name);
        const cJSON *shape = cJSON_GetObjectItem(r, "shape_numpy");
        cr_assert_eq(t->ndim, cJSON_GetArraySize(shape), "%s", t->name);
        for (int d = 0; d < t->ndim; d++)
            cr_assert_eq(t->shape[d], (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
        cr_assert_eq(t->n_elems,
                     (uint64_t)cJSON_GetObjectItem(r, "n_elements")->valuedouble);
        cr_assert_eq(t->nbytes, t->n_elems * (want_dtype == MS_DTYPE_F32 ? 4 : 2));
        cr_assert_eq(ms_st_find(f, t->name), t);
    }
    assert_tiles(f);
    cr_assert_null(ms_st_find(f, "model.layers.2.mlp.up_proj.weight"));
    ms_st_close(f);
    cJSON_Delete(ref);
    free(path);
}

Test(safetensors, real_bf16_model_matches_reference)
{
    check_real_llama("real-gguf/source/model.safetensors", MS_DTYPE_BF16);
}

Test(safetensors, real_f32_model_matches_reference)
{
    check_real_llama("real-gguf/source/model-f32.safetensors", MS_DTYPE_F32);
}

/* The norms stay F32 in the quantized files; their reference values are
 * gguf-py's, so reading them at our offset checks the offset itself. */
Test(safetensors, real_f32_values_at_offset)
{
    char *path = ms_test_shared("real-gguf/source/model-f32.safetensors");
    char *refbin = ms_test_shared("real-gguf/ref/model-Q4_K_M.ref.f32");
    cJSON *ref = load_json("real-gguf/ref/model-Q4_K_M.ref.json");
    if (!path || !refbin || !ref)
        cr_skip_test("shared fixtures absent");
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open(path, &f, &e), MS_OK, "%s", e.msg);
    const ms_st_tensor *t = ms_st_find(f, "model.norm.weight");
    cr_assert_not_null(t);
    const cJSON *r = ref_tensor(ref, "output_norm.weight");
    cr_assert_str_eq(cJSON_GetObjectItem(r, "ggml_type")->valuestring, "F32");
    size_t roff = (size_t)cJSON_GetObjectItem(r, "ref_offset")->valuedouble;
    size_t rcount = (size_t)cJSON_GetObjectItem(r, "ref_count")->valuedouble;
    cr_assert_eq(rcount, t->n_elems);
    ms_map m;
    cr_assert_eq(ms_map_open(refbin, &m, &e), MS_OK);
    cr_assert_eq(memcmp(f->data + t->offset, m.data + roff, rcount * 4), 0);
    ms_map_close(&m);
    ms_st_close(f);
    cJSON_Delete(ref);
    free(path);
    free(refbin);
}

/* stories260K: the README's tensor table (47 tensors, HF names). */
static void stories_shape(const char *name, int *nd, int64_t shape[2])
{
    *nd = 2;
    shape[1] = 64;
    if (!strcmp(name, "model.embed_tokens.weight"))
        shape[0] = 512;
    else if (strstr(name, "layernorm") || !strcmp(name, "model.norm.weight"))
        *nd = 1, shape[0] = 64;
    else if (strstr(name, "q_proj") || strstr(name, "o_proj"))
        shape[0] = 64;
    else if (strstr(name, "k_proj") || strstr(name, "v_proj"))
        shape[0] = 32;
    else if (strstr(name, "gate_proj") || strstr(name, "up_proj"))
        shape[0] = 172;
    else if (strstr(name, "down_proj"))
        shape[0] = 64, shape[1] = 172;
    else
        cr_assert_fail("unexpected tensor %s", name);
}

Test(safetensors, real_stories_family)
{
    static const char *const files[] = {
        "stories260K-base.safetensors", "stories260K-base.bf16.safetensors",
        "stories260K-ft-kjv.safetensors", "stories260K-ft-devil.safetensors",
        "stories260K-ft-pycode.safetensors", "stories260K-merge-ta.safetensors",
        "stories260K-merge-ties.safetensors",
    };
    for (size_t k = 0; k < MS_ARRAY_SIZE(files); k++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "real-models/stories260K-family/%s", files[k]);
        char *path = ms_test_shared(rel);
        if (!path)
            cr_skip_test("shared fixtures absent");
        ms_st_file *f;
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_st_open(path, &f, &e), MS_OK, "%s: %s", files[k], e.msg);
        cr_assert_eq(f->n_tensors, 47u, "%s", files[k]);
        cr_assert_null(ms_st_find(f, "lm_head.weight"), "tied embeddings");
        cr_assert_gt(f->n_metadata, 0u, "the README says __metadata__ is present");
        ms_dtype want = strstr(files[k], "bf16") ? MS_DTYPE_BF16 : MS_DTYPE_F32;
        for (size_t i = 0; i < f->n_tensors; i++) {
            const ms_st_tensor *t = &f->tensors[i];
            int nd;
            int64_t shape[2];
            stories_shape(t->name, &nd, shape);
            cr_assert_eq(t->dtype, want);
            cr_assert_eq(t->ndim, nd, "%s", t->name);
            for (int d = 0; d < nd; d++)
                cr_assert_eq(t->shape[d], shape[d], "%s", t->name);
        }
        assert_tiles(f);
        ms_st_close(f);
        free(path);
    }
}

/* A real file cut at each structure boundary: inside the length field, at
 * the end of the header, at the start and last byte of every tensor. */
Test(safetensors, real_file_truncated_at_every_boundary)
{
    char *path =
        ms_test_shared("real-models/stories260K-family/stories260K-base.bf16.safetensors");
    if (!path)
        cr_skip_test("shared fixtures absent");
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open(path, &f, &e), MS_OK, "%s", e.msg);
    uint64_t cuts[8 + 4 + 2 * 64];
    size_t n = 0;
    for (uint64_t b = 0; b < 8; b++)
        cuts[n++] = b;
    cuts[n++] = f->data_start - 1;
    cuts[n++] = f->data_start;
    for (size_t i = 0; i < f->n_tensors && n + 2 <= MS_ARRAY_SIZE(cuts); i++) {
        cuts[n++] = f->tensors[i].offset;
        cuts[n++] = f->tensors[i].offset + f->tensors[i].nbytes - 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = malloc(cuts[i] ? cuts[i] : 1);
        memcpy(p, f->data, cuts[i]);
        ms_st_file *g = (ms_st_file *)1;
        ms_error_clear(&e);
        cr_assert_eq(ms_st_open_mem(p, cuts[i], "cut", &g, &e), MS_ERR_FORMAT,
                     "cut at %llu accepted", (unsigned long long)cuts[i]);
        cr_assert_null(g);
        cr_assert_str_eq(e.path, "cut");
        cr_assert_geq(e.offset, 0);
        free(p);
    }
    ms_st_close(f);
    free(path);
}

/* ==== generated malformed inputs ==== */

/* A file image: 8-byte length, header (padded with spaces to pad), then
 * data_len bytes of data. Caller frees. */
static uint8_t *build(const char *header, size_t pad, size_t data_len, size_t *len)
{
    size_t hl = strlen(header);
    size_t padded = pad > hl ? pad : hl;
    *len = 8 + padded + data_len;
    uint8_t *b = calloc(1, *len);
    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, ' ', padded - hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + padded + i] = (uint8_t)i;
    return b;
}

/* Open buf and expect failure with code, the label as path and an offset
 * inside [lo, hi]. Returns the message for further checks. */
static void expect_err(const uint8_t *buf, size_t len, ms_status code, int64_t lo, int64_t hi,
                       const char *needle)
{
    ms_st_file *f = (ms_st_file *)1;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_st_open_mem(buf, len, "bad.safetensors", &f, &e);
    cr_assert_eq(st, code, "got %s: %s", ms_status_name(st), e.msg);
    cr_assert_null(f);
    cr_assert_eq(e.code, code);
    cr_assert_str_eq(e.path, "bad.safetensors");
    cr_assert(e.offset >= lo && e.offset <= hi, "offset %lld not in [%lld, %lld]: %s",
              (long long)e.offset, (long long)lo, (long long)hi, e.msg);
    cr_assert_gt(strlen(e.msg), 0u);
    if (needle)
        cr_assert(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

static void expect_header_err(const char *header, size_t data_len, int64_t lo, int64_t hi,
                              const char *needle)
{
    size_t len;
    uint8_t *b = build(header, 0, data_len, &len);
    expect_err(b, len, MS_ERR_FORMAT, lo, hi, needle);
    free(b);
}

#define GOOD_HEADER                                                                   \
    "{\"__metadata__\":{\"format\":\"pt\"},"                                        \
    "\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"           \
    "\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"              \
    "\"s\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[28,29]},"               \
    "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,5],\"data_offsets\":[29,29]}}"

Test(safetensors, generated_good_file)
{
    size_t len;
    uint8_t *b = build(GOOD_HEADER, 256, 29, &len);
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open_mem(b, len, "g", &f, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(f->n_tensors, 4u);
    cr_assert_eq(f->data_start, 8u + 256u);
    cr_assert_str_eq(f->tensors[0].name, "a", "sorted by offset");
    cr_assert_eq(f->tensors[0].offset, 264u);
    cr_assert_eq(f->tensors[0].n_elems, 4u);
    cr_assert_str_eq(f->tensors[1].name, "b");
    cr_assert_eq(f->tensors[1].offset, 264u + 16u);
    cr_assert_eq(f->tensors[1].shape[1], 3);
    const ms_st_tensor *s = ms_st_find(f, "s");
    cr_assert_eq(s->ndim, 0);
    cr_assert_eq(s->n_elems, 1u, "a scalar has one element");
    const ms_st_tensor *z = ms_st_find(f, "z");
    cr_assert_eq(z->n_elems, 0u);
    cr_assert_eq(z->nbytes, 0u);
    cr_assert_eq(f->n_metadata, 1u);
    cr_assert_str_eq(f->metadata[0].key, "format");
    cr_assert_str_eq(f->metadata[0].value, "pt");
    ms_st_close(f);
    free(b);
}

Test(safetensors, every_truncation_fails)
{
    size_t len;
    uint8_t *b = build(GOOD_HEADER, 0, 29, &len);
    for (size_t cut = 0; cut < len; cut++) {
        /* copy so ASan sees reads past the cut */
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, b, cut);
        expect_err(p, cut, MS_ERR_FORMAT, 0, (int64_t)len, NULL);
        free(p);
    }
    free(b);
}

Test(safetensors, lying_header_length)
{
    size_t len;
    uint8_t *b = build("{}", 0, 0, &len);
    b[0] = 200; /* says 200 bytes, 2 follow */
    expect_err(b, len, MS_ERR_FORMAT, (int64_t)len, (int64_t)len, "truncated");
    b[0] = 2;
    b[5] = 0x10; /* 2^40 + 2 */
    expect_err(b, len, MS_ERR_FORMAT, 0, 0, "limit");
    memset(b, 0xFF, 8);
    expect_err(b, len, MS_ERR_FORMAT, 0, 0, "limit");
    memset(b, 0, 8);
    expect_err(b, len, MS_ERR_FORMAT, 8, 8, NULL);
    free(b);
}

Test(safetensors, bad_json_and_structure)
{
    expect_header_err("{\"a\":", 0, 8, 13, "JSON");
    expect_header_err("{\"a\":{}} junk", 0, 8, 20, "after");
    expect_header_err("[1,2,3]", 0, 8, 8, "not a JSON object");
    expect_header_err("\"str\"", 0, 8, 8, "not a JSON object");
    expect_header_err("{\"a\":5}", 0, 8, 8, "not an object");
    expect_header_err("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 8, 8, "dtype");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, 8, 8, "shape");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 8, 8, "data_offsets");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, 8, 8,
                      "data_offsets");
    expect_header_err("{\"__metadata__\":[1]}", 0, 8, 8, "__metadata__");
    expect_header_err("{\"__metadata__\":{\"k\":1}}", 0, 8, 8, "not a string");
    expect_header_err("{\"__metadata__\":{},\"__metadata__\":{}}", 0, 8, 8, "twice");
    /* invalid UTF-8 inside a name: the offset points at the bad byte */
    expect_header_err("{\"a\xff\":{}}", 0, 11, 11, "UTF-8");
    expect_header_err("{\"a\xc0\x80\":{}}", 0, 11, 11, "UTF-8");
}

Test(safetensors, bad_types_and_shapes)
{
    expect_header_err("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 8, 8,
                      "unknown dtype");
    expect_header_err("{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 8, 8,
                      "dtype");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 8,
                      8, "shape");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, 8,
                      8, "shape");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
                      8, 8, "shape");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4,
                      8, 8, "shape");
    /* 2^40 * 2^40 overflows 64 bits */
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],"
                      "\"data_offsets\":[0,4]}}", 4, 8, 8, "overflow");
    /* 2^31 * 2^31 * 4 bytes overflows the byte count only */
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                      "\"data_offsets\":[0,4]}}", 4, 8, 8, "overflow");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                      "\"data_offsets\":[0,4]}}", 4, 8, 8, "dims");
}

Test(safetensors, bad_offsets)
{
    const char *h1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(h1);
    /* data region one byte short: offset is the tensor's data */
    expect_header_err(h1, 7, 8 + (int64_t)hl, 8 + (int64_t)hl, "past the end");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, 8,
                      200, "before it begins");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12,
                      8, 200, "expected 8");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                      8, 8, "data_offsets");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                      "\"data_offsets\":[9007199254740000,9007199254740008]}}", 8, 8,
                      INT64_MAX, "past the end");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                      "\"data_offsets\":[1e30,1e30]}}", 8, 8, 8, "data_offsets");
}

Test(safetensors, overlap_and_duplicates)
{
    const char *ov = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    size_t hl = strlen(ov);
    expect_header_err(ov, 12, 8 + (int64_t)hl + 4, 8 + (int64_t)hl + 4, "overlaps");
    /* the same range twice */
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"I8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, 8,
                      200, "overlaps");
    /* a small tensor inside a large one */
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[6,8]}}", 16, 8,
                      200, "overlaps");
    expect_header_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 8, 8,
                      "twice");
}

Test(safetensors, deep_json_nesting_is_refused)
{
    size_t depth = 5000;
    char *h = malloc(depth * 2 + 16);
    size_t n = 0;
    h[n++] = '{';
    memcpy(h + n, "\"a\":", 4);
    n += 4;
    for (size_t i = 0; i < depth; i++)
        h[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        h[n++] = ']';
    h[n++] = '}';
    h[n] = '\0';
    expect_header_err(h, 0, 8, (int64_t)n + 8, NULL);
    free(h);
}

/* cJSON spends ~64 bytes a value: a header of millions of tiny values is
 * refused before parsing, so memory stays bounded by the value cap. */
Test(safetensors, value_bomb_is_refused_before_parsing)
{
    size_t n_vals = (4u << 20) + 16, cap = 2 * n_vals + 64, n = 0;
    char *h = malloc(cap);
    n += (size_t)snprintf(h, cap, "{\"a\":{\"dtype\":\"F32\",\"shape\":[");
    for (size_t i = 0; i < n_vals; i++) {
        h[n++] = '1';
        h[n++] = ',';
    }
    n += (size_t)snprintf(h + n - 1, cap - n, "],\"data_offsets\":[0,4]}}") - 1;
    expect_header_err(h, 4, 8, 8, "JSON values");
    free(h);
    /* the same cap guards the index */
    ms_error e;
    ms_error_clear(&e);
    char **names, **files;
    size_t cnt;
    char *idx = malloc(cap);
    n = (size_t)snprintf(idx, cap, "{\"weight_map\":[");
    for (size_t i = 0; i < n_vals; i++) {
        idx[n++] = '0';
        idx[n++] = ',';
    }
    idx[n - 1] = ']';
    idx[n++] = '}';
    cr_assert_eq(ms_st_index_parse(idx, n, "i.json", &names, &files, &cnt, &e), MS_ERR_FORMAT);
    cr_assert(strstr(e.msg, "JSON values"), "%s", e.msg);
    free(idx);
}

Test(safetensors, open_missing_and_empty_files)
{
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open("/nonexistent/x.safetensors", &f, &e), MS_ERR_NOTFOUND);
    char *dir = ms_test_tmpdir();
    char *p = ms_path_join(dir, "empty.safetensors");
    cr_assert(ms_test_write(p, "", 0));
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open(p, &f, &e), MS_ERR_FORMAT);
    cr_assert_str_eq(e.path, p);
    cr_assert_eq(e.offset, 0);
    remove(p);
    rmdir(dir);
    free(p);
    free(dir);
}

/* ==== index.json ==== */

static ms_status parse_index(const char *text, char ***names, char ***files, size_t *n,
                             ms_error *e)
{
    ms_error_clear(e);
    return ms_st_index_parse(text, strlen(text), "model.safetensors.index.json", names,
                             files, n, e);
}

Test(safetensors, index_good)
{
    const char *text =
        "{\"metadata\":{\"total_size\":100},\"weight_map\":{"
        "\"a.weight\":\"model-00001-of-00002.safetensors\","
        "\"b.weight\":\"sub/model-00002-of-00002.safetensors\","
        "\"c.weight\":\"model-00001-of-00002.safetensors\"}}";
    char **names, **files;
    size_t n;
    ms_error e;
    cr_assert_eq(parse_index(text, &names, &files, &n, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(n, 3u);
    cr_assert_str_eq(names[1], "b.weight");
    cr_assert_str_eq(files[1], "sub/model-00002-of-00002.safetensors");
    cr_assert_str_eq(files[2], "model-00001-of-00002.safetensors");
    ms_st_index_free(names, files, n);
}

static void expect_index_err(const char *text, const char *needle)
{
    char **names = (char **)1, **files = (char **)1;
    size_t n = 7;
    ms_error e;
    ms_status st = parse_index(text, &names, &files, &n, &e);
    cr_assert_eq(st, MS_ERR_FORMAT, "'%s' gave %s", text, ms_status_name(st));
    cr_assert_null(names);
    cr_assert_null(files);
    cr_assert_eq(n, 0u);
    cr_assert_str_eq(e.path, "model.safetensors.index.json");
    cr_assert(e.offset >= 0 && (size_t)e.offset <= strlen(text), "offset %lld",
              (long long)e.offset);
    cr_assert(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

Test(safetensors, index_rejects_escaping_shard_names)
{
    expect_index_err("{\"weight_map\":{\"a\":\"../x.safetensors\"}}", "..");
    expect_index_err("{\"weight_map\":{\"a\":\"sub/../../x.safetensors\"}}", "..");
    expect_index_err("{\"weight_map\":{\"a\":\"sub/..\"}}", "..");
    expect_index_err("{\"weight_map\":{\"a\":\"/etc/passwd\"}}", "absolute");
    expect_index_err("{\"weight_map\":{\"a\":\"..\\\\x.safetensors\"}}", "backslash");
    expect_index_err("{\"weight_map\":{\"a\":\"\"}}", "empty");
    expect_index_err("{\"weight_map\":{\"a\":\"sub//x.safetensors\"}}", "empty");
    expect_index_err("{\"weight_map\":{\"a\":\"sub/\"}}", "empty");
    /* an offset that points at the bad name */
    const char *text = "{\"weight_map\":{\"ok\":\"m.safetensors\",\"a\":\"/etc/passwd\"}}";
    char **names, **files;
    size_t n;
    ms_error e;
    cr_assert_eq(parse_index(text, &names, &files, &n, &e), MS_ERR_FORMAT);
    cr_assert_eq(e.offset, strstr(text, "/etc") - text);
}

Test(safetensors, index_rejects_bad_structure)
{
    expect_index_err("{\"weight_map\":{\"a\":5}}", "not a string");
    expect_index_err("{\"weight_map\":{\"a\":null}}", "not a string");
    expect_index_err("{\"weight_map\":{\"a\":[\"x\"]}}", "not a string");
    expect_index_err("{\"weight_map\":[\"x\"]}", "weight_map");
    expect_index_err("{\"metadata\":{}}", "weight_map");
    expect_index_err("{\"weight_map\":{}}", "empty");
    expect_index_err("[]", "not a JSON object");
    expect_index_err("{\"weight_map\":{\"a\":\"x\"}", "JSON");
    expect_index_err("{\"weight_map\":{\"a\":\"x\"}} trailing", "after");
    expect_index_err("{\"weight_map\":{\"a\":\"x\",\"a\":\"y\"}}", "twice");
    expect_index_err("", "JSON");
}
