/* Provider "avx512": x86 with AVX-512 F/BW/VL/DQ (compiled with those flags
 * only in this file; chosen at run time when the CPU and the OS have them).
 *
 * One accumulation shape for every f32 dot product here, the "tile" shape:
 * per (row, token) pair two 16-lane FMA accumulators, 16-element chunk c
 * going into accumulator c % 2, the last n % 16 elements as one masked (zero
 * filled) chunk in the next accumulator in turn, then (a0 + a1) and one
 * horizontal sum. The tile kernels below compute R rows x T tokens
 * at once with exactly that shape for each pair, so:
 *  - dot_row(row, x) == dot_f32(dequantize_row(row), x) for every type, bit
 *    for bit (f16/bf16/f32 rows are converted exactly; block types are
 *    decoded by the avx2 provider's decoders, which match the reference);
 *  - a token gets the same bits from the batched (GEMM) path as alone;
 *  - matmul_rows is dot_row's bits except where activations are rounded
 *    first: to 8 bits for block types with VNNI (int8_activations), to f16
 *    for f16 rows (f16_activations: half the L1 for x, see matvec_f16);
 *  - results do not depend on the thread count (each output by one thread).
 *
 * Decode (one token): rows are dotted one at a time straight from their
 * stored type (f16/bf16 converted in registers; f16 rows against an f16
 * copy of x); block types dequantize into
 * L1 scratch, then dot. Decode is bound by memory bandwidth here, so the
 * win is 512-bit loads with fewer instructions per byte (two accumulator
 * chains are enough to keep up with it). Prefill (a batch): 4-row x 3-token
 * register tiles (24 accumulators) over 512-column blocks that stay in L1,
 * so each loaded weight vector feeds 3 tokens and each activation vector 4
 * rows; f16/bf16 rows are read in place and converted in registers (the
 * conversion issues beside the FMAs), block types without VNNI are
 * dequantized to f32 a tile of 8 rows at a time first. Block types with VNNI
 * take the int8 path described further down instead. */
#if defined(__x86_64__)

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "avx512.c must be compiled with -mavx512f -mavx512bw -mavx512vl (see CMakeLists.txt)"
#endif

#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/argmax.h"
#include "kernels/kernels.h"
#include "kernels/x86_kquant.h"
#include "quant/types.h"

/* Rows dequantized at once in the batched path: what slm_matmul_scratch_floats
 * sizes the per-thread scratch for. */
#define AVX512_ROW_TILE 8

/* Decode streams each weight row once; for block types a software prefetch
 * this many bytes ahead keeps enough misses in flight (see the VBMI decode
 * below). f16/bf16/f32 rows are read with plain dense loads that the hardware
 * prefetchers follow well: a software prefetch there cost a quarter of the
 * single-thread speed (22 -> 17 GB/s), so they have none. */
#define DECODE_PREFETCH 4096

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
 * the top (two accumulators per pair). R and T are constants, so the
 * accumulators live in registers. */
#define AVX512_TILE(NAME, WT, LD, LD_M, XT, LDX, LDX_M, R, T)                                      \
    static void NAME(const WT *const *w, const XT *const *x, int64_t n, float *out) {              \
        __m512 acc[R][T][2];                                                                       \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                                 \
                _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) acc[r][t][k] =                 \
                    _mm512_setzero_ps();                                                           \
        int64_t i = 0;                                                                             \
        for (; i + 32 <= n; i += 32) {                                                             \
            _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {                                  \
                __m512 xv[T];                                                                      \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] =                     \
                    LDX(x[t] + i + 16 * k);                                                        \
                _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                           \
                    __m512 wv = LD(w[r] + i + 16 * k);                                             \
                    _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =          \
                        _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        /* up to one whole chunk, then the masked tail, in accumulator order */                    \
        _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {                                      \
            if (i >= n) break;                                                                     \
            int64_t left = n - i;                                                                  \
            __mmask16 m = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);         \
            __m512 xv[T];                                                                          \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) xv[t] = LDX_M(x[t] + i, m);     \
            _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) {                               \
                __m512 wv = LD_M(w[r] + i, m);                                                     \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) acc[r][t][k] =              \
                    _mm512_fmadd_ps(wv, xv[t], acc[r][t][k]);                                      \
            }                                                                                      \
            i += left >= 16 ? 16 : left;                                                           \
        }                                                                                          \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) out[r * (T) + t] =              \
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));                   \
    }

/* Decode: one row, one token, the row in its stored type. */
AVX512_TILE(tile_f32_1x1, float, ld_f32, ld_f32_m, float, ld_f32, ld_f32_m, 1, 1)
AVX512_TILE(tile_f16_1x1, uint16_t, ld_f16, ld_f16_m, float, ld_f32, ld_f32_m, 1, 1)
AVX512_TILE(tile_bf16_1x1, uint16_t, ld_bf16, ld_bf16_m, float, ld_f32, ld_f32_m, 1, 1)
/* f16 rows against an f16 copy of x (f16_activations). */
AVX512_TILE(tile_f16x16_1x1, uint16_t, ld_f16, ld_f16_m, uint16_t, ld_f16, ld_f16_m, 1, 1)

/* ---- the GEMM tile (prefill) ------------------------------------------------
 * The same shape over columns [i0, i1) only, with the accumulators kept in
 * `st` between calls (storing and reloading a vector does not change it), so
 * that a row block x token block x column block stays in L1. i0 is a multiple
 * of 32 and so is i1 unless i1 == n (i0 == 0 starts from zero, not st):
 * chunk c still lands in accumulator c % 2,
 * and the masked tail comes last, so each (row, token) gets dot_f32's bits.
 * When i1 == n the sums are written to out[r * T + t]. */
#define AVX512_GEMM(NAME, WT, LD, LD_M, R, T)                                                      \
    static void NAME(const void *const *wp, const float *const *x, int64_t i0, int64_t i1,         \
                     int64_t n, __m512 *st, float *out) {                                          \
        const WT *w[R];                                                                            \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++) w[r] = (const WT *)wp[r];           \
        __m512 acc[R][T][2];                                                                       \
        _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                     \
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                                 \
                _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) acc[r][t][k] =                 \
                    i0 == 0 ? _mm512_setzero_ps() : st[(r * (T) + t) * 2 + k];                     \
        int64_t i = i0;                                                                            \
        for (; i + 32 <= i1; i += 32) {                                                            \
            _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {                                  \
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
        if (i1 < n) {                                                                              \
            _Pragma("GCC unroll 32") for (int r = 0; r < (R); r++)                                 \
                _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++)                             \
                    _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++)                            \
                        st[(r * (T) + t) * 2 + k] = acc[r][t][k];                                  \
            return;                                                                                \
        }                                                                                          \
        _Pragma("GCC unroll 2") for (int k = 0; k < 2; k++) {                                      \
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
            _Pragma("GCC unroll 32") for (int t = 0; t < (T); t++) out[r * (T) + t] =              \
                _mm512_reduce_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]));                   \
    }

/* Weights in f32 (rows converted to f32, or f32 in place), f16 or bf16: the
 * latter two are converted in registers as decode does (the same floats), so
 * the tile reads the stored rows without a conversion pass. */
#define AVX512_GEMM_ROW(P, WT, LD, LD_M, R)                                                        \
    AVX512_GEMM(P##_##R##x1, WT, LD, LD_M, R, 1)                                                   \
    AVX512_GEMM(P##_##R##x2, WT, LD, LD_M, R, 2) AVX512_GEMM(P##_##R##x3, WT, LD, LD_M, R, 3)
#define AVX512_GEMM_TYPE(P, WT, LD, LD_M)                                                          \
    AVX512_GEMM_ROW(P, WT, LD, LD_M, 1)                                                            \
    AVX512_GEMM_ROW(P, WT, LD, LD_M, 2)                                                            \
    AVX512_GEMM_ROW(P, WT, LD, LD_M, 3) AVX512_GEMM_ROW(P, WT, LD, LD_M, 4)
AVX512_GEMM_TYPE(gemm, float, ld_f32, ld_f32_m)
AVX512_GEMM_TYPE(gemm16, uint16_t, ld_f16, ld_f16_m)
AVX512_GEMM_TYPE(gemmb, uint16_t, ld_bf16, ld_bf16_m)
#undef AVX512_GEMM_TYPE
#undef AVX512_GEMM_ROW

typedef void (*gemm_fn)(const void *const *w, const float *const *x, int64_t i0, int64_t i1,
                        int64_t n, __m512 *st, float *out);
#define AVX512_GEMM_TABLE(P)                                                                       \
    {                                                                                              \
        {P##_1x1, P##_1x2, P##_1x3}, {P##_2x1, P##_2x2, P##_2x3}, {P##_3x1, P##_3x2, P##_3x3}, {   \
            P##_4x1, P##_4x2, P##_4x3                                                              \
        }                                                                                          \
    }
/* [f32 / f16 / bf16][rows - 1][tokens - 1] */
static const gemm_fn GEMM[3][4][3] = {AVX512_GEMM_TABLE(gemm), AVX512_GEMM_TABLE(gemm16),
                                      AVX512_GEMM_TABLE(gemmb)};
#undef AVX512_GEMM_TABLE

/* Columns per block: a multiple of 32 (see AVX512_GEMM). Measured on F16
 * prefill (Zen 4, 32 KiB L1): 512 columns 88 tok/s on llama3.2-1b, 1024-4096
 * and unblocked 92-95 (fewer accumulator spills; the L2 keeps up), 256
 * slower still; 2048 keeps the 8192-column rows blocked. */
#define AVX512_COL_BLOCK 2048

/* ---- 8-bit activations: an int8 GEMM for the legacy block types (VNNI) -----
 * (q4_1 and q5_1, the types with a minimum; q4_0, q5_0 and q8_0 work in
 * quads of blocks and the k-quants per super-block, both below.)
 * Each token's x is quantized once per matmul call (per thread: each thread
 * quantizes the same x the same way, so the result does not depend on the
 * thread count) into blocks of 32: int8 codes c = round(x / d_x) with
 * d_x = max|x| / 127. Everything then works on pairs of 32-blocks, 64
 * elements, one 512-bit register:
 *  - activations are stored as unsigned bytes c + 128 (vpdpbusd's unsigned
 *    operand), with d_x and d_x * sum(c) spread over the 16 int32 lanes (lanes
 *    0-7 cover the first block, 8-15 the second; each lane covers 4
 *    consecutive elements);
 *  - a weight pair is decoded to int8 codes w (q4_1, q5_1 store w >= 0),
 *    plus init = -128 * (sum of each lane's 4 codes),
 *    a per-lane weight scale s (the block's d) and a per-lane minimum m
 *    (q4_1, q5_1; zero but in lanes 0 and 8).
 * One (row, token, pair) step is then, lane by lane:
 *    acc = fma(float(dpbusd(init, x + 128, w)), s * d_x, acc)
 *          [ and accm = fma(m, d_x * sum(c), accm) for types with minimums ]
 * where the integer part is exactly sum(w * c) over the lane's 4 elements.
 * One accumulator per (row, token) (two with minimums, each its own chain of
 * dependent FMAs), pairs in order, then one horizontal sum of acc (+ accm) at
 * the end: a token gets the same bits alone (decode: the weights decoded in
 * registers, matvec_x8) as in any batch (prefill: matmul_x8, which decodes
 * a tile of 4 rows once into L1 and runs 4 rows x 4 tokens register tiles
 * over it, so every weight pair loaded feeds 4 tokens and every activation
 * pair 4 rows), whatever the split of rows between threads. Results differ
 * from the f32 path by the activation rounding: at most
 * sum_blocks(d_x / 2 * sum|w|). */

/* One token's pair: 64 bytes of codes + 128, 16 lanes of d_x, 16 of d_x * sum(c). */
#define XP_BYTES 192
/* One row's pair: 64 signed codes, 16 int32 lanes of init, 16 of s, 16 of m. */
#define WP_BYTES 256
/* Rows decoded at once, and tokens per register tile. */
#define X8_ROWS 4
#define X8_TOKS 4

static inline float half_to_f32(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* One 32-block of activations: d_x = max|x| / 127 (returned), codes c =
 * round(x / d_x) stored as c + 128, elements 0-15 at lo and 16-31 at hi, and
 * sum(c) in *sum. */
static inline float x8_block(const float *x, uint8_t *lo, uint8_t *hi, int32_t *sum) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m128i flip = _mm_set1_epi8((char)0x80);
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax =
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1)));
    const __m512 vi = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    /* round to nearest even (the default MXCSR mode), |code| <= 127 */
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vi));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vi));
    _mm_storeu_si128((__m128i *)(void *)lo, _mm_xor_si128(_mm512_cvtepi32_epi8(i0), flip));
    _mm_storeu_si128((__m128i *)(void *)hi, _mm_xor_si128(_mm512_cvtepi32_epi8(i1), flip));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    return amax / 127.0f;
}

/* x (n a multiple of 32) into ceil(n / 64) pairs; a missing second block of
 * the last pair is all zero codes with zero scales. */
static void quantize_xp(const float *x, int64_t n, uint8_t *out) {
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    for (int64_t p = 0; p < np; p++) {
        uint8_t *o = out + p * XP_BYTES;
        float *dx = (float *)(void *)(o + 64), *dxs = dx + 16;
        for (int h = 0; h < 2; h++) {
            const int64_t b = 2 * p + h;
            float db = 0.0f, ds = 0.0f;
            if (b < nb) {
                int32_t sum;
                db = x8_block(x + 32 * b, o + 32 * h, o + 32 * h + 16, &sum);
                ds = db * (float)sum;
            } else {
                memset(o + 32 * h, 0x80, 32);
            }
            for (int k = 0; k < 8; k++) {
                dx[8 * h + k] = db;
                dxs[8 * h + k] = ds;
            }
        }
    }
}

/* ---- weight pairs ---- */

typedef struct wpair {
    __m512i w; /* signed codes */
    __m512 s;  /* per-lane scale */
    __m512 m;  /* per-lane minimum (types with minimums) */
} wpair;

static inline __m512 halves_ps(float a, float b) {
    return _mm512_mask_blend_ps((__mmask16)0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}
static inline __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
static inline __m512i pair_init(__m512i w) {
    const __m512i z = _mm512_setzero_si512();
    return _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, _mm512_set1_epi8((char)0x80), w));
}

/* 16 bytes of 4-bit codes -> 32 unsigned bytes (low nibbles are elements
 * 0..15, high nibbles 16..31, llama.cpp's legacy layout). */
