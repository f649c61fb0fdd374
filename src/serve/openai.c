/* OpenAI request parsing and response building (see openai.h). */
#include "serve/openai.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/unicode.h"

#define SRV_MAX_STOP_LEN 256            /* the runtime's limit on one stop string */
#define SRV_MAX_SEED 9007199254740991.0 /* 2^53 - 1: exact in JSON */
#define SRV_MAX_TOKENS_LIMIT (1 << 24)
#define SRV_MAX_CONTENT_BYTES (64u << 20)

int srv_error_set(srv_error *e, int http, const char *type, const char *code, const char *param,
                  const char *fmt, ...) {
    e->http = http;
    e->type = type;
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- UTF-8 ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    uint32_t cp;
    size_t len = tok_utf8_next(s, n, &cp);
    return cp == TOK_CP_INVALID ? 0 : len;
}

int srv_utf8_valid(const char *s, size_t n) {
    return tok_utf8_valid(s, n);
}

char *srv_utf8_sanitize(const char *s, size_t n, size_t *out_len) {
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(n * 3 + 1); /* each bad byte becomes 3 bytes at most */
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t l = p[i] ? utf8_seq(p + i, n - i) : 0;
        if (l) {
            memcpy(out + o, p + i, l);
            o += l;
            i += l;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    if (out_len) *out_len = o;
    return out;
}

int srv_secret_equal(const char *given, size_t given_len, const char *secret, size_t secret_len) {
    volatile unsigned char diff = (unsigned char)(given_len != secret_len);
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)secret[i]);
    }
    return diff == 0;
}

/* ---- request parsing --------------------------------------------------------- */

static int bad_type(srv_error *e, const char *param, const char *want) {
    return srv_error_set(e, 400, "invalid_request_error", "invalid_type", param, "'%s' must be %s",
                         param, want);
}

static int unsupported(srv_error *e, const char *param, const char *what) {
    return srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter", param,
                         "'%s': %s is not supported by this server", param, what);
}

/* A number field in [lo, hi] (integer when asked); absent or null leaves
 * *present 0. */
static int get_number(const cJSON *root, const char *key, double lo, double hi, int integer,
                      double *out, int *present, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    *present = 0;
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it)) return bad_type(e, key, integer ? "an integer" : "a number");
    double v = it->valuedouble;
    if (!isfinite(v) || v < lo || v > hi)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", key,
                             "'%s' must be between %g and %g", key, lo, hi);
    if (integer && floor(v) != v)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_type", key,
                             "'%s' must be an integer", key);
    *out = v;
    *present = 1;
    return 0;
}

/* A boolean field; absent or null = dflt. */
static int get_bool(const cJSON *root, const char *key, int dflt, int *out, srv_error *e) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = dflt;
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it)) return bad_type(e, key, "true or false");
    *out = cJSON_IsTrue(it) ? 1 : 0;
    return 0;
}

