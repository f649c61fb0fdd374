/* End to end over small random models made here: load, tokenize, generate,
 * determinism across threads and batch sizes, context trimming, errors. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "textbuf.h"
#include "quant/types.h"
#include "testmodel.h"

/* What slm_session_set_token_info reports, checked as it comes. */
typedef struct info_log {
    int n, bad_top, bad_mass, bad_greedy, bad_order;
    int32_t tokens[64];
    float lps[64];
} info_log;

static void on_info(void *user, int32_t token, float logprob, const int32_t *top_ids,
                    const float *top_lp, int n_top) {
    info_log *l = user;
    if (l->n < 64) {
        l->tokens[l->n] = token;
        l->lps[l->n] = logprob;
    }
    l->n++;
    if (n_top != 5) l->bad_top++;
    double mass = 0.0;
    for (int i = 0; i < n_top; i++) {
        mass += exp((double)top_lp[i]);
        if (i > 0 && top_lp[i] > top_lp[i - 1]) l->bad_order++;
    }
    if (mass > 1.0 + 1e-5) l->bad_mass++;
    /* greedy: the sampled token is the most likely one */
    if (n_top < 1 || top_ids[0] != token || fabs(top_lp[0] - logprob) > 1e-6 || logprob > 0)
        l->bad_greedy++;
}

static slm_config *config(const char *json) {
    slm_config *c = NULL;
    if (slm_config_new(&c) != SLM_OK) return NULL;
    if (json && slm_config_apply_json(c, json, strlen(json)) != SLM_OK) {
        fprintf(stderr, "config: %s\n", slm_last_error());
    }
    return c;
}

/* Generates with a config; returns the status, text in *out. */
static slm_status gen(slm_model *m, const char *json, const char *prompt, slm_test_text *out,
                      slm_result *r) {
    slm_config *c = config(json);
    slm_session *s = NULL;
    memset(out, 0, sizeof *out);
    slm_status st = slm_session_new(m, c, &s);
    if (st == SLM_OK) st = slm_generate(s, prompt, strlen(prompt), slm_test_collect, out, r);
    slm_session_free(s);
    slm_config_free(c);
    return st;
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / (den + 1e-12);
}

static slm_status logits_with(slm_model *m, const char *json, const char *prompt, float **lg,
                              size_t *nt, size_t *nv) {
    slm_config *c = config(json);
    slm_session *s = NULL;
    slm_status st = slm_session_new(m, c, &s);
    if (st == SLM_OK) st = slm_prompt_logits(s, prompt, strlen(prompt), lg, nt, nv);
    slm_session_free(s);
    slm_config_free(c);
    return st;
}

