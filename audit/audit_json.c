/*
 * audit_json.c - the audit result as "mergescope.audit/1" JSON (field names
 * per DESIGN.md; a figure that cannot be computed is null with a note).
 */
#include <math.h>
#include <stdlib.h>

#include "audit_int.h"
#include "mergescope/banned.h"

static void num_or_null(cJSON *o, const char *key, bool has, double v)
{
    if (has && isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void figs_tv(cJSON *o, const ms_audit_figs *f)
{
    num_or_null(o, "rel_norm", f->has_tv, f->rel_norm);
    num_or_null(o, "tv_norm", f->has_tv, f->tv_norm);
    num_or_null(o, "base_norm", f->has_tv, f->base_norm);
    num_or_null(o, "cos_to_base", f->has_tv, f->cos_to_base);
    num_or_null(o, "zero_frac", f->has_tv, f->zero_frac);
    num_or_null(o, "sparsity", f->has_tv, f->sparsity);
}

static cJSON *fps_json(const ms_audit_donor *x)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < x->n_fps; i++) {
        const ms_audit_fp *f = &x->fps[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", f->kind ? f->kind : "");
        cJSON *t = cJSON_AddArrayToObject(o, "tensors");
        for (size_t k = 0; k < f->n_tensors; k++)
            cJSON_AddItemToArray(t, cJSON_CreateString(f->tensors[k]));
        cJSON_AddStringToObject(o, "evidence", f->evidence ? f->evidence : "");
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static cJSON *donor_json(const ms_audit_result *r, const ms_audit_donor *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", x->name);
    cJSON_AddBoolToObject(o, "is_base", x->is_base);
    num_or_null(o, "share", x->all.has_share, x->all.share);
    if (x->all.has_share && (r->random || r->sample < 1.0)) {
        cJSON *iv = cJSON_AddArrayToObject(o, "share_interval");
        cJSON_AddItemToArray(iv, cJSON_CreateNumber(x->all.share_lo));
        cJSON_AddItemToArray(iv, cJSON_CreateNumber(x->all.share_hi));
    }
    if (!x->all.has_share)
        cJSON_AddStringToObject(o, "note", r->simulated ? "not an input of any merged tensor"
                                                        : "the merge was not simulated");
    cJSON *bf = cJSON_AddObjectToObject(o, "share_by_filter");
    for (int f = 0; f < MS_FILTER_COUNT; f++)
        num_or_null(bf, ms_filter_name((ms_filter)f), x->by_filter[f].has_share,
                    x->by_filter[f].share);
    figs_tv(o, &x->all);
    cJSON *tf = cJSON_AddObjectToObject(o, "tv_by_filter");
    for (int f = 0; f < MS_FILTER_COUNT; f++)
        figs_tv(cJSON_AddObjectToObject(tf, ms_filter_name((ms_filter)f)), &x->by_filter[f]);
    if (!x->all.has_tv)
        cJSON_AddStringToObject(o, "tv_note", x->is_base ? "this is the base"
                                                         : "no base model: no task vector");
    num_or_null(o, "discarded", x->has_discarded, x->discarded);
    if (x->has_discarded) {
        cJSON *d = cJSON_AddObjectToObject(o, "discarded_by");
        cJSON_AddNumberToObject(d, "trim", x->discarded_trim);
        cJSON_AddNumberToObject(d, "drop", x->discarded_drop);
        cJSON_AddNumberToObject(d, "sign_election", x->discarded_sign);
    }
    cJSON_AddItemToObject(o, "fingerprints", fps_json(x));
    return o;
}

static cJSON *shares_obj(const ms_audit_result *r, const ms_audit_figs *f)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t d = 0; d < r->n_donors; d++)
        if (f[d].has_share)
            cJSON_AddNumberToObject(o, r->donors[d].name, f[d].share);
    return o;
}

static cJSON *tv_obj(const ms_audit_result *r, const ms_audit_figs *f)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t d = 0; d < r->n_donors; d++)
        if (f[d].has_tv)
            cJSON_AddNumberToObject(o, r->donors[d].name, f[d].rel_norm);
    return o;
}

static cJSON *sparsity_obj(const ms_audit_result *r, const ms_audit_figs *f)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t d = 0; d < r->n_donors; d++)
        if (f[d].has_tv)
            cJSON_AddNumberToObject(o, r->donors[d].name, f[d].sparsity);
    return o;
}

