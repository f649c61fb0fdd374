/* RoPE for the avx2 provider: 8 floats a step, the ragged end through
 * vmaskmov loads and stores (so any even rope_dim, nothing outside
 * h[0, rope_dim) is read or written). Products and sums are separate
 * instructions (mul, then add or sub), never FMA, so each value has the bits
 * of the scalar formula. */
#if defined(__x86_64__) || defined(__i386__)

#if !defined(__AVX2__)
#error "rope_avx2.c must be compiled with -mavx2 (see CMakeLists.txt)"
#endif

#include <immintrin.h>

#include "kernels/rope.h"

/* All-ones in the first k of 8 lanes (k <= 0: none). */
static __m256i first_lanes(int32_t k) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* x0*c - x1*s in the even lanes, x0*s + x1*c in the odd lanes of v = (x0 x1
 * ...), w = (c s ...). */
static __m256 rotate_adjacent(__m256 v, __m256 w) {
    __m256 c = _mm256_moveldup_ps(w);       /* c  c  */
    __m256 s = _mm256_movehdup_ps(w);       /* s  s  */
    __m256 vs = _mm256_permute_ps(v, 0xB1); /* x1 x0 */
    __m256 p = _mm256_mul_ps(v, c);         /* x0*c x1*c */
    __m256 q = _mm256_mul_ps(vs, s);        /* x1*s x0*s */
    return _mm256_blend_ps(_mm256_sub_ps(p, q), _mm256_add_ps(q, p), 0xAA);
}

/* Pairs (2i, 2i + 1): h and cs have the same layout, 4 pairs per vector. */
static void rope_adjacent(float *h, const float *cs, int32_t n) {
    int32_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(h + j, rotate_adjacent(_mm256_loadu_ps(h + j), _mm256_loadu_ps(cs + j)));
    if (j < n) {
        __m256i m = first_lanes(n - j);
        __m256 r = rotate_adjacent(_mm256_maskload_ps(h + j, m), _mm256_maskload_ps(cs + j, m));
        _mm256_maskstore_ps(h + j, m, r);
    }
}

/* c = the cos of 8 pairs, s = their sin, from the 16 floats in a, b. */
static void split_cs(__m256 a, __m256 b, __m256 *c, __m256 *s) {
    const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    __m256 ea = _mm256_permutevar8x32_ps(a, order); /* c0..c3 s0..s3 */
    __m256 eb = _mm256_permutevar8x32_ps(b, order); /* c4..c7 s4..s7 */
    *c = _mm256_permute2f128_ps(ea, eb, 0x20);
    *s = _mm256_permute2f128_ps(ea, eb, 0x31);
}

/* Pairs (i, i + half): 8 pairs a step. */
static void rope_halves(float *h, const float *cs, int32_t half) {
    int32_t i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 c, s;
        split_cs(_mm256_loadu_ps(cs + 2 * i), _mm256_loadu_ps(cs + 2 * i + 8), &c, &s);
        __m256 x0 = _mm256_loadu_ps(h + i), x1 = _mm256_loadu_ps(h + i + half);
        __m256 r0 = _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s));
        __m256 r1 = _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c));
        _mm256_storeu_ps(h + i, r0);
        _mm256_storeu_ps(h + i + half, r1);
    }
    if (i < half) {
        int32_t k = half - i; /* 1..7 pairs left */
        __m256i m = first_lanes(k);
        __m256 c, s;
        split_cs(_mm256_maskload_ps(cs + 2 * i, first_lanes(2 * k)),
                 _mm256_maskload_ps(cs + 2 * i + 8, first_lanes(2 * k - 8)), &c, &s);
        __m256 x0 = _mm256_maskload_ps(h + i, m), x1 = _mm256_maskload_ps(h + i + half, m);
        __m256 r0 = _mm256_sub_ps(_mm256_mul_ps(x0, c), _mm256_mul_ps(x1, s));
        __m256 r1 = _mm256_add_ps(_mm256_mul_ps(x0, s), _mm256_mul_ps(x1, c));
        _mm256_maskstore_ps(h + i, m, r0);
        _mm256_maskstore_ps(h + i + half, m, r1);
    }
}

void slm_rope_avx2(float *h, const float *cs, int32_t rope_dim, int adjacent) {
    if (adjacent)
        rope_adjacent(h, cs, rope_dim);
    else
        rope_halves(h, cs, rope_dim / 2);
}

#else
/* Not x86: nothing to build (ISO C forbids an empty translation unit). */
typedef int slm_rope_avx2_unused;
#endif
