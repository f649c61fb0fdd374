/* Hybrid deployment (issue 10): the SSE parser on every split of its input,
 * config validation errors naming the key path, the router's decisions, and
 * the fallback to the local model when the cloud is unreachable (a closed
 * loopback port: no network beyond 127.0.0.1). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "check.h"
#include "textbuf.h"
#include "hybrid/cloud.h"
#include "hybrid/hybrid.h"
#include "quant/types.h"
#include "runtime/config.h"
#include "testmodel.h"

/* ---- SSE ---- */
typedef struct ev_log {
    char all[4096];
    size_t n;
    int count;
} ev_log;

static int on_ev(void *user, const char *data, size_t len) {
    ev_log *l = user;
    if (l->n + len + 2 < sizeof l->all) {
        memcpy(l->all + l->n, data, len);
        l->n += len;
        l->all[l->n++] = '|';
        l->all[l->n] = '\0';
    }
    l->count++;
    return 0;
}

static void test_sse(void) {
    static const char stream[] = ": a comment\r\n"
                                 "data: {\"a\":1}\r\n\r\n"
                                 "event: ignored\n"
                                 "data:{\"b\":2}\n\n"
                                 "data: line one\n"
                                 "data: line two\n\n"
                                 "id: 7\r"
                                 "data: cr only\r\r"
                                 "data: [DONE]\n\n"
                                 "data: after done\n\n";
    const char *want = "{\"a\":1}|{\"b\":2}|line one\nline two|cr only|";
    size_t n = sizeof stream - 1;
    int bad = 0;
    /* every split point into two reads, and one byte at a time */
    for (size_t cut = 0; cut <= n; cut++) {
        hy_sse s;
        hy_sse_init(&s);
        ev_log l = {{0}, 0, 0};
        int rc = hy_sse_feed(&s, stream, cut, on_ev, &l);
        rc |= hy_sse_feed(&s, stream + cut, n - cut, on_ev, &l);
        if (rc || strcmp(l.all, want) || l.count != 4 || !s.done) {
            bad++;
            if (bad < 3) fprintf(stderr, "split %zu: got '%s' (%d events)\n", cut, l.all, l.count);
        }
        hy_sse_free(&s);
    }
    CHECK(bad == 0);
    hy_sse s;
    hy_sse_init(&s);
    ev_log l = {{0}, 0, 0};
    int rc = 0;
    for (size_t i = 0; i < n; i++) rc |= hy_sse_feed(&s, stream + i, 1, on_ev, &l);
    CHECK(rc == 0);
    CHECK_MSG(!strcmp(l.all, want), "byte at a time: '%s'", l.all);
    CHECK(s.done && s.n_events == 4);
    hy_sse_free(&s);
    /* a stream cut before [DONE] is not done; an unterminated event is not dispatched */
    hy_sse_init(&s);
    ev_log l2 = {{0}, 0, 0};
    const char cut[] = "data: {\"x\":1}\n\ndata: {\"y\"";
    CHECK(hy_sse_feed(&s, cut, sizeof cut - 1, on_ev, &l2) == 0);
    CHECK(l2.count == 1 && !s.done);
    hy_sse_free(&s);
}

