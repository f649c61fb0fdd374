/* Provider registry and selection, and the threaded matrix multiply built on
 * a provider's row kernels. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "kernels/kernels.h"
#include "quant/types.h"

/* Rows of W dequantized at once in the batched path: each tile of rows is
 * reused by every token, so X is re-read once per tile, not once per row. */
#define SLM_MATMUL_ROW_TILE 8
/* Rows per pool chunk: a multiple of the row tile, small enough that the
 * smallest projections (a few hundred rows) still spread over all threads. */
#define SLM_MATMUL_GRAIN 16
/* Longest name echoed in a log line (names come from config files). */
#define SLM_PROVIDER_NAME_MAX 32

const slm_provider *const *slm_providers_all(void) {
    static const slm_provider *const all[] = {
#if defined(__x86_64__)
        &slm_provider_avx512,
#endif
#if defined(__x86_64__) || defined(__i386__)
        &slm_provider_avx2,
#endif
#if defined(__aarch64__)
        &slm_provider_neon,
#endif
        &slm_provider_ref,
        NULL,
    };
    return all;
}

static const slm_provider *find_n(const char *name, size_t len) {
    for (const slm_provider *const *p = slm_providers_all(); *p; p++) {
        const char *pn = (*p)->name;
        size_t k = 0;
        while (k < len && pn[k] && tolower((unsigned char)name[k]) == pn[k]) k++;
        if (k == len && pn[k] == '\0') return *p;
    }
    return NULL;
}

const slm_provider *slm_provider_find(const char *name) {
    return name ? find_n(name, strlen(name)) : NULL;
}

static const slm_provider *best_available(void) {
    for (const slm_provider *const *p = slm_providers_all(); *p; p++)
        if ((*p)->available()) return *p;
    return &slm_provider_ref;
}

/* Walks the names in order; each array entry may itself be a comma list
 * ("avx2, ref"). Calls `visit` for every non-empty name until it returns
 * nonzero. */
typedef int (*name_visit_fn)(void *ctx, const char *name, size_t len);

static void walk_names(const char *const *names, size_t n_names, name_visit_fn visit, void *ctx) {
    for (size_t i = 0; names && i < n_names; i++) {
        const char *s = names[i];
        if (!s) continue;
        while (*s) {
            while (*s == ',' || isspace((unsigned char)*s)) s++;
            const char *e = s;
            while (*e && *e != ',') e++;
            const char *t = e;
            while (t > s && isspace((unsigned char)t[-1])) t--;
            if (t > s && visit(ctx, s, (size_t)(t - s))) return;
            s = e;
        }
    }
}

typedef struct select_state {
    const slm_provider *choice; /* pass 1: the pick; NULL when none matched */
    int logging;                /* pass 2: log names skipped before the pick */
} select_state;

static int is_auto(const char *name, size_t len) {
    return len == 4 && strncasecmp(name, "auto", 4) == 0;
}

static int select_visit(void *vctx, const char *name, size_t len) {
    select_state *st = vctx;
    const slm_provider *p = is_auto(name, len) ? best_available() : find_n(name, len);
    int ok = p && p->available();
    if (!st->logging) {
        if (ok) st->choice = p;
        return ok;
    }
    if (ok) return 1; /* reached the pick: stop logging */
    int shown = len < SLM_PROVIDER_NAME_MAX ? (int)len : SLM_PROVIDER_NAME_MAX;
    slm_log(SLM_LOG_WARN, "provider '%.*s' %s, falling back to '%s'", shown, name,
            p ? "is unavailable on this CPU" : "is unknown or not built in", st->choice->name);
    return 0;
}

const slm_provider *slm_provider_select(const char *const *names, size_t n_names) {
    select_state st = {NULL, 0};
    walk_names(names, n_names, select_visit, &st);
    if (st.choice == NULL) st.choice = best_available();
    st.logging = 1;
    walk_names(names, n_names, select_visit, &st);
    return st.choice;
}

