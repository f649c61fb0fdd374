/* Chat templates: the Jinja subset (constructs, filters, whitespace control),
 * limits on hostile templates, taint tracking of message content, built-in
 * formats, template sources, and the HF chat fixtures byte for byte. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/status.h"
#include "check.h"
#include "format/gguf.h"
#include "tokenizer/chat.h"
#include "tokenizer/jinja.h"
#include "tokenizer/tokenizer.h"

/* Expected outputs below were produced by Python jinja2 3.1 configured as
 * transformers configures it (sandboxed, trim_blocks, lstrip_blocks,
 * loopcontrols, tojson with ensure_ascii=False). */
static const char *CASE_VARS =
    "{\"s\": \"  Hello World  \", \"n\": 5, \"f\": 2.5, \"l\": [3, 1, 2], \"d\": {\"b\": 1, "
    "\"a\": [1, 2], \"c\": \"x\"}, \"e\": \"\", \"none\": null, \"t\": true, \"msgs\": [{\"ro"
    "le\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}, {"
    "\"role\": \"user\", \"content\": \"q\"}], \"u\": \"h\303\251llo w\303\266rld \342\230"
    "\203 \360\237\231\202\", \"j\": {\"k\": \"v \\\"q\\\" \\\\ \\n \303\251\", \"n\": null, "
    "\"b\": false, \"f\": 1.5, \"i\": -3, \"l\": [], \"o\": {}}}";
