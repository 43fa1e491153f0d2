/*
 * convert.c - plain element types to float32, and the decode dispatcher.
 * (Scalar first version; the dequantization work vectorises it.)
 */
#include <math.h>
#include <string.h>

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

void ms_convert_f16(const uint16_t *src, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ms_f16_to_f32(src[i]);
}

void ms_convert_bf16(const uint16_t *src, size_t n, float *dst)
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
    case MS_DTYPE_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = f8_to_f32(b[i], 4, 7, true);
        return MS_OK;
    case MS_DTYPE_F8_E5M2:
        for (size_t i = 0; i < n; i++) dst[i] = f8_to_f32(b[i], 5, 15, false);
        return MS_OK;
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
