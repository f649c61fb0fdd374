/* Hugging Face PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors.
 *
 * Tensors "base_model.model.model.layers.<i>.self_attn.<q|k|v|o>_proj.lora_A.weight"
 * (and lora_B, and mlp.<gate|up|down>_proj) map to the GGUF base matrices
 * blk.<i>.attn_q/k/v/output and ffn_gate/up/down. PyTorch stores lora_A as
 * [r, in] and lora_B as [out, r], row-major: the same layout as slm_lora_mat.
 *
 * llama.cpp's converter permutes the rows of q_proj and k_proj of llama
 * models so that RoPE pairs adjacent dimensions: per head of hd rows, GGUF
 * row 2i + a holds HF row a*hd/2 + i (a in {0, 1}), with n_heads heads for q
 * and n_kv_heads for k. The rows of B (the outputs) are permuted the same
 * way here. qwen2 GGUF files keep the HF order (NeoX RoPE). */
#include <cjson/cJSON.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "format/safetensors.h"
#include "model/lora.h"
#include "trust/trust.h"

#define PEFT_MAX_CONFIG (1u << 20)
#define PEFT_CONFIG "adapter_config.json"
#define PEFT_WEIGHTS "adapter_model.safetensors"

/* HF module names of the slots, in slm_lora_slot order, and their parent. */
static const char *const k_modules[SLM_LORA_N_SLOTS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};
static const char *const k_parents[SLM_LORA_N_SLOTS] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp",
};

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcmp(s + n - m, suf);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int slm_lora_is_peft_path(const char *path) {
    struct stat sb;
    if (!path) return 0;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return 1;
    return has_suffix(path, ".safetensors") || !strcmp(base_name(path), PEFT_CONFIG);
}

/* dir/name, malloc'd. */
static char *join(const char *dir, size_t dir_len, const char *name) {
    size_t n = dir_len + 1 + strlen(name) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%.*s/%s", (int)dir_len, dir, name);
    return s;
}

typedef struct peft_paths {
    char *config, *weights;
} peft_paths;

static slm_status resolve(const char *path, peft_paths *p) {
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        size_t n = strlen(path);
        while (n > 1 && path[n - 1] == '/') n--;
        p->config = join(path, n, PEFT_CONFIG);
        p->weights = join(path, n, PEFT_WEIGHTS);
    } else {
        const char *b = base_name(path);
        size_t dl = b == path ? 1 : (size_t)(b - path - 1);
        const char *dir = b == path ? "." : path;
        if (b != path && dl == 0) dl = 1; /* "/x" */
        int is_cfg = !strcmp(b, PEFT_CONFIG);
        p->config = is_cfg ? slm_strndup(path, strlen(path)) : join(dir, dl, PEFT_CONFIG);
        p->weights = is_cfg ? join(dir, dl, PEFT_WEIGHTS) : slm_strndup(path, strlen(path));
    }
    if (!p->config || !p->weights) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    return SLM_OK;
}

#define PEFT_MAX_PATTERNS 256

/* rank_pattern / alpha_pattern: keys tried in order, as PEFT's
 * get_pattern_key does: the first key K such that the module name matches
 * (.*\.)?(K)$ from its start wins. */
typedef struct peft_pattern {
    int n;
    regex_t re[PEFT_MAX_PATTERNS];
    double value[PEFT_MAX_PATTERNS];
    char *key[PEFT_MAX_PATTERNS];
} peft_pattern;

typedef struct peft_config {
    int32_t r;
    float alpha;
    int rslora;
    peft_pattern ranks, alphas;
} peft_config;

static void pattern_free(peft_pattern *p) {
    for (int i = 0; i < p->n; i++) {
        regfree(&p->re[i]);
        free(p->key[i]);
    }
    p->n = 0;
}

/* Python-only regular expression syntax (escapes like \d, groups "(?",
 * lazy quantifiers) that POSIX extended expressions would read otherwise. */
static int python_only(const char *k) {
    for (const char *c = k; *c; c++) {
        if (c[0] == '\\') {
            if (!c[1] || !strchr(".[](){}*+?|^$\\", c[1])) return 1;
            c++;
        } else if (c[0] == '(' && c[1] == '?') {
            return 1;
        } else if ((c[0] == '*' || c[0] == '+' || c[0] == '?' || c[0] == '}') && c[1] == '?') {
            return 1;
        }
    }
    return 0;
}

