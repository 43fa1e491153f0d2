/*
 * test_fixtures.c - the generated families are what the generator claims:
 * files parse with the library's readers, merges equal their recipe's
 * formula over the donor files (coefficients taken from truth.json),
 * GGUF copies equal their safetensors source once the Q/K rows are put
 * back, quantized copies stay within the quantizer's error bound, shards
 * equal the single file, the passthrough stack copies the layers its slice
 * map names, the abliterated donor has the refusal direction removed, and
 * the donors' task vectors are correlated as designed, and a second run of
 * the generator writes the same bytes.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mergescope/model.h"
#include "mergescope/safetensors.h"
#include "mergescope/util.h"
#include "testutil.h"

/* ==== helpers ==== */

static cJSON *truth(const char *family)
{
    char rel[64];
    snprintf(rel, sizeof(rel), "%s/truth.json", family);
    char *p = ms_test_gen(rel), *text;
    size_t len;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_read_file(p, 1u << 24, &text, &len, &e), MS_OK, "%s", e.msg);
    cJSON *j = cJSON_ParseWithLength(text, len);
    cr_assert_not_null(j, "%s is not JSON", p);
    free(text);
    free(p);
    return j;
}

static ms_model *open_gen(const char *rel)
{
    char *p = ms_test_gen(rel);
    ms_model *m = NULL;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_model_open(p, &m, &e), MS_OK, "%s: %s", p, e.msg);
    free(p);
    return m;
}

/* The whole tensor `name` of m as f32 (caller frees). */
static float *get(const ms_model *m, const char *name, uint64_t *n)
{
    const ms_tensor *t = ms_model_find(m, name);
    cr_assert_not_null(t, "%s: no tensor %s", m->path, name);
    float *x = malloc((size_t)t->n_elems * sizeof(float) + 1);
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_model_read_rows(m, t, 0, t->n_rows, x, &e), MS_OK, "%s", e.msg);
    if (n)
        *n = t->n_elems;
    return x;
}

static double coef(const cJSON *t, const char *method, const char *donor)
{
    const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(
        cJSON_GetObjectItem(t, "merges"), method), "coefficients"), donor);
    cr_assert(cJSON_IsNumber(c), "truth.json has no %s coefficient for %s", method, donor);
    return c->valuedouble;
}

/* ==== the files ==== */

Test(fixtures, safetensors_files_parse_with_the_intended_dtypes_and_shapes)
{
    static const struct { const char *rel; const char *dtype; } files[] = {
        {"tiny/base/model.safetensors", "BF16"},
        {"tiny/donor1/model.safetensors", "BF16"},
        {"tiny/donor2/model.safetensors", "F16"},
        {"tiny/donor3/model.safetensors", "BF16"},
        {"tiny/donor4/model.safetensors", "BF16"},
        {"tiny/donor5/model.safetensors", "BF16"},
        {"tiny/merged-linear/model.safetensors", "F32"},
        {"tiny/merged-task_arithmetic/model.safetensors", "F32"},
        {"demo/base/model.safetensors", "BF16"},
        {"demo/donor3/model.safetensors", "BF16"},
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(files); i++) {
        char *p = ms_test_gen(files[i].rel);
        ms_st_file *f = NULL;
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_st_open(p, &f, &e), MS_OK, "%s: %s", p, e.msg);
        int layers = ms_str_startswith(files[i].rel, "tiny") ? 4 : 8;
        cr_assert_eq(f->n_tensors, 3 + 9 * (size_t)layers, "%s", p);
        for (size_t k = 0; k < f->n_tensors; k++)
            cr_assert_str_eq(ms_dtype_name(f->tensors[k].dtype), files[i].dtype, "%s %s",
                             p, f->tensors[k].name);
        const ms_st_tensor *q = ms_st_find(f, "model.layers.1.self_attn.k_proj.weight");
        cr_assert_not_null(q);
        int hidden = layers == 4 ? 64 : 256, heads = layers == 4 ? 4 : 8, kv = 2;
        cr_assert_eq(q->ndim, 2);
        cr_assert_eq(q->shape[0], kv * hidden / heads);
        cr_assert_eq(q->shape[1], hidden);
        ms_st_close(f);
        free(p);
    }
}

