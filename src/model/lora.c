/* LoRA adapters in llama.cpp's GGUF format: loading, checking against the
 * base model, binding to a forward pass and the low-rank product itself. */
#include "model/lora.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "format/gguf.h"
#include "quant/types.h"
#include "trust/trust.h"

/* GGUF tensor-name stems of the slots, in slm_lora_slot order. */
static const char *const k_slot_names[SLM_LORA_N_SLOTS] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down",
};
static const size_t k_slot_offsets[SLM_LORA_N_SLOTS] = {
    offsetof(slm_layer, wq),     offsetof(slm_layer, wk),     offsetof(slm_layer, wv),
    offsetof(slm_layer, wo),     offsetof(slm_layer, w_gate), offsetof(slm_layer, w_up),
    offsetof(slm_layer, w_down),
};

static const slm_matrix *layer_matrix(const slm_model *m, int32_t l, int slot) {
    return (const slm_matrix *)((const char *)&m->layers[l] + k_slot_offsets[slot]);
}

const slm_matrix *slm_lora_base_matrix(const slm_model *m, int32_t layer, int slot) {
    return layer_matrix(m, layer, slot);
}

const char *slm_lora_slot_name(int slot) {
    return slot >= 0 && slot < SLM_LORA_N_SLOTS ? k_slot_names[slot] : "?";
}

int slm_lora_slot_of(const slm_model *m, const slm_matrix *W, int32_t *layer) {
    uintptr_t base = (uintptr_t)m->layers, p = (uintptr_t)W;
    uintptr_t end = base + (uintptr_t)m->hp.n_layers * sizeof(slm_layer);
    if (!m->layers || p < base || p >= end) return -1;
    size_t off = (size_t)(p - base);
    size_t field = off % sizeof(slm_layer);
    for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
        if (field == k_slot_offsets[s]) {
            *layer = (int32_t)(off / sizeof(slm_layer));
            return s;
        }
    }
    return -1;
}

int slm_lora_parse_target(const char *name, int32_t n_layers, int32_t *layer) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    const char *p = name + 4;
    char *end = NULL;
    long l = strtol(p, &end, 10);
    if (end == p || *end != '.' || l < 0 || l >= n_layers) return -1;
    for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
        size_t n = strlen(k_slot_names[s]);
        if (!strncmp(end + 1, k_slot_names[s], n) && !strcmp(end + 1 + n, ".weight")) {
            *layer = (int32_t)l;
            return s;
        }
    }
    return -1;
}

static int ends_with(const gguf_str *s, const char *suffix, size_t *stem_len) {
    size_t n = strlen(suffix);
    if (s->len < n || memcmp(s->ptr + s->len - n, suffix, n) != 0) return 0;
    *stem_len = (size_t)s->len - n;
    return 1;
}

static slm_status want_str(const gguf_file *f, const char *path, const char *key,
                           const char *want) {
    gguf_str v = {0};
    slm_status st = gguf_get_str_opt(f, key, &v);
    if (st != SLM_OK) return slm_fail_prefix(st, "%s: not a LoRA adapter", path);
    if (!v.ptr)
        return slm_fail(SLM_ERR_FORMAT, "%s: not a LoRA adapter: key '%s' is missing", path, key);
    if (!gguf_str_eq(v, want))
        return slm_fail(SLM_ERR_FORMAT, "%s: not a LoRA adapter: %s is \"%.*s\", expected \"%s\"",
                        path, key, (int)(v.len < 64 ? v.len : 64), v.ptr, want);
    return SLM_OK;
}