/* Parses {"regex": number, ...}; integer: values must be integers 1..MAX_RANK. */
static slm_status parse_pattern(const char *path, const cJSON *obj, const char *what, int integer,
                                peft_pattern *out) {
    if (!obj || cJSON_IsNull(obj)) return SLM_OK;
    if (!cJSON_IsObject(obj))
        return slm_fail(SLM_ERR_FORMAT, "%s: \"%s\" must be an object", path, what);
    const cJSON *it = NULL;
    cJSON_ArrayForEach(it, obj) {
        const char *k = it->string;
        double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        if (integer ? !(v >= 1 && v <= SLM_LORA_MAX_RANK && floor(v) == v)
                    : !(isfinite(v) && v > 0 && v <= 1e9))
            return slm_fail(SLM_ERR_FORMAT, "%s: \"%s\" entry '%.100s' must be %s", path, what, k,
                            integer ? "an integer rank" : "a positive number");
        if (out->n >= PEFT_MAX_PATTERNS)
            return slm_fail(SLM_ERR_UNSUPPORTED, "%s: \"%s\" has more than %d entries", path, what,
                            PEFT_MAX_PATTERNS);
        if (!*k || strlen(k) > 1024 || python_only(k))
            return slm_fail(SLM_ERR_UNSUPPORTED,
                            "%s: \"%s\" key '%.100s': this regular expression is not supported "
                            "(Python-only syntax such as \\d, (?...) or lazy quantifiers)",
                            path, what, k);
        size_t n = strlen(k) + 16;
        char *re = malloc(n);
        if (!re) return slm_fail(SLM_ERR_NOMEM, "out of memory");
        snprintf(re, n, "^(.*\\.)?(%s)$", k);
        int rc = regcomp(&out->re[out->n], re, REG_EXTENDED | REG_NOSUB);
        free(re);
        if (rc != 0)
            return slm_fail(SLM_ERR_UNSUPPORTED,
                            "%s: \"%s\" key '%.100s' is not a regular expression slm can use", path,
                            what, k);
        out->key[out->n] = slm_strndup(k, strlen(k));
        out->value[out->n] = v;
        out->n++;
        if (!out->key[out->n - 1]) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    return SLM_OK;
}

/* The value of the first key matching `module`, or `dflt`. */
static double pattern_value(const peft_pattern *p, const char *module, double dflt) {
    for (int i = 0; i < p->n; i++)
        if (regexec(&p->re[i], module, 0, NULL, 0) == 0) return p->value[i];
    return dflt;
}

static int supported_module(const char *m) {
    const char *last = strrchr(m, '.');
    last = last ? last + 1 : m;
    for (int s = 0; s < SLM_LORA_N_SLOTS; s++)
        if (!strcmp(last, k_modules[s])) return 1;
    return 0;
}

static int non_empty(const cJSON *j) {
    return j && !cJSON_IsNull(j) && !(cJSON_IsFalse(j)) &&
           !((cJSON_IsObject(j) || cJSON_IsArray(j)) && cJSON_GetArraySize(j) == 0);
}

static slm_status parse_config(const char *path, const char *buf, size_t n, peft_config *pc) {
    slm_status st = SLM_OK;
    cJSON *root = cJSON_ParseWithLength(buf, n);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return slm_fail(SLM_ERR_FORMAT, "%s: not a JSON object", path);
    }
    /* Python's json keeps the last of duplicate keys, cJSON finds the first:
     * refuse them rather than read the file differently from PEFT */
    for (const cJSON *a = root->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (a->string && b->string && !strcmp(a->string, b->string)) {
                st = slm_fail(SLM_ERR_FORMAT, "%s: key \"%.100s\" appears twice", path, a->string);
                goto cleanup;
            }
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, "peft_type");
    if (j && (!cJSON_IsString(j) || strcmp(j->valuestring, "LORA"))) {
        st = slm_fail(SLM_ERR_UNSUPPORTED, "%s: peft_type is not \"LORA\"", path);
        goto cleanup;
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "r");
    if (!cJSON_IsNumber(j) || j->valuedouble < 1 || j->valuedouble > SLM_LORA_MAX_RANK ||
        floor(j->valuedouble) != j->valuedouble) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: \"r\" must be an integer in 1..%d%s", path,
                      SLM_LORA_MAX_RANK, j ? "" : " (it is missing)");
        goto cleanup;
    }
    pc->r = (int32_t)j->valuedouble;
    j = cJSON_GetObjectItemCaseSensitive(root, "lora_alpha");
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || j->valuedouble <= 0 ||
        j->valuedouble > 1e9) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: \"lora_alpha\" must be a positive number%s", path,
                      j ? "" : " (it is missing)");
        goto cleanup;
    }
    pc->alpha = (float)j->valuedouble;
    j = cJSON_GetObjectItemCaseSensitive(root, "use_rslora");
    if (j && !cJSON_IsBool(j) && !cJSON_IsNull(j)) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: \"use_rslora\" must be true or false", path);
        goto cleanup;
    }
    pc->rslora = cJSON_IsTrue(j);
    j = cJSON_GetObjectItemCaseSensitive(root, "bias");
    if (j && !cJSON_IsNull(j) && (!cJSON_IsString(j) || strcmp(j->valuestring, "none"))) {
        st = slm_fail(SLM_ERR_UNSUPPORTED, "%s: \"bias\" is %s%s%s; only \"none\" is supported",
                      path, cJSON_IsString(j) ? "\"" : "",
                      cJSON_IsString(j) ? j->valuestring : "not a string",
                      cJSON_IsString(j) ? "\"" : "");
        goto cleanup;
    }
    SLM_CHECK(parse_pattern(path, cJSON_GetObjectItemCaseSensitive(root, "rank_pattern"),
                            "rank_pattern", 1, &pc->ranks));
    SLM_CHECK(parse_pattern(path, cJSON_GetObjectItemCaseSensitive(root, "alpha_pattern"),
                            "alpha_pattern", 0, &pc->alphas));
    static const char *const unsupported[] = {"use_dora", "modules_to_save", "lora_bias"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        if (non_empty(cJSON_GetObjectItemCaseSensitive(root, unsupported[i]))) {
            st = slm_fail(SLM_ERR_UNSUPPORTED, "%s: \"%s\" is set; it is not supported", path,
                          unsupported[i]);
            goto cleanup;
        }
    }
    j = cJSON_GetObjectItemCaseSensitive(root, "fan_in_fan_out");
    if (cJSON_IsTrue(j))
        slm_log(SLM_LOG_WARN,
                "%s: fan_in_fan_out is true, but these projections are Linear layers (PEFT "
                "ignores it for them too); the tensor shapes are checked as [r, in] and [out, r]",
                path);
    j = cJSON_GetObjectItemCaseSensitive(root, "target_modules");
    if (cJSON_IsArray(j)) {
        const cJSON *m = NULL;
        cJSON_ArrayForEach(m, j) {
            if (!cJSON_IsString(m)) {
                st = slm_fail(SLM_ERR_FORMAT, "%s: \"target_modules\" must hold strings", path);
                goto cleanup;
            }
            if (!supported_module(m->valuestring)) {
                st = slm_fail(SLM_ERR_UNSUPPORTED,
                              "%s: target module '%.100s' is not supported (only q_proj, k_proj, "
                              "v_proj, o_proj, gate_proj, up_proj, down_proj)",
                              path, m->valuestring);
                goto cleanup;
            }
        }
    } else if (j && !cJSON_IsString(j) && !cJSON_IsNull(j)) {
        /* a string is a regular expression (or "all-linear"): the tensors decide */
        st = slm_fail(SLM_ERR_FORMAT, "%s: \"target_modules\" must be a list or a string", path);
        goto cleanup;
    }
