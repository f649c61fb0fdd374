/* The cloud client over libcurl's multi interface, so that timeouts and
 * cancellation are checked every few milliseconds by our own loop. */
#include "hybrid/cloud.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/clock.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "hybrid/breaker.h"

#define HY_POLL_MS 20
#define HY_MAX_BODY (8u << 20) /* a whole (non-streamed) response */
#define HY_MAX_ERR_BODY 2048   /* kept of an error response, for the detail line */
#define HY_MAX_KEY 4096

/* ---- SSE -------------------------------------------------------------------------------- */

void hy_sse_init(hy_sse *s) {
    memset(s, 0, sizeof *s);
}

void hy_sse_free(hy_sse *s) {
    free(s->line);
    free(s->data);
    memset(s, 0, sizeof *s);
}

static int grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < need) nc *= 2;
    char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

/* One complete line (without its end). */
static int sse_line(hy_sse *s, hy_sse_event_fn fn, void *user) {
    const char *l = s->line ? s->line : "";
    size_t n = s->len;
    s->len = 0;
    if (n == 0) { /* blank line: dispatch */
        if (!s->has_data) return 0;
        s->has_data = 0;
        size_t dl = s->dlen;
        s->dlen = 0;
        if (s->done) return 0;
        if (grow(&s->data, &s->dcap, dl + 1)) return -1;
        s->data[dl] = '\0';
        if (dl == 6 && !memcmp(s->data, "[DONE]", 6)) {
            s->done = 1;
            return 0;
        }
        s->n_events++;
        return fn ? fn(user, s->data, dl) : 0;
    }
    if (l[0] == ':') return 0; /* comment */
    size_t colon = 0;
    while (colon < n && l[colon] != ':') colon++;
    if (colon != 4 || memcmp(l, "data", 4) != 0) return 0; /* other fields: ignored */
    size_t v = colon < n ? colon + 1 : n;
    if (v < n && l[v] == ' ') v++;
    size_t add = n - v;
    if (grow(&s->data, &s->dcap, s->dlen + add + 2)) return -1;
    if (s->has_data) s->data[s->dlen++] = '\n';
    memcpy(s->data + s->dlen, l + v, add);
    s->dlen += add;
    s->has_data = 1;
    return 0;
}

int hy_sse_feed(hy_sse *s, const char *buf, size_t n, hy_sse_event_fn fn, void *user) {
    for (size_t i = 0; i < n; i++) {
        char ch = buf[i];
        if (s->after_cr) {
            s->after_cr = 0;
            if (ch == '\n') continue;
        }
        if (ch == '\r' || ch == '\n') {
            s->after_cr = ch == '\r';
            int rc = sse_line(s, fn, user);
            if (rc) return rc;
            continue;
        }
        if (s->len + 1 > HY_SSE_MAX_LINE) return -1;
        if (grow(&s->line, &s->cap, s->len + 1)) return -1;
        s->line[s->len++] = ch;
    }
    return 0;
}

/* ---- the client --------------------------------------------------------------------------- */

struct hy_cloud {
    hy_cloud_cfg cfg;
    char url[HY_MAX_URL + 32];
    char host[HY_MAX_URL];
    char *auth_header; /* "Authorization: Bearer KEY" or NULL */
    size_t auth_len;
    hy_breaker *breaker;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static slm_status read_key(const hy_cloud_cfg *cfg, char **key) {
    *key = NULL;
    char *k = NULL;
    if (cfg->api_key_env[0]) {
        const char *v = getenv(cfg->api_key_env);
        if (!v || !*v)
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'cloud.api_key_env': the environment variable %s is not "
                            "set or empty",
                            cfg->api_key_env);
        k = strdup(v);
    } else if (cfg->api_key_file[0]) {
        size_t n = 0;
        slm_status st = slm_read_file(cfg->api_key_file, HY_MAX_KEY, &k, &n);
        if (st != SLM_OK)
            return slm_fail(SLM_ERR_CONFIG, "config key 'cloud.api_key_file': cannot read %s",
                            cfg->api_key_file);
        /* trim trailing whitespace (a newline at the end of the file) */
        while (n > 0 &&
               (k[n - 1] == '\n' || k[n - 1] == '\r' || k[n - 1] == ' ' || k[n - 1] == '\t'))
            k[--n] = '\0';
        k[n] = '\0';
    } else {
        return SLM_OK; /* no key: no Authorization header */
    }
    if (!k) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    for (char *p = k; *p; p++) {
        if ((unsigned char)*p < 0x21 || *p == 0x7f) {
            size_t n = strlen(k);
            memset(k, 0, n);
            free(k);
            return slm_fail(SLM_ERR_CONFIG,
                            "the cloud API key (from %s) holds spaces or control characters",
                            cfg->api_key_env[0] ? "cloud.api_key_env" : "cloud.api_key_file");
        }
    }
    if (!*k) {
        free(k);
        return slm_fail(SLM_ERR_CONFIG, "config key 'cloud.api_key_file': %s is empty",
                        cfg->api_key_file);
    }
    *key = k;
    return SLM_OK;
}

