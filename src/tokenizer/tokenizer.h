/* Tokenizers: SentencePiece-style BPE with byte fallback ("llama" in GGUF) and
 * byte-level BPE with a pre-tokenizer regex ("gpt2" in GGUF). One struct,
 * filled from GGUF metadata or from a Hugging Face tokenizer.json; encoding
 * and decoding reproduce llama.cpp (GGUF) and Hugging Face `tokenizers`
 * (tokenizer.json). A tokenizer is read-only once loaded: any number of
 * threads may encode and decode with it at once. */
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
/* Flags for decode: SLM_DECODE_SPECIAL and SLM_DECODE_STRIP_SPACE (slm.h). */

slm_status slm_tokenizer_from_gguf(const gguf_file *f, slm_tokenizer **out);
/* From a Hugging Face tokenizer.json (BPE models: Llama 2/3, Mistral, Qwen,
 * Gemma, GPT-2 ...). tokenizer_config.json (may be NULL) gives bos_token and
 * eos_token; what SLM_TOKENIZE_ADD_BOS adds comes from tokenizer.json's
 * post_processor, as `encode(add_special_tokens=True)` does. Unsupported
 * normalizers, pre-tokenizers or models fail with SLM_ERR_UNSUPPORTED naming them. */
slm_status slm_tokenizer_from_hf_json(const char *path_tokenizer_json,
                                      const char *path_tokenizer_config, slm_tokenizer **out);
/* The same from memory; `name` is used in messages. config may be NULL. */
slm_status slm_tokenizer_from_hf_json_text(const char *json, size_t len, const char *config,
                                           size_t config_len, const char *name,
                                           slm_tokenizer **out);
void slm_tokenizer_free(slm_tokenizer *t);

slm_tok_kind slm_tokenizer_kind(const slm_tokenizer *t);
const char *slm_tokenizer_kind_name(const slm_tokenizer *t); /* "llama" / "gpt2" */
int32_t slm_tokenizer_n_vocab(const slm_tokenizer *t);
int32_t slm_tokenizer_bos(const slm_tokenizer *t); /* -1 when none */
int32_t slm_tokenizer_eos(const slm_tokenizer *t);
int32_t slm_tokenizer_eot(const slm_tokenizer *t); /* end of turn, -1 when none */
int slm_tokenizer_add_bos(const slm_tokenizer *t);
int slm_tokenizer_add_eos(const slm_tokenizer *t);
/* End of generation: EOS, EOT, <|im_end|> and friends. */
int slm_tokenizer_is_eog(const slm_tokenizer *t, int32_t id);
/* SLM_TOKTYPE_* of a token (0 when out of range). */
int slm_tokenizer_token_type(const slm_tokenizer *t, int32_t id);
/* Id of a piece (model vocabulary or added token), -1 when there is none. */
int32_t slm_tokenizer_token_id(const slm_tokenizer *t, const char *text, size_t len);
/* Decode flags that reproduce the tokenizer's own decoder: SLM_DECODE_STRIP_SPACE
 * for SentencePiece vocabularies that prepend a space (llama.cpp's
 * remove_space, Hugging Face's Strip decoder), else 0. */
int slm_tokenizer_decode_flags(const slm_tokenizer *t);

/* Encodes into a malloc'd array. SLM_TOKENIZE_PARSE_SPECIAL lets control
 * tokens (and <unk>) written in the text be matched; user-defined added
 * tokens are matched always, as in llama.cpp and Hugging Face. Text need not
 * be valid UTF-8: a byte that starts no valid sequence stands for itself. */
slm_status slm_tokenizer_encode(const slm_tokenizer *t, const char *text, size_t len, int flags,
                                int32_t **ids, size_t *n_ids);

/* Bytes token `id` contributes to decoded text; writes up to `cap` bytes to
 * buf and returns the full length (call again with a bigger buffer when it
 * exceeds cap). Out-of-range ids give 0. */
size_t slm_tokenizer_decode_token(const slm_tokenizer *t, int32_t id, int flags, char *buf,
                                  size_t cap);
/* Decodes a sequence into a malloc'd NUL-terminated string (STRIP_SPACE
 * drops one leading space of the whole text, as Hugging Face's Strip decoder
 * does; in decode_token it drops one of that token). */
slm_status slm_tokenizer_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags,
                                char **text, size_t *len);

/* The raw vocabulary piece of a token (NULL when out of range). */
const char *slm_tokenizer_piece(const slm_tokenizer *t, int32_t id, size_t *len);

#endif
