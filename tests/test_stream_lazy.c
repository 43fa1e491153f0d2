/*
 * test_stream_lazy.c - ms_stream_run_lazy: every element read through
 * ms_stream_chunk_elems, in any block split, equals the plain decode of
 * the same rows (ms_model_read_rows of the whole tensor), bit for bit, for
 * BF16 safetensors (pread path), F16 and F32 GGUFs (Q/K rows permuted:
 * decoded by the stream) and Q8_0 (never lazy), with 1 and 2 threads;
 * every row is seen once; and at least one chunk really was left undecoded.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/model.h"
#include "mergescope/stream.h"
#include "testutil.h"

#define K 4

typedef struct lazy_ctx {
    const ms_stream_job *job;
    float **ref;              /* [slot * K + i]: the whole tensor, decoded */
    float *scratch;           /* per worker: 2 x chunk floats */
    size_t scratch_n;
    atomic_long mismatches, undecoded, rows;
} lazy_ctx;

/* Read the chunk of model i in pieces of `piece` elements (the last one
 * shorter) and compare each with the reference. */
static void check_pieces(lazy_ctx *x, const ms_stream_chunk *c, size_t i,
                         size_t piece, float *scratch)
{
    size_t n = (size_t)c->nrows * (size_t)c->n_cols;
    const float *ref = x->ref[c->slot * K + i] + (size_t)c->row0 * (size_t)c->n_cols;
    for (size_t off = 0; off < n; off += piece) {
        size_t m = n - off < piece ? n - off : piece;
        const float *v = ms_stream_chunk_elems(c, i, off, m, scratch);
        if (memcmp(v, ref + off, m * sizeof(float)) != 0)
            x->mismatches++;
    }
}

static ms_status lazy_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    lazy_ctx *x = p;
    (void)err;
    float *scratch = x->scratch + (size_t)c->worker * x->scratch_n;
    for (size_t i = 0; i < c->k; i++) {
        if (!c->x[i])
            x->undecoded++;
        check_pieces(x, c, i, (size_t)c->nrows * (size_t)c->n_cols, scratch);
        check_pieces(x, c, i, 37, scratch);
    }
    x->rows += c->nrows;
    return MS_OK;
}

Test(stream_lazy, block_reads_equal_a_plain_decode)
{
    static const char *const rels[K] = {"tiny/base", "tiny/gguf/base-F16.gguf",
                                        "tiny/gguf/base-F32.gguf",
                                        "tiny/gguf/base-Q8_0.gguf"};
    ms_model *m[K];
    ms_error e;
    ms_error_clear(&e);
    for (size_t i = 0; i < K; i++) {
        char *path = ms_test_gen(rels[i]);
        cr_assert_eq(ms_model_open(path, &m[i], &e), MS_OK, "%s: %s", path, e.msg);
        free(path);
    }
    const ms_tensor **tensors;
    ms_stream_skip *skip;
    size_t n_slots, n_skip;
    cr_assert_eq(ms_stream_match((const ms_model *const *)m, K, &tensors, &n_slots,
                                 &skip, &n_skip, &e), MS_OK, "%s", e.msg);
    cr_assert_gt(n_slots, 0);
    ms_stream_job job = {.models = (const ms_model *const *)m, .k = K,
                         .tensors = tensors, .n_slots = n_slots};
    long total_rows = 0;
    float **ref = calloc(n_slots * K, sizeof(*ref));
    cr_assert_not_null(ref);
    for (size_t s = 0; s < n_slots; s++) {
        total_rows += (long)tensors[s * K]->n_rows;
        for (size_t i = 0; i < K; i++) {
            const ms_tensor *t = tensors[s * K + i];
            ref[s * K + i] = malloc((size_t)t->n_elems * sizeof(float) + 1);
            cr_assert_not_null(ref[s * K + i]);
            cr_assert_eq(ms_model_read_rows(m[i], t, 0, t->n_rows, ref[s * K + i], &e),
                         MS_OK, "%s", e.msg);
        }
    }
    /* chunk sizes: a few rows (Q8_0 blocks of 32 stay whole: rows are) */
    static const size_t chunks[] = {100, 4096};
    for (int threads = 1; threads <= 2; threads++)
        for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
            ms_stream_opts o = {.threads = threads, .chunk_elems = chunks[ci]};
            lazy_ctx x = {.job = &job, .ref = ref};
            size_t widest = 0;
            for (size_t s = 0; s < n_slots; s++) {
                const ms_tensor *t = tensors[s * K];
                size_t n = (size_t)ms_stream_rows_per_chunk(&o, t->n_rows, t->n_cols) *
                           (size_t)t->n_cols;
                widest = n > widest ? n : widest;
            }
            x.scratch_n = widest + 1;
            x.scratch = malloc((size_t)threads * x.scratch_n * sizeof(float));
            cr_assert_not_null(x.scratch);
            cr_assert_eq(ms_stream_run_lazy(&job, &o, lazy_fn, NULL, &x, &e), MS_OK,
                         "%s", e.msg);
            cr_expect_eq(x.mismatches, 0, "threads %d chunk %zu: %ld pieces differ",
                         threads, chunks[ci], (long)x.mismatches);
            cr_expect_eq(x.rows, total_rows, "every row once");
            cr_expect_gt(x.undecoded, 0, "the BF16 model's chunks are left undecoded");
            free(x.scratch);
        }
    for (size_t s = 0; s < n_slots * K; s++)
        free(ref[s]);
    free(ref);
    free(tensors);
    free(skip);
    for (size_t i = 0; i < K; i++)
        ms_model_close(m[i]);
}
