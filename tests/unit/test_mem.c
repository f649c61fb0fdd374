/* base/mem: overflow-checked sizes, and slm_pages_alloc's promise that no
 * page is touched until written (the K/V cache relies on it so that memory
 * grows with the context used): counted with mincore, across an
 * allocate-free-allocate cycle of the size that glibc's calloc recycles and
 * clears in full. */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/mem.h"
#include "check.h"

/* Pages of [p, p + bytes) resident now; -1 when mincore fails. */
static long resident_pages(void *p, size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (bytes + page - 1) / page;
    unsigned char *vec = malloc(n);
    if (!vec) return -1;
    long count = -1;
    if (mincore(p, bytes, vec) == 0) {
        count = 0;
        for (size_t i = 0; i < n; i++) count += vec[i] & 1;
    }
    free(vec);
    return count;
}

int main(void) {
    uint64_t r = 0;
    CHECK(slm_mul_ok(1u << 20, 1u << 20, &r) && r == 1ull << 40);
    CHECK(!slm_mul_ok(UINT64_MAX / 2, 3, &r));
    CHECK(slm_calloc(SIZE_MAX / 2, 4) == NULL);

    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t bytes = 24u << 20; /* one K or V cache of a 0.5B model at 4096 positions */
    CHECK(slm_pages_alloc(0) == NULL);
    for (int round = 0; round < 2; round++) {
        uint8_t *p = slm_pages_alloc(bytes);
        CHECK(p != NULL && (uintptr_t)p % page == 0);
        if (!p) break;
        long before = resident_pages(p, bytes);
        CHECK_MSG(before == 0, "round %d: %ld pages resident before any write", round, before);
        p[0] = 1;
        p[bytes / 2] = 2;
        p[bytes - 1] = 3;
        long after = resident_pages(p, bytes);
        CHECK_MSG(after == 3, "round %d: %ld pages resident after writing 3", round, after);
        int zero = 1;
        for (size_t i = 1; i < bytes / 2; i += page / 2) zero &= p[i] == 0;
        CHECK(zero && p[0] == 1 && p[bytes / 2] == 2 && p[bytes - 1] == 3);
        slm_pages_free(p, bytes);
    }
    slm_pages_free(NULL, 0);
    return check_finish();
}
