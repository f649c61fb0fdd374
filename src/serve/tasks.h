/* Non-generating requests run on a slot's session: POST /v1/embeddings
 * (OpenAI's shape) and POST /v1/classify (slm's). Parsing and the response
 * are pure functions over cJSON; srv_task_run is the job's work function
 * (srv_job.work_fn), run by a slot's worker. docs/SERVER.md. */
#ifndef SLM_SERVE_TASKS_H
#define SLM_SERVE_TASKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "serve/openai.h"
#include "slm.h"

#define SRV_MAX_EMBED_INPUTS 2048 /* OpenAI's limit on inputs per request */

typedef enum srv_task_kind { SRV_TASK_EMBED = 0, SRV_TASK_CLASSIFY = 1 } srv_task_kind;

typedef struct srv_task {
    srv_task_kind kind;
    /* embeddings: each input's token ids */
    int32_t **ids;
    size_t *n_ids;
    size_t n_inputs;
    int base64; /* encoding_format "base64" */
    slm_pooling pooling;
    /* classify */
    char *text;
    size_t text_len;
    char **labels;
    size_t n_labels;
    char *tmpl; /* NULL = the default */
    /* set by the handler before submitting: the job's cancel flag, checked between inputs */
    atomic_int *cancel;
    /* results (written by srv_task_run) */
    int32_t dim;
    float *vecs; /* [n_inputs][dim] */
    slm_classify_result cls;
    int64_t prompt_tokens, total_tokens;
} srv_task;

/* Parses and validates a request body; tokenizes embedding inputs (text with
 * BOS as the model adds it; token arrays as given). On failure fills *e
 * (HTTP 400 naming the field) and returns -1, leaving *out empty. */
int srv_task_parse(srv_task_kind kind, const char *body, size_t len, const slm_model *model,
                   int32_t n_ctx, srv_task *out, srv_error *e);
/* The work function (srv_job.work_fn): user is the srv_task. */
slm_status srv_task_run(void *user, slm_session *s, slm_result *res);
/* The response body of a task that ran (malloc'd JSON, NULL when out of memory). */
char *srv_task_reply(const srv_task *t, const char *model_id);
void srv_task_free(srv_task *t);

#endif
