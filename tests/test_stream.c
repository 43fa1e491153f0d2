/*
 * test_stream.c - the streaming core: every row of every slot exactly once,
 * in the documented chunks, whatever the thread count; values and sums equal
 * a plain single-threaded read; tensor_done once per slot after its chunks;
 * errors stop the pool; resident memory stays bounded on a model far larger
 * than the chunks; tensor matching across models.
 *
 * Models come from the generated tiny family (ms-fixtures) and, for the
 * memory test, a 400 MB f32 model written here with the fixture writer.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mergescope/model.h"
#include "mergescope/stream.h"
#include "mergescope/util.h"
#include "testutil.h"
#include "writer.h"

/* ==== helpers ==== */

static ms_model *open_gen(const char *rel)
{
    char *p = ms_test_gen(rel);
    ms_model *m = NULL;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_model_open(p, &m, &e), MS_OK, "%s: %s", p, e.msg);
    free(p);
    return m;
}

typedef struct job_fix {
    ms_model *m[3];
    size_t k;
    const ms_tensor **tensors;
    size_t n_slots;
    ms_stream_job job;
} job_fix;

static void job_open(job_fix *j, const char *const *rels, size_t k)
{
    ms_stream_skip *skip;
    size_t n_skip;
    ms_error e;
    ms_error_clear(&e);
    memset(j, 0, sizeof(*j));
    j->k = k;
    for (size_t i = 0; i < k; i++)
        j->m[i] = open_gen(rels[i]);
    cr_assert_eq(ms_stream_match((const ms_model *const *)j->m, k, &j->tensors,
                                 &j->n_slots, &skip, &n_skip, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(n_skip, 0, "tiny family members share every tensor");
    cr_assert_eq(j->n_slots, j->m[0]->n_tensors);
    free(skip);
    j->job.models = (const ms_model *const *)j->m;
    j->job.k = k;
    j->job.tensors = j->tensors;
    j->job.n_slots = j->n_slots;
}

static void job_close(job_fix *j)
{
    free(j->tensors);
    for (size_t i = 0; i < j->k; i++)
        ms_model_close(j->m[i]);
}

static float *read_all(const ms_model *m, const ms_tensor *t)
{
    float *x = malloc((size_t)t->n_elems * sizeof(float) + 1);
    ms_error e;
    ms_error_clear(&e);
    cr_assert_not_null(x);
    cr_assert_eq(ms_model_read_rows(m, t, 0, t->n_rows, x, &e), MS_OK, "%s", e.msg);
    return x;
}

/* ==== visiting: rows, chunk boundaries, tensor_done ==== */

#define MAX_ROWS 4096

typedef struct visit_ctx {
    const ms_stream_job *job;
    const ms_stream_opts *opts;
    int threads;
    _Atomic int *visits;        /* [slot * MAX_ROWS + row] */
    _Atomic int *done;          /* per slot */
    _Atomic int64_t *rows_seen; /* per slot, rows returned so far */
    atomic_int bad_boundary, chunk_after_done, done_early, bad_worker;
} visit_ctx;

static ms_status visit_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    visit_ctx *v = p;
    (void)err;
    const ms_tensor *t = v->job->tensors[c->slot * v->job->k];
    int64_t r = ms_stream_rows_per_chunk(v->opts, t->n_rows, t->n_cols);
    if (c->row0 % r != 0 || c->nrows != (t->n_rows - c->row0 < r ? t->n_rows - c->row0 : r) ||
        c->n_cols != t->n_cols || c->k != v->job->k)
        v->bad_boundary++;
    if (c->worker < 0 || c->worker >= v->threads)
        v->bad_worker++;
    if (v->done[c->slot])
        v->chunk_after_done++;
    for (int64_t i = 0; i < c->nrows; i++)
        v->visits[c->slot * MAX_ROWS + (size_t)(c->row0 + i)]++;
    v->rows_seen[c->slot] += c->nrows;
    return MS_OK;
}

static ms_status visit_done(void *p, size_t slot, ms_error *err)
{
    visit_ctx *v = p;
    (void)err;
    if (v->rows_seen[slot] != v->job->tensors[slot * v->job->k]->n_rows)
        v->done_early++;
    v->done[slot]++;
    return MS_OK;
}

Test(stream, every_row_once_in_fixed_chunks_for_any_thread_count)
{
    static const char *const rels[] = {"tiny/base", "tiny/donor2", "tiny/gguf/base-F16.gguf"};
    job_fix j;
    job_open(&j, rels, 3);
    size_t cells = j.n_slots * MAX_ROWS;
    static const size_t chunks[] = {1, 3, 65, 177, 4097, 0};
    for (int threads = 1; threads <= 3; threads++) {
        for (size_t ci = 0; ci < MS_ARRAY_SIZE(chunks); ci++) {
            ms_stream_opts o = {.threads = threads, .chunk_elems = chunks[ci]};
            visit_ctx v = {.job = &j.job, .opts = &o, .threads = threads};
            v.visits = calloc(cells, sizeof(*v.visits));
            v.done = calloc(j.n_slots, sizeof(*v.done));
            v.rows_seen = calloc(j.n_slots, sizeof(*v.rows_seen));
            ms_error e;
            ms_error_clear(&e);
            cr_assert_eq(ms_stream_run(&j.job, &o, visit_fn, visit_done, &v, &e), MS_OK,
                         "%s", e.msg);
            for (size_t s = 0; s < j.n_slots; s++) {
                int64_t n_rows = j.tensors[s * 3]->n_rows;
                cr_assert_lt(n_rows, MAX_ROWS);
                cr_assert_eq(v.done[s], 1, "slot %zu done %d times", s, (int)v.done[s]);
                for (int64_t r = 0; r < n_rows; r++)
                    cr_assert_eq(v.visits[s * MAX_ROWS + (size_t)r], 1,
                                 "threads %d chunk %zu: slot %zu row %lld visited %d times",
                                 threads, chunks[ci], s, (long long)r,
                                 (int)v.visits[s * MAX_ROWS + (size_t)r]);
            }
            cr_assert_eq(v.bad_boundary, 0);
            cr_assert_eq(v.bad_worker, 0);
            cr_assert_eq(v.chunk_after_done, 0);
            cr_assert_eq(v.done_early, 0);
            free(v.visits);
            free(v.done);
            free(v.rows_seen);
        }
    }
    job_close(&j);
}

Test(stream, rows_per_chunk_is_whole_rows)
{
    ms_stream_opts o = {.chunk_elems = 100};
    cr_assert_eq(ms_stream_rows_per_chunk(&o, 50, 10), 10);
    cr_assert_eq(ms_stream_rows_per_chunk(&o, 50, 33), 3);
    cr_assert_eq(ms_stream_rows_per_chunk(&o, 50, 1000), 1, "at least one row");
    cr_assert_eq(ms_stream_rows_per_chunk(&o, 5, 1), 5, "at most the tensor");
    cr_assert_eq(ms_stream_rows_per_chunk(&o, 0, 10), 0);
    cr_assert_eq(ms_stream_rows_per_chunk(NULL, 4096, 4096), 256, "default 1 Mi elements");
}

/* ==== values: sums and dots against a plain read ==== */

#define MAX_CHUNKS 8192

typedef struct sum_ctx {
    const ms_stream_job *job;
    const ms_stream_opts *opts;
    double *part;               /* [slot][chunk][2]: sum x0*x1, sum x2 */
    size_t max_chunks;
    atomic_int mismatch;        /* chunk values differ from a plain read */
} sum_ctx;

static ms_status sum_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    sum_ctx *s = p;
    (void)err;
    const ms_tensor *t = s->job->tensors[c->slot * s->job->k];
    int64_t r = ms_stream_rows_per_chunk(s->opts, t->n_rows, t->n_cols);
    size_t chunk = (size_t)(c->row0 / r);
    double dot = 0.0, sum = 0.0;
    size_t n = (size_t)(c->nrows * c->n_cols);
    for (size_t i = 0; i < n; i++) {
        dot += (double)c->x[0][i] * c->x[1][i];
        sum += c->x[2][i];
    }
    /* the third model must hold the same values as a plain read */
    float *ref = malloc(n * sizeof(float) + 1);
    ms_error e;
    ms_error_clear(&e);
    const ms_tensor *t2 = s->job->tensors[c->slot * s->job->k + 2];
    if (!ref || ms_model_read_rows(s->job->models[2], t2, c->row0, c->nrows, ref, &e) ||
        memcmp(ref, c->x[2], n * sizeof(float)))
        s->mismatch++;
    free(ref);
    s->part[(c->slot * s->max_chunks + chunk) * 2] = dot;
    s->part[(c->slot * s->max_chunks + chunk) * 2 + 1] = sum;
    return MS_OK;
}

