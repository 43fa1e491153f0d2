/*
 * names.c - canonical (Hugging Face) tensor names, GGUF name mapping, layer
 * index, kind and mergekit filter class.
 *
 * llama.cpp names every architecture's tensors from one vocabulary
 * ("blk.N.attn_q", "ffn_norm", ...); only the HF side differs per family,
 * so the map is one table with a few family switches (gemma2+ sandwich
 * norms, phi3's fused projections).
 */
#include <stdio.h>
#include <string.h>

#include "mergescope/names.h"
#include "mergescope/banned.h"

/* ==== architectures ==== */

enum {
    FAM_KNOWN = 1u << 0,   /* we know its HF names */
    FAM_PERMUTE = 1u << 1, /* convert_hf_to_gguf permutes Q/K rows */
    FAM_SANDWICH = 1u << 2,/* gemma2+: pre/post attention and ffn norms */
    FAM_FUSED = 1u << 3    /* phi3: attn_qkv and ffn_up = gate_up_proj */
};

typedef struct arch_info {
    const char *name;
    unsigned flags;
} arch_info;

/*
 * Llama's converter (LlamaModel.modify_tensors, undo_permute) permutes Q and
 * K for llama itself, HF-format Mistral/Mixtral (written as "llama"),
 * Granite and LLaDA; DeciLM permutes the same way. NEOX-rope families
 * (qwen, gemma, phi3) never do.
 */
static const arch_info ARCHS[] = {
    {"llama", FAM_KNOWN | FAM_PERMUTE},
    {"mistral", FAM_KNOWN | FAM_PERMUTE},
    {"granite", FAM_KNOWN | FAM_PERMUTE},
    {"granitemoe", FAM_KNOWN | FAM_PERMUTE},
    {"llada", FAM_KNOWN | FAM_PERMUTE},
    {"deci", FAM_KNOWN | FAM_PERMUTE},
    {"qwen2", FAM_KNOWN},
    {"qwen3", FAM_KNOWN},
    {"gemma", FAM_KNOWN},
    {"gemma2", FAM_KNOWN | FAM_SANDWICH},
    {"gemma3", FAM_KNOWN | FAM_SANDWICH},
    {"gemma4", FAM_KNOWN | FAM_SANDWICH},
    {"phi3", FAM_KNOWN | FAM_FUSED},
};

static unsigned arch_flags(const char *arch)
{
    if (!arch)
        return 0;
    for (size_t i = 0; i < sizeof(ARCHS) / sizeof(ARCHS[0]); i++)
        if (strcmp(ARCHS[i].name, arch) == 0)
            return ARCHS[i].flags;
    return 0;
}

/* ==== kinds and filters ==== */

static const char *const KIND_NAMES[MS_KIND_COUNT] = {
    [MS_KIND_EMBED] = "embed", [MS_KIND_OUTPUT] = "output",
    [MS_KIND_NORM] = "norm", [MS_KIND_ATTN_Q] = "attn_q",
    [MS_KIND_ATTN_K] = "attn_k", [MS_KIND_ATTN_V] = "attn_v",
    [MS_KIND_ATTN_O] = "attn_o", [MS_KIND_FFN_GATE] = "ffn_gate",
    [MS_KIND_FFN_UP] = "ffn_up", [MS_KIND_FFN_DOWN] = "ffn_down",
    [MS_KIND_OTHER] = "other", [MS_KIND_ATTN_QKV] = "attn_qkv",
    [MS_KIND_FFN_GATE_UP] = "ffn_gate_up",
};

const char *ms_kind_name(ms_kind k)
{
    if ((unsigned)k >= MS_KIND_COUNT)
        return "other";
    return KIND_NAMES[k];
}

const char *ms_filter_name(ms_filter f)
{
    switch (f) {
    case MS_FILTER_SELF_ATTN: return "self_attn";
    case MS_FILTER_MLP: return "mlp";
    default: return "other";
    }
}

/* ==== GGUF -> HF ==== */

typedef struct name_map {
    const char *gguf;
    const char *hf;
} name_map;

static const name_map GLOBAL_MAP[] = {
    {"token_embd", "model.embed_tokens"},
    {"output", "lm_head"},
    {"output_norm", "model.norm"},
};

