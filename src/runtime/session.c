/* Sessions: one conversation over a shared model. The KV cache, scratch and
 * sampler are allocated once here; the decode loop allocates nothing. */
#include "runtime/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/status.h"
#include "model/lora.h"
#include "quant/types.h"
#include "runtime/constrain.h"

static int32_t resolve_threads(const slm_config *cfg) {
    int32_t t = cfg->threads;
    if (t <= 0) t = slm_cpu_count();
    if (t < 1) t = 1;
    if (t > SLM_MAX_THREADS) t = SLM_MAX_THREADS;
    return t;
}

/* Copies what a config says about stop strings into the session. */
static void bind_stops(slm_session *s) {
    for (int32_t i = 0; i < s->cfg.n_stop; i++) {
        s->stop[i] = s->cfg.stop[i];
        s->stop_len[i] = strlen(s->cfg.stop[i]);
    }
}

/* The config's "adapters": loaded (signatures checked when required), owned
 * by the session's forward pass and applied. */
static slm_status load_adapters(slm_session *s) {
    const slm_config *cfg = &s->cfg;
    const slm_adapter *ads[SLM_MAX_ADAPTERS];
    const char *trust_dir = cfg->require_signature ? cfg->trust_dir : NULL;
    for (int32_t i = 0; i < cfg->n_adapters; i++) {
        slm_adapter *a = NULL;
        SLM_TRY(slm_lora_load(s->model, cfg->adapter_path[i], trust_dir, &a));
        slm_status st = slm_lora_take(&s->fw, a);
        if (st != SLM_OK) {
            slm_adapter_free(a);
            return st;
        }
        ads[i] = a;
    }
    if (cfg->n_adapters == 0) return SLM_OK;
    return slm_lora_bind(&s->fw, ads, cfg->adapter_scale, (size_t)cfg->n_adapters);
}

slm_status slm_session_set_adapters(slm_session *s, const slm_adapter *const *adapters,
                                    const float *scales, size_t n) {
    if (!s) return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_set_adapters: session is NULL");
    SLM_TRY(slm_lora_bind(&s->fw, adapters, scales, n));
    s->n_tokens = 0; /* the cache holds keys and values computed with the old adapters */
    return SLM_OK;
}

