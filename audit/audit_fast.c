/*
 * audit_fast.c - TIES-style simulation (magnitude trim, sign election, no
 * random drops, no rescale) with two passes over the data instead of four.
 *
 * The exact cut of a donor (its k-th largest |delta|, equal values kept by
 * lowest flat index) used to take a level-1 histogram of every |delta| in
 * the statistics pass and a level-2 one in a selection pass. Here:
 *
 * 1. a pre-pass reads one row pair in 32 and histograms their |delta|:
 *    each donor gets bounds [lo, hi] (float bits) holding its cut with a
 *    wide margin (au_fast_sample_pass);
 * 2. the statistics pass counts the |delta| above hi and keeps the nonzero
 *    ones inside the bounds (isa/stats.c); after it the exact cut is
 *    found among those (au_fast_cuts): a guess from a sorted subsample,
 *    confirmed by one count, else a radix select. When the cut is not
 *    inside the bounds after all, or the bounds hold too many values, the
 *    exact selection passes run instead (audit_pass.c), same result;
 * 3. the simulation pass applies the cut in vectors (isa/gta.c); equal
 *    values are kept while fewer than `need` of them have been seen, and
 *    the one run where that count is crossed is simulated again with keep
 *    flags from ms_cut_apply.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* the scans over the kept values are written to vectorise (gcc: -O3),
 * and built for AVX2 besides the baseline, the loader picking one */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FAST_HOT __attribute__((target_clones("avx2", "default")))
#else
#define FAST_HOT
#endif

/* How many of the n keys lie in level-1 bins above cut. */
FAST_HOT static size_t count_above_bin(const uint32_t *keys, size_t n, uint32_t cut)
{
    size_t above = 0;
    for (size_t j = 0; j < n; j++)
        above += (keys[j] >> 16) > cut;
    return above;
}

/* Keys above g and equal to it. */
FAST_HOT static void count_guess(const uint32_t *key, size_t n, uint32_t g, uint64_t *gt,
                                 uint64_t *eq)
{
    uint64_t a = 0, e = 0;
    for (size_t p = 0; p < n; p++) {
        a += key[p] > g;
        e += key[p] == g;
    }
    *gt = a;
    *eq = e;
}

/* The same from bf16 bits (widened exactly to float). */
FAST_HOT static void abs_keys_bf16(const uint16_t *x, const uint16_t *b, size_t n, uint32_t *k)
{
    for (size_t j = 0; j < n; j++) {
        union { uint32_t u; float f; } xv = {(uint32_t)x[j] << 16}, bv = {(uint32_t)b[j] << 16};
        k[j] = ms_abs_bits(xv.f - bv.f);
    }
}

/* k[j] = the float bits of |x[j] - b[j]|. */
FAST_HOT static void abs_keys(const float *x, const float *b, size_t n, uint32_t *k)
{
    for (size_t j = 0; j < n; j++)
        k[j] = ms_abs_bits(x[j] - b[j]);
}

#define RUN_ROWS 2              /* pre-pass: RUN_ROWS rows ... */
#define RUN_STEP 32             /* ... in every RUN_STEP */
#define SAMPLE_ALL (1u << 16)   /* tensors this small are histogrammed whole */
#define MARGIN_SIGMA 10.0       /* bounds: the sampled cut +- 10 sigma */
#define KEY_BYTES (96u << 20)   /* kept |delta| bits of one task, at most */
#define KEY_SLACK 16            /* whole-vector stores past the last key */

bool au_fast_ok(const ms_audit *a, const au_task *t)
{
    if (a->opts.exact_select || a->sim != AU_APPLY || t->base < 0 || t->n_in > AU_STATS_MAXIN || t->draws != 1 ||
        t->chunk_on || t->chunk_dot)
        return false;
    if (t->sparse == AU_SP_NONE)
        return true;
    return t->sparse == AU_SP_MAGNITUDE && !t->rescale;
}

