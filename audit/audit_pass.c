/*
 * audit_pass.c - the passes over one tensor's row chunks: base norm,
 * statistics, selection, simulation (see include/mergescope/audit.h).
 * A task is always processed by one worker, chunk after chunk in flat
 * order, which is what makes the lowest-index tie rule of the magnitude
 * cuts exact.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "audit_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* The elementwise loops are written to vectorise; gcc does that from -O3
 * (its -O2 cost model refuses loops of unknown length). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#define GRAM_BLOCK 16384

/* The elementwise kernels are built twice, for AVX2 and the baseline; the
 * loader picks one per CPU (the build itself targets baseline x86-64). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AU_HOT __attribute__((target_clones("avx2", "default")))
#else
#define AU_HOT
#endif

/* =============================================================== workers */

ms_status au_worker_init(au_worker *w, const ms_audit *a)
{
    memset(w, 0, sizeof(*w));
    size_t n = a->n_in_max ? a->n_in_max : 1;
    w->cap = a->cap;
    w->n_in = n;
    w->x = ms_alloc_array(n * w->cap, sizeof(float));
    w->s = ms_alloc_array(n * w->cap, sizeof(float));
    w->keep = ms_alloc_array(n * w->cap, 1);
    /* every input's bf16 bits, or one input's file bytes before decoding */
    w->hx = ms_alloc_array(n * w->cap, sizeof(uint16_t));
    w->raw = (uint8_t *)w->hx;
    w->raw_cap = n * w->cap * sizeof(uint16_t);
    w->scratch = ms_alloc_array((size_t)a->cols_max + 1, sizeof(uint64_t));
    w->sign = ms_alloc_array((size_t)a->cols_max + AU_SKETCH_BUCKETS, sizeof(float));
    w->g = ms_alloc_array(AU_SKETCH_BUCKETS * AU_P, sizeof(float));
    w->stats = ms_alloc_array(1, sizeof(au_stats_out));
    if (!w->x || !w->s || !w->keep || !w->raw || !w->scratch || !w->sign || !w->g || !w->stats)
        return MS_ERR_NOMEM;
    return MS_OK;
}

void au_worker_free(au_worker *w)
{
    free(w->x);
    free(w->s);
    free(w->keep);
    free(w->hx);
    free(w->prob);
    free(w->scratch);
    free(w->hist);
    free(w->sign);
    free(w->g);
    free(w->stats);
    free(w->y);
    for (size_t i = 0; i < AU_MAXIN; i++)
        free(w->keys[i]);
    memset(w, 0, sizeof(*w));
}

/* Two level-1/level-2 histograms per input, and at least room for the
 * eight u32 copies audit_fast.c counts in after one of them. */
uint64_t *au_worker_hist(au_worker *w, const ms_audit *a)
{
    size_t n = a->n_in_max * 2 > 5 ? a->n_in_max * 2 : 5;
    if (!w->hist)
        w->hist = ms_alloc_array(n * MS_HIST_BINS, sizeof(uint64_t));
    return w->hist;
}

bool au_chunk_on(const au_task *t, uint64_t c)
{
    return !t->chunk_on || t->chunk_on[c];
}

int64_t au_chunk_rows(const au_task *t, uint64_t c, int64_t *row0)
{
    *row0 = (int64_t)c * t->rows_per_chunk;
    return t->rows - *row0 < t->rows_per_chunk ? t->rows - *row0 : t->rows_per_chunk;
}

/* ================================================================ helpers */

#define FAULT_MARGIN (64u << 10) /* the kernel maps pages around a fault */
/* A task whose inputs hold at most this many bytes keeps its pages mapped
 * across its passes (no re-faulting) and drops them when it is done; two
 * workers then keep at most 2 x 96 MB resident. Larger tensors (embeddings)
 * drop every chunk's pages as the stream passes. */
#define KEEP_MAPPED_BYTES (96u << 20)

/*
 * Drop the mapped pages of bytes [off, off + len) of t's data, rounded
 * OUTWARD to whole pages and widened by FAULT_MARGIN, clamped to the file.
 * ms_model_release_rows rounds inward, which leaves the page shared by two
 * chunks (and pages mapped by fault-around) resident; for a read-only
 * private mapping dropping a page another worker still reads is harmless:
 * it is faulted in again from the page cache.
 */
static void release_span(const ms_model *m, const ms_tensor *t, uint64_t off, uint64_t len)
{
    const uint8_t *base = NULL;
    uint64_t size = 0;
    if (m->st && m->st[t->file_index] && m->st[t->file_index]->map.data) {
        base = m->st[t->file_index]->data;
        size = m->st[t->file_index]->size;
    } else if (m->gguf && m->gguf[t->file_index] && m->gguf[t->file_index]->map.data) {
        base = m->gguf[t->file_index]->data;
        size = m->gguf[t->file_index]->size;
    }
    if (!base || size == 0)
        return;
    uintptr_t ps = 4096, fb = (uintptr_t)base, fe = fb + (uintptr_t)size;
    uintptr_t a = (uintptr_t)(t->data + off), b = a + (uintptr_t)len;
    a = a > fb + FAULT_MARGIN ? a - FAULT_MARGIN : fb;
    b = b + FAULT_MARGIN < fe ? b + FAULT_MARGIN : fe;
    a &= ~(ps - 1);
    b = (b + ps - 1) & ~(ps - 1);
    if (a < (fb & ~(ps - 1)))
        a = fb & ~(ps - 1);
    if (b > a)
        ms_map_release((const void *)a, (uint64_t)(b - a));
}

/* After a pass over a task: nothing of its tensors stays mapped. */
static void release_task(const ms_audit *a, const au_task *t)
{
    for (size_t i = 0; i < t->n_in; i++)
        release_span(a->models[t->in[i].model], t->in[i].t, 0, t->in[i].t->nbytes);
}

static ms_status read_inputs(ms_audit *a, au_task *t, au_worker *w,
                             int64_t row0, int64_t nr, bool base_only,
                             ms_error *err)
{
    for (size_t i = 0; i < t->n_in; i++) {
        if (base_only && (int)i != t->base)
            continue;
        const au_input *in = &t->in[i];
        bool mapped;
        ms_status st = ms_model_pread_rows(a->models[in->model], in->t, row0, nr,
                                           w->x + i * w->cap, w->raw, w->raw_cap,
                                           &mapped, err);
        if (st)
            return st;
        if (!mapped || t->bytes <= KEEP_MAPPED_BYTES)
            continue;
        ms_model_release_rows(a->models[in->model], in->t, row0, nr);
        if (in->t->permute_heads == 0)
            release_span(a->models[in->model], in->t, (uint64_t)row0 * in->t->row_bytes,
                         (uint64_t)nr * in->t->row_bytes);
    }
    return MS_OK;
}

static bool plain_bf16(const ms_tensor *t)
{
    return t->dtype == MS_DTYPE_BF16 && t->permute_heads == 0 && t->value_offset == 0.0f &&
           t->row_bytes == (uint64_t)t->n_cols * 2;
}

bool au_read_bf16(ms_audit *a, const au_task *t, au_worker *w, int64_t row0, int64_t nr)
{
    for (size_t i = 0; i < t->n_in; i++)
        if (!plain_bf16(t->in[i].t))
            return false;
    for (size_t i = 0; i < t->n_in; i++)
        if (!ms_model_pread_bytes(a->models[t->in[i].model], t->in[i].t, row0, nr,
                                  w->hx + i * w->cap))
            return false;
    return true;
}

ms_status au_read_inputs(ms_audit *a, au_task *t, au_worker *w, int64_t row0, int64_t nr,
                         ms_error *err)
{
    return read_inputs(a, t, w, row0, nr, false, err);
}