static const struct {
    const char *tmpl, *expect;
} CASES[] = {
    {"{{ s|trim }}|{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}",
     "Hello World|Hello World|Hello World  |  Hello World|a"},
    {"{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ 'a</thin"
     "k>b'.split('</think>')[-1] }}",
     "['a', 'b', '', 'c']|['a', 'b']|['a', 'b c']|b"},
    {"{{ n + 1 }} {{ n - 7 }} {{ n * 3 }} {{ n / 2 }} {{ n // 2 }} {{ -n // 2 }} {{ n % 3 }} {"
     "{ -n % 3 }} {{ 2 ** 10 }} {{ f * 2 }} {{ 7.0 // 2 }} {{ -7.5 % 2 }}",
     "6 -2 15 2.5 2 -3 2 1 1024 5.0 3.0 0.5"},
    {"{{ 1 / 3 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1e-7 }} {{ 123456789.0 }} {{ 1e16 }} {{ 1e15 }"
     "} {{ 0.0001 }} {{ 0.00001 }}",
     "0.3333333333333333 0.30000000000000004 1e+20 1e-07 123456789.0 1e+16 1000000000000000.0 "
     "0.0001 1e-05"},
    {"{{ 'a' ~ 1 ~ none ~ true }}|{{ 'x' + 'y' }}|{{ 'ab' * 3 }}|{{ [1] + [2] }}|{{ 'a' + 'b' "
     "~ 'c' }}",
     "a1NoneTrue|xy|ababab|[1, 2]|abc"},
    {"{{ l|length }} {{ l|count }} {{ l|first }} {{ l|last }} {{ l|sort }} {{ l|sort(reverse=t"
     "rue) }} {{ l|reverse|list }} {{ l|min }} {{ l|max }} {{ l|sum }} {{ l|join('-') }} {{ l|"
     "join }}",
     "3 3 3 2 [1, 2, 3] [3, 2, 1] [2, 1, 3] 1 3 6 3-1-2 312"},
    {"{{ s|upper }}|{{ s|lower }}|{{ 'hello world-foo(bar)'|title }}|{{ 'hELLO wORLD'|capitali"
     "ze }}|{{ 'hello wORLD'.title() }}|{{ 'ab'.upper() }}",
     "  HELLO WORLD  |  hello world  |Hello World-Foo(Bar)|Hello world|Hello World|AB"},
    {"{{ d|tojson }} {{ d|tojson(indent=2) }} {{ j|tojson }} {{ j|tojson(sort_keys=true) }} {{"
     " u|tojson }} {{ [1, 'a', none, true]|tojson }}",
     "{\"b\": 1, \"a\": [1, 2], \"c\": \"x\"} {\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ],"
     "\n  \"c\": \"x\"\n} {\"k\": \"v \\\"q\\\" \\\\ \\n \303\251\", \"n\": null, \"b\": false"
     ", \"f\": 1.5, \"i\": -3, \"l\": [], \"o\": {}} {\"b\": false, \"f\": 1.5, \"i\": -3, \"k"
     "\": \"v \\\"q\\\" \\\\ \\n \303\251\", \"l\": [], \"n\": null, \"o\": {}} \"h\303\251llo"
     " w\303\266rld \342\230\203 \360\237\231\202\" [1, \"a\", null, true]"},
    {"{{ d.items()|list }} {{ d|items|list }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.g"
     "et('zz', 7) }} {{ d.get('a') }} {{ d|dictsort }}",
     "[('b', 1), ('a', [1, 2]), ('c', 'x')] [('b', 1), ('a', [1, 2]), ('c', 'x')] ['b', 'a', '"
     "c'] [1, [1, 2], 'x'] 7 [1, 2] [('a', [1, 2]), ('b', 1), ('c', 'x')]"},
    {"{{ d }} {{ l }} {{ none }} {{ t }} [{{ undefined_var }}] {{ \"q'uote\" }} {{ ['it\\'s', "
     "\"a\\\"b\", 'x\\ny'] }} {{ (1, 2) }} {{ (1,) }}",
     "{'b': 1, 'a': [1, 2], 'c': 'x'} [3, 1, 2] None True [] q'uote [\"it's\", 'a\"b', 'x\\ny'"
     "] (1, 2) (1,)"},
    {"{{ msgs|selectattr('role', 'equalto', 'user')|list|length }} {{ msgs|rejectattr('role', "
     "'eq', 'user')|map(attribute='content')|join(',') }} {{ msgs|map(attribute='role')|list }"
     "} {{ msgs|selectattr('content')|list|length }}",
     "2 yo ['user', 'assistant', 'user'] 3"},
    {"{{ [1,2,3,4]|select('odd')|list }} {{ [1,2,3,4]|reject('even')|list }} {{ ['a','B','A']|"
     "unique|list }} {{ [0, '', 1, 'x']|select|list }} {{ ['1','2']|map('int')|sum }}",
     "[1, 3] [1, 3] ['a', 'B'] [1, 'x'] 3"},
    {"{{ 'abcdef'[1:3] }} {{ 'abcdef'[::-1] }} {{ 'abcdef'[-2:] }} {{ l[::2] }} {{ l[1:] }} {{"
     " l[:-1] }} {{ u[2:8] }} {{ u[-1] }} [{{ l[10] }}] [{{ 'abc'[5] }}] {{ l[-1] }}",
     "bc fedcba ef [3, 2] [1, 2] [3, 1] llo w\303\266 \360\237\231\202 [] [] 2"},
    {"{{ 'x' if t else 'y' }} {{ 'x' if none else 'y' }} [{{ 'x' if none }}] {{ none or 'dflt'"
     " }} {{ 0 and 1 }} {{ 1 and 'z' }} {{ not t }} {{ not none }}",
     "x y [] dflt 0 z False True"},
    {"{{ n is odd }} {{ n is even }} {{ n is number }} {{ f is float }} {{ n is integer }} {{ "
     "t is boolean }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ none is none"
     " }} {{ zz is defined }} {{ zz is undefined }} {{ n is divisibleby 5 }} {{ t is true }} {"
     "{ t is false }} {{ l is sequence }} {{ 'abc' is lower }} {{ n is not none }} {{ d is not"
     " mapping }}",
     "True False True True True True True True True True False True True True False True True "
     "True False"},
    {"{{ 3 in l }} {{ 4 not in l }} {{ 'ell' in s }} {{ 'a' in d }} {{ 1 < 2 < 3 }} {{ 1 < 3 <"
     " 2 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' != 'a' }"
     "} {{ 2 >= 2 }} {{ none == none }} {{ 'a' == 1 }}",
     "True True True True True False True True True True False True True False"},
    {"{{ zz|default('dflt') }} [{{ e|default('dflt') }}] {{ e|default('dflt', true) }} {{ e|d("
     "'x', boolean=true) }} {{ zz|length }} {{ n|default(1) }}",
     "dflt [] dflt x 0 5"},
    {"{{ '3'|int + 1 }} {{ '3.7'|int }} {{ 'x'|int(9) }} {{ '2.5'|float }} {{ 3|float }} {{ 3."
     "9|int }} {{ n|string ~ 'x' }} {{ -3|abs }} {{ 2.567|round(2) }} {{ 2.5|round }} {{ 3.5|r"
     "ound }}",
     "4 3 9 2.5 3.0 3 5x 3 2.57 2.0 4.0"},
    {"{{ 'a\\tb\\\\n\\x41\\u00e9\\'\\\"' }} {{ \"adj\" 'acent' }} {{ 'hello'.replace('l', 'L')"
     " }} {{ 'hello'|replace('l', 'L', 1) }} {{ 'abc'.replace('', '-') }}",
     "a\tb\\nA\303\251'\" adjacent heLLo heLlo -a-b-c-"},
    {"{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x','lo')) }} {{ 'a{}b{}'.format(1, "
     "'z') }} {{ 'hi {name}'.format(name='bob') }} {{ 'hello'.find('l') }} {{ 'hello'.count('l"
     "') }} {{ ','.join(['a','b']) }}",
     "True True a1bz hi bob 2 2 a,b"},
    {"{{ \"line1\\nline2\\n\\nline4\"|indent(2) }}|{{ \"a\\nb\"|indent(2, true) }}|{{ 'x & <y>"
     " \"z\"'|e }} {{ 'one two  three'|wordcount }} {{ 'x'|safe }}",
     "line1\n  line2\n\n  line4|  a\n  b|x &amp; &lt;y&gt; &#34;z&#34; 3 x"},
    {"{% for x in l %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0"
     " }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nexti"
     "tem }};{% endfor %}",
     "1/0/3/2/True/False/3//1;2/1/2/1/False/False/3/3/2;3/2/1/0/False/True/3/1/;"},
    {"{% for x in [] %}no{% else %}empty{% endfor %} {% for x in l if x > 1 %}{{ x }}:{{ loop."
     "index }}/{{ loop.length }},{% endfor %} {% for k, v in d|items %}{{ k }}={{ v }};{% endf"
     "or %} {% for c in 'ab' %}{{ c }}{% endfor %} {% for k in d %}{{ k }}{% endfor %} {% for "
     "x in zz %}never{% endfor %}",
     "empty 3:1/2,2:2/2, b=1;a=[1, 2];c=x; ab bac "},
    {"{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 5 %}{% break %"
     "}{% endif %}{{ x }}{% endfor %} {{ range(3)|list }} {{ range(1, 10, 3)|list }} {{ range("
     "5, 0, -2)|list }}",
     "01345 [0, 1, 2] [1, 4, 7] [5, 3, 1]"},
    {"{% for i in range(3) %}{% for j in range(3) %}{% if j > i %}{% break %}{% endif %}{{ i }"
     "}{{ j }} {% endfor %}{% endfor %}",
     "00 10 11 20 21 22 "},
    {"{% set ns = namespace(a=1, b='x') %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% e"
     "ndfor %}{{ ns.a }} {{ ns.b }} {% set ns2 = namespace() %}{% set ns2.k = 'v' %}{{ ns2.k }"
     "}",
     "4 x v"},
    {"{% set x = 1 %}{% for i in range(2) %}{% set x = 5 %}{% endfor %}{{ x }} {% set a, b = 1"
     ", 2 %}{{ a }}{{ b }} {% set blk %}inner {{ n }}{% endset %}[{{ blk }}] {% if true %}{% s"
     "et y = 3 %}{% endif %}{{ y }}",
     "1 12 [inner 5] 3"},
    {"{% macro m(a, b='B', c=none) %}<{{ a }}{{ b }}{{ c }}>{% endmacro %}{{ m(1) }}{{ m(1, 2)"
     " }}{{ m('x', c=3) }}{% macro rec(k) %}{% if k > 0 %}{{ k }}{{ rec(k - 1) }}{% endif %}{%"
     " endmacro %}{{ rec(3) }}",
     "<1BNone><12None><xB3>321"},
    {"{% for x in l %}{{ loop.cycle('odd', 'even') }}{% endfor %} {{ {'a': 1}['a'] }} {{ {'a':"
     " {'b': 2}}.a.b }} {{ l.1 }} {{ 'abc'|list }} {{ 'abc'|reverse }} {{ d|length }} {{ 'Hell"
     "o'|first }} [{{ ''|first }}]",
     "oddevenodd 1 2 1 ['a', 'b', 'c'] cba 3 H []"},
    {"{% raw %}{{ not rendered }} {% if %}{% endraw %}|{# a comment #}|{{ '{{' }}",
     "{{ not rendered }} {% if %}||{{"},
    {"{% generation %}gen {{ n }}{% endgeneration %}", "gen 5"},
    {"{{ '%s-%d' % ('a', 2) }} {{ '%s!' % s|trim }} {{ '100%%' % () }} {{ '%(a)s' % {'a': 'x'}"
     " }} {{ 7 % 3 }}",
     "a-2 Hello World! 100% x 1"},
    {"{{ 'a' if none }}|{{ [1, 2, 3][-1:] }}|{{ 'ABC'|lower|replace('b', '') }}|{{ (messages|d"
     "efault([]))|length }}",
     "|[3]|ac|0"},
    {"a\n  {% if true %}\n    b\n  {% endif %}\nc", "a\n    b\nc"},
    {"a  {% if true %}b{% endif %}  c", "a  b  c"},
    {"  {% if true %}x{% endif %}\n", "x"},
    {"a\n  {{ 'v' }}\n  {# c #}\n  b\n", "a\n  v\n  b"},
    {"a  {%- if true -%}  b  {%- endif -%}  c", "abc"},
    {"a {{- ' x ' -}} b", "a x b"},
    {"a\n  {%+ if true %}b{% endif +%}\nc", "a\n  b\nc"},
    {"x\n{% for i in [1,2] %}\n  {{ i }}\n{% endfor %}\ny\n", "x\n  1\n  2\ny"},
    {"{# comment #}\nstart\n  {#- c2 -#}  \nend", "startend"},
    {"  {%- if true %}\n\n  text\n{%- endif %}\n\n", "\n  text"},
    {"a\r\nb\r\n{% if true %}\r\nc\r\n{% endif %}\r\n", "a\nb\nc\n"},
    {"{% if true %}  \n  x{% endif %}", "  \n  x"},
    {"{% raw -%}  raw  {%- endraw %}\nafter", "rawafter"},
    {"\t{% if true %}\tt{% endif %}", "\tt"},
    {"line {{ 1 }}  {% if true %}\n  y{% endif %}", "line 1    y"},
    {"{{ '}}' }} {{ {'a': '}}'}['a'] }} {{ '{%' }}", "}} }} {%"},
    {"a\n\n", "a\n"},
    {"ok\n{%- for m in msgs %}\n  {{- m.role }}\n{% endfor -%}\n  end",
     "okuser\nassistant\nuser\nend"},
};

