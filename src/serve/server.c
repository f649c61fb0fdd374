/* slm serve: HTTP on libmicrohttpd, one thread per connection. A connection
 * thread parses the request, tokenizes it, queues a job for the slot pool and
 * waits for it (or streams it as Server-Sent Events); while it waits it
 * watches its socket, so a client that goes away cancels its generation. */
#include "serve/serve.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"
#include "serve/adapters.h"
#include "serve/hybrid_serve.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "serve/pool.h"
#include "serve/tasks.h"

#define SRV_WAIT_SLICE_MS 50.0 /* how often a waiting connection checks its socket */
#define SRV_STREAM_BLOCK 16384 /* bytes per read of a streamed response */
#define SRV_MAX_MODEL_ID 128
#define SRV_DRAIN_STREAMS_MS 2000.0 /* at shutdown, time for streams to send their end */
#define SRV_MAX_LOG_PATH 64
#define SRV_REAPER_PERIOD_MS 250.0 /* how often slow connections are looked for */

/* A connection as the reaper sees it: a request must arrive whole within the
 * read timeout of the connection opening or of its previous response, or the
 * socket is shut down (slow-loris clients that drip headers or a body). */
typedef struct conn_track {
    int fd;
    double since;
    int processing; /* a whole request arrived; its deadline governs now */
    int reaped;
    struct conn_track *prev, *next;
} conn_track;

struct slm_server {
    struct MHD_Daemon *daemon;
    slm_model *model;
    srv_pool *pool;
    srv_adapters adapters; /* --lora NAME=PATH[:SCALE], chosen per request ("adapter") */
    srv_metrics metrics;
    cJSON *base_sampling; /* per-request keys of the server's config */
    int32_t default_max_tokens, n_ctx, n_vocab;
    char model_id[SRV_MAX_MODEL_ID];
    char *api_key;
    size_t api_key_len;
    size_t max_body;
    int32_t max_tokens_cap;
    double timeout_ms, read_timeout_ms;
    int access_log;
    int port;
    int64_t created;
    atomic_int draining;
    atomic_int stopping;
    atomic_int n_active;
    atomic_ullong next_id;
    int shut_down;
    pthread_mutex_t conn_mu;
    conn_track *conns;
    pthread_t reaper;
    int reaper_started;
    slm_hybrid *hybrid;             /* "mode": "hybrid": requests go through the router */
    srv_hybrid_metrics *hy_metrics; /* its counters and threads */
};

typedef enum route {
    R_NONE = 0,
    R_CHAT,
    R_COMPLETIONS,
    R_MODELS,
    R_MODEL_ONE,
    R_HEALTH,
    R_METRICS,
    R_EMBEDDINGS, /* serve/tasks.c */
    R_CLASSIFY,
} route;

typedef struct req_ctx {
    slm_server *srv;
    route rt;
    srv_endpoint ep;
    char *body;
    size_t len, cap;
    int too_large;
    int status;
    const char *err_type;
    double t_start;
    char method[8];
    char path[SRV_MAX_LOG_PATH + 1];
} req_ctx;

/* ---- responses ------------------------------------------------------------------------- */

static enum MHD_Result send_body(req_ctx *r, struct MHD_Connection *c, int status,
                                 const char *ctype, char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (status == 429 || status == 503) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", SLM_SERVE_RETRY_AFTER_S);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == 405) {
        const char *allow = r->rt == R_CHAT || r->rt == R_COMPLETIONS || r->rt == R_EMBEDDINGS ||
                                    r->rt == R_CLASSIFY
                                ? "POST"
                                : "GET, HEAD";
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned int)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    return ret;
}

static enum MHD_Result send_json(req_ctx *r, struct MHD_Connection *c, int status, char *json) {
    if (!json) return MHD_NO;
    return send_body(r, c, status, "application/json", json, strlen(json));
}

static enum MHD_Result send_error(req_ctx *r, struct MHD_Connection *c, const srv_error *e) {
    r->err_type = e->type;
    return send_json(r, c, e->http, srv_error_json(e));
}

