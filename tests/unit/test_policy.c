/* Hybrid egress policy (detectors, actions, placeholders), audit log, circuit
 * breaker and backoff. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "hybrid/audit.h"
#include "hybrid/breaker.h"
#include "hybrid/policy.h"

static hy_policy *policy_from(const char *json) {
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    if (json && !o) {
        fprintf(stderr, "bad test JSON: %s\n", json);
        return NULL;
    }
    hy_policy *p = NULL;
    slm_status st = hy_policy_new(o, &p);
    if (st != SLM_OK) fprintf(stderr, "hy_policy_new: %s\n", slm_last_error());
    cJSON_Delete(o);
    return p;
}

static slm_status policy_err(const char *json) {
    cJSON *o = cJSON_Parse(json);
    if (!o) return SLM_ERR_INTERNAL;
    hy_policy *p = NULL;
    slm_status st = hy_policy_new(o, &p);
    hy_policy_free(p);
    cJSON_Delete(o);
    return st;
}

/* One request of one text: the text to send (static buffer), classes found. */
static char g_out[4096];
static char g_names[256];
static uint32_t g_mask;
static hy_action g_action;

static const char *scan(const hy_policy *p, const char *text) {
    hy_egress *e = NULL;
    g_out[0] = 0;
    g_names[0] = 0;
    g_mask = 0;
    g_action = HY_ALLOW;
    if (hy_egress_new(p, &e) != SLM_OK) return "(egress_new failed)";
    char *out = NULL;
    size_t n = 0;
    if (hy_egress_add(e, text, strlen(text), &out, &n) != SLM_OK) {
        hy_egress_free(e);
        return "(egress_add failed)";
    }
    snprintf(g_out, sizeof g_out, "%s", out);
    snprintf(g_names, sizeof g_names, "%s", hy_egress_class_names(e));
    g_mask = hy_egress_classes(e);
    g_action = hy_egress_action(e);
    if (n != strlen(out)) snprintf(g_out, sizeof g_out, "(length mismatch)");
    free(out);
    hy_egress_free(e);
    return g_out;
}

#define EXPECT_SEND(p, in, want)                                                                   \
    do {                                                                                           \
        const char *got_ = scan((p), (in));                                                        \
        CHECK_MSG(!strcmp(got_, (want)), "in  '%s'\n  got  '%s'\n  want '%s'", (in), got_,         \
                  (want));                                                                         \
    } while (0)

/* the text is found clean: nothing detected */
#define EXPECT_CLEAN(p, in)                                                                        \
    do {                                                                                           \
        const char *got_ = scan((p), (in));                                                        \
        CHECK_MSG(!strcmp(got_, (in)) && g_mask == 0 && g_action == HY_ALLOW,                      \
                  "in '%s' -> '%s' classes '%s'", (in), got_, g_names);                            \
    } while (0)

