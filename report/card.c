/*
 * card.c - MODEL_CARD.md: a draft for the author, in the shape Hugging Face
 * expects (YAML front matter, then Markdown), stating only what the
 * results measured and leaving marked TODOs for what only the author
 * knows. Built on the same document model as the report, so every string
 * from a result is escaped the same way.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_int.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

#define CARD_MAX_MODELS 64

typedef struct card_in {
    const cJSON *recipe, *audit, *attr, *prov, *quant, *inspect, *compare;
} card_in;

/* ==== models ==== */

typedef struct model_list {
    const char *v[CARD_MAX_MODELS];
    size_t n;
} model_list;

static void ml_add(model_list *ml, const char *s)
{
    if (!s || !*s || ml->n >= CARD_MAX_MODELS)
        return;
    for (size_t i = 0; i < ml->n; i++)
        if (ms_rp_same_model(ml->v[i], s)) {
            /* keep the shorter form: the NAME rather than where it was found */
            if (strlen(s) < strlen(ml->v[i]))
                ml->v[i] = s;
            return;
        }
    ml->v[ml->n++] = s;
}

static const char *model_ref(const cJSON *e)
{
    if (cJSON_IsString(e))
        return e->valuestring;
    const char *m = ms_rp_str(e, "model");
    return m ? m : ms_rp_str(e, "name");
}

static const char *base_of(const card_in *ci)
{
    const char *b = ms_rp_str(ci->recipe, "base_model");
    if (!b)
        b = ms_rp_str(ci->audit, "base");
    return b ? b : ms_rp_str(ci->attr, "base");
}

static void collect_models(const card_in *ci, model_list *ml)
{
    const cJSON *e, *l;
    ml_add(ml, base_of(ci));
    cJSON_ArrayForEach(e, ms_rp_arr(ci->recipe, "models"))
        ml_add(ml, model_ref(e));
    cJSON_ArrayForEach(e, ms_rp_arr(ci->audit, "donors"))
        ml_add(ml, ms_rp_str(e, "name"));
    cJSON_ArrayForEach(e, ms_rp_arr(ci->attr, "donors"))
        ml_add(ml, ms_rp_str(e, "name"));
    cJSON_ArrayForEach(l, ms_rp_arr(ci->prov, "layers"))
        cJSON_ArrayForEach(e, ms_rp_arr(l, "sources"))
            ml_add(ml, ms_rp_str(e, "model"));
}

/* Looks like a Hugging Face repo id ("org/name"), as mergekit's card
 * generator decides what goes in base_model. */
static bool repo_id(const char *s)
{
    size_t slashes = 0;
    if (!*s || *s == '/' || *s == '.' || *s == '-')
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (c == '/')
            slashes++;
        else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.'))
            return false;
    }
    return slashes == 1 && s[strlen(s) - 1] != '/' && !strstr(s, "..") && strlen(s) <= 96;
}

/* ==== front matter ==== */

static bool front_matter(const card_in *ci, const model_list *ml, bool merge, ms_sb *o)
{
    bool ok = ms_sb_add(o, "---\n"), any = false;
    /* a quantization's base model is the checkpoint it was made from */
    model_list ref = {0};
    if (!merge) {
        ml_add(&ref, ms_rp_str(ci->quant, "reference"));
        ml = &ref;
    }
    for (size_t i = 0; i < ml->n && ok; i++) {
        if (!repo_id(ml->v[i]))
            continue;
        ok = (any || ms_sb_add(o, "base_model:\n")) && ms_sb_add(o, "- ") &&
             ms_esc_yaml(o, ml->v[i]) && ms_sb_addc(o, '\n');
        any = true;
    }
    if (ok && !any)
        ok = ms_sb_add(o, "# base_model: TODO (the Hugging Face repo id(s) this model "
                          "comes from)\n");
    if (merge) {
        ok = ok && ms_sb_add(o, "base_model_relation: merge\nlibrary_name: transformers\n");
    } else if (ci->quant) {
        ok = ok && ms_sb_add(o, "base_model_relation: quantized\nlibrary_name: gguf\n");
    }
    ok = ok && ms_sb_add(o, "tags:\n");
    if (merge)
        ok = ok && ms_sb_add(o, "- merge\n- mergekit\n");
    if (ci->quant)
        ok = ok && ms_sb_add(o, "- gguf\n- quantized\n");
    ok = ok && ms_sb_add(o, "- mergescope\n");
    return ok && ms_sb_add(o, "# license: TODO\n---\n\n");
}

