/*
 * cmd_compare.c - `mergescope compare A B [C ...]`: every pair of models,
 * per tensor, per layer and overall, in one pass over the files.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd_analyze_util.h"
#include "mergescope/analyze.h"
#include "mergescope/names.h"
#include "mergescope/banned.h"

static const char *const usage[] = {
    "mergescope compare [options] A B [C ...]",
    "",
    "Cosine similarity, relative L2 distance ||A-B||/||A||, max abs difference",
    "and identical fraction for every pair of models, per tensor, per layer",
    "(pooled over the layer's tensors) and overall. Any mix of safetensors and",
    "GGUF: tensors are matched by canonical name. Tensors present in only some",
    "models, or with different shapes, are listed.",
    NULL
};

static const char *reason_name(int r)
{
    return r == 0 ? "missing" : r == 1 ? "shape differs" : "cannot decode";
}

static cJSON *pair_json(const ms_compare_result *r, const ms_pair_figures *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "a", r->models[f->a]);
    cJSON_AddStringToObject(o, "b", r->models[f->b]);
    cJSON_AddNumberToObject(o, "a_index", (double)f->a);
    cJSON_AddNumberToObject(o, "b_index", (double)f->b);
    an_json_num(o, "cosine", f->cosine);
    an_json_num(o, "rel_l2", f->rel_l2);
    an_json_num(o, "l2", f->l2);
    an_json_num(o, "max_abs", f->max_abs);
    an_json_num(o, "identical", f->identical);
    if (!isfinite(f->cosine) || !isfinite(f->rel_l2))
        cJSON_AddStringToObject(o, "note", "a model's tensors are all zero here");
    return o;
}

static cJSON *pairs_json(const ms_compare_result *r, const ms_compare_scope *sc)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t p = 0; p < r->n_pairs; p++)
        cJSON_AddItemToArray(a, pair_json(r, &sc->pairs[p]));
    return a;
}

/* Layers ordered by decreasing rel_l2 of pair p (ties: lower layer). */
static size_t *rank_layers(const ms_compare_result *r, size_t p)
{
    size_t *ix = calloc(r->n_layers ? r->n_layers : 1, sizeof(size_t));
    if (!ix)
        return NULL;
    for (size_t i = 0; i < r->n_layers; i++)
        ix[i] = i;
    for (size_t i = 1; i < r->n_layers; i++)
        for (size_t j = i; j > 0; j--) {
            double a = r->layers[ix[j - 1]].pairs[p].rel_l2;
            double b = r->layers[ix[j]].pairs[p].rel_l2;
            if (!(b > a) || (isnan(a) && isnan(b)))
                break;
            size_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    return ix;
}

static cJSON *result_json(const ms_compare_result *r, long top)
{
    cJSON *root = ms_json_result_new("compare");
    cJSON *models = cJSON_AddArrayToObject(root, "models");
    for (size_t i = 0; i < r->n_models; i++) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "name", r->models[i]);
        cJSON_AddStringToObject(m, "format", r->formats[i]);
        cJSON_AddItemToArray(models, m);
    }
    cJSON_AddNumberToObject(root, "n_elements", (double)r->overall.n);
    cJSON_AddItemToObject(root, "pairs", pairs_json(r, &r->overall));
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    for (size_t l = 0; l < r->n_layers; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", r->layers[l].layer);
        cJSON_AddItemToObject(o, "pairs", pairs_json(r, &r->layers[l]));
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *most = cJSON_AddArrayToObject(root, "most_different");
    for (size_t p = 0; p < r->n_pairs; p++) {
        size_t *ix = rank_layers(r, p);
        for (size_t i = 0; ix && i < r->n_layers && (long)i < top; i++) {
            const ms_pair_figures *f = &r->layers[ix[i]].pairs[p];
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "a", r->models[f->a]);
            cJSON_AddStringToObject(o, "b", r->models[f->b]);
            cJSON_AddNumberToObject(o, "layer", r->layers[ix[i]].layer);
            an_json_num(o, "rel_l2", f->rel_l2);
            an_json_num(o, "cosine", f->cosine);
            cJSON_AddItemToArray(most, o);
        }
        free(ix);
    }
    cJSON *tensors = cJSON_AddArrayToObject(root, "tensors");
    for (size_t t = 0; t < r->n_tensors; t++) {
        const ms_compare_scope *sc = &r->tensors[t];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sc->name);
        if (sc->layer >= 0)
            cJSON_AddNumberToObject(o, "layer", sc->layer);
        else
            cJSON_AddNullToObject(o, "layer");
        cJSON_AddStringToObject(o, "filter", ms_filter_name((ms_filter)sc->filter));
        cJSON_AddNumberToObject(o, "n_elements", (double)sc->n);
        cJSON_AddItemToObject(o, "pairs", pairs_json(r, sc));
        cJSON_AddItemToArray(tensors, o);
    }
    cJSON *un = cJSON_AddArrayToObject(root, "unmatched");
    for (size_t i = 0; i < r->n_unmatched; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->unmatched[i].name);
        cJSON_AddStringToObject(o, "model", r->models[r->unmatched[i].model]);
        cJSON_AddStringToObject(o, "reason", reason_name(r->unmatched[i].reason));
        cJSON_AddItemToArray(un, o);
    }
    return root;
}

static void print_pair_row(const char *label, const ms_pair_figures *f)
{
    char c[32], rl[32], l2[32], mx[32], id[32];
    printf("  %-10s %12s %12s %12s %12s %10s\n", label,
           an_fmt(c, sizeof(c), "%.8f", f->cosine),
           an_fmt(rl, sizeof(rl), "%.6e", f->rel_l2),
           an_fmt(l2, sizeof(l2), "%.6f", f->l2),
           an_fmt(mx, sizeof(mx), "%.6e", f->max_abs),
           an_fmt(id, sizeof(id), "%.6f", f->identical));
}