static inline __m256i nib32(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)qs), m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Byte i = 0x10 when bit i of the 32-bit word at p is set (q5 high bits). */
static inline __m256i bit4_32(const uint8_t *p) {
    uint32_t bits;
    memcpy(&bits, p, 4);
    return _mm256_maskz_set1_epi8((__mmask32)bits, 0x10);
}

static inline size_t legacy_block_bytes(uint32_t type) {
    return type == SLM_TYPE_Q4_1 ? 20 : 24; /* q5_1 */
}

/* The 32 signed codes of one legacy block, its scale and minimum. */
static inline __m256i legacy_codes(uint32_t type, const uint8_t *blk, float *d, float *m) {
    *d = half_to_f32(blk);
    *m = half_to_f32(blk + 2);
    if (type == SLM_TYPE_Q4_1) return nib32(blk + 4);
    return _mm256_or_si256(nib32(blk + 8), bit4_32(blk + 4)); /* q5_1 */
}

/* Pair p of a row of nb legacy blocks. */
static inline __attribute__((always_inline)) wpair legacy_pair(uint32_t type, const uint8_t *row,
                                                               int64_t p, int64_t nb) {
    const size_t bb = legacy_block_bytes(type);
    const uint8_t *blk = row + (size_t)(2 * p) * bb;
    float d0, m0, d1 = 0.0f, m1 = 0.0f;
    __m256i w0 = legacy_codes(type, blk, &d0, &m0), w1 = _mm256_setzero_si256();
    if (2 * p + 1 < nb) w1 = legacy_codes(type, blk + bb, &d1, &m1);
    wpair r;
    r.w = join256(w0, w1);
    r.s = halves_ps(d0, d1);
    r.m = _mm512_maskz_mov_ps((__mmask16)0x0101, halves_ps(m0, m1));
    return r;
}

static inline int x8_has_min(uint32_t type) {
    return type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
}

/* The step described above (its minimum part is separate: X8_MIN_STEP). */
#define X8_STEP(ACC, INIT, XU, W, S, DX)                                                           \
    do {                                                                                           \
        __m512i q_ = _mm512_dpbusd_epi32((INIT), (XU), (W));                                       \
        (ACC) = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q_), _mm512_mul_ps((S), (DX)), (ACC));          \
    } while (0)
#define X8_MIN_STEP(ACCM, M, DXS) ((ACCM) = _mm512_fmadd_ps((M), (DXS), (ACCM)))

/* ---- decode: one token, weights decoded in registers ---- */

/* Decode needs fewer operations per pair when the token side carries more:
 * `aux` holds per pair the signed codes c, computed once per call for all
 * rows. Then each lane's sum(q * c) is one vpdpbusd of the stored codes q
 * (unsigned: q4_1 and q5_1 have no offset). */
static inline __attribute__((always_inline)) float
dot_x8_row(uint32_t type, const uint8_t *row, const uint8_t *xp, const uint8_t *aux, int64_t n) {
    /* the legacy types without VBMI (k-quants: the k8 kernels below) */
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    const int hm = x8_has_min(type);
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const uint8_t *xq = xp + p * XP_BYTES, *aq = aux + p * 64;
        _mm_prefetch((const char *)row + (size_t)p * 2 * legacy_block_bytes(type) + DECODE_PREFETCH,
                     _MM_HINT_T0);
        wpair wp = legacy_pair(type, row, p, nb);
        __m512i q = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wp.w, _mm512_loadu_si512(aq));
        __m512 dx = _mm512_loadu_ps((const float *)(const void *)(xq + 64));
        __m512 dxs = hm ? _mm512_loadu_ps((const float *)(const void *)(xq + 128)) : dx;
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_mul_ps(wp.s, dx), acc);
        if (hm) X8_MIN_STEP(accm, wp.m, dxs);
    }
    return _mm512_reduce_add_ps(hm ? _mm512_add_ps(acc, accm) : acc);
}

/* The decode side of a quantized token (see dot_x8_row). */
static void x8_aux(const uint8_t *xp, int64_t n, uint8_t *aux) {
    const int64_t np = (n / 32 + 1) / 2;
    for (int64_t p = 0; p < np; p++)
        _mm512_storeu_si512(aux + p * 64, _mm512_xor_si512(_mm512_loadu_si512(xp + p * XP_BYTES),
                                                           _mm512_set1_epi8((char)0x80)));
}

typedef void (*matvec_x8_fn)(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *xp,
                             const uint8_t *aux, float *y);
#define SLM_MATVEC_X8(NAME, TYPE)                                                                  \
    static void NAME(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *xp,               \
                     const uint8_t *aux, float *y) {                                               \
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;                                  \
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes)                                     \
            y[r] = dot_x8_row(TYPE, row, xp, aux, W->n_cols);                                      \
    }
SLM_MATVEC_X8(matvec_q4_1, SLM_TYPE_Q4_1)
SLM_MATVEC_X8(matvec_q5_1, SLM_TYPE_Q5_1)
#undef SLM_MATVEC_X8

/* ---- decode with VBMI: legacy types -----------------------------------------
 * The same per-pair values and step as legacy_pair + dot_x8_row (so the same
 * bits as the prefill path) in fewer instructions: both blocks of a pair come
 * in one masked 64-byte load, vpermb puts their codes in
 * place and vpermw their f16 scales (and minimums). One row at a time, with
 * a software prefetch DECODE_PREFETCH bytes ahead: decode is one sequential
 * stream, and the hardware prefetchers alone left it at 7-11 GB/s per core
 * against 26-28 GB/s for a plain read loop (the dependent decode work per
 * pair fills the out-of-order window before enough misses are in flight).
 * Interleaving 2 or 4 rows to share activation loads was 1.5-2x slower from
 * DRAM here, though faster from cache. Needs AVX512_VBMI (CPUID 7.0 ECX
 * bit 1); SLM_AVX512_NO_VBMI=1 in the environment turns it off (the tests
 * run both paths). */
static int has_vbmi(void) {
    static int cached = -1;
    if (cached < 0) {
        unsigned a, b, c, d;
        const char *off = getenv("SLM_AVX512_NO_VBMI");
        cached = (!off || strcmp(off, "1") != 0) && __get_cpuid_count(7, 0, &a, &b, &c, &d) &&
                         (c & (1u << 1))
                     ? 1
                     : 0;
    }
    return cached;
}

/* Byte offsets within a legacy block: scale d at 0, minimum m, high bits qh,
 * codes qs (-1: none). */
typedef struct legacy_layout {
    int bytes, m, qh, qs;
} legacy_layout;

static inline legacy_layout legacy_layout_of(uint32_t type) {
    if (type == SLM_TYPE_Q4_1) return (legacy_layout){20, 2, -1, 4};
    return (legacy_layout){24, 2, 4, 8}; /* q5_1 */
}

/* The permutation indices for a legacy type, made once per call. */
typedef struct legacy_idx {
    __m512i codes, d, m;
} legacy_idx;

static legacy_idx legacy_idx_of(uint32_t type) {
    const legacy_layout L = legacy_layout_of(type);
    /* codes: each block's 16 code bytes twice (low nibbles for elements
     * 0-15, high for 16-31) */
    uint8_t ci[64];
    for (int k = 0; k < 64; k++) {
        const int blk = k / 32, e = k % 32;
        ci[k] = (uint8_t)(blk * L.bytes + L.qs + e % 16);
    }
    /* words: d of block 0 in words 0-7, of block 1 in 8-15; minimums likewise */
    uint16_t di[32], mi[32];
    for (int k = 0; k < 32; k++) {
        di[k] = (uint16_t)((k / 8 % 2) * L.bytes / 2);
        mi[k] = (uint16_t)((k / 8 % 2) * L.bytes / 2 + (L.m >= 0 ? L.m / 2 : 0));
    }
    legacy_idx ix;
    ix.codes = _mm512_loadu_si512(ci);
    ix.d = _mm512_loadu_si512(di);
    ix.m = _mm512_loadu_si512(mi);
    return ix;
}

static inline __attribute__((always_inline, target("avx512vbmi"))) float
dot_x8_legacy_vbmi(uint32_t type, const legacy_idx *ix, const uint8_t *row, const uint8_t *xp,
                   const uint8_t *aux, int64_t n) {
    const legacy_layout L = legacy_layout_of(type);
    const int64_t nb = n / 32, np = (nb + 1) / 2;
    const int hm = L.m >= 0;
    const __m512i shift = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL, 0, 0,
                                            0x0004000400040004LL, 0x0004000400040004LL);
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const __mmask64 one = ((__mmask64)1 << L.bytes) - 1;
    __m512 acc = _mm512_setzero_ps(), accm = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++) {
        const uint8_t *xq = xp + p * XP_BYTES, *aq = aux + p * 64;
        const uint8_t *blk = row + (size_t)(2 * p) * (size_t)L.bytes;
        const int two = 2 * p + 1 < nb;
        _mm_prefetch((const char *)blk + DECODE_PREFETCH, _MM_HINT_T0);
        /* a lone last block: the second one reads as zero codes and scales,
         * as legacy_pair makes it (a pair is at most 48 bytes) */
        const __m512i v = two ? _mm512_maskz_loadu_epi8(one | one << L.bytes, blk)
                              : _mm512_maskz_loadu_epi8(one, blk);
        __m512i w =
            _mm512_and_si512(_mm512_srlv_epi16(_mm512_permutexvar_epi8(ix->codes, v), shift), low4);
        if (L.qh >= 0) {
            uint32_t h0, h1 = 0;
            memcpy(&h0, blk + L.qh, 4);
            if (two) memcpy(&h1, blk + L.bytes + L.qh, 4);
            w = _mm512_or_si512(w,
                                _mm512_maskz_set1_epi8((__mmask64)h0 | (__mmask64)h1 << 32, 0x10));
        }
        const __m512 s =
            _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(ix->d, v)));
        const __m512i c = _mm512_loadu_si512(aq);
        const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(xq + 64));
        const __m512i q = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, c);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), _mm512_mul_ps(s, dx), acc);
        if (hm) {
            const __m512 mn = _mm512_cvtph_ps(_mm512_castsi512_si256(
                _mm512_maskz_permutexvar_epi16((__mmask32)0x0101, ix->m, v)));
            X8_MIN_STEP(accm, mn, _mm512_loadu_ps((const float *)(const void *)(xq + 128)));
        }
    }
    return _mm512_reduce_add_ps(hm ? _mm512_add_ps(acc, accm) : acc);
}

#define SLM_MATVEC_VBMI(NAME, TYPE)                                                                \
    static __attribute__((target("avx512vbmi"))) void NAME(const slm_matrix *W, int64_t r0,        \
                                                           int64_t r1, const uint8_t *xp,          \
                                                           const uint8_t *aux, float *y) {         \
        const legacy_idx ix = legacy_idx_of(TYPE);                                                 \
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;                                  \
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes)                                     \
            y[r] = dot_x8_legacy_vbmi(TYPE, &ix, row, xp, aux, W->n_cols);                         \
    }
SLM_MATVEC_VBMI(matvec_vbmi_q4_1, SLM_TYPE_Q4_1)
SLM_MATVEC_VBMI(matvec_vbmi_q5_1, SLM_TYPE_Q5_1)
#undef SLM_MATVEC_VBMI

/* The decode kernel for `type`; NULL for types without an 8-bit path. */
static matvec_x8_fn matvec_x8_for(uint32_t type) {
    if (has_vbmi()) {
        switch (type) {
        case SLM_TYPE_Q4_1:
            return matvec_vbmi_q4_1;
        case SLM_TYPE_Q5_1:
            return matvec_vbmi_q5_1;
        default:
            break;
        }
    }
    switch (type) {
    case SLM_TYPE_Q4_1:
        return matvec_q4_1;
    case SLM_TYPE_Q5_1:
        return matvec_q5_1;
    default:
        return NULL;
    }
}

/* ---- prefill: rows decoded once into L1, then register tiles ---- */

typedef void (*pack_fn)(const uint8_t *row, int64_t n, uint8_t *out);
#define SLM_PACK_X8(NAME, TYPE)                                                                    \
    static void NAME(const uint8_t *row, int64_t n, uint8_t *out) {                                \
        const int64_t nb = n / 32, np = (nb + 1) / 2;                                              \
        for (int64_t p = 0; p < np; p++, out += WP_BYTES) {                                        \
            wpair wp = legacy_pair(TYPE, row, p, nb);                                              \
            _mm512_storeu_si512(out, wp.w);                                                        \
            _mm512_storeu_si512(out + 64, pair_init(wp.w));                                        \
            _mm512_storeu_ps((float *)(void *)(out + 128), wp.s);                                  \
            _mm512_storeu_ps((float *)(void *)(out + 192), wp.m);                                  \
        }                                                                                          \
    }
SLM_PACK_X8(pack_q4_1, SLM_TYPE_Q4_1)
SLM_PACK_X8(pack_q5_1, SLM_TYPE_Q5_1)
#undef SLM_PACK_X8

static pack_fn pack_x8_for(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q4_1:
        return pack_q4_1;
    case SLM_TYPE_Q5_1:
        return pack_q5_1;
    default:
        return NULL;
    }
}

/* out[r * T + t] = row r . token t for R packed rows (w_row bytes apart) and
 * T packed tokens (x_tok bytes apart) over np pairs. */
static inline __attribute__((always_inline)) void tile_x8(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xp, size_t x_tok,
                                                          int64_t np, float *out, const int R,
                                                          const int T, const int HM) {
    /* the minimums' part first, its sums kept in memory meanwhile */
    __m512 accm[X8_ROWS][X8_TOKS];
    if (HM) {
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) accm[r][t] = _mm512_setzero_ps();
        const uint8_t *wm = wp + 192, *xm = xp + 128;
        for (int64_t p = 0; p < np; p++, wm += WP_BYTES, xm += XP_BYTES) {
            __m512 dxs[X8_TOKS];
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) dxs[t] =
                _mm512_loadu_ps((const float *)(const void *)(xm + (size_t)t * x_tok));
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
                __m512 m = _mm512_loadu_ps((const float *)(const void *)(wm + (size_t)r * w_row));
                _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)
                    X8_MIN_STEP(accm[r][t], m, dxs[t]);
            }
        }
    }
    __m512 acc[X8_ROWS][X8_TOKS];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t p = 0; p < np; p++, wp += WP_BYTES, xp += XP_BYTES) {
        __m512i xu[X8_TOKS];
        __m512 dx[X8_TOKS];
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
            const uint8_t *xq = xp + (size_t)t * x_tok;
            xu[t] = _mm512_loadu_si512(xq);
            dx[t] = _mm512_loadu_ps((const float *)(const void *)(xq + 64));
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *wq = wp + (size_t)r * w_row;
            __m512i w = _mm512_loadu_si512(wq), init = _mm512_loadu_si512(wq + 64);
            __m512 s = _mm512_loadu_ps((const float *)(const void *)(wq + 128));
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++)
                X8_STEP(acc[r][t], init, xu[t], w, s, dx[t]);
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[r * T + t] =
            _mm512_reduce_add_ps(HM ? _mm512_add_ps(acc[r][t], accm[r][t]) : acc[r][t]);
}

