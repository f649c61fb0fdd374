/* JSON runtime config: every key validated, errors name the key. */
#include "runtime/config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "hybrid/hy_config.h"
#include "runtime/constrain.h"

void slm_config_defaults(slm_config *c) {
    memset(c, 0, sizeof *c);
    c->max_tokens = 128;
    c->temperature = 0.8f;
    c->top_k = 40;
    c->top_p = 0.95f;
    c->min_p = 0.05f;
    c->repeat_penalty = 1.0f;
    c->repeat_last_n = 64;
    c->seed = 0;
    c->threads = 0;
    c->n_ctx = 0;
    c->n_keep = -1;
    c->n_batch = 256;
    c->weights = SLM_FILE_AUTO;
    c->context_policy = SLM_CTX_SHIFT;
}

slm_status slm_config_new(slm_config **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_config_new: out is NULL");
    *out = malloc(sizeof **out);
    if (!*out) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    slm_config_defaults(*out);
    return SLM_OK;
}

void slm_config_free(slm_config *cfg) {
    free(cfg);
}

static slm_status want_number(const cJSON *it, double lo, double hi, int integer, double *out) {
    if (!cJSON_IsNumber(it))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected a number", it->string);
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': %g is out of range [%g, %g]", it->string,
                        v, lo, hi);
    if (integer && floor(v) != v)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected an integer, got %g", it->string,
                        v);
    *out = v;
    return SLM_OK;
}

static slm_status want_string(const cJSON *it, char *dst, size_t cap) {
    if (!cJSON_IsString(it))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': expected a string", it->string);
    size_t n = strlen(it->valuestring);
    if (n >= cap)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': longer than %zu bytes", it->string,
                        cap - 1);
    memcpy(dst, it->valuestring, n + 1);
    return SLM_OK;
}

static slm_status apply_stop(slm_config *c, const cJSON *it) {
    slm_config tmp = *c;
    tmp.n_stop = 0;
    if (cJSON_IsString(it)) {
        SLM_TRY(want_string(it, tmp.stop[0], sizeof tmp.stop[0]));
        tmp.n_stop = tmp.stop[0][0] ? 1 : 0;
    } else if (cJSON_IsArray(it)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, it) {
            if (tmp.n_stop >= SLM_MAX_STOP)
                return slm_fail(SLM_ERR_CONFIG, "config key 'stop': more than %d strings",
                                SLM_MAX_STOP);
            if (!cJSON_IsString(e))
                return slm_fail(SLM_ERR_CONFIG, "config key 'stop': expected strings");
            size_t n = strlen(e->valuestring);
            if (n > SLM_MAX_STOP_LEN)
                return slm_fail(SLM_ERR_CONFIG, "config key 'stop': a string is longer than %d",
                                SLM_MAX_STOP_LEN);
            if (n == 0) continue;
            memcpy(tmp.stop[tmp.n_stop++], e->valuestring, n + 1);
        }
    } else {
        return slm_fail(SLM_ERR_CONFIG, "config key 'stop': expected a string or an array");
    }
    memcpy(c->stop, tmp.stop, sizeof c->stop);
    c->n_stop = tmp.n_stop;
    return SLM_OK;
}

static slm_status apply_providers(slm_config *c, const cJSON *it) {
    if (!cJSON_IsArray(it))
        return slm_fail(SLM_ERR_CONFIG, "config key 'providers': expected an array of names");
    char names[SLM_MAX_PROVIDERS][16];
    int32_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        if (n >= SLM_MAX_PROVIDERS)
            return slm_fail(SLM_ERR_CONFIG, "config key 'providers': more than %d names",
                            SLM_MAX_PROVIDERS);
        if (!cJSON_IsString(e) || !e->valuestring[0] || strlen(e->valuestring) >= 16)
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'providers': expected provider names such as \"avx2\"");
        memcpy(names[n++], e->valuestring, strlen(e->valuestring) + 1);
    }
    memcpy(c->providers, names, sizeof names);
    c->n_providers = n;
    return SLM_OK;
}