static void test_detectors(void) {
    hy_policy *p = policy_from("{\"email\":\"redact\",\"phone\":\"redact\",\"card\":\"redact\","
                               "\"iban\":\"redact\"}");
    CHECK(p != NULL);
    if (!p) return;

    /* e-mail in varied positions and forms */
    EXPECT_SEND(p, "alice@example.com", "[EMAIL_1]");
    EXPECT_SEND(p, "Write to Bob.Smith+tag@mail.example.co.uk today", "Write to [EMAIL_1] today");
    EXPECT_SEND(p, "(carol@example.org)", "([EMAIL_1])");
    EXPECT_SEND(p, "mail dave@example.net.", "mail [EMAIL_1].");
    EXPECT_SEND(p, "<eve_99@sub-domain.example.io>,x", "<[EMAIL_1]>,x");
    EXPECT_SEND(p, "Grüße, frank@example.de — danke 🙂", "Grüße, [EMAIL_1] — danke 🙂");
    CHECK(g_mask == HY_CLASS_EMAIL && !strcmp(g_names, "email") && g_action == HY_REDACT);
    EXPECT_SEND(p, "id=a.very.long.local.part.that.goes.on.and.on.beyond.sixty.four.chars.x@ex.com",
                "id=[EMAIL_1]");
    EXPECT_CLEAN(p, "follow @username on the site");
    EXPECT_CLEAN(p, "root@localhost is not an address here");
    EXPECT_CLEAN(p, "a@b.c and foo@bar and x@1.23");
    EXPECT_CLEAN(p, "email at example dot com");

    /* phones: international and national formats */
    EXPECT_SEND(p, "call +44 20 7946 0958 now", "call [PHONE_1] now");
    EXPECT_SEND(p, "+1 (555) 123-4567", "[PHONE_1]");
    EXPECT_SEND(p, "tel:+33612345678.", "tel:[PHONE_1].");
    EXPECT_SEND(p, "+49 (0)30 1234567", "[PHONE_1]");
    EXPECT_SEND(p, "office (555) 123-4567, cell 555-123-4567", "office [PHONE_1], cell [PHONE_1]");
    EXPECT_SEND(p, "fax 555.123.4567", "fax [PHONE_1]");
    EXPECT_SEND(p, "1-800-555-0199", "[PHONE_1]");
    EXPECT_SEND(p, "London 020 7946 0958", "London [PHONE_1]");
    EXPECT_SEND(p, "Paris: 06 12 34 56 78 ou 06.12.34.56.78", "Paris: [PHONE_1] ou [PHONE_1]");
    EXPECT_SEND(p, "Berlin 030 1234567", "Berlin [PHONE_1]");
    EXPECT_SEND(p, "from abroad 0044 20 7946 0958", "from abroad [PHONE_1]");
    EXPECT_SEND(p, "+44 20 7946 0958 and 2 more", "[PHONE_1] and 2 more");
    EXPECT_SEND(p, "+44 (0)20 7946 0958; +33 6 12 34 56 78; +1-555-123-4567",
                "[PHONE_1]; [PHONE_2]; [PHONE_3]");
    CHECK(g_mask == HY_CLASS_PHONE && !strcmp(g_names, "phone"));
    EXPECT_CLEAN(p, "room 12345, ext 555-1234, 42 items, 3 x 7");
    EXPECT_CLEAN(p, "on 2024-01-15, 15.01.2024, 01/02/2024 and 2024/01/15 10:30");
    EXPECT_CLEAN(p, "Windows 10.0.19041.1234, v1.2.3, host 192.168.100.200");
    EXPECT_CLEAN(p, "total 1,234,567.89 EUR; pi 3.14159265358979");
    EXPECT_CLEAN(p, "id A0612345678 and 0612345678x");
    EXPECT_CLEAN(p, "SSN-like 123-45-6789, zip 90210-1234, ISBN 978-3-16-148410-0");
    EXPECT_CLEAN(p, "epoch 1700000000, 3 + 4 = 7, 2+2, +1, C++ 20, score 10-12");
    EXPECT_CLEAN(p, "0000 0000 0000 0000 and 0000-000-0000");
    EXPECT_CLEAN(p, "10:30 to 11:45 on 2024 01 15");

    /* payment cards: Luhn-valid with spaces, dashes, none; 13..19 digits */
    EXPECT_SEND(p, "card 4111 1111 1111 1111 exp 12/27", "card [CARD_1] exp 12/27");
    EXPECT_SEND(p, "5500-0000-0000-0004", "[CARD_1]");
    EXPECT_SEND(p, "amex 378282246310005.", "amex [CARD_1].");
    EXPECT_SEND(p, "3782 822463 10005", "[CARD_1]");
    EXPECT_SEND(p, "visa13=4222222222222;", "visa13=[CARD_1];");
    EXPECT_SEND(p, "+4111111111111111 -4111 1111 1111 1111", "+[CARD_1] -[CARD_1]");
    EXPECT_SEND(p, "two: 4012888888881881 and 6011111111111117", "two: [CARD_1] and [CARD_2]");
    EXPECT_SEND(p, "same 4111111111111111 = 4111-1111-1111-1111", "same [CARD_1] = [CARD_1]");
    CHECK(g_mask == HY_CLASS_CARD && !strcmp(g_names, "card"));
    /* Luhn-failing numbers, too short/long, glued to words, zero-led, mixed separators */
    EXPECT_CLEAN(p, "4111 1111 1111 1112");
    EXPECT_CLEAN(p, "order 1234 5678 9012 3456 and 4111111111111112");
    EXPECT_CLEAN(p, "5500000000000005, 411111111111 (12 digits)");
    EXPECT_CLEAN(p, "x4111111111111111 and 4111111111111111y and 41111111111111110000");
    EXPECT_CLEAN(p, "0000 0000 0000 0000 and 4111-1111 1111-1111");
    EXPECT_CLEAN(p, "0.4111111111111111 and 1.5");
    EXPECT_CLEAN(p, "tracking 4111111111111111111111 and 1 2 3 4 5 6 7 8 9 1 2 3 4");

    /* IBANs: with and without spaces, letters in the BBAN, lower case */
    EXPECT_SEND(p, "IBAN DE89 3704 0044 0532 0130 00 please", "IBAN [IBAN_1] please");
    EXPECT_SEND(p, "to DE89370400440532013000.", "to [IBAN_1].");
    EXPECT_SEND(p, "GB82 WEST 1234 5698 7654 32", "[IBAN_1]");
    EXPECT_SEND(p, "FR14 2004 1010 0505 0001 3M02 606 et NL91ABNA0417164300",
                "[IBAN_1] et [IBAN_2]");
    EXPECT_SEND(p, "ch93 0076 2011 6238 5295 7", "[IBAN_1]");
    EXPECT_SEND(p, "BE68 5390 0754 7034 and ZZ33123456789012345", "[IBAN_1] and [IBAN_2]");
    EXPECT_SEND(p, "IT60 X054 2811 1010 0000 0123 456", "[IBAN_1]");
    CHECK(g_mask == HY_CLASS_IBAN && !strcmp(g_names, "iban"));
    EXPECT_CLEAN(p, "DE88 3704 0044 0532 0130 00");       /* bad check digits */
    EXPECT_CLEAN(p, "IT60 X054 2811 1010 0000 0123 457"); /* wrong check digits (IT) */
    EXPECT_CLEAN(p, "DE89 3704 0044 0532 0130 0");        /* wrong length for DE */
    EXPECT_CLEAN(p, "XDE89370400440532013000");           /* glued to a word */
    EXPECT_CLEAN(p, "zz33123456789012345 GB82WEST");      /* unknown country must be upper case */

    /* everything together, UTF-8 around findings intact, one request numbering */
    EXPECT_SEND(p, "Ünïcødé→alice@example.com←+44 20 7946 0958…4111 1111 1111 1111»",
                "Ünïcødé→[EMAIL_1]←[PHONE_1]…[CARD_1]»");
    CHECK(g_mask == (HY_CLASS_EMAIL | HY_CLASS_PHONE | HY_CLASS_CARD));
    CHECK(!strcmp(g_names, "email,phone,card"));
    hy_policy_free(p);

    /* digit groups inside an IBAN are neither phones nor cards, whatever the actions */
    p = policy_from("{\"email\":\"allow\",\"phone\":\"block\",\"card\":\"block\","
                    "\"iban\":\"redact\"}");
    if (p) {
        EXPECT_SEND(p, "NL91 ABNA 0417 1643 00", "[IBAN_1]");
        CHECK(g_action == HY_REDACT && !strcmp(g_names, "iban"));
        hy_policy_free(p);
    }
}

