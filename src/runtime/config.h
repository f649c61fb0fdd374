/* The runtime config: defaults, then JSON objects applied in order. */
#ifndef SLM_RUNTIME_CONFIG_H
#define SLM_RUNTIME_CONFIG_H

#include <stdint.h>

#include "base/mmap_file.h"
#include "slm.h"

#define SLM_MAX_STOP 16
#define SLM_MAX_STOP_LEN 256
#define SLM_MAX_PROVIDERS 8
#define SLM_MAX_CONFIG_BYTES (1u << 20)
#define SLM_MAX_TRUST_DIR 1024
#define SLM_MAX_ADAPTERS 8 /* = SLM_LORA_MAX_ADAPTERS */
#define SLM_MAX_ADAPTER_PATH 1024
#define SLM_MAX_GRAMMAR_TEXT 32768 /* "grammar" text or "json_schema" as compact JSON */

/* Constrained output (issue 7): what "grammar", "json_schema" and
 * "json_object" set; the last one applied wins. */
enum {
    SLM_GRAMMAR_NONE = 0,
    SLM_GRAMMAR_GBNF = 1,
    SLM_GRAMMAR_JSON_SCHEMA = 2,
    SLM_GRAMMAR_JSON_OBJECT = 3
};

typedef enum slm_ctx_policy { SLM_CTX_SHIFT = 0, SLM_CTX_ERROR = 1 } slm_ctx_policy;
typedef enum slm_mode { SLM_MODE_LOCAL = 0, SLM_MODE_HYBRID = 1 } slm_mode;
#define SLM_MAX_HYBRID_JSON 16384 /* a validated hybrid section, as JSON text */
#define SLM_MAX_AUDIT_PATH 1024

struct slm_config {
    int32_t max_tokens;      /* tokens to generate */
    float temperature;       /* 0 = greedy */
    int32_t top_k;           /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off */
    int32_t repeat_last_n;   /* window the penalties look at */
    float presence_penalty;  /* OpenAI's, -2..2, 0 = off */
    float frequency_penalty; /* OpenAI's, -2..2, 0 = off */
    uint64_t seed;
    int32_t n_stop;
    char stop[SLM_MAX_STOP][SLM_MAX_STOP_LEN + 1];
    int32_t threads;       /* 0 = one per core */
    int32_t n_ctx;         /* 0 = the model's, capped at SLM_DEFAULT_MAX_CTX */
    int32_t n_keep;        /* tokens kept at the start when trimming; -1 = the BOS only */
    int32_t n_batch;       /* prefill batch */
    char quant[16];        /* "" = as stored */
    slm_file_mode weights; /* "weights": how slm_model_load holds the file (auto, map, copy) */
    int kv_f32;            /* "kv_cache": 0 = "f16" (the default), 1 = "f32" */
    int32_t n_providers;
    char providers[SLM_MAX_PROVIDERS][16];
    slm_ctx_policy context_policy;
    int ignore_eos;        /* keep generating past end-of-generation tokens (benchmarks) */
    int require_signature; /* refuse models without a valid signature by a trusted key */
    char trust_dir[SLM_MAX_TRUST_DIR + 1]; /* directory of trusted .pub files */
    int32_t n_adapters;                    /* LoRA adapters slm_session_new loads and applies */
    char adapter_path[SLM_MAX_ADAPTERS][SLM_MAX_ADAPTER_PATH + 1];
    float adapter_scale[SLM_MAX_ADAPTERS];
    /* hybrid deployment (issue 10; src/hybrid): the sections are kept as
     * validated JSON text so that the config stays copyable by value */
    slm_mode mode;
    char hy_cloud[SLM_MAX_HYBRID_JSON];  /* "cloud" object or "" */
    char hy_router[SLM_MAX_HYBRID_JSON]; /* "router" object or "" */
    char hy_policy[SLM_MAX_HYBRID_JSON]; /* "policy" object or "" */
    char hy_audit_log[SLM_MAX_AUDIT_PATH + 1];
    int grammar_kind;                       /* SLM_GRAMMAR_* (issue 7) */
    char grammar[SLM_MAX_GRAMMAR_TEXT + 1]; /* GBNF text or the schema as JSON */
};

#define SLM_DEFAULT_MAX_CTX 4096

void slm_config_defaults(slm_config *cfg);

#endif
