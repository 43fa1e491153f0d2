/*
 * fuzz_config.c - libFuzzer target: config.json, read the way a user's
 * model directory is opened (ms_model_open on a folder holding the input
 * as config.json beside a small valid model.safetensors).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static char g_dir[64];
static char g_config[128];

static void cleanup(void)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/model.safetensors", g_dir);
    unlink(p);
    unlink(g_config);
    rmdir(g_dir);
}

/* A two-layer llama-shaped model with f32 tensors of 4 x 4. */
static void write_model(void)
{
    static const char *const names[] = {
        "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.self_attn.k_proj.weight", "model.norm.weight",
    };
    char header[1024];
    size_t n = 0;
    n += (size_t)snprintf(header + n, sizeof(header) - n, "{");
    for (size_t i = 0; i < MS_ARRAY_SIZE(names); i++)
        n += (size_t)snprintf(header + n, sizeof(header) - n,
                              "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[4,4],"
                              "\"data_offsets\":[%zu,%zu]}", i ? "," : "", names[i],
                              i * 64, i * 64 + 64);
    n += (size_t)snprintf(header + n, sizeof(header) - n, "}");
    uint8_t file[8 + 1024 + 256];
    uint64_t hl = n;
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)(hl >> (8 * i));
    memcpy(file + 8, header, n);
    memset(file + 8 + n, 0, 256);
    char p[160];
    snprintf(p, sizeof(p), "%s/model.safetensors", g_dir);
    FILE *fp = fopen(p, "wb");
    MS_FUZZ_CHECK(fp && fwrite(file, 1, 8 + n + 256, fp) == 8 + n + 256);
    fclose(fp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ms-fuzz-config-XXXXXX");
    MS_FUZZ_CHECK(mkdtemp(g_dir) != NULL);
    snprintf(g_config, sizeof(g_config), "%s/config.json", g_dir);
    write_model();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *fp = fopen(g_config, "wb");
    MS_FUZZ_CHECK(fp != NULL);
    MS_FUZZ_CHECK(fwrite(data, 1, size, fp) == size);
    fclose(fp);
    ms_model *m;
    ms_error e;
    ms_error_clear(&e);
    if (ms_model_open(g_dir, &m, &e) == MS_OK) {
        MS_FUZZ_CHECK(m->n_tensors == 4);
        MS_FUZZ_CHECK(m->n_layers >= 2);
        ms_model_close(m);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    }
    return 0;
}
