/* JSON Schema -> GBNF. Generates only JSON that validates: properties in
 * schema order (required ones always, optional ones maybe), no properties
 * beyond those listed, bounded whitespace and number lengths, strings whose
 * escapes encode no lone surrogates. A keyword that constrains values and is
 * not supported is an error naming it and its path; annotations (title,
 * description, examples, ...) are ignored. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "grammar/grammar.h"

#define MAX_DEPTH 64
#define MAX_ITEMS 1000
#define MAX_LEN 1000
#define MAX_PATH 512

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

static void sb_fmt(sbuf *b, const char *fmt, ...) SLM_PRINTF(2, 3);
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
    sb_put(b, tmp, (size_t)n);
}

/* A GBNF string literal of raw bytes. */
static void sb_lit(sbuf *b, const char *s, size_t n) {
    sb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char t[2] = {'\\', (char)c};
            sb_put(b, t, 2);
        } else if (c < 0x20 || c == 0x7F) {
            sb_fmt(b, "\\x%02X", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_str(b, "\"");
}

typedef struct conv {
    const cJSON *root;
    sbuf rules; /* rule definitions */
    int n_rules;
    unsigned need; /* primitive rules used */
    char path[MAX_PATH];
    int depth;
    /* $ref targets already defined (by pointer) */
    const cJSON *refs[256];
    char ref_name[256][48];
    int n_refs;
} conv;

enum { P_STRING = 1, P_NUMBER = 2, P_INTEGER = 4, P_VALUE = 8, P_CHAR = 16 };

static slm_status cerr(const conv *c, const char *fmt, ...) SLM_PRINTF(2, 3);
static slm_status cerr(const conv *c, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return slm_fail(SLM_ERR_CONFIG, "json_schema: %s: %s", c->path[0] ? c->path : "/", msg);
}

static slm_status nomem(void) {
    return slm_fail(SLM_ERR_NOMEM, "json_schema: out of memory");
}

/* Appends a path component for the duration of a call. */
static size_t path_push(conv *c, const char *a, const char *b) {
    size_t old = strlen(c->path);
    snprintf(c->path + old, sizeof c->path - old, "/%s%s%s", a, b ? "/" : "", b ? b : "");
    return old;
}

static void new_rule_name(conv *c, char *name, size_t cap) {
    snprintf(name, cap, "r%d", c->n_rules++);
}

static slm_status convert(conv *c, const cJSON *s, sbuf *expr);

static const char *const ANNOTATIONS[] = {
    "title",      "description", "$schema",   "$id",   "$comment",    "examples", "default",
    "deprecated", "readOnly",    "writeOnly", "$defs", "definitions", NULL};

static int is_annotation(const char *k) {
    for (int i = 0; ANNOTATIONS[i]; i++)
        if (!strcmp(k, ANNOTATIONS[i])) return 1;
    return 0;
}

static int in_list(const char *k, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(k, list[i])) return 1;
    return 0;
}

/* A JSON value as a literal (enum / const). */
static slm_status value_literal(conv *c, const cJSON *v, sbuf *expr) {
    char *txt = cJSON_PrintUnformatted(v);
    if (!txt) return nomem();
    (void)c;
    sb_lit(expr, txt, strlen(txt));
    free(txt);
    return SLM_OK;
}

static slm_status get_count(conv *c, const cJSON *s, const char *key, long lim, long *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!it) return SLM_OK;
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || floor(it->valuedouble) != it->valuedouble)
        return cerr(c, "'%s' must be a non-negative integer", key);
    if (it->valuedouble > (double)lim) return cerr(c, "'%s' above %ld is not supported", key, lim);
    *out = (long)it->valuedouble;
    return SLM_OK;
}

/* ------------------------------------------------------------ regex */

typedef struct rx {
    const char *p, *end;
    conv *c;
} rx;

static slm_status rx_err(rx *r, const char *what) {
    return cerr(r->c, "pattern: %s (supported: literals, classes, '.', groups, '|', * + ? {m,n})",
                what);
}

/* A code point as it goes inside a GBNF class. */
static void class_cp(sbuf *b, uint32_t cp) {
    if (cp >= 0x20 && cp < 0x7F && cp != ']' && cp != '\\' && cp != '-' && cp != '^' && cp != '"' &&
        cp != '[')
        sb_fmt(b, "%c", (char)cp);
    else if (cp < 0x100)
        sb_fmt(b, "\\x%02X", (unsigned)cp);
    else if (cp < 0x10000)
        sb_fmt(b, "\\u%04X", (unsigned)cp);
    else
        sb_fmt(b, "\\U%08X", (unsigned)cp);
}

static uint32_t rx_utf8(rx *r) {
    const unsigned char *u = (const unsigned char *)r->p;
    unsigned c0 = u[0];
    int n = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 1;
    if (r->p + n > r->end) n = 1;
    uint32_t cp = n == 1 ? c0 : n == 2 ? (c0 & 0x1F) : n == 3 ? (c0 & 0x0F) : (c0 & 0x07);
    for (int i = 1; i < n; i++) cp = (cp << 6) | (u[i] & 0x3F);
    r->p += n;
    return cp;
}

