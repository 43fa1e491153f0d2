/*
 * test_report.c - the report command: escaping, input validation, every
 * plot written, the card's numbers equal the JSON's, hostile names stay
 * inert text in every output, no gnuplot still gives a report, and the
 * HTML renders in headless Chromium.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mergescope/report.h"
#include "mergescope/util.h"
#include "testutil.h"

#define DATA MS_SOURCE_DIR "/tests/data/report/"

static const char *const data_files[] = {
    DATA "recipe.json", DATA "audit.json", DATA "attribute.json", DATA "provenance.json",
    DATA "compare.json", DATA "quant.json", DATA "inspect.json",
};

/* Plots the issue asks for, by the name report gives them. */
static const char *const required_plots[] = {
    "audit_shares_by_layer", "audit_norm_by_layer", "audit_cosine_base_by_layer",
    "audit_sign_conflict", "audit_pair_cosine", "compare_rel_l2_by_layer",
    "compare_cosine_by_layer", "provenance_map", "quant_error_by_layer",
    "quant_error_by_type", "quant_type_mix", "attribute_shares_by_layer",
};

/* ==== helpers ==== */

static char *slurp(const char *path)
{
    char *text = NULL;
    size_t len;
    ms_error e;
    ms_error_clear(&e);
    if (ms_read_file(path, 256u << 20, &text, &len, &e) != MS_OK)
        return NULL;
    return text;
}

static char *join3(const char *a, const char *b, const char *c)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_add(&sb, a);
    ms_sb_add(&sb, b);
    ms_sb_add(&sb, c);
    return ms_sb_detach(&sb);
}

static bool exists(const char *dir, const char *name, const char *ext)
{
    char *p = join3(dir, name, ext);
    bool ok = ms_path_is_file(p);
    free(p);
    return ok;
}

static bool have_gnuplot(void)
{
    return access("/usr/bin/gnuplot", X_OK) == 0;
}

/* Run report over n inputs into dir; returns the exit status. */
static int run_report(const char *const *in, size_t n, const char *dir, char **out, char **err)
{
    const char *argv[32];
    size_t k = 0;
    argv[k++] = "report";
    for (size_t i = 0; i < n && k < 28; i++)
        argv[k++] = in[i];
    argv[k++] = "-o";
    argv[k++] = dir;
    argv[k] = NULL;
    return ms_test_run(argv, out, err);
}

/* Strict UTF-8 validity, written independently of report/escape.c. */
static bool valid_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned c = *s, n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2
                               : (c >> 3) == 30 ? 3 : 9;
        if (n == 9)
            return false;
        unsigned cp = n ? c & (0x3F >> n) : c;
        for (unsigned i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        s += n + 1;
    }
    return true;
}

/* No control characters but newline (and tab where allowed). */
static bool no_controls(const char *s, bool tab_ok)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\n' && !(tab_ok && c == '\t')) || c == 0x7F)
            return false;
    }
    return true;
}

static double json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static cJSON *load_json(const char *path)
{
    char *t = slurp(path);
    cr_assert_not_null(t, "cannot read %s", path);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cr_assert_not_null(j, "%s is not JSON", path);
    return j;
}

/* ==== escaping ==== */

static char *esc(bool (*fn)(ms_sb *, const char *), const char *s)
{
    ms_sb sb = MS_SB_INIT;
    cr_assert(fn(&sb, s));
    return ms_sb_detach(&sb);
}

Test(report, escape_html)
{
    char *o = esc(ms_esc_html, "</script><b a='1'>\"x\" & y");
    cr_assert_str_eq(o, "&lt;/script&gt;&lt;b a=&#39;1&#39;&gt;&quot;x&quot; &amp; y");
    free(o);
    /* newline and ESC become visible pictures U+240A and U+241B */
    o = esc(ms_esc_html, "a\nb\x1b");
    cr_assert_str_eq(o, "a\xe2\x90\x8a" "b\xe2\x90\x9b");
    free(o);
    /* invalid UTF-8 (a lone 0xFF, an overlong '/') becomes U+FFFD */
    o = esc(ms_esc_html, "x\xffy\xc0\xafz");
    cr_assert_str_eq(o, "x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz");
    free(o);
    /* a right-to-left override cannot reorder the text */
    o = esc(ms_esc_html, "a\xe2\x80\xae" "b");
    cr_assert_str_eq(o, "a\xef\xbf\xbd" "b");
    free(o);
}

Test(report, escape_markdown)
{
    char *o = esc(ms_esc_md, "a|b `c` [l](javascript:x) <i> *e* _u_ # h");
    cr_assert_str_eq(o, "a\\|b \\`c\\` \\[l\\]\\(javascript:x\\) \\<i\\> \\*e\\* \\_u\\_ \\# h");
    free(o);
    o = esc(ms_esc_md, "- item");
    cr_assert_str_eq(o, "\\- item");
    free(o);
    o = esc(ms_esc_md, "12. x");
    cr_assert_str_eq(o, "12\\. x");
    free(o);
    o = esc(ms_esc_md, "v1.2.3");
    cr_assert_str_eq(o, "v1.2.3");
    free(o);
    o = esc(ms_esc_md, "x\n## y");
    cr_assert_str_eq(o, "x\xe2\x90\x8a\\#\\# y");
    free(o);
}

Test(report, escape_yaml)
{
    char *o = esc(ms_esc_yaml, "org/m\"x\\\nlicense: mit");
    cr_assert_str_eq(o, "\"org/m\\\"x\\\\\\x0Alicense: mit\"");
    free(o);
    o = esc(ms_esc_yaml, "");
    cr_assert_str_eq(o, "\"\"");
    free(o);
}