/* ---- the client's view of base_url (the audit log's host:port; never userinfo) ---- */
static void test_host(void) {
    static const char *const cases[][2] = {{"http://127.0.0.1:9/v1", "127.0.0.1:9"},
                                           {"https://api.example.com/v1/", "api.example.com:443"},
                                           {"http://user:pw@h.example/v1", "h.example:80"},
                                           {"http://[::1]:8080/v1", "[::1]:8080"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hy_cloud_cfg cc;
        hy_cloud_cfg_defaults(&cc);
        snprintf(cc.base_url, sizeof cc.base_url, "%s", cases[i][0]);
        hy_cloud *c = NULL;
        CHECK_OK(hy_cloud_new(&cc, &c));
        CHECK_MSG(c && !strcmp(hy_cloud_host(c), cases[i][1]), "%s -> %s", cases[i][0],
                  c ? hy_cloud_host(c) : "(none)");
        hy_cloud_free(c);
    }
}

/* ---- config ---- */
static slm_status apply(slm_config *c, const char *json) {
    return slm_config_apply_json(c, json, strlen(json));
}

static void test_config(void) {
    slm_config *c = NULL;
    CHECK_OK(slm_config_new(&c));
    if (!c) return;
    CHECK(c->mode == SLM_MODE_LOCAL);
    slm_config before = *c;
    CHECK_ERR(apply(c, "{\"mode\":\"cloudy\"}"), SLM_ERR_CONFIG, "'mode'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"timeout_ms\":-1}}"), SLM_ERR_CONFIG, "'cloud.timeout_ms'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"retries\":1.5}}"), SLM_ERR_CONFIG, "'cloud.retries'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"bogus\":1}}"), SLM_ERR_CONFIG, "'cloud.bogus'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"base_url\":\"ftp://x\"}}"), SLM_ERR_CONFIG,
              "'cloud.base_url'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"api_key\":\"sk-secret-123\"}}"), SLM_ERR_CONFIG,
              "api_key_env");
    CHECK(!check_has(slm_last_error(), "sk-secret-123"));
    CHECK_ERR(apply(c, "{\"cloud\":{\"api_key_env\":\"A B\"}}"), SLM_ERR_CONFIG,
              "'cloud.api_key_env'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"breaker\":{\"failures\":0}}}"), SLM_ERR_CONFIG,
              "'cloud.breaker.failures'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"breaker\":{\"open\":1}}}"), SLM_ERR_CONFIG,
              "'cloud.breaker.open'");
    CHECK_ERR(apply(c, "{\"cloud\":{\"insecure_skip_verify\":1}}"), SLM_ERR_CONFIG,
              "'cloud.insecure_skip_verify'");
    CHECK_ERR(apply(c, "{\"cloud\":[]}"), SLM_ERR_CONFIG, "'cloud'");
    CHECK_ERR(apply(c, "{\"router\":{\"rules\":[{\"regex\":\"(\"}]}}"), SLM_ERR_CONFIG,
              "'router.rules[0].regex'");
    CHECK_ERR(apply(c, "{\"router\":{\"rules\":[{\"regex\":\"a\",\"keywords\":[\"b\"]}]}}"),
              SLM_ERR_CONFIG, "'router.rules[0]'");
    CHECK_ERR(apply(c, "{\"router\":{\"rules\":[{\"keywords\":[\"b\"],\"route\":\"moon\"}]}}"),
              SLM_ERR_CONFIG, "'router.rules[0].route'");
    CHECK_ERR(apply(c, "{\"router\":{\"confidence\":{\"tokens\":-1}}}"), SLM_ERR_CONFIG,
              "'router.confidence.tokens'");
    CHECK_ERR(apply(c, "{\"router\":{\"confidence\":{\"min_mean_logprob\":1}}}"), SLM_ERR_CONFIG,
              "'router.confidence.min_mean_logprob'");
    CHECK_ERR(apply(c, "{\"router\":{\"speed\":1}}"), SLM_ERR_CONFIG, "'router.speed'");
    CHECK_ERR(apply(c, "{\"policy\":{\"email\":\"shred\"}}"), SLM_ERR_CONFIG, "policy.");
    CHECK_ERR(apply(c, "{\"audit_log\":\"\"}"), SLM_ERR_CONFIG, "'audit_log'");
    CHECK_ERR(apply(c, "{\"mode\":\"hybrid\",\"cloud\":{\"timeout_ms\":0}}"), SLM_ERR_CONFIG,
              "'cloud.timeout_ms'");
    CHECK(memcmp(c, &before, sizeof before) == 0); /* all or nothing */

    CHECK_OK(apply(c, "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:9/v1\","
                      "\"model\":\"big\",\"api_key_env\":\"SLM_TEST_KEY\",\"timeout_ms\":500,"
                      "\"breaker\":{\"failures\":2,\"open_ms\":100}},"
                      "\"router\":{\"rules\":[{\"name\":\"legal\",\"keywords\":[\"contract\"]}]},"
                      "\"audit_log\":\"/tmp/a.jsonl\"}"));
    CHECK(c->mode == SLM_MODE_HYBRID);
    char *js = slm_config_to_json(c);
    CHECK(js && check_has(js, "\"mode\":\"hybrid\"") && check_has(js, "127.0.0.1:9") &&
          check_has(js, "\"legal\"") && check_has(js, "/tmp/a.jsonl"));
    /* the effective config round-trips */
    slm_config *c2 = NULL;
    CHECK_OK(slm_config_new(&c2));
    if (js && c2) {
        CHECK_OK(apply(c2, js));
        CHECK(c2->mode == SLM_MODE_HYBRID && !strcmp(c2->hy_cloud, c->hy_cloud));
    }
    free(js);
    slm_config_free(c2);
    slm_config_free(c);
}

