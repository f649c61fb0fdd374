/* The compiled form of a grammar, shared by the parser and the matcher.
 *
 * Rules are alternatives of element sequences in one array `elems`:
 *   e >= 0        a byte set (index into `sets`)
 *   e == G_END    end of an alternative
 *   e <= G_REF(0) a reference to rule G_REF_RULE(e)
 * Rule r's alternatives start at alt_start[rule_alt[r] .. rule_alt[r+1]). */
#ifndef SLM_GRAMMAR_INTERNAL_H
#define SLM_GRAMMAR_INTERNAL_H

#include <stdint.h>

#include "grammar/grammar.h"

#define G_END (-1)
#define G_REF(r) (-2 - (int32_t)(r))
#define G_REF_RULE(e) (-2 - (e))

typedef struct gbyteset {
    uint64_t w[4];
} gbyteset;

static inline int gbs_has(const gbyteset *s, unsigned b) {
    return (int)((s->w[b >> 6] >> (b & 63)) & 1u);
}
static inline void gbs_add(gbyteset *s, unsigned b) {
    s->w[b >> 6] |= (uint64_t)1 << (b & 63);
}

struct slm_grammar {
    int32_t *elems;
    int32_t n_elems;
    gbyteset *sets;
    int32_t n_sets;
    int32_t *alt_start; /* [n_alts] */
    int32_t n_alts;
    int32_t *rule_alt; /* [n_rules + 1] */
    int32_t n_rules;
    int32_t root;
    char **rule_names; /* [n_rules], for messages */
};

#endif
