/*
 * fuzz_recipe.c - libFuzzer target: a mergekit recipe (YAML). An accepted
 * recipe is planned (every module), a bounded number of layers and tensors
 * is resolved for every input model, and it is written back unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_common.h"
#include "mergescope/recipe.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* Layers resolved per plan: the resolver's work per row does not depend on
 * the row, so a few rows cover it. */
#define FUZZ_MAX_ROWS 8

static const char *const row_tensors[] = {
    "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.mlp.down_proj.weight",
    "model.layers.%d.input_layernorm.weight",
};

static void resolve_row(const ms_recipe_plan *p, const ms_recipe_plan_layer *row,
                        const char *tensor, int out_layer)
{
    ms_recipe_params params;
    ms_error e;
    ms_error_clear(&e);
    (void)ms_recipe_resolve(p, p->stage->method, tensor, out_layer, MS_RECIPE_NONE, &params,
                            &e);
    for (size_t i = 0; i < row->n_inputs; i++) {
        MS_FUZZ_CHECK(row->inputs[i].model < p->stage->n_models);
        ms_error_clear(&e);
        (void)ms_recipe_resolve(p, p->stage->method, tensor, out_layer, row->inputs[i].model,
                                &params, &e);
    }
}

static void exercise_plan(const ms_recipe_plan *p)
{
    int rows = p->n_layers < FUZZ_MAX_ROWS ? p->n_layers : FUZZ_MAX_ROWS;
    for (int l = 0; l < rows; l++) {
        for (size_t k = 0; k < MS_ARRAY_SIZE(row_tensors); k++) {
            char name[96];
            snprintf(name, sizeof(name), row_tensors[k], l);
            const ms_recipe_plan_layer *row = ms_recipe_plan_row(p, name, l);
            MS_FUZZ_CHECK(row != NULL);
            resolve_row(p, row, name, l);
        }
    }
    const char *outer[] = {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"};
    for (size_t k = 0; k < MS_ARRAY_SIZE(outer); k++) {
        const ms_recipe_plan_layer *row = ms_recipe_plan_row(p, outer[k], -1);
        if (row)
            resolve_row(p, row, outer[k], -1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ms_recipe *r;
    ms_error e;
    ms_error_clear(&e);
    if (ms_recipe_parse((const char *)data, size, "fuzz.yml", &r, &e) != MS_OK) {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
        return 0;
    }
    for (size_t s = 0; s < r->n_stages; s++) {
        const ms_recipe_stage *st = &r->stages[s];
        for (size_t m = 0; m < st->n_modules; m++) {
            ms_recipe_plan *p;
            ms_error_clear(&e);
            if (ms_recipe_plan_build(st, m, 6, &p, &e) != MS_OK)
                continue;
            exercise_plan(p);
            ms_recipe_plan_free(p);
        }
    }
    char *text;
    size_t len;
    ms_error_clear(&e);
    if (ms_recipe_emit(r, NULL, 0, "fuzz", &text, &len, &e) == MS_OK)
        free(text);
    ms_recipe_free(r);
    return 0;
}
