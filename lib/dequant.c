/*
 * dequant.c - every quantized ggml type to float32, bit-exact with ggml.
 *
 * Each decoder takes whole blocks. Every product of an fp16 scale, integer
 * sub-scales and quant or table values is exact in binary32 (at most 23
 * significant bits), and the only rounding is the final subtraction of a
 * min, so any association order (and FMA or not) gives ggml's bits. What
 * must not happen is flush-to-zero: MXFP4 scales can be float subnormals.
 *
 * Block layouts are in ../shared/research/gguf-facts.md, section 3. Hot
 * types have an AVX2 path chosen at run time (__builtin_cpu_supports); the
 * scalar path is the reference and runs everywhere.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define MS_X86 1
#endif

#include "dequant_impl.h"
#include "iq_grids.h"
#include "mergescope/dtype.h"
#include "mergescope/banned.h"

typedef void (*decode_fn)(const uint8_t *x, size_t nb, float *y);

/* ==== small helpers ==== */

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/*
 * Exact fp16 to fp32 without branches on the common path: normals are
 * rebiased by a multiply by 2^-112 (exact), subnormals come out of a
 * magic-number subtraction (exact too).
 */
static inline float h2f(uint16_t h)
{
    uint32_t w = (uint32_t)h << 16;
    uint32_t sign = w & 0x80000000u;
    uint32_t two_w = w + w;
    float norm = bits_f32((two_w >> 4) + (0xe0u << 23)) * 0x1.0p-112f;
    float denorm = bits_f32((two_w >> 17) | (126u << 23)) - 0.5f;
    /* a mask, not a branch: scales of random or unusual data mispredict */
    uint32_t m = 0u - (uint32_t)(two_w < (1u << 27));
    uint32_t r = (f32_bits(denorm) & m) | (f32_bits(norm) & ~m);
    return bits_f32(sign | r);
}

static inline float fp16_at(const uint8_t *p)
{
    return h2f(rd16(p));
}

/* Eight grid bytes with the signs of mask s applied, times scale. */
static inline void grid8(float *y, float db, uint64_t grid, uint8_t s)
{
    for (int j = 0; j < 8; j++) {
        float v = db * (float)(uint8_t)(grid >> (8 * j));
        y[j] = (s >> j) & 1 ? -v : v;
    }
}

static inline void grid4(float *y, float db, uint32_t grid, uint8_t s)
{
    for (int j = 0; j < 4; j++) {
        float v = db * (float)(uint8_t)(grid >> (8 * j));
        y[j] = (s >> j) & 1 ? -v : v;
    }
}

/* ==== legacy 32-element blocks ==== */

static void dq_q4_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 18, y += 32) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((qs[j] & 15) - 8) * d;
            y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
        }
    }
}

static void dq_q4_1(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 20, y += 32) {
        float d = fp16_at(x), m = fp16_at(x + 2);
        const uint8_t *qs = x + 4;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(qs[j] & 15) * d + m;
            y[j + 16] = (float)(qs[j] >> 4) * d + m;
        }
    }
}

static void dq_q5_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 22, y += 32) {
        float d = fp16_at(x);
        uint32_t h = rd32(x + 2);
        const uint8_t *qs = x + 6;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
            int hi = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

static void dq_q5_1(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 24, y += 32) {
        float d = fp16_at(x), m = fp16_at(x + 2);
        uint32_t h = rd32(x + 4);
        const uint8_t *qs = x + 8;
        for (int j = 0; j < 16; j++) {
            int lo = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
            int hi = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
            y[j] = (float)lo * d + m;
            y[j + 16] = (float)hi * d + m;
        }
    }
}

static void dq_q8_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 34, y += 32) {
        float d = fp16_at(x);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(int8_t)x[2 + j] * d;
    }
}

static void dq_mxfp4(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 17, y += 32) {
        /* 2^(e-128): a float subnormal for e < 2, never NaN */
        uint32_t e = x[0];
        float s = bits_f32(e < 2 ? 0x00200000u << e : (e - 1) << 23);
        const uint8_t *qs = x + 1;
        for (int j = 0; j < 16; j++) {
            y[j] = (float)ms_fp4_values[qs[j] & 15] * s;
            y[j + 16] = (float)ms_fp4_values[qs[j] >> 4] * s;
        }
    }
}

static void dq_iq4_nl(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 18, y += 32) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2;
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)ms_iq4nl_values[qs[j] & 15];
            y[j + 16] = d * (float)ms_iq4nl_values[qs[j] >> 4];
        }
    }
}

/* ==== K-quants: 256-element super-blocks ==== */

static void dq_q2_k(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 84) {
        const uint8_t *sc = x, *q = x + 16;
        float d = fp16_at(x + 80), dmin = fp16_at(x + 82);
        for (int c = 0; c < 2; c++, q += 32) {
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++, y += 16) {
                    uint8_t s = *sc++;
                    float dl = d * (float)(s & 15), ml = dmin * (float)(s >> 4);
                    const uint8_t *qq = q + 16 * half;
                    for (int l = 0; l < 16; l++)
                        y[l] = dl * (float)((qq[l] >> (2 * j)) & 3) - ml;
                }
            }
        }
    }
}

