/* GGUF v2/v3 reader: the whole header is parsed and checked when the file is
 * opened, so that every pointer handed out afterwards (strings, array
 * elements, tensor data) is known to lie inside the mapping. Nothing here
 * trusts a count, a length or an offset before comparing it with the bytes
 * that are actually left. */
#include "format/gguf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "quant/types.h"

#define GGUF_MAGIC_BYTES 4u
#define GGUF_HEADER_BYTES 24u /* magic, u32 version, u64 n_tensors, u64 n_kv */
#define GGUF_VERSION_V1 1u    /* u32 counts and lengths: refused */
#define GGUF_MIN_VERSION 2u
#define GGUF_MAX_VERSION 3u
/* Smallest possible encodings, used to bound counts by the bytes left before
 * anything is allocated for them. */
#define GGUF_STR_LEN_BYTES 8u
#define GGUF_MIN_KV_BYTES (GGUF_STR_LEN_BYTES + 1u + 4u + 1u) /* key, type, 1-byte value */
#define GGUF_ARRAY_HEADER_BYTES 12u                           /* u32 element type, u64 count */
#define GGUF_MIN_TENSOR_BYTES (GGUF_STR_LEN_BYTES + 1u + 4u + 8u + 4u + 8u)
/* How much of a key or tensor name is quoted in a message. */
#define GGUF_SHOW_MAX 80u
#define GGUF_ALIGNMENT_KEY "general.alignment"

struct gguf_file {
    char *name;          /* for messages: the path, or the caller's name */
    slm_mapped_file map; /* fd -1 and data NULL for memory files */
    const uint8_t *base;
    uint64_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
    uint64_t n_kv;
    gguf_kv *kv;
    const gguf_str **kv_index; /* &kv[i].key, sorted by key */
    uint64_t n_tensors;
    gguf_tensor *tensors;
    const gguf_str **tensor_index; /* &tensors[i].name, sorted by name */
};

/* ---- little helpers ---------------------------------------------------- */

static uint16_t rd16(const uint8_t *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}

size_t gguf_vtype_size(gguf_vtype t) {
    switch (t) {
    case GGUF_VT_UINT8:
    case GGUF_VT_INT8:
    case GGUF_VT_BOOL:
        return 1;
    case GGUF_VT_UINT16:
    case GGUF_VT_INT16:
        return 2;
    case GGUF_VT_UINT32:
    case GGUF_VT_INT32:
    case GGUF_VT_FLOAT32:
        return 4;
    case GGUF_VT_UINT64:
    case GGUF_VT_INT64:
    case GGUF_VT_FLOAT64:
        return 8;
    case GGUF_VT_STRING:
    case GGUF_VT_ARRAY:
    case GGUF_VT_COUNT:
        break;
    }
    return 0;
}

const char *gguf_vtype_name(gguf_vtype t) {
    switch (t) {
    case GGUF_VT_UINT8:
        return "u8";
    case GGUF_VT_INT8:
        return "i8";
    case GGUF_VT_UINT16:
        return "u16";
    case GGUF_VT_INT16:
        return "i16";
    case GGUF_VT_UINT32:
        return "u32";
    case GGUF_VT_INT32:
        return "i32";
    case GGUF_VT_FLOAT32:
        return "f32";
    case GGUF_VT_BOOL:
        return "bool";
    case GGUF_VT_STRING:
        return "string";
    case GGUF_VT_ARRAY:
        return "array";
    case GGUF_VT_UINT64:
        return "u64";
    case GGUF_VT_INT64:
        return "i64";
    case GGUF_VT_FLOAT64:
        return "f64";
    case GGUF_VT_COUNT:
        break;
    }
    return "unknown";
}

int gguf_str_eq(gguf_str s, const char *cstr) {
    size_t n = strlen(cstr);
    return s.len == n && (n == 0 || memcmp(s.ptr, cstr, n) == 0);
}

/* Keys and names come from the file: quote them with control bytes replaced
 * and long ones cut, so a message stays one readable line. */
typedef struct shown {
    char s[GGUF_SHOW_MAX + 4];
} shown;

static shown show(gguf_str str) {
    shown out;
    uint64_t n = str.len < GGUF_SHOW_MAX ? str.len : GGUF_SHOW_MAX;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)str.ptr[i];
        out.s[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (str.len > GGUF_SHOW_MAX) {
        memcpy(out.s + n, "...", 4);
    } else {
        out.s[n] = '\0';
    }
    return out;
}

