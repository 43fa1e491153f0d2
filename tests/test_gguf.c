/*
 * test_gguf.c - the GGUF reader on every real fixture (checked against the
 * gguf-py reference indexes and the fixture READMEs) and on a malformed
 * corpus built here byte by byte.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/gguf.h"
#include "mergescope/safetensors.h"
#include "mergescope/util.h"
#include "testutil.h"

/* ==== a byte builder for GGUF images ==== */

typedef ms_test_img gb;

static void gb_u32(gb *b, uint32_t v) { ms_test_put_le(b, v, 4); }
static void gb_u64(gb *b, uint64_t v) { ms_test_put_le(b, v, 8); }

static void gb_strn(gb *b, const char *s, size_t n)
{
    gb_u64(b, n);
    ms_test_put(b, s, n);
}

static void gb_str(gb *b, const char *s) { gb_strn(b, s, strlen(s)); }

static void gb_head(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    ms_test_put(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

static void gb_key(gb *b, const char *key, uint32_t type)
{
    gb_str(b, key);
    gb_u32(b, type);
}

static void gb_tensor(gb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                      uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, nd);
    for (uint32_t i = 0; i < nd && i < 5; i++) /* the tests pass at most 5 */
        gb_u64(b, ne[i]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

/* Zero padding to the alignment, then n data bytes. */
static void gb_data(gb *b, size_t align, size_t n)
{
    while (b->n % align)
        ms_test_put(b, "", 1);
    for (size_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)(i * 7);
        ms_test_put(b, &v, 1);
    }
}

/* ==== expectations ==== */

static ms_status open_img(const uint8_t *p, size_t n, ms_gguf_file **f, ms_error *e)
{
    ms_error_clear(e);
    /* a private copy, so ASan sees any read past n */
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    ms_status st = ms_gguf_open_mem(copy, n, "bad.gguf", f, e);
    if (st == MS_OK) {
        ms_gguf_close(*f);
        *f = NULL;
    }
    free(copy);
    return st;
}

static void expect_err(const gb *b, ms_status code, int64_t lo, int64_t hi, const char *needle)
{
    ms_gguf_file *f = (ms_gguf_file *)1;
    ms_error e;
    ms_status st = open_img(b->p, b->n, &f, &e);
    cr_assert_eq(st, code, "got %s (%s), want %s", ms_status_name(st), e.msg,
                 ms_status_name(code));
    cr_assert_null(f);
    cr_assert_str_eq(e.path, "bad.gguf");
    cr_assert(e.offset >= lo && e.offset <= hi, "offset %lld not in [%lld, %lld]: %s",
              (long long)e.offset, (long long)lo, (long long)hi, e.msg);
    if (needle)
        cr_assert(strstr(e.msg, needle), "'%s' lacks '%s'", e.msg, needle);
}

static void expect_ok(const gb *b)
{
    ms_gguf_file *f;
    ms_error e;
    cr_assert_eq(open_img(b->p, b->n, &f, &e), MS_OK, "%s", e.msg);
}

/* ==== a complete small file with every value type ==== */

static const uint64_t NE_F32[] = {8, 2};
static const uint64_t NE_Q8[] = {32, 2};

static void build_good(gb *b)
{
    gb_head(b, 3, 2, 17);
    gb_key(b, "general.architecture", MS_GGUF_STRING);
    gb_str(b, "llama");
    gb_key(b, "general.alignment", MS_GGUF_UINT32);
    gb_u32(b, 64);
    gb_key(b, "v.u8", MS_GGUF_UINT8);
    ms_test_put_le(b, 200, 1);
    gb_key(b, "v.i8", MS_GGUF_INT8);
    ms_test_put_le(b, (uint8_t)-5, 1);
    gb_key(b, "v.u16", MS_GGUF_UINT16);
    ms_test_put_le(b, 60000, 2);
    gb_key(b, "v.i16", MS_GGUF_INT16);
    ms_test_put_le(b, (uint16_t)-300, 2);
    gb_key(b, "v.u32", MS_GGUF_UINT32);
    gb_u32(b, 4000000000u);
    gb_key(b, "v.i32", MS_GGUF_INT32);
    gb_u32(b, (uint32_t)-2000000000);
    float f32 = 1.5f;
    uint32_t fb;
    memcpy(&fb, &f32, 4);
    gb_key(b, "v.f32", MS_GGUF_FLOAT32);
    gb_u32(b, fb);
    gb_key(b, "v.bool", MS_GGUF_BOOL);
    ms_test_put_le(b, 1, 1);
    gb_key(b, "v.u64", MS_GGUF_UINT64);
    gb_u64(b, (1ull << 63) + 5);
    gb_key(b, "v.i64", MS_GGUF_INT64);
    gb_u64(b, (uint64_t)-(1ll << 40));
    double f64 = 0.1;
    uint64_t db;
    memcpy(&db, &f64, 8);
    gb_key(b, "v.f64", MS_GGUF_FLOAT64);
    gb_u64(b, db);
    gb_key(b, "tok", MS_GGUF_ARRAY);
    gb_u32(b, MS_GGUF_STRING);
    gb_u64(b, 3);
    gb_str(b, "a");
    gb_str(b, "");
    gb_str(b, "ccc");
    gb_key(b, "nest", MS_GGUF_ARRAY); /* [[1, 2], [3]] of i32 */
    gb_u32(b, MS_GGUF_ARRAY);
    gb_u64(b, 2);
    gb_u32(b, MS_GGUF_INT32);
    gb_u64(b, 2);
    gb_u32(b, 1);
    gb_u32(b, 2);
    gb_u32(b, MS_GGUF_INT32);
    gb_u64(b, 1);
    gb_u32(b, 3);
    gb_key(b, "empty", MS_GGUF_ARRAY);
    gb_u32(b, MS_GGUF_UINT8);
    gb_u64(b, 0);
    gb_key(b, "s.empty", MS_GGUF_STRING);
    gb_str(b, "");
    gb_tensor(b, "t.f32", 2, NE_F32, 0, 0);
    gb_tensor(b, "t.q8", 2, NE_Q8, 8, 64);
    gb_data(b, 64, 64 + 68);
}

Test(gguf, generated_file_reads_back)
{
    gb b = {0};
    build_good(&b);
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_gguf_open_mem(b.p, b.n, "g.gguf", &f, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(f->version, 3u);
    cr_assert_eq(f->alignment, 64u);
    cr_assert_eq(f->n_kvs, 17u);
    cr_assert_eq(f->data_start % 64, 0u);
    cr_assert_eq(f->data_start + 132, b.n);
    int64_t i;
    double d;
    cr_assert(ms_gguf_get_int(f, "v.u8", &i) && i == 200);
    cr_assert(ms_gguf_get_int(f, "v.i8", &i) && i == -5);
    cr_assert(ms_gguf_get_int(f, "v.u16", &i) && i == 60000);
    cr_assert(ms_gguf_get_int(f, "v.i16", &i) && i == -300);
    cr_assert(ms_gguf_get_int(f, "v.u32", &i) && i == 4000000000ll);
    cr_assert(ms_gguf_get_int(f, "v.i32", &i) && i == -2000000000ll);
    cr_assert(ms_gguf_get_int(f, "v.i64", &i) && i == -(1ll << 40));
    cr_assert(!ms_gguf_get_int(f, "v.u64", &i), "2^63+5 does not fit an int64");
    cr_assert(!ms_gguf_get_int(f, "v.f32", &i));
    cr_assert(!ms_gguf_get_int(f, "missing", &i));
    cr_assert(ms_gguf_get_float(f, "v.f32", &d) && d == 1.5);
    cr_assert(ms_gguf_get_float(f, "v.f64", &d) && d == 0.1);
    cr_assert(ms_gguf_get_float(f, "v.i16", &d) && d == -300.0);
    cr_assert(!ms_gguf_get_float(f, "tok", &d));
    const ms_gguf_kv *kv = ms_gguf_find_kv(f, "v.bool");
    cr_assert_eq(kv->value.type, MS_GGUF_BOOL);
    cr_assert_eq(kv->value.v.u, 1u);
    char *s = ms_gguf_get_str(f, "general.architecture");
    cr_assert_str_eq(s, "llama");
    free(s);
    s = ms_gguf_get_str(f, "s.empty");
    cr_assert_str_eq(s, "");
    free(s);
    cr_assert_null(ms_gguf_get_str(f, "v.u8"));
    kv = ms_gguf_find_kv(f, "tok");
    cr_assert_eq(kv->value.v.arr.elem_type, MS_GGUF_STRING);
    cr_assert_eq(kv->value.v.arr.count, 3u);
    cr_assert_eq(kv->value.v.arr.items[2].v.s.len, 3u);
    cr_assert_eq(memcmp(kv->value.v.arr.items[2].v.s.ptr, "ccc", 3), 0);
    cr_assert_eq(kv->value.v.arr.items[1].v.s.len, 0u);
    kv = ms_gguf_find_kv(f, "nest");
    cr_assert_eq(kv->value.v.arr.count, 2u);
    cr_assert_eq(kv->value.v.arr.items[0].v.arr.count, 2u);
    cr_assert_eq(kv->value.v.arr.items[0].v.arr.items[1].v.i, 2);
    cr_assert_eq(kv->value.v.arr.items[1].v.arr.items[0].v.i, 3);
    cr_assert_eq(ms_gguf_find_kv(f, "empty")->value.v.arr.count, 0u);
    cr_assert_eq(f->n_tensors, 2u);
    const ms_gguf_tensor *t = ms_gguf_find_tensor(f, "t.q8");
    cr_assert_eq(t->dtype, MS_DTYPE_Q8_0);
    cr_assert_eq(t->n_dims, 2);
    cr_assert_eq(t->ne[0], 32);
    cr_assert_eq(t->ne[1], 2);
    cr_assert_eq(t->ne[2], 1);
    cr_assert_eq(t->n_elems, 64u);
    cr_assert_eq(t->nbytes, 68u, "two Q8_0 blocks of 34 bytes");
    cr_assert_eq(t->offset, f->data_start + 64);
    t = ms_gguf_find_tensor(f, "t.f32");
    cr_assert_eq(t->nbytes, 64u);
    cr_assert_eq(t->offset, f->data_start);
    cr_assert_null(ms_gguf_find_tensor(f, "t"));
    cr_assert_str_eq(ms_gguf_type_name(MS_GGUF_FLOAT32), "f32");
    ms_gguf_close(f);
    free(b.p);
}

Test(gguf, every_truncation_of_a_small_file_fails)
{
    gb b = {0};
    build_good(&b);
    for (size_t cut = 0; cut < b.n; cut++) {
        gb c = {b.p, cut, cut};
        expect_err(&c, MS_ERR_FORMAT, 0, (int64_t)b.n, NULL);
    }
    free(b.p);
}

Test(gguf, version_two_is_read)
{
    gb b = {0};
    build_good(&b);
    b.p[4] = 2;
    expect_ok(&b);
    free(b.p);
}

/* ==== header ==== */

Test(gguf, bad_magic_and_versions)
{
    gb b = {0};
    ms_test_put(&b, "GGUX", 4);
    gb_u32(&b, 3);
    gb_u64(&b, 0);
    gb_u64(&b, 0);
    expect_err(&b, MS_ERR_FORMAT, 0, 0, "magic");
    memcpy(b.p, "GGUF", 4);
    expect_ok(&b);
    b.p[4] = 1;
    expect_err(&b, MS_ERR_UNSUPPORTED, 4, 4, "version 1");
    b.p[4] = 4;
    expect_err(&b, MS_ERR_UNSUPPORTED, 4, 4, "version 4");
    b.p[4] = 0;
    expect_err(&b, MS_ERR_FORMAT, 4, 4, "version 0");
    b.p[7] = 3; /* 00 00 00 03: version 3 written big-endian */
    expect_err(&b, MS_ERR_UNSUPPORTED, 4, 4, "big-endian");
    free(b.p);
}

Test(gguf, absurd_counts_fail_fast)
{
    static const uint64_t counts[] = {1ull << 60, UINT64_MAX, 1000};
    for (size_t k = 0; k < MS_ARRAY_SIZE(counts); k++) {
        gb b = {0};
        gb_head(&b, 3, 0, counts[k]);
        gb_key(&b, "a", MS_GGUF_UINT8);
        ms_test_put_le(&b, 1, 1);
        expect_err(&b, MS_ERR_FORMAT, 16, 16, "key count");
        free(b.p);
        b = (gb){0};
        gb_head(&b, 3, counts[k], 0);
        expect_err(&b, MS_ERR_FORMAT, 8, 8, "tensor count");
        free(b.p);
    }
}

/* ==== metadata ==== */

Test(gguf, absurd_string_lengths)
{
    static const uint64_t lens[] = {1ull << 63, UINT64_MAX, 17};
    for (size_t k = 0; k < MS_ARRAY_SIZE(lens); k++) {
        gb b = {0};
        gb_head(&b, 3, 0, 1);
        gb_u64(&b, lens[k]); /* key length */
        ms_test_put(&b, "abcdefghijklmnop", 16);
        expect_err(&b, MS_ERR_FORMAT, 24, 24, "key");
        free(b.p);
        b = (gb){0};
        gb_head(&b, 3, 0, 1);
        gb_key(&b, "k", MS_GGUF_STRING);
        gb_u64(&b, lens[k]);
        ms_test_put(&b, "abcd", 4);
        expect_err(&b, MS_ERR_FORMAT, 24 + 9 + 4, 24 + 9 + 4, "string");
        free(b.p);
    }
}

Test(gguf, absurd_array_counts_fail_before_allocating)
{
    static const uint32_t types[] = {MS_GGUF_UINT8, MS_GGUF_UINT64, MS_GGUF_STRING,
                                     MS_GGUF_ARRAY, MS_GGUF_BOOL};
    static const uint64_t counts[] = {1ull << 60, UINT64_MAX, (1ull << 62) + 1, 100};
    for (size_t t = 0; t < MS_ARRAY_SIZE(types); t++) {
        for (size_t k = 0; k < MS_ARRAY_SIZE(counts); k++) {
            gb b = {0};
            gb_head(&b, 3, 0, 1);
            gb_key(&b, "arr", MS_GGUF_ARRAY);
            gb_u32(&b, types[t]);
            gb_u64(&b, counts[k]);
            ms_test_put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
            expect_err(&b, MS_ERR_FORMAT, 24 + 11 + 4, 24 + 11 + 4, "cannot fit");
            free(b.p);
        }
    }
}

/* Arrays of arrays: eight levels are read, a ninth is refused. */
static void build_nested(gb *b, int levels)
{
    gb_head(b, 3, 0, 1);
    gb_key(b, "deep", MS_GGUF_ARRAY);
    for (int i = 0; i < levels - 1; i++) {
        gb_u32(b, MS_GGUF_ARRAY);
        gb_u64(b, 1);
    }
    gb_u32(b, MS_GGUF_UINT8);
    gb_u64(b, 1);
    ms_test_put_le(b, 7, 1);
}

Test(gguf, nested_array_bombs)
{
    gb b = {0};
    build_nested(&b, 8);
    expect_ok(&b);
    free(b.p);
    b = (gb){0};
    build_nested(&b, 9);
    expect_err(&b, MS_ERR_FORMAT, 24, (int64_t)b.n, "nested");
    free(b.p);
    b = (gb){0};
    build_nested(&b, 100000);
    expect_err(&b, MS_ERR_FORMAT, 24, (int64_t)b.n, "nested");
    free(b.p);
    /* wide: a million empty arrays claimed, 12 bytes present */
    b = (gb){0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "wide", MS_GGUF_ARRAY);
    gb_u32(&b, MS_GGUF_ARRAY);
    gb_u64(&b, 1000000);
    gb_u32(&b, MS_GGUF_UINT8);
    gb_u64(&b, 0);
    expect_err(&b, MS_ERR_FORMAT, 24, (int64_t)b.n, "cannot fit");
    free(b.p);
    /* each of many inner arrays claiming a huge count */
    b = (gb){0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "wide", MS_GGUF_ARRAY);
    gb_u32(&b, MS_GGUF_ARRAY);
    gb_u64(&b, 2);
    gb_u32(&b, MS_GGUF_UINT32);
    gb_u64(&b, 1ull << 61);
    gb_u32(&b, MS_GGUF_UINT32);
    gb_u64(&b, 0);
    expect_err(&b, MS_ERR_FORMAT, 24, (int64_t)b.n, "cannot fit");
    free(b.p);
}

Test(gguf, unknown_value_types_and_bad_bools)
{
    gb b = {0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "k", 13);
    gb_u64(&b, 0);
    expect_err(&b, MS_ERR_FORMAT, 24 + 9, 24 + 9, "unknown value type 13");
    free(b.p);
    b = (gb){0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "k", MS_GGUF_ARRAY);
    gb_u32(&b, 0xFFFFFFFFu);
    gb_u64(&b, 1);
    gb_u64(&b, 0);
    expect_err(&b, MS_ERR_FORMAT, 24 + 9 + 4, 24 + 9 + 4, "unknown array element type");
    free(b.p);
    b = (gb){0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "k", MS_GGUF_BOOL);
    ms_test_put_le(&b, 2, 1);
    expect_err(&b, MS_ERR_FORMAT, 24 + 9 + 4, 24 + 9 + 4, "bool");
    free(b.p);
}

Test(gguf, duplicate_and_odd_keys)
{
    gb b = {0};
    gb_head(&b, 3, 0, 2);
    gb_key(&b, "k", MS_GGUF_UINT8);
    ms_test_put_le(&b, 1, 1);
    gb_key(&b, "k", MS_GGUF_UINT32);
    gb_u32(&b, 1);
    expect_err(&b, MS_ERR_FORMAT, 24, 24 + 14, "twice");
    free(b.p);
    b = (gb){0};
    gb_head(&b, 3, 0, 1);
    gb_strn(&b, "a\0b", 3);
    gb_u32(&b, MS_GGUF_UINT8);
    ms_test_put_le(&b, 1, 1);
    expect_err(&b, MS_ERR_FORMAT, 24, 24, "NUL");
    free(b.p);
}

Test(gguf, bad_alignment)
{
    static const uint32_t bad[] = {0, 3, 48, 0x80000001u};
    for (size_t k = 0; k < MS_ARRAY_SIZE(bad); k++) {
        gb b = {0};
        gb_head(&b, 3, 0, 1);
        gb_key(&b, "general.alignment", MS_GGUF_UINT32);
        gb_u32(&b, bad[k]);
        expect_err(&b, MS_ERR_FORMAT, 24, 24, "power of two");
        free(b.p);
    }
    gb b = {0};
    gb_head(&b, 3, 0, 1);
    gb_key(&b, "general.alignment", MS_GGUF_UINT64);
    gb_u64(&b, 32);
    expect_err(&b, MS_ERR_FORMAT, 24, 24, "u32");
    free(b.p);
}

/* ==== tensor infos ==== */

/* A file with one kv and one tensor; data_len bytes of data. Returns the
 * offset of the tensor info. */
static size_t build_one(gb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                        uint64_t offset, size_t data_len)
{
    gb_head(b, 3, 1, 1);
    gb_key(b, "general.architecture", MS_GGUF_STRING);
    gb_str(b, "llama");
    size_t at = b->n;
    gb_tensor(b, name, nd, ne, type, offset);
    gb_data(b, 32, data_len);
    return at;
}

static void expect_one_err(const char *name, uint32_t nd, const uint64_t *ne, uint32_t type,
                           uint64_t offset, size_t data_len, ms_status code, const char *needle)
{
    gb b = {0};
    size_t at = build_one(&b, name, nd, ne, type, offset, data_len);
    expect_err(&b, code, (int64_t)at, (int64_t)b.n, needle);
    free(b.p);
}

Test(gguf, good_single_tensor)
{
    const uint64_t ne[] = {32, 3};
    gb b = {0};
    build_one(&b, "w", 2, ne, 8, 0, 3 * 34);
    expect_ok(&b);
    free(b.p);
}

Test(gguf, bad_tensor_types_and_shapes)
{
    const uint64_t ne[] = {32, 3, 1, 1, 1};
    expect_one_err("w", 2, ne, 77, 0, 3 * 34, MS_ERR_UNSUPPORTED, "unknown ggml type 77");
    expect_one_err("w", 2, ne, 4, 0, 3 * 34, MS_ERR_UNSUPPORTED, "unknown ggml type 4");
    expect_one_err("w", 5, ne, 0, 0, 3 * 128, MS_ERR_FORMAT, "5 dims");
    expect_one_err("w", 0, ne, 0, 0, 64, MS_ERR_FORMAT, "0 dims");
    expect_one_err("w", 0xFFFFFFFFu, ne, 0, 0, 64, MS_ERR_FORMAT, "dims");
    const uint64_t odd[] = {33, 3};
    expect_one_err("w", 2, odd, 8, 0, 4096, MS_ERR_FORMAT, "not a multiple");
    const uint64_t k[] = {128, 2};
    expect_one_err("w", 2, k, 12, 0, 4096, MS_ERR_FORMAT, "block size 256");
    const uint64_t zero[] = {32, 0};
    expect_one_err("w", 2, zero, 0, 0, 4096, MS_ERR_FORMAT, "must be positive");
    const uint64_t neg[] = {32, (uint64_t)-3};
    expect_one_err("w", 2, neg, 0, 0, 4096, MS_ERR_FORMAT, "-3");
    const uint64_t big[] = {1ull << 32, 1ull << 32};
    expect_one_err("w", 2, big, 0, 0, 4096, MS_ERR_FORMAT, "overflows");
    const uint64_t huge_bytes[] = {1ull << 62};
    expect_one_err("w", 1, huge_bytes, 0, 0, 4096, MS_ERR_FORMAT, "overflows");
    const uint64_t past[] = {1ull << 40};
    expect_one_err("w", 1, past, 0, 0, 4096, MS_ERR_FORMAT, "past the end");
}

Test(gguf, tensor_names)
{
    const uint64_t ne[] = {4};
    char name[65];
    memset(name, 'n', 64);
    name[63] = '\0';
    gb b = {0};
    build_one(&b, name, 1, ne, 0, 0, 16);
    expect_ok(&b); /* 63 bytes: the longest ggml accepts */
    free(b.p);
    name[63] = 'n';
    name[64] = '\0';
    expect_one_err(name, 1, ne, 0, 0, 16, MS_ERR_FORMAT, "limit of 63");
    b = (gb){0};
    gb_head(&b, 3, 1, 0);
    gb_strn(&b, "a\0b", 3);
    gb_u32(&b, 1);
    gb_u64(&b, 4);
    gb_u32(&b, 0);
    gb_u64(&b, 0);
    gb_data(&b, 32, 16);
    expect_err(&b, MS_ERR_FORMAT, 24, 24, "NUL");
    free(b.p);
}

static void build_two(gb *b, const char *n1, uint64_t off1, const char *n2, uint64_t off2,
                      size_t data_len)
{
    const uint64_t ne[] = {16};
    gb_head(b, 3, 2, 0);
    gb_tensor(b, n1, 1, ne, 0, off1);
    gb_tensor(b, n2, 1, ne, 0, off2);
    gb_data(b, 32, data_len);
}

Test(gguf, bad_offsets_overlap_and_duplicates)
{
    gb b = {0};
    build_two(&b, "a", 0, "b", 64, 128);
    expect_ok(&b);
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 0, "b", 32, 128);
    expect_err(&b, MS_ERR_FORMAT, 24, 80, "overlaps");
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 64, "b", 0, 128);
    expect_ok(&b); /* out of order is fine while nothing overlaps */
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 0, "a", 64, 128);
    expect_err(&b, MS_ERR_FORMAT, 24, 80, "twice");
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 0, "b", 4, 128);
    expect_err(&b, MS_ERR_FORMAT, 24, 100, "alignment");
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 0, "b", 64, 127);
    expect_err(&b, MS_ERR_FORMAT, 24, 100, "past the end");
    free(b.p);
    b = (gb){0};
    build_two(&b, "a", 0, "b", UINT64_MAX - 31, 128);
    expect_err(&b, MS_ERR_FORMAT, 24, 100, "past the end");
    free(b.p);
    /* tensor infos end, the data section never begins */
    b = (gb){0};
    build_two(&b, "a", 0, "b", 64, 0);
    expect_err(&b, MS_ERR_FORMAT, 24, (int64_t)b.n + 32, NULL);
    free(b.p);
}

