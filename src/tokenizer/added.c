/* Added tokens: a byte trie over their text, searched leftmost-longest as
 * Hugging Face's AddedVocabulary (Aho-Corasick, LeftmostLongest) does. */
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_TRIE_MIN_NODES 64
#define TOK_TRIE_MAX_NODES (1u << 28)

static slm_status new_node(tok_trie *tr, uint32_t *out) {
    if (tr->n_nodes == tr->cap_nodes) {
        uint32_t cap = tr->cap_nodes ? tr->cap_nodes * 2 : TOK_TRIE_MIN_NODES;
        if (cap > TOK_TRIE_MAX_NODES)
            return slm_fail(SLM_ERR_FORMAT, "tokenizer: added tokens exceed %u trie nodes",
                            TOK_TRIE_MAX_NODES);
        int32_t *p = realloc(tr->term, cap * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
        tr->term = p;
        tr->cap_nodes = cap;
    }
    tr->term[tr->n_nodes] = -1;
    *out = tr->n_nodes++;
    return SLM_OK;
}

slm_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t id) {
    if (n == 0) return SLM_OK;
    uint32_t node;
    if (tr->n_nodes == 0) {
        SLM_TRY(tok_u64map_init(&tr->edges, 256));
        SLM_TRY(new_node(tr, &node)); /* the root */
    }
    node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = (uint64_t)node << 8 | (uint8_t)s[i], child;
        if (tok_u64map_get(&tr->edges, key, &child)) {
            node = (uint32_t)child;
            continue;
        }
        uint32_t c;
        SLM_TRY(new_node(tr, &c));
        SLM_TRY(tok_u64map_put(&tr->edges, key, c, 1));
        node = c;
    }
    if (tr->term[node] < 0) tr->n_tokens++;
    tr->term[node] = id; /* the same text twice: the later id wins */
    tr->first[(uint8_t)s[0]] = 1;
    return SLM_OK;
}

void tok_trie_free(tok_trie *tr) {
    tok_u64map_free(&tr->edges);
    free(tr->term);
    memset(tr, 0, sizeof *tr);
}

/* Start of the character that ends just before `pos` (pos > 0). */
static size_t char_before(const char *text, size_t pos) {
    size_t p = pos - 1;
    for (int k = 0; k < 3 && p > 0 && ((uint8_t)text[p] & 0xC0) == 0x80; k++) p--;
    return p;
}

static uint32_t cp_at(const char *text, size_t len, size_t pos, size_t *clen) {
    uint32_t cp;
    *clen = tok_utf8_next((const uint8_t *)text + pos, len - pos, &cp);
    return cp;
}

/* Word characters for single_word tokens (Rust regex \w, approximately: ASCII
 * alphanumerics and '_', and non-ASCII characters other than spaces and
 * common punctuation blocks). */
static int is_word_char(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
               cp == '_';
    if (cp == TOK_CP_INVALID || tok_is_whitespace(cp)) return 0;
    if (cp >= 0xA0 && cp <= 0xBF) return cp == 0xAA || cp == 0xB5 || cp == 0xBA;
    if (cp == 0xD7 || cp == 0xF7) return 0;
    if (cp >= 0x2000 && cp <= 0x2BFF) return 0; /* punctuation, symbols, arrows */
    if (cp >= 0x3000 && cp <= 0x303F) return 0; /* CJK punctuation */
    if (cp >= 0xFF00 && cp <= 0xFF0F) return 0;
    return 1;
}

int tok_trie_find(const slm_tokenizer *t, const tok_trie *tr, const char *text, size_t len,
                  size_t from, int special, size_t *ms, size_t *me, int32_t *id) {
    if (tr->n_tokens == 0) return 0;
    size_t i = from;
    while (i < len) {
        if (!tr->first[(uint8_t)text[i]]) {
            i++;
            continue;
        }
        uint64_t node = 0;
        int32_t best = -1;
        size_t best_end = 0;
        for (size_t j = i; j < len; j++) {
            uint64_t child;
            if (!tok_u64map_get(&tr->edges, node << 8 | (uint8_t)text[j], &child)) break;
            node = child;
            int32_t tid = tr->term[node];
            if (tid >= 0 && (special || !(t->tok[tid].flags & TOK_F_SPECIAL))) {
                best = tid;
                best_end = j + 1;
            }
        }
        if (best < 0) {
            i++;
            continue;
        }
        unsigned fl = t->tok[best].flags;
        size_t s = i, e = best_end, clen;
        if (fl & TOK_F_SINGLE_WORD) {
            int word_before = s > 0 && is_word_char(cp_at(text, len, char_before(text, s), &clen));
            int word_after = e < len && is_word_char(cp_at(text, len, e, &clen));
            if (word_before || word_after) {
                i = e; /* as Aho-Corasick resumes after a rejected match */
                continue;
            }
        }
        if (fl & TOK_F_LSTRIP) {
            while (s > from) {
                size_t p = char_before(text, s);
                if (!tok_is_whitespace(cp_at(text, len, p, &clen))) break;
                s = p;
            }
        }
        if (fl & TOK_F_RSTRIP) {
            while (e < len) {
                uint32_t cp = cp_at(text, len, e, &clen);
                if (!tok_is_whitespace(cp)) break;
                e += clen;
            }
        }
        *ms = s;
        *me = e;
        *id = best;
        return 1;
    }
    return 0;
}
