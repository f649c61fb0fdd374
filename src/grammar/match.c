/* The grammar matcher: a set of pushdown stacks over the compiled rules,
 * advanced one byte at a time, and token masks computed by walking a trie of
 * the vocabulary's byte strings with the stack set.
 *
 * Stacks are hash-consed nodes (pos, parent): pos is the element the stack
 * waits on (a byte set), parent the node to continue with when the current
 * alternative ends. Equal stacks are one node, so a set of stacks is a set of
 * ints, and what follows a node's byte set (its successors) is computed once
 * per node and cached. A reference in tail position reuses the parent (no
 * new frame), so right-recursive repetitions do not deepen the stacks.
 * Node 0 is the empty stack: the grammar has matched a complete sentence.
 *
 * Masks: the walk visits the trie in preorder, keeping the stack set after
 * each prefix; a byte no stack accepts skips the node's whole subtree. The
 * mask of a stack set is cached, so states that repeat (inside a string, or
 * between requests with the same grammar) cost one lookup. */
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/status.h"
#include "grammar/grammar_internal.h"

#define ACCEPT 0
#define MASK_CACHE 64
#define MAX_NODES (1 << 22) /* beyond this the caches are rebuilt at the next reset */
#define MAX_SETS (1 << 17)  /* interned stack sets, likewise */
#define T_UNKNOWN (-2)      /* transition not computed yet (-1: no stack takes the byte) */

typedef struct gnode {
    int32_t pos, parent;
    int32_t set; /* byte set of elems[pos] when it is one, else -1 */
    int32_t succ_off, succ_n;
} gnode;

typedef struct ivec {
    int32_t *v;
    int32_t n, cap;
} ivec;

static int ivec_reserve(ivec *a, int32_t n) {
    if (n <= a->cap) return 0;
    int32_t nc = a->cap ? a->cap : 16;
    while (nc < n) nc *= 2;
    int32_t *nv = realloc(a->v, (size_t)nc * sizeof *nv);
    if (!nv) return -1;
    a->v = nv;
    a->cap = nc;
    return 0;
}

static int ivec_push(ivec *a, int32_t x) {
    if (a->n == a->cap && ivec_reserve(a, a->n + 1)) return -1;
    a->v[a->n++] = x;
    return 0;
}

typedef struct mentry {
    uint64_t hash;
    int32_t *ids;
    int32_t n_ids;
    uint32_t *bits;
    int32_t n_allowed;
} mentry;

/* An interned set of stacks (sorted node ids) and its transitions: the set
 * reached over each byte, computed when first needed. The trie walk is then
 * mostly table lookups: states repeat across tokens and across masks. */
typedef struct gset {
    int32_t off, n; /* ids in set_ids */
    uint64_t hash;
    int32_t *trans; /* [256] set ids, T_UNKNOWN or -1; NULL until needed */
} gset;

struct slm_gmatch {
    const slm_grammar *g;
    gset *sets;
    int32_t n_sets, cap_sets;
    int32_t *set_ids;
    int64_t n_set_ids, cap_set_ids;
    int32_t *set_ht; /* open addressing: set ids, -1 empty */
    uint32_t set_ht_cap;
    int32_t start_set, cur_set;
    gnode *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t *ht; /* open addressing: node ids, -1 empty */
    uint32_t ht_cap;
    int32_t *succ;
    int64_t n_succ, cap_succ;
    uint32_t *estamp, *vstamp, *astamp; /* epochs per node */
    uint32_t eepoch, aepoch;
    int oom;
    int32_t depth; /* of expand's recursion */
    ivec start;    /* the stack set at the start */
    ivec cur;
    ivec t0, t1, exp;
    int32_t *lv; /* set id per trie depth */
    int32_t n_lv;
    mentry cache[MASK_CACHE];
    int32_t cache_next;
    int32_t cache_words; /* words per mask (for the vocabulary the cache was made with) */
    const slm_gvocab *cache_vocab;
    uint32_t *out_bits;
    slm_gmatch_stats stats;
};

