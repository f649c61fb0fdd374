/* slm info: describe a model file. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *INFO_HELP =
    "usage: slm info MODEL [--json] [--tensors] [--meta]\n"
    "       slm info --providers\n"
    "\n"
    "Prints the architecture, hyperparameters, parameter count, tensor types and\n"
    "sizes, tokenizer kind and vocabulary size of a GGUF file. Works on any valid\n"
    "GGUF, also one slm cannot run.\n"
    "\n"
    "  --json       one JSON object (always includes tensors and metadata)\n"
    "  --tensors    list every tensor (name, type, shape, bytes)\n"
    "  --meta       list every metadata key and value\n"
    "  --providers  list the kernel providers this machine can run, best first\n"
    "  -h, --help   this help\n";

static void shape_str(const slm_tensor_info *t, char *buf, size_t cap) {
    size_t at = 0;
    at += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->n_dims && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)t->ne[d]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

static void human_bytes(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30))
        snprintf(buf, cap, "%.2f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20))
        snprintf(buf, cap, "%.1f MiB", (double)b / (1ull << 20));
    else if (b >= 1024)
        snprintf(buf, cap, "%.1f KiB", (double)b / 1024);
    else
        snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

typedef struct type_sum {
    const char *type;
    uint64_t count, bytes, params;
} type_sum;

static int summarize_types(const slm_model *m, type_sum *out, int cap) {
    int n = 0;
    for (size_t i = 0; i < slm_model_n_tensors(m); i++) {
        slm_tensor_info t;
        if (slm_model_tensor(m, i, &t) != SLM_OK) continue;
        uint64_t params = 1;
        for (int d = 0; d < t.n_dims; d++) params *= (uint64_t)t.ne[d];
        int k = 0;
        while (k < n && strcmp(out[k].type, t.type) != 0) k++;
        if (k == n) {
            if (n == cap) continue;
            out[n++] = (type_sum){t.type, 0, 0, 0};
        }
        out[k].count++;
        out[k].bytes += t.nbytes;
        out[k].params += params;
    }
    return n;
}

/* Strings read from the file may be any bytes: JSON gets valid UTF-8. */
static void add_clean(cJSON *o, const char *key, const char *val) {
    char *k = cli_utf8_clean(key, strlen(key));
    char *v = cli_utf8_clean(val, strlen(val));
    if (k && v) cJSON_AddStringToObject(o, k, v);
    free(k);
    free(v);
}

static int print_json(const char *path, const slm_model *m, const slm_model_info *mi) {
    cJSON *o = cJSON_CreateObject();
    add_clean(o, "file", path);
    cJSON_AddNumberToObject(o, "file_bytes", (double)mi->file_bytes);
    add_clean(o, "architecture", mi->arch);
    add_clean(o, "name", mi->name);
    cJSON_AddNumberToObject(o, "parameters", (double)mi->n_params);
    cJSON_AddNumberToObject(o, "weight_bytes", (double)mi->weight_bytes);
    cJSON_AddStringToObject(o, "weight_type", mi->weight_type);
    cJSON *hp = cJSON_AddObjectToObject(o, "hparams");
    cJSON_AddNumberToObject(hp, "n_vocab", mi->n_vocab);
    cJSON_AddNumberToObject(hp, "n_ctx_train", mi->n_ctx_train);
    cJSON_AddNumberToObject(hp, "dim", mi->dim);
    cJSON_AddNumberToObject(hp, "n_layers", mi->n_layers);
    cJSON_AddNumberToObject(hp, "n_heads", mi->n_heads);
    cJSON_AddNumberToObject(hp, "n_kv_heads", mi->n_kv_heads);
    cJSON_AddNumberToObject(hp, "head_dim", mi->head_dim);
    cJSON_AddNumberToObject(hp, "ffn_dim", mi->ffn_dim);
    cJSON_AddNumberToObject(hp, "rope_dim", mi->rope_dim);
    cJSON_AddNumberToObject(hp, "rope_base", mi->rope_base);
    cJSON_AddNumberToObject(hp, "norm_eps", mi->norm_eps);
    cJSON_AddBoolToObject(hp, "tied_output", mi->tied_output);
    cJSON *tk = cJSON_AddObjectToObject(o, "tokenizer");
    cJSON_AddStringToObject(tk, "kind", mi->tokenizer);
    cJSON_AddNumberToObject(tk, "bos", slm_token_bos(m));
    cJSON_AddNumberToObject(tk, "eos", slm_token_eos(m));
    type_sum ts[64];
    int nt = summarize_types(m, ts, 64);
    cJSON *types = cJSON_AddArrayToObject(o, "tensor_types");
    for (int i = 0; i < nt; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "type", ts[i].type);
        cJSON_AddNumberToObject(e, "tensors", (double)ts[i].count);
        cJSON_AddNumberToObject(e, "parameters", (double)ts[i].params);
        cJSON_AddNumberToObject(e, "bytes", (double)ts[i].bytes);
        cJSON_AddItemToArray(types, e);
    }
    cJSON *tensors = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < slm_model_n_tensors(m); i++) {
        slm_tensor_info t;
        if (slm_model_tensor(m, i, &t) != SLM_OK) continue;
        cJSON *e = cJSON_CreateObject();
        add_clean(e, "name", t.name);
        cJSON_AddStringToObject(e, "type", t.type);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t.n_dims; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t.ne[d]));
        cJSON_AddNumberToObject(e, "bytes", (double)t.nbytes);
        cJSON_AddNumberToObject(e, "offset", (double)t.offset);
        cJSON_AddItemToArray(tensors, e);
    }
    cJSON *meta = cJSON_AddObjectToObject(o, "metadata");
    char *val = malloc(65536);
    for (size_t i = 0; val && i < slm_model_n_meta(m); i++) {
        const char *key = NULL;
        if (slm_model_meta(m, i, &key, val, 65536) != SLM_OK) continue;
        add_clean(meta, key, val);
    }
    free(val);
    char *s = cJSON_Print(o);
    if (s) puts(s);
    free(s);
    cJSON_Delete(o);
    return CLI_OK;
}

