/* Per-core throughput of the instructions the avx512 kernels are built from,
 * in instructions per nanosecond: independent chains (16 accumulators), so
 * the numbers are issue throughput, not latency; plus the latency of one
 * dependent FMA chain. Compiled with AVX-512 flags; kernel_bench.c calls it
 * only when the CPU has AVX-512 F/BW and VNNI. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>

#include "bench_clock.h"

#define NA 16

double kb_fma_per_ns(int64_t iters) {
    __m512 f[NA];
    for (int i = 0; i < NA; i++) f[i] = _mm512_set1_ps((float)i);
    const __m512 y = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(0.001f);
    double t = kb_now();
    for (int64_t k = 0; k < iters; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < NA; i++) f[i] = _mm512_fmadd_ps(f[i], y, c);
        __asm__ volatile("" ::"v"(f[0]));
    }
    t = kb_now() - t;
    float z = 0;
    for (int i = 0; i < NA; i++) z += _mm512_reduce_add_ps(f[i]);
    kb_sink(z);
    return (double)iters * NA / (t * 1e9);
}

double kb_dpbusd_per_ns(int64_t iters) {
    __m512i a[NA];
    for (int i = 0; i < NA; i++) a[i] = _mm512_set1_epi32(i);
    const __m512i x = _mm512_set1_epi8(1), w = _mm512_set1_epi8(2);
    double t = kb_now();
    for (int64_t k = 0; k < iters; k++) {
#pragma GCC unroll 16
        for (int i = 0; i < NA; i++) a[i] = _mm512_dpbusd_epi32(a[i], x, w);
        __asm__ volatile("" ::"v"(a[0]));
    }
    t = kb_now() - t;
    int64_t z = 0;
    for (int i = 0; i < NA; i++) z += _mm512_reduce_add_epi32(a[i]);
    kb_sink((float)z);
    return (double)iters * NA / (t * 1e9);
}

/* vpdpbusd interleaved one-to-one with a second instruction (`other`: 0
 * multiply, 1 FMA, 2 int -> float convert, 3 unpack of 32-bit lanes, 4
 * 32-bit add), in pairs per nanosecond: near the vpdpbusd rate when the two
 * issue on different pipes, near half of it when they share one. */
double kb_dpbusd_with_per_ns(int other, int64_t iters) {
    __m512i a[NA / 2], b[NA / 2];
    for (int i = 0; i < NA / 2; i++) {
        a[i] = _mm512_set1_epi32(i);
        b[i] = _mm512_set1_epi32(i + 1);
    }
    const __m512i x = _mm512_set1_epi8(1), w = _mm512_set1_epi8(2);
    const __m512 y = _mm512_set1_ps(0.999f);
    double t = kb_now();
    for (int64_t k = 0; k < iters; k++) {
#pragma GCC unroll 8
        for (int i = 0; i < NA / 2; i++) {
            a[i] = _mm512_dpbusd_epi32(a[i], x, w);
            switch (other) {
            case 0:
                b[i] = _mm512_castps_si512(_mm512_mul_ps(_mm512_castsi512_ps(b[i]), y));
                break;
            case 1:
                b[i] = _mm512_castps_si512(_mm512_fmadd_ps(_mm512_castsi512_ps(b[i]), y, y));
                break;
            case 2:
                b[i] = _mm512_castps_si512(_mm512_cvtepi32_ps(b[i]));
                break;
            case 3:
                b[i] = _mm512_unpacklo_epi32(b[i], x);
                break;
            default:
                b[i] = _mm512_add_epi32(b[i], x);
                break;
            }
        }
        __asm__ volatile("" ::"v"(a[0]), "v"(b[0]));
    }
    t = kb_now() - t;
    int64_t z = 0;
    for (int i = 0; i < NA / 2; i++)
        z += _mm512_reduce_add_epi32(a[i]) + _mm512_reduce_add_epi32(b[i]);
    kb_sink((float)z);
    return (double)iters * (NA / 2) / (t * 1e9);
}

double kb_fma_latency_ns(int64_t iters) {
    __m512 a = _mm512_set1_ps(1.0f);
    const __m512 b = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    double t = kb_now();
    for (int64_t k = 0; k < iters; k++) {
        a = _mm512_fmadd_ps(a, b, c);
        __asm__ volatile("" ::"v"(a));
    }
    t = kb_now() - t;
    kb_sink(_mm512_reduce_add_ps(a));
    return t * 1e9 / (double)iters;
}
#else
typedef int kb_pipes_unused;
#endif
