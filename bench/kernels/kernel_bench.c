/* slm_kernel_bench: what the machine can do, next to what the decode kernels
 * get out of it. Not a test and not part of slm: a tool for kernel work,
 * whose numbers go into docs/PERFORMANCE.md with the command that made them.
 *
 *   slm_kernel_bench [--types q4_0,q8_0,...] [--provider NAME] [--threads N]
 *                    [--cols N] [--mib N] [--tokens N]
 *
 * For each type: one-token matrix-vector products (slm_matmul with one
 * token, the decode path) over a matrix that fits in L2 (256 rows) and one
 * of --mib MiB (default 512, streamed from memory), on 1 and N threads, in
 * GB/s of weights read and ns per 64 weights. With AVX-512 it first prints
 * the per-core issue rate of 512-bit FMA and VNNI vpdpbusd and the latency
 * of a dependent FMA, the instructions the int8 kernels are built from, and
 * the rate of vpdpbusd paired with a multiply, FMA, convert, unpack or add:
 * which of them compete with it for a pipe. With --tokens N (N > 1) it also
 * times the prefill path: one slm_matmul of N tokens over 1024 rows, in
 * multiply-adds per ns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/threadpool.h"
#include "bench_clock.h"
#include "kernels/kernels.h"
#include "quant/types.h"

#if defined(__x86_64__)
double kb_fma_per_ns(int64_t iters);
double kb_dpbusd_per_ns(int64_t iters);
double kb_fma_latency_ns(int64_t iters);
double kb_dpbusd_with_per_ns(int other, int64_t iters);
#endif

static void usage(void) {
    printf(
        "usage: slm_kernel_bench [--types LIST] [--provider NAME] [--threads N] [--cols N] "
        "[--mib N] [--tokens N]\n"
        "  --types     comma list of weight types (default q4_0,q8_0,q4_k,q6_k,f16)\n"
        "  --provider  kernel provider (default: best available)\n"
        "  --threads   threads for the second run (default 2)\n"
        "  --cols      row length, a multiple of the types' block size (default 2048)\n"
        "  --mib       size of the streamed matrix in MiB (default 512)\n"
        "  --tokens    also time a batched matmul (prefill) of this many tokens (default 0: no)\n");
}

/* Seconds per slm_matmul of n_tok tokens over W, best of `reps` after one
 * untimed call. */
static double time_matmul(const slm_provider *pv, slm_pool *pool, const slm_matrix *W,
                          const float *x, int64_t n_tok, float *y, float *scratch, int reps) {
    slm_matmul(pv, pool, W, x, n_tok, W->n_cols, y, W->n_rows, scratch);
    double best = 1e30;
    for (int k = 0; k < reps; k++) {
        double t = kb_now();
        slm_matmul(pv, pool, W, x, n_tok, W->n_cols, y, W->n_rows, scratch);
        t = kb_now() - t;
        if (t < best) best = t;
    }
    return best;
}

