/* GGUF v3 writer. Metadata values are kept serialized exactly as they will
 * appear in the file (the bytes after the value type), so writing is a plain
 * copy and gguf_writer_copy_kv needs no per-type code beyond strings and
 * string arrays. Tensor data is streamed to a temporary file beside the
 * target and renamed into place, so a failed write never leaves a partial
 * file at the destination and big models never need a second copy in memory. */
#include "format/gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mem.h"
#include "base/status.h"
#include "quant/types.h"

#define GGUF_WRITE_VERSION 3u
#define GGUF_ALIGNMENT_KEY "general.alignment"
#define GGUF_TMP_SUFFIX ".tmpXXXXXX"
#define GGUF_ZERO_CHUNK 4096u /* zero padding written in pieces of this size */
#define GGUF_WRITE_MODE 0644  /* mkstemp makes 0600; models are meant to be shared */
#define GGUF_INITIAL_CAP 16u

typedef struct wkv {
    char *key;
    gguf_vtype type;
    uint8_t *val; /* serialized value */
    size_t val_len;
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    const void *data; /* owned or borrowed */
    void *owned;
    uint64_t nbytes;
    uint64_t offset; /* assigned at layout time */
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

/* ---- growable byte buffer ---------------------------------------------- */

typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
    int oom; /* sticky: checked once at the end */
} bbuf;

static void bb_put(bbuf *b, const void *d, size_t n) {
    if (b->oom || n == 0) return;
    if (n > SIZE_MAX - b->n) {
        b->oom = 1;
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) {
                cap = b->n + n;
                break;
            }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void bb_u32(bbuf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bb_put(b, x, 4);
}

static void bb_u64(bbuf *b, uint64_t v) {
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}

static void bb_str(bbuf *b, const char *s, uint64_t len) {
    bb_u64(b, len);
    bb_put(b, s, (size_t)len);
}

static void bb_zeros(bbuf *b, size_t n) {
    static const uint8_t zeros[GGUF_ZERO_CHUNK];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        bb_put(b, zeros, k);
        n -= k;
    }
}

/* ---- the writer -------------------------------------------------------- */

slm_status gguf_writer_new(gguf_writer **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_writer_new: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
    return SLM_OK;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static int is_pow2(uint64_t a) {
    return a != 0 && (a & (a - 1)) == 0;
}

/* Stores `val` (a malloc'd serialized value, taken over even on failure)
 * under `key`, replacing the value of an existing key in place so that keys
 * keep their first insertion order. */
static slm_status set_owned(gguf_writer *w, const char *key, gguf_vtype type, uint8_t *val,
                            size_t val_len) {
    slm_status st = SLM_OK;
    if (!w || !key) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: NULL writer or key");
        goto cleanup;
    }
    size_t klen = strlen(key);
    if (klen == 0 || klen > GGUF_MAX_KEY) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: key length %zu is not in 1..%u", klen,
                      GGUF_MAX_KEY);
        goto cleanup;
    }
    /* The reader insists on this, so refuse to write a file it would reject. */
    if (strcmp(key, GGUF_ALIGNMENT_KEY) == 0) {
        uint32_t a = 0;
        if (type == GGUF_VT_UINT32 && val_len == 4)
            a = (uint32_t)val[0] | ((uint32_t)val[1] << 8) | ((uint32_t)val[2] << 16) |
                ((uint32_t)val[3] << 24);
        if (type != GGUF_VT_UINT32 || !is_pow2(a)) {
            st = slm_fail(SLM_ERR_INVALID_ARG,
                          "gguf writer: key '%s' must be a u32 nonzero power of two",
                          GGUF_ALIGNMENT_KEY);
            goto cleanup;
        }
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].type = type;
            w->kv[i].val = val;
            w->kv[i].val_len = val_len;
            return SLM_OK;
        }
    }
    if (w->n_kv >= GGUF_MAX_KV) {
        st = slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: more than %u keys", GGUF_MAX_KV);
        goto cleanup;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : GGUF_INITIAL_CAP;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            st = slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
            goto cleanup;
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = slm_strndup(key, klen);
    if (!k) {
        st = slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
        goto cleanup;
    }
    w->kv[w->n_kv++] = (wkv){k, type, val, val_len};
    return SLM_OK;
cleanup:
    free(val);
    return st;
}

static slm_status set_bytes(gguf_writer *w, const char *key, gguf_vtype type, const void *v,
                            size_t n) {
    uint8_t *val = malloc(n ? n : 1);
    if (!val) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
    if (n) memcpy(val, v, n);
    return set_owned(w, key, type, val, n);
}

