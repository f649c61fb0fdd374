/* Grammar engine: the GBNF parser (errors with positions), the matcher
 * (strings accepted and rejected, bytes split inside characters), the JSON
 * Schema converter (accepted documents, errors naming keywords), token
 * masks (equal to a brute-force check of every token) and constrained
 * generation through the session on a small random model. */
#include "check.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "runtime/config.h"
#include "runtime/constrain.h"
#include "runtime/sampler.h"
#include "slm.h"
#include "testmodel.h"

typedef struct textbuf {
    char *p;
    size_t n;
} textbuf;

static int collect(void *user, const char *text, size_t len) {
    textbuf *b = user;
    char *np = realloc(b->p, b->n + len + 1);
    if (!np) return 1;
    memcpy(np + b->n, text, len);
    b->n += len;
    np[b->n] = '\0';
    b->p = np;
    return 0;
}

/* Generates into a malloc'd string (never NULL on success). */
static slm_status slm_generate_text(slm_session *s, const char *prompt, size_t len, char **text,
                                    slm_result *r) {
    textbuf b = {calloc(1, 1), 0};
    slm_status st = slm_generate(s, prompt, len, collect, &b, r);
    *text = b.p;
    return st;
}

static slm_grammar *parse(const char *g) {
    slm_grammar *out = NULL;
    slm_status st = slm_grammar_parse(g, strlen(g), &out);
    CHECK_MSG(st == SLM_OK, "parse failed: %s\n%s", slm_last_error(), g);
    return out;
}

/* 1 when the grammar accepts s completely. */
static int matches(slm_grammar *g, const char *s) {
    slm_gmatch *m = NULL;
    if (!g || slm_gmatch_new(g, &m) != SLM_OK) return -1;
    int ok = slm_gmatch_accept_bytes(m, s, strlen(s)) && slm_gmatch_is_accepting(m);
    slm_gmatch_free(m);
    return ok;
}

/* The same, one byte at a time. */
static int matches_bytewise(slm_grammar *g, const char *s) {
    slm_gmatch *m = NULL;
    if (!g || slm_gmatch_new(g, &m) != SLM_OK) return -1;
    int ok = 1;
    for (size_t i = 0; s[i] && ok; i++) ok = slm_gmatch_accept_bytes(m, s + i, 1);
    ok = ok && slm_gmatch_is_accepting(m);
    slm_gmatch_free(m);
    return ok;
}

