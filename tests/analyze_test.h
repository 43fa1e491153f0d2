/*
 * analyze_test.h - shared by test_compare.c, test_attribute.c and
 * test_provenance.c: the numpy reference family (tests/analyze_ref.py run
 * once into the generated fixture directory), JSON and model loading.
 */
#ifndef MS_ANALYZE_TEST_H
#define MS_ANALYZE_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "mergescope/model.h"
#include "mergescope/util.h"
#include "testutil.h"

/* The reference directory, built on first use (the driver locks, so test
 * binaries running in parallel build it once). NULL when the shared bench
 * scripts or Debian's python3 are missing; the caller skips. */
static inline char *an_ref_dir(void)
{
    char *bench = ms_test_shared("../bench/ref_merge.py");
    if (!bench || access("/usr/bin/python3", X_OK) != 0) {
        free(bench);
        return NULL;
    }
    free(bench);
    char *dir = ms_test_gen("analyze-ref");
    char *benchdir = ms_path_join(MS_SHARED_FIXTURES, "../bench");
    char cmd[4096];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/tests/analyze_ref.py' '%s' '%s' 2>/dev/null",
             MS_SOURCE_DIR, dir, benchdir);
    free(benchdir);
    int rc = system(cmd);
    cr_assert_eq(rc, 0, "analyze_ref.py failed: %s", cmd);
    return dir;
}

static inline cJSON *an_load_json(const char *dir, const char *rel)
{
    char *p = ms_path_join(dir, rel);
    char *text = NULL;
    size_t len = 0;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_read_file(p, 1u << 30, &text, &len, &err), MS_OK, "read %s: %s", p, err.msg);
    cJSON *j = cJSON_Parse(text);
    cr_assert_not_null(j, "bad JSON in %s", p);
    free(text);
    free(p);
    return j;
}

static inline ms_model *an_open(const char *dir, const char *rel)
{
    char *p = rel ? ms_path_join(dir, rel) : ms_strdup(dir);
    ms_model *m = NULL;
    ms_error err;
    ms_error_clear(&err);
    cr_assert_eq(ms_model_open(p, &m, &err), MS_OK, "open %s: %s", p, err.msg);
    free(p);
    return m;
}

static inline double an_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(v), "no number '%s'", key);
    return v->valuedouble;
}

#endif
