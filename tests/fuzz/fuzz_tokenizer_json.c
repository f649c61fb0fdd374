/* The Hugging Face tokenizer.json loader (from memory), then an encode and
 * decode with whatever it accepted. */
#include <stdlib.h>

#include "fuzz.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    slm_tokenizer *tok = NULL;
    if (slm_tokenizer_from_hf_json_text((const char *)data, size, NULL, 0, "fuzz.json", &tok) !=
        SLM_OK)
        return 0;
    static const char text[] = "Hello  world!\n<s>caf\xc3\xa9 12345 \xf0\x9f\x98\x80 \xc0\xaf";
    int32_t *ids = NULL;
    size_t n = 0;
    if (slm_tokenizer_encode(tok, text, sizeof text - 1,
                             SLM_TOKENIZE_ADD_BOS | SLM_TOKENIZE_PARSE_SPECIAL, &ids,
                             &n) == SLM_OK) {
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(ids[i] >= 0 && ids[i] < slm_tokenizer_n_vocab(tok));
        char *out = NULL;
        size_t ol = 0;
        if (slm_tokenizer_decode(tok, ids, n, 0, &out, &ol) == SLM_OK) free(out);
        free(ids);
    }
    slm_tokenizer_free(tok);
    return 0;
}
