/* slm classify: rank labels for a text by the model's log-probability of
 * producing each (slm_classify). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli_intent.h"

static const char *CLASSIFY_HELP =
    "usage: slm classify [-m MODEL] (--labels \"a,b,c\" | --labels-file FILE)\n"
    "                    [--prompt-template T] [--json] [-t N] [--config JSON|FILE]\n"
    "                    (TEXT... | -f FILE)\n"
    "\n"
    "Scores each label by the model's log-probability of writing it after a prompt\n"
    "made from the text, and prints the labels best first with probabilities that\n"
    "sum to 1. The prompt is the template with {text} replaced by the text and\n"
    "{labels} by the labels joined with \", \"; a label's continuation is \" \" + label,\n"
    "all of its tokens are scored, the score is their mean log-probability, and\n"
    "the probabilities are the softmax of the scores over the labels. Labels that\n"
    "share a prefix (pay, payment) are scored on all their tokens. docs/INTENT.md.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default as for 'slm run')\n"
    "  --labels LIST           comma-separated labels (spaces around each trimmed)\n"
    "  --labels-file FILE      one label per line (blank lines skipped); may be\n"
    "                          combined with --labels\n"
    "  --prompt-template T     the prompt; must contain {text} (default:\n"
    "                          \"Classify the text as one of: {labels}.\\nText: "
    "{text}\\nLabel:\";\n"
    "                          \\n and \\t in T are read as newline and tab)\n"
    "  -f, --file FILE         read the text from FILE ('-' = stdin) instead of TEXT\n"
    "  --json                  print {\"labels\": [{\"label\", \"probability\", \"logprob\",\n"
    "                          \"mean_logprob\", \"tokens\"}, ...], \"prompt_tokens\": N}\n"
    "  -t, --threads N         threads, 0 = one per core\n"
    "  --config ...            runtime config (JSON text or file)\n"
    "  -h, --help              this help\n"
    "\n"
    "TEXT words are joined with single spaces. Exit status 0 on success, 1 on an\n"
    "error (model, context too small), 2 on a usage error.\n";

static void print_result(const slm_classify_result *r, int json) {
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(o, "labels");
        for (size_t k = 0; k < r->n_labels; k++) {
            const slm_label_score *e = &r->labels[k];
            cJSON *it = cJSON_CreateObject();
            cJSON_AddStringToObject(it, "label", e->label);
            cJSON_AddNumberToObject(it, "probability", e->probability);
            cJSON_AddNumberToObject(it, "logprob", e->logprob);
            cJSON_AddNumberToObject(it, "mean_logprob", e->mean_logprob);
            cJSON_AddNumberToObject(it, "tokens", e->n_tokens);
            cJSON_AddItemToArray(arr, it);
        }
        cJSON_AddNumberToObject(o, "prompt_tokens", r->n_prompt_tokens);
        char *s = cJSON_PrintUnformatted(o);
        if (s) printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    size_t w = 5;
    for (size_t k = 0; k < r->n_labels; k++)
        if (strlen(r->labels[k].label) > w) w = strlen(r->labels[k].label);
    if (w > 40) w = 40;
    printf("%-*s  %-11s  %-12s  %s\n", (int)w, "label", "probability", "mean_logprob", "tokens");
    for (size_t k = 0; k < r->n_labels; k++)
        printf("%-*s  %-11.6f  %-12.4f  %d\n", (int)w, r->labels[k].label, r->labels[k].probability,
               r->labels[k].mean_logprob, r->labels[k].n_tokens);
}

int cmd_classify(int argc, char **argv) {
    const char *model_arg = NULL, *config_arg = NULL, *labels_arg = NULL, *labels_file = NULL;
    const char *tmpl_arg = NULL, *file = NULL;
    int json = 0;
    cli_frags fr = {.n = 0};
    char **words = calloc((size_t)argc + 1, sizeof *words);
    int n_words = 0;
    if (!words) return CLI_ERROR;
    int rc = CLI_OK;
    cli_labels labels = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int t;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(CLASSIFY_HELP, stdout);
            goto early;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE_OR("classify", model_arg, early);
        } else if (!strcmp(a, "--labels")) {
            CLI_VALUE_OR("classify", labels_arg, early);
        } else if (!strcmp(a, "--labels-file")) {
            CLI_VALUE_OR("classify", labels_file, early);
        } else if (!strcmp(a, "--prompt-template")) {
            CLI_VALUE_OR("classify", tmpl_arg, early);
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            CLI_VALUE_OR("classify", file, early);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE_OR("classify", config_arg, early);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if ((t = cli_threads_option("classify", argc, argv, &i, &fr)) >= 0) {
            rc = t;
            if (rc) goto early;
        } else if (!strcmp(a, "--")) {
            while (++i < argc) words[n_words++] = argv[i];
        } else if (a[0] == '-' && a[1]) {
            rc = cli_usage_error("classify", "unknown option '%s'", a);
            goto early;
        } else {
            words[n_words++] = argv[i];
        }
    }
    if (!labels_arg && !labels_file)
        rc = cli_usage_error("classify", "no labels: give --labels \"a,b,c\" or --labels-file");
    else if (file && n_words)
        rc = cli_usage_error("classify", "give the text as TEXT or with -f, not both");
    else if (!file && !n_words)
        rc = cli_usage_error("classify", "no text: give TEXT or -f FILE");
    else
        rc = cli_labels_parse("classify", labels_arg, labels_file, &labels);
    if (rc) {
    early:
        free(words);
        return rc;
    }
    char *tmpl = tmpl_arg ? cli_unescape(tmpl_arg) : NULL;
    char *text = NULL;
    size_t len = 0;
    slm_model *m = NULL;
    slm_session *s = NULL;
    slm_classify_result r = {0};
    if (labels.n == 0) {
        rc = cli_usage_error("classify", "the label list is empty");
        goto done;
    }
    if (tmpl && !strstr(tmpl, "{text}")) {
        rc = cli_usage_error("classify", "--prompt-template must contain {text}");
        goto done;
    }
    if (file) {
        text = cli_read_text(file, &len);
        if (!text) {
            rc = CLI_ERROR;
            goto done;
        }
    } else {
        for (int i = 0; i < n_words; i++) len += strlen(words[i]) + 1;
        text = malloc(len + 1);
        if (!text) {
            rc = CLI_ERROR;
            goto done;
        }
        len = 0;
        for (int i = 0; i < n_words; i++) {
            if (i) text[len++] = ' ';
            memcpy(text + len, words[i], strlen(words[i]));
            len += strlen(words[i]);
        }
        text[len] = '\0';
    }
    rc = cli_open_session("classify", model_arg, config_arg, &fr, &m, &s);
    if (rc) goto done;
    slm_status st =
        slm_classify(s, text, len, (const char *const *)labels.items, labels.n, tmpl, &r);
    if (st != SLM_OK) {
        rc = cli_fail("classify", st);
        goto done;
    }
    print_result(&r, json);
done:
    slm_classify_result_free(&r);
    slm_session_free(s);
    slm_model_free(m);
    cli_labels_free(&labels);
    free(tmpl);
    free(text);
    free(words);
    return rc;
}