static void test_actions(void) {
    /* default policy: every class blocks; text unchanged */
    hy_policy *def = policy_from(NULL);
    CHECK(def != NULL);
    if (def) {
        const char *t = "mail alice@example.com";
        EXPECT_SEND(def, t, t);
        CHECK(g_action == HY_BLOCK && g_mask == HY_CLASS_EMAIL);
        EXPECT_SEND(def, "IBAN DE89 3704 0044 0532 0130 00", "IBAN DE89 3704 0044 0532 0130 00");
        CHECK(g_action == HY_BLOCK && g_mask == HY_CLASS_IBAN);
        EXPECT_CLEAN(def, "What is the capital of France?");
        hy_policy_free(def);
    }
    /* an object that leaves a class out: that class blocks */
    hy_policy *part = policy_from("{\"email\":\"allow\"}");
    if (part) {
        EXPECT_SEND(part, "alice@example.com", "alice@example.com");
        CHECK(g_action == HY_ALLOW && g_mask == HY_CLASS_EMAIL && !strcmp(g_names, "email"));
        scan(part, "4111 1111 1111 1111");
        CHECK(g_action == HY_BLOCK);
        hy_policy_free(part);
    }
    /* each class exactly as configured */
    hy_policy *p = policy_from(
        "{\"email\":\"redact\",\"phone\":\"allow\",\"card\":\"block\",\"iban\":\"redact\"}");
    CHECK(p != NULL);
    if (!p) return;
    EXPECT_SEND(p, "a alice@example.com b +44 20 7946 0958", "a [EMAIL_1] b +44 20 7946 0958");
    CHECK(g_action == HY_REDACT && !strcmp(g_names, "email,phone"));
    EXPECT_SEND(p, "DE89370400440532013000 / 4111111111111111 / bob@example.org",
                "[IBAN_1] / 4111111111111111 / [EMAIL_1]");
    CHECK(g_action == HY_BLOCK && !strcmp(g_names, "email,card,iban"));
    CHECK(g_mask == (HY_CLASS_EMAIL | HY_CLASS_CARD | HY_CLASS_IBAN));
    EXPECT_SEND(p, "+44 20 7946 0958", "+44 20 7946 0958");
    CHECK(g_action == HY_ALLOW && g_mask == HY_CLASS_PHONE);

    /* a request of several messages: numbering and the same value across them; restore */
    hy_egress *e = NULL;
    CHECK_OK(hy_egress_new(p, &e));
    if (e) {
        const char *m1 = "I am alice@example.com, IBAN DE89 3704 0044 0532 0130 00.";
        const char *m2 = "Copy bob@example.org and alice@example.com; ALICE@EXAMPLE.COM too.";
        char *o1 = NULL, *o2 = NULL;
        CHECK_OK(hy_egress_add(e, m1, strlen(m1), &o1, NULL));
        CHECK_OK(hy_egress_add(e, m2, strlen(m2), &o2, NULL));
        CHECK(o1 && !strcmp(o1, "I am [EMAIL_1], IBAN [IBAN_1]."));
        CHECK(o2 && !strcmp(o2, "Copy [EMAIL_2] and [EMAIL_1]; [EMAIL_1] too."));
        CHECK(hy_egress_n_redacted(e) == 3);
        CHECK(hy_egress_action(e) == HY_REDACT && !strcmp(hy_egress_class_names(e), "email,iban"));
        const char *ans = "Sure [EMAIL_2], I wrote to [EMAIL_1] about [IBAN_1]. [EMAIL_9] [x] [";
        size_t rn = 0;
        char *r = hy_egress_restore(e, ans, strlen(ans), &rn);
        CHECK(r && !strcmp(r, "Sure bob@example.org, I wrote to alice@example.com about DE89 3704 "
                              "0044 0532 0130 00. [EMAIL_9] [x] ["));
        CHECK(r && rn == strlen(r));
        free(r);
        r = hy_egress_restore(e, "no placeholders", 15, NULL);
        CHECK(r && !strcmp(r, "no placeholders"));
        free(r);
        /* streaming: the tail that may be a split placeholder is held back */
        CHECK(hy_egress_restore_hold(e, "abc [EMA", 8) == 4);
        CHECK(hy_egress_restore_hold(e, "abc [EMAIL_1", 12) == 8);
        CHECK(hy_egress_restore_hold(e, "abc [EMAIL_1]", 13) == 0);
        CHECK(hy_egress_restore_hold(e, "abc [ x", 7) == 0);
        CHECK(hy_egress_restore_hold(e, "abc", 3) == 0);
        free(o1);
        free(o2);
        hy_egress_free(e);
    }
    /* placeholders typed by the user are not handed out, nor restored */
    CHECK_OK(hy_egress_new(p, &e));
    if (e) {
        const char *m = "In my template [EMAIL_1] and [EMAIL_3] are fields; I am bob@example.org, "
                        "cc carol@example.org and dan@example.org.";
        char *o = NULL;
        CHECK_OK(hy_egress_add(e, m, strlen(m), &o, NULL));
        CHECK(o && !strcmp(o, "In my template [EMAIL_1] and [EMAIL_3] are fields; I am [EMAIL_2], "
                              "cc [EMAIL_4] and [EMAIL_5]."));
        const char *ans = "[EMAIL_1] [EMAIL_2] [EMAIL_3] [EMAIL_4] [EMAIL_5]";
        char *r = hy_egress_restore(e, ans, strlen(ans), NULL);
        CHECK(r && !strcmp(r, "[EMAIL_1] bob@example.org [EMAIL_3] carol@example.org "
                              "dan@example.org"));
        free(r);
        free(o);
        hy_egress_free(e);
    }
    hy_policy_free(p);
}

