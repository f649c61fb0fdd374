/* Kernels: every provider this CPU runs against the scalar reference, for
 * every type the quant module can quantize, on random rows of ragged
 * lengths; slm_matmul identical across thread counts and batch sizes and
 * close to a double-precision oracle; provider selection and fallback. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fp16.h"
#include "base/mem.h"
#include "base/threadpool.h"
#include "check.h"
#include "kernels/argmax.h"
#include "kernels/kernels.h"
#include "quant/types.h"

/* Relative tolerance against sum|w*x|: float accumulation over a few
 * thousand terms stays well under it, while one wrong element of a
 * 4097-long row (about 1/4097 of the sum) is far over it. */
#define DOT_RTOL 2e-5

static check_rng g_rng = {12345};

static void fill_normal(float *v, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) v[i] = scale * check_rng_normal(&g_rng);
}

static int type_testable(uint32_t t) {
    const slm_type_info *ti = slm_type_get(t);
    return ti && ti->can_quantize && ti->can_dequantize && slm_kernels_support(t);
}

static size_t row_bytes(uint32_t type, int64_t n) {
    uint64_t b = 0;
    if (slm_row_bytes(type, (uint64_t)n, &b) != SLM_OK) return 0;
    return (size_t)b;
}

static double dot_double(const float *a, const float *b, int64_t n, double *sum_abs) {
    double s = 0, sa = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        sa += fabs((double)a[i] * b[i]);
    }
    *sum_abs = sa;
    return s;
}

/* ---- row kernels --------------------------------------------------------- */

static void test_rows(const slm_provider *pv, uint32_t type, int64_t n) {
    const slm_provider *ref = &slm_provider_ref;
    const char *tn = slm_type_name(type);
    size_t rb = row_bytes(type, n);
    CHECK_MSG(rb > 0, "%s n=%lld: no row size", tn, (long long)n);
    if (rb == 0) return;
    float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x);
    float *wd_ref = malloc((size_t)n * sizeof *w), *wd = malloc((size_t)n * sizeof *w);
    float *tmp = malloc((size_t)n * sizeof *w);
    uint8_t *row = malloc(rb);
    fill_normal(w, n, 0.05f);
    fill_normal(x, n, 1.0f);
    /* Some exact zeros and a large outlier, as real weights have. */
    w[0] = 0.0f;
    if (n > 3) w[n / 2] = 0.7f;
    slm_quantize_row_ref(type, w, row, n, NULL);

    ref->dequantize_row(type, row, wd_ref, n);
    double sum_abs;
    double exact = dot_double(wd_ref, x, n, &sum_abs);
    double tol = DOT_RTOL * sum_abs + 1e-30;

    float r = ref->dot_row(type, row, x, n, tmp);
    CHECK_MSG(fabs(r - exact) <= tol, "ref %s n=%lld: %.9g vs exact %.9g", tn, (long long)n, r,
              exact);

    pv->dequantize_row(type, row, wd, n);
    float max_abs = 0;
    for (int64_t i = 0; i < n; i++) max_abs = fmaxf(max_abs, fabsf(wd_ref[i]));
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
        if (fabsf(wd[i] - wd_ref[i]) > 1e-6f * max_abs) bad = i;
    CHECK_MSG(bad < 0, "%s %s n=%lld: dequantized[%lld] = %.9g, ref %.9g", pv->name, tn,
              (long long)n, (long long)bad, bad < 0 ? 0 : wd[bad], bad < 0 ? 0 : wd_ref[bad]);

    float d = pv->dot_row(type, row, x, n, tmp);
    CHECK_MSG(fabs(d - exact) <= tol, "%s %s n=%lld: %.9g vs exact %.9g (tol %g)", pv->name, tn,
              (long long)n, d, exact, tol);

    /* The provider's promise that slm_matmul's generic batch path relies on
     * (a provider with its own matmul_rows keeps batch and single consistent
     * itself; test_matmul_type checks that). */
    float d2 = pv->matmul_rows ? d : pv->dot_f32(wd, x, n);
    CHECK_MSG(memcmp(&d, &d2, sizeof d) == 0,
              "%s %s n=%lld: dot_row %.9g != dot_f32(dequantize_row) %.9g", pv->name, tn,
              (long long)n, d, d2);

    free(w);
    free(x);
    free(wd_ref);
    free(wd);
    free(tmp);
    free(row);
}

static void test_vector_ops(const slm_provider *pv) {
    static const int64_t lens[] = {0, 1, 7, 8, 9, 31, 32, 33, 100, 1000, 4097};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        int64_t n = lens[k];
        float *a = malloc((size_t)(n + 1) * sizeof *a), *b = malloc((size_t)(n + 1) * sizeof *b);
        float *y1 = malloc((size_t)(n + 1) * sizeof *a), *y2 = malloc((size_t)(n + 1) * sizeof *a);
        fill_normal(a, n, 1.0f);
        fill_normal(b, n, 1.0f);
        double sum_abs;
        double exact = dot_double(a, b, n, &sum_abs);
        float d = pv->dot_f32(a, b, n);
        CHECK_MSG(fabs(d - exact) <= DOT_RTOL * sum_abs, "%s dot_f32 n=%lld: %.9g vs %.9g",
                  pv->name, (long long)n, d, exact);
        fill_normal(y1, n, 1.0f);
        memcpy(y2, y1, (size_t)n * sizeof *y1);
        y1[n] = y2[n] = 42.0f; /* must stay untouched */
        pv->axpy_f32(y1, 0.375f, a, n);
        int ok = y1[n] == 42.0f;
        for (int64_t i = 0; i < n; i++) {
            double e = (double)y2[i] + 0.375 * a[i];
            ok &= fabs(y1[i] - e) <= 1e-6 * (fabs(e) + fabs(y2[i]) + 1.0);
        }
        CHECK_MSG(ok, "%s axpy_f32 n=%lld", pv->name, (long long)n);
        free(a);
        free(b);
        free(y1);
        free(y2);
    }
}

/* ---- matmul -------------------------------------------------------------- */

enum { MM_ROWS = 37, MM_TOK = 5, MM_XPAD = 3, MM_YPAD = 2 };

