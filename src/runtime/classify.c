/* Intent detection: each label scored by the model's log-probability of
 * producing it after a prompt (all of its tokens, mean per token), then a
 * softmax over the labels. The prompt is evaluated once; each label reuses
 * the cached keys and values and runs only its own tokens. See slm.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "runtime/session.h"

#define LABEL_ROWS_MAX 32 /* label positions whose logits are computed per forward call */

/* ---- the prompt ------------------------------------------------------------------------ */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

slm_status slm_classify_prompt(const char *tmpl, const char *text, size_t len,
                               const char *const *labels, size_t n_labels, char **prompt,
                               size_t *prompt_len) {
    if (!prompt || (!text && len) || (!labels && n_labels))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_classify_prompt: NULL argument");
    *prompt = NULL;
    if (!tmpl) tmpl = SLM_CLASSIFY_DEFAULT_TEMPLATE;
    if (!strstr(tmpl, "{text}"))
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "the prompt template has no '{text}' where the text should go");
    strbuf b = {0};
    for (const char *t = tmpl; *t;) {
        if (!strncmp(t, "{text}", 6)) {
            sb_put(&b, text ? text : "", len);
            t += 6;
        } else if (!strncmp(t, "{labels}", 8)) {
            for (size_t i = 0; i < n_labels; i++) {
                if (i) sb_put(&b, ", ", 2);
                sb_put(&b, labels[i], strlen(labels[i]));
            }
            t += 8;
        } else {
            sb_put(&b, t, 1);
            t++;
        }
    }
    if (!b.p) sb_put(&b, "", 0);
    if (b.oom) {
        free(b.p);
        return slm_fail(SLM_ERR_NOMEM, "out of memory building the prompt");
    }
    *prompt = b.p;
    if (prompt_len) *prompt_len = b.len;
    return SLM_OK;
}

/* ---- evaluation --------------------------------------------------------------------------- */

/* Runs seq[from..to) at those positions with no logits; the session's token
 * list then holds seq[0..to). */
static slm_status run_plain(slm_session *s, const int32_t *seq, int32_t from, int32_t to) {
    int32_t nb = s->fw.buf.n_batch;
    s->n_tokens = from;
    for (int32_t i = from; i < to; i += nb) {
        int32_t m = to - i < nb ? to - i : nb;
        SLM_TRY(slm_forward_run(&s->fw, seq + i, m, i, NULL, 0));
        memcpy(s->tokens + i, seq + i, (size_t)m * sizeof *seq);
        s->n_tokens = i + m;
    }
    return SLM_OK;
}

/* log p(token | row) under softmax(row), in double. */
static double token_logprob(const float *row, int32_t V, int32_t token) {
    double mx = row[0];
    for (int32_t v = 1; v < V; v++)
        if (row[v] > mx) mx = row[v];
    double sum = 0.0;
    for (int32_t v = 0; v < V; v++) sum += exp((double)row[v] - mx);
    return (double)row[token] - mx - log(sum);
}

/* Tokens of a prompt (and label) as the model starts a text: BOS when it
 * adds one, but no end-of-sequence token even when the tokenizer appends
 * one: the label must follow the prompt, and nothing follows the label. */
static slm_status encode_open(const slm_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                              size_t *n) {
    SLM_TRY(slm_tokenizer_encode(tok, text, len, SLM_TOKENIZE_ADD_BOS, ids, n));
    if (slm_tokenizer_add_eos(tok) && *n > 0 && (*ids)[*n - 1] == slm_tokenizer_eos(tok)) (*n)--;
    return SLM_OK;
}

