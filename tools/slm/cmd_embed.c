/* slm embed: one vector per text from a decoder model's final hidden states
 * (slm_embed). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli_intent.h"

static const char *EMBED_HELP =
    "usage: slm embed [-m MODEL] [--pooling mean|last] [--no-normalize] [--json]\n"
    "                 [-t N] [--config JSON|FILE] (TEXT... | -f FILE)\n"
    "\n"
    "Prints one embedding per text: the model's final hidden states (after the\n"
    "output norm, before the output projection) of every position of the text\n"
    "(tokenized with BOS as the model adds it), mean-pooled (or the last token's),\n"
    "then L2-normalized. These are a decoder model's states, not the vectors of a\n"
    "model trained for embeddings: useful for search within one model, not\n"
    "comparable across models. docs/INTENT.md.\n"
    "\n"
    "  -m, --model PATH     GGUF model (default as for 'slm run')\n"
    "  --pooling P          mean (default) or last\n"
    "  --no-normalize       leave the pooled vector at its length\n"
    "  -f, --file FILE      one text per line of FILE ('-' = stdin; blank lines\n"
    "                       skipped) instead of TEXT arguments (each one a text)\n"
    "  --json               {\"model\", \"dim\", \"pooling\", \"data\": [{\"index\", \"tokens\",\n"
    "                       \"embedding\": [...]}, ...]}\n"
    "  -t, --threads N      threads, 0 = one per core\n"
    "  --config ...         runtime config (JSON text or file)\n"
    "  -h, --help           this help\n"
    "\n"
    "Without --json: one line per text, the vector's components separated by\n"
    "spaces.\n";

int cmd_embed(int argc, char **argv) {
    const char *model_arg = NULL, *config_arg = NULL, *file = NULL, *pool_arg = "mean";
    int json = 0, normalize = 1;
    cli_frags fr = {.n = 0};
    cli_labels texts = {0}; /* the texts (a list of strings) */
    int rc = CLI_OK, dashdash = 0;
    slm_model *m = NULL;
    slm_session *s = NULL;
    float *v = NULL;
    cJSON *out = NULL, *data_arr = NULL;
    slm_pooling pooling = SLM_POOLING_MEAN;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int t;
        if (dashdash || a[0] != '-' || !a[1]) {
            if (cli_list_push(&texts, a, strlen(a))) goto oom;
        } else if (!strcmp(a, "--")) {
            dashdash = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(EMBED_HELP, stdout);
            goto done;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE_OR("embed", model_arg, done);
        } else if (!strcmp(a, "--pooling")) {
            CLI_VALUE_OR("embed", pool_arg, done);
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE_OR("embed", file, done);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE_OR("embed", config_arg, done);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--no-normalize")) {
            normalize = 0;
        } else if ((t = cli_threads_option("embed", argc, argv, &i, &fr)) >= 0) {
            rc = t;
            if (rc) goto done;
        } else {
            rc = cli_usage_error("embed", "unknown option '%s'", a);
            goto done;
        }
    }
    if (!strcmp(pool_arg, "last")) {
        pooling = SLM_POOLING_LAST;
    } else if (strcmp(pool_arg, "mean") != 0) {
        rc = cli_usage_error("embed", "--pooling: expected mean or last, got '%s'", pool_arg);
        goto done;
    }
    if (file && texts.n) {
        rc = cli_usage_error("embed", "give texts as arguments or with -f, not both");
        goto done;
    }
    if (file) {
        size_t len = 0;
        char *data = cli_read_text(file, &len);
        if (!data) {
            rc = CLI_ERROR;
            goto done;
        }
        for (char *p = data; p < data + len;) {
            char *nl = memchr(p, '\n', (size_t)(data + len - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
            char *next = p + n + 1;
            if (n && p[n - 1] == '\r') n--;
            size_t k = 0;
            while (k < n && (p[k] == ' ' || p[k] == '\t')) k++;
            if (k < n && cli_list_push(&texts, p, n)) {
                free(data);
                goto oom;
            }
            p = next;
        }
        free(data);
    }
    if (texts.n == 0) {
        rc = cli_usage_error("embed", "no text: give TEXT... or -f FILE");
        goto done;
    }
    rc = cli_open_session("embed", model_arg, config_arg, &fr, &m, &s);
    if (rc) goto done;
    int32_t D = slm_embedding_dim(m);
    v = malloc((size_t)D * sizeof *v);
    if (!v) goto oom;
    if (json) {
        slm_model_info info;
        slm_model_get_info(m, &info);
        out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "model", info.name && *info.name ? info.name : info.arch);
        cJSON_AddNumberToObject(out, "dim", D);
        cJSON_AddStringToObject(out, "pooling", pool_arg);
        cJSON_AddBoolToObject(out, "normalized", normalize);
        data_arr = cJSON_AddArrayToObject(out, "data");
    }
    for (size_t i = 0; i < texts.n; i++) {
        int32_t nt = 0;
        slm_status st =
            slm_embed(s, texts.items[i], strlen(texts.items[i]), pooling, normalize, v, &nt);
        if (st != SLM_OK) {
            char what[48];
            snprintf(what, sizeof what, "text %zu", i + 1);
            rc = cli_fail(what, st);
            goto done;
        }
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", (double)i);
            cJSON_AddNumberToObject(o, "tokens", nt);
            cJSON *e = cJSON_AddArrayToObject(o, "embedding");
            for (int32_t d = 0; d < D; d++) cJSON_AddItemToArray(e, cJSON_CreateNumber(v[d]));
            cJSON_AddItemToArray(data_arr, o);
        } else {
            for (int32_t d = 0; d < D; d++) printf(d ? " %.9g" : "%.9g", (double)v[d]);
            printf("\n");
        }
    }
    if (json) {
        char *js = cJSON_PrintUnformatted(out);
        if (js) printf("%s\n", js);
        free(js);
    }
    goto done;
oom:
    fprintf(stderr, "slm embed: out of memory\n");
    rc = CLI_ERROR;
done:
    cJSON_Delete(out);
    free(v);
    slm_session_free(s);
    slm_model_free(m);
    cli_labels_free(&texts);
    return rc;
}