typedef struct mm_case {
    uint32_t type;
    int64_t n_cols;
    uint8_t *data;
    float *wd; /* reference dequantization, MM_ROWS x n_cols */
    float *X;  /* MM_TOK rows, x_stride apart */
    int64_t x_stride, y_stride;
} mm_case;

/* Bound on |dot(w, x) - dot(w, x8)| when x is rounded to 8-bit blocks of
 * `blk` elements with scale max|x|/127: each element moves by at most half a
 * step. */
static double x8_bound(const float *w, const float *x, int64_t n, int blk) {
    double bound = 0;
    for (int64_t b = 0; b + blk <= n; b += blk) {
        double amax = 0, wsum = 0;
        for (int i = 0; i < blk; i++) {
            amax = fmax(amax, fabs(x[b + i]));
            wsum += fabs(w[b + i]);
        }
        bound += amax / 254.0 * wsum;
    }
    return bound * 1.001;
}

static float *run_matmul(const slm_provider *pv, slm_pool *pool, const mm_case *mc,
                         const slm_matrix *W, int64_t n_tok, const float *X) {
    int nt = slm_pool_threads(pool);
    size_t per = slm_matmul_scratch_floats(mc->n_cols);
    float *scratch = slm_alloc_aligned(per * (size_t)nt, sizeof(float));
    size_t ny = (size_t)(n_tok * mc->y_stride);
    float *Y = malloc(ny * sizeof *Y);
    for (size_t i = 0; i < ny; i++) Y[i] = -12345.0f; /* sentinel in the stride gaps */
    slm_matmul(pv, pool, W, X, n_tok, mc->x_stride, Y, mc->y_stride, scratch);
    free(scratch);
    return Y;
}

/* Every super-block of a long row counts: a row whose weights are zero but
 * in one super-block k (positive there, against positive activations), for
 * k at the start, the end and around 64, must match the oracle within that
 * super-block's own bound, alone and in a batch of 4 tokens (a skipped
 * super-block reads 0; test_matmul_type's bound, summed over a long row,
 * is too loose to see one missing). */
static void test_each_superblock(const slm_provider *pv, slm_pool *pool, uint32_t type,
                                 int64_t nsb) {
    const int64_t n = nsb * 256, ks[] = {0, 62, 63, 64, nsb - 1};
    const size_t rb = row_bytes(type, n);
    uint8_t *row = malloc(rb);
    float *w = calloc((size_t)n, sizeof *w), *wd = malloc((size_t)n * sizeof *wd);
    float *X = malloc((size_t)(4 * n) * sizeof *X), Y[4];
    float *scratch = slm_alloc_aligned(
        slm_matmul_scratch_floats(n) * (size_t)slm_pool_threads(pool), sizeof(float));
    for (int64_t i = 0; i < 4 * n; i++) X[i] = 0.5f + 0.5f * (float)(i % 7) / 7.0f;
    int ok = 1;
    for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
        const int64_t k = ks[q];
        if (k < 0 || k >= nsb) continue;
        memset(w, 0, (size_t)n * sizeof *w);
        for (int64_t i = 0; i < 256; i++) w[256 * k + i] = 0.01f + 0.04f * (float)(i % 5) / 5.0f;
        slm_quantize_row_ref(type, w, row, n, NULL);
        slm_dequantize_row(type, row, wd, n);
        slm_matrix W = {.type = type, .n_cols = n, .n_rows = 1, .row_bytes = rb, .data = row};
        for (int nt = 1; nt <= 4; nt += 3) {
            slm_matmul(pv, pool, &W, X, nt, n, Y, 1, scratch);
            for (int t = 0; t < nt; t++) {
                double sum_abs;
                const double e = dot_double(wd, X + t * n, n, &sum_abs);
                const int x8 = pv->int8_activations ? pv->int8_activations(type) : 0;
                double tol = DOT_RTOL * sum_abs + 1e-30;
                if (x8) tol += x8_bound(wd, X + t * n, n, x8);
                ok &= e > 1.0 && fabs(Y[t] - e) <= tol;
            }
        }
    }
    CHECK_MSG(ok, "%s %s: a super-block of a %lld-block row is not counted", pv->name,
              slm_type_name(type), (long long)nsb);
    free(scratch);
    free(X);
    free(wd);
    free(w);
    free(row);
}

