/* Rotary position embedding (RoPE) kernels, one per instruction set: the
 * providers' optional `rope` op (see kernels.h for the contract). Each gives
 * the bits of the model's scalar loop: per pair, x0*c - x1*s and x0*s + x1*c,
 * each as two rounded products and one rounded sum (no fused multiply-add). */
#ifndef SLM_KERNELS_ROPE_H
#define SLM_KERNELS_ROPE_H

#include <stdint.h>

/* One pair (a, b) rotated by (c, s): the scalar step every kernel must
 * match. Each product is its own statement (and the build passes
 * -ffp-contract=off) so no compiler fuses it into an FMA. */
static inline void slm_rope_pair(float *h, int32_t a, int32_t b, float c, float s) {
    float x0 = h[a], x1 = h[b];
    float x0c = x0 * c;
    float x1s = x1 * s;
    float x0s = x0 * s;
    float x1c = x1 * c;
    h[a] = x0c - x1s;
    h[b] = x0s + x1c;
}

/* Rotates h[0, rope_dim) in place; cs holds rope_dim floats (cos, sin of pair
 * i at cs[2i], cs[2i + 1]); adjacent = 1: pairs (2i, 2i + 1), else (i, i +
 * rope_dim / 2). rope_dim is even; any value. */
#if defined(__x86_64__) || defined(__i386__)
void slm_rope_avx2(float *h, const float *cs, int32_t rope_dim, int adjacent);
#endif
#if defined(__x86_64__)
void slm_rope_avx512(float *h, const float *cs, int32_t rope_dim, int adjacent);
#endif
#if defined(__aarch64__)
void slm_rope_neon(float *h, const float *cs, int32_t rope_dim, int adjacent);
#endif

#endif
