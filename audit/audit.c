/*
 * audit.c - the audit engine: open the recipe's models, turn the plan into
 * per-tensor tasks, run the passes on worker threads, reduce to the result
 * (contract in include/mergescope/audit.h).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* ================================================================ methods */

static au_kind sim_kind(ms_merge_method m)
{
    switch (m) {
    case MS_METHOD_LINEAR: case MS_METHOD_SLERP: case MS_METHOD_NUSLERP:
    case MS_METHOD_PASSTHROUGH: case MS_METHOD_MODEL_STOCK:
    case MS_METHOD_TASK_ARITHMETIC:
        return AU_GRAM;
    case MS_METHOD_TIES: case MS_METHOD_DARE_TIES: case MS_METHOD_DARE_LINEAR:
    case MS_METHOD_BREADCRUMBS: case MS_METHOD_BREADCRUMBS_TIES:
    case MS_METHOD_DELLA: case MS_METHOD_DELLA_LINEAR:
        return AU_APPLY;
    case MS_METHOD_SCE:
        return AU_SCE;
    default:
        return AU_NOSIM;
    }
}

static au_sparse sparse_of(ms_merge_method m)
{
    switch (m) {
    case MS_METHOD_TIES: return AU_SP_MAGNITUDE;
    case MS_METHOD_DARE_TIES: case MS_METHOD_DARE_LINEAR: return AU_SP_RANDOM;
    case MS_METHOD_BREADCRUMBS: case MS_METHOD_BREADCRUMBS_TIES: return AU_SP_OUTLIERS;
    case MS_METHOD_DELLA: case MS_METHOD_DELLA_LINEAR: return AU_SP_DELLA;
    default: return AU_SP_NONE;
    }
}

static bool has_consensus(ms_merge_method m)
{
    return m == MS_METHOD_TIES || m == MS_METHOD_DARE_TIES ||
           m == MS_METHOD_BREADCRUMBS_TIES || m == MS_METHOD_DELLA;
}

/* ================================================================ notes */

