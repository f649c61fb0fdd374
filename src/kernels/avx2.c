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
 * closeness.
 *
 * slm_matmul goes through avx2_matmul_rows: block types take an 8-bit
 * activation path below (int8_activations), for decode and prefill alike:
 * q8_0, q4_0, q4_1, q5_0, q5_1 with activations in blocks of 32, the
 * k-quants (q4_k, q5_k, q6_k) with activations in blocks of 256 and integer
 * sums per super-block; float types use dot_row per row (decode) or 1-row x
 * 3-token register tiles with the same accumulation (prefill). */
#if defined(__x86_64__) || defined(__i386__)

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "avx2.c must be compiled with -mavx2 -mfma -mf16c (see CMakeLists.txt)"
#endif

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/argmax.h"
#include "kernels/kernels.h"
#include "kernels/x86_kquant.h"
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

/* ---- 8-bit activations (legacy block types) --------------------------------
 * The scheme of the avx512 provider's int8 path (see avx512.c), at 256 bits
 * with vpmaddubsw + vpmaddwd instead of vpdpbusd, one 32-block per register,
 * for q4_1, q5_0 and q5_1 (q4_0 and q8_0 work in pairs of blocks, below).
 * Each token's x is quantized once per matmul call into blocks of 32: codes
 * c = round(x / d_x), d_x = max|x| / 127, stored as c + 128 (unsigned), with
 * d_x and d_x * sum(c) over the block's 8 int32 lanes (each lane covers 4
 * consecutive elements). A weight block is decoded to signed codes w, a
 * per-lane scale s, a per-lane minimum m (zero but in lane 0) and init =
 * -128 * (each lane's code sum). The integer part of a (row, token, block)
 * step is exactly each lane's sum(w * c):
 *   madd(maddubs(c + 128, w), 1) + init   (|w| <= 31: no int16 saturation,
 *                                          255 * 31 * 2 < 32768)
 * then acc = fma(float(p), s * d_x, acc) [+ fma(m, d_x * sum(c))], one
 * accumulator per (row, token), blocks in order, one fixed reduction: a token
 * gets the same bits alone (decode, weights decoded in registers) as in any
 * batch (prefill: 2 rows decoded once into L1, then 2 x 4 register tiles). */

#define A2_XB 96  /* per token and block: 32 codes + 128, 8 lanes d_x, 8 lanes d_x * sum */
#define A2_WB 128 /* per row and block: 32 codes, 8 lanes init, 8 lanes s, 8 lanes m */
#define A2_ROWS 2
#define A2_TOKS 4
#define A2_MAX_GROUP 32

static inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* max over the 8 lanes */
static inline float hmax8(__m256 a) {
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    return _mm_cvtss_f32(m4);
}

/* 32 int32 codes (q[k] holds elements 8k .. 8k + 7) as 32 int8 in order */
static inline __m256i pack_codes32(const __m256i q[4]) {
    const __m256i bytes =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One 32-block of activations: d_x = max|x| / 127 (returned), codes c =
 * round(x / d_x) as 32 bytes c + 128 in *codes, sum(c) in *sum. */
static inline float a2_block_codes(const float *x, __m256i *codes, int32_t *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], a = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        a = _mm256_max_ps(a, _mm256_andnot_ps(sign, v[k]));
    }
    const float amax = hmax8(a);
    const __m256 vi = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vi));
    *codes = _mm256_xor_si256(pack_codes32(q), _mm256_set1_epi8((char)0x80));
    *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    return amax / 127.0f;
}

static void a2_quantize(const float *x, int64_t n, uint8_t *out) {
    for (int64_t b = 0; b < n / 32; b++, out += A2_XB) {
        __m256i codes;
        int32_t sum;
        const float db = a2_block_codes(x + 32 * b, &codes, &sum), ds = db * (float)sum;
        _mm256_storeu_si256((__m256i *)(void *)out, codes);
        _mm256_storeu_ps((float *)(void *)(out + 32), _mm256_set1_ps(db));
        _mm256_storeu_ps((float *)(void *)(out + 64), _mm256_set1_ps(ds));
    }
}

typedef struct a2_block {
    __m256i w;
    __m256 s, m;
} a2_block;

static inline size_t a2_block_bytes(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q5_0:
        return 22;
    case SLM_TYPE_Q4_1:
        return 20;
    default:
        return 24; /* q5_1 */
    }
}

static inline __m256 lane0_ps(float v) {
    return _mm256_setr_ps(v, 0, 0, 0, 0, 0, 0, 0);
}

/* Block b (of 32 elements) of a row. */
static inline __attribute__((always_inline)) a2_block a2_decode(uint32_t type, const uint8_t *row,
                                                                int64_t b) {
    a2_block r;
    r.m = _mm256_setzero_ps();
    const uint8_t *blk = row + (size_t)b * a2_block_bytes(type);
    r.s = _mm256_set1_ps(half_at(blk));
    switch (type) {
    case SLM_TYPE_Q5_0:
        r.w = _mm256_sub_epi8(_mm256_or_si256(nibbles_32(blk + 6), bits_32(blk + 2, 0x10)),
                              _mm256_set1_epi8(16));
        break;
    case SLM_TYPE_Q4_1:
        r.w = nibbles_32(blk + 4);
        r.m = lane0_ps(half_at(blk + 2));
        break;
    default: /* q5_1 */
        r.w = _mm256_or_si256(nibbles_32(blk + 8), bits_32(blk + 4, 0x10));
        r.m = lane0_ps(half_at(blk + 2));
        break;
    }
    return r;
}

static inline int a2_has_min(uint32_t type) {
    return type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
}

static inline __m256i a2_init(__m256i w) {
    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8((char)0x80), w),
                                  _mm256_set1_epi16(1));
    return _mm256_sub_epi32(_mm256_setzero_si256(), p);
}

/* Each lane's sum(w * c); xu = c + 128. */
static inline __m256i a2_int(__m256i w, __m256i init, __m256i xu) {
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(xu, w), _mm256_set1_epi16(1)),
                            init);
}

#define A2_STEP(ACC, P, S, DX, M, DXS, HM)                                                         \
    do {                                                                                           \
        (ACC) = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P), _mm256_mul_ps((S), (DX)), (ACC));           \
        if (HM) (ACC) = _mm256_fmadd_ps((M), (DXS), (ACC));                                        \
    } while (0)

static inline __attribute__((always_inline)) float a2_dot_row(uint32_t type, const uint8_t *row,
                                                              const uint8_t *xq, int64_t n) {
    const int hm = a2_has_min(type);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, xq += A2_XB) {
        a2_block k = a2_decode(type, row, b);
        __m256i xu = _mm256_loadu_si256((const __m256i *)(const void *)xq);
        __m256 dx = _mm256_loadu_ps((const float *)(const void *)(xq + 32));
        __m256 dxs = hm ? _mm256_loadu_ps((const float *)(const void *)(xq + 64)) : dx;
        __m256i p = a2_int(k.w, a2_init(k.w), xu);
        A2_STEP(acc, p, k.s, dx, k.m, dxs, hm);
    }
    return hsum8(acc);
}

