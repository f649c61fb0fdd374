/* Random llama/qwen2 models in GGUF, named exactly as llama.cpp names them.
 * The vocabulary is a tiny SentencePiece-style one (specials, byte tokens,
 * letters and pieces that merge into common English words), enough for the
 * tokenizer and generation paths to do real work. */
#include "testmodel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "check.h"
#include "format/gguf.h"
#include "quant/types.h"

#define TM_MAX_DIM 65536 /* sanity bounds: tests make small models */
#define TM_MAX_LAYERS 1024
#define TM_MAX_EXTRA_VOCAB 1000000
#define TM_DEFAULT_CTX 512
#define TM_DEFAULT_ROPE_BASE 10000.0f
#define TM_DEFAULT_EPS 1e-5f
#define TM_DEFAULT_SCALE 0.02f
#define TM_NORM_NOISE 0.05f /* norm weights are 1 + this * normal */
#define TM_PIECE_MAX 32     /* bytes of one generated piece */
#define TM_NAME_MAX 64      /* bytes of one tensor or key name */

/* SentencePiece token types as llama.cpp stores them. */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

#define SPM_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word-start marker */

/* Every multi-letter piece is the concatenation of two earlier pieces, so
 * pair merging can reach it. */
static const char *const k_common[] = {
    "he",
    "in",
    "er",
    "an",
    "on",
    "ou",
    "is",
    "it",
    "at",
    "en",
    "re",
    "or",
    "ed",
    "nd",
    "ll",
    "st",
    "as",
    "ar",
    "al",
    "le",
    "ay",
    "ing",
    "ere",
    SPM_SPACE "the",
    SPM_SPACE "and",
    SPM_SPACE "he",
    SPM_SPACE "to",
    SPM_SPACE "of",
    SPM_SPACE "in",
    SPM_SPACE "is",
    SPM_SPACE "it",
    SPM_SPACE "was",
    SPM_SPACE "she",
    SPM_SPACE "on",
    SPM_SPACE "an",
    SPM_SPACE "be",
    SPM_SPACE "for",
    SPM_SPACE "his",
    SPM_SPACE "her",
    SPM_SPACE "day",
    SPM_SPACE "at",
    SPM_SPACE "or",
};
#define N_COMMON ((int)(sizeof k_common / sizeof k_common[0]))
#define N_SPECIAL 3
#define N_BYTES 256
#define N_LETTERS 26

int slm_test_base_vocab(void) {
    return N_SPECIAL + N_BYTES + 1 + 2 * N_LETTERS + N_COMMON;
}

slm_status slm_test_write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return slm_fail(SLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    int rc = fclose(f);
    if (w != n || rc != 0) return slm_fail(SLM_ERR_IO, "%s: write failed", path);
    return SLM_OK;
}

/* ---- vocabulary ---------------------------------------------------------- */

typedef struct vocab {
    int n;
    char (*text)[TM_PIECE_MAX];
    const char **ptrs;
    float *scores;
    int32_t *types;
} vocab;

static void vocab_free(vocab *v) {
    free(v->text);
    free(v->ptrs);
    free(v->scores);
    free(v->types);
}

static void vocab_add(vocab *v, const char *s, float score, int32_t type) {
    snprintf(v->text[v->n], TM_PIECE_MAX, "%s", s);
    v->scores[v->n] = score;
    v->types[v->n] = type;
    v->n++;
}

