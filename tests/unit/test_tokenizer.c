/* Tokenizer tests: small hand-built vocabularies (merging order, byte
 * fallback, special tokens, split behaviours, decoding), malformed
 * tokenizer.json and GGUF metadata, stories260K through GGUF, and the five
 * real tokenizers of ../shared/fixtures/tokenizers against the ids Hugging
 * Face `tokenizers` produced, plus round trips of random text. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mmap_file.h"
#include "check.h"
#include "format/gguf.h"
#include "slm.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

#define META "\xe2\x96\x81" /* U+2581 */
#define PATH_MAX_LEN 1024
#define MAX_FIXTURE_IDS 65536
#define ROUNDTRIP_CASES 200

/* ---- helpers ---------------------------------------------------------------------- */

static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 64 ? " ...\n" : "\n");
}

/* Encodes and compares with the expected ids (n_want of them). */
static int expect_ids(const slm_tokenizer *t, const char *text, int flags, const int32_t *want,
                      size_t n_want) {
    int32_t *ids = NULL;
    size_t n = 0;
    slm_status st = slm_tokenizer_encode(t, text, strlen(text), flags, &ids, &n);
    int ok = st == SLM_OK && ids_equal(ids, n, want, n_want);
    CHECK_MSG(ok, "encode('%s', %d): %s", text, flags, st ? slm_last_error() : "wrong ids");
    if (!ok && st == SLM_OK) {
        print_ids("got ", ids, n);
        print_ids("want", want, n_want);
    }
    free(ids);
    return ok;
}

static void expect_decode(const slm_tokenizer *t, const int32_t *ids, size_t n, int flags,
                          const char *want) {
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(slm_tokenizer_decode(t, ids, n, flags, &text, &len));
    CHECK_MSG(text && len == strlen(want) && memcmp(text, want, len) == 0,
              "decode: got '%s', want '%s'", text ? text : "(null)", want);
    free(text);
}

/* ---- a small SentencePiece vocabulary (scores, llama.cpp style) ------------------------- */

typedef struct piece_def {
    const char *text;
    float score;
    int type;
} piece_def;

static slm_tokenizer *build_spm(int add_space_prefix, int with_bytes) {
    static const piece_def k_pieces[] = {
        {"<unk>", 0, SLM_TOKTYPE_UNKNOWN}, {"<s>", 0, SLM_TOKTYPE_CONTROL},
        {"</s>", 0, SLM_TOKTYPE_CONTROL},  {META, -1, SLM_TOKTYPE_NORMAL},
        {"a", -2, SLM_TOKTYPE_NORMAL},     {"b", -2, SLM_TOKTYPE_NORMAL},
        {"c", -2, SLM_TOKTYPE_NORMAL},     {"ab", -3, SLM_TOKTYPE_NORMAL},
        {"bc", -1.5f, SLM_TOKTYPE_NORMAL}, {META "a", -0.5f, SLM_TOKTYPE_NORMAL},
        {"aa", -4, SLM_TOKTYPE_NORMAL},    {"<x>", 0, SLM_TOKTYPE_USER_DEFINED},
    };
    int n_pieces = (int)(sizeof k_pieces / sizeof k_pieces[0]);
    int n = n_pieces + (with_bytes ? 256 : 0);
    slm_tokenizer *t = NULL;
    CHECK_OK(tok_new(SLM_TOK_SPM, TOK_MODEL_SPM, n, &t));
    if (!t) return NULL;
    for (int i = 0; i < n_pieces; i++) {
        unsigned fl = TOK_F_MODEL;
        int ty = k_pieces[i].type;
        if (ty == SLM_TOKTYPE_CONTROL || ty == SLM_TOKTYPE_UNKNOWN)
            fl |= TOK_F_ADDED | TOK_F_SPECIAL;
        if (ty == SLM_TOKTYPE_USER_DEFINED) fl |= TOK_F_ADDED;
        CHECK_OK(tok_set_token(t, i, k_pieces[i].text, strlen(k_pieces[i].text), k_pieces[i].score,
                               ty, fl));
    }
    for (int b = 0; with_bytes && b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        CHECK_OK(tok_set_token(t, n_pieces + b, name, 6, 0, SLM_TOKTYPE_BYTE, TOK_F_MODEL));
    }
    CHECK_OK(tok_index_pieces(t));
    if (add_space_prefix) CHECK_OK(tok_add_norm(t, TOK_NORM_PREPEND, NULL, 0, META, 3));
    CHECK_OK(tok_add_norm(t, TOK_NORM_REPLACE, " ", 1, META, 3));
    t->bos = 1;
    t->eos = 2;
    t->unk = 0;
    t->decode_flags = add_space_prefix ? SLM_DECODE_STRIP_SPACE : 0;
    int32_t bos = 1;
    CHECK_OK(tok_set_affixes(t, &bos, 1, NULL, 0));
    CHECK_OK(tok_finalize(t));
    return t;
}

