/*
 * fuzz_model_gguf.c - libFuzzer target: a GGUF opened as a model, the way
 * every command opens one (ms_model_open on a file): canonical names, the
 * architecture's dimensions from metadata, and rows read back in HF order
 * with the llama Q/K permutation undone. The first and last rows of every
 * tensor are decoded, bounded.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "mergescope/model.h"
#include "mergescope/banned.h"

static char g_dir[64];
static char g_file[128];

static void cleanup(void)
{
    unlink(g_file);
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_dir, sizeof(g_dir), "/tmp/ms-fuzz-model-XXXXXX");
    MS_FUZZ_CHECK(mkdtemp(g_dir) != NULL);
    snprintf(g_file, sizeof(g_file), "%s/model.gguf", g_dir);
    atexit(cleanup);
    return 0;
}

/* Read nrows rows from row0 into a fresh buffer; errors are fine. */
static void read_rows(const ms_model *m, const ms_tensor *t, int64_t row0, int64_t nrows)
{
    float *dst = malloc((size_t)(nrows * t->n_cols) * sizeof(float));
    if (!dst)
        return;
    ms_error e;
    ms_error_clear(&e);
    if (ms_model_read_rows(m, t, row0, nrows, dst, &e) != MS_OK)
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    free(dst);
}

static void check(const ms_model *m)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        MS_FUZZ_CHECK(t->file_index >= 0 && (size_t)t->file_index < m->n_files);
        const ms_gguf_file *g = m->gguf[t->file_index];
        MS_FUZZ_CHECK(t->data >= g->data && t->nbytes <= g->size &&
                      (uint64_t)(t->data - g->data) <= g->size - t->nbytes);
        MS_FUZZ_CHECK(ms_model_find(m, t->name) != NULL);
        if (t->n_cols <= 0 || t->n_rows <= 0 || t->n_cols > (int64_t)MS_FUZZ_MAX_DECODE)
            continue;
        int64_t rows = (int64_t)MS_FUZZ_MAX_DECODE / t->n_cols;
        rows = rows < t->n_rows ? rows : t->n_rows;
        read_rows(m, t, 0, rows);
        read_rows(m, t, t->n_rows - 1, 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *fp = fopen(g_file, "wb");
    MS_FUZZ_CHECK(fp != NULL);
    MS_FUZZ_CHECK(fwrite(data, 1, size, fp) == size);
    fclose(fp);
    ms_model *m;
    ms_error e;
    ms_error_clear(&e);
    if (ms_model_open(g_file, &m, &e) == MS_OK) {
        check(m);
        ms_model_close(m);
    } else {
        MS_FUZZ_CHECK(e.code != MS_OK && e.msg[0]);
    }
    return 0;
}
