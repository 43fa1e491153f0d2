/*
 * merge_kernels.c - selection, random masks and lattice tests for the merge
 * simulation (contract in include/mergescope/merge.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/merge.h"
#include "mergescope/banned.h"

/* The elementwise loops are written to vectorise; gcc does that from -O3
 * (its -O2 cost model refuses loops of unknown length). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

/* ================================================================ random */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t ms_rng_key(uint64_t seed, const char *tensor, uint64_t donor,
                    uint64_t replicate)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a of the name */
    for (const unsigned char *p = (const unsigned char *)tensor; p && *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = mix64(k ^ h);
    k = mix64(k ^ (donor * 0xd1b54a32d192ed03ULL));
    return mix64(k ^ (replicate * 0x8cb92ba72f3d8dd7ULL + 1));
}

static inline uint64_t rng_bits(uint64_t key, uint64_t index)
{
    return mix64(key + (index + 1) * 0x9e3779b97f4a7c15ULL);
}

float ms_rng_uniform(uint64_t key, uint64_t index)
{
    return (float)(rng_bits(key, index) >> 40) * (1.0f / 16777216.0f);
}

float ms_rng_sign(uint64_t key, uint64_t index)
{
    return (rng_bits(key, index) >> 63) ? -1.0f : 1.0f;
}

/* ====================================================== order statistics */

void ms_hist_hi_add(uint64_t *hist, const float *x, size_t n)
{
    for (size_t j = 0; j < n; j++)
        hist[ms_abs_bits(x[j]) >> 16]++;
}

void ms_hist_lo_add(uint64_t *hist, uint32_t hi, const float *x, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        uint32_t b = ms_abs_bits(x[j]);
        if ((b >> 16) == hi)
            hist[b & 0xffffu]++;
    }
}

void ms_select_hi(ms_select *s, const uint64_t *hist)
{
    uint64_t cum = 0;
    s->hi = MS_HIST_BINS - 1;
    for (uint32_t b = 0; b < MS_HIST_BINS; b++) {
        if (cum + hist[b] > s->pos) {
            s->hi = b;
            break;
        }
        cum += hist[b];
    }
    s->below_hi = cum;
}

void ms_select_lo(ms_select *s, const uint64_t *hist)
{
    uint64_t cum = s->below_hi;
    uint32_t lo = MS_HIST_BINS - 1;
    for (uint32_t b = 0; b < MS_HIST_BINS; b++) {
        if (cum + hist[b] > s->pos) {
            lo = b;
            break;
        }
        cum += hist[b];
    }
    s->bits = (s->hi << 16) | lo;
    s->below = cum;
    s->equal = hist[lo];
}

void ms_cut_none(ms_cut *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = 0;
}

void ms_cut_all(ms_cut *c)
{
    memset(c, 0, sizeof(*c));
    c->mode = 1;
}