/* "adapters": [{"path": "...", "scale": 1.0} or "path", ...] */
static slm_status apply_adapters(slm_config *c, const cJSON *it) {
    if (!cJSON_IsArray(it))
        return slm_fail(SLM_ERR_CONFIG, "config key 'adapters': expected an array");
    slm_config tmp = *c;
    tmp.n_adapters = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, it) {
        int32_t i = tmp.n_adapters;
        if (i >= SLM_MAX_ADAPTERS)
            return slm_fail(SLM_ERR_CONFIG, "config key 'adapters': more than %d adapters",
                            SLM_MAX_ADAPTERS);
        const cJSON *path = e, *scale = NULL;
        if (cJSON_IsObject(e)) {
            const cJSON *f;
            cJSON_ArrayForEach(f, e) {
                if (strcmp(f->string, "path") && strcmp(f->string, "scale"))
                    return slm_fail(SLM_ERR_CONFIG,
                                    "config key 'adapters': unknown field '%s' (expected "
                                    "\"path\" and \"scale\")",
                                    f->string);
            }
            path = cJSON_GetObjectItemCaseSensitive(e, "path");
            scale = cJSON_GetObjectItemCaseSensitive(e, "scale");
        }
        if (!cJSON_IsString(path) || !path->valuestring[0])
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'adapters': entry %d needs a path (a string or "
                            "{\"path\": ..., \"scale\": ...})",
                            (int)i);
        size_t n = strlen(path->valuestring);
        if (n > SLM_MAX_ADAPTER_PATH)
            return slm_fail(SLM_ERR_CONFIG, "config key 'adapters': a path is longer than %d bytes",
                            SLM_MAX_ADAPTER_PATH);
        memcpy(tmp.adapter_path[i], path->valuestring, n + 1);
        tmp.adapter_scale[i] = 1.0f;
        if (scale) {
            if (!cJSON_IsNumber(scale) || !isfinite(scale->valuedouble) ||
                fabs(scale->valuedouble) > 1e6)
                return slm_fail(SLM_ERR_CONFIG,
                                "config key 'adapters': entry %d: scale must be a number in "
                                "[-1e6, 1e6]",
                                (int)i);
            tmp.adapter_scale[i] = (float)scale->valuedouble;
        }
        tmp.n_adapters++;
    }
    memcpy(c->adapter_path, tmp.adapter_path, sizeof c->adapter_path);
    memcpy(c->adapter_scale, tmp.adapter_scale, sizeof c->adapter_scale);
    c->n_adapters = tmp.n_adapters;
    return SLM_OK;
}

/* A hybrid section ("cloud", "router", "policy"): validated, kept as JSON text. */
static slm_status apply_hybrid_section(const cJSON *it, char *dst, size_t cap) {
    SLM_TRY(hy_config_check(it->string, it));
    char *text = cJSON_PrintUnformatted(it);
    if (!text) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    size_t n = strlen(text);
    if (n >= cap) {
        free(text);
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': longer than %zu bytes", it->string,
                        cap - 1);
    }
    memcpy(dst, text, n + 1);
    free(text);
    return SLM_OK;
}

/* The names of the string-valued choices, indexed by their enum values. */
static const char *const k_policy_names[] = {"shift", "error"};       /* slm_ctx_policy */
static const char *const k_weights_names[] = {"auto", "map", "copy"}; /* slm_file_mode */
static const char *const k_kv_names[] = {"f16", "f32"};               /* kv_f32 */
_Static_assert(SLM_CTX_ERROR == 1 && SLM_FILE_MAP == 1 && SLM_FILE_COPY == 2,
               "the name tables follow the enums");
#define N_NAMES(a) ((int)(sizeof(a) / sizeof *(a)))

/* A string that must be one of names[0..n): its index in *out, else an error
 * naming the key and the choices. */
