/* Hugging Face PEFT adapters (adapter_config.json + adapter_model.safetensors)
 * over small random models made here: a PEFT adapter equals the GGUF adapter
 * it corresponds to (q/k rows of lora_B permuted for llama), and the merged
 * model; the permutation is checked against RoPE itself (a qwen2 model with
 * HF-ordered q/k computes what the llama model with permuted q/k does);
 * rsLoRA; the safetensors reader's validation; bad configs; signatures. */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "logits.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "quant/types.h"
#include "testmodel.h"

#define DIM 64
#define FFN 128
#define LAYERS 2
#define HEADS 4
#define KV_HEADS 2
#define HD (DIM / HEADS)
#define KV_DIM (HD * KV_HEADS)
#define RANK 8
#define ALPHA 16.0f

static const char *PROMPT = "the day she was in the park and he";

static const char *const STEMS[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                     "ffn_gate", "ffn_up", "ffn_down"};
static const char *const HF[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                  "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                  "mlp.down_proj"};

static void dims(int slot, int64_t *n_in, int64_t *n_out) {
    *n_in = slot == 6 ? FFN : DIM;
    *n_out = slot == 1 || slot == 2 ? KV_DIM : slot == 4 || slot == 5 ? FFN : DIM;
}

/* One adapter: A [r][n_in], B [n_out][r] in GGUF (llama.cpp) row order, for
 * every slot of every layer. */
typedef struct adapter_data {
    int r;             /* adapter_config.json's r */
    int rr[LAYERS][7]; /* each matrix's rank (r unless a test changes one) */
    float *a[LAYERS][7], *b[LAYERS][7];
} adapter_data;

static void make_adapter(adapter_data *d, int r, unsigned long long seed) {
    check_rng rng = {seed};
    d->r = r;
    for (int l = 0; l < LAYERS; l++)
        for (int s = 0; s < 7; s++) {
            d->rr[l][s] = r;
            int64_t ni = 0, no = 0;
            dims(s, &ni, &no);
            d->a[l][s] = malloc((size_t)(r * ni) * sizeof(float));
            d->b[l][s] = malloc((size_t)(r * no) * sizeof(float));
            for (int64_t k = 0; k < r * ni; k++) d->a[l][s][k] = 0.1f * check_rng_normal(&rng);
            for (int64_t k = 0; k < r * no; k++) d->b[l][s][k] = 0.1f * check_rng_normal(&rng);
        }
}

static void free_adapter(adapter_data *d) {
    for (int l = 0; l < LAYERS; l++)
        for (int s = 0; s < 7; s++) {
            free(d->a[l][s]);
            free(d->b[l][s]);
        }
}

static slm_status write_gguf_adapter(const char *path, const adapter_data *d, float alpha) {
    gguf_writer *w = NULL;
    slm_status st = gguf_writer_new(&w);
    if (st != SLM_OK) return st;
    gguf_writer_set_str(w, "general.type", "adapter");
    gguf_writer_set_str(w, "adapter.type", "lora");
    gguf_writer_set_f32(w, "adapter.lora.alpha", alpha);
    for (int l = 0; l < LAYERS && st == SLM_OK; l++)
        for (int s = 0; s < 7 && st == SLM_OK; s++) {
            int64_t ni = 0, no = 0;
            dims(s, &ni, &no);
            const int r = d->rr[l][s];
            char name[96];
            uint64_t ne_a[2] = {(uint64_t)ni, (uint64_t)r}, ne_b[2] = {(uint64_t)r, (uint64_t)no};
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", l, STEMS[s]);
            st = gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_a, d->a[l][s],
                                        (uint64_t)(ni * r) * 4);
            snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", l, STEMS[s]);
            if (st == SLM_OK)
                st = gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_b, d->b[l][s],
                                            (uint64_t)(no * r) * 4);
        }
    if (st == SLM_OK) st = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return st;
}

/* llama.cpp's convert_hf_to_gguf permute, written as its reshape: rows
 * viewed as [n_head][2][hd/2] are transposed to [n_head][hd/2][2]. So the
 * GGUF row at (h, i, a) is the HF row at (h, a, i). Returns the HF row of
 * GGUF row g. */
static int64_t hf_row_of(int64_t g, int64_t n_rows, int n_head) {
    int64_t hd = n_rows / n_head, half = hd / 2;
    int64_t h = g / hd, i = (g % hd) / 2, a = (g % hd) % 2;
    return (h * 2 + a) * half + i;
}

/* ---- a small safetensors writer ------------------------------------------ */

typedef struct st_item {
    char name[160];
    const char *dtype; /* "F32", "F16", "BF16" */
    uint64_t d0, d1;
    const float *x;
} st_item;

/* Header JSON + data, as a file; extra_json (or NULL) is inserted into the
 * header object verbatim. */
