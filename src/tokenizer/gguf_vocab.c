/* A tokenizer from GGUF metadata (tokenizer.ggml.*), as llama.cpp reads it:
 * "llama" = SentencePiece BPE by score with byte fallback, "gpt2" = byte-level
 * BPE by merge rank with the pre-tokenizer regexes of tokenizer.ggml.pre. */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/status.h"
#include "tokenizer/tok_internal.h"

#define META_U2581 "\xe2\x96\x81" /* the SentencePiece space */

static slm_status string_array(const gguf_file *f, const char *key, int required,
                               const gguf_kv **out) {
    *out = NULL;
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) {
        if (!required) return SLM_OK;
        return slm_fail(SLM_ERR_FORMAT, "%s: missing key '%s' (an array of strings)", gguf_path(f),
                        key);
    }
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING || !kv->strs)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is a %s, expected an array of strings",
                        gguf_path(f), key,
                        gguf_vtype_name(kv->type == GGUF_VT_ARRAY ? kv->arr_type : kv->type));
    *out = kv;
    return SLM_OK;
}

/* An optional numeric array of exactly n elements. */
static slm_status number_array(const gguf_file *f, const char *key, uint64_t n, int want_int,
                               const gguf_kv **out) {
    *out = NULL;
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return SLM_OK;
    int ok = kv->type == GGUF_VT_ARRAY && kv->arr_type != GGUF_VT_STRING &&
             kv->arr_type != GGUF_VT_ARRAY && kv->arr_type != GGUF_VT_BOOL;
    if (ok && want_int) ok = kv->arr_type != GGUF_VT_FLOAT32 && kv->arr_type != GGUF_VT_FLOAT64;
    if (!ok)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is a %s, expected an array of %s",
                        gguf_path(f), key,
                        gguf_vtype_name(kv->type == GGUF_VT_ARRAY ? kv->arr_type : kv->type),
                        want_int ? "integers" : "numbers");
    if (kv->arr_len != n)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: key '%s' has %llu elements, expected %llu (one per token)",
                        gguf_path(f), key, (unsigned long long)kv->arr_len, (unsigned long long)n);
    *out = kv;
    return SLM_OK;
}

/* A token id key: -1 when absent or negative. Ids past the vocabulary are an
 * error for BOS/EOS; for the others they are ignored with a warning. */
static slm_status token_id(const gguf_file *f, const char *key, int32_t n_vocab, int required,
                           int32_t *out) {
    int64_t v = -1;
    int present = gguf_find_kv(f, key) != NULL;
    SLM_TRY(gguf_get_i64_opt(f, key, &v));
    if (!present) return SLM_OK;    /* keep the default */
    if (v < 0 || v == UINT32_MAX) { /* -1 written as a u32 means "none" too */
        *out = -1;
        return SLM_OK;
    }
    if (v >= n_vocab) {
        if (required)
            return slm_fail(SLM_ERR_FORMAT, "%s: %s = %lld, beyond the %ld tokens", gguf_path(f),
                            key, (long long)v, (long)n_vocab);
        slm_log(SLM_LOG_WARN, "%s: %s = %lld is beyond the %ld tokens; ignored", gguf_path(f), key,
                (long long)v, (long)n_vocab);
        *out = -1;
        return SLM_OK;
    }
    *out = (int32_t)v;
    return SLM_OK;
}

