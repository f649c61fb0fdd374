/* slm tokenize: token ids of a text, or of JSON lines. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *TOKENIZE_HELP =
    "usage: slm tokenize (-m MODEL.gguf | --tokenizer tokenizer.json) [options] TEXT\n"
    "       slm tokenize (-m MODEL.gguf | --tokenizer tokenizer.json) [options] --jsonl\n"
    "\n"
    "Prints the token ids of TEXT, separated by spaces. With --jsonl, reads JSON\n"
    "lines {\"text\": ...} from stdin and writes one line {\"ids\": [...],\n"
    "\"decoded\": \"...\"} per input line, in order (decoded = the ids decoded\n"
    "back, control tokens rendered as text).\n"
    "\n"
    "  -m, --model PATH          a GGUF model's tokenizer (default as for 'slm run')\n"
    "  --tokenizer PATH          a Hugging Face tokenizer.json instead\n"
    "  --tokenizer-config PATH   its tokenizer_config.json (bos/eos), optional\n"
    "  --special                 match control-token text such as <s> in the input\n"
    "                            (off by default: such text is plain text)\n"
    "  --add-special             add BOS/EOS as the tokenizer says (tokenizer.json's\n"
    "                            post-processor, or GGUF add_bos_token/add_eos_token)\n"
    "  --json                    print {\"ids\": [...], \"pieces\": [...]} for TEXT\n"
    "  --jsonl                   JSON lines on stdin, as above\n"
    "  -h, --help                this help\n";

#define TOKENIZE_MAX_LINE (64u << 20)

static void put_json_string(FILE *out, const char *s, size_t n) {
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\r')
            fputs("\\r", out);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

static void put_ids(FILE *out, const int32_t *ids, size_t n) {
    fputc('[', out);
    for (size_t i = 0; i < n; i++) fprintf(out, "%s%d", i ? ", " : "", ids[i]);
    fputc(']', out);
}

/* One {"text": ...} line -> {"ids": [...], "decoded": "..."}. */
static int jsonl_line(const slm_tokenizer *t, const char *line, size_t len, int flags,
                      long lineno) {
    cJSON *o = cJSON_ParseWithLength(line, len);
    const cJSON *text = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
    if (!cJSON_IsString(text)) {
        fprintf(stderr,
                "slm tokenize: stdin line %ld: expected a JSON object with a string \"text\"\n",
                lineno);
        cJSON_Delete(o);
        return CLI_ERROR;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    char *dec = NULL;
    size_t dl = 0;
    /* cJSON strings stop at U+0000, which the fixtures never contain */
    slm_status st =
        slm_tokenizer_encode(t, text->valuestring, strlen(text->valuestring), flags, &ids, &n);
    if (st == SLM_OK)
        st = slm_tokenizer_decode(t, ids, n, SLM_DECODE_SPECIAL | slm_tokenizer_decode_flags(t),
                                  &dec, &dl);
    cJSON_Delete(o);
    if (st != SLM_OK) {
        free(ids);
        char what[64];
        snprintf(what, sizeof what, "stdin line %ld", lineno);
        return cli_fail(what, st);
    }
    fputs("{\"ids\": ", stdout);
    put_ids(stdout, ids, n);
    fputs(", \"decoded\": ", stdout);
    put_json_string(stdout, dec, dl);
    fputs("}\n", stdout);
    free(ids);
    free(dec);
    return CLI_OK;
}

static int run_jsonl(const slm_tokenizer *t, int flags) {
    char *line = malloc(TOKENIZE_MAX_LINE);
    if (!line) return cli_fail("tokenize", SLM_ERR_NOMEM);
    long lineno = 0;
    int rc = CLI_OK;
    while (fgets(line, (int)TOKENIZE_MAX_LINE, stdin)) {
        lineno++;
        size_t len = strlen(line);
        if (len == TOKENIZE_MAX_LINE - 1 && line[len - 1] != '\n') {
            fprintf(stderr, "slm tokenize: stdin line %ld is longer than %u bytes\n", lineno,
                    TOKENIZE_MAX_LINE);
            rc = CLI_ERROR;
            break;
        }
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        rc = jsonl_line(t, line, len, flags, lineno);
        if (rc) break;
    }
    fflush(stdout);
    free(line);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model_arg = NULL, *tok_json = NULL, *tok_cfg = NULL, *text = NULL;
    int json = 0, jsonl = 0, flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(TOKENIZE_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("tokenize", model_arg);
        } else if (!strcmp(a, "--tokenizer")) {
            CLI_VALUE("tokenize", tok_json);
        } else if (!strcmp(a, "--tokenizer-config")) {
            CLI_VALUE("tokenize", tok_cfg);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--jsonl")) {
            jsonl = 1;
        } else if (!strcmp(a, "--special")) {
            flags |= SLM_TOKENIZE_PARSE_SPECIAL;
        } else if (!strcmp(a, "--add-special")) {
            flags |= SLM_TOKENIZE_ADD_BOS;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !text) text = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("tokenize", "unknown option '%s'", a);
        } else if (!text) {
            text = a;
        } else {
            return cli_usage_error("tokenize", "give the text as one argument (quote it)");
        }
    }
    if (!text && !jsonl) return cli_usage_error("tokenize", "no text given (or use --jsonl)");
    if (text && jsonl) return cli_usage_error("tokenize", "give TEXT or --jsonl, not both");
    if (model_arg && tok_json)
        return cli_usage_error("tokenize", "give -m or --tokenizer, not both");

    slm_model *m = NULL;
    slm_tokenizer *own = NULL;
    const slm_tokenizer *t = NULL;
    slm_status st;
    if (tok_json) {
        st = slm_tokenizer_from_hf_json(tok_json, tok_cfg, &own);
        if (st != SLM_OK) return cli_fail("cannot load tokenizer", st);
        t = own;
    } else {
        char buf[4096];
        const char *path = cli_default_model(model_arg, buf, sizeof buf);
        if (!path) return CLI_USAGE;
        st = slm_model_inspect(path, &m);
        if (st != SLM_OK) return cli_fail("cannot read model", st);
        t = slm_model_tokenizer(m);
        if (!t) {
            slm_model_free(m);
            fprintf(stderr, "slm: %s: the file has no tokenizer slm can read\n", path);
            return CLI_ERROR;
        }
    }
    int rc = CLI_OK;
    if (jsonl) {
        rc = run_jsonl(t, flags);
    } else {
        int32_t *ids = NULL;
        size_t n = 0;
        st = slm_tokenizer_encode(t, text, strlen(text), flags, &ids, &n);
        if (st != SLM_OK) {
            rc = cli_fail("cannot tokenize", st);
        } else if (json) {
            fputs("{\"ids\": ", stdout);
            put_ids(stdout, ids, n);
            fputs(", \"pieces\": [", stdout);
            for (size_t i = 0; i < n; i++) {
                char *piece = NULL;
                size_t pl = 0;
                if (i) fputs(", ", stdout);
                if (slm_tokenizer_decode(t, ids + i, 1, SLM_DECODE_SPECIAL, &piece, &pl) == SLM_OK)
                    put_json_string(stdout, piece, pl);
                else
                    fputs("null", stdout);
                free(piece);
            }
            fputs("]}\n", stdout);
        } else {
            for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
            printf("\n");
        }
        free(ids);
    }
    slm_tokenizer_free(own);
    slm_model_free(m);
    return rc;
}
