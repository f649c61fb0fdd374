#ifndef SLM_BASE_CLOCK_H
#define SLM_BASE_CLOCK_H

#include <time.h>

/* Monotonic time in milliseconds. */
static inline double slm_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

#endif
