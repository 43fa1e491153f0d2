/*
 * audit_reduce.c - from per-tensor partial sums to the audit result:
 * pooled figures per scope, shares and their intervals, pairs, and the
 * fingerprints with their evidence.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* Two-sided 99.9% Student t quantiles t(0.9995, dof), dof 1..30. */
static double t9995(int dof)
{
    static const double q[] = {
        636.619, 31.599, 12.924, 8.610, 6.869, 5.959, 5.408, 5.041, 4.781, 4.587,
        4.437, 4.318, 4.221, 4.140, 4.073, 4.015, 3.965, 3.922, 3.883, 3.850,
        3.819, 3.792, 3.768, 3.745, 3.725, 3.707, 3.690, 3.674, 3.659, 3.646};
    if (dof < 1)
        return 0.0;
    return dof <= 30 ? q[dof - 1] : 3.291;
}

typedef struct scope_acc {
    double *dot;      /* n_donors * draws */
    double *mm;       /* draws */
    bool *in;         /* n_donors: the donor contributes in this scope */
    double *tv_sq, *base_sq, *xb, *xx, *zeros, *small, *numel;
    double var_num;   /* sampling: variance numerators are per donor */
    double *svar;     /* n_donors */
    double *rvar, *rvar2; /* n_donors: draws, sum of per-tensor variances and
                             of their squares / dof (Satterthwaite) */
} scope_acc;

static bool acc_init(scope_acc *s, size_t nd, int draws)
{
    memset(s, 0, sizeof(*s));
    size_t n = nd ? nd : 1;
    s->dot = calloc(n * (size_t)draws, sizeof(double));
    s->mm = calloc((size_t)draws, sizeof(double));
    s->in = calloc(n, sizeof(bool));
    s->tv_sq = calloc(n * 8, sizeof(double));
    s->svar = calloc(n * 3, sizeof(double));
    if (!s->dot || !s->mm || !s->in || !s->tv_sq || !s->svar)
        return false;
    s->base_sq = s->tv_sq + n;
    s->xb = s->tv_sq + 2 * n;
    s->xx = s->tv_sq + 3 * n;
    s->zeros = s->tv_sq + 4 * n;
    s->small = s->tv_sq + 5 * n;
    s->numel = s->tv_sq + 6 * n;
    s->rvar = s->svar + n;
    s->rvar2 = s->svar + 2 * n;
    return true;
}

static void acc_free(scope_acc *s)
{
    free(s->dot);
    free(s->mm);
    free(s->in);
    free(s->tv_sq);
    free(s->svar);
}

static double gs(const au_task *t, size_t i, size_t j)
{
    return i <= j ? t->gram[i * t->m + j] : t->gram[j * t->m + i];
}

static double expand(const au_task *t)
{
    return t->n_elems_on ? (double)t->n / (double)t->n_elems_on : 1.0;
}

static void acc_task(const ms_audit *a, scope_acc *s, const au_task *t)
{
    int draws = a->draws;
    double f = expand(t);
    bool sim = a->sim != AU_NOSIM;
    for (int r = 0; r < draws && sim; r++)
        s->mm[r] += t->mm[r < t->draws ? r : 0] * f;
    for (size_t i = 0; i < t->n_in; i++) {
        size_t d = t->in[i].donor;
        if (d == AU_NONE)
            continue;
        if (sim) {
            s->in[d] = true;
            for (int r = 0; r < draws; r++)
                s->dot[d * (size_t)draws + (size_t)r] +=
                    t->dot[(size_t)(r < t->draws ? r : 0) * t->n_in + i] * f;
        }
        if (t->base < 0 || (int)i == t->base)
            continue;
        size_t ri = (size_t)t->in[i].srow;
        s->tv_sq[d] += gs(t, ri, ri) * f;
        s->base_sq[d] += gs(t, 0, 0) * f;
        s->xb[d] += (gs(t, 0, 0) + gs(t, 0, ri)) * f;
        s->xx[d] += (gs(t, 0, 0) + 2.0 * gs(t, 0, ri) + gs(t, ri, ri)) * f;
        s->zeros[d] += (double)t->zeros[i] * f;
        s->small[d] += (double)t->small[i] * f;
        s->numel[d] += (double)t->n;
    }
}

