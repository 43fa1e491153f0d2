/*
 * test_fuzz_regress.c - inputs found by fuzzing, replayed through the same
 * entry points as the fuzz targets (tests/data/fuzz/<target>/<file>), and
 * hostile inputs run under CPU-time and address-space limits so a parser
 * that allocates what a file claims, or loops on it, fails here.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mergescope/gguf.h"
#include "mergescope/imatrix.h"
#include "mergescope/recipe.h"
#include "mergescope/safetensors.h"
#include "mergescope/util.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define MS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MS_ASAN 1
#endif
#endif

/* ==== replay ==== */

static void check_err(ms_status st, const ms_error *e, const char *label)
{
    if (st == MS_OK)
        return;
    cr_assert_neq(e->code, MS_OK);
    cr_assert_gt(strlen(e->msg), 0u, "%s: an error without a message", label);
    cr_assert_str_eq(e->path, label);
}

static void replay_gguf(const uint8_t *p, size_t n, const char *label)
{
    ms_gguf_file *f;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_gguf_open_mem(p, n, label, &f, &e);
    check_err(st, &e, label);
    if (st)
        return;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const ms_gguf_tensor *t = &f->tensors[i];
        cr_assert_leq(t->offset + t->nbytes, n);
        uint64_t blk = ms_dtype_get(t->dtype)->block_elems, k = t->n_elems, need;
        k = k < 4096 ? k : 4096;
        k -= k % blk;
        if (!k || !ms_dtype_can_decode(t->dtype) || !ms_dtype_nbytes(t->dtype, k, &need))
            continue;
        float *out = malloc(k * sizeof(float));
        cr_assert_eq(ms_dtype_to_f32(t->dtype, p + t->offset, k, out), MS_OK);
        free(out);
    }
    ms_gguf_close(f);
}

static void replay_safetensors(const uint8_t *p, size_t n, const char *label)
{
    ms_st_file *f;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_st_open_mem(p, n, label, &f, &e);
    check_err(st, &e, label);
    if (!st)
        ms_st_close(f);
}

static void replay_st_index(const uint8_t *p, size_t n, const char *label)
{
    char **names, **files;
    size_t cnt;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_st_index_parse((const char *)p, n, label, &names, &files, &cnt, &e);
    check_err(st, &e, label);
    if (!st)
        ms_st_index_free(names, files, cnt);
}

static void replay_imatrix(const uint8_t *p, size_t n, const char *label)
{
    ms_imatrix *im;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_imatrix_load_mem(p, n, label, &im, &e);
    check_err(st, &e, label);
    if (!st)
        ms_imatrix_free(im);
}

static void replay_recipe(const uint8_t *p, size_t n, const char *label)
{
    ms_recipe *r;
    ms_error e;
    ms_error_clear(&e);
    ms_status st = ms_recipe_parse((const char *)p, n, label, &r, &e);
    check_err(st, &e, label);
    if (st)
        return;
    for (size_t s = 0; s < r->n_stages; s++)
        for (size_t m = 0; m < r->stages[s].n_modules; m++) {
            ms_recipe_plan *plan;
            ms_error_clear(&e);
            if (ms_recipe_plan_build(&r->stages[s], m, 6, &plan, &e) == MS_OK)
                ms_recipe_plan_free(plan);
        }
    ms_recipe_free(r);
}

typedef void (*replay_fn)(const uint8_t *p, size_t n, const char *label);

static const struct {
    const char *target;
    replay_fn fn;
} replays[] = {
    {"gguf", replay_gguf},       {"safetensors", replay_safetensors},
    {"st_index", replay_st_index}, {"imatrix", replay_imatrix},
    {"recipe", replay_recipe},
};

/* Replay every committed input of one target; returns how many. */
static int replay_dir(const char *target, replay_fn fn)
{
    char *dir = ms_path_join(MS_SOURCE_DIR "/tests/data/fuzz", target);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *path = ms_path_join(dir, de->d_name);
        char *text;
        size_t len;
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_read_file(path, 16u << 20, &text, &len, &e), MS_OK, "%s", e.msg);
        /* an exact-size copy: a read past the input is caught by ASan */
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, text, len);
        free(text);
        fn(copy, len, de->d_name);
        free(copy);
        free(path);
        n++;
    }
    if (d)
        closedir(d);
    free(dir);
    return n;
}