slm_status slm_session_new(slm_model *model, const slm_config *cfg_in, slm_session **out) {
    slm_status st = SLM_OK;
    if (!model || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_new: NULL argument");
    *out = NULL;
    if (model->inspect_only)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "%s: opened for inspection only; load it with slm_model_load to run it",
                        model->path);
    slm_session *s = slm_calloc(1, sizeof *s);
    if (!s) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    s->model = model;
    if (cfg_in)
        s->cfg = *cfg_in;
    else
        slm_config_defaults(&s->cfg);
    const slm_config *cfg = &s->cfg;

    s->n_ctx = cfg->n_ctx > 0 ? cfg->n_ctx : model->hp.n_ctx_train;
    if (cfg->n_ctx <= 0 && s->n_ctx > SLM_DEFAULT_MAX_CTX) s->n_ctx = SLM_DEFAULT_MAX_CTX;
    if (cfg->n_ctx > 0 && cfg->n_ctx > model->hp.n_ctx_train)
        slm_log(SLM_LOG_WARN, "n_ctx %d exceeds the %d tokens the model was trained on", cfg->n_ctx,
                model->hp.n_ctx_train);
    int32_t bos = slm_tokenizer_bos(model->tok);
    s->n_keep =
        cfg->n_keep >= 0 ? cfg->n_keep : (slm_tokenizer_add_bos(model->tok) && bos >= 0 ? 1 : 0);
    if (s->n_keep > s->n_ctx / 2) {
        slm_log(SLM_LOG_WARN, "n_keep %d is more than half the context (%d): keeping %d", s->n_keep,
                s->n_ctx, s->n_ctx / 2);
        s->n_keep = s->n_ctx / 2;
    }

    const char *names[SLM_MAX_PROVIDERS];
    for (int32_t i = 0; i < cfg->n_providers; i++) names[i] = cfg->providers[i];
    s->pv = slm_provider_select(names, (size_t)cfg->n_providers);

    SLM_CHECK(slm_pool_new(resolve_threads(cfg), &s->pool));
    SLM_CHECK(slm_forward_init(&s->fw, model, s->pv, s->pool, s->n_ctx, cfg->n_batch,
                               cfg->kv_f32 ? SLM_TYPE_F32 : SLM_TYPE_F16));
    SLM_CHECK(load_adapters(s));
    slm_sampler_params sp = {
        cfg->temperature,      cfg->top_k,         cfg->top_p, cfg->min_p,
        cfg->repeat_penalty,   cfg->repeat_last_n, cfg->seed,  cfg->presence_penalty,
        cfg->frequency_penalty};
    SLM_CHECK(slm_sampler_init(&s->sampler, &sp, model->hp.n_vocab));
    s->sampler.argmax = s->pv->argmax_f32; /* NULL (ref): the sampler's own copy */
    SLM_CHECK(slm_constraint_update(&s->constraint, model->tok, cfg));
    SLM_CHECK(slm_text_stream_init(&s->stream));
    s->tokens = slm_calloc((size_t)s->n_ctx, sizeof *s->tokens);
    s->logits = slm_alloc_aligned((size_t)model->hp.n_vocab, sizeof(float));
    if (!s->tokens || !s->logits) {
        st = slm_fail(SLM_ERR_NOMEM, "cannot allocate the session's buffers");
        goto cleanup;
    }
    bind_stops(s);
    *out = s;
    return SLM_OK;
cleanup:
    slm_session_free(s);
    return st;
}

void slm_session_free(slm_session *s) {
    if (!s) return;
    slm_forward_free(&s->fw);
    slm_sampler_free(&s->sampler);
    slm_text_stream_free(&s->stream);
    slm_pool_free(s->pool);
    free(s->tokens);
    free(s->logits);
    free(s->info_logits);
    slm_constraint_free(s->constraint);
    free(s);
}

const char *slm_session_provider(const slm_session *s) {
    return s ? s->pv->name : "";
}
int32_t slm_session_n_cached(const slm_session *s) {
    return s ? s->n_tokens : 0;
}

slm_status slm_session_configure(slm_session *s, const char *json, size_t len) {
    if (!s || !json) return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_configure: NULL argument");
    slm_config next = s->cfg;
    SLM_TRY(slm_config_apply_json(&next, json, len));
    const slm_config *c = &s->cfg;
    const char *fixed = next.n_ctx != c->n_ctx         ? "n_ctx"
                        : next.n_batch != c->n_batch   ? "n_batch"
                        : next.threads != c->threads   ? "threads"
                        : strcmp(next.quant, c->quant) ? "quant"
                        : next.weights != c->weights   ? "weights"
                        : next.kv_f32 != c->kv_f32     ? "kv_cache"
                        : (next.n_adapters != c->n_adapters ||
                           memcmp(next.adapter_path, c->adapter_path, sizeof c->adapter_path) ||
                           memcmp(next.adapter_scale, c->adapter_scale, sizeof c->adapter_scale))
                            ? "adapters"
                        : (next.n_providers != c->n_providers ||
                           memcmp(next.providers, c->providers, sizeof c->providers))
                            ? "providers"
                            : NULL;
    if (fixed && !strcmp(fixed, "adapters"))
        return slm_fail(SLM_ERR_CONFIG, "config key 'adapters' cannot change on a session; use "
                                        "slm_session_set_adapters or create a new session");
    if (fixed)
        return slm_fail(SLM_ERR_CONFIG,
                        "config key '%s' sizes the session and cannot change on it; create a new "
                        "session",
                        fixed);
    SLM_TRY(slm_constraint_update(&s->constraint, s->model->tok, &next));
    s->cfg = next;
    bind_stops(s);
    slm_sampler_params sp = {
        next.temperature,      next.top_k,         next.top_p, next.min_p,
        next.repeat_penalty,   next.repeat_last_n, next.seed,  next.presence_penalty,
        next.frequency_penalty};
    s->sampler.params = sp;
    int32_t bos = slm_tokenizer_bos(s->model->tok);
    s->n_keep =
        next.n_keep >= 0 ? next.n_keep : (slm_tokenizer_add_bos(s->model->tok) && bos >= 0 ? 1 : 0);
    if (s->n_keep > s->n_ctx / 2) {
        slm_log(SLM_LOG_WARN, "n_keep %d is more than half the context (%d): keeping %d", s->n_keep,
                s->n_ctx, s->n_ctx / 2);
        s->n_keep = s->n_ctx / 2;
    }
    return SLM_OK;
}
int32_t slm_session_n_ctx(const slm_session *s) {
    return s ? s->n_ctx : 0;
}
uint64_t slm_session_kv_bytes(const slm_session *s) {
    return s ? 2 * (uint64_t)s->fw.kv.bytes : 0;
}
const char *slm_session_kv_type(const slm_session *s) {
    return s ? slm_type_name(s->fw.kv.type) : ""; /* the config's names are the types' */
}

