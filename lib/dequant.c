/* dequant.c - placeholder until the quant types land. */
#include "mergescope/dtype.h"
#include "mergescope/banned.h"

ms_status ms_dequant(ms_dtype dt, const void *src, size_t n_elems, float *dst)
{
    (void)dt; (void)src; (void)n_elems; (void)dst;
    return MS_ERR_UNSUPPORTED;
}