static enum MHD_Result fail(req_ctx *r, struct MHD_Connection *c, int http, const char *type,
                            const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static enum MHD_Result fail(req_ctx *r, struct MHD_Connection *c, int http, const char *type,
                            const char *code, const char *fmt, ...) {
    srv_error e = {http, type, code, NULL, ""};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    return send_error(r, c, &e);
}

/* ---- helpers ------------------------------------------------------------------------------ */

/* 1 when the peer has closed or reset the connection. */
static int client_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static int connection_fd(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

static conn_track *track_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (conn_track *)ci->socket_context : NULL;
}

static void track_set(slm_server *s, struct MHD_Connection *c, int processing) {
    conn_track *t = track_of(c);
    if (!t) return;
    pthread_mutex_lock(&s->conn_mu);
    t->processing = processing;
    if (!processing) t->since = slm_now_ms();
    pthread_mutex_unlock(&s->conn_mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    slm_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_track *t = calloc(1, sizeof *t);
        *socket_context = t;
        if (!t) return;
        t->fd = connection_fd(c);
        t->since = slm_now_ms();
        pthread_mutex_lock(&s->conn_mu);
        t->next = s->conns;
        if (s->conns) s->conns->prev = t;
        s->conns = t;
        pthread_mutex_unlock(&s->conn_mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        conn_track *t = *socket_context;
        *socket_context = NULL;
        if (!t) return;
        pthread_mutex_lock(&s->conn_mu);
        if (t->prev)
            t->prev->next = t->next;
        else
            s->conns = t->next;
        if (t->next) t->next->prev = t->prev;
        pthread_mutex_unlock(&s->conn_mu);
        free(t);
    }
}

static void sleep_ms(double ms);

/* Shuts down sockets whose request is overdue; the connection's own thread
 * then sees the error and closes it. The lock is held across shutdown() so
 * that the descriptor cannot be closed (and reused) meanwhile: MHD notifies
 * CLOSED, which takes the lock, before it closes the socket. */
static void *reaper(void *arg) {
    slm_server *s = arg;
    while (!atomic_load(&s->stopping)) {
        sleep_ms(SRV_REAPER_PERIOD_MS);
        double now = slm_now_ms();
        pthread_mutex_lock(&s->conn_mu);
        for (conn_track *t = s->conns; t; t = t->next) {
            if (t->processing || t->reaped || t->fd < 0) continue;
            if (now - t->since > s->read_timeout_ms) {
                shutdown(t->fd, SHUT_RDWR);
                t->reaped = 1;
            }
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    return NULL;
}

static void make_id(slm_server *s, srv_kind kind, char *buf, size_t cap) {
    unsigned long long n = atomic_fetch_add(&s->next_id, 1);
    snprintf(buf, cap, "%s-%08llx%016llx", kind == SRV_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)s->created & 0xffffffffull, n);
}

static int header_is_json(const char *ct) {
    if (!ct) return 0;
    while (*ct == ' ') ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof want - 1) != 0) return 0;
    char next = ct[sizeof want - 1];
    return next == '\0' || next == ';' || next == ' ';
}

static int authorized(slm_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    return srv_secret_equal(h, strlen(h), s->api_key, s->api_key_len);
}

/* ---- streaming -------------------------------------------------------------------------- */

typedef struct stream_ctx {
    srv_job *job;
    int fd;
    srv_reply rep;
    char id[64];
    int include_usage;
    size_t sent; /* bytes of job->text already sent */
    char *pending;
    size_t plen, poff;
    int first, ended;
    char *echo;
    size_t echo_len;
    int logprobs;   /* the request asked for log-probabilities */
    size_t lp_sent; /* entries of job->lps already sent */
    srv_logprobs lp;
} stream_ctx;

/* One token's text, for log-probabilities (srv_piece_fn over the model's tokenizer). */
static size_t piece_of(void *user, int32_t id, char *buf, size_t cap) {
    char *text = NULL;
    size_t n = 0;
    if (slm_tokenizer_decode(user, &id, 1, 0, &text, &n) != SLM_OK) return 0;
    if (n > cap) n = cap;
    if (n) memcpy(buf, text, n);
    free(text);
    return n;
}

static int pend(stream_ctx *st, const char *data) {
    if (!data) return -1;
    size_t dl = strlen(data);
    size_t need = st->plen + dl + 9;
    char *np = realloc(st->pending, need);
    if (!np) return -1;
    st->pending = np;
    memcpy(st->pending + st->plen, "data: ", 6);
    memcpy(st->pending + st->plen + 6, data, dl);
    memcpy(st->pending + st->plen + 6 + dl, "\n\n", 2);
    st->plen += dl + 8;
    st->pending[st->plen] = '\0';
    return 0;
}

static int pend_chunk(stream_ctx *st, const char *text, size_t len, const srv_tok_lp *lps,
                      size_t n_lps) {
    if (st->logprobs && n_lps > 0) {
        st->lp.tok = lps;
        st->lp.n = n_lps;
        st->rep.lp = &st->lp;
    }
    char *j = srv_chunk_json(&st->rep, text, len, st->first, 0);
    if (st->rep.finish) j = srv_hybrid_decorate(j, st->job); /* hybrid: the last chunk */
    st->rep.lp = NULL;
    st->first = 0;
    int rc = pend(st, j);
    free(j);
    return rc;
}

/* The end of a stream: the last chunk (or an error event), usage, [DONE]. */
static int pend_end(stream_ctx *st) {
    srv_job *j = st->job;
    int why = atomic_load(&j->cancel);
    if (j->status != SLM_OK || why == SRV_CANCEL_DEADLINE || why == SRV_CANCEL_SHUTDOWN) {
        srv_error e = {500, "server_error", NULL, NULL, ""};
        if (why == SRV_CANCEL_DEADLINE) {
            e.http = 504;
            e.type = "timeout_error";
            e.code = "deadline_exceeded";
            snprintf(e.message, sizeof e.message, "the request ran past its deadline");
        } else if (why == SRV_CANCEL_SHUTDOWN) {
            e.http = 503;
            e.type = "overloaded_error";
            e.code = "shutting_down";
            snprintf(e.message, sizeof e.message, "the server is shutting down");
        } else {
            snprintf(e.message, sizeof e.message, "generation failed: %s", j->error);
        }
        char *ej = srv_error_json(&e);
        int rc = pend(st, ej);
        free(ej);
        if (rc) return rc;
    } else {
        const slm_result *res = &j->result;
        st->rep.finish = res->finish == SLM_FINISH_LENGTH ? "length" : "stop";
        st->rep.n_prompt = res->n_prompt_tokens;
        st->rep.n_completion = res->n_generated;
        st->rep.n_cached = res->n_cached;
        size_t n_new = j->n_lps > st->lp_sent ? j->n_lps - st->lp_sent : 0;
        if (pend_chunk(st, "", 0, j->lps + st->lp_sent, n_new)) return -1;
        st->lp_sent += n_new;
        if (st->include_usage) {
            char *u = srv_chunk_json(&st->rep, "", 0, 0, 1);
            int rc = pend(st, u);
            free(u);
            if (rc) return rc;
        }
    }
    size_t need = st->plen + 15;
    char *np = realloc(st->pending, need);
    if (!np) return -1;
    st->pending = np;
    memcpy(st->pending + st->plen, "data: [DONE]\n\n", 15);
    st->plen += 14;
    return 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_ctx *st = cls;
    srv_job *j = st->job;
    for (;;) {
        if (st->poff < st->plen) {
            size_t n = st->plen - st->poff;
            if (n > max) n = max;
            memcpy(buf, st->pending + st->poff, n);
            st->poff += n;
            return (ssize_t)n;
        }
        st->plen = st->poff = 0;
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        if (st->echo) {
            int rc = pend_chunk(st, st->echo, st->echo_len, NULL, 0);
            free(st->echo);
            st->echo = NULL;
            if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        pthread_mutex_lock(&j->mu);
        while (j->len == st->sent && j->state != SRV_JOB_DONE) {
            if (client_gone(st->fd)) {
                int none = SRV_CANCEL_NONE;
                atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_CLIENT);
                pthread_mutex_unlock(&j->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (slm_now_ms() > j->deadline_ms) {
                int none = SRV_CANCEL_NONE;
                atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_DEADLINE);
            }
            srv_job_wait(j, SRV_WAIT_SLICE_MS);
        }
        if (j->len > st->sent) {
            size_t n = j->len - st->sent;
            char *piece = malloc(n);
            if (piece) memcpy(piece, j->text + st->sent, n);
            st->sent = j->len;
            srv_tok_lp *lps = NULL;
            size_t n_lps = 0;
            if (st->logprobs && j->n_lps > st->lp_sent) {
                n_lps = j->n_lps - st->lp_sent;
                lps = malloc(n_lps * sizeof *lps);
                if (lps) memcpy(lps, j->lps + st->lp_sent, n_lps * sizeof *lps);
                st->lp_sent = j->n_lps;
            }
            pthread_mutex_unlock(&j->mu);
            int rc = piece && (lps || !n_lps) ? pend_chunk(st, piece, n, lps, n_lps) : -1;
            free(piece);
            free(lps);
            if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        int rc = pend_end(st);
        pthread_mutex_unlock(&j->mu);
        st->ended = 1;
        if (rc) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls) {
    stream_ctx *st = cls;
    srv_job *j = st->job;
    pthread_mutex_lock(&j->mu);
    if (j->state != SRV_JOB_DONE) {
        int none = SRV_CANCEL_NONE;
        atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_CLIENT);
    }
    pthread_mutex_unlock(&j->mu);
    srv_job_unref(j);
    free(st->pending);
    free(st->echo);
    free(st);
}

/* ---- generation ---------------------------------------------------------------------------- */

/* The per-request settings: the server's sampling keys, the request's on top. */
static char *request_config(slm_server *s, const srv_request *q, int32_t max_tokens) {
    cJSON *o = cJSON_Duplicate(s->base_sampling, 1);
    if (!o) return NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, q->sampling) {
        cJSON *copy = cJSON_Duplicate(it, 1);
        if (!copy) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(o, it->string);
        cJSON_AddItemToObject(o, it->string, copy);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(o, "max_tokens");
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "context_policy");
    cJSON_AddStringToObject(o, "context_policy", "error");
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return json;
}

/* Token ids of the request's prompt. */
static int prompt_ids(slm_server *s, const srv_request *q, int32_t **ids, size_t *n, srv_error *e) {
    slm_status st;
    if (q->kind == SRV_CHAT) {
        st = slm_chat_prompt(s->model, q->msgs, q->n_msgs, 1, NULL, NULL, ids, n, NULL);
        if (st != SLM_OK)
            return srv_error_set(e, 400, "invalid_request_error", "invalid_messages", "messages",
                                 "cannot render the conversation with the model's chat "
                                 "template: %s",
                                 slm_last_error());
        return 0;
    }
    if (q->prompt_ids) {
        for (size_t i = 0; i < q->n_prompt_ids; i++)
            if (q->prompt_ids[i] >= s->n_vocab)
                return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                                     "token id %d is outside the vocabulary (%d tokens)",
                                     q->prompt_ids[i], s->n_vocab);
        *ids = malloc(q->n_prompt_ids * sizeof **ids);
        if (!*ids) return srv_error_set(e, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(*ids, q->prompt_ids, q->n_prompt_ids * sizeof **ids);
        *n = q->n_prompt_ids;
        return 0;
    }
    st = slm_tokenize(s->model, q->prompt, q->prompt_len, SLM_TOKENIZE_ADD_BOS, ids, n);
    if (st != SLM_OK)
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                             "cannot tokenize the prompt: %s", slm_last_error());
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return srv_error_set(e, 400, "invalid_request_error", "invalid_value", "prompt",
                             "the prompt is empty and the model adds no BOS token");
    }
    return 0;
}

