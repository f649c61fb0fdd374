/* Tensor element types: the type table, hand-built blocks decoded against
 * formulas written here from ggml's layouts, quantize -> dequantize round
 * trips with error bounds, importance weighting, and the fp16/bf16
 * conversions everything else rests on. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "base/status.h"
#include "check.h"
#include "quant/types.h"
#include "slm.h"

static uint16_t h16(float f) {
    return slm_f32_to_fp16(f);
}
static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static float get_half(const uint8_t *p) {
    return slm_fp16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* Decodes `block` both from an aligned buffer and from one offset by a byte
 * (blocks in mapped files are only byte-aligned), checks both agree, and
 * compares with `want`. */
static void check_decode(uint32_t type, const uint8_t *block, const float *want, int n,
                         const char *what) {
    const slm_type_info *ti = slm_type_get(type);
    size_t bytes = (size_t)n / ti->block_size * ti->type_size;
    uint8_t *shifted = malloc(bytes + 1);
    float *got = malloc(sizeof(float) * (size_t)n);
    float *got2 = malloc(sizeof(float) * (size_t)n);
    memcpy(shifted + 1, block, bytes);
    slm_dequantize_row(type, block, got, n);
    slm_dequantize_row(type, shifted + 1, got2, n);
    int bad = 0, first = -1;
    for (int i = 0; i < n; i++) {
        if (got[i] != want[i] || got2[i] != want[i]) {
            if (first < 0) first = i;
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d values differ, first at %d: got %g, want %g", what, bad, n,
              first, first >= 0 ? got[first] : 0.0, first >= 0 ? want[first] : 0.0);
    free(shifted);
    free(got);
    free(got2);
}

/* ---- the table ----------------------------------------------------------- */

static void test_table(void) {
    static const struct {
        uint32_t id;
        const char *name;
        uint32_t bs, ts;
        int dq;
    } want[] = {
        {0, "f32", 1, 4, 1},         {1, "f16", 1, 2, 1},         {2, "q4_0", 32, 18, 1},
        {3, "q4_1", 32, 20, 1},      {6, "q5_0", 32, 22, 1},      {7, "q5_1", 32, 24, 1},
        {8, "q8_0", 32, 34, 1},      {9, "q8_1", 32, 36, 1},      {10, "q2_k", 256, 84, 1},
        {11, "q3_k", 256, 110, 1},   {12, "q4_k", 256, 144, 1},   {13, "q5_k", 256, 176, 1},
        {14, "q6_k", 256, 210, 1},   {15, "q8_k", 256, 292, 1},   {16, "iq2_xxs", 256, 66, 0},
        {17, "iq2_xs", 256, 74, 0},  {18, "iq3_xxs", 256, 98, 0}, {19, "iq1_s", 256, 50, 0},
        {20, "iq4_nl", 32, 18, 0},   {21, "iq3_s", 256, 110, 0},  {22, "iq2_s", 256, 82, 0},
        {23, "iq4_xs", 256, 136, 0}, {24, "i8", 1, 1, 0},         {25, "i16", 1, 2, 0},
        {26, "i32", 1, 4, 0},        {27, "i64", 1, 8, 0},        {28, "f64", 1, 8, 0},
        {29, "iq1_m", 256, 56, 0},   {30, "bf16", 1, 2, 1},       {34, "tq1_0", 256, 54, 0},
        {35, "tq2_0", 256, 66, 0},   {39, "mxfp4", 32, 17, 0},
    };
    int known = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const slm_type_info *ti = slm_type_get(want[i].id);
        CHECK_MSG(ti != NULL, "type %u missing", want[i].id);
        if (!ti) continue;
        known++;
        CHECK_MSG(strcmp(ti->name, want[i].name) == 0, "%u: %s", want[i].id, ti->name);
        CHECK_MSG(ti->block_size == want[i].bs && ti->type_size == want[i].ts, "%s: %u/%u",
                  ti->name, ti->block_size, ti->type_size);
        CHECK_MSG(ti->can_dequantize == want[i].dq, "%s can_dequantize", ti->name);
        CHECK(strcmp(slm_type_name(want[i].id), want[i].name) == 0);
        CHECK(slm_type_from_name(want[i].name) == (int)want[i].id);
        /* Upper case and mixed case parse to the same id. */
        char up[16];
        size_t len = strlen(want[i].name);
        for (size_t c = 0; c <= len; c++) {
            char ch = want[i].name[c];
            up[c] =
                (ch >= 'a' && ch <= 'z' && (c % 2 == 0 || want[i].id % 2)) ? (char)(ch - 32) : ch;
        }
        CHECK_MSG(slm_type_from_name(up) == (int)want[i].id, "%s", up);
        if (want[i].dq)
            CHECK_OK(slm_type_check_dequantize(want[i].id));
        else
            CHECK_ERR(slm_type_check_dequantize(want[i].id), SLM_ERR_UNSUPPORTED, want[i].name);
    }
    /* Every id in the table is one listed above. */
    int in_table = 0;
    for (uint32_t t = 0; t < 64; t++) in_table += slm_type_get(t) != NULL;
    CHECK(in_table == known);
    static const uint32_t gaps[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 1000, UINT32_MAX};
    for (size_t i = 0; i < sizeof gaps / sizeof gaps[0]; i++) {
        CHECK(slm_type_get(gaps[i]) == NULL);
        CHECK(strcmp(slm_type_name(gaps[i]), "unknown") == 0);
    }
    CHECK(slm_type_from_name("Q4_K") == SLM_TYPE_Q4_K);
    CHECK(slm_type_from_name("BF16") == SLM_TYPE_BF16);
    CHECK(slm_type_from_name("IQ2_XXS") == 16);
    static const char *bad_names[] = {"", "q4", "q4_k_m", "q4_", "f3", "f32 ", " f32", "unknown"};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++)
        CHECK_MSG(slm_type_from_name(bad_names[i]) == -1, "'%s'", bad_names[i]);
    CHECK(slm_type_from_name(NULL) == -1);

    uint64_t nb = 7;
    CHECK_OK(slm_row_bytes(SLM_TYPE_Q4_0, 64, &nb));
    CHECK(nb == 36);
    CHECK_OK(slm_row_bytes(SLM_TYPE_Q4_K, 4864, &nb));
    CHECK(nb == 19 * 144);
    CHECK_OK(slm_row_bytes(SLM_TYPE_F16, 3, &nb));
    CHECK(nb == 6);
    CHECK_OK(slm_row_bytes(SLM_TYPE_Q6_K, 0, &nb));
    CHECK(nb == 0);
    CHECK_OK(slm_row_bytes(16, 512, &nb)); /* sizes work for types we cannot decode */
    CHECK(nb == 132);
    CHECK_ERR(slm_row_bytes(SLM_TYPE_Q4_0, 33, &nb), SLM_ERR_FORMAT, "multiple");
    CHECK(nb == 0);
    CHECK_ERR(slm_row_bytes(SLM_TYPE_Q4_K, 288, &nb), SLM_ERR_FORMAT, "q4_k");
    CHECK_ERR(slm_row_bytes(SLM_TYPE_F32, 1ull << 62, &nb), SLM_ERR_FORMAT, "overflow");
    CHECK_ERR(slm_row_bytes(SLM_TYPE_F32, UINT64_MAX, &nb), SLM_ERR_FORMAT, "overflow");
    CHECK_ERR(slm_row_bytes(SLM_TYPE_Q8_0, (UINT64_MAX / 32) * 32, &nb), SLM_ERR_FORMAT,
              "overflow");
    CHECK_OK(slm_row_bytes(SLM_TYPE_F32, (1ull << 61) - 1, &nb)); /* just fits in int64 */
    CHECK(nb == ((1ull << 61) - 1) * 4);
    CHECK_ERR(slm_row_bytes(99, 32, &nb), SLM_ERR_UNSUPPORTED, "99");
    CHECK_ERR(slm_row_bytes(SLM_TYPE_F32, 1, NULL), SLM_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(slm_type_check_dequantize(77), SLM_ERR_UNSUPPORTED, "77");
}

