/* slm keygen / sign / verify: Ed25519 model signatures. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char *KEYGEN_HELP =
    "usage: slm keygen --out KEYNAME\n"
    "\n"
    "Creates an Ed25519 key pair: KEYNAME.key (the secret key, mode 0600; keep it\n"
    "private) and KEYNAME.pub (the public key; copy it into a trust dir). Refuses\n"
    "to overwrite either file. Prints the key id: the first 8 bytes of the\n"
    "BLAKE2b-256 hash of the public key, in hex.\n"
    "\n"
    "  --out KEYNAME  path of the key files without the .key/.pub suffix\n"
    "  -h, --help     this help\n"
    "\n"
    "exit status: 0 created, 1 error (e.g. a file exists), 2 usage error\n";

static const char *SIGN_HELP =
    "usage: slm sign FILE --key KEYNAME.key [--comment TEXT]\n"
    "\n"
    "Writes FILE.sig, a detached signature: a small text header (algorithm, file\n"
    "size, BLAKE2b-256 of the whole file, key id, creation time, comment) and the\n"
    "Ed25519 signature of that header. FILE.sig is written to a temporary file and\n"
    "renamed into place (an existing FILE.sig is replaced).\n"
    "\n"
    "  --key PATH      secret key file from 'slm keygen' (must not be readable by\n"
    "                  others)\n"
    "  --comment TEXT  up to 256 bytes, no control characters (signed too)\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 signed, 1 error, 2 usage error\n";

static const char *VERIFY_HELP =
    "usage: slm verify FILE (--pub KEY.pub | --trust DIR)\n"
    "\n"
    "Checks FILE against FILE.sig: the signature file is well formed, it was made\n"
    "by the given public key (or by one of the .pub files in DIR), the signature\n"
    "of its header is valid, and FILE has the signed size and BLAKE2b-256 hash.\n"
    "On failure prints which check failed: missing signature, malformed signature\n"
    "file, unknown key, bad signature, size mismatch or hash mismatch.\n"
    "\n"
    "  --pub PATH   the public key to accept\n"
    "  --trust DIR  accept any public key (*.pub) in DIR\n"
    "  -h, --help   this help\n"
    "\n"
    "exit status: 0 valid, 1 invalid (or an error reading the files), 2 usage error\n";

int cmd_keygen(int argc, char **argv) {
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(KEYGEN_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--out") || !strcmp(a, "-o")) {
            CLI_VALUE("keygen", out);
        } else {
            return cli_usage_error("keygen", "unknown argument '%s'", a);
        }
    }
    if (!out || !*out) return cli_usage_error("keygen", "--out KEYNAME is required");
    char id[SLM_KEY_ID_HEX];
    slm_status st = slm_keygen(out, id);
    if (st != SLM_OK) return cli_fail("cannot create the key", st);
    printf("key id %s\nsecret key: %s.key (keep it private)\npublic key: %s.pub\n", id, out, out);
    return CLI_OK;
}

int cmd_sign(int argc, char **argv) {
    const char *file = NULL, *key = NULL, *comment = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(SIGN_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--key") || !strcmp(a, "-k")) {
            CLI_VALUE("sign", key);
        } else if (!strcmp(a, "--comment")) {
            CLI_VALUE("sign", comment);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("sign", "unknown option '%s'", a);
        } else if (!file) {
            file = a;
        } else {
            return cli_usage_error("sign", "give one file to sign");
        }
    }
    if (!file) return cli_usage_error("sign", "no file given");
    if (!key) return cli_usage_error("sign", "--key KEYNAME.key is required");
    slm_verify_info info;
    slm_status st = slm_sign_file(file, key, comment, &info);
    if (st != SLM_OK) return cli_fail("cannot sign", st);
    printf("signed %s (%llu bytes) with key %s -> %s.sig in %.1f ms\n", file,
           (unsigned long long)info.file_size, info.key_id, file, info.ms);
    return CLI_OK;
}

int cmd_verify(int argc, char **argv) {
    const char *file = NULL, *pub = NULL, *trust = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(VERIFY_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--pub")) {
            CLI_VALUE("verify", pub);
        } else if (!strcmp(a, "--trust")) {
            CLI_VALUE("verify", trust);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("verify", "unknown option '%s'", a);
        } else if (!file) {
            file = a;
        } else {
            return cli_usage_error("verify", "give one file to verify");
        }
    }
    if (!file) return cli_usage_error("verify", "no file given");
    if (!pub == !trust) return cli_usage_error("verify", "give exactly one of --pub and --trust");
    slm_verify_info info;
    slm_status st = slm_verify_file(file, pub, trust, &info);
    if (st != SLM_OK) return cli_fail("INVALID", st);
    char when[32] = "?";
    time_t t = (time_t)info.created;
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("OK: %s (%llu bytes) signed by key %s at %s%s%s%s, verified in %.1f ms\n", file,
           (unsigned long long)info.file_size, info.key_id, when, info.comment[0] ? " (\"" : "",
           info.comment, info.comment[0] ? "\")" : "", info.ms);
    return CLI_OK;
}
