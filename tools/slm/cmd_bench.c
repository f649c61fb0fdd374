/* slm bench: what a device cares about — time to first token, prefill and
 * decode speed, per-token latency percentiles, peak memory, cold start,
 * energy — measured with repetitions after a warm-up, reported as medians.
 *
 * Uses the public API for the model work and the OS directly (/proc, /sys,
 * getrusage, fork/exec) for memory, energy and machine facts: those belong
 * to the benchmark, not to the library. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cli.h"
#include "cli_grammar.h"

static const char *BENCH_HELP =
    "usage: slm bench -m MODEL [options]\n"
    "       slm bench --bandwidth            (memory bandwidth only)\n"
    "\n"
    "Runs a synthetic prompt of exactly -p tokens and generates exactly -n tokens\n"
    "(greedy, end-of-sequence ignored): one warm-up, then -r measured repetitions,\n"
    "each with a freshly loaded model and a new session. Prints medians over the\n"
    "repetitions (min and max beside them); per-token latency percentiles pool\n"
    "the decode steps of all measured repetitions.\n"
    "\n"
    "  -m, --model PATH        GGUF model (default: $SLM_MODEL, else stories260K)\n"
    "  -t, --threads N         threads, 0 = one per core (default 0)\n"
    "  -p, --prompt-tokens N   prompt length in tokens (default 128)\n"
    "  -n, --gen-tokens N      tokens to generate (default 64, at least 2)\n"
    "  -r, --reps N            measured repetitions after the warm-up (default 5)\n"
    "      --config JSON|FILE  runtime config (e.g. '{\"providers\":[\"avx2\"]}');\n"
    "                          the benchmark's own keys (max_tokens, temperature,\n"
    "                          ignore_eos, threads) override it. With\n"
    "                          \"require_signature\":true every load (cold ones too)\n"
    "                          verifies MODEL.sig, and the report shows the time\n"
    "                          it took (verify_ms, part of load)\n"
    "      --json              one JSON object on stdout instead of the text report\n"
    "      --cold              also run each repetition as a fresh process: process\n"
    "                          start -> model ready and -> first token\n"
    "      --drop-cache        with --cold: ask the kernel to drop the model file's\n"
    "                          cached pages before each cold run (posix_fadvise;\n"
    "                          best effort, pages mapped elsewhere stay)\n"
    "      --bandwidth         measure memory read bandwidth (512 MiB in 2 MiB pages\n"
    "                          where the kernel gives them, 1 and N threads) and show\n"
    "                          the model's achieved GB/s beside it\n"
    "      --watts-per-core W  power of one busy core for the energy estimate used\n"
    "                          when no RAPL or battery reading exists (default 5)\n"
    "      --lora FILE[:SCALE] also measure decode with this LoRA adapter (GGUF file or\n"
    "                          PEFT directory) active: each repetition generates again\n"
    "                          on the same session with the adapter applied; reported\n"
    "                          as adapter decode tok/s and its cost in % of the decode\n"
    "                          rate without it (JSON: adapter_decode_tps,\n"
    "                          adapter_cost_pct); no signature check\n"
    "      --json-schema FILE  also measure decode constrained to this JSON Schema: each\n"
    "                          repetition generates again on the same session with the\n"
    "                          schema (greedy; it stops when the JSON is complete, so\n"
    "                          give a schema with long output); reported as schema\n"
    "                          decode tok/s and its cost in % (JSON: schema_decode_tps,\n"
    "                          schema_cost_pct, schema_tokens)\n"
    "  -h, --help              this help\n"
    "\n"
    "Energy per inference comes from RAPL (/sys/class/powercap/*-rapl*/energy_uj,\n"
    "whole package: other processes count too), else from a discharging battery's\n"
    "power reading, else CPU time x --watts-per-core, labelled \"estimated\".\n"
    "Without --cold the page cache is warm after the warm-up; cold runs show the\n"
    "cost of a new process, and with --drop-cache of reading the file again.\n"
    "The model file is held as the config's \"weights\" says (default auto: copied\n"
    "into memory in 2 MiB pages when transparent huge pages are on and it takes\n"
    "under half of the available memory, else mapped); the copy is part of load,\n"
    "and the report says which (JSON: weights, \"copy\" or \"map\").\n"
    "Signature verification hashes the whole file inside slm_model_load: it is\n"
    "included in load and in cold start -> ready, and reported on its own as\n"
    "verify (JSON: verify_ms, 0 when the config does not require a signature).\n";

#define BENCH_MAX_REPS 1000
#define BENCH_MAX_TOKENS 1000000
#define BENCH_BW_BYTES ((size_t)512 << 20) /* kind to a 24 GiB machine */
#define BENCH_BW_PASSES 5
#define BENCH_BW_MAX_THREADS 64

/* ---- small helpers ----------------------------------------------------------- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile by nearest rank over a sorted array (q in [0, 100]). */
static double pct_sorted(const double *v, size_t n, double q) {
    if (n == 0) return NAN;
    size_t k = (size_t)ceil(q / 100.0 * (double)n);
    if (k < 1) k = 1;
    if (k > n) k = n;
    return v[k - 1];
}

typedef struct stat3 {
    double med, min, max;
} stat3;

