/* Soak: one CPU sampler, a million varied kiln_sample calls (shapes, dtypes,
 * strides, per-row arrays and scalars, greedy and filtered rows, histories,
 * NaN/inf/masked rows, outputs requested or not, and one call in 32 a bad
 * input that must fail with its status and write nothing). Every result is
 * checked against the invariants of docs/semantics.md, and the process's
 * memory must stay flat: resident set and malloc'd bytes after a warm-up
 * are compared with the end of the run (the call never allocates, section
 * "Caller-owned memory" of the style guide and kiln.h).
 *
 * KILN_SOAK_CALLS sets the number of calls. The default, 10^6, takes about
 * 15 s on one core of the 2-core CI machine in a release build; builds with
 * AddressSanitizer run 2 * 10^5 (about 4x slower per call, so CI stays well
 * inside its limit). The sampler uses one OpenMP thread: CTest runs the
 * test files side by side, and the point here is the handle's lifetime, not
 * its parallelism (test_concurrency.c covers threads). */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, sysconf */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define SOAK_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SOAK_SANITIZED 1
#endif
#endif
#ifdef SOAK_SANITIZED
#define SOAK_DEFAULT_CALLS 200000L
#else
#define SOAK_DEFAULT_CALLS 1000000L
#endif

#define MAXB 8
#define MAXV 64
#define MAXN 4
#define MAXH 8
#define PAD 4
#define BANK 256

/* ------------------------------------------------------------ the bank */

/* Rows the calls are assembled from: realistic shapes, ties, and the rows
 * section 2 calls invalid (NaN, +inf, all -inf), in all three dtypes. The
 * values stay below 1000 so f16 keeps them finite, and the penalties below
 * are mild, so a row's validity is decided by its raw values. */
static float bank32[BANK][MAXV];
static uint16_t bank16[BANK][MAXV], bankbf[BANK][MAXV];

static uint16_t to_f16(float x) /* truncating; exact for the bank's needs */
{
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xFFu, m = u & 0x7FFFFFu;
    if (e == 0xFFu)
        return (uint16_t)(sign | 0x7C00u | (m ? 0x200u : 0u));
    int he = (int)e - 112;
    if (he >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (he <= 0)
        return (uint16_t)(he < -10 ? sign : sign | ((m | 0x800000u) >> (14 - he)));
    return (uint16_t)(sign | (uint32_t)he << 10 | (m >> 13));
}

static uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)(u >> 16);
}

static void fill_bank(void)
{
    ks_rng rng = { 20240611 };
    for (int r = 0; r < BANK; ++r) {
        float *x = bank32[r];
        const uint64_t seed = 1000 + (uint64_t)r;
        switch (r % 8) {
        case 0: ks_zipf(x, MAXV, seed); break;
        case 1: ks_peaked(x, MAXV, seed); break;
        case 2: ks_flat(x, MAXV, seed); break;
        case 3: ks_zipf_like(x, MAXV, seed); break;
        case 4: /* all equal */
            for (int i = 0; i < MAXV; ++i)
                x[i] = (float)(r % 5) - 2.0f;
            break;
        case 5: /* a few values, many ties, some masked */
            for (int i = 0; i < MAXV; ++i)
                x[i] = ks_rng_u64(&rng) % 4 == 0 ? -INFINITY : (float)(ks_rng_u64(&rng) % 3);
            break;
        case 6: /* huge spread and denormals */
            for (int i = 0; i < MAXV; ++i)
                x[i] = i % 3 == 0 ? 1e-40f * (float)(i + 1) : (float)(ks_rng_normal(&rng) * 200.0);
            break;
        default: ks_zipf(x, MAXV, seed); break;
        }
        /* Poison some rows somewhere: invalid only if the call's V reaches it. */
        if (r % 16 == 7)
            x[ks_rng_u64(&rng) % MAXV] = NAN;
        if (r % 16 == 9)
            x[ks_rng_u64(&rng) % MAXV] = INFINITY;
        if (r % 32 == 11)
            for (int i = 0; i < MAXV; ++i)
                x[i] = -INFINITY;
        if (r % 32 == 13)
            for (int i = 1; i < MAXV; ++i)
                x[i] = -INFINITY; /* only token 0 left */
        for (int i = 0; i < MAXV; ++i) {
            bank16[r][i] = to_f16(x[i]);
            bankbf[r][i] = to_bf16(x[i]);
        }
    }
}

