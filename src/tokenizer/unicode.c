#include "tokenizer/unicode.h"

/* tok_utf8_next_lax, static so that tok_utf8_next inlines it (the library is
 * built position-independent, where an exported function is not inlined). */
static inline size_t utf8_next_shape(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    size_t len = c < 0x80             ? 1
                 : (c & 0xE0) == 0xC0 ? 2
                 : (c & 0xF0) == 0xE0 ? 3
                 : (c & 0xF8) == 0xF0 ? 4
                                      : 0;
    *cp = c;
    if (len <= 1 || len > n) return 1;
    uint32_t v = c & (0x7Fu >> len); /* the lead byte's payload bits */
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    *cp = v;
    return len;
}

size_t tok_utf8_next_lax(const uint8_t *s, size_t n, uint32_t *cp) {
    return utf8_next_shape(s, n, cp);
}

size_t tok_utf8_next(const uint8_t *s, size_t n, uint32_t *cp) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000}; /* below: overlong */
    uint32_t v;
    size_t len = utf8_next_shape(s, n, &v);
    if (s[0] < 0x80) {
        *cp = v;
        return 1;
    }
    if (len == 1 || v < min_cp[len] || v > TOK_CP_MAX || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = TOK_CP_INVALID;
        return 1;
    }
    *cp = v;
    return len;
}

size_t tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = tok_utf8_next(p + i, n - i, &cp);
        if (cp == TOK_CP_INVALID) return 0;
        i += l;
    }
    return 1;
}

int tok_is_whitespace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* Bytes GPT-2 keeps as themselves: '!'..'~', U+00A1..U+00AC, U+00AE..U+00FF. */
static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_is_printable(b)) return b;
    /* The others, in byte order, become U+0100, U+0101, ... */
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!byte_is_printable(x)) k++;
    return 0x100u + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68) return -1; /* 68 bytes are remapped */
    uint32_t k = cp - 0x100;
    for (unsigned x = 0; x < 256; x++) {
        if (byte_is_printable(x)) continue;
        if (k == 0) return (int)x;
        k--;
    }
    return -1;
}
