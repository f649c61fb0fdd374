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
    SLM_ERR_INTERNAL = 9,
    SLM_ERR_SIGNATURE = 10 /* a signature is missing, malformed, untrusted or does not match */
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
 * repeat_last_n, presence_penalty and frequency_penalty (OpenAI's, -2..2:
 * logit -= presence * [count > 0] + frequency * count, counting each token
 * in the same last repeat_last_n tokens the repetition penalty looks at,
 * prompt included), seed, stop (string or array of strings), threads, n_ctx,
 * n_keep, n_batch, quant, providers (array of names), context_policy
 * ("shift" | "error"), ignore_eos, require_signature (bool), trust_dir (string),
 * weights ("auto" | "map" | "copy": how slm_model_load holds the file; "copy" reads it
 * into anonymous memory in 2 MiB pages, faster to stream than the page cache's 4 KiB
 * pages but not shared with other processes nor reclaimable; "map" maps it; "auto", the
 * default, copies when transparent huge pages are on and the file takes under half of
 * MemAvailable, else maps), kv_cache ("f16" | "f32": the K/V cache's element type;
 * f16, the default, rounds each stored key and value to nearest even: half the memory).
 * An unknown key, a wrong type or an out-of-range value is SLM_ERR_CONFIG naming the key.
 * "require_signature": true makes slm_model_load refuse a model unless MODEL.sig is a
 * valid signature of the exact bytes loaded by a key whose .pub file is in "trust_dir"
 * (see "Signatures" below); the failure is SLM_ERR_SIGNATURE naming the check. */
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
    const char *tokenizer;   /* "llama" (SentencePiece BPE) or "gpt2" (byte-level BPE) */
    const char *weight_type; /* most common matrix type, e.g. "f16", "q4_k" */
    int weights_copied;      /* 1: the file was copied into memory, 0: it is mapped */
} slm_model_info;

slm_status slm_model_get_info(const slm_model *model, slm_model_info *out);

/* Opens a GGUF file for inspection only: metadata, tensors and whatever of the
 * hyperparameters and tokenizer can be read; nothing is bound for inference,
 * so files of unsupported architectures or types can still be described.
 * Sessions cannot be created on such a model. */
slm_status slm_model_inspect(const char *path, slm_model **out);

typedef struct slm_tensor_info {
    const char *name;
    const char *type; /* "f16", "q4_k", ... */
    int n_dims;
    int64_t ne[4]; /* ne[0] = row length */
    uint64_t nbytes;
    uint64_t offset; /* in the file */
} slm_tensor_info;

size_t slm_model_n_tensors(const slm_model *model);
slm_status slm_model_tensor(const slm_model *model, size_t i, slm_tensor_info *out);
size_t slm_model_n_meta(const slm_model *model);
/* Key i of the file's metadata, and its value rendered as text into `value`
 * (strings quoted JSON-style, long arrays summarized as "[N × type]"). */
slm_status slm_model_meta(const slm_model *model, size_t i, const char **key, char *value,
                          size_t cap);
/* Names of the kernel providers this CPU can run, best first (NULL-terminated). */
const char *const *slm_providers_available(void);

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

/* Tokenizers on their own: from a Hugging Face tokenizer.json (and
 * optionally tokenizer_config.json), or a loaded model's. Encoding flags are
 * the SLM_TOKENIZE_* above; decoding flags below. */
typedef struct slm_tokenizer slm_tokenizer;
enum {
    SLM_DECODE_SPECIAL = 1,    /* render control tokens as their text (else nothing) */
    SLM_DECODE_STRIP_SPACE = 2 /* SentencePiece: drop one leading space of the text */
};
slm_status slm_tokenizer_from_hf_json(const char *path_tokenizer_json,
                                      const char *path_tokenizer_config, slm_tokenizer **out);
void slm_tokenizer_free(slm_tokenizer *t);
/* The model's tokenizer (owned by the model; NULL when it has none). */
const slm_tokenizer *slm_model_tokenizer(const slm_model *model);
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, int flags,
                                int32_t **ids, size_t *n_ids);
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags,
                                char **text, size_t *len);