/* Checks one A/B pair against its base matrix and records it. */
static slm_status check_pair(const slm_model *base, const char *path, const char *target,
                             const gguf_tensor *a, const gguf_tensor *b, slm_adapter *ad,
                             size_t *n_floats) {
    if (!a || !b)
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s.%s' has no partner '%s.%s'", path, target,
                        a ? "lora_a" : "lora_b", target, a ? "lora_b" : "lora_a");
    if (!gguf_find_tensor(base->gguf, target))
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tensor '%s.lora_a' targets '%s', which the base model %s lacks", path,
                        target, target, base->path);
    int32_t layer = 0;
    int slot = slm_lora_parse_target(target, base->hp.n_layers, &layer);
    if (slot < 0)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: target '%s' is not supported (only the attention and FFN "
                        "projections attn_q/k/v/output, ffn_gate/up/down of each layer)",
                        path, target);
    const gguf_tensor *ts[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        uint32_t ty = ts[i]->type;
        if (ty != SLM_TYPE_F32 && ty != SLM_TYPE_F16 && ty != SLM_TYPE_BF16)
            return slm_fail(SLM_ERR_UNSUPPORTED,
                            "%s: tensor '%s.%s' has type %s; adapters must be f32, f16 or bf16",
                            path, target, i ? "lora_b" : "lora_a", slm_type_name(ty));
        if (ts[i]->n_dims != 2 || ts[i]->ne[2] != 1 || ts[i]->ne[3] != 1)
            return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s.%s' must be 2-D", path, target,
                            i ? "lora_b" : "lora_a");
    }
    const slm_matrix *W = layer_matrix(base, layer, slot);
    uint64_t r = a->ne[1];
    if ((int64_t)a->ne[0] != W->n_cols || (int64_t)b->ne[1] != W->n_rows || b->ne[0] != r ||
        r == 0 || r > SLM_LORA_MAX_RANK)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: '%s': lora_a has shape [%llu, %llu] and lora_b [%llu, %llu]; the base "
                        "matrix needs lora_a [%lld, r] and lora_b [r, %lld] with the same rank r "
                        "(1..%d)",
                        path, target, (unsigned long long)a->ne[0], (unsigned long long)a->ne[1],
                        (unsigned long long)b->ne[0], (unsigned long long)b->ne[1],
                        (long long)W->n_cols, (long long)W->n_rows, SLM_LORA_MAX_RANK);
    slm_lora_mat *e = &ad->mats[(size_t)layer * SLM_LORA_N_SLOTS + (size_t)slot];
    if (e->r != 0) return slm_fail(SLM_ERR_FORMAT, "%s: target '%s' appears twice", path, target);
    e->r = (int32_t)r;
    e->mult = ad->alpha / (float)r;
    e->n_in = W->n_cols;
    e->n_out = W->n_rows;
    *n_floats += (size_t)r * (size_t)(W->n_cols + W->n_rows);
    if (e->r > ad->max_r) ad->max_r = e->r;
    ad->n_targets++;
    return SLM_OK;
}

/* Finds the tensor "<stem>.<suffix>" (stem of stem_len bytes). */
static const gguf_tensor *find_suffixed(const gguf_file *f, const char *stem, const char *suffix) {
    char name[GGUF_MAX_NAME + 16];
    snprintf(name, sizeof name, "%s.%s", stem, suffix);
    return gguf_find_tensor(f, name);
}

static slm_status load_from(const slm_model *base, const char *path, const gguf_file *f,
                            slm_adapter *ad) {
    SLM_TRY(want_str(f, path, "general.type", "adapter"));
    SLM_TRY(want_str(f, path, "adapter.type", "lora"));
    gguf_str arch = {0};
    SLM_TRY(gguf_get_str_opt(f, "general.architecture", &arch));
    if (arch.ptr && !gguf_str_eq(arch, base->arch_name))
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: adapter for architecture \"%.*s\", base model is \"%s\"", path,
                        (int)(arch.len < 32 ? arch.len : 32), arch.ptr, base->arch_name);
    slm_status st = gguf_get_f32(f, "adapter.lora.alpha", &ad->alpha);
    if (st != SLM_OK) return slm_fail_prefix(st, "%s", path);
    if (!isfinite(ad->alpha) || ad->alpha <= 0.0f)
        return slm_fail(SLM_ERR_FORMAT, "%s: adapter.lora.alpha %g must be a positive number", path,
                        (double)ad->alpha);

    ad->n_layers = base->hp.n_layers;
    ad->mats = slm_calloc((size_t)ad->n_layers * SLM_LORA_N_SLOTS, sizeof *ad->mats);
    if (!ad->mats) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);

    /* Pass 1: every tensor is half of a pair whose target is checked. */
    size_t n_floats = 0;
    char stem[GGUF_MAX_NAME + 1];
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        size_t sl = 0;
        int is_a = ends_with(&t->name, ".lora_a", &sl);
        if (!is_a && !ends_with(&t->name, ".lora_b", &sl))
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: tensor '%.*s' is not a LoRA tensor (names end in .lora_a or "
                            ".lora_b)",
                            path, (int)(t->name.len < 256 ? t->name.len : 256), t->name.ptr);
        if (sl > GGUF_MAX_NAME) sl = GGUF_MAX_NAME;
        memcpy(stem, t->name.ptr, sl);
        stem[sl] = '\0';
        if (!is_a && find_suffixed(f, stem, "lora_a")) continue; /* checked with its A */
        const gguf_tensor *a = is_a ? t : NULL;
        const gguf_tensor *b = is_a ? find_suffixed(f, stem, "lora_b") : t;
        SLM_TRY(check_pair(base, path, stem, a, b, ad, &n_floats));
    }
    if (ad->n_targets == 0)
        return slm_fail(SLM_ERR_FORMAT, "%s: the adapter has no lora_a/lora_b tensors", path);

    /* Pass 2: A and B to f32 in one store. */
    ad->store = slm_alloc_aligned(n_floats, sizeof(float));
    if (!ad->store)
        return slm_fail(SLM_ERR_NOMEM, "%s: cannot allocate %zu floats for the adapter", path,
                        n_floats);
    float *cur = ad->store;
    for (int32_t l = 0; l < ad->n_layers; l++) {
        for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
            slm_lora_mat *e = &ad->mats[(size_t)l * SLM_LORA_N_SLOTS + (size_t)s];
            if (e->r == 0) continue;
            snprintf(stem, sizeof stem, "blk.%d.%s.weight", (int)l, k_slot_names[s]);
            const gguf_tensor *a = find_suffixed(f, stem, "lora_a");
            const gguf_tensor *b = find_suffixed(f, stem, "lora_b");
            size_t na = (size_t)e->r * (size_t)e->n_in, nb = (size_t)e->r * (size_t)e->n_out;
            slm_dequantize_row(a->type, a->data, cur, (int64_t)na);
            e->a = cur;
            cur += na;
            slm_dequantize_row(b->type, b->data, cur, (int64_t)nb);
            e->b = cur;
            cur += nb;
        }
    }
    return SLM_OK;
}