static void test_spm_small(void) {
    slm_tokenizer *t = build_spm(1, 1);
    if (!t) return;
    enum {
        UNK = 0,
        BOS = 1,
        EOS = 2,
        SP = 3,
        A = 4,
        B = 5,
        C = 6,
        AB = 7,
        BC = 8,
        SPA = 9,
        AA = 10,
        X = 11,
        BYTE0 = 12
    };
    /* "abc": "bc" (-1.5) beats "ab" (-3); "▁a" (-0.5) first of all */
    expect_ids(t, "abc", 0, (int32_t[]){SPA, BC}, 2);
    expect_ids(t, "abc", SLM_TOKENIZE_ADD_BOS, (int32_t[]){BOS, SPA, BC}, 3);
    expect_ids(t, "", SLM_TOKENIZE_ADD_BOS, (int32_t[]){BOS}, 1);
    expect_ids(t, "", 0, NULL, 0);
    /* ties go to the leftmost pair: "aaa" -> "▁a" then "aa" */
    expect_ids(t, "aaa", 0, (int32_t[]){SPA, AA}, 2);
    /* spaces become U+2581; a character outside the vocabulary becomes its bytes */
    expect_ids(t, "a b", 0, (int32_t[]){SPA, SP, B}, 3);
    expect_ids(t, "\xc3\xa9", 0, (int32_t[]){SP, BYTE0 + 0xC3, BYTE0 + 0xA9}, 3);
    /* control tokens only with PARSE_SPECIAL; user-defined always; a space
     * prefix again after each of them */
    expect_ids(t, "<s>a", 0, (int32_t[]){SP, BYTE0 + '<', BYTE0 + 's', BYTE0 + '>', A}, 5);
    expect_ids(t, "<s>a", SLM_TOKENIZE_PARSE_SPECIAL, (int32_t[]){BOS, SPA}, 2);
    expect_ids(t, "a<x>b", 0, (int32_t[]){SPA, X, SP, B}, 4);
    /* decoding */
    expect_decode(t, (int32_t[]){BOS, SPA, SP, B}, 4, 0, " a b");
    expect_decode(t, (int32_t[]){BOS, SPA, SP, B}, 4, SLM_DECODE_STRIP_SPACE, "a b");
    expect_decode(t, (int32_t[]){BOS, SPA, SP, B}, 4, SLM_DECODE_SPECIAL, "<s> a b");
    expect_decode(t, (int32_t[]){SP, BYTE0 + 0xC3, BYTE0 + 0xA9, X}, 4, SLM_DECODE_STRIP_SPACE,
                  "\xc3\xa9<x>");
    expect_decode(t, (int32_t[]){UNK, EOS}, 2, 0, "");
    expect_decode(t, (int32_t[]){UNK, EOS}, 2, SLM_DECODE_SPECIAL, "<unk></s>");
    char buf[8];
    CHECK(slm_tokenizer_decode_token(t, SPA, 0, buf, sizeof buf) == 2 && memcmp(buf, " a", 2) == 0);
    CHECK(slm_tokenizer_decode_token(t, SPA, SLM_DECODE_STRIP_SPACE, buf, sizeof buf) == 1 &&
          buf[0] == 'a');
    CHECK(slm_tokenizer_decode_token(t, SPA, 0, buf, 1) == 2 && buf[0] == ' ');
    CHECK(slm_tokenizer_decode_token(t, SPA, 0, NULL, 0) == 2);
    CHECK(slm_tokenizer_decode_token(t, -1, 0, buf, sizeof buf) == 0);
    CHECK(slm_tokenizer_decode_token(t, 1 << 30, 0, buf, sizeof buf) == 0);
    CHECK(slm_tokenizer_decode_token(t, BYTE0 + 0x41, 0, buf, sizeof buf) == 1 && buf[0] == 'A');
    CHECK(slm_tokenizer_is_eog(t, EOS) && !slm_tokenizer_is_eog(t, BOS) &&
          !slm_tokenizer_is_eog(t, -5));
    CHECK(slm_tokenizer_token_id(t, "<x>", 3) == X && slm_tokenizer_token_id(t, "zz", 2) == -1);
    size_t plen;
    CHECK(slm_tokenizer_piece(t, SPA, &plen) && plen == 4);
    CHECK(slm_tokenizer_piece(t, 99999, &plen) == NULL && plen == 0);
    /* bad arguments */
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_ERR(slm_tokenizer_encode(t, NULL, 3, 0, &ids, &n), SLM_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(slm_tokenizer_decode(t, NULL, 3, 0, NULL, NULL), SLM_ERR_INVALID_ARG, "NULL");
    CHECK_OK(slm_tokenizer_encode(t, NULL, 0, 0, &ids, &n));
    CHECK(n == 0);
    free(ids);
    slm_tokenizer_free(t);

    /* no byte tokens: unknown characters become <unk>; no space prefix */
    t = build_spm(0, 0);
    if (!t) return;
    expect_ids(t, "a\xc3\xa9", 0, (int32_t[]){A, UNK, UNK}, 3);
    expect_ids(t, " a", 0, (int32_t[]){SPA}, 1);
    slm_tokenizer_free(t);
}

/* ---- a small byte-level BPE vocabulary (ranks) ---------------------------------------- */

/* GPT-2's char for a byte, UTF-8 into out (NUL-terminated); returns its length. */
static size_t byte_char(int b, char out[4]) {
    int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    unsigned cp = (unsigned)b;
    if (!printable) {
        cp = 0x100;
        for (int x = 0; x < b; x++)
            if (!((x >= 0x21 && x <= 0x7E) || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) cp++;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    out[2] = 0;
    return 2;
}

/* 256 byte chars, then `extra` pieces, merges "a b" in rank order, then
 * specials (CONTROL). */
static slm_tokenizer *build_bytelevel(const char *const *extra, int n_extra,
                                      const char *const *merges, int n_merges,
                                      const char *const *specials, int n_specials) {
    int n = 256 + n_extra + n_specials;
    slm_tokenizer *t = NULL;
    CHECK_OK(tok_new(SLM_TOK_BPE, TOK_MODEL_BPE, n, &t));
    if (!t) return NULL;
    for (int b = 0; b < 256; b++) {
        char c[4];
        size_t l = byte_char(b, c);
        CHECK_OK(tok_set_token(t, b, c, l, 0, SLM_TOKTYPE_NORMAL, TOK_F_MODEL));
    }
    for (int i = 0; i < n_extra; i++)
        CHECK_OK(tok_set_token(t, 256 + i, extra[i], strlen(extra[i]), 0, SLM_TOKTYPE_NORMAL,
                               TOK_F_MODEL));
    for (int i = 0; i < n_specials; i++)
        CHECK_OK(tok_set_token(t, 256 + n_extra + i, specials[i], strlen(specials[i]), 0,
                               SLM_TOKTYPE_CONTROL, TOK_F_ADDED | TOK_F_SPECIAL));
    CHECK_OK(tok_index_pieces(t));
    for (int i = 0; i < n_merges; i++) {
        const char *sp = strchr(merges[i], ' ');
        int added = 0;
        CHECK_OK(tok_add_merge(t, merges[i], (size_t)(sp - merges[i]), sp + 1, strlen(sp + 1), i, 1,
                               &added));
        CHECK_MSG(added, "merge '%s' not added", merges[i]);
    }
    t->byte_level = 1;
    return t;
}

static void test_bytelevel_small(void) {
    static const char *const extra[] = {"ab", "bc", "abc",
                                        "\xc4\xa0"
                                        "a",
                                        "xyz"};
    static const char *const merges[] = {"b c", "a b", "a bc", "\xc4\xa0 a"};
    static const char *const specials[] = {"<|end|>"};
    slm_tokenizer *t = build_bytelevel(extra, 5, merges, 4, specials, 1);
    if (!t) return;
    CHECK_OK(tok_set_pre_type(t, "gpt2", 4));
    t->eos = 256 + 5;
    CHECK_OK(tok_finalize(t));
    enum { AB = 256, BC, ABC, GA, XYZ, END };
    /* "b c" has the lower rank: abc -> a + bc -> abc */
    expect_ids(t, "abc", 0, (int32_t[]){ABC}, 1);
    expect_ids(t, "abab", 0, (int32_t[]){AB, AB}, 2);
    expect_ids(t, "a a", 0, (int32_t[]){'a', GA}, 2);
    /* without ignore_merges "xyz" is three bytes; with it, one token */
    expect_ids(t, "xyz", 0, (int32_t[]){'x', 'y', 'z'}, 3);
    t->ignore_merges = 1;
    expect_ids(t, "xyz", 0, (int32_t[]){XYZ}, 1);
    expect_ids(t, "<|end|>", 0, (int32_t[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7);
    expect_ids(t, "x<|end|>", SLM_TOKENIZE_PARSE_SPECIAL, (int32_t[]){'x', END}, 2);
    CHECK(slm_tokenizer_is_eog(t, END));
    /* bytes of invalid UTF-8 stand for themselves and come back */
    expect_ids(t, "\xff\xfe", 0, (int32_t[]){0xFF, 0xFE}, 2);
    expect_decode(t, (int32_t[]){0xFF, 0xFE, GA, END}, 4, 0, "\xff\xfe a");
    expect_decode(t, (int32_t[]){0xFF, 0xFE, GA, END}, 4, SLM_DECODE_SPECIAL, "\xff\xfe a<|end|>");
    slm_tokenizer_free(t);
}

/* Split behaviours, seen through a vocabulary whose pieces are the expected pre-tokens. */
static void test_split_behaviours(void) {
    static const char *const extra[] = {"a-", "b-", "-b", "-c", "--"};
    static const struct {
        tok_split_behavior b;
        int32_t want[8];
        size_t n;
    } k_cases[] = {
        {TOK_SPLIT_ISOLATED, {'a', '-', 'b', '-', '-', 'c'}, 6},
        {TOK_SPLIT_REMOVED, {'a', 'b', 'c'}, 3},
        {TOK_SPLIT_MERGED_PREV, {256, 257, '-', 'c'}, 4},
        {TOK_SPLIT_MERGED_NEXT, {'a', 258, '-', 259}, 4},
        {TOK_SPLIT_CONTIGUOUS, {'a', '-', 'b', 260, 'c'}, 5},
    };
    for (size_t k = 0; k < sizeof k_cases / sizeof k_cases[0]; k++) {
        slm_tokenizer *t = build_bytelevel(extra, 5, NULL, 0, NULL, 0);
        if (!t) return;
        t->ignore_merges = 1;
        CHECK_OK(tok_add_split_literal(t, "-", 1, k_cases[k].b, 0));
        CHECK_OK(tok_finalize(t));
        expect_ids(t, "a-b--c", 0, k_cases[k].want, k_cases[k].n);
        slm_tokenizer_free(t);
    }
    /* invert: the matches are the pieces, the rest is the delimiter */
    slm_tokenizer *t = build_bytelevel(extra, 5, NULL, 0, NULL, 0);
    if (!t) return;
    t->ignore_merges = 1;
    CHECK_OK(tok_add_split_regex(t, "[a-c]-", 6, TOK_SPLIT_REMOVED, 1));
    CHECK_OK(tok_finalize(t));
    expect_ids(t, "a-b--c", 0, (int32_t[]){256, 257}, 2);
    slm_tokenizer_free(t);
}

/* \s is Unicode White_Space, as in Oniguruma (PCRE2 alone would add U+180E). */
static void test_regex_whitespace(void) {
    slm_tokenizer *t = build_bytelevel(NULL, 0, NULL, 0, NULL, 0);
    if (!t) return;
    CHECK_OK(tok_add_split_regex(t, "\\s+|[^\\s]+", 11, TOK_SPLIT_ISOLATED, 0));
    CHECK_OK(tok_add_split_regex(t, "[\\s]", 4, TOK_SPLIT_ISOLATED, 0));
    CHECK_OK(tok_finalize(t));
    int32_t *ids = NULL;
    size_t n = 0;
    /* U+180E (e1 a0 8e) is not a space: "x" U+180E "y" stays one pre-token */
    CHECK_OK(slm_tokenizer_encode(t, "x\xe1\xa0\x8ey", 5, 0, &ids, &n));
    CHECK(n == 5);
    free(ids);
    CHECK_ERR(tok_add_split_regex(t, "(unclosed", 9, TOK_SPLIT_ISOLATED, 0), SLM_ERR_FORMAT,
              "regex");
    CHECK_ERR(tok_set_pre_type(t, "no-such-pre", 11), SLM_ERR_UNSUPPORTED, "no-such-pre");
    slm_tokenizer_free(t);
}

/* ---- malformed tokenizer.json ------------------------------------------------------------ */

static void expect_json_error(const char *json, slm_status want, const char *needle) {
    slm_tokenizer *t = (slm_tokenizer *)1;
    slm_status st = slm_tokenizer_from_hf_json_text(json, strlen(json), NULL, 0, "bad.json", &t);
    CHECK_MSG(st == want, "json %s: got %s (%s), want %s", json, slm_status_str(st),
              slm_last_error(), slm_status_str(want));
    CHECK_MSG(strstr(slm_last_error(), needle) != NULL, "message '%s' lacks '%s'", slm_last_error(),
              needle);
    CHECK(t == NULL);
    if (st == SLM_OK) slm_tokenizer_free(t);
}

#define JV(v) "{\"model\":{\"type\":\"BPE\",\"vocab\":" v ",\"merges\":[]}}"

static void test_bad_json(void) {
    expect_json_error("", SLM_ERR_FORMAT, "not valid JSON");
    expect_json_error("{\"model\":", SLM_ERR_FORMAT, "not valid JSON");
    expect_json_error("[]", SLM_ERR_FORMAT, "top level");
    expect_json_error("{}", SLM_ERR_FORMAT, "model is missing");
    expect_json_error("{\"model\":3}", SLM_ERR_FORMAT, "model is a number");
    expect_json_error("{\"model\":{\"type\":\"BPE\"}}", SLM_ERR_FORMAT, "model.vocab is missing");
    expect_json_error(JV("[1,2]"), SLM_ERR_FORMAT, "model.vocab is an array");
    expect_json_error(JV("{}"), SLM_ERR_FORMAT, "empty");
    expect_json_error(JV("{\"a\":\"0\"}"), SLM_ERR_FORMAT, "model.vocab['a'] is a string");
    expect_json_error(JV("{\"a\":-1}"), SLM_ERR_FORMAT, "not a token id");
    expect_json_error(JV("{\"a\":1.5}"), SLM_ERR_FORMAT, "not a token id");
    expect_json_error(JV("{\"a\":1e12}"), SLM_ERR_FORMAT, "not a token id");
    expect_json_error(JV("{\"a\":0,\"b\":0}"), SLM_ERR_FORMAT, "gives id 0 to both");
    expect_json_error(JV("{\"a\xff\":0}"), SLM_ERR_FORMAT, "not valid UTF-8");
    expect_json_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_UNSUPPORTED, "WordPiece");
    expect_json_error("{\"model\":{\"type\":7,\"vocab\":{\"a\":0}}}", SLM_ERR_FORMAT,
                      "model.type is a number");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}",
                      SLM_ERR_FORMAT, "model.merges is an object");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b c\"]}}",
                      SLM_ERR_FORMAT, "model.merges[0]");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a a\"]}}",
                      SLM_ERR_FORMAT, "not in model.vocab");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[[1,2]]}}",
                      SLM_ERR_FORMAT, "model.merges[0]");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"byte_fallback\":1}}",
                      SLM_ERR_FORMAT, "model.byte_fallback is a number");
    expect_json_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"dropout\":0.1}}",
                      SLM_ERR_UNSUPPORTED, "dropout");
    expect_json_error("{\"added_tokens\":{},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_FORMAT, "added_tokens is an object");
    expect_json_error("{\"added_tokens\":[{\"id\":1}],\"model\":{\"type\":\"BPE\",\"vocab\":"
                      "{\"a\":0}}}",
                      SLM_ERR_FORMAT, "added_tokens[0].content is missing");
    expect_json_error("{\"added_tokens\":[{\"id\":99999999999,\"content\":\"x\"}],\"model\":"
                      "{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_FORMAT, "added_tokens[0].id");
    expect_json_error("{\"added_tokens\":[{\"id\":0,\"content\":\"x\"}],\"model\":"
                      "{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_FORMAT, "which model.vocab gives to 'a'");
    expect_json_error("{\"normalizer\":{\"type\":\"Lowercase\"},\"model\":{\"type\":\"BPE\","
                      "\"vocab\":{\"a\":0}}}",
                      SLM_ERR_UNSUPPORTED, "Lowercase");
    expect_json_error("{\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":3},\"model\":"
                      "{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_FORMAT, "normalizer.normalizers is a number");
    expect_json_error(
        "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
        "\"behavior\":\"Isolated\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
        SLM_ERR_FORMAT, "regex");
    expect_json_error(
        "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},"
        "\"behavior\":\"Sideways\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
        SLM_ERR_FORMAT, "Sideways");
    expect_json_error("{\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},\"model\":{\"type\":"
                      "\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_UNSUPPORTED, "BertPreTokenizer");
    expect_json_error("{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\","
                      "\"vocab\":{\"a\":0}}}",
                      SLM_ERR_UNSUPPORTED, "WordPiece");
    expect_json_error("{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{"
                      "\"SpecialToken\":{\"id\":\"<s>\"}}],\"special_tokens\":{}},\"model\":"
                      "{\"type\":\"BPE\",\"vocab\":{\"a\":0}}}",
                      SLM_ERR_FORMAT, "special_tokens['<s>']");

    /* a good file, a bad config */
    const char *good = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
                       "\"merges\":[\"a b\"]}}";
    slm_tokenizer *t = NULL;
    CHECK_ERR(slm_tokenizer_from_hf_json_text(good, strlen(good), "{\"bos_token\":\"<zz>\"}", 21,
                                              "ok.json", &t),
              SLM_ERR_FORMAT, "bos_token '<zz>' is not a token");
    CHECK_ERR(
        slm_tokenizer_from_hf_json_text(good, strlen(good), "{\"bos_token\":5}", 15, "ok.json", &t),
        SLM_ERR_FORMAT, "tokenizer_config.bos_token is a number");
    const char *cfg = "{\"bos_token\":{\"content\":\"b\"}}";
    CHECK_OK(slm_tokenizer_from_hf_json_text(good, strlen(good), cfg, strlen(cfg), "ok.json", &t));
    if (t) {
        CHECK(slm_tokenizer_bos(t) == 1 && slm_tokenizer_n_vocab(t) == 3);
        expect_ids(t, "abab", 0, (int32_t[]){2, 2}, 2);
        slm_tokenizer_free(t);
    }
    CHECK_ERR(slm_tokenizer_from_hf_json("/nonexistent/tokenizer.json", NULL, &t), SLM_ERR_IO,
              "nonexistent");
}

/* ---- tokenizer.json features the five real files do not use -------------------------------- */

static slm_tokenizer *json_tok(const char *json) {
    slm_tokenizer *t = NULL;
    CHECK_OK(slm_tokenizer_from_hf_json_text(json, strlen(json), NULL, 0, "feature.json", &t));
    return t;
}

/* Single characters 0..8, then "▁Hey" 9, "▁friend" 10, "▁▁" 11; ignore_merges. */
#define FEATURE_VOCAB                                                                              \
    "\"vocab\":{\"" META "\":0,\"H\":1,\"e\":2,\"y\":3,\"f\":4,\"r\":5,\"i\":6,\"n\":7,\"d\":8,"   \
    "\"" META "Hey\":9,\"" META "friend\":10,\"" META META "\":11},\"merges\":[],"                 \
    "\"ignore_merges\":true"

static void test_json_metaspace(void) {
    const char *always = "{\"added_tokens\":[{\"id\":12,\"content\":\"<s>\",\"special\":true}],"
                         "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"" META
                         "\",\"prepend_scheme\":\"always\",\"split\":true},"
                         "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"" META
                         "\",\"prepend_scheme\":\"always\",\"split\":true},"
                         "\"model\":{\"type\":\"BPE\"," FEATURE_VOCAB "}}";
    slm_tokenizer *t = json_tok(always);
    if (t) {
        expect_ids(t, "Hey friend", 0, (int32_t[]){9, 10}, 2);
        expect_ids(t, "<s>Hey", SLM_TOKENIZE_PARSE_SPECIAL, (int32_t[]){12, 9}, 2);
        CHECK(slm_tokenizer_decode_flags(t) == SLM_DECODE_STRIP_SPACE);
        expect_decode(t, (int32_t[]){9, 10}, 2, SLM_DECODE_STRIP_SPACE, "Hey friend");
        slm_tokenizer_free(t);
    }
    /* "first": only at the very start of the text; no split: one word */
    const char *first = "{\"added_tokens\":[{\"id\":12,\"content\":\"<s>\",\"special\":true}],"
                        "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"" META
                        "\",\"prepend_scheme\":\"first\",\"split\":false},"
                        "\"model\":{\"type\":\"BPE\"," FEATURE_VOCAB "}}";
    t = json_tok(first);
    if (t) {
        expect_ids(t, "Hey", 0, (int32_t[]){9}, 1);
        expect_ids(t, "<s>Hey", SLM_TOKENIZE_PARSE_SPECIAL, (int32_t[]){12, 1, 2, 3}, 4);
        expect_ids(t, " Hey", 0, (int32_t[]){9}, 1); /* no second prefix */
        expect_ids(t, "Hey friend", 0, (int32_t[]){0, 1, 2, 3, 0, 4, 5, 6, 2, 7, 8}, 11);
        slm_tokenizer_free(t);
    }
}

static void test_json_added_options(void) {
    /* lstrip / rstrip take the whitespace beside the token; single_word wants
     * non-word characters around it; a normalized token is found after the
     * normalizer (here spaces -> U+2581) */
    const char *json =
        "{\"added_tokens\":["
        "{\"id\":12,\"content\":\"<r>\",\"special\":false,\"rstrip\":true,\"normalized\":false},"
        "{\"id\":13,\"content\":\"<l>\",\"special\":false,\"lstrip\":true,\"normalized\":false},"
        "{\"id\":14,\"content\":\"en\",\"special\":false,\"single_word\":true,"
        "\"normalized\":false},"
        "{\"id\":15,\"content\":\"" META "fr\",\"special\":false,\"normalized\":true}],"
        "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"" META
        "\"},"
        "\"model\":{\"type\":\"BPE\"," FEATURE_VOCAB "}}";
    slm_tokenizer *t = json_tok(json);
    if (!t) return;
    expect_ids(t, "H<r>  e", 0, (int32_t[]){1, 12, 2}, 3);
    expect_ids(t, "H  <l>e", 0, (int32_t[]){1, 13, 2}, 3);
    expect_ids(t, "H en e", 0, (int32_t[]){1, 0, 14, 0, 2}, 5);
    expect_ids(t, "Hen", 0, (int32_t[]){1, 2, 7}, 3);
    expect_ids(t, "H fr", 0, (int32_t[]){1, 15}, 2);
    expect_ids(t, "H" META "fr", 0, (int32_t[]){1, 15}, 2);
    CHECK(slm_tokenizer_token_type(t, 12) == SLM_TOKTYPE_USER_DEFINED);
    CHECK(slm_tokenizer_token_id(t, META "fr", 5) == 15);
    slm_tokenizer_free(t);
}

/* ---- malformed GGUF tokenizer metadata ----------------------------------------------------- */

typedef struct gguf_case {
    const char *model;     /* tokenizer.ggml.model, NULL: absent */
    int n_tokens;          /* -1: tokens absent */
    int n_scores, n_types; /* array lengths, -1 absent */
    int32_t bad_type;      /* written as the last token's type when non-zero */
    const char *merge;     /* the one merge, NULL absent */
    const char *pre;       /* NULL: absent */
    int64_t bos;           /* -2: absent */
} gguf_case;

static slm_status load_gguf_case(const gguf_case *c, slm_tokenizer **out) {
    *out = NULL;
    static const char *const toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab", META};
    float scores[7] = {0, 0, 0, -1, -1, -2, -1};
    int32_t types[7] = {2, 3, 3, 1, 1, 1, 1};
    if (c->bad_type) types[6] = c->bad_type;
    gguf_writer *w = NULL;
    uint8_t *mem = NULL;
    size_t size = 0;
    gguf_file *f = NULL;
    slm_status st = gguf_writer_new(&w);
    if (st == SLM_OK && c->model) st = gguf_writer_set_str(w, "tokenizer.ggml.model", c->model);
    if (st == SLM_OK && c->n_tokens >= 0)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)c->n_tokens);
    if (st == SLM_OK && c->n_scores >= 0)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores,
                                 (uint64_t)c->n_scores);
    if (st == SLM_OK && c->n_types >= 0)
        st = gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types,
                                 (uint64_t)c->n_types);
    if (st == SLM_OK && c->merge)
        st = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", &c->merge, 1);
    if (st == SLM_OK && c->pre) st = gguf_writer_set_str(w, "tokenizer.ggml.pre", c->pre);
    if (st == SLM_OK && c->bos != -2)
        st = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos);
    if (st == SLM_OK) st = gguf_writer_to_memory(w, &mem, &size);
    if (st == SLM_OK) st = gguf_open_memory(mem, size, "tok.gguf", &f);
    if (st == SLM_OK) st = slm_tokenizer_from_gguf(f, out);
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);
    return st;
}

