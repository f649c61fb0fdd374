/* Scalar reference provider: the oracle every SIMD provider is tested
 * against, and the fallback on any CPU. Plain C, no intrinsics. Sums use
 * eight float lanes combined in a fixed tree, the shape a SIMD kernel has, so
 * results are deterministic and close to what vector code computes. */
#include "kernels/kernels.h"
#include "quant/types.h"

static int ref_available(void) {
    return 1;
}

static float ref_dot_f32(const float *a, const float *b, int64_t n) {
    float lane[8] = {0};
    for (int64_t i = 0; i < n; i++) lane[i & 7] += a[i] * b[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) +
           ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

static void ref_axpy_f32(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* The quant module's scalar decoders are the reference for every type. */
static void ref_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    slm_dequantize_row(type, src, dst, n);
}

static float ref_dot_row(uint32_t type, const void *row, const float *x, int64_t n, float *tmp) {
    if (type == SLM_TYPE_F32) return ref_dot_f32(row, x, n);
    ref_dequantize_row(type, row, tmp, n);
    return ref_dot_f32(tmp, x, n);
}

const slm_provider slm_provider_ref = {
    .name = "ref",
    .available = ref_available,
    .dot_row = ref_dot_row,
    .dot_f32 = ref_dot_f32,
    .axpy_f32 = ref_axpy_f32,
    .dequantize_row = ref_dequantize_row,
};
