/* Chat templates: rendering with the Jinja subset, built-in formats, template
 * sources (tokenizer_config.json, GGUF) and content-safe encoding. */
#include "tokenizer/chat.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "format/gguf.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

#define CHAT_MAX_CONFIG_BYTES (256u << 20) /* tokenizer_config.json */
#define CHAT_MAX_MESSAGES 1000000u

/* ---- built-in formats ----------------------------------------------------- */

static const struct {
    const char *name;
    const char *tmpl;
} BUILTINS[] = {
    {"chatml",
     "{%- for message in messages %}"
     "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"},
    {"llama2",
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set loop_messages = messages[1:] %}{%- set system_message = messages[0]['content'] %}"
     "{%- else %}{%- set loop_messages = messages %}{%- set system_message = false %}{%- endif %}"
     "{%- for message in loop_messages %}"
     "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- if loop.index0 == 0 and system_message != false %}"
     "{%- set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
     "{%- else %}{%- set content = message['content'] %}{%- endif %}"
     "{%- if message['role'] == 'user' %}"
     "{{- bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
     "{%- elif message['role'] == 'assistant' %}"
     "{{- ' ' + content.strip() + ' ' + eos_token }}"
     "{%- endif %}"
     "{%- endfor %}"},
    {"llama3", "{{- bos_token }}"
               "{%- for message in messages %}"
               "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
               "message['content'] | trim + '<|eot_id|>' }}"
               "{%- endfor %}"
               "{%- if add_generation_prompt %}"
               "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"},
    {"gemma",
     "{{- bos_token }}"
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' %}"
     "{%- set loop_messages = messages[1:] %}"
     "{%- else %}{%- set first_user_prefix = '' %}{%- set loop_messages = messages %}{%- endif %}"
     "{%- for message in loop_messages %}"
     "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
     "{{- '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + "
     "message['content'] | trim + '<end_of_turn>\\n' }}"
     "{%- endfor %}"
     "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"},
    {"mistral",
     "{{- bos_token }}"
     "{%- if messages[0]['role'] == 'system' %}"
     "{%- set system_prefix = messages[0]['content'] + '\\n\\n' %}"
     "{%- set loop_messages = messages[1:] %}"
     "{%- else %}{%- set system_prefix = '' %}{%- set loop_messages = messages %}{%- endif %}"
     "{%- for message in loop_messages %}"
     "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
     "{%- endif %}"
     "{%- if message['role'] == 'user' %}"
     "{{- '[INST] ' + (system_prefix if loop.first else '') + message['content'] + ' [/INST]' }}"
     "{%- else %}{{- message['content'] + eos_token }}{%- endif %}"
     "{%- endfor %}"},
    {"phi3", "{%- for message in messages %}"
             "{{- '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
             "{%- endfor %}"
             "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- else %}{{- eos_token }}"
             "{%- endif %}"},
    {"zephyr", "{%- for message in messages %}"
               "{{- '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
               "{%- endfor %}"
               "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"},
};

#define N_BUILTINS (sizeof BUILTINS / sizeof BUILTINS[0])

const char *slm_chat_builtin(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (!strcmp(BUILTINS[i].name, name)) return BUILTINS[i].tmpl;
    return NULL;
}

const char *const *slm_chat_builtin_names(void) {
    static const char *const names[] = {"chatml",  "llama2", "llama3", "gemma",
                                        "mistral", "phi3",   "zephyr", NULL};
    _Static_assert(sizeof names / sizeof names[0] == N_BUILTINS + 1, "one name per built-in");
    return names;
}

const char *slm_chat_guess_builtin(const char *const *texts, size_t n) {
    int has_im = 0, has_hdr = 0, has_turn = 0, has_end = 0, has_asst = 0, has_inst = 0, has_s = 0;
    for (size_t i = 0; texts && i < n; i++) {
        const char *t = texts[i];
        if (!t) continue;
        has_im |= !strcmp(t, "<|im_start|>");
        has_hdr |= !strcmp(t, "<|start_header_id|>");
        has_turn |= !strcmp(t, "<start_of_turn>");
        has_end |= !strcmp(t, "<|end|>");
        has_asst |= !strcmp(t, "<|assistant|>");
        has_inst |= !strcmp(t, "[INST]");
        has_s |= !strcmp(t, "<s>");
    }
    if (has_im) return "chatml";
    if (has_hdr) return "llama3";
    if (has_turn) return "gemma";
    if (has_asst && has_end) return "phi3";
    if (has_asst) return "zephyr";
    if (has_inst) return "mistral";
    if (has_s) return "llama2";
    return NULL;
}

