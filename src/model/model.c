/* Loading a llama-family model from GGUF: hyperparameters from metadata,
 * weights bound zero-copy from the mapping, every shape checked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/status.h"
#include "model/model.h"
#include "quant/types.h"
#include "runtime/quantize.h"
#include "trust/trust.h"

static slm_status key_u32(const slm_model *m, const char *suffix, uint32_t *out, int required) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    return required ? gguf_get_u32(m->gguf, key, out) : gguf_get_u32_opt(m->gguf, key, out);
}

static slm_status key_f32(const slm_model *m, const char *suffix, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    return gguf_get_f32_opt(m->gguf, key, out);
}

static slm_status read_hparams(slm_model *m) {
    slm_hparams *hp = &m->hp;
    const char *path = m->path;
    uint32_t dim = 0, n_layers = 0, n_heads = 0, n_kv = 0, ffn = 0, ctx = 0;
    SLM_TRY(key_u32(m, "embedding_length", &dim, 1));
    SLM_TRY(key_u32(m, "block_count", &n_layers, 1));
    SLM_TRY(key_u32(m, "attention.head_count", &n_heads, 1));
    n_kv = n_heads;
    SLM_TRY(key_u32(m, "attention.head_count_kv", &n_kv, 0));
    SLM_TRY(key_u32(m, "feed_forward_length", &ffn, 1));
    ctx = 2048;
    SLM_TRY(key_u32(m, "context_length", &ctx, 0));

    if (dim == 0 || dim > SLM_MAX_DIM)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s.embedding_length %u out of range (1..%d)", path,
                        m->arch_name, dim, SLM_MAX_DIM);
    if (n_layers == 0 || n_layers > SLM_MAX_LAYERS)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s.block_count %u out of range (1..%d)", path,
                        m->arch_name, n_layers, SLM_MAX_LAYERS);
    if (n_heads == 0 || n_heads > SLM_MAX_HEADS || dim % n_heads != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %s.attention.head_count %u must be 1..%d and divide the "
                        "embedding length %u",
                        path, m->arch_name, n_heads, SLM_MAX_HEADS, dim);
    if (n_kv == 0 || n_heads % n_kv != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %s.attention.head_count_kv %u must divide head_count %u", path,
                        m->arch_name, n_kv, n_heads);
    if (ffn == 0 || ffn > 16u * SLM_MAX_DIM)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s.feed_forward_length %u out of range", path,
                        m->arch_name, ffn);
    if (ctx == 0 || ctx > (1u << 24))
        return slm_fail(SLM_ERR_FORMAT, "%s: %s.context_length %u out of range", path, m->arch_name,
                        ctx);

    uint32_t head_dim = dim / n_heads;
    uint32_t key_len = head_dim;
    SLM_TRY(key_u32(m, "attention.key_length", &key_len, 0));
    if (key_len != head_dim)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: %s.attention.key_length %u differs from embedding/heads %u", path,
                        m->arch_name, key_len, head_dim);
    uint32_t rope_dim = head_dim;
    SLM_TRY(key_u32(m, "rope.dimension_count", &rope_dim, 0));
    if (rope_dim == 0 || rope_dim > head_dim || rope_dim % 2 != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %s.rope.dimension_count %u must be even and at most the head "
                        "size %u",
                        path, m->arch_name, rope_dim, head_dim);

    hp->dim = (int32_t)dim;
    hp->n_layers = (int32_t)n_layers;
    hp->n_heads = (int32_t)n_heads;
    hp->n_kv_heads = (int32_t)n_kv;
    hp->head_dim = (int32_t)head_dim;
    hp->kv_dim = (int32_t)(head_dim * n_kv);
    hp->ffn_dim = (int32_t)ffn;
    hp->n_ctx_train = (int32_t)ctx;
    hp->rope_dim = (int32_t)rope_dim;
    hp->rope_base = 10000.0f;
    SLM_TRY(key_f32(m, "rope.freq_base", &hp->rope_base));
    hp->norm_eps = 1e-5f;
    SLM_TRY(key_f32(m, "attention.layer_norm_rms_epsilon", &hp->norm_eps));
    if (!(hp->rope_base > 0.0f) || !(hp->norm_eps >= 0.0f && hp->norm_eps < 1.0f))
        return slm_fail(SLM_ERR_FORMAT, "%s: rope.freq_base %g or rms epsilon %g out of range",
                        path, (double)hp->rope_base, (double)hp->norm_eps);
    hp->rope_style = m->arch == SLM_ARCH_QWEN2 ? SLM_ROPE_HALVES : SLM_ROPE_ADJACENT;
    return SLM_OK;
}

/* Finds a tensor and checks its shape: ne0 = row length, ne1 = rows (0 for 1-D). */
static slm_status find_tensor(slm_model *m, const char *name, int64_t ne0, int64_t ne1,
                              int optional, const gguf_tensor **out) {
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *out = t;
    if (!t) {
        if (optional) return SLM_OK;
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s' is missing", m->path, name);
    }
    int ok = (int64_t)t->ne[0] == ne0 && t->ne[2] == 1 && t->ne[3] == 1 &&
             (ne1 == 0 ? t->ne[1] == 1 : (int64_t)t->ne[1] == ne1);
    if (!ok)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%lld, %lld]",
                        m->path, name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                        (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (long long)ne0,
                        (long long)(ne1 ? ne1 : 1));
    return SLM_OK;
}

