/* Minimal test harness: CHECK* record failures and go on; main returns
 * check_finish(). Output ends with "N passed, N failed". Exit 77 = skipped. */
#ifndef SLM_TEST_CHECK_H
#define SLM_TEST_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int check_passed_;
extern int check_failed_;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed_++;                                                                       \
        } else {                                                                                   \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed_++;                                                                       \
        } else {                                                                                   \
            check_failed_++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* Expects a call returning slm_status to succeed; prints slm_last_error(). */
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        slm_status check_st_ = (expr);                                                             \
        CHECK_MSG(check_st_ == SLM_OK, "%s -> %s: %s", #expr, slm_status_str(check_st_),           \
                  slm_last_error());                                                               \
    } while (0)

/* Expects a specific failure status and a message containing `needle`. */
#define CHECK_ERR(expr, status, needle)                                                            \
    do {                                                                                           \
        slm_status check_st_ = (expr);                                                             \
        CHECK_MSG(check_st_ == (status), "%s -> %s (%s), expected %s", #expr,                      \
                  slm_status_str(check_st_), slm_last_error(), slm_status_str(status));            \
        if (check_st_ != SLM_OK)                                                                   \
            CHECK_MSG(check_has(slm_last_error(), (needle)), "message '%s' lacks '%s'",            \
                      slm_last_error(), check_str_or(needle));                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double check_a_ = (double)(a), check_b_ = (double)(b);                                     \
        CHECK_MSG(fabs(check_a_ - check_b_) <= (tol), "%s = %.9g, %s = %.9g, tol %g", #a,          \
                  check_a_, #b, check_b_, (double)(tol));                                          \
    } while (0)

/* 1 when needle is NULL or occurs in hay. */
static inline int check_has(const char *hay, const char *needle) {
    return needle == NULL || (hay && strstr(hay, needle) != NULL);
}
static inline const char *check_str_or(const char *s) {
    return s ? s : "";
}

int check_finish(void);
/* Prints "SKIP: why" and exits 77 (ctest reports the test as skipped). */
void check_skip(const char *why);

/* $SLM_SHARED (set by ctest) or ../shared; path joined into buf. Returns NULL
 * when the file does not exist. */
const char *check_shared_path(const char *rel, char *buf, size_t cap);
/* A scratch path under $SLM_TMP (or /tmp), unique per test process. */
const char *check_tmp_path(const char *name, char *buf, size_t cap);

/* Deterministic pseudo-random numbers for tests. */
typedef struct {
    unsigned long long s;
} check_rng;
unsigned long long check_rng_u64(check_rng *r);
float check_rng_uniform(check_rng *r); /* [0, 1) */
float check_rng_normal(check_rng *r);

#endif