/* ---- rendering --------------------------------------------------------------- */

void slm_chat_render_free(slm_chat_render *r) {
    if (!r) return;
    free(r->text);
    free(r->is_content);
    memset(r, 0, sizeof *r);
}

/* Renders with `vars` (owned by the caller): every value inside a message
 * except its "role" is content. */
static slm_status render_vars(const char *tmpl, size_t tmpl_len, cJSON *vars,
                              slm_chat_render *out) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(vars, "messages");
    size_t n = 0;
    for (const cJSON *m = msgs ? msgs->child : NULL; m; m = m->next)
        for (const cJSON *f = m->child; f; f = f->next) n++;
    const cJSON **tainted = malloc((n ? n : 1) * sizeof *tainted);
    if (!tainted) return slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
    size_t k = 0;
    for (const cJSON *m = msgs ? msgs->child : NULL; m; m = m->next)
        for (const cJSON *f = m->child; f; f = f->next)
            if (!f->string || strcmp(f->string, "role") != 0) tainted[k++] = f;
    jinja_template *t = NULL;
    slm_status st = jinja_parse(tmpl, tmpl_len, "chat template", &t);
    jinja_output o;
    memset(&o, 0, sizeof o);
    if (st == SLM_OK) st = jinja_render(t, vars, tainted, k, &o);
    jinja_free(t);
    free(tainted);
    if (st != SLM_OK) return st;
    out->text = o.text;
    out->len = o.len;
    out->is_content = o.tainted;
    return SLM_OK;
}

/* Adds the standard variables to `vars`. */
static slm_status add_std_vars(cJSON *vars, int add_generation_prompt, const char *bos,
                               const char *eos) {
    int ok = 1;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "add_generation_prompt"))
        ok &= cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt != 0) !=
              NULL;
    if (bos && !cJSON_GetObjectItemCaseSensitive(vars, "bos_token"))
        ok &= cJSON_AddStringToObject(vars, "bos_token", bos) != NULL;
    if (eos && !cJSON_GetObjectItemCaseSensitive(vars, "eos_token"))
        ok &= cJSON_AddStringToObject(vars, "eos_token", eos) != NULL;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "tools"))
        ok &= cJSON_AddNullToObject(vars, "tools") != NULL;
    if (!cJSON_GetObjectItemCaseSensitive(vars, "documents"))
        ok &= cJSON_AddNullToObject(vars, "documents") != NULL;
    return ok ? SLM_OK : slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
}

slm_status slm_chat_render_template(const char *tmpl, size_t tmpl_len, const slm_chat_message *msgs,
                                    size_t n_msgs, int add_generation_prompt, const char *bos_token,
                                    const char *eos_token, slm_chat_render *out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL output");
    memset(out, 0, sizeof *out);
    if (!tmpl) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL template");
    if (!msgs && n_msgs) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL messages");
    if (n_msgs > CHAT_MAX_MESSAGES)
        return slm_fail(SLM_ERR_INVALID_ARG, "chat template: %zu messages exceeds the limit of %u",
                        n_msgs, CHAT_MAX_MESSAGES);
    for (size_t i = 0; i < n_msgs; i++)
        if (!msgs[i].role)
            return slm_fail(SLM_ERR_INVALID_ARG, "chat template: message %zu has no role", i);
    slm_status st = SLM_OK;
    cJSON *vars = cJSON_CreateObject();
    cJSON *arr = vars ? cJSON_AddArrayToObject(vars, "messages") : NULL;
    if (!arr) st = slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
    for (size_t i = 0; st == SLM_OK && i < n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(arr, m) ||
            !cJSON_AddStringToObject(m, "role", msgs[i].role) ||
            !(msgs[i].content ? cJSON_AddStringToObject(m, "content", msgs[i].content)
                              : cJSON_AddNullToObject(m, "content")))
            st = slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
    }
    if (st == SLM_OK) st = add_std_vars(vars, add_generation_prompt, bos_token, eos_token);
    if (st == SLM_OK) st = render_vars(tmpl, tmpl_len, vars, out);
    cJSON_Delete(vars);
    return st;
}