/* The decode flags that reproduce the tokenizer's own decoder. */
int slm_tokenizer_decode_flags(const slm_tokenizer *t);
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t);

/* ---- Sessions -----------------------------------------------------------
 * One conversation: config, KV cache, scratch, sampler state. Allocated once
 * at creation; decoding allocates nothing. A model may back many sessions. */
typedef struct slm_session slm_session;

slm_status slm_session_new(slm_model *model, const slm_config *cfg, slm_session **out);
void slm_session_free(slm_session *s);
/* Applies a JSON object of per-request settings to a session: max_tokens,
 * temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n,
 * presence_penalty, frequency_penalty, seed, stop, ignore_eos, n_keep, context_policy. Keys that
 * size the session or belong to the model (n_ctx, n_batch, threads, quant, weights,
 * kv_cache, providers) are refused: they need a new session (weights: a new model). All or
 * nothing. */
slm_status slm_session_configure(slm_session *s, const char *json, size_t len);
/* Tokens whose keys and values are cached (a later slm_generate whose
 * prompt starts with the same tokens reuses them instead of recomputing). */
int32_t slm_session_n_cached(const slm_session *s);
/* The kernel provider the session runs on ("avx2", "ref", ...). */
const char *slm_session_provider(const slm_session *s);
int32_t slm_session_n_ctx(const slm_session *s);
/* Bytes of the session's K and V caches (n_ctx positions; config "kv_cache"
 * sets their element type). Pages are touched only as positions fill. */
uint64_t slm_session_kv_bytes(const slm_session *s);
/* The K/V cache's element type as the config names it: "f16" or "f32". */
const char *slm_session_kv_type(const slm_session *s);

typedef enum slm_finish {
    SLM_FINISH_NONE = 0,
    SLM_FINISH_LENGTH = 1,  /* max_tokens reached */
    SLM_FINISH_EOS = 2,     /* the model emitted end-of-generation */
    SLM_FINISH_STOP = 3,    /* a stop string matched (not emitted) */
    SLM_FINISH_CALLBACK = 4 /* the token callback asked to stop */
} slm_finish;

typedef struct slm_result {
    int32_t n_prompt_tokens;
    int32_t n_generated;
    slm_finish finish;
    int32_t n_cached;  /* prompt tokens reused from the session's cache */
    int32_t n_trims;   /* times the context was trimmed (0 = never) */
    int32_t n_dropped; /* tokens dropped by trimming */
    double prefill_ms, decode_ms, ttft_ms;
} slm_result;

/* Called with each piece of text as soon as it is sampled; pieces never split
 * a UTF-8 character. Return non-zero to stop generation. */
typedef int (*slm_token_fn)(void *user, const char *text, size_t len);

/* Generates a continuation of `prompt` (tokenized with BOS as the model says,
 * control-token text not parsed). The session's cache is reused for the
 * longest common prefix of this prompt and what the session evaluated
 * before (multi-turn chat); the rest is recomputed. */
slm_status slm_generate(slm_session *s, const char *prompt, size_t len, slm_token_fn on_text,
                        void *user, slm_result *result);

/* Same, from token ids the caller made (e.g. with slm_chat_prompt). */
slm_status slm_generate_tokens(slm_session *s, const int32_t *ids, size_t n_ids,
                               slm_token_fn on_text, void *user, slm_result *result);

/* Called once per sampled token (before its text is streamed) with the
 * token id and the milliseconds since slm_generate started: per-token
 * latency for benchmarks. NULL removes it. */
typedef void (*slm_token_observer)(void *user, int32_t token, double t_ms);
void slm_session_set_observer(slm_session *s, slm_token_observer fn, void *user);

/* Log-probabilities of the generated tokens, as OpenAI reports them: of the
 * model's distribution at temperature 1 before any sampling filter or
 * penalty (log-softmax of the raw logits, computed in double). Called once
 * per generated token that becomes part of the output (not for an
 * end-of-generation token that ends it), before its text is streamed, with
 * the token, its logprob and the n_top most likely tokens with theirs, best
 * first (ties by lower id). top_ids / top_logprobs are valid during the call
 * only. n_top is 0..SLM_MAX_TOP_LOGPROBS; computed only while a function is
 * set (one extra pass over the logits per token; nothing is allocated while
 * generating). NULL removes it. SLM_ERR_INVALID_ARG for an n_top out of
 * range, SLM_ERR_NOMEM when its buffer cannot be allocated. */
