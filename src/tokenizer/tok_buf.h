/* Growable byte buffers and id vectors for the tokenizer (internal). */
#ifndef SLM_TOKENIZER_TOK_BUF_H
#define SLM_TOKENIZER_TOK_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct tok_buf {
    char *data;
    size_t len, cap;
} tok_buf;

typedef struct tok_ids {
    int32_t *data;
    size_t len, cap;
} tok_ids;

/* Makes room for `extra` more bytes (plus a NUL). */
slm_status tok_buf_reserve(tok_buf *b, size_t extra);
slm_status tok_buf_append(tok_buf *b, const void *p, size_t n);
slm_status tok_buf_push(tok_buf *b, char c);
void tok_buf_free(tok_buf *b);

slm_status tok_ids_reserve(tok_ids *v, size_t extra);
slm_status tok_ids_push(tok_ids *v, int32_t id);
void tok_ids_free(tok_ids *v);

#endif
