/* slm lora: LoRA adapter tools (merge). */
#include <string.h>

#include "cli.h"

static const char *LORA_HELP =
    "usage: slm lora merge BASE.gguf ADAPTER.gguf OUT.gguf [--scale S] [--type TYPE]\n"
    "\n"
    "Writes OUT.gguf: BASE with the LoRA adapter baked in. Each matrix the adapter\n"
    "targets becomes W + S*alpha/r * B*A (the base matrix dequantized, summed in\n"
    "f32, then stored as TYPE); every other tensor and all metadata are copied\n"
    "unchanged. The output is written to a temporary file and renamed into place;\n"
    "BASE and ADAPTER are never modified.\n"
    "\n"
    "ADAPTER is llama.cpp's GGUF LoRA format (general.type = adapter,\n"
    "adapter.lora.alpha, tensors NAME.weight.lora_a / .lora_b) targeting the\n"
    "layers' attn_q/k/v/output and ffn_gate/up/down matrices. Hugging Face PEFT\n"
    "files are not supported.\n"
    "\n"
    "      --scale S     adapter scale (default 1)\n"
    "      --type TYPE   type of the merged matrices (f32, f16, bf16, q8_0, q4_0, q4_k,\n"
    "                    ...; default: each matrix's type in BASE); the tensors the\n"
    "                    adapter does not touch keep their type\n"
    "  -h, --help        this help\n"
    "\n"
    "To apply an adapter without merging: slm run --lora ADAPTER.gguf[:SCALE].\n";

static int lora_merge(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    const char *type = NULL;
    double scale = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(LORA_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--scale")) {
            const char *v;
            CLI_VALUE("lora merge", v);
            if (cli_parse_float("lora merge", a, v, -1e6, 1e6, &scale)) return CLI_USAGE;
        } else if (!strcmp(a, "--type")) {
            CLI_VALUE("lora merge", type);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("lora merge", "unknown option '%s'", a);
        } else {
            if (n_pos >= 3) return cli_usage_error("lora merge", "unexpected argument '%s'", a);
            pos[n_pos++] = a;
        }
    }
    if (n_pos != 3)
        return cli_usage_error("lora merge", "expected BASE.gguf ADAPTER.gguf OUT.gguf");
    slm_status st = slm_adapter_merge_file(pos[0], pos[1], pos[2], (float)scale, type);
    if (st != SLM_OK) return cli_fail("lora merge failed", st);
    fprintf(stderr, "slm: wrote %s (%s + %s, scale %g)\n", pos[2], pos[0], pos[1], scale);
    return CLI_OK;
}

int cmd_lora(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(LORA_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "merge")) return lora_merge(argc - 1, argv + 1);
    return cli_usage_error("lora", "unknown subcommand '%s' (expected: merge)", argv[1]);
}