/* One register tile: out[r * T + t] over `len` pairs (x8) or super-blocks
 * (k8) of R packed rows and T quantized tokens. */
typedef void (*tile_fn)(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,
                        int64_t len, float *out);

/* The R x T instances of a tile kernel KERNEL(..., R, T, flag), as A_RxT
 * (flag 0) and B_RxT (flag 1), and their table [flag][R - 1][T - 1]. */
#define SLM_TILE_FNS(KERNEL, A, B, R, T)                                                           \
    static void A##_##R##x##T(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,    \
                              int64_t len, float *out) {                                           \
        KERNEL(wp, w_row, xp, x_tok, len, out, R, T, 0);                                           \
    }                                                                                              \
    static void B##_##R##x##T(const uint8_t *wp, size_t w_row, const uint8_t *xp, size_t x_tok,    \
                              int64_t len, float *out) {                                           \
        KERNEL(wp, w_row, xp, x_tok, len, out, R, T, 1);                                           \
    }
#define SLM_TILE_FNS_ROW(KERNEL, A, B, R)                                                          \
    SLM_TILE_FNS(KERNEL, A, B, R, 1)                                                               \
    SLM_TILE_FNS(KERNEL, A, B, R, 2)                                                               \
    SLM_TILE_FNS(KERNEL, A, B, R, 3) SLM_TILE_FNS(KERNEL, A, B, R, 4)
#define SLM_TILE_FNS_ALL(KERNEL, A, B)                                                             \
    SLM_TILE_FNS_ROW(KERNEL, A, B, 1)                                                              \
    SLM_TILE_FNS_ROW(KERNEL, A, B, 2)                                                              \
    SLM_TILE_FNS_ROW(KERNEL, A, B, 3) SLM_TILE_FNS_ROW(KERNEL, A, B, 4)
#define SLM_TILE_ROW(A, R)                                                                         \
    { A##_##R##x1, A##_##R##x2, A##_##R##x3, A##_##R##x4 }
#define SLM_TILE_TABLE(A, B)                                                                       \
    {                                                                                              \
        {SLM_TILE_ROW(A, 1), SLM_TILE_ROW(A, 2), SLM_TILE_ROW(A, 3), SLM_TILE_ROW(A, 4)}, {        \
            SLM_TILE_ROW(B, 1), SLM_TILE_ROW(B, 2), SLM_TILE_ROW(B, 3), SLM_TILE_ROW(B, 4)         \
        }                                                                                          \
    }

SLM_TILE_FNS_ALL(tile_x8, tile_x8_1, tile_x8_m)
/* [has minimums][rows - 1][tokens - 1] */
static const tile_fn TILE_X8[2][X8_ROWS][X8_TOKS] = SLM_TILE_TABLE(tile_x8_1, tile_x8_m);

static int x8_type(uint32_t type) {
    return matvec_x8_for(type) != NULL && has_vnni();
}

/* Most tokens quantized at once: whatever fits in the scratch after a tile
 * of decoded rows. Each row is decoded once per group, so a group as large
 * as a usual prompt batch keeps decoding off the profile (at 32 tokens it
 * was 14% of a 128-token prefill). */
#define X8_MAX_GROUP 128

typedef void (*quant_fn)(const float *x, int64_t n, uint8_t *out);

/* Prefill for both int8 GEMMs: tokens quantized in groups (as many as fit
 * in the scratch after a tile of decoded rows, up to X8_MAX_GROUP), each
 * group against every tile of X8_ROWS rows decoded once by `pack`, in
 * register tiles from `tiles` ([rows - 1][tokens - 1]). A token's result
 * depends only on its row and its own quantized activations. */
static void gemm_groups(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                        int64_t x_stride, float *Y, int64_t y_stride, uint8_t *xq, size_t w_row,
                        size_t x_tok, int64_t len, quant_fn quant, pack_fn pack,
                        const tile_fn (*tiles)[X8_TOKS]) {
    const int64_t n = W->n_cols;
    const size_t have = slm_matmul_scratch_floats(n) * sizeof(float);
    int64_t group = (int64_t)((have - X8_ROWS * w_row) / x_tok);
    if (group > X8_MAX_GROUP) group = X8_MAX_GROUP;
    if (group > X8_TOKS) group -= group % X8_TOKS; /* whole register tiles */
    uint8_t *wq = xq + (size_t)group * x_tok;
    for (int64_t t0 = 0; t0 < n_tok; t0 += group) {
        const int64_t g = n_tok - t0 < group ? n_tok - t0 : group;
        for (int64_t j = 0; j < g; j++) quant(X + (t0 + j) * x_stride, n, xq + (size_t)j * x_tok);
        for (int64_t rb = r0; rb < r1; rb += X8_ROWS) {
            const int nr = (int)(r1 - rb < X8_ROWS ? r1 - rb : X8_ROWS);
            for (int k = 0; k < nr; k++)
                pack(W->data + (size_t)(rb + k) * W->row_bytes, n, wq + (size_t)k * w_row);
            for (int64_t j = 0; j < g; j += X8_TOKS) {
                const int nt = (int)(g - j < X8_TOKS ? g - j : X8_TOKS);
                float out[X8_ROWS * X8_TOKS];
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
    const int64_t n = W->n_cols, np = (n / 32 + 1) / 2;
    const size_t w_row = (size_t)np * WP_BYTES, x_tok = (size_t)np * XP_BYTES;
    uint8_t *xq = (uint8_t *)scratch;
    if (n_tok == 1) {
        quantize_xp(X, n, xq);
        x8_aux(xq, n, xq + x_tok);
        matvec_x8_for(W->type)(W, r0, r1, xq, xq + x_tok, Y);
        return;
    }
    gemm_groups(W, r0, r1, X, n_tok, x_stride, Y, y_stride, xq, w_row, x_tok, np, quantize_xp,
                pack_x8_for(W->type), TILE_X8[x8_has_min(W->type)]);
}

/* ---- q4_0, q5_0 and q8_0 in quads: four blocks per step, lanes of 8 elements
 * The pair scheme above gives every 32-block 8 lanes of 4 elements, so each
 * (row, token) pays a convert, a multiply and an FMA per 64 elements. For
 * q4_0, q5_0 and q8_0 the four blocks of a quad (128 elements; 72, 88 or 136
 * bytes) are arranged as two registers instead: A holds elements 0-15 of
 * each block (q4_0, q5_0: the low nibbles of its 16 code bytes, q5_0 with
 * bit i of qh as element i's fifth bit), B elements 16-31 (the high
 * nibbles; bits 16-31 of qh), block j in bytes 16j..16j+15 of both. A lane then covers
 * elements 4i..4i+3 and 16+4i..16+4i+3 of one block (4 lanes per block) and
 * its exact integer sum is two chained vpdpbusd.
 *
 * Decode goes through quads in pairs (256 elements) and has one token: it
 * takes the unsigned codes u = w + offset (q4_0's stored nibbles, offset 8;
 * q8_0's codes with the sign bit flipped, offset 128) straight from the row,
 * with the offset folded into the token side (as dot_x8_row does), and the
 * 16-lane sums of the pair's quads p = 0, 1 are transposed (unpacks, a
 * shuffle and adds) so that lanes 4j + p and 4j + 2 + p hold the exact sum of
 * block j of quad p; the float step (convert, scale d_w * d_x, FMA) runs
 * once per pair. Per lane:
 *    acc = fma(float(block sum), d_w * d_x, acc)
 * quad pairs in order, then quad_finish: the blocks (j0 + j2) + (j1 + j3),
 * then the two quads. Scales are laid out the same way (d_w and d_x of block
 * j of quad p in lanes 4j + p and 4j + 2 + p). A row whose block count is
 * not a multiple of 8 ends in a pair with zero codes and scales past its
 * end (the token side has zero codes and d_x there). Prefill (below, "four
 * tokens per transpose") computes the same integers and the same float
 * operations for each token and block in the same order, so a token gets
 * the same bits alone and in a batch. */
#define QUAD_XP (2 * 128 + 64)  /* token, quantized, per quad pair: A, B codes + 128 each; d_x */
#define QUAD_AUX (2 * 192 + 64) /* token, decode, per quad pair: A, B codes, init each; d_x */

static int quad_type(uint32_t type) {
    return (type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q5_0 || type == SLM_TYPE_Q8_0) && has_vnni();
}

/* Bytes of a block and of a quad (four blocks), and the offset of the
 * unsigned codes u = w + offset used in decode: q4_0 stores q = w + 8, q5_0
 * q = w + 16; q8_0 codes are flipped to w + 128. */
static inline size_t quad_block(uint32_t type) {
    return type == SLM_TYPE_Q8_0 ? 34 : type == SLM_TYPE_Q5_0 ? 22 : 18;
}
static inline size_t quad_raw(uint32_t type) {
    return 4 * quad_block(type);
}
static inline int quad_off(uint32_t type) {
    return type == SLM_TYPE_Q8_0 ? 128 : type == SLM_TYPE_Q5_0 ? 16 : 8;
}

/* Pairs of quads in a row of n elements. */
static inline int64_t quad_pairs(int64_t n) {
    return (n / 32 + 7) / 8;
}

/* The 64 nibble bytes of a q4_0 or q5_0 quad of `have` blocks (the rest
 * read as zero), block j in bytes 16j.. (nibbles unsplit); the 16 bytes
 * start at `qs` in each block of `blk` bytes. */
static inline __m512i quad_bytes(const uint8_t *raw, int have, size_t blk, size_t qs) {
    __m128i b[4];
    for (int j = 0; j < 4; j++)
        b[j] = have >= 4 ? _mm_loadu_si128((const __m128i *)(const void *)(raw + qs + blk * j))
                         : _mm_maskz_loadu_epi8(j < have ? 0xffff : 0, raw + qs + blk * j);
    __m512i v = _mm512_castsi128_si512(b[0]);
    v = _mm512_inserti32x4(v, b[1], 1);
    v = _mm512_inserti32x4(v, b[2], 2);
    return _mm512_inserti32x4(v, b[3], 3);
}

/* d_w of quad p's blocks (`have` of them) merged into the low 16 words (f16)
 * of s: block j's in words 4j + p and 4j + 2 + p (zero past `have`). */
static inline __attribute__((always_inline)) __m512i
quad_scales_into(uint32_t type, const uint8_t *raw, int have, int p, __m512i s) {
    const __mmask32 lanes = (__mmask32)(0x5555u << p);
    if (type == SLM_TYPE_Q4_0) { /* word 9j of the quad is block j's d */
        static const uint16_t words[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
        const __m512i v = have >= 4
                              ? _mm512_loadu_si512(raw)
                              : _mm512_maskz_loadu_epi8(((__mmask64)1 << (18 * have)) - 1, raw);
        return _mm512_mask_permutexvar_epi16(s, lanes, _mm512_loadu_si512(words), v);
    }
    /* q8_0: word 17j */
    static const uint16_t words[32] = {0, 0, 0, 0, 17, 17, 17, 17, 34, 34, 34, 34, 51, 51, 51, 51};
    __m512i v0, v1;
    if (have >= 4) {
        v0 = _mm512_loadu_si512(raw);
        v1 = _mm512_loadu_si512(raw + 64);
    } else { /* up to the quad's end only */
        const int bytes = (int)quad_block(type) * have;
        v0 =
            _mm512_maskz_loadu_epi8(bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1, raw);
        v1 = _mm512_maskz_loadu_epi8(bytes > 64 ? ((__mmask64)1 << (bytes - 64)) - 1 : 0, raw + 64);
    }
    return _mm512_mask_mov_epi16(s, lanes,
                                 _mm512_permutex2var_epi16(v0, _mm512_loadu_si512(words), v1));
}

/* A quad's unsigned codes u = w + quad_off(type) as the two registers A
 * (elements 0-15 of each block) and B (16-31), block j in bytes 16j..;
 * blocks past `have` read as zero bytes. */
static inline __attribute__((always_inline)) void quad_codes(uint32_t type, const uint8_t *raw,
                                                             int have, __m512i *a, __m512i *b) {
    if (type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q5_0) {
        const __m512i low4 = _mm512_set1_epi8(0x0f),
                      v = quad_bytes(raw, have, quad_block(type), type == SLM_TYPE_Q5_0 ? 6 : 2);
        *a = _mm512_and_si512(v, low4);
        *b = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        return;
    }
    __m256i y[4];
    for (int j = 0; j < 4; j++)
        y[j] = have >= 4 ? _mm256_loadu_si256((const __m256i *)(const void *)(raw + 2 + 34 * j))
                         : _mm256_maskz_loadu_epi8(j < have ? ~0u : 0u, raw + 2 + 34 * j);
    const __m512i z01 = _mm512_inserti64x4(_mm512_castsi256_si512(y[0]), y[1], 1);
    const __m512i z23 = _mm512_inserti64x4(_mm512_castsi256_si512(y[2]), y[3], 1);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    *a = _mm512_xor_si512(_mm512_shuffle_i64x2(z01, z23, _MM_SHUFFLE(2, 0, 2, 0)), flip);
    *b = _mm512_xor_si512(_mm512_shuffle_i64x2(z01, z23, _MM_SHUFFLE(3, 1, 3, 1)), flip);
}

/* A quad's codes (quad_codes) and its d_w merged into s (quad_scales_into).
 * q5_0 takes both its d and its qh words with one word permute of the quad
 * (block j's d is word 11j, its qh words 11j + 1 and 11j + 2; bit i of qh
 * is element i's fifth bit) and sets the fifth bits through two masks. */
static inline __attribute__((always_inline)) void
quad_load(uint32_t type, const uint8_t *raw, int have, int p, __m512i *a, __m512i *b, __m512i *s) {
    quad_codes(type, raw, have, a, b);
    if (type != SLM_TYPE_Q5_0) {
        *s = quad_scales_into(type, raw, have, p, *s);
        return;
    }
    static const uint16_t words[32] = {0,  0,  0,  0,  11, 11, 11, 11, 22, 22, 22, 22,
                                       33, 33, 33, 33, 1,  12, 23, 34, 2,  13, 24, 35};
    const int bytes = 22 * have; /* up to the quad's end only */
    const __m512i v0 =
        _mm512_maskz_loadu_epi8(bytes >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << bytes) - 1, raw);
    const __m512i v1 =
        _mm512_maskz_loadu_epi8(bytes > 64 ? ((__mmask64)1 << (bytes - 64)) - 1 : 0, raw + 64);
    const __m512i w = _mm512_permutex2var_epi16(v0, _mm512_loadu_si512(words), v1);
    *s = _mm512_mask_mov_epi16(*s, (__mmask32)(0x5555u << p), w);
    const __m128i qh = _mm512_extracti32x4_epi32(w, 2);
    const __m512i bit = _mm512_set1_epi8(0x10);
    *a = _mm512_or_si512(*a, _mm512_maskz_mov_epi8((__mmask64)_mm_cvtsi128_si64(qh), bit));
    *b = _mm512_or_si512(*b, _mm512_maskz_mov_epi8((__mmask64)_mm_extract_epi64(qh, 1), bit));
}

/* Four 16-lane sums, each in lanes of 8 elements (4 lanes per block of a
 * quad), transposed and added: lane 4j + k of the result is the exact sum of
 * block j in i[k]. */
static inline __attribute__((always_inline)) __m512i quad_transpose(const __m512i i[4]) {
    const __m512i s01 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(i[0], i[1]), _mm512_unpackhi_epi32(i[0], i[1]));
    const __m512i s23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(i[2], i[3]), _mm512_unpackhi_epi32(i[2], i[3]));
    return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

/* The same for i = {i0, i1, i0, i1}: lanes 4j + p and 4j + 2 + p get the sum
 * of block j in i_p. */
static inline __attribute__((always_inline)) __m512i quad_transpose2(__m512i i0, __m512i i1) {
    const __m512i s =
        _mm512_add_epi32(_mm512_unpacklo_epi32(i0, i1), _mm512_unpackhi_epi32(i0, i1));
    return _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
}

/* A (row, token) at the end: the blocks' lanes added, (j0 + j2) + (j1 +
 * j3), then the pair's two quads; token t's result in lane 2t. */
static inline __m128 quad_finish(__m512 acc) {
    const __m256 h =
        _mm256_add_ps(_mm512_castps512_ps256(acc),
                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm_add_ps(q, _mm_movehdup_ps(q));
}

/* x (n a multiple of 32) into quad_pairs(n) pairs (QUAD_XP bytes each). */
static void quantize_xq(const float *x, int64_t n, uint8_t *out) {
    const int64_t nb = n / 32, np = quad_pairs(n);
    for (int64_t g = 0; g < np; g++) {
        uint8_t *o = out + g * QUAD_XP;
        float *dx = (float *)(void *)(o + 256);
        for (int p = 0; p < 2; p++)
            for (int j = 0; j < 4; j++) {
                const int64_t b = 8 * g + 4 * p + j;
                float db = 0.0f;
                if (b < nb) {
                    int32_t sum;
                    db =
                        x8_block(x + 32 * b, o + 128 * p + 16 * j, o + 128 * p + 64 + 16 * j, &sum);
                } else {
                    memset(o + 128 * p + 16 * j, 0x80, 16);
                    memset(o + 128 * p + 64 + 16 * j, 0x80, 16);
                }
                dx[4 * j + p] = dx[4 * j + 2 + p] = db;
            }
    }
}

/* The decode side of a quantized token: per quad signed codes A and B and
 * init = -offset * (each lane's sum of its 8 codes), then the pair's d_x. */
static void quad_aux(const uint8_t *xq, int64_t n, int offset, uint8_t *aux) {
    const int64_t np = quad_pairs(n);
    const __m512i flip = _mm512_set1_epi8((char)0x80), one = _mm512_set1_epi8(1);
    for (int64_t g = 0; g < np; g++, xq += QUAD_XP, aux += QUAD_AUX) {
        for (int p = 0; p < 2; p++) {
            __m512i a = _mm512_xor_si512(_mm512_loadu_si512(xq + 128 * p), flip);
            __m512i b = _mm512_xor_si512(_mm512_loadu_si512(xq + 128 * p + 64), flip);
            __m512i ls =
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), one, a), one, b);
            _mm512_storeu_si512(aux + 192 * p, a);
            _mm512_storeu_si512(aux + 192 * p + 64, b);
            _mm512_storeu_si512(aux + 192 * p + 128,
                                _mm512_mullo_epi32(ls, _mm512_set1_epi32(-offset)));
        }
        memcpy(aux + 384, xq + 256, 64);
    }
}

/* One quad of decode: its 16-lane sum (offset folded in by aux's init),
 * and its d_w merged into s. */
static inline __attribute__((always_inline)) __m512i
quad_sum(uint32_t type, const uint8_t *raw, int have, const uint8_t *aux, int p, __m512i *s) {
    __m512i ua, ub;
    quad_load(type, raw, have, p, &ua, &ub, s);
    return _mm512_dpbusd_epi32(
        _mm512_dpbusd_epi32(_mm512_loadu_si512(aux + 128), ua, _mm512_loadu_si512(aux)), ub,
        _mm512_loadu_si512(aux + 64));
}

/* One pair of decode: quad 0 with have0 blocks, quad 1 with have1 (0: none). */
static inline __attribute__((always_inline)) __m512
quad_pair(uint32_t type, const uint8_t *raw, int have0, int have1, const uint8_t *aux, __m512 acc) {
    __m512i s = _mm512_setzero_si512();
    const __m512i i0 = quad_sum(type, raw, have0, aux, 0, &s);
    const __m512i i1 = have1 ? quad_sum(type, raw + quad_raw(type), have1, aux + 192, 1, &s)
                             : _mm512_setzero_si512();
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(s));
    const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(aux + 384));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(quad_transpose2(i0, i1)), _mm512_mul_ps(d, dx), acc);
}

