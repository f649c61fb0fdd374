/* Egress policy: detectors for sensitive data, per-class actions, redaction
 * with numbered placeholders and their restoration in the answer.
 *
 * Detectors are hand-written scanners (ASCII; bytes >= 0x80 count as
 * non-word characters so UTF-8 text around a finding does not hide it):
 *   email  local@domain.tld, the TLD alphabetic (2+ letters)
 *   phone  "+CC ..." (8-15 digits), North American (NXX) NXX-XXXX with an
 *          optional leading 1, and trunk-prefix national numbers ("0..."),
 *          9-12 digits in 2+ groups with one kind of separator
 *   card   13-19 digits, optional ' ' or '-' between groups, first digit
 *          not 0, Luhn-valid
 *   iban   CC + 2 check digits + BBAN, spaces between groups, the length of
 *          the country (table) or 15-34, ISO 7064 mod 97 == 1
 *   custom configured PCRE2 patterns (UTF-8)
 * Overlaps: the stricter action wins, then the longer finding, then the
 * earlier, then the lower class index; redacted spans that partly overlap are
 * merged into one placeholder so no part of a redacted value is sent. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "hybrid/policy.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

#define HY_N_BUILTIN 4
#define HY_MAX_PATTERNS 64
#define HY_MAX_PATTERN_NAME 32
#define HY_MAX_REGEX 4096
#define HY_MATCH_LIMIT 10000000u
#define HY_MAX_PLACEHOLDER 64 /* "[" NAME "_" number "]" */

static const char *const builtin_key[HY_N_BUILTIN] = {"email", "phone", "card", "iban"};
static const char *const builtin_tag[HY_N_BUILTIN] = {"EMAIL", "PHONE", "CARD", "IBAN"};

typedef struct hy_pattern {
    char name[HY_MAX_PATTERN_NAME + 1];
    char tag[HY_MAX_PATTERN_NAME + 1]; /* upper-case name */
    pcre2_code *re;
    hy_action action;
} hy_pattern;

struct hy_policy {
    hy_action builtin[HY_N_BUILTIN];
    int n_pat;
    hy_pattern *pat;
};

typedef struct hy_finding {
    size_t s, e;
    int cls; /* 0..3 built-in, 4+i pattern i */
    hy_action action;
    size_t rank; /* position in priority order (overlap resolution) */
} hy_finding;

typedef struct hy_value {
    int cls, num;
    char *key; /* normalized value (the map key) */
    size_t key_len;
    char *raw; /* first-seen text (restored) */
    size_t raw_len;
} hy_value;

typedef struct hy_ivec {
    int *v;
    int n, cap;
} hy_ivec;

typedef struct hy_bits {
    unsigned char *b;
    size_t nbits;
} hy_bits;
#define HY_MAX_RESERVED (1u << 20) /* literal "[EMAIL_N]" in the input: N up to this */

struct hy_egress {
    const hy_policy *p;
    int n_cls;
    hy_action action;
    uint32_t mask;
    unsigned char *found; /* per class */
    char *names;
    hy_value *vals;
    int n_vals, cap_vals;
    int *table; /* open addressing over vals, -1 empty */
    size_t table_cap;
    hy_ivec *by_num;   /* per class: value index of placeholder number i+1 (-1: skipped) */
    hy_bits *reserved; /* per class: numbers the request's own text uses literally */
};

const char *hy_action_name(hy_action a) {
    switch (a) {
    case HY_ALLOW:
        return "allow";
    case HY_REDACT:
        return "redact";
    case HY_BLOCK:
        return "block";
    }
    return "?";
}

/* ---------------------------------------------------------------- config */

static int parse_action(const cJSON *it, hy_action *out) {
    if (!cJSON_IsString(it)) return 0;
    const char *s = it->valuestring;
    if (!strcmp(s, "block"))
        *out = HY_BLOCK;
    else if (!strcmp(s, "redact"))
        *out = HY_REDACT;
    else if (!strcmp(s, "allow"))
        *out = HY_ALLOW;
    else
        return 0;
    return 1;
}

static slm_status bad_action(const char *key, const cJSON *it) {
    if (cJSON_IsString(it))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'policy.%s': \"%.64s\" (expected \"block\", \"redact\" or "
                        "\"allow\")",
                        key, it->valuestring);
    return slm_fail(SLM_ERR_CONFIG,
                    "config key 'policy.%s': expected a string: \"block\", \"redact\" or \"allow\"",
                    key);
}

static int valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > HY_MAX_PATTERN_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return 0;
    return 1;
}

