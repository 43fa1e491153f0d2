/*
 * bench_stream.c - throughput of the streaming core against a plain
 * single-threaded decode of the same mapped file.
 *
 * Writes a bf16 safetensors model (default 64 tensors of 2048 x 2048,
 * 512 MiB) to a temporary directory, then, with the pages in the page cache:
 *   baseline: one thread decodes every tensor with ms_model_read_rows in
 *             1 Mi-element chunks into one buffer, sums it and releases the
 *             pages (as the stream does, to keep RSS bounded);
 *   baseline_pages_kept: the same without releasing, on a second pass with
 *             every page still mapped (what bounded memory gives up);
 * Each timed pass except that one starts with the model's pages unmapped
 * but in the page cache.
 *   stream:   ms_stream_run over the same model (k = 1 and k = 2, the same
 *             model twice) doing the same sum, for 1 thread and all cores.
 * Best of several repetitions. Output, tab-separated:
 *   what  threads  k  GB/s_of_source  ratio_to_baseline  cpu_s_per_GB  cpu_ratio
 * (ratio ~1 at 1 thread means the pool costs nothing; with more threads it
 * shows the scaling. cpu_ratio, CPU seconds per byte against the baseline,
 * is the figure to read on a busy machine.)
 *
 * usage: bench_stream [--tensors N] [--rows R] [--cols C] [--reps R] [--dir D]
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "mergescope/model.h"
#include "mergescope/stream.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define CHUNK ((size_t)1 << 20)

/* User + system CPU seconds of the whole process (all threads). On a busy
 * machine wall time is noise; CPU time per byte still shows the overhead. */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

static int write_model(const char *path, int n, int64_t rows, int64_t cols)
{
    ms_sb hdr = MS_SB_INIT;
    uint64_t nb = (uint64_t)rows * (uint64_t)cols * 2, off = 0;
    ms_sb_addc(&hdr, '{');
    for (int i = 0; i < n; i++, off += nb)
        ms_sb_addf(&hdr, "%s\"t%04d.weight\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],"
                   "\"data_offsets\":[%llu,%llu]}", i ? "," : "", i, (long long)rows,
                   (long long)cols, (unsigned long long)off, (unsigned long long)(off + nb));
    ms_sb_addc(&hdr, '}');
    while (hdr.len % 8)
        ms_sb_addc(&hdr, ' ');
    FILE *fp = fopen(path, "wb");
    uint16_t *row = malloc((size_t)cols * 2);
    if (!fp || !row)
        return -1;
    uint64_t len = hdr.len;
    fwrite(&len, 8, 1, fp);
    fwrite(hdr.buf, 1, hdr.len, fp);
    uint32_t x = 12345;
    for (int i = 0; i < n; i++) {
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c++) {
                x = x * 1664525u + 1013904223u;
                row[c] = ms_f32_to_bf16((float)(x >> 8) / 16777216.0f - 0.5f);
            }
            fwrite(row, 2, (size_t)cols, fp);
        }
    }
    free(row);
    ms_sb_free(&hdr);
    return fclose(fp) == 0 ? 0 : -1;
}

/* A light reduction (eight float lanes), so the figures show the cost of
 * getting the floats, not of adding them. */
static double sum_floats(const float *x, size_t n)
{
    float acc[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l];
    double s = 0.0;
    for (; i < n; i++)
        s += x[i];
    for (int l = 0; l < 8; l++)
        s += acc[l];
    return s;
}

/* Unmap every page of the model (they stay in the page cache), so each
 * timed pass starts from the same state. */
static void drop_all(const ms_model *m)
{
    for (size_t i = 0; i < m->n_tensors; i++)
        ms_model_release_rows(m, &m->tensors[i], 0, m->tensors[i].n_rows);
}

/* One thread, the same chunks; release: drop the pages after each chunk
 * as the stream does (else they stay mapped from the previous pass). */
static double baseline(const ms_model *m, float *buf, bool release, double *sum,
                       double *cpu)
{
    double t0 = ms_now(), c0 = cpu_now(), s = 0.0;
    ms_error e;
    ms_error_clear(&e);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        int64_t r = ms_stream_rows_per_chunk(NULL, t->n_rows, t->n_cols);
        for (int64_t row = 0; row < t->n_rows; row += r) {
            int64_t nr = t->n_rows - row < r ? t->n_rows - row : r;
            if (ms_model_read_rows(m, t, row, nr, buf, &e))
                return -1.0;
            s += sum_floats(buf, (size_t)(nr * t->n_cols));
            if (release)
                ms_model_release_rows(m, t, row, nr);
        }
    }
    *sum = s;
    *cpu = cpu_now() - c0;
    return ms_now() - t0;
}

