/* Jinja2-subset interpreter for chat templates: lexer, parser, evaluator.
 *
 * Memory: a parsed template owns one arena (nodes, literals); a render owns
 * another (values), freed whole at the end, so values are shared freely and
 * never freed one by one. Strings are immutable (slices share bytes); lists
 * and dicts are immutable except namespaces, as in HF's sandboxed
 * environment (list.append and friends are refused there too). */
#include "tokenizer/jinja.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/status.h"
#include "tokenizer/unicode.h"

/* Keeps helpers out of the recursive evaluator's frame (stack per nesting level). */
#define NOINLINE __attribute__((noinline))

/* ======================================================================== */
/* Arena                                                                    */
/* ======================================================================== */

#define ARENA_CHUNK (64u << 10)

typedef struct achunk {
    struct achunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} achunk;

typedef struct arena {
    achunk *head;
    size_t total, limit;
} arena;

static void *arena_alloc(arena *a, size_t n) {
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0) n = 16;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        if (cap > a->limit || a->total > a->limit - cap) return NULL;
        achunk *c = malloc(sizeof(achunk) + cap);
        if (!c) return NULL;
        c->cap = cap;
        c->used = 0;
        a->total += cap;
        if (cap != ARENA_CHUNK && a->head) {
            /* A big block gets its own chunk behind the current one. */
            c->next = a->head->next;
            a->head->next = c;
            c->used = n;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_free(arena *a) {
    achunk *c = a->head;
    while (c) {
        achunk *nx = c->next;
        free(c);
        c = nx;
    }
    a->head = NULL;
    a->total = 0;
}

/* ======================================================================== */
/* Values                                                                   */
/* ======================================================================== */

typedef struct jstr {
    const char *p;
    const uint8_t *t; /* per-byte taint, NULL = none */
    size_t n;
} jstr;

enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,
    JV_LOOP,
    JV_MACRO,
    JV_FUNC
};

struct jlist;
struct jdict;
struct jloop;
struct node;

typedef struct jv {
    int k;
    union {
        int b;
        int64_t i;
        double f;
        jstr s; /* JV_STR; JV_UNDEF: what was undefined (for messages) */
        struct jlist *l;
        struct jdict *d; /* JV_DICT, JV_NS */
        struct jloop *loop;
        const struct node *macro;
        int fn;
    } u;
} jv;

typedef struct jlist {
    size_t n;
    jv *v;
    int tuple; /* renders as (a, b) */
} jlist;

typedef struct jdict {
    size_t n, cap;
    jstr *keys;
    jv *vals;
} jdict;

typedef struct jloop {
    const jlist *items;
    size_t i;
} jloop;

static jv jv_undef(void) {
    jv v;
    memset(&v, 0, sizeof v);
    v.k = JV_UNDEF;
    return v;
}
static jv jv_none(void) {
    jv v = jv_undef();
    v.k = JV_NONE;
    return v;
}
static jv jv_bool(int b) {
    jv v = jv_undef();
    v.k = JV_BOOL;
    v.u.b = b != 0;
    return v;
}
static jv jv_int(int64_t i) {
    jv v = jv_undef();
    v.k = JV_INT;
    v.u.i = i;
    return v;
}
static jv jv_float(double f) {
    jv v = jv_undef();
    v.k = JV_FLOAT;
    v.u.f = f;
    return v;
}
static jv jv_str(jstr s) {
    jv v = jv_undef();
    v.k = JV_STR;
    v.u.s = s;
    return v;
}
static jv jv_cstr(const char *s) {
    jstr js = {s, NULL, strlen(s)};
    return jv_str(js);
}

/* ======================================================================== */
/* Nodes                                                                    */
/* ======================================================================== */

enum {
    /* statements */
    N_TEXT,
    N_OUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SET_ATTR,
    N_SET_BLOCK,
    N_MACRO,
    N_BREAK,
    N_CONTINUE,
    N_BLOCK,
    /* expressions */
    E_LIT,
    E_NAME,
    E_LIST,
    E_DICT,
    E_ATTR,
    E_ITEM,
    E_SLICE,
    E_NEG,
    E_POS,
    E_NOT,
    E_BIN,
    E_AND,
    E_OR,
    E_CMP,
    E_TEST,
    E_FILTER,
    E_CALL,
    E_COND,
    E_CONCAT
};

/* Binary and comparison operators (single-character ones are the character). */
enum { OP_EQ = 256, OP_NE, OP_LE, OP_GE, OP_FLOORDIV, OP_POW, OP_IN, OP_NOTIN };

typedef struct nlist {
    struct node **v;
    size_t n, cap;
} nlist;

typedef struct node {
    int kind, op, fid;
    size_t pos; /* offset in the source, for messages */
    jv lit;
    jstr name, name2;
    struct node *a, *b, *c;
    nlist args; /* call/filter/test args, list items, dict k,v pairs, slice parts, cmp operands */
    int *ops;   /* E_CMP: operator per operand */
    jstr *kwn;  /* keyword argument names */
    nlist kw;   /* keyword argument values */
    nlist body, body2;
    jstr *targets; /* for / set / macro parameters */
    size_t n_targets;
} node;

struct jinja_template {
    arena a;
    char *src; /* normalized source (in the arena) */
    size_t len;
    char name[64];
    nlist body;
};

/* ======================================================================== */
/* Source positions and errors                                              */
/* ======================================================================== */

static void line_col(const char *src, size_t len, size_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static slm_status vfail_at(slm_status st, const jinja_template *t, size_t pos, const char *fmt,
                           va_list ap) {
    char msg[768];
    vsnprintf(msg, sizeof msg, fmt, ap);
    int line, col;
    line_col(t->src, t->len, pos, &line, &col);
    return slm_fail(st, "%s, line %d, column %d: %s", t->name, line, col, msg);
}

static slm_status fail_at(slm_status st, const jinja_template *t, size_t pos, const char *fmt, ...)
    SLM_PRINTF(4, 5);
static slm_status fail_at(slm_status st, const jinja_template *t, size_t pos, const char *fmt,
                          ...) {
    va_list ap;
    va_start(ap, fmt);
    slm_status r = vfail_at(st, t, pos, fmt, ap);
    va_end(ap);
    return r;
}

/* ======================================================================== */
/* UTF-8 and whitespace                                                     */
/* ======================================================================== */

/* Length of the character at p (1 for an invalid byte). */
static size_t u8len(const char *p, size_t n) {
    uint32_t cp;
    return tok_utf8_next_lax((const uint8_t *)p, n, &cp);
}

/* The code point of the l-byte character at p (l from u8len; an invalid byte
 * stands for itself). */
static uint32_t u8cp(const char *p, size_t l) {
    uint32_t cp;
    tok_utf8_next_lax((const uint8_t *)p, l, &cp);
    return cp;
}

static size_t u8count(const char *p, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i += u8len(p + i, n - i)) c++;
    return c;
}

/* Python's str.isspace(). */
static int py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Length of the whitespace character at p, 0 if none. */
static size_t space_at(const char *p, size_t n) {
    size_t l = u8len(p, n);
    return py_space(u8cp(p, l)) ? l : 0;
}

/* Length of the whitespace character ending at p + n, 0 if none. */
static size_t space_before(const char *p, size_t n) {
    if (n == 0) return 0;
    size_t s = n - 1;
    while (s > 0 && n - s < 4 && ((unsigned char)p[s] & 0xC0) == 0x80) s--;
    size_t l = u8len(p + s, n - s);
    if (s + l != n) l = 1, s = n - 1;
    return py_space(u8cp(p + s, l)) ? l : 0;
}

static int ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* ======================================================================== */
/* Lexer                                                                    */
/* ======================================================================== */

enum {
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
    T_EOF
};

typedef struct tok {
    int k, op;
    size_t pos;
    const char *p; /* text: the (processed) bytes; name: the name; string: decoded */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct parser {
    jinja_template *t;
    tok *toks;
    size_t n_toks, cap_toks, at;
    int depth, loop_depth;
} parser;

static slm_status push_tok(parser *ps, tok tk) {
    if (ps->n_toks == ps->cap_toks) {
        size_t cap = ps->cap_toks ? ps->cap_toks * 2 : 256;
        tok *nt = realloc(ps->toks, cap * sizeof *nt);
        if (!nt) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
        ps->toks = nt;
        ps->cap_toks = cap;
    }
    ps->toks[ps->n_toks++] = tk;
    return SLM_OK;
}

static slm_status emit_text(parser *ps, size_t pos, const char *p, size_t n) {
    if (n == 0) return SLM_OK;
    tok tk = {T_TEXT, 0, pos, p, n, 0, 0};
    return push_tok(ps, tk);
}

static int starts(const char *s, size_t n, size_t i, const char *lit) {
    size_t l = strlen(lit);
    return i + l <= n && memcmp(s + i, lit, l) == 0;
}

static int is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes a string literal body with Python's escapes into the arena. */
static slm_status decode_string(parser *ps, size_t pos, const char *s, size_t n, tok *tk) {
    char *o = arena_alloc(&ps->t->a, n + 1);
    if (!o) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            o[w++] = s[i];
            continue;
        }
        char e = s[++i];
        int nd = 0;
        switch (e) {
        case 'n':
            o[w++] = '\n';
            break;
        case 't':
            o[w++] = '\t';
            break;
        case 'r':
            o[w++] = '\r';
            break;
        case 'a':
            o[w++] = '\a';
            break;
        case 'b':
            o[w++] = '\b';
            break;
        case 'f':
            o[w++] = '\f';
            break;
        case 'v':
            o[w++] = '\v';
            break;
        case '\\':
            o[w++] = '\\';
            break;
        case '\'':
            o[w++] = '\'';
            break;
        case '"':
            o[w++] = '"';
            break;
        case '\n':
            break; /* line continuation */
        case 'x':
            nd = 2;
            break;
        case 'u':
            nd = 4;
            break;
        case 'U':
            nd = 8;
            break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t c = 0;
                int k = 0;
                while (k < 3 && i < n && s[i] >= '0' && s[i] <= '7')
                    c = c * 8 + (uint32_t)(s[i++] - '0'), k++;
                i--;
                w += tok_utf8_encode(c, o + w);
            } else {
                o[w++] = '\\';
                o[w++] = e;
            }
        }
        if (nd) {
            uint32_t c = 0;
            for (int k = 0; k < nd; k++) {
                int h = i + 1 + (size_t)k < n ? hexval(s[i + 1 + k]) : -1;
                if (h < 0)
                    return fail_at(SLM_ERR_FORMAT, ps->t, pos, "truncated \\%c escape in a string",
                                   e);
                c = c * 16 + (uint32_t)h;
            }
            if (c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
                return fail_at(SLM_ERR_FORMAT, ps->t, pos, "escape \\%c gives an invalid character",
                               e);
            i += (size_t)nd;
            w += tok_utf8_encode(c, o + w);
        }
    }
    o[w] = '\0';
    tk->p = o;
    tk->n = w;
    return SLM_OK;
}

/* Tokens inside {{ }} or {% %}, from i; returns the index after the end tag. */
static slm_status lex_tag(parser *ps, size_t start, size_t i, int block, size_t *end, int *strip,
                          int *trim_nl) {
    const char *s = ps->t->src;
    size_t n = ps->t->len;
    int depth = 0;
    *strip = 0;
    *trim_nl = 0;
    for (;;) {
        while (i < n && ascii_space(s[i])) i++;
        if (i >= n)
            return fail_at(SLM_ERR_FORMAT, ps->t, start, "unclosed '%s' (expected '%s')",
                           block ? "{%" : "{{", block ? "%}" : "}}");
        if (depth == 0) {
            const char *e = block ? "%}" : "}}";
            size_t k = 0;
            if (s[i] == '-' && starts(s, n, i + 1, e))
                k = 1, *strip = 1;
            else if (block && s[i] == '+' && starts(s, n, i + 1, e))
                k = 1, *trim_nl = -1;
            if (k || starts(s, n, i, e)) {
                tok tk = {block ? T_BLOCK_END : T_VAR_END, 0, i, NULL, 0, 0, 0};
                SLM_TRY(push_tok(ps, tk));
                *end = i + k + 2;
                if (*trim_nl == 0)
                    *trim_nl = block;
                else
                    *trim_nl = 0;
                return SLM_OK;
            }
        }
        tok tk = {T_OP, 0, i, s + i, 1, 0, 0};
        char c = s[i];
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && is_name_char(s[j])) j++;
            tk.k = T_NAME;
            tk.n = j - i;
            i = j;
        } else if (c >= '0' && c <= '9') {
            size_t j = i;
            int is_float = 0;
            char buf[64];
            size_t bl = 0;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_')) {
                if (s[j] != '_' && bl < sizeof buf - 1) buf[bl++] = s[j];
                j++;
            }
            if (j + 1 < n && s[j] == '.' && s[j + 1] >= '0' && s[j + 1] <= '9') {
                is_float = 1;
                buf[bl < sizeof buf - 1 ? bl++ : bl] = '.';
                j++;
                while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_')) {
                    if (s[j] != '_' && bl < sizeof buf - 1) buf[bl++] = s[j];
                    j++;
                }
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && s[k] >= '0' && s[k] <= '9') {
                    is_float = 1;
                    while (j < k && bl < sizeof buf - 1) buf[bl++] = s[j++];
                    while (j < n && s[j] >= '0' && s[j] <= '9') {
                        if (bl < sizeof buf - 1) buf[bl++] = s[j];
                        j++;
                    }
                }
            }
            buf[bl] = '\0';
            if (bl >= sizeof buf - 1)
                return fail_at(SLM_ERR_FORMAT, ps->t, i, "number literal too long");
            if (is_float) {
                tk.k = T_FLOAT;
                tk.f = strtod(buf, NULL);
            } else {
                tk.k = T_INT;
                uint64_t v = 0;
                for (size_t q = 0; q < bl; q++) {
                    uint64_t dgt = (uint64_t)(buf[q] - '0');
                    if (v > ((uint64_t)INT64_MAX - dgt) / 10)
                        return fail_at(SLM_ERR_UNSUPPORTED, ps->t, i,
                                       "integer literal too large (64-bit integers only)");
                    v = v * 10 + dgt;
                }
                tk.i = (int64_t)v;
            }
            tk.n = j - i;
            i = j;
        } else if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) j += (s[j] == '\\' && j + 1 < n) ? 2 : 1;
            if (j >= n) return fail_at(SLM_ERR_FORMAT, ps->t, i, "unterminated string literal");
            tk.k = T_STRING;
            SLM_TRY(decode_string(ps, i, s + i + 1, j - i - 1, &tk));
            i = j + 1;
        } else {
            static const struct {
                const char *s;
                int op;
            } two[] = {{"==", OP_EQ}, {"!=", OP_NE},       {"<=", OP_LE},
                       {">=", OP_GE}, {"//", OP_FLOORDIV}, {"**", OP_POW}};
            int found = 0;
            for (size_t q = 0; q < sizeof two / sizeof two[0]; q++)
                if (starts(s, n, i, two[q].s)) {
                    tk.op = two[q].op;
                    tk.n = 2;
                    found = 1;
                    break;
                }
            if (!found) {
                if (!strchr("+-*/%~<>=()[]{},.:|", c) || c == '\0')
                    return fail_at(SLM_ERR_FORMAT, ps->t, i, "unexpected character '%c' in a tag",
                                   c >= 0x20 && c < 0x7F ? c : '?');
                tk.op = (unsigned char)c;
                if (c == '(' || c == '[' || c == '{') {
                    if (++depth > JINJA_MAX_NESTING)
                        return fail_at(SLM_ERR_FORMAT, ps->t, i, "brackets nested deeper than %d",
                                       JINJA_MAX_NESTING);
                } else if (c == ')' || c == ']' || c == '}') {
                    if (depth > 0) depth--;
                }
            }
            i += tk.n;
        }
        SLM_TRY(push_tok(ps, tk));
    }
}

/* Whitespace-only from a to b (exclusive), no newline. */
static int blank_line_tail(const char *s, size_t a, size_t b) {
    if (a >= b) return 0;
    for (size_t i = a; i < b; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f'))
            return 0;
    return 1;
}

/* Applies the stripping of a tag start to the text [a, b): '-' strips all
 * whitespace; lstrip_blocks strips blanks back to the line start before
 * block and comment tags. */
static size_t strip_text_end(const char *s, size_t a, size_t b, char sign, int lstrip,
                             int line_starting) {
    if (sign == '-') {
        size_t k;
        while (b > a && (k = space_before(s + a, b - a)) != 0) b -= k;
        return b;
    }
    if (sign != '+' && lstrip) {
        size_t l = b;
        while (l > a && s[l - 1] != '\n') l--;
        if ((l > a || line_starting) && blank_line_tail(s, l, b)) return l;
    }
    return b;
}

/* After a tag end: '-' strips all whitespace, trim_blocks one newline. */
static size_t skip_after_tag(const char *s, size_t n, size_t i, int strip, int trim_nl) {
    if (strip) {
        size_t k;
        while (i < n && (k = space_at(s + i, n - i)) != 0) i += k;
    } else if (trim_nl && i < n && s[i] == '\n') {
        i++;
    }
    return i;
}

/* Matches "{%[-+]? raw [-+]?%}" (or endraw) at i; returns the length, 0 if none. */
static size_t match_raw_tag(const char *s, size_t n, size_t i, const char *word, char *lsign,
                            char *rsign) {
    if (!starts(s, n, i, "{%")) return 0;
    size_t j = i + 2;
    *lsign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+')) *lsign = s[j++];
    while (j < n && ascii_space(s[j])) j++;
    if (!starts(s, n, j, word)) return 0;
    j += strlen(word);
    if (j < n && is_name_char(s[j])) return 0;
    while (j < n && ascii_space(s[j])) j++;
    *rsign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+')) *rsign = s[j++];
    if (!starts(s, n, j, "%}")) return 0;
    return j + 2 - i;
}

static slm_status lex(parser *ps) {
    const char *s = ps->t->src;
    size_t n = ps->t->len, i = 0;
    int line_starting = 1;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n &&
               !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
            j++;
        if (j + 1 >= n) {
            SLM_TRY(emit_text(ps, i, s + i, n - i));
            break;
        }
        char kind = s[j + 1];
        char sign = (j + 2 < n && (s[j + 2] == '-' || s[j + 2] == '+')) ? s[j + 2] : 0;
        size_t tend = strip_text_end(s, i, j, sign, kind != '{', line_starting);
        SLM_TRY(emit_text(ps, i, s + i, tend - i));
        char ls, rs;
        size_t rl = kind == '%' ? match_raw_tag(s, n, j, "raw", &ls, &rs) : 0;
        if (rl) {
            size_t k = j + rl, body = k;
            if (rs == '-') body = k = skip_after_tag(s, n, k, 1, 0);
            size_t el = 0;
            char els = 0, ers = 0;
            for (; k < n; k++)
                if (s[k] == '{' && (el = match_raw_tag(s, n, k, "endraw", &els, &ers)) != 0) break;
            if (!el) return fail_at(SLM_ERR_FORMAT, ps->t, j, "unclosed raw block (no endraw)");
            size_t bend = strip_text_end(s, body, k, els, 1, 0);
            SLM_TRY(emit_text(ps, body, s + body, bend - body));
            i = skip_after_tag(s, n, k + el, ers == '-', ers != '+');
            line_starting = i > 0 && s[i - 1] == '\n';
            continue;
        }
        if (kind == '#') {
            size_t k = j + 2 + (sign ? 1 : 0);
            while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}')) k++;
            if (k + 1 >= n) return fail_at(SLM_ERR_FORMAT, ps->t, j, "unclosed comment (no '#}')");
            char es = (k > j + 2 && (s[k - 1] == '-' || s[k - 1] == '+')) ? s[k - 1] : 0;
            i = skip_after_tag(s, n, k + 2, es == '-', es != '+');
            line_starting = s[i - 1] == '\n';
            continue;
        }
        tok tk = {kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, 0, j, NULL, 0, 0, 0};
        SLM_TRY(push_tok(ps, tk));
        int strip, trim_nl;
        size_t end = 0;
        SLM_TRY(lex_tag(ps, j, j + 2 + (sign ? 1 : 0), kind == '%', &end, &strip, &trim_nl));
        i = skip_after_tag(s, n, end, strip, trim_nl);
        line_starting = s[i - 1] == '\n';
    }
    tok e = {T_EOF, 0, n, NULL, 0, 0, 0};
    return push_tok(ps, e);
}

/* ======================================================================== */
/* Parser                                                                   */
/* ======================================================================== */

/* Filters, tests and global functions, resolved by name at parse time. */
enum {
    F_ABS,
    F_CAPITALIZE,
    F_COUNT,
    F_DEFAULT,
    F_DICTSORT,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_ROUND,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
    F_WORDCOUNT
};
static const struct {
    const char *name;
    int id;
} FILTERS[] = {
    {"abs", F_ABS},
    {"capitalize", F_CAPITALIZE},
    {"count", F_COUNT},
    {"d", F_DEFAULT},
    {"default", F_DEFAULT},
    {"dictsort", F_DICTSORT},
    {"e", F_ESCAPE},
    {"escape", F_ESCAPE},
    {"first", F_FIRST},
    {"float", F_FLOAT},
    {"indent", F_INDENT},
    {"int", F_INT},
    {"items", F_ITEMS},
    {"join", F_JOIN},
    {"last", F_LAST},
    {"length", F_LENGTH},
    {"list", F_LIST},
    {"lower", F_LOWER},
    {"map", F_MAP},
    {"max", F_MAX},
    {"min", F_MIN},
    {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR},
    {"replace", F_REPLACE},
    {"reverse", F_REVERSE},
    {"round", F_ROUND},
    {"safe", F_SAFE},
    {"select", F_SELECT},
    {"selectattr", F_SELECTATTR},
    {"sort", F_SORT},
    {"string", F_STRING},
    {"sum", F_SUM},
    {"title", F_TITLE},
    {"tojson", F_TOJSON},
    {"trim", F_TRIM},
    {"unique", F_UNIQUE},
    {"upper", F_UPPER},
    {"wordcount", F_WORDCOUNT},
};