/* Donor input i is cut at a magnitude (0 < k < n). */
static bool has_cut(const au_task *t, size_t i)
{
    return (int)i != t->base && t->in[i].sparsify && t->sparse == AU_SP_MAGNITUDE &&
           t->n_sel[i] == 1;
}

/* ------------------------------------------------------------ pre-pass */

/* The level-1 bin holding ascending rank r of hist. */
static uint32_t bin_at(const uint64_t *hist, uint64_t r)
{
    uint64_t cum = 0;
    for (uint32_t b = 0; b < MS_HIST_BINS; b++) {
        cum += hist[b];
        if (cum > r)
            return b;
    }
    return MS_HIST_BINS - 1;
}

/*
 * Bounds of donor input i from the keys of the sampled row runs (keys,
 * run r holding keys [start[r], start[r + 1])). Rows differ in scale, so
 * the spread of the cut's rank is measured between the runs (the fraction
 * of each run above the estimated cut bin), not taken from the binomial
 * alone. Exact for a tensor read whole.
 */
static void set_bounds(au_task *t, size_t i, uint64_t *hist, const uint32_t *keys,
                       const size_t *start, size_t runs, bool whole)
{
    size_t s = start[runs];
    t->lo_key[i] = 1;
    t->hi_key[i] = 0x7fffffffu;
    if (s == 0)
        return;
    memset(hist, 0, MS_HIST_BINS * sizeof(uint64_t));
    for (size_t j = 0; j < s; j++)
        hist[keys[j] >> 16]++;
    double q = (double)t->sel[i][0].pos / (double)t->n_elems_on, c = q * (double)s;
    uint32_t cut = bin_at(hist, (uint64_t)c);
    double sum = 0.0, sq = 0.0;
    for (size_t r = 0; r < runs; r++) {
        size_t len = start[r + 1] - start[r];
        size_t above = count_above_bin(keys + start[r], len, cut);
        double f = len ? (double)above / (double)len : 0.0;
        sum += f;
        sq += f * f;
    }
    double mean = sum / (double)runs;
    double var_runs = runs > 1 ? fmax(0.0, (sq - (double)runs * mean * mean) /
                                               (double)(runs - 1)) / (double)runs : 0.25;
    double sigma = sqrt(var_runs + q * (1.0 - q) / (double)s);
    double margin = whole ? 0.0 : (MARGIN_SIGMA * sigma) * (double)s + 64.0;
    double rlo = fmax(0.0, c - margin), rhi = fmin((double)s - 1.0, c + margin);
    t->lo_key[i] = bin_at(hist, (uint64_t)rlo) << 16;
    t->hi_key[i] = (bin_at(hist, (uint64_t)rhi) << 16) | 0xffffu;
}

