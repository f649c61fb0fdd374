/* Audit log for hybrid egress: one JSON line per request sent to the cloud. */
#ifndef SLM_HYBRID_AUDIT_H
#define SLM_HYBRID_AUDIT_H

#include <stdint.h>

#include "slm.h"

typedef struct hy_audit_entry {
    const char *route;          /* "cloud" */
    const char *reason;         /* router reason, e.g. "low_confidence" */
    const char *classes;        /* hy_egress_class_names or "" */
    const char *action;         /* "allow" | "redact" */
    uint64_t bytes_sent;        /* request body bytes sent to the cloud */
    const char *host;           /* host:port of the cloud */
    int degraded;               /* 1 when the cloud failed and the local answer was used */
    const char *degraded_cause; /* or NULL */
} hy_audit_entry;

/* Appends one JSON line {"time": ISO-8601 UTC, ...fields...} to `path`
 * (created 0600), O_APPEND + a single write so concurrent writers do not
 * interleave. Never raw values: the entry holds only names, counts and byte
 * totals. NULL string fields are written as null (degraded_cause) or "".
 * SLM_ERR_IO naming the path when it cannot be opened or written. */
slm_status hy_audit_append(const char *path, const hy_audit_entry *e);

/* The JSON line (without the trailing '\n') that hy_audit_append would write at
 * Unix time `t` (seconds); malloc'd, NULL when memory runs out. For tests. */
char *hy_audit_format(const hy_audit_entry *e, double t);

#endif
