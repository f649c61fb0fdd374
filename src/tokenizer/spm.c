/* SentencePiece-style BPE by piece score, as llama.cpp's llm_tokenizer_spm
 * does it for GGUF "llama" vocabularies: the word's UTF-8 characters are
 * symbols; the adjacent pair whose concatenation is a piece with the highest
 * score merges first (leftmost on ties); symbols that are no piece become
 * <0xXX> byte tokens. A heap over a linked list: O(n log n). */
#include <string.h>

#include "base/fp16.h"
#include "base/status.h"
#include "tokenizer/tok_internal.h"

/* Sequence length from a lead byte, as llama.cpp's unicode_len_utf8. */
static size_t lead_len(uint8_t b) {
    static const uint8_t k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[b >> 4];
}

/* Heap key: highest score first, then leftmost. */
static uint64_t score_key(float score, int32_t left) {
    uint32_t u = slm_f32_to_bits(score);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending as the floats */
    return (uint64_t)(~u) << 32 | (uint32_t)left;
}

/* `bulk`: appended unordered, for tok_heap_build. */
static slm_status try_bigram(tok_ctx *c, const char *word, int32_t left, int32_t right, int bulk) {
    if (left < 0 || right < 0) return SLM_OK;
    const tok_sym *s = c->syms;
    uint32_t size = s[left].len + s[right].len;
    int32_t id = tok_lookup(c->t, word + s[left].id, size);
    if (id < 0) return SLM_OK;
    uint64_t key = score_key(c->t->tok[id].score, left);
    return bulk ? tok_heap_append(c, key, right, (int32_t)size)
                : tok_heap_push(c, key, right, (int32_t)size);
}

static slm_status spm_segment(tok_ctx *c, const char *word, size_t len);

slm_status tok_spm_word(tok_ctx *c, const char *word, size_t len) {
    const slm_tokenizer *t = c->t;
    if (len == 0) return SLM_OK;
    if (t->meta_split) { /* cut where no merge can span */
        size_t start = 0;
        for (size_t i = 1; i < len; i++) {
            if ((uint8_t)word[i] != 0xE2 || !tok_meta_cut(t, word, len, i, 0)) continue;
            SLM_TRY(spm_segment(c, word + start, i - start));
            start = i;
        }
        return spm_segment(c, word + start, len - start);
    }
    return spm_segment(c, word, len);
}

static slm_status spm_segment(tok_ctx *c, const char *word, size_t len) {
    const slm_tokenizer *t = c->t;
    SLM_TRY(tok_ctx_syms(c, len));
    tok_sym *s = c->syms;
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t l = lead_len((uint8_t)word[off]);
        if (l > len - off) l = len - off;
        s[n] = (tok_sym){(int32_t)off, n - 1, n + 1, (uint32_t)l};
        off += l;
        n++;
    }
    s[n - 1].next = -1;
    c->n_heap = 0;
    for (int32_t i = 1; i < n; i++) SLM_TRY(try_bigram(c, word, i - 1, i, 1));
    tok_heap_build(c);
    tok_heap_item top;
    while (tok_heap_pop(c, &top)) {
        int32_t left = (int32_t)(uint32_t)top.key, right = top.a;
        if (s[left].len == 0 || s[right].len == 0 || s[left].len + s[right].len != (uint32_t)top.b)
            continue; /* one side has changed since */
        s[left].len += s[right].len;
        s[right].len = 0;
        s[left].next = s[right].next;
        if (s[right].next >= 0) s[s[right].next].prev = left;
        SLM_TRY(try_bigram(c, word, s[left].prev, left, 0));
        SLM_TRY(try_bigram(c, word, left, s[left].next, 0));
    }
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        const char *p = word + s[i].id;
        int32_t id = tok_lookup(t, p, s[i].len);
        if (id >= 0) {
            SLM_TRY(tok_ids_push(&c->out, id));
            continue;
        }
        for (uint32_t k = 0; k < s[i].len; k++) { /* byte fallback */
            uint8_t b = (uint8_t)p[k];
            int32_t bid = t->byte_tok[b];
            if (bid < 0) bid = tok_lookup(t, p + k, 1);
            if (bid < 0) bid = t->unk;
            if (bid >= 0) SLM_TRY(tok_ids_push(&c->out, bid));
        }
    }
    return SLM_OK;
}
