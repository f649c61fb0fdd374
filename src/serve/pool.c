/* The slot pool (see pool.h). Lock order: the pool's mutex before a job's. */
#include "serve/pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"

typedef struct srv_slot {
    struct srv_pool *pool;
    int idx;
    pthread_t thread;
    int started;
    pthread_cond_t cv; /* a job was assigned, or the pool is closing */
    slm_session *sess;
    srv_job *job;  /* assigned job, under the pool's lock */
    int32_t *hist; /* tokens the session holds (prompt + generated), for slot choice */
    int32_t n_hist, cap_hist;
    uint64_t last_used; /* dispatch tick, for least-recently-used ties */
    /* the LoRA selection the session applies (as a job's adapter_sel/adapter/adapter_scale);
     * written by the worker while it owns the slot, read by dispatch when it is free */
    int adapter_sel;
    const slm_adapter *adapter;
    float adapter_scale;
} srv_slot;

struct srv_pool {
    pthread_mutex_t mu;
    slm_model *model;
    srv_slot *slots;
    int n_slots, n_busy;
    srv_job *head, *tail;
    int n_queued, queue_cap;
    int accepting, closing;
    uint64_t tick;
    srv_metrics *metrics;
};

/* ---- jobs ------------------------------------------------------------------------ */

static void cond_init_monotonic(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

srv_job *srv_job_new(const int32_t *ids, size_t n_ids, const char *config_json, double t_arrival_ms,
                     double deadline_ms) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->ids = malloc((n_ids ? n_ids : 1) * sizeof *ids);
    j->config_json = strdup(config_json ? config_json : "{}");
    if (!j->ids || !j->config_json) {
        free(j->ids);
        free(j->config_json);
        free(j);
        return NULL;
    }
    if (n_ids) memcpy(j->ids, ids, n_ids * sizeof *ids);
    j->n_ids = n_ids;
    pthread_mutex_init(&j->mu, NULL);
    cond_init_monotonic(&j->cv);
    j->refs = 1;
    j->t_arrival_ms = t_arrival_ms;
    j->deadline_ms = deadline_ms;
    j->state = SRV_JOB_QUEUED;
    j->n_top = -1;
    atomic_init(&j->cancel, SRV_CANCEL_NONE);
    return j;
}

void srv_job_ref(srv_job *j) {
    pthread_mutex_lock(&j->mu);
    j->refs++;
    pthread_mutex_unlock(&j->mu);
}

void srv_job_unref(srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->ids);
    free(j->config_json);
    free(j->text);
    free(j->lps);
    free(j);
}

void srv_job_wait(srv_job *j, double ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = (long long)ts.tv_nsec + (long long)(ms * 1e6);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
}

/* ---- dispatch ------------------------------------------------------------------------ */

static void update_gauges(srv_pool *p) {
    if (p->metrics) srv_metrics_gauges(p->metrics, p->n_queued, p->n_busy, p->n_slots);
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, size_t nb) {
    int32_t i = 0;
    while (i < na && (size_t)i < nb && a[i] == b[i]) i++;
    return i;
}

/* Gives queued jobs to free slots, oldest job first. Pool lock held. */
static void dispatch(srv_pool *p) {
    while (p->head && p->n_busy < p->n_slots) {
        srv_job *j = p->head;
        srv_slot *best = NULL;
        int32_t best_lcp = -1;
        for (int i = 0; i < p->n_slots; i++) {
            srv_slot *s = &p->slots[i];
            if (s->job) continue;
            int32_t lcp = common_prefix(s->hist, s->n_hist, j->ids, j->n_ids);
            /* a cache computed with other adapters is of no use: switching recomputes */
            if (j->adapter_sel && (!s->adapter_sel || s->adapter != j->adapter ||
                                   s->adapter_scale != j->adapter_scale))
                lcp = 0;
            if (lcp > best_lcp || (lcp == best_lcp && s->last_used < best->last_used)) {
                best = s;
                best_lcp = lcp;
            }
        }
        if (!best) break;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        j->next = NULL;
        p->n_queued--;
        p->n_busy++;
        best->job = j;
        best->last_used = ++p->tick;
        pthread_mutex_lock(&j->mu);
        j->state = SRV_JOB_RUNNING;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        pthread_cond_signal(&best->cv);
    }
    update_gauges(p);
}