/* The 16 six-bit signed scales of a Q3_K block. */
static void q3k_scales(const uint8_t *s, int8_t out[16])
{
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? s[i] & 15 : s[i - 8] >> 4;
        int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (int8_t)((lo | hi << 4) - 32);
    }
}

static void dq_q3_k(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 110) {
        const uint8_t *hm = x, *q = x + 32;
        float d = fp16_at(x + 108);
        int8_t sc[16];
        q3k_scales(x + 96, sc);
        int is = 0;
        for (int c = 0; c < 2; c++, q += 32) {
            for (int j = 0; j < 4; j++) {
                uint8_t m = (uint8_t)(1u << (4 * c + j));
                for (int half = 0; half < 2; half++, y += 16) {
                    float dl = d * (float)sc[is++];
                    const uint8_t *qq = q + 16 * half, *hh = hm + 16 * half;
                    for (int l = 0; l < 16; l++) {
                        int v = ((qq[l] >> (2 * j)) & 3) - (hh[l] & m ? 0 : 4);
                        y[l] = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Scale and min of sub-block j of a Q4_K/Q5_K block (get_scale_min_k4). */
static inline void scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 15) | (s[j - 4] >> 6) << 4);
        *m = (uint8_t)((s[j + 4] >> 4) | (s[j] >> 6) << 4);
    }
}

/* Per sub-block scale d*sc and min dmin*m, both exact in binary32. */
static inline void k4_factors(const uint8_t *x, float dl[8], float ml[8])
{
    float d = fp16_at(x), dmin = fp16_at(x + 2);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        scale_min_k4(j, x + 4, &sc, &m);
        dl[j] = d * (float)sc;
        ml[j] = dmin * (float)m;
    }
}

static void dq_q4_k(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 144) {
        float dl[8], ml[8];
        k4_factors(x, dl, ml);
        const uint8_t *q = x + 16;
        for (int k = 0; k < 4; k++, q += 32, y += 64) {
            for (int l = 0; l < 32; l++) {
                y[l] = dl[2 * k] * (float)(q[l] & 15) - ml[2 * k];
                y[l + 32] = dl[2 * k + 1] * (float)(q[l] >> 4) - ml[2 * k + 1];
            }
        }
    }
}

static void dq_q5_k(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 176) {
        float dl[8], ml[8];
        k4_factors(x, dl, ml);
        const uint8_t *qh = x + 16, *q = x + 48;
        for (int k = 0; k < 4; k++, q += 32, y += 64) {
            uint8_t u1 = (uint8_t)(1u << (2 * k)), u2 = (uint8_t)(2u << (2 * k));
            for (int l = 0; l < 32; l++) {
                int lo = (q[l] & 15) + (qh[l] & u1 ? 16 : 0);
                int hi = (q[l] >> 4) + (qh[l] & u2 ? 16 : 0);
                y[l] = dl[2 * k] * (float)lo - ml[2 * k];
                y[l + 32] = dl[2 * k + 1] * (float)hi - ml[2 * k + 1];
            }
        }
    }
}

static void dq_q6_k(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 210) {
        float d = fp16_at(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            float ds[8];
            for (int k = 0; k < 8; k++)
                ds[k] = d * (float)sc[k];
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 15) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = ((ql[l + 32] & 15) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = ds[is] * (float)q1;
                y[l + 32] = ds[is + 2] * (float)q2;
                y[l + 64] = ds[is + 4] * (float)q3;
                y[l + 96] = ds[is + 6] * (float)q4;
            }
        }
    }
}

/* ==== ternary ==== */

/* The n-th trit of a packed byte: ((uint8)(b * 3^n) * 3) >> 8. */
static inline float trit(uint8_t b, int n, float d)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    uint8_t q = (uint8_t)(b * pow3[n]);
    return (float)((int)(((unsigned)q * 3) >> 8) - 1) * d;
}

static void dq_tq1_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 54) {
        float d = fp16_at(x + 52);
        for (int n = 0; n < 5; n++, y += 32)
            for (int m = 0; m < 32; m++)
                y[m] = trit(x[m], n, d);
        for (int n = 0; n < 5; n++, y += 16)
            for (int m = 0; m < 16; m++)
                y[m] = trit(x[32 + m], n, d);
        for (int n = 0; n < 4; n++, y += 4)
            for (int j = 0; j < 4; j++)
                y[j] = trit(x[48 + j], n, d);
    }
}

static void dq_tq2_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 66) {
        float d = fp16_at(x + 64);
        for (int c = 0; c < 2; c++)
            for (int l = 0; l < 4; l++, y += 32)
                for (int m = 0; m < 32; m++)
                    y[m] = (float)(((x[32 * c + m] >> (2 * l)) & 3) - 1) * d;
    }
}

