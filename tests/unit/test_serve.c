/* The server's pieces: OpenAI request parsing (good requests and a table of
 * bad ones), response and chunk JSON, UTF-8 handling, the API-key compare,
 * metrics text; then a server in this process over a small random model,
 * driven over a loopback socket, started and shut down.
 *
 * `test_serve --write-model PATH` only writes the small model (the
 * integration tests use it when the shared fixtures are absent). */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "quant/types.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "serve/serve.h"
#include "testmodel.h"

static const slm_test_model_params MODEL_PARAMS = {.dim = 64,
                                                   .n_layers = 2,
                                                   .n_heads = 4,
                                                   .n_kv_heads = 2,
                                                   .ffn_dim = 128,
                                                   .n_ctx = 512,
                                                   .n_extra_vocab = 40,
                                                   .wtype = SLM_TYPE_F32,
                                                   .seed = 7,
                                                   .scale = 0.08f};

/* ---- parsing ------------------------------------------------------------------------------ */

static int parses(srv_kind kind, const char *body, srv_request *q) {
    srv_error e;
    int rc = srv_parse_request(kind, body, strlen(body), q, &e);
    if (rc) fprintf(stderr, "  unexpected error for %s: %s\n", body, e.message);
    return rc == 0;
}

static void test_parse_good(void) {
    srv_request q;
    CHECK(parses(
        SRV_CHAT,
        "{\"model\":\"x\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"he\"},"
        "{\"type\":\"text\",\"text\":\"llo\"}]},{\"role\":\"assistant\",\"content\":null},"
        "{\"role\":\"developer\",\"content\":\"d\"}],"
        "\"temperature\":0,\"top_p\":0.5,\"seed\":42,\"stop\":[\"a\",\"b\"],\"max_tokens\":7,"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
        "\"logprobs\":false,\"response_format\":{\"type\":\"text\"},\"whatever\":[1,{}],"
        "\"presence_penalty\":0.5}",
        &q));
    CHECK(q.n_msgs == 4);
    CHECK(q.n_msgs == 4 && !strcmp(q.msgs[1].content, "hello"));
    CHECK(q.n_msgs == 4 && !strcmp(q.msgs[2].content, ""));
    CHECK(q.n_msgs == 4 && !strcmp(q.msgs[3].role, "system"));
    CHECK(q.stream == 1 && q.include_usage == 1 && q.max_tokens == 7);
    const cJSON *t = cJSON_GetObjectItem(q.sampling, "temperature");
    CHECK(cJSON_IsNumber(t) && t->valuedouble == 0);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(q.sampling, "stop")) == 2);
    const cJSON *pp = cJSON_GetObjectItem(q.sampling, "presence_penalty");
    CHECK(cJSON_IsNumber(pp) && pp->valuedouble == 0.5);
    CHECK(q.logprobs == 0 && q.top_logprobs == 0);
    srv_request_free(&q);
    CHECK(parses(SRV_CHAT,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
                 "\"top_logprobs\":20,\"frequency_penalty\":-2}",
                 &q));
    CHECK(q.logprobs == 1 && q.top_logprobs == 20);
    pp = cJSON_GetObjectItem(q.sampling, "frequency_penalty");
    CHECK(cJSON_IsNumber(pp) && pp->valuedouble == -2);
    srv_request_free(&q);
    CHECK(parses(SRV_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":5}", &q));
    CHECK(q.logprobs == 1 && q.top_logprobs == 5);
    srv_request_free(&q);

    CHECK(parses(SRV_COMPLETION, "{\"prompt\":\"Once\",\"echo\":true,\"max_completion_tokens\":3}",
                 &q));
    CHECK(q.prompt && !strcmp(q.prompt, "Once") && q.echo && q.max_tokens == 3);
    srv_request_free(&q);
    CHECK(parses(SRV_COMPLETION, "{\"prompt\":[\"Once\"],\"stop\":\"x\"}", &q));
    CHECK(q.prompt && !strcmp(q.prompt, "Once"));
    srv_request_free(&q);
    CHECK(parses(SRV_COMPLETION, "{\"prompt\":[1,2,3]}", &q));
    CHECK(q.n_prompt_ids == 3 && q.prompt_ids[2] == 3);
    srv_request_free(&q);
    CHECK(parses(SRV_COMPLETION, "  {\"prompt\":[[5,6]],\"logprobs\":0,\"best_of\":1}\n", &q));
    CHECK(q.n_prompt_ids == 2 && q.prompt_ids[0] == 5);
    srv_request_free(&q);
}

