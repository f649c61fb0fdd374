/* Public model functions: load, describe, tokenize. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "model/model.h"
#include "quant/types.h"
#include "runtime/config.h"

slm_status slm_model_load(const char *path, const slm_config *cfg, slm_model **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_model_load: out is NULL");
    const char *trust_dir = cfg && cfg->require_signature ? cfg->trust_dir : NULL;
    return slm_model_open_ex(path, 0, cfg ? cfg->quant : NULL, trust_dir,
                             cfg ? cfg->weights : SLM_FILE_AUTO, out);
}

slm_status slm_model_inspect(const char *path, slm_model **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_model_inspect: out is NULL");
    return slm_model_open(path, 1, NULL, out);
}

void slm_model_free(slm_model *model) {
    slm_model_close(model);
}

slm_status slm_model_get_info(const slm_model *m, slm_model_info *out) {
    if (!m || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_model_get_info: NULL argument");
    memset(out, 0, sizeof *out);
    const slm_hparams *hp = &m->hp;
    out->arch = m->arch_name;
    out->name = m->name;
    out->n_vocab = hp->n_vocab;
    out->n_ctx_train = hp->n_ctx_train;
    out->dim = hp->dim;
    out->n_layers = hp->n_layers;
    out->n_heads = hp->n_heads;
    out->n_kv_heads = hp->n_kv_heads;
    out->ffn_dim = hp->ffn_dim;
    out->head_dim = hp->head_dim;
    out->rope_dim = hp->rope_dim;
    out->rope_base = hp->rope_base;
    out->norm_eps = hp->norm_eps;
    out->tied_output =
        m->inspect_only ? gguf_find_tensor(m->gguf, "output.weight") == NULL : m->tied_output;
    out->n_params = m->n_params;
    out->file_bytes = gguf_file_size(m->gguf);
    out->weight_bytes = m->weight_bytes;
    out->tokenizer = m->tok ? slm_tokenizer_kind_name(m->tok) : "none";
    out->weight_type = slm_type_name(m->weight_type);
    out->weights_copied = slm_file_copied(&m->map);
    return SLM_OK;
}

size_t slm_model_n_tensors(const slm_model *m) {
    return m ? (size_t)gguf_n_tensors(m->gguf) : 0;
}

slm_status slm_model_tensor(const slm_model *m, size_t i, slm_tensor_info *out) {
    if (!m || !out || i >= gguf_n_tensors(m->gguf))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_model_tensor: index out of range");
    const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
    out->name = m->tensor_names[i];
    out->type = slm_type_name(t->type);
    out->n_dims = (int)t->n_dims;
    for (int d = 0; d < 4; d++) out->ne[d] = (int64_t)t->ne[d];
    out->nbytes = t->nbytes;
    out->offset = (uint64_t)(t->data - gguf_base(m->gguf));
    return SLM_OK;
}

size_t slm_model_n_meta(const slm_model *m) {
    return m ? (size_t)gguf_n_kv(m->gguf) : 0;
}

/* Appends a JSON-style quoted string, truncated to fit. */
static void put_quoted(char *dst, size_t cap, size_t *at, const char *s, uint64_t n) {
    if (*at + 1 < cap) dst[(*at)++] = '"';
    for (uint64_t i = 0; i < n && *at + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            dst[(*at)++] = '\\';
            dst[(*at)++] = (char)c;
        } else if (c < 0x20) {
            *at += (size_t)snprintf(dst + *at, cap - *at, "\\u%04x", c);
        } else {
            dst[(*at)++] = (char)c;
        }
    }
    if (*at + 1 < cap) dst[(*at)++] = '"';
    dst[*at < cap ? *at : cap - 1] = '\0';
}

