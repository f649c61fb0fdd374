/* Hybrid routing in the server: one thread per routed request. */
#include "serve/hybrid_serve.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/status.h"
#include "hybrid/hybrid.h"

#define HY_WAIT_MS 50.0
#define HY_LOCAL_SHARE 0.25 /* of the request's time kept for the local fallback */

/* ---- metrics ----------------------------------------------------------------------------- */

static const char *const REASONS[] = {"mode_local",     "default",     "confident",
                                      "override",       "rule",        "context_overflow",
                                      "low_confidence", "policy_block"};
#define N_REASONS (sizeof REASONS / sizeof REASONS[0])
static const char *const CAUSES[] = {"refused",
                                     "dns",
                                     "tls",
                                     "timeout",
                                     "http_429",
                                     "http_4xx",
                                     "http_5xx",
                                     "malformed_response",
                                     "truncated_response",
                                     "truncated_stream",
                                     "cloud_error",
                                     "breaker_open",
                                     "network",
                                     "other"};
#define N_CAUSES (sizeof CAUSES / sizeof CAUSES[0])

struct srv_hybrid_metrics {
    pthread_mutex_t mu;
    uint64_t routes[2][N_REASONS]; /* [local, cloud][reason] */
    uint64_t degraded[N_CAUSES];
    uint64_t partial;
    atomic_int running;  /* routing threads alive */
    atomic_int stopping; /* the server is shutting down: cloud calls end now */
};

srv_hybrid_metrics *srv_hybrid_metrics_new(void) {
    srv_hybrid_metrics *m = calloc(1, sizeof *m);
    if (m) {
        pthread_mutex_init(&m->mu, NULL);
        atomic_init(&m->running, 0);
        atomic_init(&m->stopping, 0);
    }
    return m;
}

void srv_hybrid_stop(srv_hybrid_metrics *m) {
    if (!m) return;
    atomic_store(&m->stopping, 1);
    while (atomic_load(&m->running) > 0) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void srv_hybrid_metrics_free(srv_hybrid_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void count(srv_hybrid_metrics *m, const srv_job *j) {
    if (!m) return;
    size_t r = 0;
    for (size_t i = 0; i < N_REASONS; i++) {
        size_t n = strlen(REASONS[i]);
        if (!strncmp(j->hy_reason, REASONS[i], n) &&
            (j->hy_reason[n] == '\0' || j->hy_reason[n] == ':')) {
            r = i;
            break;
        }
    }
    size_t c = N_CAUSES - 1;
    for (size_t i = 0; i < N_CAUSES; i++)
        if (!strcmp(j->hy_cause, CAUSES[i])) c = i;
    if (!strncmp(j->hy_cause, "http_", 5) && c == N_CAUSES - 1) c = 6; /* other codes */
    pthread_mutex_lock(&m->mu);
    m->routes[!strcmp(j->hy_route, "cloud")][r]++;
    if (j->hy_degraded) m->degraded[c]++;
    if (j->hy_partial) m->partial++;
    pthread_mutex_unlock(&m->mu);
}

char *srv_hybrid_metrics_append(srv_hybrid_metrics *m, char *text, size_t *len) {
    if (!m || !text) return text;
    size_t cap = *len + 8192;
    char *t = realloc(text, cap);
    if (!t) return text;
    size_t at = *len;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int n_ = snprintf(t + at, cap - at, __VA_ARGS__);                                          \
        if (n_ > 0 && (size_t)n_ < cap - at) at += (size_t)n_;                                     \
    } while (0)
    pthread_mutex_lock(&m->mu);
    ADD("# HELP slm_hybrid_requests_total Requests routed by the hybrid router, by route and "
        "reason.\n# TYPE slm_hybrid_requests_total counter\n");
    for (int rt = 0; rt < 2; rt++)
        for (size_t i = 0; i < N_REASONS; i++)
            ADD("slm_hybrid_requests_total{route=\"%s\",reason=\"%s\"} %llu\n",
                rt ? "cloud" : "local", REASONS[i], (unsigned long long)m->routes[rt][i]);
    ADD("# HELP slm_hybrid_degraded_total Cloud requests answered by the local model, by "
        "cause.\n# TYPE slm_hybrid_degraded_total counter\n");
    for (size_t i = 0; i < N_CAUSES; i++)
        ADD("slm_hybrid_degraded_total{cause=\"%s\"} %llu\n", CAUSES[i],
            (unsigned long long)m->degraded[i]);
    ADD("# HELP slm_hybrid_cloud_partial_total Cloud streams cut after some text; finished "
        "locally.\n# TYPE slm_hybrid_cloud_partial_total counter\n"
        "slm_hybrid_cloud_partial_total %llu\n",
        (unsigned long long)m->partial);
    pthread_mutex_unlock(&m->mu);
#undef ADD
    *len = at;
    return t;
}

/* ---- decoration ---------------------------------------------------------------------------- */

char *srv_hybrid_decorate(char *json, const srv_job *j) {
    if (!json || !j->hy_route[0]) return json;
    cJSON *o = cJSON_Parse(json);
    if (!o) return json;
    cJSON_AddStringToObject(o, "route", j->hy_route);
    cJSON_AddStringToObject(o, "reason", j->hy_reason);
    cJSON_AddBoolToObject(o, "degraded", j->hy_degraded);
    if (j->hy_degraded) {
        cJSON_AddStringToObject(o, "degraded_cause", j->hy_cause);
        cJSON_AddBoolToObject(o, "cloud_partial", j->hy_partial);
    }
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!out) return json;
    free(json);
    return out;
}

