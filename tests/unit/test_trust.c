/* Signatures: key files, the signature format, sign/verify, and refusal at
 * load (require_signature) of every kind of tampering. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mmap_file.h"
#include "check.h"
#include "quant/types.h"
#include "runtime/config.h"
#include "testmodel.h"
#include "trust/trust.h"

#define N_SAMPLED_BYTES 200 /* single-byte modifications tried at load */

static char g_dir[512];   /* scratch directory of this test */
static char g_trust[600]; /* trust dir: holds a.pub only */
static char g_key_a[600]; /* trusted key (base name) */
static char g_key_b[600]; /* untrusted key (base name) */

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static int read_all(const char *path, char **data, size_t *n) {
    return slm_read_file(path, (size_t)1 << 31, data, n) == SLM_OK;
}

static int copy_file(const char *from, const char *to) {
    char *d = NULL;
    size_t n = 0;
    if (!read_all(from, &d, &n)) return 0;
    int ok = slm_test_write_bytes(to, d, n) == SLM_OK;
    free(d);
    return ok;
}

static slm_status load_signed(const char *path, const char *trust_dir, double *ms) {
    slm_config *c = NULL;
    slm_status st = slm_config_new(&c);
    if (st != SLM_OK) return st;
    char json[1400];
    snprintf(json, sizeof json, "{\"require_signature\":true,\"trust_dir\":\"%s\"}", trust_dir);
    st = slm_config_apply_json(c, json, strlen(json));
    slm_model *m = NULL;
    if (st == SLM_OK) st = slm_model_load(path, c, &m);
    if (st == SLM_OK && ms) *ms = slm_model_verify_ms(m);
    slm_model_free(m);
    slm_config_free(c);
    return st;
}