static slm_status want_choice(const cJSON *it, const char *const *names, int n, int *out) {
    char v[16];
    SLM_TRY(want_string(it, v, sizeof v));
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return SLM_OK;
        }
    char expected[128] = "";
    for (int i = 0; i < n; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s\"%s\"",
                 i == 0       ? ""
                 : i == n - 1 ? " or "
                              : ", ",
                 names[i]);
    return slm_fail(SLM_ERR_CONFIG, "config key '%s': \"%s\" (expected %s)", it->string, v,
                    expected);
}

/* Applies one key to `c` (which the caller discards on failure). */
static slm_status apply_key(slm_config *c, const cJSON *it) {
    const char *k = it->string;
    double v = 0;
    if (!strcmp(k, "max_tokens")) {
        SLM_TRY(want_number(it, 0, 1 << 24, 1, &v));
        c->max_tokens = (int32_t)v;
    } else if (!strcmp(k, "temperature")) {
        SLM_TRY(want_number(it, 0, 100, 0, &v));
        c->temperature = (float)v;
    } else if (!strcmp(k, "top_k")) {
        SLM_TRY(want_number(it, 0, 1 << 24, 1, &v));
        c->top_k = (int32_t)v;
    } else if (!strcmp(k, "top_p")) {
        SLM_TRY(want_number(it, 0, 1, 0, &v));
        c->top_p = (float)v;
    } else if (!strcmp(k, "min_p")) {
        SLM_TRY(want_number(it, 0, 1, 0, &v));
        c->min_p = (float)v;
    } else if (!strcmp(k, "repeat_penalty")) {
        SLM_TRY(want_number(it, 0.01, 100, 0, &v));
        c->repeat_penalty = (float)v;
    } else if (!strcmp(k, "presence_penalty")) {
        SLM_TRY(want_number(it, -2, 2, 0, &v));
        c->presence_penalty = (float)v;
    } else if (!strcmp(k, "frequency_penalty")) {
        SLM_TRY(want_number(it, -2, 2, 0, &v));
        c->frequency_penalty = (float)v;
    } else if (!strcmp(k, "repeat_last_n")) {
        SLM_TRY(want_number(it, 0, 1 << 20, 1, &v));
        c->repeat_last_n = (int32_t)v;
    } else if (!strcmp(k, "seed")) {
        SLM_TRY(want_number(it, 0, 9007199254740991.0, 1, &v)); /* 2^53 - 1: exact in JSON */
        c->seed = (uint64_t)v;
    } else if (!strcmp(k, "stop")) {
        SLM_TRY(apply_stop(c, it));
    } else if (!strcmp(k, "threads")) {
        SLM_TRY(want_number(it, 0, 256, 1, &v));
        c->threads = (int32_t)v;
    } else if (!strcmp(k, "n_ctx")) {
        SLM_TRY(want_number(it, 0, 1 << 20, 1, &v));
        if (v != 0 && v < 8)
            return slm_fail(SLM_ERR_CONFIG, "config key 'n_ctx': %g is too small (at least 8)", v);
        c->n_ctx = (int32_t)v;
    } else if (!strcmp(k, "n_keep")) {
        SLM_TRY(want_number(it, -1, 1 << 20, 1, &v));
        c->n_keep = (int32_t)v;
    } else if (!strcmp(k, "n_batch")) {
        SLM_TRY(want_number(it, 1, 8192, 1, &v));
        c->n_batch = (int32_t)v;
    } else if (!strcmp(k, "quant")) {
        SLM_TRY(want_string(it, c->quant, sizeof c->quant));
    } else if (!strcmp(k, "weights")) {
        int w = 0;
        SLM_TRY(want_choice(it, k_weights_names, N_NAMES(k_weights_names), &w));
        c->weights = (slm_file_mode)w;
    } else if (!strcmp(k, "kv_cache")) {
        SLM_TRY(want_choice(it, k_kv_names, N_NAMES(k_kv_names), &c->kv_f32));
    } else if (!strcmp(k, "providers")) {
        SLM_TRY(apply_providers(c, it));
    } else if (!strcmp(k, "context_policy")) {
        int pol = 0;
        SLM_TRY(want_choice(it, k_policy_names, N_NAMES(k_policy_names), &pol));
        c->context_policy = (slm_ctx_policy)pol;
    } else if (!strcmp(k, "ignore_eos")) {
        if (!cJSON_IsBool(it))
            return slm_fail(SLM_ERR_CONFIG, "config key 'ignore_eos': expected true or false");
        c->ignore_eos = cJSON_IsTrue(it);
    } else if (!strcmp(k, "require_signature")) {
        if (!cJSON_IsBool(it))
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'require_signature': expected true or false");
        c->require_signature = cJSON_IsTrue(it);
    } else if (!strcmp(k, "trust_dir")) {
        SLM_TRY(want_string(it, c->trust_dir, sizeof c->trust_dir));
    } else if (!strcmp(k, "adapters")) {
        SLM_TRY(apply_adapters(c, it));
    } else if (!strcmp(k, "mode")) {
        if (!cJSON_IsString(it) ||
            (strcmp(it->valuestring, "local") && strcmp(it->valuestring, "hybrid")))
            return slm_fail(SLM_ERR_CONFIG, "config key 'mode': expected \"local\" or \"hybrid\"");
        c->mode = !strcmp(it->valuestring, "hybrid") ? SLM_MODE_HYBRID : SLM_MODE_LOCAL;
    } else if (!strcmp(k, "cloud")) {
        SLM_TRY(apply_hybrid_section(it, c->hy_cloud, sizeof c->hy_cloud));
    } else if (!strcmp(k, "router")) {
        SLM_TRY(apply_hybrid_section(it, c->hy_router, sizeof c->hy_router));
    } else if (!strcmp(k, "policy")) {
        SLM_TRY(apply_hybrid_section(it, c->hy_policy, sizeof c->hy_policy));
    } else if (!strcmp(k, "audit_log")) {
        SLM_TRY(hy_config_check(k, it));
        SLM_TRY(want_string(it, c->hy_audit_log, sizeof c->hy_audit_log));
    } else if (slm_constraint_is_key(k)) {
        SLM_TRY(slm_constraint_apply_key(c, it));
    } else {
        return slm_fail(SLM_ERR_CONFIG, "config key '%s' is not known", k);
    }
    return SLM_OK;
}

