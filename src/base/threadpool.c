/* Persistent-worker thread pool tuned for many small jobs (about ten per layer
 * per token). A job is published by bumping a generation counter; workers
 * spin on it for up to SLM_POOL_SPIN_MS, then sleep on a condition variable
 * so an idle pool costs nothing. The caller works as thread 0 and waits for a
 * pending counter to reach zero the same way (spin, then sleep). One job at a
 * time: slm_pool_run must not be called on one pool from two threads at once,
 * nor from inside a job.
 *
 * Shares, not threads: a job's range is cut into one share per thread, in
 * order, as before, but a share is run by whichever thread claims it first.
 * Each thread claims its own share first and then tries the others, so a
 * worker that is not running when the job is published (descheduled, or
 * away after a yield while another process had the core) no longer holds
 * the step up: the caller runs its share once its own is done, and the late
 * worker finds nothing left. A share's range does not depend on who runs
 * it, so results are the same as with the fixed assignment; the thread index
 * passed to the job is the runner's (it selects per-thread scratch).
 * A share is claimed by a compare-and-swap of its slot from generation g - 1
 * to g (every share of a job is claimed exactly once, so all slots hold
 * g - 1 when job g is published); a worker that saw an older generation
 * fails the swap and never reads the newer job's fields.
 *
 * Memory ordering: the caller writes the job fields with plain stores, then
 * publishes them with a seq_cst increment of `generation`; workers read the
 * fields only after observing the new generation. Workers' writes are made
 * visible to the caller by their seq_cst decrement of `pending`. The caller
 * does not touch the job fields again until `pending` is zero, so no worker
 * can read a half-written job. The sleep paths use the Dekker pattern on
 * seq_cst atomics (a sleeper announces itself, then re-checks the condition
 * under the mutex; a waker changes the condition, then checks for sleepers),
 * so a wake-up can never be lost. */
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLM_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define SLM_CPU_RELAX() __asm__ __volatile__("yield" ::: "memory")
#else
#define SLM_CPU_RELAX() ((void)0)
#endif

/* How long a waiting thread spins before it sleeps. Waking a sleeping thread
 * costs 30-50 us (futex + scheduler), far more than a job hand-off (under
 * 1 us), so the spin should outlast the serial gaps of a forward pass
 * (norms, attention, sampling); 1 ms does, and an idle pool stops burning
 * CPU soon after. */
#define SLM_POOL_SPIN_MS 1.0
/* The clock is read every this many pauses (a pause is ~25-40 ns), and the
 * core is yielded every SLM_POOL_YIELD_EVERY so that an oversubscribed pool
 * (more threads than cores) still makes progress. */
#define SLM_POOL_CLOCK_EVERY 64
#define SLM_POOL_YIELD_EVERY 256

#define SLM_CACHELINE 64

/* One share's claim slot: the generation of the last job whose share it
 * was claimed in. */
typedef struct slm_claim {
    _Alignas(SLM_CACHELINE) atomic_ullong gen;
} slm_claim;

typedef struct slm_worker {
    slm_pool *pool;
    int index;
    pthread_t thread;
} slm_worker;

struct slm_pool {
    int n_threads;
    int n_started; /* workers successfully created (for cleanup on failure) */
    slm_worker *workers;

    /* The current job, written by the caller before publishing. */
    slm_pool_fn fn;
    void *ctx;
    int64_t n;
    int64_t grain;
    atomic_int stop;
    slm_claim *claims; /* n_threads slots */

    /* Hot atomics on their own cache lines: workers poll `generation`, the
     * caller polls `pending`. */
    _Alignas(SLM_CACHELINE) atomic_ullong generation;
    _Alignas(SLM_CACHELINE) atomic_int pending;
    _Alignas(SLM_CACHELINE) atomic_int n_sleeping_workers;
    atomic_int caller_sleeping;

    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* workers sleep here for a new generation */
    pthread_cond_t cv_done; /* the caller sleeps here for pending == 0 */
};

/* Range of thread t: the n/grain chunks are dealt out as evenly as possible,
 * in order, so thread t's range precedes thread t+1's. */
static void thread_range(int64_t n, int64_t grain, int n_threads, int t, int64_t *i0, int64_t *i1) {
    int64_t chunks = (n + grain - 1) / grain;
    int64_t c0 = chunks * t / n_threads;
    int64_t c1 = chunks * (t + 1) / n_threads;
    int64_t a = c0 * grain, b = c1 * grain;
    *i0 = a < n ? a : n;
    *i1 = b < n ? b : n;
}

/* Claims share s of job `gen` for the calling thread: 1 if it got it. */
static int claim_share(slm_pool *p, int s, unsigned long long gen) {
    unsigned long long expect = gen - 1;
    if (atomic_load_explicit(&p->claims[s].gen, memory_order_relaxed) != expect) return 0;
    return atomic_compare_exchange_strong(&p->claims[s].gen, &expect, gen);
}

static void run_share(slm_pool *p, int s, int t) {
    int64_t i0, i1;
    thread_range(p->n, p->grain, p->n_threads, s, &i0, &i1);
    if (i0 < i1) p->fn(p->ctx, i0, i1, t);
}

static void finish_share(slm_pool *p) {
    if (atomic_fetch_sub(&p->pending, 1) == 1 && atomic_load(&p->caller_sleeping)) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_signal(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
    }
}

/* One spin step; 0 once the spin budget is used up. The clock is first read
 * only after SLM_POOL_CLOCK_EVERY pauses, so short waits never touch it. */
typedef struct spinner {
    unsigned long i;
    double deadline_ms; /* 0 until the first clock read */
} spinner;

