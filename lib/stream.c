/*
 * stream.c - the streaming core: K aligned tensors, row chunk by row chunk,
 * decoded to float32 on a pool of worker threads.
 *
 * One mutex guards the work cursor, the per-slot chunk counters, the first
 * error and the progress figures. Chunks are handed out in slot order, so
 * only a few slots are ever in flight and the pages behind them are the
 * only parts of the models that are resident.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mergescope/dtype.h"
#include "mergescope/gguf.h"
#include "mergescope/safetensors.h"
#include "mergescope/stream.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define MS_STREAM_DEFAULT_CHUNK ((size_t)1 << 20)

/* What a worker gets from the cursor: a chunk of a slot, or (for a slot
 * without elements) just the slot, to run tensor_done on. */
typedef struct work_item {
    size_t slot;
    int64_t row0, nrows;
    bool empty_slot;
} work_item;

typedef struct stream_state {
    const ms_stream_job *job;
    const ms_stream_opts *opts;
    ms_stream_fn fn;
    ms_stream_done_fn done_fn;
    void *ctx;
    int n_workers;
    bool lazy;                 /* ms_stream_run_lazy */

    int64_t *rows_per_chunk;   /* per slot */
    uint64_t *chunks_left;     /* per slot: chunks not yet returned */

    pthread_mutex_t lock;
    size_t cur_slot;           /* cursor: next chunk to hand out */
    int64_t cur_row;
    bool stop;
    ms_error err;              /* first error */
    ms_status status;
    uint64_t bytes_done, bytes_total;
} stream_state;

typedef struct worker {
    stream_state *st;
    int index;
    float *buf;                /* k x stride floats, allocated once */
    size_t stride;             /* the largest chunk, in floats */
    const float **x;           /* k pointers into buf (NULL: lazy) */
    const uint8_t **raw;       /* k: a lazy chunk's file bytes */
    bool *touched;             /* k: the chunk touched model i's map */
    pthread_t thread;
} worker;

int64_t ms_stream_rows_per_chunk(const ms_stream_opts *opts, int64_t n_rows,
                                 int64_t n_cols)
{
    size_t target = opts && opts->chunk_elems ? opts->chunk_elems
                                              : MS_STREAM_DEFAULT_CHUNK;
    if (opts && opts->max_memory) {
        /* one worker's chunk buffers must fit the budget by themselves;
         * k is not known here (callers size their partials with this
         * function before the job runs), so size for a pair */
        uint64_t cap = opts->max_memory / sizeof(float) / MS_STREAM_BUDGET_K;
        if (cap < target)
            target = (size_t)cap;
    }
    if (n_rows <= 0 || n_cols <= 0)
        return 0;
    uint64_t r = (uint64_t)target / (uint64_t)n_cols;
    if (r < 1)
        r = 1;
    return r > (uint64_t)n_rows ? n_rows : (int64_t)r;
}

/* ==== validation and set-up ==== */

static ms_status check_job(const ms_stream_job *job, ms_error *err)
{
    if (!job || job->k == 0 || !job->models || (job->n_slots && !job->tensors))
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "stream job without models or tensors");
    for (size_t i = 0; i < job->k; i++)
        if (!job->models[i])
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                "stream job model %zu is missing", i);
    for (size_t s = 0; s < job->n_slots; s++) {
        const ms_tensor *t0 = job->tensors[s * job->k];
        if (!t0)
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                "stream slot %zu has no tensor", s);
        for (size_t i = 1; i < job->k; i++) {
            const ms_tensor *t = job->tensors[s * job->k + i];
            if (!t)
                return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                    "stream slot %zu has no tensor", s);
            if (t->n_rows != t0->n_rows || t->n_cols != t0->n_cols)
                return ms_error_set(err, MS_ERR_MISMATCH, job->models[i]->path, -1,
                                    "tensor '%s' is %lldx%lld, expected %lldx%lld",
                                    t->name, (long long)t->n_rows,
                                    (long long)t->n_cols, (long long)t0->n_rows,
                                    (long long)t0->n_cols);
        }
    }
    return MS_OK;
}