static slm_status parse_pattern(const cJSON *o, int idx, hy_pattern *pt) {
    if (!cJSON_IsObject(o))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'policy.patterns[%d]': expected an object {\"name\", "
                        "\"regex\", \"action\"}",
                        idx);
    const cJSON *name = NULL, *regex = NULL, *action = NULL;
    for (const cJSON *it = o->child; it; it = it->next) {
        if (!strcmp(it->string, "name"))
            name = it;
        else if (!strcmp(it->string, "regex"))
            regex = it;
        else if (!strcmp(it->string, "action"))
            action = it;
        else
            return slm_fail(SLM_ERR_CONFIG, "config key 'policy.patterns[%d].%.64s': unknown key",
                            idx, it->string);
    }
    if (!cJSON_IsString(name) || !valid_name(name->valuestring))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'policy.patterns[%d].name': expected a name of 1-%d "
                        "characters [A-Za-z0-9_]",
                        idx, HY_MAX_PATTERN_NAME);
    snprintf(pt->name, sizeof pt->name, "%s", name->valuestring);
    for (size_t i = 0; pt->name[i]; i++) pt->tag[i] = (char)toupper((unsigned char)pt->name[i]);
    for (int b = 0; b < HY_N_BUILTIN; b++)
        if (!strcmp(pt->tag, builtin_tag[b]))
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'policy.patterns[%d].name': \"%s\" is a built-in class",
                            idx, pt->name);
    if (!cJSON_IsString(regex) || !regex->valuestring[0])
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'policy.patterns[%d].regex': expected a non-empty string", idx);
    size_t rlen = strlen(regex->valuestring);
    if (rlen > HY_MAX_REGEX)
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'policy.patterns[%d].regex': longer than %d bytes", idx,
                        HY_MAX_REGEX);
    pt->action = HY_BLOCK;
    if (action && !parse_action(action, &pt->action)) {
        char key[48];
        snprintf(key, sizeof key, "patterns[%d].action", idx);
        return bad_action(key, action);
    }
    int err;
    PCRE2_SIZE off;
    pt->re = pcre2_compile((PCRE2_SPTR)regex->valuestring, rlen,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, NULL);
    if (!pt->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return slm_fail(SLM_ERR_CONFIG, "config key 'policy.patterns[%d].regex': %s at offset %zu",
                        idx, (char *)msg, (size_t)off);
    }
    (void)pcre2_jit_compile(pt->re, PCRE2_JIT_COMPLETE);
    return SLM_OK;
}

slm_status hy_policy_new(const cJSON *policy, hy_policy **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "hy_policy_new: out is NULL");
    *out = NULL;
    if (policy && !cJSON_IsObject(policy) && !cJSON_IsNull(policy))
        return slm_fail(SLM_ERR_CONFIG, "config key 'policy': expected an object");
    hy_policy *p = calloc(1, sizeof *p);
    if (!p) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    for (int b = 0; b < HY_N_BUILTIN; b++) p->builtin[b] = HY_BLOCK;
    slm_status st = SLM_OK;
    const cJSON *pats = NULL;
    if (policy && cJSON_IsObject(policy)) {
        for (const cJSON *it = policy->child; it; it = it->next) {
            int b = 0;
            while (b < HY_N_BUILTIN && strcmp(it->string, builtin_key[b])) b++;
            if (b < HY_N_BUILTIN) {
                if (!parse_action(it, &p->builtin[b])) {
                    st = bad_action(it->string, it);
                    goto fail;
                }
            } else if (!strcmp(it->string, "patterns")) {
                pats = it;
            } else {
                st = slm_fail(SLM_ERR_CONFIG,
                              "config key 'policy.%.64s': unknown key (expected email, phone, "
                              "card, iban or patterns)",
                              it->string);
                goto fail;
            }
        }
    }
    if (pats) {
        if (!cJSON_IsArray(pats)) {
            st = slm_fail(SLM_ERR_CONFIG, "config key 'policy.patterns': expected an array");
            goto fail;
        }
        int n = cJSON_GetArraySize(pats);
        if (n > HY_MAX_PATTERNS) {
            st = slm_fail(SLM_ERR_CONFIG, "config key 'policy.patterns': more than %d patterns",
                          HY_MAX_PATTERNS);
            goto fail;
        }
        if (n > 0) {
            p->pat = calloc((size_t)n, sizeof *p->pat);
            if (!p->pat) {
                st = slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
                goto fail;
            }
        }
        int i = 0;
        for (const cJSON *it = pats->child; it; it = it->next, i++) {
            st = parse_pattern(it, i, &p->pat[i]);
            p->n_pat = i + 1; /* so that free releases what was compiled */
            if (st != SLM_OK) goto fail;
            for (int j = 0; j < i; j++)
                if (!strcmp(p->pat[j].tag, p->pat[i].tag)) {
                    st = slm_fail(SLM_ERR_CONFIG,
                                  "config key 'policy.patterns[%d].name': \"%s\" is used twice", i,
                                  p->pat[i].name);
                    goto fail;
                }
        }
    }
    *out = p;
    return SLM_OK;
fail:
    hy_policy_free(p);
    return st;
}

void hy_policy_free(hy_policy *p) {
    if (!p) return;
    for (int i = 0; i < p->n_pat; i++)
        if (p->pat[i].re) pcre2_code_free(p->pat[i].re);
    free(p->pat);
    free(p);
}

static const char *class_tag(const hy_policy *p, int cls) {
    return cls < HY_N_BUILTIN ? builtin_tag[cls] : p->pat[cls - HY_N_BUILTIN].tag;
}
static const char *class_key(const hy_policy *p, int cls) {
    return cls < HY_N_BUILTIN ? builtin_key[cls] : p->pat[cls - HY_N_BUILTIN].name;
}

/* ------------------------------------------------------------- detectors */

typedef struct fvec {
    hy_finding *v;
    size_t n, cap;
} fvec;

static slm_status fpush_f(fvec *f, hy_finding x) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        hy_finding *v = realloc(f->v, cap * sizeof *v);
        if (!v) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = x;
    return SLM_OK;
}
static slm_status fpush(fvec *f, size_t s, size_t e, int cls, hy_action a) {
    return fpush_f(f, (hy_finding){s, e, cls, a, 0});
}

