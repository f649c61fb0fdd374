/* Server metrics in Prometheus text format. One mutex guards them all: the
 * updates are a few additions per token, far below the cost of a token. */
#include "serve/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double TTFT_BOUNDS[SRV_TTFT_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                     0.5,   1,    2.5,   5,    10,  30};
static const double TOKEN_BOUNDS[SRV_TOKEN_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,   0.25,   0.5,   1,    2.5};
static const double DURATION_BOUNDS[SRV_DURATION_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25,
                                                             0.5,   1,     2.5,  5,    10,  60};

static const char *const ERROR_TYPES[4] = {"invalid_request_error", "overloaded_error",
                                           "timeout_error", "server_error"};

const char *srv_endpoint_name(srv_endpoint ep) {
    static const char *const names[SRV_EP_COUNT] = {
        "/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics",
        "/v1/embeddings",       "/v1/classify",    "other"};
    return ep < SRV_EP_COUNT ? names[ep] : "other";
}

void srv_metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    m->ttft.bounds = TTFT_BOUNDS;
    m->ttft.n_bounds = SRV_TTFT_BUCKETS;
    m->token.bounds = TOKEN_BOUNDS;
    m->token.n_bounds = SRV_TOKEN_BUCKETS;
    m->duration.bounds = DURATION_BOUNDS;
    m->duration.n_bounds = SRV_DURATION_BUCKETS;
}

void srv_metrics_destroy(srv_metrics *m) {
    pthread_mutex_destroy(&m->mu);
}

static void observe(srv_histogram *h, double v) {
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

void srv_metrics_request(srv_metrics *m, srv_endpoint ep, int status, const char *error_type,
                         double seconds) {
    pthread_mutex_lock(&m->mu);
    if (status >= SRV_STATUS_MIN && status <= SRV_STATUS_MAX && ep < SRV_EP_COUNT)
        m->requests[ep][status - SRV_STATUS_MIN]++;
    if (error_type)
        for (int i = 0; i < 4; i++)
            if (!strcmp(error_type, ERROR_TYPES[i])) m->errors_by_type[i]++;
    if (ep == SRV_EP_CHAT || ep == SRV_EP_COMPLETIONS) observe(&m->duration, seconds);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_ttft(srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_token(srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    observe(&m->token, seconds);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_tokens(srv_metrics *m, int64_t prompt, int64_t generated, int64_t cached) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)(prompt > 0 ? prompt : 0);
    m->generated_tokens += (uint64_t)(generated > 0 ? generated : 0);
    m->cached_tokens += (uint64_t)(cached > 0 ? cached : 0);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_event(srv_metrics *m, int cancelled, int deadline) {
    pthread_mutex_lock(&m->mu);
    m->cancelled += (uint64_t)(cancelled != 0);
    m->deadline_exceeded += (uint64_t)(deadline != 0);
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_gauges(srv_metrics *m, int queue_depth, int slots_busy, int slots_total) {
    pthread_mutex_lock(&m->mu);
    m->queue_depth = queue_depth;
    m->slots_busy = slots_busy;
    m->slots_total = slots_total;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_connections(srv_metrics *m, int delta) {
    pthread_mutex_lock(&m->mu);
    m->connections += delta;
    pthread_mutex_unlock(&m->mu);
}

/* A growing text buffer; on allocation failure it stops growing (ok = 0). */
typedef struct {
    char *s;
    size_t len, cap;
    int ok;
} textbuf;

static void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf *b, const char *fmt, ...) {
    if (!b->ok) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->ok = 0;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap * 2 + (size_t)n;
        char *ns = realloc(b->s, ncap);
        if (!ns) {
            b->ok = 0;
            return;
        }
        b->s = ns;
        b->cap = ncap;
    }
}

static void render_histogram(textbuf *b, const char *name, const char *help,
                             const srv_histogram *h) {
    tb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        tb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n_bounds];
    tb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
    tb_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

char *srv_metrics_render(srv_metrics *m, size_t *len) {
    textbuf b = {malloc(8192), 0, 8192, 1};
    if (!b.s) return NULL;
    b.s[0] = '\0';
    pthread_mutex_lock(&m->mu);
    tb_printf(&b, "# HELP slm_requests_total HTTP requests by endpoint and status.\n"
                  "# TYPE slm_requests_total counter\n");
    for (int ep = 0; ep < SRV_EP_COUNT; ep++)
        for (int s = 0; s <= SRV_STATUS_MAX - SRV_STATUS_MIN; s++)
            if (m->requests[ep][s])
                tb_printf(&b, "slm_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                          srv_endpoint_name((srv_endpoint)ep), s + SRV_STATUS_MIN,
                          (unsigned long long)m->requests[ep][s]);
    tb_printf(&b, "# HELP slm_errors_total Error responses by OpenAI error type.\n"
                  "# TYPE slm_errors_total counter\n");
    for (int i = 0; i < 4; i++)
        tb_printf(&b, "slm_errors_total{type=\"%s\"} %llu\n", ERROR_TYPES[i],
                  (unsigned long long)m->errors_by_type[i]);
    tb_printf(&b,
              "# HELP slm_prompt_tokens_total Prompt tokens of generation requests.\n"
              "# TYPE slm_prompt_tokens_total counter\nslm_prompt_tokens_total %llu\n"
              "# HELP slm_prompt_tokens_cached_total Prompt tokens reused from a slot's cache.\n"
              "# TYPE slm_prompt_tokens_cached_total counter\n"
              "slm_prompt_tokens_cached_total %llu\n"
              "# HELP slm_generated_tokens_total Tokens generated.\n"
              "# TYPE slm_generated_tokens_total counter\nslm_generated_tokens_total %llu\n"
              "# HELP slm_cancelled_total Generations cancelled because the client went away.\n"
              "# TYPE slm_cancelled_total counter\nslm_cancelled_total %llu\n"
              "# HELP slm_deadline_exceeded_total Requests that ran past their deadline.\n"
              "# TYPE slm_deadline_exceeded_total counter\nslm_deadline_exceeded_total %llu\n",
              (unsigned long long)m->prompt_tokens, (unsigned long long)m->cached_tokens,
              (unsigned long long)m->generated_tokens, (unsigned long long)m->cancelled,
              (unsigned long long)m->deadline_exceeded);
    render_histogram(&b, "slm_time_to_first_token_seconds",
                     "From request arrival (queue wait included) to the first token.", &m->ttft);
    render_histogram(&b, "slm_time_per_output_token_seconds",
                     "Time between successive generated tokens.", &m->token);
    render_histogram(&b, "slm_request_duration_seconds",
                     "Generation requests from arrival to response (or stream start).",
                     &m->duration);
    tb_printf(&b,
              "# HELP slm_queue_depth Requests waiting for a slot.\n# TYPE slm_queue_depth gauge\n"
              "slm_queue_depth %d\n"
              "# HELP slm_slots_busy Slots generating.\n# TYPE slm_slots_busy gauge\n"
              "slm_slots_busy %d\n"
              "# HELP slm_slots_total Slots (sessions) over the model.\n"
              "# TYPE slm_slots_total gauge\nslm_slots_total %d\n"
              "# HELP slm_http_requests_in_flight HTTP requests being handled.\n"
              "# TYPE slm_http_requests_in_flight gauge\nslm_http_requests_in_flight %d\n",
              m->queue_depth, m->slots_busy, m->slots_total, m->connections);
    pthread_mutex_unlock(&m->mu);
    if (!b.ok) {
        free(b.s);
        return NULL;
    }
    if (len) *len = b.len;
    return b.s;
}
