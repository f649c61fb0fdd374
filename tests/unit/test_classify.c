/* Intent detection and embeddings (issue 7): label scores checked against a
 * brute-force computation made here from slm_prompt_logits (a full
 * re-evaluation of prompt + label, no cache reuse), probabilities summing to
 * 1, labels sharing prefixes, cache reuse across calls; embeddings checked
 * for dimension, unit norm, mean pooling against per-prefix last-token
 * states, determinism across calls, sessions, threads and batch sizes. On a
 * small random model always, and on stories260K when the shared fixtures are
 * present. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "quant/types.h"
#include "testmodel.h"

static slm_session *session(slm_model *m, const char *json) {
    slm_config *c = NULL;
    slm_session *s = NULL;
    CHECK_OK(slm_config_new(&c));
    if (c && json) CHECK_OK(slm_config_apply_json(c, json, strlen(json)));
    if (c) CHECK_OK(slm_session_new(m, c, &s));
    slm_config_free(c);
    return s;
}

/* ---- brute force ------------------------------------------------------------------------ */

/* Sum of log p(label tokens) after `prompt`: prompt + " " + label evaluated
 * whole from an empty cache, the label's tokens being those after the
 * longest common prefix with the prompt's tokens. */
static double brute_logprob(slm_model *m, const char *prompt, const char *label, int32_t *n_tok) {
    slm_session *s = session(m, NULL);
    size_t pl = strlen(prompt), ll = strlen(label);
    char *joint = malloc(pl + ll + 2);
    memcpy(joint, prompt, pl);
    joint[pl] = ' ';
    memcpy(joint + pl + 1, label, ll + 1);
    int32_t *p_ids = NULL, *j_ids = NULL;
    size_t np = 0, nj = 0;
    CHECK_OK(slm_tokenize(m, prompt, pl, SLM_TOKENIZE_ADD_BOS, &p_ids, &np));
    CHECK_OK(slm_tokenize(m, joint, pl + 1 + ll, SLM_TOKENIZE_ADD_BOS, &j_ids, &nj));
    size_t c = 0;
    while (c < np && c < nj && p_ids[c] == j_ids[c]) c++;
    float *lg = NULL;
    size_t nt = 0, nv = 0;
    CHECK_OK(slm_prompt_logits(s, joint, pl + 1 + ll, &lg, &nt, &nv));
    CHECK(nt == nj);
    double sum = 0.0;
    for (size_t p = c; lg && p < nj; p++) {
        const float *row = lg + (p - 1) * nv; /* the logits at p-1 predict token p */
        double mx = -INFINITY, z = 0.0;
        for (size_t v = 0; v < nv; v++) mx = fmax(mx, row[v]);
        for (size_t v = 0; v < nv; v++) z += exp(row[v] - mx);
        sum += row[j_ids[p]] - mx - log(z);
    }
    *n_tok = (int32_t)(nj - c);
    free(lg);
    free(p_ids);
    free(j_ids);
    free(joint);
    slm_session_free(s);
    return sum;
}

/* Checks a result against the brute force: per-label logprob, the softmax of
 * the mean logprobs, the order. */
static void check_against_brute(slm_model *m, const char *text, const char *const *labels, size_t n,
                                const char *tmpl, const slm_classify_result *r) {
    char *prompt = NULL;
    CHECK_OK(slm_classify_prompt(tmpl, text, strlen(text), labels, n, &prompt, NULL));
    if (!prompt || r->n_labels != n) {
        CHECK(r->n_labels == n);
        free(prompt);
        return;
    }
    double lp[64], mean[64], prob[64], mx = -INFINITY, z = 0.0;
    int32_t nt[64];
    for (size_t i = 0; i < n; i++) {
        lp[i] = brute_logprob(m, prompt, labels[i], &nt[i]);
        mean[i] = lp[i] / nt[i];
        mx = fmax(mx, mean[i]);
    }
    for (size_t i = 0; i < n; i++) z += exp(mean[i] - mx);
    for (size_t i = 0; i < n; i++) prob[i] = exp(mean[i] - mx) / z;
    double total = 0.0;
    for (size_t k = 0; k < n; k++) {
        const slm_label_score *e = &r->labels[k];
        total += e->probability;
        CHECK(e->index < n && e->label == labels[e->index]);
        size_t i = e->index < n ? e->index : 0;
        CHECK_MSG(e->n_tokens == nt[i], "'%s': %d tokens, brute force %d", labels[i], e->n_tokens,
                  nt[i]);
        CHECK_NEAR(e->logprob, lp[i], 1e-3);
        CHECK_NEAR(e->mean_logprob, e->logprob / e->n_tokens, 1e-12);
        CHECK_NEAR(e->probability, prob[i], 1e-4);
        if (k > 0) { /* best first; the brute force agrees unless the two are a near-tie */
            size_t h = r->labels[k - 1].index < n ? r->labels[k - 1].index : 0;
            CHECK(r->labels[k - 1].mean_logprob >= e->mean_logprob);
            CHECK_MSG(mean[h] >= mean[i] - 1e-4, "rank %zu: '%s' %.6f before '%s' %.6f", k,
                      labels[h], mean[h], labels[i], mean[i]);
        }
    }
    CHECK_NEAR(total, 1.0, 1e-9);
    free(prompt);
}