/* Sampling: stratified ratio-estimator variance of each donor's share. */
static void acc_sample_var(const ms_audit *a, scope_acc *s, const au_task *t)
{
    if (!t->chunk_on || a->sim == AU_NOSIM || t->n_chunks_on < 2)
        return;
    double mm = s->mm[0];
    if (mm <= 0.0)
        return;
    double N = (double)t->n_chunks, n = (double)t->n_chunks_on;
    for (size_t i = 0; i < t->n_in; i++) {
        size_t d = t->in[i].donor;
        if (d == AU_NONE)
            continue;
        double R = s->dot[d * (size_t)a->draws] / mm;
        double sum = 0.0, sum2 = 0.0;
        for (uint64_t c = 0; c < t->n_chunks_on; c++) {
            const double *cd = t->chunk_dot + c * (t->n_in + 1);
            double e = cd[i] - R * cd[t->n_in];
            sum += e;
            sum2 += e * e;
        }
        double var = (sum2 - sum * sum / n) / (n - 1.0);
        s->svar[d] += N * N * (1.0 - n / N) * var / n;
    }
}

/* Random draws: tensors draw independently, so the variance of the scope's
 * linearised share numerator sum (dot - S mm) is the sum of per-tensor
 * variances, each estimated from the tensor's draws. */
static void acc_draw_var(const ms_audit *a, scope_acc *s, const au_task *t)
{
    int draws = t->draws;
    if (draws < 2 || s->mm[0] <= 0.0)
        return;
    double f = expand(t);
    for (size_t i = 0; i < t->n_in; i++) {
        size_t d = t->in[i].donor;
        if (d == AU_NONE)
            continue;
        double S = s->dot[d * (size_t)a->draws] / s->mm[0], mean = 0.0, v = 0.0;
        for (int r = 0; r < draws; r++)
            mean += (t->dot[(size_t)r * t->n_in + i] - S * t->mm[r]) * f;
        mean /= draws;
        for (int r = 0; r < draws; r++) {
            double e = (t->dot[(size_t)r * t->n_in + i] - S * t->mm[r]) * f - mean;
            v += e * e;
        }
        v /= (draws - 1);
        s->rvar[d] += v;
        s->rvar2[d] += v * v / (draws - 1);
    }
}

static void fill_figs(const ms_audit *a, const scope_acc *s, size_t d, ms_audit_figs *f)
{
    memset(f, 0, sizeof(*f));
    int draws = a->draws;
    if (s->in[d] && s->mm[0] > 0.0) {
        f->has_share = true;
        f->share = s->dot[d * (size_t)draws] / s->mm[0];
        double h = 0.0;
        if (draws > 1 && s->rvar[d] > 0.0) {
            double dof = s->rvar2[d] > 0.0 ? s->rvar[d] * s->rvar[d] / s->rvar2[d] : 30.0;
            h = t9995((int)fmax(1.0, fmin(30.0, floor(dof)))) * sqrt(2.0 * s->rvar[d]) / s->mm[0];
        }
        if (s->svar[d] > 0.0)
            h = sqrt(h * h + 3.291 * 3.291 * s->svar[d] / (s->mm[0] * s->mm[0]));
        f->share_lo = f->share - h;
        f->share_hi = f->share + h;
    }
    if (s->numel[d] > 0.0 && s->base_sq[d] > 0.0) {
        f->has_tv = true;
        f->tv_norm = sqrt(s->tv_sq[d]);
        f->base_norm = sqrt(s->base_sq[d]);
        f->rel_norm = sqrt(s->tv_sq[d] / s->base_sq[d]);
        double den = sqrt(s->xx[d] * s->base_sq[d]);
        f->cos_to_base = den > 0.0 ? s->xb[d] / den : 0.0;
        f->zero_frac = s->zeros[d] / s->numel[d];
        f->sparsity = s->small[d] / s->numel[d];
    }
}

/* ========================================================= fingerprints */

static ms_audit_fp *new_fp(ms_audit_donor *x, const char *kind)
{
    ms_audit_fp *f = ms_realloc_array(x->fps, x->n_fps + 1, sizeof(*f));
    if (!f)
        return NULL;
    x->fps = f;
    f = &f[x->n_fps++];
    memset(f, 0, sizeof(*f));
    f->kind = ms_strdup(kind);
    return f;
}

static void fp_tensor(ms_audit_fp *f, const char *name)
{
    char **t = ms_realloc_array(f->tensors, f->n_tensors + 1, sizeof(char *));
    if (!t)
        return;
    f->tensors = t;
    if ((t[f->n_tensors] = ms_strdup(name)))
        f->n_tensors++;
}