/* ==== real files ==== */

static cJSON *load_json(const char *path)
{
    char *text;
    size_t len;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_read_file(path, 64u << 20, &text, &len, &e), MS_OK, "%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(j, "%s is not JSON", path);
    free(text);
    return j;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    cr_assert(cJSON_IsNumber(v), "%s is not a number", k);
    return v->valuedouble;
}

static void check_against_ref(const char *gguf_path, const cJSON *ref)
{
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_gguf_open(gguf_path, &f, &e), MS_OK, "%s: %s", gguf_path, e.msg);
    cr_assert_eq(f->size, (uint64_t)num(ref, "gguf_size"));
    cr_assert_eq(f->version, (uint32_t)num(ref, "gguf_version"));
    cr_assert_eq(f->alignment, (uint32_t)num(ref, "alignment"));
    cr_assert_eq(f->n_kvs, (size_t)num(ref, "n_kv"));
    cr_assert_eq(f->n_tensors, (size_t)num(ref, "n_tensors"));
    cr_assert_eq(f->data_start, (uint64_t)num(ref, "data_offset"));
    int64_t ft;
    cr_assert(ms_gguf_get_int(f, "general.file_type", &ft));
    cr_assert_eq(ft, (int64_t)num(ref, "general.file_type"));
    const cJSON *chunks = cJSON_GetObjectItem(ref, "quantize.imatrix.chunks_count");
    int64_t got;
    if (cJSON_IsNumber(chunks))
        cr_assert(ms_gguf_get_int(f, "quantize.imatrix.chunks_count", &got) &&
                  got == (int64_t)chunks->valuedouble);
    else
        cr_assert_null(ms_gguf_find_kv(f, "quantize.imatrix.chunks_count"));
    size_t i = 0;
    const cJSON *rt;
    cJSON_ArrayForEach(rt, cJSON_GetObjectItem(ref, "tensors")) {
        const ms_gguf_tensor *t = &f->tensors[i++];
        cr_assert_str_eq(t->name, cJSON_GetObjectItem(rt, "name")->valuestring);
        cr_assert_eq(t->ggml_type, (uint32_t)num(rt, "ggml_type_id"), "%s", t->name);
        cr_assert_str_eq(ms_dtype_name(t->dtype),
                         cJSON_GetObjectItem(rt, "ggml_type")->valuestring);
        const cJSON *ne = cJSON_GetObjectItem(rt, "shape_ne");
        cr_assert_eq(t->n_dims, cJSON_GetArraySize(ne), "%s", t->name);
        for (int d = 0; d < t->n_dims; d++)
            cr_assert_eq(t->ne[d], (int64_t)cJSON_GetArrayItem(ne, d)->valuedouble);
        cr_assert_eq(t->n_elems, (uint64_t)num(rt, "n_elements"));
        cr_assert_eq(t->nbytes, (uint64_t)num(rt, "n_bytes"), "%s", t->name);
        cr_assert_eq(t->offset, (uint64_t)num(rt, "data_offset_abs"), "%s", t->name);
        cr_assert_eq(t->offset - f->data_start, (uint64_t)num(rt, "data_offset_rel"));
    }
    cr_assert_eq(i, f->n_tensors);
    char *arch = ms_gguf_get_str(f, "general.architecture");
    cr_assert_str_eq(arch, "llama");
    free(arch);
    const ms_gguf_kv *tok = ms_gguf_find_kv(f, "tokenizer.ggml.tokens");
    cr_assert_not_null(tok);
    cr_assert_eq(tok->value.v.arr.count, 512u, "the README's 512-token vocabulary");
    size_t bytes = 0;
    for (uint64_t k = 0; k < tok->value.v.arr.count; k++) {
        const ms_gguf_str *s = &tok->value.v.arr.items[k].v.s;
        if (s->len == 6 && !memcmp(s->ptr, "<0x", 3) && s->ptr[5] == '>')
            bytes++;
    }
    cr_assert_eq(bytes, 256u, "256 byte tokens");
    ms_gguf_close(f);
}