enum {
    TS_DEFINED,
    TS_UNDEFINED,
    TS_NONE,
    TS_STRING,
    TS_NUMBER,
    TS_INTEGER,
    TS_FLOAT,
    TS_MAPPING,
    TS_ITERABLE,
    TS_SEQUENCE,
    TS_BOOLEAN,
    TS_FALSE,
    TS_TRUE,
    TS_ODD,
    TS_EVEN,
    TS_DIVISIBLEBY,
    TS_EQ,
    TS_NE,
    TS_LT,
    TS_LE,
    TS_GT,
    TS_GE,
    TS_IN,
    TS_SAMEAS,
    TS_CALLABLE,
    TS_LOWER,
    TS_UPPER
};
static const struct {
    const char *name;
    int id;
} TESTS[] = {
    {"defined", TS_DEFINED},
    {"undefined", TS_UNDEFINED},
    {"none", TS_NONE},
    {"string", TS_STRING},
    {"number", TS_NUMBER},
    {"integer", TS_INTEGER},
    {"float", TS_FLOAT},
    {"mapping", TS_MAPPING},
    {"iterable", TS_ITERABLE},
    {"sequence", TS_SEQUENCE},
    {"boolean", TS_BOOLEAN},
    {"false", TS_FALSE},
    {"true", TS_TRUE},
    {"odd", TS_ODD},
    {"even", TS_EVEN},
    {"divisibleby", TS_DIVISIBLEBY},
    {"equalto", TS_EQ},
    {"eq", TS_EQ},
    {"==", TS_EQ},
    {"ne", TS_NE},
    {"!=", TS_NE},
    {"lt", TS_LT},
    {"lessthan", TS_LT},
    {"<", TS_LT},
    {"le", TS_LE},
    {"<=", TS_LE},
    {"gt", TS_GT},
    {"greaterthan", TS_GT},
    {">", TS_GT},
    {"ge", TS_GE},
    {">=", TS_GE},
    {"in", TS_IN},
    {"sameas", TS_SAMEAS},
    {"callable", TS_CALLABLE},
    {"lower", TS_LOWER},
    {"upper", TS_UPPER},
};

enum { FN_RANGE, FN_NAMESPACE, FN_RAISE, FN_STRFTIME, FN_DICT };
static const char *const FUNCS[] = {"range", "namespace", "raise_exception", "strftime_now",
                                    "dict"};

static int jstr_eq_c(jstr s, const char *c) {
    size_t l = strlen(c);
    return s.n == l && memcmp(s.p, c, l) == 0;
}

static int lookup_filter(jstr name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof FILTERS[0]; i++)
        if (jstr_eq_c(name, FILTERS[i].name)) return FILTERS[i].id;
    return -1;
}
static int lookup_test(jstr name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++)
        if (jstr_eq_c(name, TESTS[i].name)) return TESTS[i].id;
    return -1;
}

static tok *cur(parser *ps) {
    return &ps->toks[ps->at];
}
static tok *peek(parser *ps, size_t k) {
    size_t i = ps->at + k;
    return &ps->toks[i < ps->n_toks ? i : ps->n_toks - 1];
}
static void advance(parser *ps) {
    if (ps->at + 1 < ps->n_toks) ps->at++;
}
static int is_op(const tok *t, int op) {
    return t->k == T_OP && t->op == op;
}
static int is_name(const tok *t, const char *name) {
    size_t l = strlen(name);
    return t->k == T_NAME && t->n == l && memcmp(t->p, name, l) == 0;
}
static jstr tok_str(const tok *t) {
    jstr s = {t->p, NULL, t->n};
    return s;
}

static const char *tok_desc(const tok *t, char *buf, size_t cap) {
    switch (t->k) {
    case T_TEXT:
        return "template text";
    case T_VAR_BEGIN:
        return "'{{'";
    case T_VAR_END:
        return "'}}'";
    case T_BLOCK_BEGIN:
        return "'{%'";
    case T_BLOCK_END:
        return "'%}'";
    case T_EOF:
        return "end of template";
    case T_STRING:
        return "a string";
    case T_INT:
    case T_FLOAT:
        return "a number";
    default:
        break;
    }
    snprintf(buf, cap, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
    return buf;
}

static slm_status unexpected(parser *ps, const char *expected) {
    char b[64];
    tok *t = cur(ps);
    return fail_at(SLM_ERR_FORMAT, ps->t, t->pos, "unexpected %s (expected %s)",
                   tok_desc(t, b, sizeof b), expected);
}

static slm_status expect_op(parser *ps, int op, const char *what) {
    if (!is_op(cur(ps), op)) return unexpected(ps, what);
    advance(ps);
    return SLM_OK;
}

static slm_status expect_end(parser *ps) {
    if (cur(ps)->k != T_BLOCK_END) return unexpected(ps, "'%}'");
    advance(ps);
    return SLM_OK;
}

static slm_status new_node(parser *ps, int kind, size_t pos, node **out) {
    node *nd = arena_alloc(&ps->t->a, sizeof *nd);
    if (!nd) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->pos = pos;
    nd->lit = jv_undef();
    *out = nd;
    return SLM_OK;
}

static slm_status nl_push(parser *ps, nlist *l, node *nd) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        node **v = arena_alloc(&ps->t->a, cap * sizeof *v);
        if (!v) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = nd;
    return SLM_OK;
}

static slm_status push_name(parser *ps, jstr **arr, size_t *n, jstr s) {
    jstr *v = arena_alloc(&ps->t->a, (*n + 1) * sizeof *v);
    if (!v) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
    if (*n) memcpy(v, *arr, *n * sizeof *v);
    v[(*n)++] = s;
    *arr = v;
    return SLM_OK;
}

static slm_status enter(parser *ps) {
    if (++ps->depth > JINJA_MAX_NESTING)
        return fail_at(SLM_ERR_FORMAT, ps->t, cur(ps)->pos, "nested deeper than %d levels",
                       JINJA_MAX_NESTING);
    return SLM_OK;
}

static slm_status parse_expr(parser *ps, node **out);
static slm_status parse_or(parser *ps, node **out);
static slm_status parse_unary(parser *ps, int with_filter, node **out);

/* Arguments of a call: ( a, b, name=c ) ; the '(' is current. */
static slm_status parse_call_args(parser *ps, node *nd) {
    SLM_TRY(expect_op(ps, '(', "'('"));
    while (!is_op(cur(ps), ')')) {
        node *e;
        if (cur(ps)->k == T_NAME && is_op(peek(ps, 1), '=')) {
            jstr kn = tok_str(cur(ps));
            advance(ps);
            advance(ps);
            SLM_TRY(parse_expr(ps, &e));
            SLM_TRY(push_name(ps, &nd->kwn, &nd->kw.n, kn));
            nd->kw.n--;
            SLM_TRY(nl_push(ps, &nd->kw, e));
        } else {
            if (nd->kw.n) return unexpected(ps, "a keyword argument (name=value)");
            if (is_op(cur(ps), '*')) return unexpected(ps, "an argument (*args is not supported)");
            SLM_TRY(parse_expr(ps, &e));
            SLM_TRY(nl_push(ps, &nd->args, e));
        }
        if (is_op(cur(ps), ','))
            advance(ps);
        else if (!is_op(cur(ps), ')'))
            return unexpected(ps, "',' or ')'");
    }
    advance(ps);
    return SLM_OK;
}

static slm_status parse_primary(parser *ps, node **out) {
    tok *t = cur(ps);
    node *nd;
    if (t->k == T_NAME) {
        SLM_TRY(new_node(ps, E_LIT, t->pos, &nd));
        if (is_name(t, "true") || is_name(t, "True"))
            nd->lit = jv_bool(1);
        else if (is_name(t, "false") || is_name(t, "False"))
            nd->lit = jv_bool(0);
        else if (is_name(t, "none") || is_name(t, "None"))
            nd->lit = jv_none();
        else {
            nd->kind = E_NAME;
            nd->name = tok_str(t);
        }
        advance(ps);
    } else if (t->k == T_STRING) {
        SLM_TRY(new_node(ps, E_LIT, t->pos, &nd));
        jstr s = tok_str(t);
        advance(ps);
        while (cur(ps)->k == T_STRING) { /* adjacent literals concatenate */
            tok *u = cur(ps);
            char *p = arena_alloc(&ps->t->a, s.n + u->n + 1);
            if (!p) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
            memcpy(p, s.p, s.n);
            memcpy(p + s.n, u->p, u->n);
            s.p = p;
            s.n += u->n;
            advance(ps);
        }
        nd->lit = jv_str(s);
    } else if (t->k == T_INT || t->k == T_FLOAT) {
        SLM_TRY(new_node(ps, E_LIT, t->pos, &nd));
        nd->lit = t->k == T_INT ? jv_int(t->i) : jv_float(t->f);
        advance(ps);
    } else if (is_op(t, '(')) {
        SLM_TRY(enter(ps));
        advance(ps);
        if (is_op(cur(ps), ')')) {
            SLM_TRY(new_node(ps, E_LIST, t->pos, &nd));
            nd->op = 1;
        } else {
            SLM_TRY(parse_expr(ps, &nd));
            if (is_op(cur(ps), ',')) {
                node *tu;
                SLM_TRY(new_node(ps, E_LIST, t->pos, &tu));
                tu->op = 1;
                SLM_TRY(nl_push(ps, &tu->args, nd));
                while (is_op(cur(ps), ',')) {
                    advance(ps);
                    if (is_op(cur(ps), ')')) break;
                    node *e;
                    SLM_TRY(parse_expr(ps, &e));
                    SLM_TRY(nl_push(ps, &tu->args, e));
                }
                nd = tu;
            }
        }
        SLM_TRY(expect_op(ps, ')', "')'"));
        ps->depth--;
    } else if (is_op(t, '[')) {
        SLM_TRY(enter(ps));
        advance(ps);
        SLM_TRY(new_node(ps, E_LIST, t->pos, &nd));
        while (!is_op(cur(ps), ']')) {
            node *e;
            SLM_TRY(parse_expr(ps, &e));
            SLM_TRY(nl_push(ps, &nd->args, e));
            if (is_op(cur(ps), ','))
                advance(ps);
            else if (!is_op(cur(ps), ']'))
                return unexpected(ps, "',' or ']'");
        }
        advance(ps);
        ps->depth--;
    } else if (is_op(t, '{')) {
        SLM_TRY(enter(ps));
        advance(ps);
        SLM_TRY(new_node(ps, E_DICT, t->pos, &nd));
        while (!is_op(cur(ps), '}')) {
            node *k, *v;
            SLM_TRY(parse_expr(ps, &k));
            SLM_TRY(expect_op(ps, ':', "':'"));
            SLM_TRY(parse_expr(ps, &v));
            SLM_TRY(nl_push(ps, &nd->args, k));
            SLM_TRY(nl_push(ps, &nd->args, v));
            if (is_op(cur(ps), ','))
                advance(ps);
            else if (!is_op(cur(ps), '}'))
                return unexpected(ps, "',' or '}'");
        }
        advance(ps);
        ps->depth--;
    } else {
        return unexpected(ps, "an expression");
    }
    *out = nd;
    return SLM_OK;
}

static slm_status parse_postfix(parser *ps, node **io) {
    for (;;) {
        tok *t = cur(ps);
        node *nd;
        if (is_op(t, '.')) {
            advance(ps);
            tok *nt = cur(ps);
            if (nt->k == T_NAME) {
                SLM_TRY(new_node(ps, E_ATTR, t->pos, &nd));
                nd->a = *io;
                nd->name = tok_str(nt);
            } else if (nt->k == T_INT) {
                SLM_TRY(new_node(ps, E_ITEM, t->pos, &nd));
                nd->a = *io;
                SLM_TRY(new_node(ps, E_LIT, nt->pos, &nd->b));
                nd->b->lit = jv_int(nt->i);
            } else {
                return unexpected(ps, "an attribute name after '.'");
            }
            advance(ps);
        } else if (is_op(t, '[')) {
            SLM_TRY(enter(ps));
            advance(ps);
            node *parts[3] = {NULL, NULL, NULL};
            int np = 0;
            for (;;) {
                if (!is_op(cur(ps), ':') && !is_op(cur(ps), ']'))
                    SLM_TRY(parse_expr(ps, &parts[np]));
                if (is_op(cur(ps), ':') && np < 2) {
                    np++;
                    advance(ps);
                    continue;
                }
                break;
            }
            SLM_TRY(expect_op(ps, ']', "']'"));
            ps->depth--;
            if (np == 0) {
                if (!parts[0]) return fail_at(SLM_ERR_FORMAT, ps->t, t->pos, "empty subscript []");
                SLM_TRY(new_node(ps, E_ITEM, t->pos, &nd));
                nd->a = *io;
                nd->b = parts[0];
            } else {
                SLM_TRY(new_node(ps, E_SLICE, t->pos, &nd));
                nd->a = *io;
                for (int k = 0; k < 3; k++) SLM_TRY(nl_push(ps, &nd->args, parts[k]));
            }
        } else if (is_op(t, '(')) {
            SLM_TRY(new_node(ps, E_CALL, t->pos, &nd));
            nd->a = *io;
            SLM_TRY(parse_call_args(ps, nd));
        } else {
            return SLM_OK;
        }
        *io = nd;
    }
}

static slm_status parse_filter_expr(parser *ps, node **io) {
    for (;;) {
        tok *t = cur(ps);
        node *nd;
        if (is_op(t, '|')) {
            advance(ps);
            if (cur(ps)->k != T_NAME) return unexpected(ps, "a filter name after '|'");
            SLM_TRY(new_node(ps, E_FILTER, cur(ps)->pos, &nd));
            nd->name = tok_str(cur(ps));
            nd->fid = lookup_filter(nd->name);
            if (nd->fid < 0)
                return fail_at(SLM_ERR_UNSUPPORTED, ps->t, cur(ps)->pos, "unknown filter '%.*s'",
                               (int)nd->name.n, nd->name.p);
            advance(ps);
            nd->a = *io;
            if (is_op(cur(ps), '(')) SLM_TRY(parse_call_args(ps, nd));
        } else if (is_name(t, "is")) {
            advance(ps);
            int neg = 0;
            if (is_name(cur(ps), "not")) {
                neg = 1;
                advance(ps);
            }
            tok *nt = cur(ps);
            if (nt->k != T_NAME &&
                !(nt->k == T_OP && (nt->op == OP_EQ || nt->op == OP_NE || nt->op == '<' ||
                                    nt->op == '>' || nt->op == OP_LE || nt->op == OP_GE)))
                return unexpected(ps, "a test name after 'is'");
            SLM_TRY(new_node(ps, E_TEST, nt->pos, &nd));
            nd->name = tok_str(nt);
            nd->fid = lookup_test(nd->name);
            if (nd->fid < 0)
                return fail_at(SLM_ERR_UNSUPPORTED, ps->t, nt->pos, "unknown test '%.*s'",
                               (int)nd->name.n, nd->name.p);
            advance(ps);
            nd->a = *io;
            tok *at = cur(ps);
            if (is_op(at, '(')) {
                SLM_TRY(parse_call_args(ps, nd));
            } else if ((at->k == T_NAME || at->k == T_STRING || at->k == T_INT ||
                        at->k == T_FLOAT || is_op(at, '[') || is_op(at, '{')) &&
                       !is_name(at, "else") && !is_name(at, "or") && !is_name(at, "and") &&
                       !is_name(at, "if")) {
                if (is_name(at, "is")) return unexpected(ps, "one test (tests do not chain)");
                node *arg;
                SLM_TRY(parse_primary(ps, &arg));
                SLM_TRY(parse_postfix(ps, &arg));
                SLM_TRY(nl_push(ps, &nd->args, arg));
            }
            if (neg) {
                node *nn;
                SLM_TRY(new_node(ps, E_NOT, nd->pos, &nn));
                nn->a = nd;
                nd = nn;
            }
        } else if (is_op(t, '(')) {
            SLM_TRY(new_node(ps, E_CALL, t->pos, &nd));
            nd->a = *io;
            SLM_TRY(parse_call_args(ps, nd));
        } else {
            return SLM_OK;
        }
        *io = nd;
    }
}

static slm_status parse_unary(parser *ps, int with_filter, node **out) {
    tok *t = cur(ps);
    node *nd;
    SLM_TRY(enter(ps));
    if (is_op(t, '-') || is_op(t, '+')) {
        advance(ps);
        SLM_TRY(new_node(ps, t->op == '-' ? E_NEG : E_POS, t->pos, &nd));
        SLM_TRY(parse_unary(ps, 0, &nd->a));
    } else {
        SLM_TRY(parse_primary(ps, &nd));
    }
    SLM_TRY(parse_postfix(ps, &nd));
    if (with_filter) SLM_TRY(parse_filter_expr(ps, &nd));
    ps->depth--;
    *out = nd;
    return SLM_OK;
}

static slm_status make_bin(parser *ps, int kind, int op, size_t pos, node *a, node *b, node **out) {
    node *nd;
    SLM_TRY(new_node(ps, kind, pos, &nd));
    nd->op = op;
    nd->a = a;
    nd->b = b;
    *out = nd;
    return SLM_OK;
}

static slm_status parse_pow(parser *ps, node **out) {
    node *l, *r;
    SLM_TRY(parse_unary(ps, 1, &l));
    while (is_op(cur(ps), OP_POW)) {
        size_t pos = cur(ps)->pos;
        advance(ps);
        SLM_TRY(parse_unary(ps, 1, &r));
        SLM_TRY(make_bin(ps, E_BIN, OP_POW, pos, l, r, &l));
    }
    *out = l;
    return SLM_OK;
}

static slm_status parse_math2(parser *ps, node **out) {
    node *l, *r;
    SLM_TRY(parse_pow(ps, &l));
    for (;;) {
        tok *t = cur(ps);
        if (!(is_op(t, '*') || is_op(t, '/') || is_op(t, '%') || is_op(t, OP_FLOORDIV))) break;
        advance(ps);
        SLM_TRY(parse_pow(ps, &r));
        SLM_TRY(make_bin(ps, E_BIN, t->op, t->pos, l, r, &l));
    }
    *out = l;
    return SLM_OK;
}

static slm_status parse_concat(parser *ps, node **out) {
    node *l;
    SLM_TRY(parse_math2(ps, &l));
    if (!is_op(cur(ps), '~')) {
        *out = l;
        return SLM_OK;
    }
    node *nd;
    SLM_TRY(new_node(ps, E_CONCAT, cur(ps)->pos, &nd));
    SLM_TRY(nl_push(ps, &nd->args, l));
    while (is_op(cur(ps), '~')) {
        advance(ps);
        SLM_TRY(parse_math2(ps, &l));
        SLM_TRY(nl_push(ps, &nd->args, l));
    }
    *out = nd;
    return SLM_OK;
}

static slm_status parse_math1(parser *ps, node **out) {
    node *l, *r;
    SLM_TRY(parse_concat(ps, &l));
    for (;;) {
        tok *t = cur(ps);
        if (!(is_op(t, '+') || is_op(t, '-'))) break;
        advance(ps);
        SLM_TRY(parse_concat(ps, &r));
        SLM_TRY(make_bin(ps, E_BIN, t->op, t->pos, l, r, &l));
    }
    *out = l;
    return SLM_OK;
}

static slm_status parse_compare(parser *ps, node **out) {
    node *l;
    SLM_TRY(parse_math1(ps, &l));
    node *nd = NULL;
    size_t nops = 0;
    for (;;) {
        tok *t = cur(ps);
        int op;
        if (t->k == T_OP && (t->op == OP_EQ || t->op == OP_NE || t->op == '<' || t->op == '>' ||
                             t->op == OP_LE || t->op == OP_GE)) {
            op = t->op;
            advance(ps);
        } else if (is_name(t, "in")) {
            op = OP_IN;
            advance(ps);
        } else if (is_name(t, "not") && is_name(peek(ps, 1), "in")) {
            op = OP_NOTIN;
            advance(ps);
            advance(ps);
        } else {
            break;
        }
        if (!nd) {
            SLM_TRY(new_node(ps, E_CMP, t->pos, &nd));
            nd->a = l;
        }
        node *r;
        SLM_TRY(parse_math1(ps, &r));
        SLM_TRY(nl_push(ps, &nd->args, r));
        int *ops = arena_alloc(&ps->t->a, (nops + 1) * sizeof *ops);
        if (!ops) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", ps->t->name);
        if (nops) memcpy(ops, nd->ops, nops * sizeof *ops);
        ops[nops++] = op;
        nd->ops = ops;
    }
    *out = nd ? nd : l;
    return SLM_OK;
}

static slm_status parse_not(parser *ps, node **out) {
    if (is_name(cur(ps), "not")) {
        node *nd;
        SLM_TRY(enter(ps));
        SLM_TRY(new_node(ps, E_NOT, cur(ps)->pos, &nd));
        advance(ps);
        SLM_TRY(parse_not(ps, &nd->a));
        ps->depth--;
        *out = nd;
        return SLM_OK;
    }
    return parse_compare(ps, out);
}

static slm_status parse_and(parser *ps, node **out) {
    node *l, *r;
    SLM_TRY(parse_not(ps, &l));
    while (is_name(cur(ps), "and")) {
        size_t pos = cur(ps)->pos;
        advance(ps);
        SLM_TRY(parse_not(ps, &r));
        SLM_TRY(make_bin(ps, E_AND, 0, pos, l, r, &l));
    }
    *out = l;
    return SLM_OK;
}