/* The error a finished job that did not succeed gets. */
static void job_error(const srv_job *j, srv_error *e) {
    int why = atomic_load(&((srv_job *)j)->cancel);
    if (j->never_ran || why == SRV_CANCEL_SHUTDOWN)
        srv_error_set(e, 503, "overloaded_error", "shutting_down", NULL,
                      "the server is shutting down; retry later");
    else if (why == SRV_CANCEL_DEADLINE)
        srv_error_set(e, 504, "timeout_error", "deadline_exceeded", NULL,
                      "the request ran past its deadline");
    else if (j->status == SLM_ERR_CONTEXT)
        srv_error_set(e, 400, "invalid_request_error", "context_length_exceeded", NULL, "%s",
                      j->error);
    else
        srv_error_set(e, 500, "server_error", NULL, NULL, "generation failed: %s", j->error);
}

static enum MHD_Result handle_generate(req_ctx *r, struct MHD_Connection *c, srv_kind kind) {
    slm_server *s = r->srv;
    srv_request q;
    srv_error e;
    if (srv_parse_request(kind, r->body ? r->body : "", r->len, &q, &e))
        return send_error(r, c, &e);
    int ad_idx = q.adapter ? srv_adapters_find(&s->adapters, q.adapter) : -1;
    if (q.adapter && ad_idx < 0) {
        srv_error_set(&e, 400, "invalid_request_error", "adapter_not_found", "adapter",
                      "'adapter': this server has no adapter named '%.64s' (it has %d; GET "
                      "/v1/models lists them)",
                      q.adapter, s->adapters.n);
        srv_request_free(&q);
        return send_error(r, c, &e);
    }
    int32_t *ids = NULL;
    size_t n = 0;
    enum MHD_Result ret;
    srv_job *job = NULL;
    char *cfg = NULL;
    if (prompt_ids(s, &q, &ids, &n, &e)) {
        ret = send_error(r, c, &e);
        goto done;
    }
    if (s->hybrid && (n >= (size_t)s->n_ctx || q.max_tokens > s->n_ctx - (int32_t)n)) {
        /* hybrid: the router decides (context_overflow); a local fallback shifts */
        if (q.max_tokens < 0 || q.max_tokens > s->n_ctx / 2)
            q.max_tokens =
                s->default_max_tokens < s->n_ctx / 2 ? s->default_max_tokens : s->n_ctx / 2;
    } else if (n >= (size_t)s->n_ctx) {
        ret = fail(r, c, 400, "invalid_request_error", "context_length_exceeded",
                   "the context holds %d tokens; the prompt has %zu", s->n_ctx, n);
        goto done;
    }
    int32_t room = s->n_ctx - (int32_t)n;
    if (room < s->n_ctx / 2 && s->hybrid) room = s->n_ctx / 2;
    int32_t max_tokens = q.max_tokens;
    if (max_tokens > room) {
        ret = fail(r, c, 400, "invalid_request_error", "context_length_exceeded",
                   "the context holds %d tokens; the prompt has %zu and max_tokens asks for %d "
                   "more",
                   s->n_ctx, n, max_tokens);
        goto done;
    }
    int32_t cap = s->max_tokens_cap > 0 ? s->max_tokens_cap : s->n_ctx;
    if (max_tokens > cap) {
        srv_error_set(&e, 400, "invalid_request_error", "invalid_value", "max_tokens",
                      "max_tokens is too large: %d; this server allows at most %d "
                      "(--max-tokens-cap)",
                      max_tokens, cap);
        ret = send_error(r, c, &e);
        goto done;
    }
    if (max_tokens < 0) {
        max_tokens = s->default_max_tokens < room ? s->default_max_tokens : room;
        if (max_tokens > cap) max_tokens = cap;
    }
    cfg = request_config(s, &q, max_tokens);
    job = cfg ? srv_job_new(ids, n, cfg, r->t_start, r->t_start + s->timeout_ms) : NULL;
    if (!job) {
        ret = fail(r, c, 500, "server_error", NULL, "out of memory");
        goto done;
    }
    if (q.logprobs) job->n_top = q.top_logprobs;
    if (s->adapters.n > 0) { /* the slot applies this request's adapter, or none */
        job->adapter_sel = 1;
        job->adapter = ad_idx >= 0 ? s->adapters.ad[ad_idx] : NULL;
        job->adapter_scale = ad_idx >= 0 ? s->adapters.scale[ad_idx] : 0.0f;
    }
    int sub;
    if (s->hybrid) {
        const cJSON *tj = cJSON_GetObjectItemCaseSensitive(q.sampling, "temperature");
        if (!tj) tj = cJSON_GetObjectItemCaseSensitive(s->base_sampling, "temperature");
        srv_hybrid_args ha = {
            s->hybrid, s->pool,  s->hy_metrics, s->model,
            &q,        s->n_ctx, max_tokens,    cJSON_IsNumber(tj) ? tj->valuedouble : -1.0};
        sub = srv_hybrid_submit(&ha, job);
    } else {
        sub = srv_pool_submit(s->pool, job);
    }
    if (sub == SRV_SUBMIT_FULL) {
        ret = fail(r, c, 429, "overloaded_error", "queue_full",
                   "all %d slots are busy and the queue is full; retry later",
                   srv_pool_n_slots(s->pool));
        goto done;
    }
    if (sub == SRV_SUBMIT_STOPPING) {
        ret = fail(r, c, 503, "overloaded_error", "shutting_down",
                   "the server is shutting down; retry later");
        goto done;
    }
    int fd = connection_fd(c);
    /* Wait for a slot, watching the client and the deadline. */
    pthread_mutex_lock(&job->mu);
    while (job->state == SRV_JOB_QUEUED) {
        int gone = client_gone(fd);
        if (gone || slm_now_ms() > job->deadline_ms) {
            pthread_mutex_unlock(&job->mu);
            if (srv_pool_withdraw(s->pool, job)) {
                if (gone) {
                    r->status = 499; /* client closed the request, as nginx logs it */
                    ret = MHD_NO;
                } else {
                    srv_metrics_event(&s->metrics, 0, 1);
                    ret = fail(r, c, 503, "overloaded_error", "queue_timeout",
                               "no slot became free before the request's deadline; retry later");
                }
                goto done;
            }
            pthread_mutex_lock(&job->mu);
            continue;
        }
        srv_job_wait(job, SRV_WAIT_SLICE_MS);
    }
    pthread_mutex_unlock(&job->mu);

