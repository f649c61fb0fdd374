/* Model-level quantization (issue 4): a type per tensor from the target
 * (uniform type or llama.cpp mix), --keep overrides and KL budgets; fallback
 * for rows that do not fit a type's block; calibration statistics collected
 * through the forward pass's matmul observer; the output file; quantizing
 * the matrices of a loaded model in memory. See docs/QUANTIZATION.md. */
#include "runtime/quantize.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/status.h"
#include "format/gguf.h"
#include "quant/types.h"

/* ---- targets, fallback, mixes ------------------------------------------------ */

static const struct {
    const char *name;
    uint32_t type;
    slm_qmix mix;
    uint32_t ftype;
} TARGETS[] = {
    {"f32", SLM_TYPE_F32, SLM_QMIX_NONE, SLM_FTYPE_ALL_F32},
    {"f16", SLM_TYPE_F16, SLM_QMIX_NONE, SLM_FTYPE_F16},
    {"bf16", SLM_TYPE_BF16, SLM_QMIX_NONE, SLM_FTYPE_BF16},
    {"q8_0", SLM_TYPE_Q8_0, SLM_QMIX_NONE, SLM_FTYPE_Q8_0},
    {"q4_0", SLM_TYPE_Q4_0, SLM_QMIX_NONE, SLM_FTYPE_Q4_0},
    {"q4_1", SLM_TYPE_Q4_1, SLM_QMIX_NONE, SLM_FTYPE_Q4_1},
    {"q5_0", SLM_TYPE_Q5_0, SLM_QMIX_NONE, SLM_FTYPE_Q5_0},
    {"q5_1", SLM_TYPE_Q5_1, SLM_QMIX_NONE, SLM_FTYPE_Q5_1},
    {"q4_k", SLM_TYPE_Q4_K, SLM_QMIX_NONE, SLM_FTYPE_Q4_K_S},
    {"q5_k", SLM_TYPE_Q5_K, SLM_QMIX_NONE, SLM_FTYPE_Q5_K_S},
    {"q6_k", SLM_TYPE_Q6_K, SLM_QMIX_NONE, SLM_FTYPE_Q6_K},
    {"q4_k_m", SLM_TYPE_Q4_K, SLM_QMIX_Q4_K_M, SLM_FTYPE_Q4_K_M},
    {"q5_k_m", SLM_TYPE_Q5_K, SLM_QMIX_Q5_K_M, SLM_FTYPE_Q5_K_M},
};
#define N_TARGETS (sizeof TARGETS / sizeof TARGETS[0])

const char *slm_qtarget_names(void) {
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_m, q5_k_m";
}

slm_status slm_qtarget_parse(const char *name, slm_qtarget *out) {
    for (size_t i = 0; name && i < N_TARGETS; i++) {
        if (strcasecmp(name, TARGETS[i].name) == 0) {
            out->type = TARGETS[i].type;
            out->mix = TARGETS[i].mix;
            out->ftype = TARGETS[i].ftype;
            return SLM_OK;
        }
    }
    return slm_fail(SLM_ERR_INVALID_ARG, "unknown quantization type '%s' (expected one of: %s)",
                    name ? name : "", slm_qtarget_names());
}

/* A type a single tensor may be given (--keep): any target but the mixes. */
static int single_type(const char *name, uint32_t *out) {
    slm_qtarget t;
    if (slm_qtarget_parse(name, &t) != SLM_OK || t.mix != SLM_QMIX_NONE) return 0;
    *out = t.type;
    return 1;
}

int slm_qtype_fits(uint32_t type, int64_t n_cols) {
    const slm_type_info *ti = slm_type_get(type);
    return ti && n_cols > 0 && n_cols % ti->block_size == 0;
}

uint32_t slm_qtype_fallback(uint32_t type, int64_t n_cols) {
    if (slm_qtype_fits(type, n_cols)) return type;
    uint32_t next = SLM_TYPE_F16;
    switch (type) {
    case SLM_TYPE_Q4_K:
        next = SLM_TYPE_Q5_0;
        break;
    case SLM_TYPE_Q5_K:
        next = SLM_TYPE_Q5_1;
        break;
    case SLM_TYPE_Q6_K:
        next = SLM_TYPE_Q8_0;
        break;
    default:
        break;
    }
    return slm_qtype_fits(next, n_cols) ? next : SLM_TYPE_F16;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and
 * every third one in between. */
static int use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static int name_has(const char *name, const char *part) {
    return strstr(name, part) != NULL;
}

uint32_t slm_qtarget_tensor_type(const slm_qtarget *t, const char *name, int64_t n_cols,
                                 int n_layers, int has_output) {
    if (t->mix == SLM_QMIX_NONE) return t->type;
    /* llama.cpp's llama_tensor_get_type for Q4_K_M and Q5_K_M. */
    if (!strcmp(name, "output.weight") || (!has_output && !strcmp(name, "token_embd.weight"))) {
        const slm_type_info *ti = slm_type_get(t->type);
        return n_cols % ti->block_size != 0 ? SLM_TYPE_Q8_0 : SLM_TYPE_Q6_K;
    }
    int layer = -1;
    if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
    if (layer >= 0 && layer < n_layers &&
        (name_has(name, "attn_v.weight") || name_has(name, "ffn_down")) &&
        use_more_bits(layer, n_layers))
        return SLM_TYPE_Q6_K;
    return t->type;
}

/* ---- calibration statistics ----------------------------------------------------- */

void slm_qstats_free(slm_qstats *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->t[i].name);
        free(s->t[i].acc);
        free(s->t[i].mean);
        free(s->t[i].hess);
    }
    free(s->t);
    memset(s, 0, sizeof *s);
}

const slm_qstat *slm_qstats_find(const slm_qstats *s, const char *name) {
    if (!s || !name) return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

static slm_qstat *qstats_add(slm_qstats *s, const char *name, int64_t n_cols, int with_acc) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        slm_qstat *t = realloc(s->t, cap * sizeof *t);
        if (!t) return NULL;
        s->t = t;
        s->cap = cap;
    }
    slm_qstat *q = &s->t[s->n];
    memset(q, 0, sizeof *q);
    q->name = slm_strndup(name, strlen(name));
    q->n_cols = n_cols;
    q->amin = INFINITY;
    q->amax = -INFINITY;
    q->mean = slm_calloc((size_t)n_cols, sizeof(float));
    if (with_acc) q->acc = slm_calloc((size_t)n_cols, sizeof(double));
    if (!q->name || !q->mean || (with_acc && !q->acc)) {
        free(q->name);
        free(q->mean);
        free(q->acc);
        return NULL;
    }
    s->n++;
    return q;
}

typedef struct observe_ctx {
    slm_qstats *st;
    int failed;
} observe_ctx;

