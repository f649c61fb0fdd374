/* Signing a file and checking a file (or the bytes about to be used) against
 * its detached signature FILE.sig. */
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mmap_file.h"
#include "base/status.h"
#include "trust/keys.h"
#include "trust/trust.h"

#define FAIL_CHECK(path, check, ...) fail_check(path, check, __VA_ARGS__)

static slm_status fail_check(const char *path, const char *check, const char *fmt, ...)
    SLM_PRINTF(3, 4);
static slm_status fail_check(const char *path, const char *check, const char *fmt, ...) {
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return slm_fail(SLM_ERR_SIGNATURE, "%s: signature check failed: %s: %s", path, check, detail);
}

/* path + suffix, malloc'd. */
static char *concat(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

/* Reads FILE.sig: a missing file is "missing signature", an oversized or
 * unreadable one is reported as such. */
static slm_status read_sig(const char *path, const char *sig_path, slm_sig *sig) {
    int fd = open(sig_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return FAIL_CHECK(path, "missing signature",
                              "%s does not exist (sign the file with "
                              "'slm sign')",
                              sig_path);
        return slm_fail(SLM_ERR_IO, "%s: cannot open: %s", sig_path, strerror(errno));
    }
    char buf[SLM_TRUST_MAX_SIG_FILE + 1];
    size_t n = 0;
    struct stat sb;
    slm_status st = SLM_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = slm_fail(SLM_ERR_IO, "%s: not a regular file", sig_path);
        goto done;
    }
    for (;;) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = slm_fail(SLM_ERR_IO, "%s: read error: %s", sig_path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
        if (n == sizeof buf) break;
    }
    st = slm_sig_parse(buf, n, sig_path, sig);
    if (st != SLM_OK) slm_fail_prefix(st, "%s: signature check failed", path);
done:
    close(fd);
    return st;
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a > b && !strcmp(s + a - b, suf);
}

/* Finds the key with `key_id` among the .pub files of `dir`. */
static slm_status find_trusted(const char *path, const char *dir, const uint8_t *key_id,
                               slm_pubkey *out) {
    char id_hex[SLM_KEY_ID_HEX];
    slm_trust_hex(key_id, SLM_TRUST_KEY_ID_BYTES, id_hex);
    DIR *d = opendir(dir);
    if (!d)
        return slm_fail(SLM_ERR_IO, "%s: signature check failed: trust dir %s: cannot open: %s",
                        path, dir, strerror(errno));
    unsigned seen = 0;
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".pub")) continue;
        if (++seen > SLM_TRUST_MAX_KEYS) {
            slm_log(SLM_LOG_WARN, "trust dir %s: more than %u keys; the rest are ignored", dir,
                    SLM_TRUST_MAX_KEYS);
            break;
        }
        char *kp = malloc(strlen(dir) + strlen(e->d_name) + 2);
        if (!kp) {
            closedir(d);
            return slm_fail(SLM_ERR_NOMEM, "out of memory");
        }
        sprintf(kp, "%s/%s", dir, e->d_name);
        slm_pubkey k;
        if (slm_pubkey_read(kp, &k) != SLM_OK) {
            slm_log(SLM_LOG_WARN, "trust dir: skipping %s", slm_last_error());
        } else if (sodium_memcmp(k.key_id, key_id, SLM_TRUST_KEY_ID_BYTES) == 0) {
            *out = k;
            found = 1;
        }
        free(kp);
    }
    closedir(d);
    slm_clear_error();
    if (!found)
        return FAIL_CHECK(path, "unknown key",
                          "signed by key %s, which is not among the trusted keys in %s", id_hex,
                          dir);
    return SLM_OK;
}