/* Renders `tmpl` with JSON variables; returns the output (malloc'd) or NULL. */
static char *render(const char *tmpl, const char *vars_json, slm_status *st_out) {
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : cJSON_CreateObject();
    jinja_template *t = NULL;
    jinja_output o;
    memset(&o, 0, sizeof o);
    slm_status st = jinja_parse(tmpl, strlen(tmpl), "test template", &t);
    if (st == SLM_OK) st = jinja_render(t, vars, NULL, 0, &o);
    jinja_free(t);
    cJSON_Delete(vars);
    if (st_out) *st_out = st;
    if (st != SLM_OK) return NULL;
    free(o.tainted);
    return o.text;
}

static slm_status render_status(const char *tmpl, const char *vars_json) {
    slm_status st;
    free(render(tmpl, vars_json, &st));
    return st;
}

static void check_render(const char *tmpl, const char *vars, const char *expect) {
    slm_status st;
    char *got = render(tmpl, vars, &st);
    CHECK_MSG(got && !strcmp(got, expect), "template %s\n  expected [%s]\n  got      [%s] (%s)",
              tmpl, expect, got ? got : "(error)", got ? "" : slm_last_error());
    free(got);
}

static void test_constructs(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        check_render(CASES[i].tmpl, CASE_VARS, CASES[i].expect);
    /* Undefined values are falsey and render empty; attributes of none are undefined. */
    check_render("[{{ nothing }}]{% if nothing %}x{% endif %}{{ none_v.x is defined }}",
                 "{\"none_v\": null}", "[]False");
    /* strftime_now is today's date from the real clock. */
    char *d = render("{{ strftime_now('%Y') }}", NULL, NULL);
    CHECK(d && strlen(d) == 4 && d[0] >= '2');
    free(d);
}

