/*
 * quant.c - quantization error of a model against its source (quant.h).
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mergescope/names.h"
#include "mergescope/quant.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* ==== figures ==== */

void ms_quant_sums_add(ms_quant_sums *a, const ms_quant_sums *b)
{
    a->n += b->n;
    a->e2 += b->e2;
    a->r2 += b->r2;
    a->q2 += b->q2;
    a->qr += b->qr;
    a->max_abs = b->max_abs > a->max_abs ? b->max_abs : a->max_abs;
    a->wn += b->wn;
    a->we2 += b->we2;
    a->wr2 += b->wr2;
}

void ms_quant_figures_of(const ms_quant_sums *s, ms_quant_figures *f)
{
    f->rmse = s->n ? sqrt(s->e2 / (double)s->n) : NAN;
    f->rel_rmse = s->r2 > 0 ? sqrt(s->e2 / s->r2) : NAN;
    f->snr_db = s->e2 > 0 && s->r2 > 0 ? 10.0 * log10(s->r2 / s->e2) : NAN;
    f->cosine = s->q2 > 0 && s->r2 > 0 ? s->qr / sqrt(s->q2 * s->r2) : NAN;
    f->max_abs = s->n ? s->max_abs : NAN;
    f->weighted_rel_err = s->wn && s->wr2 > 0 ? sqrt(s->we2 / s->wr2) : NAN;
}

/* ==== importance matrix look-up ==== */

static bool entry_is(const ms_imatrix_entry *e, const ms_model *m, const ms_tensor *t)
{
    if (m->format == MS_FORMAT_GGUF)
        return !strcmp(e->name, t->source_name);
    char canon[256];
    ms_names_from_gguf(m->architecture, e->name, canon, sizeof(canon));
    return !strcmp(canon, t->name);
}

const ms_imatrix_entry *ms_quant_imatrix_entry(const ms_imatrix *im, const ms_model *m,
                                               const ms_tensor *t)
{
    if (!im)
        return NULL;
    if (m->format == MS_FORMAT_GGUF)
        return ms_imatrix_find(im, t->source_name);
    for (size_t i = 0; i < im->n_entries; i++)
        if (entry_is(&im->entries[i], m, t))
            return &im->entries[i];
    return NULL;
}

ms_status ms_quant_imatrix_check(const ms_imatrix *im, const ms_model *m, ms_error *err)
{
    for (size_t i = 0; i < im->n_entries; i++) {
        const ms_imatrix_entry *e = &im->entries[i];
        const ms_tensor *t = NULL;
        for (size_t j = 0; j < m->n_tensors && !t; j++)
            if (entry_is(e, m, &m->tensors[j]))
                t = &m->tensors[j];
        if (!t)
            return ms_error_set(err, MS_ERR_MISMATCH, im->path, -1,
                                "imatrix entry '%s' names no tensor of %s: "
                                "the importance matrix is for another model",
                                e->name, m->name ? m->name : m->path);
        if ((uint64_t)t->n_cols != e->n_cols ||
            (e->n_mat > 1 && (uint64_t)t->n_rows % e->n_mat))
            return ms_error_set(err, MS_ERR_MISMATCH, im->path, -1,
                                "imatrix entry '%s' has %u columns but the tensor has %lld: "
                                "the importance matrix is for another model",
                                e->name, e->n_cols, (long long)t->n_cols);
    }
    return MS_OK;
}

/* ==== streaming ==== */

typedef struct qpart {
    int64_t row0;
    ms_quant_sums s;
} qpart;

typedef struct qslot {
    qpart *parts;
    size_t n, cap;
    const ms_imatrix_entry *w;
    int64_t rows_per_mat;
} qslot;

typedef struct qctx {
    pthread_mutex_t mu;
    qslot *slots;
    ms_quant_tensor *tensors;
} qctx;