static slm_status write_st(const char *path, const st_item *it, int n) {
    size_t cap = 1 << 16, hl = 0;
    char *h = malloc(cap);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)(it[i].d0 * it[i].d1) * (it[i].dtype[1] == '3' ? 4 : 2);
    uint8_t *data = malloc(total ? total : 1);
    size_t off = 0;
    hl += (size_t)snprintf(h + hl, cap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        size_t cnt = (size_t)(it[i].d0 * it[i].d1), es = it[i].dtype[1] == '3' ? 4 : 2;
        hl += (size_t)snprintf(h + hl, cap - hl,
                               ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],\"data_offsets\":["
                               "%zu,%zu]}",
                               it[i].name, it[i].dtype, (unsigned long long)it[i].d0,
                               (unsigned long long)it[i].d1, off, off + cnt * es);
        if (es == 4)
            memcpy(data + off, it[i].x, cnt * 4);
        else
            slm_quantize_row_ref(!strcmp(it[i].dtype, "F16") ? SLM_TYPE_F16 : SLM_TYPE_BF16,
                                 it[i].x, data + off, (int64_t)cnt, NULL);
        off += cnt * es;
    }
    h[hl++] = '}';
    while (hl % 8) h[hl++] = ' ';
    size_t fsz = 8 + hl + off;
    uint8_t *f = malloc(fsz);
    for (int k = 0; k < 8; k++) f[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(f + 8, h, hl);
    memcpy(f + 8 + hl, data, off);
    slm_status st = slm_test_write_bytes(path, f, fsz);
    free(f);
    free(h);
    free(data);
    return st;
}

/* The PEFT form of d: lora_B rows of q/k put back in HF order when permute. */
static slm_status write_peft(const char *dir, const adapter_data *d, float alpha, const char *dtype,
                             int permute, const char *config_extra) {
    mkdir(dir, 0755);
    st_item it[LAYERS * 14];
    float *tmp[LAYERS * 7] = {0};
    int n = 0;
    for (int l = 0; l < LAYERS; l++)
        for (int s = 0; s < 7; s++) {
            int64_t ni = 0, no = 0;
            dims(s, &ni, &no);
            const int r = d->rr[l][s];
            const float *b = d->b[l][s];
            if (permute && s < 2) {
                float *hb = malloc((size_t)(no * r) * sizeof(float));
                for (int64_t g = 0; g < no; g++)
                    memcpy(hb + hf_row_of(g, no, s == 0 ? HEADS : KV_HEADS) * r, b + g * r,
                           (size_t)r * sizeof(float));
                tmp[l * 7 + s] = hb;
                b = hb;
            }
            st_item *x = &it[n++];
            snprintf(x->name, sizeof x->name, "base_model.model.model.layers.%d.%s.lora_A.weight",
                     l, HF[s]);
            x->dtype = dtype;
            x->d0 = (uint64_t)r;
            x->d1 = (uint64_t)ni;
            x->x = d->a[l][s];
            x = &it[n++];
            snprintf(x->name, sizeof x->name, "base_model.model.model.layers.%d.%s.lora_B.weight",
                     l, HF[s]);
            x->dtype = dtype;
            x->d0 = (uint64_t)no;
            x->d1 = (uint64_t)r;
            x->x = b;
        }
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    slm_status st = write_st(path, it, n);
    for (int i = 0; i < LAYERS * 7; i++) free(tmp[i]);
    if (st != SLM_OK) return st;
    char cfg[2048];
    int cl = snprintf(cfg, sizeof cfg,
                      "{\"peft_type\":\"LORA\",\"r\":%d,\"lora_alpha\":%g,\"target_modules\":["
                      "\"q_proj\",\"k_proj\",\"v_proj\",\"o_proj\",\"gate_proj\",\"up_proj\","
                      "\"down_proj\"],\"bias\":\"none\",\"fan_in_fan_out\":false,"
                      "%s\"modules_to_save\":null%s%s}",
                      d->r, (double)alpha,
                      /* empty patterns are accepted; a test's own patterns replace them */
                      config_extra && strstr(config_extra, "_pattern")
                          ? ""
                          : "\"rank_pattern\":{},\"alpha_pattern\":{},",
                      config_extra ? "," : "", config_extra ? config_extra : "");
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    return slm_test_write_bytes(path, cfg, (size_t)cl);
}

static slm_status write_config(const char *dir, const char *json) {
    char path[600];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    return slm_test_write_bytes(path, json, strlen(json));
}

/* ---- logits -------------------------------------------------------------- */

static float *logits_path(slm_model *m, const char *adapter, size_t *count) {
    slm_adapter *a = NULL;
    *count = 0;
    if (adapter) {
        CHECK_MSG(slm_adapter_load(m, adapter, &a) == SLM_OK, "load %s: %s", adapter,
                  slm_last_error());
        if (!a) return NULL;
    }
    const slm_adapter *one[1] = {a};
    const float scale = 1.0f;
    /* an f32 K/V cache: the paths compared here differ in the last bits of
     * K and V, which an f16 cache would round apart (2^-11) into the logits */
    float *lg = slm_test_prompt_logits(m, "{\"threads\":2,\"kv_cache\":\"f32\"}", PROMPT, one,
                                       &scale, a ? 1 : 0, count);
    slm_adapter_free(a);
    return lg;
}

static float *logits_file(const char *model, const char *adapter, size_t *count) {
    slm_model *m = NULL;
    *count = 0;
    if (slm_model_load(model, NULL, &m) != SLM_OK) {
        CHECK_MSG(0, "load %s: %s", model, slm_last_error());
        return NULL;
    }
    float *lg = logits_path(m, adapter, count);
    slm_model_free(m);
    return lg;
}

/* ---- PEFT equals GGUF equals merged -------------------------------------- */

static char g_base[512], g_peft[512], g_gguf[512];
static adapter_data g_ad;

