/* safetensors reader: every length, offset and shape checked before use. */
#include "format/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "base/mem.h"
#include "base/status.h"

struct st_file {
    char *name;
    cJSON *meta; /* the "__metadata__" object (detached), or NULL */
    size_t n;
    st_tensor *t;
    size_t *by_name; /* indices of t sorted by name */
};

static const struct {
    const char *name;
    size_t size;
} k_dtypes[ST_DTYPE_COUNT] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

size_t st_dtype_size(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].size : 0;
}

static int dtype_from(const char *s, st_dtype *out) {
    for (int i = 0; i < (int)ST_DTYPE_COUNT; i++)
        if (!strcmp(s, k_dtypes[i].name)) {
            *out = (st_dtype)i;
            return 1;
        }
    return 0;
}

static uint64_t rd_u64le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is an exact integer in [0, 2^53]. */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || floor(d) != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static const st_file *g_sort_file; /* qsort has no context argument */

static int cmp_name(const void *a, const void *b) {
    const st_tensor *t = g_sort_file->t;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static int cmp_offset(const void *a, const void *b) {
    const st_tensor *t = g_sort_file->t;
    const uint8_t *x = t[*(const size_t *)a].data, *y = t[*(const size_t *)b].data;
    return x < y ? -1 : x > y;
}

/* Shortened, printable tensor name for messages. */
static void show_name(const char *s, char *out, size_t cap) {
    size_t i = 0;
    for (; s[i] && i + 4 < cap; i++) out[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (s[i]) {
        memcpy(out + (i < cap - 4 ? i : cap - 4), "...", 4);
        return;
    }
    out[i] = '\0';
}

static slm_status parse_entry(const char *path, const cJSON *e, const uint8_t *buf,
                              uint64_t buf_len, st_tensor *t) {
    char nm[80];
    show_name(e->string, nm, sizeof nm);
    if (strlen(e->string) > ST_MAX_NAME)
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor name '%s' longer than %u bytes", path, nm,
                        ST_MAX_NAME);
    if (!cJSON_IsObject(e))
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s': expected an object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !dtype_from(dt->valuestring, &t->dtype))
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s': missing or unknown \"dtype\"", path, nm);
    if (!cJSON_IsArray(sh))
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s': \"shape\" must be an array", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd < 0 || (unsigned)nd > ST_MAX_DIMS)
        return slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s': more than %u dimensions", path, nm,
                        ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t n = 1;
    const cJSON *d = NULL;
    int k = 0;
    cJSON_ArrayForEach(d, sh) {
        if (!json_u64(d, &t->shape[k]) || !slm_mul_ok(n, t->shape[k], &n))
            return slm_fail(SLM_ERR_FORMAT,
                            "%s: tensor '%s': shape[%d] is not a non-negative integer (or the "
                            "element count overflows)",
                            path, nm, k);
        k++;
    }
    t->n_elems = n;
    uint64_t b = 0, en = 0, want = 0;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_u64(off->child, &b) ||
        !json_u64(off->child->next, &en))
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", path,
                        nm);
    if (en < b || en > buf_len)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu] out of range (data buffer "
                        "is %llu bytes)",
                        path, nm, (unsigned long long)b, (unsigned long long)en,
                        (unsigned long long)buf_len);
    if (!slm_mul_ok(n, st_dtype_size(t->dtype), &want) || want != en - b)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: tensor '%s': %s with %llu elements needs %llu bytes, data_offsets "
                        "give %llu",
                        path, nm, st_dtype_name(t->dtype), (unsigned long long)n,
                        (unsigned long long)want, (unsigned long long)(en - b));
    t->data = buf + b;
    t->nbytes = en - b;
    t->name = slm_strndup(e->string, strlen(e->string));
    if (!t->name) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    return SLM_OK;
}