/* Sums of one row in float64 (the portable loop). */
static void row_sums(const float *qi, const float *ri, const float *w, int64_t nc,
                     double acc[6], double *mx)
{
    double e2 = 0, r2 = 0, q2 = 0, qr = 0, m = *mx, we2 = 0, wr2 = 0;
    for (int64_t j = 0; j < nc; j++) {
        double a = qi[j], b = ri[j], e = a - b;
        e2 += e * e;
        r2 += b * b;
        q2 += a * a;
        qr += a * b;
        m = fabs(e) > m ? fabs(e) : m;
        if (w) {
            we2 += w[j] * e * e;
            wr2 += w[j] * b * b;
        }
    }
    acc[0] = e2, acc[1] = r2, acc[2] = q2, acc[3] = qr, acc[4] = we2, acc[5] = wr2;
    *mx = m;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline double hsum(__m256d v)
{
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}

/* The same sums four lanes at a time (about 4x the portable loop; the
 * order of additions differs, so the last bits may too). */
AVX2 static void row_sums_avx2(const float *qi, const float *ri, const float *w,
                               int64_t nc, double acc[6], double *mx)
{
    __m256d e2 = _mm256_setzero_pd(), r2 = e2, q2 = e2, qr = e2, we2 = e2, wr2 = e2;
    __m256d m = _mm256_set1_pd(*mx), abs_mask = _mm256_castsi256_pd(
        _mm256_set1_epi64x(0x7fffffffffffffffll));
    int64_t j = 0;
    for (; j + 4 <= nc; j += 4) {
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(qi + j));
        __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(ri + j));
        __m256d e = _mm256_sub_pd(a, b);
        e2 = _mm256_fmadd_pd(e, e, e2);
        r2 = _mm256_fmadd_pd(b, b, r2);
        q2 = _mm256_fmadd_pd(a, a, q2);
        qr = _mm256_fmadd_pd(a, b, qr);
        m = _mm256_max_pd(m, _mm256_and_pd(e, abs_mask));
        if (w) {
            __m256d wj = _mm256_cvtps_pd(_mm_loadu_ps(w + j));
            we2 = _mm256_fmadd_pd(_mm256_mul_pd(wj, e), e, we2);
            wr2 = _mm256_fmadd_pd(_mm256_mul_pd(wj, b), b, wr2);
        }
    }
    double tail[6], tm = *mx;
    row_sums(qi + j, ri + j, w ? w + j : NULL, nc - j, tail, &tm);
    acc[0] = hsum(e2) + tail[0], acc[1] = hsum(r2) + tail[1];
    acc[2] = hsum(q2) + tail[2], acc[3] = hsum(qr) + tail[3];
    acc[4] = hsum(we2) + tail[4], acc[5] = hsum(wr2) + tail[5];
    __m128d mm = _mm_max_pd(_mm256_castpd256_pd128(m), _mm256_extractf128_pd(m, 1));
    double m2 = _mm_cvtsd_f64(_mm_max_sd(mm, _mm_unpackhi_pd(mm, mm)));
    *mx = m2 > tm ? m2 : tm;
}

static bool have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static void row_sums_avx2(const float *qi, const float *ri, const float *w, int64_t nc,
                          double acc[6], double *mx)
{
    row_sums(qi, ri, w, nc, acc, mx);
}

static bool have_avx2(void)
{
    return false;
}
#endif

/* Sums of one chunk: per row in float64, rows added in order. */
static void chunk_sums(const ms_stream_chunk *c, const qslot *sl, ms_quant_sums *s)
{
    const float *q = c->x[0], *r = c->x[1];
    int64_t nc = c->n_cols;
    bool vec = have_avx2();
    for (int64_t i = 0; i < c->nrows; i++) {
        const float *w = NULL;
        if (sl->w) {
            int64_t mat = sl->rows_per_mat ? (c->row0 + i) / sl->rows_per_mat : 0;
            w = sl->w->w + (size_t)mat * sl->w->n_cols;
        }
        double acc[6];
        if (vec)
            row_sums_avx2(q + i * nc, r + i * nc, w, nc, acc, &s->max_abs);
        else
            row_sums(q + i * nc, r + i * nc, w, nc, acc, &s->max_abs);
        s->e2 += acc[0], s->r2 += acc[1], s->q2 += acc[2], s->qr += acc[3];
        s->we2 += acc[4], s->wr2 += acc[5];
    }
    s->n += (uint64_t)(c->nrows * nc);
    if (sl->w)
        s->wn += (uint64_t)(c->nrows * nc);
}

static ms_status on_chunk(void *ctx, const ms_stream_chunk *c, ms_error *err)
{
    qctx *q = ctx;
    qslot *sl = &q->slots[c->slot];
    qpart p = {c->row0, {0}};
    chunk_sums(c, sl, &p.s);
    pthread_mutex_lock(&q->mu);
    if (sl->n == sl->cap) {
        size_t cap = sl->cap ? 2 * sl->cap : 8;
        qpart *np = ms_realloc_array(sl->parts, cap, sizeof(*np));
        if (!np) {
            pthread_mutex_unlock(&q->mu);
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        }
        sl->parts = np;
        sl->cap = cap;
    }
    sl->parts[sl->n++] = p;
    pthread_mutex_unlock(&q->mu);
    return MS_OK;
}

static int part_cmp(const void *a, const void *b)
{
    int64_t x = ((const qpart *)a)->row0, y = ((const qpart *)b)->row0;
    return (x > y) - (x < y);
}