static void put_scalar(char *dst, size_t cap, gguf_vtype t, const uint8_t *p) {
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
    } v;
    static const uint8_t sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    memset(&v, 0, sizeof v);
    if ((unsigned)t < GGUF_VT_COUNT && sizes[t]) memcpy(&v, p, sizes[t]);
    switch (t) {
    case GGUF_VT_UINT8:
        snprintf(dst, cap, "%u", v.u8);
        break;
    case GGUF_VT_INT8:
        snprintf(dst, cap, "%d", v.i8);
        break;
    case GGUF_VT_UINT16:
        snprintf(dst, cap, "%u", v.u16);
        break;
    case GGUF_VT_INT16:
        snprintf(dst, cap, "%d", v.i16);
        break;
    case GGUF_VT_UINT32:
        snprintf(dst, cap, "%u", v.u32);
        break;
    case GGUF_VT_INT32:
        snprintf(dst, cap, "%d", v.i32);
        break;
    case GGUF_VT_FLOAT32:
        snprintf(dst, cap, "%g", (double)v.f32);
        break;
    case GGUF_VT_BOOL:
        snprintf(dst, cap, "%s", v.u8 ? "true" : "false");
        break;
    case GGUF_VT_UINT64:
        snprintf(dst, cap, "%llu", (unsigned long long)v.u64);
        break;
    case GGUF_VT_INT64:
        snprintf(dst, cap, "%lld", (long long)v.i64);
        break;
    case GGUF_VT_FLOAT64:
        snprintf(dst, cap, "%g", v.f64);
        break;
    default:
        snprintf(dst, cap, "?");
        break;
    }
}

slm_status slm_model_meta(const slm_model *m, size_t i, const char **key, char *value, size_t cap) {
    if (!m || !key || !value || cap == 0 || i >= gguf_n_kv(m->gguf))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_model_meta: bad argument or index");
    const gguf_kv *kv = gguf_kv_at(m->gguf, i);
    *key = m->meta_keys[i];
    size_t at = 0;
    value[0] = '\0';
    if (kv->type == GGUF_VT_STRING) {
        put_quoted(value, cap, &at, kv->str.ptr, kv->str.len);
    } else if (kv->type == GGUF_VT_ARRAY) {
        snprintf(value, cap, "[%llu x %s]", (unsigned long long)kv->arr_len,
                 gguf_vtype_name(kv->arr_type));
    } else {
        put_scalar(value, cap, kv->type, kv->data);
    }
    return SLM_OK;
}

slm_status slm_tokenize(const slm_model *m, const char *text, size_t len, int flags, int32_t **ids,
                        size_t *n_ids) {
    if (!m || !ids || !n_ids || (!text && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenize: NULL argument");
    if (!m->tok)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: the model has no usable tokenizer", m->path);
    return slm_tokenizer_encode(m->tok, text ? text : "", len, flags, ids, n_ids);
}

slm_status slm_detokenize(const slm_model *m, const int32_t *ids, size_t n_ids, char **text,
                          size_t *len) {
    if (!m || !text || (!ids && n_ids))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_detokenize: NULL argument");
    if (!m->tok)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: the model has no usable tokenizer", m->path);
    return slm_tokenizer_decode(m->tok, ids, n_ids, slm_tokenizer_decode_flags(m->tok), text, len);
}

const slm_tokenizer *slm_model_tokenizer(const slm_model *m) {
    return m ? m->tok : NULL;
}

int32_t slm_token_bos(const slm_model *m) {
    return m && m->tok ? slm_tokenizer_bos(m->tok) : -1;
}
int32_t slm_token_eos(const slm_model *m) {
    return m && m->tok ? slm_tokenizer_eos(m->tok) : -1;
}

const char *const *slm_providers_available(void) {
    static const char *names[16];
    static int done = 0;
    if (!done) {
        const slm_provider *const *all = slm_providers_all();
        int n = 0;
        for (int i = 0; all[i] && n < 15; i++)
            if (all[i]->available()) names[n++] = all[i]->name;
        names[n] = NULL;
        done = 1;
    }
    return names;
}
