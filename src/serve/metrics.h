/* Server metrics, rendered in Prometheus text format for GET /metrics. */
#ifndef SLM_SERVE_METRICS_H
#define SLM_SERVE_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef enum srv_endpoint {
    SRV_EP_CHAT = 0,
    SRV_EP_COMPLETIONS,
    SRV_EP_MODELS,
    SRV_EP_HEALTH,
    SRV_EP_METRICS,
    SRV_EP_EMBEDDINGS,
    SRV_EP_CLASSIFY,
    SRV_EP_OTHER,
    SRV_EP_COUNT
} srv_endpoint;

#define SRV_STATUS_MIN 100
#define SRV_STATUS_MAX 599
#define SRV_TTFT_BUCKETS 12
#define SRV_TOKEN_BUCKETS 12
#define SRV_DURATION_BUCKETS 12

typedef struct srv_histogram {
    const double *bounds; /* seconds, ascending */
    int n_bounds;
    uint64_t counts[16]; /* per bound, non-cumulative; [n_bounds] = +Inf */
    double sum;
    uint64_t count;
} srv_histogram;

typedef struct srv_metrics {
    pthread_mutex_t mu;
    uint64_t requests[SRV_EP_COUNT][SRV_STATUS_MAX - SRV_STATUS_MIN + 1];
    uint64_t prompt_tokens, generated_tokens, cached_tokens;
    uint64_t cancelled;         /* client went away mid-generation */
    uint64_t deadline_exceeded; /* per-request deadline hit */
    uint64_t errors_by_type[4]; /* invalid_request, overloaded, timeout, server */
    srv_histogram ttft, token, duration;
    /* gauges, read live when rendering */
    int queue_depth, slots_busy, slots_total, connections;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);
/* A finished HTTP request: endpoint, status, seconds it took. */
void srv_metrics_request(srv_metrics *m, srv_endpoint ep, int status, const char *error_type,
                         double seconds);
void srv_metrics_ttft(srv_metrics *m, double seconds);
void srv_metrics_token(srv_metrics *m, double seconds);
void srv_metrics_tokens(srv_metrics *m, int64_t prompt, int64_t generated, int64_t cached);
void srv_metrics_event(srv_metrics *m, int cancelled, int deadline);
void srv_metrics_gauges(srv_metrics *m, int queue_depth, int slots_busy, int slots_total);
void srv_metrics_connections(srv_metrics *m, int delta);
/* Prometheus exposition text (malloc'd). */
char *srv_metrics_render(srv_metrics *m, size_t *len);
const char *srv_endpoint_name(srv_endpoint ep);

#endif
