/*
 * quant_plan.c - per-tensor quant plans for llama-quantize, and checking a
 * GGUF against a plan (quant.h).
 */
#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/names.h"
#include "mergescope/quant.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* ==== policy ==== */

static const char *const presets[][2] = {
    {"mixed", "base=iq3_s,embed=q5_k,output=q5_k,attn=iq4_nl,ffn=iq3_s,"
              "promote=iq4_nl,top=0.15,rank=mean_abs"},
    {"imatrix", "base=iq3_s,embed=q5_k,output=q5_k,attn=iq4_nl,ffn=iq3_s,"
                "promote=iq4_nl,top=0.15,rank=imatrix"},
};

static ms_status policy_type(const char *v, ms_dtype *out, const char *key, ms_error *err)
{
    ms_dtype t = ms_dtype_from_name(v);
    if (t == MS_DTYPE_INVALID || ms_dtype_get(t)->ggml_id < 0 || !ms_dtype_can_decode(t))
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "--plan: %s=%s is not a ggml type", key, v);
    *out = t;
    return MS_OK;
}

static ms_status policy_kv(ms_plan_policy *p, const char *key, const char *v, ms_error *err)
{
    struct { const char *key; ms_dtype *slot; } types[] = {
        {"base", &p->base}, {"embed", &p->embed}, {"output", &p->output},
        {"attn", &p->attn}, {"ffn", &p->ffn}, {"promote", &p->promote},
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(types); i++)
        if (!strcmp(key, types[i].key))
            return policy_type(v, types[i].slot, key, err);
    if (!strcmp(key, "top")) {
        char *end;
        p->top = strtod(v, &end);
        if (end == v || *end || !(p->top >= 0 && p->top <= 1))
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                "--plan: top must be a fraction in [0, 1], got '%s'", v);
        return MS_OK;
    }
    if (!strcmp(key, "rank")) {
        if (!strcmp(v, "mean_abs"))
            p->rank = MS_PLAN_RANK_MEAN_ABS;
        else if (!strcmp(v, "imatrix"))
            p->rank = MS_PLAN_RANK_IMATRIX;
        else
            return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                                "--plan: rank must be mean_abs or imatrix, got '%s'", v);
        return MS_OK;
    }
    return ms_error_set(err, MS_ERR_USAGE, NULL, -1, "--plan: unknown key '%s'", key);
}

ms_status ms_plan_policy_parse(const char *text, ms_plan_policy *p, ms_error *err)
{
    memset(p, 0, sizeof(*p));
    p->rank = MS_PLAN_RANK_MEAN_ABS;
    for (size_t i = 0; i < MS_ARRAY_SIZE(presets); i++)
        if (!strcmp(text, presets[i][0]))
            text = presets[i][1];
    char *copy = ms_strdup(text), *save = NULL;
    if (!copy)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    ms_status st = MS_OK;
    for (char *item = strtok_r(copy, ",", &save); item && !st; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) {
            st = ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                              "--plan: expected KEY=VALUE or a preset (mixed, imatrix), got '%s'",
                              item);
            break;
        }
        *eq = '\0';
        st = policy_kv(p, item, eq + 1, err);
    }
    free(copy);
    if (!st && p->base == MS_DTYPE_INVALID)
        st = ms_error_set(err, MS_ERR_USAGE, NULL, -1, "--plan: the policy needs base=TYPE");
    if (!st && p->top > 0 && p->promote == MS_DTYPE_INVALID)
        st = ms_error_set(err, MS_ERR_USAGE, NULL, -1, "--plan: top needs promote=TYPE");
    return st;
}

/* ==== llama-quantize's rules ==== */

/* The type llama-quantize falls back to when rows do not divide into
 * blocks (gguf-facts.md section 6). */
static ms_dtype shape_fallback(ms_dtype t, int64_t n_cols)
{
    uint32_t be = ms_dtype_get(t)->block_elems;
    if (!be || n_cols % be == 0)
        return t;
    ms_dtype f;
    switch (t) {
    case MS_DTYPE_IQ1_S: case MS_DTYPE_IQ1_M: case MS_DTYPE_IQ2_XXS:
    case MS_DTYPE_IQ2_XS: case MS_DTYPE_IQ2_S: case MS_DTYPE_IQ3_XXS:
    case MS_DTYPE_IQ3_S: case MS_DTYPE_IQ4_XS:
        f = MS_DTYPE_IQ4_NL; break;
    case MS_DTYPE_Q2_K: case MS_DTYPE_Q3_K: case MS_DTYPE_TQ1_0: case MS_DTYPE_TQ2_0:
        f = MS_DTYPE_Q4_0; break;
    case MS_DTYPE_Q4_K: f = MS_DTYPE_Q5_0; break;
    case MS_DTYPE_Q5_K: f = MS_DTYPE_Q5_1; break;
    case MS_DTYPE_Q6_K: f = MS_DTYPE_Q8_0; break;
    default: f = MS_DTYPE_F16; break;
    }
    return n_cols % ms_dtype_get(f)->block_elems ? MS_DTYPE_F16 : f;
}

