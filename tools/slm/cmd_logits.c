/* slm logits: write the logits of every prompt position. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *LOGITS_HELP =
    "usage: slm logits [-m MODEL] -p PROMPT -o OUT.bin [-t N] [--config JSON|FILE]\n"
    "\n"
    "Tokenizes PROMPT (BOS first when the model adds one), evaluates it in one\n"
    "pass from an empty cache and writes the logits of every position: float32,\n"
    "row-major [n_tokens][n_vocab], little-endian. Prints the token ids and the\n"
    "shape on stderr. For numeric comparisons with other runtimes.\n"
    "\n"
    "  -m, --model PATH   GGUF model (default as for 'slm run')\n"
    "  -p, --prompt TEXT  the prompt\n"
    "  -o, --out PATH     output file: a regular file is written whole beside it and\n"
    "                     renamed into place (its mode kept); a device or pipe is\n"
    "                     written directly\n"
    "  -t, --threads N    threads, 0 = one per core\n"
    "  --config ...       runtime config (JSON text or file)\n"
    "  -h, --help         this help\n";

int cmd_logits(int argc, char **argv) {
    const char *model_arg = NULL, *prompt = NULL, *out = NULL, *config_arg = NULL;
    cli_frags fr = {.n = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(LOGITS_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("logits", model_arg);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            CLI_VALUE("logits", prompt);
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            CLI_VALUE("logits", out);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("logits", config_arg);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            long t = 0;
            CLI_VALUE("logits", v);
            if (cli_parse_int("logits", a, v, 0, 256, &t)) return CLI_USAGE;
            char raw[32];
            snprintf(raw, sizeof raw, "%ld", t);
            cli_frag(&fr, "threads", raw);
        } else {
            return cli_usage_error("logits", "unknown option '%s'", a);
        }
    }
    if (!prompt) return cli_usage_error("logits", "no prompt: give -p TEXT");
    if (!out) return cli_usage_error("logits", "no output file: give -o OUT.bin");
    char buf[4096];
    const char *path = cli_default_model(model_arg, buf, sizeof buf);
    if (!path) return CLI_USAGE;
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("logits", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;
    slm_model *m = NULL;
    slm_session *s = NULL;
    float *lg = NULL;
    size_t nt = 0, nv = 0;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    slm_status st = slm_model_load(path, cfg, &m);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
        goto done;
    }
    st = slm_session_new(m, cfg, &s);
    if (st == SLM_OK) st = slm_prompt_logits(s, prompt, strlen(prompt), &lg, &nt, &nv);
    if (st != SLM_OK) {
        rc = cli_fail("cannot compute logits", st);
        goto done;
    }
    if (slm_tokenize(m, prompt, strlen(prompt), SLM_TOKENIZE_ADD_BOS, &ids, &n_ids) == SLM_OK) {
        fprintf(stderr, "ids (%zu):", n_ids);
        for (size_t i = 0; i < n_ids; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n");
    }
    if (cli_write_output(out, lg, nt * nv * sizeof(float)) != CLI_OK) {
        rc = CLI_ERROR;
        goto done;
    }
    fprintf(stderr, "wrote %zu x %zu logits to %s\n", nt, nv, out);
done:
    free(ids);
    free(lg);
    slm_session_free(s);
    slm_model_free(m);
    slm_config_free(cfg);
    return rc;
}