static int str_cmp(const gguf_str *a, const gguf_str *b) {
    uint64_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->ptr, b->ptr, (size_t)n) : 0;
    if (c != 0) return c;
    return (a->len > b->len) - (a->len < b->len);
}

static int str_ptr_cmp(const void *a, const void *b) {
    return str_cmp(*(const gguf_str *const *)a, *(const gguf_str *const *)b);
}

/* Binary search in an index sorted by str_ptr_cmp. */
static const gguf_str *index_find(const gguf_str *const *index, uint64_t n, const char *key) {
    if (!index || !key) return NULL;
    gguf_str k = {key, strlen(key)};
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = str_cmp(index[mid], &k);
        if (c == 0) return index[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- the cursor -------------------------------------------------------- */

typedef struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *file;
} cursor;

static uint64_t left(const cursor *c) {
    return c->size - c->pos;
}

/* `what` says what was being read, for the message. */
static slm_status need(const cursor *c, uint64_t n, const char *ctx, const char *what) {
    if (n <= left(c)) return SLM_OK;
    return slm_fail(SLM_ERR_FORMAT,
                    "%s: offset %" PRIu64 ": %s%s%s needs %" PRIu64 " bytes but only %" PRIu64
                    " remain in the file (truncated?)",
                    c->file, c->pos, ctx, *ctx ? ": " : "", what, n, left(c));
}

static slm_status get_u32(cursor *c, const char *ctx, const char *what, uint32_t *out) {
    SLM_TRY(need(c, 4, ctx, what));
    *out = rd32(c->base + c->pos);
    c->pos += 4;
    return SLM_OK;
}

static slm_status get_u64(cursor *c, const char *ctx, const char *what, uint64_t *out) {
    SLM_TRY(need(c, 8, ctx, what));
    *out = rd64(c->base + c->pos);
    c->pos += 8;
    return SLM_OK;
}

/* A u64 length and that many bytes; `max` 0 means bounded only by the file. */
static slm_status get_str(cursor *c, const char *ctx, const char *what, uint64_t max,
                          gguf_str *out) {
    uint64_t at = c->pos, len;
    SLM_TRY(get_u64(c, ctx, what, &len));
    if (len > left(c))
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s%s%s length %" PRIu64
                        " exceeds the file (%" PRIu64 " bytes remain)",
                        c->file, at, ctx, *ctx ? ": " : "", what, len, left(c));
    if (max != 0 && len > max)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s%s%s length %" PRIu64
                        " exceeds the limit of %" PRIu64,
                        c->file, at, ctx, *ctx ? ": " : "", what, len, max);
    out->ptr = (const char *)(c->base + c->pos);
    out->len = len;
    c->pos += len;
    return SLM_OK;
}

/* ---- key/value pairs --------------------------------------------------- */

static slm_status check_bools(const cursor *c, const uint8_t *p, uint64_t n, const char *ctx) {
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] > 1)
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: offset %" PRIu64 ": %s: bool value %u is neither 0 nor 1", c->file,
                            (uint64_t)(p + i - c->base), ctx, (unsigned)p[i]);
    }
    return SLM_OK;
}

static slm_status parse_array(cursor *c, gguf_kv *kv, const char *ctx) {
    uint64_t at = c->pos;
    uint32_t et;
    uint64_t n;
    SLM_TRY(get_u32(c, ctx, "array element type", &et));
    if (et >= GGUF_VT_COUNT)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: unknown array element type %" PRIu32
                        " (expected 0..%d)",
                        c->file, at, ctx, et, GGUF_VT_COUNT - 1);
    if (et == GGUF_VT_ARRAY)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: offset %" PRIu64 ": %s: arrays of arrays are not supported", c->file,
                        at, ctx);
    at = c->pos;
    SLM_TRY(get_u64(c, ctx, "array length", &n));
    if (n > GGUF_MAX_ARRAY)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: array of %" PRIu64
                        " elements exceeds the limit of %u",
                        c->file, at, ctx, n, GGUF_MAX_ARRAY);
    uint64_t elem = et == GGUF_VT_STRING ? GGUF_STR_LEN_BYTES : gguf_vtype_size((gguf_vtype)et);
    /* Checked before any allocation: each element takes at least `elem` bytes. */
    if (n > left(c) / elem)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: array of %" PRIu64 " %s elements "
                        "exceeds the file (%" PRIu64 " bytes remain)",
                        c->file, at, ctx, n, gguf_vtype_name((gguf_vtype)et), left(c));
    kv->arr_type = (gguf_vtype)et;
    kv->arr_len = n;
    kv->data = c->base + c->pos;
    if (et != GGUF_VT_STRING) {
        if (et == GGUF_VT_BOOL) SLM_TRY(check_bools(c, kv->data, n, ctx));
        c->pos += n * elem;
        return SLM_OK;
    }
    kv->strs = slm_calloc((size_t)n, sizeof *kv->strs);
    if (!kv->strs)
        return slm_fail(SLM_ERR_NOMEM, "%s: %s: out of memory for %" PRIu64 " strings", c->file,
                        ctx, n);
    for (uint64_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "string %" PRIu64, i);
        SLM_TRY(get_str(c, ctx, what, 0, &kv->strs[i]));
    }
    return SLM_OK;
}