slm_status hy_cloud_new(const hy_cloud_cfg *cfg, hy_cloud **out) {
    if (!cfg || !out) return slm_fail(SLM_ERR_INVALID_ARG, "hy_cloud_new: NULL argument");
    *out = NULL;
    if (!cfg->base_url[0])
        return slm_fail(SLM_ERR_CONFIG, "config key 'cloud.base_url': required in hybrid mode");
    pthread_once(&curl_once, curl_init_once);
    hy_cloud *c = calloc(1, sizeof *c);
    if (!c) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    c->cfg = *cfg;
    size_t bl = strlen(cfg->base_url);
    while (bl > 0 && cfg->base_url[bl - 1] == '/') bl--;
    snprintf(c->url, sizeof c->url, "%.*s/chat/completions", (int)bl, cfg->base_url);
    /* host[:port] for the audit log */
    const char *h = strstr(cfg->base_url, "://");
    h = h ? h + 3 : cfg->base_url;
    size_t hl = strcspn(h, "/?#");
    const char *at = memchr(h, '@', hl); /* never log userinfo */
    if (at) {
        hl -= (size_t)(at + 1 - h);
        h = at + 1;
    }
    snprintf(c->host, sizeof c->host, "%.*s", (int)hl, h);
    const char *close = strrchr(c->host, ']'); /* [v6]:port */
    if (!strchr(close ? close : c->host, ':')) {
        size_t l = strlen(c->host);
        snprintf(c->host + l, sizeof c->host - l, ":%s",
                 strncmp(cfg->base_url, "https", 5) ? "80" : "443");
    }
    char *key = NULL;
    slm_status st = read_key(cfg, &key);
    if (st == SLM_OK && key) {
        size_t kl = strlen(key);
        c->auth_len = kl + 22;
        c->auth_header = malloc(c->auth_len + 1);
        if (c->auth_header)
            snprintf(c->auth_header, c->auth_len + 1, "Authorization: Bearer %s", key);
        else
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        memset(key, 0, kl);
        free(key);
    }
    if (st == SLM_OK) st = hy_breaker_new(&cfg->breaker, &c->breaker);
    if (st != SLM_OK) {
        hy_cloud_free(c);
        return st;
    }
    *out = c;
    return SLM_OK;
}

void hy_cloud_free(hy_cloud *c) {
    if (!c) return;
    if (c->auth_header) {
        volatile char *p = c->auth_header;
        for (size_t i = 0; i < c->auth_len; i++) p[i] = 0;
        free(c->auth_header);
    }
    hy_breaker_free(c->breaker);
    free(c);
}

const char *hy_cloud_host(const hy_cloud *c) {
    return c ? c->host : "";
}

const hy_cloud_cfg *hy_cloud_config(const hy_cloud *c) {
    return c ? &c->cfg : NULL;
}

/* One attempt's state. */
typedef struct attempt {
    const hy_cloud_req *req;
    hy_cloud_out *out;
    CURL *e;
    int got_byte;
    int checked_type;
    int sse; /* the response is an event stream */
    int is_http_error;
    char *body; /* whole response (non-SSE) */
    size_t blen, bcap;
    hy_sse parser;
    char abort_cause[32]; /* set by callbacks to stop the transfer */
    char abort_detail[160];
} attempt;

static void set_cause(hy_cloud_out *o, const char *cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_cause(hy_cloud_out *o, const char *cause, const char *fmt, ...) {
    snprintf(o->cause, sizeof o->cause, "%s", cause);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof o->detail, fmt, ap);
    va_end(ap);
}

static void read_usage(const cJSON *root, hy_cloud_out *o) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
    if (!cJSON_IsObject(u)) return;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
    if (cJSON_IsNumber(p)) o->prompt_tokens = (int32_t)p->valuedouble;
    if (cJSON_IsNumber(c)) o->completion_tokens = (int32_t)c->valuedouble;
}

