#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1;

static int current_level(void) {
    if (g_level < 0) {
        const char *e = getenv("SLM_LOG");
        g_level = SLM_LOG_WARN;
        if (e) {
            if (!strcmp(e, "error"))
                g_level = SLM_LOG_ERROR;
            else if (!strcmp(e, "info"))
                g_level = SLM_LOG_INFO;
            else if (!strcmp(e, "debug"))
                g_level = SLM_LOG_DEBUG;
        }
    }
    return g_level;
}

void slm_log_set_level(slm_log_level level) {
    g_level = (int)level;
}

void slm_log(slm_log_level level, const char *fmt, ...) {
    if ((int)level > current_level()) return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "slm: %s: %s\n", names[level], buf);
}