static int is_digit(int c) {
    return c >= '0' && c <= '9';
}
static int is_alpha(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_alnum(int c) {
    return is_digit(c) || is_alpha(c);
}
static int is_word(int c) {
    return is_alnum(c) || c == '_';
}
static int at(const char *t, size_t n, size_t i) {
    return i < n ? (unsigned char)t[i] : 0;
}

/* Text continues a number after position e: a word character, or '.'/','/'-'
 * directly followed by a digit (decimals, longer runs). */
static int number_continues(const char *t, size_t n, size_t e) {
    int c = at(t, n, e);
    if (is_word(c)) return 1;
    if ((c == '.' || c == ',' || c == '-') && is_digit(at(t, n, e + 1))) return 1;
    return 0;
}
/* A number starting at s continues one before it (or follows '+' when plus). */
static int number_preceded(const char *t, size_t s, int plus) {
    if (s == 0) return 0;
    int c = (unsigned char)t[s - 1];
    if (is_word(c) || (plus && c == '+')) return 1;
    if ((c == '.' || c == ',' || c == '-') && s >= 2 && is_digit((unsigned char)t[s - 2])) return 1;
    return 0;
}

/* ---- e-mail ---- */
static int is_local(int c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
static int is_domain(int c) {
    return is_alnum(c) || c == '.' || c == '-';
}

static slm_status detect_email(const char *t, size_t n, hy_action a, fvec *f) {
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '@') continue;
        size_t s = i;
        while (s > 0 && is_local((unsigned char)t[s - 1])) s--;
        while (s < i && t[s] == '.') s++;
        for (size_t k = i; k > s + 1; k--) /* no ".." in the local part: start after it */
            if (t[k - 1] == '.' && t[k - 2] == '.') {
                s = k;
                break;
            }
        if (s == i || t[i - 1] == '.') continue; /* no length limit: redact generously */
        size_t e = i + 1;
        while (e < n && is_domain((unsigned char)t[e])) e++;
        for (size_t k = i + 1; k + 1 < e; k++) /* stop at ".." */
            if (t[k] == '.' && t[k + 1] == '.') {
                e = k;
                break;
            }
        while (e > i + 1 && (t[e - 1] == '.' || t[e - 1] == '-')) e--;
        /* labels: not empty, no leading/trailing '-', 2+ labels, alphabetic TLD */
        size_t ls = i + 1, nlab = 0, last = 0;
        int ok = e > i + 1;
        for (size_t k = i + 1; ok && k <= e; k++) {
            if (k == e || t[k] == '.') {
                size_t ll = k - ls;
                if (ll == 0 || t[ls] == '-' || t[k - 1] == '-') ok = 0;
                nlab++;
                last = ls;
                ls = k + 1;
            }
        }
        if (!ok || nlab < 2 || e - last < 2) continue;
        for (size_t k = last; k < e; k++)
            if (!is_alpha((unsigned char)t[k])) ok = 0;
        if (!ok || is_word(at(t, n, e))) continue;
        SLM_TRY(fpush(f, s, e, 0, a));
    }
    return SLM_OK;
}

/* ---- digit groups (phone, card) ---- */
#define HY_MAX_GROUPS 12
typedef struct dgroup {
    size_t s, e;    /* the group's text, parentheses included */
    int nd;         /* digits */
    int paren;      /* "(123)" */
    char sep_after; /* separator to the next group, 0 when glued ("(0)20") */
    char first;     /* first digit */
    char second;    /* second digit or 0 */
} dgroup;