void au_progress(ms_audit *a, uint64_t bytes)
{
    uint64_t done = atomic_fetch_add(&a->done_bytes, bytes) + bytes;
    if (!a->opts.progress)
        return;
    pthread_mutex_lock(&a->mu);
    a->opts.progress(a->opts.progress_ctx, done, a->total_bytes);
    pthread_mutex_unlock(&a->mu);
}

static uint64_t chunk_bytes(const au_task *t, int64_t nr, bool base_only);

uint64_t au_chunk_bytes(const au_task *t, int64_t nr)
{
    return chunk_bytes(t, nr, false);
}

static uint64_t chunk_bytes(const au_task *t, int64_t nr, bool base_only)
{
    uint64_t b = 0;
    for (size_t i = 0; i < t->n_in; i++)
        if (!base_only || (int)i == t->base)
            b += t->in[i].t->row_bytes * (uint64_t)nr;
    return b;
}

/* Fill the stacked rows: [base; x_i - base] or the inputs themselves. */
AU_HOT static float *stack(const au_task *t, au_worker *w, size_t nn)
{
    if (t->base < 0)
        return w->x;
    const float *b = w->x + (size_t)t->base * w->cap;
    memcpy(w->s, b, nn * sizeof(float));
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        const float *x = w->x + i * w->cap;
        float *d = w->s + (size_t)t->in[i].srow * w->cap;
        for (size_t j = 0; j < nn; j++)
            d[j] = x[j] - b[j];
    }
    return w->s;
}

/* Read chunk c of every input and stack it: *s holds the m stacked rows of
 * *nn elements each (see stack), *row0 and *nr the rows read. */
static ms_status load_chunk(ms_audit *a, au_task *t, au_worker *w, uint64_t c,
                            int64_t *row0, int64_t *nr, size_t *nn, const float **s,
                            ms_error *err)
{
    *nr = au_chunk_rows(t, c, row0);
    ms_status st = read_inputs(a, t, w, *row0, *nr, false, err);
    if (st)
        return st;
    *nn = (size_t)(*nr * t->cols);
    *s = stack(t, w, *nn);
    return MS_OK;
}

static inline const float *delta_of(const au_task *t, const au_worker *w,
                                    const float *s, size_t i)
{
    return s + (size_t)t->in[i].srow * w->cap;
}

/* Gram of the m stacked rows over nn elements, float32 blocks by BLAS,
 * summed in float64. */
static void gram_add(double *g, const float *s, size_t m, size_t lda, size_t nn)
{
    float c[AU_MAXIN * AU_MAXIN];
    for (size_t off = 0; off < nn; off += GRAM_BLOCK) {
        size_t len = nn - off < GRAM_BLOCK ? nn - off : GRAM_BLOCK;
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, (int)len,
                    1.0f, s + off, (int)lda, 0.0f, c, (int)m);
        for (size_t i = 0; i < m; i++)
            for (size_t j = i; j < m; j++)
                g[i * m + j] += c[i * m + j];
    }
}

/* ================================================================ pass 0 */

static ms_status pass_base(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    double sq = 0.0;
    uint64_t n = 0;
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        if (!au_chunk_on(t, c))
            continue;
        int64_t row0;
        int64_t nr = au_chunk_rows(t, c, &row0);
        ms_status st = read_inputs(a, t, w, row0, nr, true, err);
        if (st)
            return st;
        size_t nn = (size_t)(nr * t->cols);
        const float *b = w->x + (size_t)t->base * w->cap;
        for (size_t off = 0; off < nn; off += GRAM_BLOCK) {
            size_t len = nn - off < GRAM_BLOCK ? nn - off : GRAM_BLOCK;
            sq += cblas_sdot((int)len, b + off, 1, b + off, 1);
        }
        n += nn;
        au_progress(a, chunk_bytes(t, nr, true));
    }
    t->base_sq = sq;
    t->small_thr = n ? (float)(1e-6 * sqrt(sq / (double)n)) : 0.0f;
    return MS_OK;
}

/* ================================================================ pass 1 */

AU_HOT static void pair_counts(au_task *t, const au_worker *w, const float *s, size_t nn)
{
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        const float *di = delta_of(t, w, s, i);
        for (size_t k = i + 1; k < t->n_in; k++) {
            if ((int)k == t->base)
                continue;
            const float *dk = delta_of(t, w, s, k);
            uint64_t nn2 = 0, opp = 0;
            for (size_t j = 0; j < nn; j++) {
                float p = di[j] * dk[j];
                nn2 += di[j] != 0.0f && dk[j] != 0.0f;
                opp += p < 0.0f;
            }
            t->pair_nn[i * t->n_in + k] += nn2;
            t->pair_opp[i * t->n_in + k] += opp;
        }
    }
}

/* Zeros, small deltas, L1 (float partial sums over short runs, summed in
 * float64), magnitude histogram, and the Q8_0 lattice test (q8_rows). */
static void q8_rows(au_task *t, size_t i, float *x, const uint16_t *h, int64_t row0,
                    int64_t nr);

AU_HOT static void donor_counts(au_task *t, size_t i, const float *d, float *x,
                         int64_t row0, int64_t nr, uint64_t *hist)
{
    size_t nn = (size_t)(nr * t->cols);
    uint64_t z = 0, sm = 0;
    double l1 = 0.0;
    float thr = t->small_thr; /* < 0: counted in the selection pass */
    for (size_t off = 0; off < nn; off += 1024) {
        size_t end = nn - off < 1024 ? nn : off + 1024;
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        size_t j = off;
        for (; j + 4 <= end; j += 4)
            for (int q = 0; q < 4; q++) {
                float a = fabsf(d[j + (size_t)q]);
                z += a == 0.0f;
                sm += a < thr || a == 0.0f;
                acc[q] += a;
            }
        for (; j < end; j++) {
            float a = fabsf(d[j]);
            z += a == 0.0f;
            sm += a < thr || a == 0.0f;
            acc[0] += a;
        }
        l1 += (double)acc[0] + acc[1] + acc[2] + acc[3];
    }
    t->zeros[i] += z;
    t->small[i] += thr >= 0.0f ? sm : 0;
    t->l1[i] += l1;
    if (hist)
        ms_hist_hi_add(hist, d, nn);
    q8_rows(t, i, x, NULL, row0, nr);
}

/* The Q8_0 lattice test runs on every stride-th row, the stride (a power
 * of two up to 64) leaving at least Q8_BLOCKS blocks per tensor: a
 * dequantized donor has every block on the lattice, so a few thousand
 * decide, and a small tensor has all its rows tested. */
#define Q8_BLOCKS 2048

static int64_t q8_stride(const au_task *t)
{
    int64_t blocks = t->rows * (t->cols / 32), s = 1;
    while (s < 64 && blocks / (s * 2) >= Q8_BLOCKS)
        s *= 2;
    return s;
}

/* x: the chunk's values of input i, or, with h (its bf16 bits), room for
 * them: only the rows tested are decoded into it. */
static void q8_rows(au_task *t, size_t i, float *x, const uint16_t *h, int64_t row0,
                    int64_t nr)
{
    if (t->cols % 32 != 0 || t->in[i].donor == AU_NONE)
        return;
    ms_dtype dt = t->in[i].t->dtype;
    size_t cols = (size_t)t->cols;
    int64_t stride = q8_stride(t);
    for (int64_t r = (stride - row0 % stride) % stride; r < nr; r += stride) {
        if (h) /* plain bf16: cannot fail */
            (void)ms_dtype_to_f32(MS_DTYPE_BF16, h + (size_t)r * cols, cols,
                                  x + (size_t)r * cols);
        for (size_t off = 0; off + 32 <= cols; off += 32) {
            bool tested;
            bool fit = ms_q8_block_fits(x + (size_t)r * cols + off, 32, dt, &tested);
            t->q8_tested[i] += tested;
            t->q8_fit[i] += fit;
        }
    }
}

