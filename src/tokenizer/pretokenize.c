/* Pre-tokenizers: regex / literal splits (PCRE2, UTF + UCP, JIT-compiled once
 * per tokenizer) with Hugging Face's split behaviours, Metaspace, ByteLevel's
 * prefix space; and the regexes llama.cpp uses for each GGUF
 * `tokenizer.ggml.pre`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define TOK_PCRE2_OPTIONS (PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF)
#define TOK_PCRE2_ERRMSG 256
#define TOK_SPANS_MIN 64
/* Match limit: PCRE2's default plus a budget per byte of the piece, so that
 * the linear backtracking of patterns like \s+(?!\S) over long runs of
 * spaces fits, while a pathological pattern still stops. */
#define TOK_MATCH_LIMIT_BASE 10000000u
#define TOK_MATCH_LIMIT_PER_BYTE 64u

/* Unicode White_Space, the set Oniguruma's (and Rust's) \s matches. PCRE2's
 * \s with UCP also takes U+180E; spelling the set out keeps the two equal. */
#define WS_CLASS_BODY                                                                              \
    "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"    \
    "\\x{205f}\\x{3000}"

/* Copies an Oniguruma-syntax pattern, rewriting \s and \S (outside classes)
 * and \s (inside classes). */
static slm_status translate(const char *pat, size_t len, tok_buf *out) {
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = pat[i];
        if (ch == '\\' && i + 1 < len) {
            char nx = pat[i + 1];
            if (nx == 's' || (nx == 'S' && !in_class)) {
                const char *rep = in_class    ? WS_CLASS_BODY
                                  : nx == 's' ? "[" WS_CLASS_BODY "]"
                                              : "[^" WS_CLASS_BODY "]";
                SLM_TRY(tok_buf_append(out, rep, strlen(rep)));
            } else {
                SLM_TRY(tok_buf_append(out, pat + i, 2));
            }
            i++;
            continue;
        }
        if (!in_class && ch == '[') {
            in_class = 1;
            SLM_TRY(tok_buf_push(out, ch));
            if (i + 1 < len && pat[i + 1] == '^') SLM_TRY(tok_buf_push(out, pat[++i]));
            if (i + 1 < len && pat[i + 1] == ']') SLM_TRY(tok_buf_push(out, pat[++i]));
            continue;
        }
        if (in_class && ch == '[' && i + 1 < len && pat[i + 1] == ':') {
            const char *end = NULL;
            for (size_t k = i + 2; k + 1 < len; k++)
                if (pat[k] == ':' && pat[k + 1] == ']') {
                    end = pat + k + 2;
                    break;
                }
            if (end) {
                SLM_TRY(tok_buf_append(out, pat + i, (size_t)(end - (pat + i))));
                i = (size_t)(end - pat) - 1;
                continue;
            }
        }
        if (in_class && ch == ']') in_class = 0;
        SLM_TRY(tok_buf_push(out, ch));
    }
    return SLM_OK;
}

static slm_status add_step(slm_tokenizer *t, tok_pretok **out) {
    if (t->n_pt >= TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "tokenizer: more than %d pre-tokenizers",
                        TOK_MAX_STEPS);
    *out = &t->pt[t->n_pt];
    memset(*out, 0, sizeof **out);
    return SLM_OK;
}

static slm_status compile(const char *pat, size_t len, uint32_t extra, pcre2_code **out) {
    int err;
    PCRE2_SIZE off;
    uint32_t opts = TOK_PCRE2_OPTIONS | extra;
    if (extra & PCRE2_LITERAL) opts &= ~(uint32_t)PCRE2_UCP; /* not allowed with LITERAL */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opts, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[TOK_PCRE2_ERRMSG];
        pcre2_get_error_message(err, msg, sizeof msg);
        return slm_fail(SLM_ERR_FORMAT, "pre-tokenizer regex: %s at offset %zu", (char *)msg,
                        (size_t)off);
    }
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter serves without JIT */
    *out = re;
    return SLM_OK;
}