static slm_status parse_kv(cursor *c, uint64_t i, gguf_kv *kv) {
    char ctx[GGUF_SHOW_MAX + 64];
    snprintf(ctx, sizeof ctx, "key #%" PRIu64, i);
    SLM_TRY(get_str(c, ctx, "key", GGUF_MAX_KEY, &kv->key));
    if (kv->key.len == 0)
        return slm_fail(SLM_ERR_FORMAT, "%s: offset %" PRIu64 ": key #%" PRIu64 " is empty",
                        c->file, c->pos - GGUF_STR_LEN_BYTES, i);
    snprintf(ctx, sizeof ctx, "key '%s'", show(kv->key).s);

    uint64_t at = c->pos;
    uint32_t t;
    SLM_TRY(get_u32(c, ctx, "value type", &t));
    if (t >= GGUF_VT_COUNT)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: unknown value type %" PRIu32
                        " (expected 0..%d)",
                        c->file, at, ctx, t, GGUF_VT_COUNT - 1);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_VT_STRING) {
        SLM_TRY(get_str(c, ctx, "string", 0, &kv->str));
        kv->data = (const uint8_t *)kv->str.ptr;
        return SLM_OK;
    }
    if (t == GGUF_VT_ARRAY) return parse_array(c, kv, ctx);
    size_t n = gguf_vtype_size(kv->type);
    SLM_TRY(need(c, n, ctx, gguf_vtype_name(kv->type)));
    kv->data = c->base + c->pos;
    if (t == GGUF_VT_BOOL) SLM_TRY(check_bools(c, kv->data, 1, ctx));
    c->pos += n;
    return SLM_OK;
}

/* ---- tensor infos ------------------------------------------------------ */

static slm_status parse_tensor(cursor *c, uint64_t i, uint32_t alignment, gguf_tensor *t) {
    char ctx[GGUF_SHOW_MAX + 64];
    snprintf(ctx, sizeof ctx, "tensor #%" PRIu64, i);
    SLM_TRY(get_str(c, ctx, "name", GGUF_MAX_NAME, &t->name));
    if (t->name.len == 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": tensor #%" PRIu64 " has an empty name", c->file,
                        c->pos - GGUF_STR_LEN_BYTES, i);
    snprintf(ctx, sizeof ctx, "tensor '%s'", show(t->name).s);

    uint64_t at = c->pos;
    SLM_TRY(get_u32(c, ctx, "n_dims", &t->n_dims));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: %" PRIu32 " dimensions (expected 1..%u)",
                        c->file, at, ctx, t->n_dims, GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        SLM_TRY(get_u64(c, ctx, "dimension", &t->ne[d]));
        if (t->ne[d] == 0)
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: offset %" PRIu64 ": %s: dimension %" PRIu32 " is 0", c->file, at,
                            ctx, d);
        /* ggml counts elements in int64_t: stay within it. */
        if (!slm_mul_ok(n_elem, t->ne[d], &n_elem) || n_elem > (uint64_t)INT64_MAX)
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: offset %" PRIu64 ": %s: the element count overflows at "
                            "dimension %" PRIu32 " (%" PRIu64 ")",
                            c->file, at, ctx, d, t->ne[d]);
    }
    at = c->pos;
    SLM_TRY(get_u32(c, ctx, "type", &t->type));
    const slm_type_info *ti = slm_type_get(t->type);
    if (!ti)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: offset %" PRIu64 ": %s: unknown tensor type %" PRIu32, c->file, at,
                        ctx, t->type);
    if (ti->block_size == 0 || t->ne[0] % ti->block_size != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %s: row length %" PRIu64 " is not a multiple of the %s block "
                        "size %" PRIu32,
                        c->file, ctx, t->ne[0], ti->name, ti->block_size);
    uint64_t row;
    slm_status st = slm_row_bytes(t->type, t->ne[0], &row);
    if (st != SLM_OK) return slm_fail_prefix(st, "%s: %s", c->file, ctx);
    if (!slm_mul_ok(row, n_elem / t->ne[0], &t->nbytes))
        return slm_fail(SLM_ERR_FORMAT, "%s: %s: the byte size overflows", c->file, ctx);

    at = c->pos;
    SLM_TRY(get_u64(c, ctx, "offset", &t->offset));
    if (t->offset % alignment != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset %" PRIu64 ": %s: data offset %" PRIu64
                        " is not a multiple of the alignment %" PRIu32,
                        c->file, at, ctx, t->offset, alignment);
    return SLM_OK;
}

