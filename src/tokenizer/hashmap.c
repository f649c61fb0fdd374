#include "tokenizer/hashmap.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"

#define TOK_MAP_MIN_CAP 16
#define TOK_MAP_MAX_CAP ((size_t)1 << 40)

uint64_t tok_hash_u64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ tok_hash_u64(w)) * 0xff51afd7ed558ccdULL;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ tok_hash_u64(w ^ 0xa0761d6478bd642fULL)) * 0xff51afd7ed558ccdULL;
    return tok_hash_u64(h);
}

static slm_status alloc_table(tok_u64map *m, size_t cap) {
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return slm_fail(SLM_ERR_NOMEM, "tokenizer: hash table of %zu entries", cap);
    memset(m->slots, 0xFF, cap * sizeof *m->slots); /* every key TOK_MAP_EMPTY */
    m->cap = cap;
    m->count = 0;
    return SLM_OK;
}

slm_status tok_u64map_init(tok_u64map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    size_t cap = TOK_MAP_MIN_CAP;
    while (cap < TOK_MAP_MAX_CAP && cap / 2 < expected + 1) cap *= 2;
    return alloc_table(m, cap);
}

static void insert_raw(tok_u64map *m, uint64_t key, uint64_t val) {
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash_u64(key) & mask;
    while (m->slots[i].key != TOK_MAP_EMPTY) i = (i + 1) & mask;
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->count++;
}

static slm_status rehash(tok_u64map *m) {
    tok_u64map old = *m;
    if (old.cap >= TOK_MAP_MAX_CAP) return slm_fail(SLM_ERR_NOMEM, "tokenizer: hash table full");
    SLM_TRY(alloc_table(m, old.cap ? old.cap * 2 : TOK_MAP_MIN_CAP));
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key != TOK_MAP_EMPTY) insert_raw(m, old.slots[i].key, old.slots[i].val);
    free(old.slots);
    return SLM_OK;
}

slm_status tok_u64map_put(tok_u64map *m, uint64_t key, uint64_t val, int overwrite) {
    if (key == TOK_MAP_EMPTY) return slm_fail(SLM_ERR_INTERNAL, "tokenizer: reserved hash key");
    if (m->cap == 0 || (m->count + 1) * 2 > m->cap) SLM_TRY(rehash(m));
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash_u64(key) & mask;
    while (m->slots[i].key != TOK_MAP_EMPTY) {
        if (m->slots[i].key == key) {
            if (overwrite) m->slots[i].val = val;
            return SLM_OK;
        }
        i = (i + 1) & mask;
    }
    m->slots[i].key = key;
    m->slots[i].val = val;
    m->count++;
    return SLM_OK;
}

int tok_u64map_get(const tok_u64map *m, uint64_t key, uint64_t *val) {
    if (m->cap == 0 || key == TOK_MAP_EMPTY) return 0;
    size_t mask = m->cap - 1;
    size_t i = (size_t)tok_hash_u64(key) & mask;
    for (;;) {
        const tok_u64slot *s = &m->slots[i];
        if (s->key == key) {
            *val = s->val;
            return 1;
        }
        if (s->key == TOK_MAP_EMPTY) return 0;
        i = (i + 1) & mask;
    }
}

void tok_u64map_free(tok_u64map *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}
