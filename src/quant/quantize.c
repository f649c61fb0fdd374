/* Scalar reference quantizers: float rows to the block formats documented in
 * quant/types.h, producing blocks that ggml's dequantizers decode to the same
 * values ours do.
 *
 * The schemes follow llama.cpp's reference ones:
 *  - q8_0, q8_1, q8_k: symmetric round-to-nearest on the block's absmax.
 *  - q4_0, q5_0: symmetric, the largest-magnitude value lands on the most
 *    negative code (-8 / -16) so the full code range is used.
 *  - q4_1, q5_1: min + scale over [min, max].
 *  - k-quants: a small per-sub-block search for the scale (and min) that
 *    minimizes a weighted squared error, then the sub-block scales are
 *    themselves quantized relative to the super-block's fp16 d (and dmin),
 *    and the codes are recomputed with the scales as they will be decoded.
 * `imatrix` (per-column importance, as llama-imatrix produces) multiplies the
 * error weights; with it the legacy q4/q5 formats also get the scale search.
 *
 * Without `imatrix` the legacy formats are bit-identical to llama.cpp's
 * reference output. Elsewhere codes are computed from the scales as stored
 * (fp16-rounded), so what we minimize is what the decoder sees. Scales are
 * saturated to the largest finite half so huge inputs degrade instead of
 * decoding to Inf/NaN. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/types.h"

#define HALF_MAX 65504.0f
/* Groups whose absmax is below this are stored as zeros (as ggml does): a
 * scale this small would underflow fp16 anyway. */
#define GROUP_EPS 1e-15f

static void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Stores a scale as fp16, saturating at the largest finite half (NaN -> 0),
 * and returns the value the decoder will see. */
static float put_half(uint8_t *p, float v) {
    if (isnan(v)) v = 0.0f;
    if (v > HALF_MAX) v = HALF_MAX;
    if (v < -HALF_MAX) v = -HALF_MAX;
    uint16_t h = slm_f32_to_fp16(v);
    wr16(p, h);
    return slm_fp16_to_f32(h);
}

/* Rounds to nearest and clamps to [lo, hi]; NaN goes to lo. The clamp comes
 * first so the float-to-int conversion is always defined. */
static int round_clamp(float v, int lo, int hi) {
    if (!(v > (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)lrintf(v);
}

static float safe_inv(float d) {
    return d != 0.0f ? 1.0f / d : 0.0f;
}

/* Value with the largest magnitude (sign kept); 0 for an empty/zero group. */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            max = x[i];
        }
    }
    return max;
}

/* ---- scale searches ------------------------------------------------------ */

/* Symmetric codes: x[i] ~= scale * l[i] with l in [-nmax, nmax-1], stored as
 * L[i] = l[i] + nmax. Tries inverse scales around -nmax/max (max = the value
 * of largest magnitude, which maps to -nmax) and keeps the one whose
 * least-squares scale gives the smallest weighted error; for a fixed set of
 * codes that error is sum(w x^2) - sumlx^2/suml2, so maximizing
 * sumlx^2/suml2 is enough. Returns the scale (0 for a zero group). */
static float search_symmetric(int n, int nmax, const float *x, const float *w, uint8_t *L) {
    float max = signed_absmax(x, n);
    if (fabsf(max) < GROUP_EPS) {
        for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
        return 0.0f;
    }
    float best_scale = 0.0f;
    double best = -1.0;
    for (int step = -9; step <= 9; step++) {
        float iscale = -((float)nmax + 0.1f * (float)step) / max;
        double sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = round_clamp(iscale * x[i], -nmax, nmax - 1);
            sumlx += (double)w[i] * x[i] * l;
            suml2 += (double)w[i] * l * l;
        }
        if (suml2 <= 0) continue;
        double gain = sumlx * sumlx / suml2;
        if (gain > best) {
            best = gain;
            best_scale = (float)(sumlx / suml2);
            for (int i = 0; i < n; i++)
                L[i] = (uint8_t)(round_clamp(iscale * x[i], -nmax, nmax - 1) + nmax);
        }
    }
    if (best < 0) { /* all weights zero: plain round-to-nearest */
        float iscale = -(float)nmax / max;
        for (int i = 0; i < n; i++)
            L[i] = (uint8_t)(round_clamp(iscale * x[i], -nmax, nmax - 1) + nmax);
        return 1.0f / iscale;
    }
    return best_scale;
}