static void test_equivalence(void) {
    char merged[512], st_path[600], cfg_path[600], peft16[512], m2[512];
    check_tmp_path("peft-merged.gguf", merged, sizeof merged);
    check_tmp_path("peft-merged-gguf.gguf", m2, sizeof m2);
    check_tmp_path("peft-f16", peft16, sizeof peft16);
    snprintf(st_path, sizeof st_path, "%s/adapter_model.safetensors", g_peft);
    snprintf(cfg_path, sizeof cfg_path, "%s/adapter_config.json", g_peft);

    slm_model *m = NULL;
    CHECK_OK(slm_model_load(g_base, NULL, &m));
    if (!m) return;
    size_t n0 = 0, ng = 0, np = 0, ns = 0, nc = 0, nm = 0, nh = 0, nm2 = 0;
    float *base = logits_path(m, NULL, &n0);
    float *lg = logits_path(m, g_gguf, &ng);
    float *lp = logits_path(m, g_peft, &np);
    float *ls = logits_path(m, st_path, &ns);  /* the .safetensors path */
    float *lc = logits_path(m, cfg_path, &nc); /* the adapter_config.json path */
    CHECK_OK(slm_adapter_merge_file(g_base, g_peft, merged, 1.0f, NULL));
    CHECK_OK(slm_adapter_merge_file(g_base, g_gguf, m2, 1.0f, NULL));
    float *lm = logits_file(merged, NULL, &nm);
    float *lm2 = logits_file(m2, NULL, &nm2);
    CHECK_OK(write_peft(peft16, &g_ad, ALPHA, "F16", 1, NULL));
    float *lh = logits_path(m, peft16, &nh);
    char pbf[512];
    check_tmp_path("peft-bf16", pbf, sizeof pbf);
    CHECK_OK(write_peft(pbf, &g_ad, ALPHA, "BF16", 1, NULL));
    size_t nb = 0;
    float *lb = logits_path(m, pbf, &nb);
    if (base && lg && lp && ls && lc && lm && lm2 && lh && n0 == ng && ng == np && np == ns &&
        ns == nc && nc == nm && nm == nh && nm == nm2) {
        double effect = slm_test_max_abs_diff(lg, base, n0),
               tol = 1e-4 * fmax(1.0, slm_test_max_abs(lm, nm));
        printf("PEFT: adapter moves logits by %.4g; PEFT vs GGUF %.3g; PEFT vs merged %.3g; "
               "F16 PEFT vs F32 %.3g\n",
               effect, slm_test_max_abs_diff(lp, lg, n0), slm_test_max_abs_diff(lp, lm, n0),
               slm_test_max_abs_diff(lh, lp, n0));
        CHECK(effect > 0.05);
        /* same A and B after the permutation: the same arithmetic */
        CHECK_MSG(memcmp(lp, lg, n0 * sizeof *lp) == 0, "PEFT vs GGUF adapter: %g",
                  slm_test_max_abs_diff(lp, lg, n0));
        CHECK(memcmp(ls, lp, n0 * sizeof *lp) == 0);
        CHECK(memcmp(lc, lp, n0 * sizeof *lp) == 0);
        CHECK_MSG(slm_test_max_abs_diff(lp, lm, n0) < tol, "PEFT vs merged: %g",
                  slm_test_max_abs_diff(lp, lm, n0));
        CHECK_MSG(slm_test_max_abs_diff(lm, lm2, n0) < tol, "merged PEFT vs merged GGUF");
        CHECK_MSG(slm_test_max_abs_diff(lh, lp, n0) < 0.05 * effect, "F16 PEFT vs F32: %g",
                  slm_test_max_abs_diff(lh, lp, n0));
        CHECK_MSG(lb && nb == n0 && slm_test_max_abs_diff(lb, lp, n0) < 0.1 * effect,
                  "BF16 PEFT vs F32: %g", lb ? slm_test_max_abs_diff(lb, lp, n0) : -1.0);
    }
    free(lb);
    /* without the permutation (a qwen2-style file on a llama model) the
     * output differs: the permutation matters and the test can tell */
    {
        char unperm[512];
        check_tmp_path("peft-unpermuted", unperm, sizeof unperm);
        CHECK_OK(write_peft(unperm, &g_ad, ALPHA, "F32", 0, NULL));
        size_t nu = 0;
        float *lu = logits_path(m, unperm, &nu);
        if (lu && lp && nu == np) CHECK(slm_test_max_abs_diff(lu, lp, nu) > 1e-3);
        free(lu);
    }
    free(base);
    free(lg);
    free(lp);
    free(ls);
    free(lc);
    free(lm);
    free(lm2);
    free(lh);
    slm_model_free(m);
}

/* rsLoRA: s = alpha/sqrt(r), the same as a plain adapter with alpha·sqrt(r)/... */
static void test_rslora(void) {
    char dir[512], gg[512];
    check_tmp_path("peft-rslora", dir, sizeof dir);
    check_tmp_path("peft-rslora-eq.gguf", gg, sizeof gg);
    CHECK_OK(write_peft(dir, &g_ad, ALPHA, "F32", 1, "\"use_rslora\":true"));
    /* alpha'/r = alpha/sqrt(r) */
    CHECK_OK(write_gguf_adapter(gg, &g_ad, ALPHA * sqrtf((float)RANK)));
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(g_base, NULL, &m));
    if (!m) return;
    size_t nr = 0, ng = 0, np = 0;
    float *lr = logits_path(m, dir, &nr);
    float *lg = logits_path(m, gg, &ng);
    float *lp = logits_path(m, g_peft, &np);
    if (lr && lg && lp && nr == ng && ng == np) {
        double d = slm_test_max_abs_diff(lr, lg, nr);
        printf("rsLoRA vs equivalent GGUF: %.3g (vs plain PEFT %.3g)\n", d,
               slm_test_max_abs_diff(lr, lp, nr));
        CHECK(d < 1e-4 * fmax(1.0, slm_test_max_abs(lg, ng)));
        CHECK(slm_test_max_abs_diff(lr, lp, nr) > 1e-3);
    }
    free(lr);
    free(lg);
    free(lp);
    slm_model_free(m);
}