static void add_note(ms_audit *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_note(ms_audit *a, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    for (size_t i = 0; i < a->res.n_notes; i++)
        if (strcmp(a->res.notes[i], buf) == 0)
            return;
    char **n = ms_realloc_array(a->res.notes, a->res.n_notes + 1, sizeof(char *));
    if (!n)
        return;
    a->res.notes = n;
    if ((n[a->res.n_notes] = ms_strdup(buf)))
        a->res.n_notes++;
}

static void add_mismatch(ms_audit *a, const char *tensor, size_t model, int kind)
{
    size_t n = a->n_mismatch + 1;
    char **t = ms_realloc_array(a->mismatch_tensor, n, sizeof(char *));
    if (t)
        a->mismatch_tensor = t;
    size_t *d = ms_realloc_array(a->mismatch_donor, n, sizeof(size_t));
    if (d)
        a->mismatch_donor = d;
    int *k = ms_realloc_array(a->mismatch_kind, n, sizeof(int));
    if (k)
        a->mismatch_kind = k;
    if (!t || !d || !k)
        return;
    t[n - 1] = ms_strdup(tensor);
    d[n - 1] = model;
    k[n - 1] = kind;
    if (t[n - 1])
        a->n_mismatch = n;
}

/* ================================================================ tasks */

/* name with the layer index from -> to (first ".from." segment). */
static char *relayer(const char *name, int from, int to)
{
    char pat[32];
    ms_sb sb = MS_SB_INIT;
    int n = snprintf(pat, sizeof(pat), ".%d.", from);
    const char *hit = from >= 0 && from != to ? strstr(name, pat) : NULL;
    if (!hit) {
        ms_sb_add(&sb, name);
    } else {
        ms_sb_addn(&sb, name, (size_t)(hit - name));
        ms_sb_addf(&sb, ".%d.%s", to, hit + n);
    }
    return ms_sb_detach(&sb);
}

static double pval(const ms_recipe_params *p, ms_param k, double dflt)
{
    return ms_params_has(p, k) ? p->value[k] : dflt;
}

static ms_status resolve_input(ms_audit *a, au_task *t, au_input *in, int out_layer,
                               ms_error *err)
{
    ms_recipe_params p;
    ms_status st = ms_recipe_resolve(a->plan, a->method, t->name, out_layer, in->model,
                                     &p, err);
    if (st)
        return st;
    in->weight = pval(&p, MS_PARAM_WEIGHT, 1.0);
    in->density = pval(&p, MS_PARAM_DENSITY, 1.0);
    in->gamma = pval(&p, MS_PARAM_GAMMA, 0.01);
    in->epsilon = pval(&p, MS_PARAM_EPSILON, 0.15);
    in->scale = pval(&p, MS_PARAM_SCALE, 1.0);
    return MS_OK;
}

static ms_status resolve_globals(ms_audit *a, au_task *t, int out_layer, ms_error *err)
{
    ms_recipe_params p;
    ms_status st = ms_recipe_resolve(a->plan, a->method, t->name, out_layer,
                                     MS_RECIPE_NONE, &p, err);
    if (st)
        return st;
    t->lambda = pval(&p, MS_PARAM_LAMBDA, 1.0);
    t->normalize = pval(&p, MS_PARAM_NORMALIZE, 0.0) != 0.0;
    t->rescale = pval(&p, MS_PARAM_RESCALE, 0.0) != 0.0;
    t->t = pval(&p, MS_PARAM_T, 0.5);
    t->select_topk = pval(&p, MS_PARAM_SELECT_TOPK, 1.0);
    if (a->method == MS_METHOD_NUSLERP && pval(&p, MS_PARAM_NUSLERP_FLATTEN, 1.0) == 0.0)
        a->sim = AU_NOSIM, add_note(a, "nuslerp with nuslerp_flatten false (per-row "
                                       "slerp) is not simulated");
    if (a->method == MS_METHOD_MODEL_STOCK && pval(&p, MS_PARAM_FILTER_WISE, 0.0) != 0.0)
        a->sim = AU_NOSIM, add_note(a, "model_stock with filter_wise is not simulated");
    if (a->method == MS_METHOD_SCE && t->select_topk < 1.0)
        a->sim = AU_NOSIM, add_note(a, "sce with select_topk < 1 is not simulated");
    return MS_OK;
}

static bool same_shape(const ms_tensor *x, const ms_tensor *y)
{
    if (x->ndim != y->ndim)
        return false;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i])
            return false;
    return true;
}

/* Attach input model `model` (its tensor in_name) to task t. */
static void attach(ms_audit *a, au_task *t, const ms_recipe_input *ri, const char *in_name,
                   size_t base_model, const ms_tensor *ref)
{
    const ms_model *m = a->models[ri->model];
    const ms_tensor *x = m ? ms_model_find(m, in_name) : NULL;
    if (!x) {
        add_mismatch(a, in_name, ri->model, 0);
        return;
    }
    if (ref && !same_shape(x, ref)) {
        bool vocab = (x->kind == MS_KIND_EMBED || x->kind == MS_KIND_OUTPUT) &&
                     x->n_cols == ref->n_cols;
        add_mismatch(a, in_name, ri->model, vocab ? 2 : 1);
        return;
    }
    if (!ms_dtype_can_decode(x->dtype)) {
        add_note(a, "%s of %s: type %s cannot be decoded, skipped", in_name,
                 a->st->models[ri->model].ref, ms_dtype_name(x->dtype));
        return;
    }
    if (t->n_in >= AU_MAXIN)
        return;
    au_input *in = &t->in[t->n_in];
    memset(in, 0, sizeof(*in));
    in->model = ri->model;
    in->t = x;
    if (ri->model == base_model)
        t->base = (int)t->n_in;
    t->n_in++;
}