/* Per-slot totals reduced in chunk order (the documented recipe for
 * results that do not depend on the thread count). */
static void stream_sums(job_fix *j, int threads, size_t chunk_elems, double *out)
{
    ms_stream_opts o = {.threads = threads, .chunk_elems = chunk_elems};
    sum_ctx s = {.job = &j->job, .opts = &o, .max_chunks = MAX_CHUNKS};
    s.part = calloc(j->n_slots * MAX_CHUNKS * 2, sizeof(double));
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&j->job, &o, sum_fn, NULL, &s, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(s.mismatch, 0);
    for (size_t sl = 0; sl < j->n_slots; sl++) {
        const ms_tensor *t = j->tensors[sl * j->k];
        int64_t r = ms_stream_rows_per_chunk(&o, t->n_rows, t->n_cols);
        size_t nc = (size_t)((t->n_rows + r - 1) / r);
        cr_assert_leq(nc, MAX_CHUNKS);
        out[sl * 2] = out[sl * 2 + 1] = 0.0;
        for (size_t c = 0; c < nc; c++) {
            out[sl * 2] += s.part[(sl * MAX_CHUNKS + c) * 2];
            out[sl * 2 + 1] += s.part[(sl * MAX_CHUNKS + c) * 2 + 1];
        }
    }
    free(s.part);
}

