/* slm — small language models, run locally.
 *
 * The one public header. Everything the CLI, the server and embedding apps
 * do goes through these functions.
 *
 * Conventions:
 *  - Functions that can fail return slm_status; on failure slm_last_error()
 *    returns a message (per thread) naming the file, key or offset at fault.
 *  - Objects are opaque and freed by their *_free function (NULL is a no-op).
 *  - Lengths are explicit; strings passed in are UTF-8.
 */
#ifndef SLM_H
#define SLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_VERSION_STRING "0.1.0"

typedef enum slm_status {
    SLM_OK = 0,
    SLM_ERR_INVALID_ARG = 1, /* a caller passed something unusable */
    SLM_ERR_IO = 2,          /* open/read/write/mmap failed */
    SLM_ERR_FORMAT = 3,      /* a file is malformed */
    SLM_ERR_UNSUPPORTED = 4, /* valid but not supported (type, architecture, feature) */
    SLM_ERR_NOMEM = 5,
    SLM_ERR_CONFIG = 6,  /* runtime config: unknown key, wrong type, out of range */
    SLM_ERR_CONTEXT = 7, /* does not fit the context window */
    SLM_ERR_CANCELLED = 8,
    SLM_ERR_INTERNAL = 9
} slm_status;

/* Message of the last failure on this thread ("" if none). */
const char *slm_last_error(void);
/* Short name of a status code, e.g. "format error". */
const char *slm_status_str(slm_status st);
const char *slm_version(void);

/* ---- Runtime config ----------------------------------------------------
 * Built from defaults, then JSON objects applied in order (later keys win),
 * e.g. {"max_tokens":128,"temperature":0,"quant":"int8"}.
 * Keys: max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
 * repeat_last_n, seed, stop (string or array of strings), threads, n_ctx,
 * n_keep, n_batch, quant, providers (array of names), context_policy
 * ("shift" | "error"). An unknown key, a wrong type or an out-of-range value
 * is SLM_ERR_CONFIG naming the key. */
typedef struct slm_config slm_config;

slm_status slm_config_new(slm_config **out);
void slm_config_free(slm_config *cfg);
slm_status slm_config_apply_json(slm_config *cfg, const char *json, size_t len);
/* Applies a JSON file, or, when `text` starts with '{', the text itself. */
slm_status slm_config_apply(slm_config *cfg, const char *text_or_path);
/* The effective config as a JSON object (malloc'd, caller frees). */
char *slm_config_to_json(const slm_config *cfg);

/* ---- Models -------------------------------------------------------------- */
typedef struct slm_model slm_model;

/* Loads a GGUF model: memory-mapped read-only, validated. `cfg` may be NULL
 * (it is consulted for "quant"). */
slm_status slm_model_load(const char *path, const slm_config *cfg, slm_model **out);
void slm_model_free(slm_model *model);

typedef struct slm_model_info {
    const char *arch; /* "llama", "qwen2" */
    const char *name; /* general.name or "" */
    int32_t n_vocab, n_ctx_train, dim, n_layers, n_heads, n_kv_heads, ffn_dim, head_dim, rope_dim;
    float rope_base, norm_eps;
    int tied_output;
    uint64_t n_params;
    uint64_t file_bytes, weight_bytes;
    const char *tokenizer; /* "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE) */
    const char *weight_type; /* most common matrix type, e.g. "f16", "q4_k" */
} slm_model_info;

slm_status slm_model_get_info(const slm_model *model, slm_model_info *out);

/* ---- Tokenizer ----------------------------------------------------------- */
enum {
    SLM_TOKENIZE_ADD_BOS = 1,       /* add BOS/EOS as the tokenizer's metadata says */
    SLM_TOKENIZE_PARSE_SPECIAL = 2, /* match control-token text in the input */
};
/* Token ids into a malloc'd array (*ids, caller frees). */
slm_status slm_tokenize(const slm_model *model, const char *text, size_t len, int flags,
                        int32_t **ids, size_t *n_ids);
/* Text of a token sequence (malloc'd, NUL-terminated, caller frees). */
slm_status slm_detokenize(const slm_model *model, const int32_t *ids, size_t n_ids, char **text,
                          size_t *len);
int32_t slm_token_bos(const slm_model *model);
int32_t slm_token_eos(const slm_model *model);

/* ---- Sessions -----------------------------------------------------------
 * One conversation: config, KV cache, scratch, sampler state. Allocated once
 * at creation; decoding allocates nothing. A model may back many sessions. */
typedef struct slm_session slm_session;

slm_status slm_session_new(slm_model *model, const slm_config *cfg, slm_session **out);
void slm_session_free(slm_session *s);

typedef enum slm_finish {
    SLM_FINISH_NONE = 0,
    SLM_FINISH_LENGTH = 1, /* max_tokens reached */
    SLM_FINISH_EOS = 2,    /* the model emitted end-of-generation */
    SLM_FINISH_STOP = 3,   /* a stop string matched (not emitted) */
    SLM_FINISH_CALLBACK = 4 /* the token callback asked to stop */
} slm_finish;

typedef struct slm_result {
    int32_t n_prompt_tokens;
    int32_t n_generated;
    slm_finish finish;
    int32_t n_trims;        /* times the context was trimmed (0 = never) */
    int32_t n_dropped;      /* tokens dropped by trimming */
    double prefill_ms, decode_ms, ttft_ms;
} slm_result;

/* Called with each piece of text as soon as it is sampled; pieces never split
 * a UTF-8 character. Return non-zero to stop generation. */
typedef int (*slm_token_fn)(void *user, const char *text, size_t len);

/* Generates a continuation of `prompt` (tokenized with BOS as the model says,
 * control-token text not parsed). Resets the session's context first. */
slm_status slm_generate(slm_session *s, const char *prompt, size_t len, slm_token_fn on_text,
                        void *user, slm_result *result);

/* Logits of every prompt position ([n_tokens][n_vocab] floats, malloc'd). */
slm_status slm_prompt_logits(slm_session *s, const char *prompt, size_t len, float **logits,
                             size_t *n_tokens, size_t *n_vocab);

typedef struct slm_perplexity_result {
    double perplexity;
    double nll_mean;
    int64_t n_scored;
    int64_t n_windows;
} slm_perplexity_result;

/* Perplexity of `text` by the protocol of llama.cpp's perplexity tool:
 * consecutive windows of n_ctx tokens (BOS first when the model adds one),
 * each from an empty cache, scoring positions 0..n_ctx-2. */
slm_status slm_perplexity(slm_session *s, const char *text, size_t len, int32_t n_ctx,
                          slm_perplexity_result *out);

#ifdef __cplusplus
}
#endif
#endif