typedef struct rxranges {
    uint32_t lo[64], hi[64];
    int n;
} rxranges;

static int rr_add(rxranges *rr, uint32_t lo, uint32_t hi) {
    if (rr->n >= 64) return -1;
    rr->lo[rr->n] = lo;
    rr->hi[rr->n] = hi;
    rr->n++;
    return 0;
}

/* \d \w \s as ranges (negated forms flagged). */
static int rx_shorthand(char e, rxranges *rr, int *neg) {
    *neg = e == 'D' || e == 'W' || e == 'S';
    switch (e) {
    case 'd':
    case 'D':
        return rr_add(rr, '0', '9') ? -1 : 1;
    case 'w':
    case 'W':
        if (rr_add(rr, 'a', 'z') || rr_add(rr, 'A', 'Z') || rr_add(rr, '0', '9') ||
            rr_add(rr, '_', '_'))
            return -1;
        return 1;
    case 's':
    case 'S':
        if (rr_add(rr, ' ', ' ') || rr_add(rr, '\t', '\t') || rr_add(rr, '\n', '\n') ||
            rr_add(rr, '\r', '\r'))
            return -1;
        return 1;
    default:
        return 0;
    }
}

/* One escaped character (after the backslash) as a code point. */
static slm_status rx_escape_cp(rx *r, uint32_t *cp) {
    if (r->p >= r->end) return rx_err(r, "trailing backslash");
    char e = *r->p++;
    switch (e) {
    case 'n':
        *cp = '\n';
        return SLM_OK;
    case 't':
        *cp = '\t';
        return SLM_OK;
    case 'r':
        *cp = '\r';
        return SLM_OK;
    case 'f':
        *cp = '\f';
        return SLM_OK;
    case 'v':
        *cp = '\v';
        return SLM_OK;
    case 'x':
    case 'u': {
        int nh = e == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int i = 0; i < nh; i++) {
            if (r->p >= r->end) return rx_err(r, "short hex escape");
            char h = *r->p++;
            int d = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
            if (d < 0) return rx_err(r, "bad hex escape");
            v = v * 16 + (uint32_t)d;
        }
        *cp = v;
        return SLM_OK;
    }
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            return rx_err(r, "unsupported escape (back-references, \\b, \\p{...})");
        *cp = (unsigned char)e;
        return SLM_OK;
    }
}

/* Emits a set of code points as JSON-string content: safe ranges as one
 * class, '"' '\\' and \n \t \r as their JSON escapes; other control
 * characters are left out (the output stays a subset of the pattern). */
static void emit_positive(sbuf *b, const rxranges *rr) {
    sbuf cls = {0};
    int has_quote = 0, has_bs = 0, has_n = 0, has_t = 0, has_r = 0;
    for (int i = 0; i < rr->n; i++) {
        uint32_t lo = rr->lo[i], hi = rr->hi[i];
        for (uint32_t x = lo; x <= hi && x < 0x80; x++) {
            has_quote |= x == '"';
            has_bs |= x == '\\';
            has_n |= x == '\n';
            has_t |= x == '\t';
            has_r |= x == '\r';
        }
        /* cut out 0x00-0x1F, '"', '\\' */
        uint32_t cuts[][2] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
        uint32_t segs_lo[8], segs_hi[8];
        int ns = 1;
        segs_lo[0] = lo;
        segs_hi[0] = hi;
        for (int k = 0; k < 3; k++) {
            int nn = 0;
            uint32_t nlo[8], nhi[8];
            for (int j = 0; j < ns; j++) {
                uint32_t a = segs_lo[j], z = segs_hi[j];
                if (z < cuts[k][0] || a > cuts[k][1]) {
                    nlo[nn] = a;
                    nhi[nn++] = z;
                    continue;
                }
                if (a < cuts[k][0]) {
                    nlo[nn] = a;
                    nhi[nn++] = cuts[k][0] - 1;
                }
                if (z > cuts[k][1]) {
                    nlo[nn] = cuts[k][1] + 1;
                    nhi[nn++] = z;
                }
            }
            memcpy(segs_lo, nlo, sizeof nlo);
            memcpy(segs_hi, nhi, sizeof nhi);
            ns = nn;
        }
        for (int j = 0; j < ns; j++) {
            class_cp(&cls, segs_lo[j]);
            if (segs_hi[j] != segs_lo[j]) {
                sb_str(&cls, "-");
                class_cp(&cls, segs_hi[j]);
            }
        }
    }
    int n_alt = 0;
    sb_str(b, "(");
    if (cls.n) {
        sb_str(b, "[");
        sb_put(b, cls.p, cls.n);
        sb_str(b, "]");
        n_alt++;
    }
    const char *esc[5] = {"\"\\\\\\\"\"", "\"\\\\\\\\\"", "\"\\\\n\"", "\"\\\\t\"", "\"\\\\r\""};
    int has[5] = {has_quote, has_bs, has_n, has_t, has_r};
    for (int k = 0; k < 5; k++) {
        if (!has[k]) continue;
        if (n_alt++) sb_str(b, " | ");
        sb_str(b, esc[k]);
    }
    if (!n_alt) sb_str(b, "[^\\x00-\\U0010FFFF]"); /* never reached: caller checks */
    sb_str(b, ")");
    if (cls.oom) b->oom = 1;
    free(cls.p);
}