Test(fixtures, demo_family_is_complete_and_small)
{
    static const char *const need[] = {
        "demo/base/config.json", "demo/donor1/model.safetensors",
        "demo/donor2/model.safetensors", "demo/donor3/model.safetensors",
        "demo/merged-task_arithmetic/model.safetensors",
        "demo/merged-passthrough/model.safetensors",
        "demo/gguf/merged-task_arithmetic-Q4_0.gguf",
        "demo/recipes/linear.yml", "demo/recipes/task_arithmetic.yml",
        "demo/recipes/ties.yml", "demo/recipes/dare_ties.yml",
        "demo/recipes/slerp.yml", "demo/recipes/passthrough.yml",
        "demo/truth.json",
    };
    uint64_t total = 0;
    for (size_t i = 0; i < MS_ARRAY_SIZE(need); i++) {
        char *p = ms_test_gen(need[i]);
        struct stat st;
        cr_assert_eq(stat(p, &st), 0, "%s is missing", p);
        total += (uint64_t)st.st_size;
        free(p);
    }
    cr_assert_lt(total, 60ull << 20, "demo family is %llu bytes", (unsigned long long)total);
    ms_model *m = open_gen("demo/base");
    cr_assert_str_eq(m->architecture, "llama");
    cr_assert_eq(m->n_layers, 8);
    cr_assert_eq(m->hidden_size, 256);
    cr_assert_eq(m->vocab_size, 2048);
    ms_model_close(m);
}

/* ==== merges ==== */

static void check_merge(const char *method, bool task_arith)
{
    cJSON *t = truth("tiny");
    char rel[64];
    snprintf(rel, sizeof(rel), "tiny/merged-%s", method);
    ms_model *merged = open_gen(rel), *base = open_gen("tiny/base"), *d[3];
    double a[3];
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof(rel), "tiny/donor%d", i + 1);
        d[i] = open_gen(rel);
        a[i] = coef(t, method, rel);
    }
    if (!task_arith)
        cr_assert_float_eq(a[0] + a[1] + a[2], 1.0, 1e-12, "linear weights are normalised");
    for (size_t k = 0; k < base->n_tensors; k++) {
        const char *name = base->tensors[k].name;
        uint64_t n;
        float *m = get(merged, name, &n), *b = get(base, name, NULL), *x[3];
        for (int i = 0; i < 3; i++)
            x[i] = get(d[i], name, NULL);
        for (uint64_t j = 0; j < n; j++) {
            double ref = task_arith ? b[j] : 0.0;
            for (int i = 0; i < 3; i++)
                ref += a[i] * ((double)x[i][j] - (task_arith ? b[j] : 0.0));
            /* stored as f32: one rounding of the exact value */
            cr_assert(fabs(m[j] - ref) <= 6e-8 * fabs(ref) + 1e-30,
                      "%s %s[%llu]: %.9g vs %.9g", method, name,
                      (unsigned long long)j, m[j], ref);
        }
        for (int i = 0; i < 3; i++)
            free(x[i]);
        free(m);
        free(b);
    }
    for (int i = 0; i < 3; i++)
        ms_model_close(d[i]);
    ms_model_close(base);
    ms_model_close(merged);
    cJSON_Delete(t);
}

Test(fixtures, linear_merge_is_the_weighted_sum_of_the_donor_files)
{
    check_merge("linear", false);
}

Test(fixtures, task_arithmetic_merge_is_base_plus_weighted_deltas)
{
    check_merge("task_arithmetic", true);
}

