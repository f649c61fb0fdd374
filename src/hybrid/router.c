/* The hybrid router: local first, the cloud when a rule says so and the
 * egress policy allows it, the local model whenever the cloud fails. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/clock.h"
#include "base/status.h"
#include "hybrid/audit.h"
#include "hybrid/hybrid.h"
#include "runtime/config.h"
#include "runtime/session.h"

#define HY_LOCAL_SHARE 0.25 /* of the request's time kept for the local fallback */
#define HY_HOLD_MAX 64      /* bytes held back while a placeholder may be incomplete */

/* ---- creation ------------------------------------------------------------------------------ */

static slm_status parse_section(const char *text, const char *key, cJSON **out) {
    *out = NULL;
    if (!text || !text[0]) return SLM_OK;
    *out = cJSON_Parse(text);
    if (!*out) return slm_fail(SLM_ERR_CONFIG, "config key '%s': invalid JSON", key);
    return SLM_OK;
}

slm_status slm_hybrid_new(slm_model *model, const slm_config *cfg, slm_hybrid **out) {
    if (!model || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_hybrid_new: NULL argument");
    *out = NULL;
    slm_hybrid *h = calloc(1, sizeof *h);
    if (!h) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    h->model = model;
    slm_status st = SLM_OK;
    if (cfg && cfg->mode == SLM_MODE_HYBRID) {
        h->hybrid = 1;
        cJSON *cloud = NULL, *router = NULL, *policy = NULL;
        st = parse_section(cfg->hy_cloud, "cloud", &cloud);
        if (st == SLM_OK) st = parse_section(cfg->hy_router, "router", &router);
        if (st == SLM_OK) st = parse_section(cfg->hy_policy, "policy", &policy);
        hy_cloud_cfg cc;
        if (st == SLM_OK) st = hy_cloud_cfg_parse(cloud, &cc);
        if (st == SLM_OK && !cc.base_url[0])
            st = slm_fail(SLM_ERR_CONFIG,
                          "config key 'cloud.base_url': \"mode\": \"hybrid\" needs a cloud "
                          "section with a base_url");
        if (st == SLM_OK) st = hy_router_cfg_parse(router, &h->router);
        if (st == SLM_OK) st = hy_policy_new(policy, &h->policy);
        if (st == SLM_OK) st = hy_cloud_new(&cc, &h->cloud);
        snprintf(h->audit_log, sizeof h->audit_log, "%s", cfg->hy_audit_log);
        cJSON_Delete(cloud);
        cJSON_Delete(router);
        cJSON_Delete(policy);
    }
    if (st != SLM_OK) {
        slm_hybrid_free(h);
        return st;
    }
    *out = h;
    return SLM_OK;
}

void slm_hybrid_free(slm_hybrid *h) {
    if (!h) return;
    hy_cloud_free(h->cloud);
    hy_router_cfg_free(&h->router);
    hy_policy_free(h->policy);
    free(h);
}

int slm_hybrid_enabled(const slm_hybrid *h) {
    return h && h->hybrid;
}

/* ---- the plan -------------------------------------------------------------------------------- */

static int keyword_in(const char *text, size_t n, const char *kw) {
    size_t kl = strlen(kw);
    if (kl == 0 || kl > n) return 0;
    for (size_t i = 0; i + kl <= n; i++) {
        size_t k = 0;
        while (k < kl && tolower((unsigned char)text[i + k]) == (unsigned char)kw[k]) k++;
        if (k == kl) return 1;
    }
    return 0;
}

static int rule_matches(const hy_rule *r, const char *text, size_t n) {
    if (!text || n == 0) return 0;
    if (r->re) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(r->re, NULL);
        if (!md) return 0;
        int rc = pcre2_match(r->re, (PCRE2_SPTR)text, n, 0, 0, md, NULL);
        pcre2_match_data_free(md);
        return rc >= 0;
    }
    for (int k = 0; k < r->n_keywords; k++)
        if (keyword_in(text, n, r->keywords[k])) return 1;
    return 0;
}

