/* Model-level quantization: choosing a type per tensor (mixes, fallbacks,
 * --keep overrides, KL budgets), calibration statistics gathered through the
 * forward pass's matmul observer, and quantizing matrices in memory at load.
 * The public entry points (slm_quantize_file, slm_compare_files) are in
 * slm.h; this header is for the runtime and its tests. */
#ifndef SLM_RUNTIME_QUANTIZE_H
#define SLM_RUNTIME_QUANTIZE_H

#include <stdint.h>

#include "base/threadpool.h"
#include "model/model.h"
#include "slm.h"

#define SLM_QSTATS_VERSION 1u
#define SLM_QUANT_VERSION 2u /* general.quantization_version, as llama.cpp */
#define SLM_QUANT_DEFAULT_CALIB_CTX 128
#define SLM_QUANT_MAX_KEEP 64
#define SLM_QUANT_BUDGET_MAX_WINDOWS 16 /* calibration windows the budget search evaluates */
#define SLM_QUANT_BUDGET_MAX_LOGPROBS (32u << 20) /* base log-probs kept (doubles, 256 MiB) */
#define SLM_QUANT_SENSITIVITY_WINDOWS 4           /* of those, for each tensor's sensitivity */
#define SLM_QUANT_BUDGET_ROUNDS 4                 /* plan, measure, tighten: at most this often */

/* llama.cpp's LLAMA_FTYPE numbers for general.file_type. */
enum {
    SLM_FTYPE_ALL_F32 = 0,
    SLM_FTYPE_F16 = 1,
    SLM_FTYPE_Q4_0 = 2,
    SLM_FTYPE_Q4_1 = 3,
    SLM_FTYPE_Q8_0 = 7,
    SLM_FTYPE_Q5_0 = 8,
    SLM_FTYPE_Q5_1 = 9,
    SLM_FTYPE_Q4_K_S = 14,
    SLM_FTYPE_Q4_K_M = 15,
    SLM_FTYPE_Q5_K_S = 16,
    SLM_FTYPE_Q5_K_M = 17,
    SLM_FTYPE_Q6_K = 18,
    SLM_FTYPE_BF16 = 32
};

/* What --type names: a uniform block type, or one of llama.cpp's mixes. */
typedef enum slm_qmix { SLM_QMIX_NONE = 0, SLM_QMIX_Q4_K_M = 1, SLM_QMIX_Q5_K_M = 2 } slm_qmix;

typedef struct slm_qtarget {
    uint32_t type; /* base block type */
    slm_qmix mix;
    uint32_t ftype; /* general.file_type */
} slm_qtarget;

/* Parses "q8_0", "Q4_K_M", "f16", ... Unknown or unwritable names are
 * SLM_ERR_INVALID_ARG naming the type and listing the choices. */
slm_status slm_qtarget_parse(const char *name, slm_qtarget *out);
/* The names slm_qtarget_parse accepts, comma-separated. */
const char *slm_qtarget_names(void);

/* 1 when rows of n_cols elements split into whole blocks of `type`. */
int slm_qtype_fits(uint32_t type, int64_t n_cols);
/* The type to use for rows of n_cols when `type` does not fit: llama.cpp's
 * table for k-quants (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0), then f16,
 * which fits any row. Returns `type` itself when it fits. */
uint32_t slm_qtype_fallback(uint32_t type, int64_t n_cols);
/* The type a mix (or uniform target) asks for tensor `name` of a model with
 * n_layers blocks (before any fallback). */
uint32_t slm_qtarget_tensor_type(const slm_qtarget *t, const char *name, int64_t n_cols,
                                 int n_layers, int has_output);

/* ---- calibration statistics ------------------------------------------------- */

/* Per matrix: mean over calibration tokens of the square of each input
 * column (llama.cpp's imatrix) and the range of all its inputs. */
typedef struct slm_qstat {
    char *name;
    int64_t n_cols;
    double *acc;    /* sum of squares while collecting, NULL after */
    float *mean;    /* [n_cols] mean of squares (after finishing or loading) */
    int64_t n_rows; /* activation rows seen */
    float amin, amax;
    double *hess; /* [n_cols][n_cols] sum of x x^T (upper triangle) for GPTQ, or NULL */
} slm_qstat;

typedef struct slm_qstats {
    size_t n, cap;
    slm_qstat *t;
    int64_t n_tokens;
    size_t last;         /* lookup cache */
    int want_hessian;    /* collect x x^T per matrix too (--gptq) */
    uint64_t hess_bytes; /* memory the Hessians take */
} slm_qstats;

#define SLM_GPTQ_MAX_HESSIAN_BYTES (2ull << 30) /* all Hessians together */
#define SLM_GPTQ_DAMP 0.01                      /* of the mean diagonal, added to it */

/* Runs the model over the text (windows of n_ctx tokens, BOS first as the
 * model adds it) collecting statistics for every matrix multiplication;
 * with_hessian: also the sum of x x^T of each matrix's inputs (GPTQ). */
slm_status slm_qstats_collect(const slm_model *m, const char *text, size_t len, int32_t n_ctx,
                              int with_hessian, slm_pool *pool, slm_qstats *out);
slm_status slm_qstats_save(const slm_qstats *s, const char *path);
/* Reads and validates a file written by slm_qstats_save. */
slm_status slm_qstats_load(const char *path, slm_qstats *out);
const slm_qstat *slm_qstats_find(const slm_qstats *s, const char *name);
void slm_qstats_free(slm_qstats *s);

/* Log-softmax in double; KL(base || other) of two log-probability vectors
 * (clamped at 0 against rounding). */
void slm_log_softmax(const float *logits, int64_t n, double *out);
double slm_kl_divergence(const double *lp_base, const double *lp_other, int64_t n);

/* ---- matrices -------------------------------------------------------------------- */

/* Converts n_rows rows (src_type, src_row_bytes apart) into dst_type rows
 * back to back in dst, in parallel over rows. imatrix: NULL or [n_cols]. */
slm_status slm_quantize_matrix(uint32_t src_type, const uint8_t *src, size_t src_row_bytes,
                               int64_t n_cols, int64_t n_rows, uint32_t dst_type, uint8_t *dst,
                               const float *imatrix, slm_pool *pool);

/* GPTQ (Frantar et al. 2022) at block granularity: each row's blocks are
 * quantized left to right by the type's quantizer (imatrix-weighted), and
 * the rounding error of every column is compensated in the columns not yet
 * quantized through the Cholesky factor of the inverse Hessian. hess is
 * st->hess (upper triangle of sum x x^T). */
slm_status slm_gptq_matrix(uint32_t src_type, const uint8_t *src, size_t src_row_bytes,
                           int64_t n_cols, int64_t n_rows, uint32_t dst_type, uint8_t *dst,
                           const slm_qstat *st, slm_pool *pool);

/* Quantize on load: converts the bound F32/F16/BF16 matrices of a loaded
 * model to the precision `quant` names ("int8" = q8_0, "int4" = q4_k, "f16",
 * or a block type), each falling back as slm_qtype_fallback says, into memory
 * the model owns (m->quant_store). Records the time taken in m->quant_ms. */
slm_status slm_model_quantize_loaded(slm_model *m, const char *quant);

#endif