typedef struct sum_ctx {
    double part[256];
} sum_ctx;

static ms_status sum_fn(void *ctx, const ms_stream_chunk *c, ms_error *err)
{
    sum_ctx *s = ctx;
    double acc = 0.0;
    (void)err;
    for (size_t k = 0; k < c->k; k++)
        acc += sum_floats(c->x[k], (size_t)(c->nrows * c->n_cols));
    s->part[c->worker] += acc;
    return MS_OK;
}

static double run_stream(const ms_model *m, size_t k, int threads, double *cpu)
{
    const ms_model *models[2] = {m, m};
    const ms_tensor **ts = malloc(m->n_tensors * k * sizeof(*ts));
    for (size_t i = 0; i < m->n_tensors; i++)
        for (size_t j = 0; j < k; j++)
            ts[i * k + j] = &m->tensors[i];
    ms_stream_job job = {models, k, ts, m->n_tensors};
    ms_stream_opts o = {.threads = threads, .chunk_elems = CHUNK};
    sum_ctx s;
    memset(&s, 0, sizeof(s));
    ms_error e;
    ms_error_clear(&e);
    double t0 = ms_now(), c0 = cpu_now();
    ms_status st = ms_stream_run(&job, &o, sum_fn, NULL, &s, &e);
    double dt = ms_now() - t0;
    *cpu = cpu_now() - c0;
    free(ts);
    if (st) {
        fprintf(stderr, "bench_stream: %s\n", e.msg);
        return -1.0;
    }
    return dt;
}

int main(int argc, char **argv)
{
    int n = 64, reps = 3;
    int64_t rows = 2048, cols = 2048;
    const char *dir = "/tmp";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tensors"))
            n = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--rows"))
            rows = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--cols"))
            cols = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--reps"))
            reps = (int)strtol(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--dir"))
            dir = argv[i + 1];
    }
    char *path = ms_path_join(dir, "bench_stream.safetensors");
    if (!path || write_model(path, n, rows, cols)) {
        fprintf(stderr, "bench_stream: cannot write %s\n", path ? path : dir);
        return 1;
    }
    ms_model *m = NULL;
    ms_error e;
    ms_error_clear(&e);
    if (ms_model_open(path, &m, &e)) {
        fprintf(stderr, "bench_stream: %s\n", e.msg);
        return 1;
    }
    float *buf = malloc(CHUNK * sizeof(float));
    double sum = 0.0, best_base = 1e30, best_keep = 1e30, cpu, cpu_base = 1e30,
           cpu_keep = 1e30;
    double gb = (double)m->data_bytes / 1e9;
    for (int r = 0; r < reps; r++) {
        drop_all(m);
        double t = baseline(m, buf, true, &sum, &cpu);
        if (t > 0 && t < best_base)
            best_base = t;
        if (cpu < cpu_base)
            cpu_base = cpu;
        drop_all(m);
        baseline(m, buf, false, &sum, &cpu); /* map everything, then time */
        t = baseline(m, buf, false, &sum, &cpu);
        if (t > 0 && t < best_keep)
            best_keep = t;
        if (cpu < cpu_keep)
            cpu_keep = cpu;
    }
    printf("what\tthreads\tk\tGB/s\tratio_to_baseline\tcpu_s_per_GB\tcpu_ratio\n");
    printf("baseline\t1\t1\t%.2f\t1.00\t%.3f\t1.00\n", gb / best_base, cpu_base / gb);
    printf("baseline_pages_kept\t1\t1\t%.2f\t%.2f\t%.3f\t%.2f\n", gb / best_keep,
           best_base / best_keep, cpu_keep / gb, cpu_keep / cpu_base);
    int cores = ms_cpu_count();
    for (size_t k = 1; k <= 2; k++) {
        for (int threads = 1; threads <= cores; threads = threads == cores ? cores + 1
                                                      : (threads * 2 > cores ? cores : threads * 2)) {
            double best = 1e30, best_cpu = 1e30;
            for (int r = 0; r < reps; r++) {
                drop_all(m);
                double t = run_stream(m, k, threads, &cpu);
                if (t > 0 && t < best)
                    best = t;
                if (t > 0 && cpu < best_cpu)
                    best_cpu = cpu;
            }
            /* per model's bytes: k models stream k x the source */
            double rate = gb * (double)k / best, cpu_gb = best_cpu / (gb * (double)k);
            printf("stream\t%d\t%zu\t%.2f\t%.2f\t%.3f\t%.2f\n", threads, k, rate,
                   rate / (gb / best_base), cpu_gb, cpu_gb / (cpu_base / gb));
        }
    }
    free(buf);
    ms_model_close(m);
    unlink(path);
    free(path);
    return 0;
}