/* Per-layer module names shared by every known family. */
static const name_map LAYER_MAP[] = {
    {"attn_norm", "input_layernorm"},
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"attn_qkv", "self_attn.qkv_proj"},
    {"attn_q_norm", "self_attn.q_norm"},
    {"attn_k_norm", "self_attn.k_norm"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_down", "mlp.down_proj"},
};

static const char *layer_module(unsigned fl, const char *mod)
{
    for (size_t i = 0; i < sizeof(LAYER_MAP) / sizeof(LAYER_MAP[0]); i++)
        if (strcmp(LAYER_MAP[i].gguf, mod) == 0)
            return LAYER_MAP[i].hf;
    if (strcmp(mod, "ffn_up") == 0)
        return (fl & FAM_FUSED) ? "mlp.gate_up_proj" : "mlp.up_proj";
    if (strcmp(mod, "ffn_norm") == 0)
        return (fl & FAM_SANDWICH) ? "pre_feedforward_layernorm"
                                   : "post_attention_layernorm";
    if (fl & FAM_SANDWICH) {
        if (strcmp(mod, "post_attention_norm") == 0)
            return "post_attention_layernorm";
        if (strcmp(mod, "post_ffw_norm") == 0)
            return "post_feedforward_layernorm";
    }
    return NULL;
}

static bool copy_name(const char *src, char *out, size_t cap)
{
    size_t n = strlen(src);
    if (n + 1 > cap) {
        if (cap)
            out[0] = '\0';
        return false;
    }
    memcpy(out, src, n + 1);
    return true;
}

/* No mapping: out keeps the GGUF name; false either way. */
static bool keep_name(const char *src, char *out, size_t cap)
{
    copy_name(src, out, cap);
    return false;
}

/* "blk.N.rest": the layer (decimal, at most 6 digits) and rest, else -1. */
static int parse_blk(const char *name, const char **rest)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    const char *p = name + 4;
    int layer = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 7) {
        layer = layer * 10 + (*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 6 || *p != '.')
        return -1;
    *rest = p + 1;
    return layer;
}

/* Split "module.suffix" at the first dot: module copied to mod (cap). */
static const char *split_module(const char *s, char *mod, size_t cap)
{
    const char *dot = strchr(s, '.');
    size_t n = dot ? (size_t)(dot - s) : strlen(s);
    if (n + 1 > cap)
        return NULL;
    memcpy(mod, s, n);
    mod[n] = '\0';
    return dot ? dot : s + n;
}

bool ms_names_from_gguf(const char *arch, const char *gguf_name, char *out,
                        size_t cap)
{
    unsigned fl = arch_flags(arch);
    char mod[64];
    const char *rest;
    if (!(fl & FAM_KNOWN))
        return keep_name(gguf_name, out, cap);
    int layer = parse_blk(gguf_name, &rest);
    const char *src = layer >= 0 ? rest : gguf_name;
    const char *suffix = split_module(src, mod, sizeof(mod));
    if (!suffix)
        return keep_name(gguf_name, out, cap);
    if (layer < 0) {
        for (size_t i = 0; i < sizeof(GLOBAL_MAP) / sizeof(GLOBAL_MAP[0]); i++) {
            if (strcmp(GLOBAL_MAP[i].gguf, mod) != 0)
                continue;
            int n = snprintf(out, cap, "%s%s", GLOBAL_MAP[i].hf, suffix);
            if (n < 0 || (size_t)n >= cap) {
                if (cap)
                    out[0] = '\0';
                return false;
            }
            return true;
        }
        return keep_name(gguf_name, out, cap);
    }
    const char *hf = layer_module(fl, mod);
    if (!hf)
        return keep_name(gguf_name, out, cap);
    int n = snprintf(out, cap, "model.layers.%d.%s%s", layer, hf, suffix);
    if (n < 0 || (size_t)n >= cap) {
        if (cap)
            out[0] = '\0';
        return false;
    }
    return true;
}

bool ms_names_gguf_permuted(const char *arch, ms_kind kind)
{
    if (kind != MS_KIND_ATTN_Q && kind != MS_KIND_ATTN_K)
        return false;
    return (arch_flags(arch) & FAM_PERMUTE) != 0;
}