static slm_status set_bbuf(gguf_writer *w, const char *key, gguf_vtype type, bbuf *b) {
    if (b->oom) {
        free(b->p);
        return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory for key '%s'", key ? key : "?");
    }
    if (!b->p) b->p = malloc(1); /* an empty value still needs an owner */
    if (!b->p) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
    return set_owned(w, key, type, b->p, b->n);
}

/* Scalars are stored little-endian: build the bytes explicitly. */
slm_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    bbuf b = {0};
    bb_u32(&b, v);
    return set_bbuf(w, key, GGUF_VT_UINT32, &b);
}

slm_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    bbuf b = {0};
    bb_u32(&b, (uint32_t)v);
    return set_bbuf(w, key, GGUF_VT_INT32, &b);
}

slm_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) {
    bbuf b = {0};
    bb_u64(&b, v);
    return set_bbuf(w, key, GGUF_VT_UINT64, &b);
}

slm_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    bbuf b = {0};
    bb_u32(&b, bits);
    return set_bbuf(w, key, GGUF_VT_FLOAT32, &b);
}

slm_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v ? 1 : 0;
    return set_bytes(w, key, GGUF_VT_BOOL, &b, 1);
}

slm_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!v)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: NULL string for key '%s'",
                        key ? key : "?");
    bbuf b = {0};
    bb_str(&b, v, strlen(v));
    return set_bbuf(w, key, GGUF_VT_STRING, &b);
}

/* Element bytes are taken as they are in memory: GGUF is little-endian and
 * so is every host slm targets. */
slm_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data,
                               uint64_t n) {
    size_t es = gguf_vtype_size(t);
    if (es == 0)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "gguf writer: key '%s': %s is not a numeric element type (use "
                        "gguf_writer_set_arr_str for strings)",
                        key ? key : "?", gguf_vtype_name(t));
    if (n > GGUF_MAX_ARRAY)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "gguf writer: key '%s': %" PRIu64 " elements exceed the limit of %u",
                        key ? key : "?", n, GGUF_MAX_ARRAY);
    if (n > 0 && !data)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: key '%s': NULL array data",
                        key ? key : "?");
    if (t == GGUF_VT_BOOL) {
        const uint8_t *p = data;
        for (uint64_t i = 0; i < n; i++) {
            if (p[i] > 1)
                return slm_fail(SLM_ERR_INVALID_ARG,
                                "gguf writer: key '%s': bool element %" PRIu64 " is %u, not 0/1",
                                key ? key : "?", i, (unsigned)p[i]);
        }
    }
    bbuf b = {0};
    bb_u32(&b, (uint32_t)t);
    bb_u64(&b, n);
    bb_put(&b, data, (size_t)(n * es)); /* n <= 2^26, es <= 8: no overflow */
    return set_bbuf(w, key, GGUF_VT_ARRAY, &b);
}

static slm_status set_arr_gstr(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n) {
    bbuf b = {0};
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) bb_str(&b, strs[i].ptr, strs[i].len);
    return set_bbuf(w, key, GGUF_VT_ARRAY, &b);
}

slm_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                   uint64_t n) {
    if (n > GGUF_MAX_ARRAY)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "gguf writer: key '%s': %" PRIu64 " strings exceed the limit of %u",
                        key ? key : "?", n, GGUF_MAX_ARRAY);
    bbuf b = {0};
    bb_u32(&b, GGUF_VT_STRING);
    bb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(b.p);
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "gguf writer: key '%s': string %" PRIu64 " is NULL", key ? key : "?",
                            i);
        }
        bb_str(&b, strs[i], strlen(strs[i]));
    }
    return set_bbuf(w, key, GGUF_VT_ARRAY, &b);
}