static void observe(void *user, const slm_matrix *W, const float *X, int32_t n, int64_t xs) {
    observe_ctx *c = user;
    slm_qstats *s = c->st;
    if (!W->name || c->failed) return;
    slm_qstat *q = NULL;
    if (s->last < s->n && !strcmp(s->t[s->last].name, W->name)) q = &s->t[s->last];
    for (size_t i = 0; !q && i < s->n; i++)
        if (!strcmp(s->t[i].name, W->name)) {
            q = &s->t[i];
            s->last = i;
        }
    if (!q) {
        q = qstats_add(s, W->name, W->n_cols, 1);
        if (!q) {
            c->failed = 1;
            return;
        }
        s->last = s->n - 1;
        if (s->want_hessian) {
            uint64_t bytes = (uint64_t)q->n_cols * (uint64_t)q->n_cols * sizeof(double);
            s->hess_bytes += bytes;
            if (s->hess_bytes > SLM_GPTQ_MAX_HESSIAN_BYTES ||
                !(q->hess = slm_calloc((size_t)q->n_cols * (size_t)q->n_cols, sizeof(double)))) {
                c->failed = 2;
                return;
            }
        }
    }
    for (int32_t r = 0; r < n; r++) {
        const float *x = X + (size_t)r * (size_t)xs;
        for (int64_t j = 0; j < q->n_cols; j++) {
            q->acc[j] += (double)x[j] * x[j];
            if (x[j] < q->amin) q->amin = x[j];
            if (x[j] > q->amax) q->amax = x[j];
        }
        for (int64_t a = 0; q->hess && a < q->n_cols; a++) {
            double xa = x[a], *h = q->hess + (size_t)a * (size_t)q->n_cols;
            if (xa == 0.0) continue;
            for (int64_t b = a; b < q->n_cols; b++) h[b] += xa * x[b];
        }
    }
    q->n_rows += n;
}

/* Token windows for calibration and the budget: as the perplexity protocol
 * cuts them; a text shorter than one window is one shorter window. */
static slm_status calib_tokens(const slm_model *m, const char *text, size_t len, int32_t n_ctx,
                               int32_t **ids, size_t *n, int32_t *win, size_t *n_windows) {
    SLM_TRY(slm_tokenizer_encode(m->tok, text ? text : "", len, SLM_TOKENIZE_ADD_BOS, ids, n));
    *win = n_ctx;
    if (*n < (size_t)n_ctx) *win = (int32_t)*n;
    if (*win < 2) {
        free(*ids);
        *ids = NULL;
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "the calibration text has %zu tokens; at least 2 are needed", *n);
    }
    *n_windows = *n / (size_t)*win;
    return SLM_OK;
}

slm_status slm_qstats_collect(const slm_model *m, const char *text, size_t len, int32_t n_ctx,
                              int with_hessian, slm_pool *pool, slm_qstats *out) {
    slm_status st = SLM_OK;
    memset(out, 0, sizeof *out);
    int32_t *ids = NULL, win = 0;
    size_t n = 0, n_windows = 0;
    float *logits = NULL;
    slm_forward fw;
    memset(&fw, 0, sizeof fw);
    if (n_ctx <= 0) n_ctx = SLM_QUANT_DEFAULT_CALIB_CTX;
    out->want_hessian = with_hessian;
    SLM_TRY(calib_tokens(m, text, len, n_ctx, &ids, &n, &win, &n_windows));
    SLM_CHECK(slm_forward_init(&fw, m, slm_provider_select(NULL, 0), pool, win, win, SLM_TYPE_F32));
    logits = slm_alloc_aligned((size_t)win * (size_t)m->hp.n_vocab, sizeof(float));
    if (!logits) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory for calibration logits");
        goto cleanup;
    }
    observe_ctx oc = {out, 0};
    fw.observe = observe;
    fw.observe_user = &oc;
    for (size_t w = 0; w < n_windows; w++) {
        SLM_CHECK(slm_forward_run(&fw, ids + w * (size_t)win, win, 0, logits, 1));
        if (oc.failed == 2) {
            st = slm_fail(SLM_ERR_NOMEM,
                          "--gptq: the Hessians of this model's matrices need more than %llu "
                          "MiB; GPTQ is supported for small models only",
                          (unsigned long long)(SLM_GPTQ_MAX_HESSIAN_BYTES >> 20));
            goto cleanup;
        }
        if (oc.failed) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory collecting calibration statistics");
            goto cleanup;
        }
        out->n_tokens += win;
    }
    for (size_t i = 0; i < out->n; i++) {
        slm_qstat *q = &out->t[i];
        for (int64_t j = 0; j < q->n_cols; j++)
            q->mean[j] = (float)(q->acc[j] / (double)(q->n_rows ? q->n_rows : 1));
        free(q->acc);
        q->acc = NULL;
    }
cleanup:
    if (st != SLM_OK) slm_qstats_free(out);
    slm_forward_free(&fw);
    free(logits);
    free(ids);
    return st;
}

#define QSTATS_KEY_VERSION "slm.stats.version"
#define QSTATS_KEY_TOKENS "slm.stats.tokens"
#define QSTATS_KEY_RANGE "slm.stats.range."
#define QSTATS_KEY_ROWS "slm.stats.rows."

slm_status slm_qstats_save(const slm_qstats *s, const char *path) {
    slm_status st = SLM_OK;
    gguf_writer *w = NULL;
    char key[GGUF_MAX_NAME + 64];
    SLM_CHECK(gguf_writer_new(&w));
    SLM_CHECK(gguf_writer_set_str(w, "general.architecture", "slm-stats"));
    SLM_CHECK(gguf_writer_set_u32(w, QSTATS_KEY_VERSION, SLM_QSTATS_VERSION));
    SLM_CHECK(gguf_writer_set_u64(w, QSTATS_KEY_TOKENS, (uint64_t)s->n_tokens));
    for (size_t i = 0; i < s->n; i++) {
        const slm_qstat *q = &s->t[i];
        float range[2] = {q->amin, q->amax};
        uint64_t ne[1] = {(uint64_t)q->n_cols};
        snprintf(key, sizeof key, QSTATS_KEY_RANGE "%s", q->name);
        SLM_CHECK(gguf_writer_set_arr(w, key, GGUF_VT_FLOAT32, range, 2));
        snprintf(key, sizeof key, QSTATS_KEY_ROWS "%s", q->name);
        SLM_CHECK(gguf_writer_set_u64(w, key, (uint64_t)q->n_rows));
        SLM_CHECK(gguf_writer_add_tensor(w, q->name, SLM_TYPE_F32, 1, ne, q->mean,
                                         (uint64_t)q->n_cols * sizeof(float)));
    }
    SLM_CHECK(gguf_writer_write(w, path));
cleanup:
    gguf_writer_free(w);
    if (st != SLM_OK) return slm_fail_prefix(st, "saving statistics to %s", path);
    return st;
}

