/*
 * cmd_quant.c - `mergescope quant`: quantization error per tensor, per
 * ggml type and per layer against the source; `--plan` writes per-tensor
 * types for llama-quantize; `--check-plan` checks a GGUF against a plan.
 *
 * MODEL is a GGUF of any mix of types or a safetensors checkpoint; SRC its
 * higher-precision source. Tensors are matched by canonical name (GGUF Q/K
 * permutation undone); unmatched ones are listed. POLICY is a preset
 * (mixed, imatrix) or KEY=VALUE,... (quant.h, ms_plan_policy_parse).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd_analyze_util.h"
#include "mergescope/imatrix.h"
#include "mergescope/names.h"
#include "mergescope/quant.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const usage[] = {
    "mergescope quant [options] MODEL --reference SRC [--imatrix F]",
    "mergescope quant [options] SRC --plan POLICY [--imatrix F] [--plan-file OUT]",
    "mergescope quant [options] --check-plan FILE MODEL",
    NULL
};

static const char *reason_name(int r)
{
    static const char *const names[] = {"not in reference", "shape differs",
                                        "cannot decode", "not in model"};
    return r >= 0 && r < 4 ? names[r] : "unknown";
}

/* ==== JSON ==== */

static void figures_json(cJSON *o, const ms_quant_figures *f, bool weighted)
{
    an_json_num(o, "rmse", f->rmse);
    an_json_num(o, "rel_rmse", f->rel_rmse);
    an_json_num(o, "snr_db", f->snr_db);
    an_json_num(o, "cosine", f->cosine);
    an_json_num(o, "max_abs", f->max_abs);
    an_json_num(o, "weighted_rel_err", f->weighted_rel_err);
    if (f->rmse == 0)
        cJSON_AddStringToObject(o, "note", "exact: no error, so no SNR");
    else if (!weighted)
        cJSON_AddStringToObject(o, "note", "no importance weights for this tensor");
    else if (!isfinite(f->rel_rmse) || !isfinite(f->cosine))
        cJSON_AddStringToObject(o, "note", "the source is all zeros here");
}

static void group_json(cJSON *o, const ms_quant_group *g)
{
    cJSON_AddNumberToObject(o, "n_tensors", (double)g->n_tensors);
    cJSON_AddNumberToObject(o, "n_params", (double)g->n_params);
    cJSON_AddNumberToObject(o, "bytes", (double)g->bytes);
    an_json_num(o, "share", g->share);
    an_json_num(o, "bpw", g->bpw);
    figures_json(o, &g->fig, g->sums.wn > 0);
}

/* The model-card line: "IQ4_NL 45.4%, IQ3_S 36.3%, ...". */
static char *type_mix(const ms_quant_result *r)
{
    ms_sb sb = MS_SB_INIT;
    for (size_t i = 0; i < r->n_types; i++)
        ms_sb_addf(&sb, "%s%s %.1f%%", i ? ", " : "", ms_dtype_name(r->types[i].type),
                   100.0 * r->types[i].share);
    return ms_sb_detach(&sb);
}

/* Compared tensors by decreasing rel_rmse (ties: model order). */
static size_t *rank_tensors(const ms_quant_result *r)
{
    size_t *ix = ms_alloc_array(r->n_tensors ? r->n_tensors : 1, sizeof(size_t));
    if (!ix)
        return NULL;
    for (size_t i = 0; i < r->n_tensors; i++)
        ix[i] = i;
    for (size_t i = 1; i < r->n_tensors; i++)
        for (size_t j = i; j > 0; j--) {
            double a = r->tensors[ix[j - 1]].fig.rel_rmse, b = r->tensors[ix[j]].fig.rel_rmse;
            if (!(b > a || (isnan(a) && !isnan(b))))
                break;
            size_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    return ix;
}

static cJSON *tensor_json(const ms_quant_tensor *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "source_name", t->source_name);
    if (t->layer >= 0)
        cJSON_AddNumberToObject(o, "layer", t->layer);
    else
        cJSON_AddNullToObject(o, "layer");
    cJSON_AddStringToObject(o, "kind", ms_kind_name(t->kind));
    cJSON_AddStringToObject(o, "type", ms_dtype_name(t->type));
    cJSON_AddNumberToObject(o, "n_params", (double)t->n_params);
    cJSON_AddNumberToObject(o, "bytes", (double)t->bytes);
    an_json_num(o, "bpw", t->bpw);
    figures_json(o, &t->fig, t->weighted);
    return o;
}

