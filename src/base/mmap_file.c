#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "base/mmap_file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/status.h"

/* Opens `path` for reading and checks that it is a regular file. */
static slm_status open_regular(const char *path, int *fd_out, size_t *size_out) {
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
    *fd_out = fd;
    *size_out = (size_t)st.st_size;
    return SLM_OK;
}

/* Maps the file open in out->fd (out->size bytes); closes it on failure. */
static slm_status map_open(const char *path, slm_mapped_file *out) {
    if (out->size == 0) return SLM_OK;
    void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, out->fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        close(out->fd);
        out->fd = -1;
        return slm_fail(SLM_ERR_IO, "%s: cannot map %zu bytes: %s", path, out->size, strerror(e));
    }
    out->data = p;
    return SLM_OK;
}

slm_status slm_map_file(const char *path, slm_mapped_file *out) {
    return slm_load_file(path, SLM_FILE_MAP, out);
}

/* ---- copies in 2 MiB pages ---------------------------------------------------- */

#define HUGE_BYTES ((size_t)2 << 20)
#define HUGE_ROUND(n) (((n) + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1))
#define COPY_CHUNK ((size_t)8 << 20)
#define COPY_MAX_THREADS 4

/* Whether the kernel gives anonymous memory huge pages on request. */
static int thp_available(void) {
    char buf[128] = {0};
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

/* MemAvailable in bytes, 0 when unknown. */
static size_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

typedef struct copy_part {
    int fd;
    uint8_t *dst;
    size_t off, end;
    int err; /* errno, or -1: the file ended early */
} copy_part;

static void *copy_part_run(void *arg) {
    copy_part *c = arg;
    size_t off = c->off;
    while (off < c->end) {
        size_t n = c->end - off < COPY_CHUNK ? c->end - off : COPY_CHUNK;
        ssize_t r = pread(c->fd, c->dst + off, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            c->err = r < 0 ? errno : -1;
            return NULL;
        }
        off += (size_t)r;
    }
    return NULL;
}

/* Reads the whole file into a 2 MiB-aligned anonymous region with huge
 * pages advised, in up to COPY_MAX_THREADS parts of whole huge pages (each
 * thread faults in its own pages), then makes it read-only. On failure
 * nothing is left allocated and out is unchanged. */
static slm_status copy_file(const char *path, slm_mapped_file *out) {
    const size_t len = HUGE_ROUND(out->size);
    uint8_t *raw =
        mmap(NULL, len + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return slm_fail(SLM_ERR_NOMEM, "%s: cannot allocate %zu MiB to copy it into: %s", path,
                        len >> 20, strerror(errno));
    uint8_t *a = (uint8_t *)(((uintptr_t)raw + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    /* keep exactly [a, a + len) */
    if (a > raw) munmap(raw, (size_t)(a - raw));
    if (raw + len + HUGE_BYTES > a + len)
        munmap(a + len, (size_t)(raw + len + HUGE_BYTES - (a + len)));
    (void)madvise(a, len, MADV_HUGEPAGE); /* advice: without it the copy still works */

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t pages = len / HUGE_BYTES, nt = out->size / ((size_t)64 << 20) + 1;
    if (nt > COPY_MAX_THREADS) nt = COPY_MAX_THREADS;
    if (ncpu > 0 && nt > (size_t)ncpu) nt = (size_t)ncpu;
    if (nt > pages) nt = pages;
    copy_part parts[COPY_MAX_THREADS];
    pthread_t th[COPY_MAX_THREADS];
    int started[COPY_MAX_THREADS] = {0};
    for (size_t i = 0; i < nt; i++) {
        size_t p0 = pages * i / nt, p1 = pages * (i + 1) / nt;
        size_t o0 = p0 * HUGE_BYTES, o1 = p1 * HUGE_BYTES;
        if (o0 > out->size) o0 = out->size;
        if (o1 > out->size || i == nt - 1) o1 = out->size;
        parts[i] = (copy_part){out->fd, a, o0, o1, 0};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, copy_part_run, &parts[i]) == 0;
    }
    copy_part_run(&parts[0]);
    for (size_t i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            copy_part_run(&parts[i]); /* no thread: read it here */
    }
    for (size_t i = 0; i < nt; i++)
        if (parts[i].err) {
            munmap(a, len);
            return slm_fail(SLM_ERR_IO, "%s: %s while copying it into memory", path,
                            parts[i].err < 0 ? "the file ended early (changed while read?)"
                                             : strerror(parts[i].err));
        }
    if (mprotect(a, len, PROT_READ) != 0) {
        const int e = errno;
        munmap(a, len);
        return slm_fail(SLM_ERR_IO, "%s: cannot make the copy read-only: %s", path, strerror(e));
    }
    out->data = a;
    out->copied = 1;
    return SLM_OK;
}

slm_status slm_load_file(const char *path, slm_file_mode mode, slm_mapped_file *out) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = -1;
    SLM_TRY(open_regular(path, &fd, &out->size));
    out->fd = fd;
    if (out->size == 0 || mode == SLM_FILE_MAP ||
        (mode == SLM_FILE_AUTO && (!thp_available() || out->size > mem_available() / 2)))
        return map_open(path, out);
    slm_status st = copy_file(path, out);
    if (st == SLM_OK || mode == SLM_FILE_COPY) {
        if (st != SLM_OK) slm_unmap_file(out);
        return st;
    }
    slm_clear_error(); /* AUTO: a copy that failed is no error while mapping works */
    return map_open(path, out);
}

void slm_unmap_file(slm_mapped_file *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->copied ? HUGE_ROUND(m->size) : m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
    m->copied = 0;
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