slm_status slm_qstats_load(const char *path, slm_qstats *out) {
    slm_status st = SLM_OK;
    gguf_file *f = NULL;
    char key[GGUF_MAX_NAME + 64], name[GGUF_MAX_NAME + 1];
    memset(out, 0, sizeof *out);
    SLM_CHECK(gguf_open(path, &f));
    uint32_t version = 0;
    if (gguf_get_u32(f, QSTATS_KEY_VERSION, &version) != SLM_OK || version != SLM_QSTATS_VERSION) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: not an slm statistics file (%s must be %u)", path,
                      QSTATS_KEY_VERSION, SLM_QSTATS_VERSION);
        goto cleanup;
    }
    int64_t tokens = 0;
    SLM_CHECK(gguf_get_i64_opt(f, QSTATS_KEY_TOKENS, &tokens));
    out->n_tokens = tokens;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (t->type != SLM_TYPE_F32 || t->n_dims != 1 || t->ne[0] == 0 ||
            t->ne[0] > (uint64_t)16 * SLM_MAX_DIM) {
            st = slm_fail(SLM_ERR_FORMAT, "%s: statistics '%s' must be a 1-D f32 vector", path,
                          name);
            goto cleanup;
        }
        slm_qstat *q = qstats_add(out, name, (int64_t)t->ne[0], 0);
        if (!q) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory reading %s", path);
            goto cleanup;
        }
        memcpy(q->mean, t->data, (size_t)t->ne[0] * sizeof(float));
        for (int64_t j = 0; j < q->n_cols; j++)
            if (!isfinite(q->mean[j]) || q->mean[j] < 0.0f) {
                st = slm_fail(SLM_ERR_FORMAT,
                              "%s: statistics '%s' value %lld is %g (must be "
                              "finite and >= 0)",
                              path, name, (long long)j, (double)q->mean[j]);
                goto cleanup;
            }
        snprintf(key, sizeof key, QSTATS_KEY_RANGE "%s", name);
        const gguf_kv *kv = gguf_find_kv(f, key);
        if (!kv || kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_FLOAT32 ||
            kv->arr_len != 2) {
            st = slm_fail(SLM_ERR_FORMAT, "%s: '%s' must be an array of 2 f32 [min, max]", path,
                          key);
            goto cleanup;
        }
        q->amin = (float)gguf_arr_f64(kv, 0);
        q->amax = (float)gguf_arr_f64(kv, 1);
        if (!isfinite(q->amin) || !isfinite(q->amax) || q->amin > q->amax) {
            st = slm_fail(SLM_ERR_FORMAT, "%s: '%s' is not a finite range", path, key);
            goto cleanup;
        }
        snprintf(key, sizeof key, QSTATS_KEY_ROWS "%s", name);
        int64_t rows = 0;
        SLM_CHECK(gguf_get_i64_opt(f, key, &rows));
        q->n_rows = rows;
    }
cleanup:
    gguf_close(f);
    if (st != SLM_OK) slm_qstats_free(out);
    return st;
}

/* ---- matrices ---------------------------------------------------------------------- */

typedef struct qm_job {
    uint32_t src_type, dst_type;
    const uint8_t *src;
    size_t src_rb, dst_rb;
    int64_t n_cols;
    uint8_t *dst;
    const float *imatrix;
    float *rows; /* [threads][n_cols] */
} qm_job;

static void qm_task(void *ctx, int64_t i0, int64_t i1, int thread) {
    qm_job *j = ctx;
    float *row = j->rows + (size_t)thread * (size_t)j->n_cols;
    for (int64_t r = i0; r < i1; r++) {
        slm_dequantize_row(j->src_type, j->src + (size_t)r * j->src_rb, row, j->n_cols);
        slm_quantize_row_ref(j->dst_type, row, j->dst + (size_t)r * j->dst_rb, j->n_cols,
                             j->imatrix);
    }
}

slm_status slm_quantize_matrix(uint32_t src_type, const uint8_t *src, size_t src_row_bytes,
                               int64_t n_cols, int64_t n_rows, uint32_t dst_type, uint8_t *dst,
                               const float *imatrix, slm_pool *pool) {
    uint64_t rb = 0;
    SLM_TRY(slm_row_bytes(dst_type, (uint64_t)n_cols, &rb));
    const slm_type_info *ti = slm_type_get(dst_type);
    if (!ti || !ti->can_quantize)
        return slm_fail(SLM_ERR_UNSUPPORTED, "cannot quantize to %s", slm_type_name(dst_type));
    int threads = pool ? slm_pool_threads(pool) : 1;
    qm_job j = {src_type, dst_type, src, src_row_bytes, (size_t)rb, n_cols, dst, imatrix, NULL};
    j.rows = slm_alloc_aligned((size_t)threads * (size_t)n_cols, sizeof(float));
    if (!j.rows) return slm_fail(SLM_ERR_NOMEM, "out of memory quantizing a matrix");
    slm_pool_run(pool, n_rows, 1, qm_task, &j);
    free(j.rows);
    return SLM_OK;
}

static int is_float_type(uint32_t t) {
    return t == SLM_TYPE_F32 || t == SLM_TYPE_F16 || t == SLM_TYPE_BF16;
}

/* ---- GPTQ ------------------------------------------------------------------------- */

/* In-place lower Cholesky factor of the symmetric n x n matrix A (lower
 * triangle read, upper zeroed). 0 when A is not positive definite. */
static int cholesky(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double *aj = A + (size_t)j * (size_t)n;
        double d = aj[j];
        for (int64_t k = 0; k < j; k++) d -= aj[k] * aj[k];
        if (!(d > 0.0) || !isfinite(d)) return 0;
        d = sqrt(d);
        aj[j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double *ai = A + (size_t)i * (size_t)n;
            double v = ai[j];
            for (int64_t k = 0; k < j; k++) v -= ai[k] * aj[k];
            ai[j] = v / d;
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) A[(size_t)i * (size_t)n + (size_t)j] = 0.0;
    return 1;
}

/* U, upper triangular with U^T U = H^-1, from the Hessian's upper triangle
 * (dampened; columns never seen get a unit diagonal). */
static slm_status gptq_factor(const slm_qstat *st, double *U, double *T) {
    int64_t n = st->n_cols;
    double mean_diag = 0.0;
    for (int64_t i = 0; i < n; i++) mean_diag += st->hess[(size_t)i * (size_t)n + (size_t)i];
    mean_diag /= (double)n;
    if (!(mean_diag > 0.0)) mean_diag = 1.0;
    double damp = SLM_GPTQ_DAMP * mean_diag;
    for (int attempt = 0; attempt < 6; attempt++, damp *= 10.0) {
        /* T = H + damp I (lower triangle) */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++)
                T[(size_t)i * (size_t)n + (size_t)j] = st->hess[(size_t)j * (size_t)n + (size_t)i];
        for (int64_t i = 0; i < n; i++) {
            double *d = &T[(size_t)i * (size_t)n + (size_t)i];
            *d = *d > 0.0 ? *d + damp : 1.0;
        }
        if (!cholesky(T, n)) continue;
        /* T = L^-1 (lower), in place by forward substitution */
        for (int64_t j = 0; j < n; j++) {
            double *tj = T + (size_t)j * (size_t)n;
            double inv = 1.0 / tj[j];
            for (int64_t i = 0; i < j; i++) {
                double v = 0.0;
                for (int64_t k = i; k < j; k++) v += tj[k] * T[(size_t)k * (size_t)n + (size_t)i];
                U[(size_t)j * (size_t)n + (size_t)i] = -v * inv;
            }
            U[(size_t)j * (size_t)n + (size_t)j] = inv;
            for (int64_t i = 0; i <= j; i++) tj[i] = U[(size_t)j * (size_t)n + (size_t)i];
        }
        /* U = H^-1 = L^-T L^-1 (lower triangle), then its Cholesky M, U = M^T */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) {
                double v = 0.0;
                for (int64_t k = i; k < n; k++)
                    v +=
                        T[(size_t)k * (size_t)n + (size_t)i] * T[(size_t)k * (size_t)n + (size_t)j];
                U[(size_t)i * (size_t)n + (size_t)j] = v;
            }
        if (!cholesky(U, n)) continue;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) {
                U[(size_t)i * (size_t)n + (size_t)j] = U[(size_t)j * (size_t)n + (size_t)i];
                U[(size_t)j * (size_t)n + (size_t)i] = 0.0;
            }
        return SLM_OK;
    }
    return slm_fail(SLM_ERR_INTERNAL, "--gptq: the Hessian of '%s' is not positive definite",
                    st->name);
}