#define SLM_MAX_TOP_LOGPROBS 20
typedef void (*slm_token_info_fn)(void *user, int32_t token, float logprob, const int32_t *top_ids,
                                  const float *top_logprobs, int n_top);
slm_status slm_session_set_token_info(slm_session *s, slm_token_info_fn fn, void *user, int n_top);

/* ---- Chat ------------------------------------------------------------------ */
typedef struct slm_chat_message {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content; /* UTF-8 */
} slm_chat_message;

/* Renders a conversation with the model's own chat template (GGUF
 * tokenizer.chat_template) and tokenizes it: template text with control
 * tokens parsed, message content as plain text (so a user who types
 * "<|im_start|>" gets those characters, not the token). When the model has
 * no template or it cannot be rendered, a built-in format chosen from the
 * vocabulary is used; *format_used (may be NULL) names what was used:
 * "model" or the built-in's name. text/ids are malloc'd (either may be NULL
 * when not wanted). */
slm_status slm_chat_prompt(const slm_model *model, const slm_chat_message *msgs, size_t n_msgs,
                           int add_generation_prompt, char **text, size_t *text_len, int32_t **ids,
                           size_t *n_ids, const char **format_used);

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

/* ==== Quantization and quality (issue 4) ===================================
 * src/runtime/quantize.c, src/runtime/compare.c; docs/QUANTIZATION.md. */
typedef struct slm_quantize_params {
    const char *type;       /* "q8_0", "q4_k", "q4_k_m", "f16", ... (required) */
    const char *calib_text; /* calibration text or NULL: activation statistics */
    size_t calib_len;
    int32_t calib_ctx;       /* calibration window in tokens (0 = 128) */
    const char *stats_in;    /* statistics file to use instead of calib_text (or NULL) */
    const char *stats_out;   /* save the statistics collected from calib_text here */
    const char *const *keep; /* "PATTERN=TYPE" (fnmatch glob over tensor names), first wins */
    size_t n_keep;
    double budget_kl; /* > 0: pick a type per matrix within this mean KL (needs calib) */
    int32_t threads;  /* 0 = one per core */
    int progress;     /* a line per tensor on stderr */
    int no_ranges;    /* 1: do not store slm.activation_ranges */
    int gptq;         /* 1: GPTQ error-compensating rounding (needs calib_text) */
} slm_quantize_params;

typedef struct slm_quantize_tensor {
    const char *name;
    const char *type;   /* type written */
    const char *wanted; /* type the plan asked for; differs from `type` on fallback */
    int64_t n_cols, n_rows;
    uint64_t bytes;
    int calibrated; /* quantized with activation statistics */
} slm_quantize_tensor;

typedef struct slm_quantize_report {
    size_t n_tensors;
    slm_quantize_tensor *tensors; /* in file order */
    size_t n_fallbacks;
    uint64_t bytes_in, bytes_out; /* file sizes */
    double seconds;
    int calibrated;                                            /* statistics were used */
    double budget_kl, budget_predicted_kl, budget_measured_kl; /* when budget_kl > 0 */
    char *plan; /* "name=type,..." of the matrices, as stored in slm.quant.plan */
} slm_quantize_report;

/* Quantizes an F32/F16/BF16 GGUF model into `out` (written to a temporary
 * file and renamed into place; `in` is never modified). Refuses already
 * quantized input, unknown types, out == in and unwritable outputs before
 * touching anything. `report` may be NULL; free it with
 * slm_quantize_report_free. */
slm_status slm_quantize_file(const char *in, const char *out, const slm_quantize_params *p,
                             slm_quantize_report **report);
void slm_quantize_report_free(slm_quantize_report *r);