/* ==== classification ==== */

typedef struct kind_map {
    const char *module;
    ms_kind kind;
} kind_map;

/* Module names (the component before .weight/.bias), HF and GGUF. */
static const kind_map KIND_MAP[] = {
    {"embed_tokens", MS_KIND_EMBED}, {"token_embd", MS_KIND_EMBED},
    {"wte", MS_KIND_EMBED}, {"tok_embeddings", MS_KIND_EMBED},
    {"lm_head", MS_KIND_OUTPUT}, {"output", MS_KIND_OUTPUT},
    {"q_proj", MS_KIND_ATTN_Q}, {"attn_q", MS_KIND_ATTN_Q},
    {"k_proj", MS_KIND_ATTN_K}, {"attn_k", MS_KIND_ATTN_K},
    {"v_proj", MS_KIND_ATTN_V}, {"attn_v", MS_KIND_ATTN_V},
    {"o_proj", MS_KIND_ATTN_O}, {"attn_output", MS_KIND_ATTN_O},
    {"qkv_proj", MS_KIND_ATTN_QKV}, {"attn_qkv", MS_KIND_ATTN_QKV},
    {"gate_proj", MS_KIND_FFN_GATE}, {"ffn_gate", MS_KIND_FFN_GATE},
    {"up_proj", MS_KIND_FFN_UP}, {"ffn_up", MS_KIND_FFN_UP},
    {"gate_up_proj", MS_KIND_FFN_GATE_UP},
    {"down_proj", MS_KIND_FFN_DOWN}, {"ffn_down", MS_KIND_FFN_DOWN},
};

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* The first "layers.N" / "blk.N" / "h.N" component pair, else -1. */
static int find_layer(const char *name)
{
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        if (!dot)
            break;
        size_t n = (size_t)(dot - p);
        bool marker = (n == 6 && memcmp(p, "layers", 6) == 0)
                   || (n == 3 && memcmp(p, "blk", 3) == 0)
                   || (n == 1 && p[0] == 'h');
        const char *q = dot + 1;
        const char *end = strchr(q, '.');
        size_t m = end ? (size_t)(end - q) : strlen(q);
        if (marker && m <= 6 && all_digits(q, m)) {
            int layer = 0;
            for (size_t i = 0; i < m; i++)
                layer = layer * 10 + (q[i] - '0');
            return layer;
        }
        p = dot + 1;
    }
    return -1;
}

/* The module component: the last one, or the one before weight/bias. */
static void module_of(const char *name, char *mod, size_t cap)
{
    const char *last = strrchr(name, '.');
    const char *start, *end = name + strlen(name);
    if (last && (strcmp(last, ".weight") == 0 || strcmp(last, ".bias") == 0)) {
        end = last;
        start = end;
        while (start > name && start[-1] != '.')
            start--;
    } else {
        start = last ? last + 1 : name;
    }
    size_t n = (size_t)(end - start);
    if (n + 1 > cap)
        n = cap - 1;
    memcpy(mod, start, n);
    mod[n] = '\0';
}

static ms_kind kind_of(const char *name)
{
    char mod[128];
    module_of(name, mod, sizeof(mod));
    for (size_t i = 0; i < sizeof(KIND_MAP) / sizeof(KIND_MAP[0]); i++)
        if (strcmp(KIND_MAP[i].module, mod) == 0)
            return KIND_MAP[i].kind;
    if (strstr(mod, "norm") || strncmp(mod, "ln_", 3) == 0)
        return MS_KIND_NORM;
    return MS_KIND_OTHER;
}

void ms_names_classify(const char *name, int *layer, ms_kind *kind,
                       ms_filter *filter)
{
    if (layer)
        *layer = find_layer(name);
    if (kind)
        *kind = kind_of(name);
    if (filter) {
        /* mergekit: a filter applies when it is a substring of the name */
        if (strstr(name, "self_attn"))
            *filter = MS_FILTER_SELF_ATTN;
        else if (strstr(name, "mlp"))
            *filter = MS_FILTER_MLP;
        else
            *filter = MS_FILTER_OTHER;
    }
}
