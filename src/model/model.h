/* Model: hyperparameters and weights bound from a GGUF file (read-only,
 * shareable across sessions and threads). */
#ifndef SLM_MODEL_MODEL_H
#define SLM_MODEL_MODEL_H

#include <stdint.h>

#include "base/mmap_file.h"
#include "base/threadpool.h"
#include "format/gguf.h"
#include "kernels/kernels.h"
#include "slm.h"
#include "tokenizer/tokenizer.h"

#define SLM_MAX_LAYERS 512
#define SLM_MAX_DIM 65536
#define SLM_MAX_VOCAB (1 << 22)
#define SLM_MAX_HEADS 1024

typedef enum slm_arch { SLM_ARCH_UNKNOWN = 0, SLM_ARCH_LLAMA = 1, SLM_ARCH_QWEN2 = 2 } slm_arch;

/* How RoPE pairs dimensions: adjacent (i, i+1) as llama.cpp's converter
 * permutes Llama's q/k for, or halves (i, i+d/2) as Qwen2 (GPT-NeoX). */
typedef enum slm_rope_style { SLM_ROPE_ADJACENT = 0, SLM_ROPE_HALVES = 1 } slm_rope_style;

typedef struct slm_hparams {
    int32_t n_vocab;
    int32_t dim; /* embedding width */
    int32_t n_layers;
    int32_t n_heads;
    int32_t n_kv_heads; /* < n_heads: grouped-query attention */
    int32_t head_dim;
    int32_t kv_dim; /* n_kv_heads * head_dim */
    int32_t ffn_dim;
    int32_t n_ctx_train;
    int32_t rope_dim; /* dimensions rotated per head (<= head_dim) */
    float rope_base;
    float norm_eps;
    slm_rope_style rope_style;
} slm_hparams;

typedef struct slm_layer {
    const float *attn_norm;    /* [dim] */
    const float *ffn_norm;     /* [dim] */
    slm_matrix wq;             /* [dim] -> [dim]     (rows = outputs) */
    slm_matrix wk;             /* [dim] -> [kv_dim] */
    slm_matrix wv;             /* [dim] -> [kv_dim] */
    slm_matrix wo;             /* [dim] -> [dim] */
    const float *bq, *bk, *bv; /* qwen2 biases, NULL for llama */
    slm_matrix w_gate;         /* [dim] -> [ffn_dim] */
    slm_matrix w_up;           /* [dim] -> [ffn_dim] */
    slm_matrix w_down;         /* [ffn_dim] -> [dim] */
} slm_layer;

struct slm_model {
    char *path;
    gguf_file *gguf;
    slm_tokenizer *tok; /* NULL when an inspected file has none we can read */
    int inspect_only;
    slm_arch arch;
    char arch_name[32];
    char name[128];
    slm_hparams hp;
    slm_matrix tok_embd; /* [n_vocab rows][dim] */
    slm_matrix output;   /* [n_vocab rows][dim], = tok_embd when tied */
    int tied_output;
    const float *output_norm;
    slm_layer *layers;
    float *f32_store; /* norms and biases converted to f32, owned */
    uint64_t n_params;
    uint64_t weight_bytes;
    uint32_t weight_type; /* most common matrix type */
    char **tensor_names;  /* NUL-terminated copies, [n_tensors] */
    char **meta_keys;     /* NUL-terminated copies, [n_kv] */
    uint8_t *quant_store; /* matrices quantized at load (config "quant"), owned, or NULL */
    double quant_ms;      /* time spent quantizing at load */
    slm_mapped_file map;  /* the file's bytes (mapped or copied) that gguf reads */
    double verify_ms;     /* time spent verifying the signature at load */
};

/* Opens a model. inspect_only: metadata and tensors only (see
 * slm_model_inspect). quant: the precision the caller requires ("" or NULL =
 * whatever the file holds). */
