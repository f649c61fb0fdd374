/* Grammar-constrained decoding: a GBNF grammar (llama.cpp's syntax) compiled
 * to byte-level rules, a pushdown matcher that walks output bytes, a token
 * trie over a tokenizer's decoded pieces for masking the sampler's logits,
 * and a JSON Schema -> GBNF converter.
 *
 * Character classes over code points are compiled to alternatives of UTF-8
 * byte sequences, so the matcher sees bytes only: a token that ends inside a
 * character simply leaves the matcher inside that character's sequence. */
#ifndef SLM_GRAMMAR_GRAMMAR_H
#define SLM_GRAMMAR_GRAMMAR_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"
#include "tokenizer/tokenizer.h"

typedef struct slm_grammar slm_grammar; /* compiled, read-only */
typedef struct slm_gmatch slm_gmatch;   /* matcher state and caches (one per session) */
typedef struct slm_gvocab slm_gvocab;   /* token trie of a tokenizer */

#define SLM_GRAMMAR_MAX_TEXT (1u << 20) /* grammar or schema source bytes */

/* Parses and compiles GBNF text; the start rule is `root`. Errors are
 * SLM_ERR_CONFIG with "grammar: line L col C: ..." messages. */
slm_status slm_grammar_parse(const char *text, size_t len, slm_grammar **out);
void slm_grammar_free(slm_grammar *g);
int32_t slm_grammar_n_rules(const slm_grammar *g);

/* JSON Schema (text) -> GBNF (malloc'd, NUL-terminated). Unsupported
 * keywords are SLM_ERR_CONFIG naming the keyword and its path in the
 * schema, e.g. "json_schema: /properties/a: 'uniqueItems' is not supported". */
slm_status slm_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf);
/* GBNF of any JSON object (response_format json_object). Static text. */
const char *slm_json_object_gbnf(void);

/* Matcher. */
slm_status slm_gmatch_new(const slm_grammar *g, slm_gmatch **out);
void slm_gmatch_free(slm_gmatch *m);
void slm_gmatch_reset(slm_gmatch *m); /* back to the start of `root` */
/* Advances over bytes; 0 when they are not a valid continuation (the state
 * is then unchanged). */
int slm_gmatch_accept_bytes(slm_gmatch *m, const char *s, size_t n);
/* 1 when the bytes so far are a complete sentence of the grammar. */
int slm_gmatch_is_accepting(const slm_gmatch *m);
/* 1 when complete and no byte can follow. */
int slm_gmatch_is_done(const slm_gmatch *m);
/* 1 when `s` would be accepted from the current state (state unchanged). */
int slm_gmatch_would_accept(slm_gmatch *m, const char *s, size_t n);

/* Token trie of a tokenizer's decoded pieces (decode flags 0, as the
 * generate loop emits them). Tokens that decode to nothing are never
 * allowed; end-of-generation tokens are allowed only where the grammar
 * accepts. */
slm_status slm_gvocab_new(const slm_tokenizer *tok, slm_gvocab **out);
void slm_gvocab_free(slm_gvocab *v);
int32_t slm_gvocab_n_vocab(const slm_gvocab *v);
/* The bytes a token emits (NULL, 0 for none). */
const char *slm_gvocab_bytes(const slm_gvocab *v, int32_t id, size_t *len);

/* Allowed tokens from the current state as a bitmap of (n_vocab + 31) / 32
 * words (bit i of word i/32 = token i). Returns the number of allowed tokens.
 * Masks are cached per matcher state. */
int32_t slm_gmatch_mask(slm_gmatch *m, const slm_gvocab *v, const uint32_t **bits);
/* Whether one token may come next (fast check, state unchanged). */
int slm_gmatch_token_ok(slm_gmatch *m, const slm_gvocab *v, int32_t id);
/* Advances over a token's bytes (0 when not allowed; EOG tokens advance
 * nothing and are allowed only when accepting). */
int slm_gmatch_accept_token(slm_gmatch *m, const slm_gvocab *v, int32_t id);

/* Counters for measurements. */
typedef struct slm_gmatch_stats {
    int64_t masks, cache_hits, trie_nodes_walked, nodes;
} slm_gmatch_stats;
void slm_gmatch_get_stats(const slm_gmatch *m, slm_gmatch_stats *st);

#endif