static slm_status load_tokens(const gguf_file *f, slm_tokenizer *t, const gguf_kv *toks) {
    uint64_t n = toks->arr_len;
    const gguf_kv *scores, *types;
    SLM_TRY(number_array(f, "tokenizer.ggml.scores", n, 0, &scores));
    SLM_TRY(number_array(f, "tokenizer.ggml.token_type", n, 1, &types));
    for (uint64_t i = 0; i < n; i++) {
        int type = SLM_TOKTYPE_NORMAL;
        if (types) {
            int64_t v = gguf_arr_i64(types, i);
            if (v < 0 || v > SLM_TOKTYPE_BYTE)
                return slm_fail(SLM_ERR_FORMAT,
                                "%s: tokenizer.ggml.token_type[%llu] = %lld (expected 1..6)",
                                gguf_path(f), (unsigned long long)i, (long long)v);
            if (v != 0) type = (int)v;
        }
        float score = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
        unsigned flags = TOK_F_MODEL;
        if (type == SLM_TOKTYPE_CONTROL || type == SLM_TOKTYPE_UNKNOWN)
            flags |= TOK_F_ADDED | TOK_F_SPECIAL;
        else if (type == SLM_TOKTYPE_USER_DEFINED)
            flags |= TOK_F_ADDED;
        gguf_str s = toks->strs[i];
        slm_status st = tok_set_token(t, (int32_t)i, s.ptr, (size_t)s.len, score, type, flags);
        if (st != SLM_OK)
            return slm_fail_prefix(st, "%s: tokenizer.ggml.tokens[%llu]", gguf_path(f),
                                   (unsigned long long)i);
    }
    return SLM_OK;
}

static slm_status load_merges(const gguf_file *f, slm_tokenizer *t) {
    const gguf_kv *kv;
    SLM_TRY(string_array(f, "tokenizer.ggml.merges", 1, &kv));
    if (kv->arr_len > TOK_MAX_MERGES)
        return slm_fail(SLM_ERR_FORMAT, "%s: tokenizer.ggml.merges has %llu entries (at most %d)",
                        gguf_path(f), (unsigned long long)kv->arr_len, TOK_MAX_MERGES);
    SLM_TRY(tok_u64map_init(&t->merges, (size_t)kv->arr_len));
    uint64_t skipped = 0;
    for (uint64_t i = 0; i < kv->arr_len; i++) {
        gguf_str m = kv->strs[i];
        /* "a b", split at the first space after the first byte (as llama.cpp) */
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', (size_t)m.len - 1) : NULL;
        if (!sp)
            return slm_fail(SLM_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu]: expected \"a b\"",
                            gguf_path(f), (unsigned long long)i);
        size_t alen = (size_t)(sp - m.ptr);
        int added;
        SLM_TRY(
            tok_add_merge(t, m.ptr, alen, sp + 1, (size_t)m.len - alen - 1, (int32_t)i, 0, &added));
        if (!added) skipped++;
    }
    if (skipped)
        slm_log(SLM_LOG_WARN, "%s: %llu merges name pieces not in the vocabulary; ignored",
                gguf_path(f), (unsigned long long)skipped);
    return SLM_OK;
}