/* Sampling fields: copied into r->sampling under the runtime's key names. */
static int parse_sampling(const cJSON *root, srv_request *r, srv_error *e) {
    static const struct {
        const char *key;
        double lo, hi;
        int integer;
    } nums[] = {
        {"temperature", 0, 2, 0},
        {"top_p", 0, 1, 0},
        {"seed", 0, SRV_MAX_SEED, 1},
        {"top_k", 0, SRV_MAX_TOKENS_LIMIT, 1},
        {"min_p", 0, 1, 0},
        {"repeat_penalty", 0.01, 100, 0},
        {"repeat_last_n", 0, SRV_MAX_TOKENS_LIMIT, 1},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        double v = 0;
        int present = 0;
        if (get_number(root, nums[i].key, nums[i].lo, nums[i].hi, nums[i].integer, &v, &present, e))
            return -1;
        if (present) cJSON_AddNumberToObject(r->sampling, nums[i].key, v);
    }
    /* OpenAI's penalties, applied by the sampler over the repeat_last_n window. */
    static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
    for (size_t i = 0; i < sizeof penalties / sizeof penalties[0]; i++) {
        double v = 0;
        int present = 0;
        if (get_number(root, penalties[i], -2, 2, 0, &v, &present, e)) return -1;
        if (present) cJSON_AddNumberToObject(r->sampling, penalties[i], v);
    }
    int ignore_eos = 0;
    const cJSON *ie = cJSON_GetObjectItemCaseSensitive(root, "ignore_eos");
    if (get_bool(root, "ignore_eos", 0, &ignore_eos, e)) return -1;
    if (ie && !cJSON_IsNull(ie)) cJSON_AddBoolToObject(r->sampling, "ignore_eos", ignore_eos);

    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (stop && !cJSON_IsNull(stop)) {
        cJSON *arr = cJSON_CreateArray();
        if (!arr) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        cJSON_AddItemToObject(r->sampling, "stop", arr);
        if (cJSON_IsString(stop)) {
            if (strlen(stop->valuestring) > SRV_MAX_STOP_LEN)
                return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "stop",
                                     "'stop' strings are limited to %d bytes", SRV_MAX_STOP_LEN);
            if (stop->valuestring[0])
                cJSON_AddItemToArray(arr, cJSON_CreateString(stop->valuestring));
        } else if (cJSON_IsArray(stop)) {
            int n = 0;
            const cJSON *s;
            cJSON_ArrayForEach(s, stop) {
                if (!cJSON_IsString(s))
                    return bad_type(e, "stop", "a string or an array of strings");
                if (++n > SRV_MAX_STOP)
                    return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "stop",
                                         "'stop' holds at most %d sequences", SRV_MAX_STOP);
                if (strlen(s->valuestring) > SRV_MAX_STOP_LEN)
                    return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "stop",
                                         "'stop' strings are limited to %d bytes",
                                         SRV_MAX_STOP_LEN);
                if (s->valuestring[0])
                    cJSON_AddItemToArray(arr, cJSON_CreateString(s->valuestring));
            }
        } else {
            return bad_type(e, "stop", "a string or an array of strings");
        }
    }
    return 0;
}

/* Chat: logprobs (bool) and top_logprobs (0..20, needs logprobs); completions:
 * logprobs (0..5, the number of alternatives; present = log-probabilities on). */
static int parse_logprobs(const cJSON *root, srv_kind kind, srv_request *r, srv_error *e) {
    r->top_logprobs = 0;
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
    double v = 0;
    int present = 0;
    if (kind == SRV_CHAT) {
        if (get_bool(root, "logprobs", 0, &r->logprobs, e)) return -1;
        if (get_number(root, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS_CHAT, 1, &v, &present, e))
            return -1;
        if (present && !r->logprobs)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                                 "'top_logprobs' needs 'logprobs': true");
        if (present) r->top_logprobs = (int)v;
        return 0;
    }
    if (lp && !cJSON_IsNull(lp) && cJSON_IsBool(lp)) return bad_type(e, "logprobs", "an integer");
    if (get_number(root, "logprobs", 0, SRV_MAX_TOP_LOGPROBS_COMPLETION, 1, &v, &present, e))
        return -1;
    if (present) {
        r->logprobs = 1;
        r->top_logprobs = (int)v;
    }
    const cJSON *tl = cJSON_GetObjectItemCaseSensitive(root, "top_logprobs");
    if (tl && !cJSON_IsNull(tl))
        return srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter",
                             "top_logprobs",
                             "'top_logprobs' is a chat completions field; /v1/completions takes "
                             "'logprobs': N");
    return 0;
}

/* Fields whose features this server does not have: a clear 400 rather than
 * a silently different answer. */
static int parse_unsupported(const cJSON *root, srv_kind kind, srv_error *e) {
    double v = 0;
    int present = 0;
    if (get_number(root, "n", 1, 1, 1, &v, &present, e))
        return srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter", "n",
                             "'n' must be 1: one choice per request");
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (lb && !cJSON_IsNull(lb)) {
        if (!cJSON_IsObject(lb)) return bad_type(e, "logit_bias", "an object");
        if (lb->child) return unsupported(e, "logit_bias", "biasing logits");
    }
    if (kind == SRV_COMPLETION) {
        if (get_number(root, "best_of", 1, 1, 1, &v, &present, e))
            return srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter",
                                 "best_of", "'best_of' must be 1");
        const cJSON *sfx = cJSON_GetObjectItemCaseSensitive(root, "suffix");
        if (sfx && !cJSON_IsNull(sfx)) {
            if (!cJSON_IsString(sfx)) return bad_type(e, "suffix", "a string");
            if (sfx->valuestring[0]) return unsupported(e, "suffix", "insertion");
        }
    }
    return 0;
}

/* response_format (text, json_object, json_schema): checked by compiling it
 * as the config key of the same name, then passed on to the session. */
