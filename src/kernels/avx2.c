/* Provider "avx2": x86 with AVX2 + FMA + F16C (compiled with those flags only
 * in this file; chosen at run time when the CPU has them).
 *
 * Every dot product here has one accumulation shape, the one of
 * avx2_dot_f32: four 8-lane FMA accumulators over 32-element steps, then
 * 8-element steps into accumulator 0, then the last n % 8 elements as one
 * zero-padded vector into accumulator 0, then a fixed reduction tree. The
 * fused kernels (f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q4_k, q5_k, q6_k
 * rows) convert weights to exactly the floats that avx2_dequantize_row
 * writes, and feed them through the same shape, so dot_row(row, x) is
 * bit-identical to dot_f32(dequantize_row(row), x). slm_matmul relies on that
 * to give a token the same result in a batch as alone. Types without a fused
 * kernel go through dequantize_row + dot_f32 literally, which is identical by
 * construction. The block decoders also match the scalar reference decoders
 * bit for bit (same operations in the same order), though tests only require
 * closeness. */
#if defined(__x86_64__) || defined(__i386__)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "avx2.c must be compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt)"
#endif

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels.h"
#include "quant/types.h"

/* CPUID directly rather than __builtin_cpu_supports, which not every
 * compiler knows "f16c" for. The OS must also save the YMM registers
 * (OSXSAVE set and XCR0 enabling SSE and AVX state). */
static int avx2_available(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (fma | osxsave | avx | f16c)) != (fma | osxsave | avx | f16c)) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & 6u) != 6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 5)) != 0; /* AVX2 */
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* ---- weight loaders: 8 consecutive elements as f32 ---------------------- */

static inline __m256 load_f32(const float *w) {
    return _mm256_loadu_ps(w);
}

static inline __m256 load_f16(const uint16_t *w) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)w));
}

static inline __m256 load_bf16(const uint16_t *w) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)w));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

/* Zero-padded partial vectors for the last n % 8 elements. */
static inline __m256 load_f32_tail(const float *w, int64_t k) {
    float buf[8] = {0};
    memcpy(buf, w, (size_t)k * sizeof(float));
    return _mm256_loadu_ps(buf);
}

static inline __m256 load_f16_tail(const uint16_t *w, int64_t k) {
    uint16_t buf[8] = {0};
    memcpy(buf, w, (size_t)k * sizeof(uint16_t));
    return load_f16(buf);
}

static inline __m256 load_bf16_tail(const uint16_t *w, int64_t k) {
    uint16_t buf[8] = {0};
    memcpy(buf, w, (size_t)k * sizeof(uint16_t));
    return load_bf16(buf);
}

/* The shared accumulation shape for element-wise weight types (see top). */
#define SLM_AVX2_DOT_BODY(W, X, N, LOAD, LOAD_TAIL)                                                \
    do {                                                                                           \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                 \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                                 \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= (N); i += 32) {                                                           \
            a0 = _mm256_fmadd_ps(LOAD((W) + i), _mm256_loadu_ps((X) + i), a0);                     \
            a1 = _mm256_fmadd_ps(LOAD((W) + i + 8), _mm256_loadu_ps((X) + i + 8), a1);             \
            a2 = _mm256_fmadd_ps(LOAD((W) + i + 16), _mm256_loadu_ps((X) + i + 16), a2);           \
            a3 = _mm256_fmadd_ps(LOAD((W) + i + 24), _mm256_loadu_ps((X) + i + 24), a3);           \
        }                                                                                          \
        for (; i + 8 <= (N); i += 8)                                                               \
            a0 = _mm256_fmadd_ps(LOAD((W) + i), _mm256_loadu_ps((X) + i), a0);                     \
        if (i < (N))                                                                               \
            a0 = _mm256_fmadd_ps(LOAD_TAIL((W) + i, (N)-i), load_f32_tail((X) + i, (N)-i), a0);    \
        return reduce4(a0, a1, a2, a3);                                                            \
    } while (0)

static float avx2_dot_f32(const float *a, const float *b, int64_t n) {
    SLM_AVX2_DOT_BODY(a, b, n, load_f32, load_f32_tail);
}

static float dot_f16(const uint16_t *w, const float *x, int64_t n) {
    SLM_AVX2_DOT_BODY(w, x, n, load_f16, load_f16_tail);
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    SLM_AVX2_DOT_BODY(w, x, n, load_bf16, load_bf16_tail);
}