static void test_bad_gguf(void) {
    slm_tokenizer *t = NULL;
    gguf_case ok = {"llama", 7, 7, 7, 0, NULL, NULL, -2};
    CHECK_OK(load_gguf_case(&ok, &t));
    if (t) {
        CHECK(slm_tokenizer_kind(t) == SLM_TOK_SPM && slm_tokenizer_add_bos(t) &&
              slm_tokenizer_bos(t) == 1 && strcmp(slm_tokenizer_kind_name(t), "llama") == 0);
        expect_ids(t, "ab", SLM_TOKENIZE_ADD_BOS, (int32_t[]){1, 6, 5}, 3);
        slm_tokenizer_free(t);
    }
    gguf_case c = ok;
    c.model = NULL;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "tokenizer.ggml.model");
    c = ok;
    c.model = "bert";
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_UNSUPPORTED, "'bert'");
    c = ok;
    c.n_tokens = -1;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "tokenizer.ggml.tokens");
    c = ok;
    c.n_tokens = 0;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "tokenizer.ggml.tokens");
    c = ok;
    c.n_scores = 6;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "tokenizer.ggml.scores");
    c = ok;
    c.bad_type = 42;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "token_type[6] = 42");
    c = ok;
    c.bos = 7;
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "bos_token_id = 7");
    c = ok;
    c.model = "gpt2";
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "tokenizer.ggml.merges");
    c.merge = "ab";
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_FORMAT, "merges[0]");
    c.merge = "a b";
    c.pre = "martian";
    CHECK_ERR(load_gguf_case(&c, &t), SLM_ERR_UNSUPPORTED, "martian");
    c.pre = "llama-bpe";
    CHECK_OK(load_gguf_case(&c, &t));
    if (t) {
        CHECK(slm_tokenizer_kind(t) == SLM_TOK_BPE && !slm_tokenizer_add_bos(t));
        slm_tokenizer_free(t);
    }
}