static cJSON *result_json(const ms_quant_result *r, long top)
{
    cJSON *root = ms_json_result_new("quant");
    cJSON_AddStringToObject(root, "model", r->model);
    cJSON_AddStringToObject(root, "model_format", r->model_format);
    cJSON_AddStringToObject(root, "reference", r->reference);
    cJSON_AddStringToObject(root, "reference_format", r->reference_format);
    if (r->imatrix)
        cJSON_AddStringToObject(root, "imatrix", r->imatrix);
    else
        cJSON_AddNullToObject(root, "imatrix");
    cJSON_AddNumberToObject(root, "n_params", (double)r->n_params);
    cJSON_AddNumberToObject(root, "bytes", (double)r->bytes);
    an_json_num(root, "bits_per_weight", r->bits_per_weight);
    char *mix = type_mix(r);
    cJSON_AddStringToObject(root, "type_mix", mix ? mix : "");
    free(mix);
    cJSON *overall = cJSON_AddObjectToObject(root, "overall");
    group_json(overall, &r->overall);
    cJSON *types = cJSON_AddArrayToObject(root, "types");
    for (size_t i = 0; i < r->n_types; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "type", ms_dtype_name(r->types[i].type));
        group_json(o, &r->types[i]);
        cJSON_AddItemToArray(types, o);
    }
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (size_t i = 0; i < r->n_layers; i++) {
        cJSON *o = cJSON_CreateObject();
        if (r->layers[i].layer < 0)
            cJSON_AddNullToObject(o, "layer");
        else
            cJSON_AddNumberToObject(o, "layer", r->layers[i].layer);
        group_json(o, &r->layers[i]);
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
    for (size_t i = 0; i < r->n_tensors; i++)
        cJSON_AddItemToArray(tensors, tensor_json(&r->tensors[i]));
    cJSON *worst = cJSON_AddArrayToObject(root, "worst");
    size_t *ix = rank_tensors(r);
    for (size_t i = 0; ix && i < r->n_tensors && (long)i < top; i++)
        cJSON_AddItemToArray(worst, cJSON_CreateString(r->tensors[ix[i]].name));
    free(ix);
    cJSON *un = cJSON_AddArrayToObject(root, "unmatched");
    for (size_t i = 0; i < r->n_unmatched; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->unmatched[i].name);
        cJSON_AddStringToObject(o, "reason", reason_name(r->unmatched[i].reason));
        cJSON_AddItemToArray(un, o);
    }
    return root;
}

/* ==== text ==== */

static void print_fig_header(const char *first, int width)
{
    printf("  %-*s %8s %10s %6s %11s %11s %8s %10s %11s\n", width, first, "tensors",
           "params", "share", "bpw", "rel_rmse", "snr_db", "cosine", "weighted");
}

static void print_group(const char *label, int width, const ms_quant_group *g)
{
    char a[32], b[32], c[32], d[32], e[32];
    printf("  %-*s %8zu %10llu %5.1f%% %11s %11s %8s %10s %11s\n", width, label, g->n_tensors,
           (unsigned long long)g->n_params, 100.0 * g->share, an_fmt(a, sizeof(a), "%.4f", g->bpw),
           an_fmt(b, sizeof(b), "%.4e", g->fig.rel_rmse), an_fmt(c, sizeof(c), "%.2f", g->fig.snr_db),
           an_fmt(d, sizeof(d), "%.6f", g->fig.cosine),
           an_fmt(e, sizeof(e), "%.4e", g->fig.weighted_rel_err));
}

static void print_tensor(const ms_quant_tensor *t)
{
    char a[32], b[32], c[32], d[32], e[32];
    printf("  %-44s %-8s %7.4f %11s %8s %10s %11s %11s\n", t->name, ms_dtype_name(t->type),
           t->bpw, an_fmt(a, sizeof(a), "%.4e", t->fig.rel_rmse),
           an_fmt(b, sizeof(b), "%.2f", t->fig.snr_db), an_fmt(c, sizeof(c), "%.6f", t->fig.cosine),
           an_fmt(d, sizeof(d), "%.4e", t->fig.max_abs),
           an_fmt(e, sizeof(e), "%.4e", t->fig.weighted_rel_err));
}