static ms_status add_task(ms_audit *a, const ms_recipe_plan_layer *row, const char *src_name,
                          int src_layer, int out_layer, ms_error *err)
{
    au_task *tk = ms_realloc_array(a->tasks, a->n_tasks + 1, sizeof(*tk));
    if (!tk)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    a->tasks = tk;
    au_task *t = &tk[a->n_tasks];
    memset(t, 0, sizeof(*t));
    t->base = -1;
    t->name = relayer(src_name, src_layer, out_layer);
    if (!t->name)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    a->n_tasks++;
    ms_names_classify(t->name, NULL, &t->kind, &t->filter);
    t->layer = out_layer;
    size_t base_model = a->plan->slices[row->slice].base_model;
    /* the base first, so every donor is checked against its shape */
    const ms_tensor *ref = NULL;
    for (size_t k = 0; k < row->n_inputs; k++) {
        if (row->inputs[k].model != base_model)
            continue;
        char *in_name = relayer(t->name, out_layer, row->inputs[k].in_layer);
        attach(a, t, &row->inputs[k], in_name, base_model, NULL);
        free(in_name);
        ref = t->n_in ? t->in[0].t : NULL;
    }
    if (base_model != AU_NONE && t->base < 0 && a->origin) {
        t->skipped = true;
        add_note(a, "%s: the base has no such tensor, skipped", t->name);
        return MS_OK;
    }
    for (size_t k = 0; k < row->n_inputs; k++) {
        if (row->inputs[k].model == base_model)
            continue;
        char *in_name = relayer(t->name, out_layer, row->inputs[k].in_layer);
        attach(a, t, &row->inputs[k], in_name, base_model, ref ? ref : (t->n_in ? t->in[0].t : NULL));
        free(in_name);
    }
    if (t->n_in == 0) {
        t->skipped = true;
        return MS_OK;
    }
    ms_status st = resolve_globals(a, t, out_layer, err);
    for (size_t i = 0; i < t->n_in && !st; i++)
        st = resolve_input(a, t, &t->in[i], out_layer, err);
    return st;
}

/* Whose tensors name the row's outputs: the base when it is an input (a
 * donor missing a tensor is then reported, not silently dropped), else
 * the first input. Sets *in_layer to that input's source layer. */
static const ms_model *row_model(const ms_audit *a, const ms_recipe_plan_layer *row,
                                 int *in_layer)
{
    size_t pick = 0;
    size_t base = a->plan->slices[row->slice].base_model;
    for (size_t k = 0; k < row->n_inputs; k++)
        if (row->inputs[k].model == base)
            pick = k;
    if (in_layer)
        *in_layer = row->n_inputs ? row->inputs[pick].in_layer : -1;
    return row->n_inputs ? a->models[row->inputs[pick].model] : NULL;
}

static ms_status build_tasks(ms_audit *a, ms_error *err)
{
    const ms_recipe_plan *p = a->plan;
    ms_status st = MS_OK;
    const ms_model *m = row_model(a, &p->pre, NULL);
    for (size_t i = 0; m && i < m->n_tensors && !st; i++)
        if (m->tensors[i].layer < 0 &&
            ms_recipe_plan_row(p, m->tensors[i].name, -1) == &p->pre)
            st = add_task(a, &p->pre, m->tensors[i].name, -1, -1, err);
    for (int l = 0; l < p->n_layers && !st; l++) {
        const ms_recipe_plan_layer *row = &p->layers[l];
        int in_layer = -1;
        m = row_model(a, row, &in_layer);
        for (size_t i = 0; m && i < m->n_tensors && !st; i++)
            if (m->tensors[i].layer == in_layer)
                st = add_task(a, row, m->tensors[i].name, in_layer, l, err);
    }
    m = row_model(a, &p->post, NULL);
    for (size_t i = 0; m && i < m->n_tensors && !st; i++)
        if (m->tensors[i].layer < 0 &&
            ms_recipe_plan_row(p, m->tensors[i].name, -1) == &p->post)
            st = add_task(a, &p->post, m->tensors[i].name, -1, -1, err);
    return st;
}

/*
 * Elements per model per chunk: --chunk-elems (default 32 Ki: the chunk of
 * every input fits the L2 cache beside its deltas), lowered so
 * that one worker's buffers (MS_AUDIT_BUF_BYTES per element for each of the
 * most inputs any tensor has) fit max_memory. The thread count plays no
 * part, so results do not depend on it. A budget below one row per model
 * of the widest tensor is MS_ERR_NOMEM, naming that tensor.
 */
