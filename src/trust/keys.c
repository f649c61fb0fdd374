/* Hashing, key ids and Ed25519 key files (libsodium). */
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mmap_file.h"
#include "base/status.h"
#include "trust/keys.h"
#include "trust/text.h"
#include "trust/trust.h"

#define PUB_MAGIC "slm-ed25519-public-key v1"
#define SEC_MAGIC "slm-ed25519-secret-key v1"

slm_status slm_trust_init(void) {
    if (sodium_init() < 0) return slm_fail(SLM_ERR_INTERNAL, "libsodium failed to initialise");
    return SLM_OK;
}

slm_status slm_trust_hash(const uint8_t *data, size_t n, uint8_t out[SLM_TRUST_HASH_BYTES]) {
    SLM_TRY(slm_trust_init());
    crypto_generichash_state st;
    if (crypto_generichash_init(&st, NULL, 0, SLM_TRUST_HASH_BYTES) != 0)
        return slm_fail(SLM_ERR_INTERNAL, "BLAKE2b init failed");
    for (size_t off = 0; off < n;) {
        size_t k = n - off < SLM_TRUST_HASH_CHUNK ? n - off : SLM_TRUST_HASH_CHUNK;
        crypto_generichash_update(&st, data + off, k);
        off += k;
    }
    crypto_generichash_final(&st, out, SLM_TRUST_HASH_BYTES);
    return SLM_OK;
}

void slm_trust_key_id(const uint8_t pk[SLM_TRUST_PK_BYTES], uint8_t out[SLM_TRUST_KEY_ID_BYTES]) {
    uint8_t h[SLM_TRUST_HASH_BYTES];
    crypto_generichash(h, sizeof h, pk, SLM_TRUST_PK_BYTES, NULL, 0);
    memcpy(out, h, SLM_TRUST_KEY_ID_BYTES);
}

void slm_trust_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

slm_status slm_pubkey_parse(const char *buf, size_t len, const char *name, slm_pubkey *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<public key>";
    if (!buf && len) return slm_fail(SLM_ERR_INVALID_ARG, "slm_pubkey_parse: NULL buffer");
    if (len > SLM_TRUST_MAX_KEY_FILE)
        return slm_fail(SLM_ERR_SIGNATURE, "%s: malformed public key file: larger than %u bytes",
                        name, SLM_TRUST_MAX_KEY_FILE);
    SLM_TRY(slm_trust_init());
    slm_text_cursor c = {buf, len, 0, 1, name, "public key file"};
    uint8_t id[SLM_TRUST_KEY_ID_BYTES];
    SLM_TRY(slm_text_magic(&c, PUB_MAGIC));
    SLM_TRY(slm_text_hex(&c, "key-id", id, sizeof id));
    SLM_TRY(slm_text_hex(&c, "public-key", out->pk, sizeof out->pk));
    SLM_TRY(slm_text_end(&c));
    slm_trust_key_id(out->pk, out->key_id);
    if (sodium_memcmp(id, out->key_id, sizeof id) != 0)
        return slm_fail(SLM_ERR_SIGNATURE,
                        "%s: malformed public key file: key-id does not match the public key",
                        name);
    return SLM_OK;
}

slm_status slm_pubkey_read(const char *path, slm_pubkey *out) {
    char *buf = NULL;
    size_t n = 0;
    SLM_TRY(slm_read_file(path, SLM_TRUST_MAX_KEY_FILE + 1, &buf, &n));
    slm_status st = slm_pubkey_parse(buf, n, path, out);
    free(buf);
    return st;
}

/* Reads a secret key file through one descriptor: the mode checked is that of
 * the file read. */
static slm_status read_secret_file(const char *path, char *buf, size_t cap, size_t *n) {
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return slm_fail(SLM_ERR_IO, "%s: cannot open: %s%s", path, strerror(errno),
                        errno == ELOOP ? " (a symbolic link is not accepted)" : "");
    struct stat sb;
    slm_status st = SLM_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = slm_fail(SLM_ERR_IO, "%s: not a regular file", path);
    } else if (sb.st_mode & 077) {
        st = slm_fail(SLM_ERR_SIGNATURE,
                      "%s: secret key permissions %04o are too open (group or others have "
                      "access); chmod 600 it",
                      path, (unsigned)(sb.st_mode & 07777));
    } else {
        for (;;) {
            ssize_t r = read(fd, buf + *n, cap - *n);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                st = slm_fail(SLM_ERR_IO, "%s: read error: %s", path, strerror(errno));
                break;
            }
            if (r == 0) break;
            *n += (size_t)r;
            if (*n == cap) {
                st = slm_fail(SLM_ERR_SIGNATURE,
                              "%s: malformed secret key file: larger than %u bytes", path,
                              SLM_TRUST_MAX_KEY_FILE);
                break;
            }
        }
    }
    close(fd);
    return st;
}