typedef struct gq_job {
    uint32_t src_type, dst_type;
    const uint8_t *src;
    size_t src_rb, dst_rb;
    int64_t n, bs;
    uint32_t ts;
    uint8_t *dst;
    const double *U;
    const float *imat;
    double *w;  /* [threads][n] the row being quantized, updated as errors propagate */
    float *blk; /* [threads][n + 2 * bs] the source row, a block, its dequantized values */
} gq_job;

static void gq_task(void *ctx, int64_t i0, int64_t i1, int thread) {
    gq_job *j = ctx;
    int64_t n = j->n, bs = j->bs;
    double *w = j->w + (size_t)thread * (size_t)n;
    float *f = j->blk + (size_t)thread * (size_t)(n + 2 * bs), *x = f + n, *q = x + bs;
    for (int64_t r = i0; r < i1; r++) {
        slm_dequantize_row(j->src_type, j->src + (size_t)r * j->src_rb, f, n);
        for (int64_t c = 0; c < n; c++) w[c] = f[c];
        uint8_t *row = j->dst + (size_t)r * j->dst_rb;
        for (int64_t j0 = 0; j0 < n; j0 += bs) {
            for (int64_t c = 0; c < bs; c++) x[c] = (float)w[j0 + c];
            uint8_t *b = row + (size_t)(j0 / bs) * j->ts;
            slm_quantize_row_ref(j->dst_type, x, b, bs, j->imat ? j->imat + j0 : NULL);
            slm_dequantize_row(j->dst_type, b, q, bs);
            for (int64_t i = j0; i < j0 + bs; i++) {
                const double *u = j->U + (size_t)i * (size_t)n;
                double e = (w[i] - (double)q[i - j0]) / u[i];
                for (int64_t k = i + 1; k < n; k++) w[k] -= e * u[k];
            }
        }
    }
}

slm_status slm_gptq_matrix(uint32_t src_type, const uint8_t *src, size_t src_row_bytes,
                           int64_t n_cols, int64_t n_rows, uint32_t dst_type, uint8_t *dst,
                           const slm_qstat *st, slm_pool *pool) {
    slm_status st_ = SLM_OK;
    const slm_type_info *ti = slm_type_get(dst_type);
    if (!st || !st->hess || st->n_cols != n_cols || !is_float_type(src_type) || !ti ||
        ti->block_size < 2 || n_cols % ti->block_size != 0)
        return slm_quantize_matrix(src_type, src, src_row_bytes, n_cols, n_rows, dst_type, dst,
                                   st ? st->mean : NULL, pool);
    int threads = pool ? slm_pool_threads(pool) : 1;
    size_t nn = (size_t)n_cols * (size_t)n_cols;
    gq_job j = {src_type,      dst_type, src,  src_row_bytes, 0,    n_cols, ti->block_size,
                ti->type_size, dst,      NULL, st->mean,      NULL, NULL};
    j.dst_rb = (size_t)(n_cols / ti->block_size) * ti->type_size;
    double *U = slm_calloc(nn, sizeof(double)), *T = slm_calloc(nn, sizeof(double));
    j.w = slm_calloc((size_t)threads * (size_t)n_cols, sizeof(double));
    j.blk = slm_calloc((size_t)threads * ((size_t)n_cols + 2 * ti->block_size), sizeof(float));
    if (!U || !T || !j.w || !j.blk) {
        st_ = slm_fail(SLM_ERR_NOMEM, "--gptq: out of memory for '%s'", st->name);
        goto cleanup;
    }
    st_ = gptq_factor(st, U, T);
    if (st_ != SLM_OK) goto cleanup;
    j.U = U;
    slm_pool_run(pool, n_rows, 1, gq_task, &j);
cleanup:
    free(U);
    free(T);
    free(j.w);
    free(j.blk);
    return st_;
}

/* Every bound matrix of a model (tied output counted once). */
static size_t model_matrices(slm_model *m, slm_matrix **out, size_t cap) {
    size_t n = 0;
#define ADD(x)                                                                                     \
    do {                                                                                           \
        if (n < cap && (x).data) out[n++] = &(x);                                                  \
    } while (0)
    ADD(m->tok_embd);
    if (!m->tied_output) ADD(m->output);
    for (int32_t l = 0; l < m->hp.n_layers; l++) {
        slm_layer *L = &m->layers[l];
        ADD(L->wq);
        ADD(L->wk);
        ADD(L->wv);
        ADD(L->wo);
        ADD(L->w_gate);
        ADD(L->w_up);
        ADD(L->w_down);
    }
#undef ADD
    return n;
}

slm_status slm_model_quantize_loaded(slm_model *m, const char *quant) {
    slm_status st = SLM_OK;
    uint32_t want;
    if (!strcmp(quant, "int8"))
        want = SLM_TYPE_Q8_0;
    else if (!strcmp(quant, "int4"))
        want = SLM_TYPE_Q4_K;
    else if (!single_type(quant, &want))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'quant': unknown precision \"%s\" (expected int8, int4, or "
                        "one of %s)",
                        quant, slm_qtarget_names());
    double t0 = slm_now_ms();
    size_t cap = 2 + 7 * (size_t)m->hp.n_layers;
    slm_matrix **mats = slm_calloc(cap, sizeof *mats);
    uint32_t *types = slm_calloc(cap, sizeof *types);
    size_t *offs = slm_calloc(cap, sizeof *offs);
    slm_pool *pool = NULL;
    if (!mats || !types || !offs) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    size_t n = model_matrices(m, mats, cap), total = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_float_type(mats[i]->type)) {
            st = slm_fail(SLM_ERR_UNSUPPORTED,
                          "%s: config asks for quant \"%s\" but tensor '%s' is already %s; "
                          "quantizing at load needs F32/F16/BF16 weights",
                          m->path, quant, mats[i]->name ? mats[i]->name : "?",
                          slm_type_name(mats[i]->type));
            goto cleanup;
        }
        types[i] = slm_qtype_fallback(want, mats[i]->n_cols);
        uint64_t rb = 0;
        SLM_CHECK(slm_row_bytes(types[i], (uint64_t)mats[i]->n_cols, &rb));
        offs[i] = total;
        total += ((size_t)rb * (size_t)mats[i]->n_rows + 63) & ~(size_t)63;
    }
    m->quant_store = slm_alloc_aligned(total ? total : 1, 1);
    if (!m->quant_store) {
        st = slm_fail(SLM_ERR_NOMEM, "%s: cannot allocate %zu bytes for quantized weights", m->path,
                      total);
        goto cleanup;
    }
    SLM_CHECK(slm_pool_new(slm_cpu_count(), &pool));
    size_t n_fallback = 0;
    for (size_t i = 0; i < n; i++) {
        slm_matrix *W = mats[i];
        uint8_t *dst = m->quant_store + offs[i];
        SLM_CHECK(slm_quantize_matrix(W->type, W->data, W->row_bytes, W->n_cols, W->n_rows,
                                      types[i], dst, NULL, pool));
        if (types[i] != want) n_fallback++;
        uint64_t rb = 0;
        SLM_CHECK(slm_row_bytes(types[i], (uint64_t)W->n_cols, &rb));
        W->type = types[i];
        W->data = dst;
        W->row_bytes = (size_t)rb;
    }
    if (m->tied_output) m->output = m->tok_embd;
    m->weight_type = want;
    m->quant_ms = slm_now_ms() - t0;
    slm_log(SLM_LOG_INFO, "%s: quantized %zu matrices to %s at load in %.1f ms (%zu fell back)",
            m->path, n, slm_type_name(want), m->quant_ms, n_fallback);
