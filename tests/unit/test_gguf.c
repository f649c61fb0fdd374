/* GGUF reader and writer: round trips of every value type, the real fixture,
 * and malformed files of every kind (each must fail cleanly, never crash). */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/mmap_file.h"
#include "base/status.h"
#include "check.h"
#include "format/gguf.h"
#include "quant/types.h"
#include "slm.h"
#include "testmodel.h"

#define FUZZ_ITERATIONS 3000
#define MAX_FILE_READ (64u << 20)

/* ---- a raw byte builder for hand-made (often broken) files ------------- */

typedef struct raw {
    uint8_t *p;
    size_t n, cap;
} raw;

static void r_put(raw *r, const void *d, size_t n) {
    if (r->n + n > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->n + n) cap *= 2;
        uint8_t *np = realloc(r->p, cap);
        if (!np) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        r->p = np;
        r->cap = cap;
    }
    if (n) memcpy(r->p + r->n, d, n);
    r->n += n;
}
static void r_u8(raw *r, uint8_t v) {
    r_put(r, &v, 1);
}
static void r_u16(raw *r, uint16_t v) {
    r_u8(r, (uint8_t)v);
    r_u8(r, (uint8_t)(v >> 8));
}
static void r_u32(raw *r, uint32_t v) {
    r_u16(r, (uint16_t)v);
    r_u16(r, (uint16_t)(v >> 16));
}
static void r_u64(raw *r, uint64_t v) {
    r_u32(r, (uint32_t)v);
    r_u32(r, (uint32_t)(v >> 32));
}
static void r_str(raw *r, const char *s) {
    r_u64(r, strlen(s));
    r_put(r, s, strlen(s));
}
static void r_pad(raw *r, uint32_t align) {
    while (r->n % align) r_u8(r, 0);
}
static void r_header(raw *r, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    r_put(r, "GGUF", 4);
    r_u32(r, version);
    r_u64(r, n_tensors);
    r_u64(r, n_kv);
}
static void r_kv_u32(raw *r, const char *key, uint32_t v) {
    r_str(r, key);
    r_u32(r, GGUF_VT_UINT32);
    r_u32(r, v);
}
static void r_kv_str(raw *r, const char *key, const char *v) {
    r_str(r, key);
    r_u32(r, GGUF_VT_STRING);
    r_str(r, v);
}
static void r_tinfo(raw *r, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                    uint64_t offset) {
    r_str(r, name);
    r_u32(r, n_dims);
    /* callers pass at most 5 dims; an absurd n_dims is refused before its dims are read */
    for (uint32_t d = 0; d < n_dims && d < 5; d++) r_u64(r, ne[d]);
    r_u32(r, type);
    r_u64(r, offset);
}
static void r_free(raw *r) {
    free(r->p);
    memset(r, 0, sizeof *r);
}

/* Opens a copy of exactly `n` bytes so that ASan sees any read past them. */
static slm_status open_exact(const void *data, size_t n, gguf_file **f) {
    void *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, data, n);
    slm_status st = gguf_open_memory(n ? copy : NULL, n, "test.gguf", f);
    /* The buffer must outlive the file, and callers only want the status. */
    gguf_close(*f);
    *f = NULL;
    free(copy);
    return st;
}

/* Expects `r` to be refused with `status` and a message containing `needle`. */
#define EXPECT_BAD(r, status, needle)                                                              \
    do {                                                                                           \
        gguf_file *bad_f_ = NULL;                                                                  \
        CHECK_ERR(open_exact((r)->p, (r)->n, &bad_f_), status, needle);                            \
        CHECK(bad_f_ == NULL);                                                                     \
        CHECK(strstr(slm_last_error(), "test.gguf") != NULL);                                      \
    } while (0)

/* The small valid file the malformed cases start from: two kv, two f32
 * tensors, both at aligned offsets. Parts are switchable by the caller. */
typedef struct base_opts {
    uint32_t version;
    uint64_t ne0; /* of t0 */
    uint32_t t0_type;
    uint64_t t1_offset;
} base_opts;

static void make_base(raw *r, const base_opts *o) {
    uint64_t ne0[1] = {o->ne0};
    uint64_t ne1[2] = {4, 2};
    r_header(r, o->version, 2, 2);
    r_kv_str(r, "general.architecture", "llama");
    r_kv_u32(r, "a.u32", 7);
    r_tinfo(r, "t0", 1, ne0, o->t0_type, 0);
    r_tinfo(r, "t1", 2, ne1, SLM_TYPE_F32, o->t1_offset);
    r_pad(r, GGUF_DEFAULT_ALIGNMENT);
    for (int i = 0; i < 64; i++) r_u8(r, (uint8_t)i);
}

static const base_opts k_base = {3, 8, SLM_TYPE_F32, 32};

/* ---- round trip through the writer -------------------------------------- */

static void fill_bytes(uint8_t *p, size_t n, unsigned seed) {
    check_rng rng = {seed};
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)check_rng_u64(&rng);
}

typedef struct tspec {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[4];
} tspec;

static const tspec k_tensors[] = {
    {"v.f32", SLM_TYPE_F32, 1, {5, 1, 1, 1}},    {"m.f16", SLM_TYPE_F16, 2, {3, 2, 1, 1}},
    {"m.q8_0", SLM_TYPE_Q8_0, 2, {64, 3, 1, 1}}, {"m.q4_k", SLM_TYPE_Q4_K, 2, {256, 2, 1, 1}},
    {"c.f32", SLM_TYPE_F32, 3, {4, 3, 2, 1}},    {"h.bf16", SLM_TYPE_BF16, 4, {2, 2, 2, 3}},
    {"q.q4_0", SLM_TYPE_Q4_0, 1, {32, 1, 1, 1}},
};
#define N_TENSORS ((int)(sizeof k_tensors / sizeof k_tensors[0]))

static uint64_t spec_bytes(const tspec *s) {
    uint64_t row = 0;
    slm_row_bytes(s->type, s->ne[0], &row);
    return row * s->ne[1] * s->ne[2] * s->ne[3];
}

static const uint8_t k_u8s[] = {0, 1, 255};
static const int8_t k_i8s[] = {-128, 0, 127};
static const uint16_t k_u16s[] = {0, 65535, 1234};
static const int16_t k_i16s[] = {-32768, 32767, -1};
static const uint32_t k_u32s[] = {0, 4000000000u, 7};
static const int32_t k_i32s[] = {INT32_MIN, INT32_MAX, -5};
static const float k_f32s[] = {1.5f, -0.0f, 3.4e38f};
static const uint8_t k_bools[] = {1, 0, 1};
static const uint64_t k_u64s[] = {UINT64_MAX, 0, 1ull << 40};
static const int64_t k_i64s[] = {INT64_MIN, INT64_MAX, -3};
static const double k_f64s[] = {1e300, -2.5, 0.1};
static const char *const k_strs[] = {"", "hello", "\xe2\x96\x81the", "a\nb"};

static gguf_writer *build_writer(uint8_t **blobs) {
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_new(&w));
    CHECK_OK(gguf_writer_set_u32(w, "replaced", 1)); /* replaced below: keeps slot 0 */
    CHECK_OK(gguf_writer_set_u32(w, "s.u32", 4000000000u));
    CHECK_OK(gguf_writer_set_i32(w, "s.i32", -123456));
    CHECK_OK(gguf_writer_set_u64(w, "s.u64", UINT64_MAX - 1));
    CHECK_OK(gguf_writer_set_f32(w, "s.f32", 0.15625f));
    CHECK_OK(gguf_writer_set_bool(w, "s.true", 7));
    CHECK_OK(gguf_writer_set_bool(w, "s.false", 0));
    CHECK_OK(gguf_writer_set_str(w, "s.str", "caf\xc3\xa9 \xe2\x96\x81"));
    CHECK_OK(gguf_writer_set_str(w, "s.empty", ""));
    CHECK_OK(gguf_writer_set_arr(w, "a.u8", GGUF_VT_UINT8, k_u8s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.i8", GGUF_VT_INT8, k_i8s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.u16", GGUF_VT_UINT16, k_u16s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.i16", GGUF_VT_INT16, k_i16s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.u32", GGUF_VT_UINT32, k_u32s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.i32", GGUF_VT_INT32, k_i32s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.f32", GGUF_VT_FLOAT32, k_f32s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.bool", GGUF_VT_BOOL, k_bools, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.u64", GGUF_VT_UINT64, k_u64s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.i64", GGUF_VT_INT64, k_i64s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.f64", GGUF_VT_FLOAT64, k_f64s, 3));
    CHECK_OK(gguf_writer_set_arr(w, "a.empty", GGUF_VT_INT32, NULL, 0));
    CHECK_OK(gguf_writer_set_arr_str(w, "a.str", k_strs, 4));
    CHECK_OK(gguf_writer_set_arr_str(w, "a.str_empty", NULL, 0));
    CHECK_OK(gguf_writer_set_str(w, "replaced", "now a string"));
    for (int i = 0; i < N_TENSORS; i++) {
        const tspec *s = &k_tensors[i];
        uint64_t n = spec_bytes(s);
        blobs[i] = malloc((size_t)n);
        fill_bytes(blobs[i], (size_t)n, (unsigned)i + 1);
        if (i % 2)
            CHECK_OK(gguf_writer_add_tensor(w, s->name, s->type, s->n_dims, s->ne, blobs[i], n));
        else
            CHECK_OK(
                gguf_writer_add_tensor_ref(w, s->name, s->type, s->n_dims, s->ne, blobs[i], n));
    }
    return w;
}