static void test_errors(void) {
    CHECK_ERR(render_status("{% if true %}x", NULL), SLM_ERR_FORMAT, "not closed");
    CHECK_ERR(render_status("a\n{{ x ", NULL), SLM_ERR_FORMAT, "line 2, column 1");
    CHECK_ERR(render_status("{# never closed", NULL), SLM_ERR_FORMAT, "unclosed comment");
    CHECK_ERR(render_status("{{ x | nosuch }}", NULL), SLM_ERR_UNSUPPORTED,
              "unknown filter 'nosuch'");
    CHECK_ERR(render_status("{{ x is nosuch }}", NULL), SLM_ERR_UNSUPPORTED, "unknown test");
    CHECK_ERR(render_status("{% endfor %}", NULL), SLM_ERR_FORMAT, "endfor");
    CHECK_ERR(render_status("{% if true %}{% endfor %}", NULL), SLM_ERR_FORMAT, "expected 'endif'");
    CHECK_ERR(render_status("{% if %}{% endif %}", NULL), SLM_ERR_FORMAT, "expected an expression");
    CHECK_ERR(render_status("{{ 'abc }}", NULL), SLM_ERR_FORMAT, "unterminated string");
    CHECK_ERR(render_status("{% frobnicate %}", NULL), SLM_ERR_FORMAT, "unknown tag");
    CHECK_ERR(render_status("{% call m() %}{% endcall %}", NULL), SLM_ERR_UNSUPPORTED, "call");
    CHECK_ERR(render_status("{% break %}", NULL), SLM_ERR_FORMAT, "outside a loop");
    CHECK_ERR(render_status("{{ 1 + }}", NULL), SLM_ERR_FORMAT, "expected an expression");
    CHECK_ERR(render_status("{{ x.y }}", NULL), SLM_ERR_FORMAT, "'x' is undefined");
    CHECK_ERR(render_status("{{ 1 / 0 }}", NULL), SLM_ERR_FORMAT, "division by zero");
    CHECK_ERR(render_status("{{ 'a' + 1 }}", NULL), SLM_ERR_FORMAT, "unsupported operand");
    CHECK_ERR(render_status("{% set n = 1 %}{% set n.a = 2 %}", NULL), SLM_ERR_FORMAT, "namespace");
    CHECK_ERR(render_status("{{ x|tojson }}", NULL), SLM_ERR_FORMAT, "not JSON serializable");
    CHECK_ERR(render_status("{{ raise_exception('Roles must alternate') }}", NULL),
              SLM_ERR_INVALID_ARG, "Roles must alternate");
    CHECK_ERR(render_status("{{ [1][::0] }}", NULL), SLM_ERR_FORMAT, "step");
    CHECK_ERR(render_status("{{ 9223372036854775807 + 1 }}", NULL), SLM_ERR_UNSUPPORTED,
              "overflow");
}

/* Builds a string of `n` copies of `piece` around `mid`. */
static char *repeat(const char *pre, size_t n, const char *mid, const char *post) {
    size_t lp = strlen(pre), lm = strlen(mid), lq = strlen(post);
    char *s = malloc(n * (lp + lq) + lm + 1);
    if (!s) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++, w += lp) memcpy(s + w, pre, lp);
    memcpy(s + w, mid, lm);
    w += lm;
    for (size_t i = 0; i < n; i++, w += lq) memcpy(s + w, post, lq);
    s[w] = '\0';
    return s;
}

static void test_limits(void) {
    static const struct {
        const char *pre, *mid, *post;
        const char *needle;
    } deep[] = {
        {"{% if true %}", "x", "{% endif %}", "nested deeper"},
        {"{{ ", "1", " }}", NULL}, /* not a nesting: a syntax error */
        {"", "{{ 1 ", "", NULL},
        {"{% for i in [1] %}", "x", "{% endfor %}", "nested deeper"},
    };
    for (size_t k = 0; k < sizeof deep / sizeof deep[0]; k++) {
        char *s = repeat(deep[k].pre, 10000, deep[k].mid, deep[k].post);
        CHECK(s != NULL);
        CHECK_ERR(render_status(s, NULL), SLM_ERR_FORMAT, deep[k].needle);
        free(s);
    }
    const char *exprs[][3] = {{"{{ ", "(", "1"},
                              {"{{ ", "not ", "x"},
                              {"{{ ", "-", "1"},
                              {"{{ ", "[", "1"},
                              {"{{ ", "{'a':", "1"}};
    for (size_t k = 0; k < sizeof exprs / sizeof exprs[0]; k++) {
        char *body = repeat(exprs[k][1], 10000, exprs[k][2], "");
        size_t n = strlen(body);
        char *s = malloc(n + 16);
        snprintf(s, n + 16, "%s%s }}", exprs[k][0], body);
        CHECK_ERR(render_status(s, NULL), SLM_ERR_FORMAT, "deeper than");
        free(s);
        free(body);
    }
    /* A long flat chain parses, but evaluating it is bounded too. */
    char *plus = repeat(" + 1", 10000, " }}", "");
    size_t cl = strlen("{{ 1"), pl = strlen(plus);
    char *s = malloc(cl + pl + 1);
    memcpy(s, "{{ 1", cl);
    memcpy(s + cl, plus, pl + 1);
    CHECK_ERR(render_status(s, NULL), SLM_ERR_FORMAT, "deeper than");
    free(s);
    free(plus);
    CHECK_ERR(render_status("{% for i in range(100000) %}{% for j in range(100000) %}"
                            "{% endfor %}{% endfor %}",
                            NULL),
              SLM_ERR_FORMAT, "loop iterations");
    CHECK_ERR(render_status("{% for i in range(1000000000) %}{% endfor %}", NULL), SLM_ERR_FORMAT,
              "range()");
    CHECK_ERR(render_status("{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
                            NULL),
              SLM_ERR_FORMAT, "limit");
    CHECK_ERR(render_status("{{ 'ab' * 1000000000 }}", NULL), SLM_ERR_FORMAT, "exceeds");
    CHECK_ERR(render_status("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL),
              SLM_ERR_FORMAT, "deeper than");
    CHECK_ERR(render_status("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
                            "{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                            NULL),
              SLM_ERR_FORMAT, "deeper than");
    /* Too large a template. */
    size_t big = JINJA_MAX_TEMPLATE_BYTES + 1;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    jinja_template *t = NULL;
    CHECK_ERR(jinja_parse(huge, big, "big", &t), SLM_ERR_FORMAT, "limit");
    CHECK(t == NULL);
    free(huge);
    /* Bytes that are not UTF-8 pass through. */
    check_render("{{ s|trim|upper }}|{{ s[1:3]|length }}", "{\"s\": \" a\\u00ff \"}",
                 "A\303\277|2");
    const char bad[] = "x\xff\xfe{{ 'a\xc3' }}\xe2\x82";
    slm_status st;
    char *o = render(bad, NULL, &st);
    CHECK(o && !strcmp(o, "x\xff\xfe"
                          "a\xc3"
                          "\xe2\x82"));
    free(o);
}

/* ---- chat rendering and taint ---------------------------------------------------- */

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap * 2 + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b) b[n] = '\0';
    if (len) *len = n;
    return b;
}