cleanup:
    slm_pool_free(pool);
    free(mats);
    free(types);
    free(offs);
    return st;
}

double slm_model_quant_load_ms(const slm_model *model) {
    return model ? model->quant_ms : 0.0;
}

/* ---- distributions ----------------------------------------------------------------- */

void slm_log_softmax(const float *logits, int64_t n, double *out) {
    double mx = logits[0];
    for (int64_t i = 1; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)logits[i] - mx);
    double lse = mx + log(sum);
    for (int64_t i = 0; i < n; i++) out[i] = (double)logits[i] - lse;
}

double slm_kl_divergence(const double *lp_base, const double *lp_other, int64_t n) {
    double kl = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double p = exp(lp_base[i]);
        if (p > 0.0) kl += p * (lp_base[i] - lp_other[i]);
    }
    return kl > 0.0 ? kl : 0.0;
}

/* ---- the plan ------------------------------------------------------------------------ */

typedef struct qtensor {
    const gguf_tensor *t;
    char name[GGUF_MAX_NAME + 1];
    int is_matrix;
    int kept; /* type fixed by --keep */
    uint32_t wanted, type;
    int64_t n_cols, n_rows;
    uint64_t bytes;
    uint8_t *data; /* owned output data; NULL = copied from the input */
    const slm_qstat *stat;
    slm_matrix *bound; /* the working model's matrix (budget search) */
} qtensor;

typedef struct keep_rule {
    char pattern[GGUF_MAX_NAME + 1];
    uint32_t type;
} keep_rule;

static slm_status parse_keep(const char *spec, keep_rule *out) {
    const char *eq = spec ? strrchr(spec, '=') : NULL;
    if (!eq || eq == spec || (size_t)(eq - spec) > GGUF_MAX_NAME)
        return slm_fail(SLM_ERR_INVALID_ARG, "--keep '%s': expected PATTERN=TYPE",
                        spec ? spec : "");
    snprintf(out->pattern, sizeof out->pattern, "%.*s", (int)(eq - spec), spec);
    if (!single_type(eq + 1, &out->type))
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "--keep '%s': unknown type '%s' (expected one of f32, f16, bf16, q8_0, "
                        "q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)",
                        spec, eq + 1);
    return SLM_OK;
}

static slm_status plan_bytes(qtensor *q) {
    uint64_t rb = 0;
    SLM_TRY(slm_row_bytes(q->type, (uint64_t)q->n_cols, &rb));
    q->bytes = rb * (uint64_t)q->n_rows;
    return SLM_OK;
}

/* ---- the budget search ---------------------------------------------------------------- */

static const uint32_t LADDER[] = {SLM_TYPE_Q4_K, SLM_TYPE_Q4_0, SLM_TYPE_Q4_1,
                                  SLM_TYPE_Q5_K, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1,
                                  SLM_TYPE_Q6_K, SLM_TYPE_Q8_0, SLM_TYPE_F16};
#define N_LADDER (sizeof LADDER / sizeof LADDER[0])

typedef struct cand {
    uint32_t type[N_LADDER];
    uint64_t bytes[N_LADDER];
    double kl[N_LADDER];
    int n, choice;
} cand;

typedef struct kl_eval {
    slm_forward fw;
    const int32_t *ids;
    int32_t win;
    size_t n_windows;
    int64_t V;
    float *logits; /* [win][V] */
    double *lp;    /* [V] scratch */
    double *base;  /* [n_windows][win-1][V] base log-probs */
} kl_eval;

/* Mean KL against the base over the first n_windows windows (record = 1:
 * store the base's log-probs instead). */
static slm_status kl_run(kl_eval *e, size_t n_windows, int record, double *mean_kl) {
    double sum = 0.0;
    int64_t count = 0;
    for (size_t w = 0; w < n_windows; w++) {
        SLM_TRY(slm_forward_run(&e->fw, e->ids + w * (size_t)e->win, e->win, 0, e->logits, 1));
        for (int32_t p = 0; p + 1 < e->win; p++) {
            double *b = e->base + ((size_t)w * (size_t)(e->win - 1) + (size_t)p) * (size_t)e->V;
            const float *row = e->logits + (size_t)p * (size_t)e->V;
            if (record) {
                slm_log_softmax(row, e->V, b);
            } else {
                slm_log_softmax(row, e->V, e->lp);
                sum += slm_kl_divergence(b, e->lp, e->V);
            }
            count++;
        }
    }
    *mean_kl = count ? sum / (double)count : 0.0;
    return SLM_OK;
}

/* Puts q's data of `type` into the working model's matrix (NULL data: back
 * to the original). */
static void bind_swap(slm_model *wm, qtensor *q, const slm_matrix *orig, uint32_t type,
                      const uint8_t *data) {
    slm_matrix *W = q->bound;
    if (data) {
        uint64_t rb = 0;
        if (slm_row_bytes(type, (uint64_t)W->n_cols, &rb) != SLM_OK) return;
        W->type = type;
        W->data = data;
        W->row_bytes = (size_t)rb;
    } else {
        *W = *orig;
    }
    if (wm->tied_output && W == &wm->tok_embd) wm->output = wm->tok_embd;
}