slm_status slm_chat_render_json(const char *tmpl, size_t tmpl_len, const char *messages_json,
                                size_t messages_len, const char *extra_vars_json,
                                int add_generation_prompt, const char *bos_token,
                                const char *eos_token, slm_chat_render *out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL output");
    memset(out, 0, sizeof *out);
    if (!tmpl || !messages_json)
        return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL template or messages");
    cJSON *msgs = cJSON_ParseWithLength(messages_json, messages_len);
    if (!msgs) return slm_fail(SLM_ERR_FORMAT, "chat messages: invalid JSON");
    if (!cJSON_IsArray(msgs)) {
        cJSON_Delete(msgs);
        return slm_fail(SLM_ERR_FORMAT, "chat messages: expected a JSON array of messages");
    }
    size_t i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            cJSON_Delete(msgs);
            return slm_fail(SLM_ERR_FORMAT,
                            "chat messages: message %zu is not an object with a "
                            "string \"role\"",
                            i);
        }
    }
    cJSON *vars = NULL;
    if (extra_vars_json) {
        vars = cJSON_Parse(extra_vars_json);
        if (!vars || !cJSON_IsObject(vars)) {
            cJSON_Delete(vars);
            cJSON_Delete(msgs);
            return slm_fail(SLM_ERR_FORMAT, "chat template variables: expected a JSON object");
        }
        cJSON_DeleteItemFromObjectCaseSensitive(vars, "messages");
    } else {
        vars = cJSON_CreateObject();
    }
    slm_status st = SLM_OK;
    if (!vars || !cJSON_AddItemToObject(vars, "messages", msgs)) {
        cJSON_Delete(msgs);
        st = slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
    }
    if (st == SLM_OK) st = add_std_vars(vars, add_generation_prompt, bos_token, eos_token);
    if (st == SLM_OK) st = render_vars(tmpl, tmpl_len, vars, out);
    cJSON_Delete(vars);
    return st;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct ctl_tok {
    const char *text;
    size_t len;
    int32_t id;
} ctl_tok;

static int ctl_cmp(const void *a, const void *b) {
    const ctl_tok *x = a, *y = b;
    if ((unsigned char)x->text[0] != (unsigned char)y->text[0])
        return (unsigned char)x->text[0] - (unsigned char)y->text[0];
    return x->len > y->len ? -1 : x->len < y->len; /* longest first */
}

/* Longest control token at text[i], or -1; with `template_only`, one whose
 * bytes are all template bytes. */
static ptrdiff_t match_ctl(const ctl_tok *c, const size_t *first, const char *text, size_t len,
                           const uint8_t *is_content, size_t i, int template_only) {
    unsigned char b = (unsigned char)text[i];
    for (size_t k = first[b]; k < first[b + 1]; k++) {
        if (c[k].len > len - i || memcmp(text + i, c[k].text, c[k].len) != 0) continue;
        if (template_only) {
            int ok = 1;
            for (size_t q = 0; q < c[k].len && ok; q++) ok = !is_content[i + q];
            if (!ok) continue;
        }
        return (ptrdiff_t)k;
    }
    return -1;
}

static slm_status append_ids(int32_t **ids, size_t *n, size_t *cap, const int32_t *src, size_t m) {
    if (m > *cap - *n) {
        size_t nc = *cap ? *cap : 64;
        while (nc - *n < m) {
            if (nc > SIZE_MAX / 2 / sizeof(int32_t))
                return slm_fail(SLM_ERR_NOMEM, "chat encode: too many tokens");
            nc *= 2;
        }
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p) return slm_fail(SLM_ERR_NOMEM, "chat encode: out of memory");
        *ids = p;
        *cap = nc;
    }
    memcpy(*ids + *n, src, m * sizeof *src);
    *n += m;
    return SLM_OK;
}

