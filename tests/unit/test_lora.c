/* LoRA adapters over small random models made here: run-time application
 * equals merging, scale 0 is the base model bit for bit, several adapters,
 * switching on one session, quantized bases, config, malformed adapters. */
#include <math.h>
#include <stdio.h>

#include "check.h"
#include "logits.h"
#include "textbuf.h"
#include "format/gguf.h"
#include "quant/types.h"
#include "testmodel.h"

#define DIM 64
#define FFN 128
#define LAYERS 2
#define HEADS 4
#define KV_HEADS 2
#define KV_DIM (DIM / HEADS * KV_HEADS)

static const char *PROMPT = "the day she was in the park and he";

/* One adapter target: blk.<layer>.<stem>.weight with rank r. */
typedef struct target {
    int layer;
    const char *stem;
    int r;
} target;

typedef enum fault {
    F_NONE = 0,
    F_SHAPE,       /* lora_a has n_in + 1 columns */
    F_RANK,        /* lora_b has rank r + 1 */
    F_UNKNOWN,     /* targets blk.<LAYERS>.attn_q.weight, absent from the base */
    F_NO_ALPHA,    /* adapter.lora.alpha missing */
    F_NOT_ADAPTER, /* general.type = "model" */
    F_NO_PARTNER,  /* lora_b missing */
    F_F16,         /* valid: A and B stored as f16 */
    F_BF16,        /* valid: A and B stored as bf16 */
} fault;

/* Shapes of the model adapters are written for (test_threads changes them). */
static int64_t g_dim = DIM, g_ffn = FFN, g_kv = KV_DIM;

static void stem_dims(const char *stem, int64_t *n_in, int64_t *n_out) {
    *n_in = !strcmp(stem, "ffn_down") ? g_ffn : g_dim;
    *n_out = !strcmp(stem, "attn_k") || !strcmp(stem, "attn_v")     ? g_kv
             : !strcmp(stem, "ffn_gate") || !strcmp(stem, "ffn_up") ? g_ffn
                                                                    : g_dim;
}

/* Writes an adapter with random A and B as llama.cpp names and shapes them. */
static slm_status write_adapter(const char *path, const target *ts, int n, float alpha,
                                unsigned long long seed, fault f) {
    gguf_writer *w = NULL;
    slm_status st = gguf_writer_new(&w);
    if (st != SLM_OK) return st;
    check_rng rng = {seed};
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.type", f == F_NOT_ADAPTER ? "model" : "adapter");
    gguf_writer_set_str(w, "adapter.type", "lora");
    if (f != F_NO_ALPHA) gguf_writer_set_f32(w, "adapter.lora.alpha", alpha);
    for (int i = 0; i < n && st == SLM_OK; i++) {
        int64_t n_in = 0, n_out = 0;
        stem_dims(ts[i].stem, &n_in, &n_out);
        int layer = f == F_UNKNOWN && i == 0 ? LAYERS : ts[i].layer;
        uint64_t ra = (uint64_t)ts[i].r, rb = ra + (f == F_RANK && i == 0 ? 1 : 0);
        uint64_t na = (uint64_t)n_in + (f == F_SHAPE && i == 0 ? 1 : 0);
        uint64_t ne_a[2] = {na, ra}, ne_b[2] = {rb, (uint64_t)n_out};
        size_t ca = (size_t)(ne_a[0] * ne_a[1]), cb = (size_t)(ne_b[0] * ne_b[1]);
        float *a = malloc(ca * sizeof *a), *b = malloc(cb * sizeof *b);
        uint16_t *h = malloc((ca > cb ? ca : cb) * sizeof *h);
        for (size_t k = 0; k < ca; k++) a[k] = 0.1f * check_rng_normal(&rng);
        for (size_t k = 0; k < cb; k++) b[k] = 0.1f * check_rng_normal(&rng);
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", layer, ts[i].stem);
        uint32_t half = f == F_F16 ? SLM_TYPE_F16 : SLM_TYPE_BF16;
        if (f == F_F16 || f == F_BF16) {
            slm_quantize_row_ref(half, a, h, (int64_t)ca, NULL);
            st = gguf_writer_add_tensor(w, name, half, 2, ne_a, h, ca * 2);
        } else {
            st = gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_a, a, ca * 4);
        }
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", layer, ts[i].stem);
        if (st == SLM_OK && !(f == F_NO_PARTNER && i == 0)) {
            if (f == F_F16 || f == F_BF16) {
                slm_quantize_row_ref(half, b, h, (int64_t)cb, NULL);
                st = gguf_writer_add_tensor(w, name, half, 2, ne_b, h, cb * 2);
            } else {
                st = gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_b, b, cb * 4);
            }
        }
        free(a);
        free(b);
        free(h);
    }
    if (st == SLM_OK) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return st;
}