/* llama-quantize converts 2-D (or more) weights other than norms. */
static bool is_quantized(const ms_tensor *t)
{
    return t->ndim >= 2 && t->kind != MS_KIND_NORM && ms_str_endswith(t->name, "weight") &&
           !strstr(t->source_name, "ffn_gate_inp");
}

static bool is_ffn(ms_kind k)
{
    return k == MS_KIND_FFN_GATE || k == MS_KIND_FFN_UP || k == MS_KIND_FFN_DOWN;
}

static bool is_attn(ms_kind k)
{
    return k == MS_KIND_ATTN_Q || k == MS_KIND_ATTN_K || k == MS_KIND_ATTN_V ||
           k == MS_KIND_ATTN_O;
}

/* llama.cpp's name of a tensor of a safetensors model: built from its kind
 * and layer, kept only when mapping it back gives the canonical name. */
static char *gguf_name_of(const ms_model *m, const ms_tensor *t)
{
    if (m->format == MS_FORMAT_GGUF)
        return ms_strdup(t->source_name);
    static const char *const base[MS_KIND_COUNT] = {
        [MS_KIND_EMBED] = "token_embd", [MS_KIND_OUTPUT] = "output",
        [MS_KIND_ATTN_Q] = "attn_q", [MS_KIND_ATTN_K] = "attn_k", [MS_KIND_ATTN_V] = "attn_v",
        [MS_KIND_ATTN_O] = "attn_output", [MS_KIND_FFN_GATE] = "ffn_gate",
        [MS_KIND_FFN_UP] = "ffn_up", [MS_KIND_FFN_DOWN] = "ffn_down",
    };
    const char *b = (unsigned)t->kind < MS_KIND_COUNT ? base[t->kind] : NULL;
    if (t->kind == MS_KIND_NORM)
        b = strstr(t->name, "input_layernorm") ? "attn_norm"
            : strstr(t->name, "post_attention_layernorm") ? "ffn_norm" : "output_norm";
    if (b) {
        char cand[128], back[256];
        if (t->layer >= 0)
            snprintf(cand, sizeof(cand), "blk.%d.%s.weight", t->layer, b);
        else
            snprintf(cand, sizeof(cand), "%s.weight", b);
        if (ms_names_from_gguf(m->architecture, cand, back, sizeof(back)) &&
            !strcmp(back, t->name))
            return ms_strdup(cand);
    }
    return ms_strdup(t->name);
}

/* ==== ranking ==== */

/* mean |w|, or sum_ij w_j r_ij^2 / n, of a tensor, read in row chunks. */
static ms_status tensor_score(const ms_model *m, const ms_tensor *t, const ms_plan_policy *p,
                              const ms_imatrix_entry *w, double *out, ms_error *err)
{
    int64_t rows = t->n_cols > 0 ? (1 << 20) / t->n_cols : 1;
    rows = rows < 1 ? 1 : rows > t->n_rows ? t->n_rows : rows;
    float *buf = ms_alloc_array((size_t)(rows * t->n_cols), sizeof(float));
    if (!buf)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    double s = 0;
    ms_status st = MS_OK;
    for (int64_t r0 = 0; r0 < t->n_rows && !st; r0 += rows) {
        int64_t nr = t->n_rows - r0 < rows ? t->n_rows - r0 : rows;
        if ((st = ms_model_read_rows(m, t, r0, nr, buf, err)))
            break;
        for (int64_t i = 0; i < nr; i++) {
            const float *x = buf + i * t->n_cols;
            int64_t per_mat = w ? t->n_rows / w->n_mat : 0;
            const float *wj = w ? w->w + (size_t)(per_mat ? (r0 + i) / per_mat : 0) * w->n_cols
                                : NULL;
            double rs = 0;
            for (int64_t j = 0; j < t->n_cols; j++)
                rs += p->rank == MS_PLAN_RANK_IMATRIX ? wj[j] * (double)x[j] * x[j]
                                                      : fabs((double)x[j]);
            s += rs;
        }
        ms_model_release_rows(m, t, r0, nr);
    }
    free(buf);
    *out = s / (double)t->n_elems;
    return st;
}

