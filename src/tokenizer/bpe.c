/* BPE by merge rank, as Hugging Face's BPE model (models/bpe/word.rs) does it:
 * a word's characters become symbols (unknown ones byte-fallback or <unk>),
 * then the pair of lowest rank (leftmost on ties) merges first, through a
 * heap (heap.c) over a linked list of symbols: O(n log n) per word. */
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_SYMS_MIN 64

slm_status tok_ctx_syms(tok_ctx *c, size_t n) {
    if (n <= c->cap_syms) return SLM_OK;
    size_t cap = c->cap_syms ? c->cap_syms : TOK_SYMS_MIN;
    while (cap < n) cap *= 2;
    tok_sym *p = realloc(c->syms, cap * sizeof *p);
    if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (%zu symbols)", n);
    c->syms = p;
    c->cap_syms = cap;
    return SLM_OK;
}

/* The merge of the pair (a, b): 1 with rank and merged id, else 0. */
static int find_merge(const slm_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    uint64_t v;
    if (!tok_u64map_get(&t->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, &v)) return 0;
    *rank = (uint32_t)(v >> 32);
    *id = (int32_t)(uint32_t)v;
    return 1;
}

static slm_status push_pair(tok_ctx *c, int32_t left) {
    const tok_sym *s = c->syms;
    int32_t right = s[left].next;
    uint32_t rank;
    int32_t id;
    if (right < 0 || !find_merge(c->t, s[left].id, s[right].id, &rank, &id)) return SLM_OK;
    return tok_heap_push(c, (uint64_t)rank << 32 | (uint32_t)left, id, 0);
}

typedef struct sym_builder {
    size_t n;
    int have_unk;
    uint32_t unk_len;
} sym_builder;

static void add_sym(tok_ctx *c, sym_builder *sb, int32_t id, uint32_t len) {
    tok_sym *s = &c->syms[sb->n];
    s->id = id;
    s->len = len;
    s->prev = (int32_t)sb->n - 1;
    s->next = (int32_t)sb->n + 1;
    sb->n++;
}

/* One character `cs` (cs_len bytes; `len` bytes of the word it stands for). */
static void add_char(tok_ctx *c, sym_builder *sb, int32_t id, const char *cs, size_t cs_len,
                     uint32_t len) {
    const slm_tokenizer *t = c->t;
    if (id >= 0) {
        if (sb->have_unk) {
            add_sym(c, sb, t->unk, sb->unk_len);
            sb->have_unk = 0;
        }
        add_sym(c, sb, id, len);
        return;
    }
    if (t->byte_fallback) {
        size_t k = 0;
        while (k < cs_len && t->byte_tok[(uint8_t)cs[k]] >= 0) k++;
        if (k == cs_len) { /* (a pending <unk> stays pending, as in Hugging Face) */
            for (k = 0; k < cs_len; k++) add_sym(c, sb, t->byte_tok[(uint8_t)cs[k]], 1);
            return;
        }
    }
    if (t->unk < 0) return; /* no <unk>: the character is dropped */
    if (sb->have_unk && t->fuse_unk) {
        sb->unk_len += len;
        return;
    }
    if (sb->have_unk) add_sym(c, sb, t->unk, sb->unk_len);
    sb->have_unk = 1;
    sb->unk_len = len;
}

static slm_status bpe_segment(tok_ctx *c, const char *word, size_t len);

slm_status tok_bpe_word(tok_ctx *c, const char *word, size_t len) {
    const slm_tokenizer *t = c->t;
    if (len == 0) return SLM_OK;
    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            c->scratch.len = 0;
            SLM_TRY(tok_buf_reserve(&c->scratch, 2 * len));
            for (size_t i = 0; i < len; i++) {
                uint8_t b = (uint8_t)word[i];
                memcpy(c->scratch.data + c->scratch.len, t->byte_chr[b], t->byte_chr_len[b]);
                c->scratch.len += t->byte_chr_len[b];
            }
            id = tok_lookup(t, c->scratch.data, c->scratch.len);
        } else {
            id = tok_lookup(t, word, len);
        }
        if (id >= 0) return tok_ids_push(&c->out, id);
    }

    if (!t->byte_level && t->meta_split) { /* cut where no merge can span */
        size_t start = 0;
        for (size_t i = 1; i < len; i++) {
            if ((uint8_t)word[i] != 0xE2 || !tok_meta_cut(t, word, len, i, 1)) continue;
            SLM_TRY(bpe_segment(c, word + start, i - start));
            start = i;
        }
        return bpe_segment(c, word + start, len - start);
    }
    return bpe_segment(c, word, len);
}

/* The merges over one word (or one independent part of it). */
static slm_status bpe_segment(tok_ctx *c, const char *word, size_t len) {
    const slm_tokenizer *t = c->t;
    /* a character gives at most one symbol per byte (byte fallback), plus a last <unk> */
    SLM_TRY(tok_ctx_syms(c, len + 1));
    sym_builder sb = {0};
    const uint8_t *w = (const uint8_t *)word;
    if (t->byte_level) {
        for (size_t i = 0; i < len; i++)
            add_char(c, &sb, t->byte_char_tok[w[i]], t->byte_chr[w[i]], t->byte_chr_len[w[i]], 1);
    } else {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t cl = tok_utf8_next(w + i, len - i, &cp);
            add_char(c, &sb, tok_lookup(t, word + i, cl), word + i, cl, (uint32_t)cl);
            i += cl;
        }
    }
    if (sb.have_unk) add_sym(c, &sb, t->unk, sb.unk_len);
    if (sb.n == 0) return SLM_OK;
    tok_sym *s = c->syms;
    s[sb.n - 1].next = -1;

    c->n_heap = 0;
    if (t->merges.count > 0) {
        for (size_t i = 0; i + 1 < sb.n; i++) {
            uint32_t rank;
            int32_t id;
            if (find_merge(t, s[i].id, s[i + 1].id, &rank, &id))
                SLM_TRY(tok_heap_append(c, (uint64_t)rank << 32 | (uint32_t)i, id, 0));
        }
        tok_heap_build(c);
    }
    tok_heap_item top;
    while (tok_heap_pop(c, &top)) {
        int32_t pos = (int32_t)(uint32_t)top.key;
        if (s[pos].len == 0 || s[pos].next < 0) continue;
        int32_t nx = s[pos].next;
        uint32_t rank;
        int32_t id;
        if (!find_merge(t, s[pos].id, s[nx].id, &rank, &id) || id != top.a) continue; /* stale */
        s[pos].id = id;
        s[pos].len += s[nx].len;
        s[pos].next = s[nx].next;
        s[nx].len = 0;
        if (s[pos].next >= 0) s[s[pos].next].prev = pos;
        if (s[pos].prev >= 0) SLM_TRY(push_pair(c, s[pos].prev));
        SLM_TRY(push_pair(c, pos));
    }
    SLM_TRY(tok_ids_reserve(&c->out, sb.n));
    for (int32_t i = 0; i >= 0; i = s[i].next) c->out.data[c->out.len++] = s[i].id;
    return SLM_OK;
}