static slm_status parse_or(parser *ps, node **out) {
    node *l, *r;
    SLM_TRY(parse_and(ps, &l));
    while (is_name(cur(ps), "or")) {
        size_t pos = cur(ps)->pos;
        advance(ps);
        SLM_TRY(parse_and(ps, &r));
        SLM_TRY(make_bin(ps, E_OR, 0, pos, l, r, &l));
    }
    *out = l;
    return SLM_OK;
}

/* expr1 if cond else expr2 (else optional) */
static slm_status parse_expr(parser *ps, node **out) {
    node *l;
    SLM_TRY(enter(ps));
    SLM_TRY(parse_or(ps, &l));
    while (is_name(cur(ps), "if")) {
        node *nd;
        SLM_TRY(new_node(ps, E_COND, cur(ps)->pos, &nd));
        advance(ps);
        nd->b = l;
        SLM_TRY(parse_or(ps, &nd->a));
        if (is_name(cur(ps), "else")) {
            advance(ps);
            SLM_TRY(parse_expr(ps, &nd->c));
        }
        l = nd;
    }
    ps->depth--;
    *out = l;
    return SLM_OK;
}

/* An expression, or a tuple "a, b" (as a list). */
static slm_status parse_tuple(parser *ps, node **out) {
    node *e;
    SLM_TRY(parse_expr(ps, &e));
    if (!is_op(cur(ps), ',')) {
        *out = e;
        return SLM_OK;
    }
    node *tu;
    SLM_TRY(new_node(ps, E_LIST, e->pos, &tu));
    tu->op = 1;
    SLM_TRY(nl_push(ps, &tu->args, e));
    while (is_op(cur(ps), ',')) {
        advance(ps);
        if (cur(ps)->k == T_BLOCK_END || cur(ps)->k == T_VAR_END) break;
        SLM_TRY(parse_expr(ps, &e));
        SLM_TRY(nl_push(ps, &tu->args, e));
    }
    *out = tu;
    return SLM_OK;
}

/* Names "a" or "a, b" (for / set targets). */
static slm_status parse_targets(parser *ps, node *nd) {
    for (;;) {
        if (cur(ps)->k != T_NAME) return unexpected(ps, "a variable name");
        SLM_TRY(push_name(ps, &nd->targets, &nd->n_targets, tok_str(cur(ps))));
        advance(ps);
        if (!is_op(cur(ps), ',')) return SLM_OK;
        advance(ps);
    }
}

static slm_status parse_body(parser *ps, nlist *body, const char *const *ends, size_t n_ends,
                             const char *opener, size_t opener_pos, int *which);

static slm_status parse_statement(parser *ps, nlist *body) {
    tok *t = cur(ps);
    size_t pos = t->pos;
    node *nd;
    int which;
    if (t->k != T_NAME) return unexpected(ps, "a tag name");
    if (is_name(t, "if")) {
        static const char *const ends[] = {"elif", "else", "endif"};
        SLM_TRY(new_node(ps, N_IF, pos, &nd));
        SLM_TRY(nl_push(ps, body, nd));
        advance(ps);
        node *c = nd;
        for (;;) {
            SLM_TRY(parse_tuple(ps, &c->a));
            SLM_TRY(expect_end(ps));
            SLM_TRY(parse_body(ps, &c->body, ends, 3, "if", pos, &which));
            advance(ps);
            if (which == 0) {
                node *e;
                SLM_TRY(new_node(ps, N_IF, cur(ps)->pos, &e));
                SLM_TRY(nl_push(ps, &c->body2, e));
                c = e;
                continue;
            }
            SLM_TRY(expect_end(ps));
            if (which == 1) {
                SLM_TRY(parse_body(ps, &c->body2, ends + 2, 1, "if", pos, &which));
                advance(ps);
                SLM_TRY(expect_end(ps));
            }
            return SLM_OK;
        }
    }
    if (is_name(t, "for")) {
        static const char *const ends[] = {"else", "endfor"};
        SLM_TRY(new_node(ps, N_FOR, pos, &nd));
        advance(ps);
        SLM_TRY(parse_targets(ps, nd));
        if (!is_name(cur(ps), "in")) return unexpected(ps, "'in'");
        advance(ps);
        SLM_TRY(parse_or(ps, &nd->a));
        if (is_op(cur(ps), ',')) return unexpected(ps, "'%}' (iterate over a list: [a, b])");
        if (is_name(cur(ps), "if")) {
            advance(ps);
            SLM_TRY(parse_expr(ps, &nd->b));
        }
        if (is_name(cur(ps), "recursive"))
            return fail_at(SLM_ERR_UNSUPPORTED, ps->t, cur(ps)->pos,
                           "recursive loops are not supported");
        SLM_TRY(expect_end(ps));
        ps->loop_depth++;
        SLM_TRY(parse_body(ps, &nd->body, ends, 2, "for", pos, &which));
        ps->loop_depth--;
        advance(ps);
        SLM_TRY(expect_end(ps));
        if (which == 0) {
            SLM_TRY(parse_body(ps, &nd->body2, ends + 1, 1, "for", pos, &which));
            advance(ps);
            SLM_TRY(expect_end(ps));
        }
        return nl_push(ps, body, nd);
    }
    if (is_name(t, "set")) {
        static const char *const ends[] = {"endset"};
        advance(ps);
        if (cur(ps)->k == T_NAME && is_op(peek(ps, 1), '.')) {
            SLM_TRY(new_node(ps, N_SET_ATTR, pos, &nd));
            nd->name = tok_str(cur(ps));
            advance(ps);
            advance(ps);
            if (cur(ps)->k != T_NAME) return unexpected(ps, "an attribute name");
            nd->name2 = tok_str(cur(ps));
            advance(ps);
            SLM_TRY(expect_op(ps, '=', "'='"));
            SLM_TRY(parse_tuple(ps, &nd->a));
            SLM_TRY(expect_end(ps));
            return nl_push(ps, body, nd);
        }
        SLM_TRY(new_node(ps, N_SET, pos, &nd));
        SLM_TRY(parse_targets(ps, nd));
        if (is_op(cur(ps), '=')) {
            advance(ps);
            SLM_TRY(parse_tuple(ps, &nd->a));
            SLM_TRY(expect_end(ps));
            return nl_push(ps, body, nd);
        }
        if (nd->n_targets != 1) return unexpected(ps, "'='");
        nd->kind = N_SET_BLOCK;
        if (is_op(cur(ps), '|'))
            return fail_at(SLM_ERR_UNSUPPORTED, ps->t, cur(ps)->pos,
                           "filters on block set are not supported");
        SLM_TRY(expect_end(ps));
        SLM_TRY(parse_body(ps, &nd->body, ends, 1, "set", pos, &which));
        advance(ps);
        SLM_TRY(expect_end(ps));
        return nl_push(ps, body, nd);
    }
    if (is_name(t, "macro")) {
        static const char *const ends[] = {"endmacro"};
        SLM_TRY(new_node(ps, N_MACRO, pos, &nd));
        advance(ps);
        if (cur(ps)->k != T_NAME) return unexpected(ps, "a macro name");
        nd->name = tok_str(cur(ps));
        advance(ps);
        SLM_TRY(expect_op(ps, '(', "'('"));
        while (!is_op(cur(ps), ')')) {
            if (cur(ps)->k != T_NAME) return unexpected(ps, "a parameter name");
            SLM_TRY(push_name(ps, &nd->targets, &nd->n_targets, tok_str(cur(ps))));
            advance(ps);
            node *def = NULL;
            if (is_op(cur(ps), '=')) {
                advance(ps);
                SLM_TRY(parse_expr(ps, &def));
            }
            SLM_TRY(nl_push(ps, &nd->args, def));
            if (is_op(cur(ps), ','))
                advance(ps);
            else if (!is_op(cur(ps), ')'))
                return unexpected(ps, "',' or ')'");
        }
        advance(ps);
        SLM_TRY(expect_end(ps));
        int saved = ps->loop_depth;
        ps->loop_depth = 0;
        SLM_TRY(parse_body(ps, &nd->body, ends, 1, "macro", pos, &which));
        ps->loop_depth = saved;
        advance(ps);
        if (cur(ps)->k == T_NAME) advance(ps); /* {% endmacro name %} */
        SLM_TRY(expect_end(ps));
        return nl_push(ps, body, nd);
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (ps->loop_depth == 0)
            return fail_at(SLM_ERR_FORMAT, ps->t, pos, "'%.*s' outside a loop", (int)t->n, t->p);
        SLM_TRY(new_node(ps, is_name(t, "break") ? N_BREAK : N_CONTINUE, pos, &nd));
        advance(ps);
        SLM_TRY(expect_end(ps));
        return nl_push(ps, body, nd);
    }
    if (is_name(t, "generation")) { /* transformers' AssistantTracker: renders its body */
        static const char *const ends[] = {"endgeneration"};
        SLM_TRY(new_node(ps, N_BLOCK, pos, &nd));
        advance(ps);
        SLM_TRY(expect_end(ps));
        SLM_TRY(parse_body(ps, &nd->body, ends, 1, "generation", pos, &which));
        advance(ps);
        SLM_TRY(expect_end(ps));
        return nl_push(ps, body, nd);
    }
    static const char *const unsupported[] = {"call", "filter",    "include", "import",
                                              "from", "extends",   "block",   "with",
                                              "do",   "autoescape"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (is_name(t, unsupported[i]))
            return fail_at(SLM_ERR_UNSUPPORTED, ps->t, pos, "the '%s' tag is not supported",
                           unsupported[i]);
    char b[64];
    return fail_at(SLM_ERR_FORMAT, ps->t, pos, "unknown tag %s", tok_desc(t, b, sizeof b));
}

/* Parses nodes until a block tag named in `ends` (left current, its name
 * token) or, when ends is empty, the end of the template. */
static slm_status parse_body(parser *ps, nlist *body, const char *const *ends, size_t n_ends,
                             const char *opener, size_t opener_pos, int *which) {
    SLM_TRY(enter(ps));
    for (;;) {
        tok *t = cur(ps);
        if (t->k == T_EOF) {
            if (n_ends == 0) break;
            int line, col;
            line_col(ps->t->src, ps->t->len, opener_pos, &line, &col);
            return fail_at(SLM_ERR_FORMAT, ps->t, t->pos,
                           "unexpected end of template: '%s' opened at line %d, column %d is "
                           "not closed (expected '%s')",
                           opener, line, col, ends[n_ends - 1]);
        }
        if (t->k == T_TEXT) {
            node *nd;
            SLM_TRY(new_node(ps, N_TEXT, t->pos, &nd));
            jstr s = {t->p, NULL, t->n};
            nd->lit = jv_str(s);
            SLM_TRY(nl_push(ps, body, nd));
            advance(ps);
        } else if (t->k == T_VAR_BEGIN) {
            node *nd;
            SLM_TRY(new_node(ps, N_OUT, t->pos, &nd));
            advance(ps);
            SLM_TRY(parse_tuple(ps, &nd->a));
            if (cur(ps)->k != T_VAR_END) return unexpected(ps, "'}}'");
            advance(ps);
            SLM_TRY(nl_push(ps, body, nd));
        } else if (t->k == T_BLOCK_BEGIN) {
            advance(ps);
            tok *nt = cur(ps);
            for (size_t i = 0; i < n_ends; i++)
                if (is_name(nt, ends[i])) {
                    *which = (int)i;
                    ps->depth--;
                    return SLM_OK;
                }
            static const char *const closers[] = {"elif",   "else",     "endif",         "endfor",
                                                  "endset", "endmacro", "endgeneration", "endraw"};
            for (size_t i = 0; i < sizeof closers / sizeof closers[0]; i++)
                if (is_name(nt, closers[i])) {
                    if (n_ends == 0)
                        return fail_at(SLM_ERR_FORMAT, ps->t, nt->pos,
                                       "unexpected '%s' (no open block to close)", closers[i]);
                    return fail_at(SLM_ERR_FORMAT, ps->t, nt->pos,
                                   "unexpected '%s' (expected '%s' to close the '%s')", closers[i],
                                   ends[n_ends - 1], opener);
                }
            SLM_TRY(parse_statement(ps, body));
        } else {
            char b[64];
            return fail_at(SLM_ERR_FORMAT, ps->t, t->pos, "unexpected %s",
                           tok_desc(t, b, sizeof b));
        }
    }
    ps->depth--;
    return SLM_OK;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t);
}

slm_status jinja_parse(const char *src, size_t len, const char *name, jinja_template **out) {
    *out = NULL;
    if (!src && len) return slm_fail(SLM_ERR_INVALID_ARG, "jinja_parse: NULL template");
    if (!name) name = "template";
    if (len > JINJA_MAX_TEMPLATE_BYTES)
        return slm_fail(SLM_ERR_FORMAT, "%s: %zu bytes exceeds the limit of %u bytes", name, len,
                        JINJA_MAX_TEMPLATE_BYTES);
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", name);
    t->a.limit = JINJA_MAX_MEMORY;
    snprintf(t->name, sizeof t->name, "%s", name);
    /* Newlines normalized to \n; one trailing newline dropped (keep_trailing_newline=False). */
    char *s = arena_alloc(&t->a, len + 1);
    if (!s) {
        jinja_free(t);
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", name);
    }
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[w++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[w++] = src[i];
        }
    }
    if (w > 0 && s[w - 1] == '\n') w--;
    s[w] = '\0';
    t->src = s;
    t->len = w;
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.t = t;
    slm_status st = lex(&ps);
    if (st == SLM_OK) {
        int which = 0;
        st = parse_body(&ps, &t->body, NULL, 0, NULL, 0, &which);
    }
    free(ps.toks);
    if (st != SLM_OK) {
        jinja_free(t);
        return st;
    }
    *out = t;
    return SLM_OK;
}

/* ======================================================================== */
/* Render context                                                           */
/* ======================================================================== */

#define JINJA_MAX_RANGE 100000 /* as the sandboxed Jinja environment HF uses */

typedef struct frame {
    struct frame *parent;
    size_t n, cap;
    jstr *names;
    jv *vals;
} frame;

typedef struct sbuf {
    char *p;
    uint8_t *t;
    size_t n, cap;
    int any; /* some byte tainted */
} sbuf;

typedef struct rctx {
    arena a;
    const jinja_template *t;
    sbuf *out;
    frame *root;
    int depth;
    int flow; /* FLOW_* */
    uint64_t steps, iters;
    const cJSON *const *tainted;
    size_t n_tainted;
} rctx;

enum { FLOW_NONE, FLOW_BREAK, FLOW_CONTINUE };

static slm_status oom(rctx *c) {
    if (c->a.total + ARENA_CHUNK > c->a.limit)
        return slm_fail(SLM_ERR_FORMAT, "%s: rendering needs more than the limit of %u MiB",
                        c->t->name, JINJA_MAX_MEMORY >> 20);
    return slm_fail(SLM_ERR_NOMEM, "%s: out of memory while rendering", c->t->name);
}

static slm_status rfail(rctx *c, const node *nd, slm_status st, const char *fmt, ...)
    SLM_PRINTF(4, 5);
NOINLINE static slm_status rfail(rctx *c, const node *nd, slm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    slm_status r = vfail_at(st, c->t, nd ? nd->pos : 0, fmt, ap);
    va_end(ap);
    return r;
}

/* Counts work against JINJA_MAX_STEPS. */
NOINLINE static slm_status charge(rctx *c, const node *nd, uint64_t amount) {
    c->steps += amount;
    if (c->steps > JINJA_MAX_STEPS)
        return rfail(c, nd, SLM_ERR_FORMAT, "rendering takes more than %u steps (limit)",
                     JINJA_MAX_STEPS);
    return SLM_OK;
}

/* Work proportional to a byte count: one step per CHARGE_BYTES bytes. */
#define CHARGE_BYTES 64u
static slm_status charge_bytes(rctx *c, size_t n) {
    return charge(c, NULL, n / CHARGE_BYTES + 1);
}

static void *ralloc(rctx *c, size_t n) {
    return arena_alloc(&c->a, n);
}

static slm_status sb_reserve(rctx *c, sbuf *b, size_t extra) {
    if (extra > JINJA_MAX_OUTPUT - b->n)
        return slm_fail(SLM_ERR_FORMAT, "%s: a string or the output exceeds the limit of %u bytes",
                        c->t->name, JINJA_MAX_OUTPUT);
    size_t need = b->n + extra;
    if (need <= b->cap) return SLM_OK;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need) cap *= 2;
    if (cap > JINJA_MAX_OUTPUT) cap = JINJA_MAX_OUTPUT;
    char *p = ralloc(c, cap);
    uint8_t *t = ralloc(c, cap);
    if (!p || !t) return oom(c);
    if (b->n) {
        memcpy(p, b->p, b->n);
        memcpy(t, b->t, b->n);
    }
    b->p = p;
    b->t = t;
    b->cap = cap;
    return SLM_OK;
}

/* Appends n bytes; taint from mask (may be NULL), or all bytes when `all`. */
static slm_status sb_put(rctx *c, sbuf *b, const char *p, size_t n, const uint8_t *mask, int all) {
    if (n == 0) return SLM_OK;
    SLM_TRY(charge_bytes(c, n));
    SLM_TRY(sb_reserve(c, b, n));
    memcpy(b->p + b->n, p, n);
    if (all) {
        memset(b->t + b->n, 1, n);
        b->any = 1;
    } else if (mask) {
        memcpy(b->t + b->n, mask, n);
        for (size_t i = 0; i < n && !b->any; i++) b->any = mask[i] != 0;
    } else {
        memset(b->t + b->n, 0, n);
    }
    b->n += n;
    return SLM_OK;
}

static slm_status sb_str(rctx *c, sbuf *b, jstr s) {
    return sb_put(c, b, s.p, s.n, s.t, 0);
}
static slm_status sb_lit(rctx *c, sbuf *b, const char *s, int taint) {
    return sb_put(c, b, s, strlen(s), NULL, taint);
}

static jstr sb_take(sbuf *b) {
    jstr s = {b->p ? b->p : "", b->any ? b->t : NULL, b->n};
    return s;
}

static int str_tainted(jstr s) {
    if (!s.t) return 0;
    for (size_t i = 0; i < s.n; i++)
        if (s.t[i]) return 1;
    return 0;
}

NOINLINE static slm_status mkstr(rctx *c, const char *p, size_t n, const uint8_t *mask, int all,
                                 jv *out) {
    SLM_TRY(charge_bytes(c, n));
    char *q = ralloc(c, n + 1);
    if (!q) return oom(c);
    memcpy(q, p, n);
    q[n] = '\0';
    uint8_t *t = NULL;
    if (all || mask) {
        t = ralloc(c, n ? n : 1);
        if (!t) return oom(c);
        if (all)
            memset(t, 1, n);
        else
            memcpy(t, mask, n);
    }
    jstr s = {q, t, n};
    *out = jv_str(s);
    return SLM_OK;
}

static jstr substr(jstr s, size_t off, size_t n) {
    jstr r = {s.p + off, s.t ? s.t + off : NULL, n};
    return r;
}

NOINLINE static slm_status concat2(rctx *c, jstr a, jstr b, jv *out) {
    SLM_TRY(charge_bytes(c, a.n + b.n));
    if (a.n + b.n > JINJA_MAX_OUTPUT || a.n > JINJA_MAX_OUTPUT)
        return slm_fail(SLM_ERR_FORMAT, "%s: a string exceeds the limit of %u bytes", c->t->name,
                        JINJA_MAX_OUTPUT);
    if (b.n == 0) {
        *out = jv_str(a);
        return SLM_OK;
    }
    if (a.n == 0) {
        *out = jv_str(b);
        return SLM_OK;
    }
    char *p = ralloc(c, a.n + b.n + 1);
    if (!p) return oom(c);
    memcpy(p, a.p, a.n);
    memcpy(p + a.n, b.p, b.n);
    p[a.n + b.n] = '\0';
    uint8_t *t = NULL;
    if (a.t || b.t) {
        t = ralloc(c, a.n + b.n);
        if (!t) return oom(c);
        if (a.t)
            memcpy(t, a.t, a.n);
        else
            memset(t, 0, a.n);
        if (b.t)
            memcpy(t + a.n, b.t, b.n);
        else
            memset(t + a.n, 0, b.n);
    }
    jstr s = {p, t, a.n + b.n};
    *out = jv_str(s);
    return SLM_OK;
}

static const char *type_name(const jv *v) {
    switch (v->k) {
    case JV_UNDEF:
        return "undefined";
    case JV_NONE:
        return "NoneType";
    case JV_BOOL:
        return "bool";
    case JV_INT:
        return "int";
    case JV_FLOAT:
        return "float";
    case JV_STR:
        return "str";
    case JV_LIST:
        return "list";
    case JV_DICT:
        return "dict";
    case JV_NS:
        return "Namespace";
    case JV_LOOP:
        return "LoopContext";
    case JV_MACRO:
        return "macro";
    default:
        return "function";
    }
}

NOINLINE static slm_status undef_err(rctx *c, const node *nd, const jv *v) {
    if (v->u.s.n)
        return rfail(c, nd, SLM_ERR_FORMAT, "'%.*s' is undefined",
                     (int)(v->u.s.n > 200 ? 200 : v->u.s.n), v->u.s.p);
    return rfail(c, nd, SLM_ERR_FORMAT, "a value is undefined");
}

static jv jv_undef_named(jstr name) {
    jv v = jv_undef();
    v.u.s = name;
    v.u.s.t = NULL;
    return v;
}

static int truthy(const jv *v) {
    switch (v->k) {
    case JV_UNDEF:
    case JV_NONE:
        return 0;
    case JV_BOOL:
        return v->u.b;
    case JV_INT:
        return v->u.i != 0;
    case JV_FLOAT:
        return v->u.f != 0.0;
    case JV_STR:
        return v->u.s.n > 0;
    case JV_LIST:
        return v->u.l->n > 0;
    case JV_DICT:
        return v->u.d->n > 0;
    default:
        return 1;
    }
}

