/* slm lora: LoRA adapter tools (merge). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *LORA_HELP =
    "usage: slm lora merge BASE.gguf ADAPTER OUT.gguf [--scale S] [--type TYPE]\n"
    "                      [--require-signature] [--trust-dir DIR] [--config JSON|FILE]\n"
    "\n"
    "Writes OUT.gguf: BASE with the LoRA adapter baked in. Each matrix the adapter\n"
    "targets becomes W + S*alpha/r * B*A (S*alpha/sqrt(r) for a PEFT rsLoRA\n"
    "adapter; the base matrix dequantized, summed in f32, then stored as TYPE);\n"
    "every other tensor and all metadata are copied unchanged. The output is\n"
    "written to a temporary file and renamed into place; BASE and ADAPTER are\n"
    "never modified.\n"
    "\n"
    "ADAPTER is either llama.cpp's GGUF LoRA format (general.type = adapter,\n"
    "adapter.lora.alpha, tensors NAME.weight.lora_a / .lora_b) or a Hugging Face\n"
    "PEFT adapter: its directory (adapter_config.json + adapter_model.safetensors)\n"
    "or the path of either file. Targets: the layers' attn_q/k/v/output and\n"
    "ffn_gate/up/down matrices (PEFT q/k/v/o_proj, gate/up/down_proj).\n"
    "\n"
    "      --scale S     adapter scale (default 1)\n"
    "      --type TYPE   type of the merged matrices (f32, f16, bf16, q8_0, q4_0, q4_k,\n"
    "                    ...; default: each matrix's type in BASE); the tensors the\n"
    "                    adapter does not touch keep their type\n"
    "      --require-signature  verify BASE and ADAPTER before merging: each needs a\n"
    "                    valid FILE.sig by a key in the trust dir (a PEFT adapter:\n"
    "                    both adapter_model.safetensors.sig and adapter_config.json.sig)\n"
    "      --trust-dir DIR  the trust dir (.pub keys); implies --require-signature\n"
    "      --config JSON|FILE  runtime config; its \"require_signature\" and\n"
    "                    \"trust_dir\" apply as the two flags do\n"
    "  -h, --help        this help\n"
    "\n"
    "To apply an adapter without merging: slm run --lora ADAPTER[:SCALE]. docs/LORA.md\n";

/* require_signature and trust_dir of the config built from --config. */
static int config_trust(const char *config_arg, int *require, char *trust_dir, size_t cap) {
    slm_config *cfg = NULL;
    int rc = cli_build_config("lora merge", config_arg, NULL, 0, &cfg);
    if (rc) return rc;
    char *js = slm_config_to_json(cfg);
    slm_config_free(cfg);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!o) {
        fprintf(stderr, "slm lora merge: out of memory reading the config\n");
        return CLI_ERROR;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "require_signature"))) *require = 1;
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(o, "trust_dir");
    if (cJSON_IsString(td) && td->valuestring[0] && !trust_dir[0])
        snprintf(trust_dir, cap, "%s", td->valuestring);
    cJSON_Delete(o);
    return CLI_OK;
}

static int lora_merge(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    const char *type = NULL, *config_arg = NULL;
    int require = 0;
    char trust_dir[4096] = "";
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
        } else if (!strcmp(a, "--require-signature")) {
            require = 1;
        } else if (!strcmp(a, "--trust-dir")) {
            const char *v;
            CLI_VALUE("lora merge", v);
            if (!*v || strlen(v) >= sizeof trust_dir)
                return cli_usage_error("lora merge", "--trust-dir: bad directory");
            snprintf(trust_dir, sizeof trust_dir, "%s", v);
            require = 1;
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("lora merge", config_arg);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("lora merge", "unknown option '%s'", a);
        } else {
            if (n_pos >= 3) return cli_usage_error("lora merge", "unexpected argument '%s'", a);
            pos[n_pos++] = a;
        }
    }
    if (n_pos != 3) return cli_usage_error("lora merge", "expected BASE.gguf ADAPTER OUT.gguf");
    if (config_arg) {
        int rc = config_trust(config_arg, &require, trust_dir, sizeof trust_dir);
        if (rc) return rc;
    }
    if (require && !trust_dir[0])
        return cli_usage_error("lora merge",
                               "signatures are required but no trust dir is given (--trust-dir "
                               "DIR or the config's \"trust_dir\")");
    slm_status st = slm_adapter_merge_file_ex(pos[0], pos[1], pos[2], (float)scale, type,
                                              require ? trust_dir : NULL);
    if (st != SLM_OK) return cli_fail("lora merge failed", st);
    fprintf(stderr, "slm: wrote %s (%s + %s, scale %g%s)\n", pos[2], pos[0], pos[1], scale,
            require ? ", both signatures verified" : "");
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
