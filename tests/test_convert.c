/*
 * test_convert.c - f16 and bf16 to f32: exact on every one of the 65536
 * inputs, whatever SIMD path runs, and ms_dtype_to_f32's contract.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert_impl.h"
#include "mergescope/dtype.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The IEEE binary16 value of h in closed form (no bit tricks). */
static double f16_value(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return h & 0x8000 ? -v : v;
}

/* All 65536 inputs, at unaligned offsets and odd lengths so that every
 * vector body and scalar tail runs. */
Test(convert, f16_every_value_exact)
{
    enum { N = 65536 };
    uint16_t *src = malloc((N + 3) * 2);
    float *dst = malloc((N + 3) * 4);
    for (int off = 0; off < 3; off++) {
        for (int i = 0; i < N; i++)
            src[off + i] = (uint16_t)i;
        ms_convert_f16(src + off, N - off, dst + off);
        for (int i = 0; i < N - off; i++) {
            uint16_t h = (uint16_t)i;
            float f = dst[off + i];
            if (((h >> 10) & 31) == 31) {
                if (h & 1023)
                    cr_assert(isnan(f) && !!signbit(f) == !!(h & 0x8000), "h=%04x", h);
                else
                    cr_assert(isinf(f) && !!signbit(f) == !!(h & 0x8000), "h=%04x", h);
                continue;
            }
            cr_assert_eq((double)f, f16_value(h), "h=%04x", h);
            cr_assert_eq(bits(f), bits(ms_f16_to_f32(h)), "h=%04x", h);
            cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0, "h=%04x", h);
        }
    }
    free(src);
    free(dst);
}

Test(convert, bf16_every_value_exact)
{
    enum { N = 65536 };
    uint16_t *src = malloc((N + 5) * 2);
    float *dst = malloc((N + 5) * 4), *ref = malloc((N + 5) * 4);
    for (int off = 0; off < 5; off += 2) {
        for (int i = 0; i < N; i++)
            src[off + i] = (uint16_t)i;
        ms_convert_bf16(src + off, N - off, dst);
        ms_convert_bf16_scalar(src + off, N - off, ref);
        for (int i = 0; i < N - off; i++)
            cr_assert_eq(bits(dst[i]), (uint32_t)i << 16, "b=%04x", i);
        cr_assert(!memcmp(dst, ref, (size_t)(N - off) * 4));
    }
    free(src);
    free(dst);
    free(ref);
}

Test(convert, round_trips_to_nearest_even)
{
    /* 1 + 2^-11 is halfway between two halves: ties to even (1.0) */
    cr_assert_eq(ms_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    cr_assert_eq(ms_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    cr_assert_eq(ms_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(ms_f32_to_f16(0x1p-24f), 0x0001);
    cr_assert_eq(ms_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    cr_assert_eq(ms_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    cr_assert_eq(ms_f32_to_bf16(NAN) & 0x7fc0, 0x7fc0);
    for (int h = 0; h < 0x7c00; h++)
        cr_assert_eq(ms_f32_to_f16(ms_f16_to_f32((uint16_t)h)), h);
}

Test(convert, dtype_to_f32_contract)
{
    uint16_t h[3] = {0x3c00, 0xc000, 0x0001};
    float out[3];
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_F16, h, 3, out), MS_OK);
    cr_assert_eq(out[0], 1.0f);
    cr_assert_eq(out[1], -2.0f);
    cr_assert_eq(out[2], 0x1p-24f);
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_BF16, h, 1, out), MS_OK);
    cr_assert_eq(out[0], 0x1p-7f); /* bf16 0x3c00 is 2^-7 */
    uint8_t e4[2] = {0x38, 0x7f}; /* 1.0 and NaN in E4M3 */
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_F8_E4M3, e4, 2, out), MS_OK);
    cr_assert_eq(out[0], 1.0f);
    cr_assert(isnan(out[1]));
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_INVALID, h, 1, out), MS_ERR_UNSUPPORTED);
    cr_assert_eq(ms_dtype_to_f32(MS_DTYPE_Q4_K, h, 100, out), MS_ERR_USAGE);
}

/* The OCP FP8 formats in closed form: E4M3 (bias 7, no infinities, only
 * S.1111.111 is NaN) and E5M2 (bias 15, IEEE-like), every byte, through
 * both the short and the bulk paths. */
static double f8_value(int v, int ebits, int bias, bool e4m3, bool *nan, bool *inf)
{
    int mbits = 7 - ebits, e = (v >> mbits) & ((1 << ebits) - 1), m = v & ((1 << mbits) - 1);
    *nan = e4m3 ? (e == 15 && m == 7) : (e == 31 && m);
    *inf = !e4m3 && e == 31 && !m;
    double x = e ? ldexp((1 << mbits) + m, e - bias - mbits) : ldexp(m, 1 - bias - mbits);
    return v & 0x80 ? -x : x;
}

Test(convert, fp8_every_value)
{
    enum { N = 256 * 32 };
    uint8_t *src = malloc(N);
    float *dst = malloc(N * 4);
    for (int i = 0; i < N; i++)
        src[i] = (uint8_t)i;
    for (int f = 0; f < 2; f++) {
        ms_dtype dt = f ? MS_DTYPE_F8_E5M2 : MS_DTYPE_F8_E4M3;
        for (size_t n = 256; n <= N; n *= 32) {
            cr_assert_eq(ms_dtype_to_f32(dt, src, n, dst), MS_OK);
            for (size_t i = 0; i < n; i++) {
                bool nan, inf;
                double want = f ? f8_value((int)(i & 255), 5, 15, false, &nan, &inf)
                                : f8_value((int)(i & 255), 4, 7, true, &nan, &inf);
                if (nan)
                    cr_assert(isnan(dst[i]), "%s %02zx", ms_dtype_name(dt), i & 255);
                else if (inf)
                    cr_assert(isinf(dst[i]) && (dst[i] < 0) == !!(i & 0x80));
                else
                    cr_assert_eq((double)dst[i], want, "%s %02zx", ms_dtype_name(dt), i & 255);
            }
        }
    }
    free(src);
    free(dst);
}