ms_status au_fast_sample_pass(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    bool any = false;
    for (size_t i = 0; i < t->n_in; i++) {
        any |= has_cut(t, i);
        t->lo_key[i] = t->hi_key[i] = UINT32_MAX; /* nothing inside */
    }
    t->bounds = any;
    if (!any)
        return MS_OK;
    if (!au_worker_hist(w, a))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    bool whole = t->n_elems_on <= SAMPLE_ALL || t->rows < 2 * RUN_STEP;
    int64_t run = whole ? t->rows_per_chunk : RUN_ROWS, step = whole ? run : RUN_STEP;
    if (run > t->rows_per_chunk)
        run = t->rows_per_chunk;
    /* where the runs start moves with the tensor, so no row is favoured */
    int64_t r0 = whole ? 0 : (int64_t)(ms_rng_key(0x5eed, t->name, 0, 0) % (uint64_t)step);
    size_t runs = (size_t)((t->rows - r0 + step - 1) / step), r = 0, first = 0;
    while (!has_cut(t, first))
        first++;
    size_t *start = ms_alloc_array(runs + 1, sizeof(size_t));
    if (!start)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    au_fast_keys_reset(t, w);
    ms_status st = MS_OK;
    bool full = false;
    for (int64_t row0 = r0; row0 < t->rows && !st; row0 += step, r++) {
        int64_t nr = t->rows - row0 < run ? t->rows - row0 : run;
        size_t nn = (size_t)(nr * t->cols);
        start[r] = w->n_keys[first];
        if (!au_fast_keys_room(a, t, w, nn)) { /* the sample alone is too big */
            full = true;
            break;
        }
        bool bf16 = au_read_bf16(a, t, w, row0, nr);
        if (!bf16 && (st = au_read_inputs(a, t, w, row0, nr, err)))
            break;
        const float *b = w->x + (size_t)t->base * w->cap;
        for (size_t i = 0; i < t->n_in; i++) {
            if (!has_cut(t, i))
                continue;
            uint32_t *k = w->keys[i] + w->n_keys[i];
            if (bf16)
                abs_keys_bf16(w->hx + i * w->cap, w->hx + (size_t)t->base * w->cap, nn, k);
            else
                abs_keys(w->x + i * w->cap, b, nn, k);
            w->n_keys[i] += nn;
        }
    }
    start[runs] = w->n_keys[first];
    for (size_t i = 0; i < t->n_in && !st && !full; i++)
        if (has_cut(t, i))
            set_bounds(t, i, w->hist + i * MS_HIST_BINS, w->keys[i], start, runs, whole);
    free(start);
    au_fast_keys_reset(t, w);
    t->keys_full = full; /* no bounds: the exact passes find the cuts */
    return st;
}

/* ------------------------------------------------- keys of the stats pass */

void au_fast_keys_reset(au_task *t, au_worker *w)
{
    memset(t->above, 0, sizeof(t->above));
    memset(w->n_keys, 0, sizeof(w->n_keys));
    t->keys_full = false;
}

/* The key store's budget: KEY_BYTES, at most a quarter of --max-memory. */
static size_t key_budget(const ms_audit *a)
{
    uint64_t m = a->opts.max_memory / 4;
    return a->opts.max_memory && m < KEY_BYTES ? (size_t)m : KEY_BYTES;
}

/* Room for nn more keys of each bounded donor; false past the budget. */
bool au_fast_keys_room(const ms_audit *a, const au_task *t, au_worker *w, size_t nn)
{
    size_t budget = key_budget(a);
    for (size_t i = 0; i < t->n_in; i++) {
        if (!has_cut(t, i) || w->n_keys[i] + nn + KEY_SLACK <= w->keys_cap[i])
            continue;
        size_t total = 0;
        for (size_t k = 0; k < t->n_in; k++)
            total += k == i ? 0 : w->keys_cap[k];
        size_t want = (w->n_keys[i] + nn + KEY_SLACK) / 4 * 5;
        if ((total + want) * sizeof(uint32_t) > budget)
            want = w->n_keys[i] + nn + KEY_SLACK;
        if ((total + want) * sizeof(uint32_t) > budget)
            return false;
        uint32_t *p = realloc(w->keys[i], want * sizeof(uint32_t));
        if (!p)
            return false;
        w->keys[i] = p;
        w->keys_cap[i] = want;
    }
    return true;
}

/*
 * Ascending rank pos among the u keys (reordered): the value's bits, how
 * many are below it and how many equal it. A radix select on bits 31-16
 * (only the bins between lo and hi occur), 15-8 and 7-0, moving the keys
 * of the chosen bin to the front before the next level. The keys crowd
 * into few values (bf16 deltas repeat a handful), so the counts are kept
 * in eight interleaved copies: consecutive increments of one counter do
 * not wait on each other.
 */
#define COPIES 8
static const int sel_shift[3] = {16, 8, 0};

static uint32_t sel_digit(uint32_t key, int level, uint32_t first)
{
    return level == 0 ? (key >> 16) - first : (key >> sel_shift[level]) & 0xffu;
}

/* The bin of ascending rank pos (below: keys in lower levels' bins before
 * this one); *n its count, *below_out the keys in lower bins here. */