static int parse_response_format(const cJSON *root, srv_request *r, srv_error *e) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (!rf || cJSON_IsNull(rf)) return 0;
    if (!cJSON_IsObject(rf)) return bad_type(e, "response_format", "an object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsString(t)) return bad_type(e, "response_format.type", "a string");
    cJSON *wrap = cJSON_CreateObject();
    cJSON *copy = cJSON_Duplicate(rf, 1);
    char *js = NULL;
    if (wrap && copy) {
        cJSON_AddItemToObject(wrap, "response_format", copy);
        copy = NULL;
        js = cJSON_PrintUnformatted(wrap);
    }
    cJSON_Delete(wrap);
    cJSON_Delete(copy);
    slm_config *cfg = NULL;
    if (!js || slm_config_new(&cfg) != SLM_OK) {
        free(js);
        return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    slm_status st = slm_config_apply_json(cfg, js, strlen(js));
    slm_config_free(cfg);
    free(js);
    if (st == SLM_ERR_NOMEM)
        return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    if (st != SLM_OK)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "response_format",
                             "'response_format' is invalid: %s", slm_last_error());
    cJSON *keep = cJSON_Duplicate(rf, 1);
    if (!keep) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    cJSON_AddItemToObject(r->sampling, "response_format", keep);
    return 0;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* A message's content: a string, or an array of {"type":"text","text":...}
 * parts (concatenated). */
static int parse_content(const cJSON *c, size_t idx, char **out, srv_error *e) {
    if (cJSON_IsString(c)) {
        *out = dup_n(c->valuestring, strlen(c->valuestring));
        return *out ? 0 : srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!cJSON_IsArray(c))
        return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                             "messages[%zu].content must be a string or an array of text parts",
                             idx);
    size_t total = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsObject(part) || !cJSON_IsString(t))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                 "messages[%zu].content: each part must be an object with a "
                                 "'type'",
                                 idx);
        if (strcmp(t->valuestring, "text") != 0)
            return srv_error_set(e, 400, "invalid_request_error", "unsupported_parameter",
                                 "messages",
                                 "messages[%zu].content: parts of type '%.40s' are not "
                                 "supported (text only)",
                                 idx, t->valuestring);
        if (!cJSON_IsString(tx))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                 "messages[%zu].content: a text part needs a string 'text'", idx);
        total += strlen(tx->valuestring);
        if (total > SRV_MAX_CONTENT_BYTES)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                                 "messages[%zu].content is too long", idx);
    }
    char *s = malloc(total + 1);
    if (!s) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t at = 0;
    cJSON_ArrayForEach(part, c) {
        const char *tx = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
        size_t l = strlen(tx);
        memcpy(s + at, tx, l);
        at += l;
    }
    s[at] = '\0';
    *out = s;
    return 0;
}

static int parse_messages(const cJSON *root, srv_request *r, srv_error *e) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!m || cJSON_IsNull(m))
        return srv_error_set(e, 400, "invalid_request_error", "missing_required_parameter",
                             "messages", "'messages' is required");
    if (!cJSON_IsArray(m)) return bad_type(e, "messages", "an array of messages");
    int n = cJSON_GetArraySize(m);
    if (n < 1)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                             "'messages' must hold at least one message");
    if (n > SRV_MAX_MESSAGES)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                             "'messages' holds more than %d messages", SRV_MAX_MESSAGES);
    r->msgs = calloc((size_t)n, sizeof *r->msgs);
    if (!r->msgs) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
    static const char *const roles[] = {"system", "user", "assistant", "tool", "function"};
    const cJSON *msg;
    size_t i = 0;
    cJSON_ArrayForEach(msg, m) {
        if (!cJSON_IsObject(msg))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "messages",
                                 "messages[%zu] must be an object", i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsString(role))
            return srv_error_set(e, 400, "invalid_request_error", "missing_required_parameter",
                                 "messages", "messages[%zu].role must be a string", i);
        const char *rn = role->valuestring;
        if (!strcmp(rn, "developer")) rn = "system";
        const char *known = NULL;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (!strcmp(rn, roles[k])) known = roles[k];
        if (!known)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "messages",
                                 "messages[%zu].role '%.40s' is not one of system, developer, "
                                 "user, assistant, tool",
                                 i, role->valuestring);
        r->msgs[i].role = known;
        r->n_msgs = i + 1;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
        char *content = NULL;
        if (!c || cJSON_IsNull(c)) {
            if (strcmp(known, "assistant") != 0)
                return srv_error_set(e, 400, "invalid_request_error", "missing_required_parameter",
                                     "messages", "messages[%zu].content is required", i);
            content = dup_n("", 0);
            if (!content) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        } else if (parse_content(c, i, &content, e)) {
            return -1;
        }
        r->msgs[i].content = content;
        i++;
    }
    return 0;
}