static slm_status add_split(slm_tokenizer *t, const char *pat, size_t len, uint32_t extra,
                            tok_split_behavior behavior, int invert) {
    if (len > TOK_MAX_PATTERN)
        return slm_fail(SLM_ERR_UNSUPPORTED, "pre-tokenizer pattern of %zu bytes (at most %d)", len,
                        TOK_MAX_PATTERN);
    tok_pretok *p = NULL;
    SLM_TRY(add_step(t, &p));
    SLM_TRY(compile(pat, len, extra, &p->re));
    p->kind = TOK_PT_SPLIT;
    p->behavior = behavior;
    p->invert = invert;
    t->n_pt++;
    return SLM_OK;
}

slm_status tok_add_split_regex(slm_tokenizer *t, const char *pattern, size_t len,
                               tok_split_behavior behavior, int invert) {
    if (len > TOK_MAX_PATTERN)
        return slm_fail(SLM_ERR_UNSUPPORTED, "pre-tokenizer pattern of %zu bytes (at most %d)", len,
                        TOK_MAX_PATTERN);
    tok_buf b = {0};
    slm_status st = translate(pattern, len, &b);
    if (st == SLM_OK) st = add_split(t, b.data ? b.data : "", b.len, 0, behavior, invert);
    tok_buf_free(&b);
    return st;
}

slm_status tok_add_split_literal(slm_tokenizer *t, const char *lit, size_t len,
                                 tok_split_behavior behavior, int invert) {
    if (len == 0) return SLM_OK; /* splits nothing */
    return add_split(t, lit, len, PCRE2_LITERAL, behavior, invert);
}

slm_status tok_add_metaspace(slm_tokenizer *t, const char *repl, size_t repl_len,
                             tok_prepend prepend, int split) {
    uint32_t cp;
    if (repl_len == 0 || repl_len > sizeof t->pt[0].repl ||
        tok_utf8_next((const uint8_t *)repl, repl_len, &cp) != repl_len || cp == TOK_CP_INVALID)
        return slm_fail(SLM_ERR_FORMAT, "Metaspace replacement: expected one character");
    tok_pretok *p = NULL;
    SLM_TRY(add_step(t, &p));
    p->kind = TOK_PT_METASPACE;
    memcpy(p->repl, repl, repl_len);
    p->repl_len = repl_len;
    p->prepend = prepend;
    p->split = split;
    t->n_pt++;
    return SLM_OK;
}

slm_status tok_add_prefix_space(slm_tokenizer *t) {
    tok_pretok *p = NULL;
    SLM_TRY(add_step(t, &p));
    p->kind = TOK_PT_PREFIX_SPACE;
    t->n_pt++;
    return SLM_OK;
}

void tok_pretok_free(tok_pretok *p) {
    if (p->re) pcre2_code_free(p->re);
    p->re = NULL;
}

/* ---- GGUF tokenizer.ggml.pre ------------------------------------------------ */

#define PAT_GPT2                                                                                   \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define PAT_LLAMA3                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define PAT_QWEN2                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                          \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct pre_family {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    const char *patterns[4];
    int ignore_merges;
} pre_family;

static const pre_family k_pre[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|lfm2", {PAT_LLAMA3}, 1},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", {PAT_LLAMA3}, 0},
    {"qwen2|deepseek-r1-qwen|stablelm2|hunyuan|megrez", {PAT_QWEN2}, 0},
    {"gpt2|gpt-2|phi-2|roberta-bpe|olmo|jina-es|jina-de|jina-v2-es|jina-v2-de|gigachat",
     {PAT_GPT2},
     0},
    {"smollm|starcoder|refact|command-r|codeshell|exaone", {"\\p{N}", PAT_GPT2}, 0},
    /* llama.cpp's fallback for files without (or with an old) pre value */
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", PAT_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, 0},
};