static void expect(const char *gbnf, const char *const *yes, const char *const *no) {
    slm_grammar *g = parse(gbnf);
    if (!g) return;
    for (int i = 0; yes[i]; i++) {
        CHECK_MSG(matches(g, yes[i]) == 1, "'%s' should match\n%s", yes[i], gbnf);
        CHECK_MSG(matches_bytewise(g, yes[i]) == 1, "'%s' should match bytewise", yes[i]);
    }
    for (int i = 0; no[i]; i++)
        CHECK_MSG(matches(g, no[i]) == 0, "'%s' should not match\n%s", no[i], gbnf);
    slm_grammar_free(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void parse_error(const char *gbnf, const char *needle) {
    slm_grammar *g = NULL;
    CHECK_ERR(slm_grammar_parse(gbnf, strlen(gbnf), &g), SLM_ERR_CONFIG, needle);
    CHECK(g == NULL);
}

static void test_gbnf(void) {
    expect("root ::= \"abc\"", L("abc"), L("ab", "abcd", "", "abd"));
    expect("root ::= \"a\" | \"bc\" | \"\"", L("a", "bc", ""), L("b", "abc"));
    expect("root ::= (\"a\" \"b\")* \"c\"", L("c", "abc", "ababc"), L("ac", "abab"));
    expect("root ::= [a-c]+ [^a-c]?", L("a", "abc", "cbaz", "aa!"), L("", "z", "abzz"));
    expect("root ::= \"x\"{2,3} \"y\"{2} \"z\"{1,}", L("xxyyz", "xxxyyzzz"),
           L("xyyz", "xxxxyyz", "xxyz", "xxyy"));
    expect("root ::= [α-ω]{2} \"é\" .", L("βγéx", "αωé€", "αωé😀"), L("aβé", "βγe!", "βγé"));
    expect("# comment\nroot ::= a b # trailing\na ::= \"1\"\n  | \"2\"\nb ::= (\n  \"x\" |\n  "
           "\"y\"\n)\n",
           L("1x", "2y"), L("12", "x"));
    expect("root ::= \"\\n\\t\\\\\\\"\\x41\\u00e9\"", L("\n\t\\\"Aé"), L("\n\t\\\"A"));
    expect("root ::= [\\]\\-x]*", L("]-x", ""), L("a"));
    expect("root ::= list\nlist ::= \"[\" (item (\",\" item)*)? \"]\"\nitem ::= [0-9] | list",
           L("[]", "[1,[2,[]],3]"), L("[", "[1,]", "[[]"));

    /* errors carry positions */
    parse_error("root ::= \"abc", "line 1 col 10");
    parse_error("root ::= x\n", "rule 'x' is not defined");
    parse_error("a ::= \"x\"", "no 'root' rule");
    parse_error("root ::= root \"a\" | \"b\"", "left-recursive");
    parse_error("root ::= a\na ::= \"x\"? a \"y\"", "left-recursive");
    parse_error("root ::= [z-a]", "line 1 col 13");
    parse_error("root ::= \"a\" \\q", "line 1 col 14");
    parse_error("root ::= \"a\"{3,2}", "n < m");
    parse_error("root ::= \"\\q\"", "unknown escape");
    parse_error("root ::= (\"a\"", "unclosed");
    parse_error("root ::= \"a\"\nroot ::= \"b\"", "line 2 col 1: rule defined twice");
    parse_error("root \"a\"", "expected '::='");
}

static void test_done(void) {
    slm_grammar *g = parse("root ::= \"ab\" | \"abc\"");
    slm_gmatch *m = NULL;
    if (!g || slm_gmatch_new(g, &m) != SLM_OK) return;
    CHECK(!slm_gmatch_is_accepting(m));
    CHECK(slm_gmatch_accept_bytes(m, "ab", 2));
    CHECK(slm_gmatch_is_accepting(m) && !slm_gmatch_is_done(m));
    CHECK(!slm_gmatch_accept_bytes(m, "x", 1)); /* rejected: state unchanged */
    CHECK(slm_gmatch_accept_bytes(m, "c", 1));
    CHECK(slm_gmatch_is_done(m));
    slm_gmatch_reset(m);
    CHECK(!slm_gmatch_is_accepting(m) && slm_gmatch_would_accept(m, "abc", 3));
    /* a character split across calls */
    slm_gmatch_free(m);
    slm_grammar_free(g);
    g = parse("root ::= [^a]");
    if (!g || slm_gmatch_new(g, &m) != SLM_OK) return;
    CHECK(slm_gmatch_accept_bytes(m, "\xE2\x82", 2));
    CHECK(!slm_gmatch_is_accepting(m));
    CHECK(!slm_gmatch_would_accept(m, "a", 1));
    CHECK(slm_gmatch_accept_bytes(m, "\xAC", 1) && slm_gmatch_is_done(m));
    slm_gmatch_reset(m);
    CHECK(!slm_gmatch_would_accept(m, "\xC0\x80", 2));     /* overlong: not UTF-8 */
    CHECK(!slm_gmatch_would_accept(m, "\xED\xA0\x80", 3)); /* a surrogate */
    slm_gmatch_free(m);
    slm_grammar_free(g);
}

static slm_grammar *schema(const char *js) {
    char *gbnf = NULL;
    slm_status st = slm_json_schema_to_gbnf(js, strlen(js), &gbnf);
    CHECK_MSG(st == SLM_OK, "schema failed: %s\n%s", slm_last_error(), js);
    if (st != SLM_OK) return NULL;
    slm_grammar *g = parse(gbnf);
    free(gbnf);
    return g;
}

static void expect_schema(const char *js, const char *const *yes, const char *const *no) {
    slm_grammar *g = schema(js);
    if (!g) return;
    for (int i = 0; yes[i]; i++)
        CHECK_MSG(matches(g, yes[i]) == 1, "'%s' should match %s", yes[i], js);
    for (int i = 0; no[i]; i++)
        CHECK_MSG(matches(g, no[i]) == 0, "'%s' should not match %s", no[i], js);
    slm_grammar_free(g);
}

static void schema_error(const char *js, const char *needle) {
    char *gbnf = NULL;
    CHECK_ERR(slm_json_schema_to_gbnf(js, strlen(js), &gbnf), SLM_ERR_CONFIG, needle);
    free(gbnf);
}

static void test_schema(void) {
    expect_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{"
                  "\"type\":\"string\"},\"c\":{\"type\":\"boolean\"}},\"required\":[\"a\",\"c\"]}",
                  L("{\"a\":1,\"c\":true}", "{\"a\": -20, \"b\": \"x\\\"y\", \"c\": false}",
                    "{\n  \"a\": 0,\n  \"c\": true\n}"),
                  L("{\"a\":1}", "{\"c\":true,\"a\":1}", "{\"a\":1.5,\"c\":true}",
                    "{\"a\":01,\"c\":true}", "{\"a\":1,\"c\":true,\"d\":1}",
                    "{\"a\":1,\"c\":true}x", "{\"a\":1,          \"c\":true}"));
    /* all optional: the comma only between present ones */
    expect_schema("{\"properties\":{\"x\":{\"type\":\"null\"},\"y\":{\"type\":\"number\"}}}",
                  L("{}", "{\"x\":null}", "{\"y\":1.5e-3}", "{\"x\":null,\"y\":-0.25}"),
                  L("{,\"y\":1}", "{\"y\":1,\"x\":null}", "{\"x\":null,}"));
    expect_schema("{\"enum\":[\"red\",\"green\",3,null,{\"k\":[1]}]}",
                  L("\"red\"", "\"green\"", "3", "null", "{\"k\":[1]}"), L("\"blue\"", "4"));
    expect_schema("{\"const\":\"only\"}", L("\"only\""), L("\"other\""));
    expect_schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,"
                  "\"maxItems\":3}",
                  L("[1,2]", "[1, 2, 3]"), L("[]", "[1]", "[1,2,3,4]", "[1,2,]"));
    expect_schema("{\"type\":\"array\",\"maxItems\":0}", L("[]"), L("[1]"));
    expect_schema("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}",
                  L("\"ab\"", "\"abc\"", "\"\\n\\u00e9\"", "\"é€\""),
                  L("\"a\"", "\"abcd\"", "\"\\ud800\""));
    expect_schema("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}(x|yz)?$\"}",
                  L("\"AB-123\"", "\"ZZ-000x\"", "\"QQ-999yz\""),
                  L("\"A-123\"", "\"AB-12\"", "\"ab-123\"", "\"AB-123y\""));
    expect_schema("{\"type\":\"string\",\"pattern\":\"a\\\"b\\\\\\\\c.[^x]\"}",
                  L("\"a\\\"b\\\\cQy\""), L("\"a\\\"b\\\\cQx\"", "\"a\"b\""));
    expect_schema("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":1}]}",
                  L("12", "\"x\""), L("\"xy\"", "1.5"));
    expect_schema("{\"type\":[\"string\",\"null\"],\"maxLength\":1}", L("\"a\"", "null"),
                  L("\"ab\"", "1"));
    expect_schema("{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":"
                  "\"integer\"},\"next\":{\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":"
                  "\"null\"}]}},\"required\":[\"v\",\"next\"]}},\"$ref\":\"#/$defs/node\"}",
                  L("{\"v\":1,\"next\":{\"v\":2,\"next\":null}}"), L("{\"v\":1}"));
    expect_schema("{\"type\":\"integer\",\"minimum\":0}", L("0", "17"), L("-1"));
    expect_schema("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"boolean\"}}",
                  L("{}", "{\"any\":true,\"b\":false}"), L("{\"a\":1}"));
    expect_schema("{}", L("1", "{\"a\":[null]}", "\"s\""), L("{", "tru"));

    schema_error("{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\","
                 "\"uniqueItems\":true}}}",
                 "/properties/tags: 'uniqueItems' is not supported");
    schema_error("{\"type\":\"string\",\"format\":\"email\"}", "/format: keyword 'format'");
    schema_error("{\"type\":\"integer\",\"minimum\":5}", "'minimum' other than 0");
    schema_error("{\"type\":\"string\",\"pattern\":\"(?=a)\"}", "pattern: lookaround");
    schema_error("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", "pattern: unsupported escape");
    schema_error("{\"type\":\"strin\"}", "unknown type");
    schema_error("{\"$ref\":\"#/$defs/none\"}", "points to nothing");
    schema_error("{\"not\":{}}", "/not: keyword 'not' is not supported");
    schema_error("{\"type\":\"object\",\"patternProperties\":{}}", "'patternProperties'");
    schema_error("[1", "invalid JSON");

    /* json_object mode */
    slm_grammar *g = parse(slm_json_object_gbnf());
    if (g) {
        CHECK(matches(g, "{}") == 1);
        CHECK(matches(g, "{\"a\": [1, -2.5e+10, \"x\", {\"b\": null}], \"c\": true}") == 1);
        CHECK(matches(g, "[1]") == 0);
        CHECK(matches(g, "{\"a\":}") == 0);
        CHECK(matches(g, "{\"a\":1,}") == 0);
        CHECK(matches(g, "{\"a\":\"\x01\"}") == 0);
        slm_grammar_free(g);
    }
}

