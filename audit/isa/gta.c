/*
 * isa/gta.c - the trim-elect-merge simulation (TIES and its relatives
 * without random drops) of one run of elements in 16-lane vectors, the
 * trim given by each donor's cut on the |delta| float bits or by explicit
 * keep flags (see au_gta_chunk in audit_int.h).
 *
 * The float32 steps are mergekit's, in its order, as gta_chunk in
 * audit_pass.c has them: masked delta times weight; the sign of their sum
 * elects; the parts that agree, divided by the sum of their weights,
 * times lambda; M = (base + sum of parts) - base. The float64 sums are
 * taken over float lanes of at most SEG elements.
 */
#include <stddef.h>
#include <string.h>

#include "audit_int.h"
#include "vec.h"
#include "mergescope/banned.h"

#define FM AU_STATS_MAXIN

typedef struct run_acc {
    vf dot[FM], mm, lost[FM], sign[FM];
    vi eq[FM], small[FM], nn[FM * FM], opp[FM * FM];
} run_acc;

static inline vf vsel(vi m, vf a, vf b) /* m ? a : b, m all-ones or zero */
{
    return (vf)(((vi)a & m) | ((vi)b & ~m));
}

static inline vf vabs(vf a)
{
    return (vf)((vi)a & 0x7fffffff);
}

static void clear_run(run_acc *r, size_t k)
{
    memset(r, 0, offsetof(run_acc, eq));
    memset(r->eq, 0, k * sizeof(vi));
    memset(r->small, 0, k * sizeof(vi));
    memset(r->nn, 0, k * k * sizeof(vi));
    memset(r->opp, 0, k * k * sizeof(vi));
}

static void flush_run(const au_gta_in *in, run_acc *r, size_t pad, au_gta_out *o)
{
    size_t k = in->k;
    o->mm += hsum(r->mm);
    for (size_t q = 0; q < k; q++) {
        o->dot[q] += hsum(r->dot[q]);
        o->lost[q] += hsum(r->lost[q]);
        o->sign[q] += hsum(r->sign[q]);
        o->eq[q] += isum(r->eq[q]);
        if (in->small_key)
            o->small[q] += isum(r->small[q]) - pad;
        for (size_t p = q + 1; p < k; p++) {
            o->nn[q * k + p] += isum(r->nn[q * k + p]);
            o->opp[q * k + p] += isum(r->opp[q * k + p]);
        }
    }
    clear_run(r, k);
}

/* One vector of 16 positions: b, the donors' inputs x[q], the explicit
 * keeps (kp, when in->explicit_keep). */
INLINE void one_vector(const au_gta_in *in, vf b, const vf *x, const vf *kp, run_acc *r,
                       size_t k)
{
    vf d[FM], wd[FM], part[FM], keep[FM];
    vi on[FM];                    /* kept and nonzero */
    vf sw = (vf){0};
    for (size_t q = 0; q < k; q++) {
        d[q] = x[q] - b;
        vu key = (vu)((vi)d[q] & 0x7fffffff);
        vi kept;
        if (in->explicit_keep) {
            keep[q] = kp[q];
            kept = (vi)(kp[q] != 0.0f);
        } else {
            vi eq = (vi)(key == in->thr[q]);
            r->eq[q] -= eq;
            kept = (vi)(key > in->thr[q]) | (in->tie[q] ? eq : (vi){0});
            keep[q] = (vf)(kept & (vi)((vf){0} + 1.0f));
        }
        on[q] = kept & (vi)(key != 0);
        if (in->small_key)
            r->small[q] -= (vi)(key < in->small_key);
        /* masks multiply, as mergekit's x * mask does */
        wd[q] = (d[q] * keep[q]) * in->w[q];
        sw += wd[q];
        r->lost[q] += (vf)((vi)(d[q] * d[q]) & ~kept);
    }
    vf div = (vf){0} + (in->consensus ? 0.0f : in->divisor);
    vi pos = (vi)(sw >= 0.0f);
    for (size_t q = 0; q < k; q++) {
        if (!in->consensus) {
            part[q] = wd[q];
            continue;
        }
        vf up = (vf)((vi)wd[q] & (vi)(wd[q] > 0.0f));
        vf down = (vf)((vi)wd[q] & (vi)(wd[q] < 0.0f));
        part[q] = vsel(pos, up, down);
        vi elected = (vi)(vabs(part[q]) > 0.0f);
        div += (vf)((vi)((vf){0} + in->w[q]) & elected);
        vf lost = (vf)((vi)d[q] & (vi)(vabs(wd[q]) > 0.0f) & ~elected);
        r->sign[q] += lost * lost;
    }
    if (in->consensus)
        div = vsel((vi)(vabs(div) > 0.0f), div, (vf){0} + 1.0f);
    vf mixed = (vf){0};
    for (size_t q = 0; q < k; q++) {
        vf p = in->normalize ? part[q] / div : part[q];
        p = in->lam != 1.0f ? p * in->lam : p;
        part[q] = p;
        mixed += p;
    }
    vf mv = (b + mixed) - b;
    r->mm += mv * mv;
    for (size_t q = 0; q < k; q++) {
        r->dot[q] += part[q] * mv;
        for (size_t p = q + 1; p < k; p++) {
            vi both = on[q] & on[p];
            r->nn[q * k + p] -= both;
            r->opp[q * k + p] -= both & (vi)(((vi)d[q] ^ (vi)d[p]) < 0);
        }
    }
}

