/* slm serve: an HTTP server that speaks the OpenAI API over one loaded model.
 *
 * N slots (one session each) share the model; requests beyond N wait in a
 * bounded queue, and beyond that are refused with 429 and Retry-After.
 * Endpoints: POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings,
 * POST /v1/classify, GET /v1/models, GET /health, GET /metrics. docs/SERVER.md describes them.
 *
 * This header depends only on slm.h so that tools can include it without the
 * internal include paths. */
#ifndef SLM_SERVE_SERVE_H
#define SLM_SERVE_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* Named limits and defaults. */
#define SLM_SERVE_DEFAULT_PORT 8080
#define SLM_SERVE_DEFAULT_PARALLEL 1
#define SLM_SERVE_MAX_PARALLEL 64
#define SLM_SERVE_DEFAULT_QUEUE 16
#define SLM_SERVE_MAX_QUEUE 4096
#define SLM_SERVE_DEFAULT_TIMEOUT_S 600     /* per-request deadline, queue wait included */
#define SLM_SERVE_DEFAULT_IDLE_TIMEOUT_S 30 /* a connection that sends nothing is closed */
#define SLM_SERVE_DEFAULT_READ_TIMEOUT_S 30 /* a request must arrive whole within this */
#define SLM_SERVE_DEFAULT_MAX_BODY (1u << 20)
#define SLM_SERVE_MAX_BODY_LIMIT (256u << 20)
#define SLM_SERVE_MAX_HEADER_BYTES (64u << 10) /* request line + headers (MHD's memory pool) */
#define SLM_SERVE_DEFAULT_SHUTDOWN_S 10        /* in-flight work gets this long at shutdown */
#define SLM_SERVE_MAX_CONNECTIONS 256          /* open connections (one thread each) */
#define SLM_SERVE_RETRY_AFTER_S 1              /* Retry-After on 429/503 */

typedef struct slm_server_opts {
    const char *host;       /* NULL = "127.0.0.1" */
    int port;               /* 0 = any free port (see slm_server_port) */
    int parallel;           /* slots; 0 = SLM_SERVE_DEFAULT_PARALLEL */
    int queue;              /* waiting requests beyond the slots; -1 = default, 0 = none */
    double timeout_s;       /* per-request deadline; 0 = default */
    double idle_timeout_s;  /* 0 = default */
    double read_timeout_s;  /* 0 = default */
    size_t max_body;        /* bytes; 0 = default */
    int32_t max_tokens_cap; /* largest max_tokens a request may ask for; 0 = the context size */
    const char *api_key;    /* NULL or "" = no authentication */
    const char *model_id;   /* name in /v1/models and responses; NULL = file name sans .gguf */
    const char *model_path; /* for the default model_id */
    int max_connections;    /* 0 = SLM_SERVE_MAX_CONNECTIONS */
    int access_log;         /* 1: one line per request on stderr (never prompt text) */
    /* LoRA adapters "NAME=PATH[:SCALE]", loaded at start; a request chooses one by name
     * ("adapter": NAME); docs/SERVER.md */
    const char *const *loras;
    int n_loras;
} slm_server_opts;

typedef struct slm_server slm_server;

/* Starts serving `model` with `cfg` (NULL = defaults) as every slot's base
 * config; per-request fields override its sampling keys. The model must
 * outlive the server. Binds before returning. */
slm_status slm_server_start(slm_model *model, const slm_config *cfg, const slm_server_opts *opts,
                            slm_server **out);
/* The port it listens on (useful with port 0). */
int slm_server_port(const slm_server *srv);
/* Graceful stop: stops accepting, refuses queued requests with 503, lets
 * running ones finish for up to `grace_s` seconds, then cancels them. */
void slm_server_shutdown(slm_server *srv, double grace_s);
/* Shuts down (grace 0 if not done yet) and frees. NULL is a no-op. */
void slm_server_free(slm_server *srv);

#endif