/* ==== i-quants with grids ==== */

static void dq_iq2_xxs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 66) {
        float d = fp16_at(x);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *g = x + 2 + 8 * ib;
            uint32_t a1 = rd32(g + 4);
            float db = d * (0.5f + (float)(a1 >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8)
                grid8(y, db, ms_iq2xxs_grid[g[l]], ms_iq_ksigns[(a1 >> (7 * l)) & 127]);
        }
    }
}

static void dq_iq2_xs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 74) {
        float d = fp16_at(x);
        const uint8_t *sc = x + 66;
        for (int ib = 0; ib < 8; ib++) {
            float db[2] = {d * (0.5f + (float)(sc[ib] & 15)) * 0.25f,
                           d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                uint16_t q = rd16(x + 2 + 2 * (4 * ib + l));
                grid8(y, db[l / 2], ms_iq2xs_grid[q & 511], ms_iq_ksigns[q >> 9]);
            }
        }
    }
}

static void dq_iq2_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 82) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *signs = x + 34, *qh = x + 66, *sc = x + 74;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            float db[2] = {d * (0.5f + (float)(sc[ib] & 15)) * 0.25f,
                           d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned idx = qs[l] | ((unsigned)(qh[ib] << (8 - 2 * l)) & 0x300);
                grid8(y, db[l / 2], ms_iq2s_grid[idx], signs[l]);
            }
        }
    }
}

static void dq_iq3_xxs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 98) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *ss = x + 66;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            uint32_t a = rd32(ss + 4 * ib);
            float db = d * (0.5f + (float)(a >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                uint8_t s = ms_iq_ksigns[(a >> (7 * l)) & 127];
                grid4(y, db, ms_iq3xxs_grid[qs[2 * l]], s);
                grid4(y + 4, db, ms_iq3xxs_grid[qs[2 * l + 1]], (uint8_t)(s >> 4));
            }
        }
    }
}

static void dq_iq3_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 110) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *qh = x + 66, *signs = x + 74, *sc = x + 106;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            int nib = (sc[ib / 2] >> (4 * (ib % 2))) & 15;
            float db = d * (float)(1 + 2 * nib);
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned i1 = qs[2 * l] | ((unsigned)(qh[ib] << (8 - 2 * l)) & 256);
                unsigned i2 = qs[2 * l + 1] | ((unsigned)(qh[ib] << (7 - 2 * l)) & 256);
                grid4(y, db, ms_iq3s_grid[i1], signs[l]);
                grid4(y + 4, db, ms_iq3s_grid[i2], (uint8_t)(signs[l] >> 4));
            }
        }
    }
}

/* Eight int8 grid values in {-1, 0, 1} plus delta, times dl. */
static inline void grid1(float *y, float dl, uint64_t grid, float delta)
{
    for (int j = 0; j < 8; j++)
        y[j] = dl * ((float)(int8_t)(uint8_t)(grid >> (8 * j)) + delta);
}

static void dq_iq1_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 50) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            uint16_t qh = rd16(x + 34 + 2 * ib);
            float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            float delta = qh & 0x8000 ? -0.125f : 0.125f;
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned idx = qs[l] | ((qh >> (3 * l)) & 7u) << 8;
                grid1(y, dl, ms_iq1s_grid[idx], delta);
            }
        }
    }
}

static void dq_iq1_m(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 56) {
        const uint8_t *qs = x, *qh = x + 32;
        uint16_t sc[4];
        for (int k = 0; k < 4; k++)
            sc[k] = rd16(x + 48 + 2 * k);
        float d = h2f((uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                 ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)));
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            int sh = 6 * (ib % 2);
            float dl1 = d * (float)(2 * ((sc[ib / 2] >> sh) & 7) + 1);
            float dl2 = d * (float)(2 * ((sc[ib / 2] >> (sh + 3)) & 7) + 1);
            unsigned idx[4] = {
                qs[0] | ((unsigned)(qh[0] << 8) & 0x700),
                qs[1] | ((unsigned)(qh[0] << 4) & 0x700),
                qs[2] | ((unsigned)(qh[1] << 8) & 0x700),
                qs[3] | ((unsigned)(qh[1] << 4) & 0x700)};
            uint8_t dm[4] = {qh[0] & 0x08, qh[0] & 0x80, qh[1] & 0x08, qh[1] & 0x80};
            for (int l = 0; l < 4; l++, y += 8)
                grid1(y, l < 2 ? dl1 : dl2, ms_iq1s_grid[idx[l]],
                      dm[l] ? -0.125f : 0.125f);
        }
    }
}

