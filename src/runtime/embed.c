/* Embeddings of a decoder model: the final hidden states (after the output
 * norm) of the input's positions, mean- or last-token-pooled, L2-normalized.
 * The forward pass writes the hidden states of each batch to fw.hidden_out
 * while it is set (model/llama.c). See slm.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "runtime/session.h"

int32_t slm_embedding_dim(const slm_model *model) {
    return model && !model->inspect_only ? model->hp.dim : 0;
}

slm_status slm_embed_tokens(slm_session *s, const int32_t *ids, size_t n_ids, slm_pooling pooling,
                            int normalize, float *out) {
    if (!s || !out || (!ids && n_ids))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_embed: NULL argument");
    if (pooling != SLM_POOLING_MEAN && pooling != SLM_POOLING_LAST)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_embed: unknown pooling %d", (int)pooling);
    if (n_ids == 0)
        return slm_fail(SLM_ERR_INVALID_ARG, "nothing to embed: the input has no tokens");
    if (n_ids > (size_t)s->n_ctx)
        return slm_fail(SLM_ERR_CONTEXT, "the input has %zu tokens; the context holds %d", n_ids,
                        s->n_ctx);
    const int32_t V = s->model->hp.n_vocab, D = s->model->hp.dim;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "token id %d at %zu is outside the vocabulary (%d)", ids[i], i, V);
    int32_t n = (int32_t)n_ids, nb = s->fw.buf.n_batch;
    float *hidden = slm_alloc_aligned((size_t)nb * (size_t)D, sizeof(float));
    double *acc = calloc((size_t)D, sizeof *acc);
    if (!hidden || !acc) {
        free(hidden);
        free(acc);
        return slm_fail(SLM_ERR_NOMEM, "cannot allocate %d x %d hidden states", nb, D);
    }
    /* mean pooling needs every position's state; last-token pooling may
     * reuse the cached prefix (all but the last token) */
    int32_t from = 0;
    if (pooling == SLM_POOLING_LAST)
        while (from < s->n_tokens && from < n - 1 && s->tokens[from] == ids[from]) from++;
    slm_status st = SLM_OK;
    s->n_tokens = from;
    s->fw.hidden_out = hidden;
    for (int32_t i = from; i < n && st == SLM_OK; i += nb) {
        int32_t m = n - i < nb ? n - i : nb;
        st = slm_forward_run(&s->fw, ids + i, m, i, NULL, 0);
        if (st != SLM_OK) break;
        memcpy(s->tokens + i, ids + i, (size_t)m * sizeof *ids);
        s->n_tokens = i + m;
        if (pooling == SLM_POOLING_MEAN) {
            for (int32_t t = 0; t < m; t++)
                for (int32_t d = 0; d < D; d++) acc[d] += hidden[(size_t)t * (size_t)D + (size_t)d];
        } else if (i + m == n) {
            for (int32_t d = 0; d < D; d++)
                acc[d] = hidden[(size_t)(m - 1) * (size_t)D + (size_t)d];
        }
    }
    s->fw.hidden_out = NULL;
    if (st == SLM_OK) {
        double scale = pooling == SLM_POOLING_MEAN ? 1.0 / n : 1.0;
        double ss = 0.0;
        for (int32_t d = 0; d < D; d++) {
            acc[d] *= scale;
            ss += acc[d] * acc[d];
        }
        double inv = normalize && ss > 0.0 ? 1.0 / sqrt(ss) : 1.0;
        for (int32_t d = 0; d < D; d++) out[d] = (float)(acc[d] * inv);
    }
    free(hidden);
    free(acc);
    return st;
}

slm_status slm_embed(slm_session *s, const char *text, size_t len, slm_pooling pooling,
                     int normalize, float *out, int32_t *n_tokens) {
    if (n_tokens) *n_tokens = 0;
    if (!s || !out || (!text && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_embed: NULL argument");
    int32_t *ids = NULL;
    size_t n = 0;
    SLM_TRY(
        slm_tokenizer_encode(s->model->tok, text ? text : "", len, SLM_TOKENIZE_ADD_BOS, &ids, &n));
    slm_status st = slm_embed_tokens(s, ids, n, pooling, normalize, out);
    if (st == SLM_OK && n_tokens) *n_tokens = (int32_t)n;
    free(ids);
    return st;
}
