/* Provider "neon": AArch64 Advanced SIMD (NEON, present on every ARMv8-A
 * CPU), with the dot-product extension (sdot) where the CPU has it. This file
 * is compiled for plain ARMv8-A; the sdot kernels alone carry a target
 * attribute and are chosen at run time from getauxval(AT_HWCAP)'s
 * HWCAP_ASIMDDP bit, so the same binary runs on a Cortex-A53 and uses sdot
 * on an A76 or a Neoverse.
 *
 * f32, f16, bf16 rows: one accumulation shape for every dot product, per
 * (row, token) pair four 4-lane FMA accumulators over 16-element steps, then
 * 4-element steps into accumulator 0, then the last n % 4 elements as one
 * zero-padded vector into accumulator 0, then ((a0 + a1) + (a2 + a3)) and one
 * horizontal add. f16 and bf16 are converted to f32 exactly in registers, so
 * dot_row(row, x) == dot_f32(dequantize_row(row), x) bit for bit, and the
 * batched path (register tiles of 2 rows x 3 tokens, same shape per pair)
 * gives a token the bits it gets alone.
 *
 * Block types (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k): slm_matmul
 * goes through matmul_rows, which quantizes each token's activations to
 * 8-bit blocks of 32 (scale max|x|/127, round to nearest even) and takes
 * integer dot products with the weight codes: sdot where present, else
 * widening multiplies (smull + sadalp); both give the same exact int32 sums
 * (see neon_x8.h). dot_row for block types (not on slm_matmul's path) is
 * dequantize_row + dot_f32 in f32. The block decoders produce the values of
 * the scalar reference decoders with the same operations in the same order.
 *
 * Forward-pass ops: rmsnorm, swiglu (a polynomial exp) and attend (scores by
 * dot_f32, softmax with expf, the V sum in 16-column blocks). */
#if defined(__aarch64__)

#include <arm_neon.h>
#include <math.h>
#include <string.h>
#include <sys/auxv.h>

#include "base/fp16.h"
#include "kernels/argmax.h"
#include "kernels/kernels.h"
#include "quant/types.h"

#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif

/* Rows dequantized at once in slm_matmul's scratch (its row tile): the 8-bit
 * activations are stored after them, as in the avx512 provider. */
#define NEON_ROW_TILE 8

static int neon_available(void) {
    return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
}

int slm_neon_dotprod(void) {
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}

/* ---- small helpers -------------------------------------------------------- */

static inline uint16_t rd16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static inline float half_at(const uint8_t *p) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(rd16(p)))), 0);
}

/* Four IEEE halves to f32 (exact). */
static inline float32x4_t halves4(const uint16_t *h) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* The first k (1..4) floats / int32s at p, zeros after. */
static inline float32x4_t load_f32_n(const float *p, int k) {
    if (k >= 4) return vld1q_f32(p);
    float buf[4] = {0, 0, 0, 0};
    memcpy(buf, p, (size_t)k * sizeof(float));
    return vld1q_f32(buf);
}
static inline int32x4_t load_s32_n(const int32_t *p, int k) {
    if (k >= 4) return vld1q_s32(p);
    int32_t buf[4] = {0, 0, 0, 0};
    memcpy(buf, p, (size_t)k * sizeof(int32_t));
    return vld1q_s32(buf);
}

/* ---- f32 / f16 / bf16 loaders: 4 elements as f32 ------------------------- */

enum { WT_F32, WT_F16, WT_BF16 };

