/* Adapters loaded by the server at start (see adapters.h). */
#include "serve/adapters.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/status.h"
#include "model/lora.h"

int srv_adapter_spec(const char *spec, char *name, size_t name_cap, char *path, size_t path_cap,
                     float *scale) {
    const char *eq = spec ? strchr(spec, '=') : NULL;
    if (!eq) return -1;
    size_t nl = (size_t)(eq - spec);
    if (nl == 0 || nl > SRV_MAX_ADAPTER_NAME || nl >= name_cap) return -1;
    for (size_t i = 0; i < nl; i++) {
        char c = spec[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return -1;
    }
    memcpy(name, spec, nl);
    name[nl] = '\0';
    const char *p = eq + 1;
    size_t pl = strlen(p);
    *scale = 1.0f;
    const char *colon = strrchr(p, ':');
    if (colon && colon[1]) {
        char *end = NULL;
        double v = strtod(colon + 1, &end);
        if (*end == '\0') {
            if (!isfinite(v) || v < -1e6 || v > 1e6) return -1;
            *scale = (float)v;
            pl = (size_t)(colon - p);
        }
    }
    if (pl == 0 || pl >= path_cap) return -1;
    memcpy(path, p, pl);
    path[pl] = '\0';
    return 0;
}

int srv_adapters_find(const srv_adapters *a, const char *name) {
    for (int i = 0; a && name && i < a->n; i++)
        if (!strcmp(a->name[i], name)) return i;
    return -1;
}

void srv_adapters_free(srv_adapters *a) {
    if (!a) return;
    for (int i = 0; i < a->n; i++) slm_adapter_free(a->ad[i]);
    memset(a, 0, sizeof *a);
}

/* The config's trust settings, and whether it lists adapters of its own. */
static slm_status config_bits(const slm_config *cfg, char *trust_dir, size_t cap, int *require,
                              int *has_adapters) {
    *require = 0;
    *has_adapters = 0;
    trust_dir[0] = '\0';
    if (!cfg) return SLM_OK;
    char *js = slm_config_to_json(cfg);
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    free(js);
    if (!o) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    *require = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "require_signature"));
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(o, "trust_dir");
    if (cJSON_IsString(td)) snprintf(trust_dir, cap, "%s", td->valuestring);
    *has_adapters = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(o, "adapters")) > 0;
    cJSON_Delete(o);
    return SLM_OK;
}

slm_status srv_adapters_load(srv_adapters *a, const slm_model *model, const slm_config *cfg,
                             const char *const *specs, int n) {
    memset(a, 0, sizeof *a);
    if (n <= 0) return SLM_OK;
    if (n > SRV_MAX_ADAPTERS)
        return slm_fail(SLM_ERR_INVALID_ARG, "serve: at most %d adapters (--lora)",
                        SRV_MAX_ADAPTERS);
    char trust_dir[4096];
    int require = 0, has = 0;
    SLM_TRY(config_bits(cfg, trust_dir, sizeof trust_dir, &require, &has));
    if (has)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "serve: --lora cannot be combined with the config's \"adapters\" (requests "
                        "choose among the --lora adapters; give them all as --lora)");
    if (require && !trust_dir[0])
        return slm_fail(SLM_ERR_SIGNATURE,
                        "serve: require_signature is set but the config has no trust_dir");
    for (int i = 0; i < n; i++) {
        char path[4096];
        int k = a->n;
        if (srv_adapter_spec(specs[i], a->name[k], sizeof a->name[k], path, sizeof path,
                             &a->scale[k])) {
            srv_adapters_free(a);
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "serve: --lora '%.200s': expected NAME=PATH[:SCALE] (NAME: 1 to %d of "
                            "A-Z a-z 0-9 . _ -)",
                            specs[i] ? specs[i] : "", SRV_MAX_ADAPTER_NAME);
        }
        if (srv_adapters_find(a, a->name[k]) >= 0) {
            slm_status st =
                slm_fail(SLM_ERR_INVALID_ARG, "serve: adapter name '%s' given twice", a->name[k]);
            srv_adapters_free(a);
            return st;
        }
        slm_status st = slm_lora_load(model, path, require ? trust_dir : NULL, &a->ad[k]);
        if (st != SLM_OK) {
            slm_fail_prefix(st, "serve: adapter '%s'", a->name[k]);
            srv_adapters_free(a);
            return st;
        }
        a->n++;
        slm_log(SLM_LOG_INFO, "serve: adapter '%s' = %s (scale %g)", a->name[k], path,
                (double)a->scale[k]);
    }
    return SLM_OK;
}
