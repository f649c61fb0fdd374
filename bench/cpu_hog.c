/* A competing process for tail-latency runs: busy BUSY_MS, asleep IDLE_MS,
 * for SECONDS in all, on whatever core the kernel gives it.
 *   cc -O2 -o /tmp/hog bench/cpu_hog.c && /tmp/hog 2 8 60 &
 * (20% of one core in 10 ms periods) beside `slm bench -t 2 ...`; see
 * docs/PERFORMANCE.md, "Thread pool: shares claimed, not assigned". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BUSY_MS IDLE_MS SECONDS\n", argv[0]);
        return 2;
    }
    const double busy = atof(argv[1]), idle = atof(argv[2]);
    const double end = now_ms() + atof(argv[3]) * 1e3;
    volatile unsigned long spin = 0;
    while (now_ms() < end) {
        const double stop = now_ms() + busy;
        while (now_ms() < stop) spin++;
        const struct timespec nap = {(time_t)(idle / 1e3), (long)(idle * 1e6) % 1000000000L};
        nanosleep(&nap, NULL);
    }
    return 0;
}
