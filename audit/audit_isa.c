/*
 * audit_isa.c - run-time choice among the per-level builds of the kernels
 * in audit/isa/ (see CMakeLists.txt): x86-64-v4 (AVX-512), v3 (AVX2) or
 * the baseline. Every level computes the same bits (no contraction), so
 * the choice changes the speed only.
 */
#include "audit_int.h"
#include "mergescope/banned.h"

typedef struct isa_kernels {
    void (*stats)(const au_stats_in *, au_stats_out *);
    void (*gta)(const au_gta_in *, au_gta_out *);
} isa_kernels;

static const isa_kernels *kernels(void)
{
    static const isa_kernels base = {au_stats_chunk_base, au_gta_chunk_base};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const isa_kernels v4 = {au_stats_chunk_v4, au_gta_chunk_v4};
    static const isa_kernels v3 = {au_stats_chunk_v3, au_gta_chunk_v3};
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return &v4;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return &v3;
#endif
    return &base;
}

void au_stats_chunk(const au_stats_in *in, au_stats_out *o)
{
    kernels()->stats(in, o);
}

void au_gta_chunk(const au_gta_in *in, au_gta_out *o)
{
    kernels()->gta(in, o);
}
