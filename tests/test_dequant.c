/*
 * test_dequant.c - every ggml quant type decoded exactly.
 *
 * The conformance test walks every tensor of every GGUF in
 * ../shared/fixtures/real-gguf/gguf: it decodes the whole tensor from the
 * bytes named by ref/X.ref.json (offset and size, no GGUF parser involved),
 * and checks the sha256 of the float32 values against full_sha256_f32le
 * (computed by gguf-py, which the README says is bit-identical to ggml),
 * plus the sampled rows in ref/X.ref.f32 bit for bit.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "dequant_impl.h"
#include "mergescope/dtype.h"
#include "mergescope/util.h"
#include "sha256.h"
#include "testutil.h"

typedef struct ref_file {
    cJSON *json;
    ms_map gguf, ref;
} ref_file;

static bool ref_open(const char *dir, const char *stem, ref_file *rf)
{
    char path[1024];
    ms_error err;
    char *text = NULL;
    size_t len;
    memset(rf, 0, sizeof(*rf));
    snprintf(path, sizeof(path), "%s/ref/%s.ref.json", dir, stem);
    if (ms_read_file(path, 1u << 24, &text, &len, &err) != MS_OK)
        return false;
    rf->json = cJSON_Parse(text);
    free(text);
    snprintf(path, sizeof(path), "%s/gguf/%s.gguf", dir, stem);
    if (!rf->json || ms_map_open(path, &rf->gguf, &err) != MS_OK)
        return false;
    snprintf(path, sizeof(path), "%s/ref/%s.ref.f32", dir, stem);
    return ms_map_open(path, &rf->ref, &err) == MS_OK;
}

static void ref_close(ref_file *rf)
{
    cJSON_Delete(rf->json);
    ms_map_close(&rf->gguf);
    ms_map_close(&rf->ref);
}

static uint64_t jnum(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(v), "missing number %s", key);
    return (uint64_t)v->valuedouble;
}

/* The sampled rows of one tensor equal the reference floats bit for bit. */
static void check_rows(const ref_file *rf, const cJSON *t, const float *dec,
                       uint64_t n, const char *label)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(t, "rows");
    const uint8_t *ref = rf->ref.data + jnum(t, "ref_offset");
    uint64_t count = jnum(t, "ref_count");
    cr_assert_leq(jnum(t, "ref_offset") + count * 4, rf->ref.size);
    if (cJSON_IsString(rows)) {
        cr_assert_eq(count, n);
        cr_assert(!memcmp(ref, dec, n * 4), "%s: values differ from reference", label);
        return;
    }
    uint64_t row_len = jnum(t, "row_len"), k = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, rows) {
        uint64_t row = (uint64_t)r->valuedouble;
        cr_assert_leq((row + 1) * row_len, n);
        cr_assert(!memcmp(ref + 4 * k * row_len, dec + row * row_len, row_len * 4),
                  "%s: row %llu differs from reference", label, (unsigned long long)row);
        k++;
    }
    cr_assert_eq(k * row_len, count, "%s: sampled row count", label);
}

static void check_tensor(const ref_file *rf, const cJSON *t, const char *stem,
                         int *seen_types)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(t, "name")->valuestring;
    ms_dtype dt = ms_dtype_from_ggml((uint32_t)jnum(t, "ggml_type_id"));
    uint64_t n = jnum(t, "n_elements"), nbytes = jnum(t, "n_bytes"), want;
    uint64_t off = jnum(t, "data_offset_abs");
    char label[600];
    snprintf(label, sizeof(label), "%s %s (%s)", stem, name, ms_dtype_name(dt));
    cr_assert_neq(dt, MS_DTYPE_INVALID, "%s: unknown type", label);
    cr_assert(ms_dtype_nbytes(dt, n, &want) && want == nbytes, "%s: size", label);
    cr_assert_leq(off + nbytes, rf->gguf.size);
    float *dec = malloc(n * 4), *ref2 = malloc(n * 4);
    cr_assert(dec && ref2);
    cr_assert_eq(ms_dtype_to_f32(dt, rf->gguf.data + off, n, dec), MS_OK, "%s", label);
    sha256_ctx c;
    char hex[65];
    sha256_init(&c);
    sha256_update(&c, dec, n * 4);
    sha256_hex(&c, hex);
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(t, "full_sha256_f32le");
    cr_assert_str_eq(hex, sha->valuestring, "%s: sha256 of decoded tensor", label);
    check_rows(rf, t, dec, n, label);
    if (ms_dtype_get(dt)->is_quant) {
        /* the portable decoder gives the same bits as the dispatched one */
        cr_assert_eq(ms_dequant_scalar(dt, rf->gguf.data + off, n, ref2), MS_OK);
        cr_assert(!memcmp(dec, ref2, n * 4), "%s: scalar and SIMD differ", label);
    }
    seen_types[dt] = 1;
    free(dec);
    free(ref2);
}