static inline __attribute__((always_inline)) float32x4_t ld4(const int wt, const void *p,
                                                             int64_t i) {
    if (wt == WT_F32) return vld1q_f32((const float *)p + i);
    uint16x4_t h = vld1_u16((const uint16_t *)p + i);
    if (wt == WT_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

/* The last k (1..3) elements, zero-padded. */
static inline __attribute__((always_inline)) float32x4_t ld4_tail(const int wt, const void *p,
                                                                  int64_t i, int64_t k) {
    if (wt == WT_F32) {
        float buf[4] = {0, 0, 0, 0};
        memcpy(buf, (const float *)p + i, (size_t)k * sizeof(float));
        return vld1q_f32(buf);
    }
    uint16_t buf[4] = {0, 0, 0, 0};
    memcpy(buf, (const uint16_t *)p + i, (size_t)k * sizeof(uint16_t));
    return ld4(wt, buf, 0);
}

/* out[r * T + t] = dot(w[r], x[t]) over n elements in the shape described at
 * the top, R rows x T tokens at once (R * T * 4 accumulators in registers). */
static inline __attribute__((always_inline)) void tile(const int wt, const void *const *w,
                                                       const float *const *x, int64_t n, float *out,
                                                       const int R, const int T) {
    float32x4_t acc[2][3][4];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < 4; k++) acc[r][t][k] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        for (int k = 0; k < 4; k++) {
            float32x4_t xv[3];
            for (int t = 0; t < T; t++) xv[t] = vld1q_f32(x[t] + i + 4 * k);
            for (int r = 0; r < R; r++) {
                float32x4_t wv = ld4(wt, w[r], i + 4 * k);
                for (int t = 0; t < T; t++) acc[r][t][k] = vfmaq_f32(acc[r][t][k], wv, xv[t]);
            }
        }
    }
    for (; i + 4 <= n; i += 4) {
        for (int r = 0; r < R; r++) {
            float32x4_t wv = ld4(wt, w[r], i);
            for (int t = 0; t < T; t++)
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], wv, vld1q_f32(x[t] + i));
        }
    }
    if (i < n) {
        for (int r = 0; r < R; r++) {
            float32x4_t wv = ld4_tail(wt, w[r], i, n - i);
            for (int t = 0; t < T; t++)
                acc[r][t][0] = vfmaq_f32(acc[r][t][0], wv, ld4_tail(WT_F32, x[t], i, n - i));
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++)
            out[r * T + t] = vaddvq_f32(vaddq_f32(vaddq_f32(acc[r][t][0], acc[r][t][1]),
                                                  vaddq_f32(acc[r][t][2], acc[r][t][3])));
}

#define NEON_TILE(NAME, WT, R, T)                                                                  \
    static void NAME(const void *const *w, const float *const *x, int64_t n, float *out) {         \
        tile(WT, w, x, n, out, R, T);                                                              \
    }
NEON_TILE(f32_1x1, WT_F32, 1, 1)
NEON_TILE(f32_1x2, WT_F32, 1, 2)
NEON_TILE(f32_1x3, WT_F32, 1, 3)
NEON_TILE(f32_2x1, WT_F32, 2, 1)
NEON_TILE(f32_2x2, WT_F32, 2, 2)
NEON_TILE(f32_2x3, WT_F32, 2, 3)
NEON_TILE(f16_1x1, WT_F16, 1, 1)
NEON_TILE(f16_1x2, WT_F16, 1, 2)
NEON_TILE(f16_1x3, WT_F16, 1, 3)
NEON_TILE(f16_2x1, WT_F16, 2, 1)
NEON_TILE(f16_2x2, WT_F16, 2, 2)
NEON_TILE(f16_2x3, WT_F16, 2, 3)
NEON_TILE(bf16_1x1, WT_BF16, 1, 1)
NEON_TILE(bf16_1x2, WT_BF16, 1, 2)
NEON_TILE(bf16_1x3, WT_BF16, 1, 3)
NEON_TILE(bf16_2x1, WT_BF16, 2, 1)
NEON_TILE(bf16_2x2, WT_BF16, 2, 2)
NEON_TILE(bf16_2x3, WT_BF16, 2, 3)
#undef NEON_TILE

typedef void (*tile_fn)(const void *const *w, const float *const *x, int64_t n, float *out);
/* [weight type][rows - 1][tokens - 1] */
static const tile_fn TILES[3][2][3] = {
    {{f32_1x1, f32_1x2, f32_1x3}, {f32_2x1, f32_2x2, f32_2x3}},
    {{f16_1x1, f16_1x2, f16_1x3}, {f16_2x1, f16_2x2, f16_2x3}},
    {{bf16_1x1, bf16_1x2, bf16_1x3}, {bf16_2x1, bf16_2x2, bf16_2x3}},
};

static int float_wt(uint32_t type) {
    return type == SLM_TYPE_F32 ? WT_F32 : type == SLM_TYPE_F16 ? WT_F16 : WT_BF16;
}

static int float_type(uint32_t type) {
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16;
}

/* ---- block decoders: weight codes as signed bytes ---------------------------
 * Legacy blocks give 32 codes (w[0]: elements 0-15, w[1]: 16-31) with the
 * offset already taken out (q4_0: q - 8, q5_0: q - 16), so that
 * value = d * code (+ m for q4_1 / q5_1). k-quants give sub-block j's 32 codes
 * (q6_k: q - 32). */