/* Median, min and max of n values (v is sorted in place). */
static stat3 summarize(double *v, size_t n) {
    stat3 s = {NAN, NAN, NAN};
    if (n == 0) return s;
    qsort(v, n, sizeof *v, cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    return s;
}

static int read_file_str(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

static int read_u64_file(const char *path, uint64_t *out) {
    char buf[64];
    if (!read_file_str(path, buf, sizeof buf)) return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf) return 0;
    *out = (uint64_t)v;
    return 1;
}

/* Peak resident set of this process in bytes: VmHWM, else ru_maxrss. */
static uint64_t peak_rss_bytes(void) {
    char buf[8192];
    if (read_file_str("/proc/self/status", buf, sizeof buf)) {
        const char *p = strstr(buf, "VmHWM:");
        unsigned long long kb;
        if (p && sscanf(p + 6, "%llu", &kb) == 1) return (uint64_t)kb * 1024;
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return (uint64_t)ru.ru_maxrss * 1024;
    return 0;
}

/* CPU seconds (user + system, all threads) this process has used. */
static double cpu_seconds(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static int cpus_online(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

/* ---- machine --------------------------------------------------------------------- */

typedef struct machine {
    char cpu[128];
    char features[256]; /* the ISA features the kernels can use, present on this CPU */
    char providers[128];
    int cpus;
} machine;

static void machine_info(machine *m) {
    memset(m, 0, sizeof *m);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    m->cpus = cpus_online();
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    char flags[8192] = "";
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = '\0';
        if (!strncmp(line, "model name", 10) && !strcmp(m->cpu, "unknown"))
            snprintf(m->cpu, sizeof m->cpu, "%s", v);
        else if ((!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8)) && !flags[0])
            snprintf(flags, sizeof flags, " %s ", v);
    }
    if (f) fclose(f);
    static const char *const wanted[] = {"avx2",       "fma",         "f16c",     "avx512f",
                                         "avx512bw",   "avx512vl",    "avx512dq", "avx512_vnni",
                                         "avx512vbmi", "avx512_bf16", "avx_vnni", "asimd",
                                         "asimddp",    "fphp",        "i8mm",     NULL};
    size_t len = 0;
    for (int i = 0; wanted[i]; i++) {
        char pat[32];
        snprintf(pat, sizeof pat, " %s ", wanted[i]);
        if (strstr(flags, pat) && len + strlen(wanted[i]) + 2 < sizeof m->features)
            len += (size_t)snprintf(m->features + len, sizeof m->features - len, "%s%s",
                                    len ? " " : "", wanted[i]);
    }
    len = 0;
    for (const char *const *p = slm_providers_available(); p && *p; p++)
        if (len + strlen(*p) + 2 < sizeof m->providers)
            len += (size_t)snprintf(m->providers + len, sizeof m->providers - len, "%s%s",
                                    len ? "," : "", *p);
}

/* The features of `present` that provider `pv` uses: each provider's kernels
 * are compiled for a fixed set (src/kernels/<provider>.c); avx512 also uses
 * avx2's block decoders, VNNI for its 8-bit path and VBMI for its block
 * decode when the CPU has them (SLM_AVX512_NO_VBMI=1 turns VBMI off). */
static void features_used(const char *pv, const char *present, char *out, size_t cap) {
    static const char *const avx2[] = {"avx2", "fma", "f16c", NULL};
    static const char *const avx512[] = {"avx512f",     "avx512bw",   "avx512vl", "avx512dq",
                                         "avx512_vnni", "avx512vbmi", "avx2",     "fma",
                                         "f16c",        NULL};
    const char *const *set = !strcmp(pv, "avx512") ? avx512 : !strcmp(pv, "avx2") ? avx2 : NULL;
    size_t len = 0;
    out[0] = '\0';
    char padded[260];
    snprintf(padded, sizeof padded, " %s ", present);
    const char *no_vbmi = getenv("SLM_AVX512_NO_VBMI");
    for (int i = 0; set && set[i]; i++) {
        if (!strcmp(set[i], "avx512vbmi") && no_vbmi && !strcmp(no_vbmi, "1")) continue;
        char pat[32];
        snprintf(pat, sizeof pat, " %s ", set[i]);
        if (strstr(padded, pat) && len + strlen(set[i]) + 2 < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", set[i]);
    }
    if (!out[0]) snprintf(out, cap, "none (scalar)");
}

/* ---- energy ------------------------------------------------------------------------
 * RAPL package counters (Intel, and AMD where the kernel exposes them), summed over
 * packages, with wrap-around handled; else a discharging battery's power; else an
 * estimate from CPU time. */

#define BENCH_MAX_RAPL 8

typedef struct energy_src {
    int kind; /* 0 rapl, 1 battery, 2 estimated */
    int n_rapl;
    char rapl[BENCH_MAX_RAPL][160];
    uint64_t rapl_range[BENCH_MAX_RAPL];
    char battery[160]; /* power_supply directory */
    double watts_per_core;
} energy_src;

typedef struct energy_mark {
    uint64_t uj[BENCH_MAX_RAPL];
    double battery_w;
    double cpu_s;
    double t_ms;
} energy_mark;

static const char *energy_kind_name(int kind) {
    return kind == 0 ? "rapl" : kind == 1 ? "battery" : "estimated";
}

/* Watts from a power_supply directory: power_now (uW), else current_now (uA) x
 * voltage_now (uV). 0 when unreadable. */
static double battery_watts(const char *dir) {
    char p[256];
    uint64_t pw, cur, volt;
    snprintf(p, sizeof p, "%s/power_now", dir);
    if (read_u64_file(p, &pw) && pw > 0) return (double)pw * 1e-6;
    snprintf(p, sizeof p, "%s/current_now", dir);
    char q[256];
    snprintf(q, sizeof q, "%s/voltage_now", dir);
    if (read_u64_file(p, &cur) && read_u64_file(q, &volt))
        return (double)cur * (double)volt * 1e-12;
    return 0;
}

static void energy_init(energy_src *e, double watts_per_core) {
    memset(e, 0, sizeof *e);
    e->watts_per_core = watts_per_core;
    /* Top-level package zones only ("intel-rapl:0", not "intel-rapl:0:0", which is
     * a sub-zone counted inside its package). */
    static const char *const bases[] = {"/sys/class/powercap/intel-rapl:%d",
                                        "/sys/class/powercap/amd-rapl:%d", NULL};
    for (int b = 0; bases[b] && e->n_rapl == 0; b++) {
        for (int i = 0; i < BENCH_MAX_RAPL; i++) {
            char dir[128], path[160];
            uint64_t v;
            snprintf(dir, sizeof dir, bases[b], i);
            snprintf(path, sizeof path, "%s/energy_uj", dir);
            if (!read_u64_file(path, &v)) break; /* absent, or not readable without root */
            snprintf(e->rapl[e->n_rapl], sizeof e->rapl[0], "%s", path);
            snprintf(path, sizeof path, "%s/max_energy_range_uj", dir);
            if (!read_u64_file(path, &e->rapl_range[e->n_rapl])) e->rapl_range[e->n_rapl] = 0;
            e->n_rapl++;
        }
    }
    if (e->n_rapl > 0) {
        e->kind = 0;
        return;
    }
    for (int i = 0; i < 4; i++) {
        static const char *const names[] = {"BAT0", "BAT1", "battery", "BAT2"};
        char dir[160], path[200], status[64];
        snprintf(dir, sizeof dir, "/sys/class/power_supply/%s", names[i]);
        snprintf(path, sizeof path, "%s/status", dir);
        /* Only a discharging battery's reading is the device's draw. */
        if (read_file_str(path, status, sizeof status) && !strncmp(status, "Discharging", 11) &&
            battery_watts(dir) > 0) {
            snprintf(e->battery, sizeof e->battery, "%s", dir);
            e->kind = 1;
            return;
        }
    }
    e->kind = 2;
}

static void energy_mark_now(const energy_src *e, energy_mark *m) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < e->n_rapl; i++) read_u64_file(e->rapl[i], &m->uj[i]);
    if (e->kind == 1) m->battery_w = battery_watts(e->battery);
    m->cpu_s = cpu_seconds();
    m->t_ms = now_ms();
}

/* Millijoules between two marks. */
static double energy_mj(const energy_src *e, const energy_mark *a, const energy_mark *b) {
    if (e->kind == 0) {
        double uj = 0;
        for (int i = 0; i < e->n_rapl; i++) {
            uint64_t d = b->uj[i] >= a->uj[i] ? b->uj[i] - a->uj[i]
                                              : b->uj[i] + (e->rapl_range[i] - a->uj[i]);
            uj += (double)d;
        }
        return uj * 1e-3;
    }
    if (e->kind == 1) /* mean of the two readings x elapsed time */
        return 0.5 * (a->battery_w + b->battery_w) * (b->t_ms - a->t_ms);
    return (b->cpu_s - a->cpu_s) * e->watts_per_core * 1e3;
}

/* ---- memory bandwidth ----------------------------------------------------------------- */

typedef struct bw_job {
    const uint64_t *buf;
    size_t n; /* uint64 words */
    uint64_t sink;
} bw_job;

#if defined(__x86_64__)
/* Streaming reads with the widest loads the CPU has (the library's kernels
 * do the same); the sum keeps the compiler from dropping the loads. */
__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint64_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_xor_si512(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_xor_si512(a1, _mm512_loadu_si512((const void *)(p + i + 8)));
        a2 = _mm512_xor_si512(a2, _mm512_loadu_si512((const void *)(p + i + 16)));
        a3 = _mm512_xor_si512(a3, _mm512_loadu_si512((const void *)(p + i + 24)));
    }
    a0 = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
    uint64_t lanes[8];
    _mm512_storeu_si512((void *)lanes, a0);
    uint64_t s = 0;
    for (int k = 0; k < 8; k++) s ^= lanes[k];
    for (; i < n; i++) s ^= p[i];
    return s;
}