slm_status slm_model_open(const char *path, int inspect_only, const char *quant, slm_model **out);
/* Same; trust_dir non-NULL requires path.sig to be a valid signature, by a key
 * in trust_dir, of the very bytes that are then parsed and used: the file is
 * held in memory once (weights: mapped or copied, see slm_load_file), those
 * bytes are hashed and checked, and GGUF is read from them. slm_model_open
 * maps. */
slm_status slm_model_open_ex(const char *path, int inspect_only, const char *quant,
                             const char *trust_dir, slm_file_mode weights, slm_model **out);
void slm_model_close(slm_model *m);

/* Memory the forward pass needs for a batch of up to n_batch tokens. */
typedef struct slm_forward_buf {
    int32_t n_batch;
    float *x;       /* [n_batch][dim] residual stream */
    float *xb;      /* [n_batch][dim] normed input */
    float *xb2;     /* [n_batch][dim] attention output */
    float *q;       /* [n_batch][dim] */
    float *k;       /* [n_batch][kv_dim] */
    float *v;       /* [n_batch][kv_dim] */
    float *hb;      /* [n_batch][ffn_dim] */
    float *hb2;     /* [n_batch][ffn_dim] */
    float *att;     /* [n_threads][n_ctx] attention scores */
    float *rope;    /* [n_ctx][rope_dim/2][2] cos, sin */
    float *scratch; /* matmul scratch, per thread */
    size_t scratch_per_thread;
} slm_forward_buf;

/* KV cache, per layer n_pos_alloc (n_ctx rounded up to SLM_KV_TILE)
 * positions of kv_dim elements: values [pos][kv_dim], keys in tiles of
 * SLM_KV_TILE positions, [pos / 16][kv_dim][pos % 16] (kernels.h,
 * slm_kv_tile_at). Elements f32 or f16 (SLM_TYPE_F32 / SLM_TYPE_F16; f16
 * rounds to nearest even on the way in, half the memory and half the bytes
 * attention reads). */
typedef struct slm_kv_cache {
    int32_t n_ctx;
    int32_t n_pos_alloc;
    uint32_t type;
    size_t bytes;       /* of k, and of v (slm_pages_alloc) */
    size_t layer_bytes; /* one layer's part of k (of v): n_pos_alloc * kv_dim elements */
    void *k;
    void *v;
} slm_kv_cache;

/* Called with the input of every matrix multiplication (X: n rows of
 * W->n_cols floats, x_stride apart), before it runs: calibration collects
 * activation statistics through it. NULL in normal runs. */
typedef void (*slm_matmul_observer)(void *user, const slm_matrix *W, const float *X, int32_t n,
                                    int64_t x_stride);

struct slm_lora_set; /* model/lora.h */

typedef struct slm_forward {
    const slm_model *model;
    slm_matmul_observer observe;
    void *observe_user;
    struct slm_lora_set *lora; /* LoRA adapters in use (NULL = none), see model/lora.h */
    float *hidden_out; /* when set: each batch's final hidden states (after the output norm),
                          [n][dim], for embeddings (runtime/embed.c); NULL = none */
    const slm_provider *pv;
    slm_pool *pool;
    slm_forward_buf buf;
    slm_kv_cache kv;
} slm_forward;

/* kv_type: the cache's element type, SLM_TYPE_F32 or SLM_TYPE_F16. */
slm_status slm_forward_init(slm_forward *fw, const slm_model *m, const slm_provider *pv,
                            slm_pool *pool, int32_t n_ctx, int32_t n_batch, uint32_t kv_type);
void slm_forward_free(slm_forward *fw);

/* Runs tokens[0..n) at positions pos..pos+n-1 (n <= n_batch, pos+n <= n_ctx),
 * appending their keys and values to the cache. Logits: when `logits` is not
 * NULL, all_logits=0 writes the last position's [n_vocab] logits, all_logits=1
 * writes [n][n_vocab]. */
slm_status slm_forward_run(slm_forward *fw, const int32_t *tokens, int32_t n, int32_t pos,
                           float *logits, int all_logits);

#endif
