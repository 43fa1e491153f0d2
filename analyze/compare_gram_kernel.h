/*
 * compare_gram_kernel.h - the per-block Gram kernel, included twice by
 * compare_gram.c: with KW = 4 (SSE2 / NEON, always) and, on x86-64, with
 * KW = 8 inside an avx2 target region, chosen at run time. KSUF names the
 * instance. Not a public header.
 *
 * Float32 products are summed over runs of RUN elements (at most 32 per
 * lane) and every run's sum is added in float64, so rounding stays at the level of
 * one short float32 sum while the totals are float64.
 */
#define KCAT_(a, b) a##_##b
#define KCAT(a, b) KCAT_(a, b)
#define KV KCAT(vf, KSUF)
#define KI KCAT(vi, KSUF)

typedef float KV __attribute__((vector_size(KW * 4)));
typedef int32_t KI __attribute__((vector_size(KW * 4)));

#define KLOAD(v, p) memcpy(&(v), (p), sizeof(KV))

static inline double KCAT(hsum_d, KSUF)(KV v)
{
    double s = 0;
    for (int l = 0; l < KW; l++)
        s += (double)v[l];
    return s;
}

static inline uint64_t KCAT(hsum_i, KSUF)(KI v)
{
    uint64_t s = 0;
    for (int l = 0; l < KW; l++)
        s += (uint32_t)v[l];
    return s;
}

/* Upper triangle of the Gram of k rows of b floats (b a multiple of RUN,
 * zero-padded) added to g. */
static void KCAT(gram_block, KSUF)(double *g, size_t k, const float *w, size_t b,
                                   size_t first)
{
    for (size_t i = first; i < k; i++) {
        const float *wi = w + i * b;
        for (size_t j = i; j < k; j++) {
            const float *wj = w + j * b;
            double s = 0;
            for (size_t e = 0; e < b; e += RUN) {
                KV a0 = {0}, a1 = {0}, x0, x1, y0, y1;
                for (size_t u = e; u < e + RUN; u += 2 * KW) {
                    KLOAD(x0, wi + u);
                    KLOAD(x1, wi + u + KW);
                    KLOAD(y0, wj + u);
                    KLOAD(y1, wj + u + KW);
                    a0 += x0 * y0;
                    a1 += x1 * y1;
                }
                s += KCAT(hsum_d, KSUF)(a0 + a1);
            }
            g[i * k + j] += s;
        }
    }
}

/*
 * gram_block for exactly three rows (compare of 3 models; attribute of a
 * base, merged and 2 donors: 3 delta rows), in one pass over them: each
 * row is loaded once for its 6 products instead of once per product. The
 * lanes of the two accumulators of gram_block (a0: the first KW of every
 * 2 KW elements, a1: the second) are independent sums, so they are run
 * one after the other here, in the same order: the same bits.
 */
static void KCAT(gram3_block, KSUF)(double *g, size_t k, const float *w,
                                    size_t b, size_t first)
{
    const float *r0 = w + first * b, *r1 = r0 + b, *r2 = r1 + b;
    double s[6] = {0};
    for (size_t e = 0; e < b; e += RUN) {
        KV h[2][6];
        for (size_t half = 0; half < 2; half++) {
            KV a00 = {0}, a01 = {0}, a02 = {0}, a11 = {0}, a12 = {0}, a22 = {0};
            for (size_t u = e + half * KW; u < e + RUN; u += 2 * KW) {
                KV p, q, r;
                KLOAD(p, r0 + u);
                KLOAD(q, r1 + u);
                KLOAD(r, r2 + u);
                a00 += p * p;
                a01 += p * q;
                a02 += p * r;
                a11 += q * q;
                a12 += q * r;
                a22 += r * r;
            }
            h[half][0] = a00;
            h[half][1] = a01;
            h[half][2] = a02;
            h[half][3] = a11;
            h[half][4] = a12;
            h[half][5] = a22;
        }
        for (int p = 0; p < 6; p++)
            s[p] += KCAT(hsum_d, KSUF)(h[0][p] + h[1][p]);
    }
    double *g0 = g + first * k + first, *g1 = g0 + k + 1, *g2 = g1 + k + 1;
    g0[0] += s[0];
    g0[1] += s[1];
    g0[2] += s[2];
    g1[0] += s[3];
    g1[1] += s[4];
    g2[0] += s[5];
}