static ms_status chunk_budget(ms_audit *a, ms_error *err)
{
    a->chunk_limit = a->opts.chunk_elems ? a->opts.chunk_elems : (size_t)32 << 10;
    uint64_t mem = a->opts.max_memory;
    if (!mem)
        return MS_OK;
    size_t n_in = 1;
    const au_task *wide = NULL;
    for (size_t i = 0; i < a->n_tasks; i++) {
        const au_task *t = &a->tasks[i];
        if (t->skipped)
            continue;
        n_in = t->n_in > n_in ? t->n_in : n_in;
        if (!wide || t->in[0].t->n_cols > wide->in[0].t->n_cols)
            wide = t;
    }
    uint64_t per_elem = (uint64_t)MS_AUDIT_BUF_BYTES * n_in;
    uint64_t limit = mem / per_elem;
    int64_t cols = wide ? wide->in[0].t->n_cols : 1;
    if (limit < (uint64_t)(cols > 0 ? cols : 1))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1,
                            "memory budget of %llu bytes is too small: one row of %s "
                            "(%lld values) for each of %zu models needs %llu bytes of "
                            "buffers", (unsigned long long)mem, wide ? wide->name : "?",
                            (long long)cols, n_in,
                            (unsigned long long)(per_elem * (uint64_t)(cols > 0 ? cols : 1)));
    if (limit < a->chunk_limit)
        a->chunk_limit = (size_t)limit;
    return MS_OK;
}