cleanup:
    cJSON_Delete(root);
    return st;
}

/* "[base_model.model.]model.layers.<l>.<parent>.<module>.lora_<A|B>.weight"
 * -> slot, layer, *is_b; -1 if the name is not of that form. */
static int parse_name(const char *name, int32_t n_layers, int32_t *layer, int *is_b,
                      size_t *module_len) {
    const char *p = name;
    if (!strncmp(p, "base_model.model.", 17)) p += 17;
    const char *lora = strstr(p, ".lora_");
    if (!lora) return -1;
    *module_len = (size_t)(lora - name);
    if (!strcmp(lora, ".lora_A.weight"))
        *is_b = 0;
    else if (!strcmp(lora, ".lora_B.weight"))
        *is_b = 1;
    else
        return -1;
    if (strncmp(p, "model.layers.", 13) != 0) return -1;
    p += 13;
    if (*p < '0' || *p > '9') return -1;
    char *end = NULL;
    long l = strtol(p, &end, 10);
    if (*end != '.' || l < 0 || l >= n_layers) return l >= n_layers && *end == '.' ? -2 : -1;
    for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
        size_t np = strlen(k_parents[s]), nm = strlen(k_modules[s]);
        const char *q = end + 1;
        if (!strncmp(q, k_parents[s], np) && q[np] == '.' &&
            !strncmp(q + np + 1, k_modules[s], nm) && q + np + 1 + nm == lora) {
            *layer = (int32_t)l;
            return s;
        }
    }
    return -1;
}

