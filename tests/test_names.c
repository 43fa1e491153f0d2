/* test_names.c - canonical names, GGUF mapping, kinds, filters, permutation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "mergescope/names.h"
#include "mergescope/banned.h"

static void expect_map(const char *arch, const char *gguf, const char *hf)
{
    char out[256];
    bool known = ms_names_from_gguf(arch, gguf, out, sizeof(out));
    cr_expect(known, "%s: %s should map", arch, gguf);
    cr_expect_str_eq(out, hf, "%s: %s", arch, gguf);
}

static void expect_keep(const char *arch, const char *gguf)
{
    char out[256];
    cr_expect_not(ms_names_from_gguf(arch, gguf, out, sizeof(out)),
                  "%s: %s should not map", arch, gguf);
    cr_expect_str_eq(out, gguf);
}

Test(names, llama_family_map)
{
    const char *archs[] = {"llama", "mistral", "qwen2", "qwen3", "phi3",
                           "gemma2", "gemma3"};
    for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++) {
        const char *a = archs[i];
        expect_map(a, "token_embd.weight", "model.embed_tokens.weight");
        expect_map(a, "output.weight", "lm_head.weight");
        expect_map(a, "output_norm.weight", "model.norm.weight");
        expect_map(a, "blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight");
        expect_map(a, "blk.12.attn_output.weight", "model.layers.12.self_attn.o_proj.weight");
        expect_map(a, "blk.3.ffn_down.weight", "model.layers.3.mlp.down_proj.weight");
        expect_map(a, "blk.3.ffn_gate.weight", "model.layers.3.mlp.gate_proj.weight");
    }
    expect_map("llama", "blk.7.attn_q.weight", "model.layers.7.self_attn.q_proj.weight");
    expect_map("llama", "blk.7.attn_k.weight", "model.layers.7.self_attn.k_proj.weight");
    expect_map("llama", "blk.7.attn_v.weight", "model.layers.7.self_attn.v_proj.weight");
    expect_map("llama", "blk.7.ffn_up.weight", "model.layers.7.mlp.up_proj.weight");
    expect_map("llama", "blk.7.ffn_norm.weight",
               "model.layers.7.post_attention_layernorm.weight");
    expect_map("qwen2", "blk.1.attn_q.bias", "model.layers.1.self_attn.q_proj.bias");
    expect_map("qwen3", "blk.1.attn_q_norm.weight", "model.layers.1.self_attn.q_norm.weight");
    expect_map("qwen3", "blk.1.attn_k_norm.weight", "model.layers.1.self_attn.k_norm.weight");
    expect_keep("llama", "rope_freqs.weight");
    expect_keep("llama", "blk.0.ffn_gate_inp.weight");
    expect_keep("totally-unknown-arch", "blk.0.attn_q.weight");
}

Test(names, gemma_sandwich_norms)
{
    for (int g = 2; g <= 4; g++) {
        char a[16];
        snprintf(a, sizeof(a), "gemma%d", g);
        expect_map(a, "blk.2.post_attention_norm.weight",
                   "model.layers.2.post_attention_layernorm.weight");
        expect_map(a, "blk.2.ffn_norm.weight",
                   "model.layers.2.pre_feedforward_layernorm.weight");
        expect_map(a, "blk.2.post_ffw_norm.weight",
                   "model.layers.2.post_feedforward_layernorm.weight");
    }
    expect_map("gemma3", "blk.0.attn_q_norm.weight", "model.layers.0.self_attn.q_norm.weight");
    /* llama has no post_attention_norm tensor: no invented mapping */
    expect_keep("llama", "blk.2.post_ffw_norm.weight");
}

Test(names, phi3_fused)
{
    expect_map("phi3", "blk.4.attn_qkv.weight", "model.layers.4.self_attn.qkv_proj.weight");
    expect_map("phi3", "blk.4.ffn_up.weight", "model.layers.4.mlp.gate_up_proj.weight");
    int layer;
    ms_kind k;
    ms_filter f;
    ms_names_classify("model.layers.4.self_attn.qkv_proj.weight", &layer, &k, &f);
    cr_expect_eq(layer, 4);
    cr_expect_eq(k, MS_KIND_ATTN_QKV);
    cr_expect_eq(f, MS_FILTER_SELF_ATTN);
    /* "gate_up_proj" contains "up_proj": it must not be taken for it */
    ms_names_classify("model.layers.4.mlp.gate_up_proj.weight", &layer, &k, &f);
    cr_expect_eq(k, MS_KIND_FFN_GATE_UP);
    cr_expect_eq(f, MS_FILTER_MLP);
    cr_expect_str_eq(ms_kind_name(k), "ffn_gate_up");
}

