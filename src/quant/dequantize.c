/* Scalar reference dequantizers: one block format each, written straight
 * from the layouts documented in quant/types.h. These are the oracle that the
 * SIMD kernels are tested against, so they favour obviousness over speed.
 *
 * Blocks come from memory-mapped files where they are only byte-aligned, so
 * every multi-byte field is assembled from bytes (little-endian, as GGUF
 * stores it) instead of being read through a cast pointer. */
#include <stdint.h>
#include <string.h>

#include "base/fp16.h"
#include "quant/types.h"

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static float rd_half(const uint8_t *p) {
    return slm_fp16_to_f32(rd16(p));
}

/* ---- legacy 32-element blocks ------------------------------------------ */

static void dq_q4_0(const uint8_t *b, float *y) {
    float d = rd_half(b);
    const uint8_t *qs = b + 2;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)((qs[i] & 15) - 8);
        y[i + 16] = d * (float)((qs[i] >> 4) - 8);
    }
}

static void dq_q4_1(const uint8_t *b, float *y) {
    float d = rd_half(b), m = rd_half(b + 2);
    const uint8_t *qs = b + 4;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)(qs[i] & 15) + m;
        y[i + 16] = d * (float)(qs[i] >> 4) + m;
    }
}

/* The fifth bit of element i is bit i of the 32-bit qh word. */
static void q5_codes(const uint8_t *qh4, const uint8_t *qs, int *q) {
    uint32_t qh = rd32(qh4);
    for (int i = 0; i < 16; i++) {
        q[i] = (qs[i] & 15) | (int)((qh >> i) & 1u) << 4;
        q[i + 16] = (qs[i] >> 4) | (int)((qh >> (i + 16)) & 1u) << 4;
    }
}

static void dq_q5_0(const uint8_t *b, float *y) {
    float d = rd_half(b);
    int q[32];
    q5_codes(b + 2, b + 6, q);
    for (int i = 0; i < 32; i++) y[i] = d * (float)(q[i] - 16);
}

static void dq_q5_1(const uint8_t *b, float *y) {
    float d = rd_half(b), m = rd_half(b + 2);
    int q[32];
    q5_codes(b + 4, b + 8, q);
    for (int i = 0; i < 32; i++) y[i] = d * (float)q[i] + m;
}

/* q8_0 and q8_1 share the decode; q8_1's second half (the sum) is skipped. */
static void dq_q8(const uint8_t *b, const uint8_t *qs, float *y) {
    float d = rd_half(b);
    for (int i = 0; i < 32; i++) y[i] = d * (float)(int8_t)qs[i];
}

/* ---- k-quants: 256-element super-blocks -------------------------------- */

static void dq_q2_k(const uint8_t *b, float *y) {
    const uint8_t *scales = b, *qs = b + 16;
    float d = rd_half(b + 80), dmin = rd_half(b + 82);
    for (int e = 0; e < SLM_QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int q = (qs[32 * h + l] >> (2 * k)) & 3;
        uint8_t sc = scales[e / 16];
        y[e] = d * (float)(sc & 15) * (float)q - dmin * (float)(sc >> 4);
    }
}

/* 16 six-bit scales packed in 12 bytes (q3_k). */
static int q3_k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 15) : (s[j - 8] >> 4);
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return lo | hi << 4;
}

static void dq_q3_k(const uint8_t *b, float *y) {
    const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
    float d = rd_half(b + 108);
    for (int e = 0; e < SLM_QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int q = (qs[32 * h + l] >> (2 * k)) & 3;
        q |= ((hmask[l] >> (e / 32)) & 1) << 2;
        y[e] = d * (float)(q3_k_scale(scales, e / 16) - 32) * (float)(q - 4);
    }
}

/* Scale and min of sub-block j (0..7) of a q4_k / q5_k block: 6 bits each,
 * the first four stored whole, the last four split into a low nibble and two
 * high bits parked in the top of the first eight bytes. */
static void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