static int deliver(attempt *a, const char *text, size_t n) {
    if (n == 0) return 0;
    if (a->req->on_text && a->req->on_text(a->req->user, text, n)) {
        snprintf(a->abort_cause, sizeof a->abort_cause, "cancelled");
        snprintf(a->abort_detail, sizeof a->abort_detail, "the caller stopped the stream");
        return 1;
    }
    a->out->n_delivered += n;
    return 0;
}

/* One SSE event: a chat.completion.chunk. */
static int on_event(void *user, const char *data, size_t len) {
    attempt *a = user;
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(a->abort_cause, sizeof a->abort_cause, "malformed_response");
        snprintf(a->abort_detail, sizeof a->abort_detail, "an event of the stream is not JSON");
        return 1;
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(j, "error");
    if (err) {
        const cJSON *m =
            cJSON_IsObject(err) ? cJSON_GetObjectItemCaseSensitive(err, "message") : NULL;
        snprintf(a->abort_cause, sizeof a->abort_cause, "cloud_error");
        snprintf(a->abort_detail, sizeof a->abort_detail, "the stream carried an error: %.120s",
                 cJSON_IsString(m) ? m->valuestring : "(no message)");
        cJSON_Delete(j);
        return 1;
    }
    read_usage(j, a->out);
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices");
    int rc = 0;
    if (cJSON_IsArray(ch) && cJSON_GetArraySize(ch) > 0) {
        const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(c0, "delta");
        const cJSON *t = cJSON_IsObject(d) ? cJSON_GetObjectItemCaseSensitive(d, "content") : NULL;
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
        if (cJSON_IsString(fr))
            snprintf(a->out->finish, sizeof a->out->finish, "%s", fr->valuestring);
        if (cJSON_IsString(t)) rc = deliver(a, t->valuestring, strlen(t->valuestring));
    } else if (!cJSON_IsArray(ch)) {
        snprintf(a->abort_cause, sizeof a->abort_cause, "malformed_response");
        snprintf(a->abort_detail, sizeof a->abort_detail, "an event of the stream has no choices");
        rc = 1;
    }
    cJSON_Delete(j);
    return rc;
}

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
    attempt *a = user;
    a->got_byte = 1;
    (void)buf;
    return size * n;
}

static size_t on_write(char *buf, size_t size, size_t nmemb, void *user) {
    attempt *a = user;
    size_t n = size * nmemb;
    a->got_byte = 1;
    if (!a->checked_type) {
        a->checked_type = 1;
        long code = 0;
        curl_easy_getinfo(a->e, CURLINFO_RESPONSE_CODE, &code);
        a->is_http_error = code < 200 || code > 299;
        char *ct = NULL;
        curl_easy_getinfo(a->e, CURLINFO_CONTENT_TYPE, &ct);
        a->sse =
            !a->is_http_error && a->req->stream && ct && !strncasecmp(ct, "text/event-stream", 17);
    }
    if (a->sse) {
        int rc = hy_sse_feed(&a->parser, buf, n, on_event, a);
        if (rc == -1 && !a->abort_cause[0]) {
            snprintf(a->abort_cause, sizeof a->abort_cause, "malformed_response");
            snprintf(a->abort_detail, sizeof a->abort_detail, "an event line is too long");
        }
        return rc ? 0 : n;
    }
    size_t cap = a->is_http_error ? HY_MAX_ERR_BODY : HY_MAX_BODY;
    if (a->blen + n > cap) {
        if (a->is_http_error) return n; /* keep the start only */
        snprintf(a->abort_cause, sizeof a->abort_cause, "malformed_response");
        snprintf(a->abort_detail, sizeof a->abort_detail, "the response is larger than %u bytes",
                 HY_MAX_BODY);
        return 0;
    }
    if (grow(&a->body, &a->bcap, a->blen + n + 1)) return 0;
    memcpy(a->body + a->blen, buf, n);
    a->blen += n;
    a->body[a->blen] = '\0';
    return n;
}

static const char *curl_cause(CURLcode rc, int sse) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        return "refused";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "dns";
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return "tls";
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2_STREAM:
        return sse ? "truncated_stream" : "truncated_response";
    default:
        return "network";
    }
}

static int retryable(const char *cause) {
    return strcmp(cause, "tls") && strcmp(cause, "http_4xx") && strcmp(cause, "cancelled") &&
           strcmp(cause, "malformed_response") && strcmp(cause, "breaker_open");
}

/* Counts against the breaker: the cloud is unavailable or misbehaving. */
static int breaker_failure(const char *cause) {
    return strcmp(cause, "http_4xx") && strcmp(cause, "cancelled");
}