static void check_arr(const gguf_file *f, const char *key, gguf_vtype t, const void *want,
                      uint64_t n) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    CHECK_MSG(kv != NULL, "key %s", key);
    if (!kv) return;
    CHECK(kv->type == GGUF_VT_ARRAY);
    CHECK(kv->arr_type == t);
    CHECK(kv->arr_len == n);
    if (kv->arr_len == n && n > 0) CHECK(memcmp(kv->data, want, n * gguf_vtype_size(t)) == 0);
}

static void check_round_trip(const gguf_file *f, uint8_t *const *blobs) {
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_alignment(f) == 32);
    CHECK(gguf_n_kv(f) == 23);
    CHECK(gguf_n_tensors(f) == (uint64_t)N_TENSORS);

    /* insertion order, with the replaced key keeping its slot */
    const gguf_kv *kv0 = gguf_kv_at(f, 0);
    CHECK(kv0 && gguf_str_eq(kv0->key, "replaced") && kv0->type == GGUF_VT_STRING);
    CHECK(kv0 && gguf_str_eq(kv0->str, "now a string"));
    CHECK(gguf_str_eq(gguf_kv_at(f, 1)->key, "s.u32"));
    CHECK(gguf_str_eq(gguf_kv_at(f, 22)->key, "a.str_empty"));
    CHECK(gguf_kv_at(f, 23) == NULL);

    uint32_t u32 = 0;
    int64_t i64 = 0;
    float f32 = 0;
    int b = -1;
    gguf_str s = {0};
    CHECK_OK(gguf_get_u32(f, "s.u32", &u32));
    CHECK(u32 == 4000000000u);
    CHECK_OK(gguf_get_i64_opt(f, "s.i32", &i64));
    CHECK(i64 == -123456);
    CHECK(gguf_find_kv(f, "s.u64")->type == GGUF_VT_UINT64);
    CHECK_ERR(gguf_get_i64_opt(f, "s.u64", &i64), SLM_ERR_FORMAT, "s.u64");
    CHECK_OK(gguf_get_f32(f, "s.f32", &f32));
    CHECK(f32 == 0.15625f);
    CHECK_OK(gguf_get_bool_opt(f, "s.true", &b));
    CHECK(b == 1);
    CHECK_OK(gguf_get_bool_opt(f, "s.false", &b));
    CHECK(b == 0);
    CHECK_OK(gguf_get_str(f, "s.str", &s));
    CHECK(gguf_str_eq(s, "caf\xc3\xa9 \xe2\x96\x81"));
    CHECK_OK(gguf_get_str(f, "s.empty", &s));
    CHECK(s.len == 0);

    check_arr(f, "a.u8", GGUF_VT_UINT8, k_u8s, 3);
    check_arr(f, "a.i8", GGUF_VT_INT8, k_i8s, 3);
    check_arr(f, "a.u16", GGUF_VT_UINT16, k_u16s, 3);
    check_arr(f, "a.i16", GGUF_VT_INT16, k_i16s, 3);
    check_arr(f, "a.u32", GGUF_VT_UINT32, k_u32s, 3);
    check_arr(f, "a.i32", GGUF_VT_INT32, k_i32s, 3);
    check_arr(f, "a.f32", GGUF_VT_FLOAT32, k_f32s, 3);
    check_arr(f, "a.bool", GGUF_VT_BOOL, k_bools, 3);
    check_arr(f, "a.u64", GGUF_VT_UINT64, k_u64s, 3);
    check_arr(f, "a.i64", GGUF_VT_INT64, k_i64s, 3);
    check_arr(f, "a.f64", GGUF_VT_FLOAT64, k_f64s, 3);
    check_arr(f, "a.empty", GGUF_VT_INT32, NULL, 0);

    const gguf_kv *a = gguf_find_kv(f, "a.i16");
    CHECK(a && gguf_arr_i64(a, 0) == -32768 && gguf_arr_f64(a, 2) == -1.0);
    a = gguf_find_kv(f, "a.u64");
    CHECK(a && gguf_arr_i64(a, 0) == INT64_MAX); /* saturates */
    CHECK(a && gguf_arr_f64(a, 2) == (double)(1ull << 40));
    a = gguf_find_kv(f, "a.f64");
    CHECK(a && gguf_arr_f64(a, 0) == 1e300 && gguf_arr_i64(a, 1) == -2);
    CHECK(a && gguf_arr_i64(a, 0) == INT64_MAX);
    a = gguf_find_kv(f, "a.f32");
    CHECK(a && gguf_arr_f64(a, 0) == 1.5);
    a = gguf_find_kv(f, "a.bool");
    CHECK(a && gguf_arr_i64(a, 0) == 1 && gguf_arr_i64(a, 1) == 0);

    a = gguf_find_kv(f, "a.str");
    CHECK(a && a->type == GGUF_VT_ARRAY && a->arr_type == GGUF_VT_STRING && a->arr_len == 4);
    if (a && a->arr_len == 4 && a->strs) {
        for (int i = 0; i < 4; i++) CHECK(gguf_str_eq(a->strs[i], k_strs[i]));
        CHECK(gguf_arr_f64(a, 0) == 0.0); /* not numeric: 0, no crash */
    }
    a = gguf_find_kv(f, "a.str_empty");
    CHECK(a && a->arr_type == GGUF_VT_STRING && a->arr_len == 0);

    const uint8_t *base = gguf_base(f);
    const uint8_t *data0 = gguf_tensor_at(f, 0)->data;
    for (int i = 0; i < N_TENSORS; i++) {
        const tspec *sp = &k_tensors[i];
        const gguf_tensor *t = gguf_tensor_at(f, (uint64_t)i);
        CHECK(t == gguf_find_tensor(f, sp->name));
        CHECK(gguf_str_eq(t->name, sp->name));
        CHECK(t->type == sp->type);
        CHECK(t->n_dims == sp->n_dims);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == sp->ne[d]);
        CHECK(t->nbytes == spec_bytes(sp));
        CHECK(t->offset % 32 == 0);
        CHECK((size_t)(t->data - base) % 32 == 0);
        CHECK(t->data == data0 + t->offset);
        CHECK(memcmp(t->data, blobs[i], (size_t)t->nbytes) == 0);
    }
    CHECK(gguf_find_tensor(f, "nope") == NULL);
    CHECK(gguf_find_tensor(f, "v.f3") == NULL);
    CHECK(gguf_find_kv(f, "s.u3") == NULL);
    CHECK(gguf_tensor_at(f, (uint64_t)N_TENSORS) == NULL);
}

static int tmp_leftovers(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[1024];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    const char *base = slash ? slash + 1 : path;
    size_t blen = strlen(base);
    int n = 0;
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, blen) == 0 && strncmp(e->d_name + blen, ".tmp", 4) == 0) n++;
    }
    closedir(d);
    return n;
}

