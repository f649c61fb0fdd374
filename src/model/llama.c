/* The llama-family forward pass (Llama 2/3, TinyLlama, SmolLM, Mistral-style,
 * Qwen2 with q/k/v biases), for a batch of tokens at consecutive positions.
 *
 * Readable top to bottom, one stage per block; speed lives in the kernels
 * (slm_matmul and the provider's vector ops), not here. Shapes in comments:
 * B = tokens in the batch, D = dim, KV = kv_dim, F = ffn_dim, V = vocab. */
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "base/mem.h"
#include "base/status.h"
#include "model/lora.h"
#include "model/model.h"
#include "quant/types.h"

/* ---- small building blocks ---------------------------------------------- */

/* out = x / rms(x) * w, per row of n (the provider's when it has one) */
static void rmsnorm_row(const slm_provider *pv, float *out, const float *x, const float *w,
                        int32_t n, float eps) {
    if (pv->rmsnorm) {
        pv->rmsnorm(out, x, w, n, eps);
        return;
    }
    double ss = 0.0;
    for (int32_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int32_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

/* Rotates one head's first rope_dim dimensions by the angles for `pos` (the
 * provider's kernel when it has one: same bits; slm_rope_pair is the step). */
static void rope_head(const slm_provider *pv, float *h, const float *cs, int32_t rope_dim,
                      slm_rope_style style) {
    if (pv->rope) {
        pv->rope(h, cs, rope_dim, style == SLM_ROPE_ADJACENT);
        return;
    }
    int32_t half = rope_dim / 2;
    for (int32_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int32_t a = style == SLM_ROPE_ADJACENT ? 2 * i : i;
        int32_t b = style == SLM_ROPE_ADJACENT ? 2 * i + 1 : i + half;
        slm_rope_pair(h, a, b, c, s);
    }
}

/* Y_i = W_i X for matrices of one row length over the same X, as one pool
 * job (slm_matmul_multi), each with the observe hook and its LoRA terms */
static void matmul_multi(slm_forward *fw, int n_mat, const slm_matrix *const *W, const float *X,
                         int32_t n, int64_t xs, float *const *Y, const int64_t *ys) {
    if (fw->observe)
        for (int i = 0; i < n_mat; i++) fw->observe(fw->observe_user, W[i], X, n, xs);
    slm_matmul_multi(fw->pv, fw->pool, n_mat, W, X, n, xs, Y, ys, fw->buf.scratch);
    /* LoRA: Y += s·B·(A·X) for each active adapter that targets W (model/lora.c) */
    if (fw->lora)
        for (int i = 0; i < n_mat; i++) slm_lora_apply(fw, W[i], X, n, xs, Y[i], ys[i]);
}

static void matmul(slm_forward *fw, const slm_matrix *W, const float *X, int32_t n, int64_t xs,
                   float *Y, int64_t ys) {
    matmul_multi(fw, 1, &W, X, n, xs, &Y, &ys);
}

/* ---- attention, parallel over (K/V head, token, head) --------------------- */

/* Position p's row of head-relative K or V elements (base: the head's first
 * element; tiled: the key cache's layout, kernels.h) as floats: in place for
 * an untiled f32 row, else gathered and widened into tmp (hd floats). */
static const float *kv_row(const uint8_t *base, uint32_t kt, int tiled, int32_t p, int32_t kvd,
                           int32_t hd, float *tmp) {
    if (!tiled && kt == SLM_TYPE_F32) return (const float *)base + (size_t)p * (size_t)kvd;
    for (int32_t d = 0; d < hd; d++) {
        size_t at = tiled ? slm_kv_tile_at(p, d, kvd) : (size_t)p * (size_t)kvd + (size_t)d;
        tmp[d] = kt == SLM_TYPE_F32 ? ((const float *)base)[at]
                                    : slm_fp16_to_f32(((const uint16_t *)base)[at]);
    }
    return tmp;
}

/* Stores position p's n = kv_dim keys (tiled) or values into one layer's
 * cache of type kt; tmp: n uint16_t of scratch. */
static void kv_store(const slm_provider *pv, void *layer, uint32_t kt, int tiled, int32_t p,
                     const float *x, int32_t n, uint16_t *tmp) {
    if (kt == SLM_TYPE_F32) {
        float *f = layer;
        if (!tiled) {
            memcpy(f + (size_t)p * (size_t)n, x, (size_t)n * sizeof(float));
            return;
        }
        for (int32_t i = 0; i < n; i++) f[slm_kv_tile_at(p, i, n)] = x[i];
        return;
    }
    uint16_t *h = layer;
    uint16_t *dst = tiled ? tmp : h + (size_t)p * (size_t)n;
    if (pv->to_f16)
        pv->to_f16(dst, x, n);
    else
        for (int32_t i = 0; i < n; i++) dst[i] = slm_f32_to_fp16(x[i]);
    if (tiled)
        for (int32_t i = 0; i < n; i++) h[slm_kv_tile_at(p, i, n)] = tmp[i];
}

typedef struct attn_job {
    slm_forward *fw;
    int32_t layer, n, pos;
} attn_job;

static void attn_task(void *ctx, int64_t i0, int64_t i1, int thread) {
    attn_job *job = ctx;
    slm_forward *fw = job->fw;
    const slm_hparams *hp = &fw->model->hp;
    const int32_t hd = hp->head_dim, kvd = hp->kv_dim, n_ctx = fw->kv.n_ctx;
    const int32_t group = hp->n_heads / hp->n_kv_heads;
    const float scale = 1.0f / sqrtf((float)hd);
    float *att = fw->buf.att + (size_t)thread * (size_t)group * (size_t)n_ctx;
    const uint32_t kt = fw->kv.type;
    const size_t esz = kt == SLM_TYPE_F16 ? 2 : 4;
    const uint8_t *kc = (const uint8_t *)fw->kv.k + (size_t)job->layer * fw->kv.layer_bytes;
    const uint8_t *vc = (const uint8_t *)fw->kv.v + (size_t)job->layer * fw->kv.layer_bytes;

    /* Items in (K/V head, token, head of its group) order: a thread's run of
     * tokens reads one K/V head's rows, which stay in cache from token to
     * token (token-major order passed every K/V head per token). Tokens go
     * 0, n-1, 1, n-2, ...: a causal token's cost grows with its position,
     * and so each contiguous share of the items costs about the same. */
    const int32_t n_tok = job->n;
    const int64_t per_kvh = (int64_t)n_tok * group;
    for (int64_t i = i0; i < i1;) {
        const int32_t kvh = (int32_t)(i / per_kvh);
        const int32_t j = (int32_t)(i % per_kvh / group);
        const int32_t t = j % 2 == 0 ? j / 2 : n_tok - 1 - j / 2;
        const int32_t h = kvh * group + (int32_t)(i % group);
        int32_t n_pos = job->pos + t + 1; /* causal: positions 0..pos+t */
        const float *q = fw->buf.q + (size_t)t * (size_t)hp->dim + (size_t)h * (size_t)hd;
        float *out = fw->buf.xb2 + (size_t)t * (size_t)hp->dim + (size_t)h * (size_t)hd;
        const uint8_t *kh = kc + (size_t)kvh * (size_t)hd * SLM_KV_TILE * esz;
        const uint8_t *vh = vc + (size_t)kvh * (size_t)hd * esz;

        if (fw->pv->attend) {
            /* this thread's next heads of the same token and K/V head, at once */
            int32_t n_q = 1;
            while (i + n_q < i1 && (h + n_q) % group != 0) n_q++;
            fw->pv->attend(q, n_q, kh, vh, kt, kvd, n_pos, hd, scale, att, out);
            i += n_q;
            continue;
        }
        i++;
        /* the provider's scalar ops; an f16 row is widened into the thread's
         * matmul scratch first */
        float *row = fw->buf.scratch + (size_t)thread * fw->buf.scratch_per_thread;
        /* scores[p] = q . k[p] / sqrt(hd), softmax over p */
        float mx = -INFINITY;
        for (int32_t p = 0; p < n_pos; p++) {
            const float *k = kv_row(kh, kt, 1, p, kvd, hd, row);
            att[p] = fw->pv->dot_f32(q, k, hd) * scale;
            if (att[p] > mx) mx = att[p];
        }
        float sum = 0.0f;
        for (int32_t p = 0; p < n_pos; p++) {
            att[p] = expf(att[p] - mx);
            sum += att[p];
        }
        float inv = 1.0f / sum;

        /* out = sum_p softmax[p] * v[p] */
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int32_t p = 0; p < n_pos; p++) {
            const float *v = kv_row(vh, kt, 0, p, kvd, hd, row);
            fw->pv->axpy_f32(out, att[p] * inv, v, hd);
        }
    }
}

/* ---- the forward pass ------------------------------------------------------- */

slm_status slm_forward_run(slm_forward *fw, const int32_t *tokens, int32_t n, int32_t pos,
                           float *logits, int all_logits) {
    const slm_model *m = fw->model;
    const slm_hparams *hp = &m->hp;
    slm_forward_buf *b = &fw->buf;
    const int32_t D = hp->dim, KV = hp->kv_dim, F = hp->ffn_dim, V = hp->n_vocab;

    if (n <= 0 || n > b->n_batch)
        return slm_fail(SLM_ERR_INVALID_ARG, "forward: batch of %d tokens (limit %d)", n,
                        b->n_batch);
    if (pos < 0 || pos + n > fw->kv.n_ctx)
        return slm_fail(SLM_ERR_CONTEXT, "forward: positions %d..%d exceed the context of %d", pos,
                        pos + n - 1, fw->kv.n_ctx);
    for (int32_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return slm_fail(SLM_ERR_INVALID_ARG, "forward: token id %d outside the vocabulary (%d)",
                            tokens[t], V);

    /* x[B][D] = token embeddings */
    for (int32_t t = 0; t < n; t++) {
        const uint8_t *row = m->tok_embd.data + (size_t)tokens[t] * m->tok_embd.row_bytes;
        fw->pv->dequantize_row(m->tok_embd.type, row, b->x + (size_t)t * D, D);
    }

    for (int32_t l = 0; l < hp->n_layers; l++) {
        const slm_layer *L = &m->layers[l];

        /* attention: xb = rmsnorm(x); q,k,v = Wq xb, Wk xb, Wv xb (+ biases) */
        for (int32_t t = 0; t < n; t++)
            rmsnorm_row(fw->pv, b->xb + (size_t)t * D, b->x + (size_t)t * D, L->attn_norm, D,
                        hp->norm_eps);
        {
            const slm_matrix *W[3] = {&L->wq, &L->wk, &L->wv};
            float *Y[3] = {b->q, b->k, b->v}; /* q[B][D], k[B][KV], v[B][KV] */
            const int64_t ys[3] = {D, KV, KV};
            matmul_multi(fw, 3, W, b->xb, n, D, Y, ys);
        }
        for (int32_t t = 0; t < n; t++) {
            if (L->bq)
                for (int32_t i = 0; i < D; i++) b->q[(size_t)t * D + i] += L->bq[i];
            if (L->bk)
                for (int32_t i = 0; i < KV; i++) b->k[(size_t)t * KV + i] += L->bk[i];
            if (L->bv)
                for (int32_t i = 0; i < KV; i++) b->v[(size_t)t * KV + i] += L->bv[i];
        }

        /* RoPE on q and k, then k, v into the cache at their positions */
        for (int32_t t = 0; t < n; t++) {
            const float *cs = b->rope + (size_t)(pos + t) * (size_t)hp->rope_dim;
            for (int32_t h = 0; h < hp->n_heads; h++)
                rope_head(fw->pv, b->q + (size_t)t * D + (size_t)h * hp->head_dim, cs, hp->rope_dim,
                          hp->rope_style);
            for (int32_t h = 0; h < hp->n_kv_heads; h++)
                rope_head(fw->pv, b->k + (size_t)t * KV + (size_t)h * hp->head_dim, cs,
                          hp->rope_dim, hp->rope_style);
            const size_t layer = (size_t)l * fw->kv.layer_bytes;
            uint16_t *tmp = (uint16_t *)(void *)b->scratch; /* the main thread's, between jobs */
            kv_store(fw->pv, (uint8_t *)fw->kv.k + layer, fw->kv.type, 1, pos + t,
                     b->k + (size_t)t * KV, KV, tmp);
            kv_store(fw->pv, (uint8_t *)fw->kv.v + layer, fw->kv.type, 0, pos + t,
                     b->v + (size_t)t * KV, KV, tmp);
        }

        /* xb2[B][D] = causal softmax(q k^T / sqrt(hd)) v, per head */
        attn_job job = {fw, l, n, pos};
        slm_pool_run(fw->pool, (int64_t)n * hp->n_heads, 1, attn_task, &job);

        /* x += Wo xb2 */
        matmul(fw, &L->wo, b->xb2, n, D, b->xb, D);
        for (size_t i = 0; i < (size_t)n * (size_t)D; i++) b->x[i] += b->xb[i];

        /* FFN: x += Wdown (silu(Wgate xb) * Wup xb), xb = rmsnorm(x) */
        for (int32_t t = 0; t < n; t++)
            rmsnorm_row(fw->pv, b->xb + (size_t)t * D, b->x + (size_t)t * D, L->ffn_norm, D,
                        hp->norm_eps);
        {
            const slm_matrix *W[2] = {&L->w_gate, &L->w_up};
            float *Y[2] = {b->hb, b->hb2}; /* hb[B][F], hb2[B][F] */
            const int64_t ys[2] = {F, F};
            matmul_multi(fw, 2, W, b->xb, n, D, Y, ys);
        }
        if (fw->pv->swiglu) {
            fw->pv->swiglu(b->hb, b->hb2, (int64_t)n * F);
        } else {
            for (size_t i = 0; i < (size_t)n * (size_t)F; i++) {
                float g = b->hb[i];
                b->hb[i] = g / (1.0f + expf(-g)) * b->hb2[i];
            }
        }
        matmul(fw, &L->w_down, b->hb, n, F, b->xb, D);
        for (size_t i = 0; i < (size_t)n * (size_t)D; i++) b->x[i] += b->xb[i];
    }

    /* hidden_out[B][D] = rmsnorm(x): the final hidden states, for embeddings */
    if (fw->hidden_out)
        for (int32_t t = 0; t < n; t++)
            rmsnorm_row(fw->pv, fw->hidden_out + (size_t)t * D, b->x + (size_t)t * D,
                        m->output_norm, D, hp->norm_eps);
    if (!logits) return SLM_OK;

    /* logits[V] (or [B][V]) = Wout rmsnorm(x) */
    int32_t first = all_logits ? 0 : n - 1;
    int32_t rows = n - first;
    for (int32_t t = first; t < n; t++)
        rmsnorm_row(fw->pv, b->xb + (size_t)t * D, b->x + (size_t)t * D, m->output_norm, D,
                    hp->norm_eps);
    matmul(fw, &m->output, b->xb + (size_t)first * D, rows, D, logits, V);
    return SLM_OK;
}

/* ---- buffers ------------------------------------------------------------------ */

static slm_status alloc_floats(float **p, size_t n, const char *what) {
    *p = slm_alloc_aligned(n, sizeof(float));
    if (!*p) return slm_fail(SLM_ERR_NOMEM, "cannot allocate %zu floats for %s", n, what);
    return SLM_OK;
}

slm_status slm_forward_init(slm_forward *fw, const slm_model *m, const slm_provider *pv,
                            slm_pool *pool, int32_t n_ctx, int32_t n_batch, uint32_t kv_type) {
    slm_status st = SLM_OK;
    memset(fw, 0, sizeof *fw);
    if (kv_type != SLM_TYPE_F32 && kv_type != SLM_TYPE_F16)
        return slm_fail(SLM_ERR_INVALID_ARG, "KV cache type %u: only f32 and f16 are supported",
                        (unsigned)kv_type);
    fw->model = m;
    fw->pv = pv;
    fw->pool = pool;
    const slm_hparams *hp = &m->hp;
    if (n_batch > n_ctx) n_batch = n_ctx;
    slm_forward_buf *b = &fw->buf;
    b->n_batch = n_batch;
    fw->kv.n_ctx = n_ctx;
    fw->kv.type = kv_type;
    const size_t kv_esz = kv_type == SLM_TYPE_F16 ? sizeof(uint16_t) : sizeof(float);
    size_t B = (size_t)n_batch, threads = (size_t)slm_pool_threads(pool);
    /* whole key tiles: positions rounded up to SLM_KV_TILE */
    fw->kv.n_pos_alloc = (n_ctx + SLM_KV_TILE - 1) / SLM_KV_TILE * SLM_KV_TILE;
    size_t kv_elems = (size_t)hp->n_layers * (size_t)fw->kv.n_pos_alloc * (size_t)hp->kv_dim;

    /* The cache is only read where it was written: pages from the OS,
     * touched as positions fill, so memory grows with the context used. */
    if (kv_elems > SIZE_MAX / 2 / kv_esz) {
        st = slm_fail(SLM_ERR_NOMEM, "KV cache of %zu elements is too large", 2 * kv_elems);
        goto cleanup;
    }
    fw->kv.bytes = kv_elems * kv_esz;
    fw->kv.layer_bytes = (size_t)fw->kv.n_pos_alloc * (size_t)hp->kv_dim * kv_esz;
    fw->kv.k = slm_pages_alloc(fw->kv.bytes);
    fw->kv.v = slm_pages_alloc(fw->kv.bytes);
    if (!fw->kv.k || !fw->kv.v) {
        st = slm_fail(SLM_ERR_NOMEM, "cannot allocate the KV cache (%zu bytes)", 2 * fw->kv.bytes);
        goto cleanup;
    }
    SLM_CHECK(alloc_floats(&b->x, B * (size_t)hp->dim, "activations"));
    SLM_CHECK(alloc_floats(&b->xb, B * (size_t)hp->dim, "activations"));
    SLM_CHECK(alloc_floats(&b->xb2, B * (size_t)hp->dim, "activations"));
    SLM_CHECK(alloc_floats(&b->q, B * (size_t)hp->dim, "queries"));
    SLM_CHECK(alloc_floats(&b->k, B * (size_t)hp->kv_dim, "keys"));
    SLM_CHECK(alloc_floats(&b->v, B * (size_t)hp->kv_dim, "values"));
    SLM_CHECK(alloc_floats(&b->hb, B * (size_t)hp->ffn_dim, "FFN activations"));
    SLM_CHECK(alloc_floats(&b->hb2, B * (size_t)hp->ffn_dim, "FFN activations"));
    /* a group of heads' scores per thread (attend takes a K/V head's at once) */
    SLM_CHECK(alloc_floats(&b->att,
                           threads * (size_t)(hp->n_heads / hp->n_kv_heads) * (size_t)n_ctx,
                           "attention scores"));
    SLM_CHECK(alloc_floats(&b->rope, (size_t)n_ctx * (size_t)hp->rope_dim, "RoPE tables"));
    int64_t widest = hp->ffn_dim > hp->dim ? hp->ffn_dim : hp->dim;
    b->scratch_per_thread = slm_matmul_scratch_floats(widest);
    SLM_CHECK(alloc_floats(&b->scratch, threads * b->scratch_per_thread, "matmul scratch"));

    /* cos/sin of pos * base^(-2i/rope_dim), computed once in double */
    for (int32_t p = 0; p < n_ctx; p++) {
        for (int32_t i = 0; i < hp->rope_dim / 2; i++) {
            double freq = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
            double a = (double)p * freq;
            b->rope[(size_t)p * (size_t)hp->rope_dim + 2 * (size_t)i] = (float)cos(a);
            b->rope[(size_t)p * (size_t)hp->rope_dim + 2 * (size_t)i + 1] = (float)sin(a);
        }
    }
    return SLM_OK;
cleanup:
    slm_forward_free(fw);
    return st;
}

void slm_forward_free(slm_forward *fw) {
    if (!fw) return;
    slm_lora_set_free(fw->lora);
    slm_pages_free(fw->kv.k, fw->kv.bytes);
    slm_pages_free(fw->kv.v, fw->kv.bytes);
    slm_forward_buf *b = &fw->buf;
    free(b->x);
    free(b->xb);
    free(b->xb2);
    free(b->q);
    free(b->k);
    free(b->v);
    free(b->hb);
    free(b->hb2);
    free(b->att);
    free(b->rope);
    free(b->scratch);
    memset(fw, 0, sizeof *fw);
}