Test(fixtures, passthrough_stack_copies_the_layers_of_its_slice_map)
{
    cJSON *t = truth("tiny");
    const cJSON *pt = cJSON_GetObjectItem(cJSON_GetObjectItem(t, "merges"), "passthrough");
    const cJSON *map = cJSON_GetObjectItem(pt, "slice_map"), *e;
    int n_out = cJSON_GetObjectItem(pt, "num_layers_out")->valueint;
    cr_assert_eq(cJSON_GetArraySize(map), n_out);
    ms_model *stack = open_gen("tiny/merged-passthrough");
    cr_assert_eq(stack->n_layers, n_out, "config.json num_hidden_layers");
    cJSON_ArrayForEach(e, map) {
        int out = cJSON_GetObjectItem(e, "out_layer")->valueint;
        int src = cJSON_GetObjectItem(e, "layer")->valueint;
        const char *model = cJSON_GetObjectItem(e, "model")->valuestring;
        ms_model *d = open_gen(model);
        for (size_t k = 0; k < d->n_tensors; k++) {
            if (d->tensors[k].layer != src)
                continue;
            char name[128];
            const char *rest = strchr(d->tensors[k].name + strlen("model.layers."), '.');
            snprintf(name, sizeof(name), "model.layers.%d%s", out, rest);
            uint64_t n;
            float *x = get(d, d->tensors[k].name, &n), *y = get(stack, name, NULL);
            cr_assert_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0, "%s from %s %s",
                         name, model, d->tensors[k].name);
            free(x);
            free(y);
        }
        ms_model_close(d);
    }
    ms_model_close(stack);
    cJSON_Delete(t);
}

/* ==== copies ==== */

Test(fixtures, sharded_base_equals_the_single_file)
{
    ms_model *a = open_gen("tiny/base"), *b = open_gen("tiny/base-sharded");
    cr_assert_eq(b->n_files, 3);
    cr_assert_eq(a->n_tensors, b->n_tensors);
    for (size_t k = 0; k < a->n_tensors; k++) {
        uint64_t n;
        float *x = get(a, a->tensors[k].name, &n), *y = get(b, a->tensors[k].name, NULL);
        cr_assert_eq(memcmp(x, y, (size_t)n * sizeof(float)), 0, "%s", a->tensors[k].name);
        free(x);
        free(y);
    }
    ms_model_close(a);
    ms_model_close(b);
}

/* GGUF copy vs its safetensors source, element by element in HF order. */
static void check_gguf(const char *gguf, const char *src, ms_dtype type)
{
    ms_model *g = open_gen(gguf), *s = open_gen(src);
    cr_assert_eq(g->format, MS_FORMAT_GGUF);
    cr_assert_str_eq(g->architecture, "llama");
    cr_assert_eq(g->n_tensors, s->n_tensors);
    for (size_t k = 0; k < s->n_tensors; k++) {
        const ms_tensor *ts = &s->tensors[k], *tg = ms_model_find(g, ts->name);
        cr_assert_not_null(tg, "%s: no %s", gguf, ts->name);
        cr_assert_eq(tg->n_rows, ts->n_rows);
        uint64_t n;
        float *x = get(s, ts->name, &n), *y = get(g, ts->name, NULL);
        ms_dtype want = ts->ndim == 1 ? MS_DTYPE_F32 : type;
        if (want == MS_DTYPE_Q8_0 && ts->n_cols % 32)
            want = MS_DTYPE_F16; /* llama-quantize's fallback */
        cr_assert_eq(tg->dtype, want, "%s %s is %s", gguf, ts->name,
                     ms_dtype_name(tg->dtype));
        for (uint64_t j = 0; j < n; j += (want == MS_DTYPE_Q8_0 ? 32 : n)) {
            if (want != MS_DTYPE_Q8_0) {
                for (uint64_t i = 0; i < n; i++) {
                    float ref = want == MS_DTYPE_F16 ? ms_f16_to_f32(ms_f32_to_f16(x[i])) : x[i];
                    cr_assert_eq(y[i], ref, "%s %s[%llu]: %.9g vs %.9g", gguf, ts->name,
                                 (unsigned long long)i, y[i], ref);
                }
                break;
            }
            /* Q8_0: |y - x| <= d/2 with d = amax/127 (plus d's fp16 rounding) */
            float amax = 0.0f;
            for (int i = 0; i < 32; i++)
                amax = fmaxf(amax, fabsf(x[j + i]));
            double bound = amax / 127.0 * (0.5 + 128 * 1e-3) + 1e-12;
            for (int i = 0; i < 32; i++)
                cr_assert(fabs((double)y[j + i] - x[j + i]) <= bound,
                          "%s %s[%llu]: %.9g vs %.9g", gguf, ts->name,
                          (unsigned long long)(j + i), y[j + i], x[j + i]);
        }
        free(x);
        free(y);
    }
    ms_model_close(g);
    ms_model_close(s);
}