static inline __attribute__((always_inline)) float quad_dot(uint32_t type, const uint8_t *row,
                                                            const uint8_t *aux, int64_t n) {
    const int64_t nb = n / 32, full = nb / 8;
    const size_t pair = 2 * quad_raw(type);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < full; g++, row += pair, aux += QUAD_AUX) {
        /* a prefetch for each line the pair spans, or some lines come in on
         * demand (one prefetch per 72-byte q4_0 quad left every ninth, and
         * decode was slower than with pairs) */
        for (size_t k = 0; k < pair; k += 64)
            _mm_prefetch((const char *)row + DECODE_PREFETCH + k, _MM_HINT_T0);
        acc = quad_pair(type, row, 4, 4, aux, acc);
    }
    /* the last pair, its block counts compile-time constants in each case */
#define SLM_QUAD_LAST(B, H0, H1)                                                                   \
    case B:                                                                                        \
        acc = quad_pair(type, row, H0, H1, aux, acc);                                              \
        break;
    switch (nb % 8) {
        SLM_QUAD_LAST(1, 1, 0)
        SLM_QUAD_LAST(2, 2, 0)
        SLM_QUAD_LAST(3, 3, 0)
        SLM_QUAD_LAST(4, 4, 0)
        SLM_QUAD_LAST(5, 4, 1)
        SLM_QUAD_LAST(6, 4, 2)
        SLM_QUAD_LAST(7, 4, 3)
    }
#undef SLM_QUAD_LAST
    return _mm_cvtss_f32(quad_finish(acc));
}

#define SLM_QUAD_MATVEC(NAME, TYPE)                                                                \
    static void NAME(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *aux, float *y) {  \
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;                                  \
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes)                                     \
            y[r] = quad_dot(TYPE, row, aux, W->n_cols);                                            \
    }
SLM_QUAD_MATVEC(quad_matvec_q4_0, SLM_TYPE_Q4_0)
SLM_QUAD_MATVEC(quad_matvec_q5_0, SLM_TYPE_Q5_0)
SLM_QUAD_MATVEC(quad_matvec_q8_0, SLM_TYPE_Q8_0)
#undef SLM_QUAD_MATVEC

/* Prefill: four tokens per transpose. Rows are packed per quad (Q4_WQ bytes:
 * the signed codes w as registers A and B, then -128 * (each lane's sum of
 * its 8 codes), then d_w of block j in lanes 4j..4j + 3 as floats), tokens
 * per group of four per quad (Q4_XQ bytes: the codes c + 128 of A for tokens
 * 0-3, then of B, then d_x of block j of token t in lane 4j + t). Per (row,
 * quad) each token's 16-lane sum is two chained vpdpbusd starting at the
 * row's correction; quad_transpose puts block j's exact sum of w * c for
 * token t in lane 4j + t, and one convert, multiply and FMA serve the four
 * tokens. The tokens' codes stay in registers for the tile's rows and each
 * row's codes are loaded once per quad: the earlier tile (two tokens and two
 * quads per transpose) read each row vector from L1 again per token pair,
 * about 100 loads per 64 vpdpbusd against about 70 here, and was 15% slower
 * (docs/PERFORMANCE.md, session 13). Even quads go to one accumulator and odd
 * ones to another, as decode's lanes p = 0 and 1, and q4_finish adds the
 * blocks (j0 + j2) + (j1 + j3) in each, then the two, as quad_finish does:
 * the same float steps in the same order per token and block. The padding
 * differs only where it adds nothing: a group of fewer than four tokens is
 * padded with zero codes and scales, a row's last quad with zero codes,
 * corrections and scales, and a row of an odd number of quads skips the
 * zero quad that decode adds (an FMA of zero, which leaves the accumulator
 * as it is: it is never -0). */
#define Q4_WQ (4 * 64)      /* row, prefill, per quad: A, B signed codes; correction; d_w */
#define Q4_XQ (8 * 64 + 64) /* four tokens, per quad: A x 4, B x 4 codes + 128; d_x */

/* A row's quads (Q4_WQ bytes each, zero past its end). */
static inline __attribute__((always_inline)) void q4_pack(uint32_t type, const uint8_t *row,
                                                          int64_t n, uint8_t *out) {
    const int64_t nb = n / 32, nq = (nb + 3) / 4;
    const __m512i off = _mm512_set1_epi8((char)quad_off(type)), hbit = _mm512_set1_epi8((char)0x80);
    for (int64_t q = 0; q < nq; q++, out += Q4_WQ) {
        __m512i a, b, s = _mm512_setzero_si512();
        const int have = nb - 4 * q >= 4 ? 4 : (int)(nb - 4 * q);
        quad_load(type, row + (size_t)q * quad_raw(type), have, 0, &a, &b, &s);
        /* codes w; zero for blocks past the row's end */
        const __mmask64 in = have >= 4 ? ~(__mmask64)0 : ((__mmask64)1 << (16 * have)) - 1;
        a = _mm512_maskz_sub_epi8(in, a, off);
        b = _mm512_maskz_sub_epi8(in, b, off);
        /* quad_load leaves block j's d in words 4j and 4j + 2 */
        static const int32_t lanes[16] = {0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12};
        const __m512 d = _mm512_permutexvar_ps(_mm512_loadu_si512(lanes),
                                               _mm512_cvtph_ps(_mm512_castsi512_si256(s)));
        /* -128 * (each lane's sum of its 8 codes): the tokens' + 128 taken out */
        const __m512i ws =
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), hbit, a), hbit, b);
        _mm512_storeu_si512(out, a);
        _mm512_storeu_si512(out + 64, b);
        _mm512_storeu_si512(out + 128, _mm512_sub_epi32(_mm512_setzero_si512(), ws));
        _mm512_storeu_ps((float *)(void *)(out + 192), d);
    }
}
static void q4_pack_q4_0(const uint8_t *row, int64_t n, uint8_t *out) {
    q4_pack(SLM_TYPE_Q4_0, row, n, out);
}
static void q4_pack_q5_0(const uint8_t *row, int64_t n, uint8_t *out) {
    q4_pack(SLM_TYPE_Q5_0, row, n, out);
}
static void q4_pack_q8_0(const uint8_t *row, int64_t n, uint8_t *out) {
    q4_pack(SLM_TYPE_Q8_0, row, n, out);
}

/* Tokens x[0..nt) (nt <= 4, rows x_stride apart) into the row's quads of
 * Q4_XQ bytes; tokens past nt and blocks past the row's end have
 * zero codes (128) and scales. */
static void q4_quantize(const float *x, int64_t x_stride, int nt, int64_t n, uint8_t *out) {
    const int64_t nb = n / 32, nq = (nb + 3) / 4;
    for (int64_t q = 0; q < nq; q++, out += Q4_XQ) {
        float *dx = (float *)(void *)(out + 512);
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) {
                const int64_t blk = 4 * q + j;
                uint8_t *a = out + 64 * t + 16 * j, *b = a + 256;
                float db = 0.0f;
                if (t < nt && blk < nb) {
                    int32_t sum;
                    db = x8_block(x + t * x_stride + 32 * blk, a, b, &sum);
                } else {
                    memset(a, 0x80, 16);
                    memset(b, 0x80, 16);
                }
                dx[4 * j + t] = db;
            }
    }
}

/* Lane t of the result: token t's sum, (j0 + j2) + (j1 + j3) in each
 * accumulator, then even + odd (quad_finish's order). */
static inline __m128 q4_finish(__m512 even, __m512 odd) {
    __m128 r[2];
    const __m512 acc[2] = {even, odd};
    for (int p = 0; p < 2; p++) {
        const __m256 h =
            _mm256_add_ps(_mm512_castps512_ps256(acc[p]),
                          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[p]), 1)));
        r[p] = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    }
    return _mm_add_ps(r[0], r[1]);
}

/* One row's four 16-lane sums for a quad: each chain starts at the row's
 * correction and adds the token's codes c + 128 times the row's codes w. */
static inline __attribute__((always_inline)) void q4_sums(const uint8_t *w, const __m512i xa[4],
                                                          const __m512i xb[4], __m512i i[4]) {
    __m512i wa = _mm512_loadu_si512(w), wb = _mm512_loadu_si512(w + 64);
    __asm__("" : "+v"(wa), "+v"(wb)); /* loaded once, not once per token */
    _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++) i[t] =
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_loadu_si512(w + 128), xa[t], wa), xb[t], wb);
}

/* Quad q (its parity p) of R rows and four tokens into acc[r][p]. Row r +
 * 1's sums are started before row r's transpose, so that one row's
 * transpose and float step overlap the next row's vpdpbusd. */
