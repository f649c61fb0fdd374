#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "../../src/tokenizer/unicode.h"

int cli_fail(const char *what, slm_status st) {
    const char *msg = slm_last_error();
    fprintf(stderr, "slm: %s: %s\n", what, msg && *msg ? msg : slm_status_str(st));
    return CLI_ERROR;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "slm %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'slm %s --help')\n", cmd);
    return CLI_USAGE;
}

int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return cli_usage_error(cmd, "option %s: expected an integer in [%ld, %ld], got '%s'", opt,
                               lo, hi, s ? s : "");
    *out = v;
    return CLI_OK;
}

int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out) {
    char *end = NULL;
    errno = 0;
    double v = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !(v >= lo && v <= hi))
        return cli_usage_error(cmd, "option %s: expected a number in [%g, %g], got '%s'", opt, lo,
                               hi, s ? s : "");
    *out = v;
    return CLI_OK;
}

static int readable(const char *p) {
    return access(p, R_OK) == 0;
}

const char *cli_default_model(const char *given, char *buf, size_t cap) {
    if (given && *given) return given;
    const char *env = getenv("SLM_MODEL");
    if (env && *env) return env;
    const char *rel = "../shared/models/stories260K.gguf";
    if (readable(rel)) {
        snprintf(buf, cap, "%s", rel);
        return buf;
    }
    /* Beside the executable: build/slm -> <repo>/../shared */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, cap, "%s/../../shared/models/stories260K.gguf", exe);
            if (readable(buf)) return buf;
        }
    }
    fprintf(stderr,
            "slm: no model given. Pass -m MODEL.gguf or set SLM_MODEL. Any llama-family GGUF "
            "works (Llama 2/3, TinyLlama, SmolLM, Qwen2.5, Mistral); a tiny one to start with is "
            "stories260K.gguf, llama.cpp's test model (Hugging Face repository ggml-org/models, "
            "file tinyllamas/stories260K.gguf).\n");
    return NULL;
}

int cli_build_config(const char *cmd, const char *config_arg, const char *const *frags, int n_frags,
                     slm_config **out) {
    slm_config *cfg = NULL;
    slm_status st = slm_config_new(&cfg);
    if (st != SLM_OK) return cli_fail(cmd, st);
    if (config_arg) {
        st = slm_config_apply(cfg, config_arg);
        if (st != SLM_OK) {
            slm_config_free(cfg);
            return cli_fail("--config", st);
        }
    }
    for (int i = 0; i < n_frags; i++) {
        st = slm_config_apply_json(cfg, frags[i], strlen(frags[i]));
        if (st != SLM_OK) {
            slm_config_free(cfg);
            return cli_fail(cmd, st);
        }
    }
    *out = cfg;
    return CLI_OK;
}

int cli_frag(cli_frags *f, const char *key, const char *raw) {
    size_t kl = strlen(key), rl = strlen(raw);
    if (f->n >= 32 || kl + rl + 6 > sizeof f->items[0]) return CLI_USAGE;
    char *d = f->items[f->n++];
    d[0] = '{';
    d[1] = '"';
    memcpy(d + 2, key, kl);
    memcpy(d + 2 + kl, "\":", 2);
    memcpy(d + 4 + kl, raw, rl);
    d[4 + kl + rl] = '}';
    d[5 + kl + rl] = '\0';
    return CLI_OK;
}

int cli_frag_string(cli_frags *f, const char *key, const char *value) {
    char esc[480];
    size_t at = 0;
    for (const char *p = value; *p && at + 8 < sizeof esc; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            esc[at++] = '\\';
            esc[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(esc + at, sizeof esc - at, "\\u%04x", c);
        } else {
            esc[at++] = (char)c;
        }
    }
    esc[at] = '\0';
    char raw[512];
    snprintf(raw, sizeof raw, "\"%s\"", esc);
    return cli_frag(f, key, raw);
}

char *cli_read_text(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "slm: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || err) {
        fprintf(stderr, "slm: %s: read error\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int cli_number_option(const char *cmd, int argc, char **argv, int *i, cli_frags *fr) {
    static const struct {
        const char *s, *l, *key;
        int integer;
        double lo, hi;
    } num[] = {
        {"-n", "--max-tokens", "max_tokens", 1, 0, 1 << 24},
        {NULL, "--temp", "temperature", 0, 0, 100},
        {NULL, "--top-k", "top_k", 1, 0, 1 << 24},
        {NULL, "--top-p", "top_p", 0, 0, 1},
        {NULL, "--min-p", "min_p", 0, 0, 1},
        {NULL, "--repeat-penalty", "repeat_penalty", 0, 0.01, 100},
        {NULL, "--seed", "seed", 1, 0, 9007199254740991.0},
        {"-t", "--threads", "threads", 1, 0, 256},
        {"-c", "--ctx", "n_ctx", 1, 0, 1 << 20},
        {NULL, "--keep", "n_keep", 1, -1, 1 << 20},
    };
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        if (!((num[k].s && !strcmp(a, num[k].s)) || !strcmp(a, num[k].l))) continue;
        if (*i + 1 >= argc) return cli_usage_error(cmd, "option %s needs a value", a);
        const char *v = argv[++*i];
        double d = 0;
        if (num[k].integer) {
            long l = 0;
            if (cli_parse_int(cmd, a, v, (long)num[k].lo, (long)num[k].hi, &l)) return CLI_USAGE;
            d = (double)l;
        } else if (cli_parse_float(cmd, a, v, num[k].lo, num[k].hi, &d)) {
            return CLI_USAGE;
        }
        char raw[64];
        snprintf(raw, sizeof raw, "%.17g", d);
        if (cli_frag(fr, num[k].key, raw)) return cli_usage_error(cmd, "too many options");
        return CLI_OK;
    }
    return -1;
}

static int write_all(int fd, const void *data, size_t n) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_write_output(const char *path, const void *data, size_t n) {
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode)) {
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write_all(fd, data, n) != 0) {
            fprintf(stderr, "slm: cannot write %s: %s\n", path, strerror(errno));
            if (fd >= 0) close(fd);
            return CLI_ERROR;
        }
        close(fd);
        return CLI_OK;
    }
    /* Through a symlink, replace its target, not the link. */
    char target[PATH_MAX];
    if (!exists || !realpath(path, target)) snprintf(target, sizeof target, "%s", path);
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", target);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "slm: cannot write %s: %s\n", path, strerror(errno));
        return CLI_ERROR;
    }
    int ok = write_all(fd, data, n) == 0 && fchmod(fd, exists ? st.st_mode & 07777 : 0644) == 0;
    if (close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, target) != 0) {
        fprintf(stderr, "slm: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return CLI_ERROR;
    }
    return CLI_OK;
}

char *cli_utf8_clean(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = tok_utf8_next((const uint8_t *)s + i, n - i, &cp);
        if (cp != TOK_CP_INVALID && cp != 0) { /* NUL counts as invalid too */
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            o += 3;
            i += 1;
        }
    }
    out[o] = '\0';
    return out;
}