static void test_parse_bad(void) {
    static const struct {
        srv_kind kind;
        const char *body;
        const char *code;
        const char *param;
    } bad[] = {
        {SRV_CHAT, "", "invalid_json", NULL},
        {SRV_CHAT, "{\"messages\":[", "invalid_json", NULL},
        {SRV_CHAT, "[1,2]", "invalid_json", NULL},
        {SRV_CHAT, "{} x", "invalid_json", NULL},
        {SRV_CHAT, "{}", "missing_required_parameter", "messages"},
        {SRV_CHAT, "{\"messages\":[]}", "invalid_value", "messages"},
        {SRV_CHAT, "{\"messages\":\"hi\"}", "invalid_type", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "missing_required_parameter",
         "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "invalid_value",
         "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "missing_required_parameter",
         "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "invalid_type",
         "messages"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]"
         "}]}",
         "unsupported_parameter", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}",
         "invalid_type", "temperature"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}",
         "invalid_value", "temperature"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1e999}",
         "invalid_value", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2.5}",
         "invalid_type", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}",
         "invalid_value", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"seed\":-1}",
         "invalid_value", "seed"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}",
         "unsupported_parameter", "n"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}",
         "invalid_type", "logprobs"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}",
         "invalid_value", "top_logprobs"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
         "\"top_logprobs\":21}",
         "invalid_value", "top_logprobs"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"presence_penalty\":2.5}",
         "invalid_value", "presence_penalty"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"frequency_penalty\":\"x\"}",
         "invalid_type", "frequency_penalty"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":{\"uniqueItems\":true}}}}",
         "invalid_value", "response_format"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"xml\"}}",
         "invalid_value", "response_format"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}",
         "invalid_type", "stream"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}",
         "invalid_type", "stop"},
        {SRV_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\","
         "\"e\"]}",
         "invalid_value", "stop"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":7}",
         "invalid_type", "model"},
        {SRV_COMPLETION, "{}", "missing_required_parameter", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":5}", "invalid_type", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "unsupported_parameter", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":[1,-2]}", "invalid_type", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":[1,1e300]}", "invalid_type", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":6}", "invalid_value", "logprobs"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":true}", "invalid_type", "logprobs"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"top_logprobs\":2}", "unsupported_parameter",
         "top_logprobs"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "unsupported_parameter", "suffix"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"echo\":1}", "invalid_type", "echo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        srv_request q;
        srv_error e;
        memset(&e, 0, sizeof e);
        int rc = srv_parse_request(bad[i].kind, bad[i].body, strlen(bad[i].body), &q, &e);
        CHECK_MSG(rc == -1 && e.http == 400, "case %zu (%s): rc %d http %d", i, bad[i].body, rc,
                  e.http);
        CHECK_MSG(e.code && !strcmp(e.code, bad[i].code), "case %zu (%s): code %s, want %s", i,
                  bad[i].body, e.code ? e.code : "(null)", bad[i].code);
        CHECK_MSG((!bad[i].param && !e.param) ||
                      (bad[i].param && e.param && !strcmp(bad[i].param, e.param)),
                  "case %zu: param %s, want %s", i, e.param ? e.param : "(null)",
                  bad[i].param ? bad[i].param : "(null)");
        CHECK(q.msgs == NULL && q.sampling == NULL && q.prompt == NULL);
    }
    /* invalid UTF-8 and deep nesting */
    srv_request q;
    srv_error e;
    const char bad_utf8[] = "{\"prompt\":\"\xc3\x28\"}";
    CHECK(srv_parse_request(SRV_COMPLETION, bad_utf8, sizeof bad_utf8 - 1, &q, &e) == -1 &&
          !strcmp(e.code, "invalid_utf8"));
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    CHECK(srv_parse_request(SRV_CHAT, deep, 2 * depth, &q, &e) == -1 && e.http == 400);
    free(deep);
    /* a NUL inside the body */
    const char nul[] = "{\"prompt\":\"a\"}\0junk";
    CHECK(srv_parse_request(SRV_COMPLETION, nul, sizeof nul - 1, &q, &e) == -1);
}

