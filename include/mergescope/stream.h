/*
 * stream.h - the streaming core every analysis runs on.
 *
 * A job is a list of n_tensors "slots"; slot s names one tensor in each of
 * K models (tensors[s * k + i] is model i's tensor, all with the same
 * n_rows x n_cols). Worker threads take row chunks of slots in order, decode
 * the K aligned chunks to float32 into per-worker buffers, and call fn with
 * them. After every chunk of a slot has been handed to fn and returned,
 * tensor_done (if set) runs once for that slot. The mapped pages behind a
 * chunk are released after fn returns, so resident memory stays near
 * threads x K x chunk_elems x 4 bytes, whatever the model size.
 *
 * fn runs concurrently on different workers (worker index 0..threads-1 is
 * in the chunk; with threads <= 0, 0..ms_cpu_count()-1; a memory limit or
 * a short job may use fewer): accumulate into per-worker storage or
 * per-slot storage guarded by the caller. With one worker everything runs
 * on the calling thread. The next chunk a worker will likely take is
 * prefetched (ms_map_willneed) while it works on the current one. A non-zero status from fn or tensor_done stops the
 * job promptly (no new chunk starts); the first error is returned.
 *
 * Chunk boundaries are deterministic: slot s with n_rows x n_cols is cut
 * into chunks of R = ms_stream_rows_per_chunk(opts, n_rows, n_cols) rows
 * (the last one shorter), chunk j holding rows [j*R, min((j+1)*R, n_rows)).
 * They depend on chunk_elems and the shape only, never on the thread count
 * or timing, so a caller wanting bit-identical results whatever --threads
 * is can store one partial per (slot, chunk index row0 / R) and reduce the
 * partials in chunk order in tensor_done. Which worker gets a chunk, and
 * the order in which chunks of different slots finish, are not fixed.
 *
 * tensor_done runs on the worker that returned the slot's last chunk,
 * concurrently with fn on other slots. A slot with no elements gets no fn
 * call, only tensor_done. The progress callback is serialised (never two
 * at once) and `done` never decreases.
 */
#ifndef MERGESCOPE_STREAM_H
#define MERGESCOPE_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "mergescope/error.h"
#include "mergescope/model.h"

typedef struct ms_stream_chunk {
    size_t slot;           /* index of the slot in the job */
    int worker;            /* 0 .. threads-1 */
    int64_t row0, nrows;   /* rows of this chunk, in HF order */
    int64_t n_cols;
    size_t k;              /* number of models */
    const float *const *x; /* k pointers, each nrows * n_cols floats;
                              under ms_stream_run_lazy an entry may be
                              NULL (not decoded: read it with
                              ms_stream_chunk_elems) */
    const ms_tensor *const *tensors; /* the slot's k tensors */
    const uint8_t *const *raw; /* k pointers: where ms_stream_chunk_elems
                              reads an undecoded x[i]'s file bytes (rows
                              [row0, row0 + nrows)), or NULL */
} ms_stream_chunk;

typedef ms_status (*ms_stream_fn)(void *ctx, const ms_stream_chunk *c, ms_error *err);
typedef ms_status (*ms_stream_done_fn)(void *ctx, size_t slot, ms_error *err);
typedef void (*ms_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct ms_stream_opts {
    int threads;           /* <= 0: all cores */
    size_t chunk_elems;    /* target elements per model per chunk; 0: 1 Mi.
                              A chunk always holds whole rows (at least 1). */
    ms_progress_fn progress; /* called from workers with bytes done/total */
    void *progress_ctx;
    uint64_t max_memory;   /* bytes for the workers' f32 buffers (threads x
                              k x largest chunk x 4); 0: no limit. Chunks
                              shrink so that one worker of up to
                              MS_STREAM_BUDGET_K models fits, then fewer
                              threads are used to fit; MS_ERR_NOMEM when
                              even one row per model does not fit. */
} ms_stream_opts;

/* Elements [off, off + n) of model i's chunk (row-major within the chunk;
 * off + n <= nrows x n_cols), as float32: x[i] + off when the stream
 * decoded the chunk, else decoded into scratch (n floats, the caller's)
 * and scratch returned. The values are the same either way. */
const float *ms_stream_chunk_elems(const ms_stream_chunk *c, size_t i,
                                   size_t off, size_t n, float *scratch);

/* Models a worker's buffers are sized for under max_memory (a pair, as in
 * compare A B or quant): chunk_elems is at most max_memory / (4 x
 * MS_STREAM_BUDGET_K). A job of more models gets fewer workers, or
 * MS_ERR_NOMEM when one worker's rows do not fit. */
#define MS_STREAM_BUDGET_K 2

/* Rows per chunk for a slot of n_rows x n_cols under opts (NULL: defaults):
 * max(1, E / n_cols), at most n_rows (0 for an empty slot), where E is
 * chunk_elems, lowered to max_memory / (4 x MS_STREAM_BUDGET_K) under a
 * budget, so the chunking depends on the budget but never on the thread
 * count. */
int64_t ms_stream_rows_per_chunk(const ms_stream_opts *opts, int64_t n_rows,
                                 int64_t n_cols);

typedef struct ms_stream_job {
    const ms_model *const *models; /* k models */
    size_t k;
    const ms_tensor *const *tensors; /* n_slots * k */
    size_t n_slots;
} ms_stream_job;

ms_status ms_stream_run(const ms_stream_job *job, const ms_stream_opts *opts,
                        ms_stream_fn fn, ms_stream_done_fn tensor_done,
                        void *ctx, ms_error *err);

/*
 * ms_stream_run for a callback that reads every x through
 * ms_stream_chunk_elems: the stream leaves plain float tensors (F32, F16,
 * BF16, in file order, no value offset) undecoded (x[i] NULL), so the
 * callback decodes small blocks that stay in L1 instead of the stream
 * writing a whole chunk that leaves L2 before it is read. The file bytes
 * of such a chunk are copied with pread into the worker's buffer when the
 * model has a file descriptor (no page faults, no page-table teardown),
 * else read from the map. Everything else (chunking, prefetch, release of
 * mapped pages, callbacks, errors) is as ms_stream_run.
 */
ms_status ms_stream_run_lazy(const ms_stream_job *job, const ms_stream_opts *opts,
                             ms_stream_fn fn, ms_stream_done_fn tensor_done,
                             void *ctx, ms_error *err);

/*
 * Build the slots shared by k models: every tensor of models[0] whose
 * canonical name exists in all others with the same shape, in models[0]'s
 * order. Tensors missing somewhere, or present with another shape, are
 * listed in *skipped (caller frees the array, not the strings: they belong
 * to the models). *tensors is caller-freed.
 */
typedef struct ms_stream_skip {
    const char *name;      /* canonical name */
    size_t model;          /* the first model where it is missing or differs */
    int reason;            /* 0 missing, 1 shape differs, 2 cannot decode */
} ms_stream_skip;

ms_status ms_stream_match(const ms_model *const *models, size_t k,
                          const ms_tensor ***tensors, size_t *n_slots,
                          ms_stream_skip **skipped, size_t *n_skipped,
                          ms_error *err);

#endif
