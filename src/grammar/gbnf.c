/* GBNF parser (llama.cpp's grammar syntax) and compiler to byte-level rules.
 *
 *   rule   ::= name "::=" alternatives      (a rule ends at a newline unless
 *   alts   ::= seq ("|" seq)*                the next line starts with "|" or
 *   seq    ::= (item postfix*)*              the newline is inside parentheses)
 *   item   ::= "literal" | [class] | [^class] | . | name | ( alts )
 *   postfix::= * | + | ? | {m} | {m,} | {m,n}
 * Comments run from # to the end of the line. Repetitions become helper
 * rules (x* -> R ::= x R | ""), right-recursive so that the matcher's stacks
 * do not grow with the number of repetitions. Left recursion is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "grammar/grammar_internal.h"
#include "tokenizer/unicode.h"

#define MAX_REPEAT 10000
#define MAX_ELEMS (1 << 24)
#define MAX_NESTING 256

typedef struct ivec {
    int32_t *v;
    int32_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap) {
        int32_t nc = a->cap ? a->cap * 2 : 8;
        int32_t *nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

typedef struct brule {
    char *name;
    int defined;
    int ref_line, ref_col; /* first reference, for "undefined rule" */
    ivec *alts;
    int32_t n_alts, cap_alts;
} brule;

typedef struct parser {
    const char *s, *end, *p;
    brule *rules;
    int32_t n_rules, cap_rules;
    gbyteset *sets;
    int32_t n_sets, cap_sets;
    int64_t n_elems;  /* running total, for the size limit */
    int32_t any_rule; /* rule for ".", -1 until needed */
    int depth;
} parser;