/* The fused path's per-donor leftovers: the magnitude histogram of the
 * deltas (formed again in short runs) and the Q8_0 lattice test. */
static void donor_extra(au_task *t, size_t i, const float *b, float *x, const uint16_t *h,
                        int64_t row0, int64_t nr, uint64_t *hist)
{
    size_t nn = (size_t)(nr * t->cols);
    float d[1024];
    for (size_t off = 0; hist && off < nn; off += 1024) {
        size_t n = nn - off < 1024 ? nn - off : 1024;
        for (size_t j = 0; j < n; j++)
            d[j] = x[off + j] - b[off + j];
        ms_hist_hi_add(hist, d, n);
    }
    q8_rows(t, i, x, h, row0, nr);
}

static bool needs_hist(const au_task *t, size_t i)
{
    return t->in[i].sparsify &&
           (t->sparse == AU_SP_MAGNITUDE || t->sparse == AU_SP_OUTLIERS);
}

/* The sketch's column signs (zero past cols, up to a multiple of
 * AU_SKETCH_BUCKETS) and bucket-to-probe projection (see audit_int.h). */
static void make_sketch(const au_task *t, au_worker *w)
{
    uint64_t key = ms_rng_key(0x5eed, "sketch", (uint64_t)t->cols, 0);
    size_t n = (size_t)t->cols;
    size_t end = (n + AU_SKETCH_BUCKETS - 1) / AU_SKETCH_BUCKETS * AU_SKETCH_BUCKETS;
    for (size_t j = 0; j < end; j++)
        w->sign[j] = j < n ? ms_rng_sign(key, j) : 0.0f;
    uint64_t gkey = ms_rng_key(0x5eed, "sketch-g", 0, 0);
    for (size_t j = 0; j < AU_SKETCH_BUCKETS * AU_P; j++)
        w->g[j] = ms_rng_sign(gkey, j);
}

/* The same sketch for the rows of a stacked chunk (the path without
 * au_stats_chunk), bucket sums in the same order. */
AU_HOT static void sketch_rows(const float *d, const float *sign, const float *g, size_t nr,
                               size_t cols, float *y)
{
    for (size_t r = 0; r < nr; r++) {
        float b[AU_SKETCH_BUCKETS] = {0};
        const float *row = d + r * cols;
        for (size_t c = 0; c < cols; c++)
            b[c % AU_SKETCH_BUCKETS] += row[c] * sign[c];
        for (size_t j = 0; j < AU_SKETCH_BUCKETS; j++)
            for (size_t p = 0; p < AU_P; p++)
                y[r * AU_P + p] += b[j] * g[j * AU_P + p];
    }
}

/* Top eigenpair of the p x p matrix yty by power iteration. */
static double top_eig(const double *yty, size_t p, double *v)
{
    for (size_t i = 0; i < p; i++)
        v[i] = 1.0 / sqrt((double)p) + 1e-3 * (double)i;
    double lam = 0.0;
    for (int it = 0; it < 300; it++) {
        double nv[AU_P], norm = 0.0;
        for (size_t i = 0; i < p; i++) {
            nv[i] = 0.0;
            for (size_t j = 0; j < p; j++)
                nv[i] += yty[i * p + j] * v[j];
            norm += nv[i] * nv[i];
        }
        norm = sqrt(norm);
        if (norm <= 0.0)
            return 0.0;
        double diff = 0.0;
        for (size_t i = 0; i < p; i++) {
            double x = nv[i] / norm;
            diff += fabs(x - v[i]);
            v[i] = x;
        }
        lam = norm;
        if (diff < 1e-12)
            break;
    }
    return lam;
}

/* From the sketch Y = D * Omega (rows x p): stable-rank estimate and the
 * top left singular direction. */
static ms_status finish_sketch(au_task *t, size_t i, const float *y)
{
    size_t p = AU_P, rows = (size_t)t->rows;
    double yty[AU_P * AU_P] = {0}, v[AU_P];
    for (size_t r = 0; r < rows; r++)
        for (size_t a = 0; a < p; a++)
            for (size_t b = 0; b < p; b++)
                yty[a * p + b] += (double)y[r * p + a] * y[r * p + b];
    double tr = 0.0;
    for (size_t a = 0; a < p; a++)
        tr += yty[a * p + a];
    double lam = top_eig(yty, p, v);
    t->sr[i] = lam > 0.0 ? tr / lam : -1.0;
    if (lam <= 0.0)
        return MS_OK;
    t->u[i] = ms_alloc_array(rows, sizeof(float));
    if (!t->u[i])
        return MS_ERR_NOMEM;
    double norm = 0.0;
    for (size_t r = 0; r < rows; r++) {
        double s = 0.0;
        for (size_t a = 0; a < p; a++)
            s += y[r * p + a] * v[a];
        t->u[i][r] = (float)s;
        norm += s * s;
    }
    norm = sqrt(norm);
    for (size_t r = 0; r < rows && norm > 0; r++)
        t->u[i][r] = (float)(t->u[i][r] / norm);
    return MS_OK;
}

/* The Gram of a read chunk goes to the task's total and, when sampling,
 * to the chunk's own slot (the interval comes from their spread). */
static double *chunk_gram_slot(const au_task *t, uint64_t ci)
{
    if (!t->chunk_gram)
        return NULL;
    return t->chunk_gram + ci * t->m * t->m;
}

/* Statistics of chunk c through the stacked buffer and BLAS: the path for
 * tasks au_stats_chunk does not take (no base, or many inputs). */
static ms_status stacked_chunk(ms_audit *a, au_task *t, au_worker *w, uint64_t c,
                               uint64_t ci, size_t ysz, ms_error *err)
{
    int64_t row0, nr;
    size_t nn;
    const float *s;
    ms_status st = load_chunk(a, t, w, c, &row0, &nr, &nn, &s, err);
    if (st)
        return st;
    double *cg = chunk_gram_slot(t, ci);
    if (cg) {
        gram_add(cg, s, t->m, w->cap, nn);
        for (size_t q = 0; q < t->m * t->m; q++)
            t->gram[q] += cg[q];
    } else {
        gram_add(t->gram, s, t->m, w->cap, nn);
    }
    if (t->base < 0)
        return MS_OK;
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        const float *d = delta_of(t, w, s, i);
        donor_counts(t, i, d, w->x + i * w->cap, row0, nr,
                     needs_hist(t, i) ? w->hist + i * MS_HIST_BINS : NULL);
        if (t->sketch)
            sketch_rows(d, w->sign, w->g, (size_t)nr, (size_t)t->cols,
                        w->y + i * ysz + (size_t)row0 * AU_P);
    }
    pair_counts(t, w, s, nn);
    return MS_OK;
}

/* Add a chunk's au_stats_out to the task, mapping donor slots to inputs
 * and stacked rows. */
static void add_fused(au_task *t, const size_t *idx, size_t k, const au_stats_out *o,
                      double *cg)
{
    size_t m = k + 1, sr[AU_STATS_MAXIN];
    sr[0] = (size_t)t->in[t->base].srow;
    for (size_t q = 0; q < k; q++)
        sr[q + 1] = (size_t)t->in[idx[q]].srow;
    for (size_t p = 0; p < m; p++)
        for (size_t q = p; q < m; q++) {
            size_t r = sr[p] < sr[q] ? sr[p] : sr[q], c = sr[p] < sr[q] ? sr[q] : sr[p];
            t->gram[r * t->m + c] += o->gram[p * m + q];
            if (cg)
                cg[r * t->m + c] += o->gram[p * m + q];
        }
    for (size_t q = 0; q < k; q++) {
        size_t i = idx[q];
        t->zeros[i] += o->zeros[q];
        t->small[i] += o->small[q];
        t->l1[i] += o->l1[q];
        for (size_t p = q + 1; p < k; p++) {
            size_t lo = idx[q] < idx[p] ? idx[q] : idx[p], hi = idx[q] ^ idx[p] ^ lo;
            t->pair_nn[lo * t->n_in + hi] += o->nn[q * k + p];
            t->pair_opp[lo * t->n_in + hi] += o->opp[q * k + p];
        }
    }
}