static uint32_t pick(const uint32_t *cnt, size_t bins, uint64_t below, uint64_t pos,
                     uint64_t *n_out, uint64_t *below_out)
{
    uint64_t cum = 0, n = 0;
    size_t b = 0;
    for (; b < bins; b++) {
        n = 0;
        for (size_t j = 0; j < COPIES; j++)
            n += cnt[j * bins + b];
        if (below + cum + n > pos)
            break;
        cum += n;
    }
    if (b == bins) { /* pos past the keys: cannot happen for pos < u */
        b = bins - 1;
        cum -= n;
    }
    *n_out = n;
    *below_out = cum;
    return (uint32_t)b;
}

static void select_key(uint32_t *key, size_t u, uint64_t pos, uint32_t lo, uint32_t hi,
                       uint32_t *cnt, ms_select *out)
{
    uint32_t first = lo >> 16, chosen = 0;
    size_t bins = (hi >> 16) - first + 1, p = 0;
    uint64_t below = 0, n = 0, cum;
    int level = 0;
    if (bins == 1) { /* one level-1 bin: go straight to the next digit */
        level = 1;
        bins = 256;
        memset(cnt, 0, COPIES * bins * sizeof(uint32_t));
        for (p = 0; p < u; p++)
            cnt[(p & (COPIES - 1)) * bins + sel_digit(key[p], 1, first)]++;
        chosen = first << 16;
    } else {
        memset(cnt, 0, COPIES * bins * sizeof(uint32_t));
        for (p = 0; p < u; p++)
            cnt[(p & (COPIES - 1)) * bins + sel_digit(key[p], 0, first)]++;
    }
    for (; level < 3; level++) {
        uint32_t v = pick(cnt, bins, below, pos, &n, &cum);
        below += cum;
        chosen |= (level == 0 ? v + first : v) << sel_shift[level];
        if (level == 2)
            break;
        /* keep the keys of bin v and count them by the next digit */
        size_t m = 0, nb = 256;
        memset(cnt, 0, COPIES * nb * sizeof(uint32_t));
        for (p = 0; p < u; p++) { /* branch-free: the bins mix unpredictably */
            uint32_t k = key[p];
            bool in = sel_digit(k, level, first) == v;
            key[m] = k;
            cnt[(p & (COPIES - 1)) * nb + sel_digit(k, level + 1, first)] += in;
            m += in;
        }
        u = m;
        bins = nb;
    }
    out->bits = chosen;
    out->below = below;
    out->equal = n;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The value at ascending rank pos of u keys, estimated from GUESS_N of
 * them evenly spaced. */
#define GUESS_N 2048
static uint32_t guess_cut(const uint32_t *key, size_t u, uint64_t pos)
{
    uint32_t sub[GUESS_N];
    size_t m = u < GUESS_N ? u : GUESS_N;
    if (m == 0)
        return UINT32_MAX;
    for (size_t j = 0; j < m; j++)
        sub[j] = key[(size_t)((double)j * (double)u / (double)m)];
    qsort(sub, m, sizeof(sub[0]), cmp_u32);
    size_t at = (size_t)((double)pos * (double)m / (double)u);
    return sub[at < m ? at : m - 1];
}

/*
 * Donor input i's exact cut from the values above its bounds (counted)
 * and inside them (kept): r = k - above are kept from inside, the largest
 * first. False when the cut is not inside the bounds.
 */
static bool exact_cut(au_task *t, au_worker *w, size_t i)
{
    uint64_t n = t->n_elems_on, k = n - t->sel[i][0].pos, above = t->above[i];
    uint64_t u = w->n_keys[i];
    ms_cut *c = &t->cut[i];
    memset(c, 0, sizeof(*c));
    c->mode = 3;
    if (k >= above && k - above > u && t->lo_key[i] == 0) {
        /* bounds from zero (a donor equal to the base in much of the
         * tensor): every nonzero value is kept, and the cut falls among
         * the zeros, where keeping or not changes nothing but the count */
        c->a_bits = 0;
        c->need = k - above - u;
        return true;
    }
    if (k < above || k - above > u)
        return false;
    uint64_t r = k - above;
    if (r == 0) { /* exactly the values above hi are kept */
        c->a_bits = t->hi_key[i];
        return true;
    }
    /* bf16 deltas repeat a few values: the cut is most often the value at
     * its rank in a small sorted subsample of the kept values, which one
     * counting scan confirms (the r-th largest equals it) */
    uint32_t g = guess_cut(w->keys[i], u, u - r);
    uint64_t gt, eq;
    count_guess(w->keys[i], u, g, &gt, &eq);
    if (gt < r && r <= gt + eq) {
        c->a_bits = g;
        c->need = r - gt;
        return true;
    }
    ms_select s = {.pos = u - r};
    select_key(w->keys[i], u, u - r, t->lo_key[i], t->hi_key[i],
               (uint32_t *)(void *)w->hist, &s);
    c->a_bits = s.bits;
    c->need = r - (u - s.below - s.equal);
    return true;
}

bool au_fast_cuts(au_task *t, au_worker *w)
{
    if (t->keys_full)
        return false;
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        if (!has_cut(t, i)) {
            bool all = !t->in[i].sparsify || t->sparse == AU_SP_NONE ||
                       floor(t->in[i].density * (double)t->n_elems_on) >= (double)t->n_elems_on;
            if (all)
                ms_cut_all(&t->cut[i]);
            else
                ms_cut_none(&t->cut[i]);
            continue;
        }
        if (!exact_cut(t, w, i))
            return false;
    }
    return true;
}