/* The trie walk's mask equals checking every token on its own. */
static void check_masks(const slm_tokenizer *tok, const char *gbnf, const char *const *prefixes) {
    slm_gvocab *v = NULL;
    CHECK_OK(slm_gvocab_new(tok, &v));
    slm_grammar *g = parse(gbnf);
    slm_gmatch *m = NULL;
    if (!v || !g || slm_gmatch_new(g, &m) != SLM_OK) goto done;
    int32_t n = slm_gvocab_n_vocab(v);
    for (int p = 0; prefixes[p]; p++) {
        slm_gmatch_reset(m);
        CHECK(slm_gmatch_accept_bytes(m, prefixes[p], strlen(prefixes[p])));
        for (int rep = 0; rep < 2; rep++) { /* the second time from the cache */
            const uint32_t *bits = NULL;
            int32_t allowed = slm_gmatch_mask(m, v, &bits);
            CHECK(allowed > 0 && bits);
            if (!bits) break;
            int32_t count = 0, bad = 0;
            for (int32_t id = 0; id < n; id++) {
                int in = (bits[id >> 5] >> (id & 31)) & 1;
                count += in;
                if (in != slm_gmatch_token_ok(m, v, id)) bad++;
            }
            CHECK_MSG(bad == 0 && count == allowed, "prefix '%s': %d tokens differ", prefixes[p],
                      (int)bad);
        }
    }
done:
    slm_gmatch_free(m);
    slm_grammar_free(g);
    slm_gvocab_free(v);
}