static int tensor_offset_cmp(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Every tensor's bytes inside the data section and no two sharing a byte. */
static slm_status check_tensor_data(gguf_file *f) {
    uint64_t avail = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t end;
        if (!slm_add_ok(t->offset, t->nbytes, &end) || end > avail)
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: tensor '%s': data at offset %" PRIu64 " + %" PRIu64
                            " bytes runs past the end of the data section (%" PRIu64
                            " bytes at file offset %" PRIu64 ")",
                            f->name, show(t->name).s, t->offset, t->nbytes, avail, f->data_offset);
        t->data = f->base + f->data_offset + t->offset;
    }
    if (f->n_tensors < 2) return SLM_OK;
    const gguf_tensor **order = slm_calloc((size_t)f->n_tensors, sizeof *order);
    if (!order) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", f->name);
    for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, tensor_offset_cmp);
    slm_status st = SLM_OK;
    for (uint64_t i = 0; i + 1 < f->n_tensors; i++) {
        const gguf_tensor *a = order[i], *b = order[i + 1];
        if (a->offset + a->nbytes > b->offset) { /* no overflow: checked above */
            st = slm_fail(SLM_ERR_FORMAT,
                          "%s: tensor '%s' (offset %" PRIu64 ", %" PRIu64
                          " bytes) overlaps tensor '%s' (offset %" PRIu64 ")",
                          f->name, show(a->name).s, a->offset, a->nbytes, show(b->name).s,
                          b->offset);
            break;
        }
    }
    free(order);
    return st;
}

/* Sorts &items[i].first-member pointers and reports the first duplicate. */
static slm_status build_index(gguf_file *f, const void *items, size_t stride, uint64_t n,
                              const char *what, const gguf_str ***out) {
    const gguf_str **idx = slm_calloc((size_t)n, sizeof *idx);
    if (!idx) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", f->name);
    *out = idx;
    for (uint64_t i = 0; i < n; i++)
        idx[i] = (const gguf_str *)((const uint8_t *)items + i * stride);
    if (n > 1) qsort(idx, (size_t)n, sizeof *idx, str_ptr_cmp);
    for (uint64_t i = 0; i + 1 < n; i++) {
        if (str_cmp(idx[i], idx[i + 1]) == 0)
            return slm_fail(SLM_ERR_FORMAT, "%s: duplicate %s '%s'", f->name, what,
                            show(*idx[i]).s);
    }
    return SLM_OK;
}

static slm_status read_alignment(gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, GGUF_ALIGNMENT_KEY);
    if (!kv) return SLM_OK;
    if (kv->type != GGUF_VT_UINT32)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' has type %s, expected u32", f->name,
                        GGUF_ALIGNMENT_KEY, gguf_vtype_name(kv->type));
    uint32_t a = rd32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: key '%s' is %" PRIu32 ", expected a nonzero power of two", f->name,
                        GGUF_ALIGNMENT_KEY, a);
    f->alignment = a;
    return SLM_OK;
}

