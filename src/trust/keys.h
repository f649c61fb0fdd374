/* Secret keys: read strictly, wiped after use. */
#ifndef SLM_TRUST_KEYS_H
#define SLM_TRUST_KEYS_H

#include <stdint.h>

#include "trust/trust.h"

typedef struct slm_seckey {
    slm_pubkey pub;
    uint8_t sk[64]; /* libsodium's Ed25519 secret key (seed || public key) */
} slm_seckey;

/* Reads KEYNAME.key; refuses a file others can read (mode & 077). Wipe the
 * result with slm_seckey_wipe. */
slm_status slm_seckey_read(const char *path, slm_seckey *out);
void slm_seckey_wipe(slm_seckey *k);

/* Writes `path` through a temporary file in the same directory, with `mode`.
 * replace: rename over an existing file; otherwise hard-link into place, so
 * an existing file is never overwritten ("already exists"). */
slm_status slm_trust_write_file(const char *path, const char *data, size_t n, unsigned mode,
                                int replace);

#endif
