/* safetensors reader (Hugging Face), validated, over bytes the caller keeps
 * mapped.
 *
 * Layout: u64 little-endian N, then N bytes of UTF-8 JSON (an object, may be
 * padded with trailing spaces), then the data buffer. The JSON maps each
 * tensor name to {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets":
 * [begin, end]} (offsets relative to the data buffer); the optional key
 * "__metadata__" maps strings to strings. Checked: N within the file and
 * ST_MAX_HEADER; the header parses, is an object, has no duplicate names;
 * every dtype is known, every shape a list of non-negative integers whose
 * product times the element size is end - begin without overflow; offsets lie
 * in the buffer, do not overlap and cover it with no holes (as the reference
 * implementation requires). Data are little-endian and may be unaligned. */
#ifndef SLM_FORMAT_SAFETENSORS_H
#define SLM_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define ST_MAX_HEADER (100u << 20) /* bytes of JSON header */
#define ST_MAX_DIMS 8u
#define ST_MAX_TENSORS 65536u
#define ST_MAX_NAME 1024u

typedef enum st_dtype {
    ST_BOOL = 0,
    ST_U8,
    ST_I8,
    ST_F8_E5M2,
    ST_F8_E4M3,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

typedef struct st_tensor {
    char *name; /* NUL-terminated, owned by the file */
    st_dtype dtype;
    uint32_t n_dims; /* 0 = scalar */
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n_elems;
    const uint8_t *data; /* inside the caller's bytes; may be unaligned */
    uint64_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Parses `size` bytes at `data` (which must outlive the result). `name` is
 * used in messages. SLM_ERR_FORMAT naming the file and the problem. */
slm_status st_open_memory(const uint8_t *data, size_t size, const char *name, st_file **out);
void st_close(st_file *f);

size_t st_n_tensors(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, size_t i);
const st_tensor *st_find(const st_file *f, const char *name);
/* "__metadata__"[key], or NULL. */
const char *st_metadata(const st_file *f, const char *key);

const char *st_dtype_name(st_dtype t);
/* Bytes per element (1, 2, 4 or 8). */
size_t st_dtype_size(st_dtype t);

/* Converts a F32, F16 or BF16 tensor's elements [0, n) to f32 (n <= n_elems).
 * SLM_ERR_UNSUPPORTED for other dtypes. */
slm_status st_to_f32(const st_tensor *t, float *out, uint64_t n);

#endif