    srv_reply rep = {kind, NULL, s->model_id, (int64_t)time(NULL), NULL, 0, 0, 0, NULL};
    if (q.stream) {
        stream_ctx *st = calloc(1, sizeof *st);
        if (!st) {
            ret = fail(r, c, 500, "server_error", NULL, "out of memory");
            goto done;
        }
        st->job = job;
        st->fd = fd;
        st->rep = rep;
        make_id(s, kind, st->id, sizeof st->id);
        st->rep.id = st->id;
        st->include_usage = q.include_usage;
        st->first = 1;
        st->logprobs = q.logprobs;
        st->lp.piece = piece_of;
        st->lp.piece_user = (void *)slm_model_tokenizer(s->model);
        if (q.echo && kind == SRV_COMPLETION) {
            if (q.prompt) {
                st->echo = q.prompt;
                st->echo_len = q.prompt_len;
                q.prompt = NULL;
            } else {
                slm_detokenize(s->model, q.prompt_ids, q.n_prompt_ids, &st->echo, &st->echo_len);
            }
            st->lp.text_offset = st->echo ? st->echo_len : 0;
        }
        struct MHD_Response *resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, SRV_STREAM_BLOCK, stream_read, st, stream_free);
        if (!resp) {
            free(st->echo);
            free(st);
            ret = fail(r, c, 500, "server_error", NULL, "out of memory");
            goto done;
        }
        job = NULL; /* the stream owns the reference now */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        goto done;
    }

    /* Not streamed: wait for the end. */
    int client_left = 0;
    pthread_mutex_lock(&job->mu);
    while (job->state != SRV_JOB_DONE) {
        int none = SRV_CANCEL_NONE;
        if (!client_left && client_gone(fd)) {
            client_left = 1;
            atomic_compare_exchange_strong(&job->cancel, &none, SRV_CANCEL_CLIENT);
        } else if (slm_now_ms() > job->deadline_ms) {
            atomic_compare_exchange_strong(&job->cancel, &none, SRV_CANCEL_DEADLINE);
        }
        srv_job_wait(job, SRV_WAIT_SLICE_MS);
    }
    pthread_mutex_unlock(&job->mu);
    if (client_left) {
        r->status = 499;
        ret = MHD_NO;
        goto done;
    }
    int why = atomic_load(&job->cancel);
    if (job->status != SLM_OK || job->never_ran || why == SRV_CANCEL_DEADLINE ||
        why == SRV_CANCEL_SHUTDOWN) {
        job_error(job, &e);
        ret = send_error(r, c, &e);
        goto done;
    }
    char id[64];
    make_id(s, kind, id, sizeof id);
    rep.id = id;
    rep.finish = job->result.finish == SLM_FINISH_LENGTH ? "length" : "stop";
    rep.n_prompt = job->result.n_prompt_tokens;
    rep.n_completion = job->result.n_generated;
    rep.n_cached = job->result.n_cached;
    srv_logprobs lp = {job->lps, job->n_lps, piece_of, (void *)slm_model_tokenizer(s->model), 0};
    if (q.logprobs) rep.lp = &lp;
    char *body;
    if (q.echo && kind == SRV_COMPLETION) {
        char *pt = q.prompt;
        size_t pl = q.prompt_len;
        char *dt = NULL;
        if (!pt && slm_detokenize(s->model, q.prompt_ids, q.n_prompt_ids, &dt, &pl) == SLM_OK)
            pt = dt;
        char *all = malloc(pl + job->len + 1);
        if (all) {
            if (pt)
                memcpy(all, pt, pl);
            else
                pl = 0;
            if (job->len) memcpy(all + pl, job->text, job->len);
        }
        lp.text_offset = pl;
        body = all ? srv_reply_json(&rep, all, pl + job->len) : NULL;
        free(all);
        free(dt);
    } else {
        body = srv_reply_json(&rep, job->text, job->len);
    }
    body = srv_hybrid_decorate(body, job);
    ret =
        body ? send_json(r, c, 200, body) : fail(r, c, 500, "server_error", NULL, "out of memory");
