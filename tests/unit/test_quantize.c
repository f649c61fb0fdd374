/* Model-level quantization (issue 4): every type's file back through the
 * loader, fallbacks and their report, mixes, refusing bad input without
 * touching existing files, calibration statistics saved and reused, --keep,
 * quantize on load, and compare on a hand-checkable case. */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

#include "check.h"
#include "format/gguf.h"
#include "quant/types.h"
#include "runtime/quantize.h"
#include "testmodel.h"

static const char *PROMPT = "the cat sat on the mat and a dog ran to the sun";

/* Normalized RMSE of a against the reference b. */
static double nrmse(const float *a, const float *b, size_t n) {
    double se = 0, mean = 0, var = 0;
    for (size_t i = 0; i < n; i++) mean += b[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++) {
        se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        var += ((double)b[i] - mean) * ((double)b[i] - mean);
    }
    return sqrt(se / (double)n) / sqrt(var / (double)n + 1e-30);
}

static slm_status logits_of(const char *path, const char *cfg_json, float **lg, size_t *n) {
    slm_config *c = NULL;
    slm_model *m = NULL;
    slm_session *s = NULL;
    size_t nt = 0, nv = 0;
    slm_status st = slm_config_new(&c);
    if (st == SLM_OK && cfg_json) st = slm_config_apply_json(c, cfg_json, strlen(cfg_json));
    if (st == SLM_OK) st = slm_model_load(path, c, &m);
    if (st == SLM_OK) st = slm_session_new(m, c, &s);
    if (st == SLM_OK) st = slm_prompt_logits(s, PROMPT, strlen(PROMPT), lg, &nt, &nv);
    *n = nt * nv;
    slm_session_free(s);
    slm_model_free(m);
    slm_config_free(c);
    return st;
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 22);
    *n = buf ? fread(buf, 1, 1 << 22, f) : 0;
    fclose(f);
    return buf;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static const char *type_of(const slm_quantize_report *r, const char *name) {
    for (size_t i = 0; i < r->n_tensors; i++)
        if (!strcmp(r->tensors[i].name, name)) return r->tensors[i].type;
    return "?";
}

static void test_planning(void) {
    CHECK(slm_qtype_fallback(SLM_TYPE_Q4_K, 64) == SLM_TYPE_Q5_0);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q5_K, 64) == SLM_TYPE_Q5_1);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q6_K, 64) == SLM_TYPE_Q8_0);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q4_K, 256) == SLM_TYPE_Q4_K);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q4_K, 172) == SLM_TYPE_F16);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q8_0, 172) == SLM_TYPE_F16);
    CHECK(slm_qtype_fallback(SLM_TYPE_Q4_0, 96) == SLM_TYPE_Q4_0);
    CHECK(slm_qtype_fallback(SLM_TYPE_F16, 7) == SLM_TYPE_F16);
    slm_qtarget t;
    CHECK_OK(slm_qtarget_parse("Q4_K_M", &t));
    CHECK(t.mix == SLM_QMIX_Q4_K_M && t.type == SLM_TYPE_Q4_K && t.ftype == 15);
    CHECK_ERR(slm_qtarget_parse("q3_k_xl", &t), SLM_ERR_INVALID_ARG, "q3_k_xl");
    /* use_more_bits over 5 layers: layers 2 and 4 (and none of the first 5/8 = 0) */
    const char *expect[5] = {"q4_k", "q4_k", "q6_k", "q4_k", "q6_k"};
    for (int l = 0; l < 5; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        CHECK_MSG(!strcmp(slm_type_name(slm_qtarget_tensor_type(&t, name, 256, 5, 1)), expect[l]),
                  "layer %d", l);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        CHECK(!strcmp(slm_type_name(slm_qtarget_tensor_type(&t, name, 256, 5, 1)), expect[l]));
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        CHECK(slm_qtarget_tensor_type(&t, name, 256, 5, 1) == SLM_TYPE_Q4_K);
    }
    CHECK(slm_qtarget_tensor_type(&t, "output.weight", 256, 5, 1) == SLM_TYPE_Q6_K);
    CHECK(slm_qtarget_tensor_type(&t, "output.weight", 64, 5, 1) == SLM_TYPE_Q8_0);
    CHECK(slm_qtarget_tensor_type(&t, "token_embd.weight", 256, 5, 1) == SLM_TYPE_Q4_K);
    CHECK(slm_qtarget_tensor_type(&t, "token_embd.weight", 256, 5, 0) == SLM_TYPE_Q6_K);
}