Test(report, escape_code_block_fence)
{
    ms_sb sb = MS_SB_INIT;
    cr_assert_eq(ms_esc_code_block(&sb, "a: 1\nb: 2\n"), 3u);
    cr_assert_str_eq(ms_sb_str(&sb), "a: 1\nb: 2\n");
    ms_sb_reset(&sb);
    /* a run of five backticks needs a fence of six */
    cr_assert_eq(ms_esc_code_block(&sb, "x\n`````\ny"), 6u);
    ms_sb_reset(&sb);
    cr_assert_eq(ms_esc_code_block(&sb, "a\rb"), 3u);
    cr_assert_str_eq(ms_sb_str(&sb), "a\xe2\x90\x8d" "b");
    ms_sb_free(&sb);
}

Test(report, escape_gnuplot)
{
    char b[64];
    ms_esc_gnuplot(b, sizeof(b), "org/model-7B_v1.2");
    cr_assert_str_eq(b, "org/model-7B_v1.2");
    ms_esc_gnuplot(b, sizeof(b), "`touch x`\"; system(\"ls\")");
    cr_assert_str_eq(b, "_touch_x_system_ls_");
    ms_esc_gnuplot(b, sizeof(b), "");
    cr_assert_str_eq(b, "_");
    ms_esc_gnuplot(b, 5, "abcdefgh");
    cr_assert_str_eq(b, "abcd");
}

/* ==== input validation ==== */

Test(report, rejects_what_is_not_our_result)
{
    static const struct { const char *text; ms_status code; } bad[] = {
        {"{\"schema\": \"mergescope.audit/1\",", MS_ERR_FORMAT},
        {"[1, 2]", MS_ERR_FORMAT},
        {"{\"method\": \"ties\"}", MS_ERR_FORMAT},
        {"{\"schema\": \"mergescope.fixtures.truth/1\"}", MS_ERR_FORMAT},
        {"{\"schema\": \"other.audit/1\"}", MS_ERR_FORMAT},
        {"{\"schema\": \"mergescope.audit/2\"}", MS_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ms_report *r = ms_report_new();
        ms_error e;
        ms_error_clear(&e);
        ms_status st = ms_report_add_text(r, "in.json", bad[i].text, strlen(bad[i].text), &e);
        cr_assert_eq(st, bad[i].code, "case %zu: status %d", i, (int)st);
        cr_assert_str_eq(e.path, "in.json");
        ms_report_free(r);
    }
    ms_report *r = ms_report_new();
    ms_error e;
    ms_error_clear(&e);
    const char *ok = "{\"schema\": \"mergescope.quant/1\", \"surprise\": [1, {\"x\": null}]}";
    cr_assert_eq(ms_report_add_text(r, "q.json", ok, strlen(ok), &e), MS_OK);
    cr_assert_eq(ms_report_count(r, MS_RK_QUANT), 1u);
    ms_report_free(r);
}

Test(report, cli_exit_2_names_the_bad_file)
{
    char *dir = ms_test_tmpdir();
    char *bad = ms_path_join(dir, "truth.json"), *out_dir = ms_path_join(dir, "out");
    const char *text = "{\"schema\": \"mergescope.fixtures.truth/1\"}";
    cr_assert(ms_test_write(bad, text, strlen(text)));
    const char *in[] = {DATA "audit.json", bad};
    char *out, *err;
    cr_assert_eq(run_report(in, 2, out_dir, &out, &err), 2);
    cr_assert(strstr(err, bad) != NULL, "stderr should name %s: %s", bad, err);
    cr_assert(!ms_path_is_file(out_dir), "nothing is written for bad input");
    free(out);
    free(err);
    const char *missing[] = {"report", DATA "audit.json", NULL};
    cr_assert_eq(ms_test_run(missing, NULL, NULL), 2, "-o is required");
    free(bad);
    free(out_dir);
    free(dir);
}

/* ==== the full report ==== */

Test(report, writes_every_output_and_plot)
{
    char *dir = ms_test_tmpdir();
    char *out_dir = ms_path_join(dir, "deep/er");
    char *out, *err;
    int rc = run_report(data_files, 7, out_dir, &out, &err);
    cr_assert_eq(rc, 0, "report failed: %s", err);
    char *p = join3(out_dir, "/", "plots/");
    for (size_t i = 0; i < sizeof(required_plots) / sizeof(required_plots[0]); i++) {
        cr_assert(exists(p, required_plots[i], ".gp"), "missing %s.gp", required_plots[i]);
        if (have_gnuplot()) {
            cr_assert(exists(p, required_plots[i], ".png"), "missing %s.png", required_plots[i]);
            cr_assert(exists(p, required_plots[i], ".svg"), "missing %s.svg", required_plots[i]);
        }
    }
    cr_assert(exists(p, "provenance_map_g0", ".dat"));
    char *html_path = join3(out_dir, "/", "report.html");
    char *html = slurp(html_path);
    cr_assert_not_null(html);
    /* self-contained: no fetch of anything, every image inline */
    cr_assert_null(strstr(html, "src=\"http"));
    cr_assert_null(strstr(html, "href=\"http"));
    cr_assert_null(strstr(html, "<link"));
    cr_assert_null(strstr(html, "<script"));
    size_t n_img = 0;
    for (const char *s = html; (s = strstr(s, "<img ")); s++) {
        cr_assert(strncmp(strstr(s, "src="), "src=\"data:image/png;base64,", 27) == 0);
        n_img++;
    }
    if (have_gnuplot())
        cr_assert_eq(n_img, sizeof(required_plots) / sizeof(required_plots[0]),
                     "every plot embedded once, got %zu", n_img);
    cr_assert(strstr(html, "name=\"viewport\"") != NULL, "phone-readable viewport");
    for (const char *f = "report.md\0MODEL_CARD.md\0"; *f; f += strlen(f) + 1)
        cr_assert(exists(out_dir, "/", f), "missing %s", f);
    free(html);
    free(html_path);
    free(p);
    free(out);
    free(err);
    free(out_dir);
    free(dir);
}

/* The card's numbers, parsed back, equal the JSON's (to the printed precision). */
Test(report, card_numbers_equal_the_json)
{
    char *dir = ms_test_tmpdir();
    char *out, *err;
    cr_assert_eq(run_report(data_files, 7, dir, &out, &err), 0, "%s", err);
    char *card_path = join3(dir, "/", "MODEL_CARD.md");
    char *card = slurp(card_path);
    cJSON *attr = load_json(DATA "attribute.json"), *audit = load_json(DATA "audit.json");
    cJSON *quant = load_json(DATA "quant.json"), *recipe = load_json(DATA "recipe.json");
    const cJSON *d;
    int checked = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(attr, "donors")) {
        const char *name = cJSON_GetObjectItem(d, "name")->valuestring;
        char *row = join3("| `", name, "` | donor | ");
        const char *s = strstr(card, row);
        cr_assert_not_null(s, "no row for %s", name);
        double measured, simulated, weight, wmin = INFINITY;
        cr_assert_eq(sscanf(s + strlen(row), "%lf%% | %lf%% | %lf", &measured, &simulated,
                            &weight), 3);
        cr_assert_float_eq(measured / 100, json_num(d, "share"), 0.0005 + 1e-9);
        /* the configured weight (its smallest value when it is a gradient) */
        const cJSON *l;
        cJSON_ArrayForEach(l, cJSON_GetObjectItem(recipe, "layers"))
            if (!strcmp(cJSON_GetObjectItem(l, "model")->valuestring, name))
                wmin = fmin(wmin, json_num(cJSON_GetObjectItem(l, "params"), "weight"));
        cr_assert_float_eq(weight, wmin, 1e-9);
        const cJSON *a;
        cJSON_ArrayForEach(a, cJSON_GetObjectItem(audit, "donors"))
            if (!strcmp(cJSON_GetObjectItem(a, "name")->valuestring, name))
                cr_assert_float_eq(simulated / 100, json_num(a, "share"), 0.0005 + 1e-9);
        checked++;
        free(row);
    }
    cr_assert_eq(checked, 3);
    double bpw;
    const char *s = strstr(card, "bits per weight: ");
    cr_assert(s && sscanf(s, "bits per weight: %lf", &bpw) == 1);
    cr_assert_float_eq(bpw, json_num(quant, "bits_per_weight"), 0.0005 + 1e-9);
    double resid;
    s = strstr(card, "residual of ");
    cr_assert(s && sscanf(s, "residual of %lf%%", &resid) == 1);
    cr_assert_float_eq(resid / 100, json_num(attr, "residual_share"), 0.0005 + 1e-9);
    /* the type mix line: every type with its share of weights */
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(quant, "types")) {
        char want[64];
        const char *t = cJSON_GetObjectItem(d, "type")->valuestring;
        ms_sb et = MS_SB_INIT;
        ms_esc_md(&et, t);
        snprintf(want, sizeof(want), "%s %.0f%%", et.buf, json_num(d, "share") * 100);
        cr_assert(strstr(card, want) != NULL, "type mix lacks '%s'", want);
        ms_sb_free(&et);
    }
    /* front matter as Hugging Face reads it */
    cr_assert(ms_str_startswith(card, "---\nbase_model:\n- \"org/base-7b\"\n"));
    cr_assert(strstr(card, "\nbase_model_relation: merge\n") != NULL);
    cr_assert(strstr(card, "\n- mergekit\n") != NULL && strstr(card, "\n- gguf\n") != NULL);
    cr_assert(strstr(card, "TODO (author)") != NULL);
    cJSON_Delete(attr);
    cJSON_Delete(audit);
    cJSON_Delete(quant);
    cJSON_Delete(recipe);
    free(card);
    free(card_path);
    free(out);
    free(err);
    free(dir);
}

