/*
 * fuzz_common.h - shared by the libFuzzer targets: a bounded decode of the
 * start of a tensor, and an invariant check that turns a logic error into
 * a crash the fuzzer reports.
 */
#ifndef MS_FUZZ_COMMON_H
#define MS_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mergescope/dtype.h"

/* Elements decoded per tensor at most: enough to cover several rows and
 * blocks, small enough to keep thousands of executions a second. */
#define MS_FUZZ_MAX_DECODE 4096u

#define MS_FUZZ_CHECK(cond)                                                     \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, \
                    __LINE__);                                                  \
            abort();                                                            \
        }                                                                       \
    } while (0)

/*
 * Decode the first whole blocks of a tensor of n_elems elements whose
 * bytes are [src, src + nbytes). The bytes are copied to a buffer of
 * exactly the size the decoder may read, so any read past it is caught.
 */
static inline void ms_fuzz_decode(ms_dtype dt, const uint8_t *src, uint64_t nbytes,
                                  uint64_t n_elems)
{
    const ms_dtype_info *in = ms_dtype_get(dt);
    if (!ms_dtype_can_decode(dt) || !in->block_elems)
        return;
    uint64_t n = n_elems < MS_FUZZ_MAX_DECODE ? n_elems : MS_FUZZ_MAX_DECODE;
    n -= n % in->block_elems;
    uint64_t need;
    if (n == 0 || !ms_dtype_nbytes(dt, n, &need))
        return;
    MS_FUZZ_CHECK(need <= nbytes);
    uint8_t *copy = malloc(need);
    float *out = malloc(n * sizeof(float));
    if (copy && out) {
        memcpy(copy, src, need);
        MS_FUZZ_CHECK(ms_dtype_to_f32(dt, copy, n, out) == MS_OK);
    }
    free(copy);
    free(out);
}

#endif