/* ---- hand-built blocks ----------------------------------------------------- */

static void test_blocks_legacy(void) {
    uint8_t b[64];
    float want[64];

    /* q4_0: d = 0.5; byte i holds code i (low) and 15 - i (high). */
    put16(b, h16(0.5f));
    for (int i = 0; i < 16; i++) b[2 + i] = (uint8_t)(i | (15 - i) << 4);
    for (int i = 0; i < 16; i++) {
        want[i] = 0.5f * (float)(i - 8);
        want[i + 16] = 0.5f * (float)(15 - i - 8);
    }
    check_decode(SLM_TYPE_Q4_0, b, want, 32, "q4_0");
    /* Two blocks back to back: the second (d = -2, every code 0x0f/0x0f)
     * follows at byte 18. */
    put16(b + 18, h16(-2.0f));
    memset(b + 20, 0xff, 16);
    for (int i = 32; i < 64; i++) want[i] = -2.0f * 7.0f;
    check_decode(SLM_TYPE_Q4_0, b, want, 64, "q4_0 x2");

    /* q4_1: d = 0.25, m = -1.5. */
    put16(b, h16(0.25f));
    put16(b + 2, h16(-1.5f));
    for (int i = 0; i < 16; i++) b[4 + i] = (uint8_t)((i * 3) % 16 | ((i * 5 + 1) % 16) << 4);
    for (int i = 0; i < 16; i++) {
        want[i] = 0.25f * (float)((i * 3) % 16) - 1.5f;
        want[i + 16] = 0.25f * (float)((i * 5 + 1) % 16) - 1.5f;
    }
    check_decode(SLM_TYPE_Q4_1, b, want, 32, "q4_1");

    /* q5_0: d = 0.125; qh = 0xA5C3F00F (LE bytes 0f f0 c3 a5) sets bit 4 of
     * element i when bit i is set. */
    uint32_t qh = 0xA5C3F00Fu;
    put16(b, h16(0.125f));
    b[2] = 0x0f, b[3] = 0xf0, b[4] = 0xc3, b[5] = 0xa5;
    for (int i = 0; i < 16; i++) b[6 + i] = (uint8_t)((15 - i) | i << 4);
    for (int i = 0; i < 16; i++) {
        int lo = (15 - i) + (int)((qh >> i) & 1) * 16;
        int hi = i + (int)((qh >> (i + 16)) & 1) * 16;
        want[i] = 0.125f * (float)(lo - 16);
        want[i + 16] = 0.125f * (float)(hi - 16);
    }
    check_decode(SLM_TYPE_Q5_0, b, want, 32, "q5_0");
    CHECK(want[0] == 0.125f * 15.0f);  /* code 15 | 16 = 31 */
    CHECK(want[4] == 0.125f * -5.0f);  /* code 11, bit 4 clear */
    CHECK(want[31] == 0.125f * 15.0f); /* code 15, bit 31 set */

    /* q5_1: d = 2, m = 10, same qh and nibbles at their q5_1 offsets. */
    put16(b, h16(2.0f));
    put16(b + 2, h16(10.0f));
    b[4] = 0x0f, b[5] = 0xf0, b[6] = 0xc3, b[7] = 0xa5;
    for (int i = 0; i < 16; i++) b[8 + i] = (uint8_t)((15 - i) | i << 4);
    for (int i = 0; i < 16; i++) {
        int lo = (15 - i) + (int)((qh >> i) & 1) * 16;
        int hi = i + (int)((qh >> (i + 16)) & 1) * 16;
        want[i] = 2.0f * (float)lo + 10.0f;
        want[i + 16] = 2.0f * (float)hi + 10.0f;
    }
    check_decode(SLM_TYPE_Q5_1, b, want, 32, "q5_1");

    /* q8_0: d = 0.0625, codes -128..127 spread. */
    put16(b, h16(0.0625f));
    for (int i = 0; i < 32; i++) {
        int8_t q = (int8_t)(i * 8 - 128);
        b[2 + i] = (uint8_t)q;
        want[i] = 0.0625f * (float)q;
    }
    check_decode(SLM_TYPE_Q8_0, b, want, 32, "q8_0");

    /* q8_1: as q8_0 with the sum at offset 2 (ignored by the decoder). */
    put16(b, h16(0.0625f));
    put16(b + 2, h16(1234.0f));
    for (int i = 0; i < 32; i++) b[4 + i] = (uint8_t)(int8_t)(i * 8 - 128);
    check_decode(SLM_TYPE_Q8_1, b, want, 32, "q8_1");

    /* f32 / f16 / bf16 rows, one element per "block". */
    uint8_t raw[12];
    float fv[3] = {1.5f, -0.0f, 3.0e-5f};
    memcpy(raw, fv, 12);
    check_decode(SLM_TYPE_F32, raw, fv, 3, "f32");
    put16(raw, 0x3e00), put16(raw + 2, 0xc400), put16(raw + 4, 0x0001);
    float hv[3] = {1.5f, -4.0f, 5.9604644775390625e-8f};
    check_decode(SLM_TYPE_F16, raw, hv, 3, "f16");
    put16(raw, 0x3fc0), put16(raw + 2, 0xc080), put16(raw + 4, 0x4049);
    float bv[3] = {1.5f, -4.0f, 3.140625f};
    check_decode(SLM_TYPE_BF16, raw, bv, 3, "bf16");
}

