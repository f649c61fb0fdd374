/* The hybrid sections of the runtime config ("cloud", "router"), parsed and
 * validated. src/runtime/config.c calls hy_config_check for each hybrid key
 * and keeps the validated JSON text; slm_hybrid_new parses that text again
 * into these structs. Errors name the key path, e.g. "cloud.timeout_ms". */
#ifndef SLM_HYBRID_HY_CONFIG_H
#define SLM_HYBRID_HY_CONFIG_H

#include <stdint.h>

#include "hybrid/breaker.h"
#include "slm.h"

typedef struct cJSON cJSON;

#define HY_MAX_URL 1024
#define HY_MAX_NAME 256
#define HY_MAX_PATH 1024
#define HY_MAX_RULES 32
#define HY_MAX_KEYWORDS 64
#define HY_MAX_RULE_NAME 64

typedef struct hy_cloud_cfg {
    char base_url[HY_MAX_URL]; /* e.g. "https://api.openai.com/v1" */
    char model[HY_MAX_NAME];
    char api_key_env[HY_MAX_NAME];  /* name of an environment variable, or "" */
    char api_key_file[HY_MAX_PATH]; /* path of a file holding the key, or "" */
    double connect_timeout_ms;      /* default 2000 */
    double first_byte_timeout_ms;   /* default 10000 */
    double timeout_ms;              /* the whole cloud attempt, retries included; default 30000 */
    int retries;                    /* extra attempts after the first; default 1 */
    double backoff_ms;              /* base of the exponential backoff; default 200 */
    double backoff_max_ms;          /* cap; default 5000 */
    hy_breaker_params breaker;      /* failures 3, open_ms 30000 */
    int insecure_skip_verify;       /* testing only; loud on stderr whenever used */
} hy_cloud_cfg;

typedef struct hy_rule {
    char name[HY_MAX_RULE_NAME];
    void *re; /* pcre2_code (8-bit), or NULL */
    int n_keywords;
    char *keywords[HY_MAX_KEYWORDS]; /* lower-case; matched case-insensitively */
    int to_cloud;                    /* 1: "route": "cloud", 0: "local" */
} hy_rule;

typedef struct hy_router_cfg {
    int32_t max_prompt_tokens; /* 0: the local context less the answer's max_tokens */
    int32_t conf_tokens;       /* K; 0 = no confidence check */
    double min_mean_logprob;   /* escalate when the mean over K tokens is below */
    double deadline_ms;        /* whole request; default 60000 */
    int n_rules;
    hy_rule rules[HY_MAX_RULES];
} hy_router_cfg;

void hy_cloud_cfg_defaults(hy_cloud_cfg *c);
/* Parses the "cloud" object (NULL: defaults; base_url then ""). */
slm_status hy_cloud_cfg_parse(const cJSON *o, hy_cloud_cfg *out);
/* Parses the "router" object (NULL: defaults); free with hy_router_cfg_free. */
slm_status hy_router_cfg_parse(const cJSON *o, hy_router_cfg *out);
void hy_router_cfg_free(hy_router_cfg *r);

/* Validates one top-level hybrid key of the runtime config ("cloud",
 * "router", "policy", "audit_log"); SLM_ERR_CONFIG naming the key path. */
slm_status hy_config_check(const char *key, const cJSON *value);

#endif
