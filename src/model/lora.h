/* LoRA adapters (llama.cpp's GGUF adapter format), applied at run time
 * beside the base weights: y = W·x + s·B·(A·x), s = scale·alpha/r.
 *
 * An adapter is read-only once loaded (its A and B are converted to f32 and
 * the file is closed), so one adapter may serve many sessions. A session's
 * forward pass holds an slm_lora_set: the adapters in use, their scales and
 * the scratch for A·x, all set up before decoding so that the decode loop
 * allocates nothing and looks targets up by layer and slot, not by name. */
#ifndef SLM_MODEL_LORA_H
#define SLM_MODEL_LORA_H

#include <stdint.h>

#include "model/model.h"
#include "slm.h"

#define SLM_LORA_MAX_ADAPTERS 8 /* adapters active at once on a session */
#define SLM_LORA_MAX_RANK 4096  /* larger ranks are treated as malformed */

/* The matrices of a layer an adapter may target, in slm_layer order. */
typedef enum slm_lora_slot {
    SLM_LORA_Q = 0,
    SLM_LORA_K,
    SLM_LORA_V,
    SLM_LORA_O,
    SLM_LORA_GATE,
    SLM_LORA_UP,
    SLM_LORA_DOWN,
    SLM_LORA_N_SLOTS
} slm_lora_slot;

/* One targeted matrix: W (n_out x n_in) gains B·A. r == 0: not targeted. */
typedef struct slm_lora_mat {
    int32_t r;
    int64_t n_in, n_out;
    const float *a; /* [r][n_in]  (GGUF lora_a, ne = [n_in, r]) */
    const float *b; /* [n_out][r] (GGUF lora_b, ne = [r, n_out]) */
    float mult;     /* alpha/r (alpha/sqrt(r) for rsLoRA): the product's factor at scale 1 */
} slm_lora_mat;

struct slm_adapter {
    char *path;
    float alpha;
    int32_t n_layers;
    int32_t max_r;
    int32_t n_targets;
    slm_lora_mat *mats; /* [n_layers][SLM_LORA_N_SLOTS] */
    float *store;       /* every A and B, f32, owned */
};

/* The adapters a forward pass applies (owned by the session's slm_forward). */
typedef struct slm_lora_set {
    int32_t n;
    const slm_adapter *ad[SLM_LORA_MAX_ADAPTERS];
    float scale[SLM_LORA_MAX_ADAPTERS];        /* the user's scale (never 0: those are dropped) */
    slm_adapter *owned[SLM_LORA_MAX_ADAPTERS]; /* loaded from the config: freed with the set */
    int32_t n_owned;
    float *tmp; /* [n_batch][tmp_r] A·x scratch */
    size_t tmp_floats;
} slm_lora_set;

/* Loads an adapter and checks it against `base`: every target must be a
 * layer matrix of the base model with matching shapes. trust_dir non-NULL
 * requires path.sig to be a valid signature by a key in trust_dir of the
 * exact bytes read. */
slm_status slm_lora_load(const slm_model *base, const char *path, const char *trust_dir,
                         slm_adapter **out);

/* Makes `fw` apply adapters[0..n) with their scales (scale 0 = not applied),
 * replacing what it applied before; allocates the set and scratch on first
 * use or growth. Adapters must fit fw's model. On failure nothing changes. */
slm_status slm_lora_bind(slm_forward *fw, const slm_adapter *const *adapters, const float *scales,
                         size_t n);
/* Hands `a` to fw's set to be freed with it (a must already be bound or
 * about to be). */
slm_status slm_lora_take(slm_forward *fw, slm_adapter *a);
void slm_lora_set_free(slm_lora_set *set);

/* Y[t] += s·B·(A·X[t]) for every active adapter that targets W (a matrix of
 * fw's model). Called by the forward pass after each W·X. */
void slm_lora_apply(slm_forward *fw, const slm_matrix *W, const float *X, int32_t n,
                    int64_t x_stride, float *Y, int64_t y_stride);

/* Hugging Face PEFT adapters (lora_peft.c): `path` is a directory holding
 * adapter_config.json and adapter_model.safetensors, or either of those two
 * files. trust_dir non-NULL requires valid signatures on both files. */
int slm_lora_is_peft_path(const char *path);
slm_status slm_lora_load_peft(const slm_model *base, const char *path, const char *trust_dir,
                              slm_adapter **out);

/* The base matrix of a layer and slot. */
const slm_matrix *slm_lora_base_matrix(const slm_model *m, int32_t layer, int slot);
/* GGUF tensor-name stem of a slot ("attn_q", ...). */
const char *slm_lora_slot_name(int slot);

/* "blk.<l>.<stem>.weight" -> layer and slot; -1 when it is no layer matrix. */
int slm_lora_parse_target(const char *name, int32_t n_layers, int32_t *layer);

/* Which layer matrix W is (by address in model->layers): slot, or -1. */
int slm_lora_slot_of(const slm_model *m, const slm_matrix *W, int32_t *layer);

#endif