static int score_cmp(const void *a, const void *b)
{
    const ms_plan_entry *x = *(const ms_plan_entry *const *)a, *y = *(const ms_plan_entry *const *)b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Promote the top fraction of the FFN matrices by score. */
static ms_status promote_ffn(ms_plan *pl, const ms_model *m, const ms_imatrix *im,
                             ms_error *err)
{
    const ms_plan_policy *p = &pl->policy;
    ms_plan_entry **ffn = ms_alloc_array(pl->n_entries ? pl->n_entries : 1, sizeof(*ffn));
    if (!ffn)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    size_t n = 0;
    ms_status st = MS_OK;
    for (size_t i = 0; i < pl->n_entries && !st; i++) {
        ms_plan_entry *e = &pl->entries[i];
        if (!e->quantized || !is_ffn(e->kind))
            continue;
        const ms_tensor *t = ms_model_find(m, e->name);
        const ms_imatrix_entry *w = ms_quant_imatrix_entry(im, m, t);
        if (p->rank == MS_PLAN_RANK_IMATRIX && !w) {
            st = ms_error_set(err, MS_ERR_MISMATCH, im ? im->path : NULL, -1,
                              "the importance matrix has no entry for '%s'", e->gguf_name);
            break;
        }
        st = tensor_score(m, t, p, w, &e->score, err);
        ffn[n++] = e;
    }
    if (!st) {
        qsort(ffn, n, sizeof(*ffn), score_cmp);
        size_t k = (size_t)ceil(p->top * (double)n - 1e-9);
        for (size_t i = 0; i < k && i < n; i++) {
            ffn[i]->promoted = true;
            ffn[i]->type = p->promote;
        }
    }
    free(ffn);
    return st;
}

/* ==== making a plan ==== */

void ms_plan_free(ms_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_entries; i++) {
        free(p->entries[i].gguf_name);
        free(p->entries[i].name);
    }
    free(p->entries);
    free(p);
}

static ms_dtype role_type(const ms_plan_policy *p, ms_kind k)
{
    ms_dtype t = MS_DTYPE_INVALID;
    if (k == MS_KIND_EMBED)
        t = p->embed;
    else if (k == MS_KIND_OUTPUT)
        t = p->output;
    else if (is_attn(k))
        t = p->attn;
    else if (is_ffn(k))
        t = p->ffn;
    return t == MS_DTYPE_INVALID ? p->base : t;
}

