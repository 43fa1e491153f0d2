/*
 * convert.c - plain element types to float32, and the decode dispatcher.
 * f16 and bf16 have SIMD paths chosen at run time (F16C for f16; AVX2,
 * else SSE2, for bf16): they run at memory speed.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define MS_X86 1
#endif

#include "convert_impl.h"
#include "mergescope/dtype.h"
#include "mergescope/banned.h"

float ms_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        float f = ldexpf((float)man, -24);
        return sign ? -f : f;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float ms_bf16_to_f32(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ms_f32_to_bf16(float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((bits >> 16) | 0x40);
    bits += 0x7fffu + ((bits >> 16) & 1);
    return (uint16_t)(bits >> 16);
}

uint16_t ms_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u)
        return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000u) { /* subnormal or zero in half */
        float a;
        memcpy(&a, &ax, 4);
        float scaled = a * 16777216.0f; /* 2^24: units of the half subnormal */
        uint32_t m = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | m);
    }
    uint32_t r = ax + 0xfffu + ((ax >> 13) & 1);
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/* ==== vectorised f16 and bf16 ====
 * Both conversions are exact, so every path gives the same values; the only
 * difference allowed is that F16C returns signalling NaNs quietened. */

#if defined(MS_X86) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx,f16c")))
static size_t f16_f16c(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(a));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(b));
    }
    return i;
}

__attribute__((target("avx2")))
static size_t bf16_avx2(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i lo = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_castsi256_si128(v)), 16);
        __m256i hi = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm256_extracti128_si256(v, 1)), 16);
        _mm256_storeu_si256((__m256i *)(dst + i), lo);
        _mm256_storeu_si256((__m256i *)(dst + i + 8), hi);
    }
    return i;
}

/* SSE2 is part of x86-64: interleaving zeros below each value is bf16 << 16. */
static size_t bf16_sse2(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
    __m128i z = _mm_setzero_si128();
    for (; i + 8 <= n; i += 8) {
        __m128i v = _mm_loadu_si128((const __m128i *)(src + i));
        _mm_storeu_si128((__m128i *)(dst + i), _mm_unpacklo_epi16(z, v));
        _mm_storeu_si128((__m128i *)(dst + i + 4), _mm_unpackhi_epi16(z, v));
    }
    return i;
}

/*
 * F16C with AVX. Not CPUID directly: in a virtual machine it traps to the
 * hypervisor (microseconds per call, more than converting a chunk).
 * clang's __builtin_cpu_supports has no "f16c"; every CPU with AVX2 has
 * F16C, so there AVX2 stands in for it.
 */
static bool have_f16c(void)
{
#if defined(__clang__)
    return __builtin_cpu_supports("avx2");
#else
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
#endif
}

static bool have_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}
#endif

void ms_convert_f16(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
#if defined(MS_X86) && (defined(__GNUC__) || defined(__clang__))
    if (have_f16c())
        i = f16_f16c(src, n, dst);
#endif
    for (; i < n; i++)
        dst[i] = ms_f16_to_f32(src[i]);
}

void ms_convert_bf16(const uint16_t *src, size_t n, float *dst)
{
    size_t i = 0;
#if defined(MS_X86) && (defined(__GNUC__) || defined(__clang__))
    i = have_avx2() ? bf16_avx2(src, n, dst) : bf16_sse2(src, n, dst);
#endif
    for (; i < n; i++)
        dst[i] = ms_bf16_to_f32(src[i]);
}

/* The portable loops, kept for tests and benchmarks (convert_impl.h). */
void ms_convert_f16_scalar(const uint16_t *src, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ms_f16_to_f32(src[i]);
}

void ms_convert_bf16_scalar(const uint16_t *src, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ms_bf16_to_f32(src[i]);
}