Test(names, classify)
{
    struct { const char *name; int layer; ms_kind kind; ms_filter filter; } c[] = {
        {"model.embed_tokens.weight", -1, MS_KIND_EMBED, MS_FILTER_OTHER},
        {"lm_head.weight", -1, MS_KIND_OUTPUT, MS_FILTER_OTHER},
        {"model.norm.weight", -1, MS_KIND_NORM, MS_FILTER_OTHER},
        {"model.layers.0.input_layernorm.weight", 0, MS_KIND_NORM, MS_FILTER_OTHER},
        {"model.layers.31.post_attention_layernorm.weight", 31, MS_KIND_NORM, MS_FILTER_OTHER},
        {"model.layers.5.self_attn.q_proj.weight", 5, MS_KIND_ATTN_Q, MS_FILTER_SELF_ATTN},
        {"model.layers.5.self_attn.k_proj.bias", 5, MS_KIND_ATTN_K, MS_FILTER_SELF_ATTN},
        {"model.layers.5.self_attn.v_proj.weight", 5, MS_KIND_ATTN_V, MS_FILTER_SELF_ATTN},
        {"model.layers.5.self_attn.o_proj.weight", 5, MS_KIND_ATTN_O, MS_FILTER_SELF_ATTN},
        {"model.layers.5.self_attn.q_norm.weight", 5, MS_KIND_NORM, MS_FILTER_SELF_ATTN},
        {"model.layers.10.mlp.gate_proj.weight", 10, MS_KIND_FFN_GATE, MS_FILTER_MLP},
        {"model.layers.10.mlp.up_proj.weight", 10, MS_KIND_FFN_UP, MS_FILTER_MLP},
        {"model.layers.10.mlp.down_proj.weight", 10, MS_KIND_FFN_DOWN, MS_FILTER_MLP},
        {"model.language_model.layers.3.mlp.down_proj.weight", 3, MS_KIND_FFN_DOWN, MS_FILTER_MLP},
        {"model.layers.2.pre_feedforward_layernorm.weight", 2, MS_KIND_NORM, MS_FILTER_OTHER},
        {"blk.9.attn_q.weight", 9, MS_KIND_ATTN_Q, MS_FILTER_OTHER},
        {"rope_freqs.weight", -1, MS_KIND_OTHER, MS_FILTER_OTHER},
        {"model.layers.x.mlp.up_proj.weight", -1, MS_KIND_FFN_UP, MS_FILTER_MLP},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int layer = 99;
        ms_kind k = MS_KIND_COUNT;
        ms_filter f = MS_FILTER_COUNT;
        ms_names_classify(c[i].name, &layer, &k, &f);
        cr_expect_eq(layer, c[i].layer, "%s layer %d", c[i].name, layer);
        cr_expect_eq(k, c[i].kind, "%s kind %s", c[i].name, ms_kind_name(k));
        cr_expect_eq(f, c[i].filter, "%s filter %s", c[i].name, ms_filter_name(f));
    }
    ms_names_classify("model.layers.1.mlp.up_proj.weight", NULL, NULL, NULL);
}

Test(names, permuted_archs)
{
    cr_expect(ms_names_gguf_permuted("llama", MS_KIND_ATTN_Q));
    cr_expect(ms_names_gguf_permuted("llama", MS_KIND_ATTN_K));
    cr_expect_not(ms_names_gguf_permuted("llama", MS_KIND_ATTN_V));
    cr_expect_not(ms_names_gguf_permuted("llama", MS_KIND_ATTN_O));
    cr_expect(ms_names_gguf_permuted("mistral", MS_KIND_ATTN_Q));
    const char *neox[] = {"qwen2", "qwen3", "gemma", "gemma2", "gemma3",
                          "gemma4", "phi3", "unknown"};
    for (size_t i = 0; i < sizeof(neox) / sizeof(neox[0]); i++) {
        cr_expect_not(ms_names_gguf_permuted(neox[i], MS_KIND_ATTN_Q), "%s", neox[i]);
        cr_expect_not(ms_names_gguf_permuted(neox[i], MS_KIND_ATTN_K), "%s", neox[i]);
    }
    cr_expect_not(ms_names_gguf_permuted(NULL, MS_KIND_ATTN_Q));
}

Test(names, small_buffer)
{
    char out[8];
    cr_expect_not(ms_names_from_gguf("llama", "blk.0.attn_q.weight", out, sizeof(out)));
    cr_expect_str_eq(out, "");
    cr_expect_str_eq(ms_kind_name(MS_KIND_COUNT), "other");
    cr_expect_str_eq(ms_filter_name(MS_FILTER_MLP), "mlp");
}
