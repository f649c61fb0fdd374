/* Status codes and the one error path: set a message, return the code. */
#ifndef SLM_BASE_STATUS_H
#define SLM_BASE_STATUS_H

#include "slm.h"

#if defined(__GNUC__)
#define SLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SLM_PRINTF(a, b)
#endif

/* Records a formatted message for slm_last_error() and returns `st`. */
slm_status slm_fail(slm_status st, const char *fmt, ...) SLM_PRINTF(2, 3);
/* Prefixes the current message: "<prefix>: <old message>"; returns `st`. */
slm_status slm_fail_prefix(slm_status st, const char *fmt, ...) SLM_PRINTF(2, 3);
void slm_clear_error(void);

/* Propagate a failure unchanged. */
#define SLM_TRY(expr)                                                                              \
    do {                                                                                           \
        slm_status slm_try_st_ = (expr);                                                           \
        if (slm_try_st_ != SLM_OK) return slm_try_st_;                                             \
    } while (0)

/* Propagate to a cleanup label: `st` must be a local slm_status. */
#define SLM_CHECK(expr)                                                                            \
    do {                                                                                           \
        st = (expr);                                                                               \
        if (st != SLM_OK) goto cleanup;                                                            \
    } while (0)

#endif