static inline __attribute__((always_inline)) void q4_quad(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xp, int64_t q, int p,
                                                          __m512 acc[X8_ROWS][2], const int R) {
    const uint8_t *x = xp + (size_t)q * Q4_XQ;
    __m512i xa[4], xb[4];
    _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++) {
        xa[t] = _mm512_loadu_si512(x + 64 * t);
        xb[t] = _mm512_loadu_si512(x + 256 + 64 * t);
        /* in registers for every row: GCC would otherwise read them again
         * for each vpdpbusd */
        __asm__("" : "+v"(xa[t]), "+v"(xb[t]));
    }
    const __m512 dx = _mm512_loadu_ps((const float *)(const void *)(x + 512));
    __m512i cur[4], nxt[4];
    q4_sums(wp + (size_t)q * Q4_WQ, xa, xb, cur);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        const uint8_t *w = wp + (size_t)r * w_row + (size_t)q * Q4_WQ;
        if (r + 1 < R) q4_sums(w + w_row, xa, xb, nxt);
        const __m512 d = _mm512_loadu_ps((const float *)(const void *)(w + 192));
        acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(quad_transpose(cur)), _mm512_mul_ps(d, dx),
                                    acc[r][p]);
        if (r + 1 < R) {
            _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++) cur[t] = nxt[t];
        }
    }
}

/* R rows . four tokens over quads [0, nq) of wp and xp, whose quad 0 is
 * even, continuing the accumulators in accb ([row][even, odd][16 lanes])
 * and leaving them there. */
static inline __attribute__((always_inline)) void
q4_tile(const uint8_t *wp, size_t w_row, const uint8_t *xp, int64_t nq, float *accb, const int R) {
    __m512 acc[X8_ROWS][2];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++) acc[r][p] =
            _mm512_loadu_ps(accb + 32 * r + 16 * p);
    int64_t q = 0;
    for (; q + 2 <= nq; q += 2) {
        q4_quad(wp, w_row, xp, q, 0, acc, R);
        q4_quad(wp, w_row, xp, q + 1, 1, acc, R);
    }
    if (q < nq) q4_quad(wp, w_row, xp, q, 0, acc, R); /* the row's last quad, even */
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 2") for (int p = 0; p < 2; p++)
            _mm512_storeu_ps(accb + 32 * r + 16 * p, acc[r][p]);
}

typedef void (*q4_tile_fn)(const uint8_t *wp, size_t w_row, const uint8_t *xp, int64_t nq,
                           float *accb);
#define SLM_Q4_TILE(R)                                                                             \
    static void q4_tile_##R(const uint8_t *wp, size_t w_row, const uint8_t *xp, int64_t nq,        \
                            float *accb) {                                                         \
        q4_tile(wp, w_row, xp, nq, accb, R);                                                       \
    }
SLM_Q4_TILE(1)
SLM_Q4_TILE(2)
SLM_Q4_TILE(3)
SLM_Q4_TILE(4)
#undef SLM_Q4_TILE
static const q4_tile_fn Q4_TILE[X8_ROWS] = {q4_tile_1, q4_tile_2, q4_tile_3, q4_tile_4};

/* Quads per pass of the tiles over a group: the group's activations for a
 * pass (128 tokens x 16 quads x 144 bytes, 288 KiB) stay in L2 and the
 * rows' part (4 x 16 x 256 bytes) in L1; wider rows take several passes,
 * the accumulators kept between them (the same float steps in the same
 * order, so the same bits). 8 and 32 measured slower (slm_kernel_bench
 * --tokens 128, 8192 columns). */
#define Q4_PASS 16

/* Prefill for q4_0, q5_0 and q8_0: tokens quantized in groups (as many as
 * fit in the scratch after a tile of packed rows, up to X8_MAX_GROUP, in
 * fours), each group against every tile of X8_ROWS rows packed once. */
static void q4_gemm(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                    int64_t x_stride, float *Y, int64_t y_stride, uint8_t *xq) {
    const int64_t n = W->n_cols, nq = (n / 32 + 3) / 4; /* the row's quads */
    const size_t w_row = (size_t)nq * Q4_WQ, x4 = (size_t)nq * Q4_XQ;
    const size_t have = slm_matmul_scratch_floats(n) * sizeof(float);
    int64_t group = 4 * (int64_t)((have - X8_ROWS * w_row) / x4);
    if (group > X8_MAX_GROUP) group = X8_MAX_GROUP;
    const pack_fn pack = W->type == SLM_TYPE_Q8_0   ? q4_pack_q8_0
                         : W->type == SLM_TYPE_Q5_0 ? q4_pack_q5_0
                                                    : q4_pack_q4_0;
    uint8_t *wq = xq + (size_t)(group / 4) * x4;
    /* accumulators of every 4-token tile of a group, [tile][row][even, odd]
     * (16 KiB; here rather than in the scratch, where they measured 4-10%
     * slower in slm_kernel_bench for reasons not found) */
    float accb[X8_MAX_GROUP / 4][X8_ROWS * 2 * 16];
    for (int64_t t0 = 0; t0 < n_tok; t0 += group) {
        const int64_t g = n_tok - t0 < group ? n_tok - t0 : group;
        for (int64_t j = 0; j < g; j += 4)
            q4_quantize(X + (t0 + j) * x_stride, x_stride, (int)(g - j < 4 ? g - j : 4), n,
                        xq + (size_t)(j / 4) * x4);
        for (int64_t rb = r0; rb < r1; rb += X8_ROWS) {
            const int nr = (int)(r1 - rb < X8_ROWS ? r1 - rb : X8_ROWS);
            for (int k = 0; k < nr; k++)
                pack(W->data + (size_t)(rb + k) * W->row_bytes, n, wq + (size_t)k * w_row);
            memset(accb, 0, (size_t)((g + 3) / 4) * sizeof accb[0]);
            for (int64_t q0 = 0; q0 < nq; q0 += Q4_PASS) {
                const int64_t np = nq - q0 < Q4_PASS ? nq - q0 : Q4_PASS; /* this pass's */
                for (int64_t j = 0; j < g; j += 4) {
                    float *acc = accb[j / 4];
                    Q4_TILE[nr - 1](wq + (size_t)q0 * Q4_WQ, w_row,
                                    xq + (size_t)(j / 4) * x4 + (size_t)q0 * Q4_XQ, np, acc);
                    if (q0 + np < nq) continue;
                    /* the last pass: results out while the next tile runs */
                    const int nt = (int)(g - j < 4 ? g - j : 4);
                    for (int k = 0; k < nr; k++) {
                        float out[4];
                        _mm_storeu_ps(out, q4_finish(_mm512_loadu_ps(acc + 32 * k),
                                                     _mm512_loadu_ps(acc + 32 * k + 16)));
                        for (int t = 0; t < nt; t++) Y[(t0 + j + t) * y_stride + rb + k] = out[t];
                    }
                }
            }
        }
    }
}

static void matmul_rows_quad(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                             int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                             float *scratch) {
    const int64_t n = W->n_cols, np = quad_pairs(n);
    const size_t x_tok = (size_t)np * QUAD_XP;
    uint8_t *xq = (uint8_t *)scratch;
    if (n_tok == 1) {
        quantize_xq(X, n, xq);
        quad_aux(xq, n, quad_off(W->type), xq + x_tok);
        if (W->type == SLM_TYPE_Q8_0)
            quad_matvec_q8_0(W, r0, r1, xq + x_tok, Y);
        else if (W->type == SLM_TYPE_Q5_0)
            quad_matvec_q5_0(W, r0, r1, xq + x_tok, Y);
        else
            quad_matvec_q4_0(W, r0, r1, xq + x_tok, Y);
        return;
    }
    q4_gemm(W, r0, r1, X, n_tok, x_stride, Y, y_stride, xq);
}

/* ---- k-quants: integer sums per super-block (q4_k, q5_k, q6_k) ------------
 * The k-quant formats scale each sub-block (32 elements for q4_k/q5_k, 16
 * for q6_k) by a small integer times the super-block's f16 d. With the
 * activations quantized per 256 elements instead of per 32 (one d_x per
 * super-block, llama.cpp's Q8_K choice), a super-block's whole dot product
 * is an integer: sum_j scale_j * sum(q * c) over its sub-blocks (q6_k:
 * vpmaddubsw of the unsigned codes q with the signed codes c, then vpdpwssd
 * with the 16-bit scales; q4_k/q5_k: see below), with the offsets and
 * minimums folded in through the activations' per-sub-block code sums:
 *    q4_k, q5_k: d * sum_j sc_j (q . c)_j  -  dmin * sum_j mn_j csum32_j
 *    q6_k:       d * sum_j sc_j ((q . c)_j - 32 csum16_j)
 * (times d_x). The float work is then per super-block, not per 64 weights:
 *    q6_k:        acc = fma(float(isum), d * d_x, acc)           16 lanes
 *    q4_k, q5_k:  acc = fma(float(sums of b = 4g..4g+3), d_b * d_x, acc)
 *                 accm = fma(float(msum), -(dmin * d_x), accm)
 * where for q4_k/q5_k four super-blocks share one convert and FMA
 * (sb4_step): the 16 integer lanes of each are summed per 128-bit chunk j
 * (exactly) into lane 4j + b % 4 of one vector. The lanes are summed in a
 * fixed order at the end (k45_finish). The q4_k/q5_k prefill tiles
 * transpose four tokens instead of four super-blocks into one vector, keep
 * one accumulator per b % 4, and put each token's lanes back in decode's
 * order at the end (sb4_tokens), so each lane sees the same float steps in
 * the same order: per (row, token, super-block) a quarter of a convert,
 * multiply and FMA instead of one each. (The same for q6_k made its decode
 * slower at 2048 columns and its tile is a small part of prefill; see
 * docs/PERFORMANCE.md.) The integer parts are
 * exact (|isum| < 2^25), so decode (weights decoded in registers) and
 * prefill (rows decoded once into L1, register tiles) give a token the same
 * bits alone and in any batch. The activation rounding is now up to half a
 * step of the 256-block's scale per element (int8_activations returns 256).
 *
 * q4_k and q5_k take the integer sums with vpdpbusd, four products per
 * instruction instead of two (vpmaddubsw then vpdpwssd): each code vector's
 * 16-byte chunk k holds 16 elements of one sub-block (2k in vectors 0 and 1,
 * 2k + 1 in 2 and 3; k45_vecs), so two chained vpdpbusd leave every lane of
 * `lo` the sum of 8 elements of sub-block 2k (and of `hi`, of 2k + 1),
 * |sum| <= 8 * 31 * 127 < 2^15. vpackssdw packs lo and hi to 16 bits
 * without saturating and one vpdpwssd with the scales (k45_scale_words)
 * gives the super-block's 16 integer lanes: 6 multiplying instructions per
 * (row, token, super-block) instead of 8. The minimums' part is an FMA over
 * 16 lanes per four super-blocks (chunk b % 4 of accm takes super-block b),
 * instead of a 4-lane one per super-block; k45_finish sums acc, then accm. */

/* One row's q6_k super-block, decoded for prefill: 4 x 64 unsigned codes,
 * 4 x 32 16-bit scales (each pair's, lane by lane), d and the 16 scales
 * (int16). */
#define KP_BYTES 576
#define KP_SCALES 256
#define KP_D 512
#define KP_SC16 544

/* A q4_k/q5_k row decoded for prefill: per super-block 320 bytes (the 4
 * code vectors of k45_vecs, then k45_scale_words), then per four
 * super-blocks a group of 192: 4 x 8 minimums (int16), 4 x 4 lanes of
 * -dmin, 4 x d (zero for super-blocks past the row's end). */
#define KQ_MAIN 320
#define KQ_SCALES 256
#define KQ_GROUP 192
#define KQ_NDMIN 64
#define KQ_D 128

static inline size_t kq_row_bytes(int64_t nsb) {
    return (size_t)nsb * KQ_MAIN + (size_t)((nsb + 3) / 4) * KQ_GROUP;
}

/* The lanes of acc, then of accm (q4_k, q5_k: both paths call it). */
static inline __attribute__((always_inline)) float k45_finish(__m512 acc, __m512 accm) {
    return _mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(accm);
}

/* The 4 code vectors of a q4_k/q5_k super-block, 64 unsigned codes each:
 * chunk k (bytes 16k..16k+15) of w[v] is sub-block 2k + v / 2, elements
 * 0-15 (v even) or 16-31 (v odd). The packed nibbles hold sub-blocks 2m
 * (low) and 2m + 1 (high) in bytes 32m..32m+31, so the even (odd) chunks
 * of the two 64-byte halves, low or high nibbles, are one vector each;
 * q5_k adds bit 4 from the high-bit plane (bit j of byte l: element l of
 * sub-block j). */
static inline __attribute__((always_inline)) void k45_vecs(const uint8_t *blk, int q5,
                                                           __m512i w[4]) {
    const uint8_t *qs = blk + (q5 ? 48 : 16);
    const __m512i raw0 = _mm512_loadu_si512(qs), raw1 = _mm512_loadu_si512(qs + 64);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i half[2] = {_mm512_shuffle_i64x2(raw0, raw1, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_i64x2(raw0, raw1, _MM_SHUFFLE(3, 1, 3, 1))};
    _Pragma("GCC unroll 4") for (int v = 0; v < 4; v++) {
        w[v] = _mm512_and_si512(v >= 2 ? _mm512_srli_epi16(half[v % 2], 4) : half[v % 2], m4);
        if (q5) {
            const __m512i qh = _mm512_broadcast_i32x4(
                _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 + 16 * (v % 2))));
            const long long one = 0x0001000100010001LL, o = v / 2;
            const __m512i sh =
                _mm512_setr_epi64(o * one, o * one, (2 + o) * one, (2 + o) * one, (4 + o) * one,
                                  (4 + o) * one, (6 + o) * one, (6 + o) * one);
            w[v] = _mm512_or_si512(
                w[v], _mm512_slli_epi16(
                          _mm512_and_si512(_mm512_srlv_epi16(qh, sh), _mm512_set1_epi8(1)), 4));
        }
    }
}

/* The 16-bit scales for vpdpwssd over vpackssdw(lo, hi): in chunk k, words
 * 0-3 (lo's lanes) take sc_2k and words 4-7 (hi's) sc_2k+1, so 64-bit word
 * i is scale i four times. sc8: the 8 scales in bytes 0-7. */
static inline __attribute__((always_inline)) __m512i k45_scale_words(__m128i sc8) {
    const long long one = 0x0001000100010001LL;
    return _mm512_permutexvar_epi16(
        _mm512_setr_epi64(0, one, 2 * one, 3 * one, 4 * one, 5 * one, 6 * one, 7 * one),
        _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sc8)));
}

/* A super-block's 16 integer lanes from its code vectors w and scale
 * words s against a token's 4 code vectors at xb. */
