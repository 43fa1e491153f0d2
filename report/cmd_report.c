/*
 * cmd_report.c - `mergescope report RESULT.json... -o DIR`: the JSON results
 * of the other commands into DIR/report.md, DIR/report.html, DIR/plots/ and
 * DIR/MODEL_CARD.md.
 */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "mergescope/report.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const usage[] = {
    "mergescope report RESULT.json... -o DIR",
    NULL,
};

/* What was written, for --json: the directory, the inputs and the plots. */
static int write_json(const ms_common *c, const ms_report *r, const char *dir,
                      const ms_report_outcome *oc)
{
    cJSON *root = ms_json_result_new("report");
    if (!root)
        return ms_die_usage("out of memory");
    cJSON_AddStringToObject(root, "dir", dir);
    cJSON *in = cJSON_AddObjectToObject(root, "inputs");
    for (int k = 0; k < MS_RK_COUNT; k++)
        if (ms_report_count(r, (ms_report_kind)k))
            cJSON_AddNumberToObject(in, ms_report_kind_name((ms_report_kind)k),
                                    (double)ms_report_count(r, (ms_report_kind)k));
    cJSON *out = cJSON_AddArrayToObject(root, "outputs");
    static const char *const files[] = {"report.html", "report.md", "MODEL_CARD.md"};
    for (size_t i = 0; i < MS_ARRAY_SIZE(files); i++)
        cJSON_AddItemToArray(out, cJSON_CreateString(files[i]));
    cJSON *pl = cJSON_AddObjectToObject(root, "plots");
    cJSON_AddNumberToObject(pl, "written", oc->n_plots);
    cJSON_AddNumberToObject(pl, "rendered", oc->n_rendered);
    cJSON_AddStringToObject(pl, "gnuplot", oc->gnuplot_missing  ? "missing"
                                           : oc->gnuplot_failed ? "failed"
                                                                : "ok");
    int rc = ms_write_json_result(c, root);
    cJSON_Delete(root);
    return rc;
}

static void print_summary(const ms_report *r, const char *dir, const ms_report_outcome *oc)
{
    printf("%-12s %s\n", "result", "count");
    for (int k = 0; k < MS_RK_COUNT; k++)
        if (ms_report_count(r, (ms_report_kind)k))
            printf("%-12s %zu\n", ms_report_kind_name((ms_report_kind)k),
                   ms_report_count(r, (ms_report_kind)k));
    printf("report: %s/report.html\n", dir);
    printf("report: %s/report.md\n", dir);
    printf("model card: %s/MODEL_CARD.md\n", dir);
    printf("plots: %d written, %d rendered\n", oc->n_plots, oc->n_rendered);
}

int cmd_report(int argc, char **argv)
{
    const char *out_dir = NULL, *gnuplot = NULL;
    ms_common c = {0};
    ms_strlist pos = {0};
    int code;
    const ms_option opts[] = {
        MS_OPT_STRING_('o', "output", &out_dir, "DIR",
                       "write the report into DIR (created if missing)"),
        MS_OPT_STRING_(0, "gnuplot", &gnuplot, "PROG",
                       "gnuplot program to run (default: gnuplot on PATH)"),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_,
    };
    if (ms_parse_options(argc, argv, opts, usage, &pos, &code)) {
        free(pos.items);
        return code;
    }
    if (!out_dir || !pos.n) {
        free(pos.items);
        ms_usage(stderr, opts, usage);
        return ms_die_usage(!out_dir ? "report needs -o DIR"
                                     : "report needs at least one RESULT.json");
    }
    ms_error err;
    ms_error_clear(&err);
    ms_report *r = ms_report_new();
    ms_status st = r ? MS_OK : ms_error_set(&err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < pos.n && !st; i++)
        st = ms_report_add_file(r, pos.items[i], &err);
    ms_report_opts ro = {gnuplot};
    ms_report_outcome oc;
    if (!st)
        st = ms_report_write(r, out_dir, &ro, &oc, &err);
    free(pos.items);
    if (st) {
        ms_report_free(r);
        return ms_report_error(&err);
    }
    if (oc.gnuplot_missing)
        ms_warn("gnuplot not found: %d plot scripts left in %s/plots (run 'gnuplot NAME.gp' "
                "there to render them)", oc.n_plots, out_dir);
    else if (oc.gnuplot_failed)
        ms_warn("gnuplot failed on plot '%s': %d of %d plots rendered", oc.failed_plot,
                oc.n_rendered, oc.n_plots);
    bool json_stdout = c.json && c.json[0] == '-' && !c.json[1];
    if (!c.quiet && !json_stdout)
        print_summary(r, out_dir, &oc);
    int rc = write_json(&c, r, out_dir, &oc);
    ms_report_free(r);
    return rc;
}