/* ---- cards ---- */
static int luhn_ok(const char *d, int nd) {
    int sum = 0;
    for (int i = 0; i < nd; i++) {
        int v = d[nd - 1 - i] - '0';
        if (i & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

/* Runs of digit groups joined by single ' ' or '-'; every group start of a
 * run not glued to a word is tried: the longest Luhn-valid span of 13-19
 * digits ending at a group end, with one kind of separator. */
static slm_status detect_card(const char *t, size_t n, hy_action a, fvec *f) {
    size_t i = 0;
    while (i < n) {
        if (!is_digit((unsigned char)t[i])) {
            i++;
            continue;
        }
        size_t r = i, p = i;
        for (;;) {
            while (p < n && is_digit((unsigned char)t[p])) p++;
            if (p + 1 < n && (t[p] == ' ' || t[p] == '-') && is_digit((unsigned char)t[p + 1]))
                p++;
            else
                break;
        }
        size_t run_end = p;
        i = run_end;
        if (number_preceded(t, r, 0)) continue;
        for (size_t gs = r; gs < run_end;) {
            if (t[gs] != '0') {
                char d[19];
                int nd = 0, best = 0, over = 0;
                size_t q = gs, best_end = 0;
                char sep = 0;
                while (q < run_end && !over) {
                    while (q < run_end && is_digit((unsigned char)t[q])) {
                        if (nd == 19) {
                            over = 1;
                            break;
                        }
                        d[nd++] = t[q++];
                    }
                    if (over) break;
                    /* a group ends at q */
                    if (nd >= 13 && !(q == run_end && number_continues(t, n, q)) &&
                        luhn_ok(d, nd)) {
                        best = nd;
                        best_end = q;
                    }
                    if (q >= run_end) break;
                    if (sep && t[q] != sep) break; /* mixed separators */
                    sep = t[q++];
                }
                if (best) SLM_TRY(fpush(f, gs, best_end, 2, a));
            }
            while (gs < run_end && is_digit((unsigned char)t[gs])) gs++;
            gs++; /* the separator */
        }
    }
    return SLM_OK;
}

/* ---- phones ---- */
/* Parses digit groups from p: "123", "(123)", separated by one of " -./"
 * (or nothing after/before a parenthesized group). */
static int parse_groups(const char *t, size_t n, size_t p, dgroup *g, int max) {
    int ng = 0;
    while (ng < max && p < n) {
        size_t s = p;
        int paren = 0;
        if (t[p] == '(') {
            p++;
            while (p < n && is_digit((unsigned char)t[p])) p++;
            if (p == s + 1 || p >= n || t[p] != ')' || p - s - 1 > 5) break;
            p++;
            paren = 1;
        } else if (is_digit((unsigned char)t[p])) {
            while (p < n && is_digit((unsigned char)t[p])) p++;
            if (p - s > 15) break;
        } else {
            break;
        }
        size_t d0 = s + (size_t)paren;
        g[ng] = (dgroup){s,
                         p,
                         (int)(p - s) - 2 * paren,
                         paren,
                         0,
                         t[d0],
                         is_digit(at(t, n, d0 + 1)) ? t[d0 + 1] : 0};
        ng++;
        int c = at(t, n, p), c1 = at(t, n, p + 1);
        if ((c == ' ' || c == '-' || c == '.' || c == '/') && (is_digit(c1) || c1 == '(')) {
            g[ng - 1].sep_after = (char)c;
            p++;
        } else if ((paren && is_digit(c)) || (c == '(' && is_digit(c1))) {
            g[ng - 1].sep_after = 0;
        } else {
            break;
        }
    }
    return ng;
}

/* The separators among groups [0, k) are of one kind (those touching a
 * parenthesized group may also be ' ' or nothing); returns it, '?' if mixed. */
static char one_sep(const dgroup *g, int k) {
    char sep = 0;
    for (int i = 0; i + 1 < k; i++) {
        char s = g[i].sep_after;
        if (g[i].paren || g[i + 1].paren) {
            if (s != 0 && s != ' ' && s != '-') return '?';
            continue;
        }
        if (s == 0) return '?';
        if (sep && s != sep) return '?';
        sep = s;
    }
    return sep ? sep : ' ';
}

static int digits_in(const dgroup *g, int k) {
    int nd = 0;
    for (int i = 0; i < k; i++) nd += g[i].nd;
    return nd;
}

static int nanp_ok(const dgroup *g, int k) {
    int o = 0;
    if (k == 4 && !g[0].paren && g[0].nd == 1 && g[0].first == '1') o = 1;
    if (k - o != 3) return 0;
    if (g[o].nd != 3 || g[o + 1].nd != 3 || g[o + 2].nd != 4) return 0;
    if (g[o + 1].paren || g[o + 2].paren) return 0;
    if (g[o].first < '2') return 0; /* area code NXX */
    char sep = one_sep(g, k);
    return sep != '?' && sep != '/';
}

static int trunk_ok(const char *t, const dgroup *g, int k) {
    if (k < 2 || g[0].first != '0' || g[0].nd < 2 || g[0].nd > 5) return 0;
    int nd = digits_in(g, k);
    /* "0044 20 ...": the access prefix 00 and a country code (not 0) */
    int access00 = !g[0].paren && g[0].nd >= 3 && g[0].second == '0' && t[g[0].s + 2] != '0';
    if (access00 ? (nd < 10 || nd > 17) : (nd < 9 || nd > 12)) return 0;
    if (!access00 && g[0].second == '0') return 0; /* trunk 0, then an area code 1-9 */
    for (int i = 1; i < k; i++)
        if (g[i].nd < 2 || g[i].nd > 8 || g[i].paren) return 0;
    char sep = one_sep(g, k);
    if (sep == '?') return 0;
    if (sep == '.') { /* "06.12.34.56.78", not versions or addresses */
        if (k < 3) return 0;
        for (int i = 0; i < k; i++)
            if (g[i].nd > 4) return 0;
    }
    return 1;
}

static int intl_ok(const dgroup *g, int k) {
    int nd = digits_in(g, k);
    if (nd < 8 || nd > 15) return 0;
    if (g[0].paren || g[0].first == '0') return 0;
    if (k == 1) return 1;
    if (g[0].nd > 3) return 0;
    for (int i = 1; i < k; i++)
        if (g[i].paren && g[i].nd > 4) return 0;
    char sep = one_sep(g, k);
    return sep != '?' && sep != '/';
}

static slm_status detect_phone(const char *t, size_t n, hy_action a, fvec *f) {
    dgroup g[HY_MAX_GROUPS];
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)t[i];
        if (c == '+') {
            if (i > 0 && (is_word((unsigned char)t[i - 1]) || t[i - 1] == '+')) continue;
            int ng = parse_groups(t, n, i + 1, g, HY_MAX_GROUPS);
            if (ng == 0 || g[0].s != i + 1) continue;
            for (int k = ng; k >= 1; k--) {
                /* a shorter prefix ends at a space before more digits */
                if (k < ng && g[k - 1].sep_after != ' ') continue;
                if (k == ng && number_continues(t, n, g[k - 1].e)) break;
                if (intl_ok(g, k)) {
                    SLM_TRY(fpush(f, i, g[k - 1].e, 1, a));
                    break;
                }
            }
            continue;
        }
        if (!is_digit(c) && c != '(') continue;
        if (number_preceded(t, i, 1)) continue; /* after '+': the branch above */
        if (i > 0 && t[i - 1] == '(') continue;
        /* not inside a run of digit groups ("4111 0111 ..."; "DE89 3704 ...") */
        if (i >= 2 && t[i - 1] && strchr(" -./", t[i - 1]) && is_digit((unsigned char)t[i - 2]))
            continue;
        int ng = parse_groups(t, n, i, g, HY_MAX_GROUPS);
        if (ng < 2 || number_continues(t, n, g[ng - 1].e)) continue;
        if (g[ng - 1].sep_after) continue; /* more groups than we take */
        if (nanp_ok(g, ng) || trunk_ok(t, g, ng)) SLM_TRY(fpush(f, i, g[ng - 1].e, 1, a));
    }
    return SLM_OK;
}

/* ---- IBAN ---- */
static const struct {
    char cc[3];
    int len;
} iban_len[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22},
    {"BH", 22}, {"BR", 29}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18},
    {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22},
    {"GE", 22}, {"GI", 23}, {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22},
    {"IL", 23}, {"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LI", 21},
    {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27},
    {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25},
    {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27},
    {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VG", 24}, {"XK", 20},
};

