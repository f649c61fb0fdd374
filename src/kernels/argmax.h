/* Greedy decoding's argmax over the logits, written once and compiled into
 * each provider's file (and the sampler) so that each file's instruction set
 * vectorizes it: the providers' optional `argmax_f32` op (see kernels.h). */
#ifndef SLM_KERNELS_ARGMAX_H
#define SLM_KERNELS_ARGMAX_H

#include <math.h>
#include <stdint.h>

#define SLM_ARGMAX_LANES 16

/* The end of an argmax: 16 lanes (v[j] the first largest value lane j saw,
 * id[j] its index, -1 when none: -inf and NaN never enter a lane) that
 * covered x[0..i), then the tail x[i..n). */
static inline int32_t slm_argmax_finish(const float *v, const int32_t *id, const float *x,
                                        int32_t i, int32_t n) {
    float m = -INFINITY;
    int32_t best = -1;
    for (int j = 0; j < SLM_ARGMAX_LANES; j++)
        if (id[j] >= 0 && (best < 0 || v[j] > m || (v[j] == m && id[j] < best))) {
            m = v[j];
            best = id[j];
        }
    for (; i < n; i++)
        if (x[i] > m) {
            m = x[i];
            best = i;
        }
    return best < 0 ? 0 : best; /* nothing above -inf: x[0] */
}

/* The index of the largest of x[0..n), the first one on ties (-0 and +0
 * tie); a NaN never wins, but one at x[0] is kept (nothing compares greater
 * than it). That is what the scalar loop `best = 0; for i: if (x[i] >
 * x[best]) best = i` gives, the reference every version must match. Here
 * 16 running (value, index) lanes, which GCC vectorizes at -O2 for x86
 * (not for aarch64: neon.c has its own loop), then slm_argmax_finish.
 * n <= 0: 0. */
static inline int32_t slm_argmax_lanes(const float *x, int32_t n) {
    if (n <= 0 || x[0] != x[0]) return 0;
    float v[SLM_ARGMAX_LANES];
    int32_t id[SLM_ARGMAX_LANES];
    for (int j = 0; j < SLM_ARGMAX_LANES; j++) {
        v[j] = -INFINITY;
        id[j] = -1;
    }
    int32_t i = 0;
    for (; i + SLM_ARGMAX_LANES <= n; i += SLM_ARGMAX_LANES)
        for (int j = 0; j < SLM_ARGMAX_LANES; j++)
            if (x[i + j] > v[j]) {
                v[j] = x[i + j];
                id[j] = i + j;
            }
    return slm_argmax_finish(v, id, x, i, n);
}

#endif