static void test_round_trip(void) {
    uint8_t *blobs[N_TENSORS] = {0};
    gguf_writer *w = build_writer(blobs);
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    CHECK(size % 32 == 0);

    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(mem, size, "mem.gguf", &f));
    if (f) {
        check_round_trip(f, blobs);
        CHECK(gguf_fd(f) == -1);
        CHECK(strcmp(gguf_path(f), "mem.gguf") == 0);
        CHECK(gguf_file_size(f) == size);
    }

    /* The same bytes through a file, atomically, leaving no temporary. */
    char path[512];
    check_tmp_path("roundtrip.gguf", path, sizeof path);
    CHECK_OK(gguf_writer_write(w, path));
    CHECK(tmp_leftovers(path) == 0);
    char *disk = NULL;
    size_t dsize = 0;
    CHECK_OK(slm_read_file(path, MAX_FILE_READ, &disk, &dsize));
    CHECK(dsize == size && disk && memcmp(disk, mem, size) == 0);
    free(disk);
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(path, &g));
    if (g) {
        check_round_trip(g, blobs);
        CHECK(gguf_fd(g) >= 0);
        CHECK(strcmp(gguf_path(g), path) == 0);
    }

    /* copy_kv: everything but one key, then compare value bytes. */
    gguf_writer *w2 = NULL;
    CHECK_OK(gguf_writer_new(&w2));
    CHECK_OK(gguf_writer_copy_kv(w2, f, NULL, NULL));
    uint8_t *mem2 = NULL;
    size_t size2 = 0;
    CHECK_OK(gguf_writer_to_memory(w2, &mem2, &size2));
    gguf_file *f2 = NULL;
    CHECK_OK(gguf_open_memory(mem2, size2, "copy.gguf", &f2));
    if (f && f2) {
        CHECK(gguf_n_kv(f2) == gguf_n_kv(f));
        CHECK(gguf_n_tensors(f2) == 0);
        /* header bytes up to the tensor infos differ only in the tensor count */
        for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
            const gguf_kv *x = gguf_kv_at(f, i), *y = gguf_kv_at(f2, i);
            CHECK(x->key.len == y->key.len && memcmp(x->key.ptr, y->key.ptr, x->key.len) == 0);
            CHECK(x->type == y->type && x->arr_type == y->arr_type && x->arr_len == y->arr_len);
        }
        check_arr(f2, "a.f64", GGUF_VT_FLOAT64, k_f64s, 3);
        const gguf_kv *a = gguf_find_kv(f2, "a.str");
        CHECK(a && a->arr_len == 4 && a->strs && gguf_str_eq(a->strs[2], k_strs[2]));
    }
    gguf_close(f2);
    free(mem2);
    gguf_writer_free(w2);

    gguf_close(g);
    gguf_close(f);
    remove(path);
    free(mem);
    gguf_writer_free(w);
    for (int i = 0; i < N_TENSORS; i++) free(blobs[i]);
}

/* Scalars of every type (the writer API has no u8/i16/f64 setters, so the
 * file is made by hand), getters' conversions, and copy_kv of all of them. */
static int skip_one(const char *key, void *user) {
    (*(int *)user)++;
    return strcmp(key, "skip.me") == 0;
}

static void test_scalars_and_getters(void) {
    raw r = {0};
    r_header(&r, 3, 0, 16);
    struct {
        const char *key;
        gguf_vtype t;
        uint64_t bits;
    } sc[] = {
        {"u8", GGUF_VT_UINT8, 200},
        {"i8", GGUF_VT_INT8, 0xfe}, /* -2 */
        {"u16", GGUF_VT_UINT16, 60000},
        {"i16", GGUF_VT_INT16, 0x8000}, /* -32768 */
        {"u32", GGUF_VT_UINT32, 4000000000u},
        {"i32", GGUF_VT_INT32, 0xffffffffu},   /* -1 */
        {"f32", GGUF_VT_FLOAT32, 0x40490fdbu}, /* 3.14159274 */
        {"bool", GGUF_VT_BOOL, 1},
        {"u64", GGUF_VT_UINT64, 5000000000ull},
        {"i64", GGUF_VT_INT64, 0xfffffffffffffff6ull},       /* -10 */
        {"f64", GGUF_VT_FLOAT64, 0x3fd0000000000000ull},     /* 0.25 */
        {"f64.big", GGUF_VT_FLOAT64, 0x7fefffffffffffffull}, /* DBL_MAX */
        {"u64.small", GGUF_VT_UINT64, 12},
        {"skip.me", GGUF_VT_UINT8, 1},
    };
    int n_sc = (int)(sizeof sc / sizeof sc[0]);
    for (int i = 0; i < n_sc; i++) {
        r_str(&r, sc[i].key);
        r_u32(&r, sc[i].t);
        size_t sz = gguf_vtype_size(sc[i].t);
        for (size_t k = 0; k < sz; k++) r_u8(&r, (uint8_t)(sc[i].bits >> (8 * k)));
    }
    r_kv_str(&r, "str", "text");
    r_str(&r, "arr");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_UINT16);
    r_u64(&r, 2);
    r_u16(&r, 1);
    r_u16(&r, 2);
    CHECK(n_sc + 2 == 16);

    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(r.p, r.n, "scalars.gguf", &f));
    if (!f) {
        r_free(&r);
        return;
    }
    CHECK(gguf_n_tensors(f) == 0);
    uint32_t u = 0;
    int64_t i64 = 0;
    float x = 0;
    int b = 0;
    gguf_str s = {0};
    CHECK_OK(gguf_get_u32(f, "u8", &u));
    CHECK(u == 200);
    CHECK_OK(gguf_get_u32(f, "u16", &u));
    CHECK(u == 60000);
    CHECK_OK(gguf_get_u32(f, "u64.small", &u));
    CHECK(u == 12);
    u = 99;
    CHECK_ERR(gguf_get_u32(f, "i8", &u), SLM_ERR_FORMAT, "'i8'");
    CHECK_ERR(gguf_get_u32(f, "u64", &u), SLM_ERR_FORMAT, "does not fit");
    CHECK_ERR(gguf_get_u32(f, "f32", &u), SLM_ERR_FORMAT, "expected an integer");
    CHECK_ERR(gguf_get_u32(f, "arr", &u), SLM_ERR_FORMAT, "array");
    CHECK_ERR(gguf_get_u32(f, "absent", &u), SLM_ERR_FORMAT, "missing key 'absent'");
    CHECK_OK(gguf_get_u32_opt(f, "absent", &u));
    CHECK(u == 99);
    CHECK_OK(gguf_get_i64_opt(f, "i8", &i64));
    CHECK(i64 == -2);
    CHECK_OK(gguf_get_i64_opt(f, "i16", &i64));
    CHECK(i64 == -32768);
    CHECK_OK(gguf_get_i64_opt(f, "i32", &i64));
    CHECK(i64 == -1);
    CHECK_OK(gguf_get_i64_opt(f, "i64", &i64));
    CHECK(i64 == -10);
    CHECK_OK(gguf_get_i64_opt(f, "u64", &i64));
    CHECK(i64 == 5000000000ll);
    CHECK_OK(gguf_get_f32(f, "f32", &x));
    CHECK(x == 3.14159274f);
    CHECK_OK(gguf_get_f32(f, "f64", &x));
    CHECK(x == 0.25f);
    CHECK_OK(gguf_get_f32(f, "i32", &x));
    CHECK(x == -1.0f);
    CHECK_OK(gguf_get_f32(f, "u32", &x));
    CHECK(x == 4e9f);
    CHECK_ERR(gguf_get_f32(f, "f64.big", &x), SLM_ERR_FORMAT, "range");
    CHECK_ERR(gguf_get_f32(f, "str", &x), SLM_ERR_FORMAT, "expected a number");
    x = 7;
    CHECK_OK(gguf_get_f32_opt(f, "absent", &x));
    CHECK(x == 7);
    CHECK_ERR(gguf_get_f32(f, "absent", &x), SLM_ERR_FORMAT, "missing");
    CHECK_OK(gguf_get_bool_opt(f, "bool", &b));
    CHECK(b == 1);
    CHECK_ERR(gguf_get_bool_opt(f, "u8", &b), SLM_ERR_FORMAT, "bool");
    CHECK_ERR(gguf_get_bool_opt(f, "str", &b), SLM_ERR_FORMAT, "bool");
    CHECK_OK(gguf_get_str(f, "str", &s));
    CHECK(gguf_str_eq(s, "text"));
    CHECK_ERR(gguf_get_str(f, "u8", &s), SLM_ERR_FORMAT, "has type u8, expected a string");
    CHECK_ERR(gguf_get_str_opt(f, "u8", &s), SLM_ERR_FORMAT, "scalars.gguf");
    s.len = 77;
    CHECK_OK(gguf_get_str_opt(f, "absent", &s));
    CHECK(s.len == 77);
    CHECK_ERR(gguf_get_str(f, "absent", &s), SLM_ERR_FORMAT, "missing");
    CHECK(strcmp(gguf_vtype_name(GGUF_VT_FLOAT64), "f64") == 0);
    CHECK(strcmp(gguf_vtype_name((gguf_vtype)99), "unknown") == 0);

    /* copy_kv of every scalar type, with a skip callback */
    gguf_writer *w = NULL;
    int calls = 0;
    CHECK_OK(gguf_writer_new(&w));
    CHECK_OK(gguf_writer_copy_kv(w, f, skip_one, &calls));
    CHECK(calls == 16);
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    gguf_file *g = NULL;
    CHECK_OK(gguf_open_memory(mem, size, "copy.gguf", &g));
    if (g) {
        CHECK(gguf_n_kv(g) == 15);
        CHECK(gguf_find_kv(g, "skip.me") == NULL);
        for (uint64_t i = 0, j = 0; i < gguf_n_kv(f); i++) {
            const gguf_kv *a = gguf_kv_at(f, i);
            if (gguf_str_eq(a->key, "skip.me")) continue;
            const gguf_kv *c = gguf_kv_at(g, j++);
            CHECK(c && a->key.len == c->key.len && memcmp(a->key.ptr, c->key.ptr, a->key.len) == 0);
            CHECK(c && c->type == a->type && c->arr_type == a->arr_type);
            size_t sz = a->type == GGUF_VT_ARRAY    ? (size_t)a->arr_len * 2
                        : a->type == GGUF_VT_STRING ? (size_t)a->str.len
                                                    : gguf_vtype_size(a->type);
            CHECK(c && memcmp(a->data, c->data, sz) == 0);
        }
    }
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
    gguf_close(f);
    r_free(&r);
}