/* Per-slot chunk layout, the largest chunk and the bytes to stream. */
static ms_status plan_slots(stream_state *st, size_t *max_chunk,
                            uint64_t *n_chunks, ms_error *err)
{
    const ms_stream_job *job = st->job;
    *max_chunk = 0;
    *n_chunks = 0;
    for (size_t s = 0; s < job->n_slots; s++) {
        const ms_tensor *t0 = job->tensors[s * job->k];
        int64_t r = ms_stream_rows_per_chunk(st->opts, t0->n_rows, t0->n_cols);
        size_t elems;
        st->rows_per_chunk[s] = r;
        if (r == 0) {
            st->chunks_left[s] = 1; /* the tensor_done-only item */
            continue;
        }
        if (!ms_mul_size((size_t)r, (size_t)t0->n_cols, &elems))
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1,
                                "chunk of tensor '%s' is too large", t0->name);
        if (elems > *max_chunk)
            *max_chunk = elems;
        st->chunks_left[s] = ((uint64_t)t0->n_rows + (uint64_t)r - 1) / (uint64_t)r;
        *n_chunks += st->chunks_left[s];
        for (size_t i = 0; i < job->k; i++) {
            const ms_tensor *t = job->tensors[s * job->k + i];
            if (!ms_add_u64(st->bytes_total, t->nbytes, &st->bytes_total))
                return ms_error_set(err, MS_ERR_INTERNAL, NULL, -1,
                                    "byte count overflows");
        }
    }
    return MS_OK;
}

/* How many workers fit the memory budget, each with k x max_chunk floats. */
static ms_status fit_workers(stream_state *st, size_t per_worker_floats,
                             uint64_t n_chunks, ms_error *err)
{
    int n = st->opts && st->opts->threads > 0 ? st->opts->threads : ms_cpu_count();
    if ((uint64_t)n > n_chunks)
        n = n_chunks ? (int)n_chunks : 1;
    uint64_t per_worker;
    if (!ms_mul_u64(per_worker_floats, sizeof(float), &per_worker))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "chunk buffers too large");
    uint64_t budget = st->opts ? st->opts->max_memory : 0;
    if (budget && per_worker) {
        if (per_worker > budget)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1,
                                "one row chunk of %zu models needs %llu bytes of "
                                "buffers, more than the memory limit of %llu bytes",
                                st->job->k, (unsigned long long)per_worker,
                                (unsigned long long)budget);
        if ((uint64_t)n > budget / per_worker)
            n = (int)(budget / per_worker);
    }
    st->n_workers = n;
    return MS_OK;
}

/* ==== the cursor (called with the lock held) ==== */

static bool claim(stream_state *st, work_item *it)
{
    const ms_stream_job *job = st->job;
    while (st->cur_slot < job->n_slots) {
        size_t s = st->cur_slot;
        const ms_tensor *t0 = job->tensors[s * job->k];
        int64_t r = st->rows_per_chunk[s];
        if (r == 0) {
            it->slot = s;
            it->row0 = it->nrows = 0;
            it->empty_slot = true;
            st->cur_slot++;
            st->cur_row = 0;
            return true;
        }
        if (st->cur_row < t0->n_rows) {
            it->slot = s;
            it->row0 = st->cur_row;
            it->nrows = t0->n_rows - st->cur_row < r ? t0->n_rows - st->cur_row : r;
            it->empty_slot = false;
            st->cur_row += it->nrows;
            return true;
        }
        st->cur_slot++;
        st->cur_row = 0;
    }
    return false;
}

/* The chunk `ahead` positions after the cursor: the one this worker will
 * most likely take next (the others take the ones before it). */
static bool peek_ahead(const stream_state *st, int ahead, work_item *it)
{
    size_t s = st->cur_slot;
    int64_t row = st->cur_row;
    const ms_stream_job *job = st->job;
    for (; s < job->n_slots; s++, row = 0) {
        int64_t n_rows = job->tensors[s * job->k]->n_rows;
        int64_t r = st->rows_per_chunk[s];
        if (r == 0)
            continue;
        for (; row < n_rows; row += r) {
            if (ahead-- == 0) {
                it->slot = s;
                it->row0 = row;
                it->nrows = n_rows - row < r ? n_rows - row : r;
                it->empty_slot = false;
                return true;
            }
        }
    }
    return false;
}

/* ==== workers ==== */

/* Byte range in the file behind HF rows [row0, row0 + nrows) of t. For
 * permuted GGUF rows the range is widened to whole heads. */