/* Section 2 on the first V values of a bank row. */
static int bank_row_valid(int r, int64_t V)
{
    int any = 0;
    for (int64_t i = 0; i < V; ++i) {
        const float x = bank32[r][i];
        if (x != x || x == INFINITY)
            return 0;
        any |= x != -INFINITY;
    }
    return any;
}

/* ------------------------------------------------------- the buffers */

/* Allocated once, before the warm-up; every call reuses them. */
static struct {
    _Alignas(64) unsigned char logits[(MAXB * (MAXV + PAD)) * 4 + 8];
    int64_t off[MAXB + 1];
    int32_t ids[MAXB * MAXH];
    int32_t prompt[MAXB];
    float temp[MAXB], top_p[MAXB], min_p[MAXB], rep[MAXB], pres[MAXB], freq[MAXB];
    int32_t top_k[MAXB];
    uint64_t seed[MAXB], offset[MAXB];
    _Alignas(64) int32_t tokens[MAXB * MAXN + 1];
    float logprobs[MAXB * MAXN], raw[MAXB * MAXN];
    float probs[MAXB * (MAXV + PAD)];
    int32_t kept[MAXB];
    uint8_t valid[MAXB];
    int bank_row[MAXB];
} buf;

static kt_sampler soak;

/* ----------------------------------------------------------- the calls */

typedef struct call {
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs outputs;
    int64_t pstride;
    kiln_status expect; /* KILN_SUCCESS, or the status a planted fault must give */
    size_t ws_size;
} call;

static float pick_f(ks_rng *rng, const float *v, int n)
{
    return v[ks_rng_u64(rng) % (uint64_t)n];
}

