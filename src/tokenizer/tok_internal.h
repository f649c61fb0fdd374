/* The tokenizer's internals, shared by its files and its unit tests. A
 * tokenizer is built in four steps — tok_new, tok_set_token for every id,
 * tok_index_pieces, then merges, normalizers, pre-tokenizers and specials —
 * and sealed with tok_finalize. The loaders (gguf_vocab.c, hf_json.c) and the
 * tests use the same steps.
 *
 * Encoding runs as Hugging Face `tokenizers` does:
 *   1. added tokens are cut out of the raw text (leftmost-longest);
 *   2. each remaining piece goes through the normalizers;
 *   3. added tokens marked `normalized` are cut out of the normalized piece;
 *   4. the pre-tokenizers split it into words;
 *   5. the model turns each word into ids (BPE by merge rank, or SentencePiece
 *      merging by piece score as llama.cpp does for GGUF "llama" vocabularies). */
#ifndef SLM_TOKENIZER_TOK_INTERNAL_H
#define SLM_TOKENIZER_TOK_INTERNAL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/hashmap.h"
#include "tokenizer/tok_buf.h"
#include "tokenizer/tokenizer.h"

/* Named limits: anything beyond them is a malformed tokenizer. */
#define TOK_MAX_VOCAB (1 << 22)        /* token ids */
#define TOK_MAX_PIECE (1 << 16)        /* bytes in one piece */
#define TOK_MAX_MERGES (1 << 24)       /* merge rules */
#define TOK_MAX_STEPS 16               /* normalizers, and pre-tokenizers */
#define TOK_MAX_AFFIX 8                /* tokens added before / after a text */
#define TOK_MAX_PATTERN 4096           /* bytes in one pre-tokenizer pattern */
#define TOK_MAX_TEXT ((size_t)1 << 31) /* bytes of text encoded in one call */
#define TOK_MAX_CROSS 64               /* characters before U+2581 inside pieces (see meta_split) */

/* Token flags. */
enum {
    TOK_F_DEFINED = 1,      /* the id has a piece */
    TOK_F_MODEL = 2,        /* in the model vocabulary (found by piece lookups) */
    TOK_F_ADDED = 4,        /* an added token, cut out of the text before the model */
    TOK_F_SPECIAL = 8,      /* matched only with SLM_TOKENIZE_PARSE_SPECIAL */
    TOK_F_LSTRIP = 16,      /* the match takes the whitespace on its left */
    TOK_F_RSTRIP = 32,      /* ... and on its right */
    TOK_F_NORMALIZED = 64,  /* matched in normalized text rather than raw text */
    TOK_F_SINGLE_WORD = 128 /* only matched between non-word characters */
};

typedef struct tok_entry {
    uint32_t off, len;         /* piece bytes in the pool (NUL-terminated there) */
    uint32_t dec_off, dec_len; /* decoded bytes in dec_pool (tok_build_decoded) */
    float score;
    uint8_t type;  /* SLM_TOKTYPE_* */
    uint8_t flags; /* TOK_F_* */
} tok_entry;

typedef struct tok_piece_slot {
    int32_t id;   /* -1: empty */
    uint32_t tag; /* high bits of the piece's hash: most misses end here */
} tok_piece_slot;

typedef enum tok_model {
    TOK_MODEL_BPE = 1, /* merges by rank (Hugging Face BPE; GGUF "gpt2") */
    TOK_MODEL_SPM = 2  /* merges by piece score (llama.cpp / SentencePiece BPE) */
} tok_model;

typedef enum tok_norm_kind {
    TOK_NORM_PREPEND = 1, /* `to` in front of a non-empty piece */
    TOK_NORM_REPLACE,     /* every `from` becomes `to` */
    TOK_NORM_NFC,
    TOK_NORM_NFD,
    TOK_NORM_STRIP /* whitespace: `left`, `right` */
} tok_norm_kind;

typedef struct tok_norm {
    tok_norm_kind kind;
    char *from, *to;
    size_t from_len, to_len;
    int left, right;
} tok_norm;

typedef enum tok_split_behavior {
    TOK_SPLIT_REMOVED = 1,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS
} tok_split_behavior;

typedef enum tok_pt_kind {
    TOK_PT_SPLIT = 1,   /* regex (or literal) split */
    TOK_PT_METASPACE,   /* spaces -> replacement, optional prefix, optional split */
    TOK_PT_PREFIX_SPACE /* ByteLevel(add_prefix_space): " " in front unless there */
} tok_pt_kind;

typedef enum tok_prepend {
    TOK_PREPEND_ALWAYS = 1,
    TOK_PREPEND_FIRST,
    TOK_PREPEND_NEVER
} tok_prepend;

