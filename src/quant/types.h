/* Tensor element types: ggml's ids and block layouts, so GGUF files written by
 * llama.cpp load as they are. Scalar reference conversions live here; fast
 * kernels live in src/kernels. */
#ifndef SLM_QUANT_TYPES_H
#define SLM_QUANT_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef enum slm_type {
    SLM_TYPE_F32 = 0,
    SLM_TYPE_F16 = 1,
    SLM_TYPE_Q4_0 = 2,
    SLM_TYPE_Q4_1 = 3,
    SLM_TYPE_Q5_0 = 6,
    SLM_TYPE_Q5_1 = 7,
    SLM_TYPE_Q8_0 = 8,
    SLM_TYPE_Q8_1 = 9,
    SLM_TYPE_Q2_K = 10,
    SLM_TYPE_Q3_K = 11,
    SLM_TYPE_Q4_K = 12,
    SLM_TYPE_Q5_K = 13,
    SLM_TYPE_Q6_K = 14,
    SLM_TYPE_Q8_K = 15,
    SLM_TYPE_BF16 = 30,
    SLM_TYPE_COUNT = 40 /* upper bound on ids we know the name of */
} slm_type;

#define SLM_QK 32   /* legacy block size (q4_0 .. q8_1) */
#define SLM_QK_K 256 /* k-quant super-block size */

typedef struct slm_type_info {
    const char *name;    /* "f32", "q4_k", ... */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
    int can_dequantize;  /* slm_dequantize_row handles it */
    int can_quantize;    /* slm_quantize_row_ref handles it */
} slm_type_info;

/* NULL when the id is not a type we know. */
const slm_type_info *slm_type_get(uint32_t type);
const char *slm_type_name(uint32_t type); /* "type 99" style for unknown (static buffer-free) */
/* Parses "q4_k", "Q4_K", "f16", "bf16"...; returns -1 when unknown. */
int slm_type_from_name(const char *name);

/* Bytes for a row of n elements; fails (SLM_ERR_FORMAT) when n is not a
 * multiple of the block size or on overflow. */
slm_status slm_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* Scalar reference. n must be a multiple of the type's block size. */
void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Round-to-nearest reference quantizers (with per-block scale search where
 * the layout needs one). `imatrix` (n floats, may be NULL) weights the error
 * per input column. */
void slm_quantize_row_ref(uint32_t type, const float *src, void *dst, int64_t n,
                          const float *imatrix);

#endif
