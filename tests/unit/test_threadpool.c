/* Thread pool: every index visited exactly once by one thread, ranges
 * contiguous, aligned to the grain and in thread order; no deadlock over
 * many back-to-back jobs; create/free cycles; inline runs. */
#include <stdatomic.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "check.h"

#define MAX_N 1000

typedef struct visit_ctx {
    atomic_int hits[MAX_N];
    int64_t lo[SLM_MAX_THREADS], hi[SLM_MAX_THREADS]; /* range seen by each thread */
    atomic_int calls[SLM_MAX_THREADS];
    atomic_int bad_thread;
} visit_ctx;

static void visit(void *vctx, int64_t i0, int64_t i1, int thread) {
    visit_ctx *c = vctx;
    if (thread < 0 || thread >= SLM_MAX_THREADS || i0 >= i1) {
        atomic_fetch_add(&c->bad_thread, 1);
        return;
    }
    atomic_fetch_add(&c->calls[thread], 1);
    c->lo[thread] = i0;
    c->hi[thread] = i1;
    for (int64_t i = i0; i < i1; i++) atomic_fetch_add(&c->hits[i], 1);
}

static void check_partition(slm_pool *pool, int n_threads, int64_t n, int64_t grain) {
    static visit_ctx c;
    memset(&c, 0, sizeof c);
    slm_pool_run(pool, n, grain, visit, &c);
    int ok_hits = 1;
    for (int64_t i = 0; i < n; i++) ok_hits &= atomic_load(&c.hits[i]) == 1;
    for (int64_t i = n; i < MAX_N; i++) ok_hits &= atomic_load(&c.hits[i]) == 0;
    CHECK_MSG(ok_hits, "n=%lld grain=%lld threads=%d: an index was not visited exactly once",
              (long long)n, (long long)grain, n_threads);
    CHECK(atomic_load(&c.bad_thread) == 0);
    /* Ranges: one call per thread at most, grain-aligned starts, in order. */
    int64_t g = grain < 1 ? 1 : grain;
    int64_t next = 0;
    int ok_ranges = 1;
    for (int t = 0; t < n_threads; t++) {
        int calls = atomic_load(&c.calls[t]);
        if (calls > 1) ok_ranges = 0;
        if (calls == 0) continue;
        if (c.lo[t] != next || c.lo[t] % g != 0) ok_ranges = 0;
        if (c.hi[t] != n && c.hi[t] % g != 0) ok_ranges = 0;
        next = c.hi[t];
    }
    for (int t = n_threads; t < SLM_MAX_THREADS; t++) ok_ranges &= atomic_load(&c.calls[t]) == 0;
    if (n > 0) ok_ranges &= next == n;
    CHECK_MSG(ok_ranges, "n=%lld grain=%lld threads=%d: ranges not contiguous/aligned/ordered",
              (long long)n, (long long)grain, n_threads);
}

/* Balance: with at least as many chunks as threads, every thread works. */
static void check_all_threads_used(slm_pool *pool, int n_threads) {
    static visit_ctx c;
    memset(&c, 0, sizeof c);
    slm_pool_run(pool, 64 * n_threads, 8, visit, &c);
    int used = 0;
    for (int t = 0; t < n_threads; t++) used += atomic_load(&c.calls[t]) == 1;
    CHECK_MSG(used == n_threads, "%d of %d threads got work", used, n_threads);
}

typedef struct sum_ctx {
    int64_t partial[SLM_MAX_THREADS];
    int64_t job;
} sum_ctx;

static void sum_range(void *vctx, int64_t i0, int64_t i1, int thread) {
    sum_ctx *c = vctx;
    int64_t s = 0;
    for (int64_t i = i0; i < i1; i++) s += i * c->job;
    c->partial[thread] = s; /* each thread writes only its own slot */
}

/* Many consecutive small jobs: the result of each job must be complete when
 * slm_pool_run returns (checks the hand-off, not just absence of deadlock). */
static void check_many_jobs(slm_pool *pool, int n_threads, int jobs) {
    sum_ctx c;
    int wrong = 0;
    for (int j = 0; j < jobs; j++) {
        memset(c.partial, 0, sizeof c.partial);
        c.job = j + 1;
        int64_t n = 1 + j % 97;
        slm_pool_run(pool, n, 1 + j % 5, sum_range, &c);
        int64_t s = 0;
        for (int t = 0; t < n_threads; t++) s += c.partial[t];
        if (s != (int64_t)(j + 1) * n * (n - 1) / 2) wrong++;
    }
    CHECK_MSG(wrong == 0, "threads=%d: %d of %d jobs gave a wrong sum", n_threads, wrong, jobs);
}

int main(void) {
    static const int thread_counts[] = {1, 2, 3, 4, 8};
    static const int64_t grains[] = {0, 1, 2, 3, 7, 16, 64, 1000, 5000};
    int cores = slm_cpu_count();
    CHECK(cores >= 1 && cores <= SLM_MAX_THREADS);

    for (size_t k = 0; k < sizeof thread_counts / sizeof thread_counts[0]; k++) {
        int nt = thread_counts[k];
        slm_pool *pool = NULL;
        CHECK_OK(slm_pool_new(nt, &pool));
        if (!pool) continue;
        CHECK(slm_pool_threads(pool) == nt);
        for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++)
            for (int64_t n = 0; n <= MAX_N; n += (n < 70 ? 1 : 37))
                check_partition(pool, nt, n, grains[gi]);
        check_partition(pool, nt, MAX_N, 1);
        check_all_threads_used(pool, nt);
        check_many_jobs(pool, nt, 10000);
        slm_pool_free(pool);
    }

    /* NULL pool runs inline as thread 0. */
    check_partition(NULL, 1, 100, 7);
    CHECK(slm_pool_threads(NULL) == 1);

    /* Create/free cycles, with and without a job in between. */
    int ok_cycles = 1;
    for (int i = 0; i < 200; i++) {
        slm_pool *pool = NULL;
        if (slm_pool_new(1 + i % 4, &pool) != SLM_OK || !pool) {
            ok_cycles = 0;
            break;
        }
        if (i % 2) check_many_jobs(pool, 1 + i % 4, 3);
        slm_pool_free(pool);
    }
    CHECK(ok_cycles);
    slm_pool_free(NULL);

    /* Bad thread counts fail cleanly. */
    slm_pool *bad = (slm_pool *)&ok_cycles;
    CHECK_ERR(slm_pool_new(0, &bad), SLM_ERR_INVALID_ARG, "threads");
    CHECK(bad == NULL);
    CHECK_ERR(slm_pool_new(SLM_MAX_THREADS + 1, &bad), SLM_ERR_INVALID_ARG, "threads");

    return check_finish();
}