static void test_matmul_type(const slm_provider *pv, slm_pool *pools[3], uint32_t type,
                             int64_t n_cols) {
    const char *tn = slm_type_name(type);
    mm_case mc = {.type = type, .n_cols = n_cols};
    mc.x_stride = n_cols + MM_XPAD;
    mc.y_stride = MM_ROWS + MM_YPAD;
    size_t rb = row_bytes(type, n_cols);
    mc.data = malloc(rb * MM_ROWS);
    mc.wd = malloc((size_t)(MM_ROWS * n_cols) * sizeof(float));
    mc.X = malloc((size_t)(MM_TOK * mc.x_stride) * sizeof(float));
    float *w = malloc((size_t)n_cols * sizeof *w);
    for (int r = 0; r < MM_ROWS; r++) {
        fill_normal(w, n_cols, 0.05f);
        slm_quantize_row_ref(type, w, mc.data + (size_t)r * rb, n_cols, NULL);
        slm_dequantize_row(type, mc.data + (size_t)r * rb, mc.wd + (size_t)r * n_cols, n_cols);
    }
    fill_normal(mc.X, MM_TOK * mc.x_stride, 1.0f);
    slm_matrix W = {
        .type = type, .n_cols = n_cols, .n_rows = MM_ROWS, .row_bytes = rb, .data = mc.data};

    float *Y[3];
    for (int p = 0; p < 3; p++) Y[p] = run_matmul(pv, pools[p], &mc, &W, MM_TOK, mc.X);
    size_t ybytes = (size_t)(MM_TOK * mc.y_stride) * sizeof(float);
    for (int p = 1; p < 3; p++)
        CHECK_MSG(memcmp(Y[0], Y[p], ybytes) == 0, "%s %s: matmul differs between 1 and %d threads",
                  pv->name, tn, slm_pool_threads(pools[p]));

    /* Close to the oracle; stride gaps untouched. With 8-bit or f16
     * activations the tolerance adds their rounding bound (see kernels.h). */
    int x8 = pv->int8_activations ? pv->int8_activations(type) : 0;
    int h16 = pv->f16_activations ? pv->f16_activations(type) : 0;
    int ok = 1, gaps = 1;
    for (int t = 0; t < MM_TOK; t++) {
        for (int r = 0; r < MM_ROWS; r++) {
            double sum_abs;
            const float *wr = mc.wd + (size_t)r * n_cols, *xt = mc.X + t * mc.x_stride;
            double e = dot_double(wr, xt, n_cols, &sum_abs);
            double tol = DOT_RTOL * sum_abs + 1e-30;
            if (x8) tol += x8_bound(wr, xt, n_cols, x8);
            if (h16) tol += ldexp(sum_abs, -11);
            ok &= fabs(Y[0][t * mc.y_stride + r] - e) <= tol;
        }
        for (int r = MM_ROWS; r < mc.y_stride; r++) gaps &= Y[0][t * mc.y_stride + r] == -12345.0f;
    }
    CHECK_MSG(ok, "%s %s: matmul far from the oracle", pv->name, tn);
    CHECK_MSG(gaps, "%s %s: matmul wrote into the y stride gap", pv->name, tn);

    /* One token at a time (the matvec path) gives the same bits as the batch,
     * with 1 and 3 threads. */
    int same = 1;
    for (int t = 0; t < MM_TOK; t++) {
        for (int p = 0; p < 3; p += 2) {
            float *y1 = run_matmul(pv, pools[p], &mc, &W, 1, mc.X + t * mc.x_stride);
            same &= memcmp(y1, Y[0] + t * mc.y_stride, MM_ROWS * sizeof(float)) == 0;
            free(y1);
        }
    }
    CHECK_MSG(same, "%s %s: matvec and batched matmul differ", pv->name, tn);

    /* Without 8-bit or f16 activations every (row, token) is dot_row's bits
     * (kernels.h), whatever path a provider takes (avx512 decodes float
     * rows longer than a column block with its GEMM). */
    if (!x8 && !h16) {
        float *tmp = malloc((size_t)n_cols * sizeof *tmp);
        int as_dot = 1;
        for (int t = 0; t < MM_TOK; t++)
            for (int r = 0; r < MM_ROWS; r++) {
                float d = pv->dot_row(type, mc.data + (size_t)r * rb, mc.X + t * mc.x_stride,
                                      n_cols, tmp);
                as_dot &= memcmp(&d, &Y[0][t * mc.y_stride + r], sizeof d) == 0;
            }
        CHECK_MSG(as_dot, "%s %s n=%lld: matmul differs from dot_row", pv->name, tn,
                  (long long)n_cols);
        free(tmp);
    }

    for (int p = 0; p < 3; p++) free(Y[p]);
    free(w);
    free(mc.data);
    free(mc.wd);
    free(mc.X);
}

/* More tokens than the 8-bit path quantizes at once (and than the GEMM's
 * 3-token tiles): each token still gets the bits it gets alone, and the
 * result does not depend on the thread count. */
static void test_matmul_many_tokens(const slm_provider *pv, slm_pool *pools[3], uint32_t type,
                                    int64_t n_cols) {
    enum { NT = SLM_MATMUL_X8_TOKENS + 7, NR = 11 };
    size_t rb = row_bytes(type, n_cols);
    uint8_t *data = malloc(rb * NR);
    float *w = malloc((size_t)n_cols * sizeof *w);
    for (int r = 0; r < NR; r++) {
        fill_normal(w, n_cols, 0.05f);
        slm_quantize_row_ref(type, w, data + (size_t)r * rb, n_cols, NULL);
    }
    mm_case mc = {.type = type, .n_cols = n_cols, .x_stride = n_cols + 1, .y_stride = NR};
    float *X = malloc((size_t)(NT * mc.x_stride) * sizeof *X);
    fill_normal(X, NT * mc.x_stride, 1.0f);
    slm_matrix W = {.type = type, .n_cols = n_cols, .n_rows = NR, .row_bytes = rb, .data = data};
    float *Y1 = run_matmul(pv, pools[0], &mc, &W, NT, X);
    float *Y2 = run_matmul(pv, pools[1], &mc, &W, NT, X);
    CHECK_MSG(memcmp(Y1, Y2, (size_t)NT * NR * sizeof *Y1) == 0,
              "%s %s: %d tokens differ between 1 and 2 threads", pv->name, slm_type_name(type), NT);
    int same = 1;
    for (int t = 0; t < NT; t++) {
        float *y = run_matmul(pv, pools[0], &mc, &W, 1, X + t * mc.x_stride);
        same &= memcmp(y, Y1 + t * NR, NR * sizeof *y) == 0;
        free(y);
    }
    CHECK_MSG(same, "%s %s: a token differs alone and in a batch of %d", pv->name,
              slm_type_name(type), NT);
    free(Y1);
    free(Y2);
    free(X);
    free(w);
    free(data);
}

/* ---- forward-pass ops (optional provider entries) ------------------------ */

/* slm_matmul_multi gives each matrix the bits slm_matmul gives it, for 1-3
 * threads (so shares that split a matrix inside a 16-row grain, and shares
 * that span two matrices), one token and several; row counts not multiples
 * of the grain. */