static int parse_prompt(const cJSON *root, srv_request *r, srv_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p || cJSON_IsNull(p))
        return srv_error_set(e, 400, "invalid_request_error", "missing_required_parameter",
                             "prompt", "'prompt' is required");
    const char *want = "a string, an array of one string, or an array of token ids";
    if (cJSON_IsArray(p)) {
        int n = cJSON_GetArraySize(p);
        if (n == 1 && cJSON_IsString(p->child)) {
            p = p->child;
        } else if (n >= 1 && cJSON_IsArray(p->child)) {
            if (n > 1) return unsupported(e, "prompt", "more than one prompt per request");
            p = p->child;
            n = cJSON_GetArraySize(p);
        } else if (n > 1 && cJSON_IsString(p->child)) {
            return unsupported(e, "prompt", "more than one prompt per request");
        }
        if (cJSON_IsArray(p)) {
            if (n < 1 || n > SRV_MAX_PROMPT_IDS)
                return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                                     "'prompt' must hold 1 to %d token ids", SRV_MAX_PROMPT_IDS);
            r->prompt_ids = malloc((size_t)n * sizeof *r->prompt_ids);
            if (!r->prompt_ids)
                return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            const cJSON *t;
            size_t i = 0;
            cJSON_ArrayForEach(t, p) {
                if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || t->valuedouble < 0 ||
                    t->valuedouble > INT32_MAX || floor(t->valuedouble) != t->valuedouble)
                    return bad_type(e, "prompt", want);
                r->prompt_ids[i++] = (int32_t)t->valuedouble;
            }
            r->n_prompt_ids = i;
            return 0;
        }
    }
    if (!cJSON_IsString(p)) return bad_type(e, "prompt", want);
    r->prompt_len = strlen(p->valuestring);
    r->prompt = dup_n(p->valuestring, r->prompt_len);
    return r->prompt ? 0 : srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
}

int srv_parse_request(srv_kind kind, const char *body, size_t len, srv_request *r, srv_error *e) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    if (!srv_utf8_valid(body, len))
        return srv_error_set(e, 400, "invalid_request_error", "invalid_utf8", NULL,
                             "the request body is not valid UTF-8");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t off = end && end >= body ? (size_t)(end - body) : 0;
        return srv_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                             "the request body is not valid JSON (near byte %zu)", off);
    }
    int rc = -1;
    for (const char *q = end; q && q < body + len; q++) {
        if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t') {
            srv_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                          "unexpected text after the JSON object at byte %zu", (size_t)(q - body));
            goto done;
        }
    }
    if (!cJSON_IsObject(root)) {
        srv_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                      "the request body must be a JSON object");
        goto done;
    }
    r->sampling = cJSON_CreateObject();
    if (!r->sampling) {
        srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (model && !cJSON_IsNull(model) && !cJSON_IsString(model)) {
        bad_type(e, "model", "a string");
        goto done;
    }
    if (get_bool(root, "stream", 0, &r->stream, e)) goto done;
    const cJSON *route = cJSON_GetObjectItemCaseSensitive(root, "route"); /* hybrid (issue 10) */
    if (route && !cJSON_IsNull(route)) {
        if (!cJSON_IsString(route) ||
            (strcmp(route->valuestring, "auto") && strcmp(route->valuestring, "local") &&
             strcmp(route->valuestring, "cloud"))) {
            srv_error_set(e, 400, "invalid_request_error", "invalid_value", "route",
                          "'route' must be \"auto\", \"local\" or \"cloud\"");
            goto done;
        }
        r->route = !strcmp(route->valuestring, "local")   ? 1
                   : !strcmp(route->valuestring, "cloud") ? 2
                                                          : 0;
    }
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so)) {
            bad_type(e, "stream_options", "an object");
            goto done;
        }
        if (get_bool(so, "include_usage", 0, &r->include_usage, e)) goto done;
    }
    double v = 0;
    int present = 0;
    if (get_number(root, "max_tokens", 1, SRV_MAX_TOKENS_LIMIT, 1, &v, &present, e)) goto done;
    if (present) r->max_tokens = (int32_t)v;
    if (get_number(root, "max_completion_tokens", 1, SRV_MAX_TOKENS_LIMIT, 1, &v, &present, e))
        goto done;
    if (present) r->max_tokens = (int32_t)v;
    if (parse_sampling(root, r, e)) goto done;
    if (parse_unsupported(root, kind, e)) goto done;
    if (parse_response_format(root, r, e)) goto done;
    if (parse_logprobs(root, kind, r, e)) goto done;
    const cJSON *ad = cJSON_GetObjectItemCaseSensitive(root, "adapter");
    if (ad && !cJSON_IsNull(ad)) { /* a LoRA adapter's name; the server checks it exists */
        if (!cJSON_IsString(ad) || !ad->valuestring[0] || strlen(ad->valuestring) > 64) {
            bad_type(e, "adapter", "an adapter name (a string of 1 to 64 bytes) or null");
            goto done;
        }
        r->adapter = strdup(ad->valuestring);
        if (!r->adapter) {
            srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
            goto done;
        }
    }
    if (kind == SRV_CHAT) {
        if (parse_messages(root, r, e)) goto done;
    } else {
        if (get_bool(root, "echo", 0, &r->echo, e)) goto done;
        if (parse_prompt(root, r, e)) goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) srv_request_free(r);
    return rc;
}

