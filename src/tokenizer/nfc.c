/* NFC / NFD (Unicode canonical decomposition, ordering, composition; UAX #15)
 * over the generated tables in nfc_table.c. */
#include "tokenizer/nfc.h"

#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/unicode.h"

/* Hangul syllables compose and decompose by arithmetic. */
#define HANGUL_S 0xAC00u
#define HANGUL_L 0x1100u
#define HANGUL_V 0x1161u
#define HANGUL_T 0x11A7u
#define HANGUL_L_COUNT 19u
#define HANGUL_V_COUNT 21u
#define HANGUL_T_COUNT 28u
#define HANGUL_N_COUNT (HANGUL_V_COUNT * HANGUL_T_COUNT)
#define HANGUL_S_COUNT (HANGUL_L_COUNT * HANGUL_N_COUNT)

#define NFC_FIRST_NONTRIVIAL 0xC0u  /* below this nothing decomposes, composes or has a class */
#define NFC_INVALID_BIT 0x80000000u /* marks an invalid byte carried through */
#define NFC_MAX_DECOMP 32           /* code points one code point decomposes into */
#define NFC_SHORT_RUN 16            /* runs of marks this short are insertion-sorted */

uint32_t tok_nfc_class(uint32_t cp) {
    if (cp < 0x300 || (cp & NFC_INVALID_BIT)) return 0;
    size_t lo = 0, hi = tok_nfc_ccc_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_nfc_ccc[mid].first)
            hi = mid;
        else if (cp > tok_nfc_ccc[mid].last)
            lo = mid + 1;
        else
            return tok_nfc_ccc[mid].ccc;
    }
    return 0;
}

static const tok_nfc_triple *find_decomp(uint32_t cp) {
    size_t lo = 0, hi = tok_nfc_decomp_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_nfc_decomp[mid].a)
            hi = mid;
        else if (cp > tok_nfc_decomp[mid].a)
            lo = mid + 1;
        else
            return &tok_nfc_decomp[mid];
    }
    return NULL;
}

static uint32_t compose_pair(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_L_COUNT && b >= HANGUL_V &&
        b < HANGUL_V + HANGUL_V_COUNT)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_V_COUNT + (b - HANGUL_V)) * HANGUL_T_COUNT;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_S_COUNT && (a - HANGUL_S) % HANGUL_T_COUNT == 0 &&
        b > HANGUL_T && b < HANGUL_T + HANGUL_T_COUNT)
        return a + (b - HANGUL_T);
    size_t lo = 0, hi = tok_nfc_comp_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const tok_nfc_triple *e = &tok_nfc_comp[mid];
        if (a < e->a || (a == e->a && b < e->b))
            hi = mid;
        else if (a > e->a || b > e->b)
            lo = mid + 1;
        else
            return e->c;
    }
    return 0;
}

typedef struct cp_vec {
    uint32_t *v;
    size_t n, cap;
} cp_vec;

static slm_status cp_push(cp_vec *c, uint32_t cp) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        uint32_t *p = realloc(c->v, cap * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (NFC)");
        c->v = p;
        c->cap = cap;
    }
    c->v[c->n++] = cp;
    return SLM_OK;
}

/* Full canonical decomposition of cp, appended. */
static slm_status decompose(cp_vec *out, uint32_t cp) {
    if (cp < NFC_FIRST_NONTRIVIAL || (cp & NFC_INVALID_BIT)) return cp_push(out, cp);
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_S_COUNT) {
        uint32_t s = cp - HANGUL_S;
        SLM_TRY(cp_push(out, HANGUL_L + s / HANGUL_N_COUNT));
        SLM_TRY(cp_push(out, HANGUL_V + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT));
        if (s % HANGUL_T_COUNT) SLM_TRY(cp_push(out, HANGUL_T + s % HANGUL_T_COUNT));
        return SLM_OK;
    }
    /* an explicit stack: decompositions nest a few levels deep */
    uint32_t stack[NFC_MAX_DECOMP];
    int top = 0;
    stack[top++] = cp;
    while (top > 0) {
        uint32_t c = stack[--top];
        const tok_nfc_triple *d = c >= NFC_FIRST_NONTRIVIAL ? find_decomp(c) : NULL;
        if (!d || top + 2 > NFC_MAX_DECOMP) {
            SLM_TRY(cp_push(out, c));
            continue;
        }
        if (d->c) stack[top++] = d->c; /* second part after the first */
        stack[top++] = d->b;
    }
    return SLM_OK;
}