/* The model's NUL-terminated copy of a tensor's name. */
static const char *model_tensor_name(const slm_model *m, const gguf_tensor *t) {
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++)
        if (gguf_tensor_at(m->gguf, i) == t) return m->tensor_names[i];
    return NULL;
}

static slm_status bind_matrix(slm_model *m, const char *name, int64_t n_cols, int64_t n_rows,
                              int optional, slm_matrix *out) {
    const gguf_tensor *t = NULL;
    SLM_TRY(find_tensor(m, name, n_cols, n_rows, optional, &t));
    if (!t) return SLM_OK;
    const slm_type_info *ti = slm_type_get(t->type);
    if (!ti || !ti->can_dequantize || !slm_kernels_support(t->type))
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which is not supported",
                        m->path, name, slm_type_name(t->type));
    uint64_t rb = 0;
    SLM_TRY(slm_row_bytes(t->type, (uint64_t)n_cols, &rb));
    out->type = t->type;
    out->n_cols = n_cols;
    out->n_rows = n_rows;
    out->row_bytes = (size_t)rb;
    out->data = t->data;
    out->name = model_tensor_name(m, t);
    return SLM_OK;
}

/* 1-D f32 vectors (norms, biases) are converted into the model's own store so
 * the forward pass reads plain aligned floats whatever the file held. */
static slm_status bind_vector(slm_model *m, const char *name, int64_t n, int optional,
                              float **cursor, const float **out) {
    const gguf_tensor *t = NULL;
    *out = NULL;
    SLM_TRY(find_tensor(m, name, n, 0, optional, &t));
    if (!t) return SLM_OK;
    const slm_type_info *ti = slm_type_get(t->type);
    if (!ti || !ti->can_dequantize || n % ti->block_size != 0)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which is not supported",
                        m->path, name, slm_type_name(t->type));
    slm_dequantize_row(t->type, t->data, *cursor, n);
    *out = *cursor;
    *cursor += n;
    return SLM_OK;
}

static slm_status bind_weights(slm_model *m) {
    const slm_hparams *hp = &m->hp;
    int64_t D = hp->dim, KV = hp->kv_dim, F = hp->ffn_dim, V = hp->n_vocab;
    char name[96];

    size_t per_layer = (size_t)(2 * D + D + 2 * KV);
    size_t n_store = (size_t)D + per_layer * (size_t)hp->n_layers;
    m->f32_store = slm_alloc_aligned(n_store, sizeof(float));
    m->layers = slm_calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->f32_store || !m->layers)
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory binding weights", m->path);
    float *cur = m->f32_store;

    SLM_TRY(bind_matrix(m, "token_embd.weight", D, V, 0, &m->tok_embd));
    SLM_TRY(bind_vector(m, "output_norm.weight", D, 0, &cur, &m->output_norm));
    SLM_TRY(bind_matrix(m, "output.weight", D, V, 1, &m->output));
    m->tied_output = m->output.data == NULL;
    if (m->tied_output) m->output = m->tok_embd;

    int biases = m->arch == SLM_ARCH_QWEN2;
    for (int32_t l = 0; l < hp->n_layers; l++) {
        slm_layer *L = &m->layers[l];
#define NAME(s) (snprintf(name, sizeof name, "blk.%d." s, (int)l), name)
        SLM_TRY(bind_vector(m, NAME("attn_norm.weight"), D, 0, &cur, &L->attn_norm));
        SLM_TRY(bind_vector(m, NAME("ffn_norm.weight"), D, 0, &cur, &L->ffn_norm));
        SLM_TRY(bind_matrix(m, NAME("attn_q.weight"), D, D, 0, &L->wq));
        SLM_TRY(bind_matrix(m, NAME("attn_k.weight"), D, KV, 0, &L->wk));
        SLM_TRY(bind_matrix(m, NAME("attn_v.weight"), D, KV, 0, &L->wv));
        SLM_TRY(bind_matrix(m, NAME("attn_output.weight"), D, D, 0, &L->wo));
        SLM_TRY(bind_vector(m, NAME("attn_q.bias"), D, !biases, &cur, &L->bq));
        SLM_TRY(bind_vector(m, NAME("attn_k.bias"), KV, !biases, &cur, &L->bk));
        SLM_TRY(bind_vector(m, NAME("attn_v.bias"), KV, !biases, &cur, &L->bv));
        SLM_TRY(bind_matrix(m, NAME("ffn_gate.weight"), D, F, 0, &L->w_gate));
        SLM_TRY(bind_matrix(m, NAME("ffn_up.weight"), D, F, 0, &L->w_up));
        SLM_TRY(bind_matrix(m, NAME("ffn_down.weight"), F, D, 0, &L->w_down));
#undef NAME
    }
    return SLM_OK;
}