static void dq_iq4_xs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 136) {
        float d = fp16_at(x);
        uint16_t sh = rd16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 15) | ((sh >> (2 * ib)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)ms_iq4nl_values[qs[j] & 15];
                y[j + 16] = dl * (float)ms_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* ==== AVX2 paths (x86-64, chosen at run time) ==== */

#if defined(MS_X86) && (defined(__GNUC__) || defined(__clang__))
#define AVX2 __attribute__((target("avx2,fma")))

/* 8 signed bytes (low half of b) to 8 floats times d. */
AVX2 static inline void st8_i8(float *y, __m128i b, __m256 d)
{
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), d));
}

/* 32 signed bytes to 32 floats times d. */
AVX2 static inline void st32_i8(float *y, __m256i q, __m256 d)
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    st8_i8(y, lo, d);
    st8_i8(y + 8, _mm_srli_si128(lo, 8), d);
    st8_i8(y + 16, hi, d);
    st8_i8(y + 24, _mm_srli_si128(hi, 8), d);
}

/* 8 unsigned bytes to floats, q*d - m (one rounding, as ggml). */
AVX2 static inline void st8_u8_fms(float *y, __m128i b, __m256 d, __m256 m)
{
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    _mm256_storeu_ps(y, _mm256_fmsub_ps(q, d, m));
}

/* 32 unsigned bytes to floats q*d - m. */
AVX2 static inline void st32_u8_fms(float *y, __m256i q, __m256 d, __m256 m)
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    st8_u8_fms(y, lo, d, m);
    st8_u8_fms(y + 8, _mm_srli_si128(lo, 8), d, m);
    st8_u8_fms(y + 16, hi, d, m);
    st8_u8_fms(y + 24, _mm_srli_si128(hi, 8), d, m);
}

/* The 16 bytes of a 4-bit block: low nibbles then high nibbles. */
AVX2 static inline __m256i nibbles32(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m4 = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(b, m4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m4);
    return _mm256_set_m128i(hi, lo);
}

/* Byte j of the result is 0x10 when bit j of h is set (Q5 high bits). */
AVX2 static inline __m256i bits_to_0x10(uint32_t h)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303ll, 0x0202020202020202ll,
                                           0x0101010101010101ll, 0x0000000000000000ll);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

AVX2 static void av_q8_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 34, y += 32) {
        __m256 d = _mm256_set1_ps(fp16_at(x));
        for (int k = 0; k < 4; k++)
            st8_i8(y + 8 * k, _mm_loadl_epi64((const __m128i *)(x + 2 + 8 * k)), d);
    }
}

AVX2 static void av_q4_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 18, y += 32) {
        __m256i q = _mm256_sub_epi8(nibbles32(x + 2), _mm256_set1_epi8(8));
        st32_i8(y, q, _mm256_set1_ps(fp16_at(x)));
    }
}

AVX2 static void av_q4_1(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 20, y += 32) {
        /* q*d + m: fmsub with -m rounds once, like ggml */
        __m256 d = _mm256_set1_ps(fp16_at(x)), m = _mm256_set1_ps(-fp16_at(x + 2));
        st32_u8_fms(y, nibbles32(x + 4), d, m);
    }
}

AVX2 static void av_q5_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 22, y += 32) {
        __m256i q = _mm256_or_si256(nibbles32(x + 6), bits_to_0x10(rd32(x + 2)));
        q = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
        st32_i8(y, q, _mm256_set1_ps(fp16_at(x)));
    }
}

AVX2 static void av_q5_1(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 24, y += 32) {
        __m256i q = _mm256_or_si256(nibbles32(x + 8), bits_to_0x10(rd32(x + 4)));
        __m256 d = _mm256_set1_ps(fp16_at(x)), m = _mm256_set1_ps(-fp16_at(x + 2));
        st32_u8_fms(y, q, d, m);
    }
}

/* 4-bit codes through a 16-entry int8 table (IQ4_NL, IQ4_XS, MXFP4). */
AVX2 static inline __m256i lut32(const uint8_t *qs, __m128i table)
{
    __m256i n = nibbles32(qs);
    return _mm256_shuffle_epi8(_mm256_set_m128i(table, table), n);
}

AVX2 static void av_iq4_nl(const uint8_t *x, size_t nb, float *y)
{
    __m128i t = _mm_loadu_si128((const __m128i *)ms_iq4nl_values);
    for (size_t i = 0; i < nb; i++, x += 18, y += 32)
        st32_i8(y, lut32(x + 2, t), _mm256_set1_ps(fp16_at(x)));
}

AVX2 static void av_mxfp4(const uint8_t *x, size_t nb, float *y)
{
    __m128i t = _mm_loadu_si128((const __m128i *)ms_fp4_values);
    for (size_t i = 0; i < nb; i++, x += 17, y += 32) {
        uint32_t e = x[0];
        float s = bits_f32(e < 2 ? 0x00200000u << e : (e - 1) << 23);
        st32_i8(y, lut32(x + 1, t), _mm256_set1_ps(s));
    }
}