static void emit_negated(sbuf *b, const rxranges *rr) {
    sb_str(b, "[^\"\\\\\\x00-\\x1F\\u2028\\u2029");
    for (int i = 0; i < rr->n; i++) {
        class_cp(b, rr->lo[i]);
        if (rr->hi[i] != rr->lo[i]) {
            sb_str(b, "-");
            class_cp(b, rr->hi[i]);
        }
    }
    sb_str(b, "]");
}

static slm_status rx_class(rx *r, sbuf *b) {
    r->p++; /* [ */
    int neg = 0;
    if (r->p < r->end && *r->p == '^') {
        neg = 1;
        r->p++;
    }
    rxranges rr = {0};
    int first = 1;
    for (;;) {
        if (r->p >= r->end) return rx_err(r, "unterminated class");
        if (*r->p == ']' && !first) {
            r->p++;
            break;
        }
        first = 0;
        uint32_t lo;
        if (*r->p == '\\') {
            r->p++;
            int sneg = 0;
            if (r->p < r->end) {
                int k = rx_shorthand(*r->p, &rr, &sneg);
                if (k < 0) return rx_err(r, "class too large");
                if (k > 0) {
                    if (sneg) return rx_err(r, "negated shorthand inside a class");
                    r->p++;
                    continue;
                }
            }
            SLM_TRY(rx_escape_cp(r, &lo));
        } else {
            lo = rx_utf8(r);
        }
        uint32_t hi = lo;
        if (r->p + 1 < r->end && *r->p == '-' && r->p[1] != ']') {
            r->p++;
            if (*r->p == '\\') {
                r->p++;
                SLM_TRY(rx_escape_cp(r, &hi));
            } else {
                hi = rx_utf8(r);
            }
            if (hi < lo) return rx_err(r, "reversed range in a class");
        }
        if (rr_add(&rr, lo, hi)) return rx_err(r, "class too large");
    }
    if (neg) {
        emit_negated(b, &rr);
        return SLM_OK;
    }
    /* does anything printable remain? */
    int ok = 0;
    for (int i = 0; i < rr.n; i++)
        for (uint32_t x = rr.lo[i]; x <= rr.hi[i] && !ok; x++) {
            if (x >= 0x20 || x == '\n' || x == '\t' || x == '\r') ok = 1;
            if (x > 0x80) break;
        }
    if (!ok) return rx_err(r, "class of control characters only");
    emit_positive(b, &rr);
    return SLM_OK;
}

static slm_status rx_alt(rx *r, sbuf *b, int depth);

static slm_status rx_seq(rx *r, sbuf *b, int depth) {
    int first = 1;
    while (r->p < r->end && *r->p != '|' && *r->p != ')') {
        char ch = *r->p;
        if (ch == '^') {
            if (!(first && depth == 0)) return rx_err(r, "'^' only at the start");
            r->p++;
            continue;
        }
        if (ch == '$') {
            r->p++;
            if (!(r->p == r->end && depth == 0)) return rx_err(r, "'$' only at the end");
            continue;
        }
        first = 0;
        sbuf atom = {0};
        slm_status st = SLM_OK;
        if (ch == '(') {
            r->p++;
            if (r->p < r->end && *r->p == '?') {
                if (r->p + 1 < r->end && r->p[1] == ':') {
                    r->p += 2;
                } else {
                    free(atom.p);
                    return rx_err(r, "lookaround and named groups");
                }
            }
            if (depth > 32) {
                free(atom.p);
                return rx_err(r, "groups nested too deeply");
            }
            sb_str(&atom, "(");
            st = rx_alt(r, &atom, depth + 1);
            if (st == SLM_OK && (r->p >= r->end || *r->p != ')')) st = rx_err(r, "unclosed '('");
            if (st == SLM_OK) r->p++;
            sb_str(&atom, ")");
        } else if (ch == '[') {
            st = rx_class(r, &atom);
        } else if (ch == '.') {
            r->p++;
            sb_str(&atom, "[^\"\\\\\\x00-\\x1F\\u2028\\u2029]");
        } else if (ch == '\\') {
            r->p++;
            rxranges rr = {0};
            int neg = 0;
            int k = r->p < r->end ? rx_shorthand(*r->p, &rr, &neg) : 0;
            if (k > 0) {
                r->p++;
                if (neg)
                    emit_negated(&atom, &rr);
                else
                    emit_positive(&atom, &rr);
            } else {
                uint32_t cp;
                st = rx_escape_cp(r, &cp);
                rr.n = 0;
                rr_add(&rr, cp, cp);
                if (st == SLM_OK) emit_positive(&atom, &rr);
            }
        } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            free(atom.p);
            return rx_err(r, "a quantifier without an item");
        } else {
            rxranges rr = {0};
            uint32_t cp = rx_utf8(r);
            rr_add(&rr, cp, cp);
            emit_positive(&atom, &rr);
        }
        if (st != SLM_OK) {
            free(atom.p);
            return st;
        }
        /* quantifier */
        if (r->p < r->end && (*r->p == '*' || *r->p == '+' || *r->p == '?' || *r->p == '{')) {
            char q = *r->p++;
            if (q == '{') {
                const char *qs = r->p;
                while (r->p < r->end && *r->p != '}') r->p++;
                if (r->p >= r->end) {
                    free(atom.p);
                    return rx_err(r, "unclosed '{'");
                }
                r->p++;
                sb_put(&atom, "{", 1);
                sb_put(&atom, qs, (size_t)(r->p - qs));
            } else {
                sb_put(&atom, &q, 1);
            }
            if (r->p < r->end && *r->p == '?') r->p++; /* lazy: same language */
        }
        if (atom.oom) b->oom = 1;
        if (atom.n) {
            sb_str(b, " ");
            sb_put(b, atom.p, atom.n);
        }
        free(atom.p);
    }
    return SLM_OK;
}