/* Sizes, stacking, chunking and buffers of one task. */
static ms_status setup_task(ms_audit *a, au_task *t, ms_error *err)
{
    const ms_tensor *x = t->in[0].t;
    t->rows = x->n_rows;
    t->cols = x->n_cols;
    t->n = x->n_elems;
    t->seed = a->opts.seed;
    t->origin = a->origin && t->base >= 0;
    if (a->origin && t->base < 0)
        return MS_OK;
    size_t r = 1;
    for (size_t i = 0; i < t->n_in; i++) {
        if ((int)i == t->base)
            t->in[i].srow = 0;
        else
            t->in[i].srow = t->base >= 0 ? (int)r++ : (int)i;
        t->in[i].donor = AU_NONE;
        t->wscale[i] = 1.0;
        t->bytes += t->in[i].t->nbytes;
    }
    t->m = t->n_in;
    size_t chunk = a->chunk_limit;
    t->rows_per_chunk = t->cols > 0 ? (int64_t)(chunk / (size_t)t->cols) : 1;
    if (t->rows_per_chunk < 1)
        t->rows_per_chunk = 1;
    if (t->rows_per_chunk > t->rows)
        t->rows_per_chunk = t->rows;
    t->n_chunks = t->rows ? (uint64_t)((t->rows + t->rows_per_chunk - 1) / t->rows_per_chunk) : 0;
    t->n_chunks_on = t->n_chunks;
    t->n_elems_on = t->n;
    if (a->opts.sample > 0.0 && a->opts.sample < 1.0 && t->n_chunks > 2) {
        t->chunk_on = calloc(t->n_chunks, 1);
        if (!t->chunk_on)
            return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
        uint64_t key = ms_rng_key(a->opts.seed, t->name, 999983, 0), best = 0;
        float bu = 2.0f;
        t->n_chunks_on = 0;
        t->n_elems_on = 0;
        for (uint64_t c = 0; c < t->n_chunks; c++) {
            float u = ms_rng_uniform(key, c);
            if (u < bu)
                bu = u, best = c;
            t->chunk_on[c] = u < (float)a->opts.sample;
        }
        t->chunk_on[best] = 1;
        for (uint64_t c = 0; c < t->n_chunks; c++) {
            if (!t->chunk_on[c])
                continue;
            int64_t row0;
            int64_t nr = au_chunk_rows(t, c, &row0);
            t->n_chunks_on++;
            t->n_elems_on += (uint64_t)(nr * t->cols);
        }
    }
    t->sparse = sparse_of(a->method);
    t->consensus = has_consensus(a->method);
    for (size_t i = 0; i < t->n_in; i++) {
        au_input *in = &t->in[i];
        in->sparsify = (int)i != t->base && t->sparse != AU_SP_NONE && in->density < 1.0 &&
                       a->sim != AU_NOSIM;
        if (!in->sparsify)
            continue;
        if (t->sparse == AU_SP_MAGNITUDE && floor(in->density * (double)t->n_elems_on) < 1.0)
            return ms_error_set(err, MS_ERR_FORMAT, a->recipe->path, -1,
                                "density %g keeps no element of the %llu-element tensor %s "
                                "(mergekit aborts)", in->density,
                                (unsigned long long)t->n_elems_on, t->name);
        if (t->sparse == AU_SP_DELLA && in->density > 0.0 &&
            (in->density - in->epsilon <= 0.0 || in->density + in->epsilon >= 1.0))
            return ms_error_set(err, MS_ERR_FORMAT, a->recipe->path, -1,
                                "della: density %g +- epsilon %g leaves (0, 1) at %s",
                                in->density, in->epsilon, t->name);
    }
    bool random = t->sparse == AU_SP_RANDOM || t->sparse == AU_SP_DELLA;
    t->draws = random ? a->draws : 1;
    /* the stable-rank sketch looks at matrices writing to the residual
     * stream (rows = hidden size: q/o/down), where abliteration edits */
    int64_t hidden = t->base >= 0 ? a->models[t->in[t->base].model]->hidden_size : 0;
    t->sketch = t->base >= 0 && x->ndim == 2 && t->rows >= 2 && t->cols >= 2 &&
                t->kind != MS_KIND_EMBED && t->kind != MS_KIND_OUTPUT && !t->chunk_on &&
                (hidden <= 0 || t->rows == hidden);
    size_t n2 = t->n_in * t->n_in;
    t->gram = calloc(t->m * t->m, sizeof(double));
    t->pair_nn = calloc(n2, sizeof(uint64_t));
    t->pair_opp = calloc(n2, sizeof(uint64_t));
    t->masked_l1 = calloc(t->n_in * (size_t)t->draws, sizeof(double));
    t->rscale = calloc(t->n_in * (size_t)t->draws, sizeof(float));
    t->dot = calloc(t->n_in * (size_t)t->draws, sizeof(double));
    t->mm = calloc((size_t)t->draws, sizeof(double));
    if (t->sparse != AU_SP_NONE || t->consensus) {
        t->kept_nn = calloc(n2, sizeof(uint64_t));
        t->kept_opp = calloc(n2, sizeof(uint64_t));
    }
    if (t->chunk_on) {
        t->chunk_gram = calloc(t->n_chunks_on * t->m * t->m, sizeof(double));
        t->chunk_dot = calloc(t->n_chunks_on * (t->n_in + 1), sizeof(double));
    }
    if (!t->gram || !t->pair_nn || !t->pair_opp || !t->masked_l1 || !t->rscale ||
        !t->dot || !t->mm || (t->kept_nn == NULL) != (t->kept_opp == NULL) ||
        (t->chunk_on && (!t->chunk_gram || !t->chunk_dot)))
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    if ((size_t)(t->rows_per_chunk * t->cols) > a->cap)
        a->cap = (size_t)(t->rows_per_chunk * t->cols);
    if (t->n_in > a->n_in_max)
        a->n_in_max = t->n_in;
    if (t->cols > a->cols_max)
        a->cols_max = t->cols;
    if (t->rows > a->rows_max)
        a->rows_max = t->rows;
    return MS_OK;
}

/* ================================================================ donors */