/* ---- the worker ------------------------------------------------------------------------ */

typedef struct run_ctx {
    srv_slot *slot;
    srv_job *job;
} run_ctx;

static int on_text(void *user, const char *text, size_t len) {
    srv_job *j = ((run_ctx *)user)->job;
    pthread_mutex_lock(&j->mu);
    if (j->len + len + 1 > j->cap) {
        size_t ncap = j->cap ? j->cap : 256;
        while (ncap < j->len + len + 1) ncap *= 2;
        char *nt = realloc(j->text, ncap);
        if (!nt) {
            pthread_mutex_unlock(&j->mu);
            atomic_store(&j->cancel, SRV_CANCEL_SHUTDOWN);
            return 1;
        }
        j->text = nt;
        j->cap = ncap;
    }
    memcpy(j->text + j->len, text, len);
    j->len += len;
    j->text[j->len] = '\0';
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    if (slm_now_ms() > j->deadline_ms) {
        int none = SRV_CANCEL_NONE;
        atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_DEADLINE);
    }
    return atomic_load(&j->cancel) != SRV_CANCEL_NONE;
}

static void on_token(void *user, int32_t token, double t_ms) {
    (void)t_ms;
    run_ctx *c = user;
    srv_slot *s = c->slot;
    srv_job *j = c->job;
    double now = slm_now_ms();
    if (s->n_hist < s->cap_hist) s->hist[s->n_hist++] = token;
    srv_metrics *m = s->pool->metrics;
    if (m) {
        if (j->n_tokens_seen == 0)
            srv_metrics_ttft(m, (now - j->t_arrival_ms) / 1e3);
        else
            srv_metrics_token(m, (now - j->t_last_token_ms) / 1e3);
    }
    j->t_last_token_ms = now;
    j->n_tokens_seen++;
}

static void on_token_info(void *user, int32_t token, float logprob, const int32_t *top_ids,
                          const float *top_logprobs, int n_top) {
    srv_job *j = ((run_ctx *)user)->job;
    pthread_mutex_lock(&j->mu);
    if (j->n_lps == j->cap_lps) {
        size_t ncap = j->cap_lps ? j->cap_lps * 2 : 64;
        srv_tok_lp *nl = realloc(j->lps, ncap * sizeof *nl);
        if (!nl) {
            pthread_mutex_unlock(&j->mu);
            atomic_store(&j->cancel, SRV_CANCEL_SHUTDOWN);
            return;
        }
        j->lps = nl;
        j->cap_lps = ncap;
    }
    srv_tok_lp *e = &j->lps[j->n_lps++];
    e->token = token;
    e->logprob = logprob;
    e->n_top = n_top < SRV_MAX_TOP_LOGPROBS_CHAT ? n_top : SRV_MAX_TOP_LOGPROBS_CHAT;
    for (int i = 0; i < e->n_top; i++) {
        e->top_ids[i] = top_ids[i];
        e->top_lp[i] = top_logprobs[i];
    }
    pthread_mutex_unlock(&j->mu);
}

