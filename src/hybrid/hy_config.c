/* Validation and parsing of the "cloud" and "router" config sections. */
#include "hybrid/hy_config.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "hybrid/policy.h"

void hy_cloud_cfg_defaults(hy_cloud_cfg *c) {
    memset(c, 0, sizeof *c);
    c->connect_timeout_ms = 2000;
    c->first_byte_timeout_ms = 10000;
    c->timeout_ms = 30000;
    c->retries = 1;
    c->backoff_ms = 200;
    c->backoff_max_ms = 5000;
    c->breaker.failures = 3;
    c->breaker.open_ms = 30000;
}

static slm_status num(const char *path, const cJSON *it, double lo, double hi, int integer,
                      double *out) {
    if (!cJSON_IsNumber(it))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected a number", path);
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': %g is out of range [%g, %g]", path, v, lo,
                        hi);
    if (integer && floor(v) != v)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected an integer, got %g", path, v);
    *out = v;
    return SLM_OK;
}

static slm_status str(const char *path, const cJSON *it, char *dst, size_t cap) {
    if (!cJSON_IsString(it))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected a string", path);
    size_t n = strlen(it->valuestring);
    if (n >= cap)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': longer than %zu bytes", path, cap - 1);
    memcpy(dst, it->valuestring, n + 1);
    return SLM_OK;
}

static slm_status want_object(const char *path, const cJSON *o) {
    if (!cJSON_IsObject(o))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected an object", path);
    return SLM_OK;
}

static slm_status parse_breaker(const cJSON *o, hy_breaker_params *b) {
    SLM_TRY(want_object("cloud.breaker", o));
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        double v = 0;
        if (!strcmp(it->string, "failures")) {
            SLM_TRY(num("cloud.breaker.failures", it, 1, 1000, 1, &v));
            b->failures = (int)v;
        } else if (!strcmp(it->string, "open_ms")) {
            SLM_TRY(num("cloud.breaker.open_ms", it, 0, 86400e3, 0, &v));
            b->open_ms = v;
        } else {
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'cloud.breaker.%s' is not known (expected \"failures\", "
                            "\"open_ms\")",
                            it->string);
        }
    }
    return SLM_OK;
}

slm_status hy_cloud_cfg_parse(const cJSON *o, hy_cloud_cfg *out) {
    hy_cloud_cfg c;
    hy_cloud_cfg_defaults(&c);
    if (o) {
        SLM_TRY(want_object("cloud", o));
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
            const char *k = it->string;
            double v = 0;
            if (!strcmp(k, "base_url")) {
                SLM_TRY(str("cloud.base_url", it, c.base_url, sizeof c.base_url));
                if (strncmp(c.base_url, "http://", 7) && strncmp(c.base_url, "https://", 8))
                    return slm_fail(SLM_ERR_CONFIG,
                                    "config key 'cloud.base_url': \"%s\" is not an http:// or "
                                    "https:// URL",
                                    c.base_url);
                for (const char *p = c.base_url; *p; p++)
                    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
                        return slm_fail(SLM_ERR_CONFIG,
                                        "config key 'cloud.base_url': spaces or control "
                                        "characters in the URL");
            } else if (!strcmp(k, "model")) {
                SLM_TRY(str("cloud.model", it, c.model, sizeof c.model));
            } else if (!strcmp(k, "api_key")) {
                return slm_fail(SLM_ERR_CONFIG,
                                "config key 'cloud.api_key': API keys are never taken from the "
                                "config text; use cloud.api_key_env (the name of an environment "
                                "variable) or cloud.api_key_file (a file holding the key)");
            } else if (!strcmp(k, "api_key_env")) {
                SLM_TRY(str("cloud.api_key_env", it, c.api_key_env, sizeof c.api_key_env));
                for (const char *p = c.api_key_env; *p; p++)
                    if (!(isalnum((unsigned char)*p) || *p == '_'))
                        return slm_fail(SLM_ERR_CONFIG,
                                        "config key 'cloud.api_key_env': expected the name of an "
                                        "environment variable (letters, digits, _)");
            } else if (!strcmp(k, "api_key_file")) {
                SLM_TRY(str("cloud.api_key_file", it, c.api_key_file, sizeof c.api_key_file));
            } else if (!strcmp(k, "connect_timeout_ms")) {
                SLM_TRY(num("cloud.connect_timeout_ms", it, 1, 600e3, 0, &v));
                c.connect_timeout_ms = v;
            } else if (!strcmp(k, "first_byte_timeout_ms")) {
                SLM_TRY(num("cloud.first_byte_timeout_ms", it, 1, 3600e3, 0, &v));
                c.first_byte_timeout_ms = v;
            } else if (!strcmp(k, "timeout_ms")) {
                SLM_TRY(num("cloud.timeout_ms", it, 1, 3600e3, 0, &v));
                c.timeout_ms = v;
            } else if (!strcmp(k, "retries")) {
                SLM_TRY(num("cloud.retries", it, 0, 10, 1, &v));
                c.retries = (int)v;
            } else if (!strcmp(k, "backoff_ms")) {
                SLM_TRY(num("cloud.backoff_ms", it, 0, 600e3, 0, &v));
                c.backoff_ms = v;
            } else if (!strcmp(k, "backoff_max_ms")) {
                SLM_TRY(num("cloud.backoff_max_ms", it, 0, 600e3, 0, &v));
                c.backoff_max_ms = v;
            } else if (!strcmp(k, "breaker")) {
                SLM_TRY(parse_breaker(it, &c.breaker));
            } else if (!strcmp(k, "insecure_skip_verify")) {
                if (!cJSON_IsBool(it))
                    return slm_fail(SLM_ERR_CONFIG,
                                    "config key 'cloud.insecure_skip_verify': expected true or "
                                    "false");
                c.insecure_skip_verify = cJSON_IsTrue(it);
            } else {
                return slm_fail(SLM_ERR_CONFIG,
                                "config key 'cloud.%s' is not known (expected base_url, model, "
                                "api_key_env, api_key_file, connect_timeout_ms, "
                                "first_byte_timeout_ms, timeout_ms, retries, backoff_ms, "
                                "backoff_max_ms, breaker, insecure_skip_verify)",
                                k);
            }
        }
        if (c.api_key_env[0] && c.api_key_file[0])
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'cloud.api_key_file': give either api_key_env or "
                            "api_key_file, not both");
    }
    *out = c;
    return SLM_OK;
}