static void make_call(ks_rng *rng, call *c)
{
    static const float temps[] = { 0.0f, 0.5f, 1.0f, 1.3f, 2.0f, 1e-3f, 0.0f };
    static const float top_ps[] = { 1.0f, 1.0f, 0.9f, 0.5f, 0.1f, 1e-6f };
    static const float min_ps[] = { 0.0f, 0.0f, 0.05f, 0.3f, 1.0f };
    static const float reps[] = { 1.0f, 1.2f, 0.8f };
    static const float pens[] = { 0.0f, 0.5f, -0.5f, 0.25f };
    const uint64_t u = ks_rng_u64(rng);
    const int64_t B = 1 + (int64_t)(u % MAXB), V = 1 + (int64_t)((u >> 8) % MAXV);
    const int32_t n = 1 + (int32_t)((u >> 16) % MAXN);
    const kiln_dtype dtype = (kiln_dtype)((u >> 20) % 3);
    const int64_t stride = (u >> 24) % 4 == 0 ? V + (int64_t)((u >> 26) % (PAD + 1)) : V;
    const int64_t pstride = (u >> 29) % 4 == 0 ? V + (int64_t)((u >> 31) % (PAD + 1)) : V;
    const unsigned arrays = (unsigned)(ks_rng_u64(rng) & 0x1FF) & (unsigned)(ks_rng_u64(rng) & 0x1FF);
    const unsigned want = (unsigned)(u >> 36);

    const size_t es = dtype == KILN_DTYPE_F32 ? 4 : 2;
    for (int64_t b = 0; b < B; ++b) {
        const int r = (int)(ks_rng_u64(rng) % BANK);
        buf.bank_row[b] = r;
        const void *src = dtype == KILN_DTYPE_F32 ? (const void *)bank32[r]
                          : dtype == KILN_DTYPE_F16 ? (const void *)bank16[r]
                                                    : (const void *)bankbf[r];
        memcpy(buf.logits + (size_t)(b * stride) * es, src, (size_t)V * es);
    }
    kiln_batch bt = KILN_BATCH_INIT;
    bt.dtype = dtype;
    bt.logits = buf.logits;
    bt.num_rows = B;
    bt.vocab_size = V;
    bt.row_stride = stride == V && (u >> 40) % 2 ? 0 : stride;
    bt.num_samples = n;
    if ((u >> 41) % 2) {
        int64_t pos = 0;
        for (int64_t b = 0; b < B; ++b) {
            buf.off[b] = pos;
            const int64_t len = (int64_t)(ks_rng_u64(rng) % (MAXH + 1));
            for (int64_t i = 0; i < len; ++i)
                buf.ids[pos++] = (int32_t)(ks_rng_u64(rng) % (uint64_t)V);
            buf.prompt[b] = (int32_t)(ks_rng_u64(rng) % (uint64_t)(len + 1));
        }
        buf.off[B] = pos;
        bt.history_offsets = buf.off;
        bt.history_ids = buf.ids;
        bt.prompt_lengths = (u >> 42) % 2 ? buf.prompt : NULL;
    }

    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = pick_f(rng, temps, 7);
    p.top_k_all = (int32_t)(ks_rng_u64(rng) % 8) - 1;
    p.top_p_all = pick_f(rng, top_ps, 6);
    p.min_p_all = pick_f(rng, min_ps, 5);
    p.repetition_penalty_all = pick_f(rng, reps, 3);
    p.presence_penalty_all = pick_f(rng, pens, 4);
    p.frequency_penalty_all = pick_f(rng, pens, 4);
    p.seed_all = ks_rng_u64(rng);
    p.offset_all = ks_rng_u64(rng) % 1000;
    for (int64_t b = 0; b < B; ++b) {
        buf.temp[b] = pick_f(rng, temps, 7);
        buf.top_k[b] = (int32_t)(ks_rng_u64(rng) % (uint64_t)(V + 2)) - 1;
        buf.top_p[b] = pick_f(rng, top_ps, 6);
        buf.min_p[b] = pick_f(rng, min_ps, 5);
        buf.rep[b] = pick_f(rng, reps, 3);
        buf.pres[b] = pick_f(rng, pens, 4);
        buf.freq[b] = pick_f(rng, pens, 4);
        buf.seed[b] = ks_rng_u64(rng);
        buf.offset[b] = (uint64_t)b;
    }
    if (arrays & 1) p.temperature = buf.temp;
    if (arrays & 2) p.top_k = buf.top_k;
    if (arrays & 4) p.top_p = buf.top_p;
    if (arrays & 8) p.min_p = buf.min_p;
    if (arrays & 16) p.repetition_penalty = buf.rep;
    if (arrays & 32) p.presence_penalty = buf.pres;
    if (arrays & 64) p.frequency_penalty = buf.freq;
    if (arrays & 128) p.seed = buf.seed;
    if (arrays & 256) p.offset = buf.offset;

    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = buf.tokens;
    if (want & 1) o.logprobs = buf.logprobs;
    if (want & 2) o.raw_logprobs = buf.raw;
    if (want & 4) {
        o.probs = buf.probs;
        o.probs_row_stride = pstride == V && (want & 64) ? 0 : pstride;
    }
    if (want & 8) o.kept_counts = buf.kept;
    if (want & 16) o.valid = buf.valid;

    c->expect = KILN_SUCCESS;
    c->ws_size = soak.workspace_size;
    c->pstride = o.probs ? pstride : V;
    if (ks_rng_u64(rng) % 32 == 0) { /* a planted fault (section 12) */
        switch (ks_rng_u64(rng) % 6) {
        case 0: p.temperature = NULL; p.temperature_all = NAN; c->expect = KILN_ERROR_INVALID_PARAMETER; break;
        case 1: p.top_p = NULL; p.top_p_all = 0.0f; c->expect = KILN_ERROR_INVALID_PARAMETER; break;
        case 2: bt.vocab_size = MAXV + 1; c->expect = KILN_ERROR_INVALID_SHAPE; break;
        case 3: o.tokens = (int32_t *)((char *)buf.tokens + 2); c->expect = KILN_ERROR_MISALIGNED; break;
        case 4: c->ws_size = soak.workspace_size - 1; c->expect = KILN_ERROR_WORKSPACE_TOO_SMALL; break;
        default:
            if (bt.history_offsets && buf.off[B] > 0) {
                buf.ids[buf.off[B] - 1] = (int32_t)V;
                c->expect = KILN_ERROR_INVALID_PARAMETER;
            } else {
                bt.num_samples = MAXN + 1;
                c->expect = KILN_ERROR_INVALID_SHAPE;
            }
            break;
        }
    }
    c->batch = bt;
    c->params = p;
    c->outputs = o;
}

/* ------------------------------------------------------ the invariants */

typedef struct tally {
    long calls, failures_planted, rows_valid, rows_invalid, rows_greedy, draws;
} tally;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond))                                                            \
            cr_assert_fail("call %ld: " __VA_ARGS__);                           \
    } while (0)

static float param_f(const float *arr, float all, int64_t b)
{
    return arr ? arr[b] : all;
}

