/* A tokenizer from Hugging Face tokenizer.json (+ tokenizer_config.json),
 * read with cJSON. Supported: model BPE (byte_fallback, fuse_unk,
 * ignore_merges, unk_token); normalizers Sequence, Prepend, Replace (string),
 * NFC, NFD, Strip; pre-tokenizers Sequence, Split (string or regex, all
 * behaviours), ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit;
 * decoders ByteLevel, Metaspace, Sequence of Replace / ByteFallback / Fuse /
 * Strip; post-processors TemplateProcessing, ByteLevel, Roberta / Bert,
 * Sequence. Anything else is SLM_ERR_UNSUPPORTED naming it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/unicode.h"

#define HF_MAX_JSON ((size_t)1 << 30)   /* bytes of tokenizer.json */
#define HF_MAX_CONFIG ((size_t)1 << 26) /* bytes of tokenizer_config.json */
#define HF_SHOW 48                      /* bytes of a piece quoted in a message */
#define HF_VERSION_PREFIX "#version"    /* merges lines skipped, as Hugging Face does */
#define META_U2581 "\xe2\x96\x81"

typedef struct hf_ctx {
    const char *name; /* for messages */
    slm_tokenizer *t;
    int has_byte_fallback_decoder;
} hf_ctx;

/* A piece for messages: control bytes as '?', cut at HF_SHOW bytes. */
typedef struct shown {
    char s[HF_SHOW + 4];
} shown;

static shown show(const char *p, size_t n) {
    shown o;
    size_t k = n < HF_SHOW ? n : HF_SHOW;
    for (size_t i = 0; i < k; i++) o.s[i] = ((unsigned char)p[i] < 0x20) ? '?' : p[i];
    if (n > HF_SHOW)
        memcpy(o.s + k, "...", 4);
    else
        o.s[k] = '\0';
    return o;
}

static const char *type_name(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "a bool";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

static slm_status wrong(const hf_ctx *h, const char *where, const cJSON *j, const char *expected) {
    return slm_fail(SLM_ERR_FORMAT, "%s: %s is %s, expected %s", h->name, where, type_name(j),
                    expected);
}

static const cJSON *field(const cJSON *obj, const char *key) {
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* Optional bool: absent or null keeps *out. */
static slm_status get_bool(const hf_ctx *h, const cJSON *obj, const char *key, const char *where,
                           int *out) {
    const cJSON *j = field(obj, key);
    if (!j || cJSON_IsNull(j)) return SLM_OK;
    if (!cJSON_IsBool(j)) {
        char w[128];
        snprintf(w, sizeof w, "%s.%s", where, key);
        return wrong(h, w, j, "a bool");
    }
    *out = cJSON_IsTrue(j);
    return SLM_OK;
}

/* Optional string: absent or null gives NULL. */
static slm_status get_str(const hf_ctx *h, const cJSON *obj, const char *key, const char *where,
                          const char **out) {
    *out = NULL;
    const cJSON *j = field(obj, key);
    if (!j || cJSON_IsNull(j)) return SLM_OK;
    if (!cJSON_IsString(j)) {
        char w[128];
        snprintf(w, sizeof w, "%s.%s", where, key);
        return wrong(h, w, j, "a string");
    }
    *out = j->valuestring;
    return SLM_OK;
}

/* A token id: an integral number in [0, TOK_MAX_VOCAB). */
static slm_status get_id(const hf_ctx *h, const cJSON *j, const char *where, int32_t *out) {
    if (!cJSON_IsNumber(j)) return wrong(h, where, j, "a token id (a number)");
    double v = j->valuedouble;
    if (!(v >= 0) || v >= TOK_MAX_VOCAB || floor(v) != v)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s = %.17g is not a token id (expected 0..%d)",
                        h->name, where, v, TOK_MAX_VOCAB - 1);
    *out = (int32_t)v;
    return SLM_OK;
}

static slm_status check_utf8(const hf_ctx *h, const char *s, const char *where) {
    if (tok_utf8_valid(s, strlen(s))) return SLM_OK;
    return slm_fail(SLM_ERR_FORMAT, "%s: %s '%s' is not valid UTF-8", h->name, where,
                    show(s, strlen(s)).s);
}

/* ---- vocabulary ---------------------------------------------------------------- */

typedef struct added_tok {
    int32_t id;
    const char *content;
    int special, lstrip, rstrip, single_word, normalized;
} added_tok;

static slm_status read_added(const hf_ctx *h, const cJSON *arr, added_tok **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (!arr || cJSON_IsNull(arr)) return SLM_OK;
    if (!cJSON_IsArray(arr)) return wrong(h, "added_tokens", arr, "an array");
    int n = cJSON_GetArraySize(arr);
    if (n < 0 || n > TOK_MAX_VOCAB)
        return slm_fail(SLM_ERR_FORMAT, "%s: added_tokens has %d entries (at most %d)", h->name, n,
                        TOK_MAX_VOCAB);
    added_tok *a = calloc((size_t)n + 1, sizeof *a);
    if (!a) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory (added_tokens)", h->name);
    int i = 0;
    slm_status st = SLM_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        char where[64];
        snprintf(where, sizeof where, "added_tokens[%d]", i);
        if (!cJSON_IsObject(e)) {
            st = wrong(h, where, e, "an object");
            break;
        }
        char w2[80];
        snprintf(w2, sizeof w2, "%s.id", where);
        st = get_id(h, field(e, "id"), w2, &a[i].id);
        if (st == SLM_OK) st = get_str(h, e, "content", where, &a[i].content);
        if (st == SLM_OK && !a[i].content) {
            snprintf(w2, sizeof w2, "%s.content", where);
            st = wrong(h, w2, field(e, "content"), "a string");
        }
        if (st == SLM_OK) st = check_utf8(h, a[i].content, where);
        if (st == SLM_OK) st = get_bool(h, e, "special", where, &a[i].special);
        a[i].normalized = !a[i].special; /* Hugging Face's default */
        if (st == SLM_OK) st = get_bool(h, e, "normalized", where, &a[i].normalized);
        if (st == SLM_OK) st = get_bool(h, e, "lstrip", where, &a[i].lstrip);
        if (st == SLM_OK) st = get_bool(h, e, "rstrip", where, &a[i].rstrip);
        if (st == SLM_OK) st = get_bool(h, e, "single_word", where, &a[i].single_word);
        if (st != SLM_OK) break;
        i++;
    }
    if (st != SLM_OK) {
        free(a);
        return st;
    }
    *out = a;
    *n_out = i;
    return SLM_OK;
}