static void row_span(const ms_tensor *t, int64_t row0, int64_t nrows,
                     const uint8_t **p, uint64_t *len)
{
    int64_t lo = row0, hi = row0 + nrows;
    if (t->permute_heads > 0 && t->n_rows % t->permute_heads == 0) {
        int64_t hd = t->n_rows / t->permute_heads;
        if (hd > 0) {
            lo = lo / hd * hd;
            hi = (hi + hd - 1) / hd * hd;
        }
    }
    *p = t->data ? t->data + (uint64_t)lo * t->row_bytes : NULL;
    *len = (uint64_t)(hi - lo) * t->row_bytes;
}

static void prefetch(const stream_state *st, const work_item *it)
{
    for (size_t i = 0; i < st->job->k; i++) {
        const ms_tensor *t = st->job->tensors[it->slot * st->job->k + i];
        const uint8_t *p;
        uint64_t len;
        row_span(t, it->row0, it->nrows, &p, &len);
        if (p && len)
            ms_map_willneed(p, len);
    }
}

static void fail(stream_state *st, ms_status code, const ms_error *e)
{
    pthread_mutex_lock(&st->lock);
    if (st->status == MS_OK) {
        st->status = code;
        st->err = *e;
        if (st->err.code == MS_OK)
            st->err.code = code;
    }
    st->stop = true;
    pthread_mutex_unlock(&st->lock);
}

/* Bytes per element when t can be decoded in place from the map by
 * ms_stream_chunk_elems (plain float, file order, no offset), else 0. */
static size_t lazy_elem_bytes(const ms_tensor *t)
{
    size_t es;
    if (!t->data || t->permute_heads != 0 || t->value_offset != 0.0f)
        return 0;
    switch (t->dtype) {
    case MS_DTYPE_F32: es = 4; break;
    case MS_DTYPE_F16:
    case MS_DTYPE_BF16: es = 2; break;
    default: return 0;
    }
    return t->row_bytes == (uint64_t)t->n_cols * es ? es : 0;
}

const float *ms_stream_chunk_elems(const ms_stream_chunk *c, size_t i,
                                   size_t off, size_t n, float *scratch)
{
    if (c->x[i])
        return c->x[i] + off;
    const ms_tensor *t = c->tensors[i];
    size_t es = lazy_elem_bytes(t);
    const uint8_t *src = c->raw[i] + off * es;
    (void)ms_dtype_to_f32(t->dtype, src, n, scratch); /* cannot fail: plain */
    return scratch;
}

/* A lazy chunk of model i: its file bytes, copied into the worker's buffer
 * (a chunk of <= 4-byte elements fits the float slot) or in the map.
 * True when the map was touched and its pages need releasing. */
static bool lazy_source(const stream_state *st, worker *w, size_t i,
                        const ms_tensor *t, const work_item *it)
{
    uint8_t *dst = (uint8_t *)(w->buf + i * w->stride);
    if (ms_model_pread_bytes(st->job->models[i], t, it->row0, it->nrows, dst)) {
        w->raw[i] = dst;
        return false;
    }
    w->raw[i] = t->data + (uint64_t)it->row0 * t->row_bytes;
    return true;
}

static ms_status run_chunk(stream_state *st, worker *w, const work_item *it,
                           ms_error *e)
{
    const ms_stream_job *job = st->job;
    const ms_tensor *const *ts = job->tensors + it->slot * job->k;
    ms_status rc = MS_OK;
    size_t i, n_read = 0;
    for (i = 0; i < job->k && rc == MS_OK; i++, n_read++) {
        w->touched[i] = true;
        w->raw[i] = NULL;
        if (st->lazy && lazy_elem_bytes(ts[i])) {
            w->x[i] = NULL; /* the callback decodes it block by block */
            w->touched[i] = lazy_source(st, w, i, ts[i], it);
            continue;
        }
        w->x[i] = w->buf + i * w->stride;
        rc = ms_model_read_rows(job->models[i], ts[i], it->row0, it->nrows,
                                w->buf + i * w->stride, e);
    }
    if (rc == MS_OK) {
        ms_stream_chunk c = {
            .slot = it->slot, .worker = w->index, .row0 = it->row0,
            .nrows = it->nrows, .n_cols = ts[0]->n_cols, .k = job->k,
            .x = w->x, .tensors = ts, .raw = w->raw,
        };
        rc = st->fn(st->ctx, &c, e);
        if (rc != MS_OK && e->code == MS_OK)
            ms_error_set(e, rc, NULL, -1, "stream callback failed");
    }
    for (i = 0; i < n_read; i++)
        if (w->touched[i])
            ms_model_release_rows(job->models[i], ts[i], it->row0, it->nrows);
    return rc;
}