/* Permutes the rows of b ([n_out][r]) from HF order to llama.cpp's: per head
 * of hd rows, row 2i + a <- row a*hd/2 + i. */
static slm_status permute_rows(const char *path, const char *what, float *b, int64_t n_out,
                               int32_t r, int32_t n_head) {
    if (n_head <= 0 || n_out % n_head != 0 || (n_out / n_head) % 2 != 0)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s: %lld rows do not split into %d even-sized heads",
                        path, what, (long long)n_out, (int)n_head);
    int64_t hd = n_out / n_head;
    float *tmp = slm_alloc_aligned((size_t)n_out * (size_t)r, sizeof(float));
    if (!tmp) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    memcpy(tmp, b, (size_t)n_out * (size_t)r * sizeof(float));
    for (int64_t g = 0; g < n_out; g++) {
        int64_t h = g / hd, w = g % hd;
        int64_t src = h * hd + (w % 2) * (hd / 2) + w / 2;
        memcpy(b + (size_t)g * (size_t)r, tmp + (size_t)src * (size_t)r, (size_t)r * sizeof(float));
    }
    free(tmp);
    return SLM_OK;
}

static slm_status load_tensors(const slm_model *base, const char *path, const st_file *f,
                               const peft_config *pc, slm_adapter *ad) {
    ad->n_layers = base->hp.n_layers;
    ad->alpha = pc->alpha;
    ad->mats = slm_calloc((size_t)ad->n_layers * SLM_LORA_N_SLOTS, sizeof *ad->mats);
    if (!ad->mats) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    const st_tensor **pairs =
        slm_calloc((size_t)ad->n_layers * SLM_LORA_N_SLOTS * 2, sizeof *pairs);
    if (!pairs) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    slm_status st = SLM_OK;
    size_t n_floats = 0;
    /* pass 1: names, pairs, dtypes and shapes */
    for (size_t i = 0; i < st_n_tensors(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        int32_t layer = 0;
        int is_b = 0;
        size_t ml = 0;
        int slot = parse_name(t->name, base->hp.n_layers, &layer, &is_b, &ml);
        if (slot == -2) {
            st = slm_fail(SLM_ERR_FORMAT,
                          "%s: tensor '%.200s' is for a layer the base model %s "
                          "lacks (it has %d layers)",
                          path, t->name, base->path, (int)base->hp.n_layers);
            goto cleanup;
        }
        if (slot < 0) {
            if (strstr(t->name, ".lora_"))
                st = slm_fail(SLM_ERR_UNSUPPORTED,
                              "%s: tensor '%.200s' targets module '%.*s', which is not supported "
                              "(only model.layers.N.self_attn.{q,k,v,o}_proj and "
                              "model.layers.N.mlp.{gate,up,down}_proj)",
                              path, t->name, (int)(ml < 200 ? ml : 200), t->name);
            else
                st = slm_fail(SLM_ERR_UNSUPPORTED,
                              "%s: tensor '%.200s' is not a LoRA tensor (names end in "
                              ".lora_A.weight or .lora_B.weight)",
                              path, t->name);
            goto cleanup;
        }
        size_t k = ((size_t)layer * SLM_LORA_N_SLOTS + (size_t)slot) * 2 + (size_t)is_b;
        if (pairs[k]) {
            st = slm_fail(SLM_ERR_FORMAT,
                          "%s: tensors '%.200s' and '%.200s' both target "
                          "blk.%d.%s",
                          path, pairs[k]->name, t->name, (int)layer, slm_lora_slot_name(slot));
            goto cleanup;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16) {
            st = slm_fail(SLM_ERR_UNSUPPORTED,
                          "%s: tensor '%.200s' has dtype %s; adapters must "
                          "be F32, F16 or BF16",
                          path, t->name, st_dtype_name(t->dtype));
            goto cleanup;
        }
        if (t->n_dims != 2) {
            st = slm_fail(SLM_ERR_FORMAT, "%s: tensor '%.200s' must be 2-D (it has %u dimensions)",
                          path, t->name, t->n_dims);
            goto cleanup;
        }
        pairs[k] = t;
    }
    for (int32_t l = 0; l < ad->n_layers; l++) {
        for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
            size_t k = ((size_t)l * SLM_LORA_N_SLOTS + (size_t)s) * 2;
            const st_tensor *a = pairs[k], *b = pairs[k + 1];
            if (!a && !b) continue;
            if (!a || !b) {
                st = slm_fail(SLM_ERR_FORMAT, "%s: tensor '%.200s' has no %s partner", path,
                              (a ? a : b)->name, a ? "lora_B" : "lora_A");
                goto cleanup;
            }
            const slm_matrix *W = slm_lora_base_matrix(base, l, s);
            uint64_t r = a->shape[0];
            if (a->shape[1] != (uint64_t)W->n_cols || b->shape[0] != (uint64_t)W->n_rows ||
                b->shape[1] != r || r == 0 || r > SLM_LORA_MAX_RANK) {
                st = slm_fail(SLM_ERR_FORMAT,
                              "%s: '%.200s' has shape [%llu, %llu] and its lora_B [%llu, %llu]; "
                              "the base matrix blk.%d.%s.weight (%lld -> %lld) needs lora_A "
                              "[r, %lld] and lora_B [%lld, r]",
                              path, a->name, (unsigned long long)a->shape[0],
                              (unsigned long long)a->shape[1], (unsigned long long)b->shape[0],
                              (unsigned long long)b->shape[1], (int)l, slm_lora_slot_name(s),
                              (long long)W->n_cols, (long long)W->n_rows, (long long)W->n_cols,
                              (long long)W->n_rows);
                goto cleanup;
            }
            /* the module's name in the model, as rank_pattern/alpha_pattern match it */
            char module[256];
            const char *mn = a->name;
            if (!strncmp(mn, "base_model.model.", 17)) mn += 17;
            const char *lo = strstr(mn, ".lora_");
            snprintf(module, sizeof module, "%.*s", (int)(lo ? lo - mn : 0), mn);
            double want_r = pattern_value(&pc->ranks, module, pc->r);
            double alpha = pattern_value(&pc->alphas, module, pc->alpha);
            if ((double)r != want_r) {
                st = slm_fail(SLM_ERR_FORMAT,
                              "%s: '%.200s' has rank %llu but adapter_config.json says r = %d%s",
                              path, a->name, (unsigned long long)r, (int)want_r,
                              pc->ranks.n ? " (after rank_pattern)" : "");
                goto cleanup;
            }
            slm_lora_mat *e = &ad->mats[(size_t)l * SLM_LORA_N_SLOTS + (size_t)s];
            e->r = (int32_t)r;
            e->n_in = W->n_cols;
            e->n_out = W->n_rows;
            e->mult = (float)(pc->rslora ? alpha / sqrt((double)r) : alpha / (double)r);
            n_floats += (size_t)r * (size_t)(W->n_cols + W->n_rows);
            if (e->r > ad->max_r) ad->max_r = e->r;
            ad->n_targets++;
        }
    }
    if (ad->n_targets == 0) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: the adapter has no lora_A/lora_B tensors", path);
        goto cleanup;
    }
    /* pass 2: to f32, B's rows in the base model's order */
    ad->store = slm_alloc_aligned(n_floats, sizeof(float));
    if (!ad->store) {
        st = slm_fail(SLM_ERR_NOMEM, "%s: cannot allocate %zu floats for the adapter", path,
                      n_floats);
        goto cleanup;
    }
    float *cur = ad->store;
    for (int32_t l = 0; l < ad->n_layers; l++) {
        for (int s = 0; s < SLM_LORA_N_SLOTS; s++) {
            slm_lora_mat *e = &ad->mats[(size_t)l * SLM_LORA_N_SLOTS + (size_t)s];
            if (e->r == 0) continue;
            size_t k = ((size_t)l * SLM_LORA_N_SLOTS + (size_t)s) * 2;
            size_t na = (size_t)e->r * (size_t)e->n_in, nb = (size_t)e->r * (size_t)e->n_out;
            SLM_CHECK(st_to_f32(pairs[k], cur, na));
            e->a = cur;
            cur += na;
            SLM_CHECK(st_to_f32(pairs[k + 1], cur, nb));
            if (base->arch == SLM_ARCH_LLAMA && (s == SLM_LORA_Q || s == SLM_LORA_K)) {
                char what[64];
                snprintf(what, sizeof what, "blk.%d.%s", (int)l, slm_lora_slot_name(s));
                SLM_CHECK(permute_rows(path, what, cur, e->n_out, e->r,
                                       s == SLM_LORA_Q ? base->hp.n_heads : base->hp.n_kv_heads));
            }
            e->b = cur;
            cur += nb;
        }
    }