/* Scale bytes shared by q4_k and q5_k, with the values get_scale_min_k4
 * yields for them worked out by hand:
 *   j<4:  sc = s[j] & 63, m = s[j+4] & 63
 *   j>=4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4 */
static const uint8_t k4_scales[12] = {0x41, 0x82, 0xC3, 0x04, 0x45, 0x86,
                                      0xC7, 0x08, 0x21, 0x43, 0x65, 0x87};
static const int k4_sc[8] = {1, 2, 3, 4, 17, 35, 53, 7};
static const int k4_m[8] = {5, 6, 7, 8, 18, 36, 54, 8};

static void test_blocks_k(void) {
    uint8_t b[300];
    float want[256];

    /* q4_k: d = 0.25, dmin = 0.125; written as ggml's decoder walks it, in
     * 64-element chunks using the low then the high nibbles of 32 bytes. */
    put16(b, h16(0.25f));
    put16(b + 2, h16(0.125f));
    memcpy(b + 4, k4_scales, 12);
    for (int i = 0; i < 128; i++) b[16 + i] = (uint8_t)(i * 7 + 3);
    for (int chunk = 0; chunk < 4; chunk++) {
        int j0 = 2 * chunk, j1 = 2 * chunk + 1;
        for (int l = 0; l < 32; l++) {
            uint8_t q = b[16 + 32 * chunk + l];
            want[64 * chunk + l] =
                0.25f * (float)k4_sc[j0] * (float)(q & 15) - 0.125f * (float)k4_m[j0];
            want[64 * chunk + 32 + l] =
                0.25f * (float)k4_sc[j1] * (float)(q >> 4) - 0.125f * (float)k4_m[j1];
        }
    }
    check_decode(SLM_TYPE_Q4_K, b, want, 256, "q4_k");

    /* q5_k: same scales; the fifth bit comes from qh with masks 1,2 then
     * shifted by 2 per 64-element chunk. */
    put16(b, h16(0.5f));
    put16(b + 2, h16(0.75f));
    memcpy(b + 4, k4_scales, 12);
    for (int i = 0; i < 32; i++) b[16 + i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 128; i++) b[48 + i] = (uint8_t)(i * 13 + 5);
    uint8_t u1 = 1, u2 = 2;
    for (int chunk = 0; chunk < 4; chunk++) {
        int j0 = 2 * chunk, j1 = 2 * chunk + 1;
        for (int l = 0; l < 32; l++) {
            uint8_t q = b[48 + 32 * chunk + l], h = b[16 + l];
            int v0 = (q & 15) + ((h & u1) ? 16 : 0), v1 = (q >> 4) + ((h & u2) ? 16 : 0);
            want[64 * chunk + l] = 0.5f * (float)k4_sc[j0] * (float)v0 - 0.75f * (float)k4_m[j0];
            want[64 * chunk + 32 + l] =
                0.5f * (float)k4_sc[j1] * (float)v1 - 0.75f * (float)k4_m[j1];
        }
        u1 = (uint8_t)(u1 << 2), u2 = (uint8_t)(u2 << 2);
    }
    check_decode(SLM_TYPE_Q5_K, b, want, 256, "q5_k");

    /* q6_k: ql at 0, qh at 128, int8 scales at 192, d at 208; written as
     * ggml's decoder walks it (four values per l per 128-element half). */
    static const int8_t sc6[16] = {-128, 127, -3,  5,   1,    -1, 64, -64,
                                   0,    17,  -17, 100, -100, 2,  9,  33};
    for (int i = 0; i < 128; i++) b[i] = (uint8_t)(i * 5 + 1);
    for (int i = 0; i < 64; i++) b[128 + i] = (uint8_t)(i * 11 + 7);
    for (int i = 0; i < 16; i++) b[192 + i] = (uint8_t)sc6[i];
    put16(b + 208, h16(0.03125f));
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b + 64 * half, *qhp = b + 128 + 32 * half;
        const int8_t *sc = sc6 + 8 * half;
        float *y = want + 128 * half;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 15) | ((qhp[l] >> 0) & 3) << 4) - 32;
            int q2 = ((ql[l + 32] & 15) | ((qhp[l] >> 2) & 3) << 4) - 32;
            int q3 = ((ql[l] >> 4) | ((qhp[l] >> 4) & 3) << 4) - 32;
            int q4 = ((ql[l + 32] >> 4) | ((qhp[l] >> 6) & 3) << 4) - 32;
            y[l] = 0.03125f * (float)sc[is] * (float)q1;
            y[l + 32] = 0.03125f * (float)sc[is + 2] * (float)q2;
            y[l + 64] = 0.03125f * (float)sc[is + 4] * (float)q3;
            y[l + 96] = 0.03125f * (float)sc[is + 6] * (float)q4;
        }
    }
    check_decode(SLM_TYPE_Q6_K, b, want, 256, "q6_k");

    /* q2_k: scales/mins nibbles at 0, 2-bit codes at 16, d at 80, dmin at 82. */
    for (int i = 0; i < 16; i++) b[i] = (uint8_t)((i * 3 + 1) % 16 | ((i * 7) % 16) << 4);
    for (int i = 0; i < 64; i++) b[16 + i] = (uint8_t)(i * 29 + 3);
    put16(b + 80, h16(0.5f));
    put16(b + 82, h16(0.25f));
    {
        int is = 0;
        float *y = want;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = b + 16 + 32 * half;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    uint8_t s = b[is++];
                    for (int l = 0; l < 16; l++)
                        *y++ = 0.5f * (float)(s & 15) * (float)((q[l + 16 * part] >> shift) & 3) -
                               0.25f * (float)(s >> 4);
                }
            }
        }
    }
    check_decode(SLM_TYPE_Q2_K, b, want, 256, "q2_k");

    /* q3_k: hmask at 0, low bits at 32, packed scales at 96, d at 108. The
     * 6-bit scales are recovered here the way ggml does it, with 32-bit word
     * masks, as an independent check of the byte-wise decoder. */
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(i * 53 + 9);
    for (int i = 0; i < 64; i++) b[32 + i] = (uint8_t)(i * 31 + 17);
    static const uint8_t s3[12] = {0x1f, 0xe2, 0x73, 0x04, 0xa5, 0x5c,
                                   0x37, 0xc8, 0x1b, 0xe4, 0x72, 0x8d};
    memcpy(b + 96, s3, 12);
    put16(b + 108, h16(0.0625f));
    {
        uint32_t aux[4];
        memcpy(aux, s3, 12);
        uint32_t tmp = aux[2];
        const uint32_t km1 = 0x03030303u, km2 = 0x0f0f0f0fu;
        aux[2] = ((aux[0] >> 4) & km2) | (((tmp >> 4) & km1) << 4);
        aux[3] = ((aux[1] >> 4) & km2) | (((tmp >> 6) & km1) << 4);
        aux[0] = (aux[0] & km2) | (((tmp >> 0) & km1) << 4);
        aux[1] = (aux[1] & km2) | (((tmp >> 2) & km1) << 4);
        int8_t scales[16];
        memcpy(scales, aux, 16);
        int is = 0;
        uint8_t m = 1;
        float *y = want;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = b + 32 + 32 * half;
            for (int shift = 0; shift < 8; shift += 2) {
                for (int part = 0; part < 2; part++) {
                    float dl = 0.0625f * (float)(scales[is++] - 32);
                    for (int l = 0; l < 16; l++) {
                        int lo = (q[l + 16 * part] >> shift) & 3;
                        int hb = (b[l + 16 * part] & m) ? 0 : 4;
                        *y++ = dl * (float)(lo - hb);
                    }
                }
                m = (uint8_t)(m << 1);
            }
        }
    }
    check_decode(SLM_TYPE_Q3_K, b, want, 256, "q3_k");

    /* q8_k: f32 d then int8 codes; bsums are not part of the value. */
    float d8 = 0.01f;
    memcpy(b, &d8, 4);
    for (int i = 0; i < 256; i++) {
        b[4 + i] = (uint8_t)(int8_t)(i - 128);
        want[i] = d8 * (float)(i - 128);
    }
    memset(b + 260, 0x5a, 32);
    check_decode(SLM_TYPE_Q8_K, b, want, 256, "q8_k");

    /* A type we cannot decode writes zeros rather than garbage. */
    float z[256];
    for (int i = 0; i < 256; i++) z[i] = 1.0f;
    slm_dequantize_row(16, b, z, 256);
    int nz = 0;
    for (int i = 0; i < 256; i++) nz += z[i] != 0.0f;
    CHECK(nz == 0);
}