void hy_router_cfg_free(hy_router_cfg *r) {
    if (!r) return;
    for (int i = 0; i < r->n_rules; i++) {
        if (r->rules[i].re) pcre2_code_free((pcre2_code *)r->rules[i].re);
        for (int k = 0; k < r->rules[i].n_keywords; k++) free(r->rules[i].keywords[k]);
    }
    r->n_rules = 0;
}

static slm_status parse_rule(const cJSON *o, int idx, hy_rule *rule) {
    char path[64];
    snprintf(path, sizeof path, "router.rules[%d]", idx);
    if (!cJSON_IsObject(o))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key '%s': expected an object {\"name\", \"regex\" or "
                        "\"keywords\", \"route\"}",
                        path);
    memset(rule, 0, sizeof *rule);
    snprintf(rule->name, sizeof rule->name, "rule%d", idx + 1);
    rule->to_cloud = 1;
    const cJSON *regex = NULL, *keywords = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        const char *k = it->string;
        char kp[96];
        snprintf(kp, sizeof kp, "%s.%s", path, k);
        if (!strcmp(k, "name")) {
            SLM_TRY(str(kp, it, rule->name, sizeof rule->name));
            if (!rule->name[0]) return slm_fail(SLM_ERR_CONFIG, "config key '%s': empty name", kp);
            for (const char *p = rule->name; *p; p++)
                if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.'))
                    return slm_fail(SLM_ERR_CONFIG,
                                    "config key '%s': use letters, digits, '_', '-' or '.'", kp);
        } else if (!strcmp(k, "regex")) {
            if (!cJSON_IsString(it) || !it->valuestring[0])
                return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected a regular expression",
                                kp);
            regex = it;
        } else if (!strcmp(k, "keywords")) {
            if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) == 0)
                return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected an array of words", kp);
            keywords = it;
        } else if (!strcmp(k, "route")) {
            if (!cJSON_IsString(it) ||
                (strcmp(it->valuestring, "cloud") && strcmp(it->valuestring, "local")))
                return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected \"cloud\" or \"local\"",
                                kp);
            rule->to_cloud = !strcmp(it->valuestring, "cloud");
        } else {
            return slm_fail(SLM_ERR_CONFIG,
                            "config key '%s' is not known (expected name, regex, keywords, "
                            "route)",
                            kp);
        }
    }
    if (!regex == !keywords)
        return slm_fail(SLM_ERR_CONFIG,
                        "config key '%s': give exactly one of \"regex\" and "
                        "\"keywords\"",
                        path);
    if (regex) {
        int err = 0;
        PCRE2_SIZE off = 0;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)regex->valuestring, PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return slm_fail(SLM_ERR_CONFIG, "config key '%s.regex': %s at offset %zu", path,
                            (const char *)msg, (size_t)off);
        }
        rule->re = re;
    } else {
        const cJSON *w;
        cJSON_ArrayForEach(w, keywords) {
            if (rule->n_keywords >= HY_MAX_KEYWORDS || !cJSON_IsString(w) || !w->valuestring[0] ||
                strlen(w->valuestring) > 256) {
                for (int k = 0; k < rule->n_keywords; k++) free(rule->keywords[k]);
                rule->n_keywords = 0;
                return slm_fail(SLM_ERR_CONFIG,
                                "config key '%s.keywords': expected at most %d non-empty words "
                                "of at most 256 bytes",
                                path, HY_MAX_KEYWORDS);
            }
            char *lw = strdup(w->valuestring);
            if (!lw) return slm_fail(SLM_ERR_NOMEM, "out of memory");
            for (char *p = lw; *p; p++) *p = (char)tolower((unsigned char)*p);
            rule->keywords[rule->n_keywords++] = lw;
        }
    }
    return SLM_OK;
}

