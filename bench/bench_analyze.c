/*
 * bench_analyze.c - one measurement per run, so each gets its own peak RSS:
 *
 *   bench_analyze raw MODEL...          read every byte of the mapped files
 *                                       (2 threads, 64 MiB blocks, uint64 sum)
 *   bench_analyze compare MODEL...      ms_compare_run over the models
 *   bench_analyze attribute BASE MERGED DONOR...
 *   bench_analyze provenance MERGED DONOR...
 *
 * Prints one line: mode, bytes, seconds, GB/s, peak RSS (MiB), CPU seconds
 * (user + system, all threads). Threads come
 * from MS_BENCH_THREADS (default 2). bench/bench_analyze.sh runs the modes
 * and the numpy peer in one go and prints the ratios.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mergescope/analyze.h"
#include "mergescope/model.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define BLOCK (64u << 20)

typedef struct raw_job {
    ms_map *maps;
    size_t n_maps;
    size_t n_blocks;
    size_t *blk_map;       /* block -> map */
    uint64_t *blk_off;     /* block -> offset */
    atomic_size_t next;
    atomic_uint_fast64_t sum;
} raw_job;

static void *raw_worker(void *arg)
{
    raw_job *j = arg;
    uint64_t s = 0;
    for (;;) {
        size_t b = atomic_fetch_add(&j->next, 1);
        if (b >= j->n_blocks)
            break;
        const ms_map *m = &j->maps[j->blk_map[b]];
        uint64_t off = j->blk_off[b];
        uint64_t len = m->size - off < BLOCK ? m->size - off : BLOCK;
        const uint8_t *p = m->data + off;
        uint64_t w = 0;
        size_t n8 = (size_t)(len / 8);
        for (size_t i = 0; i < n8; i++) {
            uint64_t v;
            memcpy(&v, p + i * 8, 8);
            w += v;
        }
        for (size_t i = n8 * 8; i < len; i++)
            w += p[i];
        s += w;
        ms_map_release(p, len);
    }
    atomic_fetch_add(&j->sum, s);
    return NULL;
}

static int raw_read(ms_model **models, size_t n, int threads, uint64_t *bytes)
{
    raw_job j;
    memset(&j, 0, sizeof(j));
    size_t nf = 0;
    for (size_t i = 0; i < n; i++)
        nf += models[i]->n_files;
    j.maps = calloc(nf, sizeof(ms_map));
    ms_error err;
    ms_error_clear(&err);
    *bytes = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t f = 0; f < models[i]->n_files; f++) {
            if (ms_map_open(models[i]->files[f], &j.maps[j.n_maps], &err)) {
                fprintf(stderr, "bench: %s\n", err.msg);
                return 1;
            }
            j.n_blocks += (size_t)((j.maps[j.n_maps].size + BLOCK - 1) / BLOCK);
            *bytes += j.maps[j.n_maps].size;
            j.n_maps++;
        }
    j.blk_map = calloc(j.n_blocks, sizeof(size_t));
    j.blk_off = calloc(j.n_blocks, sizeof(uint64_t));
    size_t b = 0;
    for (size_t m = 0; m < j.n_maps; m++)
        for (uint64_t off = 0; off < j.maps[m].size; off += BLOCK) {
            j.blk_map[b] = m;
            j.blk_off[b++] = off;
        }
    pthread_t th[64];
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, raw_worker, &j);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    fprintf(stderr, "raw checksum %llu\n", (unsigned long long)atomic_load(&j.sum));
    for (size_t m = 0; m < j.n_maps; m++)
        ms_map_close(&j.maps[m]);
    free(j.maps);
    free(j.blk_map);
    free(j.blk_off);
    return 0;
}

static uint64_t model_bytes(ms_model **m, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += m[i]->data_bytes;
    return s;
}

static ms_status noop_chunk(void *ctx, const ms_stream_chunk *c, ms_error *err)
{
    (void)err;
    atomic_fetch_add((atomic_uint_fast64_t *)ctx, (uint64_t)(c->x[0][0] != 0));
    return MS_OK;
}

