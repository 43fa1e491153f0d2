/*
 * audit_suggest.c - re-simulation with scaled weights, the search for
 * weights that reach target shares, and the recipe changes that write them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define scope_of au_scope_of
#define n_scopes ms_audit_n_scopes

ms_status ms_audit_simulate(ms_audit *a, ms_audit_per per, const double *scale,
                            double *shares_out, double *by_scope, ms_error *err)
{
    if (a->sim == AU_NOSIM)
        return ms_error_set(err, MS_ERR_UNSUPPORTED, NULL, -1,
                            "the %s method is not simulated", ms_method_name(a->method));
    size_t ns = n_scopes(a, per), nd = a->n_donors;
    for (size_t k = 0; k < a->n_tasks; k++) {
        au_task *t = &a->tasks[k];
        size_t s = scope_of(a, t, per);
        for (size_t i = 0; i < t->n_in; i++)
            t->wscale[i] = t->in[i].donor == AU_NONE ? 1.0 : scale[t->in[i].donor * ns + s];
    }
    ms_status st = au_run_tasks(a, AU_PASS_APPLY, err);
    if (st)
        return st;
    double *dot = calloc((nd + 1) * (ns + 1), sizeof(double));
    if (!dot)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    double *mm = dot + nd * (ns + 1); /* ns + 1 slots: scopes, then overall */
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        if (t->skipped)
            continue;
        double f = t->n_elems_on ? (double)t->n / (double)t->n_elems_on : 1.0;
        size_t s = scope_of(a, t, per);
        mm[s] += t->mm[0] * f;
        mm[ns] += t->mm[0] * f;
        for (size_t i = 0; i < t->n_in; i++) {
            size_t d = t->in[i].donor;
            if (d == AU_NONE)
                continue;
            dot[d * (ns + 1) + s] += t->dot[i] * f;
            dot[d * (ns + 1) + ns] += t->dot[i] * f;
        }
    }
    for (size_t d = 0; d < nd; d++) {
        shares_out[d] = mm[ns] > 0 ? dot[d * (ns + 1) + ns] / mm[ns] : 0.0;
        for (size_t s = 0; s < ns && by_scope; s++)
            by_scope[d * ns + s] = mm[s] > 0 ? dot[d * (ns + 1) + s] / mm[s] : 0.0;
    }
    if (by_scope)
        for (size_t s = 0; s < ns; s++)
            if (mm[s] <= 0)
                for (size_t d = 0; d < nd; d++)
                    by_scope[d * ns + s] = -1.0; /* no merged delta here */
    free(dot);
    return MS_OK;
}

/* How far --suggest may move a weight from the recipe's, either way: a
 * donor that needs more than this is better dropped or retuned by hand. */
#define MAX_SCALE 20.0

static double clamp_scale(double x)
{
    return fmin(MAX_SCALE, fmax(1.0 / MAX_SCALE, x));
}

static bool has_weights(ms_merge_method m)
{
    return m == MS_METHOD_LINEAR || m == MS_METHOD_NUSLERP || ms_method_is_gta(m);
}

ms_status ms_audit_rebalance(ms_audit *a, ms_audit_per per, const double *target,
                             double tol, int max_iter, double *scale, double *achieved,
                             int *iters, ms_error *err)
{
    if (!has_weights(a->method))
        return ms_error_set(err, MS_ERR_UNSUPPORTED, NULL, -1,
                            "%s has no per-model weights to rebalance",
                            ms_method_name(a->method));
    size_t ns = n_scopes(a, per), nd = a->n_donors, n = nd * ns;
    double *sh = calloc(n * 5 + nd, sizeof(double));
    if (!sh)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    double *prev_sh = sh + n, *prev_ls = sh + 2 * n, *slope = sh + 3 * n, *best = sh + 4 * n;
    double *overall = sh + 5 * n;
    double best_worst = 1e300;
    for (size_t q = 0; q < n; q++) {
        scale[q] = 1.0;
        slope[q] = 1.5;
        prev_sh[q] = -1.0;
    }
    ms_status st = MS_OK;
    double worst = 1e300;
    int it;
    for (it = 0; it < max_iter; it++) {
        if ((st = ms_audit_simulate(a, per, scale, overall, sh, err)))
            break;
        worst = 0.0;
        for (size_t q = 0; q < n; q++)
            if (sh[q] >= -0.5)
                worst = fmax(worst, fabs(sh[q] - target[q / ns]));
        if (worst < best_worst) {
            best_worst = worst;
            memcpy(best, scale, n * sizeof(double));
        }
        if (worst <= tol)
            break;
        for (size_t q = 0; q < n; q++) {
            if (sh[q] < -0.5)
                continue;
            double ls = log(scale[q]);
            /* secant on log share vs log weight, starting from a slope
             * between linear (1) and quadratic (2) dependence */
            if (prev_sh[q] > 1e-9 && sh[q] > 1e-9 && fabs(ls - prev_ls[q]) > 1e-9) {
                double sl = (log(sh[q]) - log(prev_sh[q])) / (ls - prev_ls[q]);
                if (isfinite(sl))
                    slope[q] = fmin(3.0, fmax(0.3, sl));
            }
            double step = sh[q] > 1e-9 ? log(target[q / ns] / sh[q]) / slope[q] : 1.0;
            step = fmax(-1.0, fmin(1.0, step));
            prev_sh[q] = sh[q];
            prev_ls[q] = ls;
            scale[q] = exp(ls + step);
        }
        /* keep the geometric mean of every scope's scales at 1 */
        for (size_t s = 0; s < ns; s++) {
            double g = 0.0;
            for (size_t d = 0; d < nd; d++)
                g += log(scale[d * ns + s]);
            g = exp(g / (double)nd);
            for (size_t d = 0; d < nd; d++)
                scale[d * ns + s] = clamp_scale(scale[d * ns + s] / g);
        }
    }
    /* a method whose shares cannot reach the target (normalised TIES where
     * one donor's task vector dominates) sends the search off towards
     * absurd weights: keep the closest point it simulated */
    if (!st && best_worst < 1e300) {
        memcpy(scale, best, n * sizeof(double));
        worst = best_worst;
    }
    *achieved = worst;
    *iters = it + (it < max_iter ? 1 : 0);
    free(sh);
    return st;
}