static void test_matmul_multi(const slm_provider *pv, slm_pool *pools[3], uint32_t type,
                              int64_t n_cols) {
    enum { NM = 3 };
    static const int64_t rows[NM] = {37, 16, 5};
    static const int64_t toks[] = {1, 3, 17};
    const char *tn = slm_type_name(type);
    const size_t rb = row_bytes(type, n_cols);
    slm_matrix W[NM];
    const slm_matrix *Wp[NM];
    uint8_t *data[NM];
    float *w = malloc((size_t)n_cols * sizeof *w);
    for (int i = 0; i < NM; i++) {
        data[i] = malloc((size_t)rows[i] * rb);
        for (int64_t r = 0; r < rows[i]; r++) {
            fill_normal(w, n_cols, 0.05f);
            slm_quantize_row_ref(type, w, data[i] + (size_t)r * rb, n_cols, NULL);
        }
        W[i] = (slm_matrix){
            .type = type, .n_cols = n_cols, .n_rows = rows[i], .row_bytes = rb, .data = data[i]};
        Wp[i] = &W[i];
    }
    float *X = malloc((size_t)(17 * n_cols) * sizeof *X);
    fill_normal(X, 17 * n_cols, 1.0f);
    float *scratch = slm_alloc_aligned(slm_matmul_scratch_floats(n_cols) * 3, sizeof(float));
    int bad = 0;
    for (size_t k = 0; k < sizeof toks / sizeof toks[0]; k++) {
        const int64_t nt = toks[k];
        float *one[NM], *multi[NM];
        int64_t ys[NM];
        for (int i = 0; i < NM; i++) {
            ys[i] = rows[i] + 3;
            one[i] = calloc((size_t)(nt * ys[i]), sizeof(float));
            multi[i] = calloc((size_t)(nt * ys[i]), sizeof(float));
            slm_matmul(pv, pools[0], &W[i], X, nt, n_cols, one[i], ys[i], scratch);
        }
        for (int p = 0; p < 3; p++) {
            for (int i = 0; i < NM; i++)
                memset(multi[i], 0xff, (size_t)(nt * ys[i]) * sizeof(float));
            slm_matmul_multi(pv, pools[p], NM, Wp, X, nt, n_cols, multi, ys, scratch);
            for (int i = 0; i < NM; i++)
                for (int64_t t = 0; t < nt; t++)
                    bad += memcmp(one[i] + t * ys[i], multi[i] + t * ys[i],
                                  (size_t)rows[i] * sizeof(float)) != 0;
        }
        for (int i = 0; i < NM; i++) {
            free(one[i]);
            free(multi[i]);
        }
    }
    /* a shorter row among them: each matrix still gets slm_matmul's result */
    {
        const int64_t bs = slm_type_get(type)->block_size, nc = n_cols - bs;
        const size_t rbs = row_bytes(type, nc);
        uint8_t *ds = malloc((size_t)rows[1] * rbs);
        for (int64_t r = 0; r < rows[1]; r++) {
            fill_normal(w, nc, 0.05f);
            slm_quantize_row_ref(type, w, ds + (size_t)r * rbs, nc, NULL);
        }
        slm_matrix S = {
            .type = type, .n_cols = nc, .n_rows = rows[1], .row_bytes = rbs, .data = ds};
        const slm_matrix *Wm[2] = {&S, &W[0]}; /* the longer rows second */
        float *one[2], *multi[2];
        const int64_t ys[2] = {rows[1], rows[0]};
        for (int i = 0; i < 2; i++) {
            one[i] = calloc((size_t)(3 * ys[i]), sizeof(float));
            multi[i] = calloc((size_t)(3 * ys[i]), sizeof(float));
            slm_matmul(pv, pools[1], Wm[i], X, 3, n_cols, one[i], ys[i], scratch);
        }
        slm_matmul_multi(pv, pools[1], 2, Wm, X, 3, n_cols, multi, ys, scratch);
        for (int i = 0; i < 2; i++) {
            bad += memcmp(one[i], multi[i], (size_t)(3 * ys[i]) * sizeof(float)) != 0;
            free(one[i]);
            free(multi[i]);
        }
        free(ds);
    }
    CHECK_MSG(bad == 0, "%s %s: slm_matmul_multi differs from slm_matmul in %d (token, matrix)",
              pv->name, tn, bad);
    free(scratch);
    free(X);
    free(w);
    for (int i = 0; i < NM; i++) free(data[i]);
}