static slm_status quantize_for(const qtensor *q, uint32_t type, slm_pool *pool, uint8_t **out) {
    uint64_t rb = 0, src_rb = 0;
    SLM_TRY(slm_row_bytes(type, (uint64_t)q->n_cols, &rb));
    SLM_TRY(slm_row_bytes(q->t->type, (uint64_t)q->n_cols, &src_rb));
    *out = slm_alloc_aligned((size_t)(rb * (uint64_t)q->n_rows), 1);
    if (!*out) return slm_fail(SLM_ERR_NOMEM, "out of memory quantizing '%s'", q->name);
    slm_status st =
        q->stat && q->stat->hess
            ? slm_gptq_matrix(q->t->type, q->t->data, (size_t)src_rb, q->n_cols, q->n_rows, type,
                              *out, q->stat, pool)
            : slm_quantize_matrix(q->t->type, q->t->data, (size_t)src_rb, q->n_cols, q->n_rows,
                                  type, *out, q->stat ? q->stat->mean : NULL, pool);
    if (st != SLM_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

static void greedy(cand *c, const qtensor *qs, size_t n, double target, double *pred) {
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!c[i].n) continue;
        c[i].choice = 0;
        total += c[i].kl[0];
    }
    while (total > target) {
        double best = -1.0;
        size_t bi = 0;
        int bk = -1;
        for (size_t i = 0; i < n; i++) {
            if (!c[i].n || qs[i].kept) continue;
            int cur = c[i].choice;
            for (int k = cur + 1; k < c[i].n; k++) {
                double gain = c[i].kl[cur] - c[i].kl[k];
                double cost = (double)(c[i].bytes[k] - c[i].bytes[cur]);
                double r = gain / (cost > 1.0 ? cost : 1.0);
                if (gain > 0.0 && r > best) {
                    best = r;
                    bi = i;
                    bk = k;
                }
            }
        }
        if (bk < 0) break;
        total += c[bi].kl[bk] - c[bi].kl[c[bi].choice];
        c[bi].choice = bk;
    }
    *pred = total;
}

static slm_status budget_search(slm_model *m, qtensor *qs, size_t n, const char *text, size_t len,
                                int32_t n_ctx, double budget, slm_pool *pool, int progress,
                                double *pred_out, double *meas_out) {
    slm_status st = SLM_OK;
    slm_model wm = *m;
    slm_layer *layers = NULL;
    slm_matrix *orig = NULL;
    cand *c = NULL;
    uint8_t **bufs = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    kl_eval e;
    memset(&e, 0, sizeof e);
    layers = slm_calloc((size_t)m->hp.n_layers, sizeof *layers);
    orig = slm_calloc(n, sizeof *orig);
    c = slm_calloc(n, sizeof *c);
    bufs = slm_calloc(n, sizeof *bufs);
    if (!layers || !orig || !c || !bufs) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory for the budget search");
        goto cleanup;
    }
    memcpy(layers, m->layers, (size_t)m->hp.n_layers * sizeof *layers);
    wm.layers = layers;
    {
        size_t cap = 2 + 7 * (size_t)m->hp.n_layers;
        slm_matrix **mats = slm_calloc(cap, sizeof *mats);
        if (!mats) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        size_t nm = model_matrices(&wm, mats, cap);
        for (size_t i = 0; i < n; i++)
            for (size_t k = 0; qs[i].is_matrix && k < nm; k++)
                if (mats[k]->name && !strcmp(mats[k]->name, qs[i].name)) qs[i].bound = mats[k];
        free(mats);
    }
    for (size_t i = 0; i < n; i++)
        if (qs[i].bound) orig[i] = *qs[i].bound;

    SLM_CHECK(calib_tokens(m, text, len, n_ctx > 0 ? n_ctx : SLM_QUANT_DEFAULT_CALIB_CTX, &ids,
                           &n_ids, &e.win, &e.n_windows));
    e.ids = ids;
    if (e.n_windows > SLM_QUANT_BUDGET_MAX_WINDOWS) e.n_windows = SLM_QUANT_BUDGET_MAX_WINDOWS;
    e.V = m->hp.n_vocab;
    while (e.n_windows > 1 &&
           e.n_windows * (size_t)(e.win - 1) * (size_t)e.V > SLM_QUANT_BUDGET_MAX_LOGPROBS)
        e.n_windows--;
    if (progress)
        fprintf(stderr, "[budget] measuring on %zu windows of %d tokens\n", e.n_windows, e.win);
    SLM_CHECK(slm_forward_init(&e.fw, &wm, slm_provider_select(NULL, 0), pool, e.win, e.win,
                               SLM_TYPE_F32));
    e.logits = slm_alloc_aligned((size_t)e.win * (size_t)e.V, sizeof(float));
    e.lp = slm_calloc((size_t)e.V, sizeof(double));
    e.base = slm_calloc(e.n_windows * (size_t)(e.win - 1) * (size_t)e.V, sizeof(double));
    if (!e.logits || !e.lp || !e.base) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory for the budget search's logits");
        goto cleanup;
    }
    double dummy = 0.0;
    SLM_CHECK(kl_run(&e, e.n_windows, 1, &dummy));
    size_t n_sens =
        e.n_windows < SLM_QUANT_SENSITIVITY_WINDOWS ? e.n_windows : SLM_QUANT_SENSITIVITY_WINDOWS;

    /* Kept matrices take their type for the whole search. */
    for (size_t i = 0; i < n; i++) {
        if (!qs[i].bound || !qs[i].kept || is_float_type(qs[i].type)) continue;
        SLM_CHECK(quantize_for(&qs[i], qs[i].type, pool, &bufs[i]));
        bind_swap(&wm, &qs[i], &orig[i], qs[i].type, bufs[i]);
    }
    /* Sensitivity: each matrix alone at each candidate type. */
    for (size_t i = 0; i < n; i++) {
        if (!qs[i].bound || qs[i].kept) continue;
        cand *ci = &c[i];
        for (size_t k = 0; k < N_LADDER; k++) {
            uint32_t ty = slm_qtype_fallback(LADDER[k], qs[i].n_cols);
            uint64_t rb = 0;
            SLM_CHECK(slm_row_bytes(ty, (uint64_t)qs[i].n_cols, &rb));
            uint64_t bytes = rb * (uint64_t)qs[i].n_rows;
            int dup = 0;
            for (int j = 0; j < ci->n; j++) dup |= ci->type[j] == ty;
            if (dup) continue;
            /* insertion by size */
            int at = ci->n;
            while (at > 0 && ci->bytes[at - 1] > bytes) {
                ci->type[at] = ci->type[at - 1];
                ci->bytes[at] = ci->bytes[at - 1];
                at--;
            }
            ci->type[at] = ty;
            ci->bytes[at] = bytes;
            ci->n++;
        }
        for (int k = 0; k < ci->n; k++) {
            uint8_t *buf = NULL;
            SLM_CHECK(quantize_for(&qs[i], ci->type[k], pool, &buf));
            bind_swap(&wm, &qs[i], &orig[i], ci->type[k], buf);
            st = kl_run(&e, n_sens, 0, &ci->kl[k]);
            bind_swap(&wm, &qs[i], &orig[i], 0, NULL);
            free(buf);
            if (st != SLM_OK) goto cleanup;
        }
        if (progress) {
            fprintf(stderr, "[budget] %-28s", qs[i].name);
            for (int k = 0; k < ci->n; k++)
                fprintf(stderr, " %s:%.5f", slm_type_name(ci->type[k]), ci->kl[k]);
            fputc('\n', stderr);
        }
    }
    /* Plan, measure, tighten. */
    double target = budget, pred = 0.0, meas = 0.0;
    for (int round = 0; round < SLM_QUANT_BUDGET_ROUNDS; round++) {
        greedy(c, qs, n, target, &pred);
        for (size_t i = 0; i < n; i++) {
            if (!c[i].n) continue;
            free(bufs[i]);
            bufs[i] = NULL;
            uint32_t ty = c[i].type[c[i].choice];
            SLM_CHECK(quantize_for(&qs[i], ty, pool, &bufs[i]));
            bind_swap(&wm, &qs[i], &orig[i], ty, bufs[i]);
        }
        SLM_CHECK(kl_run(&e, e.n_windows, 0, &meas));
        if (progress)
            fprintf(stderr, "[budget] round %d: target %.5f, predicted KL %.5f, measured %.5f\n",
                    round + 1, target, pred, meas);
        if (meas <= budget) break;
        target *= 0.9 * budget / meas;
    }
    for (size_t i = 0; i < n; i++)
        if (c[i].n) qs[i].wanted = c[i].type[c[i].choice];
    *pred_out = pred;
    *meas_out = meas;