/* The prefill path: n_tok tokens over 1024 copies of `row`, on each pool. */
static int bench_prefill(const slm_provider *pv, slm_pool *pools[2], uint32_t type, int64_t n,
                         const uint8_t *row, size_t rb, int64_t n_tok, float *scratch) {
    enum { ROWS = 1024 };
    uint8_t *data = malloc(rb * ROWS);
    float *X = malloc((size_t)(n_tok * n) * sizeof *X);
    float *Y = malloc((size_t)(n_tok * ROWS) * sizeof *Y);
    if (!data || !X || !Y) {
        fprintf(stderr, "slm_kernel_bench: out of memory\n");
        free(data);
        free(X);
        free(Y);
        return 1;
    }
    for (int r = 0; r < ROWS; r++) memcpy(data + (size_t)r * rb, row, rb);
    uint32_t s = 777;
    for (int64_t i = 0; i < n_tok * n; i++) {
        s = s * 1664525u + 1013904223u;
        X[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    slm_matrix W = {.type = type, .n_cols = n, .n_rows = ROWS, .row_bytes = rb, .data = data};
    for (int p = 0; p < 2; p++) {
        double t = time_matmul(pv, pools[p], &W, X, n_tok, Y, scratch, 5);
        double macs = (double)ROWS * (double)n * (double)n_tok;
        printf("%-6s prefill  %4lld tokens %4d rows  %d thread%s  %7.1f multiply-adds/ns\n",
               slm_type_name(type), (long long)n_tok, ROWS, slm_pool_threads(pools[p]),
               slm_pool_threads(pools[p]) > 1 ? "s" : " ", macs / t / 1e9);
    }
    free(data);
    free(X);
    free(Y);
    return 0;
}

static int bench_type(const slm_provider *pv, slm_pool *pools[2], uint32_t type, int64_t n,
                      size_t mib, int64_t n_tok) {
    uint64_t rb64;
    if (slm_row_bytes(type, (uint64_t)n, &rb64) != SLM_OK) {
        fprintf(stderr, "slm_kernel_bench: %s rows of %lld columns are not possible\n",
                slm_type_name(type), (long long)n);
        return 1;
    }
    const size_t rb = (size_t)rb64;
    const int64_t rows[2] = {256, (int64_t)((mib << 20) / rb)};
    float *w = malloc((size_t)n * sizeof *w), *x = malloc((size_t)n * sizeof *x);
    uint8_t *row = malloc(rb);
    size_t nthreads = (size_t)slm_pool_threads(pools[1]);
    float *scratch = malloc(slm_matmul_scratch_floats(n) * sizeof(float) * nthreads);
    if (!w || !x || !row || !scratch) {
        fprintf(stderr, "slm_kernel_bench: out of memory\n");
        return 1;
    }
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
        s = s * 1664525u + 1013904223u;
        x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    slm_quantize_row_ref(type, w, row, n, NULL);
    for (int k = 0; k < 2; k++) {
        /* in 2 MiB pages where the kernel gives them, as the runtime's copied
         * weights are (slm_load_file): 4 KiB pages read slower */
        const size_t huge = (size_t)2 << 20;
        const size_t len = (rb * (size_t)rows[k] + huge - 1) / huge * huge;
        uint8_t *data = aligned_alloc(huge, len);
#ifdef MADV_HUGEPAGE
        if (data) (void)madvise(data, len, MADV_HUGEPAGE);
#endif
        float *y = malloc((size_t)rows[k] * sizeof *y);
        if (!data || !y) {
            fprintf(stderr, "slm_kernel_bench: out of memory\n");
            return 1;
        }
        for (int64_t r = 0; r < rows[k]; r++) memcpy(data + (size_t)r * rb, row, rb);
        slm_matrix W = {
            .type = type, .n_cols = n, .n_rows = rows[k], .row_bytes = rb, .data = data};
        for (int p = 0; p < 2; p++) {
            double t = time_matmul(pv, pools[p], &W, x, 1, y, scratch, k == 0 ? 200 : 5);
            double bytes = (double)rb * (double)rows[k];
            printf("%-6s %-8s %6.1f MiB  %d thread%s  %6.1f GB/s  %6.2f ns per 64 weights\n",
                   slm_type_name(type), k == 0 ? "in L2" : "streamed", bytes / 1048576.0,
                   slm_pool_threads(pools[p]), slm_pool_threads(pools[p]) > 1 ? "s" : " ",
                   bytes / t / 1e9, t * 1e9 / ((double)rows[k] * (double)n / 64.0));
        }
        free(data);
        free(y);
    }
    if (n_tok > 1 && bench_prefill(pv, pools, type, n, row, rb, n_tok, scratch)) return 1;
    free(w);
    free(x);
    free(row);
    free(scratch);
    return 0;
}

int main(int argc, char **argv) {
    const char *types = "q4_0,q8_0,q4_k,q6_k,f16", *pname = NULL;
    int threads = 2;
    int64_t n = 2048;
    size_t mib = 512;
    int64_t n_tok = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (!v) {
            fprintf(stderr, "slm_kernel_bench: unknown option or missing value: %s\n", a);
            return 2;
        }
        if (!strcmp(a, "--types"))
            types = v;
        else if (!strcmp(a, "--provider"))
            pname = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--cols"))
            n = atoll(v);
        else if (!strcmp(a, "--mib"))
            mib = (size_t)atoll(v);
        else if (!strcmp(a, "--tokens"))
            n_tok = atoll(v);
        else {
            fprintf(stderr, "slm_kernel_bench: unknown option: %s\n", a);
            return 2;
        }
        i++;
    }
    if (threads < 1 || threads > SLM_MAX_THREADS || n < 32 || n % 32 != 0 || mib < 1 || n_tok < 0 ||
        n_tok > 4096) {
        fprintf(stderr,
                "slm_kernel_bench: need --threads 1..%d, --cols a multiple of 32 (of 256 for "
                "k-quants), --mib >= 1, --tokens 0..4096\n",
                SLM_MAX_THREADS);
        return 2;
    }
    const slm_provider *pv = slm_provider_select(pname ? &pname : NULL, pname ? 1 : 0);
    printf("provider %s, %lld columns\n", pv->name, (long long)n);
#if defined(__x86_64__)
    /* the avx512 provider's int8 path is there exactly when the CPU has
     * AVX-512 F/BW/VL/DQ and VNNI, all the pipe measurements use */
    if (slm_provider_avx512.available() && slm_provider_avx512.int8_activations(SLM_TYPE_Q8_0)) {
        printf("per core: 512-bit FMA %.2f/ns, vpdpbusd %.2f/ns (independent chains); "
               "dependent FMA %.2f ns\n",
               kb_fma_per_ns(20000000), kb_dpbusd_per_ns(20000000), kb_fma_latency_ns(100000000));
        static const char *const other[] = {"multiply", "FMA", "convert", "unpack", "add"};
        printf("vpdpbusd + one of each, pairs/ns (near the vpdpbusd rate: separate pipes; near "
               "half: shared):");
        for (int k = 0; k < 5; k++)
            printf(" %s %.2f", other[k], kb_dpbusd_with_per_ns(k, 20000000));
        printf("\n");
    }
#endif
    slm_pool *pools[2];
    if (slm_pool_new(1, &pools[0]) != SLM_OK || slm_pool_new(threads, &pools[1]) != SLM_OK) {
        fprintf(stderr, "slm_kernel_bench: cannot start threads\n");
        return 1;
    }
    char *list = strdup(types);
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !rc;
         t = strtok_r(NULL, ",", &save)) {
        int type = slm_type_from_name(t);
        if (type < 0 || !slm_kernels_support((uint32_t)type) ||
            !slm_type_get((uint32_t)type)->can_quantize) {
            fprintf(stderr, "slm_kernel_bench: unknown or unsupported type: %s\n", t);
            rc = 2;
            break;
        }
        rc = bench_type(pv, pools, (uint32_t)type, n, mib, n_tok);
    }
    free(list);
    slm_pool_free(pools[0]);
    slm_pool_free(pools[1]);
    return rc;
}
