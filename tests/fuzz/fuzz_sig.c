/* The signature file and public key file parsers (src/trust). */
#include <string.h>

#include "fuzz.h"
#include "trust/trust.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    slm_sig sig;
    if (slm_sig_parse((const char *)data, size, "fuzz.sig", &sig) == SLM_OK) {
        FUZZ_ASSERT(sig.header_len > 0 && sig.header_len < size);
        FUZZ_ASSERT(memcmp(data + sig.header_len, "signature: ", 11) == 0);
        FUZZ_ASSERT(strlen(sig.comment) <= SLM_TRUST_MAX_COMMENT);
        FUZZ_ASSERT(sig.created >= 0);
        /* a prefix of a valid file is never valid */
        slm_sig shorter;
        FUZZ_ASSERT(slm_sig_parse((const char *)data, size - 1, "fuzz.sig", &shorter) != SLM_OK);
    }
    slm_pubkey pk;
    (void)slm_pubkey_parse((const char *)data, size, "fuzz.pub", &pk);
    return 0;
}