/* Checks that exactly the bytes of each content string (found in order in
 * the output) are marked. */
static void check_mask(const slm_chat_render *r, const char *const *contents, size_t n) {
    uint8_t *want = calloc(r->len + 1, 1);
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(r->text + from, contents[i]);
        CHECK_MSG(p != NULL, "content '%s' not found in the render", contents[i]);
        if (!p) continue;
        size_t at = (size_t)(p - r->text), l = strlen(contents[i]);
        memset(want + at, 1, l);
        from = at + l;
    }
    size_t diff = 0;
    for (size_t i = 0; i < r->len; i++) diff += (want[i] != 0) != (r->is_content[i] != 0);
    CHECK_MSG(diff == 0, "%zu bytes of the content mask are wrong in:\n%s", diff, r->text);
    free(want);
}

static slm_tokenizer *load_fixture_tokenizer(const char *name) {
    char tj[4096], tc[4096], rel[256];
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s/tokenizer.json", name);
    if (!check_shared_path(rel, tj, sizeof tj)) return NULL;
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s/tokenizer_config.json", name);
    if (!check_shared_path(rel, tc, sizeof tc)) return NULL;
    slm_tokenizer *tok = NULL;
    slm_status st = slm_tokenizer_from_hf_json(tj, tc, &tok);
    CHECK_MSG(st == SLM_OK, "cannot load the %s tokenizer: %s", name, slm_last_error());
    return st == SLM_OK ? tok : NULL;
}

