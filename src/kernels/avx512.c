/* Provider "avx512": x86 with AVX-512 F/BW/VL/DQ (compiled with those flags
 * only in this file; chosen at run time when the CPU and the OS have them).
 *
 * One accumulation shape for every dot product here, the "tile" shape: per
 * (row, token) pair four 16-lane FMA accumulators, 16-element chunk c going
 * into accumulator c % 4, the last n % 16 elements as one masked (zero
 * filled) chunk in the next accumulator in turn, then ((a0 + a1) + (a2 + a3))
 * and one horizontal sum. The tile kernels below compute R rows x T tokens
 * at once with exactly that shape for each pair, so:
 *  - dot_row(row, x) == dot_f32(dequantize_row(row), x) for every type, bit
 *    for bit (f16/bf16/f32 rows are converted exactly; block types are
 *    decoded by the avx2 provider's decoders, which match the reference);
 *  - a token gets the same bits from the batched (GEMM) path as alone;
 *  - results do not depend on the thread count (each output by one thread).
 *
 * Decode (one token): rows are dotted one at a time straight from their
 * stored type (f16/bf16 converted in registers); block types dequantize into
 * L1 scratch, then dot. Decode is bound by memory bandwidth here, so the
 * win is 512-bit loads with fewer instructions per byte. Prefill (a batch):
 * a tile of 8 rows is dequantized to f32 once, then 2-row x 3-token register
 * tiles (24 accumulators) over 512-column blocks that stay in L1, so each
 * loaded vector feeds several products instead of one. */
#if defined(__x86_64__)

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl (see CMakeLists.txt)"
#endif

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/types.h"

/* Rows dequantized at once in the batched path: what slm_matmul_scratch_floats
 * sizes the per-thread scratch for. */
#define AVX512_ROW_TILE 8

/* AVX-512 F, DQ, BW, VL (CPUID 7.0 EBX bits 16, 17, 30, 31), plus what the
 * avx2 decoders we call need (AVX2, FMA, F16C), and the OS saving the opmask
 * and all 32 ZMM registers (XCR0 bits 5-7) besides SSE/AVX state (1-2). */
static int avx512_available(void) {
    if (!slm_provider_avx2.available()) return 0;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned need = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
    if ((b & need) != need) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    return (xcr0_lo & 0xe6u) == 0xe6u;
}

/* AVX-512 VNNI (CPUID 7.0 ECX bit 11): the 8-bit activation path needs it;
 * without it every type takes the f32 path. */
static int has_vnni(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        cached = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11)) ? 1 : 0;
    }
    return cached;
}

/* ---- loaders: 16 elements as f32, whole or masked (zeros past the mask) --- */

static inline __m512 ld_f32(const float *p) {
    return _mm512_loadu_ps(p);
}
static inline __m512 ld_f32_m(const float *p, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, p);
}
static inline __m512 ld_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline __m512 ld_f16_m(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline __m512 ld_bf16(const uint16_t *p) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}
static inline __m512 ld_bf16_m(const uint16_t *p, __mmask16 m) {
    __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

/* ---- the tile kernel --------------------------------------------------------
 * out[r * T + t] = dot(w[r], x[t]) over n elements, in the shape described at
 * the top. R and T are constants, so the accumulators live in registers
 * (R * T * 4 of them: at most 24 of the 32). */
#define AVX512_TILE(NAME, WT, LD, LD_M, R, T)                                                      \
    static void NAME(const WT *const *w, const float *const *x, int64_t n, float *out) {           \
        __m512 acc[R][T][4];                                                                       \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                                 \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[r][t][k] =                 \
                    _mm512_setzero_ps();                                                           \
        int64_t i = 0;                                                                             \
        for (; i + 64 <= n; i += 64) {                                                             \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                  \
                __m512 xv[T];                                                                      \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] =                     \
                    _mm512_loadu_ps(x[t] + i + 16 * k);                                            \
                _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                           \
                    __m512 wv = LD(w[r] + i + 16 * k);                                             \
                    _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =          \
                        _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        /* up to three whole chunks, then the masked tail, in accumulator order */                 \
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                      \
            if (i >= n) break;                                                                     \
            int64_t left = n - i;                                                                  \
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);         \
            __m512 xv[T];                                                                          \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] =                         \
                _mm512_maskz_loadu_ps(m, x[t] + i);                                                \
            _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                               \
                __m512 wv = LD_M(w[r] + i, m);                                                     \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =              \
                    _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                      \
            }                                                                                      \
            i += left >= 16 ? 16 : left;                                                           \
        }                                                                                          \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) {                               \
            __m512 s = _mm512_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]),                    \
                                     _mm512_add_ps(acc[r][t][2], acc[r][t][3]));                   \
            out[r * (T) + t] = _mm512_reduce_add_ps(s);                                            \
        }                                                                                          \
    }

