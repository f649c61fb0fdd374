/* Egress policy for hybrid mode: detectors for sensitive data (e-mail
 * addresses, phone numbers, Luhn-checked payment-card numbers, mod-97-checked
 * IBANs, configured regex patterns) and, per class, an action: block (the
 * request stays local), redact (numbered placeholders before sending, restored
 * in the answer) or allow. */
#ifndef SLM_HYBRID_POLICY_H
#define SLM_HYBRID_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct cJSON cJSON;

/* Sensitive classes found by the detectors. Bits of a mask. */
enum {
    HY_CLASS_EMAIL = 1u << 0,
    HY_CLASS_PHONE = 1u << 1,
    HY_CLASS_CARD = 1u << 2,
    HY_CLASS_IBAN = 1u << 3,
    HY_CLASS_CUSTOM = 1u << 4 /* any configured pattern */
};
typedef enum hy_action { HY_ALLOW = 0, HY_REDACT = 1, HY_BLOCK = 2 } hy_action;

typedef struct hy_policy hy_policy;
/* Parses the config's "policy" object (NULL = the default policy: every
 * built-in class "block"). Shape:
 *   {"email": "redact", "phone": "redact", "card": "block", "iban": "block",
 *    "patterns": [{"name": "employee_id", "regex": "EMP-[0-9]{6}", "action": "redact"}]}
 * A built-in class left out of a given object is "block". Pattern names are
 * [A-Za-z0-9_]{1,32}, unique, not a built-in class name; "action" defaults to
 * "block". Unknown keys / bad actions / bad regexes -> SLM_ERR_CONFIG naming
 * "policy.<key>". The policy is immutable after creation: one policy may serve
 * any number of concurrent requests. */
slm_status hy_policy_new(const cJSON *policy, hy_policy **out);
void hy_policy_free(hy_policy *p);

/* One request's egress check. Feed every piece of text that would be sent
 * (each chat message's content, or the prompt) through hy_egress_add, in
 * order; placeholders are numbered across the whole request ("[EMAIL_1]",
 * "[PHONE_2]", "[CARD_1]", "[IBAN_1]", "[<PATTERN NAME IN CAPS>_1]"); the same
 * value gets the same placeholder. Overlapping findings: the stricter action
 * wins (block > redact > allow), then the longer finding, then the earlier,
 * then the built-in class before custom patterns; redactions that partly
 * overlap become one placeholder. Phone/card digits inside a valid IBAN are
 * part of the IBAN. One hy_egress belongs to one request (not thread-safe). */
typedef struct hy_egress hy_egress;
slm_status hy_egress_new(const hy_policy *p, hy_egress **out);
void hy_egress_free(hy_egress *e);
/* Returns in *out (malloc'd, NUL-terminated) the text to send: redacted
 * classes replaced by placeholders; allowed classes unchanged. Blocked classes
 * are left in *out but make hy_egress_action() HY_BLOCK (the caller must then
 * not send anything). out_len may be NULL. */
slm_status hy_egress_add(hy_egress *e, const char *text, size_t len, char **out, size_t *out_len);
hy_action hy_egress_action(const hy_egress *e); /* max over what was found */
uint32_t hy_egress_classes(const hy_egress *e); /* HY_CLASS_* mask found */
/* Comma-separated class names found, e.g. "email,card,employee_id" (owned by
 * e; "" when nothing was found). Order: email, phone, card, iban, then the
 * configured patterns in configuration order. */
const char *hy_egress_class_names(const hy_egress *e);
/* Replaces placeholders that come back in the cloud's answer with the original
 * values (malloc'd, NUL-terminated; NULL only when memory runs out). Text
 * without placeholders comes back unchanged, and so do placeholder-shaped
 * tokens the request did not produce (numbers that a request text used
 * literally are never handed out). out_len may be NULL. */
char *hy_egress_restore(const hy_egress *e, const char *answer, size_t len, size_t *out_len);

/* For streamed answers: how many bytes at the end of s[0..len) could be the
 * start of a placeholder split across chunks ("[EM", "[EMAIL_1"); the caller
 * keeps them back and prepends them to the next chunk (restore what is
 * released, flush the rest at the end). 0 when nothing was redacted. */
size_t hy_egress_restore_hold(const hy_egress *e, const char *s, size_t len);

/* Name of an action ("allow", "redact", "block"). */
const char *hy_action_name(hy_action a);
/* Number of distinct values replaced by placeholders so far in this request. */
int hy_egress_n_redacted(const hy_egress *e);

#endif