static slm_status encode_plain(const slm_tokenizer *tok, const char *text, size_t len,
                               int32_t **ids, size_t *n, size_t *cap) {
    if (len == 0) return SLM_OK;
    int32_t *part = NULL;
    size_t np = 0;
    SLM_TRY(slm_tokenizer_encode(tok, text, len, 0, &part, &np));
    slm_status st = append_ids(ids, n, cap, part, np);
    free(part);
    return st;
}

slm_status slm_chat_encode(const slm_tokenizer *tok, const slm_chat_render *r, int32_t **ids,
                           size_t *n_ids) {
    if (!ids || !n_ids) return slm_fail(SLM_ERR_INVALID_ARG, "chat encode: NULL output");
    *ids = NULL;
    *n_ids = 0;
    if (!tok || !r || (!r->text && r->len))
        return slm_fail(SLM_ERR_INVALID_ARG, "chat encode: NULL tokenizer or render");
    if (r->len && !r->is_content)
        return slm_fail(SLM_ERR_INVALID_ARG, "chat encode: render without a content mask");
    /* The control tokens, grouped by first byte, longest first. */
    int32_t nv = slm_tokenizer_n_vocab(tok);
    size_t n_ctl = 0;
    for (int32_t id = 0; id < nv; id++) {
        int ty = slm_tokenizer_token_type(tok, id);
        size_t l = 0;
        if ((ty == SLM_TOKTYPE_CONTROL || ty == SLM_TOKTYPE_UNKNOWN) &&
            slm_tokenizer_piece(tok, id, &l) && l > 0)
            n_ctl++;
    }
    ctl_tok *ctl = slm_calloc(n_ctl ? n_ctl : 1, sizeof *ctl);
    size_t *first = slm_calloc(257, sizeof *first);
    if (!ctl || !first) {
        free(ctl);
        free(first);
        return slm_fail(SLM_ERR_NOMEM, "chat encode: out of memory");
    }
    size_t k = 0;
    for (int32_t id = 0; id < nv && k < n_ctl; id++) {
        int ty = slm_tokenizer_token_type(tok, id);
        size_t l = 0;
        const char *p;
        if ((ty == SLM_TOKTYPE_CONTROL || ty == SLM_TOKTYPE_UNKNOWN) &&
            (p = slm_tokenizer_piece(tok, id, &l)) != NULL && l > 0) {
            ctl[k].text = p;
            ctl[k].len = l;
            ctl[k].id = id;
            k++;
        }
    }
    n_ctl = k;
    qsort(ctl, n_ctl, sizeof *ctl, ctl_cmp);
    for (size_t i = 0, b = 0; b <= 256; b++) {
        while (i < n_ctl && (unsigned char)ctl[i].text[0] < b) i++;
        first[b] = i;
    }
    first[256] = n_ctl;

    const char *text = r->text;
    size_t len = r->len;
    /* Does control-token text overlap content anywhere? */
    int overlap = 0;
    for (size_t i = 0; i < len && !overlap;) {
        ptrdiff_t m = match_ctl(ctl, first, text, len, r->is_content, i, 0);
        if (m < 0) {
            i++;
            continue;
        }
        for (size_t q = 0; q < ctl[m].len && !overlap; q++) overlap = r->is_content[i + q];
        i += ctl[m].len;
    }
    slm_status st = SLM_OK;
    if (!overlap) {
        st = slm_tokenizer_encode(tok, text, len, SLM_TOKENIZE_PARSE_SPECIAL, ids, n_ids);
    } else {
        /* Split at control tokens made of template bytes only; everything
         * between them is encoded as plain text. */
        size_t n = 0, cap = 0, seg = 0;
        int32_t *out = NULL;
        for (size_t i = 0; st == SLM_OK && i < len;) {
            ptrdiff_t m =
                r->is_content[i] ? -1 : match_ctl(ctl, first, text, len, r->is_content, i, 1);
            if (m < 0) {
                i++;
                continue;
            }
            st = encode_plain(tok, text + seg, i - seg, &out, &n, &cap);
            if (st == SLM_OK) st = append_ids(&out, &n, &cap, &ctl[m].id, 1);
            i += ctl[m].len;
            seg = i;
        }
        if (st == SLM_OK) st = encode_plain(tok, text + seg, len - seg, &out, &n, &cap);
        if (st == SLM_OK) {
            *ids = out;
            *n_ids = n;
        } else {
            free(out);
        }
    }
    free(ctl);
    free(first);
    return st;
}