Test(fixtures, gguf_f32_equals_the_base_after_unpermutation)
{
    check_gguf("tiny/gguf/base-F32.gguf", "tiny/base", MS_DTYPE_F32);
    check_gguf("tiny/gguf/merged-linear-F32.gguf", "tiny/merged-linear", MS_DTYPE_F32);
}

Test(fixtures, gguf_f16_and_q8_0_are_roundings_of_their_source)
{
    check_gguf("tiny/gguf/base-F16.gguf", "tiny/base", MS_DTYPE_F16);
    check_gguf("tiny/gguf/merged-linear-F16.gguf", "tiny/merged-linear", MS_DTYPE_F16);
    check_gguf("tiny/gguf/base-Q8_0.gguf", "tiny/base", MS_DTYPE_Q8_0);
}

/* ==== donors ==== */

static double dot(const float *a, const float *b, uint64_t n)
{
    double s = 0.0;
    for (uint64_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

Test(fixtures, abliterated_donor_has_the_direction_removed)
{
    cJSON *t = truth("tiny");
    const cJSON *donors = cJSON_GetObjectItem(t, "donors"), *d, *abl = NULL;
    cJSON_ArrayForEach(d, donors)
        if (!strcmp(cJSON_GetObjectItem(d, "kind")->valuestring, "abliterated"))
            abl = d;
    cr_assert_not_null(abl);
    const cJSON *dir = cJSON_GetObjectItem(abl, "direction"), *v;
    float r[64];
    int h = 0;
    cJSON_ArrayForEach(v, dir)
        r[h++] = (float)v->valuedouble;
    cr_assert_eq(h, 64);
    cr_assert_float_eq(dot(r, r, 64), 1.0, 1e-6);
    ms_model *m = open_gen(cJSON_GetObjectItem(abl, "name")->valuestring);
    const cJSON *names = cJSON_GetObjectItem(abl, "tensors");
    cr_assert_eq(cJSON_GetArraySize(names), 4, "o_proj and down_proj of layers 1 and 2");
    for (size_t k = 0; k < m->n_tensors; k++) {
        const ms_tensor *te = &m->tensors[k];
        if (te->kind != MS_KIND_ATTN_O && te->kind != MS_KIND_FFN_DOWN)
            continue;
        bool edited = false;
        cJSON_ArrayForEach(v, names)
            edited |= !strcmp(v->valuestring, te->name);
        float *w = get(m, te->name, NULL);
        /* ||r^T W|| / ||W||: about 1/sqrt(64) for an unedited tensor, near
         * zero (bf16 rounding only) after the edit */
        double num = 0.0, den = dot(w, w, te->n_elems);
        for (int64_t c = 0; c < te->n_cols; c++) {
            double p = 0.0;
            for (int64_t i = 0; i < te->n_rows; i++)
                p += (double)r[i] * w[i * te->n_cols + c];
            num += p * p;
        }
        double ratio = sqrt(num / den);
        if (edited)
            cr_assert_lt(ratio, 0.01, "%s: %g", te->name, ratio);
        else
            cr_assert_gt(ratio, 0.03, "%s: %g", te->name, ratio);
        free(w);
    }
    ms_model_close(m);
    cJSON_Delete(t);
}

Test(fixtures, donor_task_vectors_are_correlated_as_designed)
{
    /* shared component with 30 % of the energy: cosine about 0.3; task
     * vector about 3 % x scale of the base */
    ms_model *base = open_gen("tiny/base"), *d[3];
    char rel[32];
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof(rel), "tiny/donor%d", i + 1);
        d[i] = open_gen(rel);
    }
    double g[3][3] = {{0}}, bb = 0.0;
    for (size_t k = 0; k < base->n_tensors; k++) {
        if (base->tensors[k].ndim != 2)
            continue;
        uint64_t n;
        float *b = get(base, base->tensors[k].name, &n), *tv[3];
        for (int i = 0; i < 3; i++) {
            tv[i] = get(d[i], base->tensors[k].name, NULL);
            for (uint64_t j = 0; j < n; j++)
                tv[i][j] -= b[j];
        }
        for (int i = 0; i < 3; i++)
            for (int l = 0; l < 3; l++)
                g[i][l] += dot(tv[i], tv[l], n);
        bb += dot(b, b, n);
        for (int i = 0; i < 3; i++)
            free(tv[i]);
        free(b);
    }
    for (int i = 0; i < 3; i++) {
        double rel_norm = sqrt(g[i][i] / bb);
        cr_assert(rel_norm > 0.01 && rel_norm < 0.06, "donor%d rel norm %g", i + 1, rel_norm);
        for (int l = i + 1; l < 3; l++) {
            double c = g[i][l] / sqrt(g[i][i] * g[l][l]);
            cr_assert(c > 0.15 && c < 0.45, "cos(donor%d, donor%d) = %g", i + 1, l + 1, c);
        }
    }
    for (int i = 0; i < 3; i++)
        ms_model_close(d[i]);
    ms_model_close(base);
}