static ms_status on_done(void *ctx, size_t slot, ms_error *err)
{
    (void)err;
    qctx *q = ctx;
    pthread_mutex_lock(&q->mu);
    qslot *sl = &q->slots[slot];
    qsort(sl->parts, sl->n, sizeof(*sl->parts), part_cmp);
    ms_quant_tensor *t = &q->tensors[slot];
    for (size_t i = 0; i < sl->n; i++)
        ms_quant_sums_add(&t->sums, &sl->parts[i].s);
    free(sl->parts);
    sl->parts = NULL;
    sl->n = sl->cap = 0;
    pthread_mutex_unlock(&q->mu);
    return MS_OK;
}

/* ==== result ==== */

void ms_quant_result_free(ms_quant_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_tensors; i++) {
        free(r->tensors[i].name);
        free(r->tensors[i].source_name);
    }
    for (size_t i = 0; i < r->n_unmatched; i++)
        free(r->unmatched[i].name);
    free(r->tensors);
    free(r->types);
    free(r->layers);
    free(r->unmatched);
    free(r->model);
    free(r->reference);
    free(r->imatrix);
    free(r->model_format);
    free(r->reference_format);
    free(r);
}

static ms_status fill_tensor(ms_quant_tensor *qt, const ms_tensor *t)
{
    qt->name = ms_strdup(t->name);
    qt->source_name = ms_strdup(t->source_name);
    qt->layer = t->layer;
    qt->kind = t->kind;
    qt->type = t->dtype;
    qt->n_params = t->n_elems;
    qt->bytes = t->nbytes;
    qt->bpw = t->n_elems ? t->nbytes * 8.0 / (double)t->n_elems : NAN;
    return qt->name && qt->source_name ? MS_OK : MS_ERR_NOMEM;
}

static ms_quant_group *group_find(ms_quant_group **g, size_t *n, bool by_type,
                                  ms_dtype type, int layer)
{
    for (size_t i = 0; i < *n; i++)
        if (by_type ? (*g)[i].type == type : (*g)[i].layer == layer)
            return &(*g)[i];
    ms_quant_group *ng = ms_realloc_array(*g, *n + 1, sizeof(**g));
    if (!ng)
        return NULL;
    *g = ng;
    memset(&ng[*n], 0, sizeof(ng[*n]));
    ng[*n].type = type;
    ng[*n].layer = layer;
    return &ng[(*n)++];
}

static int type_cmp(const void *a, const void *b)
{
    const ms_quant_group *x = a, *y = b;
    if (x->n_params != y->n_params)
        return x->n_params > y->n_params ? -1 : 1;
    return strcmp(ms_dtype_name(x->type), ms_dtype_name(y->type));
}

static int layer_cmp(const void *a, const void *b)
{
    const ms_quant_group *x = a, *y = b;
    return (x->layer > y->layer) - (x->layer < y->layer);
}

/* Types over every tensor of the model; layers and errors over compared. */
static ms_status build_groups(ms_quant_result *r, const ms_model *m)
{
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        ms_quant_group *g = group_find(&r->types, &r->n_types, true, t->dtype, 0);
        ms_quant_group *l = group_find(&r->layers, &r->n_layers, false, 0, t->layer);
        if (!g || !l)
            return MS_ERR_NOMEM;
        g->n_tensors++, g->n_params += t->n_elems, g->bytes += t->nbytes;
        l->n_tensors++, l->n_params += t->n_elems, l->bytes += t->nbytes;
    }
    for (size_t i = 0; i < r->n_tensors; i++) {
        const ms_quant_tensor *t = &r->tensors[i];
        ms_quant_sums_add(&group_find(&r->types, &r->n_types, true, t->type, 0)->sums, &t->sums);
        ms_quant_sums_add(&group_find(&r->layers, &r->n_layers, false, 0, t->layer)->sums,
                          &t->sums);
        ms_quant_sums_add(&r->overall.sums, &t->sums);
    }
    qsort(r->types, r->n_types, sizeof(*r->types), type_cmp);
    qsort(r->layers, r->n_layers, sizeof(*r->layers), layer_cmp);
    ms_quant_group *all[2] = {r->types, r->layers};
    size_t ns[2] = {r->n_types, r->n_layers};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < ns[k]; i++) {
            ms_quant_group *g = &all[k][i];
            g->share = r->n_params ? (double)g->n_params / (double)r->n_params : NAN;
            g->bpw = g->n_params ? g->bytes * 8.0 / (double)g->n_params : NAN;
            ms_quant_figures_of(&g->sums, &g->fig);
        }
    r->overall.n_tensors = r->n_tensors;
    r->overall.n_params = r->n_params;
    r->overall.bytes = r->bytes;
    r->overall.share = 1.0;
    r->overall.bpw = r->bits_per_weight;
    ms_quant_figures_of(&r->overall.sums, &r->overall.fig);
    return MS_OK;
}