/* Affine codes: x[i] ~= scale * L[i] - neg_min with L in [0, nmax] and
 * neg_min >= 0 (the decoders subtract a non-negative min). Starts from the
 * [min(x,0), max(x)] range, then tries inverse scales (nmax + rmin +
 * rdelta*k) / range for k = 0..nstep, fitting scale and min by weighted least
 * squares for each set of codes and keeping the best. Returns the scale and
 * sets *neg_min. */
static float search_affine(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    double sum_w = 0, sum_x = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += (double)w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (!(max > min)) { /* constant group (or NaN): min alone represents it */
        for (int i = 0; i < n; i++) L[i] = 0;
        *neg_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    double best_err = 0;
    for (int i = 0; i < n; i++) {
        int l = round_clamp(iscale * (x[i] - min), 0, nmax);
        L[i] = (uint8_t)l;
        double diff = (double)scale * l + min - x[i];
        best_err += w[i] * diff * diff;
    }
    uint8_t Laux[SLM_QK_K]; /* n <= 32 in every caller */
    for (int k = 0; k <= nstep; k++) {
        iscale = ((float)nmax + rmin + rdelta * (float)k) / (max - min);
        double sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = round_clamp(iscale * (x[i] - min), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += (double)w[i] * l;
            sum_l2 += (double)w[i] * l * l;
            sum_xl += (double)w[i] * l * x[i];
        }
        double det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0)) continue;
        double this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        double this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) { /* the format cannot add: refit with min = 0 */
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        double err = 0;
        for (int i = 0; i < n; i++) {
            double diff = this_scale * Laux[i] + this_min - x[i];
            err += w[i] * diff * diff;
        }
        if (err < best_err) {
            memcpy(L, Laux, (size_t)n);
            best_err = err;
            scale = (float)this_scale;
            min = (float)this_min;
        }
    }
    *neg_min = -min;
    return scale;
}

/* Error weights for one group: the importance matrix times a magnitude term
 * when given (so large values in important columns matter most), otherwise
 * the magnitude term alone. A group whose importance is all zero falls back
 * to the magnitude term rather than having nothing to minimize. */
static void group_weights(int n, const float *x, const float *imat, float sigma2, int kind,
                          float *w) {
    double sum = 0;
    if (imat != NULL) {
        for (int i = 0; i < n; i++) {
            w[i] = imat[i] * sqrtf(sigma2 + x[i] * x[i]);
            sum += w[i];
        }
        if (sum > 0) return;
    }
    if (kind == 0) { /* affine k-quants: average magnitude plus own magnitude */
        float sum_x2 = 0;
        for (int i = 0; i < n; i++) sum_x2 += x[i] * x[i];
        float av = sqrtf(sum_x2 / (float)n);
        for (int i = 0; i < n; i++) w[i] = av + fabsf(x[i]);
    } else if (kind == 1) { /* symmetric k-quants: squared magnitude */
        for (int i = 0; i < n; i++) w[i] = x[i] * x[i];
    } else {
        for (int i = 0; i < n; i++) w[i] = 1.0f;
    }
}

static float mean_square(const float *x, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    return s / (float)n;
}

/* ---- legacy 32-element blocks ------------------------------------------ */

/* Without an importance matrix the legacy formats reproduce llama.cpp's
 * reference quantizers bit for bit (same unrounded inverse scale, same
 * rounding: half away from zero for q8, +0.5 and truncate for q4/q5), so a
 * file we write matches one llama-quantize writes and tests can compare
 * bytes. `trunc_code` is that truncation, clamped first to stay defined. */
