/* Shared by the kernel benchmark's files. */
#ifndef SLM_BENCH_KERNELS_CLOCK_H
#define SLM_BENCH_KERNELS_CLOCK_H
#include <time.h>

static inline double kb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keeps a result alive so the measured loop is not optimized away. */
static inline void kb_sink(float v) {
    __asm__ volatile("" ::"x"(v));
}
#endif