void hy_plan_request(const slm_hybrid *h, const slm_chat_message *msgs, size_t n_msgs,
                     const char *prompt, size_t prompt_len, int32_t n_prompt_tokens, int32_t n_ctx,
                     int32_t max_tokens, slm_route pref, hy_plan *out) {
    memset(out, 0, sizeof *out);
    if (!h || !h->hybrid) {
        snprintf(out->reason, sizeof out->reason, "mode_local");
        return;
    }
    if (pref == SLM_ROUTE_LOCAL || pref == SLM_ROUTE_CLOUD) {
        out->to_cloud = pref == SLM_ROUTE_CLOUD;
        snprintf(out->reason, sizeof out->reason, "override");
        return;
    }
    for (int i = 0; i < h->router.n_rules; i++) {
        const hy_rule *r = &h->router.rules[i];
        int hit = 0;
        if (msgs) {
            for (size_t m = 0; m < n_msgs && !hit; m++)
                if (msgs[m].content)
                    hit = rule_matches(r, msgs[m].content, strlen(msgs[m].content));
        } else {
            hit = rule_matches(r, prompt, prompt_len);
        }
        if (hit) {
            out->to_cloud = r->to_cloud;
            snprintf(out->reason, sizeof out->reason, "rule:%s", r->name);
            return;
        }
    }
    int32_t limit = h->router.max_prompt_tokens;
    if (limit <= 0) {
        int32_t answer = max_tokens < n_ctx / 2 ? max_tokens : n_ctx / 2;
        limit = n_ctx - answer;
    }
    if (n_prompt_tokens > limit) {
        out->to_cloud = 1;
        snprintf(out->reason, sizeof out->reason, "context_overflow");
        return;
    }
    if (h->router.conf_tokens > 0) {
        out->probe = 1;
        snprintf(out->reason, sizeof out->reason, "confident");
        return;
    }
    snprintf(out->reason, sizeof out->reason, "default");
}

int hy_low_confidence(const slm_hybrid *h, double mean_logprob) {
    return h && mean_logprob < h->router.min_mean_logprob;
}

/* ---- one cloud answer ------------------------------------------------------------------------ */

/* Restores placeholders in streamed text: holds back a tail that may be the
 * start of a placeholder ("[EMAIL_" ... "]") until it is complete. */
typedef struct restorer {
    const hy_egress *eg;
    int active; /* something was redacted */
    hy_text_fn fn;
    void *user;
    char *hold;
    size_t hlen, hcap;
    int stopped;
} restorer;

static int emit(restorer *r, const char *t, size_t n) {
    if (n == 0 || r->stopped) return r->stopped;
    if (!r->active) {
        if (r->fn && r->fn(r->user, t, n)) r->stopped = 1;
        return r->stopped;
    }
    size_t on = 0;
    char *o = hy_egress_restore(r->eg, t, n, &on);
    if (!o) return r->stopped = 1;
    if (on && r->fn && r->fn(r->user, o, on)) r->stopped = 1;
    free(o);
    return r->stopped;
}

static int restorer_feed(void *user, const char *t, size_t n) {
    restorer *r = user;
    if (!r->active) return emit(r, t, n);
    if (r->hlen + n + 1 > r->hcap) {
        size_t nc = r->hcap ? r->hcap : 128;
        while (nc < r->hlen + n + 1) nc *= 2;
        char *nb = realloc(r->hold, nc);
        if (!nb) return 1;
        r->hold = nb;
        r->hcap = nc;
    }
    memcpy(r->hold + r->hlen, t, n);
    r->hlen += n;
    /* emit up to the last '[' that has no ']' after it (when near the end) */
    size_t cut = r->hlen;
    for (size_t i = r->hlen; i > 0; i--) {
        char ch = r->hold[i - 1];
        if (ch == ']') break;
        if (ch == '[') {
            if (r->hlen - (i - 1) <= HY_HOLD_MAX) cut = i - 1;
            break;
        }
    }
    if (cut == 0) return 0;
    int rc = emit(r, r->hold, cut);
    memmove(r->hold, r->hold + cut, r->hlen - cut);
    r->hlen -= cut;
    return rc;
}