static int trunc_code(float v, int nmax) {
    if (!(v > 0.0f)) return 0;
    if (v >= (float)nmax) return nmax;
    return (int)v;
}

static void put_q8(const float *x, uint8_t *dst_d, int8_t *qs, float *d_out) {
    float amax = fabsf(signed_absmax(x, SLM_QK));
    float d = amax / 127.0f, id = safe_inv(d);
    put_half(dst_d, d);
    for (int i = 0; i < SLM_QK; i++) {
        float v = x[i] * id;
        qs[i] = (int8_t)(v >= -127.0f && v <= 127.0f ? (int)roundf(v) : v > 0 ? 127 : -127);
    }
    if (d_out) *d_out = d;
}

static void q_q8_0(const float *x, uint8_t *b, const float *imat) {
    (void)imat; /* 8 bits leave little for a search to win */
    put_q8(x, b, (int8_t *)(b + 2), NULL);
}

static void q_q8_1(const float *x, uint8_t *b, const float *imat) {
    (void)imat;
    float d;
    int8_t *qs = (int8_t *)(b + 4);
    put_q8(x, b, qs, &d);
    int sum = 0;
    for (int i = 0; i < SLM_QK; i++) sum += qs[i];
    put_half(b + 2, d * (float)sum);
}

/* Symmetric codes L in [0, 2*half) for q4_0 (half 8) / q5_0 (half 16). */
static void legacy_symmetric(const float *x, const float *imat, int half, uint8_t *dst_d,
                             uint8_t *L) {
    if (imat == NULL) {
        float d = signed_absmax(x, SLM_QK) / -(float)half, id = safe_inv(d);
        put_half(dst_d, d);
        for (int i = 0; i < SLM_QK; i++)
            L[i] = (uint8_t)trunc_code(x[i] * id + (float)half + 0.5f, 2 * half - 1);
        return;
    }
    float w[SLM_QK];
    group_weights(SLM_QK, x, imat, mean_square(x, SLM_QK), 2, w);
    float d = put_half(dst_d, search_symmetric(SLM_QK, half, x, w, L)), id = safe_inv(d);
    for (int i = 0; i < SLM_QK; i++)
        L[i] = (uint8_t)round_clamp(x[i] * id + (float)half, 0, 2 * half - 1);
}

/* Affine codes L in [0, nmax] for q4_1 (15) / q5_1 (31). */
static void legacy_affine(const float *x, const float *imat, int nmax, uint8_t *b, uint8_t *L) {
    if (imat == NULL) {
        float min = x[0], max = x[0];
        for (int i = 1; i < SLM_QK; i++) {
            if (x[i] < min) min = x[i];
            if (x[i] > max) max = x[i];
        }
        float d = (max - min) / (float)nmax, id = safe_inv(d);
        put_half(b, d);
        put_half(b + 2, min);
        for (int i = 0; i < SLM_QK; i++) L[i] = (uint8_t)trunc_code((x[i] - min) * id + 0.5f, nmax);
        return;
    }
    float w[SLM_QK], neg_min;
    group_weights(SLM_QK, x, imat, mean_square(x, SLM_QK), 2, w);
    float d = search_affine(SLM_QK, nmax, x, w, L, &neg_min, -0.5f, 0.1f, 10);
    d = put_half(b, d);
    float m = put_half(b + 2, -neg_min), id = safe_inv(d);
    for (int i = 0; i < SLM_QK; i++) L[i] = (uint8_t)round_clamp((x[i] - m) * id, 0, nmax);
}

static void pack_nibbles32(const uint8_t *L, uint8_t *qs) {
    for (int i = 0; i < 16; i++) qs[i] = (uint8_t)((L[i] & 15) | (L[i + 16] & 15) << 4);
}

static void pack_q5_high(const uint8_t *L, uint8_t *qh) {
    uint32_t h = 0;
    for (int i = 0; i < SLM_QK; i++) h |= (uint32_t)(L[i] >> 4 & 1) << i;
    wr32(qh, h);
}