static inline __attribute__((always_inline)) void a2_pack(uint32_t type, const uint8_t *row,
                                                          int64_t n, uint8_t *out) {
    for (int64_t b = 0; b < n / 32; b++, out += A2_WB) {
        a2_block k = a2_decode(type, row, b);
        _mm256_storeu_si256((__m256i *)(void *)out, k.w);
        _mm256_storeu_si256((__m256i *)(void *)(out + 32), a2_init(k.w));
        _mm256_storeu_ps((float *)(void *)(out + 64), k.s);
        _mm256_storeu_ps((float *)(void *)(out + 96), k.m);
    }
}

/* out[r * T + t] for R packed rows and T packed tokens over nb blocks. */
static inline __attribute__((always_inline)) void a2_tile(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xp, size_t x_tok,
                                                          int64_t nb, float *out, const int R,
                                                          const int T, const int HM) {
    __m256 acc[A2_ROWS][A2_TOKS];
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, wp += A2_WB, xp += A2_XB) {
        __m256i xu[A2_TOKS];
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) xu[t] =
            _mm256_loadu_si256((const __m256i *)(const void *)(xp + (size_t)t * x_tok));
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) {
            const uint8_t *wq = wp + (size_t)r * w_row;
            __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)wq);
            __m256i init = _mm256_loadu_si256((const __m256i *)(const void *)(wq + 32));
            __m256 s = _mm256_loadu_ps((const float *)(const void *)(wq + 64));
            __m256 m = _mm256_loadu_ps((const float *)(const void *)(wq + 96));
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                const float *xf = (const float *)(const void *)(xp + (size_t)t * x_tok + 32);
                __m256i p = a2_int(w, init, xu[t]);
                A2_STEP(acc[r][t], p, s, _mm256_loadu_ps(xf), m, _mm256_loadu_ps(xf + 8), HM);
            }
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[r * T + t] = hsum8(acc[r][t]);
}

typedef void (*a2_tile_fn)(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,
                           int64_t nb, float *out);
/* The R x T instances of a tile kernel KERNEL(..., R, T, flag), as A_RxT
 * (flag 0) and B_RxT (flag 1), for every R <= A2_ROWS and T <= A2_TOKS. */
#define A2_TILE(KERNEL, A, B, R, T)                                                                \
    static void A##_##R##x##T(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,    \
                              int64_t nb, float *out) {                                            \
        KERNEL(wp, w_row, xp, x_tok, nb, out, R, T, 0);                                            \
    }                                                                                              \
    static void B##_##R##x##T(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,    \
                              int64_t nb, float *out) {                                            \
        KERNEL(wp, w_row, xp, x_tok, nb, out, R, T, 1);                                            \
    }
#define A2_TILES_ALL(KERNEL, A, B)                                                                 \
    A2_TILE(KERNEL, A, B, 1, 1)                                                                    \
    A2_TILE(KERNEL, A, B, 1, 2)                                                                    \
    A2_TILE(KERNEL, A, B, 1, 3)                                                                    \
    A2_TILE(KERNEL, A, B, 1, 4)                                                                    \
    A2_TILE(KERNEL, A, B, 2, 1)                                                                    \
    A2_TILE(KERNEL, A, B, 2, 2)                                                                    \
    A2_TILE(KERNEL, A, B, 2, 3)                                                                    \
    A2_TILE(KERNEL, A, B, 2, 4)
/* Their table [flag][rows - 1][tokens - 1]. */
#define A2_TILE_TABLE(A, B)                                                                        \
    {                                                                                              \
        {{A##_1x1, A##_1x2, A##_1x3, A##_1x4}, {A##_2x1, A##_2x2, A##_2x3, A##_2x4}}, {            \
            {B##_1x1, B##_1x2, B##_1x3, B##_1x4}, {                                                \
                B##_2x1, B##_2x2, B##_2x3, B##_2x4                                                 \
            }                                                                                      \
        }                                                                                          \
    }
A2_TILES_ALL(a2_tile, a2_tile, a2_tilem)
/* [minimums][rows - 1][tokens - 1] */
static const a2_tile_fn A2_TILES[2][A2_ROWS][A2_TOKS] = A2_TILE_TABLE(a2_tile, a2_tilem);

typedef void (*a2_rows_fn)(const uint8_t *data, size_t row_bytes, int64_t r0, int64_t r1, int64_t n,
                           const uint8_t *xq, float *y);
typedef void (*a2_pack_fn)(const uint8_t *row, int64_t n, uint8_t *out);
#define A2_TYPE(NAME, TYPE)                                                                        \
    static void a2_rows_##NAME(const uint8_t *data, size_t row_bytes, int64_t r0, int64_t r1,      \
                               int64_t n, const uint8_t *xq, float *y) {                           \
        const uint8_t *row = data + (size_t)r0 * row_bytes;                                        \
        for (int64_t r = r0; r < r1; r++, row += row_bytes) y[r] = a2_dot_row(TYPE, row, xq, n);   \
    }                                                                                              \
    static void a2_pack_##NAME(const uint8_t *row, int64_t n, uint8_t *out) {                      \
        a2_pack(TYPE, row, n, out);                                                                \
    }
A2_TYPE(q4_1, SLM_TYPE_Q4_1)
A2_TYPE(q5_0, SLM_TYPE_Q5_0)
A2_TYPE(q5_1, SLM_TYPE_Q5_1)
#undef A2_TYPE

/* The decode and packing kernels of `type`; 0 for types without an 8-bit path. */
static int a2_kernels(uint32_t type, a2_rows_fn *rows, a2_pack_fn *pack) {
#define A2_CASE(NAME, TYPE)                                                                        \
    case TYPE:                                                                                     \
        *rows = a2_rows_##NAME;                                                                    \
        *pack = a2_pack_##NAME;                                                                    \
        return 1;
    switch (type) {
        A2_CASE(q4_1, SLM_TYPE_Q4_1)
        A2_CASE(q5_0, SLM_TYPE_Q5_0)
        A2_CASE(q5_1, SLM_TYPE_Q5_1)
    default:
        return 0;
    }
#undef A2_CASE
}

static int avx2_x8_type(uint32_t type) {
    a2_rows_fn rows = NULL;
    a2_pack_fn pack = NULL;
    return a2_kernels(type, &rows, &pack);
}