slm_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src,
                               int (*skip)(const char *key, void *user), void *user) {
    if (!w || !src) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_writer_copy_kv: NULL argument");
    for (uint64_t i = 0; i < gguf_n_kv(src); i++) {
        const gguf_kv *kv = gguf_kv_at(src, i);
        if (memchr(kv->key.ptr, '\0', (size_t)kv->key.len))
            return slm_fail(SLM_ERR_UNSUPPORTED, "%s: key #%" PRIu64 " contains a NUL byte",
                            gguf_path(src), i);
        char *key = slm_strndup(kv->key.ptr, (size_t)kv->key.len);
        if (!key) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
        slm_status st = SLM_OK;
        if (!skip || !skip(key, user)) {
            if (kv->type == GGUF_VT_STRING) {
                bbuf b = {0};
                bb_str(&b, kv->str.ptr, kv->str.len);
                st = set_bbuf(w, key, kv->type, &b);
            } else if (kv->type == GGUF_VT_ARRAY && kv->arr_type == GGUF_VT_STRING) {
                st = set_arr_gstr(w, key, kv->strs, kv->arr_len);
            } else if (kv->type == GGUF_VT_ARRAY) {
                bbuf b = {0};
                bb_u32(&b, (uint32_t)kv->arr_type);
                bb_u64(&b, kv->arr_len);
                bb_put(&b, kv->data, (size_t)(kv->arr_len * gguf_vtype_size(kv->arr_type)));
                st = set_bbuf(w, key, kv->type, &b);
            } else {
                st = set_bytes(w, key, kv->type, kv->data, gguf_vtype_size(kv->type));
            }
        }
        free(key);
        if (st != SLM_OK) return st;
    }
    return SLM_OK;
}

static slm_status add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *ne, const void *data, uint64_t nbytes, int copy) {
    if (!w || !name || !ne)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: NULL writer, name or shape");
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > GGUF_MAX_NAME)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: tensor name length %zu is not in 1..%u",
                        nlen, GGUF_MAX_NAME);
    if (w->n_t >= GGUF_MAX_TENSORS)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: more than %u tensors", GGUF_MAX_TENSORS);
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: duplicate tensor '%s'", name);
    }
    const slm_type_info *ti = slm_type_get(type);
    if (!ti)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown type %" PRIu32,
                        name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "gguf writer: tensor '%s': %" PRIu32 " dimensions (expected 1..%u)", name,
                        n_dims, GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || !slm_mul_ok(n_elem, ne[d], &n_elem) || n_elem > (uint64_t)INT64_MAX)
            return slm_fail(SLM_ERR_INVALID_ARG,
                            "gguf writer: tensor '%s': dimension %" PRIu32 " (%" PRIu64
                            ") is 0 or overflows",
                            name, d, ne[d]);
    }
    uint64_t row, want;
    slm_status st = slm_row_bytes(type, ne[0], &row);
    if (st != SLM_OK) return slm_fail_prefix(SLM_ERR_INVALID_ARG, "gguf writer: tensor '%s'", name);
    if (!slm_mul_ok(row, n_elem / ne[0], &want) || want > SIZE_MAX)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: tensor '%s': size overflows", name);
    if (nbytes != want)
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "gguf writer: tensor '%s': %" PRIu64 " bytes given, %s of this shape "
                        "takes %" PRIu64,
                        name, nbytes, ti->name, want);
    if (!data) return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: tensor '%s': NULL data", name);

    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : GGUF_INITIAL_CAP;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor t = {0};
    t.name = slm_strndup(name, nlen);
    if (!t.name) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory");
    if (copy) {
        t.owned = malloc((size_t)nbytes);
        if (!t.owned) {
            free(t.name);
            return slm_fail(SLM_ERR_NOMEM,
                            "gguf writer: tensor '%s': out of memory for %" PRIu64 " bytes", name,
                            nbytes);
        }
        memcpy(t.owned, data, (size_t)nbytes);
        t.data = t.owned;
    } else {
        t.data = data;
    }
    t.type = type;
    t.n_dims = n_dims;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    t.nbytes = nbytes;
    w->t[w->n_t++] = t;
    return SLM_OK;
}

slm_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                  const uint64_t *ne, const void *data, uint64_t nbytes) {
    return add_tensor(w, name, type, n_dims, ne, data, nbytes, 1);
}

slm_status gguf_writer_add_tensor_ref(gguf_writer *w, const char *name, uint32_t type,
                                      uint32_t n_dims, const uint64_t *ne, const void *data,
                                      uint64_t nbytes) {
    return add_tensor(w, name, type, n_dims, ne, data, nbytes, 0);
}

/* ---- layout and serialization ----------------------------------------- */

static uint32_t writer_alignment(const gguf_writer *w) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (w->kv[i].type == GGUF_VT_UINT32 && strcmp(w->kv[i].key, GGUF_ALIGNMENT_KEY) == 0) {
            const uint8_t *p = w->kv[i].val;
            return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                   ((uint32_t)p[3] << 24);
        }
    }
    return GGUF_DEFAULT_ALIGNMENT;
}

static uint64_t pad_to(uint64_t n, uint32_t align) {
    return (align - n % align) % align;
}

/* Assigns tensor offsets, serializes everything before the data section
 * (padded to the alignment) into `hdr`, and returns the data section size. */