static void test_patterns(void) {
    hy_policy *p = policy_from(
        "{\"email\":\"redact\",\"phone\":\"redact\",\"card\":\"redact\",\"iban\":\"redact\","
        "\"patterns\":[{\"name\":\"employee_id\",\"regex\":\"EMP-[0-9]{6}\",\"action\":\"redact\"},"
        "{\"name\":\"Project\",\"regex\":\"(?i)project\\\\s+falcon\",\"action\":\"block\"},"
        "{\"name\":\"ticket\",\"regex\":\"Ticket:.*\",\"action\":\"allow\"},"
        "{\"name\":\"acct\",\"regex\":\"acct=[a-z]+@ex\"}]}");
    CHECK(p != NULL);
    if (!p) return;
    EXPECT_SEND(p, "ids EMP-123456, EMP-654321 and EMP-123456; EMP-12345 is short",
                "ids [EMPLOYEE_ID_1], [EMPLOYEE_ID_2] and [EMPLOYEE_ID_1]; EMP-12345 is short");
    CHECK(g_mask == HY_CLASS_CUSTOM && !strcmp(g_names, "employee_id") && g_action == HY_REDACT);
    scan(p, "status of PROJECT   Falcon?");
    CHECK(g_action == HY_BLOCK && !strcmp(g_names, "Project") && g_mask == HY_CLASS_CUSTOM);
    /* a broad allowed pattern does not shield a stricter finding inside it */
    EXPECT_SEND(p, "Ticket: reset for alice@example.com please",
                "Ticket: reset for [EMAIL_1] please");
    CHECK(!strcmp(g_names, "email") && g_action == HY_REDACT);
    /* a blocking pattern (default action) overlapping an e-mail: block wins */
    scan(p, "acct=zed@example.com");
    CHECK(g_action == HY_BLOCK && !strcmp(g_names, "acct"));
    hy_policy_free(p);

    /* partly overlapping redactions merge: no part of either value is sent */
    p = policy_from("{\"patterns\":[{\"name\":\"a\",\"regex\":\"X[0-9]+Y\",\"action\":\"redact\"},"
                    "{\"name\":\"b\",\"regex\":\"Y[a-z]+Z\",\"action\":\"redact\"}]}");
    if (p) {
        EXPECT_SEND(p, "<X12YabcZ>", "<[B_1]>"); /* b is longer: it labels the union */
        CHECK(!strcmp(g_names, "b"));
        EXPECT_SEND(p, "<X12345YaZ>", "<[A_1]>");
        CHECK(!strcmp(g_names, "a"));
        EXPECT_SEND(p, "<X1Y and YabZ, X1Y>", "<[A_1] and [B_1], [A_1]>");
        CHECK(!strcmp(g_names, "a,b"));
        hy_policy_free(p);
    }
}