static int is_byte_piece(const char *p, size_t n) {
    if (n != 6 || p[0] != '<' || p[1] != '0' || p[2] != 'x' || p[5] != '>') return 0;
    for (int k = 3; k < 5; k++) {
        char c = p[k];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'))) return 0;
    }
    return 1;
}

/* The id of a model.vocab entry; a message names the piece. */
static slm_status vocab_id(const hf_ctx *h, const cJSON *e, int32_t *id) {
    if (get_id(h, e, "", id) == SLM_OK) return SLM_OK;
    char where[96];
    snprintf(where, sizeof where, "model.vocab['%s']", show(e->string, strlen(e->string)).s);
    return get_id(h, e, where, id);
}

static slm_status load_vocab(hf_ctx *h, const cJSON *vocab, const added_tok *added, int n_added,
                             const char *unk_token) {
    slm_tokenizer *t = h->t;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        SLM_TRY(vocab_id(h, e, &id));
        SLM_TRY(check_utf8(h, e->string, "model.vocab piece"));
        size_t len = strlen(e->string);
        if (t->tok[id].flags & TOK_F_DEFINED)
            return slm_fail(SLM_ERR_FORMAT, "%s: model.vocab gives id %ld to both '%s' and '%s'",
                            h->name, (long)id, show(tok_piece(t, id), t->tok[id].len).s,
                            show(e->string, len).s);
        int type = SLM_TOKTYPE_NORMAL;
        if (h->has_byte_fallback_decoder && is_byte_piece(e->string, len)) type = SLM_TOKTYPE_BYTE;
        if (unk_token && strcmp(unk_token, e->string) == 0) type = SLM_TOKTYPE_UNKNOWN;
        SLM_TRY(tok_set_token(t, id, e->string, len, 0.0f, type, TOK_F_MODEL));
    }
    for (int i = 0; i < n_added; i++) {
        const added_tok *a = &added[i];
        tok_entry *te = &t->tok[a->id];
        size_t len = strlen(a->content);
        unsigned flags = TOK_F_ADDED | (a->special ? TOK_F_SPECIAL : 0u) |
                         (a->lstrip ? TOK_F_LSTRIP : 0u) | (a->rstrip ? TOK_F_RSTRIP : 0u) |
                         (a->normalized ? TOK_F_NORMALIZED : 0u) |
                         (a->single_word ? TOK_F_SINGLE_WORD : 0u);
        int type = a->special ? SLM_TOKTYPE_CONTROL : SLM_TOKTYPE_USER_DEFINED;
        if (unk_token && strcmp(unk_token, a->content) == 0) type = SLM_TOKTYPE_UNKNOWN;
        if (te->flags & TOK_F_DEFINED) {
            if (te->len != len || memcmp(tok_piece(t, a->id), a->content, len) != 0) {
                if (!(te->flags & TOK_F_MODEL)) { /* the same id twice in added_tokens */
                    SLM_TRY(tok_set_token(t, a->id, a->content, len, 0.0f, type, flags));
                    continue;
                }
                return slm_fail(SLM_ERR_FORMAT,
                                "%s: added_tokens[%d] gives id %ld to '%s', which model.vocab "
                                "gives to '%s'",
                                h->name, i, (long)a->id, show(a->content, len).s,
                                show(tok_piece(t, a->id), te->len).s);
            }
            te->flags = (uint8_t)(te->flags | flags);
            te->type = (uint8_t)type;
            continue;
        }
        SLM_TRY(tok_set_token(t, a->id, a->content, len, 0.0f, type, flags));
    }
    return SLM_OK;
}

