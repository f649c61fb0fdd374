#include "runtime/constrain.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/status.h"
#include "grammar/grammar.h"

struct slm_constraint {
    const slm_tokenizer *tok;
    slm_gvocab *vocab;
    slm_grammar *g;
    slm_gmatch *m;
    int kind;
    char *text; /* what g was compiled from */
    double mask_ms;
};

static const char *kind_key(int kind) {
    return kind == SLM_GRAMMAR_GBNF          ? "grammar"
           : kind == SLM_GRAMMAR_JSON_SCHEMA ? "json_schema"
                                             : "json_object";
}

/* Compiles a config's settings to a grammar. */
static slm_status compile(int kind, const char *text, slm_grammar **out) {
    *out = NULL;
    if (kind == SLM_GRAMMAR_GBNF) return slm_grammar_parse(text, strlen(text), out);
    if (kind == SLM_GRAMMAR_JSON_OBJECT) {
        const char *g = slm_json_object_gbnf();
        return slm_grammar_parse(g, strlen(g), out);
    }
    char *gbnf = NULL;
    SLM_TRY(slm_json_schema_to_gbnf(text, strlen(text), &gbnf));
    slm_status st = slm_grammar_parse(gbnf, strlen(gbnf), out);
    free(gbnf);
    if (st != SLM_OK) return slm_fail_prefix(st, "json_schema: the generated grammar");
    return SLM_OK;
}

slm_status slm_constraint_check(int kind, const char *text) {
    if (kind == SLM_GRAMMAR_NONE) return SLM_OK;
    slm_grammar *g = NULL;
    slm_status st = compile(kind, text ? text : "", &g);
    slm_grammar_free(g);
    if (st != SLM_OK) return slm_fail_prefix(st, "config key '%s'", kind_key(kind));
    return SLM_OK;
}

void slm_constraint_free(slm_constraint *c) {
    if (!c) return;
    slm_gmatch_free(c->m);
    slm_grammar_free(c->g);
    slm_gvocab_free(c->vocab);
    free(c->text);
    free(c);
}

slm_status slm_constraint_update(slm_constraint **cp, const slm_tokenizer *tok,
                                 const slm_config *cfg) {
    slm_constraint *c = *cp;
    int kind = cfg->grammar_kind;
    const char *text = kind == SLM_GRAMMAR_JSON_OBJECT ? "" : cfg->grammar;
    if (!c && kind == SLM_GRAMMAR_NONE) return SLM_OK;
    if (c && c->kind == kind && (kind == SLM_GRAMMAR_NONE || !strcmp(c->text, text))) return SLM_OK;
    slm_grammar *g = NULL;
    slm_gmatch *m = NULL;
    char *copy = NULL;
    if (kind != SLM_GRAMMAR_NONE) {
        slm_status st = compile(kind, text, &g);
        if (st != SLM_OK) return slm_fail_prefix(st, "config key '%s'", kind_key(kind));
        copy = slm_strndup(text, strlen(text));
        if (!copy || slm_gmatch_new(g, &m) != SLM_OK) {
            free(copy);
            slm_grammar_free(g);
            return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
        }
    }
    if (!c) {
        c = slm_calloc(1, sizeof *c);
        if (!c) {
            slm_gmatch_free(m);
            slm_grammar_free(g);
            free(copy);
            return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
        }
        *cp = c;
    }
    if (kind != SLM_GRAMMAR_NONE && (!c->vocab || c->tok != tok)) {
        slm_gvocab_free(c->vocab);
        c->vocab = NULL;
        slm_status st = slm_gvocab_new(tok, &c->vocab);
        if (st != SLM_OK) {
            slm_gmatch_free(m);
            slm_grammar_free(g);
            free(copy);
            return st;
        }
        c->tok = tok;
    }
    slm_gmatch_free(c->m);
    slm_grammar_free(c->g);
    free(c->text);
    c->m = m;
    c->g = g;
    c->text = copy;
    c->kind = kind;
    return SLM_OK;
}

int slm_constraint_active(const slm_constraint *c) {
    return c && c->g;
}

void slm_constraint_begin(slm_constraint *c) {
    if (slm_constraint_active(c)) slm_gmatch_reset(c->m);
}

int slm_constraint_done(const slm_constraint *c) {
    return slm_constraint_active(c) && slm_gmatch_is_done(c->m);
}

double slm_constraint_mask_ms(const slm_constraint *c) {
    return c ? c->mask_ms : 0.0;
}

