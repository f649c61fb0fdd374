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
} slm_sampler;

slm_status slm_sampler_init(slm_sampler *s, const slm_sampler_params *p, int32_t n_vocab);
void slm_sampler_free(slm_sampler *s);
void slm_sampler_reseed(slm_sampler *s, uint64_t seed);

/* Picks the next token. `recent` holds the last n_recent tokens (for the
 * repetition penalty). `logits` is modified. */
int32_t slm_sampler_sample(slm_sampler *s, float *logits, const int32_t *recent, int32_t n_recent);

/* Uniform double in [0, 1) from the sampler's generator (exposed for tests). */
double slm_sampler_uniform(slm_sampler *s);

#endif