/* ---- writer misuse ---------------------------------------------------- */

static void test_writer_errors(void) {
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_new(&w));
    float data[64] = {0};
    uint64_t ne[4] = {8, 2, 1, 1};
    CHECK_ERR(gguf_writer_add_tensor(w, "t", SLM_TYPE_F32, 2, ne, data, 60), SLM_ERR_INVALID_ARG,
              "64");
    CHECK_OK(gguf_writer_add_tensor(w, "t", SLM_TYPE_F32, 2, ne, data, 64));
    CHECK_ERR(gguf_writer_add_tensor(w, "t", SLM_TYPE_F32, 2, ne, data, 64), SLM_ERR_INVALID_ARG,
              "duplicate");
    CHECK_ERR(gguf_writer_add_tensor(w, "u", 99, 2, ne, data, 64), SLM_ERR_INVALID_ARG, "type 99");
    CHECK_ERR(gguf_writer_add_tensor(w, "u", SLM_TYPE_F32, 5, ne, data, 64), SLM_ERR_INVALID_ARG,
              "dimensions");
    CHECK_ERR(gguf_writer_add_tensor(w, "u", SLM_TYPE_F32, 0, ne, data, 64), SLM_ERR_INVALID_ARG,
              "dimensions");
    CHECK_ERR(gguf_writer_add_tensor(w, "u", SLM_TYPE_Q8_0, 2, ne, data, 64), SLM_ERR_INVALID_ARG,
              "'u'");
    uint64_t ne0[2] = {8, 0};
    CHECK_ERR(gguf_writer_add_tensor(w, "u", SLM_TYPE_F32, 2, ne0, data, 0), SLM_ERR_INVALID_ARG,
              "dimension 1");
    CHECK_ERR(gguf_writer_add_tensor(w, "", SLM_TYPE_F32, 2, ne, data, 64), SLM_ERR_INVALID_ARG,
              "name length");
    char longname[GGUF_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_ERR(gguf_writer_add_tensor(w, longname, SLM_TYPE_F32, 2, ne, data, 64),
              SLM_ERR_INVALID_ARG, "name length");
    CHECK_ERR(gguf_writer_set_u32(w, "general.alignment", 48), SLM_ERR_INVALID_ARG, "power of two");
    CHECK_ERR(gguf_writer_set_u32(w, "general.alignment", 0), SLM_ERR_INVALID_ARG, "power of two");
    CHECK_ERR(gguf_writer_set_i32(w, "general.alignment", 64), SLM_ERR_INVALID_ARG, "u32");
    CHECK_ERR(gguf_writer_set_u32(w, "", 1), SLM_ERR_INVALID_ARG, "key length");
    CHECK_ERR(gguf_writer_set_arr(w, "k", GGUF_VT_STRING, data, 1), SLM_ERR_INVALID_ARG, "string");
    CHECK_ERR(gguf_writer_set_arr(w, "k", GGUF_VT_ARRAY, data, 1), SLM_ERR_INVALID_ARG, "array");
    const uint8_t bad_bools[2] = {1, 2};
    CHECK_ERR(gguf_writer_set_arr(w, "k", GGUF_VT_BOOL, bad_bools, 2), SLM_ERR_INVALID_ARG, "bool");
    CHECK_ERR(gguf_writer_set_str(w, "k", NULL), SLM_ERR_INVALID_ARG, "NULL");

    /* A custom alignment is honoured. */
    CHECK_OK(gguf_writer_set_u32(w, "general.alignment", 64));
    uint64_t ne2[1] = {3};
    CHECK_OK(gguf_writer_add_tensor(w, "v", SLM_TYPE_F32, 1, ne2, data, 12));
    CHECK_OK(gguf_writer_add_tensor(w, "x", SLM_TYPE_F32, 1, ne2, data, 12));
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(mem, size, "a64.gguf", &f));
    if (f) {
        CHECK(gguf_alignment(f) == 64);
        CHECK(gguf_n_tensors(f) == 3);
        for (uint64_t i = 0; i < 3; i++) {
            CHECK(gguf_tensor_at(f, i)->offset % 64 == 0);
            CHECK((size_t)(gguf_tensor_at(f, i)->data - gguf_base(f)) % 64 == 0);
        }
        CHECK(gguf_tensor_at(f, 2)->offset == 128);
        CHECK(size == (size_t)(gguf_tensor_at(f, 2)->data - gguf_base(f)) + 64);
    }
    gguf_close(f);
    free(mem);

    /* A write that cannot happen leaves nothing behind. */
    CHECK_ERR(gguf_writer_write(w, "/nonexistent-dir-slm/x.gguf"), SLM_ERR_IO,
              "/nonexistent-dir-slm/x.gguf");
    CHECK(access("/nonexistent-dir-slm/x.gguf", F_OK) != 0);

    /* Rewriting an existing file replaces it whole. */
    char path[512];
    check_tmp_path("replace.gguf", path, sizeof path);
    CHECK_OK(slm_test_write_bytes(path, "old contents", 12));
    CHECK_OK(gguf_writer_write(w, path));
    gguf_file *g = NULL;
    CHECK_OK(gguf_open(path, &g));
    CHECK(g && gguf_n_tensors(g) == 3);
    gguf_close(g);
    remove(path);
    gguf_writer_free(w);
    gguf_writer_free(NULL);
}

/* ---- malformed files ------------------------------------------------------ */

static void test_base_is_valid(void) {
    raw r = {0};
    make_base(&r, &k_base);
    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(r.p, r.n, "base.gguf", &f));
    if (f) {
        CHECK(gguf_n_tensors(f) == 2);
        const gguf_tensor *t1 = gguf_find_tensor(f, "t1");
        CHECK(t1 && t1->nbytes == 32 && t1->data[0] == 32);
    }
    gguf_close(f);
    r_free(&r);

    /* v2 is the same layout */
    base_opts o = k_base;
    o.version = 2;
    make_base(&r, &o);
    CHECK_OK(gguf_open_memory(r.p, r.n, "v2.gguf", &f));
    CHECK(f && gguf_version(f) == 2);
    gguf_close(f);
    r_free(&r);

    /* the smallest file: a header with nothing in it */
    r_header(&r, 3, 0, 0);
    CHECK_OK(gguf_open_memory(r.p, r.n, "empty.gguf", &f));
    CHECK(f && gguf_n_kv(f) == 0 && gguf_n_tensors(f) == 0 && gguf_find_kv(f, "x") == NULL);
    CHECK(f && gguf_find_tensor(f, "x") == NULL);
    gguf_close(f);
    r_free(&r);
}

static void test_bad_header(void) {
    raw r = {0};
    gguf_file *f = NULL;
    CHECK_ERR(gguf_open_memory(NULL, 0, "test.gguf", &f), SLM_ERR_FORMAT, "too small");
    CHECK_ERR(gguf_open("/nonexistent-dir-slm/none.gguf", &f), SLM_ERR_IO, "none.gguf");
    CHECK(f == NULL);

    make_base(&r, &k_base);
    r.p[3] = 'X';
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "not a GGUF file");
    r_free(&r);

    const uint32_t versions[] = {0, 1, 4, 0xffffffffu};
    const slm_status vst[] = {SLM_ERR_FORMAT, SLM_ERR_UNSUPPORTED, SLM_ERR_UNSUPPORTED,
                              SLM_ERR_UNSUPPORTED};
    for (int i = 0; i < 4; i++) {
        base_opts o = k_base;
        o.version = versions[i];
        make_base(&r, &o);
        EXPECT_BAD(&r, vst[i], "version");
        r_free(&r);
    }
    base_opts be = k_base;
    be.version = 0x03000000u; /* a big-endian v3 file */
    make_base(&r, &be);
    EXPECT_BAD(&r, SLM_ERR_UNSUPPORTED, "big-endian");
    r_free(&r);

    const uint64_t absurd[] = {1ull << 63, 1ull << 40, UINT64_MAX, GGUF_MAX_KV + 1ull};
    for (int i = 0; i < 4; i++) {
        make_base(&r, &k_base);
        memcpy(r.p + 16, &absurd[i], 8); /* n_kv */
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the limit");
        r_free(&r);
        make_base(&r, &k_base);
        memcpy(r.p + 8, &absurd[i], 8); /* n_tensors */
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the limit");
        r_free(&r);
    }
    /* within the limits but more than the file could hold */
    make_base(&r, &k_base);
    uint64_t many = 60000;
    memcpy(r.p + 16, &many, 8);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "cannot fit");
    r_free(&r);
    make_base(&r, &k_base);
    memcpy(r.p + 8, &many, 8);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "cannot fit");
    r_free(&r);
}

