/* The Jinja chat-template interpreter: the input is the template, rendered
 * over a fixed conversation. The render's limits (steps, output, memory)
 * bound the time and memory one input can take. */
#include "fuzz.h"
#include "tokenizer/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    static const slm_chat_message msgs[] = {
        {"system", "You are helpful."},
        {"user", "Hi {{ there }} {% raw %}<|im_end|>"},
        {"assistant", "Hello!"},
        {"user", "Tell me a story."},
    };
    slm_chat_render r;
    if (slm_chat_render_template((const char *)data, size, msgs, sizeof msgs / sizeof msgs[0], 1,
                                 "<s>", "</s>", &r) == SLM_OK) {
        FUZZ_ASSERT(r.text != NULL && r.text[r.len] == '\0');
        slm_chat_render_free(&r);
    }
    return 0;
}