static void run_job(srv_slot *s, srv_job *j) {
    slm_result res;
    memset(&res, 0, sizeof res);
    slm_status st = SLM_OK;
    char err[256] = "";
    /* What the slot will hold: this prompt, then the tokens generated. */
    size_t keep = j->n_ids < (size_t)s->cap_hist ? j->n_ids : (size_t)s->cap_hist;
    memcpy(s->hist, j->ids, keep * sizeof *j->ids);
    s->n_hist = (int32_t)keep;
    if (atomic_load(&j->cancel) != SRV_CANCEL_NONE || slm_now_ms() > j->deadline_ms) {
        int none = SRV_CANCEL_NONE;
        atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_DEADLINE);
        st = SLM_ERR_CANCELLED;
        snprintf(err, sizeof err, "cancelled before it started");
    } else {
        st = SLM_OK;
        if (j->adapter_sel &&
            (!s->adapter_sel || s->adapter != j->adapter || s->adapter_scale != j->adapter_scale)) {
            /* no base reload; the session drops its cache (computed with the old adapters) */
            st = slm_session_set_adapters(s->sess, j->adapter ? &j->adapter : NULL,
                                          &j->adapter_scale, j->adapter ? 1 : 0);
            s->adapter_sel = st == SLM_OK;
            s->adapter = j->adapter;
            s->adapter_scale = j->adapter_scale;
        }
        if (st == SLM_OK)
            st = slm_session_configure(s->sess, j->config_json, strlen(j->config_json));
        if (st == SLM_OK && j->work_fn) {
            st = j->work_fn(j->work_user, s->sess, &res);
        } else if (st == SLM_OK) {
            run_ctx c = {s, j};
            slm_session_set_observer(s->sess, on_token, &c);
            if (j->n_top >= 0)
                st = slm_session_set_token_info(s->sess, on_token_info, &c, j->n_top);
            if (st == SLM_OK)
                st = slm_generate_tokens(s->sess, j->ids, j->n_ids, on_text, &c, &res);
            slm_session_set_observer(s->sess, NULL, NULL);
            slm_session_set_token_info(s->sess, NULL, NULL, 0);
        }
        if (st != SLM_OK) snprintf(err, sizeof err, "%s", slm_last_error());
    }
    if (s->pool->metrics) {
        srv_metrics_tokens(s->pool->metrics, res.n_prompt_tokens, res.n_generated, res.n_cached);
        int why = atomic_load(&j->cancel);
        if (res.finish == SLM_FINISH_CALLBACK || st == SLM_ERR_CANCELLED)
            srv_metrics_event(s->pool->metrics, why == SRV_CANCEL_CLIENT,
                              why == SRV_CANCEL_DEADLINE);
    }
    /* Done and the slot free in one step, so that a client who has seen the
     * end and sends its next turn finds this slot (and its cache) free. */
    srv_pool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    pthread_mutex_lock(&j->mu);
    j->status = st;
    snprintf(j->error, sizeof j->error, "%s", err);
    j->result = res;
    j->state = SRV_JOB_DONE;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    s->job = NULL;
    p->n_busy--;
    dispatch(p);
    pthread_mutex_unlock(&p->mu);
}

static void *worker(void *arg) {
    srv_slot *s = arg;
    srv_pool *p = s->pool;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!s->job && !p->closing) pthread_cond_wait(&s->cv, &p->mu);
        if (!s->job) break;
        srv_job *j = s->job;
        pthread_mutex_unlock(&p->mu);
        run_job(s, j); /* frees the slot when done */
        srv_job_unref(j);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the pool ------------------------------------------------------------------------ */

slm_status srv_pool_new(slm_model *model, const slm_config *cfg, int n_slots, int queue_cap,
                        srv_metrics *metrics, srv_pool **out) {
    *out = NULL;
    if (n_slots < 1) return slm_fail(SLM_ERR_INVALID_ARG, "serve: at least one slot is needed");
    srv_pool *p = calloc(1, sizeof *p);
    if (!p) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    p->slots = calloc((size_t)n_slots, sizeof *p->slots);
    if (!p->slots) {
        free(p);
        return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    p->model = model;
    p->queue_cap = queue_cap;
    p->accepting = 1;
    p->metrics = metrics;
    slm_status st = SLM_OK;
    for (int i = 0; i < n_slots; i++) {
        srv_slot *s = &p->slots[i];
        s->pool = p;
        s->idx = i;
        pthread_cond_init(&s->cv, NULL);
        p->n_slots = i + 1;
        st = slm_session_new(model, cfg, &s->sess);
        if (st != SLM_OK) break;
        s->cap_hist = slm_session_n_ctx(s->sess) + 1;
        s->hist = malloc((size_t)s->cap_hist * sizeof *s->hist);
        if (!s->hist) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
            break;
        }
        if (pthread_create(&s->thread, NULL, worker, s) != 0) {
            st = slm_fail(SLM_ERR_INTERNAL, "serve: cannot start a worker thread");
            break;
        }
        s->started = 1;
    }
    if (st != SLM_OK) {
        srv_pool_free(p);
        return st;
    }
    update_gauges(p);
    *out = p;
    return SLM_OK;
}

int32_t srv_pool_n_ctx(const srv_pool *p) {
    return slm_session_n_ctx(p->slots[0].sess);
}
int srv_pool_n_slots(const srv_pool *p) {
    return p->n_slots;
}

