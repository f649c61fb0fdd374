#include "textbuf.h"

#include <string.h>

int slm_test_collect(void *user, const char *t, size_t n) {
    slm_test_text *b = user;
    if (b->n + n < sizeof b->s) {
        memcpy(b->s + b->n, t, n);
        b->n += n;
        b->s[b->n] = 0;
    }
    return 0;
}