/* ==== hostile input ==== */

#define PWN_FMT "/tmp/ms-report-pwned-%d"

static char *hostile_audit(const char *pwn)
{
    /* donor names and evidence built from every trick in the book */
    char n1[256], n2[256], ev[512];
    snprintf(n1, sizeof(n1), "`touch %s`\\\"; system(\\\"touch %s\\\") ; \\\"", pwn, pwn);
    snprintf(n2, sizeof(n2), "</script><script>alert(1)</script>|x|\\n## injected\\n- item "
                             "\xff\xfe\xc0\xaf \\u001b[31m\\u0007 [l](javascript:alert(1))");
    snprintf(ev, sizeof(ev), "<img src=x onerror=alert(1)> | `code` \\r\\n> quote");
    ms_sb sb = MS_SB_INIT;
    ms_sb_addf(&sb,
               "{\"schema\": \"mergescope.audit/1\", \"tool_version\": \"x\", "
               "\"method\": \"ties\\n# h\", \"base\": \"org/b\\\"\\nlicense: mit\", \"donors\": ["
               "{\"name\": \"%s\", \"share\": 0.6, \"fingerprints\": [{\"kind\": \"%s\", "
               "\"tensors\": [], \"evidence\": \"%s\"}]},"
               "{\"name\": \"%s\", \"share\": 0.4}],"
               "\"pairs\": [{\"a\": \"%s\", \"b\": \"%s\", \"cosine\": 0.5, "
               "\"sign_conflict\": 0.2}],"
               "\"layers\": [{\"layer\": 0, \"shares\": {\"%s\": 0.6, \"%s\": 0.4}}, "
               "{\"layer\": 1, \"shares\": {\"%s\": 0.5, \"%s\": 0.5}}]}",
               n1, n2, ev, n2, n1, n2, n1, n2, n1, n2);
    return ms_sb_detach(&sb);
}

static char *hostile_other(const char *pwn)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_addf(&sb,
               "{\"schema\": \"mergescope.recipe/1\", \"merge_method\": \"`id`\", "
               "\"base_model\": \"org/base\", \"models\": [\"org/a\", \"$(touch %s)\"], "
               "\"recipe_text\": \"models:\\n```\\n<script>alert(2)</script>\\n````\\n\"}",
               pwn);
    return ms_sb_detach(&sb);
}