static void where(const parser *ps, const char *at, int *line, int *col) {
    int l = 1, c = 1;
    for (const char *q = ps->s; q < at && q < ps->end; q++) {
        if (*q == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static slm_status perr(const parser *ps, const char *at, const char *msg) {
    int l, c;
    where(ps, at, &l, &c);
    return slm_fail(SLM_ERR_CONFIG, "grammar: line %d col %d: %s", l, c, msg);
}

static slm_status nomem(void) {
    return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
}

static int32_t new_rule(parser *ps, const char *name, size_t n) {
    if (ps->n_rules == ps->cap_rules) {
        int32_t nc = ps->cap_rules ? ps->cap_rules * 2 : 16;
        brule *nr = realloc(ps->rules, (size_t)nc * sizeof *nr);
        if (!nr) return -1;
        ps->rules = nr;
        ps->cap_rules = nc;
    }
    brule *r = &ps->rules[ps->n_rules];
    memset(r, 0, sizeof *r);
    r->name = slm_strndup(name, n);
    if (!r->name) return -1;
    return ps->n_rules++;
}

/* A helper rule named after its parent: "parent-N". */
static int32_t helper_rule(parser *ps, int32_t parent) {
    char buf[160];
    snprintf(buf, sizeof buf, "%.120s-%d", parent >= 0 ? ps->rules[parent].name : "anon",
             (int)ps->n_rules);
    int32_t r = new_rule(ps, buf, strlen(buf));
    if (r >= 0) ps->rules[r].defined = 1;
    return r;
}

static int32_t find_rule(parser *ps, const char *name, size_t n) {
    for (int32_t i = 0; i < ps->n_rules; i++)
        if (strlen(ps->rules[i].name) == n && !memcmp(ps->rules[i].name, name, n)) return i;
    return -1;
}

/* Adds an empty alternative to rule r and returns it. */
static ivec *add_alt(parser *ps, int32_t r) {
    brule *b = &ps->rules[r];
    if (b->n_alts == b->cap_alts) {
        int32_t nc = b->cap_alts ? b->cap_alts * 2 : 4;
        ivec *na = realloc(b->alts, (size_t)nc * sizeof *na);
        if (!na) return NULL;
        b->alts = na;
        b->cap_alts = nc;
    }
    ivec *a = &b->alts[b->n_alts++];
    memset(a, 0, sizeof *a);
    return a;
}

static int32_t add_set(parser *ps, const gbyteset *s) {
    if (ps->n_sets == ps->cap_sets) {
        int32_t nc = ps->cap_sets ? ps->cap_sets * 2 : 64;
        gbyteset *ns = realloc(ps->sets, (size_t)nc * sizeof *ns);
        if (!ns) return -1;
        ps->sets = ns;
        ps->cap_sets = nc;
    }
    ps->sets[ps->n_sets] = *s;
    return ps->n_sets++;
}

static slm_status emit(parser *ps, ivec *out, int32_t e) {
    if (++ps->n_elems > MAX_ELEMS)
        return slm_fail(SLM_ERR_CONFIG, "grammar: more than %d elements after expansion",
                        MAX_ELEMS);
    return ivec_push(out, e) ? nomem() : SLM_OK;
}

static slm_status emit_byte(parser *ps, ivec *out, unsigned b) {
    gbyteset s;
    memset(&s, 0, sizeof s);
    gbs_add(&s, b);
    int32_t i = add_set(ps, &s);
    if (i < 0) return nomem();
    return emit(ps, out, i);
}

/* ---------------------------------------------------------------- lexing */

static int is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Skips blanks and comments; newlines too when `newlines`. */
static void skip_space(parser *ps, int newlines) {
    while (ps->p < ps->end) {
        char c = *ps->p;
        if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
            ps->p++;
        } else if (c == '#') {
            while (ps->p < ps->end && *ps->p != '\n') ps->p++;
        } else {
            break;
        }
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one UTF-8 character (invalid bytes stand for themselves). */
static uint32_t utf8_next(parser *ps) {
    uint32_t cp;
    ps->p += tok_utf8_next_lax((const uint8_t *)ps->p, (size_t)(ps->end - ps->p), &cp);
    return cp;
}

/* One character of a literal or class, escapes decoded, as a code point. */
static slm_status read_char(parser *ps, uint32_t *cp) {
    if (ps->p >= ps->end) return perr(ps, ps->p, "unexpected end of text");
    if (*ps->p != '\\') {
        *cp = utf8_next(ps);
        return SLM_OK;
    }
    const char *at = ps->p;
    ps->p++;
    if (ps->p >= ps->end) return perr(ps, at, "unfinished escape");
    char c = *ps->p++;
    int nhex = 0;
    switch (c) {
    case 'n':
        *cp = '\n';
        return SLM_OK;
    case 'r':
        *cp = '\r';
        return SLM_OK;
    case 't':
        *cp = '\t';
        return SLM_OK;
    case '0':
        *cp = 0;
        return SLM_OK;
    case '\\':
    case '"':
    case '\'':
    case '[':
    case ']':
    case '-':
    case '^':
    case '/':
    case '.':
        *cp = (unsigned char)c;
        return SLM_OK;
    case 'x':
        nhex = 2;
        break;
    case 'u':
        nhex = 4;
        break;
    case 'U':
        nhex = 8;
        break;
    default:
        return perr(ps, at, "unknown escape (expected \\n \\r \\t \\\\ \\\" \\xHH \\uHHHH ...)");
    }
    uint32_t v = 0;
    for (int i = 0; i < nhex; i++) {
        int h = ps->p < ps->end ? hexval(*ps->p) : -1;
        if (h < 0) return perr(ps, at, "expected hexadecimal digits in the escape");
        v = v * 16 + (uint32_t)h;
        ps->p++;
    }
    if (v > 0x10FFFF) return perr(ps, at, "code point beyond U+10FFFF");
    *cp = v;
    return SLM_OK;
}

static int utf8_encode(uint32_t cp, unsigned char *o) {
    return (int)tok_utf8_encode(cp, (char *)o);
}

/* ------------------------------------------------- classes -> UTF-8 bytes */

typedef struct cprange {
    uint32_t lo, hi;
} cprange;

typedef struct cpset {
    cprange *r;
    int32_t n, cap;
} cpset;

static int cpset_add(cpset *s, uint32_t lo, uint32_t hi) {
    if (s->n == s->cap) {
        int32_t nc = s->cap ? s->cap * 2 : 8;
        cprange *nr = realloc(s->r, (size_t)nc * sizeof *nr);
        if (!nr) return -1;
        s->r = nr;
        s->cap = nc;
    }
    s->r[s->n].lo = lo;
    s->r[s->n].hi = hi;
    s->n++;
    return 0;
}

static int cpr_cmp(const void *a, const void *b) {
    const cprange *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts and merges; negates when asked; removes surrogates. Result in `out`. */
static int cpset_normalize(const cpset *in, int negate, cpset *out) {
    cprange *tmp = malloc(((size_t)in->n + 1) * sizeof *tmp);
    if (!tmp) return -1;
    memcpy(tmp, in->r, (size_t)in->n * sizeof *tmp);
    qsort(tmp, (size_t)in->n, sizeof *tmp, cpr_cmp);
    cpset merged = {0};
    for (int32_t i = 0; i < in->n; i++) {
        if (merged.n && tmp[i].lo <= merged.r[merged.n - 1].hi + 1) {
            if (tmp[i].hi > merged.r[merged.n - 1].hi) merged.r[merged.n - 1].hi = tmp[i].hi;
        } else if (cpset_add(&merged, tmp[i].lo, tmp[i].hi)) {
            free(tmp);
            free(merged.r);
            return -1;
        }
    }
    free(tmp);
    cpset neg = {0};
    if (negate) {
        uint32_t next = 0;
        int fail = 0;
        for (int32_t i = 0; i < merged.n; i++) {
            if (merged.r[i].lo > next) fail |= cpset_add(&neg, next, merged.r[i].lo - 1);
            next = merged.r[i].hi + 1;
        }
        if (next <= 0x10FFFF) fail |= cpset_add(&neg, next, 0x10FFFF);
        free(merged.r);
        if (fail) {
            free(neg.r);
            return -1;
        }
        merged = neg;
    }
    memset(out, 0, sizeof *out);
    for (int32_t i = 0; i < merged.n; i++) {
        uint32_t lo = merged.r[i].lo, hi = merged.r[i].hi > 0x10FFFF ? 0x10FFFF : merged.r[i].hi;
        if (lo > hi) continue;
        int fail = 0;
        if (lo < 0xD800 && hi > 0xDFFF) {
            fail |= cpset_add(out, lo, 0xD7FF);
            fail |= cpset_add(out, 0xE000, hi);
        } else if (lo >= 0xD800 && hi <= 0xDFFF) {
            continue;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            fail |= cpset_add(out, 0xE000, hi);
        } else if (hi >= 0xD800 && hi <= 0xDFFF) {
            fail |= cpset_add(out, lo, 0xD7FF);
        } else {
            fail |= cpset_add(out, lo, hi);
        }
        if (fail) {
            free(merged.r);
            return -1;
        }
    }
    free(merged.r);
    return 0;
}

typedef struct classbuild {
    parser *ps;
    gbyteset single;
    int has_single;
    int32_t rule; /* rule for multi-byte sequences, -1 until needed */
    int32_t parent;
    slm_status st;
} classbuild;

/* One range of code points whose UTF-8 forms have equal length and differ
 * only in a suffix of full continuation ranges: a sequence of byte ranges. */
static void class_seq(classbuild *cb, uint32_t lo, uint32_t hi) {
    unsigned char a[4], b[4];
    int n = utf8_encode(lo, a);
    utf8_encode(hi, b);
    if (n == 1) {
        for (unsigned x = a[0]; x <= b[0]; x++) gbs_add(&cb->single, x);
        cb->has_single = 1;
        return;
    }
    parser *ps = cb->ps;
    if (cb->rule < 0) {
        cb->rule = helper_rule(ps, cb->parent);
        if (cb->rule < 0) {
            cb->st = nomem();
            return;
        }
    }
    ivec *alt = add_alt(ps, cb->rule);
    if (!alt) {
        cb->st = nomem();
        return;
    }
    for (int i = 0; i < n && cb->st == SLM_OK; i++) {
        gbyteset s;
        memset(&s, 0, sizeof s);
        for (unsigned x = a[i]; x <= b[i]; x++) gbs_add(&s, x);
        int32_t si = add_set(ps, &s);
        if (si < 0)
            cb->st = nomem();
        else
            cb->st = emit(ps, alt, si);
    }
}

/* Splits [lo, hi] into ranges class_seq can express. */
static void class_split(classbuild *cb, uint32_t lo, uint32_t hi) {
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++) {
        if (lo <= bounds[i] && hi > bounds[i]) {
            class_split(cb, lo, bounds[i]);
            class_split(cb, bounds[i] + 1, hi);
            return;
        }
    }
    if (hi < 0x80) {
        class_seq(cb, lo, hi);
        return;
    }
    int n = hi < 0x800 ? 2 : hi < 0x10000 ? 3 : 4;
    for (int i = 1; i < n; i++) {
        uint32_t m = ((uint32_t)1 << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                class_split(cb, lo, lo | m);
                class_split(cb, (lo | m) + 1, hi);
                return;
            }
            if ((hi & m) != m) {
                class_split(cb, lo, (hi & ~m) - 1);
                class_split(cb, hi & ~m, hi);
                return;
            }
        }
    }
    class_seq(cb, lo, hi);
}

/* Emits the element for a set of code points (a byte set, or a rule). */
static slm_status emit_class(parser *ps, ivec *out, const cpset *raw, int negate, int32_t parent) {
    cpset cs;
    if (cpset_normalize(raw, negate, &cs)) return nomem();
    if (cs.n == 0) {
        free(cs.r);
        return slm_fail(SLM_ERR_CONFIG, "grammar: a character class matches nothing");
    }
    classbuild cb;
    memset(&cb, 0, sizeof cb);
    cb.ps = ps;
    cb.rule = -1;
    cb.parent = parent;
    for (int32_t i = 0; i < cs.n && cb.st == SLM_OK; i++) class_split(&cb, cs.r[i].lo, cs.r[i].hi);
    free(cs.r);
    SLM_TRY(cb.st);
    int32_t si = -1;
    if (cb.has_single) {
        si = add_set(ps, &cb.single);
        if (si < 0) return nomem();
    }
    if (cb.rule < 0) return emit(ps, out, si);
    if (si >= 0) {
        ivec *alt = add_alt(ps, cb.rule);
        if (!alt) return nomem();
        SLM_TRY(emit(ps, alt, si));
    }
    return emit(ps, out, G_REF(cb.rule));
}

/* ------------------------------------------------------------- parsing */

static slm_status parse_alternates(parser *ps, int32_t rule, int nested);

/* Makes the elements out[from..] one element (wrapping them in a rule). */
static slm_status unit_of(parser *ps, ivec *out, int32_t from, int32_t parent, int32_t *unit) {
    if (out->n - from == 1) {
        *unit = out->v[from];
        out->n = from;
        return SLM_OK;
    }
    int32_t r = helper_rule(ps, parent);
    if (r < 0) return nomem();
    ivec *alt = add_alt(ps, r);
    if (!alt) return nomem();
    for (int32_t i = from; i < out->n; i++) SLM_TRY(emit(ps, alt, out->v[i]));
    out->n = from;
    *unit = G_REF(r);
    return SLM_OK;
}

/* R ::= u R | "" */
static slm_status star_rule(parser *ps, int32_t u, int32_t parent, int32_t *ref) {
    int32_t r = helper_rule(ps, parent);
    if (r < 0) return nomem();
    ivec *a = add_alt(ps, r);
    if (!a) return nomem();
    SLM_TRY(emit(ps, a, u));
    SLM_TRY(emit(ps, a, G_REF(r)));
    if (!add_alt(ps, r)) return nomem();
    *ref = G_REF(r);
    return SLM_OK;
}

static slm_status parse_count(parser *ps, long *v) {
    const char *at = ps->p;
    long x = 0;
    int any = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        x = x * 10 + (*ps->p - '0');
        if (x > MAX_REPEAT) return perr(ps, at, "repetition count above 10000");
        ps->p++;
        any = 1;
    }
    if (!any) return perr(ps, at, "expected a number");
    *v = x;
    return SLM_OK;
}

static slm_status apply_postfix(parser *ps, ivec *out, int32_t from, int32_t parent) {
    for (;;) {
        skip_space(ps, 0);
        if (ps->p >= ps->end) return SLM_OK;
        char c = *ps->p;
        if (c != '*' && c != '+' && c != '?' && c != '{') return SLM_OK;
        const char *at = ps->p;
        if (out->n == from) return perr(ps, at, "repetition without an item");
        ps->p++;
        long m = 0, n = -1; /* n = -1: unbounded */
        if (c == '*') {
            m = 0;
        } else if (c == '+') {
            m = 1;
        } else if (c == '?') {
            m = 0;
            n = 1;
        } else {
            skip_space(ps, 0);
            SLM_TRY(parse_count(ps, &m));
            skip_space(ps, 0);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_space(ps, 0);
                if (ps->p < ps->end && *ps->p != '}') SLM_TRY(parse_count(ps, &n));
            } else {
                n = m;
            }
            skip_space(ps, 0);
            if (ps->p >= ps->end || *ps->p != '}') return perr(ps, ps->p, "expected '}'");
            ps->p++;
            if (n >= 0 && n < m) return perr(ps, at, "repetition {m,n} with n < m");
        }
        int32_t u = 0;
        SLM_TRY(unit_of(ps, out, from, parent, &u));
        for (long i = 0; i < m; i++) SLM_TRY(emit(ps, out, u));
        if (n < 0) {
            int32_t star = 0;
            SLM_TRY(star_rule(ps, u, parent, &star));
            SLM_TRY(emit(ps, out, star));
        } else if (n > m) {
            /* O_1 ::= u | ""; O_k ::= u O_{k-1} | "" */
            int32_t prev = 0;
            for (long k = 1; k <= n - m; k++) {
                int32_t r = helper_rule(ps, parent);
                if (r < 0) return nomem();
                ivec *a = add_alt(ps, r);
                if (!a) return nomem();
                SLM_TRY(emit(ps, a, u));
                if (k > 1) SLM_TRY(emit(ps, a, prev));
                if (!add_alt(ps, r)) return nomem();
                prev = G_REF(r);
            }
            SLM_TRY(emit(ps, out, prev));
        }
    }
}

static slm_status parse_class(parser *ps, ivec *out, int32_t parent) {
    const char *at = ps->p;
    ps->p++; /* [ */
    int negate = 0;
    if (ps->p < ps->end && *ps->p == '^') {
        negate = 1;
        ps->p++;
    }
    cpset cs = {0};
    slm_status st = SLM_OK;
    while (st == SLM_OK) {
        if (ps->p >= ps->end) {
            st = perr(ps, at, "unterminated character class");
            break;
        }
        if (*ps->p == ']') {
            ps->p++;
            break;
        }
        uint32_t lo, hi;
        st = read_char(ps, &lo);
        if (st != SLM_OK) break;
        hi = lo;
        if (ps->p + 1 < ps->end && *ps->p == '-' && ps->p[1] != ']') {
            ps->p++;
            const char *rat = ps->p;
            st = read_char(ps, &hi);
            if (st != SLM_OK) break;
            if (hi < lo) {
                st = perr(ps, rat, "character range is reversed");
                break;
            }
        }
        if (cpset_add(&cs, lo, hi)) st = nomem();
    }
    if (st == SLM_OK && cs.n == 0 && !negate) st = perr(ps, at, "empty character class");
    if (st == SLM_OK) {
        st = emit_class(ps, out, &cs, negate, parent);
        if (st != SLM_OK) st = perr(ps, at, "character class matches nothing");
    }
    free(cs.r);
    return st;
}

static slm_status parse_sequence(parser *ps, int32_t rule, ivec *out, int nested) {
    for (;;) {
        skip_space(ps, nested);
        if (ps->p >= ps->end) return SLM_OK;
        char c = *ps->p;
        int32_t from = out->n;
        if (c == '|' || c == ')' || c == '\n') return SLM_OK;
        if (c == '"') {
            const char *at = ps->p;
            ps->p++;
            for (;;) {
                if (ps->p >= ps->end) return perr(ps, at, "unterminated string literal");
                if (*ps->p == '"') {
                    ps->p++;
                    break;
                }
                if (*ps->p == '\n') return perr(ps, at, "newline in a string literal");
                if (*ps->p == '\\') {
                    uint32_t cp;
                    SLM_TRY(read_char(ps, &cp));
                    unsigned char b[4];
                    int n = utf8_encode(cp, b);
                    for (int i = 0; i < n; i++) SLM_TRY(emit_byte(ps, out, b[i]));
                } else {
                    SLM_TRY(emit_byte(ps, out, (unsigned char)*ps->p));
                    ps->p++;
                }
            }
            if (out->n == from) { /* "" matches the empty string: an empty rule */
                int32_t r = helper_rule(ps, rule);
                if (r < 0 || !add_alt(ps, r)) return nomem();
                SLM_TRY(emit(ps, out, G_REF(r)));
            }
        } else if (c == '[') {
            SLM_TRY(parse_class(ps, out, rule));
        } else if (c == '.') {
            ps->p++;
            if (ps->any_rule < 0) {
                cpset all = {0};
                if (cpset_add(&all, 0, 0x10FFFF)) return nomem();
                ivec tmp = {0};
                slm_status st = emit_class(ps, &tmp, &all, 0, rule);
                free(all.r);
                if (st == SLM_OK && tmp.n == 1) ps->any_rule = tmp.v[0];
                free(tmp.v);
                SLM_TRY(st);
            }
            SLM_TRY(emit(ps, out, ps->any_rule));
        } else if (c == '(') {
            const char *at = ps->p;
            ps->p++;
            if (++ps->depth > MAX_NESTING) return perr(ps, at, "groups nested too deeply");
            int32_t r = helper_rule(ps, rule);
            if (r < 0) return nomem();
            SLM_TRY(parse_alternates(ps, r, 1));
            ps->depth--;
            skip_space(ps, 1);
            if (ps->p >= ps->end || *ps->p != ')') return perr(ps, at, "unclosed '('");
            ps->p++;
            SLM_TRY(emit(ps, out, G_REF(r)));
        } else if (is_name_char(c)) {
            const char *at = ps->p;
            while (ps->p < ps->end && is_name_char(*ps->p)) ps->p++;
            size_t n = (size_t)(ps->p - at);
            /* a new rule definition starts here: this sequence has ended */
            const char *q = ps->p;
            while (q < ps->end && (*q == ' ' || *q == '\t')) q++;
            if (!nested && ps->end - q >= 3 && !strncmp(q, "::=", 3)) {
                ps->p = at;
                return SLM_OK;
            }
            int32_t r = find_rule(ps, at, n);
            if (r < 0) {
                r = new_rule(ps, at, n);
                if (r < 0) return nomem();
                where(ps, at, &ps->rules[r].ref_line, &ps->rules[r].ref_col);
            }
            SLM_TRY(emit(ps, out, G_REF(r)));
        } else {
            return perr(ps, ps->p,
                        "unexpected character (expected a literal, class, rule name, "
                        "'(' or '|')");
        }
        SLM_TRY(apply_postfix(ps, out, from, rule));
    }
}

/* At top level a newline ends the rule unless the next line starts with '|'. */
static int continues(parser *ps) {
    const char *save = ps->p;
    skip_space(ps, 1);
    if (ps->p < ps->end && *ps->p == '|') return 1;
    ps->p = save;
    return 0;
}

static slm_status parse_alternates(parser *ps, int32_t rule, int nested) {
    for (;;) {
        ivec *alt = add_alt(ps, rule);
        if (!alt) return nomem();
        /* the alternative may move when the rule's array grows: build apart */
        ivec tmp = {0};
        slm_status st = parse_sequence(ps, rule, &tmp, nested);
        alt = &ps->rules[rule].alts[ps->rules[rule].n_alts - 1];
        *alt = tmp;
        SLM_TRY(st);
        skip_space(ps, nested);
        if (!nested && ps->p < ps->end && *ps->p == '\n') (void)continues(ps);
        if (ps->p < ps->end && *ps->p == '|') {
            ps->p++;
            skip_space(ps, 1);
            continue;
        }
        return SLM_OK;
    }
}

/* ------------------------------------------------------------ checking */

static int alt_nullable(const slm_grammar *g, int32_t a, const int32_t *nullable) {
    for (int32_t p = g->alt_start[a]; g->elems[p] != G_END; p++) {
        int32_t e = g->elems[p];
        if (e >= 0 || !nullable[G_REF_RULE(e)]) return 0;
    }
    return 1;
}

/* DFS over "rule r can start with rule s" edges; 1 on a cycle. */
static int left_rec(const slm_grammar *g, const int32_t *nullable, int32_t r, uint8_t *color,
                    int32_t *culprit, int depth) {
    if (depth > 10000) { /* reported as such by the caller */
        *culprit = -1;
        return 1;
    }
    color[r] = 1;
    for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++) {
        for (int32_t p = g->alt_start[a]; g->elems[p] != G_END; p++) {
            int32_t e = g->elems[p];
            if (e >= 0) break;
            int32_t s = G_REF_RULE(e);
            if (color[s] == 1) {
                *culprit = s;
                return 1;
            }
            if (color[s] == 0 && left_rec(g, nullable, s, color, culprit, depth + 1)) return 1;
            if (!nullable[s]) break;
        }
    }
    color[r] = 2;
    return 0;
}