static slm_status build_header(gguf_writer *w, bbuf *hdr, uint64_t *data_size) {
    uint32_t align = writer_alignment(w);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (!slm_add_ok(off, w->t[i].nbytes, &off) || !slm_add_ok(off, pad_to(off, align), &off))
            return slm_fail(SLM_ERR_INVALID_ARG, "gguf writer: the data section size overflows");
    }
    *data_size = off;

    bb_put(hdr, "GGUF", 4);
    bb_u32(hdr, GGUF_WRITE_VERSION);
    bb_u64(hdr, w->n_t);
    bb_u64(hdr, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        bb_str(hdr, w->kv[i].key, strlen(w->kv[i].key));
        bb_u32(hdr, (uint32_t)w->kv[i].type);
        bb_put(hdr, w->kv[i].val, w->kv[i].val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        bb_str(hdr, t->name, strlen(t->name));
        bb_u32(hdr, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) bb_u64(hdr, t->ne[d]);
        bb_u32(hdr, t->type);
        bb_u64(hdr, t->offset);
    }
    bb_zeros(hdr, (size_t)pad_to(hdr->n, align));
    if (hdr->oom) return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory for the header");
    return SLM_OK;
}

slm_status gguf_writer_to_memory(gguf_writer *w, uint8_t **out, size_t *size) {
    if (!w || !out || !size)
        return slm_fail(SLM_ERR_INVALID_ARG, "gguf_writer_to_memory: NULL argument");
    *out = NULL;
    *size = 0;
    bbuf b = {0};
    uint64_t data_size;
    slm_status st = build_header(w, &b, &data_size);
    if (st == SLM_OK && data_size > SIZE_MAX - b.n)
        st = slm_fail(SLM_ERR_NOMEM, "gguf writer: %" PRIu64 " bytes of data do not fit in memory",
                      data_size);
    if (st != SLM_OK) {
        free(b.p);
        return st;
    }
    uint32_t align = writer_alignment(w);
    for (size_t i = 0; i < w->n_t; i++) {
        bb_put(&b, w->t[i].data, (size_t)w->t[i].nbytes);
        bb_zeros(&b, (size_t)pad_to(w->t[i].nbytes, align));
    }
    if (b.oom) {
        free(b.p);
        return slm_fail(SLM_ERR_NOMEM, "gguf writer: out of memory for %" PRIu64 " bytes",
                        data_size);
    }
    *out = b.p;
    *size = b.n;
    return SLM_OK;
}

static int write_all(FILE *fp, const void *p, size_t n) {
    return fwrite(p, 1, n, fp) == n;
}

static int write_zeros(FILE *fp, uint64_t n) {
    static const uint8_t zeros[GGUF_ZERO_CHUNK];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (!write_all(fp, zeros, k)) return 0;
        n -= k;
    }
    return 1;
}

slm_status gguf_writer_write(gguf_writer *w, const char *path) {
    if (!w || !path) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_writer_write: NULL argument");
    bbuf hdr = {0};
    uint64_t data_size;
    slm_status st = build_header(w, &hdr, &data_size);
    if (st != SLM_OK) {
        free(hdr.p);
        return st;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + sizeof GGUF_TMP_SUFFIX);
    FILE *fp = NULL;
    int fd = -1;
    if (!tmp) {
        st = slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, GGUF_TMP_SUFFIX, sizeof GGUF_TMP_SUFFIX);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st = slm_fail(SLM_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        tmp = NULL;
        goto cleanup;
    }
    (void)fchmod(fd, GGUF_WRITE_MODE); /* best effort: the data is what matters */
    fp = fdopen(fd, "wb");
    if (!fp) {
        st = slm_fail(SLM_ERR_IO, "%s: cannot open the temporary file: %s", path, strerror(errno));
        close(fd);
        goto cleanup;
    }
    uint32_t align = writer_alignment(w);
    int ok = write_all(fp, hdr.p, hdr.n);
    for (size_t i = 0; ok && i < w->n_t; i++) {
        ok = write_all(fp, w->t[i].data, (size_t)w->t[i].nbytes) &&
             write_zeros(fp, pad_to(w->t[i].nbytes, align));
    }
    if (!ok || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        st = slm_fail(SLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        fclose(fp);
        fp = NULL;
        goto cleanup;
    }
    int rc = fclose(fp);
    fp = NULL;
    if (rc != 0) {
        st = slm_fail(SLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        st = slm_fail(SLM_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        goto cleanup;
    }
    free(tmp);
    tmp = NULL;
cleanup:
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(hdr.p);
    return st;
}