Test(stream, sums_and_dots_equal_a_plain_read)
{
    /* base x donor1 dot, and the sum of the GGUF F32 copy of the base
     * (its Q/K rows put back in HF order by the reader) */
    static const char *const rels[] = {"tiny/base", "tiny/donor1", "tiny/gguf/base-F32.gguf"};
    job_fix j;
    job_open(&j, rels, 3);
    double *ref = calloc(j.n_slots * 2, sizeof(double));
    for (size_t s = 0; s < j.n_slots; s++) {
        float *a = read_all(j.m[0], j.tensors[s * 3]);
        float *b = read_all(j.m[1], j.tensors[s * 3 + 1]);
        float *c = read_all(j.m[2], j.tensors[s * 3 + 2]);
        for (uint64_t i = 0; i < j.tensors[s * 3]->n_elems; i++) {
            ref[s * 2] += (double)a[i] * b[i];
            ref[s * 2 + 1] += c[i];
        }
        free(a);
        free(b);
        free(c);
    }
    double *first = calloc(j.n_slots * 2, sizeof(double));
    double *got = calloc(j.n_slots * 2, sizeof(double));
    static const size_t chunks[] = {1, 7, 1000, 0};
    for (size_t ci = 0; ci < MS_ARRAY_SIZE(chunks); ci++) {
        for (int threads = 1; threads <= 3; threads++) {
            stream_sums(&j, threads, chunks[ci], got);
            for (size_t i = 0; i < j.n_slots * 2; i++) {
                double tol = 1e-9 * (1.0 + fabs(ref[i]));
                cr_assert(fabs(got[i] - ref[i]) <= tol,
                          "slot %zu: %.17g vs plain %.17g", i / 2, got[i], ref[i]);
            }
            if (threads == 1)
                memcpy(first, got, j.n_slots * 2 * sizeof(double));
            else
                cr_assert_eq(memcmp(first, got, j.n_slots * 2 * sizeof(double)), 0,
                             "chunk-ordered reduction is bit-identical for %d threads",
                             threads);
        }
    }
    free(first);
    free(got);
    free(ref);
    job_close(&j);
}

/* ==== errors ==== */

typedef struct err_ctx {
    atomic_int calls;
    atomic_int failed;
    int fail_at;                /* fn fails on this call (0-based), -1 never */
    long fail_slot;             /* tensor_done fails on this slot, -1 never */
    atomic_int done_calls;
} err_ctx;