static inline __attribute__((always_inline)) __m512i k45_isum(const __m512i w[4], __m512i s,
                                                              const uint8_t *xb) {
    const __m512i z = _mm512_setzero_si512();
    const __m512i lo = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, w[0], _mm512_loadu_si512(xb)),
                                           w[1], _mm512_loadu_si512(xb + 64));
    const __m512i hi =
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, w[2], _mm512_loadu_si512(xb + 128)), w[3],
                            _mm512_loadu_si512(xb + 192));
    return _mm512_dpwssd_epi32(z, _mm512_packs_epi32(lo, hi), s);
}

/* k45: codes in the q4_k/q5_k lane layout (64-byte vector v, 16-byte chunk
 * k: sub-block 2k + v / 2, elements 0-15 for even v, 16-31 for odd v; see
 * k45_vecs), else in element order (q6_k). The sums are by sub-block either
 * way. For k45, d_x is stored four times (XK_D .. XK_D + 15) for the
 * minimums' four-super-block step. */
static void quantize_xk(const float *x, int64_t n, uint8_t *out, int k45) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / 256; b++, x += 256, out += XK_BYTES) {
        __m512 a = _mm512_setzero_ps();
        for (int k = 0; k < 16; k++)
            a = _mm512_max_ps(a, _mm512_andnot_ps(sign, _mm512_loadu_ps(x + 16 * k)));
        const float amax = _mm512_reduce_max_ps(a), d = amax / 127.0f;
        /* round to nearest even (the default MXCSR mode), |code| <= 127 */
        const __m512 vi = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        int16_t s16[16];
        for (int k = 0; k < 16; k++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * k), vi));
            const int sub = k / 2, half = k % 2;
            const size_t at =
                k45 ? (size_t)(64 * (2 * (sub % 2) + half) + 16 * (sub / 2)) : (size_t)(16 * k);
            _mm_storeu_si128((__m128i *)(void *)(out + at), _mm512_cvtepi32_epi8(q));
            s16[k] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        slm_xk_finish(out, s16, d);
        if (k45)
            for (int j = 1; j < 4; j++) memcpy(out + XK_D + 4 * j, &d, sizeof d);
    }
}

/* Pair j2 of a q6_k super-block as 64 unsigned codes (0..63): half h = j2 / 2
 * has its 64 low-nibble bytes at 64h and 32 high-bit bytes at 128 + 32h;
 * even pairs take the low nibbles and high bits 0-1 (first 32 codes) / 2-3
 * (next 32), odd pairs the high nibbles and bits 4-5 / 6-7. */
static inline __attribute__((always_inline)) __m512i q6_codes(const uint8_t *blk, int j2) {
    const __m512i ql = _mm512_loadu_si512(blk + 64 * (j2 / 2)),
                  qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                      (const __m256i *)(const void *)(blk + 128 + 32 * (j2 / 2))));
    const __m512i even_sh =
        _mm512_mask_blend_epi64((__mmask8)0xf0, _mm512_set1_epi16(4), _mm512_set1_epi16(2));
    const __m512i odd_sh =
        _mm512_mask_blend_epi64((__mmask8)0xf0, _mm512_setzero_si512(), _mm512_set1_epi16(2));
    const __m512i lo =
        _mm512_and_si512(j2 % 2 ? _mm512_srli_epi16(ql, 4) : ql, _mm512_set1_epi8(0x0f));
    const __m512i hi =
        _mm512_and_si512(j2 % 2 ? _mm512_srlv_epi16(qh, odd_sh) : _mm512_sllv_epi16(qh, even_sh),
                         _mm512_set1_epi8(0x30));
    return _mm512_or_si512(lo, hi);
}

/* Pair j2's 16-bit scales (q6_k, element order), word by word, from the
 * super-block's scales as words 0.. of `sc`: words 8g .. 8g + 7 get scale
 * 4 j2 + g. */
static inline __attribute__((always_inline)) __m512i q6_pair_scales(__m512i sc, int j2) {
    const __m512i idx = _mm512_add_epi16(
        _mm512_setr_epi64(0, 0, 0x0001000100010001LL, 0x0001000100010001LL, 0x0002000200020002LL,
                          0x0002000200020002LL, 0x0003000300030003LL, 0x0003000300030003LL),
        _mm512_set1_epi16((short)(4 * j2)));
    return _mm512_permutexvar_epi16(idx, sc);
}

/* q6_k: 32 sum_g sc_g csum16_g, the offset part, out of the integer sums. */
static inline __attribute__((always_inline)) __m512i q6_offset(__m512i isum, __m256i sc16,
                                                               const uint8_t *xb) {
    const __m256i corr = _mm256_madd_epi16(
        sc16, _mm256_loadu_si256((const __m256i *)(const void *)(xb + XK_BSUM16)));
    return _mm512_sub_epi32(isum, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
}

/* The q4_k/q5_k float step, four super-blocks at a time: their integer
 * lanes (i[k]: super-block 4g + k, zero past the row's end) transposed so
 * that lane 4j + k holds the exact sum of i[k]'s chunk j, then one convert
 * and FMA with d * d_x of super-block k (d4 lane k, zero past the end) in
 * lanes 4j + k. The tiles keep tokens where decode keeps super-blocks (lane
 * 4j + t of their acc[r][k]) and put them back with sb4_tokens. */
static inline __attribute__((always_inline)) __m512 sb4_step(const __m512i i[4], __m128 d4,
                                                             __m512 acc) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(quad_transpose(i)), _mm512_broadcast_f32x4(d4), acc);
}

/* A tile's acc[k] (lane 4j + t: token t, super-blocks 4g + k) as each
 * token's decode accumulator v[t] (lane 4j + k): a 4 x 4 transpose per
 * 128-bit chunk. */
static inline __attribute__((always_inline)) void sb4_tokens(const __m512 acc[4], __m512 v[4]) {
    const __m512d t01 = _mm512_castps_pd(_mm512_unpacklo_ps(acc[0], acc[1])),
                  t23 = _mm512_castps_pd(_mm512_unpacklo_ps(acc[2], acc[3])),
                  u01 = _mm512_castps_pd(_mm512_unpackhi_ps(acc[0], acc[1])),
                  u23 = _mm512_castps_pd(_mm512_unpackhi_ps(acc[2], acc[3]));
    v[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t01, t23));
    v[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t01, t23));
    v[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(u01, u23));
    v[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(u01, u23));
}

/* A tile's d_x of super-block b for T tokens in lanes 4j + t (zero for t >= T). */
static inline __attribute__((always_inline)) __m512 sb4_dx(const uint8_t *xk, size_t x_tok,
                                                           int64_t b, const int T) {
    const uint8_t *xb = xk + b * XK_BYTES;
    return _mm512_broadcast_f32x4(_mm_setr_ps(slm_xk_d(xb), T > 1 ? slm_xk_d(xb + x_tok) : 0.0f,
                                              T > 2 ? slm_xk_d(xb + 2 * x_tok) : 0.0f,
                                              T > 3 ? slm_xk_d(xb + 3 * x_tok) : 0.0f));
}

/* Decode, q6_k: one row against one quantized token. The loop over the 4
 * code vectors is unrolled on purpose: left as a loop (GCC does by
 * default), each pass rebuilt the permute index, branched on the nibble
 * half and reloaded the codes, and the super-block took 30% longer (2.26 ->
 * 1.73 ns per 64 weights when q4_k had the same loop, in L2,
 * docs/PERFORMANCE.md). */
static inline __attribute__((always_inline)) float dot_q6_row(const uint8_t *row, const uint8_t *xk,
                                                              int64_t n) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++) {
        const uint8_t *blk = row + (size_t)b * 210, *xb = xk + b * XK_BYTES;
        /* no software prefetch: with one 4 KiB ahead (as the other block
         * types have) q6_k streamed 17-19 GB/s at one thread, without it
         * 20-24 (slm_kernel_bench, docs/PERFORMANCE.md) */
        const float dx = slm_xk_d(xb);
        __m512i isum = _mm512_setzero_si512();
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(blk + 192)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        _Pragma("GCC unroll 4") for (int j2 = 0; j2 < 4; j2++) isum = _mm512_dpwssd_epi32(
            isum, _mm512_maddubs_epi16(q6_codes(blk, j2), _mm512_loadu_si512(xb + 64 * j2)),
            q6_pair_scales(sc, j2));
        isum = q6_offset(isum, sc16, xb);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(half_to_f32(blk + 208) * dx),
                              acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* Decode, q4_k/q5_k: super-block blk's 16 integer lanes against the
 * token's xb. */
static inline __attribute__((always_inline)) __m512i k45_sb_isum(int q5, const uint8_t *blk,
                                                                 const uint8_t *xb, __m128i sc8) {
    __m512i w[4];
    k45_vecs(blk, q5, w);
    return k45_isum(w, k45_scale_words(sc8), xb);
}

/* d * d_x and dmin * d_x (lanes 0, 1) from one conversion of both halves. */
static inline __attribute__((always_inline)) __m128 k45_dm(const uint8_t *blk, const uint8_t *xb) {
    int32_t dm2;
    memcpy(&dm2, blk, 4);
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(dm2)), _mm_set1_ps(slm_xk_d(xb)));
}

/* Two super-blocks b, b + 1 (b even) of a q4_k/q5_k row: their scales
 * decoded together, their integer lanes into i[0], i[1], d * d_x and
 * dmin * d_x of b, then of b + 1, into *dm, and their minimums' parts (4 lanes
 * each) into the 8 lanes of `half`: chunks b % 4 and b % 4 + 1 of tile_k45's
 * accm, the lower half of it for b % 4 == 0, the upper for 2. Lane by lane
 * the same float steps as tile_k45. */
static inline __attribute__((always_inline)) void k45_pair(int q5, const uint8_t *blk0, size_t bb,
                                                           const uint8_t *xb0, __m512i i[2],
                                                           __m128 *dm, __m256 *half) {
    const uint8_t *blk1 = blk0 + bb, *xb1 = xb0 + XK_BYTES;
    for (size_t k = 0; k < 2 * bb; k += 64)
        _mm_prefetch((const char *)blk0 + DECODE_PREFETCH + k, _MM_HINT_T0);
    __m256i sc, mn;
    slm_x86_kscales2(blk0, blk1, &sc, &mn);
    int32_t dm0, dm1; /* both halves (d, dmin) of each: one conversion */
    memcpy(&dm0, blk0, 4);
    memcpy(&dm1, blk1, 4);
    const __m128 dx =
        _mm_castpd_ps(_mm_loadh_pd(_mm_load_sd((const double *)(const void *)(xb0 + XK_D)),
                                   (const double *)(const void *)(xb1 + XK_D)));
    *dm = _mm_mul_ps(_mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128(dm0), dm1, 1)), dx);
    i[0] = k45_sb_isum(q5, blk0, xb0, _mm256_castsi256_si128(sc));
    i[1] = k45_sb_isum(q5, blk1, xb1, _mm256_extracti128_si256(sc, 1));
    const __m128i mn2 =
        _mm_unpacklo_epi64(_mm256_castsi256_si128(mn), _mm256_extracti128_si256(mn, 1));
    const __m256i cs = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(xb0 + XK_BSUM32))),
        _mm_loadu_si128((const __m128i *)(const void *)(xb1 + XK_BSUM32)), 1);
    const __m256 ms = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_cvtepu8_epi16(mn2), cs));
    /* -(dmin * d_x) of b in lanes 0-3, of b + 1 in lanes 4-7 */
    const __m256 ndm =
        _mm256_xor_ps(_mm256_permutevar8x32_ps(_mm256_castps128_ps256(*dm),
                                               _mm256_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3)),
                      _mm256_set1_ps(-0.0f));
    *half = _mm256_fmadd_ps(ms, ndm, *half);
}

/* One super-block b of a q4_k/q5_k row (the last, when their count is odd):
 * as k45_pair (*dm: d * d_x, dmin * d_x, zero, zero), its minimums' part
 * into lanes 0-3 of `half`. */
static inline __attribute__((always_inline)) void
k45_single(int q5, const uint8_t *blk, const uint8_t *xb, __m512i *i, __m128 *dm, __m256 *half) {
    __m128i sc8, mn8;
    slm_x86_kscales(blk, &sc8, &mn8);
    *dm = k45_dm(blk, xb);
    *i = k45_sb_isum(q5, blk, xb, sc8);
    const __m128i ms = _mm_madd_epi16(
        _mm_cvtepu8_epi16(mn8), _mm_loadu_si128((const __m128i *)(const void *)(xb + XK_BSUM32)));
    const __m256 ndm =
        _mm256_castps128_ps256(_mm_xor_ps(_mm_permute_ps(*dm, 0x55), _mm_set1_ps(-0.0f)));
    *half = _mm256_mask3_fmadd_ps(_mm256_castps128_ps256(_mm_cvtepi32_ps(ms)), ndm, *half,
                                  (__mmask8)0x0f);
}

/* Four super-blocks' float step from their integer lanes and two pairs'
 * (or singles') d * d_x, dmin * d_x. */
static inline __attribute__((always_inline)) __m512 k45_quad_step(const __m512i i[4], __m128 dm01,
                                                                  __m128 dm23, __m512 acc) {
    return sb4_step(i, _mm_shuffle_ps(dm01, dm23, _MM_SHUFFLE(2, 0, 2, 0)), acc);
}

/* Decode, q4_k/q5_k: one row against one quantized token; the same integer
 * lanes and float steps as tile_k45. Super-blocks go in fours: two pairs
 * (one 256-bit pass decodes a pair's scales, one FMA takes its two
 * minimums' parts into a half of accm: lo = chunks 0-1, hi = 2-3), then one
 * convert and FMA for the four's transposed sums (k45_quad_step). */