static const char *SCHEMA = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\","
                            "\"maxLength\":12},\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":"
                            "\"array\",\"items\":{\"enum\":[\"a\",\"bb\"]},\"maxItems\":3}},"
                            "\"required\":[\"name\",\"age\",\"tags\"]}";

static void test_tokens_and_session(void) {
    char path[512];
    check_tmp_path("grammar_model.gguf", path, sizeof path);
    slm_test_model_params mp = {0};
    mp.dim = 32;
    mp.n_layers = 1;
    mp.n_heads = 2;
    mp.ffn_dim = 64;
    mp.n_extra_vocab = 40;
    mp.seed = 5;
    CHECK_OK(slm_test_write_model(path, &mp));
    slm_model *model = NULL;
    CHECK_OK(slm_model_load(path, NULL, &model));
    if (!model) return;
    char *gbnf = NULL;
    CHECK_OK(slm_json_schema_to_gbnf(SCHEMA, strlen(SCHEMA), &gbnf));
    if (gbnf)
        check_masks(model->tok, gbnf,
                    L("", "{", "{\"name\": \"ab", "{\"name\":\"\\", "{\"name\":\"x\",\"age\":1",
                      "{\"name\":\"x\",\"age\":12,\"tags\":[\"a\",\"bb\"]}"));
    free(gbnf);
    check_masks(model->tok, "root ::= [^a]* \"!\"", L("", "bb", "\xC3"));

    /* generation: every temperature and seed gives output the grammar accepts */
    slm_grammar *g = schema(SCHEMA);
    const float temps[] = {0.0f, 0.8f, 1.5f};
    for (int t = 0; t < 3 && g; t++)
        for (int seed = 0; seed < 3; seed++) {
            slm_config *cfg = NULL;
            CHECK_OK(slm_config_new(&cfg));
            char js[1024];
            /* seed 0: no filters; 1: the defaults (top-k 40, top-p 0.95, min-p 0.05);
             * 2: top-p 0.5 with repetition and presence penalties */
            const char *extra[3] = {"\"top_k\":0,\"top_p\":1,\"min_p\":0", "\"seed\":1",
                                    "\"top_p\":0.5,\"repeat_penalty\":1.3,"
                                    "\"presence_penalty\":0.5"};
            snprintf(js, sizeof js,
                     "{\"temperature\":%g,\"seed\":%d,\"max_tokens\":400,%s,"
                     "\"json_schema\":%s}",
                     (double)temps[t], seed, extra[seed], SCHEMA);
            CHECK_OK(slm_config_apply_json(cfg, js, strlen(js)));
            slm_session *s = NULL;
            CHECK_OK(slm_session_new(model, cfg, &s));
            char *text = NULL;
            slm_result r;
            if (s) CHECK_OK(slm_generate_text(s, "Hello", 5, &text, &r));
            if (text) {
                CHECK_MSG(matches(g, text) == 1, "t=%g seed=%d: '%s'", (double)temps[t], seed,
                          text);
                CHECK_MSG(r.finish == SLM_FINISH_STOP || r.finish == SLM_FINISH_EOS,
                          "finish %d for '%s'", (int)r.finish, text);
            }
            free(text);
            slm_session_free(s);
            slm_config_free(cfg);
        }
    slm_grammar_free(g);

    /* bad settings fail at configure time, naming the key; a session keeps
     * its grammar when a new one does not compile */
    slm_session *s = NULL;
    CHECK_OK(slm_session_new(model, NULL, &s));
    if (s) {
        const char *bad = "{\"grammar\":\"root ::= \\\"a\"}";
        CHECK_ERR(slm_session_configure(s, bad, strlen(bad)), SLM_ERR_CONFIG,
                  "config key 'grammar': grammar: line 1 col 10");
        bad = "{\"json_schema\":{\"type\":\"string\",\"format\":\"date\"}}";
        CHECK_ERR(slm_session_configure(s, bad, strlen(bad)), SLM_ERR_CONFIG, "'format'");
        bad = "{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}}";
        CHECK_ERR(slm_session_configure(s, bad, strlen(bad)), SLM_ERR_CONFIG,
                  "'json_schema.schema' is missing");
        const char *good = "{\"grammar\":\"root ::= \\\"yes\\\" | \\\"no\\\"\",\"temperature\":1}";
        CHECK_OK(slm_session_configure(s, good, strlen(good)));
        char *text = NULL;
        slm_result r;
        CHECK_OK(slm_generate_text(s, "Q", 1, &text, &r));
        CHECK_MSG(text && (!strcmp(text, "yes") || !strcmp(text, "no")), "got '%s'",
                  text ? text : "(null)");
        CHECK(r.finish == SLM_FINISH_STOP);
        free(text);
        /* characters only byte-fallback tokens spell, across several tokens */
        good = "{\"grammar\":\"root ::= [\\\\u4e00-\\\\u4e01]{2}\"}";
        CHECK_OK(slm_session_configure(s, good, strlen(good)));
        CHECK_OK(slm_generate_text(s, "Q", 1, &text, &r));
        CHECK_MSG(text && strlen(text) == 6 && !memcmp(text, "\xE4\xB8", 2), "got '%s'",
                  text ? text : "(null)");
        free(text);
        good = "{\"response_format\":{\"type\":\"json_object\"},\"temperature\":0.9,"
               "\"max_tokens\":300}";
        CHECK_OK(slm_session_configure(s, good, strlen(good)));
        text = NULL;
        CHECK_OK(slm_generate_text(s, "Q", 1, &text, &r));
        slm_grammar *jo = parse(slm_json_object_gbnf());
        if (text && r.finish != SLM_FINISH_LENGTH)
            CHECK_MSG(matches(jo, text) == 1, "json_object: '%s'", text);
        slm_grammar_free(jo);
        free(text);
        good = "{\"response_format\":{\"type\":\"text\"}}";
        CHECK_OK(slm_session_configure(s, good, strlen(good)));
        slm_session_free(s);
    }
    /* the config round-trips its grammar */
    slm_config *a = NULL, *b = NULL;
    CHECK_OK(slm_config_new(&a));
    CHECK_OK(slm_config_new(&b));
    if (a && b) {
        char js[1024];
        snprintf(js, sizeof js, "{\"json_schema\":%s}", SCHEMA);
        CHECK_OK(slm_config_apply_json(a, js, strlen(js)));
        char *out = slm_config_to_json(a);
        if (out) CHECK_OK(slm_config_apply_json(b, out, strlen(out)));
        CHECK(b->grammar_kind == SLM_GRAMMAR_JSON_SCHEMA && !strcmp(a->grammar, b->grammar));
        free(out);
    }
    slm_config_free(a);
    slm_config_free(b);
    slm_model_free(model);
    remove(path);
}