/* Greedy decoding's pick, the reference loop every argmax must match. */
static int32_t argmax_ref(const float *x, int32_t n) {
    int32_t b = 0;
    for (int32_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* The provider's to_f16 against base/fp16.h's slm_f32_to_fp16: random
 * values of every magnitude, ties to even, the largest finite halves and
 * overflow, subnormals and underflow, infinities, signed zeros; a NaN stays
 * a NaN. Lengths around the vector widths; nothing past n written. */
static void test_to_f16(const slm_provider *pv) {
    static const int64_t lens[] = {1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 100, 1000};
    static const float special[] = {
        65504.0f,       65519.99f,      65520.0f,       1e9f,           -65520.0f, 6.1035156e-05f,
        5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 1e-10f,         0.0f,      -0.0f,
        INFINITY,       -INFINITY,      1.00048828125f, 1.00146484375f, 2049.0f,   2051.0f};
    const int ns = (int)(sizeof special / sizeof special[0]);
    int bad = 0;
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        const int64_t n = lens[k];
        float *x = malloc((size_t)n * sizeof *x);
        uint16_t *h = malloc((size_t)(n + 1) * sizeof *h);
        for (int64_t i = 0; i < n; i++) {
            /* magnitudes 2^-30 .. 2^20, so every range is covered */
            x[i] = ldexpf(check_rng_uniform(&g_rng) * 2.0f - 1.0f,
                          (int)(check_rng_u64(&g_rng) % 51) - 30);
            if (i % 5 == 1) x[i] = special[(i / 5) % ns];
        }
        if (n > 2) x[n - 2] = NAN;
        h[n] = 0xabcd;
        pv->to_f16(h, x, n);
        for (int64_t i = 0; i < n; i++) {
            uint16_t want = slm_f32_to_fp16(x[i]);
            int ok =
                x[i] != x[i] ? (h[i] & 0x7c00u) == 0x7c00u && (h[i] & 0x3ffu) != 0 : h[i] == want;
            if (!ok && bad++ < 5)
                fprintf(stderr, "to_f16 %s: %.9g -> %04x, expected %04x\n", pv->name, (double)x[i],
                        h[i], want);
        }
        bad += h[n] != 0xabcd;
        free(x);
        free(h);
    }
    CHECK_MSG(bad == 0, "to_f16 %s: %d values differ from slm_f32_to_fp16", pv->name, bad);
}

/* The provider's argmax_f32 (or, with pv NULL, kernels/argmax.h as this file
 * compiles it, the sampler's fallback) against argmax_ref: random values,
 * ties (first wins; -0 and +0 tie), NaNs anywhere and at 0, infinities, all
 * -inf; lengths around the 16 lanes and a vocabulary's. */
static void test_argmax(const slm_provider *pv) {
    static const int32_t lens[] = {1, 2, 15, 16, 17, 31, 32, 33, 100, 1000, 151936};
    const char *name = pv ? pv->name : "kernels/argmax.h";
    float *x = malloc(151936 * sizeof *x);
    if (!x) return;
    int bad = 0, cases = 0;
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        const int32_t n = lens[k];
        for (int pat = 0; pat < 9; pat++) {
            fill_normal(x, n, 3.0f);
            const int32_t a = (int32_t)(check_rng_u64(&g_rng) % (uint64_t)n);
            const int32_t b = (int32_t)(check_rng_u64(&g_rng) % (uint64_t)n);
            switch (pat) {
            case 1: /* the maximum twice: the first wins */
                x[a] = x[b] = 100.0f;
                break;
            case 2: /* NaNs, one of them before the maximum */
                for (int32_t i = 0; i < n; i += 7) x[i] = NAN;
                x[b] = 50.0f;
                break;
            case 3: /* a NaN at 0 wins (nothing compares greater) */
                x[0] = NAN;
                x[b] = 50.0f;
                break;
            case 4: /* all -inf, then with one NaN */
                for (int32_t i = 0; i < n; i++) x[i] = -INFINITY;
                if (n > 1) x[b] = b ? NAN : -INFINITY;
                break;
            case 5: /* zeros of both signs the largest */
                for (int32_t i = 0; i < n; i++) x[i] = -fabsf(x[i]) - 1.0f;
                x[a] = -0.0f;
                x[b] = 0.0f;
                break;
            case 6: /* +inf twice */
                x[a] = x[b] = INFINITY;
                break;
            case 7: /* -inf at 0, the rest finite */
                x[0] = -INFINITY;
                break;
            case 8: /* all equal: 0 */
                for (int32_t i = 0; i < n; i++) x[i] = 1.5f;
                break;
            default:
                break;
            }
            const int32_t want = argmax_ref(x, n);
            const int32_t got = pv ? pv->argmax_f32(x, n) : slm_argmax_lanes(x, n);
            cases++;
            if (got != want && bad++ < 5)
                fprintf(stderr, "argmax %s: n %d pattern %d: %d, expected %d\n", name, n, pat, got,
                        want);
        }
    }
    CHECK_MSG(bad == 0, "argmax %s: %d of %d cases differ from the scalar loop", name, bad, cases);
    free(x);
}