Test(gguf, every_real_gguf_matches_reference)
{
    char *dir = ms_test_shared("real-gguf/gguf");
    if (!dir)
        cr_skip_test("shared fixtures absent");
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        if (!ms_str_endswith(de->d_name, ".gguf"))
            continue;
        char stem[256], rel[512];
        snprintf(stem, sizeof(stem), "%.*s", (int)(strlen(de->d_name) - 5), de->d_name);
        snprintf(rel, sizeof(rel), "real-gguf/ref/%s.ref.json", stem);
        char *refp = ms_test_shared(rel);
        cr_assert_not_null(refp, "no reference for %s", de->d_name);
        char *path = ms_path_join(dir, de->d_name);
        cJSON *ref = load_json(refp);
        check_against_ref(path, ref);
        cJSON_Delete(ref);
        free(path);
        free(refp);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, 24, "the README lists 24 files");
    free(dir);
}

Test(gguf, real_source_and_imatrix)
{
    char *src = ms_test_shared("real-gguf/source/model-f32.gguf");
    char *imx = ms_test_shared("real-gguf/source/imatrix.gguf");
    if (!src || !imx)
        cr_skip_test("shared fixtures absent");
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_gguf_open(src, &f, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(f->n_tensors, 21u);
    for (size_t i = 0; i < f->n_tensors; i++)
        cr_assert_eq(f->tensors[i].dtype, MS_DTYPE_F32);
    ms_gguf_close(f);
    cr_assert_eq(ms_gguf_open(imx, &f, &e), MS_OK, "%s", e.msg);
    char *type = ms_gguf_get_str(f, "general.type");
    cr_assert_str_eq(type, "imatrix");
    free(type);
    int64_t v;
    cr_assert(ms_gguf_get_int(f, "imatrix.chunk_count", &v) && v == 166);
    cr_assert(ms_gguf_get_int(f, "imatrix.chunk_size", &v) && v == 128);
    const ms_gguf_kv *ds = ms_gguf_find_kv(f, "imatrix.datasets");
    cr_assert_eq(ds->value.v.arr.count, 1u);
    cr_assert_eq(memcmp(ds->value.v.arr.items[0].v.s.ptr, "calib.txt", 9), 0);
    cr_assert_eq(f->n_tensors, 30u, "15 entries of two tensors");
    size_t counts = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        if (ms_str_endswith(f->tensors[i].name, ".counts")) {
            counts++;
            cr_assert_eq(f->tensors[i].ne[0], 1);
        }
    }
    cr_assert_eq(counts, 15u);
    ms_gguf_close(f);
    free(src);
    free(imx);
}

