/* RoPE for the avx512 provider: 16 floats a step, the ragged end under a
 * lane mask (so any even rope_dim, nothing outside h[0, rope_dim) is read or
 * written). Products and sums are separate instructions (mul, then add or
 * sub), never FMA, so each value has the bits of the scalar formula. */
#if defined(__x86_64__)

#if !defined(__AVX512F__)
#error "rope_avx512.c must be compiled with -mavx512f (see CMakeLists.txt)"
#endif

#include <immintrin.h>

#include "kernels/rope.h"

/* The first k of 16 lanes (k <= 0: none). */
static __mmask16 first_lanes(int32_t k) {
    if (k >= 16) return (__mmask16)0xFFFF;
    if (k <= 0) return 0;
    return (__mmask16)((1u << k) - 1u);
}

/* x0*c - x1*s in the even lanes, x0*s + x1*c in the odd lanes of v = (x0 x1
 * ...), w = (c s ...). */
static __m512 rotate_adjacent(__m512 v, __m512 w) {
    __m512 c = _mm512_moveldup_ps(w);       /* c  c  */
    __m512 s = _mm512_movehdup_ps(w);       /* s  s  */
    __m512 vs = _mm512_permute_ps(v, 0xB1); /* x1 x0 */
    __m512 p = _mm512_mul_ps(v, c);         /* x0*c x1*c */
    __m512 q = _mm512_mul_ps(vs, s);        /* x1*s x0*s */
    /* even lanes p - q = x0*c - x1*s; odd lanes q + p = x0*s + x1*c */
    return _mm512_mask_add_ps(_mm512_sub_ps(p, q), (__mmask16)0xAAAA, q, p);
}

/* Pairs (2i, 2i + 1): h and cs have the same layout, 8 pairs per vector. */
static void rope_adjacent(float *h, const float *cs, int32_t n) {
    int32_t j = 0;
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(h + j, rotate_adjacent(_mm512_loadu_ps(h + j), _mm512_loadu_ps(cs + j)));
    if (j < n) {
        __mmask16 m = first_lanes(n - j);
        __m512 r =
            rotate_adjacent(_mm512_maskz_loadu_ps(m, h + j), _mm512_maskz_loadu_ps(m, cs + j));
        _mm512_mask_storeu_ps(h + j, m, r);
    }
}

/* Pairs (i, i + half): k <= 16 pairs from i, under lane masks when k < 16;
 * cs is deinterleaved into c and s. */
static void rotate_halves(float *h, const float *cs, int32_t half, int32_t i, int32_t k) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    __mmask16 m = first_lanes(k);
    __m512 a = _mm512_maskz_loadu_ps(first_lanes(2 * k), cs + 2 * i);
    __m512 b = _mm512_maskz_loadu_ps(first_lanes(2 * k - 16), cs + 2 * i + 16);
    __m512 c = _mm512_permutex2var_ps(a, even, b);
    __m512 s = _mm512_permutex2var_ps(a, odd, b);
    __m512 x0 = _mm512_maskz_loadu_ps(m, h + i);
    __m512 x1 = _mm512_maskz_loadu_ps(m, h + i + half);
    __m512 r0 = _mm512_sub_ps(_mm512_mul_ps(x0, c), _mm512_mul_ps(x1, s));
    __m512 r1 = _mm512_add_ps(_mm512_mul_ps(x0, s), _mm512_mul_ps(x1, c));
    _mm512_mask_storeu_ps(h + i, m, r0);
    _mm512_mask_storeu_ps(h + i + half, m, r1);
}

static void rope_halves(float *h, const float *cs, int32_t half) {
    for (int32_t i = 0; i < half; i += 16) rotate_halves(h, cs, half, i, half - i);
}

void slm_rope_avx512(float *h, const float *cs, int32_t rope_dim, int adjacent) {
    if (adjacent)
        rope_adjacent(h, cs, rope_dim);
    else
        rope_halves(h, cs, rope_dim / 2);
}

#else
/* Not x86-64: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_rope_avx512_unused;
#endif