/* Evaluates tokens[from..to) of the session's token list at their positions,
 * in batches; the last batch's last logits go to s->logits when want_logits. */
static slm_status eval_range(slm_session *s, int32_t from, int32_t to, int want_logits) {
    int32_t nb = s->fw.buf.n_batch;
    for (int32_t i = from; i < to; i += nb) {
        int32_t n = to - i < nb ? to - i : nb;
        int last = i + n == to;
        SLM_TRY(slm_forward_run(&s->fw, s->tokens + i, n, i, last && want_logits ? s->logits : NULL,
                                0));
    }
    return SLM_OK;
}

/* Context full: keep the first n_keep tokens, drop the oldest half of the
 * rest, and rebuild the cache for what is kept. */
static slm_status trim_context(slm_session *s, slm_result *r) {
    int32_t n_discard = (s->n_tokens - s->n_keep) / 2;
    if (n_discard < 1) n_discard = 1;
    memmove(s->tokens + s->n_keep, s->tokens + s->n_keep + n_discard,
            (size_t)(s->n_tokens - s->n_keep - n_discard) * sizeof *s->tokens);
    s->n_tokens -= n_discard;
    r->n_trims++;
    r->n_dropped += n_discard;
    slm_log(SLM_LOG_INFO, "context full (%d tokens): kept the first %d, dropped the next %d",
            s->n_ctx, s->n_keep, n_discard);
    return eval_range(s, 0, s->n_tokens, 0);
}

/* Tokenizes a prompt as the model expects (BOS when it adds one). */
static slm_status tokenize_prompt(slm_session *s, const char *prompt, size_t len, int32_t **ids,
                                  size_t *n) {
    SLM_TRY(slm_tokenizer_encode(s->model->tok, prompt, len, SLM_TOKENIZE_ADD_BOS, ids, n));
    if (*n == 0) {
        free(*ids);
        *ids = NULL;
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "the prompt is empty and the model adds no BOS token to start from");
    }
    return SLM_OK;
}

void slm_session_set_observer(slm_session *s, slm_token_observer fn, void *user) {
    if (!s) return;
    s->observer = fn;
    s->observer_user = user;
}

slm_status slm_session_set_token_info(slm_session *s, slm_token_info_fn fn, void *user, int n_top) {
    if (!s) return slm_fail(SLM_ERR_INVALID_ARG, "slm_session_set_token_info: session is NULL");
    if (fn && (n_top < 0 || n_top > SLM_MAX_TOP_LOGPROBS))
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "slm_session_set_token_info: n_top %d is not in [0, %d]", n_top,
                        SLM_MAX_TOP_LOGPROBS);
    if (fn && !s->info_logits) {
        s->info_logits = slm_alloc_aligned((size_t)s->model->hp.n_vocab, sizeof(float));
        if (!s->info_logits)
            return slm_fail(SLM_ERR_NOMEM, "cannot allocate the log-probability buffer");
    }
    s->info = fn;
    s->info_user = user;
    s->info_n_top = fn ? n_top : 0;
    return SLM_OK;
}