cleanup:
    free(pairs);
    return st;
}

slm_status slm_lora_load_peft(const slm_model *base, const char *path, const char *trust_dir,
                              slm_adapter **out) {
    *out = NULL;
    if (base->arch != SLM_ARCH_LLAMA && base->arch != SLM_ARCH_QWEN2)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: PEFT adapters are supported for llama and qwen2 models, not %s", path,
                        base->arch_name);
    slm_status st = SLM_OK;
    peft_paths pp = {0};
    char *cfg = NULL;
    size_t cfg_n = 0;
    slm_mapped_file map = {0};
    map.fd = -1;
    st_file *f = NULL;
    peft_config *pc = slm_calloc(1, sizeof *pc); /* large: the compiled patterns */
    slm_adapter *ad = slm_calloc(1, sizeof *ad);
    if (!ad || !pc) {
        free(ad);
        free(pc);
        return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    SLM_CHECK(resolve(path, &pp));
    ad->path = slm_strndup(path, strlen(path));
    if (!ad->path) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    st = slm_read_file(pp.config, PEFT_MAX_CONFIG, &cfg, &cfg_n);
    if (st != SLM_OK) {
        slm_fail_prefix(st, "PEFT adapter %s: cannot read %s", path, pp.config);
        goto cleanup;
    }
    SLM_CHECK(slm_map_file(pp.weights, &map));
    if (trust_dir) {
        /* both files, as the bytes that are then parsed */
        SLM_CHECK(
            slm_trust_verify_bytes(pp.config, (const uint8_t *)cfg, cfg_n, NULL, trust_dir, NULL));
        SLM_CHECK(slm_trust_verify_bytes(pp.weights, map.data, map.size, NULL, trust_dir, NULL));
    }
    SLM_CHECK(parse_config(pp.config, cfg, cfg_n, pc));
    SLM_CHECK(st_open_memory(map.data, map.size, pp.weights, &f));
    SLM_CHECK(load_tensors(base, pp.weights, f, pc, ad));
    slm_log(SLM_LOG_INFO, "%s: PEFT LoRA adapter, %d matrices, rank up to %d, alpha %g%s%s", path,
            ad->n_targets, ad->max_r, (double)ad->alpha, pc->rslora ? " (rsLoRA)" : "",
            pc->ranks.n || pc->alphas.n ? " (rank/alpha patterns)" : "");
    *out = ad;
    ad = NULL;
cleanup:
    st_close(f);
    slm_unmap_file(&map);
    free(cfg);
    free(pp.config);
    free(pp.weights);
    pattern_free(&pc->ranks);
    pattern_free(&pc->alphas);
    free(pc);
    slm_adapter_free(ad);
    return st;
}