AVX2 static void av_iq4_xs(const uint8_t *x, size_t nb, float *y)
{
    __m128i t = _mm_loadu_si128((const __m128i *)ms_iq4nl_values);
    for (size_t i = 0; i < nb; i++, x += 136) {
        float d = fp16_at(x);
        uint16_t sh = rd16(x + 2);
        const uint8_t *sl = x + 4, *qs = x + 8;
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 15) | ((sh >> (2 * ib)) & 3) << 4;
            st32_i8(y, lut32(qs, t), _mm256_set1_ps(d * (float)(ls - 32)));
        }
    }
}

AVX2 static void av_q4_k(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m4 = _mm256_set1_epi8(15);
    for (size_t i = 0; i < nb; i++, x += 144) {
        float dl[8], ml[8];
        k4_factors(x, dl, ml);
        const uint8_t *q = x + 16;
        for (int k = 0; k < 4; k++, q += 32, y += 64) {
            __m256i b = _mm256_loadu_si256((const __m256i *)q);
            __m256i lo = _mm256_and_si256(b, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            st32_u8_fms(y, lo, _mm256_set1_ps(dl[2 * k]), _mm256_set1_ps(ml[2 * k]));
            st32_u8_fms(y + 32, hi, _mm256_set1_ps(dl[2 * k + 1]),
                        _mm256_set1_ps(ml[2 * k + 1]));
        }
    }
}

AVX2 static void av_q5_k(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m4 = _mm256_set1_epi8(15), one = _mm256_set1_epi8(1);
    for (size_t i = 0; i < nb; i++, x += 176) {
        float dl[8], ml[8];
        k4_factors(x, dl, ml);
        __m256i qh = _mm256_loadu_si256((const __m256i *)(x + 16));
        const uint8_t *q = x + 48;
        for (int k = 0; k < 4; k++, q += 32, y += 64) {
            __m256i b = _mm256_loadu_si256((const __m256i *)q);
            __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), one);
            __m256i h2 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k + 1), one);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(b, m4), _mm256_slli_epi16(h1, 4));
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                                         _mm256_slli_epi16(h2, 4));
            st32_u8_fms(y, lo, _mm256_set1_ps(dl[2 * k]), _mm256_set1_ps(ml[2 * k]));
            st32_u8_fms(y + 32, hi, _mm256_set1_ps(dl[2 * k + 1]),
                        _mm256_set1_ps(ml[2 * k + 1]));
        }
    }
}

/* 32 signed bytes: the first 16 times d0, the next 16 times d1. */
AVX2 static inline void st32_i8_2(float *y, __m256i q, float d0, float d1)
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 a = _mm256_set1_ps(d0), b = _mm256_set1_ps(d1);
    st8_i8(y, lo, a);
    st8_i8(y + 8, _mm_srli_si128(lo, 8), a);
    st8_i8(y + 16, hi, b);
    st8_i8(y + 24, _mm_srli_si128(hi, 8), b);
}

AVX2 static void av_q6_k(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
    const __m256i k32 = _mm256_set1_epi8(32);
    for (size_t i = 0; i < nb; i++, x += 210) {
        float d = fp16_at(x + 208);
        const uint8_t *ql = x, *qh = x + 128;
        const int8_t *sc = (const int8_t *)(x + 192);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            __m256i a = _mm256_loadu_si256((const __m256i *)ql);
            __m256i b = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(a, m4),
                                         _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(b, m4),
                                         _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
                                         _mm256_and_si256(hb, m30));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            st32_i8_2(y, _mm256_sub_epi8(q1, k32), d * sc[0], d * sc[1]);
            st32_i8_2(y + 32, _mm256_sub_epi8(q2, k32), d * sc[2], d * sc[3]);
            st32_i8_2(y + 64, _mm256_sub_epi8(q3, k32), d * sc[4], d * sc[5]);
            st32_i8_2(y + 96, _mm256_sub_epi8(q4, k32), d * sc[6], d * sc[7]);
        }
    }
}

/* Eight unsigned grid bytes times db, element j negated when bit j of s is
 * set (a sign flip: the same bits as ggml's multiply by -1). */
AVX2 static inline void av_grid8(float *y, __m256 db, uint64_t grid, unsigned s)
{
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)grid)));
    __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)s), bit), bit);
    neg = _mm256_slli_epi32(neg, 31);
    _mm256_storeu_ps(y, _mm256_xor_ps(_mm256_mul_ps(db, g), _mm256_castsi256_ps(neg)));
}

AVX2 static void av_iq2_xxs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 66) {
        float d = fp16_at(x);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *g = x + 2 + 8 * ib;
            uint32_t a1 = rd32(g + 4);
            __m256 db = _mm256_set1_ps(d * (0.5f + (float)(a1 >> 28)) * 0.25f);
            for (int l = 0; l < 4; l++, y += 8)
                av_grid8(y, db, ms_iq2xxs_grid[g[l]], ms_iq_ksigns[(a1 >> (7 * l)) & 127]);
        }
    }
}