static char *hostile_quant(const char *pwn)
{
    ms_sb sb = MS_SB_INIT;
    ms_sb_addf(&sb,
               "{\"schema\": \"mergescope.quant/1\", \"bits_per_weight\": 4.5, \"types\": ["
               "{\"type\": \"Q4_K`touch %s`\", \"n_params\": 10, \"share\": 0.5, "
               "\"rel_rmse\": 0.1},"
               "{\"type\": \"x\\\"\\nset output '/tmp/evil'\", \"n_params\": 10, \"share\": 0.5}],"
               "\"tensors\": [{\"name\": \"<b>t</b>|\", \"type\": \"q\", \"rel_rmse\": 0.2}],"
               "\"layers\": [{\"layer\": 0, \"rel_rmse\": 0.1}]}",
               pwn);
    return ms_sb_detach(&sb);
}

/*
 * Blank out the contents of Markdown fenced code blocks (where text is
 * literal) so that what remains is what a renderer interprets.
 */
static void drop_fenced(char *t)
{
    size_t fence = 0;
    for (char *line = t; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ticks = strspn(line, "`");
        if (!fence && ticks >= 3) {
            fence = ticks;
        } else if (fence && ticks >= fence && line[ticks] == '\n') {
            fence = 0;
        } else if (fence) {
            for (char *c = line; c < (nl ? nl : line + strlen(line)); c++)
                *c = ' ';
        }
        line = nl ? nl + 1 : NULL;
    }
}

static void check_output_inert(const char *path, bool markdown)
{
    char *t = slurp(path);
    cr_assert_not_null(t, "missing %s", path);
    cr_assert(valid_utf8((const unsigned char *)t), "%s is not valid UTF-8", path);
    cr_assert(no_controls(t, false), "%s holds a control character", path);
    if (markdown)
        drop_fenced(t);
    /* in Markdown, "\\<" is a literal "<" */
    static const char *const live[] = {"<script", "<img src=x"};
    for (size_t i = 0; i < 2; i++)
        for (const char *s = t; (s = strstr(s, live[i])); s++)
            cr_assert(markdown && s > t && s[-1] == '\\', "%s holds a live %s", path, live[i]);
    cr_assert_null(strstr(t, markdown ? "](javascript" : "href=\"javascript"),
                   "%s holds a live link", path);
    free(t);
}

