/* Prompt logits of a session for tests that compare models and adapters. */
#ifndef SLM_TEST_LOGITS_H
#define SLM_TEST_LOGITS_H

#include <stddef.h>

#include "slm.h"

/* Logits of every position of `prompt` in a new session over m, with config
 * json ({"threads":2} when NULL) and adapters ads[0..n) at scales[0..n)
 * (none when n is 0); malloc'd, *count = tokens * vocabulary. A failure is
 * a CHECK failure and gives NULL with *count 0. */
float *slm_test_prompt_logits(slm_model *m, const char *json, const char *prompt,
                              const slm_adapter *const *ads, const float *scales, size_t n,
                              size_t *count);

/* max |a[i] - b[i]| and max |a[i]| over [0, n). */
double slm_test_max_abs_diff(const float *a, const float *b, size_t n);
double slm_test_max_abs(const float *a, size_t n);

#endif