__attribute__((target("avx2"))) static uint64_t read_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const void *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const void *)(p + i + 4)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const void *)(p + i + 8)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const void *)(p + i + 12)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((void *)lanes, a0);
    uint64_t s = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    for (; i < n; i++) s ^= p[i];
    return s;
}
#endif

static uint64_t read_words(const uint64_t *p, size_t n) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return read_avx512(p, n);
    if (__builtin_cpu_supports("avx2")) return read_avx2(p, n);
#endif
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 ^= p[i];
        s1 ^= p[i + 1];
        s2 ^= p[i + 2];
        s3 ^= p[i + 3];
    }
    for (; i < n; i++) s0 ^= p[i];
    return s0 ^ s1 ^ s2 ^ s3;
}

static void *bw_thread(void *arg) {
    bw_job *j = arg;
    j->sink = read_words(j->buf, j->n);
    return NULL;
}

/* Read bandwidth in GB/s (1e9 bytes/s) with `threads` threads, each streaming
 * its own slice of the buffer; the best of BENCH_BW_PASSES passes (the
 * machine is shared: the best pass is the one least disturbed). */
static double measure_bandwidth(const uint64_t *buf, size_t words, int threads) {
    if (threads > BENCH_BW_MAX_THREADS) threads = BENCH_BW_MAX_THREADS;
    double best = 0;
    uint64_t sink = 0;
    for (int pass = 0; pass < BENCH_BW_PASSES; pass++) {
        pthread_t th[BENCH_BW_MAX_THREADS];
        bw_job jobs[BENCH_BW_MAX_THREADS];
        size_t per = words / (size_t)threads;
        double t0 = now_ms();
        int started[BENCH_BW_MAX_THREADS] = {0};
        for (int i = 0; i < threads; i++) {
            size_t len = i == threads - 1 ? words - (size_t)i * per : per;
            jobs[i] = (bw_job){buf + (size_t)i * per, len, 0};
            if (i > 0) started[i] = pthread_create(&th[i], NULL, bw_thread, &jobs[i]) == 0;
        }
        bw_thread(&jobs[0]);
        for (int i = 1; i < threads; i++) {
            if (started[i])
                pthread_join(th[i], NULL);
            else
                bw_thread(&jobs[i]); /* could not start a thread: read it here, slower */
        }
        double ms = now_ms() - t0;
        for (int i = 0; i < threads; i++) sink ^= jobs[i].sink;
        double gbs = (double)words * 8.0 / (ms * 1e6);
        if (gbs > best) best = gbs;
    }
    /* The xor of random-free memory is meaningless; printing nothing of it
     * but making it observable keeps the reads. */
    if (sink == 0x123456789abcdefULL) fputs("", stderr);
    return best;
}

typedef struct bandwidth {
    int measured;
    double gbs_1, gbs_n;
    int n_threads;
} bandwidth;

static int run_bandwidth(bandwidth *bw, int threads) {
    size_t words = BENCH_BW_BYTES / 8;
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, (size_t)2 << 20, BENCH_BW_BYTES) != 0 || !buf) {
        fprintf(stderr, "slm bench: cannot allocate %zu MiB for the bandwidth test\n",
                BENCH_BW_BYTES >> 20);
        return CLI_ERROR;
    }
    /* 2 MiB pages where the kernel gives them, as for the weights' copy */
    (void)madvise(buf, BENCH_BW_BYTES, MADV_HUGEPAGE);
    /* Touch every page with distinct values so none is a shared zero page. */
    for (size_t i = 0; i < words; i++) buf[i] = i * 0x9E3779B97F4A7C15ULL;
    bw->n_threads = threads;
    bw->gbs_1 = measure_bandwidth(buf, words, 1);
    bw->gbs_n = threads > 1 ? measure_bandwidth(buf, words, threads) : bw->gbs_1;
    bw->measured = 1;
    free(buf);
    return CLI_OK;
}

/* ---- one measured run ------------------------------------------------------------- */

typedef struct bench_opts {
    const char *model;
    const char *config_arg;
    long threads, n_prompt, n_gen, reps;
    int json, cold, drop_cache, bandwidth;
    double watts_per_core;
    const char *lora; /* --lora: adapter path (NULL = none) */
    char *schema_cfg; /* --json-schema: config fragment (NULL = none) */
    char lora_path[4096];
    float lora_scale;
} bench_opts;

typedef struct run_result {
    double verify_ms; /* part of load_ms: slm_model_verify_ms, 0 when not required */
    double load_ms, session_ms, ttft_ms, prefill_ms, prefill_tps, decode_tps, energy_mj;
    /* --lora: the same generation with the adapter applied */
    double adapter_decode_tps;
    double schema_decode_tps, schema_tokens; /* --json-schema */
    double *lat;                             /* n_gen - 1 decode step latencies, ms */
    size_t n_lat;
} run_result;

typedef struct observer_state {
    double *t; /* timestamp of each sampled token, ms since generate started */
    size_t n, cap;
} observer_state;

static void on_token(void *user, int32_t token, double t_ms) {
    (void)token;
    observer_state *o = user;
    if (o->n < o->cap) o->t[o->n++] = t_ms;
}

/* A prompt of exactly n ids: BOS when the model adds one, then the ids of a
 * short English text repeated (so the tokens are realistic, not one id). */