static int iban_country_len(char c0, char c1) {
    for (size_t i = 0; i < sizeof iban_len / sizeof iban_len[0]; i++)
        if (iban_len[i].cc[0] == c0 && iban_len[i].cc[1] == c1) return iban_len[i].len;
    return 0;
}

/* ISO 7064 MOD 97-10 over the rearranged IBAN (upper-case alnum, len >= 5). */
static int iban_mod97_ok(const char *s, int len) {
    unsigned r = 0;
    for (int k = 0; k < len; k++) {
        char c = s[(k + 4) % len];
        if (is_digit((unsigned char)c)) {
            r = (r * 10 + (unsigned)(c - '0')) % 97;
        } else {
            unsigned v = (unsigned)(c - 'A') + 10;
            r = (r * 100 + v) % 97;
        }
    }
    return r == 1;
}

static slm_status detect_iban(const char *t, size_t n, hy_action a, fvec *f) {
    for (size_t i = 0; i + 4 <= n; i++) {
        if (!is_alpha((unsigned char)t[i]) || !is_alpha((unsigned char)t[i + 1]) ||
            !is_digit((unsigned char)t[i + 2]) || !is_digit((unsigned char)t[i + 3]))
            continue;
        if (i > 0 && is_word((unsigned char)t[i - 1])) continue;
        char c0 = (char)toupper((unsigned char)t[i]), c1 = (char)toupper((unsigned char)t[i + 1]);
        int known = iban_country_len(c0, c1);
        int upper = t[i] == c0 && t[i + 1] == c1;
        if (!known && !upper) continue;
        /* collect up to 35 alnum characters, single spaces between groups */
        char d[36];
        size_t end_at[36]; /* text end after character k */
        int brk[36];       /* character k is followed by a group break (or the end) */
        int nd = 0;
        size_t p = i;
        while (nd < 35 && p < n) {
            int c = (unsigned char)t[p];
            if (is_alnum(c)) {
                d[nd] = (char)toupper(c);
                end_at[nd] = p + 1;
                brk[nd] = 0;
                nd++;
                p++;
            } else if (c == ' ' && nd > 0 && is_alnum(at(t, n, p + 1))) {
                brk[nd - 1] = 1;
                p++;
            } else {
                break;
            }
        }
        if (nd == 0) continue;
        if (p >= n || !is_alnum((unsigned char)t[p])) brk[nd - 1] = 1;
        int lo = known ? known : 15, hi = known ? known : 34;
        for (int len = hi; len >= lo; len--) {
            if (len > nd || !brk[len - 1]) continue;
            if (len == nd && p < n && t[p] == '_') continue;
            if (iban_mod97_ok(d, len)) {
                SLM_TRY(fpush(f, i, end_at[len - 1], 3, a));
                break;
            }
        }
    }
    return SLM_OK;
}

