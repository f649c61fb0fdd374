#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SLM_ERROR_MAX 1024

static _Thread_local char g_error[SLM_ERROR_MAX];

slm_status slm_fail(slm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
    return st;
}

slm_status slm_fail_prefix(slm_status st, const char *fmt, ...) {
    char prefix[SLM_ERROR_MAX];
    char old[SLM_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_error, sizeof old);
    /* "<prefix>: <old>", truncated to the buffer */
    size_t n = strlen(prefix);
    memcpy(g_error, prefix, n + 1);
    if (old[0] && n + 2 < sizeof g_error) {
        memcpy(g_error + n, ": ", 3);
        size_t room = sizeof g_error - n - 3;
        size_t ol = strlen(old);
        if (ol > room) ol = room;
        memcpy(g_error + n + 2, old, ol);
        g_error[n + 2 + ol] = '\0';
    }
    return st;
}

void slm_clear_error(void) {
    g_error[0] = '\0';
}

const char *slm_last_error(void) {
    return g_error;
}

const char *slm_status_str(slm_status st) {
    switch (st) {
    case SLM_OK:
        return "ok";
    case SLM_ERR_INVALID_ARG:
        return "invalid argument";
    case SLM_ERR_IO:
        return "I/O error";
    case SLM_ERR_FORMAT:
        return "format error";
    case SLM_ERR_UNSUPPORTED:
        return "not supported";
    case SLM_ERR_NOMEM:
        return "out of memory";
    case SLM_ERR_CONFIG:
        return "config error";
    case SLM_ERR_CONTEXT:
        return "context error";
    case SLM_ERR_CANCELLED:
        return "cancelled";
    case SLM_ERR_INTERNAL:
        return "internal error";
    case SLM_ERR_SIGNATURE:
        return "signature check failed";
    }
    return "unknown status";
}

const char *slm_version(void) {
    return SLM_VERSION_STRING;
}