/* Statistics of chunk c in one sweep (au_stats_chunk); the magnitude
 * histogram and the Q8_0 lattice test stay per donor. */
static ms_status fused_chunk(ms_audit *a, au_task *t, au_worker *w, uint64_t c,
                             uint64_t ci, size_t ysz, ms_error *err)
{
    int64_t row0;
    int64_t nr = au_chunk_rows(t, c, &row0);
    bool hist = false;
    for (size_t i = 0; i < t->n_in; i++)
        hist |= needs_hist(t, i) && !t->fast;
    /* bf16 inputs go to the kernel as they are stored (the exact
     * histogram wants the deltas as floats) */
    bool bf16 = !hist && au_read_bf16(a, t, w, row0, nr);
    ms_status st = bf16 ? MS_OK : read_inputs(a, t, w, row0, nr, false, err);
    if (st)
        return st;
    au_stats_in in;
    memset(&in, 0, sizeof(in));
    size_t idx[AU_STATS_MAXIN];
    in.b = w->x + (size_t)t->base * w->cap;
    in.bh = bf16 ? w->hx + (size_t)t->base * w->cap : NULL;
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        idx[in.k] = i;
        in.x[in.k] = w->x + i * w->cap;
        in.xh[in.k] = w->hx + i * w->cap;
        if (t->sketch)
            in.y[in.k] = w->y + i * ysz + (size_t)row0 * AU_P;
        in.k++;
    }
    in.nr = (size_t)nr;
    in.cols = (size_t)t->cols;
    in.count_small = t->small_thr >= 0.0f;
    in.small_thr = t->small_thr > 0.0f ? t->small_thr : FLT_TRUE_MIN;
    in.sign = t->sketch ? w->sign : NULL;
    in.g = w->g;
    au_stats_out *o = w->stats;
    memset(o, 0, sizeof(*o));
    if (t->bounds && !t->keys_full && !au_fast_keys_room(a, t, w, (size_t)nr * in.cols))
        t->keys_full = true;
    in.bounds = t->bounds && !t->keys_full;
    for (size_t q = 0; q < in.k && in.bounds; q++) {
        in.lo[q] = t->lo_key[idx[q]];
        in.hi[q] = t->hi_key[idx[q]];
        in.keys[q] = w->keys[idx[q]] ? w->keys[idx[q]] + w->n_keys[idx[q]] : NULL;
    }
    au_stats_chunk(&in, o);
    add_fused(t, idx, in.k, o, chunk_gram_slot(t, ci));
    for (size_t q = 0; q < in.k; q++) {
        size_t i = idx[q];
        w->n_keys[i] += in.bounds ? o->n_keys[q] : 0;
        t->above[i] += in.bounds ? o->above[q] : 0;
        bool h = needs_hist(t, i) && !t->fast;
        donor_extra(t, i, in.b, w->x + i * w->cap, bf16 ? w->hx + i * w->cap : NULL, row0, nr,
                    h ? w->hist + i * MS_HIST_BINS : NULL);
    }
    return MS_OK;
}

static ms_status pass_stats(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    size_t n_in = t->n_in;
    bool hist = false;
    for (size_t i = 0; i < n_in; i++)
        hist |= needs_hist(t, i) && !t->fast;
    if (hist && !au_worker_hist(w, a))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if (hist)
        memset(w->hist, 0, n_in * MS_HIST_BINS * sizeof(uint64_t));
    size_t ysz = 0;
    if (t->sketch) {
        ysz = (size_t)t->rows * AU_P;
        if (w->y_cap < ysz * n_in) {
            free(w->y);
            w->y = ms_alloc_array(ysz * n_in, sizeof(float));
            w->y_cap = w->y ? ysz * n_in : 0;
            if (!w->y)
                return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        }
        memset(w->y, 0, ysz * n_in * sizeof(float));
        make_sketch(t, w);
    }
    uint64_t ci = 0;
    bool fused = t->base >= 0 && n_in <= AU_STATS_MAXIN;
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        if (!au_chunk_on(t, c))
            continue;
        int64_t row0, nr;
        ms_status st = fused ? fused_chunk(a, t, w, c, ci, ysz, err)
                             : stacked_chunk(a, t, w, c, ci, ysz, err);
        if (st)
            return st;
        ci++;
        nr = au_chunk_rows(t, c, &row0);
        au_progress(a, chunk_bytes(t, nr, false));
    }
    for (size_t i = 0; i < n_in; i++) {
        t->sr[i] = -1.0;
        if (t->sketch && (int)i != t->base && finish_sketch(t, i, w->y + i * ysz))
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        for (int k = 0; k < t->n_sel[i] && needs_hist(t, i) && !t->fast; k++)
            ms_select_hi(&t->sel[i][k], w->hist + i * MS_HIST_BINS);
    }
    return MS_OK;
}

/* ================================================================ pass 2 */

/* Draw r of donor input i: keyed by (seed, tensor, input, draw). */
static void draw_mask(const au_task *t, const au_worker *w, size_t i,
                      uint64_t first, size_t nn, int r, uint8_t *keep)
{
    uint64_t key = ms_rng_key(t->seed, t->name, (uint64_t)i, (uint64_t)r);
    if (t->sparse == AU_SP_RANDOM)
        ms_mask_random(key, first, (float)t->in[i].density, nn, keep);
    else
        ms_mask_probs(key, first, w->prob + i * w->cap, nn, keep);
}

static ms_status della_probs(const au_task *t, au_worker *w, size_t i,
                             const float *d, int64_t nr)
{
    if (!w->prob) {
        w->prob = ms_alloc_array(w->cap * w->n_in, sizeof(float));
        if (!w->prob)
            return MS_ERR_NOMEM;
    }
    size_t cols = (size_t)t->cols;
    for (int64_t r = 0; r < nr; r++)
        ms_della_probs_row(t->in[i].density, t->in[i].epsilon, d + (size_t)r * cols,
                           cols, w->scratch, w->prob + i * w->cap + (size_t)r * cols);
    return MS_OK;
}

static bool is_random(const au_task *t)
{
    return t->sparse == AU_SP_RANDOM || t->sparse == AU_SP_DELLA;
}

static ms_status pass_select(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    size_t n_in = t->n_in;
    bool hist = false;
    for (size_t i = 0; i < n_in; i++)
        hist |= needs_hist(t, i);
    if (hist)
        memset(w->hist, 0, n_in * 2 * MS_HIST_BINS * sizeof(uint64_t));
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        if (!au_chunk_on(t, c))
            continue;
        int64_t row0, nr;
        size_t nn;
        const float *s;
        ms_status st = load_chunk(a, t, w, c, &row0, &nr, &nn, &s, err);
        if (st)
            return st;
        uint64_t first = (uint64_t)row0 * (uint64_t)t->cols;
        for (size_t i = 0; i < n_in; i++) {
            if ((int)i == t->base)
                continue;
            const float *d = delta_of(t, w, s, i);
            if (t->small_late) {
                uint64_t sm = 0;
                for (size_t j = 0; j < nn; j++)
                    sm += fabsf(d[j]) < t->small_thr || d[j] == 0.0f;
                t->small[i] += sm;
            }
            if (!t->in[i].sparsify)
                continue;
            if (needs_hist(t, i)) {
                for (int k = 0; k < t->n_sel[i]; k++)
                    ms_hist_lo_add(w->hist + (i * 2 + (size_t)k) * MS_HIST_BINS,
                                   t->sel[i][k].hi, d, nn);
                continue;
            }
            if (t->sparse == AU_SP_DELLA && della_probs(t, w, i, d, nr))
                return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
            uint8_t *keep = w->keep + i * w->cap;
            for (int r = 0; r < t->draws; r++) {
                draw_mask(t, w, i, first, nn, r, keep);
                double l1 = 0.0;
                for (size_t j = 0; j < nn; j++)
                    l1 += keep[j] ? fabsf(d[j]) : 0.0f;
                t->masked_l1[i * (size_t)t->draws + (size_t)r] += l1;
            }
        }
        au_progress(a, chunk_bytes(t, nr, false));
    }
    for (size_t i = 0; i < n_in; i++) {
        if (!needs_hist(t, i))
            continue;
        for (int k = 0; k < t->n_sel[i]; k++)
            ms_select_lo(&t->sel[i][k], w->hist + (i * 2 + (size_t)k) * MS_HIST_BINS);
    }
    return MS_OK;
}