typedef struct slm_compare_result {
    double ppl_base, ppl_quant;
    double kl_mean, kl_p99, kl_max; /* KL(base || quant) of next-token distributions, nats */
    double top1;                    /* fraction of positions with the same argmax */
    int64_t n_scored, n_windows;
    uint64_t bytes_base, bytes_quant;   /* file sizes */
    double bpw_base, bpw_quant;         /* bits per weight of the 2-D matrices */
    double bpw_all_base, bpw_all_quant; /* bits per weight of all tensors */
} slm_compare_result;

/* Compares two models of the same vocabulary on `text` by the perplexity
 * protocol (windows of n_ctx tokens). cfg may be NULL (threads, providers). */
slm_status slm_compare_files(const char *base, const char *quant, const char *text, size_t len,
                             int32_t n_ctx, const slm_config *cfg, slm_compare_result *out);

/* Milliseconds slm_model_load spent quantizing for the config's "quant"
 * (0 when the file already held that precision). */
double slm_model_quant_load_ms(const slm_model *model);
/* ==== end of quantization ================================================ */

/* ==== Signatures (src/trust) ===============================================
 * Ed25519 (libsodium) over a small text header holding the file's size and
 * BLAKE2b-256 hash; detached, in FILE.sig. Formats: src/trust/trust.h and
 * docs/SECURITY.md. A key id is the first 8 bytes of the BLAKE2b-256 hash of
 * the public key, as 16 hex digits. */
#define SLM_KEY_ID_HEX 17 /* 16 hex digits + NUL */

typedef struct slm_verify_info {
    char key_id[SLM_KEY_ID_HEX];
    uint64_t file_size; /* bytes signed */
    int64_t created;    /* unix seconds, as the signer's clock said */
    char comment[257];
    double ms; /* time spent (hashing dominates) */
} slm_verify_info;

/* Writes OUT_BASE.key (secret, mode 0600) and OUT_BASE.pub; refuses to
 * overwrite either. key_id (may be NULL) receives the new key's id. */
slm_status slm_keygen(const char *out_base, char key_id[SLM_KEY_ID_HEX]);
/* Signs `path` with a secret key file, writing path.sig (temporary file
 * renamed into place). comment: NULL or up to 256 bytes, no control
 * characters. info (may be NULL) describes what was signed. */
slm_status slm_sign_file(const char *path, const char *key_path, const char *comment,
                         slm_verify_info *info);
/* Checks path against path.sig with one public key file (pub_path) or any
 * .pub file in trust_dir (exactly one is non-NULL). SLM_ERR_SIGNATURE with a
 * message naming the check: missing signature, malformed signature file,
 * unknown key, bad signature, size mismatch, hash mismatch. */
slm_status slm_verify_file(const char *path, const char *pub_path, const char *trust_dir,
                           slm_verify_info *info);
/* Milliseconds slm_model_load spent verifying the signature (0 when not
 * required). */
double slm_model_verify_ms(const slm_model *model);
/* ==== end of signatures ==================================================== */

/* ==== LoRA adapters (issue 8) ==============================================
 * src/model/lora.c, lora_peft.c, lora_merge.c; docs/LORA.md. Two formats:
 * - llama.cpp's GGUF adapter format (general.type "adapter", adapter.type
 *   "lora", adapter.lora.alpha, tensors "<base tensor>.lora_a" ne = [n_in, r]
 *   and ".lora_b" ne = [r, n_out], f32, f16 or bf16);
 * - Hugging Face PEFT: a directory with adapter_config.json ("r",
 *   "lora_alpha", "target_modules", optional "use_rslora", "rank_pattern",
 *   "alpha_pattern") and
 *   adapter_model.safetensors (F32, F16 or BF16 lora_A [r, in] and lora_B
 *   [out, r] of model.layers.N.self_attn.{q,k,v,o}_proj and
 *   mlp.{gate,up,down}_proj), given as the directory or either file's path.
 *   For llama models the rows of q/k lora_B are permuted as llama.cpp's
 *   converter permutes q/k; qwen2 needs none. Refused with a clear error:
 *   bias other than "none", use_dora, modules_to_save, lora_bias, duplicate
 *   config keys, pattern keys in Python-only regex syntax, any other target
 *   (embed_tokens, lm_head).
 * Targets: any of the layers' attn_q/k/v/output and ffn_gate/up/down
 * matrices. Applied at run time beside the base weights (which are never
 * modified, whatever their type): y = W·x + s·B·(A·x) with
 * s = scale·alpha/r (scale·alpha/sqrt(r) for rsLoRA).
 * Config key "adapters": [{"path": "a.gguf", "scale": 1.0}, ...] or
 * ["a.gguf", ...] (scale 1): slm_session_new loads and applies them (with
 * "require_signature", each adapter needs a valid signature by a key in
 * "trust_dir", as models do: ADAPTER.gguf.sig, or for PEFT both
 * adapter_model.safetensors.sig and adapter_config.json.sig;
 * slm_adapter_load itself checks no signature). */