/* Runs one attempt; 0 = success. */
static int run_attempt(hy_cloud *c, const hy_cloud_req *req, hy_cloud_out *o, double deadline) {
    attempt a;
    memset(&a, 0, sizeof a);
    a.req = req;
    a.out = o;
    hy_sse_init(&a.parser);
    CURL *e = curl_easy_init();
    CURLM *m = curl_multi_init();
    struct curl_slist *hdr = NULL;
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, req->stream ? "Accept: text/event-stream"
                                             : "Accept: "
                                               "application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    if (c->auth_header) hdr = curl_slist_append(hdr, c->auth_header);
    if (!e || !m || !hdr) {
        set_cause(o, "network", "cannot set up a transfer (out of memory)");
        if (m) curl_multi_cleanup(m);
        if (e) curl_easy_cleanup(e);
        curl_slist_free_all(hdr);
        return -1;
    }
    a.e = e;
    double now = slm_now_ms();
    double left = deadline - now;
    if (left < 1) left = 1;
    double conn = c->cfg.connect_timeout_ms < left ? c->cfg.connect_timeout_ms : left;
    curl_easy_setopt(e, CURLOPT_URL, c->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(conn + 0.5));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(left + 0.5));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "slm/" SLM_VERSION_STRING);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->cfg.insecure_skip_verify) {
        fprintf(stderr,
                "slm: WARNING: cloud.insecure_skip_verify is set: the TLS certificate of %s is "
                "NOT verified (anyone on the path can read and change this request). For "
                "testing only.\n",
                c->host);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_multi_add_handle(m, e);
    double t0 = slm_now_ms();
    int running = 1;
    CURLcode rc = CURLE_OK;
    int done = 0;
    while (!done) {
        curl_multi_perform(m, &running);
        int q = 0;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &q))) {
            if (msg->msg == CURLMSG_DONE) {
                rc = msg->data.result;
                done = 1;
            }
        }
        if (done || !running) break;
        if (a.abort_cause[0]) break;
        now = slm_now_ms();
        if (!a.got_byte && now - t0 > c->cfg.first_byte_timeout_ms) {
            snprintf(a.abort_cause, sizeof a.abort_cause, "timeout");
            snprintf(a.abort_detail, sizeof a.abort_detail,
                     "no response within the first-byte timeout (%.0f ms)",
                     c->cfg.first_byte_timeout_ms);
            break;
        }
        if (now > deadline) {
            snprintf(a.abort_cause, sizeof a.abort_cause, "timeout");
            snprintf(a.abort_detail, sizeof a.abort_detail,
                     "the cloud did not finish within its time (%.0f ms)", now - t0);
            break;
        }
        if (req->cancelled && req->cancelled(req->cancel_user)) {
            snprintf(a.abort_cause, sizeof a.abort_cause, "cancelled");
            snprintf(a.abort_detail, sizeof a.abort_detail, "the request was cancelled");
            break;
        }
        curl_multi_poll(m, NULL, 0, HY_POLL_MS, NULL);
    }
    curl_off_t up = 0;
    curl_easy_getinfo(e, CURLINFO_SIZE_UPLOAD_T, &up);
    o->bytes_sent += up > 0 ? (uint64_t)up : 0;
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    o->http_status = code;
    int result = -1;
    if (a.abort_cause[0]) {
        set_cause(o, a.abort_cause, "%s", a.abort_detail);
    } else if (rc != CURLE_OK && !(code >= 300 && rc == CURLE_PARTIAL_FILE)) {
        const char *cause = curl_cause(rc, a.sse);
        if (!strcmp(cause, "truncated_stream") && !a.sse) cause = "truncated_response";
        set_cause(o, cause, "%s (curl %d)", curl_easy_strerror(rc), (int)rc);
    } else if (code < 200 || code > 299) {
        char cause[32];
        if (code == 429)
            snprintf(cause, sizeof cause, "http_429");
        else if (code >= 400 && code <= 499)
            snprintf(cause, sizeof cause, "http_4xx");
        else if (code >= 500 && code <= 599)
            snprintf(cause, sizeof cause, "http_5xx");
        else
            snprintf(cause, sizeof cause, "http_%ld", code);
        /* the error message of an OpenAI-style error body, when there is one */
        char msg[160] = "";
        cJSON *j = a.body ? cJSON_ParseWithLength(a.body, a.blen) : NULL;
        const cJSON *err = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
        const cJSON *em =
            cJSON_IsObject(err) ? cJSON_GetObjectItemCaseSensitive(err, "message") : NULL;
        if (cJSON_IsString(em)) snprintf(msg, sizeof msg, ": %.150s", em->valuestring);
        cJSON_Delete(j);
        set_cause(o, cause, "HTTP %ld%s", code, msg);
    } else if (a.sse) {
        if (!a.parser.done)
            set_cause(o, "truncated_stream",
                      "the event stream ended after %d events without [DONE]", a.parser.n_events);
        else
            result = 0;
    } else {
        /* a whole JSON response */
        cJSON *j = a.body ? cJSON_ParseWithLength(a.body, a.blen) : NULL;
        const cJSON *ch = j ? cJSON_GetObjectItemCaseSensitive(j, "choices") : NULL;
        const cJSON *c0 = cJSON_IsArray(ch) ? cJSON_GetArrayItem(ch, 0) : NULL;
        const cJSON *msg = c0 ? cJSON_GetObjectItemCaseSensitive(c0, "message") : NULL;
        const cJSON *t =
            cJSON_IsObject(msg) ? cJSON_GetObjectItemCaseSensitive(msg, "content") : NULL;
        if (!j) {
            set_cause(o, "malformed_response", "the response (%zu bytes) is not JSON", a.blen);
        } else if (cJSON_GetObjectItemCaseSensitive(j, "error")) {
            set_cause(o, "cloud_error", "the response is an error object");
        } else if (!cJSON_IsString(t)) {
            set_cause(o, "malformed_response",
                      "the response has no choices[0].message.content string");
        } else {
            const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
            if (cJSON_IsString(fr)) snprintf(o->finish, sizeof o->finish, "%s", fr->valuestring);
            read_usage(j, o);
            if (deliver(&a, t->valuestring, strlen(t->valuestring)))
                set_cause(o, a.abort_cause, "%s", a.abort_detail);
            else
                result = 0;
        }
        cJSON_Delete(j);
    }
    curl_multi_remove_handle(m, e);
    curl_multi_cleanup(m);
    curl_easy_cleanup(e);
    curl_slist_free_all(hdr);
    hy_sse_free(&a.parser);
    free(a.body);
    return result;
}

