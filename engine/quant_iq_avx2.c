/*
 * quant_iq_avx2.c - AVX2 kernels of the grid-based i-quants (see
 * quant_iq.h).  Types without one here fall back to the scalar reference.
 */
#include "quant_iq.h"

const struct quant_kern *quant_iq_kern_avx2(uint32_t type)
{
	(void)type;
	return NULL;
}