static void fp_evidence(ms_audit_fp *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fp_evidence(ms_audit_fp *f, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    free(f->evidence);
    f->evidence = ms_strdup(buf);
}

static void fp_q8(ms_audit *a, size_t d, ms_audit_donor *x)
{
    uint64_t tested = 0, fit = 0;
    size_t nt = 0;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d && t->base >= 0 && (int)i != t->base) {
                tested += t->q8_tested[i];
                fit += t->q8_fit[i];
                nt += t->q8_tested[i] > 0;
            }
    }
    if (tested < 16 || (double)fit < 0.9 * (double)tested)
        return;
    ms_audit_fp *f = new_fp(x, "dequantized:Q8_0");
    if (!f)
        return;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d && t->q8_tested[i] &&
                (double)t->q8_fit[i] >= 0.9 * (double)t->q8_tested[i] && (int)i != t->base)
                fp_tensor(f, t->in[i].t->name);
    }
    bool is_q8 = false; /* a Q8_0 GGUF given directly, not a dequantized copy */
    for (size_t k = 0; k < a->n_tasks; k++)
        for (size_t i = 0; i < a->tasks[k].n_in; i++)
            is_q8 |= a->tasks[k].in[i].donor == d && a->tasks[k].in[i].t->dtype == MS_DTYPE_Q8_0;
    fp_evidence(f, "%llu of %llu 32-value blocks (%.2f%%) in %zu tensors lie exactly on a "
                "Q8_0 lattice (one fp16 scale per block, integers |q| <= 127, then stored "
                "as the file's dtype): %s; a fine-tune leaves almost no block on such a "
                "lattice", (unsigned long long)fit, (unsigned long long)tested,
                100.0 * (double)fit / (double)tested, nt,
                is_q8 ? "the donor is a Q8_0 GGUF, merged from its dequantized values"
                      : "the donor was dequantized from a Q8_0 GGUF");
}

static void fp_identical(ms_audit *a, size_t d, ms_audit_donor *x)
{
    size_t n = 0, tot = 0;
    uint64_t par = 0, par_tot = 0;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d && t->base >= 0 && (int)i != t->base) {
                tot++;
                par_tot += t->n_elems_on;
                if (t->n_elems_on && t->zeros[i] == t->n_elems_on)
                    n++, par += t->n_elems_on;
            }
    }
    if (n == 0)
        return;
    ms_audit_fp *f = new_fp(x, "identical_to_base");
    if (!f)
        return;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d && t->base >= 0 && (int)i != t->base &&
                t->n_elems_on && t->zeros[i] == t->n_elems_on)
                fp_tensor(f, t->in[i].t->name);
    }
    fp_evidence(f, "%zu of %zu tensors (%.2f%% of the parameters read) are bit-identical "
                "to the base: they add nothing to the merge", n, tot,
                par_tot ? 100.0 * (double)par / (double)par_tot : 0.0);
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

typedef struct sr_item {
    const au_task *t;
    size_t i;
} sr_item;

static double align(const sr_item *p, const sr_item *q)
{
    if (p->t->rows != q->t->rows || !p->t->u[p->i] || !q->t->u[q->i])
        return 0.0;
    double s = 0.0;
    for (int64_t r = 0; r < p->t->rows; r++)
        s += (double)p->t->u[p->i][r] * q->t->u[q->i][r];
    return fabs(s);
}

