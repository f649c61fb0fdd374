/* slm eval-intent: slm classify over a JSON-lines file, with accuracy and
 * per-label precision/recall/F1 when the lines carry the true label. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli_intent.h"

static const char *EVAL_HELP =
    "usage: slm eval-intent [-m MODEL] [--labels \"a,b,c\" | --labels-file FILE]\n"
    "                       [--prompt-template T] [--json] [--summary-only] [-t N]\n"
    "                       [--config JSON|FILE] FILE.jsonl\n"
    "\n"
    "Classifies every line of FILE.jsonl ('-' = stdin) as 'slm classify' does. Each\n"
    "non-blank line is a JSON object {\"text\": \"...\", \"label\": \"...\"}; \"label\" (the\n"
    "true label) is optional and other keys are ignored. Every line is checked\n"
    "before the model runs: a line that is not such an object, or whose label is\n"
    "not one of the labels, is an error naming its line number.\n"
    "\n"
    "Prints one prediction per line, then, when lines carry labels: accuracy\n"
    "(correct / labeled lines), and per label precision = TP/(TP+FP), recall =\n"
    "TP/(TP+FN), F1 = 2PR/(P+R) (0 when undefined), support (true count) and\n"
    "predicted count; macro-F1 is the mean F1 over the labels that occur as a true\n"
    "label or a prediction on labeled lines.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default as for 'slm run')\n"
    "  --labels LIST           comma-separated labels (default: the distinct\n"
    "                          \"label\" values of the file, in order of appearance)\n"
    "  --labels-file FILE      one label per line\n"
    "  --prompt-template T     as for 'slm classify' (must contain {text})\n"
    "  --json                  JSON lines: {\"line\", \"label\", \"probability\",\n"
    "                          \"true_label\", \"correct\"} per input line, then\n"
    "                          {\"summary\": {\"lines\", \"labeled\", \"correct\",\n"
    "                          \"accuracy\", \"macro_f1\", \"labels\": [{\"label\",\n"
    "                          \"precision\", \"recall\", \"f1\", \"support\",\n"
    "                          \"predicted\"}, ...]}}\n"
    "  --summary-only          print only the summary\n"
    "  -t, --threads N         threads, 0 = one per core\n"
    "  --config ...            runtime config (JSON text or file)\n"
    "  -h, --help              this help\n";

typedef struct item {
    long line;
    char *text;
    size_t len;
    int truth; /* index into the labels, -1 = none */
} item;

static void free_items(item *it, size_t n) {
    for (size_t i = 0; i < n; i++) free(it[i].text);
    free(it);
}

/* Parses the file into items; labels from the file are added to *labels
 * when add_labels. Returns CLI_OK or CLI_ERROR (message printed). */