/* End-of-turn by name when the metadata gives none (as llama.cpp does). */
static void find_eot(slm_tokenizer *t) {
    static const char *const names[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"};
    for (size_t k = 0; k < sizeof names / sizeof names[0] && t->eot < 0; k++) {
        int32_t id = tok_lookup(t, names[k], strlen(names[k]));
        if (id >= 0 && t->tok[id].type == SLM_TOKTYPE_CONTROL) t->eot = id;
    }
}

static slm_status build(const gguf_file *f, slm_tokenizer **out) {
    gguf_str model;
    SLM_TRY(gguf_get_str(f, "tokenizer.ggml.model", &model));
    slm_tok_kind kind;
    if (gguf_str_eq(model, "llama"))
        kind = SLM_TOK_SPM;
    else if (gguf_str_eq(model, "gpt2"))
        kind = SLM_TOK_BPE;
    else
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: tokenizer.ggml.model '%.*s' is not supported (expected llama or gpt2)",
                        gguf_path(f), (int)(model.len > 64 ? 64 : model.len), model.ptr);
    const gguf_kv *toks;
    SLM_TRY(string_array(f, "tokenizer.ggml.tokens", 1, &toks));
    if (toks->arr_len == 0 || toks->arr_len > TOK_MAX_VOCAB)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tokenizer.ggml.tokens has %llu entries (expected 1..%d)", gguf_path(f),
                        (unsigned long long)toks->arr_len, TOK_MAX_VOCAB);
    int32_t n = (int32_t)toks->arr_len;
    slm_tokenizer *t;
    SLM_TRY(tok_new(kind, kind == SLM_TOK_SPM ? TOK_MODEL_SPM : TOK_MODEL_BPE, n, &t));
    *out = t;
    SLM_TRY(load_tokens(f, t, toks));
    SLM_TRY(tok_index_pieces(t));

    int add_bos = kind == SLM_TOK_SPM, add_eos = 0, add_space_prefix = kind == SLM_TOK_SPM;
    SLM_TRY(gguf_get_bool_opt(f, "tokenizer.ggml.add_bos_token", &add_bos));
    SLM_TRY(gguf_get_bool_opt(f, "tokenizer.ggml.add_eos_token", &add_eos));
    if (kind == SLM_TOK_SPM) {
        SLM_TRY(gguf_get_bool_opt(f, "tokenizer.ggml.add_space_prefix", &add_space_prefix));
        if (add_space_prefix) SLM_TRY(tok_add_norm(t, TOK_NORM_PREPEND, NULL, 0, META_U2581, 3));
        SLM_TRY(tok_add_norm(t, TOK_NORM_REPLACE, " ", 1, META_U2581, 3));
        t->byte_fallback = 1;
        t->decode_flags = add_space_prefix ? SLM_DECODE_STRIP_SPACE : 0;
        /* llama.cpp's defaults for SentencePiece vocabularies */
        t->bos = n > 1 ? 1 : -1;
        t->eos = n > 2 ? 2 : -1;
        t->unk = 0;
    } else {
        SLM_TRY(load_merges(f, t));
        gguf_str pre = {"default", 7};
        SLM_TRY(gguf_get_str_opt(f, "tokenizer.ggml.pre", &pre));
        SLM_TRY(tok_set_pre_type(t, pre.ptr, (size_t)pre.len));
        /* Qwen's tokenizer.json normalizes to NFC before splitting; GGUF does
         * not record normalizers, so the pre-tokenizer name stands for it
         * (llama.cpp skips it, and then differs from Hugging Face on
         * decomposed accents). */
        if (pre.len == 5 && memcmp(pre.ptr, "qwen2", 5) == 0)
            SLM_TRY(tok_add_norm(t, TOK_NORM_NFC, NULL, 0, NULL, 0));
        t->byte_level = 1;
    }
    SLM_TRY(token_id(f, "tokenizer.ggml.bos_token_id", n, 1, &t->bos));
    SLM_TRY(token_id(f, "tokenizer.ggml.eos_token_id", n, 1, &t->eos));
    SLM_TRY(token_id(f, "tokenizer.ggml.unknown_token_id", n, 0, &t->unk));
    SLM_TRY(token_id(f, "tokenizer.ggml.padding_token_id", n, 0, &t->pad));
    SLM_TRY(token_id(f, "tokenizer.ggml.eot_token_id", n, 0, &t->eot));
    SLM_TRY(token_id(f, "tokenizer.ggml.eom_token_id", n, 0, &t->eom));
    if (add_bos && t->bos < 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tokenizer.ggml.add_bos_token is set but there is no "
                        "bos_token_id",
                        gguf_path(f));
    if (add_eos && t->eos < 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tokenizer.ggml.add_eos_token is set but there is no "
                        "eos_token_id",
                        gguf_path(f));
    SLM_TRY(tok_set_affixes(t, &t->bos, add_bos ? 1 : 0, &t->eos, add_eos ? 1 : 0));
    find_eot(t);
    return tok_finalize(t);
}

slm_status slm_tokenizer_from_gguf(const gguf_file *f, slm_tokenizer **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_from_gguf: NULL argument");
    *out = NULL;
    if (!f) return slm_fail(SLM_ERR_INVALID_ARG, "slm_tokenizer_from_gguf: NULL argument");
    slm_tokenizer *t = NULL;
    slm_status st = build(f, &t);
    if (st != SLM_OK) {
        slm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return SLM_OK;
}