static int print_providers(void) {
    const char *const *p = slm_providers_available();
    printf("providers available on this machine (best first):");
    for (int i = 0; p[i]; i++) printf(" %s", p[i]);
    printf("\n");
    return CLI_OK;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, tensors = 0, meta = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(INFO_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--tensors")) {
            tensors = 1;
        } else if (!strcmp(a, "--meta")) {
            meta = 1;
        } else if (!strcmp(a, "--providers")) {
            return print_providers();
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("info", path);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("info", "unknown option '%s'", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_usage_error("info", "more than one model given");
        }
    }
    char buf[4096];
    path = cli_default_model(path, buf, sizeof buf);
    if (!path) return CLI_USAGE;
    slm_model *m = NULL;
    slm_status st = slm_model_inspect(path, &m);
    if (st != SLM_OK) return cli_fail("cannot read model", st);
    slm_model_info mi;
    slm_model_get_info(m, &mi);
    if (json) {
        int rc = print_json(path, m, &mi);
        slm_model_free(m);
        return rc;
    }
    char hb[64], wb[64];
    human_bytes(mi.file_bytes, hb, sizeof hb);
    human_bytes(mi.weight_bytes, wb, sizeof wb);
    printf("file:          %s (%s)\n", path, hb);
    printf("architecture:  %s%s%s%s\n", mi.arch, mi.name[0] ? " (" : "", mi.name,
           mi.name[0] ? ")" : "");
    printf("parameters:    %llu (%.2f M)\n", (unsigned long long)mi.n_params,
           (double)mi.n_params / 1e6);
    printf("layers:        %d, embedding %d, heads %d (kv heads %d, head size %d), ffn %d\n",
           mi.n_layers, mi.dim, mi.n_heads, mi.n_kv_heads, mi.head_dim, mi.ffn_dim);
    printf("context:       %d tokens (trained)\n", mi.n_ctx_train);
    printf("rope:          base %g, %d dims per head; rms norm eps %g\n", (double)mi.rope_base,
           mi.rope_dim, (double)mi.norm_eps);
    printf("output:        %s\n",
           mi.tied_output ? "tied to the token embedding" : "separate matrix");
    printf("tokenizer:     %s, vocab %d, bos %d, eos %d\n", mi.tokenizer, mi.n_vocab,
           slm_token_bos(m), slm_token_eos(m));
    printf("weights:       %s, mostly %s\n", wb, mi.weight_type);
    type_sum ts[64];
    int nt = summarize_types(m, ts, 64);
    printf("tensor types: ");
    for (int i = 0; i < nt; i++) {
        human_bytes(ts[i].bytes, hb, sizeof hb);
        printf("%s %s x %llu (%s)", i ? "," : "", ts[i].type, (unsigned long long)ts[i].count, hb);
    }
    printf("\n");
    if (tensors) {
        printf("tensors (%zu):\n", slm_model_n_tensors(m));
        for (size_t i = 0; i < slm_model_n_tensors(m); i++) {
            slm_tensor_info t;
            if (slm_model_tensor(m, i, &t) != SLM_OK) continue;
            char sh[128];
            shape_str(&t, sh, sizeof sh);
            printf("  %-32s %-6s %-18s %llu bytes\n", t.name, t.type, sh,
                   (unsigned long long)t.nbytes);
        }
    }
    if (meta) {
        printf("metadata (%zu keys):\n", slm_model_n_meta(m));
        char val[512];
        for (size_t i = 0; i < slm_model_n_meta(m); i++) {
            const char *key = NULL;
            if (slm_model_meta(m, i, &key, val, sizeof val) != SLM_OK) continue;
            printf("  %s = %s\n", key, val);
        }
    }
    slm_model_free(m);
    return CLI_OK;
}
