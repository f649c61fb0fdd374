#include "tokenizer/tok_buf.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"

#define TOK_BUF_MIN_CAP 64

static slm_status grow(void **data, size_t *cap, size_t need, size_t elem) {
    size_t c = *cap ? *cap : TOK_BUF_MIN_CAP;
    while (c < need) {
        if (c > SIZE_MAX / 2)
            return slm_fail(SLM_ERR_NOMEM, "tokenizer: buffer of %zu items", need);
        c *= 2;
    }
    if (c > SIZE_MAX / elem) return slm_fail(SLM_ERR_NOMEM, "tokenizer: buffer of %zu items", need);
    void *p = realloc(*data, c * elem);
    if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", c * elem);
    *data = p;
    *cap = c;
    return SLM_OK;
}

slm_status tok_buf_reserve(tok_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return slm_fail(SLM_ERR_NOMEM, "tokenizer: text too long");
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return SLM_OK;
    void *p = b->data;
    slm_status st = grow(&p, &b->cap, need, 1);
    b->data = p;
    return st;
}

slm_status tok_buf_append(tok_buf *b, const void *p, size_t n) {
    SLM_TRY(tok_buf_reserve(b, n));
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SLM_OK;
}

slm_status tok_buf_push(tok_buf *b, char c) {
    return tok_buf_append(b, &c, 1);
}

void tok_buf_free(tok_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

slm_status tok_ids_reserve(tok_ids *v, size_t extra) {
    if (extra > SIZE_MAX - v->len) return slm_fail(SLM_ERR_NOMEM, "tokenizer: too many tokens");
    size_t need = v->len + extra;
    if (need <= v->cap) return SLM_OK;
    void *p = v->data;
    slm_status st = grow(&p, &v->cap, need, sizeof(int32_t));
    v->data = p;
    return st;
}

slm_status tok_ids_push(tok_ids *v, int32_t id) {
    if (v->len == v->cap) SLM_TRY(tok_ids_reserve(v, 1));
    v->data[v->len++] = id;
    return SLM_OK;
}

void tok_ids_free(tok_ids *v) {
    free(v->data);
    v->data = NULL;
    v->len = v->cap = 0;
}