slm_status slm_lora_load(const slm_model *base, const char *path, const char *trust_dir,
                         slm_adapter **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_adapter_load: out is NULL");
    *out = NULL;
    if (!base || !path || !*path)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_adapter_load: no base model or path");
    if (base->inspect_only || !base->layers)
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: the base model was opened for inspection only",
                        base->path);
    slm_status st = SLM_OK;
    slm_mapped_file map = {0};
    map.fd = -1;
    gguf_file *f = NULL;
    slm_adapter *ad = slm_calloc(1, sizeof *ad);
    if (!ad) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    ad->path = slm_strndup(path, strlen(path));
    if (!ad->path) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    if (slm_lora_is_peft_path(path)) {
        slm_adapter_free(ad);
        return slm_lora_load_peft(base, path, trust_dir, out);
    }
    if (trust_dir) {
        SLM_CHECK(slm_map_file(path, &map));
        SLM_CHECK(slm_trust_verify_bytes(path, map.data, map.size, NULL, trust_dir, NULL));
        SLM_CHECK(gguf_open_memory(map.data, map.size, path, &f));
    } else {
        SLM_CHECK(gguf_open(path, &f));
    }
    SLM_CHECK(load_from(base, path, f, ad));
    gguf_close(f);
    slm_unmap_file(&map);
    slm_log(SLM_LOG_INFO, "%s: LoRA adapter, %d matrices, rank up to %d, alpha %g", path,
            ad->n_targets, ad->max_r, (double)ad->alpha);
    *out = ad;
    return SLM_OK;
cleanup:
    gguf_close(f);
    slm_unmap_file(&map);
    slm_adapter_free(ad);
    return st;
}

slm_status slm_adapter_load(const slm_model *base, const char *path, slm_adapter **out) {
    return slm_lora_load(base, path, NULL, out);
}

void slm_adapter_free(slm_adapter *a) {
    if (!a) return;
    free(a->mats);
    free(a->store);
    free(a->path);
    free(a);
}

/* ---- binding to a forward pass ------------------------------------------- */

static slm_status fits(const slm_model *m, const slm_adapter *ad) {
    if (ad->n_layers != m->hp.n_layers)
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: adapter made for %d layers, model %s has %d",
                        ad->path, ad->n_layers, m->path, m->hp.n_layers);
    for (int32_t l = 0; l < ad->n_layers; l++)
        for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
            const slm_lora_mat *e = &ad->mats[(size_t)l * SLM_LORA_N_SLOTS + (size_t)s];
            const slm_matrix *W = layer_matrix(m, l, s);
            if (e->r && (e->n_in != W->n_cols || e->n_out != W->n_rows))
                return slm_fail(SLM_ERR_INVALID_ARG,
                                "%s: adapter for blk.%d.%s is [%lld -> %lld]; model %s has "
                                "[%lld -> %lld]",
                                ad->path, (int)l, k_slot_names[s], (long long)e->n_in,
                                (long long)e->n_out, m->path, (long long)W->n_cols,
                                (long long)W->n_rows);
        }
    return SLM_OK;
}

static slm_status ensure_set(slm_forward *fw) {
    if (fw->lora) return SLM_OK;
    fw->lora = slm_calloc(1, sizeof *fw->lora);
    if (!fw->lora) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    return SLM_OK;
}

