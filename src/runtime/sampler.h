/* Token sampling: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty, with a seeded generator. Deterministic for a given seed. */
#ifndef SLM_RUNTIME_SAMPLER_H
#define SLM_RUNTIME_SAMPLER_H

#include <stdint.h>

#include "slm.h"

typedef struct slm_sampler_params {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repeat_penalty;
    int32_t repeat_last_n;
    uint64_t seed;
    float presence_penalty;  /* OpenAI's: 0 = off; over the repeat_last_n window */
    float frequency_penalty; /* OpenAI's: 0 = off; over the repeat_last_n window */
} slm_sampler_params;

typedef struct slm_candidate {
    int32_t id;
    float logit;
    float p;
} slm_candidate;

typedef struct slm_sampler {
    slm_sampler_params params;
    uint64_t rng[4];
    int32_t n_vocab;
    slm_candidate *cand; /* [n_vocab], allocated once */
    /* greedy decoding's pick (NULL: kernels/argmax.h as compiled here); the
     * session sets its kernel provider's vectorized copy of the same loop */
    int32_t (*argmax)(const float *x, int32_t n);
} slm_sampler;

slm_status slm_sampler_init(slm_sampler *s, const slm_sampler_params *p, int32_t n_vocab);
void slm_sampler_free(slm_sampler *s);
void slm_sampler_reseed(slm_sampler *s, uint64_t seed);

/* Picks the next token. `recent` holds the last n_recent tokens (for the
 * repetition, presence and frequency penalties, which look at its last
 * repeat_last_n entries). `logits` is modified. */
int32_t slm_sampler_sample(slm_sampler *s, float *logits, const int32_t *recent, int32_t n_recent);

/* The index of the largest logit (first on ties; see kernels/argmax.h),
 * through s->argmax when set. */
int32_t slm_sampler_argmax(const slm_sampler *s, const float *logits, int32_t n);

/* Log-probabilities at temperature 1 of logits[0..n) (log-softmax in
 * double): the logprob of `token` and the n_top (<= 20) most likely ids with
 * theirs, best first (ties by lower id). Returns the logprob of `token`. */
float slm_logprobs(const float *logits, int32_t n, int32_t token, int32_t n_top, int32_t *top_ids,
                   float *top_logprobs);

/* Uniform double in [0, 1) from the sampler's generator (exposed for tests). */
double slm_sampler_uniform(slm_sampler *s);

#endif