/* ---- the routing thread ------------------------------------------------------------------- */

typedef struct task {
    slm_hybrid *h;
    srv_pool *pool;
    srv_hybrid_metrics *metrics;
    slm_model *model;
    srv_job *relay;
    slm_chat_message *msgs;
    size_t n_msgs;
    char *prompt; /* completions: the prompt text (or the detokenized ids) */
    size_t prompt_len;
    int stream;
    int route;
    int32_t n_ctx, max_tokens;
    double temperature;
    char *local_cfg; /* the relay's config with context_policy "shift" */
    /* text the cloud sent (restored), for a local continuation */
    char *cloud;
    size_t clen, ccap;
} task;

static void task_free(task *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_msgs; i++) {
        free((char *)t->msgs[i].role);
        free((char *)t->msgs[i].content);
    }
    free(t->msgs);
    free(t->prompt);
    free(t->local_cfg);
    free(t->cloud);
    free(t);
}

static int relay_append(srv_job *r, const char *text, size_t n) {
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    if (r->len + n + 1 > r->cap) {
        size_t nc = r->cap ? r->cap : 256;
        while (nc < r->len + n + 1) nc *= 2;
        char *nb = realloc(r->text, nc);
        if (!nb) {
            rc = 1;
        } else {
            r->text = nb;
            r->cap = nc;
        }
    }
    if (!rc) {
        memcpy(r->text + r->len, text, n);
        r->len += n;
        r->text[r->len] = '\0';
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static int cloud_text(void *user, const char *text, size_t n) {
    task *t = user;
    if (t->clen + n + 1 > t->ccap) {
        size_t nc = t->ccap ? t->ccap : 256;
        while (nc < t->clen + n + 1) nc *= 2;
        char *nb = realloc(t->cloud, nc);
        if (!nb) return 1;
        t->cloud = nb;
        t->ccap = nc;
    }
    memcpy(t->cloud + t->clen, text, n);
    t->clen += n;
    return relay_append(t->relay, text, n);
}

static int relay_cancelled(void *user) {
    task *t = user;
    return atomic_load(&t->relay->cancel) != SRV_CANCEL_NONE ||
           (t->metrics && atomic_load(&t->metrics->stopping));
}

/* Submits a local job; NULL with the relay's error set when it cannot. */
static srv_job *submit_local(task *t, const int32_t *ids, size_t n, int n_top) {
    srv_job *r = t->relay;
    srv_job *j = srv_job_new(ids, n, t->local_cfg, r->t_arrival_ms, r->deadline_ms);
    if (!j) {
        r->status = SLM_ERR_NOMEM;
        snprintf(r->error, sizeof r->error, "out of memory");
        return NULL;
    }
    j->n_top = n_top;
    j->adapter_sel = r->adapter_sel; /* the request's LoRA adapter, as without routing */
    j->adapter = r->adapter;
    j->adapter_scale = r->adapter_scale;
    int sub = srv_pool_submit(t->pool, j);
    if (sub != SRV_SUBMIT_OK) {
        r->status = SLM_ERR_INTERNAL;
        snprintf(r->error, sizeof r->error, "%s",
                 sub == SRV_SUBMIT_FULL ? "all slots are busy and the queue is full"
                                        : "the server is shutting down");
        if (sub == SRV_SUBMIT_STOPPING) r->never_ran = 1;
        srv_job_unref(j);
        return NULL;
    }
    return j;
}

/* Waits for a local job, passing the relay's cancellation on. `until_lps`
 * > 0: returns as soon as that many log-probabilities are in. */
static void wait_local(task *t, srv_job *j, size_t until_lps) {
    pthread_mutex_lock(&j->mu);
    while (j->state != SRV_JOB_DONE && !(until_lps && j->n_lps >= until_lps)) {
        int why = atomic_load(&t->relay->cancel);
        if (why != SRV_CANCEL_NONE) {
            int none = SRV_CANCEL_NONE;
            atomic_compare_exchange_strong(&j->cancel, &none, why);
            if (srv_pool_withdraw(t->pool, j)) break;
        }
        srv_job_wait(j, HY_WAIT_MS);
    }
    pthread_mutex_unlock(&j->mu);
}

/* Copies a local job's text into the relay from byte `from` until it ends;
 * then its result. */
/* Appends a local job's log-probabilities to the relay's. */
static void relay_lps(srv_job *r, const srv_tok_lp *lps, size_t n) {
    if (n == 0) return;
    pthread_mutex_lock(&r->mu);
    if (r->n_lps + n > r->cap_lps) {
        size_t nc = r->cap_lps ? r->cap_lps : 64;
        while (nc < r->n_lps + n) nc *= 2;
        srv_tok_lp *nl = realloc(r->lps, nc * sizeof *nl);
        if (nl) {
            r->lps = nl;
            r->cap_lps = nc;
        }
    }
    if (r->n_lps + n <= r->cap_lps) {
        memcpy(r->lps + r->n_lps, lps, n * sizeof *lps);
        r->n_lps += n;
    }
    pthread_mutex_unlock(&r->mu);
}

static void relay_local(task *t, srv_job *j, size_t from, int32_t extra_tokens) {
    srv_job *r = t->relay;
    size_t sent = from;
    size_t lp_sent = 0;
    int want_lps = r->n_top >= 0 && extra_tokens == 0; /* not for a continuation of cloud text */
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (j->len == sent && j->state != SRV_JOB_DONE) {
            int why = atomic_load(&r->cancel);
            if (why != SRV_CANCEL_NONE) {
                int none = SRV_CANCEL_NONE;
                atomic_compare_exchange_strong(&j->cancel, &none, why);
                if (srv_pool_withdraw(t->pool, j)) {
                    j->state = SRV_JOB_DONE;
                    j->never_ran = 1;
                    break;
                }
            }
            srv_job_wait(j, HY_WAIT_MS);
        }
        size_t n = j->len > sent ? j->len - sent : 0;
        char *piece = n ? malloc(n) : NULL;
        if (piece) memcpy(piece, j->text + sent, n);
        sent += n;
        size_t nl = want_lps && j->n_lps > lp_sent ? j->n_lps - lp_sent : 0;
        srv_tok_lp *lps = nl ? malloc(nl * sizeof *lps) : NULL;
        if (lps) memcpy(lps, j->lps + lp_sent, nl * sizeof *lps);
        lp_sent += lps ? nl : 0;
        int done = j->state == SRV_JOB_DONE;
        pthread_mutex_unlock(&j->mu);
        if (lps) relay_lps(r, lps, nl); /* before the text, as the pool's workers do */
        free(lps);
        if (piece) relay_append(r, piece, n);
        free(piece);
        if (done) break;
    }
    pthread_mutex_lock(&j->mu);
    pthread_mutex_lock(&r->mu);
    r->status = j->status;
    memcpy(r->error, j->error, sizeof r->error);
    r->result = j->result;
    r->result.n_generated += extra_tokens;
    if (j->never_ran) r->never_ran = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_unlock(&j->mu);
}

static void finish(task *t) {
    srv_job *r = t->relay;
    count(t->metrics, r);
    pthread_mutex_lock(&r->mu);
    r->state = SRV_JOB_DONE;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void set_reason(srv_job *r, const char *route, const char *reason) {
    pthread_mutex_lock(&r->mu);
    snprintf(r->hy_route, sizeof r->hy_route, "%s", route);
    snprintf(r->hy_reason, sizeof r->hy_reason, "%s", reason);
    pthread_mutex_unlock(&r->mu);
}

static void *route_thread(void *arg) {
    task *t = arg;
    srv_job *r = t->relay;
    pthread_mutex_lock(&r->mu);
    r->state = SRV_JOB_RUNNING;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    hy_plan plan;
    hy_plan_request(t->h, t->msgs, t->n_msgs, t->prompt, t->prompt_len, (int32_t)r->n_ids, t->n_ctx,
                    t->max_tokens, (slm_route)t->route, &plan);
    set_reason(r, plan.to_cloud ? "cloud" : "local", plan.reason);

    if (plan.probe) {
        int32_t k = t->h->router.conf_tokens;
        srv_job *j = submit_local(t, r->ids, r->n_ids, r->n_top > 0 ? r->n_top : 0);
        if (!j) goto done;
        wait_local(t, j, (size_t)k);
        pthread_mutex_lock(&j->mu);
        size_t n = j->n_lps < (size_t)k ? j->n_lps : (size_t)k;
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += j->lps[i].logprob;
        pthread_mutex_unlock(&j->mu);
        if (n > 0 && hy_low_confidence(t->h, sum / (double)n)) {
            /* escalate: the local tokens are discarded */
            int none = SRV_CANCEL_NONE;
            atomic_compare_exchange_strong(&j->cancel, &none, SRV_CANCEL_CLIENT);
            wait_local(t, j, 0);
            srv_job_unref(j);
            plan.to_cloud = 1;
            set_reason(r, "cloud", "low_confidence");
        } else {
            relay_local(t, j, 0, 0);
            srv_job_unref(j);
            goto done;
        }
    }

    int32_t *cont = NULL;
    size_t cont_n = 0;
    int32_t partial_tokens = 0;
    if (plan.to_cloud) {
        double window = r->deadline_ms - r->t_arrival_ms;
        double cloud_deadline = r->deadline_ms - HY_LOCAL_SHARE * window;
        double own = slm_now_ms() + hy_cloud_config(t->h->cloud)->timeout_ms;
        if (own < cloud_deadline) cloud_deadline = own;
        hy_answer_req aq = {t->msgs,       t->n_msgs,      t->prompt, t->prompt_len,
                            t->max_tokens, t->temperature, t->stream, cloud_deadline,
                            r->hy_reason,  cloud_text,     t,         relay_cancelled};
        hy_answer_out ao;
        int rc = hy_answer(t->h, &aq, &ao);
        if (rc == 0) {
            pthread_mutex_lock(&r->mu);
            r->status = SLM_OK;
            r->result.n_prompt_tokens =
                ao.cloud.prompt_tokens >= 0 ? ao.cloud.prompt_tokens : (int32_t)r->n_ids;
            int32_t ct = ao.cloud.completion_tokens;
            if (ct < 0) {
                int32_t *ids = NULL;
                size_t k = 0;
                ct = 0;
                if (t->clen && slm_tokenize(t->model, t->cloud, t->clen, 0, &ids, &k) == SLM_OK)
                    ct = (int32_t)k;
                free(ids);
            }
            r->result.n_generated = ct;
            r->result.finish =
                !strcmp(ao.cloud.finish, "length") ? SLM_FINISH_LENGTH : SLM_FINISH_EOS;
            pthread_mutex_unlock(&r->mu);
            goto done;
        }
        if (rc == 1) {
            char reason[SLM_HYBRID_REASON_CAP];
            snprintf(reason, sizeof reason, "policy_block:%.140s", ao.classes);
            set_reason(r, "local", reason);
        } else if (atomic_load(&r->cancel) != SRV_CANCEL_NONE) {
            goto done;
        } else {
            pthread_mutex_lock(&r->mu);
            r->hy_degraded = 1;
            snprintf(r->hy_cause, sizeof r->hy_cause, "%s", ao.cloud.cause);
            r->hy_partial = t->clen > 0;
            pthread_mutex_unlock(&r->mu);
            if (t->clen > 0) {
                /* finish locally: the prompt, then the cloud's text so far */
                int32_t *pids = NULL;
                size_t pn = 0;
                if (slm_tokenize(t->model, t->cloud, t->clen, 0, &pids, &pn) == SLM_OK) {
                    cont = malloc((r->n_ids + pn) * sizeof *cont);
                    if (cont) {
                        memcpy(cont, r->ids, r->n_ids * sizeof *cont);
                        if (pn) memcpy(cont + r->n_ids, pids, pn * sizeof *cont);
                        cont_n = r->n_ids + pn;
                        partial_tokens = (int32_t)pn;
                    }
                }
                free(pids);
            }
        }
    }
    {
        srv_job *j =
            cont ? submit_local(t, cont, cont_n, -1) : submit_local(t, r->ids, r->n_ids, r->n_top);
        if (j) {
            relay_local(t, j, 0, partial_tokens);
            if (cont) r->result.n_prompt_tokens = (int32_t)r->n_ids;
            srv_job_unref(j);
        }
        free(cont);
    }
done:
    finish(t);
    srv_job_unref(r);
    srv_hybrid_metrics *m = t->metrics;
    task_free(t);
    if (m) atomic_fetch_sub(&m->running, 1);
    return NULL;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* The relay's per-request config with context_policy "shift" (a local
 * fallback must answer even when the prompt is too long for the context). */
static char *local_config(const char *json) {
    cJSON *o = cJSON_Parse(json ? json : "{}");
    if (!o) return NULL;
    cJSON_DeleteItemFromObjectCaseSensitive(o, "context_policy");
    cJSON_AddStringToObject(o, "context_policy", "shift");
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int srv_hybrid_submit(const srv_hybrid_args *a, srv_job *relay) {
    task *t = calloc(1, sizeof *t);
    if (!t) return SRV_SUBMIT_FULL;
    t->h = a->h;
    t->pool = a->pool;
    t->metrics = a->metrics;
    t->model = a->model;
    t->relay = relay;
    t->stream = a->q->stream;
    t->route = a->q->route;
    t->n_ctx = a->n_ctx;
    t->max_tokens = a->max_tokens;
    t->temperature = a->temperature;
    t->local_cfg = local_config(relay->config_json);
    int ok = t->local_cfg != NULL;
    if (ok && a->q->kind == SRV_CHAT) {
        t->msgs = calloc(a->q->n_msgs ? a->q->n_msgs : 1, sizeof *t->msgs);
        ok = t->msgs != NULL;
        for (size_t i = 0; ok && i < a->q->n_msgs; i++) {
            const char *role = a->q->msgs[i].role ? a->q->msgs[i].role : "user";
            const char *c = a->q->msgs[i].content ? a->q->msgs[i].content : "";
            t->msgs[i].role = dup_n(role, strlen(role));
            t->msgs[i].content = dup_n(c, strlen(c));
            t->n_msgs = i + 1;
            ok = t->msgs[i].role && t->msgs[i].content;
        }
    } else if (ok) {
        if (a->q->prompt) {
            t->prompt = dup_n(a->q->prompt, a->q->prompt_len);
            t->prompt_len = a->q->prompt_len;
        } else {
            size_t n = 0;
            if (slm_detokenize(a->model, a->q->prompt_ids, a->q->n_prompt_ids, &t->prompt, &n) ==
                SLM_OK)
                t->prompt_len = n;
        }
        ok = t->prompt != NULL;
    }
    if (!ok) {
        task_free(t);
        return SRV_SUBMIT_FULL;
    }
    srv_job_ref(relay);
    if (t->metrics) atomic_fetch_add(&t->metrics->running, 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, route_thread, t);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        if (t->metrics) atomic_fetch_sub(&t->metrics->running, 1);
        srv_job_unref(relay);
        task_free(t);
        return SRV_SUBMIT_FULL;
    }
    return SRV_SUBMIT_OK;
}