/* ==== sections ==== */

static void todo(ms_rp_doc *d, const char *what)
{
    ms_rp_note(d);
    ms_rp_span(d, RP_OURS, "TODO (author): ");
    ms_rp_span(d, RP_OURS, what);
}

static const cJSON *find_named(const cJSON *arr, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *n = ms_rp_str(e, "name");
        if (ms_rp_same_model(n, name))
            return e;
    }
    return NULL;
}

static void card_method(ms_rp_doc *d, const card_in *ci)
{
    const char *method = ms_rp_str(ci->recipe, "merge_method");
    if (!method)
        method = ms_rp_str(ci->audit, "method");
    const char *base = base_of(ci), *words = ms_rp_method_words(method);
    ms_rp_h(d, 2, "What this merge is");
    ms_rp_p(d);
    if (!method) {
        ms_rp_span(d, RP_OURS, "The results do not name the merge method.");
    } else {
        ms_rp_span(d, RP_OURS, "Merged with mergekit's ");
        ms_rp_span(d, RP_CODE, method);
        ms_rp_span(d, RP_OURS, " method");
        if (words)
            ms_rp_spanf(d, " (%s): %s", ms_rp_method_name(method), words);
        ms_rp_span(d, RP_OURS, ".");
    }
    if (base) {
        ms_rp_span(d, RP_OURS, " Base model: ");
        ms_rp_span(d, RP_CODE, base);
        ms_rp_span(d, RP_OURS, ".");
    }
}

static void card_models(ms_rp_doc *d, const card_in *ci, const model_list *ml)
{
    static const char *const hdr[] = {"model", "role", "measured share (attribute)",
                                      "simulated share (audit)", "recipe weight"};
    const char *base = base_of(ci);
    char b1[32], b2[32];
    ms_rp_h(d, 2, "Models merged");
    ms_rp_table(d, ci->recipe ? 5 : 4, hdr);
    for (size_t i = 0; i < ml->n; i++) {
        bool is_base = ms_rp_same_model(base, ml->v[i]);
        const cJSON *a = find_named(ms_rp_arr(ci->attr, "donors"), ml->v[i]);
        const cJSON *s = find_named(ms_rp_arr(ci->audit, "donors"), ml->v[i]);
        ms_rp_cell(d, RP_CODE, ml->v[i]);
        ms_rp_cell(d, RP_OURS, is_base ? "base" : "donor");
        ms_rp_cell(d, RP_OURS, a ? ms_rp_pct(b1, sizeof(b1), a, "share") : "n/a");
        ms_rp_cell(d, RP_OURS, s ? ms_rp_pct(b2, sizeof(b2), s, "share") : "n/a");
        if (ci->recipe)
            ms_rp_cell_param(d, ci->recipe, ml->v[i], "weight");
        ms_rp_row(d);
    }
    ms_rp_p(d);
    if (ci->recipe)
        ms_rp_span(d, RP_OURS, "The recipe weight is the one configured (a range when it "
                               "varies over layers); a share is what came out. ");
    ms_rp_span(d, RP_OURS, "A donor's share is its part of the merged delta (merged minus base): "
                        "the sum over tensors of (donor's contribution . merged delta) divided "
                        "by the sum of (merged delta . merged delta).");
    if (ci->attr) {
        double r;
        if (ms_rp_num(ci->attr, "residual_share", &r))
            ms_rp_spanf(d, " The measured shares leave a residual of %.1f%% that no donor "
                        "explains.", r * 100.0);
        ms_rp_span(d, RP_OURS, " Measured shares come from a least-squares fit of the finished "
                            "merge on the donors (mergescope attribute).");
    }
    if (ci->audit)
        ms_rp_span(d, RP_OURS, " Simulated shares come from replaying the recipe on the donors "
                            "(mergescope audit).");
}