int slm_kernels_support(uint32_t type) {
    if (type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16) return 1;
    const slm_type_info *ti = slm_type_get(type);
    return ti != NULL && ti->can_dequantize;
}

/* Floats of one dequantized row, rounded up to whole 64-byte lines so that
 * every row slot in the scratch starts 64-byte aligned when the scratch does. */
static size_t padded_row_floats(int64_t n_cols) {
    size_t n = n_cols > 0 ? (size_t)n_cols : 0;
    return (n + 15) & ~(size_t)15;
}

size_t slm_matmul_scratch_floats(int64_t n_cols) {
    /* the row tile, then SLM_MATMUL_X8_TOKENS tokens of 8-bit activations
     * (n bytes of codes + 8 bytes per 32 for scale and code sum, each token
     * rounded up to 64 bytes: under 1.5 bytes per element, 6 floats here);
     * at least room for the avx512 int8 GEMM: 128 tokens of 3 bytes and 4
     * decoded rows of 4 bytes per element, in pairs of 64 elements rounded up
     * (25600 bytes per pair: 100 floats per element + 6400), and for avx512's
     * f16 prefill, 130 tokens of f16-rounded activations (a 128-token prompt
     * in one pass over the weights) */
    size_t a = (SLM_MATMUL_ROW_TILE + 6) * padded_row_floats(n_cols) + SLM_MATMUL_X8_TOKENS * 16;
    size_t b = 130 * padded_row_floats(n_cols) + 6400;
    return a > b ? a : b;
}

typedef struct matmul_ctx {
    const slm_provider *pv;
    const slm_matrix *W;
    const float *X;
    int64_t n_tok, x_stride;
    float *Y;
    int64_t y_stride;
    float *scratch;
    size_t scratch_per_thread;
} matmul_ctx;

/* A provider's own loops over rows and tokens (see kernels.h). */
static void provider_rows_task(void *vctx, int64_t r0, int64_t r1, int thread) {
    const matmul_ctx *c = vctx;
    c->pv->matmul_rows(c->W, r0, r1, c->X, c->n_tok, c->x_stride, c->Y, c->y_stride,
                       c->scratch + (size_t)thread * c->scratch_per_thread);
}

/* One token: Y[r] = dot_row(W[r], x). */
static void matvec_task(void *vctx, int64_t r0, int64_t r1, int thread) {
    const matmul_ctx *c = vctx;
    const slm_matrix *W = c->W;
    float *tmp = c->scratch + (size_t)thread * c->scratch_per_thread;
    const uint8_t *row = W->data + (size_t)r0 * W->row_bytes;
    for (int64_t r = r0; r < r1; r++, row += W->row_bytes)
        c->Y[r] = c->pv->dot_row(W->type, row, c->X, W->n_cols, tmp);
}

/* A batch: each tile of rows is converted to f32 once, then dotted with every
 * token. dot_f32 on the converted row is what dot_row computes (see the
 * providers), so a token gets the same bits here as in matvec_task. */
static void matmul_task(void *vctx, int64_t r0, int64_t r1, int thread) {
    const matmul_ctx *c = vctx;
    const slm_matrix *W = c->W;
    const int64_t n = W->n_cols;
    const size_t stride = padded_row_floats(n);
    float *buf = c->scratch + (size_t)thread * c->scratch_per_thread;
    const float *rows[SLM_MATMUL_ROW_TILE];
    for (int64_t rb = r0; rb < r1; rb += SLM_MATMUL_ROW_TILE) {
        int nr = (int)(r1 - rb < SLM_MATMUL_ROW_TILE ? r1 - rb : SLM_MATMUL_ROW_TILE);
        for (int k = 0; k < nr; k++) {
            const uint8_t *src = W->data + (size_t)(rb + k) * W->row_bytes;
            if (W->type == SLM_TYPE_F32) {
                rows[k] = (const float *)(const void *)src;
            } else {
                float *dst = buf + (size_t)k * stride;
                c->pv->dequantize_row(W->type, src, dst, n);
                rows[k] = dst;
            }
        }
        for (int64_t t = 0; t < c->n_tok; t++) {
            const float *x = c->X + t * c->x_stride;
            float *y = c->Y + t * c->y_stride + rb;
            for (int k = 0; k < nr; k++) y[k] = c->pv->dot_f32(rows[k], x, n);
        }
    }
}

