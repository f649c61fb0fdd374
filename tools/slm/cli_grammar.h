/* --json-schema FILE, --grammar FILE and --json-object for commands that
 * generate (run, bench): constrained output (issue 7). */
#ifndef SLM_CLI_GRAMMAR_H
#define SLM_CLI_GRAMMAR_H

#include "slm.h"

typedef struct cli_grammar {
    const char *schema_file;
    const char *grammar_file;
    int json_object;
} cli_grammar;

#define CLI_GRAMMAR_HELP                                                                           \
    "      --json-schema FILE  constrain the output to JSON valid for this JSON Schema\n"          \
    "                          (see docs/STRUCTURED.md for the keywords supported)\n"              \
    "      --grammar FILE      constrain the output to this GBNF grammar (rule 'root')\n"          \
    "      --json-object       constrain the output to a JSON object\n"

/* When argv[*i] is one of the options: takes it (and its value) and returns
 * 0 (CLI_OK); CLI_USAGE on a missing value or a second constraint; -1 when
 * argv[*i] is none of them. */
int cli_grammar_option(const char *cmd, int argc, char **argv, int *i, cli_grammar *g);
/* The config fragment for the options (malloc'd JSON), NULL with a message
 * printed when the file cannot be read or is not JSON. */
char *cli_grammar_config_json(const char *cmd, const cli_grammar *g);
/* Reads the file and applies it to cfg (after --config and the other flags).
 * Returns 0, or CLI_ERROR with a message naming the file. */
int cli_grammar_apply(const char *cmd, const cli_grammar *g, slm_config *cfg);

#endif
