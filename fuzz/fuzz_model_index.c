/*
 * fuzz_model_index.c - libFuzzer target: model.safetensors.index.json in a
 * model directory with two real shards beside it and a decoy shard one
 * level up, opened as users open sharded checkpoints (ms_model_open on the
 * directory). An accepted model must only have opened files inside its
 * directory, and every tensor must lie inside its shard.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

static char g_top[64];
static char g_dir[128];
static char g_index[192];

static const char *const g_shards[][3] = {
    {"model-00001-of-00002.safetensors", "model.embed_tokens.weight",
     "model.layers.0.self_attn.q_proj.weight"},
    {"model-00002-of-00002.safetensors", "model.layers.1.mlp.down_proj.weight",
     "model.norm.weight"},
    {"../outside.safetensors", "model.layers.0.mlp.up_proj.weight", "lm_head.weight"},
};

static void shard_path(size_t i, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", g_dir, g_shards[i][0]);
}

static void cleanup(void)
{
    char p[256];
    for (size_t i = 0; i < MS_ARRAY_SIZE(g_shards); i++) {
        shard_path(i, p, sizeof(p));
        unlink(p);
    }
    unlink(g_index);
    rmdir(g_dir);
    rmdir(g_top);
}

/* A shard with two f32 tensors of 4 x 4. */
static void write_shard(size_t i)
{
    char header[512];
    int n = snprintf(header, sizeof(header),
                     "{\"%s\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]},"
                     "\"%s\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[64,128]}}",
                     g_shards[i][1], g_shards[i][2]);
    uint8_t file[8 + 512 + 128] = {0};
    for (int k = 0; k < 8; k++)
        file[k] = (uint8_t)((uint64_t)n >> (8 * k));
    memcpy(file + 8, header, (size_t)n);
    char p[256];
    shard_path(i, p, sizeof(p));
    FILE *fp = fopen(p, "wb");
    MS_FUZZ_CHECK(fp && fwrite(file, 1, 8 + (size_t)n + 128, fp) == 8 + (size_t)n + 128);
    fclose(fp);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_top, sizeof(g_top), "/tmp/ms-fuzz-index-XXXXXX");
    MS_FUZZ_CHECK(mkdtemp(g_top) != NULL);
    snprintf(g_dir, sizeof(g_dir), "%s/model", g_top);
    MS_FUZZ_CHECK(mkdir(g_dir, 0700) == 0);
    snprintf(g_index, sizeof(g_index), "%s/model.safetensors.index.json", g_dir);
    for (size_t i = 0; i < MS_ARRAY_SIZE(g_shards); i++)
        write_shard(i);
    atexit(cleanup);
    return 0;
}

static void check(const ms_model *m)
{
    size_t dl = strlen(g_dir);
    for (size_t i = 0; i < m->n_files; i++) {
        const char *f = m->files[i];
        MS_FUZZ_CHECK(!strncmp(f, g_dir, dl) && f[dl] == '/');
        MS_FUZZ_CHECK(!strstr(f + dl, "/../") && !strstr(f, "outside"));
    }
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        MS_FUZZ_CHECK(t->file_index >= 0 && (size_t)t->file_index < m->n_files);
        const ms_st_file *s = m->st[t->file_index];
        MS_FUZZ_CHECK(t->data >= s->data && t->nbytes <= s->size &&
                      (uint64_t)(t->data - s->data) <= s->size - t->nbytes);
        float row[4];
        ms_error e;
        ms_error_clear(&e);
        if (t->n_cols == 4 && t->n_rows >= 1)
            (void)ms_model_read_rows(m, t, 0, 1, row, &e);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *fp = fopen(g_index, "wb");
    MS_FUZZ_CHECK(fp != NULL);
    MS_FUZZ_CHECK(fwrite(data, 1, size, fp) == size);
    fclose(fp);
    ms_model *m;
    ms_error e;
    ms_error_clear(&e);
    if (ms_model_open(g_dir, &m, &e) == MS_OK) {
        check(m);
        ms_model_close(m);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    }
    return 0;
}