static void test_forward_ops(const slm_provider *pv) {
    static const int64_t lens[] = {1, 7, 16, 17, 33, 576, 1000};
    if (pv->rmsnorm) {
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            int64_t n = lens[k];
            float *x = malloc((size_t)(n + 1) * sizeof *x), *w = malloc((size_t)n * sizeof *w);
            float *o = malloc((size_t)(n + 1) * sizeof *o);
            fill_normal(x, n, 3.0f);
            fill_normal(w, n, 1.0f);
            o[n] = 42.0f;
            pv->rmsnorm(o, x, w, n, 1e-5f);
            double ss = 0;
            for (int64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
            double sc = 1.0 / sqrt(ss / (double)n + 1e-5);
            int ok = o[n] == 42.0f;
            for (int64_t i = 0; i < n; i++) {
                double e = x[i] * sc * w[i];
                ok &= fabs(o[i] - e) <= 2e-6 * fabs(e) + 1e-30;
            }
            CHECK_MSG(ok, "%s rmsnorm n=%lld", pv->name, (long long)n);
            free(x);
            free(w);
            free(o);
        }
    }
    if (pv->swiglu) {
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            int64_t n = lens[k];
            float *g = malloc((size_t)(n + 1) * sizeof *g), *u = malloc((size_t)n * sizeof *u);
            float *g0 = malloc((size_t)n * sizeof *g0);
            fill_normal(g, n, 4.0f);
            fill_normal(u, n, 1.0f);
            /* the clamped ends of exp: silu(-120) = -0, silu(120) = 120 */
            if (n > 3) {
                g[0] = -120.0f;
                g[1] = 120.0f;
                g[2] = -30.0f;
            }
            memcpy(g0, g, (size_t)n * sizeof *g);
            g[n] = 42.0f;
            pv->swiglu(g, u, n);
            int ok = g[n] == 42.0f;
            for (int64_t i = 0; i < n; i++) {
                double e = g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
                ok &= fabs(g[i] - e) <= 2e-6 * fabs(e) + 1e-30;
            }
            CHECK_MSG(ok, "%s swiglu n=%lld", pv->name, (long long)n);
            free(g);
            free(u);
            free(g0);
        }
    }
    if (pv->attend) {
        static const int32_t hds[] = {8, 33, 64, 80, 128};
        static const int32_t poss[] = {1, 2, 15, 16, 17, 100, 200};
        for (int kt = 0; kt < 2; kt++) {
            /* an f32 cache, then an f16 one: the kernel must read its halves
             * exactly, so the same reference over the rounded values holds */
            const uint32_t kv_type = kt ? SLM_TYPE_F16 : SLM_TYPE_F32;
            for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++) {
                for (size_t b = 0; b < sizeof poss / sizeof poss[0]; b++) {
                    const int32_t hd = hds[a], np = poss[b];
                    const int64_t stride = hd * 2 + 3;
                    /* keys tiled as the cache holds them (kernels.h), the
                     * last tile's unused positions filled with garbage that
                     * must not matter; values by position */
                    const int64_t ntile = (np + SLM_KV_TILE - 1) / SLM_KV_TILE * SLM_KV_TILE;
                    float *q = malloc((size_t)hd * sizeof *q);
                    float *kv = malloc((size_t)(2 * np * stride) * sizeof *kv);
                    uint16_t *kvh = malloc((size_t)(2 * np * stride) * sizeof *kvh);
                    float *kt32 = malloc((size_t)(ntile * stride) * sizeof *kt32);
                    uint16_t *kt16 = malloc((size_t)(ntile * stride) * sizeof *kt16);
                    float *att = malloc((size_t)(np + 1) * sizeof *att);
                    float *out = malloc((size_t)(hd + 1) * sizeof *out);
                    double *e = malloc((size_t)np * sizeof *e);
                    fill_normal(q, hd, 2.0f);
                    fill_normal(kv, 2 * np * stride, 2.0f);
                    for (int64_t i = 0; i < 2 * np * stride; i++) {
                        kvh[i] = slm_f32_to_fp16(kv[i]);
                        if (kt) kv[i] = slm_fp16_to_f32(kvh[i]);
                    }
                    const float *k = kv, *v = kv + np * stride;
                    for (int64_t i = 0; i < ntile * stride; i++) {
                        kt32[i] = i % 3 ? NAN : 1e30f;
                        kt16[i] = i % 3 ? 0x7e00 : 0x7c00; /* NaN, inf */
                    }
                    for (int32_t p = 0; p < np; p++)
                        for (int32_t d = 0; d < hd; d++) {
                            kt32[slm_kv_tile_at(p, d, stride)] = k[p * stride + d];
                            kt16[slm_kv_tile_at(p, d, stride)] = kvh[p * stride + d];
                        }
                    const void *kk = kt ? (const void *)kt16 : (const void *)kt32;
                    const void *vv = kt ? (const void *)(kvh + np * stride) : (const void *)v;
                    float scale = 1.0f / sqrtf((float)hd);
                    out[hd] = 42.0f;
                    att[np] = 42.0f;
                    pv->attend(q, 1, kk, vv, kv_type, stride, np, hd, scale, att, out);
                    double mx = -INFINITY, sum = 0;
                    for (int32_t p = 0; p < np; p++) {
                        double s = 0;
                        for (int32_t i = 0; i < hd; i++) s += (double)q[i] * k[p * stride + i];
                        e[p] = s * scale;
                        mx = fmax(mx, e[p]);
                    }
                    for (int32_t p = 0; p < np; p++) sum += e[p] = exp(e[p] - mx);
                    int ok = out[hd] == 42.0f && att[np] == 42.0f;
                    for (int32_t i = 0; i < hd; i++) {
                        double o = 0, oabs = 0;
                        for (int32_t p = 0; p < np; p++) {
                            o += e[p] / sum * v[p * stride + i];
                            oabs += e[p] / sum * fabs(v[p * stride + i]);
                        }
                        ok &= fabs(out[i] - o) <= 1e-5 * oabs + 1e-30;
                    }
                    CHECK_MSG(ok, "%s attend (%s cache) hd=%d n_pos=%d", pv->name,
                              kt ? "f16" : "f32", hd, np);
                    /* three heads on the same K/V at once: each head's bits are
                     * those it gets alone */
                    {
                        enum { NQ = 3 };
                        float *q3 = malloc((size_t)(NQ * hd) * sizeof *q3);
                        float *att3 = malloc((size_t)(NQ * np + 1) * sizeof *att3);
                        float *out3 = malloc((size_t)(NQ * hd + 1) * sizeof *out3);
                        float *one = malloc((size_t)hd * sizeof *one);
                        fill_normal(q3, NQ * hd, 2.0f);
                        att3[NQ * np] = out3[NQ * hd] = 42.0f;
                        pv->attend(q3, NQ, kk, vv, kv_type, stride, np, hd, scale, att3, out3);
                        int same = att3[NQ * np] == 42.0f && out3[NQ * hd] == 42.0f;
                        for (int g = 0; g < NQ; g++) {
                            pv->attend(q3 + g * hd, 1, kk, vv, kv_type, stride, np, hd, scale, att,
                                       one);
                            same &= !memcmp(one, out3 + g * hd, (size_t)hd * sizeof *one);
                        }
                        CHECK_MSG(same,
                                  "%s attend of %d heads at once (%s cache) hd=%d n_pos=%d: not "
                                  "each head's bits alone",
                                  pv->name, NQ, kt ? "f16" : "f32", hd, np);
                        free(q3);
                        free(att3);
                        free(out3);
                        free(one);
                    }
                    free(q);
                    free(kv);
                    free(kvh);
                    free(kt32);
                    free(kt16);
                    free(att);
                    free(out);
                    free(e);
                }
            }
        }
    }
}

/* n bytes that end flush against an inaccessible page (as the last tensor of
 * a mapped model file can); *map and *map_len are for munmap. NULL on
 * failure. */
static uint8_t *guarded(size_t n, void **map, size_t *map_len) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t len = (n + page - 1) / page * page + page;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (mprotect((uint8_t *)m + len - page, page, PROT_NONE) != 0) {
        munmap(m, len);
        return NULL;
    }
    *map = m;
    *map_len = len;
    return (uint8_t *)m + len - page - n;
}

/* Weights and activations that end right before an inaccessible page: no
 * kernel may read past a row's last block or a token's last element, in
 * decode or prefill, ragged row ends included (a read past the end faults,
 * and the test fails). The results equal those from ordinary heap copies. */
