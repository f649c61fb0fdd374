/* Normalizers (Hugging Face `normalizers`): Prepend, Replace (literal), NFC,
 * NFD, Strip, applied in order to each piece of text between added tokens. */
#include <string.h>

#include "base/status.h"
#include "tokenizer/nfc.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

static slm_status replace_all(const tok_norm *n, const char *in, size_t len, tok_buf *out) {
    if (n->from_len == 0) return tok_buf_append(out, in, len);
    size_t i = 0;
    while (i < len) {
        const char *hit = NULL;
        if (len - i >= n->from_len) {
            const char *p = in + i;
            size_t left = len - i - n->from_len + 1;
            while (left > 0) {
                const char *q = memchr(p, n->from[0], left);
                if (!q) break;
                if (memcmp(q, n->from, n->from_len) == 0) {
                    hit = q;
                    break;
                }
                left -= (size_t)(q - p) + 1;
                p = q + 1;
            }
        }
        if (!hit) return tok_buf_append(out, in + i, len - i);
        SLM_TRY(tok_buf_append(out, in + i, (size_t)(hit - (in + i))));
        SLM_TRY(tok_buf_append(out, n->to, n->to_len));
        i = (size_t)(hit - in) + n->from_len;
    }
    return SLM_OK;
}

static slm_status strip(const tok_norm *n, const char *in, size_t len, tok_buf *out) {
    const uint8_t *s = (const uint8_t *)in;
    size_t a = 0, b = len;
    if (n->left) {
        while (a < b) {
            uint32_t cp;
            size_t l = tok_utf8_next(s + a, b - a, &cp);
            if (!tok_is_whitespace(cp)) break;
            a += l;
        }
    }
    if (n->right) {
        while (b > a) {
            size_t p = b - 1;
            for (int k = 0; k < 3 && p > a && (s[p] & 0xC0) == 0x80; k++) p--;
            uint32_t cp;
            size_t l = tok_utf8_next(s + p, b - p, &cp);
            if (p + l != b || !tok_is_whitespace(cp)) break;
            b = p;
        }
    }
    return tok_buf_append(out, in + a, b - a);
}

static slm_status apply(const tok_norm *n, const char *in, size_t len, tok_buf *out) {
    switch (n->kind) {
    case TOK_NORM_PREPEND:
        if (len == 0) return SLM_OK;
        SLM_TRY(tok_buf_append(out, n->to, n->to_len));
        return tok_buf_append(out, in, len);
    case TOK_NORM_REPLACE:
        return replace_all(n, in, len, out);
    case TOK_NORM_NFC:
        return tok_nfc_append(in, len, out);
    case TOK_NORM_NFD:
        return tok_nfd_append(in, len, out);
    case TOK_NORM_STRIP:
        return strip(n, in, len, out);
    }
    return slm_fail(SLM_ERR_INTERNAL, "tokenizer: unknown normalizer %d", (int)n->kind);
}

slm_status tok_normalize(tok_ctx *c, const char *text, size_t len) {
    const slm_tokenizer *t = c->t;
    const char *cur = text;
    size_t cur_len = len;
    for (int i = 0; i < t->n_norm; i++) {
        tok_buf *dst = &c->norm_tmp[i & 1];
        dst->len = 0;
        SLM_TRY(tok_buf_reserve(dst, cur_len));
        SLM_TRY(apply(&t->norm[i], cur, cur_len, dst));
        cur = dst->data;
        cur_len = dst->len;
    }
    return tok_buf_append(&c->work, cur, cur_len);
}