/* ==== determinism ==== */

typedef struct walk {
    const char *fresh;          /* root of the second run */
    int files, diffs;
} walk;

/* Compare every file under fresh/rel with the same file under MS_GEN_DIR,
 * removing the fresh copy as it goes. */
static void compare_tree(walk *w, const char *rel)
{
    char *dir = *rel ? ms_path_join(w->fresh, rel) : ms_strdup(w->fresh);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot list %s", dir);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *sub = *rel ? ms_path_join(rel, de->d_name) : ms_strdup(de->d_name);
        char *path = ms_path_join(w->fresh, sub);
        if (ms_path_is_dir(path)) {
            compare_tree(w, sub);
            rmdir(path);
        } else {
            char *other = ms_test_gen(sub), *a = NULL, *b = NULL;
            size_t la = 0, lb = 0;
            ms_error e;
            ms_error_clear(&e);
            w->files++;
            if (ms_read_file(path, 1u << 30, &a, &la, &e) ||
                ms_read_file(other, 1u << 30, &b, &lb, &e) || la != lb || memcmp(a, b, la)) {
                cr_log_error("%s differs between two runs %s", sub, e.msg);
                w->diffs++;
            }
            free(a);
            free(b);
            free(other);
            unlink(path);
        }
        free(path);
        free(sub);
    }
    closedir(d);
    free(dir);
}

Test(fixtures, generator_writes_the_same_bytes_every_run, .timeout = 120)
{
    /* ms-fixtures sits beside the mergescope binary */
    char *bindir = ms_path_dirname(MS_BINARY);
    char *gen = ms_path_join(bindir, "ms-fixtures");
    char *dir = ms_test_tmpdir();
    cr_assert(gen && dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl(gen, gen, dir, (char *)NULL);
        _exit(127);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s failed", gen);
    walk w = {dir, 0, 0};
    compare_tree(&w, "");
    rmdir(dir);
    cr_assert_gt(w.files, 40, "only %d files generated", w.files);
    cr_assert_eq(w.diffs, 0, "%d of %d files differ", w.diffs, w.files);
    free(dir);
    free(gen);
    free(bindir);
}