/* -------------------------------------------------------- the simulation */

typedef struct fast_run {
    size_t k, idx[AU_STATS_MAXIN];
    uint64_t seen[AU_STATS_MAXIN];
    au_gta_out total;
} fast_run;

static void add_out(au_gta_out *to, const au_gta_out *o, size_t k)
{
    to->mm += o->mm;
    for (size_t q = 0; q < k; q++) {
        to->dot[q] += o->dot[q];
        to->lost[q] += o->lost[q];
        to->sign[q] += o->sign[q];
        to->small[q] += o->small[q];
        for (size_t p = q + 1; p < k; p++) {
            to->nn[q * k + p] += o->nn[q * k + p];
            to->opp[q * k + p] += o->opp[q * k + p];
        }
    }
}

static void setup_in(const au_task *t, const fast_run *f, au_gta_in *in)
{
    memset(in, 0, sizeof(*in));
    float wsum = 0.0f;
    in->k = f->k;
    for (size_t q = 0; q < f->k; q++) {
        size_t i = f->idx[q];
        in->w[q] = (float)(t->in[i].weight * t->wscale[i]);
        wsum += in->w[q];
        const ms_cut *c = &t->cut[i];
        in->thr[q] = c->mode == 1 ? 0 : c->mode == 0 ? UINT32_MAX : c->a_bits;
        in->tie[q] = c->mode == 1;
    }
    in->lam = (float)t->lambda;
    in->normalize = t->normalize;
    in->consensus = t->consensus;
    in->divisor = fabsf(wsum) < 1e-8f ? 1.0f : wsum;
}

/* One chunk: ties kept while fewer than need were seen; the chunk where
 * the count is crossed again with ms_cut_apply's flags. */