/* ---- stories260K (GGUF, SentencePiece) ----------------------------------------------------- */

static void test_stories260k(void) {
    char path[PATH_MAX_LEN];
    if (!check_shared_path("models/stories260K.gguf", path, sizeof path)) {
        printf("skip: stories260K.gguf not found under ../shared/models\n");
        return;
    }
    gguf_file *f = NULL;
    slm_tokenizer *t = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (!f) return;
    CHECK_OK(slm_tokenizer_from_gguf(f, &t));
    if (t) {
        CHECK(slm_tokenizer_n_vocab(t) == 512 && slm_tokenizer_bos(t) == 1 &&
              slm_tokenizer_eos(t) == 2 && slm_tokenizer_add_bos(t));
        expect_ids(t, "Once upon a time", SLM_TOKENIZE_ADD_BOS, (int32_t[]){1, 403, 407, 261, 378},
                   5);
        char ref[PATH_MAX_LEN];
        char *txt = NULL;
        size_t len = 0;
        if (check_shared_path("fixtures/reference/ids-stories260K.txt", ref, sizeof ref) &&
            slm_read_file(ref, 1 << 16, &txt, &len) == SLM_OK) {
            int32_t want[64];
            size_t n = 0;
            const char *p = strchr(txt, ':');
            while (p && n < 64) {
                char *end;
                long v = strtol(p + 1, &end, 10);
                if (end == p + 1) break;
                want[n++] = (int32_t)v;
                p = end;
            }
            CHECK(n == 15);
            expect_ids(t, "Once upon a time there was a small robot", SLM_TOKENIZE_ADD_BOS, want,
                       n);
            expect_decode(t, want, n, slm_tokenizer_decode_flags(t),
                          "Once upon a time there was a small robot");
            free(txt);
        } else {
            printf("skip: fixtures/reference/ids-stories260K.txt not found\n");
        }
        slm_tokenizer_free(t);
    }
    gguf_close(f);
}

