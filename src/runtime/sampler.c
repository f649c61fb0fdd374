#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "kernels/argmax.h"

/* xoshiro256** seeded through splitmix64: fast, good quality, portable. */
static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

void slm_sampler_reseed(slm_sampler *s, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

double slm_sampler_uniform(slm_sampler *s) {
    return (double)(next_u64(s->rng) >> 11) * 0x1.0p-53;
}

slm_status slm_sampler_init(slm_sampler *s, const slm_sampler_params *p, int32_t n_vocab) {
    memset(s, 0, sizeof *s);
    s->params = *p;
    s->n_vocab = n_vocab;
    s->cand = slm_calloc((size_t)n_vocab, sizeof *s->cand);
    if (!s->cand) return slm_fail(SLM_ERR_NOMEM, "cannot allocate the sampler's candidates");
    slm_sampler_reseed(s, p->seed);
    return SLM_OK;
}

void slm_sampler_free(slm_sampler *s) {
    if (!s) return;
    free(s->cand);
    s->cand = NULL;
}

/* Higher logit first; equal logits by lower id, so order is total. */
static int cand_cmp(const void *a, const void *b) {
    const slm_candidate *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t slm_sampler_argmax(const slm_sampler *s, const float *logits, int32_t n) {
    return s->argmax ? s->argmax(logits, n) : slm_argmax_lanes(logits, n);
}

/* Restores the min-heap order (worst kept candidate at c[0]) below j. */
static void sift_down(slm_candidate *c, int32_t k, int32_t j) {
    for (;;) {
        int32_t l = 2 * j + 1, r = l + 1, w = j;
        if (l < k && cand_cmp(&c[l], &c[w]) > 0) w = l;
        if (r < k && cand_cmp(&c[r], &c[w]) > 0) w = r;
        if (w == j) return;
        slm_candidate t = c[j];
        c[j] = c[w];
        c[w] = t;
        j = w;
    }
}

/* Moves the k best candidates to the front, sorted (partial selection via a
 * min-heap of size k, then a sort of those k). */
static void select_top_k(slm_candidate *c, int32_t n, int32_t k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
        return;
    }
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t i = k; i < n; i++) {
        if (cand_cmp(&c[i], &c[0]) >= 0) continue; /* not better than the worst kept */
        c[0] = c[i];
        sift_down(c, k, 0);
    }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

int32_t slm_sampler_sample(slm_sampler *s, float *logits, const int32_t *recent, int32_t n_recent) {
    const slm_sampler_params *p = &s->params;
    int32_t n = s->n_vocab;

    /* Repetition penalty (CTRL-style, as llama.cpp): shrink positive logits,
     * grow negative ones, once per distinct recent token. */
    if (p->repeat_penalty != 1.0f && recent && n_recent > 0) {
        int32_t from = p->repeat_last_n < n_recent ? n_recent - p->repeat_last_n : 0;
        for (int32_t i = from; i < n_recent; i++) {
            int32_t id = recent[i];
            if (id < 0 || id >= n) continue;
            int seen = 0;
            for (int32_t j = from; j < i; j++) seen |= recent[j] == id;
            if (seen) continue;
            logits[id] =
                logits[id] > 0 ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
        }
    }

    /* Presence and frequency penalties (OpenAI's): subtract presence once
     * and frequency per occurrence, for each distinct token of the window. */
    if ((p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f) && recent && n_recent > 0) {
        int32_t from = p->repeat_last_n < n_recent ? n_recent - p->repeat_last_n : 0;
        for (int32_t i = from; i < n_recent; i++) {
            int32_t id = recent[i];
            if (id < 0 || id >= n) continue;
            int seen = 0;
            for (int32_t j = from; j < i; j++) seen |= recent[j] == id;
            if (seen) continue;
            int32_t count = 1;
            for (int32_t j = i + 1; j < n_recent; j++) count += recent[j] == id;
            logits[id] -= p->presence_penalty + p->frequency_penalty * (float)count;
        }
    }

    if (p->temperature <= 0.0f) return slm_sampler_argmax(s, logits, n);

    slm_candidate *c = s->cand;
    for (int32_t i = 0; i < n; i++) {
        c[i].id = i;
        c[i].logit = logits[i];
    }
    int32_t k = p->top_k > 0 && p->top_k < n ? p->top_k : n;
    select_top_k(c, n, k);

    /* softmax with temperature over the k kept (sorted, best first) */
    float mx = c[0].logit;
    double sum = 0.0;
    for (int32_t i = 0; i < k; i++) {
        c[i].p = expf((c[i].logit - mx) / p->temperature);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < k; i++) c[i].p = (float)(c[i].p / sum);

    /* min-p: drop candidates below min_p times the best probability */
    if (p->min_p > 0.0f) {
        float floor_p = p->min_p * c[0].p;
        int32_t keep = 1;
        while (keep < k && c[keep].p >= floor_p) keep++;
        k = keep;
    }
    /* top-p: the smallest prefix whose mass reaches top_p */
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        int32_t keep = 0;
        while (keep < k) {
            cum += c[keep].p;
            keep++;
            if (cum >= p->top_p) break;
        }
        k = keep;
    }
    double total = 0.0;
    for (int32_t i = 0; i < k; i++) total += c[i].p;
    double r = slm_sampler_uniform(s) * total;
    double acc = 0.0;
    for (int32_t i = 0; i < k; i++) {
        acc += c[i].p;
        if (r < acc) return c[i].id;
    }
    return c[k - 1].id;
}

float slm_logprobs(const float *logits, int32_t n, int32_t token, int32_t n_top, int32_t *top_ids,
                   float *top_logprobs) {
    if (n <= 0) return 0.0f;
    if (n_top > n) n_top = n;
    if (n_top > SLM_MAX_TOP_LOGPROBS) n_top = SLM_MAX_TOP_LOGPROBS;
    double mx = logits[0];
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    double ls = log(sum); /* logprob = (logit - mx) - ls: exact for huge logits too */
    /* the n_top best by insertion into a sorted list (n_top is small) */
    int32_t k = 0;
    for (int32_t i = 0; i < n && n_top > 0; i++) {
        float v = logits[i];
        if (k == n_top && !(v > logits[top_ids[k - 1]])) continue;
        int32_t at = k < n_top ? k : n_top - 1;
        while (at > 0 && v > logits[top_ids[at - 1]]) {
            top_ids[at] = top_ids[at - 1];
            at--;
        }
        top_ids[at] = i;
        if (k < n_top) k++;
    }
    for (int32_t i = 0; i < k; i++)
        top_logprobs[i] = (float)(((double)logits[top_ids[i]] - mx) - ls);
    if (token < 0 || token >= n) return -INFINITY;
    return (float)(((double)logits[token] - mx) - ls);
}
