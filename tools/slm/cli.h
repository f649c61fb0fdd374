/* Shared pieces of the slm command-line tool. Uses only the public API. */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdio.h>

#include "slm.h"

/* Each command: argv[0] is the command name. Returns the process exit code. */
int cmd_run(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench_tokenize(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sign(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_eval_intent(int argc, char **argv);
int cmd_embed(int argc, char **argv);
/* The quality report of slm compare (and slm quantize --eval). */
void cli_print_compare(FILE *out, const slm_compare_result *r, int json, int32_t ctx);

/* Exit codes. */
enum { CLI_OK = 0, CLI_ERROR = 1, CLI_USAGE = 2 };

/* Prints "slm: <what>: <last error>" and returns CLI_ERROR. */
int cli_fail(const char *what, slm_status st);
/* Prints "slm CMD: msg" plus a --help hint; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* In an option loop over argv with index i: takes the option's value. */
#define CLI_VALUE(cmd, var)                                                                        \
    do {                                                                                           \
        if (i + 1 >= argc) return cli_usage_error(cmd, "option %s needs a value", argv[i]);        \
        (var) = argv[++i];                                                                         \
    } while (0)

/* Strict number parsing for option values; on failure prints a usage error. */
int cli_parse_int(const char *cmd, const char *opt, const char *s, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *opt, const char *s, double lo, double hi,
                    double *out);

/* The model to use: -m value, else $SLM_MODEL, else stories260K.gguf from the
 * shared fixtures beside the project. NULL (with a message printed) if none. */
const char *cli_default_model(const char *given, char *buf, size_t cap);

/* Builds a config: defaults, then --config (inline JSON or a file), then the
 * JSON fragments the command's flags produced (in order). */
int cli_build_config(const char *cmd, const char *config_arg, const char *const *frags, int n_frags,
                     slm_config **out);

/* Appends a JSON fragment {"key": value} to a list (value is raw JSON text). */
typedef struct cli_frags {
    char items[32][4352];
    int n;
} cli_frags;
int cli_frag(cli_frags *f, const char *key, const char *raw_json_value);
int cli_frag_string(cli_frags *f, const char *key, const char *value);

/* The numeric options shared by run and chat (-n, --temp, --top-k, --top-p,
 * --min-p, --repeat-penalty, --seed, -t, -c, --keep): when argv[*i] is one,
 * takes its value, appends the config fragment and returns CLI_OK; returns
 * CLI_USAGE (message printed) on a bad value, -1 when argv[*i] is none. */
int cli_number_option(const char *cmd, int argc, char **argv, int *i, cli_frags *fr);

/* Writes `n` bytes to `path`. A regular file (or a new one) is written to a
 * temporary file in the same directory (the target of a symlink) and renamed
 * over it, keeping an existing file's mode, so a failure leaves it as it
 * was; anything else (a device, a FIFO, /dev/stdout) is written in place. */
int cli_write_output(const char *path, const void *data, size_t n);

/* Copies s[0..n) into a malloc'd string, replacing bytes that are not valid
 * UTF-8 with U+FFFD, for JSON output of names read from files. */
char *cli_utf8_clean(const char *s, size_t n);

/* Reads a whole file (or stdin for "-"); malloc'd, NUL-terminated. */
char *cli_read_text(const char *path, size_t *len);

#endif