static void test_matmul_guard(const slm_provider *pv, slm_pool *pool, uint32_t type,
                              int64_t n_cols) {
    enum { NR = 5, NT = 6 };
    const char *tn = slm_type_name(type);
    size_t rb = row_bytes(type, n_cols);
    const size_t wbytes = NR * rb, xbytes = (size_t)(NT * n_cols) * sizeof(float);
    void *wmap = NULL, *xmap = NULL;
    size_t wlen = 0, xlen = 0;
    uint8_t *data = guarded(wbytes, &wmap, &wlen), *xraw = guarded(xbytes, &xmap, &xlen);
    CHECK_MSG(data && xraw, "%s: no guarded mapping", tn);
    if (!data || !xraw) {
        if (wmap) munmap(wmap, wlen);
        if (xmap) munmap(xmap, xlen);
        return;
    }
    float *X = (float *)(void *)xraw, *w = malloc((size_t)n_cols * sizeof *w);
    for (int r = 0; r < NR; r++) {
        fill_normal(w, n_cols, 0.05f);
        slm_quantize_row_ref(type, w, data + (size_t)r * rb, n_cols, NULL);
    }
    fill_normal(X, NT * n_cols, 1.0f);
    uint8_t *data_heap = malloc(wbytes);
    float *X_heap = malloc(xbytes);
    memcpy(data_heap, data, wbytes);
    memcpy(X_heap, X, xbytes);
    mm_case mc = {.type = type, .n_cols = n_cols, .x_stride = n_cols, .y_stride = NR};
    slm_matrix W = {.type = type, .n_cols = n_cols, .n_rows = NR, .row_bytes = rb, .data = data};
    slm_matrix Wh = W;
    Wh.data = data_heap;
    const int64_t toks[2] = {1, NT};
    for (int k = 0; k < 2; k++) {
        /* the last token: its row ends at the guard */
        const float *xg = X + (NT - toks[k]) * n_cols, *xh = X_heap + (NT - toks[k]) * n_cols;
        float *yg = run_matmul(pv, pool, &mc, &W, toks[k], xg);
        float *yh = run_matmul(pv, pool, &mc, &Wh, toks[k], xh);
        CHECK_MSG(memcmp(yg, yh, (size_t)(toks[k] * NR) * sizeof *yg) == 0,
                  "%s %s n=%lld: %lld tokens at a guard page differ from heap copies", pv->name, tn,
                  (long long)n_cols, (long long)toks[k]);
        free(yg);
        free(yh);
    }
    free(w);
    free(data_heap);
    free(X_heap);
    munmap(wmap, wlen);
    munmap(xmap, xlen);
}

/* Batches of every awkward size, past the 4-row and 4-token register tiles
 * and the 128-token activation groups of the int8 GEMM: each token gets the
 * bits it gets alone, with 1 and 3 threads. */
static void test_matmul_batch_sizes(const slm_provider *pv, slm_pool *pools[3], uint32_t type,
                                    int64_t n_cols) {
    enum { NR = 9, MAXT = 131 };
    static const int64_t batches[] = {2, 3, 5, 9, 33, 70, 131};
    size_t rb = row_bytes(type, n_cols);
    uint8_t *data = malloc(rb * NR);
    float *w = malloc((size_t)n_cols * sizeof *w);
    for (int r = 0; r < NR; r++) {
        fill_normal(w, n_cols, 0.05f);
        slm_quantize_row_ref(type, w, data + (size_t)r * rb, n_cols, NULL);
    }
    mm_case mc = {.type = type, .n_cols = n_cols, .x_stride = n_cols, .y_stride = NR};
    float *X = malloc((size_t)(MAXT * n_cols) * sizeof *X);
    fill_normal(X, MAXT * n_cols, 1.0f);
    slm_matrix W = {.type = type, .n_cols = n_cols, .n_rows = NR, .row_bytes = rb, .data = data};
    float *alone = malloc((size_t)(MAXT * NR) * sizeof *alone);
    for (int t = 0; t < MAXT; t++) {
        float *y = run_matmul(pv, pools[0], &mc, &W, 1, X + t * n_cols);
        memcpy(alone + t * NR, y, NR * sizeof *y);
        free(y);
    }
    for (size_t k = 0; k < sizeof batches / sizeof batches[0]; k++) {
        for (int p = 0; p < 3; p += 2) {
            float *Y = run_matmul(pv, pools[p], &mc, &W, batches[k], X);
            CHECK_MSG(memcmp(Y, alone, (size_t)(batches[k] * NR) * sizeof *Y) == 0,
                      "%s %s n=%lld: a batch of %lld differs from its tokens alone (%d threads)",
                      pv->name, slm_type_name(type), (long long)n_cols, (long long)batches[k],
                      slm_pool_threads(pools[p]));
            free(Y);
        }
    }
    free(alone);
    free(X);
    free(w);
    free(data);
}

/* ---- selection ----------------------------------------------------------- */

static const slm_provider *expected_best(void) {
    for (const slm_provider *const *p = slm_providers_all(); *p; p++)
        if ((*p)->available()) return *p;
    return NULL;
}

static void test_selection(void) {
    const slm_provider *ref = &slm_provider_ref;
    const slm_provider *best = expected_best();
    CHECK(best != NULL);
    CHECK(slm_provider_find("ref") == ref);
    CHECK(slm_provider_find("nonexistent") == NULL);
    CHECK(slm_provider_find(NULL) == NULL);
    CHECK(slm_provider_find("") == NULL);
    int has_ref = 0;
    for (const slm_provider *const *p = slm_providers_all(); *p; p++) has_ref |= *p == ref;
    CHECK(has_ref);
    CHECK(ref->available());

    const char *a[] = {"nonexistent", "ref"};
    CHECK(slm_provider_select(a, 2) == ref);
    CHECK(slm_provider_select(NULL, 0) == best);
    CHECK(slm_provider_select(a, 0) == best);
    const char *b[] = {"nonexistent"};
    CHECK(slm_provider_select(b, 1) == best);
    const char *c[] = {" REF "};
    CHECK(slm_provider_select(c, 1) == ref);
    const char *d[] = {"nope, ref", "avx2"};
    CHECK(slm_provider_select(d, 2) == ref);
    const char *e[] = {NULL, "", "auto"};
    CHECK(slm_provider_select(e, 3) == best);
#if defined(__x86_64__) || defined(__i386__)
    const char *f[] = {"avx2", "ref"};
    CHECK(slm_provider_select(f, 2) == (slm_provider_avx2.available() ? &slm_provider_avx2 : ref));
    CHECK(slm_provider_find("AVX2") == &slm_provider_avx2);
#endif
#if defined(__x86_64__)
    /* avx512 is preferred when the CPU has it, and falls back to the next
     * name in the list when it does not. */
    CHECK(slm_provider_find("avx512") == &slm_provider_avx512);
    CHECK(slm_providers_all()[0] == &slm_provider_avx512);
    const char *g[] = {"avx512", "avx2", "ref"};
    const slm_provider *want_g = slm_provider_avx512.available() ? &slm_provider_avx512
                                 : slm_provider_avx2.available() ? &slm_provider_avx2
                                                                 : ref;
    CHECK(slm_provider_select(g, 3) == want_g);
    if (slm_provider_avx512.available()) CHECK(best == &slm_provider_avx512);
    /* avx512 needs everything avx2 needs */
    if (slm_provider_avx512.available()) CHECK(slm_provider_avx2.available());
#endif
#if defined(__aarch64__)
    /* neon is on every AArch64 CPU and preferred to ref; which integer dot
     * it uses is printed for scripts/test-arm64.sh to check. */
    CHECK(slm_provider_find("NEON") == &slm_provider_neon);
    CHECK(slm_provider_neon.available());
    CHECK(best == &slm_provider_neon);
    const char *h[] = {"avx2", "neon", "ref"};
    CHECK(slm_provider_select(h, 3) == &slm_provider_neon);
    printf("neon: sdot %s\n", slm_neon_dotprod() ? "yes" : "no");
#endif

    CHECK(slm_kernels_support(SLM_TYPE_F32));
    CHECK(slm_kernels_support(SLM_TYPE_F16));
    CHECK(slm_kernels_support(SLM_TYPE_BF16));
    CHECK(!slm_kernels_support(16)); /* iq2_xxs: known, not decoded */
    CHECK(!slm_kernels_support(4));  /* removed q4_2 */
    CHECK(!slm_kernels_support(1000));
    CHECK(slm_matmul_scratch_floats(1) >= 1);
    CHECK(slm_matmul_scratch_floats(4097) >= 4097);
    CHECK(slm_matmul_scratch_floats(100) % 16 == 0);
}

