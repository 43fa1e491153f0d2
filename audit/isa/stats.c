/*
 * isa/stats.c - the statistics pass's arithmetic for one row chunk, in
 * one sweep over the inputs: the Gram matrix of [base; deltas], exact
 * zeros, small deltas, L1, pairwise sign conflicts and the stable-rank
 * sketch of every donor (see au_stats_chunk in audit_int.h).
 *
 * The deltas of a block of 256 columns are formed once into an L1-sized
 * buffer and every statistic runs over that buffer in 16-lane vectors
 * (GCC/Clang vector extensions, so the lanes are the same whatever the
 * instruction set). Float lanes hold at most 4096 elements of one row
 * before they are summed into float64, which keeps these sums closer to
 * the exact value than the float32 BLAS blocks they replace.
 */
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "audit_int.h"
#include "vec.h"
#include "mergescope/banned.h"

#define BLK 256                 /* columns per block */
#define NV (BLK / LANES)        /* vectors per block */

/* Per-run accumulators, summed into the caller's float64 / uint64 totals
 * at the end of every run of at most SEG columns. */
#define FM AU_STATS_MAXIN
typedef struct run_acc {
    vf gram[FM * FM];           /* m x m (m = k + 1), upper triangle used */
    vf l1[FM];
    vi zeros[FM], small[FM];
    vi nn[FM * FM], opp[FM * FM];
    vi above[FM];
} run_acc;

static inline void clear_run(run_acc *r, size_t m)
{
    memset(r->gram, 0, m * m * sizeof(vf));
    memset(r->l1, 0, m * sizeof(vf));
    memset(r->zeros, 0, m * sizeof(vi));
    memset(r->small, 0, m * sizeof(vi));
    memset(r->nn, 0, m * m * sizeof(vi));
    memset(r->opp, 0, m * m * sizeof(vi));
    memset(r->above, 0, m * sizeof(vi));
}

/* Append the lanes of key that m selects to dst[n...], in lane order;
 * returns the new count. */
static inline size_t append_keys(vu key, vi m, uint32_t *dst, size_t n)
{
#if defined(__AVX512F__)
    /* compress in a register and store the whole vector, always (the
     * caller leaves room): a compressing store to memory is slow on some
     * CPUs, and whether a vector has any lane in range is unpredictable */
    __mmask16 mk = _mm512_test_epi32_mask((__m512i)m, (__m512i)m);
    _mm512_storeu_si512((void *)(dst + n), _mm512_maskz_compress_epi32(mk, (__m512i)key));
    return n + (size_t)__builtin_popcount((unsigned)mk);
#else
    for (int l = 0; l < LANES; l++) {
        dst[n] = key[l];
        n += m[l] != 0;
    }
    return n;
#endif
}

/* Row 0 of v is the base, rows 1..k the deltas; n columns, the last
 * vector zero-padded. */
_Static_assert(AU_P == LANES, "one sketch probe per lane");
_Static_assert(AU_SKETCH_BUCKETS == BLK, "one sketch bucket per column of a block");

INLINE void load_block(const au_stats_in *in, size_t off, size_t n, vf v[][NV], bool bf16)
{
    const uint16_t *bh = bf16 ? in->bh : NULL;
    size_t full = n / LANES, k = in->k, rest = n % LANES;
    for (size_t j = 0; j < full; j++)
        v[0][j] = load_at(in->b, bh, off + j * LANES);
    for (size_t q = 0; q < k; q++)
        for (size_t j = 0; j < full; j++)
            v[q + 1][j] = load_at(in->x[q], bh ? in->xh[q] : NULL, off + j * LANES) -
                          v[0][j];
    if (rest == 0)
        return;
    size_t at = off + full * LANES;
    v[0][full] = load_part(in->b, bh, at, rest);
    for (size_t q = 0; q < k; q++)
        v[q + 1][full] = load_part(in->x[q], bh ? in->xh[q] : NULL, at, rest) -
                         v[0][full];
}