/* rank_pattern and alpha_pattern: one matrix of another rank, one module
 * with another alpha; equal to the GGUF adapter with the same products. */
static void test_patterns(void) {
    char dir[512], dir2[512], gg[512];
    check_tmp_path("peft-patterns", dir, sizeof dir);
    check_tmp_path("peft-patterns-2", dir2, sizeof dir2);
    check_tmp_path("peft-patterns.gguf", gg, sizeof gg);
    adapter_data d;
    make_adapter(&d, RANK, 9);
    /* blk.1.attn_q gets rank 4 */
    check_rng rng = {17};
    free(d.a[1][0]);
    free(d.b[1][0]);
    d.rr[1][0] = 4;
    d.a[1][0] = malloc(4 * DIM * sizeof(float));
    d.b[1][0] = malloc(4 * DIM * sizeof(float));
    for (int k = 0; k < 4 * DIM; k++) {
        d.a[1][0][k] = 0.1f * check_rng_normal(&rng);
        d.b[1][0][k] = 0.1f * check_rng_normal(&rng);
    }
    CHECK_OK(write_peft(dir, &d, ALPHA, "F32", 1,
                        "\"rank_pattern\":{\"layers.1.self_attn.q_proj\":4},"
                        "\"alpha_pattern\":{\"model.layers.[0-9]+.mlp.down_proj\":32}"));
    /* without the alpha pattern the down_proj products are half: different output */
    CHECK_OK(write_peft(dir2, &d, ALPHA, "F32", 1,
                        "\"rank_pattern\":{\"layers.1.self_attn.q_proj\":4}"));
    /* the GGUF twin: alpha 16 everywhere, so down_proj's B doubles (32/r = 2 x 16/r) */
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < DIM * RANK; k++) d.b[l][6][k] *= 2.0f;
    CHECK_OK(write_gguf_adapter(gg, &d, ALPHA));
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(g_base, NULL, &m));
    size_t np = 0, ng = 0, n0 = 0;
    float *lp = m ? logits_path(m, dir, &np) : NULL;
    float *lg = m ? logits_path(m, gg, &ng) : NULL;
    float *l0 = m ? logits_path(m, NULL, &n0) : NULL;
    if (lp && lg && l0 && np == ng && ng == n0) {
        double d_pg = slm_test_max_abs_diff(lp, lg, np);
        printf("rank/alpha patterns: PEFT vs GGUF twin %.3g (effect %.3g)\n", d_pg,
               slm_test_max_abs_diff(lp, l0, np));
        CHECK(slm_test_max_abs_diff(lp, l0, np) > 0.05);
        CHECK_MSG(d_pg < 1e-5 * fmax(1.0, slm_test_max_abs(lg, ng)), "patterns: PEFT vs GGUF %g",
                  d_pg);
    }
    size_t nn = 0;
    float *ln = m ? logits_path(m, dir2, &nn) : NULL;
    if (ln && lg && nn == ng) CHECK(slm_test_max_abs_diff(ln, lg, nn) > 1e-3);
    free(lp);
    free(lg);
    free(l0);
    free(ln);
    slm_model_free(m);
    free_adapter(&d);
}

/* The permutation against RoPE itself: a qwen2 model (RoPE pairs i and
 * i + hd/2, as in HF) whose q/k rows are in HF order and biases zero
 * computes what the llama model (adjacent pairs) with llama.cpp-permuted q/k
 * computes; the same PEFT file on each must then give the same logits. */
static int skip_arch_keys(const char *key, void *user) {
    (void)user;
    return !strncmp(key, "qwen2.", 6) || !strcmp(key, "general.architecture");
}