/* ---- round trips ----------------------------------------------------------- */

typedef struct {
    uint32_t type;
    /* Bounds on rms(err) / rms(x) for N(0,1) data: over all rows together,
     * and for the worst single row (short rows vary more). */
    double rel_all, rel_row;
    /* Symmetric formats: |err| <= k_err * d + levels * |d_stored - d|, with
     * d = absmax / levels the scale the quantizer aims for (the second term
     * is the fp16 rounding of d, large when d is an fp16 subnormal).
     * Other formats (levels 0): |err| <= k_err * absmax of the (super-)block. */
    double k_err;
    int levels;
} rt_spec;

/* Bounds sit 15-40% above what this implementation measures (the test prints
 * the measurements) so a regression shows while noise does not. q8_k and the
 * q4_0 / q5_0 codes reach an error of a whole step where the value opposite
 * the absmax clamps at the top code. */
static const rt_spec k_specs[] = {
    {SLM_TYPE_F32, 0.0, 0.0, 0.0, 0},
    {SLM_TYPE_F16, 2.5e-4, 2.8e-4, 0.0, 0},
    {SLM_TYPE_BF16, 2.0e-3, 2.4e-3, 0.0, 0},
    {SLM_TYPE_Q8_0, 0.0065, 0.0075, 0.501, 127},
    {SLM_TYPE_Q8_1, 0.0065, 0.0075, 0.501, 127},
    {SLM_TYPE_Q8_K, 0.008, 0.0085, 1.001, 128},
    {SLM_TYPE_Q6_K, 0.021, 0.023, 0.05, 0},
    {SLM_TYPE_Q5_0, 0.05, 0.057, 1.001, 16},
    {SLM_TYPE_Q5_1, 0.045, 0.053, 0.04, 0},
    {SLM_TYPE_Q5_K, 0.042, 0.045, 0.052, 0},
    {SLM_TYPE_Q4_0, 0.10, 0.12, 1.001, 8},
    {SLM_TYPE_Q4_1, 0.09, 0.115, 0.08, 0},
    {SLM_TYPE_Q4_K, 0.083, 0.088, 0.10, 0},
    {SLM_TYPE_Q3_K, 0.18, 0.19, 0.20, 0},
    {SLM_TYPE_Q2_K, 0.31, 0.33, 0.39, 0},
};

static uint8_t *quantize_alloc(uint32_t type, const float *x, int n, const float *imat) {
    uint64_t bytes = 0;
    CHECK_OK(slm_row_bytes(type, (uint64_t)n, &bytes));
    uint8_t *q = malloc(bytes ? bytes : 1);
    memset(q, 0xcc, bytes); /* every byte must be written by the quantizer */
    slm_quantize_row_ref(type, x, q, n, imat);
    return q;
}

static int all_finite(const float *y, int n) {
    for (int i = 0; i < n; i++)
        if (!isfinite(y[i])) return 0;
    return 1;
}

/* The scale a symmetric block decodes with. */
static double stored_scale(uint32_t type, const uint8_t *block) {
    if (type == SLM_TYPE_Q8_K) {
        float d;
        memcpy(&d, block, 4);
        return fabs((double)d);
    }
    return fabs((double)get_half(block));
}