static size_t legacy_block_bytes(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q8_0:
        return 34;
    case SLM_TYPE_Q4_0:
        return 18;
    case SLM_TYPE_Q4_1:
        return 20;
    case SLM_TYPE_Q5_0:
        return 22;
    default:
        return 24; /* q5_1 */
    }
}

static size_t k_block_bytes(uint32_t type) {
    return type == SLM_TYPE_Q4_K ? 144 : type == SLM_TYPE_Q5_K ? 176 : 210;
}

/* Byte i of the result = 0x10 when bit i of the 16 bits at (h0, h1) is set. */
static inline uint8x16_t bit4_16(uint8_t h0, uint8_t h1) {
    static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t v = vcombine_u8(vdup_n_u8(h0), vdup_n_u8(h1));
    return vandq_u8(vtstq_u8(v, vld1q_u8(bits)), vdupq_n_u8(0x10));
}

static inline __attribute__((always_inline)) void legacy_codes(const uint32_t type,
                                                               const uint8_t *b, int8x16_t w[2]) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    if (type == SLM_TYPE_Q8_0) {
        w[0] = vld1q_s8((const int8_t *)(b + 2));
        w[1] = vld1q_s8((const int8_t *)(b + 18));
        return;
    }
    const int off = type == SLM_TYPE_Q4_1   ? 4
                    : type == SLM_TYPE_Q5_0 ? 6
                    : type == SLM_TYPE_Q5_1 ? 8
                                            : 2;
    uint8x16_t qs = vld1q_u8(b + off);
    uint8x16_t lo = vandq_u8(qs, m4), hi = vshrq_n_u8(qs, 4);
    if (type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q5_1) {
        const uint8_t *qh = b + (type == SLM_TYPE_Q5_0 ? 2 : 4);
        lo = vorrq_u8(lo, bit4_16(qh[0], qh[1]));
        hi = vorrq_u8(hi, bit4_16(qh[2], qh[3]));
    }
    int8x16_t l = vreinterpretq_s8_u8(lo), h = vreinterpretq_s8_u8(hi);
    if (type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q5_0) {
        const int8x16_t o = vdupq_n_s8(type == SLM_TYPE_Q4_0 ? 8 : 16);
        l = vsubq_s8(l, o);
        h = vsubq_s8(h, o);
    }
    w[0] = l;
    w[1] = h;
}

/* q4_k / q5_k: the eight sub-block scales and minimums, as the reference
 * computes them (d * scale, dmin * min). */
static inline void k4_scales(const uint8_t *b, float dl[8], float ml[8]) {
    float d = half_at(b), dmin = half_at(b + 2);
    const uint8_t *sc = b + 4;
    for (int j = 0; j < 8; j++) {
        int scale, min;
        if (j < 4) {
            scale = sc[j] & 63;
            min = sc[j + 4] & 63;
        } else {
            scale = (sc[j + 4] & 15) | (sc[j - 4] >> 6) << 4;
            min = (sc[j + 4] >> 4) | (sc[j] >> 6) << 4;
        }
        dl[j] = d * (float)scale;
        ml[j] = dmin * (float)min;
    }
}

/* Codes of 32-element sub-block j (0..7) of a k-quant super-block. */
static inline __attribute__((always_inline)) void k_codes(const uint32_t type, const uint8_t *b,
                                                          int j, int8x16_t w[2]) {
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    uint8x16_t v[2];
    if (type == SLM_TYPE_Q6_K) {
        const int h = j / 4, k = j % 4;
        const uint8_t *ql = b + 64 * h + 32 * (k & 1), *qh = b + 128 + 32 * h;
        const int8x16_t sh = vdupq_n_s8((int8_t)(4 - 2 * k));
        for (int s = 0; s < 2; s++) {
            uint8x16_t l = vld1q_u8(ql + 16 * s);
            l = (k >> 1) ? vshrq_n_u8(l, 4) : vandq_u8(l, m4);
            uint8x16_t hi = vandq_u8(vshlq_u8(vld1q_u8(qh + 16 * s), sh), vdupq_n_u8(0x30));
            w[s] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(l, hi)), vdupq_n_s8(32));
        }
        return;
    }
    const uint8_t *qs = b + (type == SLM_TYPE_Q4_K ? 16 : 48) + 32 * (j / 2);
    for (int s = 0; s < 2; s++) {
        uint8x16_t q = vld1q_u8(qs + 16 * s);
        v[s] = (j & 1) ? vshrq_n_u8(q, 4) : vandq_u8(q, m4);
        if (type == SLM_TYPE_Q5_K) {
            const int8x16_t sh = vdupq_n_s8((int8_t)(4 - j));
            v[s] =
                vorrq_u8(v[s], vandq_u8(vshlq_u8(vld1q_u8(b + 16 + 16 * s), sh), vdupq_n_u8(0x10)));
        }
        w[s] = vreinterpretq_s8_u8(v[s]);
    }
}