/* ---- the Hugging Face fixtures --------------------------------------------------------------- */

static size_t json_ids(const cJSON *arr, int32_t *out, size_t cap) {
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        if (n < cap) out[n] = (int32_t)e->valuedouble;
        n++;
    }
    return n;
}

static slm_tokenizer *load_fixture_tokenizer(const char *tok) {
    char rel[256], p1[PATH_MAX_LEN], p2[PATH_MAX_LEN];
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s/tokenizer.json", tok);
    if (!check_shared_path(rel, p1, sizeof p1)) return NULL;
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s/tokenizer_config.json", tok);
    const char *cfg = check_shared_path(rel, p2, sizeof p2);
    slm_tokenizer *t = NULL;
    double t0 = slm_now_ms();
    CHECK_OK(slm_tokenizer_from_hf_json(p1, cfg, &t));
    if (t)
        printf("%s: tokenizer.json loaded in %.0f ms (%d ids)\n", tok, slm_now_ms() - t0,
               slm_tokenizer_n_vocab(t));
    return t;
}

typedef struct agreement {
    int lines, ids, ids_special, decoded;
} agreement;

static void run_fixture(const char *tok) {
    char rel[256], path[PATH_MAX_LEN];
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s.public.jsonl", tok);
    if (!check_shared_path(rel, path, sizeof path)) {
        printf("skip: %s not found under ../shared\n", rel);
        return;
    }
    slm_tokenizer *t = load_fixture_tokenizer(tok);
    if (!t) return;
    char *data = NULL;
    size_t size = 0;
    CHECK_OK(slm_read_file(path, 1 << 26, &data, &size));
    int32_t *want = malloc(MAX_FIXTURE_IDS * sizeof *want);
    agreement a = {0, 0, 0, 0};
    int dflags = SLM_DECODE_SPECIAL | slm_tokenizer_decode_flags(t);
    for (char *line = data; data && want && line < data + size;) {
        char *nl = memchr(line, '\n', (size_t)(data + size - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + size - line);
        cJSON *j = cJSON_ParseWithLength(line, ll);
        line += ll + 1;
        if (!j) {
            CHECK_MSG(0, "%s: unparsable fixture line %d", tok, a.lines + 1);
            continue;
        }
        a.lines++;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
        const char *s = cJSON_IsString(text) ? text->valuestring : "";
        int32_t *ids = NULL;
        size_t n = 0;
        size_t nw = json_ids(cJSON_GetObjectItemCaseSensitive(j, "ids"), want, MAX_FIXTURE_IDS);
        CHECK_OK(slm_tokenizer_encode(t, s, strlen(s), SLM_TOKENIZE_PARSE_SPECIAL, &ids, &n));
        int ok = ids_equal(ids, n, want, nw);
        a.ids += ok;
        CHECK_MSG(ok, "%s: ids differ for '%s'", tok, s);
        if (!ok) {
            print_ids("got ", ids, n);
            print_ids("want", want, nw);
        }
        free(ids);
        /* decode the reference ids */
        char *dec = NULL;
        size_t dl = 0;
        const cJSON *dj = cJSON_GetObjectItemCaseSensitive(j, "decoded");
        CHECK_OK(slm_tokenizer_decode(t, want, nw, dflags, &dec, &dl));
        ok = dec && cJSON_IsString(dj) && dl == strlen(dj->valuestring) &&
             memcmp(dec, dj->valuestring, dl) == 0;
        a.decoded += ok;
        CHECK_MSG(ok, "%s: decoded differs for '%s': got '%s'", tok, s, dec ? dec : "");
        free(dec);
        nw = json_ids(cJSON_GetObjectItemCaseSensitive(j, "ids_special"), want, MAX_FIXTURE_IDS);
        CHECK_OK(slm_tokenizer_encode(t, s, strlen(s),
                                      SLM_TOKENIZE_PARSE_SPECIAL | SLM_TOKENIZE_ADD_BOS, &ids, &n));
        ok = ids_equal(ids, n, want, nw);
        a.ids_special += ok;
        CHECK_MSG(ok, "%s: ids_special differ for '%s'", tok, s);
        free(ids);
        cJSON_Delete(j);
    }
    /* the prompt of ../shared/fixtures/reference (ids-*.txt, after any BOS) */
    static const struct {
        const char *tok;
        int32_t ids[12];
        size_t n;
    } k_prompt[] = {
        {"llama3", {12805, 5304, 264, 892, 1070, 574, 264, 2678, 12585}, 9},
        {"qwen3", {12522, 5193, 264, 882, 1052, 572, 264, 2613, 12305}, 9},
        {"llama2", {9038, 2501, 263, 931, 727, 471, 263, 2319, 19964}, 9},
    };
    /* end of generation: two that are, one that is not */
    static const struct {
        const char *tok;
        int32_t eog[2], not_eog;
    } k_eog[] = {
        {"llama2", {2, 2}, 1},
        {"mistral", {2, 2}, 1},
        {"llama3", {128001, 128009}, 128000},
        {"qwen3", {151643, 151645}, 151644},
        {"gemma3", {1, 106}, 2},
    };
    for (size_t k = 0; k < sizeof k_eog / sizeof k_eog[0]; k++)
        if (strcmp(k_eog[k].tok, tok) == 0)
            CHECK_MSG(slm_tokenizer_is_eog(t, k_eog[k].eog[0]) &&
                          slm_tokenizer_is_eog(t, k_eog[k].eog[1]) &&
                          !slm_tokenizer_is_eog(t, k_eog[k].not_eog),
                      "%s: end-of-generation ids", tok);
    for (size_t k = 0; k < sizeof k_prompt / sizeof k_prompt[0]; k++)
        if (strcmp(k_prompt[k].tok, tok) == 0)
            expect_ids(t, "Once upon a time there was a small robot", 0, k_prompt[k].ids,
                       k_prompt[k].n);
    printf("%s: agreement on %d public strings: ids %d, ids_special %d, decoded %d\n", tok, a.lines,
           a.ids, a.ids_special, a.decoded);
    CHECK(a.lines > 0);
    free(want);
    free(data);
    slm_tokenizer_free(t);
}

/* ---- round trips of random text ---------------------------------------------------------------
 */

/* Random UTF-8 from blocks that NFC leaves alone, without U+2581. */
static size_t random_text(check_rng *r, char *out, size_t cap) {
    static const uint32_t k_blocks[][2] = {
        {0x20, 0x7E},     {0x0A, 0x0A},       {0x09, 0x09},     {0xA0, 0xFF},
        {0x410, 0x44F},   {0x3B1, 0x3C9},     {0x4E00, 0x4FFF}, {0x3041, 0x3096},
        {0xAC00, 0xAD00}, {0x1F600, 0x1F64F}, {0x5D0, 0x5EA},   {0x2010, 0x2027},
    };
    size_t n = 0, want = 1 + check_rng_u64(r) % 200;
    while (n + 4 < cap && want-- > 0) {
        size_t b = check_rng_u64(r) % (sizeof k_blocks / sizeof k_blocks[0]);
        uint32_t cp =
            k_blocks[b][0] + (uint32_t)(check_rng_u64(r) % (k_blocks[b][1] - k_blocks[b][0] + 1));
        if (cp < 0x80) {
            out[n++] = (char)cp;
        } else if (cp < 0x800) {
            out[n++] = (char)(0xC0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[n++] = (char)(0xE0 | (cp >> 12));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[n++] = (char)(0xF0 | (cp >> 18));
            out[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[n] = '\0';
    return n;
}

static void roundtrip(const char *tok, int random_bytes) {
    slm_tokenizer *t = load_fixture_tokenizer(tok);
    if (!t) {
        printf("skip: round trip of %s (fixture not found)\n", tok);
        return;
    }
    check_rng r = {42};
    char text[1024];
    int good = 0;
    for (int k = 0; k < ROUNDTRIP_CASES; k++) {
        size_t n;
        if (random_bytes && k % 2) {
            n = check_rng_u64(&r) % 64;
            for (size_t i = 0; i < n; i++) text[i] = (char)(check_rng_u64(&r) & 0xFF);
        } else {
            n = random_text(&r, text, sizeof text);
        }
        int32_t *ids = NULL;
        size_t ni = 0;
        char *dec = NULL;
        size_t dl = 0;
        CHECK_OK(slm_tokenizer_encode(t, text, n, 0, &ids, &ni));
        CHECK_OK(slm_tokenizer_decode(t, ids, ni, slm_tokenizer_decode_flags(t), &dec, &dl));
        int ok = dec && dl == n && memcmp(dec, text, n) == 0;
        good += ok;
        CHECK_MSG(ok, "%s: round trip of %zu bytes failed", tok, n);
        free(ids);
        free(dec);
    }
    printf("%s: %d/%d random texts round-trip\n", tok, good, ROUNDTRIP_CASES);
    slm_tokenizer_free(t);
}

/* Cutting long SentencePiece words before U+2581 gives the same ids as not cutting. */
static void test_meta_split(const char *tok) {
    slm_tokenizer *t = load_fixture_tokenizer(tok);
    if (!t) return;
    CHECK(t->meta_split);
    check_rng r = {7};
    static const char *const words[] = {"the", " ",   "  ", "<b>", "</", ">", "日本",
                                        "a",   "Zoë", "\n", "12",  "?",  META};
    char text[4096];
    for (int k = 0; k < 50; k++) {
        size_t n = 0;
        while (n < sizeof text - 16) {
            const char *w = words[check_rng_u64(&r) % (sizeof words / sizeof words[0])];
            size_t l = strlen(w);
            memcpy(text + n, w, l);
            n += l;
            if (check_rng_u64(&r) % 50 == 0) break;
        }
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_OK(slm_tokenizer_encode(t, text, n, 0, &a, &na));
        t->meta_split = 0;
        CHECK_OK(slm_tokenizer_encode(t, text, n, 0, &b, &nb));
        t->meta_split = 1;
        CHECK_MSG(ids_equal(a, na, b, nb), "%s: cutting changed the ids", tok);
        free(a);
        free(b);
    }
    slm_tokenizer_free(t);
}

/* ---- GGUF byte-level from the Llama 3 tokenizer.json ------------------------------------------
 */

/* Writes the Llama 3 vocabulary and merges as GGUF metadata (as llama.cpp's
 * converter does), loads it through slm_tokenizer_from_gguf and checks the
 * fixture ids (pre "llama-bpe"). */
static void test_gguf_llama3(void) {
    char p1[PATH_MAX_LEN], p2[PATH_MAX_LEN];
    if (!check_shared_path("fixtures/tokenizers/llama3/tokenizer.json", p1, sizeof p1) ||
        !check_shared_path("fixtures/tokenizers/llama3.public.jsonl", p2, sizeof p2)) {
        printf("skip: GGUF llama3 (fixture not found)\n");
        return;
    }
    char *json = NULL;
    size_t len = 0;
    CHECK_OK(slm_read_file(p1, 1 << 28, &json, &len));
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    free(json);
    CHECK(root != NULL);
    if (!root) return;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    enum { N = 128256 };
    const char **toks = calloc(N, sizeof *toks);
    int32_t *types = calloc(N, sizeof *types);
    int n_merges = cJSON_GetArraySize(merges);
    const char **mstr = calloc((size_t)n_merges + 1, sizeof *mstr);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int id = (int)e->valuedouble;
        if (id >= 0 && id < N) {
            toks[id] = e->string;
            types[id] = SLM_TOKTYPE_NORMAL;
        }
    }
    cJSON_ArrayForEach(e, added) {
        int id = cJSON_GetObjectItemCaseSensitive(e, "id")->valueint;
        if (id >= 0 && id < N) {
            toks[id] = cJSON_GetObjectItemCaseSensitive(e, "content")->valuestring;
            types[id] = SLM_TOKTYPE_CONTROL;
        }
    }
    int i = 0, complete = 1;
    cJSON_ArrayForEach(e, merges) mstr[i++] = e->valuestring;
    for (int k = 0; k < N; k++) complete &= toks[k] != NULL;
    CHECK(complete && i == n_merges);
    gguf_writer *w = NULL;
    uint8_t *mem = NULL;
    size_t size = 0;
    gguf_file *f = NULL;
    slm_tokenizer *t = NULL;
    if (complete) {
        CHECK_OK(gguf_writer_new(&w));
        CHECK_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"));
        CHECK_OK(gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe"));
        CHECK_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, N));
        CHECK_OK(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, N));
        CHECK_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", mstr, (uint64_t)n_merges));
        CHECK_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 128000));
        CHECK_OK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 128001));
        CHECK_OK(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1));
        CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
        if (mem) CHECK_OK(gguf_open_memory(mem, size, "llama3-tok.gguf", &f));
        if (f) {
            double t0 = slm_now_ms();
            CHECK_OK(slm_tokenizer_from_gguf(f, &t));
            printf("llama3 via GGUF: loaded %d ids, %d merges in %.0f ms\n",
                   t ? slm_tokenizer_n_vocab(t) : 0, n_merges, slm_now_ms() - t0);
        }
    }
    cJSON_Delete(root);
    free(toks);
    free(types);
    free(mstr);
    if (t) {
        CHECK(slm_tokenizer_is_eog(t, 128009)); /* <|eot_id|> by name */
        CHECK(slm_tokenizer_eot(t) == 128009);
        char *data = NULL;
        size_t dsize = 0;
        CHECK_OK(slm_read_file(p2, 1 << 26, &data, &dsize));
        int32_t *want = malloc(MAX_FIXTURE_IDS * sizeof *want);
        int lines = 0, agree = 0;
        for (char *line = data; data && want && line < data + dsize;) {
            char *nl = memchr(line, '\n', (size_t)(data + dsize - line));
            size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + dsize - line);
            cJSON *j = cJSON_ParseWithLength(line, ll);
            line += ll + 1;
            if (!j) continue;
            const char *s = cJSON_GetObjectItemCaseSensitive(j, "text")->valuestring;
            size_t nw =
                json_ids(cJSON_GetObjectItemCaseSensitive(j, "ids"), want + 1, MAX_FIXTURE_IDS - 1);
            want[0] = 128000;
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(slm_tokenizer_encode(
                t, s, strlen(s), SLM_TOKENIZE_PARSE_SPECIAL | SLM_TOKENIZE_ADD_BOS, &ids, &n));
            int ok = ids_equal(ids, n, want, nw + 1);
            CHECK_MSG(ok, "llama3 via GGUF: ids differ for '%s'", s);
            agree += ok;
            lines++;
            free(ids);
            cJSON_Delete(j);
        }
        printf("llama3 via GGUF: agreement on %d public strings: %d\n", lines, agree);
        free(want);
        free(data);
        slm_tokenizer_free(t);
    }
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);
}