/* Parameter count, bytes of weights, and the most common matrix type. */
static void summarize_tensors(slm_model *m) {
    uint64_t count_by_type[SLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        uint64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        m->n_params += n;
        m->weight_bytes += t->nbytes;
        if (t->ne[1] > 1 && t->type < SLM_TYPE_COUNT) count_by_type[t->type] += n;
    }
    uint32_t best = SLM_TYPE_F32;
    for (uint32_t ty = 0; ty < SLM_TYPE_COUNT; ty++)
        if (count_by_type[ty] > count_by_type[best]) best = ty;
    m->weight_type = best;
}

static slm_status check_quant(slm_model *m, const char *quant) {
    if (!quant || !*quant) return SLM_OK;
    int ok;
    uint32_t have = m->weight_type;
    if (!strcmp(quant, "int8"))
        ok = have == SLM_TYPE_Q8_0;
    else if (!strcmp(quant, "int4"))
        ok = have == SLM_TYPE_Q4_0 || have == SLM_TYPE_Q4_1 || have == SLM_TYPE_Q4_K;
    else {
        int t = slm_type_from_name(quant);
        if (t < 0)
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'quant': unknown precision \"%s\" (expected int8, int4, "
                            "f32, f16, bf16 or a block type such as q8_0, q4_k)",
                            quant);
        ok = (uint32_t)t == have;
    }
    /* A different precision: quantize the F32/F16/BF16 matrices in memory
     * (src/runtime/quantize.c; refuses files that are already quantized). */
    if (!ok) return slm_model_quantize_loaded(m, quant);
    return SLM_OK;
}

/* The file's names are not NUL-terminated; keep C strings for the API. */
static slm_status copy_names(slm_model *m) {
    uint64_t nt = gguf_n_tensors(m->gguf), nk = gguf_n_kv(m->gguf);
    m->tensor_names = slm_calloc((size_t)nt, sizeof(char *));
    m->meta_keys = slm_calloc((size_t)nk, sizeof(char *));
    if (!m->tensor_names || !m->meta_keys) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; i < nt; i++) {
        gguf_str s = gguf_tensor_at(m->gguf, i)->name;
        if (!(m->tensor_names[i] = slm_strndup(s.ptr, (size_t)s.len)))
            return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < nk; i++) {
        gguf_str s = gguf_kv_at(m->gguf, i)->key;
        if (!(m->meta_keys[i] = slm_strndup(s.ptr, (size_t)s.len)))
            return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    return SLM_OK;
}

/* Holds the file in memory once (mapped or copied, `weights`), checks those
 * bytes against path.sig when trust_dir is given, and reads GGUF from the
 * same bytes: what was verified is what is used. */
static slm_status open_file(slm_model *m, const char *trust_dir, slm_file_mode weights) {
    double t0 = slm_now_ms();
    m->map.fd = -1;
    SLM_TRY(slm_load_file(m->path, weights, &m->map));
    if (slm_file_copied(&m->map))
        slm_log(SLM_LOG_INFO, "%s: %zu MiB copied into memory (2 MiB pages) in %.1f ms", m->path,
                m->map.size >> 20, slm_now_ms() - t0);
    if (trust_dir) {
        t0 = slm_now_ms();
        slm_sig sig;
        SLM_TRY(slm_trust_verify_bytes(m->path, m->map.data, m->map.size, NULL, trust_dir, &sig));
        m->verify_ms = slm_now_ms() - t0;
        char id[SLM_KEY_ID_HEX];
        slm_trust_hex(sig.key_id, sizeof sig.key_id, id);
        slm_log(SLM_LOG_INFO, "%s: signature by key %s verified in %.1f ms (%zu bytes)", m->path,
                id, m->verify_ms, m->map.size);
    }
    return gguf_open_memory(m->map.data, m->map.size, m->path, &m->gguf);
}

