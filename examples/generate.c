/* The smallest useful embedding of slm: load a model, stream a continuation.
 *
 *   example_generate MODEL.gguf "Once upon a time" [max_tokens]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm.h"

static int print_piece(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop generation */
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf PROMPT [max_tokens]\n", argv[0]);
        return 2;
    }
    char json[128];
    snprintf(json, sizeof json, "{\"max_tokens\": %d, \"temperature\": 0}",
             argc > 3 ? atoi(argv[3]) : 64);

    slm_config *cfg = NULL;
    slm_model *model = NULL;
    slm_session *session = NULL;
    slm_result result;
    slm_status st = slm_config_new(&cfg);
    if (st == SLM_OK) st = slm_config_apply_json(cfg, json, strlen(json));
    if (st == SLM_OK) st = slm_model_load(argv[1], cfg, &model);
    if (st == SLM_OK) st = slm_session_new(model, cfg, &session);
    if (st == SLM_OK)
        st = slm_generate(session, argv[2], strlen(argv[2]), print_piece, NULL, &result);
    if (st == SLM_OK)
        printf("\n[%d prompt tokens, %d generated]\n", result.n_prompt_tokens, result.n_generated);
    else
        fprintf(stderr, "error: %s\n", slm_last_error());

    slm_session_free(session);
    slm_model_free(model);
    slm_config_free(cfg);
    return st == SLM_OK ? 0 : 1;
}
