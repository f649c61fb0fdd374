#include "logits.h"

#include <math.h>
#include <string.h>

#include "check.h"

float *slm_test_prompt_logits(slm_model *m, const char *json, const char *prompt,
                              const slm_adapter *const *ads, const float *scales, size_t n,
                              size_t *count) {
    slm_config *c = NULL;
    slm_session *s = NULL;
    float *lg = NULL;
    size_t nt = 0, nv = 0;
    *count = 0;
    if (!json) json = "{\"threads\":2}";
    slm_status st = slm_config_new(&c);
    if (st == SLM_OK) st = slm_config_apply_json(c, json, strlen(json));
    if (st == SLM_OK) st = slm_session_new(m, c, &s);
    if (st == SLM_OK && n) st = slm_session_set_adapters(s, ads, scales, n);
    if (st == SLM_OK) st = slm_prompt_logits(s, prompt, strlen(prompt), &lg, &nt, &nv);
    CHECK_MSG(st == SLM_OK, "logits: %s", slm_last_error());
    slm_session_free(s);
    slm_config_free(c);
    *count = nt * nv;
    return lg;
}

double slm_test_max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

double slm_test_max_abs(const float *a, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i]));
    return d;
}