static slm_config *config(const char *json) {
    slm_config *c = NULL;
    if (slm_config_new(&c) != SLM_OK) return NULL;
    if (json && slm_config_apply_json(c, json, strlen(json)) != SLM_OK)
        fprintf(stderr, "config: %s\n", slm_last_error());
    return c;
}

/* Prompt logits of a session (adapters[0..n) with scales), malloc'd. */
static float *logits_of(slm_model *m, const char *json, const slm_adapter *const *ads,
                        const float *scales, size_t n, size_t *count) {
    return slm_test_prompt_logits(m, json, PROMPT, ads, scales, n, count);
}

static float *logits_file(const char *path, size_t *count) {
    slm_model *m = NULL;
    if (slm_model_load(path, NULL, &m) != SLM_OK) {
        CHECK_MSG(0, "load %s: %s", path, slm_last_error());
        return NULL;
    }
    float *lg = logits_of(m, NULL, NULL, NULL, 0, count);
    slm_model_free(m);
    return lg;
}

static const target T1[] = {{0, "attn_q", 8},      {0, "attn_v", 4},   {1, "attn_k", 16},
                            {1, "attn_output", 8}, {0, "ffn_gate", 8}, {1, "ffn_up", 4},
                            {0, "ffn_down", 12}};
static const target T2[] = {{1, "attn_q", 4}, {0, "ffn_up", 8}, {1, "ffn_down", 16}};

static void gen(slm_session *s, slm_test_text *out) {
    memset(out, 0, sizeof *out);
    slm_result r;
    CHECK_OK(slm_generate(s, PROMPT, strlen(PROMPT), slm_test_collect, out, &r));
}

