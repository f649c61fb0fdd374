/* slm quantize: F32/F16/BF16 GGUF to block types and mixes, with calibration,
 * per-tensor overrides, a KL budget and a quality gate. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define QUANTIZE_MAX_KEEP 64

static const char *QUANTIZE_HELP =
    "usage: slm quantize IN.gguf OUT.gguf --type TYPE [options]\n"
    "\n"
    "Quantizes an F32, F16 or BF16 GGUF model with llama.cpp's block layouts and\n"
    "metadata (general.file_type, general.quantization_version = 2). 1-D tensors\n"
    "(norms, biases) are copied as they are. OUT is written to a temporary file and\n"
    "renamed into place; IN is never modified. A matrix whose rows do not split into\n"
    "whole blocks of its type falls back (q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0,\n"
    "then f16, which fits any row); every fallback is reported.\n"
    "\n"
    "  --type TYPE          f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q4_k q5_k q6_k (every\n"
    "                       matrix that type), or a mix: q4_k_m, q5_k_m (llama.cpp's rules:\n"
    "                       output.weight q6_k, attn_v and ffn_down q6_k in the first and\n"
    "                       last eighth of the layers and every third one between)\n"
    "  --calib FILE         run the model on this text and weight each matrix's rounding\n"
    "                       error by the mean square of its input columns (imatrix); the\n"
    "                       activation range [min, max] of each tensor's input is stored\n"
    "                       in slm.activation_ranges (f32 pairs in tensor order, NaN for\n"
    "                       tensors without one)\n"
    "  --no-ranges          do not store slm.activation_ranges\n"
    "  --stats FILE         use statistics saved by --save-stats instead of --calib\n"
    "  --save-stats FILE    save the statistics --calib collected (a small GGUF file)\n"
    "  --keep PATTERN=TYPE  give matrices whose name matches the glob that type\n"
    "                       (repeatable; the first matching rule wins), e.g.\n"
    "                       --keep 'token_embd.weight=f16' --keep 'blk.0.*=q8_0'\n"
    "  --budget KL          choose a type per matrix: the smallest plan whose mean KL\n"
    "                       divergence from IN on the --calib text stays within KL\n"
    "                       (measured, not only predicted); the plan is printed and\n"
    "                       stored as slm.quant.plan (needs --calib)\n"
    "  --ctx N              calibration and evaluation window in tokens (default 128)\n"
    "  -f, --eval FILE      after writing, compare OUT with IN on this text and print\n"
    "                       the quality report (default: the --calib text, if any)\n"
    "  --min-quality SPEC   exit 1 when the report misses a threshold; SPEC is a comma\n"
    "                       list of ppl_ratio=R (quant/base perplexity <= R), kl=K (mean\n"
    "                       KL <= K), kl99=K (99th percentile KL <= K), top1=T (top-1\n"
    "                       agreement >= T, a fraction), e.g. ppl_ratio=1.02,kl=0.05,top1=0.9\n"
    "                       (needs --eval or --calib)\n"
    "  --json               print the report as JSON\n"
    "  -t, --threads N      threads, 0 = one per core\n"
    "  -q, --quiet          no per-tensor progress on stderr\n"
    "  --gptq               with --calib: GPTQ rounding; each row's blocks are quantized\n"
    "                       left to right and their rounding error is compensated in the\n"
    "                       columns not yet quantized, through the inverse of the\n"
    "                       calibration Hessian (sum of x x^T per matrix; small models:\n"
    "                       at most 2 GiB of Hessians)\n"
    "  -h, --help           this help\n"
    "\n"
    "Exit status: 0 written (and the quality gate, if any, passed); 1 error (unknown\n"
    "type, unreadable or already quantized input, unwritable output, output = input;\n"
    "nothing existing is touched) or quality gate missed (the file is kept); 2 usage.\n";

typedef struct gate {
    double ppl_ratio, kl, kl99, top1; /* < 0: not set */
} gate;