static void test_hash_and_hex(void) {
    uint8_t h[SLM_TRUST_HASH_BYTES];
    char hex[2 * SLM_TRUST_HASH_BYTES + 1];
    CHECK_OK(slm_trust_hash(NULL, 0, h));
    slm_trust_hex(h, sizeof h, hex);
    /* BLAKE2b-256 of the empty string (RFC 7693 parameters, 32-byte output). */
    CHECK(!strcmp(hex, "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"));
    /* Chunked hashing equals one-shot hashing across the chunk boundary. */
    size_t n = SLM_TRUST_HASH_CHUNK + 12345;
    uint8_t *buf = malloc(n);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 131 + 7);
    uint8_t a[SLM_TRUST_HASH_BYTES], b[SLM_TRUST_HASH_BYTES];
    CHECK_OK(slm_trust_hash(buf, n, a));
    buf[n - 1] ^= 1;
    CHECK_OK(slm_trust_hash(buf, n, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    free(buf);
}

static void test_keygen(void) {
    char id[SLM_KEY_ID_HEX], p[700];
    CHECK_OK(slm_keygen(g_key_a, id));
    CHECK(strlen(id) == 16);
    snprintf(p, sizeof p, "%s.key", g_key_a);
    struct stat sb;
    CHECK(stat(p, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    /* refuses to overwrite, and leaves the files as they were */
    char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    CHECK(read_all(p, &before, &nb));
    CHECK_ERR(slm_keygen(g_key_a, NULL), SLM_ERR_IO, "already exists");
    CHECK(read_all(p, &after, &na));
    CHECK(nb == na && before && after && !memcmp(before, after, nb));
    free(before);
    free(after);
    CHECK_OK(slm_keygen(g_key_b, NULL));

    /* the public key parses and its id is the one printed */
    slm_pubkey pk;
    snprintf(p, sizeof p, "%s.pub", g_key_a);
    CHECK_OK(slm_pubkey_read(p, &pk));
    char hex[SLM_KEY_ID_HEX];
    slm_trust_hex(pk.key_id, sizeof pk.key_id, hex);
    CHECK(!strcmp(hex, id));

    /* strict parsing: any deviation is refused */
    char *text = NULL;
    size_t n = 0;
    CHECK(read_all(p, &text, &n));
    char bad[2048];
    memcpy(bad, text, n);
    CHECK_ERR(slm_pubkey_parse(bad, n - 1, "k.pub", &pk), SLM_ERR_SIGNATURE, "malformed");
    bad[n] = '\n';
    CHECK_ERR(slm_pubkey_parse(bad, n + 1, "k.pub", &pk), SLM_ERR_SIGNATURE, "end of the file");
    memcpy(bad, text, n);
    char *hx = strstr(bad, "public-key: ") + 12;
    *hx = (char)(*hx == 'a' ? 'b' : 'a'); /* another key: id no longer matches */
    CHECK_ERR(slm_pubkey_parse(bad, n, "k.pub", &pk), SLM_ERR_SIGNATURE, "does not match");
    memcpy(bad, text, n);
    hx = strstr(bad, "key-id: ") + 8;
    for (int i = 0; i < 16; i++)
        if (hx[i] >= 'a') hx[i] = (char)(hx[i] - 32); /* uppercase hex */
    if (memcmp(bad, text, n) != 0)
        CHECK_ERR(slm_pubkey_parse(bad, n, "k.pub", &pk), SLM_ERR_SIGNATURE, "lowercase hex");
    free(text);

    /* a secret key others can read is refused */
    snprintf(p, sizeof p, "%s.key", g_key_b);
    CHECK(chmod(p, 0644) == 0);
    char f[700];
    path_in(f, sizeof f, "any.bin");
    CHECK_OK(slm_test_write_bytes(f, "x", 1));
    CHECK_ERR(slm_sign_file(f, p, NULL, NULL), SLM_ERR_SIGNATURE, "too open");
    CHECK(chmod(p, 0600) == 0);
    /* a public key is not a secret key */
    snprintf(p, sizeof p, "%s.pub", g_key_b);
    CHECK(chmod(p, 0600) == 0);
    CHECK_ERR(slm_sign_file(f, p, NULL, NULL), SLM_ERR_SIGNATURE, "malformed secret key");
    CHECK(chmod(p, 0644) == 0);
}

static void test_sig_format(const char *file) {
    char key[700], sig_path[800];
    snprintf(key, sizeof key, "%s.key", g_key_a);
    snprintf(sig_path, sizeof sig_path, "%s.sig", file);
    slm_verify_info info;
    CHECK_OK(slm_sign_file(file, key, "release 1 \xc3\xa9", &info));
    char *text = NULL;
    size_t n = 0;
    CHECK(read_all(sig_path, &text, &n));
    if (!text) return;
    slm_sig sig;
    CHECK_OK(slm_sig_parse(text, n, "x.sig", &sig));
    CHECK(!strcmp(sig.comment, "release 1 \xc3\xa9"));
    CHECK(sig.created > 1600000000);
    CHECK(sig.header_len > 0 && sig.header_len < n &&
          !strncmp(text + sig.header_len, "signature: ", 11));
    /* every truncation is refused by the parser */
    for (size_t k = 0; k < n; k++)
        CHECK_MSG(slm_sig_parse(text, k, "x.sig", &sig) == SLM_ERR_SIGNATURE, "prefix %zu", k);
    /* every single-byte change is refused by the parser or by the signature */
    char pub[700];
    snprintf(pub, sizeof pub, "%s.pub", g_key_a);
    char *mod = malloc(n);
    int refused = 0;
    for (size_t k = 0; k < n; k++) {
        memcpy(mod, text, n);
        mod[k] = (char)(mod[k] ^ (k % 2 ? 0x01 : 0x20));
        CHECK_OK(slm_test_write_bytes(sig_path, mod, n));
        slm_status st = slm_verify_file(file, pub, NULL, NULL);
        refused += st == SLM_ERR_SIGNATURE;
        CHECK_MSG(st == SLM_ERR_SIGNATURE, "byte %zu of the .sig changed: %s", k, slm_last_error());
    }
    CHECK(refused == (int)n);
    free(mod);
    /* specific malformations name the line */
    CHECK_ERR(slm_sig_parse("slm-signature v2\n", 17, "x.sig", &sig), SLM_ERR_SIGNATURE, "line 1");
    char *extra = malloc(n + 8);
    memcpy(extra, text, n);
    memcpy(extra + n, "more\n", 5);
    CHECK_ERR(slm_sig_parse(extra, n + 5, "x.sig", &sig), SLM_ERR_SIGNATURE, "end of the file");
    free(extra);
    char big[SLM_TRUST_MAX_SIG_FILE + 2];
    memset(big, 'a', sizeof big);
    CHECK_ERR(slm_sig_parse(big, sizeof big, "x.sig", &sig), SLM_ERR_SIGNATURE, "limit");
    const char *lead0 = "slm-signature v1\nalgorithm: ed25519-blake2b256\nfile-size: 01\n";
    CHECK_ERR(slm_sig_parse(lead0, strlen(lead0), "x.sig", &sig), SLM_ERR_SIGNATURE, "line 3");
    const char *huge = "slm-signature v1\nalgorithm: ed25519-blake2b256\n"
                       "file-size: 99999999999999999999\n";
    CHECK_ERR(slm_sig_parse(huge, strlen(huge), "x.sig", &sig), SLM_ERR_SIGNATURE, "line 3");
    /* comments with control characters cannot be signed */
    CHECK_ERR(slm_sign_file(file, key, "two\nlines", NULL), SLM_ERR_INVALID_ARG, "control");
    /* restore a good signature */
    CHECK_OK(slm_test_write_bytes(sig_path, text, n));
    CHECK_OK(slm_verify_file(file, pub, NULL, &info));
    free(text);
}

/* Every refusal must happen at load, with the check named. */
static void test_load(const char *model, const char *label) {
    char key_a[700], key_b[700], f[700], g[700], sig[800], gsig[800];
    snprintf(key_a, sizeof key_a, "%s.key", g_key_a);
    snprintf(key_b, sizeof key_b, "%s.key", g_key_b);
    snprintf(f, sizeof f, "%s/%s-copy.gguf", g_dir, label);
    snprintf(g, sizeof g, "%s/%s-other.gguf", g_dir, label);
    snprintf(sig, sizeof sig, "%s.sig", f);
    snprintf(gsig, sizeof gsig, "%s.sig", g);
    char *data = NULL;
    size_t n = 0;
    CHECK(read_all(model, &data, &n));
    if (!data || n < 64) return;
    CHECK_OK(slm_test_write_bytes(f, data, n));

    /* missing signature */
    unlink(sig);
    CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "missing signature");
    /* round trip: sign, verify, load */
    slm_verify_info info;
    CHECK_OK(slm_sign_file(f, key_a, label, &info));
    CHECK(info.file_size == n);
    CHECK_OK(slm_verify_file(f, NULL, g_trust, &info));
    CHECK(!strcmp(info.comment, label));
    double ms = -1;
    CHECK_OK(load_signed(f, g_trust, &ms));
    CHECK(ms > 0);
    fprintf(stderr, "%s: %zu bytes verified at load in %.2f ms\n", label, n, ms);
    /* require_signature off: no check, no cost */
    slm_model *m = NULL;
    CHECK_OK(slm_model_load(f, NULL, &m));
    CHECK(slm_model_verify_ms(m) == 0.0);
    slm_model_free(m);
    /* no trust dir configured */
    CHECK_ERR(load_signed(f, "", NULL), SLM_ERR_CONFIG, "trust_dir");

    /* a signature by a key that is not in the trust dir */
    CHECK_OK(slm_sign_file(f, key_b, NULL, NULL));
    CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "unknown key");
    char pub_a[700];
    snprintf(pub_a, sizeof pub_a, "%s.pub", g_key_a);
    CHECK_ERR(slm_verify_file(f, pub_a, NULL, NULL), SLM_ERR_SIGNATURE, "unknown key");
    CHECK_OK(slm_sign_file(f, key_a, NULL, NULL));

    /* a bad signature: the header altered (a claimed size), signature kept */
    char *st = NULL;
    size_t sn = 0;
    CHECK(read_all(sig, &st, &sn));
    if (st) {
        char *mod = malloc(sn);
        memcpy(mod, st, sn);
        char *c = strstr(mod, "created: ") + 9;
        *c = (char)(*c == '1' ? '2' : '1');
        CHECK_OK(slm_test_write_bytes(sig, mod, sn));
        CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "bad signature");
        memcpy(mod, st, sn);
        c = strstr(mod, "signature: ") + 11;
        *c = (char)(*c == '0' ? '1' : '0');
        CHECK_OK(slm_test_write_bytes(sig, mod, sn));
        CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "bad signature");
        /* malformed signature file */
        CHECK_OK(slm_test_write_bytes(sig, "garbage\n", 8));
        CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "malformed signature file");
        CHECK_OK(slm_test_write_bytes(sig, st, sn));
        free(mod);
    }
    CHECK_OK(load_signed(f, g_trust, NULL));

    /* truncation (several lengths, including one byte short and empty) */
    size_t cuts[] = {n - 1, n / 2, 32, 0};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK_OK(slm_test_write_bytes(f, data, cuts[i]));
        CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "size mismatch");
    }
    /* extension by one byte */
    char *longer = malloc(n + 1);
    memcpy(longer, data, n);
    longer[n] = 0;
    CHECK_OK(slm_test_write_bytes(f, longer, n + 1));
    CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "size mismatch");
    free(longer);

    /* single-byte modifications across the file: the first 40 bytes (magic,
     * version, counts, first key), the last byte, and the rest spread evenly */
    int refused = 0, tried = 0;
    for (int i = 0; i < N_SAMPLED_BYTES; i++) {
        size_t pos;
        if (i < 40)
            pos = (size_t)i;
        else if (i == N_SAMPLED_BYTES - 1)
            pos = n - 1;
        else
            pos = 40 + (size_t)((double)(i - 40) / (N_SAMPLED_BYTES - 41) * (double)(n - 41));
        uint8_t old = (uint8_t)data[pos];
        data[pos] = (char)(old ^ (1u << (i % 8)));
        CHECK_OK(slm_test_write_bytes(f, data, n));
        data[pos] = (char)old;
        slm_status s = load_signed(f, g_trust, NULL);
        tried++;
        if (s == SLM_ERR_SIGNATURE && check_has(slm_last_error(), "hash mismatch"))
            refused++;
        else
            CHECK_MSG(0, "byte %zu modified: load gave %s: %s", pos, slm_status_str(s),
                      slm_last_error());
    }
    CHECK(refused == N_SAMPLED_BYTES);
    fprintf(stderr, "%s: %d/%d single-byte modifications refused at load (hash mismatch)\n", label,
            refused, tried);

    /* swapped signature: a valid signature of another file */
    CHECK_OK(slm_test_write_bytes(f, data, n));
    data[n / 3] ^= 0x10; /* same size, different contents */
    CHECK_OK(slm_test_write_bytes(g, data, n));
    data[n / 3] ^= 0x10;
    CHECK_OK(slm_sign_file(g, key_a, NULL, NULL));
    CHECK_OK(load_signed(g, g_trust, NULL));
    CHECK(copy_file(gsig, sig));
    CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "hash mismatch");
    CHECK_OK(slm_test_write_bytes(g, "a different, shorter file", 25));
    CHECK_OK(slm_sign_file(g, key_a, NULL, NULL));
    CHECK(copy_file(gsig, sig));
    CHECK_ERR(load_signed(f, g_trust, NULL), SLM_ERR_SIGNATURE, "size mismatch");
    /* and the original signature still works */
    CHECK_OK(slm_sign_file(f, key_a, NULL, NULL));
    CHECK_OK(load_signed(f, g_trust, NULL));
    unlink(f);
    unlink(g);
    unlink(sig);
    unlink(gsig);
    free(st);
    free(data);
}