typedef struct slm_adapter slm_adapter;

/* Loads an adapter for `base` (GGUF file, or PEFT directory / .safetensors /
 * adapter_config.json path): every target must exist in the base model with
 * matching shapes; failures name the file and the tensor. The adapter is
 * read-only (A and B held as f32; the files are closed) and may be shared by
 * any sessions of models with the same shapes; free it after them. */
slm_status slm_adapter_load(const slm_model *base, const char *path, slm_adapter **out);
void slm_adapter_free(slm_adapter *adapter);
/* Makes the session apply adapters[0..n) with their scales (scale 0 = not
 * applied: exactly the base model), replacing the adapters it applied
 * before (n = 0: none). No model reload or re-mapping. The session's cache
 * was computed with the old adapters: the next generation recomputes its
 * prompt. At most 8 adapters. */
slm_status slm_session_set_adapters(slm_session *s, const slm_adapter *const *adapters,
                                    const float *scales, size_t n);
/* Writes a model with the adapter baked in, W' = W + s·B·A: each targeted
 * matrix is dequantized, summed in f32 and stored as `type` (NULL or "" =
 * its type in base); everything else is copied. Temporary file renamed into
 * place; out must differ from base. */
slm_status slm_adapter_merge_file(const char *base, const char *adapter, const char *out,
                                  float scale, const char *type);
/* Same; trust_dir non-NULL: the base model and the adapter (both PEFT files)
 * must carry valid signatures by a key in trust_dir, checked on the bytes
 * that are merged, before anything is written (SLM_ERR_SIGNATURE otherwise). */
slm_status slm_adapter_merge_file_ex(const char *base, const char *adapter, const char *out,
                                     float scale, const char *type, const char *trust_dir);
/* ==== end of LoRA adapters ================================================= */

/* ==== Hybrid deployment (issue 10) =========================================
 * src/hybrid/; docs/HYBRID.md. Local first; a request goes to an
 * OpenAI-compatible cloud only when the router escalates it and the egress
 * policy allows it; any cloud failure completes the request with the local
 * answer, marked degraded. Config keys: "mode" ("local" | "hybrid"),
 * "cloud", "router", "policy", "audit_log" (docs/HYBRID.md). In "local" mode
 * no network connection is ever opened, whatever else the config says. */
typedef struct slm_hybrid slm_hybrid;

typedef enum slm_route {
    SLM_ROUTE_AUTO = 0,  /* the router decides */
    SLM_ROUTE_LOCAL = 1, /* override: stay local */
    SLM_ROUTE_CLOUD = 2  /* override: ask the cloud (the egress policy still applies) */
} slm_route;

typedef struct slm_hybrid_request {
    const slm_chat_message *msgs; /* a conversation (the model's chat template), or NULL */
    size_t n_msgs;
    const char *prompt; /* a plain prompt when msgs is NULL */
    size_t prompt_len;
    slm_route route;
    double deadline_ms; /* the whole request, from the call; 0 = router.deadline_ms */
    int stream_cloud;   /* 1: ask the cloud to stream (text reaches on_text as it arrives) */
} slm_hybrid_request;

#define SLM_HYBRID_REASON_CAP 160
#define SLM_HYBRID_CAUSE_CAP 32