struct slm_gvocab {
    int32_t n_vocab;
    char *bytes;
    uint32_t *off, *len;
    uint8_t *eog;
    int32_t *eog_ids;
    int32_t n_eog;
    /* trie, preorder */
    int32_t n_tn;
    uint8_t *tbyte;
    int32_t *tdepth, *tskip, *ttok_first, *ttok_n;
    int32_t *sorted; /* token ids in byte order */
    int32_t max_depth;
};

/* ------------------------------------------------------------- nodes */

static uint32_t hash2(int32_t a, int32_t b) {
    uint64_t h = (uint64_t)(uint32_t)a * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uint32_t)b;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    return (uint32_t)h;
}

static int grow_nodes(slm_gmatch *m) {
    int32_t nc = m->cap_nodes ? m->cap_nodes * 2 : 1024;
    gnode *nn = realloc(m->nodes, (size_t)nc * sizeof *nn);
    if (!nn) return -1;
    m->nodes = nn;
    uint32_t **st[3] = {&m->estamp, &m->vstamp, &m->astamp};
    for (int i = 0; i < 3; i++) {
        uint32_t *ns = realloc(*st[i], (size_t)nc * sizeof *ns);
        if (!ns) return -1;
        memset(ns + m->cap_nodes, 0, (size_t)(nc - m->cap_nodes) * sizeof *ns);
        *st[i] = ns;
    }
    m->cap_nodes = nc;
    return 0;
}

static int rehash(slm_gmatch *m, uint32_t cap) {
    int32_t *ht = malloc((size_t)cap * sizeof *ht);
    if (!ht) return -1;
    memset(ht, 0xff, (size_t)cap * sizeof *ht);
    for (int32_t id = 1; id < m->n_nodes; id++) {
        uint32_t h = hash2(m->nodes[id].pos, m->nodes[id].parent) & (cap - 1);
        while (ht[h] >= 0) h = (h + 1) & (cap - 1);
        ht[h] = id;
    }
    free(m->ht);
    m->ht = ht;
    m->ht_cap = cap;
    return 0;
}

/* The node (pos, parent); -1 when out of memory. */
static int32_t intern(slm_gmatch *m, int32_t pos, int32_t parent) {
    uint32_t h = hash2(pos, parent) & (m->ht_cap - 1);
    for (;;) {
        int32_t id = m->ht[h];
        if (id < 0) break;
        if (m->nodes[id].pos == pos && m->nodes[id].parent == parent) return id;
        h = (h + 1) & (m->ht_cap - 1);
    }
    if (m->n_nodes == m->cap_nodes && grow_nodes(m)) return -1;
    int32_t id = m->n_nodes++;
    gnode *n = &m->nodes[id];
    n->pos = pos;
    n->parent = parent;
    int32_t e = m->g->elems[pos];
    n->set = e >= 0 ? e : -1;
    n->succ_off = -1;
    n->succ_n = 0;
    m->ht[h] = id;
    if ((uint32_t)m->n_nodes * 2 > m->ht_cap && rehash(m, m->ht_cap * 2)) return -1;
    return id;
}

static void add_out(slm_gmatch *m, ivec *out, int32_t id) {
    if (m->estamp[id] == m->eepoch) return;
    m->estamp[id] = m->eepoch;
    if (ivec_push(out, id)) m->oom = 1;
}

/* Adds to `out` the terminal-topped stacks reached from element `pos` with
 * continuation `parent` (-1: the bottom). */
static void expand_(slm_gmatch *m, int32_t pos, int32_t parent, ivec *out);

/* Bounded recursion: a grammar (or an output) nested deeper than this fails
 * like an allocation would rather than exhausting the stack. */
static void expand(slm_gmatch *m, int32_t pos, int32_t parent, ivec *out) {
    if (++m->depth > 20000) m->oom = 1;
    expand_(m, pos, parent, out);
    m->depth--;
}