Test(report, hostile_names_stay_inert)
{
    char pwn[64];
    snprintf(pwn, sizeof(pwn), PWN_FMT, (int)getpid());
    unlink(pwn);
    char *dir = ms_test_tmpdir();
    char *ins[3] = {join3(dir, "/", "a.json"), join3(dir, "/", "r.json"),
                    join3(dir, "/", "q.json")};
    char *texts[3] = {hostile_audit(pwn), hostile_other(pwn), hostile_quant(pwn)};
    for (int i = 0; i < 3; i++) {
        cr_assert(ms_test_write(ins[i], texts[i], strlen(texts[i])));
        cJSON *j = cJSON_Parse(texts[i]);
        cr_assert_not_null(j, "hostile input %d must be valid JSON", i);
        cJSON_Delete(j);
    }
    char *out_dir = ms_path_join(dir, "out"), *out, *err;
    int rc = run_report((const char *const *)ins, 3, out_dir, &out, &err);
    cr_assert_eq(rc, 0, "report failed: %s", err);
    cr_assert(access(pwn, F_OK) != 0, "a hostile name ran a command");
    cr_assert(access("/tmp/evil", F_OK) != 0, "a hostile name set gnuplot's output");
    char *html = join3(out_dir, "/", "report.html"), *md = join3(out_dir, "/", "report.md");
    char *card = join3(out_dir, "/", "MODEL_CARD.md");
    check_output_inert(html, false);
    check_output_inert(md, true);
    check_output_inert(card, true);
    /* the text is there, as text */
    char *t = slurp(html);
    cr_assert(strstr(t, "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;") != NULL);
    free(t);
    t = slurp(md);
    /* no line of the Markdown starts a heading, list or quote from input text */
    for (char *line = t; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        cr_assert(!ms_str_startswith(line, "## injected") && !ms_str_startswith(line, "- item"),
                  "injected block in report.md");
    /* every table row of a table has the same number of unescaped pipes */
    int want = -1;
    for (char *line = t; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (*line != '|') {
            want = -1;
            continue;
        }
        int n = 0;
        for (char *c = line; *c && *c != '\n'; c++)
            n += *c == '|' && (c == line || c[-1] != '\\');
        if (want < 0)
            want = n;
        cr_assert_eq(n, want, "a pipe in a name broke a table row");
    }
    free(t);
    /* front matter: only our keys, values quoted */
    t = slurp(card);
    char *end = strstr(t + 4, "\n---\n");
    cr_assert_not_null(end);
    *end = '\0';
    for (char *line = t + 4; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        bool known = ms_str_startswith(line, "- ") || ms_str_startswith(line, "# ") ||
                     ms_str_startswith(line, "base_model:") ||
                     ms_str_startswith(line, "base_model_relation: ") ||
                     ms_str_startswith(line, "library_name: ") || ms_str_startswith(line, "tags:");
        cr_assert(known, "unexpected front matter line: %.40s", line);
    }
    free(t);
    /* gnuplot scripts hold nothing from the inputs; data files no quoting */
    char *plots = join3(out_dir, "/", "plots");
    const char *gp[] = {"audit_shares_by_layer", "audit_pair_cosine", "quant_type_mix",
                        "quant_error_by_type"};
    for (size_t i = 0; i < 4; i++) {
        char *g = join3(plots, "/", gp[i]), *gpath = join3(g, ".gp", "");
        char *dpath = join3(g, ".dat", "");
        char *s = slurp(gpath), *dd = slurp(dpath);
        cr_assert_not_null(s, "missing %s", gpath);
        cr_assert_not_null(dd, "missing %s", dpath);
        cr_assert_null(strchr(s, '`'));
        cr_assert_null(strstr(s, "touch"));
        cr_assert_null(strstr(s, "system"));
        cr_assert_null(strstr(s, "evil"));
        cr_assert_null(strpbrk(dd, "`\"'$();"), "%s holds quoting", dpath);
        free(s);
        free(dd);
        free(g);
        free(gpath);
        free(dpath);
    }
    /* nothing but our own files in plots/: gnuplot wrote no file of an input's choosing */
    DIR *dp = opendir(plots);
    struct dirent *de;
    int n_files = 0;
    while ((de = readdir(dp))) {
        const char *f = de->d_name;
        if (f[0] == '.')
            continue;
        size_t stem = strspn(f, "abcdefghijklmnopqrstuvwxyz0123456789_");
        cr_assert(!strcmp(f + stem, ".gp") || !strcmp(f + stem, ".dat") ||
                  !strcmp(f + stem, ".png") || !strcmp(f + stem, ".svg"),
                  "unexpected file plots/%s", f);
        n_files++;
    }
    closedir(dp);
    cr_assert_gt(n_files, 8);
    free(plots);
    for (int i = 0; i < 3; i++) {
        free(ins[i]);
        free(texts[i]);
    }
    free(html);
    free(md);
    free(card);
    free(out);
    free(err);
    free(out_dir);
    free(dir);
    unlink(pwn);
}

/* ==== without gnuplot ==== */

Test(report, without_gnuplot_scripts_stay_and_one_warning)
{
    char *dir = ms_test_tmpdir();
    char *bin = ms_path_join(dir, "bin"), *out_dir = ms_path_join(dir, "out");
    mkdir(bin, 0755);
    /* a PATH without gnuplot on it */
    setenv("PATH", bin, 1);
    char *out, *err, *jpath = ms_path_join(dir, "report.json");
    const char *argv[] = {"report", data_files[0], data_files[1], data_files[2], data_files[3],
                          data_files[4], data_files[5], data_files[6], "-o", out_dir,
                          "--json", jpath, NULL};
    int rc = ms_test_run(argv, &out, &err);
    cr_assert_eq(rc, 0, "exit 0 without gnuplot: %s", err);
    cJSON *j = load_json(jpath);
    const cJSON *pl = cJSON_GetObjectItem(j, "plots");
    cr_assert_str_eq(cJSON_GetObjectItem(pl, "gnuplot")->valuestring, "missing");
    cr_assert_eq(json_num(pl, "rendered"), 0);
    cr_assert_eq(json_num(pl, "written"),
                 (double)(sizeof(required_plots) / sizeof(required_plots[0])));
    cJSON_Delete(j);
    free(jpath);
    int warnings = 0;
    for (const char *s = err; (s = strstr(s, "warning:")); s++)
        warnings++;
    cr_assert_eq(warnings, 1, "one warning line, got: %s", err);
    cr_assert(strstr(err, "gnuplot") != NULL);
    char *p = join3(out_dir, "/", "plots/");
    for (size_t i = 0; i < sizeof(required_plots) / sizeof(required_plots[0]); i++) {
        cr_assert(exists(p, required_plots[i], ".gp"));
        cr_assert(!exists(p, required_plots[i], ".png"));
    }
    cr_assert(exists(p, "audit_shares_by_layer", ".dat"));
    cr_assert(exists(out_dir, "/report.html", ""));
    cr_assert(exists(out_dir, "/report.md", ""));
    cr_assert(exists(out_dir, "/MODEL_CARD.md", ""));
    char *html_path = join3(out_dir, "/", "report.html");
    char *html = slurp(html_path);
    cr_assert(strstr(html, "plot not rendered") != NULL);
    free(html);
    free(html_path);
    free(p);
    free(out);
    free(err);
    free(bin);
    free(out_dir);
    free(dir);
}

/* ==== the generated demo family, through the real commands ==== */

Test(report, real_chain_on_generated_demo)
{
    char *gen = ms_test_gen("demo/base");
    if (!ms_path_is_dir(gen)) {
        free(gen);
        cr_skip_test("generated demo family is absent (run ms-fixtures)");
    }
    free(gen);
    char *dir = ms_test_tmpdir();
    char *cmp = ms_path_join(dir, "compare.json"), *att = ms_path_join(dir, "attribute.json");
    char *prov = ms_path_join(dir, "provenance.json");
    char *b = ms_test_gen("demo/base"), *m = ms_test_gen("demo/merged-task_arithmetic");
    char *d1 = ms_test_gen("demo/donor1"), *d2 = ms_test_gen("demo/donor2");
    char *d3 = ms_test_gen("demo/donor3"), *pt = ms_test_gen("demo/merged-passthrough");
    const char *a1[] = {"compare", b, m, d1, "--json", cmp, "-q", NULL};
    const char *a2[] = {"attribute", "--base", b, m, d1, d2, d3, "--json", att, "-q", NULL};
    const char *a3[] = {"provenance", pt, d1, d2, "--json", prov, "-q", NULL};
    cr_assert_eq(ms_test_run(a1, NULL, NULL), 0);
    cr_assert_eq(ms_test_run(a2, NULL, NULL), 0);
    cr_assert_eq(ms_test_run(a3, NULL, NULL), 0);
    const char *in[] = {cmp, att, prov};
    char *out_dir = ms_path_join(dir, "out"), *out, *err;
    cr_assert_eq(run_report(in, 3, out_dir, &out, &err), 0, "%s", err);
    char *card_path = join3(out_dir, "/", "MODEL_CARD.md");
    char *card = slurp(card_path);
    cJSON *j = load_json(att);
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(j, "donors")) {
        char *row = join3("| `", cJSON_GetObjectItem(d, "name")->valuestring, "` | donor | ");
        const char *s = strstr(card, row);
        double v;
        cr_assert(s && sscanf(s + strlen(row), "%lf%%", &v) == 1, "no share row in card");
        cr_assert_float_eq(v / 100, json_num(d, "share"), 0.0005 + 1e-9);
        free(row);
    }
    if (have_gnuplot()) {
        char *p = join3(out_dir, "/", "plots/");
        cr_assert(exists(p, "provenance_map", ".png"));
        cr_assert(exists(p, "compare_rel_l2_by_layer", ".png"));
        cr_assert(exists(p, "attribute_shares_by_layer", ".png"));
        free(p);
    }
    cJSON_Delete(j);
    free(card);
    free(card_path);
    free(out);
    free(err);
    free(out_dir);
    free(b); free(m); free(d1); free(d2); free(d3); free(pt);
    free(cmp); free(att); free(prov);
    free(dir);
}

