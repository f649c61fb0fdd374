/* The merge queue: a 4-ary min-heap of (key, a, b). Four children per node
 * halve the depth of a binary heap and keep siblings in one cache line, which
 * matters for the long words of SentencePiece-style text. */
#include <stdlib.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"

#define TOK_HEAP_MIN 64
#define TOK_HEAP_ARITY 4

static slm_status grow(tok_ctx *c) {
    if (c->n_heap < c->cap_heap) return SLM_OK;
    size_t cap = c->cap_heap ? c->cap_heap * 2 : TOK_HEAP_MIN;
    tok_heap_item *p = realloc(c->heap, cap * sizeof *p);
    if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (merge queue)");
    c->heap = p;
    c->cap_heap = cap;
    return SLM_OK;
}

static void sift_down(tok_heap_item *h, size_t n, size_t i) {
    tok_heap_item x = h[i];
    for (;;) {
        size_t first = TOK_HEAP_ARITY * i + 1;
        if (first >= n) break;
        size_t last = first + TOK_HEAP_ARITY < n ? first + TOK_HEAP_ARITY : n;
        size_t m = first;
        for (size_t k = first + 1; k < last; k++)
            if (h[k].key < h[m].key) m = k;
        if (x.key <= h[m].key) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
}

slm_status tok_heap_append(tok_ctx *c, uint64_t key, int32_t a, int32_t b) {
    SLM_TRY(grow(c));
    c->heap[c->n_heap++] = (tok_heap_item){key, a, b};
    return SLM_OK;
}

void tok_heap_build(tok_ctx *c) {
    size_t n = c->n_heap;
    if (n < 2) return;
    for (size_t i = (n - 2) / TOK_HEAP_ARITY + 1; i-- > 0;) sift_down(c->heap, n, i);
}

slm_status tok_heap_push(tok_ctx *c, uint64_t key, int32_t a, int32_t b) {
    SLM_TRY(grow(c));
    tok_heap_item *h = c->heap;
    size_t i = c->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / TOK_HEAP_ARITY;
        if (h[parent].key <= key) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = (tok_heap_item){key, a, b};
    return SLM_OK;
}

int tok_heap_pop(tok_ctx *c, tok_heap_item *out) {
    if (c->n_heap == 0) return 0;
    *out = c->heap[0];
    c->heap[0] = c->heap[--c->n_heap];
    if (c->n_heap > 1) sift_down(c->heap, c->n_heap, 0);
    return 1;
}