static void test_bad_kv(void) {
    raw r = {0};
    /* key length absurd / past the end / over the limit / empty */
    const uint64_t lens[] = {1ull << 62, UINT64_MAX, 1000};
    for (int i = 0; i < 3; i++) {
        r_header(&r, 3, 0, 1);
        r_u64(&r, lens[i]);
        r_put(&r, "abcdefgh", 8);
        r_u32(&r, GGUF_VT_UINT8);
        r_u8(&r, 0);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the file");
        r_free(&r);
    }
    {
        size_t n = GGUF_MAX_KEY + 1;
        char *key = malloc(n + 1);
        memset(key, 'k', n);
        key[n] = '\0';
        r_header(&r, 3, 0, 1);
        r_kv_u32(&r, key, 1);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the limit of 65536");
        r_free(&r);
        free(key);
    }
    r_header(&r, 3, 0, 1);
    r_kv_u32(&r, "", 1);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "empty");
    r_free(&r);

    /* string value length absurd / one past the end */
    r_header(&r, 3, 0, 1);
    r_str(&r, "general.name");
    r_u32(&r, GGUF_VT_STRING);
    r_u64(&r, 99999999);
    r_put(&r, "short", 5);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "key 'general.name': string length 99999999 exceeds the file");
    r_free(&r);
    r_header(&r, 3, 0, 1);
    r_str(&r, "general.name");
    r_u32(&r, GGUF_VT_STRING);
    r_u64(&r, 21);
    r_put(&r, "twenty bytes of text!", 20);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the file");
    r_free(&r);

    /* unknown value types */
    const uint32_t types[] = {GGUF_VT_COUNT, 0xffffffffu, 1000};
    for (int i = 0; i < 3; i++) {
        r_header(&r, 3, 0, 1);
        r_str(&r, "k");
        r_u32(&r, types[i]);
        r_u64(&r, 0);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "unknown value type");
        r_free(&r);
    }
    /* bool other than 0/1 */
    r_header(&r, 3, 0, 1);
    r_str(&r, "flag");
    r_u32(&r, GGUF_VT_BOOL);
    r_u8(&r, 2);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "bool");
    r_free(&r);
    /* truncated scalar */
    r_header(&r, 3, 0, 1);
    r_str(&r, "big");
    r_u32(&r, GGUF_VT_UINT64);
    r_u32(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "key 'big'");
    r_free(&r);

    /* arrays: absurd length, past the end, nested, unknown element type */
    const uint64_t alens[] = {1ull << 40, 1ull << 63, GGUF_MAX_ARRAY + 1ull};
    for (int i = 0; i < 3; i++) {
        for (int str = 0; str < 2; str++) {
            r_header(&r, 3, 0, 1);
            r_str(&r, "arr");
            r_u32(&r, GGUF_VT_ARRAY);
            r_u32(&r, str ? GGUF_VT_STRING : GGUF_VT_UINT32);
            r_u64(&r, alens[i]);
            r_u64(&r, 0);
            EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the limit");
            r_free(&r);
        }
    }
    for (int str = 0; str < 2; str++) {
        r_header(&r, 3, 0, 1);
        r_str(&r, "arr");
        r_u32(&r, GGUF_VT_ARRAY);
        r_u32(&r, str ? GGUF_VT_STRING : GGUF_VT_FLOAT64);
        r_u64(&r, 1000);
        r_u64(&r, 0);
        r_u64(&r, 0);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the file");
        r_free(&r);
    }
    /* string array whose last string runs past the end */
    r_header(&r, 3, 0, 1);
    r_str(&r, "tokenizer.ggml.tokens");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_STRING);
    r_u64(&r, 2);
    r_str(&r, "ok");
    r_u64(&r, 50);
    r_put(&r, "not fifty bytes", 15);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "string 1 length 50 exceeds the file");
    r_free(&r);
    r_header(&r, 3, 0, 1);
    r_str(&r, "nested");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_ARRAY);
    r_u64(&r, 1);
    r_u32(&r, GGUF_VT_UINT8);
    r_u64(&r, 1);
    r_u8(&r, 1);
    EXPECT_BAD(&r, SLM_ERR_UNSUPPORTED, "arrays of arrays");
    r_free(&r);
    r_header(&r, 3, 0, 1);
    r_str(&r, "arr");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, 13);
    r_u64(&r, 1);
    r_u64(&r, 1);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "unknown array element type 13");
    r_free(&r);
    r_header(&r, 3, 0, 1);
    r_str(&r, "bools");
    r_u32(&r, GGUF_VT_ARRAY);
    r_u32(&r, GGUF_VT_BOOL);
    r_u64(&r, 3);
    r_put(&r, "\x01\x00\x05", 3);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "bool value 5");
    r_free(&r);

    /* duplicate key */
    r_header(&r, 3, 0, 3);
    r_kv_u32(&r, "a", 1);
    r_kv_u32(&r, "b", 1);
    r_kv_str(&r, "a", "again");
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "duplicate key 'a'");
    r_free(&r);

    /* alignment: 0, not a power of two, wrong type; and a good one */
    const uint32_t aligns[] = {0, 3, 48, 0xffffffffu};
    for (int i = 0; i < 4; i++) {
        r_header(&r, 3, 0, 1);
        r_kv_u32(&r, "general.alignment", aligns[i]);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "power of two");
        r_free(&r);
    }
    r_header(&r, 3, 0, 1);
    r_kv_str(&r, "general.alignment", "32");
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "expected u32");
    r_free(&r);
}