static slm_status load_merges(const hf_ctx *h, const cJSON *merges) {
    slm_tokenizer *t = h->t;
    if (!merges || cJSON_IsNull(merges)) return SLM_OK;
    if (!cJSON_IsArray(merges)) return wrong(h, "model.merges", merges, "an array");
    int n = cJSON_GetArraySize(merges);
    if (n > TOK_MAX_MERGES)
        return slm_fail(SLM_ERR_FORMAT, "%s: model.merges has %d entries (at most %d)", h->name, n,
                        TOK_MAX_MERGES);
    SLM_TRY(tok_u64map_init(&t->merges, (size_t)n));
    int32_t rank = 0;
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        const char *a, *b;
        size_t alen, blen;
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring;
            if (strncmp(s, HF_VERSION_PREFIX, strlen(HF_VERSION_PREFIX)) == 0) {
                i++;
                continue;
            }
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return slm_fail(SLM_ERR_FORMAT, "%s: model.merges[%d] '%s': expected \"a b\"",
                                h->name, i, show(s, strlen(s)).s);
            a = s;
            alen = (size_t)(sp - s);
            b = sp + 1;
            blen = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
            alen = strlen(a);
            blen = strlen(b);
        } else {
            char where[64];
            snprintf(where, sizeof where, "model.merges[%d]", i);
            return wrong(h, where, m, "\"a b\" or [\"a\", \"b\"]");
        }
        int added;
        SLM_TRY(tok_add_merge(t, a, alen, b, blen, rank, 1, &added));
        if (!added)
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: model.merges[%d] ('%s' + '%s'): a piece or the merged piece is "
                            "not in model.vocab",
                            h->name, i, show(a, alen).s, show(b, blen).s);
        rank++;
        i++;
    }
    return SLM_OK;
}

/* ---- normalizer ---------------------------------------------------------------- */

/* {"String": s} -> s; {"Regex": r} -> *regex = r. */
static slm_status get_pattern(const hf_ctx *h, const cJSON *obj, const char *where,
                              const char **str, const char **regex) {
    *str = *regex = NULL;
    const cJSON *p = field(obj, "pattern");
    char w[96];
    snprintf(w, sizeof w, "%s.pattern", where);
    if (!cJSON_IsObject(p)) return wrong(h, w, p, "{\"String\": ...} or {\"Regex\": ...}");
    SLM_TRY(get_str(h, p, "String", w, str));
    SLM_TRY(get_str(h, p, "Regex", w, regex));
    if (!*str && !*regex) return wrong(h, w, p, "{\"String\": ...} or {\"Regex\": ...}");
    return SLM_OK;
}

static slm_status type_of(const hf_ctx *h, const cJSON *obj, const char *where, const char **out) {
    if (!cJSON_IsObject(obj)) return wrong(h, where, obj, "an object");
    const cJSON *ty = field(obj, "type");
    if (!cJSON_IsString(ty)) {
        char w[96];
        snprintf(w, sizeof w, "%s.type", where);
        return wrong(h, w, ty, "a string");
    }
    *out = ty->valuestring;
    return SLM_OK;
}

static slm_status unsupported(const hf_ctx *h, const char *where, const char *type) {
    return slm_fail(SLM_ERR_UNSUPPORTED, "%s: %s type '%s' is not supported", h->name, where,
                    show(type, strlen(type)).s);
}

