#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/mmap_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"

slm_status slm_map_file(const char *path, slm_mapped_file *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    /* O_NONBLOCK: a FIFO must not block the open before fstat refuses it */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return slm_fail(SLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return slm_fail(SLM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return slm_fail(SLM_ERR_IO, "%s: not a regular file", path);
    }
    out->fd = fd;
    out->size = (size_t)st.st_size;
    if (out->size == 0) return SLM_OK;
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(fd);
        out->fd = -1;
        return slm_fail(SLM_ERR_IO, "%s: cannot map %zu bytes: %s", path, out->size, strerror(e));
    }
    out->data = p;
    return SLM_OK;
}

void slm_unmap_file(slm_mapped_file *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
}

slm_status slm_read_file(const char *path, size_t max_size, char **out, size_t *size) {
    *out = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return slm_fail(SLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (n == cap) {
            if (cap >= max_size) {
                free(buf);
                fclose(f);
                return slm_fail(SLM_ERR_IO, "%s: larger than the limit of %zu bytes", path,
                                max_size);
            }
            size_t ncap = cap * 2 > max_size ? max_size : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return slm_fail(SLM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return slm_fail(SLM_ERR_IO, "%s: read error", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (size) *size = n;
    return SLM_OK;
}

slm_status slm_write_file_atomic(const char *path, const void *data, size_t size) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        slm_status st =
            slm_fail(SLM_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    const uint8_t *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            slm_status st = slm_fail(SLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return st;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        slm_status st = slm_fail(SLM_ERR_IO, "%s: cannot flush: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    if (rename(tmp, path) != 0) {
        slm_status st =
            slm_fail(SLM_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return SLM_OK;
}
