/* Strict line parsing shared by the signature and key file formats: every
 * line is "name: value\n", fields in a fixed order, nothing else allowed. */
#ifndef SLM_TRUST_TEXT_H
#define SLM_TRUST_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_text_cursor {
    const char *buf;
    size_t len;
    size_t pos;
    int line;         /* 1-based number of the next line */
    const char *name; /* file name for messages */
    const char *what; /* "signature file", "public key file", ... */
} slm_text_cursor;

/* The next line must be exactly `magic`. */
slm_status slm_text_magic(slm_text_cursor *c, const char *magic);
/* The next line must be "<field>: <value>"; value has no control bytes
 * (bytes < 0x20 or 0x7f) and at most max_len bytes. */
slm_status slm_text_field(slm_text_cursor *c, const char *field, size_t max_len, const char **value,
                          size_t *value_len);
/* Same, and the value is exactly 2*n lowercase hex digits. */
slm_status slm_text_hex(slm_text_cursor *c, const char *field, uint8_t *out, size_t n);
/* Same, and the value is a decimal integer <= max without leading zeros. */
slm_status slm_text_uint(slm_text_cursor *c, const char *field, uint64_t max, uint64_t *out);
/* Nothing may follow. */
slm_status slm_text_end(slm_text_cursor *c);

#endif