/* ---- configured patterns ---- */
static slm_status detect_pattern(const hy_policy *pol, int pi, const char *t, size_t n, fvec *f,
                                 pcre2_match_data *md, pcre2_match_context *mc) {
    const hy_pattern *pt = &pol->pat[pi];
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t pos = 0;
    while (pos <= n) {
        int rc = pcre2_match(pt->re, (PCRE2_SPTR)t, n, pos, 0, md, mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
            rc = pcre2_match(pt->re, (PCRE2_SPTR)t, n, pos, PCRE2_NO_JIT, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return slm_fail(SLM_ERR_INTERNAL,
                            "policy.patterns[%d] (%s): match failed: %s; the request must stay "
                            "local",
                            pi, pt->name, (char *)msg);
        }
        size_t s = ov[0], e = ov[1];
        if (e < s || e > n) break;
        if (e > s) {
            SLM_TRY(fpush(f, s, e, HY_N_BUILTIN + pi, pt->action));
            pos = e;
        } else {
            pos = s + 1;
            while (pos < n && ((unsigned char)t[pos] & 0xC0) == 0x80) pos++;
        }
    }
    return SLM_OK;
}

/* ------------------------------------------------------------- egress */

slm_status hy_egress_new(const hy_policy *p, hy_egress **out) {
    if (!p || !out) return slm_fail(SLM_ERR_INVALID_ARG, "hy_egress_new: NULL argument");
    *out = NULL;
    hy_egress *e = calloc(1, sizeof *e);
    if (!e) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    e->p = p;
    e->n_cls = HY_N_BUILTIN + p->n_pat;
    e->found = calloc((size_t)e->n_cls, 1);
    e->by_num = calloc((size_t)e->n_cls, sizeof *e->by_num);
    e->reserved = calloc((size_t)e->n_cls, sizeof *e->reserved);
    e->names = calloc(1, 1);
    if (!e->found || !e->by_num || !e->reserved || !e->names) {
        hy_egress_free(e);
        return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    }
    *out = e;
    return SLM_OK;
}

void hy_egress_free(hy_egress *e) {
    if (!e) return;
    for (int i = 0; i < e->n_vals; i++) {
        free(e->vals[i].key);
        free(e->vals[i].raw);
    }
    free(e->vals);
    free(e->table);
    if (e->by_num)
        for (int c = 0; c < e->n_cls; c++) free(e->by_num[c].v);
    free(e->by_num);
    if (e->reserved)
        for (int c = 0; c < e->n_cls; c++) free(e->reserved[c].b);
    free(e->reserved);
    free(e->found);
    free(e->names);
    free(e);
}

hy_action hy_egress_action(const hy_egress *e) {
    return e ? e->action : HY_BLOCK;
}
uint32_t hy_egress_classes(const hy_egress *e) {
    return e ? e->mask : 0;
}
const char *hy_egress_class_names(const hy_egress *e) {
    return e ? e->names : "";
}
int hy_egress_n_redacted(const hy_egress *e) {
    return e ? e->n_vals : 0;
}

static uint64_t hash_key(int cls, const char *k, size_t n) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(unsigned)cls;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

static slm_status table_grow(hy_egress *e) {
    size_t cap = e->table_cap ? e->table_cap * 2 : 64;
    int *tb = malloc(cap * sizeof *tb);
    if (!tb) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    for (size_t i = 0; i < cap; i++) tb[i] = -1;
    for (int v = 0; v < e->n_vals; v++) {
        size_t h = (size_t)hash_key(e->vals[v].cls, e->vals[v].key, e->vals[v].key_len) & (cap - 1);
        while (tb[h] >= 0) h = (h + 1) & (cap - 1);
        tb[h] = v;
    }
    free(e->table);
    e->table = tb;
    e->table_cap = cap;
    return SLM_OK;
}

static slm_status ivec_push(hy_ivec *v, int x) {
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 8;
        int *p = realloc(v->v, (size_t)cap * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
        v->v = p;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return SLM_OK;
}

static int is_reserved(const hy_egress *e, int cls, int num) {
    const hy_bits *b = &e->reserved[cls];
    return num > 0 && (size_t)num < b->nbits && (b->b[(size_t)num / 8] >> (num % 8)) & 1;
}

/* The value for (cls, key): existing or new (raw kept for restoring). */
static slm_status value_get(hy_egress *e, int cls, const char *key, size_t key_len, const char *raw,
                            size_t raw_len, int *out) {
    if ((size_t)(e->n_vals + 1) * 2 > e->table_cap) SLM_TRY(table_grow(e));
    size_t h = (size_t)hash_key(cls, key, key_len) & (e->table_cap - 1);
    while (e->table[h] >= 0) {
        const hy_value *v = &e->vals[e->table[h]];
        if (v->cls == cls && v->key_len == key_len && !memcmp(v->key, key, key_len)) {
            *out = e->table[h];
            return SLM_OK;
        }
        h = (h + 1) & (e->table_cap - 1);
    }
    if (e->n_vals == e->cap_vals) {
        int cap = e->cap_vals ? e->cap_vals * 2 : 16;
        hy_value *vv = realloc(e->vals, (size_t)cap * sizeof *vv);
        if (!vv) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
        e->vals = vv;
        e->cap_vals = cap;
    }
    hy_value *v = &e->vals[e->n_vals];
    v->key = malloc(key_len + 1);
    v->raw = malloc(raw_len + 1);
    if (!v->key || !v->raw) {
        free(v->key);
        free(v->raw);
        return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    }
    memcpy(v->key, key, key_len);
    v->key[key_len] = 0;
    memcpy(v->raw, raw, raw_len);
    v->raw[raw_len] = 0;
    v->key_len = key_len;
    v->raw_len = raw_len;
    v->cls = cls;
    /* skip numbers whose placeholder the request's text holds literally */
    slm_status st = SLM_OK;
    while (st == SLM_OK && is_reserved(e, cls, e->by_num[cls].n + 1))
        st = ivec_push(&e->by_num[cls], -1);
    if (st == SLM_OK) st = ivec_push(&e->by_num[cls], e->n_vals);
    if (st != SLM_OK) {
        free(v->key);
        free(v->raw);
        return st;
    }
    v->num = e->by_num[cls].n;
    e->table[h] = e->n_vals;
    *out = e->n_vals++;
    return SLM_OK;
}

/* Normalized form of a finding: card digits; phone '+' and digits; IBAN
 * upper-case alnum; e-mail lower-case; patterns as written. */
static size_t normalize(int cls, const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        switch (cls) {
        case 0:
            out[k++] = (char)tolower(c);
            break;
        case 1:
            if (is_digit(c) || c == '+') out[k++] = (char)c;
            break;
        case 2:
            if (is_digit(c)) out[k++] = (char)c;
            break;
        case 3:
            if (is_alnum(c)) out[k++] = (char)toupper(c);
            break;
        default:
            out[k++] = (char)c;
        }
    }
    return k;
}

static int cmp_priority(const void *a, const void *b) {
    const hy_finding *x = a, *y = b;
    if (x->action != y->action) return x->action > y->action ? -1 : 1;
    size_t lx = x->e - x->s, ly = y->e - y->s;
    if (lx != ly) return lx > ly ? -1 : 1;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->cls > y->cls) - (x->cls < y->cls);
}
static int cmp_start(const void *a, const void *b) {
    const hy_finding *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->e > y->e) - (x->e < y->e);
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static slm_status rebuild_names(hy_egress *e) {
    sbuf b = {0};
    if (sb_put(&b, "", 0)) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
    for (int c = 0; c < e->n_cls; c++) {
        if (!e->found[c]) continue;
        const char *k = class_key(e->p, c);
        if ((b.n && sb_put(&b, ",", 1)) || sb_put(&b, k, strlen(k))) {
            free(b.p);
            return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
        }
    }
    free(e->names);
    e->names = b.p;
    return SLM_OK;
}

