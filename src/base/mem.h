/* Allocation with overflow-checked sizes. All return NULL on failure. */
#ifndef SLM_BASE_MEM_H
#define SLM_BASE_MEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* *out = a * b; returns 0 on overflow. */
static inline int slm_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int slm_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* calloc(n, size) that also refuses n*size > SIZE_MAX. */
static inline void *slm_calloc(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

/* Zeroed pages straight from the OS (an anonymous mapping): nothing is
 * touched until used, so memory grows with what is written, and
 * slm_pages_free returns it all. calloc gives no such promise: glibc
 * recycles freed heap blocks below its mmap threshold (raised at run time
 * up to 32 MiB) and then clears every byte at once. bytes > 0. */
void *slm_pages_alloc(size_t bytes);
void slm_pages_free(void *p, size_t bytes);

/* 64-byte aligned, zeroed; free with free(). */
void *slm_alloc_aligned(size_t n, size_t size);

char *slm_strndup(const char *s, size_t n);

#endif