static void test_rope_semantics(void) {
    char q[512], h[512], l[512], dir[512];
    check_tmp_path("peft-q2.gguf", q, sizeof q);
    check_tmp_path("peft-q2-hf.gguf", h, sizeof h);
    check_tmp_path("peft-llama-perm.gguf", l, sizeof l);
    check_tmp_path("peft-sem", dir, sizeof dir);
    slm_test_model_params p = {.arch = "qwen2",
                               .dim = DIM,
                               .n_layers = LAYERS,
                               .n_heads = HEADS,
                               .n_kv_heads = KV_HEADS,
                               .ffn_dim = FFN,
                               .rope_base = 10000.0f,
                               .norm_eps = 1e-5f,
                               .n_ctx = 512,
                               .seed = 21,
                               .scale = 0.2f};
    CHECK_OK(slm_test_write_model(q, &p));
    gguf_file *f = NULL;
    CHECK_OK(gguf_open(q, &f));
    if (!f) return;
    gguf_writer *wh = NULL, *wl = NULL;
    CHECK_OK(gguf_writer_new(&wh));
    CHECK_OK(gguf_writer_new(&wl));
    CHECK_OK(gguf_writer_copy_kv(wh, f, NULL, NULL));
    CHECK_OK(gguf_writer_copy_kv(wl, f, skip_arch_keys, NULL));
    gguf_writer_set_str(wl, "general.architecture", "llama");
    gguf_writer_set_u32(wl, "llama.context_length", 512);
    gguf_writer_set_u32(wl, "llama.embedding_length", DIM);
    gguf_writer_set_u32(wl, "llama.block_count", LAYERS);
    gguf_writer_set_u32(wl, "llama.feed_forward_length", FFN);
    gguf_writer_set_u32(wl, "llama.attention.head_count", HEADS);
    gguf_writer_set_u32(wl, "llama.attention.head_count_kv", KV_HEADS);
    gguf_writer_set_f32(wl, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_u32(wl, "llama.rope.dimension_count", HD);
    gguf_writer_set_f32(wl, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_u32(wl, "llama.vocab_size", (uint32_t)slm_test_base_vocab());
    static float zeros[DIM];
    float *perm[LAYERS * 2] = {0};
    int np = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (strstr(name, ".bias")) { /* zero in the qwen2 copy, absent in llama */
            CHECK_OK(gguf_writer_add_tensor(wh, name, t->type, t->n_dims, t->ne, zeros, t->nbytes));
            continue;
        }
        CHECK_OK(
            gguf_writer_add_tensor_ref(wh, name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
        int is_q = strstr(name, "attn_q.weight") != NULL,
            is_k = strstr(name, "attn_k.weight") != NULL;
        if ((is_q || is_k) && np < LAYERS * 2) {
            CHECK(t->type == SLM_TYPE_F32);
            int64_t rows = (int64_t)t->ne[1], cols = (int64_t)t->ne[0];
            float *w = malloc((size_t)(rows * cols) * sizeof(float));
            const float *src = (const float *)t->data;
            for (int64_t g = 0; g < rows; g++)
                memcpy(w + g * cols, src + hf_row_of(g, rows, is_q ? HEADS : KV_HEADS) * cols,
                       (size_t)cols * sizeof(float));
            perm[np++] = w;
            CHECK_OK(gguf_writer_add_tensor(wl, name, t->type, t->n_dims, t->ne, w, t->nbytes));
        } else {
            CHECK_OK(gguf_writer_add_tensor_ref(wl, name, t->type, t->n_dims, t->ne, t->data,
                                                t->nbytes));
        }
    }
    CHECK_OK(gguf_writer_write(wh, h));
    CHECK_OK(gguf_writer_write(wl, l));
    gguf_writer_free(wh);
    gguf_writer_free(wl);
    for (int i = 0; i < np; i++) free(perm[i]);
    gguf_close(f);

    /* the PEFT file is HF's: q/k lora_B in HF order (= g_ad's rows mapped back) */
    CHECK_OK(write_peft(dir, &g_ad, ALPHA, "F32", 1, NULL));
    size_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    float *bh = logits_file(h, NULL, &n1);
    float *bl = logits_file(l, NULL, &n2);
    float *ah = logits_file(h, dir, &n3);
    float *al = logits_file(l, dir, &n4);
    if (bh && bl && ah && al && n1 == n2 && n2 == n3 && n3 == n4) {
        double tol = 1e-4 * fmax(1.0, slm_test_max_abs(bh, n1));
        printf("RoPE: qwen2(HF order) vs llama(permuted): base %.3g, with PEFT %.3g (effect "
               "%.3g)\n",
               slm_test_max_abs_diff(bh, bl, n1), slm_test_max_abs_diff(ah, al, n1),
               slm_test_max_abs_diff(ah, bh, n1));
        CHECK_MSG(slm_test_max_abs_diff(bh, bl, n1) < tol, "the two base models differ");
        CHECK(slm_test_max_abs_diff(ah, bh, n1) > 0.05);
        CHECK_MSG(slm_test_max_abs_diff(ah, al, n1) < tol, "PEFT on qwen2 vs llama: %g",
                  slm_test_max_abs_diff(ah, al, n1));
    }
    free(bh);
    free(bl);
    free(ah);
    free(al);
}

/* ---- the safetensors reader ---------------------------------------------- */

static size_t build_st(uint8_t *out, size_t cap, const char *header, size_t data_len) {
    size_t hl = strlen(header);
    if (8 + hl + data_len > cap) return 0;
    for (int k = 0; k < 8; k++) out[k] = (uint8_t)((uint64_t)hl >> (8 * k));
    memcpy(out + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) out[8 + hl + i] = (uint8_t)i;
    return 8 + hl + data_len;
}

static void test_safetensors(void) {
    static uint8_t buf[4096];
    st_file *f = NULL;
    /* a valid file: two tensors, metadata, padding, unaligned data */
    const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2],"
                     "\"data_offsets\":[12,16]},\"a\":{\"dtype\":\"F32\",\"shape\":[3,1],"
                     "\"data_offsets\":[0,12]}}   ";
    size_t n = build_st(buf, sizeof buf, ok, 16);
    CHECK_OK(st_open_memory(buf, n, "ok.safetensors", &f));
    if (f) {
        CHECK(st_n_tensors(f) == 2);
        const st_tensor *a = st_find(f, "a"), *b = st_find(f, "b");
        CHECK(a && a->dtype == ST_F32 && a->n_dims == 2 && a->shape[0] == 3 && a->n_elems == 3);
        CHECK(b && b->dtype == ST_F16 && b->nbytes == 4 && b->data == a->data + 12);
        CHECK(st_find(f, "c") == NULL);
        CHECK(st_metadata(f, "format") && !strcmp(st_metadata(f, "format"), "pt"));
        float x[3];
        CHECK_OK(st_to_f32(a, x, 3));
        st_close(f);
        f = NULL;
    }
    static const struct {
        const char *header;
        size_t data_len;
        const char *needle;
    } bad[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]", 12, "not valid JSON"},
        {"[1,2]", 0, "does not start with '{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 8, "out of range"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}", 12, "needs 16 bytes"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "needs 6 bytes"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[3],\"data_offsets\":[0,12]}}", 12, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}}", 12, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,12]}}", 12, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,0]}}", 12, "out of range"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0]}}", 12, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":"
         "\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":"
         "\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "hole"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "not part of any"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":"
         "\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "appears twice"},
        {"{\"__metadata__\":{\"x\":1}}", 0, "must be strings"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,4]}}",
         4, "overflows"},
        {"{\"a\":3}", 0, "expected an object"},
        {"{} x", 0, "after the JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = build_st(buf, sizeof buf, bad[i].header, bad[i].data_len);
        CHECK_ERR(st_open_memory(buf, n, "bad.safetensors", &f), SLM_ERR_FORMAT, bad[i].needle);
        CHECK(f == NULL);
    }
    /* header length: beyond the file, absurd, and a file shorter than 8 bytes */
    n = build_st(buf, sizeof buf, ok, 16);
    buf[0] = 0xff;
    buf[1] = 0xff;
    CHECK_ERR(st_open_memory(buf, n, "x", &f), SLM_ERR_FORMAT, "header length");
    for (int k = 0; k < 8; k++) buf[k] = 0xff;
    CHECK_ERR(st_open_memory(buf, n, "x", &f), SLM_ERR_FORMAT, "header length");
    CHECK_ERR(st_open_memory(buf, 5, "x", &f), SLM_ERR_FORMAT, "no header length");
    /* every truncation of a valid file fails cleanly */
    n = build_st(buf, sizeof buf, ok, 16);
    for (size_t cut = 0; cut < n; cut++) {
        slm_status st = st_open_memory(buf, cut, "cut", &f);
        CHECK_MSG(st == SLM_ERR_FORMAT && f == NULL, "cut at %zu: %s", cut, slm_status_str(st));
    }
}