AVX2 static void av_iq2_xs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 74) {
        float d = fp16_at(x);
        const uint8_t *sc = x + 66;
        for (int ib = 0; ib < 8; ib++) {
            __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (float)(sc[ib] & 15)) * 0.25f),
                            _mm256_set1_ps(d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f)};
            for (int l = 0; l < 4; l++, y += 8) {
                uint16_t q = rd16(x + 2 + 2 * (4 * ib + l));
                av_grid8(y, db[l / 2], ms_iq2xs_grid[q & 511], ms_iq_ksigns[q >> 9]);
            }
        }
    }
}

AVX2 static void av_iq2_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 82) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *signs = x + 34, *qh = x + 66, *sc = x + 74;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (float)(sc[ib] & 15)) * 0.25f),
                            _mm256_set1_ps(d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f)};
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned idx = qs[l] | ((unsigned)(qh[ib] << (8 - 2 * l)) & 0x300);
                av_grid8(y, db[l / 2], ms_iq2s_grid[idx], signs[l]);
            }
        }
    }
}

static inline uint64_t pair32(uint32_t a, uint32_t b)
{
    return (uint64_t)a | (uint64_t)b << 32;
}

AVX2 static void av_iq3_xxs(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 98) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *ss = x + 66;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            uint32_t a = rd32(ss + 4 * ib);
            __m256 db = _mm256_set1_ps(d * (0.5f + (float)(a >> 28)) * 0.5f);
            for (int l = 0; l < 4; l++, y += 8)
                av_grid8(y, db, pair32(ms_iq3xxs_grid[qs[2 * l]], ms_iq3xxs_grid[qs[2 * l + 1]]),
                         ms_iq_ksigns[(a >> (7 * l)) & 127]);
        }
    }
}

AVX2 static void av_iq3_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 110) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2, *qh = x + 66, *signs = x + 74, *sc = x + 106;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            int nib = (sc[ib / 2] >> (4 * (ib % 2))) & 15;
            __m256 db = _mm256_set1_ps(d * (float)(1 + 2 * nib));
            for (int l = 0; l < 4; l++, y += 8) {
                unsigned i1 = qs[2 * l] | ((unsigned)(qh[ib] << (8 - 2 * l)) & 256);
                unsigned i2 = qs[2 * l + 1] | ((unsigned)(qh[ib] << (7 - 2 * l)) & 256);
                av_grid8(y, db, pair32(ms_iq3s_grid[i1], ms_iq3s_grid[i2]), signs[l]);
            }
        }
    }
}

/* 32 unsigned bytes: the first 16 as q*d0 - m0, the next 16 as q*d1 - m1. */
AVX2 static inline void st32_u8_fms_2(float *y, __m256i q, float d0, float m0,
                                      float d1, float m1)
{
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 a = _mm256_set1_ps(d0), am = _mm256_set1_ps(m0);
    __m256 b = _mm256_set1_ps(d1), bm = _mm256_set1_ps(m1);
    st8_u8_fms(y, lo, a, am);
    st8_u8_fms(y + 8, _mm_srli_si128(lo, 8), a, am);
    st8_u8_fms(y + 16, hi, b, bm);
    st8_u8_fms(y + 24, _mm_srli_si128(hi, 8), b, bm);
}

AVX2 static void av_q2_k(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m3 = _mm256_set1_epi8(3);
    for (size_t i = 0; i < nb; i++, x += 84) {
        const uint8_t *sc = x;
        float d = fp16_at(x + 80), dmin = fp16_at(x + 82);
        for (int c = 0; c < 2; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x + 16 + 32 * c));
            for (int j = 0; j < 4; j++, sc += 2, y += 32) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                st32_u8_fms_2(y, v, d * (float)(sc[0] & 15), dmin * (float)(sc[0] >> 4),
                              d * (float)(sc[1] & 15), dmin * (float)(sc[1] >> 4));
            }
        }
    }
}

AVX2 static void av_q3_k(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    for (size_t i = 0; i < nb; i++, x += 110) {
        float d = fp16_at(x + 108);
        int8_t sc[16];
        q3k_scales(x + 96, sc);
        __m256i hm = _mm256_loadu_si256((const __m256i *)x);
        const int8_t *s = sc;
        for (int c = 0; c < 2; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x + 32 + 32 * c));
            for (int j = 0; j < 4; j++, s += 2, y += 32) {
                __m256i m = _mm256_set1_epi8((char)(1u << (4 * c + j)));
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                /* subtract 4 where the high bit is clear */
                __m256i clear = _mm256_cmpeq_epi8(_mm256_and_si256(hm, m), _mm256_setzero_si256());
                __m256i v = _mm256_sub_epi8(lo, _mm256_and_si256(clear, four));
                st32_i8_2(y, v, d * (float)s[0], d * (float)s[1]);
            }
        }
    }
}