/* A pattern that runs away hits the match limit: the check fails (the caller
 * keeps the request local) instead of hanging. */
static void test_pattern_limit(void) {
    hy_policy *p = policy_from("{\"patterns\":[{\"name\":\"bad\",\"regex\":\"(a|aa)+$\"}]}");
    if (!p) {
        CHECK(0);
        return;
    }
    char text[200];
    memset(text, 'a', 120);
    memcpy(text + 120, "c", 2);
    hy_egress *e = NULL;
    char *out = NULL;
    CHECK_OK(hy_egress_new(p, &e));
    clock_t c0 = clock();
    CHECK_ERR(hy_egress_add(e, text, strlen(text), &out, NULL), SLM_ERR_INTERNAL,
              "policy.patterns[0] (bad)");
    CHECK(out == NULL);
    CHECK((double)(clock() - c0) / CLOCKS_PER_SEC < 30.0);
    hy_egress_free(e);
    hy_policy_free(p);
}

static void test_config_errors(void) {
    CHECK_ERR(policy_err("{\"email\":\"redact\",\"fone\":\"block\"}"), SLM_ERR_CONFIG,
              "'policy.fone'");
    CHECK_ERR(policy_err("{\"email\":\"hide\"}"), SLM_ERR_CONFIG, "'policy.email'");
    CHECK_ERR(policy_err("{\"card\":1}"), SLM_ERR_CONFIG, "'policy.card'");
    CHECK_ERR(policy_err("[1]"), SLM_ERR_CONFIG, "'policy'");
    CHECK_ERR(policy_err("{\"patterns\":{}}"), SLM_ERR_CONFIG, "'policy.patterns'");
    CHECK_ERR(policy_err("{\"patterns\":[1]}"), SLM_ERR_CONFIG, "'policy.patterns[0]'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"x\",\"regex\":\"a(b\"}]}"), SLM_ERR_CONFIG,
              "'policy.patterns[0].regex'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"x\",\"regex\":\"\"}]}"), SLM_ERR_CONFIG,
              "'policy.patterns[0].regex'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"regex\":\"a\"}]}"), SLM_ERR_CONFIG,
              "'policy.patterns[0].name'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"bad name\",\"regex\":\"a\"}]}"),
              SLM_ERR_CONFIG, "'policy.patterns[0].name'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"Email\",\"regex\":\"a\"}]}"), SLM_ERR_CONFIG,
              "built-in");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"x\",\"regex\":\"a\"},"
                         "{\"name\":\"X\",\"regex\":\"b\"}]}"),
              SLM_ERR_CONFIG, "'policy.patterns[1].name'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"x\",\"regex\":\"a\",\"action\":\"drop\"}]}"),
              SLM_ERR_CONFIG, "'policy.patterns[0].action'");
    CHECK_ERR(policy_err("{\"patterns\":[{\"name\":\"x\",\"regex\":\"a\",\"colour\":1}]}"),
              SLM_ERR_CONFIG, "'policy.patterns[0].colour'");
    CHECK_OK(policy_err("{}"));
    CHECK_OK(policy_err("{\"patterns\":[]}"));
}

static int json_has_str(const cJSON *o, const char *k, const char *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) && !strcmp(it->valuestring, v);
}

