/* slm template: render a conversation with a model's chat template. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
/* Internal headers (no template access in slm.h yet); both depend only on slm.h. */
#include "../../src/format/gguf.h"
#include "../../src/tokenizer/chat.h"

static const char *TEMPLATE_HELP =
    "usage: slm template (-m MODEL.gguf | --tokenizer-config tokenizer_config.json)\n"
    "                    --messages FILE.json [--add-generation-prompt] [--ids] [options]\n"
    "\n"
    "Renders a conversation with the model's own chat template (GGUF\n"
    "tokenizer.chat_template, or chat_template in tokenizer_config.json) the way\n"
    "Hugging Face transformers' apply_chat_template does, and prints the prompt\n"
    "exactly as rendered (no newline is added).\n"
    "\n"
    "FILE.json is a JSON array of messages {\"role\": ..., \"content\": ...} (more\n"
    "fields such as tool_calls are passed through to the template), or an object\n"
    "{\"messages\": [...], ...} whose other members become template variables\n"
    "(e.g. \"tools\", \"enable_thinking\"). '-' reads standard input.\n"
    "\n"
    "  -m, --model PATH            GGUF model: template, BOS/EOS texts and tokenizer\n"
    "  --tokenizer-config PATH     Hugging Face tokenizer_config.json instead\n"
    "  --tokenizer PATH            tokenizer.json for --ids (default: the one beside\n"
    "                              --tokenizer-config)\n"
    "  --messages FILE             the conversation (required)\n"
    "  --add-generation-prompt     end with the header of the assistant's turn\n"
    "  --builtin NAME              use a built-in format instead of the model's template:\n"
    "                              chatml, llama2, llama3, gemma, mistral, phi3, zephyr\n"
    "                              (-m/--tokenizer-config then only give BOS/EOS texts)\n"
    "  --ids                       print the token ids (one line) instead of the text:\n"
    "                              template text with control tokens parsed, message\n"
    "                              content as plain text\n"
    "  -h, --help                  this help\n"
    "\n"
    "Exit status: 0 on success, 1 when the template or a file fails (the message\n"
    "says why; a template may reject a conversation with raise_exception), 2 on\n"
    "usage errors.\n";

static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%s%d", i ? " " : "", ids[i]);
    printf("\n");
}