/* Each type: quantize, check the file's types and metadata, load it, and
 * compare its logits with the F32 model's. */
static void test_types(const char *f32) {
    static const struct {
        const char *type;
        double bound;          /* normalized RMSE of logits */
        const char *wq, *down; /* expected types of a 256-col and a 288-col matrix */
    } cases[] = {
        /* Random weights are a worst case for rounding; the bounds are about
         * twice what the reference quantizers give here, far below the ~1.0
         * of a wrong block layout. q8_0 allows 0.03: the avx512 provider also
         * rounds activations to 8 bits (as llama.cpp's CPU path does), which
         * adds about 0.01 to the 0.011 of the weights' rounding. */
        {"f16", 0.002, "f16", "f16"},    {"bf16", 0.02, "bf16", "bf16"},
        {"q8_0", 0.03, "q8_0", "q8_0"},  {"q6_k", 0.08, "q6_k", "q8_0"},
        {"q5_k", 0.2, "q5_k", "q5_1"},   {"q5_1", 0.25, "q5_1", "q5_1"},
        {"q5_0", 0.25, "q5_0", "q5_0"},  {"q4_k", 0.4, "q4_k", "q5_0"},
        {"q4_1", 0.45, "q4_1", "q4_1"},  {"q4_0", 0.5, "q4_0", "q4_0"},
        {"q4_k_m", 0.4, "q4_k", "q8_0"}, {"q5_k_m", 0.2, "q5_k", "q8_0"},
    };
    float *ref = NULL;
    size_t n_ref = 0;
    CHECK_OK(logits_of(f32, NULL, &ref, &n_ref));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[512];
        char name[64];
        snprintf(name, sizeof name, "q-%s.gguf", cases[i].type);
        check_tmp_path(name, out, sizeof out);
        slm_quantize_params p = {.type = cases[i].type};
        slm_quantize_report *r = NULL;
        CHECK_OK(slm_quantize_file(f32, out, &p, &r));
        if (!r) continue;
        CHECK_MSG(!strcmp(type_of(r, "blk.1.attn_q.weight"), cases[i].wq), "%s: wq is %s",
                  cases[i].type, type_of(r, "blk.1.attn_q.weight"));
        /* blk.1 of 2 layers: use_more_bits(1, 2) is true, so q*_k_m asks q6_k -> q8_0 */
        CHECK_MSG(!strcmp(type_of(r, "blk.1.ffn_down.weight"), cases[i].down), "%s: ffn_down is %s",
                  cases[i].type, type_of(r, "blk.1.ffn_down.weight"));
        CHECK(!strcmp(type_of(r, "blk.0.attn_norm.weight"), "f32"));
        /* fallbacks: reported with the type asked for */
        size_t fb = 0;
        for (size_t k = 0; k < r->n_tensors; k++)
            fb += strcmp(r->tensors[k].type, r->tensors[k].wanted) != 0;
        CHECK(fb == r->n_fallbacks);
        int k_quant = strstr(cases[i].type, "_k") != NULL;
        CHECK_MSG(k_quant ? r->n_fallbacks >= 2 : r->n_fallbacks == 0, "%s: %zu fallbacks",
                  cases[i].type, r->n_fallbacks);
        CHECK(r->bytes_out > 0 && r->bytes_out < r->bytes_in);
        slm_quantize_report_free(r);

        gguf_file *g = NULL;
        CHECK_OK(gguf_open(out, &g));
        if (g) {
            uint32_t qv = 0, ft = 99;
            CHECK_OK(gguf_get_u32(g, "general.quantization_version", &qv));
            CHECK_OK(gguf_get_u32(g, "general.file_type", &ft));
            slm_qtarget t;
            CHECK_OK(slm_qtarget_parse(cases[i].type, &t));
            CHECK(qv == 2 && ft == t.ftype);
            CHECK(gguf_find_kv(g, "tokenizer.ggml.tokens") != NULL); /* metadata copied */
            CHECK(gguf_find_kv(g, "slm.activation_ranges") == NULL); /* no calibration */
            gguf_close(g);
        }
        float *lg = NULL;
        size_t n = 0;
        CHECK_OK(logits_of(out, NULL, &lg, &n));
        if (lg && n == n_ref) {
            double e = nrmse(lg, ref, n);
            CHECK_MSG(e <= cases[i].bound, "%s: logits nrmse %g > %g", cases[i].type, e,
                      cases[i].bound);
            CHECK_MSG(e > 0 || !strcmp(cases[i].type, "f32"), "%s: identical logits?",
                      cases[i].type);
        }
        free(lg);
    }
    free(ref);
}

