/* LoRA adapters a server loads once at start (slm serve --lora NAME=PATH[:SCALE])
 * and requests choose among by name ("adapter": "NAME"). Read-only after
 * loading: every slot's session may apply any of them (no base reload). */
#ifndef SLM_SERVE_ADAPTERS_H
#define SLM_SERVE_ADAPTERS_H

#include "serve/openai.h"
#include "slm.h"

#define SRV_MAX_ADAPTERS 16
#define SRV_MAX_ADAPTER_NAME 64

typedef struct srv_adapters {
    int n;
    char name[SRV_MAX_ADAPTERS][SRV_MAX_ADAPTER_NAME + 1];
    slm_adapter *ad[SRV_MAX_ADAPTERS];
    float scale[SRV_MAX_ADAPTERS];
} srv_adapters;

/* Parses "NAME=PATH[:SCALE]" (NAME: 1..64 of [A-Za-z0-9._-]; SCALE a finite
 * number, default 1). 0 on success. */
int srv_adapter_spec(const char *spec, char *name, size_t name_cap, char *path, size_t path_cap,
                     float *scale);

/* Loads specs[0..n) for `model`. With the config's "require_signature",
 * each adapter must be signed by a key in its "trust_dir" (as models are).
 * Refuses duplicate names and a config that has its own "adapters" (the
 * request would not know which apply). On failure nothing stays loaded. */
slm_status srv_adapters_load(srv_adapters *a, const slm_model *model, const slm_config *cfg,
                             const char *const *specs, int n);
void srv_adapters_free(srv_adapters *a);
/* Index of `name`, or -1. */
int srv_adapters_find(const srv_adapters *a, const char *name);

#endif