static inline void block_stats(const au_stats_in *in, vf v[][NV], size_t nv, run_acc *r,
                               vf (*sketch)[NV], const float *sign, au_stats_out *o)
{
    size_t k = in->k, m = k + 1;
    vf thr = (vf){0} + in->small_thr;
    for (size_t p = 0; p < m; p++)
        for (size_t q = p; q < m; q++) {
            vf acc = r->gram[p * m + q];
            for (size_t j = 0; j < nv; j++)
                acc += v[p][j] * v[q][j];
            r->gram[p * m + q] = acc;
        }
    vi absmask = (vi){0} + 0x7fffffff;
    for (size_t q = 1; q < m; q++) {
        vf l1 = r->l1[q];
        vi z = r->zeros[q], sm = r->small[q];
        if (in->count_small) {
            for (size_t j = 0; j < nv; j++) {
                vf a = (vf)((vi)v[q][j] & absmask);
                l1 += a;
                z -= (vi)(a == 0.0f);
                sm -= (vi)(a < thr);
            }
        } else { /* counted in a later pass */
            for (size_t j = 0; j < nv; j++) {
                vf a = (vf)((vi)v[q][j] & absmask);
                l1 += a;
                z -= (vi)(a == 0.0f);
            }
        }
        r->l1[q] = l1;
        r->zeros[q] = z;
        r->small[q] = sm;
    }
    for (size_t q = 1; q < m && in->bounds; q++) {
        /* lo <= key <= hi as one unsigned compare; with lo > 0 that also
         * excludes zero */
        vu lo = (vu){0} + in->lo[q - 1], hi = (vu){0} + in->hi[q - 1];
        vu span = (vu){0} + (in->hi[q - 1] - in->lo[q - 1]);
        vi nonzero = (vi){0} - (in->lo[q - 1] == 0 ? 0 : 1); /* all ones: skip */
        vi above = r->above[q];
        uint32_t *dst = in->keys[q - 1];
        size_t n = o->n_keys[q - 1];
        for (size_t j = 0; j < nv; j++) {
            vu key = (vu)((vi)v[q][j] & absmask);
            above -= (vi)(key > hi);
            vi inside = (vi)(key - lo <= span) & (nonzero | (vi)(key != 0));
            n = append_keys(key, inside, dst, n);
        }
        o->n_keys[q - 1] = n;
        r->above[q] = above;
    }
    for (size_t p = 1; p < m; p++)
        for (size_t q = p + 1; q < m; q++) {
            vi nn = r->nn[p * m + q], opp = r->opp[p * m + q];
            for (size_t j = 0; j < nv; j++) {
                nn -= (vi)(v[p][j] != 0.0f) & (vi)(v[q][j] != 0.0f);
                opp -= (vi)(v[p][j] * v[q][j] < 0.0f);
            }
            r->nn[p * m + q] = nn;
            r->opp[p * m + q] = opp;
        }
    if (!sketch)
        return;
    for (size_t q = 1; q < m; q++)
        for (size_t j = 0; j < nv; j++)
            sketch[q][j] += v[q][j] * vload(sign + j * LANES);
}

/* y (AU_P probes) += the row's AU_SKETCH_BUCKETS buckets times g. */
static inline void project_row(const vf *bucket, const float *g, float *y)
{
    vf acc = vload(y);
    for (size_t j = 0; j < NV; j++)
        for (int l = 0; l < LANES; l++)
            acc += bucket[j][l] * vload(g + (j * LANES + (size_t)l) * LANES);
    memcpy(y, &acc, sizeof(acc));
}

static inline void flush_run(const au_stats_in *in, run_acc *r, size_t pad, au_stats_out *o)
{
    size_t k = in->k, m = k + 1;
    for (size_t p = 0; p < m; p++)
        for (size_t q = p; q < m; q++)
            o->gram[p * m + q] += hsum(r->gram[p * m + q]);
    for (size_t q = 1; q < m; q++) {
        o->l1[q - 1] += hsum(r->l1[q]);
        o->above[q - 1] += isum(r->above[q]);
        o->zeros[q - 1] += isum(r->zeros[q]) - pad;
        if (in->count_small)
            o->small[q - 1] += isum(r->small[q]) - pad;
        for (size_t p = q + 1; p < m; p++) {
            o->nn[(q - 1) * k + (p - 1)] += isum(r->nn[q * m + p]);
            o->opp[(q - 1) * k + (p - 1)] += isum(r->opp[q * m + p]);
        }
    }
    clear_run(r, m);
}

INLINE void stats_run(const au_stats_in *in, au_stats_out *o, bool bf16)
{
    vf v[FM][NV];
    vf sketch[FM][NV];
    run_acc r;
    clear_run(&r, in->k + 1);
    size_t cols = in->cols;
    for (size_t row = 0; row < in->nr; row++) {
        if (in->sign)
            memset(sketch, 0, (in->k + 1) * sizeof(sketch[0]));
        for (size_t s0 = 0; s0 < cols; s0 += SEG) {
            size_t s1 = cols - s0 < SEG ? cols : s0 + SEG, pad = 0;
            for (size_t off = s0; off < s1; off += BLK) {
                size_t n = s1 - off < BLK ? s1 - off : BLK;
                size_t nv = (n + LANES - 1) / LANES;
                pad += nv * LANES - n;
                load_block(in, row * cols + off, n, v, bf16);
                block_stats(in, v, nv, &r, in->sign ? sketch : NULL,
                            in->sign ? in->sign + off : NULL, o);
            }
            flush_run(in, &r, pad, o);
        }
        if (!in->sign)
            continue;
        for (size_t q = 1; q <= in->k; q++)
            project_row(sketch[q], in->g, in->y[q - 1] + row * LANES);
    }
}

void AU_ISA(au_stats_chunk)(const au_stats_in *in, au_stats_out *o)
{
    if (in->bh) /* the input format a constant in each copy */
        stats_run(in, o, true);
    else
        stats_run(in, o, false);
}