/* ---- block formats (layouts in quant/types.h) ----------------------------
 * Each format decodes one 32-element step of a block into four 8-float
 * vectors holding exactly the values the scalar reference computes (same
 * operations in the same order: products with the scales, then the offset),
 * after a per-block PREP that decodes the scales. The dot and dequantize
 * functions below are generated from that pair, so they agree bit for bit.
 * Block rows are multiples of 32 elements, so the accumulation shape is the
 * 32-element loop of avx2_dot_f32 alone. */

static inline float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 32 signed bytes to 4 x 8 floats, in element order. */
static inline void bytes_to_ps(__m256i b, __m256 v[4]) {
    __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
    v[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    v[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    v[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    v[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* Widening bytes straight from memory into 32-bit lanes (q8_0, q4_0, q4_1:
 * one shuffle per 8 bytes, which for 4-bit codes yields 16 of them) measured
 * faster than byte-domain decoding for those formats; for q5_0/q5_1 and the
 * k-quants the byte-domain decoding below measured faster (Zen 5). */
static inline __m256i u8x8(const uint8_t *p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

/* Legacy 4-bit codes as 32-bit lanes: q[0..3] hold elements 0-7, 8-15,
 * 16-23, 24-31 (low nibbles of qs[0..15], then high nibbles). */
static inline void nibbles_epi32(const uint8_t *qs, __m256i q[4]) {
    const __m256i m = _mm256_set1_epi32(15);
    __m256i w0 = u8x8(qs), w1 = u8x8(qs + 8);
    q[0] = _mm256_and_si256(w0, m);
    q[1] = _mm256_and_si256(w1, m);
    q[2] = _mm256_srli_epi32(w0, 4);
    q[3] = _mm256_srli_epi32(w1, 4);
}

/* Legacy 4-bit codes: 16 bytes, low nibbles are elements 0..15, high 16..31. */
static inline __m256i nibbles_32(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte i = `val` when bit i of the little-endian word at p is set, else 0. */
static inline __m256i bits_32(const uint8_t *p, char val) {
    uint32_t bits;
    memcpy(&bits, p, 4);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    b = _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
    return _mm256_and_si256(b, _mm256_set1_epi8(val));
}

/* (32 bytes at p >> shift) & mask, per byte. */
static inline __m256i bytes_shift_mask(const uint8_t *p, int shift, char mask) {
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    b = _mm256_srl_epi16(b, _mm_cvtsi32_si128(shift));
    return _mm256_and_si256(b, _mm256_set1_epi8(mask));
}

typedef struct legacy_scales {
    __m256 d, m;
} legacy_scales;

/* q8_0: y = d * q */
static inline void q8_0_prep(const uint8_t *b, legacy_scales *s) {
    s->d = _mm256_set1_ps(half_at(b));
}
static inline void q8_0_step(const uint8_t *b, const legacy_scales *s, int j, __m256 v[4]) {
    (void)j;
    for (int k = 0; k < 4; k++) {
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b + 2 + 8 * k)));
        v[k] = _mm256_mul_ps(s->d, _mm256_cvtepi32_ps(q));
    }
}

/* q4_0: y = d * (q - 8) */
static inline void q4_0_step(const uint8_t *b, const legacy_scales *s, int j, __m256 v[4]) {
    (void)j;
    __m256i q[4];
    nibbles_epi32(b + 2, q);
    for (int k = 0; k < 4; k++)
        v[k] =
            _mm256_mul_ps(s->d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], _mm256_set1_epi32(8))));
}

/* q4_1: y = d * q + m */
static inline void q4_1_prep(const uint8_t *b, legacy_scales *s) {
    s->d = _mm256_set1_ps(half_at(b));
    s->m = _mm256_set1_ps(half_at(b + 2));
}
static inline void q4_1_step(const uint8_t *b, const legacy_scales *s, int j, __m256 v[4]) {
    (void)j;
    __m256i q[4];
    nibbles_epi32(b + 4, q);
    for (int k = 0; k < 4; k++)
        v[k] = _mm256_add_ps(_mm256_mul_ps(s->d, _mm256_cvtepi32_ps(q[k])), s->m);
}

/* q5_0: y = d * (q - 16), bit 4 of q from the qh word */
static inline void q5_0_step(const uint8_t *b, const legacy_scales *s, int j, __m256 v[4]) {
    (void)j;
    __m256i q = _mm256_or_si256(nibbles_32(b + 6), bits_32(b + 2, 0x10));
    bytes_to_ps(_mm256_sub_epi8(q, _mm256_set1_epi8(16)), v);
    for (int k = 0; k < 4; k++) v[k] = _mm256_mul_ps(s->d, v[k]);
}

/* q5_1: y = d * q + m */
static inline void q5_1_step(const uint8_t *b, const legacy_scales *s, int j, __m256 v[4]) {
    (void)j;
    bytes_to_ps(_mm256_or_si256(nibbles_32(b + 8), bits_32(b + 4, 0x10)), v);
    for (int k = 0; k < 4; k++) v[k] = _mm256_add_ps(_mm256_mul_ps(s->d, v[k]), s->m);
}

/* q4_k / q5_k: 8 sub-blocks of 32, y = (d * sc) * q - (dmin * m). */
typedef struct k4_scales {
    float dl[8], ml[8];
} k4_scales;

static inline void k4_prep(const uint8_t *b, k4_scales *s) {
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
        s->dl[j] = d * (float)scale;
        s->ml[j] = dmin * (float)min;
    }
}

