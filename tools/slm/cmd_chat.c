/* slm chat: an interactive conversation using the model's chat template. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *CHAT_HELP =
    "usage: slm chat [-m MODEL] [--system TEXT] [options]\n"
    "\n"
    "An interactive conversation: type a message and press Enter; the reply\n"
    "streams back. The conversation is formatted with the model's own chat\n"
    "template (GGUF tokenizer.chat_template); when the model has none, or it\n"
    "cannot be rendered, a built-in format matching the vocabulary is used and\n"
    "a line on stderr names it. Message text is never parsed for control\n"
    "tokens. End with Ctrl-D (end of input) or '/exit'; '/reset'\n"
    "starts over.\n"
    "\n"
    "  -m, --model PATH     GGUF model (default as for 'slm run')\n"
    "  --system TEXT        a system message to start the conversation with\n"
    "  -n, --max-tokens N   tokens per reply at most (default 512)\n"
    "  --temp T             temperature (default 0.8)\n"
    "  --top-k K, --top-p P, --min-p P, --repeat-penalty R\n"
    "                       sampling filters, as for 'slm run'\n"
    "  --seed S             sampling seed (default 0)\n"
    "  -t, --threads N      threads, 0 = one per core\n"
    "  -c, --ctx N          context window (default: the model's, at most 4096)\n"
    "  --keep N             tokens kept at the start when the context is trimmed\n"
    "  --config JSON|FILE   runtime config; flags override it\n"
    "  -h, --help           this help\n";

#define CHAT_MAX_TURNS 1024
#define CHAT_MAX_LINE (1 << 20)

typedef struct reply_buf {
    char *s;
    size_t n, cap;
} reply_buf;

static int on_text(void *user, const char *text, size_t len) {
    reply_buf *b = user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (b->n + len + 1 > b->cap) {
        size_t nc = (b->n + len + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) return 1;
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, text, len);
    b->n += len;
    b->s[b->n] = '\0';
    return 0;
}

int cmd_chat(int argc, char **argv) {
    const char *model_arg = NULL, *config_arg = NULL, *system = NULL;
    cli_frags fr = {.n = 0};
    cli_frag(&fr, "max_tokens", "512");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(CHAT_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("chat", model_arg);
        } else if (!strcmp(a, "--system")) {
            CLI_VALUE("chat", system);
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("chat", config_arg);
        } else {
            int used = cli_number_option("chat", argc, argv, &i, &fr);
            if (used == CLI_USAGE) return CLI_USAGE;
            if (used != CLI_OK) return cli_usage_error("chat", "unknown option '%s'", a);
        }
    }
    char buf[4096];
    const char *path = cli_default_model(model_arg, buf, sizeof buf);
    if (!path) return CLI_USAGE;
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    slm_config *cfg = NULL;
    int rc = cli_build_config("chat", config_arg, frags, fr.n, &cfg);
    if (rc) return rc;

    slm_model *m = NULL;
    slm_session *s = NULL;
    slm_chat_message *msgs = calloc(CHAT_MAX_TURNS, sizeof *msgs);
    char **owned = calloc(CHAT_MAX_TURNS, sizeof *owned);
    char *line = malloc(CHAT_MAX_LINE);
    size_t n_msgs = 0;
    const char *announced = NULL;
    slm_status st = slm_model_load(path, cfg, &m);
    if (st != SLM_OK) {
        rc = cli_fail("cannot load model", st);
        goto done;
    }
    st = slm_session_new(m, cfg, &s);
    if (st != SLM_OK || !msgs || !owned || !line) {
        rc = cli_fail("cannot start a session", st);
        goto done;
    }
    if (system) msgs[n_msgs++] = (slm_chat_message){"system", system};
    size_t base = n_msgs;
    for (;;) {
        fputs("> ", stderr);
        if (!fgets(line, CHAT_MAX_LINE, stdin)) break;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (!strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            for (size_t i = base; i < n_msgs; i++) free(owned[i]);
            n_msgs = base;
            continue;
        }
        if (len == 0) continue;
        if (n_msgs + 2 > CHAT_MAX_TURNS) {
            fprintf(stderr, "slm: the conversation is too long; /reset to start over\n");
            continue;
        }
        owned[n_msgs] = strdup(line);
        msgs[n_msgs] = (slm_chat_message){"user", owned[n_msgs]};
        n_msgs++;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        const char *fmt = NULL;
        st = slm_chat_prompt(m, msgs, n_msgs, 1, NULL, NULL, &ids, &n_ids, &fmt);
        if (st != SLM_OK) {
            rc = cli_fail("cannot format the conversation", st);
            goto done;
        }
        if (fmt && strcmp(fmt, "model") != 0 && announced != fmt) {
            fprintf(stderr, "slm: using the built-in \"%s\" chat format\n", fmt);
            announced = fmt;
        }
        reply_buf reply = {NULL, 0, 0};
        slm_result res;
        st = slm_generate_tokens(s, ids, n_ids, on_text, &reply, &res);
        free(ids);
        fputc('\n', stdout);
        if (res.n_trims > 0)
            fprintf(stderr, "slm: the context was full; the oldest part of the conversation was "
                            "dropped\n");
        if (st != SLM_OK) {
            free(reply.s);
            rc = cli_fail("generation failed", st);
            goto done;
        }
        owned[n_msgs] = reply.s ? reply.s : strdup("");
        msgs[n_msgs] = (slm_chat_message){"assistant", owned[n_msgs]};
        n_msgs++;
    }
done:
    for (size_t i = 0; owned && i < n_msgs; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    slm_session_free(s);
    slm_model_free(m);
    slm_config_free(cfg);
    return rc;
}
