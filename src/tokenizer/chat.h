/* Chat templates: render a conversation with a model's Jinja chat template
 * (or a built-in one) and tokenize the result so that message content never
 * turns into control tokens.
 *
 * Rendering follows Hugging Face transformers' apply_chat_template: the
 * variables are `messages` (a list of {"role", "content"} dicts),
 * `add_generation_prompt`, `bos_token`, `eos_token` (undefined when not
 * given), `tools` and `documents` (none); the functions raise_exception()
 * and strftime_now() (the real local time). The render marks every output
 * byte that came from message content: every string inside a message except
 * its "role" (content, tool-call arguments, names ...) counts as content.
 *
 * This header depends only on slm.h, so that tools can include it without
 * the internal include paths. */
#ifndef SLM_TOKENIZER_CHAT_H
#define SLM_TOKENIZER_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_tokenizer slm_tokenizer; /* tokenizer/tokenizer.h */
typedef struct gguf_file gguf_file;         /* format/gguf.h */

/* slm_chat_message {role, content} is declared in slm.h; a NULL content
 * renders as none. */

typedef struct slm_chat_render {
    char *text; /* NUL-terminated */
    size_t len;
    uint8_t *is_content; /* [len]: 1 = byte from message content */
} slm_chat_render;

slm_status slm_chat_render_template(const char *tmpl, size_t tmpl_len, const slm_chat_message *msgs,
                                    size_t n_msgs, int add_generation_prompt, const char *bos_token,
                                    const char *eos_token, slm_chat_render *out);

/* The same with the messages as JSON text: an array of message objects, which
 * may carry more fields than role and content (tool_calls, name, content as a
 * list of parts ...). `extra_vars_json` (may be NULL) is a JSON object of more
 * variables, e.g. {"enable_thinking": false, "tools": [...]}. */
slm_status slm_chat_render_json(const char *tmpl, size_t tmpl_len, const char *messages_json,
                                size_t messages_len, const char *extra_vars_json,
                                int add_generation_prompt, const char *bos_token,
                                const char *eos_token, slm_chat_render *out);

void slm_chat_render_free(slm_chat_render *r);

/* Built-in formats, by name: "chatml", "llama2", "llama3", "gemma", "mistral",
 * "phi3", "zephyr"; each a Jinja template rendered by the same interpreter.
 * NULL if unknown. */
const char *slm_chat_builtin(const char *name);
/* Names of the built-ins, NULL-terminated. */
const char *const *slm_chat_builtin_names(void);

/* The built-in whose markers a vocabulary's special tokens show: <|im_start|>
 * -> chatml, <|start_header_id|> -> llama3, <start_of_turn> -> gemma,
 * <|end|> with <|assistant|> -> phi3, <|assistant|> -> zephyr, [INST] ->
 * mistral, <s> (and nothing else) -> llama2. NULL if none fits. */
const char *slm_chat_guess_builtin(const char *const *special_token_texts, size_t n);

/* Encodes a render: template bytes with SLM_TOKENIZE_PARSE_SPECIAL, content
 * bytes without, so control-token text typed in a message stays text. When no
 * control-token text overlaps content, this is exactly the encoding of the
 * whole text with SLM_TOKENIZE_PARSE_SPECIAL (no BOS added: templates write
 * it). *ids is malloc'd. */
slm_status slm_chat_encode(const slm_tokenizer *tok, const slm_chat_render *r, int32_t **ids,
                           size_t *n_ids);

/* The same with the tokenizer of a GGUF file, or of a Hugging Face
 * tokenizer.json (tokenizer_config.json may be NULL): for tools that do not
 * otherwise load a tokenizer. */
slm_status slm_chat_encode_gguf(const gguf_file *f, const slm_chat_render *r, int32_t **ids,
                                size_t *n_ids);
slm_status slm_chat_encode_hf(const char *tokenizer_json, const char *tokenizer_config,
                              const slm_chat_render *r, int32_t **ids, size_t *n_ids);

/* From a Hugging Face tokenizer_config.json: chat_template (a string, or a list
 * of {name, template}: "default" is taken), else a chat_template.jinja file
 * beside it; bos_token/eos_token (strings or {"content": ...}). Each output is
 * malloc'd, or NULL when absent (a missing template is not an error). Any
 * output pointer may be NULL. */
slm_status slm_chat_template_from_hf_config(const char *path, char **tmpl, char **bos, char **eos);

/* tokenizer.chat_template of a GGUF file (malloc'd; NULL when absent). */
slm_status slm_chat_template_from_gguf(const gguf_file *f, char **tmpl);
/* Texts of the BOS and EOS tokens of a GGUF vocabulary (malloc'd; NULL when
 * the file names none). */
slm_status slm_chat_special_tokens_from_gguf(const gguf_file *f, char **bos, char **eos);

#endif
