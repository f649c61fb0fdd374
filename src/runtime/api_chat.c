/* slm_chat_prompt: a conversation rendered with the model's own template,
 * or a built-in format when it has none or the template cannot be rendered. */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/status.h"
#include "model/model.h"
#include "tokenizer/chat.h"

#define SLM_CHAT_MAX_SPECIALS 4096

/* Texts of the model's control tokens, for choosing a built-in format. */
static const char *guess_builtin(const slm_model *m) {
    int32_t n = slm_tokenizer_n_vocab(m->tok);
    const char **texts = slm_calloc(SLM_CHAT_MAX_SPECIALS, sizeof *texts);
    if (!texts) return "chatml";
    size_t k = 0;
    for (int32_t id = 0; id < n && k < SLM_CHAT_MAX_SPECIALS; id++) {
        int type = slm_tokenizer_token_type(m->tok, id);
        if (type == SLM_TOKTYPE_CONTROL || type == SLM_TOKTYPE_USER_DEFINED) {
            size_t len = 0;
            const char *p = slm_tokenizer_piece(m->tok, id, &len);
            if (p) texts[k++] = p;
        }
    }
    const char *name = slm_chat_guess_builtin(texts, k);
    free(texts);
    return name ? name : "chatml";
}

slm_status slm_chat_prompt(const slm_model *m, const slm_chat_message *msgs, size_t n_msgs,
                           int add_generation_prompt, char **text, size_t *text_len, int32_t **ids,
                           size_t *n_ids, const char **format_used) {
    if (text) *text = NULL;
    if (ids) *ids = NULL;
    if (!m || (!msgs && n_msgs))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_chat_prompt: NULL argument");
    if (!m->tok)
        return slm_fail(SLM_ERR_UNSUPPORTED, "%s: the model has no usable tokenizer", m->path);
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role)
            return slm_fail(SLM_ERR_INVALID_ARG, "slm_chat_prompt: message %zu has no role", i);

    char *tmpl = NULL, *bos = NULL, *eos = NULL;
    slm_chat_render r;
    memset(&r, 0, sizeof r);
    slm_status st = slm_chat_template_from_gguf(m->gguf, &tmpl);
    if (st == SLM_OK) st = slm_chat_special_tokens_from_gguf(m->gguf, &bos, &eos);
    if (st != SLM_OK) goto done;

    const char *used = "model";
    if (tmpl) {
        st = slm_chat_render_template(tmpl, strlen(tmpl), msgs, n_msgs, add_generation_prompt, bos,
                                      eos, &r);
        if (st == SLM_OK) goto encode;
        if (st == SLM_ERR_INVALID_ARG)
            goto done; /* the template itself raised: the input is wrong */
        used = guess_builtin(m);
        slm_log(SLM_LOG_WARN,
                "%s: the model's chat template cannot be rendered (%s); using the "
                "built-in \"%s\" format",
                m->path, slm_last_error(), used);
    } else {
        used = guess_builtin(m);
        slm_log(SLM_LOG_INFO, "%s: no chat template in the file; using the built-in \"%s\" format",
                m->path, used);
    }
    {
        const char *b = slm_chat_builtin(used);
        st = slm_chat_render_template(b, strlen(b), msgs, n_msgs, add_generation_prompt, bos, eos,
                                      &r);
        if (st != SLM_OK) goto done;
    }
encode:
    if (ids) {
        st = slm_chat_encode(m->tok, &r, ids, n_ids);
        if (st != SLM_OK) goto done;
    }
    if (text) {
        *text = r.text;
        r.text = NULL;
        if (text_len) *text_len = r.len;
    }
    if (format_used) *format_used = used;
done:
    if (st != SLM_OK && ids && *ids) {
        free(*ids);
        *ids = NULL;
    }
    slm_chat_render_free(&r);
    free(tmpl);
    free(bos);
    free(eos);
    return st;
}
