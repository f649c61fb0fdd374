/* Shared by the x86 providers (avx2.c, avx512.c; both compiled with at least
 * AVX2, so SSSE3/SSE4.1 are there): q4_k/q5_k packed 6-bit scales and
 * minimums decoded 8 at a time with byte shuffles, exactly as the reference
 * decodes them one at a time; and the layout of the k-quant activations
 * both providers quantize per 256 elements. */
#ifndef SLM_KERNELS_X86_KQUANT_H
#define SLM_KERNELS_X86_KQUANT_H
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* One token's super-block of k-quant activations: 256 signed codes (each
 * provider orders them for its loads), the 16 sums of 16 codes and the 8
 * sums of 32 (int16, by element order), d_x (float), zero padding. */
#define XK_BYTES 320
#define XK_BSUM16 256
#define XK_BSUM32 288
#define XK_D 304

/* Writes the sums (s16: the 16 sums of 16 codes) and d_x of the super-block
 * at out, after its codes. */
static inline void slm_xk_finish(uint8_t *out, const int16_t s16[16], float d) {
    int16_t s32[8];
    for (int j = 0; j < 8; j++) s32[j] = (int16_t)(s16[2 * j] + s16[2 * j + 1]);
    memset(out + XK_BSUM16, 0, XK_BYTES - XK_BSUM16);
    memcpy(out + XK_BSUM16, s16, 16 * sizeof *s16);
    memcpy(out + XK_BSUM32, s32, sizeof s32);
    memcpy(out + XK_D, &d, sizeof d);
}

static inline float slm_xk_d(const uint8_t *xb) {
    float d;
    memcpy(&d, xb + XK_D, sizeof d);
    return d;
}

/* The scale decoding below, on the 16 bytes at each 128-bit lane of sb (a
 * q4_k/q5_k super-block's d, dmin, then 12 bytes of packed scales): lane by
 * lane, the 8 sub-block scales into bytes 0-7 of *sc and the 8 minimums into
 * bytes 0-7 of *mn (bytes 8-15 zero):
 * j < 4: sc = b[j] & 63, mn = b[j + 4] & 63;
 * j >= 4: sc = (b[j + 4] & 15) | (b[j - 4] >> 6) << 4,
 *         mn = (b[j + 4] >> 4) | (b[j] >> 6) << 4   (b = the 12 bytes).
 * Every step is per 128-bit lane, so two super-blocks cost what one does. */
static inline __attribute__((always_inline)) void slm_x86_kscales_lanes(__m256i sb, __m256i *sc,
                                                                        __m256i *mn) {
#define SLM_KS_SHUF(...) _mm256_broadcastsi128_si256(_mm_setr_epi8(__VA_ARGS__))
    const __m256i b4 = _mm256_bsrli_epi128(sb, 4);
    const __m256i lo_s = _mm256_shuffle_epi8(
        b4, SLM_KS_SHUF(0, 1, 2, 3, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i lo_m = _mm256_shuffle_epi8(
        b4, SLM_KS_SHUF(4, 5, 6, 7, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i hi_s = _mm256_shuffle_epi8(
        b4, SLM_KS_SHUF(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i hi_m = _mm256_shuffle_epi8(
        b4, SLM_KS_SHUF(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, -1, -1, -1, -1));
    const __m256i m63lo = SLM_KS_SHUF(63, 63, 63, 63, 15, 15, 15, 15, 0, 0, 0, 0, 0, 0, 0, 0);
#undef SLM_KS_SHUF
    const __m256i c3 = _mm256_set1_epi8(3);
    *sc = _mm256_or_si256(_mm256_and_si256(lo_s, m63lo),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi_s, 6), c3), 4));
    const __m256i mnlo = _mm256_blend_epi16(
        _mm256_and_si256(lo_m, _mm256_set1_epi8(63)),
        _mm256_and_si256(_mm256_srli_epi16(lo_m, 4), _mm256_set1_epi8(15)), 0x0c);
    *mn = _mm256_or_si256(mnlo,
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi_m, 6), c3), 4));
}

/* One super-block at blk (144+ bytes): its scales and minimums as above. */
static inline __attribute__((always_inline)) void slm_x86_kscales(const uint8_t *blk, __m128i *sc,
                                                                  __m128i *mn) {
    __m256i s, m;
    slm_x86_kscales_lanes(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)blk)), &s, &m);
    *sc = _mm256_castsi256_si128(s);
    *mn = _mm256_castsi256_si128(m);
}

/* Two super-blocks: blk0's in lane 0, blk1's in lane 1. */
static inline __attribute__((always_inline)) void
slm_x86_kscales2(const uint8_t *blk0, const uint8_t *blk1, __m256i *sc, __m256i *mn) {
    slm_x86_kscales_lanes(
        _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)blk0)),
            _mm_loadu_si128((const __m128i *)(const void *)blk1), 1),
        sc, mn);
}

#endif
#endif