static void print_tensor_header(void)
{
    printf("  %-44s %-8s %7s %11s %8s %10s %11s %11s\n", "tensor", "type", "bpw", "rel_rmse",
           "snr_db", "cosine", "max_abs", "weighted");
}

static void print_text(const ms_quant_result *r, long top, bool per_tensor)
{
    char *mix = type_mix(r);
    printf("quant: %s (%s) against %s (%s)\n", an_label(r->model), r->model_format,
           an_label(r->reference), r->reference_format);
    if (r->imatrix)
        printf("importance matrix: %s\n", an_label(r->imatrix));
    printf("%zu tensors compared, %zu unmatched; %llu parameters, %.4f bits per weight\n",
           r->n_tensors, r->n_unmatched, (unsigned long long)r->n_params, r->bits_per_weight);
    printf("type mix: %s\n\nper type\n", mix ? mix : "");
    free(mix);
    print_fig_header("type", 8);
    for (size_t i = 0; i < r->n_types; i++)
        print_group(ms_dtype_name(r->types[i].type), 8, &r->types[i]);
    print_group("all", 8, &r->overall);
    printf("\nper layer\n");
    print_fig_header("layer", 8);
    for (size_t i = 0; i < r->n_layers; i++) {
        char lab[16];
        snprintf(lab, sizeof(lab), "%d", r->layers[i].layer);
        print_group(r->layers[i].layer < 0 ? "-" : lab, 8, &r->layers[i]);
    }
    printf("\nworst tensors (relative RMSE)\n");
    print_tensor_header();
    size_t *ix = rank_tensors(r);
    for (size_t i = 0; ix && i < r->n_tensors && (long)i < top; i++)
        print_tensor(&r->tensors[ix[i]]);
    free(ix);
    if (per_tensor) {
        printf("\nper tensor\n");
        print_tensor_header();
        for (size_t i = 0; i < r->n_tensors; i++)
            print_tensor(&r->tensors[i]);
    }
    if (r->n_unmatched) {
        printf("\nunmatched tensors\n");
        for (size_t i = 0; i < r->n_unmatched; i++)
            printf("  %s: %s\n", r->unmatched[i].name, reason_name(r->unmatched[i].reason));
    }
}

/* ==== modes ==== */

typedef struct quant_args {
    ms_common c;
    const char *reference, *imatrix, *plan, *plan_file, *check_plan;
    long top;
    bool per_tensor;
} quant_args;

static int load_imatrix(const quant_args *a, ms_imatrix **im)
{
    *im = NULL;
    if (!a->imatrix)
        return 0;
    ms_error err;
    ms_error_clear(&err);
    return ms_imatrix_load(a->imatrix, im, &err) ? ms_report_error(&err) : 0;
}

static int run_compare(const quant_args *a, const char *model_name)
{
    const char *names[2] = {model_name, a->reference};
    ms_model **models = NULL;
    ms_imatrix *im = NULL;
    ms_progress bar;
    ms_stream_opts so;
    ms_progress_init(&bar, "quant", a->c.quiet);
    int code = an_stream_opts(&a->c, &bar, &so);
    if (!code)
        code = load_imatrix(a, &im);
    if (!code)
        code = an_open_models(&a->c, names, 2, NULL, &models);
    if (code) {
        ms_imatrix_free(im);
        return code;
    }
    ms_error err;
    ms_error_clear(&err);
    ms_quant_result *r = NULL;
    ms_status st = ms_quant_run(models[0], models[1], im, &so, &r, &err);
    ms_progress_finish(&bar);
    if (st) {
        code = ms_report_error(&err);
    } else {
        for (size_t i = 0; i < r->n_unmatched; i++)
            ms_warn("%s: %s", r->unmatched[i].name, reason_name(r->unmatched[i].reason));
        cJSON *root = result_json(r, a->top);
        if (!(a->c.json && !strcmp(a->c.json, "-")))
            print_text(r, a->top, a->per_tensor);
        code = root ? ms_write_json_result(&a->c, root) : MS_EXIT_FAIL;
        cJSON_Delete(root);
    }
    ms_quant_result_free(r);
    ms_imatrix_free(im);
    an_close_models(models, 2);
    return code;
}

