/* safetensors reader (st_open_memory): after a successful parse every
 * tensor lies inside the buffer, sizes agree with dtype x shape, lookups by
 * name find each tensor, and conversion of the float types stays in bounds. */
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_quiet();
    st_file *f = NULL;
    if (st_open_memory(data, size, "fuzz.safetensors", &f) != SLM_OK) return 0;
    uint64_t covered = 0;
    for (size_t i = 0; i < st_n_tensors(f); i++) {
        const st_tensor *t = st_tensor_at(f, i);
        FUZZ_ASSERT(t && t->name);
        FUZZ_ASSERT(t->data >= data + 8 && t->data <= data + size);
        FUZZ_ASSERT(t->nbytes <= (uint64_t)(data + size - t->data));
        FUZZ_ASSERT(t->nbytes == t->n_elems * st_dtype_size(t->dtype));
        FUZZ_ASSERT(t->n_dims <= ST_MAX_DIMS);
        FUZZ_ASSERT(st_find(f, t->name) == t);
        covered += t->nbytes;
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
            uint64_t n = t->n_elems < 4096 ? t->n_elems : 4096;
            float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
            if (x) {
                FUZZ_ASSERT(st_to_f32(t, x, n) == SLM_OK);
                free(x);
            }
        }
    }
    FUZZ_ASSERT(covered <= size);
    (void)st_metadata(f, "format");
    st_close(f);
    return 0;
}
