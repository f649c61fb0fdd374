/* Strict "name: value" line parsing for signature and key files. */
#include "trust/text.h"

#include <stdio.h>
#include <string.h>

#include "base/status.h"

static slm_status bad(const slm_text_cursor *c, const char *expected) {
    return slm_fail(SLM_ERR_SIGNATURE, "%s: malformed %s: line %d: expected %s", c->name, c->what,
                    c->line, expected);
}

/* The next line without its '\n'; fails when there is no complete line. */
static int next_line(slm_text_cursor *c, const char **line, size_t *n) {
    if (c->pos >= c->len) return 0;
    const char *start = c->buf + c->pos;
    const char *nl = memchr(start, '\n', c->len - c->pos);
    if (!nl) return 0;
    *line = start;
    *n = (size_t)(nl - start);
    c->pos += *n + 1;
    c->line++;
    return 1;
}

slm_status slm_text_magic(slm_text_cursor *c, const char *magic) {
    const char *line = NULL;
    size_t n = 0;
    int at = c->line;
    if (!next_line(c, &line, &n) || n != strlen(magic) || memcmp(line, magic, n) != 0) {
        c->line = at;
        char what[96];
        snprintf(what, sizeof what, "\"%s\"", magic);
        return bad(c, what);
    }
    return SLM_OK;
}

slm_status slm_text_field(slm_text_cursor *c, const char *field, size_t max_len, const char **value,
                          size_t *value_len) {
    const char *line = NULL;
    size_t n = 0;
    int at = c->line;
    size_t fl = strlen(field);
    char what[96];
    snprintf(what, sizeof what, "\"%s: ...\"", field);
    if (!next_line(c, &line, &n) || n < fl + 2 || memcmp(line, field, fl) != 0 || line[fl] != ':' ||
        line[fl + 1] != ' ') {
        c->line = at;
        return bad(c, what);
    }
    const char *v = line + fl + 2;
    size_t vl = n - fl - 2;
    if (vl > max_len) {
        c->line = at;
        snprintf(what, sizeof what, "a %s of at most %zu bytes", field, max_len);
        return bad(c, what);
    }
    for (size_t i = 0; i < vl; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) {
            c->line = at;
            snprintf(what, sizeof what, "a %s without control characters", field);
            return bad(c, what);
        }
    }
    *value = v;
    *value_len = vl;
    return SLM_OK;
}

static int hex_digit(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

slm_status slm_text_hex(slm_text_cursor *c, const char *field, uint8_t *out, size_t n) {
    const char *v = NULL;
    size_t vl = 0;
    int at = c->line;
    SLM_TRY(slm_text_field(c, field, 2 * n, &v, &vl));
    int ok = vl == 2 * n;
    for (size_t i = 0; ok && i < n; i++) {
        int hi = hex_digit(v[2 * i]), lo = hex_digit(v[2 * i + 1]);
        if (hi < 0 || lo < 0)
            ok = 0;
        else
            out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (!ok) {
        c->line = at;
        char what[96];
        snprintf(what, sizeof what, "%s as %zu lowercase hex digits", field, 2 * n);
        return bad(c, what);
    }
    return SLM_OK;
}

slm_status slm_text_uint(slm_text_cursor *c, const char *field, uint64_t max, uint64_t *out) {
    const char *v = NULL;
    size_t vl = 0;
    int at = c->line;
    SLM_TRY(slm_text_field(c, field, 20, &v, &vl));
    uint64_t x = 0;
    int ok = vl > 0 && !(vl > 1 && v[0] == '0');
    for (size_t i = 0; ok && i < vl; i++) {
        if (v[i] < '0' || v[i] > '9')
            ok = 0;
        else {
            uint64_t d = (uint64_t)(v[i] - '0');
            if (x > (max - d) / 10)
                ok = 0;
            else
                x = x * 10 + d;
        }
    }
    if (!ok) {
        c->line = at;
        char what[96];
        snprintf(what, sizeof what, "%s as a decimal number up to %llu", field,
                 (unsigned long long)max);
        return bad(c, what);
    }
    *out = x;
    return SLM_OK;
}

slm_status slm_text_end(slm_text_cursor *c) {
    if (c->pos != c->len) return bad(c, "the end of the file");
    return SLM_OK;
}