static void expand_(slm_gmatch *m, int32_t pos, int32_t parent, ivec *out) {
    const slm_grammar *g = m->g;
    if (m->oom) return;
    int32_t e = g->elems[pos];
    if (e == G_END) {
        if (parent < 0) {
            add_out(m, out, ACCEPT);
            return;
        }
        if (m->vstamp[parent] == m->eepoch) return; /* continued already in this expansion */
        m->vstamp[parent] = m->eepoch;
        gnode p = m->nodes[parent];
        expand(m, p.pos, p.parent, out);
        return;
    }
    if (e >= 0) {
        int32_t id = intern(m, pos, parent);
        if (id < 0) {
            m->oom = 1;
            return;
        }
        add_out(m, out, id);
        return;
    }
    int32_t r = G_REF_RULE(e);
    int32_t cont = parent;
    if (g->elems[pos + 1] != G_END) {
        cont = intern(m, pos + 1, parent);
        if (cont < 0) {
            m->oom = 1;
            return;
        }
    }
    for (int32_t a = g->rule_alt[r]; a < g->rule_alt[r + 1]; a++)
        expand(m, g->alt_start[a], cont, out);
}

static void begin_expand(slm_gmatch *m) {
    if (++m->eepoch == 0) {
        memset(m->estamp, 0, (size_t)m->cap_nodes * sizeof *m->estamp);
        memset(m->vstamp, 0, (size_t)m->cap_nodes * sizeof *m->vstamp);
        m->eepoch = 1;
    }
}

/* Successors of a terminal node (what follows its byte). */
static int succ_of(slm_gmatch *m, int32_t id) {
    if (m->nodes[id].succ_off >= 0) return 0;
    begin_expand(m);
    m->exp.n = 0;
    gnode nd = m->nodes[id];
    expand(m, nd.pos + 1, nd.parent, &m->exp);
    if (m->oom) return -1;
    if (m->n_succ + m->exp.n > m->cap_succ) {
        int64_t nc = m->cap_succ ? m->cap_succ : 1024;
        while (nc < m->n_succ + m->exp.n) nc *= 2;
        int32_t *ns = realloc(m->succ, (size_t)nc * sizeof *ns);
        if (!ns) return -1;
        m->succ = ns;
        m->cap_succ = nc;
    }
    memcpy(m->succ + m->n_succ, m->exp.v, (size_t)m->exp.n * sizeof *m->exp.v);
    m->nodes[id].succ_off = (int32_t)m->n_succ;
    m->nodes[id].succ_n = m->exp.n;
    m->n_succ += m->exp.n;
    return 0;
}

/* out = the stacks of `in` advanced over byte b. -1 on out of memory. */
static int advance(slm_gmatch *m, const int32_t *in, int32_t n_in, unsigned b, ivec *out) {
    out->n = 0;
    if (++m->aepoch == 0) {
        memset(m->astamp, 0, (size_t)m->cap_nodes * sizeof *m->astamp);
        m->aepoch = 1;
    }
    const gbyteset *sets = m->g->sets;
    for (int32_t i = 0; i < n_in; i++) {
        int32_t id = in[i];
        if (id == ACCEPT) continue;
        if (!gbs_has(&sets[m->nodes[id].set], b)) continue;
        if (m->nodes[id].succ_off < 0 && succ_of(m, id)) return -1;
        const int32_t *s = m->succ + m->nodes[id].succ_off;
        int32_t ns = m->nodes[id].succ_n;
        if (ivec_reserve(out, out->n + ns)) return -1;
        for (int32_t k = 0; k < ns; k++) {
            int32_t x = s[k];
            if (m->astamp[x] == m->aepoch) continue;
            m->astamp[x] = m->aepoch;
            out->v[out->n++] = x;
        }
    }
    return 0;
}