static void test_audit(void) {
    char path[512];
    check_tmp_path("policy_audit.jsonl", path, sizeof path);
    unlink(path);
    hy_policy *p = policy_from("{\"email\":\"redact\",\"card\":\"redact\"}");
    hy_egress *e = NULL;
    if (!p || hy_egress_new(p, &e) != SLM_OK) {
        CHECK(0);
        hy_policy_free(p);
        return;
    }
    const char *msg = "pay 4111 1111 1111 1111 and mail secret.person@example.com";
    char *out = NULL;
    size_t n = 0;
    CHECK_OK(hy_egress_add(e, msg, strlen(msg), &out, &n));
    hy_audit_entry a = {.route = "cloud",
                        .reason = "low_confidence",
                        .classes = hy_egress_class_names(e),
                        .action = hy_action_name(hy_egress_action(e)),
                        .bytes_sent = n,
                        .host = "127.0.0.1:8080",
                        .degraded = 0,
                        .degraded_cause = NULL};
    CHECK_OK(hy_audit_append(path, &a));
    a.degraded = 1;
    a.degraded_cause = "http_5xx \"quoted\"\n";
    a.reason = "rule:x";
    CHECK_OK(hy_audit_append(path, &a));
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char line[2048];
    int lines = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        CHECK(strchr(line, '\n') == line + strlen(line) - 1);
        CHECK(!strstr(line, "4111") && !strstr(line, "secret.person") && !strstr(line, "@"));
        cJSON *o = cJSON_Parse(line);
        CHECK_MSG(o != NULL, "audit line is not JSON: %s", line);
        if (!o) continue;
        CHECK(json_has_str(o, "route", "cloud") && json_has_str(o, "classes", "email,card") &&
              json_has_str(o, "action", "redact") && json_has_str(o, "host", "127.0.0.1:8080"));
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "time");
        CHECK(cJSON_IsString(t) && strlen(t->valuestring) == 24 && t->valuestring[10] == 'T' &&
              t->valuestring[23] == 'Z');
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "bytes_sent");
        CHECK(cJSON_IsNumber(b) && b->valuedouble == (double)n);
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(o, "degraded");
        const cJSON *dc = cJSON_GetObjectItemCaseSensitive(o, "degraded_cause");
        if (lines == 1) {
            CHECK(cJSON_IsFalse(dg) && cJSON_IsNull(dc) &&
                  json_has_str(o, "reason", "low_confidence"));
        } else {
            CHECK(cJSON_IsTrue(dg) && json_has_str(o, "degraded_cause", "http_5xx \"quoted\"\n"));
        }
        cJSON_Delete(o);
    }
    CHECK(lines == 2);
    if (f) fclose(f);
    /* a fixed time formats as ISO-8601 UTC */
    char *s = hy_audit_format(&a, 1700000000.25);
    CHECK(s && strstr(s, "\"time\":\"2023-11-14T22:13:20.250Z\""));
    free(s);
    /* an existing file keeps its content; an unwritable path names itself */
    CHECK_ERR(hy_audit_append("/nonexistent-dir/x.jsonl", &a), SLM_ERR_IO, "/nonexistent-dir");
    unlink(path);
    free(out);
    hy_egress_free(e);
    hy_policy_free(p);
}

typedef struct {
    const char *path;
    int n;
} audit_thread_arg;

static void *audit_writer(void *arg) {
    const audit_thread_arg *t = arg;
    hy_audit_entry a = {"cloud", "rule:long_reason_to_make_lines_longer_than_usual",
                        "email", "redact",
                        12345,   "example.invalid:443",
                        0,       NULL};
    for (int i = 0; i < t->n; i++)
        if (hy_audit_append(t->path, &a) != SLM_OK) return (void *)1;
    return NULL;
}

static void test_audit_concurrent(void) {
    char path[512];
    check_tmp_path("policy_audit_mt.jsonl", path, sizeof path);
    unlink(path);
    pthread_t th[4];
    audit_thread_arg arg = {path, 50};
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, audit_writer, &arg);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        bad += r != NULL;
    }
    CHECK(bad == 0);
    FILE *f = fopen(path, "rb");
    char line[1024];
    int lines = 0, valid = 0;
    while (f && fgets(line, sizeof line, f)) {
        lines++;
        cJSON *o = cJSON_Parse(line);
        valid += o != NULL && json_has_str(o, "classes", "email");
        cJSON_Delete(o);
    }
    if (f) fclose(f);
    CHECK_MSG(lines == 200 && valid == 200, "lines %d valid %d", lines, valid);
    unlink(path);
}