static slm_status rx_alt(rx *r, sbuf *b, int depth) {
    for (;;) {
        sb_str(b, "(\"\"");
        SLM_TRY(rx_seq(r, b, depth));
        sb_str(b, ")");
        if (r->p < r->end && *r->p == '|') {
            r->p++;
            sb_str(b, " | ");
            continue;
        }
        return SLM_OK;
    }
}

static slm_status pattern_expr(conv *c, const char *pat, sbuf *expr) {
    rx r = {pat, pat + strlen(pat), c};
    sbuf body = {0};
    slm_status st = rx_alt(&r, &body, 0);
    if (st == SLM_OK && r.p < r.end) st = rx_err(&r, "unbalanced ')'");
    if (st == SLM_OK) {
        sb_str(expr, "\"\\\"\" (");
        sb_put(expr, body.p, body.n);
        sb_str(expr, ") \"\\\"\"");
    }
    free(body.p);
    return st;
}

/* ------------------------------------------------------------ types */

static const char *const STRING_KEYS[] = {"minLength", "maxLength", "pattern", NULL};
static const char *const NUMBER_KEYS[] = {"minimum", NULL};
static const char *const OBJECT_KEYS[] = {"properties", "required", "additionalProperties", NULL};
static const char *const ARRAY_KEYS[] = {"items", "minItems", "maxItems", "uniqueItems", NULL};

static slm_status string_expr(conv *c, const cJSON *s, sbuf *expr) {
    long mn = 0, mx = -1;
    SLM_TRY(get_count(c, s, "minLength", MAX_LEN, &mn));
    SLM_TRY(get_count(c, s, "maxLength", MAX_LEN, &mx));
    if (mx >= 0 && mx < mn) return cerr(c, "maxLength is below minLength");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    if (pat) {
        if (!cJSON_IsString(pat)) return cerr(c, "'pattern' must be a string");
        if (cJSON_GetObjectItemCaseSensitive(s, "minLength") ||
            cJSON_GetObjectItemCaseSensitive(s, "maxLength"))
            return cerr(c, "'pattern' together with minLength/maxLength is not supported");
        size_t old = path_push(c, "pattern", NULL);
        slm_status st = pattern_expr(c, pat->valuestring, expr);
        c->path[old] = '\0';
        return st;
    }
    c->need |= P_CHAR;
    if (mn == 0 && mx < 0) {
        c->need |= P_STRING;
        sb_str(expr, "json-string");
    } else if (mx < 0) {
        sb_fmt(expr, "\"\\\"\" json-char{%ld,} \"\\\"\"", mn);
    } else {
        sb_fmt(expr, "\"\\\"\" json-char{%ld,%ld} \"\\\"\"", mn, mx);
    }
    return SLM_OK;
}

static slm_status number_expr(conv *c, const cJSON *s, int integer, sbuf *expr) {
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum");
    int nonneg = 0;
    if (mn) {
        if (!cJSON_IsNumber(mn) || mn->valuedouble != 0)
            return cerr(c, "'minimum' other than 0 is not supported");
        nonneg = 1;
    }
    c->need |= integer ? P_INTEGER : P_NUMBER;
    if (integer)
        sb_str(expr, nonneg ? "json-int-part" : "json-integer");
    else
        sb_str(expr, nonneg ? "json-unumber" : "json-number");
    return SLM_OK;
}