static slm_status parse_confidence(const cJSON *o, hy_router_cfg *r) {
    SLM_TRY(want_object("router.confidence", o));
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        double v = 0;
        if (!strcmp(it->string, "tokens")) {
            SLM_TRY(num("router.confidence.tokens", it, 0, 4096, 1, &v));
            r->conf_tokens = (int32_t)v;
        } else if (!strcmp(it->string, "min_mean_logprob")) {
            SLM_TRY(num("router.confidence.min_mean_logprob", it, -1000, 0, 0, &v));
            r->min_mean_logprob = v;
        } else {
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'router.confidence.%s' is not known (expected "
                            "\"tokens\", \"min_mean_logprob\")",
                            it->string);
        }
    }
    return SLM_OK;
}

slm_status hy_router_cfg_parse(const cJSON *o, hy_router_cfg *out) {
    hy_router_cfg r;
    memset(&r, 0, sizeof r);
    r.deadline_ms = 60000;
    r.min_mean_logprob = -2.5;
    slm_status st = SLM_OK;
    if (o) {
        SLM_TRY(want_object("router", o));
        const cJSON *it;
        cJSON_ArrayForEach(it, o) {
            const char *k = it->string;
            double v = 0;
            if (!strcmp(k, "max_prompt_tokens")) {
                st = num("router.max_prompt_tokens", it, 0, 1 << 24, 1, &v);
                r.max_prompt_tokens = (int32_t)v;
            } else if (!strcmp(k, "confidence")) {
                st = parse_confidence(it, &r);
            } else if (!strcmp(k, "deadline_ms")) {
                st = num("router.deadline_ms", it, 1, 86400e3, 0, &v);
                r.deadline_ms = v;
            } else if (!strcmp(k, "rules")) {
                if (!cJSON_IsArray(it)) {
                    st = slm_fail(SLM_ERR_CONFIG, "config key 'router.rules': expected an array");
                } else if (cJSON_GetArraySize(it) > HY_MAX_RULES) {
                    st = slm_fail(SLM_ERR_CONFIG, "config key 'router.rules': more than %d rules",
                                  HY_MAX_RULES);
                } else {
                    hy_router_cfg_free(&r);
                    const cJSON *e;
                    int i = 0;
                    cJSON_ArrayForEach(e, it) {
                        st = parse_rule(e, i, &r.rules[i]);
                        if (st != SLM_OK) break;
                        r.n_rules = ++i;
                    }
                }
            } else {
                st = slm_fail(SLM_ERR_CONFIG,
                              "config key 'router.%s' is not known (expected max_prompt_tokens, "
                              "confidence, rules, deadline_ms)",
                              k);
            }
            if (st != SLM_OK) break;
        }
    }
    if (st != SLM_OK) {
        hy_router_cfg_free(&r);
        return st;
    }
    *out = r;
    return SLM_OK;
}

slm_status hy_config_check(const char *key, const cJSON *value) {
    if (!strcmp(key, "cloud")) {
        hy_cloud_cfg c;
        return hy_cloud_cfg_parse(value, &c);
    }
    if (!strcmp(key, "router")) {
        hy_router_cfg *r = malloc(sizeof *r);
        if (!r) return slm_fail(SLM_ERR_NOMEM, "out of memory");
        slm_status st = hy_router_cfg_parse(value, r);
        if (st == SLM_OK) hy_router_cfg_free(r);
        free(r);
        return st;
    }
    if (!strcmp(key, "policy")) {
        if (!cJSON_IsObject(value))
            return slm_fail(SLM_ERR_CONFIG, "config key 'policy': expected an object");
        hy_policy *p = NULL;
        SLM_TRY(hy_policy_new(value, &p));
        hy_policy_free(p);
        return SLM_OK;
    }
    if (!strcmp(key, "audit_log")) {
        if (!cJSON_IsString(value) || !value->valuestring[0])
            return slm_fail(SLM_ERR_CONFIG, "config key 'audit_log': expected a file path");
        if (strlen(value->valuestring) >= HY_MAX_PATH)
            return slm_fail(SLM_ERR_CONFIG, "config key 'audit_log': longer than %d bytes",
                            HY_MAX_PATH - 1);
        return SLM_OK;
    }
    return slm_fail(SLM_ERR_CONFIG, "config key '%s' is not known", key);
}