static int parse_file(const char *path, char *data, size_t len, cli_labels *labels, int add_labels,
                      item **out, size_t *n_out) {
    item *its = NULL;
    size_t n = 0, cap = 0;
    char **truth_text = NULL; /* the label strings, resolved once labels are known */
    long line = 0;
    int rc = CLI_OK;
    for (char *p = data; p < data + len && rc == CLI_OK;) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(data + len - p);
        char *next = p + ll + 1;
        line++;
        size_t k = 0;
        while (k < ll && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k == ll) {
            p = next;
            continue;
        }
        cJSON *o = cJSON_ParseWithLength(p, ll);
        p = next;
        const cJSON *t = o ? cJSON_GetObjectItemCaseSensitive(o, "text") : NULL;
        const cJSON *l = o ? cJSON_GetObjectItemCaseSensitive(o, "label") : NULL;
        if (!cJSON_IsObject(o)) {
            fprintf(stderr, "slm eval-intent: %s:%ld: not a JSON object\n", path, line);
            rc = CLI_ERROR;
        } else if (!cJSON_IsString(t)) {
            fprintf(stderr, "slm eval-intent: %s:%ld: no \"text\" string\n", path, line);
            rc = CLI_ERROR;
        } else if (l && !cJSON_IsString(l) && !cJSON_IsNull(l)) {
            fprintf(stderr, "slm eval-intent: %s:%ld: \"label\" must be a string\n", path, line);
            rc = CLI_ERROR;
        } else if (cJSON_IsString(l) && !l->valuestring[0]) {
            fprintf(stderr, "slm eval-intent: %s:%ld: \"label\" is empty\n", path, line);
            rc = CLI_ERROR;
        }
        if (rc == CLI_OK && n == cap) {
            cap = cap ? cap * 2 : 64;
            item *ni = realloc(its, cap * sizeof *ni);
            char **nt = realloc(truth_text, cap * sizeof *nt);
            if (ni) its = ni;
            if (nt) truth_text = nt;
            if (!ni || !nt) rc = CLI_ERROR;
        }
        if (rc == CLI_OK) {
            item *e = &its[n];
            e->line = line;
            e->len = strlen(t->valuestring);
            e->text = strdup(t->valuestring);
            e->truth = -1;
            truth_text[n] = cJSON_IsString(l) ? strdup(l->valuestring) : NULL;
            n++;
            if (!e->text || (cJSON_IsString(l) && !truth_text[n - 1])) rc = CLI_ERROR;
            if (rc == CLI_OK && add_labels && truth_text[n - 1] &&
                !cli_labels_has(labels, truth_text[n - 1])) {
                int added = 0;
                if (cli_labels_add(labels, truth_text[n - 1], strlen(truth_text[n - 1]), &added))
                    rc = CLI_ERROR;
                else if (!added || strcmp(labels->items[labels->n - 1], truth_text[n - 1]) != 0) {
                    fprintf(stderr,
                            "slm eval-intent: %s:%ld: label '%s' has spaces around it; labels "
                            "are compared as given\n",
                            path, line, truth_text[n - 1]);
                    rc = CLI_ERROR;
                }
            }
        }
        cJSON_Delete(o);
    }
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        if (!truth_text[i]) continue;
        for (size_t k = 0; k < labels->n; k++)
            if (!strcmp(labels->items[k], truth_text[i])) its[i].truth = (int)k;
        if (its[i].truth < 0) {
            fprintf(stderr, "slm eval-intent: %s:%ld: label '%s' is not one of the labels\n", path,
                    its[i].line, truth_text[i]);
            rc = CLI_ERROR;
        }
    }
    for (size_t i = 0; i < n; i++) free(truth_text ? truth_text[i] : NULL);
    free(truth_text);
    if (rc == CLI_OK && n == 0) {
        fprintf(stderr, "slm eval-intent: %s: no lines to classify\n", path);
        rc = CLI_ERROR;
    }
    if (rc != CLI_OK) {
        free_items(its, n);
        return rc;
    }
    *out = its;
    *n_out = n;
    return CLI_OK;
}