static slm_status object_expr(conv *c, const cJSON *s, sbuf *expr) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return cerr(c, "'properties' must be an object");
    if (req && !cJSON_IsArray(req)) return cerr(c, "'required' must be an array");
    if (addl && !cJSON_IsBool(addl) && !cJSON_IsObject(addl))
        return cerr(c, "'additionalProperties' must be a boolean or a schema");
    const cJSON *e;
    cJSON_ArrayForEach(e, req) {
        if (!cJSON_IsString(e)) return cerr(c, "'required' must list strings");
    }
    int n_props = props ? cJSON_GetArraySize(props) : 0;
    /* required names without a schema in properties take any value */
    int n_extra = 0;
    cJSON_ArrayForEach(e, req) {
        if (!props || !cJSON_GetObjectItemCaseSensitive(props, e->valuestring)) n_extra++;
    }
    int n = n_props + n_extra;
    if (n == 0) {
        if (cJSON_IsObject(addl) && addl->child) {
            /* a map: any keys, values of the given schema */
            sbuf v = {0};
            size_t old = path_push(c, "additionalProperties", NULL);
            slm_status st = convert(c, addl, &v);
            c->path[old] = '\0';
            if (st != SLM_OK) {
                free(v.p);
                return st;
            }
            char name[32];
            new_rule_name(c, name, sizeof name);
            c->need |= P_STRING | P_CHAR;
            sb_fmt(&c->rules, "%s-kv ::= json-string ws \":\" ws ", name);
            sb_put(&c->rules, v.p, v.n);
            sb_fmt(&c->rules, " ws\n%s ::= \"{\" ws ( %s-kv ( \",\" ws %s-kv )* )? \"}\"\n", name,
                   name, name);
            free(v.p);
            sb_str(expr, name);
            return SLM_OK;
        }
        if (cJSON_IsFalse(addl)) {
            sb_str(expr, "\"{\" ws \"}\"");
            return SLM_OK;
        }
        c->need |= P_VALUE | P_STRING | P_CHAR | P_NUMBER;
        sb_str(expr, "json-object");
        return SLM_OK;
    }
    char name[32];
    new_rule_name(c, name, sizeof name);
    /* key-value rules */
    int k = 0;
    int *required = calloc((size_t)n, sizeof *required);
    if (!required) return nomem();
    slm_status st = SLM_OK;
    const cJSON *p = props ? props->child : NULL;
    const cJSON *extra = req ? req->child : NULL;
    for (k = 0; k < n && st == SLM_OK; k++) {
        const char *key;
        const cJSON *sub;
        if (p) {
            key = p->string;
            sub = p;
            p = p->next;
        } else {
            while (extra && props && cJSON_GetObjectItemCaseSensitive(props, extra->valuestring))
                extra = extra->next;
            key = extra->valuestring;
            sub = NULL;
            extra = extra->next;
        }
        const cJSON *r;
        cJSON_ArrayForEach(r, req) {
            if (!strcmp(r->valuestring, key)) required[k] = 1;
        }
        sbuf v = {0};
        if (sub) {
            size_t old = path_push(c, "properties", key);
            st = convert(c, sub, &v);
            c->path[old] = '\0';
        } else {
            c->need |= P_VALUE | P_STRING | P_CHAR | P_NUMBER;
            sb_str(&v, "json-value");
        }
        if (st == SLM_OK) {
            /* the key as JSON text */
            cJSON *ks = cJSON_CreateString(key);
            char *kt = ks ? cJSON_PrintUnformatted(ks) : NULL;
            cJSON_Delete(ks);
            if (!kt) {
                st = nomem();
            } else {
                sb_fmt(&c->rules, "%s-kv%d ::= ", name, k);
                sb_lit(&c->rules, kt, strlen(kt));
                sb_str(&c->rules, " ws \":\" ws ");
                sb_put(&c->rules, v.p, v.n);
                sb_str(&c->rules, " ws\n");
                free(kt);
            }
        }
        free(v.p);
    }
    if (st == SLM_OK) {
        /* first_k: nothing emitted yet; rest_k: something was */
        for (k = 0; k < n; k++) {
            if (required[k])
                sb_fmt(&c->rules, "%s-f%d ::= %s-kv%d %s-r%d\n", name, k, name, k, name, k + 1);
            else
                sb_fmt(&c->rules, "%s-f%d ::= %s-kv%d %s-r%d | %s-f%d\n", name, k, name, k, name,
                       k + 1, name, k + 1);
            if (required[k])
                sb_fmt(&c->rules, "%s-r%d ::= \",\" ws %s-kv%d %s-r%d\n", name, k, name, k, name,
                       k + 1);
            else
                sb_fmt(&c->rules, "%s-r%d ::= (\",\" ws %s-kv%d)? %s-r%d\n", name, k, name, k, name,
                       k + 1);
        }
        sb_fmt(&c->rules, "%s-f%d ::= \"\"\n%s-r%d ::= \"\"\n", name, n, name, n);
        sb_fmt(&c->rules, "%s ::= \"{\" ws %s-f0 \"}\"\n", name, name);
        sb_str(expr, name);
    }
    free(required);
    return st;
}

