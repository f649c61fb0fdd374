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

#define SLM_QK 32    /* legacy block size (q4_0 .. q8_1) */
#define SLM_QK_K 256 /* k-quant super-block size */

/* Block layouts, byte for byte as ggml writes them (ggml-common.h). All
 * multi-byte fields are little-endian; `half` is an IEEE fp16 bit pattern.
 * Blocks are packed back to back with no padding and are only byte-aligned
 * relative to a tensor's start, so read fields with memcpy or byte loads,
 * never through a cast pointer. In the formulas y[i] is element i of the
 * block and q(i) the unsigned code stored for it.
 *
 * q4_0  (32 elems, 18 bytes)                y[i] = d * (q(i) - 8)
 *     0  half    d
 *     2  uint8_t qs[16]   q(i) = qs[i] & 15 and q(i+16) = qs[i] >> 4, i < 16
 * q4_1  (32 elems, 20 bytes)                y[i] = d * q(i) + m
 *     0  half    d
 *     2  half    m
 *     4  uint8_t qs[16]   as q4_0
 * q5_0  (32 elems, 22 bytes)                y[i] = d * (q(i) - 16)
 *     0  half    d
 *     2  uint8_t qh[4]    uint32 LE; bit i is bit 4 of q(i)
 *     6  uint8_t qs[16]   low 4 bits, as q4_0
 * q5_1  (32 elems, 24 bytes)                y[i] = d * q(i) + m
 *     0  half    d
 *     2  half    m
 *     4  uint8_t qh[4]    as q5_0
 *     8  uint8_t qs[16]   as q4_0
 * q8_0  (32 elems, 34 bytes)                y[i] = d * qs[i]
 *     0  half    d
 *     2  int8_t  qs[32]
 * q8_1  (32 elems, 36 bytes)                y[i] = d * qs[i]
 *     0  half    d
 *     2  half    s        d * sum(qs), used by dot products only
 *     4  int8_t  qs[32]
 * q2_k  (256 elems, 84 bytes): 16 sub-blocks of 16, y = d*sc*q - dmin*m, q in 0..3
 *     0  uint8_t scales[16]  sub-block j: sc = scales[j] & 15, m = scales[j] >> 4
 *    16  uint8_t qs[64]      element 128*h + 32*k + l (l < 32): bits 2k..2k+1 of qs[32*h + l]
 *    80  half    d
 *    82  half    dmin
 * q3_k  (256 elems, 110 bytes): 16 sub-blocks of 16, y = d*(sc-32)*(q-4), q in 0..7
 *     0  uint8_t hmask[32]   bit 2 of q(e) is bit e/32 of hmask[e % 32]
 *    32  uint8_t qs[64]      low 2 bits of q, packed as q2_k
 *    96  uint8_t scales[12]  6-bit sc for sub-block j: low 4 bits are
 *                            scales[j] & 15 (j < 8) or scales[j-8] >> 4 (j >= 8);
 *                            high 2 bits are bits 2*(j/4).. of scales[8 + j%4]
 *   108  half    d
 * q4_k  (256 elems, 144 bytes): 8 sub-blocks of 32, y = d*sc*q - dmin*m, q in 0..15
 *     0  half    d
 *     2  half    dmin
 *     4  uint8_t scales[12]  6-bit sc and m per sub-block j ("get_scale_min_k4"):
 *                            j < 4: sc = s[j] & 63, m = s[j+4] & 63
 *                            j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4,
 *                                    m  = (s[j+4] >> 4) | (s[j] >> 6) << 4
 *    16  uint8_t qs[128]     element 64*p + l (l < 32): qs[32*p + l] & 15;
 *                            element 64*p + 32 + l: qs[32*p + l] >> 4
 * q5_k  (256 elems, 176 bytes): as q4_k with q in 0..31
 *     0  half    d
 *     2  half    dmin
 *     4  uint8_t scales[12]  as q4_k
 *    16  uint8_t qh[32]      bit 4 of q(e) is bit e/32 of qh[e % 32]
 *    48  uint8_t qs[128]     low 4 bits, as q4_k
 * q6_k  (256 elems, 210 bytes): 16 sub-blocks of 16, y = d * scales[e/16] * (q - 32)
 *     0  uint8_t ql[128]     element 128*h + 32*k + l (l < 32): low 4 bits in
 *                            ql[64*h + 32*(k&1) + l], nibble k>>1
 *   128  uint8_t qh[64]      high 2 bits: bits 2k..2k+1 of qh[32*h + l]
 *   192  int8_t  scales[16]
 *   208  half    d
 * q8_k  (256 elems, 292 bytes): y[i] = d * qs[i]; activations only
 *     0  float   d
 *     4  int8_t  qs[256]
 *   260  int16_t bsums[16]   sum of qs over each group of 16
 */

typedef struct slm_type_info {
    const char *name;    /* "f32", "q4_k", ... */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
    int can_dequantize;  /* slm_dequantize_row handles it */
    int can_quantize;    /* slm_quantize_row_ref handles it */
} slm_type_info;

/* NULL when the id is not a type we know. */
const slm_type_info *slm_type_get(uint32_t type);
const char *slm_type_name(uint32_t type); /* "unknown" for ids we do not know */
/* Parses "q4_k", "Q4_K", "f16", "bf16"...; returns -1 when unknown. */
int slm_type_from_name(const char *name);

/* Bytes for a row of n elements; fails (SLM_ERR_FORMAT) when n is not a
 * multiple of the block size or on overflow. */
slm_status slm_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* SLM_OK when slm_dequantize_row handles `type`; otherwise SLM_ERR_UNSUPPORTED
 * with a message naming the type ("tensor type iq2_xxs (16) is not
 * supported"). */
slm_status slm_type_check_dequantize(uint32_t type);

/* Scalar reference. n must be a multiple of the type's block size (a ragged
 * tail, or a whole row of a type without a dequantizer, is written as zeros). */
void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
/* Round-to-nearest reference quantizers (with per-block scale search where
 * the layout needs one). `imatrix` (n floats, may be NULL) weights the error
 * per input column. Without it, f16/bf16/q4_0/q4_1/q5_0/q5_1/q8_0/q8_1 output
 * is byte-identical to llama.cpp's reference quantizers. Only types with
 * can_quantize are written; for others dst is left untouched. */
void slm_quantize_row_ref(uint32_t type, const float *src, void *dst, int64_t n,
                          const float *imatrix);

#endif