static void test_f32_base(const char *base, const char *ad1, const char *ad2) {
    char m1[512], m12[512], cfgjson[1200];
    check_tmp_path("lora-merged1.gguf", m1, sizeof m1);
    check_tmp_path("lora-merged12.gguf", m12, sizeof m12);

    slm_model *m = NULL;
    CHECK_OK(slm_model_load(base, NULL, &m));
    if (!m) return;
    slm_adapter *a1 = NULL, *a2 = NULL;
    CHECK_OK(slm_adapter_load(m, ad1, &a1));
    CHECK_OK(slm_adapter_load(m, ad2, &a2));
    if (!a1 || !a2) goto done;

    size_t n0 = 0, n1 = 0, nm = 0, nz = 0;
    float *base_lg = logits_of(m, NULL, NULL, NULL, 0, &n0);
    const slm_adapter *one[1] = {a1};
    float s1[1] = {1.0f}, s0[1] = {0.0f};
    float *ad_lg = logits_of(m, NULL, one, s1, 1, &n1);
    CHECK_OK(slm_adapter_merge_file(base, ad1, m1, 1.0f, NULL));
    float *merged_lg = logits_file(m1, &nm);
    float *zero_lg = logits_of(m, NULL, one, s0, 1, &nz);
    if (base_lg && ad_lg && merged_lg && zero_lg && n0 == n1 && n0 == nm && n0 == nz) {
        double effect = slm_test_max_abs_diff(ad_lg, base_lg, n0);
        double err = slm_test_max_abs_diff(ad_lg, merged_lg, n0);
        printf("f32 base: adapter moves logits by %.4g; adapter vs merged %.3g\n", effect, err);
        CHECK_MSG(effect > 0.05, "the adapter barely changes the logits (%g)", effect);
        CHECK_MSG(err < 1e-4 * fmax(1.0, slm_test_max_abs(merged_lg, n0)), "adapter vs merged: %g",
                  err);
        CHECK_MSG(memcmp(zero_lg, base_lg, n0 * sizeof *base_lg) == 0,
                  "scale 0 is not bit-identical to the base model");
    }
    free(ad_lg);
    free(zero_lg);

    /* Two adapters at once (scales 1 and 0.5) equal merging both in turn. */
    const slm_adapter *both[2] = {a1, a2};
    float s12[2] = {1.0f, 0.5f};
    size_t nb = 0, n12 = 0;
    float *both_lg = logits_of(m, NULL, both, s12, 2, &nb);
    CHECK_OK(slm_adapter_merge_file(m1, ad2, m12, 0.5f, NULL));
    float *m12_lg = logits_file(m12, &n12);
    if (both_lg && m12_lg && nb == n12) {
        double err = slm_test_max_abs_diff(both_lg, m12_lg, nb);
        printf("two adapters vs merged twice: %.3g\n", err);
        CHECK_MSG(err < 1e-4 * fmax(1.0, slm_test_max_abs(m12_lg, nb)),
                  "two adapters vs merged: %g", err);
        CHECK(slm_test_max_abs_diff(both_lg, merged_lg, nb) > 0.01);
    }
    free(both_lg);
    free(m12_lg);

    /* The config's "adapters" load and apply the same. */
    snprintf(cfgjson, sizeof cfgjson,
             "{\"threads\":2,\"adapters\":[{\"path\":\"%s\",\"scale\":1},{\"path\":\"%s\","
             "\"scale\":0.5}]}",
             ad1, ad2);
    size_t nc = 0;
    float *cfg_lg = logits_of(m, cfgjson, NULL, NULL, 0, &nc);
    float *ref_lg = logits_of(m, NULL, both, s12, 2, &nb);
    CHECK(cfg_lg && ref_lg && nc == nb && memcmp(cfg_lg, ref_lg, nc * sizeof *cfg_lg) == 0);
    free(cfg_lg);
    free(ref_lg);
    snprintf(cfgjson, sizeof cfgjson, "{\"threads\":2,\"adapters\":[\"%s\"]}", ad1);
    cfg_lg = logits_of(m, cfgjson, NULL, NULL, 0, &nc);
    CHECK(cfg_lg && merged_lg && nc == nm && slm_test_max_abs_diff(cfg_lg, merged_lg, nc) < 1e-3);
    free(cfg_lg);

    /* Switching adapters on one session between generations: each
     * generation gets its own adapter's output (the cache is not reused). */
    {
        slm_config *c = config("{\"threads\":2,\"temperature\":0,\"max_tokens\":24}");
        slm_session *s = NULL, *fresh = NULL;
        CHECK_OK(slm_session_new(m, c, &s));
        slm_test_text t1, t2, t0, t1b, f1, f2;
        const slm_adapter *two[1] = {a2};
        CHECK_OK(slm_session_set_adapters(s, one, s1, 1));
        gen(s, &t1);
        CHECK_OK(slm_session_set_adapters(s, two, s1, 1));
        gen(s, &t2);
        CHECK_OK(slm_session_set_adapters(s, NULL, NULL, 0));
        gen(s, &t0);
        CHECK_OK(slm_session_set_adapters(s, one, s1, 1));
        gen(s, &t1b);
        CHECK_OK(slm_session_new(m, c, &fresh));
        CHECK_OK(slm_session_set_adapters(fresh, one, s1, 1));
        gen(fresh, &f1);
        CHECK_OK(slm_session_set_adapters(fresh, two, s1, 1));
        slm_session_free(fresh);
        fresh = NULL;
        CHECK_OK(slm_session_new(m, c, &fresh));
        CHECK_OK(slm_session_set_adapters(fresh, two, s1, 1));
        gen(fresh, &f2);
        slm_session_free(fresh);
        fresh = NULL;
        slm_test_text b0;
        CHECK_OK(slm_session_new(m, c, &fresh));
        gen(fresh, &b0);
        printf("switching: a1 \"%s\" | a2 \"%s\" | none \"%s\"\n", t1.s, t2.s, t0.s);
        CHECK(!strcmp(t1.s, f1.s));
        CHECK(!strcmp(t2.s, f2.s));
        CHECK(!strcmp(t0.s, b0.s));
        CHECK(!strcmp(t1b.s, t1.s));
        CHECK_MSG(strcmp(t1.s, t2.s) || strcmp(t1.s, t0.s), "adapters change nothing");
        /* "adapters" cannot change through slm_session_configure */
        char js[1100];
        snprintf(js, sizeof js, "{\"adapters\":[\"%s\"]}", ad1);
        CHECK_ERR(slm_session_configure(s, js, strlen(js)), SLM_ERR_CONFIG, "adapters");
        slm_session_free(fresh);
        slm_session_free(s);
        slm_config_free(c);
    }
    free(base_lg);
    free(merged_lg);
done:
    slm_adapter_free(a1);
    slm_adapter_free(a2);
    slm_model_free(m);
}