static void check_call(const call *c, kiln_status st, long k, tally *t)
{
    const kiln_batch *bt = &c->batch;
    const kiln_outputs *o = &c->outputs;
    const kiln_sampling_params *p = &c->params;
    if (c->expect != KILN_SUCCESS) {
        CHECK(st == c->expect, "status %s, expected %s (%s)", k, kiln_status_string(st),
              kiln_status_string(c->expect), kiln_last_error());
        CHECK(kiln_last_error()[0] != '\0', "failure without a message", k);
        const unsigned char *tok = (const unsigned char *)buf.tokens;
        for (size_t i = 0; i < sizeof buf.tokens; ++i)
            CHECK(tok[i] == 0xA5, "a failing call wrote tokens byte %zu", k, i);
        t->failures_planted++;
        return;
    }
    CHECK(st == KILN_SUCCESS, "status %s: %s", k, kiln_status_string(st), kiln_last_error());
    const int64_t B = bt->num_rows, V = bt->vocab_size;
    const int32_t n = bt->num_samples;
    for (int64_t b = 0; b < B; ++b) {
        const int valid = bank_row_valid(buf.bank_row[b], V);
        const int32_t *tok = o->tokens + b * n;
        const float T = param_f(p->temperature, p->temperature_all, b);
        const int32_t kk = p->top_k ? p->top_k[b] : p->top_k_all;
        const int64_t k_eff = kk <= 0 || kk >= V ? V : kk;
        if (o->valid)
            CHECK(o->valid[b] == valid, "row %lld valid flag %d, expected %d", k, (long long)b,
                  o->valid[b], valid);
        if (!valid) {
            t->rows_invalid++;
            for (int32_t j = 0; j < n; ++j)
                CHECK(tok[j] == -1, "invalid row %lld token %d", k, (long long)b, tok[j]);
            if (o->kept_counts)
                CHECK(o->kept_counts[b] == 0, "invalid row %lld kept %d", k, (long long)b,
                      o->kept_counts[b]);
            if (o->logprobs)
                CHECK(isnan(o->logprobs[b * n]), "invalid row %lld logprob", k, (long long)b);
            continue;
        }
        t->rows_valid++;
        t->rows_greedy += T == 0.0f;
        t->draws += n;
        for (int32_t j = 0; j < n; ++j) {
            CHECK(tok[j] >= 0 && tok[j] < V, "row %lld token %d outside [0, %lld)", k,
                  (long long)b, tok[j], (long long)V);
            if (o->logprobs)
                CHECK(isfinite(o->logprobs[b * n + j]) && o->logprobs[b * n + j] <= 0.0f,
                      "row %lld logprob %g", k, (long long)b, (double)o->logprobs[b * n + j]);
            if (o->raw_logprobs)
                CHECK(isfinite(o->raw_logprobs[b * n + j]) && o->raw_logprobs[b * n + j] <= 0.0f,
                      "row %lld raw logprob %g", k, (long long)b,
                      (double)o->raw_logprobs[b * n + j]);
            if (T == 0.0f)
                CHECK(tok[j] == tok[0], "greedy row %lld draws differ", k, (long long)b);
        }
        int32_t kept = -1;
        if (o->kept_counts) {
            kept = o->kept_counts[b];
            CHECK(kept >= 1 && kept <= k_eff && (T != 0.0f || kept == 1),
                  "row %lld kept %d (top_k %lld, T %g)", k, (long long)b, kept, (long long)k_eff,
                  (double)T);
        }
        if (o->probs) {
            const float *pr = o->probs + b * c->pstride;
            double sum = 0.0;
            int32_t nonzero = 0;
            for (int64_t i = 0; i < V; ++i) {
                CHECK(pr[i] >= 0.0f && pr[i] <= 1.0f, "row %lld probs[%lld] = %g", k,
                      (long long)b, (long long)i, (double)pr[i]);
                nonzero += pr[i] > 0.0f;
                sum += pr[i];
            }
            CHECK(fabs(sum - 1.0) <= 1e-5, "row %lld probabilities sum to %.9g", k, (long long)b,
                  sum);
            CHECK(kept < 0 || nonzero == kept, "row %lld: %d nonzero probabilities, kept %d", k,
                  (long long)b, nonzero, kept);
            for (int32_t j = 0; j < n; ++j)
                CHECK(pr[tok[j]] > 0.0f, "row %lld drew token %d of probability 0", k,
                      (long long)b, tok[j]);
        }
    }
}