int cmd_eval_intent(int argc, char **argv) {
    const char *model_arg = NULL, *config_arg = NULL, *labels_arg = NULL, *labels_file = NULL;
    const char *tmpl_arg = NULL, *file = NULL;
    int json = 0, summary_only = 0;
    cli_frags fr = {.n = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int t;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(EVAL_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("eval-intent", model_arg);
        } else if (!strcmp(a, "--labels")) {
            CLI_VALUE("eval-intent", labels_arg);
        } else if (!strcmp(a, "--labels-file")) {
            CLI_VALUE("eval-intent", labels_file);
        } else if (!strcmp(a, "--prompt-template")) {
            CLI_VALUE("eval-intent", tmpl_arg);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("eval-intent", config_arg);
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--summary-only")) {
            summary_only = 1;
        } else if ((t = cli_threads_option("eval-intent", argc, argv, &i, &fr)) >= 0) {
            if (t) return t;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("eval-intent", "unknown option '%s'", a);
        } else if (file) {
            return cli_usage_error("eval-intent", "one input file only ('%s' and '%s')", file, a);
        } else {
            file = a;
        }
    }
    if (!file) return cli_usage_error("eval-intent", "no input: give FILE.jsonl ('-' = stdin)");
    cli_labels labels;
    int rc = cli_labels_parse("eval-intent", labels_arg, labels_file, &labels);
    if (rc) return rc;
    int from_file = !labels_arg && !labels_file;
    char *tmpl = tmpl_arg ? cli_unescape(tmpl_arg) : NULL;
    size_t len = 0, n = 0;
    char *data = NULL;
    item *its = NULL;
    slm_model *m = NULL;
    slm_session *s = NULL;
    long *tp = NULL, *support = NULL, *predicted = NULL;
    if (tmpl && !strstr(tmpl, "{text}")) {
        rc = cli_usage_error("eval-intent", "--prompt-template must contain {text}");
        goto done;
    }
    data = cli_read_text(file, &len);
    if (!data) {
        rc = CLI_ERROR;
        goto done;
    }
    rc = parse_file(file, data, len, &labels, from_file, &its, &n);
    if (rc) goto done;
    if (labels.n == 0) {
        rc = cli_usage_error("eval-intent",
                             "no labels: give --labels, or lines with \"label\" to take them from");
        goto done;
    }
    tp = calloc(labels.n, sizeof *tp);
    support = calloc(labels.n, sizeof *support);
    predicted = calloc(labels.n, sizeof *predicted);
    if (!tp || !support || !predicted) {
        rc = CLI_ERROR;
        goto done;
    }
    rc = cli_open_session("eval-intent", model_arg, config_arg, &fr, &m, &s);
    if (rc) goto done;
    long labeled = 0, correct = 0;
    for (size_t i = 0; i < n; i++) {
        slm_classify_result r;
        slm_status st = slm_classify(s, its[i].text, its[i].len, (const char *const *)labels.items,
                                     labels.n, tmpl, &r);
        if (st != SLM_OK) {
            char what[64];
            snprintf(what, sizeof what, "%s:%ld", file, its[i].line);
            rc = cli_fail(what, st);
            goto done;
        }
        int pred = (int)r.labels[0].index;
        double prob = r.labels[0].probability;
        slm_classify_result_free(&r);
        int truth = its[i].truth;
        if (truth >= 0) {
            labeled++;
            support[truth]++;
            predicted[pred]++;
            if (pred == truth) {
                correct++;
                tp[truth]++;
            }
        }
        if (summary_only) continue;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "line", (double)its[i].line);
            cJSON_AddStringToObject(o, "label", labels.items[pred]);
            cJSON_AddNumberToObject(o, "probability", prob);
            if (truth >= 0) {
                cJSON_AddStringToObject(o, "true_label", labels.items[truth]);
                cJSON_AddBoolToObject(o, "correct", pred == truth);
            }
            char *js = cJSON_PrintUnformatted(o);
            if (js) printf("%s\n", js);
            free(js);
            cJSON_Delete(o);
        } else if (truth >= 0) {
            printf("line %ld: %s (%.4f)  true: %s  %s\n", its[i].line, labels.items[pred], prob,
                   labels.items[truth], pred == truth ? "ok" : "WRONG");
        } else {
            printf("line %ld: %s (%.4f)\n", its[i].line, labels.items[pred], prob);
        }
        fflush(stdout);
    }

    /* the summary */
    double macro = 0.0;
    int n_macro = 0;
    cJSON *sum = cJSON_CreateObject(), *arr = NULL;
    cJSON_AddNumberToObject(sum, "lines", (double)n);
    cJSON_AddNumberToObject(sum, "labeled", (double)labeled);
    if (labeled > 0) {
        cJSON_AddNumberToObject(sum, "correct", (double)correct);
        cJSON_AddNumberToObject(sum, "accuracy", (double)correct / (double)labeled);
        arr = cJSON_CreateArray();
    }
    if (!json)
        printf("%zu lines, %ld labeled%s", n, labeled, labeled > 0 ? "" : " (no accuracy)\n");
    if (!json && labeled > 0)
        printf(", %ld correct, accuracy %.6f\n%-20s %-9s %-9s %-9s %-7s %s\n", correct,
               (double)correct / (double)labeled, "label", "precision", "recall", "f1", "support",
               "predicted");
    for (size_t k = 0; labeled > 0 && k < labels.n; k++) {
        double p = predicted[k] ? (double)tp[k] / (double)predicted[k] : 0.0;
        double r = support[k] ? (double)tp[k] / (double)support[k] : 0.0;
        double f = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
        if (support[k] || predicted[k]) {
            macro += f;
            n_macro++;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "label", labels.items[k]);
        cJSON_AddNumberToObject(o, "precision", p);
        cJSON_AddNumberToObject(o, "recall", r);
        cJSON_AddNumberToObject(o, "f1", f);
        cJSON_AddNumberToObject(o, "support", (double)support[k]);
        cJSON_AddNumberToObject(o, "predicted", (double)predicted[k]);
        cJSON_AddItemToArray(arr, o);
        if (!json)
            printf("%-20s %-9.6f %-9.6f %-9.6f %-7ld %ld\n", labels.items[k], p, r, f, support[k],
                   predicted[k]);
    }
    if (labeled > 0) {
        macro = n_macro ? macro / n_macro : 0.0;
        cJSON_AddNumberToObject(sum, "macro_f1", macro);
        cJSON_AddItemToObject(sum, "labels", arr);
        if (!json) printf("macro-F1 %.6f over %d labels\n", macro, n_macro);
    }
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "summary", sum);
        char *js = cJSON_PrintUnformatted(o);
        if (js) printf("%s\n", js);
        free(js);
        cJSON_Delete(o);
    } else {
        cJSON_Delete(sum);
    }
done:
    free(tp);
    free(support);
    free(predicted);
    slm_session_free(s);
    slm_model_free(m);
    free_items(its, n);
    free(data);
    free(tmpl);
    cli_labels_free(&labels);
    return rc;
}