/* The values of a gnuplot .dat file (header line, then "label v1 v2 ..."):
 * rows * cols numbers into v (at most cap); returns false on a short row. */
static bool read_dat(const char *path, size_t rows, size_t cols, double *v)
{
    char *t = slurp(path);
    if (!t)
        return false;
    char *line = strchr(t, '\n');
    bool ok = line != NULL;
    for (size_t r = 0; ok && r < rows; r++) {
        char *e = line + 1;
        strtod(e, &e); /* the layer label */
        for (size_t c = 0; ok && c < cols; c++) {
            char *end;
            v[r * cols + c] = strtod(e, &end);
            ok = end != e;
            e = end;
        }
        line = strchr(e, '\n');
        ok = ok && line;
    }
    free(t);
    return ok;
}

/*
 * A real audit result with per-layer figures (layers[].pairs, layers[].donors)
 * alone: sign conflict per layer, one line per donor pair, and cosine to the
 * base per layer per donor, drawn with the audit's own numbers.
 */
Test(report, audit_per_layer_plots_from_real_audit)
{
    char *recipe = ms_test_gen("demo/recipes/task_arithmetic.yml");
    if (!ms_path_is_file(recipe)) {
        free(recipe);
        cr_skip_test("generated demo family is absent (run ms-fixtures)");
    }
    char *dir = ms_test_tmpdir();
    char *aj = ms_path_join(dir, "audit.json"), *out_dir = ms_path_join(dir, "out");
    const char *a1[] = {"audit", recipe, "--models-dir", MS_GEN_DIR, "--json", aj, "-q", NULL};
    cr_assert_eq(ms_test_run(a1, NULL, NULL), 0);
    const char *in[] = {aj};
    char *out, *err;
    cr_assert_eq(run_report(in, 1, out_dir, &out, &err), 0, "%s", err);
    cJSON *j = load_json(aj);
    const cJSON *layers = cJSON_GetObjectItem(j, "layers"), *l0 = cJSON_GetArrayItem(layers, 0);
    size_t nl = (size_t)cJSON_GetArraySize(layers);
    size_t np = (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(l0, "pairs"));
    cr_assert(nl >= 2 && np == 3, "demo audit: %zu layers, %zu pairs per layer", nl, np);
    char *p = join3(out_dir, "/", "plots/");
    char *sc = join3(p, "audit_sign_conflict", ".dat");
    char *cb = join3(p, "audit_cosine_base_by_layer", ".dat");
    double *v = calloc(nl * np, sizeof(double));
    cr_assert(read_dat(sc, nl, np, v), "%s: not %zu layers x %zu pairs", sc, nl, np);
    for (size_t r = 0; r < nl; r++)
        for (size_t k = 0; k < np; k++) {
            const cJSON *pr = cJSON_GetArrayItem(
                cJSON_GetObjectItem(cJSON_GetArrayItem(layers, (int)r), "pairs"), (int)k);
            cr_assert_float_eq(v[r * np + k], 100.0 * json_num(pr, "sign_conflict"), 1e-3,
                               "layer %zu pair %zu", r, k);
        }
    const char *names[] = {"demo/donor1", "demo/donor2", "demo/donor3"};
    cr_assert(read_dat(cb, nl, 3, v), "%s: not %zu layers x 3 donors", cb, nl);
    for (size_t r = 0; r < nl; r++)
        for (size_t k = 0; k < 3; k++) {
            const cJSON *d = cJSON_GetObjectItem(
                cJSON_GetObjectItem(cJSON_GetArrayItem(layers, (int)r), "donors"), names[k]);
            cr_assert_float_eq(v[r * 3 + k], json_num(d, "cos_to_base"), 1e-5,
                               "layer %zu %s", r, names[k]);
        }
    if (have_gnuplot()) {
        cr_assert(exists(p, "audit_sign_conflict", ".png"));
        cr_assert(exists(p, "audit_cosine_base_by_layer", ".png"));
    }
    char *md_path = join3(out_dir, "/", "report.md");
    char *md = slurp(md_path);
    cr_assert(md && strstr(md, "plots/audit_sign_conflict.png") &&
              strstr(md, "plots/audit_cosine_base_by_layer.png"), "plots not in report.md");
    free(md);
    free(md_path);
    free(v);
    free(sc);
    free(cb);
    free(p);
    cJSON_Delete(j);
    free(out);
    free(err);
    free(out_dir);
    free(aj);
    free(dir);
    free(recipe);
}

/* ==== headless Chromium ==== */