/* ------------------------------------------------------------- memory */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static size_t heap_bytes(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

static long calls_wanted(void)
{
    const char *e = getenv("KILN_SOAK_CALLS");
    long v = e ? strtol(e, NULL, 10) : SOAK_DEFAULT_CALLS;
    return v > 0 ? v : SOAK_DEFAULT_CALLS;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

Test(soak, one_handle_many_calls_memory_flat, .timeout = 1500)
{
    fill_bank();
    /* A CPU sampler whatever KILN_TEST_BACKEND says: the calls hand host
     * buffers straight to kiln_sample. */
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = MAXB;
    cfg.max_vocab = MAXV;
    cfg.max_samples = MAXN;
    cfg.max_history = MAXH;
    cfg.num_threads = 1;
    soak.backend = KILN_BACKEND_CPU;
    cr_assert_eq(kiln_sampler_create(&cfg, &soak.sampler), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(soak.sampler, &soak.workspace_size), KILN_SUCCESS);
    soak.workspace = malloc(soak.workspace_size);
    cr_assert_not_null(soak.workspace);
    const long total = calls_wanted();
    const long warmup = total / 100 > 1000 ? total / 100 : (total > 1000 ? 1000 : total / 2);
    ks_rng rng = { 7 };
    tally t = { 0, 0, 0, 0, 0, 0 };
    long rss0 = 0, rss_max = 0;
    size_t heap0 = 0, heap_max = 0;
    const double t0 = now_s();
    double t_warm = t0;
    call c;
    for (long k = 0; k < total; ++k) {
        if (k == warmup) {
            rss0 = rss_max = rss_kib();
            heap0 = heap_max = heap_bytes();
            t_warm = now_s();
        }
        make_call(&rng, &c);
        memset(buf.tokens, 0xA5, sizeof buf.tokens);
        const kiln_status st = kiln_sample(soak.sampler, &c.batch, &c.params, &c.outputs,
                                           soak.workspace, c.ws_size, NULL);
        check_call(&c, st, k, &t);
        t.calls++;
        /* Determinism on the same handle: every 4096th call again, bytes equal. */
        if (k % 4096 == 0 && st == KILN_SUCCESS) {
            static int32_t again[MAXB * MAXN + 1];
            memcpy(again, buf.tokens, sizeof again);
            memset(buf.tokens, 0xA5, sizeof buf.tokens);
            cr_assert_eq(kiln_sample(soak.sampler, &c.batch, &c.params, &c.outputs,
                                     soak.workspace, c.ws_size, NULL),
                         KILN_SUCCESS);
            cr_assert(memcmp(again, buf.tokens, sizeof again) == 0,
                      "call %ld repeated gave other tokens", k);
        }
        if (k >= warmup && k % 65536 == 0) {
            const long r = rss_kib();
            const size_t h = heap_bytes();
            rss_max = r > rss_max ? r : rss_max;
            heap_max = h > heap_max ? h : heap_max;
        }
    }
    const double t1 = now_s();
    const long rss1 = rss_kib();
    const size_t heap1 = heap_bytes();
    rss_max = rss1 > rss_max ? rss1 : rss_max;
    heap_max = heap1 > heap_max ? heap1 : heap_max;
    fprintf(stderr,
            "soak: %ld calls (%ld planted failures) in %.1f s (%.2f us/call); rows %ld valid "
            "(%ld greedy), %ld invalid; %ld draws\n"
            "soak: after %ld warm-up calls RSS %ld KiB, heap %zu B; at the end RSS %ld KiB "
            "(max %ld), heap %zu B (max %zu)\n",
            t.calls, t.failures_planted, t1 - t0, 1e6 * (t1 - t_warm) / (double)(total - warmup),
            t.rows_valid, t.rows_greedy, t.rows_invalid, t.draws, warmup, rss0, heap0, rss1,
            rss_max, heap1, heap_max);
    /* Flat: no growth beyond page-granularity noise (a leak of even 16 bytes
     * per call would be 16 MB here). */
#ifndef SOAK_SANITIZED
    /* Under valgrind (its preload library is in LD_PRELOAD) the resident set
     * is valgrind's own allocator; memcheck's leak report covers it there. */
    const char *preload = getenv("LD_PRELOAD");
    if (!(preload && strstr(preload, "vgpreload")))
        cr_assert(rss_max - rss0 <= 512, "resident set grew by %ld KiB", rss_max - rss0);
#else
    /* ASan's quarantine and shadow pages grow the resident set by design;
     * under it, LeakSanitizer is the check for lost memory. */
    (void)rss_max;
#endif
    cr_assert(heap_max <= heap0 + 4096, "heap grew by %zu bytes", heap_max - heap0);
    kt_destroy(&soak);
}