slm_status slm_chat_encode_gguf(const gguf_file *f, const slm_chat_render *r, int32_t **ids,
                                size_t *n_ids) {
    if (ids) *ids = NULL;
    if (!f) return slm_fail(SLM_ERR_INVALID_ARG, "chat encode: NULL file");
    slm_tokenizer *tok = NULL;
    SLM_TRY(slm_tokenizer_from_gguf(f, &tok));
    slm_status st = slm_chat_encode(tok, r, ids, n_ids);
    slm_tokenizer_free(tok);
    return st;
}

slm_status slm_chat_encode_hf(const char *tokenizer_json, const char *tokenizer_config,
                              const slm_chat_render *r, int32_t **ids, size_t *n_ids) {
    if (ids) *ids = NULL;
    if (!tokenizer_json) return slm_fail(SLM_ERR_INVALID_ARG, "chat encode: NULL tokenizer path");
    slm_tokenizer *tok = NULL;
    SLM_TRY(slm_tokenizer_from_hf_json(tokenizer_json, tokenizer_config, &tok));
    slm_status st = slm_chat_encode(tok, r, ids, n_ids);
    slm_tokenizer_free(tok);
    return st;
}

/* ---- template sources ------------------------------------------------------------ */

static slm_status read_file(const char *path, size_t max, char **out, size_t *len) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return slm_fail(SLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(fp);
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                fclose(fp);
                return slm_fail(SLM_ERR_FORMAT, "%s: larger than the limit of %zu bytes", path,
                                max);
            }
            cap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(fp);
                return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return slm_fail(SLM_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return SLM_OK;
}

/* A token field: a string, {"content": string}, or null/absent. */
static slm_status token_field(const cJSON *cfg, const char *key, const char *path, char **out) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (!v || cJSON_IsNull(v)) return SLM_OK;
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v))
        return slm_fail(SLM_ERR_FORMAT, "%s: \"%s\" must be a string or {\"content\": string}",
                        path, key);
    *out = strdup(v->valuestring);
    return *out ? SLM_OK : slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
}

