/*
 * test_malformed_cli.c - what a user sees when `mergescope inspect` meets a
 * malformed model: exit status 2 and one line on stderr naming the file and
 * the byte offset of the problem, nothing on stdout. The files are written
 * here, one per kind of damage.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mergescope/util.h"
#include "testutil.h"

typedef ms_test_img img;

static void put_str(img *b, const char *s)
{
    ms_test_put_le(b, strlen(s), 8);
    ms_test_put(b, s, strlen(s));
}

static img safetensors(const char *header, size_t data_len)
{
    img b = {0};
    ms_test_put_le(&b, strlen(header), 8);
    ms_test_put(&b, header, strlen(header));
    uint8_t *zero = calloc(1, data_len + 1);
    ms_test_put(&b, zero, data_len);
    free(zero);
    return b;
}

/* A GGUF v3 header with n_tensors tensors and one key whose value is given
 * by the caller after this returns. */
static img gguf_head(uint64_t n_tensors, uint64_t n_kv)
{
    img b = {0};
    ms_test_put(&b, "GGUF", 4);
    ms_test_put_le(&b, 3, 4);
    ms_test_put_le(&b, n_tensors, 8);
    ms_test_put_le(&b, n_kv, 8);
    return b;
}

/* Run inspect on path; expect exit 2, empty stdout, and one stderr line
 * "mergescope: PATH: offset N: ..." containing needle. */
static void expect_rejected(const char *path, int64_t offset, const char *needle)
{
    const char *argv[] = {"inspect", path, NULL};
    char *out, *err;
    int rc = ms_test_run(argv, &out, &err);
    cr_assert_eq(rc, 2, "%s: exit %d, stderr: %s", path, rc, err);
    cr_assert_str_eq(out, "", "%s printed: %s", path, out);
    char want[1200];
    if (offset >= 0)
        snprintf(want, sizeof(want), "mergescope: %s: offset %lld: ", path, (long long)offset);
    else
        snprintf(want, sizeof(want), "mergescope: %s: ", path);
    cr_assert(ms_str_startswith(err, want), "stderr '%s' does not start with '%s'", err, want);
    size_t len = strlen(err);
    cr_assert(len > 0 && err[len - 1] == '\n' && !memchr(err, '\n', len - 1),
              "not one line: '%s'", err);
    cr_assert(strstr(err, needle), "'%s' lacks '%s'", err, needle);
    free(out);
    free(err);
}

static char *write_tmp(const char *dir, const char *name, const img *b)
{
    char *p = ms_path_join(dir, name);
    cr_assert(ms_test_write(p, b->p, b->n));
    return p;
}

Test(malformed_cli, safetensors_damage)
{
    char *dir = ms_test_tmpdir();
    static const struct {
        const char *header;
        size_t data;
        int64_t offset; /* -1: after the header, at the tensor's data;
                           -2: the header's last byte, where parsing stopped */
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, -2, "JSON"},
        {"{\"a\":{\"dtype\":\"Q9\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 8,
         "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 8, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, -1,
         "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, -1,
         "expected 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, "overlaps"},
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(cases); i++) {
        img b = safetensors(cases[i].header, cases[i].data);
        char name[32];
        snprintf(name, sizeof(name), "bad%zu.safetensors", i);
        char *p = write_tmp(dir, name, &b);
        int64_t end = 8 + (int64_t)strlen(cases[i].header);
        int64_t off = cases[i].offset >= 0 ? cases[i].offset
                      : cases[i].offset == -1 ? end : end - 1;
        expect_rejected(p, off, cases[i].needle);
        free(p);
        free(b.p);
    }
    /* a header length larger than the file */
    img b = safetensors("{}", 0);
    b.p[1] = 1;
    char *p = write_tmp(dir, "lying.safetensors", &b);
    expect_rejected(p, (int64_t)b.n, "truncated");
    free(p);
    free(b.p);
    free(dir);
}

Test(malformed_cli, gguf_damage)
{
    char *dir = ms_test_tmpdir();
    /* an absurd array count */
    img b = gguf_head(0, 1);
    put_str(&b, "k");
    ms_test_put_le(&b, 9, 4);
    ms_test_put_le(&b, 0, 4);
    ms_test_put_le(&b, 1ull << 60, 8);
    char *p = write_tmp(dir, "count.gguf", &b);
    expect_rejected(p, 24 + 9 + 4, "cannot fit");
    free(p);
    free(b.p);
    /* version 1 */
    b = gguf_head(0, 0);
    b.p[4] = 1;
    p = write_tmp(dir, "v1.gguf", &b);
    expect_rejected(p, 4, "version 1");
    free(p);
    free(b.p);
    /* an unknown ggml type, then a tensor past the end */
    for (int k = 0; k < 2; k++) {
        b = gguf_head(1, 0);
        size_t info = b.n;
        put_str(&b, "blk.0.attn_q.weight");
        ms_test_put_le(&b, 1, 4);
        ms_test_put_le(&b, 64, 8);
        ms_test_put_le(&b, k ? 0 : 77, 4);
        ms_test_put_le(&b, 0, 8);
        while (b.n % 32)
            ms_test_put(&b, "", 1);
        ms_test_put(&b, "0123456789", 10);
        p = write_tmp(dir, k ? "short.gguf" : "type.gguf", &b);
        expect_rejected(p, k ? (int64_t)(info + 8 + 19 + 4 + 8 + 4)
                             : (int64_t)(info + 8 + 19 + 4 + 8),
                        k ? "past the end" : "unknown ggml type 77");
        free(p);
        free(b.p);
    }
    free(dir);
}

Test(malformed_cli, shard_index_escaping_the_model_directory)
{
    static const char *const bad[] = {"../x.safetensors", "/etc/passwd",
                                      "sub/../../x.safetensors", "..\\\\x.safetensors"};
    char *dir = ms_test_tmpdir();
    for (size_t i = 0; i < MS_ARRAY_SIZE(bad); i++) {
        char sub[64];
        snprintf(sub, sizeof(sub), "m%zu", i);
        char *mdir = ms_path_join(dir, sub);
        cr_assert_eq(mkdir(mdir, 0700), 0);
        char text[256];
        int n = snprintf(text, sizeof(text), "{\"weight_map\":{\"model.norm.weight\":\"%s\"}}",
                         bad[i]);
        img b = {(uint8_t *)text, (size_t)n, (size_t)n}; /* not grown: not freed */
        char *p = write_tmp(mdir, "model.safetensors.index.json", &b);
        /* the offset of the name as written; escaped, that of its key */
        const char *value = strchr(bad[i], '\\') ? strstr(text, "model.norm")
                                                 : strstr(text, bad[i]);
        const char *argv[] = {"inspect", mdir, NULL};
        char *out, *err;
        cr_assert_eq(ms_test_run(argv, &out, &err), 2, "%s: %s", bad[i], err);
        char want[1200];
        snprintf(want, sizeof(want), "mergescope: %s: offset %lld: ", p,
                 (long long)(value - text));
        cr_assert(ms_str_startswith(err, want), "'%s' does not start with '%s'", err, want);
        cr_assert(strstr(err, "shard name"), "%s", err);
        free(out);
        free(err);
        free(p);
        free(mdir);
    }
    free(dir);
}
