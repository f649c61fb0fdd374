/* The type table: ggml's type ids with their block geometry, the names
 * llama.cpp prints (lowercased), and what our scalar reference can do with
 * each. Sizes of the types we cannot decode are still exact, so a GGUF file
 * holding them opens, its tensors are laid out right, and the failure comes
 * later with the type's name in it. */
#include "quant/types.h"

#include <stdint.h>

#include "base/status.h"

/* Results are kept within int64 because file offsets and sizes are signed
 * downstream (off_t, int64_t element counts). */
#define SLM_ROW_BYTES_MAX ((uint64_t)INT64_MAX)

/* {name, elements per block, bytes per block, can_dequantize, can_quantize} */
static const slm_type_info k_types[SLM_TYPE_COUNT] = {
    [SLM_TYPE_F32] = {"f32", 1, 4, 1, 1},
    [SLM_TYPE_F16] = {"f16", 1, 2, 1, 1},
    [SLM_TYPE_Q4_0] = {"q4_0", SLM_QK, 18, 1, 1},
    [SLM_TYPE_Q4_1] = {"q4_1", SLM_QK, 20, 1, 1},
    /* 4 and 5 were q4_2 / q4_3, removed from ggml before GGUF existed. */
    [SLM_TYPE_Q5_0] = {"q5_0", SLM_QK, 22, 1, 1},
    [SLM_TYPE_Q5_1] = {"q5_1", SLM_QK, 24, 1, 1},
    [SLM_TYPE_Q8_0] = {"q8_0", SLM_QK, 34, 1, 1},
    [SLM_TYPE_Q8_1] = {"q8_1", SLM_QK, 36, 1, 1},
    [SLM_TYPE_Q2_K] = {"q2_k", SLM_QK_K, 84, 1, 1},
    [SLM_TYPE_Q3_K] = {"q3_k", SLM_QK_K, 110, 1, 1},
    [SLM_TYPE_Q4_K] = {"q4_k", SLM_QK_K, 144, 1, 1},
    [SLM_TYPE_Q5_K] = {"q5_k", SLM_QK_K, 176, 1, 1},
    [SLM_TYPE_Q6_K] = {"q6_k", SLM_QK_K, 210, 1, 1},
    [SLM_TYPE_Q8_K] = {"q8_k", SLM_QK_K, 292, 1, 1},
    /* Known to ggml, not decoded here: i-quants (codebook grids), integer
     * tensors, ternary and microscaling formats. */
    [16] = {"iq2_xxs", SLM_QK_K, 66, 0, 0}, /* half d; uint16 qs[32] */
    [17] = {"iq2_xs", SLM_QK_K, 74, 0, 0},  /* half d; uint16 qs[32]; scales[8] */
    [18] = {"iq3_xxs", SLM_QK_K, 98, 0, 0}, /* half d; qs[96] */
    [19] = {"iq1_s", SLM_QK_K, 50, 0, 0},   /* half d; qs[32]; uint16 qh[8] */
    [20] = {"iq4_nl", SLM_QK, 18, 0, 0},    /* half d; qs[16] */
    [21] = {"iq3_s", SLM_QK_K, 110, 0, 0},  /* half d; qs[64]; qh[8]; signs[32]; scales[4] */
    [22] = {"iq2_s", SLM_QK_K, 82, 0, 0},   /* half d; qs[64]; qh[8]; scales[8] */
    [23] = {"iq4_xs", SLM_QK_K, 136, 0, 0}, /* half d; uint16 scales_h; scales_l[4]; qs[128] */
    [24] = {"i8", 1, 1, 0, 0},
    [25] = {"i16", 1, 2, 0, 0},
    [26] = {"i32", 1, 4, 0, 0},
    [27] = {"i64", 1, 8, 0, 0},
    [28] = {"f64", 1, 8, 0, 0},
    [29] = {"iq1_m", SLM_QK_K, 56, 0, 0}, /* qs[32]; qh[16]; scales[8] (no d) */
    [SLM_TYPE_BF16] = {"bf16", 1, 2, 1, 1},
    /* 31..33 and 36..38 were repacked q4_0 / iq4_nl layouts, never valid in
     * GGUF files; they stay unknown. */
    [34] = {"tq1_0", SLM_QK_K, 54, 0, 0}, /* qs[48]; qh[4]; half d */
    [35] = {"tq2_0", SLM_QK_K, 66, 0, 0}, /* qs[64]; half d */
    [39] = {"mxfp4", SLM_QK, 17, 0, 0},   /* uint8 e (E8M0); qs[16] */
};

const slm_type_info *slm_type_get(uint32_t type) {
    if (type >= SLM_TYPE_COUNT || k_types[type].name == NULL) return NULL;
    return &k_types[type];
}

const char *slm_type_name(uint32_t type) {
    const slm_type_info *ti = slm_type_get(type);
    return ti ? ti->name : "unknown";
}

/* ASCII-only case folding: type names are ASCII and the C locale's tolower
 * must not change what a name means. */
static char fold(char c) {
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int slm_type_from_name(const char *name) {
    if (name == NULL) return -1;
    for (uint32_t t = 0; t < SLM_TYPE_COUNT; t++) {
        const char *k = k_types[t].name;
        if (k == NULL) continue;
        size_t i = 0;
        while (k[i] != '\0' && fold(name[i]) == k[i]) i++;
        if (k[i] == '\0' && name[i] == '\0') return (int)t;
    }
    return -1;
}

slm_status slm_row_bytes(uint32_t type, uint64_t n, uint64_t *out) {
    if (out == NULL) return slm_fail(SLM_ERR_INVALID_ARG, "slm_row_bytes: out is NULL");
    *out = 0;
    const slm_type_info *ti = slm_type_get(type);
    if (ti == NULL) return slm_fail(SLM_ERR_UNSUPPORTED, "unknown tensor type id %u", type);
    if (n % ti->block_size != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "row of %llu elements is not a multiple of the %s block size %u",
                        (unsigned long long)n, ti->name, ti->block_size);
    uint64_t blocks = n / ti->block_size;
    if (blocks > SLM_ROW_BYTES_MAX / ti->type_size)
        return slm_fail(SLM_ERR_FORMAT, "row of %llu %s elements overflows the byte size",
                        (unsigned long long)n, ti->name);
    *out = blocks * ti->type_size;
    return SLM_OK;
}

slm_status slm_type_check_dequantize(uint32_t type) {
    const slm_type_info *ti = slm_type_get(type);
    if (ti == NULL) return slm_fail(SLM_ERR_UNSUPPORTED, "unknown tensor type id %u", type);
    if (!ti->can_dequantize)
        return slm_fail(SLM_ERR_UNSUPPORTED, "tensor type %s (%u) is not supported", ti->name,
                        type);
    return SLM_OK;
}