/* Masks over the real Llama 3 vocabulary (byte-level BPE), when present. */
static void test_llama3_vocab(void) {
    char tj[1024], tc[1024];
    if (!check_shared_path("fixtures/tokenizers/llama3/tokenizer.json", tj, sizeof tj)) {
        printf("(llama3 tokenizer fixture not found: vocabulary mask test skipped)\n");
        return;
    }
    const char *cfg =
        check_shared_path("fixtures/tokenizers/llama3/tokenizer_config.json", tc, sizeof tc);
    slm_tokenizer *tok = NULL;
    CHECK_OK(slm_tokenizer_from_hf_json(tj, cfg, &tok));
    if (!tok) return;
    char *gbnf = NULL;
    CHECK_OK(slm_json_schema_to_gbnf(SCHEMA, strlen(SCHEMA), &gbnf));
    if (gbnf) check_masks(tok, gbnf, L("", "{\"name\": \"ab", "{\"name\":\"ab\",\"age\":1"));
    free(gbnf);
    check_masks(tok, "root ::= [α-ω]+ \"!\"", L("", "\xCE"));
    slm_tokenizer_free(tok);
}

/* A four-token vocabulary ("a", "b", "ab", EOS): masks, EOS only where the
 * output is complete, and a clear error (no token emitted) when the grammar
 * needs bytes no token has. */
