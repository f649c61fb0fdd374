/* The cloud client's Server-Sent Events parser (src/hybrid/cloud.c): any
 * input is parsed without a crash, and the events do not depend on how the
 * bytes are split across reads (whole, in two at a point the input picks,
 * one byte at a time). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "hybrid/cloud.h"

typedef struct ev_sum {
    uint64_t hash; /* over the events' data, with separators */
    int n;
} ev_sum;

static int on_ev(void *user, const char *data, size_t len) {
    ev_sum *s = user;
    uint64_t h = s->hash ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)data[i]) * 0x100000001b3ull;
    s->hash = h * 31 + len;
    s->n++;
    return 0;
}

static ev_sum run(const uint8_t *data, size_t size, size_t step, size_t cut, int *done) {
    hy_sse p;
    hy_sse_init(&p);
    ev_sum s = {0, 0};
    if (cut > 0 && cut < size) {
        hy_sse_feed(&p, (const char *)data, cut, on_ev, &s);
        hy_sse_feed(&p, (const char *)data + cut, size - cut, on_ev, &s);
    } else {
        for (size_t i = 0; i < size; i += step) {
            size_t n = size - i < step ? size - i : step;
            hy_sse_feed(&p, (const char *)data + i, n, on_ev, &s);
        }
    }
    *done = p.done;
    hy_sse_free(&p);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    if (size > (1u << 16)) return 0;
    int d1 = 0, d2 = 0, d3 = 0;
    ev_sum whole = run(data, size, size ? size : 1, 0, &d1);
    ev_sum bytes = run(data, size, 1, 0, &d2);
    size_t cut = size ? (size_t)data[0] * size / 256 : 0;
    ev_sum two = run(data, size, size ? size : 1, cut, &d3);
    FUZZ_ASSERT(whole.n == bytes.n && whole.hash == bytes.hash && d1 == d2);
    FUZZ_ASSERT(whole.n == two.n && whole.hash == two.hash && d1 == d3);
    return 0;
}