/* q8_0 base: the adapter (f32) beside quantized weights is close to the
 * merged model re-quantized to q8_0, and equal to a merge kept in f32. */
static void test_q8_base(const char *ad1) {
    char base[512], mq[512], mf[512];
    check_tmp_path("lora-base-q8.gguf", base, sizeof base);
    check_tmp_path("lora-merged-q8.gguf", mq, sizeof mq);
    check_tmp_path("lora-merged-q8-f32.gguf", mf, sizeof mf);
    slm_test_model_params p = {.dim = DIM,
                               .n_layers = LAYERS,
                               .n_heads = HEADS,
                               .n_kv_heads = KV_HEADS,
                               .ffn_dim = FFN,
                               .wtype = SLM_TYPE_Q8_0,
                               .seed = 7};
    CHECK_OK(slm_test_write_model(base, &p));
    slm_model *m = NULL;
    slm_adapter *a = NULL;
    CHECK_OK(slm_model_load(base, NULL, &m));
    if (m) CHECK_OK(slm_adapter_load(m, ad1, &a));
    if (!a) {
        slm_model_free(m);
        return;
    }
    const slm_adapter *one[1] = {a};
    float s1[1] = {1.0f};
    size_t n0 = 0, n1 = 0, nq = 0;
    float *base_lg = logits_of(m, NULL, NULL, NULL, 0, &n0);
    float *ad_lg = logits_of(m, NULL, one, s1, 1, &n1);
    CHECK_OK(slm_adapter_merge_file(base, ad1, mq, 1.0f, NULL));
    float *mq_lg = logits_file(mq, &nq);
    if (base_lg && ad_lg && mq_lg && n0 == n1 && n0 == nq) {
        double effect = slm_test_max_abs_diff(ad_lg, base_lg, n0),
               err = slm_test_max_abs_diff(ad_lg, mq_lg, n0);
        printf("q8_0 base: adapter moves logits by %.4g; adapter vs merged (q8_0) %.3g\n", effect,
               err);
        CHECK(effect > 0.05);
        CHECK_MSG(err < 0.1 * effect, "q8_0: adapter vs merged %g (effect %g)", err, effect);
    }
    /* --type changes the merged matrices' type: f32 merged matrices. */
    CHECK_OK(slm_adapter_merge_file(base, ad1, mf, 1.0f, "f32"));
    slm_model *mm = NULL;
    CHECK_OK(slm_model_load(mf, NULL, &mm));
    if (mm) {
        size_t nt = slm_model_n_tensors(mm);
        int n_f32 = 0, n_q8 = 0;
        for (size_t i = 0; i < nt; i++) {
            slm_tensor_info ti;
            if (slm_model_tensor(mm, i, &ti) != SLM_OK || ti.n_dims != 2) continue;
            if (strstr(ti.name, "blk.0.attn_q.weight")) CHECK(!strcmp(ti.type, "f32"));
            if (strstr(ti.name, "blk.1.attn_q.weight")) CHECK(!strcmp(ti.type, "q8_0"));
            n_f32 += !strcmp(ti.type, "f32");
            n_q8 += !strcmp(ti.type, "q8_0");
        }
        CHECK(n_f32 >= 7 && n_q8 > 0);
        slm_model_free(mm);
    }
    CHECK_ERR(slm_adapter_merge_file(base, ad1, mf, 1.0f, "nonsense"), SLM_ERR_UNSUPPORTED,
              "nonsense");
    CHECK_ERR(slm_adapter_merge_file(base, ad1, base, 1.0f, NULL), SLM_ERR_INVALID_ARG, "differ");
    free(base_lg);
    free(ad_lg);
    free(mq_lg);
    slm_adapter_free(a);
    slm_model_free(m);
}