static slm_status load_normalizer(hf_ctx *h, const cJSON *n, const char *where, int depth) {
    slm_tokenizer *t = h->t;
    if (!n || cJSON_IsNull(n)) return SLM_OK;
    if (depth > TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: %s nests too deep", h->name, where);
    const char *ty;
    SLM_TRY(type_of(h, n, where, &ty));
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = field(n, "normalizers");
        char w[96];
        snprintf(w, sizeof w, "%s.normalizers", where);
        if (!cJSON_IsArray(list)) return wrong(h, w, list, "an array");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) SLM_TRY(load_normalizer(h, e, w, depth + 1));
        return SLM_OK;
    }
    if (strcmp(ty, "Prepend") == 0) {
        const char *s;
        SLM_TRY(get_str(h, n, "prepend", where, &s));
        if (!s) return wrong(h, "normalizer Prepend.prepend", field(n, "prepend"), "a string");
        return tok_add_norm(t, TOK_NORM_PREPEND, NULL, 0, s, strlen(s));
    }
    if (strcmp(ty, "Replace") == 0) {
        const char *s, *re, *content;
        SLM_TRY(get_pattern(h, n, where, &s, &re));
        SLM_TRY(get_str(h, n, "content", where, &content));
        if (!content)
            return wrong(h, "normalizer Replace.content", field(n, "content"), "a string");
        if (re) return unsupported(h, where, "Replace with a Regex pattern");
        return tok_add_norm(t, TOK_NORM_REPLACE, s, strlen(s), content, strlen(content));
    }
    if (strcmp(ty, "NFC") == 0) return tok_add_norm(t, TOK_NORM_NFC, NULL, 0, NULL, 0);
    if (strcmp(ty, "NFD") == 0) return tok_add_norm(t, TOK_NORM_NFD, NULL, 0, NULL, 0);
    if (strcmp(ty, "Strip") == 0) {
        int left = 1, right = 1;
        SLM_TRY(get_bool(h, n, "strip_left", where, &left));
        SLM_TRY(get_bool(h, n, "strip_right", where, &right));
        SLM_TRY(tok_add_norm(t, TOK_NORM_STRIP, NULL, 0, NULL, 0));
        t->norm[t->n_norm - 1].left = left;
        t->norm[t->n_norm - 1].right = right;
        return SLM_OK;
    }
    if (strcmp(ty, "Precompiled") == 0) { /* an empty charsmap does nothing */
        const cJSON *m = field(n, "precompiled_charsmap");
        if (!m || cJSON_IsNull(m) || (cJSON_IsString(m) && m->valuestring[0] == '\0'))
            return SLM_OK;
    }
    return unsupported(h, where, ty);
}

/* ---- pre-tokenizer ------------------------------------------------------------- */

static slm_status behavior_of(const hf_ctx *h, const cJSON *obj, const char *where,
                              tok_split_behavior *out) {
    const char *b;
    SLM_TRY(get_str(h, obj, "behavior", where, &b));
    static const struct {
        const char *name;
        tok_split_behavior b;
    } k[] = {{"Removed", TOK_SPLIT_REMOVED},
             {"Isolated", TOK_SPLIT_ISOLATED},
             {"MergedWithPrevious", TOK_SPLIT_MERGED_PREV},
             {"MergedWithNext", TOK_SPLIT_MERGED_NEXT},
             {"Contiguous", TOK_SPLIT_CONTIGUOUS}};
    if (b)
        for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
            if (strcmp(b, k[i].name) == 0) {
                *out = k[i].b;
                return SLM_OK;
            }
    return slm_fail(SLM_ERR_FORMAT,
                    "%s: %s.behavior is '%s', expected Removed, Isolated, MergedWithPrevious, "
                    "MergedWithNext or Contiguous",
                    h->name, where, b ? show(b, strlen(b)).s : "missing");
}

static slm_status prepend_scheme(const hf_ctx *h, const cJSON *obj, const char *where,
                                 tok_prepend *out) {
    const char *s;
    SLM_TRY(get_str(h, obj, "prepend_scheme", where, &s));
    if (!s) { /* older files: add_prefix_space */
        int add = 1;
        SLM_TRY(get_bool(h, obj, "add_prefix_space", where, &add));
        *out = add ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER;
        return SLM_OK;
    }
    if (strcmp(s, "always") == 0)
        *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(s, "first") == 0)
        *out = TOK_PREPEND_FIRST;
    else if (strcmp(s, "never") == 0)
        *out = TOK_PREPEND_NEVER;
    else
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %s.prepend_scheme '%s' (expected always, first, never)", h->name,
                        where, show(s, strlen(s)).s);
    return SLM_OK;
}

static slm_status metaspace_repl(const hf_ctx *h, const cJSON *obj, const char *where,
                                 const char **out) {
    SLM_TRY(get_str(h, obj, "replacement", where, out));
    if (!*out) *out = META_U2581;
    return SLM_OK;
}