/* Python's repr() of a float. */
static void py_float(double f, char *buf, size_t cap) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        snprintf(buf, cap, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char tmp[48];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    char digits[32];
    size_t nd = 0;
    const char *q = tmp;
    int neg = 0;
    if (*q == '-') neg = 1, q++;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9' && nd < sizeof digits - 1) digits[nd++] = *q;
    int e = *q == 'e' ? atoi(q + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char out[64];
    size_t w = 0;
    if (neg) out[w++] = '-';
    if (e < -4 || e >= 16) {
        out[w++] = digits[0];
        if (nd > 1) {
            out[w++] = '.';
            for (size_t i = 1; i < nd; i++) out[w++] = digits[i];
        }
        w +=
            (size_t)snprintf(out + w, sizeof out - w, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    } else if (e >= 0) {
        for (int i = 0; i <= e; i++) out[w++] = (size_t)i < nd ? digits[i] : '0';
        out[w++] = '.';
        if (nd > (size_t)e + 1)
            for (size_t i = (size_t)e + 1; i < nd; i++) out[w++] = digits[i];
        else
            out[w++] = '0';
    } else {
        out[w++] = '0';
        out[w++] = '.';
        for (int i = 0; i < -e - 1; i++) out[w++] = '0';
        for (size_t i = 0; i < nd; i++) out[w++] = digits[i];
    }
    out[w] = '\0';
    snprintf(buf, cap, "%s", out);
}

static slm_status repr_into(rctx *c, const node *nd, sbuf *b, const jv *v, int depth);

/* str(v) */
NOINLINE static slm_status to_str(rctx *c, const node *nd, const jv *v, jstr *out) {
    char buf[64];
    const char *lit = NULL;
    switch (v->k) {
    case JV_STR:
        *out = v->u.s;
        return SLM_OK;
    case JV_UNDEF:
        lit = "";
        break;
    case JV_NONE:
        lit = "None";
        break;
    case JV_BOOL:
        lit = v->u.b ? "True" : "False";
        break;
    case JV_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)v->u.i);
        lit = buf;
        break;
    case JV_FLOAT:
        py_float(v->u.f, buf, sizeof buf);
        lit = buf;
        break;
    case JV_NS:
        lit = "<Namespace>";
        break;
    case JV_LOOP:
        lit = "<LoopContext>";
        break;
    case JV_MACRO:
        lit = "<Macro>";
        break;
    case JV_FUNC:
        lit = "<function>";
        break;
    default: {
        sbuf sb;
        memset(&sb, 0, sizeof sb);
        SLM_TRY(repr_into(c, nd, &sb, v, 0));
        *out = sb_take(&sb);
        return SLM_OK;
    }
    }
    jv r;
    SLM_TRY(mkstr(c, lit, strlen(lit), NULL, 0, &r));
    *out = r.u.s;
    return SLM_OK;
}

static slm_status deep(rctx *c, const node *nd, int depth) {
    if (depth > JINJA_MAX_EVAL_DEPTH)
        return rfail(c, nd, SLM_ERR_FORMAT, "value nested deeper than %d levels",
                     JINJA_MAX_EVAL_DEPTH);
    return SLM_OK;
}

/* Python repr() of a string: quotes and escapes, taint per source byte. */
static slm_status repr_str(rctx *c, sbuf *b, jstr s) {
    int t = str_tainted(s);
    int has_sq = memchr(s.p, '\'', s.n) != NULL, has_dq = memchr(s.p, '"', s.n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    SLM_TRY(sb_put(c, b, &q, 1, NULL, t));
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        int ti = s.t && s.t[i];
        char e[8];
        const char *rep = NULL;
        if (ch == '\\')
            rep = "\\\\";
        else if (ch == (unsigned char)q)
            rep = q == '\'' ? "\\'" : "\\\"";
        else if (ch == '\n')
            rep = "\\n";
        else if (ch == '\r')
            rep = "\\r";
        else if (ch == '\t')
            rep = "\\t";
        else if (ch < 0x20 || ch == 0x7F) {
            snprintf(e, sizeof e, "\\x%02x", ch);
            rep = e;
        }
        if (rep)
            SLM_TRY(sb_put(c, b, rep, strlen(rep), NULL, ti));
        else
            SLM_TRY(sb_put(c, b, s.p + i, 1, NULL, ti));
    }
    return sb_put(c, b, &q, 1, NULL, t);
}

static slm_status repr_into(rctx *c, const node *nd, sbuf *b, const jv *v, int depth) {
    SLM_TRY(deep(c, nd, depth));
    if (v->k == JV_STR) return repr_str(c, b, v->u.s);
    if (v->k == JV_LIST) {
        int tu = v->u.l->tuple;
        SLM_TRY(sb_lit(c, b, tu ? "(" : "[", 0));
        for (size_t i = 0; i < v->u.l->n; i++) {
            if (i) SLM_TRY(sb_lit(c, b, ", ", 0));
            SLM_TRY(repr_into(c, nd, b, &v->u.l->v[i], depth + 1));
        }
        if (tu && v->u.l->n == 1) SLM_TRY(sb_lit(c, b, ",", 0));
        return sb_lit(c, b, tu ? ")" : "]", 0);
    }
    if (v->k == JV_DICT) {
        SLM_TRY(sb_lit(c, b, "{", 0));
        for (size_t i = 0; i < v->u.d->n; i++) {
            if (i) SLM_TRY(sb_lit(c, b, ", ", 0));
            SLM_TRY(repr_str(c, b, v->u.d->keys[i]));
            SLM_TRY(sb_lit(c, b, ": ", 0));
            SLM_TRY(repr_into(c, nd, b, &v->u.d->vals[i], depth + 1));
        }
        return sb_lit(c, b, "}", 0);
    }
    jstr s;
    SLM_TRY(to_str(c, nd, v, &s));
    return sb_str(c, b, s);
}

/* json.dumps(v, ensure_ascii, indent, sort_keys) as HF's tojson. indent < 0: none. */
typedef struct json_opts {
    int indent, ensure_ascii, sort_keys;
} json_opts;

static slm_status json_str(rctx *c, sbuf *b, jstr s, int ensure_ascii) {
    int t = str_tainted(s);
    SLM_TRY(sb_put(c, b, "\"", 1, NULL, t));
    for (size_t i = 0; i < s.n;) {
        unsigned char ch = (unsigned char)s.p[i];
        int ti = s.t && s.t[i];
        char e[16];
        const char *rep = NULL;
        size_t l = 1;
        switch (ch) {
        case '"':
            rep = "\\\"";
            break;
        case '\\':
            rep = "\\\\";
            break;
        case '\n':
            rep = "\\n";
            break;
        case '\r':
            rep = "\\r";
            break;
        case '\t':
            rep = "\\t";
            break;
        case '\b':
            rep = "\\b";
            break;
        case '\f':
            rep = "\\f";
            break;
        default:
            if (ch < 0x20 || (ensure_ascii && ch == 0x7F)) {
                snprintf(e, sizeof e, "\\u%04x", ch);
                rep = e;
            } else if (ensure_ascii && ch >= 0x80) {
                l = u8len(s.p + i, s.n - i);
                uint32_t cp = l > 1 ? u8cp(s.p + i, l) : 0xFFFD;
                if (cp >= 0x10000) {
                    cp -= 0x10000;
                    snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                             0xDC00 + (cp & 0x3FF));
                } else {
                    snprintf(e, sizeof e, "\\u%04x", cp);
                }
                rep = e;
            }
        }
        if (rep)
            SLM_TRY(sb_put(c, b, rep, strlen(rep), NULL, ti));
        else
            SLM_TRY(sb_put(c, b, s.p + i, 1, NULL, ti));
        i += l;
    }
    return sb_put(c, b, "\"", 1, NULL, t);
}

static slm_status json_nl(rctx *c, sbuf *b, const json_opts *o, int level) {
    SLM_TRY(sb_lit(c, b, "\n", 0));
    for (int i = 0; i < level * o->indent; i++) SLM_TRY(sb_lit(c, b, " ", 0));
    return SLM_OK;
}

static int jstr_cmp(jstr a, jstr b) {
    int r = memcmp(a.p, b.p, a.n < b.n ? a.n : b.n);
    if (r) return r;
    return a.n < b.n ? -1 : a.n > b.n;
}

static slm_status json_into(rctx *c, const node *nd, sbuf *b, const jv *v, const json_opts *o,
                            int level) {
    SLM_TRY(deep(c, nd, level));
    char buf[64];
    switch (v->k) {
    case JV_NONE:
        return sb_lit(c, b, "null", 0);
    case JV_BOOL:
        return sb_lit(c, b, v->u.b ? "true" : "false", 0);
    case JV_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)v->u.i);
        return sb_lit(c, b, buf, 0);
    case JV_FLOAT:
        if (isnan(v->u.f)) return sb_lit(c, b, "NaN", 0);
        if (isinf(v->u.f)) return sb_lit(c, b, v->u.f < 0 ? "-Infinity" : "Infinity", 0);
        py_float(v->u.f, buf, sizeof buf);
        return sb_lit(c, b, buf, 0);
    case JV_STR:
        return json_str(c, b, v->u.s, o->ensure_ascii);
    case JV_LIST: {
        const jlist *l = v->u.l;
        if (l->n == 0) return sb_lit(c, b, "[]", 0);
        SLM_TRY(sb_lit(c, b, "[", 0));
        for (size_t i = 0; i < l->n; i++) {
            if (i) SLM_TRY(sb_lit(c, b, o->indent >= 0 ? "," : ", ", 0));
            if (o->indent >= 0) SLM_TRY(json_nl(c, b, o, level + 1));
            SLM_TRY(json_into(c, nd, b, &l->v[i], o, level + 1));
        }
        if (o->indent >= 0) SLM_TRY(json_nl(c, b, o, level));
        return sb_lit(c, b, "]", 0);
    }
    case JV_DICT:
    case JV_NS: {
        const jdict *d = v->u.d;
        if (d->n == 0) return sb_lit(c, b, "{}", 0);
        size_t *order = ralloc(c, d->n * sizeof *order);
        if (!order) return oom(c);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) { /* insertion sort: stable */
            SLM_TRY(charge(c, nd, (uint64_t)d->n * d->n));
            for (size_t i = 1; i < d->n; i++) {
                size_t x = order[i], j = i;
                while (j > 0 && jstr_cmp(d->keys[order[j - 1]], d->keys[x]) > 0) {
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = x;
            }
        }
        SLM_TRY(sb_lit(c, b, "{", 0));
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k) SLM_TRY(sb_lit(c, b, o->indent >= 0 ? "," : ", ", 0));
            if (o->indent >= 0) SLM_TRY(json_nl(c, b, o, level + 1));
            SLM_TRY(json_str(c, b, d->keys[i], o->ensure_ascii));
            SLM_TRY(sb_lit(c, b, ": ", 0));
            SLM_TRY(json_into(c, nd, b, &d->vals[i], o, level + 1));
        }
        if (o->indent >= 0) SLM_TRY(json_nl(c, b, o, level));
        return sb_lit(c, b, "}", 0);
    }
    default:
        return rfail(c, nd, SLM_ERR_FORMAT, "object of type %s is not JSON serializable",
                     type_name(v));
    }
}

/* ---- lists, dicts, frames ------------------------------------------------ */

NOINLINE static slm_status new_list(rctx *c, size_t n, jlist **out) {
    jlist *l = ralloc(c, sizeof *l);
    jv *v = ralloc(c, (n ? n : 1) * sizeof *v);
    if (!l || !v) return oom(c);
    l->n = n;
    l->v = v;
    l->tuple = 0;
    *out = l;
    return SLM_OK;
}

static jv jv_list(jlist *l) {
    jv v = jv_undef();
    v.k = JV_LIST;
    v.u.l = l;
    return v;
}

NOINLINE static slm_status new_dict(rctx *c, size_t cap, jdict **out) {
    jdict *d = ralloc(c, sizeof *d);
    if (!d) return oom(c);
    memset(d, 0, sizeof *d);
    if (cap) {
        d->keys = ralloc(c, cap * sizeof *d->keys);
        d->vals = ralloc(c, cap * sizeof *d->vals);
        if (!d->keys || !d->vals) return oom(c);
        d->cap = cap;
    }
    *out = d;
    return SLM_OK;
}

static int dict_find(const jdict *d, jstr key, size_t *at) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].n == key.n && memcmp(d->keys[i].p, key.p, key.n) == 0) {
            *at = i;
            return 1;
        }
    return 0;
}

/* Doubles parallel name/value arrays (render arena memory: the old ones are
 * reclaimed with the arena). */
static slm_status grow_pairs(rctx *c, jstr **names, jv **vals, size_t n, size_t *cap,
                             size_t first) {
    size_t ncap = *cap ? *cap * 2 : first;
    jstr *k = ralloc(c, ncap * sizeof *k);
    jv *vv = ralloc(c, ncap * sizeof *vv);
    if (!k || !vv) return oom(c);
    if (n) {
        memcpy(k, *names, n * sizeof *k);
        memcpy(vv, *vals, n * sizeof *vv);
    }
    *names = k;
    *vals = vv;
    *cap = ncap;
    return SLM_OK;
}

NOINLINE static slm_status dict_set(rctx *c, jdict *d, jstr key, jv v) {
    size_t at;
    if (dict_find(d, key, &at)) {
        d->vals[at] = v;
        return SLM_OK;
    }
    if (d->n == d->cap) SLM_TRY(grow_pairs(c, &d->keys, &d->vals, d->n, &d->cap, 4));
    d->keys[d->n] = key;
    d->vals[d->n++] = v;
    return SLM_OK;
}

static slm_status frame_new(rctx *c, frame *parent, frame **out) {
    frame *f = ralloc(c, sizeof *f);
    if (!f) return oom(c);
    memset(f, 0, sizeof *f);
    f->parent = parent;
    *out = f;
    return SLM_OK;
}

NOINLINE static slm_status frame_set(rctx *c, frame *f, jstr name, jv v) {
    for (size_t i = 0; i < f->n; i++)
        if (f->names[i].n == name.n && memcmp(f->names[i].p, name.p, name.n) == 0) {
            f->vals[i] = v;
            return SLM_OK;
        }
    if (f->n == f->cap) SLM_TRY(grow_pairs(c, &f->names, &f->vals, f->n, &f->cap, 8));
    f->names[f->n] = name;
    f->vals[f->n++] = v;
    return SLM_OK;
}

static int frame_get(const frame *f, jstr name, jv *out) {
    for (; f; f = f->parent)
        for (size_t i = f->n; i-- > 0;)
            if (f->names[i].n == name.n && memcmp(f->names[i].p, name.p, name.n) == 0) {
                *out = f->vals[i];
                return 1;
            }
    return 0;
}

/* ---- equality and ordering ------------------------------------------------ */