slm_status slm_config_apply_json(slm_config *cfg, const char *json, size_t len) {
    if (!cfg || !json) return slm_fail(SLM_ERR_INVALID_ARG, "slm_config_apply_json: NULL argument");
    if (len > SLM_MAX_CONFIG_BYTES)
        return slm_fail(SLM_ERR_CONFIG, "config: larger than %u bytes", SLM_MAX_CONFIG_BYTES);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (!root) {
        size_t off = end && end >= json ? (size_t)(end - json) : 0;
        return slm_fail(SLM_ERR_CONFIG, "config: invalid JSON near byte %zu", off);
    }
    /* Only whitespace may follow the object. */
    for (const char *p = end; p && p < json + len; p++) {
        if (*p == '\0' && p == json + len - 1) break;
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(root);
            return slm_fail(SLM_ERR_CONFIG,
                            "config: unexpected text after the JSON object at byte %zu",
                            (size_t)(p - json));
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return slm_fail(SLM_ERR_CONFIG, "config: expected a JSON object");
    }
    /* All or nothing: apply to a copy. */
    slm_config tmp = *cfg;
    slm_status st = SLM_OK;
    const cJSON *it;
    cJSON_ArrayForEach(it, root) {
        st = apply_key(&tmp, it);
        if (st != SLM_OK) break;
    }
    cJSON_Delete(root);
    if (st == SLM_OK) *cfg = tmp;
    return st;
}