static void test_refusals(const char *f32) {
    char out[512], q8[512];
    check_tmp_path("existing.gguf", out, sizeof out);
    check_tmp_path("refuse-q8.gguf", q8, sizeof q8);
    const char keep[] = "do not touch me";
    CHECK_OK(slm_test_write_bytes(out, keep, sizeof keep));
    struct stat before, after;
    CHECK(stat(out, &before) == 0);
    size_t in_n = 0;
    char *in_before = read_all(f32, &in_n);

    slm_quantize_params p = {.type = "q9_9"};
    CHECK_ERR(slm_quantize_file(f32, out, &p, NULL), SLM_ERR_INVALID_ARG, "q9_9");
    p.type = "q8_0";
    CHECK_OK(slm_quantize_file(f32, q8, &p, NULL));
    CHECK_ERR(slm_quantize_file(q8, out, &p, NULL), SLM_ERR_UNSUPPORTED, "already q8_0");
    CHECK_ERR(slm_quantize_file(f32, "/nonexistent-dir/x.gguf", &p, NULL), SLM_ERR_IO,
              "/nonexistent-dir");
    CHECK_ERR(slm_quantize_file(f32, f32, &p, NULL), SLM_ERR_INVALID_ARG, "is the input");
    CHECK_ERR(slm_quantize_file("/nonexistent.gguf", out, &p, NULL), SLM_ERR_IO,
              "/nonexistent.gguf");
    const char *bad_keep[] = {"blk.*=q7"};
    slm_quantize_params pk = {.type = "q8_0", .keep = bad_keep, .n_keep = 1};
    CHECK_ERR(slm_quantize_file(f32, out, &pk, NULL), SLM_ERR_INVALID_ARG, "q7");
    slm_quantize_params pb = {.type = "q8_0", .budget_kl = 0.01};
    CHECK_ERR(slm_quantize_file(f32, out, &pb, NULL), SLM_ERR_INVALID_ARG, "--calib");
    slm_quantize_params ps = {.type = "q8_0", .stats_in = f32};
    CHECK_ERR(slm_quantize_file(f32, out, &ps, NULL), SLM_ERR_FORMAT, "statistics");

    CHECK(stat(out, &after) == 0);
    CHECK(before.st_mtime == after.st_mtime && before.st_ino == after.st_ino);
    size_t n = 0;
    char *now = read_all(out, &n);
    CHECK(now && n == sizeof keep && memcmp(now, keep, n) == 0);
    free(now);
    size_t in_n2 = 0;
    char *in_after = read_all(f32, &in_n2);
    CHECK(in_before && in_after && in_n == in_n2 && memcmp(in_before, in_after, in_n) == 0);
    free(in_before);
    free(in_after);
}

static const char *CALIB =
    "the cat sat on the mat. a dog ran to the sun and the cat ran to the dog. "
    "the sun is hot and the mat is red. a bird sat on the dog and the dog sat on the mat. "
    "the cat and the dog and the bird ran and sat and ran to the red sun on the hot mat. ";

