/* Open-addressing hash tables for the tokenizer (internal): uint64 -> uint64
 * (merge pairs, trie edges) and a byte-string hash. */
#ifndef SLM_TOKENIZER_HASHMAP_H
#define SLM_TOKENIZER_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define TOK_MAP_EMPTY UINT64_MAX /* reserved key */

typedef struct tok_u64slot {
    uint64_t key, val; /* together: one cache line holds both */
} tok_u64slot;

typedef struct tok_u64map {
    tok_u64slot *slots;
    size_t cap; /* power of two, or 0 */
    size_t count;
} tok_u64map;

/* Sizes the table for `expected` entries (it still grows when needed). */
slm_status tok_u64map_init(tok_u64map *m, size_t expected);
/* Inserts key -> val. An existing key keeps its value unless `overwrite`.
 * key must not be TOK_MAP_EMPTY. */
slm_status tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val, int overwrite);
/* 1 and *val when present, else 0. */
int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val);
void tok_u64map_free(tok_u64map *m);

uint64_t tok_hash_u64(uint64_t x);
uint64_t tok_hash_bytes(const void *p, size_t n);

#endif
