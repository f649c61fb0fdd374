/* Runtime config: defaults, JSON application, errors that name the key. */
#include <stdio.h>

#include "base/mmap_file.h"
#include "check.h"
#include "runtime/config.h"

static slm_status apply(slm_config *c, const char *json) {
    return slm_config_apply_json(c, json, strlen(json));
}

int main(void) {
    slm_config *c = NULL;
    CHECK_OK(slm_config_new(&c));
    CHECK(c->max_tokens == 128);
    CHECK(c->n_keep == -1);
    CHECK(c->context_policy == SLM_CTX_SHIFT);
    CHECK(c->weights == SLM_FILE_AUTO);

    CHECK_OK(apply(c, "{\"weights\":\"map\"}"));
    CHECK(c->weights == SLM_FILE_MAP);
    CHECK_ERR(apply(c, "{\"weights\":\"mmap\"}"), SLM_ERR_CONFIG, "'weights'");
    CHECK(c->weights == SLM_FILE_MAP);
    CHECK_OK(apply(c, "{\"weights\":\"copy\"}"));
    CHECK(c->weights == SLM_FILE_COPY);
    CHECK(c->kv_f32 == 0); /* the K/V cache in f16 unless asked */
    CHECK_ERR(apply(c, "{\"kv_cache\":\"q8_0\"}"), SLM_ERR_CONFIG, "'kv_cache'");
    CHECK_ERR(apply(c, "{\"kv_cache\":32}"), SLM_ERR_CONFIG, "'kv_cache'");
    CHECK(c->kv_f32 == 0);
    CHECK_OK(apply(c, "{\"kv_cache\":\"f32\"}"));
    CHECK(c->kv_f32 == 1);
    CHECK_OK(apply(c, "{\"max_tokens\":16,\"quant\":\"int8\"}"));
    CHECK(c->max_tokens == 16);
    CHECK(!strcmp(c->quant, "int8"));
    CHECK_OK(apply(c, "{\"temperature\":0,\"top_k\":5,\"top_p\":0.5,\"min_p\":0.1,"
                      "\"repeat_penalty\":1.1,\"repeat_last_n\":32,\"seed\":42,\"threads\":2,"
                      "\"n_ctx\":256,\"n_keep\":4,\"n_batch\":32,\"providers\":[\"avx2\",\"ref\"],"
                      "\"context_policy\":\"error\",\"stop\":[\"\\n\\n\",\"END\"]}"));
    CHECK(c->temperature == 0.0f && c->top_k == 5 && c->seed == 42 && c->threads == 2);
    CHECK(c->n_ctx == 256 && c->n_keep == 4 && c->n_batch == 32);
    CHECK(c->n_providers == 2 && !strcmp(c->providers[1], "ref"));
    CHECK(c->context_policy == SLM_CTX_ERROR);
    CHECK(c->n_stop == 2 && !strcmp(c->stop[0], "\n\n") && !strcmp(c->stop[1], "END"));
    CHECK(c->presence_penalty == 0.0f && c->frequency_penalty == 0.0f);
    CHECK_OK(apply(c, "{\"presence_penalty\":0.5,\"frequency_penalty\":-2}"));
    CHECK(c->presence_penalty == 0.5f && c->frequency_penalty == -2.0f);
    CHECK_OK(apply(c, "{\"stop\":\"###\"}"));
    CHECK(c->n_stop == 1 && !strcmp(c->stop[0], "###"));

    /* errors name the key; nothing is applied on failure */
    slm_config before = *c;
    CHECK_ERR(apply(c, "{\"max_tokens\":8,\"bogus\":1}"), SLM_ERR_CONFIG, "'bogus'");
    CHECK(c->max_tokens == before.max_tokens);
    CHECK_ERR(apply(c, "{\"max_tokens\":\"many\"}"), SLM_ERR_CONFIG, "'max_tokens'");
    CHECK_ERR(apply(c, "{\"max_tokens\":1.5}"), SLM_ERR_CONFIG, "integer");
    CHECK_ERR(apply(c, "{\"temperature\":-1}"), SLM_ERR_CONFIG, "'temperature'");
    CHECK_ERR(apply(c, "{\"top_p\":2}"), SLM_ERR_CONFIG, "out of range");
    CHECK_ERR(apply(c, "{\"threads\":100000}"), SLM_ERR_CONFIG, "'threads'");
    CHECK_ERR(apply(c, "{\"n_ctx\":3}"), SLM_ERR_CONFIG, "'n_ctx'");
    CHECK_ERR(apply(c, "{\"seed\":-3}"), SLM_ERR_CONFIG, "'seed'");
    CHECK_ERR(apply(c, "{\"presence_penalty\":2.5}"), SLM_ERR_CONFIG, "'presence_penalty'");
    CHECK_ERR(apply(c, "{\"frequency_penalty\":\"x\"}"), SLM_ERR_CONFIG, "'frequency_penalty'");
    CHECK_ERR(apply(c, "{\"stop\":[1,2]}"), SLM_ERR_CONFIG, "'stop'");
    CHECK_ERR(apply(c, "{\"providers\":\"avx2\"}"), SLM_ERR_CONFIG, "'providers'");
    CHECK_ERR(apply(c, "{\"context_policy\":\"wrap\"}"), SLM_ERR_CONFIG, "'context_policy'");
    CHECK_ERR(apply(c, "{\"quant\":\"a-very-long-precision-name\"}"), SLM_ERR_CONFIG, "'quant'");
    CHECK_ERR(apply(c, "{\"max_tokens\":1e400}"), SLM_ERR_CONFIG, "'max_tokens'");
    CHECK_ERR(apply(c, "[1,2]"), SLM_ERR_CONFIG, "object");
    CHECK_ERR(apply(c, "{\"max_tokens\":"), SLM_ERR_CONFIG, "invalid JSON");
    CHECK_ERR(apply(c, "{} trailing"), SLM_ERR_CONFIG, "after the JSON");
    CHECK_ERR(apply(c, ""), SLM_ERR_CONFIG, NULL);
    CHECK(memcmp(c, &before, sizeof before) == 0);

    /* from a file, or inline text */
    char path[512];
    check_tmp_path("cfg.json", path, sizeof path);
    const char *txt = "{\"max_tokens\": 7}\n";
    CHECK_OK(slm_write_file_atomic(path, txt, strlen(txt)));
    CHECK_OK(slm_config_apply(c, path));
    CHECK(c->max_tokens == 7);
    CHECK_OK(slm_config_apply(c, "  {\"max_tokens\": 9}"));
    CHECK(c->max_tokens == 9);
    CHECK_ERR(slm_config_apply(c, "/nonexistent/cfg.json"), SLM_ERR_IO, "cannot open");
    const char *bad = "{\"max_tokens\": true}";
    CHECK_OK(slm_write_file_atomic(path, bad, strlen(bad)));
    CHECK_ERR(slm_config_apply(c, path), SLM_ERR_CONFIG, "cfg.json");
    remove(path);

    /* the effective config round-trips through JSON */
    char *js = slm_config_to_json(c);
    CHECK(js != NULL);
    slm_config *d = NULL;
    CHECK_OK(slm_config_new(&d));
    if (js && d) {
        CHECK_OK(slm_config_apply_json(d, js, strlen(js)));
        CHECK(d->max_tokens == c->max_tokens && d->seed == c->seed && d->n_stop == c->n_stop);
        CHECK(d->n_providers == c->n_providers && d->context_policy == c->context_policy);
        CHECK(d->weights == SLM_FILE_COPY && d->weights == c->weights);
        CHECK(d->kv_f32 == 1);
    }
    free(js);
    slm_config_free(d);
    slm_config_free(c);
    return check_finish();
}