static void test_calibration(const char *f32) {
    char out_c[512], out_s[512], stats[512], stats_bad[512];
    check_tmp_path("calib.gguf", out_c, sizeof out_c);
    check_tmp_path("calib-stats.gguf", out_s, sizeof out_s);
    check_tmp_path("stats.gguf", stats, sizeof stats);
    check_tmp_path("stats-bad.gguf", stats_bad, sizeof stats_bad);
    slm_quantize_params p = {.type = "q4_0",
                             .calib_text = CALIB,
                             .calib_len = strlen(CALIB),
                             .calib_ctx = 32,
                             .stats_out = stats};
    slm_quantize_report *r = NULL;
    CHECK_OK(slm_quantize_file(f32, out_c, &p, &r));
    CHECK(r && r->calibrated);
    if (r) {
        size_t n_cal = 0;
        for (size_t i = 0; i < r->n_tensors; i++) n_cal += (size_t)r->tensors[i].calibrated;
        /* 7 matrices per layer and the output; token_embd is a lookup, not a matmul */
        CHECK_MSG(n_cal == 15, "%zu calibrated", n_cal);
    }
    slm_quantize_report_free(r);

    slm_qstats st;
    CHECK_OK(slm_qstats_load(stats, &st));
    CHECK(st.n == 15 && st.n_tokens > 0);
    const slm_qstat *q = slm_qstats_find(&st, "blk.0.attn_q.weight");
    CHECK(q && q->n_cols == 256 && q->n_rows == st.n_tokens);
    if (q) {
        int ok = 1;
        double mean = 0;
        for (int64_t j = 0; j < q->n_cols; j++) {
            ok &= isfinite(q->mean[j]) && q->mean[j] >= 0.0f;
            mean += q->mean[j];
            ok &= q->mean[j] <= fmaxf(q->amin * q->amin, q->amax * q->amax) * 1.0001f;
        }
        CHECK(ok && mean > 0 && q->amin < 0 && q->amax > 0);
    }
    const slm_qstat *down = slm_qstats_find(&st, "blk.1.ffn_down.weight");
    CHECK(down && down->n_cols == 288);
    slm_qstats_free(&st);

    /* the saved statistics give the same file */
    slm_quantize_params p2 = {.type = "q4_0", .stats_in = stats};
    CHECK_OK(slm_quantize_file(f32, out_s, &p2, NULL));
    CHECK(same_file(out_c, out_s));
    /* and the calibrated file differs from the plain one */
    char plain[512];
    check_tmp_path("plain.gguf", plain, sizeof plain);
    slm_quantize_params p3 = {.type = "q4_0"};
    CHECK_OK(slm_quantize_file(f32, plain, &p3, NULL));
    CHECK(!same_file(out_c, plain));

    /* activation ranges: [min, max] per tensor in file order, NaN for 1-D */
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(out_c, &g));
    if (g) {
        const gguf_kv *kv = gguf_find_kv(g, "slm.activation_ranges");
        CHECK(kv && kv->arr_type == GGUF_VT_FLOAT32 && kv->arr_len == 2 * gguf_n_tensors(g));
        for (uint64_t i = 0; kv && i < gguf_n_tensors(g); i++) {
            const gguf_tensor *t = gguf_tensor_at(g, i);
            double lo = gguf_arr_f64(kv, 2 * i), hi = gguf_arr_f64(kv, 2 * i + 1);
            int is_embd = gguf_str_eq(t->name, "token_embd.weight");
            if (t->n_dims == 1 || is_embd)
                CHECK(isnan(lo) && isnan(hi));
            else
                CHECK(lo < hi);
        }
        gguf_close(g);
    }

    /* a damaged statistics file is refused, naming it */
    CHECK_OK(slm_test_write_bytes(stats_bad, "GGUF\3\0\0\0garbage", 15));
    CHECK_ERR(slm_qstats_load(stats_bad, &st), SLM_ERR_FORMAT, "stats-bad");
    /* statistics of another model (wrong widths) are refused */
    char other[512], other_stats[512], out_o[512];
    check_tmp_path("other.gguf", other, sizeof other);
    check_tmp_path("other-stats.gguf", other_stats, sizeof other_stats);
    check_tmp_path("other-out.gguf", out_o, sizeof out_o);
    slm_test_model_params mp = {
        .dim = 64, .n_layers = 2, .n_heads = 4, .ffn_dim = 96, .n_ctx = 128, .seed = 3};
    CHECK_OK(slm_test_write_model(other, &mp));
    slm_quantize_params po = {
        .type = "q8_0", .calib_text = CALIB, .calib_len = strlen(CALIB), .stats_out = other_stats};
    CHECK_OK(slm_quantize_file(other, out_o, &po, NULL));
    slm_quantize_params pw = {.type = "q8_0", .stats_in = other_stats};
    CHECK_ERR(slm_quantize_file(f32, out_o, &pw, NULL), SLM_ERR_INVALID_ARG, "columns");
}