slm_status slm_chat_template_from_hf_config(const char *path, char **tmpl, char **bos, char **eos) {
    if (tmpl) *tmpl = NULL;
    if (bos) *bos = NULL;
    if (eos) *eos = NULL;
    if (!path) return slm_fail(SLM_ERR_INVALID_ARG, "tokenizer config: NULL path");
    char *text = NULL;
    size_t len = 0;
    SLM_TRY(read_file(path, CHAT_MAX_CONFIG_BYTES, &text, &len));
    cJSON *cfg = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cfg) return slm_fail(SLM_ERR_FORMAT, "%s: invalid JSON", path);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return slm_fail(SLM_ERR_FORMAT, "%s: expected a JSON object", path);
    }
    slm_status st = SLM_OK;
    char *t = NULL, *b = NULL, *e = NULL;
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    if (cJSON_IsString(ct)) {
        t = strdup(ct->valuestring);
        if (!t) st = slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    } else if (cJSON_IsArray(ct)) {
        const cJSON *found = NULL;
        size_t i = 0;
        for (const cJSON *it = ct->child; it && st == SLM_OK; it = it->next, i++) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *tp = cJSON_GetObjectItemCaseSensitive(it, "template");
            if (!cJSON_IsString(nm) || !cJSON_IsString(tp))
                st = slm_fail(SLM_ERR_FORMAT,
                              "%s: chat_template[%zu] must be {\"name\": string, "
                              "\"template\": string}",
                              path, i);
            else if (!strcmp(nm->valuestring, "default"))
                found = tp;
        }
        if (st == SLM_OK && !found)
            st = slm_fail(SLM_ERR_FORMAT,
                          "%s: chat_template lists templates but none named "
                          "\"default\"",
                          path);
        if (st == SLM_OK && !(t = strdup(found->valuestring)))
            st = slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    } else if (ct && !cJSON_IsNull(ct)) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: chat_template must be a string or a list", path);
    } else {
        /* Newer checkpoints keep the template in chat_template.jinja beside the config. */
        const char *slash = strrchr(path, '/');
        size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
        char *jp = malloc(dl + sizeof "chat_template.jinja");
        if (!jp) {
            st = slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
        } else {
            memcpy(jp, path, dl);
            memcpy(jp + dl, "chat_template.jinja", sizeof "chat_template.jinja");
            FILE *probe = fopen(jp, "rb");
            if (probe) {
                fclose(probe);
                size_t tl;
                st = read_file(jp, JINJA_MAX_TEMPLATE_BYTES, &t, &tl);
            }
            free(jp);
        }
    }
    if (st == SLM_OK) st = token_field(cfg, "bos_token", path, &b);
    if (st == SLM_OK) st = token_field(cfg, "eos_token", path, &e);
    cJSON_Delete(cfg);
    if (st != SLM_OK) {
        free(t);
        free(b);
        free(e);
        return st;
    }
    if (tmpl)
        *tmpl = t;
    else
        free(t);
    if (bos)
        *bos = b;
    else
        free(b);
    if (eos)
        *eos = e;
    else
        free(e);
    return SLM_OK;
}

slm_status slm_chat_template_from_gguf(const gguf_file *f, char **tmpl) {
    if (!tmpl) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL output");
    *tmpl = NULL;
    if (!f) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL file");
    gguf_str s = {NULL, 0};
    SLM_TRY(gguf_get_str_opt(f, "tokenizer.chat_template", &s));
    if (!s.ptr) return SLM_OK;
    if (s.len > JINJA_MAX_TEMPLATE_BYTES)
        return slm_fail(SLM_ERR_FORMAT, "%s: tokenizer.chat_template is %llu bytes (limit %u)",
                        gguf_path(f), (unsigned long long)s.len, JINJA_MAX_TEMPLATE_BYTES);
    *tmpl = slm_strndup(s.ptr, (size_t)s.len);
    return *tmpl ? SLM_OK : slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
}

static slm_status gguf_token_text(const gguf_file *f, const char *key, char **out) {
    *out = NULL;
    int64_t id = -1;
    SLM_TRY(gguf_get_i64_opt(f, key, &id));
    if (id < 0) return SLM_OK;
    const gguf_kv *kv = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!kv || kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING || !kv->strs)
        return slm_fail(SLM_ERR_FORMAT, "%s: tokenizer.ggml.tokens missing or not strings",
                        gguf_path(f));
    if ((uint64_t)id >= kv->arr_len)
        return slm_fail(SLM_ERR_FORMAT, "%s: %s = %lld is outside the vocabulary (%llu tokens)",
                        gguf_path(f), key, (long long)id, (unsigned long long)kv->arr_len);
    *out = slm_strndup(kv->strs[id].ptr, (size_t)kv->strs[id].len);
    return *out ? SLM_OK : slm_fail(SLM_ERR_NOMEM, "chat template: out of memory");
}

slm_status slm_chat_special_tokens_from_gguf(const gguf_file *f, char **bos, char **eos) {
    if (bos) *bos = NULL;
    if (eos) *eos = NULL;
    if (!f) return slm_fail(SLM_ERR_INVALID_ARG, "chat template: NULL file");
    char *b = NULL, *e = NULL;
    slm_status st = gguf_token_text(f, "tokenizer.ggml.bos_token_id", &b);
    if (st == SLM_OK) st = gguf_token_text(f, "tokenizer.ggml.eos_token_id", &e);
    if (st != SLM_OK) {
        free(b);
        free(e);
        return st;
    }
    if (bos)
        *bos = b;
    else
        free(b);
    if (eos)
        *eos = e;
    else
        free(e);
    return SLM_OK;
}
