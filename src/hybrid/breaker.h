/* Circuit breaker and retry backoff for the cloud client. */
#ifndef SLM_HYBRID_BREAKER_H
#define SLM_HYBRID_BREAKER_H

#include "slm.h"

/* Circuit breaker and retry backoff; thread-safe (mutex inside); clock injected
 * for tests (now_ms: any monotonic milliseconds, e.g. slm clock * 1000).
 * States: closed (requests go through; K consecutive failures open it) ->
 * open (hy_breaker_allow returns 0 for open_ms) -> half-open (exactly one
 * caller gets 1: the trial; others get 0 until it is recorded) -> success
 * closes, failure reopens for another open_ms. */
typedef struct hy_breaker_params {
    int failures;   /* K consecutive failures open it (default 3) */
    double open_ms; /* T: stays open this long (default 30000) */
} hy_breaker_params;
typedef struct hy_breaker hy_breaker;
/* p NULL or fields <= 0 take the defaults. */
slm_status hy_breaker_new(const hy_breaker_params *p, hy_breaker **out);
void hy_breaker_free(hy_breaker *b);
int hy_breaker_allow(hy_breaker *b, double now_ms); /* 0 while open; half-open lets one try */
void hy_breaker_record(hy_breaker *b, int ok, double now_ms);

/* For metrics and tests. */
typedef enum hy_breaker_state {
    HY_BREAKER_CLOSED = 0,
    HY_BREAKER_OPEN = 1,
    HY_BREAKER_HALF_OPEN = 2
} hy_breaker_state;
/* The state as hy_breaker_allow would see it at now_ms (open turns half-open
 * once open_ms has passed). */
hy_breaker_state hy_breaker_state_at(hy_breaker *b, double now_ms);
const char *hy_breaker_state_name(hy_breaker_state s);

/* Delay before retry `attempt` (1-based): base_ms * 2^(attempt-1), capped at
 * max_ms, with full jitter from `u` in [0,1): the result is u * that cap, in
 * [0, min(max_ms, base_ms * 2^(attempt-1))). attempt < 1 counts as 1; u outside
 * [0,1) is clamped. */
double hy_backoff_ms(int attempt, double base_ms, double max_ms, double u);

#endif