/* ---- q4_0 and q8_0 in pairs of blocks, each lane summing 8 elements ---------
 * The avx512 quads (see avx512.c) at 256 bits: two blocks (64 weights) as two
 * registers, A with elements 0-15 of each block, B with elements 16-31,
 * block j in bytes 16j..16j+15 (q4_0: the low and the high nibbles of its 16
 * code bytes). Each lane then sums 8 elements of one block (lanes 0-3 the
 * first block, 4-7 the second) exactly, and the float step runs once per 64
 * weights instead of once per 32. Per lane:
 *    acc = fma(float(sum over its 8 elements of w * c), d_w * d_x, acc)
 * pairs in order, then one horizontal sum. The integer sum:
 *  - q4_0: vpmaddubsw of A and of B added as 16-bit sums (at most 2 * 255 * 8
 *    twice: no saturation), then one vpmaddwd. Decode multiplies the stored
 *    nibbles q = w + 8 (unsigned) with the signed activation codes and adds -8
 *    * (the lane's code sum) from the token side; prefill packs w and uses c +
 *    128 with -128 * (the lane's weight sum).
 *  - q8_0: vpmaddubsw(|w|, sign(c, w)) for A and for B (up to 2 * 128 * 127
 *    each, so they are widened by vpmaddwd before they are added).
 * Decode and prefill compute the same integers and the same float steps: a
 * token gets the same bits alone and in any batch. A row with an odd block
 * count ends in a pair whose second block is zero codes and scale (zero
 * codes and d_x on the token side). */
#define D2_XP 96   /* token, prefill: A and B codes + 128, 8 lanes of d_x */
#define D2_AUX 128 /* token, decode: A and B codes, 8 lanes of init, of d_x */
#define D2_WP 128  /* row, prefill: A and B codes w, 8 lanes of init, of d_w */

static int d2_type(uint32_t type) {
    return type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q8_0;
}

static inline size_t d2_block_bytes(int q8) {
    return q8 ? 34 : 18;
}

static void d2_quantize(const float *x, int64_t n, uint8_t *out) {
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    for (int64_t p = 0; p < np; p++, out += D2_XP) {
        float *dx = (float *)(void *)(out + 64);
        for (int j = 0; j < 2; j++) {
            const int64_t b = 2 * p + j;
            float db = 0.0f;
            if (b < nb) {
                __m256i c;
                int32_t sum;
                db = a2_block_codes(x + 32 * b, &c, &sum);
                _mm_storeu_si128((__m128i *)(void *)(out + 16 * j), _mm256_castsi256_si128(c));
                _mm_storeu_si128((__m128i *)(void *)(out + 32 + 16 * j),
                                 _mm256_extracti128_si256(c, 1));
            } else {
                memset(out + 16 * j, 0x80, 16);
                memset(out + 32 + 16 * j, 0x80, 16);
            }
            for (int k = 0; k < 4; k++) dx[4 * j + k] = db;
        }
    }
}

/* The decode side of a quantized token: signed codes, init = -8 * (each
 * lane's sum of its 8 codes; q4_0 only, q8_0 has no offset), d_x. */
static void d2_aux(const uint8_t *xp, int64_t n, int q8, uint8_t *aux) {
    const int64_t np = (n / 32 + 1) / 2;
    const __m256i flip = _mm256_set1_epi8((char)0x80), one8 = _mm256_set1_epi8(1);
    for (int64_t p = 0; p < np; p++, xp += D2_XP, aux += D2_AUX) {
        const __m256i a =
            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)xp), flip);
        const __m256i b =
            _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(xp + 32)), flip);
        _mm256_storeu_si256((__m256i *)(void *)aux, a);
        _mm256_storeu_si256((__m256i *)(void *)(aux + 32), b);
        if (!q8) {
            const __m256i ls = _mm256_madd_epi16(
                _mm256_add_epi16(_mm256_maddubs_epi16(one8, a), _mm256_maddubs_epi16(one8, b)),
                _mm256_set1_epi16(1));
            _mm256_storeu_si256((__m256i *)(void *)(aux + 64),
                                _mm256_mullo_epi32(ls, _mm256_set1_epi32(-8)));
        }
        memcpy(aux + 96, xp + 64, 32);
    }
}

/* A and B of blocks 2p and (when `two`) 2p + 1: q4_0 the unsigned nibbles
 * q = w + 8, q8_0 the signed codes w; a missing second block reads as zero
 * bytes. */
static inline __attribute__((always_inline)) void d2_codes(int q8, const uint8_t *blk, int two,
                                                           __m256i *a, __m256i *b) {
    if (q8) {
        const __m256i y0 = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
        const __m256i y1 = two ? _mm256_loadu_si256((const __m256i *)(const void *)(blk + 36))
                               : _mm256_setzero_si256();
        *a = _mm256_permute2x128_si256(y0, y1, 0x20);
        *b = _mm256_permute2x128_si256(y0, y1, 0x31);
        return;
    }
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
    const __m128i hi =
        two ? _mm_loadu_si128((const __m128i *)(const void *)(blk + 20)) : _mm_setzero_si128();
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    *a = _mm256_and_si256(v, low4);
    *b = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
}

/* d_w of the two blocks in lanes 0-3 and 4-7 (zero for a missing second). */
static inline __m256 d2_scales(int q8, const uint8_t *blk, int two) {
    uint16_t h0, h1 = 0;
    memcpy(&h0, blk, 2);
    if (two) memcpy(&h1, blk + d2_block_bytes(q8), 2);
    const __m128i h = _mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16));
    return _mm256_cvtph_ps(
        _mm_shuffle_epi8(h, _mm_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3)));
}

/* q8_0: each lane's sum(w * c) over its 8 elements, c signed. */
static inline __m256i d2_int_q8(__m256i wa, __m256i wb, __m256i ca, __m256i cb) {
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(wa), _mm256_sign_epi8(ca, wa)),
                          ones),
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(wb), _mm256_sign_epi8(cb, wb)),
                          ones));
}

static inline __attribute__((always_inline)) __m256 d2_step(int q8, const uint8_t *blk, int two,
                                                            const uint8_t *aux, __m256 acc) {
    __m256i a, b, p;
    d2_codes(q8, blk, two, &a, &b);
    const __m256i ca = _mm256_loadu_si256((const __m256i *)(const void *)aux);
    const __m256i cb = _mm256_loadu_si256((const __m256i *)(const void *)(aux + 32));
    if (q8) {
        p = d2_int_q8(a, b, ca, cb);
    } else {
        const __m256i t =
            _mm256_add_epi16(_mm256_maddubs_epi16(a, ca), _mm256_maddubs_epi16(b, cb));
        p = _mm256_add_epi32(_mm256_madd_epi16(t, _mm256_set1_epi16(1)),
                             _mm256_loadu_si256((const __m256i *)(const void *)(aux + 64)));
    }
    const __m256 dx = _mm256_loadu_ps((const float *)(const void *)(aux + 96));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(d2_scales(q8, blk, two), dx), acc);
}