static slm_status parse(gguf_file *f) {
    cursor c = {f->base, f->size, 0, f->name};
    if (f->size < GGUF_HEADER_BYTES)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %" PRIu64 " bytes is too small for a GGUF header (%u bytes)", f->name,
                        f->size, GGUF_HEADER_BYTES);
    if (memcmp(f->base, "GGUF", GGUF_MAGIC_BYTES) != 0)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: not a GGUF file (magic %02x %02x %02x %02x, expected 47 47 55 46)",
                        f->name, f->base[0], f->base[1], f->base[2], f->base[3]);
    c.pos = GGUF_MAGIC_BYTES;
    uint32_t v;
    SLM_TRY(get_u32(&c, "", "version", &v));
    /* A big-endian file shows its version byte-swapped. */
    uint32_t swapped = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
    if (v != swapped && swapped >= GGUF_MIN_VERSION && swapped <= GGUF_MAX_VERSION)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: offset 4: big-endian GGUF (version %" PRIu32 ") is not supported",
                        f->name, swapped);
    if (v == 0) return slm_fail(SLM_ERR_FORMAT, "%s: offset 4: invalid GGUF version 0", f->name);
    if (v == GGUF_VERSION_V1 || v > GGUF_MAX_VERSION)
        return slm_fail(SLM_ERR_UNSUPPORTED,
                        "%s: offset 4: unsupported GGUF version %" PRIu32 " (expected %u or %u)",
                        f->name, v, GGUF_MIN_VERSION, GGUF_MAX_VERSION);
    f->version = v;

    uint64_t n_tensors, n_kv;
    SLM_TRY(get_u64(&c, "", "tensor count", &n_tensors));
    SLM_TRY(get_u64(&c, "", "key/value count", &n_kv));
    if (n_tensors > GGUF_MAX_TENSORS)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset 8: tensor count %" PRIu64 " exceeds the limit of %u", f->name,
                        n_tensors, GGUF_MAX_TENSORS);
    if (n_kv > GGUF_MAX_KV)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: offset 16: key/value count %" PRIu64 " exceeds the limit of %u",
                        f->name, n_kv, GGUF_MAX_KV);
    /* Both counts are small now, so the products cannot overflow. */
    if (n_kv * GGUF_MIN_KV_BYTES + n_tensors * GGUF_MIN_TENSOR_BYTES > left(&c))
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: %" PRIu64 " key/value pairs and %" PRIu64
                        " tensor infos cannot fit in the %" PRIu64 " bytes after the header",
                        f->name, n_kv, n_tensors, left(&c));

    f->kv = slm_calloc((size_t)n_kv, sizeof *f->kv);
    f->tensors = slm_calloc((size_t)n_tensors, sizeof *f->tensors);
    if (!f->kv || !f->tensors) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", f->name);
    for (uint64_t i = 0; i < n_kv; i++) {
        /* Counted first so that gguf_close frees a string array even when
         * parsing fails inside it (entries are zeroed until filled). */
        f->n_kv = i + 1;
        SLM_TRY(parse_kv(&c, i, &f->kv[i]));
    }
    SLM_TRY(build_index(f, f->kv, sizeof *f->kv, f->n_kv, "key", &f->kv_index));
    SLM_TRY(read_alignment(f));

    for (uint64_t i = 0; i < n_tensors; i++)
        SLM_TRY(parse_tensor(&c, i, f->alignment, &f->tensors[i]));
    f->n_tensors = n_tensors;
    SLM_TRY(build_index(f, f->tensors, sizeof *f->tensors, f->n_tensors, "tensor name",
                        &f->tensor_index));

    uint64_t pad = (f->alignment - c.pos % f->alignment) % f->alignment;
    if (!slm_add_ok(c.pos, pad, &f->data_offset))
        return slm_fail(SLM_ERR_FORMAT, "%s: the data section offset overflows", f->name);
    if (f->n_tensors == 0) return SLM_OK; /* no data section needed */
    if (f->data_offset > f->size)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: the data section would start at offset %" PRIu64
                        " (header end %" PRIu64 " aligned to %" PRIu32 "), past the end of "
                        "the file (%" PRIu64 " bytes)",
                        f->name, f->data_offset, c.pos, f->alignment, f->size);
    return check_tensor_data(f);
}

