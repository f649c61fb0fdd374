/* The cloud client: OpenAI-compatible POST {base_url}/chat/completions over
 * libcurl (HTTP/1.1, TLS verified, proxies from the environment), streamed
 * (Server-Sent Events) or whole, with connect / first-byte / total timeouts,
 * retries with exponential backoff and full jitter, and a circuit breaker.
 * Every failure is classified into a short cause (hy_cloud_out.cause):
 *   refused, dns, tls, timeout, http_429, http_4xx, http_5xx, http_<code>,
 *   malformed_response, truncated_response, truncated_stream, cloud_error,
 *   breaker_open, network, cancelled. */
#ifndef SLM_HYBRID_CLOUD_H
#define SLM_HYBRID_CLOUD_H

#include <stddef.h>
#include <stdint.h>

#include "hybrid/hy_config.h"
#include "slm.h"

/* ---- SSE parsing (exposed for tests) ---- */
typedef struct hy_sse {
    char *line;
    size_t len, cap;
    char *data;
    size_t dlen, dcap;
    int has_data;
    int after_cr; /* the last byte was a CR: a following LF belongs to it */
    int done;     /* "data: [DONE]" seen */
    int n_events;
} hy_sse;
#define HY_SSE_MAX_LINE (4u << 20)
/* Called with each event's data (the "data:" lines joined with '\n');
 * non-zero stops the parse and is returned by hy_sse_feed. */
typedef int (*hy_sse_event_fn)(void *user, const char *data, size_t len);
void hy_sse_init(hy_sse *s);
void hy_sse_free(hy_sse *s);
/* Feeds bytes as they arrive (any split). 0, the callback's non-zero value,
 * or -1 when a line is too long or memory runs out. Events after [DONE] are
 * ignored. */
int hy_sse_feed(hy_sse *s, const char *buf, size_t n, hy_sse_event_fn fn, void *user);

/* ---- the client ---- */
typedef struct hy_cloud hy_cloud;

/* Reads the API key (environment variable or file) now; fails with
 * SLM_ERR_CONFIG when the named variable or file is missing or empty. */
slm_status hy_cloud_new(const hy_cloud_cfg *cfg, hy_cloud **out);
void hy_cloud_free(hy_cloud *c);
/* "host:port" of base_url (for the audit log). */
const char *hy_cloud_host(const hy_cloud *c);
const hy_cloud_cfg *hy_cloud_config(const hy_cloud *c);

/* Text as it arrives (streamed: each delta; whole: once). Non-zero aborts. */
typedef int (*hy_text_fn)(void *user, const char *text, size_t len);

typedef struct hy_cloud_req {
    const char *body; /* the JSON request body (model, messages, stream, ...) */
    size_t body_len;
    int stream;         /* the body asks for "stream": true */
    double deadline_ms; /* slm_now_ms() by which everything must have ended */
    hy_text_fn on_text; /* may be NULL */
    void *user;
    int (*cancelled)(void *cancel_user); /* polled; non-zero aborts ("cancelled"); may be NULL */
    void *cancel_user;
} hy_cloud_req;

typedef struct hy_cloud_out {
    char cause[32];   /* "" on success */
    char detail[256]; /* a line for logs: what failed (never the key, never the prompt) */
    long http_status;
    int attempts;
    uint64_t bytes_sent; /* request body bytes handed to the network, all attempts */
    size_t n_delivered;  /* bytes of text passed to on_text */
    int32_t prompt_tokens, completion_tokens; /* from the cloud's usage; -1 when absent */
    char finish[24];                          /* the cloud's finish_reason or "" */
} hy_cloud_out;

/* 0 on success, -1 on failure (out->cause says why). Retries only while no
 * text was delivered. */
int hy_cloud_post(hy_cloud *c, const hy_cloud_req *req, hy_cloud_out *out);

#endif
