/* Quality report of a quantized model against its base (issue 4): both
 * perplexities by the protocol of slm_perplexity, KL divergence of the
 * next-token distributions at every scored position (mean, 99th percentile,
 * max), top-1 agreement, file sizes and bits per weight. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "base/status.h"
#include "runtime/quantize.h"
#include "runtime/session.h"

/* Bits per weight of the 2-D matrices and of all tensors. */
static void bits_per_weight(const slm_model *m, double *bpw_mat, double *bpw_all) {
    uint64_t mb = 0, me = 0, ab = 0, ae = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        uint64_t ne = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        ab += t->nbytes;
        ae += ne;
        if (t->n_dims >= 2) {
            mb += t->nbytes;
            me += ne;
        }
    }
    *bpw_mat = me ? 8.0 * (double)mb / (double)me : 0.0;
    *bpw_all = ae ? 8.0 * (double)ab / (double)ae : 0.0;
}

static uint64_t file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int64_t argmax(const double *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

slm_status slm_compare_files(const char *base, const char *quant, const char *text, size_t len,
                             int32_t n_ctx, const slm_config *cfg, slm_compare_result *out) {
    slm_status st = SLM_OK;
    slm_model *mb = NULL, *mq = NULL;
    slm_session *sb = NULL, *sq = NULL;
    int32_t *ids = NULL, *ids_q = NULL;
    size_t n = 0, n_q = 0;
    float *lgb = NULL, *lgq = NULL;
    double *lpb = NULL, *lpq = NULL, *kls = NULL;
    if (!base || !quant || !out || (!text && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_compare_files: NULL argument");
    memset(out, 0, sizeof *out);
    if (n_ctx < 2)
        return slm_fail(SLM_ERR_INVALID_ARG, "compare: window of %d tokens (at least 2)", n_ctx);
    slm_config c;
    if (cfg)
        c = *cfg;
    else
        slm_config_defaults(&c);
    c.n_ctx = n_ctx;
    c.quant[0] = '\0';

    SLM_CHECK(slm_model_load(base, NULL, &mb));
    SLM_CHECK(slm_model_load(quant, NULL, &mq));
    if (mb->hp.n_vocab != mq->hp.n_vocab) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "compare: %s has %d tokens of vocabulary, %s has %d",
                      base, mb->hp.n_vocab, quant, mq->hp.n_vocab);
        goto cleanup;
    }
    SLM_CHECK(slm_session_new(mb, &c, &sb));
    SLM_CHECK(slm_session_new(mq, &c, &sq));
    SLM_CHECK(slm_tokenizer_encode(mb->tok, text ? text : "", len, SLM_TOKENIZE_ADD_BOS, &ids, &n));
    SLM_CHECK(
        slm_tokenizer_encode(mq->tok, text ? text : "", len, SLM_TOKENIZE_ADD_BOS, &ids_q, &n_q));
    if (n != n_q || memcmp(ids, ids_q, n * sizeof *ids) != 0) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "compare: %s and %s tokenize the text differently", base,
                      quant);
        goto cleanup;
    }
    size_t n_windows = n / (size_t)n_ctx;
    if (n_windows == 0) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "the text has %zu tokens, fewer than one window of %d",
                      n, n_ctx);
        goto cleanup;
    }
    int64_t V = mb->hp.n_vocab;
    int32_t nb = sb->fw.buf.n_batch < sq->fw.buf.n_batch ? sb->fw.buf.n_batch : sq->fw.buf.n_batch;
    lgb = slm_alloc_aligned((size_t)nb * (size_t)V, sizeof(float));
    lgq = slm_alloc_aligned((size_t)nb * (size_t)V, sizeof(float));
    lpb = slm_calloc((size_t)V, sizeof(double));
    lpq = slm_calloc((size_t)V, sizeof(double));
    kls = slm_calloc(n_windows * (size_t)(n_ctx - 1), sizeof(double));
    if (!lgb || !lgq || !lpb || !lpq || !kls) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory for compare");
        goto cleanup;
    }
    double nll_b = 0.0, nll_q = 0.0, kl_sum = 0.0;
    int64_t scored = 0, agree = 0;
    for (size_t w = 0; w < n_windows; w++) {
        const int32_t *win = ids + w * (size_t)n_ctx;
        for (int32_t i = 0; i < n_ctx; i += nb) {
            int32_t m = n_ctx - i < nb ? n_ctx - i : nb;
            SLM_CHECK(slm_forward_run(&sb->fw, win + i, m, i, lgb, 1));
            SLM_CHECK(slm_forward_run(&sq->fw, win + i, m, i, lgq, 1));
            for (int32_t j = 0; j < m && i + j < n_ctx - 1; j++) {
                int32_t next = win[i + j + 1];
                slm_log_softmax(lgb + (size_t)j * (size_t)V, V, lpb);
                slm_log_softmax(lgq + (size_t)j * (size_t)V, V, lpq);
                nll_b -= lpb[next];
                nll_q -= lpq[next];
                double kl = slm_kl_divergence(lpb, lpq, V);
                kls[scored++] = kl;
                kl_sum += kl;
                agree += argmax(lpb, V) == argmax(lpq, V);
            }
        }
    }
    qsort(kls, (size_t)scored, sizeof *kls, cmp_double);
    size_t p99 = (size_t)ceil(0.99 * (double)scored);
    out->n_scored = scored;
    out->n_windows = (int64_t)n_windows;
    out->ppl_base = exp(nll_b / (double)scored);
    out->ppl_quant = exp(nll_q / (double)scored);
    out->kl_mean = kl_sum / (double)scored;
    out->kl_p99 = kls[p99 > 0 ? p99 - 1 : 0];
    out->kl_max = kls[scored - 1];
    out->top1 = (double)agree / (double)scored;
    out->bytes_base = file_size(base);
    out->bytes_quant = file_size(quant);
    bits_per_weight(mb, &out->bpw_base, &out->bpw_all_base);
    bits_per_weight(mq, &out->bpw_quant, &out->bpw_all_quant);
cleanup:
    free(lgb);
    free(lgq);
    free(lpb);
    free(lpq);
    free(kls);
    free(ids);
    free(ids_q);
    slm_session_free(sb);
    slm_session_free(sq);
    slm_model_free(mb);
    slm_model_free(mq);
    return st;
}