static void test_breaker(void) {
    hy_breaker *b = NULL;
    hy_breaker_params bp = {3, 1000.0};
    CHECK_OK(hy_breaker_new(&bp, &b));
    if (!b) return;
    double t = 0;
    CHECK(hy_breaker_allow(b, t) && hy_breaker_state_at(b, t) == HY_BREAKER_CLOSED);
    hy_breaker_record(b, 0, t);
    hy_breaker_record(b, 0, t);
    hy_breaker_record(b, 1, t); /* success resets the count */
    hy_breaker_record(b, 0, t);
    hy_breaker_record(b, 0, t);
    CHECK(hy_breaker_allow(b, t) == 1);
    hy_breaker_record(b, 0, t += 10); /* third consecutive failure: open */
    CHECK(hy_breaker_state_at(b, t) == HY_BREAKER_OPEN);
    CHECK(hy_breaker_allow(b, t + 1) == 0);
    CHECK(hy_breaker_allow(b, t + 999) == 0);
    hy_breaker_record(b, 1, t + 500); /* a late success while open is ignored */
    CHECK(hy_breaker_allow(b, t + 600) == 0);
    /* after T: half-open, exactly one trial */
    CHECK(hy_breaker_state_at(b, t + 1000) == HY_BREAKER_HALF_OPEN);
    CHECK(hy_breaker_allow(b, t + 1000) == 1);
    CHECK(hy_breaker_allow(b, t + 1001) == 0);
    CHECK(hy_breaker_allow(b, t + 1002) == 0);
    hy_breaker_record(b, 0, t + 1100); /* trial fails: open again for T */
    CHECK(hy_breaker_state_at(b, t + 1100) == HY_BREAKER_OPEN);
    CHECK(hy_breaker_allow(b, t + 2050) == 0);
    CHECK(hy_breaker_allow(b, t + 2100) == 1);
    hy_breaker_record(b, 1, t + 2150); /* trial succeeds: closed */
    CHECK(hy_breaker_state_at(b, t + 2150) == HY_BREAKER_CLOSED);
    CHECK(hy_breaker_allow(b, t + 2151) && hy_breaker_allow(b, t + 2152));
    /* a trial that never reports back does not wedge the breaker */
    for (int i = 0; i < 3; i++) hy_breaker_record(b, 0, 5000);
    CHECK(hy_breaker_allow(b, 6000) == 1);
    CHECK(hy_breaker_allow(b, 6500) == 0);
    CHECK(hy_breaker_allow(b, 7000) == 1);
    CHECK(!strcmp(hy_breaker_state_name(HY_BREAKER_HALF_OPEN), "half_open"));
    hy_breaker_free(b);
    /* defaults: 3 failures, 30 s */
    CHECK_OK(hy_breaker_new(NULL, &b));
    if (b) {
        for (int i = 0; i < 3; i++) hy_breaker_record(b, 0, 0);
        CHECK(!hy_breaker_allow(b, 29999) && hy_breaker_allow(b, 30000));
        hy_breaker_free(b);
    }
}

typedef struct {
    hy_breaker *b;
    int allowed;
} breaker_thread_arg;

static void *breaker_hammer(void *arg) {
    breaker_thread_arg *t = arg;
    for (int i = 0; i < 2000; i++) t->allowed += hy_breaker_allow(t->b, 1500.0 + i * 1e-3);
    return NULL;
}

/* Half-open under contention: exactly one of many concurrent callers gets the trial. */
static void test_breaker_threads(void) {
    hy_breaker *b = NULL;
    hy_breaker_params bp = {2, 1000.0};
    CHECK_OK(hy_breaker_new(&bp, &b));
    if (!b) return;
    hy_breaker_record(b, 0, 0);
    hy_breaker_record(b, 0, 0);
    pthread_t th[4];
    breaker_thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (breaker_thread_arg){b, 0};
        pthread_create(&th[i], NULL, breaker_hammer, &args[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].allowed;
    }
    CHECK_MSG(total == 1, "%d trials let through", total);
    hy_breaker_free(b);
}

static void test_backoff(void) {
    CHECK(hy_backoff_ms(1, 100, 5000, 0.0) == 0.0);
    CHECK_NEAR(hy_backoff_ms(1, 100, 5000, 0.5), 50.0, 1e-9);
    CHECK_NEAR(hy_backoff_ms(3, 100, 5000, 0.5), 200.0, 1e-9);
    CHECK_NEAR(hy_backoff_ms(10, 100, 5000, 0.5), 2500.0, 1e-9); /* capped at max */
    CHECK(hy_backoff_ms(100000, 100, 5000, 0.999) < 5000.0);
    CHECK(hy_backoff_ms(2, 100, 5000, 1.0) < 200.0 && hy_backoff_ms(2, 100, 5000, -3) == 0.0);
    CHECK(hy_backoff_ms(0, 100, 5000, 0.5) == hy_backoff_ms(1, 100, 5000, 0.5));
    check_rng r = {12345};
    for (int attempt = 1; attempt <= 12; attempt++) {
        double cap = 100.0 * (double)(1u << (attempt - 1));
        if (cap > 5000) cap = 5000;
        double lo = 1e30, hi = 0;
        for (int i = 0; i < 2000; i++) {
            double d = hy_backoff_ms(attempt, 100, 5000, check_rng_uniform(&r));
            if (d < lo) lo = d;
            if (d > hi) hi = d;
        }
        CHECK_MSG(lo >= 0 && hi < cap && hi > 0.95 * cap && lo < 0.05 * cap,
                  "attempt %d: [%g, %g] cap %g", attempt, lo, hi, cap);
    }
}

