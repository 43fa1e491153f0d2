/*
 * audit_isa.c - run-time choice among the per-level builds of the kernels
 * in audit/isa/ (see CMakeLists.txt): x86-64-v4 (AVX-512), v3 (AVX2) or
 * the baseline. Every level computes the same bits (no contraction), so
 * the choice changes the speed only.
 */
#include "audit_int.h"
#include "mergescope/banned.h"

typedef enum isa_level { ISA_BASE, ISA_V3, ISA_V4 } isa_level;

static isa_level level(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return ISA_V4;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2"))
        return ISA_V3;
#endif
    return ISA_BASE;
}

void au_stats_chunk(const au_stats_in *in, au_stats_out *o)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    switch (level()) {
    case ISA_V4: au_stats_chunk_v4(in, o); return;
    case ISA_V3: au_stats_chunk_v3(in, o); return;
    default: break;
    }
#endif
    au_stats_chunk_base(in, o);
}

void au_gta_chunk(const au_gta_in *in, au_gta_out *o)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    switch (level()) {
    case ISA_V4: au_gta_chunk_v4(in, o); return;
    case ISA_V3: au_gta_chunk_v3(in, o); return;
    default: break;
    }
#endif
    au_gta_chunk_base(in, o);
}
