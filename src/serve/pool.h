/* The slot pool: N sessions over one model, each with a worker thread, and a
 * bounded FIFO queue of jobs in front of them. A job goes to the free slot
 * whose cached tokens share the longest prefix with its prompt, so a
 * follow-up turn of a conversation lands where its history is cached. */
#ifndef SLM_SERVE_POOL_H
#define SLM_SERVE_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/metrics.h"
#include "serve/openai.h"
#include "slm.h"

typedef enum srv_job_state { SRV_JOB_QUEUED = 0, SRV_JOB_RUNNING, SRV_JOB_DONE } srv_job_state;

/* Why a job stopped early (job->cancel). */
enum {
    SRV_CANCEL_NONE = 0,
    SRV_CANCEL_CLIENT = 1,
    SRV_CANCEL_DEADLINE = 2,
    SRV_CANCEL_SHUTDOWN = 3
};

typedef struct srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on new text, start and end */
    int refs;
    /* input (owned) */
    int32_t *ids;
    size_t n_ids;
    char *config_json; /* per-request settings for slm_session_configure */
    double t_arrival_ms, deadline_ms;
    int n_top; /* -1 = no log-probabilities; else alternatives per token (set before submit) */
    /* LoRA (set before submit): adapter_sel 1 = the slot applies `adapter` (NULL = none) with
     * adapter_scale first; 0 = the session keeps what its config applies */
    int adapter_sel;
    const slm_adapter *adapter;
    float adapter_scale;
    /* work other than generation (set before submit): when work_fn is set the worker calls
     * work_fn(work_user, session, &result) instead of generating (serve/tasks.c) */
    slm_status (*work_fn)(void *user, slm_session *s, slm_result *res);
    void *work_user;
    /* output, under mu */
    srv_tok_lp *lps; /* per generated token when n_top >= 0 */
    size_t n_lps, cap_lps;
    srv_job_state state;
    char *text;
    size_t len, cap;
    slm_status status;
    char error[256];
    slm_result result;
    int never_ran; /* refused from the queue (shutdown) */
    atomic_int cancel;
    /* set by the worker */
    double t_last_token_ms;
    int32_t n_tokens_seen;
    struct srv_job *next; /* queue link, under the pool's lock */
    /* hybrid routing (issue 10, serve/hybrid_serve.c), under mu; hy_route "" = not routed */
    char hy_route[8];
    char hy_reason[160];
    int hy_degraded, hy_partial;
    char hy_cause[32];
} srv_job;

/* A job holding `ids` (copied) and `config_json` (copied); refs = 1. */
srv_job *srv_job_new(const int32_t *ids, size_t n_ids, const char *config_json, double t_arrival_ms,
                     double deadline_ms);
void srv_job_ref(srv_job *j);
void srv_job_unref(srv_job *j);
/* Waits until the job's state differs from `from` or `ms` pass. Caller holds j->mu. */
void srv_job_wait(srv_job *j, double ms);

typedef struct srv_pool srv_pool;

slm_status srv_pool_new(slm_model *model, const slm_config *cfg, int n_slots, int queue_cap,
                        srv_metrics *metrics, srv_pool **out);
/* Frees the pool; running jobs are cancelled, queued ones refused. */
void srv_pool_free(srv_pool *p);
int32_t srv_pool_n_ctx(const srv_pool *p);

enum { SRV_SUBMIT_OK = 0, SRV_SUBMIT_FULL = 1, SRV_SUBMIT_STOPPING = 2 };
/* Queues a job (the pool takes a reference). */
int srv_pool_submit(srv_pool *p, srv_job *j);
/* Removes a job that is still queued; 1 when it was removed (and will never run). */
int srv_pool_withdraw(srv_pool *p, srv_job *j);
/* Refuses queued jobs and any later submits. */
void srv_pool_stop_accepting(srv_pool *p);
/* Asks every running job to stop (reason SRV_CANCEL_*). */
void srv_pool_cancel_running(srv_pool *p, int reason);
/* Jobs running or queued. */
int srv_pool_busy(srv_pool *p);
void srv_pool_counts(srv_pool *p, int *idle, int *busy, int *queued);
int srv_pool_n_slots(const srv_pool *p);

#endif