cleanup:
    slm_forward_free(&e.fw);
    free(e.logits);
    free(e.lp);
    free(e.base);
    free(ids);
    for (size_t i = 0; bufs && i < n; i++) free(bufs[i]);
    for (size_t i = 0; i < n; i++) qs[i].bound = NULL;
    free(bufs);
    free(c);
    free(orig);
    free(layers);
    return st;
}

/* ---- the file ---------------------------------------------------------------------------- */

static int skip_key(const char *key, void *user) {
    (void)user;
    return !strcmp(key, "general.file_type") || !strcmp(key, "general.quantization_version") ||
           !strcmp(key, "slm.activation_ranges") || !strncmp(key, "slm.quant.", 10);
}

/* Refuses outputs that cannot work before any time is spent. */
static slm_status check_paths(const char *in, const char *out, const char *what) {
    struct stat si, so;
    if (stat(in, &si) != 0) return slm_fail(SLM_ERR_IO, "%s: cannot open: %s", in, strerror(errno));
    if (stat(out, &so) == 0) {
        if (so.st_dev == si.st_dev && so.st_ino == si.st_ino)
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "%s '%s' is the input file; write to a different path", what, out);
        if (S_ISDIR(so.st_mode))
            return slm_fail(SLM_ERR_INVALID_ARG, "%s '%s' is a directory", what, out);
        if (access(out, W_OK) != 0)
            return slm_fail(SLM_ERR_IO, "%s '%s' is not writable: %s", what, out, strerror(errno));
    }
    char dir[4096];
    const char *slash = strrchr(out, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == out)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - out), out);
    if (access(dir, W_OK | X_OK) != 0)
        return slm_fail(SLM_ERR_IO, "%s '%s': cannot write to directory '%s': %s", what, out, dir,
                        strerror(errno));
    return SLM_OK;
}

void slm_quantize_report_free(slm_quantize_report *r) {
    if (!r) return;
    for (size_t i = 0; r->tensors && i < r->n_tensors; i++) free((char *)r->tensors[i].name);
    free(r->tensors);
    free(r->plan);
    free(r);
}

static slm_status make_report(const qtensor *qs, size_t n, slm_quantize_report *r) {
    r->tensors = slm_calloc(n, sizeof *r->tensors);
    if (!r->tensors) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    size_t plan_len = 1;
    for (size_t i = 0; i < n; i++) plan_len += strlen(qs[i].name) + 12;
    r->plan = malloc(plan_len);
    if (!r->plan) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    size_t at = 0;
    r->plan[0] = '\0';
    r->n_tensors = n;
    for (size_t i = 0; i < n; i++) {
        slm_quantize_tensor *t = &r->tensors[i];
        t->name = slm_strndup(qs[i].name, strlen(qs[i].name));
        if (!t->name) return slm_fail(SLM_ERR_NOMEM, "out of memory");
        t->type = slm_type_name(qs[i].type);
        t->wanted = slm_type_name(qs[i].wanted);
        t->n_cols = qs[i].n_cols;
        t->n_rows = qs[i].n_rows;
        t->bytes = qs[i].bytes;
        t->calibrated = qs[i].is_matrix && qs[i].stat != NULL;
        if (qs[i].type != qs[i].wanted) r->n_fallbacks++;
        if (qs[i].is_matrix)
            at += (size_t)snprintf(r->plan + at, plan_len - at, "%s%s=%s", at ? "," : "",
                                   qs[i].name, t->type);
    }
    return SLM_OK;
}