static slm_status array_expr(conv *c, const cJSON *s, sbuf *expr) {
    long mn = 0, mx = -1;
    SLM_TRY(get_count(c, s, "minItems", MAX_ITEMS, &mn));
    SLM_TRY(get_count(c, s, "maxItems", MAX_ITEMS, &mx));
    if (mx >= 0 && mx < mn) return cerr(c, "maxItems is below minItems");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(s, "uniqueItems");
    if (u && !cJSON_IsFalse(u)) return cerr(c, "'uniqueItems' is not supported");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    sbuf v = {0};
    if (items) {
        if (!cJSON_IsObject(items) && !cJSON_IsBool(items))
            return cerr(c, "'items' must be a schema (prefixItems/tuples are not supported)");
        size_t old = path_push(c, "items", NULL);
        slm_status st = convert(c, items, &v);
        c->path[old] = '\0';
        if (st != SLM_OK) {
            free(v.p);
            return st;
        }
    } else {
        c->need |= P_VALUE | P_STRING | P_CHAR | P_NUMBER;
        sb_str(&v, "json-value");
    }
    char name[32];
    new_rule_name(c, name, sizeof name);
    sb_fmt(&c->rules, "%s-item ::= ", name);
    sb_put(&c->rules, v.p, v.n);
    sb_str(&c->rules, " ws\n");
    free(v.p);
    if (mx == 0) {
        sb_fmt(&c->rules, "%s ::= \"[\" ws \"]\"\n", name);
    } else {
        long rmin = mn > 0 ? mn - 1 : 0;
        char rep[64];
        if (mx < 0)
            snprintf(rep, sizeof rep, "{%ld,}", rmin);
        else
            snprintf(rep, sizeof rep, "{%ld,%ld}", rmin, mx - 1);
        if (mn > 0)
            sb_fmt(&c->rules, "%s ::= \"[\" ws %s-item (\",\" ws %s-item)%s \"]\"\n", name, name,
                   name, rep);
        else
            sb_fmt(&c->rules, "%s ::= \"[\" ws (%s-item (\",\" ws %s-item)%s)? \"]\"\n", name, name,
                   name, rep);
    }
    sb_str(expr, name);
    return SLM_OK;
}

static slm_status ref_expr(conv *c, const cJSON *ref, sbuf *expr) {
    if (!cJSON_IsString(ref)) return cerr(c, "'$ref' must be a string");
    const char *r = ref->valuestring;
    const char *name = NULL;
    const cJSON *defs = NULL;
    if (!strncmp(r, "#/$defs/", 8)) {
        defs = cJSON_GetObjectItemCaseSensitive(c->root, "$defs");
        name = r + 8;
    } else if (!strncmp(r, "#/definitions/", 14)) {
        defs = cJSON_GetObjectItemCaseSensitive(c->root, "definitions");
        name = r + 14;
    } else if (!strcmp(r, "#")) {
        defs = NULL;
    } else {
        return cerr(c, "'$ref' \"%s\" is not supported (only #, #/$defs/NAME, #/definitions/NAME)",
                    r);
    }
    const cJSON *target = c->root;
    if (name) {
        if (strchr(name, '/') || strchr(name, '~'))
            return cerr(c, "'$ref' \"%s\": nested or escaped pointers are not supported", r);
        target = defs ? cJSON_GetObjectItemCaseSensitive(defs, name) : NULL;
        if (!target) return cerr(c, "'$ref' \"%s\" points to nothing", r);
    }
    for (int i = 0; i < c->n_refs; i++)
        if (c->refs[i] == target) {
            sb_str(expr, c->ref_name[i]);
            return SLM_OK;
        }
    if (c->n_refs >= 256) return cerr(c, "more than 256 $ref targets");
    int idx = c->n_refs++;
    c->refs[idx] = target;
    snprintf(c->ref_name[idx], sizeof c->ref_name[idx], "ref%d", idx);
    sbuf v = {0};
    char saved[MAX_PATH];
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%s", r[1] ? r + 1 : "");
    slm_status st = convert(c, target, &v);
    memcpy(c->path, saved, sizeof saved);
    if (st == SLM_OK) {
        sb_fmt(&c->rules, "%s ::= ", c->ref_name[idx]);
        sb_put(&c->rules, v.p, v.n);
        sb_str(&c->rules, "\n");
        sb_str(expr, c->ref_name[idx]);
    }
    free(v.p);
    return st;
}

static slm_status alternatives(conv *c, const cJSON *list, const char *kw, sbuf *expr) {
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return cerr(c, "'%s' must be a non-empty array", kw);
    sb_str(expr, "(");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        size_t old = path_push(c, kw, idx);
        if (i++) sb_str(expr, " | ");
        slm_status st = convert(c, e, expr);
        c->path[old] = '\0';
        SLM_TRY(st);
    }
    sb_str(expr, ")");
    return SLM_OK;
}

static int type_bit(const char *t) {
    static const char *const names[] = {"string", "number", "integer", "boolean",
                                        "null",   "object", "array",   NULL};
    for (int i = 0; names[i]; i++)
        if (!strcmp(t, names[i])) return 1 << i;
    return 0;
}