static slm_status load_pretok(hf_ctx *h, const cJSON *p, const char *where, int depth) {
    slm_tokenizer *t = h->t;
    if (!p || cJSON_IsNull(p)) return SLM_OK;
    if (depth > TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: %s nests too deep", h->name, where);
    if (t->byte_level)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: %s: a pre-tokenizer after ByteLevel", h->name,
                        where);
    const char *ty;
    SLM_TRY(type_of(h, p, where, &ty));
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = field(p, "pretokenizers");
        char w[96];
        snprintf(w, sizeof w, "%s.pretokenizers", where);
        if (!cJSON_IsArray(list)) return wrong(h, w, list, "an array");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) SLM_TRY(load_pretok(h, e, w, depth + 1));
        return SLM_OK;
    }
    if (strcmp(ty, "Split") == 0) {
        const char *s, *re;
        tok_split_behavior b = TOK_SPLIT_ISOLATED;
        int invert = 0;
        SLM_TRY(get_pattern(h, p, where, &s, &re));
        SLM_TRY(behavior_of(h, p, where, &b));
        SLM_TRY(get_bool(h, p, "invert", where, &invert));
        slm_status st = re ? tok_add_split_regex(t, re, strlen(re), b, invert)
                           : tok_add_split_literal(t, s, strlen(s), b, invert);
        if (st != SLM_OK) return slm_fail_prefix(st, "%s: %s", h->name, where);
        return SLM_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        int prefix = 1, use_regex = 1;
        SLM_TRY(get_bool(h, p, "add_prefix_space", where, &prefix));
        SLM_TRY(get_bool(h, p, "use_regex", where, &use_regex));
        if (prefix) SLM_TRY(tok_add_prefix_space(t));
        if (use_regex) SLM_TRY(tok_set_pre_type(t, "gpt2", 4));
        t->byte_level = 1;
        return SLM_OK;
    }
    if (strcmp(ty, "Metaspace") == 0) {
        const char *repl;
        tok_prepend scheme = TOK_PREPEND_ALWAYS;
        int split = 1;
        SLM_TRY(metaspace_repl(h, p, where, &repl));
        SLM_TRY(prepend_scheme(h, p, where, &scheme));
        SLM_TRY(get_bool(h, p, "split", where, &split));
        return tok_add_metaspace(t, repl, strlen(repl), scheme, split);
    }
    if (strcmp(ty, "Digits") == 0) {
        int individual = 0;
        SLM_TRY(get_bool(h, p, "individual_digits", where, &individual));
        const char *re = individual ? "\\p{N}" : "\\p{N}+";
        return tok_add_split_regex(t, re, strlen(re), TOK_SPLIT_ISOLATED, 0);
    }
    if (strcmp(ty, "Whitespace") == 0) {
        const char *re = "\\w+|[^\\w\\s]+";
        return tok_add_split_regex(t, re, strlen(re), TOK_SPLIT_REMOVED, 1);
    }
    if (strcmp(ty, "WhitespaceSplit") == 0) {
        const char *re = "\\s+";
        return tok_add_split_regex(t, re, strlen(re), TOK_SPLIT_REMOVED, 0);
    }
    return unsupported(h, where, ty);
}

/* ---- decoder ----------------------------------------------------------------------- */

/* A first look: is this a byte-level tokenizer, and does its decoder do byte fallback? */
static int decoder_has(const cJSON *d, const char *type, int depth) {
    if (!cJSON_IsObject(d) || depth > TOK_MAX_STEPS) return 0;
    const cJSON *ty = field(d, "type");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, type) == 0) return 1;
    const cJSON *list = field(d, "decoders");
    if (!list) list = field(d, "pretokenizers");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) if (decoder_has(e, type, depth + 1)) return 1;
    return 0;
}

static slm_status load_decoder(hf_ctx *h, const cJSON *d, const char *where, int depth) {
    slm_tokenizer *t = h->t;
    if (!d || cJSON_IsNull(d)) return SLM_OK;
    if (depth > TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: %s nests too deep", h->name, where);
    const char *ty;
    SLM_TRY(type_of(h, d, where, &ty));
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = field(d, "decoders");
        char w[96];
        snprintf(w, sizeof w, "%s.decoders", where);
        if (!cJSON_IsArray(list)) return wrong(h, w, list, "an array");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) SLM_TRY(load_decoder(h, e, w, depth + 1));
        return SLM_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        t->decoder = TOK_DEC_BYTELEVEL;
        return SLM_OK;
    }
    if (strcmp(ty, "ByteFallback") == 0 || strcmp(ty, "Fuse") == 0) return SLM_OK;
    if (strcmp(ty, "Replace") == 0) {
        const char *s, *re, *content;
        SLM_TRY(get_pattern(h, d, where, &s, &re));
        SLM_TRY(get_str(h, d, "content", where, &content));
        if (s && content && strcmp(s, META_U2581) == 0 && strcmp(content, " ") == 0) {
            t->dec_meta = 1;
            return SLM_OK;
        }
        return unsupported(h, where, "Replace other than U+2581 -> ' '");
    }
    if (strcmp(ty, "Strip") == 0) {
        const char *content;
        const cJSON *start = field(d, "start"), *stop = field(d, "stop");
        SLM_TRY(get_str(h, d, "content", where, &content));
        int ok = content && strcmp(content, " ") == 0 && cJSON_IsNumber(start) &&
                 cJSON_IsNumber(stop) && stop->valuedouble == 0 &&
                 (start->valuedouble == 0 || start->valuedouble == 1);
        if (!ok) return unsupported(h, where, "Strip other than one leading space");
        if (start->valuedouble == 1) t->decode_flags |= SLM_DECODE_STRIP_SPACE;
        return SLM_OK;
    }
    if (strcmp(ty, "Metaspace") == 0) {
        const char *repl;
        tok_prepend scheme = TOK_PREPEND_ALWAYS;
        SLM_TRY(metaspace_repl(h, d, where, &repl));
        SLM_TRY(prepend_scheme(h, d, where, &scheme));
        if (strcmp(repl, META_U2581) != 0)
            return unsupported(h, where, "Metaspace other than U+2581");
        t->dec_meta = 1;
        if (scheme != TOK_PREPEND_NEVER) t->decode_flags |= SLM_DECODE_STRIP_SPACE;
        return SLM_OK;
    }
    return unsupported(h, where, ty);
}