static void classify_suite(slm_model *m, const char *name) {
    printf("classify on %s\n", name);
    static const char *const intents[] = {"pay",     "payment", "pay bill",
                                          "weather", "music",   "set alarm"};
    const size_t n_int = sizeof intents / sizeof intents[0];
    static const char *const texts[] = {"Once upon a time there was a cat",
                                        "please pay my electricity bill", "will it rain today?"};
    slm_session *s = session(m, NULL);
    if (!s) return;
    slm_classify_result r, r2;

    for (size_t t = 0; t < 3; t++) {
        CHECK_OK(slm_classify(s, texts[t], strlen(texts[t]), intents, n_int, NULL, &r));
        check_against_brute(m, texts[t], intents, n_int, NULL, &r);
        for (size_t k = 0; k < r.n_labels; k++)
            printf("  %-32.32s %-10s p=%.4f mean=%.4f n=%d\n", texts[t], r.labels[k].label,
                   r.labels[k].probability, r.labels[k].mean_logprob, r.labels[k].n_tokens);
        /* a fresh session gives the same numbers (the cache reuse is exact) */
        slm_session *f = session(m, NULL);
        if (f) {
            CHECK_OK(slm_classify(f, texts[t], strlen(texts[t]), intents, n_int, NULL, &r2));
            CHECK(r2.n_labels == r.n_labels);
            for (size_t k = 0; k < r.n_labels && k < r2.n_labels; k++) {
                CHECK(r.labels[k].index == r2.labels[k].index);
                CHECK(r.labels[k].logprob == r2.labels[k].logprob);
            }
            /* the prompt is evaluated once, each label its own tokens after it */
            int32_t want = r2.n_prompt_tokens;
            for (size_t k = 0; k < r2.n_labels; k++) want += r2.labels[k].n_tokens - 1;
            CHECK_MSG(r2.n_evaluated <= want, "evaluated %d tokens, expected at most %d",
                      r2.n_evaluated, want);
            int32_t brute = 0;
            for (size_t k = 0; k < r2.n_labels; k++)
                brute += r2.n_prompt_tokens + r2.labels[k].n_tokens;
            printf("  tokens evaluated: %d (prompt %d, %zu labels); one pass per label: %d\n",
                   r2.n_evaluated, r2.n_prompt_tokens, r2.n_labels, brute);
            /* again on the same session: only the prompt's last token and the labels run */
            slm_classify_result r3;
            CHECK_OK(slm_classify(f, texts[t], strlen(texts[t]), intents, n_int, NULL, &r3));
            CHECK_MSG(r3.n_evaluated == want - r2.n_prompt_tokens + 1,
                      "second call evaluated %d tokens, expected %d", r3.n_evaluated,
                      want - r2.n_prompt_tokens + 1);
            for (size_t k = 0; k < r3.n_labels && k < r2.n_labels; k++)
                CHECK(r3.labels[k].logprob == r2.labels[k].logprob);
            slm_classify_result_free(&r3);
            slm_classify_result_free(&r2);
            slm_session_free(f);
        }
        slm_classify_result_free(&r);
    }

    /* a template with {labels}, and a one-label list (probability 1) */
    const char *tmpl = "Intents: {labels}\nQ: {text}\nA:";
    CHECK_OK(slm_classify(s, texts[1], strlen(texts[1]), intents, 3, tmpl, &r));
    check_against_brute(m, texts[1], intents, 3, tmpl, &r);
    slm_classify_result_free(&r);
    CHECK_OK(slm_classify(s, texts[1], strlen(texts[1]), intents + 1, 1, NULL, &r));
    CHECK(r.n_labels == 1 && r.labels && fabs(r.labels[0].probability - 1.0) < 1e-12);
    slm_classify_result_free(&r);

    /* prefix-sharing labels score independently of their order (with a
     * template that does not list the labels, so the prompt is the same) */
    const char *plain = "Q: {text}\nA:";
    static const char *const pp[] = {"payment", "pay"};
    double lp_pair[2] = {0, 0};
    CHECK_OK(slm_classify(s, texts[1], strlen(texts[1]), pp, 2, plain, &r));
    for (size_t k = 0; k < r.n_labels; k++) lp_pair[r.labels[k].index] = r.labels[k].logprob;
    if (r.n_labels == 2) CHECK(r.labels[0].logprob != r.labels[1].logprob);
    slm_classify_result_free(&r);
    static const char *const pp_rev[] = {"pay", "payment"};
    CHECK_OK(slm_classify(s, texts[1], strlen(texts[1]), pp_rev, 2, plain, &r));
    for (size_t k = 0; k < r.n_labels; k++)
        CHECK_NEAR(r.labels[k].logprob, lp_pair[1 - r.labels[k].index], 1e-9);
    slm_classify_result_free(&r);

    /* after a generation in between, the session's cache is still consistent */
    CHECK_OK(slm_session_configure(s, "{\"max_tokens\":5,\"temperature\":0}", 32));
    slm_result gr;
    CHECK_OK(slm_generate(s, "hello there", 11, NULL, NULL, &gr));
    CHECK_OK(slm_classify(s, texts[2], strlen(texts[2]), intents, n_int, NULL, &r));
    check_against_brute(m, texts[2], intents, n_int, NULL, &r);
    slm_classify_result_free(&r);

    /* errors */
    static const char *const dup[] = {"a", "b", "a"};
    static const char *const empty[] = {"a", ""};
    CHECK_ERR(slm_classify(s, "x", 1, dup, 3, NULL, &r), SLM_ERR_INVALID_ARG, "twice");
    CHECK_ERR(slm_classify(s, "x", 1, empty, 2, NULL, &r), SLM_ERR_INVALID_ARG, "empty");
    CHECK_ERR(slm_classify(s, "x", 1, intents, 0, NULL, &r), SLM_ERR_INVALID_ARG, "no labels");
    CHECK_ERR(slm_classify(s, "x", 1, intents, 2, "no placeholder", &r), SLM_ERR_INVALID_ARG,
              "{text}");
    CHECK(r.labels == NULL && r.n_labels == 0);
    slm_session_free(s);

    /* a context too small for the prompt */
    slm_session *small = session(m, "{\"n_ctx\":8}");
    if (small) {
        const char *lng = "a long text that takes many more tokens than eight";
        CHECK_ERR(slm_classify(small, lng, strlen(lng), intents, 2, NULL, &r), SLM_ERR_CONTEXT,
                  "context");
        slm_session_free(small);
    }
}