static void card_config(ms_rp_doc *d, const card_in *ci)
{
    const char *text = ms_rp_recipe_text(ci->recipe);
    ms_rp_h(d, 2, "Configuration");
    if (text) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "The mergekit configuration:");
        ms_rp_code(d, "yaml", text);
        return;
    }
    ms_sb y = MS_SB_INIT;
    if (ci->recipe && ms_rp_recipe_yaml(ci->recipe, &y) && y.len) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Rebuilt from the resolved values of mergescope recipe explain "
                            "(defaults written out), not the author's file:");
        ms_rp_code(d, "yaml", ms_sb_str(&y));
        ms_sb_free(&y);
        return;
    }
    ms_sb_free(&y);
    text = ms_rp_str(ci->prov, "recipe");
    if (text) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Slice recipe recovered from the weights by mergescope provenance "
                            "(not the author's file):");
        ms_rp_code(d, "yaml", text);
        return;
    }
    todo(d, "paste the mergekit YAML configuration used to produce this model.");
}

static void card_audit(ms_rp_doc *d, const card_in *ci)
{
    static const char *const hdr[] = {"donor", "share", "rel. norm", "sparsity",
                                      "fingerprints"};
    static const char *const phdr[] = {"donor A", "donor B", "cosine", "sign conflict"};
    const cJSON *e, *f;
    char b[32];
    ms_rp_h(d, 2, "Donor audit");
    ms_rp_table(d, 5, hdr);
    cJSON_ArrayForEach(e, ms_rp_arr(ci->audit, "donors")) {
        const char *n = ms_rp_str(e, "name");
        ms_sb fp = MS_SB_INIT;
        if (cJSON_IsTrue(ms_rp_get(e, "is_base")))
            continue;
        ms_rp_cell(d, RP_CODE, n ? n : "n/a");
        ms_rp_cell(d, RP_OURS, ms_rp_pct(b, sizeof(b), e, "share"));
        ms_rp_cell(d, RP_OURS, ms_rp_fmt(b, sizeof(b), e, "rel_norm", 4));
        ms_rp_cell(d, RP_OURS, ms_rp_pct(b, sizeof(b), e, "sparsity"));
        cJSON_ArrayForEach(f, ms_rp_arr(e, "fingerprints")) {
            const char *k = ms_rp_str(f, "kind");
            if (k && fp.len < 300 && (!fp.len || ms_sb_add(&fp, ", ")))
                ms_sb_add(&fp, k);
        }
        ms_rp_cell(d, RP_TEXT, fp.len ? ms_sb_str(&fp) : "none");
        ms_sb_free(&fp);
        ms_rp_row(d);
    }
    if (!cJSON_GetArraySize(ms_rp_arr(ci->audit, "pairs")))
        return;
    ms_rp_table(d, 4, phdr);
    cJSON_ArrayForEach(e, ms_rp_arr(ci->audit, "pairs")) {
        const char *a = ms_rp_str(e, "a"), *bb = ms_rp_str(e, "b");
        ms_rp_cell(d, RP_CODE, a ? a : "n/a");
        ms_rp_cell(d, RP_CODE, bb ? bb : "n/a");
        ms_rp_cell(d, RP_OURS, ms_rp_fmt(b, sizeof(b), e, "cosine", 4));
        ms_rp_cell(d, RP_OURS, ms_rp_pct(b, sizeof(b), e, "sign_conflict"));
        ms_rp_row(d);
    }
}