static cJSON *pairs_json(const ms_audit_result *r, const ms_audit_pair *px, size_t n)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t p = 0; p < n; p++) {
        const ms_audit_pair *x = &px[p];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "a", r->donors[x->a].name);
        cJSON_AddStringToObject(o, "b", r->donors[x->b].name);
        num_or_null(o, "cosine", x->has_cosine, x->cosine);
        num_or_null(o, "sign_conflict", x->has_conflict, x->sign_conflict);
        num_or_null(o, "ties_conflict", x->has_ties_conflict, x->ties_conflict);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

void ms_audit_to_json(const ms_audit *a, cJSON *obj)
{
    const ms_audit_result *r = &a->res;
    cJSON_AddStringToObject(obj, "method", r->method ? r->method : "unknown");
    if (r->base)
        cJSON_AddStringToObject(obj, "base", r->base);
    else
        cJSON_AddNullToObject(obj, "base");
    cJSON_AddBoolToObject(obj, "simulated", r->simulated);
    cJSON_AddNumberToObject(obj, "seed", (double)r->seed);
    cJSON_AddNumberToObject(obj, "replicates", r->replicates);
    cJSON_AddNumberToObject(obj, "sample", r->sample);
    cJSON *donors = cJSON_AddArrayToObject(obj, "donors");
    for (size_t d = 0; d < r->n_donors; d++)
        cJSON_AddItemToArray(donors, donor_json(r, &r->donors[d]));
    cJSON_AddItemToObject(obj, "pairs", pairs_json(r, r->pairs, r->n_pairs));
    cJSON *layers = cJSON_AddArrayToObject(obj, "layers");
    for (size_t l = 0; l < r->n_layers; l++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "layer", r->layers[l].layer);
        cJSON_AddItemToObject(o, "shares", shares_obj(r, r->layers[l].donors));
        cJSON_AddItemToObject(o, "rel_norm", tv_obj(r, r->layers[l].donors));
        cJSON_AddItemToObject(o, "sparsity", sparsity_obj(r, r->layers[l].donors));
        cJSON *ld = cJSON_AddObjectToObject(o, "donors");
        for (size_t d = 0; d < r->n_donors; d++)
            if (r->layers[l].donors[d].has_tv)
                figs_tv(cJSON_AddObjectToObject(ld, r->donors[d].name), &r->layers[l].donors[d]);
        cJSON_AddItemToObject(o, "pairs", pairs_json(r, r->layers[l].pairs, r->layers[l].n_pairs));
        cJSON_AddItemToArray(layers, o);
    }
    cJSON *tensors = cJSON_AddArrayToObject(obj, "tensors");
    for (size_t k = 0; k < r->n_tensors; k++) {
        const ms_audit_tensor *t = &r->tensors[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", t->name);
        if (t->layer >= 0)
            cJSON_AddNumberToObject(o, "layer", t->layer);
        else
            cJSON_AddNullToObject(o, "layer");
        cJSON_AddStringToObject(o, "filter", ms_filter_name(t->filter));
        num_or_null(o, "m_sqnorm", r->simulated, t->m_sqnorm);
        cJSON_AddItemToObject(o, "shares", shares_obj(r, t->donors));
        cJSON_AddItemToObject(o, "rel_norm", tv_obj(r, t->donors));
        cJSON *sr = cJSON_AddObjectToObject(o, "stable_rank");
        for (size_t d = 0; d < r->n_donors; d++)
            if (t->stable_rank[d] >= 0.0)
                cJSON_AddNumberToObject(sr, r->donors[d].name, t->stable_rank[d]);
        cJSON_AddItemToArray(tensors, o);
    }
    cJSON *notes = cJSON_AddArrayToObject(obj, "notes");
    for (size_t i = 0; i < r->n_notes; i++)
        cJSON_AddItemToArray(notes, cJSON_CreateString(r->notes[i]));
    cJSON *tm = cJSON_AddObjectToObject(obj, "timing");
    cJSON_AddNumberToObject(tm, "seconds", r->seconds);
    cJSON_AddNumberToObject(tm, "bytes_read", (double)r->bytes_read);
    cJSON_AddNumberToObject(tm, "bytes_model", (double)r->bytes_model);
}