double slm_model_verify_ms(const slm_model *m) {
    return m ? m->verify_ms : 0.0;
}

slm_status slm_model_open(const char *path, int inspect_only, const char *quant, slm_model **out) {
    return slm_model_open_ex(path, inspect_only, quant, NULL, SLM_FILE_MAP, out);
}

slm_status slm_model_open_ex(const char *path, int inspect_only, const char *quant,
                             const char *trust_dir, slm_file_mode weights, slm_model **out) {
    slm_status st = SLM_OK;
    *out = NULL;
    if (!path || !*path) return slm_fail(SLM_ERR_INVALID_ARG, "no model path given");
    slm_model *m = slm_calloc(1, sizeof *m);
    if (!m) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    m->inspect_only = inspect_only;
    m->map.fd = -1;
    m->path = slm_strndup(path, strlen(path));
    if (!m->path) {
        free(m);
        return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    SLM_CHECK(open_file(m, trust_dir, inspect_only ? SLM_FILE_MAP : weights));
    SLM_CHECK(copy_names(m));
    summarize_tensors(m);

    gguf_str s = {0};
    SLM_CHECK(gguf_get_str_opt(m->gguf, "general.name", &s));
    snprintf(m->name, sizeof m->name, "%.*s", (int)(s.len < 127 ? s.len : 127), s.ptr ? s.ptr : "");
    s.ptr = NULL;
    s.len = 0;
    SLM_CHECK(gguf_get_str(m->gguf, "general.architecture", &s));
    snprintf(m->arch_name, sizeof m->arch_name, "%.*s", (int)(s.len < 31 ? s.len : 31), s.ptr);
    if (!strcmp(m->arch_name, "llama") || !strcmp(m->arch_name, "mistral"))
        m->arch = SLM_ARCH_LLAMA;
    else if (!strcmp(m->arch_name, "qwen2"))
        m->arch = SLM_ARCH_QWEN2;
    else if (!inspect_only) {
        st = slm_fail(SLM_ERR_UNSUPPORTED,
                      "%s: architecture '%s' is not supported (supported: llama, qwen2)", path,
                      m->arch_name);
        goto cleanup;
    }

    if (inspect_only) {
        /* Best effort: a file we cannot run can still be described. */
        if (m->arch != SLM_ARCH_UNKNOWN && read_hparams(m) != SLM_OK)
            memset(&m->hp, 0, sizeof m->hp);
        if (slm_tokenizer_from_gguf(m->gguf, &m->tok) != SLM_OK) m->tok = NULL;
        if (m->tok) m->hp.n_vocab = slm_tokenizer_n_vocab(m->tok);
        slm_clear_error();
        *out = m;
        return SLM_OK;
    }

    SLM_CHECK(read_hparams(m));
    SLM_CHECK(slm_tokenizer_from_gguf(m->gguf, &m->tok));
    m->hp.n_vocab = slm_tokenizer_n_vocab(m->tok);
    if (m->hp.n_vocab <= 0 || m->hp.n_vocab > SLM_MAX_VOCAB) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: vocabulary size %d out of range", path, m->hp.n_vocab);
        goto cleanup;
    }
    {
        /* The embedding may have more rows than the tokenizer names (padding). */
        const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
        if (te && te->ne[1] > (uint64_t)m->hp.n_vocab && te->ne[1] <= SLM_MAX_VOCAB)
            m->hp.n_vocab = (int32_t)te->ne[1];
    }
    SLM_CHECK(bind_weights(m));
    SLM_CHECK(check_quant(m, quant));
    *out = m;
    return SLM_OK;
cleanup:
    slm_model_close(m);
    return st;
}

void slm_model_close(slm_model *m) {
    if (!m) return;
    slm_tokenizer_free(m->tok);
    if (m->gguf) {
        for (uint64_t i = 0; m->tensor_names && i < gguf_n_tensors(m->gguf); i++)
            free(m->tensor_names[i]);
        for (uint64_t i = 0; m->meta_keys && i < gguf_n_kv(m->gguf); i++) free(m->meta_keys[i]);
    }
    free(m->tensor_names);
    free(m->meta_keys);
    gguf_close(m->gguf);
    slm_unmap_file(&m->map); /* after gguf, which reads it */
    free(m->layers);
    free(m->f32_store);
    free(m->quant_store);
    free(m->path);
    free(m);
}