static void run_chunk(const au_task *t, au_worker *w, fast_run *f, au_gta_in *in)
{
    au_gta_out o;
    memset(&o, 0, sizeof(o));
    bool redo = false;
    for (size_t q = 0; q < f->k; q++) {
        const ms_cut *c = &t->cut[f->idx[q]];
        if (c->mode == 3)
            in->tie[q] = f->seen[q] < c->need;
    }
    au_gta_chunk(in, &o);
    for (size_t q = 0; q < f->k; q++) {
        const ms_cut *c = &t->cut[f->idx[q]];
        redo |= c->mode == 3 && in->tie[q] && f->seen[q] + o.eq[q] > c->need;
    }
    if (redo) {
        au_gta_in ex = *in;
        if (in->bh) { /* ms_cut_apply wants floats: decode into x */
            float *b = w->x + (size_t)t->base * w->cap;
            (void)ms_dtype_to_f32(MS_DTYPE_BF16, in->bh, in->n, b); /* plain */
            ex.b = b;
            for (size_t q = 0; q < f->k; q++) {
                float *x = w->x + f->idx[q] * w->cap;
                (void)ms_dtype_to_f32(MS_DTYPE_BF16, in->xh[q], in->n, x);
                ex.x[q] = x;
            }
            ex.bh = NULL;
        }
        ex.explicit_keep = true;
        ex.small_key = 0; /* counted by the first run */
        for (size_t q = 0; q < f->k; q++) {
            ms_cut c = t->cut[f->idx[q]];
            c.seen_a = f->seen[q];
            c.seen_b = 0;
            float *d = w->s + q * w->cap;
            for (size_t j = 0; j < in->n; j++)
                d[j] = ex.x[q][j] - ex.b[j];
            ex.keep[q] = w->keep + q * w->cap;
            ms_cut_apply(&c, d, in->n, w->keep + q * w->cap);
        }
        au_gta_out again;
        memset(&again, 0, sizeof(again));
        au_gta_chunk(&ex, &again);
        memcpy(again.small, o.small, sizeof(o.small));
        memcpy(again.eq, o.eq, sizeof(o.eq));
        o = again;
    }
    for (size_t q = 0; q < f->k; q++)
        f->seen[q] += o.eq[q];
    add_out(&f->total, &o, f->k);
}

static void commit(au_task *t, const fast_run *f)
{
    const au_gta_out *o = &f->total;
    au_clear_sim(t);
    t->mm[0] = o->mm;
    for (size_t q = 0; q < f->k; q++) {
        size_t i = f->idx[q];
        t->dot[i] = o->dot[q];
        size_t r = (size_t)t->in[i].srow;
        t->disc_sq[i] = t->gram[r * t->m + r];
        t->disc_trim[i] = o->lost[q];
        t->disc_sign[i] = o->sign[q];
        t->small[i] += o->small[q];
        for (size_t p = q + 1; p < f->k && t->kept_nn; p++) {
            size_t a = f->idx[q] < f->idx[p] ? f->idx[q] : f->idx[p];
            size_t b = f->idx[q] ^ f->idx[p] ^ a;
            t->kept_nn[a * t->n_in + b] += o->nn[q * f->k + p];
            t->kept_opp[a * t->n_in + b] += o->opp[q * f->k + p];
        }
    }
}

ms_status au_fast_apply(ms_audit *a, au_task *t, au_worker *w, bool count_small,
                        ms_error *err)
{
    fast_run f;
    memset(&f, 0, sizeof(f));
    for (size_t i = 0; i < t->n_in; i++)
        if ((int)i != t->base)
            f.idx[f.k++] = i;
    au_gta_in in;
    setup_in(t, &f, &in);
    float thr = t->small_thr > 0.0f ? t->small_thr : FLT_TRUE_MIN;
    in.small_key = count_small && t->small_thr >= 0.0f ? ms_abs_bits(thr) : 0;
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        int64_t row0;
        int64_t nr = au_chunk_rows(t, c, &row0);
        bool bf16 = au_read_bf16(a, t, w, row0, nr);
        ms_status st = bf16 ? MS_OK : au_read_inputs(a, t, w, row0, nr, err);
        if (st)
            return st;
        in.n = (size_t)(nr * t->cols);
        in.b = w->x + (size_t)t->base * w->cap;
        in.bh = bf16 ? w->hx + (size_t)t->base * w->cap : NULL;
        for (size_t q = 0; q < f.k; q++) {
            in.x[q] = w->x + f.idx[q] * w->cap;
            in.xh[q] = w->hx + f.idx[q] * w->cap;
        }
        run_chunk(t, w, &f, &in);
        au_progress(a, au_chunk_bytes(t, nr));
    }
    commit(t, &f);
    return MS_OK;
}