/* Runs of layers where the same donor has the largest share. */
static void findings_dominant(ms_rp_doc *d, const cJSON *layers, const char *source)
{
    const cJSON *l, *s;
    const char *run_name = NULL;
    double run_first = 0, run_last = 0, run_sum = 0;
    int run_n = 0, runs = 0;
    for (l = layers ? layers->child : NULL;; l = l->next) {
        const char *best = NULL;
        double bv = -INFINITY, li = 0;
        if (l) {
            if (!ms_rp_num(l, "layer", &li))
                continue;
            cJSON_ArrayForEach(s, ms_rp_obj(l, "shares"))
                if (cJSON_IsNumber(s) && isfinite(s->valuedouble) && s->valuedouble > bv) {
                    bv = s->valuedouble;
                    best = s->string;
                }
            if (!best)
                continue;
        }
        if (run_name && (!l || strcmp(best, run_name) || li != run_last + 1)) {
            if (runs++ < 12) {
                ms_rp_li(d);
                if (run_first == run_last)
                    ms_rp_spanf(d, "layer %.0f: ", run_first);
                else
                    ms_rp_spanf(d, "layers %.0f to %.0f: ", run_first, run_last);
                ms_rp_span(d, RP_CODE, run_name);
                ms_rp_spanf(d, " has the largest %s share (mean %.1f%%)", source,
                         run_sum / run_n * 100.0);
            }
            run_name = NULL;
        }
        if (!l)
            break;
        if (!run_name) {
            run_name = best;
            run_first = li;
            run_sum = 0;
            run_n = 0;
        }
        run_last = li;
        run_sum += bv;
        run_n++;
    }
    if (runs > 12) {
        ms_rp_li(d);
        ms_rp_spanf(d, "... %d more runs; see the report", runs - 12);
    }
}

static void findings_compare(ms_rp_doc *d, const cJSON *cmp)
{
    const cJSON *p, *l, *e;
    int shown = 0, total = 0;
    cJSON_ArrayForEach(p, ms_rp_arr(cmp, "pairs")) {
        const char *a = ms_rp_str(p, "a"), *b = ms_rp_str(p, "b");
        double lo = INFINITY, hi = -INFINITY, llo = 0, lhi = 0, li, v;
        if (!a || !b || total++ >= 6)
            continue;
        cJSON_ArrayForEach(l, ms_rp_arr(cmp, "layers")) {
            if (!ms_rp_num(l, "layer", &li))
                continue;
            cJSON_ArrayForEach(e, ms_rp_arr(l, "pairs")) {
                const char *ea = ms_rp_str(e, "a"), *eb = ms_rp_str(e, "b");
                if (!ea || !eb || strcmp(ea, a) || strcmp(eb, b) || !ms_rp_num(e, "cosine", &v))
                    continue;
                if (v < lo)
                    lo = v, llo = li;
                if (v > hi)
                    hi = v, lhi = li;
            }
        }
        if (!isfinite(lo))
            continue;
        shown++;
        ms_rp_li(d);
        ms_rp_span(d, RP_CODE, a);
        ms_rp_span(d, RP_OURS, " vs ");
        ms_rp_span(d, RP_CODE, b);
        ms_rp_spanf(d, ": cosine lowest at layer %.0f (%.6f), highest at layer %.0f (%.6f)", llo,
                 lo, lhi, hi);
    }
    if (total > 6 && shown) {
        ms_rp_li(d);
        ms_rp_spanf(d, "... %d more pairs in the report", total - 6);
    }
}

static void findings_provenance(ms_rp_doc *d, const cJSON *prov)
{
    const cJSON *l;
    const char *rm = NULL;
    double m0 = 0, m1 = 0, s0 = 0, s1 = 0;
    int runs = 0;
    for (l = ms_rp_arr(prov, "layers") ? ms_rp_arr(prov, "layers")->child : NULL;; l = l->next) {
        const cJSON *top = NULL, *s;
        double best = -INFINITY, ml = 0, sl = 0, w;
        if (l) {
            cJSON_ArrayForEach(s, ms_rp_arr(l, "sources")) {
                double x = ms_rp_num(s, "weight", &w) ? w : 0;
                if (!top || x > best) {
                    top = s;
                    best = x;
                }
            }
            if (!top || !ms_rp_str(top, "model") || !ms_rp_num(l, "layer", &ml) ||
                !ms_rp_num(top, "layer", &sl))
                continue;
        }
        const char *m = l ? ms_rp_str(top, "model") : NULL;
        if (rm && (!l || strcmp(m, rm) || ml != m1 + 1 || sl != s1 + 1)) {
            if (runs++ < 16) {
                const char *merged = ms_rp_str(prov, "merged");
                ms_rp_li(d);
                if (merged) {
                    ms_rp_span(d, RP_OURS, "in ");
                    ms_rp_span(d, RP_CODE, merged);
                    ms_rp_span(d, RP_OURS, ", ");
                }
                ms_rp_spanf(d, "merged layers %.0f to %.0f come from ", m0, m1);
                ms_rp_span(d, RP_CODE, rm);
                ms_rp_spanf(d, " layers %.0f to %.0f", s0, s1);
            }
            rm = NULL;
        }
        if (!l)
            break;
        if (!rm) {
            rm = m;
            m0 = ml;
            s0 = sl;
        }
        m1 = ml;
        s1 = sl;
    }
}