static int parse_gate(const char *spec, gate *g) {
    g->ppl_ratio = g->kl = g->kl99 = g->top1 = -1.0;
    char buf[512];
    if (strlen(spec) >= sizeof buf)
        return cli_usage_error("quantize", "--min-quality: specification too long");
    strcpy(buf, spec);
    char *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return cli_usage_error("quantize", "--min-quality: '%s' is not NAME=VALUE", tok);
        *eq = '\0';
        double v = 0.0;
        char opt[64];
        snprintf(opt, sizeof opt, "--min-quality %s", tok);
        if (cli_parse_float("quantize", opt, eq + 1, 0.0, 1e9, &v)) return CLI_USAGE;
        if (!strcmp(tok, "ppl_ratio"))
            g->ppl_ratio = v;
        else if (!strcmp(tok, "kl"))
            g->kl = v;
        else if (!strcmp(tok, "kl99"))
            g->kl99 = v;
        else if (!strcmp(tok, "top1") && v <= 1.0)
            g->top1 = v;
        else
            return cli_usage_error("quantize",
                                   "--min-quality: unknown or out-of-range '%s' (expected "
                                   "ppl_ratio, kl, kl99, top1 in [0, 1])",
                                   tok);
        n++;
    }
    if (n == 0) return cli_usage_error("quantize", "--min-quality: no threshold given");
    return CLI_OK;
}

/* Prints each missed threshold; returns the number missed. */
static int check_gate(const gate *g, const slm_compare_result *r) {
    int missed = 0;
    double ratio = r->ppl_quant / r->ppl_base;
    if (g->ppl_ratio >= 0 && !(ratio <= g->ppl_ratio)) {
        fprintf(stderr, "slm quantize: quality gate: perplexity ratio %.5f > %.5f\n", ratio,
                g->ppl_ratio);
        missed++;
    }
    if (g->kl >= 0 && !(r->kl_mean <= g->kl)) {
        fprintf(stderr, "slm quantize: quality gate: mean KL %.6f > %.6f\n", r->kl_mean, g->kl);
        missed++;
    }
    if (g->kl99 >= 0 && !(r->kl_p99 <= g->kl99)) {
        fprintf(stderr, "slm quantize: quality gate: KL p99 %.6f > %.6f\n", r->kl_p99, g->kl99);
        missed++;
    }
    if (g->top1 >= 0 && !(r->top1 >= g->top1)) {
        fprintf(stderr, "slm quantize: quality gate: top-1 agreement %.4f < %.4f\n", r->top1,
                g->top1);
        missed++;
    }
    return missed;
}