static slm_status convert(conv *c, const cJSON *s, sbuf *expr) {
    if (++c->depth > MAX_DEPTH) return cerr(c, "schema nested more than %d levels", MAX_DEPTH);
    slm_status st = SLM_OK;
    if (cJSON_IsTrue(s) || (cJSON_IsObject(s) && !s->child)) {
        c->need |= P_VALUE | P_STRING | P_CHAR | P_NUMBER;
        sb_str(expr, "json-value");
        c->depth--;
        return SLM_OK;
    }
    if (!cJSON_IsObject(s)) {
        c->depth--;
        return cerr(c, "expected a schema object (or true)");
    }
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "type");
    /* which types are present decides which keywords are allowed */
    int types = 0;
    if (ty) {
        if (cJSON_IsString(ty)) {
            types = type_bit(ty->valuestring);
            if (!types) st = cerr(c, "unknown type \"%s\"", ty->valuestring);
        } else if (cJSON_IsArray(ty) && cJSON_GetArraySize(ty) > 0) {
            const cJSON *e;
            cJSON_ArrayForEach(e, ty) {
                int b = cJSON_IsString(e) ? type_bit(e->valuestring) : 0;
                if (!b) st = cerr(c, "'type' lists an unknown type");
                types |= b;
            }
        } else {
            st = cerr(c, "'type' must be a string or an array of strings");
        }
    }
    const cJSON *k;
    int n_constraints = 0;
    for (k = s->child; k && st == SLM_OK; k = k->next) {
        const char *key = k->string;
        if (is_annotation(key)) continue;
        n_constraints++;
        if (!strcmp(key, "type") || !strcmp(key, "enum") || !strcmp(key, "const") ||
            !strcmp(key, "anyOf") || !strcmp(key, "oneOf") || !strcmp(key, "allOf") ||
            !strcmp(key, "$ref"))
            continue;
        int ok = 0;
        if (in_list(key, STRING_KEYS)) ok = !ty || (types & 1);
        if (in_list(key, NUMBER_KEYS)) ok = !ty || (types & 6);
        if (in_list(key, OBJECT_KEYS)) ok = !ty || (types & 32);
        if (in_list(key, ARRAY_KEYS)) ok = !ty || (types & 64);
        if (!ok) {
            size_t old = path_push(c, key, NULL);
            st = cerr(c, "keyword '%s' is not supported%s", key,
                      in_list(key, STRING_KEYS) || in_list(key, NUMBER_KEYS) ||
                              in_list(key, OBJECT_KEYS) || in_list(key, ARRAY_KEYS)
                          ? " for this type"
                          : "");
            c->path[old] = '\0';
        }
    }
    if (st != SLM_OK) goto done;
    if (ref) {
        if (n_constraints > 1) {
            st = cerr(c, "'$ref' with sibling keywords is not supported");
            goto done;
        }
        st = ref_expr(c, ref, expr);
        goto done;
    }
    if (all) {
        if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1 || n_constraints > 1) {
            st = cerr(c, "'allOf' is supported only with a single schema and nothing beside it");
            goto done;
        }
        size_t old = path_push(c, "allOf", "0");
        st = convert(c, all->child, expr);
        c->path[old] = '\0';
        goto done;
    }
    if (any || one) {
        if (n_constraints > 1) {
            st = cerr(c,
                      "'%s' with sibling keywords is not supported (move them into each "
                      "alternative)",
                      any ? "anyOf" : "oneOf");
            goto done;
        }
        st = alternatives(c, any ? any : one, any ? "anyOf" : "oneOf", expr);
        goto done;
    }
    if (cn || en) {
        /* the values must also satisfy the rest of the schema; we trust the
         * schema's author that they do (as validators do not check it) */
        if (cn) {
            st = value_literal(c, cn, expr);
        } else {
            if (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0) {
                st = cerr(c, "'enum' must be a non-empty array");
                goto done;
            }
            sb_str(expr, "(");
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, en) {
                if (i++) sb_str(expr, " | ");
                st = value_literal(c, e, expr);
                if (st != SLM_OK) break;
            }
            sb_str(expr, ")");
        }
        goto done;
    }
    if (!ty) {
        /* infer from the keywords */
        for (k = s->child; k; k = k->next) {
            if (in_list(k->string, STRING_KEYS)) types |= 1;
            if (in_list(k->string, NUMBER_KEYS)) types |= 2;
            if (in_list(k->string, OBJECT_KEYS)) types |= 32;
            if (in_list(k->string, ARRAY_KEYS)) types |= 64;
        }
        if (!types) {
            c->need |= P_VALUE | P_STRING | P_CHAR | P_NUMBER;
            sb_str(expr, "json-value");
            goto done;
        }
    }
    int n_types = 0;
    for (int b = 0; b < 7; b++) n_types += (types >> b) & 1;
    if (types & 2) n_types -= (types & 4) ? 1 : 0; /* number covers integer */
    if (n_types > 1) sb_str(expr, "(");
    int first = 1;
    for (int b = 0; b < 7 && st == SLM_OK; b++) {
        if (!((types >> b) & 1)) continue;
        if (b == 2 && (types & 2)) continue;
        if (!first) sb_str(expr, " | ");
        first = 0;
        switch (b) {
        case 0:
            st = string_expr(c, s, expr);
            break;
        case 1:
            st = number_expr(c, s, 0, expr);
            break;
        case 2:
            st = number_expr(c, s, 1, expr);
            break;
        case 3:
            sb_str(expr, "(\"true\" | \"false\")");
            break;
        case 4:
            sb_str(expr, "\"null\"");
            break;
        case 5:
            st = object_expr(c, s, expr);
            break;
        case 6:
            st = array_expr(c, s, expr);
            break;
        }
    }
    if (n_types > 1) sb_str(expr, ")");