static int is_num(const jv *v) {
    return v->k == JV_BOOL || v->k == JV_INT || v->k == JV_FLOAT;
}
static double num_f(const jv *v) {
    return v->k == JV_FLOAT ? v->u.f : v->k == JV_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t num_i(const jv *v) {
    return v->k == JV_INT ? v->u.i : (int64_t)v->u.b;
}

/* Python ==; *eq gets the answer. */
NOINLINE static slm_status jv_eq(rctx *c, const node *nd, const jv *a, const jv *b, int depth,
                                 int *eq) {
    SLM_TRY(deep(c, nd, depth));
    *eq = 0;
    if (is_num(a) && is_num(b)) {
        if (a->k != JV_FLOAT && b->k != JV_FLOAT)
            *eq = num_i(a) == num_i(b);
        else
            *eq = num_f(a) == num_f(b);
        return SLM_OK;
    }
    if (a->k != b->k) return SLM_OK;
    switch (a->k) {
    case JV_UNDEF:
    case JV_NONE:
        *eq = 1;
        return SLM_OK;
    case JV_STR:
        if (a->u.s.n == b->u.s.n) SLM_TRY(charge_bytes(c, a->u.s.n));
        *eq = a->u.s.n == b->u.s.n && memcmp(a->u.s.p, b->u.s.p, a->u.s.n) == 0;
        return SLM_OK;
    case JV_LIST:
        if (a->u.l->n != b->u.l->n || a->u.l->tuple != b->u.l->tuple) return SLM_OK;
        for (size_t i = 0; i < a->u.l->n; i++) {
            SLM_TRY(jv_eq(c, nd, &a->u.l->v[i], &b->u.l->v[i], depth + 1, eq));
            if (!*eq) return SLM_OK;
        }
        *eq = 1;
        return SLM_OK;
    case JV_DICT:
        if (a->u.d->n != b->u.d->n) return SLM_OK;
        for (size_t i = 0; i < a->u.d->n; i++) {
            size_t at;
            if (!dict_find(b->u.d, a->u.d->keys[i], &at)) return SLM_OK;
            SLM_TRY(jv_eq(c, nd, &a->u.d->vals[i], &b->u.d->vals[at], depth + 1, eq));
            if (!*eq) return SLM_OK;
        }
        *eq = 1;
        return SLM_OK;
    case JV_NS:
        *eq = a->u.d == b->u.d;
        return SLM_OK;
    case JV_LOOP:
        *eq = a->u.loop == b->u.loop;
        return SLM_OK;
    case JV_MACRO:
        *eq = a->u.macro == b->u.macro;
        return SLM_OK;
    default:
        *eq = a->u.fn == b->u.fn;
        return SLM_OK;
    }
}

/* Python ordering: *r < 0, 0, > 0. */
NOINLINE static slm_status jv_cmp(rctx *c, const node *nd, const jv *a, const jv *b, int depth,
                                  int *r) {
    SLM_TRY(deep(c, nd, depth));
    if (is_num(a) && is_num(b)) {
        if (a->k != JV_FLOAT && b->k != JV_FLOAT) {
            int64_t x = num_i(a), y = num_i(b);
            *r = x < y ? -1 : x > y;
        } else {
            double x = num_f(a), y = num_f(b);
            *r = x < y ? -1 : x > y;
        }
        return SLM_OK;
    }
    if (a->k == JV_STR && b->k == JV_STR) {
        *r = jstr_cmp(a->u.s, b->u.s);
        return SLM_OK;
    }
    if (a->k == JV_LIST && b->k == JV_LIST) {
        size_t n = a->u.l->n < b->u.l->n ? a->u.l->n : b->u.l->n;
        for (size_t i = 0; i < n; i++) {
            int eq;
            SLM_TRY(jv_eq(c, nd, &a->u.l->v[i], &b->u.l->v[i], depth + 1, &eq));
            if (!eq) return jv_cmp(c, nd, &a->u.l->v[i], &b->u.l->v[i], depth + 1, r);
        }
        *r = a->u.l->n < b->u.l->n ? -1 : a->u.l->n > b->u.l->n;
        return SLM_OK;
    }
    if (a->k == JV_UNDEF) return undef_err(c, nd, a);
    if (b->k == JV_UNDEF) return undef_err(c, nd, b);
    return rfail(c, nd, SLM_ERR_FORMAT, "cannot order %s and %s", type_name(a), type_name(b));
}

/* ---- iteration ------------------------------------------------------------- */

/* The code points of a string, as views. */
static slm_status str_chars(rctx *c, jstr s, jlist **out) {
    SLM_TRY(charge_bytes(c, s.n * 4));
    size_t n = u8count(s.p, s.n);
    jlist *l = NULL;
    SLM_TRY(new_list(c, n, &l));
    size_t k = 0;
    for (size_t i = 0; i < s.n; k++) {
        size_t cl = u8len(s.p + i, s.n - i);
        l->v[k] = jv_str(substr(s, i, cl));
        i += cl;
    }
    *out = l;
    return SLM_OK;
}

static slm_status iter_list(rctx *c, const node *nd, const jv *v, jlist **out) {
    switch (v->k) {
    case JV_LIST:
        *out = v->u.l;
        return SLM_OK;
    case JV_UNDEF:
        return new_list(c, 0, out);
    case JV_STR:
        return str_chars(c, v->u.s, out);
    case JV_DICT: {
        jlist *l = NULL;
        SLM_TRY(new_list(c, v->u.d->n, &l));
        for (size_t i = 0; i < v->u.d->n; i++) l->v[i] = jv_str(v->u.d->keys[i]);
        *out = l;
        return SLM_OK;
    }
    default:
        return rfail(c, nd, SLM_ERR_FORMAT, "'%s' object is not iterable", type_name(v));
    }
}

static slm_status length_of(rctx *c, const node *nd, const jv *v, int64_t *n) {
    switch (v->k) {
    case JV_STR:
        SLM_TRY(charge_bytes(c, v->u.s.n));
        *n = (int64_t)u8count(v->u.s.p, v->u.s.n);
        return SLM_OK;
    case JV_LIST:
        *n = (int64_t)v->u.l->n;
        return SLM_OK;
    case JV_DICT:
    case JV_NS:
        *n = (int64_t)v->u.d->n;
        return SLM_OK;
    case JV_UNDEF:
        *n = 0;
        return SLM_OK;
    case JV_LOOP:
        *n = (int64_t)v->u.loop->items->n;
        return SLM_OK;
    default:
        return rfail(c, nd, SLM_ERR_FORMAT, "object of type '%s' has no length", type_name(v));
    }
}

/* ---- string operations (taint follows the bytes) --------------------------- */

static int in_chars(jstr chars, const char *p, size_t l) {
    for (size_t i = 0; i < chars.n;) {
        size_t cl = u8len(chars.p + i, chars.n - i);
        if (cl == l && memcmp(chars.p + i, p, l) == 0) return 1;
        i += cl;
    }
    return 0;
}

/* str.strip / lstrip / rstrip: chars NULL = whitespace. */
static jstr str_strip(jstr s, const jstr *chars, int left, int right) {
    size_t a = 0, b = s.n;
    if (left)
        while (a < b) {
            size_t l = u8len(s.p + a, b - a);
            if (chars ? !in_chars(*chars, s.p + a, l) : !space_at(s.p + a, b - a)) break;
            a += l;
        }
    if (right)
        while (b > a) {
            size_t s0 = b - 1;
            while (s0 > a && b - s0 < 4 && ((unsigned char)s.p[s0] & 0xC0) == 0x80) s0--;
            size_t l = u8len(s.p + s0, b - s0);
            if (s0 + l != b) s0 = b - 1, l = 1;
            if (chars ? !in_chars(*chars, s.p + s0, l) : !py_space(u8cp(s.p + s0, l))) break;
            b = s0;
        }
    return substr(s, a, b - a);
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_JTITLE };

static int is_alpha(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}
static char up(char ch) {
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch;
}
static char lo(char ch) {
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

/* ASCII case mapping (other characters are kept). */
static slm_status str_case(rctx *c, jstr s, int mode, jv *out) {
    jv r;
    SLM_TRY(mkstr(c, s.p, s.n, s.t, 0, &r));
    char *p = (char *)r.u.s.p;
    int prev_alpha = 0, word_start = 1;
    for (size_t i = 0; i < s.n; i++) {
        char ch = p[i];
        switch (mode) {
        case CASE_UPPER:
            p[i] = up(ch);
            break;
        case CASE_LOWER:
            p[i] = lo(ch);
            break;
        case CASE_TITLE:
            p[i] = prev_alpha ? lo(ch) : up(ch);
            break;
        case CASE_CAPITALIZE:
            p[i] = i == 0 ? up(ch) : lo(ch);
            break;
        default: /* Jinja's title filter: words start after whitespace, -, (, {, [, < */
            p[i] = word_start ? up(ch) : lo(ch);
            break;
        }
        prev_alpha = is_alpha(ch) || ((unsigned char)ch >= 0x80);
        word_start =
            ascii_space(ch) || ch == '-' || ch == '(' || ch == '{' || ch == '[' || ch == '<';
    }
    *out = r;
    return SLM_OK;
}

static const char *find_bytes(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0) return h;
    if (nn > hn) return NULL;
    return memmem(h, hn, n, nn);
}

/* str.replace(old, new, count): inserted bytes are tainted when `new` is, or
 * when the text they replace was. */
static slm_status str_replace(rctx *c, const node *nd, jstr s, jstr old, jstr nw, int64_t count,
                              jv *out) {
    sbuf b;
    memset(&b, 0, sizeof b);
    int64_t done = 0;
    size_t i = 0;
    if (old.n == 0) {
        for (;;) {
            if (count >= 0 && done >= count) break;
            SLM_TRY(charge(c, nd, 1));
            SLM_TRY(sb_str(c, &b, nw));
            done++;
            if (i >= s.n) break;
            size_t l = u8len(s.p + i, s.n - i);
            SLM_TRY(sb_str(c, &b, substr(s, i, l)));
            i += l;
        }
        SLM_TRY(sb_str(c, &b, substr(s, i, s.n - i)));
        *out = jv_str(sb_take(&b));
        return SLM_OK;
    }
    while (i <= s.n) {
        const char *f =
            (count < 0 || done < count) ? find_bytes(s.p + i, s.n - i, old.p, old.n) : NULL;
        if (!f) break;
        size_t at = (size_t)(f - s.p);
        SLM_TRY(sb_str(c, &b, substr(s, i, at - i)));
        SLM_TRY(sb_put(c, &b, nw.p, nw.n, nw.t, str_tainted(substr(s, at, old.n))));
        i = at + old.n;
        done++;
    }
    SLM_TRY(sb_str(c, &b, substr(s, i, s.n - i)));
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

/* str.split(sep=None, maxsplit=-1) */
static slm_status str_split(rctx *c, const node *nd, jstr s, const jstr *sep, int64_t maxsplit,
                            jv *out) {
    size_t cap = 8, n = 0;
    jv *v = ralloc(c, cap * sizeof *v);
    if (!v) return oom(c);
    size_t i = 0;
    if (sep && sep->n == 0) return rfail(c, nd, SLM_ERR_FORMAT, "split(): empty separator");
    for (;;) {
        jstr piece;
        int last = 0;
        if (sep) {
            const char *f = (maxsplit < 0 || (int64_t)n < maxsplit)
                                ? find_bytes(s.p + i, s.n - i, sep->p, sep->n)
                                : NULL;
            if (!f) {
                piece = substr(s, i, s.n - i);
                last = 1;
            } else {
                size_t at = (size_t)(f - s.p);
                piece = substr(s, i, at - i);
                i = at + sep->n;
            }
        } else {
            size_t k;
            while (i < s.n && (k = space_at(s.p + i, s.n - i)) != 0) i += k;
            if (i >= s.n) break;
            if (maxsplit >= 0 && (int64_t)n >= maxsplit) {
                piece = substr(s, i, s.n - i);
                last = 1;
            } else {
                size_t a = i;
                while (i < s.n && space_at(s.p + i, s.n - i) == 0) i += u8len(s.p + i, s.n - i);
                piece = substr(s, a, i - a);
            }
        }
        if (n == cap) {
            jv *nv = ralloc(c, cap * 2 * sizeof *nv);
            if (!nv) return oom(c);
            memcpy(nv, v, n * sizeof *nv);
            v = nv;
            cap *= 2;
        }
        SLM_TRY(charge(c, nd, 1));
        v[n++] = jv_str(piece);
        if (last) break;
    }
    jlist *l = ralloc(c, sizeof *l);
    if (!l) return oom(c);
    l->n = n;
    l->v = v;
    l->tuple = 0;
    *out = jv_list(l);
    return SLM_OK;
}

/* ---- attribute, item, slice -------------------------------------------------- */

NOINLINE static slm_status get_attr(rctx *c, const node *nd, const jv *obj, jstr name, jv *out) {
    switch (obj->k) {
    case JV_UNDEF:
        return undef_err(c, nd, obj);
    case JV_DICT:
    case JV_NS: {
        size_t at;
        if (dict_find(obj->u.d, name, &at))
            *out = obj->u.d->vals[at];
        else
            *out = jv_undef_named(name);
        return SLM_OK;
    }
    case JV_LOOP: {
        const jloop *L = obj->u.loop;
        int64_t i = (int64_t)L->i, n = (int64_t)L->items->n;
        if (jstr_eq_c(name, "index"))
            *out = jv_int(i + 1);
        else if (jstr_eq_c(name, "index0"))
            *out = jv_int(i);
        else if (jstr_eq_c(name, "revindex"))
            *out = jv_int(n - i);
        else if (jstr_eq_c(name, "revindex0"))
            *out = jv_int(n - i - 1);
        else if (jstr_eq_c(name, "first"))
            *out = jv_bool(i == 0);
        else if (jstr_eq_c(name, "last"))
            *out = jv_bool(i == n - 1);
        else if (jstr_eq_c(name, "length"))
            *out = jv_int(n);
        else if (jstr_eq_c(name, "depth"))
            *out = jv_int(1);
        else if (jstr_eq_c(name, "depth0"))
            *out = jv_int(0);
        else if (jstr_eq_c(name, "previtem"))
            *out = i > 0 ? L->items->v[i - 1] : jv_undef_named(name);
        else if (jstr_eq_c(name, "nextitem"))
            *out = i + 1 < n ? L->items->v[i + 1] : jv_undef_named(name);
        else
            *out = jv_undef_named(name);
        return SLM_OK;
    }
    default:
        *out = jv_undef_named(name);
        return SLM_OK;
    }
}

NOINLINE static slm_status get_item(rctx *c, const node *nd, const jv *obj, const jv *key,
                                    jv *out) {
    if (obj->k == JV_UNDEF) return undef_err(c, nd, obj);
    if (key->k == JV_STR && obj->k != JV_LIST && obj->k != JV_STR)
        return get_attr(c, nd, obj, key->u.s, out);
    jstr none_name = {"item", NULL, 4};
    *out = jv_undef_named(none_name);
    if (key->k != JV_INT && key->k != JV_BOOL) return SLM_OK;
    int64_t i = num_i(key);
    if (obj->k == JV_LIST) {
        int64_t n = (int64_t)obj->u.l->n;
        if (i < 0) i += n;
        if (i >= 0 && i < n) *out = obj->u.l->v[i];
    } else if (obj->k == JV_STR) {
        jstr s = obj->u.s;
        SLM_TRY(charge_bytes(c, s.n));
        if (i < 0) i += (int64_t)u8count(s.p, s.n);
        for (size_t at = 0; i >= 0 && at < s.n; i--) {
            size_t l = u8len(s.p + at, s.n - at);
            if (i == 0) *out = jv_str(substr(s, at, l));
            at += l;
        }
    }
    return SLM_OK;
}

static slm_status slice_index(rctx *c, const node *nd, const jv *v, int has, int64_t *out) {
    if (!has || v->k == JV_NONE || v->k == JV_UNDEF) return SLM_OK;
    if (v->k != JV_INT && v->k != JV_BOOL)
        return rfail(c, nd, SLM_ERR_FORMAT, "slice indices must be integers, not %s", type_name(v));
    *out = num_i(v);
    return SLM_OK;
}

NOINLINE static slm_status do_slice(rctx *c, const node *nd, const jv *obj, const jv *parts,
                                    const int *has, jv *out) {
    if (obj->k == JV_UNDEF) return undef_err(c, nd, obj);
    if (obj->k != JV_LIST && obj->k != JV_STR)
        return rfail(c, nd, SLM_ERR_FORMAT, "'%s' object cannot be sliced", type_name(obj));
    int64_t step = 1;
    SLM_TRY(slice_index(c, nd, &parts[2], has[2], &step));
    if (step == 0) return rfail(c, nd, SLM_ERR_FORMAT, "slice step cannot be zero");
    jlist *items = NULL;
    if (obj->k == JV_LIST)
        items = obj->u.l;
    else
        SLM_TRY(str_chars(c, obj->u.s, &items));
    int64_t n = (int64_t)items->n;
    int64_t start = step > 0 ? 0 : n - 1, stop = step > 0 ? n : -1;
    int64_t s0 = INT64_MIN, s1 = INT64_MIN;
    SLM_TRY(slice_index(c, nd, &parts[0], has[0], &s0));
    SLM_TRY(slice_index(c, nd, &parts[1], has[1], &s1));
    if (s0 != INT64_MIN) {
        start = s0 < 0 ? s0 + n : s0;
        if (step > 0)
            start = start < 0 ? 0 : start > n ? n : start;
        else
            start = start < 0 ? -1 : start >= n ? n - 1 : start;
    }
    if (s1 != INT64_MIN) {
        stop = s1 < 0 ? s1 + n : s1;
        if (step > 0)
            stop = stop < 0 ? 0 : stop > n ? n : stop;
        else
            stop = stop < 0 ? -1 : stop >= n ? n - 1 : stop;
    }
    size_t cnt = 0;
    if (step > 0 && start < stop) cnt = (size_t)((stop - start + step - 1) / step);
    if (step < 0 && start > stop) cnt = (size_t)((start - stop + (-step) - 1) / (-step));
    jlist *r = NULL;
    SLM_TRY(new_list(c, cnt, &r));
    for (size_t k = 0; k < cnt; k++) r->v[k] = items->v[start + (int64_t)k * step];
    if (obj->k == JV_LIST) {
        *out = jv_list(r);
        return SLM_OK;
    }
    sbuf b;
    memset(&b, 0, sizeof b);
    for (size_t k = 0; k < cnt; k++) SLM_TRY(sb_str(c, &b, r->v[k].u.s));
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

/* ---- arithmetic ---------------------------------------------------------------- */

/* Python's printf-style "fmt % args": %s, %d, %i, %r (as %s), %% and
 * %(name)s with a mapping; no widths or precisions. */
NOINLINE static slm_status percent_format(rctx *c, const node *nd, jstr f, const jv *args,
                                          jv *out) {
    sbuf b;
    memset(&b, 0, sizeof b);
    size_t next = 0;
    int tuple = args->k == JV_LIST && args->u.l->tuple;
    for (size_t i = 0; i < f.n; i++) {
        if (f.p[i] != '%') {
            SLM_TRY(sb_str(c, &b, substr(f, i, 1)));
            continue;
        }
        if (++i >= f.n) return rfail(c, nd, SLM_ERR_FORMAT, "incomplete format");
        if (f.p[i] == '%') {
            SLM_TRY(sb_lit(c, &b, "%", 0));
            continue;
        }
        jv v;
        if (f.p[i] == '(') {
            const char *e = memchr(f.p + i, ')', f.n - i);
            if (!e || (args->k != JV_DICT && args->k != JV_NS))
                return rfail(c, nd, SLM_ERR_FORMAT, "format requires a mapping");
            jstr key = {f.p + i + 1, NULL, (size_t)(e - f.p) - i - 1};
            SLM_TRY(get_attr(c, nd, args, key, &v));
            i = (size_t)(e - f.p) + 1;
            if (i >= f.n) return rfail(c, nd, SLM_ERR_FORMAT, "incomplete format");
        } else if (tuple) {
            if (next >= args->u.l->n)
                return rfail(c, nd, SLM_ERR_FORMAT, "not enough arguments for format string");
            v = args->u.l->v[next++];
        } else {
            if (next++ > 0)
                return rfail(c, nd, SLM_ERR_FORMAT, "not enough arguments for format string");
            v = *args;
        }
        char conv = f.p[i];
        if (conv == 'd' || conv == 'i') {
            if (!is_num(&v))
                return rfail(c, nd, SLM_ERR_FORMAT, "%%d format: a number is required");
            v = jv_int(v.k == JV_FLOAT ? (int64_t)v.u.f : num_i(&v));
        } else if (conv != 's' && conv != 'r') {
            return rfail(c, nd, SLM_ERR_UNSUPPORTED, "format '%%%c' is not supported", conv);
        }
        jstr vs;
        if (conv == 'r' && v.k == JV_STR) {
            sbuf rb;
            memset(&rb, 0, sizeof rb);
            SLM_TRY(repr_str(c, &rb, v.u.s));
            vs = sb_take(&rb);
        } else {
            SLM_TRY(to_str(c, nd, &v, &vs));
        }
        SLM_TRY(sb_str(c, &b, vs));
    }
    if (tuple && next < args->u.l->n)
        return rfail(c, nd, SLM_ERR_FORMAT, "not all arguments converted during string formatting");
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

NOINLINE static slm_status arith(rctx *c, const node *nd, int op, const jv *a, const jv *b,
                                 jv *out) {
    if (a->k == JV_UNDEF) return undef_err(c, nd, a);
    if (b->k == JV_UNDEF) return undef_err(c, nd, b);
    if (op == '+' && a->k == JV_STR && b->k == JV_STR) return concat2(c, a->u.s, b->u.s, out);
    if (op == '%' && a->k == JV_STR) return percent_format(c, nd, a->u.s, b, out);
    if (op == '+' && a->k == JV_LIST && b->k == JV_LIST) {
        jlist *l = NULL;
        SLM_TRY(new_list(c, a->u.l->n + b->u.l->n, &l));
        if (a->u.l->n) memcpy(l->v, a->u.l->v, a->u.l->n * sizeof(jv));
        if (b->u.l->n) memcpy(l->v + a->u.l->n, b->u.l->v, b->u.l->n * sizeof(jv));
        *out = jv_list(l);
        return SLM_OK;
    }
    if (op == '*' && ((a->k == JV_STR && (b->k == JV_INT || b->k == JV_BOOL)) ||
                      (b->k == JV_STR && (a->k == JV_INT || a->k == JV_BOOL)))) {
        const jv *s = a->k == JV_STR ? a : b;
        int64_t k = num_i(a->k == JV_STR ? b : a);
        sbuf sb;
        memset(&sb, 0, sizeof sb);
        if (k > 0 && s->u.s.n > 0 && (uint64_t)k > JINJA_MAX_OUTPUT / s->u.s.n)
            return rfail(c, nd, SLM_ERR_FORMAT, "string repetition exceeds %u bytes",
                         JINJA_MAX_OUTPUT);
        for (int64_t i = 0; i < k; i++) SLM_TRY(sb_str(c, &sb, s->u.s));
        *out = jv_str(sb_take(&sb));
        return SLM_OK;
    }
    if (!is_num(a) || !is_num(b))
        return rfail(c, nd, SLM_ERR_FORMAT, "unsupported operand types for %s: %s and %s",
                     op == OP_FLOORDIV ? "//"
                     : op == OP_POW    ? "**"
                                       : (char[]){(char)op, 0},
                     type_name(a), type_name(b));
    int fl = a->k == JV_FLOAT || b->k == JV_FLOAT;
    if (op == '/' || fl) {
        double x = num_f(a), y = num_f(b), r;
        switch (op) {
        case '+':
            r = x + y;
            break;
        case '-':
            r = x - y;
            break;
        case '*':
            r = x * y;
            break;
        case OP_POW:
            r = pow(x, y);
            break;
        default:
            if (y == 0) return rfail(c, nd, SLM_ERR_FORMAT, "division by zero");
            if (op == '/')
                r = x / y;
            else if (op == OP_FLOORDIV)
                r = floor(x / y);
            else {
                r = fmod(x, y);
                if (r != 0 && ((r < 0) != (y < 0))) r += y;
            }
        }
        *out = jv_float(r);
        return SLM_OK;
    }
    int64_t x = num_i(a), y = num_i(b), r = 0;
    int ovf = 0;
    switch (op) {
    case '+':
        ovf = __builtin_add_overflow(x, y, &r);
        break;
    case '-':
        ovf = __builtin_sub_overflow(x, y, &r);
        break;
    case '*':
        ovf = __builtin_mul_overflow(x, y, &r);
        break;
    case OP_POW:
        if (y < 0) {
            *out = jv_float(pow((double)x, (double)y));
            return SLM_OK;
        }
        r = 1;
        for (int64_t i = 0; i < y && !ovf; i++) {
            ovf = __builtin_mul_overflow(r, x, &r);
            if (r == 0 || r == 1) break;
            if (r == -1) {
                r = (y % 2) ? -1 : 1;
                break;
            }
        }
        break;
    default:
        if (y == 0) return rfail(c, nd, SLM_ERR_FORMAT, "integer division or modulo by zero");
        if (x == INT64_MIN && y == -1) {
            ovf = 1;
            break;
        }
        if (op == OP_FLOORDIV) {
            r = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) r--;
        } else {
            r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) r += y;
        }
    }
    if (ovf) return rfail(c, nd, SLM_ERR_UNSUPPORTED, "integer overflow (64-bit integers only)");
    *out = jv_int(r);
    return SLM_OK;
}

NOINLINE static slm_status contains(rctx *c, const node *nd, const jv *item, const jv *seq,
                                    int *res) {
    *res = 0;
    switch (seq->k) {
    case JV_STR:
        if (item->k != JV_STR)
            return rfail(c, nd, SLM_ERR_FORMAT, "'in <string>' requires a string, not %s",
                         type_name(item));
        SLM_TRY(charge_bytes(c, seq->u.s.n));
        *res = find_bytes(seq->u.s.p, seq->u.s.n, item->u.s.p, item->u.s.n) != NULL;
        return SLM_OK;
    case JV_LIST:
        SLM_TRY(charge(c, nd, seq->u.l->n));
        for (size_t i = 0; i < seq->u.l->n && !*res; i++)
            SLM_TRY(jv_eq(c, nd, item, &seq->u.l->v[i], 0, res));
        return SLM_OK;
    case JV_DICT:
    case JV_NS: {
        size_t at;
        *res = item->k == JV_STR && dict_find(seq->u.d, item->u.s, &at);
        return SLM_OK;
    }
    case JV_UNDEF:
        return SLM_OK;
    default:
        return rfail(c, nd, SLM_ERR_FORMAT, "argument of type '%s' is not iterable",
                     type_name(seq));
    }
}

/* ======================================================================== */
/* Evaluation                                                               */
/* ======================================================================== */

typedef struct cargs {
    jv *pos;
    size_t npos;
    const jstr *kwn;
    jv *kwv;
    size_t nkw;
} cargs;

static int arg_get(const cargs *a, size_t i, const char *name, jv *out) {
    if (i < a->npos) {
        *out = a->pos[i];
        return 1;
    }
    for (size_t k = 0; k < a->nkw; k++)
        if (name && jstr_eq_c(a->kwn[k], name)) {
            *out = a->kwv[k];
            return 1;
        }
    return 0;
}

static slm_status eval(rctx *c, frame *f, const node *nd, jv *out);
static slm_status exec_body(rctx *c, frame *f, const nlist *body);

NOINLINE static slm_status eval_args(rctx *c, frame *f, const node *nd, size_t skip, cargs *a) {
    memset(a, 0, sizeof *a);
    size_t np = nd->args.n > skip ? nd->args.n - skip : 0;
    a->pos = ralloc(c, (np + 1) * sizeof(jv));
    a->kwv = ralloc(c, (nd->kw.n + 1) * sizeof(jv));
    if (!a->pos || !a->kwv) return oom(c);
    for (size_t i = 0; i < np; i++) SLM_TRY(eval(c, f, nd->args.v[skip + i], &a->pos[i]));
    a->npos = np;
    for (size_t i = 0; i < nd->kw.n; i++) SLM_TRY(eval(c, f, nd->kw.v[i], &a->kwv[i]));
    a->kwn = nd->kwn;
    a->nkw = nd->kw.n;
    return SLM_OK;
}

static slm_status want_str(rctx *c, const node *nd, const jv *v, const char *what, jstr *out) {
    if (v->k == JV_UNDEF) return undef_err(c, nd, v);
    if (v->k != JV_STR)
        return rfail(c, nd, SLM_ERR_FORMAT, "%s expects a string, got %s", what, type_name(v));
    *out = v->u.s;
    return SLM_OK;
}

static slm_status want_int(rctx *c, const node *nd, const jv *v, const char *what, int64_t *out) {
    if (v->k == JV_UNDEF) return undef_err(c, nd, v);
    if (v->k != JV_INT && v->k != JV_BOOL)
        return rfail(c, nd, SLM_ERR_FORMAT, "%s expects an integer, got %s", what, type_name(v));
    *out = num_i(v);
    return SLM_OK;
}

/* ---- tests ----------------------------------------------------------------------- */

NOINLINE static slm_status apply_test(rctx *c, const node *nd, int id, const jv *v, const cargs *a,
                                      int *res) {
    jv arg = jv_undef();
    int has = arg_get(a, 0, NULL, &arg);
    *res = 0;
    switch (id) {
    case TS_DEFINED:
        *res = v->k != JV_UNDEF;
        return SLM_OK;
    case TS_UNDEFINED:
        *res = v->k == JV_UNDEF;
        return SLM_OK;
    case TS_NONE:
        *res = v->k == JV_NONE;
        return SLM_OK;
    case TS_STRING:
        *res = v->k == JV_STR;
        return SLM_OK;
    case TS_NUMBER:
        *res = is_num(v);
        return SLM_OK;
    case TS_INTEGER:
        *res = v->k == JV_INT;
        return SLM_OK;
    case TS_FLOAT:
        *res = v->k == JV_FLOAT;
        return SLM_OK;
    case TS_MAPPING:
        *res = v->k == JV_DICT;
        return SLM_OK;
    case TS_ITERABLE:
        *res = v->k == JV_STR || v->k == JV_LIST || v->k == JV_DICT || v->k == JV_UNDEF;
        return SLM_OK;
    case TS_SEQUENCE:
        *res = v->k == JV_STR || v->k == JV_LIST || v->k == JV_DICT;
        return SLM_OK;
    case TS_BOOLEAN:
        *res = v->k == JV_BOOL;
        return SLM_OK;
    case TS_FALSE:
        *res = v->k == JV_BOOL && !v->u.b;
        return SLM_OK;
    case TS_TRUE:
        *res = v->k == JV_BOOL && v->u.b;
        return SLM_OK;
    case TS_CALLABLE:
        *res = v->k == JV_MACRO || v->k == JV_FUNC;
        return SLM_OK;
    case TS_LOWER:
    case TS_UPPER: {
        jstr s;
        SLM_TRY(to_str(c, nd, v, &s));
        int cased = 0, ok = 1;
        for (size_t i = 0; i < s.n; i++) {
            if (!is_alpha(s.p[i])) continue;
            cased = 1;
            if (id == TS_LOWER ? (s.p[i] >= 'A' && s.p[i] <= 'Z')
                               : (s.p[i] >= 'a' && s.p[i] <= 'z'))
                ok = 0;
        }
        *res = cased && ok;
        return SLM_OK;
    }
    case TS_ODD:
    case TS_EVEN: {
        int64_t i;
        SLM_TRY(want_int(c, nd, v, "the odd/even test", &i));
        *res = (i % 2 != 0) == (id == TS_ODD);
        return SLM_OK;
    }
    case TS_DIVISIBLEBY: {
        int64_t i, d;
        SLM_TRY(want_int(c, nd, v, "divisibleby", &i));
        if (!has) return rfail(c, nd, SLM_ERR_FORMAT, "divisibleby needs an argument");
        SLM_TRY(want_int(c, nd, &arg, "divisibleby", &d));
        if (d == 0) return rfail(c, nd, SLM_ERR_FORMAT, "divisibleby 0");
        *res = d == -1 || i % d == 0;
        return SLM_OK;
    }
    case TS_IN:
        if (!has) return rfail(c, nd, SLM_ERR_FORMAT, "the 'in' test needs an argument");
        return contains(c, nd, v, &arg, res);
    case TS_SAMEAS:
        if (v->k != arg.k) return SLM_OK;
        if (v->k == JV_LIST)
            *res = v->u.l == arg.u.l;
        else if (v->k == JV_DICT || v->k == JV_NS)
            *res = v->u.d == arg.u.d;
        else if (v->k == JV_STR)
            *res = v->u.s.p == arg.u.s.p && v->u.s.n == arg.u.s.n;
        else
            return jv_eq(c, nd, v, &arg, 0, res);
        return SLM_OK;
    default:
        break;
    }
    if (!has) return rfail(c, nd, SLM_ERR_FORMAT, "this test needs an argument");
    if (id == TS_EQ || id == TS_NE) {
        SLM_TRY(jv_eq(c, nd, v, &arg, 0, res));
        if (id == TS_NE) *res = !*res;
        return SLM_OK;
    }
    int r;
    SLM_TRY(jv_cmp(c, nd, v, &arg, 0, &r));
    *res = id == TS_LT ? r < 0 : id == TS_LE ? r <= 0 : id == TS_GT ? r > 0 : r >= 0;
    return SLM_OK;
}

/* Attribute by a (possibly dotted) name, or an integer index, as Jinja's
 * attribute= arguments take. */
static slm_status attr_path(rctx *c, const node *nd, const jv *obj, const jv *attr, jv *out) {
    if (attr->k == JV_INT) return get_item(c, nd, obj, attr, out);
    jstr p;
    SLM_TRY(want_str(c, nd, attr, "attribute", &p));
    jv cur_v = *obj;
    size_t i = 0;
    for (;;) {
        const char *dot = memchr(p.p + i, '.', p.n - i);
        size_t e = dot ? (size_t)(dot - p.p) : p.n;
        jstr part = {p.p + i, NULL, e - i};
        jv next;
        if (cur_v.k == JV_UNDEF) {
            *out = cur_v;
            return SLM_OK;
        }
        char *endp;
        char numbuf[24];
        long long idx = 0;
        int is_idx = 0;
        if (part.n > 0 && part.n < sizeof numbuf) {
            memcpy(numbuf, part.p, part.n);
            numbuf[part.n] = '\0';
            idx = strtoll(numbuf, &endp, 10);
            is_idx = *endp == '\0' && cur_v.k == JV_LIST;
        }
        if (is_idx) {
            jv k = jv_int(idx);
            SLM_TRY(get_item(c, nd, &cur_v, &k, &next));
        } else {
            SLM_TRY(get_attr(c, nd, &cur_v, part, &next));
        }
        cur_v = next;
        if (!dot) break;
        i = e + 1;
    }
    *out = cur_v;
    return SLM_OK;
}

/* ---- filters ---------------------------------------------------------------------- */

static slm_status apply_filter(rctx *c, const node *nd, int id, const jv *v, const cargs *a,
                               jv *out);

static int filter_id_by_name(jstr name) {
    return lookup_filter(name);
}

/* Stable merge sort of n values by jv_cmp (optionally on an attribute,
 * case-insensitive for strings). */
typedef struct sort_ctx {
    rctx *c;
    const node *nd;
    int case_sensitive, reverse;
    slm_status st;
} sort_ctx;

static int sort_less(sort_ctx *s, const jv *x, const jv *y) {
    if (s->st != SLM_OK) return 0;
    jv a = *x, b = *y;
    if (!s->case_sensitive) {
        jv la, lb;
        if (a.k == JV_STR) {
            if ((s->st = str_case(s->c, a.u.s, CASE_LOWER, &la)) != SLM_OK) return 0;
            a = la;
        }
        if (b.k == JV_STR) {
            if ((s->st = str_case(s->c, b.u.s, CASE_LOWER, &lb)) != SLM_OK) return 0;
            b = lb;
        }
    }
    int r = 0;
    s->st = jv_cmp(s->c, s->nd, &a, &b, 0, &r);
    return s->reverse ? r > 0 : r < 0;
}

static slm_status merge_sort(sort_ctx *s, jv *keys, jv *vals, size_t n, jv *tk, jv *tv) {
    if (n < 2) return SLM_OK;
    SLM_TRY(charge(s->c, s->nd, n));
    size_t m = n / 2;
    SLM_TRY(merge_sort(s, keys, vals, m, tk, tv));
    SLM_TRY(merge_sort(s, keys + m, vals + m, n - m, tk, tv));
    size_t i = 0, j = m, k = 0;
    while (i < m && j < n) {
        if (sort_less(s, &keys[j], &keys[i])) {
            tk[k] = keys[j];
            tv[k++] = vals[j++];
        } else {
            tk[k] = keys[i];
            tv[k++] = vals[i++];
        }
        if (s->st != SLM_OK) return s->st;
    }
    while (i < m) tk[k] = keys[i], tv[k++] = vals[i++];
    while (j < n) tk[k] = keys[j], tv[k++] = vals[j++];
    memcpy(keys, tk, n * sizeof *keys);
    memcpy(vals, tv, n * sizeof *vals);
    return SLM_OK;
}

static slm_status sort_list(rctx *c, const node *nd, const jlist *in, const jv *attr, int reverse,
                            int case_sensitive, jv *out) {
    size_t n = in->n;
    jlist *l = NULL;
    SLM_TRY(new_list(c, n, &l));
    jv *keys = ralloc(c, (n + 1) * sizeof *keys), *tk = ralloc(c, (n + 1) * sizeof *tk),
       *tv = ralloc(c, (n + 1) * sizeof *tv);
    if (!keys || !tk || !tv) return oom(c);
    for (size_t i = 0; i < n; i++) {
        l->v[i] = in->v[i];
        if (attr)
            SLM_TRY(attr_path(c, nd, &in->v[i], attr, &keys[i]));
        else
            keys[i] = in->v[i];
    }
    sort_ctx s = {c, nd, case_sensitive, reverse, SLM_OK};
    SLM_TRY(merge_sort(&s, keys, l->v, n, tk, tv));
    *out = jv_list(l);
    return SLM_OK;
}

static slm_status list_push(rctx *c, jlist *l, size_t *cap, jv v) {
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        jv *nv = ralloc(c, nc * sizeof *nv);
        if (!nv) return oom(c);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        *cap = nc;
    }
    l->v[l->n++] = v;
    return SLM_OK;
}

/* select/reject/selectattr/rejectattr */
static slm_status filter_select(rctx *c, const node *nd, int id, const jv *v, const cargs *a,
                                jv *out) {
    int by_attr = id == F_SELECTATTR || id == F_REJECTATTR;
    int want = id == F_SELECT || id == F_SELECTATTR;
    jlist *items = NULL;
    SLM_TRY(iter_list(c, nd, v, &items));
    size_t first = 0;
    jv attr = jv_undef();
    if (by_attr) {
        if (a->npos < 1)
            return rfail(c, nd, SLM_ERR_FORMAT, "selectattr/rejectattr need an attribute");
        attr = a->pos[0];
        first = 1;
    }
    int test = -1;
    if (a->npos > first) {
        jstr tn;
        SLM_TRY(want_str(c, nd, &a->pos[first], "a test name", &tn));
        test = lookup_test(tn);
        if (test < 0)
            return rfail(c, nd, SLM_ERR_UNSUPPORTED, "unknown test '%.*s'", (int)tn.n, tn.p);
    }
    cargs ta;
    memset(&ta, 0, sizeof ta);
    if (a->npos > first + 1) {
        ta.pos = a->pos + first + 1;
        ta.npos = a->npos - first - 1;
    }
    jlist *r = NULL;
    size_t cap = 0;
    SLM_TRY(new_list(c, 0, &r));
    SLM_TRY(charge(c, nd, items->n));
    for (size_t i = 0; i < items->n; i++) {
        jv x = items->v[i];
        if (by_attr) SLM_TRY(attr_path(c, nd, &items->v[i], &attr, &x));
        int ok;
        if (test >= 0)
            SLM_TRY(apply_test(c, nd, test, &x, &ta, &ok));
        else
            ok = truthy(&x);
        if (ok == want) SLM_TRY(list_push(c, r, &cap, items->v[i]));
    }
    *out = jv_list(r);
    return SLM_OK;
}

static slm_status filter_join(rctx *c, const node *nd, const jv *v, const cargs *a, jv *out) {
    jlist *items = NULL;
    SLM_TRY(iter_list(c, nd, v, &items));
    jv sepv = jv_undef(), attr;
    jstr sep = {"", NULL, 0};
    if (arg_get(a, 0, "d", &sepv) && sepv.k != JV_UNDEF) SLM_TRY(to_str(c, nd, &sepv, &sep));
    int has_attr = arg_get(a, 1, "attribute", &attr) && attr.k != JV_NONE;
    sbuf b;
    memset(&b, 0, sizeof b);
    SLM_TRY(charge(c, nd, items->n));
    for (size_t i = 0; i < items->n; i++) {
        jv x = items->v[i];
        if (has_attr) SLM_TRY(attr_path(c, nd, &items->v[i], &attr, &x));
        jstr s;
        SLM_TRY(to_str(c, nd, &x, &s));
        if (i) SLM_TRY(sb_str(c, &b, sep));
        SLM_TRY(sb_str(c, &b, s));
    }
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

static slm_status filter_map(rctx *c, const node *nd, const jv *v, const cargs *a, jv *out) {
    jlist *items = NULL, *r = NULL;
    SLM_TRY(iter_list(c, nd, v, &items));
    SLM_TRY(new_list(c, items->n, &r));
    SLM_TRY(charge(c, nd, items->n));
    jv attr, def;
    if (arg_get(a, a->npos, "attribute", &attr)) {
        int has_def = arg_get(a, a->npos, "default", &def);
        for (size_t i = 0; i < items->n; i++) {
            SLM_TRY(attr_path(c, nd, &items->v[i], &attr, &r->v[i]));
            if (has_def && r->v[i].k == JV_UNDEF) r->v[i] = def;
        }
    } else {
        if (a->npos < 1)
            return rfail(c, nd, SLM_ERR_FORMAT, "map needs a filter name or attribute=");
        jstr fname;
        SLM_TRY(want_str(c, nd, &a->pos[0], "map", &fname));
        int fid = filter_id_by_name(fname);
        if (fid < 0)
            return rfail(c, nd, SLM_ERR_UNSUPPORTED, "unknown filter '%.*s'", (int)fname.n,
                         fname.p);
        cargs fa = *a;
        fa.pos = a->pos + 1;
        fa.npos = a->npos - 1;
        for (size_t i = 0; i < items->n; i++)
            SLM_TRY(apply_filter(c, nd, fid, &items->v[i], &fa, &r->v[i]));
    }
    *out = jv_list(r);
    return SLM_OK;
}

static slm_status filter_indent(rctx *c, const node *nd, const jv *v, const cargs *a, jv *out) {
    jstr s, ind = {"    ", NULL, 4};
    SLM_TRY(to_str(c, nd, v, &s));
    jv w, first = jv_bool(0), blank = jv_bool(0);
    if (arg_get(a, 0, "width", &w)) {
        if (w.k == JV_STR) {
            ind = w.u.s;
        } else {
            int64_t k;
            SLM_TRY(want_int(c, nd, &w, "indent", &k));
            if (k < 0 || k > 256) return rfail(c, nd, SLM_ERR_FORMAT, "indent width out of range");
            char *p = ralloc(c, (size_t)k + 1);
            if (!p) return oom(c);
            memset(p, ' ', (size_t)k);
            ind.p = p;
            ind.n = (size_t)k;
        }
    }
    arg_get(a, 1, "first", &first);
    arg_get(a, 2, "blank", &blank);
    sbuf b;
    memset(&b, 0, sizeof b);
    if (truthy(&first)) SLM_TRY(sb_str(c, &b, ind));
    size_t i = 0, line = 0;
    while (i < s.n) {
        size_t e = i;
        while (e < s.n && s.p[e] != '\n' && s.p[e] != '\r') e++;
        jstr ln = substr(s, i, e - i);
        if (line > 0) {
            SLM_TRY(sb_lit(c, &b, "\n", 0));
            if (ln.n > 0 || truthy(&blank)) SLM_TRY(sb_str(c, &b, ind));
        }
        SLM_TRY(sb_str(c, &b, ln));
        line++;
        if (e < s.n && s.p[e] == '\r' && e + 1 < s.n && s.p[e + 1] == '\n') e++;
        i = e + 1;
        SLM_TRY(charge(c, nd, 1));
    }
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

static slm_status parse_number(rctx *c, jstr s, int want_float, jv *out, int *ok) {
    jstr t = str_strip(s, NULL, 1, 1);
    char buf[64];
    *ok = 0;
    if (t.n == 0 || t.n >= sizeof buf) return SLM_OK;
    size_t w = 0;
    for (size_t i = 0; i < t.n; i++)
        if (t.p[i] != '_') buf[w++] = t.p[i];
    buf[w] = '\0';
    char *e;
    if (!want_float) {
        long long i = strtoll(buf, &e, 10);
        if (*e == '\0') {
            *out = jv_int(i);
            *ok = 1;
            return SLM_OK;
        }
    }
    double d = strtod(buf, &e);
    if (*e != '\0') return SLM_OK;
    (void)c;
    if (want_float)
        *out = jv_float(d);
    else if (isfinite(d) && d > -9.2e18 && d < 9.2e18)
        *out = jv_int((int64_t)d);
    else
        return SLM_OK;
    *ok = 1;
    return SLM_OK;
}

NOINLINE static slm_status apply_filter(rctx *c, const node *nd, int id, const jv *v,
                                        const cargs *a, jv *out) {
    jv x;
    jstr s;
    switch (id) {
    case F_SAFE:
        *out = *v;
        return SLM_OK;
    case F_DEFAULT: {
        jv def = jv_cstr(""), boolean = jv_bool(0);
        arg_get(a, 0, "default_value", &def);
        arg_get(a, 1, "boolean", &boolean);
        *out = (v->k == JV_UNDEF || (truthy(&boolean) && !truthy(v))) ? def : *v;
        return SLM_OK;
    }
    case F_LENGTH:
    case F_COUNT: {
        int64_t n = 0;
        SLM_TRY(length_of(c, nd, v, &n));
        *out = jv_int(n);
        return SLM_OK;
    }
    case F_STRING:
        SLM_TRY(to_str(c, nd, v, &s));
        *out = jv_str(s);
        return SLM_OK;
    case F_TRIM: {
        jv chars;
        jstr cs;
        int has = arg_get(a, 0, "chars", &chars) && chars.k != JV_NONE;
        if (has) SLM_TRY(want_str(c, nd, &chars, "trim", &cs));
        SLM_TRY(to_str(c, nd, v, &s));
        *out = jv_str(str_strip(s, has ? &cs : NULL, 1, 1));
        return SLM_OK;
    }
    case F_UPPER:
    case F_LOWER:
    case F_TITLE:
    case F_CAPITALIZE:
        SLM_TRY(to_str(c, nd, v, &s));
        return str_case(c, s,
                        id == F_UPPER   ? CASE_UPPER
                        : id == F_LOWER ? CASE_LOWER
                        : id == F_TITLE ? CASE_JTITLE
                                        : CASE_CAPITALIZE,
                        out);
    case F_FIRST:
    case F_LAST: {
        jlist *items = NULL;
        SLM_TRY(iter_list(c, nd, v, &items));
        jstr nm = {"first", NULL, 5};
        *out = items->n == 0 ? jv_undef_named(nm) : items->v[id == F_FIRST ? 0 : items->n - 1];
        return SLM_OK;
    }
    case F_JOIN:
        return filter_join(c, nd, v, a, out);
    case F_REPLACE: {
        jv o, n, cnt = jv_none();
        jstr os, ns;
        if (!arg_get(a, 0, "old", &o) || !arg_get(a, 1, "new", &n))
            return rfail(c, nd, SLM_ERR_FORMAT, "replace needs two arguments");
        SLM_TRY(to_str(c, nd, v, &s));
        SLM_TRY(to_str(c, nd, &o, &os));
        SLM_TRY(to_str(c, nd, &n, &ns));
        int64_t count = -1;
        if (arg_get(a, 2, "count", &cnt) && cnt.k != JV_NONE)
            SLM_TRY(want_int(c, nd, &cnt, "replace count", &count));
        return str_replace(c, nd, s, os, ns, count, out);
    }
    case F_TOJSON: {
        json_opts o = {-1, 0, 0};
        jv iv, ea, sk;
        if (arg_get(a, 0, "indent", &iv) && iv.k != JV_NONE) {
            int64_t k;
            SLM_TRY(want_int(c, nd, &iv, "tojson indent", &k));
            if (k < 0 || k > 64) return rfail(c, nd, SLM_ERR_FORMAT, "tojson indent out of range");
            o.indent = (int)k;
        }
        if (arg_get(a, 99, "ensure_ascii", &ea)) o.ensure_ascii = truthy(&ea);
        if (arg_get(a, 99, "sort_keys", &sk)) o.sort_keys = truthy(&sk);
        sbuf b;
        memset(&b, 0, sizeof b);
        SLM_TRY(json_into(c, nd, &b, v, &o, 0));
        *out = jv_str(sb_take(&b));
        return SLM_OK;
    }
    case F_LIST: {
        jlist *items = NULL, *r = NULL;
        SLM_TRY(iter_list(c, nd, v, &items));
        SLM_TRY(new_list(c, items->n, &r));
        if (items->n) memcpy(r->v, items->v, items->n * sizeof(jv));
        *out = jv_list(r);
        return SLM_OK;
    }
    case F_ITEMS:
    case F_DICTSORT: {
        if (v->k == JV_UNDEF) {
            jlist *r = NULL;
            SLM_TRY(new_list(c, 0, &r));
            *out = jv_list(r);
            return SLM_OK;
        }
        if (v->k != JV_DICT && v->k != JV_NS)
            return rfail(c, nd, SLM_ERR_FORMAT, "%s expects a mapping, got %s",
                         id == F_ITEMS ? "items" : "dictsort", type_name(v));
        const jdict *d = v->u.d;
        jlist *r = NULL;
        SLM_TRY(new_list(c, d->n, &r));
        for (size_t i = 0; i < d->n; i++) {
            jlist *pair = NULL;
            SLM_TRY(new_list(c, 2, &pair));
            pair->v[0] = jv_str(d->keys[i]);
            pair->v[1] = d->vals[i];
            pair->tuple = 1;
            r->v[i] = jv_list(pair);
        }
        if (id == F_ITEMS) {
            *out = jv_list(r);
            return SLM_OK;
        }
        jv cs = jv_bool(0), by = jv_cstr("key"), rev = jv_bool(0);
        arg_get(a, 0, "case_sensitive", &cs);
        arg_get(a, 1, "by", &by);
        arg_get(a, 2, "reverse", &rev);
        jv idx = jv_int(by.k == JV_STR && jstr_eq_c(by.u.s, "value") ? 1 : 0);
        return sort_list(c, nd, r, &idx, truthy(&rev), truthy(&cs), out);
    }
    case F_REVERSE: {
        if (v->k == JV_STR) {
            jlist *cs = NULL;
            SLM_TRY(str_chars(c, v->u.s, &cs));
            sbuf b;
            memset(&b, 0, sizeof b);
            for (size_t i = cs->n; i-- > 0;) SLM_TRY(sb_str(c, &b, cs->v[i].u.s));
            *out = jv_str(sb_take(&b));
            return SLM_OK;
        }
        jlist *items = NULL, *r = NULL;
        SLM_TRY(iter_list(c, nd, v, &items));
        SLM_TRY(new_list(c, items->n, &r));
        for (size_t i = 0; i < items->n; i++) r->v[i] = items->v[items->n - 1 - i];
        *out = jv_list(r);
        return SLM_OK;
    }
    case F_SELECT:
    case F_REJECT:
    case F_SELECTATTR:
    case F_REJECTATTR:
        return filter_select(c, nd, id, v, a, out);
    case F_MAP:
        return filter_map(c, nd, v, a, out);
    case F_INDENT:
        return filter_indent(c, nd, v, a, out);
    case F_ESCAPE: {
        SLM_TRY(to_str(c, nd, v, &s));
        sbuf b;
        memset(&b, 0, sizeof b);
        for (size_t i = 0; i < s.n; i++) {
            const char *rep = NULL;
            switch (s.p[i]) {
            case '&':
                rep = "&amp;";
                break;
            case '<':
                rep = "&lt;";
                break;
            case '>':
                rep = "&gt;";
                break;
            case '"':
                rep = "&#34;";
                break;
            case '\'':
                rep = "&#39;";
                break;
            default:
                break;
            }
            int ti = s.t && s.t[i];
            if (rep)
                SLM_TRY(sb_put(c, &b, rep, strlen(rep), NULL, ti));
            else
                SLM_TRY(sb_put(c, &b, s.p + i, 1, NULL, ti));
        }
        *out = jv_str(sb_take(&b));
        return SLM_OK;
    }
    case F_INT:
    case F_FLOAT: {
        jv def = id == F_INT ? jv_int(0) : jv_float(0.0);
        arg_get(a, 0, "default", &def);
        if (v->k == JV_INT || v->k == JV_BOOL) {
            *out = id == F_INT ? jv_int(num_i(v)) : jv_float((double)num_i(v));
        } else if (v->k == JV_FLOAT) {
            double d = v->u.f;
            if (id == F_FLOAT)
                *out = *v;
            else if (isfinite(d) && d > -9.2e18 && d < 9.2e18)
                *out = jv_int((int64_t)d);
            else
                *out = def;
        } else if (v->k == JV_STR) {
            int ok;
            SLM_TRY(parse_number(c, v->u.s, id == F_FLOAT, out, &ok));
            if (!ok) *out = def;
        } else {
            *out = def;
        }
        return SLM_OK;
    }
    case F_ABS:
        if (v->k == JV_INT) {
            if (v->u.i == INT64_MIN) return rfail(c, nd, SLM_ERR_UNSUPPORTED, "integer overflow");
            *out = jv_int(v->u.i < 0 ? -v->u.i : v->u.i);
        } else if (is_num(v)) {
            *out = v->k == JV_BOOL ? jv_int(v->u.b) : jv_float(fabs(v->u.f));
        } else {
            return rfail(c, nd, SLM_ERR_FORMAT, "bad operand type for abs(): %s", type_name(v));
        }
        return SLM_OK;
    case F_ROUND: {
        jv pv = jv_int(0), mv = jv_cstr("common");
        int64_t prec;
        arg_get(a, 0, "precision", &pv);
        arg_get(a, 1, "method", &mv);
        SLM_TRY(want_int(c, nd, &pv, "round precision", &prec));
        if (!is_num(v)) return rfail(c, nd, SLM_ERR_FORMAT, "round expects a number");
        if (prec < -15 || prec > 15)
            return rfail(c, nd, SLM_ERR_FORMAT, "round precision out of range");
        double d = num_f(v), p10 = pow(10.0, (double)prec);
        if (mv.k == JV_STR && jstr_eq_c(mv.u.s, "ceil"))
            d = ceil(d * p10) / p10;
        else if (mv.k == JV_STR && jstr_eq_c(mv.u.s, "floor"))
            d = floor(d * p10) / p10;
        else if (prec >= 0) {
            char buf[400];
            snprintf(buf, sizeof buf, "%.*f", (int)prec, d);
            d = strtod(buf, NULL);
        } else {
            d = nearbyint(d * p10) / p10;
        }
        *out = jv_float(d);
        return SLM_OK;
    }
    case F_SORT: {
        jv rev = jv_bool(0), cs = jv_bool(0), attr;
        arg_get(a, 0, "reverse", &rev);
        arg_get(a, 1, "case_sensitive", &cs);
        int has_attr = arg_get(a, 2, "attribute", &attr) && attr.k != JV_NONE;
        jlist *items = NULL;
        SLM_TRY(iter_list(c, nd, v, &items));
        return sort_list(c, nd, items, has_attr ? &attr : NULL, truthy(&rev), truthy(&cs), out);
    }
    case F_UNIQUE: {
        jlist *items = NULL, *r = NULL;
        size_t cap = 0;
        SLM_TRY(iter_list(c, nd, v, &items));
        SLM_TRY(new_list(c, 0, &r));
        SLM_TRY(charge(c, nd, (uint64_t)items->n * items->n / 2 + 1));
        jv cs = jv_bool(0);
        arg_get(a, 0, "case_sensitive", &cs);
        for (size_t i = 0; i < items->n; i++) {
            jv key = items->v[i];
            if (!truthy(&cs) && key.k == JV_STR) SLM_TRY(str_case(c, key.u.s, CASE_LOWER, &key));
            int dup = 0;
            for (size_t j = 0; j < r->n && !dup; j++) {
                jv other = r->v[j];
                if (!truthy(&cs) && other.k == JV_STR)
                    SLM_TRY(str_case(c, other.u.s, CASE_LOWER, &other));
                SLM_TRY(jv_eq(c, nd, &key, &other, 0, &dup));
            }
            if (!dup) SLM_TRY(list_push(c, r, &cap, items->v[i]));
        }
        *out = jv_list(r);
        return SLM_OK;
    }
    case F_MIN:
    case F_MAX: {
        jlist *items = NULL;
        SLM_TRY(iter_list(c, nd, v, &items));
        jstr nm = {"min", NULL, 3};
        *out = jv_undef_named(nm);
        SLM_TRY(charge(c, nd, items->n));
        for (size_t i = 0; i < items->n; i++) {
            int r = 0;
            if (i) SLM_TRY(jv_cmp(c, nd, &items->v[i], out, 0, &r));
            if (i == 0 || (id == F_MIN ? r < 0 : r > 0)) *out = items->v[i];
        }
        return SLM_OK;
    }
    case F_SUM: {
        jlist *items = NULL;
        jv attr, acc = jv_int(0);
        SLM_TRY(iter_list(c, nd, v, &items));
        int has_attr = arg_get(a, 0, "attribute", &attr) && attr.k != JV_NONE;
        arg_get(a, 1, "start", &acc);
        SLM_TRY(charge(c, nd, items->n));
        for (size_t i = 0; i < items->n; i++) {
            x = items->v[i];
            if (has_attr) SLM_TRY(attr_path(c, nd, &items->v[i], &attr, &x));
            SLM_TRY(arith(c, nd, '+', &acc, &x, &acc));
        }
        *out = acc;
        return SLM_OK;
    }
    case F_WORDCOUNT: {
        SLM_TRY(to_str(c, nd, v, &s));
        int64_t n = 0;
        int in = 0;
        for (size_t i = 0; i < s.n; i++) {
            unsigned char ch = (unsigned char)s.p[i];
            int w = is_alpha((char)ch) || (ch >= '0' && ch <= '9') || ch == '_' || ch >= 0x80;
            if (w && !in) n++;
            in = w;
        }
        *out = jv_int(n);
        return SLM_OK;
    }
    default:
        return rfail(c, nd, SLM_ERR_INTERNAL, "unknown filter id %d", id); /* unreachable */
    }
}

/* ---- methods ------------------------------------------------------------------------ */

static int starts_or_ends(jstr s, jstr p, int end) {
    if (p.n > s.n) return 0;
    return memcmp(s.p + (end ? s.n - p.n : 0), p.p, p.n) == 0;
}

/* str.format with {} / {0} / {name} fields (no format specs). */
static slm_status str_format(rctx *c, const node *nd, jstr s, const cargs *a, jv *out) {
    sbuf b;
    memset(&b, 0, sizeof b);
    size_t auto_idx = 0;
    for (size_t i = 0; i < s.n; i++) {
        char ch = s.p[i];
        if ((ch == '{' || ch == '}') && i + 1 < s.n && s.p[i + 1] == ch) {
            SLM_TRY(sb_str(c, &b, substr(s, i, 1)));
            i++;
            continue;
        }
        if (ch == '}') return rfail(c, nd, SLM_ERR_FORMAT, "format(): single '}'");
        if (ch != '{') {
            SLM_TRY(sb_str(c, &b, substr(s, i, 1)));
            continue;
        }
        const char *e = memchr(s.p + i, '}', s.n - i);
        if (!e) return rfail(c, nd, SLM_ERR_FORMAT, "format(): unclosed '{'");
        jstr field = {s.p + i + 1, NULL, (size_t)(e - s.p) - i - 1};
        if (memchr(field.p, ':', field.n) || memchr(field.p, '!', field.n))
            return rfail(c, nd, SLM_ERR_UNSUPPORTED, "format(): format specs are not supported");
        jv v;
        int ok;
        if (field.n == 0) {
            ok = arg_get(a, auto_idx++, NULL, &v);
        } else if (field.p[0] >= '0' && field.p[0] <= '9') {
            size_t k = 0;
            for (size_t q = 0; q < field.n && k < 1000000; q++)
                k = k * 10 + (size_t)(field.p[q] - '0');
            ok = arg_get(a, k, NULL, &v);
        } else {
            ok = 0;
            for (size_t k = 0; k < a->nkw && !ok; k++)
                if (a->kwn[k].n == field.n && memcmp(a->kwn[k].p, field.p, field.n) == 0)
                    v = a->kwv[k], ok = 1;
        }
        if (!ok)
            return rfail(c, nd, SLM_ERR_FORMAT, "format(): no argument for {%.*s}", (int)field.n,
                         field.p);
        jstr vs;
        SLM_TRY(to_str(c, nd, &v, &vs));
        SLM_TRY(sb_str(c, &b, vs));
        i = (size_t)(e - s.p);
    }
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

/* obj.name(args) for strings, dicts and loop; *found = 0 when there is no such method. */
NOINLINE static slm_status call_method(rctx *c, const node *nd, const jv *obj, jstr name,
                                       const cargs *a, int *found, jv *out) {
    *found = 1;
    jv x;
    if (obj->k == JV_STR) {
        jstr s = obj->u.s, p;
        SLM_TRY(charge_bytes(c, s.n));
        if (jstr_eq_c(name, "strip") || jstr_eq_c(name, "lstrip") || jstr_eq_c(name, "rstrip")) {
            int has = arg_get(a, 0, "chars", &x) && x.k != JV_NONE;
            if (has) SLM_TRY(want_str(c, nd, &x, "strip", &p));
            *out = jv_str(str_strip(s, has ? &p : NULL, name.p[0] != 'r', name.p[0] != 'l'));
            return SLM_OK;
        }
        if (jstr_eq_c(name, "split")) {
            jv ms;
            int64_t maxsplit = -1;
            int has = arg_get(a, 0, "sep", &x) && x.k != JV_NONE;
            if (has) SLM_TRY(want_str(c, nd, &x, "split", &p));
            if (arg_get(a, 1, "maxsplit", &ms)) SLM_TRY(want_int(c, nd, &ms, "split", &maxsplit));
            return str_split(c, nd, s, has ? &p : NULL, maxsplit, out);
        }
        if (jstr_eq_c(name, "startswith") || jstr_eq_c(name, "endswith")) {
            int end = name.p[0] == 'e';
            if (!arg_get(a, 0, NULL, &x))
                return rfail(c, nd, SLM_ERR_FORMAT, "%.*s needs an argument", (int)name.n, name.p);
            int r = 0;
            if (x.k == JV_LIST) {
                for (size_t i = 0; i < x.u.l->n && !r; i++) {
                    SLM_TRY(want_str(c, nd, &x.u.l->v[i], "startswith/endswith", &p));
                    r = starts_or_ends(s, p, end);
                }
            } else {
                SLM_TRY(want_str(c, nd, &x, "startswith/endswith", &p));
                r = starts_or_ends(s, p, end);
            }
            *out = jv_bool(r);
            return SLM_OK;
        }
        static const struct {
            const char *n;
            int mode;
        } cases[] = {{"upper", CASE_UPPER},
                     {"lower", CASE_LOWER},
                     {"title", CASE_TITLE},
                     {"capitalize", CASE_CAPITALIZE}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            if (jstr_eq_c(name, cases[i].n)) return str_case(c, s, cases[i].mode, out);
        if (jstr_eq_c(name, "replace")) {
            jv o, n, cnt;
            jstr os, ns;
            int64_t count = -1;
            if (!arg_get(a, 0, NULL, &o) || !arg_get(a, 1, NULL, &n))
                return rfail(c, nd, SLM_ERR_FORMAT, "replace needs two arguments");
            SLM_TRY(want_str(c, nd, &o, "replace", &os));
            SLM_TRY(want_str(c, nd, &n, "replace", &ns));
            if (arg_get(a, 2, "count", &cnt)) SLM_TRY(want_int(c, nd, &cnt, "replace", &count));
            return str_replace(c, nd, s, os, ns, count, out);
        }
        if (jstr_eq_c(name, "format")) return str_format(c, nd, s, a, out);
        if (jstr_eq_c(name, "find") || jstr_eq_c(name, "count") || jstr_eq_c(name, "index")) {
            if (!arg_get(a, 0, NULL, &x)) return rfail(c, nd, SLM_ERR_FORMAT, "needs an argument");
            SLM_TRY(want_str(c, nd, &x, "find/count", &p));
            if (name.p[0] == 'c') {
                int64_t n = 0;
                if (p.n == 0)
                    n = (int64_t)u8count(s.p, s.n) + 1;
                else
                    for (size_t i = 0; i + p.n <= s.n;) {
                        const char *f = find_bytes(s.p + i, s.n - i, p.p, p.n);
                        if (!f) break;
                        n++;
                        i = (size_t)(f - s.p) + p.n;
                    }
                *out = jv_int(n);
                return SLM_OK;
            }
            const char *f = find_bytes(s.p, s.n, p.p, p.n);
            if (!f && name.p[0] == 'i') return rfail(c, nd, SLM_ERR_FORMAT, "substring not found");
            *out = jv_int(f ? (int64_t)u8count(s.p, (size_t)(f - s.p)) : -1);
            return SLM_OK;
        }
        if (jstr_eq_c(name, "join")) {
            if (!arg_get(a, 0, NULL, &x))
                return rfail(c, nd, SLM_ERR_FORMAT, "join needs an argument");
            cargs ja;
            memset(&ja, 0, sizeof ja);
            ja.pos = (jv *)obj;
            ja.npos = 1;
            return filter_join(c, nd, &x, &ja, out);
        }
        if (jstr_eq_c(name, "splitlines")) {
            jv nl = jv_cstr("\n");
            SLM_TRY(str_split(c, nd, s, &nl.u.s, -1, out));
            if (out->u.l->n > 0 && out->u.l->v[out->u.l->n - 1].u.s.n == 0) out->u.l->n--;
            for (size_t i = 0; i < out->u.l->n; i++) {
                jstr *q = &out->u.l->v[i].u.s;
                if (q->n && q->p[q->n - 1] == '\r') q->n--;
            }
            return SLM_OK;
        }
        if (jstr_eq_c(name, "removeprefix") || jstr_eq_c(name, "removesuffix")) {
            int end = name.p[6] == 's';
            if (!arg_get(a, 0, NULL, &x)) return rfail(c, nd, SLM_ERR_FORMAT, "needs an argument");
            SLM_TRY(want_str(c, nd, &x, "removeprefix/removesuffix", &p));
            *out = starts_or_ends(s, p, end) ? jv_str(substr(s, end ? 0 : p.n, s.n - p.n)) : *obj;
            return SLM_OK;
        }
        static const char *const preds[] = {"isdigit", "isalpha", "isalnum",
                                            "isspace", "islower", "isupper"};
        for (size_t k = 0; k < sizeof preds / sizeof preds[0]; k++) {
            if (!jstr_eq_c(name, preds[k])) continue;
            if (k >= 4) {
                int r;
                SLM_TRY(apply_test(c, nd, k == 4 ? TS_LOWER : TS_UPPER, obj, a, &r));
                *out = jv_bool(r);
                return SLM_OK;
            }
            int r = s.n > 0;
            for (size_t i = 0; i < s.n && r; i++) {
                char ch = s.p[i];
                int dig = ch >= '0' && ch <= '9';
                r = k == 0   ? dig
                    : k == 1 ? is_alpha(ch)
                    : k == 2 ? (dig || is_alpha(ch))
                             : ascii_space(ch);
            }
            *out = jv_bool(r);
            return SLM_OK;
        }
    } else if (obj->k == JV_DICT || obj->k == JV_NS) {
        const jdict *d = obj->u.d;
        if (jstr_eq_c(name, "items")) return apply_filter(c, nd, F_ITEMS, obj, a, out);
        if (jstr_eq_c(name, "keys") || jstr_eq_c(name, "values")) {
            jlist *l = NULL;
            SLM_TRY(new_list(c, d->n, &l));
            for (size_t i = 0; i < d->n; i++)
                l->v[i] = name.p[0] == 'k' ? jv_str(d->keys[i]) : d->vals[i];
            *out = jv_list(l);
            return SLM_OK;
        }
        if (jstr_eq_c(name, "get")) {
            jv def = jv_none();
            if (!arg_get(a, 0, NULL, &x)) return rfail(c, nd, SLM_ERR_FORMAT, "get needs a key");
            arg_get(a, 1, "default", &def);
            size_t at;
            *out = x.k == JV_STR && dict_find(d, x.u.s, &at) ? d->vals[at] : def;
            return SLM_OK;
        }
    } else if (obj->k == JV_LOOP && jstr_eq_c(name, "cycle")) {
        if (a->npos == 0) return rfail(c, nd, SLM_ERR_FORMAT, "loop.cycle needs arguments");
        *out = a->pos[obj->u.loop->i % a->npos];
        return SLM_OK;
    }
    *found = 0;
    return SLM_OK;
}

/* ---- global functions and macros ------------------------------------------------- */

NOINLINE static slm_status call_macro(rctx *c, const node *nd, const node *m, const cargs *a,
                                      jv *out) {
    frame *f = NULL;
    SLM_TRY(frame_new(c, c->root, &f));
    if (a->npos > m->n_targets)
        return rfail(c, nd, SLM_ERR_FORMAT, "macro '%.*s' takes %zu arguments, got %zu",
                     (int)m->name.n, m->name.p, m->n_targets, a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        int ok = 0;
        for (size_t i = 0; i < m->n_targets && !ok; i++)
            ok = a->kwn[k].n == m->targets[i].n &&
                 memcmp(a->kwn[k].p, m->targets[i].p, a->kwn[k].n) == 0;
        if (!ok)
            return rfail(c, nd, SLM_ERR_FORMAT, "macro '%.*s' has no argument '%.*s'",
                         (int)m->name.n, m->name.p, (int)a->kwn[k].n, a->kwn[k].p);
    }
    for (size_t i = 0; i < m->n_targets; i++) {
        jv v = jv_undef_named(m->targets[i]);
        char nm[128];
        snprintf(nm, sizeof nm, "%.*s", (int)(m->targets[i].n < 127 ? m->targets[i].n : 127),
                 m->targets[i].p);
        if (!arg_get(a, i, nm, &v) && m->args.v[i]) SLM_TRY(eval(c, f, m->args.v[i], &v));
        SLM_TRY(frame_set(c, f, m->targets[i], v));
    }
    sbuf b, *saved = c->out;
    memset(&b, 0, sizeof b);
    c->out = &b;
    slm_status st = exec_body(c, f, &m->body);
    c->out = saved;
    SLM_TRY(st);
    *out = jv_str(sb_take(&b));
    return SLM_OK;
}

NOINLINE static slm_status call_func(rctx *c, const node *nd, int fn, const cargs *a, jv *out) {
    jv x;
    switch (fn) {
    case FN_RAISE: {
        jstr s = {"", NULL, 0};
        if (arg_get(a, 0, "message", &x)) SLM_TRY(to_str(c, nd, &x, &s));
        return rfail(c, nd, SLM_ERR_INVALID_ARG, "raise_exception: %.*s",
                     (int)(s.n > 600 ? 600 : s.n), s.p);
    }
    case FN_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->npos < 1 || a->npos > 3 || a->nkw)
            return rfail(c, nd, SLM_ERR_FORMAT, "range() takes 1 to 3 positional arguments");
        for (size_t i = 0; i < a->npos; i++) SLM_TRY(want_int(c, nd, &a->pos[i], "range()", &v[i]));
        int64_t start = a->npos == 1 ? 0 : v[0], stop = a->npos == 1 ? v[0] : v[1];
        int64_t step = a->npos == 3 ? v[2] : 1;
        if (step == 0) return rfail(c, nd, SLM_ERR_FORMAT, "range() step must not be zero");
        double cnt_d = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                                : ceil(((double)start - (double)stop) / (double)-step);
        if (cnt_d < 0) cnt_d = 0;
        if (cnt_d > JINJA_MAX_RANGE)
            return rfail(c, nd, SLM_ERR_FORMAT, "range() of %.0f items exceeds the limit of %d",
                         cnt_d, JINJA_MAX_RANGE);
        size_t cnt = (size_t)cnt_d;
        jlist *l = NULL;
        SLM_TRY(new_list(c, cnt, &l));
        for (size_t i = 0; i < cnt; i++) l->v[i] = jv_int(start + (int64_t)i * step);
        *out = jv_list(l);
        return SLM_OK;
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        jdict *d = NULL;
        SLM_TRY(new_dict(c, 0, &d));
        if (a->npos > 1) return rfail(c, nd, SLM_ERR_FORMAT, "too many positional arguments");
        if (a->npos == 1) {
            if (a->pos[0].k != JV_DICT && a->pos[0].k != JV_NS)
                return rfail(c, nd, SLM_ERR_FORMAT, "expected a mapping, got %s",
                             type_name(&a->pos[0]));
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                SLM_TRY(dict_set(c, d, a->pos[0].u.d->keys[i], a->pos[0].u.d->vals[i]));
        }
        for (size_t i = 0; i < a->nkw; i++) SLM_TRY(dict_set(c, d, a->kwn[i], a->kwv[i]));
        *out = jv_undef();
        out->k = fn == FN_DICT ? JV_DICT : JV_NS;
        out->u.d = d;
        return SLM_OK;
    }
    case FN_STRFTIME: {
        jstr fmt;
        if (!arg_get(a, 0, "format", &x))
            return rfail(c, nd, SLM_ERR_FORMAT, "strftime_now needs a format");
        SLM_TRY(want_str(c, nd, &x, "strftime_now", &fmt));
        char f[256], buf[512];
        if (fmt.n >= sizeof f) return rfail(c, nd, SLM_ERR_FORMAT, "strftime_now format too long");
        memcpy(f, fmt.p, fmt.n);
        f[fmt.n] = '\0';
        time_t now = time(NULL);
        struct tm tmv;
        if (!localtime_r(&now, &tmv)) return rfail(c, nd, SLM_ERR_INTERNAL, "localtime failed");
        size_t n = strftime(buf, sizeof buf, f, &tmv);
        return mkstr(c, buf, n, NULL, 0, out);
    }
    default:
        return rfail(c, nd, SLM_ERR_INTERNAL, "unknown function");
    }
}

NOINLINE static slm_status call_value(rctx *c, const node *nd, const jv *fn, const cargs *a,
                                      jv *out) {
    if (fn->k == JV_FUNC) return call_func(c, nd, fn->u.fn, a, out);
    if (fn->k == JV_MACRO) return call_macro(c, nd, fn->u.macro, a, out);
    if (fn->k == JV_UNDEF) return undef_err(c, nd, fn);
    return rfail(c, nd, SLM_ERR_FORMAT, "'%s' object is not callable", type_name(fn));
}

/* ---- expressions ------------------------------------------------------------------ */

static slm_status eval_inner(rctx *c, frame *f, const node *nd, jv *out) {
    jv a, b;
    switch (nd->kind) {
    case E_LIT:
        *out = nd->lit;
        return SLM_OK;
    case E_NAME: {
        if (frame_get(f, nd->name, out)) return SLM_OK;
        for (size_t i = 0; i < sizeof FUNCS / sizeof FUNCS[0]; i++)
            if (jstr_eq_c(nd->name, FUNCS[i])) {
                *out = jv_undef();
                out->k = JV_FUNC;
                out->u.fn = (int)i;
                return SLM_OK;
            }
        *out = jv_undef_named(nd->name);
        return SLM_OK;
    }
    case E_LIST: {
        jlist *l = NULL;
        SLM_TRY(new_list(c, nd->args.n, &l));
        for (size_t i = 0; i < nd->args.n; i++) SLM_TRY(eval(c, f, nd->args.v[i], &l->v[i]));
        l->tuple = nd->op;
        *out = jv_list(l);
        return SLM_OK;
    }
    case E_DICT: {
        jdict *d = NULL;
        SLM_TRY(new_dict(c, nd->args.n / 2, &d));
        for (size_t i = 0; i + 1 < nd->args.n; i += 2) {
            SLM_TRY(eval(c, f, nd->args.v[i], &a));
            if (a.k != JV_STR)
                return rfail(c, nd->args.v[i], SLM_ERR_UNSUPPORTED,
                             "dictionary keys must be strings, got %s", type_name(&a));
            SLM_TRY(eval(c, f, nd->args.v[i + 1], &b));
            SLM_TRY(dict_set(c, d, a.u.s, b));
        }
        *out = jv_undef();
        out->k = JV_DICT;
        out->u.d = d;
        return SLM_OK;
    }
    case E_ATTR:
        SLM_TRY(eval(c, f, nd->a, &a));
        return get_attr(c, nd, &a, nd->name, out);
    case E_ITEM:
        SLM_TRY(eval(c, f, nd->a, &a));
        SLM_TRY(eval(c, f, nd->b, &b));
        return get_item(c, nd, &a, &b, out);
    case E_SLICE: {
        jv parts[3];
        int has[3];
        SLM_TRY(eval(c, f, nd->a, &a));
        for (int i = 0; i < 3; i++) {
            has[i] = nd->args.v[i] != NULL;
            parts[i] = jv_none();
            if (has[i]) SLM_TRY(eval(c, f, nd->args.v[i], &parts[i]));
        }
        return do_slice(c, nd, &a, parts, has, out);
    }
    case E_NEG:
    case E_POS:
        SLM_TRY(eval(c, f, nd->a, &a));
        if (a.k == JV_UNDEF) return undef_err(c, nd, &a);
        if (!is_num(&a))
            return rfail(c, nd, SLM_ERR_FORMAT, "bad operand type for unary %c: %s",
                         nd->kind == E_NEG ? '-' : '+', type_name(&a));
        if (nd->kind == E_POS)
            *out = a.k == JV_BOOL ? jv_int(a.u.b) : a;
        else if (a.k == JV_FLOAT)
            *out = jv_float(-a.u.f);
        else if (num_i(&a) == INT64_MIN)
            return rfail(c, nd, SLM_ERR_UNSUPPORTED, "integer overflow");
        else
            *out = jv_int(-num_i(&a));
        return SLM_OK;
    case E_NOT:
        SLM_TRY(eval(c, f, nd->a, &a));
        *out = jv_bool(!truthy(&a));
        return SLM_OK;
    case E_AND:
    case E_OR:
        SLM_TRY(eval(c, f, nd->a, &a));
        if (truthy(&a) == (nd->kind == E_OR)) {
            *out = a;
            return SLM_OK;
        }
        return eval(c, f, nd->b, out);
    case E_BIN:
        SLM_TRY(eval(c, f, nd->a, &a));
        SLM_TRY(eval(c, f, nd->b, &b));
        return arith(c, nd, nd->op, &a, &b, out);
    case E_CONCAT: {
        sbuf sb;
        memset(&sb, 0, sizeof sb);
        for (size_t i = 0; i < nd->args.n; i++) {
            jstr s;
            SLM_TRY(eval(c, f, nd->args.v[i], &a));
            SLM_TRY(to_str(c, nd, &a, &s));
            SLM_TRY(sb_str(c, &sb, s));
        }
        *out = jv_str(sb_take(&sb));
        return SLM_OK;
    }
    case E_CMP: {
        SLM_TRY(eval(c, f, nd->a, &a));
        int res = 1;
        for (size_t i = 0; i < nd->args.n && res; i++) {
            SLM_TRY(eval(c, f, nd->args.v[i], &b));
            int op = nd->ops[i], r;
            switch (op) {
            case OP_EQ:
            case OP_NE:
                SLM_TRY(jv_eq(c, nd, &a, &b, 0, &r));
                res = op == OP_EQ ? r : !r;
                break;
            case OP_IN:
            case OP_NOTIN:
                SLM_TRY(contains(c, nd, &a, &b, &r));
                res = op == OP_IN ? r : !r;
                break;
            default:
                SLM_TRY(jv_cmp(c, nd, &a, &b, 0, &r));
                res = op == '<' ? r < 0 : op == '>' ? r > 0 : op == OP_LE ? r <= 0 : r >= 0;
            }
            a = b;
        }
        *out = jv_bool(res);
        return SLM_OK;
    }
    case E_TEST: {
        cargs ca;
        int r;
        SLM_TRY(eval(c, f, nd->a, &a));
        SLM_TRY(eval_args(c, f, nd, 0, &ca));
        SLM_TRY(apply_test(c, nd, nd->fid, &a, &ca, &r));
        *out = jv_bool(r);
        return SLM_OK;
    }
    case E_FILTER: {
        cargs ca;
        SLM_TRY(eval(c, f, nd->a, &a));
        SLM_TRY(eval_args(c, f, nd, 0, &ca));
        return apply_filter(c, nd, nd->fid, &a, &ca, out);
    }
    case E_CALL: {
        cargs ca;
        if (nd->a->kind == E_ATTR) {
            jv obj;
            int found;
            SLM_TRY(eval(c, f, nd->a->a, &obj));
            if (obj.k == JV_UNDEF) return undef_err(c, nd, &obj);
            SLM_TRY(eval_args(c, f, nd, 0, &ca));
            SLM_TRY(call_method(c, nd, &obj, nd->a->name, &ca, &found, out));
            if (found) return SLM_OK;
            SLM_TRY(get_attr(c, nd, &obj, nd->a->name, &a));
            if (a.k == JV_UNDEF)
                return rfail(c, nd, SLM_ERR_FORMAT, "'%s' object has no method '%.*s'",
                             type_name(&obj), (int)nd->a->name.n, nd->a->name.p);
            return call_value(c, nd, &a, &ca, out);
        }
        SLM_TRY(eval(c, f, nd->a, &a));
        SLM_TRY(eval_args(c, f, nd, 0, &ca));
        return call_value(c, nd, &a, &ca, out);
    }
    case E_COND:
        SLM_TRY(eval(c, f, nd->a, &a));
        if (truthy(&a)) return eval(c, f, nd->b, out);
        if (nd->c) return eval(c, f, nd->c, out);
        *out = jv_undef();
        return SLM_OK;
    default:
        return rfail(c, nd, SLM_ERR_INTERNAL, "bad expression node %d", nd->kind);
    }
}

static slm_status eval(rctx *c, frame *f, const node *nd, jv *out) {
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        return rfail(c, nd, SLM_ERR_FORMAT, "expression nested deeper than %d levels",
                     JINJA_MAX_EVAL_DEPTH);
    SLM_TRY(charge(c, nd, 1));
    slm_status st = eval_inner(c, f, nd, out);
    c->depth--;
    return st;
}

/* ---- statements ------------------------------------------------------------------- */

NOINLINE static slm_status bind_targets(rctx *c, const node *nd, frame *f, const jv *v) {
    if (nd->n_targets == 1) return frame_set(c, f, nd->targets[0], *v);
    jlist *l = NULL;
    if (v->k == JV_LIST)
        l = v->u.l;
    else if (v->k == JV_STR)
        SLM_TRY(str_chars(c, v->u.s, &l));
    else
        return rfail(c, nd, SLM_ERR_FORMAT, "cannot unpack a %s into %zu names", type_name(v),
                     nd->n_targets);
    if (l->n != nd->n_targets)
        return rfail(c, nd, SLM_ERR_FORMAT, "cannot unpack %zu values into %zu names", l->n,
                     nd->n_targets);
    for (size_t i = 0; i < l->n; i++) SLM_TRY(frame_set(c, f, nd->targets[i], l->v[i]));
    return SLM_OK;
}

static const jstr LOOP_NAME = {"loop", NULL, 4};

NOINLINE static slm_status exec_for(rctx *c, frame *f, const node *nd) {
    jv it;
    jlist *items = NULL;
    SLM_TRY(eval(c, f, nd->a, &it));
    SLM_TRY(iter_list(c, nd->a, &it, &items));
    frame *lf = NULL;
    SLM_TRY(frame_new(c, f, &lf));
    if (nd->b) {
        jlist *kept = NULL;
        size_t cap = 0;
        SLM_TRY(new_list(c, 0, &kept));
        for (size_t i = 0; i < items->n; i++) {
            jv cond;
            SLM_TRY(charge(c, nd, 1));
            lf->n = 0;
            SLM_TRY(bind_targets(c, nd, lf, &items->v[i]));
            SLM_TRY(eval(c, lf, nd->b, &cond));
            if (truthy(&cond)) SLM_TRY(list_push(c, kept, &cap, items->v[i]));
        }
        items = kept;
    }
    if (items->n == 0) return exec_body(c, f, &nd->body2);
    jloop *L = ralloc(c, sizeof *L);
    if (!L) return oom(c);
    L->items = items;
    jv lv = jv_undef();
    lv.k = JV_LOOP;
    lv.u.loop = L;
    for (size_t i = 0; i < items->n; i++) {
        if (++c->iters > JINJA_MAX_LOOP_ITERATIONS)
            return rfail(c, nd, SLM_ERR_FORMAT, "more than %u loop iterations (limit)",
                         JINJA_MAX_LOOP_ITERATIONS);
        L->i = i;
        lf->n = 0;
        SLM_TRY(frame_set(c, lf, LOOP_NAME, lv));
        SLM_TRY(bind_targets(c, nd, lf, &items->v[i]));
        SLM_TRY(exec_body(c, lf, &nd->body));
        if (c->flow == FLOW_BREAK) {
            c->flow = FLOW_NONE;
            break;
        }
        c->flow = FLOW_NONE;
    }
    return SLM_OK;
}

static slm_status exec_stmt(rctx *c, frame *f, const node *nd) {
    jv v;
    SLM_TRY(charge(c, nd, 1));
    switch (nd->kind) {
    case N_TEXT:
        return sb_str(c, c->out, nd->lit.u.s);
    case N_OUT: {
        jstr s;
        SLM_TRY(eval(c, f, nd->a, &v));
        SLM_TRY(to_str(c, nd, &v, &s));
        return sb_str(c, c->out, s);
    }
    case N_IF:
        SLM_TRY(eval(c, f, nd->a, &v));
        return exec_body(c, f, truthy(&v) ? &nd->body : &nd->body2);
    case N_FOR:
        return exec_for(c, f, nd);
    case N_SET:
        SLM_TRY(eval(c, f, nd->a, &v));
        return bind_targets(c, nd, f, &v);
    case N_SET_ATTR: {
        jv ns;
        if (!frame_get(f, nd->name, &ns) || ns.k != JV_NS)
            return rfail(c, nd, SLM_ERR_FORMAT,
                         "cannot assign attribute '%.*s' on '%.*s': not a namespace()",
                         (int)nd->name2.n, nd->name2.p, (int)nd->name.n, nd->name.p);
        SLM_TRY(eval(c, f, nd->a, &v));
        return dict_set(c, ns.u.d, nd->name2, v);
    }
    case N_SET_BLOCK: {
        sbuf b, *saved = c->out;
        memset(&b, 0, sizeof b);
        c->out = &b;
        slm_status st = exec_body(c, f, &nd->body);
        c->out = saved;
        SLM_TRY(st);
        return frame_set(c, f, nd->targets[0], jv_str(sb_take(&b)));
    }
    case N_MACRO:
        v = jv_undef();
        v.k = JV_MACRO;
        v.u.macro = nd;
        return frame_set(c, f, nd->name, v);
    case N_BREAK:
        c->flow = FLOW_BREAK;
        return SLM_OK;
    case N_CONTINUE:
        c->flow = FLOW_CONTINUE;
        return SLM_OK;
    case N_BLOCK:
        return exec_body(c, f, &nd->body);
    default:
        return rfail(c, nd, SLM_ERR_INTERNAL, "bad statement node %d", nd->kind);
    }
}

static slm_status exec_body(rctx *c, frame *f, const nlist *body) {
    if (++c->depth > JINJA_MAX_EVAL_DEPTH)
        return rfail(c, body->n ? body->v[0] : NULL, SLM_ERR_FORMAT,
                     "blocks or macro calls nested deeper than %d levels", JINJA_MAX_EVAL_DEPTH);
    for (size_t i = 0; i < body->n && c->flow == FLOW_NONE; i++) {
        slm_status st = exec_stmt(c, f, body->v[i]);
        if (st != SLM_OK) return st;
    }
    c->depth--;
    return SLM_OK;
}

/* ======================================================================== */
/* Variables from JSON, and the render entry point                          */
/* ======================================================================== */

static int is_tainted_item(const rctx *c, const cJSON *item) {
    for (size_t i = 0; i < c->n_tainted; i++)
        if (c->tainted[i] == item) return 1;
    return 0;
}

static slm_status from_json(rctx *c, const cJSON *j, int taint, int depth, jv *out) {
    if (depth > JINJA_MAX_INPUT_DEPTH)
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: variables nested deeper than %d levels",
                        c->t->name, JINJA_MAX_INPUT_DEPTH);
    taint = taint || is_tainted_item(c, j);
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring ? j->valuestring : "";
        size_t n = strlen(s);
        if (!taint) {
            jstr js = {s, NULL, n};
            *out = jv_str(js);
            return SLM_OK;
        }
        uint8_t *t = ralloc(c, n ? n : 1);
        if (!t) return oom(c);
        memset(t, 1, n);
        jstr js = {s, t, n};
        *out = jv_str(js);
        return SLM_OK;
    }
    if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            *out = jv_int((int64_t)d);
        else
            *out = jv_float(d);
        return SLM_OK;
    }
    if (cJSON_IsBool(j)) {
        *out = jv_bool(cJSON_IsTrue(j));
        return SLM_OK;
    }
    if (cJSON_IsNull(j)) {
        *out = jv_none();
        return SLM_OK;
    }
    if (cJSON_IsArray(j)) {
        size_t n = (size_t)cJSON_GetArraySize(j), i = 0;
        jlist *l = NULL;
        SLM_TRY(new_list(c, n, &l));
        for (const cJSON *e = j->child; e && i < n; e = e->next)
            SLM_TRY(from_json(c, e, taint, depth + 1, &l->v[i++]));
        l->n = i;
        *out = jv_list(l);
        return SLM_OK;
    }
    if (cJSON_IsObject(j)) {
        jdict *d = NULL;
        SLM_TRY(new_dict(c, (size_t)cJSON_GetArraySize(j), &d));
        for (const cJSON *e = j->child; e; e = e->next) {
            jv v;
            SLM_TRY(from_json(c, e, taint, depth + 1, &v));
            const char *k = e->string ? e->string : "";
            jstr key = {k, NULL, strlen(k)};
            if (taint) {
                uint8_t *t = ralloc(c, key.n ? key.n : 1);
                if (!t) return oom(c);
                memset(t, 1, key.n);
                key.t = t;
            }
            SLM_TRY(dict_set(c, d, key, v));
        }
        *out = jv_undef();
        out->k = JV_DICT;
        out->u.d = d;
        return SLM_OK;
    }
    *out = jv_undef();
    return SLM_OK;
}

