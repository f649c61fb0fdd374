/* slm serve: an OpenAI-compatible HTTP server over one model. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/serve/serve.h"
#include "cli.h"

static const char *SERVE_HELP =
    "usage: slm serve [-m MODEL] [options]\n"
    "\n"
    "Serves the model over HTTP with the OpenAI API: POST /v1/chat/completions,\n"
    "POST /v1/completions, POST /v1/embeddings, POST /v1/classify, GET /v1/models,\n"
    "GET /health, GET /metrics (Prometheus).\n"
    "Point an OpenAI client at http://HOST:PORT/v1 (docs/SERVER.md).\n"
    "Stops gracefully on SIGINT or SIGTERM and exits 0.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default: $SLM_MODEL, else\n"
    "                          ../shared/models/stories260K.gguf when present)\n"
    "      --host ADDR         address to bind (default 127.0.0.1; anything else\n"
    "                          exposes the server to the network)\n"
    "      --port N            TCP port (default 8080; 0 = any free port, printed)\n"
    "      --parallel N        slots: requests generated at once, one session each\n"
    "                          (default 1, at most 64)\n"
    "      --queue N           requests that wait for a slot (default 16); beyond\n"
    "                          that the answer is 429 with Retry-After\n"
    "  -c, --ctx N             context window of each slot in tokens (default: the\n"
    "                          model's, at most 4096)\n"
    "  -t, --threads N         threads per slot (default: the cores divided among the slots)\n"
    "      --config JSON|FILE  runtime config; its sampling keys (temperature, top_p,\n"
    "                          top_k, min_p, seed, stop, max_tokens, ...) are the defaults\n"
    "                          that request fields override\n"
    "                          (\"mode\": \"hybrid\" routes requests between this model\n"
    "                          and a cloud endpoint: docs/HYBRID.md; a request's\n"
    "                          \"route\" field overrides)\n"
    "      --api-key KEY       require 'Authorization: Bearer KEY' on /v1/ (default:\n"
    "                          $SLM_API_KEY; none when unset)\n"
    "      --model-id NAME     the model's name in the API (default: the file name\n"
    "                          without .gguf)\n"
    "      --timeout S         deadline of a request, queue wait included (default 600)\n"
    "      --max-body BYTES    largest request body (default 1048576)\n"
    "      --max-tokens-cap N  largest max_tokens a request may ask for (default: the\n"
    "                          context size); more is a 400\n"
    "      --idle-timeout S    close a connection silent this long (default 30)\n"
    "      --read-timeout S    a request must arrive whole within this (default 30)\n"
    "      --shutdown-timeout S  at SIGINT/SIGTERM, running requests get this long\n"
    "                          before they are cancelled (default 10)\n"
    "      --lora NAME=PATH[:SCALE]  load a LoRA adapter (GGUF file or PEFT directory)\n"
    "                          at start (repeatable, at most 16); a request applies it\n"
    "                          with \"adapter\": \"NAME\" (none: the base model); signed as\n"
    "                          models are when the config says require_signature\n"
    "  -q, --quiet             no line per request on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "Request logs name the method, path, status and time, never prompt text.\n";

int cmd_serve(int argc, char **argv) {
    const char *model_arg = NULL, *config_arg = NULL, *host = "127.0.0.1", *api_key = NULL;
    const char *model_id = NULL;
    long port = SLM_SERVE_DEFAULT_PORT, parallel = SLM_SERVE_DEFAULT_PARALLEL,
         queue = SLM_SERVE_DEFAULT_QUEUE, max_body = SLM_SERVE_DEFAULT_MAX_BODY, max_tokens_cap = 0;
    double timeout = SLM_SERVE_DEFAULT_TIMEOUT_S, idle = SLM_SERVE_DEFAULT_IDLE_TIMEOUT_S,
           read_timeout = SLM_SERVE_DEFAULT_READ_TIMEOUT_S, grace = SLM_SERVE_DEFAULT_SHUTDOWN_S;
    int quiet = 0;
    const char *loras[16];
    int n_loras = 0;
    cli_frags fr = {.n = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        long l = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(SERVE_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("serve", model_arg);
        } else if (!strcmp(a, "--host")) {
            CLI_VALUE("serve", host);
        } else if (!strcmp(a, "--port")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 0, 65535, &port)) return CLI_USAGE;
        } else if (!strcmp(a, "--parallel")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 1, SLM_SERVE_MAX_PARALLEL, &parallel))
                return CLI_USAGE;
        } else if (!strcmp(a, "--queue")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 0, SLM_SERVE_MAX_QUEUE, &queue)) return CLI_USAGE;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 8, 1 << 20, &l)) return CLI_USAGE;
            cli_frag(&fr, "n_ctx", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 1, 256, &l)) return CLI_USAGE;
            cli_frag(&fr, "threads", v);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("serve", config_arg);
        } else if (!strcmp(a, "--api-key")) {
            CLI_VALUE("serve", api_key);
        } else if (!strcmp(a, "--model-id")) {
            CLI_VALUE("serve", model_id);
            if (!*model_id || strlen(model_id) > 100)
                return cli_usage_error("serve", "--model-id: 1 to 100 characters");
        } else if (!strcmp(a, "--max-body")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 1024, (long)SLM_SERVE_MAX_BODY_LIMIT, &max_body))
                return CLI_USAGE;
        } else if (!strcmp(a, "--max-tokens-cap")) {
            CLI_VALUE("serve", v);
            if (cli_parse_int("serve", a, v, 1, 1 << 24, &max_tokens_cap)) return CLI_USAGE;
        } else if (!strcmp(a, "--timeout") || !strcmp(a, "--idle-timeout") ||
                   !strcmp(a, "--read-timeout") || !strcmp(a, "--shutdown-timeout")) {
            CLI_VALUE("serve", v);
            double d = 0;
            if (cli_parse_float("serve", a, v, 0.1, 86400, &d)) return CLI_USAGE;
            if (!strcmp(a, "--timeout"))
                timeout = d;
            else if (!strcmp(a, "--idle-timeout"))
                idle = d;
            else if (!strcmp(a, "--read-timeout"))
                read_timeout = d;
            else
                grace = d;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--lora")) {
            CLI_VALUE("serve", v);
            if (n_loras >= 16 || !strchr(v, '=') || v[0] == '=')
                return cli_usage_error("serve",
                                       "--lora '%s': expected NAME=PATH[:SCALE] (at most 16)", v);
            loras[n_loras++] = v;
        } else {
            return cli_usage_error("serve", "unknown option '%s'", a);
        }
    }
    if (!api_key) api_key = getenv("SLM_API_KEY");

    char model_buf[4096];
    const char *model_path = cli_default_model(model_arg, model_buf, sizeof model_buf);
    if (!model_path) return CLI_ERROR;
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("serve", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;

    /* Signals: SIGINT/SIGTERM are taken synchronously by this thread (blocked
     * before any thread starts, so every thread inherits the mask). */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGINT);
    sigaddset(&stop_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);

    slm_model *model = NULL;
    slm_server *srv = NULL;
    slm_status st = slm_model_load(model_path, cfg, &model);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
        goto done;
    }
    slm_server_opts o = {
        .host = host,
        .port = (int)port,
        .parallel = (int)parallel,
        .queue = (int)queue,
        .timeout_s = timeout,
        .idle_timeout_s = idle,
        .read_timeout_s = read_timeout,
        .max_body = (size_t)max_body,
        .max_tokens_cap = (int32_t)max_tokens_cap,
        .api_key = api_key,
        .model_id = model_id,
        .model_path = model_path,
        .access_log = !quiet,
        .loras = loras,
        .n_loras = n_loras,
    };
    st = slm_server_start(model, cfg, &o, &srv);
    if (st != SLM_OK) {
        rc = cli_fail("cannot start the server", st);
        goto done;
    }
    int loopback = !strcmp(host, "127.0.0.1") || !strcmp(host, "::1") || !strcmp(host, "localhost");
    int bracket = strchr(host, ':') != NULL;
    fprintf(stderr, "slm serve: listening on http://%s%s%s:%d/v1 (%ld slot%s, queue %ld%s)\n",
            bracket ? "[" : "", host, bracket ? "]" : "", slm_server_port(srv), parallel,
            parallel == 1 ? "" : "s", queue, api_key && *api_key ? ", API key required" : "");
    if (!loopback)
        fprintf(stderr, "slm serve: warning: %s is reachable from other machines%s\n", host,
                api_key && *api_key ? "" : " and no --api-key is set");
    fflush(stderr);

    int sig = 0;
    sigwait(&stop_set, &sig);
    fprintf(stderr, "slm serve: %s: shutting down (up to %.0f s for running requests)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
    slm_server_shutdown(srv, grace);
    fprintf(stderr, "slm serve: stopped\n");
    rc = CLI_OK;
done:
    slm_server_free(srv);
    slm_model_free(model);
    slm_config_free(cfg);
    return rc;
}