static inline __attribute__((always_inline)) float dot_k45_row(int q5, const uint8_t *row,
                                                               const uint8_t *xk, int64_t n) {
    const size_t bb = q5 ? 176 : 144;
    const int64_t nsb = n / 256;
    __m512 acc = _mm512_setzero_ps();
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    __m512i i[4];
    __m128 dm01, dm23;
    int64_t b = 0;
    for (; b + 4 <= nsb; b += 4) {
        k45_pair(q5, row + (size_t)b * bb, bb, xk + b * XK_BYTES, i, &dm01, &lo);
        k45_pair(q5, row + (size_t)(b + 2) * bb, bb, xk + (b + 2) * XK_BYTES, i + 2, &dm23, &hi);
        acc = k45_quad_step(i, dm01, dm23, acc);
    }
    if (b < nsb) { /* one to three left: the missing ones zero */
        for (int k = 0; k < 4; k++) i[k] = _mm512_setzero_si512();
        dm01 = dm23 = _mm_setzero_ps();
        const int64_t left = nsb - b;
        if (left >= 2) k45_pair(q5, row + (size_t)b * bb, bb, xk + b * XK_BYTES, i, &dm01, &lo);
        if (left == 1)
            k45_single(q5, row + (size_t)b * bb, xk + b * XK_BYTES, i, &dm01, &lo);
        else if (left == 3)
            k45_single(q5, row + (size_t)(b + 2) * bb, xk + (b + 2) * XK_BYTES, i + 2, &dm23, &hi);
        acc = k45_quad_step(i, dm01, dm23, acc);
    }
    return k45_finish(acc, _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
}

/* Decode over rows r0..r1 with one of the row kernels above. */
#define SLM_MATVEC_K8(NAME, DOT)                                                                   \
    static void NAME(const slm_matrix *W, int64_t r0, int64_t r1, const uint8_t *xk, float *y) {   \
        const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;                                  \
        for (int64_t r = r0; r < r1; r++, row += W->row_bytes) y[r] = DOT;                         \
    }
SLM_MATVEC_K8(matvec_k8_q4_k, dot_k45_row(0, row, xk, W->n_cols))
SLM_MATVEC_K8(matvec_k8_q5_k, dot_k45_row(1, row, xk, W->n_cols))
SLM_MATVEC_K8(matvec_k8_q6_k, dot_q6_row(row, xk, W->n_cols))
#undef SLM_MATVEC_K8

/* Prefill, q6_k: a row's super-blocks decoded into KP_BYTES each (codes and
 * pair scales exactly as dot_q6_row forms them). */
static void pack_k8_q6_k(const uint8_t *row, int64_t n, uint8_t *out) {
    for (int64_t b = 0; b < n / 256; b++, out += KP_BYTES) {
        const uint8_t *blk = row + (size_t)b * 210;
        memset(out + KP_D, 0, KP_BYTES - KP_D);
        const __m256i sc16 =
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(blk + 192)));
        const __m512i sc = _mm512_castsi256_si512(sc16);
        _mm256_storeu_si256((__m256i *)(void *)(out + KP_SC16), sc16);
        const float d = half_to_f32(blk + 208);
        _Pragma("GCC unroll 4") for (int j2 = 0; j2 < 4; j2++) {
            _mm512_storeu_si512(out + 64 * j2, q6_codes(blk, j2));
            _mm512_storeu_si512(out + KP_SCALES + 64 * j2, q6_pair_scales(sc, j2));
        }
        memcpy(out + KP_D, &d, sizeof d);
    }
}

/* Prefill, q4_k/q5_k: a row decoded into kq_row_bytes (KQ_MAIN, KQ_GROUP). */
static inline __attribute__((always_inline)) void pack_k45_row(int q5, const uint8_t *row,
                                                               int64_t n, uint8_t *out) {
    const size_t bb = q5 ? 176 : 144;
    const int64_t nsb = n / 256;
    uint8_t *grp = out + (size_t)nsb * KQ_MAIN;
    memset(grp, 0, (size_t)((nsb + 3) / 4) * KQ_GROUP);
    for (int64_t b = 0; b < nsb; b++, out += KQ_MAIN) {
        const uint8_t *blk = row + (size_t)b * bb;
        uint8_t *g = grp + (size_t)(b / 4) * KQ_GROUP;
        const int c = (int)(b % 4);
        __m128i sc8, mn8;
        slm_x86_kscales(blk, &sc8, &mn8);
        __m512i w[4];
        k45_vecs(blk, q5, w);
        _Pragma("GCC unroll 4") for (int v = 0; v < 4; v++) _mm512_storeu_si512(out + 64 * v, w[v]);
        _mm512_storeu_si512(out + KQ_SCALES, k45_scale_words(sc8));
        _mm_storeu_si128((__m128i *)(void *)(g + 16 * c), _mm_cvtepu8_epi16(mn8));
        _mm_storeu_ps((float *)(void *)(g + KQ_NDMIN + 16 * c), _mm_set1_ps(-half_to_f32(blk + 2)));
        const float d = half_to_f32(blk);
        memcpy(g + KQ_D + 4 * c, &d, sizeof d);
    }
}

static void pack_k8_q4_k(const uint8_t *row, int64_t n, uint8_t *out) {
    pack_k45_row(0, row, n, out);
}
static void pack_k8_q5_k(const uint8_t *row, int64_t n, uint8_t *out) {
    pack_k45_row(1, row, n, out);
}

static inline float kp_float(const uint8_t *p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

/* Four super-blocks' 16-byte pieces (at p, `stride` apart; `nv` of them,
 * the rest zero) as one vector, piece c in chunk c. */
static inline __attribute__((always_inline)) __m512i k45_gather4(const uint8_t *p, size_t stride,
                                                                 int nv) {
    __m512i v = _mm512_setzero_si512();
    for (int c = 0; c < nv; c++)
        v = _mm512_mask_broadcast_i32x4(
            v, (__mmask16)(0xfu << (4 * c)),
            _mm_loadu_si128((const __m128i *)(const void *)(p + (size_t)c * stride)));
    return v;
}

/* out[r * T + t] = row r . token t for R packed q4_k/q5_k rows (w_row bytes
 * apart) and T quantized tokens (x_tok bytes apart) over nsb super-blocks:
 * the minimums' part per four super-blocks, then the super-blocks. */
static inline __attribute__((always_inline)) void tile_k45(const uint8_t *wp, size_t w_row,
                                                           const uint8_t *xk, size_t x_tok,
                                                           int64_t nsb, float *out, const int R,
                                                           const int T) {
    const uint8_t *grp = wp + (size_t)nsb * KQ_MAIN;
    __m512 accm[X8_ROWS][X8_TOKS];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) accm[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b += 4) {
        const int nv = (int)(nsb - b < 4 ? nsb - b : 4);
        const __mmask16 valid = (__mmask16)(nv == 4 ? 0xffffu : (1u << (4 * nv)) - 1u);
        __m512i cs[X8_TOKS];
        __m512 dx[X8_TOKS];
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
            const uint8_t *xb = xk + (size_t)t * x_tok + b * XK_BYTES;
            cs[t] = k45_gather4(xb + XK_BSUM32, XK_BYTES, nv);
            dx[t] = _mm512_castsi512_ps(k45_gather4(xb + XK_D, XK_BYTES, nv));
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *g = grp + (size_t)r * w_row + (size_t)(b / 4) * KQ_GROUP;
            const __m512i mn = _mm512_loadu_si512(g);
            const __m512 ndmin = _mm512_loadu_ps(g + KQ_NDMIN);
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) accm[r][t] =
                _mm512_mask3_fmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(mn, cs[t])),
                                      _mm512_mul_ps(ndmin, dx[t]), accm[r][t], valid);
        }
    }
    /* acc[r][k]: super-blocks 4g + k of row r, lane 4j + t for token t
     * (chunk j's sum: sb4_step's layout with tokens for super-blocks) */
    __m512 acc[X8_ROWS][4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) acc[r][k] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nsb; g += 4) {
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            const int64_t b = g + k;
            if (b >= nsb) break;
            const __m512 dx = sb4_dx(xk, x_tok, b, T);
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
                const uint8_t *wb = wp + (size_t)r * w_row + b * KQ_MAIN;
                const __m512i w[4] = {_mm512_loadu_si512(wb), _mm512_loadu_si512(wb + 64),
                                      _mm512_loadu_si512(wb + 128), _mm512_loadu_si512(wb + 192)};
                const __m512i s = _mm512_loadu_si512(wb + KQ_SCALES);
                const __m512 d = _mm512_set1_ps(kp_float(
                    grp + (size_t)r * w_row + (size_t)(b / 4) * KQ_GROUP + KQ_D + 4 * (b % 4)));
                __m512i i[4];
                _Pragma("GCC unroll 4") for (int t = 0; t < 4; t++) i[t] =
                    t < T ? k45_isum(w, s, xk + (size_t)t * x_tok + b * XK_BYTES)
                          : _mm512_setzero_si512();
                acc[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(quad_transpose(i)),
                                            _mm512_mul_ps(d, dx), acc[r][k]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        __m512 v[4];
        sb4_tokens(acc[r], v);
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[r * T + t] =
            k45_finish(v[t], accm[r][t]);
    }
}

/* out[r * T + t] = row r . token t for R packed q6_k rows (w_row bytes
 * apart) and T quantized tokens (x_tok bytes apart) over nsb super-blocks. */
static inline __attribute__((always_inline)) void tile_q6(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xk, size_t x_tok,
                                                          int64_t nsb, float *out, const int R,
                                                          const int T) {
    __m512 acc[X8_ROWS][X8_TOKS];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nsb; b++) {
        __m512i isum[X8_ROWS][X8_TOKS];
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) isum[r][t] = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int j2 = 0; j2 < 4; j2++) {
            __m512i c[X8_TOKS];
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) c[t] =
                _mm512_loadu_si512(xk + (size_t)t * x_tok + b * XK_BYTES + 64 * j2);
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
                const uint8_t *wb = wp + (size_t)r * w_row + b * KP_BYTES;
                const __m512i w = _mm512_loadu_si512(wb + 64 * j2),
                              s = _mm512_loadu_si512(wb + KP_SCALES + 64 * j2);
                _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) isum[r][t] =
                    _mm512_dpwssd_epi32(isum[r][t], _mm512_maddubs_epi16(w, c[t]), s);
            }
        }
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const uint8_t *wb = wp + (size_t)r * w_row + b * KP_BYTES;
            const __m512 d = _mm512_set1_ps(kp_float(wb + KP_D));
            _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) {
                const uint8_t *xb = xk + (size_t)t * x_tok + b * XK_BYTES;
                const __m512i is = q6_offset(
                    isum[r][t], _mm256_loadu_si256((const __m256i *)(const void *)(wb + KP_SC16)),
                    xb);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(is),
                                    _mm512_mul_ps(d, _mm512_set1_ps(slm_xk_d(xb))), acc[r][t]);
            }
        }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int t = 0; t < T; t++) out[r * T + t] =
            _mm512_reduce_add_ps(acc[r][t]);
}

/* The tile table's shape: flag 0 q4_k/q5_k, 1 q6_k. */
static inline __attribute__((always_inline)) void tile_k8(const uint8_t *wp, size_t w_row,
                                                          const uint8_t *xk, size_t x_tok,
                                                          int64_t nsb, float *out, const int R,
                                                          const int T, const int Q6) {
    if (Q6)
        tile_q6(wp, w_row, xk, x_tok, nsb, out, R, T);
    else
        tile_k45(wp, w_row, xk, x_tok, nsb, out, R, T);
}

SLM_TILE_FNS_ALL(tile_k8, tile_k8_45, tile_k8_q6)
/* [q6_k][rows - 1][tokens - 1] */
static const tile_fn TILE_K8[2][X8_ROWS][X8_TOKS] = SLM_TILE_TABLE(tile_k8_45, tile_k8_q6);

static int k8_type(uint32_t type) {
    return (type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K || type == SLM_TYPE_Q6_K) && has_vnni();
}

static void quantize_xk_k45(const float *x, int64_t n, uint8_t *out) {
    quantize_xk(x, n, out, 1);
}
static void quantize_xk_q6(const float *x, int64_t n, uint8_t *out) {
    quantize_xk(x, n, out, 0);
}

static void matmul_rows_k8(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                           int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                           float *scratch) {
    const int64_t n = W->n_cols, nsb = n / 256;
    const int q6 = W->type == SLM_TYPE_Q6_K, q5 = W->type == SLM_TYPE_Q5_K;
    const quant_fn quant = q6 ? quantize_xk_q6 : quantize_xk_k45;
    uint8_t *xq = (uint8_t *)scratch;
    if (n_tok == 1) {
        quant(X, n, xq);
        (q6 ? matvec_k8_q6_k : q5 ? matvec_k8_q5_k : matvec_k8_q4_k)(W, r0, r1, xq, Y);
        return;
    }
    gemm_groups(W, r0, r1, X, n_tok, x_stride, Y, y_stride, xq,
                q6 ? (size_t)nsb * KP_BYTES : kq_row_bytes(nsb), (size_t)nsb * XK_BYTES, nsb, quant,
                q6   ? pack_k8_q6_k
                : q5 ? pack_k8_q5_k
                     : pack_k8_q4_k,
                TILE_K8[q6]);
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

/* ---- forward-pass vector ops (see kernels.h) ------------------------------ */

/* exp(x) for 16 lanes: x = k ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial
 * for e^r (relative error about 2e-7), scaled by 2^k. Inputs are clamped to
 * [-104, 88.7]: below, the result is 0 (or a denormal), above, finite
 * (callers pass x <= 0 or logits-sized values). */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.7f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    /* r = x - k ln2, ln2 in two parts so the product is exact enough */
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

static inline __mmask16 tail_mask(int64_t left) {
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
}

static void avx512_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi =
            _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    __m512 scale = _mm512_set1_ps((float)(1.0 / sqrt(ss / (double)n + (double)eps)));
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale);
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i)));
    }
}

static void avx512_swiglu(float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        __m512 gv = _mm512_maskz_loadu_ps(m, g + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, m, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i)));
    }
}

/* One head's scores, in place, turned into its softmax weights. */
static void avx512_softmax_scores(float *att, int32_t n_pos) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int32_t p = 0; p < n_pos; p += 16)
        mx = _mm512_mask_max_ps(mx, tail_mask(n_pos - p), mx,
                                _mm512_maskz_loadu_ps(tail_mask(n_pos - p), att + p));
    const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int32_t p = 0; p < n_pos; p += 16) {
        __mmask16 m = tail_mask(n_pos - p);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, att + p), vmax));
        e = _mm512_maskz_mov_ps(m, e);
        sum = _mm512_add_ps(sum, e);
        _mm512_mask_storeu_ps(att + p, m, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int32_t p = 0; p < n_pos; p += 16) {
        __mmask16 m = tail_mask(n_pos - p);
        _mm512_mask_storeu_ps(att + p, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, att + p), inv));
    }
}

/* 16 elements (masked) of a K/V cache row from element i, as f32. */
static inline __m512 ld_kv_m(const void *p, size_t i, __mmask16 m, int f16) {
    return f16 ? ld_f16_m((const uint16_t *)p + i, m) : ld_f32_m((const float *)p + i, m);
}
static inline __m512 ld_kv(const void *p, size_t i, int f16) {
    return f16 ? ld_f16((const uint16_t *)p + i) : ld_f32((const float *)p + i);
}