static inline void k4_finish(const k4_scales *s, int j, __m256 v[4]) {
    __m256 dl = _mm256_set1_ps(s->dl[j]), ml = _mm256_set1_ps(s->ml[j]);
    for (int k = 0; k < 4; k++) v[k] = _mm256_sub_ps(_mm256_mul_ps(dl, v[k]), ml);
}

static inline void q4_k_step(const uint8_t *b, const k4_scales *s, int j, __m256 v[4]) {
    bytes_to_ps(bytes_shift_mask(b + 16 + 32 * (j / 2), 4 * (j % 2), 0x0f), v);
    k4_finish(s, j, v);
}

static inline void q5_k_step(const uint8_t *b, const k4_scales *s, int j, __m256 v[4]) {
    __m256i lo = bytes_shift_mask(b + 48 + 32 * (j / 2), 4 * (j % 2), 0x0f);
    __m256i hi = _mm256_slli_epi16(bytes_shift_mask(b + 16, j, 0x01), 4);
    bytes_to_ps(_mm256_or_si256(lo, hi), v);
    k4_finish(s, j, v);
}

/* q6_k: 16 sub-blocks of 16, y = (d * scale) * (q - 32). */
typedef struct k6_scales {
    float ds[16];
} k6_scales;

static inline void q6_k_prep(const uint8_t *b, k6_scales *s) {
    float d = half_at(b + 208);
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int i = 0; i < 16; i++) s->ds[i] = d * (float)sc[i];
}

static inline void q6_k_step(const uint8_t *b, const k6_scales *s, int j, __m256 v[4]) {
    int h = j / 4, k = j % 4;
    __m256i lo = bytes_shift_mask(b + 64 * h + 32 * (k & 1), 4 * (k >> 1), 0x0f);
    __m256i hi = _mm256_slli_epi16(bytes_shift_mask(b + 128 + 32 * h, 2 * k, 0x03), 4);
    bytes_to_ps(_mm256_sub_epi8(_mm256_or_si256(lo, hi), _mm256_set1_epi8(32)), v);
    __m256 d0 = _mm256_set1_ps(s->ds[8 * h + 2 * k]), d1 = _mm256_set1_ps(s->ds[8 * h + 2 * k + 1]);
    v[0] = _mm256_mul_ps(d0, v[0]);
    v[1] = _mm256_mul_ps(d0, v[1]);
    v[2] = _mm256_mul_ps(d1, v[2]);
    v[3] = _mm256_mul_ps(d1, v[3]);
}

/* Generates dot_NAME(row, x, n) and dequant_NAME(row, dst, n). */
#define SLM_AVX2_BLOCK_TYPE(NAME, QK, BYTES, STATE_T, PREP, STEP)                                  \
    static float dot_##NAME(const uint8_t *blk, const float *x, int64_t n) {                       \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                 \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                                 \
        for (int64_t i = 0; i + (QK) <= n; i += (QK), blk += (BYTES)) {                            \
            STATE_T st;                                                                            \
            PREP(blk, &st);                                                                        \
            for (int j = 0; j < (QK) / 32; j++) {                                                  \
                __m256 w[4];                                                                       \
                const float *xj = x + i + 32 * j;                                                  \
                STEP(blk, &st, j, w);                                                              \
                a0 = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xj), a0);                               \
                a1 = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xj + 8), a1);                           \
                a2 = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xj + 16), a2);                          \
                a3 = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xj + 24), a3);                          \
            }                                                                                      \
        }                                                                                          \
        return reduce4(a0, a1, a2, a3);                                                            \
    }                                                                                              \
    static void dequant_##NAME(const uint8_t *blk, float *dst, int64_t n) {                        \
        for (int64_t i = 0; i + (QK) <= n; i += (QK), blk += (BYTES)) {                            \
            STATE_T st;                                                                            \
            PREP(blk, &st);                                                                        \
            for (int j = 0; j < (QK) / 32; j++) {                                                  \
                __m256 w[4];                                                                       \
                STEP(blk, &st, j, w);                                                              \
                for (int k = 0; k < 4; k++) _mm256_storeu_ps(dst + i + 32 * j + 8 * k, w[k]);      \
            }                                                                                      \
        }                                                                                          \
    }