done:
    c->depth--;
    return st;
}

static const char JSON_PRIMS_WS[] = "ws ::= (\"\\n\" [ \\t]{0,16} | \" \")?\n";
static const char JSON_PRIM_CHAR[] =
    "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" json-hex4)\n"
    "json-hex4 ::= ([0-9a-cA-CeEfF] [0-9a-fA-F] | [dD] [0-7]) [0-9a-fA-F] [0-9a-fA-F]\n";
static const char JSON_PRIM_STRING[] = "json-string ::= \"\\\"\" json-char* \"\\\"\"\n";
static const char JSON_PRIM_INT[] = "json-int-part ::= \"0\" | [1-9] [0-9]{0,15}\n"
                                    "json-integer ::= \"-\"? json-int-part\n";
static const char JSON_PRIM_NUMBER[] =
    "json-unumber ::= json-int-part (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n"
    "json-number ::= \"-\"? json-unumber\n";
static const char JSON_PRIM_VALUE[] =
    "json-value ::= json-object | json-array | json-string | json-number | \"true\" | "
    "\"false\" | \"null\"\n"
    "json-object ::= \"{\" ws (json-string ws \":\" ws json-value ws (\",\" ws json-string ws "
    "\":\" ws json-value ws)*)? \"}\"\n"
    "json-array ::= \"[\" ws (json-value ws (\",\" ws json-value ws)*)? \"]\"\n";

static void add_prims(sbuf *out, unsigned need) {
    sb_str(out, JSON_PRIMS_WS);
    if (need & P_VALUE) need |= P_STRING | P_CHAR | P_NUMBER;
    if (need & P_STRING) need |= P_CHAR;
    if (need & P_NUMBER) need |= P_INTEGER;
    if (need & P_CHAR) sb_str(out, JSON_PRIM_CHAR);
    if (need & P_STRING) sb_str(out, JSON_PRIM_STRING);
    if (need & P_INTEGER) sb_str(out, JSON_PRIM_INT);
    if (need & P_NUMBER) sb_str(out, JSON_PRIM_NUMBER);
    if (need & P_VALUE) sb_str(out, JSON_PRIM_VALUE);
}

slm_status slm_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf) {
    if (!schema || !gbnf) return slm_fail(SLM_ERR_INVALID_ARG, "slm_json_schema_to_gbnf: NULL");
    *gbnf = NULL;
    if (len > SLM_GRAMMAR_MAX_TEXT)
        return slm_fail(SLM_ERR_CONFIG, "json_schema: longer than %u bytes", SLM_GRAMMAR_MAX_TEXT);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(schema, len, &end, 0);
    if (!root) {
        size_t off = end && end >= schema ? (size_t)(end - schema) : 0;
        return slm_fail(SLM_ERR_CONFIG, "json_schema: invalid JSON near byte %zu", off);
    }
    conv *c = calloc(1, sizeof *c);
    if (!c) {
        cJSON_Delete(root);
        return nomem();
    }
    c->root = root;
    sbuf expr = {0};
    slm_status st = convert(c, root, &expr);
    sbuf out = {0};
    if (st == SLM_OK) {
        sb_str(&out, "root ::= ");
        sb_put(&out, expr.p, expr.n);
        sb_str(&out, "\n");
        sb_put(&out, c->rules.p ? c->rules.p : "", c->rules.n);
        add_prims(&out, c->need);
        if (out.oom || expr.oom || c->rules.oom) st = nomem();
    }
    free(expr.p);
    free(c->rules.p);
    free(c);
    cJSON_Delete(root);
    if (st != SLM_OK) {
        free(out.p);
        return st;
    }
    *gbnf = out.p;
    return SLM_OK;
}

const char *slm_json_object_gbnf(void) {
    return "root ::= json-object\n"
           "ws ::= (\"\\n\" [ \\t]{0,16} | \" \")?\n"
           "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" json-hex4)\n"
           "json-hex4 ::= ([0-9a-cA-CeEfF] [0-9a-fA-F] | [dD] [0-7]) [0-9a-fA-F] [0-9a-fA-F]\n"
           "json-string ::= \"\\\"\" json-char* \"\\\"\"\n"
           "json-int-part ::= \"0\" | [1-9] [0-9]{0,15}\n"
           "json-unumber ::= json-int-part (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})?\n"
           "json-number ::= \"-\"? json-unumber\n"
           "json-value ::= json-object | json-array | json-string | json-number | \"true\" | "
           "\"false\" | \"null\"\n"
           "json-object ::= \"{\" ws (json-string ws \":\" ws json-value ws (\",\" ws "
           "json-string ws \":\" ws json-value ws)*)? \"}\"\n"
           "json-array ::= \"[\" ws (json-value ws (\",\" ws json-value ws)*)? \"]\"\n";
}