static void test_keep(const char *f32) {
    char out[512];
    check_tmp_path("keep.gguf", out, sizeof out);
    const char *keep[] = {"blk.0.*=q8_0", "token_embd.weight=f16", "*ffn_down*=q4_k",
                          "blk.1.attn_q.weight=q4_1"};
    slm_quantize_params p = {.type = "q4_0", .keep = keep, .n_keep = 4};
    slm_quantize_report *r = NULL;
    CHECK_OK(slm_quantize_file(f32, out, &p, &r));
    if (!r) return;
    CHECK(!strcmp(type_of(r, "blk.0.attn_q.weight"), "q8_0"));
    CHECK(!strcmp(type_of(r, "blk.0.ffn_down.weight"), "q8_0")); /* first rule wins */
    CHECK(!strcmp(type_of(r, "blk.1.ffn_down.weight"), "q5_0")); /* q4_k falls back */
    CHECK(!strcmp(type_of(r, "token_embd.weight"), "f16"));
    CHECK(!strcmp(type_of(r, "blk.1.attn_q.weight"), "q4_1"));
    CHECK(!strcmp(type_of(r, "blk.1.attn_k.weight"), "q4_0"));
    CHECK(!strcmp(type_of(r, "blk.0.attn_norm.weight"), "f32")); /* 1-D untouched */
    CHECK(r->n_fallbacks == 1);
    CHECK(r->plan && strstr(r->plan, "blk.1.attn_q.weight=q4_1"));
    slm_quantize_report_free(r);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(out, &g));
    if (g) {
        const gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
        CHECK(t && t->type == SLM_TYPE_F16);
        gguf_str plan = {0};
        CHECK_OK(gguf_get_str(g, "slm.quant.plan", &plan));
        gguf_close(g);
    }
}

static void test_load_quant(const char *f32, const char *f16) {
    float *ref = NULL, *lg = NULL;
    size_t n_ref = 0, n = 0;
    CHECK_OK(logits_of(f32, NULL, &ref, &n_ref));
    static const struct {
        const char *quant;
        double bound;
    } cases[] = {{"int8", 0.03}, {"int4", 0.4}, {"q6_k", 0.08}, {"f16", 0.002}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[64];
        snprintf(json, sizeof json, "{\"quant\":\"%s\"}", cases[i].quant);
        CHECK_OK(logits_of(f16, json, &lg, &n));
        if (lg && n == n_ref) {
            double e = nrmse(lg, ref, n);
            CHECK_MSG(e <= cases[i].bound, "quant %s at load: nrmse %g", cases[i].quant, e);
        }
        free(lg);
        lg = NULL;
    }
    /* the model says what it did and how long it took */
    slm_config *c = NULL;
    slm_model *m = NULL;
    CHECK_OK(slm_config_new(&c));
    CHECK_OK(slm_config_apply_json(c, "{\"quant\":\"int8\"}", 16));
    CHECK_OK(slm_model_load(f16, c, &m));
    if (m) {
        slm_model_info info;
        CHECK_OK(slm_model_get_info(m, &info));
        CHECK(!strcmp(info.weight_type, "q8_0"));
        CHECK(slm_model_quant_load_ms(m) > 0.0);
        slm_model_free(m);
        m = NULL;
    }
    /* already quantized files are not re-quantized */
    char q4[512];
    check_tmp_path("load-q4.gguf", q4, sizeof q4);
    slm_quantize_params p = {.type = "q4_0"};
    CHECK_OK(slm_quantize_file(f32, q4, &p, NULL));
    CHECK_ERR(slm_model_load(q4, c, &m), SLM_ERR_UNSUPPORTED, "already q4_0");
    CHECK_OK(slm_config_apply_json(c, "{\"quant\":\"q2_k\"}", 16));
    CHECK_ERR(slm_model_load(f16, c, &m), SLM_ERR_CONFIG, "q2_k");
    slm_config_free(c);
    free(ref);
}