void ms_cut_range(ms_cut *c, uint64_t lo, uint64_t hi, const ms_select *a,
                  const ms_select *b)
{
    if (lo >= hi) {
        ms_cut_none(c);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->mode = 2;
    c->lo = lo;
    c->hi = hi;
    c->a_bits = a->bits;
    c->a_below = a->below;
    c->b_bits = b->bits;
    c->b_below = b->below;
}

void ms_cut_topk(ms_cut *c, uint64_t n, uint64_t k, const ms_select *t)
{
    if (k >= n) {
        ms_cut_all(c);
        return;
    }
    if (k == 0) {
        ms_cut_none(c);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->mode = 3;
    c->a_bits = t->bits;
    uint64_t greater = n - (t->below + t->equal);
    c->need = k > greater ? k - greater : 0;
}

/* Elements equal to a cut value, in flat order, whose running positions
 * start at first: all kept when [first, first + n) lies inside [lo, hi),
 * none when it lies outside; otherwise the caller walks them in order. */
static int eq_case(uint64_t first, uint64_t n, uint64_t lo, uint64_t hi)
{
    if (first >= lo && first + n <= hi)
        return 1;
    if (first + n <= lo || first >= hi)
        return 0;
    return -1;
}

/*
 * The strict comparisons vectorise; values equal to a cut are settled in
 * bulk when the whole run of them in this chunk is kept or dropped, and in
 * an ordered scalar loop (ties by index) only in the chunk where the cut
 * falls inside the run.
 */
void ms_cut_apply(ms_cut *c, const float *x, size_t n, uint8_t *keep)
{
    if (c->mode == 0) {
        memset(keep, 0, n);
        return;
    }
    if (c->mode == 1) {
        memset(keep, 1, n);
        return;
    }
    const uint32_t *u = (const uint32_t *)(const void *)x;
    /* locals: keep (uint8_t) could alias *c for the compiler */
    uint32_t a = c->a_bits, b = c->mode == 3 ? 0xffffffffu : c->b_bits;
    uint64_t na = 0, nb = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t v = u[j] & 0x7fffffffu;
        keep[j] = (uint8_t)((v > a) & (v < b));
        na += v == a;
        nb += (v == b) & (v != a);
    }
    if (na + nb == 0)
        return;
    int ca, cb = 0;
    if (c->mode == 3)
        ca = eq_case(c->seen_a, na, 0, c->need);
    else
        ca = eq_case(c->a_below + c->seen_a, na, c->lo, c->hi);
    if (nb)
        cb = eq_case(c->b_below + c->seen_b, nb, 0, c->hi);
    if (ca >= 0 && cb >= 0) {
        uint8_t ka = (uint8_t)ca, kb = (uint8_t)cb;
        for (size_t j = 0; j < n; j++) {
            uint32_t v = u[j] & 0x7fffffffu;
            keep[j] |= (uint8_t)(((v == a) & ka) | ((v == b) & (v != a) & kb));
        }
        c->seen_a += na;
        c->seen_b += nb;
        return;
    }
    for (size_t j = 0; j < n; j++) {
        uint32_t v = u[j] & 0x7fffffffu;
        uint64_t pos;
        if (c->mode == 3) {
            if (v == a)
                keep[j] = c->seen_a++ < c->need;
        } else if (v == a) {
            pos = c->a_below + c->seen_a++;
            keep[j] = pos >= c->lo && pos < c->hi;
        } else if (v == b) {
            pos = c->b_below + c->seen_b++;
            keep[j] = pos < c->hi;
        }
    }
}

/* ============================================================ sparsifiers */

void ms_mask_random(uint64_t key, uint64_t first, float density, size_t n,
                    uint8_t *keep)
{
    for (size_t j = 0; j < n; j++)
        keep[j] = ms_rng_uniform(key, first + j) < density;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void ms_della_probs_row(double density, double epsilon, const float *x,
                        size_t n, uint64_t *scratch, float *p)
{
    if (n < 2) {
        for (size_t j = 0; j < n; j++)
            p[j] = 0.0f;
        return;
    }
    /* (|x| bits, index) sorts ascending by magnitude, ties by index:
     * the stable order mergekit's sort gives on a GPU */
    for (size_t j = 0; j < n; j++)
        scratch[j] = ((uint64_t)ms_abs_bits(x[j]) << 32) | (uint64_t)j;
    qsort(scratch, n, sizeof(*scratch), cmp_u64);
    float lo = (float)(density - epsilon);
    float eps = (float)epsilon;
    float span = (float)(n - 1);
    for (size_t r = 0; r < n; r++) {
        size_t j = (size_t)(scratch[r] & 0xffffffffu);
        float rn = (float)r / span;
        p[j] = lo + rn * 2.0f * eps;
    }
}

void ms_mask_probs(uint64_t key, uint64_t first, const float *p, size_t n,
                   uint8_t *keep)
{
    for (size_t j = 0; j < n; j++)
        keep[j] = ms_rng_uniform(key, first + j) < p[j];
}

/* ================================================================ lattice */

static float round_to(float v, ms_dtype dt)
{
    if (dt == MS_DTYPE_BF16)
        return ms_bf16_to_f32(ms_f32_to_bf16(v));
    if (dt == MS_DTYPE_F16)
        return ms_f16_to_f32(ms_f32_to_f16(v));
    return v;
}

static bool block_on_scale(const float *x, size_t n, float d, ms_dtype dt)
{
    for (size_t j = 0; j < n; j++) {
        float q = nearbyintf(x[j] / d);
        if (fabsf(q) > 127.0f || round_to(q * d, dt) != x[j])
            return false;
    }
    return true;
}

bool ms_q8_block_fits(const float *x, size_t n, ms_dtype dt, bool *tested)
{
    float amax = 0.0f;
    for (size_t j = 0; j < n; j++) {
        float a = fabsf(x[j]);
        if (!(a <= 3.0e38f)) { /* NaN or inf: no lattice */
            *tested = true;
            return false;
        }
        if (a > amax)
            amax = a;
    }
    *tested = amax > 0.0f;
    if (!*tested)
        return false;
    /* the scale is fp16(amax / 127) before the value was rounded to the
     * file dtype: try the few fp16 values whose 127-multiple rounds back
     * to the stored maximum */
    uint16_t h0 = ms_f32_to_f16(amax / 127.0f);
    for (int dh = -4; dh <= 4; dh++) {
        int h = (int)h0 + dh;
        if (h <= 0 || h >= 0x7c00)
            continue;
        float d = ms_f16_to_f32((uint16_t)h);
        if (round_to(127.0f * d, dt) != amax)
            continue;
        if (block_on_scale(x, n, d, dt))
            return true;
    }
    return false;
}