/* ================================================================ pass 3 */

typedef struct apply_ctx {
    size_t k;                   /* donors (non-base inputs) */
    size_t idx[AU_MAXIN];       /* input index of donor slot */
    const float *d[AU_MAXIN];
    const uint8_t *keep[AU_MAXIN];
    float w[AU_MAXIN], sc[AU_MAXIN];
    bool resc[AU_MAXIN];
    float lam;
    bool normalize, consensus;
    float divisor;              /* without consensus */
} apply_ctx;

#define APPLY_BLOCK 256

/* sum_j a[j] * b[j]: float products summed in eight lanes over runs of
 * 256 (vectorises), the runs summed in float64. */
AU_HOT static double dot64(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t off = 0; off < n; off += 256) {
        size_t m = n - off < 256 ? n - off : 256, j = 0;
        float acc[8] = {0};
        const float *x = a + off, *y = b + off;
        for (; j + 8 <= m; j += 8)
            for (int q = 0; q < 8; q++)
                acc[q] += x[j + (size_t)q] * y[j + (size_t)q];
        for (; j < m; j++)
            acc[0] += x[j] * y[j];
        s += ((double)acc[0] + acc[1] + acc[2] + acc[3]) +
             ((double)acc[4] + acc[5] + acc[6] + acc[7]);
    }
    return s;
}

/*
 * The GTA merge of nn elements, block by block, in mergekit's order of
 * float32 steps: sparsified (and L1-rescaled) delta times weight; sign of
 * the weighted sum elects; parts that agree, divided by the sum of their
 * weights (normalize), times lambda; M = (base + sum of parts) - base.
 * Elementwise loops over a block vectorise; the float64 sums follow.
 */
AU_HOT static void gta_chunk(au_task *t, const apply_ctx *x, const float *b, size_t nn,
                      int r, double *dot, double *mm, bool main)
{
    size_t k = x->k;
    float wd[AU_MAXIN][APPLY_BLOCK], part[AU_MAXIN][APPLY_BLOCK];
    float sw[APPLY_BLOCK], div[APPLY_BLOCK], mixed[APPLY_BLOCK], mv[APPLY_BLOCK];
    (void)r;
    for (size_t off = 0; off < nn; off += APPLY_BLOCK) {
        size_t n = nn - off < APPLY_BLOCK ? nn - off : APPLY_BLOCK;
        for (size_t j = 0; j < n; j++)
            sw[j] = 0.0f;
        for (size_t q = 0; q < k; q++) {
            const float *d = x->d[q] + off;
            const uint8_t *kp = x->keep[q] ? x->keep[q] + off : NULL;
            float sc = x->resc[q] ? x->sc[q] : 1.0f, w = x->w[q];
            /* masks multiply, as mergekit's x * mask does (-0.0 kept) */
            if (kp)
                for (size_t j = 0; j < n; j++)
                    wd[q][j] = d[j] * (float)kp[j];
            else
                for (size_t j = 0; j < n; j++)
                    wd[q][j] = d[j];
            if (x->resc[q])
                for (size_t j = 0; j < n; j++)
                    wd[q][j] = wd[q][j] * sc;
            for (size_t j = 0; j < n; j++) {
                wd[q][j] = wd[q][j] * w;
                sw[j] += wd[q][j];
            }
        }
        for (size_t j = 0; j < n; j++)
            div[j] = x->consensus ? 0.0f : x->divisor;
        for (size_t q = 0; q < k; q++) {
            if (!x->consensus) {
                for (size_t j = 0; j < n; j++)
                    part[q][j] = wd[q][j];
                continue;
            }
            float w = x->w[q];
            /* selects on floats so the loop vectorises; an elected part
             * is never 0, so part != 0 is the mask */
            for (size_t j = 0; j < n; j++) {
                float v = wd[q][j];
                float up = v > 0.0f ? v : 0.0f, down = v < 0.0f ? v : 0.0f;
                part[q][j] = sw[j] >= 0.0f ? up : down;
                div[j] += fabsf(part[q][j]) > 0.0f ? w : 0.0f;
            }
            if (!main)
                continue;
            const float *d = x->d[q] + off;
            for (size_t j = 0; j < n; j++) { /* mv: scratch until M is formed */
                float dv = d[j]; /* loaded unconditionally: lets gcc if-convert */
                float nz = fabsf(wd[q][j]) > 0.0f ? dv : 0.0f;
                mv[j] = fabsf(part[q][j]) > 0.0f ? 0.0f : nz;
            }
            t->disc_sign[x->idx[q]] += dot64(mv, mv, n);
        }
        if (x->consensus)
            for (size_t j = 0; j < n; j++)
                div[j] = fabsf(div[j]) > 0.0f ? div[j] : 1.0f;
        for (size_t j = 0; j < n; j++)
            mixed[j] = 0.0f;
        for (size_t q = 0; q < k; q++)
            for (size_t j = 0; j < n; j++) {
                float p = x->normalize ? part[q][j] / div[j] : part[q][j];
                p = x->lam != 1.0f ? p * x->lam : p;
                part[q][j] = p;
                mixed[j] += p;
            }
        for (size_t j = 0; j < n; j++)
            mv[j] = (b[off + j] + mixed[j]) - b[off + j];
        *mm += dot64(mv, mv, n);
        for (size_t q = 0; q < k; q++)
            dot[x->idx[q]] += dot64(part[q], mv, n);
    }
}

/* SCE (select_topk = 1): sign election on the unweighted deltas, weights
 * from mean squares, per-element normalisation. */
static void sce_chunk(au_task *t, const apply_ctx *x, const float *b, size_t nn,
                      double *dot, double *mm)
{
    size_t k = x->k;
    for (size_t j = 0; j < nn; j++) {
        float sw = 0.0f, part[AU_MAXIN];
        for (size_t q = 0; q < k; q++)
            sw += x->d[q][j];
        bool pos = sw >= 0.0f;
        float den = 0.0f;
        for (size_t q = 0; q < k; q++) {
            float dv = x->d[q][j];
            bool m = pos ? dv > 0.0f : dv < 0.0f;
            part[q] = m ? x->w[q] * dv : 0.0f;
            den += m ? x->w[q] : 0.0f;
            if (!m && dv != 0.0f) /* lost in the sign election */
                t->disc_sign[x->idx[q]] += (double)dv * dv;
        }
        if (den < 1e-6f)
            den = 1e-6f;
        float mixed = 0.0f;
        for (size_t q = 0; q < k; q++) {
            part[q] = part[q] / den;
            mixed += part[q];
        }
        float mv = (b[j] + mixed) - b[j];
        *mm += (double)mv * mv;
        for (size_t q = 0; q < k; q++)
            dot[x->idx[q]] += (double)part[q] * mv;
    }
}

