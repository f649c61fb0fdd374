/* Read-only memory mapping of a whole file. */
#ifndef SLM_BASE_MMAP_FILE_H
#define SLM_BASE_MMAP_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct slm_mapped_file {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
    int fd;
} slm_mapped_file;

/* Maps `path` read-only (MAP_PRIVATE). The descriptor stays open so that the
 * same file object can be hashed or re-read without a path lookup. */
slm_status slm_map_file(const char *path, slm_mapped_file *out);
void slm_unmap_file(slm_mapped_file *m);

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
slm_status slm_read_file(const char *path, size_t max_size, char **out, size_t *size);

/* Writes `data` to `path` through a temporary file renamed into place. */
slm_status slm_write_file_atomic(const char *path, const void *data, size_t size);

#endif