/* Decode: one row, one token, the row in its stored type. */
AVX512_TILE(tile_f32_1x1, float, ld_f32, ld_f32_m, 1, 1)
AVX512_TILE(tile_f16_1x1, uint16_t, ld_f16, ld_f16_m, 1, 1)
AVX512_TILE(tile_bf16_1x1, uint16_t, ld_bf16, ld_bf16_m, 1, 1)

/* ---- the GEMM tile (prefill) ------------------------------------------------
 * The same shape over columns [i0, i1) only, with the accumulators kept in
 * `st` between calls (storing and reloading a vector does not change it), so
 * that a row block x token block x column block stays in L1. i0 is a multiple
 * of 64 and so is i1 unless i1 == n: chunk c still lands in accumulator c % 4,
 * and the masked tail comes last, so each (row, token) gets dot_f32's bits.
 * When i1 == n the sums are written to out[r * T + t]. */
#define AVX512_GEMM(NAME, R, T)                                                                    \
    static void NAME(const float *const *w, const float *const *x, int64_t i0, int64_t i1,         \
                     int64_t n, __m512 *st, float *out) {                                          \
        __m512 acc[R][T][4];                                                                       \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                                 \
                _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[r][t][k] =                 \
                    st[(r * (T) + t) * 4 + k];                                                     \
        int64_t i = i0;                                                                            \
        for (; i + 64 <= i1; i += 64) {                                                            \
            _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                  \
                __m512 xv[T];                                                                      \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] =                     \
                    _mm512_loadu_ps(x[t] + i + 16 * k);                                            \
                _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                           \
                    __m512 wv = _mm512_loadu_ps(w[r] + i + 16 * k);                                \
                    _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =          \
                        _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (i1 < n) {                                                                              \
            _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                 \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                             \
                    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)                            \
                        st[(r * (T) + t) * 4 + k] = acc[r][t][k];                                  \
            return;                                                                                \
        }                                                                                          \
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {                                      \
            if (i >= n) break;                                                                     \
            int64_t left = n - i;                                                                  \
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);         \
            __m512 xv[T];                                                                          \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] =                         \
                _mm512_maskz_loadu_ps(m, x[t] + i);                                                \
            _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                               \
                __m512 wv = _mm512_maskz_loadu_ps(m, w[r] + i);                                    \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =              \
                    _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                      \
            }                                                                                      \
            i += left >= 16 ? 16 : left;                                                           \
        }                                                                                          \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) {                               \
            __m512 s = _mm512_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]),                    \
                                     _mm512_add_ps(acc[r][t][2], acc[r][t][3]));                   \
            out[r * (T) + t] = _mm512_reduce_add_ps(s);                                            \
        }                                                                                          \
    }

AVX512_GEMM(gemm_2x3, 2, 3)
AVX512_GEMM(gemm_2x2, 2, 2)
AVX512_GEMM(gemm_2x1, 2, 1)
AVX512_GEMM(gemm_1x3, 1, 3)
AVX512_GEMM(gemm_1x2, 1, 2)
AVX512_GEMM(gemm_1x1, 1, 1)

typedef void (*gemm_fn)(const float *const *w, const float *const *x, int64_t i0, int64_t i1,
                        int64_t n, __m512 *st, float *out);
/* [rows - 1][tokens - 1] */
static const gemm_fn GEMM[2][3] = {{gemm_1x1, gemm_1x2, gemm_1x3}, {gemm_2x1, gemm_2x2, gemm_2x3}};

/* Columns per block: a multiple of 64 (see AVX512_GEMM). 8 rows and 3 tokens
 * of 512 floats are 22 KiB, inside a 32-48 KiB L1. */
#define AVX512_COL_BLOCK 512

