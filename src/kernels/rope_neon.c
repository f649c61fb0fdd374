/* RoPE for the neon provider: 4 pairs a step (vld2q/vst2q split and rejoin
 * interleaved pairs), the last rope_dim/2 % 4 pairs one at a time. Products
 * and sums are separate operations (fmul, then fadd or fsub; this project
 * compiles ISO C, where GCC does not contract, and clang contracts only
 * within one expression), never FMA, so each value has the bits of the
 * scalar formula. */
#if defined(__aarch64__)

#include <arm_neon.h>

#include "kernels/rope.h"

void slm_rope_neon(float *h, const float *cs, int32_t rope_dim, int adjacent) {
    int32_t half = rope_dim / 2, i = 0;
    for (; i + 4 <= half; i += 4) {
        float32x4x2_t w = vld2q_f32(cs + 2 * i); /* c of 4 pairs, s of 4 pairs */
        float32x4x2_t x;
        if (adjacent) {
            x = vld2q_f32(h + 2 * i);
        } else {
            x.val[0] = vld1q_f32(h + i);
            x.val[1] = vld1q_f32(h + i + half);
        }
        float32x4_t x0c = vmulq_f32(x.val[0], w.val[0]);
        float32x4_t x1s = vmulq_f32(x.val[1], w.val[1]);
        float32x4_t x0s = vmulq_f32(x.val[0], w.val[1]);
        float32x4_t x1c = vmulq_f32(x.val[1], w.val[0]);
        float32x4x2_t r;
        r.val[0] = vsubq_f32(x0c, x1s);
        r.val[1] = vaddq_f32(x0s, x1c);
        if (adjacent) {
            vst2q_f32(h + 2 * i, r);
        } else {
            vst1q_f32(h + i, r.val[0]);
            vst1q_f32(h + i + half, r.val[1]);
        }
    }
    for (; i < half; i++)
        slm_rope_pair(h, adjacent ? 2 * i : i, adjacent ? 2 * i + 1 : i + half, cs[2 * i],
                      cs[2 * i + 1]);
}

#else
/* Not AArch64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_rope_neon_unused;
#endif
