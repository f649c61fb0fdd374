/* Baking a LoRA adapter into a model file: W' = W + s·B·A for each target,
 * dequantized, summed in f32 and re-quantized; everything else copied. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "base/status.h"
#include "format/gguf.h"
#include "model/lora.h"
#include "model/model.h"
#include "quant/types.h"

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, b)) return 1;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The merged rows of one matrix, stored as `type` into a malloc'd buffer. */
static slm_status merge_matrix(const slm_matrix *W, const slm_lora_mat *e, float s, uint32_t type,
                               uint8_t **out, uint64_t *out_bytes) {
    uint64_t rb = 0;
    SLM_TRY(slm_row_bytes(type, (uint64_t)W->n_cols, &rb));
    uint64_t total = 0;
    if (!slm_mul_ok(rb, (uint64_t)W->n_rows, &total) || total > SIZE_MAX)
        return slm_fail(SLM_ERR_NOMEM, "'%s': too large", W->name ? W->name : "?");
    uint8_t *dst = slm_alloc_aligned((size_t)total, 1);
    float *row = slm_alloc_aligned((size_t)W->n_cols, sizeof(float));
    double *acc = slm_alloc_aligned((size_t)W->n_cols, sizeof(double));
    if (!dst || !row || !acc) {
        free(dst);
        free(row);
        free(acc);
        return slm_fail(SLM_ERR_NOMEM, "out of memory merging '%s'", W->name ? W->name : "?");
    }
    for (int64_t i = 0; i < W->n_rows; i++) {
        slm_dequantize_row(W->type, W->data + (size_t)i * W->row_bytes, row, W->n_cols);
        memset(acc, 0, (size_t)W->n_cols * sizeof *acc);
        for (int32_t j = 0; j < e->r; j++) { /* acc = sum_j B[i][j] A[j] */
            double bij = e->b[(size_t)i * (size_t)e->r + (size_t)j];
            const float *aj = e->a + (size_t)j * (size_t)e->n_in;
            for (int64_t c = 0; c < W->n_cols; c++) acc[c] += bij * aj[c];
        }
        for (int64_t c = 0; c < W->n_cols; c++) row[c] = (float)((double)row[c] + s * acc[c]);
        uint8_t *d = dst + (size_t)i * (size_t)rb;
        if (type == SLM_TYPE_F32)
            memcpy(d, row, (size_t)W->n_cols * sizeof(float));
        else
            slm_quantize_row_ref(type, row, d, W->n_cols, NULL);
    }
    free(row);
    free(acc);
    *out = dst;
    *out_bytes = total;
    return SLM_OK;
}

slm_status slm_adapter_merge_file(const char *base, const char *adapter, const char *out,
                                  float scale, const char *type) {
    return slm_adapter_merge_file_ex(base, adapter, out, scale, type, NULL);
}

slm_status slm_adapter_merge_file_ex(const char *base, const char *adapter, const char *out,
                                     float scale, const char *type, const char *trust_dir) {
    if (!base || !adapter || !out || !*out)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_adapter_merge_file: NULL argument");
    if (same_file(base, out) || same_file(adapter, out))
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: the output must differ from the inputs", out);
    if (!isfinite(scale) || scale > 1e6f || scale < -1e6f)
        return slm_fail(SLM_ERR_INVALID_ARG, "merge scale %g out of range [-1e6, 1e6]",
                        (double)scale);
    int want = -1;
    if (type && *type) {
        want = slm_type_from_name(type);
        const slm_type_info *ti = want >= 0 ? slm_type_get((uint32_t)want) : NULL;
        if (!ti || !ti->can_quantize || !slm_kernels_support((uint32_t)want))
            return slm_fail(SLM_ERR_UNSUPPORTED, "type '%s' cannot be written", type);
    }
    slm_status st = SLM_OK;
    slm_model *m = NULL;
    slm_adapter *ad = NULL;
    gguf_writer *w = NULL;
    /* with trust_dir, both are verified before anything is merged: the model
     * and adapter bytes parsed are the bytes whose signatures were checked */
    SLM_CHECK(slm_model_open_ex(base, 0, NULL, trust_dir, SLM_FILE_MAP, &m));
    SLM_CHECK(slm_lora_load(m, adapter, trust_dir, &ad));
    SLM_CHECK(gguf_writer_new(&w));
    SLM_CHECK(gguf_writer_copy_kv(w, m->gguf, NULL, NULL));
    for (uint64_t i = 0; i < gguf_n_tensors(m->gguf); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->gguf, i);
        const char *name = m->tensor_names[i];
        int32_t layer = 0;
        int slot = slm_lora_parse_target(name, m->hp.n_layers, &layer);
        const slm_lora_mat *e =
            slot < 0 ? NULL : &ad->mats[(size_t)layer * SLM_LORA_N_SLOTS + (size_t)slot];
        if (!e || e->r == 0) {
            SLM_CHECK(
                gguf_writer_add_tensor_ref(w, name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
            continue;
        }
        const slm_matrix *W = NULL;
        const slm_layer *L = &m->layers[layer];
        const slm_matrix *by_slot[SLM_LORA_N_SLOTS] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                                       &L->w_gate, &L->w_up, &L->w_down};
        W = by_slot[slot];
        uint32_t ty = want >= 0 ? (uint32_t)want : W->type;
        const slm_type_info *ti = slm_type_get(ty);
        if (!ti || !ti->can_quantize || W->n_cols % ti->block_size != 0) {
            st = slm_fail(SLM_ERR_UNSUPPORTED, "%s: '%s' (%lld columns) cannot be written as %s",
                          base, name, (long long)W->n_cols, slm_type_name(ty));
            goto cleanup;
        }
        float s = scale * e->mult;
        uint8_t *data = NULL;
        uint64_t nbytes = 0;
        SLM_CHECK(merge_matrix(W, e, s, ty, &data, &nbytes));
        st = gguf_writer_add_tensor(w, name, ty, t->n_dims, t->ne, data, nbytes);
        free(data);
        if (st != SLM_OK) goto cleanup;
    }
    SLM_CHECK(gguf_writer_write(w, out));
cleanup:
    gguf_writer_free(w);
    slm_adapter_free(ad);
    slm_model_close(m);
    return st;
}