int srv_pool_submit(srv_pool *p, srv_job *j) {
    pthread_mutex_lock(&p->mu);
    if (!p->accepting) {
        pthread_mutex_unlock(&p->mu);
        return SRV_SUBMIT_STOPPING;
    }
    if (p->n_busy >= p->n_slots && p->n_queued >= p->queue_cap) {
        pthread_mutex_unlock(&p->mu);
        return SRV_SUBMIT_FULL;
    }
    srv_job_ref(j);
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->n_queued++;
    dispatch(p);
    pthread_mutex_unlock(&p->mu);
    return SRV_SUBMIT_OK;
}

/* Unlinks j from the queue; pool lock held. 1 if it was there. */
static int unlink_job(srv_pool *p, srv_job *j) {
    srv_job *prev = NULL;
    for (srv_job *q = p->head; q; prev = q, q = q->next) {
        if (q != j) continue;
        if (prev)
            prev->next = q->next;
        else
            p->head = q->next;
        if (p->tail == q) p->tail = prev;
        q->next = NULL;
        p->n_queued--;
        return 1;
    }
    return 0;
}

int srv_pool_withdraw(srv_pool *p, srv_job *j) {
    pthread_mutex_lock(&p->mu);
    int removed = unlink_job(p, j);
    if (removed) {
        pthread_mutex_lock(&j->mu);
        j->state = SRV_JOB_DONE;
        j->never_ran = 1;
        j->status = SLM_ERR_CANCELLED;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        update_gauges(p);
    }
    pthread_mutex_unlock(&p->mu);
    if (removed) srv_job_unref(j); /* the queue's reference */
    return removed;
}

/* Refuses every queued job; pool lock held. Returns them for unref. */
static srv_job *refuse_queued(srv_pool *p) {
    srv_job *list = p->head;
    for (srv_job *q = list; q; q = q->next) {
        pthread_mutex_lock(&q->mu);
        q->state = SRV_JOB_DONE;
        q->never_ran = 1;
        q->status = SLM_ERR_CANCELLED;
        atomic_store(&q->cancel, SRV_CANCEL_SHUTDOWN);
        pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
    p->head = p->tail = NULL;
    p->n_queued = 0;
    update_gauges(p);
    return list;
}

static void unref_list(srv_job *list) {
    while (list) {
        srv_job *next = list->next;
        list->next = NULL;
        srv_job_unref(list);
        list = next;
    }
}

void srv_pool_stop_accepting(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->accepting = 0;
    srv_job *list = refuse_queued(p);
    pthread_mutex_unlock(&p->mu);
    unref_list(list);
}

void srv_pool_cancel_running(srv_pool *p, int reason) {
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n_slots; i++) {
        srv_job *j = p->slots[i].job;
        if (!j) continue;
        int none = SRV_CANCEL_NONE;
        atomic_compare_exchange_strong(&j->cancel, &none, reason);
    }
    pthread_mutex_unlock(&p->mu);
}

int srv_pool_busy(srv_pool *p) {
    pthread_mutex_lock(&p->mu);
    int n = p->n_busy + p->n_queued;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void srv_pool_counts(srv_pool *p, int *idle, int *busy, int *queued) {
    pthread_mutex_lock(&p->mu);
    *idle = p->n_slots - p->n_busy;
    *busy = p->n_busy;
    *queued = p->n_queued;
    pthread_mutex_unlock(&p->mu);
}

void srv_pool_free(srv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->accepting = 0;
    p->closing = 1;
    srv_job *list = refuse_queued(p);
    for (int i = 0; i < p->n_slots; i++) {
        srv_job *j = p->slots[i].job;
        if (j) {
            int none = SRV_CANCEL_NONE;
            atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_SHUTDOWN);
        }
        pthread_cond_broadcast(&p->slots[i].cv);
    }
    pthread_mutex_unlock(&p->mu);
    unref_list(list);
    for (int i = 0; i < p->n_slots; i++) {
        srv_slot *s = &p->slots[i];
        if (s->started) pthread_join(s->thread, NULL);
        slm_session_free(s->sess);
        free(s->hist);
        pthread_cond_destroy(&s->cv);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->slots);
    free(p);
}
