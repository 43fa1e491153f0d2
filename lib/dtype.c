/*
 * dtype.c - the table of element types and the decode dispatcher.
 */
#include <string.h>
#include <strings.h>

#include "mergescope/dtype.h"
#include "mergescope/util.h"
#include "mergescope/banned.h"

/* name, block elems, block bytes, ggml id, is_float, is_quant */
static const ms_dtype_info infos[MS_DTYPE_COUNT] = {
    [MS_DTYPE_INVALID] = {"INVALID", 0, 0, -1, false, false},
    [MS_DTYPE_F64] = {"F64", 1, 8, 28, true, false},
    [MS_DTYPE_F32] = {"F32", 1, 4, 0, true, false},
    [MS_DTYPE_F16] = {"F16", 1, 2, 1, true, false},
    [MS_DTYPE_BF16] = {"BF16", 1, 2, 30, true, false},
    [MS_DTYPE_F8_E4M3] = {"F8_E4M3", 1, 1, -1, true, false},
    [MS_DTYPE_F8_E5M2] = {"F8_E5M2", 1, 1, -1, true, false},
    [MS_DTYPE_I64] = {"I64", 1, 8, 27, false, false},
    [MS_DTYPE_I32] = {"I32", 1, 4, 26, false, false},
    [MS_DTYPE_I16] = {"I16", 1, 2, 25, false, false},
    [MS_DTYPE_I8] = {"I8", 1, 1, 24, false, false},
    [MS_DTYPE_U64] = {"U64", 1, 8, -1, false, false},
    [MS_DTYPE_U32] = {"U32", 1, 4, -1, false, false},
    [MS_DTYPE_U16] = {"U16", 1, 2, -1, false, false},
    [MS_DTYPE_U8] = {"U8", 1, 1, -1, false, false},
    [MS_DTYPE_BOOL] = {"BOOL", 1, 1, -1, false, false},
    [MS_DTYPE_Q4_0] = {"Q4_0", 32, 18, 2, true, true},
    [MS_DTYPE_Q4_1] = {"Q4_1", 32, 20, 3, true, true},
    [MS_DTYPE_Q5_0] = {"Q5_0", 32, 22, 6, true, true},
    [MS_DTYPE_Q5_1] = {"Q5_1", 32, 24, 7, true, true},
    [MS_DTYPE_Q8_0] = {"Q8_0", 32, 34, 8, true, true},
    [MS_DTYPE_Q8_1] = {"Q8_1", 32, 36, 9, true, true},
    [MS_DTYPE_Q2_K] = {"Q2_K", 256, 84, 10, true, true},
    [MS_DTYPE_Q3_K] = {"Q3_K", 256, 110, 11, true, true},
    [MS_DTYPE_Q4_K] = {"Q4_K", 256, 144, 12, true, true},
    [MS_DTYPE_Q5_K] = {"Q5_K", 256, 176, 13, true, true},
    [MS_DTYPE_Q6_K] = {"Q6_K", 256, 210, 14, true, true},
    [MS_DTYPE_Q8_K] = {"Q8_K", 256, 292, 15, true, true},
    [MS_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, 16, true, true},
    [MS_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74, 17, true, true},
    [MS_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, 18, true, true},
    [MS_DTYPE_IQ1_S] = {"IQ1_S", 256, 50, 19, true, true},
    [MS_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18, 20, true, true},
    [MS_DTYPE_IQ3_S] = {"IQ3_S", 256, 110, 21, true, true},
    [MS_DTYPE_IQ2_S] = {"IQ2_S", 256, 82, 22, true, true},
    [MS_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136, 23, true, true},
    [MS_DTYPE_IQ1_M] = {"IQ1_M", 256, 56, 29, true, true},
    [MS_DTYPE_TQ1_0] = {"TQ1_0", 256, 54, 34, true, true},
    [MS_DTYPE_TQ2_0] = {"TQ2_0", 256, 66, 35, true, true},
    [MS_DTYPE_MXFP4] = {"MXFP4", 32, 17, 39, true, true},
};

const ms_dtype_info *ms_dtype_get(ms_dtype dt)
{
    if ((unsigned)dt >= MS_DTYPE_COUNT)
        return &infos[MS_DTYPE_INVALID];
    return &infos[dt];
}

const char *ms_dtype_name(ms_dtype dt)
{
    return ms_dtype_get(dt)->name;
}

ms_dtype ms_dtype_from_ggml(uint32_t ggml_id)
{
    for (int i = 1; i < MS_DTYPE_COUNT; i++)
        if (infos[i].ggml_id >= 0 && (uint32_t)infos[i].ggml_id == ggml_id)
            return (ms_dtype)i;
    return MS_DTYPE_INVALID;
}

ms_dtype ms_dtype_from_safetensors(const char *name)
{
    static const ms_dtype st_types[] = {
        MS_DTYPE_F64, MS_DTYPE_F32, MS_DTYPE_F16, MS_DTYPE_BF16, MS_DTYPE_F8_E4M3,
        MS_DTYPE_F8_E5M2, MS_DTYPE_I64, MS_DTYPE_I32, MS_DTYPE_I16, MS_DTYPE_I8,
        MS_DTYPE_U64, MS_DTYPE_U32, MS_DTYPE_U16, MS_DTYPE_U8, MS_DTYPE_BOOL,
    };
    for (size_t i = 0; i < MS_ARRAY_SIZE(st_types); i++)
        if (!strcmp(name, infos[st_types[i]].name))
            return st_types[i];
    return MS_DTYPE_INVALID;
}

ms_dtype ms_dtype_from_name(const char *name)
{
    for (int i = 1; i < MS_DTYPE_COUNT; i++)
        if (!strcasecmp(name, infos[i].name))
            return (ms_dtype)i;
    return MS_DTYPE_INVALID;
}

double ms_dtype_bpw(ms_dtype dt)
{
    const ms_dtype_info *in = ms_dtype_get(dt);
    return in->block_elems ? in->block_bytes * 8.0 / in->block_elems : 0.0;
}

bool ms_dtype_nbytes(ms_dtype dt, uint64_t n_elems, uint64_t *out)
{
    const ms_dtype_info *in = ms_dtype_get(dt);
    if (!in->block_elems || n_elems % in->block_elems)
        return false;
    return ms_mul_u64(n_elems / in->block_elems, in->block_bytes, out);
}