static void test_compare(const char *f32) {
    char text[4096];
    size_t at = 0;
    while (at + strlen(CALIB) < sizeof text) {
        memcpy(text + at, CALIB, strlen(CALIB));
        at += strlen(CALIB);
    }
    slm_compare_result r;
    CHECK_OK(slm_compare_files(f32, f32, text, at, 32, NULL, &r));
    CHECK(r.n_scored > 0 && r.n_windows > 0 && r.n_scored == r.n_windows * 31);
    CHECK(r.kl_mean == 0.0 && r.kl_p99 == 0.0 && r.kl_max == 0.0);
    CHECK(r.top1 == 1.0);
    CHECK(r.ppl_base == r.ppl_quant && r.ppl_base > 1.0);
    CHECK(r.bytes_base == r.bytes_quant && r.bytes_base > 0);
    CHECK_NEAR(r.bpw_base, 32.0, 1e-9);
    CHECK_NEAR(r.bpw_all_base, 32.0, 1e-9);
    /* the same perplexity as slm_perplexity */
    slm_model *m = NULL;
    slm_session *s = NULL;
    slm_config *c = NULL;
    CHECK_OK(slm_config_new(&c));
    CHECK_OK(slm_config_apply_json(c, "{\"n_ctx\":32}", 12));
    CHECK_OK(slm_model_load(f32, NULL, &m));
    if (m) CHECK_OK(slm_session_new(m, c, &s));
    slm_perplexity_result pr;
    if (s) {
        CHECK_OK(slm_perplexity(s, text, at, 32, &pr));
        CHECK_NEAR(pr.perplexity, r.ppl_base, 1e-9 * pr.perplexity);
        CHECK(pr.n_scored == r.n_scored);
    }
    slm_session_free(s);
    slm_model_free(m);
    slm_config_free(c);

    /* against q8_0: small but non-zero divergence, bits per weight 8.5 */
    char q8[512];
    check_tmp_path("cmp-q8.gguf", q8, sizeof q8);
    slm_quantize_params p = {.type = "q8_0"};
    CHECK_OK(slm_quantize_file(f32, q8, &p, NULL));
    CHECK_OK(slm_compare_files(f32, q8, text, at, 32, NULL, &r));
    CHECK(r.kl_mean > 0.0 && r.kl_mean < 0.01 && r.kl_p99 >= r.kl_mean && r.kl_max >= r.kl_p99);
    CHECK(r.top1 > 0.8 && r.top1 <= 1.0);
    CHECK_NEAR(r.bpw_quant, 8.5, 1e-9);
    CHECK(r.bytes_quant < r.bytes_base);
    CHECK_ERR(slm_compare_files(f32, q8, "ab", 2, 32, NULL, &r), SLM_ERR_INVALID_ARG, "window");
}

/* --budget: the measured KL of the plan stays within the budget, re-measured
 * by compare on the same text, and the plan is stored. */