void srv_request_free(srv_request *r) {
    if (!r) return;
    cJSON_Delete(r->sampling);
    free(r->adapter);
    for (size_t i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    free(r->prompt);
    free(r->prompt_ids);
    srv_kind k = r->kind;
    memset(r, 0, sizeof *r);
    r->kind = k;
    r->max_tokens = -1;
}

/* ---- responses ------------------------------------------------------------------ */

static cJSON *add_text(cJSON *obj, const char *key, const char *text, size_t len) {
    char *clean = srv_utf8_sanitize(text ? text : "", text ? len : 0, NULL);
    if (!clean) return NULL;
    cJSON *s = cJSON_AddStringToObject(obj, key, clean);
    free(clean);
    return s;
}

static void add_usage(cJSON *o, const srv_reply *r) {
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (!u) return;
    cJSON_AddNumberToObject(u, "prompt_tokens", r->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", r->n_completion);
    cJSON_AddNumberToObject(u, "total_tokens", (double)r->n_prompt + r->n_completion);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (d) cJSON_AddNumberToObject(d, "cached_tokens", r->n_cached);
}

static cJSON *bytes_array(const char *b, size_t n) {
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)(unsigned char)b[i]));
    return a;
}

/* A logprob as JSON allows it: -inf (a token the model gives no mass) as a very low number. */
static double finite_lp(float lp) {
    return isfinite(lp) ? (double)lp : -9999.0;
}

/* {"token","logprob","bytes"} of one id. */
static cJSON *chat_entry(const srv_logprobs *lp, int32_t id, float logprob) {
    char buf[256];
    size_t n = lp->piece ? lp->piece(lp->piece_user, id, buf, sizeof buf) : 0;
    if (n > sizeof buf) n = sizeof buf;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    add_text(o, "token", buf, n);
    cJSON_AddNumberToObject(o, "logprob", finite_lp(logprob));
    cJSON *b = bytes_array(buf, n);
    if (b) cJSON_AddItemToObject(o, "bytes", b);
    return o;
}

