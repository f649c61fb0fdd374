/* The vocabulary: pieces, the piece -> id index, merges, specials, and the
 * accessors of tokenizer.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_POOL_MAX ((size_t)UINT32_MAX) /* pool offsets are 32-bit */
#define TOK_MERGE_STACK 256               /* a+b that fit this stay off the heap */

slm_status tok_new(slm_tok_kind kind, tok_model model, int32_t n_vocab, slm_tokenizer **out) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > TOK_MAX_VOCAB)
        return slm_fail(SLM_ERR_FORMAT, "tokenizer: %ld tokens (expected 1..%d)", (long)n_vocab,
                        TOK_MAX_VOCAB);
    slm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory");
    t->kind = kind;
    t->model = model;
    t->n_vocab = n_vocab;
    t->tok = slm_calloc((size_t)n_vocab, sizeof *t->tok);
    t->eog = slm_calloc(((size_t)n_vocab + 7) / 8, 1);
    if (!t->tok || !t->eog) {
        slm_tokenizer_free(t);
        return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory for %ld tokens", (long)n_vocab);
    }
    for (int32_t i = 0; i < n_vocab; i++) t->tok[i].type = SLM_TOKTYPE_UNUSED;
    t->unk = t->bos = t->eos = t->eot = t->eom = t->pad = -1;
    t->decoder = kind == SLM_TOK_BPE ? TOK_DEC_BYTELEVEL : TOK_DEC_SPM;
    t->dec_meta = kind == SLM_TOK_SPM;
    snprintf(t->kind_name, sizeof t->kind_name, "%s", kind == SLM_TOK_BPE ? "gpt2" : "llama");
    /* the empty string, shared by ids that never get a piece */
    slm_status st = tok_buf_push(&t->pool, '\0');
    if (st != SLM_OK) {
        slm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SLM_OK;
}

slm_status tok_set_token(slm_tokenizer *t, int32_t id, const char *text, size_t len, float score,
                         int type, unsigned flags) {
    if (id < 0 || id >= t->n_vocab)
        return slm_fail(SLM_ERR_FORMAT, "token id %ld out of range [0, %ld)", (long)id,
                        (long)t->n_vocab);
    if (len > TOK_MAX_PIECE)
        return slm_fail(SLM_ERR_FORMAT, "token %ld: piece of %zu bytes (at most %d)", (long)id, len,
                        TOK_MAX_PIECE);
    if (t->pool.len + len + 1 > TOK_POOL_MAX)
        return slm_fail(SLM_ERR_FORMAT, "tokenizer: pieces exceed %zu bytes", TOK_POOL_MAX);
    tok_entry *e = &t->tok[id];
    e->off = (uint32_t)t->pool.len;
    e->len = (uint32_t)len;
    SLM_TRY(tok_buf_append(&t->pool, text, len));
    SLM_TRY(tok_buf_push(&t->pool, '\0'));
    e->score = score;
    e->type = (uint8_t)type;
    e->flags = (uint8_t)(flags | TOK_F_DEFINED);
    return SLM_OK;
}

slm_status tok_index_pieces(slm_tokenizer *t) {
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->tok[i].flags & TOK_F_MODEL) n++;
    size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    free(t->slots);
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots) return slm_fail(SLM_ERR_NOMEM, "tokenizer: piece index of %zu slots", cap);
    for (size_t i = 0; i < cap; i++) t->slots[i] = (tok_piece_slot){-1, 0};
    t->slot_cap = cap;
    size_t mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->tok[id];
        if (!(e->flags & TOK_F_MODEL)) continue;
        const char *s = tok_piece(t, id);
        uint64_t h = tok_hash_bytes(s, e->len);
        uint32_t tag = (uint32_t)(h >> 32);
        size_t i = (size_t)h & mask;
        for (;;) {
            tok_piece_slot *sl = &t->slots[i];
            if (sl->id < 0) {
                *sl = (tok_piece_slot){id, tag};
                break;
            }
            if (sl->tag == tag && t->tok[sl->id].len == e->len &&
                memcmp(tok_piece(t, sl->id), s, e->len) == 0) {
                sl->id = id; /* a repeated piece: the last id wins */
                break;
            }
            i = (i + 1) & mask;
        }
    }
    return SLM_OK;
}

int32_t tok_lookup(const slm_tokenizer *t, const char *s, size_t n) {
    if (!t->slots) return -1;
    size_t mask = t->slot_cap - 1;
    uint64_t h = tok_hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & mask;
    for (;;) {
        const tok_piece_slot *sl = &t->slots[i];
        if (sl->id < 0) return -1;
        if (sl->tag == tag && t->tok[sl->id].len == n && memcmp(tok_piece(t, sl->id), s, n) == 0)
            return sl->id;
        i = (i + 1) & mask;
    }
}