static cJSON *plan_json(const ms_plan *pl, const char *policy, const char *args,
                        const char *file, const char *cmd)
{
    cJSON *root = ms_json_result_new("quant");
    cJSON *o = cJSON_AddObjectToObject(root, "plan");
    cJSON_AddStringToObject(o, "policy", policy);
    an_json_num(o, "bits_per_weight", pl->bits_per_weight);
    cJSON_AddNumberToObject(o, "n_params", (double)pl->n_params);
    cJSON_AddNumberToObject(o, "bytes", (double)pl->bytes);
    cJSON_AddStringToObject(o, "args", args);
    cJSON_AddStringToObject(o, "tensor_type_file", file);
    cJSON_AddStringToObject(o, "command", cmd);
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < pl->n_entries; i++) {
        const ms_plan_entry *e = &pl->entries[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", e->name);
        cJSON_AddStringToObject(t, "gguf_name", e->gguf_name);
        cJSON_AddStringToObject(t, "type", ms_dtype_name(e->type));
        cJSON_AddBoolToObject(t, "quantized", e->quantized);
        cJSON_AddBoolToObject(t, "promoted", e->promoted);
        an_json_num(t, "score", e->score);
        cJSON_AddNumberToObject(t, "n_params", (double)e->n_params);
        cJSON_AddItemToArray(ts, t);
    }
    return root;
}

static void print_plan(const ms_plan *pl, const char *args, const char *cmd, const char *src)
{
    printf("quant plan for %s: %.4f bits per weight predicted (%llu parameters)\n",
           an_label(src), pl->bits_per_weight, (unsigned long long)pl->n_params);
    printf("  %-44s %-26s %-8s %s\n", "tensor", "gguf name", "type", "score");
    for (size_t i = 0; i < pl->n_entries; i++) {
        const ms_plan_entry *e = &pl->entries[i];
        char sc[32];
        printf("  %-44s %-26s %-8s %s%s\n", e->name, e->gguf_name, ms_dtype_name(e->type),
               an_fmt(sc, sizeof(sc), "%.6e", e->score), e->promoted ? " promoted" : "");
    }
    printf("\nllama-quantize arguments:\n%s", args);
    printf("\nor, with the plan written by --plan-file PLAN:\n%s\n", cmd ? cmd : "");
}

static int run_plan(const quant_args *a, const char *src_name)
{
    ms_error err;
    ms_error_clear(&err);
    ms_plan_policy pol;
    if (ms_plan_policy_parse(a->plan, &pol, &err))
        return ms_report_error(&err);
    ms_model **models = NULL;
    ms_imatrix *im = NULL;
    int code = load_imatrix(a, &im);
    if (!code)
        code = an_open_models(&a->c, &src_name, 1, NULL, &models);
    if (code) {
        ms_imatrix_free(im);
        return code;
    }
    ms_plan *pl = NULL;
    char *args = NULL;
    if (ms_plan_make(models[0], &pol, im, NULL, &pl, &err)) {
        code = ms_report_error(&err);
    } else if (!(args = ms_plan_format_args(pl))) {
        code = MS_EXIT_FAIL;
    } else {
        char *file = ms_plan_format_file(pl), *cmd = ms_plan_format_command(pl, im != NULL);
        if (!file || !cmd)
            code = MS_EXIT_FAIL;
        else if (a->plan_file && ms_write_file_atomic(a->plan_file, file, strlen(file), &err))
            code = ms_report_error(&err);
        if (!code && !(a->c.json && !strcmp(a->c.json, "-")))
            print_plan(pl, args, cmd, src_name);
        cJSON *root = code ? NULL : plan_json(pl, a->plan, args, file, cmd);
        free(file);
        free(cmd);
        if (root)
            code = ms_write_json_result(&a->c, root);
        cJSON_Delete(root);
    }
    free(args);
    ms_plan_free(pl);
    ms_imatrix_free(im);
    an_close_models(models, 1);
    return code;
}

static const char *const check_status[] = {"follows", "departs", "not covered"};

static void print_check(const ms_plan_check *c, const char *model)
{
    printf("plan check of %s: %zu follow, %zu depart, %zu not covered\n", an_label(model),
           c->n_follow, c->n_depart, c->n_uncovered);
    printf("  %-32s %-9s %-9s %s\n", "tensor", "expected", "found", "status");
    for (size_t i = 0; i < c->n_rows; i++) {
        const ms_plan_check_row *r = &c->rows[i];
        printf("  %-32s %-9s %-9s %s\n", r->gguf_name,
               r->expected ? ms_dtype_name(r->expected) : "-", ms_dtype_name(r->found),
               check_status[r->status]);
    }
    printf("%s\n", c->n_depart ? "the model departs from the plan" : "the model follows the plan");
}

