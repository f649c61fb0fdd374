/* The JSON runtime config (slm_config_apply_json): all or nothing, and what
 * it accepts prints back to JSON that it accepts again, unchanged. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    slm_config *c = NULL;
    if (slm_config_new(&c) != SLM_OK) return 0;
    slm_config before = *c;
    slm_status st = slm_config_apply_json(c, (const char *)data, size);
    if (st != SLM_OK) {
        FUZZ_ASSERT(memcmp(&before, c, sizeof before) == 0); /* nothing applied */
    } else {
        char *json = slm_config_to_json(c);
        FUZZ_ASSERT(json != NULL);
        slm_config *again = NULL;
        FUZZ_ASSERT(slm_config_new(&again) == SLM_OK);
        FUZZ_ASSERT(slm_config_apply_json(again, json, strlen(json)) == SLM_OK);
        char *json2 = slm_config_to_json(again);
        FUZZ_ASSERT(json2 && !strcmp(json, json2));
        free(json2);
        free(json);
        slm_config_free(again);
    }
    slm_config_free(c);
    return 0;
}