/* ---- post-processor -------------------------------------------------------------- */

typedef struct affixes {
    int32_t pre[TOK_MAX_AFFIX], post[TOK_MAX_AFFIX];
    int n_pre, n_post;
} affixes;

static slm_status push_affix(const hf_ctx *h, affixes *a, int after, int32_t id) {
    int *n = after ? &a->n_post : &a->n_pre;
    if (*n >= TOK_MAX_AFFIX)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: post_processor adds more than %d tokens", h->name,
                        TOK_MAX_AFFIX);
    (after ? a->post : a->pre)[(*n)++] = id;
    return SLM_OK;
}

static slm_status template_single(const hf_ctx *h, const cJSON *p, affixes *a) {
    const cJSON *single = field(p, "single"), *specials = field(p, "special_tokens");
    if (!cJSON_IsArray(single)) return wrong(h, "post_processor.single", single, "an array");
    int after = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, single) {
        if (field(e, "Sequence")) {
            after = 1;
            continue;
        }
        const cJSON *sp = field(e, "SpecialToken");
        const char *name;
        SLM_TRY(get_str(h, sp, "id", "post_processor.single[].SpecialToken", &name));
        if (!name) return wrong(h, "post_processor.single[]", e, "a Sequence or a SpecialToken");
        const cJSON *def = field(specials, name);
        const cJSON *ids = field(def, "ids");
        if (!cJSON_IsArray(ids))
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: post_processor.special_tokens['%s'].ids: "
                            "expected an array of ids",
                            h->name, show(name, strlen(name)).s);
        const cJSON *idj;
        cJSON_ArrayForEach(idj, ids) {
            int32_t id;
            SLM_TRY(get_id(h, idj, "post_processor.special_tokens[].ids[]", &id));
            SLM_TRY(push_affix(h, a, after, id));
        }
    }
    return SLM_OK;
}

static slm_status load_post(const hf_ctx *h, const cJSON *p, affixes *a, int depth) {
    if (!p || cJSON_IsNull(p)) return SLM_OK;
    if (depth > TOK_MAX_STEPS)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: post_processor nests too deep", h->name);
    const char *ty;
    SLM_TRY(type_of(h, p, "post_processor", &ty));
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = field(p, "processors");
        if (!cJSON_IsArray(list)) return wrong(h, "post_processor.processors", list, "an array");
        const cJSON *e;
        cJSON_ArrayForEach(e, list) SLM_TRY(load_post(h, e, a, depth + 1));
        return SLM_OK;
    }
    if (strcmp(ty, "ByteLevel") == 0) return SLM_OK; /* offsets only */
    if (strcmp(ty, "TemplateProcessing") == 0) return template_single(h, p, a);
    if (strcmp(ty, "RobertaProcessing") == 0 || strcmp(ty, "BertProcessing") == 0) {
        const cJSON *cls = field(p, "cls"), *sep = field(p, "sep");
        int32_t c, s;
        if (!cJSON_IsArray(cls) || cJSON_GetArraySize(cls) != 2)
            return wrong(h, "post_processor.cls", cls, "[token, id]");
        if (!cJSON_IsArray(sep) || cJSON_GetArraySize(sep) != 2)
            return wrong(h, "post_processor.sep", sep, "[token, id]");
        SLM_TRY(get_id(h, cJSON_GetArrayItem(cls, 1), "post_processor.cls[1]", &c));
        SLM_TRY(get_id(h, cJSON_GetArrayItem(sep, 1), "post_processor.sep[1]", &s));
        SLM_TRY(push_affix(h, a, 0, c));
        return push_affix(h, a, 1, s);
    }
    return unsupported(h, "post_processor", ty);
}