/* ---- GGUF SentencePiece from the Llama 2 tokenizer.model ------------------------------------ */

#define SPM_MAX_PIECES 65536

typedef struct pb_reader {
    const uint8_t *p;
    size_t n, pos;
    int bad;
} pb_reader;

static uint64_t pb_varint(pb_reader *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->n) break;
        uint8_t c = r->p[r->pos++];
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

static void pb_skip(pb_reader *r, int wire) {
    uint64_t len = 0;
    switch (wire) {
    case 0:
        pb_varint(r);
        return;
    case 1:
        len = 8;
        break;
    case 2:
        len = pb_varint(r);
        break;
    case 5:
        len = 4;
        break;
    default:
        r->bad = 1;
        return;
    }
    if (len > r->n - r->pos)
        r->bad = 1;
    else
        r->pos += (size_t)len;
}

/* SentencePiece ModelProto: repeated field 1 = {1: piece, 2: score, 3: type}. */
static int read_spm_model(const uint8_t *data, size_t n, char **toks, float *scores,
                          int32_t *types) {
    pb_reader r = {data, n, 0, 0};
    int count = 0;
    while (r.pos < r.n && !r.bad) {
        uint64_t key = pb_varint(&r);
        if ((key >> 3) != 1 || (key & 7) != 2) {
            pb_skip(&r, (int)(key & 7));
            continue;
        }
        uint64_t len = pb_varint(&r);
        if (r.bad || len > r.n - r.pos || count == SPM_MAX_PIECES) return -1;
        pb_reader m = {data + r.pos, (size_t)len, 0, 0};
        r.pos += (size_t)len;
        toks[count] = NULL;
        scores[count] = 0;
        types[count] = SLM_TOKTYPE_NORMAL;
        while (m.pos < m.n && !m.bad) {
            uint64_t k2 = pb_varint(&m);
            if (k2 == (1 << 3 | 2)) {
                uint64_t l = pb_varint(&m);
                if (l > m.n - m.pos) return -1;
                free(toks[count]);
                toks[count] = malloc((size_t)l + 1);
                if (!toks[count]) return -1;
                memcpy(toks[count], m.p + m.pos, (size_t)l);
                toks[count][l] = '\0';
                m.pos += (size_t)l;
            } else if (k2 == (2 << 3 | 5) && m.n - m.pos >= 4) {
                memcpy(&scores[count], m.p + m.pos, 4);
                m.pos += 4;
            } else if (k2 == (3 << 3 | 0)) {
                types[count] = (int32_t)pb_varint(&m);
            } else {
                pb_skip(&m, (int)(k2 & 7));
            }
        }
        if (m.bad || !toks[count]) return -1;
        count++;
    }
    return r.bad ? -1 : count;
}

