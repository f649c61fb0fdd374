/* Audit log: one JSON line per egress, appended with a single write. */
#include "hybrid/audit.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/status.h"

#define HY_AUDIT_FIELD_MAX 256 /* longer strings are cut: the log holds names, not text */

static int add_str(cJSON *o, const char *k, const char *v) {
    char buf[HY_AUDIT_FIELD_MAX + 1];
    snprintf(buf, sizeof buf, "%s", v ? v : "");
    return cJSON_AddStringToObject(o, k, buf) != NULL;
}

char *hy_audit_format(const hy_audit_entry *e, double t) {
    if (!e) return NULL;
    time_t sec = (time_t)floor(t);
    int ms = (int)((t - floor(t)) * 1000.0);
    if (ms > 999) ms = 999;
    if (ms < 0) ms = 0;
    struct tm tm;
    if (!gmtime_r(&sec, &tm)) return NULL;
    char ts[80];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int ok = add_str(o, "time", ts) && add_str(o, "route", e->route) &&
             add_str(o, "reason", e->reason) && add_str(o, "classes", e->classes) &&
             add_str(o, "action", e->action) &&
             cJSON_AddNumberToObject(o, "bytes_sent", (double)e->bytes_sent) &&
             add_str(o, "host", e->host) && cJSON_AddBoolToObject(o, "degraded", e->degraded != 0);
    if (ok) {
        if (e->degraded_cause)
            ok = add_str(o, "degraded_cause", e->degraded_cause);
        else
            ok = cJSON_AddNullToObject(o, "degraded_cause") != NULL;
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

slm_status hy_audit_append(const char *path, const hy_audit_entry *e) {
    if (!path || !path[0] || !e) return slm_fail(SLM_ERR_INVALID_ARG, "audit: no path or entry");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char *line = hy_audit_format(e, (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    if (!line) return slm_fail(SLM_ERR_NOMEM, "audit: out of memory");
    size_t n = strlen(line);
    char *buf = realloc(line, n + 2);
    if (!buf) {
        free(line);
        return slm_fail(SLM_ERR_NOMEM, "audit: out of memory");
    }
    buf[n++] = '\n';
    buf[n] = 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = errno;
        free(buf);
        return slm_fail(SLM_ERR_IO, "audit log %s: %s", path, strerror(err));
    }
    slm_status st = SLM_OK;
    size_t off = 0;
    while (off < n) { /* one write; the loop only finishes a rare short write */
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = slm_fail(SLM_ERR_IO, "audit log %s: write failed: %s", path,
                          w < 0 ? strerror(errno) : "no progress");
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 && st == SLM_OK)
        st = slm_fail(SLM_ERR_IO, "audit log %s: close failed: %s", path, strerror(errno));
    free(buf);
    return st;
}