slm_status slm_trust_verify_bytes(const char *path, const uint8_t *data, size_t n,
                                  const char *pub_path, const char *trust_dir, slm_sig *sig_out) {
    if (!path || (!data && n) || (!pub_path == !trust_dir))
        return slm_fail(SLM_ERR_INVALID_ARG,
                        "slm_trust_verify_bytes: need a path and exactly one of a public key "
                        "and a trust dir");
    SLM_TRY(slm_trust_init());
    if (trust_dir && !*trust_dir)
        return slm_fail(SLM_ERR_CONFIG,
                        "%s: a signature is required but no trust_dir is configured", path);
    char *sig_path = concat(path, ".sig");
    if (!sig_path) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    slm_sig sig;
    slm_pubkey key;
    char id_hex[SLM_KEY_ID_HEX];
    uint8_t hash[SLM_TRUST_HASH_BYTES];
    uint8_t header[SLM_TRUST_MAX_SIG_FILE];
    slm_status st = read_sig(path, sig_path, &sig);
    if (st != SLM_OK) goto done;
    slm_trust_hex(sig.key_id, sizeof sig.key_id, id_hex);
    if (pub_path) {
        st = slm_pubkey_read(pub_path, &key);
        if (st != SLM_OK) goto done;
        if (sodium_memcmp(key.key_id, sig.key_id, sizeof sig.key_id) != 0) {
            char want[SLM_KEY_ID_HEX];
            slm_trust_hex(key.key_id, sizeof key.key_id, want);
            st = FAIL_CHECK(path, "unknown key", "signed by key %s, not by %s (key %s)", id_hex,
                            pub_path, want);
            goto done;
        }
    } else {
        st = find_trusted(path, trust_dir, sig.key_id, &key);
        if (st != SLM_OK) goto done;
    }
    /* The header bytes are re-read from the parsed copy: build them again
     * exactly as signed (the parser only accepts the canonical form). */
    int hl = snprintf((char *)header, sizeof header,
                      "slm-signature v1\nalgorithm: " SLM_TRUST_ALGORITHM
                      "\nfile-size: %llu\nfile-hash: ",
                      (unsigned long long)sig.file_size);
    char hex[2 * SLM_TRUST_HASH_BYTES + 1];
    slm_trust_hex(sig.file_hash, sizeof sig.file_hash, hex);
    hl += snprintf((char *)header + hl, sizeof header - (size_t)hl,
                   "%s\nkey-id: %s\ncreated: %lld\ncomment: %s\n", hex, id_hex,
                   (long long)sig.created, sig.comment);
    if (hl < 0 || (size_t)hl != sig.header_len) {
        st = slm_fail(SLM_ERR_INTERNAL, "%s: signature header did not round-trip", sig_path);
        goto done;
    }
    if (crypto_sign_verify_detached(sig.signature, header, (unsigned long long)hl, key.pk) != 0) {
        st = FAIL_CHECK(path, "bad signature",
                        "%s is not a valid signature by key %s (the signature file was altered "
                        "or made with another key)",
                        sig_path, id_hex);
        goto done;
    }
    if (sig.file_size != (uint64_t)n) {
        st = FAIL_CHECK(path, "size mismatch",
                        "the file is %zu bytes but key %s signed %llu bytes (truncated, extended "
                        "or not the signed file)",
                        n, id_hex, (unsigned long long)sig.file_size);
        goto done;
    }
    st = slm_trust_hash(data, n, hash);
    if (st != SLM_OK) goto done;
    if (sodium_memcmp(hash, sig.file_hash, sizeof hash) != 0) {
        st = FAIL_CHECK(path, "hash mismatch",
                        "the contents differ from what key %s signed (modified, or not the "
                        "signed file)",
                        id_hex);
        goto done;
    }
    if (sig_out) *sig_out = sig;
done:
    free(sig_path);
    return st;
}

static void fill_info(const slm_sig *sig, double ms, slm_verify_info *info) {
    memset(info, 0, sizeof *info);
    slm_trust_hex(sig->key_id, sizeof sig->key_id, info->key_id);
    info->file_size = sig->file_size;
    info->created = sig->created;
    snprintf(info->comment, sizeof info->comment, "%s", sig->comment);
    info->ms = ms;
}