/* ---- 8-bit activations (decode and prefill of block types) --------------------
 * Each token's x is quantized once per matmul call (per thread: each thread
 * quantizes the same x the same way, so the result does not depend on the
 * thread count) into blocks of 32: int8 codes q = round(x / d) with
 * d = max|x| / 127, the scale d and the sum of the codes. A weight block
 * then costs one vpdpbusd (unsigned weight codes x signed activation codes,
 * 32 products) instead of 32 conversions and 4 FMAs. The weight offsets
 * (q - 8 in q4_0, q - 16 in q5_0) are taken out with the code sum, in integers
 * where the scale is shared (exact), else as one float term per block.
 * Results differ from the f32 path by the activation rounding: at most
 * sum_blocks(d_x / 2 * sum|w|). A token gets the same bits alone as in a
 * batch: the same quantization and the same per-block order. */

typedef struct x8_view {
    const int8_t *q;
    const float *d;
    const int32_t *s;
} x8_view;

/* Bytes of one token's quantized x (n a multiple of 32), kept a multiple of
 * 64 so that consecutive tokens stay aligned. */
static size_t x8_bytes(int64_t n) {
    size_t b = (size_t)n + (size_t)(n / 32) * (sizeof(float) + sizeof(int32_t));
    return (b + 63) & ~(size_t)63;
}

static x8_view x8_at(uint8_t *base, int64_t n) {
    x8_view v = {(const int8_t *)base, (const float *)(void *)(base + n),
                 (const int32_t *)(void *)(base + n + (n / 32) * 4)};
    return v;
}

static void quantize_x8(const float *x, int64_t n, uint8_t *out) {
    int8_t *q = (int8_t *)out;
    float *d = (float *)(void *)(out + n);
    int32_t *sum = (int32_t *)(void *)(out + n + (n / 32) * 4);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 32; b++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * b), v1 = _mm512_loadu_ps(x + 32 * b + 16);
        __m512 a = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
        float amax = _mm512_reduce_max_ps(a);
        float db = amax / 127.0f;
        float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        __m512 vi = _mm512_set1_ps(inv);
        /* round to nearest even (the default MXCSR mode), |code| <= 127 */
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vi));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vi));
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtepi32_epi8(i1));
        d[b] = db;
        sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float half_to_f32(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* 16 bytes of 4-bit codes -> 32 unsigned bytes (low nibbles are elements
 * 0..15, high nibbles 16..31, llama.cpp's legacy layout). */
static inline __m256i nib32(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte i = 0x10 when bit i of the 32-bit word at p is set (q5 high bits). */
static inline __m256i bit4_32(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
    return _mm256_maskz_set1_epi8((__mmask32)bits, 0x10);
}

/* One weight block decoded for the integer dot: unsigned codes w (or |w|
 * for q8_0, whose codes are signed), the scale, the offset subtracted from
 * every code (8 for q4_0, 16 for q5_0) and the block minimum (q4_1, q5_1). */
typedef struct wblock {
    __m256i w;
    float d, m;
    int32_t off;
} wblock;

static inline wblock decode_block(uint32_t type, const uint8_t *blk) {
    wblock k = {_mm256_setzero_si256(), half_to_f32(blk), 0.0f, 0};
    switch (type) {
    case SLM_TYPE_Q8_0:
        k.w = _mm256_loadu_si256((const __m256i *)(blk + 2));
        break;
    case SLM_TYPE_Q4_0:
        k.w = nib32(blk + 2);
        k.off = 8;
        break;
    case SLM_TYPE_Q5_0:
        k.w = _mm256_or_si256(nib32(blk + 6), bit4_32(blk + 2));
        k.off = 16;
        break;
    case SLM_TYPE_Q4_1:
        k.w = nib32(blk + 4);
        k.m = half_to_f32(blk + 2);
        break;
    default: /* SLM_TYPE_Q5_1 */
        k.w = _mm256_or_si256(nib32(blk + 8), bit4_32(blk + 4));
        k.m = half_to_f32(blk + 2);
        break;
    }
    return k;
}

static size_t block_bytes(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q8_0:
        return 34;
    case SLM_TYPE_Q4_0:
        return 18;
    case SLM_TYPE_Q5_0:
        return 22;
    case SLM_TYPE_Q4_1:
        return 20;
    default:
        return 24; /* q5_1 */
    }
}

/* out[t] = row . x8[t] for NT tokens (1..4), decoding each weight block
 * once for all of them. Block b of token t goes into accumulator b % 4 of
 * that token whatever NT is, so a token gets the same bits in any batch. */
static inline __attribute__((always_inline)) void
dot_x8_n(uint32_t type, const uint8_t *blk, const x8_view *x, int64_t n, float *out, const int NT) {
    const int64_t nb = n / 32;
    const size_t bb = block_bytes(type);
    const int q8 = type == SLM_TYPE_Q8_0;
    const int has_m = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[4][4];
    float corr[4] = {0, 0, 0, 0}; /* q4_1/q5_1: sum of m * d_x * code sums, in block order */
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[t][k] = _mm256_setzero_ps();
    int64_t b = 0;
#define SLM_X8_BLOCK(K)                                                                            \
    do {                                                                                           \
        wblock wb = decode_block(type, blk);                                                       \
        __m256i wu = q8 ? _mm256_abs_epi8(wb.w) : wb.w;                                            \
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {                                     \
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x[t].q + 32 * b));                   \
            if (q8) xv = _mm256_sign_epi8(xv, wb.w); /* |w| . sign(x, w) = w . x */                \
            __m256i p = _mm256_dpbusd_epi32(zero, wu, xv);                                         \
            /* (q - off) . x = q . x - off * sum(x): exact, in lane 0 */                           \
            if (wb.off != 0)                                                                       \
                p = _mm256_sub_epi32(                                                              \
                    p, _mm256_castsi128_si256(_mm_cvtsi32_si128(wb.off * x[t].s[b])));             \
            acc[t][K] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wb.d * x[t].d[b]),   \
                                        acc[t][K]);                                                \
            if (has_m) corr[t] += wb.m * x[t].d[b] * (float)x[t].s[b];                             \
        }                                                                                          \
        blk += bb;                                                                                 \
        b++;                                                                                       \
    } while (0)
    for (; b + 4 <= nb;) {
        SLM_X8_BLOCK(0);
        SLM_X8_BLOCK(1);
        SLM_X8_BLOCK(2);
        SLM_X8_BLOCK(3);
    }
    if (b < nb) SLM_X8_BLOCK(0);
    if (b < nb) SLM_X8_BLOCK(1);
    if (b < nb) SLM_X8_BLOCK(2);