slm_status slm_seckey_read(const char *path, slm_seckey *out) {
    memset(out, 0, sizeof *out);
    SLM_TRY(slm_trust_init());
    char buf[SLM_TRUST_MAX_KEY_FILE + 1];
    size_t n = 0;
    uint8_t id[SLM_TRUST_KEY_ID_BYTES], seed[SLM_TRUST_SEED_BYTES];
    slm_status st = read_secret_file(path, buf, sizeof buf, &n);
    if (st != SLM_OK) goto cleanup;
    slm_text_cursor c = {buf, n, 0, 1, path, "secret key file"};
    SLM_CHECK(slm_text_magic(&c, SEC_MAGIC));
    SLM_CHECK(slm_text_hex(&c, "key-id", id, sizeof id));
    SLM_CHECK(slm_text_hex(&c, "seed", seed, sizeof seed));
    SLM_CHECK(slm_text_end(&c));
    crypto_sign_seed_keypair(out->pub.pk, out->sk, seed);
    slm_trust_key_id(out->pub.pk, out->pub.key_id);
    if (sodium_memcmp(id, out->pub.key_id, sizeof id) != 0)
        st = slm_fail(SLM_ERR_SIGNATURE,
                      "%s: malformed secret key file: key-id does not match the key", path);
cleanup:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(buf, sizeof buf);
    if (st != SLM_OK) slm_seckey_wipe(out);
    return st;
}

void slm_seckey_wipe(slm_seckey *k) {
    sodium_memzero(k, sizeof *k);
}

slm_status slm_trust_write_file(const char *path, const char *data, size_t n, unsigned mode,
                                int replace) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return slm_fail(SLM_ERR_NOMEM, "out of memory");
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        slm_status st =
            slm_fail(SLM_ERR_IO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    slm_status st = SLM_OK;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = slm_fail(SLM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (st == SLM_OK && (fchmod(fd, (mode_t)mode) != 0 || fsync(fd) != 0))
        st = slm_fail(SLM_ERR_IO, "%s: cannot finish writing: %s", path, strerror(errno));
    if (close(fd) != 0 && st == SLM_OK)
        st = slm_fail(SLM_ERR_IO, "%s: cannot close: %s", path, strerror(errno));
    if (st == SLM_OK && replace && rename(tmp, path) != 0)
        st = slm_fail(SLM_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st == SLM_OK && !replace && link(tmp, path) != 0) {
        if (errno == EEXIST)
            st = slm_fail(SLM_ERR_IO, "%s already exists; not overwriting it", path);
        else
            st = slm_fail(SLM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    unlink(tmp);
    free(tmp);
    return st;
}

slm_status slm_keygen(const char *out_base, char key_id[SLM_KEY_ID_HEX]) {
    if (!out_base || !*out_base) return slm_fail(SLM_ERR_INVALID_ARG, "slm_keygen: no name given");
    SLM_TRY(slm_trust_init());
    size_t bl = strlen(out_base);
    char *key_path = malloc(bl + 5), *pub_path = malloc(bl + 5);
    if (!key_path || !pub_path) {
        free(key_path);
        free(pub_path);
        return slm_fail(SLM_ERR_NOMEM, "out of memory");
    }
    snprintf(key_path, bl + 5, "%s.key", out_base);
    snprintf(pub_path, bl + 5, "%s.pub", out_base);
    slm_status st = SLM_OK;
    uint8_t seed[SLM_TRUST_SEED_BYTES], sk[crypto_sign_SECRETKEYBYTES];
    slm_pubkey pub;
    char text[256], seed_hex[2 * SLM_TRUST_SEED_BYTES + 1], id_hex[SLM_KEY_ID_HEX],
        pk_hex[2 * SLM_TRUST_PK_BYTES + 1];
    struct stat sb;
    if (lstat(pub_path, &sb) == 0) {
        st = slm_fail(SLM_ERR_IO, "%s already exists; not overwriting it", pub_path);
        goto cleanup;
    }
    randombytes_buf(seed, sizeof seed);
    crypto_sign_seed_keypair(pub.pk, sk, seed);
    slm_trust_key_id(pub.pk, pub.key_id);
    slm_trust_hex(pub.key_id, sizeof pub.key_id, id_hex);
    slm_trust_hex(seed, sizeof seed, seed_hex);
    slm_trust_hex(pub.pk, sizeof pub.pk, pk_hex);
    int n = snprintf(text, sizeof text, SEC_MAGIC "\nkey-id: %s\nseed: %s\n", id_hex, seed_hex);
    SLM_CHECK(slm_trust_write_file(key_path, text, (size_t)n, 0600, 0));
    n = snprintf(text, sizeof text, PUB_MAGIC "\nkey-id: %s\npublic-key: %s\n", id_hex, pk_hex);
    st = slm_trust_write_file(pub_path, text, (size_t)n, 0644, 0);
    if (st != SLM_OK) {
        unlink(key_path);
        goto cleanup;
    }
    if (key_id) memcpy(key_id, id_hex, SLM_KEY_ID_HEX);
cleanup:
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(seed_hex, sizeof seed_hex);
    sodium_memzero(text, sizeof text);
    free(key_path);
    free(pub_path);
    return st;
}