/* ---- tokenizer_config.json -------------------------------------------------------- */

/* "bos_token": "<s>" or {"content": "<s>", ...}: the id, -1 when absent. */
static slm_status config_token(const hf_ctx *h, const cJSON *cfg, const char *key, int32_t *out) {
    const cJSON *j = field(cfg, key);
    if (!j || cJSON_IsNull(j)) return SLM_OK;
    if (cJSON_IsObject(j)) j = field(j, "content");
    if (!cJSON_IsString(j)) {
        char w[96];
        snprintf(w, sizeof w, "tokenizer_config.%s", key);
        return wrong(h, w, j, "a string or {\"content\": ...}");
    }
    int32_t id = slm_tokenizer_token_id(h->t, j->valuestring, strlen(j->valuestring));
    if (id < 0)
        return slm_fail(SLM_ERR_FORMAT, "%s: tokenizer_config.%s '%s' is not a token", h->name, key,
                        show(j->valuestring, strlen(j->valuestring)).s);
    *out = id;
    return SLM_OK;
}

/* ---- the whole ---------------------------------------------------------------------- */

static slm_status check_model(const hf_ctx *h, const cJSON *model) {
    if (!cJSON_IsObject(model)) return wrong(h, "model", model, "an object");
    const cJSON *ty = field(model, "type");
    if (ty && !cJSON_IsString(ty)) return wrong(h, "model.type", ty, "a string");
    if (ty && strcmp(ty->valuestring, "BPE") != 0)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (only BPE)",
                        h->name, show(ty->valuestring, strlen(ty->valuestring)).s);
    if (!ty && !field(model, "merges"))
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: model has no type and no merges (only BPE is "
                        "supported)",
                        h->name);
    const cJSON *vocab = field(model, "vocab");
    if (!cJSON_IsObject(vocab)) return wrong(h, "model.vocab", vocab, "an object");
    const cJSON *dropout = field(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) &&
        !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: model.dropout is not supported", h->name);
    static const char *const affix_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *j = field(model, affix_keys[k]);
        if (j && !cJSON_IsNull(j) && !(cJSON_IsString(j) && j->valuestring[0] == '\0'))
            return slm_fail(SLM_ERR_UNSUPPORTED, "%s: model.%s is not supported", h->name,
                            affix_keys[k]);
    }
    return SLM_OK;
}