static void test_bad_tensors(void) {
    raw r = {0};
    uint64_t ne[5] = {8, 1, 1, 1, 1};
    const uint32_t ndims[] = {0, 5, 1000};
    for (int i = 0; i < 3; i++) {
        r_header(&r, 3, 1, 0);
        r_tinfo(&r, "t", ndims[i], ne, SLM_TYPE_F32, 0);
        r_pad(&r, 32);
        r_put(&r, ne, 32);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "dimensions (expected 1..4)");
        r_free(&r);
    }
    uint64_t zero[2] = {8, 0};
    r_header(&r, 3, 1, 0);
    r_tinfo(&r, "t", 2, zero, SLM_TYPE_F32, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "tensor 't': dimension 1 is 0");
    r_free(&r);
    uint64_t ovf[4][3] = {
        {1ull << 32, 1ull << 32, 1}, {1ull << 62, 4, 1}, {UINT64_MAX, 1, 1}, {2, 3, 1ull << 62}};
    for (int i = 0; i < 4; i++) {
        r_header(&r, 3, 1, 0);
        r_tinfo(&r, "big", 3, ovf[i], SLM_TYPE_F32, 0);
        EXPECT_BAD(&r, SLM_ERR_FORMAT, "overflows");
        r_free(&r);
    }
    /* element count fits but the byte count does not */
    uint64_t bytes_ovf[2] = {1ull << 32, 1ull << 30};
    r_header(&r, 3, 1, 0);
    r_tinfo(&r, "wide", 2, bytes_ovf, SLM_TYPE_F32, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "tensor 'wide': the byte size overflows");
    r_free(&r);

    base_opts o = k_base;
    o.t0_type = 99;
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_UNSUPPORTED, "tensor 't0': unknown tensor type 99");
    r_free(&r);
    o.t0_type = 0xffffffffu;
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_UNSUPPORTED, "unknown tensor type");
    r_free(&r);
    o = k_base;
    o.t0_type = SLM_TYPE_Q8_0; /* 8 is not a multiple of 32 */
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "not a multiple of the q8_0 block");
    r_free(&r);
    o = k_base;
    o.t1_offset = 16;
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "not a multiple of the alignment");
    r_free(&r);
    o.t1_offset = 1ull << 40;
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "past the end");
    r_free(&r);
    o.t1_offset = UINT64_MAX - 31; /* offset + size wraps */
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "past the end");
    r_free(&r);
    o.t1_offset = 64; /* starts exactly at the end */
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "tensor 't1'");
    r_free(&r);
    o.t1_offset = 0;
    make_base(&r, &o);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "overlaps");
    r_free(&r);
    o = k_base;
    o.ne0 = 16; /* t0 now takes 64 bytes and runs into t1 at 32 */
    make_base(&r, &o);
    for (int i = 0; i < 32; i++) r_u8(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "overlaps");
    r_free(&r);

    /* duplicate, empty and over-long names */
    uint64_t one[1] = {8};
    r_header(&r, 3, 2, 0);
    r_tinfo(&r, "same", 1, one, SLM_TYPE_F32, 0);
    r_tinfo(&r, "same", 1, one, SLM_TYPE_F32, 32);
    r_pad(&r, 32);
    for (int i = 0; i < 64; i++) r_u8(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "duplicate tensor name 'same'");
    r_free(&r);
    r_header(&r, 3, 1, 0);
    r_tinfo(&r, "", 1, one, SLM_TYPE_F32, 0);
    r_pad(&r, 32);
    for (int i = 0; i < 32; i++) r_u8(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "empty name");
    r_free(&r);
    char longname[GGUF_MAX_NAME + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    r_header(&r, 3, 1, 0);
    r_tinfo(&r, longname, 1, one, SLM_TYPE_F32, 0);
    r_pad(&r, 32);
    for (int i = 0; i < 32; i++) r_u8(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "exceeds the limit of 256");
    r_free(&r);

    /* a tensor name with control bytes is quoted safely */
    r_header(&r, 3, 1, 0);
    r_tinfo(&r, "bad\nname", 1, one, 77, 0);
    EXPECT_BAD(&r, SLM_ERR_UNSUPPORTED, "'bad?name'");
    r_free(&r);

    /* a custom alignment applies to the offsets and the data section */
    r_header(&r, 3, 2, 1);
    r_kv_u32(&r, "general.alignment", 64);
    r_tinfo(&r, "a", 1, one, SLM_TYPE_F32, 0);
    r_tinfo(&r, "b", 1, one, SLM_TYPE_F32, 32);
    r_pad(&r, 64);
    for (int i = 0; i < 128; i++) r_u8(&r, 0);
    EXPECT_BAD(&r, SLM_ERR_FORMAT, "alignment 64");
    r_free(&r);
    r_header(&r, 3, 2, 1);
    r_kv_u32(&r, "general.alignment", 64);
    r_tinfo(&r, "a", 1, one, SLM_TYPE_F32, 0);
    r_tinfo(&r, "b", 1, one, SLM_TYPE_F32, 64);
    r_pad(&r, 64);
    size_t data_at = r.n;
    for (int i = 0; i < 128; i++) r_u8(&r, (uint8_t)i);
    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(r.p, r.n, "a64.gguf", &f));
    if (f) {
        CHECK(gguf_alignment(f) == 64);
        CHECK(gguf_find_tensor(f, "b")->data == r.p + data_at + 64);
    }
    gguf_close(f);
    r_free(&r);
}

/* Every prefix of a valid file, and bit flips all over its header. */
static void test_truncation_and_flips(void) {
    uint8_t *blobs[N_TENSORS] = {0};
    gguf_writer *w = build_writer(blobs);
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(mem, size, "full.gguf", &f));
    if (!f) goto done;
    /* The file is complete once the last tensor's bytes are in: only the
     * final padding may be cut. */
    uint64_t need = 0;
    const uint8_t *base = gguf_base(f);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t end = (uint64_t)(t->data - base) + t->nbytes;
        if (end > need) need = end;
    }
    uint64_t header_end = (uint64_t)(gguf_tensor_at(f, 0)->data - base);
    gguf_close(f);
    CHECK(need <= size && need + 32 > size);

    int bad_ok = 0, good_bad = 0;
    for (size_t n = 0; n < size; n++) {
        gguf_file *g = NULL;
        slm_status st = open_exact(mem, n, &g);
        if (n < need && st == SLM_OK) bad_ok++;
        if (n >= need && st != SLM_OK) good_bad++;
        if (st != SLM_OK && strstr(slm_last_error(), "test.gguf") == NULL) bad_ok++;
    }
    CHECK_MSG(bad_ok == 0, "%d truncated prefixes opened or gave anonymous messages", bad_ok);
    CHECK_MSG(good_bad == 0, "%d complete prefixes were refused", good_bad);

    uint8_t *copy = malloc(size);
    int opened = 0, refused = 0;
    for (uint64_t pos = 0; pos < header_end; pos++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(copy, mem, size);
            copy[pos] ^= (uint8_t)(1u << bit);
            gguf_file *g = NULL;
            slm_status st = gguf_open_memory(copy, size, "flip.gguf", &g);
            if (st == SLM_OK) {
                opened++;
                /* whatever opened must be self-consistent */
                for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
                    const gguf_tensor *t = gguf_tensor_at(g, i);
                    CHECK(t->data >= copy && t->data + t->nbytes <= copy + size);
                }
                gguf_close(g);
            } else {
                refused++;
                CHECK(g == NULL);
                CHECK(slm_last_error()[0] != '\0');
            }
        }
    }
    CHECK(refused > 0 && opened > 0);
    printf("bit flips over %llu header bytes: %d opened, %d refused\n",
           (unsigned long long)header_end, opened, refused);

    /* random multi-byte damage, checked with exact-size buffers */
    check_rng rng = {12345};
    int fuzz_opened = 0;
    for (int it = 0; it < FUZZ_ITERATIONS; it++) {
        memcpy(copy, mem, size);
        int k = 1 + (int)(check_rng_u64(&rng) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)(check_rng_u64(&rng) % header_end);
            copy[at] = (uint8_t)check_rng_u64(&rng);
        }
        size_t n = size - (size_t)(check_rng_u64(&rng) % 3 == 0 ? check_rng_u64(&rng) % size : 0);
        gguf_file *g = NULL;
        if (open_exact(copy, n, &g) == SLM_OK) fuzz_opened++;
    }
    CHECK(fuzz_opened < FUZZ_ITERATIONS); /* the damage was real: most must be refused */
    free(copy);
done:
    free(mem);
    gguf_writer_free(w);
    for (int i = 0; i < N_TENSORS; i++) free(blobs[i]);
}

/* ---- the real fixture ----------------------------------------------------- */

/* llama.cpp wrote these files: copying every key and tensor through our
 * writer must give back the very same bytes (same layout, padding, order). */
static void check_rewrite_identical(const gguf_file *f) {
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_new(&w));
    CHECK_OK(gguf_writer_copy_kv(w, f, NULL, NULL));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[GGUF_MAX_NAME + 1];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK_OK(
            gguf_writer_add_tensor_ref(w, name, t->type, t->n_dims, t->ne, t->data, t->nbytes));
    }
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    CHECK_MSG(size == gguf_file_size(f) && mem && memcmp(mem, gguf_base(f), size) == 0,
              "%s: rewritten %zu bytes differ from the original", gguf_path(f), size);
    free(mem);
    gguf_writer_free(w);
}

static void test_fixture(void) {
    char path[1024];
    if (!check_shared_path("models/stories260K.gguf", path, sizeof path)) {
        printf("stories260K.gguf not found under $SLM_SHARED/models: fixture checks skipped\n");
        return;
    }
    gguf_file *f = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (!f) return;
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_n_tensors(f) == 48);
    gguf_str arch = {0};
    CHECK_OK(gguf_get_str(f, "general.architecture", &arch));
    CHECK(gguf_str_eq(arch, "llama"));
    uint32_t dim = 0;
    CHECK_OK(gguf_get_u32(f, "llama.embedding_length", &dim));
    CHECK(dim == 64);
    const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
    CHECK(tok && tok->type == GGUF_VT_ARRAY && tok->arr_type == GGUF_VT_STRING);
    CHECK(tok && tok->arr_len == 512 && tok->strs);
    if (tok && tok->strs && tok->arr_len == 512) {
        CHECK(gguf_str_eq(tok->strs[0], "<unk>"));
        CHECK(gguf_str_eq(tok->strs[1], "<s>"));
    }
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    CHECK(emb && emb->type == SLM_TYPE_F32 && emb->ne[0] == 64 && emb->ne[1] == 512);
    CHECK(emb && emb->nbytes == 64 * 512 * 4);
    CHECK(gguf_fd(f) >= 0);
    CHECK(gguf_file_size(f) == 1185376);
    check_rewrite_identical(f);
    gguf_close(f);

    /* the quantized siblings open too */
    const char *others[] = {"models/stories260K-F16.gguf", "models/stories260K-Q6_K.gguf",
                            "models/stories260K-Q4_K_M.gguf"};
    for (int i = 0; i < 3; i++) {
        if (!check_shared_path(others[i], path, sizeof path)) continue;
        CHECK_OK(gguf_open(path, &f));
        CHECK(f && gguf_n_tensors(f) == 48);
        if (f) check_rewrite_identical(f);
        gguf_close(f);
        f = NULL;
    }
}