/*
 * Attribute with two donors (k = 4, MS_GRAM_SIGNS alone, b a multiple of
 * RUN): the deltas of rows 1..3 against row 0 are formed in registers and
 * used at once for gram3_block's six products, in its lanes and order (the
 * same float32 values: the same bits), and for the sign counts of pairs
 * (1, 2) and (1, 3); nothing goes through the w rows.
 */
static void KCAT(attr4_block, KSUF)(ms_gram *acc, const float *const *x,
                                    size_t off, size_t b)
{
    const float *r0 = x[0] + off, *r1 = x[1] + off, *r2 = x[2] + off,
                *r3 = x[3] + off;
    const KV zero = {0};
    KI same2 = {0}, both2 = {0}, same3 = {0}, both3 = {0};
    double s[6] = {0};
    for (size_t e = 0; e < b; e += RUN) {
        KV h[2][6];
        for (size_t half = 0; half < 2; half++) {
            KV a00 = {0}, a01 = {0}, a02 = {0}, a11 = {0}, a12 = {0}, a22 = {0};
            for (size_t u = e + half * KW; u < e + RUN; u += 2 * KW) {
                KV z, p, q, r;
                KLOAD(z, r0 + u);
                KLOAD(p, r1 + u);
                KLOAD(q, r2 + u);
                KLOAD(r, r3 + u);
                p -= z;
                q -= z;
                r -= z;
                a00 += p * p;
                a01 += p * q;
                a02 += p * r;
                a11 += q * q;
                a12 += q * r;
                a22 += r * r;
                KI pp = p > zero, pn = p < zero, qp = q > zero, qn = q < zero;
                KI rp = r > zero, rn = r < zero, pz = pp | pn;
                same2 -= (pp & qp) | (pn & qn);
                both2 -= pz & (qp | qn);
                same3 -= (pp & rp) | (pn & rn);
                both3 -= pz & (rp | rn);
            }
            h[half][0] = a00;
            h[half][1] = a01;
            h[half][2] = a02;
            h[half][3] = a11;
            h[half][4] = a12;
            h[half][5] = a22;
        }
        for (int p = 0; p < 6; p++)
            s[p] += KCAT(hsum_d, KSUF)(h[0][p] + h[1][p]);
    }
    double *g1 = acc->g + 5, *g2 = g1 + 5, *g3 = g2 + 5; /* k = 4: (1,1) .. */
    g1[0] += s[0];
    g1[1] += s[1];
    g1[2] += s[2];
    g2[0] += s[3];
    g2[1] += s[4];
    g3[0] += s[5];
    ms_pair_stats *p12 = &acc->pairs[ms_gram_pair_index(4, 1, 2)];
    ms_pair_stats *p13 = &acc->pairs[ms_gram_pair_index(4, 1, 3)];
    p12->sign_same += KCAT(hsum_i, KSUF)(same2);
    p12->sign_both += KCAT(hsum_i, KSUF)(both2);
    p13->sign_same += KCAT(hsum_i, KSUF)(same3);
    p13->sign_both += KCAT(hsum_i, KSUF)(both3);
}

/* max |x_i - x_j| and exact-equality count over n elements; two
 * independent accumulators keep the select chains short. */