static ms_status err_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    err_ctx *x = p;
    (void)c;
    int n = x->calls++;
    if (n == x->fail_at) {
        x->failed = 1;
        return ms_error_set(err, MS_ERR_FORMAT, "model.safetensors", 1234,
                            "bad chunk %d", n);
    }
    return MS_OK;
}

static ms_status err_done(void *p, size_t slot, ms_error *err)
{
    err_ctx *x = p;
    x->done_calls++;
    if ((long)slot == x->fail_slot) {
        x->failed = 1;
        return ms_error_set(err, MS_ERR_MISMATCH, NULL, -1, "slot %zu refused", slot);
    }
    return MS_OK;
}

Test(stream, an_error_from_fn_stops_the_run_and_is_returned)
{
    static const char *const rels[] = {"tiny/base", "tiny/donor1"};
    job_fix j;
    job_open(&j, rels, 2);
    for (int threads = 1; threads <= 3; threads++) {
        err_ctx x = {.fail_at = 5, .fail_slot = -1};
        ms_stream_opts o = {.threads = threads, .chunk_elems = 64};
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_stream_run(&j.job, &o, err_fn, err_done, &x, &e), MS_ERR_FORMAT);
        cr_assert_str_eq(e.msg, "bad chunk 5");
        cr_assert_str_eq(e.path, "model.safetensors");
        cr_assert_eq(e.offset, 1234);
        /* thousands of chunks in the job: one thread stops at once, more
         * threads finish only what they had started (bounded loosely, as a
         * busy machine may delay the failing thread) */
        if (threads == 1)
            cr_assert_eq(x.calls, 6);
        else
            cr_assert_lt(x.calls, 1000, "%d calls", (int)x.calls);
    }
    err_ctx y = {.fail_at = -1, .fail_slot = 3};
    ms_stream_opts o = {.threads = 2, .chunk_elems = 64};
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&j.job, &o, err_fn, err_done, &y, &e), MS_ERR_MISMATCH);
    cr_assert_str_eq(e.msg, "slot 3 refused");
    cr_assert_lt(y.done_calls, (int)j.n_slots, "the run stopped early");
    job_close(&j);
}

Test(stream, bad_jobs_are_refused)
{
    static const char *const rels[] = {"tiny/base", "tiny/donor1"};
    job_fix j;
    job_open(&j, rels, 2);
    ms_error e;
    ms_error_clear(&e);
    err_ctx x = {.fail_at = -1, .fail_slot = -1};
    cr_assert_eq(ms_stream_run(&j.job, NULL, NULL, NULL, &x, &e), MS_ERR_USAGE);
    /* two tensors of different shapes in one slot */
    const ms_tensor *swapped[2] = {ms_model_find(j.m[0], "lm_head.weight"),
                                   ms_model_find(j.m[1], "model.norm.weight")};
    cr_assert(swapped[0] && swapped[1]);
    ms_stream_job bad = {j.job.models, 2, swapped, 1};
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&bad, NULL, err_fn, NULL, &x, &e), MS_ERR_MISMATCH);
    /* a memory limit below one worker's buffers */
    ms_stream_opts tight = {.threads = 2, .chunk_elems = 1 << 16, .max_memory = 1000};
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&j.job, &tight, err_fn, NULL, &x, &e), MS_ERR_NOMEM);
    cr_assert_eq(x.calls, 0);
    job_close(&j);
}

typedef struct worker_ctx {
    atomic_int max_worker;
    uint64_t last_done, total;
    int progress_calls, went_back;
} worker_ctx;

static ms_status worker_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    worker_ctx *w = p;
    (void)err;
    int cur = w->max_worker;
    while (c->worker > cur && !atomic_compare_exchange_weak(&w->max_worker, &cur, c->worker))
        ;
    return MS_OK;
}

static void worker_progress(void *p, uint64_t done, uint64_t total)
{
    worker_ctx *w = p;
    if (done < w->last_done)
        w->went_back++;
    w->last_done = done;
    w->total = total;
    w->progress_calls++;
}