/* GGUF name -> HF name for the stories files (README mapping). */
static void gguf_to_hf(const char *g, char *out, size_t cap)
{
    static const char *const pairs[][2] = {
        {"attn_q", "self_attn.q_proj"}, {"attn_k", "self_attn.k_proj"},
        {"attn_v", "self_attn.v_proj"}, {"attn_output", "self_attn.o_proj"},
        {"ffn_gate", "mlp.gate_proj"}, {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"}, {"attn_norm", "input_layernorm"},
        {"ffn_norm", "post_attention_layernorm"},
    };
    int layer;
    char kind[64];
    if (!strcmp(g, "token_embd.weight")) {
        snprintf(out, cap, "model.embed_tokens.weight");
    } else if (!strcmp(g, "output_norm.weight")) {
        snprintf(out, cap, "model.norm.weight");
    } else if (sscanf(g, "blk.%d.%63[a-z_].weight", &layer, kind) == 2) {
        for (size_t i = 0; i < MS_ARRAY_SIZE(pairs); i++)
            if (!strcmp(kind, pairs[i][0])) {
                snprintf(out, cap, "model.layers.%d.%s.weight", layer, pairs[i][1]);
                return;
            }
        cr_assert_fail("unexpected tensor %s", g);
    } else {
        cr_assert_fail("unexpected tensor %s", g);
    }
}

Test(gguf, real_stories_family)
{
    static const struct {
        const char *file;
        int n_f32, n_f16, n_q8_0, n_q5_0;
    } files[] = {
        {"stories260K-base.f32.gguf", 47, 0, 0, 0},
        {"stories260K-merge-ta.f32.gguf", 47, 0, 0, 0},
        {"stories260K-base.Q8_0.gguf", 11, 5, 31, 0},
        {"stories260K-merge-ta.Q8_0.gguf", 11, 5, 31, 0},
        {"stories260K-base.Q4_K_M.gguf", 11, 5, 3, 28},
        {"stories260K-merge-ta.Q4_K_M.gguf", 11, 5, 3, 28},
    };
    char *stp = ms_test_shared("real-models/stories260K-family/stories260K-base.safetensors");
    if (!stp)
        cr_skip_test("shared fixtures absent");
    ms_st_file *st;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open(stp, &st, &e), MS_OK, "%s", e.msg);
    for (size_t k = 0; k < MS_ARRAY_SIZE(files); k++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "real-models/stories260K-family/%s", files[k].file);
        char *path = ms_test_shared(rel);
        cr_assert_not_null(path);
        ms_gguf_file *f;
        cr_assert_eq(ms_gguf_open(path, &f, &e), MS_OK, "%s: %s", rel, e.msg);
        cr_assert_eq(f->version, 3u);
        cr_assert_eq(f->n_tensors, 47u);
        int hist[MS_DTYPE_COUNT] = {0};
        for (size_t i = 0; i < f->n_tensors; i++) {
            const ms_gguf_tensor *t = &f->tensors[i];
            hist[t->dtype]++;
            char hf[128];
            gguf_to_hf(t->name, hf, sizeof(hf));
            const ms_st_tensor *s = ms_st_find(st, hf);
            cr_assert_not_null(s, "%s: %s", files[k].file, hf);
            cr_assert_eq(t->n_dims, s->ndim, "%s", t->name);
            for (int d = 0; d < t->n_dims; d++)
                cr_assert_eq(t->ne[d], s->shape[s->ndim - 1 - d], "%s", t->name);
        }
        cr_assert_eq(hist[MS_DTYPE_F32], files[k].n_f32, "%s", files[k].file);
        cr_assert_eq(hist[MS_DTYPE_F16], files[k].n_f16, "%s", files[k].file);
        cr_assert_eq(hist[MS_DTYPE_Q8_0], files[k].n_q8_0, "%s", files[k].file);
        cr_assert_eq(hist[MS_DTYPE_Q5_0], files[k].n_q5_0, "%s", files[k].file);
        const ms_gguf_kv *tok = ms_gguf_find_kv(f, "tokenizer.ggml.tokens");
        cr_assert_eq(tok->value.v.arr.count, 512u);
        cr_assert_eq(memcmp(tok->value.v.arr.items[1].v.s.ptr, "<s>", 3), 0);
        ms_gguf_close(f);
        free(path);
    }
    ms_st_close(st);
    free(stp);
}