static void assign_donors(ms_audit *a)
{
    size_t nm = a->st->n_models;
    a->donor_model = calloc(nm ? nm : 1, sizeof(size_t));
    size_t *idx = calloc(nm ? nm : 1, sizeof(size_t));
    if (!a->donor_model || !idx) {
        free(idx);
        return;
    }
    for (size_t m = 0; m < nm; m++)
        idx[m] = AU_NONE;
    for (size_t m = 0; m < nm; m++) {
        bool used = false;
        for (size_t k = 0; k < a->n_tasks && !used; k++) {
            const au_task *t = &a->tasks[k];
            for (size_t i = 0; i < t->n_in && !used; i++)
                used = t->in[i].model == m && !((int)i == t->base && t->origin);
        }
        if (used) {
            idx[m] = a->n_donors;
            a->donor_model[a->n_donors++] = m;
        }
    }
    for (size_t k = 0; k < a->n_tasks; k++) {
        au_task *t = &a->tasks[k];
        for (size_t i = 0; i < t->n_in; i++)
            t->in[i].donor = ((int)i == t->base && t->origin) ? AU_NONE : idx[t->in[i].model];
    }
    free(idx);
}

static int cmp_task_size(const void *x, const void *y, void *ctx)
{
    const ms_audit *a = ctx;
    size_t i = *(const size_t *)x, j = *(const size_t *)y;
    uint64_t bi = a->tasks[i].bytes, bj = a->tasks[j].bytes;
    if (bi != bj)
        return bi < bj ? 1 : -1;
    return (i > j) - (i < j);
}

static ms_status make_order(ms_audit *a, ms_error *err)
{
    a->order = ms_alloc_array(a->n_tasks ? a->n_tasks : 1, sizeof(size_t));
    if (!a->order)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < a->n_tasks; i++)
        a->order[i] = i;
    /* largest first keeps the two workers busy to the end; insertion sort
     * on byte counts avoids a global comparator context */
    for (size_t i = 1; i < a->n_tasks; i++) {
        size_t v = a->order[i], j = i;
        while (j > 0 && cmp_task_size(&a->order[j - 1], &v, a) > 0) {
            a->order[j] = a->order[j - 1];
            j--;
        }
        a->order[j] = v;
    }
    return MS_OK;
}

/* ================================================================ open */

static ms_status open_models(ms_audit *a, ms_error *err)
{
    const ms_recipe_stage *st = a->st;
    a->models = calloc(st->n_models ? st->n_models : 1, sizeof(ms_model *));
    if (!a->models)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; i < st->n_models; i++) {
        if (st->models[i].stage != MS_RECIPE_NONE)
            return ms_error_set_at(err, MS_ERR_UNSUPPORTED, a->recipe->path,
                                   st->models[i].line, st->models[i].col,
                                   "'%s' is the output of an earlier stage: audit that "
                                   "stage, or merge it and pass it with --model",
                                   st->models[i].ref);
        ms_status s = ms_model_open_name(st->models[i].path, a->opts.resolve,
                                         &a->models[i], err);
        if (s)
            return s;
    }
    return MS_OK;
}

ms_status ms_audit_open(const ms_recipe *r, const ms_audit_opts *opts, ms_audit **out,
                        ms_error *err)
{
    *out = NULL;
    ms_audit *a = calloc(1, sizeof(*a));
    if (!a)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    pthread_mutex_init(&a->mu, NULL);
    a->opts = *opts;
    a->recipe = r;
    size_t si = opts->stage == MS_RECIPE_NONE ? r->n_stages - 1 : opts->stage;
    *out = a;
    if (si >= r->n_stages)
        return ms_error_set(err, MS_ERR_USAGE, r->path, -1, "no stage %zu", si);
    a->st = &r->stages[si];
    a->method = a->st->method;
    a->sim = opts->stats_only ? AU_NOSIM : sim_kind(a->method);
    if (!opts->stats_only && a->sim == AU_NOSIM)
        add_note(a, "the %s method is not simulated: statistics only, no shares",
                 ms_method_name(a->method));
    a->base_model = a->st->base_model == MS_RECIPE_NONE ? AU_NONE : a->st->base_model;
    a->origin = ms_method_is_gta(a->method) || a->method == MS_METHOD_SCE ||
                a->method == MS_METHOD_MODEL_STOCK ||
                (a->method == MS_METHOD_NUSLERP && a->base_model != AU_NONE);
    int reps = opts->replicates < 0 ? 8 : opts->replicates;
    bool random = sparse_of(a->method) == AU_SP_RANDOM || sparse_of(a->method) == AU_SP_DELLA;
    a->draws = random && a->sim != AU_NOSIM ? 1 + reps : 1;
    if (opts->sample > 0.0 && opts->sample < 1.0)
        add_note(a, "with --sample the stable-rank sketch (low_rank fingerprint) is skipped and "
                    "trimming thresholds come from the rows read");
    if (a->st->n_modules > 1)
        add_note(a, "only the first module (%s) is audited", a->st->modules[0].name);
    ms_status s = open_models(a, err);
    if (s)
        return s;
    size_t ref_model = a->base_model != AU_NONE ? a->base_model : 0;
    int n_layers = a->st->n_models ? a->models[ref_model]->n_layers : 0;
    if ((s = ms_recipe_plan_build(a->st, 0, n_layers, &a->plan, err)))
        return s;
    if ((s = build_tasks(a, err)))
        return s;
    if ((s = chunk_budget(a, err)))
        return s;
    for (size_t i = 0; i < a->n_tasks && !s; i++)
        if (!a->tasks[i].skipped)
            s = setup_task(a, &a->tasks[i], err);
    if (s)
        return s;
    if (a->cap == 0)
        a->cap = 1;
    assign_donors(a);
    return make_order(a, err);
}

