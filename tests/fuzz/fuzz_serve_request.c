/* The server's request handling: OpenAI request bodies (chat when the first
 * byte is even, completions when odd; the rest is the body), the UTF-8
 * checks applied to them, and the API-key comparison. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "serve/openai.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    if (size == 0) return 0;
    srv_kind kind = (data[0] & 1) ? SRV_COMPLETION : SRV_CHAT;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    srv_request req;
    srv_error err;
    memset(&req, 0, sizeof req);
    memset(&err, 0, sizeof err);
    if (srv_parse_request(kind, body, len, &req, &err) == 0) {
        FUZZ_ASSERT(req.n_msgs <= SRV_MAX_MESSAGES);
        srv_request_free(&req);
    } else {
        FUZZ_ASSERT(err.http >= 400 && err.http < 600);
        char *j = srv_error_json(&err);
        FUZZ_ASSERT(j != NULL);
        free(j);
    }
    size_t sl = 0;
    char *clean = srv_utf8_sanitize(body, len, &sl);
    FUZZ_ASSERT(clean != NULL && srv_utf8_valid(clean, sl) && strlen(clean) == sl);
    free(clean);
    FUZZ_ASSERT(srv_secret_equal(body, len, body, len) == 1);
    (void)srv_secret_equal(body, len, "sk-secret", 9);
    return 0;
}
