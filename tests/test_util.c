/*
 * test_util.c - checked arithmetic, strbuf, atomic outputs, errors.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mergescope/error.h"
#include "mergescope/util.h"
#include "testutil.h"

Test(util, checked_arithmetic)
{
    uint64_t r;
    cr_assert(ms_mul_u64(1ull << 31, 1ull << 31, &r) && r == 1ull << 62);
    cr_assert(!ms_mul_u64(1ull << 32, 1ull << 32, &r));
    cr_assert(!ms_add_u64(UINT64_MAX, 1, &r));
    cr_assert_null(ms_alloc_array(SIZE_MAX / 2, 4));
}

Test(util, strbuf_grows_and_formats)
{
    ms_sb sb = MS_SB_INIT;
    cr_assert_str_eq(ms_sb_str(&sb), "");
    for (int i = 0; i < 1000; i++)
        cr_assert(ms_sb_addf(&sb, "%d,", i));
    cr_assert(ms_str_startswith(sb.buf, "0,1,2,"));
    cr_assert(ms_str_endswith(sb.buf, "998,999,"));
    char big[600];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ms_sb_reset(&sb);
    cr_assert(ms_sb_addf(&sb, "<%s>", big));
    cr_assert_eq(sb.len, 601u);
    ms_sb_free(&sb);
}

Test(util, error_format_forms)
{
    ms_error e;
    char buf[256];
    ms_error_clear(&e);
    ms_error_set(&e, MS_ERR_FORMAT, "m.gguf", 24, "bad %s", "count");
    ms_error_set(&e, MS_ERR_IO, "other", 1, "overwritten?");
    ms_error_format(&e, buf, sizeof(buf));
    cr_assert_str_eq(buf, "m.gguf: offset 24: bad count");
    cr_assert_eq(ms_error_exit_code(&e), 2);
    ms_error_clear(&e);
    ms_error_set_at(&e, MS_ERR_FORMAT, "r.yml", 12, 5, "density must be in (0, 1], got 1.4");
    ms_error_format(&e, buf, sizeof(buf));
    cr_assert_str_eq(buf, "r.yml:12:5: density must be in (0, 1], got 1.4");
    ms_error_clear(&e);
    ms_error_set(&e, MS_ERR_IO, NULL, -1, "disk full");
    ms_error_format(&e, buf, sizeof(buf));
    cr_assert_str_eq(buf, "disk full");
    cr_assert_eq(ms_error_exit_code(&e), 1);
}

Test(util, outfile_is_atomic)
{
    char *dir = ms_test_tmpdir();
    char *path = ms_path_join(dir, "out.json");
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_write_file_atomic(path, "old", 3, &e), MS_OK);
    ms_outfile of;
    cr_assert_eq(ms_outfile_open(&of, path, &e), MS_OK);
    fputs("half-written", of.fp);
    ms_outfile_abort(&of);
    char *text;
    size_t len;
    cr_assert_eq(ms_read_file(path, 100, &text, &len, &e), MS_OK);
    cr_assert_str_eq(text, "old", "an aborted write must leave the old file");
    free(text);
    cr_assert_eq(ms_write_file_atomic(path, "new", 3, &e), MS_OK);
    cr_assert_eq(ms_read_file(path, 100, &text, &len, &e), MS_OK);
    cr_assert_str_eq(text, "new");
    free(text);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

Test(util, paths)
{
    char *j = ms_path_join("a/", "b");
    cr_assert_str_eq(j, "a/b");
    free(j);
    char *d = ms_path_dirname("x/y/z.gguf");
    cr_assert_str_eq(d, "x/y");
    free(d);
    cr_assert_str_eq(ms_path_basename("x/y/z.gguf"), "z.gguf");
}
