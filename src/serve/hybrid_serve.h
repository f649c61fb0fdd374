/* The server's side of hybrid deployment (issue 10): a request in hybrid
 * mode gets a relay job that the connection streams from as usual; a
 * thread of its own routes the request (src/hybrid), asks the cloud or the
 * slot pool, and writes the answer into the relay. Route, reason and
 * degradation are kept on the job and added to the response. */
#ifndef SLM_SERVE_HYBRID_SERVE_H
#define SLM_SERVE_HYBRID_SERVE_H

#include <pthread.h>
#include <stdint.h>

#include "serve/openai.h"
#include "serve/pool.h"
#include "slm.h"

typedef struct cJSON cJSON;

/* Route, reason and degradation counters for /metrics. */
typedef struct srv_hybrid_metrics srv_hybrid_metrics;
srv_hybrid_metrics *srv_hybrid_metrics_new(void);
void srv_hybrid_metrics_free(srv_hybrid_metrics *m);
/* Ends cloud calls and waits for every routing thread to finish. */
void srv_hybrid_stop(srv_hybrid_metrics *m);
/* Appends the counters in Prometheus text format to text (realloc'd). */
char *srv_hybrid_metrics_append(srv_hybrid_metrics *m, char *text, size_t *len);

typedef struct srv_hybrid_args {
    slm_hybrid *h;
    srv_pool *pool;
    srv_hybrid_metrics *metrics;
    slm_model *model;
    const srv_request *q; /* copied */
    int32_t n_ctx;
    int32_t max_tokens;
    double temperature; /* < 0: not sent */
} srv_hybrid_args;

/* Starts routing `relay` (a job made with srv_job_new, never submitted to
 * the pool) on a thread that holds its own reference. SRV_SUBMIT_OK, or
 * SRV_SUBMIT_FULL when no thread could be started. */
int srv_hybrid_submit(const srv_hybrid_args *a, srv_job *relay);

/* Adds "route", "reason", "degraded" (and "degraded_cause", "cloud_partial"
 * when degraded) of a routed job to a response or chunk JSON text; frees
 * `json` and returns the new text (or json itself when j was not routed). */
char *srv_hybrid_decorate(char *json, const srv_job *j);

#endif
