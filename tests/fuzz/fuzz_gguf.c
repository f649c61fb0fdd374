/* GGUF reader (gguf_open_memory), then what model loading reads from it:
 * metadata getters, the vocabulary and the chat template. */
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "fuzz.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f) != SLM_OK) return 0;
    const uint8_t *base = gguf_base(f);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        /* every tensor lies inside the buffer */
        FUZZ_ASSERT(t->data >= base && t->data <= base + size);
        FUZZ_ASSERT(t->nbytes <= (uint64_t)(base + size - t->data));
        FUZZ_ASSERT(t->name.len <= GGUF_MAX_NAME);
    }
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        FUZZ_ASSERT(kv->key.len <= GGUF_MAX_KEY);
        char *key = malloc((size_t)kv->key.len + 1);
        if (!key) break;
        memcpy(key, kv->key.ptr, (size_t)kv->key.len);
        key[kv->key.len] = '\0';
        uint32_t u = 0;
        int64_t i64 = 0;
        float fl = 0;
        int b = 0;
        gguf_str s = {0};
        (void)gguf_get_u32_opt(f, key, &u);
        (void)gguf_get_i64_opt(f, key, &i64);
        (void)gguf_get_f32_opt(f, key, &fl);
        (void)gguf_get_bool_opt(f, key, &b);
        (void)gguf_get_str_opt(f, key, &s);
        free(key);
        if (kv->type == GGUF_VT_ARRAY && kv->arr_type != GGUF_VT_STRING && kv->arr_len > 0 &&
            gguf_vtype_size(kv->arr_type) > 0) {
            (void)gguf_arr_f64(kv, 0);
            (void)gguf_arr_i64(kv, kv->arr_len - 1);
        }
    }
    slm_tokenizer *tok = NULL;
    if (slm_tokenizer_from_gguf(f, &tok) == SLM_OK) {
        int32_t *ids = NULL;
        size_t n = 0;
        static const char text[] = "Hello world, <s> once upon a time\xe2\x80\x94 \xff!";
        if (slm_tokenizer_encode(tok, text, sizeof text - 1, SLM_TOKENIZE_PARSE_SPECIAL, &ids,
                                 &n) == SLM_OK) {
            char *out = NULL;
            size_t ol = 0;
            if (slm_tokenizer_decode(tok, ids, n, 0, &out, &ol) == SLM_OK) free(out);
            free(ids);
        }
        slm_tokenizer_free(tok);
    }
    char *tmpl = NULL;
    if (slm_chat_template_from_gguf(f, &tmpl) == SLM_OK) free(tmpl);
    gguf_close(f);
    return 0;
}