/* Writes Llama 2's pieces, scores and types as GGUF metadata (as llama.cpp's
 * converter does) and checks llama.cpp-style score merging against the ids
 * Hugging Face gives with the Llama 2 tokenizer.json. */
static void test_gguf_llama2(void) {
    char p1[PATH_MAX_LEN], p2[PATH_MAX_LEN];
    if (!check_shared_path("tools/tokenizers/llama2-tokenizer.model", p1, sizeof p1) ||
        !check_shared_path("fixtures/tokenizers/llama2.public.jsonl", p2, sizeof p2)) {
        printf("skip: GGUF llama2 (tokenizer.model or fixture not found)\n");
        return;
    }
    char *model = NULL;
    size_t msize = 0;
    CHECK_OK(slm_read_file(p1, 1 << 26, &model, &msize));
    char **toks = calloc(SPM_MAX_PIECES, sizeof *toks);
    float *scores = calloc(SPM_MAX_PIECES, sizeof *scores);
    int32_t *types = calloc(SPM_MAX_PIECES, sizeof *types);
    int n = model && toks && scores && types
                ? read_spm_model((const uint8_t *)model, msize, toks, scores, types)
                : -1;
    CHECK(n == 32000);
    gguf_writer *w = NULL;
    uint8_t *mem = NULL;
    size_t size = 0;
    gguf_file *f = NULL;
    slm_tokenizer *t = NULL;
    if (n == 32000) {
        CHECK_OK(gguf_writer_new(&w));
        CHECK_OK(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"));
        CHECK_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks,
                                         (uint64_t)n));
        CHECK_OK(
            gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, (uint64_t)n));
        CHECK_OK(
            gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, types, (uint64_t)n));
        CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
        if (mem) CHECK_OK(gguf_open_memory(mem, size, "llama2-tok.gguf", &f));
        if (f) CHECK_OK(slm_tokenizer_from_gguf(f, &t));
    }
    for (int i = 0; i < SPM_MAX_PIECES && toks; i++) free(toks[i]);
    free(toks);
    free(scores);
    free(types);
    free(model);
    if (t) {
        /* TinyLlama's prompt ids in ../shared/fixtures/reference */
        expect_ids(t, "Once upon a time there was a small robot", SLM_TOKENIZE_ADD_BOS,
                   (int32_t[]){1, 9038, 2501, 263, 931, 727, 471, 263, 2319, 19964}, 10);
        char *data = NULL;
        size_t dsize = 0;
        CHECK_OK(slm_read_file(p2, 1 << 26, &data, &dsize));
        int32_t *want = malloc(MAX_FIXTURE_IDS * sizeof *want);
        int lines = 0, agree = 0;
        for (char *line = data; data && want && line < data + dsize;) {
            char *nl = memchr(line, '\n', (size_t)(data + dsize - line));
            size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + dsize - line);
            cJSON *j = cJSON_ParseWithLength(line, ll);
            line += ll + 1;
            if (!j) continue;
            const char *s = cJSON_GetObjectItemCaseSensitive(j, "text")->valuestring;
            size_t nw = json_ids(cJSON_GetObjectItemCaseSensitive(j, "ids"), want, MAX_FIXTURE_IDS);
            int32_t *ids = NULL;
            size_t ni = 0;
            CHECK_OK(slm_tokenizer_encode(t, s, strlen(s), SLM_TOKENIZE_PARSE_SPECIAL, &ids, &ni));
            int ok = ids_equal(ids, ni, want, nw);
            CHECK_MSG(ok, "llama2 via GGUF: ids differ for '%s'", s);
            agree += ok;
            lines++;
            free(ids);
            cJSON_Delete(j);
        }
        printf("llama2 via GGUF (SentencePiece scores): agreement on %d public strings: %d\n",
               lines, agree);
        free(want);
        free(data);
        slm_tokenizer_free(t);
    }
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);
}

int main(void) {
    test_spm_small();
    test_bytelevel_small();
    test_split_behaviours();
    test_regex_whitespace();
    test_bad_json();
    test_json_metaspace();
    test_json_added_options();
    test_bad_gguf();
    test_stories260k();
    static const char *const k_toks[] = {"llama2", "mistral", "llama3", "qwen3", "gemma3"};
    for (size_t k = 0; k < sizeof k_toks / sizeof k_toks[0]; k++) run_fixture(k_toks[k]);
    roundtrip("llama3", 1);
    roundtrip("qwen3", 0);
    roundtrip("llama2", 1);
    roundtrip("gemma3", 1);
    test_meta_split("llama2");
    test_meta_split("gemma3");
    test_gguf_llama3();
    test_gguf_llama2();
    return check_finish();
}
