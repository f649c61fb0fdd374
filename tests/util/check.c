#include "check.h"

#include <unistd.h>

#include "slm.h"

int check_passed_ = 0;
int check_failed_ = 0;

int check_finish(void) {
    printf("%d passed, %d failed\n", check_passed_, check_failed_);
    return check_failed_ ? 1 : 0;
}

void check_skip(const char *why) {
    printf("SKIP: %s\n", why);
    exit(77);
}

const char *check_shared_path(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("SLM_SHARED");
    if (!root || !*root) root = "../shared";
    snprintf(buf, cap, "%s/%s", root, rel);
    if (access(buf, R_OK) != 0) return NULL;
    return buf;
}

const char *check_tmp_path(const char *name, char *buf, size_t cap) {
    const char *root = getenv("SLM_TMP");
    if (!root || !*root) root = "/tmp";
    snprintf(buf, cap, "%s/%ld-%s", root, (long)getpid(), name);
    return buf;
}

unsigned long long check_rng_u64(check_rng *r) {
    unsigned long long z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float check_rng_uniform(check_rng *r) {
    return (float)(check_rng_u64(r) >> 40) / 16777216.0f;
}

float check_rng_normal(check_rng *r) {
    float u1 = check_rng_uniform(r), u2 = check_rng_uniform(r);
    if (u1 < 1e-7f) u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