static slm_status open_common(gguf_file *f, gguf_file **out) {
    slm_status st = parse(f);
    if (st != SLM_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return SLM_OK;
}

slm_status gguf_open(const char *path, gguf_file **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_open: out is NULL");
    *out = NULL;
    if (!path) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_open: path is NULL");
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    f->map.fd = -1;
    f->name = slm_strndup(path, strlen(path));
    if (!f->name) {
        free(f);
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    }
    slm_status st = slm_map_file(path, &f->map);
    if (st != SLM_OK) {
        gguf_close(f);
        return st;
    }
    f->base = f->map.data;
    f->size = f->map.size;
    return open_common(f, out);
}

slm_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "gguf_open_memory: out is NULL");
    *out = NULL;
    if (!name) name = "<memory>";
    if (!data && size != 0)
        return slm_fail(SLM_ERR_INVALID_ARG, "%s: NULL buffer of %zu bytes", name, size);
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", name);
    f->map.fd = -1;
    f->name = slm_strndup(name, strlen(name));
    if (!f->name) {
        free(f);
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", name);
    }
    f->base = data;
    f->size = size;
    return open_common(f, out);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) free(f->kv[i].strs);
    }
    free(f->kv);
    free(f->kv_index);
    free(f->tensors);
    free(f->tensor_index);
    slm_unmap_file(&f->map);
    free(f->name);
    free(f);
}

/* ---- accessors --------------------------------------------------------- */

const char *gguf_path(const gguf_file *f) {
    return f->name;
}
uint32_t gguf_version(const gguf_file *f) {
    return f->version;
}
uint64_t gguf_file_size(const gguf_file *f) {
    return f->size;
}
uint32_t gguf_alignment(const gguf_file *f) {
    return f->alignment;
}
int gguf_fd(const gguf_file *f) {
    return f->map.fd;
}
const uint8_t *gguf_base(const gguf_file *f) {
    return f->base;
}
uint64_t gguf_n_kv(const gguf_file *f) {
    return f->n_kv;
}
uint64_t gguf_n_tensors(const gguf_file *f) {
    return f->n_tensors;
}

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) {
    return i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

/* The key and the name are the first members of their structs, so the index
 * entry converts back to the item. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    return (const gguf_kv *)index_find(f->kv_index, f->n_kv, key);
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    return (const gguf_tensor *)index_find(f->tensor_index, f->n_tensors, name);
}

/* ---- typed getters ----------------------------------------------------- */

/* An integer value as sign + magnitude pieces; 0 when the type isn't an
 * integer. `neg` set means `*s` holds a negative value. */
static int int_at(gguf_vtype t, const uint8_t *p, int *neg, int64_t *s, uint64_t *u) {
    *neg = 0;
    switch (t) {
    case GGUF_VT_UINT8:
        *u = p[0];
        break;
    case GGUF_VT_UINT16:
        *u = rd16(p);
        break;
    case GGUF_VT_UINT32:
        *u = rd32(p);
        break;
    case GGUF_VT_UINT64:
        *u = rd64(p);
        break;
    case GGUF_VT_INT8:
        *s = (int8_t)p[0];
        break;
    case GGUF_VT_INT16:
        *s = (int16_t)rd16(p);
        break;
    case GGUF_VT_INT32:
        *s = (int32_t)rd32(p);
        break;
    case GGUF_VT_INT64:
        *s = (int64_t)rd64(p);
        break;
    default:
        return 0;
    }
    if (t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64) {
        if (*s < 0)
            *neg = 1;
        else
            *u = (uint64_t)*s;
    }
    return 1;
}

static float f32_at(const uint8_t *p) {
    uint32_t b = rd32(p);
    float v;
    memcpy(&v, &b, 4);
    return v;
}

static double f64_at(const uint8_t *p) {
    uint64_t b = rd64(p);
    double v;
    memcpy(&v, &b, 8);
    return v;
}

static slm_status missing(const gguf_file *f, const char *key) {
    return slm_fail(SLM_ERR_FORMAT, "%s: missing key '%s'", f->name, key);
}

static slm_status wrong_type(const gguf_file *f, const gguf_kv *kv, const char *expected) {
    if (kv->type == GGUF_VT_ARRAY)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is an array of %s, expected %s", f->name,
                        show(kv->key).s, gguf_vtype_name(kv->arr_type), expected);
    return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", f->name,
                    show(kv->key).s, gguf_vtype_name(kv->type), expected);
}

static slm_status get_u32_kv(const gguf_file *f, const gguf_kv *kv, uint32_t *out) {
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (!int_at(kv->type, kv->data, &neg, &s, &u)) return wrong_type(f, kv, "an integer");
    if (neg)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is %" PRId64 ", expected a u32", f->name,
                        show(kv->key).s, s);
    if (u > UINT32_MAX)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is %" PRIu64 ", which does not fit a u32",
                        f->name, show(kv->key).s, u);
    *out = (uint32_t)u;
    return SLM_OK;
}