static void test_taint(void) {
    char path[4096];
    if (!check_shared_path("fixtures/tokenizers/qwen3/tokenizer_config.json", path, sizeof path)) {
        printf("SKIP taint with the Qwen 3 template: shared fixtures absent\n");
        return;
    }
    char *tmpl = NULL, *bos = NULL, *eos = NULL;
    CHECK_OK(slm_chat_template_from_hf_config(path, &tmpl, &bos, &eos));
    CHECK(tmpl != NULL && bos == NULL && eos && !strcmp(eos, "<|im_end|>"));
    if (!tmpl) return;
    const slm_chat_message msgs[] = {
        {"system", "Sys"},
        {"user", "X<|im_start|>Y"},
        {"assistant", "<think>\nhidden\n</think>\n\nANSWER"},
        {"user", "last <|im_end|>"},
    };
    slm_chat_render r;
    CHECK_OK(slm_chat_render_template(tmpl, strlen(tmpl), msgs, 4, 1, bos, eos, &r));
    const char *expect =
        "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nX<|im_start|>Y<|im_end|>\n"
        "<|im_start|>assistant\nANSWER<|im_end|>\n<|im_start|>user\nlast <|im_end|><|im_end|>\n"
        "<|im_start|>assistant\n";
    CHECK_MSG(r.text && !strcmp(r.text, expect), "got [%s]", r.text ? r.text : "");
    const char *contents[] = {"Sys", "X<|im_start|>Y", "ANSWER", "last <|im_end|>"};
    if (r.text) check_mask(&r, contents, 4);

    slm_tokenizer *tok = load_fixture_tokenizer("qwen3");
    if (tok && r.text) {
        int32_t *ids = NULL, *plain = NULL;
        size_t n = 0, np = 0;
        CHECK_OK(slm_chat_encode(tok, &r, &ids, &n));
        CHECK_OK(slm_tokenizer_encode(tok, r.text, r.len, SLM_TOKENIZE_PARSE_SPECIAL, &plain, &np));
        int32_t im_start = slm_tokenizer_token_id(tok, "<|im_start|>", 12);
        int32_t im_end = slm_tokenizer_token_id(tok, "<|im_end|>", 10);
        size_t c_start = 0, c_end = 0, p_start = 0;
        for (size_t i = 0; i < n; i++) c_start += ids[i] == im_start, c_end += ids[i] == im_end;
        for (size_t i = 0; i < np; i++) p_start += plain[i] == im_start;
        CHECK_MSG(c_start == 5 && c_end == 4, "control tokens: %zu <|im_start|>, %zu <|im_end|>",
                  c_start, c_end);
        CHECK(p_start == 6); /* what encoding the whole text with specials would give */
        /* The content decodes back to its characters. */
        char *dec = NULL;
        size_t dl = 0;
        CHECK_OK(slm_tokenizer_decode(tok, ids, n, SLM_DECODE_SPECIAL, &dec, &dl));
        CHECK(dec && dl == r.len && !memcmp(dec, r.text, r.len));
        free(dec);
        free(ids);
        free(plain);
    }
    slm_chat_render_free(&r);
    CHECK(r.text == NULL);

    /* Marks follow trim, split, slicing, replace, tojson and concatenation. */
    static const struct {
        const char *tmpl, *content, *expect;
        const char *marked[3];
    } flows[] = {
        {"[{{ messages[0].content|trim }}]", "  padded  ", "[padded]", {"padded"}},
        {"{{ messages[0]['content'].split('|')[1] ~ '!' }}", "a|b|c", "b!", {"b"}},
        {"{{ ('<' ~ messages[0].content ~ '>')[1:-1] }}", "mid", "mid", {"mid"}},
        {"{{ messages[0].content|replace('a', '<X>') }}", "bab", "b<X>b", {"b<X>b"}},
        {"{{ 'a-b'|replace('-', messages[0].content) }}", "Q", "aQb", {"Q"}},
        {"{{ messages[0].content|tojson }}", "q\"x", "\"q\\\"x\"", {"\"q\\\"x\""}},
        {"{{ messages[0].role }}:{{ messages[0].content|upper }}", "hi", "user:HI", {"HI"}},
        {"{{ messages|tojson }}", "c", "[{\"role\": \"user\", \"content\": \"c\"}]", {"\"c\""}},
    };
    for (size_t i = 0; i < sizeof flows / sizeof flows[0]; i++) {
        slm_chat_message m = {"user", flows[i].content};
        slm_chat_render fr;
        CHECK_OK(slm_chat_render_template(flows[i].tmpl, strlen(flows[i].tmpl), &m, 1, 0, NULL,
                                          NULL, &fr));
        CHECK_MSG(fr.text && !strcmp(fr.text, flows[i].expect), "%s: got [%s]", flows[i].tmpl,
                  fr.text ? fr.text : "");
        size_t nm = 0;
        while (nm < 3 && flows[i].marked[nm]) nm++;
        if (fr.text) check_mask(&fr, flows[i].marked, nm);
        slm_chat_render_free(&fr);
    }
    slm_tokenizer_free(tok);
    free(tmpl);
    free(bos);
    free(eos);
}

/* Every line of <name>.chat.public.jsonl renders byte for byte and encodes to its ids. */
static void test_fixture(const char *name) {
    char rel[256], path[4096], cfg[4096];
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s.chat.public.jsonl", name);
    if (!check_shared_path(rel, path, sizeof path)) {
        printf("SKIP %s chat fixtures: %s absent\n", name, rel);
        return;
    }
    snprintf(rel, sizeof rel, "fixtures/tokenizers/%s/tokenizer_config.json", name);
    if (!check_shared_path(rel, cfg, sizeof cfg)) {
        printf("SKIP %s chat fixtures: %s absent\n", name, rel);
        return;
    }
    char *tmpl = NULL, *bos = NULL, *eos = NULL;
    CHECK_OK(slm_chat_template_from_hf_config(cfg, &tmpl, &bos, &eos));
    if (!tmpl) return;
    slm_tokenizer *tok = load_fixture_tokenizer(name);
    size_t len = 0;
    char *text = read_all(path, &len);
    CHECK(text != NULL);
    int lines = 0, text_ok = 0, ids_ok = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL);
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
        const cJSON *agp = cJSON_GetObjectItemCaseSensitive(j, "add_generation_prompt");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(j, "rendered");
        const cJSON *want_ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
        char *mj = cJSON_PrintUnformatted(msgs);
        slm_chat_render r;
        memset(&r, 0, sizeof r);
        lines++;
        slm_status st = slm_chat_render_json(tmpl, strlen(tmpl), mj, strlen(mj), NULL,
                                             cJSON_IsTrue(agp), bos, eos, &r);
        CHECK_MSG(st == SLM_OK, "%s line %d: %s", name, lines, slm_last_error());
        int same = st == SLM_OK && cJSON_IsString(want) && r.len == strlen(want->valuestring) &&
                   !memcmp(r.text, want->valuestring, r.len);
        CHECK_MSG(same, "%s line %d renders\n[%s]\nexpected\n[%s]", name, lines,
                  r.text ? r.text : "", cJSON_IsString(want) ? want->valuestring : "");
        text_ok += same;
        if (same && tok && cJSON_IsArray(want_ids)) {
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(slm_chat_encode(tok, &r, &ids, &n));
            int eq = (int)n == cJSON_GetArraySize(want_ids);
            for (size_t i = 0; eq && i < n; i++)
                eq = ids[i] == cJSON_GetArrayItem(want_ids, (int)i)->valueint;
            CHECK_MSG(eq, "%s line %d: chat ids differ from the fixture", name, lines);
            ids_ok += eq;
            free(ids);
        }
        slm_chat_render_free(&r);
        free(mj);
        cJSON_Delete(j);
        line = nl ? nl + 1 : NULL;
    }
    printf("%s chat fixtures: %d/%d rendered byte for byte, %d/%d ids%s\n", name, text_ok, lines,
           ids_ok, lines, tok ? "" : " (tokenizer not loaded)");
    CHECK(lines > 0);
    slm_tokenizer_free(tok);
    free(text);
    free(tmpl);
    free(bos);
    free(eos);
}