static slm_pool_fn matmul_fn(const slm_provider *pv, int64_t n_tok) {
    return pv->matmul_rows ? provider_rows_task : n_tok == 1 ? matvec_task : matmul_task;
}

static matmul_ctx matmul_ctx_of(const slm_provider *pv, const slm_matrix *W, const float *X,
                                int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride,
                                float *scratch, size_t scratch_per_thread) {
    matmul_ctx c = {
        .pv = pv,
        .W = W,
        .X = X,
        .n_tok = n_tok,
        .x_stride = x_stride,
        .Y = Y,
        .y_stride = y_stride,
        .scratch = scratch,
        .scratch_per_thread = scratch_per_thread,
    };
    return c;
}

void slm_matmul(const slm_provider *pv, slm_pool *pool, const slm_matrix *W, const float *X,
                int64_t n_tok, int64_t x_stride, float *Y, int64_t y_stride, float *scratch) {
    if (n_tok <= 0 || W->n_rows <= 0) return;
    matmul_ctx c = matmul_ctx_of(pv, W, X, n_tok, x_stride, Y, y_stride, scratch,
                                 slm_matmul_scratch_floats(W->n_cols));
    slm_pool_run(pool, W->n_rows, SLM_MATMUL_GRAIN, matmul_fn(pv, n_tok), &c);
}

typedef struct matmul_multi_ctx {
    matmul_ctx m[SLM_MATMUL_MULTI_MAX];
    int64_t first[SLM_MATMUL_MULTI_MAX + 1]; /* stacked row of each matrix's row 0 */
    int n_mat;
    slm_pool_fn fn;
} matmul_multi_ctx;

/* Stacked rows [r0, r1): each matrix's part, as slm_matmul's task would run it. */
static void matmul_multi_task(void *vctx, int64_t r0, int64_t r1, int thread) {
    matmul_multi_ctx *c = vctx;
    for (int i = 0; i < c->n_mat; i++) {
        const int64_t a = r0 > c->first[i] ? r0 : c->first[i];
        const int64_t b = r1 < c->first[i + 1] ? r1 : c->first[i + 1];
        if (a < b) c->fn(&c->m[i], a - c->first[i], b - c->first[i], thread);
    }
}

void slm_matmul_multi(const slm_provider *pv, slm_pool *pool, int n_mat, const slm_matrix *const *W,
                      const float *X, int64_t n_tok, int64_t x_stride, float *const *Y,
                      const int64_t *y_stride, float *scratch) {
    if (n_tok <= 0 || n_mat <= 0) return;
    int together = n_mat <= SLM_MATMUL_MULTI_MAX;
    for (int i = 1; i < n_mat; i++) together &= W[i]->n_cols == W[0]->n_cols;
    if (!together) { /* more matrices, or rows of different lengths: one job each */
        for (int i = 0; i < n_mat; i++)
            slm_matmul(pv, pool, W[i], X, n_tok, x_stride, Y[i], y_stride[i], scratch);
        return;
    }
    matmul_multi_ctx c;
    c.n_mat = n_mat;
    c.fn = matmul_fn(pv, n_tok);
    c.first[0] = 0;
    const size_t per_thread = slm_matmul_scratch_floats(W[0]->n_cols);
    for (int i = 0; i < n_mat; i++) {
        c.m[i] =
            matmul_ctx_of(pv, W[i], X, n_tok, x_stride, Y[i], y_stride[i], scratch, per_thread);
        c.first[i + 1] = c.first[i] + (W[i]->n_rows > 0 ? W[i]->n_rows : 0);
    }
    if (c.first[n_mat] > 0)
        slm_pool_run(pool, c.first[n_mat], SLM_MATMUL_GRAIN, matmul_multi_task, &c);
}