static void setup_apply(const au_task *t, apply_ctx *x)
{
    memset(x, 0, sizeof(*x));
    float wsum = 0.0f;
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            continue;
        size_t q = x->k++;
        x->idx[q] = i;
        x->w[q] = (float)(t->in[i].weight * t->wscale[i]);
        wsum += x->w[q];
    }
    x->lam = (float)t->lambda;
    x->normalize = t->normalize;
    x->consensus = t->consensus;
    x->divisor = fabsf(wsum) < 1e-8f ? 1.0f : wsum;
}

/* SCE donor weights: mean squared delta over their sum (uniform when the
 * sum of means is below 1e-6). */
static void sce_weights(const au_task *t, apply_ctx *x)
{
    double ms[AU_MAXIN], sum = 0.0;
    for (size_t q = 0; q < x->k; q++) {
        size_t r = (size_t)t->in[x->idx[q]].srow;
        ms[q] = t->gram[r * t->m + r] / (double)(t->n_elems_on ? t->n_elems_on : 1);
        sum += ms[q];
    }
    for (size_t q = 0; q < x->k; q++)
        x->w[q] = (float)(sum < 1e-6 ? 1.0 / (double)x->k : ms[q] / sum) *
                  (float)t->wscale[x->idx[q]];
}

/* Sign conflicts among elements both donors keep (NULL keep: all kept). */
AU_HOT static void kept_pairs(au_task *t, const apply_ctx *x, size_t nn)
{
    for (size_t p = 0; p < x->k; p++)
        for (size_t q = p + 1; q < x->k; q++) {
            uint64_t both = 0, opp = 0;
            const float *a = x->d[p], *b = x->d[q];
            const uint8_t *kp = x->keep[p], *kq = x->keep[q];
            for (size_t j = 0; j < nn; j++) {
                int on = (kp ? kp[j] : 1) & (kq ? kq[j] : 1) & (a[j] != 0.0f) & (b[j] != 0.0f);
                both += (uint64_t)on;
                opp += (uint64_t)(on & ((a[j] < 0.0f) != (b[j] < 0.0f)));
            }
            t->kept_nn[x->idx[p] * t->n_in + x->idx[q]] += both;
            t->kept_opp[x->idx[p] * t->n_in + x->idx[q]] += opp;
        }
}

/* ||delta||^2 and the part trimmed or dropped (float runs, float64 sums). */
AU_HOT static void trim_energy(au_task *t, const apply_ctx *x, size_t nn)
{
    for (size_t q = 0; q < x->k; q++) {
        const float *d = x->d[q];
        const uint8_t *kp = x->keep[q];
        double tot = dot64(d, d, nn), lost = 0.0;
        float tmp[1024];
        for (size_t off = 0; kp && off < nn; off += 1024) {
            size_t n = nn - off < 1024 ? nn - off : 1024;
            for (size_t j = 0; j < n; j++)
                tmp[j] = d[off + j] * (float)(1 - kp[off + j]);
            lost += dot64(tmp, tmp, n);
        }
        t->disc_sq[x->idx[q]] += tot;
        t->disc_trim[x->idx[q]] += lost;
    }
}

static void set_cuts(au_task *t, ms_cut *cuts)
{
    for (size_t i = 0; i < t->n_in; i++) {
        cuts[i] = t->cut[i];
        cuts[i].seen_a = cuts[i].seen_b = 0;
    }
}

void au_clear_sim(au_task *t)
{
    memset(t->dot, 0, (size_t)t->draws * t->n_in * sizeof(double));
    memset(t->mm, 0, (size_t)t->draws * sizeof(double));
    memset(t->disc_sq, 0, sizeof(t->disc_sq));
    memset(t->disc_trim, 0, sizeof(t->disc_trim));
    memset(t->disc_sign, 0, sizeof(t->disc_sign));
    if (t->kept_nn) {
        memset(t->kept_nn, 0, t->n_in * t->n_in * sizeof(uint64_t));
        memset(t->kept_opp, 0, t->n_in * t->n_in * sizeof(uint64_t));
    }
}

static ms_status pass_apply(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    int draws = t->draws;
    au_clear_sim(t);
    ms_cut cuts[AU_MAXIN];
    set_cuts(t, cuts);
    apply_ctx x;
    setup_apply(t, &x);
    if (a->sim == AU_SCE)
        sce_weights(t, &x);
    uint64_t ci = 0;
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        if (!au_chunk_on(t, c))
            continue;
        int64_t row0, nr;
        size_t nn;
        const float *s;
        ms_status st = load_chunk(a, t, w, c, &row0, &nr, &nn, &s, err);
        if (st)
            return st;
        const float *b = w->x + (size_t)t->base * w->cap;
        uint64_t first = (uint64_t)row0 * (uint64_t)t->cols;
        for (size_t q = 0; q < x.k; q++)
            x.d[q] = delta_of(t, w, s, x.idx[q]);
        double cdot[AU_MAXIN] = {0}, cmm = 0.0;
        for (int r = 0; r < draws; r++) {
            for (size_t q = 0; q < x.k; q++) {
                size_t i = x.idx[q];
                x.keep[q] = NULL;
                x.resc[q] = false;
                if (!t->in[i].sparsify)
                    continue;
                uint8_t *keep = w->keep + i * w->cap;
                if (is_random(t)) {
                    if (r == 0 && t->sparse == AU_SP_DELLA && della_probs(t, w, i, x.d[q], nr))
                        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
                    draw_mask(t, w, i, first, nn, r, keep);
                } else if (r == 0) {
                    ms_cut_apply(&cuts[i], x.d[q], nn, keep);
                }
                x.keep[q] = keep;
                float sc = t->rscale[i * (size_t)draws + (size_t)r];
                x.resc[q] = t->rescale && sc != 0.0f;
                x.sc[q] = sc;
            }
            double *dot = t->dot + (size_t)r * t->n_in;
            double before[AU_MAXIN], mm0 = t->mm[r];
            memcpy(before, dot, t->n_in * sizeof(double));
            if (t->sparse == AU_SP_NONE && a->sim == AU_SCE)
                sce_chunk(t, &x, b, nn, dot, &t->mm[r]);
            else
                gta_chunk(t, &x, b, nn, r, dot, &t->mm[r], r == 0);
            if (r == 0) {
                trim_energy(t, &x, nn);
                if (t->kept_nn)
                    kept_pairs(t, &x, nn);
                for (size_t i = 0; i < t->n_in; i++)
                    cdot[i] = dot[i] - before[i];
                cmm = t->mm[r] - mm0;
            }
        }
        if (t->chunk_dot) {
            double *cd = t->chunk_dot + ci * (t->n_in + 1);
            memcpy(cd, cdot, t->n_in * sizeof(double));
            cd[t->n_in] = cmm;
        }
        ci++;
        au_progress(a, chunk_bytes(t, nr, false));
    }
    return MS_OK;
}

/* ============================================================ selections */

/* Decide the cuts after pass 1 (positions) or pass 2 (values). */
static void plan_selects(au_task *t)
{
    uint64_t n = t->n_elems_on;
    for (size_t i = 0; i < t->n_in; i++) {
        t->n_sel[i] = 0;
        if (!t->in[i].sparsify)
            continue;
        double dens = t->in[i].density;
        if (t->sparse == AU_SP_MAGNITUDE) {
            uint64_t k = (uint64_t)floor(dens * (double)n);
            if (k > 0 && k < n) {
                t->sel[i][0].pos = n - k;
                t->n_sel[i] = 1;
            }
        } else if (t->sparse == AU_SP_OUTLIERS) {
            int64_t target = (int64_t)floor(dens * (double)n);
            int64_t top = (int64_t)floor(t->in[i].gamma * (double)n);
            int64_t bot = (int64_t)n - target - top;
            if (bot < 0) {
                top += bot;
                bot = 0;
            }
            if (top > 0 && bot < (int64_t)n - top) {
                t->sel[i][0].pos = (uint64_t)bot;
                t->sel[i][1].pos = n - (uint64_t)top - 1;
                t->n_sel[i] = 2;
            }
        }
    }
}