static int restorer_flush(restorer *r) {
    int rc = emit(r, r->hold, r->hlen);
    r->hlen = 0;
    return rc;
}

int hy_answer(slm_hybrid *h, const hy_answer_req *q, hy_answer_out *o) {
    memset(o, 0, sizeof *o);
    o->cloud.prompt_tokens = o->cloud.completion_tokens = -1;
    if (!h || !h->hybrid || !h->cloud) {
        snprintf(o->cloud.cause, sizeof o->cloud.cause, "network");
        snprintf(o->cloud.detail, sizeof o->cloud.detail, "no cloud is configured");
        return -1;
    }
    hy_egress *eg = NULL;
    cJSON *body = cJSON_CreateObject();
    cJSON *arr = body ? cJSON_AddArrayToObject(body, "messages") : NULL;
    int rc = -1;
    char *json = NULL;
    if (!arr || hy_egress_new(h->policy, &eg) != SLM_OK) {
        snprintf(o->cloud.cause, sizeof o->cloud.cause, "network");
        snprintf(o->cloud.detail, sizeof o->cloud.detail, "out of memory");
        goto done;
    }
    size_t n_items = q->msgs ? q->n_msgs : 1;
    for (size_t i = 0; i < n_items; i++) {
        const char *role = q->msgs ? q->msgs[i].role : "user";
        const char *text = q->msgs ? q->msgs[i].content : q->prompt;
        size_t len = q->msgs ? (text ? strlen(text) : 0) : q->prompt_len;
        char *red = NULL;
        size_t rl = 0;
        if (hy_egress_add(eg, text ? text : "", len, &red, &rl) != SLM_OK) {
            /* the policy could not check the text: nothing is sent */
            o->blocked = 1;
            snprintf(o->classes, sizeof o->classes, "policy_error");
            rc = 1;
            goto done;
        }
        cJSON *m = cJSON_CreateObject();
        if (m) {
            cJSON_AddStringToObject(m, "role", role ? role : "user");
            cJSON_AddStringToObject(m, "content", red);
            cJSON_AddItemToArray(arr, m);
        }
        free(red);
    }
    const char *names = hy_egress_class_names(eg);
    snprintf(o->classes, sizeof o->classes, "%s", names ? names : "");
    hy_action act = hy_egress_action(eg);
    if (act == HY_BLOCK) {
        o->blocked = 1;
        rc = 1;
        goto done;
    }
    const hy_cloud_cfg *cc = hy_cloud_config(h->cloud);
    if (cc->model[0]) cJSON_AddStringToObject(body, "model", cc->model);
    if (q->max_tokens > 0) cJSON_AddNumberToObject(body, "max_tokens", q->max_tokens);
    if (q->temperature >= 0) cJSON_AddNumberToObject(body, "temperature", q->temperature);
    cJSON_AddBoolToObject(body, "stream", q->stream != 0);
    if (q->stream) {
        cJSON *so = cJSON_AddObjectToObject(body, "stream_options");
        if (so) cJSON_AddBoolToObject(so, "include_usage", 1);
    }
    json = cJSON_PrintUnformatted(body);
    if (!json) {
        snprintf(o->cloud.cause, sizeof o->cloud.cause, "network");
        snprintf(o->cloud.detail, sizeof o->cloud.detail, "out of memory");
        goto done;
    }
    /* The audit line is written before anything leaves the device: a request
     * whose egress cannot be recorded is not sent (it completes locally). */
    if (h->audit_log[0]) {
        hy_audit_entry ae = {"cloud",
                             q->reason ? q->reason : "",
                             o->classes,
                             act == HY_REDACT ? "redact" : "allow",
                             (uint64_t)strlen(json),
                             hy_cloud_host(h->cloud),
                             0,
                             NULL};
        if (hy_audit_append(h->audit_log, &ae) != SLM_OK) {
            snprintf(o->cloud.cause, sizeof o->cloud.cause, "audit_log");
            snprintf(o->cloud.detail, sizeof o->cloud.detail,
                     "cannot write the audit log, nothing was sent: %s", slm_last_error());
            rc = -1;
            goto done;
        }
    }
    restorer rs = {eg, act == HY_REDACT, q->on_text, q->user, NULL, 0, 0, 0};
    hy_cloud_req cr = {json,          strlen(json), q->stream,    q->deadline_ms,
                       restorer_feed, &rs,          q->cancelled, q->user};
    rc = hy_cloud_post(h->cloud, &cr, &o->cloud);
    if (rc == 0 && restorer_flush(&rs)) {
        rc = -1;
        snprintf(o->cloud.cause, sizeof o->cloud.cause, "cancelled");
    } else if (rc != 0 && !strcmp(o->cloud.cause, "cancelled")) {
        /* nothing */
    } else if (rc != 0) {
        /* what was held back is part of the text the caller has seen so far */
        restorer_flush(&rs);
    }
    free(rs.hold);
done:
    free(json);
    cJSON_Delete(body);
    hy_egress_free(eg);
    return rc;
}