static void print_header(void)
{
    printf("  %-10s %12s %12s %12s %12s %10s\n", "pair", "cosine", "rel_l2",
           "l2", "max_abs", "identical");
}

static void print_text(const ms_compare_result *r, long top, bool per_tensor)
{
    char lab[32];
    printf("compare: %zu models, %zu tensors matched, %zu unmatched\n",
           r->n_models, r->n_tensors, r->n_unmatched);
    for (size_t i = 0; i < r->n_models; i++)
        printf("  [%zu] %s (%s)\n", i, an_label(r->models[i]), r->formats[i]);
    printf("\noverall (%llu elements)\n", (unsigned long long)r->overall.n);
    print_header();
    for (size_t p = 0; p < r->n_pairs; p++) {
        snprintf(lab, sizeof(lab), "%zu-%zu", r->overall.pairs[p].a, r->overall.pairs[p].b);
        print_pair_row(lab, &r->overall.pairs[p]);
    }
    if (r->n_layers) {
        printf("\nper layer: cosine / rel_l2\n  %-6s", "layer");
        for (size_t p = 0; p < r->n_pairs; p++) {
            snprintf(lab, sizeof(lab), "%zu-%zu", r->overall.pairs[p].a, r->overall.pairs[p].b);
            printf(" %25s", lab);
        }
        printf("\n");
        for (size_t l = 0; l < r->n_layers; l++) {
            printf("  %-6d", r->layers[l].layer);
            for (size_t p = 0; p < r->n_pairs; p++) {
                char c[32], d[32];
                printf(" %12s %12s", an_fmt(c, sizeof(c), "%.8f", r->layers[l].pairs[p].cosine),
                       an_fmt(d, sizeof(d), "%.4e", r->layers[l].pairs[p].rel_l2));
            }
            printf("\n");
        }
        printf("\nlayers that differ most (rel_l2)\n");
        for (size_t p = 0; p < r->n_pairs; p++) {
            size_t *ix = rank_layers(r, p);
            printf("  %zu-%zu:", r->overall.pairs[p].a, r->overall.pairs[p].b);
            for (size_t i = 0; ix && i < r->n_layers && (long)i < top; i++) {
                char d[32];
                printf(" %d (%s)", r->layers[ix[i]].layer,
                       an_fmt(d, sizeof(d), "%.4e", r->layers[ix[i]].pairs[p].rel_l2));
            }
            printf("\n");
            free(ix);
        }
    }
    if (per_tensor) {
        printf("\nper tensor\n");
        for (size_t t = 0; t < r->n_tensors; t++) {
            printf("%s\n", r->tensors[t].name);
            for (size_t p = 0; p < r->n_pairs; p++) {
                snprintf(lab, sizeof(lab), "%zu-%zu", r->tensors[t].pairs[p].a,
                         r->tensors[t].pairs[p].b);
                print_pair_row(lab, &r->tensors[t].pairs[p]);
            }
        }
    }
    if (r->n_unmatched) {
        printf("\nunmatched tensors\n");
        for (size_t i = 0; i < r->n_unmatched; i++)
            printf("  %s: %s in [%zu]\n", r->unmatched[i].name,
                   reason_name(r->unmatched[i].reason), r->unmatched[i].model);
    }
}

int cmd_compare(int argc, char **argv)
{
    ms_common c;
    memset(&c, 0, sizeof(c));
    long top = 5;
    bool per_tensor = false;
    const ms_option opts[] = {
        MS_OPT_INT_(0, "top", &top, "N", "layers listed as differing most per pair (default 5)", 0, 100000),
        MS_OPT_BOOL_(0, "per-tensor", &per_tensor, "print the per-tensor table too"),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_
    };
    ms_strlist pos = {NULL, 0};
    int code = 0;
    if (ms_parse_options(argc, argv, opts, usage, &pos, &code))
        return code;
    if (pos.n < 2) {
        free(pos.items);
        return ms_die_usage("compare needs at least two models (see --help)");
    }
    ms_progress bar;
    ms_stream_opts so;
    ms_model **models = NULL;
    ms_progress_init(&bar, "compare", c.quiet);
    code = an_stream_opts(&c, &bar, &so);
    if (!code)
        code = an_open_models(&c, pos.items, pos.n, NULL, &models);
    if (code) {
        free(pos.items);
        return code;
    }
    ms_error err;
    ms_error_clear(&err);
    ms_compare_result *r = NULL;
    ms_status st = ms_compare_run((const ms_model *const *)models, pos.n, &so, &r, &err);
    ms_progress_finish(&bar);
    if (st) {
        code = ms_report_error(&err);
    } else {
        /* the full list is in the table and the JSON */
        for (size_t i = 0; i < r->n_unmatched && i < 10; i++)
            ms_warn("%s: %s in %s", r->unmatched[i].name,
                    reason_name(r->unmatched[i].reason),
                    r->models[r->unmatched[i].model]);
        if (r->n_unmatched > 10)
            ms_warn("and %zu more tensors not compared", r->n_unmatched - 10);
        cJSON *root = result_json(r, top);
        if (!root) {
            code = MS_EXIT_FAIL;
        } else {
            if (!(c.json && !strcmp(c.json, "-")))
                print_text(r, top, per_tensor);
            code = ms_write_json_result(&c, root);
            cJSON_Delete(root);
        }
    }
    ms_compare_result_free(r);
    an_close_models(models, pos.n);
    free(pos.items);
    return code;
}