/* Each donor fingerprint the audit found, one line each. */
static void findings_fingerprints(ms_rp_doc *d, const cJSON *audit)
{
    const cJSON *e, *f;
    cJSON_ArrayForEach(e, ms_rp_arr(audit, "donors")) {
        const char *n = ms_rp_str(e, "name");
        cJSON_ArrayForEach(f, ms_rp_arr(e, "fingerprints")) {
            const char *k = ms_rp_str(f, "kind");
            if (!n || !k)
                continue;
            ms_rp_li(d);
            ms_rp_span(d, RP_CODE, n);
            ms_rp_span(d, RP_OURS, ": fingerprint ");
            ms_rp_span(d, RP_BOLD, k);
            ms_rp_spanf(d, " on %d tensors (mergescope audit)",
                        cJSON_GetArraySize(ms_rp_arr(f, "tensors")));
        }
    }
}

static void card_findings(ms_rp_doc *d, const card_in *ci, bool in_card)
{
    if (!ci->attr && !ci->audit && !ci->compare && !ci->prov)
        return;
    ms_rp_h(d, 2, in_card ? "Layer-wise findings" : "Findings");
    if (ci->attr)
        findings_dominant(d, ms_rp_arr(ci->attr, "layers"), "measured");
    else if (ci->audit)
        findings_dominant(d, ms_rp_arr(ci->audit, "layers"), "simulated");
    if (ci->audit)
        findings_fingerprints(d, ci->audit);
    if (ci->prov)
        findings_provenance(d, ci->prov);
    if (ci->compare)
        findings_compare(d, ci->compare);
    ms_rp_p(d);
    ms_rp_span(d, RP_OURS, in_card ? "Plots of all per-layer figures are in the mergescope "
                                     "report."
                                   : "Details and plots follow, one section per result.");
}

static void card_inputs(const ms_report *r, card_in *ci)
{
    const ms_rp_input *in;
    memset(ci, 0, sizeof(*ci));
    /* a recipe explain result (a recipe check one describes no merge) */
    ci->recipe = ms_rp_explain(r);
    if ((in = ms_rp_first(r, MS_RK_AUDIT))) ci->audit = in->root;
    if ((in = ms_rp_first(r, MS_RK_ATTRIBUTE))) ci->attr = in->root;
    if ((in = ms_rp_first(r, MS_RK_PROVENANCE))) ci->prov = in->root;
    if ((in = ms_rp_first(r, MS_RK_QUANT))) ci->quant = in->root;
    if ((in = ms_rp_first(r, MS_RK_INSPECT))) ci->inspect = in->root;
    if ((in = ms_rp_first(r, MS_RK_COMPARE))) ci->compare = in->root;
}

void ms_rp_findings(ms_rp_doc *d, const ms_report *r)
{
    card_in ci;
    card_inputs(r, &ci);
    card_findings(d, &ci, false);
}