#undef SLM_X8_BLOCK
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] =
        hsum256(_mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]),
                              _mm256_add_ps(acc[t][2], acc[t][3]))) +
        corr[t];
}

/* k-quants: super-blocks of 256 whose 32-element steps line up with the
 * activation blocks. q4_k/q5_k: w = (d * sc_j) * q - (dmin * m_j), per
 * sub-block j of 32 (the minimum as one float term per block, like q4_1).
 * q6_k: w = (d * sc_i) * (q - 32) with a scale per 16: the offset is taken
 * out per lane with a second vpdpbusd against ones (the code sums of each 4
 * activations), then each half of the lanes is multiplied by its integer
 * scale, all exact in int32, before one conversion. */
static inline __m256i shr_mask(const uint8_t *p, int shift, char mask) {
    __m256i b = _mm256_loadu_si256((const __m256i *)p);
    return _mm256_and_si256(_mm256_srl_epi16(b, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8(mask));
}

static inline __attribute__((always_inline)) void
dot_k_n(uint32_t type, const uint8_t *blk, const x8_view *x, int64_t n, float *out, const int NT) {
    const int64_t nsb = n / 256;
    const size_t bb = type == SLM_TYPE_Q4_K ? 144 : type == SLM_TYPE_Q5_K ? 176 : 210;
    const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi8(1);
    __m256 acc[4][4];
    float corr[4] = {0, 0, 0, 0};
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[t][k] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; sb++, blk += bb) {
        float dl[8], ml[8], d6 = 0.0f;
        const int8_t *sc6 = (const int8_t *)(blk + 192);
        if (type == SLM_TYPE_Q6_K) {
            d6 = half_to_f32(blk + 208);
        } else {
            /* the 6-bit scales and minimums, as the reference decodes them */
            float d = half_to_f32(blk), dmin = half_to_f32(blk + 2);
            const uint8_t *sc = blk + 4;
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
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            const int64_t b = sb * 8 + j;
            __m256i w, scv = zero;
            if (type == SLM_TYPE_Q4_K) {
                w = shr_mask(blk + 16 + 32 * (j / 2), 4 * (j % 2), 0x0f);
            } else if (type == SLM_TYPE_Q5_K) {
                w = _mm256_or_si256(shr_mask(blk + 48 + 32 * (j / 2), 4 * (j % 2), 0x0f),
                                    _mm256_slli_epi16(shr_mask(blk + 16, j, 0x01), 4));
            } else {
                const int h = j / 4, k = j % 4;
                __m256i lo = shr_mask(blk + 64 * h + 32 * (k & 1), 4 * (k >> 1), 0x0f);
                __m256i hi = shr_mask(blk + 128 + 32 * h, 2 * k, 0x03);
                w = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
                int s0 = sc6[8 * h + 2 * k], s1 = sc6[8 * h + 2 * k + 1];
                scv = _mm256_setr_epi32(s0, s0, s0, s0, s1, s1, s1, s1);
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x[t].q + 32 * b));
                __m256i p = _mm256_dpbusd_epi32(zero, w, xv);
                if (type == SLM_TYPE_Q6_K) {
                    __m256i xsum = _mm256_dpbusd_epi32(zero, ones, xv); /* per 4 codes */
                    p = _mm256_sub_epi32(p, _mm256_slli_epi32(xsum, 5));
                    p = _mm256_mullo_epi32(p, scv);
                    acc[t][j & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                                    _mm256_set1_ps(d6 * x[t].d[b]), acc[t][j & 3]);
                } else {
                    __m256 scale = _mm256_set1_ps(dl[j] * x[t].d[b]);
                    acc[t][j & 3] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc[t][j & 3]);
                    corr[t] += ml[j] * x[t].d[b] * (float)x[t].s[b];
                }
            }
        }
    }
    _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) out[t] =
        hsum256(_mm256_add_ps(_mm256_add_ps(acc[t][0], acc[t][1]),
                              _mm256_add_ps(acc[t][2], acc[t][3]))) -
        corr[t];
}