static slm_status vocab_build(vocab *v, int n_extra) {
    int n = slm_test_base_vocab() + n_extra;
    memset(v, 0, sizeof *v);
    v->text = calloc((size_t)n, sizeof *v->text);
    v->ptrs = calloc((size_t)n, sizeof *v->ptrs);
    v->scores = calloc((size_t)n, sizeof *v->scores);
    v->types = calloc((size_t)n, sizeof *v->types);
    if (!v->text || !v->ptrs || !v->scores || !v->types) {
        vocab_free(v);
        return slm_fail(SLM_ERR_NOMEM, "test model: out of memory for the vocabulary");
    }
    vocab_add(v, "<unk>", 0.0f, TT_UNKNOWN);
    vocab_add(v, "<s>", 0.0f, TT_CONTROL);
    vocab_add(v, "</s>", 0.0f, TT_CONTROL);
    for (int b = 0; b < N_BYTES; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        vocab_add(v, s, 0.0f, TT_BYTE);
    }
    /* Scores fall with the id, so earlier (shorter, commoner) pieces merge
     * first, as in a trained SentencePiece model. */
    vocab_add(v, SPM_SPACE, -(float)v->n, TT_NORMAL);
    for (int c = 0; c < N_LETTERS; c++) {
        char s[2] = {(char)('a' + c), 0};
        vocab_add(v, s, -(float)v->n, TT_NORMAL);
    }
    for (int c = 0; c < N_LETTERS; c++) {
        char s[8];
        snprintf(s, sizeof s, SPM_SPACE "%c", 'a' + c);
        vocab_add(v, s, -(float)v->n, TT_NORMAL);
    }
    for (int i = 0; i < N_COMMON; i++) vocab_add(v, k_common[i], -(float)v->n, TT_NORMAL);
    for (int i = 0; i < n_extra; i++) {
        char s[TM_PIECE_MAX];
        snprintf(s, sizeof s, SPM_SPACE "x%d", i);
        vocab_add(v, s, -(float)v->n, TT_NORMAL);
    }
    for (int i = 0; i < v->n; i++) v->ptrs[i] = v->text[i];
    return SLM_OK;
}

/* ---- tensors --------------------------------------------------------------- */

typedef struct builder {
    gguf_writer *w;
    check_rng rng;
    float scale;
    void **bufs; /* tensor data, borrowed by the writer until it has written */
    size_t n_bufs;
    size_t cap_bufs;
} builder;

typedef enum { FILL_WEIGHT, FILL_NORM, FILL_BIAS } fill_kind;

/* A [ne0, ne1] tensor (ne1 == 0: 1-D) of `type`, rows quantized one by one. */
static slm_status add_tensor(builder *b, const char *name, uint32_t type, int64_t ne0, int64_t ne1,
                             fill_kind kind) {
    int64_t rows = ne1 > 0 ? ne1 : 1;
    uint64_t row_bytes;
    SLM_TRY(slm_row_bytes(type, (uint64_t)ne0, &row_bytes));
    float *src = malloc((size_t)ne0 * sizeof *src);
    uint8_t *dst = malloc((size_t)(row_bytes * (uint64_t)rows));
    if (b->n_bufs == b->cap_bufs) {
        size_t cap = b->cap_bufs ? b->cap_bufs * 2 : 64;
        void **nb = realloc(b->bufs, cap * sizeof *nb);
        if (nb) {
            b->bufs = nb;
            b->cap_bufs = cap;
        }
    }
    if (!src || !dst || b->n_bufs == b->cap_bufs) {
        free(src);
        free(dst);
        return slm_fail(SLM_ERR_NOMEM, "test model: out of memory for '%s'", name);
    }
    b->bufs[b->n_bufs++] = dst;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < ne0; i++) {
            float z = check_rng_normal(&b->rng);
            src[i] = kind == FILL_NORM ? 1.0f + TM_NORM_NOISE * z : b->scale * z;
        }
        slm_quantize_row_ref(type, src, dst + (size_t)(row_bytes * (uint64_t)r), ne0, NULL);
    }
    free(src);
    uint64_t ne[2] = {(uint64_t)ne0, (uint64_t)rows};
    return gguf_writer_add_tensor_ref(b->w, name, type, ne1 > 0 ? 2 : 1, ne, dst,
                                      row_bytes * (uint64_t)rows);
}

