/* Pieces shared by slm classify, slm eval-intent and slm embed. */
#include "cli_intent.h"

#include <stdlib.h>
#include <string.h>

int cli_list_push(cli_labels *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **ni = realloc(l->items, cap * sizeof *ni);
        if (!ni) return -1;
        l->items = ni;
        l->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return -1;
    memcpy(c, s, n);
    c[n] = '\0';
    l->items[l->n++] = c;
    return 0;
}

int cli_labels_add(cli_labels *l, const char *s, size_t n, int *added) {
    if (added) *added = 0;
    while (n && (*s == ' ' || *s == '\t' || *s == '\r')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) n--;
    if (n == 0) return 0;
    if (cli_list_push(l, s, n)) return -1;
    if (added) *added = 1;
    return 0;
}

int cli_labels_has(const cli_labels *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->items[i], s)) return 1;
    return 0;
}

void cli_labels_free(cli_labels *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

int cli_labels_parse(const char *cmd, const char *list, const char *file, cli_labels *out) {
    memset(out, 0, sizeof *out);
    if (list) {
        const char *p = list;
        for (int k = 1;; k++) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            int added = 0;
            if (cli_labels_add(out, p, n, &added)) goto oom;
            if (!added) {
                cli_labels_free(out);
                return cli_usage_error(cmd, "--labels: label %d is empty", k);
            }
            if (!comma) break;
            p = comma + 1;
        }
    }
    if (file) {
        size_t len = 0;
        char *text = cli_read_text(file, &len);
        if (!text) {
            cli_labels_free(out);
            return CLI_ERROR;
        }
        for (char *p = text; p < text + len;) {
            char *nl = memchr(p, '\n', (size_t)(text + len - p));
            size_t n = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
            if (cli_labels_add(out, p, n, NULL)) {
                free(text);
                goto oom;
            }
            p += n + 1;
        }
        free(text);
    }
    for (size_t i = 0; i < out->n; i++)
        for (size_t k = 0; k < i; k++)
            if (!strcmp(out->items[i], out->items[k])) {
                int rc = cli_usage_error(cmd, "label '%s' is given twice", out->items[i]);
                cli_labels_free(out);
                return rc;
            }
    return CLI_OK;
oom:
    cli_labels_free(out);
    fprintf(stderr, "slm %s: out of memory\n", cmd);
    return CLI_ERROR;
}

int cli_open_session(const char *cmd, const char *model_arg, const char *config_arg,
                     const cli_frags *fr, slm_model **m, slm_session **s) {
    *m = NULL;
    *s = NULL;
    char buf[4096];
    const char *path = cli_default_model(model_arg, buf, sizeof buf);
    if (!path) return CLI_USAGE;
    const char *frags[32];
    for (int i = 0; i < fr->n; i++) frags[i] = fr->items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config(cmd, config_arg, frags, fr->n, &cfg);
    if (rc) return rc;
    slm_status st = slm_model_load(path, cfg, m);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
    } else {
        st = slm_session_new(*m, cfg, s);
        if (st != SLM_OK) {
            rc = cli_fail("cannot start a session", st);
            slm_model_free(*m);
            *m = NULL;
        }
    }
    slm_config_free(cfg);
    return rc;
}

int cli_threads_option(const char *cmd, int argc, char **argv, int *i, cli_frags *fr) {
    const char *a = argv[*i];
    if (strcmp(a, "-t") != 0 && strcmp(a, "--threads") != 0) return -1;
    if (*i + 1 >= argc) return cli_usage_error(cmd, "option %s needs a value", a);
    long t = 0;
    if (cli_parse_int(cmd, a, argv[++*i], 0, 256, &t)) return CLI_USAGE;
    char raw[32];
    snprintf(raw, sizeof raw, "%ld", t);
    cli_frag(fr, "threads", raw);
    return CLI_OK;
}

/* \n, \t and \\ in a template given on the command line. malloc'd. */
char *cli_unescape(const char *s) {
    size_t n = strlen(s);
    char *o = malloc(n + 1), *w = o;
    if (!o) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == 'n' || s[i + 1] == 't' || s[i + 1] == '\\')) {
            i++;
            *w++ = s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : '\\';
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return o;
}
