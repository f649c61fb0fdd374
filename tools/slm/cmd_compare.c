/* slm compare: quality of a quantized model against its base. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *COMPARE_HELP =
    "usage: slm compare BASE.gguf QUANT.gguf -f TEXTFILE [--ctx N] [--json] [-t N]\n"
    "\n"
    "Runs both models over the text by the protocol of 'slm perplexity' (windows of\n"
    "N tokens, each from an empty cache, every position but the last scored) and\n"
    "reports: the perplexity of each, the KL divergence KL(base || quant) of the\n"
    "next-token distributions (mean, 99th percentile and max over scored\n"
    "positions, in nats), top-1 agreement (fraction of positions where both\n"
    "models' most likely token is the same), file sizes, and bits per weight of\n"
    "the 2-D matrices and of all tensors.\n"
    "\n"
    "  -f, --file PATH   the text ('-' = stdin)\n"
    "  --ctx N           window length in tokens (default 128)\n"
    "  -t, --threads N   threads, 0 = one per core\n"
    "  --config ...      runtime config (JSON text or file): threads, providers\n"
    "  --json            one JSON object instead of the table\n"
    "  -h, --help        this help\n"
    "\n"
    "Exit status: 0 done, 1 error (unreadable model or text, different vocabularies),\n"
    "2 usage.\n";

void cli_print_compare(FILE *out, const slm_compare_result *r, int json, int32_t ctx) {
    double ratio = r->ppl_base > 0 ? r->ppl_quant / r->ppl_base : 0.0;
    if (json) {
        fprintf(out,
                "{\"base\": {\"perplexity\": %.6f, \"bytes\": %llu, \"bpw\": %.4f, "
                "\"bpw_all\": %.4f}, \"quant\": {\"perplexity\": %.6f, \"bytes\": %llu, "
                "\"bpw\": %.4f, \"bpw_all\": %.4f}, \"ppl_ratio\": %.6f, \"kl_mean\": %.8f, "
                "\"kl_p99\": %.8f, \"kl_max\": %.8f, \"top1\": %.6f, \"tokens\": %lld, "
                "\"windows\": %lld, \"ctx\": %d}\n",
                r->ppl_base, (unsigned long long)r->bytes_base, r->bpw_base, r->bpw_all_base,
                r->ppl_quant, (unsigned long long)r->bytes_quant, r->bpw_quant, r->bpw_all_quant,
                ratio, r->kl_mean, r->kl_p99, r->kl_max, r->top1, (long long)r->n_scored,
                (long long)r->n_windows, (int)ctx);
        return;
    }
    fprintf(out, "%-22s %14s %14s\n", "", "base", "quant");
    fprintf(out, "%-22s %14llu %14llu\n", "file bytes", (unsigned long long)r->bytes_base,
            (unsigned long long)r->bytes_quant);
    fprintf(out, "%-22s %14.3f %14.3f\n", "bits/weight (matrices)", r->bpw_base, r->bpw_quant);
    fprintf(out, "%-22s %14.3f %14.3f\n", "bits/weight (all)", r->bpw_all_base, r->bpw_all_quant);
    fprintf(out, "%-22s %14.6f %14.6f   (ratio %.5f)\n", "perplexity", r->ppl_base, r->ppl_quant,
            ratio);
    fprintf(out, "%-22s %14s %14.6f\n", "KL mean (nats)", "", r->kl_mean);
    fprintf(out, "%-22s %14s %14.6f\n", "KL p99", "", r->kl_p99);
    fprintf(out, "%-22s %14s %14.6f\n", "KL max", "", r->kl_max);
    fprintf(out, "%-22s %14s %13.2f%%\n", "top-1 agreement", "", 100.0 * r->top1);
    fprintf(out, "%lld tokens scored in %lld windows of %d\n", (long long)r->n_scored,
            (long long)r->n_windows, (int)ctx);
}

int cmd_compare(int argc, char **argv) {
    const char *files[2] = {NULL, NULL}, *text_path = NULL, *config_arg = NULL;
    int n_files = 0, json = 0;
    long ctx = 128;
    cli_frags fr = {.n = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(COMPARE_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE("compare", text_path);
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            CLI_VALUE("compare", v);
            if (cli_parse_int("compare", a, v, 2, 1 << 20, &ctx)) return CLI_USAGE;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            long t = 0;
            CLI_VALUE("compare", v);
            if (cli_parse_int("compare", a, v, 0, 256, &t)) return CLI_USAGE;
            char raw[32];
            snprintf(raw, sizeof raw, "%ld", t);
            cli_frag(&fr, "threads", raw);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("compare", config_arg);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("compare", "unknown option '%s'", a);
        } else if (n_files < 2) {
            files[n_files++] = a;
        } else {
            return cli_usage_error("compare", "unexpected argument '%s'", a);
        }
    }
    if (n_files != 2) return cli_usage_error("compare", "give BASE.gguf and QUANT.gguf");
    if (!text_path) return cli_usage_error("compare", "no text: give -f TEXTFILE");
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("compare", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;
    size_t len = 0;
    char *text = cli_read_text(text_path, &len);
    if (!text) {
        slm_config_free(cfg);
        return CLI_ERROR;
    }
    slm_compare_result r;
    slm_status st = slm_compare_files(files[0], files[1], text, len, (int32_t)ctx, cfg, &r);
    if (st != SLM_OK)
        rc = cli_fail("compare", st);
    else
        cli_print_compare(stdout, &r, json, (int32_t)ctx);
    free(text);
    slm_config_free(cfg);
    return rc;
}