/* ---- the test-model builder ------------------------------------------------ */

static int shape_is(const gguf_file *f, const char *name, uint32_t type, uint64_t ne0,
                    uint64_t ne1) {
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        fprintf(stderr, "missing tensor %s\n", name);
        return 0;
    }
    int ok =
        t->type == type && t->ne[0] == ne0 && t->ne[1] == ne1 && t->n_dims == (ne1 > 1 ? 2u : 1u);
    if (!ok)
        fprintf(stderr, "%s: type %u [%llu, %llu] n_dims %u\n", name, t->type,
                (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], t->n_dims);
    return ok;
}

static void test_testmodel(void) {
    char path[512], path2[512];
    check_tmp_path("tm_llama.gguf", path, sizeof path);
    check_tmp_path("tm_llama2.gguf", path2, sizeof path2);
    slm_test_model_params p = {0};
    p.dim = 64;
    p.n_layers = 2;
    p.n_heads = 4;
    p.n_kv_heads = 2;
    p.ffn_dim = 96;
    p.n_ctx = 128;
    p.n_extra_vocab = 10;
    p.seed = 42;
    CHECK_OK(slm_test_write_model(path, &p));
    const int n_vocab = slm_test_base_vocab() + 10;
    gguf_file *f = NULL;
    CHECK_OK(gguf_open(path, &f));
    if (f) {
        CHECK(gguf_n_tensors(f) == 3 + 9 * 2);
        CHECK(shape_is(f, "token_embd.weight", SLM_TYPE_F32, 64, (uint64_t)n_vocab));
        CHECK(shape_is(f, "output.weight", SLM_TYPE_F32, 64, (uint64_t)n_vocab));
        CHECK(shape_is(f, "output_norm.weight", SLM_TYPE_F32, 64, 1));
        CHECK(shape_is(f, "blk.1.attn_q.weight", SLM_TYPE_F32, 64, 64));
        CHECK(shape_is(f, "blk.1.attn_k.weight", SLM_TYPE_F32, 64, 32));
        CHECK(shape_is(f, "blk.1.attn_v.weight", SLM_TYPE_F32, 64, 32));
        CHECK(shape_is(f, "blk.0.attn_output.weight", SLM_TYPE_F32, 64, 64));
        CHECK(shape_is(f, "blk.0.ffn_gate.weight", SLM_TYPE_F32, 64, 96));
        CHECK(shape_is(f, "blk.0.ffn_up.weight", SLM_TYPE_F32, 64, 96));
        CHECK(shape_is(f, "blk.0.ffn_down.weight", SLM_TYPE_F32, 96, 64));
        CHECK(shape_is(f, "blk.0.attn_norm.weight", SLM_TYPE_F32, 64, 1));
        CHECK(shape_is(f, "blk.0.ffn_norm.weight", SLM_TYPE_F32, 64, 1));
        CHECK(gguf_find_tensor(f, "blk.2.attn_q.weight") == NULL);
        CHECK(gguf_find_tensor(f, "blk.0.attn_q.bias") == NULL);

        uint32_t u = 0;
        float x = 0;
        int b = -1;
        gguf_str s = {0};
        CHECK_OK(gguf_get_str(f, "general.architecture", &s));
        CHECK(gguf_str_eq(s, "llama"));
        CHECK_OK(gguf_get_str(f, "general.name", &s));
        CHECK(gguf_str_eq(s, "slm-test"));
        CHECK(gguf_find_kv(f, "general.alignment") == NULL);
        CHECK_OK(gguf_get_u32(f, "llama.context_length", &u));
        CHECK(u == 128);
        CHECK_OK(gguf_get_u32(f, "llama.embedding_length", &u));
        CHECK(u == 64);
        CHECK_OK(gguf_get_u32(f, "llama.block_count", &u));
        CHECK(u == 2);
        CHECK_OK(gguf_get_u32(f, "llama.feed_forward_length", &u));
        CHECK(u == 96);
        CHECK_OK(gguf_get_u32(f, "llama.attention.head_count", &u));
        CHECK(u == 4);
        CHECK_OK(gguf_get_u32(f, "llama.attention.head_count_kv", &u));
        CHECK(u == 2);
        CHECK_OK(gguf_get_u32(f, "llama.rope.dimension_count", &u));
        CHECK(u == 16);
        CHECK_OK(gguf_get_u32(f, "llama.vocab_size", &u));
        CHECK(u == (uint32_t)n_vocab);
        CHECK_OK(gguf_get_f32(f, "llama.rope.freq_base", &x));
        CHECK(x == 10000.0f);
        CHECK_OK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &x));
        CHECK(x == 1e-5f);
        CHECK_OK(gguf_get_str(f, "tokenizer.ggml.model", &s));
        CHECK(gguf_str_eq(s, "llama"));
        CHECK_OK(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &u));
        CHECK(u == 1);
        CHECK_OK(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &u));
        CHECK(u == 2);
        CHECK_OK(gguf_get_u32(f, "tokenizer.ggml.unknown_token_id", &u));
        CHECK(u == 0);
        CHECK_OK(gguf_get_bool_opt(f, "tokenizer.ggml.add_bos_token", &b));
        CHECK(b == 1);
        CHECK_OK(gguf_get_bool_opt(f, "tokenizer.ggml.add_eos_token", &b));
        CHECK(b == 0);

        const gguf_kv *tok = gguf_find_kv(f, "tokenizer.ggml.tokens");
        const gguf_kv *sc = gguf_find_kv(f, "tokenizer.ggml.scores");
        const gguf_kv *ty = gguf_find_kv(f, "tokenizer.ggml.token_type");
        CHECK(tok && tok->arr_type == GGUF_VT_STRING && tok->arr_len == (uint64_t)n_vocab);
        CHECK(sc && sc->arr_type == GGUF_VT_FLOAT32 && sc->arr_len == (uint64_t)n_vocab);
        CHECK(ty && ty->arr_type == GGUF_VT_INT32 && ty->arr_len == (uint64_t)n_vocab);
        if (tok && sc && ty && tok->arr_len == (uint64_t)n_vocab &&
            sc->arr_len == (uint64_t)n_vocab && ty->arr_len == (uint64_t)n_vocab) {
            CHECK(gguf_str_eq(tok->strs[0], "<unk>") && gguf_arr_i64(ty, 0) == 2);
            CHECK(gguf_str_eq(tok->strs[1], "<s>") && gguf_arr_i64(ty, 1) == 3);
            CHECK(gguf_str_eq(tok->strs[2], "</s>") && gguf_arr_i64(ty, 2) == 3);
            CHECK(gguf_str_eq(tok->strs[3], "<0x00>") && gguf_arr_i64(ty, 3) == 6);
            CHECK(gguf_str_eq(tok->strs[258], "<0xFF>") && gguf_arr_f64(sc, 258) == 0.0);
            CHECK(gguf_str_eq(tok->strs[259], "\xe2\x96\x81") && gguf_arr_i64(ty, 259) == 1);
            CHECK(gguf_str_eq(tok->strs[260], "a"));
            CHECK(gguf_str_eq(tok->strs[n_vocab - 1], "\xe2\x96\x81x9"));
            int dups = 0, found_the = 0, order_ok = 1;
            for (int i = 0; i < n_vocab; i++) {
                if (gguf_str_eq(tok->strs[i], "\xe2\x96\x81the")) found_the = 1;
                if (i > 259 && !(gguf_arr_f64(sc, (uint64_t)i) < gguf_arr_f64(sc, (uint64_t)i - 1)))
                    order_ok = 0;
                for (int j = 0; j < i; j++) {
                    if (tok->strs[i].len == tok->strs[j].len &&
                        memcmp(tok->strs[i].ptr, tok->strs[j].ptr, tok->strs[i].len) == 0)
                        dups++;
                }
            }
            CHECK(dups == 0);
            CHECK(found_the);
            CHECK(order_ok);
        }
        /* norms are near 1, weights near 0 with the requested spread */
        const float *nw = (const float *)gguf_find_tensor(f, "output_norm.weight")->data;
        CHECK(nw[0] > 0.7f && nw[0] < 1.3f);
        const gguf_tensor *q = gguf_find_tensor(f, "blk.0.attn_q.weight");
        double ss = 0;
        for (int i = 0; i < 64 * 64; i++) {
            float v;
            memcpy(&v, q->data + 4 * i, 4);
            ss += (double)v * v;
        }
        CHECK_NEAR(sqrt(ss / (64 * 64)), 0.02, 0.003);
    }

    /* deterministic: same seed, same bytes; another seed, other bytes */
    CHECK_OK(slm_test_write_model(path2, &p));
    char *a = NULL, *b2 = NULL;
    size_t na = 0, nb = 0;
    CHECK_OK(slm_read_file(path, MAX_FILE_READ, &a, &na));
    CHECK_OK(slm_read_file(path2, MAX_FILE_READ, &b2, &nb));
    CHECK(a && b2 && na == nb && memcmp(a, b2, na) == 0);
    free(b2);
    b2 = NULL;
    p.seed = 43;
    CHECK_OK(slm_test_write_model(path2, &p));
    CHECK_OK(slm_read_file(path2, MAX_FILE_READ, &b2, &nb));
    CHECK(a && b2 && na == nb && memcmp(a, b2, na) != 0);
    free(a);
    free(b2);
    gguf_close(f);
    f = NULL;

    /* qwen2, tied, quantized */
    slm_test_model_params q = {0};
    q.arch = "qwen2";
    q.dim = 64;
    q.n_layers = 3;
    q.n_heads = 4;
    q.n_kv_heads = 1;
    q.ffn_dim = 128;
    q.wtype = SLM_TYPE_Q8_0;
    q.tied = 1;
    q.seed = 7;
    q.scale = 0.1f;
    q.rope_base = 1000000.0f;
    CHECK_OK(slm_test_write_model(path, &q));
    CHECK_OK(gguf_open(path, &f));
    if (f) {
        int nv = slm_test_base_vocab();
        CHECK(gguf_n_tensors(f) == 2 + 12 * 3);
        CHECK(gguf_find_tensor(f, "output.weight") == NULL);
        CHECK(shape_is(f, "token_embd.weight", SLM_TYPE_Q8_0, 64, (uint64_t)nv));
        CHECK(shape_is(f, "blk.2.attn_q.bias", SLM_TYPE_F32, 64, 1));
        CHECK(shape_is(f, "blk.2.attn_k.bias", SLM_TYPE_F32, 16, 1));
        CHECK(shape_is(f, "blk.2.attn_v.bias", SLM_TYPE_F32, 16, 1));
        CHECK(shape_is(f, "blk.2.attn_k.weight", SLM_TYPE_Q8_0, 64, 16));
        CHECK(shape_is(f, "blk.2.ffn_down.weight", SLM_TYPE_Q8_0, 128, 64));
        CHECK(shape_is(f, "blk.2.attn_norm.weight", SLM_TYPE_F32, 64, 1));
        uint32_t u = 0;
        float x = 0;
        CHECK_OK(gguf_get_u32(f, "qwen2.attention.head_count_kv", &u));
        CHECK(u == 1);
        CHECK_OK(gguf_get_u32(f, "qwen2.context_length", &u));
        CHECK(u == 512);
        CHECK_OK(gguf_get_f32(f, "qwen2.rope.freq_base", &x));
        CHECK(x == 1000000.0f);
        CHECK(gguf_find_kv(f, "llama.block_count") == NULL);
        /* the quantized weights decode to the requested spread */
        const gguf_tensor *t = gguf_find_tensor(f, "blk.0.ffn_up.weight");
        float row[64];
        double ss = 0;
        for (int r = 0; r < 128; r++) {
            slm_dequantize_row(SLM_TYPE_Q8_0, t->data + (size_t)r * 68, row, 64);
            for (int i = 0; i < 64; i++) ss += (double)row[i] * row[i];
        }
        CHECK_NEAR(sqrt(ss / (64 * 128)), 0.1, 0.01);
    }
    gguf_close(f);
    f = NULL;

    /* F16 matrices */
    slm_test_model_params h = p;
    h.wtype = SLM_TYPE_F16;
    CHECK_OK(slm_test_write_model(path, &h));
    CHECK_OK(gguf_open(path, &f));
    CHECK(f && shape_is(f, "blk.0.ffn_down.weight", SLM_TYPE_F16, 96, 64));
    CHECK(f && shape_is(f, "output_norm.weight", SLM_TYPE_F32, 64, 1));
    gguf_close(f);

    /* bad parameters are refused */
    slm_test_model_params bad = p;
    bad.arch = "gpt9";
    CHECK_ERR(slm_test_write_model(path2, &bad), SLM_ERR_INVALID_ARG, "gpt9");
    bad = p;
    bad.n_heads = 5;
    CHECK_ERR(slm_test_write_model(path2, &bad), SLM_ERR_INVALID_ARG, "heads");
    bad = p;
    bad.n_kv_heads = 3;
    CHECK_ERR(slm_test_write_model(path2, &bad), SLM_ERR_INVALID_ARG, "kv heads");
    bad = p;
    bad.wtype = SLM_TYPE_Q4_K; /* 64 is not a multiple of 256 */
    CHECK_ERR(slm_test_write_model(path2, &bad), SLM_ERR_INVALID_ARG, "multiples");
    bad = p;
    bad.dim = 0;
    CHECK_ERR(slm_test_write_model(path2, &bad), SLM_ERR_INVALID_ARG, "range");

    remove(path);
    remove(path2);
}