static inline __attribute__((always_inline)) void
d2_rows(int q8, const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *aux, float *y) {
    const int64_t nb = W->n_cols / 32, full = nb / 2;
    const size_t pair = 2 * d2_block_bytes(q8);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *blk = W->data + (size_t)r * W->row_bytes, *aq = aux;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t p = 0; p < full; p++, blk += pair, aq += D2_AUX)
            acc = d2_step(q8, blk, 1, aq, acc);
        if (nb % 2) acc = d2_step(q8, blk, 0, aq, acc);
        y[r] = hsum8(acc);
    }
}
static void d2_rows_q4_0(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *aux,
                         float *y) {
    d2_rows(0, W, r0, r1, aux, y);
}
static void d2_rows_q8_0(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *aux,
                         float *y) {
    d2_rows(1, W, r0, r1, aux, y);
}

/* A row's pairs for the prefill tiles: signed codes w, init (q4_0; zero for
 * q8_0), d_w. */
static inline __attribute__((always_inline)) void d2_pack(int q8, const uint8_t *row, int64_t n,
                                                          uint8_t *out) {
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    const __m256i eight = _mm256_set1_epi8(8), hbit = _mm256_set1_epi8((char)0x80);
    for (int64_t p = 0; p < np; p++, row += 2 * d2_block_bytes(q8), out += D2_WP) {
        const int two = 2 * p + 1 < nb;
        __m256i wa, wb, init = _mm256_setzero_si256();
        d2_codes(q8, row, two, &wa, &wb);
        if (!q8) {
            wa = _mm256_sub_epi8(wa, eight);
            wb = _mm256_sub_epi8(wb, eight);
            init = _mm256_sub_epi32(
                init, _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(hbit, wa),
                                                         _mm256_maddubs_epi16(hbit, wb)),
                                        _mm256_set1_epi16(1)));
        }
        _mm256_storeu_si256((__m256i *)(void *)out, wa);
        _mm256_storeu_si256((__m256i *)(void *)(out + 32), wb);
        _mm256_storeu_si256((__m256i *)(void *)(out + 64), init);
        _mm256_storeu_ps((float *)(void *)(out + 96), d2_scales(q8, row, two));
    }
}
static void d2_pack_q4_0(const uint8_t *row, int64_t n, uint8_t *out) {
    d2_pack(0, row, n, out);
}
static void d2_pack_q8_0(const uint8_t *row, int64_t n, uint8_t *out) {
    d2_pack(1, row, n, out);
}

/* out[r * T + t] for R packed rows and T packed tokens over np pairs. */
static inline __attribute__((always_inline)) void d2_tile(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xp, size_t x_tok,
                                                          int64_t np, float *out, const int R,
                                                          const int T, const int Q8) {
    const __m256i ones = _mm256_set1_epi16(1), flip = _mm256_set1_epi8((char)0x80);
    __m256 acc[A2_ROWS][A2_TOKS];
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    for (int64_t p = 0; p < np; p++, wp += D2_WP, xp += D2_XP) {
        _Pragma("GCC unroll 2") for (int r = 0; r < R; r++) {
            const uint8_t *wq = wp + (size_t)r * w_row;
            const __m256i wa = _mm256_loadu_si256((const __m256i *)(const void *)wq);
            const __m256i wb = _mm256_loadu_si256((const __m256i *)(const void *)(wq + 32));
            const __m256i init = _mm256_loadu_si256((const __m256i *)(const void *)(wq + 64));
            const __m256 s = _mm256_loadu_ps((const float *)(const void *)(wq + 96));
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                const uint8_t *xt = xp + (size_t)t * x_tok;
                const __m256i xa = _mm256_loadu_si256((const __m256i *)(const void *)xt);
                const __m256i xb = _mm256_loadu_si256((const __m256i *)(const void *)(xt + 32));
                __m256i q;
                if (Q8) {
                    q = d2_int_q8(wa, wb, _mm256_xor_si256(xa, flip), _mm256_xor_si256(xb, flip));
                } else {
                    const __m256i i16 = _mm256_add_epi16(_mm256_maddubs_epi16(xa, wa),
                                                         _mm256_maddubs_epi16(xb, wb));
                    q = _mm256_add_epi32(_mm256_madd_epi16(i16, ones), init);
                }
                const __m256 dx = _mm256_loadu_ps((const float *)(const void *)(xt + 64));
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_mul_ps(s, dx), acc[r][t]);
            }
        }
    }
    _Pragma("GCC unroll 2") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[r * T + t] = hsum8(acc[r][t]);
}

A2_TILES_ALL(d2_tile, d2_tile, d2_tile8)

/* [q8_0][rows - 1][tokens - 1] */
static const a2_tile_fn D2_TILES[2][A2_ROWS][A2_TOKS] = A2_TILE_TABLE(d2_tile, d2_tile8);

/* ---- k-quants: integer sums per super-block (q4_k, q5_k, q6_k) ------------
 * The scheme of the avx512 provider's k8 path (see avx512.c) at 256 bits.
 * Each token's x is quantized per 256 elements (one d_x per super-block, as
 * llama.cpp's Q8_K), in x86_kquant.h's layout with the codes in element
 * order. A super-block's dot product is then an integer per lane:
 * vpmaddubsw of the unsigned weight codes (q4_k
 * 0..15, q5_k 0..31, q6_k 0..63) with the signed activation codes, vpmaddwd
 * with the 32-element block's scale (q6_k: its two 16-element scales), added
 * over the super-block; q6_k's offset of 32 comes off as 32 sum_g sc_g
 * csum16_g and q4_k/q5_k's minimums go to a second, 4-lane accumulator:
 *    acc  = fma(float(isum), d * d_x, acc)          8 lanes
 *    accm = fma(float(msum), -(dmin * d_x), accm)   4 lanes (q4_k, q5_k)
 * One kernel (k2_dot) computes a row against 1..K2_TOKS tokens with exactly
 * these steps per (row, token), so decode (one token) and prefill (tokens in
 * fours, the row's codes decoded once for them) give a token the same bits
 * alone and in any batch. */
#define K2_TOKS 4
#define K2_MAX_GROUP 32

static void k2_quantize(const float *x, int64_t n, uint8_t *out) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += XK_BYTES) {
        __m256 a = _mm256_setzero_ps();
        for (int k = 0; k < 32; k++)
            a = _mm256_max_ps(a, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
        const float amax = hmax8(a), d = amax / 127.0f;
        /* round to nearest even (the default MXCSR mode), |code| <= 127 */
        const __m256 vi = _mm256_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        int16_t s16[16];
        for (int j = 0; j < 8; j++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * j + 8 * k), vi));
            _mm256_storeu_si256((__m256i *)(void *)(out + 32 * j), pack_codes32(q));
            s16[2 * j] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            s16[2 * j + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
        }
        slm_xk_finish(out, s16, d);
    }
}