slm_status tok_add_merge(slm_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                         int32_t rank, int overwrite, int *added) {
    *added = 0;
    if (rank < 0 || rank >= TOK_MAX_MERGES)
        return slm_fail(SLM_ERR_FORMAT, "merge %ld: at most %d merges", (long)rank, TOK_MAX_MERGES);
    int32_t ia = tok_lookup(t, a, alen), ib = tok_lookup(t, b, blen);
    if (ia < 0 || ib < 0) return SLM_OK;
    char stackbuf[TOK_MERGE_STACK];
    char *cat = alen + blen <= sizeof stackbuf ? stackbuf : malloc(alen + blen);
    if (!cat) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory");
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int32_t im = tok_lookup(t, cat, alen + blen);
    if (cat != stackbuf) free(cat);
    if (im < 0) return SLM_OK;
    if (t->merges.cap == 0) SLM_TRY(tok_u64map_init(&t->merges, 1024));
    uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
    uint64_t val = (uint64_t)(uint32_t)rank << 32 | (uint32_t)im;
    SLM_TRY(tok_u64map_put(&t->merges, key, val, overwrite));
    t->n_merges++;
    *added = 1;
    return SLM_OK;
}

slm_status tok_add_norm(slm_tokenizer *t, tok_norm_kind kind, const char *from, size_t from_len,
                        const char *to, size_t to_len) {
    if (t->n_norm >= TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "tokenizer: more than %d normalizers", TOK_MAX_STEPS);
    tok_norm *n = &t->norm[t->n_norm];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    if (from) {
        n->from = slm_strndup(from, from_len);
        n->from_len = from_len;
        if (!n->from) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (to) {
        n->to = slm_strndup(to, to_len);
        n->to_len = to_len;
        if (!n->to) {
            free(n->from);
            return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory");
        }
    }
    t->n_norm++;
    return SLM_OK;
}

slm_status tok_set_affixes(slm_tokenizer *t, const int32_t *prefix, int n_prefix,
                           const int32_t *suffix, int n_suffix) {
    if (n_prefix < 0 || n_prefix > TOK_MAX_AFFIX || n_suffix < 0 || n_suffix > TOK_MAX_AFFIX)
        return slm_fail(SLM_ERR_UNSUPPORTED, "tokenizer: more than %d tokens added around a text",
                        TOK_MAX_AFFIX);
    for (int i = 0; i < n_prefix; i++)
        if (prefix[i] < 0 || prefix[i] >= t->n_vocab)
            return slm_fail(SLM_ERR_FORMAT, "tokenizer: added token id %ld out of range",
                            (long)prefix[i]);
    for (int i = 0; i < n_suffix; i++)
        if (suffix[i] < 0 || suffix[i] >= t->n_vocab)
            return slm_fail(SLM_ERR_FORMAT, "tokenizer: added token id %ld out of range",
                            (long)suffix[i]);
    if (n_prefix) memcpy(t->prefix, prefix, (size_t)n_prefix * sizeof *prefix);
    if (n_suffix) memcpy(t->suffix, suffix, (size_t)n_suffix * sizeof *suffix);
    t->n_prefix = n_prefix;
    t->n_suffix = n_suffix;
    t->add_bos = n_prefix > 0;
    t->add_eos = n_suffix > 0;
    return SLM_OK;
}

/* Control tokens that end a turn whatever the metadata says. */
static const char *const k_eog_names[] = {
    "<|eot_id|>",    "<|eom_id|>", "<|im_end|>",           "<|end_of_text|>", "<|endoftext|>",
    "<end_of_turn>", "<|end|>",    "<|return|>",           "<|call|>",        "<EOT>",
    "<eos>",         "</s>",       "<|END_OF_TURN_TOKEN|>"};

static void set_eog(slm_tokenizer *t, int32_t id) {
    if (id >= 0 && id < t->n_vocab) t->eog[id >> 3] |= (uint8_t)(1u << (id & 7));
}

#define META "\xe2\x96\x81" /* U+2581 */
#define META_LEN 3

static int meta_at(const char *s, size_t n, size_t i) {
    return i + META_LEN <= n && memcmp(s + i, META, META_LEN) == 0;
}

/* The character ending just before s[pos] (pos > 0). */
static uint32_t cp_before(const char *s, size_t pos) {
    size_t p = pos - 1;
    for (int k = 0; k < 3 && p > 0 && ((uint8_t)s[p] & 0xC0) == 0x80; k++) p--;
    uint32_t cp;
    size_t l = tok_utf8_next((const uint8_t *)s + p, pos - p, &cp);
    return p + l == pos ? cp : TOK_CP_INVALID;
}

static void find_meta_cross(slm_tokenizer *t) {
    t->meta_split = 0;
    t->n_meta_cross = 0;
    if (tok_lookup(t, META, META_LEN) < 0) return;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->tok[id];
        if (!(e->flags & TOK_F_MODEL)) continue;
        const char *p = tok_piece(t, id);
        for (size_t i = 1; i + META_LEN <= e->len; i++) {
            if (!meta_at(p, e->len, i) || (i >= META_LEN && meta_at(p, e->len, i - META_LEN)))
                continue;
            uint32_t cp = cp_before(p, i);
            int known = 0;
            for (int k = 0; k < t->n_meta_cross; k++) known |= t->meta_cross[k] == cp;
            if (known) continue;
            if (t->n_meta_cross == TOK_MAX_CROSS || cp == TOK_CP_INVALID) return; /* no cuts */
            t->meta_cross[t->n_meta_cross++] = cp;
        }
    }
    t->meta_split = 1;
}