static ms_status add_unmatched(ms_quant_result *r, const char *name, int reason)
{
    ms_quant_unmatched *u = ms_realloc_array(r->unmatched, r->n_unmatched + 1, sizeof(*u));
    if (!u)
        return MS_ERR_NOMEM;
    r->unmatched = u;
    u[r->n_unmatched].name = ms_strdup(name);
    u[r->n_unmatched].reason = reason;
    return u[r->n_unmatched++].name ? MS_OK : MS_ERR_NOMEM;
}

static ms_status result_new(const ms_model *m, const ms_model *ref, const ms_imatrix *im,
                            ms_quant_result **out)
{
    ms_quant_result *r = calloc(1, sizeof(*r));
    if (!r)
        return MS_ERR_NOMEM;
    *out = r;
    r->model = ms_strdup(m->name ? m->name : m->path);
    r->reference = ms_strdup(ref->name ? ref->name : ref->path);
    r->model_format = ms_strdup(ms_format_name(m->format));
    r->reference_format = ms_strdup(ms_format_name(ref->format));
    r->imatrix = im ? ms_strdup(im->path) : NULL;
    r->n_params = m->n_params;
    r->bytes = m->data_bytes;
    r->bits_per_weight = m->n_params ? m->data_bytes * 8.0 / (double)m->n_params : NAN;
    r->overall.layer = -1;
    if (!r->model || !r->reference || !r->model_format || !r->reference_format ||
        (im && !r->imatrix))
        return MS_ERR_NOMEM;
    return MS_OK;
}

static ms_status stream_all(const ms_model *m, const ms_model *ref, const ms_imatrix *im,
                            const ms_stream_opts *opts, ms_quant_result *r, ms_error *err)
{
    const ms_model *models[2] = {m, ref};
    const ms_tensor **slots = NULL;
    ms_stream_skip *skip = NULL;
    size_t n_slots = 0, n_skip = 0;
    ms_status st = ms_stream_match(models, 2, &slots, &n_slots, &skip, &n_skip, err);
    if (st)
        return st;
    qctx q = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL};
    q.slots = ms_zalloc_array(n_slots ? n_slots : 1, sizeof(*q.slots));
    r->tensors = ms_zalloc_array(n_slots ? n_slots : 1, sizeof(*r->tensors));
    q.tensors = r->tensors;
    if (!q.slots || !r->tensors)
        st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < n_slots && !st; i++) {
        const ms_tensor *t = slots[2 * i];
        r->n_tensors++;
        if (fill_tensor(&r->tensors[i], t))
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        q.slots[i].w = ms_quant_imatrix_entry(im, m, t);
        if (q.slots[i].w)
            q.slots[i].rows_per_mat = t->n_rows / q.slots[i].w->n_mat;
        r->tensors[i].weighted = q.slots[i].w != NULL;
    }
    for (size_t i = 0; i < n_skip && !st; i++)
        if (add_unmatched(r, skip[i].name, skip[i].reason))
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < ref->n_tensors && !st; i++)
        if (!ms_model_find(m, ref->tensors[i].name) && add_unmatched(r, ref->tensors[i].name, 3))
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if (!st) {
        ms_stream_job job = {models, 2, slots, n_slots};
        st = ms_stream_run(&job, opts, on_chunk, on_done, &q, err);
    }
    for (size_t i = 0; q.slots && i < n_slots; i++)
        free(q.slots[i].parts);
    free(q.slots);
    free(slots);
    free(skip);
    return st;
}

ms_status ms_quant_run(const ms_model *model, const ms_model *ref, const ms_imatrix *im,
                       const ms_stream_opts *opts, ms_quant_result **out, ms_error *err)
{
    *out = NULL;
    ms_status st;
    if (im && (st = ms_quant_imatrix_check(im, model, err)))
        return st;
    ms_quant_result *r = NULL;
    if (result_new(model, ref, im, &r)) {
        ms_quant_result_free(r);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    st = stream_all(model, ref, im, opts, r, err);
    if (!st && r->n_tensors == 0)
        st = ms_error_set(err, MS_ERR_MISMATCH, ref->path, -1,
                          "no tensor of %s matches the reference by name and shape",
                          model->name ? model->name : model->path);
    for (size_t i = 0; !st && i < r->n_tensors; i++)
        ms_quant_figures_of(&r->tensors[i].sums, &r->tensors[i].fig);
    if (!st && build_groups(r, model))
        st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if (st) {
        ms_quant_result_free(r);
        return st;
    }
    *out = r;
    return MS_OK;
}