int cmd_quantize(int argc, char **argv) {
    const char *files[2] = {NULL, NULL}, *type = NULL, *calib = NULL, *eval = NULL;
    const char *stats_in = NULL, *stats_out = NULL, *quality = NULL;
    const char *keep[QUANTIZE_MAX_KEEP];
    int n_files = 0, n_keep = 0, json = 0, quiet = 0, no_ranges = 0, gptq = 0;
    long ctx = 128, threads = 0;
    double budget = 0.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(QUANTIZE_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--type")) {
            CLI_VALUE("quantize", type);
        } else if (!strcmp(a, "--calib")) {
            CLI_VALUE("quantize", calib);
        } else if (!strcmp(a, "--stats")) {
            CLI_VALUE("quantize", stats_in);
        } else if (!strcmp(a, "--save-stats")) {
            CLI_VALUE("quantize", stats_out);
        } else if (!strcmp(a, "--keep")) {
            CLI_VALUE("quantize", v);
            if (n_keep >= QUANTIZE_MAX_KEEP)
                return cli_usage_error("quantize", "at most %d --keep rules", QUANTIZE_MAX_KEEP);
            if (!strchr(v, '=') || v[0] == '=')
                return cli_usage_error("quantize", "--keep '%s': expected PATTERN=TYPE", v);
            keep[n_keep++] = v;
        } else if (!strcmp(a, "--budget")) {
            CLI_VALUE("quantize", v);
            if (cli_parse_float("quantize", a, v, 1e-9, 100.0, &budget)) return CLI_USAGE;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            CLI_VALUE("quantize", v);
            if (cli_parse_int("quantize", a, v, 2, 1 << 20, &ctx)) return CLI_USAGE;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--eval")) {
            CLI_VALUE("quantize", eval);
        } else if (!strcmp(a, "--min-quality")) {
            CLI_VALUE("quantize", quality);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            CLI_VALUE("quantize", v);
            if (cli_parse_int("quantize", a, v, 0, 256, &threads)) return CLI_USAGE;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-ranges")) {
            no_ranges = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--gptq")) {
            gptq = 1;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("quantize", "unknown option '%s'", a);
        } else if (n_files < 2) {
            files[n_files++] = a;
        } else {
            return cli_usage_error("quantize", "unexpected argument '%s'", a);
        }
    }
    if (n_files != 2) return cli_usage_error("quantize", "give IN.gguf and OUT.gguf");
    if (!type) return cli_usage_error("quantize", "no type: give --type TYPE");
    if (stats_in && calib && budget <= 0.0)
        return cli_usage_error("quantize", "give --stats or --calib for statistics, not both "
                                           "(both only with --budget)");
    if (stats_in && stats_out)
        return cli_usage_error("quantize", "--save-stats saves what --calib collects; not with "
                                           "--stats");
    if (stats_out && !calib) return cli_usage_error("quantize", "--save-stats needs --calib FILE");
    if (budget > 0.0 && !calib) return cli_usage_error("quantize", "--budget needs --calib FILE");
    if (gptq && (!calib || stats_in))
        return cli_usage_error("quantize", "--gptq needs --calib FILE (and no --stats)");
    if (!eval) eval = calib;
    gate g = {-1.0, -1.0, -1.0, -1.0};
    if (quality) {
        if (parse_gate(quality, &g)) return CLI_USAGE;
        if (!eval) return cli_usage_error("quantize", "--min-quality needs --eval or --calib");
    }

    int rc = CLI_OK;
    char *calib_text = NULL, *eval_text = NULL;
    size_t calib_len = 0, eval_len = 0;
    slm_quantize_report *rep = NULL;
    slm_config *cfg = NULL;
    if (calib && !(calib_text = cli_read_text(calib, &calib_len))) return CLI_ERROR;
    if (eval && !(eval_text = cli_read_text(eval, &eval_len))) {
        free(calib_text);
        return CLI_ERROR;
    }
    slm_quantize_params p;
    memset(&p, 0, sizeof p);
    p.type = type;
    p.calib_text = calib_text;
    p.calib_len = calib_len;
    p.calib_ctx = (int32_t)ctx;
    p.stats_in = stats_in;
    p.stats_out = stats_out;
    p.keep = keep;
    p.n_keep = (size_t)n_keep;
    p.budget_kl = budget;
    p.threads = (int32_t)threads;
    p.progress = !quiet;
    p.no_ranges = no_ranges;
    p.gptq = gptq;
    slm_status st = slm_quantize_file(files[0], files[1], &p, &rep);
    if (st != SLM_OK) {
        rc = cli_fail("quantize", st);
        goto done;
    }
    FILE *out = json ? stderr : stdout;
    if (rep->n_fallbacks) {
        fprintf(out, "%zu of %zu tensors fell back to a type that fits their rows:\n",
                rep->n_fallbacks, rep->n_tensors);
        for (size_t i = 0; i < rep->n_tensors; i++) {
            const slm_quantize_tensor *t = &rep->tensors[i];
            if (strcmp(t->type, t->wanted) != 0)
                fprintf(out, "  %-32s %s -> %s (rows of %lld)\n", t->name, t->wanted, t->type,
                        (long long)t->n_cols);
        }
    }
    if (budget > 0.0)
        fprintf(out,
                "budget: mean KL %.6f on the calibration text (predicted %.6f, budget %g)"
                "%s\nplan: %s\n",
                rep->budget_measured_kl, rep->budget_predicted_kl, budget,
                rep->budget_measured_kl <= budget ? "" : " -- OVER BUDGET", rep->plan);
    fprintf(out, "wrote %s: %llu bytes (input %llu) in %.2f s%s\n", files[1],
            (unsigned long long)rep->bytes_out, (unsigned long long)rep->bytes_in, rep->seconds,
            rep->calibrated ? ", calibrated" : "");
    if (eval_text) {
        char raw[32];
        snprintf(raw, sizeof raw, "{\"threads\":%ld}", threads);
        st = slm_config_new(&cfg);
        if (st == SLM_OK) st = slm_config_apply_json(cfg, raw, strlen(raw));
        slm_compare_result r;
        if (st == SLM_OK)
            st = slm_compare_files(files[0], files[1], eval_text, eval_len, (int32_t)ctx, cfg, &r);
        if (st != SLM_OK) {
            rc = cli_fail("quality report", st);
            goto done;
        }
        cli_print_compare(stdout, &r, json, (int32_t)ctx);
        if (quality && check_gate(&g, &r) > 0) rc = CLI_ERROR;
    }
done:
    slm_quantize_report_free(rep);
    slm_config_free(cfg);
    free(calib_text);
    free(eval_text);
    return rc;
}