/* Stable sort of each run of non-starters by combining class. */
static slm_status reorder(cp_vec *c) {
    uint32_t *v = c->v;
    size_t i = 0;
    uint32_t *tmp = NULL;
    while (i < c->n) {
        if (tok_nfc_class(v[i]) == 0) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < c->n && tok_nfc_class(v[j]) != 0) j++;
        size_t n = j - i;
        if (n <= NFC_SHORT_RUN) {
            for (size_t a = i + 1; a < j; a++) {
                uint32_t x = v[a], cx = tok_nfc_class(x);
                size_t b = a;
                while (b > i && tok_nfc_class(v[b - 1]) > cx) {
                    v[b] = v[b - 1];
                    b--;
                }
                v[b] = x;
            }
        } else { /* counting sort by class: linear even for adversarial runs */
            uint32_t *nt = realloc(tmp, n * sizeof *tmp);
            if (!nt) {
                free(tmp);
                return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (NFC)");
            }
            tmp = nt;
            size_t count[257] = {0};
            for (size_t a = i; a < j; a++) count[tok_nfc_class(v[a]) + 1]++;
            for (int k = 1; k < 257; k++) count[k] += count[k - 1];
            for (size_t a = i; a < j; a++) tmp[count[tok_nfc_class(v[a])]++] = v[a];
            memcpy(v + i, tmp, n * sizeof *tmp);
        }
        i = j;
    }
    free(tmp);
    return SLM_OK;
}

static void compose(cp_vec *c) {
    uint32_t *v = c->v;
    size_t n = c->n, w = 0;
    long starter = -1;   /* index in the output of the last starter */
    int last_class = -1; /* class of the last kept character after it; -1: none */
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = v[i];
        int cls = (int)tok_nfc_class(cp);
        if (starter >= 0 && (last_class < 0 || (last_class < cls && last_class != 0))) {
            uint32_t comp = compose_pair(v[starter], cp);
            if (comp) {
                v[starter] = comp;
                continue;
            }
        }
        if (cls == 0) {
            starter = (long)w;
            last_class = -1;
        } else {
            last_class = cls;
        }
        v[w++] = cp;
    }
    c->n = w;
}

static slm_status normalize(const char *text, size_t len, int composed, tok_buf *out) {
    size_t i = 0;
    while (i < len && (uint8_t)text[i] < NFC_FIRST_NONTRIVIAL) i++;
    if (i == len) return tok_buf_append(out, text, len); /* nothing to do */
    cp_vec c = {0};
    slm_status st = SLM_OK;
    const uint8_t *s = (const uint8_t *)text;
    for (i = 0; i < len && st == SLM_OK;) {
        uint32_t cp;
        size_t l = tok_utf8_next(s + i, len - i, &cp);
        if (cp == TOK_CP_INVALID) cp = NFC_INVALID_BIT | s[i];
        st = decompose(&c, cp);
        i += l;
    }
    if (st == SLM_OK) st = reorder(&c);
    if (st == SLM_OK && composed) compose(&c);
    if (st == SLM_OK) st = tok_buf_reserve(out, c.n * 4);
    for (size_t k = 0; k < c.n && st == SLM_OK; k++) {
        uint32_t cp = c.v[k];
        if (cp & NFC_INVALID_BIT) {
            out->data[out->len++] = (char)(cp & 0xFF);
        } else {
            out->len += tok_utf8_encode(cp, out->data + out->len);
        }
    }
    if (st == SLM_OK) out->data[out->len] = '\0';
    free(c.v);
    return st;
}

slm_status tok_nfc_append(const char *text, size_t len, tok_buf *out) {
    return normalize(text, len, 1, out);
}

slm_status tok_nfd_append(const char *text, size_t len, tok_buf *out) {
    return normalize(text, len, 0, out);
}