static slm_status build(hf_ctx *h, const cJSON *root, const cJSON *cfg, slm_tokenizer **out) {
    if (!cJSON_IsObject(root)) return wrong(h, "the top level", root, "an object");
    const cJSON *model = field(root, "model");
    SLM_TRY(check_model(h, model));
    const cJSON *vocab = field(model, "vocab");

    const char *unk_token;
    int byte_fallback = 0, fuse_unk = 0, ignore_merges = 0;
    SLM_TRY(get_str(h, model, "unk_token", "model", &unk_token));
    SLM_TRY(get_bool(h, model, "byte_fallback", "model", &byte_fallback));
    SLM_TRY(get_bool(h, model, "fuse_unk", "model", &fuse_unk));
    SLM_TRY(get_bool(h, model, "ignore_merges", "model", &ignore_merges));

    added_tok *added = NULL;
    int n_added = 0;
    SLM_TRY(read_added(h, field(root, "added_tokens"), &added, &n_added));
    int32_t n_vocab = 0;
    const cJSON *e;
    slm_status st = SLM_OK;
    cJSON_ArrayForEach(e, vocab) {
        int32_t id;
        st = vocab_id(h, e, &id);
        if (st != SLM_OK) break;
        if (id + 1 > n_vocab) n_vocab = id + 1;
    }
    for (int i = 0; i < n_added; i++)
        if (added[i].id + 1 > n_vocab) n_vocab = added[i].id + 1;
    if (st == SLM_OK && n_vocab == 0)
        st = slm_fail(SLM_ERR_FORMAT, "%s: model.vocab is empty", h->name);

    const cJSON *dec = field(root, "decoder"), *pre = field(root, "pre_tokenizer");
    int byte_level = decoder_has(dec, "ByteLevel", 0) || decoder_has(pre, "ByteLevel", 0);
    h->has_byte_fallback_decoder = decoder_has(dec, "ByteFallback", 0);
    slm_tokenizer *t = NULL;
    if (st == SLM_OK)
        st = tok_new(byte_level ? SLM_TOK_BPE : SLM_TOK_SPM, TOK_MODEL_BPE, n_vocab, &t);
    if (st != SLM_OK) {
        free(added);
        return st;
    }
    *out = t;
    h->t = t;
    t->decoder = TOK_DEC_SPM; /* until the decoder says otherwise */
    t->dec_meta = 0;
    st = load_vocab(h, vocab, added, n_added, unk_token);
    free(added);
    SLM_TRY(st);
    SLM_TRY(tok_index_pieces(t));
    SLM_TRY(load_merges(h, field(model, "merges")));
    t->byte_fallback = byte_fallback;
    t->fuse_unk = fuse_unk;
    t->ignore_merges = ignore_merges;
    if (unk_token) {
        t->unk = tok_lookup(t, unk_token, strlen(unk_token));
        if (t->unk < 0)
            slm_log(SLM_LOG_WARN, "%s: model.unk_token '%s' is not in model.vocab", h->name,
                    show(unk_token, strlen(unk_token)).s);
    }
    SLM_TRY(load_normalizer(h, field(root, "normalizer"), "normalizer", 0));
    SLM_TRY(load_pretok(h, pre, "pre_tokenizer", 0));
    SLM_TRY(load_decoder(h, dec, "decoder", 0));
    affixes a = {{0}, {0}, 0, 0};
    SLM_TRY(load_post(h, field(root, "post_processor"), &a, 0));
    SLM_TRY(tok_set_affixes(t, a.pre, a.n_pre, a.post, a.n_post));

    /* specials: the config's names, else what the template adds */
    t->bos = a.n_pre > 0 ? a.pre[0] : -1;
    t->eos = a.n_post > 0 ? a.post[a.n_post - 1] : -1;
    SLM_TRY(tok_finalize(t)); /* the tries, for the lookups below */
    if (cfg) {
        if (!cJSON_IsObject(cfg)) return wrong(h, "tokenizer_config", cfg, "an object");
        SLM_TRY(config_token(h, cfg, "bos_token", &t->bos));
        SLM_TRY(config_token(h, cfg, "eos_token", &t->eos));
        SLM_TRY(config_token(h, cfg, "pad_token", &t->pad));
    }
    static const char *const eot_names[] = {"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>"};
    for (size_t k = 0; k < sizeof eot_names / sizeof eot_names[0] && t->eot < 0; k++)
        t->eot = slm_tokenizer_token_id(t, eot_names[k], strlen(eot_names[k]));
    t->eom = slm_tokenizer_token_id(t, "<|eom_id|>", strlen("<|eom_id|>"));
    return tok_finalize(t);
}

static slm_status parse(const hf_ctx *h, const char *json, size_t len, const char *what,
                        cJSON **out) {
    *out = cJSON_ParseWithLength(json, len);
    if (*out) return SLM_OK;
    const char *at = cJSON_GetErrorPtr();
    long off = (at && at >= json && at <= json + len) ? (long)(at - json) : -1;
    return slm_fail(SLM_ERR_FORMAT, "%s: %s is not valid JSON (near byte %ld)", h->name, what, off);
}

slm_status slm_tokenizer_from_hf_json_text(const char *json, size_t len, const char *config,
                                           size_t config_len, const char *name,
                                           slm_tokenizer **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_from_hf_json: NULL argument");
    *out = NULL;
    if (!json) return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_from_hf_json: NULL argument");
    hf_ctx h = {name ? name : "tokenizer.json", NULL, 0};
    cJSON *root = NULL, *cfg = NULL;
    slm_status st = parse(&h, json, len, "tokenizer.json", &root);
    if (st == SLM_OK && config) st = parse(&h, config, config_len, "tokenizer_config.json", &cfg);
    slm_tokenizer *t = NULL;
    if (st == SLM_OK) st = build(&h, root, cfg, &t);
    cJSON_Delete(root);
    cJSON_Delete(cfg);
    if (st != SLM_OK) {
        slm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SLM_OK;
}

slm_status slm_tokenizer_from_hf_json(const char *path_tokenizer_json,
                                      const char *path_tokenizer_config, slm_tokenizer **out) {
    if (!out || !path_tokenizer_json)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_from_hf_json: NULL argument");
    *out = NULL;
    char *json = NULL, *cfg = NULL;
    size_t len = 0, cfg_len = 0;
    SLM_TRY(slm_read_file(path_tokenizer_json, HF_MAX_JSON, &json, &len));
    slm_status st = SLM_OK;
    if (path_tokenizer_config)
        st = slm_read_file(path_tokenizer_config, HF_MAX_CONFIG, &cfg, &cfg_len);
    if (st == SLM_OK)
        st = slm_tokenizer_from_hf_json_text(json, len, cfg, cfg_len, path_tokenizer_json, out);
    free(json);
    free(cfg);
    return st;
}