/* Specialized per type (a constant, so decode_block's switch and the offset
 * and minimum terms fold away) and per token count. */
typedef void (*dot_x8_fn)(const uint8_t *row, const x8_view *x, int64_t n, float *out);
#define SLM_X8_FNS(NAME, TYPE)                                                                     \
    static void NAME##_1(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_x8_n(TYPE, r, x, n, o, 1);                                                             \
    }                                                                                              \
    static void NAME##_2(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_x8_n(TYPE, r, x, n, o, 2);                                                             \
    }                                                                                              \
    static void NAME##_3(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_x8_n(TYPE, r, x, n, o, 3);                                                             \
    }                                                                                              \
    static void NAME##_4(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_x8_n(TYPE, r, x, n, o, 4);                                                             \
    }
SLM_X8_FNS(dot_q8_0, SLM_TYPE_Q8_0)
SLM_X8_FNS(dot_q4_0, SLM_TYPE_Q4_0)
SLM_X8_FNS(dot_q4_1, SLM_TYPE_Q4_1)
SLM_X8_FNS(dot_q5_0, SLM_TYPE_Q5_0)
SLM_X8_FNS(dot_q5_1, SLM_TYPE_Q5_1)
#undef SLM_X8_FNS
#define SLM_K_FNS(NAME, TYPE)                                                                      \
    static void NAME##_1(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_k_n(TYPE, r, x, n, o, 1);                                                              \
    }                                                                                              \
    static void NAME##_2(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_k_n(TYPE, r, x, n, o, 2);                                                              \
    }                                                                                              \
    static void NAME##_3(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_k_n(TYPE, r, x, n, o, 3);                                                              \
    }                                                                                              \
    static void NAME##_4(const uint8_t *r, const x8_view *x, int64_t n, float *o) {                \
        dot_k_n(TYPE, r, x, n, o, 4);                                                              \
    }
SLM_K_FNS(dot_q4_k, SLM_TYPE_Q4_K)
SLM_K_FNS(dot_q5_k, SLM_TYPE_Q5_K)
SLM_K_FNS(dot_q6_k, SLM_TYPE_Q6_K)
#undef SLM_K_FNS

