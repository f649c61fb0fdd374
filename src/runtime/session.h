#ifndef SLM_RUNTIME_SESSION_H
#define SLM_RUNTIME_SESSION_H

#include "model/model.h"
#include "runtime/config.h"
#include "runtime/sampler.h"
#include "runtime/text_stream.h"
#include "slm.h"

struct slm_session {
    slm_model *model;
    slm_config cfg;
    slm_pool *pool;
    const slm_provider *pv;
    slm_forward fw;
    slm_sampler sampler;
    slm_text_stream stream;
    int32_t n_ctx;
    int32_t n_keep;
    int32_t *tokens; /* [n_ctx] tokens whose keys/values are in the cache */
    int32_t n_tokens;
    float *logits; /* [n_vocab] of the last evaluated position */
    const char *stop[SLM_MAX_STOP];
    size_t stop_len[SLM_MAX_STOP];
    slm_token_observer observer;
    void *observer_user;
    slm_token_info_fn info;
    void *info_user;
    int info_n_top;
    float *info_logits; /* [n_vocab] copy of the logits before sampling, made at set time */
    int32_t info_top_ids[SLM_MAX_TOP_LOGPROBS];
    float info_top_lp[SLM_MAX_TOP_LOGPROBS];
    struct slm_constraint *constraint; /* grammar-constrained output (runtime/constrain.h) */
};

#endif