Test(stream, memory_limit_reduces_workers_and_progress_reaches_total)
{
    static const char *const rels[] = {"tiny/base", "tiny/donor1"};
    job_fix j;
    job_open(&j, rels, 2);
    /* largest chunk: 1000 elements -> 15 rows of 64 = 960 floats, or one
     * 176-float row; 2 models x 960 x 4 bytes per worker */
    size_t per_worker = 2 * 960 * sizeof(float);
    ms_stream_opts o = {.threads = 3, .chunk_elems = 1000, .max_memory = per_worker,
                        .progress = worker_progress};
    worker_ctx w = {0};
    o.progress_ctx = &w;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&j.job, &o, worker_fn, NULL, &w, &e), MS_OK, "%s", e.msg);
    cr_assert_eq(w.max_worker, 0, "only one worker fits the limit");
    uint64_t bytes = 0;
    for (size_t s = 0; s < j.n_slots * 2; s++)
        bytes += j.tensors[s]->nbytes;
    cr_assert_eq(w.total, bytes);
    cr_assert_eq(w.last_done, bytes);
    cr_assert_eq(w.went_back, 0);
    cr_assert_gt(w.progress_calls, 1);
    job_close(&j);
}

/* ==== memory ==== */

static long vm_kb(const char *key)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fp && fgets(line, sizeof(line), fp))
        if (!strncmp(line, key, n) && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (fp)
        fclose(fp);
    return v;
}

typedef struct mem_ctx {
    double *sum;                /* per worker */
} mem_ctx;

static ms_status mem_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    mem_ctx *m = p;
    (void)err;
    double s = 0.0;
    for (int64_t i = 0; i < c->nrows * c->n_cols; i++)
        s += c->x[0][i];
    m->sum[c->worker] += s;
    return MS_OK;
}

Test(stream, resident_memory_stays_bounded_on_a_large_model, .timeout = 300)
{
    /* 100 tensors of 1024 x 1024 f32 = 400 MiB, streamed in 1 MiB chunks */
    enum { N = 100, ROWS = 1024, COLS = 1024 };
    char *dir = ms_test_tmpdir();
    cr_assert_not_null(dir);
    char *path = ms_path_join(dir, "big.safetensors");
    float *data = malloc((size_t)ROWS * COLS * sizeof(float));
    double expect = 0.0;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
        data[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
        expect += data[i];
    }
    msf_tensor t[N];
    char names[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "t%03d.weight", i);
        t[i] = (msf_tensor){.name = names[i], .dtype = MS_DTYPE_F32, .ndim = 2,
                            .shape = {ROWS, COLS}, .data = data};
    }
    cr_assert(msf_write_safetensors(path, t, N, NULL, 0));
    free(data);

    ms_model *m = NULL;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_model_open(path, &m, &e), MS_OK, "%s", e.msg);
    const ms_tensor **tensors = malloc(m->n_tensors * sizeof(*tensors));
    for (size_t i = 0; i < m->n_tensors; i++)
        tensors[i] = &m->tensors[i];
    const ms_model *models[1] = {m};
    ms_stream_job job = {models, 1, tensors, m->n_tensors};
    double sums[2] = {0.0, 0.0};
    mem_ctx mc = {sums};
    ms_stream_opts o = {.threads = 2, .chunk_elems = (1u << 20) / sizeof(float)};

    /* reset the high-water mark (Linux >= 4.0), else measure from now */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) {
        fputs("5", cr);
        fclose(cr);
    }
    long before = vm_kb("VmHWM"), rss_before = vm_kb("VmRSS");
    cr_assert_eq(ms_stream_run(&job, &o, mem_fn, NULL, &mc, &e), MS_OK, "%s", e.msg);
    long after = vm_kb("VmHWM");
    long base = before < rss_before ? before : rss_before;
    cr_assert_gt(after, 0, "no VmHWM in /proc/self/status");
    cr_assert_lt(after - base, 100 * 1024, "peak RSS grew by %ld kB streaming 400 MiB",
                 after - base);
    cr_assert(fabs(sums[0] + sums[1] - expect * N) <= 1e-6 * expect * N);
    cr_log_info("stream: peak RSS grew by %ld kB over 400 MiB with 1 MiB chunks",
                after - base);

    free(tensors);
    ms_model_close(m);
    unlink(path);
    rmdir(dir);
    free(path);
    free(dir);
}