static void test_round_trip(void) {
    static const int sizes[] = {32, 64, 96, 256, 288, 512, 1024, 2048, 4096, 4864};
    for (size_t s = 0; s < sizeof k_specs / sizeof k_specs[0]; s++) {
        const rt_spec *sp = &k_specs[s];
        const slm_type_info *ti = slm_type_get(sp->type);
        CHECK(ti->can_quantize && ti->can_dequantize);
        double worst_row = 0, se_all = 0, sx_all = 0, worst_err = 0;
        int rows = 0;
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
            int n = sizes[z];
            if (n % (int)ti->block_size) continue;
            for (unsigned seed = 1; seed <= 4; seed++) {
                check_rng rng = {seed * 7919u + (unsigned)n};
                float *x = malloc(sizeof(float) * (size_t)n),
                      *y = malloc(sizeof(float) * (size_t)n);
                /* Seed 4 scales the data by 1e-3: fp16 scales become subnormal. */
                float amp = seed == 4 ? 1e-3f : 1.0f;
                for (int i = 0; i < n; i++) x[i] = amp * check_rng_normal(&rng);
                uint8_t *q = quantize_alloc(sp->type, x, n, NULL);
                slm_dequantize_row(sp->type, q, y, n);
                CHECK(all_finite(y, n));
                double se = 0, sx = 0;
                for (int i = 0; i < n; i++) {
                    se += (double)(y[i] - x[i]) * (y[i] - x[i]);
                    sx += (double)x[i] * x[i];
                }
                se_all += se / (amp * amp), sx_all += sx / (amp * amp);
                if (sqrt(se / sx) > worst_row) worst_row = sqrt(se / sx);
                /* Largest error of each block against its bound. */
                int bs = (int)ti->block_size, nblk = n / bs;
                for (int bi = 0; bi < nblk && bs > 1; bi++) {
                    double emax = 0, amax = 0;
                    for (int i = bi * bs; i < (bi + 1) * bs; i++) {
                        double e = fabs((double)y[i] - x[i]);
                        if (e > emax) emax = e;
                        if (fabs(x[i]) > amax) amax = fabs(x[i]);
                    }
                    double unit = amax;
                    if (sp->levels > 0) {
                        double d = amax / sp->levels;
                        double ds = stored_scale(sp->type, q + (size_t)bi * ti->type_size);
                        /* Express the fp16 rounding of d as a multiple of d. */
                        emax -= sp->levels * fabs(ds - d) * 1.0001;
                        unit = d;
                    }
                    if (emax / unit > worst_err) worst_err = emax / unit;
                }
                free(x), free(y), free(q);
                rows++;
            }
        }
        CHECK(rows > 0);
        double rel_all = sqrt(se_all / sx_all);
        printf("  %-5s rel rms %.5f (worst row %.5f)  max err %.3f %s  (%d rows)\n", ti->name,
               rel_all, worst_row, worst_err, sp->levels ? "steps" : "x absmax", rows);
        if (sp->type == SLM_TYPE_F32) {
            CHECK(worst_row == 0.0);
            continue;
        }
        CHECK_MSG(rel_all < sp->rel_all, "%s rel rms %g >= %g", ti->name, rel_all, sp->rel_all);
        CHECK_MSG(worst_row < sp->rel_row, "%s worst row %g >= %g", ti->name, worst_row,
                  sp->rel_row);
        if (ti->block_size > 1)
            CHECK_MSG(worst_err <= sp->k_err, "%s max err %g > %g", ti->name, worst_err, sp->k_err);
    }
}

/* f16 / bf16 element-wise precision: relative error within half an ulp. */
static void test_float_precision(void) {
    check_rng rng = {42};
    double worst16 = 0, worstbf = 0;
    for (int i = 0; i < 100000; i++) {
        float v = check_rng_normal(&rng) * powf(2.0f, (float)(i % 20) - 10.0f);
        float a = slm_fp16_to_f32(slm_f32_to_fp16(v)), b = slm_bf16_to_f32(slm_f32_to_bf16(v));
        double r16 = fabs((double)a - v) / fabs((double)v), rbf = fabs((double)b - v) / fabs(v);
        if (fabsf(v) >= 6.2e-5f && r16 > worst16) worst16 = r16; /* normal halves only */
        if (rbf > worstbf) worstbf = rbf;
    }
    CHECK_MSG(worst16 <= 1.0 / 2048, "f16 rel err %g", worst16);
    CHECK_MSG(worstbf <= 1.0 / 256, "bf16 rel err %g", worstbf);
}

/* Rows that are all zero, or with a huge outlier, must not decode to NaN/Inf,
 * and an outlier only costs precision in its own block. */