/* out[t] = dot(row, token t) for T tokens at xk + t * x_tok. */
static inline __attribute__((always_inline)) void k2_dot(const int q5, const int q6,
                                                         const uint8_t *row, const uint8_t *xk,
                                                         size_t x_tok, int64_t n, float *out,
                                                         const int T) {
    const size_t bb = q6 ? 210 : q5 ? 176 : 144;
    const __m256i low4 = _mm256_set1_epi8(0x0f), bit4 = _mm256_set1_epi8(0x10);
    const __m256i bits45 = _mm256_set1_epi8(0x30);
    __m256 acc[K2_TOKS];
    __m128 accm[K2_TOKS];
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        accm[t] = _mm_setzero_ps();
    }
    for (int64_t sb = 0; sb < n / 256; sb++) {
        const uint8_t *blk = row + (size_t)sb * bb, *xs = xk + (size_t)sb * XK_BYTES;
        __m256i isum[K2_TOKS];
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) isum[t] = _mm256_setzero_si256();
        if (q6) {
            const int8_t *sc = (const int8_t *)(const void *)(blk + 192);
            /* the 16 scales as words, even ones in the low lane, odd in the high:
             * block j's pair by one byte shuffle */
            const __m256i sc_eo = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
                _mm_loadu_si128((const __m128i *)(const void *)sc),
                _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                const __m256i ql0 =
                    _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * h));
                const __m256i ql1 =
                    _mm256_loadu_si256((const __m256i *)(const void *)(blk + 64 * h + 32));
                const __m256i qh =
                    _mm256_loadu_si256((const __m256i *)(const void *)(blk + 128 + 32 * h));
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
                    const int j = 4 * h + k; /* 32-element block */
                    const __m256i ql = k & 1 ? ql1 : ql0;
                    const __m256i lo =
                        _mm256_and_si256(k >> 1 ? _mm256_srli_epi16(ql, 4) : ql, low4);
                    const __m256i hi = _mm256_and_si256(k < 2 ? _mm256_slli_epi16(qh, 4 - 2 * k)
                                                              : _mm256_srli_epi16(qh, 2 * k - 4),
                                                        bits45);
                    const __m256i q = _mm256_or_si256(lo, hi);
                    const __m256i scl =
                        _mm256_shuffle_epi8(sc_eo, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
                    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                        const __m256i c = _mm256_loadu_si256(
                            (const __m256i *)(const void *)(xs + (size_t)t * x_tok + 32 * j));
                        isum[t] = _mm256_add_epi32(
                            isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q, c), scl));
                    }
                }
            }
            const __m256i sc16 =
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)sc));
            const float d = half_at(blk + 208);
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                const uint8_t *xb = xs + (size_t)t * x_tok;
                const __m256i corr = _mm256_madd_epi16(
                    sc16, _mm256_loadu_si256((const __m256i *)(const void *)(xb + XK_BSUM16)));
                isum[t] = _mm256_sub_epi32(isum[t], _mm256_slli_epi32(corr, 5));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]),
                                         _mm256_set1_ps(d * slm_xk_d(xb)), acc[t]);
            }
        } else {
            __m128i sc8, mn8;
            slm_x86_kscales(blk, &sc8, &mn8);
            /* the 8 scales as words in both lanes; block j's by one byte shuffle */
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));
            const size_t qs = q5 ? 48 : 16;
            const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(const void *)(blk + 16))
                                  : _mm256_setzero_si256();
            _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) {
                const __m256i raw =
                    _mm256_loadu_si256((const __m256i *)(const void *)(blk + qs + 32 * u));
                _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++) {
                    const int j = 2 * u + h; /* 32-element block */
                    __m256i w = _mm256_and_si256(h ? _mm256_srli_epi16(raw, 4) : raw, low4);
                    if (q5) /* bit j to bit 4 */
                        w = _mm256_or_si256(w,
                                            _mm256_and_si256(j < 4 ? _mm256_slli_epi16(qh, 4 - j)
                                                                   : _mm256_srli_epi16(qh, j - 4),
                                                             bit4));
                    const __m256i scl =
                        _mm256_shuffle_epi8(sc16, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
                    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                        const __m256i c = _mm256_loadu_si256(
                            (const __m256i *)(const void *)(xs + (size_t)t * x_tok + 32 * j));
                        isum[t] = _mm256_add_epi32(
                            isum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(w, c), scl));
                    }
                }
            }
            const __m128i mn16 = _mm_cvtepu8_epi16(mn8);
            const float d = half_at(blk), dmin = half_at(blk + 2);
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                const uint8_t *xb = xs + (size_t)t * x_tok;
                const float dx = slm_xk_d(xb);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_set1_ps(d * dx), acc[t]);
                const __m128i ms = _mm_madd_epi16(
                    mn16, _mm_loadu_si128((const __m128i *)(const void *)(xb + XK_BSUM32)));
                accm[t] = _mm_fmadd_ps(_mm_cvtepi32_ps(ms), _mm_set1_ps(-(dmin * dx)), accm[t]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
        __m128 m = _mm_add_ps(accm[t], _mm_movehl_ps(accm[t], accm[t]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[t] = hsum8(acc[t]) + _mm_cvtss_f32(m);
    }
}

/* Rows [r0, r1) against g tokens (x_tok bytes apart), four at a time. */
typedef void (*k2_rows_fn)(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *xk,
                           size_t x_tok, int64_t g, float *Y, int64_t y_stride);
#define K2_TYPE(NAME, Q5, Q6)                                                                      \
    static void k2_rows_##NAME(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *xk,     \
                               size_t x_tok, int64_t g, float *Y, int64_t y_stride) {              \
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;                                  \
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes) {                                   \
            for (int64_t j = 0; j < g; j += K2_TOKS) {                                             \
                float out[K2_TOKS];                                                                \
                const int nt = (int)(g - j < K2_TOKS ? g - j : K2_TOKS);                           \
                const uint8_t *xj = xk + (size_t)j * x_tok;                                        \
                switch (nt) {                                                                      \
                case 1:                                                                            \
                    k2_dot(Q5, Q6, row, xj, x_tok, W->n_cols, out, 1);                             \
                    break;                                                                         \
                case 2:                                                                            \
                    k2_dot(Q5, Q6, row, xj, x_tok, W->n_cols, out, 2);                             \
                    break;                                                                         \
                case 3:                                                                            \
                    k2_dot(Q5, Q6, row, xj, x_tok, W->n_cols, out, 3);                             \
                    break;                                                                         \
                default:                                                                           \
                    k2_dot(Q5, Q6, row, xj, x_tok, W->n_cols, out, 4);                             \
                }                                                                                  \
                for (int a = 0; a < nt; a++) Y[(j + a) * y_stride + r] = out[a];                   \
            }                                                                                      \
        }                                                                                          \
    }
