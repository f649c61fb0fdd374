/* Compute kernels, per tensor type and instruction set, behind providers.
 *
 * A provider is a named table of functions (ref = scalar reference; avx2;
 * later avx512, neon, accelerators). The reference is the oracle in tests.
 * Matrices are row-major with rows of n_cols elements of `type`; activations
 * are f32. */
#ifndef SLM_KERNELS_KERNELS_H
#define SLM_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "slm.h"

typedef struct slm_matrix {
    uint32_t type;
    int64_t n_cols; /* row length (elements) */
    int64_t n_rows;
    size_t row_bytes;
    const uint8_t *data;
    const char *name; /* the tensor's name, for messages and calibration (may be NULL) */
} slm_matrix;

typedef struct slm_provider {
    const char *name;
    /* 1 when this CPU can run it. */
    int (*available)(void);
    /* dot(row of `type`, x) for one row of n elements. */
    float (*dot_row)(uint32_t type, const void *row, const float *x, int64_t n, float *tmp);
    /* f32 vector ops */
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n); /* y += a*x */
    /* Row dequantization into f32 (n multiple of the block size). */
    void (*dequantize_row)(uint32_t type, const void *src, float *dst, int64_t n);
    /* Optional (NULL: slm_matmul's generic row loops). Y[t][r] for rows
     * [r0, r1) of W and all n_tok tokens, with slm_matmul's strides. Each
     * (row, token) must get the same bits whatever the batch around the
     * token and whatever the split of rows; it is dot_row(row, x_t) except
     * for types where int8_activations says otherwise. `scratch` holds
     * slm_matmul_scratch_floats(W->n_cols) floats for this call alone. */
    void (*matmul_rows)(const slm_matrix *W, int64_t r0, int64_t r1, const float *X, int64_t n_tok,
                        int64_t x_stride, float *Y, int64_t y_stride, float *scratch);
    /* Optional (NULL = never): when matmul_rows quantizes activations to
     * 8-bit blocks (scale max|x|/127, round to nearest) for this weight type
     * and uses integer dot products, the block length (32, or 256 for the
     * avx512 k-quant kernels); else 0. The result then differs from dot_row
     * by that rounding, at most sum over blocks of
     * (max|x_block| / 254) * sum|w_block|, plus float rounding. */
    int (*int8_activations)(uint32_t type);
    /* Optional (NULL = never): 1 when matmul_rows rounds the activations to
     * f16 (to nearest even) before multiplying rows of this type, as
     * llama.cpp does for f16 weights (avx512, f16: the rounded activations
     * take half the L1 and long rows stream at the machine's read rate);
     * else 0. The result then differs from dot_row by at most
     * 2^-11 * sum |w x| plus float rounding; |x| above 65504 becomes inf. */
    int (*f16_activations)(uint32_t type);
    /* Optional forward-pass ops (NULL: the model's scalar loops), f32, any n.
     * rmsnorm: out = x / sqrt(mean(x^2) + eps) * w. swiglu: g = silu(g) * u.
     * attend: n_q heads of attention that share one K/V head (grouped-query
     * attention) over n_pos cached positions: for head g, with query q + g *
     * hd, scores att_g = att + g * n_pos and output out + g * hd: att_g[p] =
     * scale * q_g . k_p, softmax over p, out_g[hd] = sum_p att_g[p] v_p.
     * Elements are of kv_type, SLM_TYPE_F32 or SLM_TYPE_F16 (converted
     * exactly to f32). v_p = v + p * kv_stride. Keys are in tiles of
     * SLM_KV_TILE positions, dimension-major inside a tile (see
     * slm_kv_tile_at), so that 16 positions' scores are 16 lanes of FMAs
     * with q broadcast: element d of k_p is k[slm_kv_tile_at(p, d,
     * kv_stride)]; the last tile may hold stale or zero positions past n_pos,
     * which must not change the result. att holds n_q * n_pos floats. Each
     * head gets the bits it gets alone (n_q = 1); taking the heads together
     * lets a kernel read each K/V row once for all of them. */
    void (*rmsnorm)(float *out, const float *x, const float *w, int64_t n, float eps);
    void (*swiglu)(float *g, const float *u, int64_t n);
    void (*attend)(const float *q, int32_t n_q, const void *k, const void *v, uint32_t kv_type,
                   int64_t kv_stride, int32_t n_pos, int32_t hd, float scale, float *att,
                   float *out);
    /* Optional (NULL: the model's scalar loop; issue 5). Rotates one head's
     * first rope_dim dims (even, any value) in place; cs holds rope_dim
     * floats, cos and sin of pair i at cs[2i], cs[2i + 1]. adjacent = 1:
     * pairs (2i, 2i + 1) (SLM_ROPE_ADJACENT), else (i, i + rope_dim/2)
     * (neox halves). Per pair h[a] = x0*c - x1*s, h[b] = x0*s + x1*c, each
     * two rounded products then a rounded sum (no FMA): the scalar loop's
     * bits exactly. Kernels in kernels/rope_*.c, declared in kernels/rope.h. */
    void (*rope)(float *h, const float *cs, int32_t rope_dim, int adjacent);
    /* Optional (NULL: the sampler's own copy of the same loop). Greedy
     * decoding's pick: the index of the largest of x[0..n), first on ties,
     * NaNs never winning but one at x[0] kept, exactly as the scalar loop
     * `if (x[i] > x[best]) best = i`; kernels/argmax.h, compiled in each
     * provider's file so that its instruction set vectorizes it (a 151936
     * vocabulary: about 0.5 ms as the scalar loop, 0.01 ms with AVX2). */
    int32_t (*argmax_f32)(const float *x, int32_t n);
    /* Optional (NULL: base/fp16.h's slm_f32_to_fp16 per element). dst[i] =
     * src[i] rounded to IEEE half, to nearest even, overflow to inf: the
     * scalar function's bits for every non-NaN input (a NaN stays a NaN).
     * The f16 K/V cache is written through it. */
    void (*to_f16)(uint16_t *dst, const float *src, int64_t n);
} slm_provider;

