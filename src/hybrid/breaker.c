/* Circuit breaker (closed -> open -> half-open) and full-jitter backoff. */
#include "hybrid/breaker.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "base/status.h"

struct hy_breaker {
    pthread_mutex_t mu;
    int k;
    double open_ms;
    hy_breaker_state state;
    int fails;        /* consecutive failures while closed */
    double opened_at; /* when it (re)opened */
    int trial;        /* half-open: the one trial is out */
    double trial_at;  /* when the trial was let through */
};

slm_status hy_breaker_new(const hy_breaker_params *p, hy_breaker **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "hy_breaker_new: out is NULL");
    *out = NULL;
    hy_breaker *b = calloc(1, sizeof *b);
    if (!b) return slm_fail(SLM_ERR_NOMEM, "breaker: out of memory");
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        return slm_fail(SLM_ERR_INTERNAL, "breaker: mutex init failed");
    }
    b->k = p && p->failures > 0 ? p->failures : 3;
    b->open_ms = p && p->open_ms > 0 && isfinite(p->open_ms) ? p->open_ms : 30000.0;
    b->state = HY_BREAKER_CLOSED;
    *out = b;
    return SLM_OK;
}

void hy_breaker_free(hy_breaker *b) {
    if (!b) return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Caller holds the mutex. Open turns half-open once open_ms has passed. */
static void advance(hy_breaker *b, double now_ms) {
    if (b->state == HY_BREAKER_OPEN && now_ms - b->opened_at >= b->open_ms) {
        b->state = HY_BREAKER_HALF_OPEN;
        b->trial = 0;
    }
    /* a trial that never reported back (caller gone) does not wedge it */
    if (b->state == HY_BREAKER_HALF_OPEN && b->trial && now_ms - b->trial_at >= b->open_ms)
        b->trial = 0;
}

int hy_breaker_allow(hy_breaker *b, double now_ms) {
    if (!b) return 1;
    pthread_mutex_lock(&b->mu);
    advance(b, now_ms);
    int ok = 0;
    if (b->state == HY_BREAKER_CLOSED) {
        ok = 1;
    } else if (b->state == HY_BREAKER_HALF_OPEN && !b->trial) {
        b->trial = 1;
        b->trial_at = now_ms;
        ok = 1;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void hy_breaker_record(hy_breaker *b, int ok, double now_ms) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    advance(b, now_ms);
    switch (b->state) {
    case HY_BREAKER_CLOSED:
        if (ok) {
            b->fails = 0;
        } else if (++b->fails >= b->k) {
            b->state = HY_BREAKER_OPEN;
            b->opened_at = now_ms;
        }
        break;
    case HY_BREAKER_HALF_OPEN:
        if (ok) {
            b->state = HY_BREAKER_CLOSED;
            b->fails = 0;
        } else {
            b->state = HY_BREAKER_OPEN;
            b->opened_at = now_ms;
        }
        b->trial = 0;
        break;
    case HY_BREAKER_OPEN: /* late results of requests let through earlier: ignored */
        break;
    }
    pthread_mutex_unlock(&b->mu);
}

hy_breaker_state hy_breaker_state_at(hy_breaker *b, double now_ms) {
    if (!b) return HY_BREAKER_CLOSED;
    pthread_mutex_lock(&b->mu);
    advance(b, now_ms);
    hy_breaker_state s = b->state;
    pthread_mutex_unlock(&b->mu);
    return s;
}

const char *hy_breaker_state_name(hy_breaker_state s) {
    switch (s) {
    case HY_BREAKER_CLOSED:
        return "closed";
    case HY_BREAKER_OPEN:
        return "open";
    case HY_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "?";
}

double hy_backoff_ms(int attempt, double base_ms, double max_ms, double u) {
    if (!(base_ms > 0) || !(max_ms > 0)) return 0.0;
    if (attempt < 1) attempt = 1;
    if (!(u >= 0)) u = 0; /* NaN too */
    if (u >= 1) u = nextafter(1.0, 0.0);
    double cap = base_ms;
    for (int i = 1; i < attempt && cap < max_ms; i++) cap *= 2;
    if (cap > max_ms) cap = max_ms;
    return u * cap;
}
