/* GGUF v2/v3 reader (memory-mapped, zero-copy, fully validated) and writer.
 *
 * Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * then n_kv key/value pairs, n_tensors tensor infos, padding to the alignment
 * (general.alignment, default 32), then tensor data. Strings are u64 length +
 * bytes (no NUL). Every size and offset is checked before use. */
#ifndef SLM_FORMAT_GGUF_H
#define SLM_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

/* Named limits: anything beyond them is treated as a malformed file. */
#define GGUF_MAX_KV 65536u
#define GGUF_MAX_TENSORS 65536u
#define GGUF_MAX_DIMS 4u
#define GGUF_MAX_NAME 256u        /* tensor name length */
#define GGUF_MAX_KEY 65536u       /* key length */
#define GGUF_MAX_ARRAY (1u << 26) /* elements in one array */
#define GGUF_DEFAULT_ALIGNMENT 32u

typedef enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT
} gguf_vtype;

/* A string inside the mapping: not NUL-terminated. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    gguf_vtype type;     /* value type */
    gguf_vtype arr_type; /* element type when type == ARRAY */
    uint64_t arr_len;    /* element count when type == ARRAY */
    const uint8_t *data; /* scalar: the value's bytes; array: first element (unaligned) */
    gguf_str str;        /* type == STRING: the value */
    gguf_str *strs;      /* type == ARRAY of STRING: arr_len entries (owned by the file) */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the row length (contiguous); unused dims are 1 */
    uint32_t type;              /* ggml type id (see quant/types.h) */
    uint64_t offset;            /* relative to the data section */
    uint64_t nbytes;
    const uint8_t *data; /* inside the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Opens and validates a file. Errors name the file, the offset or key, and
 * what was expected. */
slm_status gguf_open(const char *path, gguf_file **out);
/* Same, over a caller's buffer (kept, not copied: it must outlive the file).
 * `name` is used in messages. */
slm_status gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out);
void gguf_close(gguf_file *f);

const char *gguf_path(const gguf_file *f);
uint32_t gguf_version(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
int gguf_fd(const gguf_file *f); /* -1 for memory files */
const uint8_t *gguf_base(const gguf_file *f);

uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);

uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Typed getters. Return SLM_ERR_FORMAT (naming the key) when the key is present
 * with a type that cannot represent the request, SLM_ERR_FORMAT "missing" when
 * absent and required; the *_opt variants leave *out unchanged when absent. Any
 * integer type converts to another when the value fits. */
slm_status gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
slm_status gguf_get_u32_opt(const gguf_file *f, const char *key, uint32_t *out);
slm_status gguf_get_i64_opt(const gguf_file *f, const char *key, int64_t *out);
slm_status gguf_get_f32(const gguf_file *f, const char *key, float *out);
slm_status gguf_get_f32_opt(const gguf_file *f, const char *key, float *out);
slm_status gguf_get_bool_opt(const gguf_file *f, const char *key, int *out);
slm_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
slm_status gguf_get_str_opt(const gguf_file *f, const char *key, gguf_str *out);

/* Element i of a numeric array as double/int64 (caller checks the bounds). */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

const char *gguf_vtype_name(gguf_vtype t);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY and unknown types. */
size_t gguf_vtype_size(gguf_vtype t);
int gguf_str_eq(gguf_str s, const char *cstr);

/* ---- Writer -------------------------------------------------------------
 * Collects metadata and tensors in memory-order, then writes a v3 file to a
 * temporary path and renames it into place. Tensor data is copied when added
 * (or borrowed with gguf_writer_add_tensor_ref, kept until write). */
typedef struct gguf_writer gguf_writer;

slm_status gguf_writer_new(gguf_writer **out);
void gguf_writer_free(gguf_writer *w);
slm_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
slm_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
slm_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
slm_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
slm_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
slm_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Array of numeric elements of type `t` (element bytes copied). */
slm_status gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_vtype t, const void *data,
                               uint64_t n);
slm_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                                   uint64_t n);
/* Copies every key/value of `src` except those for which skip(key) is true. */
slm_status gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src,
                               int (*skip)(const char *key, void *user), void *user);
/* ne[0] is the row length. Data size must equal the type's size for ne. */
slm_status gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                  const uint64_t *ne, const void *data, uint64_t nbytes);
slm_status gguf_writer_add_tensor_ref(gguf_writer *w, const char *name, uint32_t type,
                                      uint32_t n_dims, const uint64_t *ne, const void *data,
                                      uint64_t nbytes);
slm_status gguf_writer_write(gguf_writer *w, const char *path);
/* Serializes into a malloc'd buffer (for tests and fuzz seeds). */
slm_status gguf_writer_to_memory(gguf_writer *w, uint8_t **out, size_t *size);

#endif
