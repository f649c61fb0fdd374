#include "runtime/text_stream.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"

slm_status slm_text_stream_init(slm_text_stream *ts) {
    memset(ts, 0, sizeof *ts);
    ts->buf = malloc(SLM_TEXT_STREAM_CAP);
    if (!ts->buf) return slm_fail(SLM_ERR_NOMEM, "cannot allocate the text stream");
    return SLM_OK;
}

void slm_text_stream_free(slm_text_stream *ts) {
    free(ts->buf);
    ts->buf = NULL;
}

void slm_text_stream_reset(slm_text_stream *ts, const char *const *stop, const size_t *stop_len,
                           int n_stop, slm_token_fn fn, void *user) {
    ts->len = 0;
    ts->stop = stop;
    ts->stop_len = stop_len;
    ts->n_stop = n_stop;
    ts->fn = fn;
    ts->user = user;
    ts->stopped = 0;
    ts->cancelled = 0;
}

size_t slm_utf8_complete_prefix(const char *s, size_t n) {
    /* Look back at most 3 bytes for the lead byte of the last sequence. */
    size_t back = n < 4 ? n : 4;
    for (size_t k = 1; k <= back; k++) {
        unsigned char c = (unsigned char)s[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        size_t need = c < 0x80             ? 1
                      : (c & 0xE0) == 0xC0 ? 2
                      : (c & 0xF0) == 0xE0 ? 3
                      : (c & 0xF8) == 0xF0 ? 4
                                           : 1;
        if (need > k && k < 4) return n - k; /* incomplete, hold it back */
        return n;
    }
    return n; /* only continuation bytes: invalid, let them through */
}

static void emit(slm_text_stream *ts, size_t n) {
    if (n == 0) return;
    if (ts->fn && !ts->cancelled && ts->fn(ts->user, ts->buf, n) != 0) ts->cancelled = 1;
    memmove(ts->buf, ts->buf + n, ts->len - n);
    ts->len -= n;
}

/* Longest suffix of buf that is a proper prefix of some stop string. */
static size_t held_for_stop(const slm_text_stream *ts) {
    size_t hold = 0;
    for (int i = 0; i < ts->n_stop; i++) {
        size_t sl = ts->stop_len[i];
        size_t max = sl - 1 < ts->len ? sl - 1 : ts->len;
        for (size_t k = max; k > hold; k--) {
            if (memcmp(ts->buf + ts->len - k, ts->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

void slm_text_stream_push(slm_text_stream *ts, const char *bytes, size_t n) {
    if (ts->stopped) return;
    while (n > 0) {
        size_t room = SLM_TEXT_STREAM_CAP - ts->len;
        if (room == 0) {
            emit(ts, ts->len); /* pathological: a piece longer than the buffer */
            room = SLM_TEXT_STREAM_CAP;
        }
        size_t take = n < room ? n : room;
        memcpy(ts->buf + ts->len, bytes, take);
        ts->len += take;
        bytes += take;
        n -= take;
    }
    /* A stop string anywhere in the pending text ends generation there. */
    for (int i = 0; i < ts->n_stop; i++) {
        const char *hit = memmem(ts->buf, ts->len, ts->stop[i], ts->stop_len[i]);
        if (hit) {
            size_t at = (size_t)(hit - ts->buf);
            emit(ts, at);
            ts->len = 0;
            ts->stopped = 1;
            return;
        }
    }
    size_t safe = ts->len - held_for_stop(ts);
    safe = slm_utf8_complete_prefix(ts->buf, safe);
    emit(ts, safe);
}

void slm_text_stream_flush(slm_text_stream *ts) {
    if (!ts->stopped) emit(ts, ts->len);
    ts->len = 0;
}
