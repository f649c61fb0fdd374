/* OpenAI request parsing and response building. Pure functions over cJSON:
 * no sockets, no threads, so they are tested on their own. */
#ifndef SLM_SERVE_OPENAI_H
#define SLM_SERVE_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct cJSON cJSON;

#define SRV_MAX_MESSAGES 4096
#define SRV_MAX_STOP 4 /* OpenAI's limit on stop sequences */
#define SRV_MAX_PROMPT_IDS (1 << 20)
#define SRV_ERRMSG_CAP 320
#define SRV_MAX_TOP_LOGPROBS_CHAT 20      /* OpenAI's top_logprobs limit */
#define SRV_MAX_TOP_LOGPROBS_COMPLETION 5 /* OpenAI's legacy logprobs limit */

typedef enum srv_kind { SRV_CHAT = 0, SRV_COMPLETION = 1 } srv_kind;

/* An error in OpenAI's shape plus its HTTP status. */
typedef struct srv_error {
    int http;
    const char *type;  /* "invalid_request_error", "server_error", ... */
    const char *code;  /* NULL or e.g. "context_length_exceeded" */
    const char *param; /* NULL or the request field at fault */
    char message[SRV_ERRMSG_CAP];
} srv_error;

/* Sets *e and returns -1. */
int srv_error_set(srv_error *e, int http, const char *type, const char *code, const char *param,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

typedef struct srv_request {
    srv_kind kind;
    int stream;
    int include_usage;  /* stream_options.include_usage */
    int echo;           /* completions: prepend the prompt */
    int32_t max_tokens; /* -1 = not given */
    int logprobs;       /* return log-probabilities */
    int top_logprobs;   /* alternatives per token (0..20 chat, 0..5 completions) */
    int route;          /* hybrid override: 0 auto, 1 "local", 2 "cloud" (slm_route) */
    cJSON *sampling;    /* config keys the request set (temperature, top_p, seed, stop, ...) */
    char *adapter;      /* "adapter": the LoRA adapter's name (slm serve --lora); NULL = none */
    /* chat */
    slm_chat_message *msgs;
    size_t n_msgs;
    /* completions: text, or token ids */
    char *prompt;
    size_t prompt_len;
    int32_t *prompt_ids;
    size_t n_prompt_ids;
} srv_request;

/* Parses and validates a request body (UTF-8 JSON object). On failure fills
 * *err (HTTP 400 with the field named) and returns -1; *out is then empty. */
int srv_parse_request(srv_kind kind, const char *body, size_t len, srv_request *out,
                      srv_error *err);
void srv_request_free(srv_request *r);

/* One generated token's log-probability and its most likely alternatives. */
typedef struct srv_tok_lp {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_ids[SRV_MAX_TOP_LOGPROBS_CHAT];
    float top_lp[SRV_MAX_TOP_LOGPROBS_CHAT];
} srv_tok_lp;

/* A token's text (bytes, possibly a partial UTF-8 character) into buf[cap];
 * returns its length (at most cap). */
typedef size_t (*srv_piece_fn)(void *user, int32_t id, char *buf, size_t cap);

/* The log-probabilities a response or chunk carries. */
typedef struct srv_logprobs {
    const srv_tok_lp *tok;
    size_t n;
    srv_piece_fn piece;
    void *piece_user;
    size_t text_offset; /* completions: byte offset of tok[0]'s text in the choice text; advanced
                           past the tokens written */
} srv_logprobs;

/* What a response says about a finished generation. */
typedef struct srv_reply {
    srv_kind kind;
    const char *id; /* "chatcmpl-..." / "cmpl-..." */
    const char *model;
    int64_t created;
    const char *finish; /* "stop", "length" or NULL (chunks before the last) */
    int32_t n_prompt, n_completion, n_cached;
    srv_logprobs *lp; /* NULL = "logprobs": null */
} srv_reply;

/* Whole (non-streamed) response body. malloc'd. */
char *srv_reply_json(const srv_reply *r, const char *text, size_t len);
/* One streamed chunk: text (may be empty), the first chunk of a chat carries
 * the role; finish set on the last. usage_only: the trailing usage chunk
 * (choices []). malloc'd JSON (without the "data: " framing). */
char *srv_chunk_json(const srv_reply *r, const char *text, size_t len, int first, int usage_only);
/* The "logprobs" object of a choice: chat {"content":[{token, logprob, bytes,
 * top_logprobs:[...]}], "refusal":null}, completions {tokens, token_logprobs,
 * top_logprobs, text_offset}. Advances lp->text_offset. */
cJSON *srv_logprobs_json(srv_kind kind, srv_logprobs *lp);
/* {"error":{"message","type","param","code"}}. malloc'd. */
char *srv_error_json(const srv_error *e);

/* 1 when s[0..n) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
int srv_utf8_valid(const char *s, size_t n);
/* A NUL-terminated copy with invalid sequences and NUL bytes replaced by
 * U+FFFD. malloc'd; *out_len may be NULL. */
char *srv_utf8_sanitize(const char *s, size_t n, size_t *out_len);
/* Compares in time that depends only on the length of `secret`. 1 = equal. */
int srv_secret_equal(const char *given, size_t given_len, const char *secret, size_t secret_len);

#endif