static void q_q4_0(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK];
    legacy_symmetric(x, imat, 8, b, L);
    pack_nibbles32(L, b + 2);
}

static void q_q5_0(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK];
    legacy_symmetric(x, imat, 16, b, L);
    pack_q5_high(L, b + 2);
    pack_nibbles32(L, b + 6);
}

static void q_q4_1(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK];
    legacy_affine(x, imat, 15, b, L);
    pack_nibbles32(L, b + 4);
}

static void q_q5_1(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK];
    legacy_affine(x, imat, 31, b, L);
    pack_q5_high(L, b + 4);
    pack_nibbles32(L, b + 8);
}

/* ---- k-quants ------------------------------------------------------------ */

/* Quantizes per-sub-block values v[0..n) (all >= 0) to integers in
 * [0, nmax] with step max / nmax, stored as fp16 at `dst_d`; returns the step
 * as stored. As in quantize_signed_scales, the integers are taken relative to
 * the stored (rounded) step. */
static float quantize_scales(const float *v, int n, int nmax, int *out, uint8_t *dst_d) {
    float max = 0;
    for (int j = 0; j < n; j++)
        if (v[j] > max) max = v[j];
    float d = put_half(dst_d, max / (float)nmax), id = safe_inv(d);
    for (int j = 0; j < n; j++) out[j] = round_clamp(id * v[j], 0, nmax);
    return d;
}

/* Inverse of the decoder's k4_scale_min: 8 six-bit scales and mins in 12
 * bytes, the top two bits of sub-blocks 4..7 stored in bytes 0..7. */
static void pack_k4_scales(const int *sc, const int *m, uint8_t *s) {
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)sc[j];
        s[j + 4] = (uint8_t)m[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((sc[j] & 15) | (m[j] & 15) << 4);
        s[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
        s[j] |= (uint8_t)((m[j] >> 4) << 6);
    }
}

/* Shared by q4_k (nmax 15) and q5_k (nmax 31): fills d, dmin and scales at
 * b[0..16) and returns the 256 codes in L. */
static void k_affine(const float *x, const float *imat, int nmax, uint8_t *b, uint8_t *L) {
    float scales[8], mins[8], w[32];
    float sigma2 = 2.0f * mean_square(x, SLM_QK_K);
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        group_weights(32, xs, imat ? imat + 32 * j : NULL, sigma2, 0, w);
        /* Search widths as llama.cpp uses them for these formats. */
        if (nmax == 15)
            scales[j] = search_affine(32, nmax, xs, w, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
        else
            scales[j] = search_affine(32, nmax, xs, w, L + 32 * j, &mins[j], -0.5f, 0.1f, 15);
        if (!(scales[j] >= 0)) scales[j] = 0; /* NaN guard; the search never goes negative */
        if (!(mins[j] >= 0)) mins[j] = 0;
    }
    int sc[8], m[8];
    float d = quantize_scales(scales, 8, 63, sc, b);
    float dmin = quantize_scales(mins, 8, 63, m, b + 2);
    memset(b + 4, 0, 12);
    pack_k4_scales(sc, m, b + 4);
    for (int j = 0; j < 8; j++) {
        float dl = d * (float)sc[j], ml = dmin * (float)m[j];
        float idl = safe_inv(dl);
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)round_clamp((x[32 * j + l] + ml) * idl, 0, nmax);
    }
}

static void q_q4_k(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK_K];
    k_affine(x, imat, 15, b, L);
    uint8_t *qs = b + 16;
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            qs[32 * p + l] = (uint8_t)(L[64 * p + l] | L[64 * p + 32 + l] << 4);
}

static void q_q5_k(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK_K];
    k_affine(x, imat, 31, b, L);
    uint8_t *qh = b + 16, *qs = b + 48;
    memset(qh, 0, 32);
    for (int e = 0; e < SLM_QK_K; e++) qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
    for (int p = 0; p < 4; p++)
        for (int l = 0; l < 32; l++)
            qs[32 * p + l] = (uint8_t)((L[64 * p + l] & 15) | (L[64 * p + 32 + l] & 15) << 4);
}

