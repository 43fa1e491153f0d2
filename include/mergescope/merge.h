/*
 * merge.h - the elementwise and selection kernels behind `audit`'s
 * simulation of mergekit's merge methods (see
 * ../shared/research/mergekit-facts.md and ../shared/bench/ref_merge.py).
 *
 * Everything here works on row chunks of one tensor that the caller visits
 * IN FLAT ORDER (chunk after chunk), so whole-tensor quantities are built in
 * passes without holding a tensor:
 *
 * - exact order statistics of |delta| (the k-th largest magnitude for TIES,
 *   the two cut points of breadcrumbs) by a two-level radix histogram on the
 *   float bits (level 1: top 16 bits, level 2: low 16 bits inside the chosen
 *   level-1 bin); ties at a cut are broken by the lowest flat index, as a
 *   stable sort does (ms_cut);
 * - a counter-based random generator keyed by (seed, tensor, donor,
 *   replicate) and the flat element index, so DARE/DELLA masks do not
 *   depend on threads, chunking or visiting order;
 * - the Q8_0 lattice test used to fingerprint donors dequantized from GGUF.
 *
 * No function allocates, prints or fails: sizes are the caller's business.
 */
#ifndef MERGESCOPE_MERGE_H
#define MERGESCOPE_MERGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/dtype.h"

/* ---------------------------------------------------------------- random */

/* A stream key for (seed, tensor name, donor index, replicate). */
uint64_t ms_rng_key(uint64_t seed, const char *tensor, uint64_t donor,
                    uint64_t replicate);
/* Uniform float in [0, 1) with 24 random bits for element `index`. */
float ms_rng_uniform(uint64_t key, uint64_t index);
/* +1 or -1 for element `index` (sketch matrices). */
float ms_rng_sign(uint64_t key, uint64_t index);

/* ---------------------------------------------------- order statistics */

#define MS_HIST_BINS 65536u

/* The float bits of |x| (sign cleared): monotone in |x| as integers. */
static inline uint32_t ms_abs_bits(float x)
{
    union { float f; uint32_t u; } v = {x};
    return v.u & 0x7fffffffu;
}

/* Level 1: hist[bits >> 16] += 1 for |x[j]|, j < n. */
void ms_hist_hi_add(uint64_t *hist, const float *x, size_t n);
/* Level 2: hist[bits & 0xffff] += 1 for the elements whose top 16 bits
 * are hi. */
void ms_hist_lo_add(uint64_t *hist, uint32_t hi, const float *x, size_t n);

/*
 * The element at ascending position pos (0-based) of |x| over the whole
 * tensor. Filled in two steps: ms_select_hi after the level-1 histogram,
 * ms_select_lo after the level-2 histogram of bin `hi`.
 */
typedef struct ms_select {
    uint64_t pos;     /* wanted position (< n) */
    uint32_t hi;      /* level-1 bin holding it */
    uint64_t below_hi;/* elements in lower level-1 bins */
    uint32_t bits;    /* float bits of the value at pos */
    uint64_t below;   /* elements strictly smaller */
    uint64_t equal;   /* elements equal to it */
} ms_select;

void ms_select_hi(ms_select *s, const uint64_t *hist_hi);
void ms_select_lo(ms_select *s, const uint64_t *hist_lo);

/*
 * A kept range [lo, hi) of ascending positions (stable: equal values in
 * flat-index order), or the TIES top-k rule (keep the k largest, equal
 * values at the cut by lowest index). Built from one or two ms_select
 * results; ms_cut_apply then marks kept elements chunk by chunk and keeps
 * the running counts of elements equal to the cut values.
 */
typedef struct ms_cut {
    int mode;            /* 0 keep none, 1 keep all, 2 range, 3 top-k */
    uint64_t lo, hi;     /* range mode */
    uint32_t a_bits, b_bits;
    uint64_t a_below, b_below;
    uint64_t need;       /* top-k: how many of the equal values to keep */
    uint64_t seen_a, seen_b; /* running counts of values equal to a / b */
} ms_cut;

void ms_cut_none(ms_cut *c);
void ms_cut_all(ms_cut *c);
/* Range [lo, hi): a = the value at lo, b = the value at hi - 1. */
void ms_cut_range(ms_cut *c, uint64_t lo, uint64_t hi, const ms_select *a,
                  const ms_select *b);
/* Top k of n: t = the value at ascending position n - k. */
void ms_cut_topk(ms_cut *c, uint64_t n, uint64_t k, const ms_select *t);
/* keep[j] = 1 when element j (next in flat order) is kept, else 0. */
void ms_cut_apply(ms_cut *c, const float *x, size_t n, uint8_t *keep);

/* ---------------------------------------------------------- sparsifiers */

/* DARE: keep[j] = u(key, first + j) < density. */
void ms_mask_random(uint64_t key, uint64_t first, float density, size_t n,
                    uint8_t *keep);

/*
 * DELLA MagPrune keep probabilities for one row of n elements: rank by
 * ascending |x| (stable), p = (density - eps) + ((rank - 1)/(n - 1)) * 2 *
 * eps in float32 as mergekit computes it. A row of one element gets p = 0
 * (mergekit's 0/0 never keeps). scratch holds n uint64_t.
 */
void ms_della_probs_row(double density, double epsilon, const float *x,
                        size_t n, uint64_t *scratch, float *p);
/* keep[j] = u(key, first + j) < p[j]. */
void ms_mask_probs(uint64_t key, uint64_t first, const float *p, size_t n,
                   uint8_t *keep);

/* ------------------------------------------------------------ lattice */

/*
 * True when the n values of one block (n <= 32) lie on a Q8_0 lattice as
 * llama.cpp's dequantization leaves it and the file dtype then rounds it:
 * some fp16 scale d with every x[j] == round_dt(q_j * d), |q_j| <= 127,
 * and max |q_j| == 127. round_dt rounds to `dt` (BF16, F16 or F32). An
 * all-zero block is not counted (*tested false).
 */
bool ms_q8_block_fits(const float *x, size_t n, ms_dtype dt, bool *tested);

#endif
