/* slm perplexity: llama.cpp's perplexity protocol over a text file. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *PPL_HELP =
    "usage: slm perplexity [-m MODEL] -f TEXTFILE [--ctx N] [--json] [-t N] [--config JSON|FILE]\n"
    "\n"
    "Tokenizes the file once (BOS first when the model adds one), cuts it into\n"
    "consecutive windows of N tokens (a trailing partial window is dropped),\n"
    "evaluates each window from an empty cache and scores every position but the\n"
    "last of each window. Prints the perplexity and the count of scored tokens.\n"
    "\n"
    "  -m, --model PATH  GGUF model (default as for 'slm run')\n"
    "  -f, --file PATH   the text ('-' = stdin)\n"
    "  --ctx N           window length in tokens (default 128)\n"
    "  -t, --threads N   threads, 0 = one per core\n"
    "  --config ...      runtime config (JSON text or file)\n"
    "  --json            print {\"perplexity\": P, \"tokens\": N}\n"
    "  -h, --help        this help\n";

int cmd_perplexity(int argc, char **argv) {
    const char *model_arg = NULL, *file = NULL, *config_arg = NULL;
    long ctx = 128;
    int json = 0;
    cli_frags fr = {.n = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(PPL_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("perplexity", model_arg);
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE("perplexity", file);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("perplexity", config_arg);
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            CLI_VALUE("perplexity", v);
            if (cli_parse_int("perplexity", a, v, 2, 1 << 20, &ctx)) return CLI_USAGE;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            long t = 0;
            CLI_VALUE("perplexity", v);
            if (cli_parse_int("perplexity", a, v, 0, 256, &t)) return CLI_USAGE;
            char raw[32];
            snprintf(raw, sizeof raw, "%ld", t);
            cli_frag(&fr, "threads", raw);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            return cli_usage_error("perplexity", "unknown option '%s'", a);
        }
    }
    if (!file) return cli_usage_error("perplexity", "no text file: give -f TEXTFILE");
    char buf[4096];
    const char *path = cli_default_model(model_arg, buf, sizeof buf);
    if (!path) return CLI_USAGE;
    char raw[32];
    snprintf(raw, sizeof raw, "%ld", ctx);
    cli_frag(&fr, "n_ctx", raw);
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("perplexity", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;
    size_t len = 0;
    char *text = cli_read_text(file, &len);
    slm_model *m = NULL;
    slm_session *s = NULL;
    slm_status st = SLM_OK;
    if (!text) {
        rc = CLI_ERROR;
        goto done;
    }
    st = slm_model_load(path, cfg, &m);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
        goto done;
    }
    st = slm_session_new(m, cfg, &s);
    if (st != SLM_OK) {
        rc = cli_fail("cannot start a session", st);
        goto done;
    }
    slm_perplexity_result r;
    st = slm_perplexity(s, text, len, (int32_t)ctx, &r);
    if (st != SLM_OK) {
        rc = cli_fail("perplexity", st);
        goto done;
    }
    if (json)
        printf("{\"perplexity\": %.6f, \"tokens\": %lld, \"windows\": %lld, \"ctx\": %ld}\n",
               r.perplexity, (long long)r.n_scored, (long long)r.n_windows, ctx);
    else
        printf("perplexity %.6f over %lld tokens (%lld windows of %ld)\n", r.perplexity,
               (long long)r.n_scored, (long long)r.n_windows, ctx);
done:
    slm_session_free(s);
    slm_model_free(m);
    slm_config_free(cfg);
    free(text);
    return rc;
}