Test(dequant, conformance_every_real_gguf_tensor)
{
    char *dir = ms_test_shared("real-gguf");
    if (!dir || !ms_path_is_dir(dir))
        cr_skip_test("shared fixtures real-gguf not found");
    char *gdir = ms_path_join(dir, "gguf");
    DIR *d = opendir(gdir);
    cr_assert(d);
    int seen[MS_DTYPE_COUNT] = {0}, files = 0, tensors = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!ms_str_endswith(de->d_name, ".gguf"))
            continue;
        char stem[256];
        snprintf(stem, sizeof(stem), "%.*s", (int)strlen(de->d_name) - 5, de->d_name);
        ref_file rf;
        cr_assert(ref_open(dir, stem, &rf), "cannot open references of %s", stem);
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(rf.json, "tensors")) {
            check_tensor(&rf, t, stem, seen);
            tensors++;
        }
        ref_close(&rf);
        files++;
    }
    closedir(d);
    cr_assert_eq(files, 24);
    cr_assert_geq(tensors, 24 * 21);
    /* every type the issue names appeared at least once */
    static const ms_dtype want[] = {
        MS_DTYPE_F32, MS_DTYPE_F16, MS_DTYPE_Q4_0, MS_DTYPE_Q4_1, MS_DTYPE_Q5_0,
        MS_DTYPE_Q5_1, MS_DTYPE_Q8_0, MS_DTYPE_Q2_K, MS_DTYPE_Q3_K, MS_DTYPE_Q4_K,
        MS_DTYPE_Q5_K, MS_DTYPE_Q6_K, MS_DTYPE_IQ1_S, MS_DTYPE_IQ1_M, MS_DTYPE_IQ2_XXS,
        MS_DTYPE_IQ2_XS, MS_DTYPE_IQ2_S, MS_DTYPE_IQ3_XXS, MS_DTYPE_IQ3_S,
        MS_DTYPE_IQ4_NL, MS_DTYPE_IQ4_XS, MS_DTYPE_TQ1_0, MS_DTYPE_TQ2_0, MS_DTYPE_MXFP4,
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(want); i++)
        cr_assert(seen[want[i]], "type %s not covered", ms_dtype_name(want[i]));
    free(gdir);
    free(dir);
}

/* Random blocks: SIMD and scalar decoders agree bit for bit on any bytes
 * (scale fields forced finite so NaN payloads do not matter). */
Test(dequant, simd_matches_scalar_on_random_blocks)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    enum { N = 256 * 64 };
    for (int dt = 1; dt < MS_DTYPE_COUNT; dt++) {
        const ms_dtype_info *in = ms_dtype_get((ms_dtype)dt);
        if (!in->is_quant || !ms_dtype_can_decode((ms_dtype)dt))
            continue;
        uint64_t nbytes;
        cr_assert(ms_dtype_nbytes((ms_dtype)dt, N, &nbytes));
        uint8_t *src = malloc(nbytes);
        float *a = malloc(N * 4), *b = malloc(N * 4);
        for (uint64_t i = 0; i < nbytes; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            /* clear bit 6 of every byte: fp16 exponents stay below 31 */
            src[i] = (uint8_t)(s & 0xbf);
        }
        cr_assert_eq(ms_dequant((ms_dtype)dt, src, N, a), MS_OK);
        cr_assert_eq(ms_dequant_scalar((ms_dtype)dt, src, N, b), MS_OK);
        cr_assert(!memcmp(a, b, N * 4), "%s: SIMD differs from scalar", in->name);
        free(src);
        free(a);
        free(b);
    }
}