void jinja_output_free(jinja_output *o) {
    if (!o) return;
    free(o->text);
    free(o->tainted);
    memset(o, 0, sizeof *o);
}

slm_status jinja_render(const jinja_template *t, const cJSON *vars, const cJSON *const *tainted,
                        size_t n_tainted, jinja_output *out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "jinja_render: NULL output");
    memset(out, 0, sizeof *out);
    if (!t) return slm_fail(SLM_ERR_INVALID_ARG, "jinja_render: NULL template");
    if (vars && !cJSON_IsObject(vars))
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: variables must be a JSON object", t->name);
    rctx c;
    memset(&c, 0, sizeof c);
    c.a.limit = JINJA_MAX_MEMORY;
    c.t = t;
    c.tainted = tainted;
    c.n_tainted = tainted ? n_tainted : 0;
    slm_status st = frame_new(&c, NULL, &c.root);
    for (const cJSON *e = vars ? vars->child : NULL; st == SLM_OK && e; e = e->next) {
        jv v;
        st = from_json(&c, e, 0, 1, &v);
        if (st == SLM_OK) {
            const char *k = e->string ? e->string : "";
            jstr key = {k, NULL, strlen(k)};
            st = frame_set(&c, c.root, key, v);
        }
    }
    sbuf b;
    memset(&b, 0, sizeof b);
    c.out = &b;
    if (st == SLM_OK) st = exec_body(&c, c.root, &t->body);
    if (st == SLM_OK) {
        out->text = malloc(b.n + 1);
        out->tainted = malloc(b.n ? b.n : 1);
        if (!out->text || !out->tainted) {
            jinja_output_free(out);
            st = slm_fail(SLM_ERR_NOMEM, "%s: out of memory", t->name);
        } else {
            if (b.n) {
                memcpy(out->text, b.p, b.n);
                memcpy(out->tainted, b.t, b.n);
            } else {
                out->tainted[0] = 0;
            }
            out->text[b.n] = '\0';
            out->len = b.n;
        }
    }
    arena_free(&c.a);
    return st;
}