/* Truncating a real file at each structure boundary: the header fields,
 * every key/value, every tensor info, the data section, every tensor. */
Test(gguf, real_file_truncated_at_every_boundary)
{
    char *path = ms_test_shared("real-gguf/gguf/model-Q4_K_M.gguf");
    if (!path)
        cr_skip_test("shared fixtures absent");
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_gguf_open(path, &f, &e), MS_OK, "%s", e.msg);
    size_t cap = 64 + 3 * f->n_kvs + 3 * f->n_tensors, n = 0;
    uint64_t *cuts = calloc(cap, sizeof(*cuts));
    for (uint64_t b = 0; b < 24; b++)
        cuts[n++] = b;
    for (size_t i = 0; i < f->n_kvs; i++) {
        cuts[n++] = f->kvs[i].offset;
        cuts[n++] = f->kvs[i].offset + 8;
        cuts[n++] = f->kvs[i].offset + 8 + strlen(f->kvs[i].key) + 4;
    }
    for (size_t i = 0; i < f->n_tensors; i++) {
        cuts[n++] = f->tensors[i].info_offset;
        cuts[n++] = f->tensors[i].offset;
        cuts[n++] = f->tensors[i].offset + f->tensors[i].nbytes - 1;
    }
    cuts[n++] = f->data_start - 1;
    cuts[n++] = f->data_start;
    cuts[n++] = f->size - 1;
    for (size_t i = 0; i < n; i++) {
        gb c = {(uint8_t *)f->data, (size_t)cuts[i], (size_t)cuts[i]};
        expect_err(&c, MS_ERR_FORMAT, 0, (int64_t)f->size, NULL);
    }
    free(cuts);
    ms_gguf_close(f);
    free(path);
}
