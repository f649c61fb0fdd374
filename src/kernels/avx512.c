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
 * Decode (one token): f32/f16/bf16 rows are dotted four at a time straight
 * from their stored type, so each chunk of x is loaded once per four rows
 * (keeps x's traffic low when rows are long). Block types dequantize into
 * L1 scratch, then dot. Prefill (a batch): a tile of rows is dequantized to
 * f32 once, then 2-row x 3-token register tiles (24 accumulators) read each
 * loaded vector for several products instead of one. */
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

/* Decode: 1 or 4 rows, one token, rows in their stored type. */
AVX512_TILE(tile_f32_1x1, float, ld_f32, ld_f32_m, 1, 1)
AVX512_TILE(tile_f32_4x1, float, ld_f32, ld_f32_m, 4, 1)
AVX512_TILE(tile_f16_1x1, uint16_t, ld_f16, ld_f16_m, 1, 1)
AVX512_TILE(tile_f16_4x1, uint16_t, ld_f16, ld_f16_m, 4, 1)
AVX512_TILE(tile_bf16_1x1, uint16_t, ld_bf16, ld_bf16_m, 1, 1)
AVX512_TILE(tile_bf16_4x1, uint16_t, ld_bf16, ld_bf16_m, 4, 1)
/* Prefill: f32 rows (converted once per tile) x tokens. */
AVX512_TILE(tile_f32_2x3, float, ld_f32, ld_f32_m, 2, 3)
AVX512_TILE(tile_f32_2x2, float, ld_f32, ld_f32_m, 2, 2)
AVX512_TILE(tile_f32_2x1, float, ld_f32, ld_f32_m, 2, 1)
AVX512_TILE(tile_f32_1x3, float, ld_f32, ld_f32_m, 1, 3)
AVX512_TILE(tile_f32_1x2, float, ld_f32, ld_f32_m, 1, 2)

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
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
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
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, f16 ? ld_f16(h + i) : ld_bf16(h + i));
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
            _mm512_mask_storeu_ps(dst + i, m, f16 ? ld_f16_m(h + i, m) : ld_bf16_m(h + i, m));
        }
        return;
    }
    slm_provider_avx2.dequantize_row(type, src, dst, n);
}

static float avx512_dot_row(uint32_t type, const void *row, const float *x, int64_t n,
                            float *tmp) {
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
        avx512_dequantize_row(type, row, tmp, n);
        return avx512_dot_f32(tmp, x, n);
    }
}

/* One token: rows four at a time in their stored type where possible. */
static void matvec_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *x, float *y,
                        float *tmp) {
    const int64_t n = W->n_cols;
    int64_t r = r0;
    const uint8_t *base = W->data;
    const size_t rb = W->row_bytes;
    if (W->type == SLM_TYPE_F32 || W->type == SLM_TYPE_F16 || W->type == SLM_TYPE_BF16) {
        for (; r + 4 <= r1; r += 4) {
            const void *p[4];
            for (int k = 0; k < 4; k++) p[k] = base + (size_t)(r + k) * rb;
            if (W->type == SLM_TYPE_F32)
                tile_f32_4x1((const float *const *)p, &x, n, y + r);
            else if (W->type == SLM_TYPE_F16)
                tile_f16_4x1((const uint16_t *const *)p, &x, n, y + r);
            else
                tile_bf16_4x1((const uint16_t *const *)p, &x, n, y + r);
        }
    }
    for (; r < r1; r++) y[r] = avx512_dot_row(W->type, base + (size_t)r * rb, x, n, tmp);
}

/* A batch: each tile of up to AVX512_ROW_TILE rows is converted to f32 once
 * (f32 rows are used in place), then multiplied with the tokens in 2 x 3
 * register tiles; the edges use smaller tiles of the same shape. */
static void matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                        int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                        float *scratch) {
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
        for (int64_t t = 0; t < n_tok;) {
            int nt = n_tok - t >= 3 ? 3 : (int)(n_tok - t);
            const float *xs[3];
            for (int j = 0; j < nt; j++) xs[j] = X + (t + j) * x_stride;
            for (int k = 0; k < nr;) {
                float out[6];
                int two = nr - k >= 2;
                if (two && nt == 3)
                    tile_f32_2x3(rows + k, xs, n, out);
                else if (two && nt == 2)
                    tile_f32_2x2(rows + k, xs, n, out);
                else if (two)
                    tile_f32_2x1(rows + k, xs, n, out);
                else if (nt == 3)
                    tile_f32_1x3(rows + k, xs, n, out);
                else if (nt == 2)
                    tile_f32_1x2(rows + k, xs, n, out);
                else
                    tile_f32_1x1(rows + k, xs, n, out);
                int nk = two ? 2 : 1;
                for (int a = 0; a < nk; a++)
                    for (int j = 0; j < nt; j++) Y[(t + j) * y_stride + rb + k + a] = out[a * nt + j];
                k += nk;
            }
            t += nt;
        }
    }
}

static void avx512_matmul_rows(const slm_matrix *W, int64_t r0, int64_t r1, const float *X,
                               int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                               float *scratch) {
    if (n_tok == 1)
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
};

#else
/* Not x86-64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_avx512_unused;
#endif