AVX2 static void av_tq2_0(const uint8_t *x, size_t nb, float *y)
{
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (size_t i = 0; i < nb; i++, x += 66) {
        __m256 d = _mm256_set1_ps(fp16_at(x + 64));
        for (int c = 0; c < 2; c++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(x + 32 * c));
            for (int l = 0; l < 4; l++, y += 32) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * l), m3);
                st32_i8(y, _mm256_sub_epi8(v, one), d);
            }
        }
    }
}

/* 8 trits from 8 bytes already multiplied by 3^n: ((b * 3) >> 8) - 1. */
AVX2 static inline void st8_trit(float *y, __m128i b, __m256 d)
{
    __m256i w = _mm256_cvtepu8_epi32(b);
    w = _mm256_srli_epi32(_mm256_add_epi32(w, _mm256_add_epi32(w, w)), 8);
    w = _mm256_sub_epi32(w, _mm256_set1_epi32(1));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(w), d));
}

AVX2 static void av_tq1_0(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 54) {
        float df = fp16_at(x + 52);
        __m256 d = _mm256_set1_ps(df);
        /* b * 3^n modulo 256, by repeated byte-wise tripling */
        __m256i q = _mm256_loadu_si256((const __m256i *)x);
        for (int n = 0; n < 5; n++, y += 32) {
            __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
            st8_trit(y, lo, d);
            st8_trit(y + 8, _mm_srli_si128(lo, 8), d);
            st8_trit(y + 16, hi, d);
            st8_trit(y + 24, _mm_srli_si128(hi, 8), d);
            q = _mm256_add_epi8(q, _mm256_add_epi8(q, q));
        }
        __m128i r = _mm_loadu_si128((const __m128i *)(x + 32));
        for (int n = 0; n < 5; n++, y += 16) {
            st8_trit(y, r, d);
            st8_trit(y + 8, _mm_srli_si128(r, 8), d);
            r = _mm_add_epi8(r, _mm_add_epi8(r, r));
        }
        for (int n = 0; n < 4; n++, y += 4)
            for (int j = 0; j < 4; j++)
                y[j] = trit(x[48 + j], n, df);
    }
}

/* Eight int8 grid values in {-1, 0, 1}: dl * (g + delta), as ggml. */
AVX2 static inline void av_grid1(float *y, __m256 dl, const uint64_t *grid, __m256 delta)
{
    /* a load straight into the sign extension: one vpmovsxbd */
    __m128i b = _mm_loadl_epi64((const __m128i *)grid);
    __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
    _mm256_storeu_ps(y, _mm256_mul_ps(dl, _mm256_add_ps(g, delta)));
}

AVX2 static void av_iq1_s(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 50) {
        float d = fp16_at(x);
        const uint8_t *qs = x + 2;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            uint16_t qh = rd16(x + 34 + 2 * ib);
            __m256 dl = _mm256_set1_ps(d * (float)(2 * ((qh >> 12) & 7) + 1));
            static const float dd[2] = {0.125f, -0.125f};
            __m256 delta = _mm256_set1_ps(dd[qh >> 15]);
            for (int l = 0; l < 4; l++, y += 8)
                av_grid1(y, dl, &ms_iq1s_grid[qs[l] | ((qh >> (3 * l)) & 7u) << 8], delta);
        }
    }
}

AVX2 static void av_iq1_m(const uint8_t *x, size_t nb, float *y)
{
    for (size_t i = 0; i < nb; i++, x += 56) {
        const uint8_t *qs = x, *qh = x + 32;
        uint16_t sc[4];
        for (int k = 0; k < 4; k++)
            sc[k] = rd16(x + 48 + 2 * k);
        float d = h2f((uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                 ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)));
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            int sh = 6 * (ib % 2);
            __m256 dl1 = _mm256_set1_ps(d * (float)(2 * ((sc[ib / 2] >> sh) & 7) + 1));
            __m256 dl2 = _mm256_set1_ps(d * (float)(2 * ((sc[ib / 2] >> (sh + 3)) & 7) + 1));
            /* +-0.125 picked by a load, not a branch (random data would
             * mispredict it; compilers turn bit tricks back into branches) */
            static const float dd[2] = {0.125f, -0.125f};
            __m256 dt0 = _mm256_set1_ps(dd[(qh[0] >> 3) & 1]);
            __m256 dt1 = _mm256_set1_ps(dd[qh[0] >> 7]);
            __m256 dt2 = _mm256_set1_ps(dd[(qh[1] >> 3) & 1]);
            __m256 dt3 = _mm256_set1_ps(dd[qh[1] >> 7]);
            av_grid1(y, dl1, &ms_iq1s_grid[qs[0] | ((unsigned)(qh[0] << 8) & 0x700)], dt0);
            av_grid1(y + 8, dl1, &ms_iq1s_grid[qs[1] | ((unsigned)(qh[0] << 4) & 0x700)], dt1);
            av_grid1(y + 16, dl2, &ms_iq1s_grid[qs[2] | ((unsigned)(qh[1] << 8) & 0x700)], dt2);
            av_grid1(y + 24, dl2, &ms_iq1s_grid[qs[3] | ((unsigned)(qh[1] << 4) & 0x700)], dt3);
            y += 32;
        }
    }
}