static void test_edge_rows(void) {
    enum { N = 1024 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (size_t s = 0; s < sizeof k_specs / sizeof k_specs[0]; s++) {
        uint32_t t = k_specs[s].type;
        const slm_type_info *ti = slm_type_get(t);
        memset(x, 0, sizeof(float) * N);
        uint8_t *q = quantize_alloc(t, x, N, NULL);
        slm_dequantize_row(t, q, y, N);
        int nonzero = 0;
        for (int i = 0; i < N; i++) nonzero += y[i] != 0.0f;
        CHECK_MSG(nonzero == 0, "%s: zero row decodes to %d non-zeros", ti->name, nonzero);
        free(q);

        static const float outliers[] = {1000.0f, -3.0e4f, 1.0e9f, -1.0e30f};
        for (size_t o = 0; o < sizeof outliers / sizeof outliers[0]; o++) {
            if (t == SLM_TYPE_F16 && fabsf(outliers[o]) > 65504.0f) continue; /* f16 has Inf */
            check_rng rng = {(unsigned long long)(s * 10 + o + 1)};
            for (int i = 0; i < N; i++) x[i] = check_rng_normal(&rng);
            x[300] = outliers[o];
            q = quantize_alloc(t, x, N, NULL);
            slm_dequantize_row(t, q, y, N);
            CHECK_MSG(all_finite(y, N), "%s: outlier %g gives non-finite", ti->name,
                      (double)outliers[o]);
            /* Blocks not holding the outlier keep their usual precision. */
            int bs = (int)ti->block_size, own = 300 / bs;
            double se = 0, sx = 0;
            for (int i = 0; i < N; i++) {
                if (i / bs == own) continue;
                se += (double)(y[i] - x[i]) * (y[i] - x[i]);
                sx += (double)x[i] * x[i];
            }
            if (sx > 0)
                CHECK_MSG(sqrt(se / sx) < (t == SLM_TYPE_F32 ? 1e-9 : k_specs[s].rel_row),
                          "%s: outlier %g spoils other blocks", ti->name, (double)outliers[o]);
            /* Where the format can represent it, the outlier keeps its sign and
             * lands within 1% (1000 fits every scale range). */
            if (outliers[o] == 1000.0f && t != SLM_TYPE_Q2_K && t != SLM_TYPE_Q3_K)
                CHECK_MSG(fabsf(y[300] - 1000.0f) < 10.0f, "%s: outlier -> %g", ti->name,
                          (double)y[300]);
            free(q);
        }
    }
    /* Non-finite input must not poison the decode either (NaN codes would be
     * undefined behaviour in the float-to-int conversions). */
    for (size_t s = 0; s < sizeof k_specs / sizeof k_specs[0]; s++) {
        uint32_t t = k_specs[s].type;
        if (t == SLM_TYPE_F32 || t == SLM_TYPE_F16 || t == SLM_TYPE_BF16) continue;
        check_rng rng = {99};
        for (int i = 0; i < N; i++) x[i] = check_rng_normal(&rng);
        x[5] = NAN;
        x[600] = INFINITY;
        x[700] = -INFINITY;
        uint8_t *q = quantize_alloc(t, x, N, NULL);
        slm_dequantize_row(t, q, y, N);
        CHECK_MSG(all_finite(y, N), "%s: NaN/Inf input gives non-finite output", slm_type_name(t));
        free(q);
    }
    free(x);
    free(y);
}

/* With an importance matrix the importance-weighted error must not get
 * worse than without it (it should get clearly better). */
static void test_imatrix(void) {
    static const uint32_t types[] = {SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K,
                                     SLM_TYPE_Q3_K, SLM_TYPE_Q2_K, SLM_TYPE_Q4_0,
                                     SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1};
    enum { N = 2048, ROWS = 16 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    float *imat = malloc(sizeof(float) * N), *zero = calloc(N, sizeof(float));
    check_rng rng = {7};
    /* A few columns matter a lot (as activations with outlier channels do),
     * the rest follow a log-normal spread. */
    for (int i = 0; i < N; i++) {
        imat[i] = expf(check_rng_normal(&rng));
        if (i % 13 == 0) imat[i] *= 50.0f;
    }
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        double err_plain = 0, err_imat = 0;
        check_rng r2 = {1000 + t};
        for (int row = 0; row < ROWS; row++) {
            for (int i = 0; i < N; i++) x[i] = check_rng_normal(&r2);
            for (int pass = 0; pass < 2; pass++) {
                uint8_t *q = quantize_alloc(types[t], x, N, pass ? imat : NULL);
                slm_dequantize_row(types[t], q, y, N);
                double e = 0;
                for (int i = 0; i < N; i++) e += imat[i] * (double)(y[i] - x[i]) * (y[i] - x[i]);
                if (pass)
                    err_imat += e;
                else
                    err_plain += e;
                free(q);
            }
        }
        printf("  %-5s weighted error with imatrix / without: %.3f\n", slm_type_name(types[t]),
               err_imat / err_plain);
        CHECK_MSG(err_imat <= err_plain, "%s: imatrix %g > plain %g", slm_type_name(types[t]),
                  err_imat, err_plain);
        /* An all-zero importance row still quantizes to something sensible. */
        uint8_t *q = quantize_alloc(types[t], x, N, zero);
        slm_dequantize_row(types[t], q, y, N);
        double se = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        CHECK_MSG(all_finite(y, N) && sqrt(se / sx) < 0.5, "%s: zero imatrix rel err %g",
                  slm_type_name(types[t]), sqrt(se / sx));
        free(q);
    }
    free(x), free(y), free(imat), free(zero);
}

/* Structure of the q8 formats that the dot-product kernels rely on. */
static void test_q8_extras(void) {
    float x[256];
    check_rng rng = {5};
    for (int i = 0; i < 256; i++) x[i] = check_rng_normal(&rng);
    x[17] = 9.0f; /* positive absmax: q8_k maps it to -128 with a negative d */
    uint8_t b[292];
    slm_quantize_row_ref(SLM_TYPE_Q8_K, x, b, 256, NULL);
    float d;
    memcpy(&d, b, 4);
    CHECK((int8_t)b[4 + 17] == -128);
    CHECK_NEAR(d, -9.0 / 128, 1e-7);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += (int8_t)b[4 + 16 * g + i];
        int16_t got = (int16_t)(b[260 + 2 * g] | b[261 + 2 * g] << 8);
        CHECK_MSG(got == sum, "bsums[%d] %d != %d", g, got, sum);
    }
    /* q8_1: s = d * sum(qs). */
    uint8_t c[36];
    slm_quantize_row_ref(SLM_TYPE_Q8_1, x, c, 32, NULL);
    int sum = 0;
    for (int i = 0; i < 32; i++) sum += (int8_t)c[4 + i];
    CHECK_NEAR(get_half(c + 2), get_half(c) * sum, fabs(get_half(c) * sum) * 1e-3 + 1e-6);
    /* q4_0: the value of largest magnitude lands exactly on code 0 (-8). */
    float v[32];
    for (int i = 0; i < 32; i++) v[i] = (float)(i % 7) - 3.0f;
    v[9] = 16.0f;
    uint8_t q4[18];
    slm_quantize_row_ref(SLM_TYPE_Q4_0, v, q4, 32, NULL);
    CHECK((q4[2 + 9] & 15) == 0);
    CHECK(get_half(q4) == -2.0f);
}

/* ---- against files llama.cpp wrote ---------------------------------------- */

/* Just enough GGUF reading to find tensors in the shared fixtures: this test
 * must not depend on src/format, and the files are trusted (their sha256 is
 * pinned in shared/models/MODELS.md), but every read is still bounded. */
typedef struct {
    uint8_t *buf;
    size_t size, pos;
    int bad;
    uint64_t n_tensors, data_start;
    size_t tensors_pos; /* where the tensor infos begin */
} mini_gguf;

static uint64_t mg_u(mini_gguf *g, int bytes) {
    if (g->bad || g->size - g->pos < (size_t)bytes) {
        g->bad = 1;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)g->buf[g->pos + (size_t)i] << (8 * i);
    g->pos += (size_t)bytes;
    return v;
}

static void mg_skip(mini_gguf *g, uint64_t n) {
    if (g->bad || g->size - g->pos < n) {
        g->bad = 1;
        return;
    }
    g->pos += (size_t)n;
}