static void test_tiny_vocab(void) {
    static const char tj[] =
        "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":3,\"content\":\"</s>\",\"special\":"
        "true}],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_"
        "space\":false,\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":null,"
        "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,"
        "\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}";
    static const char tc[] = "{\"eos_token\":\"</s>\"}";
    slm_tokenizer *tok = NULL;
    CHECK_OK(slm_tokenizer_from_hf_json_text(tj, strlen(tj), tc, strlen(tc), "tiny", &tok));
    if (!tok) return;
    slm_config *cfg = NULL;
    CHECK_OK(slm_config_new(&cfg));
    const char *js = "{\"grammar\":\"root ::= \\\"a\\\" \\\"b\\\"? \\\"c\\\"?\"}";
    CHECK_OK(slm_config_apply_json(cfg, js, strlen(js)));
    slm_constraint *c = NULL;
    CHECK_OK(slm_constraint_update(&c, tok, cfg));
    slm_sampler_params sp = {0.0f, 0, 1.0f, 0.0f, 1.0f, 64, 0, 0.0f, 0.0f};
    slm_sampler smp;
    CHECK_OK(slm_sampler_init(&smp, &sp, 4));
    if (c && smp.cand) {
        slm_constraint_begin(c);
        /* EOS is the favourite but not allowed yet; "ab" is best of the rest */
        float lg[4] = {1.0f, 5.0f, 2.0f, 9.0f};
        int32_t t = -1;
        CHECK_OK(slm_constraint_sample(c, &smp, lg, NULL, 0, &t));
        CHECK(t == 2);
        CHECK(!slm_constraint_done(c));
        /* now complete: EOS allowed ("c" has no token) */
        float lg2[4] = {1.0f, 5.0f, 2.0f, 9.0f};
        CHECK_OK(slm_constraint_sample(c, &smp, lg2, NULL, 0, &t));
        CHECK(t == 3);
        /* "a" then "c" required: no token spells "c" */
        js = "{\"grammar\":\"root ::= \\\"a\\\" \\\"c\\\"\"}";
        CHECK_OK(slm_config_apply_json(cfg, js, strlen(js)));
        CHECK_OK(slm_constraint_update(&c, tok, cfg));
        slm_constraint_begin(c);
        float lg3[4] = {1.0f, 5.0f, 2.0f, 9.0f};
        CHECK_OK(slm_constraint_sample(c, &smp, lg3, NULL, 0, &t));
        CHECK(t == 0);
        float lg4[4] = {1.0f, 5.0f, 2.0f, 9.0f};
        t = -1;
        CHECK_ERR(slm_constraint_sample(c, &smp, lg4, NULL, 0, &t), SLM_ERR_CONFIG, "no token");
        CHECK(t == -1);
    }
    slm_sampler_free(&smp);
    slm_constraint_free(c);
    slm_config_free(cfg);
    slm_tokenizer_free(tok);
}

int main(void) {
    test_gbnf();
    test_tiny_vocab();
    test_done();
    test_schema();
    test_tokens_and_session();
    test_llama3_vocab();
    return check_finish();
}