cJSON *srv_logprobs_json(srv_kind kind, srv_logprobs *lp) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (kind == SRV_CHAT) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (size_t i = 0; content && i < lp->n; i++) {
            const srv_tok_lp *t = &lp->tok[i];
            cJSON *e = chat_entry(lp, t->token, t->logprob);
            if (!e) break;
            cJSON_AddItemToArray(content, e);
            cJSON *tops = cJSON_AddArrayToObject(e, "top_logprobs");
            for (int k = 0; tops && k < t->n_top; k++) {
                cJSON *a = chat_entry(lp, t->top_ids[k], t->top_lp[k]);
                if (a) cJSON_AddItemToArray(tops, a);
            }
        }
        cJSON_AddNullToObject(o, "refusal");
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens");
    cJSON *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *tops = cJSON_AddArrayToObject(o, "top_logprobs");
    cJSON *offs = cJSON_AddArrayToObject(o, "text_offset");
    if (!tokens || !tlp || !tops || !offs) return o;
    char buf[256];
    for (size_t i = 0; i < lp->n; i++) {
        const srv_tok_lp *t = &lp->tok[i];
        size_t n = lp->piece ? lp->piece(lp->piece_user, t->token, buf, sizeof buf) : 0;
        if (n > sizeof buf) n = sizeof buf;
        char *clean = srv_utf8_sanitize(buf, n, NULL);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(clean ? clean : ""));
        free(clean);
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(finite_lp(t->logprob)));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)lp->text_offset));
        lp->text_offset += n;
        cJSON *alt = cJSON_CreateObject();
        for (int k = 0; alt && k < t->n_top; k++) {
            size_t m = lp->piece ? lp->piece(lp->piece_user, t->top_ids[k], buf, sizeof buf) : 0;
            if (m > sizeof buf) m = sizeof buf;
            char *c = srv_utf8_sanitize(buf, m, NULL);
            cJSON_AddItemToObject(alt, c ? c : "", cJSON_CreateNumber(finite_lp(t->top_lp[k])));
            free(c);
        }
        if (alt) cJSON_AddItemToArray(tops, alt);
    }
    return o;
}

static void add_logprobs(cJSON *choice, const srv_reply *r) {
    cJSON *l = r->lp ? srv_logprobs_json(r->kind, r->lp) : NULL;
    if (l)
        cJSON_AddItemToObject(choice, "logprobs", l);
    else
        cJSON_AddNullToObject(choice, "logprobs");
}

static cJSON *reply_head(const srv_reply *r, const char *object) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model);
    cJSON_AddStringToObject(o, "system_fingerprint", "slm-" SLM_VERSION_STRING);
    return o;
}

static char *finish_json(cJSON *o) {
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

char *srv_reply_json(const srv_reply *r, const char *text, size_t len) {
    int chat = r->kind == SRV_CHAT;
    cJSON *o = reply_head(r, chat ? "chat.completion" : "text_completion");
    if (!o) return NULL;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    cJSON *c = cJSON_CreateObject();
    if (!choices || !c) {
        cJSON_Delete(c);
        return finish_json(o);
    }
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, "message");
        if (m) {
            cJSON_AddStringToObject(m, "role", "assistant");
            add_text(m, "content", text, len);
        }
    } else {
        add_text(c, "text", text, len);
    }
    add_logprobs(c, r);
    cJSON_AddStringToObject(c, "finish_reason", r->finish ? r->finish : "stop");
    add_usage(o, r);
    return finish_json(o);
}

char *srv_chunk_json(const srv_reply *r, const char *text, size_t len, int first, int usage_only) {
    int chat = r->kind == SRV_CHAT;
    cJSON *o = reply_head(r, chat ? "chat.completion.chunk" : "text_completion");
    if (!o) return NULL;
    cJSON *choices = cJSON_AddArrayToObject(o, "choices");
    if (usage_only) {
        add_usage(o, r);
        return finish_json(o);
    }
    cJSON *c = cJSON_CreateObject();
    if (!choices || !c) {
        cJSON_Delete(c);
        return finish_json(o);
    }
    cJSON_AddItemToArray(choices, c);
    cJSON_AddNumberToObject(c, "index", 0);
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (d && first) cJSON_AddStringToObject(d, "role", "assistant");
        if (d && (len > 0 || (first && !r->finish))) add_text(d, "content", text, len);
    } else {
        add_text(c, "text", text, len);
    }
    add_logprobs(c, r);
    if (r->finish)
        cJSON_AddStringToObject(c, "finish_reason", r->finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    return finish_json(o);
}

char *srv_error_json(const srv_error *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON *err = o ? cJSON_AddObjectToObject(o, "error") : NULL;
    if (!err) {
        cJSON_Delete(o);
        return NULL;
    }
    add_text(err, "message", e->message, strlen(e->message));
    cJSON_AddStringToObject(err, "type", e->type ? e->type : "server_error");
    if (e->param)
        cJSON_AddStringToObject(err, "param", e->param);
    else
        cJSON_AddNullToObject(err, "param");
    if (e->code)
        cJSON_AddStringToObject(err, "code", e->code);
    else
        cJSON_AddNullToObject(err, "code");
    return finish_json(o);
}