done:
    srv_job_unref(job);
    free(cfg);
    free(ids);
    srv_request_free(&q);
    return ret;
}

/* ---- embeddings and classification (serve/tasks.c) ---------------------------------------- */

/* Runs a task on a slot's session: queued like a generation, answered whole. */
static enum MHD_Result handle_task(req_ctx *r, struct MHD_Connection *c, srv_task_kind kind) {
    slm_server *s = r->srv;
    srv_task t;
    srv_error e;
    if (srv_task_parse(kind, r->body ? r->body : "", r->len, s->model, s->n_ctx, &t, &e))
        return send_error(r, c, &e);
    enum MHD_Result ret;
    srv_job *job = srv_job_new(NULL, 0, "{}", r->t_start, r->t_start + s->timeout_ms);
    if (!job) {
        ret = fail(r, c, 500, "server_error", NULL, "out of memory");
        goto done;
    }
    job->work_fn = srv_task_run;
    job->work_user = &t;
    t.cancel = &job->cancel;
    job->adapter_sel = s->adapters.n > 0; /* the base model, whatever the slot applied last */
    int sub = srv_pool_submit(s->pool, job);
    if (sub != SRV_SUBMIT_OK) {
        ret = sub == SRV_SUBMIT_FULL
                  ? fail(r, c, 429, "overloaded_error", "queue_full",
                         "all %d slots are busy and the queue is full; retry later",
                         srv_pool_n_slots(s->pool))
                  : fail(r, c, 503, "overloaded_error", "shutting_down",
                         "the server is shutting down; retry later");
        goto done;
    }
    /* The task lives on this stack: wait for the end (or withdraw it from the
     * queue), asking a running job to stop when the client leaves. */
    int fd = connection_fd(c), client_left = 0;
    pthread_mutex_lock(&job->mu);
    while (job->state != SRV_JOB_DONE) {
        int none = SRV_CANCEL_NONE;
        int late = slm_now_ms() > job->deadline_ms;
        if (!client_left && client_gone(fd)) {
            client_left = 1;
            atomic_compare_exchange_strong(&job->cancel, &none, SRV_CANCEL_CLIENT);
        } else if (late) {
            atomic_compare_exchange_strong(&job->cancel, &none, SRV_CANCEL_DEADLINE);
        }
        if ((client_left || late) && job->state == SRV_JOB_QUEUED) {
            pthread_mutex_unlock(&job->mu);
            srv_pool_withdraw(s->pool, job);
            pthread_mutex_lock(&job->mu);
            continue;
        }
        srv_job_wait(job, SRV_WAIT_SLICE_MS);
    }
    pthread_mutex_unlock(&job->mu);
    if (client_left) {
        r->status = 499;
        ret = MHD_NO;
        goto done;
    }
    int why = atomic_load(&job->cancel);
    if (job->never_ran && why == SRV_CANCEL_DEADLINE) {
        srv_metrics_event(&s->metrics, 0, 1);
        ret = fail(r, c, 503, "overloaded_error", "queue_timeout",
                   "no slot became free before the request's deadline; retry later");
        goto done;
    }
    if (job->status == SLM_ERR_INVALID_ARG && why == SRV_CANCEL_NONE) {
        ret = fail(r, c, 400, "invalid_request_error", "invalid_value", "%s", job->error);
        goto done;
    }
    if (job->status != SLM_OK || job->never_ran || why == SRV_CANCEL_DEADLINE ||
        why == SRV_CANCEL_SHUTDOWN) {
        job_error(job, &e);
        ret = send_error(r, c, &e);
        goto done;
    }
    char *body = srv_task_reply(&t, s->model_id);
    ret =
        body ? send_json(r, c, 200, body) : fail(r, c, 500, "server_error", NULL, "out of memory");
done:
    srv_job_unref(job);
    srv_task_free(&t);
    return ret;
}

/* ---- other endpoints ----------------------------------------------------------------------- */

static cJSON *model_object(slm_server *s) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->created);
    cJSON_AddStringToObject(m, "owned_by", "slm");
    cJSON_AddNumberToObject(m, "context_length", s->n_ctx);
    cJSON *ads = s->adapters.n > 0 ? cJSON_AddArrayToObject(m, "adapters") : NULL;
    for (int i = 0; ads && i < s->adapters.n; i++) { /* chosen with "adapter": NAME */
        cJSON *a = cJSON_CreateObject();
        if (!a) break;
        cJSON_AddStringToObject(a, "name", s->adapters.name[i]);
        cJSON_AddNumberToObject(a, "scale", s->adapters.scale[i]);
        cJSON_AddItemToArray(ads, a);
    }
    return m;
}