slm_status slm_constraint_sample(slm_constraint *c, slm_sampler *smp, float *logits,
                                 const int32_t *recent, int32_t n_recent, int32_t *out) {
    const slm_sampler_params *p = &smp->params;
    int32_t n = smp->n_vocab;
    if (slm_gvocab_n_vocab(c->vocab) < n) n = slm_gvocab_n_vocab(c->vocab);
    double t0 = slm_now_ms();
    /* Greedy without penalties: the best token is the answer if the grammar
     * takes it (then it is also the best of the masked logits). */
    if (p->temperature <= 0.0f && p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
        p->frequency_penalty == 0.0f) {
        int32_t best = slm_sampler_argmax(smp, logits, smp->n_vocab);
        if (slm_gmatch_accept_token(c->m, c->vocab, best)) {
            c->mask_ms += slm_now_ms() - t0;
            *out = best;
            return SLM_OK;
        }
    }
    const uint32_t *bits = NULL;
    int32_t allowed = slm_gmatch_mask(c->m, c->vocab, &bits);
    if (allowed < 0)
        return slm_fail(SLM_ERR_NOMEM,
                        "grammar: out of memory (or the output nests more than 20000 "
                        "levels) computing a mask");
    if (allowed == 0)
        return slm_fail(SLM_ERR_CONFIG,
                        "grammar: no token of the vocabulary can continue the output here (the "
                        "grammar needs bytes no token produces)");
    for (int32_t i = 0; i < smp->n_vocab; i++)
        if (i >= n || !((bits[i >> 5] >> (i & 31)) & 1)) logits[i] = -INFINITY;
    c->mask_ms += slm_now_ms() - t0;
    int32_t next = slm_sampler_sample(smp, logits, recent, n_recent);
    if (next < 0 || next >= n || !((bits[next >> 5] >> (next & 31)) & 1) ||
        !isfinite(logits[next]) || !slm_gmatch_accept_token(c->m, c->vocab, next))
        return slm_fail(SLM_ERR_INTERNAL,
                        "grammar: the sampler picked token %d outside the grammar's mask", next);
    *out = next;
    return SLM_OK;
}

/* ------------------------------------------------------------ config */

int slm_constraint_is_key(const char *key) {
    return !strcmp(key, "grammar") || !strcmp(key, "json_schema") || !strcmp(key, "json_object") ||
           !strcmp(key, "response_format");
}

static slm_status set_text(slm_config *c, int kind, const char *key, const char *text) {
    size_t n = strlen(text);
    if (n > SLM_MAX_GRAMMAR_TEXT)
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': longer than %d bytes", key,
                        SLM_MAX_GRAMMAR_TEXT);
    slm_status st = slm_constraint_check(kind, text);
    if (st != SLM_OK) return st;
    memcpy(c->grammar, text, n + 1);
    c->grammar_kind = kind;
    return SLM_OK;
}

static slm_status set_schema(slm_config *c, const char *key, const cJSON *schema) {
    if (!cJSON_IsObject(schema) && !cJSON_IsTrue(schema))
        return slm_fail(SLM_ERR_CONFIG, "config key '%s': the schema must be a JSON object", key);
    char *txt = cJSON_PrintUnformatted(schema);
    if (!txt) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    slm_status st = set_text(c, SLM_GRAMMAR_JSON_SCHEMA, key, txt);
    free(txt);
    if (st != SLM_OK && strcmp(key, "json_schema"))
        return slm_fail_prefix(st, "config key '%s'", key);
    return st;
}

static void clear(slm_config *c) {
    c->grammar_kind = SLM_GRAMMAR_NONE;
    c->grammar[0] = '\0';
}

