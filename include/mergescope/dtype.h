/*
 * dtype.h - every element type mergescope reads: safetensors dtypes and ggml
 * types, one enum. Block-quantized types store blocks of `block_elems`
 * elements in `block_bytes` bytes, always within one row (the contiguous,
 * last numpy dimension), so any whole row can be decoded on its own.
 *
 * Decoding to float32 lives in convert.c (float and integer types) and
 * dequant.c (quantized ggml types); ms_dtype_to_f32 dispatches to both.
 */
#ifndef MERGESCOPE_DTYPE_H
#define MERGESCOPE_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mergescope/error.h"

typedef enum ms_dtype {
    MS_DTYPE_INVALID = 0,
    /* plain element types (safetensors and GGUF) */
    MS_DTYPE_F64, MS_DTYPE_F32, MS_DTYPE_F16, MS_DTYPE_BF16,
    MS_DTYPE_F8_E4M3, MS_DTYPE_F8_E5M2,
    MS_DTYPE_I64, MS_DTYPE_I32, MS_DTYPE_I16, MS_DTYPE_I8,
    MS_DTYPE_U64, MS_DTYPE_U32, MS_DTYPE_U16, MS_DTYPE_U8, MS_DTYPE_BOOL,
    /* ggml block-quantized types */
    MS_DTYPE_Q4_0, MS_DTYPE_Q4_1, MS_DTYPE_Q5_0, MS_DTYPE_Q5_1,
    MS_DTYPE_Q8_0, MS_DTYPE_Q8_1,
    MS_DTYPE_Q2_K, MS_DTYPE_Q3_K, MS_DTYPE_Q4_K, MS_DTYPE_Q5_K,
    MS_DTYPE_Q6_K, MS_DTYPE_Q8_K,
    MS_DTYPE_IQ2_XXS, MS_DTYPE_IQ2_XS, MS_DTYPE_IQ3_XXS, MS_DTYPE_IQ1_S,
    MS_DTYPE_IQ4_NL, MS_DTYPE_IQ3_S, MS_DTYPE_IQ2_S, MS_DTYPE_IQ4_XS,
    MS_DTYPE_IQ1_M, MS_DTYPE_TQ1_0, MS_DTYPE_TQ2_0, MS_DTYPE_MXFP4,
    MS_DTYPE_COUNT
} ms_dtype;

typedef struct ms_dtype_info {
    const char *name;        /* "BF16", "Q4_K", "IQ2_XXS", "F8_E4M3", ... */
    uint32_t block_elems;    /* 1 for plain types */
    uint32_t block_bytes;    /* bytes per block */
    int ggml_id;             /* ggml_type id, -1 if GGUF has none */
    bool is_float;           /* decodes to real values (not integers/bool) */
    bool is_quant;           /* ggml block-quantized */
} ms_dtype_info;

/* Facts about a dtype; a zeroed info (name "INVALID") for out-of-range. */
const ms_dtype_info *ms_dtype_get(ms_dtype dt);
const char *ms_dtype_name(ms_dtype dt);

/* Map a ggml type id; MS_DTYPE_INVALID if unknown or removed. */
ms_dtype ms_dtype_from_ggml(uint32_t ggml_id);
/* Map a safetensors dtype string ("BF16", "F8_E4M3", ...). */
ms_dtype ms_dtype_from_safetensors(const char *name);
/* Map a name case-insensitively ("q4_k", "bf16", "iq4_nl"); for --plan. */
ms_dtype ms_dtype_from_name(const char *name);

/* Bits per weight of the type: block_bytes * 8 / block_elems. */
double ms_dtype_bpw(ms_dtype dt);

/*
 * Bytes of n_elems elements of dt into *out. False when n_elems is not a
 * multiple of the block size or the size overflows.
 */
bool ms_dtype_nbytes(ms_dtype dt, uint64_t n_elems, uint64_t *out);

/* True when ms_dtype_to_f32 can decode the type. */
bool ms_dtype_can_decode(ms_dtype dt);

/*
 * Decode n_elems elements (a multiple of the block size) from src into dst.
 * src holds exactly the bytes ms_dtype_nbytes gives; dst has n_elems floats.
 * Returns MS_OK, or MS_ERR_UNSUPPORTED for a type that cannot be decoded
 * (no message is set: the caller knows the tensor), or MS_ERR_USAGE when
 * n_elems is not a multiple of the block. Thread-safe, no allocation.
 */
ms_status ms_dtype_to_f32(ms_dtype dt, const void *src, size_t n_elems, float *dst);

/* Scalar conversions used by tests and by code that needs one value. */
float ms_f16_to_f32(uint16_t h);
float ms_bf16_to_f32(uint16_t b);
uint16_t ms_f32_to_f16(float f);   /* round to nearest even */
uint16_t ms_f32_to_bf16(float f);  /* round to nearest even, NaN kept */

/* Vectorised float conversions (convert.c), n any count. */
void ms_convert_f16(const uint16_t *src, size_t n, float *dst);
void ms_convert_bf16(const uint16_t *src, size_t n, float *dst);

/*
 * Quantized decoding (dequant.c): decodes n_elems (multiple of the block)
 * of a quantized type. MS_ERR_UNSUPPORTED for non-quant types.
 */
ms_status ms_dequant(ms_dtype dt, const void *src, size_t n_elems, float *dst);

#endif