typedef struct tok_pretok {
    tok_pt_kind kind;
    pcre2_code *re;
    tok_split_behavior behavior;
    int invert;
    char repl[4]; /* METASPACE: the replacement character (UTF-8) */
    size_t repl_len;
    tok_prepend prepend;
    int split;
} tok_pretok;

/* Added tokens: a byte trie, matched leftmost-longest. */
typedef struct tok_trie {
    tok_u64map edges; /* (node << 8 | byte) -> child node */
    int32_t *term;    /* node -> token id ending there, or -1 */
    uint32_t n_nodes, cap_nodes;
    uint8_t first[256]; /* bytes that start some token */
    int32_t n_tokens;
} tok_trie;

typedef enum tok_decoder {
    TOK_DEC_SPM = 1,      /* U+2581 -> space, <0xXX> -> byte */
    TOK_DEC_BYTELEVEL = 2 /* GPT-2 byte chars -> bytes */
} tok_decoder;

#define TOK_BYTE_CHARS 324 /* code points below this may be GPT-2 byte chars */

struct slm_tokenizer {
    slm_tok_kind kind;
    tok_model model;
    int32_t n_vocab;
    tok_entry *tok;
    tok_buf pool;
    tok_buf dec_pool; /* what each token decodes to */

    tok_piece_slot *slots; /* piece -> id over TOK_F_MODEL tokens */
    size_t slot_cap;
    tok_u64map merges; /* (a << 32 | b) -> (rank << 32 | merged id) */
    int32_t n_merges;

    tok_trie raw_trie, norm_trie;
    tok_norm norm[TOK_MAX_STEPS];
    int n_norm;
    tok_pretok pt[TOK_MAX_STEPS];
    int n_pt;

    int byte_level;    /* words are mapped to GPT-2 byte chars before the model */
    int ignore_merges; /* a word found whole in the vocabulary is one token */
    int byte_fallback; /* unknown characters become <0xXX> tokens */
    int fuse_unk;
    int32_t unk;
    int32_t byte_tok[256];           /* <0xXX> token per byte, -1 when absent */
    int32_t byte_char_tok[256];      /* token of the GPT-2 char of each byte, -1 when absent */
    int16_t cp_byte[TOK_BYTE_CHARS]; /* GPT-2 char -> byte, -1 */
    /* Long SentencePiece words split before U+2581 where no piece can span the
     * cut: meta_split is set when U+2581 is a piece, and meta_cross lists the
     * characters some piece has right before a U+2581 (no cut after those). */
    int meta_split;
    uint32_t meta_cross[TOK_MAX_CROSS];
    int n_meta_cross;
    char byte_chr[256][2]; /* GPT-2 char of each byte, UTF-8 */
    uint8_t byte_chr_len[256];

    int32_t bos, eos, eot, eom, pad;
    int add_bos, add_eos;
    int32_t prefix[TOK_MAX_AFFIX], suffix[TOK_MAX_AFFIX]; /* added by SLM_TOKENIZE_ADD_BOS */
    int n_prefix, n_suffix;
    uint8_t *eog; /* bitmap over ids */

    tok_decoder decoder;
    int dec_meta;     /* SPM decoder: U+2581 -> " " */
    int decode_flags; /* flags that reproduce the source's own decoder */
    char kind_name[8];
};

/* ---- building (vocab.c) ---------------------------------------------------- */
slm_status tok_new(slm_tok_kind kind, tok_model model, int32_t n_vocab, slm_tokenizer **out);
/* Sets id's piece (copied), score, SLM_TOKTYPE_* type and TOK_F_* flags. */
slm_status tok_set_token(slm_tokenizer *t, int32_t id, const char *text, size_t len, float score,
                         int type, unsigned flags);
/* Builds the piece -> id index over TOK_F_MODEL tokens (a repeated piece maps
 * to the last id that has it, as llama.cpp and serde do). */
slm_status tok_index_pieces(slm_tokenizer *t);
/* Model piece lookup: the id or -1. */
int32_t tok_lookup(const slm_tokenizer *t, const char *s, size_t n);
/* Adds merge rule `a b` with the given rank. *added is 0 (and nothing is
 * added) when a, b or a+b is not a model piece. `overwrite`: a repeated pair
 * takes the later rank (Hugging Face) or keeps the first (llama.cpp). */
slm_status tok_add_merge(slm_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                         int32_t rank, int overwrite, int *added);
/* Adds a normalizer step (strings copied). */
slm_status tok_add_norm(slm_tokenizer *t, tok_norm_kind kind, const char *from, size_t from_len,
                        const char *to, size_t to_len);
slm_status tok_set_affixes(slm_tokenizer *t, const int32_t *prefix, int n_prefix,
                           const int32_t *suffix, int n_suffix);
/* Builds the added-token tries, byte tables, decoded pieces and
 * end-of-generation set. May be called again after a change. */