/* The kernels for `type`, by token count - 1; NULL for other types. */
static const dot_x8_fn *dot_x8_table(uint32_t type) {
    static const dot_x8_fn q8_0[4] = {dot_q8_0_1, dot_q8_0_2, dot_q8_0_3, dot_q8_0_4};
    static const dot_x8_fn q4_0[4] = {dot_q4_0_1, dot_q4_0_2, dot_q4_0_3, dot_q4_0_4};
    static const dot_x8_fn q4_1[4] = {dot_q4_1_1, dot_q4_1_2, dot_q4_1_3, dot_q4_1_4};
    static const dot_x8_fn q5_0[4] = {dot_q5_0_1, dot_q5_0_2, dot_q5_0_3, dot_q5_0_4};
    static const dot_x8_fn q5_1[4] = {dot_q5_1_1, dot_q5_1_2, dot_q5_1_3, dot_q5_1_4};
    static const dot_x8_fn q4_k[4] = {dot_q4_k_1, dot_q4_k_2, dot_q4_k_3, dot_q4_k_4};
    static const dot_x8_fn q5_k[4] = {dot_q5_k_1, dot_q5_k_2, dot_q5_k_3, dot_q5_k_4};
    static const dot_x8_fn q6_k[4] = {dot_q6_k_1, dot_q6_k_2, dot_q6_k_3, dot_q6_k_4};
    switch (type) {
    case SLM_TYPE_Q8_0:
        return q8_0;
    case SLM_TYPE_Q4_0:
        return q4_0;
    case SLM_TYPE_Q4_1:
        return q4_1;
    case SLM_TYPE_Q5_0:
        return q5_0;
    case SLM_TYPE_Q5_1:
        return q5_1;
    case SLM_TYPE_Q4_K:
        return q4_k;
    case SLM_TYPE_Q5_K:
        return q5_k;
    case SLM_TYPE_Q6_K:
        return q6_k;
    default:
        return NULL;
    }
}

static int x8_type(uint32_t type) {
    return dot_x8_table(type) != NULL && has_vnni();
}

/* Tokens quantized at once in the batched path; the scratch has room for
 * them after the row tile (see slm_matmul_scratch_floats). */
#define AVX512_X8_TOKENS SLM_MATMUL_X8_TOKENS

static void matmul_rows_x8(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    const int64_t n = W->n_cols;
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    uint8_t *xq = (uint8_t *)(scratch + AVX512_ROW_TILE * stride);
    const size_t xb = x8_bytes(n);
    for (int64_t t0 = 0; t0 < n_tok; t0 += AVX512_X8_TOKENS) {
        int64_t nt = n_tok - t0 < AVX512_X8_TOKENS ? n_tok - t0 : AVX512_X8_TOKENS;
        x8_view xv[AVX512_X8_TOKENS];
        for (int64_t j = 0; j < nt; j++) {
            quantize_x8(X + (t0 + j) * x_stride, n, xq + (size_t)j * xb);
            xv[j] = x8_at(xq + (size_t)j * xb, n);
        }
        const dot_x8_fn *dot = dot_x8_table(W->type);
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes) {
            for (int64_t j = 0; j < nt; j += 4) {
                int k = nt - j >= 4 ? 4 : (int)(nt - j);
                float out[4];
                dot[k - 1](row, xv + j, n, out);
                for (int a = 0; a < k; a++) Y[(t0 + j + a) * y_stride + r] = out[a];
            }
        }
    }
}

static int float_type(uint32_t type) {
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16;
}

/* ---- provider entry points ----------------------------------------------------- */

static float avx512_dot_f32(const float *a, const float *b, int64_t n) {
    float r;
    tile_f32_1x1(&a, &b, n, &r);
    return r;
}

static void avx512_axpy_f32(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i,
                         _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 r =
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* f16/bf16 convert exactly; block types use the avx2 decoders (exactly the
 * reference's values, and already fast). */
static void avx512_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    if (type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) {
        const uint16_t *h = src;
        int f16 = type == SLM_TYPE_F16;
        int64_t i = 0;
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, f16 ? ld_f16(h + i) : ld_bf16(h + i));
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
            _mm512_mask_storeu_ps(dst + i, m, f16 ? ld_f16_m(h + i, m) : ld_bf16_m(h + i, m));
        }
        return;
    }
    slm_provider_avx2.dequantize_row(type, src, dst, n);
}