static int spin_more(spinner *s) {
    SLM_CPU_RELAX();
    if (++s->i % SLM_POOL_CLOCK_EVERY != 0) return 1;
    if (s->i % SLM_POOL_YIELD_EVERY == 0) sched_yield();
    double now = slm_now_ms();
    if (s->deadline_ms == 0) s->deadline_ms = now + SLM_POOL_SPIN_MS;
    return now < s->deadline_ms;
}

/* Thread t's own share first, then any share still unclaimed; each one
 * run is counted off `pending`. */
static void run_shares(slm_pool *p, unsigned long long gen, int t) {
    for (int k = 0; k < p->n_threads; k++) {
        int s = (t + k) % p->n_threads;
        if (claim_share(p, s, gen)) {
            run_share(p, s, t);
            finish_share(p);
        }
    }
}

/* Waits until `generation` differs from `seen`; returns the new value. */
static unsigned long long wait_generation(slm_pool *p, unsigned long long seen) {
    spinner sp = {0, 0};
    do {
        unsigned long long g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen) return g;
    } while (spin_more(&sp));
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping_workers, 1);
    unsigned long long g;
    while ((g = atomic_load(&p->generation)) == seen) pthread_cond_wait(&p->cv_work, &p->mu);
    atomic_fetch_sub(&p->n_sleeping_workers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    slm_worker *w = arg;
    slm_pool *p = w->pool;
    /* Generation 0 is the pool's initial value, not read from the counter: a
     * job may already have been published before this thread got to run. */
    unsigned long long seen = 0;
    for (;;) {
        seen = wait_generation(p, seen);
        if (atomic_load(&p->stop)) break;
        run_shares(p, seen, w->index);
    }
    return NULL;
}

static void wait_done(slm_pool *p) {
    spinner sp = {0, 0};
    do {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0) return;
    } while (spin_more(&sp));
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->caller_sleeping, 1);
    while (atomic_load(&p->pending) != 0) pthread_cond_wait(&p->cv_done, &p->mu);
    atomic_store(&p->caller_sleeping, 0);
    pthread_mutex_unlock(&p->mu);
}

/* Publishes the job fields already written and wakes sleeping workers;
 * returns the job's generation. */
static unsigned long long publish(slm_pool *p) {
    atomic_store(&p->pending, p->n_threads);
    unsigned long long gen = atomic_fetch_add(&p->generation, 1) + 1;
    if (atomic_load(&p->n_sleeping_workers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    return gen;
}

static void stop_workers(slm_pool *p) {
    if (p->n_started == 0) return;
    /* Workers leave without touching `pending`; joining is the wait. */
    atomic_store(&p->stop, 1);
    (void)publish(p);
    for (int i = 0; i < p->n_started; i++) pthread_join(p->workers[i].thread, NULL);
    p->n_started = 0;
}

slm_status slm_pool_new(int n_threads, slm_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > SLM_MAX_THREADS)
        return slm_fail(SLM_ERR_INVALID_ARG, "thread pool: %d threads (expected 1..%d)", n_threads,
                        SLM_MAX_THREADS);
    slm_pool *p = aligned_alloc(SLM_CACHELINE,
                                (sizeof *p + SLM_CACHELINE - 1) & ~(size_t)(SLM_CACHELINE - 1));
    if (!p) return slm_fail(SLM_ERR_NOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    p->n_started = 0;
    p->workers = NULL;
    p->fn = NULL;
    p->ctx = NULL;
    p->n = 0;
    p->grain = 1;
    atomic_init(&p->stop, 0);
    p->claims = NULL;
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->n_sleeping_workers, 0);
    atomic_init(&p->caller_sleeping, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return slm_fail(SLM_ERR_INTERNAL, "thread pool: mutex init failed");
    }
    if (pthread_cond_init(&p->cv_work, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return slm_fail(SLM_ERR_INTERNAL, "thread pool: condvar init failed");
    }
    if (pthread_cond_init(&p->cv_done, NULL) != 0) {
        pthread_cond_destroy(&p->cv_work);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return slm_fail(SLM_ERR_INTERNAL, "thread pool: condvar init failed");
    }
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        p->claims = aligned_alloc(SLM_CACHELINE, (size_t)n_threads * sizeof *p->claims);
        if (p->claims)
            for (int i = 0; i < n_threads; i++) atomic_init(&p->claims[i].gen, 0);
        if (!p->workers || !p->claims) {
            slm_pool_free(p);
            return slm_fail(SLM_ERR_NOMEM, "thread pool: out of memory");
        }
        for (int i = 0; i < n_threads - 1; i++) {
            slm_worker *w = &p->workers[i];
            w->pool = p;
            w->index = i + 1;
            int rc = pthread_create(&w->thread, NULL, worker_main, w);
            if (rc != 0) {
                slm_pool_free(p);
                return slm_fail(SLM_ERR_INTERNAL, "thread pool: cannot start thread %d of %d",
                                i + 1, n_threads);
            }
            p->n_started++;
        }
    }
    *out = p;
    return SLM_OK;
}

void slm_pool_free(slm_pool *p) {
    if (!p) return;
    stop_workers(p);
    free(p->workers);
    free(p->claims);
    pthread_cond_destroy(&p->cv_done);
    pthread_cond_destroy(&p->cv_work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int slm_pool_threads(const slm_pool *p) {
    return p ? p->n_threads : 1;
}

void slm_pool_run(slm_pool *p, int64_t n, int64_t grain, slm_pool_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    /* One chunk or one thread: no hand-off, no wake-ups. */
    if (!p || p->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    run_shares(p, publish(p), 0);
    wait_done(p);
}

int slm_cpu_count(void) {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) return c;
    }
#endif
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)(c < SLM_MAX_THREADS ? c : SLM_MAX_THREADS) : 1;
}