/* ---- malformed adapters and configs -------------------------------------- */

static void test_bad_peft(void) {
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(g_base, NULL, &m));
    if (!m) return;
    char dir[512], path[600];
    check_tmp_path("peft-bad", dir, sizeof dir);
    CHECK_OK(write_peft(dir, &g_ad, ALPHA, "F32", 1, NULL));
    slm_adapter *a = NULL;
    CHECK_OK(slm_adapter_load(m, dir, &a));
    slm_adapter_free(a);
    a = NULL;
    static const struct {
        const char *config;
        slm_status st;
        const char *needle;
    } cfgs[] = {
        {"{\"lora_alpha\":16,\"target_modules\":[\"q_proj\"]}", SLM_ERR_FORMAT, "\"r\""},
        {"{\"r\":8,\"target_modules\":[\"q_proj\"]}", SLM_ERR_FORMAT, "\"lora_alpha\""},
        {"{\"r\":8,\"lora_alpha\":-1}", SLM_ERR_FORMAT, "\"lora_alpha\""},
        {"{\"r\":4,\"lora_alpha\":16}", SLM_ERR_FORMAT, "adapter_config.json says r = 4"},
        {"{\"r\":8,\"lora_alpha\":16,\"bias\":\"all\"}", SLM_ERR_UNSUPPORTED,
         "\"bias\" is \"all\""},
        {"{\"r\":8,\"lora_alpha\":16,\"rank_pattern\":{\"q_proj\":4}}", SLM_ERR_FORMAT,
         "r = 4 (after rank_pattern)"},
        {"{\"r\":8,\"lora_alpha\":16,\"alpha_pattern\":{\"layers.\\\\d+.q_proj\":4}}",
         SLM_ERR_UNSUPPORTED, "regular expression"},
        {"{\"r\":8,\"lora_alpha\":16,\"rank_pattern\":{\"q_proj\":0}}", SLM_ERR_FORMAT,
         "integer rank"},
        {"{\"r\":8,\"lora_alpha\":16,\"alpha_pattern\":\"x\"}", SLM_ERR_FORMAT,
         "must be an object"},
        {"{\"r\":8,\"lora_alpha\":16,\"rank_pattern\":{\"(q_proj\":4}}", SLM_ERR_UNSUPPORTED,
         "not a regular expression"},
        {"{\"r\":8,\"lora_alpha\":16,\"use_dora\":true}", SLM_ERR_UNSUPPORTED, "use_dora"},
        {"{\"r\":8,\"lora_alpha\":16,\"modules_to_save\":[\"lm_head\"]}", SLM_ERR_UNSUPPORTED,
         "modules_to_save"},
        {"{\"r\":8,\"lora_alpha\":16,\"target_modules\":[\"q_proj\",\"embed_tokens\"]}",
         SLM_ERR_UNSUPPORTED, "'embed_tokens'"},
        {"{\"r\":8,\"lora_alpha\":16,\"peft_type\":\"IA3\"}", SLM_ERR_UNSUPPORTED, "peft_type"},
        {"{\"r\":8,\"lora_alpha\":16,", SLM_ERR_FORMAT, "not a JSON object"},
        {"{\"r\":8,\"lora_alpha\":16,\"lora_alpha\":32}", SLM_ERR_FORMAT,
         "\"lora_alpha\" appears twice"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        CHECK_OK(write_config(dir, cfgs[i].config));
        CHECK_ERR(slm_adapter_load(m, dir, &a), cfgs[i].st, cfgs[i].needle);
        CHECK_ERR(slm_adapter_load(m, dir, &a), cfgs[i].st, "adapter_");
        CHECK(a == NULL);
    }
    CHECK_OK(write_config(dir, "{\"r\":8,\"lora_alpha\":16}"));
    CHECK_OK(slm_adapter_load(m, dir, &a)); /* no target_modules: the tensors decide */
    slm_adapter_free(a);
    a = NULL;
    /* a missing config, a missing weights file */
    {
        char empty[512];
        check_tmp_path("peft-empty", empty, sizeof empty);
        mkdir(empty, 0755);
        CHECK_ERR(slm_adapter_load(m, empty, &a), SLM_ERR_IO, "adapter_config.json");
        CHECK_OK(write_config(empty, "{\"r\":8,\"lora_alpha\":16}"));
        CHECK_ERR(slm_adapter_load(m, empty, &a), SLM_ERR_IO, "adapter_model.safetensors");
    }
    /* tensors: unknown targets, wrong shapes, missing partner, layer out of range */
    float *z = calloc((size_t)FFN * 256, sizeof(float));
    static const struct {
        const char *name[2];
        uint64_t s0[2], s1[2];
        slm_status st;
        const char *needle;
    } ts[] = {
        {{"base_model.model.lm_head.lora_A.weight", "base_model.model.lm_head.lora_B.weight"},
         {8, 300},
         {DIM, 8},
         SLM_ERR_UNSUPPORTED,
         "module 'base_model.model.lm_head'"},
        {{"base_model.model.model.embed_tokens.lora_A.weight",
          "base_model.model.model.embed_tokens.lora_B.weight"},
         {8, DIM},
         {300, 8},
         SLM_ERR_UNSUPPORTED,
         "embed_tokens"},
        {{"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
          "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"},
         {8, DIM},
         {DIM + 1, 8},
         SLM_ERR_FORMAT,
         "needs lora_A [r, 64] and lora_B [64, r]"},
        {{"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight",
          "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"},
         {8, KV_DIM},
         {DIM, 8},
         SLM_ERR_FORMAT,
         "blk.0.attn_k.weight"},
        {{"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight",
          "base_model.model.model.layers.0.mlp.up_proj.lora_B.weight"},
         {8, FFN},
         {DIM, 7},
         SLM_ERR_FORMAT,
         "lora_B [128, r]"},
        {{"base_model.model.model.layers.2.mlp.up_proj.lora_A.weight",
          "base_model.model.model.layers.2.mlp.up_proj.lora_B.weight"},
         {8, FFN},
         {DIM, 8},
         SLM_ERR_FORMAT,
         "lacks (it has 2 layers)"},
        {{"base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
          "base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector"},
         {8, DIM},
         {DIM, 1},
         SLM_ERR_UNSUPPORTED,
         "lora_magnitude_vector"},
        {{"base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight",
          "base_model.model.model.layers.1.self_attn.v_proj.bias"},
         {8, DIM},
         {DIM, 1},
         SLM_ERR_UNSUPPORTED,
         "not a LoRA tensor"},
    };
    CHECK_OK(write_config(dir, "{\"r\":8,\"lora_alpha\":16}"));
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        st_item it[2];
        for (int k = 0; k < 2; k++) {
            snprintf(it[k].name, sizeof it[k].name, "%s", ts[i].name[k]);
            it[k].dtype = "F32";
            it[k].x = z;
        }
        it[0].d0 = ts[i].s0[0];
        it[0].d1 = ts[i].s0[1];
        it[1].d0 = ts[i].s1[0];
        it[1].d1 = ts[i].s1[1];
        CHECK_OK(write_st(path, it, 2));
        CHECK_ERR(slm_adapter_load(m, dir, &a), ts[i].st, ts[i].needle);
        CHECK(a == NULL);
        /* only the first: a missing partner */
        CHECK_OK(write_st(path, it, 1));
        CHECK_ERR(slm_adapter_load(m, dir, &a), i < 2 ? SLM_ERR_UNSUPPORTED : SLM_ERR_FORMAT,
                  i < 2    ? "not supported"
                  : i == 5 ? "lacks"
                           : "no lora_B partner");
    }
    /* an I32 tensor is refused by dtype */
    {
        const char *hdr = "{\"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight\":{"
                          "\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        static uint8_t b[1024];
        size_t n = build_st(b, sizeof b, hdr, 4);
        CHECK_OK(slm_test_write_bytes(path, b, n));
        CHECK_ERR(slm_adapter_load(m, dir, &a), SLM_ERR_UNSUPPORTED, "dtype I32");
    }
    free(z);
    /* truncated weights files are refused naming the file */
    {
        CHECK_OK(write_peft(dir, &g_ad, ALPHA, "F32", 1, NULL));
        FILE *fp = fopen(path, "rb");
        static unsigned char whole[1 << 20];
        size_t n = fp ? fread(whole, 1, sizeof whole, fp) : 0;
        if (fp) fclose(fp);
        CHECK(n > 1000 && n < sizeof whole);
        size_t cuts[] = {0, 7, 8, 100, n / 2, n - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            CHECK_OK(slm_test_write_bytes(path, whole, cuts[i]));
            CHECK_ERR(slm_adapter_load(m, dir, &a), SLM_ERR_FORMAT, "adapter_model.safetensors");
            CHECK(a == NULL);
        }
    }
    slm_model_free(m);
}

