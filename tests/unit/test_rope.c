/* RoPE kernels: every available provider's `rope` op against the scalar
 * formula of the model's loop (llama.c rope_head), bit for bit, for ragged
 * and vector-width rope_dims, both pair layouts, unaligned heads, with guard
 * values around the head that must stay untouched. The data is checked to be
 * sensitive to a fused multiply-add, so a kernel that fused would fail. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"

static check_rng g_rng = {20261124};

/* The scalar formula, two rounded products then one rounded sum (separate
 * statements, so no compiler contracts them into an FMA). */
static void rope_scalar(float *h, const float *cs, int32_t rope_dim, int adjacent) {
    int32_t half = rope_dim / 2;
    for (int32_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        int32_t a = adjacent ? 2 * i : i;
        int32_t b = adjacent ? 2 * i + 1 : i + half;
        float x0 = h[a], x1 = h[b];
        float x0c = x0 * c;
        float x1s = x1 * s;
        float x0s = x0 * s;
        float x1c = x1 * c;
        h[a] = x0c - x1s;
        h[b] = x0s + x1c;
    }
}

/* Pairs of the table where fmaf(x0, c, -(x1*s)) differs from the formula. */
static int fused_differs(const float *h, const float *cs, int32_t rope_dim, int adjacent) {
    int32_t half = rope_dim / 2;
    int n = 0;
    for (int32_t i = 0; i < half; i++) {
        float c = cs[2 * i], s = cs[2 * i + 1];
        float x0 = h[adjacent ? 2 * i : i], x1 = h[adjacent ? 2 * i + 1 : i + half];
        float x1s = x1 * s;
        float plain = x0 * c;
        plain -= x1s;
        n += fmaf(x0, c, -x1s) != plain;
    }
    return n;
}

#define GUARD 5
#define MAX_DIM 128

/* cos/sin at a random position with the usual frequencies, or (table 1)
 * arbitrary normal values, to cover more mantissa patterns. */
static void fill_cs(float *cs, int32_t rope_dim, int table) {
    double pos = (double)(check_rng_u64(&g_rng) % 8192);
    for (int32_t i = 0; i < rope_dim / 2; i++) {
        if (table == 0) {
            double a = pos * pow(10000.0, -2.0 * i / rope_dim);
            cs[2 * i] = (float)cos(a);
            cs[2 * i + 1] = (float)sin(a);
        } else {
            cs[2 * i] = check_rng_normal(&g_rng);
            cs[2 * i + 1] = check_rng_normal(&g_rng);
        }
    }
}

/* Returns the number of cases run. */
static int test_provider(const slm_provider *pv, int *n_fused_sensitive) {
    static const int32_t dims[] = {2, 6, 16, 30, 32, 64, 80, 128};
    int cases = 0;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int32_t rd = dims[d];
        for (int adjacent = 0; adjacent <= 1; adjacent++) {
            for (int trial = 0; trial < 8; trial++) {
                /* head at float offset GUARD + (trial % 4) in a buffer of guards */
                float buf[MAX_DIM + 2 * GUARD + 4], want[MAX_DIM + 2 * GUARD + 4];
                float csbuf[MAX_DIM + 1], cs_copy[MAX_DIM + 1];
                int32_t n_buf = rd + 2 * GUARD + 4, off = GUARD + trial % 4;
                for (int32_t i = 0; i < n_buf; i++) buf[i] = 4.0f * check_rng_normal(&g_rng);
                float *cs = csbuf + (trial & 1); /* unaligned table too */
                fill_cs(cs, rd, trial & 2 ? 1 : 0);
                memcpy(want, buf, sizeof buf);
                memcpy(cs_copy, csbuf, sizeof csbuf);
                *n_fused_sensitive += fused_differs(buf + off, cs, rd, adjacent);
                rope_scalar(want + off, cs, rd, adjacent);
                pv->rope(buf + off, cs, rd, adjacent);
                CHECK_MSG(memcmp(buf + off, want + off, (size_t)rd * sizeof(float)) == 0,
                          "provider %s rope_dim %d %s trial %d: differs from the scalar formula",
                          pv->name, (int)rd, adjacent ? "adjacent" : "halves", trial);
                CHECK_MSG(memcmp(buf, want, (size_t)off * sizeof(float)) == 0 &&
                              memcmp(buf + off + rd, want + off + rd,
                                     (size_t)(n_buf - off - rd) * sizeof(float)) == 0,
                          "provider %s rope_dim %d: wrote outside the rotated dims", pv->name,
                          (int)rd);
                CHECK_MSG(memcmp(csbuf, cs_copy, sizeof csbuf) == 0,
                          "provider %s: changed the table", pv->name);
                cases++;
            }
        }
    }
    return cases;
}

int main(void) {
    /* The SIMD providers compiled in for this architecture must have the op. */
#if defined(__x86_64__)
    CHECK(slm_provider_avx2.rope != NULL);
    CHECK(slm_provider_avx512.rope != NULL);
#elif defined(__i386__)
    CHECK(slm_provider_avx2.rope != NULL);
#endif
#if defined(__aarch64__)
    CHECK(slm_provider_neon.rope != NULL);
#endif

    int n_tested = 0, n_fused_sensitive = 0;
    for (const slm_provider *const *pp = slm_providers_all(); *pp; pp++) {
        const slm_provider *pv = *pp;
        if (!pv->rope) {
            printf("provider %s: no rope op (the model's scalar loop)\n", pv->name);
            continue;
        }
        if (!pv->available()) {
            printf("provider %s: not available on this CPU, skipped\n", pv->name);
            continue;
        }
        int cases = test_provider(pv, &n_fused_sensitive);
        printf("provider %s: rope tested, %d cases\n", pv->name, cases);
        n_tested++;
    }
    if (n_tested == 0 && check_failed_ == 0) {
        printf("no provider with a rope op runs on this CPU: skipped\n");
        return 77;
    }
    /* The data must tell a fused kernel from the formula, or the test could not fail. */
    CHECK_MSG(n_fused_sensitive > 0, "no pair where an FMA would change the result");
    printf("pairs where an FMA would change the bits: %d\n", n_fused_sensitive);
    return check_finish();
}