static void finish_cuts(au_task *t)
{
    uint64_t n = t->n_elems_on;
    for (size_t i = 0; i < t->n_in; i++) {
        if (!t->in[i].sparsify) {
            ms_cut_all(&t->cut[i]);
            continue;
        }
        double dens = t->in[i].density;
        if (t->sparse == AU_SP_MAGNITUDE) {
            uint64_t k = (uint64_t)floor(dens * (double)n);
            if (t->n_sel[i] == 1)
                ms_cut_topk(&t->cut[i], n, k, &t->sel[i][0]);
            else if (k >= n)
                ms_cut_all(&t->cut[i]);
            else
                ms_cut_none(&t->cut[i]);
        } else if (t->sparse == AU_SP_OUTLIERS) {
            if (t->n_sel[i] == 2)
                ms_cut_range(&t->cut[i], t->sel[i][0].pos, t->sel[i][1].pos + 1,
                             &t->sel[i][0], &t->sel[i][1]);
            else
                ms_cut_none(&t->cut[i]); /* mergekit's [n_bot:-0] */
        }
    }
}

/* L1 rescale factors (mergekit: skipped when either norm is < 1e-7). */
static void finish_rescale(au_task *t)
{
    for (size_t i = 0; i < t->n_in; i++)
        for (int r = 0; r < t->draws; r++) {
            size_t q = i * (size_t)t->draws + (size_t)r;
            t->rscale[q] = 0.0f;
            if (!t->in[i].sparsify || !t->rescale)
                continue;
            double before = t->l1[i];
            double after = is_random(t) ? t->masked_l1[q] : 0.0;
            if (before < 1e-7 || after < 1e-7)
                continue;
            t->rscale[q] = (float)before / (float)after;
        }
}

static ms_status pass_kept_l1(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    /* magnitude cuts with rescale: L1 of the kept part needs the cut */
    ms_cut cuts[AU_MAXIN];
    set_cuts(t, cuts);
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        if (!au_chunk_on(t, c))
            continue;
        int64_t row0, nr;
        size_t nn;
        const float *s;
        ms_status st = load_chunk(a, t, w, c, &row0, &nr, &nn, &s, err);
        if (st)
            return st;
        for (size_t i = 0; i < t->n_in; i++) {
            if ((int)i == t->base || !t->in[i].sparsify)
                continue;
            const float *d = delta_of(t, w, s, i);
            uint8_t *keep = w->keep + i * w->cap;
            ms_cut_apply(&cuts[i], d, nn, keep);
            double l1 = 0.0;
            for (size_t j = 0; j < nn; j++)
                l1 += keep[j] ? fabsf(d[j]) : 0.0f;
            t->masked_l1[i * (size_t)t->draws] += l1;
        }
    }
    return MS_OK;
}

static ms_status task_passes(ms_audit *a, au_task *t, au_worker *w, int passes,
                             ms_error *err);

ms_status au_task_passes(ms_audit *a, au_task *t, au_worker *w, int passes,
                         ms_error *err)
{
    ms_status st;
    if (t->skipped)
        return MS_OK;
    st = task_passes(a, t, w, passes, err);
    release_task(a, t);
    return st;
}

/* Level-1 histogram of every trimmed donor, exactly: the fast path's
 * fallback, whose statistics pass only sampled it. */
static ms_status pass_hist(ms_audit *a, au_task *t, au_worker *w, ms_error *err)
{
    memset(w->hist, 0, t->n_in * MS_HIST_BINS * sizeof(uint64_t));
    for (uint64_t c = 0; c < t->n_chunks; c++) {
        int64_t row0, nr;
        size_t nn;
        const float *s;
        ms_status st = load_chunk(a, t, w, c, &row0, &nr, &nn, &s, err);
        if (st)
            return st;
        for (size_t i = 0; i < t->n_in; i++)
            if ((int)i != t->base && needs_hist(t, i))
                ms_hist_hi_add(w->hist + i * MS_HIST_BINS, delta_of(t, w, s, i), nn);
    }
    for (size_t i = 0; i < t->n_in; i++)
        for (int k = 0; k < t->n_sel[i] && needs_hist(t, i); k++)
            ms_select_hi(&t->sel[i][k], w->hist + i * MS_HIST_BINS);
    return MS_OK;
}

/* The cuts and the simulation through audit_fast.c; when its bounds
 * miss a cut, the exact selection passes find them. */
static ms_status fast_apply(ms_audit *a, au_task *t, au_worker *w, int passes, bool need_sel,
                            ms_error *err)
{
    ms_status st;
    bool count_small = t->small_late;
    if ((passes & AU_PASS_STATS) && !au_fast_cuts(t, w)) {
        if (need_sel && ((st = pass_hist(a, t, w, err)) || (st = pass_select(a, t, w, err))))
            return st;
        finish_cuts(t);
        count_small = false; /* pass_select counted them */
    }
    finish_rescale(t);
    return au_fast_apply(a, t, w, count_small, err);
}

static ms_status task_passes(ms_audit *a, au_task *t, au_worker *w, int passes,
                             ms_error *err)
{
    ms_status st;
    if (passes & AU_PASS_STATS)
        plan_selects(t);
    bool need_sel = false;
    for (size_t i = 0; i < t->n_in; i++)
        need_sel |= t->in[i].sparsify && (t->n_sel[i] > 0 || is_random(t));
    /* one simulation pass settles the cuts too (audit_fast.c) */
    if (passes & AU_PASS_STATS)
        t->fast = (passes & AU_PASS_APPLY) && au_fast_ok(a, t);
    /* with a selection or fast simulation pass to come, the small-delta
     * count (it needs the base's rms) moves there and the base-only pass
     * is not needed */
    t->small_late = (need_sel || t->fast) && (passes & AU_PASS_STATS) &&
                    (passes & (AU_PASS_SELECT | AU_PASS_APPLY)) && t->base >= 0 &&
                    ((passes & AU_PASS_SELECT) || t->fast);
    if (t->small_late)
        t->small_thr = -1.0f;
    else if ((passes & AU_PASS_BASE) && t->base >= 0 && (st = pass_base(a, t, w, err)))
        return st;
    if (t->fast && (passes & AU_PASS_STATS)) {
        if ((st = au_fast_sample_pass(a, t, w, err)))
            return st;
    }
    if (passes & AU_PASS_STATS) {
        if ((st = pass_stats(a, t, w, err)))
            return st;
    }
    if (t->small_late) {
        double g00 = t->gram[0];
        t->small_thr = t->n_elems_on ? (float)(1e-6 * sqrt(g00 / (double)t->n_elems_on)) : 0.0f;
    }
    if (t->fast && (passes & AU_PASS_APPLY))
        return fast_apply(a, t, w, passes, need_sel, err);
    if ((passes & AU_PASS_SELECT) && need_sel && (st = pass_select(a, t, w, err)))
        return st;
    if (passes & AU_PASS_SELECT) {
        finish_cuts(t);
        if (t->rescale && !is_random(t) && t->sparse != AU_SP_NONE) {
            if ((st = pass_kept_l1(a, t, w, err)))
                return st;
        }
        finish_rescale(t);
    }
    if (passes & AU_PASS_APPLY) {
        if (a->sim == AU_APPLY || a->sim == AU_SCE)
            return pass_apply(a, t, w, err);
        au_gram_sim(a, t);
    }
    return MS_OK;
}

/* ====================================================== Gram simulation */