static void dq_q4_k(const uint8_t *b, float *y) {
    float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(scales, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) y[32 * j + l] = dl * (float)((q[l] >> shift) & 15) - ml;
    }
}

static void dq_q5_k(const uint8_t *b, float *y) {
    float d = rd_half(b), dmin = rd_half(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min(scales, j, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        const uint8_t *q = qs + 32 * (j / 2);
        int shift = 4 * (j % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 15) | ((qh[l] >> j) & 1) << 4;
            y[32 * j + l] = dl * (float)v - ml;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *scales = (const int8_t *)(b + 192);
    float d = rd_half(b + 208);
    for (int e = 0; e < SLM_QK_K; e++) {
        int h = e / 128, k = (e % 128) / 32, l = e % 32;
        int lo = (ql[64 * h + 32 * (k & 1) + l] >> (4 * (k >> 1))) & 15;
        int hi = (qh[32 * h + l] >> (2 * k)) & 3;
        y[e] = d * (float)scales[e / 16] * (float)((lo | hi << 4) - 32);
    }
}

static void dq_q8_k(const uint8_t *b, float *y) {
    float d = slm_bits_to_f32(rd32(b));
    for (int i = 0; i < SLM_QK_K; i++) y[i] = d * (float)(int8_t)b[4 + i];
}

/* ---- dispatch ------------------------------------------------------------ */

typedef void (*dq_block_fn)(const uint8_t *block, float *y);

static void dq_q8_0(const uint8_t *b, float *y) {
    dq_q8(b, b + 2, y);
}
static void dq_q8_1(const uint8_t *b, float *y) {
    dq_q8(b, b + 4, y);
}
static void dq_f32(const uint8_t *b, float *y) {
    *y = slm_bits_to_f32(rd32(b));
}
static void dq_f16(const uint8_t *b, float *y) {
    *y = slm_fp16_to_f32(rd16(b));
}
static void dq_bf16(const uint8_t *b, float *y) {
    *y = slm_bf16_to_f32(rd16(b));
}

static dq_block_fn dq_fn(uint32_t type) {
    switch (type) {
    case SLM_TYPE_F32:
        return dq_f32;
    case SLM_TYPE_F16:
        return dq_f16;
    case SLM_TYPE_BF16:
        return dq_bf16;
    case SLM_TYPE_Q4_0:
        return dq_q4_0;
    case SLM_TYPE_Q4_1:
        return dq_q4_1;
    case SLM_TYPE_Q5_0:
        return dq_q5_0;
    case SLM_TYPE_Q5_1:
        return dq_q5_1;
    case SLM_TYPE_Q8_0:
        return dq_q8_0;
    case SLM_TYPE_Q8_1:
        return dq_q8_1;
    case SLM_TYPE_Q2_K:
        return dq_q2_k;
    case SLM_TYPE_Q3_K:
        return dq_q3_k;
    case SLM_TYPE_Q4_K:
        return dq_q4_k;
    case SLM_TYPE_Q5_K:
        return dq_q5_k;
    case SLM_TYPE_Q6_K:
        return dq_q6_k;
    case SLM_TYPE_Q8_K:
        return dq_q8_k;
    default:
        return NULL;
    }
}

void slm_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n) {
    if (n <= 0) return;
    const slm_type_info *ti = slm_type_get(type);
    dq_block_fn fn = dq_fn(type);
    if (ti == NULL || fn == NULL) {
        /* The caller should have asked slm_type_check_dequantize; zeros are
         * a defined answer that cannot crash. */
        memset(dst, 0, (size_t)n * sizeof *dst);
        return;
    }
    const uint8_t *b = src;
    int64_t bs = ti->block_size, nb = n / bs;
    for (int64_t i = 0; i < nb; i++) fn(b + (size_t)i * ti->type_size, dst + i * bs);
    if (nb * bs < n) memset(dst + nb * bs, 0, (size_t)(n - nb * bs) * sizeof *dst);
}