/* ---- slm_hybrid_generate ----------------------------------------------------------------- */

typedef struct gen_ctx {
    const slm_hybrid *h;
    slm_token_fn fn;
    void *user;
    double deadline;
    int user_stop;
    int deadline_stop;
    size_t emitted; /* bytes passed to the caller */
    /* probe */
    int probing, decided, low;
    int32_t k, seen;
    double sum;
    char *buf;
    size_t blen, bcap;
    /* cloud text seen by the caller (for a local continuation) */
    char *cloud;
    size_t clen, ccap;
} gen_ctx;

static int append(char **b, size_t *len, size_t *cap, const char *t, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < *len + n + 1) nc *= 2;
        char *nb = realloc(*b, nc);
        if (!nb) return -1;
        *b = nb;
        *cap = nc;
    }
    memcpy(*b + *len, t, n);
    *len += n;
    (*b)[*len] = '\0';
    return 0;
}

static int pass(gen_ctx *g, const char *t, size_t n) {
    if (n == 0) return 0;
    g->emitted += n;
    if (g->fn && g->fn(g->user, t, n)) {
        g->user_stop = 1;
        return 1;
    }
    return 0;
}

static void probe_info(void *user, int32_t token, float logprob, const int32_t *top_ids,
                       const float *top_lp, int n_top) {
    (void)token;
    (void)top_ids;
    (void)top_lp;
    (void)n_top;
    gen_ctx *g = user;
    if (!g->probing || g->decided) return;
    g->seen++;
    g->sum += logprob;
    if (g->seen >= g->k) {
        g->decided = 1;
        g->low = hy_low_confidence(g->h, g->sum / g->seen);
    }
}

static int local_text(void *user, const char *t, size_t n) {
    gen_ctx *g = user;
    if (g->probing) {
        if (!g->decided) {
            if (append(&g->buf, &g->blen, &g->bcap, t, n)) return 1;
            return 0;
        }
        if (g->low) return 1; /* escalate: the local tokens are discarded */
        if (g->blen) {
            int rc = pass(g, g->buf, g->blen);
            g->blen = 0;
            if (rc) return 1;
        }
        g->probing = 0;
    }
    if (pass(g, t, n)) return 1;
    if (g->emitted > 0 && slm_now_ms() > g->deadline) {
        g->deadline_stop = 1;
        return 1;
    }
    return 0;
}

static int cloud_text(void *user, const char *t, size_t n) {
    gen_ctx *g = user;
    if (append(&g->cloud, &g->clen, &g->ccap, t, n)) return 1;
    return pass(g, t, n);
}

static int is_cancelled(void *user) {
    return ((gen_ctx *)user)->user_stop;
}

/* Runs the local model on ids, streaming through local_text. */
static slm_status run_local(slm_session *s, const int32_t *ids, size_t n, gen_ctx *g,
                            slm_result *r) {
    return slm_generate_tokens(s, ids, n, local_text, g, r);
}