int main(void) {
    char path[512], path16[512], path8[512], pathq[512];
    check_tmp_path("gen-f32.gguf", path, sizeof path);
    check_tmp_path("gen-f16.gguf", path16, sizeof path16);
    check_tmp_path("gen-q8.gguf", path8, sizeof path8);
    check_tmp_path("gen-qwen.gguf", pathq, sizeof pathq);
    slm_test_model_params p = {.dim = 64,
                               .n_layers = 2,
                               .n_heads = 4,
                               .n_kv_heads = 2,
                               .ffn_dim = 128,
                               .n_ctx = 256,
                               .n_extra_vocab = 40,
                               .wtype = SLM_TYPE_F32,
                               .seed = 3,
                               .scale = 0.08f};
    CHECK_OK(slm_test_write_model(path, &p));
    p.wtype = SLM_TYPE_F16;
    CHECK_OK(slm_test_write_model(path16, &p));
    p.wtype = SLM_TYPE_Q8_0;
    CHECK_OK(slm_test_write_model(path8, &p));
    slm_test_model_params pq = p;
    pq.arch = "qwen2";
    pq.wtype = SLM_TYPE_F32;
    pq.tied = 1;
    CHECK_OK(slm_test_write_model(pathq, &pq));

    slm_model *m = NULL;
    CHECK_OK(slm_model_load(path, NULL, &m));
    if (!m) return check_finish();

    slm_model_info info;
    CHECK_OK(slm_model_get_info(m, &info));
    CHECK(!strcmp(info.arch, "llama") && info.dim == 64 && info.n_layers == 2);
    CHECK(info.n_heads == 4 && info.n_kv_heads == 2 && info.ffn_dim == 128);
    CHECK(info.n_vocab == slm_test_base_vocab() + 40);
    CHECK(!strcmp(info.tokenizer, "llama"));

    /* tokenize / detokenize round trip, BOS from metadata */
    int32_t *ids = NULL;
    size_t n = 0;
    const char *hello = "hello world, the end";
    CHECK_OK(slm_tokenize(m, hello, strlen(hello), SLM_TOKENIZE_ADD_BOS, &ids, &n));
    CHECK(n > 1 && ids[0] == slm_token_bos(m));
    char *back = NULL;
    size_t bl = 0;
    CHECK_OK(slm_detokenize(m, ids + 1, n - 1, &back, &bl));
    CHECK(back && !strcmp(back, hello));
    free(back);
    free(ids);

    /* greedy is deterministic; 1 and 2 threads give the same sampled text */
    slm_test_text a, b;
    slm_result ra, rb;
    CHECK_OK(gen(m, "{\"temperature\":0,\"max_tokens\":40,\"ignore_eos\":true}", "the", &a, &ra));
    CHECK_OK(gen(m, "{\"temperature\":0,\"max_tokens\":40,\"ignore_eos\":true}", "the", &b, &rb));
    CHECK(ra.n_generated == 40 && ra.finish == SLM_FINISH_LENGTH);
    CHECK(a.n > 0 && !strcmp(a.s, b.s));
    CHECK_OK(gen(
        m, "{\"temperature\":0.9,\"seed\":7,\"threads\":1,\"max_tokens\":60,\"ignore_eos\":true}",
        "the sea", &a, &ra));
    CHECK_OK(gen(
        m, "{\"temperature\":0.9,\"seed\":7,\"threads\":2,\"max_tokens\":60,\"ignore_eos\":true}",
        "the sea", &b, &rb));
    CHECK_MSG(!strcmp(a.s, b.s), "1 thread: '%s'\n2 threads: '%s'", a.s, b.s);
    CHECK_OK(gen(
        m, "{\"temperature\":0.9,\"seed\":8,\"threads\":2,\"max_tokens\":60,\"ignore_eos\":true}",
        "the sea", &b, &rb));
    CHECK(strcmp(a.s, b.s) != 0); /* another seed, another text */

    /* log-probabilities per generated token: greedy picks the top one, the
     * alternatives are sorted with mass <= 1; off again after removal */
    {
        slm_config *c = config("{\"temperature\":0,\"max_tokens\":20,\"ignore_eos\":true}");
        slm_session *s = NULL;
        CHECK_OK(slm_session_new(m, c, &s));
        info_log lg;
        memset(&lg, 0, sizeof lg);
        CHECK_ERR(slm_session_set_token_info(s, on_info, &lg, 21), SLM_ERR_INVALID_ARG, "n_top");
        CHECK_OK(slm_session_set_token_info(s, on_info, &lg, 5));
        slm_test_text t;
        memset(&t, 0, sizeof t);
        slm_result r;
        CHECK_OK(slm_generate(s, "the", 3, slm_test_collect, &t, &r));
        CHECK(lg.n == 20 && r.n_generated == 20);
        CHECK(lg.bad_top == 0 && lg.bad_mass == 0 && lg.bad_order == 0 && lg.bad_greedy == 0);
        /* the reported logprob is the log-softmax of the prompt's last logits */
        float *pl = NULL;
        size_t nt = 0, nv = 0;
        CHECK_OK(slm_prompt_logits(s, "the", 3, &pl, &nt, &nv));
        if (pl && nt > 0) {
            const float *row = pl + (nt - 1) * nv;
            double mx = row[0], sum = 0.0;
            for (size_t v = 1; v < nv; v++) mx = row[v] > mx ? row[v] : mx;
            for (size_t v = 0; v < nv; v++) sum += exp((double)row[v] - mx);
            double want = (double)row[lg.tokens[0]] - mx - log(sum);
            CHECK_NEAR(lg.lps[0], want, 1e-4);
        }
        free(pl);
        /* with a repetition penalty the logprobs stay those of the raw logits */
        info_log lg2;
        memset(&lg2, 0, sizeof lg2);
        const char *pen = "{\"repeat_penalty\":5,\"frequency_penalty\":2,\"presence_penalty\":1}";
        CHECK_OK(slm_session_configure(s, pen, strlen(pen)));
        CHECK_OK(slm_session_set_token_info(s, on_info, &lg2, 5));
        CHECK_OK(slm_generate(s, "the", 3, slm_test_collect, &t, &r));
        CHECK(lg2.n == 20 && fabs(lg2.lps[0] - lg.lps[0]) < 1e-5);
        int differs = 0;
        for (int i = 0; i < 20; i++) differs |= lg2.tokens[i] != lg.tokens[i];
        CHECK(differs); /* the penalties changed what greedy picked */
        CHECK_OK(slm_session_set_token_info(s, NULL, NULL, 0));
        CHECK_OK(slm_generate(s, "the", 3, slm_test_collect, &t, &r));
        CHECK(lg2.n == 20);
        slm_session_free(s);
        slm_config_free(c);
    }

    /* a second prompt sharing a prefix reuses the cache and gives what a fresh
     * session gives; per-request settings apply without a new session */
    {
        slm_config *c = config("{\"temperature\":0,\"max_tokens\":12,\"ignore_eos\":true}");
        slm_session *s = NULL;
        CHECK_OK(slm_session_new(m, c, &s));
        slm_test_text t1, t2, fresh;
        slm_result r1, r2, rf;
        memset(&t1, 0, sizeof t1);
        memset(&t2, 0, sizeof t2);
        const char *p1 = "the sea and the ship";
        const char *p2 = "the sea and the ship in the wind";
        CHECK_OK(slm_generate(s, p1, strlen(p1), slm_test_collect, &t1, &r1));
        CHECK(r1.n_cached == 0);
        CHECK_OK(slm_generate(s, p2, strlen(p2), slm_test_collect, &t2, &r2));
        CHECK_MSG(r2.n_cached > 3, "reused %d", r2.n_cached);
        CHECK_OK(
            gen(m, "{\"temperature\":0,\"max_tokens\":12,\"ignore_eos\":true}", p2, &fresh, &rf));
        CHECK(!strcmp(t2.s, fresh.s));
        CHECK_OK(slm_session_configure(s, "{\"max_tokens\":3}", 16));
        memset(&t1, 0, sizeof t1);
        CHECK_OK(slm_generate(s, p1, strlen(p1), slm_test_collect, &t1, &r1));
        CHECK(r1.n_generated == 3);
        CHECK_ERR(slm_session_configure(s, "{\"n_ctx\":64}", 12), SLM_ERR_CONFIG, "new session");
        CHECK_ERR(slm_session_configure(s, "{\"weights\":\"copy\"}", 18), SLM_ERR_CONFIG,
                  "weights");
        CHECK_ERR(slm_session_configure(s, "{\"kv_cache\":\"f32\"}", 19), SLM_ERR_CONFIG,
                  "kv_cache");
        CHECK_ERR(slm_session_configure(s, "{\"bogus\":1}", 11), SLM_ERR_CONFIG, "bogus");
        slm_session_free(s);
        slm_config_free(c);
    }

    /* batched prefill equals one token at a time */
    float *l1 = NULL, *l2 = NULL;
    size_t nt1 = 0, nv1 = 0, nt2 = 0, nv2 = 0;
    const char *prompt = "the ship and the sea, in the hour of the wind";
    CHECK_OK(logits_with(m, "{\"n_batch\":256}", prompt, &l1, &nt1, &nv1));
    CHECK_OK(logits_with(m, "{\"n_batch\":1,\"threads\":2}", prompt, &l2, &nt2, &nv2));
    CHECK(nt1 == nt2 && nv1 == nv2 && nt1 > 5);
    if (l1 && l2)
        CHECK_MSG(max_rel_diff(l1, l2, nt1 * nv1) < 1e-5, "%g", max_rel_diff(l1, l2, nt1 * nv1));
    free(l2);

    /* the K/V cache: f16 by default, f32 when asked; each position's keys
     * and values rounded to f16 move the logits a little, the same way on
     * every provider (the scalar path widens the halves exactly, too) */
    {
        float *lf = NULL;
        size_t ntf = 0, nvf = 0;
        CHECK_OK(logits_with(m, "{\"kv_cache\":\"f32\"}", prompt, &lf, &ntf, &nvf));
        if (l1 && lf && ntf == nt1 && nvf == nv1) {
            double d = max_rel_diff(l1, lf, nt1 * nv1);
            CHECK_MSG(d > 0 && d < 2e-3, "f16 against f32 cache: %g", d);
        }
        free(lf);
        lf = NULL;
        CHECK_OK(logits_with(m, "{\"providers\":[\"ref\"]}", prompt, &lf, &ntf, &nvf));
        if (l1 && lf && ntf == nt1 && nvf == nv1)
            CHECK_MSG(max_rel_diff(l1, lf, nt1 * nv1) < 1e-4, "ref provider, f16 cache: %g",
                      max_rel_diff(l1, lf, nt1 * nv1));
        free(lf);
        for (int f32 = 0; f32 < 2; f32++) {
            slm_config *kc = config(f32 ? "{\"n_ctx\":64,\"kv_cache\":\"f32\"}" : "{\"n_ctx\":64}");
            slm_session *ks = NULL;
            CHECK_OK(slm_session_new(m, kc, &ks));
            /* 2 layers x 64 positions x 32 (2 K/V heads of 16) x K and V */
            CHECK_MSG(slm_session_kv_bytes(ks) == 2u * 64u * 32u * 2u * (f32 ? 4u : 2u),
                      "kv bytes %llu", (unsigned long long)slm_session_kv_bytes(ks));
            slm_session_free(ks);
            slm_config_free(kc);
        }
    }

    /* the config's weights: the file mapped or copied into memory gives the
     * same bits; the model says which it did */
    for (int w = 0; w < 2; w++) {
        slm_config *wc = config(w ? "{\"weights\":\"copy\"}" : "{\"weights\":\"map\"}");
        slm_model *mw = NULL;
        CHECK_OK(slm_model_load(path8, wc, &mw));
        if (mw) {
            slm_model_info wi;
            CHECK_OK(slm_model_get_info(mw, &wi));
            CHECK_MSG(wi.weights_copied == w, "weights %d copied %d", w, wi.weights_copied);
            CHECK_OK(logits_with(mw, NULL, prompt, &l2, &nt2, &nv2));
            float *l3 = NULL;
            size_t nt3 = 0, nv3 = 0;
            slm_model *mr = NULL;
            CHECK_OK(slm_model_load(path8, NULL, &mr));
            if (mr) CHECK_OK(logits_with(mr, NULL, prompt, &l3, &nt3, &nv3));
            CHECK(l2 && l3 && nt2 == nt3 && nv2 == nv3 && !memcmp(l2, l3, nt2 * nv2 * sizeof *l2));
            free(l3);
            slm_model_free(mr);
            free(l2);
            l2 = NULL;
        }
        slm_model_free(mw);
        slm_config_free(wc);
    }
    {
        slm_config *wc = NULL;
        CHECK_OK(slm_config_new(&wc));
        CHECK_ERR(slm_config_apply_json(wc, "{\"weights\":\"huge\"}", 18), SLM_ERR_CONFIG,
                  "weights");
        CHECK_ERR(slm_config_apply_json(wc, "{\"weights\":1}", 13), SLM_ERR_CONFIG, "weights");
        slm_config_free(wc);
    }

    /* F16 and Q8_0 copies of the same weights give nearly the same logits */
    slm_model *m16 = NULL, *m8 = NULL;
    CHECK_OK(slm_model_load(path16, NULL, &m16));
    CHECK_OK(slm_model_load(path8, NULL, &m8));
    if (m16) {
        CHECK_OK(logits_with(m16, NULL, prompt, &l2, &nt2, &nv2));
        if (l1 && l2)
            CHECK_MSG(max_rel_diff(l2, l1, nt1 * nv1) < 0.01, "f16 %g",
                      max_rel_diff(l2, l1, nt1 * nv1));
        free(l2);
        l2 = NULL;
    }
    if (m8) {
        CHECK_OK(logits_with(m8, NULL, prompt, &l2, &nt2, &nv2));
        if (l1 && l2)
            CHECK_MSG(max_rel_diff(l2, l1, nt1 * nv1) < 0.05, "q8_0 %g",
                      max_rel_diff(l2, l1, nt1 * nv1));
        free(l2);
        l2 = NULL;
    }

    /* the context fills: generation goes on, and says it trimmed */
    slm_result rt;
    CHECK_OK(gen(m, "{\"temperature\":0,\"n_ctx\":32,\"max_tokens\":100,\"ignore_eos\":true}",
                 "the sea", &a, &rt));
    CHECK(rt.n_generated == 100);
    CHECK(rt.n_trims > 0 && rt.n_dropped > 0);
    /* ... or fails when the policy says so */
    CHECK_ERR(gen(m,
                  "{\"temperature\":0,\"n_ctx\":32,\"max_tokens\":100,\"ignore_eos\":true,"
                  "\"context_policy\":\"error\"}",
                  "the sea", &a, &rt),
              SLM_ERR_CONTEXT, "full");
    /* a prompt longer than the context is trimmed, with the flag set */
    char longp[4096] = "";
    for (int i = 0; i < 60; i++) strcat(longp, "the sea and the ship ");
    CHECK_OK(gen(m, "{\"temperature\":0,\"n_ctx\":64,\"max_tokens\":5}", longp, &a, &rt));
    CHECK(rt.n_trims >= 1 && rt.n_dropped > 0);

    /* stop strings end generation before the string */
    CHECK_OK(gen(m, "{\"temperature\":0,\"max_tokens\":40,\"ignore_eos\":true}", "the", &a, &ra));
    if (a.n > 6) {
        char stop[4];
        memcpy(stop, a.s + 4, 3);
        stop[3] = 0;
        char json[256];
        snprintf(json, sizeof json,
                 "{\"temperature\":0,\"max_tokens\":40,\"ignore_eos\":true,\"stop\":\"%s\"}", stop);
        if (!strchr(stop, '"') && !strchr(stop, '\\')) {
            CHECK_OK(gen(m, json, "the", &b, &rb));
            CHECK(rb.finish == SLM_FINISH_STOP);
            CHECK(strstr(b.s, stop) == NULL);
            CHECK(!strncmp(a.s, b.s, b.n));
        }
    }

    /* perplexity: window accounting as in the reference protocol */
    char text[8192] = "";
    for (int i = 0; i < 40; i++) strcat(text, "the sea and the ship in the wind. ");
    slm_config *pc = config("{\"n_ctx\":32}");
    slm_session *ps = NULL;
    CHECK_OK(slm_session_new(m, pc, &ps));
    slm_perplexity_result pr;
    CHECK_OK(slm_perplexity(ps, text, strlen(text), 32, &pr));
    CHECK(pr.n_windows > 0 && pr.n_scored == pr.n_windows * 31);
    CHECK(isfinite(pr.perplexity) && pr.perplexity > 1.0);
    CHECK_ERR(slm_perplexity(ps, "the", 3, 32, &pr), SLM_ERR_INVALID_ARG, "fewer than one window");
    CHECK_ERR(slm_perplexity(ps, text, strlen(text), 64, &pr), SLM_ERR_INVALID_ARG, "context");
    slm_session_free(ps);
    slm_config_free(pc);

    /* the config's quant: an F32 file is quantized at load; a file already
     * quantized cannot be turned into another precision */
    slm_config *qc = config("{\"quant\":\"int8\"}");
    slm_model *mq = NULL;
    CHECK_OK(slm_model_load(path, qc, &mq));
    if (mq) {
        slm_model_info qi;
        slm_model_get_info(mq, &qi);
        CHECK(!strcmp(qi.weight_type, "q8_0"));
        float *lq = NULL;
        size_t ntq = 0, nvq = 0;
        CHECK_OK(logits_with(mq, NULL, prompt, &lq, &ntq, &nvq));
        if (l1 && lq && ntq == nt1)
            CHECK_MSG(max_rel_diff(lq, l1, nt1 * nv1) < 0.05, "int8 at load %g",
                      max_rel_diff(lq, l1, nt1 * nv1));
        free(lq);
    }
    free(l1);
    l1 = NULL;
    slm_model_free(mq);
    mq = NULL;
    slm_config_free(qc);
    qc = config("{\"quant\":\"f16\"}");
    CHECK_ERR(slm_model_load(path8, qc, &mq), SLM_ERR_UNSUPPORTED, "already");
    slm_config_free(qc);
    qc = config("{\"quant\":\"q9_z\"}");
    CHECK_ERR(slm_model_load(path, qc, &mq), SLM_ERR_CONFIG, "quant");
    slm_config_free(qc);

    /* qwen2: biases, rotary halves, tied output */
    slm_model *mw = NULL;
    CHECK_OK(slm_model_load(pathq, NULL, &mw));
    if (mw) {
        slm_model_info qi;
        slm_model_get_info(mw, &qi);
        CHECK(!strcmp(qi.arch, "qwen2") && qi.tied_output);
        CHECK_OK(
            gen(mw, "{\"temperature\":0,\"max_tokens\":10,\"ignore_eos\":true}", "the", &a, &ra));
        CHECK(ra.n_generated == 10);
    }

    /* inspect-only models describe but do not run */
    slm_model *mi = NULL;
    CHECK_OK(slm_model_inspect(path, &mi));
    slm_session *si = NULL;
    CHECK_ERR(slm_session_new(mi, NULL, &si), SLM_ERR_INVALID_ARG, "inspection");
    CHECK(slm_model_n_tensors(mi) == 3 + 9 * 2);
    slm_model_free(mi);

    CHECK_ERR(slm_model_load("/nonexistent/model.gguf", NULL, &mi), SLM_ERR_IO,
              "/nonexistent/model.gguf");

    slm_model_free(mw);
    slm_model_free(m16);
    slm_model_free(m8);
    slm_model_free(m);
    remove(path);
    remove(path16);
    remove(path8);
    remove(pathq);
    return check_finish();
}
