/* Internals of the hybrid router shared by the C API (router.c) and the
 * server (src/serve/server.c): the routing plan, the confidence check, and
 * one cloud answer with the egress policy, placeholder restoration and the
 * audit log. */
#ifndef SLM_HYBRID_HYBRID_H
#define SLM_HYBRID_HYBRID_H

#include <stddef.h>
#include <stdint.h>

#include "hybrid/cloud.h"
#include "hybrid/hy_config.h"
#include "hybrid/policy.h"
#include "slm.h"

struct slm_hybrid {
    slm_model *model;
    int hybrid;      /* "mode": "hybrid" */
    hy_cloud *cloud; /* NULL in local mode: no socket is ever opened */
    hy_router_cfg router;
    hy_policy *policy;
    char audit_log[HY_MAX_PATH + 1];
};

typedef struct hy_plan {
    int to_cloud; /* 1: ask the cloud (after the egress policy) */
    int probe;    /* 1: generate locally and check the confidence over the first K tokens */
    char reason[SLM_HYBRID_REASON_CAP];
} hy_plan;

/* The routing decision before any generation. */
void hy_plan_request(const slm_hybrid *h, const slm_chat_message *msgs, size_t n_msgs,
                     const char *prompt, size_t prompt_len, int32_t n_prompt_tokens, int32_t n_ctx,
                     int32_t max_tokens, slm_route pref, hy_plan *out);
/* 1 when a mean log-probability over the probe window is too low. */
int hy_low_confidence(const slm_hybrid *h, double mean_logprob);

/* One cloud answer: the egress policy, the request body, the call (text
 * restored from placeholders before it reaches on_text) and the audit line. */
typedef struct hy_answer_req {
    const slm_chat_message *msgs; /* or prompt */
    size_t n_msgs;
    const char *prompt;
    size_t prompt_len;
    int32_t max_tokens;
    double temperature; /* < 0: not sent */
    int stream;
    double deadline_ms; /* slm_now_ms() by which the cloud must be done */
    const char *reason; /* for the audit log */
    hy_text_fn on_text;
    void *user;
    int (*cancelled)(void *user);
} hy_answer_req;

typedef struct hy_answer_out {
    int blocked;        /* the policy blocked it: nothing was sent */
    char classes[256];  /* classes found (names), "" when none */
    hy_cloud_out cloud; /* when sent */
    int32_t completion_tokens;
} hy_answer_out;

/* 0: answered; 1: blocked by the policy (nothing sent); -1: the cloud failed
 * (out->cloud.cause). */
int hy_answer(slm_hybrid *h, const hy_answer_req *req, hy_answer_out *out);

#endif