static void mg_skip_value(mini_gguf *g, uint32_t vt, int depth) {
    static const int scalar[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (vt == 8) {
        mg_skip(g, mg_u(g, 8));
    } else if (vt == 9 && depth == 0) {
        uint32_t et = (uint32_t)mg_u(g, 4);
        uint64_t count = mg_u(g, 8);
        for (uint64_t i = 0; i < count && !g->bad; i++) mg_skip_value(g, et, 1);
    } else if (vt < 13 && scalar[vt] > 0) {
        mg_skip(g, (uint64_t)scalar[vt]);
    } else {
        g->bad = 1;
    }
}

static int mg_open(const char *path, mini_gguf *g) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    g->buf = malloc(sz > 0 ? (size_t)sz : 1);
    g->size = fread(g->buf, 1, (size_t)(sz > 0 ? sz : 0), f);
    fclose(f);
    if (mg_u(g, 4) != 0x46554747u || mg_u(g, 4) != 3) g->bad = 1;
    g->n_tensors = mg_u(g, 8);
    uint64_t n_kv = mg_u(g, 8);
    uint64_t align = 32;
    for (uint64_t i = 0; i < n_kv && !g->bad; i++) {
        uint64_t klen = mg_u(g, 8);
        size_t kpos = g->pos;
        mg_skip(g, klen);
        uint32_t vt = (uint32_t)mg_u(g, 4);
        if (!g->bad && klen == 17 && memcmp(g->buf + kpos, "general.alignment", 17) == 0 &&
            vt == 4) {
            align = mg_u(g, 4);
            continue;
        }
        mg_skip_value(g, vt, 0);
    }
    g->tensors_pos = g->pos;
    for (uint64_t i = 0; i < g->n_tensors && !g->bad; i++) {
        mg_skip(g, mg_u(g, 8));
        mg_skip(g, mg_u(g, 4) * 8 + 4 + 8);
    }
    if (align == 0) g->bad = 1;
    g->data_start = g->bad ? 0 : (g->pos + align - 1) / align * align;
    return !g->bad;
}

typedef struct {
    char name[128];
    uint64_t ne0, nrows;
    uint32_t type;
    const uint8_t *data;
} mg_tensor;

/* The i-th tensor, or 0 when its info is malformed or its data out of range. */
static int mg_tensor_at(mini_gguf *g, uint64_t index, mg_tensor *t) {
    g->pos = g->tensors_pos;
    for (uint64_t i = 0; i <= index && !g->bad; i++) {
        uint64_t nlen = mg_u(g, 8);
        size_t npos = g->pos;
        mg_skip(g, nlen);
        uint32_t nd = (uint32_t)mg_u(g, 4);
        if (nd == 0 || nd > 4) g->bad = 1;
        uint64_t ne[4] = {1, 1, 1, 1};
        for (uint32_t d = 0; d < nd && !g->bad; d++) ne[d] = mg_u(g, 8);
        uint32_t type = (uint32_t)mg_u(g, 4);
        uint64_t off = mg_u(g, 8);
        if (g->bad || i < index) continue;
        if (nlen >= sizeof t->name) return 0;
        memcpy(t->name, g->buf + npos, (size_t)nlen);
        t->name[nlen] = '\0';
        t->ne0 = ne[0];
        t->nrows = ne[1] * ne[2] * ne[3];
        t->type = type;
        uint64_t row = 0;
        if (slm_row_bytes(type, ne[0], &row) != SLM_OK) return 0;
        if (g->data_start + off > g->size || row * t->nrows > g->size - g->data_start - off)
            return 0;
        t->data = g->buf + g->data_start + off;
        return 1;
    }
    return 0;
}

/* llama.cpp quantized stories260K (no importance matrix) into f16, q8_0 and
 * q5_0 tensors. Decoding them must land near the f32 originals, and our
 * quantizers, run on those originals, must write the very same bytes. */
static void test_llama_cpp_files(void) {
    char p32[512], pq[512];
    if (!check_shared_path("models/stories260K.gguf", p32, sizeof p32)) {
        printf("  (shared models absent: llama.cpp file comparison skipped)\n");
        return;
    }
    mini_gguf ref;
    CHECK(mg_open(p32, &ref));
    static const char *files[] = {"models/stories260K-F16.gguf", "models/stories260K-Q6_K.gguf",
                                  "models/stories260K-Q4_K_M.gguf"};
    int compared[SLM_TYPE_COUNT] = {0};
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; fi++) {
        if (!check_shared_path(files[fi], pq, sizeof pq)) continue;
        mini_gguf g;
        CHECK_MSG(mg_open(pq, &g), "%s", pq);
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            mg_tensor t, r;
            if (!mg_tensor_at(&g, i, &t)) {
                CHECK_MSG(0, "%s: tensor %llu unreadable", pq, (unsigned long long)i);
                continue;
            }
            if (t.type == SLM_TYPE_F32) continue;
            int found = 0;
            for (uint64_t k = 0; k < ref.n_tensors && !found; k++)
                found = mg_tensor_at(&ref, k, &r) && strcmp(r.name, t.name) == 0;
            CHECK_MSG(found && r.ne0 == t.ne0 && r.nrows == t.nrows && r.type == SLM_TYPE_F32,
                      "%s: no f32 original", t.name);
            if (!found) continue;
            uint64_t row_bytes = 0;
            CHECK_OK(slm_row_bytes(t.type, t.ne0, &row_bytes));
            float *y = malloc(sizeof(float) * t.ne0), *x = malloc(sizeof(float) * t.ne0);
            uint8_t *mine = malloc(row_bytes);
            double se = 0, sx = 0;
            uint64_t diff_bytes = 0;
            for (uint64_t row = 0; row < t.nrows; row++) {
                const uint8_t *theirs = t.data + row * row_bytes;
                memcpy(x, r.data + row * t.ne0 * 4, t.ne0 * 4); /* f32 LE, as the host */
                slm_dequantize_row(t.type, theirs, y, (int64_t)t.ne0);
                for (uint64_t c = 0; c < t.ne0; c++) {
                    se += (double)(y[c] - x[c]) * (y[c] - x[c]);
                    sx += (double)x[c] * x[c];
                }
                slm_quantize_row_ref(t.type, x, mine, (int64_t)t.ne0, NULL);
                for (uint64_t b = 0; b < row_bytes; b++) diff_bytes += mine[b] != theirs[b];
            }
            double rel = sqrt(se / sx);
            double bound = t.type == SLM_TYPE_F16 ? 1e-3 : t.type == SLM_TYPE_Q8_0 ? 0.01 : 0.06;
            CHECK_MSG(rel < bound, "%s (%s): decoded rel rms %g", t.name, slm_type_name(t.type),
                      rel);
            CHECK_MSG(diff_bytes == 0, "%s (%s): %llu bytes differ from llama.cpp's", t.name,
                      slm_type_name(t.type), (unsigned long long)diff_bytes);
            if (t.type < SLM_TYPE_COUNT) compared[t.type]++;
            free(x), free(y), free(mine);
        }
        free(g.buf);
    }
    printf("  llama.cpp tensors matched byte for byte: %d f16, %d q8_0, %d q5_0\n",
           compared[SLM_TYPE_F16], compared[SLM_TYPE_Q8_0], compared[SLM_TYPE_Q5_0]);
    CHECK(compared[SLM_TYPE_F16] > 0 && compared[SLM_TYPE_Q8_0] > 0 && compared[SLM_TYPE_Q5_0] > 0);
    free(ref.buf);
}