static void KCAT(pair_block, KSUF)(ms_pair_stats *ps, const float *xi,
                                   const float *xj, size_t n)
{
    KI absmask, q0 = {0}, q1 = {0};
    for (int l = 0; l < KW; l++)
        absmask[l] = 0x7fffffff;
    KV m0 = {0}, m1 = {0};
    size_t e = 0;
    for (; e + 2 * KW <= n; e += 2 * KW) {
        KV a, c, d;
        KI gt;
        KLOAD(a, xi + e);
        KLOAD(c, xj + e);
        d = (KV)((KI)(a - c) & absmask);
        gt = d > m0;                    /* false for NaN: ignored */
        m0 = (KV)(((KI)d & gt) | ((KI)m0 & ~gt));
        q0 -= a == c;                   /* true is -1 */
        KLOAD(a, xi + e + KW);
        KLOAD(c, xj + e + KW);
        d = (KV)((KI)(a - c) & absmask);
        gt = d > m1;
        m1 = (KV)(((KI)d & gt) | ((KI)m1 & ~gt));
        q1 -= a == c;
    }
    float mx = (float)ps->max_abs;
    for (int l = 0; l < KW; l++) {
        float v = m0[l] > m1[l] ? m0[l] : m1[l];
        mx = v > mx ? v : mx;
    }
    uint64_t cnt = KCAT(hsum_i, KSUF)(q0) + KCAT(hsum_i, KSUF)(q1);
    for (; e < n; e++) {
        float d = fabsf(xi[e] - xj[e]);
        mx = d > mx ? d : mx;
        cnt += xi[e] == xj[e];
    }
    ps->max_abs = mx;
    ps->identical += cnt;
}

/* Deltas d_i, d_j both non-zero, and of those, with the same sign (n a
 * multiple of KW; padding is zero and counts for nothing). */
static void KCAT(sign_block, KSUF)(ms_pair_stats *ps, const float *di,
                                   const float *dj, size_t n)
{
    const KV zero = {0};
    KI same = {0}, both = {0};
    for (size_t e = 0; e < n; e += KW) {
        KV a, c;
        KLOAD(a, di + e);
        KLOAD(c, dj + e);
        KI pa = a > zero, na = a < zero, pc = c > zero, nc = c < zero;
        same -= (pa & pc) | (na & nc);
        both -= (pa | na) & (pc | nc);
    }
    ps->sign_same += KCAT(hsum_i, KSUF)(same);
    ps->sign_both += KCAT(hsum_i, KSUF)(both);
}

/* Row i's deltas x_i - x_0 into wi (b elements), and from the same
 * registers pair (0, i)'s max abs difference and equal count: x_i - x_0 is
 * 0 exactly when x_i == x_0, for finite values. */
static void KCAT(delta_pair_row, KSUF)(ms_pair_stats *ps, float *wi,
                                       const float *xi, const float *x0,
                                       size_t b)
{
    KI absmask, q0 = {0}, q1 = {0};
    for (int l = 0; l < KW; l++)
        absmask[l] = 0x7fffffff;
    KV m0 = {0}, m1 = {0};
    const KV zero = {0};
    size_t e = 0;
    for (; e + 2 * KW <= b; e += 2 * KW) {
        KV a, c, d;
        KI gt;
        KLOAD(a, xi + e);
        KLOAD(c, x0 + e);
        a -= c;
        memcpy(wi + e, &a, sizeof(a));
        d = (KV)((KI)a & absmask);
        gt = d > m0;                    /* false for NaN: ignored */
        m0 = (KV)(((KI)d & gt) | ((KI)m0 & ~gt));
        q0 -= a == zero;
        KLOAD(a, xi + e + KW);
        KLOAD(c, x0 + e + KW);
        a -= c;
        memcpy(wi + e + KW, &a, sizeof(a));
        d = (KV)((KI)a & absmask);
        gt = d > m1;
        m1 = (KV)(((KI)d & gt) | ((KI)m1 & ~gt));
        q1 -= a == zero;
    }
    float mx = (float)ps->max_abs;
    for (int l = 0; l < KW; l++) {
        float v = m0[l] > m1[l] ? m0[l] : m1[l];
        mx = v > mx ? v : mx;
    }
    uint64_t cnt = KCAT(hsum_i, KSUF)(q0) + KCAT(hsum_i, KSUF)(q1);
    for (; e < b; e++) {
        wi[e] = xi[e] - x0[e];
        float d = fabsf(wi[e]);
        mx = d > mx ? d : mx;
        cnt += xi[e] == x0[e];
    }
    ps->max_abs = mx;
    ps->identical += cnt;
}