/* 2-bit packing shared by q2_k and q3_k's low bits: element 128h + 32k + l
 * goes to bits 2k of byte 32h + l. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    memset(qs, 0, 64);
    for (int e = 0; e < SLM_QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        qs[32 * h + l] |= (uint8_t)((L[e] & 3) << (2 * k));
    }
}

static void q_q2_k(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK_K];
    float scales[16], mins[16], w[16];
    float sigma2 = 2.0f * mean_square(x, SLM_QK_K);
    for (int j = 0; j < 16; j++) {
        const float *xs = x + 16 * j;
        group_weights(16, xs, imat ? imat + 16 * j : NULL, sigma2, 0, w);
        scales[j] = search_affine(16, 3, xs, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15);
        if (!(scales[j] >= 0)) scales[j] = 0;
        if (!(mins[j] >= 0)) mins[j] = 0;
    }
    int sc[16], m[16];
    float d = quantize_scales(scales, 16, 15, sc, b + 80);
    float dmin = quantize_scales(mins, 16, 15, m, b + 82);
    for (int j = 0; j < 16; j++) {
        b[j] = (uint8_t)(sc[j] | m[j] << 4);
        float dl = d * (float)sc[j], ml = dmin * (float)m[j], idl = safe_inv(dl);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)round_clamp((x[16 * j + l] + ml) * idl, 0, 3);
    }
    pack_2bit(L, b + 16);
}

/* Signed sub-block scales (the search returns negative scales when the
 * largest value is positive) to int codes in [-half, half-1], the largest
 * magnitude mapping to about -half. Stores the super-block d as fp16 at
 * `dst_d` and returns it as stored. The codes are taken relative to the
 * stored d: for small weights d is an fp16 subnormal, off by several percent,
 * and scaling against the unrounded d would carry that error into every
 * sub-block scale. */
static float quantize_signed_scales(const float *s, int n, int half, int *out, uint8_t *dst_d) {
    float max = signed_absmax(s, n);
    float d = put_half(dst_d, fabsf(max) < GROUP_EPS ? 0.0f : max / -(float)half);
    float id = safe_inv(d);
    for (int j = 0; j < n; j++) out[j] = round_clamp(id * s[j], -half, half - 1);
    return d;
}

static void q_q3_k(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK_K];
    float scales[16], w[16];
    float sigma2 = 2.0f * mean_square(x, SLM_QK_K);
    for (int j = 0; j < 16; j++) {
        group_weights(16, x + 16 * j, imat ? imat + 16 * j : NULL, sigma2, 1, w);
        scales[j] = search_symmetric(16, 4, x + 16 * j, w, L + 16 * j);
    }
    int sc[16];
    float d = quantize_signed_scales(scales, 16, 32, sc, b + 108);
    uint8_t *s = b + 96;
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        int v = sc[j] + 32; /* stored biased, 0..63 */
        if (j < 8)
            s[j] |= (uint8_t)(v & 15);
        else
            s[j - 8] |= (uint8_t)((v & 15) << 4);
        s[8 + j % 4] |= (uint8_t)((v >> 4) << (2 * (j / 4)));
        float idl = safe_inv(d * (float)sc[j]);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)(round_clamp(x[16 * j + l] * idl, -4, 3) + 4);
    }
    uint8_t *hmask = b;
    memset(hmask, 0, 32);
    for (int e = 0; e < SLM_QK_K; e++) hmask[e % 32] |= (uint8_t)((L[e] >> 2) << (e / 32));
    pack_2bit(L, b + 32);
}