/* ---- responses and helpers ---------------------------------------------------------------- */

static void test_responses(void) {
    srv_reply r = {SRV_CHAT, "chatcmpl-1", "m", 123, "stop", 5, 3, 2, NULL};
    char *j = srv_reply_json(&r, "hi\xff", 3);
    cJSON *o = cJSON_Parse(j);
    CHECK(o != NULL);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    const cJSON *msg = cJSON_GetObjectItem(ch, "message");
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "content")->valuestring, "hi\xef\xbf\xbd"));
    CHECK(!strcmp(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "stop"));
    const cJSON *u = cJSON_GetObjectItem(o, "usage");
    CHECK(cJSON_GetObjectItem(u, "total_tokens")->valuedouble == 8);
    CHECK(!strcmp(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion"));
    cJSON_Delete(o);
    free(j);

    r.finish = NULL;
    j = srv_chunk_json(&r, "", 0, 1, 0);
    o = cJSON_Parse(j);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "role")->valuestring,
                  "assistant"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(ch, "finish_reason")));
    cJSON_Delete(o);
    free(j);
    j = srv_chunk_json(&r, "", 0, 0, 1);
    o = cJSON_Parse(j);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(o, "choices")) == 0);
    CHECK(cJSON_GetObjectItem(o, "usage") != NULL);
    cJSON_Delete(o);
    free(j);

    r.kind = SRV_COMPLETION;
    r.finish = "length";
    j = srv_chunk_json(&r, "abc", 3, 0, 0);
    o = cJSON_Parse(j);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(!strcmp(cJSON_GetObjectItem(ch, "text")->valuestring, "abc"));
    CHECK(!strcmp(cJSON_GetObjectItem(o, "object")->valuestring, "text_completion"));
    cJSON_Delete(o);
    free(j);

    srv_error e;
    srv_error_set(&e, 404, "invalid_request_error", "not_found", NULL, "no %s", "route");
    j = srv_error_json(&e);
    o = cJSON_Parse(j);
    const cJSON *err = cJSON_GetObjectItem(o, "error");
    CHECK(!strcmp(cJSON_GetObjectItem(err, "message")->valuestring, "no route"));
    CHECK(!strcmp(cJSON_GetObjectItem(err, "code")->valuestring, "not_found"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    cJSON_Delete(o);
    free(j);
}

/* A fake tokenizer: id i is the text "t<i>", id 7 the first byte of "é". */
static size_t fake_piece(void *user, int32_t id, char *buf, size_t cap) {
    (void)user;
    if (id == 7) {
        buf[0] = (char)0xc3;
        return 1;
    }
    int n = snprintf(buf, cap, "t%d", (int)id);
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap;
}

static void test_logprobs_json(void) {
    srv_tok_lp toks[2];
    memset(toks, 0, sizeof toks);
    toks[0].token = 3;
    toks[0].logprob = -0.25f;
    toks[0].n_top = 2;
    toks[0].top_ids[0] = 3;
    toks[0].top_lp[0] = -0.25f;
    toks[0].top_ids[1] = 7;
    toks[0].top_lp[1] = -2.0f;
    toks[1].token = 7;
    toks[1].logprob = -1.5f;
    srv_logprobs lp = {toks, 2, fake_piece, NULL, 0};
    srv_reply r = {SRV_CHAT, "chatcmpl-1", "m", 1, "stop", 1, 2, 0, &lp};
    char *j = srv_reply_json(&r, "t3\xc3", 3);
    cJSON *o = cJSON_Parse(j);
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    const cJSON *content = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "logprobs"), "content");
    CHECK(cJSON_GetArraySize(content) == 2);
    const cJSON *e0 = cJSON_GetArrayItem(content, 0);
    CHECK(!strcmp(cJSON_GetObjectItem(e0, "token")->valuestring, "t3"));
    CHECK(cJSON_GetObjectItem(e0, "logprob")->valuedouble == -0.25);
    const cJSON *b0 = cJSON_GetObjectItem(e0, "bytes");
    CHECK(cJSON_GetArraySize(b0) == 2 && cJSON_GetArrayItem(b0, 0)->valuedouble == 't' &&
          cJSON_GetArrayItem(b0, 1)->valuedouble == '3');
    const cJSON *tops = cJSON_GetObjectItem(e0, "top_logprobs");
    CHECK(cJSON_GetArraySize(tops) == 2);
    const cJSON *alt = cJSON_GetArrayItem(tops, 1);
    CHECK(!strcmp(cJSON_GetObjectItem(alt, "token")->valuestring, "\xef\xbf\xbd"));
    CHECK(cJSON_GetArrayItem(cJSON_GetObjectItem(alt, "bytes"), 0)->valuedouble == 0xc3);
    const cJSON *e1 = cJSON_GetArrayItem(content, 1);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(e1, "top_logprobs")) == 0);
    cJSON_Delete(o);
    free(j);

    /* a chunk carries its tokens; without lp, "logprobs": null */
    r.finish = NULL;
    lp.n = 1;
    j = srv_chunk_json(&r, "t3", 2, 0, 0);
    o = cJSON_Parse(j);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    content = cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "logprobs"), "content");
    CHECK(cJSON_GetArraySize(content) == 1);
    cJSON_Delete(o);
    free(j);
    r.lp = NULL;
    j = srv_chunk_json(&r, "t3", 2, 0, 0);
    o = cJSON_Parse(j);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(ch, "logprobs")));
    cJSON_Delete(o);
    free(j);

    /* completions: the legacy shape, offsets after an echoed prompt of 4 bytes */
    lp.n = 2;
    lp.text_offset = 4;
    r.lp = &lp;
    r.kind = SRV_COMPLETION;
    r.finish = "length";
    j = srv_reply_json(&r, "Oncet3\xc3", 7);
    o = cJSON_Parse(j);
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    const cJSON *l = cJSON_GetObjectItem(ch, "logprobs");
    const cJSON *tk = cJSON_GetObjectItem(l, "tokens");
    const cJSON *tl = cJSON_GetObjectItem(l, "token_logprobs");
    const cJSON *to = cJSON_GetObjectItem(l, "text_offset");
    const cJSON *tt = cJSON_GetObjectItem(l, "top_logprobs");
    CHECK(cJSON_GetArraySize(tk) == 2 && cJSON_GetArraySize(tl) == 2 &&
          cJSON_GetArraySize(to) == 2 && cJSON_GetArraySize(tt) == 2);
    CHECK(!strcmp(cJSON_GetArrayItem(tk, 0)->valuestring, "t3"));
    CHECK(cJSON_GetArrayItem(tl, 1)->valuedouble == -1.5);
    CHECK(cJSON_GetArrayItem(to, 0)->valuedouble == 4 &&
          cJSON_GetArrayItem(to, 1)->valuedouble == 6);
    const cJSON *alts = cJSON_GetArrayItem(tt, 0);
    CHECK(cJSON_GetArraySize(alts) == 2 && cJSON_GetObjectItem(alts, "t3")->valuedouble == -0.25);
    CHECK(lp.text_offset == 7);
    cJSON_Delete(o);
    free(j);
}