static int32_t *make_prompt(slm_model *model, long n) {
    static const char text[] = "Once upon a time, there was a little robot who loved to read "
                               "books about the stars and the sea.";
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0;
    if (slm_tokenize(model, text, sizeof text - 1, 0, &ids, &n_ids) != SLM_OK || n_ids == 0) {
        free(ids);
        return NULL;
    }
    out = malloc((size_t)n * sizeof *out);
    if (out) {
        long i = 0;
        int32_t bos = slm_token_bos(model);
        int32_t *probe = NULL;
        size_t n_probe = 0;
        /* Does the model add BOS? Tokenizing with the flag tells. */
        if (slm_tokenize(model, "a", 1, SLM_TOKENIZE_ADD_BOS, &probe, &n_probe) == SLM_OK &&
            n_probe > 0 && bos >= 0 && probe[0] == bos)
            out[i++] = bos;
        free(probe);
        for (size_t k = 0; i < n; i++, k++) out[i] = ids[k % n_ids];
    }
    free(ids);
    return out;
}

static int build_config(const bench_opts *o, slm_config **cfg) {
    cli_frags fr = {.n = 0};
    char v[64];
    snprintf(v, sizeof v, "%ld", o->n_gen);
    cli_frag(&fr, "max_tokens", v);
    cli_frag(&fr, "temperature", "0");
    cli_frag(&fr, "ignore_eos", "true");
    if (o->threads > 0) {
        snprintf(v, sizeof v, "%ld", o->threads);
        cli_frag(&fr, "threads", v);
    }
    const char *frags[32];
    for (int i = 0; i < fr.n; i++) frags[i] = fr.items[i];
    return cli_build_config("bench", o->config_arg, frags, fr.n, cfg);
}

/* Threads the session will use: the config's value, 0 meaning one per core. */
static int effective_threads(const slm_config *cfg) {
    char *js = slm_config_to_json(cfg);
    int t = 0;
    const char *p = js ? strstr(js, "\"threads\"") : NULL;
    if (p && (p = strchr(p, ':'))) t = atoi(p + 1);
    free(js);
    return t > 0 ? t : cpus_online();
}

/* Whether the config makes every load verify the model's signature. */
static int signature_required(const slm_config *cfg) {
    char *js = slm_config_to_json(cfg);
    int req = js && strstr(js, "\"require_signature\":true") != NULL;
    free(js);
    return req;
}

typedef struct model_facts {
    uint64_t mapped_bytes;   /* the file, mapped or copied read-only */
    int weights_copied;      /* config "weights": copied into memory (1) or mapped (0) */
    uint64_t read_per_token; /* weight bytes one decode step reads */
    uint64_t kv_bytes;       /* K and V caches of the session */
    char kv_type[8];         /* their element type, "f16" or "f32" */
    char provider[32];
    char weight_type[16];
    char name[128];
    int n_ctx;
} model_facts;

/* Bytes of weights a decode step reads: every tensor but the token embedding
 * (one row of it is read), unless the output projection reuses it (tied). */
static uint64_t read_bytes_per_token(const slm_model *m) {
    uint64_t sum = 0, embd = 0;
    int has_output = 0;
    size_t n = slm_model_n_tensors(m);
    for (size_t i = 0; i < n; i++) {
        slm_tensor_info ti;
        if (slm_model_tensor(m, i, &ti) != SLM_OK) continue;
        if (!strcmp(ti.name, "token_embd.weight")) {
            embd = ti.nbytes;
            continue;
        }
        if (!strcmp(ti.name, "output.weight")) has_output = 1;
        sum += ti.nbytes;
    }
    return has_output ? sum : sum + embd;
}

/* --lora: generates the same tokens on session s with the adapter applied
 * (switching drops the cache, so the prompt is recomputed), then removes it,
 * and measures the decode rate as bench_once does. */
static int bench_adapter(const bench_opts *o, slm_model *model, slm_session *s, const int32_t *ids,
                         observer_state *obs, run_result *r) {
    slm_adapter *ad = NULL;
    slm_status st = slm_adapter_load(model, o->lora, &ad);
    if (st != SLM_OK) return cli_fail("--lora", st);
    const slm_adapter *one[1] = {ad};
    st = slm_session_set_adapters(s, one, &o->lora_scale, 1);
    slm_result res;
    obs->n = 0;
    if (st == SLM_OK) st = slm_generate_tokens(s, ids, (size_t)o->n_prompt, NULL, NULL, &res);
    slm_session_set_adapters(s, NULL, NULL, 0);
    slm_adapter_free(ad);
    if (st != SLM_OK) return cli_fail("generate with the adapter", st);
    if (obs->n != (size_t)o->n_gen) {
        fprintf(stderr, "slm bench: generated %zu tokens with the adapter, expected %ld\n", obs->n,
                o->n_gen);
        return CLI_ERROR;
    }
    double span = obs->t[obs->n - 1] - obs->t[0];
    r->adapter_decode_tps = span > 0 ? (double)(obs->n - 1) / (span * 1e-3) : NAN;
    return CLI_OK;
}

/* --json-schema: generates again on session s with the schema and measures
 * the decode rate as bench_once does (the prompt is cached by then). */
static int bench_schema(const bench_opts *o, slm_session *s, const int32_t *ids,
                        observer_state *obs, run_result *r) {
    slm_status st = slm_session_configure(s, o->schema_cfg, strlen(o->schema_cfg));
    if (st != SLM_OK) return cli_fail("--json-schema", st);
    slm_result res;
    obs->n = 0;
    st = slm_generate_tokens(s, ids, (size_t)o->n_prompt, NULL, NULL, &res);
    slm_session_configure(s, "{\"grammar\":null}", 16);
    if (st != SLM_OK) return cli_fail("generate with the schema", st);
    if (obs->n < 3) {
        fprintf(stderr,
                "slm bench: the schema's output was complete after %zu tokens: too few to time "
                "(give a schema whose output is longer)\n",
                obs->n);
        return CLI_ERROR;
    }
    double span = obs->t[obs->n - 1] - obs->t[0];
    r->schema_decode_tps = span > 0 ? (double)(obs->n - 1) / (span * 1e-3) : NAN;
    r->schema_tokens = (double)obs->n;
    return CLI_OK;
}

