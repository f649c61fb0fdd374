/* The 8-bit activation kernels of the neon provider, written once and
 * included twice by neon.c (deliberately no include guard): once with
 * NEON_X8_ATTR empty and DOT16 = widening multiplies (any ARMv8 CPU), once
 * with NEON_X8_ATTR = the dotprod target attribute and DOT16 = vdotq_s32
 * (sdot). NX(name) gives each copy its own names.
 *
 * Both DOT16s compute exact int32 partial sums whose four lanes add up to the
 * same total (only the grouping of products in lanes differs), and lanes are
 * only ever used through those totals, so the two copies give the same bits.
 *
 * Shape, per token: the 32-element blocks are taken in groups of four from
 * block 0; each group yields one int32x4 of the four blocks' integer dots
 * (pairwise adds), converted to float and multiplied into accumulator `acc`
 * by the four (weight scale * activation scale) products; minimum terms
 * (q4_1, q5_1, q4_k, q5_k) go the same way into `accm` with the activation
 * code sums. The result is sum(acc) + sum(accm). Nothing depends on the
 * other tokens in the call, on NT or on the rows around, so a token gets the
 * same bits alone as in a batch, and the thread count changes nothing. */
#ifndef NX
#error "neon_x8.h is included by neon.c only"
#endif

/* Integer dot of 32 weight codes (w0: elements 0-15, w1: 16-31) with 32
 * activation codes, as four lanes to be summed. */
NEON_X8_ATTR static inline __attribute__((always_inline)) int32x4_t
NX(dot32)(int8x16_t w0, int8x16_t w1, const int8_t *xq) {
    int32x4_t p = DOT16(vdupq_n_s32(0), w0, vld1q_s8(xq));
    return DOT16(p, w1, vld1q_s8(xq + 16));
}

/* One group of nk (1..4) legacy blocks starting at block b, for NT tokens. */
NEON_X8_ATTR static inline __attribute__((always_inline)) void
NX(legacy_group)(const uint32_t type, const uint8_t *blk, const x8_view *x, int64_t b, const int nk,
                 const int NT, float32x4_t *acc, float32x4_t *accm) {
    const size_t bb = legacy_block_bytes(type);
    const int has_m = type == SLM_TYPE_Q4_1 || type == SLM_TYPE_Q5_1;
    int8x16_t w[4][2];
    uint16_t dh[4] = {0, 0, 0, 0}, mh[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        if (k < nk) {
            legacy_codes(type, blk + (size_t)k * bb, w[k]);
            dh[k] = rd16(blk + (size_t)k * bb);
            if (has_m) mh[k] = rd16(blk + (size_t)k * bb + 2);
        } else {
            w[k][0] = w[k][1] = vdupq_n_s8(0);
        }
    }
    const float32x4_t dv = halves4(dh), mv = has_m ? halves4(mh) : vdupq_n_f32(0.0f);
    for (int t = 0; t < NT; t++) {
        int32x4_t p[4];
        for (int k = 0; k < 4; k++)
            p[k] = k < nk ? NX(dot32)(w[k][0], w[k][1], x[t].q + 32 * (b + k)) : vdupq_n_s32(0);
        int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
        float32x4_t dx = load_f32_n(x[t].d + b, nk);
        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_f32(dv, dx));
        if (has_m)
            accm[t] =
                vfmaq_f32(accm[t], vcvtq_f32_s32(load_s32_n(x[t].s + b, nk)), vmulq_f32(mv, dx));
    }
}

NEON_X8_ATTR static inline __attribute__((always_inline)) void
NX(dot_legacy)(const uint32_t type, const uint8_t *row, const x8_view *x, int64_t n, float *out,
               const int NT) {
    const int64_t nb = n / 32;
    const size_t bb = legacy_block_bytes(type);
    float32x4_t acc[4], accm[4];
    for (int t = 0; t < NT; t++) acc[t] = accm[t] = vdupq_n_f32(0.0f);
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4, row += 4 * bb) NX(legacy_group)(type, row, x, b, 4, NT, acc, accm);
    if (b < nb) NX(legacy_group)(type, row, x, b, (int)(nb - b), NT, acc, accm);
    for (int t = 0; t < NT; t++) out[t] = vaddvq_f32(acc[t]) + vaddvq_f32(accm[t]);
}