static slm_status check_params(const slm_test_model_params *p, const char *arch) {
    if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0)
        return slm_fail(SLM_ERR_INVALID_ARG, "test model: unknown arch '%s'", arch);
    if (p->dim <= 0 || p->dim > TM_MAX_DIM || p->n_layers <= 0 || p->n_layers > TM_MAX_LAYERS ||
        p->n_heads <= 0 || p->ffn_dim <= 0 || p->ffn_dim > TM_MAX_DIM || p->n_kv_heads < 0 ||
        p->n_ctx < 0 || p->n_extra_vocab < 0 || p->n_extra_vocab > TM_MAX_EXTRA_VOCAB)
        return slm_fail(SLM_ERR_INVALID_ARG, "test model: a size is out of range");
    if (p->dim % p->n_heads != 0 || (p->dim / p->n_heads) % 2 != 0)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "test model: dim %d must split into %d heads of even size", p->dim,
                        p->n_heads);
    int n_kv = p->n_kv_heads ? p->n_kv_heads : p->n_heads;
    if (n_kv > p->n_heads || p->n_heads % n_kv != 0)
        return slm_fail(SLM_ERR_INVALID_ARG, "test model: %d heads cannot share %d kv heads",
                        p->n_heads, n_kv);
    const slm_type_info *ti = slm_type_get(p->wtype);
    if (!ti || !ti->can_quantize)
        return slm_fail(SLM_ERR_INVALID_ARG, "test model: cannot quantize to type %u",
                        (unsigned)p->wtype);
    if (p->dim % (int)ti->block_size != 0 || p->ffn_dim % (int)ti->block_size != 0)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "test model: dim %d and ffn_dim %d must be multiples of the %s block %u",
                        p->dim, p->ffn_dim, ti->name, ti->block_size);
    return SLM_OK;
}

static slm_status write_metadata(gguf_writer *w, const slm_test_model_params *p, const char *arch,
                                 const vocab *v) {
    char key[TM_NAME_MAX];
    int n_kv = p->n_kv_heads ? p->n_kv_heads : p->n_heads;
#define ARCH_KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    SLM_TRY(gguf_writer_set_str(w, "general.architecture", arch));
    SLM_TRY(gguf_writer_set_str(w, "general.name", "slm-test"));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("context_length"),
                                (uint32_t)(p->n_ctx ? p->n_ctx : TM_DEFAULT_CTX)));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("embedding_length"), (uint32_t)p->dim));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("block_count"), (uint32_t)p->n_layers));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("feed_forward_length"), (uint32_t)p->ffn_dim));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("attention.head_count"), (uint32_t)p->n_heads));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("attention.head_count_kv"), (uint32_t)n_kv));
    SLM_TRY(gguf_writer_set_f32(w, ARCH_KEY("rope.freq_base"),
                                p->rope_base > 0 ? p->rope_base : TM_DEFAULT_ROPE_BASE));
    SLM_TRY(
        gguf_writer_set_u32(w, ARCH_KEY("rope.dimension_count"), (uint32_t)(p->dim / p->n_heads)));
    SLM_TRY(gguf_writer_set_f32(w, ARCH_KEY("attention.layer_norm_rms_epsilon"),
                                p->norm_eps > 0 ? p->norm_eps : TM_DEFAULT_EPS));
    SLM_TRY(gguf_writer_set_u32(w, ARCH_KEY("vocab_size"), (uint32_t)v->n));
#undef ARCH_KEY
    SLM_TRY(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"));
    SLM_TRY(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", v->ptrs, (uint64_t)v->n));
    SLM_TRY(gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, v->scores,
                                (uint64_t)v->n));
    SLM_TRY(gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, v->types,
                                (uint64_t)v->n));
    SLM_TRY(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
    SLM_TRY(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2));
    SLM_TRY(gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0));
    SLM_TRY(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 1));
    SLM_TRY(gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", 0));
    return SLM_OK;
}

