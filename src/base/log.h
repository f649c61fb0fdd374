/* One-line diagnostics on stderr. Level from $SLM_LOG (error|warn|info|debug),
 * default warn. Never logs prompt text. */
#ifndef SLM_BASE_LOG_H
#define SLM_BASE_LOG_H

#include "base/status.h"

typedef enum {
    SLM_LOG_ERROR = 0,
    SLM_LOG_WARN = 1,
    SLM_LOG_INFO = 2,
    SLM_LOG_DEBUG = 3
} slm_log_level;

void slm_log(slm_log_level level, const char *fmt, ...) SLM_PRINTF(2, 3);
void slm_log_set_level(slm_log_level level);

#endif