slm_status slm_constraint_apply_key(slm_config *c, const cJSON *it) {
    const char *k = it->string;
    if (!strcmp(k, "grammar")) {
        if (cJSON_IsNull(it) || (cJSON_IsString(it) && !it->valuestring[0])) {
            clear(c);
            return SLM_OK;
        }
        if (!cJSON_IsString(it))
            return slm_fail(SLM_ERR_CONFIG, "config key 'grammar': expected GBNF text (a string)");
        return set_text(c, SLM_GRAMMAR_GBNF, "grammar", it->valuestring);
    }
    if (!strcmp(k, "json_schema")) {
        if (cJSON_IsNull(it)) {
            clear(c);
            return SLM_OK;
        }
        return set_schema(c, "json_schema", it);
    }
    if (!strcmp(k, "json_object")) {
        if (!cJSON_IsBool(it))
            return slm_fail(SLM_ERR_CONFIG, "config key 'json_object': expected true or false");
        if (cJSON_IsTrue(it)) {
            clear(c);
            c->grammar_kind = SLM_GRAMMAR_JSON_OBJECT;
        } else if (c->grammar_kind == SLM_GRAMMAR_JSON_OBJECT) {
            clear(c);
        }
        return SLM_OK;
    }
    /* response_format: {"type": "text" | "json_object" | "json_schema", "json_schema": {...}} */
    if (cJSON_IsNull(it)) {
        clear(c);
        return SLM_OK;
    }
    if (!cJSON_IsObject(it))
        return slm_fail(SLM_ERR_CONFIG, "config key 'response_format': expected an object");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "type");
    if (!cJSON_IsString(t))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': 'type' must be \"text\", \"json_object\" "
                        "or \"json_schema\"");
    const cJSON *f;
    cJSON_ArrayForEach(f, it) {
        if (strcmp(f->string, "type") && strcmp(f->string, "json_schema"))
            return slm_fail(SLM_ERR_CONFIG, "config key 'response_format': unknown field '%s'",
                            f->string);
    }
    if (!strcmp(t->valuestring, "text")) {
        clear(c);
        return SLM_OK;
    }
    if (!strcmp(t->valuestring, "json_object")) {
        clear(c);
        c->grammar_kind = SLM_GRAMMAR_JSON_OBJECT;
        return SLM_OK;
    }
    if (strcmp(t->valuestring, "json_schema"))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': type \"%s\" (expected \"text\", "
                        "\"json_object\" or \"json_schema\")",
                        t->valuestring);
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(it, "json_schema");
    if (!cJSON_IsObject(js))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': type json_schema needs a 'json_schema' "
                        "object with a 'schema'");
    cJSON_ArrayForEach(f, js) {
        if (strcmp(f->string, "name") && strcmp(f->string, "schema") &&
            strcmp(f->string, "strict") && strcmp(f->string, "description"))
            return slm_fail(SLM_ERR_CONFIG,
                            "config key 'response_format': unknown field 'json_schema.%s'",
                            f->string);
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(js, "name");
    if (name && !cJSON_IsString(name))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': 'json_schema.name' must be a string");
    const cJSON *strict = cJSON_GetObjectItemCaseSensitive(js, "strict");
    if (strict && !cJSON_IsBool(strict) && !cJSON_IsNull(strict))
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': 'json_schema.strict' must be a boolean");
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(js, "schema");
    if (!schema)
        return slm_fail(SLM_ERR_CONFIG,
                        "config key 'response_format': 'json_schema.schema' is missing");
    return set_schema(c, "response_format", schema);
}

void slm_constraint_to_json(const slm_config *c, cJSON *o) {
    if (c->grammar_kind == SLM_GRAMMAR_GBNF) {
        cJSON_AddStringToObject(o, "grammar", c->grammar);
    } else if (c->grammar_kind == SLM_GRAMMAR_JSON_OBJECT) {
        cJSON_AddBoolToObject(o, "json_object", 1);
    } else if (c->grammar_kind == SLM_GRAMMAR_JSON_SCHEMA) {
        cJSON *s = cJSON_Parse(c->grammar);
        if (s) cJSON_AddItemToObject(o, "json_schema", s);
    }
}

/* ------------------------------------------------------------ public */

slm_status slm_json_schema_to_grammar(const char *schema, size_t len, char **gbnf) {
    if (!schema || !gbnf)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_json_schema_to_grammar: NULL argument");
    SLM_TRY(slm_json_schema_to_gbnf(schema, len, gbnf));
    slm_grammar *g = NULL;
    slm_status st = slm_grammar_parse(*gbnf, strlen(*gbnf), &g);
    slm_grammar_free(g);
    if (st != SLM_OK) {
        free(*gbnf);
        *gbnf = NULL;
        return slm_fail_prefix(st, "json_schema: the generated grammar");
    }
    return SLM_OK;
}

slm_status slm_grammar_check(const char *gbnf, size_t len) {
    if (!gbnf) return slm_fail(SLM_ERR_INVALID_ARG, "slm_grammar_check: NULL argument");
    slm_grammar *g = NULL;
    slm_status st = slm_grammar_parse(gbnf, len, &g);
    slm_grammar_free(g);
    return st;
}