static void q_q6_k(const float *x, uint8_t *b, const float *imat) {
    uint8_t L[SLM_QK_K];
    float scales[16], w[16];
    float sigma2 = 2.0f * mean_square(x, SLM_QK_K);
    for (int j = 0; j < 16; j++) {
        group_weights(16, x + 16 * j, imat ? imat + 16 * j : NULL, sigma2, 1, w);
        scales[j] = search_symmetric(16, 32, x + 16 * j, w, L + 16 * j);
    }
    int sc[16];
    float d = quantize_signed_scales(scales, 16, 128, sc, b + 208);
    for (int j = 0; j < 16; j++) {
        b[192 + j] = (uint8_t)(int8_t)sc[j];
        float idl = safe_inv(d * (float)sc[j]);
        for (int l = 0; l < 16; l++)
            L[16 * j + l] = (uint8_t)(round_clamp(x[16 * j + l] * idl, -32, 31) + 32);
    }
    uint8_t *ql = b, *qh = b + 128;
    memset(ql, 0, 128 + 64);
    for (int e = 0; e < SLM_QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        ql[64 * h + 32 * (k & 1) + l] |= (uint8_t)((L[e] & 15) << (4 * (k >> 1)));
        qh[32 * h + l] |= (uint8_t)((L[e] >> 4) << (2 * k));
    }
}

/* q8_k keeps d in f32 and maps the largest-magnitude value to -128 (as ggml
 * does), so the dot-product kernels see the same codes ggml's would. */
static void q_q8_k(const float *x, uint8_t *b, const float *imat) {
    (void)imat;
    float max = signed_absmax(x, SLM_QK_K);
    int8_t *qs = (int8_t *)(b + 4);
    if (fabsf(max) < GROUP_EPS || !(fabsf(max) <= 3.4e38f)) {
        memset(b, 0, 292);
        return;
    }
    float iscale = -128.0f / max;
    for (int i = 0; i < SLM_QK_K; i++) qs[i] = (int8_t)round_clamp(iscale * x[i], -128, 127);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += qs[16 * g + i];
        wr16(b + 260 + 2 * g, (uint16_t)(int16_t)sum);
    }
    wr32(b, slm_f32_to_bits(1.0f / iscale));
}

/* ---- dispatch ------------------------------------------------------------ */

typedef void (*q_block_fn)(const float *x, uint8_t *block, const float *imat);

static q_block_fn q_fn(uint32_t type) {
    switch (type) {
    case SLM_TYPE_Q4_0:
        return q_q4_0;
    case SLM_TYPE_Q4_1:
        return q_q4_1;
    case SLM_TYPE_Q5_0:
        return q_q5_0;
    case SLM_TYPE_Q5_1:
        return q_q5_1;
    case SLM_TYPE_Q8_0:
        return q_q8_0;
    case SLM_TYPE_Q8_1:
        return q_q8_1;
    case SLM_TYPE_Q2_K:
        return q_q2_k;
    case SLM_TYPE_Q3_K:
        return q_q3_k;
    case SLM_TYPE_Q4_K:
        return q_q4_k;
    case SLM_TYPE_Q5_K:
        return q_q5_k;
    case SLM_TYPE_Q6_K:
        return q_q6_k;
    case SLM_TYPE_Q8_K:
        return q_q8_k;
    default:
        return NULL;
    }
}

void slm_quantize_row_ref(uint32_t type, const float *src, void *dst, int64_t n,
                          const float *imatrix) {
    if (n <= 0) return;
    uint8_t *out = dst;
    switch (type) {
    case SLM_TYPE_F32:
        memcpy(out, src, (size_t)n * sizeof(float));
        return;
    case SLM_TYPE_F16:
        for (int64_t i = 0; i < n; i++) wr16(out + 2 * i, slm_f32_to_fp16(src[i]));
        return;
    case SLM_TYPE_BF16:
        for (int64_t i = 0; i < n; i++) wr16(out + 2 * i, slm_f32_to_bf16(src[i]));
        return;
    default:
        break;
    }
    const slm_type_info *ti = slm_type_get(type);
    q_block_fn fn = q_fn(type);
    if (ti == NULL || fn == NULL) return; /* nothing sensible to write; see can_quantize */
    int64_t bs = ti->block_size, nb = n / bs;
    for (int64_t i = 0; i < nb; i++)
        fn(src + i * bs, out + (size_t)i * ti->type_size, imatrix ? imatrix + i * bs : NULL);
}