static void fp_low_rank(ms_audit *a, size_t d, ms_audit_donor *x)
{
    size_t n = 0;
    for (size_t k = 0; k < a->n_tasks; k++)
        for (size_t i = 0; i < a->tasks[k].n_in; i++)
            n += a->tasks[k].in[i].donor == d && a->tasks[k].sr[i] >= 0.0 &&
                 (int)i != a->tasks[k].base;
    if (n == 0)
        return;
    sr_item *it = calloc(n, sizeof(*it));
    double *all = calloc(n, sizeof(double));
    bool *flag = calloc(n, sizeof(bool));
    size_t *nal = calloc(n, sizeof(size_t));
    if (!it || !all || !flag || !nal)
        goto out;
    size_t m = 0;
    for (size_t k = 0; k < a->n_tasks; k++)
        for (size_t i = 0; i < a->tasks[k].n_in; i++)
            if (a->tasks[k].in[i].donor == d && a->tasks[k].sr[i] >= 0.0 &&
                (int)i != a->tasks[k].base) {
                it[m].t = &a->tasks[k];
                it[m].i = i;
                all[m++] = a->tasks[k].sr[i];
            }
    size_t nf = 0, nalign = 0;
    double lo = 1e300, hi = 0.0, lo_cos = 1.0;
    for (size_t p = 0; p < n; p++) {
        double sr = it[p].t->sr[it[p].i];
        if (sr > 4.0)
            continue;
        for (size_t q = 0; q < n; q++)
            if (q != p && it[q].t->sr[it[q].i] <= 4.0 && align(&it[p], &it[q]) >= 0.9)
                nal[p]++;
        flag[p] = sr <= 1.5 || nal[p] >= 2;
        if (!flag[p])
            continue;
        nf++;
        nalign += nal[p] >= 2;
        lo = fmin(lo, sr);
        hi = fmax(hi, sr);
    }
    if (nf == 0)
        goto out;
    for (size_t p = 0; p < n; p++)
        for (size_t q = p + 1; q < n; q++)
            if (flag[p] && flag[q] && nal[p] >= 2 && nal[q] >= 2)
                lo_cos = fmin(lo_cos, align(&it[p], &it[q]) >= 0.9 ? align(&it[p], &it[q]) : 1.0);
    qsort(all, n, sizeof(double), cmp_double);
    ms_audit_fp *f = new_fp(x, "low_rank");
    if (!f)
        goto out;
    for (size_t p = 0; p < n; p++)
        if (flag[p])
            fp_tensor(f, it[p].t->in[it[p].i].t->name);
    char extra[256] = "";
    if (nalign >= 3)
        snprintf(extra, sizeof(extra), "; %zu of them share one top singular direction "
                 "(|cos| >= %.3f between their top left singular vectors)", nalign, lo_cos);
    fp_evidence(f, "%zu of %zu matrices have a task vector of stable rank %.2f to %.2f "
                "(sketched with %d probes; median over all %.2f)%s: a low-rank edit such "
                "as abliteration (W - r r^T W) rather than fine-tuning", nf, n, lo, hi,
                AU_P, all[n / 2], extra);
out:
    free(it);
    free(all);
    free(flag);
    free(nal);
}

static void fp_mismatch(ms_audit *a, size_t d, ms_audit_donor *x)
{
    static const char *kinds[] = {"missing_tensor", "shape_mismatch", "vocab_mismatch"};
    for (int k = 0; k < 3; k++) {
        ms_audit_fp *f = NULL;
        for (size_t i = 0; i < a->n_mismatch; i++) {
            if (a->mismatch_kind[i] != k || a->mismatch_donor[i] != a->donor_model[d])
                continue;
            if (!f && !(f = new_fp(x, kinds[k])))
                return;
            fp_tensor(f, a->mismatch_tensor[i]);
        }
        if (!f)
            continue;
        if (k == 0)
            fp_evidence(f, "%zu tensors of the plan are missing from this model: they "
                        "are left out of the merge here (mergekit fails unless they are "
                        "optional or tied)", f->n_tensors);
        else if (k == 1)
            fp_evidence(f, "%zu tensors have another shape than the base's: mergekit "
                        "skips them in task-vector methods and fails in linear",
                        f->n_tensors);
        else
            fp_evidence(f, "the vocabulary differs from the base's (%zu embedding/output "
                        "tensors with other row counts): mergekit needs tokenizer_source "
                        "(union or base) or tokenizer: to align the rows; here those "
                        "tensors are left out", f->n_tensors);
    }
}

/* A donor whose weights are nearly orthogonal to the base's is no
 * fine-tune of it (fine-tunes keep cosines near 1). */
static void fp_unrelated(ms_audit_donor *x)
{
    if (!x->all.has_tv || x->all.cos_to_base >= 0.5)
        return;
    ms_audit_fp *f = new_fp(x, "unrelated_to_base");
    if (!f)
        return;
    fp_evidence(f, "cosine of the donor's weights with the base's is %.4f and its task "
                "vector is %.2f times the base's norm: not a fine-tune of this base, so "
                "task arithmetic on it is meaningless", x->all.cos_to_base, x->all.rel_norm);
}

/* ================================================================ reduce */

/* Pair figures pooled over the tensors of one output layer (layer < 0:
 * all tensors): sums of Gram entries and sign counts first, then ratios.
 * out: room for n_donors * (n_donors - 1) / 2 pairs; returns the count. */