K2_TYPE(q4_k, 0, 0)
K2_TYPE(q5_k, 1, 0)
K2_TYPE(q6_k, 0, 1)
#undef K2_TYPE

static k2_rows_fn k2_kernel(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q4_K:
        return k2_rows_q4_k;
    case SLM_TYPE_Q5_K:
        return k2_rows_q5_k;
    case SLM_TYPE_Q6_K:
        return k2_rows_q6_k;
    default:
        return NULL;
    }
}

static void matmul_rows_k2(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    const k2_rows_fn rows = k2_kernel(W->type);
    const int64_t n = W->n_cols;
    const size_t x_tok = (size_t)(n / 256) * XK_BYTES;
    uint8_t *xk = (uint8_t *)scratch;
    const size_t have = slm_matmul_scratch_floats(n) * sizeof(float);
    int64_t group = x_tok ? (int64_t)(have / x_tok) : 1;
    if (group > K2_MAX_GROUP) group = K2_MAX_GROUP;
    for (int64_t t0 = 0; t0 < n_tok; t0 += group) {
        const int64_t g = n_tok - t0 < group ? n_tok - t0 : group;
        for (int64_t j = 0; j < g; j++)
            k2_quantize(X + (t0 + j) * x_stride, n, xk + (size_t)j * x_tok);
        rows(W, r0, r1, xk, x_tok, g, Y + t0 * y_stride, y_stride);
    }
}

typedef void (*a2_quant_fn)(const float *x, int64_t n, uint8_t *out);

/* Prefill for the 8-bit legacy paths: tokens quantized by `quant` in groups
 * (as many as fit in the scratch after A2_ROWS packed rows, up to
 * A2_MAX_GROUP), each group against every A2_ROWS rows packed once by
 * `pack`, in register tiles ([rows - 1][tokens - 1]) over `len` units. */
static void a2_gemm(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                    int64_t x_stride, float *Y, int64_t y_stride, uint8_t *xq, size_t x_tok,
                    size_t w_row, int64_t len, a2_quant_fn quant, a2_pack_fn pack,
                    const a2_tile_fn (*tiles)[A2_TOKS]) {
    const int64_t n = W->n_cols;
    const size_t have = slm_matmul_scratch_floats(n) * sizeof(float);
    int64_t group = (int64_t)((have - A2_ROWS * w_row) / x_tok);
    if (group > A2_MAX_GROUP) group = A2_MAX_GROUP;
    if (group > A2_TOKS) group -= group % A2_TOKS; /* whole register tiles */
    uint8_t *wq = xq + (size_t)group * x_tok;
    for (int64_t t0 = 0; t0 < n_tok; t0 += group) {
        const int64_t g = n_tok - t0 < group ? n_tok - t0 : group;
        for (int64_t j = 0; j < g; j++) quant(X + (t0 + j) * x_stride, n, xq + (size_t)j * x_tok);
        for (int64_t rb = r0; rb < r1; rb += A2_ROWS) {
            const int nr = (int)(r1 - rb < A2_ROWS ? r1 - rb : A2_ROWS);
            for (int k = 0; k < nr; k++)
                pack(W->data + (size_t)(rb + k) * W->row_bytes, n, wq + (size_t)k * w_row);
            for (int64_t j = 0; j < g; j += A2_TOKS) {
                const int nt = (int)(g - j < A2_TOKS ? g - j : A2_TOKS);
                float out[A2_ROWS * A2_TOKS];
                tiles[nr - 1][nt - 1](wq, w_row, xq + (size_t)j * x_tok, x_tok, len, out);
                for (int k = 0; k < nr; k++)
                    for (int a = 0; a < nt; a++)
                        Y[(t0 + j + a) * y_stride + rb + k] = out[k * nt + a];
            }
        }
    }
}

static void matmul_rows_x8(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    a2_rows_fn rows = NULL;
    a2_pack_fn pack = NULL;
    a2_kernels(W->type, &rows, &pack);
    const int64_t n = W->n_cols, nb = n / 32;
    const size_t w_row = (size_t)nb * A2_WB, x_tok = (size_t)nb * A2_XB;
    uint8_t *xq = (uint8_t *)scratch;
    if (n_tok == 1) {
        a2_quantize(X, n, xq);
        rows(W->data, W->row_bytes, r0, r1, n, xq, Y);
        return;
    }
    a2_gemm(W, r0, r1, X, n_tok, x_stride, Y, y_stride, xq, x_tok, w_row, nb, a2_quantize, pack,
            A2_TILES[a2_has_min(W->type)]);
}

static void matmul_rows_d2(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    const int64_t n = W->n_cols, np = (n / 32 + 1) / 2;
    const size_t w_row = (size_t)np * D2_WP, x_tok = (size_t)np * D2_XP;
    const int q8 = W->type == SLM_TYPE_Q8_0;
    uint8_t *xq = (uint8_t *)scratch;
    if (n_tok == 1) {
        d2_quantize(X, n, xq);
        d2_aux(xq, n, q8, xq + x_tok);
        (q8 ? d2_rows_q8_0 : d2_rows_q4_0)(W, r0, r1, xq + x_tok, Y);
        return;
    }
    a2_gemm(W, r0, r1, X, n_tok, x_stride, Y, y_stride, xq, x_tok, w_row, np, d2_quantize,
            q8 ? d2_pack_q8_0 : d2_pack_q4_0, D2_TILES[q8]);
}

/* ---- the GEMM tile for float rows (prefill) ---------------------------------
 * One row against T tokens (T <= 3: four accumulators per pair fill the 16
 * registers) in dot_f32's exact shape, over columns [i0, i1) with the
 * accumulators kept in `st` between column blocks: i0 is a multiple of 32
 * and so is i1 unless i1 == n; the 8-element steps and the tail come after
 * the last 32-element step, as in SLM_AVX2_DOT_BODY, so each (row, token)
 * gets dot_row's bits. f16/bf16 rows are converted in registers. */
