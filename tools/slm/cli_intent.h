/* Pieces shared by slm classify, slm eval-intent and slm embed. */
#ifndef SLM_CLI_INTENT_H
#define SLM_CLI_INTENT_H

#include <stddef.h>

#include "cli.h"

/* CLI_VALUE that jumps to `label` (with rc set) instead of returning, for
 * loops that hold allocations. */
#define CLI_VALUE_OR(cmd, var, label)                                                              \
    do {                                                                                           \
        if (i + 1 >= argc) {                                                                       \
            rc = cli_usage_error(cmd, "option %s needs a value", argv[i]);                         \
            goto label;                                                                            \
        }                                                                                          \
        (var) = argv[++i];                                                                         \
    } while (0)

/* A list of labels (each malloc'd). */
typedef struct cli_labels {
    char **items;
    size_t n, cap;
} cli_labels;

/* Adds s[0..n) as it is. Returns 0, or -1 when out of memory. */
int cli_list_push(cli_labels *l, const char *s, size_t n);
/* Adds s[0..n) with surrounding spaces and tabs removed. Returns 0, or -1
 * when out of memory. An empty result is not added (*added = 0). */
int cli_labels_add(cli_labels *l, const char *s, size_t n, int *added);
/* 1 when the list holds `s`. */
int cli_labels_has(const cli_labels *l, const char *s);
/* Labels from "a,b,c" (comma-separated, each trimmed) and/or a file with one
 * label per line (blank lines skipped). Usage errors are printed for `cmd`:
 * an empty label in the list, a label given twice. Returns CLI_OK, or
 * CLI_USAGE / CLI_ERROR. */
int cli_labels_parse(const char *cmd, const char *list, const char *file, cli_labels *out);
void cli_labels_free(cli_labels *l);

/* Loads the model (-m or the default) and a session with the config built
 * from --config and the fragments. Returns CLI_OK or the exit code (message
 * printed). */
int cli_open_session(const char *cmd, const char *model_arg, const char *config_arg,
                     const cli_frags *fr, slm_model **m, slm_session **s);

/* The -t/--threads option: when argv[*i] is it, takes its value into a
 * config fragment; returns CLI_OK, CLI_USAGE on a bad value, -1 when
 * argv[*i] is something else. */
int cli_threads_option(const char *cmd, int argc, char **argv, int *i, cli_frags *fr);

/* A copy of s with \n, \t and \\ read as newline, tab and backslash
 * (templates given on the command line). malloc'd. */
char *cli_unescape(const char *s);

#endif
