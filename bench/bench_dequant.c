/*
 * bench_dequant.c - single-thread decoding speed of every quantized type.
 *
 * For each type a large tensor of random blocks (scale fields kept finite)
 * is decoded in row chunks into one cache-resident float buffer, as the
 * streaming core uses ms_dequant. Beside it, in the same run, a plain
 * memory-read loop over the same bytes is timed.
 *
 * usage: bench_dequant [--elems N] [--chunk N] [--reps R] [TYPE...]
 * Output: one line per type, tab-separated:
 *   type  Mel/s  decode_GB/s(in)  read_GB/s  ratio_to_read
 * (ratio_to_read = read time of the bytes / decode time of the same bytes;
 * 1.0 would mean decoding costs no more than reading them.)
 * Times are the thread's CPU time, best of --reps.
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

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint8_t next_byte(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint8_t)(rng >> 24);
}

/* Random bytes, bit 6 cleared in every byte: fp16 scales stay finite. */
static void fill(uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        p[i] = next_byte() & 0xbf;
}

/* Plain read of n bytes: the memory-speed baseline. */
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
    for (; i < n; i++)
        s0 += p[i];
    return s0 + s1 + s2 + s3;
}

typedef struct bench_args {
    uint64_t elems;
    uint64_t chunk;
    int reps;
} bench_args;

static int bench_type(ms_dtype dt, const bench_args *a, float *buf)
{
    uint64_t nbytes, cbytes;
    if (!ms_dtype_nbytes(dt, a->elems, &nbytes) || !ms_dtype_nbytes(dt, a->chunk, &cbytes))
        return 1;
    uint8_t *src = malloc(nbytes);
    if (!src)
        return 1;
    fill(src, nbytes);
    double best = 1e30, best_read = 1e30;
    volatile uint64_t sink = 0;
    volatile float fsink = 0;
    for (int r = 0; r < a->reps; r++) {
        double t0 = cpu_now();
        for (uint64_t off = 0; off < a->elems; off += a->chunk) {
            if (ms_dtype_to_f32(dt, src + off / a->chunk * cbytes, a->chunk, buf) != MS_OK) {
                free(src);
                return 1;
            }
            fsink += buf[off % a->chunk];
        }
        double t1 = cpu_now();
        sink += read_all(src, nbytes);
        double t2 = cpu_now();
        best = t1 - t0 < best ? t1 - t0 : best;
        best_read = t2 - t1 < best_read ? t2 - t1 : best_read;
    }
    printf("%s\t%.0f\t%.2f\t%.2f\t%.3f\n", ms_dtype_name(dt), a->elems / best / 1e6,
           nbytes / best / 1e9, nbytes / best_read / 1e9, best_read / best);
    (void)sink;
    (void)fsink;
    free(src);
    return 0;
}

int main(int argc, char **argv)
{
    bench_args a = {1u << 24, 1u << 16, 5};
    int first_type = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--elems") && i + 1 < argc)
            a.elems = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc)
            a.chunk = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            a.reps = (int)strtol(argv[++i], NULL, 10);
        else {
            first_type = i;
            break;
        }
    }
    if (!a.chunk || a.chunk % 256 || a.elems % a.chunk || a.reps < 1) {
        fprintf(stderr, "bench_dequant: --chunk must be a multiple of 256 dividing --elems\n");
        return 2;
    }
    float *buf = malloc(a.chunk * sizeof(float));
    if (!buf)
        return 1;
    printf("# type\tMel/s\tdecode_GB/s\tread_GB/s\tratio_to_read\n");
    int rc = 0;
    if (first_type < argc) {
        for (int i = first_type; i < argc; i++) {
            ms_dtype dt = ms_dtype_from_name(argv[i]);
            if (!ms_dtype_get(dt)->is_quant || !ms_dtype_can_decode(dt)) {
                fprintf(stderr, "bench_dequant: not a decodable quant type: %s\n", argv[i]);
                rc = 2;
                continue;
            }
            rc |= bench_type(dt, &a, buf);
        }
    } else {
        for (int dt = 1; dt < MS_DTYPE_COUNT; dt++)
            if (ms_dtype_get((ms_dtype)dt)->is_quant && ms_dtype_can_decode((ms_dtype)dt))
                rc |= bench_type((ms_dtype)dt, &a, buf);
    }
    free(buf);
    return rc;
}
