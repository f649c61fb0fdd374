/* POST /v1/embeddings and POST /v1/classify: parsing, the work a slot runs,
 * the response (see tasks.h). */
#include "serve/tasks.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

void srv_task_free(srv_task *t) {
    if (!t) return;
    for (size_t i = 0; t->ids && i < t->n_inputs; i++) free(t->ids[i]);
    free(t->ids);
    free(t->n_ids);
    free(t->text);
    for (size_t i = 0; t->labels && i < t->n_labels; i++) free(t->labels[i]);
    free(t->labels);
    free(t->tmpl);
    free(t->vecs);
    slm_classify_result_free(&t->cls);
    memset(t, 0, sizeof *t);
}

static int oom(srv_error *e) {
    return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
}

/* One embeddings input: a string (tokenized) or an array of token ids. */
static int parse_input(const cJSON *it, size_t idx, const slm_model *model, int32_t n_ctx,
                       int32_t n_vocab, int32_t **ids, size_t *n, srv_error *e) {
    *ids = NULL;
    *n = 0;
    if (cJSON_IsString(it)) {
        const char *s = it->valuestring;
        if (!srv_utf8_valid(s, strlen(s)))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                                 "input %zu is not valid UTF-8", idx);
        if (slm_tokenize(model, s, strlen(s), SLM_TOKENIZE_ADD_BOS, ids, n) != SLM_OK)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                                 "cannot tokenize input %zu: %s", idx, slm_last_error());
    } else if (cJSON_IsArray(it)) {
        int m = cJSON_GetArraySize(it);
        *ids = malloc((size_t)(m > 0 ? m : 1) * sizeof **ids);
        if (!*ids) return oom(e);
        const cJSON *v;
        cJSON_ArrayForEach(v, it) {
            double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
            if (!cJSON_IsNumber(v) || d != (double)(int64_t)d || d < 0 || d >= n_vocab) {
                free(*ids);
                *ids = NULL;
                return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                                     "input %zu: token ids must be integers in [0, %d)", idx,
                                     n_vocab);
            }
            (*ids)[(*n)++] = (int32_t)d;
        }
    } else {
        return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "input",
                             "'input' must be a string, an array of strings, an array of token "
                             "ids or an array of token-id arrays");
    }
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                             "input %zu is empty", idx);
    }
    if (*n > (size_t)n_ctx) {
        free(*ids);
        *ids = NULL;
        return srv_error_set(e, 400, "invalid_request_error", "context_length_exceeded", "input",
                             "input %zu has %zu tokens; the context holds %d", idx, *n, n_ctx);
    }
    return 0;
}

static int parse_embed(const cJSON *o, const slm_model *model, int32_t n_ctx, srv_task *t,
                       srv_error *e) {
    slm_model_info info;
    if (slm_model_get_info(model, &info) != SLM_OK) return oom(e);
    t->dim = slm_embedding_dim(model);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!in)
        return srv_error_set(e, 400, "invalid_request_error", "missing_required_parameter", "input",
                             "'input' is required");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) ||
            (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64")))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value",
                                 "encoding_format",
                                 "'encoding_format' must be \"float\" or "
                                 "\"base64\"");
        t->base64 = !strcmp(fmt->valuestring, "base64");
    }
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(o, "dimensions");
    if (dims && !cJSON_IsNull(dims) && (!cJSON_IsNumber(dims) || dims->valuedouble != t->dim))
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "dimensions",
                             "this model's embeddings have %d dimensions; 'dimensions' cannot "
                             "change that",
                             t->dim);
    const cJSON *pool = cJSON_GetObjectItemCaseSensitive(o, "pooling");
    t->pooling = SLM_POOLING_MEAN;
    if (pool && !cJSON_IsNull(pool)) {
        if (!cJSON_IsString(pool) ||
            (strcmp(pool->valuestring, "mean") && strcmp(pool->valuestring, "last")))
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "pooling",
                                 "'pooling' must be \"mean\" or \"last\"");
        if (!strcmp(pool->valuestring, "last")) t->pooling = SLM_POOLING_LAST;
    }
    /* a string, an array of token ids: one input; an array of strings or of
     * token arrays: several */
    int several = 0;
    if (cJSON_IsArray(in)) {
        int m = cJSON_GetArraySize(in);
        if (m == 0)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                                 "'input' is an empty array");
        several = !cJSON_IsNumber(cJSON_GetArrayItem(in, 0));
        if (several && m > SRV_MAX_EMBED_INPUTS)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                                 "'input' has %d items; at most %d are allowed", m,
                                 SRV_MAX_EMBED_INPUTS);
        if (several) {
            const cJSON *it;
            int kind = cJSON_IsString(cJSON_GetArrayItem(in, 0));
            cJSON_ArrayForEach(it, in) {
                if (kind ? !cJSON_IsString(it) : !cJSON_IsArray(it))
                    return srv_error_set(e, 400, "invalid_request_error", "invalid_type", "input",
                                         "'input' must be all strings or all token-id arrays");
            }
        }
    }
    size_t n = several ? (size_t)cJSON_GetArraySize(in) : 1;
    t->ids = calloc(n, sizeof *t->ids);
    t->n_ids = calloc(n, sizeof *t->n_ids);
    if (!t->ids || !t->n_ids) return oom(e);
    t->n_inputs = n;
    for (size_t i = 0; i < n; i++) {
        const cJSON *it = several ? cJSON_GetArrayItem(in, (int)i) : in;
        if (parse_input(it, i, model, n_ctx, info.n_vocab, &t->ids[i], &t->n_ids[i], e)) return -1;
        t->prompt_tokens += (int64_t)t->n_ids[i];
    }
    t->total_tokens = t->prompt_tokens;
    return 0;
}

