#include "cli_grammar.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_grammar_option(const char *cmd, int argc, char **argv, int *i, cli_grammar *g) {
    const char *a = argv[*i];
    int is_schema = !strcmp(a, "--json-schema"), is_grammar = !strcmp(a, "--grammar");
    int is_object = !strcmp(a, "--json-object");
    if (!is_schema && !is_grammar && !is_object) return -1;
    if (g->schema_file || g->grammar_file || g->json_object)
        return cli_usage_error(cmd, "give one of --json-schema, --grammar and --json-object");
    if (is_object) {
        g->json_object = 1;
        return CLI_OK;
    }
    if (*i + 1 >= argc) return cli_usage_error(cmd, "option %s needs a value", a);
    const char *v = argv[++*i];
    if (is_schema)
        g->schema_file = v;
    else
        g->grammar_file = v;
    return CLI_OK;
}

char *cli_grammar_config_json(const char *cmd, const cli_grammar *g) {
    const char *file = g->schema_file ? g->schema_file : g->grammar_file;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        cli_fail("out of memory", SLM_ERR_NOMEM);
        return NULL;
    }
    char *text = NULL;
    int ok = 1;
    if (g->json_object) {
        cJSON_AddBoolToObject(o, "json_object", 1);
    } else if (file) {
        size_t n = 0;
        text = cli_read_text(file, &n);
        if (!text) {
            ok = 0;
        } else if (g->schema_file) {
            cJSON *s = cJSON_ParseWithLength(text, n);
            if (!s) {
                fprintf(stderr, "slm %s: %s: not valid JSON\n", cmd, file);
                ok = 0;
            } else {
                cJSON_AddItemToObject(o, "json_schema", s);
            }
        } else {
            cJSON_AddStringToObject(o, "grammar", text);
        }
    }
    char *js = ok ? cJSON_PrintUnformatted(o) : NULL;
    if (ok && !js) cli_fail("out of memory", SLM_ERR_NOMEM);
    free(text);
    cJSON_Delete(o);
    return js;
}

int cli_grammar_apply(const char *cmd, const cli_grammar *g, slm_config *cfg) {
    const char *file = g->schema_file ? g->schema_file : g->grammar_file;
    if (!file && !g->json_object) return CLI_OK;
    char *js = cli_grammar_config_json(cmd, g);
    if (!js) return CLI_ERROR;
    slm_status st = slm_config_apply_json(cfg, js, strlen(js));
    free(js);
    if (st != SLM_OK) {
        fprintf(stderr, "slm %s: %s: %s\n", cmd, file ? file : "--json-object", slm_last_error());
        return CLI_ERROR;
    }
    return CLI_OK;
}
