/* Generated text collected for a test: a slm_token_fn that appends what it is
 * given to a fixed buffer, kept NUL-terminated (text past the buffer is
 * dropped). */
#ifndef SLM_TEST_TEXTBUF_H
#define SLM_TEST_TEXTBUF_H

#include <stddef.h>

typedef struct slm_test_text {
    char s[65536];
    size_t n;
} slm_test_text;

/* user: a slm_test_text (start it zeroed); returns 0 (never cancels). */
int slm_test_collect(void *user, const char *t, size_t n);

#endif