/* Row i's deltas into wi and, when w1 (row 1's deltas, already written)
 * is given, their sign agreement with it, counted as sign_block does
 * (NaN and 0 count as no sign) while the delta is still in a register:
 * no second pass over the two rows. */
static void KCAT(delta_sign_row, KSUF)(ms_pair_stats *ps, float *wi,
                                       const float *xi, const float *x0,
                                       const float *w1, size_t b)
{
    const KV zero = {0};
    KI same = {0}, both = {0};
    size_t e = 0;
    for (; e + KW <= b; e += KW) {
        KV a, c;
        KLOAD(a, xi + e);
        KLOAD(c, x0 + e);
        a -= c;
        memcpy(wi + e, &a, sizeof(a));
        if (!w1)
            continue;
        KLOAD(c, w1 + e);
        KI pa = a > zero, na = a < zero, pc = c > zero, nc = c < zero;
        same -= (pa & pc) | (na & nc);
        both -= (pa | na) & (pc | nc);
    }
    uint64_t ns = 0, nb = 0;
    for (; e < b; e++) {
        float a = wi[e] = xi[e] - x0[e];
        if (!w1)
            continue;
        float c = w1[e];
        ns += (a > 0 && c > 0) || (a < 0 && c < 0);
        nb += (a > 0 || a < 0) && (c > 0 || c < 0);
    }
    if (w1) {
        ps->sign_same += KCAT(hsum_i, KSUF)(same) + ns;
        ps->sign_both += KCAT(hsum_i, KSUF)(both) + nb;
    }
}

/* One block of b elements at offset off: deltas into w, then the Gram
 * and, as flags ask, the pair and sign statistics. */
static void KCAT(add_block, KSUF)(ms_gram *acc, const float *const *x,
                                  size_t off, size_t b, unsigned flags,
                                  float *w)
{
    size_t k = acc->k;
    size_t bp = (b + RUN - 1) / RUN * RUN;
    bool signs = (flags & MS_GRAM_SIGNS) != 0;
    bool pairs = (flags & MS_GRAM_PAIRS) != 0;
    if (signs && !pairs && k == 4 && b % RUN == 0) {
        KCAT(attr4_block, KSUF)(acc, x, off, b);
        return;
    }
    const float *x0 = x[0] + off;
    if (!signs) { /* with signs, row 0 (the base) is in no product */
        memcpy(w, x0, b * sizeof(float));
        memset(w + b, 0, (bp - b) * sizeof(float));
    }
    for (size_t i = 1; i < k; i++) {
        float *wi = w + i * bp;
        /* row 1 has no sign pair; the rows after it count against it */
        ms_pair_stats *ps1 = i > 1 ? &acc->pairs[ms_gram_pair_index(k, 1, i)] : NULL;
        const float *w1 = signs && i > 1 ? w + bp : NULL;
        if (pairs)
            KCAT(delta_pair_row, KSUF)(&acc->pairs[ms_gram_pair_index(k, 0, i)],
                                       wi, x[i] + off, x0, b);
        else
            KCAT(delta_sign_row, KSUF)(ps1, wi, x[i] + off, x0, w1, b);
        memset(wi + b, 0, (bp - b) * sizeof(float));
        if (pairs && w1)
            KCAT(sign_block, KSUF)(ps1, wi, w1, bp);
    }
    /* the attribute layout needs only the deltas' products */
    if (k - (signs ? 1 : 0) == 3)
        KCAT(gram3_block, KSUF)(acc->g, k, w, bp, signs ? 1 : 0);
    else
        KCAT(gram_block, KSUF)(acc->g, k, w, bp, signs ? 1 : 0);
    for (size_t i = 1; pairs && i < k; i++)
        for (size_t j = i + 1; j < k; j++)
            KCAT(pair_block, KSUF)(&acc->pairs[ms_gram_pair_index(k, i, j)],
                                   x[i] + off, x[j] + off, b);
}

#undef KV
#undef KI
#undef KLOAD
#undef KCAT
#undef KCAT_