/* Random digit-heavy texts: with every class redacted, restoring the sent
 * text gives back the input exactly (placeholders map to what they replaced). */
static void test_roundtrip_random(void) {
    hy_policy *p = policy_from("{\"email\":\"redact\",\"phone\":\"redact\",\"card\":\"redact\","
                               "\"iban\":\"redact\",\"patterns\":[{\"name\":\"x\","
                               "\"regex\":\"9[0-9]{2}-[a-z]+\",\"action\":\"redact\"}]}");
    if (!p) {
        CHECK(0);
        return;
    }
    static const char alpha[] =
        "0123456789012345678901234567890123456789 - +.@()/abcDEGBxz_\xc3\xa9";
    check_rng r = {777};
    int failures = 0, found = 0;
    for (int it = 0; it < 3000; it++) {
        static const char *const frag[] = {"4111 1111 1111 1111",
                                           "5500-0000-0000-0004",
                                           "4111111111111112",
                                           "a@ex.com",
                                           "Bob@Example.org",
                                           "+44 20 7946 0958",
                                           "(555) 123-4567",
                                           "06 12 34 56 78",
                                           "DE89370400440532013000",
                                           "GB82 WEST 1234 5698 7654 32",
                                           "912-xy",
                                           "2024-01-15",
                                           "[EMAIL_1]",
                                           "[CARD_2]"};
        char text[200];
        size_t n = 0, want = 1 + (size_t)(check_rng_u64(&r) % 120);
        while (n < want) {
            if (check_rng_u64(&r) % 3 == 0) {
                const char *f = frag[check_rng_u64(&r) % 14];
                size_t fl = strlen(f);
                if (n + fl > sizeof text) break;
                memcpy(text + n, f, fl);
                n += fl;
            } else {
                size_t k = 1 + (size_t)(check_rng_u64(&r) % 6);
                for (size_t i = 0; i < k && n < sizeof text; i++)
                    text[n++] = alpha[check_rng_u64(&r) % (sizeof alpha - 1)];
            }
        }
        hy_egress *e = NULL;
        char *out = NULL, *back = NULL;
        size_t on = 0, bn = 0;
        if (hy_egress_new(p, &e) != SLM_OK || hy_egress_add(e, text, n, &out, &on) != SLM_OK) {
            failures++;
        } else {
            found += hy_egress_n_redacted(e) > 0;
            back = hy_egress_restore(e, out, on, &bn);
            if (!back || bn != n || memcmp(back, text, n)) {
                if (failures++ < 3)
                    fprintf(stderr, "roundtrip: '%.*s' -> '%s' -> '%s'\n", (int)n, text, out,
                            back ? back : "(null)");
            }
        }
        free(out);
        free(back);
        hy_egress_free(e);
    }
    CHECK(failures == 0);
    CHECK_MSG(found > 1000, "only %d random texts had findings", found);

    /* a large text with many findings stays linear-ish */
    size_t big = 1u << 20, pos = 0;
    char *t = malloc(big + 1);
    static const char *const items[] = {"mail a.b@example.com, ",  "+44 20 7946 0958; ",
                                        "4111 1111 1111 1111 ",    "DE89 3704 0044 0532 0130 00 ",
                                        "plain words here 12 34 ", "917-abc "};
    for (int k = 0; t && pos + 40 < big; k++) {
        const char *it = items[k % 6];
        memcpy(t + pos, it, strlen(it));
        pos += strlen(it);
    }
    hy_egress *e = NULL;
    char *out = NULL;
    if (t && hy_egress_new(p, &e) == SLM_OK) {
        clock_t c0 = clock();
        CHECK_OK(hy_egress_add(e, t, pos, &out, NULL));
        double sec = (double)(clock() - c0) / CLOCKS_PER_SEC;
        printf("1 MiB with %d distinct redacted values: %.3f s CPU\n", hy_egress_n_redacted(e),
               sec);
        CHECK(out && !strstr(out, "4111") && !strstr(out, "@example") && !strstr(out, "DE89"));
        CHECK(sec < 20.0);
    }
    free(out);
    free(t);
    hy_egress_free(e);
    hy_policy_free(p);
}

int main(void) {
    test_detectors();
    test_roundtrip_random();
    test_actions();
    test_patterns();
    test_config_errors();
    test_pattern_limit();
    test_audit();
    test_audit_concurrent();
    test_breaker();
    test_breaker_threads();
    test_backoff();
    return check_finish();
}