/* Splits the messages file into the messages array text and extra variables text. */
static int load_messages(const char *path, char **msgs_json, char **vars_json, int *add_gen) {
    size_t len = 0;
    char *text = cli_read_text(path, &len);
    if (!text) return CLI_ERROR;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) {
        fprintf(stderr, "slm: %s: invalid JSON\n", path);
        return CLI_ERROR;
    }
    cJSON *msgs = root;
    cJSON *vars = NULL;
    if (cJSON_IsObject(root)) {
        msgs = cJSON_DetachItemFromObjectCaseSensitive(root, "messages");
        cJSON *agp = cJSON_GetObjectItemCaseSensitive(root, "add_generation_prompt");
        if (cJSON_IsBool(agp) && cJSON_IsTrue(agp)) *add_gen = 1;
        cJSON_DeleteItemFromObjectCaseSensitive(root, "add_generation_prompt");
        vars = root;
    }
    if (!cJSON_IsArray(msgs)) {
        fprintf(stderr,
                "slm: %s: expected a JSON array of messages or an object with "
                "\"messages\": [...]\n",
                path);
        if (msgs != root) cJSON_Delete(msgs);
        cJSON_Delete(root);
        return CLI_ERROR;
    }
    *msgs_json = cJSON_PrintUnformatted(msgs);
    *vars_json = vars ? cJSON_PrintUnformatted(vars) : NULL;
    int ok = *msgs_json && (!vars || *vars_json);
    if (msgs != root) cJSON_Delete(msgs);
    cJSON_Delete(root);
    if (!ok) {
        fprintf(stderr, "slm: %s: out of memory\n", path);
        free(*msgs_json);
        free(*vars_json);
        return CLI_ERROR;
    }
    return CLI_OK;
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL, *config = NULL, *tokenizer = NULL, *messages = NULL, *builtin = NULL;
    int add_gen = 0, want_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(TEMPLATE_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("template", model);
        } else if (!strcmp(a, "--tokenizer-config")) {
            CLI_VALUE("template", config);
        } else if (!strcmp(a, "--tokenizer")) {
            CLI_VALUE("template", tokenizer);
        } else if (!strcmp(a, "--messages")) {
            CLI_VALUE("template", messages);
        } else if (!strcmp(a, "--builtin")) {
            CLI_VALUE("template", builtin);
        } else if (!strcmp(a, "--add-generation-prompt")) {
            add_gen = 1;
        } else if (!strcmp(a, "--ids")) {
            want_ids = 1;
        } else {
            return cli_usage_error("template", "unknown argument '%s'", a);
        }
    }
    if (!messages) return cli_usage_error("template", "--messages FILE.json is required");
    if (!model && !config && !builtin)
        return cli_usage_error("template", "give -m MODEL.gguf or --tokenizer-config FILE");
    if (model && config)
        return cli_usage_error("template", "give either -m or --tokenizer-config, not both");
    if (builtin && !slm_chat_builtin(builtin))
        return cli_usage_error("template", "unknown built-in format '%s'", builtin);
    if (want_ids && !model && !config && !tokenizer)
        return cli_usage_error("template", "--ids needs a tokenizer: -m, --tokenizer-config or "
                                           "--tokenizer");

    char *msgs_json = NULL, *vars_json = NULL, *tmpl = NULL, *bos = NULL, *eos = NULL;
    char *tok_path = NULL;
    gguf_file *gf = NULL;
    slm_chat_render r;
    memset(&r, 0, sizeof r);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = load_messages(messages, &msgs_json, &vars_json, &add_gen);
    if (rc != CLI_OK) return rc;
    slm_status st = SLM_OK;
    const char *what = "cannot render the chat template";
    if (model) {
        st = gguf_open(model, &gf);
        if (st == SLM_OK) st = slm_chat_special_tokens_from_gguf(gf, &bos, &eos);
        if (st == SLM_OK && !builtin) st = slm_chat_template_from_gguf(gf, &tmpl);
        if (st != SLM_OK) what = "cannot read the model";
    } else if (config) {
        st = slm_chat_template_from_hf_config(config, builtin ? NULL : &tmpl, &bos, &eos);
        if (st != SLM_OK) what = "cannot read the tokenizer config";
    }
    if (st == SLM_OK && !builtin && !tmpl) {
        fprintf(stderr,
                "slm: %s has no chat template; pass --builtin NAME to use a built-in "
                "format\n",
                model ? model : config);
        rc = CLI_ERROR;
        goto done;
    }
    if (st == SLM_OK) {
        const char *t = builtin ? slm_chat_builtin(builtin) : tmpl;
        st = slm_chat_render_json(t, strlen(t), msgs_json, strlen(msgs_json), vars_json, add_gen,
                                  bos, eos, &r);
    }
    if (st == SLM_OK && want_ids) {
        what = "cannot tokenize the rendered prompt";
        if (gf && !tokenizer) {
            st = slm_chat_encode_gguf(gf, &r, &ids, &n_ids);
        } else {
            if (!tokenizer) { /* tokenizer.json beside tokenizer_config.json */
                const char *slash = strrchr(config, '/');
                size_t dl = slash ? (size_t)(slash - config) + 1 : 0;
                tok_path = malloc(dl + sizeof "tokenizer.json");
                if (!tok_path) {
                    fprintf(stderr, "slm: out of memory\n");
                    rc = CLI_ERROR;
                    goto done;
                }
                memcpy(tok_path, config, dl);
                memcpy(tok_path + dl, "tokenizer.json", sizeof "tokenizer.json");
                tokenizer = tok_path;
            }
            st = slm_chat_encode_hf(tokenizer, config, &r, &ids, &n_ids);
        }
    }
    if (st != SLM_OK) {
        rc = cli_fail(what, st);
        goto done;
    }
    if (want_ids) {
        print_ids(ids, n_ids);
    } else if (r.len && fwrite(r.text, 1, r.len, stdout) != r.len) {
        fprintf(stderr, "slm: write error\n");
        rc = CLI_ERROR;
    }
    if (fflush(stdout) != 0) rc = CLI_ERROR;
done:
    free(ids);
    slm_chat_render_free(&r);
    gguf_close(gf);
    free(tok_path);
    free(msgs_json);
    free(vars_json);
    free(tmpl);
    free(bos);
    free(eos);
    return rc;
}