static slm_status parse(const uint8_t *data, size_t size, const char *path, st_file *f) {
    if (size < 8)
        return slm_fail(SLM_ERR_FORMAT, "%s: not a safetensors file (%zu bytes, no header length)",
                        path, size);
    uint64_t hl = rd_u64le(data);
    if (hl < 2 || hl > ST_MAX_HEADER || hl > size - 8)
        return slm_fail(SLM_ERR_FORMAT,
                        "%s: safetensors header length %llu is out of range (file has %zu bytes "
                        "after it, limit %u)",
                        path, (unsigned long long)hl, size - 8, ST_MAX_HEADER);
    const char *h = (const char *)data + 8;
    if (h[0] != '{')
        return slm_fail(SLM_ERR_FORMAT, "%s: safetensors header does not start with '{'", path);
    if (memchr(h, '\0', (size_t)hl))
        return slm_fail(SLM_ERR_FORMAT, "%s: safetensors header contains a NUL byte", path);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hl, &end, 0);
    if (!root)
        return slm_fail(SLM_ERR_FORMAT, "%s: safetensors header is not valid JSON (near byte %lld)",
                        path, (long long)((end ? end : h) - h));
    slm_status st = SLM_OK;
    for (const char *p = end; p < h + hl; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = slm_fail(SLM_ERR_FORMAT, "%s: safetensors header has data after the JSON object",
                          path);
            goto cleanup;
        }
    if (!cJSON_IsObject(root)) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: safetensors header is not a JSON object", path);
        goto cleanup;
    }
    const uint8_t *buf = data + 8 + hl;
    uint64_t buf_len = (uint64_t)size - 8 - hl;
    size_t n = 0;
    const cJSON *e = NULL;
    cJSON_ArrayForEach(e, root) {
        if (!e->string) {
            st = slm_fail(SLM_ERR_FORMAT, "%s: safetensors header entry without a name", path);
            goto cleanup;
        }
        if (!strcmp(e->string, "__metadata__")) continue;
        n++;
    }
    if (n > ST_MAX_TENSORS) {
        st = slm_fail(SLM_ERR_FORMAT, "%s: more than %u tensors", path, ST_MAX_TENSORS);
        goto cleanup;
    }
    f->t = slm_calloc(n, sizeof *f->t);
    f->by_name = slm_calloc(n, sizeof *f->by_name);
    if (!f->t || !f->by_name) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    cJSON *meta = NULL;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) {
            if (meta) {
                st = slm_fail(SLM_ERR_FORMAT, "%s: \"__metadata__\" appears twice", path);
                goto cleanup;
            }
            if (!cJSON_IsObject(e)) {
                st = slm_fail(SLM_ERR_FORMAT, "%s: \"__metadata__\" must be an object", path);
                goto cleanup;
            }
            const cJSON *m = NULL;
            cJSON_ArrayForEach(m, e) {
                if (!cJSON_IsString(m)) {
                    st = slm_fail(SLM_ERR_FORMAT, "%s: \"__metadata__\" values must be strings",
                                  path);
                    goto cleanup;
                }
            }
            meta = (cJSON *)e;
            continue;
        }
        SLM_CHECK(parse_entry(path, e, buf, buf_len, &f->t[f->n]));
        f->by_name[f->n] = f->n;
        f->n++;
    }
    if (meta) f->meta = cJSON_DetachItemViaPointer(root, meta);

    g_sort_file = f;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_name);
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->t[f->by_name[i]].name, f->t[f->by_name[i - 1]].name)) {
            char nm[80];
            show_name(f->t[f->by_name[i]].name, nm, sizeof nm);
            st = slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s' appears twice", path, nm);
            goto cleanup;
        }
    /* the data buffer, in offset order: no overlap, no hole */
    size_t *order = slm_calloc(f->n, sizeof *order);
    if (!order) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < f->n; i++) order[i] = i;
    qsort(order, f->n, sizeof *order, cmp_offset);
    const uint8_t *at = buf;
    for (size_t i = 0; i < f->n && st == SLM_OK; i++) {
        const st_tensor *t = &f->t[order[i]];
        char nm[80];
        show_name(t->name, nm, sizeof nm);
        if (t->data < at)
            st = slm_fail(SLM_ERR_FORMAT, "%s: tensor '%s' overlaps another tensor's data", path,
                          nm);
        else if (t->data > at)
            st = slm_fail(SLM_ERR_FORMAT,
                          "%s: the data buffer has a hole before tensor '%s' (offset %llu)", path,
                          nm, (unsigned long long)(t->data - buf));
        at = t->data + t->nbytes;
    }
    free(order);
    if (st == SLM_OK && at != buf + buf_len)
        st = slm_fail(SLM_ERR_FORMAT,
                      "%s: %llu bytes after the last tensor are not part of any tensor", path,
                      (unsigned long long)(buf + buf_len - at));
cleanup:
    cJSON_Delete(root);
    return st;
}

slm_status st_open_memory(const uint8_t *data, size_t size, const char *name, st_file **out) {
    if (!out) return slm_fail(SLM_ERR_INVALID_ARG, "st_open_memory: out is NULL");
    *out = NULL;
    if (!data && size) return slm_fail(SLM_ERR_INVALID_ARG, "st_open_memory: no data");
    const char *path = name ? name : "safetensors";
    st_file *f = slm_calloc(1, sizeof *f);
    if (!f) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    f->name = slm_strndup(path, strlen(path));
    slm_status st = f->name ? parse(data, size, path, f) : slm_fail(SLM_ERR_NOMEM, "out of memory");
    if (st != SLM_OK) {
        st_close(f);
        return st;
    }
    *out = f;
    return SLM_OK;
}

void st_close(st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->by_name);
    cJSON_Delete(f->meta);
    free(f->name);
    free(f);
}

size_t st_n_tensors(const st_file *f) {
    return f ? f->n : 0;
}

const st_tensor *st_tensor_at(const st_file *f, size_t i) {
    return f && i < f->n ? &f->t[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key) {
    if (!f || !f->meta || !key) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

slm_status st_to_f32(const st_tensor *t, float *out, uint64_t n) {
    if (n > t->n_elems) return slm_fail(SLM_ERR_INVALID_ARG, "st_to_f32: too many elements");
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                         (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&out[i], &u, 4);
        }
        return SLM_OK;
    case ST_F16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = slm_fp16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return SLM_OK;
    case ST_BF16:
        for (uint64_t i = 0; i < n; i++)
            out[i] = slm_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        return SLM_OK;
    default:
        return slm_fail(SLM_ERR_UNSUPPORTED, "tensor '%s' has dtype %s; expected F32, F16 or BF16",
                        t->name, st_dtype_name(t->dtype));
    }
}
