/* Shared by the fuzz targets: the libFuzzer entry point, and a check that
 * aborts (a finding) when an invariant of a successful parse is broken. */
#ifndef SLM_FUZZ_FUZZ_H
#define SLM_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Parsers log warnings for odd but accepted input; keep fuzzing quiet. */
static inline void fuzz_quiet(void) {
    slm_log_set_level(SLM_LOG_ERROR);
}

#endif