static decode_fn simd_decoder(ms_dtype dt)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return NULL;
    switch (dt) {
    case MS_DTYPE_Q4_0: return av_q4_0;
    case MS_DTYPE_Q4_1: return av_q4_1;
    case MS_DTYPE_Q5_0: return av_q5_0;
    case MS_DTYPE_Q5_1: return av_q5_1;
    case MS_DTYPE_Q8_0: return av_q8_0;
    case MS_DTYPE_Q2_K: return av_q2_k;
    case MS_DTYPE_Q3_K: return av_q3_k;
    case MS_DTYPE_Q4_K: return av_q4_k;
    case MS_DTYPE_Q5_K: return av_q5_k;
    case MS_DTYPE_Q6_K: return av_q6_k;
    case MS_DTYPE_IQ2_XXS: return av_iq2_xxs;
    case MS_DTYPE_IQ2_XS: return av_iq2_xs;
    case MS_DTYPE_IQ2_S: return av_iq2_s;
    case MS_DTYPE_IQ3_XXS: return av_iq3_xxs;
    case MS_DTYPE_IQ3_S: return av_iq3_s;
    case MS_DTYPE_IQ1_S: return av_iq1_s;
    case MS_DTYPE_IQ1_M: return av_iq1_m;
    case MS_DTYPE_TQ1_0: return av_tq1_0;
    case MS_DTYPE_TQ2_0: return av_tq2_0;
    case MS_DTYPE_IQ4_NL: return av_iq4_nl;
    case MS_DTYPE_IQ4_XS: return av_iq4_xs;
    case MS_DTYPE_MXFP4: return av_mxfp4;
    default: return NULL;
    }
}
#else
static decode_fn simd_decoder(ms_dtype dt)
{
    (void)dt;
    return NULL;
}
#endif

/* ==== dispatch ==== */

static decode_fn scalar_decoder(ms_dtype dt)
{
    switch (dt) {
    case MS_DTYPE_Q4_0: return dq_q4_0;
    case MS_DTYPE_Q4_1: return dq_q4_1;
    case MS_DTYPE_Q5_0: return dq_q5_0;
    case MS_DTYPE_Q5_1: return dq_q5_1;
    case MS_DTYPE_Q8_0: return dq_q8_0;
    case MS_DTYPE_Q2_K: return dq_q2_k;
    case MS_DTYPE_Q3_K: return dq_q3_k;
    case MS_DTYPE_Q4_K: return dq_q4_k;
    case MS_DTYPE_Q5_K: return dq_q5_k;
    case MS_DTYPE_Q6_K: return dq_q6_k;
    case MS_DTYPE_IQ2_XXS: return dq_iq2_xxs;
    case MS_DTYPE_IQ2_XS: return dq_iq2_xs;
    case MS_DTYPE_IQ2_S: return dq_iq2_s;
    case MS_DTYPE_IQ3_XXS: return dq_iq3_xxs;
    case MS_DTYPE_IQ3_S: return dq_iq3_s;
    case MS_DTYPE_IQ1_S: return dq_iq1_s;
    case MS_DTYPE_IQ1_M: return dq_iq1_m;
    case MS_DTYPE_IQ4_NL: return dq_iq4_nl;
    case MS_DTYPE_IQ4_XS: return dq_iq4_xs;
    case MS_DTYPE_TQ1_0: return dq_tq1_0;
    case MS_DTYPE_TQ2_0: return dq_tq2_0;
    case MS_DTYPE_MXFP4: return dq_mxfp4;
    default: return NULL;
    }
}

ms_status ms_dequant(ms_dtype dt, const void *src, size_t n_elems, float *dst)
{
    decode_fn fn = simd_decoder(dt);
    if (!fn)
        fn = scalar_decoder(dt);
    if (!fn)
        return MS_ERR_UNSUPPORTED;
    uint32_t be = ms_dtype_get(dt)->block_elems;
    if (n_elems % be)
        return MS_ERR_USAGE;
    fn(src, n_elems / be, dst);
    return MS_OK;
}

ms_status ms_dequant_scalar(ms_dtype dt, const void *src, size_t n_elems, float *dst)
{
    decode_fn fn = scalar_decoder(dt);
    if (!fn)
        return MS_ERR_UNSUPPORTED;
    uint32_t be = ms_dtype_get(dt)->block_elems;
    if (n_elems % be)
        return MS_ERR_USAGE;
    fn(src, n_elems / be, dst);
    return MS_OK;
}