static float f8_to_f32(uint8_t v, int exp_bits, int bias, bool e4m3)
{
    int man_bits = 7 - exp_bits;
    int sign = v >> 7;
    int exp = (v >> man_bits) & ((1 << exp_bits) - 1);
    int man = v & ((1 << man_bits) - 1);
    float f;
    if (e4m3 && exp == 15 && man == 7)
        f = NAN;
    else if (!e4m3 && exp == 31)
        f = man ? NAN : INFINITY;
    else if (exp == 0)
        f = ldexpf((float)man, 1 - bias - man_bits);
    else
        f = ldexpf((float)(man | (1 << man_bits)), exp - bias - man_bits);
    return sign ? -f : f;
}

/*
 * FP8 in bulk. E5M2 is the top byte of an fp16 (same exponent width and
 * bias), so it rides the vectorised f16 path; E4M3 goes through a 256-entry
 * table built per call (worth it from a few thousand elements on).
 */
static void convert_f8(const uint8_t *b, size_t n, float *dst, bool e4m3)
{
    if (!e4m3) {
        uint16_t h[512];
        for (size_t i = 0; i < n; i += 512) {
            size_t k = n - i < 512 ? n - i : 512;
            for (size_t j = 0; j < k; j++)
                h[j] = (uint16_t)(b[i + j] << 8);
            ms_convert_f16(h, k, dst + i);
        }
        return;
    }
    if (n < 4096) {
        for (size_t i = 0; i < n; i++)
            dst[i] = f8_to_f32(b[i], 4, 7, true);
        return;
    }
    float lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = f8_to_f32((uint8_t)v, 4, 7, true);
    for (size_t i = 0; i < n; i++)
        dst[i] = lut[b[i]];
}

bool ms_dtype_can_decode(ms_dtype dt)
{
    switch (dt) {
    case MS_DTYPE_INVALID:
    case MS_DTYPE_Q8_1:
    case MS_DTYPE_Q8_K:
        return false;
    default:
        return (unsigned)dt < MS_DTYPE_COUNT;
    }
}

ms_status ms_dtype_to_f32(ms_dtype dt, const void *src, size_t n, float *dst)
{
    const uint8_t *b = src;
    switch (dt) {
    case MS_DTYPE_F32: memcpy(dst, src, n * 4); return MS_OK;
    case MS_DTYPE_F16: ms_convert_f16(src, n, dst); return MS_OK;
    case MS_DTYPE_BF16: ms_convert_bf16(src, n, dst); return MS_OK;
    case MS_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, b + 8 * i, 8);
            dst[i] = (float)d;
        }
        return MS_OK;
    case MS_DTYPE_F8_E4M3: convert_f8(b, n, dst, true); return MS_OK;
    case MS_DTYPE_F8_E5M2: convert_f8(b, n, dst, false); return MS_OK;
    case MS_DTYPE_I8: for (size_t i = 0; i < n; i++) dst[i] = (int8_t)b[i]; return MS_OK;
    case MS_DTYPE_U8:
    case MS_DTYPE_BOOL: for (size_t i = 0; i < n; i++) dst[i] = b[i]; return MS_OK;
#define INT_CASE(T, C) \
    case T: for (size_t i = 0; i < n; i++) { C v; memcpy(&v, b + sizeof(C) * i, sizeof(C)); dst[i] = (float)v; } return MS_OK;
    INT_CASE(MS_DTYPE_I16, int16_t)
    INT_CASE(MS_DTYPE_I32, int32_t)
    INT_CASE(MS_DTYPE_I64, int64_t)
    INT_CASE(MS_DTYPE_U16, uint16_t)
    INT_CASE(MS_DTYPE_U32, uint32_t)
    INT_CASE(MS_DTYPE_U64, uint64_t)
#undef INT_CASE
    default:
        if (!ms_dtype_get(dt)->is_quant || !ms_dtype_can_decode(dt))
            return MS_ERR_UNSUPPORTED;
        if (n % ms_dtype_get(dt)->block_elems)
            return MS_ERR_USAGE;
        return ms_dequant(dt, src, n, dst);
    }
}