static int bench_once(const bench_opts *o, const slm_config *cfg, const int32_t *prompt_in,
                      const energy_src *es, run_result *r, model_facts *facts) {
    memset(r, 0, sizeof *r);
    slm_model *model = NULL;
    slm_session *s = NULL;
    int32_t *prompt = NULL;
    int rc = CLI_ERROR;
    observer_state obs = {NULL, 0, (size_t)o->n_gen};
    obs.t = malloc(obs.cap * sizeof *obs.t);
    r->lat = malloc(obs.cap * sizeof *r->lat);
    if (!obs.t || !r->lat) {
        fprintf(stderr, "slm bench: out of memory\n");
        goto done;
    }
    double t0 = now_ms();
    slm_status st = slm_model_load(o->model, cfg, &model);
    if (st != SLM_OK) {
        rc = cli_fail(o->model, st);
        goto done;
    }
    r->load_ms = now_ms() - t0;
    r->verify_ms = slm_model_verify_ms(model);
    t0 = now_ms();
    st = slm_session_new(model, cfg, &s);
    if (st != SLM_OK) {
        rc = cli_fail("session", st);
        goto done;
    }
    r->session_ms = now_ms() - t0;
    if (o->n_prompt + o->n_gen > slm_session_n_ctx(s)) {
        fprintf(stderr,
                "slm bench: %ld prompt + %ld generated tokens exceed the context of %d; "
                "use fewer or --config '{\"n_ctx\":%ld}'\n",
                o->n_prompt, o->n_gen, slm_session_n_ctx(s), o->n_prompt + o->n_gen);
        goto done;
    }
    const int32_t *ids = prompt_in;
    if (!ids) {
        prompt = make_prompt(model, o->n_prompt);
        if (!prompt) {
            fprintf(stderr, "slm bench: cannot build a prompt: %s\n", slm_last_error());
            goto done;
        }
        ids = prompt;
    }
    slm_session_set_observer(s, on_token, &obs);
    /* --lora: every other repetition measures the adapter first, so that drift in the
     * machine's speed does not always favour the same side */
    static unsigned n_calls;
    int adapter_first = o->lora && (n_calls++ & 1u);
    if (adapter_first && bench_adapter(o, model, s, ids, &obs, r) != CLI_OK) goto done;
    obs.n = 0;
    slm_result res;
    energy_mark e0, e1;
    energy_mark_now(es, &e0);
    st = slm_generate_tokens(s, ids, (size_t)o->n_prompt, NULL, NULL, &res);
    energy_mark_now(es, &e1);
    if (st != SLM_OK) {
        rc = cli_fail("generate", st);
        goto done;
    }
    if (res.n_generated != o->n_gen || obs.n != (size_t)o->n_gen) {
        fprintf(stderr, "slm bench: generated %d tokens, expected %ld\n", res.n_generated,
                o->n_gen);
        goto done;
    }
    r->energy_mj = energy_mj(es, &e0, &e1);
    r->ttft_ms = res.ttft_ms;
    r->prefill_ms = res.prefill_ms;
    r->prefill_tps = res.prefill_ms > 0 ? (double)o->n_prompt / (res.prefill_ms * 1e-3) : NAN;
    /* Decode steps: from one sampled token to the next (forward pass of one
     * token + sampling + detokenizing), as a user sees them arrive. */
    for (size_t i = 1; i < obs.n; i++) r->lat[r->n_lat++] = obs.t[i] - obs.t[i - 1];
    double span = obs.t[obs.n - 1] - obs.t[0];
    r->decode_tps = span > 0 ? (double)(obs.n - 1) / (span * 1e-3) : NAN;
    if (o->lora && !adapter_first && bench_adapter(o, model, s, ids, &obs, r) != CLI_OK) goto done;
    if (o->schema_cfg && bench_schema(o, s, ids, &obs, r) != CLI_OK) goto done;
    if (facts) {
        slm_model_info mi;
        if (slm_model_get_info(model, &mi) == SLM_OK) {
            facts->mapped_bytes = mi.file_bytes;
            facts->weights_copied = mi.weights_copied;
            facts->n_ctx = slm_session_n_ctx(s);
            facts->kv_bytes = slm_session_kv_bytes(s);
            snprintf(facts->kv_type, sizeof facts->kv_type, "%s", slm_session_kv_type(s));
            snprintf(facts->weight_type, sizeof facts->weight_type, "%s",
                     mi.weight_type ? mi.weight_type : "?");
            snprintf(facts->name, sizeof facts->name, "%s", mi.name ? mi.name : "");
        }
        facts->read_per_token = read_bytes_per_token(model);
        snprintf(facts->provider, sizeof facts->provider, "%s", slm_session_provider(s));
    }
    rc = CLI_OK;
done:
    free(obs.t);
    free(prompt);
    slm_session_free(s);
    slm_model_free(model);
    return rc;
}

/* ---- cold runs: a fresh process per repetition -------------------------------------
 * The parent notes CLOCK_MONOTONIC (system-wide) just before fork, passes it
 * to the child, which loads, generates one token and prints its times on a
 * pipe. Process creation, exec, dynamic linking and page faults of the
 * mapping are all inside "start -> ready". */

typedef struct cold_result {
    double ready_ms, first_ms, load_ms, verify_ms; /* verify_ms is inside load_ms and ready_ms */
} cold_result;

static int cold_child(const bench_opts *o, double t_start) {
    slm_config *cfg = NULL;
    if (build_config(o, &cfg) != CLI_OK) return CLI_ERROR;
    slm_model *model = NULL;
    slm_session *s = NULL;
    int32_t *prompt = NULL;
    int rc = CLI_ERROR;
    double t0 = now_ms();
    slm_status st = slm_model_load(o->model, cfg, &model);
    if (st != SLM_OK) {
        rc = cli_fail(o->model, st);
        goto done;
    }
    double load = now_ms() - t0;
    double verify = slm_model_verify_ms(model);
    st = slm_session_new(model, cfg, &s);
    if (st != SLM_OK) {
        rc = cli_fail("session", st);
        goto done;
    }
    double ready = now_ms() - t_start;
    prompt = make_prompt(model, o->n_prompt);
    if (!prompt || slm_session_configure(s, "{\"max_tokens\":1}", 16) != SLM_OK) goto done;
    slm_result res;
    st = slm_generate_tokens(s, prompt, (size_t)o->n_prompt, NULL, NULL, &res);
    if (st != SLM_OK) {
        rc = cli_fail("generate", st);
        goto done;
    }
    double first = now_ms() - t_start;
    printf("cold %.3f %.3f %.3f %.3f\n", ready, first, load, verify);
    fflush(stdout);
    rc = CLI_OK;
done:
    free(prompt);
    slm_session_free(s);
    slm_model_free(model);
    slm_config_free(cfg);
    return rc;
}

/* Best effort: drop the model file's pages from the page cache. */
static void drop_file_cache(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return;
    int fd = fileno(f);
    fdatasync(fd);
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    fclose(f);
}

static int cold_run(const bench_opts *o, cold_result *cr) {
    int fds[2];
    if (pipe(fds) != 0) {
        perror("slm bench: pipe");
        return CLI_ERROR;
    }
    if (o->drop_cache) drop_file_cache(o->model);
    char a_t[32], a_start[64], a_p[32], a_th[32];
    snprintf(a_t, sizeof a_t, "%ld", o->threads);
    snprintf(a_p, sizeof a_p, "%ld", o->n_prompt);
    double t_start = now_ms();
    snprintf(a_start, sizeof a_start, "%.6f", t_start);
    snprintf(a_th, sizeof a_th, "%s", a_t);
    const char *argv[16];
    int k = 0;
    argv[k++] = "slm";
    argv[k++] = "bench";
    argv[k++] = "--cold-child";
    argv[k++] = a_start;
    argv[k++] = "-m";
    argv[k++] = o->model;
    argv[k++] = "-t";
    argv[k++] = a_th;
    argv[k++] = "-p";
    argv[k++] = a_p;
    if (o->config_arg) {
        argv[k++] = "--config";
        argv[k++] = o->config_arg;
    }
    argv[k] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("slm bench: fork");
        close(fds[0]);
        close(fds[1]);
        return CLI_ERROR;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv("/proc/self/exe", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[256];
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof buf && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) != 0) {
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(buf, "cold %lf %lf %lf %lf", &cr->ready_ms, &cr->first_ms, &cr->load_ms,
               &cr->verify_ms) != 4) {
        fprintf(stderr, "slm bench: the cold-start child failed (status %d)\n", status);
        return CLI_ERROR;
    }
    return CLI_OK;
}

