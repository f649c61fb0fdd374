/* Model signatures: BLAKE2b-256 of the whole file, an Ed25519 signature over
 * a small text header that holds that hash (libsodium).
 *
 * Key files (text, strict: exactly these lines, lowercase hex, '\n' endings):
 *   KEYNAME.pub   "slm-ed25519-public-key v1\nkey-id: <16 hex>\npublic-key: <64 hex>\n"
 *   KEYNAME.key   "slm-ed25519-secret-key v1\nkey-id: <16 hex>\nseed: <64 hex>\n" (mode 0600)
 * key id = the first 8 bytes of BLAKE2b-256(public key), in hex.
 *
 * Signature file FILE.sig (text, strict, fields in this order):
 *   slm-signature v1
 *   algorithm: ed25519-blake2b256
 *   file-size: <decimal bytes>
 *   file-hash: <64 hex: BLAKE2b-256 of the whole file>
 *   key-id: <16 hex>
 *   created: <decimal unix seconds>
 *   comment: <text without control characters, may be empty>
 *   signature: <128 hex: Ed25519 over every byte before this line>
 * The signed header is the exact bytes of the first seven lines, so nothing
 * has to be re-encoded before checking it. */
#ifndef SLM_TRUST_TRUST_H
#define SLM_TRUST_TRUST_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define SLM_TRUST_HASH_BYTES 32u        /* BLAKE2b-256 */
#define SLM_TRUST_KEY_ID_BYTES 8u       /* prefix of the public key's hash */
#define SLM_TRUST_PK_BYTES 32u          /* Ed25519 public key */
#define SLM_TRUST_SEED_BYTES 32u        /* Ed25519 secret seed */
#define SLM_TRUST_SIG_BYTES 64u         /* Ed25519 signature */
#define SLM_TRUST_MAX_COMMENT 256u      /* bytes of the comment field */
#define SLM_TRUST_MAX_SIG_FILE 4096u    /* a larger .sig file is malformed */
#define SLM_TRUST_MAX_KEY_FILE 1024u    /* a larger key file is malformed */
#define SLM_TRUST_MAX_KEYS 4096u        /* .pub files examined in a trust dir */
#define SLM_TRUST_HASH_CHUNK (1u << 20) /* bytes hashed per update */
#define SLM_TRUST_ALGORITHM "ed25519-blake2b256"

/* A parsed signature file. `header_len` bytes at the start of the file are
 * what the signature covers. */
typedef struct slm_sig {
    uint64_t file_size;
    uint8_t file_hash[SLM_TRUST_HASH_BYTES];
    uint8_t key_id[SLM_TRUST_KEY_ID_BYTES];
    int64_t created;
    char comment[SLM_TRUST_MAX_COMMENT + 1];
    uint8_t signature[SLM_TRUST_SIG_BYTES];
    size_t header_len;
} slm_sig;

typedef struct slm_pubkey {
    uint8_t pk[SLM_TRUST_PK_BYTES];
    uint8_t key_id[SLM_TRUST_KEY_ID_BYTES];
} slm_pubkey;

/* libsodium must be initialised before use; safe to call repeatedly. */
slm_status slm_trust_init(void);

/* BLAKE2b-256 of `n` bytes, fed in SLM_TRUST_HASH_CHUNK pieces. */
slm_status slm_trust_hash(const uint8_t *data, size_t n, uint8_t out[SLM_TRUST_HASH_BYTES]);
void slm_trust_key_id(const uint8_t pk[SLM_TRUST_PK_BYTES], uint8_t out[SLM_TRUST_KEY_ID_BYTES]);

/* Lowercase hex of `n` bytes into `out` (2n+1 bytes). */
void slm_trust_hex(const uint8_t *bytes, size_t n, char *out);

/* Parses a signature file's bytes. `name` is used in messages. Fails with
 * SLM_ERR_SIGNATURE "malformed signature file" naming the line. */
slm_status slm_sig_parse(const char *buf, size_t len, const char *name, slm_sig *out);

/* Parses public/secret key file bytes (strict; the key id must match the key). */
slm_status slm_pubkey_parse(const char *buf, size_t len, const char *name, slm_pubkey *out);
slm_status slm_pubkey_read(const char *path, slm_pubkey *out);

/* Checks `data` (n bytes: the file as it will be used) against `path`.sig.
 * Exactly one of pub_path (a .pub file) and trust_dir (a directory of .pub
 * files) is non-NULL. On success fills `sig` when non-NULL. Failures are
 * SLM_ERR_SIGNATURE with a message naming the file and the check: "missing
 * signature", "malformed signature file", "unknown key", "bad signature",
 * "size mismatch" or "hash mismatch". */
slm_status slm_trust_verify_bytes(const char *path, const uint8_t *data, size_t n,
                                  const char *pub_path, const char *trust_dir, slm_sig *sig);

#endif