int main(void) {
    check_tmp_path("trust", g_dir, sizeof g_dir);
    CHECK(mkdir(g_dir, 0700) == 0 || errno == EEXIST);
    snprintf(g_trust, sizeof g_trust, "%s/trusted", g_dir);
    CHECK(mkdir(g_trust, 0700) == 0 || errno == EEXIST);
    snprintf(g_key_a, sizeof g_key_a, "%s/trusted/a", g_dir);
    snprintf(g_key_b, sizeof g_key_b, "%s/b", g_dir);

    test_hash_and_hex();
    test_keygen();
    /* the secret key must not sit in the trust dir for real use, but a .key
     * file there is ignored (only *.pub is read) */

    char small[700];
    path_in(small, sizeof small, "small.gguf");
    slm_test_model_params p = {.dim = 32,
                               .n_layers = 1,
                               .n_heads = 4,
                               .ffn_dim = 64,
                               .n_ctx = 64,
                               .wtype = SLM_TYPE_F32,
                               .seed = 1};
    CHECK_OK(slm_test_write_model(small, &p));
    test_sig_format(small);
    test_load(small, "synthetic");

    char buf[1024];
    const char *stories = check_shared_path("models/stories260K.gguf", buf, sizeof buf);
    if (stories)
        test_load(stories, "stories260K");
    else
        fprintf(stderr, "SKIP part: models/stories260K.gguf not found in the shared fixtures\n");

    /* clean up the scratch directory */
    char q[700];
    const char *names[] = {"trusted/a.key", "trusted/a.pub",  "b.key",  "b.pub",
                           "small.gguf",    "small.gguf.sig", "any.bin"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        path_in(q, sizeof q, names[i]);
        unlink(q);
    }
    rmdir(g_trust);
    rmdir(g_dir);
    return check_finish();
}
