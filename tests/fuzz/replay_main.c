/* Replays saved inputs through a fuzz target's entry point without libFuzzer:
 * every file named, and every file in the directories named (the seed
 * corpus and the regression inputs of crashes once found). A crash, a
 * sanitizer report or a broken invariant fails the test. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_MAX_INPUT (64u << 20)

static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            if (cap >= REPLAY_MAX_INPUT) break;
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    if (!buf) return -1;
    /* An exact-size copy, so ASan sees reads past the end of the input. */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    int n_inputs = 0, failed = 0;
    for (int a = 1; a < argc; a++) {
        struct stat sb;
        if (stat(argv[a], &sb) != 0) continue; /* e.g. no regressions saved yet */
        if (!S_ISDIR(sb.st_mode)) {
            failed |= replay_file(argv[a]) != 0;
            n_inputs++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            size_t pl = strlen(argv[a]) + strlen(e->d_name) + 2;
            char *p = malloc(pl);
            if (!p) return 1;
            snprintf(p, pl, "%s/%s", argv[a], e->d_name);
            if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                failed |= replay_file(p) != 0;
                n_inputs++;
            }
            free(p);
        }
        closedir(d);
    }
    printf("replayed %d inputs\n", n_inputs);
    if (n_inputs == 0) {
        fprintf(stderr, "replay: no inputs found (the seed corpus is missing)\n");
        return 1;
    }
    return failed ? 1 : 0;
}