static void sort_ids(int32_t *v, int32_t n) {
    for (int32_t i = 1; i < n; i++) {
        int32_t x = v[i], j = i;
        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

/* ------------------------------------------------------------- sets */

static uint64_t set_hash(const int32_t *ids, int32_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int32_t i = 0; i < n; i++) {
        h ^= (uint32_t)ids[i];
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 31);
}

static void sets_free(slm_gmatch *m) {
    for (int32_t i = 0; i < m->n_sets; i++) free(m->sets[i].trans);
    m->n_sets = 0;
    m->n_set_ids = 0;
    if (m->set_ht) memset(m->set_ht, 0xff, (size_t)m->set_ht_cap * sizeof *m->set_ht);
}

static int set_rehash(slm_gmatch *m, uint32_t cap) {
    int32_t *ht = malloc((size_t)cap * sizeof *ht);
    if (!ht) return -1;
    memset(ht, 0xff, (size_t)cap * sizeof *ht);
    for (int32_t i = 0; i < m->n_sets; i++) {
        uint32_t h = (uint32_t)m->sets[i].hash & (cap - 1);
        while (ht[h] >= 0) h = (h + 1) & (cap - 1);
        ht[h] = i;
    }
    free(m->set_ht);
    m->set_ht = ht;
    m->set_ht_cap = cap;
    return 0;
}

/* The id of a sorted set of node ids; -1 when out of memory. */
static int32_t set_intern(slm_gmatch *m, const int32_t *ids, int32_t n) {
    uint64_t hv = set_hash(ids, n);
    uint32_t h = (uint32_t)hv & (m->set_ht_cap - 1);
    for (;;) {
        int32_t id = m->set_ht[h];
        if (id < 0) break;
        const gset *s = &m->sets[id];
        if (s->hash == hv && s->n == n && !memcmp(m->set_ids + s->off, ids, (size_t)n * 4))
            return id;
        h = (h + 1) & (m->set_ht_cap - 1);
    }
    if (m->n_sets == m->cap_sets) {
        int32_t nc = m->cap_sets ? m->cap_sets * 2 : 256;
        gset *ns = realloc(m->sets, (size_t)nc * sizeof *ns);
        if (!ns) return -1;
        m->sets = ns;
        m->cap_sets = nc;
    }
    if (m->n_set_ids + n > m->cap_set_ids) {
        int64_t nc = m->cap_set_ids ? m->cap_set_ids : 1024;
        while (nc < m->n_set_ids + n) nc *= 2;
        int32_t *ni = realloc(m->set_ids, (size_t)nc * sizeof *ni);
        if (!ni) return -1;
        m->set_ids = ni;
        m->cap_set_ids = nc;
    }
    int32_t id = m->n_sets++;
    gset *s = &m->sets[id];
    s->off = (int32_t)m->n_set_ids;
    s->n = n;
    s->hash = hv;
    s->trans = NULL;
    memcpy(m->set_ids + m->n_set_ids, ids, (size_t)n * sizeof *ids);
    m->n_set_ids += n;
    m->set_ht[h] = id;
    if ((uint32_t)m->n_sets * 2 > m->set_ht_cap && set_rehash(m, m->set_ht_cap * 2)) return -1;
    return id;
}

static void sort_ids(int32_t *v, int32_t n);

/* The set reached from set `sid` over byte b: an id, -1 when no stack takes
 * it, -2 on out of memory. */
static int32_t set_step(slm_gmatch *m, int32_t sid, unsigned b) {
    gset *s = &m->sets[sid];
    if (s->trans) {
        int32_t t = s->trans[b];
        if (t != T_UNKNOWN) return t;
    } else {
        s->trans = malloc(256 * sizeof *s->trans);
        if (!s->trans) return -2;
        for (int i = 0; i < 256; i++) s->trans[i] = T_UNKNOWN;
    }
    if (advance(m, m->set_ids + s->off, s->n, b, &m->t0)) return -2;
    int32_t t = -1;
    if (m->t0.n > 0) {
        sort_ids(m->t0.v, m->t0.n);
        t = set_intern(m, m->t0.v, m->t0.n);
        if (t < 0) return -2;
    }
    m->sets[sid].trans[b] = t;
    return t;
}

/* ----------------------------------------------------------- matcher */

static void cache_clear(slm_gmatch *m) {
    for (int i = 0; i < MASK_CACHE; i++) {
        free(m->cache[i].ids);
        free(m->cache[i].bits);
        memset(&m->cache[i], 0, sizeof m->cache[i]);
    }
    m->cache_next = 0;
}

static slm_status init_nodes(slm_gmatch *m) {
    m->n_nodes = 0;
    m->n_succ = 0;
    if (!m->cap_nodes && grow_nodes(m)) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    memset(m->estamp, 0, (size_t)m->cap_nodes * sizeof *m->estamp);
    memset(m->vstamp, 0, (size_t)m->cap_nodes * sizeof *m->vstamp);
    memset(m->astamp, 0, (size_t)m->cap_nodes * sizeof *m->astamp);
    m->eepoch = m->aepoch = 0;
    m->nodes[0].pos = -1;
    m->nodes[0].parent = -1;
    m->nodes[0].set = -1;
    m->nodes[0].succ_off = 0;
    m->nodes[0].succ_n = 0;
    m->n_nodes = 1;
    if (rehash(m, 1024)) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    sets_free(m);
    if (!m->set_ht && set_rehash(m, 1024)) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    cache_clear(m);
    begin_expand(m);
    m->start.n = 0;
    const slm_grammar *g = m->g;
    for (int32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1]; a++)
        expand(m, g->alt_start[a], -1, &m->start);
    if (m->oom) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    sort_ids(m->start.v, m->start.n);
    m->start_set = set_intern(m, m->start.v, m->start.n);
    if (m->start_set < 0) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    return SLM_OK;
}