/* ==== matching ==== */

Test(stream, match_lists_missing_and_reshaped_tensors)
{
    ms_model *base = open_gen("tiny/base");
    ms_model *stack = open_gen("tiny/merged-passthrough");
    ms_model *demo = open_gen("demo/base");
    const ms_tensor **ts;
    size_t n, n_skip;
    ms_stream_skip *skip;
    ms_error e;
    ms_error_clear(&e);

    /* the 6-layer stack has every tensor of the 4-layer base */
    const ms_model *ab[2] = {base, stack};
    cr_assert_eq(ms_stream_match(ab, 2, &ts, &n, &skip, &n_skip, &e), MS_OK);
    cr_assert_eq(n, base->n_tensors);
    cr_assert_eq(n_skip, 0);
    for (size_t s = 0; s < n; s++)
        cr_assert_str_eq(ts[s * 2]->name, ts[s * 2 + 1]->name);
    free(ts);
    free(skip);

    /* the other way round, layers 4 and 5 are missing from the base */
    const ms_model *ba[2] = {stack, base};
    cr_assert_eq(ms_stream_match(ba, 2, &ts, &n, &skip, &n_skip, &e), MS_OK);
    cr_assert_eq(n, base->n_tensors);
    cr_assert_eq(n_skip, 2 * 9);
    for (size_t s = 0; s < n_skip; s++) {
        cr_assert_eq(skip[s].reason, 0);
        cr_assert_eq(skip[s].model, 1);
        cr_assert(ms_str_startswith(skip[s].name, "model.layers.4.") ||
                  ms_str_startswith(skip[s].name, "model.layers.5."), "%s", skip[s].name);
    }
    free(ts);
    free(skip);

    /* tiny and demo share names but no shape */
    const ms_model *td[2] = {base, demo};
    cr_assert_eq(ms_stream_match(td, 2, &ts, &n, &skip, &n_skip, &e), MS_OK);
    cr_assert_eq(n, 0);
    cr_assert_eq(n_skip, base->n_tensors);
    for (size_t s = 0; s < n_skip; s++)
        cr_assert_eq(skip[s].reason, 1, "%s", skip[s].name);
    free(ts);
    free(skip);

    ms_model_close(base);
    ms_model_close(stack);
    ms_model_close(demo);
}

static ms_status never_fn(void *p, const ms_stream_chunk *c, ms_error *err)
{
    (void)c;
    (void)err;
    (*(atomic_int *)p) += 1000;
    return MS_OK;
}

static ms_status count_done(void *p, size_t slot, ms_error *err)
{
    (void)slot;
    (void)err;
    (*(atomic_int *)p)++;
    return MS_OK;
}

Test(stream, empty_slots_get_tensor_done_only)
{
    /* zero-row tensors are never decoded: the models are never touched */
    ms_model m = {0};
    ms_tensor t[2] = {{.name = "a", .n_rows = 0, .n_cols = 5},
                      {.name = "b", .n_rows = 3, .n_cols = 0}};
    const ms_model *models[1] = {&m};
    const ms_tensor *ts[2] = {&t[0], &t[1]};
    ms_stream_job job = {models, 1, ts, 2};
    for (int threads = 1; threads <= 3; threads++) {
        atomic_int calls = 0;
        ms_stream_opts o = {.threads = threads, .max_memory = 1};
        ms_error e;
        ms_error_clear(&e);
        cr_assert_eq(ms_stream_run(&job, &o, never_fn, count_done, &calls, &e), MS_OK,
                     "%s", e.msg);
        cr_assert_eq(calls, 2, "tensor_done twice and fn never (%d)", (int)calls);
    }
    ms_stream_job none = {models, 1, ts, 0};
    atomic_int calls = 0;
    ms_error e;
    ms_error_clear(&e);
    cr_assert_eq(ms_stream_run(&none, NULL, never_fn, count_done, &calls, &e), MS_OK);
    cr_assert_eq(calls, 0);
}
