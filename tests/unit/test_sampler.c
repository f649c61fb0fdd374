/* Sampler: greedy, the filters, determinism per seed, the distribution. */
#include <math.h>

#include "check.h"
#include "runtime/sampler.h"

#define V 50

static void fill(float *l, unsigned long long seed) {
    check_rng r = {seed};
    for (int i = 0; i < V; i++) l[i] = 3.0f * check_rng_normal(&r);
}

static int32_t sample(slm_sampler_params p, const float *logits, const int32_t *recent, int nr) {
    slm_sampler s;
    float l[V];
    memcpy(l, logits, sizeof l);
    if (slm_sampler_init(&s, &p, V) != SLM_OK) return -1;
    int32_t t = slm_sampler_sample(&s, l, recent, nr);
    slm_sampler_free(&s);
    return t;
}

int main(void) {
    float logits[V];
    fill(logits, 1);
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;

    slm_sampler_params greedy = {0.0f, 40, 0.95f, 0.05f, 1.0f, 64, 0, 0.0f, 0.0f};
    CHECK(sample(greedy, logits, NULL, 0) == best);

    /* top_k = 1 and a tiny top_p both reduce to the best token */
    slm_sampler_params p = {1.0f, 1, 1.0f, 0.0f, 1.0f, 64, 7, 0.0f, 0.0f};
    CHECK(sample(p, logits, NULL, 0) == best);
    p.top_k = 0;
    p.top_p = 1e-6f;
    CHECK(sample(p, logits, NULL, 0) == best);
    /* min_p = 1 keeps only tokens as likely as the best */
    p.top_p = 1.0f;
    p.min_p = 1.0f;
    CHECK(sample(p, logits, NULL, 0) == best);

    /* repetition penalty: with the best token penalized hard, greedy moves */
    slm_sampler_params rp = greedy;
    rp.repeat_penalty = 100.0f;
    int32_t recent[1] = {best};
    if (logits[best] > 0) CHECK(sample(rp, logits, recent, 1) != best);

    /* same seed -> same sequence; a different seed -> a different one */
    slm_sampler_params t = {1.0f, 0, 1.0f, 0.0f, 1.0f, 64, 1234, 0.0f, 0.0f};
    slm_sampler a, b;
    CHECK_OK(slm_sampler_init(&a, &t, V));
    CHECK_OK(slm_sampler_init(&b, &t, V));
    int same = 1;
    for (int i = 0; i < 200; i++) {
        float la[V], lb[V];
        memcpy(la, logits, sizeof la);
        memcpy(lb, logits, sizeof lb);
        same &= slm_sampler_sample(&a, la, NULL, 0) == slm_sampler_sample(&b, lb, NULL, 0);
    }
    CHECK(same);
    slm_sampler_reseed(&b, 999);
    int diff = 0;
    for (int i = 0; i < 200; i++) {
        float la[V], lb[V];
        memcpy(la, logits, sizeof la);
        memcpy(lb, logits, sizeof lb);
        diff |= slm_sampler_sample(&a, la, NULL, 0) != slm_sampler_sample(&b, lb, NULL, 0);
    }
    CHECK(diff);

    /* the empirical distribution follows softmax(logits / T) */
    slm_sampler_params d = {0.7f, 0, 1.0f, 0.0f, 1.0f, 64, 5, 0.0f, 0.0f};
    slm_sampler s;
    CHECK_OK(slm_sampler_init(&s, &d, V));
    double expect[V], mx = logits[best], z = 0;
    for (int i = 0; i < V; i++) z += expect[i] = exp((logits[i] - mx) / 0.7);
    int counts[V] = {0};
    const int N = 40000;
    for (int i = 0; i < N; i++) {
        float l[V];
        memcpy(l, logits, sizeof l);
        counts[slm_sampler_sample(&s, l, NULL, 0)]++;
    }
    double worst = 0;
    for (int i = 0; i < V; i++) {
        double e = expect[i] / z;
        double dev = fabs(counts[i] / (double)N - e) / sqrt(e * (1 - e) / N + 1e-12);
        if (e > 1e-3 && dev > worst) worst = dev;
    }
    CHECK_MSG(worst < 5.0, "largest deviation %.2f standard errors", worst);

    /* top-k restricts to the k best */
    slm_sampler_params k3 = {1.0f, 3, 1.0f, 0.0f, 1.0f, 64, 11, 0.0f, 0.0f};
    slm_sampler sk;
    CHECK_OK(slm_sampler_init(&sk, &k3, V));
    float sorted[V];
    memcpy(sorted, logits, sizeof sorted);
    float third = -INFINITY;
    for (int r = 0; r < 3; r++) { /* third-largest value */
        int bi = -1;
        for (int i = 0; i < V; i++)
            if (sorted[i] != -INFINITY && (bi < 0 || sorted[i] > sorted[bi])) bi = i;
        third = sorted[bi];
        sorted[bi] = -INFINITY;
    }
    int ok = 1;
    for (int i = 0; i < 500; i++) {
        float l[V];
        memcpy(l, logits, sizeof l);
        ok &= logits[slm_sampler_sample(&sk, l, NULL, 0)] >= third;
    }
    CHECK(ok);

    slm_sampler_free(&a);
    slm_sampler_free(&b);
    slm_sampler_free(&s);
    slm_sampler_free(&sk);

    /* presence / frequency penalties: exact logit arithmetic over the window */
    {
        float l3[3] = {1.0f, 2.0f, 3.0f};
        int32_t seen[5] = {2, 2, 1, 2, 0};
        slm_sampler_params pp = greedy;
        pp.top_k = 0;
        pp.top_p = 1.0f;
        pp.min_p = 0.0f;
        pp.presence_penalty = 0.5f;
        pp.frequency_penalty = 0.25f;
        slm_sampler ps;
        CHECK_OK(slm_sampler_init(&ps, &pp, 3));
        float w[3];
        memcpy(w, l3, sizeof w);
        slm_sampler_sample(&ps, w, seen, 5);
        CHECK_NEAR(w[0], 1.0f - 0.5f - 0.25f, 1e-6); /* once */
        CHECK_NEAR(w[1], 2.0f - 0.5f - 0.25f, 1e-6); /* once */
        CHECK_NEAR(w[2], 3.0f - 0.5f - 0.75f, 1e-6); /* three times */
        /* the window: repeat_last_n = 2 sees {2, 0} only */
        ps.params.repeat_last_n = 2;
        memcpy(w, l3, sizeof w);
        slm_sampler_sample(&ps, w, seen, 5);
        CHECK_NEAR(w[1], 2.0f, 1e-6);
        CHECK_NEAR(w[2], 3.0f - 0.75f, 1e-6);
        /* a strong frequency penalty moves greedy off a repeated best token */
        ps.params.repeat_last_n = 64;
        ps.params.presence_penalty = 0.0f;
        ps.params.frequency_penalty = 2.0f;
        memcpy(w, l3, sizeof w);
        CHECK(slm_sampler_sample(&ps, w, seen, 5) == 1);
        /* a negative presence penalty favours seen tokens */
        int32_t once[1] = {0};
        ps.params.presence_penalty = -2.0f;
        ps.params.frequency_penalty = 0.0f;
        memcpy(w, l3, sizeof w);
        CHECK(slm_sampler_sample(&ps, w, once, 1) == 0);
        /* off: logits untouched */
        ps.params.presence_penalty = 0.0f;
        memcpy(w, l3, sizeof w);
        CHECK(slm_sampler_sample(&ps, w, seen, 5) == 2);
        CHECK(w[0] == 1.0f && w[1] == 2.0f && w[2] == 3.0f);
        slm_sampler_free(&ps);
    }

    /* log-probabilities: log-softmax in double; the top list is sorted and its
     * mass is at most 1; the greedy token's logprob is the maximum */
    {
        int32_t ids[SLM_MAX_TOP_LOGPROBS];
        float lps[SLM_MAX_TOP_LOGPROBS];
        float lp_best = slm_logprobs(logits, V, best, 20, ids, lps);
        CHECK(ids[0] == best);
        CHECK_NEAR(lps[0], lp_best, 1e-7);
        double mass = 0.0, all = 0.0, top = logits[best];
        for (int i = 0; i < 20; i++) mass += exp((double)lps[i]);
        CHECK(mass <= 1.0 + 1e-6);
        for (int i = 1; i < 20; i++) CHECK(lps[i] <= lps[i - 1]);
        for (int i = 0; i < V; i++) all += exp((double)logits[i] - top);
        CHECK_NEAR(lp_best, -log(all), 1e-6);
        int ok_max = 1;
        for (int i = 0; i < V; i++) {
            int32_t tmp[1];
            float tl[1];
            ok_max &= slm_logprobs(logits, V, i, 0, tmp, tl) <= lp_best;
        }
        CHECK(ok_max);
        /* the full distribution sums to 1; ties go to the lower id */
        float flat[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        slm_logprobs(flat, 4, 0, 4, ids, lps);
        double sum4 = 0.0;
        for (int i = 0; i < 4; i++) sum4 += exp((double)lps[i]);
        CHECK_NEAR(sum4, 1.0, 1e-6);
        CHECK(ids[0] == 0 && ids[1] == 1 && ids[2] == 2 && ids[3] == 3);
        CHECK_NEAR(lps[0], -log(4.0), 1e-6);
        /* huge logits do not overflow */
        float big[3] = {1e30f, 1e30f, -1e30f};
        float lpb = slm_logprobs(big, 3, 0, 2, ids, lps);
        CHECK(isfinite(lpb));
        CHECK_NEAR(lpb, -log(2.0), 1e-6);
    }
    return check_finish();
}