ms_status ms_plan_make(const ms_model *src, const ms_plan_policy *p, const ms_imatrix *im,
                       const ms_stream_opts *opts, ms_plan **out, ms_error *err)
{
    (void)opts;
    *out = NULL;
    if (p->rank == MS_PLAN_RANK_IMATRIX && p->top > 0 && !im)
        return ms_error_set(err, MS_ERR_USAGE, NULL, -1,
                            "--plan with rank=imatrix needs --imatrix FILE");
    ms_status st;
    if (im && (st = ms_quant_imatrix_check(im, src, err)))
        return st;
    ms_plan *pl = calloc(1, sizeof(*pl));
    if (!pl || !(pl->entries = ms_zalloc_array(src->n_tensors ? src->n_tensors : 1,
                                               sizeof(*pl->entries)))) {
        free(pl);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    pl->policy = *p;
    st = MS_OK;
    for (size_t i = 0; i < src->n_tensors && !st; i++) {
        const ms_tensor *t = &src->tensors[i];
        ms_plan_entry *e = &pl->entries[pl->n_entries++];
        e->name = ms_strdup(t->name);
        e->gguf_name = gguf_name_of(src, t);
        e->kind = t->kind;
        e->layer = t->layer;
        e->quantized = is_quantized(t);
        e->type = e->quantized ? role_type(p, t->kind) : MS_DTYPE_F32;
        e->score = NAN;
        e->n_params = t->n_elems;
        if (!e->name || !e->gguf_name)
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    if (!st && p->top > 0)
        st = promote_ffn(pl, src, im, err);
    for (size_t i = 0; i < pl->n_entries && !st; i++) {
        ms_plan_entry *e = &pl->entries[i];
        e->type = shape_fallback(e->type, src->tensors[i].n_cols);
        if (!ms_dtype_nbytes(e->type, e->n_params, &e->bytes))
            st = ms_error_set(err, MS_ERR_UNSUPPORTED, NULL, -1, "cannot size '%s' as %s",
                              e->name, ms_dtype_name(e->type));
        pl->n_params += e->n_params;
        pl->bytes += e->bytes;
    }
    if (st) {
        ms_plan_free(pl);
        return st;
    }
    pl->bits_per_weight = pl->n_params ? pl->bytes * 8.0 / (double)pl->n_params : NAN;
    *out = pl;
    return MS_OK;
}

/* llama-quantize spells types in lower case ("q5_k", "iq4_nl"). */
static void lower_type(char *buf, size_t cap, ms_dtype t)
{
    snprintf(buf, cap, "%s", ms_dtype_name(t));
    for (char *c = buf; *c; c++)
        *c = (char)tolower((unsigned char)*c);
}

/* ^NAME$ with its dots escaped: llama-quantize searches the pattern in the
 * name, so without anchors "output\.weight" would also take
 * "blk.0.attn_output.weight". */
static bool add_pattern(ms_sb *sb, const char *name)
{
    bool ok = ms_sb_addc(sb, '^');
    for (const char *c = name; *c; c++)
        ok &= *c == '.' ? ms_sb_add(sb, "\\.") : ms_sb_addc(sb, *c);
    return ok && ms_sb_addc(sb, '$');
}

char *ms_plan_format_args(const ms_plan *p)
{
    ms_sb sb = MS_SB_INIT;
    char ty[32];
    bool ok = ms_sb_add(&sb, "");
    for (size_t i = 0; i < p->n_entries; i++) {
        const ms_plan_entry *e = &p->entries[i];
        if (!e->quantized)
            continue;
        lower_type(ty, sizeof(ty), e->type);
        if (!strcmp(e->gguf_name, "token_embd.weight"))
            ok &= ms_sb_addf(&sb, "--token-embedding-type %s\n", ty);
        else if (!strcmp(e->gguf_name, "output.weight"))
            ok &= ms_sb_addf(&sb, "--output-tensor-type %s\n", ty);
        else /* quoted for the shell, which would eat the backslashes */
            ok &= ms_sb_add(&sb, "--tensor-type '") && add_pattern(&sb, e->gguf_name) &&
                  ms_sb_addf(&sb, "=%s'\n", ty);
    }
    if (!ok) {
        ms_sb_free(&sb);
        return NULL;
    }
    return ms_sb_detach(&sb);
}

char *ms_plan_format_file(const ms_plan *p)
{
    ms_sb sb = MS_SB_INIT;
    char ty[32];
    bool ok = ms_sb_add(&sb, "");
    for (size_t i = 0; i < p->n_entries; i++) {
        const ms_plan_entry *e = &p->entries[i];
        if (!e->quantized)
            continue;
        lower_type(ty, sizeof(ty), e->type);
        ok &= add_pattern(&sb, e->gguf_name) && ms_sb_addf(&sb, "=%s\n", ty);
    }
    if (!ok) {
        ms_sb_free(&sb);
        return NULL;
    }
    return ms_sb_detach(&sb);
}

/* Types llama-quantize refuses to make without an importance matrix. */
static bool needs_imatrix(ms_dtype t)
{
    return t == MS_DTYPE_IQ2_XXS || t == MS_DTYPE_IQ2_XS || t == MS_DTYPE_IQ2_S ||
           t == MS_DTYPE_IQ1_S || t == MS_DTYPE_IQ1_M || t == MS_DTYPE_IQ3_XXS;
}

/* The llama-quantize FTYPE whose default type is t (the file type name
 * differs for the K-quants and IQ2_S). */
static const char *ftype_of(ms_dtype t)
{
    switch (t) {
    case MS_DTYPE_Q3_K: return "Q3_K_M";
    case MS_DTYPE_Q4_K: return "Q4_K_M";
    case MS_DTYPE_Q5_K: return "Q5_K_M";
    case MS_DTYPE_IQ2_S: return "IQ2_M";
    case MS_DTYPE_MXFP4: return "MXFP4_MOE";
    default: return ms_dtype_name(t);
    }
}

char *ms_plan_format_command(const ms_plan *p, bool has_imatrix)
{
    ms_sb sb = MS_SB_INIT;
    char ty[32];
    bool imx = has_imatrix;
    for (size_t i = 0; i < p->n_entries; i++)
        imx |= p->entries[i].quantized && needs_imatrix(p->entries[i].type);
    bool ok = ms_sb_add(&sb, "llama-quantize");
    if (imx)
        ok &= ms_sb_add(&sb, " --imatrix IMATRIX");
    for (size_t i = 0; i < p->n_entries; i++) {
        const ms_plan_entry *e = &p->entries[i];
        bool embed = !strcmp(e->gguf_name, "token_embd.weight");
        if (!e->quantized || (!embed && strcmp(e->gguf_name, "output.weight")))
            continue;
        lower_type(ty, sizeof(ty), e->type);
        ok &= ms_sb_addf(&sb, embed ? " --token-embedding-type %s" : " --output-tensor-type %s",
                         ty);
    }
    ok &= ms_sb_addf(&sb, " --tensor-type-file PLAN SRC.gguf OUT.gguf %s",
                     ftype_of(p->policy.base));
    if (!ok) {
        ms_sb_free(&sb);
        return NULL;
    }
    return ms_sb_detach(&sb);
}

/* ==== checking a GGUF against a plan ==== */

typedef struct plan_rule {
    regex_t re;
    ms_dtype type;
} plan_rule;

typedef struct plan_rules {
    plan_rule *r;
    size_t n;
    ms_dtype embed, output;
} plan_rules;

static void rules_free(plan_rules *pr)
{
    for (size_t i = 0; i < pr->n; i++)
        regfree(&pr->r[i].re);
    free(pr->r);
}

static ms_status rule_type(const char *v, ms_dtype *out, const char *path, int line,
                           ms_error *err)
{
    ms_dtype t = ms_dtype_from_name(v);
    if (t == MS_DTYPE_INVALID || ms_dtype_get(t)->ggml_id < 0)
        return ms_error_set_at(err, MS_ERR_FORMAT, path, line, 0, "unknown ggml type '%s'", v);
    *out = t;
    return MS_OK;
}

/*
 * llama-quantize lowercases the pattern and uses std::regex (ECMAScript);
 * POSIX extended syntax is the same for what plans use (., *, +, ?, |,
 * groups, classes) except the escapes \d, \w and \s, spelled out here.
 * Caller frees.
 */
static char *ecma_to_ere(const char *pat)
{
    ms_sb sb = MS_SB_INIT;
    bool ok = ms_sb_add(&sb, "");
    for (const char *c = pat; *c && ok; c++) {
        int ch = tolower((unsigned char)*c);
        if (ch == '\\' && c[1]) {
            const char *rep = c[1] == 'd' ? "[0-9]" : c[1] == 'w' ? "[a-z0-9_]"
                              : c[1] == 's' ? "[[:space:]]" : NULL;
            if (rep) {
                ok = ms_sb_add(&sb, rep);
                c++;
                continue;
            }
            ok = ms_sb_addc(&sb, '\\') && ms_sb_addc(&sb, (char)tolower((unsigned char)c[1]));
            c++;
            continue;
        }
        ok = ms_sb_addc(&sb, (char)ch);
    }
    if (!ok) {
        ms_sb_free(&sb);
        return NULL;
    }
    return ms_sb_detach(&sb);
}

/* NAME=TYPE: NAME lowercased, compiled as an extended regular expression. */
static ms_status add_rule(plan_rules *pr, char *tok, const char *path, int line, ms_error *err)
{
    char *eq = strrchr(tok, '=');
    if (!eq || eq == tok)
        return ms_error_set_at(err, MS_ERR_FORMAT, path, line, 0,
                               "expected NAME=TYPE, got '%s'", tok);
    *eq = '\0';
    ms_dtype t = MS_DTYPE_INVALID;
    ms_status st = rule_type(eq + 1, &t, path, line, err);
    if (st)
        return st;
    char *pat = ecma_to_ere(tok);
    plan_rule *nr = pat ? ms_realloc_array(pr->r, pr->n + 1, sizeof(*nr)) : NULL;
    if (!nr) {
        free(pat);
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    }
    pr->r = nr;
    int bad = regcomp(&nr[pr->n].re, pat, REG_EXTENDED | REG_NOSUB);
    free(pat);
    if (bad)
        return ms_error_set_at(err, MS_ERR_FORMAT, path, line, 0,
                               "bad tensor pattern '%s'", tok);
    nr[pr->n++].type = t;
    return MS_OK;
}

/* A token as the shell would pass it when wrapped in single quotes. */
static char *unquote(char *tok)
{
    size_t n = tok ? strlen(tok) : 0;
    if (n >= 2 && tok[0] == '\'' && tok[n - 1] == '\'') {
        tok[n - 1] = '\0';
        return tok + 1;
    }
    return tok;
}

/* One line of a plan: llama-quantize options or bare NAME=TYPE entries
 * (single-quoted or not; a quoted token holds no blanks here). */
static ms_status parse_line(plan_rules *pr, char *line, const char *path, int ln,
                            ms_error *err)
{
    char *save = NULL;
    ms_status st = MS_OK;
    for (char *tok = strtok_r(line, " \t\r", &save); tok && !st;
         tok = strtok_r(NULL, " \t\r", &save)) {
        if (tok[0] == '#')
            break;
        tok = unquote(tok);
        ms_dtype *slot = !strcmp(tok, "--token-embedding-type") ? &pr->embed
                         : !strcmp(tok, "--output-tensor-type") ? &pr->output : NULL;
        if (slot || !strcmp(tok, "--tensor-type")) {
            char *v = unquote(strtok_r(NULL, " \t\r", &save));
            if (!v)
                return ms_error_set_at(err, MS_ERR_FORMAT, path, ln, 0, "%s needs a value", tok);
            st = slot ? rule_type(v, slot, path, ln, err) : add_rule(pr, v, path, ln, err);
        } else if (tok[0] == '-') {
            continue; /* other llama-quantize options do not change types here */
        } else {
            st = add_rule(pr, tok, path, ln, err);
        }
    }
    return st;
}

static ms_status parse_rules(const char *text, const char *path, plan_rules *pr,
                             ms_error *err)
{
    memset(pr, 0, sizeof(*pr));
    char *copy = ms_strdup(text);
    if (!copy)
        return ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    ms_status st = MS_OK;
    int ln = 1;
    for (char *line = copy; line && !st; ln++) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        st = parse_line(pr, line, path, ln, err);
        line = nl ? nl + 1 : NULL;
    }
    free(copy);
    return st;
}

static ms_dtype expected_type(const plan_rules *pr, const ms_tensor *t)
{
    if (t->ndim < 2)
        return MS_DTYPE_INVALID;
    const char *g = t->source_name;
    if (!strcmp(g, "token_embd.weight") && pr->embed)
        return pr->embed;
    if (!strcmp(g, "output.weight") && pr->output)
        return pr->output;
    for (size_t i = 0; i < pr->n; i++)
        if (!regexec(&pr->r[i].re, g, 0, NULL, 0))
            return pr->r[i].type;
    return MS_DTYPE_INVALID;
}

void ms_plan_check_free(ms_plan_check *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_rows; i++)
        free(c->rows[i].gguf_name);
    free(c->rows);
    free(c);
}