static int parse_classify(const cJSON *o, srv_task *t, srv_error *e) {
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(o, "input");
    if (!cJSON_IsString(in))
        return srv_error_set(e, 400, "invalid_request_error",
                             in ? "invalid_type" : "missing_required_parameter", "input",
                             "'input' must be a string (the text to classify)");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels");
    int m = cJSON_IsArray(labels) ? cJSON_GetArraySize(labels) : 0;
    if (m < 1 || m > SLM_CLASSIFY_MAX_LABELS)
        return srv_error_set(e, 400, "invalid_request_error",
                             labels ? "invalid_value" : "missing_required_parameter", "labels",
                             "'labels' must be an array of 1 to %d strings",
                             SLM_CLASSIFY_MAX_LABELS);
    const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(o, "prompt_template");
    if (tmpl && !cJSON_IsNull(tmpl) &&
        (!cJSON_IsString(tmpl) || !strstr(tmpl->valuestring, "{text}")))
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt_template",
                             "'prompt_template' must be a string containing {text}");
    size_t tl = strlen(in->valuestring);
    if (!srv_utf8_valid(in->valuestring, tl))
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "input",
                             "'input' is not valid UTF-8");
    t->text = strdup(in->valuestring);
    t->text_len = tl;
    t->labels = calloc((size_t)m, sizeof *t->labels);
    if (!t->text || !t->labels) return oom(e);
    if (cJSON_IsString(tmpl) && !(t->tmpl = strdup(tmpl->valuestring))) return oom(e);
    for (int i = 0; i < m; i++) {
        const cJSON *l = cJSON_GetArrayItem(labels, i);
        if (!cJSON_IsString(l) || !l->valuestring[0])
            return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "labels",
                                 "label %d must be a non-empty string", i);
        for (size_t k = 0; k < t->n_labels; k++)
            if (!strcmp(t->labels[k], l->valuestring))
                return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "labels",
                                     "label '%.64s' is given twice", l->valuestring);
        if (!(t->labels[t->n_labels] = strdup(l->valuestring))) return oom(e);
        t->n_labels++;
    }
    return 0;
}

int srv_task_parse(srv_task_kind kind, const char *body, size_t len, const slm_model *model,
                   int32_t n_ctx, srv_task *out, srv_error *e) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    cJSON *o = cJSON_ParseWithLength(body, len);
    int rc;
    if (!cJSON_IsObject(o))
        rc = srv_error_set(e, 400, "invalid_request_error", "invalid_json", NULL,
                           "the body is not a JSON object");
    else
        rc = kind == SRV_TASK_EMBED ? parse_embed(o, model, n_ctx, out, e)
                                    : parse_classify(o, out, e);
    cJSON_Delete(o);
    if (rc) {
        srv_task_free(out);
        out->kind = kind;
    }
    return rc;
}

