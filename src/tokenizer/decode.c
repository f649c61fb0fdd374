/* Ids -> text: the decoder of the tokenizer's source (SentencePiece: U+2581
 * -> space and <0xXX> -> byte; byte-level: GPT-2 chars -> bytes). Each
 * token's bytes are worked out once, when the tokenizer is finalized, so
 * decoding is a copy. Output is the raw bytes (a sequence cut inside a
 * character is not repaired). */
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_META_0 0xE2 /* U+2581 in UTF-8 */
#define TOK_META_1 0x96
#define TOK_META_2 0x81

typedef struct out_cursor {
    char *buf;
    size_t cap, pos;
    int strip;   /* drop the first byte when it is a space */
    int started; /* a byte has been put */
} out_cursor;

static void put(out_cursor *o, const char *s, size_t n) {
    if (n == 0) return;
    if (!o->started) {
        o->started = 1;
        if (o->strip && s[0] == ' ') {
            s++;
            n--;
        }
    }
    if (o->pos < o->cap) {
        size_t k = o->cap - o->pos < n ? o->cap - o->pos : n;
        memcpy(o->buf + o->pos, s, k);
    }
    o->pos += n;
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* "<0xXX>" -> the byte, else -1. */
static int byte_piece(const char *p, size_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return -1;
    int hi = hex_digit(p[3]), lo = hex_digit(p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static slm_status decode_bytelevel(const slm_tokenizer *t, const char *p, size_t n, tok_buf *out) {
    const uint8_t *s = (const uint8_t *)p;
    for (size_t i = 0; i < n;) { /* a token with a char outside the map is copied raw */
        uint32_t cp;
        i += tok_utf8_next(s + i, n - i, &cp);
        if (cp >= TOK_BYTE_CHARS || t->cp_byte[cp] < 0) return tok_buf_append(out, p, n);
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tok_utf8_next(s + i, n - i, &cp);
        SLM_TRY(tok_buf_push(out, (char)t->cp_byte[cp]));
    }
    return SLM_OK;
}

static slm_status decode_spm(const slm_tokenizer *t, const tok_entry *e, const char *p, size_t n,
                             tok_buf *out) {
    if (e->type == SLM_TOKTYPE_BYTE) {
        int b = byte_piece(p, n);
        if (b >= 0) return tok_buf_push(out, (char)b);
    }
    if (!t->dec_meta) return tok_buf_append(out, p, n);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        if (i + 2 < n && (uint8_t)p[i] == TOK_META_0 && (uint8_t)p[i + 1] == TOK_META_1 &&
            (uint8_t)p[i + 2] == TOK_META_2) {
            SLM_TRY(tok_buf_append(out, p + run, i - run));
            SLM_TRY(tok_buf_push(out, ' '));
            i += 3;
            run = i;
        } else {
            i++;
        }
    }
    return tok_buf_append(out, p + run, n - run);
}

slm_status tok_build_decoded(slm_tokenizer *t) {
    t->dec_pool.len = 0;
    SLM_TRY(tok_buf_reserve(&t->dec_pool, t->pool.len));
    for (int32_t id = 0; id < t->n_vocab; id++) {
        tok_entry *e = &t->tok[id];
        size_t start = t->dec_pool.len;
        const char *p = tok_piece(t, id);
        if (t->decoder == TOK_DEC_BYTELEVEL)
            SLM_TRY(decode_bytelevel(t, p, e->len, &t->dec_pool));
        else
            SLM_TRY(decode_spm(t, e, p, e->len, &t->dec_pool));
        if (t->dec_pool.len > UINT32_MAX)
            return slm_fail(SLM_ERR_FORMAT, "tokenizer: decoded pieces exceed %u bytes",
                            (unsigned)UINT32_MAX);
        e->dec_off = (uint32_t)start;
        e->dec_len = (uint32_t)(t->dec_pool.len - start);
    }
    return SLM_OK;
}

static size_t decode_into(const slm_tokenizer *t, int32_t id, int flags, out_cursor *o) {
    if (id < 0 || id >= t->n_vocab) return 0;
    const tok_entry *e = &t->tok[id];
    if (!(e->flags & TOK_F_DEFINED)) return 0;
    if ((e->type == SLM_TOKTYPE_CONTROL || e->type == SLM_TOKTYPE_UNKNOWN ||
         e->type == SLM_TOKTYPE_UNUSED) &&
        !(flags & SLM_DECODE_SPECIAL))
        return 0;
    size_t start = o->pos;
    put(o, t->dec_pool.data + e->dec_off, e->dec_len);
    return o->pos - start;
}

size_t slm_tokenizer_decode_token(const slm_tokenizer *t, int32_t id, int flags, char *buf,
                                  size_t cap) {
    if (!t) return 0;
    out_cursor o = {buf, buf ? cap : 0, 0, (flags & SLM_DECODE_STRIP_SPACE) != 0, 0};
    return decode_into(t, id, flags, &o);
}

slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags,
                                char **text, size_t *len) {
    if (text) *text = NULL;
    if (len) *len = 0;
    if (!t || !text || (!ids && n > 0))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_decode: NULL argument");
    int strip = (flags & SLM_DECODE_STRIP_SPACE) != 0;
    out_cursor count = {NULL, 0, 0, strip, 0};
    for (size_t i = 0; i < n; i++) decode_into(t, ids[i], flags, &count);
    char *buf = malloc(count.pos + 1);
    if (!buf) return slm_fail(SLM_ERR_NOMEM, "slm_tokenizer_decode: %zu bytes", count.pos + 1);
    out_cursor o = {buf, count.pos, 0, strip, 0};
    for (size_t i = 0; i < n; i++) decode_into(t, ids[i], flags, &o);
    buf[o.pos] = '\0';
    *text = buf;
    if (len) *len = o.pos;
    return SLM_OK;
}