/* Positions per tile of the key cache, and where element d of position p
 * lies in a head's tiles when positions are kv_stride elements apart in the
 * untiled layout (tiles are SLM_KV_TILE * kv_stride elements apart). */
#define SLM_KV_TILE 16
static inline size_t slm_kv_tile_at(int64_t p, int64_t d, int64_t kv_stride) {
    return (size_t)(p / SLM_KV_TILE) * SLM_KV_TILE * (size_t)kv_stride + (size_t)d * SLM_KV_TILE +
           (size_t)(p % SLM_KV_TILE);
}

/* A provider's attend for one head, and the grouped op made of it: the
 * heads one after another (for providers without a grouped kernel). */
typedef void (*slm_attend1_fn)(const float *q, const void *k, const void *v, uint32_t kv_type,
                               int64_t kv_stride, int32_t n_pos, int32_t hd, float scale,
                               float *att, float *out);
static inline void slm_attend_each(slm_attend1_fn one, const float *q, int32_t n_q, const void *k,
                                   const void *v, uint32_t kv_type, int64_t kv_stride,
                                   int32_t n_pos, int32_t hd, float scale, float *att, float *out) {
    for (int32_t g = 0; g < n_q; g++)
        one(q + (size_t)g * (size_t)hd, k, v, kv_type, kv_stride, n_pos, hd, scale,
            att + (size_t)g * (size_t)n_pos, out + (size_t)g * (size_t)hd);
}

/* Tokens whose 8-bit activations fit in the matmul scratch at once. */
#define SLM_MATMUL_X8_TOKENS 16

/* The providers themselves (avx2 and avx512 only on x86). */
extern const slm_provider slm_provider_ref;
#if defined(__x86_64__) || defined(__i386__)
extern const slm_provider slm_provider_avx2;
#endif
#if defined(__x86_64__)
extern const slm_provider slm_provider_avx512; /* AVX-512 F/BW/VL/DQ */
#endif
#if defined(__aarch64__)
extern const slm_provider slm_provider_neon; /* ARMv8 NEON, sdot where present */
/* 1 when this CPU has the dot-product extension (HWCAP_ASIMDDP): the neon
 * provider's 8-bit kernels then use sdot, else widening multiplies. */
int slm_neon_dotprod(void);
#endif

/* Providers compiled in, in preference order; ends with NULL. */
const slm_provider *const *slm_providers_all(void);
const slm_provider *slm_provider_find(const char *name);
/* Picks the first available provider from a comma/array list of names
 * (NULL or empty = best available). A named provider that is unavailable
 * falls back to the next, logging one line. Never fails: "ref" is always
 * there. */
const slm_provider *slm_provider_select(const char *const *names, size_t n_names);

/* 1 when the kernels can multiply this type. */
int slm_kernels_support(uint32_t type);

/* Y[t][r] = sum_c W[r][c] * X[t][c] for t < n_tok, r < W->n_rows.
 * X rows are x_stride floats apart, Y rows y_stride floats apart. Rows of W
 * are split across the pool's threads; each row is read once for all
 * tokens. `scratch` holds slm_matmul_scratch_floats(W) floats per thread:
 * a tile of dequantized rows and SLM_MATMUL_X8_TOKENS tokens of 8-bit
 * activations. */
void slm_matmul(const slm_provider *pv, slm_pool *pool, const slm_matrix *W, const float *X,
                int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride, float *scratch);
size_t slm_matmul_scratch_floats(int64_t n_cols);

/* slm_matmul for n_mat matrices of one row length over the same X (a
 * layer's q, k and v; gate and up) as one job for the pool: their rows are
 * split across the threads as if stacked, one synchronization instead of
 * one per matrix. Each row gets the bits slm_matmul gives it (a provider's
 * rows do not depend on the split). Y[i] with stride y_stride[i]. More than
 * SLM_MATMUL_MULTI_MAX matrices, or rows of different lengths: one job each. */
#define SLM_MATMUL_MULTI_MAX 4
void slm_matmul_multi(const slm_provider *pv, slm_pool *pool, int n_mat, const slm_matrix *const *W,
                      const float *X, int64_t n_tok, int64_t x_stride, float *const *Y,
                      const int64_t *y_stride, float *scratch);

/* The providers' rope kernels (their tables point at them). */
#include "kernels/rope.h"

#endif