slm_status tok_finalize(slm_tokenizer *t);
/* decode.c: each token's decoded bytes, from the decoder settings. */
slm_status tok_build_decoded(slm_tokenizer *t);

static inline const char *tok_piece(const slm_tokenizer *t, int32_t id) {
    return t->pool.data + t->tok[id].off;
}

/* ---- pre-tokenizers (pretokenize.c) ------------------------------------------ */
/* Adds a regex split. The pattern is in Oniguruma / Hugging Face syntax; \s and
 * \S are narrowed to Unicode White_Space as Oniguruma has them. */
slm_status tok_add_split_regex(slm_tokenizer *t, const char *pattern, size_t len,
                               tok_split_behavior behavior, int invert);
slm_status tok_add_split_literal(slm_tokenizer *t, const char *lit, size_t len,
                                 tok_split_behavior behavior, int invert);
slm_status tok_add_metaspace(slm_tokenizer *t, const char *repl, size_t repl_len,
                             tok_prepend prepend, int split);
slm_status tok_add_prefix_space(slm_tokenizer *t);
/* The regexes llama.cpp uses for a GGUF `tokenizer.ggml.pre` value (also sets
 * ignore_merges for the Llama 3 family). SLM_ERR_UNSUPPORTED for an unknown name. */
slm_status tok_set_pre_type(slm_tokenizer *t, const char *name, size_t len);
void tok_pretok_free(tok_pretok *p);

/* ---- added tokens (added.c) ---------------------------------------------- */
slm_status tok_trie_add(tok_trie *tr, const char *s, size_t n, int32_t id);
void tok_trie_free(tok_trie *tr);
/* Finds the leftmost-longest added token in text[from, len): 1 with the match
 * [*ms, *me) (whitespace taken by lstrip/rstrip included) and *id, else 0.
 * Tokens flagged TOK_F_SPECIAL are skipped unless `special`. */
int tok_trie_find(const slm_tokenizer *t, const tok_trie *tr, const char *text, size_t len,
                  size_t from, int special, size_t *ms, size_t *me, int32_t *id);

/* ---- encoding ------------------------------------------------------------- */
typedef struct tok_span {
    size_t off, len;
    int origin0; /* starts at offset 0 of the caller's text */
} tok_span;

typedef struct tok_sym {
    int32_t id; /* token (BPE) or byte offset in the word (SPM) */
    int32_t prev, next;
    uint32_t len; /* bytes; 0 once merged away */
} tok_sym;

typedef struct tok_heap_item {
    uint64_t key; /* smallest first */
    int32_t a, b;
} tok_heap_item;

typedef struct tok_mark {
    size_t s, e;
    int match;
} tok_mark;

typedef struct tok_ctx {
    const slm_tokenizer *t;
    tok_ids out;
    tok_buf work;        /* normalized piece, pre-token rewrites */
    tok_buf scratch;     /* byte-level word */
    tok_buf norm_tmp[2]; /* normalizer steps */
    tok_mark *marks;     /* one split's matches and gaps */
    size_t cap_marks;
    tok_span *spans[2];
    size_t n_spans[2], cap_spans[2];
    tok_sym *syms;
    size_t cap_syms;
    tok_heap_item *heap;
    size_t n_heap, cap_heap;
    pcre2_match_data *md;
    pcre2_match_context *mctx; /* match limit scaled to the piece */
} tok_ctx;

/* Splits work[span] by every pre-tokenizer and runs the model on each word. */
slm_status tok_pretokenize_and_encode(tok_ctx *c, size_t off, size_t len, int origin0);
/* normalize.c: appends the normalized form of text to c->work. */
slm_status tok_normalize(tok_ctx *c, const char *text, size_t len);
/* bpe.c / spm.c: one word (after byte-level mapping where the tokenizer has it). */
slm_status tok_bpe_word(tok_ctx *c, const char *word, size_t len);
slm_status tok_spm_word(tok_ctx *c, const char *word, size_t len);

slm_status tok_ctx_syms(tok_ctx *c, size_t n);
/* Where a SentencePiece word may be cut before a U+2581 at `pos` (see
 * meta_split); `known_left`: the character before must be a piece too. */
int tok_meta_cut(const slm_tokenizer *t, const char *word, size_t len, size_t pos, int known_left);
/* heap.c: a 4-ary min-heap on key. append + build is the O(n) bulk start. */
slm_status tok_heap_push(tok_ctx *c, uint64_t key, int32_t a, int32_t b);
slm_status tok_heap_append(tok_ctx *c, uint64_t key, int32_t a, int32_t b);
void tok_heap_build(tok_ctx *c);
int tok_heap_pop(tok_ctx *c, tok_heap_item *out);

#endif