static inline vf keep_vector(const uint8_t *kp)
{
    vb v;
    memcpy(&v, kp, sizeof(v));
    return __builtin_convertvector(v, vf);
}

INLINE void gta_run(const au_gta_in *in, au_gta_out *o, size_t k, bool bf16)
{
    run_acc r;
    clear_run(&r, k);
    size_t n = in->n;
    vf x[FM], kp[FM];
    memset(kp, 0, sizeof(kp)); /* read only with explicit keeps */
    for (size_t s0 = 0; s0 < n; s0 += SEG) {
        size_t s1 = n - s0 < SEG ? n : s0 + SEG, pad = 0;
        for (size_t j = s0; j < s1; j += LANES) {
            size_t len = s1 - j < LANES ? s1 - j : LANES;
            vf b;
            if (len == LANES) {
                b = load_at(in->b, bf16 ? in->bh : NULL, j);
                for (size_t q = 0; q < k; q++) {
                    x[q] = load_at(in->x[q], bf16 ? in->xh[q] : NULL, j);
                    if (in->explicit_keep)
                        kp[q] = keep_vector(in->keep[q] + j);
                }
            } else { /* zero lanes past the end: no delta, nothing kept */
                uint8_t tk[LANES] = {0};
                b = load_part(in->b, bf16 ? in->bh : NULL, j, len);
                for (size_t q = 0; q < k; q++) {
                    x[q] = load_part(in->x[q], bf16 ? in->xh[q] : NULL, j, len);
                    if (in->explicit_keep) {
                        memcpy(tk, in->keep[q] + j, len);
                        kp[q] = keep_vector(tk);
                    }
                }
                pad = LANES - len;
            }
            one_vector(in, b, x, kp, &r, k);
        }
        flush_run(in, &r, pad, o);
    }
}

/* k and the input format are constants in these calls, for the usual
 * donor counts: the compiler keeps the per-donor vectors in registers. */
#define GTA_CASES(h)                                                          \
    switch (in->k) {                                                          \
    case 1: gta_run(in, o, 1, h); break;                                      \
    case 2: gta_run(in, o, 2, h); break;                                      \
    case 3: gta_run(in, o, 3, h); break;                                      \
    case 4: gta_run(in, o, 4, h); break;                                      \
    case 5: gta_run(in, o, 5, h); break;                                      \
    case 6: gta_run(in, o, 6, h); break;                                      \
    case 7: gta_run(in, o, 7, h); break;                                      \
    default: gta_run(in, o, in->k, h); break;                                 \
    }

void AU_ISA(au_gta_chunk)(const au_gta_in *in, au_gta_out *o)
{
    if (in->bh) {
        GTA_CASES(true)
    } else {
        GTA_CASES(false)
    }
}