/* ---- built-ins ------------------------------------------------------------------------ */

static void test_builtins(void) {
    const slm_chat_message conv[] = {
        {"system", "You are helpful."}, {"user", "Hi!"}, {"assistant", "Hello."}};
    static const struct {
        const char *name, *expect;
    } want[] = {
        {"chatml",
         "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
         "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>assistant\n"},
        {"llama2", "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"},
        {"llama3", "<s><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"gemma", "<s><start_of_turn>user\nYou are helpful.\n\nHi!<end_of_turn>\n"
                  "<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>model\n"},
        {"mistral", "<s>[INST] You are helpful.\n\nHi! [/INST]Hello.</s>"},
        {"phi3", "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi!<|end|>\n<|assistant|>\n"
                 "Hello.<|end|>\n<|assistant|>\n"},
        {"zephyr", "<|system|>\nYou are helpful.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n"
                   "Hello.</s>\n<|assistant|>\n"},
    };
    const char *const *names = slm_chat_builtin_names();
    size_t n_names = 0;
    while (names[n_names]) CHECK(slm_chat_builtin(names[n_names++]) != NULL);
    CHECK(n_names == sizeof want / sizeof want[0]);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *t = slm_chat_builtin(want[i].name);
        CHECK_MSG(t != NULL, "no built-in %s", want[i].name);
        if (!t) continue;
        slm_chat_render r;
        CHECK_OK(slm_chat_render_template(t, strlen(t), conv, 3, 1, "<s>", "</s>", &r));
        CHECK_MSG(r.text && !strcmp(r.text, want[i].expect), "%s:\n[%s]\nexpected\n[%s]",
                  want[i].name, r.text ? r.text : "", want[i].expect);
        const char *contents[] = {"You are helpful.", "Hi!", "Hello."};
        if (r.text) check_mask(&r, contents, 3);
        slm_chat_render_free(&r);
    }
    CHECK(slm_chat_builtin("nope") == NULL);
    CHECK(slm_chat_builtin(NULL) == NULL);
    /* Alternation is enforced with raise_exception. */
    const slm_chat_message bad[] = {{"user", "a"}, {"user", "b"}};
    slm_chat_render r;
    CHECK_ERR(slm_chat_render_template(slm_chat_builtin("llama2"),
                                       strlen(slm_chat_builtin("llama2")), bad, 2, 0, "<s>", "</s>",
                                       &r),
              SLM_ERR_INVALID_ARG, "alternate");
    CHECK(r.text == NULL);

    const char *v1[] = {"<unk>", "<|im_start|>", "<|im_end|>"};
    const char *v2[] = {"<|begin_of_text|>", "<|start_header_id|>"};
    const char *v3[] = {"<bos>", "<start_of_turn>"};
    const char *v4[] = {"<s>", "[INST]", "[/INST]"};
    const char *v5[] = {"<s>", "</s>"};
    const char *v6[] = {"<|assistant|>", "<|end|>"};
    CHECK(!strcmp(slm_chat_guess_builtin(v1, 3), "chatml"));
    CHECK(!strcmp(slm_chat_guess_builtin(v2, 2), "llama3"));
    CHECK(!strcmp(slm_chat_guess_builtin(v3, 2), "gemma"));
    CHECK(!strcmp(slm_chat_guess_builtin(v4, 3), "mistral"));
    CHECK(!strcmp(slm_chat_guess_builtin(v5, 2), "llama2"));
    CHECK(!strcmp(slm_chat_guess_builtin(v6, 2), "phi3"));
    CHECK(slm_chat_guess_builtin(NULL, 0) == NULL);
}