/* ---- fp16 / bf16 ----------------------------------------------------------- */

static int is_nan16(uint16_t h) {
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

static void test_fp16(void) {
    /* Every non-NaN half survives half -> float -> half. */
    int bad = 0, nan_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = slm_fp16_to_f32((uint16_t)h);
        if (is_nan16((uint16_t)h)) {
            nan_bad += !isnan(f) || !is_nan16(slm_f32_to_fp16(f));
            continue;
        }
        bad += slm_f32_to_fp16(f) != h;
    }
    CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);
    CHECK(nan_bad == 0);

    /* Exactly halfway between neighbours rounds to the even one; a hair
     * either side rounds to the nearer one. Covers every adjacent pair of
     * finite halves including the subnormals and the top of the range. */
    int tie_bad = 0, near_bad = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        for (uint32_t sign = 0; sign <= 0x8000; sign += 0x8000) {
            uint16_t a = (uint16_t)(h | sign), b = (uint16_t)((h + 1) | sign);
            float fa = slm_fp16_to_f32(a), fb = slm_fp16_to_f32(b);
            float mid = (fa + fb) * 0.5f; /* exact: halves have 11 significant bits */
            tie_bad += slm_f32_to_fp16(mid) != ((h & 1) ? b : a);
            near_bad += slm_f32_to_fp16(nextafterf(mid, fa)) != a;
            near_bad += slm_f32_to_fp16(nextafterf(mid, fb)) != b;
        }
    }
    CHECK_MSG(tie_bad == 0, "%d ties not to even", tie_bad);
    CHECK_MSG(near_bad == 0, "%d near-ties rounded the wrong way", near_bad);

    /* Chosen values. */
    CHECK(slm_f32_to_fp16(1.0f) == 0x3c00);
    CHECK(slm_f32_to_fp16(-2.0f) == 0xc000);
    CHECK(slm_f32_to_fp16(0.1f) == 0x2e66);
    CHECK(slm_f32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00); /* tie -> even */
    CHECK(slm_f32_to_fp16(1.0f + 3.0f / 2048) == 0x3c02); /* tie -> even */
    CHECK(slm_f32_to_fp16(65504.0f) == 0x7bff);           /* largest half */
    CHECK(slm_f32_to_fp16(65519.0f) == 0x7bff);           /* below the tie */
    CHECK(slm_f32_to_fp16(65520.0f) == 0x7c00);           /* tie -> even = Inf */
    CHECK(slm_f32_to_fp16(-1.0e6f) == 0xfc00);
    CHECK(slm_f32_to_fp16(INFINITY) == 0x7c00);
    CHECK(slm_f32_to_fp16(-0.0f) == 0x8000);
    CHECK(slm_f32_to_fp16(5.9604644775390625e-8f) == 0x0001);  /* 2^-24 */
    CHECK(slm_f32_to_fp16(2.98023223876953125e-8f) == 0x0000); /* 2^-25: tie -> 0 */
    CHECK(slm_f32_to_fp16(2.9802326e-8f) == 0x0001);           /* just above */
    CHECK(slm_f32_to_fp16(8.94069671630859375e-8f) == 0x0002); /* 3 * 2^-25: tie -> 2 */
    CHECK(slm_f32_to_fp16(6.097555160522461e-5f) == 0x03ff);   /* largest subnormal */
    CHECK(slm_f32_to_fp16(6.1035156e-5f) == 0x0400);           /* smallest normal */
    CHECK(slm_f32_to_fp16(1.0e-10f) == 0x0000);
    CHECK(is_nan16(slm_f32_to_fp16(NAN)));

#ifdef __FLT16_MAX__
    /* The compiler's own conversion (IEEE round-to-nearest-even) as an
     * oracle over a sweep of float bit patterns. */
    int hw_bad = 0;
    for (uint64_t u = 0; u < 0x100000000ull; u += 997) {
        float f = slm_bits_to_f32((uint32_t)u);
        if (isnan(f)) continue;
        _Float16 hf = (_Float16)f;
        uint16_t want;
        memcpy(&want, &hf, 2);
        hw_bad += slm_f32_to_fp16(f) != want;
        float back = slm_fp16_to_f32(want);
        hw_bad += back != (float)hf;
    }
    CHECK_MSG(hw_bad == 0, "%d differences from _Float16", hw_bad);
#endif
}

static void test_bf16(void) {
    int bad = 0, tie_bad = 0, near_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = slm_bf16_to_f32((uint16_t)h);
        bad += slm_f32_to_bits(f) != h << 16;
        if (isnan(f)) {
            uint16_t back = slm_f32_to_bf16(f);
            bad += !isnan(slm_bf16_to_f32(back));
            continue;
        }
        bad += slm_f32_to_bf16(f) != h;
        if ((h & 0x7fff) >= 0x7f80) continue; /* Inf: no upper neighbour */
        /* Halfway to the next bf16 up in magnitude. */
        uint32_t mid = h << 16 | 0x8000u;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        tie_bad += slm_f32_to_bf16(slm_bits_to_f32(mid)) != even;
        near_bad += slm_f32_to_bf16(slm_bits_to_f32(mid - 1)) != h;
        near_bad += slm_f32_to_bf16(slm_bits_to_f32(mid + 1)) != (uint16_t)(h + 1);
    }
    CHECK_MSG(bad == 0, "%d bf16 values do not round-trip", bad);
    CHECK_MSG(tie_bad == 0, "%d bf16 ties not to even", tie_bad);
    CHECK_MSG(near_bad == 0, "%d bf16 near-ties wrong", near_bad);
    CHECK(slm_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(slm_f32_to_bf16(3.4028235e38f) == 0x7f80); /* rounds up to Inf */
    CHECK(isnan(slm_bf16_to_f32(slm_f32_to_bf16(NAN))));
}

int main(void) {
    test_table();
    test_blocks_legacy();
    test_blocks_k();
    test_round_trip();
    test_float_precision();
    test_edge_rows();
    test_imatrix();
    test_q8_extras();
    test_llama_cpp_files();
    test_fp16();
    test_bf16();
    return check_finish();
}