static slm_status write_tensors(builder *b, const slm_test_model_params *p, int qwen2,
                                int n_vocab) {
    const int dim = p->dim, ffn = p->ffn_dim;
    const int kv_dim = dim / p->n_heads * (p->n_kv_heads ? p->n_kv_heads : p->n_heads);
    const uint32_t wt = p->wtype;
    const slm_type_info *ti = slm_type_get(wt);
    const uint32_t et = dim % (int)ti->block_size == 0 ? wt : SLM_TYPE_F32;
    char name[TM_NAME_MAX];

    SLM_TRY(add_tensor(b, "token_embd.weight", et, dim, n_vocab, FILL_WEIGHT));
    SLM_TRY(add_tensor(b, "output_norm.weight", SLM_TYPE_F32, dim, 0, FILL_NORM));
    if (!p->tied) SLM_TRY(add_tensor(b, "output.weight", wt, dim, n_vocab, FILL_WEIGHT));
    for (int l = 0; l < p->n_layers; l++) {
#define BLK(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        SLM_TRY(add_tensor(b, BLK("attn_norm.weight"), SLM_TYPE_F32, dim, 0, FILL_NORM));
        SLM_TRY(add_tensor(b, BLK("attn_q.weight"), wt, dim, dim, FILL_WEIGHT));
        SLM_TRY(add_tensor(b, BLK("attn_k.weight"), wt, dim, kv_dim, FILL_WEIGHT));
        SLM_TRY(add_tensor(b, BLK("attn_v.weight"), wt, dim, kv_dim, FILL_WEIGHT));
        if (qwen2) {
            SLM_TRY(add_tensor(b, BLK("attn_q.bias"), SLM_TYPE_F32, dim, 0, FILL_BIAS));
            SLM_TRY(add_tensor(b, BLK("attn_k.bias"), SLM_TYPE_F32, kv_dim, 0, FILL_BIAS));
            SLM_TRY(add_tensor(b, BLK("attn_v.bias"), SLM_TYPE_F32, kv_dim, 0, FILL_BIAS));
        }
        SLM_TRY(add_tensor(b, BLK("attn_output.weight"), wt, dim, dim, FILL_WEIGHT));
        SLM_TRY(add_tensor(b, BLK("ffn_norm.weight"), SLM_TYPE_F32, dim, 0, FILL_NORM));
        SLM_TRY(add_tensor(b, BLK("ffn_gate.weight"), wt, dim, ffn, FILL_WEIGHT));
        SLM_TRY(add_tensor(b, BLK("ffn_up.weight"), wt, dim, ffn, FILL_WEIGHT));
        SLM_TRY(add_tensor(b, BLK("ffn_down.weight"), wt, ffn, dim, FILL_WEIGHT));
#undef BLK
    }
    return SLM_OK;
}

slm_status slm_test_write_model(const char *path, const slm_test_model_params *p) {
    if (!path || !p) return slm_fail(SLM_ERR_INVALID_ARG, "test model: NULL path or params");
    const char *arch = p->arch ? p->arch : "llama";
    SLM_TRY(check_params(p, arch));

    vocab v;
    SLM_TRY(vocab_build(&v, p->n_extra_vocab));
    builder b = {0};
    b.rng.s = p->seed;
    b.scale = p->scale > 0 ? p->scale : TM_DEFAULT_SCALE;
    slm_status st;
    SLM_CHECK(gguf_writer_new(&b.w));
    SLM_CHECK(write_metadata(b.w, p, arch, &v));
    SLM_CHECK(write_tensors(&b, p, strcmp(arch, "qwen2") == 0, v.n));
    SLM_CHECK(gguf_writer_write(b.w, path));
cleanup:
    gguf_writer_free(b.w);
    for (size_t i = 0; i < b.n_bufs; i++) free(b.bufs[i]);
    free(b.bufs);
    vocab_free(&v);
    return st;
}