/* Screenshot url into png; true when chromium exited 0 and wrote it. */
static bool screenshot(const char *url, const char *png, const char *profile)
{
    char shot[600], prof[600];
    snprintf(shot, sizeof(shot), "--screenshot=%s", png);
    snprintf(prof, sizeof(prof), "--user-data-dir=%s", profile);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl("/usr/bin/chromium", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
              "--disable-quic", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", prof, shot,
              "--window-size=1280,2000", url, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && ms_path_is_file(png);
}

/*
 * How much of a PNG's image is not flat: the fraction of non-zero bytes in
 * its inflated, row-filtered pixel data, measured by Python's zlib (a page
 * of one colour filters to almost all zeros). -1 when it cannot be read.
 */
static double png_busy(const char *png)
{
    static const char prog[] =
        "import sys,zlib,struct\n"
        "d=open(sys.argv[1],'rb').read()\n"
        "assert d[:8]==b'\\x89PNG\\r\\n\\x1a\\n'\n"
        "i=8;z=b''\n"
        "while i<len(d):\n"
        " n,t=struct.unpack('>I4s',d[i:i+8])\n"
        " if t==b'IDAT': z+=d[i+8:i+8+n]\n"
        " i+=12+n\n"
        "r=zlib.decompress(z)\n"
        "print(1-r.count(0)/len(r))\n";
    const char *argv[] = {"/usr/bin/python3", "-c", prog, png, NULL};
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[64] = {0};
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fds[0], buf + n, sizeof(buf) - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return n > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? strtod(buf, NULL) : -1;
}

Test(report, html_renders_in_headless_chromium, .timeout = 180)
{
    if (access("/usr/bin/chromium", X_OK) != 0)
        cr_skip_test("/usr/bin/chromium is absent (Debian package chromium)");
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("/usr/bin/python3 is absent");
    char *dir = ms_test_tmpdir();
    char *out_dir = ms_path_join(dir, "out"), *out, *err;
    cr_assert_eq(run_report(data_files, 7, out_dir, &out, &err), 0, "%s", err);
    char *url = join3("file://", out_dir, "/report.html");
    char *png = ms_path_join(dir, "shot.png"), *blank_png = ms_path_join(dir, "blank.png");
    char *blank = ms_path_join(dir, "blank.html"), *blank_url = join3("file://", blank, "");
    char *prof1 = ms_path_join(dir, "p1"), *prof2 = ms_path_join(dir, "p2");
    cr_assert(ms_test_write(blank, "<!DOCTYPE html><html><body></body></html>", 41));
    cr_assert(screenshot(blank_url, blank_png, prof1), "chromium failed on a blank page");
    cr_assert(screenshot(url, png, prof2), "chromium failed on report.html");
    double b = png_busy(blank_png), r = png_busy(png);
    cr_assert(b >= 0 && r >= 0, "cannot decode the screenshots");
    /* a blank page is flat; the report has text, tables and (with gnuplot) plots */
    cr_assert_lt(b, 0.001, "the blank page is not blank (%.4f)", b);
    cr_assert_gt(r, 0.01, "report.html rendered (nearly) blank: %.4f", r);
    struct stat sb, sr;
    stat(blank_png, &sb);
    stat(png, &sr);
    cr_assert_gt(sr.st_size, 10 * sb.st_size, "report screenshot %lld bytes vs blank %lld",
                 (long long)sr.st_size, (long long)sb.st_size);
    /* the browser profiles are tens of MB */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", prof1, prof2);
    cr_assert_eq(system(cmd), 0);
    free(url); free(png); free(blank_png); free(blank); free(blank_url);
    free(prof1); free(prof2);
    free(out); free(err); free(out_dir); free(dir);
}

/* ==== wrong types anywhere ==== */

/* Replace the n-th node (pre-order, root excluded) below parent by rep. */
static bool replace_nth(cJSON *parent, int *n, cJSON *rep)
{
    for (cJSON *c = parent->child; c; c = c->next) {
        if ((*n)-- == 0)
            return cJSON_ReplaceItemViaPointer(parent, c, rep);
        if (replace_nth(c, n, rep))
            return true;
    }
    return false;
}

static int count_nodes(const cJSON *j)
{
    int n = 0;
    for (const cJSON *c = j->child; c; c = c->next)
        n += 1 + count_nodes(c);
    return n;
}

/*
 * Every field of every kind of result, replaced in turn by a value of
 * another type (or an absurd number): report must still write its outputs
 * and never crash (run under ASan in the sanitizer build).
 */
Test(report, any_field_of_any_type, .timeout = 600)
{
    const char *shm = ms_path_is_dir("/dev/shm") ? "/dev/shm" : "/tmp";
    char tmpl[64];
    snprintf(tmpl, sizeof(tmpl), "%s/ms-report-XXXXXX", shm);
    cr_assert_not_null(mkdtemp(tmpl));
    ms_report_opts opts = {"/nonexistent/gnuplot"};
    int runs = 0;
    for (size_t f = 0; f < sizeof(data_files) / sizeof(data_files[0]); f++) {
        cJSON *orig = load_json(data_files[f]);
        int nodes = count_nodes(orig), stride = nodes / 40 + 1;
        for (int i = (int)f % stride; i < nodes; i += stride) {
            for (int k = 0; k < 5; k++) {
                cJSON *copy = cJSON_Duplicate(orig, true);
                cJSON *rep = k == 0 ? cJSON_CreateNull()
                           : k == 1 ? cJSON_CreateString("<b>|`x`|</b>")
                           : k == 2 ? cJSON_CreateArray()
                           : k == 3 ? cJSON_CreateNumber(1e308)
                                    : cJSON_CreateNumber(-3);
                int n = i;
                if (!replace_nth(copy, &n, rep))
                    cJSON_Delete(rep);
                char *text = cJSON_PrintUnformatted(copy);
                ms_report *r = ms_report_new();
                ms_error e;
                ms_error_clear(&e);
                ms_status st = ms_report_add_text(r, "x.json", text, strlen(text), &e);
                if (st == MS_OK) {
                    ms_report_outcome oc;
                    st = ms_report_write(r, tmpl, &opts, &oc, &e);
                    cr_assert_eq(st, MS_OK, "%s node %d kind %d: %s", data_files[f], i, k,
                                 e.msg);
                    runs++;
                } else {
                    /* only the schema line may make an input unreadable */
                    cr_assert(strstr(text, "\"schema\":\"mergescope.") == NULL ||
                              e.code == MS_ERR_FORMAT);
                }
                ms_report_free(r);
                free(text);
                cJSON_Delete(copy);
            }
        }
        cJSON_Delete(orig);
    }
    cr_assert_gt(runs, 500);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
    cr_assert_eq(system(cmd), 0);
}

/* A quantization alone: the card says quantized, from its reference; two
 * results of one kind give two sets of plots. */
Test(report, quantized_card_and_two_quants)
{
    char *dir = ms_test_tmpdir();
    char *q2 = ms_path_join(dir, "q2.json"), *out_dir = ms_path_join(dir, "out");
    const char *text = "{\"schema\": \"mergescope.quant/1\", \"reference\": \"org/src-7b\", "
                       "\"bits_per_weight\": 5.5, \"types\": [{\"type\": \"Q5_K\", "
                       "\"n_params\": 100, \"share\": 1, \"rel_rmse\": 0.02}]}";
    cr_assert(ms_test_write(q2, text, strlen(text)));
    const char *in[] = {q2, DATA "quant.json"}; /* the card reads the first */
    char *out, *err;
    cr_assert_eq(run_report(in, 2, out_dir, &out, &err), 0, "%s", err);
    char *card_path = join3(out_dir, "/", "MODEL_CARD.md");
    char *card = slurp(card_path);
    cr_assert(ms_str_startswith(card, "---\nbase_model:\n- \"org/src-7b\"\n"
                                      "base_model_relation: quantized\nlibrary_name: gguf\n"),
              "%.200s", card);
    cr_assert_null(strstr(card, "mergekit"), "a quantization alone is no merge");
    char *p = join3(out_dir, "/", "plots/");
    cr_assert(exists(p, "quant_type_mix", ".gp") && exists(p, "quant_type_mix_2", ".gp"));
    free(p);
    free(card);
    free(card_path);
    free(out);
    free(err);
    free(q2);
    free(out_dir);
    free(dir);
}

/* ==== the card's rebuilt recipe gives the same per-layer values ==== */

static bool row_key_eq(const cJSON *x, const cJSON *y)
{
    static const char *const keys[] = {"layer", "model", "filter", "tensor"};
    for (size_t i = 0; i < 4; i++) {
        const cJSON *a = cJSON_GetObjectItem(x, keys[i]), *b = cJSON_GetObjectItem(y, keys[i]);
        if (!cJSON_Compare(a, b, true))
            return false;
    }
    return true;
}

static bool params_close(const cJSON *p, const cJSON *q)
{
    const cJSON *e;
    if (cJSON_GetArraySize(p) != cJSON_GetArraySize(q))
        return false;
    cJSON_ArrayForEach(e, p) {
        const cJSON *f = cJSON_GetObjectItem(q, e->string);
        if (!f || cJSON_IsNumber(e) != cJSON_IsNumber(f))
            return false;
        if (cJSON_IsNumber(e) &&
            fabs(e->valuedouble - f->valuedouble) > 1e-7 * fmax(1, fabs(e->valuedouble)))
            return false;
    }
    return true;
}

/* The YAML block after our "not the author's file:" line, or NULL. */
static char *card_yaml(const char *card)
{
    const char *s = strstr(card, "not the author's file:\n\n");
    if (!s)
        return NULL;
    s = strchr(s, '\n') + 2;
    size_t fence = strspn(s, "`");
    const char *body = strchr(s, '\n') + 1, *end = body;
    while ((end = strstr(end, "\n`")) && strspn(end + 1, "`") != fence)
        end++;
    return end ? ms_strndup(body, (size_t)(end - body + 1)) : NULL;
}

/* explain src, report, explain the card's YAML: 1 same, 0 not rebuilt, -1 differs */
static int round_trip(const char *src, const char *dir)
{
    char *a = ms_path_join(dir, "a.json"), *b = ms_path_join(dir, "b.json");
    char *out_dir = ms_path_join(dir, "out"), *yml = ms_path_join(dir, "rebuilt.yml");
    const char *e1[] = {"recipe", "explain", src, "--layers", "32", "--json", a, NULL};
    int res = 0;
    if (ms_test_run(e1, NULL, NULL) != 0)
        goto done;
    const char *r[] = {"report", a, "-o", out_dir, "-q", NULL};
    cr_assert_eq(ms_test_run(r, NULL, NULL), 0, "report failed on explain of %s", src);
    char *card_path = join3(out_dir, "/", "MODEL_CARD.md"), *card = slurp(card_path);
    char *y = card_yaml(card);
    free(card);
    free(card_path);
    if (!y)
        goto done;
    cr_assert(ms_test_write(yml, y, strlen(y)));
    free(y);
    const char *e2[] = {"recipe", "explain", yml, "--layers", "32", "--json", b, NULL};
    cr_assert_eq(ms_test_run(e2, NULL, NULL), 0, "the YAML rebuilt from %s does not explain", src);
    cJSON *ja = load_json(a), *jb = load_json(b), *x, *z;
    const char *method = cJSON_GetObjectItem(ja, "merge_method")->valuestring;
    bool base_counts = !strcmp(method, "linear") || !strcmp(method, "slerp");
    res = 1;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(ja, "layers")) {
        if (cJSON_IsTrue(cJSON_GetObjectItem(x, "base")) && !base_counts)
            continue; /* mergekit ignores the base's parameters */
        bool found = false;
        cJSON_ArrayForEach(z, cJSON_GetObjectItem(jb, "layers"))
            if (row_key_eq(x, z)) {
                found = params_close(cJSON_GetObjectItem(x, "params"),
                                     cJSON_GetObjectItem(z, "params"));
                break;
            }
        if (!found)
            res = -1;
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
done:
    free(a);
    free(b);
    free(out_dir);
    free(yml);
    return res;
}

Test(report, rebuilt_recipe_explains_the_same, .timeout = 300)
{
    char *real = ms_test_shared("recipes/real");
    if (!real)
        cr_skip_test("../shared/fixtures is absent");
    DIR *dp = opendir(real);
    cr_assert_not_null(dp);
    struct dirent *de;
    int same = 0, skipped = 0;
    while ((de = readdir(dp))) {
        if (!ms_str_endswith(de->d_name, ".yml"))
            continue;
        char *src = ms_path_join(real, de->d_name), *dir = ms_test_tmpdir();
        int r = round_trip(src, dir);
        cr_assert_neq(r, -1, "the card's YAML for %s gives other per-layer values", src);
        same += r == 1;
        skipped += r == 0;
        free(src);
        free(dir);
    }
    closedir(dp);
    free(real);
    cr_assert_geq(same, 20, "only %d recipes rebuilt (%d not)", same, skipped);
}