SLM_AVX2_BLOCK_TYPE(q8_0, 32, 34, legacy_scales, q8_0_prep, q8_0_step)
SLM_AVX2_BLOCK_TYPE(q4_0, 32, 18, legacy_scales, q8_0_prep, q4_0_step)
SLM_AVX2_BLOCK_TYPE(q4_1, 32, 20, legacy_scales, q4_1_prep, q4_1_step)
SLM_AVX2_BLOCK_TYPE(q5_0, 32, 22, legacy_scales, q8_0_prep, q5_0_step)
SLM_AVX2_BLOCK_TYPE(q5_1, 32, 24, legacy_scales, q4_1_prep, q5_1_step)
SLM_AVX2_BLOCK_TYPE(q4_k, 256, 144, k4_scales, k4_prep, q4_k_step)
SLM_AVX2_BLOCK_TYPE(q5_k, 256, 176, k4_scales, k4_prep, q5_k_step)
SLM_AVX2_BLOCK_TYPE(q6_k, 256, 210, k6_scales, q6_k_prep, q6_k_step)

typedef float (*block_dot_fn)(const uint8_t *row, const float *x, int64_t n);
typedef void (*block_dequant_fn)(const uint8_t *row, float *dst, int64_t n);

/* NULL for formats without a kernel here (they use the scalar decoder). */
static block_dot_fn block_dot(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q8_0:
        return dot_q8_0;
    case SLM_TYPE_Q4_0:
        return dot_q4_0;
    case SLM_TYPE_Q4_1:
        return dot_q4_1;
    case SLM_TYPE_Q5_0:
        return dot_q5_0;
    case SLM_TYPE_Q5_1:
        return dot_q5_1;
    case SLM_TYPE_Q4_K:
        return dot_q4_k;
    case SLM_TYPE_Q5_K:
        return dot_q5_k;
    case SLM_TYPE_Q6_K:
        return dot_q6_k;
    default:
        return NULL;
    }
}

static block_dequant_fn block_dequant(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q8_0:
        return dequant_q8_0;
    case SLM_TYPE_Q4_0:
        return dequant_q4_0;
    case SLM_TYPE_Q4_1:
        return dequant_q4_1;
    case SLM_TYPE_Q5_0:
        return dequant_q5_0;
    case SLM_TYPE_Q5_1:
        return dequant_q5_1;
    case SLM_TYPE_Q4_K:
        return dequant_q4_k;
    case SLM_TYPE_Q5_K:
        return dequant_q5_k;
    case SLM_TYPE_Q6_K:
        return dequant_q6_k;
    default:
        return NULL;
    }
}

/* ---- provider entry points ------------------------------------------------ */

static void avx2_axpy_f32(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

static void avx2_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    if (type == SLM_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
        const uint16_t *h = src;
        int f16 = type == SLM_TYPE_F16;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, f16 ? load_f16(h + i) : load_bf16(h + i));
        for (; i < n; i++) dst[i] = f16 ? slm_fp16_to_f32(h[i]) : slm_bf16_to_f32(h[i]);
    } else if (block_dequant(type)) {
        block_dequant(type)(src, dst, n);
    } else {
        slm_dequantize_row(type, src, dst, n);
    }
}

static float avx2_dot_row(uint32_t type, const void *row, const float *x, int64_t n, float *tmp) {
    switch (type) {
    case SLM_TYPE_F32:
        return avx2_dot_f32(row, x, n);
    case SLM_TYPE_F16:
        return dot_f16(row, x, n);
    case SLM_TYPE_BF16:
        return dot_bf16(row, x, n);
    default: {
        block_dot_fn fn = block_dot(type);
        if (fn) return fn(row, x, n);
        avx2_dequantize_row(type, row, tmp, n);
        return avx2_dot_f32(tmp, x, n);
    }
    }
}

const slm_provider slm_provider_avx2 = {
    .name = "avx2",
    .available = avx2_available,
    .dot_row = avx2_dot_row,
    .dot_f32 = avx2_dot_f32,
    .axpy_f32 = avx2_axpy_f32,
    .dequantize_row = avx2_dequantize_row,
};

#else
/* Not x86: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_avx2_unused;
#endif
