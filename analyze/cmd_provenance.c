/*
 * cmd_provenance.c - `mergescope provenance MERGED DONOR...`: for each
 * layer of a (possibly stacked) merged model, the donor layer(s) it comes
 * from; the recovered slices as a mergekit recipe (--emit-recipe).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "cmd_analyze_util.h"
#include "mergescope/analyze.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static const char *const usage[] = {
    "mergescope provenance [options] MERGED DONOR...",
    "",
    "Sketches every layer of every model with a fixed random projection (one",
    "pass per model), matches each merged layer to the donor layers by cosine,",
    "and fits a blend of two donor layers where one does not explain it. Prints",
    "the layer map and the recovered mergekit slices.",
    NULL
};

static cJSON *result_json(const ms_provenance_result *r)
{
    cJSON *root = ms_json_result_new("provenance");
    cJSON_AddStringToObject(root, "merged", r->merged);
    cJSON *donors = cJSON_AddArrayToObject(root, "donors");
    for (size_t d = 0; d < r->n_donors; d++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", r->donors[d]);
        cJSON_AddNumberToObject(o, "n_layers", r->donor_layers[d]);
        cJSON_AddItemToArray(donors, o);
    }
    cJSON_AddNumberToObject(root, "sketch_dim", MS_SKETCH_DIM);
    cJSON *layers = cJSON_AddArrayToObject(root, "layers");
    size_t total = 0;
    for (size_t d = 0; d < r->n_donors; d++)
        total += (size_t)r->donor_layers[d];
    for (size_t l = 0; l < r->n_layers; l++) {
        const ms_prov_layer *pl = &r->layers[l];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", pl->layer);
        cJSON *src = cJSON_AddArrayToObject(o, "sources");
        for (size_t k = 0; k < pl->n_src; k++) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "model", r->donors[pl->src[k].model]);
            cJSON_AddNumberToObject(s, "layer", pl->src[k].layer);
            an_json_num(s, "weight", pl->src[k].weight);
            an_json_num(s, "cosine", pl->src[k].cosine);
            cJSON_AddItemToArray(src, s);
        }
        cJSON_AddStringToObject(o, "match", pl->n_src == 0 ? "none"
                                : pl->n_src == 2 ? "blend" : pl->exact ? "copy" : "nearest");
        an_json_num(o, "residual", pl->n_src ? pl->residual : NAN);
        cJSON_AddBoolToObject(o, "confirmed", pl->confirmed);
        cJSON *cos = cJSON_AddArrayToObject(o, "cosine");
        for (size_t j = 0; j < total; j++) {
            double v = r->cosine[l * total + j];
            cJSON_AddItemToArray(cos, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
        }
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *slices = cJSON_AddArrayToObject(root, "slices");
    for (size_t i = 0; i < r->n_slices; i++) {
        const ms_prov_slice *s = &r->slices[i];
        cJSON *o = cJSON_CreateObject();
        cJSON *out = cJSON_AddArrayToObject(o, "out_layers");
        cJSON_AddItemToArray(out, cJSON_CreateNumber(s->out_start));
        cJSON_AddItemToArray(out, cJSON_CreateNumber(s->out_end));
        cJSON *src = cJSON_AddArrayToObject(o, "sources");
        for (size_t k = 0; k < s->n_src; k++) {
            cJSON *so = cJSON_CreateObject();
            cJSON_AddStringToObject(so, "model", r->donors[s->model[k]]);
            cJSON *lr = cJSON_AddArrayToObject(so, "layer_range");
            cJSON_AddItemToArray(lr, cJSON_CreateNumber(s->start[k]));
            cJSON_AddItemToArray(lr, cJSON_CreateNumber(s->start[k] + s->out_end - s->out_start));
            cJSON_AddNumberToObject(so, "weight", s->weight[k]);
            cJSON_AddItemToArray(src, so);
        }
        cJSON_AddItemToArray(slices, o);
    }
    cJSON_AddStringToObject(root, "recipe", r->recipe);
    return root;
}

static void print_text(const ms_provenance_result *r)
{
    printf("provenance: %s, %zu layers, %zu donors\n", an_label(r->merged),
           r->n_layers, r->n_donors);
    for (size_t d = 0; d < r->n_donors; d++)
        printf("  d%zu %s (%d layers)\n", d, an_label(r->donors[d]), r->donor_layers[d]);
    printf("\n  %-6s %-8s %-28s %-18s %s\n", "layer", "match", "source", "weight", "cosine");
    for (size_t l = 0; l < r->n_layers; l++) {
        const ms_prov_layer *pl = &r->layers[l];
        char src[64], w[48], cs[48];
        if (pl->n_src == 0) {
            printf("  %-6d %-8s\n", pl->layer, "none");
            continue;
        }
        if (pl->n_src == 1) {
            snprintf(src, sizeof(src), "d%zu:%d", pl->src[0].model, pl->src[0].layer);
            snprintf(w, sizeof(w), "%.4f", pl->src[0].weight);
            snprintf(cs, sizeof(cs), "%.6f", pl->src[0].cosine);
        } else {
            snprintf(src, sizeof(src), "d%zu:%d + d%zu:%d", pl->src[0].model,
                     pl->src[0].layer, pl->src[1].model, pl->src[1].layer);
            snprintf(w, sizeof(w), "%.4f + %.4f", pl->src[0].weight, pl->src[1].weight);
            snprintf(cs, sizeof(cs), "%.6f %.6f", pl->src[0].cosine, pl->src[1].cosine);
        }
        printf("  %-6d %-8s %-28s %-18s %s\n", pl->layer,
               pl->n_src == 2 ? "blend" : pl->exact ? "copy" : "nearest", src, w, cs);
    }
    printf("\nslices\n");
    for (size_t i = 0; i < r->n_slices; i++) {
        const ms_prov_slice *s = &r->slices[i];
        printf("  [%d, %d)", s->out_start, s->out_end);
        for (size_t k = 0; k < s->n_src; k++)
            printf("%s d%zu [%d, %d)", k ? " +" : " <-", s->model[k], s->start[k],
                   s->start[k] + s->out_end - s->out_start);
        printf("\n");
    }
}

int cmd_provenance(int argc, char **argv)
{
    ms_common c;
    memset(&c, 0, sizeof(c));
    const char *emit = NULL;
    const ms_option opts[] = {
        MS_OPT_STRING_(0, "emit-recipe", &emit, "OUT.yml", "write the recovered slices as a mergekit recipe"),
        MS_COMMON_OPTIONS(&c),
        MS_OPT_END_
    };
    ms_strlist pos = {NULL, 0};
    int code = 0;
    if (ms_parse_options(argc, argv, opts, usage, &pos, &code))
        return code;
    if (pos.n < 2) {
        free(pos.items);
        return ms_die_usage("provenance needs MERGED and at least one DONOR (see --help)");
    }
    ms_progress bar;
    ms_stream_opts so;
    ms_model **m = NULL;
    ms_progress_init(&bar, "provenance", c.quiet);
    code = an_stream_opts(&c, &bar, &so);
    if (!code)
        code = an_open_models(&c, pos.items, pos.n, NULL, &m);
    if (code) {
        free(pos.items);
        return code;
    }
    ms_error err;
    ms_error_clear(&err);
    ms_provenance_result *r = NULL;
    if (ms_provenance_run(m[0], (const ms_model *const *)m + 1, pos.n - 1, &so, &r, &err))
        code = ms_report_error(&err);
    ms_progress_finish(&bar);
    if (!code) {
        if (!(c.json && !strcmp(c.json, "-")))
            print_text(r);
        if (emit) {
            ms_error_clear(&err);
            if (ms_write_file_atomic(emit, r->recipe, strlen(r->recipe), &err))
                code = ms_report_error(&err);
        }
        cJSON *root = result_json(r);
        if (!code)
            code = ms_write_json_result(&c, root);
        cJSON_Delete(root);
    }
    ms_provenance_result_free(r);
    an_close_models(m, pos.n);
    free(pos.items);
    return code;
}
