/*
 * iq_grids.h - lookup tables of ggml's i-quant and 4-bit types (internal to
 * lib/; generated into iq_grids.c by scripts/gen_grids.py).
 *
 * Grid entries pack small values little-endian: byte k is element k.
 * ms_iq_ksigns maps a 7-bit sign index to an 8-bit mask (bit j set: element
 * j negative), the eighth bit giving even parity.
 */
#ifndef MERGESCOPE_IQ_GRIDS_H
#define MERGESCOPE_IQ_GRIDS_H

#include <stdint.h>

extern const uint8_t ms_iq_ksigns[128];
extern const uint64_t ms_iq2xxs_grid[256];   /* values {8, 25, 43} */
extern const uint64_t ms_iq2xs_grid[512];
extern const uint64_t ms_iq2s_grid[1024];
extern const uint32_t ms_iq3xxs_grid[256];   /* values {4, 12, ..., 62} */
extern const uint32_t ms_iq3s_grid[512];     /* values {1, 3, ..., 15} */
extern const uint64_t ms_iq1s_grid[2048];    /* int8 values {-1, 0, 1} */
extern const int8_t ms_iq4nl_values[16];
extern const int8_t ms_fp4_values[16];       /* E2M1 values doubled */

#endif
