/*
 * test_cli.c - what every command shares: dispatch, usage errors, outputs
 * that would replace inputs, and error lines that stay one line.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mergescope/util.h"
#include "testutil.h"

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static char *slurp(const char *path)
{
    ms_error e;
    char *text = NULL;
    ms_error_clear(&e);
    ms_read_file(path, 1u << 24, &text, NULL, &e);
    return text;
}

Test(cli, unknown_command_and_option_exit_2)
{
    char *out, *err;
    const char *a1[] = {"frobnicate", NULL};
    cr_assert_eq(ms_test_run(a1, &out, &err), 2);
    cr_assert(strstr(err, "'frobnicate' is not a command"));
    free(out);
    free(err);
    const char *a2[] = {"inspect", "--no-such-option", "x", NULL};
    cr_assert_eq(ms_test_run(a2, &out, &err), 2);
    cr_assert(ms_str_startswith(err, "mergescope: unknown option '--no-such-option'"));
    free(out);
    free(err);
    const char *a3[] = {"inspect", "--threads", "many", "x", NULL};
    cr_assert_eq(ms_test_run(a3, &out, &err), 2);
    cr_assert(strstr(err, "--threads expects a whole number, got 'many'"));
    free(out);
    free(err);
}

Test(cli, version_and_help_exit_0)
{
    char *out, *err;
    const char *a1[] = {"--version", NULL};
    cr_assert_eq(ms_test_run(a1, &out, &err), 0);
    cr_assert(ms_str_startswith(out, "mergescope "));
    free(out);
    free(err);
    const char *a2[] = {"compare", "--help", NULL};
    cr_assert_eq(ms_test_run(a2, &out, &err), 0);
    cr_assert(ms_str_startswith(out, "usage: mergescope compare"));
    cr_assert(strstr(out, "--json"));
    free(out);
    free(err);
}

/* A tensor name with a newline and a terminal escape must not forge a
 * second line or reach the terminal raw. */
Test(cli, error_from_file_text_is_one_escaped_line)
{
    char *dir = ms_test_tmpdir();
    char *path = ms_path_join(dir, "evil.safetensors");
    const char *hdr = "{\"a\\nmergescope: forged\\u001b[2J\":"
                      "{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t hl = strlen(hdr), pad = (8 - hl % 8) % 8;
    unsigned char buf[512] = {0};
    uint64_t n = hl + pad;
    memcpy(buf, &n, 8);
    memcpy(buf + 8, hdr, hl);
    memset(buf + 8 + hl, ' ', pad);
    cr_assert(ms_test_write(path, buf, 8 + n + 4));
    char *out, *err;
    const char *argv[] = {"inspect", path, NULL};
    cr_assert_eq(ms_test_run(argv, &out, &err), 2);
    cr_assert_eq(count_lines(err), 1, "stderr: %s", err);
    cr_assert_null(strchr(err, '\033'), "a raw escape reached stderr");
    cr_assert(ms_str_startswith(err, "mergescope: "));
    free(out);
    free(err);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

Test(cli, output_never_replaces_an_input)
{
    char *dir = ms_test_tmpdir();
    char *recipe = ms_path_join(dir, "r.yml");
    char *src = ms_test_gen("tiny/recipes/linear.yml");
    char *text = slurp(src);
    cr_assert_not_null(text, "generated fixtures missing");
    cr_assert(ms_test_write(recipe, text, strlen(text)));
    char *out, *err;
    const char *a1[] = {"recipe", "check", recipe, "--json", recipe, NULL};
    cr_assert_eq(ms_test_run(a1, &out, &err), 2);
    cr_assert(strstr(err, "refusing to replace the input"), "stderr: %s", err);
    char *after = slurp(recipe);
    cr_assert_str_eq(after, text, "the input was changed");
    free(after);
    free(out);
    free(err);

    /* a model file inside an input model directory */
    char *model = ms_test_gen("tiny/base");
    char *cfg = ms_test_gen("tiny/base/config.json");
    char *cfg_text = slurp(cfg);
    const char *a2[] = {"inspect", model, "--json", cfg, NULL};
    cr_assert_eq(ms_test_run(a2, &out, &err), 2);
    after = slurp(cfg);
    cr_assert_str_eq(after, cfg_text);
    free(after);
    free(out);
    free(err);

    /* --in-place goes ahead and keeps the input as .bak */
    const char *a3[] = {"recipe", "check", "--in-place", recipe, "--json", recipe, NULL};
    cr_assert_eq(ms_test_run(a3, &out, &err), 0, "stderr: %s", err);
    char *bak = ms_path_join(dir, "r.yml.bak");
    after = slurp(bak);
    cr_assert_str_eq(after, text, "the backup must hold the old input");
    free(after);
    after = slurp(recipe);
    cr_assert(strstr(after, "\"schema\""), "the output went in place");
    free(after);
    free(out);
    free(err);
    unlink(bak);
    unlink(recipe);
    rmdir(dir);
    free(bak);
    free(cfg_text);
    free(cfg);
    free(model);
    free(text);
    free(src);
    free(recipe);
    free(dir);
}

Test(cli, output_keeps_the_mode_of_the_file_it_replaces)
{
    char *dir = ms_test_tmpdir();
    char *json = ms_path_join(dir, "out.json");
    char *model = ms_test_gen("tiny/base");
    cr_assert(ms_test_write(json, "{}", 2));
    chmod(json, 0600);
    char *out, *err;
    const char *argv[] = {"inspect", "--brief", model, "--json", json, NULL};
    cr_assert_eq(ms_test_run(argv, &out, &err), 0, "stderr: %s", err);
    struct stat st;
    cr_assert_eq(stat(json, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    free(out);
    free(err);
    unlink(json);
    rmdir(dir);
    free(model);
    free(json);
    free(dir);
}

/* A GGUF string value that is not UTF-8 is kept (llama.cpp keeps it) but
 * never reaches the terminal or the JSON raw. */
Test(cli, metadata_that_is_not_utf8_is_escaped)
{
    char *src = ms_test_shared("real-gguf/gguf/model-Q8_0.gguf");
    if (!src)
        cr_skip_test("../shared/fixtures is absent");
    char *dir = ms_test_tmpdir();
    char *path = ms_path_join(dir, "v.gguf"), *json = ms_path_join(dir, "v.json");
    ms_error e;
    ms_map map;
    ms_error_clear(&e);
    cr_assert_eq(ms_map_open(src, &map, &e), MS_OK);
    unsigned char *d = malloc(map.size);
    memcpy(d, map.data, map.size);
    const char key[] = "general.architecture";
    unsigned char *k = memmem(d, map.size, key, sizeof(key) - 1);
    cr_assert_not_null(k);
    unsigned char *v = memmem(k, map.size - (size_t)(k - d), "llama", 5);
    cr_assert_not_null(v);
    v[0] = 0xff;
    cr_assert(ms_test_write(path, d, map.size));
    ms_map_close(&map);
    char *out, *err;
    const char *argv[] = {"inspect", path, "--json", json, NULL};
    cr_assert_eq(ms_test_run(argv, &out, &err), 0, "stderr: %s", err);
    cr_assert(strstr(out, "\\xfflama"), "the value is shown escaped");
    cr_assert_null(strchr(out, '\xff'), "a raw 0xff reached stdout");
    char *text = slurp(json);
    cr_assert(ms_utf8_valid((const uint8_t *)text, strlen(text), NULL), "JSON is not UTF-8");
    free(text);
    free(out);
    free(err);
    free(d);
    unlink(path);
    unlink(json);
    rmdir(dir);
    free(json);
    free(path);
    free(dir);
    free(src);
}