static void test_malformed(const char *base, const char *ad1) {
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(base, NULL, &m));
    if (!m) return;
    char path[512];
    check_tmp_path("lora-bad.gguf", path, sizeof path);
    static const struct {
        fault f;
        slm_status st;
        const char *needle;
    } cases[] = {
        {F_SHAPE, SLM_ERR_FORMAT, "blk.0.attn_q.weight': lora_a has shape [65, 8]"},
        {F_RANK, SLM_ERR_FORMAT, "same rank"},
        {F_UNKNOWN, SLM_ERR_FORMAT, "targets 'blk.2.attn_q.weight', which the base model"},
        {F_NO_ALPHA, SLM_ERR_FORMAT, "adapter.lora.alpha"},
        {F_NOT_ADAPTER, SLM_ERR_FORMAT, "not a LoRA adapter: general.type is \"model\""},
        {F_NO_PARTNER, SLM_ERR_FORMAT, "has no partner 'blk.0.attn_q.weight.lora_b'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_OK(write_adapter(path, T1, 3, 16.0f, 11, cases[i].f));
        slm_adapter *a = NULL;
        CHECK_ERR(slm_adapter_load(m, path, &a), cases[i].st, cases[i].needle);
        CHECK_ERR(slm_adapter_load(m, path, &a), cases[i].st, path); /* names the file */
        CHECK(a == NULL);
        /* the config path refuses it too, and the session is not created */
        char js[1100];
        snprintf(js, sizeof js, "{\"adapters\":[\"%s\"]}", path);
        slm_config *c = config(js);
        slm_session *s = NULL;
        CHECK_ERR(slm_session_new(m, c, &s), cases[i].st, cases[i].needle);
        CHECK(s == NULL);
        slm_config_free(c);
    }
    /* f16 and bf16 adapters give (nearly) the f32 adapter's logits */
    {
        char p32[512];
        check_tmp_path("lora-same-f32.gguf", p32, sizeof p32);
        CHECK_OK(write_adapter(p32, T1, 3, 16.0f, 11, F_NONE));
        slm_adapter *a32 = NULL;
        CHECK_OK(slm_adapter_load(m, p32, &a32));
        const slm_adapter *one[1] = {a32};
        float s1[1] = {1.0f};
        size_t n32 = 0, n0 = 0;
        float *lg32 = logits_of(m, NULL, one, s1, 1, &n32);
        float *lg0 = logits_of(m, NULL, NULL, NULL, 0, &n0);
        fault halves[2] = {F_F16, F_BF16};
        for (int k = 0; k < 2; k++) {
            CHECK_OK(write_adapter(path, T1, 3, 16.0f, 11, halves[k]));
            slm_adapter *a = NULL;
            CHECK_OK(slm_adapter_load(m, path, &a));
            one[0] = a;
            size_t nh = 0;
            float *lgh = a ? logits_of(m, NULL, one, s1, 1, &nh) : NULL;
            if (lg32 && lg0 && lgh && nh == n32 && n0 == n32) {
                double effect = slm_test_max_abs_diff(lg32, lg0, n32),
                       err = slm_test_max_abs_diff(lgh, lg32, n32);
                printf("%s adapter vs f32 adapter: %.3g (effect %.3g)\n", k ? "bf16" : "f16", err,
                       effect);
                CHECK(effect > 0.05);
                CHECK_MSG(err < 0.05 * effect, "half adapter vs f32: %g", err);
            }
            free(lgh);
            slm_adapter_free(a);
        }
        free(lg32);
        free(lg0);
        slm_adapter_free(a32);
    }
    /* a non-layer target the base has (output.weight) is refused as unsupported */
    {
        gguf_writer *w = NULL;
        CHECK_OK(gguf_writer_new(&w));
        gguf_writer_set_str(w, "general.type", "adapter");
        gguf_writer_set_str(w, "adapter.type", "lora");
        gguf_writer_set_f32(w, "adapter.lora.alpha", 8.0f);
        static float z[DIM * 4];
        uint64_t ne_a[2] = {DIM, 4}, ne_b[2] = {4, DIM};
        gguf_writer_add_tensor(w, "output_norm.weight.lora_a", SLM_TYPE_F32, 2, ne_a, z, sizeof z);
        gguf_writer_add_tensor(w, "output_norm.weight.lora_b", SLM_TYPE_F32, 2, ne_b, z, sizeof z);
        CHECK_OK(gguf_writer_write(w, path));
        gguf_writer_free(w);
        slm_adapter *a = NULL;
        CHECK_ERR(slm_adapter_load(m, path, &a), SLM_ERR_UNSUPPORTED, "output_norm.weight");
    }
    /* truncated files, at several lengths */
    {
        FILE *f = fopen(ad1, "rb");
        static unsigned char buf[1 << 20];
        size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        CHECK(n > 1000 && n < sizeof buf);
        size_t cuts[] = {0, 3, 40, n / 3, n - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            CHECK_OK(slm_test_write_bytes(path, buf, cuts[i]));
            slm_adapter *a = NULL;
            slm_status st = slm_adapter_load(m, path, &a);
            CHECK_MSG(st == SLM_ERR_FORMAT || st == SLM_ERR_IO, "cut %zu: %s", cuts[i],
                      slm_status_str(st));
            CHECK_MSG(check_has(slm_last_error(), path), "cut %zu: '%s'", cuts[i],
                      slm_last_error());
        }
    }
    /* bad config values */
    {
        slm_config *c = config(NULL);
        const char *bad[] = {"{\"adapters\":\"x.gguf\"}", "{\"adapters\":[{\"scale\":1}]}",
                             "{\"adapters\":[{\"path\":\"a\",\"scale\":\"x\"}]}",
                             "{\"adapters\":[{\"path\":\"a\",\"weight\":1}]}",
                             "{\"adapters\":[3]}"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
            CHECK_ERR(slm_config_apply_json(c, bad[i], strlen(bad[i])), SLM_ERR_CONFIG, "adapters");
        const char *good = "{\"adapters\":[\"a.gguf\",{\"path\":\"b.gguf\",\"scale\":-0.5}]}";
        CHECK_OK(slm_config_apply_json(c, good, strlen(good)));
        char *js = slm_config_to_json(c);
        CHECK(js && strstr(js, "\"adapters\":[{\"path\":\"a.gguf\",\"scale\":1},{\"path\":"
                               "\"b.gguf\",\"scale\":-0.5}]"));
        free(js);
        slm_config_free(c);
    }
    /* an adapter made for another shape is refused by set_adapters */
    {
        char other[512];
        check_tmp_path("lora-other.gguf", other, sizeof other);
        slm_test_model_params p = {.dim = DIM,
                                   .n_layers = LAYERS,
                                   .n_heads = HEADS,
                                   .n_kv_heads = HEADS,
                                   .ffn_dim = FFN,
                                   .seed = 9};
        CHECK_OK(slm_test_write_model(other, &p));
        slm_model *mo = NULL;
        slm_adapter *a = NULL;
        CHECK_OK(slm_model_load(other, NULL, &mo));
        CHECK_OK(slm_adapter_load(m, ad1, &a));
        slm_session *s = NULL;
        if (mo && a) {
            CHECK_OK(slm_session_new(mo, NULL, &s));
            const slm_adapter *one[1] = {a};
            float s1[1] = {1.0f};
            if (s)
                CHECK_ERR(slm_session_set_adapters(s, one, s1, 1), SLM_ERR_INVALID_ARG,
                          "blk.0.attn_v");
            /* and loading it for that model fails on the shapes */
            slm_adapter *b = NULL;
            CHECK_ERR(slm_adapter_load(mo, ad1, &b), SLM_ERR_FORMAT, "attn_v.weight");
        }
        slm_session_free(s);
        slm_adapter_free(a);
        slm_model_free(mo);
    }
    slm_model_free(m);
}

/* A model big enough that the low-rank products run on the thread pool:
 * the same bits whatever the thread count, and still equal to merging. */
static void test_threads(void) {
    char base[512], ad[512], merged[512];
    check_tmp_path("lora-wide.gguf", base, sizeof base);
    check_tmp_path("lora-wide-a.gguf", ad, sizeof ad);
    check_tmp_path("lora-wide-merged.gguf", merged, sizeof merged);
    g_dim = 256;
    g_ffn = 512;
    g_kv = 256;
    slm_test_model_params p = {.dim = 256, .n_layers = 1, .n_heads = 4, .ffn_dim = 512, .seed = 5};
    static const target T[] = {{0, "attn_q", 16}, {0, "ffn_up", 16}, {0, "ffn_down", 8}};
    CHECK_OK(slm_test_write_model(base, &p));
    CHECK_OK(write_adapter(ad, T, 3, 32.0f, 3, F_NONE));
    slm_model *m = NULL;
    slm_adapter *a = NULL;
    CHECK_OK(slm_model_load(base, NULL, &m));
    if (m) CHECK_OK(slm_adapter_load(m, ad, &a));
    if (a) {
        const slm_adapter *one[1] = {a};
        float s1[1] = {1.0f};
        size_t n1 = 0, n4 = 0, nm = 0;
        float *l1 = logits_of(m, "{\"threads\":1}", one, s1, 1, &n1);
        float *l4 = logits_of(m, "{\"threads\":4}", one, s1, 1, &n4);
        CHECK_OK(slm_adapter_merge_file(base, ad, merged, 1.0f, NULL));
        float *lm = logits_file(merged, &nm);
        CHECK(l1 && l4 && n1 == n4 && memcmp(l1, l4, n1 * sizeof *l1) == 0);
        if (l1 && lm && n1 == nm) {
            double err = slm_test_max_abs_diff(l1, lm, n1);
            printf("wide model: adapter vs merged %.3g\n", err);
            CHECK(err < 1e-4 * fmax(1.0, slm_test_max_abs(lm, nm)));
        }
        free(l1);
        free(l4);
        free(lm);
    }
    slm_adapter_free(a);
    slm_model_free(m);
    g_dim = DIM;
    g_ffn = FFN;
    g_kv = KV_DIM;
}

int main(void) {
    char base[512], ad1[512], ad2[512];
    check_tmp_path("lora-base.gguf", base, sizeof base);
    check_tmp_path("lora-a1.gguf", ad1, sizeof ad1);
    check_tmp_path("lora-a2.gguf", ad2, sizeof ad2);
    slm_test_model_params p = {.dim = DIM,
                               .n_layers = LAYERS,
                               .n_heads = HEADS,
                               .n_kv_heads = KV_HEADS,
                               .ffn_dim = FFN,
                               .seed = 7};
    CHECK_OK(slm_test_write_model(base, &p));
    CHECK_OK(write_adapter(ad1, T1, (int)(sizeof T1 / sizeof T1[0]), 16.0f, 1, F_NONE));
    CHECK_OK(write_adapter(ad2, T2, (int)(sizeof T2 / sizeof T2[0]), 8.0f, 2, F_NONE));
    test_f32_base(base, ad1, ad2);
    test_q8_base(ad1);
    test_malformed(base, ad1);
    test_threads();
    return check_finish();
}