typedef struct slm_hybrid_result {
    const char *route; /* "local" or "cloud": where the router sent the request */
    /* why: "mode_local", "default", "confident", "override", "rule:<name>",
     * "context_overflow", "low_confidence", "policy_block:<classes>" */
    char reason[SLM_HYBRID_REASON_CAP];
    int degraded; /* route "cloud", but the cloud failed: the local model answered */
    char degraded_cause[SLM_HYBRID_CAUSE_CAP]; /* "refused", "timeout", "http_5xx", ... or "" */
    char degraded_detail[256];                 /* a line for logs (no secrets, no prompt text) */
    int cloud_partial; /* cloud text was streamed before the failure; the local model finished */
    int32_t prompt_tokens, completion_tokens; /* usage of the answer (local token counts
                                                 where the cloud reported none) */
    slm_finish finish;
    double mean_logprob; /* over the confidence window when it was checked, else 0 */
    double ms;           /* the whole call */
} slm_hybrid_result;

/* A router over `model` (which must outlive it) from cfg's hybrid keys
 * (NULL = local mode). Reads the cloud API key (api_key_env / api_key_file)
 * now: SLM_ERR_CONFIG when it is named but missing. Thread-safe: any number
 * of sessions may use one router at once. */
slm_status slm_hybrid_new(slm_model *model, const slm_config *cfg, slm_hybrid **out);
void slm_hybrid_free(slm_hybrid *h);
/* 1 when the config's mode is "hybrid". */
int slm_hybrid_enabled(const slm_hybrid *h);
/* Answers one request: routes it, streams the answer's text to on_text
 * (may be NULL; non-zero stops everything, finish SLM_FINISH_CALLBACK) and
 * fills *res. Local generation runs on `s` (its sampling settings and
 * max_tokens apply to the cloud request too); the session's token-info hook
 * is borrowed during the call and restored after. Never returns an empty
 * answer because of the cloud: failures fall back to the local model within
 * the deadline. Errors are local ones (tokenizer, context, memory). */
slm_status slm_hybrid_generate(slm_hybrid *h, slm_session *s, const slm_hybrid_request *req,
                               slm_token_fn on_text, void *user, slm_hybrid_result *res);
/* The result as a JSON object {"text" (when text is not NULL), "route",
 * "reason", "degraded", "degraded_cause" (null unless degraded),
 * "cloud_partial" (when degraded), "usage": {"prompt_tokens",
 * "completion_tokens", "total_tokens"}}. malloc'd. */
char *slm_hybrid_result_json(const slm_hybrid_result *res, const char *text, size_t len);
/* ==== end of hybrid deployment ============================================= */

/* ==== Structured output: grammars and JSON Schema (issue 7) ================
 * Config keys (also accepted per request by slm_session_configure; the last
 * one applied wins; a grammar that does not compile is SLM_ERR_CONFIG naming
 * the key, with the line and column or the schema path of the problem):
 *   "grammar": "GBNF text"         llama.cpp's GBNF; the start rule is `root`
 *   "json_schema": {schema}        JSON that validates against the schema
 *   "json_object": true            any JSON object
 *   "response_format": {...}       OpenAI's shape: {"type": "text"} |
 *                                  {"type": "json_object"} | {"type": "json_schema",
 *                                  "json_schema": {"name", "schema", "strict"}}
 *   null (or "grammar": "") turns constraining off.
 * Grammar or schema text is kept in the config (at most 32 KiB). While one
 * is set, slm_generate masks the logits before sampling so that every token
 * keeps the output a prefix of the language: end-of-generation is allowed
 * only when the output is complete, and generation stops (SLM_FINISH_STOP)
 * once nothing more can follow. max_tokens can still cut the output short
 * (SLM_FINISH_LENGTH). Logprobs (slm_session_set_token_info) report the
 * model's unmasked distribution. Supported schema keywords: docs/STRUCTURED.md. */

/* The GBNF a JSON Schema compiles to (malloc'd; free()). SLM_ERR_CONFIG names
 * an unsupported keyword and its path, e.g. "/properties/tags: 'uniqueItems'". */
slm_status slm_json_schema_to_grammar(const char *schema, size_t len, char **gbnf);
/* Checks GBNF text: SLM_OK or SLM_ERR_CONFIG with "line L col C: ...". */
slm_status slm_grammar_check(const char *gbnf, size_t len);
/* ==== end of structured output ============================================= */

