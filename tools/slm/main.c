/* slm: run small language models locally. */
#include <string.h>

#include "cli.h"

/* Every command: its name, its function and one line for the usage. */
static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} COMMANDS[] = {
    {"run", cmd_run, "generate text from a prompt (streams to stdout)"},
    {"chat", cmd_chat, "an interactive conversation with the model's chat template"},
    {"info", cmd_info, "describe a model file (architecture, tensors, metadata)"},
    {"tokenize", cmd_tokenize, "token ids of a text (GGUF model or tokenizer.json)"},
    {"template", cmd_template, "render a conversation with a chat template"},
    {"perplexity", cmd_perplexity, "perplexity of a text file, by llama.cpp's protocol"},
    {"logits", cmd_logits, "write the logits of every prompt position (float32)"},
    {"quantize", cmd_quantize, "quantize an F32/F16/BF16 model (types, mixes, calibration)"},
    {"compare", cmd_compare, "quality of a quantized model against its base"},
    {"lora", cmd_lora, "LoRA adapters: merge one into a model (lora merge)"},
    {"classify", cmd_classify, "rank labels for a text by the model's probability (intents)"},
    {"eval-intent", cmd_eval_intent, "classify a JSON-lines file; accuracy and F1 per label"},
    {"embed", cmd_embed, "embedding vectors of texts (pooled final hidden states)"},
    {"bench", cmd_bench, "speed, latency, memory and energy of a model on this machine"},
    {"bench-tokenize", cmd_bench_tokenize, "encoding speed of tokenizers (MB/s)"},
    {"serve", cmd_serve, "OpenAI-compatible HTTP server (chat, completions, embeddings)"},
    {"keygen", cmd_keygen, "create an Ed25519 key pair for signing models"},
    {"sign", cmd_sign, "write a detached signature FILE.sig"},
    {"verify", cmd_verify, "check a file against its signature FILE.sig"},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static void usage(FILE *out) {
    fprintf(out,
            "slm %s - run small language models locally\n"
            "\n"
            "usage: slm COMMAND [options]\n"
            "\n"
            "commands:\n",
            slm_version());
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-15s %s\n", COMMANDS[i].name, COMMANDS[i].what);
    fprintf(out, "  %-15s %s\n", "version", "print the version");
    fprintf(out, "\n'slm COMMAND --help' describes each command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("slm %s\n", slm_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "slm: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_USAGE;
}