/* 16 signed bytes to 4 x 4 floats in element order. */
static inline void s8_to_f32(int8x16_t q, float32x4_t v[4]) {
    int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
    v[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    v[1] = vcvtq_f32_s32(vmovl_high_s16(lo));
    v[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    v[3] = vcvtq_f32_s32(vmovl_high_s16(hi));
}

/* 32 codes to floats: y = d * code + m (m added only when has_m), or
 * y = d * code - m for k-quants (sub), stored at y. */
static inline void store_codes(const int8x16_t w[2], float32x4_t d, float32x4_t m, int has_m,
                               int sub, float *y) {
    for (int s = 0; s < 2; s++) {
        float32x4_t v[4];
        s8_to_f32(w[s], v);
        for (int k = 0; k < 4; k++) {
            float32x4_t r = vmulq_f32(d, v[k]);
            if (has_m) r = sub ? vsubq_f32(r, m) : vaddq_f32(r, m);
            vst1q_f32(y + 16 * s + 4 * k, r);
        }
    }
}

static void dequant_legacy(uint32_t type, const uint8_t *b, float *y, int64_t n) {
    const size_t bb = legacy_block_bytes(type);
    const int has_m = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
    for (int64_t i = 0; i + 32 <= n; i += 32, b += bb) {
        int8x16_t w[2];
        legacy_codes(type, b, w);
        float32x4_t d = vdupq_n_f32(half_at(b));
        float32x4_t m = vdupq_n_f32(has_m ? half_at(b + 2) : 0.0f);
        store_codes(w, d, m, has_m, 0, y + i);
    }
}

static void dequant_k(uint32_t type, const uint8_t *b, float *y, int64_t n) {
    const size_t bb = k_block_bytes(type);
    for (int64_t i = 0; i + 256 <= n; i += 256, b += bb) {
        float dl[8], ml[8];
        if (type != SLM_TYPE_Q6_K) k4_scales(b, dl, ml);
        const float d6 = type == SLM_TYPE_Q6_K ? half_at(b + 208) : 0.0f;
        const int8_t *sc6 = (const int8_t *)(b + 192);
        for (int j = 0; j < 8; j++) {
            int8x16_t w[2];
            k_codes(type, b, j, w);
            if (type == SLM_TYPE_Q6_K) {
                /* (d * scale) * (q - 32), a scale per 16 elements */
                for (int s = 0; s < 2; s++) {
                    float32x4_t v[4];
                    s8_to_f32(w[s], v);
                    const float32x4_t ds = vdupq_n_f32(d6 * (float)sc6[2 * j + s]);
                    for (int k = 0; k < 4; k++)
                        vst1q_f32(y + i + 32 * j + 16 * s + 4 * k, vmulq_f32(ds, v[k]));
                }
            } else {
                store_codes(w, vdupq_n_f32(dl[j]), vdupq_n_f32(ml[j]), 1, 1, y + i + 32 * j);
            }
        }
    }
}

/* ---- 8-bit activations ----------------------------------------------------- */

typedef struct x8_view {
    const int8_t *q;  /* n codes */
    const float *d;   /* a scale per block of 32 */
    const int32_t *s; /* the sum of the codes per block */
} x8_view;

/* Bytes of one token's quantized x (n a multiple of 32), a multiple of 64. */
static size_t x8_bytes(int64_t n) {
    size_t b = (size_t)n + (size_t)(n / 32) * (sizeof(float) + sizeof(int32_t));
    return (b + 63) & ~(size_t)63;
}

static x8_view x8_at(uint8_t *base, int64_t n) {
    x8_view v = {(const int8_t *)base, (const float *)(void *)(base + n),
                 (const int32_t *)(void *)(base + n + (n / 32) * 4)};
    return v;
}

/* codes = round_to_nearest_even(x * 127 / max|x|), scale max|x| / 127. */
static void quantize_x8(const float *x, int64_t n, uint8_t *out) {
    int8_t *q = (int8_t *)out;
    float *d = (float *)(void *)(out + n);
    int32_t *sum = (int32_t *)(void *)(out + n + (n / 32) * 4);
    for (int64_t b = 0; b < n / 32; b++) {
        float32x4_t v[8];
        float32x4_t a = vdupq_n_f32(0.0f);
        for (int k = 0; k < 8; k++) {
            v[k] = vld1q_f32(x + 32 * b + 4 * k);
            a = vmaxq_f32(a, vabsq_f32(v[k]));
        }
        float amax = vmaxvq_f32(a);
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32x4_t s = vdupq_n_s32(0);
        for (int k = 0; k < 8; k += 4) {
            int32x4_t c[4];
            for (int j = 0; j < 4; j++) {
                c[j] = vcvtnq_s32_f32(vmulq_n_f32(v[k + j], inv));
                s = vaddq_s32(s, c[j]);
            }
            int16x8_t h0 = vcombine_s16(vqmovn_s32(c[0]), vqmovn_s32(c[1]));
            int16x8_t h1 = vcombine_s16(vqmovn_s32(c[2]), vqmovn_s32(c[3]));
            vst1q_s8(q + 32 * b + 4 * k, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
        }
        d[b] = amax / 127.0f;
        sum[b] = vaddvq_s32(s);
    }
}

/* Widening integer dot: 16 products (int16, exact) pairwise into int32. */
static inline int32x4_t dot16_mull(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

#define NX(name) name##_mull
#define NEON_X8_ATTR
#define DOT16 dot16_mull
#include "kernels/neon_x8.h"
#undef NX
#undef NEON_X8_ATTR
#undef DOT16

/* sdot: GCC compiles these functions alone for ARMv8.2-A + dotprod (its
 * arm_neon.h declares vdotq_s32 for such functions). Clang 14 has neither
 * that attribute form nor a way to assemble sdot in a function without it,
 * so a clang build has the sdot kernels only when the whole build targets
 * dotprod (-march=armv8.2-a+dotprod or later); otherwise dotprod CPUs take
 * the widening kernels, with the same results. */
#if !defined(__clang__) || defined(__ARM_FEATURE_DOTPROD)
#define NEON_SDOT 1
#if defined(__clang__)
#define NEON_X8_ATTR
#else
#define NEON_X8_ATTR __attribute__((target("arch=armv8.2-a+dotprod")))
#endif
#define DOT16 vdotq_s32
#define NX(name) name##_sdot
#include "kernels/neon_x8.h"
#undef NX
#undef NEON_X8_ATTR
#undef DOT16
#else
#define NEON_SDOT 0
#endif

static int x8_type(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q8_0:
    case SLM_TYPE_Q4_0:
    case SLM_TYPE_Q4_1:
    case SLM_TYPE_Q5_0:
    case SLM_TYPE_Q5_1:
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K:
    case SLM_TYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

static void matmul_rows_x8(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    const int64_t n = W->n_cols;
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    uint8_t *xq = (uint8_t *)(scratch + NEON_ROW_TILE * stride);
    const size_t xb = x8_bytes(n);
    void (*dot)(uint32_t, const uint8_t *, const x8_view *, int64_t, float *, int) =
#if NEON_SDOT
        slm_neon_dotprod() ? dot_x8_sdot :
#endif
                           dot_x8_mull;
    for (int64_t t0 = 0; t0 < n_tok; t0 += SLM_MATMUL_X8_TOKENS) {
        int64_t nt = n_tok - t0 < SLM_MATMUL_X8_TOKENS ? n_tok - t0 : SLM_MATMUL_X8_TOKENS;
        x8_view xv[SLM_MATMUL_X8_TOKENS];
        for (int64_t j = 0; j < nt; j++) {
            quantize_x8(X + (t0 + j) * x_stride, n, xq + (size_t)j * xb);
            xv[j] = x8_at(xq + (size_t)j * xb, n);
        }
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes) {
            for (int64_t j = 0; j < nt; j += 4) {
                int k = nt - j >= 4 ? 4 : (int)(nt - j);
                float out[4];
                dot(W->type, row, xv + j, n, out, k);
                for (int a = 0; a < k; a++) Y[(t0 + j + a) * y_stride + r] = out[a];
            }
        }
    }
}

/* ---- provider entry points -------------------------------------------------- */

static float neon_dot_f32(const float *a, const float *b, int64_t n) {
    float r;
    const void *w = a;
    f32_1x1(&w, &b, n, &r);
    return r;
}

static void neon_axpy_f32(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

/* exp(x) in 4 lanes: x = k ln2 + r with |r| <= ln2 / 2 (ln2 in two parts so
 * that k ln2 is exact to float precision), e^r by its Taylor series to degree
 * 6 (relative error about 2e-7), then 2^k put into the exponent bits. x is
 * clamped to [-87.3, 88.3] so that 2^k stays a normal float. */
static inline float32x4_t exp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.3f));
    float32x4_t k = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, k, vdupq_n_f32(0.693145751953125f));
    r = vfmsq_f32(r, k, vdupq_n_f32(1.428606765330187045e-06f));
    static const float c[6] = {1.0f / 120.0f, 1.0f / 24.0f, 1.0f / 6.0f, 0.5f, 1.0f, 1.0f};
    float32x4_t p = vdupq_n_f32(1.0f / 720.0f);
    for (int i = 0; i < 6; i++) p = vfmaq_f32(vdupq_n_f32(c[i]), p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(k), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* g = silu(g) * u = g / (1 + exp(-g)) * u */
static void neon_swiglu(float *g, const float *u, int64_t n) {
    const float32x4_t one = vdupq_n_f32(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t gv = vld1q_f32(g + i);
        float32x4_t e = exp4(vnegq_f32(gv));
        vst1q_f32(g + i, vmulq_f32(vdivq_f32(gv, vaddq_f32(one, e)), vld1q_f32(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* out = (x * scale) * w with scale = 1 / sqrt(mean(x^2) + eps), the sum of
 * squares in double as the model's scalar loop has it. */
static void neon_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    float64x2_t s0 = vdupq_n_f64(0.0), s1 = vdupq_n_f64(0.0);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float64x2_t lo = vcvt_f64_f32(vget_low_f32(v)), hi = vcvt_high_f64_f32(v);
        s0 = vfmaq_f64(s0, lo, lo);
        s1 = vfmaq_f64(s1, hi, hi);
    }
    double ss = vaddvq_f64(vaddq_f64(s0, s1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float sc = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (i = 0; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), sc), vld1q_f32(w + i)));
    for (; i < n; i++) out[i] = x[i] * sc * w[i];
}

static inline __attribute__((always_inline)) void
attend1(const float *q, const void *k, const void *v, const int wt, int64_t kv_stride,
        int32_t n_pos, int32_t hd, float scale, float *att, float *out) {
    /* scores a key tile at a time, four 4-lane quarters */
    float mx = -INFINITY;
    for (int32_t p0 = 0; p0 < n_pos; p0 += SLM_KV_TILE) {
        const int64_t t0 = (int64_t)slm_kv_tile_at(p0, 0, kv_stride);
        float32x4_t a[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f),
                            vdupq_n_f32(0.0f)};
        for (int32_t d = 0; d < hd; d++) {
            const int64_t o = t0 + (int64_t)d * SLM_KV_TILE;
            for (int j = 0; j < 4; j++) a[j] = vfmaq_n_f32(a[j], ld4(wt, k, o + 4 * j), q[d]);
        }
        float sc[SLM_KV_TILE];
        for (int j = 0; j < 4; j++) vst1q_f32(sc + 4 * j, vmulq_n_f32(a[j], scale));
        const int32_t np = n_pos - p0 < SLM_KV_TILE ? n_pos - p0 : SLM_KV_TILE;
        for (int32_t j = 0; j < np; j++) {
            att[p0 + j] = sc[j];
            if (sc[j] > mx) mx = sc[j];
        }
    }
    float sum = 0.0f;
    for (int32_t p = 0; p < n_pos; p++) sum += att[p] = expf(att[p] - mx);
    const float inv = 1.0f / sum;
    for (int32_t p = 0; p < n_pos; p++) att[p] *= inv;
    int32_t c = 0;
    for (; c + 16 <= hd; c += 16) {
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int32_t p = 0; p < n_pos; p++) {
            const int64_t vp = (int64_t)p * kv_stride + c;
            a0 = vfmaq_n_f32(a0, ld4(wt, v, vp), att[p]);
            a1 = vfmaq_n_f32(a1, ld4(wt, v, vp + 4), att[p]);
            a2 = vfmaq_n_f32(a2, ld4(wt, v, vp + 8), att[p]);
            a3 = vfmaq_n_f32(a3, ld4(wt, v, vp + 12), att[p]);
        }
        vst1q_f32(out + c, a0);
        vst1q_f32(out + c + 4, a1);
        vst1q_f32(out + c + 8, a2);
        vst1q_f32(out + c + 12, a3);
    }
    for (; c + 4 <= hd; c += 4) {
        float32x4_t a0 = vdupq_n_f32(0.0f);
        for (int32_t p = 0; p < n_pos; p++)
            a0 = vfmaq_n_f32(a0, ld4(wt, v, (int64_t)p * kv_stride + c), att[p]);
        vst1q_f32(out + c, a0);
    }
    for (; c < hd; c++) {
        float o = 0.0f;
        for (int32_t p = 0; p < n_pos; p++) {
            const size_t i = (size_t)p * (size_t)kv_stride + (size_t)c;
            const float x =
                wt == WT_F16 ? slm_fp16_to_f32(((const uint16_t *)v)[i]) : ((const float *)v)[i];
            o = fmaf(att[p], x, o);
        }
        out[c] = o;
    }
}

/* One head: scores a key tile at a time (16 positions in lanes, q[d]
 * broadcast), softmax (expf per position: a small part of the work), then
 * the weighted sum of V rows, 16 columns at a time so each V row is read
 * once per column block; f16 elements widened exactly in registers. */
static void neon_attend1(const float *q, const void *k, const void *v, uint32_t kv_type,
                         int64_t kv_stride, int32_t n_pos, int32_t hd, float scale, float *att,
                         float *out) {
    if (kv_type == SLM_TYPE_F16)
        attend1(q, k, v, WT_F16, kv_stride, n_pos, hd, scale, att, out);
    else
        attend1(q, k, v, WT_F32, kv_stride, n_pos, hd, scale, att, out);
}

static void neon_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    switch (type) {
    case SLM_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case SLM_TYPE_F16:
    case SLM_TYPE_BF16: {
        const int wt = float_wt(type);
        int64_t i = 0;
        for (; i + 4 <= n; i += 4)
            vst1q_f32(dst + i, wt == WT_F16 ? ld4(WT_F16, src, i) : ld4(WT_BF16, src, i));
        const uint16_t *h = src;
        for (; i < n; i++) dst[i] = wt == WT_F16 ? slm_fp16_to_f32(h[i]) : slm_bf16_to_f32(h[i]);
        return;
    }
    case SLM_TYPE_Q8_0:
    case SLM_TYPE_Q4_0:
    case SLM_TYPE_Q4_1:
    case SLM_TYPE_Q5_0:
    case SLM_TYPE_Q5_1:
        dequant_legacy(type, src, dst, n);
        return;
    case SLM_TYPE_Q4_K:
    case SLM_TYPE_Q5_K:
    case SLM_TYPE_Q6_K:
        dequant_k(type, src, dst, n);
        return;
    default:
        /* other formats (q2_k, q3_k, q8_k, ...): the scalar decoders */
        slm_dequantize_row(type, src, dst, n);
        return;
    }
}

static float neon_dot_row(uint32_t type, const void *row, const float *x, int64_t n, float *tmp) {
    if (float_type(type)) {
        float r;
        TILES[float_wt(type)][0][0](&row, &x, n, &r);
        return r;
    }
    neon_dequantize_row(type, row, tmp, n);
    return neon_dot_f32(tmp, x, n);
}

/* Float rows: one token row by row (one sequential stream); a batch in
 * register tiles of up to 2 rows x 3 tokens, with the rows in their stored
 * type. Other block types (no 8-bit kernel): each tile of rows dequantized
 * into the scratch once, then dotted in f32 with every token (the shape of
 * dot_row). */
static void neon_matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                             int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                             float *scratch) {
    if (x8_type(W->type)) {
        matmul_rows_x8(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
        return;
    }
    const int64_t n = W->n_cols;
    if (float_type(W->type)) {
        const int wt = float_wt(W->type);
        for (int64_t r = r0; r < r1;) {
            int nr = r1 - r >= 2 && n_tok > 1 ? 2 : 1;
            const void *rows[2] = {W->data + (size_t)r * W->row_bytes,
                                   W->data + (size_t)(r + nr - 1) * W->row_bytes};
            for (int64_t t = 0; t < n_tok;) {
                int nt = n_tok - t >= 3 ? 3 : (int)(n_tok - t);
                const float *xs[3];
                for (int j = 0; j < nt; j++) xs[j] = X + (t + j) * x_stride;
                float out[6];
                TILES[wt][nr - 1][nt - 1](rows, xs, n, out);
                for (int a = 0; a < nr; a++)
                    for (int j = 0; j < nt; j++) Y[(t + j) * y_stride + r + a] = out[a * nt + j];
                t += nt;
            }
            r += nr;
        }
        return;
    }
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    for (int64_t rb = r0; rb < r1; rb += NEON_ROW_TILE) {
        int nr = (int)(r1 - rb < NEON_ROW_TILE ? r1 - rb : NEON_ROW_TILE);
        for (int k = 0; k < nr; k++)
            neon_dequantize_row(W->type, W->data + (size_t)(rb + k) * W->row_bytes,
                                scratch + (size_t)k * stride, n);
        for (int64_t t = 0; t < n_tok; t++)
            for (int k = 0; k < nr; k++)
                Y[t * y_stride + rb + k] =
                    neon_dot_f32(scratch + (size_t)k * stride, X + t * x_stride, n);
    }
}

/* int8_activations: blocks of 32 for every 8-bit type. */
static int neon_int8_block(uint32_t type) {
    return x8_type(type) ? 32 : 0;
}

/* Heads of one K/V group one after another (see kernels.h). */
static void neon_attend(const float *q, int32_t n_q, const void *k, const void *v, uint32_t kv_type,
                        int64_t kv_stride, int32_t n_pos, int32_t hd, float scale, float *att,
                        float *out) {
    slm_attend_each(neon_attend1, q, n_q, k, v, kv_type, kv_stride, n_pos, hd, scale, att, out);
}

/* FCVTN rounds by FPCR's mode: to nearest even unless a caller changed it. */
static void neon_to_f16(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; i++) dst[i] = slm_f32_to_fp16(src[i]);
}

/* kernels/argmax.h's 16 lanes as four vectors (GCC 12 leaves the generic
 * loop scalar for aarch64): lane 4k + l of the header is lane l of v[k]. */
static int32_t neon_argmax_f32(const float *x, int32_t n) {
    if (n < SLM_ARGMAX_LANES || x[0] != x[0]) return slm_argmax_lanes(x, n);
    float32x4_t v[4];
    uint32x4_t id[4], at[4];
    const uint32x4_t step = vdupq_n_u32(SLM_ARGMAX_LANES);
    for (int k = 0; k < 4; k++) {
        v[k] = vdupq_n_f32(-INFINITY);
        id[k] = vdupq_n_u32(UINT32_MAX); /* -1: none */
        const uint32_t l0 = (uint32_t)(4 * k);
        const uint32_t first[4] = {l0, l0 + 1, l0 + 2, l0 + 3};
        at[k] = vld1q_u32(first);
    }
    int32_t i = 0;
    for (; i + SLM_ARGMAX_LANES <= n; i += SLM_ARGMAX_LANES)
        for (int k = 0; k < 4; k++) {
            const float32x4_t xv = vld1q_f32(x + i + 4 * k);
            const uint32x4_t gt = vcgtq_f32(xv, v[k]);
            v[k] = vbslq_f32(gt, xv, v[k]);
            id[k] = vbslq_u32(gt, at[k], id[k]);
            at[k] = vaddq_u32(at[k], step);
        }
    float vl[SLM_ARGMAX_LANES];
    int32_t il[SLM_ARGMAX_LANES];
    for (int k = 0; k < 4; k++) {
        vst1q_f32(vl + 4 * k, v[k]);
        vst1q_s32(il + 4 * k, vreinterpretq_s32_u32(id[k]));
    }
    return slm_argmax_finish(vl, il, x, i, n);
}

const slm_provider slm_provider_neon = {
    .name = "neon",
    .available = neon_available,
    .dot_row = neon_dot_row,
    .dot_f32 = neon_dot_f32,
    .axpy_f32 = neon_axpy_f32,
    .dequantize_row = neon_dequantize_row,
    .matmul_rows = neon_matmul_rows,
    .int8_activations = neon_int8_block,
    .rmsnorm = neon_rmsnorm,
    .swiglu = neon_swiglu,
    .attend = neon_attend,
    .rope = slm_rope_neon,
    .argmax_f32 = neon_argmax_f32,
    .to_f16 = neon_to_f16,
};

#else
/* Not AArch64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_neon_unused;
#endif