Test(dequant, rejects_partial_blocks_and_plain_types)
{
    uint8_t buf[256] = {0};
    float out[64];
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_Q4_0, buf, 31, out), MS_ERR_USAGE);
    cr_assert_eq(ms_dequant(MS_DTYPE_Q4_0, buf, 33, out), MS_ERR_USAGE);
    cr_assert_eq(ms_dequant(MS_DTYPE_F32, buf, 4, out), MS_ERR_UNSUPPORTED);
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_Q8_K, buf, 256, out), MS_ERR_UNSUPPORTED);
}

/* Closed forms: one hand-built block per family. */
Test(dequant, hand_built_blocks)
{
    float y[256];
    /* Q8_0: d = 0.5 (fp16 0x3800), qs = -16..15 */
    uint8_t q8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; j++)
        q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    cr_assert_eq(ms_dequant(MS_DTYPE_Q8_0, q8, 32, y), MS_OK);
    for (int j = 0; j < 32; j++)
        cr_assert_eq(y[j], (float)(j - 16) * 0.5f);
    /* fp16 subnormal and negative scales decode exactly too */
    const uint16_t scales[] = {0x0001, 0x03ff, 0x8200, 0xfbff, 0x0400};
    for (size_t k = 0; k < MS_ARRAY_SIZE(scales); k++) {
        q8[0] = (uint8_t)scales[k], q8[1] = (uint8_t)(scales[k] >> 8);
        float d = ms_f16_to_f32(scales[k]);
        cr_assert_eq(ms_dequant(MS_DTYPE_Q8_0, q8, 32, y), MS_OK);
        for (int j = 0; j < 32; j++)
            cr_assert_eq(y[j], (float)(j - 16) * d, "scale %04x", scales[k]);
    }
    /* Q4_0: d = 2 (0x4000), byte j = low nibble j%16, high nibble 15 - j%16 */
    uint8_t q4[18] = {0x00, 0x40};
    for (int j = 0; j < 16; j++)
        q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
    cr_assert_eq(ms_dequant(MS_DTYPE_Q4_0, q4, 32, y), MS_OK);
    for (int j = 0; j < 16; j++) {
        cr_assert_eq(y[j], (float)(j - 8) * 2.0f);
        cr_assert_eq(y[j + 16], (float)(7 - j) * 2.0f);
    }
    /* MXFP4 with e = 0: scale 2^-128 is a float subnormal and must survive */
    uint8_t mx[17] = {0};
    mx[1] = 0x0f; /* element 0: code 15 -> -12; element 16: code 0 -> 0 */
    cr_assert_eq(ms_dequant(MS_DTYPE_MXFP4, mx, 32, y), MS_OK);
    cr_assert_eq(y[0], -12.0f * 0x1p-128f);
    cr_assert_eq(y[16], 0.0f);
    /* TQ2_0: d = 1, all codes 2 -> +1 */
    uint8_t tq[66];
    memset(tq, 0xaa, 64);
    tq[64] = 0x00, tq[65] = 0x3c;
    cr_assert_eq(ms_dequant(MS_DTYPE_TQ2_0, tq, 256, y), MS_OK);
    for (int j = 0; j < 256; j++)
        cr_assert_eq(y[j], 1.0f);
}

/* lib/iq_grids.c is what scripts/gen_grids.py makes of the shared table
 * data: the committed file has not drifted from its source. */
Test(dequant, grid_tables_match_their_source)
{
    char *tables = ms_test_shared("ggml-tables/tables.json");
    if (!tables || !ms_path_is_file(tables))
        cr_skip_test("shared fixtures ggml-tables not found");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 '%s/scripts/gen_grids.py' '%s' | cmp -s - '%s/lib/iq_grids.c'",
             MS_SOURCE_DIR, tables, MS_SOURCE_DIR);
    cr_assert_eq(system(cmd), 0, "lib/iq_grids.c differs from gen_grids.py output");
    free(tables);
}
