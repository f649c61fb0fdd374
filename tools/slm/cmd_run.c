/* slm run: stream a continuation of a prompt to stdout. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_grammar.h"

static const char *RUN_HELP =
    "usage: slm run [-m MODEL] -p PROMPT [options]\n"
    "\n"
    "Generates a continuation of PROMPT and streams it to stdout as it is\n"
    "sampled; a timing line goes to stderr.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default: $SLM_MODEL, else\n"
    "                          ../shared/models/stories260K.gguf when present)\n"
    "  -p, --prompt TEXT       the prompt\n"
    "  -f, --file PATH         read the prompt from a file ('-' = stdin)\n"
    "  -n, --max-tokens N      tokens to generate (default 128)\n"
    "      --temp T            temperature, 0 = greedy (default 0.8)\n"
    "      --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
    "      --top-p P           nucleus sampling mass, 1 = off (default 0.95)\n"
    "      --min-p P           drop tokens below P x the best, 0 = off (default 0.05)\n"
    "      --repeat-penalty R  penalize recent tokens, 1 = off (default 1)\n"
    "      --seed S            sampling seed (default 0: same output every run)\n"
    "      --stop TEXT         stop before this text (repeatable)\n"
    "  -t, --threads N         threads, 0 = one per core (default 0)\n"
    "  -c, --ctx N             context window in tokens (default: the model's, at most 4096)\n"
    "      --keep N            tokens kept at the start when the context is trimmed\n"
    "                          (default -1: the BOS token; at most half the context)\n"
    "      --config JSON|FILE  runtime config, e.g. '{\"max_tokens\":128,\"quant\":\"int8\"}';\n"
    "                          flags given on the command line override it\n"
    "      --lora FILE[:SCALE] apply a LoRA adapter (llama.cpp GGUF file, or a Hugging\n"
    "                          Face PEFT directory: adapter_config.json +\n"
    "                          adapter_model.safetensors) with this scale (default 1;\n"
    "                          repeatable, at most 8); replaces the\n"
    "                          config's \"adapters\"; signatures are required as for\n"
    "                          the model when the config says require_signature\n" CLI_GRAMMAR_HELP
    "      --route R           hybrid routing: auto (the router decides), local, cloud;\n"
    "                          the config's \"mode\" must be \"hybrid\" for the cloud to\n"
    "                          be used (docs/HYBRID.md); in \"local\" mode nothing leaves\n"
    "                          the machine whatever R says\n"
    "      --json              print one JSON object {\"text\", \"route\", \"reason\",\n"
    "                          \"degraded\", \"degraded_cause\", \"usage\"} instead of\n"
    "                          streaming the text\n"
    "      --echo              print the prompt before the continuation\n"
    "  -q, --quiet             no timing line on stderr\n"
    "  -h, --help              this help\n"
    "\n"
    "When the context fills, the first N tokens (--keep) stay and the oldest half of\n"
    "the rest is dropped; a line on stderr says so.\n";

/* Appends {"path": FILE, "scale": SCALE} for --lora FILE[:SCALE] to a JSON
 * array being built in buf; 1 when it does not fit or SCALE is not a number. */
static int add_lora(char *buf, size_t cap, size_t *len, const char *arg) {
    const char *colon = strrchr(arg, ':');
    size_t path_len = strlen(arg);
    double scale = 1.0;
    if (colon && colon[1]) {
        char *end = NULL;
        double v = strtod(colon + 1, &end);
        if (*end == '\0') {
            if (!(v >= -1e6 && v <= 1e6)) return 1;
            scale = v;
            path_len = (size_t)(colon - arg);
        }
    }
    if (path_len == 0) return 1;
    size_t at = *len;
    if (at + 16 >= cap) return 1;
    at += (size_t)snprintf(buf + at, cap - at, "%s{\"path\":\"", at == 0 ? "[" : ",");
    for (size_t i = 0; i < path_len; i++) {
        unsigned char c = (unsigned char)arg[i];
        if (at + 8 >= cap) return 1;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
        } else {
            buf[at++] = (char)c;
        }
    }
    int n = snprintf(buf + at, cap - at, "\",\"scale\":%.9g}", scale);
    if (n < 0 || at + (size_t)n + 2 >= cap) return 1;
    *len = at + (size_t)n;
    return 0;
}

static int on_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* --json: the text is collected, not streamed. */
typedef struct run_text {
    char *s;
    size_t len, cap;
    int failed;
} run_text;

static int collect_text(void *user, const char *text, size_t len) {
    run_text *t = user;
    if (t->failed) return 1;
    if (t->len + len + 1 > t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 4096;
        while (nc < t->len + len + 1) nc *= 2;
        char *ns = realloc(t->s, nc);
        if (!ns) {
            t->failed = 1;
            return 1;
        }
        t->s = ns;
        t->cap = nc;
    }
    memcpy(t->s + t->len, text, len);
    t->len += len;
    t->s[t->len] = '\0';
    return 0;
}