static slm_status generate_ids(slm_session *s, int32_t *ids, size_t n_ids, double t0,
                               slm_token_fn on_text, void *user, slm_result *result);

slm_status slm_generate(slm_session *s, const char *prompt, size_t len, slm_token_fn on_text,
                        void *user, slm_result *result) {
    if (result) memset(result, 0, sizeof *result);
    if (!s || (!prompt && len)) return slm_fail(SLM_ERR_INVALID_ARG, "slm_generate: NULL argument");
    double t0 = slm_now_ms();
    int32_t *ids = NULL;
    size_t n_ids = 0;
    SLM_TRY(tokenize_prompt(s, prompt ? prompt : "", len, &ids, &n_ids));
    slm_status st = generate_ids(s, ids, n_ids, t0, on_text, user, result);
    free(ids);
    return st;
}

slm_status slm_generate_tokens(slm_session *s, const int32_t *ids, size_t n_ids,
                               slm_token_fn on_text, void *user, slm_result *result) {
    if (result) memset(result, 0, sizeof *result);
    if (!s || (!ids && n_ids))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_generate_tokens: NULL argument");
    if (n_ids == 0) return slm_fail(SLM_ERR_INVALID_ARG, "slm_generate_tokens: no tokens");
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= s->model->hp.n_vocab)
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "token id %d at %zu is outside the vocabulary (%d)", ids[i], i,
                            s->model->hp.n_vocab);
    int32_t *copy = malloc(n_ids * sizeof *copy);
    if (!copy) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    memcpy(copy, ids, n_ids * sizeof *copy);
    slm_status st = generate_ids(s, copy, n_ids, slm_now_ms(), on_text, user, result);
    free(copy);
    return st;
}