slm_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return missing(f, key);
    return get_u32_kv(f, kv, out);
}

slm_status gguf_get_u32_opt(const gguf_file *f, const char *key, uint32_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv ? get_u32_kv(f, kv, out) : SLM_OK;
}

slm_status gguf_get_i64_opt(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return SLM_OK;
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (!int_at(kv->type, kv->data, &neg, &s, &u)) return wrong_type(f, kv, "an integer");
    if (neg) {
        *out = s;
        return SLM_OK;
    }
    if (u > (uint64_t)INT64_MAX)
        return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is %" PRIu64 ", which does not fit an i64",
                        f->name, show(kv->key).s, u);
    *out = (int64_t)u;
    return SLM_OK;
}

static slm_status get_f32_kv(const gguf_file *f, const gguf_kv *kv, float *out) {
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (kv->type == GGUF_VT_FLOAT32) {
        *out = f32_at(kv->data);
        return SLM_OK;
    }
    if (kv->type == GGUF_VT_FLOAT64) {
        double d = f64_at(kv->data);
        /* A finite double beyond float range would silently become inf. */
        if (isfinite(d) && fabs(d) > 3.4028234663852886e38)
            return slm_fail(SLM_ERR_FORMAT, "%s: key '%s' is %g, outside the range of an f32",
                            f->name, show(kv->key).s, d);
        *out = (float)d;
        return SLM_OK;
    }
    if (int_at(kv->type, kv->data, &neg, &s, &u)) {
        *out = neg ? (float)s : (float)u;
        return SLM_OK;
    }
    return wrong_type(f, kv, "a number");
}

slm_status gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return missing(f, key);
    return get_f32_kv(f, kv, out);
}

slm_status gguf_get_f32_opt(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    return kv ? get_f32_kv(f, kv, out) : SLM_OK;
}

slm_status gguf_get_bool_opt(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return SLM_OK;
    if (kv->type == GGUF_VT_BOOL) {
        *out = kv->data[0] != 0;
        return SLM_OK;
    }
    /* Some writers store flags as integers: accept 0 and 1 only. */
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (int_at(kv->type, kv->data, &neg, &s, &u) && !neg && u <= 1) {
        *out = (int)u;
        return SLM_OK;
    }
    return wrong_type(f, kv, "a bool");
}

slm_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return missing(f, key);
    if (kv->type != GGUF_VT_STRING) return wrong_type(f, kv, "a string");
    *out = kv->str;
    return SLM_OK;
}

slm_status gguf_get_str_opt(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return SLM_OK;
    if (kv->type != GGUF_VT_STRING) return wrong_type(f, kv, "a string");
    *out = kv->str;
    return SLM_OK;
}

/* ---- array elements ---------------------------------------------------- */

static const uint8_t *elem_ptr(const gguf_kv *kv, uint64_t i) {
    if (kv->type != GGUF_VT_ARRAY || i >= kv->arr_len) return NULL;
    size_t sz = gguf_vtype_size(kv->arr_type);
    if (sz == 0) return NULL; /* strings: use kv->strs */
    return kv->data + i * sz;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = elem_ptr(kv, i);
    if (!p) return 0.0;
    if (kv->arr_type == GGUF_VT_FLOAT32) return f32_at(p);
    if (kv->arr_type == GGUF_VT_FLOAT64) return f64_at(p);
    if (kv->arr_type == GGUF_VT_BOOL) return p[0] ? 1.0 : 0.0;
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (!int_at(kv->arr_type, p, &neg, &s, &u)) return 0.0;
    return neg ? (double)s : (double)u;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    const uint8_t *p = elem_ptr(kv, i);
    if (!p) return 0;
    if (kv->arr_type == GGUF_VT_FLOAT32 || kv->arr_type == GGUF_VT_FLOAT64) {
        double d = kv->arr_type == GGUF_VT_FLOAT32 ? f32_at(p) : f64_at(p);
        /* Saturate: converting an out-of-range double to int64 is undefined. */
        if (d != d) return 0;
        if (d >= 9.2233720368547758e18) return INT64_MAX;
        if (d <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)d;
    }
    if (kv->arr_type == GGUF_VT_BOOL) return p[0] ? 1 : 0;
    int neg;
    int64_t s = 0;
    uint64_t u = 0;
    if (!int_at(kv->arr_type, p, &neg, &s, &u)) return 0;
    if (neg) return s;
    return u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)u;
}