static double jitter_u(void) {
    static _Thread_local uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&s;
        if (!s) s = 0x9e3779b97f4a7c15ull;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return (double)(s >> 11) / 9007199254740992.0;
}

int hy_cloud_post(hy_cloud *c, const hy_cloud_req *req, hy_cloud_out *o) {
    memset(o, 0, sizeof *o);
    o->prompt_tokens = o->completion_tokens = -1;
    if (!c || !req || !req->body) {
        set_cause(o, "network", "no cloud configured");
        return -1;
    }
    for (int attempt_no = 1;; attempt_no++) {
        double now = slm_now_ms();
        if (!hy_breaker_allow(c->breaker, now)) {
            if (attempt_no > 1) return -1; /* it opened on our last failure: report that */
            set_cause(o, "breaker_open",
                      "the circuit breaker is open after repeated failures; not trying for now");
            return -1;
        }
        o->attempts = attempt_no;
        o->cause[0] = '\0';
        double deadline = req->deadline_ms;
        if (now >= deadline) {
            set_cause(o, "timeout", "no time left for the cloud");
            return -1;
        }
        int rc = run_attempt(c, req, o, deadline);
        now = slm_now_ms();
        if (rc == 0) {
            hy_breaker_record(c->breaker, 1, now);
            return 0;
        }
        /* always recorded: a half-open breaker waits for its trial's outcome; a
         * cancelled attempt counts as a success when the cloud had answered */
        int ok = !strcmp(o->cause, "cancelled") ? o->http_status > 0 : !breaker_failure(o->cause);
        hy_breaker_record(c->breaker, ok, now);
        if (attempt_no > c->cfg.retries || o->n_delivered > 0 || !retryable(o->cause)) return -1;
        double wait =
            hy_backoff_ms(attempt_no, c->cfg.backoff_ms, c->cfg.backoff_max_ms, jitter_u());
        if (now + wait >= deadline) return -1;
        double until = now + wait;
        while (slm_now_ms() < until) {
            if (req->cancelled && req->cancelled(req->cancel_user)) {
                set_cause(o, "cancelled", "the request was cancelled");
                return -1;
            }
            double ms = until - slm_now_ms();
            if (ms > HY_POLL_MS) ms = HY_POLL_MS;
            if (ms <= 0) break;
            struct timespec ts = {0, (long)(ms * 1e6)};
            nanosleep(&ts, NULL);
        }
    }
}
