/*
 * bench_convert.c - f16 and bf16 to f32 throughput against memory speed.
 *
 * A large source array (default 64 Mi elements, 128 MiB, well beyond the
 * caches) is converted in row chunks into one cache-resident float buffer,
 * as the streaming core does. In the same run a plain memory-read loop
 * over the same bytes gives the baseline. Best of several repetitions.
 *
 * usage: bench_convert [--elems N] [--chunk N] [--reps R]
 * Output, tab-separated: what  Mel/s  source_GB/s  ratio_to_read
 * (ratio_to_read >= 0.8 is the target: converting costs about a read).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mergescope/dtype.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* CPU time of this thread: other processes on a busy machine do not count
 * (one thread, so CPU time is the work done). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The portable loops in convert.c (lib/convert_impl.h), for comparison. */
void ms_convert_f16_scalar(const uint16_t *src, size_t n, float *dst);
void ms_convert_bf16_scalar(const uint16_t *src, size_t n, float *dst);

typedef void (*conv_fn)(const uint16_t *src, size_t n, float *dst);

static uint64_t read_all(const uint8_t *p, uint64_t n)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, p + i, 8);
        memcpy(&b, p + i + 8, 8);
        memcpy(&c, p + i + 16, 8);
        memcpy(&d, p + i + 24, 8);
        s0 += a, s1 += b, s2 += c, s3 += d;
    }
    return s0 + s1 + s2 + s3;
}

static double time_conv(conv_fn fn, const uint16_t *src, uint64_t n, uint64_t chunk,
                        float *buf)
{
    double t0 = cpu_now();
    for (uint64_t off = 0; off < n; off += chunk)
        fn(src + off, chunk, buf);
    return cpu_now() - t0;
}

int main(int argc, char **argv)
{
    uint64_t n = 1u << 26, chunk = 1u << 16;
    int reps = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--elems"))
            n = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--chunk"))
            chunk = strtoull(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--reps"))
            reps = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (!chunk || n % chunk || reps < 1) {
        fprintf(stderr, "bench_convert: --chunk must divide --elems\n");
        return 2;
    }
    uint16_t *src = malloc(n * 2);
    float *buf = malloc(chunk * 4);
    if (!src || !buf)
        return 1;
    uint64_t s = 88172645463325252ull;
    for (uint64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        src[i] = (uint16_t)(s & 0x7bff); /* finite halves and bf16s */
    }
    static const struct {
        const char *name;
        conv_fn fn;
    } runs[] = {
        {"f16", ms_convert_f16},
        {"bf16", ms_convert_bf16},
        {"f16_scalar", ms_convert_f16_scalar},
        {"bf16_scalar", ms_convert_bf16_scalar},
    };
    double best[4] = {1e30, 1e30, 1e30, 1e30}, best_read = 1e30;
    volatile uint64_t sink = 0;
    for (int r = 0; r < reps; r++) {
        for (size_t k = 0; k < MS_ARRAY_SIZE(runs); k++) {
            double t = time_conv(runs[k].fn, src, n, chunk, buf);
            best[k] = t < best[k] ? t : best[k];
        }
        double t0 = cpu_now();
        sink += read_all((const uint8_t *)src, n * 2);
        double t = cpu_now() - t0;
        best_read = t < best_read ? t : best_read;
    }
    (void)sink;
    printf("# what\tMel/s\tsource_GB/s\tratio_to_read\n");
    printf("read\t%.0f\t%.2f\t1.000\n", n / best_read / 1e6, n * 2.0 / best_read / 1e9);
    for (size_t k = 0; k < MS_ARRAY_SIZE(runs); k++)
        printf("%s\t%.0f\t%.2f\t%.3f\n", runs[k].name, n / best[k] / 1e6,
               n * 2.0 / best[k] / 1e9, best_read / best[k]);
    free(src);
    free(buf);
    return 0;
}