/* ---- embeddings ----------------------------------------------------------------------- */

static double norm2(const float *v, int32_t d) {
    double ss = 0.0;
    for (int32_t i = 0; i < d; i++) ss += (double)v[i] * v[i];
    return sqrt(ss);
}

static void embed_suite(slm_model *m, const char *name) {
    printf("embed on %s\n", name);
    slm_model_info info;
    CHECK_OK(slm_model_get_info(m, &info));
    const int32_t D = slm_embedding_dim(m);
    CHECK(D == info.dim && D > 0);
    const char *text = "the quick brown fox jumps over the lazy dog";
    float *a = calloc((size_t)D, sizeof *a), *b = calloc((size_t)D, sizeof *b);
    float *acc_f = calloc((size_t)D, sizeof *acc_f);
    double *acc = calloc((size_t)D, sizeof *acc);
    slm_session *s = session(m, NULL);
    if (!s || !a || !b || !acc || !acc_f) goto out;

    int32_t nt = 0;
    CHECK_OK(slm_embed(s, text, strlen(text), SLM_POOLING_MEAN, 1, a, &nt));
    CHECK(nt > 3);
    CHECK_NEAR(norm2(a, D), 1.0, 1e-5);
    CHECK_OK(slm_embed(s, text, strlen(text), SLM_POOLING_LAST, 1, b, NULL));
    CHECK_NEAR(norm2(b, D), 1.0, 1e-5);
    CHECK(memcmp(a, b, (size_t)D * sizeof *a) != 0);

    /* mean pooling = the mean of the per-position states, each computed as
     * the last-token state of its own prefix in a fresh evaluation */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(slm_tokenize(m, text, strlen(text), SLM_TOKENIZE_ADD_BOS, &ids, &n));
    CHECK((int32_t)n == nt);
    slm_session *f = session(m, NULL);
    for (size_t k = 1; f && k <= n; k++) {
        slm_session *g = session(m, NULL); /* nothing cached */
        if (!g) break;
        CHECK_OK(slm_embed_tokens(g, ids, k, SLM_POOLING_LAST, 0, b));
        for (int32_t d = 0; d < D; d++) acc[d] += b[d];
        slm_session_free(g);
    }
    for (int32_t d = 0; d < D; d++) acc_f[d] = (float)(acc[d] / (double)n);
    if (f) {
        CHECK_OK(slm_embed_tokens(f, ids, n, SLM_POOLING_MEAN, 0, b));
        double diff = 0.0;
        for (int32_t d = 0; d < D; d++) diff = fmax(diff, fabs((double)b[d] - acc_f[d]));
        CHECK_MSG(diff <= 1e-5 * (1.0 + norm2(acc_f, D)), "mean pooling differs by %g", diff);
        /* normalized = the unnormalized vector scaled to unit length */
        double nb = norm2(b, D);
        CHECK_OK(slm_embed_tokens(f, ids, n, SLM_POOLING_MEAN, 1, acc_f));
        diff = 0.0;
        for (int32_t d = 0; d < D; d++) diff = fmax(diff, fabs(acc_f[d] - b[d] / nb));
        CHECK(diff < 1e-6);
        CHECK(memcmp(acc_f, a, (size_t)D * sizeof *a) == 0); /* = slm_embed of the text */
        /* last-token pooling reuses the cache: same bits as from scratch */
        CHECK_OK(slm_embed_tokens(f, ids, n, SLM_POOLING_LAST, 1, b));
        slm_session *g = session(m, NULL);
        if (g) {
            CHECK_OK(slm_embed_tokens(g, ids, n, SLM_POOLING_LAST, 1, acc_f));
            CHECK(memcmp(acc_f, b, (size_t)D * sizeof *b) == 0);
            slm_session_free(g);
        }
        slm_session_free(f);
    }

    /* identical texts give identical vectors: same session after other work,
     * other sessions, other thread counts and batch sizes */
    static const char *const cfgs[] = {"{\"threads\":1}", "{\"threads\":3}",
                                       "{\"threads\":2,\"n_batch\":3}"};
    const char *other = "a different sentence entirely";
    CHECK_OK(slm_embed(s, other, strlen(other), SLM_POOLING_MEAN, 1, b, NULL));
    CHECK(memcmp(a, b, (size_t)D * sizeof *a) != 0);
    CHECK_OK(slm_embed(s, text, strlen(text), SLM_POOLING_MEAN, 1, b, NULL));
    CHECK(memcmp(a, b, (size_t)D * sizeof *a) == 0);
    for (size_t c = 0; c < 3; c++) {
        slm_session *t = session(m, cfgs[c]);
        if (!t) continue;
        CHECK_OK(slm_embed(t, text, strlen(text), SLM_POOLING_MEAN, 1, b, NULL));
        CHECK_MSG(memcmp(a, b, (size_t)D * sizeof *a) == 0, "config %s changes the vector",
                  cfgs[c]);
        slm_session_free(t);
    }

    /* errors */
    int32_t bad = info.n_vocab;
    CHECK_ERR(slm_embed_tokens(s, &bad, 1, SLM_POOLING_MEAN, 1, b), SLM_ERR_INVALID_ARG,
              "vocabulary");
    CHECK_ERR(slm_embed_tokens(s, ids, 0, SLM_POOLING_MEAN, 1, b), SLM_ERR_INVALID_ARG,
              "no tokens");
    CHECK_ERR(slm_embed_tokens(s, ids, 1, (slm_pooling)7, 1, b), SLM_ERR_INVALID_ARG, "pooling");
    slm_session *small = session(m, "{\"n_ctx\":8}");
    if (small) {
        CHECK(n > 8);
        CHECK_ERR(slm_embed(small, text, strlen(text), SLM_POOLING_MEAN, 1, b, NULL),
                  SLM_ERR_CONTEXT, "context");
        slm_session_free(small);
    }
    free(ids);
out:
    slm_session_free(s);
    free(a);
    free(b);
    free(acc);
    free(acc_f);
}

int main(void) {
    char path[512];
    check_tmp_path("classify.gguf", path, sizeof path);
    slm_test_model_params p = {.dim = 64,
                               .n_layers = 2,
                               .n_heads = 4,
                               .n_kv_heads = 2,
                               .ffn_dim = 128,
                               .n_ctx = 256,
                               .n_extra_vocab = 40,
                               .wtype = SLM_TYPE_F32,
                               .seed = 11,
                               .scale = 0.25f};
    CHECK_OK(slm_test_write_model(path, &p));
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(path, NULL, &m));
    if (m) {
        classify_suite(m, "a random model");
        embed_suite(m, "a random model");
    }
    slm_model_free(m);
    remove(path);

    char sp[1024];
    if (check_shared_path("models/stories260K.gguf", sp, sizeof sp)) {
        slm_model *st = NULL;
        CHECK_OK(slm_model_load(sp, NULL, &st));
        if (st) {
            classify_suite(st, "stories260K");
            embed_suite(st, "stories260K");
        }
        slm_model_free(st);
    } else {
        printf("SKIP part: ../shared/models/stories260K.gguf not found (set SLM_SHARED)\n");
    }
    return check_finish();
}