#define AVX2_GEMM(NAME, WT, LD, LD_TAIL, T)                                                        \
    static void NAME(const void *wp, const float *const *x, int64_t i0, int64_t i1, int64_t n,     \
                     __m256 *st, float *out) {                                                     \
        const WT *w = (const WT *)wp;                                                              \
        __m256 acc[T][4];                                                                          \
        _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++)                                      \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[t][k] =                        \
                i0 == 0 ? _mm256_setzero_ps() : st[t * 4 + k];                                     \
        int64_t i = i0;                                                                            \
        for (; i + 32 <= i1; i += 32) {                                                            \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                  \
                const __m256 wv = LD(w + i + 8 * k);                                               \
                _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++) acc[t][k] =                  \
                    _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + i + 8 * k), acc[t][k]);             \
            }                                                                                      \
        }                                                                                          \
        if (i1 < n) {                                                                              \
            _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++)                                  \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) st[t * 4 + k] = acc[t][k];     \
            return;                                                                                \
        }                                                                                          \
        for (; i + 8 <= n; i += 8) {                                                               \
            const __m256 wv = LD(w + i);                                                           \
            _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++) acc[t][0] =                      \
                _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + i), acc[t][0]);                         \
        }                                                                                          \
        if (i < n) {                                                                               \
            const __m256 wv = LD_TAIL(w + i, n - i);                                               \
            _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++) acc[t][0] =                      \
                _mm256_fmadd_ps(wv, load_f32_tail(x[t] + i, n - i), acc[t][0]);                    \
        }                                                                                          \
        _Pragma("GCC unroll 3") for (int t = 0; t < (T); t++) out[t] =                             \
            reduce4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);                                   \
    }
#define AVX2_GEMM_TYPE(P, WT, LD, LD_TAIL)                                                         \
    AVX2_GEMM(P##_1, WT, LD, LD_TAIL, 1)                                                           \
    AVX2_GEMM(P##_2, WT, LD, LD_TAIL, 2) AVX2_GEMM(P##_3, WT, LD, LD_TAIL, 3)
AVX2_GEMM_TYPE(a2_gemm, float, load_f32, load_f32_tail)
AVX2_GEMM_TYPE(a2_gemm16, uint16_t, load_f16, load_f16_tail)
AVX2_GEMM_TYPE(a2_gemmb, uint16_t, load_bf16, load_bf16_tail)
#undef AVX2_GEMM_TYPE
#undef AVX2_GEMM

typedef void (*a2_gemm_fn)(const void *w, const float *const *x, int64_t i0, int64_t i1, int64_t n,
                           __m256 *st, float *out);
/* [f32 / f16 / bf16][tokens - 1] */
static const a2_gemm_fn A2_GEMM[3][3] = {{a2_gemm_1, a2_gemm_2, a2_gemm_3},
                                         {a2_gemm16_1, a2_gemm16_2, a2_gemm16_3},
                                         {a2_gemmb_1, a2_gemmb_2, a2_gemmb_3}};

/* Columns per block (a multiple of 32). 2048 measured 7% faster than 512
 * on F16 prefill (tinyllama, Zen 4), as on avx512: fewer accumulator spills,
 * and the L2 keeps up. */
#define AVX2_COL_BLOCK 2048

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

/* ---- forward-pass vector ops (see kernels.h) ------------------------------ */

/* exp(x) for 8 lanes: x = k ln2 + r, a degree-6 polynomial for e^r (relative
 * error about 2e-7), times 2^k built in the exponent bits. x is clamped to
 * [-87.3, 88.3] so that 2^k stays a normal float: results below e^-87.3
 * come out as about 1e-38 instead of smaller, which no caller can tell. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

static void avx2_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m256d s = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        s = _mm256_fmadd_pd(v, v, s);
    }
    __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float sc = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vs = _mm256_set1_ps(sc);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                _mm256_loadu_ps(w + i)));
    for (; i < n; i++) out[i] = x[i] * sc * w[i];
}

static void avx2_swiglu(float *g, const float *u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 gv = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        _mm256_storeu_ps(
            g + i, _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* 8 elements of a K/V cache row from element i as f32; one element. */
static inline __m256 ld_kv8(const void *p, size_t i, int f16) {
    return f16 ? load_f16((const uint16_t *)p + i) : _mm256_loadu_ps((const float *)p + i);
}
static inline float ld_kv1(const void *p, size_t i, int f16) {
    return f16 ? slm_fp16_to_f32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

/* One head over an f32 or (f16 = 1) an f16 cache. */
static inline __attribute__((always_inline)) void attend1(const float *q, const void *k,
                                                          const void *v, int f16, int64_t kv_stride,
                                                          int32_t n_pos, int32_t hd, float scale,
                                                          float *att, float *out) {
    /* scores a key tile at a time: two 8-lane halves, accumulators over d
     * mod 2 */
    float mx = -INFINITY;
    for (int32_t p0 = 0; p0 < n_pos; p0 += SLM_KV_TILE) {
        const size_t t0 = slm_kv_tile_at(p0, 0, kv_stride);
        __m256 a[2][2] = {{_mm256_setzero_ps(), _mm256_setzero_ps()},
                          {_mm256_setzero_ps(), _mm256_setzero_ps()}};
        for (int32_t d = 0; d < hd; d += 2) {
            _Pragma("GCC unroll 2") for (int c = 0; c < 2; c++) {
                if (d + c >= hd) break;
                const size_t o = t0 + (size_t)(d + c) * SLM_KV_TILE;
                const __m256 w = _mm256_set1_ps(q[d + c]);
                a[c][0] = _mm256_fmadd_ps(w, ld_kv8(k, o, f16), a[c][0]);
                a[c][1] = _mm256_fmadd_ps(w, ld_kv8(k, o + 8, f16), a[c][1]);
            }
        }
        float sc[SLM_KV_TILE];
        const __m256 vs = _mm256_set1_ps(scale);
        _mm256_storeu_ps(sc, _mm256_mul_ps(_mm256_add_ps(a[0][0], a[1][0]), vs));
        _mm256_storeu_ps(sc + 8, _mm256_mul_ps(_mm256_add_ps(a[0][1], a[1][1]), vs));
        const int32_t np = n_pos - p0 < SLM_KV_TILE ? n_pos - p0 : SLM_KV_TILE;
        for (int32_t j = 0; j < np; j++) {
            att[p0 + j] = sc[j];
            if (sc[j] > mx) mx = sc[j];
        }
    }
    const __m256 vmax = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    int32_t p = 0;
    for (; p + 8 <= n_pos; p += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(att + p), vmax));
        vsum = _mm256_add_ps(vsum, e);
        _mm256_storeu_ps(att + p, e);
    }
    float sum = hsum8(vsum);
    for (; p < n_pos; p++) sum += att[p] = expf(att[p] - mx);
    const float inv = 1.0f / sum;
    for (p = 0; p < n_pos; p++) att[p] *= inv;
    int32_t c = 0;
    for (; c + 32 <= hd; c += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (p = 0; p < n_pos; p++) {
            const size_t vp = (size_t)p * (size_t)kv_stride + (size_t)c;
            __m256 w = _mm256_set1_ps(att[p]);
            a0 = _mm256_fmadd_ps(w, ld_kv8(v, vp, f16), a0);
            a1 = _mm256_fmadd_ps(w, ld_kv8(v, vp + 8, f16), a1);
            a2 = _mm256_fmadd_ps(w, ld_kv8(v, vp + 16, f16), a2);
            a3 = _mm256_fmadd_ps(w, ld_kv8(v, vp + 24, f16), a3);
        }
        _mm256_storeu_ps(out + c, a0);
        _mm256_storeu_ps(out + c + 8, a1);
        _mm256_storeu_ps(out + c + 16, a2);
        _mm256_storeu_ps(out + c + 24, a3);
    }
    for (; c + 8 <= hd; c += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (p = 0; p < n_pos; p++)
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(att[p]),
                                 ld_kv8(v, (size_t)p * (size_t)kv_stride + (size_t)c, f16), a0);
        _mm256_storeu_ps(out + c, a0);
    }
    for (; c < hd; c++) {
        float a = 0.0f;
        for (p = 0; p < n_pos; p++)
            a += att[p] * ld_kv1(v, (size_t)p * (size_t)kv_stride + (size_t)c, f16);
        out[c] = a;
    }
}

