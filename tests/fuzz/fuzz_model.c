/* Model loading (slm_model_load) over a GGUF file: hyperparameters, tensor
 * shapes and types, weight binding, the tokenizer. The input goes into a
 * memory file, loaded by its /proc/self/fd path; a model that loads is
 * described and tokenizes a text. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "slm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    int fd = memfd_create("fuzz-model", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    slm_model *m = NULL;
    if (off == size && slm_model_load(path, NULL, &m) == SLM_OK) {
        slm_model_info info;
        FUZZ_ASSERT(slm_model_get_info(m, &info) == SLM_OK);
        FUZZ_ASSERT(info.dim > 0 && info.n_layers > 0 && info.n_vocab > 0);
        int32_t *ids = NULL;
        size_t n = 0;
        if (slm_tokenize(m, "Once upon a time", 16, SLM_TOKENIZE_ADD_BOS, &ids, &n) == SLM_OK) {
            char *text = NULL;
            size_t tl = 0;
            if (slm_detokenize(m, ids, n, &text, &tl) == SLM_OK) free(text);
            free(ids);
        }
        slm_model_free(m);
    }
    close(fd);
    return 0;
}
