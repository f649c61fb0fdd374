/* Streaming detokenized text to a callback: never splits a UTF-8 character,
 * never drops bytes, holds back text that may be the start of a stop string. */
#ifndef SLM_RUNTIME_TEXT_STREAM_H
#define SLM_RUNTIME_TEXT_STREAM_H

#include <stddef.h>

#include "slm.h"

#define SLM_TEXT_STREAM_CAP 65536

typedef struct slm_text_stream {
    char *buf; /* pending bytes not yet given to the callback */
    size_t len;
    const char *const *stop; /* stop strings (not owned) */
    const size_t *stop_len;
    int n_stop;
    slm_token_fn fn;
    void *user;
    int stopped;   /* a stop string matched */
    int cancelled; /* the callback asked to stop */
} slm_text_stream;

slm_status slm_text_stream_init(slm_text_stream *ts);
void slm_text_stream_free(slm_text_stream *ts);
void slm_text_stream_reset(slm_text_stream *ts, const char *const *stop, const size_t *stop_len,
                           int n_stop, slm_token_fn fn, void *user);
/* Adds bytes; emits what is safe to emit. */
void slm_text_stream_push(slm_text_stream *ts, const char *bytes, size_t n);
/* Emits everything still pending (end of generation; nothing is dropped). */
void slm_text_stream_flush(slm_text_stream *ts);

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 character
 * boundary, holding back only an incomplete but so far valid final sequence. */
size_t slm_utf8_complete_prefix(const char *s, size_t n);

#endif
