/* Text -> ids: added tokens first, then normalizers, pre-tokenizers and the
 * model on each piece between them; BOS/EOS (or the post-processor's
 * template) around the whole. */
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"

#define TOK_IDS_RESERVE_MAX ((size_t)1 << 20) /* ids reserved up front at most */

static void ctx_free(tok_ctx *c) {
    tok_ids_free(&c->out);
    tok_buf_free(&c->work);
    tok_buf_free(&c->scratch);
    tok_buf_free(&c->norm_tmp[0]);
    tok_buf_free(&c->norm_tmp[1]);
    free(c->marks);
    free(c->spans[0]);
    free(c->spans[1]);
    free(c->syms);
    free(c->heap);
    if (c->md) pcre2_match_data_free(c->md);
    if (c->mctx) pcre2_match_context_free(c->mctx);
}

/* One piece of raw text between added tokens. */
static slm_status encode_piece(tok_ctx *c, const char *text, size_t len, int origin0, int special) {
    const slm_tokenizer *t = c->t;
    c->work.len = 0;
    SLM_TRY(tok_normalize(c, text, len));
    size_t nlen = c->work.len;
    if (t->norm_trie.n_tokens == 0) return tok_pretokenize_and_encode(c, 0, nlen, origin0);
    size_t pos = 0;
    while (pos < nlen) {
        size_t ms, me;
        int32_t id;
        /* c->work may move as pre-tokenizers append to it: re-read it each time */
        int found =
            tok_trie_find(t, &t->norm_trie, c->work.data, nlen, pos, special, &ms, &me, &id);
        size_t end = found ? ms : nlen;
        if (end > pos) SLM_TRY(tok_pretokenize_and_encode(c, pos, end - pos, origin0 && pos == 0));
        if (!found) break;
        SLM_TRY(tok_ids_push(&c->out, id));
        pos = me;
    }
    return SLM_OK;
}

static slm_status encode_text(tok_ctx *c, const char *text, size_t len, int special) {
    const slm_tokenizer *t = c->t;
    size_t pos = 0;
    while (pos < len) {
        size_t ms, me;
        int32_t id;
        int found = tok_trie_find(t, &t->raw_trie, text, len, pos, special, &ms, &me, &id);
        size_t end = found ? ms : len;
        if (end > pos) SLM_TRY(encode_piece(c, text + pos, end - pos, pos == 0, special));
        if (!found) break;
        SLM_TRY(tok_ids_push(&c->out, id));
        pos = me;
    }
    return SLM_OK;
}

slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, int flags,
                                int32_t **ids, size_t *n_ids) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len > 0))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_encode: NULL argument");
    if (len > TOK_MAX_TEXT)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "slm_tokenizer_encode: %zu bytes of text (at most %zu)", len, TOK_MAX_TEXT);
    tok_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    slm_status st = SLM_OK;
    if (t->n_pt > 0) {
        c.md = pcre2_match_data_create(1, NULL);
        c.mctx = pcre2_match_context_create(NULL);
        if (!c.md || !c.mctx)
            st = slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (regex match data)");
    }
    /* most text gives about a token per four bytes; the vector grows past that */
    size_t guess = len / 4 < TOK_IDS_RESERVE_MAX ? len / 4 : TOK_IDS_RESERVE_MAX;
    if (st == SLM_OK) st = tok_ids_reserve(&c.out, guess + TOK_MAX_AFFIX * 2 + 1);
    int add = (flags & SLM_TOKENIZE_ADD_BOS) != 0;
    for (int i = 0; add && st == SLM_OK && i < t->n_prefix; i++)
        st = tok_ids_push(&c.out, t->prefix[i]);
    if (st == SLM_OK && len > 0)
        st = encode_text(&c, text, len, (flags & SLM_TOKENIZE_PARSE_SPECIAL) != 0);
    for (int i = 0; add && st == SLM_OK && i < t->n_suffix; i++)
        st = tok_ids_push(&c.out, t->suffix[i]);
    if (st != SLM_OK) {
        ctx_free(&c);
        return st;
    }
    *ids = c.out.data;
    *n_ids = c.out.len;
    c.out.data = NULL;
    ctx_free(&c);
    return SLM_OK;
}
