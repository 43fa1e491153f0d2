/*
 * convert_impl.h - internals of convert.c shared with tests and benchmarks
 * (not part of the public API).
 */
#ifndef MERGESCOPE_CONVERT_IMPL_H
#define MERGESCOPE_CONVERT_IMPL_H

#include <stddef.h>
#include <stdint.h>

/* The scalar loops the vectorised ms_convert_f16/bf16 are checked against. */
void ms_convert_f16_scalar(const uint16_t *src, size_t n, float *dst);
void ms_convert_bf16_scalar(const uint16_t *src, size_t n, float *dst);

#endif