/* Detects everything in t[0..n) and resolves overlaps: *acc gets the
 * findings that act on the text (sorted by start). */
static slm_status find_all(const hy_egress *e, const char *t, size_t n, fvec *acc) {
    const hy_policy *p = e->p;
    fvec all = {0};
    slm_status st = SLM_OK;
    pcre2_match_data *md = NULL;
    pcre2_match_context *mc = NULL;
    unsigned char *cov = NULL;
    SLM_CHECK(detect_email(t, n, p->builtin[0], &all));
    SLM_CHECK(detect_phone(t, n, p->builtin[1], &all));
    SLM_CHECK(detect_card(t, n, p->builtin[2], &all));
    SLM_CHECK(detect_iban(t, n, p->builtin[3], &all));
    if (p->n_pat) {
        md = pcre2_match_data_create(1, NULL);
        mc = pcre2_match_context_create(NULL);
        if (!md || !mc) {
            st = slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
            goto cleanup;
        }
        uint64_t lim = (uint64_t)HY_MATCH_LIMIT + 64u * (uint64_t)n;
        pcre2_set_match_limit(mc, lim > UINT32_MAX ? UINT32_MAX : (uint32_t)lim);
        for (int i = 0; i < p->n_pat; i++) SLM_CHECK(detect_pattern(p, i, t, n, &all, md, mc));
    }
    if (n && all.n) {
        cov = calloc(n, 1);
        if (!cov) {
            st = slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
            goto cleanup;
        }
    }
    /* a phone or card number wholly inside a (checksum-valid) IBAN is part of it */
    size_t w = 0;
    for (size_t i = 0; i < all.n; i++)
        if (all.v[i].cls == 3) memset(cov + all.v[i].s, 1, all.v[i].e - all.v[i].s);
    for (size_t i = 0; i < all.n; i++) {
        const hy_finding *x = &all.v[i];
        int inside = x->cls == 1 || x->cls == 2;
        for (size_t k = x->s; inside && k < x->e; k++) inside = cov[k];
        if (!inside) all.v[w++] = all.v[i];
    }
    all.n = w;
    if (cov) memset(cov, 0, n);
    if (all.n) qsort(all.v, all.n, sizeof *all.v, cmp_priority);
    /* greedy: stricter, longer, earlier first (cov[k] = 1 + the action owning
     * byte k). The rest is dropped unless it is a redaction that sticks out of
     * the redactions it overlaps: then it is kept, and joined with them below,
     * so that no part of a redacted value is sent. */
    for (size_t i = 0; i < all.n; i++) {
        hy_finding x = all.v[i];
        x.rank = i;
        size_t covered = 0;
        int ov_block = 0;
        for (size_t k = x.s; k < x.e; k++)
            if (cov[k]) {
                covered++;
                if (cov[k] == 1 + HY_BLOCK) ov_block = 1;
            }
        int keep = covered == 0 || (x.action == HY_REDACT && !ov_block && covered < x.e - x.s);
        if (!keep) continue;
        for (size_t k = x.s; k < x.e; k++)
            if (!cov[k]) cov[k] = (unsigned char)(1 + x.action);
        SLM_CHECK(fpush_f(acc, x));
    }
    if (acc->n) qsort(acc->v, acc->n, sizeof *acc->v, cmp_start);
    /* join overlapping (redaction) spans; the highest-ranked member labels the union */
    w = 0;
    for (size_t i = 0; i < acc->n; i++) {
        if (w > 0 && acc->v[i].s < acc->v[w - 1].e) {
            hy_finding *y = &acc->v[w - 1];
            const hy_finding *x = &acc->v[i];
            if (x->e > y->e) y->e = x->e;
            if (x->action > y->action) y->action = x->action;
            if (x->rank < y->rank) {
                y->rank = x->rank;
                y->cls = x->cls;
            }
            continue;
        }
        acc->v[w++] = acc->v[i];
    }
    acc->n = w;
cleanup:
    free(cov);
    if (md) pcre2_match_data_free(md);
    if (mc) pcre2_match_context_free(mc);
    free(all.v);
    return st;
}

static slm_status reserve_literals(hy_egress *e, const char *t, size_t n);

slm_status hy_egress_add(hy_egress *e, const char *text, size_t len, char **out, size_t *out_len) {
    if (!e || !out || (!text && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "hy_egress_add: NULL argument");
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!text) text = "";
    fvec acc = {0};
    sbuf b = {0};
    char *norm = NULL;
    slm_status st = len ? reserve_literals(e, text, len) : SLM_OK;
    if (st == SLM_OK) st = find_all(e, text, len, &acc);
    if (st != SLM_OK) goto cleanup;
    if (sb_put(&b, "", 0)) goto nomem;
    size_t pos = 0;
    for (size_t i = 0; i < acc.n; i++) {
        const hy_finding *x = &acc.v[i];
        if (sb_put(&b, text + pos, x->s - pos)) goto nomem;
        pos = x->e;
        e->found[x->cls] = 1;
        e->mask |= x->cls < HY_N_BUILTIN ? (1u << x->cls) : (uint32_t)HY_CLASS_CUSTOM;
        if (x->action > e->action) e->action = x->action;
        if (x->action != HY_REDACT) {
            if (sb_put(&b, text + x->s, x->e - x->s)) goto nomem;
            continue;
        }
        size_t n = x->e - x->s;
        free(norm);
        norm = malloc(n + 1);
        if (!norm) goto nomem;
        size_t kn = normalize(x->cls, text + x->s, n, norm);
        int vi = 0;
        st = value_get(e, x->cls, norm, kn, text + x->s, n, &vi);
        if (st != SLM_OK) goto cleanup;
        char ph[HY_MAX_PLACEHOLDER];
        int pn = snprintf(ph, sizeof ph, "[%s_%d]", class_tag(e->p, x->cls), e->vals[vi].num);
        if (sb_put(&b, ph, (size_t)pn)) goto nomem;
    }
    if (sb_put(&b, text + pos, len - pos)) goto nomem;
    st = rebuild_names(e);
    if (st != SLM_OK) goto cleanup;
    *out = b.p;
    if (out_len) *out_len = b.n;
    b.p = NULL;
    goto cleanup;
nomem:
    st = slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
cleanup:
    free(norm);
    free(acc.v);
    free(b.p);
    return st;
}