static int32_t common_prefix(const int32_t *a, int32_t na, const int32_t *b, int32_t nb) {
    int32_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* One label: seq[0..n) = prompt and label tokens, seq[c..n) the label's.
 * Sums log p(seq[p+1] | seq[0..p]) over p = c-1 .. n-2, evaluating what
 * the cache lacks. prompt_logits: logits after the prompt's n_p tokens. */
static slm_status score_label(slm_session *s, const int32_t *seq, int32_t n, int32_t c, int32_t n_p,
                              const float *prompt_logits, float *rows, int32_t n_rows, double *sum,
                              int32_t *n_evaluated) {
    const int32_t V = s->model->hp.n_vocab;
    int32_t r = common_prefix(s->tokens, s->n_tokens, seq, n - 1);
    /* the logits at position c-1 are known without running it when the
     * label follows the whole prompt */
    int have_ctx = c == n_p;
    int32_t start = have_ctx ? (r < c ? r : c) : (r < c - 1 ? r : c - 1);
    *sum = 0.0;
    if (start < c - 1) {
        SLM_TRY(run_plain(s, seq, start, c - 1));
        *n_evaluated += c - 1 - start;
        start = c - 1;
    }
    if (start == c) *sum += token_logprob(prompt_logits, V, seq[c]);
    /* positions start .. n-2 with logits; position p predicts seq[p+1] */
    s->n_tokens = start;
    for (int32_t i = start; i < n - 1; i += n_rows) {
        int32_t m = n - 1 - i < n_rows ? n - 1 - i : n_rows;
        SLM_TRY(slm_forward_run(&s->fw, seq + i, m, i, rows, 1));
        memcpy(s->tokens + i, seq + i, (size_t)m * sizeof *seq);
        s->n_tokens = i + m;
        *n_evaluated += m;
        for (int32_t j = 0; j < m; j++)
            *sum += token_logprob(rows + (size_t)j * (size_t)V, V, seq[i + j + 1]);
    }
    return SLM_OK;
}

static int by_score(const void *a, const void *b) {
    const slm_label_score *x = a, *y = b;
    if (x->mean_logprob != y->mean_logprob) return x->mean_logprob > y->mean_logprob ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

void slm_classify_result_free(slm_classify_result *r) {
    if (!r) return;
    free(r->labels);
    memset(r, 0, sizeof *r);
}

static slm_status check_labels(const char *const *labels, size_t n_labels) {
    if (n_labels == 0) return slm_fail(SLM_ERR_INVALID_ARG, "no labels to choose from");
    if (n_labels > SLM_CLASSIFY_MAX_LABELS)
        return slm_fail(SLM_ERR_INVALID_ARG, "%zu labels; at most %d are allowed", n_labels,
                        SLM_CLASSIFY_MAX_LABELS);
    for (size_t i = 0; i < n_labels; i++) {
        if (!labels[i] || !labels[i][0])
            return slm_fail(SLM_ERR_INVALID_ARG, "label %zu is empty", i + 1);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(labels[k], labels[i]))
                return slm_fail(SLM_ERR_INVALID_ARG, "label '%.64s' is given twice", labels[i]);
    }
    return SLM_OK;
}

slm_status slm_classify_raw(slm_session *s, const char *prompt, size_t len,
                            const char *const *labels, size_t n_labels, slm_classify_result *out) {
    if (!s || !out || (!prompt && len) || (!labels && n_labels))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_classify: NULL argument");
    memset(out, 0, sizeof *out);
    SLM_TRY(check_labels(labels, n_labels));
    const slm_tokenizer *tok = s->model->tok;
    const int32_t V = s->model->hp.n_vocab;
    slm_status st = SLM_OK;
    int32_t *p_ids = NULL, **seqs = NULL, *seq_n = NULL, *seq_c = NULL;
    char *joint = NULL;
    float *prompt_logits = NULL, *rows = NULL;
    slm_label_score *sc = NULL;
    size_t n_p = 0;

    st = encode_open(tok, prompt ? prompt : "", len, &p_ids, &n_p);
    if (st != SLM_OK) goto done;
    if (n_p == 0) {
        st = slm_fail(SLM_ERR_INVALID_ARG,
                      "the prompt is empty and the model adds no BOS token to score labels after");
        goto done;
    }
    if (n_p > (size_t)s->n_ctx) {
        st = slm_fail(SLM_ERR_CONTEXT, "the prompt has %zu tokens; the context holds %d", n_p,
                      s->n_ctx);
        goto done;
    }
    seqs = calloc(n_labels, sizeof *seqs);
    seq_n = calloc(n_labels, sizeof *seq_n);
    seq_c = calloc(n_labels, sizeof *seq_c);
    sc = calloc(n_labels, sizeof *sc);
    if (!seqs || !seq_n || !seq_c || !sc) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* each label's tokens: prompt + " " + label tokenized whole, after the
     * longest common prefix with the prompt's tokens */
    int32_t max_label = 1;
    for (size_t i = 0; i < n_labels; i++) {
        size_t ll = strlen(labels[i]);
        char *nj = realloc(joint, len + ll + 2);
        if (!nj) {
            st = slm_fail(SLM_ERR_NOMEM, "out of memory");
            goto done;
        }
        joint = nj;
        if (len) memcpy(joint, prompt, len);
        joint[len] = ' ';
        memcpy(joint + len + 1, labels[i], ll + 1);
        size_t nj_ids = 0;
        st = encode_open(tok, joint, len + 1 + ll, &seqs[i], &nj_ids);
        if (st != SLM_OK) goto done;
        if (nj_ids > (size_t)s->n_ctx + 1) {
            st = slm_fail(SLM_ERR_CONTEXT,
                          "the prompt and label '%.64s' take %zu tokens; the context holds %d",
                          labels[i], nj_ids, s->n_ctx);
            goto done;
        }
        int32_t n = (int32_t)nj_ids;
        int32_t c = common_prefix(p_ids, (int32_t)n_p, seqs[i], n);
        if (c == 0 || c == n) {
            st = slm_fail(SLM_ERR_INVALID_ARG,
                          c == 0 ? "label '%.64s' merges with the start of the prompt; there is "
                                   "nothing before it to score it after"
                                 : "label '%.64s' adds no tokens to the prompt",
                          labels[i]);
            goto done;
        }
        seq_n[i] = n;
        seq_c[i] = c;
        if (n - c > max_label) max_label = n - c;
    }

    /* the prompt, once (reusing what the cache shares with it) */
    int32_t reuse = common_prefix(s->tokens, s->n_tokens, p_ids, (int32_t)n_p - 1);
    st = run_plain(s, p_ids, reuse, (int32_t)n_p - 1);
    if (st != SLM_OK) goto done;
    prompt_logits = slm_alloc_aligned((size_t)V, sizeof(float));
    int32_t n_rows = max_label < LABEL_ROWS_MAX ? max_label : LABEL_ROWS_MAX;
    if (n_rows > s->fw.buf.n_batch) n_rows = s->fw.buf.n_batch;
    rows = slm_alloc_aligned((size_t)n_rows * (size_t)V, sizeof(float));
    if (!prompt_logits || !rows) {
        st = slm_fail(SLM_ERR_NOMEM, "cannot allocate logits for %d labels tokens", n_rows);
        goto done;
    }
    st = slm_forward_run(&s->fw, p_ids + n_p - 1, 1, (int32_t)n_p - 1, prompt_logits, 0);
    if (st != SLM_OK) goto done;
    s->tokens[n_p - 1] = p_ids[n_p - 1];
    s->n_tokens = (int32_t)n_p;
    out->n_evaluated = (int32_t)n_p - reuse;
    out->n_prompt_tokens = (int32_t)n_p;

    /* labels that follow the whole prompt first, while the prompt is cached */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n_labels; i++) {
            if ((seq_c[i] == (int32_t)n_p) != (pass == 0)) continue;
            double sum = 0.0;
            st = score_label(s, seqs[i], seq_n[i], seq_c[i], (int32_t)n_p, prompt_logits, rows,
                             n_rows, &sum, &out->n_evaluated);
            if (st != SLM_OK) goto done;
            sc[i].label = labels[i];
            sc[i].index = i;
            sc[i].n_tokens = seq_n[i] - seq_c[i];
            sc[i].logprob = sum;
            sc[i].mean_logprob = sum / sc[i].n_tokens;
            out->n_label_tokens += sc[i].n_tokens;
        }
    }
    /* softmax of the scores */
    double mx = -INFINITY;
    for (size_t i = 0; i < n_labels; i++)
        if (sc[i].mean_logprob > mx) mx = sc[i].mean_logprob;
    double z = 0.0;
    for (size_t i = 0; i < n_labels; i++) z += exp(sc[i].mean_logprob - mx);
    for (size_t i = 0; i < n_labels; i++) sc[i].probability = exp(sc[i].mean_logprob - mx) / z;
    qsort(sc, n_labels, sizeof *sc, by_score);
    out->labels = sc;
    out->n_labels = n_labels;
    sc = NULL;
done:
    if (st != SLM_OK) memset(out, 0, sizeof *out);
    if (seqs)
        for (size_t i = 0; i < n_labels; i++) free(seqs[i]);
    free(seqs);
    free(seq_n);
    free(seq_c);
    free(sc);
    free(joint);
    free(p_ids);
    free(prompt_logits);
    free(rows);
    return st;
}

slm_status slm_classify(slm_session *s, const char *text, size_t len, const char *const *labels,
                        size_t n_labels, const char *tmpl, slm_classify_result *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!s || !out || (!text && len) || (!labels && n_labels))
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_classify: NULL argument");
    SLM_TRY(check_labels(labels, n_labels));
    char *prompt = NULL;
    size_t plen = 0;
    SLM_TRY(slm_classify_prompt(tmpl, text, len, labels, n_labels, &prompt, &plen));
    slm_status st = slm_classify_raw(s, prompt, plen, labels, n_labels, out);
    free(prompt);
    return st;
}