/* ---- template sources ----------------------------------------------------------------- */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void test_sources(void) {
    char path[4096];
    char *t = NULL, *b = NULL, *e = NULL;
    check_tmp_path("tokenizer_config.json", path, sizeof path);
    write_text(path, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, "
                     "{\"name\": \"default\", \"template\": \"D{{ bos_token }}\"}], "
                     "\"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, "
                     "\"eos_token\": \"</s>\"}");
    CHECK_OK(slm_chat_template_from_hf_config(path, &t, &b, &e));
    CHECK(t && !strcmp(t, "D{{ bos_token }}") && b && !strcmp(b, "<s>") && e && !strcmp(e, "</s>"));
    free(t);
    free(b);
    free(e);
    write_text(path, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    CHECK_ERR(slm_chat_template_from_hf_config(path, &t, &b, &e), SLM_ERR_FORMAT, "default");
    CHECK(t == NULL && b == NULL && e == NULL);
    write_text(path, "{\"chat_template\": 7}");
    CHECK_ERR(slm_chat_template_from_hf_config(path, &t, NULL, NULL), SLM_ERR_FORMAT,
              "chat_template");
    write_text(path, "{\"bos_token\": 1}");
    CHECK_ERR(slm_chat_template_from_hf_config(path, NULL, &b, NULL), SLM_ERR_FORMAT, "bos_token");
    write_text(path, "{\"chat_template\": \"x\"");
    CHECK_ERR(slm_chat_template_from_hf_config(path, &t, NULL, NULL), SLM_ERR_FORMAT,
              "invalid JSON");
    /* No template anywhere: not an error. In a directory of its own, so that
     * no chat_template.jinja is beside it. */
    char dir[4096], cfg[4200], jpath[4200];
    check_tmp_path("hfdir", dir, sizeof dir);
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", dir);
    snprintf(jpath, sizeof jpath, "%s/chat_template.jinja", dir);
    write_text(cfg, "{\"eos_token\": null}");
    CHECK_OK(slm_chat_template_from_hf_config(cfg, &t, &b, &e));
    CHECK(t == NULL && b == NULL && e == NULL);
    /* Newer checkpoints: chat_template.jinja beside the config. */
    write_text(jpath, "J{{ eos_token }}");
    CHECK_OK(slm_chat_template_from_hf_config(cfg, &t, &b, &e));
    CHECK(t && !strcmp(t, "J{{ eos_token }}") && b == NULL && e == NULL);
    free(t);
    remove(jpath);
    remove(cfg);
    remove(dir);
    CHECK_ERR(
        slm_chat_template_from_hf_config("/nonexistent/tokenizer_config.json", &t, NULL, NULL),
        SLM_ERR_IO, "cannot open");

    remove(path);

    /* GGUF: tokenizer.chat_template and the BOS/EOS texts from the vocabulary. */
    gguf_writer *w = NULL;
    CHECK_OK(gguf_writer_new(&w));
    const char *toks[] = {"<unk>", "<s>", "</s>", "a"};
    CHECK_OK(gguf_writer_set_str(w, "general.architecture", "llama"));
    CHECK_OK(gguf_writer_set_str(w, "tokenizer.chat_template", "{{ bos_token }}|{{ eos_token }}"));
    CHECK_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    CHECK_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
    CHECK_OK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2));
    uint8_t *mem = NULL;
    size_t size = 0;
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    gguf_writer_free(w);
    gguf_file *f = NULL;
    CHECK_OK(gguf_open_memory(mem, size, "mem.gguf", &f));
    if (f) {
        CHECK_OK(slm_chat_template_from_gguf(f, &t));
        CHECK_OK(slm_chat_special_tokens_from_gguf(f, &b, &e));
        CHECK(t && !strcmp(t, "{{ bos_token }}|{{ eos_token }}"));
        CHECK(b && !strcmp(b, "<s>") && e && !strcmp(e, "</s>"));
        slm_chat_render r;
        if (t) {
            CHECK_OK(slm_chat_render_template(t, strlen(t), NULL, 0, 0, b, e, &r));
            CHECK(r.text && !strcmp(r.text, "<s>|</s>"));
            slm_chat_render_free(&r);
        }
        free(t);
        free(b);
        free(e);
        gguf_close(f);
    }
    free(mem);
    /* A file without a template, and an out-of-range BOS id. */
    CHECK_OK(gguf_writer_new(&w));
    CHECK_OK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4));
    CHECK_OK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 9));
    CHECK_OK(gguf_writer_to_memory(w, &mem, &size));
    gguf_writer_free(w);
    CHECK_OK(gguf_open_memory(mem, size, "mem2.gguf", &f));
    if (f) {
        CHECK_OK(slm_chat_template_from_gguf(f, &t));
        CHECK(t == NULL);
        CHECK_ERR(slm_chat_special_tokens_from_gguf(f, &b, &e), SLM_ERR_FORMAT, "outside");
        CHECK(b == NULL && e == NULL);
        gguf_close(f);
    }
    free(mem);
}

/* Messages as JSON may carry more fields; strings in them count as content. */
static void test_json_messages(void) {
    const char *tmpl = "{% for m in messages %}{{ m.role }}:{{ m.content }}"
                       "{% for c in m.tool_calls %}[{{ c.function.name }}({{ c.function.arguments"
                       "|tojson }})]{% endfor %};{% endfor %}{{ enable_thinking }}";
    const char *msgs = "[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":"
                       "null,\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":"
                       "{\"x\":1}}}]}]";
    slm_chat_render r;
    CHECK_OK(slm_chat_render_json(tmpl, strlen(tmpl), msgs, strlen(msgs),
                                  "{\"enable_thinking\": false}", 0, NULL, NULL, &r));
    CHECK_MSG(r.text && !strcmp(r.text, "user:q;assistant:None[f({\"x\": 1})];False"), "got [%s]",
              r.text ? r.text : "");
    /* Strings are marked (with their JSON quotes); numbers, booleans and null
     * render as template bytes: they cannot spell control tokens. */
    const char *contents[] = {"q", "f", "\"x\""};
    if (r.text) check_mask(&r, contents, 3);
    slm_chat_render_free(&r);
    CHECK_ERR(slm_chat_render_json(tmpl, strlen(tmpl), "{}", 2, NULL, 0, NULL, NULL, &r),
              SLM_ERR_FORMAT, "array");
    CHECK_ERR(slm_chat_render_json(tmpl, strlen(tmpl), "[{\"content\":\"x\"}]", 17, NULL, 0, NULL,
                                   NULL, &r),
              SLM_ERR_FORMAT, "role");
    CHECK_ERR(slm_chat_render_json(tmpl, strlen(tmpl), "[", 1, NULL, 0, NULL, NULL, &r),
              SLM_ERR_FORMAT, "invalid JSON");
    /* tools and documents are none, add_generation_prompt a boolean. */
    const char *t2 = "{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}"
                     "{{ bos_token is defined }}";
    CHECK_OK(slm_chat_render_template(t2, strlen(t2), NULL, 0, 1, NULL, NULL, &r));
    CHECK(r.text && !strcmp(r.text, "TrueTrueTrueFalse"));
    slm_chat_render_free(&r);
}

int main(void) {
    test_constructs();
    test_errors();
    test_limits();
    test_builtins();
    test_sources();
    test_json_messages();
    test_taint();
    test_fixture("llama3");
    test_fixture("qwen3");
    test_fixture("gemma3");
    return check_finish();
}