/* A placeholder-shaped token at s[0..n) ("[TAG_12]") whose TAG is a class
 * of the policy: 1 with *cls, *num and its length; else 0. */
static int parse_placeholder(const hy_egress *e, const char *s, size_t n, int *cls, int *num,
                             size_t *plen) {
    if (n < 4 || s[0] != '[') return 0;
    size_t k = 1;
    while (k < n && k < HY_MAX_PLACEHOLDER && (is_alnum((unsigned char)s[k]) || s[k] == '_')) k++;
    if (k >= n || s[k] != ']') return 0;
    size_t us = k; /* after the last '_' */
    while (us > 1 && s[us - 1] != '_') us--;
    if (us <= 2) return 0;
    size_t tag_len = us - 2, ds = us;
    if (ds == k || k - ds > 9) return 0;
    int v = 0;
    for (size_t q = ds; q < k; q++) {
        if (!is_digit((unsigned char)s[q])) return 0;
        v = v * 10 + (s[q] - '0');
    }
    for (int c = 0; c < e->n_cls; c++) {
        const char *tag = class_tag(e->p, c);
        if (strlen(tag) != tag_len || memcmp(tag, s + 1, tag_len)) continue;
        *cls = c;
        *num = v;
        *plen = k + 1;
        return 1;
    }
    return 0;
}

/* A placeholder of this request at s[0..n): its value index, or -1. */
static int placeholder_at(const hy_egress *e, const char *s, size_t n, size_t *plen) {
    int c, num;
    if (!parse_placeholder(e, s, n, &c, &num, plen)) return -1;
    if (num < 1 || num > e->by_num[c].n) return -1;
    return e->by_num[c].v[num - 1];
}

/* Numbers the text uses literally ("[EMAIL_1]" typed by the user) are not
 * given to values, so that the answer's "[EMAIL_1]" is not mistaken for one. */
static slm_status reserve_literals(hy_egress *e, const char *t, size_t n) {
    for (const char *p = memchr(t, '[', n); p; p = memchr(p + 1, '[', n - (size_t)(p + 1 - t))) {
        int c, num;
        size_t pl;
        if ((size_t)(p + 1 - t) >= n) break;
        if (!parse_placeholder(e, p, n - (size_t)(p - t), &c, &num, &pl)) continue;
        if (num < 1 || (unsigned)num >= HY_MAX_RESERVED || num <= e->by_num[c].n) continue;
        hy_bits *b = &e->reserved[c];
        if ((size_t)num >= b->nbits) {
            size_t nb = b->nbits ? b->nbits : 64;
            while (nb <= (size_t)num) nb *= 2;
            unsigned char *q = realloc(b->b, nb / 8);
            if (!q) return slm_fail(SLM_ERR_NOMEM, "policy: out of memory");
            memset(q + b->nbits / 8, 0, (nb - b->nbits) / 8);
            b->b = q;
            b->nbits = nb;
        }
        b->b[(size_t)num / 8] |= (unsigned char)(1u << (num % 8));
    }
    return SLM_OK;
}

char *hy_egress_restore(const hy_egress *e, const char *answer, size_t len, size_t *out_len) {
    if (out_len) *out_len = 0;
    if (!answer) answer = "", len = 0;
    sbuf b = {0};
    if (sb_put(&b, "", 0)) return NULL;
    size_t pos = 0, i = 0;
    while (e && e->n_vals && i < len) {
        const char *br = memchr(answer + i, '[', len - i);
        if (!br) break;
        i = (size_t)(br - answer);
        size_t pl = 0;
        int vi = placeholder_at(e, answer + i, len - i, &pl);
        if (vi < 0) {
            i++;
            continue;
        }
        if (sb_put(&b, answer + pos, i - pos) || sb_put(&b, e->vals[vi].raw, e->vals[vi].raw_len)) {
            free(b.p);
            return NULL;
        }
        i += pl;
        pos = i;
    }
    if (sb_put(&b, answer + pos, len - pos)) {
        free(b.p);
        return NULL;
    }
    if (out_len) *out_len = b.n;
    return b.p;
}

size_t hy_egress_restore_hold(const hy_egress *e, const char *s, size_t len) {
    if (!e || !e->n_vals || !s) return 0;
    size_t lo = len > HY_MAX_PLACEHOLDER ? len - HY_MAX_PLACEHOLDER : 0;
    for (size_t i = len; i > lo; i--) {
        if (s[i - 1] != '[') continue;
        /* "[" followed only by placeholder characters up to the end */
        for (size_t k = i; k < len; k++)
            if (!is_alnum((unsigned char)s[k]) && s[k] != '_') return 0;
        return len - (i - 1);
    }
    return 0;
}