static enum MHD_Result handle_models(req_ctx *r, struct MHD_Connection *c) {
    cJSON *o = cJSON_CreateObject();
    cJSON *m = model_object(r->srv);
    cJSON *data = o ? cJSON_AddArrayToObject(o, "data") : NULL;
    if (!o || !m || !data) {
        cJSON_Delete(o);
        cJSON_Delete(m);
        return fail(r, c, 500, "server_error", NULL, "out of memory");
    }
    cJSON_AddStringToObject(o, "object", "list");
    cJSON_AddItemToArray(data, m);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return send_json(r, c, 200, json);
}

static enum MHD_Result handle_model_one(req_ctx *r, struct MHD_Connection *c, const char *id) {
    if (strcmp(id, r->srv->model_id) != 0)
        return fail(r, c, 404, "invalid_request_error", "model_not_found",
                    "the model '%.100s' does not exist; this server has '%s'", id,
                    r->srv->model_id);
    cJSON *m = model_object(r->srv);
    char *json = m ? cJSON_PrintUnformatted(m) : NULL;
    cJSON_Delete(m);
    return send_json(r, c, 200, json);
}

static enum MHD_Result handle_health(req_ctx *r, struct MHD_Connection *c) {
    slm_server *s = r->srv;
    int idle = 0, busy = 0, queued = 0;
    srv_pool_counts(s->pool, &idle, &busy, &queued);
    int draining = atomic_load(&s->draining);
    char *json = malloc(160);
    if (!json) return MHD_NO;
    snprintf(json, 160, "{\"status\":\"%s\",\"slots_idle\":%d,\"slots_busy\":%d,\"queued\":%d}",
             draining ? "shutting_down" : "ok", idle, busy, queued);
    return send_json(r, c, draining ? 503 : 200, json);
}

static enum MHD_Result handle_metrics(req_ctx *r, struct MHD_Connection *c) {
    size_t len = 0;
    char *text = srv_metrics_render(&r->srv->metrics, &len);
    if (!text) return fail(r, c, 500, "server_error", NULL, "out of memory");
    if (r->srv->hybrid) text = srv_hybrid_metrics_append(r->srv->hy_metrics, text, &len);
    return send_body(r, c, 200, "text/plain; version=0.0.4", text, len);
}

/* ---- the request handler ------------------------------------------------------------------- */

static void route_of(req_ctx *r, const char *url) {
    static const struct {
        const char *path;
        route rt;
        srv_endpoint ep;
    } routes[] = {
        {"/v1/chat/completions", R_CHAT, SRV_EP_CHAT},
        {"/v1/completions", R_COMPLETIONS, SRV_EP_COMPLETIONS},
        {"/v1/models", R_MODELS, SRV_EP_MODELS},
        {"/health", R_HEALTH, SRV_EP_HEALTH},
        {"/metrics", R_METRICS, SRV_EP_METRICS},
        {"/v1/embeddings", R_EMBEDDINGS, SRV_EP_EMBEDDINGS},
        {"/v1/classify", R_CLASSIFY, SRV_EP_CLASSIFY},
    };
    r->rt = R_NONE;
    r->ep = SRV_EP_OTHER;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!strcmp(url, routes[i].path)) {
            r->rt = routes[i].rt;
            r->ep = routes[i].ep;
            return;
        }
    }
    if (!strncmp(url, "/v1/models/", 11) && url[11]) {
        r->rt = R_MODEL_ONE;
        r->ep = SRV_EP_MODELS;
    }
}