static void avx2_attend1(const float *q, const void *k, const void *v, uint32_t kv_type,
                         int64_t kv_stride, int32_t n_pos, int32_t hd, float scale, float *att,
                         float *out) {
    if (kv_type == SLM_TYPE_F16)
        attend1(q, k, v, 1, kv_stride, n_pos, hd, scale, att, out);
    else
        attend1(q, k, v, 0, kv_stride, n_pos, hd, scale, att, out);
}

/* Rows of W dequantized at once in the float batched path (what
 * slm_matmul_scratch_floats sizes the scratch for). */
#define AVX2_ROW_TILE 8

/* Block types take the 8-bit paths; float types are dotted row by row
 * (decode) or multiplied in place with 1 x 3 register tiles (prefill, the
 * same bits as dot_row); the remaining block types (q2_k, q3_k, ...) are
 * converted a tile of rows at a time and dotted with every token. */
/* int8_activations: blocks of 256 for the k-quants, 32 for the other 8-bit
 * types. */
static int avx2_int8_block(uint32_t type) {
    return k2_kernel(type) ? 256 : avx2_x8_type(type) || d2_type(type) ? 32 : 0;
}

static void avx2_matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                             int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                             float *scratch) {
    if (k2_kernel(W->type)) {
        matmul_rows_k2(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
        return;
    }
    if (d2_type(W->type)) {
        matmul_rows_d2(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
        return;
    }
    if (avx2_x8_type(W->type)) {
        matmul_rows_x8(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
        return;
    }
    const int64_t n = W->n_cols;
    if (n_tok == 1) {
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes)
            Y[r] = avx2_dot_row(W->type, row, X, n, scratch);
        return;
    }
    if (W->type == SLM_TYPE_F32 || W->type == SLM_TYPE_F16 || W->type == SLM_TYPE_BF16) {
        /* float rows in place: 1-row x 3-token tiles over column blocks */
        const int kind = W->type == SLM_TYPE_F16 ? 1 : W->type == SLM_TYPE_BF16 ? 2 : 0;
        for (int64_t rb = r0; rb < r1; rb += AVX2_ROW_TILE) {
            const int nr = (int)(r1 - rb < AVX2_ROW_TILE ? r1 - rb : AVX2_ROW_TILE);
            for (int64_t t = 0; t < n_tok; t += 3) {
                const int nt = n_tok - t >= 3 ? 3 : (int)(n_tok - t);
                const float *xs[3];
                for (int j = 0; j < nt; j++) xs[j] = X + (t + j) * x_stride;
                __m256 st[AVX2_ROW_TILE][12]; /* (written before read) */
                float out[AVX2_ROW_TILE][3];
                for (int64_t i0 = 0; i0 < n || i0 == 0; i0 += AVX2_COL_BLOCK) {
                    const int64_t i1 = n - i0 > AVX2_COL_BLOCK ? i0 + AVX2_COL_BLOCK : n;
                    for (int k = 0; k < nr; k++)
                        A2_GEMM[kind][nt - 1](W->data + (size_t)(rb + k) * W->row_bytes, xs, i0, i1,
                                              n, st[k], out[k]);
                    if (i1 == n) break;
                }
                for (int k = 0; k < nr; k++)
                    for (int j = 0; j < nt; j++) Y[(t + j) * y_stride + rb + k] = out[k][j];
            }
        }
        return;
    }
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    const float *rows[AVX2_ROW_TILE];
    for (int64_t rb = r0; rb < r1; rb += AVX2_ROW_TILE) {
        int nr = (int)(r1 - rb < AVX2_ROW_TILE ? r1 - rb : AVX2_ROW_TILE);
        for (int k = 0; k < nr; k++) {
            const uint8_t *src = W->data + (size_t)(rb + k) * W->row_bytes;
            if (W->type == SLM_TYPE_F32) {
                rows[k] = (const float *)(const void *)src;
            } else {
                avx2_dequantize_row(W->type, src, scratch + (size_t)k * stride, n);
                rows[k] = scratch + (size_t)k * stride;
            }
        }
        for (int64_t t = 0; t < n_tok; t++)
            for (int k = 0; k < nr; k++)
                Y[t * y_stride + rb + k] = avx2_dot_f32(rows[k], X + t * x_stride, n);
    }
}

/* Heads of one K/V group one after another (see kernels.h). */
static void avx2_attend(const float *q, int32_t n_q, const void *k, const void *v, uint32_t kv_type,
                        int64_t kv_stride, int32_t n_pos, int32_t hd, float scale, float *att,
                        float *out) {
    slm_attend_each(avx2_attend1, q, n_q, k, v, kv_type, kv_stride, n_pos, hd, scale, att, out);
}

static void avx2_to_f16(uint16_t *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++) dst[i] = slm_f32_to_fp16(src[i]);
}

static int32_t avx2_argmax_f32(const float *x, int32_t n) {
    return slm_argmax_lanes(x, n);
}

const slm_provider slm_provider_avx2 = {
    .name = "avx2",
    .available = avx2_available,
    .dot_row = avx2_dot_row,
    .dot_f32 = avx2_dot_f32,
    .axpy_f32 = avx2_axpy_f32,
    .dequantize_row = avx2_dequantize_row,
    .matmul_rows = avx2_matmul_rows,
    .int8_activations = avx2_int8_block,
    .rmsnorm = avx2_rmsnorm,
    .swiglu = avx2_swiglu,
    .attend = avx2_attend,
    .rope = slm_rope_avx2,
    .argmax_f32 = avx2_argmax_f32,
    .to_f16 = avx2_to_f16,
};

#else
/* Not x86: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_avx2_unused;
#endif