static void card_quant(ms_rp_doc *d, const cJSON *q)
{
    ms_sb mix = MS_SB_INIT;
    const cJSON *t, *worst = NULL, *wl = NULL;
    double v, wv = -INFINITY, wlv = -INFINITY;
    ms_rp_h(d, 2, "Quantization");
    ms_rp_li(d);
    if (ms_rp_num(q, "bits_per_weight", &v))
        ms_rp_spanf(d, "bits per weight: %.3f", v);
    else
        ms_rp_span(d, RP_OURS, "bits per weight: n/a");
    if (ms_rp_type_mix(ms_rp_arr(q, "types"), &mix, false) && mix.len) {
        ms_rp_li(d);
        ms_rp_span(d, RP_OURS, "type mix (share of weights): ");
        ms_rp_span(d, RP_TEXT, ms_sb_str(&mix));
    }
    ms_sb_free(&mix);
    const cJSON *ov = ms_rp_obj(q, "overall");
    if (ms_rp_num(ov, "rel_rmse", &v)) {
        ms_rp_li(d);
        ms_rp_spanf(d, "overall relative RMSE against the reference: %.5f", v);
        if (ms_rp_num(ov, "snr_db", &v))
            ms_rp_spanf(d, " (SNR %.2f dB)", v);
    }
    cJSON_ArrayForEach(t, ms_rp_arr(q, "types")) {
        const char *n = ms_rp_str(t, "type");
        if (!n || !ms_rp_num(t, "rel_rmse", &v))
            continue;
        ms_rp_li(d);
        ms_rp_span(d, RP_CODE, n);
        ms_rp_spanf(d, ": relative RMSE %.5f", v);
    }
    cJSON_ArrayForEach(t, ms_rp_arr(q, "tensors"))
        if (ms_rp_num(t, "rel_rmse", &v) && v > wv && ms_rp_str(t, "name"))
            wv = v, worst = t;
    cJSON_ArrayForEach(t, ms_rp_arr(q, "layers")) {
        double e, li;
        if (ms_rp_num(t, "rel_rmse", &e) && ms_rp_num(t, "layer", &li) && e > wlv) {
            wlv = e;
            wl = t;
        }
    }
    if (worst) {
        ms_rp_li(d);
        ms_rp_span(d, RP_OURS, "largest tensor error: ");
        ms_rp_span(d, RP_CODE, ms_rp_str(worst, "name"));
        ms_rp_spanf(d, " (relative RMSE %.5f)", wv);
    }
    if (wl && ms_rp_num(wl, "layer", &v)) {
        ms_rp_li(d);
        ms_rp_spanf(d, "largest layer error: layer %.0f (relative RMSE %.5f)", v, wlv);
    }
}

bool ms_rp_card_build(const ms_report *r, ms_sb *out)
{
    card_in ci;
    model_list ml = {0};
    card_inputs(r, &ci);
    bool merge = ci.recipe || ci.audit || ci.attr || ci.prov;
    collect_models(&ci, &ml);
    ms_rp_doc *d = ms_rp_doc_new();
    if (!d)
        return false;
    ms_rp_h(d, 1, "TODO: model name");
    ms_rp_note(d);
    ms_rp_span(d, RP_OURS, "Draft written by mergescope report from measured results. Every "
                        "number below comes from the mergescope JSON results it was given; "
                        "the TODO places need the author.");
    const char *merged = ms_rp_str(ci.attr, "merged");
    if (merged) {
        ms_rp_p(d);
        ms_rp_span(d, RP_OURS, "Checkpoint measured: ");
        ms_rp_span(d, RP_CODE, merged);
        ms_rp_span(d, RP_OURS, ".");
    }
    if (merge) {
        card_method(d, &ci);
        card_models(d, &ci, &ml);
        card_config(d, &ci);
    }
    if (ci.audit)
        card_audit(d, &ci);
    card_findings(d, &ci, true);
    if (ci.quant)
        card_quant(d, ci.quant);
    ms_rp_h(d, 2, "Intended use");
    todo(d, "what this model is for, and what it is not for.");
    ms_rp_h(d, 2, "Evaluation");
    todo(d, "benchmarks and how they were run; mergescope measures weights, not behaviour.");
    ms_rp_h(d, 2, "License");
    todo(d, "the license, compatible with every merged model's license.");
    bool ok = front_matter(&ci, &ml, merge, out) && ms_rp_render_md(d, out);
    ms_rp_doc_free(d);
    return ok;
}