/* Generation through the hybrid router (issue 10). */
static int run_hybrid(slm_hybrid *hy, slm_session *sess, const char *prompt, size_t prompt_len,
                      slm_route route, int json, int quiet) {
    slm_hybrid_request rq = {NULL, 0, prompt, prompt_len, route, 0, 1};
    slm_hybrid_result res;
    run_text t = {NULL, 0, 0, 0};
    slm_status st = slm_hybrid_generate(hy, sess, &rq, json ? collect_text : on_text,
                                        json ? (void *)&t : NULL, &res);
    fflush(stdout);
    if (st != SLM_OK || t.failed) {
        free(t.s);
        return cli_fail("generation failed", st != SLM_OK ? st : SLM_ERR_NOMEM);
    }
    if (res.degraded)
        fprintf(stderr, "%sslm: the cloud failed (%s: %s); the local model answered%s\n",
                json ? "" : "\n", res.degraded_cause, res.degraded_detail,
                res.cloud_partial ? " the rest" : "");
    if (json) {
        char *j = slm_hybrid_result_json(&res, t.s ? t.s : "", t.len);
        free(t.s);
        if (!j) return cli_fail("--json", SLM_ERR_NOMEM);
        printf("%s\n", j);
        free(j);
    }
    if (!quiet)
        fprintf(stderr, "%sslm: route %s (%s)%s, %d prompt + %d completion tokens, %.1f ms\n",
                json ? "" : "\n", res.route, res.reason, res.degraded ? ", degraded" : "",
                res.prompt_tokens, res.completion_tokens, res.ms);
    return CLI_OK;
}

static const char *finish_name(slm_finish f) {
    switch (f) {
    case SLM_FINISH_LENGTH:
        return "length";
    case SLM_FINISH_EOS:
        return "eos";
    case SLM_FINISH_STOP:
        return "stop";
    case SLM_FINISH_CALLBACK:
        return "cancelled";
    default:
        return "none";
    }
}

