/*
 * names.h - canonical tensor names, layer indices, kinds and mergekit filter
 * classes.
 *
 * The canonical name of a tensor is its Hugging Face name
 * ("model.layers.3.self_attn.q_proj.weight"). GGUF names
 * ("blk.3.attn_q.weight", "token_embd.weight", ...) are mapped back per
 * architecture (llama, mistral, qwen2, qwen3, gemma2, gemma3, gemma4, phi3
 * and their close relatives); a name with no mapping keeps its GGUF name.
 */
#ifndef MERGESCOPE_NAMES_H
#define MERGESCOPE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum ms_kind {
    MS_KIND_EMBED, MS_KIND_OUTPUT, MS_KIND_NORM,
    MS_KIND_ATTN_Q, MS_KIND_ATTN_K, MS_KIND_ATTN_V, MS_KIND_ATTN_O,
    MS_KIND_FFN_GATE, MS_KIND_FFN_UP, MS_KIND_FFN_DOWN,
    MS_KIND_OTHER,
    /* fused projections (phi3): qkv_proj / GGUF attn_qkv, and gate_up_proj /
     * GGUF ffn_up holding gate and up stacked */
    MS_KIND_ATTN_QKV, MS_KIND_FFN_GATE_UP,
    MS_KIND_COUNT
} ms_kind;

/* mergekit's filter classes: a tensor matches "self_attn" or "mlp" when the
 * name contains that substring; everything else is "other". */
typedef enum ms_filter {
    MS_FILTER_SELF_ATTN, MS_FILTER_MLP, MS_FILTER_OTHER,
    MS_FILTER_COUNT
} ms_filter;

const char *ms_kind_name(ms_kind k);      /* "embed", "attn_q", "attn_qkv", ... */
const char *ms_filter_name(ms_filter f);  /* "self_attn", "mlp", "other" */

/*
 * Map a GGUF tensor name to its canonical HF name for the given
 * general.architecture. Writes a NUL-terminated name into out (cap bytes).
 * Returns true when a mapping was known; false leaves a copy of gguf_name.
 * Returns false with out = "" only when cap is too small.
 */
bool ms_names_from_gguf(const char *arch, const char *gguf_name, char *out, size_t cap);

/*
 * Classify a canonical name: layer index (-1 when the tensor belongs to no
 * layer), kind and filter class. Any of the out pointers may be NULL.
 */
void ms_names_classify(const char *name, int *layer, ms_kind *kind, ms_filter *filter);

/*
 * True when llama.cpp's converter permutes the rows of this tensor for this
 * architecture (Q and K projections of the llama family), and so the GGUF
 * rows must be put back into HF order.
 */
bool ms_names_gguf_permuted(const char *arch, ms_kind kind);

#endif
