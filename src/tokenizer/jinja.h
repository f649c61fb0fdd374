/* A Jinja2 subset for chat templates, configured as Hugging Face transformers
 * configures Jinja (trim_blocks, lstrip_blocks, loopcontrols, tojson without
 * ASCII escaping, no trailing newline kept).
 *
 * Supported: {{ }}, {% %}, {# #}, whitespace control (-, +), raw; statements
 * if/elif/else, for (loop.*, loop else, for-filter, tuple targets), set (also
 * namespace attributes and block set), macro, break/continue, generation;
 * expressions with Python semantics (literals, attributes, subscripts,
 * slices, arithmetic, ~, comparisons, and/or/not, in, is-tests, ternary,
 * calls), the filters, tests, functions and methods that chat templates use
 * (see jinja.c for the lists). Unknown filters and tests are parse errors.
 *
 * Taint: every string value carries an optional per-byte mask. Strings from
 * the variables that the caller marks as tainted are fully marked; string
 * operations carry the marks along (a byte derived from a marked byte stays
 * marked), and the output has one mask byte per output byte.
 *
 * Every input is bounded by the limits below: a template that exceeds one
 * fails with a message naming the limit, never crashes or hangs. */
#ifndef SLM_TOKENIZER_JINJA_H
#define SLM_TOKENIZER_JINJA_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#define JINJA_MAX_TEMPLATE_BYTES (4u << 20) /* template source */
#define JINJA_MAX_NESTING 96                /* nested blocks/brackets/unary ops when parsing */
#define JINJA_MAX_EVAL_DEPTH 256 /* expression/statement/macro recursion (~128 KiB of stack) */
#define JINJA_MAX_LOOP_ITERATIONS 1000000u /* loop iterations (and range size) per render */
#define JINJA_MAX_STEPS 50000000u          /* evaluated nodes per render */
#define JINJA_MAX_OUTPUT (64u << 20)       /* bytes of output (and of any one string) */
#define JINJA_MAX_MEMORY (768u << 20)      /* bytes allocated per render */
#define JINJA_MAX_INPUT_DEPTH 64           /* nesting of the JSON variables */

typedef struct jinja_template jinja_template;

/* Parses a template. `name` (e.g. "chat template") prefixes error messages,
 * which name the line and column. */
slm_status jinja_parse(const char *src, size_t len, const char *name, jinja_template **out);
void jinja_free(jinja_template *t);

typedef struct jinja_output {
    char *text; /* malloc'd, NUL-terminated */
    size_t len;
    uint8_t *tainted; /* malloc'd [len] (at least 1 byte): 1 = derived from a tainted value */
} jinja_output;

/* Renders with the members of the JSON object `vars` as variables. Strings
 * that are one of the `tainted` items, or lie anywhere inside one, are
 * marked. The globals raise_exception, strftime_now, range, namespace and
 * dict are provided. */
slm_status jinja_render(const jinja_template *t, const cJSON *vars, const cJSON *const *tainted,
                        size_t n_tainted, jinja_output *out);
void jinja_output_free(jinja_output *o);

#endif
