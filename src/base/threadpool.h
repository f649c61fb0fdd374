/* A thread pool for batch-1 latency: persistent workers, one job at a time,
 * each job split into contiguous ranges, one per thread. The calling thread
 * takes part as worker 0. Results never depend on the thread count as long as
 * each output element is written by one task with a fixed reduction order. */
#ifndef SLM_BASE_THREADPOOL_H
#define SLM_BASE_THREADPOOL_H

#include <stdint.h>

#include "slm.h"

#define SLM_MAX_THREADS 256

typedef struct slm_pool slm_pool;

/* n_threads >= 1 (1 = no worker threads). */
slm_status slm_pool_new(int n_threads, slm_pool **out);
void slm_pool_free(slm_pool *p);
int slm_pool_threads(const slm_pool *p);

/* fn(ctx, i0, i1, thread) over [0, n) split into one contiguous range per
 * thread (ranges aligned to `grain`, the last may be shorter; threads with
 * nothing to do are not called). Returns when all are done. p may be NULL
 * (runs inline). */
typedef void (*slm_pool_fn)(void *ctx, int64_t i0, int64_t i1, int thread);
void slm_pool_run(slm_pool *p, int64_t n, int64_t grain, slm_pool_fn fn, void *ctx);

/* Number of hardware threads available to this process. */
int slm_cpu_count(void);

#endif