static void copy_printable(char *dst, size_t cap, const char *src) {
    size_t i = 0;
    for (; src && src[i] && i + 1 < cap; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    dst[i] = '\0';
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls) {
    (void)version;
    slm_server *s = cls;
    req_ctx *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->srv = s;
        r->t_start = slm_now_ms();
        atomic_fetch_add(&s->n_active, 1);
        srv_metrics_connections(&s->metrics, 1);
        copy_printable(r->method, sizeof r->method, method);
        copy_printable(r->path, sizeof r->path, url);
        route_of(r, url);
        int post = r->rt == R_CHAT || r->rt == R_COMPLETIONS || r->rt == R_EMBEDDINGS ||
                   r->rt == R_CLASSIFY;
        int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (atomic_load(&s->draining) && r->rt != R_HEALTH)
            return fail(r, c, 503, "overloaded_error", "shutting_down",
                        "the server is shutting down");
        if (r->rt == R_NONE)
            return fail(r, c, 404, "invalid_request_error", "not_found", "no such endpoint: %s %s",
                        r->method, r->path);
        if ((post && strcmp(method, "POST") != 0) || (!post && !is_get))
            return fail(r, c, 405, "invalid_request_error", "method_not_allowed",
                        "%s is not allowed on %s (use %s)", r->method, r->path,
                        post ? "POST" : "GET");
        if (!strncmp(url, "/v1/", 4) && !authorized(s, c))
            return fail(r, c, 401, "invalid_request_error", "invalid_api_key",
                        "missing or incorrect API key (send 'Authorization: Bearer KEY')");
        if (post) {
            const char *ct =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
            if (!header_is_json(ct))
                return fail(r, c, 415, "invalid_request_error", "unsupported_media_type",
                            "the body must be JSON ('Content-Type: application/json')");
            const char *cl =
                MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl) {
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(cl, &end, 10);
                if (errno || end == cl || v > s->max_body)
                    return fail(r, c, 413, "invalid_request_error", "request_too_large",
                                "the body is larger than the server's limit of %zu bytes",
                                s->max_body);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->status) { /* answered already: discard the rest */
            *upload_size = 0;
            return MHD_YES;
        }
        if (slm_now_ms() - r->t_start > s->read_timeout_ms) {
            r->status = 408;
            return MHD_NO; /* too slow: drop the connection */
        }
        size_t n = *upload_size;
        *upload_size = 0;
        if (r->too_large || r->len + n > s->max_body) {
            r->too_large = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t ncap = r->cap ? r->cap : 4096;
            while (ncap < r->len + n + 1) ncap *= 2;
            if (ncap > s->max_body + 1) ncap = s->max_body + 1;
            char *nb = realloc(r->body, ncap);
            if (!nb) return MHD_NO;
            r->body = nb;
            r->cap = ncap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* a response is already queued */
    track_set(s, c, 1);
    if (r->too_large)
        return fail(r, c, 413, "invalid_request_error", "request_too_large",
                    "the body is larger than the server's limit of %zu bytes", s->max_body);
    switch (r->rt) {
    case R_CHAT:
        return handle_generate(r, c, SRV_CHAT);
    case R_COMPLETIONS:
        return handle_generate(r, c, SRV_COMPLETION);
    case R_EMBEDDINGS:
        return handle_task(r, c, SRV_TASK_EMBED);
    case R_CLASSIFY:
        return handle_task(r, c, SRV_TASK_CLASSIFY);
    case R_MODELS:
        return handle_models(r, c);
    case R_MODEL_ONE:
        return handle_model_one(r, c, url + 11);
    case R_HEALTH:
        return handle_health(r, c);
    case R_METRICS:
        return handle_metrics(r, c);
    default:
        return fail(r, c, 404, "invalid_request_error", "not_found", "no such endpoint");
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    slm_server *s = cls;
    track_set(s, c, 0);
    req_ctx *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    int status = r->status ? r->status : 499;
    if (status == 200 && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) status = 499;
    double secs = (slm_now_ms() - r->t_start) / 1e3;
    srv_metrics_request(&s->metrics, r->ep, status, r->err_type, secs);
    if (s->access_log)
        fprintf(stderr, "slm serve: %s %s %d %.1f ms\n", r->method, r->path, status, secs * 1e3);
    free(r->body);
    free(r);
    srv_metrics_connections(&s->metrics, -1);
    atomic_fetch_sub(&s->n_active, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    slm_log(SLM_LOG_DEBUG, "http: %s", msg);
}

/* ---- start and stop ------------------------------------------------------------------------ */

static slm_status base_config(const slm_config *cfg, int parallel, slm_config **out,
                              cJSON **sampling, int32_t *max_tokens) {
    slm_config *c = NULL;
    SLM_TRY(slm_config_new(&c));
    slm_status st = SLM_OK;
    char *json = cfg ? slm_config_to_json(cfg) : NULL;
    if (cfg && !json) st = slm_fail(SLM_ERR_NOMEM, "out of memory");
    if (st == SLM_OK && json) st = slm_config_apply_json(c, json, strlen(json));
    free(json);
    cJSON *all = NULL;
    if (st == SLM_OK) {
        json = slm_config_to_json(c);
        all = json ? cJSON_Parse(json) : NULL;
        free(json);
        if (!all) st = slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    if (st == SLM_OK) {
        /* Threads: split the cores among the slots unless the config says. */
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(all, "threads");
        if (cJSON_IsNumber(t) && t->valuedouble == 0) {
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            long per = cores > 0 ? cores / parallel : 1;
            char frag[48];
            snprintf(frag, sizeof frag, "{\"threads\":%ld}", per < 1 ? 1 : per);
            st = slm_config_apply_json(c, frag, strlen(frag));
        }
    }
    if (st == SLM_OK) {
        /* every per-request key, so that one request's settings never stick to its slot */
        static const char *const keys[] = {"temperature",
                                           "top_k",
                                           "top_p",
                                           "min_p",
                                           "repeat_penalty",
                                           "repeat_last_n",
                                           "presence_penalty",
                                           "frequency_penalty",
                                           "seed",
                                           "stop",
                                           "ignore_eos"};
        cJSON *smp = cJSON_CreateObject();
        for (size_t i = 0; smp && i < sizeof keys / sizeof keys[0]; i++) {
            cJSON *it = cJSON_GetObjectItemCaseSensitive(all, keys[i]);
            if (it) cJSON_AddItemToObject(smp, keys[i], cJSON_Duplicate(it, 1));
        }
        /* constrained output (issue 7): the server's own, else none */
        static const char *const gkeys[] = {"grammar", "json_schema", "json_object"};
        int has_grammar = 0;
        for (size_t i = 0; smp && i < 3; i++) {
            cJSON *it = cJSON_GetObjectItemCaseSensitive(all, gkeys[i]);
            if (it) cJSON_AddItemToObject(smp, gkeys[i], cJSON_Duplicate(it, 1));
            has_grammar |= it != NULL;
        }
        if (smp && !has_grammar) cJSON_AddNullToObject(smp, "grammar");
        const cJSON *mt = cJSON_GetObjectItemCaseSensitive(all, "max_tokens");
        *max_tokens = cJSON_IsNumber(mt) ? (int32_t)mt->valuedouble : 128;
        if (*max_tokens < 1) *max_tokens = 1;
        if (!smp) st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        *sampling = smp;
    }
    cJSON_Delete(all);
    if (st != SLM_OK) {
        slm_config_free(c);
        return st;
    }
    *out = c;
    return SLM_OK;
}

static void default_model_id(const char *path, char *buf, size_t cap) {
    const char *base = path ? strrchr(path, '/') : NULL;
    base = base ? base + 1 : (path ? path : "model");
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) n -= 5;
    if (n == 0) {
        base = "model";
        n = 5;
    }
    if (n >= cap) n = cap - 1;
    memcpy(buf, base, n);
    buf[n] = '\0';
}

slm_status slm_server_start(slm_model *model, const slm_config *cfg, const slm_server_opts *o,
                            slm_server **out) {
    if (!model || !o || !out)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_server_start: NULL argument");
    *out = NULL;
    int parallel = o->parallel > 0 ? o->parallel : SLM_SERVE_DEFAULT_PARALLEL;
    if (parallel > SLM_SERVE_MAX_PARALLEL)
        return slm_fail(SLM_ERR_INVALID_ARG, "serve: at most %d slots", SLM_SERVE_MAX_PARALLEL);
    int queue = o->queue >= 0 ? o->queue : SLM_SERVE_DEFAULT_QUEUE;
    if (queue > SLM_SERVE_MAX_QUEUE)
        return slm_fail(SLM_ERR_INVALID_ARG, "serve: the queue holds at most %d requests",
                        SLM_SERVE_MAX_QUEUE);
    if (o->port < 0 || o->port > 65535)
        return slm_fail(SLM_ERR_INVALID_ARG, "serve: port %d is out of range", o->port);
    slm_server *s = calloc(1, sizeof *s);
    if (!s) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    srv_metrics_init(&s->metrics);
    pthread_mutex_init(&s->conn_mu, NULL);
    s->model = model;
    s->created = (int64_t)time(NULL);
    s->max_body = o->max_body ? o->max_body : SLM_SERVE_DEFAULT_MAX_BODY;
    s->max_tokens_cap = o->max_tokens_cap > 0 ? o->max_tokens_cap : 0; /* 0: the context size */
    s->timeout_ms = 1e3 * (o->timeout_s > 0 ? o->timeout_s : SLM_SERVE_DEFAULT_TIMEOUT_S);
    s->read_timeout_ms =
        1e3 * (o->read_timeout_s > 0 ? o->read_timeout_s : SLM_SERVE_DEFAULT_READ_TIMEOUT_S);
    s->access_log = o->access_log;
    atomic_init(&s->draining, 0);
    atomic_init(&s->stopping, 0);
    atomic_init(&s->n_active, 0);
    atomic_init(&s->next_id, 1);
    if (o->model_id && *o->model_id)
        snprintf(s->model_id, sizeof s->model_id, "%s", o->model_id);
    else
        default_model_id(o->model_path, s->model_id, sizeof s->model_id);
    if (o->api_key && *o->api_key) {
        s->api_key = strdup(o->api_key);
        s->api_key_len = strlen(o->api_key);
    }
    slm_model_info info;
    slm_config *base = NULL;
    slm_status st = slm_model_get_info(model, &info);
    if (st == SLM_OK) {
        s->n_vocab = info.n_vocab;
        st = base_config(cfg, parallel, &base, &s->base_sampling, &s->default_max_tokens);
    }
    if (st == SLM_OK) st = srv_adapters_load(&s->adapters, model, cfg, o->loras, o->n_loras);
    if (st == SLM_OK) st = srv_pool_new(model, base, parallel, queue, &s->metrics, &s->pool);
    slm_config_free(base);
    if (st == SLM_OK && cfg) { /* hybrid deployment (issue 10) */
        st = slm_hybrid_new(model, cfg, &s->hybrid);
        if (st == SLM_OK && !slm_hybrid_enabled(s->hybrid)) {
            slm_hybrid_free(s->hybrid);
            s->hybrid = NULL;
        }
        if (st == SLM_OK && s->hybrid && !(s->hy_metrics = srv_hybrid_metrics_new()))
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    if (st != SLM_OK) {
        slm_server_free(s);
        return st;
    }
    s->n_ctx = srv_pool_n_ctx(s->pool);

    /* Resolve the address: numeric or a name, IPv4 or IPv6. */
    const char *host = o->host && *o->host ? o->host : "127.0.0.1";
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", o->port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port_s, &hints, &ai);
    if (gai != 0 || !ai) {
        slm_server_free(s);
        return slm_fail(SLM_ERR_INVALID_ARG, "serve: cannot resolve host '%s': %s", host,
                        gai_strerror(gai));
    }
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                         MHD_USE_POLL | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    unsigned int idle = (unsigned int)(o->idle_timeout_s > 0 ? o->idle_timeout_s + 0.999
                                                             : SLM_SERVE_DEFAULT_IDLE_TIMEOUT_S);
    unsigned int max_conn =
        (unsigned int)(o->max_connections > 0 ? o->max_connections : SLM_SERVE_MAX_CONNECTIONS);
    s->daemon =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                         MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_CONNECTION_LIMIT, max_conn,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SLM_SERVE_MAX_HEADER_BYTES,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION,
                         on_connection, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_END);
    int err = errno;
    freeaddrinfo(ai);
    if (!s->daemon) {
        slm_server_free(s);
        return slm_fail(SLM_ERR_IO, "serve: cannot listen on %s:%d: %s", host, o->port,
                        err ? strerror(err) : "libmicrohttpd refused to start");
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? (int)di->port : o->port;
    if (pthread_create(&s->reaper, NULL, reaper, s) != 0) {
        slm_server_free(s);
        return slm_fail(SLM_ERR_INTERNAL, "serve: cannot start a thread");
    }
    s->reaper_started = 1;
    *out = s;
    return SLM_OK;
}

int slm_server_port(const slm_server *s) {
    return s ? s->port : 0;
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1e3),
                          (long)((ms - 1e3 * (double)(time_t)(ms / 1e3)) * 1e6)};
    nanosleep(&ts, NULL);
}

void slm_server_shutdown(slm_server *s, double grace_s) {
    if (!s || s->shut_down) return;
    s->shut_down = 1;
    atomic_store(&s->draining, 1);
    if (s->daemon) {
        MHD_socket fd = MHD_quiesce_daemon(s->daemon);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    if (s->pool) {
        srv_pool_stop_accepting(s->pool);
        double until = slm_now_ms() + 1e3 * (grace_s > 0 ? grace_s : 0);
        while (srv_pool_busy(s->pool) > 0 && slm_now_ms() < until) sleep_ms(10);
        srv_pool_cancel_running(s->pool, SRV_CANCEL_SHUTDOWN);
        srv_hybrid_stop(s->hy_metrics); /* routing threads end (they use the pool) */
        while (srv_pool_busy(s->pool) > 0) sleep_ms(10);
    }
    /* Let responses and streams send their last bytes. */
    double until = slm_now_ms() + SRV_DRAIN_STREAMS_MS;
    while (atomic_load(&s->n_active) > 0 && slm_now_ms() < until) sleep_ms(10);
    atomic_store(&s->stopping, 1);
    if (s->daemon) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
    }
    if (s->reaper_started) {
        pthread_join(s->reaper, NULL);
        s->reaper_started = 0;
    }
}

void slm_server_free(slm_server *s) {
    if (!s) return;
    slm_server_shutdown(s, 0);
    srv_hybrid_stop(s->hy_metrics);
    srv_pool_free(s->pool);
    slm_hybrid_free(s->hybrid);
    srv_hybrid_metrics_free(s->hy_metrics);
    srv_adapters_free(&s->adapters); /* after the sessions that applied them */
    cJSON_Delete(s->base_sampling);
    if (s->api_key) {
        volatile char *k = s->api_key;
        for (size_t i = 0; i < s->api_key_len; i++) k[i] = 0;
        free(s->api_key);
    }
    srv_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->conn_mu);
    free(s);
}