/* ---- report ------------------------------------------------------------------------ */

typedef struct summary {
    stat3 load, ttft, prefill, decode, energy;
    double p50, p95, p99, pmax;
    size_t n_lat;
    int have_cold;
    stat3 cold_ready, cold_first, cold_load;
    int verify_required; /* the config's require_signature */
    stat3 verify, cold_verify;
    /* --lora */
    stat3 adapter_decode;
    stat3 schema_decode, schema_tokens; /* --json-schema */
} summary;

static void json_num(FILE *out, const char *key, double v, int comma) {
    if (isfinite(v) && v == floor(v) && fabs(v) < 1e15) /* counts and bytes: exact */
        fprintf(out, "\"%s\":%.0f%s", key, v, comma ? "," : "");
    else if (isfinite(v))
        fprintf(out, "\"%s\":%.6g%s", key, v, comma ? "," : "");
    else
        fprintf(out, "\"%s\":null%s", key, comma ? "," : "");
}

static void json_str(FILE *out, const char *key, const char *v, int comma) {
    fprintf(out, "\"%s\":\"", key);
    for (const char *p = v; p && *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fprintf(out, "\"%s", comma ? "," : "");
}

static void json_stat(FILE *out, const char *key, stat3 s) {
    fprintf(out, "\"%s\":{", key);
    json_num(out, "median", s.med, 1);
    json_num(out, "min", s.min, 1);
    json_num(out, "max", s.max, 0);
    fputs("},", out);
}

static void print_json(const bench_opts *o, const machine *mc, const model_facts *f, int threads,
                       const energy_src *es, const summary *s, const bandwidth *bw, uint64_t peak) {
    FILE *out = stdout;
    fputc('{', out);
    json_str(out, "model", o->model, 1);
    json_str(out, "weight_type", f->weight_type, 1);
    json_num(out, "prompt_tokens", (double)o->n_prompt, 1);
    json_num(out, "gen_tokens", (double)o->n_gen, 1);
    json_num(out, "reps", (double)o->reps, 1);
    json_num(out, "load_ms", s->load.med, 1);
    /* Always present: 0 when no signature is required (nothing is verified). */
    json_num(out, "verify_ms", s->verify_required ? s->verify.med : 0.0, 1);
    fprintf(out, "\"require_signature\":%s,", s->verify_required ? "true" : "false");
    json_num(out, "ttft_ms", s->ttft.med, 1);
    json_num(out, "prefill_tps", s->prefill.med, 1);
    json_num(out, "decode_tps", s->decode.med, 1);
    json_num(out, "decode_p50_ms", s->p50, 1);
    json_num(out, "decode_p95_ms", s->p95, 1);
    json_num(out, "decode_p99_ms", s->p99, 1);
    json_num(out, "decode_max_ms", s->pmax, 1);
    json_num(out, "decode_steps", (double)s->n_lat, 1);
    if (o->lora) {
        json_str(out, "adapter", o->lora, 1);
        json_num(out, "adapter_scale", o->lora_scale, 1);
        json_num(out, "adapter_decode_tps", s->adapter_decode.med, 1);
        json_num(out, "adapter_cost_pct", 100.0 * (1.0 - s->adapter_decode.med / s->decode.med), 1);
        json_stat(out, "adapter_decode", s->adapter_decode);
    }
    if (o->schema_cfg) {
        json_num(out, "schema_decode_tps", s->schema_decode.med, 1);
        json_num(out, "schema_cost_pct", 100.0 * (1.0 - s->schema_decode.med / s->decode.med), 1);
        json_num(out, "schema_tokens", s->schema_tokens.med, 1);
        json_stat(out, "schema_decode", s->schema_decode);
    }
    json_num(out, "peak_rss_bytes", (double)peak, 1);
    json_num(out, "mapped_bytes", (double)f->mapped_bytes, 1);
    json_str(out, "weights", f->weights_copied ? "copy" : "map", 1);
    json_num(out, "kv_cache_bytes", (double)f->kv_bytes, 1);
    json_str(out, "kv_cache", f->kv_type, 1);
    json_num(out, "n_ctx", (double)f->n_ctx, 1);
    json_num(out, "weight_bytes_per_token", (double)f->read_per_token, 1);
    json_num(out, "achieved_gbs", (double)f->read_per_token * s->decode.med * 1e-9, 1);
    json_num(out, "energy_mj", s->energy.med, 1);
    json_str(out, "energy_source", energy_kind_name(es->kind), 1);
    if (es->kind == 2) json_num(out, "watts_per_core", es->watts_per_core, 1);
    json_num(out, "threads", (double)threads, 1);
    json_str(out, "provider", f->provider, 1);
    json_str(out, "providers_available", mc->providers, 1);
    json_str(out, "cpu", mc->cpu, 1);
    json_str(out, "cpu_features", mc->features, 1);
    char used[256];
    features_used(f->provider, mc->features, used, sizeof used);
    json_str(out, "features_used", used, 1);
    json_num(out, "cpus", (double)mc->cpus, 1);
    json_stat(out, "load", s->load);
    if (s->verify_required) json_stat(out, "verify", s->verify);
    json_stat(out, "ttft", s->ttft);
    json_stat(out, "prefill", s->prefill);
    json_stat(out, "decode", s->decode);
    json_stat(out, "energy", s->energy);
    if (s->have_cold) {
        json_num(out, "cold_start_to_ready_ms", s->cold_ready.med, 1);
        json_num(out, "cold_start_to_first_token_ms", s->cold_first.med, 1);
        json_stat(out, "cold_ready", s->cold_ready);
        json_stat(out, "cold_first_token", s->cold_first);
        json_stat(out, "cold_load", s->cold_load);
        if (s->verify_required) json_stat(out, "cold_verify", s->cold_verify);
    }
    if (bw->measured) {
        json_num(out, "bandwidth_1t_gbs", bw->gbs_1, 1);
        json_num(out, "bandwidth_nt_gbs", bw->gbs_n, 1);
        json_num(out, "bandwidth_threads", (double)bw->n_threads, 1);
    }
    json_str(out, "version", slm_version(), 0);
    fputs("}\n", out);
}

static void print_text(const bench_opts *o, const machine *mc, const model_facts *f, int threads,
                       const energy_src *es, const summary *s, const bandwidth *bw, uint64_t peak) {
    FILE *out = stdout;
    fprintf(out, "model     %s (%s)\n", o->model, f->weight_type);
    char used[256];
    features_used(f->provider, mc->features, used, sizeof used);
    fprintf(out, "machine   %s, %d cpus, features used: %s; present: %s\n", mc->cpu, mc->cpus, used,
            mc->features[0] ? mc->features : "-");
    fprintf(out,
            "run       provider %s (available: %s), %d threads, prompt %ld, generate %ld, "
            "%ld reps after 1 warm-up\n",
            f->provider, mc->providers, threads, o->n_prompt, o->n_gen, o->reps);
    fprintf(out, "                      median        min        max\n");
#define ROW(label, st, unit)                                                                       \
    fprintf(out, "%-18s %10.2f %10.2f %10.2f  %s\n", label, (st).med, (st).min, (st).max, unit)
    ROW("load", s->load, s->verify_required ? "ms (signature check included)" : "ms");
    if (s->verify_required) ROW("  verify signature", s->verify, "ms (hash + check, in load)");
    ROW("time to 1st token", s->ttft, "ms");
    ROW("prefill", s->prefill, "tok/s");
    ROW("decode", s->decode, "tok/s");
    if (o->lora) {
        char unit[96];
        snprintf(unit, sizeof unit, "tok/s with the adapter (%+.1f%% cost)",
                 100.0 * (1.0 - s->adapter_decode.med / s->decode.med));
        ROW("  with adapter", s->adapter_decode, unit);
    }
    if (o->schema_cfg) {
        char unit[96];
        snprintf(unit, sizeof unit, "tok/s with the schema (%+.1f%% cost, %.0f tokens)",
                 100.0 * (1.0 - s->schema_decode.med / s->decode.med), s->schema_tokens.med);
        ROW("  with schema", s->schema_decode, unit);
    }
    ROW("energy", s->energy,
        es->kind == 2   ? "mJ per inference (estimated)"
        : es->kind == 1 ? "mJ per inference (battery)"
                        : "mJ per inference (rapl)");
    if (s->have_cold) {
        ROW("cold: start->ready", s->cold_ready,
            s->verify_required ? "ms (fresh process, signature check included)"
                               : "ms (fresh process)");
        ROW("cold: start->1st", s->cold_first, "ms (fresh process)");
        if (s->verify_required) ROW("cold: verify", s->cold_verify, "ms (inside start->ready)");
    }
#undef ROW
    fprintf(out,
            "decode latency    p50 %.2f  p95 %.2f  p99 %.2f  max %.2f ms  (%zu steps; "
            "p99/p50 %.2f)\n",
            s->p50, s->p95, s->p99, s->pmax, s->n_lat, s->p99 / s->p50);
    fprintf(out,
            "memory            peak RSS %.1f MiB, %s %.1f MiB, KV cache %.1f MiB %s "
            "(n_ctx %d)\n",
            (double)peak / 1048576.0, f->weights_copied ? "file copied" : "mapped",
            (double)f->mapped_bytes / 1048576.0, (double)f->kv_bytes / 1048576.0, f->kv_type,
            f->n_ctx);
    double achieved = (double)f->read_per_token * s->decode.med * 1e-9;
    fprintf(out, "weights read      %.1f MiB per token -> %.2f GB/s at the median decode rate\n",
            (double)f->read_per_token / 1048576.0, achieved);
    if (bw->measured)
        fprintf(out,
                "bandwidth         %.2f GB/s (1 thread), %.2f GB/s (%d threads): decode "
                "uses %.0f%% of the %d-thread figure\n",
                bw->gbs_1, bw->gbs_n, bw->n_threads, 100.0 * achieved / bw->gbs_n, bw->n_threads);
}

/* ---- the command --------------------------------------------------------------------- */

int cmd_bench(int argc, char **argv) {
    bench_opts o = {.threads = 0, .n_prompt = 128, .n_gen = 64, .reps = 5, .watts_per_core = 5.0};
    const char *model_arg = NULL, *cold_child_t = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(BENCH_HELP, stdout);
            return CLI_OK;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            CLI_VALUE("bench", model_arg);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            CLI_VALUE("bench", v);
            if (cli_parse_int("bench", a, v, 0, 256, &o.threads)) return CLI_USAGE;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt-tokens")) {
            CLI_VALUE("bench", v);
            if (cli_parse_int("bench", a, v, 1, BENCH_MAX_TOKENS, &o.n_prompt)) return CLI_USAGE;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--gen-tokens")) {
            CLI_VALUE("bench", v);
            if (cli_parse_int("bench", a, v, 2, BENCH_MAX_TOKENS, &o.n_gen)) return CLI_USAGE;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) {
            CLI_VALUE("bench", v);
            if (cli_parse_int("bench", a, v, 1, BENCH_MAX_REPS, &o.reps)) return CLI_USAGE;
        } else if (!strcmp(a, "--config")) {
            CLI_VALUE("bench", o.config_arg);
        } else if (!strcmp(a, "--watts-per-core")) {
            CLI_VALUE("bench", v);
            if (cli_parse_float("bench", a, v, 0.0, 1000.0, &o.watts_per_core)) return CLI_USAGE;
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (!strcmp(a, "--cold")) {
            o.cold = 1;
        } else if (!strcmp(a, "--drop-cache")) {
            o.drop_cache = 1;
        } else if (!strcmp(a, "--bandwidth")) {
            o.bandwidth = 1;
        } else if (!strcmp(a, "--json-schema")) {
            CLI_VALUE("bench", v);
            cli_grammar g = {.schema_file = v};
            free(o.schema_cfg);
            o.schema_cfg = cli_grammar_config_json("bench", &g);
            if (!o.schema_cfg) return CLI_ERROR;
        } else if (!strcmp(a, "--lora")) {
            CLI_VALUE("bench", v);
            const char *colon = strrchr(v, ':');
            size_t pl = strlen(v);
            double sc = 1.0;
            char *end = NULL;
            if (colon && colon[1] && (sc = strtod(colon + 1, &end), *end == '\0'))
                pl = (size_t)(colon - v);
            else
                sc = 1.0;
            if (pl == 0 || pl >= sizeof o.lora_path || !isfinite(sc) || fabs(sc) > 1e6)
                return cli_usage_error("bench", "--lora '%s': expected FILE[:SCALE]", v);
            memcpy(o.lora_path, v, pl);
            o.lora_path[pl] = '\0';
            o.lora = o.lora_path;
            o.lora_scale = (float)sc;
        } else if (!strcmp(a, "--cold-child")) { /* hidden: a --cold repetition */
            CLI_VALUE("bench", cold_child_t);
        } else {
            return cli_usage_error("bench", "unknown option '%s'", a);
        }
    }
    if (o.drop_cache && !o.cold)
        return cli_usage_error("bench", "--drop-cache only applies to --cold runs");

    /* --bandwidth alone: no model needed. */
    bandwidth bw = {0};
    if (o.bandwidth && !model_arg && !getenv("SLM_MODEL")) {
        int n = o.threads > 0 ? (int)o.threads : cpus_online();
        if (run_bandwidth(&bw, n) != CLI_OK) return CLI_ERROR;
        if (o.json)
            printf("{\"bandwidth_1t_gbs\":%.3f,\"bandwidth_nt_gbs\":%.3f,\"bandwidth_threads\":%d,"
                   "\"bytes\":%zu}\n",
                   bw.gbs_1, bw.gbs_n, n, BENCH_BW_BYTES);
        else
            printf("bandwidth  %.2f GB/s (1 thread), %.2f GB/s (%d threads), streaming reads "
                   "of %zu MiB, best of %d\n",
                   bw.gbs_1, bw.gbs_n, n, BENCH_BW_BYTES >> 20, BENCH_BW_PASSES);
        return CLI_OK;
    }

    char mbuf[4096];
    o.model = cli_default_model(model_arg, mbuf, sizeof mbuf);
    if (!o.model) return CLI_ERROR;
    if (cold_child_t) {
        char *end = NULL;
        double t = strtod(cold_child_t, &end);
        if (!end || *end) return cli_usage_error("bench", "bad --cold-child value");
        return cold_child(&o, t);
    }

    slm_config *cfg = NULL;
    if (build_config(&o, &cfg) != CLI_OK) return CLI_ERROR;
    int threads = effective_threads(cfg);
    machine mc;
    machine_info(&mc);
    energy_src es;
    energy_init(&es, o.watts_per_core);
    model_facts facts;
    memset(&facts, 0, sizeof facts);

    int rc = CLI_OK;
    size_t nr = (size_t)o.reps;
    double *v_load = calloc(nr, sizeof(double)), *v_ttft = calloc(nr, sizeof(double));
    double *v_pre = calloc(nr, sizeof(double)), *v_dec = calloc(nr, sizeof(double));
    double *v_en = calloc(nr, sizeof(double));
    double *v_cr = calloc(nr, sizeof(double)), *v_cf = calloc(nr, sizeof(double));
    double *v_cl = calloc(nr, sizeof(double));
    double *v_ver = calloc(nr, sizeof(double)), *v_cver = calloc(nr, sizeof(double));
    double *v_ad = calloc(nr, sizeof(double));
    double *v_sch = calloc(nr, sizeof(double)), *v_stk = calloc(nr, sizeof(double));
    double *lat = calloc(nr * (size_t)o.n_gen, sizeof(double));
    size_t n_lat = 0;
    summary s;
    memset(&s, 0, sizeof s);
    s.verify_required = signature_required(cfg);
    if (!v_load || !v_ttft || !v_pre || !v_dec || !v_en || !v_cr || !v_cf || !v_cl || !v_ver ||
        !v_cver || !lat || !v_ad || !v_sch || !v_stk) {
        fprintf(stderr, "slm bench: out of memory\n");
        rc = CLI_ERROR;
        goto done;
    }

    /* Warm-up (not counted): page cache, CPU frequency, allocator. */
    run_result r;
    rc = bench_once(&o, cfg, NULL, &es, &r, &facts);
    free(r.lat);
    if (rc != CLI_OK) goto done;
    for (size_t k = 0; k < nr; k++) {
        rc = bench_once(&o, cfg, NULL, &es, &r, NULL);
        if (rc != CLI_OK) {
            free(r.lat);
            goto done;
        }
        v_load[k] = r.load_ms;
        v_ver[k] = r.verify_ms;
        v_ttft[k] = r.ttft_ms;
        v_pre[k] = r.prefill_tps;
        v_dec[k] = r.decode_tps;
        v_ad[k] = r.adapter_decode_tps;
        v_sch[k] = r.schema_decode_tps;
        v_stk[k] = r.schema_tokens;
        v_en[k] = r.energy_mj;
        memcpy(lat + n_lat, r.lat, r.n_lat * sizeof *lat);
        n_lat += r.n_lat;
        free(r.lat);
        if (!o.json && s.verify_required)
            fprintf(stderr,
                    "rep %zu/%zu: load %.1f ms (verify %.1f ms), ttft %.1f ms, prefill %.1f "
                    "tok/s, decode %.2f tok/s\n",
                    k + 1, nr, r.load_ms, r.verify_ms, r.ttft_ms, r.prefill_tps, r.decode_tps);
        else if (!o.json)
            fprintf(stderr,
                    "rep %zu/%zu: load %.1f ms, ttft %.1f ms, prefill %.1f tok/s, "
                    "decode %.2f tok/s\n",
                    k + 1, nr, r.load_ms, r.ttft_ms, r.prefill_tps, r.decode_tps);
    }
    if (o.cold) {
        for (size_t k = 0; k < nr; k++) {
            cold_result cr;
            rc = cold_run(&o, &cr);
            if (rc != CLI_OK) goto done;
            v_cr[k] = cr.ready_ms;
            v_cf[k] = cr.first_ms;
            v_cl[k] = cr.load_ms;
            v_cver[k] = cr.verify_ms;
        }
        s.have_cold = 1;
        s.cold_ready = summarize(v_cr, nr);
        s.cold_first = summarize(v_cf, nr);
        s.cold_load = summarize(v_cl, nr);
        s.cold_verify = summarize(v_cver, nr);
    }
    /* Before the bandwidth test, whose 512 MiB buffer would count as the peak. */
    uint64_t peak = peak_rss_bytes();
    if (o.bandwidth) {
        rc = run_bandwidth(&bw, threads);
        if (rc != CLI_OK) goto done;
    }
    s.load = summarize(v_load, nr);
    s.verify = summarize(v_ver, nr);
    s.ttft = summarize(v_ttft, nr);
    s.prefill = summarize(v_pre, nr);
    s.decode = summarize(v_dec, nr);
    s.adapter_decode = summarize(v_ad, nr);
    s.schema_decode = summarize(v_sch, nr);
    s.schema_tokens = summarize(v_stk, nr);
    s.energy = summarize(v_en, nr);
    qsort(lat, n_lat, sizeof *lat, cmp_double);
    s.n_lat = n_lat;
    s.p50 = pct_sorted(lat, n_lat, 50);
    s.p95 = pct_sorted(lat, n_lat, 95);
    s.p99 = pct_sorted(lat, n_lat, 99);
    s.pmax = n_lat ? lat[n_lat - 1] : NAN;
    if (o.json)
        print_json(&o, &mc, &facts, threads, &es, &s, &bw, peak);
    else
        print_text(&o, &mc, &facts, threads, &es, &s, &bw, peak);
done:
    free(v_load);
    free(v_ttft);
    free(v_pre);
    free(v_dec);
    free(v_en);
    free(v_cr);
    free(v_cf);
    free(v_cl);
    free(v_ver);
    free(v_cver);
    free(v_ad);
    free(v_sch);
    free(v_stk);
    free(o.schema_cfg);
    free(lat);
    slm_config_free(cfg);
    return rc;
}