/* ================================================================ changes */

/* The donor's weights over the tensors of scope s: mean, and whether it
 * is constant. */
static double scope_weight(const ms_audit *a, size_t d, ms_audit_per per, size_t s,
                           bool *constant)
{
    double sum = 0.0, lo = 1e300, hi = -1e300;
    size_t n = 0;
    for (size_t k = 0; k < a->n_tasks; k++) {
        const au_task *t = &a->tasks[k];
        if (t->skipped || scope_of(a, t, per) != s)
            continue;
        for (size_t i = 0; i < t->n_in; i++)
            if (t->in[i].donor == d) {
                sum += t->in[i].weight;
                lo = fmin(lo, t->in[i].weight);
                hi = fmax(hi, t->in[i].weight);
                n++;
            }
    }
    *constant = n == 0 || lo == hi;
    return n ? sum / (double)n : 0.0;
}

static ms_status push_change(ms_audit *a, const char *model, const char *filter,
                             const double *v, size_t nv, size_t *used, ms_error *err)
{
    size_t k = a->n_changes++;
    ms_recipe_change *c = &a->changes[k];
    memcpy(a->change_values + *used, v, nv * sizeof(double));
    c->stage = (size_t)(a->st - a->recipe->stages);
    c->model = model;
    c->param = "weight";
    c->filter = NULL;
    if (filter) {
        a->change_filters[k] = ms_strdup(filter);
        if (!a->change_filters[k])
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        c->filter = a->change_filters[k];
    }
    c->values = a->change_values + *used;
    c->n_values = nv;
    *used += nv;
    return MS_OK;
}

ms_status ms_audit_changes(ms_audit *a, ms_audit_per per, const double *scale,
                           const ms_recipe_change **changes, size_t *n_out,
                           double *new_weights, ms_error *err)
{
    if (!has_weights(a->method))
        return ms_error_set(err, MS_ERR_UNSUPPORTED, NULL, -1,
                            "%s has no per-model weights to rebalance",
                            ms_method_name(a->method));
    if (per == MS_AUDIT_PER_LAYER && !a->st->modules[0].models_syntax)
        return ms_error_set(err, MS_ERR_UNSUPPORTED, NULL, -1,
                            "--per layer needs a models: recipe (gradients restart in "
                            "every slice)");
    size_t ns = n_scopes(a, per), nd = a->n_donors;
    for (size_t i = 0; i < a->n_changes; i++)
        free(a->change_filters[i]);
    free(a->changes);
    free(a->change_values);
    free(a->change_filters);
    a->n_changes = 0;
    a->changes = calloc(nd * 4 + 1, sizeof(ms_recipe_change));
    a->change_values = calloc(nd * (ns + 4) + 1, sizeof(double));
    a->change_filters = calloc(nd * 4 + 1, sizeof(char *));
    if (!a->changes || !a->change_values || !a->change_filters)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t used = 0;
    ms_status st = MS_OK;
    for (size_t d = 0; d < nd && !st; d++) {
        const char *model = a->st->models[a->donor_model[d]].ref;
        double v[1024];
        bool c;
        double wsum = 0.0;
        if (per == MS_AUDIT_PER_DONOR) {
            v[0] = scope_weight(a, d, per, 0, &c) * scale[d * ns];
            wsum = v[0];
            st = push_change(a, model, NULL, v, 1, &used, err);
            if (!c)
                st = st ? st : MS_OK;
        } else if (per == MS_AUDIT_PER_FILTER) {
            static const char *flt[] = {"self_attn", "mlp"};
            v[0] = scope_weight(a, d, per, MS_FILTER_OTHER, &c) * scale[d * ns + MS_FILTER_OTHER];
            st = push_change(a, model, NULL, v, 1, &used, err);
            for (int f = 0; f < 2 && !st; f++) {
                double w = scope_weight(a, d, per, (size_t)f, &c) * scale[d * ns + (size_t)f];
                st = push_change(a, model, flt[f], &w, 1, &used, err);
                wsum += w;
            }
            wsum = (wsum + v[0]) / 3.0;
        } else {
            size_t nl = ns < 1024 ? ns : 1024;
            for (size_t s = 0; s < nl; s++) {
                v[s] = scope_weight(a, d, per, s, &c) * scale[d * ns + s];
                wsum += v[s] / (double)nl;
            }
            st = push_change(a, model, NULL, v, nl, &used, err);
        }
        if (new_weights)
            new_weights[d] = wsum;
    }
    *changes = a->changes;
    *n_out = a->n_changes;
    return st;
}
