/*
 * test_imatrix.c - both importance-matrix formats, on llama-imatrix output.
 *
 * real-gguf/source/imatrix.gguf and imatrix.dat came from two runs of
 * llama-imatrix with the same arguments (README): the mean squared
 * activations they give must agree, and the counts follow from the run's
 * settings (166 chunks of 128 tokens).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/imatrix.h"
#include "mergescope/util.h"
#include "testutil.h"

static ms_imatrix *load(const char *rel)
{
    char *p = ms_test_shared(rel);
    if (!p || !ms_path_is_file(p))
        cr_skip_test("shared fixture %s not found", rel);
    ms_imatrix *im = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_imatrix_load(p, &im, &err), MS_OK, "%s", err.msg);
    free(p);
    return im;
}

Test(imatrix, gguf_and_dat_of_one_run_agree)
{
    ms_imatrix *g = load("real-gguf/source/imatrix.gguf");
    ms_imatrix *d = load("real-gguf/source/imatrix.dat");
    cr_assert_eq(g->format, MS_IMATRIX_GGUF);
    cr_assert_eq(d->format, MS_IMATRIX_DAT);
    /* 7 matrices in each of 2 layers, plus output (--process-output) */
    cr_assert_eq(g->n_entries, 15);
    cr_assert_eq(d->n_entries, 15);
    cr_assert_eq(g->chunk_count, 166);
    cr_assert_eq(d->chunk_count, 166);
    cr_assert_str_eq(g->dataset, "calib.txt");
    cr_assert_str_eq(d->dataset, "calib.txt");
    for (size_t i = 0; i < g->n_entries; i++) {
        const ms_imatrix_entry *a = &g->entries[i];
        const ms_imatrix_entry *b = ms_imatrix_find(d, a->name);
        cr_assert_not_null(b, "%s missing from the .dat", a->name);
        /* hidden 256, FFN 512: ffn_down reads 512 columns */
        cr_assert_eq(a->n_cols, strstr(a->name, "ffn_down") ? 512u : 256u, "%s", a->name);
        cr_assert_eq(a->n_cols, b->n_cols);
        cr_assert_eq(a->n_mat, 1u);
        cr_assert_eq(a->count, 166.0 * 128.0, "tokens = chunks x chunk size");
        cr_assert_eq(b->count, 166.0, "ncall = chunks");
        for (uint32_t j = 0; j < a->n_cols; j++) {
            double x = a->w[j], y = b->w[j];
            cr_assert(x > 0 && isfinite(x), "%s[%u] = %g", a->name, j, x);
            cr_assert_leq(fabs(x - y), 1e-6 * fabs(x), "%s[%u]: %g vs %g", a->name, j, x, y);
        }
    }
    cr_assert_null(ms_imatrix_find(g, "token_embd.weight"), "no entry for embeddings");
    ms_imatrix_free(g);
    ms_imatrix_free(d);
}

static void expect_format_error(const void *buf, size_t len, const char *what)
{
    ms_imatrix *im = NULL;
    ms_error err;
    ms_error_clear(&err);
    ms_status st = ms_imatrix_load_mem(buf, len, "x.imatrix", &im, &err);
    cr_assert_neq(st, MS_OK, "%s: accepted", what);
    cr_assert(st == MS_ERR_FORMAT || st == MS_ERR_UNSUPPORTED, "%s: status %d", what, st);
    cr_assert_null(im);
    cr_assert_str_eq(err.path, "x.imatrix");
}

/* Every truncation of both real files is refused, never crashes. */
Test(imatrix, truncated_files_are_errors)
{
    const char *files[] = {"real-gguf/source/imatrix.dat", "real-gguf/source/imatrix.gguf"};
    for (int f = 0; f < 2; f++) {
        char *p = ms_test_shared(files[f]);
        if (!p || !ms_path_is_file(p))
            cr_skip_test("shared fixtures not found");
        ms_map map;
        ms_error err;
        cr_assert_eq(ms_map_open(p, &map, &err), MS_OK);
        /* the .dat trailer (17 bytes) is optional but all or nothing; the
         * GGUF ends in 28 bytes of padding after its last values */
        size_t limit = f == 0 ? map.size : map.size - 28;
        for (size_t n = 0; n < limit; n += (n < 64 || n > limit - 40 ? 1 : 97))
            if (!(f == 0 && n == map.size - 17))
                expect_format_error(map.data, n, files[f]);
        ms_map_close(&map);
        free(p);
    }
}

Test(imatrix, hostile_headers)
{
    /* huge entry count */
    uint8_t a[32] = {0xff, 0xff, 0xff, 0x7f};
    expect_format_error(a, sizeof(a), "huge count");
    /* one entry, name length past the end */
    uint8_t b[] = {1, 0, 0, 0, 0xf0, 0, 0, 0, 'x'};
    expect_format_error(b, sizeof(b), "long name");
    /* one entry whose value count runs past the end */
    uint8_t c[] = {1, 0, 0, 0, 1, 0, 0, 0, 'x', 1, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0};
    expect_format_error(c, sizeof(c), "long values");
    /* a negative value */
    uint8_t d[] = {1, 0, 0, 0, 1, 0, 0, 0, 'x', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0xbf};
    expect_format_error(d, sizeof(d), "negative value");
    /* duplicate names */
    uint8_t e[] = {2, 0, 0, 0, 1, 0, 0, 0, 'x', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0x3f,
                   1, 0, 0, 0, 'x', 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x80, 0x3f};
    expect_format_error(e, sizeof(e), "duplicate");
    /* the smallest valid file: one entry, value 2 with ncall 2 -> 1 */
    e[0] = 1;
    e[17] = 0, e[18] = 0, e[19] = 0, e[20] = 0x40, e[9] = 2;
    ms_imatrix *im = NULL;
    ms_error err;
    cr_assert_eq(ms_imatrix_load_mem(e, 21, "ok", &im, &err), MS_OK);
    cr_assert_eq(im->entries[0].w[0], 1.0f);
    ms_imatrix_free(im);
}

Test(imatrix, model_gguf_is_not_an_imatrix)
{
    char *p = ms_test_shared("real-gguf/gguf/model-Q4_0.gguf");
    if (!p || !ms_path_is_file(p))
        cr_skip_test("shared fixtures not found");
    ms_imatrix *im = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_imatrix_load(p, &im, &err), MS_ERR_FORMAT);
    cr_assert(strstr(err.msg, "not an imatrix"), "%s", err.msg);
    free(p);
}