static void test_budget(const char *f32) {
    char out[512];
    check_tmp_path("budget.gguf", out, sizeof out);
    const double budget = 0.02;
    const char *keep[] = {"output.weight=q8_0"};
    slm_quantize_params p = {.type = "q4_0",
                             .calib_text = CALIB,
                             .calib_len = strlen(CALIB),
                             .calib_ctx = 32,
                             .budget_kl = budget,
                             .keep = keep,
                             .n_keep = 1};
    slm_quantize_report *r = NULL;
    CHECK_OK(slm_quantize_file(f32, out, &p, &r));
    if (!r) return;
    CHECK_MSG(r->budget_measured_kl <= budget, "measured %g", r->budget_measured_kl);
    CHECK(r->budget_predicted_kl > 0.0);
    CHECK(!strcmp(type_of(r, "output.weight"), "q8_0")); /* --keep is respected */
    slm_quantize_report_free(r);
    slm_compare_result c;
    CHECK_OK(slm_compare_files(f32, out, CALIB, strlen(CALIB), 32, NULL, &c));
    CHECK_MSG(c.kl_mean <= budget, "re-measured %g", c.kl_mean);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(out, &g));
    if (g) {
        gguf_str plan = {0};
        float kl = -1.0f;
        CHECK_OK(gguf_get_str(g, "slm.quant.plan", &plan));
        CHECK_OK(gguf_get_f32(g, "slm.quant.measured_kl", &kl));
        CHECK(kl >= 0.0f && kl <= (float)budget);
        gguf_close(g);
    }
}

/* GPTQ on a hand-made matrix: with a diagonal Hessian nothing propagates and
 * the result is the imatrix-weighted rounding; with correlated inputs the
 * output error on those inputs, trace((W-Q) H (W-Q)^T), is smaller than
 * plain rounding's. */
static double output_error(const float *W, const uint8_t *Q, uint32_t type, int rows, int n,
                           const double *H) {
    float *d = malloc((size_t)n * sizeof *d);
    uint64_t rb = 0;
    slm_row_bytes(type, (uint64_t)n, &rb);
    double err = 0.0;
    for (int r = 0; r < rows; r++) {
        slm_dequantize_row(type, Q + (size_t)r * rb, d, n);
        for (int i = 0; i < n; i++) d[i] = W[(size_t)r * n + i] - d[i];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double h = i <= j ? H[(size_t)i * n + j] : H[(size_t)j * n + i];
                err += (double)d[i] * h * d[j];
            }
    }
    free(d);
    return err;
}

static void test_gptq(void) {
    enum { ROWS = 16, N = 64, TOKENS = 400 };
    check_rng rng = {99};
    static float W[ROWS * N], X[TOKENS * N], A[N * N];
    static double H[N * N];
    static float mean[N];
    static uint8_t q_rtn[ROWS * 36 * 2], q_gptq[ROWS * 36 * 2];
    for (int i = 0; i < ROWS * N; i++) W[i] = check_rng_normal(&rng);
    /* x = A z: strongly correlated columns */
    for (int i = 0; i < N * N; i++)
        A[i] = (i % (N + 1) == 0 ? 1.0f : 0.0f) + 0.5f * check_rng_normal(&rng) / sqrtf((float)N);
    for (int t = 0; t < TOKENS; t++) {
        float z[N];
        for (int k = 0; k < N; k++) z[k] = check_rng_normal(&rng);
        for (int i = 0; i < N; i++) {
            float v = 0;
            for (int k = 0; k < N; k++) v += A[i * N + k] * z[k] * (k < 8 ? 3.0f : 1.0f);
            X[t * N + i] = v;
        }
    }
    memset(H, 0, sizeof H);
    for (int t = 0; t < TOKENS; t++)
        for (int i = 0; i < N; i++)
            for (int j = i; j < N; j++) H[i * N + j] += (double)X[t * N + i] * X[t * N + j];
    for (int i = 0; i < N; i++) mean[i] = (float)(H[i * N + i] / TOKENS);
    slm_qstat st = {.name = "w", .n_cols = N, .mean = mean, .n_rows = TOKENS, .hess = H};
    const uint32_t types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q8_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        uint32_t ty = types[k];
        CHECK_OK(slm_quantize_matrix(SLM_TYPE_F32, (const uint8_t *)W, N * sizeof(float), N, ROWS,
                                     ty, q_rtn, mean, NULL));
        CHECK_OK(slm_gptq_matrix(SLM_TYPE_F32, (const uint8_t *)W, N * sizeof(float), N, ROWS, ty,
                                 q_gptq, &st, NULL));
        double e_rtn = output_error(W, q_rtn, ty, ROWS, N, H);
        double e_gptq = output_error(W, q_gptq, ty, ROWS, N, H);
        CHECK_MSG(e_gptq < 0.8 * e_rtn, "%s: gptq error %g vs rounding %g", slm_type_name(ty),
                  e_gptq, e_rtn);
    }
    /* diagonal Hessian: GPTQ = weighted rounding, byte for byte */
    static double D[N * N];
    memset(D, 0, sizeof D);
    for (int i = 0; i < N; i++) D[i * N + i] = mean[i] * TOKENS;
    slm_qstat sd = st;
    sd.hess = D;
    CHECK_OK(slm_quantize_matrix(SLM_TYPE_F32, (const uint8_t *)W, N * sizeof(float), N, ROWS,
                                 SLM_TYPE_Q4_0, q_rtn, mean, NULL));
    CHECK_OK(slm_gptq_matrix(SLM_TYPE_F32, (const uint8_t *)W, N * sizeof(float), N, ROWS,
                             SLM_TYPE_Q4_0, q_gptq, &sd, NULL));
    CHECK(memcmp(q_rtn, q_gptq, ROWS * 18 * (N / 32)) == 0);
}