/* The generate loop over a prompt's ids (not freed here). */
static slm_status generate_ids(slm_session *s, int32_t *ids, size_t n_ids, double t0,
                               slm_token_fn on_text, void *user, slm_result *result) {
    slm_result r;
    memset(&r, 0, sizeof r);
    const slm_config *cfg = &s->cfg;
    const slm_tokenizer *tok = s->model->tok;
    r.n_prompt_tokens = (int32_t)n_ids;

    /* A prompt that does not fit leaves room to generate: keep the first
     * n_keep tokens and the newest half of the window. */
    size_t n_use = n_ids;
    const int32_t *src = ids;
    int32_t n_prev = s->n_tokens;
    s->n_tokens = 0;
    if (n_ids >= (size_t)s->n_ctx) {
        if (cfg->context_policy == SLM_CTX_ERROR) {
            return slm_fail(SLM_ERR_CONTEXT,
                            "the prompt has %zu tokens; the context holds %d (context_policy "
                            "\"error\")",
                            n_ids, s->n_ctx);
        }
        int32_t keep_tail = (s->n_ctx - s->n_keep) / 2;
        memcpy(s->tokens, ids, (size_t)s->n_keep * sizeof *ids);
        s->n_tokens = s->n_keep;
        src = ids + n_ids - keep_tail;
        n_use = (size_t)keep_tail;
        r.n_trims++;
        r.n_dropped += (int32_t)(n_ids - (size_t)s->n_keep - (size_t)keep_tail);
        slm_log(SLM_LOG_INFO, "prompt of %zu tokens trimmed to %d to fit the context of %d", n_ids,
                s->n_keep + keep_tail, s->n_ctx);
    }
    /* Reuse the cached prefix this prompt shares with the last one; at least
     * one token is evaluated so that there are logits to sample from. */
    int32_t reuse = 0;
    if (s->n_tokens == 0) {
        while (reuse < n_prev && (size_t)reuse + 1 < n_use && s->tokens[reuse] == src[reuse])
            reuse++;
    }
    memcpy(s->tokens + s->n_tokens + reuse, src + reuse, (n_use - (size_t)reuse) * sizeof *ids);
    s->n_tokens += (int32_t)n_use;
    r.n_cached = reuse;

    slm_sampler_reseed(&s->sampler, cfg->seed);
    slm_constraint_begin(s->constraint);
    slm_text_stream_reset(&s->stream, s->stop, s->stop_len, cfg->n_stop, on_text, user);

    slm_status st = eval_range(s, reuse, s->n_tokens, 1);
    double t_prefill = slm_now_ms();
    r.prefill_ms = t_prefill - t0;
    r.finish = SLM_FINISH_LENGTH;
    char piece[256];
    while (st == SLM_OK && r.n_generated < cfg->max_tokens) {
        int32_t recent_from =
            s->n_tokens > cfg->repeat_last_n ? s->n_tokens - cfg->repeat_last_n : 0;
        int32_t n_vocab = s->model->hp.n_vocab;
        if (s->info) memcpy(s->info_logits, s->logits, (size_t)n_vocab * sizeof *s->logits);
        int32_t next;
        if (slm_constraint_active(s->constraint)) {
            st = slm_constraint_sample(s->constraint, &s->sampler, s->logits,
                                       s->tokens + recent_from, s->n_tokens - recent_from, &next);
            if (st != SLM_OK) break;
        } else {
            next = slm_sampler_sample(&s->sampler, s->logits, s->tokens + recent_from,
                                      s->n_tokens - recent_from);
        }
        if (r.n_generated == 0) r.ttft_ms = slm_now_ms() - t0;
        if (s->observer) s->observer(s->observer_user, next, slm_now_ms() - t0);
        if (!cfg->ignore_eos && slm_tokenizer_is_eog(tok, next)) {
            r.finish = SLM_FINISH_EOS;
            break;
        }
        r.n_generated++;
        if (s->info) {
            int32_t nt = s->info_n_top < n_vocab ? s->info_n_top : n_vocab;
            float lp =
                slm_logprobs(s->info_logits, n_vocab, next, nt, s->info_top_ids, s->info_top_lp);
            s->info(s->info_user, next, lp, s->info_top_ids, s->info_top_lp, (int)nt);
        }
        size_t pl = slm_tokenizer_decode_token(tok, next, 0, piece, sizeof piece);
        if (pl > sizeof piece) pl = sizeof piece; /* pieces are far shorter in practice */
        slm_text_stream_push(&s->stream, piece, pl);
        if (s->stream.stopped) {
            r.finish = SLM_FINISH_STOP;
            break;
        }
        if (s->stream.cancelled) {
            r.finish = SLM_FINISH_CALLBACK;
            break;
        }
        if (slm_constraint_done(s->constraint)) { /* the grammar allows nothing more */
            r.finish = SLM_FINISH_STOP;
            break;
        }
        if (r.n_generated >= cfg->max_tokens) break;
        if (s->n_tokens >= s->n_ctx) {
            if (cfg->context_policy == SLM_CTX_ERROR) {
                st = slm_fail(SLM_ERR_CONTEXT,
                              "the context of %d tokens is full (context_policy "
                              "\"error\")",
                              s->n_ctx);
                break;
            }
            st = trim_context(s, &r);
            if (st != SLM_OK) break;
        }
        s->tokens[s->n_tokens] = next;
        st = slm_forward_run(&s->fw, &next, 1, s->n_tokens, s->logits, 0);
        s->n_tokens++;
    }
    slm_text_stream_flush(&s->stream);
    r.decode_ms = slm_now_ms() - t_prefill;
    if (result) *result = r;
    return st;
}