slm_status slm_gmatch_new(const slm_grammar *g, slm_gmatch **out) {
    if (!g || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_gmatch_new: NULL argument");
    slm_gmatch *m = slm_calloc(1, sizeof *m);
    if (!m) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    m->g = g;
    slm_status st = init_nodes(m);
    if (st != SLM_OK) {
        slm_gmatch_free(m);
        return st;
    }
    slm_gmatch_reset(m);
    *out = m;
    return SLM_OK;
}

void slm_gmatch_free(slm_gmatch *m) {
    if (!m) return;
    cache_clear(m);
    free(m->nodes);
    free(m->ht);
    free(m->succ);
    free(m->estamp);
    free(m->vstamp);
    free(m->astamp);
    sets_free(m);
    free(m->sets);
    free(m->set_ids);
    free(m->set_ht);
    free(m->start.v);
    free(m->cur.v);
    free(m->t0.v);
    free(m->t1.v);
    free(m->exp.v);
    free(m->lv);
    free(m->out_bits);
    free(m);
}

/* Makes set `sid` the current state (its ids copied to m->cur). */
static void set_cur(slm_gmatch *m, int32_t sid) {
    const gset *s = &m->sets[sid];
    m->cur.n = 0;
    if (ivec_reserve(&m->cur, s->n)) {
        m->oom = 1;
        return;
    }
    memcpy(m->cur.v, m->set_ids + s->off, (size_t)s->n * sizeof *m->cur.v);
    m->cur.n = s->n;
    m->cur_set = sid;
}

void slm_gmatch_reset(slm_gmatch *m) {
    if (!m) return;
    if (m->n_nodes > MAX_NODES || m->n_sets > MAX_SETS || m->oom) {
        m->oom = 0;
        if (init_nodes(m) != SLM_OK) m->oom = 1;
    }
    set_cur(m, m->start_set);
}

/* The set reached from the current state over bytes; -1 when rejected. */
static int32_t walk(slm_gmatch *m, const char *s, size_t n) {
    int32_t sid = m->cur_set;
    for (size_t i = 0; i < n && sid >= 0; i++) sid = set_step(m, sid, (unsigned char)s[i]);
    if (sid == -2) m->oom = 1;
    return sid < 0 ? -1 : sid;
}

int slm_gmatch_accept_bytes(slm_gmatch *m, const char *s, size_t n) {
    if (!m || m->oom) return 0;
    int32_t sid = walk(m, s, n);
    if (sid < 0) return 0;
    set_cur(m, sid);
    return 1;
}

int slm_gmatch_would_accept(slm_gmatch *m, const char *s, size_t n) {
    if (!m || m->oom) return 0;
    return walk(m, s, n) >= 0;
}

int slm_gmatch_is_accepting(const slm_gmatch *m) {
    if (!m) return 0;
    for (int32_t i = 0; i < m->cur.n; i++)
        if (m->cur.v[i] == ACCEPT) return 1;
    return 0;
}

int slm_gmatch_is_done(const slm_gmatch *m) {
    return m && m->cur.n == 1 && m->cur.v[0] == ACCEPT;
}

void slm_gmatch_get_stats(const slm_gmatch *m, slm_gmatch_stats *st) {
    if (!m || !st) return;
    *st = m->stats;
    st->nodes = m->n_nodes;
}

/* ------------------------------------------------------------- vocab */

typedef struct tokref {
    const char *p;
    uint32_t n;
    int32_t id;
} tokref;

static int tokref_cmp(const void *a, const void *b) {
    const tokref *x = a, *y = b;
    uint32_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void slm_gvocab_free(slm_gvocab *v) {
    if (!v) return;
    free(v->bytes);
    free(v->off);
    free(v->len);
    free(v->eog);
    free(v->eog_ids);
    free(v->tbyte);
    free(v->tdepth);
    free(v->tskip);
    free(v->ttok_first);
    free(v->ttok_n);
    free(v->sorted);
    free(v);
}

int32_t slm_gvocab_n_vocab(const slm_gvocab *v) {
    return v ? v->n_vocab : 0;
}

const char *slm_gvocab_bytes(const slm_gvocab *v, int32_t id, size_t *len) {
    if (!v || id < 0 || id >= v->n_vocab || v->len[id] == 0) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->len[id];
    return v->bytes + v->off[id];
}

slm_status slm_gvocab_new(const slm_tokenizer *tok, slm_gvocab **out) {
    if (!tok || !out) return slm_fail(SLM_ERR_INVALID_ARG, "slm_gvocab_new: NULL argument");
    *out = NULL;
    int32_t n = slm_tokenizer_n_vocab(tok);
    slm_gvocab *v = slm_calloc(1, sizeof *v);
    tokref *refs = NULL;
    if (!v) return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory");
    v->n_vocab = n;
    v->off = slm_calloc((size_t)n, sizeof *v->off);
    v->len = slm_calloc((size_t)n, sizeof *v->len);
    v->eog = slm_calloc((size_t)n, 1);
    v->eog_ids = slm_calloc((size_t)n, sizeof *v->eog_ids);
    if (!v->off || !v->len || !v->eog || !v->eog_ids) goto oom;
    size_t total = 0;
    for (int32_t id = 0; id < n; id++) {
        size_t l = slm_tokenizer_decode_token(tok, id, 0, NULL, 0);
        if (l > 65536) l = 0; /* no real token is this long; never allowed */
        v->off[id] = (uint32_t)total;
        v->len[id] = (uint32_t)l;
        total += l;
        if (total > UINT32_MAX) goto oom;
        if (slm_tokenizer_is_eog(tok, id)) {
            v->eog[id] = 1;
            v->eog_ids[v->n_eog++] = id;
        }
    }
    v->bytes = malloc(total ? total : 1);
    if (!v->bytes) goto oom;
    int32_t n_ref = 0;
    for (int32_t id = 0; id < n; id++) {
        if (v->len[id] == 0) continue;
        slm_tokenizer_decode_token(tok, id, 0, v->bytes + v->off[id], v->len[id]);
        if (v->eog[id])
            v->len[id] = 0; /* an EOG token that prints: still only an end */
        else
            n_ref++;
    }
    refs = slm_calloc((size_t)n_ref, sizeof *refs);
    v->sorted = slm_calloc((size_t)n_ref, sizeof *v->sorted);
    /* at most one trie node per byte */
    size_t max_nodes = 0;
    for (int32_t id = 0; id < n; id++) max_nodes += v->len[id];
    v->tbyte = slm_calloc(max_nodes, 1);
    v->tdepth = slm_calloc(max_nodes, sizeof *v->tdepth);
    v->tskip = slm_calloc(max_nodes, sizeof *v->tskip);
    v->ttok_first = slm_calloc(max_nodes, sizeof *v->ttok_first);
    v->ttok_n = slm_calloc(max_nodes, sizeof *v->ttok_n);
    if (!refs || !v->sorted || !v->tbyte || !v->tdepth || !v->tskip || !v->ttok_first || !v->ttok_n)
        goto oom;
    n_ref = 0;
    for (int32_t id = 0; id < n; id++) {
        if (v->len[id] == 0) continue;
        refs[n_ref].p = v->bytes + v->off[id];
        refs[n_ref].n = v->len[id];
        refs[n_ref].id = id;
        n_ref++;
    }
    qsort(refs, (size_t)n_ref, sizeof *refs, tokref_cmp);
    int32_t *path = malloc(65538 * sizeof *path);
    if (!path) goto oom;
    int32_t path_len = 0, tn = 0;
    for (int32_t k = 0; k < n_ref; k++) {
        const tokref *t = &refs[k];
        v->sorted[k] = t->id;
        uint32_t lcp = 0;
        if (k > 0) {
            const tokref *p = &refs[k - 1];
            uint32_t lim = p->n < t->n ? p->n : t->n;
            while (lcp < lim && p->p[lcp] == t->p[lcp]) lcp++;
        }
        if ((int32_t)lcp > path_len) lcp = (uint32_t)path_len;
        for (uint32_t d = lcp + 1; d <= t->n; d++) {
            v->tbyte[tn] = (uint8_t)t->p[d - 1];
            v->tdepth[tn] = (int32_t)d;
            v->ttok_first[tn] = -1;
            path[d] = tn++;
        }
        path_len = (int32_t)t->n;
        int32_t end = path[t->n];
        if (v->ttok_first[end] < 0) v->ttok_first[end] = k;
        v->ttok_n[end]++;
        if ((int32_t)t->n > v->max_depth) v->max_depth = (int32_t)t->n;
    }
    v->n_tn = tn;
    free(path);
    /* give back what the upper bound reserved */
    if (tn > 0) {
        void *p;
        if ((p = realloc(v->tbyte, (size_t)tn))) v->tbyte = p;
        if ((p = realloc(v->tdepth, (size_t)tn * sizeof *v->tdepth))) v->tdepth = p;
        if ((p = realloc(v->ttok_first, (size_t)tn * sizeof *v->ttok_first))) v->ttok_first = p;
        if ((p = realloc(v->ttok_n, (size_t)tn * sizeof *v->ttok_n))) v->ttok_n = p;
    }
    /* skip[i]: the first node after i's subtree */
    int32_t *stack = malloc(((size_t)v->max_depth + 1) * sizeof *stack);
    if (!stack) goto oom;
    int32_t sp = 0;
    for (int32_t i = 0; i < tn; i++) {
        while (sp > 0 && v->tdepth[stack[sp - 1]] >= v->tdepth[i]) v->tskip[stack[--sp]] = i;
        stack[sp++] = i;
    }
    while (sp > 0) v->tskip[stack[--sp]] = tn;
    free(stack);
    if (tn > 0) {
        int32_t *p = realloc(v->tskip, (size_t)tn * sizeof *v->tskip);
        if (p) v->tskip = p;
    }
    free(refs);
    *out = v;
    return SLM_OK;
oom:
    free(refs);
    slm_gvocab_free(v);
    return slm_fail(SLM_ERR_NOMEM, "grammar: out of memory for the token trie");
}

/* ------------------------------------------------------------- masks */

static int ensure_levels(slm_gmatch *m, int32_t n) {
    if (n <= m->n_lv) return 0;
    int32_t *nl = realloc(m->lv, (size_t)n * sizeof *nl);
    if (!nl) return -1;
    m->lv = nl;
    m->n_lv = n;
    return 0;
}

/* Computes the mask of the current state into e (bits zeroed by the caller). */
static int compute_mask(slm_gmatch *m, const slm_gvocab *v, uint32_t *bits, int32_t *n_allowed) {
    if (ensure_levels(m, v->max_depth + 1)) return -1;
    int32_t *lv = m->lv;
    lv[0] = m->cur_set;
    int32_t allowed = 0;
    int64_t walked = 0;
    for (int32_t i = 0; i < v->n_tn;) {
        int32_t d = v->tdepth[i];
        walked++;
        const int32_t *tr = m->sets[lv[d - 1]].trans;
        int32_t t = tr ? tr[v->tbyte[i]] : T_UNKNOWN;
        if (t == T_UNKNOWN) t = set_step(m, lv[d - 1], v->tbyte[i]);
        if (t == -2) return -1;
        if (t < 0) {
            i = v->tskip[i];
            continue;
        }
        lv[d] = t;
        if (v->ttok_n[i]) {
            for (int32_t k = v->ttok_first[i]; k < v->ttok_first[i] + v->ttok_n[i]; k++) {
                int32_t id = v->sorted[k];
                bits[id >> 5] |= (uint32_t)1 << (id & 31);
            }
            allowed += v->ttok_n[i];
        }
        i++;
    }
    m->stats.trie_nodes_walked += walked;
    *n_allowed = allowed;
    return 0;
}

int32_t slm_gmatch_mask(slm_gmatch *m, const slm_gvocab *v, const uint32_t **bits) {
    *bits = NULL;
    if (!m || !v || m->oom) return -1;
    int32_t words = (v->n_vocab + 31) / 32;
    if (m->cache_vocab != v || m->cache_words != words) {
        cache_clear(m);
        free(m->out_bits);
        m->out_bits = slm_calloc((size_t)words, sizeof *m->out_bits);
        if (!m->out_bits) return -1;
        m->cache_vocab = v;
        m->cache_words = words;
    }
    m->stats.masks++;
    uint64_t h = set_hash(m->cur.v, m->cur.n);
    mentry *e = NULL;
    for (int i = 0; i < MASK_CACHE; i++) {
        mentry *c = &m->cache[i];
        if (c->bits && c->hash == h && c->n_ids == m->cur.n &&
            !memcmp(c->ids, m->cur.v, (size_t)m->cur.n * sizeof *c->ids)) {
            e = c;
            m->stats.cache_hits++;
            break;
        }
    }
    if (!e) {
        e = &m->cache[m->cache_next];
        m->cache_next = (m->cache_next + 1) % MASK_CACHE;
        free(e->ids);
        e->ids = malloc(((size_t)m->cur.n + 1) * sizeof *e->ids);
        if (!e->bits) e->bits = malloc((size_t)words * sizeof *e->bits);
        if (!e->ids || !e->bits) {
            free(e->ids);
            free(e->bits);
            memset(e, 0, sizeof *e);
            return -1;
        }
        memset(e->bits, 0, (size_t)words * sizeof *e->bits);
        e->n_ids = 0;
        if (compute_mask(m, v, e->bits, &e->n_allowed)) {
            free(e->ids);
            free(e->bits);
            memset(e, 0, sizeof *e);
            return -1;
        }
        memcpy(e->ids, m->cur.v, (size_t)m->cur.n * sizeof *e->ids);
        e->n_ids = m->cur.n;
        e->hash = h;
    }
    memcpy(m->out_bits, e->bits, (size_t)words * sizeof *e->bits);
    int32_t n = e->n_allowed;
    if (slm_gmatch_is_accepting(m)) {
        for (int32_t k = 0; k < v->n_eog; k++) {
            int32_t id = v->eog_ids[k];
            m->out_bits[id >> 5] |= (uint32_t)1 << (id & 31);
            n++;
        }
    }
    *bits = m->out_bits;
    return n;
}

int slm_gmatch_token_ok(slm_gmatch *m, const slm_gvocab *v, int32_t id) {
    if (!m || !v || id < 0 || id >= v->n_vocab) return 0;
    if (v->eog[id]) return slm_gmatch_is_accepting(m);
    if (v->len[id] == 0) return 0;
    return slm_gmatch_would_accept(m, v->bytes + v->off[id], v->len[id]);
}

int slm_gmatch_accept_token(slm_gmatch *m, const slm_gvocab *v, int32_t id) {
    if (!m || !v || id < 0 || id >= v->n_vocab) return 0;
    if (v->eog[id]) return slm_gmatch_is_accepting(m);
    if (v->len[id] == 0) return 0;
    return slm_gmatch_accept_bytes(m, v->bytes + v->off[id], v->len[id]);
}