/* Scores of NG heads (q: the first's query) for the 16 positions of one
 * key tile: per head four accumulators over d mod 4, each d one FMA of the
 * tile's row d with q[d] broadcast, then (a0 + a1) + (a2 + a3) times
 * scale; lanes past n_pos (mask m) not stored. A head's operations are the
 * same for any NG. */
static inline __attribute__((always_inline)) void score_tile(const float *q, const int NG,
                                                             const void *tile, int f16, int32_t hd,
                                                             float scale, float *att, int32_t n_pos,
                                                             __mmask16 m) {
    __m512 acc[4][4];
    _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    /* d in steps of 4 (the last step partial), c = d mod 4 a constant in
     * the unrolled body so that the accumulators stay in registers */
    for (int32_t d = 0; d < hd; d += 4) {
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) {
            if (d + c >= hd) break;
            const __m512 kv = ld_kv(tile, (size_t)(d + c) * SLM_KV_TILE, f16);
            _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++) acc[h][c] = _mm512_fmadd_ps(
                _mm512_set1_ps(q[(size_t)h * (size_t)hd + (size_t)(d + c)]), kv, acc[h][c]);
        }
    }
    const __m512 vscale = _mm512_set1_ps(scale);
    _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++)
        _mm512_mask_storeu_ps(att + (size_t)h * (size_t)n_pos, m,
                              _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(acc[h][0], acc[h][1]),
                                                          _mm512_add_ps(acc[h][2], acc[h][3])),
                                            vscale));
}

/* The weighted sum of value rows for NG heads (att: the first's weights,
 * n_pos apart; out: its output, hd apart) over up to 64 columns (cols; a
 * FULL pass: all 64, unmasked loads): each row's columns loaded and
 * widened once, then one FMA per head and 16 columns, positions in order.
 * A head's operations are the same for any NG. */
static inline __attribute__((always_inline)) void value_pass(const float *att, const int NG,
                                                             const void *v, int f16, const int FULL,
                                                             int64_t kv_stride, int32_t n_pos,
                                                             int32_t cols, float *out, int32_t hd) {
    __mmask16 vm[4];
    _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) vm[c] = FULL ? (__mmask16)0xffff
                                                                : 16 * c < cols
                                                                    ? tail_mask(cols - 16 * c)
                                                                    : 0;
    __m512 acc[4][4];
    _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[h][c] = _mm512_setzero_ps();
    for (int32_t p = 0; p < n_pos; p++) {
        const size_t vp = (size_t)p * (size_t)kv_stride;
        __m512 vv[4];
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) vv[c] =
            FULL ? ld_kv(v, vp + 16 * (size_t)c, f16) : ld_kv_m(v, vp + 16 * (size_t)c, vm[c], f16);
        _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++) {
            const __m512 a = _mm512_set1_ps(att[(size_t)h * (size_t)n_pos + (size_t)p]);
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[h][c] =
                _mm512_fmadd_ps(a, vv[c], acc[h][c]);
        }
    }
    _Pragma("GCC unroll 4") for (int h = 0; h < NG; h++)
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
            _mm512_mask_storeu_ps(out + (size_t)h * (size_t)hd + 16 * c, vm[c], acc[h][c]);
}

/* The heads of one K/V group (kernels.h), for an f32 or (f16 = 1) an f16
 * cache. Each key tile and value row is read from memory once for up to
 * four heads: scores a tile at a time, then the weighted sum of the value
 * rows. Per head the operations and their order are those of one head
 * alone. */
static inline __attribute__((always_inline)) void
attend_group(const float *q, int32_t n_q, const void *k, const void *v, int f16, int64_t kv_stride,
             int32_t n_pos, int32_t hd, float scale, float *att, float *out) {
    for (int32_t p0 = 0; p0 < n_pos; p0 += SLM_KV_TILE) {
        const __mmask16 m = tail_mask(n_pos - p0);
        const size_t t0 = slm_kv_tile_at(p0, 0, kv_stride);
        const void *tile =
            f16 ? (const void *)((const uint16_t *)k + t0) : (const void *)((const float *)k + t0);
        for (int32_t g = 0; g < n_q; g += 4) {
            const float *qg = q + (size_t)g * (size_t)hd;
            float *ag = att + (size_t)g * (size_t)n_pos + p0;
            switch (n_q - g < 4 ? n_q - g : 4) {
            case 1:
                score_tile(qg, 1, tile, f16, hd, scale, ag, n_pos, m);
                break;
            case 2:
                score_tile(qg, 2, tile, f16, hd, scale, ag, n_pos, m);
                break;
            case 3:
                score_tile(qg, 3, tile, f16, hd, scale, ag, n_pos, m);
                break;
            default:
                score_tile(qg, 4, tile, f16, hd, scale, ag, n_pos, m);
                break;
            }
        }
    }
    for (int32_t g = 0; g < n_q; g++) avx512_softmax_scores(att + (size_t)g * (size_t)n_pos, n_pos);
    /* out_g = sum_p att_g[p] v_p: 64 columns and up to four heads per
     * pass over the value rows */
    for (int32_t c0 = 0; c0 < hd; c0 += 64) {
        for (int32_t g = 0; g < n_q; g += 4) {
            const float *ag = att + (size_t)g * (size_t)n_pos;
            float *og = out + (size_t)g * (size_t)hd + c0;
            const void *vc = f16 ? (const void *)((const uint16_t *)v + c0)
                                 : (const void *)((const float *)v + c0);
            const int full = hd - c0 >= 64;
            /* NG and FULL compile-time constants in each case */
#define SLM_VALUE_CASE(K, NG, FULL)                                                                \
    case K:                                                                                        \
        value_pass(ag, NG, vc, f16, FULL, kv_stride, n_pos, FULL ? 64 : hd - c0, og, hd);          \
        break;
            switch ((n_q - g < 4 ? n_q - g : 4) + 4 * full) {
                SLM_VALUE_CASE(1, 1, 0)
                SLM_VALUE_CASE(2, 2, 0)
                SLM_VALUE_CASE(3, 3, 0)
                SLM_VALUE_CASE(4, 4, 0)
                SLM_VALUE_CASE(5, 1, 1)
                SLM_VALUE_CASE(6, 2, 1)
                SLM_VALUE_CASE(7, 3, 1)
                SLM_VALUE_CASE(8, 4, 1)
            }
#undef SLM_VALUE_CASE
        }
    }
}

static void avx512_attend(const float *q, int32_t n_q, const void *k, const void *v,
                          uint32_t kv_type, int64_t kv_stride, int32_t n_pos, int32_t hd,
                          float scale, float *att, float *out) {
    if (kv_type == SLM_TYPE_F16)
        attend_group(q, n_q, k, v, 1, kv_stride, n_pos, hd, scale, att, out);
    else
        attend_group(q, n_q, k, v, 0, kv_stride, n_pos, hd, scale, att, out);
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
/* x[0..16) under mask m rounded to f16 (to nearest even; f16_activations):
 * the one rounding both matvec_f16 and matmul_f16 use. */
static inline __m256i x_to_f16(const float *x, __mmask16 m) {
    return _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x),
                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* f16 decode (f16_activations): x rounded to an f16 copy once, then each row
 * against it, one at a time in the tile shape. Half the L1 of f32
 * activations: with an f32 x, rows longer than about 2048 columns streamed
 * at half the read rate here, x and the passing weights no longer fitting
 * in L1 together. The batched path (matmul_f16) rounds x the same way, so
 * a token gets the same bits. */
static void matvec_f16(const slm_matrix *W, int64_t r0, int64_t r1, const float *x, float *y,
                       float *scratch) {
    const int64_t n = W->n_cols;
    uint16_t *x16 = (uint16_t *)(void *)scratch;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm256_mask_storeu_epi16(x16 + i, m, x_to_f16(x + i, m));
    }
    const uint16_t *xs = x16;
    const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
    for (int64_t r = r0; r < r1; r++, row += W->row_bytes) {
        const uint16_t *h = (const uint16_t *)(const void *)row;
        tile_f16x16_1x1(&h, &xs, n, &y[r]);
    }
}

static void matvec_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *x, float *y,
                        float *tmp) {
    const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
    for (int64_t r = r0; r < r1; r++, row += W->row_bytes)
        y[r] = avx512_dot_row(W->type, row, x, W->n_cols, tmp);
}

/* A batch: float rows (f32, f16, bf16) are read in place, converted in
 * registers, block types (without VNNI) are converted to f32 once per tile of
 * up to AVX512_ROW_TILE rows; then the rows are multiplied with the tokens
 * in 4 x 3 register tiles over column blocks that stay in L1; the edges use
 * smaller tiles of the same shape. */
static void matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                        int64_t x_stride, float *Y, int64_t y_stride, float *scratch) {
    const int64_t n = W->n_cols;
    const size_t stride = ((size_t)n + 15) & ~(size_t)15;
    const int kind = W->type == SLM_TYPE_F16 ? 1 : W->type == SLM_TYPE_BF16 ? 2 : 0;
    const void *rows[AVX512_ROW_TILE];
    for (int64_t rb = r0; rb < r1; rb += AVX512_ROW_TILE) {
        int nr = (int)(r1 - rb < AVX512_ROW_TILE ? r1 - rb : AVX512_ROW_TILE);
        for (int k = 0; k < nr; k++) {
            const uint8_t *src = W->data + (size_t)(rb + k) * W->row_bytes;
            if (float_type(W->type)) {
                rows[k] = src;
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
            /* accumulators of (row quad p, token j, k) between column blocks */
            __m512 st[AVX512_ROW_TILE / 4][4 * 3 * 2]; /* (written before read) */
            float out[AVX512_ROW_TILE / 4][12];
            for (int64_t i0 = 0; i0 < n || i0 == 0; i0 += AVX512_COL_BLOCK) {
                int64_t i1 = n - i0 > AVX512_COL_BLOCK ? i0 + AVX512_COL_BLOCK : n;
                for (int k = 0, p = 0; k < nr; k += 4, p++) {
                    int nk = nr - k >= 4 ? 4 : nr - k;
                    GEMM[kind][nk - 1][nt - 1](rows + k, xs, i0, i1, n, st[p], out[p]);
                }
                if (i1 == n) break;
            }
            for (int k = 0, p = 0; k < nr; k += 4, p++) {
                int nk = nr - k >= 4 ? 4 : nr - k;
                for (int a = 0; a < nk; a++)
                    for (int j = 0; j < nt; j++)
                        Y[(t + j) * y_stride + rb + k + a] = out[p][a * nt + j];
            }
            t += nt;
        }
    }
}

/* Prefill of f16 rows (f16_activations): the tokens rounded to f16 and back
 * into the scratch, as many at a time as it holds (about 100), then the
 * float GEMM on them: the values matvec_f16 reads from its f16 copy, so a
 * token gets the same bits alone and batched. (Rounding in the tile's x
 * loads instead cost a third of the F16 prefill: the conversions compete
 * with the FMAs.) */
static void matmul_f16(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                       int64_t x_stride, float *Y, int64_t y_stride, float *scratch) {
    const int64_t n = W->n_cols, stride = (n + 15) & ~(int64_t)15;
    int64_t chunk = (int64_t)slm_matmul_scratch_floats(n) / stride;
    if (chunk > n_tok) chunk = n_tok;
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        const int64_t c = n_tok - t0 < chunk ? n_tok - t0 : chunk;
        for (int64_t t = 0; t < c; t++) {
            const float *x = X + (t0 + t) * x_stride;
            float *o = scratch + t * stride;
            for (int64_t i = 0; i < n; i += 16) {
                const __mmask16 m = tail_mask(n - i);
                _mm512_mask_storeu_ps(o + i, m, _mm512_cvtph_ps(x_to_f16(x + i, m)));
            }
        }
        /* float rows use no scratch in matmul_rows */
        matmul_rows(W, r0, r1, scratch, c, stride, Y + t0 * y_stride, y_stride, NULL);
    }
}

/* f16_activations: f16 rows take f16-rounded activations (matmul_f16, matvec_f16). */
static int avx512_f16_activations(uint32_t type) {
    return type == SLM_TYPE_F16;
}

/* int8_activations: the block length of matmul_rows' 8-bit activations. */
static int avx512_int8_block(uint32_t type) {
    return k8_type(type) ? 256 : x8_type(type) || quad_type(type) ? 32 : 0;
}

static void avx512_matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                               int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                               float *scratch) {
    if (k8_type(W->type))
        matmul_rows_k8(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
    else if (quad_type(W->type))
        matmul_rows_quad(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
    else if (x8_type(W->type))
        matmul_rows_x8(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
    /* f16 rows: f16-rounded activations (f16_activations) */
    else if (W->type == SLM_TYPE_F16 && n_tok == 1)
        matvec_f16(W, r0, r1, X, Y, scratch);
    else if (W->type == SLM_TYPE_F16)
        matmul_f16(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
    /* f32/bf16 rows longer than a column block decode through the GEMM too
     * (one token: the same bits as dot_row): the f32 activations of a 5632-
     * or 8192-column row (22-32 KiB) fall out of L1 while one row streams
     * past, and a 2048-column block of x stays in L1 for the tile's rows
     * (measured on F16 before it took f16 activations: tinyllama decode 14.6
     * -> 16.9 tok/s, llama3.2-1b 11.9 -> 13.4, docs/PERFORMANCE.md). */
    else if (n_tok == 1 && !(float_type(W->type) && W->n_cols > AVX512_COL_BLOCK))
        matvec_rows(W, r0, r1, X, Y, scratch);
    else
        matmul_rows(W, r0, r1, X, n_tok, x_stride, Y, y_stride, scratch);
}

static void avx512_to_f16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        _mm256_mask_storeu_epi16(dst + i, m, x_to_f16(src + i, m));
    }
}

static int32_t avx512_argmax_f32(const float *x, int32_t n) {
    return slm_argmax_lanes(x, n);
}

const slm_provider slm_provider_avx512 = {
    .name = "avx512",
    .available = avx512_available,
    .dot_row = avx512_dot_row,
    .dot_f32 = avx512_dot_f32,
    .axpy_f32 = avx512_axpy_f32,
    .dequantize_row = avx512_dequantize_row,
    .matmul_rows = avx512_matmul_rows,
    .int8_activations = avx512_int8_block,
    .f16_activations = avx512_f16_activations,
    .rmsnorm = avx512_rmsnorm,
    .swiglu = avx512_swiglu,
    .attend = avx512_attend,
    .rope = slm_rope_avx512,
    .argmax_f32 = avx512_argmax_f32,
    .to_f16 = avx512_to_f16,
};

#else
/* Not x86-64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_avx512_unused;
#endif