static void free_task(au_task *t)
{
    free(t->name);
    free(t->chunk_on);
    free(t->gram);
    free(t->chunk_gram);
    free(t->pair_nn);
    free(t->pair_opp);
    free(t->kept_nn);
    free(t->kept_opp);
    free(t->masked_l1);
    free(t->rscale);
    free(t->dot);
    free(t->mm);
    free(t->chunk_dot);
    for (size_t i = 0; i < AU_MAXIN; i++)
        free(t->u[i]);
}

static void free_figs_array(ms_audit_figs *f)
{
    free(f);
}

static void free_result(ms_audit_result *r)
{
    for (size_t d = 0; d < r->n_donors; d++) {
        ms_audit_donor *x = &r->donors[d];
        for (size_t f = 0; f < x->n_fps; f++) {
            free(x->fps[f].kind);
            for (size_t k = 0; k < x->fps[f].n_tensors; k++)
                free(x->fps[f].tensors[k]);
            free(x->fps[f].tensors);
            free(x->fps[f].evidence);
        }
        free(x->fps);
    }
    free(r->donors);
    free(r->pairs);
    for (size_t l = 0; l < r->n_layers; l++) {
        free_figs_array(r->layers[l].donors);
        free(r->layers[l].pairs);
    }
    free(r->layers);
    for (size_t k = 0; k < r->n_tensors; k++) {
        free(r->tensors[k].donors);
        free(r->tensors[k].stable_rank);
    }
    free(r->tensors);
    for (size_t i = 0; i < r->n_notes; i++)
        free(r->notes[i]);
    free(r->notes);
}

void ms_audit_free(ms_audit *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_tasks; i++)
        free_task(&a->tasks[i]);
    free(a->tasks);
    free(a->order);
    if (a->models)
        for (size_t i = 0; a->st && i < a->st->n_models; i++)
            ms_model_close(a->models[i]);
    free(a->models);
    ms_recipe_plan_free(a->plan);
    free_result(&a->res);
    free(a->donor_model);
    for (size_t i = 0; i < a->n_mismatch; i++)
        free(a->mismatch_tensor[i]);
    free(a->mismatch_tensor);
    free(a->mismatch_donor);
    free(a->mismatch_kind);
    free(a->changes);
    free(a->change_values);
    for (size_t i = 0; i < a->n_changes; i++)
        free(a->change_filters ? a->change_filters[i] : NULL);
    free(a->change_filters);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* ================================================================ threads */

/* Workers under --max-memory: as many as fit, at least one (the chunking
 * already made one fit). */
static int budget_threads(const ms_audit *a, int nt)
{
    uint64_t per = (uint64_t)MS_AUDIT_BUF_BYTES * (a->n_in_max ? a->n_in_max : 1) * a->cap;
    if (!a->opts.max_memory || per == 0)
        return nt;
    uint64_t fit = a->opts.max_memory / per;
    return fit < 1 ? 1 : fit < (uint64_t)nt ? (int)fit : nt;
}