int tok_meta_cut(const slm_tokenizer *t, const char *word, size_t len, size_t pos, int known_left) {
    if (pos == 0 || !meta_at(word, len, pos)) return 0;
    if (pos >= META_LEN && meta_at(word, pos, pos - META_LEN)) return 0;
    uint32_t cp = cp_before(word, pos);
    if (cp == TOK_CP_INVALID) return 0;
    for (int k = 0; k < t->n_meta_cross; k++)
        if (t->meta_cross[k] == cp) return 0;
    if (known_left) {
        char u[4];
        if (tok_lookup(t, u, tok_utf8_encode(cp, u)) < 0) return 0;
    }
    return 1;
}

slm_status tok_finalize(slm_tokenizer *t) {
    if (!t->slots) SLM_TRY(tok_index_pieces(t));
    tok_trie_free(&t->raw_trie); /* rebuilt: finalizing twice is allowed */
    tok_trie_free(&t->norm_trie);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->tok[id];
        if (!(e->flags & TOK_F_ADDED) || e->len == 0) continue;
        tok_trie *tr = (e->flags & TOK_F_NORMALIZED) ? &t->norm_trie : &t->raw_trie;
        SLM_TRY(tok_trie_add(tr, tok_piece(t, id), e->len, id));
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_tok[b] = tok_lookup(t, name, 6);
        char u[4];
        size_t n = tok_utf8_encode(tok_byte_to_cp((uint8_t)b), u); /* 1 or 2 bytes */
        memcpy(t->byte_chr[b], u, n);
        t->byte_chr_len[b] = (uint8_t)n;
        t->byte_char_tok[b] = tok_lookup(t, u, n);
    }
    for (uint32_t cp = 0; cp < TOK_BYTE_CHARS; cp++) t->cp_byte[cp] = (int16_t)tok_cp_to_byte(cp);

    find_meta_cross(t);
    SLM_TRY(tok_build_decoded(t));

    memset(t->eog, 0, ((size_t)t->n_vocab + 7) / 8);
    set_eog(t, t->eos);
    set_eog(t, t->eot);
    set_eog(t, t->eom);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->tok[id];
        if (e->type != SLM_TOKTYPE_CONTROL) continue;
        for (size_t k = 0; k < sizeof k_eog_names / sizeof k_eog_names[0]; k++) {
            if (strlen(k_eog_names[k]) == e->len &&
                memcmp(k_eog_names[k], tok_piece(t, id), e->len) == 0)
                set_eog(t, id);
        }
    }
    return SLM_OK;
}

void slm_tokenizer_free(slm_tokenizer *t) {
    if (!t) return;
    free(t->tok);
    free(t->eog);
    tok_buf_free(&t->pool);
    tok_buf_free(&t->dec_pool);
    free(t->slots);
    tok_u64map_free(&t->merges);
    tok_trie_free(&t->raw_trie);
    tok_trie_free(&t->norm_trie);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].from);
        free(t->norm[i].to);
    }
    for (int i = 0; i < t->n_pt; i++) tok_pretok_free(&t->pt[i]);
    free(t);
}

/* ---- accessors ---------------------------------------------------------------- */

slm_tok_kind slm_tokenizer_kind(const slm_tokenizer *t) {
    return t->kind;
}
const char *slm_tokenizer_kind_name(const slm_tokenizer *t) {
    return t->kind_name;
}
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t) {
    return t->n_vocab;
}
int32_t slm_tokenizer_bos(const slm_tokenizer *t) {
    return t->bos;
}
int32_t slm_tokenizer_eos(const slm_tokenizer *t) {
    return t->eos;
}
int32_t slm_tokenizer_eot(const slm_tokenizer *t) {
    return t->eot;
}
int slm_tokenizer_add_bos(const slm_tokenizer *t) {
    return t->add_bos;
}
int slm_tokenizer_add_eos(const slm_tokenizer *t) {
    return t->add_eos;
}
int slm_tokenizer_decode_flags(const slm_tokenizer *t) {
    return t->decode_flags;
}

int slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    return (t->eog[id >> 3] >> (id & 7)) & 1;
}

int slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return 0;
    return t->tok[id].type;
}

const char *slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->tok[id].len;
    return tok_piece(t, id);
}

int32_t slm_tokenizer_token_id(const slm_tokenizer *t, const char *text, size_t len) {
    int32_t id = tok_lookup(t, text, len);
    if (id >= 0) return id;
    /* an added token outside the model vocabulary */
    for (int k = 0; k < 2; k++) {
        const tok_trie *tr = k == 0 ? &t->raw_trie : &t->norm_trie;
        if (tr->n_nodes == 0) continue;
        uint64_t node = 0;
        size_t i = 0;
        for (; i < len; i++) {
            uint64_t child;
            if (!tok_u64map_get(&tr->edges, node << 8 | (uint8_t)text[i], &child)) break;
            node = child;
        }
        if (i == len && tr->term[node] >= 0) return tr->term[node];
    }
    return -1;
}
