/* A whole file in memory, read-only: mapped from the page cache, or copied
 * into anonymous memory in 2 MiB pages (slm_load_file). */
#ifndef SLM_BASE_MMAP_FILE_H
#define SLM_BASE_MMAP_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    int fd;
    int copied; /* 1: data is an anonymous copy (slm_load_file) of size rounded up to 2 MiB */
} slm_mapped_file;

/* How slm_load_file holds a file. */
typedef enum slm_file_mode {
    SLM_FILE_AUTO = 0, /* COPY where transparent huge pages are on and the file takes under
                          half of the available memory, else MAP */
    SLM_FILE_MAP = 1,  /* mmap (MAP_PRIVATE): pages come and go with the page cache */
    SLM_FILE_COPY = 2, /* read into anonymous memory aligned to 2 MiB and advised for huge
                          pages, then made read-only */
} slm_file_mode;

/* Maps `path` read-only (MAP_PRIVATE). The descriptor stays open so that the
 * same file object can be hashed or re-read without a path lookup. */
slm_status slm_map_file(const char *path, slm_mapped_file *out);
void slm_unmap_file(slm_mapped_file *m);

/* Holds `path` as `mode` says (AUTO resolved here; slm_file_copied tells
 * which). A copy is read with up to 4 threads; the bytes in memory are then
 * what later changes to the file cannot reach. slm_unmap_file releases
 * either. */
slm_status slm_load_file(const char *path, slm_file_mode mode, slm_mapped_file *out);
static inline int slm_file_copied(const slm_mapped_file *m) {
    return m->copied;
}

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
slm_status slm_read_file(const char *path, size_t max_size, char **out, size_t *size);

/* Writes `data` to `path` through a temporary file renamed into place. */
slm_status slm_write_file_atomic(const char *path, const void *data, size_t size);

#endif
