/* UTF-8 and the GPT-2 byte-to-unicode mapping (the tokenizer's; the UTF-8
 * decoder and encoder are shared with the layers above it). */
#ifndef SLM_TOKENIZER_UNICODE_H
#define SLM_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define TOK_CP_INVALID 0xFFFFFFFFu /* a byte that starts no valid UTF-8 sequence */
#define TOK_CP_MAX 0x10FFFFu

/* Decodes the sequence at s[0, n) (n >= 1): returns its length (1..4) and the
 * code point. An invalid, overlong, surrogate or truncated sequence counts as
 * one byte with *cp = TOK_CP_INVALID. */
size_t tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp);
/* The same, checking only the shape: a lead byte (0xC0..0xF7) and enough
 * continuation bytes make a sequence whatever its value (overlong forms,
 * surrogates and values above TOK_CP_MAX pass). A byte that starts no such
 * sequence, or one cut short, counts as one byte that stands for itself
 * (*cp = s[0]). For text that is decoded leniently (grammars, templates). */
size_t tok_utf8_next_lax(const uint8_t *s, size_t n, uint32_t *cp);
/* Encodes cp into out; returns 1..4. cp <= TOK_CP_MAX, or up to 0x1FFFFF
 * for a value tok_utf8_next_lax decoded (it takes the 4-byte form back). */
size_t tok_utf8_encode(uint32_t cp, char out[4]);
/* Non-zero when s[0, n) is well-formed UTF-8. */
int tok_utf8_valid(const char *s, size_t n);

/* Unicode White_Space (what Rust's char::is_whitespace and Oniguruma's \s match). */
int tok_is_whitespace(uint32_t cp);

/* GPT-2 byte-level: byte -> code point (printable bytes map to themselves,
 * the rest to U+0100 onwards), and back (-1 for a code point no byte maps to). */
uint32_t tok_byte_to_cp(uint8_t b);
int tok_cp_to_byte(uint32_t cp);

#endif