Test(fuzz_regress, committed_findings_replay_cleanly)
{
    int total = 0;
    for (size_t i = 0; i < MS_ARRAY_SIZE(replays); i++)
        total += replay_dir(replays[i].target, replays[i].fn);
    cr_assert_gt(total, 0, "tests/data/fuzz holds the fuzzers' findings");
}

/* ==== hostile inputs under limits ==== */

static void limit_resources(void)
{
    struct rlimit cpu = {20, 20};
    cr_assert_eq(setrlimit(RLIMIT_CPU, &cpu), 0);
#ifndef MS_ASAN
    /* ASan reserves terabytes of shadow address space; the limit is
     * enforced in the plain build. */
    struct rlimit as = {1ul << 30, 1ul << 30};
    cr_assert_eq(setrlimit(RLIMIT_AS, &as), 0);
#endif
}

typedef ms_test_img img;

/* A GGUF with one array key of count elements of elem_type, each elem_size
 * zero bytes. */
static img gguf_array(uint32_t elem_type, uint64_t count, size_t elem_size)
{
    img b = {0};
    ms_test_put(&b, "GGUF", 4);
    ms_test_put_le(&b, 3, 4);
    ms_test_put_le(&b, 0, 8);
    ms_test_put_le(&b, 1, 8);
    ms_test_put_le(&b, 3, 8);
    ms_test_put(&b, "arr", 3);
    ms_test_put_le(&b, MS_GGUF_ARRAY, 4);
    ms_test_put_le(&b, elem_type, 4);
    ms_test_put_le(&b, count, 8);
    size_t body = (size_t)count * elem_size;
    b.p = realloc(b.p, b.n + body);
    memset(b.p + b.n, 0, body);
    b.n += body;
    return b;
}

static ms_status open_gguf(const img *b, ms_error *e)
{
    ms_gguf_file *f;
    ms_error_clear(e);
    ms_status st = ms_gguf_open_mem(b->p, b->n, "hostile.gguf", &f, e);
    if (!st)
        ms_gguf_close(f);
    return st;
}

Test(fuzz_regress, hostile_gguf_within_limits)
{
    limit_resources();
    ms_error e;
    /* 9 Mi one-byte values: more than the reader decodes, refused before
     * allocating 288 MiB of values */
    img b = gguf_array(MS_GGUF_UINT8, 9u << 20, 1);
    cr_assert_eq(open_gguf(&b, &e), MS_ERR_UNSUPPORTED, "%s", e.msg);
    cr_assert_eq(e.offset, 39);
    free(b.p);
    /* a million empty strings: legitimate, decoded */
    b = gguf_array(MS_GGUF_STRING, 1u << 20, 8);
    cr_assert_eq(open_gguf(&b, &e), MS_OK, "%s", e.msg);
    free(b.p);
    /* counts that the file cannot hold fail without allocating */
    b = gguf_array(MS_GGUF_UINT64, 1ull << 40, 0);
    cr_assert_eq(open_gguf(&b, &e), MS_ERR_FORMAT);
    free(b.p);
    b = gguf_array(MS_GGUF_UINT8, 0, 0);
    b.p[16] = 0xFF; /* n_kv = 2^56 + 1 */
    b.p[23] = 0x01;
    cr_assert_eq(open_gguf(&b, &e), MS_ERR_FORMAT);
    cr_assert_eq(e.offset, 16);
    free(b.p);
}

Test(fuzz_regress, hostile_json_within_limits)
{
    limit_resources();
    /* a million nested arrays in an index: refused by cJSON's depth limit */
    size_t depth = 1u << 20;
    char *text = malloc(2 * depth + 32);
    size_t n = (size_t)snprintf(text, 32, "{\"weight_map\":");
    memset(text + n, '[', depth);
    n += depth;
    memset(text + n, ']', depth);
    n += depth;
    text[n++] = '}';
    char **names, **files;
    size_t cnt;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_index_parse(text, n, "i.json", &names, &files, &cnt, &e), MS_ERR_FORMAT);
    free(text);
    /* a safetensors header at the 100 MiB cap over a file that lacks it */
    uint8_t small[64] = {0};
    uint64_t hl = MS_ST_MAX_HEADER;
    for (int i = 0; i < 8; i++)
        small[i] = (uint8_t)(hl >> (8 * i));
    ms_st_file *f;
    ms_error_clear(&e);
    cr_assert_eq(ms_st_open_mem(small, sizeof(small), "s", &f, &e), MS_ERR_FORMAT);
    cr_assert_eq(e.offset, 64);
}