/* slm_load_file: the same bytes mapped and copied; a copy is 2 MiB-aligned,
 * read-only and read in parts (a file over 64 MiB takes more than one
 * thread on two cores, so the parts' edges are compared too). */
static void test_load_file(void) {
    char path[512];
    check_tmp_path("loadfile.bin", path, sizeof path);
    const size_t size = ((size_t)70 << 20) + 12345, chunk = (size_t)1 << 20;
    FILE *f = fopen(path, "wb");
    uint8_t *buf = malloc(chunk);
    CHECK(f != NULL && buf != NULL);
    if (!f || !buf) {
        if (f) fclose(f);
        free(buf);
        return;
    }
    for (size_t off = 0; off < size; off += chunk) { /* every byte depends on its offset */
        size_t n = size - off < chunk ? size - off : chunk;
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)((off + i) * 2654435761u >> 13);
        CHECK(fwrite(buf, 1, n, f) == n);
    }
    free(buf);
    uint8_t last[5];
    for (size_t i = 0; i < 5; i++) last[i] = (uint8_t)((size - 5 + i) * 2654435761u >> 13);
    fclose(f);

    slm_mapped_file mm, mc, ma;
    CHECK_OK(slm_load_file(path, SLM_FILE_MAP, &mm));
    CHECK_OK(slm_load_file(path, SLM_FILE_COPY, &mc));
    CHECK_OK(slm_load_file(path, SLM_FILE_AUTO, &ma));
    CHECK(mm.size == size && mc.size == size && ma.size == size);
    CHECK(!slm_file_copied(&mm) && slm_file_copied(&mc));
    CHECK(((uintptr_t)mc.data & (((uintptr_t)2 << 20) - 1)) == 0);
    CHECK(mc.fd >= 0 && mm.fd >= 0);
    if (mm.data && mc.data && ma.data) {
        CHECK(memcmp(mm.data, mc.data, size) == 0);
        CHECK(memcmp(mm.data, ma.data, size) == 0);
        CHECK(memcmp(mc.data + size - 5, last, 5) == 0);
    }
    /* the copy is read-only: a write kills the writer */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* not a sanitizer's report: the fault is expected */
        signal(SIGBUS, SIG_DFL);
        ((volatile uint8_t *)(uintptr_t)mc.data)[100] = 7;
        _exit(0);
    }
    int wst = 0;
    CHECK(pid > 0 && waitpid(pid, &wst, 0) == pid);
    CHECK_MSG(!(WIFEXITED(wst) && WEXITSTATUS(wst) == 0), "a write to the copy succeeded");
    slm_unmap_file(&mm);
    slm_unmap_file(&mc);
    slm_unmap_file(&ma);
    CHECK(mc.data == NULL && mc.copied == 0 && mc.fd == -1 && mc.size == 0);

    /* empty files, missing files, directories */
    f = fopen(path, "wb");
    if (f) fclose(f);
    CHECK_OK(slm_load_file(path, SLM_FILE_COPY, &mc));
    CHECK(mc.size == 0 && mc.data == NULL && !slm_file_copied(&mc));
    slm_unmap_file(&mc);
    remove(path);
    CHECK_ERR(slm_load_file(path, SLM_FILE_COPY, &mc), SLM_ERR_IO, "cannot open");
    CHECK(mc.data == NULL && mc.fd == -1);
    CHECK_ERR(slm_load_file(".", SLM_FILE_COPY, &mc), SLM_ERR_IO, "not a regular file");
    slm_unmap_file(&mc); /* harmless after a failure */
}

int main(void) {
    test_round_trip();
    test_scalars_and_getters();
    test_writer_errors();
    test_base_is_valid();
    test_bad_header();
    test_bad_kv();
    test_bad_tensors();
    test_truncation_and_flips();
    test_fixture();
    test_testmodel();
    test_load_file();
    return check_finish();
}