/* ---- the router ---- */
/* A loopback port nothing listens on. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    int port = 0;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static slm_hybrid *make_router(slm_model *m, const char *json) {
    slm_config *c = NULL;
    slm_hybrid *h = NULL;
    CHECK_OK(slm_config_new(&c));
    if (!c) return NULL;
    CHECK_OK(apply(c, json));
    CHECK_OK(slm_hybrid_new(m, c, &h));
    slm_config_free(c);
    return h;
}

/* ---- a one-shot fake cloud on loopback: reads one request, sends a canned answer ---- */
typedef struct fake_cloud {
    int fd, port;
    const char *response; /* whole HTTP response */
    char body[8192];      /* the request body it received */
    pthread_t th;
} fake_cloud;

static void *fake_serve(void *arg) {
    fake_cloud *f = arg;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0) return NULL;
    char buf[16384];
    size_t n = 0;
    long want = -1;
    while (n < sizeof buf - 1) {
        ssize_t r = read(c, buf + n, sizeof buf - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
        buf[n] = 0;
        char *hdr_end = strstr(buf, "\r\n\r\n");
        if (hdr_end && want < 0) {
            char *cl = strcasestr(buf, "Content-Length:");
            want = cl ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (hdr_end && (long)(n - (size_t)(hdr_end + 4 - buf)) >= want) {
            snprintf(f->body, sizeof f->body, "%s", hdr_end + 4);
            break;
        }
    }
    ssize_t w = write(c, f->response, strlen(f->response));
    (void)w;
    close(c);
    return NULL;
}

static int fake_start(fake_cloud *f, const char *response) {
    memset(f, 0, sizeof *f);
    f->response = response;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&a, sizeof a) || listen(f->fd, 4) ||
        getsockname(f->fd, (struct sockaddr *)&a, &al))
        return -1;
    f->port = ntohs(a.sin_port);
    return pthread_create(&f->th, NULL, fake_serve, f);
}

static void fake_stop(fake_cloud *f) {
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->th, NULL);
    close(f->fd);
}