slm_status slm_quantize_file(const char *in, const char *out, const slm_quantize_params *p,
                             slm_quantize_report **report) {
    slm_status st = SLM_OK;
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    slm_model *m = NULL;
    slm_pool *pool = NULL;
    qtensor *qs = NULL;
    size_t n = 0;
    slm_qstats stats;
    keep_rule keep[SLM_QUANT_MAX_KEEP];
    slm_qtarget target;
    slm_quantize_report *r = NULL;
    double t0 = slm_now_ms();
    memset(&stats, 0, sizeof stats);
    if (report) *report = NULL;
    if (!in || !out || !p) return slm_fail(SLM_ERR_INVALID_ARG, "slm_quantize_file: NULL argument");

    /* Everything the user can get wrong, before reading or writing anything. */
    SLM_TRY(slm_qtarget_parse(p->type, &target));
    if (p->n_keep > SLM_QUANT_MAX_KEEP)
        return slm_fail(SLM_ERR_INVALID_ARG, "at most %d --keep rules", SLM_QUANT_MAX_KEEP);
    for (size_t i = 0; i < p->n_keep; i++) SLM_TRY(parse_keep(p->keep[i], &keep[i]));
    if (p->budget_kl < 0.0 || p->budget_kl != p->budget_kl)
        return slm_fail(SLM_ERR_INVALID_ARG, "--budget must be a positive KL divergence");
    if (p->budget_kl > 0.0 && !p->calib_text)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "--budget needs calibration text (--calib FILE) to measure KL on");
    if (p->gptq && (!p->calib_text || p->stats_in))
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "--gptq needs --calib FILE (the Hessians are not kept in --stats files)");
    if (p->stats_out && !p->calib_text)
        return slm_fail(SLM_ERR_INVALID_ARG, "--save-stats needs --calib FILE to collect from");
    SLM_TRY(check_paths(in, out, "output"));
    if (p->stats_out) {
        SLM_TRY(check_paths(in, p->stats_out, "statistics file"));
        if (!strcmp(p->stats_out, out))
            return slm_fail(SLM_ERR_INVALID_ARG, "the statistics file and the output are both '%s'",
                            out);
    }
    r = slm_calloc(1, sizeof *r);
    if (!r) return slm_fail(SLM_ERR_NOMEM, "out of memory");

    SLM_CHECK(gguf_open(in, &f));
    n = (size_t)gguf_n_tensors(f);
    for (size_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!is_float_type(t->type)) {
            st = slm_fail(SLM_ERR_UNSUPPORTED,
                          "%s: tensor '%.*s' is already %s; quantize from an F32, F16 or BF16 "
                          "file",
                          in, (int)t->name.len, t->name.ptr, slm_type_name(t->type));
            goto cleanup;
        }
    }
    uint32_t n_layers = 0;
    {
        gguf_str arch = {0};
        char key[96];
        SLM_CHECK(gguf_get_str_opt(f, "general.architecture", &arch));
        snprintf(key, sizeof key, "%.*s.block_count", (int)(arch.len < 64 ? arch.len : 64),
                 arch.ptr ? arch.ptr : "");
        SLM_CHECK(gguf_get_u32_opt(f, key, &n_layers));
    }
    int has_output = gguf_find_tensor(f, "output.weight") != NULL;
    SLM_CHECK(slm_pool_new(p->threads > 0 ? p->threads : slm_cpu_count(), &pool));

    /* Statistics: from a file, or by running the model on the text. */
    if (p->calib_text || p->budget_kl > 0.0) {
        SLM_CHECK(slm_model_open(in, 0, NULL, &m));
    }
    if (p->stats_in) {
        SLM_CHECK(slm_qstats_load(p->stats_in, &stats));
    } else if (p->calib_text) {
        if (p->progress) fprintf(stderr, "calibrating on %zu bytes of text\n", p->calib_len);
        SLM_CHECK(slm_qstats_collect(m, p->calib_text, p->calib_len, p->calib_ctx, p->gptq, pool,
                                     &stats));
        if (p->stats_out) SLM_CHECK(slm_qstats_save(&stats, p->stats_out));
    }
    r->calibrated = stats.n > 0;

    qs = slm_calloc(n ? n : 1, sizeof *qs);
    if (!qs) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        qtensor *q = &qs[i];
        q->t = gguf_tensor_at(f, i);
        snprintf(q->name, sizeof q->name, "%.*s", (int)q->t->name.len, q->t->name.ptr);
        q->n_cols = (int64_t)q->t->ne[0];
        q->n_rows = (int64_t)(q->t->ne[1] * q->t->ne[2] * q->t->ne[3]);
        q->is_matrix = q->t->n_dims >= 2;
        q->wanted = q->t->type;
        if (q->is_matrix) {
            q->wanted =
                slm_qtarget_tensor_type(&target, q->name, q->n_cols, (int)n_layers, has_output);
            for (size_t k = 0; k < p->n_keep; k++)
                if (fnmatch(keep[k].pattern, q->name, 0) == 0) {
                    q->wanted = keep[k].type;
                    q->kept = 1;
                    break;
                }
            q->stat = slm_qstats_find(&stats, q->name);
            if (q->stat && q->stat->n_cols != q->n_cols) {
                st = slm_fail(SLM_ERR_INVALID_ARG,
                              "statistics for '%s' have %lld columns; the tensor has %lld "
                              "(statistics of another model?)",
                              q->name, (long long)q->stat->n_cols, (long long)q->n_cols);
                goto cleanup;
            }
        }
        q->type = q->is_matrix ? slm_qtype_fallback(q->wanted, q->n_cols) : q->wanted;
    }
    if (p->budget_kl > 0.0) {
        r->budget_kl = p->budget_kl;
        SLM_CHECK(budget_search(m, qs, n, p->calib_text, p->calib_len, p->calib_ctx, p->budget_kl,
                                pool, p->progress, &r->budget_predicted_kl,
                                &r->budget_measured_kl));
        for (size_t i = 0; i < n; i++)
            if (qs[i].is_matrix) qs[i].type = slm_qtype_fallback(qs[i].wanted, qs[i].n_cols);
    }

    /* Quantize. */
    for (size_t i = 0; i < n; i++) {
        qtensor *q = &qs[i];
        SLM_CHECK(plan_bytes(q));
        if (p->progress && q->type != q->wanted)
            fprintf(stderr,
                    "[%4zu/%zu] %-32s %-4s -> %-5s (fallback: %s needs rows in blocks "
                    "of %u; this row has %lld)\n",
                    i + 1, n, q->name, slm_type_name(q->t->type), slm_type_name(q->type),
                    slm_type_name(q->wanted), slm_type_get(q->wanted)->block_size,
                    (long long)q->n_cols);
        else if (p->progress)
            fprintf(stderr, "[%4zu/%zu] %-32s %-4s -> %s\n", i + 1, n, q->name,
                    slm_type_name(q->t->type), slm_type_name(q->type));
        if (!q->is_matrix || q->type == q->t->type) continue;
        SLM_CHECK(quantize_for(q, q->type, pool, &q->data));
    }

    /* Write. */
    SLM_CHECK(make_report(qs, n, r));
    SLM_CHECK(gguf_writer_new(&w));
    SLM_CHECK(gguf_writer_copy_kv(w, f, skip_key, NULL));
    SLM_CHECK(gguf_writer_set_u32(w, "general.quantization_version", SLM_QUANT_VERSION));
    SLM_CHECK(gguf_writer_set_u32(w, "general.file_type", target.ftype));
    if (p->n_keep > 0 || p->budget_kl > 0.0)
        SLM_CHECK(gguf_writer_set_str(w, "slm.quant.plan", r->plan));
    if (p->budget_kl > 0.0) {
        SLM_CHECK(gguf_writer_set_f32(w, "slm.quant.budget_kl", (float)p->budget_kl));
        SLM_CHECK(gguf_writer_set_f32(w, "slm.quant.measured_kl", (float)r->budget_measured_kl));
    }
    if (stats.n > 0 && !p->no_ranges) {
        /* [min, max] of each tensor's input, in file order; NaN where none. */
        float *ranges = slm_calloc(2 * n, sizeof(float));
        if (!ranges) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < n; i++) {
            int have = qs[i].stat && qs[i].stat->n_rows > 0;
            ranges[2 * i] = have ? qs[i].stat->amin : NAN;
            ranges[2 * i + 1] = have ? qs[i].stat->amax : NAN;
        }
        st = gguf_writer_set_arr(w, "slm.activation_ranges", GGUF_VT_FLOAT32, ranges, 2 * n);
        free(ranges);
        if (st != SLM_OK) goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        const qtensor *q = &qs[i];
        const void *data = q->data ? (const void *)q->data : (const void *)q->t->data;
        SLM_CHECK(gguf_writer_add_tensor_ref(w, q->name, q->type, q->t->n_dims, q->t->ne, data,
                                             q->bytes));
    }
    SLM_CHECK(gguf_writer_write(w, out));
    {
        struct stat sb;
        r->bytes_in = gguf_file_size(f);
        r->bytes_out = stat(out, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    }
    r->seconds = (slm_now_ms() - t0) / 1000.0;
cleanup:
    gguf_writer_free(w);
    for (size_t i = 0; qs && i < n; i++) free(qs[i].data);
    free(qs);
    slm_qstats_free(&stats);
    slm_model_close(m);
    slm_pool_free(pool);
    gguf_close(f);
    if (st == SLM_OK && report)
        *report = r;
    else
        slm_quantize_report_free(r);
    return st;
}