static size_t pool_pairs(const ms_audit *a, int layer, ms_audit_pair *out)
{
    size_t nd = a->n_donors, n = 0;
    for (size_t p = 0; p < nd; p++)
        for (size_t q = p + 1; q < nd; q++) {
            double gpq = 0, gpp = 0, gqq = 0, nn = 0, opp = 0, knn = 0, kopp = 0;
            for (size_t k = 0; k < a->n_tasks; k++) {
                const au_task *t = &a->tasks[k];
                if (t->base < 0 || t->skipped || (layer >= 0 && t->layer != layer))
                    continue;
                int ip = -1, iq = -1;
                for (size_t i = 0; i < t->n_in; i++) {
                    if ((int)i == t->base)
                        continue;
                    if (t->in[i].donor == p)
                        ip = (int)i;
                    if (t->in[i].donor == q)
                        iq = (int)i;
                }
                if (ip < 0 || iq < 0)
                    continue;
                size_t lo = (size_t)(ip < iq ? ip : iq), hi = (size_t)(ip < iq ? iq : ip);
                double f = expand(t);
                size_t rp = (size_t)t->in[ip].srow, rq = (size_t)t->in[iq].srow;
                gpq += gs(t, rp, rq) * f;
                gpp += gs(t, rp, rp) * f;
                gqq += gs(t, rq, rq) * f;
                nn += (double)t->pair_nn[lo * t->n_in + hi];
                opp += (double)t->pair_opp[lo * t->n_in + hi];
                if (t->kept_nn) {
                    knn += (double)t->kept_nn[lo * t->n_in + hi];
                    kopp += (double)t->kept_opp[lo * t->n_in + hi];
                }
            }
            ms_audit_pair *x = &out[n++];
            x->a = p;
            x->b = q;
            x->has_cosine = gpp > 0 && gqq > 0;
            x->cosine = x->has_cosine ? gpq / sqrt(gpp * gqq) : 0.0;
            x->has_conflict = nn > 0;
            x->sign_conflict = nn > 0 ? opp / nn : 0.0;
            x->has_ties_conflict = knn > 0 && a->sim == AU_APPLY;
            x->ties_conflict = knn > 0 ? kopp / knn : 0.0;
        }
    return n;
}

static void pairs(ms_audit *a)
{
    size_t nd = a->n_donors, np = nd * nd / 2 + 1;
    a->res.pairs = calloc(np, sizeof(ms_audit_pair));
    if (!a->res.pairs)
        return;
    a->res.n_pairs = pool_pairs(a, -1, a->res.pairs);
    for (size_t l = 0; l < a->res.n_layers; l++) {
        ms_audit_layer *y = &a->res.layers[l];
        y->pairs = calloc(np, sizeof(ms_audit_pair));
        if (y->pairs)
            y->n_pairs = pool_pairs(a, y->layer, y->pairs);
    }
}

static void discarded(ms_audit *a, size_t d, ms_audit_donor *x)
{
    double tot = 0, trim = 0, sign = 0;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d && (int)i != t->base) {
                tot += t->disc_sq[i];
                trim += t->disc_trim[i];
                sign += t->disc_sign[i];
            }
    }
    if (a->sim != AU_APPLY && a->sim != AU_SCE)
        return;
    x->has_discarded = true;
    if (tot <= 0.0)
        return;
    bool random = a->draws > 1 || a->method == MS_METHOD_DARE_TIES ||
                  a->method == MS_METHOD_DARE_LINEAR || a->method == MS_METHOD_DELLA ||
                  a->method == MS_METHOD_DELLA_LINEAR;
    x->discarded_trim = random ? 0.0 : trim / tot;
    x->discarded_drop = random ? trim / tot : 0.0;
    x->discarded_sign = sign / tot;
    x->discarded = (trim + sign) / tot;
}