ms_status ms_plan_check_run(const char *plan_text, const char *plan_path, const ms_model *m,
                            ms_plan_check **out, ms_error *err)
{
    *out = NULL;
    if (m->format != MS_FORMAT_GGUF)
        return ms_error_set(err, MS_ERR_USAGE, m->path, -1,
                            "--check-plan needs a GGUF model (the plan names GGUF tensors)");
    plan_rules pr;
    ms_status st = parse_rules(plan_text, plan_path, &pr, err);
    ms_plan_check *c = calloc(1, sizeof(*c));
    if (!st && (!c || !(c->rows = ms_zalloc_array(m->n_tensors ? m->n_tensors : 1,
                                                  sizeof(*c->rows)))))
        st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
    for (size_t i = 0; !st && i < m->n_tensors; i++) {
        const ms_tensor *t = &m->tensors[i];
        ms_plan_check_row *row = &c->rows[c->n_rows++];
        if (!(row->gguf_name = ms_strdup(t->source_name))) {
            st = ms_error_set(err, MS_ERR_NOMEM, NULL, -1, "out of memory");
            break;
        }
        row->found = t->dtype;
        row->expected = expected_type(&pr, t);
        if (row->expected != MS_DTYPE_INVALID)
            row->expected = shape_fallback(row->expected, t->n_cols);
        row->status = row->expected == MS_DTYPE_INVALID ? 2 : row->expected == t->dtype ? 0 : 1;
        c->n_follow += row->status == 0;
        c->n_depart += row->status == 1;
        c->n_uncovered += row->status == 2;
    }
    rules_free(&pr);
    if (st) {
        ms_plan_check_free(c);
        return st;
    }
    *out = c;
    return MS_OK;
}