static int name_in(const char *names, const char *name, size_t len) {
    const char *p = names;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == len && memcmp(p, name, len) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

slm_status tok_set_pre_type(slm_tokenizer *t, const char *name, size_t len) {
    for (size_t f = 0; f < sizeof k_pre / sizeof k_pre[0]; f++) {
        if (!name_in(k_pre[f].names, name, len)) continue;
        for (int k = 0; k < 4 && k_pre[f].patterns[k]; k++) {
            const char *p = k_pre[f].patterns[k];
            SLM_TRY(tok_add_split_regex(t, p, strlen(p), TOK_SPLIT_ISOLATED, 0));
        }
        t->ignore_merges = k_pre[f].ignore_merges;
        return SLM_OK;
    }
    return slm_fail(SLM_ERR_UNSUPPORTED, "tokenizer.ggml.pre '%.*s' is not supported", (int)len,
                    name);
}

/* ---- running them --------------------------------------------------------- */

static slm_status push_span(tok_ctx *c, int list, size_t off, size_t len, int origin0) {
    if (len == 0) return SLM_OK;
    if (c->n_spans[list] == c->cap_spans[list]) {
        size_t cap = c->cap_spans[list] ? c->cap_spans[list] * 2 : TOK_SPANS_MIN;
        tok_span *p = realloc(c->spans[list], cap * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (pre-tokens)");
        c->spans[list] = p;
        c->cap_spans[list] = cap;
    }
    c->spans[list][c->n_spans[list]++] = (tok_span){off, len, origin0};
    return SLM_OK;
}

static slm_status push_mark(tok_ctx *c, size_t *n, size_t s, size_t e, int match) {
    if (*n == c->cap_marks) {
        size_t cap = c->cap_marks ? c->cap_marks * 2 : TOK_SPANS_MIN;
        tok_mark *p = realloc(c->marks, cap * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "tokenizer: out of memory (pre-tokens)");
        c->marks = p;
        c->cap_marks = cap;
    }
    c->marks[(*n)++] = (tok_mark){s, e, match};
    return SLM_OK;
}

/* Turns c->marks[0, n) (matches and the gaps between them, covering the
 * span) into pieces as the split behaviour says (Hugging Face's
 * SplitDelimiterBehavior), pushing the non-empty ones onto list `dst`. */
static slm_status emit(tok_ctx *c, size_t n, const tok_span *in, tok_split_behavior behavior,
                       int invert, int dst) {
    tok_mark *m = c->marks;
    if (invert)
        for (size_t i = 0; i < n; i++) m[i].match = !m[i].match;
    size_t w = 0;
    int prev_match = 0;
    switch (behavior) {
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!m[i].match) m[w++] = m[i];
        break;
    case TOK_SPLIT_ISOLATED:
        w = n;
        break;
    case TOK_SPLIT_MERGED_PREV:
        for (size_t i = 0; i < n; i++) {
            if (m[i].match && !prev_match && w > 0)
                m[w - 1].e = m[i].e;
            else
                m[w++] = m[i];
            prev_match = m[i].match;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT: /* a match joins the piece after it */
        w = 0;
        for (size_t k = n; k-- > 0;) {
            if (m[k].match && !prev_match && w > 0) {
                m[n - w].s = m[k].s; /* extend the piece kept last (stored from the end) */
            } else {
                m[n - 1 - w] = m[k];
                w++;
            }
            prev_match = m[k].match;
        }
        memmove(m, m + (n - w), w * sizeof *m);
        break;
    case TOK_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < n; i++) {
            if (w > 0 && m[i].match == prev_match)
                m[w - 1].e = m[i].e;
            else
                m[w++] = m[i];
            prev_match = m[i].match;
        }
        break;
    }
    for (size_t i = 0; i < w; i++)
        SLM_TRY(push_span(c, dst, in->off + m[i].s, m[i].e - m[i].s, in->origin0 && m[i].s == 0));
    return SLM_OK;
}

static slm_status split_regex(tok_ctx *c, const tok_pretok *p, const tok_span *in, int dst) {
    const char *s = c->work.data + in->off;
    size_t n = in->len, pos = 0, prev = 0, nm = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
    uint64_t limit = TOK_MATCH_LIMIT_BASE + (uint64_t)TOK_MATCH_LIMIT_PER_BYTE * n;
    pcre2_set_match_limit(c->mctx, limit > UINT32_MAX ? UINT32_MAX : (uint32_t)limit);
    while (pos <= n) {
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, 0, c->md, c->mctx);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its frames on the heap */
            rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_JIT, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[TOK_PCRE2_ERRMSG];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return slm_fail(SLM_ERR_INTERNAL, "tokenizer: pre-tokenizer regex failed: %s",
                            (char *)msg);
        }
        size_t ms = ov[0], me = ov[1];
        if (ms < prev || me < ms || me > n) break; /* cannot happen; stay safe */
        if (ms > prev) SLM_TRY(push_mark(c, &nm, prev, ms, 0));
        SLM_TRY(push_mark(c, &nm, ms, me, 1));
        prev = me;
        if (me > ms) {
            pos = me;
        } else { /* empty match: step over one character */
            if (ms >= n) break;
            uint32_t cp;
            pos = ms + tok_utf8_next((const uint8_t *)s + ms, n - ms, &cp);
        }
    }
    if (prev < n) SLM_TRY(push_mark(c, &nm, prev, n, 0));
    return emit(c, nm, in, p->behavior, p->invert, dst);
}