/* ==== Intent detection and embeddings (issue 7) ============================
 * src/runtime/classify.c, src/runtime/embed.c; docs/INTENT.md.
 *
 * Label scoring: the prompt is the template with "{text}" replaced by the
 * text and "{labels}" by the labels joined with ", " (the template must hold
 * "{text}"; NULL = SLM_CLASSIFY_DEFAULT_TEMPLATE). A label's continuation is
 * " " + label: prompt + " " + label is tokenized as a whole (BOS as the model
 * adds it, never a trailing EOS) and the label's tokens are those after the
 * longest common prefix with the prompt's own tokens (so a token that merges
 * across the boundary belongs to the label). Each label's score is the mean log-probability of
 * its tokens (every token, from the model's distribution at temperature 1,
 * computed in double); the probabilities are the softmax of the scores over
 * the labels, so they sum to 1. The prompt is evaluated once; each label
 * reuses its keys and values and evaluates only its own tokens. The
 * session's sampling settings play no part. */
#define SLM_CLASSIFY_DEFAULT_TEMPLATE "Classify the text as one of: {labels}.\nText: {text}\nLabel:"
#define SLM_CLASSIFY_MAX_LABELS 1024

typedef struct slm_label_score {
    const char *label;   /* the caller's string (not copied) */
    size_t index;        /* its position in the caller's list */
    int32_t n_tokens;    /* tokens of the continuation */
    double logprob;      /* sum of their log-probabilities */
    double mean_logprob; /* logprob / n_tokens: the score */
    double probability;  /* softmax of the scores over the labels */
} slm_label_score;

typedef struct slm_classify_result {
    slm_label_score *labels; /* [n_labels], best first (ties: earlier label first) */
    size_t n_labels;
    int32_t n_prompt_tokens; /* tokens of the prompt */
    int32_t n_label_tokens;  /* label tokens scored, all labels */
    int32_t n_evaluated;     /* tokens run through the model (cached ones not counted) */
} slm_classify_result;

/* The prompt a template makes (malloc'd, NUL-terminated). SLM_ERR_INVALID_ARG
 * when the template lacks "{text}". */
slm_status slm_classify_prompt(const char *tmpl, const char *text, size_t len,
                               const char *const *labels, size_t n_labels, char **prompt,
                               size_t *prompt_len);
/* Scores labels[0..n_labels) for `text` (see above). Labels must be
 * non-empty, distinct, at most SLM_CLASSIFY_MAX_LABELS; SLM_ERR_CONTEXT when
 * the prompt and a label do not fit the session's context. Free *out with
 * slm_classify_result_free. */
slm_status slm_classify(slm_session *s, const char *text, size_t len, const char *const *labels,
                        size_t n_labels, const char *tmpl, slm_classify_result *out);
/* Same, with the prompt given whole (no template). */
slm_status slm_classify_raw(slm_session *s, const char *prompt, size_t len,
                            const char *const *labels, size_t n_labels, slm_classify_result *out);
void slm_classify_result_free(slm_classify_result *r);

/* Embeddings of a decoder model: the final hidden states (after the output
 * norm, before the output projection) of the input's positions, pooled,
 * then L2-normalized unless `normalize` is 0. Text is tokenized with BOS (and
 * EOS) as the model's tokenizer adds them; every position takes part in mean
 * pooling. out: [slm_embedding_dim] floats. The session's cache holds the
 * input afterwards. These are not the vectors of a model trained for
 * embeddings; see docs/INTENT.md. */
typedef enum slm_pooling { SLM_POOLING_MEAN = 0, SLM_POOLING_LAST = 1 } slm_pooling;

int32_t slm_embedding_dim(const slm_model *model);
slm_status slm_embed(slm_session *s, const char *text, size_t len, slm_pooling pooling,
                     int normalize, float *out, int32_t *n_tokens);
/* Same over token ids (used as given: no BOS is added). */
slm_status slm_embed_tokens(slm_session *s, const int32_t *ids, size_t n_ids, slm_pooling pooling,
                            int normalize, float *out);
/* ==== end of intent detection and embeddings =============================== */

#ifdef __cplusplus
}
#endif
#endif