/* k-quants: a super-block of 256 is 8 blocks of 32 (two groups of four). */
NEON_X8_ATTR static inline __attribute__((always_inline)) void
NX(dot_k)(const uint32_t type, const uint8_t *blk, const x8_view *x, int64_t n, float *out,
          const int NT) {
    const int q6 = type == SLM_TYPE_Q6_K;
    const size_t bb = k_block_bytes(type);
    float32x4_t acc[4], accm[4];
    for (int t = 0; t < NT; t++) acc[t] = accm[t] = vdupq_n_f32(0.0f);
    for (int64_t sb = 0; sb < n / 256; sb++, blk += bb) {
        float dl[8], ml[8];
        if (q6) {
            float d6 = half_at(blk + 208);
            for (int j = 0; j < 8; j++) dl[j] = d6, ml[j] = 0.0f;
        } else {
            k4_scales(blk, dl, ml);
        }
        const int8_t *sc6 = (const int8_t *)(blk + 192);
        for (int g = 0; g < 2; g++) {
            int8x16_t w[4][2];
            for (int k = 0; k < 4; k++) k_codes(type, blk, 4 * g + k, w[k]);
            const float32x4_t dv = vld1q_f32(dl + 4 * g), mv = vld1q_f32(ml + 4 * g);
            const int64_t b = sb * 8 + 4 * g;
            for (int t = 0; t < NT; t++) {
                int32x4_t p[4];
                const int8_t *xq = x[t].q + 32 * b;
                for (int k = 0; k < 4; k++) {
                    if (q6) {
                        /* a scale per 16 elements, applied exactly in int32 */
                        const int j = 4 * g + k;
                        int32x4_t lo = DOT16(vdupq_n_s32(0), w[k][0], vld1q_s8(xq + 32 * k));
                        int32x4_t hi = DOT16(vdupq_n_s32(0), w[k][1], vld1q_s8(xq + 32 * k + 16));
                        p[k] = vmlaq_n_s32(vmulq_n_s32(lo, sc6[2 * j]), hi, sc6[2 * j + 1]);
                    } else {
                        p[k] = NX(dot32)(w[k][0], w[k][1], xq + 32 * k);
                    }
                }
                int32x4_t s = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
                float32x4_t dx = vld1q_f32(x[t].d + b);
                acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s), vmulq_f32(dv, dx));
                if (!q6)
                    accm[t] =
                        vfmsq_f32(accm[t], vcvtq_f32_s32(vld1q_s32(x[t].s + b)), vmulq_f32(mv, dx));
            }
        }
    }
    for (int t = 0; t < NT; t++) out[t] = vaddvq_f32(acc[t]) + vaddvq_f32(accm[t]);
}

/* out[t] = row . x[t] for nt (1..4) tokens; type and token count become
 * constants in each specialized copy. */
#define NEON_X8_NT(FN, TYPE)                                                                       \
    switch (nt) {                                                                                  \
    case 1:                                                                                        \
        FN(TYPE, row, x, n, out, 1);                                                               \
        return;                                                                                    \
    case 2:                                                                                        \
        FN(TYPE, row, x, n, out, 2);                                                               \
        return;                                                                                    \
    case 3:                                                                                        \
        FN(TYPE, row, x, n, out, 3);                                                               \
        return;                                                                                    \
    default:                                                                                       \
        FN(TYPE, row, x, n, out, 4);                                                               \
        return;                                                                                    \
    }

NEON_X8_ATTR static void NX(dot_x8)(uint32_t type, const uint8_t *row, const x8_view *x, int64_t n,
                                    float *out, int nt) {
    switch (type) {
    case SLM_TYPE_Q8_0:
        NEON_X8_NT(NX(dot_legacy), SLM_TYPE_Q8_0)
    case SLM_TYPE_Q4_0:
        NEON_X8_NT(NX(dot_legacy), SLM_TYPE_Q4_0)
    case SLM_TYPE_Q4_1:
        NEON_X8_NT(NX(dot_legacy), SLM_TYPE_Q4_1)
    case SLM_TYPE_Q5_0:
        NEON_X8_NT(NX(dot_legacy), SLM_TYPE_Q5_0)
    case SLM_TYPE_Q5_1:
        NEON_X8_NT(NX(dot_legacy), SLM_TYPE_Q5_1)
    case SLM_TYPE_Q4_K:
        NEON_X8_NT(NX(dot_k), SLM_TYPE_Q4_K)
    case SLM_TYPE_Q5_K:
        NEON_X8_NT(NX(dot_k), SLM_TYPE_Q5_K)
    default:
        NEON_X8_NT(NX(dot_k), SLM_TYPE_Q6_K)
    }
}
#undef NEON_X8_NT