slm_status srv_task_run(void *user, slm_session *s, slm_result *res) {
    srv_task *t = user;
    if (t->kind == SRV_TASK_CLASSIFY) {
        SLM_TRY(slm_classify(s, t->text, t->text_len, (const char *const *)t->labels, t->n_labels,
                             t->tmpl, &t->cls));
        t->prompt_tokens = t->cls.n_prompt_tokens;
        t->total_tokens = t->cls.n_prompt_tokens + t->cls.n_label_tokens;
        res->n_prompt_tokens = t->cls.n_prompt_tokens;
        return SLM_OK;
    }
    t->vecs = malloc(t->n_inputs * (size_t)t->dim * sizeof *t->vecs);
    if (!t->vecs) return slm_fail(SLM_ERR_NOMEM, "out of memory for %zu embeddings", t->n_inputs);
    for (size_t i = 0; i < t->n_inputs; i++) {
        if (t->cancel && atomic_load(t->cancel))
            return slm_fail(SLM_ERR_CANCELLED, "cancelled after %zu of %zu inputs", i, t->n_inputs);
        SLM_TRY(slm_embed_tokens(s, t->ids[i], t->n_ids[i], t->pooling, 1,
                                 t->vecs + i * (size_t)t->dim));
        res->n_prompt_tokens += (int32_t)t->n_ids[i];
    }
    return SLM_OK;
}

/* Standard base64 of n bytes (malloc'd, NUL-terminated). */
static char *base64(const unsigned char *p, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *o = malloc((n + 2) / 3 * 4 + 1), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < n) v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n) v |= p[i + 2];
        *w++ = A[(v >> 18) & 63];
        *w++ = A[(v >> 12) & 63];
        *w++ = i + 1 < n ? A[(v >> 6) & 63] : '=';
        *w++ = i + 2 < n ? A[v & 63] : '=';
    }
    *w = '\0';
    return o;
}

char *srv_task_reply(const srv_task *t, const char *model_id) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = 1;
    if (t->kind == SRV_TASK_EMBED) {
        cJSON_AddStringToObject(o, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(o, "data");
        for (size_t i = 0; data && i < t->n_inputs && ok; i++) {
            const float *v = t->vecs + i * (size_t)t->dim;
            cJSON *it = cJSON_CreateObject();
            ok = it != NULL;
            if (!ok) break;
            cJSON_AddItemToArray(data, it);
            cJSON_AddStringToObject(it, "object", "embedding");
            cJSON_AddNumberToObject(it, "index", (double)i);
            if (t->base64) {
                /* little-endian float32, as OpenAI's clients decode it */
                unsigned char *b = malloc((size_t)t->dim * 4);
                char *s = NULL;
                if (b) {
                    for (int32_t d = 0; d < t->dim; d++) {
                        uint32_t u;
                        memcpy(&u, &v[d], 4);
                        for (int k = 0; k < 4; k++) b[4 * d + k] = (unsigned char)(u >> (8 * k));
                    }
                    s = base64(b, (size_t)t->dim * 4);
                }
                ok = s && cJSON_AddStringToObject(it, "embedding", s);
                free(b);
                free(s);
            } else {
                cJSON *arr = cJSON_AddArrayToObject(it, "embedding");
                for (int32_t d = 0; arr && d < t->dim; d++)
                    cJSON_AddItemToArray(arr, cJSON_CreateNumber(v[d]));
                ok = arr != NULL;
            }
        }
        ok = ok && data;
    } else {
        cJSON_AddStringToObject(o, "object", "classification");
        cJSON *arr = cJSON_AddArrayToObject(o, "labels");
        for (size_t k = 0; arr && k < t->cls.n_labels; k++) {
            const slm_label_score *e = &t->cls.labels[k];
            cJSON *it = cJSON_CreateObject();
            if (!it) break;
            cJSON_AddStringToObject(it, "label", e->label);
            cJSON_AddNumberToObject(it, "probability", e->probability);
            cJSON_AddNumberToObject(it, "logprob", e->logprob);
            cJSON_AddNumberToObject(it, "mean_logprob", e->mean_logprob);
            cJSON_AddNumberToObject(it, "tokens", e->n_tokens);
            cJSON_AddItemToArray(arr, it);
        }
        ok = arr != NULL;
    }
    cJSON_AddStringToObject(o, "model", model_id);
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (u) {
        cJSON_AddNumberToObject(u, "prompt_tokens", (double)t->prompt_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", (double)t->total_tokens);
    }
    char *js = ok && u ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return js;
}
