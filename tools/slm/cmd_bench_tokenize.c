/* slm bench-tokenize: encoding speed of tokenizers, in MB/s, one thread. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *BT_HELP =
    "usage: slm bench-tokenize [--tokenizer tokenizer.json]... [-m MODEL.gguf]...\n"
    "                          [-f TEXT] [--mb N] [-r REPS] [--json]\n"
    "\n"
    "Encodes a large text with each tokenizer given (one thread, control-token\n"
    "text not parsed) and reports MB/s: the best of REPS runs after a warm-up.\n"
    "Without -f the text is a built-in mix of English prose, code, numbers,\n"
    "punctuation and non-Latin scripts, repeated to N MiB.\n"
    "\n"
    "  --tokenizer PATH  a Hugging Face tokenizer.json (repeatable)\n"
    "  -m, --model PATH  a GGUF model's tokenizer (repeatable)\n"
    "  -f, --file PATH   the text to encode instead of the built-in mix\n"
    "  --mb N            size of the built-in text in MiB (default 4)\n"
    "  -r, --reps N      timed runs per tokenizer (default 3)\n"
    "  --json            one JSON object per tokenizer, one per line\n"
    "  -h, --help        this help\n";

/* A mix of the kinds of text the tokenizer fixtures cover. */
static const char *MIX =
    "The lighthouse keeper counted the ships every evening before supper; on 12 March 2024 "
    "there were 37 of them, worth $1,234,567.89 in all. \"Don't worry,\" she said, \"we'll "
    "manage.\" It's 3:45pm and the temperature is -12.5\xC2\xB0"
    "C.\n"
    "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text if c.isalnum()]\n"
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }  // dot product\n"
    "https://example.com/path?query=1&lang=en#section  user@example.org  0x7fff_ffff\n"
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB\xA0\xE3\x81\xA7"
    "\xE3\x81\x99\xE3\x80\x82 \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, "
    "\xD0\xBC\xD0\xB8\xD1\x80! \xCE\x93\xCE\xB5\xCE\xB9\xCE\xB1 \xCF\x83\xCE\xBF\xCF\x85 "
    "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5"
    "\x8D\xE0\xA4\xA4\xE0\xA5\x87 \xF0\x9F\x98\x80\xF0\x9F\x9A\x80 caf\xC3\xA9 na\xC3\xAFve\n"
    "    indented    text\twith\ttabs   and  double  spaces...!!! ??? --- ***\n\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_one(const char *label, const slm_tokenizer *t, const char *text, size_t len,
                     long reps, int json) {
    int32_t *ids = NULL;
    size_t n = 0;
    slm_status st = slm_tokenizer_encode(t, text, len, 0, &ids, &n); /* warm-up */
    if (st != SLM_OK) return cli_fail(label, st);
    free(ids);
    double best = 1e30;
    for (long r = 0; r < reps; r++) {
        double t0 = now_s();
        st = slm_tokenizer_encode(t, text, len, 0, &ids, &n);
        double dt = now_s() - t0;
        free(ids);
        if (st != SLM_OK) return cli_fail(label, st);
        if (dt < best) best = dt;
    }
    double mbs = (double)len / (1024.0 * 1024.0) / best;
    if (json)
        printf("{\"tokenizer\": \"%s\", \"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, "
               "\"mb_per_s\": %.2f}\n",
               label, len, n, best, mbs);
    else
        printf("%-48s %8.2f MB/s  (%zu bytes -> %zu tokens in %.3f s, best of %ld)\n", label, mbs,
               len, n, best, reps);
    return CLI_OK;
}

int cmd_bench_tokenize(int argc, char **argv) {
    const char *toks[16], *models[16], *file = NULL;
    int n_toks = 0, n_models = 0, json = 0;
    long mb = 4, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(BT_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--tokenizer")) {
            if (n_toks == 16) return cli_usage_error("bench-tokenize", "at most 16 tokenizers");
            CLI_VALUE("bench-tokenize", toks[n_toks]);
            n_toks++;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (n_models == 16) return cli_usage_error("bench-tokenize", "at most 16 models");
            CLI_VALUE("bench-tokenize", models[n_models]);
            n_models++;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE("bench-tokenize", file);
        } else if (!strcmp(a, "--mb")) {
            CLI_VALUE("bench-tokenize", v);
            if (cli_parse_int("bench-tokenize", a, v, 1, 1024, &mb)) return CLI_USAGE;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) {
            CLI_VALUE("bench-tokenize", v);
            if (cli_parse_int("bench-tokenize", a, v, 1, 1000, &reps)) return CLI_USAGE;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else {
            return cli_usage_error("bench-tokenize", "unknown option '%s'", a);
        }
    }
    if (n_toks + n_models == 0)
        return cli_usage_error("bench-tokenize", "give at least one --tokenizer or -m");
    char *text = NULL;
    size_t len = 0;
    if (file) {
        text = cli_read_text(file, &len);
        if (!text) return CLI_ERROR;
    } else {
        size_t want = (size_t)mb << 20, ml = strlen(MIX);
        text = malloc(want + ml + 1);
        if (!text) return cli_fail("bench-tokenize", SLM_ERR_NOMEM);
        while (len < want) {
            memcpy(text + len, MIX, ml);
            len += ml;
        }
        text[len] = '\0';
    }
    int rc = CLI_OK;
    for (int i = 0; i < n_toks && rc == CLI_OK; i++) {
        slm_tokenizer *t = NULL;
        slm_status st = slm_tokenizer_from_hf_json(toks[i], NULL, &t);
        if (st != SLM_OK) {
            rc = cli_fail(toks[i], st);
            break;
        }
        rc = bench_one(toks[i], t, text, len, reps, json);
        slm_tokenizer_free(t);
    }
    for (int i = 0; i < n_models && rc == CLI_OK; i++) {
        slm_model *m = NULL;
        slm_status st = slm_model_inspect(models[i], &m);
        if (st != SLM_OK) {
            rc = cli_fail(models[i], st);
            break;
        }
        const slm_tokenizer *t = slm_model_tokenizer(m);
        if (t)
            rc = bench_one(models[i], t, text, len, reps, json);
        else
            rc = cli_fail(models[i], SLM_ERR_UNSUPPORTED);
        slm_model_free(m);
    }
    free(text);
    return rc;
}