/* --gptq end to end: closer to the base on the calibration text than
 * imatrix rounding alone; refused without calibration text. */
static void test_gptq_file(const char *f32) {
    char a[512], b[512];
    check_tmp_path("gptq.gguf", a, sizeof a);
    check_tmp_path("nogptq.gguf", b, sizeof b);
    slm_quantize_params p = {.type = "q4_0",
                             .calib_text = CALIB,
                             .calib_len = strlen(CALIB),
                             .calib_ctx = 32,
                             .gptq = 1};
    CHECK_OK(slm_quantize_file(f32, a, &p, NULL));
    p.gptq = 0;
    CHECK_OK(slm_quantize_file(f32, b, &p, NULL));
    slm_compare_result ra, rb;
    CHECK_OK(slm_compare_files(f32, a, CALIB, strlen(CALIB), 32, NULL, &ra));
    CHECK_OK(slm_compare_files(f32, b, CALIB, strlen(CALIB), 32, NULL, &rb));
    CHECK_MSG(ra.kl_mean < rb.kl_mean, "gptq KL %g, imatrix KL %g", ra.kl_mean, rb.kl_mean);
    slm_quantize_params bad = {.type = "q4_0", .gptq = 1};
    CHECK_ERR(slm_quantize_file(f32, a, &bad, NULL), SLM_ERR_INVALID_ARG, "--gptq");
}

int main(void) {
    char f32[512], f16[512];
    check_tmp_path("base-f32.gguf", f32, sizeof f32);
    check_tmp_path("base-f16.gguf", f16, sizeof f16);
    /* 256-wide rows fit every type; the FFN's 288 fits 32-blocks but not 256 */
    slm_test_model_params mp = {.dim = 256,
                                .n_layers = 2,
                                .n_heads = 4,
                                .n_kv_heads = 2,
                                .ffn_dim = 288,
                                .n_ctx = 128,
                                .n_extra_vocab = 20,
                                .seed = 7,
                                .scale = 0.05f};
    CHECK_OK(slm_test_write_model(f32, &mp));
    mp.wtype = SLM_TYPE_F16;
    CHECK_OK(slm_test_write_model(f16, &mp));
    test_planning();
    test_types(f32);
    test_refusals(f32);
    test_calibration(f32);
    test_keep(f32);
    test_load_quant(f32, f16);
    test_compare(f32);
    test_budget(f32);
    test_gptq();
    test_gptq_file(f32);
    return check_finish();
}