static void test_helpers(void) {
    CHECK(srv_utf8_valid("h\xc3\xa9llo \xf0\x9f\x98\x80", 11));
    CHECK(!srv_utf8_valid("\xc0\xaf", 2));         /* overlong */
    CHECK(!srv_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CHECK(!srv_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    CHECK(!srv_utf8_valid("\xe2\x82", 2));         /* truncated */
    size_t n = 0;
    char *s = srv_utf8_sanitize("a\0b\x80", 4, &n);
    CHECK(s && n == 8 &&
          !memcmp(s,
                  "a\xef\xbf\xbd"
                  "b\xef\xbf\xbd",
                  8));
    free(s);
    CHECK(srv_secret_equal("key", 3, "key", 3));
    CHECK(!srv_secret_equal("kez", 3, "key", 3));
    CHECK(!srv_secret_equal("ke", 2, "key", 3));
    CHECK(!srv_secret_equal("keyy", 4, "key", 3));
    CHECK(!srv_secret_equal("", 0, "key", 3));

    srv_metrics m;
    srv_metrics_init(&m);
    srv_metrics_request(&m, SRV_EP_CHAT, 200, NULL, 0.02);
    srv_metrics_request(&m, SRV_EP_OTHER, 404, "invalid_request_error", 0.001);
    srv_metrics_ttft(&m, 0.003);
    srv_metrics_token(&m, 20.0);
    srv_metrics_tokens(&m, 10, 5, 4);
    char *t = srv_metrics_render(&m, NULL);
    CHECK(t && strstr(t, "slm_requests_total{endpoint=\"/v1/chat/completions\",status=\"200\"} 1"));
    CHECK(t && strstr(t, "slm_requests_total{endpoint=\"other\",status=\"404\"} 1"));
    CHECK(t && strstr(t, "slm_errors_total{type=\"invalid_request_error\"} 1"));
    CHECK(t && strstr(t, "slm_time_to_first_token_seconds_bucket{le=\"0.005\"} 1"));
    CHECK(t && strstr(t, "slm_time_per_output_token_seconds_bucket{le=\"2.5\"} 0"));
    CHECK(t && strstr(t, "slm_time_per_output_token_seconds_bucket{le=\"+Inf\"} 1"));
    CHECK(t && strstr(t, "slm_generated_tokens_total 5"));
    free(t);
    srv_metrics_destroy(&m);
}

/* ---- a live server --------------------------------------------------------------------------- */

/* One request over a fresh connection; the reply (headers and body) into buf. */
static int http(int port, const char *req, size_t req_len, char *buf, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) break;
        n += (size_t)r;
        if (n + 1 >= cap) break;
    }
    buf[n] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) return -1;
    return status;
}