typedef struct au_thread {
    ms_audit *a;
    int passes;
    pthread_t th;
} au_thread;

static void *worker_main(void *arg)
{
    au_thread *th = arg;
    ms_audit *a = th->a;
    au_worker w;
    ms_error err;
    ms_error_clear(&err);
    ms_status st = au_worker_init(&w, a);
    if (st)
        ms_error_set(&err, st, NULL, -1, "out of memory");
    while (!st && !atomic_load(&a->stop)) {
        size_t k = atomic_fetch_add(&a->next, 1);
        if (k >= a->n_tasks)
            break;
        st = au_task_passes(a, &a->tasks[a->order[k]], &w, th->passes, &err);
    }
    au_worker_free(&w);
    if (st) {
        pthread_mutex_lock(&a->mu);
        if (!a->first_st) {
            a->first_st = st;
            a->first_err = err;
        }
        pthread_mutex_unlock(&a->mu);
        atomic_store(&a->stop, true);
    }
    return NULL;
}

static int pass_count(int passes)
{
    int n = 0;
    for (int b = 1; b <= AU_PASS_APPLY; b <<= 1)
        n += (passes & b) != 0;
    return n;
}

ms_status au_run_tasks(ms_audit *a, int passes, ms_error *err)
{
    int nt = a->opts.threads > 0 ? a->opts.threads : ms_cpu_count();
    if ((size_t)nt > a->n_tasks)
        nt = a->n_tasks ? (int)a->n_tasks : 1;
    nt = budget_threads(a, nt);
    atomic_store(&a->next, 0);
    atomic_store(&a->stop, false);
    atomic_store(&a->done_bytes, 0);
    a->first_st = MS_OK;
    uint64_t total = 0;
    for (size_t i = 0; i < a->n_tasks; i++)
        if (!a->tasks[i].skipped)
            total += a->tasks[i].bytes;
    a->total_bytes = total * (uint64_t)pass_count(passes);
    au_thread *th = calloc((size_t)nt, sizeof(*th));
    if (!th)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    int started = 0;
    for (int i = 0; i < nt; i++) {
        th[i].a = a;
        th[i].passes = passes;
        if (pthread_create(&th[i].th, NULL, worker_main, &th[i]) != 0)
            break;
        started++;
    }
    if (started == 0)
        worker_main(&th[0]);
    for (int i = 0; i < started; i++)
        pthread_join(th[i].th, NULL);
    free(th);
    a->res.bytes_read += atomic_load(&a->done_bytes);
    if (a->first_st) {
        *err = a->first_err;
        return a->first_st;
    }
    return MS_OK;
}

ms_status ms_audit_run(ms_audit *a, ms_error *err)
{
    double t0 = ms_now();
    int passes = AU_PASS_BASE | AU_PASS_STATS;
    if (a->sim != AU_NOSIM)
        passes |= AU_PASS_SELECT | AU_PASS_APPLY;
    ms_status st = au_run_tasks(a, passes, err);
    if (st)
        return st;
    au_reduce(a);
    a->res.seconds = ms_now() - t0;
    return MS_OK;
}

const ms_audit_result *ms_audit_get(const ms_audit *a)
{
    return &a->res;
}

size_t au_scope_of(const ms_audit *a, const au_task *t, ms_audit_per per)
{
    (void)a;
    switch (per) {
    case MS_AUDIT_PER_FILTER:
        return (size_t)t->filter;
    case MS_AUDIT_PER_LAYER: /* a gradient gives non-layer tensors t = 0 */
        return t->layer >= 0 ? (size_t)t->layer : 0;
    default:
        return 0;
    }
}

size_t ms_audit_n_scopes(const ms_audit *a, ms_audit_per per)
{
    switch (per) {
    case MS_AUDIT_PER_FILTER:
        return MS_FILTER_COUNT;
    case MS_AUDIT_PER_LAYER:
        return a->plan->n_layers > 0 ? (size_t)a->plan->n_layers : 1;
    default:
        return 1;
    }
}