slm_status slm_lora_bind(slm_forward *fw, const slm_adapter *const *adapters, const float *scales,
                         size_t n) {
    if (!fw || (n && (!adapters || !scales)))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_set_adapters: NULL argument");
    if (n > SLM_LORA_MAX_ADAPTERS)
        return slm_fail(SLM_ERR_INVALID_ARG, "%zu adapters; at most %d can be active at once", n,
                        SLM_LORA_MAX_ADAPTERS);
    int32_t max_r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!adapters[i])
            return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_set_adapters: adapter %zu is NULL",
                            i);
        if (!isfinite(scales[i]))
            return slm_fail(SLM_ERR_INVALID_ARG, "%s: scale %g is not a finite number",
                            adapters[i]->path, (double)scales[i]);
        SLM_TRY(fits(fw->model, adapters[i]));
        if (adapters[i]->max_r > max_r) max_r = adapters[i]->max_r;
    }
    if (n == 0 && !fw->lora) return SLM_OK;
    SLM_TRY(ensure_set(fw));
    slm_lora_set *set = fw->lora;
    size_t need = (size_t)fw->buf.n_batch * (size_t)max_r;
    if (need > set->tmp_floats) {
        float *tmp = slm_alloc_aligned(need, sizeof(float));
        if (!tmp) return slm_fail(SLM_ERR_NOMEM, "cannot allocate the LoRA scratch");
        free(set->tmp);
        set->tmp = tmp;
        set->tmp_floats = need;
    }
    set->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (scales[i] == 0.0f) continue; /* scale 0: exactly the base model */
        set->ad[set->n] = adapters[i];
        set->scale[set->n] = scales[i];
        set->n++;
    }
    return SLM_OK;
}

slm_status slm_lora_take(slm_forward *fw, slm_adapter *a) {
    SLM_TRY(ensure_set(fw));
    if (fw->lora->n_owned >= SLM_LORA_MAX_ADAPTERS)
        return slm_fail(SLM_ERR_INVALID_ARG, "more than %d adapters", SLM_LORA_MAX_ADAPTERS);
    fw->lora->owned[fw->lora->n_owned++] = a;
    return SLM_OK;
}

void slm_lora_set_free(slm_lora_set *set) {
    if (!set) return;
    for (int32_t i = 0; i < set->n_owned; i++) slm_adapter_free(set->owned[i]);
    free(set->tmp);
    free(set);
}

/* ---- the low-rank product ------------------------------------------------ */

/* Below this many multiply-adds the product runs on the calling thread. */
#define LORA_PARALLEL_MIN (1 << 16)

typedef struct lora_job {
    const slm_lora_mat *e;
    const slm_provider *pv;
    const float *X;
    float *Y, *ax;
    int64_t x_stride, y_stride;
    int32_t n;
    float s;
} lora_job;

/* ax[t][j] = A_j · X[t] for items i = t*r + j */
static void lora_down(void *ctx, int64_t i0, int64_t i1, int thread) {
    const lora_job *j = ctx;
    (void)thread;
    const int64_t r = j->e->r;
    for (int64_t i = i0; i < i1; i++) {
        const float *x = j->X + (size_t)(i / r) * (size_t)j->x_stride;
        j->ax[i] = j->pv->dot_f32(j->e->a + (size_t)(i % r) * (size_t)j->e->n_in, x, j->e->n_in);
    }
}

/* Y[t][i] += s · B_i · ax[t] for output rows i */
static void lora_up(void *ctx, int64_t i0, int64_t i1, int thread) {
    const lora_job *j = ctx;
    (void)thread;
    const int32_t r = j->e->r;
    for (int64_t i = i0; i < i1; i++) {
        const float *b = j->e->b + (size_t)i * (size_t)r;
        for (int32_t t = 0; t < j->n; t++)
            j->Y[(size_t)t * (size_t)j->y_stride + (size_t)i] +=
                j->s * j->pv->dot_f32(b, j->ax + (size_t)t * (size_t)r, r);
    }
}

/* Each output is computed whole by one thread in a fixed order, so the
 * result does not depend on the thread count. */
void slm_lora_apply(slm_forward *fw, const slm_matrix *W, const float *X, int32_t n,
                    int64_t x_stride, float *Y, int64_t y_stride) {
    const slm_lora_set *set = fw->lora;
    int32_t layer = 0;
    if (set->n == 0) return;
    int slot = slm_lora_slot_of(fw->model, W, &layer);
    if (slot < 0) return;
    for (int32_t k = 0; k < set->n; k++) {
        const slm_adapter *ad = set->ad[k];
        const slm_lora_mat *e = &ad->mats[(size_t)layer * SLM_LORA_N_SLOTS + (size_t)slot];
        if (e->r == 0) continue;
        lora_job job = {e, fw->pv, X, Y, set->tmp, x_stride, y_stride, n, set->scale[k] * e->mult};
        int64_t work = (int64_t)n * e->r * (e->n_in + e->n_out);
        if (work < LORA_PARALLEL_MIN) {
            lora_down(&job, 0, (int64_t)n * e->r, 0);
            lora_up(&job, 0, e->n_out, 0);
        } else {
            slm_pool_run(fw->pool, (int64_t)n * e->r, 1, lora_down, &job);
            slm_pool_run(fw->pool, e->n_out, 1, lora_up, &job);
        }
    }
}