static int post(int port, const char *path, const char *body, const char *extra, char *buf,
                size_t cap) {
    size_t cap_req = strlen(body) + 512;
    char *req = malloc(cap_req);
    if (!req) return -1;
    int n = snprintf(req, cap_req,
                     "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                     path, strlen(body), extra ? extra : "", body);
    int st = n > 0 && (size_t)n < cap_req ? http(port, req, (size_t)n, buf, cap) : -1;
    free(req);
    return st;
}

static void test_live(const char *path) {
    slm_model *model = NULL;
    CHECK_OK(slm_model_load(path, NULL, &model));
    if (!model) return;
    slm_config *cfg = NULL;
    CHECK_OK(slm_config_new(&cfg));
    CHECK_OK(slm_config_apply_json(cfg, "{\"threads\":1,\"n_ctx\":128}", 26));
    slm_server_opts o = {.port = 0,
                         .parallel = 2,
                         .queue = 2,
                         .api_key = "sesame",
                         .model_path = path,
                         .max_body = 4096};
    slm_server *srv = NULL;
    CHECK_OK(slm_server_start(model, cfg, &o, &srv));
    if (!srv) {
        slm_config_free(cfg);
        slm_model_free(model);
        return;
    }
    int port = slm_server_port(srv);
    CHECK(port > 0);
    static char buf[1 << 16];
    const char *auth = "Authorization: Bearer sesame\r\n";
    const char *get_health = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(http(port, get_health, strlen(get_health), buf, sizeof buf) == 200);
    CHECK(strstr(buf, "\"status\":\"ok\"") != NULL);

    int st =
        post(port, "/v1/completions", "{\"prompt\":\"the cat\",\"max_tokens\":8,\"temperature\":0}",
             auth, buf, sizeof buf);
    CHECK_MSG(st == 200, "completion: %d %s", st, buf);
    char *body = strstr(buf, "\r\n\r\n");
    cJSON *o1 = body ? cJSON_Parse(body + 4) : NULL;
    CHECK(o1 != NULL);
    const cJSON *u = cJSON_GetObjectItem(o1, "usage");
    CHECK(u && cJSON_GetObjectItem(u, "completion_tokens")->valuedouble <= 8);
    char text1[4096] = "";
    const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o1, "choices"), 0);
    if (cJSON_IsString(cJSON_GetObjectItem(ch, "text")))
        snprintf(text1, sizeof text1, "%s", cJSON_GetObjectItem(ch, "text")->valuestring);
    cJSON_Delete(o1);

    /* streamed at temperature 0: the chunks make the same text */
    st = post(port, "/v1/completions",
              "{\"prompt\":\"the cat\",\"max_tokens\":8,\"temperature\":0,\"stream\":true}", auth,
              buf, sizeof buf);
    CHECK(st == 200);
    CHECK(strstr(buf, "text/event-stream") != NULL);
    CHECK(strstr(buf, "data: [DONE]\n\n") != NULL);
    char joined[4096] = "";
    for (char *p = strstr(buf, "data: {"); p; p = strstr(p + 1, "data: {")) {
        char *end = strstr(p, "\n\n");
        if (!end) break;
        cJSON *c = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
        const cJSON *t =
            cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(c, "choices"), 0), "text");
        if (cJSON_IsString(t)) strncat(joined, t->valuestring, sizeof joined - strlen(joined) - 1);
        cJSON_Delete(c);
    }
    CHECK_MSG(!strcmp(joined, text1), "streamed '%s' vs '%s'", joined, text1);

    st = post(port, "/v1/chat/completions",
              "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}", auth, buf,
              sizeof buf);
    CHECK_MSG(st == 200, "chat: %d %s", st, buf);
    CHECK(strstr(buf, "\"chat.completion\"") != NULL);

    /* errors */
    CHECK(post(port, "/v1/completions", "{\"prompt\":\"x\"}", NULL, buf, sizeof buf) == 401);
    CHECK(post(port, "/v1/completions", "{\"prompt\":\"x\"}", "Authorization: Bearer sesamE\r\n",
               buf, sizeof buf) == 401);
    CHECK(post(port, "/v1/completions", "{\"prompt\":", auth, buf, sizeof buf) == 400);
    CHECK(strstr(buf, "\"invalid_json\"") != NULL);
    CHECK(post(port, "/v1/nothing", "{}", auth, buf, sizeof buf) == 404);
    static char big[8192];
    memset(big, 'a', sizeof big - 1);
    CHECK(post(port, "/v1/completions", big, auth, buf, sizeof buf) == 413);
    char longp[4000] = "{\"prompt\":\"";
    for (int i = 0; i < 300; i++) strcat(longp, "a b c ");
    strcat(longp, "\"}");
    st = post(port, "/v1/completions", longp, auth, buf, sizeof buf);
    CHECK_MSG(st == 400 && strstr(buf, "context_length_exceeded"), "overflow: %d %s", st, buf);
    const char *get_chat =
        "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(http(port, get_chat, strlen(get_chat), buf, sizeof buf) == 405);
    CHECK(http(port, get_health, strlen(get_health), buf, sizeof buf) == 200);
    const char *get_metrics = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(http(port, get_metrics, strlen(get_metrics), buf, sizeof buf) == 200);
    CHECK(strstr(buf, "slm_requests_total{endpoint=\"/v1/completions\",status=\"401\"} 2") != NULL);

    slm_server_shutdown(srv, 1);
    CHECK(http(port, get_health, strlen(get_health), buf, sizeof buf) == -1); /* not listening */
    slm_server_free(srv);
    slm_config_free(cfg);
    slm_model_free(model);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-model")) {
        slm_status st = slm_test_write_model(argv[2], &MODEL_PARAMS);
        if (st != SLM_OK) fprintf(stderr, "%s\n", slm_last_error());
        return st == SLM_OK ? 0 : 1;
    }
    test_parse_good();
    test_parse_bad();
    test_responses();
    test_logprobs_json();
    test_helpers();
    char path[512];
    check_tmp_path("serve.gguf", path, sizeof path);
    CHECK_OK(slm_test_write_model(path, &MODEL_PARAMS));
    test_live(path);
    remove(path);
    return check_finish();
}