/* Account for a returned chunk; true when it was the slot's last one. */
static bool chunk_returned(stream_state *st, const work_item *it)
{
    bool last;
    uint64_t bytes = 0;
    for (size_t i = 0; i < st->job->k && !it->empty_slot; i++)
        bytes += (uint64_t)it->nrows * st->job->tensors[it->slot * st->job->k + i]->row_bytes;
    pthread_mutex_lock(&st->lock);
    last = --st->chunks_left[it->slot] == 0;
    st->bytes_done += bytes;
    if (st->opts && st->opts->progress && bytes && !st->stop)
        st->opts->progress(st->opts->progress_ctx, st->bytes_done, st->bytes_total);
    pthread_mutex_unlock(&st->lock);
    return last;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    stream_state *st = w->st;
    for (;;) {
        work_item it, next;
        bool have_next;
        ms_error e;
        ms_status rc = MS_OK;
        ms_error_clear(&e);
        pthread_mutex_lock(&st->lock);
        if (st->stop || !claim(st, &it)) {
            pthread_mutex_unlock(&st->lock);
            break;
        }
        have_next = peek_ahead(st, st->n_workers - 1, &next);
        pthread_mutex_unlock(&st->lock);
        if (have_next)
            prefetch(st, &next);
        if (!it.empty_slot)
            rc = run_chunk(st, w, &it, &e);
        if (rc == MS_OK && chunk_returned(st, &it) && st->done_fn) {
            rc = st->done_fn(st->ctx, it.slot, &e);
            if (rc != MS_OK && e.code == MS_OK)
                ms_error_set(&e, rc, NULL, -1, "stream tensor callback failed");
        }
        if (rc != MS_OK) {
            fail(st, rc, &e);
            break;
        }
    }
    return NULL;
}

/* ==== the pool ==== */

static ms_status start_workers(stream_state *st, worker *ws, size_t max_chunk,
                               ms_error *err)
{
    size_t k = st->job->k, per;
    if (!ms_mul_size(k, max_chunk ? max_chunk : 1, &per))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "chunk buffers too large");
    for (int i = 0; i < st->n_workers; i++) {
        ws[i].st = st;
        ws[i].index = i;
        ws[i].stride = max_chunk;
        ws[i].buf = ms_alloc_array(per, sizeof(float));
        ws[i].x = ms_alloc_array(k, sizeof(*ws[i].x));
        ws[i].raw = ms_alloc_array(k, sizeof(*ws[i].raw));
        ws[i].touched = ms_alloc_array(k, sizeof(*ws[i].touched));
        if (!ws[i].buf || !ws[i].x || !ws[i].raw || !ws[i].touched)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1,
                                "out of memory for %zu chunk floats", per);
        for (size_t j = 0; j < k; j++)
            ws[i].x[j] = ws[i].buf + j * max_chunk;
    }
    return MS_OK;
}

static void run_pool(stream_state *st, worker *ws)
{
    int started = 0;
    if (st->n_workers == 1) {
        worker_main(&ws[0]);
        return;
    }
    for (; started < st->n_workers; started++)
        if (pthread_create(&ws[started].thread, NULL, worker_main, &ws[started]) != 0)
            break;
    if (started < st->n_workers) {
        ms_error e;
        ms_error_clear(&e);
        ms_error_set(&e, MS_ERR_IO, NULL, -1, "cannot start worker thread %d", started);
        fail(st, MS_ERR_IO, &e);
    }
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
}