/* c_i = sum_r alpha[i][r] S_r; M = sum_i c_i: <c_i, M> into dot[i] and
 * ||M||^2 into *mm, from the upper-triangle Gram gram (m x m). */
static void gram_dots(const au_task *t, const double *gram, double alpha[][AU_MAXIN],
                      double *dot, double *mm_out)
{
    size_t m = t->m;
    double am[AU_MAXIN] = {0};
    for (size_t i = 0; i < t->n_in; i++)
        for (size_t r = 0; r < m; r++)
            am[r] += alpha[i][r];
    double gm[AU_MAXIN] = {0};
    for (size_t r = 0; r < m; r++)
        for (size_t s = 0; s < m; s++)
            gm[r] += (r <= s ? gram[r * m + s] : gram[s * m + r]) * am[s];
    double mm = 0.0;
    for (size_t r = 0; r < m; r++)
        mm += am[r] * gm[r];
    *mm_out = mm;
    for (size_t i = 0; i < t->n_in; i++) {
        double d = 0.0;
        for (size_t r = 0; r < m; r++)
            d += alpha[i][r] * gm[r];
        dot[i] = d;
    }
}

/* Draw 0 from the whole Gram; with sampling, per read chunk as well. */
static void gram_shares(au_task *t, double alpha[][AU_MAXIN])
{
    gram_dots(t, t->gram, alpha, t->dot, &t->mm[0]);
    for (uint64_t c = 0; t->chunk_gram && c < t->n_chunks_on; c++) {
        double *cd = t->chunk_dot + c * (t->n_in + 1);
        gram_dots(t, t->chunk_gram + c * t->m * t->m, alpha, cd, &cd[t->n_in]);
    }
}

static double gsym(const au_task *t, size_t i, size_t j)
{
    return i <= j ? t->gram[i * t->m + j] : t->gram[j * t->m + i];
}

/* <x_i, x_j> of the inputs themselves from the stacked Gram. */
static double raw_dot(const au_task *t, size_t i, size_t j)
{
    if (t->base < 0)
        return gsym(t, (size_t)t->in[i].srow, (size_t)t->in[j].srow);
    size_t ri = (size_t)t->in[i].srow, rj = (size_t)t->in[j].srow;
    double v = gsym(t, 0, 0);
    if (ri)
        v += gsym(t, 0, ri);
    if (rj)
        v += gsym(t, 0, rj);
    if (ri && rj)
        v += gsym(t, ri, rj);
    return v;
}

/* alpha for x_i (the input itself) */
static void add_raw(const au_task *t, double *alpha, size_t i, double c)
{
    if (t->base < 0) {
        alpha[t->in[i].srow] += c;
        return;
    }
    alpha[0] += c;
    if (t->in[i].srow)
        alpha[t->in[i].srow] += c;
}

static void slerp_coeffs(double t_, double v0v0, double v1v1, double v0v1,
                         double *s0, double *s1)
{
    double n0 = sqrt(v0v0), n1 = sqrt(v1v1);
    double dot = v0v1 / ((n0 > 1e-8 ? n0 : 1.0) * (n1 > 1e-8 ? n1 : 1.0));
    if (fabs(dot) > 0.9995) {
        *s0 = 1.0 - t_;
        *s1 = t_;
        return;
    }
    double th = acos(dot), sn = sin(th);
    *s0 = sin(th - th * t_) / sn;
    *s1 = sin(th * t_) / sn;
}

void au_gram_sim(const ms_audit *a, au_task *t)
{
    double alpha[AU_MAXIN][AU_MAXIN];
    memset(alpha, 0, sizeof(alpha));
    size_t n = t->n_in;
    double wsum = 0.0;
    for (size_t i = 0; i < n; i++)
        if ((int)i != t->base || !t->origin)
            wsum += (float)(t->in[i].weight * t->wscale[i]);
    switch (a->method) {
    case MS_METHOD_LINEAR:
        for (size_t i = 0; i < n; i++)
            add_raw(t, alpha[i], i, (t->in[i].weight * t->wscale[i]) /
                                        (t->normalize ? wsum : 1.0));
        break;
    case MS_METHOD_PASSTHROUGH:
        for (size_t i = 0; i < n; i++)
            add_raw(t, alpha[i], i, t->in[i].scale);
        break;
    case MS_METHOD_SLERP:
        if (n == 1) {
            add_raw(t, alpha[0], 0, 1.0);
        } else {
            size_t i0 = t->base >= 0 ? (size_t)t->base : 0, i1 = 1 - i0;
            double s0, s1;
            slerp_coeffs(t->t, raw_dot(t, i0, i0), raw_dot(t, i1, i1), raw_dot(t, i0, i1),
                         &s0, &s1);
            add_raw(t, alpha[i0], i0, s0);
            add_raw(t, alpha[i1], i1, s1);
        }
        break;
    case MS_METHOD_NUSLERP: {
        size_t idx[2], k = 0;
        for (size_t i = 0; i < n && k < 2; i++)
            if ((int)i != t->base || !t->origin)
                idx[k++] = i;
        if (k < 2)
            break;
        double w1 = t->in[idx[0]].weight * t->wscale[idx[0]];
        double w2 = t->in[idx[1]].weight * t->wscale[idx[1]];
        double tt = fabs(w1 + w2) < 1e-6 ? 0.5 : w2 / (w1 + w2);
        size_t r0 = (size_t)t->in[idx[0]].srow, r1 = (size_t)t->in[idx[1]].srow;
        double aa, bb, ab;
        if (t->origin) {
            aa = gsym(t, r0, r0), bb = gsym(t, r1, r1), ab = gsym(t, r0, r1);
        } else {
            aa = raw_dot(t, idx[0], idx[0]), bb = raw_dot(t, idx[1], idx[1]);
            ab = raw_dot(t, idx[0], idx[1]);
        }
        double n0 = fmax(sqrt(aa), 1e-7), n1 = fmax(sqrt(bb), 1e-7);
        double c = fmin(1.0, fmax(-1.0, ab / (n0 * n1)));
        double th = acos(c), sn = sin(th), s0 = 1.0 - tt, s1 = tt;
        if (fabs(sn) >= 1e-8) {
            s0 = sin((1.0 - tt) * th) / sn;
            s1 = sin(tt * th) / sn;
        }
        if (t->origin) {
            alpha[idx[0]][r0] += s0;
            alpha[idx[1]][r1] += s1;
        } else {
            add_raw(t, alpha[idx[0]], idx[0], s0);
            add_raw(t, alpha[idx[1]], idx[1], s1);
        }
        break;
    }
    case MS_METHOD_MODEL_STOCK: {
        double csum = 0.0;
        size_t np = 0, N = n - 1;
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                if ((int)i == t->base || (int)j == t->base)
                    continue;
                size_t ri = (size_t)t->in[i].srow, rj = (size_t)t->in[j].srow;
                double den = fmax(sqrt(gsym(t, ri, ri) * gsym(t, rj, rj)), 1e-6);
                csum += fmin(1.0, fmax(-1.0, gsym(t, ri, rj) / den));
                np++;
            }
        double c = np ? csum / (double)np : 0.0;
        double tt = (double)N * c / (1.0 + (double)(N - 1) * c);
        for (size_t i = 0; i < n; i++)
            if ((int)i != t->base)
                alpha[i][t->in[i].srow] += tt / (double)N;
        break;
    }
    default: { /* task arithmetic without trimming or sign election */
        double div = t->normalize ? (fabs(wsum) < 1e-8 ? 1.0 : wsum) : 1.0;
        for (size_t i = 0; i < n; i++)
            if ((int)i != t->base)
                alpha[i][t->in[i].srow] += t->lambda * (float)(t->in[i].weight * t->wscale[i]) / div;
        break;
    }
    }
    gram_shares(t, alpha);
}