static const char SSE_ANSWER[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Write to [EMA\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"IL_1] to\"}}]}\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"day.\"},\"finish_reason\":\"stop\"}],"
    "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n"
    "data: [DONE]\n\n";
static const char JSON_ANSWER_FMT[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
    "Connection: close\r\n\r\n%s";

/* Redaction through a real HTTP exchange: the cloud gets the placeholder, the
 * caller gets the value back, also when the placeholder is split across events. */
static void test_fake_cloud(slm_model *m, slm_session *s) {
    const char *prompt = "Please mail bob.jones@example.com about it";
    for (int streamed = 1; streamed >= 0; streamed--) {
        char json_resp[1024];
        const char *jbody = "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":"
                            "\"Write to [EMAIL_1] today.\"},\"finish_reason\":\"stop\"}]}";
        snprintf(json_resp, sizeof json_resp, JSON_ANSWER_FMT, strlen(jbody), jbody);
        fake_cloud f;
        if (fake_start(&f, streamed ? SSE_ANSWER : json_resp) != 0) {
            CHECK_MSG(0, "cannot start the fake cloud");
            return;
        }
        char cfg[1024];
        snprintf(cfg, sizeof cfg,
                 "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:%d/v1/\","
                 "\"model\":\"big\",\"retries\":0},\"policy\":{\"email\":\"redact\"}}",
                 f.port);
        slm_hybrid *h = make_router(m, cfg);
        if (h) {
            slm_hybrid_request rq = {NULL, 0,       prompt, strlen(prompt), SLM_ROUTE_CLOUD,
                                     5000, streamed};
            slm_hybrid_result res;
            slm_test_text out = {{0}, 0};
            CHECK_OK(slm_hybrid_generate(h, s, &rq, slm_test_collect, &out, &res));
            CHECK_MSG(!res.degraded && !strcmp(res.route, "cloud"), "%s %s: %s",
                      streamed ? "stream" : "whole", res.degraded_cause, res.degraded_detail);
            CHECK_MSG(!strcmp(out.s, "Write to bob.jones@example.com today."),
                      "%s: restored text '%s'", streamed ? "stream" : "whole", out.s);
            if (streamed) CHECK(res.prompt_tokens == 7 && res.completion_tokens == 3);
        }
        fake_stop(&f);
        CHECK_MSG(check_has(f.body, "[EMAIL_1]") && !check_has(f.body, "bob.jones@example.com"),
                  "sent body: %s", f.body);
        CHECK(check_has(f.body, "\"model\":\"big\""));
        CHECK(check_has(f.body, streamed ? "\"stream\":true" : "\"stream\":false"));
        slm_hybrid_free(h);
    }
}

static void test_router(void) {
    char path[512];
    check_tmp_path("hybrid.gguf", path, sizeof path);
    slm_test_model_params p = {.dim = 64,
                               .n_layers = 2,
                               .n_heads = 4,
                               .ffn_dim = 128,
                               .n_ctx = 128,
                               .n_extra_vocab = 40,
                               .wtype = SLM_TYPE_F32,
                               .seed = 5,
                               .scale = 0.08f};
    CHECK_OK(slm_test_write_model(path, &p));
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(path, NULL, &m));
    if (!m) return;
    slm_config *sc = NULL;
    CHECK_OK(slm_config_new(&sc));
    CHECK_OK(apply(sc, "{\"temperature\":0,\"max_tokens\":12,\"n_ctx\":128}"));
    slm_session *s = NULL;
    CHECK_OK(slm_session_new(m, sc, &s));
    if (!s) return;

    const char *prompt = "the cat sat on the mat";
    slm_test_text local = {{0}, 0};
    slm_result lr;
    CHECK_OK(slm_generate(s, prompt, strlen(prompt), slm_test_collect, &local, &lr));
    CHECK(local.n > 0);

    /* local mode: the cloud section is never used, whatever the request asks */
    slm_hybrid *h0 = make_router(m, "{\"mode\":\"local\",\"cloud\":{\"base_url\":\"http://"
                                    "127.0.0.1:9/v1\",\"api_key_env\":\"SLM_NO_SUCH_VAR_X\"}}");
    CHECK(h0 && !slm_hybrid_enabled(h0));
    if (h0) {
        slm_hybrid_request rq = {NULL, 0, prompt, strlen(prompt), SLM_ROUTE_CLOUD, 0, 1};
        slm_hybrid_result res;
        slm_test_text out = {{0}, 0};
        CHECK_OK(slm_hybrid_generate(h0, s, &rq, slm_test_collect, &out, &res));
        CHECK(!strcmp(res.route, "local") && !strcmp(res.reason, "mode_local") && !res.degraded);
        CHECK_MSG(!strcmp(out.s, local.s), "'%s' vs '%s'", out.s, local.s);
    }
    slm_hybrid_free(h0);

    /* hybrid mode needs its key when one is named */
    slm_config *kc = NULL;
    slm_hybrid *hk = NULL;
    CHECK_OK(slm_config_new(&kc));
    if (kc) {
        CHECK_OK(apply(kc, "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:9/"
                           "v1\",\"api_key_env\":\"SLM_NO_SUCH_VAR_X\"}}"));
        CHECK_ERR(slm_hybrid_new(m, kc, &hk), SLM_ERR_CONFIG, "SLM_NO_SUCH_VAR_X");
        CHECK(apply(kc, "{\"cloud\":{}}") == SLM_OK);
        CHECK_ERR(slm_hybrid_new(m, kc, &hk), SLM_ERR_CONFIG, "base_url");
    }
    slm_config_free(kc);

    int port = closed_port();
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:%d/v1\","
             "\"timeout_ms\":2000,\"retries\":1,\"backoff_ms\":10,"
             "\"breaker\":{\"failures\":100,\"open_ms\":1000}},"
             "\"router\":{\"max_prompt_tokens\":40,\"rules\":["
             "{\"name\":\"legal\",\"keywords\":[\"Contract\"]},"
             "{\"name\":\"ids\",\"regex\":\"\\\\bID-[0-9]{4}\\\\b\"},"
             "{\"name\":\"keep\",\"keywords\":[\"diary\"],\"route\":\"local\"}]},"
             "\"policy\":{\"email\":\"block\",\"phone\":\"redact\"}}",
             port);
    slm_hybrid *h = make_router(m, cfg);
    CHECK(h && slm_hybrid_enabled(h));
    if (h) {
        hy_plan pl;
        hy_plan_request(h, NULL, 0, "hello", 5, 3, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(!pl.to_cloud && !pl.probe && !strcmp(pl.reason, "default"));
        hy_plan_request(h, NULL, 0, "hello", 5, 3, 128, 12, SLM_ROUTE_CLOUD, &pl);
        CHECK(pl.to_cloud && !strcmp(pl.reason, "override"));
        hy_plan_request(h, NULL, 0, "a contract here", 15, 3, 128, 12, SLM_ROUTE_LOCAL, &pl);
        CHECK(!pl.to_cloud && !strcmp(pl.reason, "override"));
        hy_plan_request(h, NULL, 0, "a CONTRACT here", 15, 3, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(pl.to_cloud && !strcmp(pl.reason, "rule:legal"));
        hy_plan_request(h, NULL, 0, "see ID-1234 now", 15, 3, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(pl.to_cloud && !strcmp(pl.reason, "rule:ids"));
        hy_plan_request(h, NULL, 0, "see ID-12345 now", 16, 3, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(!pl.to_cloud && !strcmp(pl.reason, "default"));
        hy_plan_request(h, NULL, 0, "my diary", 8, 300, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(!pl.to_cloud && !strcmp(pl.reason, "rule:keep"));
        hy_plan_request(h, NULL, 0, "long", 4, 41, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(pl.to_cloud && !strcmp(pl.reason, "context_overflow"));
        slm_chat_message msgs[2] = {{"system", "be brief"}, {"user", "about the contract"}};
        hy_plan_request(h, msgs, 2, NULL, 0, 10, 128, 12, SLM_ROUTE_AUTO, &pl);
        CHECK(pl.to_cloud && !strcmp(pl.reason, "rule:legal"));

        /* the cloud refuses: the local answer, marked degraded, fast */
        slm_hybrid_request rq = {NULL, 0, prompt, strlen(prompt), SLM_ROUTE_CLOUD, 5000, 1};
        slm_hybrid_result res;
        slm_test_text out = {{0}, 0};
        double t0 = slm_now_ms();
        CHECK_OK(slm_hybrid_generate(h, s, &rq, slm_test_collect, &out, &res));
        double ms = slm_now_ms() - t0;
        CHECK(!strcmp(res.route, "cloud") && !strcmp(res.reason, "override"));
        CHECK_MSG(res.degraded && !strcmp(res.degraded_cause, "refused"), "cause '%s' (%s)",
                  res.degraded_cause, res.degraded_detail);
        CHECK_MSG(!strcmp(out.s, local.s), "'%s' vs '%s'", out.s, local.s);
        CHECK(res.completion_tokens == lr.n_generated && !res.cloud_partial);
        CHECK_MSG(ms < 5000, "%.0f ms", ms);
        char *rj = slm_hybrid_result_json(&res, out.s, out.n);
        CHECK(rj && check_has(rj, "\"degraded\":true") && check_has(rj, "\"refused\"") &&
              check_has(rj, "\"route\":\"cloud\""));
        free(rj);

        /* blocked by the policy: stays local, not degraded (nothing was tried) */
        const char *pe = "write to bob@example.com please";
        slm_hybrid_request rb = {NULL, 0, pe, strlen(pe), SLM_ROUTE_CLOUD, 5000, 1};
        slm_test_text ob = {{0}, 0};
        CHECK_OK(slm_hybrid_generate(h, s, &rb, slm_test_collect, &ob, &res));
        CHECK_MSG(!strcmp(res.route, "local") && !strncmp(res.reason, "policy_block:", 13) &&
                      check_has(res.reason, "email") && !res.degraded,
                  "route %s reason %s", res.route, res.reason);
        CHECK(ob.n > 0);
    }
    slm_hybrid_free(h);

    /* confidence: a threshold no token reaches escalates; one every token reaches does not */
    snprintf(cfg, sizeof cfg,
             "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:%d/v1\","
             "\"retries\":0},\"router\":{\"confidence\":{\"tokens\":4,"
             "\"min_mean_logprob\":-0.0000001}}}",
             port);
    h = make_router(m, cfg);
    if (h) {
        slm_hybrid_request rq = {NULL, 0, prompt, strlen(prompt), SLM_ROUTE_AUTO, 5000, 1};
        slm_hybrid_result res;
        slm_test_text out = {{0}, 0};
        CHECK_OK(slm_hybrid_generate(h, s, &rq, slm_test_collect, &out, &res));
        CHECK_MSG(!strcmp(res.reason, "low_confidence") && res.degraded &&
                      !strcmp(res.degraded_cause, "refused"),
                  "reason %s cause %s", res.reason, res.degraded_cause);
        CHECK(res.mean_logprob < 0);
        CHECK_MSG(!strcmp(out.s, local.s), "low confidence fallback: '%s' vs '%s'", out.s, local.s);
    }
    slm_hybrid_free(h);
    snprintf(cfg, sizeof cfg,
             "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:%d/v1\"},"
             "\"router\":{\"confidence\":{\"tokens\":4,\"min_mean_logprob\":-1000}}}",
             port);
    h = make_router(m, cfg);
    if (h) {
        slm_hybrid_request rq = {NULL, 0, prompt, strlen(prompt), SLM_ROUTE_AUTO, 5000, 1};
        slm_hybrid_result res;
        slm_test_text out = {{0}, 0};
        CHECK_OK(slm_hybrid_generate(h, s, &rq, slm_test_collect, &out, &res));
        CHECK(!strcmp(res.route, "local") && !strcmp(res.reason, "confident") && !res.degraded);
        CHECK_MSG(!strcmp(out.s, local.s), "confident: '%s' vs '%s'", out.s, local.s);
        CHECK(res.completion_tokens == lr.n_generated);
    }
    slm_hybrid_free(h);

    /* the breaker: after 2 failures it opens and the cloud is not tried */
    snprintf(cfg, sizeof cfg,
             "{\"mode\":\"hybrid\",\"cloud\":{\"base_url\":\"http://127.0.0.1:%d/v1\","
             "\"retries\":0,\"breaker\":{\"failures\":2,\"open_ms\":60000}}}",
             port);
    h = make_router(m, cfg);
    if (h) {
        const char *causes[3] = {"refused", "refused", "breaker_open"};
        for (int i = 0; i < 3; i++) {
            slm_hybrid_request rq = {NULL, 0, prompt, strlen(prompt), SLM_ROUTE_CLOUD, 5000, 0};
            slm_hybrid_result res;
            CHECK_OK(slm_hybrid_generate(h, s, &rq, NULL, NULL, &res));
            CHECK_MSG(res.degraded && !strcmp(res.degraded_cause, causes[i]),
                      "attempt %d: cause %s", i, res.degraded_cause);
        }
    }
    slm_hybrid_free(h);

    test_fake_cloud(m, s);

    slm_session_free(s);
    slm_config_free(sc);
    slm_model_free(m);
}

int main(void) {
    /* loopback only: no proxy from the environment may take these requests elsewhere */
    static const char *const proxies[] = {"http_proxy",  "https_proxy", "HTTP_PROXY",
                                          "HTTPS_PROXY", "all_proxy",   "ALL_PROXY"};
    for (size_t i = 0; i < sizeof proxies / sizeof proxies[0]; i++) unsetenv(proxies[i]);
    test_sse();
    test_host();
    test_config();
    test_router();
    return check_finish();
}
