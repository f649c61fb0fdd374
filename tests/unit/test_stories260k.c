/* Conformance with the real trained stories260K model and llama.cpp's
 * reference outputs (../shared). Skips, saying so, when they are absent. */
#include <math.h>
#include <stdio.h>

#include "base/mmap_file.h"
#include "check.h"
#include "textbuf.h"

static slm_session *session(slm_model *m, const char *json) {
    slm_config *c = NULL;
    slm_session *s = NULL;
    if (slm_config_new(&c) != SLM_OK) return NULL;
    if (json) CHECK_OK(slm_config_apply_json(c, json, strlen(json)));
    CHECK_OK(slm_session_new(m, c, &s));
    slm_config_free(c);
    return s;
}

static void check_greedy(slm_model *m, const char *expected_path, int threads) {
    char *expected = NULL;
    size_t elen = 0;
    CHECK_OK(slm_read_file(expected_path, 1 << 20, &expected, &elen));
    char json[128];
    snprintf(json, sizeof json, "{\"temperature\":0,\"max_tokens\":200,\"threads\":%d}", threads);
    slm_session *s = session(m, json);
    slm_test_text out = {.n = 0};
    const char *prompt = "Once upon a time";
    size_t pl = strlen(prompt);
    memcpy(out.s, prompt, pl);
    out.n = pl;
    slm_result r;
    CHECK_OK(slm_generate(s, prompt, pl, slm_test_collect, &out, &r));
    CHECK_MSG(r.n_generated == 200, "generated %d", r.n_generated);
    CHECK_MSG(expected && out.n == elen && memcmp(out.s, expected, elen) == 0,
              "greedy output differs (threads %d):\n--- got\n%s\n--- expected\n%s", threads, out.s,
              expected ? expected : "");
    free(expected);
    slm_session_free(s);
}

static void check_perplexity(const char *model_path, const char *text, size_t len, double ref) {
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(model_path, NULL, &m));
    if (!m) return;
    slm_session *s = session(m, "{\"n_ctx\":128}");
    slm_perplexity_result r;
    CHECK_OK(slm_perplexity(s, text, len, 128, &r));
    double rel = fabs(r.perplexity - ref) / ref;
    printf("perplexity %s: %.6f (llama.cpp %.6f, %.4f%% apart), %lld tokens scored\n", model_path,
           r.perplexity, ref, rel * 100, (long long)r.n_scored);
    CHECK_MSG(rel <= 0.005, "%s: %.6f vs %.6f", model_path, r.perplexity, ref);
    CHECK(r.n_scored == 2413);
    slm_session_free(s);
    slm_model_free(m);
}

int main(void) {
    char mp[1024], gp[1024], ep[1024], lp[1024];
    if (!check_shared_path("models/stories260K.gguf", mp, sizeof mp))
        check_skip("../shared/models/stories260K.gguf not found (set SLM_SHARED)");
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(mp, NULL, &m));
    if (!m) return check_finish();

    /* tokenizer: the published prompt ids */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(slm_tokenize(m, "Once upon a time", 16, SLM_TOKENIZE_ADD_BOS, &ids, &n));
    CHECK(n == 5 && ids && ids[0] == 1 && ids[1] == 403 && ids[2] == 407 && ids[3] == 261 &&
          ids[4] == 378);
    free(ids);

    if (check_shared_path("models/stories260K.greedy200.txt", gp, sizeof gp)) {
        check_greedy(m, gp, 1);
        check_greedy(m, gp, 2);
    } else {
        printf("SKIP part: greedy reference text not found\n");
    }

    /* logits of every prompt position against llama.cpp's */
    if (check_shared_path("fixtures/reference/logits-stories260K.bin", lp, sizeof lp)) {
        char *ref = NULL;
        size_t rl = 0;
        CHECK_OK(slm_read_file(lp, 1 << 26, &ref, &rl));
        slm_session *s = session(m, NULL);
        float *lg = NULL;
        size_t nt = 0, nv = 0;
        const char *prompt = "Once upon a time there was a small robot";
        CHECK_OK(slm_prompt_logits(s, prompt, strlen(prompt), &lg, &nt, &nv));
        CHECK(nt == 15 && nv == 512 && rl == nt * nv * sizeof(float));
        if (lg && ref && rl == nt * nv * sizeof(float)) {
            const float *r = (const float *)ref;
            double se = 0, mean = 0, var = 0;
            size_t N = nt * nv;
            for (size_t i = 0; i < N; i++) mean += r[i];
            mean /= (double)N;
            for (size_t i = 0; i < N; i++) {
                se += ((double)lg[i] - r[i]) * ((double)lg[i] - r[i]);
                var += (r[i] - mean) * (r[i] - mean);
            }
            double nrmse = sqrt(se / (double)N) / sqrt(var / (double)N);
            printf("logits: normalized RMSE %.3g\n", nrmse);
            CHECK_MSG(nrmse <= 0.01, "nrmse %g", nrmse);
            size_t last = (nt - 1) * nv, a = 0, b = 0;
            for (size_t v = 1; v < nv; v++) {
                if (lg[last + v] > lg[last + a]) a = v;
                if (r[last + v] > r[last + b]) b = v;
            }
            CHECK(a == b);
        }
        free(lg);
        free(ref);
        slm_session_free(s);
    }
    slm_model_free(m);

    /* perplexity of the F32 file and llama.cpp's quantized versions */
    if (check_shared_path("fixtures/reference/eval_stories.txt", ep, sizeof ep)) {
        char *text = NULL;
        size_t tl = 0;
        CHECK_OK(slm_read_file(ep, 1 << 20, &text, &tl));
        static const struct {
            const char *file;
            double ppl;
        } refs[] = {{"models/stories260K.gguf", 4.056078},
                    {"models/stories260K-F16.gguf", 4.056171},
                    {"models/stories260K-Q6_K.gguf", 4.064548},
                    {"models/stories260K-Q4_K_M.gguf", 4.116404}};
        for (size_t i = 0; text && i < sizeof refs / sizeof refs[0]; i++) {
            char p[1024];
            if (check_shared_path(refs[i].file, p, sizeof p))
                check_perplexity(p, text, tl, refs[i].ppl);
            else
                printf("SKIP part: %s not found\n", refs[i].file);
        }
        free(text);
    }
    return check_finish();
}