slm_status slm_prompt_logits(slm_session *s, const char *prompt, size_t len, float **logits,
                             size_t *n_tokens, size_t *n_vocab) {
    if (!s || !logits || !n_tokens || !n_vocab || (!prompt && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_prompt_logits: NULL argument");
    *logits = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    SLM_TRY(tokenize_prompt(s, prompt ? prompt : "", len, &ids, &n));
    if (n > (size_t)s->n_ctx) {
        free(ids);
        return slm_fail(SLM_ERR_CONTEXT, "the prompt has %zu tokens; the context holds %d", n,
                        s->n_ctx);
    }
    size_t V = (size_t)s->model->hp.n_vocab;
    float *out = slm_calloc(n * V, sizeof *out);
    if (!out) {
        free(ids);
        return slm_fail(SLM_ERR_NOMEM, "cannot allocate %zu x %zu logits", n, V);
    }
    slm_status st = SLM_OK;
    int32_t nb = s->fw.buf.n_batch;
    for (size_t i = 0; i < n && st == SLM_OK; i += (size_t)nb) {
        int32_t m = (int32_t)(n - i < (size_t)nb ? n - i : (size_t)nb);
        st = slm_forward_run(&s->fw, ids + i, m, (int32_t)i, out + i * V, 1);
    }
    memcpy(s->tokens, ids, n * sizeof *ids);
    s->n_tokens = (int32_t)n;
    free(ids);
    if (st != SLM_OK) {
        free(out);
        return st;
    }
    *logits = out;
    *n_tokens = n;
    *n_vocab = V;
    return SLM_OK;
}

slm_status slm_perplexity(slm_session *s, const char *text, size_t len, int32_t n_ctx,
                          slm_perplexity_result *out) {
    if (!s || !out || (!text && len))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_perplexity: NULL argument");
    memset(out, 0, sizeof *out);
    if (n_ctx < 2 || n_ctx > s->n_ctx)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "perplexity window %d must be between 2 and the session's context %d",
                        n_ctx, s->n_ctx);
    int32_t *ids = NULL;
    size_t n = 0;
    SLM_TRY(
        slm_tokenizer_encode(s->model->tok, text ? text : "", len, SLM_TOKENIZE_ADD_BOS, &ids, &n));
    size_t n_windows = n / (size_t)n_ctx;
    if (n_windows == 0) {
        free(ids);
        return slm_fail(SLM_ERR_INVALID_ARG, "the text has %zu tokens, fewer than one window of %d",
                        n, n_ctx);
    }
    size_t V = (size_t)s->model->hp.n_vocab;
    int32_t nb = s->fw.buf.n_batch;
    float *lg = slm_alloc_aligned((size_t)nb * V, sizeof(float));
    if (!lg) {
        free(ids);
        return slm_fail(SLM_ERR_NOMEM, "cannot allocate logits for perplexity");
    }
    slm_status st = SLM_OK;
    double nll = 0.0;
    int64_t scored = 0;
    for (size_t w = 0; w < n_windows && st == SLM_OK; w++) {
        const int32_t *win = ids + w * (size_t)n_ctx;
        for (int32_t i = 0; i < n_ctx && st == SLM_OK; i += nb) {
            int32_t m = n_ctx - i < nb ? n_ctx - i : nb;
            st = slm_forward_run(&s->fw, win + i, m, i, lg, 1);
            for (int32_t j = 0; st == SLM_OK && j < m; j++) {
                int32_t pos = i + j;
                if (pos >= n_ctx - 1) break;
                const float *row = lg + (size_t)j * V;
                double mx = row[0];
                for (size_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                double sum = 0.0;
                for (size_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
                nll -= (double)row[win[pos + 1]] - mx - log(sum);
                scored++;
            }
        }
    }
    free(lg);
    free(ids);
    s->n_tokens = 0;
    if (st != SLM_OK) return st;
    out->n_scored = scored;
    out->n_windows = (int64_t)n_windows;
    out->nll_mean = nll / (double)scored;
    out->perplexity = exp(out->nll_mean);
    return SLM_OK;
}