static slm_status check_grammar(const slm_grammar *g) {
    int32_t *nullable = slm_calloc((size_t)g->n_rules, sizeof *nullable);
    uint8_t *color = slm_calloc((size_t)g->n_rules, 1);
    if (!nullable || !color) {
        free(nullable);
        free(color);
        return nomem();
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t r = 0; r < g->n_rules; r++) {
            if (nullable[r]) continue;
            for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++)
                if (alt_nullable(g, a, nullable)) {
                    nullable[r] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    slm_status st = SLM_OK;
    for (int32_t r = 0; r < g->n_rules && st == SLM_OK; r++) {
        int32_t culprit = -1;
        if (color[r] == 0 && left_rec(g, nullable, r, color, &culprit, 0) && culprit < 0)
            st = slm_fail(SLM_ERR_CONFIG, "grammar: rules nested more than 10000 deep");
        else if (culprit >= 0)
            st = slm_fail(SLM_ERR_CONFIG,
                          "grammar: rule '%s' is left-recursive (it can start with itself); "
                          "rewrite it right-recursively or with * / +",
                          g->rule_names[culprit]);
    }
    free(nullable);
    free(color);
    return st;
}

/* -------------------------------------------------------------- compile */

void slm_grammar_free(slm_grammar *g) {
    if (!g) return;
    free(g->elems);
    free(g->sets);
    free(g->alt_start);
    free(g->rule_alt);
    if (g->rule_names)
        for (int32_t i = 0; i < g->n_rules; i++) free(g->rule_names[i]);
    free(g->rule_names);
    free(g);
}

int32_t slm_grammar_n_rules(const slm_grammar *g) {
    return g ? g->n_rules : 0;
}

static void parser_free(parser *ps) {
    for (int32_t i = 0; i < ps->n_rules; i++) {
        for (int32_t a = 0; a < ps->rules[i].n_alts; a++) free(ps->rules[i].alts[a].v);
        free(ps->rules[i].alts);
        free(ps->rules[i].name);
    }
    free(ps->rules);
    free(ps->sets);
}

static slm_status flatten(parser *ps, slm_grammar **out) {
    slm_grammar *g = slm_calloc(1, sizeof *g);
    if (!g) return nomem();
    int64_t n_alts = 0, n_el = 0;
    for (int32_t r = 0; r < ps->n_rules; r++) {
        n_alts += ps->rules[r].n_alts;
        for (int32_t a = 0; a < ps->rules[r].n_alts; a++) n_el += ps->rules[r].alts[a].n + 1;
    }
    g->n_rules = ps->n_rules;
    g->elems = slm_calloc((size_t)n_el, sizeof *g->elems);
    g->alt_start = slm_calloc((size_t)n_alts, sizeof *g->alt_start);
    g->rule_alt = slm_calloc((size_t)ps->n_rules + 1, sizeof *g->rule_alt);
    g->rule_names = slm_calloc((size_t)ps->n_rules, sizeof *g->rule_names);
    if (!g->elems || !g->alt_start || !g->rule_alt || !g->rule_names) {
        slm_grammar_free(g);
        return nomem();
    }
    int32_t pe = 0, pa = 0;
    for (int32_t r = 0; r < ps->n_rules; r++) {
        g->rule_alt[r] = pa;
        g->rule_names[r] = ps->rules[r].name;
        ps->rules[r].name = NULL;
        for (int32_t a = 0; a < ps->rules[r].n_alts; a++) {
            g->alt_start[pa++] = pe;
            const ivec *v = &ps->rules[r].alts[a];
            for (int32_t i = 0; i < v->n; i++) g->elems[pe++] = v->v[i];
            g->elems[pe++] = G_END;
        }
    }
    g->rule_alt[ps->n_rules] = pa;
    g->n_alts = pa;
    g->n_elems = pe;
    g->sets = ps->sets;
    g->n_sets = ps->n_sets;
    ps->sets = NULL;
    *out = g;
    return SLM_OK;
}

slm_status slm_grammar_parse(const char *text, size_t len, slm_grammar **out) {
    if (!text || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_grammar_parse: NULL argument");
    *out = NULL;
    if (len > SLM_GRAMMAR_MAX_TEXT)
        return slm_fail(SLM_ERR_CONFIG, "grammar: longer than %u bytes", SLM_GRAMMAR_MAX_TEXT);
    parser ps;
    memset(&ps, 0, sizeof ps);
    ps.s = ps.p = text;
    ps.end = text + len;
    ps.any_rule = -1;
    slm_status st = SLM_OK;
    for (;;) {
        skip_space(&ps, 1);
        if (ps.p >= ps.end) break;
        const char *at = ps.p;
        while (ps.p < ps.end && is_name_char(*ps.p)) ps.p++;
        if (ps.p == at) {
            st = perr(&ps, at, "expected a rule name");
            break;
        }
        size_t n = (size_t)(ps.p - at);
        skip_space(&ps, 0);
        if (ps.end - ps.p < 3 || strncmp(ps.p, "::=", 3)) {
            st = perr(&ps, ps.p, "expected '::=' after the rule name");
            break;
        }
        ps.p += 3;
        int32_t r = find_rule(&ps, at, n);
        if (r >= 0 && ps.rules[r].defined) {
            st = perr(&ps, at, "rule defined twice");
            break;
        }
        if (r < 0) r = new_rule(&ps, at, n);
        if (r < 0) {
            st = nomem();
            break;
        }
        ps.rules[r].defined = 1;
        skip_space(&ps, 1);
        st = parse_alternates(&ps, r, 0);
        if (st != SLM_OK) break;
        skip_space(&ps, 0);
        if (ps.p < ps.end && *ps.p != '\n') {
            st = perr(&ps, ps.p, "unexpected text after the rule");
            break;
        }
    }
    int32_t root = -1;
    if (st == SLM_OK) {
        for (int32_t i = 0; i < ps.n_rules && st == SLM_OK; i++) {
            brule *b = &ps.rules[i];
            if (!b->defined)
                st = slm_fail(SLM_ERR_CONFIG, "grammar: line %d col %d: rule '%s' is not defined",
                              b->ref_line, b->ref_col, b->name);
        }
        root = find_rule(&ps, "root", 4);
        if (st == SLM_OK && root < 0)
            st = slm_fail(SLM_ERR_CONFIG, "grammar: no 'root' rule (the start rule)");
    }
    slm_grammar *g = NULL;
    if (st == SLM_OK) st = flatten(&ps, &g);
    parser_free(&ps);
    if (st == SLM_OK) {
        g->root = root;
        st = check_grammar(g);
    }
    if (st != SLM_OK) {
        slm_grammar_free(g);
        return st;
    }
    *out = g;
    return SLM_OK;
}