int cmd_run(int argc, char **argv) {
    const char *model_arg = NULL, *prompt = NULL, *prompt_file = NULL, *config_arg = NULL;
    int echo = 0, quiet = 0;
    int json_out = 0;             /* --json */
    const char *route_arg = NULL; /* --route */
    cli_frags fr = {.n = 0};
    char stops[4096] = "";
    size_t stops_len = 0;
    int n_stop = 0;
    char loras[4096] = "";
    size_t loras_len = 0;
    int n_lora = 0;
    cli_grammar gram = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(RUN_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("run", model_arg);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            CLI_VALUE("run", prompt);
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE("run", prompt_file);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("run", config_arg);
        } else if (!strcmp(a, "--lora")) {
            const char *v;
            CLI_VALUE("run", v);
            if (++n_lora > 8 || add_lora(loras, sizeof loras, &loras_len, v))
                return cli_usage_error("run",
                                       "--lora '%s': expected FILE[:SCALE] (at most 8, "
                                       "SCALE a number)",
                                       v);
        } else if (!strcmp(a, "--json-schema") || !strcmp(a, "--grammar") ||
                   !strcmp(a, "--json-object")) {
            if (cli_grammar_option("run", argc, argv, &i, &gram) != CLI_OK) return CLI_USAGE;
        } else if (!strcmp(a, "--route")) {
            CLI_VALUE("run", route_arg);
            if (strcmp(route_arg, "auto") && strcmp(route_arg, "local") &&
                strcmp(route_arg, "cloud"))
                return cli_usage_error("run", "--route '%s': expected auto, local or cloud",
                                       route_arg);
        } else if (!strcmp(a, "--json")) {
            json_out = 1;
        } else if (!strcmp(a, "--echo")) {
            echo = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--stop")) {
            const char *v;
            CLI_VALUE("run", v);
            size_t vl = strlen(v);
            if (stops_len + vl + 8 >= sizeof stops || n_stop >= 16)
                return cli_usage_error("run", "too many --stop strings");
            if (n_stop == 0)
                stops[stops_len++] = '[';
            else
                stops[stops_len++] = ',';
            /* JSON-escape into the array text */
            stops[stops_len++] = '"';
            for (const char *p = v; *p && stops_len + 8 < sizeof stops; p++) {
                unsigned char c = (unsigned char)*p;
                if (c == '"' || c == '\\') {
                    stops[stops_len++] = '\\';
                    stops[stops_len++] = (char)c;
                } else if (c < 0x20) {
                    stops_len +=
                        (size_t)snprintf(stops + stops_len, sizeof stops - stops_len, "\\u%04x", c);
                } else {
                    stops[stops_len++] = (char)c;
                }
            }
            stops[stops_len++] = '"';
            stops[stops_len] = '\0';
            n_stop++;
        } else {
            /* numeric options map onto config keys */
            int used = cli_number_option("run", argc, argv, &i, &fr);
            if (used == CLI_USAGE) return CLI_USAGE;
            int found = used == CLI_OK;
            if (!found) return cli_usage_error("run", "unknown option '%s'", a);
        }
    }
    if (n_stop > 0) {
        stops[stops_len++] = ']';
        stops[stops_len] = '\0';
        if (cli_frag(&fr, "stop", stops)) return cli_usage_error("run", "too many --stop strings");
    }
    if (n_lora > 0) {
        loras[loras_len++] = ']';
        loras[loras_len] = '\0';
        if (cli_frag(&fr, "adapters", loras)) return cli_usage_error("run", "--lora: too long");
    }
    if (!prompt && !prompt_file)
        return cli_usage_error("run", "no prompt: give -p TEXT or -f FILE");
    if (prompt && prompt_file) return cli_usage_error("run", "give either -p or -f, not both");

    char model_buf[4096];
    const char *model_path = cli_default_model(model_arg, model_buf, sizeof model_buf);
    if (!model_path) return CLI_ERROR;

    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("run", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;
    rc = cli_grammar_apply("run", &gram, cfg);
    if (rc) {
        slm_config_free(cfg);
        return rc;
    }

    char *file_text = NULL;
    size_t prompt_len = 0;
    if (prompt_file) {
        file_text = cli_read_text(prompt_file, &prompt_len);
        if (!file_text) {
            slm_config_free(cfg);
            return CLI_ERROR;
        }
        prompt = file_text;
    } else {
        prompt_len = strlen(prompt);
    }

    slm_model *model = NULL;
    slm_session *sess = NULL;
    slm_hybrid *hy = NULL;
    slm_status st = slm_model_load(model_path, cfg, &model);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
        goto done;
    }
    st = slm_session_new(model, cfg, &sess);
    if (st != SLM_OK) {
        rc = cli_fail("cannot start a session", st);
        goto done;
    }
    st = slm_hybrid_new(model, cfg, &hy);
    if (st != SLM_OK) {
        rc = cli_fail("cannot set up hybrid routing", st);
        goto done;
    }
    if (json_out || route_arg || slm_hybrid_enabled(hy)) {
        slm_route route = !route_arg || !strcmp(route_arg, "auto") ? SLM_ROUTE_AUTO
                          : !strcmp(route_arg, "local")            ? SLM_ROUTE_LOCAL
                                                                   : SLM_ROUTE_CLOUD;
        if (route == SLM_ROUTE_CLOUD && !slm_hybrid_enabled(hy))
            fprintf(stderr, "slm run: --route cloud: the config's \"mode\" is \"local\" (no "
                            "network): answering locally\n");
        if (echo && !json_out) {
            fwrite(prompt, 1, prompt_len, stdout);
            fflush(stdout);
        }
        rc = run_hybrid(hy, sess, prompt, prompt_len, route, json_out, quiet);
        goto done;
    }
    if (echo) {
        fwrite(prompt, 1, prompt_len, stdout);
        fflush(stdout);
    }
    slm_result res;
    st = slm_generate(sess, prompt, prompt_len, on_text, NULL, &res);
    fflush(stdout);
    if (res.n_trims > 0)
        fprintf(stderr,
                "%sslm: context of %d tokens was full: trimmed %d time%s, %d tokens dropped "
                "(the first tokens were kept, then the oldest half of the rest dropped)\n",
                res.n_generated > 0 ? "\n" : "", slm_session_n_ctx(sess), res.n_trims,
                res.n_trims == 1 ? "" : "s", res.n_dropped);
    if (st != SLM_OK) {
        rc = cli_fail("generation failed", st);
        goto done;
    }
    if (!quiet) {
        double dec_tps = res.decode_ms > 0 ? (res.n_generated > 1 ? res.n_generated - 1 : 0) /
                                                 (res.decode_ms / 1000.0)
                                           : 0;
        double pre_tps = res.prefill_ms > 0 ? res.n_prompt_tokens / (res.prefill_ms / 1000.0) : 0;
        fprintf(stderr,
                "\nslm: prompt %d tokens in %.1f ms (%.1f tok/s), generated %d tokens in %.1f ms "
                "(%.1f tok/s), first token after %.1f ms, finish: %s, provider %s\n",
                res.n_prompt_tokens, res.prefill_ms, pre_tps, res.n_generated, res.decode_ms,
                dec_tps, res.ttft_ms, finish_name(res.finish), slm_session_provider(sess));
    }
done:
    slm_hybrid_free(hy);
    slm_session_free(sess);
    slm_model_free(model);
    slm_config_free(cfg);
    free(file_text);
    return rc;
}
