/* The signature file format (see trust.h): strict parser. */
#include <stdint.h>
#include <string.h>

#include "base/status.h"
#include "trust/text.h"
#include "trust/trust.h"

#define SIG_MAGIC "slm-signature v1"
#define SIG_MAX_CREATED ((uint64_t)INT64_MAX)

slm_status slm_sig_parse(const char *buf, size_t len, const char *name, slm_sig *out) {
    memset(out, 0, sizeof *out);
    if (!name) name = "<signature>";
    if (!buf && len) return slm_fail(SLM_ERR_INVALID_ARG, "slm_sig_parse: NULL buffer");
    if (len > SLM_TRUST_MAX_SIG_FILE)
        return slm_fail(SLM_ERR_SIGNATURE,
                        "%s: malformed signature file: %zu bytes, more than the limit of %u", name,
                        len, SLM_TRUST_MAX_SIG_FILE);
    slm_text_cursor c = {buf, len, 0, 1, name, "signature file"};
    const char *v = NULL;
    size_t vl = 0;
    uint64_t x = 0;
    SLM_TRY(slm_text_magic(&c, SIG_MAGIC));
    SLM_TRY(slm_text_magic(&c, "algorithm: " SLM_TRUST_ALGORITHM));
    SLM_TRY(slm_text_uint(&c, "file-size", UINT64_MAX, &out->file_size));
    SLM_TRY(slm_text_hex(&c, "file-hash", out->file_hash, sizeof out->file_hash));
    SLM_TRY(slm_text_hex(&c, "key-id", out->key_id, sizeof out->key_id));
    SLM_TRY(slm_text_uint(&c, "created", SIG_MAX_CREATED, &x));
    out->created = (int64_t)x;
    SLM_TRY(slm_text_field(&c, "comment", SLM_TRUST_MAX_COMMENT, &v, &vl));
    memcpy(out->comment, v, vl);
    out->comment[vl] = '\0';
    out->header_len = c.pos;
    SLM_TRY(slm_text_hex(&c, "signature", out->signature, sizeof out->signature));
    SLM_TRY(slm_text_end(&c));
    return SLM_OK;
}