static cJSON *check_json(const ms_plan_check *c, const char *plan, const char *model)
{
    cJSON *root = ms_json_result_new("quant");
    cJSON *o = cJSON_AddObjectToObject(root, "plan_check");
    cJSON_AddStringToObject(o, "plan", plan);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddBoolToObject(o, "follows", c->n_depart == 0);
    cJSON_AddNumberToObject(o, "n_follow", (double)c->n_follow);
    cJSON_AddNumberToObject(o, "n_depart", (double)c->n_depart);
    cJSON_AddNumberToObject(o, "n_not_covered", (double)c->n_uncovered);
    cJSON *ts = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < c->n_rows; i++) {
        const ms_plan_check_row *r = &c->rows[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "name", r->gguf_name);
        if (r->expected)
            cJSON_AddStringToObject(t, "expected", ms_dtype_name(r->expected));
        else
            cJSON_AddNullToObject(t, "expected");
        cJSON_AddStringToObject(t, "found", ms_dtype_name(r->found));
        cJSON_AddStringToObject(t, "status", check_status[r->status]);
        cJSON_AddItemToArray(ts, t);
    }
    return root;
}

static int run_check(const quant_args *a, const char *model_name)
{
    ms_error err;
    ms_error_clear(&err);
    char *text = NULL;
    size_t len;
    if (ms_read_file(a->check_plan, 16u << 20, &text, &len, &err))
        return ms_report_error(&err);
    ms_model **models = NULL;
    int code = an_open_models(&a->c, &model_name, 1, NULL, &models);
    if (code) {
        free(text);
        return code;
    }
    ms_plan_check *c = NULL;
    if (ms_plan_check_run(text, a->check_plan, models[0], &c, &err)) {
        code = ms_report_error(&err);
    } else {
        if (!(a->c.json && !strcmp(a->c.json, "-")))
            print_check(c, model_name);
        cJSON *root = check_json(c, a->check_plan, model_name);
        code = ms_write_json_result(&a->c, root);
        cJSON_Delete(root);
    }
    ms_plan_check_free(c);
    an_close_models(models, 1);
    free(text);
    return code;
}

int cmd_quant(int argc, char **argv)
{
    quant_args a;
    memset(&a, 0, sizeof(a));
    a.top = 10;
    const ms_option opts[] = {
        MS_OPT_STRING_('r', "reference", &a.reference, "SRC", "the higher-precision source"),
        MS_OPT_STRING_(0, "imatrix", &a.imatrix, "F", "importance matrix (GGUF or legacy .dat)"),
        MS_OPT_INT_(0, "top", &a.top, "N", "worst tensors listed (default 10)", 0, 1000000),
        MS_OPT_BOOL_(0, "per-tensor", &a.per_tensor, "print every tensor too"),
        MS_OPT_GROUP_("plans"),
        MS_OPT_STRING_(0, "plan", &a.plan, "POLICY",
                       "plan per-tensor types for llama-quantize from SRC: a preset (mixed, "
                       "imatrix) or KEY=VALUE,... with base, embed, output, attn, ffn, promote "
                       "(ggml types), top (fraction of FFN matrices promoted), rank (mean_abs "
                       "or imatrix)"),
        MS_OPT_STRING_(0, "plan-file", &a.plan_file, "OUT", "also write the plan as a llama-quantize --tensor-type-file"),
        MS_OPT_STRING_(0, "check-plan", &a.check_plan, "FILE", "check MODEL against a plan file"),
        MS_COMMON_OPTIONS(&a.c),
        MS_OPT_END_
    };
    ms_strlist pos = {NULL, 0};
    int code = 0;
    if (ms_parse_options(argc, argv, opts, usage, &pos, &code))
        return code;
    int modes = (a.reference != NULL) + (a.plan != NULL) + (a.check_plan != NULL);
    if (pos.n != 1 || modes != 1) {
        free(pos.items);
        return ms_die_usage("quant needs one MODEL and exactly one of --reference, "
                            "--plan or --check-plan (see --help)");
    }
    if (a.plan)
        code = run_plan(&a, pos.items[0]);
    else if (a.check_plan)
        code = run_check(&a, pos.items[0]);
    else
        code = run_compare(&a, pos.items[0]);
    free(pos.items);
    return code;
}