slm_status slm_verify_file(const char *path, const char *pub_path, const char *trust_dir,
                           slm_verify_info *info) {
    if (!path) return slm_fail(SLM_ERR_INVALID_ARG, "slm_verify_file: no file given");
    double t0 = slm_now_ms();
    slm_mapped_file map;
    SLM_TRY(slm_map_file(path, &map));
    slm_sig sig;
    slm_status st = slm_trust_verify_bytes(path, map.data, map.size, pub_path, trust_dir, &sig);
    slm_unmap_file(&map);
    if (st == SLM_OK && info) fill_info(&sig, slm_now_ms() - t0, info);
    return st;
}

slm_status slm_sign_file(const char *path, const char *key_path, const char *comment,
                         slm_verify_info *info) {
    if (!path || !key_path)
        return slm_fail(SLM_ERR_INVALID_ARG, "slm_sign_file: need a file and a key");
    if (!comment) comment = "";
    size_t cl = strlen(comment);
    if (cl > SLM_TRUST_MAX_COMMENT)
        return slm_fail(SLM_ERR_INVALID_ARG, "comment: longer than %u bytes",
                        SLM_TRUST_MAX_COMMENT);
    for (size_t i = 0; i < cl; i++)
        if ((unsigned char)comment[i] < 0x20 || comment[i] == 0x7f)
            return slm_fail(SLM_ERR_INVALID_ARG, "comment: control characters are not allowed");
    double t0 = slm_now_ms();
    slm_seckey key;
    SLM_TRY(slm_seckey_read(key_path, &key));
    slm_mapped_file map;
    slm_status st = slm_map_file(path, &map);
    if (st != SLM_OK) {
        slm_seckey_wipe(&key);
        return st;
    }
    char *sig_path = concat(path, ".sig");
    char text[SLM_TRUST_MAX_SIG_FILE];
    uint8_t hash[SLM_TRUST_HASH_BYTES], signature[SLM_TRUST_SIG_BYTES];
    char hash_hex[2 * SLM_TRUST_HASH_BYTES + 1], id_hex[SLM_KEY_ID_HEX],
        sig_hex[2 * SLM_TRUST_SIG_BYTES + 1];
    slm_sig check;
    if (!sig_path) {
        st = slm_fail(SLM_ERR_NOMEM, "out of memory");
        goto done;
    }
    st = slm_trust_hash(map.data, map.size, hash);
    if (st != SLM_OK) goto done;
    slm_trust_hex(hash, sizeof hash, hash_hex);
    slm_trust_hex(key.pub.key_id, sizeof key.pub.key_id, id_hex);
    time_t now = time(NULL);
    int hl = snprintf(text, sizeof text,
                      "slm-signature v1\nalgorithm: " SLM_TRUST_ALGORITHM
                      "\nfile-size: %zu\nfile-hash: %s\nkey-id: %s\ncreated: %lld\ncomment: %s\n",
                      map.size, hash_hex, id_hex, (long long)(now < 0 ? 0 : now), comment);
    crypto_sign_detached(signature, NULL, (const unsigned char *)text, (unsigned long long)hl,
                         key.sk);
    slm_trust_hex(signature, sizeof signature, sig_hex);
    int total = hl + snprintf(text + hl, sizeof text - (size_t)hl, "signature: %s\n", sig_hex);
    /* What we write must be what a verifier accepts. */
    st = slm_sig_parse(text, (size_t)total, sig_path, &check);
    if (st != SLM_OK) goto done;
    st = slm_trust_write_file(sig_path, text, (size_t)total, 0644, 1);
    if (st == SLM_OK && info) fill_info(&check, slm_now_ms() - t0, info);
done:
    slm_seckey_wipe(&key);
    slm_unmap_file(&map);
    free(sig_path);
    return st;
}