static void tensors_out(ms_audit *a)
{
    size_t nd = a->n_donors;
    a->res.tensors = calloc(a->n_tasks ? a->n_tasks : 1, sizeof(ms_audit_tensor));
    if (!a->res.tensors)
        return;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        if (t->skipped)
            continue;
        ms_audit_tensor *o = &a->res.tensors[a->res.n_tensors];
        o->donors = calloc(nd ? nd : 1, sizeof(ms_audit_figs));
        o->stable_rank = calloc(nd ? nd : 1, sizeof(double));
        if (!o->donors || !o->stable_rank) {
            free(o->donors);
            free(o->stable_rank);
            return;
        }
        a->res.n_tensors++;
        o->name = t->name;
        o->layer = t->layer;
        o->filter = t->filter;
        o->m_sqnorm = a->sim != AU_NOSIM ? t->mm[0] * expand(t) : 0.0;
        scope_acc s;
        if (!acc_init(&s, nd, a->draws)) {
            acc_free(&s);
            continue;
        }
        acc_task(a, &s, t);
        acc_draw_var(a, &s, t);
        for (size_t d = 0; d < nd; d++) {
            fill_figs(a, &s, d, &o->donors[d]);
            o->stable_rank[d] = -1.0;
        }
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor != AU_NONE)
                o->stable_rank[t->in[i].donor] = t->sr[i];
        acc_free(&s);
    }
}

void au_reduce(ms_audit *a)
{
    ms_audit_result *r = &a->res;
    size_t nd = a->n_donors;
    int nl = a->plan->n_layers;
    size_t ns = 1 + MS_FILTER_COUNT + (size_t)nl;
    scope_acc *s = calloc(ns, sizeof(*s));
    if (!s)
        return;
    bool ok = true;
    for (size_t i = 0; i < ns; i++)
        ok &= acc_init(&s[i], nd, a->draws);
    for (size_t k = 0; k < a->n_tasks && ok; k++) {
        const au_task *t = &a->tasks[k];
        if (t->skipped)
            continue;
        acc_task(a, &s[0], t);
        acc_task(a, &s[1 + t->filter], t);
        if (t->layer >= 0 && t->layer < nl)
            acc_task(a, &s[1 + MS_FILTER_COUNT + (size_t)t->layer], t);
        r->bytes_model += t->bytes;
    }
    for (size_t k = 0; k < a->n_tasks && ok; k++) {
        const au_task *t = &a->tasks[k];
        if (t->skipped)
            continue;
        acc_sample_var(a, &s[0], t);
        acc_sample_var(a, &s[1 + t->filter], t);
        acc_draw_var(a, &s[0], t);
        acc_draw_var(a, &s[1 + t->filter], t);
        if (t->layer >= 0 && t->layer < nl) {
            acc_sample_var(a, &s[1 + MS_FILTER_COUNT + (size_t)t->layer], t);
            acc_draw_var(a, &s[1 + MS_FILTER_COUNT + (size_t)t->layer], t);
        }
    }
    r->method = ms_method_name(a->method);
    r->base = a->base_model != AU_NONE ? a->st->models[a->base_model].ref : NULL;
    r->simulated = a->sim != AU_NOSIM;
    r->random = a->draws > 1;
    r->replicates = a->draws - 1;
    r->seed = a->opts.seed;
    r->sample = a->opts.sample > 0.0 && a->opts.sample < 1.0 ? a->opts.sample : 1.0;
    free(r->donors);
    r->donors = calloc(nd ? nd : 1, sizeof(ms_audit_donor));
    r->layers = calloc(nl > 0 ? (size_t)nl : 1, sizeof(ms_audit_layer));
    if (ok && r->donors && r->layers) {
        r->n_donors = nd;
        for (size_t d = 0; d < nd; d++) {
            ms_audit_donor *x = &r->donors[d];
            x->model = a->donor_model[d];
            x->name = a->st->models[x->model].ref;
            x->is_base = x->model == a->base_model;
            fill_figs(a, &s[0], d, &x->all);
            for (int f = 0; f < MS_FILTER_COUNT; f++)
                fill_figs(a, &s[1 + f], d, &x->by_filter[f]);
            discarded(a, d, x);
            fp_q8(a, d, x);
            fp_low_rank(a, d, x);
            fp_identical(a, d, x);
            fp_mismatch(a, d, x);
            fp_unrelated(x);
        }
        for (int l = 0; l < nl; l++) {
            ms_audit_layer *y = &r->layers[r->n_layers];
            y->layer = l;
            y->donors = calloc(nd ? nd : 1, sizeof(ms_audit_figs));
            if (!y->donors)
                break;
            r->n_layers++;
            for (size_t d = 0; d < nd; d++)
                fill_figs(a, &s[1 + MS_FILTER_COUNT + (size_t)l], d, &y->donors[d]);
        }
        pairs(a);
        tensors_out(a);
    }
    for (size_t i = 0; i < ns; i++)
        acc_free(&s[i]);
    free(s);
}