/* ---- signatures ---------------------------------------------------------- */

static void test_signatures(void) {
    char trust[512], key[600], dir[512], js[2048], merged[512], w[600], c[600];
    check_tmp_path("peft-trust", trust, sizeof trust);
    check_tmp_path("peft-signed", dir, sizeof dir);
    check_tmp_path("peft-signed-merged.gguf", merged, sizeof merged);
    mkdir(trust, 0755);
    snprintf(key, sizeof key, "%s/k", trust);
    remove(key);
    char kp[640];
    snprintf(kp, sizeof kp, "%s.key", key);
    remove(kp);
    snprintf(kp, sizeof kp, "%s.pub", key);
    remove(kp);
    CHECK_OK(slm_keygen(key, NULL));
    snprintf(kp, sizeof kp, "%s.key", key);
    CHECK_OK(write_peft(dir, &g_ad, ALPHA, "F32", 1, NULL));
    snprintf(w, sizeof w, "%s/adapter_model.safetensors", dir);
    snprintf(c, sizeof c, "%s/adapter_config.json", dir);
    char sig[700];
    snprintf(sig, sizeof sig, "%s.sig", w);
    remove(sig);
    snprintf(sig, sizeof sig, "%s.sig", c);
    remove(sig);
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(g_base, NULL, &m));
    if (!m) return;
    snprintf(js, sizeof js,
             "{\"require_signature\":true,\"trust_dir\":\"%s\",\"adapters\":[\"%s\"]}", trust, dir);
    slm_config *cfg = NULL;
    CHECK_OK(slm_config_new(&cfg));
    CHECK_OK(slm_config_apply_json(cfg, js, strlen(js)));
    slm_session *s = NULL;
    CHECK_ERR(slm_session_new(m, cfg, &s), SLM_ERR_SIGNATURE, "missing signature");
    CHECK_OK(slm_sign_file(w, kp, NULL, NULL));
    CHECK_ERR(slm_session_new(m, cfg, &s), SLM_ERR_SIGNATURE, "adapter_config.json");
    CHECK_OK(slm_sign_file(c, kp, NULL, NULL));
    CHECK_OK(slm_session_new(m, cfg, &s));
    slm_session_free(s);
    s = NULL;
    /* a changed config after signing is refused */
    CHECK_OK(write_config(dir, "{\"r\":8,\"lora_alpha\":32}"));
    CHECK_ERR(slm_session_new(m, cfg, &s), SLM_ERR_SIGNATURE, "adapter_config.json");
    CHECK_OK(slm_sign_file(c, kp, NULL, NULL));
    CHECK_OK(slm_session_new(m, cfg, &s));
    slm_session_free(s);
    slm_config_free(cfg);
    slm_model_free(m);

    /* merging with a trust dir: the base needs a signature too */
    remove(merged);
    char bsig[600];
    snprintf(bsig, sizeof bsig, "%s.sig", g_base);
    remove(bsig);
    CHECK_ERR(slm_adapter_merge_file_ex(g_base, dir, merged, 1.0f, NULL, trust), SLM_ERR_SIGNATURE,
              "missing signature");
    CHECK(access(merged, F_OK) != 0);
    CHECK_OK(slm_sign_file(g_base, kp, NULL, NULL));
    CHECK_OK(slm_adapter_merge_file_ex(g_base, dir, merged, 1.0f, NULL, trust));
    /* a tampered adapter: refused before anything is written */
    remove(merged);
    snprintf(sig, sizeof sig, "%s.sig", w);
    remove(sig);
    CHECK_ERR(slm_adapter_merge_file_ex(g_base, dir, merged, 1.0f, NULL, trust), SLM_ERR_SIGNATURE,
              "adapter_model.safetensors");
    CHECK(access(merged, F_OK) != 0);
    remove(bsig);
}

int main(void) {
    check_tmp_path("peft-base.gguf", g_base, sizeof g_base);
    check_tmp_path("peft-a", g_peft, sizeof g_peft);
    check_tmp_path("peft-a.gguf", g_gguf, sizeof g_gguf);
    slm_test_model_params p = {.dim = DIM,
                               .n_layers = LAYERS,
                               .n_heads = HEADS,
                               .n_kv_heads = KV_HEADS,
                               .ffn_dim = FFN,
                               .seed = 7};
    CHECK_OK(slm_test_write_model(g_base, &p));
    make_adapter(&g_ad, RANK, 3);
    CHECK_OK(write_gguf_adapter(g_gguf, &g_ad, ALPHA));
    CHECK_OK(write_peft(g_peft, &g_ad, ALPHA, "F32", 1, NULL));
    test_equivalence();
    test_rslora();
    test_patterns();
    test_rope_semantics();
    test_safetensors();
    test_bad_peft();
    test_signatures();
    free_adapter(&g_ad);
    return check_finish();
}
