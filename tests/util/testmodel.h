/* Small random models for tests, written as GGUF with llama.cpp's names, so
 * tests run on a fresh machine without downloaded fixtures. */
#ifndef SLM_TEST_TESTMODEL_H
#define SLM_TEST_TESTMODEL_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_test_model_params {
    const char *arch; /* "llama" (default if NULL) or "qwen2" */
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, n_ctx; /* n_ctx -> <arch>.context_length */
    int n_extra_vocab; /* extra SPM pieces "▁x0", "▁x1", ... beyond the base vocab */
    uint32_t wtype;    /* type of the 2-D weight matrices (SLM_TYPE_F32 = 0, F16, Q8_0, ...) */
    int tied;          /* 1: no output.weight (token_embd reused) */
    float rope_base;   /* default 10000 */
    float norm_eps;    /* default 1e-5 */
    unsigned long long seed;
    float scale; /* stddev of weights, default 0.02 */
} slm_test_model_params;

/* Base vocabulary size (specials, 256 byte tokens, letters and common
 * pieces); the model has this plus n_extra_vocab tokens. */
int slm_test_base_vocab(void);

/* Writes the model. Zero fields take defaults: n_kv_heads = n_heads,
 * n_ctx = 512, rope_base, norm_eps and scale as above. dim must divide into
 * n_heads even-sized heads; dim and ffn_dim must be multiples of wtype's
 * block (token_embd falls back to F32 when dim is not). */
slm_status slm_test_write_model(const char *path, const slm_test_model_params *p);

/* Writes `n` bytes to `path` (replacing it). */
slm_status slm_test_write_bytes(const char *path, const void *data, size_t n);

#endif