static float avx512_dot_row(uint32_t type, const void *row, const float *x, int64_t n, float *tmp) {
    float r;
    const uint16_t *h = row;
    switch (type) {
    case SLM_TYPE_F32:
        return avx512_dot_f32(row, x, n);
    case SLM_TYPE_F16:
        tile_f16_1x1(&h, &x, n, &r);
        return r;
    case SLM_TYPE_BF16:
        tile_bf16_1x1(&h, &x, n, &r);
        return r;
    default:
        /* Block types: the avx2 provider's fused decoders (its dot_row is
         * bit-identical to its dequantize_row + dot_f32, which the batched
         * path below uses). With VNNI, slm_matmul takes the 8-bit path for
         * the legacy types instead (see matmul_rows_x8). */
        return slm_provider_avx2.dot_row(type, row, x, n, tmp);
    }
}

/* One token: row by row in the stored type (one sequential stream: reading
 * four rows at once measured 3x slower from DRAM on 576-column rows). */
static void matvec_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *x, float *y,
                        float *tmp) {
    const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
    for (int64_t r = r0; r < r1; r++, row += W->row_bytes)
        y[r] = avx512_dot_row(W->type, row, x, W->n_cols, tmp);
}

/* A batch: each tile of up to AVX512_ROW_TILE rows is converted to f32 once
 * (f32 rows are used in place), then multiplied with the tokens in 2 x 3
 * register tiles over column blocks that stay in L1; the edges use smaller
 * tiles of the same shape. */
static void matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                        int64_t x_stride, float *Y, int64_t y_stride, float *scratch) {
    const int64_t n = W->n_cols;
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    const float *rows[AVX512_ROW_TILE];
    for (int64_t rb = r0; rb < r1; rb += AVX512_ROW_TILE) {
        int nr = (int)(r1 - rb < AVX512_ROW_TILE ? r1 - rb : AVX512_ROW_TILE);
        for (int k = 0; k < nr; k++) {
            const uint8_t *src = W->data + (size_t)(rb + k) * W->row_bytes;
            if (W->type == SLM_TYPE_F32) {
                rows[k] = (const float *)(const void *)src;
            } else {
                float *dst = scratch + (size_t)k * stride;
                avx512_dequantize_row(W->type, src, dst, n);
                rows[k] = dst;
            }
        }
        if (!float_type(W->type)) {
            /* the avx2 shape, to match avx512_dot_row for block types */
            for (int64_t t = 0; t < n_tok; t++)
                for (int k = 0; k < nr; k++)
                    Y[t * y_stride + rb + k] =
                        slm_provider_avx2.dot_f32(rows[k], X + t * x_stride, n);
            continue;
        }
        for (int64_t t = 0; t < n_tok;) {
            int nt = n_tok - t >= 3 ? 3 : (int)(n_tok - t);
            const float *xs[3];
            for (int j = 0; j < nt; j++) xs[j] = X + (t + j) * x_stride;
            /* accumulators of (row pair p, token j, k) between column blocks */
            __m512 st[AVX512_ROW_TILE / 2][2 * 3 * 4];
            memset(st, 0, sizeof st);
            float out[AVX512_ROW_TILE / 2][6];
            for (int64_t i0 = 0; i0 < n || i0 == 0; i0 += AVX512_COL_BLOCK) {
                int64_t i1 = n - i0 > AVX512_COL_BLOCK ? i0 + AVX512_COL_BLOCK : n;
                for (int k = 0, p = 0; k < nr; k += 2, p++) {
                    int two = nr - k >= 2;
                    GEMM[two][nt - 1](rows + k, xs, i0, i1, n, st[p], out[p]);
                }
                if (i1 == n) break;
            }
            for (int k = 0, p = 0; k < nr; k += 2, p++) {
                int nk = nr - k >= 2 ? 2 : 1;
                for (int a = 0; a < nk; a++)
                    for (int j = 0; j < nt; j++)
                        Y[(t + j) * y_stride + rb + k + a] = out[p][a * nt + j];
            }
            t += nt;
        }
    }
}

static void avx512_matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                               int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                               float *scratch) {
    if (x8_type(W->type))
        matmul_rows_x8(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
    else if (n_tok == 1)
        matvec_rows(W, r0, r1, X, Y, scratch);
    else
        matmul_rows(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
}

const slm_provider slm_provider_avx512 = {
    .name = "avx512",
    .available = avx512_available,
    .dot_row = avx512_dot_row,
    .dot_f32 = avx512_dot_f32,
    .axpy_f32 = avx512_axpy_f32,
    .dequantize_row = avx512_dequantize_row,
    .matmul_rows = avx512_matmul_rows,
    .int8_activations = x8_type,
};

#else
/* Not x86-64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_avx512_unused;
#endif