char *slm_hybrid_result_json(const slm_hybrid_result *res, const char *text, size_t len) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (text) {
        char *t = malloc(len + 1);
        if (!t) {
            cJSON_Delete(o);
            return NULL;
        }
        memcpy(t, text, len);
        t[len] = '\0';
        cJSON_AddStringToObject(o, "text", t);
        free(t);
    }
    cJSON_AddStringToObject(o, "route", res->route ? res->route : "local");
    cJSON_AddStringToObject(o, "reason", res->reason);
    cJSON_AddBoolToObject(o, "degraded", res->degraded);
    if (res->degraded) {
        cJSON_AddStringToObject(o, "degraded_cause", res->degraded_cause);
        cJSON_AddBoolToObject(o, "cloud_partial", res->cloud_partial);
    } else {
        cJSON_AddNullToObject(o, "degraded_cause");
    }
    cJSON *u = cJSON_AddObjectToObject(o, "usage");
    if (u) {
        cJSON_AddNumberToObject(u, "prompt_tokens", res->prompt_tokens);
        cJSON_AddNumberToObject(u, "completion_tokens", res->completion_tokens);
        cJSON_AddNumberToObject(u, "total_tokens", res->prompt_tokens + res->completion_tokens);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int32_t count_tokens(const slm_model *m, const char *t, size_t n) {
    int32_t *ids = NULL;
    size_t k = 0;
    if (!t || n == 0 || slm_tokenize(m, t, n, 0, &ids, &k) != SLM_OK) return 0;
    free(ids);
    return (int32_t)k;
}

slm_status slm_hybrid_generate(slm_hybrid *h, slm_session *s, const slm_hybrid_request *req,
                               slm_token_fn on_text, void *user, slm_hybrid_result *res) {
    if (!h || !s || !req || !res)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_hybrid_generate: NULL argument");
    if (!req->msgs && !req->prompt)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_hybrid_generate: no messages and no prompt");
    memset(res, 0, sizeof *res);
    res->route = "local";
    double t0 = slm_now_ms();
    double window = req->deadline_ms > 0 ? req->deadline_ms : h->router.deadline_ms;
    if (window <= 0) window = 60000;
    double deadline = t0 + window;

    int32_t *ids = NULL;
    size_t n_ids = 0;
    slm_status st;
    if (req->msgs)
        st = slm_chat_prompt(s->model, req->msgs, req->n_msgs, 1, NULL, NULL, &ids, &n_ids, NULL);
    else
        st = slm_tokenize(s->model, req->prompt, req->prompt_len, SLM_TOKENIZE_ADD_BOS, &ids,
                          &n_ids);
    if (st != SLM_OK) return st;

    hy_plan plan;
    hy_plan_request(h, req->msgs, req->n_msgs, req->prompt, req->prompt_len, (int32_t)n_ids,
                    slm_session_n_ctx(s), s->cfg.max_tokens, req->route, &plan);
    snprintf(res->reason, sizeof res->reason, "%s", plan.reason);

    gen_ctx g;
    memset(&g, 0, sizeof g);
    g.h = h;
    g.fn = on_text;
    g.user = user;
    g.deadline = deadline;
    slm_result lr;
    memset(&lr, 0, sizeof lr);
    int answered = 0;
    int32_t *cont = NULL;

    if (plan.probe) {
        slm_token_info_fn saved = s->info;
        void *saved_user = s->info_user;
        int saved_top = s->info_n_top;
        st = slm_session_set_token_info(s, probe_info, &g, 0);
        if (st == SLM_OK) {
            g.probing = 1;
            g.k = h->router.conf_tokens;
            st = run_local(s, ids, n_ids, &g, &lr);
        }
        slm_session_set_token_info(s, saved, saved_user, saved_top);
        if (st != SLM_OK) goto out;
        res->mean_logprob = g.seen > 0 ? g.sum / g.seen : 0;
        if (g.seen > 0 && hy_low_confidence(h, res->mean_logprob)) {
            g.low = 1;
            plan.to_cloud = 1;
            snprintf(res->reason, sizeof res->reason, "low_confidence");
            g.blen = 0; /* the local tokens are discarded */
        } else {
            /* confident (or too short to judge): what was held goes out */
            if (g.probing && g.blen && !g.user_stop) pass(&g, g.buf, g.blen);
            g.blen = 0;
            g.probing = 0;
            answered = 1;
        }
    }

    if (!answered && plan.to_cloud && !g.user_stop) {
        res->route = "cloud";
        double now = slm_now_ms();
        double cloud_deadline = deadline - HY_LOCAL_SHARE * window;
        double own = now + hy_cloud_config(h->cloud)->timeout_ms;
        if (own < cloud_deadline) cloud_deadline = own;
        hy_answer_req aq = {req->msgs,
                            req->n_msgs,
                            req->prompt,
                            req->prompt_len,
                            s->cfg.max_tokens,
                            s->cfg.temperature,
                            req->stream_cloud,
                            cloud_deadline,
                            res->reason,
                            cloud_text,
                            &g,
                            is_cancelled};
        hy_answer_out ao;
        int rc = hy_answer(h, &aq, &ao);
        if (rc == 0) {
            answered = 1;
            res->prompt_tokens =
                ao.cloud.prompt_tokens >= 0 ? ao.cloud.prompt_tokens : (int32_t)n_ids;
            res->completion_tokens = ao.cloud.completion_tokens >= 0
                                         ? ao.cloud.completion_tokens
                                         : count_tokens(s->model, g.cloud, g.clen);
            res->finish = !strcmp(ao.cloud.finish, "length") ? SLM_FINISH_LENGTH : SLM_FINISH_EOS;
            goto out;
        }
        if (rc == 1) {
            res->route = "local";
            snprintf(res->reason, sizeof res->reason, "policy_block:%.140s", ao.classes);
        } else if (g.user_stop || !strcmp(ao.cloud.cause, "cancelled")) {
            res->finish = SLM_FINISH_CALLBACK;
            goto out;
        } else {
            res->degraded = 1;
            snprintf(res->degraded_cause, sizeof res->degraded_cause, "%s", ao.cloud.cause);
            snprintf(res->degraded_detail, sizeof res->degraded_detail, "%s", ao.cloud.detail);
            res->cloud_partial = g.clen > 0;
        }
    }

    if (!answered && !g.user_stop) {
        /* local: the whole answer, or the continuation of a cut cloud stream */
        const int32_t *run_ids = ids;
        size_t run_n = n_ids;
        int32_t partial_tokens = 0;
        if (res->cloud_partial) {
            int32_t *pids = NULL;
            size_t pn = 0;
            if (slm_tokenize(s->model, g.cloud, g.clen, 0, &pids, &pn) == SLM_OK) {
                cont = malloc((n_ids + pn) * sizeof *cont);
                if (cont) {
                    memcpy(cont, ids, n_ids * sizeof *cont);
                    if (pn) memcpy(cont + n_ids, pids, pn * sizeof *cont);
                    run_ids = cont;
                    run_n = n_ids + pn;
                    partial_tokens = (int32_t)pn;
                }
            }
            free(pids);
        }
        g.probing = 0;
        st = run_local(s, run_ids, run_n, &g, &lr);
        if (st != SLM_OK && g.emitted == 0) goto out;
        st = SLM_OK;
        res->prompt_tokens = (int32_t)n_ids;
        res->completion_tokens = lr.n_generated + partial_tokens;
        res->finish = g.deadline_stop ? SLM_FINISH_LENGTH : lr.finish;
    } else if (answered && !res->finish) {
        res->prompt_tokens = lr.n_prompt_tokens;
        res->completion_tokens = lr.n_generated;
        res->finish = lr.finish;
    }
    if (g.user_stop) res->finish = SLM_FINISH_CALLBACK;
out:
    res->ms = slm_now_ms() - t0;
    free(cont);
    free(ids);
    free(g.buf);
    free(g.cloud);
    return st;
}