static slm_status metaspace(tok_ctx *c, const tok_pretok *p, const tok_span *in, int dst) {
    /* rewrite: spaces -> replacement, maybe a replacement in front */
    size_t grow = in->len * p->repl_len + p->repl_len;
    SLM_TRY(tok_buf_reserve(&c->work, grow));
    const char *s = c->work.data + in->off; /* valid after the reserve */
    size_t start = c->work.len;
    char *w = c->work.data + start;
    size_t o = 0;
    int starts_with =
        in->len >= 1 &&
        (s[0] == ' ' || (in->len >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0));
    if (!starts_with &&
        (p->prepend == TOK_PREPEND_ALWAYS || (p->prepend == TOK_PREPEND_FIRST && in->origin0))) {
        memcpy(w + o, p->repl, p->repl_len);
        o += p->repl_len;
    }
    for (size_t i = 0; i < in->len; i++) {
        if (s[i] == ' ') {
            memcpy(w + o, p->repl, p->repl_len);
            o += p->repl_len;
        } else {
            w[o++] = s[i];
        }
    }
    c->work.len += o;
    c->work.data[c->work.len] = '\0';
    tok_span rewritten = {start, o, in->origin0};
    if (!p->split) return push_span(c, dst, start, o, in->origin0);
    size_t nm = 0, prev = 0;
    const char *r = c->work.data + start;
    for (size_t i = 0; i + p->repl_len <= o;) {
        if (memcmp(r + i, p->repl, p->repl_len) == 0) {
            if (i > prev) SLM_TRY(push_mark(c, &nm, prev, i, 0));
            SLM_TRY(push_mark(c, &nm, i, i + p->repl_len, 1));
            i += p->repl_len;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev < o) SLM_TRY(push_mark(c, &nm, prev, o, 0));
    return emit(c, nm, &rewritten, TOK_SPLIT_MERGED_NEXT, 0, dst);
}

static slm_status prefix_space(tok_ctx *c, const tok_span *in, int dst) {
    if (c->work.data[in->off] == ' ') return push_span(c, dst, in->off, in->len, in->origin0);
    SLM_TRY(tok_buf_reserve(&c->work, in->len + 1));
    size_t start = c->work.len;
    c->work.data[start] = ' ';
    memcpy(c->work.data + start + 1, c->work.data + in->off, in->len);
    c->work.len += in->len + 1;
    c->work.data[c->work.len] = '\0';
    return push_span(c, dst, start, in->len + 1, in->origin0);
}

slm_status tok_pretokenize_and_encode(tok_ctx *c, size_t off, size_t len, int origin0) {
    const slm_tokenizer *t = c->t;
    int cur = 0;
    c->n_spans[0] = c->n_spans[1] = 0;
    SLM_TRY(push_span(c, cur, off, len, origin0));
    for (int k = 0; k < t->n_pt; k++) {
        const tok_pretok *p = &t->pt[k];
        int nxt = cur ^ 1;
        c->n_spans[nxt] = 0;
        for (size_t i = 0; i < c->n_spans[cur]; i++) {
            tok_span in = c->spans[cur][i];
            switch (p->kind) {
            case TOK_PT_SPLIT:
                SLM_TRY(split_regex(c, p, &in, nxt));
                break;
            case TOK_PT_METASPACE:
                SLM_TRY(metaspace(c, p, &in, nxt));
                break;
            case TOK_PT_PREFIX_SPACE:
                SLM_TRY(prefix_space(c, &in, nxt));
                break;
            }
        }
        cur = nxt;
    }
    for (size_t i = 0; i < c->n_spans[cur]; i++) {
        const tok_span *w = &c->spans[cur][i];
        const char *word = c->work.data + w->off; /* the model does not touch c->work */
        if (t->model == TOK_MODEL_SPM)
            SLM_TRY(tok_spm_word(c, word, w->len));
        else
            SLM_TRY(tok_bpe_word(c, word, w->len));
    }
    return SLM_OK;
}