/* The streaming core alone: decode to f32, no reduction. */
static ms_status stream_only(ms_model **m, size_t n, const ms_stream_opts *o, ms_error *err)
{
    const ms_tensor **slots = NULL;
    size_t ns = 0, nsk = 0;
    ms_stream_skip *sk = NULL;
    ms_status st = ms_stream_match((const ms_model *const *)m, n, &slots, &ns, &sk, &nsk, err);
    atomic_uint_fast64_t cnt = 0;
    if (!st) {
        ms_stream_job job = {(const ms_model *const *)m, n, slots, ns};
        st = ms_stream_run(&job, o, noop_chunk, NULL, &cnt, err);
    }
    free(slots);
    free(sk);
    return st;
}

static int run(const char *mode, ms_model **m, size_t n, int threads, uint64_t *bytes)
{
    const char *ce = getenv("MS_BENCH_CHUNK");
    ms_stream_opts o = {threads, ce ? (size_t)strtoull(ce, NULL, 10) : 0, NULL, NULL, 0};
    ms_error err;
    ms_error_clear(&err);
    ms_status st = MS_OK;
    *bytes = model_bytes(m, n);
    if (!strcmp(mode, "raw"))
        return raw_read(m, n, threads, bytes);
    if (!strcmp(mode, "stream")) {
        st = stream_only(m, n, &o, &err);
    } else if (!strcmp(mode, "compare")) {
        ms_compare_result *r = NULL;
        st = ms_compare_run((const ms_model *const *)m, n, &o, &r, &err);
        if (!st)
            fprintf(stderr, "compare cosine 0-1 %.9f\n", r->overall.pairs[0].cosine);
        ms_compare_result_free(r);
    } else if (!strcmp(mode, "attribute") && n >= 3) {
        ms_attribute_result *r = NULL;
        st = ms_attribute_run(m[0], m[1], (const ms_model *const *)m + 2, n - 2, &o, NULL,
                              NULL, &r, &err);
        if (!st)
            fprintf(stderr, "attribute coef0 %.6f residual %.6f\n", r->overall.fit.coef[0],
                    r->overall.fit.residual);
        ms_attribute_result_free(r);
    } else if (!strcmp(mode, "provenance") && n >= 2) {
        ms_provenance_result *r = NULL;
        st = ms_provenance_run(m[0], (const ms_model *const *)m + 1, n - 1, &o, &r, &err);
        if (!st)
            fprintf(stderr, "provenance %zu layers, %zu slices\n", r->n_layers, r->n_slices);
        ms_provenance_result_free(r);
    } else {
        fprintf(stderr, "bench: unknown mode or too few models\n");
        return 2;
    }
    if (st) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_analyze raw|compare|attribute|provenance MODEL...\n");
        return 2;
    }
    const char *th = getenv("MS_BENCH_THREADS");
    int threads = th ? (int)strtol(th, NULL, 10) : 2;
    if (threads < 1 || threads > 64)
        threads = 2;
    size_t n = (size_t)argc - 2;
    ms_model **m = calloc(n, sizeof(*m));
    ms_error err;
    for (size_t i = 0; i < n; i++) {
        ms_error_clear(&err);
        if (ms_model_open(argv[i + 2], &m[i], &err)) {
            fprintf(stderr, "bench: %s: %s\n", argv[i + 2], err.msg);
            return 1;
        }
    }
    uint64_t bytes = 0;
    double t0 = ms_now();
    int rc = run(argv[1], m, n, threads, &bytes);
    double el = ms_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (!rc)
        printf("%s bytes %llu seconds %.3f gb_per_s %.3f rss_mib %.1f cpu_s %.3f\n", argv[1],
               (unsigned long long)bytes, el, (double)bytes / 1e9 / el,
               (double)ru.ru_maxrss / 1024.0,
               (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6
               + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6);
    for (size_t i = 0; i < n; i++)
        ms_model_close(m[i]);
    free(m);
    return rc;
}