slm_status slm_config_apply(slm_config *cfg, const char *text_or_path) {
    if (!cfg || !text_or_path)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_config_apply: NULL argument");
    const char *p = text_or_path;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p == '{') return slm_config_apply_json(cfg, text_or_path, strlen(text_or_path));
    char *buf = NULL;
    size_t n = 0;
    SLM_TRY(slm_read_file(text_or_path, SLM_MAX_CONFIG_BYTES, &buf, &n));
    slm_status st = slm_config_apply_json(cfg, buf, n);
    free(buf);
    if (st != SLM_OK) return slm_fail_prefix(st, "%s", text_or_path);
    return SLM_OK;
}

char *slm_config_to_json(const slm_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "max_tokens", c->max_tokens);
    cJSON_AddNumberToObject(o, "temperature", c->temperature);
    cJSON_AddNumberToObject(o, "top_k", c->top_k);
    cJSON_AddNumberToObject(o, "top_p", c->top_p);
    cJSON_AddNumberToObject(o, "min_p", c->min_p);
    cJSON_AddNumberToObject(o, "repeat_penalty", c->repeat_penalty);
    cJSON_AddNumberToObject(o, "repeat_last_n", c->repeat_last_n);
    cJSON_AddNumberToObject(o, "presence_penalty", c->presence_penalty);
    cJSON_AddNumberToObject(o, "frequency_penalty", c->frequency_penalty);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON *stop = cJSON_AddArrayToObject(o, "stop");
    for (int32_t i = 0; stop && i < c->n_stop; i++)
        cJSON_AddItemToArray(stop, cJSON_CreateString(c->stop[i]));
    cJSON_AddNumberToObject(o, "threads", c->threads);
    cJSON_AddNumberToObject(o, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(o, "n_keep", c->n_keep);
    cJSON_AddNumberToObject(o, "n_batch", c->n_batch);
    cJSON_AddStringToObject(o, "quant", c->quant);
    cJSON_AddStringToObject(o, "weights", k_weights_names[c->weights]);
    cJSON_AddStringToObject(o, "kv_cache", k_kv_names[c->kv_f32]);
    cJSON *pv = cJSON_AddArrayToObject(o, "providers");
    for (int32_t i = 0; pv && i < c->n_providers; i++)
        cJSON_AddItemToArray(pv, cJSON_CreateString(c->providers[i]));
    cJSON_AddStringToObject(o, "context_policy", k_policy_names[c->context_policy]);
    cJSON_AddBoolToObject(o, "ignore_eos", c->ignore_eos);
    cJSON_AddBoolToObject(o, "require_signature", c->require_signature);
    cJSON_AddStringToObject(o, "trust_dir", c->trust_dir);
    cJSON *ads = cJSON_AddArrayToObject(o, "adapters");
    for (int32_t i = 0; ads && i < c->n_adapters; i++) {
        cJSON *a = cJSON_CreateObject();
        if (!a) break;
        cJSON_AddStringToObject(a, "path", c->adapter_path[i]);
        cJSON_AddNumberToObject(a, "scale", c->adapter_scale[i]);
        cJSON_AddItemToArray(ads, a);
    }
    slm_constraint_to_json(c, o);
    cJSON_AddStringToObject(o, "mode", c->mode == SLM_MODE_HYBRID ? "hybrid" : "local");
    /* the hybrid sections as given (they hold no secret: the API key is never in the config) */
    const char *const sec_key[3] = {"cloud", "router", "policy"};
    const char *const sec_text[3] = {c->hy_cloud, c->hy_router, c->hy_policy};
    for (int i = 0; i < 3; i++) {
        if (!sec_text[i][0]) continue;
        cJSON *sec = cJSON_Parse(sec_text[i]);
        if (sec) cJSON_AddItemToObject(o, sec_key[i], sec);
    }
    if (c->hy_audit_log[0]) cJSON_AddStringToObject(o, "audit_log", c->hy_audit_log);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}
