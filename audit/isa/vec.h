/*
 * vec.h - what the per-level kernels in audit/isa/ share: 16-lane vector
 * types (GCC/Clang vector extensions, so the lanes compute the same bits
 * at every x86-64 level), loads of float32 or bf16 inputs, and horizontal
 * sums. Included by those kernels only; every function is static inline.
 */
#ifndef MS_AUDIT_ISA_VEC_H
#define MS_AUDIT_ISA_VEC_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
/* 64-byte vectors pass between static functions of one file, which the
 * compiler inlines: no call crosses the ABI it warns about */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#define LANES 16
#define SEG 4096 /* elements of one float-lane run before a float64 sum */
#define INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef uint16_t vh __attribute__((vector_size(32)));
typedef uint8_t vb __attribute__((vector_size(16)));

INLINE vf vload(const float *p)
{
    vf v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* 16 values at index i of a float32 or (h set) bf16 array. */
INLINE vf load_at(const float *f, const uint16_t *h, size_t i)
{
    if (h) {
        vh v;
        memcpy(&v, h + i, sizeof(v));
        return (vf)(__builtin_convertvector(v, vu) << 16);
    }
    return vload(f + i);
}

/* The first len (< 16) of them, zeros after. */
INLINE vf load_part(const float *f, const uint16_t *h, size_t i, size_t len)
{
    float t[LANES] = {0};
    uint16_t th[LANES] = {0};
    if (h) {
        memcpy(th, h + i, len * sizeof(uint16_t));
        return load_at(NULL, th, 0);
    }
    memcpy(t, f + i, len * sizeof(float));
    return load_at(t, NULL, 0);
}

INLINE double hsum(vf v)
{
    double s = 0.0;
    for (int l = 0; l < LANES; l++)
        s += (double)v[l];
    return s;
}

/* The lanes of a count of mask lanes (each -1 per hit, so negated). */
INLINE uint64_t isum(vi v)
{
    int64_t s = 0;
    for (int l = 0; l < LANES; l++)
        s += v[l];
    return (uint64_t)s;
}

#endif