int main(void) {
    test_selection();
    test_argmax(NULL);

    static const int64_t float_lens[] = {1, 7, 31, 33, 64, 100, 1000, 4097};
    static const int64_t block_counts[] = {1, 2, 3, 5, 8};
    slm_pool *pools[3] = {NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) CHECK_OK(slm_pool_new(p + 1, &pools[p]));
    if (!pools[0] || !pools[1] || !pools[2]) return check_finish();

    int n_types = 0;
    for (const slm_provider *const *pp = slm_providers_all(); *pp; pp++) {
        const slm_provider *pv = *pp;
        if (!pv->available()) {
            printf("provider %s: not available on this CPU, skipped\n", pv->name);
            continue;
        }
        test_vector_ops(pv);
        test_forward_ops(pv);
        if (pv->argmax_f32) test_argmax(pv);
        if (pv->to_f16) test_to_f16(pv);
        for (uint32_t t = 0; t < SLM_TYPE_COUNT; t++) {
            if (!type_testable(t)) continue;
            if (pp == slm_providers_all()) n_types++;
            uint32_t bs = slm_type_get(t)->block_size;
            if (bs == 1) {
                for (size_t k = 0; k < sizeof float_lens / sizeof float_lens[0]; k++)
                    test_rows(pv, t, float_lens[k]);
            } else {
                for (size_t k = 0; k < sizeof block_counts / sizeof block_counts[0]; k++)
                    test_rows(pv, t, block_counts[k] * bs);
            }
            test_matmul_type(pv, pools, t, bs == 1 ? 100 : 2 * (int64_t)bs);
            /* Long rows: several 32-element steps plus a ragged tail. */
            if (bs == 1) test_matmul_type(pv, pools, t, 1000);
            /* Longer than a GEMM column block (avx512: 2048) with a ragged
             * tail: accumulators carried across blocks. */
            if (bs == 1) test_matmul_type(pv, pools, t, 4500);
            /* 32-blocks: several whole 4-block groups (avx512 q4_0 works in
             * quads of blocks) and one block over. */
            if (bs == 32) test_matmul_type(pv, pools, t, 13 * 32);
            /* avx512 q4_0/q5_0/q8_0 take quads in pairs (8 blocks): a whole
             * pair, then every ragged last pair (1-7 blocks over). */
            if (bs == 32)
                for (int64_t over = 0; over < 8; over++)
                    test_matmul_type(pv, pools, t, (8 + over) * 32);
            /* Rows of 16-47 blocks (4-12 quads, odd and even, ragged),
             * and rows longer than the avx512 prefill's pass of 16 quads:
             * two passes and an odd quad over, five passes and a ragged
             * end (accumulators carried between passes). */
            if (bs == 32) {
                static const int64_t blocks[] = {16, 17, 18, 24, 25, 32, 33, 40, 47, 132, 277};
                for (size_t k = 0; k < sizeof blocks / sizeof blocks[0]; k++)
                    test_matmul_type(pv, pools, t, blocks[k] * 32);
            }
            /* Super-blocks: 1-9, so every tail after whole groups of four
             * (avx512 sums the q4_k/q5_k minimums four super-blocks at a
             * time, and its decode takes them in pairs) is met. */
            if (bs == 256)
                for (int64_t nsb = 1; nsb <= 9; nsb++) test_matmul_type(pv, pools, t, nsb * 256);
            /* and long rows, one super-block at a time */
            if (bs == 256) {
                test_matmul_type(pv, pools, t, 65 * 256);
                test_each_superblock(pv, pools[1], t, 65);
                test_each_superblock(pv, pools[1], t, 129);
            }
            test_matmul_many_tokens(pv, pools, t, bs == 1 ? 77 : 3 * (int64_t)bs);
            test_matmul_batch_sizes(pv, pools, t, bs == 1 ? 45 : (bs == 32 ? 5 : 2) * (int64_t)bs);
            test_matmul_guard(pv, pools[1], t, bs == 1 ? 45 : (bs == 32 ? 5 : 3) * (int64_t)bs);
            test_matmul_multi(pv, pools, t, bs == 1 ? 96 : (bs == 32 ? 9 : 2) * (int64_t)bs);
            if (bs == 1) test_matmul_guard(pv, pools[1], t, 4500);
        }
        printf("provider %s: tested\n", pv->name);
    }
    /* At least the float types and the common block formats are covered. */
    CHECK(n_types >= 3);
    printf("%d types tested\n", n_types);
    for (int p = 0; p < 3; p++) slm_pool_free(pools[p]);
    return check_finish();
}
