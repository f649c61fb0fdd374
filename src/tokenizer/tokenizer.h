/* Tokenizers: SentencePiece-style BPE with byte fallback ("llama" in GGUF) and
 * byte-level BPE with a pre-tokenizer regex ("gpt2" in GGUF). One struct,
 * filled from GGUF metadata (and, later, from tokenizer.json). */
#ifndef SLM_TOKENIZER_TOKENIZER_H
#define SLM_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "format/gguf.h"
#include "slm.h"

typedef struct slm_tokenizer slm_tokenizer;

typedef enum slm_tok_kind {
    SLM_TOK_SPM = 1, /* SentencePiece BPE: scores, U+2581 for space, <0xXX> byte fallback */
    SLM_TOK_BPE = 2  /* GPT-2 byte-level BPE: merges by rank, bytes mapped to printable chars */
} slm_tok_kind;

/* Token types as GGUF stores them (tokenizer.ggml.token_type). */
enum {
    SLM_TOKTYPE_NORMAL = 1,
    SLM_TOKTYPE_UNKNOWN = 2,
    SLM_TOKTYPE_CONTROL = 3,
    SLM_TOKTYPE_USER_DEFINED = 4,
    SLM_TOKTYPE_UNUSED = 5,
    SLM_TOKTYPE_BYTE = 6
};

/* Flags for encode: SLM_TOKENIZE_ADD_BOS and SLM_TOKENIZE_PARSE_SPECIAL (slm.h). */
/* Flags for decode. */
enum {
    SLM_DECODE_SPECIAL = 1,      /* render control tokens as their text (else nothing) */
    SLM_DECODE_STRIP_SPACE = 2   /* SPM: drop one leading space (start of a text) */
};

slm_status slm_tokenizer_from_gguf(const gguf_file *f, slm_tokenizer **out);
void slm_tokenizer_free(slm_tokenizer *t);

slm_tok_kind slm_tokenizer_kind(const slm_tokenizer *t);
const char *slm_tokenizer_kind_name(const slm_tokenizer *t); /* "llama" / "gpt2" */
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t);
int32_t slm_tokenizer_bos(const slm_tokenizer *t); /* -1 when none */
int32_t slm_tokenizer_eos(const slm_tokenizer *t);
int slm_tokenizer_add_bos(const slm_tokenizer *t);
int slm_tokenizer_add_eos(const slm_tokenizer *t);
/* End of generation: EOS, EOT, <|im_end|> and friends. */
int slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id);

/* Encodes into a malloc'd array. */
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, int flags,
                                int32_t **ids, size_t *n_ids);

/* Bytes token `id` contributes to decoded text; writes up to `cap` bytes to
 * buf and returns the full length (call again with a bigger buffer when it
 * exceeds cap). Out-of-range ids give 0. */
size_t slm_tokenizer_decode_token(const slm_tokenizer *t, int32_t id, int flags, char *buf,
                                  size_t cap);
/* Decodes a sequence into a malloc'd NUL-terminated string (STRIP_SPACE
 * applies to the first token only). */
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags,
                                char **text, size_t *len);

/* The raw vocabulary piece of a token (NULL when out of range). */
const char *slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, size_t *len);

#endif