static ms_status stream_run(const ms_stream_job *job, const ms_stream_opts *opts,
                            ms_stream_fn fn, ms_stream_done_fn tensor_done,
                            void *ctx, bool lazy, ms_error *err)
{
    stream_state st;
    worker *ws = NULL;
    size_t max_chunk = 0, per_worker;
    uint64_t n_chunks = 0;
    ms_status rc;

    if (!fn)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "stream without a callback");
    if ((rc = check_job(job, err)) != MS_OK)
        return rc;
    memset(&st, 0, sizeof(st));
    st.job = job;
    st.opts = opts;
    st.fn = fn;
    st.done_fn = tensor_done;
    st.ctx = ctx;
    st.lazy = lazy;
    st.rows_per_chunk = ms_alloc_array(job->n_slots ? job->n_slots : 1, sizeof(int64_t));
    st.chunks_left = ms_alloc_array(job->n_slots ? job->n_slots : 1, sizeof(uint64_t));
    if (!st.rows_per_chunk || !st.chunks_left) {
        rc = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        goto out;
    }
    if ((rc = plan_slots(&st, &max_chunk, &n_chunks, err)) != MS_OK)
        goto out;
    if (!ms_mul_size(job->k, max_chunk, &per_worker)) {
        rc = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "chunk buffers too large");
        goto out;
    }
    if ((rc = fit_workers(&st, per_worker, n_chunks, err)) != MS_OK)
        goto out;
    ws = ms_zalloc_array((size_t)st.n_workers, sizeof(*ws));
    if (!ws) {
        rc = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        goto out;
    }
    if ((rc = start_workers(&st, ws, max_chunk, err)) != MS_OK)
        goto out;
    pthread_mutex_init(&st.lock, NULL);
    run_pool(&st, ws);
    pthread_mutex_destroy(&st.lock);
    if ((rc = st.status) != MS_OK && err && err->code == MS_OK)
        *err = st.err;
out:
    for (int i = 0; ws && i < st.n_workers; i++) {
        free(ws[i].buf);
        free(ws[i].x);
        free(ws[i].raw);
        free(ws[i].touched);
    }
    free(ws);
    free(st.rows_per_chunk);
    free(st.chunks_left);
    return rc;
}

ms_status ms_stream_run(const ms_stream_job *job, const ms_stream_opts *opts,
                        ms_stream_fn fn, ms_stream_done_fn tensor_done,
                        void *ctx, ms_error *err)
{
    return stream_run(job, opts, fn, tensor_done, ctx, false, err);
}

ms_status ms_stream_run_lazy(const ms_stream_job *job, const ms_stream_opts *opts,
                             ms_stream_fn fn, ms_stream_done_fn tensor_done,
                             void *ctx, ms_error *err)
{
    return stream_run(job, opts, fn, tensor_done, ctx, true, err);
}

/* ==== matching tensors across models ==== */

static bool same_shape(const ms_tensor *a, const ms_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

/* -1 when t0 is usable in every model (others[i] filled), else the model
 * index with *reason set. */
static long match_one(const ms_model *const *models, size_t k,
                      const ms_tensor *t0, const ms_tensor **row, int *reason)
{
    row[0] = t0;
    if (!ms_dtype_can_decode(t0->dtype)) {
        *reason = 2;
        return 0;
    }
    for (size_t i = 1; i < k; i++) {
        const ms_tensor *t = ms_model_find(models[i], t0->name);
        if (!t) {
            *reason = 0;
            return (long)i;
        }
        if (!same_shape(t, t0)) {
            *reason = 1;
            return (long)i;
        }
        if (!ms_dtype_can_decode(t->dtype)) {
            *reason = 2;
            return (long)i;
        }
        row[i] = t;
    }
    return -1;
}

ms_status ms_stream_match(const ms_model *const *models, size_t k,
                          const ms_tensor ***tensors, size_t *n_slots,
                          ms_stream_skip **skipped, size_t *n_skipped,
                          ms_error *err)
{
    *tensors = NULL;
    *n_slots = 0;
    *skipped = NULL;
    *n_skipped = 0;
    if (!models || k == 0)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "no models to match");
    for (size_t i = 0; i < k; i++)
        if (!models[i])
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "model %zu is missing", i);
    size_t n0 = models[0]->n_tensors, cells;
    if (!ms_mul_size(n0 ? n0 : 1, k, &cells))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "too many tensors");
    const ms_tensor **out = ms_alloc_array(cells, sizeof(*out));
    ms_stream_skip *skip = ms_alloc_array(n0 ? n0 : 1, sizeof(*skip));
    if (!out || !skip) {
        free(out);
        free(skip);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    size_t ns = 0, nk = 0;
    for (size_t j = 0; j < n0; j++) {
        const ms_tensor *t0 = &models[0]->tensors[j];
        int reason = 0;
        long bad = match_one(models, k, t0, out + ns * k, &reason);
        if (bad < 0) {
            ns++;
            continue;
        }
        skip[nk].name = t0->name;
        skip[nk].model = (size_t)bad;
        skip[nk].reason = reason;
        nk++;
    }
    *tensors = out;
    *n_slots = ns;
    *skipped = skip;
    *n_skipped = nk;
    return MS_OK;
}
