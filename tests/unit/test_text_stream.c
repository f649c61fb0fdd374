/* Streaming text: UTF-8 never split, nothing dropped, stop strings. */
#include "check.h"
#include "runtime/text_stream.h"

typedef struct sink {
    char buf[1024];
    size_t len;
    int calls, bad_split, stop_after;
} sink;

static int is_cont(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

static int on_text(void *user, const char *t, size_t n) {
    sink *s = user;
    if (n > 0 && is_cont((unsigned char)t[0])) s->bad_split = 1;
    if (n > 0 && slm_utf8_complete_prefix(t, n) != n) s->bad_split = 1;
    memcpy(s->buf + s->len, t, n);
    s->len += n;
    s->buf[s->len] = 0;
    s->calls++;
    return s->stop_after && s->calls >= s->stop_after;
}

int main(void) {
    slm_text_stream ts;
    CHECK_OK(slm_text_stream_init(&ts));

    /* a 4-byte emoji and a 3-byte CJK character fed one byte at a time */
    const char *text = "a\xF0\x9F\x98\x80 \xE6\x97\xA5!";
    sink s = {.len = 0};
    slm_text_stream_reset(&ts, NULL, NULL, 0, on_text, &s);
    for (const char *p = text; *p; p++) slm_text_stream_push(&ts, p, 1);
    slm_text_stream_flush(&ts);
    CHECK(!strcmp(s.buf, text));
    CHECK(!s.bad_split);

    /* an incomplete sequence at the end is still delivered by flush */
    sink s2 = {.len = 0};
    slm_text_stream_reset(&ts, NULL, NULL, 0, on_text, &s2);
    slm_text_stream_push(&ts, "ok\xE6\x97", 4);
    CHECK(s2.len == 2);
    slm_text_stream_flush(&ts);
    CHECK(s2.len == 4 && !memcmp(s2.buf, "ok\xE6\x97", 4));

    /* stop strings: split across pushes, not emitted, text before them is */
    const char *stops[] = {"\n\nUser:", "END"};
    size_t stop_len[] = {7, 3};
    sink s3 = {.len = 0};
    slm_text_stream_reset(&ts, stops, stop_len, 2, on_text, &s3);
    const char *pieces[] = {"Hello", " there", "\n", "\nUs", "er:", " more"};
    for (int i = 0; i < 6 && !ts.stopped; i++)
        slm_text_stream_push(&ts, pieces[i], strlen(pieces[i]));
    CHECK(ts.stopped);
    slm_text_stream_flush(&ts);
    CHECK(!strcmp(s3.buf, "Hello there"));

    /* a partial match that fails is released in full */
    sink s4 = {.len = 0};
    slm_text_stream_reset(&ts, stops, stop_len, 2, on_text, &s4);
    slm_text_stream_push(&ts, "EN", 2);
    CHECK(s4.len == 0);
    slm_text_stream_push(&ts, "D?", 2);
    CHECK(ts.stopped && s4.len == 0);
    sink s5 = {.len = 0};
    slm_text_stream_reset(&ts, stops, stop_len, 2, on_text, &s5);
    slm_text_stream_push(&ts, "EN", 2);
    slm_text_stream_push(&ts, "Dx", 1); /* "END" minus... only 'D' -> matches */
    CHECK(ts.stopped);
    sink s6 = {.len = 0};
    slm_text_stream_reset(&ts, stops, stop_len, 2, on_text, &s6);
    slm_text_stream_push(&ts, "EN", 2);
    slm_text_stream_push(&ts, "Xy", 2);
    CHECK(!ts.stopped && !strcmp(s6.buf, "ENXy"));

    /* the callback can cancel */
    sink s7 = {.len = 0, .stop_after = 1};
    slm_text_stream_reset(&ts, NULL, NULL, 0, on_text, &s7);
    slm_text_stream_push(&ts, "a", 1);
    CHECK(ts.cancelled);

    slm_text_stream_free(&ts);
    return check_finish();
}
