/*
 * dequant_impl.h - internals of dequant.c shared with tests and benchmarks
 * (not part of the public API).
 */
#ifndef MERGESCOPE_DEQUANT_IMPL_H
#define MERGESCOPE_DEQUANT_IMPL_H

#include <stddef.h>

#include "mergescope/dtype.h"

/*
 * ms_dequant restricted to the portable scalar decoders (the reference the
 * SIMD paths are checked against). Same contract as ms_dequant.
 */
ms_status ms_dequant_scalar(ms_dtype dt, const void *src, size_t n_elems, float *dst);

#endif
