/* The API around kiln_sample: versions, status strings, the thread-local last
 * error, sampler queries, workspace alignment, struct_size compatibility with
 * older callers, kiln_best_of_n, and sampler reuse across shapes. */
#define _DEFAULT_SOURCE /* mmap, posix_memalign, pthread barriers under -std=c11 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

/* A CPU sampler with a host workspace whatever KILN_TEST_BACKEND says: these
 * tests hand host pointers straight to kiln_sample. */
static kt_sampler cpu_create(int64_t max_batch, int64_t max_vocab, int32_t max_samples,
                             int64_t max_history, int num_threads)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = max_batch;
    cfg.max_vocab = max_vocab;
    cfg.max_samples = max_samples;
    cfg.max_history = max_history;
    cfg.num_threads = num_threads;
    kt_sampler s;
    memset(&s, 0, sizeof s);
    s.backend = KILN_BACKEND_CPU;
    kiln_status st = kiln_sampler_create(&cfg, &s.sampler);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sampler_create: %s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, &s.workspace_size), KILN_SUCCESS);
    s.workspace = malloc(s.workspace_size);
    cr_assert_not_null(s.workspace);
    return s;
}

static int all_bytes(const void *p, size_t n, unsigned char v)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; ++i)
        if (c[i] != v)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- version */

Test(version, header_matches_library)
{
    cr_assert_eq(kiln_version_number(), (unsigned)KILN_VERSION_NUMBER, "library %u, header %u",
                 kiln_version_number(), (unsigned)KILN_VERSION_NUMBER);
    cr_assert_eq(KILN_VERSION_NUMBER,
                 KILN_VERSION_MAJOR * 10000 + KILN_VERSION_MINOR * 100 + KILN_VERSION_PATCH);
    cr_assert_not_null(kiln_version_string());
    cr_assert_str_eq(kiln_version_string(), KILN_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", KILN_VERSION_MAJOR, KILN_VERSION_MINOR,
             KILN_VERSION_PATCH);
    cr_assert_str_eq(kiln_version_string(), want);
    cr_assert(KILN_VERSION_MINOR < 100 && KILN_VERSION_PATCH < 100,
              "the number encoding needs minor and patch below 100");
}

/* ----------------------------------------------------------------- status */

static const struct {
    kiln_status status;
    const char *name;
} statuses[] = {
    { KILN_SUCCESS, "KILN_SUCCESS" },
    { KILN_ERROR_NULL_POINTER, "KILN_ERROR_NULL_POINTER" },
    { KILN_ERROR_INVALID_SHAPE, "KILN_ERROR_INVALID_SHAPE" },
    { KILN_ERROR_INVALID_PARAMETER, "KILN_ERROR_INVALID_PARAMETER" },
    { KILN_ERROR_INVALID_CONFIG, "KILN_ERROR_INVALID_CONFIG" },
    { KILN_ERROR_WORKSPACE_TOO_SMALL, "KILN_ERROR_WORKSPACE_TOO_SMALL" },
    { KILN_ERROR_MISALIGNED, "KILN_ERROR_MISALIGNED" },
    { KILN_ERROR_OVERLAP, "KILN_ERROR_OVERLAP" },
    { KILN_ERROR_OUT_OF_MEMORY, "KILN_ERROR_OUT_OF_MEMORY" },
    { KILN_ERROR_BACKEND_UNAVAILABLE, "KILN_ERROR_BACKEND_UNAVAILABLE" },
    { KILN_ERROR_CUDA, "KILN_ERROR_CUDA" },
    { KILN_ERROR_INTERNAL, "KILN_ERROR_INTERNAL" },
};
#define NUM_STATUSES (sizeof statuses / sizeof *statuses)

Test(status, values_are_fixed)
{
    /* "Values are fixed forever": the ABI. */
    for (size_t i = 0; i < NUM_STATUSES; ++i)
        cr_assert_eq((int)statuses[i].status, (int)i, "%s = %d", statuses[i].name,
                     (int)statuses[i].status);
}

Test(status, every_value_has_its_name)
{
    for (size_t i = 0; i < NUM_STATUSES; ++i) {
        const char *s = kiln_status_string(statuses[i].status);
        cr_assert_not_null(s, "%s", statuses[i].name);
        size_t n = strlen(statuses[i].name);
        cr_assert(strncmp(s, statuses[i].name, n) == 0 && s[n] == ':',
                  "kiln_status_string(%d) = \"%s\"", (int)statuses[i].status, s);
        for (size_t j = 0; j < i; ++j)
            cr_assert_str_neq(s, kiln_status_string(statuses[j].status));
    }
}

Test(status, garbage_values_are_never_null)
{
    const int garbage[] = { 12, 13, 999, -1, INT_MAX, INT_MIN };
    for (size_t i = 0; i < sizeof garbage / sizeof *garbage; ++i) {
        const char *s = kiln_status_string((kiln_status)garbage[i]);
        cr_assert_not_null(s, "status %d", garbage[i]);
        cr_assert_neq(s[0], '\0', "status %d", garbage[i]);
        for (size_t j = 0; j < NUM_STATUSES; ++j)
            cr_assert_str_neq(s, kiln_status_string(statuses[j].status),
                              "status %d reads as a known one", garbage[i]);
    }
}

/* ------------------------------------------------------------- last error */

Test(last_error, empty_after_success_and_set_after_failure)
{
    cr_assert_not_null(kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "");
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(NULL, &s), KILN_ERROR_NULL_POINTER);
    cr_assert_str_eq(kiln_last_error(), "config is NULL");
    /* kiln_status_string is not a kiln call that clears the message. */
    (void)kiln_status_string(KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "config is NULL");

    kiln_config c = KILN_CONFIG_INIT;
    c.max_vocab = 10;
    cr_assert_eq(kiln_sampler_create(&c, &s), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "", "after create: \"%s\"", kiln_last_error());

    size_t bytes;
    cr_assert_eq(kiln_sampler_workspace_size(NULL, &bytes), KILN_ERROR_NULL_POINTER);
    cr_assert_neq(kiln_last_error()[0], '\0');
    cr_assert_eq(kiln_sampler_workspace_size(s, &bytes), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "");

    kiln_backend be;
    cr_assert_eq(kiln_sampler_backend(s, NULL), KILN_ERROR_NULL_POINTER);
    cr_assert_eq(kiln_sampler_backend(s, &be), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "");

    /* A failed kiln_sample followed by a good one. */
    float x[10] = { 0 };
    int32_t tok = -5;
    void *ws = malloc(bytes);
    kiln_batch b = kt_batch_f32(x, 1, 10, 1);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = &tok;
    p.top_p_all = 2.0f;
    cr_assert_eq(kiln_sample(s, &b, &p, &o, ws, bytes, NULL), KILN_ERROR_INVALID_PARAMETER);
    cr_assert(strstr(kiln_last_error(), "top_p_all = 2") != NULL, "\"%s\"", kiln_last_error());
    p.top_p_all = 1.0f;
    p.temperature_all = 0.0f; /* all tied: greedy picks id 0 */
    cr_assert_eq(kiln_sample(s, &b, &p, &o, ws, bytes, NULL), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "");
    cr_assert_eq(tok, 0);

    cr_assert_eq(kiln_best_of_n(NULL, x, 1, 1, &tok, NULL), KILN_ERROR_NULL_POINTER);
    cr_assert_eq(kiln_sampler_destroy(s), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "");
    free(ws);
}

Test(last_error, destroy_null_is_success)
{
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(NULL, &s), KILN_ERROR_NULL_POINTER);
    cr_assert_eq(kiln_sampler_destroy(NULL), KILN_SUCCESS);
    cr_assert_str_eq(kiln_last_error(), "");
}

typedef struct thread_report {
    pthread_barrier_t *barrier;
    char at_start[64];
    char own[128];
    char own_later[128];
    const char *ptr;
} thread_report;

static void *other_thread(void *arg)
{
    thread_report *t = arg;
    snprintf(t->at_start, sizeof t->at_start, "%s", kiln_last_error());
    size_t bytes;
    kiln_sampler_workspace_size(NULL, &bytes);
    snprintf(t->own, sizeof t->own, "%s", kiln_last_error());
    t->ptr = kiln_last_error();
    pthread_barrier_wait(t->barrier); /* main checks its message */
    pthread_barrier_wait(t->barrier); /* main has cleared its message */
    snprintf(t->own_later, sizeof t->own_later, "%s", kiln_last_error());
    return NULL;
}

Test(last_error, is_thread_local)
{
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(NULL, &s), KILN_ERROR_NULL_POINTER);
    cr_assert_str_eq(kiln_last_error(), "config is NULL");
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    thread_report t;
    memset(&t, 0, sizeof t);
    t.barrier = &barrier;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, other_thread, &t), 0);
    pthread_barrier_wait(&barrier);
    cr_assert_str_eq(kiln_last_error(), "config is NULL", "the other thread's error leaked in");
    cr_assert_eq(kiln_sampler_destroy(NULL), KILN_SUCCESS); /* clears main's only */
    cr_assert_str_eq(kiln_last_error(), "");
    pthread_barrier_wait(&barrier);
    pthread_join(th, NULL);
    pthread_barrier_destroy(&barrier);
    cr_assert_str_eq(t.at_start, "", "a new thread sees \"%s\"", t.at_start);
    cr_assert_str_eq(t.own, "sampler is NULL");
    cr_assert_str_eq(t.own_later, "sampler is NULL", "main's clear reached the other thread");
    cr_assert_neq((const void *)t.ptr, (const void *)kiln_last_error());
}

#define HAMMER_THREADS 8

typedef struct hammer {
    int id;
    int failures;
    char first_bad[160];
} hammer;

/* Each thread keeps failing with a message holding its own id and checks it
 * reads back its own message every time. */
static void *hammer_thread(void *arg)
{
    hammer *h = arg;
    kiln_config c = KILN_CONFIG_INIT;
    c.max_batch = 1000;
    c.max_vocab = 4;
    c.num_threads = 1;
    kiln_sampler *s = NULL;
    if (kiln_sampler_create(&c, &s) != KILN_SUCCESS) {
        h->failures = -1;
        return NULL;
    }
    float x[4] = { 0 };
    int32_t tok[1];
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = tok;
    char want[96];
    for (int i = 0; i < 2000; ++i) {
        kiln_batch b = kt_batch_f32(x, 1001 + h->id * 10000 + i, 4, 1);
        kiln_sample(s, &b, &p, &o, NULL, 0, NULL);
        snprintf(want, sizeof want, "batch.num_rows = %d ", 1001 + h->id * 10000 + i);
        if (strncmp(kiln_last_error(), want, strlen(want)) != 0) {
            if (!h->failures++)
                snprintf(h->first_bad, sizeof h->first_bad, "%s", kiln_last_error());
        }
    }
    kiln_sampler_destroy(s);
    return NULL;
}

Test(last_error, concurrent_threads_keep_their_own)
{
    pthread_t th[HAMMER_THREADS];
    hammer h[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; ++i) {
        memset(&h[i], 0, sizeof h[i]);
        h[i].id = i;
        cr_assert_eq(pthread_create(&th[i], NULL, hammer_thread, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; ++i)
        pthread_join(th[i], NULL);
    for (int i = 0; i < HAMMER_THREADS; ++i)
        cr_assert_eq(h[i].failures, 0, "thread %d: %d wrong messages, first \"%s\"", i,
                     h[i].failures, h[i].first_bad);
}

/* ---------------------------------------------------------------- sampler */

static size_t ws_size_for(int64_t vocab, int threads, int64_t history)
{
    kiln_config c = KILN_CONFIG_INIT;
    c.max_batch = 8;
    c.max_vocab = vocab;
    c.max_samples = 4;
    c.max_history = history;
    c.num_threads = threads;
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(&c, &s), KILN_SUCCESS, "%s", kiln_last_error());
    size_t bytes = 0;
    cr_assert_eq(kiln_sampler_workspace_size(s, &bytes), KILN_SUCCESS);
    size_t again = 0;
    cr_assert_eq(kiln_sampler_workspace_size(s, &again), KILN_SUCCESS);
    cr_assert_eq(bytes, again);
    kiln_sampler_destroy(s);
    return bytes;
}

Test(sampler, workspace_size_grows_with_vocab_and_threads)
{
    const size_t v1 = ws_size_for(1, 1, 0);
    const size_t v100 = ws_size_for(100, 1, 0);
    const size_t v10k = ws_size_for(10000, 1, 0);
    const size_t v10k_t2 = ws_size_for(10000, 2, 0);
    const size_t v10k_t4 = ws_size_for(10000, 4, 0);
    cr_assert_gt(v1, 0);
    cr_assert_gt(v100, v1, "%zu vs %zu", v100, v1);
    cr_assert_gt(v10k, v100, "%zu vs %zu", v10k, v100);
    cr_assert_gt(v10k_t2, v10k, "%zu vs %zu", v10k_t2, v10k);
    cr_assert_gt(v10k_t4, v10k_t2, "%zu vs %zu", v10k_t4, v10k_t2);
    /* At least a few bytes per token per thread (the masses alone are 8). */
    cr_assert_geq(v10k_t4, (size_t)4 * 10000 * 8);
    cr_assert_geq(ws_size_for(10000, 1, 5), v10k);
    /* Never more than a small constant per token and thread. */
    cr_assert_leq(v10k_t4, (size_t)4 * 10000 * 64 + 4096);
    /* The largest configuration does not overflow. */
    const size_t big = ws_size_for(KILN_MAX_VOCAB_SIZE, 64, 1);
    cr_assert_gt(big, (size_t)64 * KILN_MAX_VOCAB_SIZE * 8);
}

Test(sampler, queries_check_their_arguments)
{
    kt_sampler s = cpu_create(2, 10, 1, 0, 1);
    size_t bytes = 1234;
    cr_assert_eq(kiln_sampler_workspace_size(NULL, &bytes), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "sampler") != NULL, "\"%s\"", kiln_last_error());
    cr_assert_eq(bytes, 1234);
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, NULL), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "bytes") != NULL, "\"%s\"", kiln_last_error());
    kiln_backend be = (kiln_backend)77;
    cr_assert_eq(kiln_sampler_backend(NULL, &be), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "sampler") != NULL, "\"%s\"", kiln_last_error());
    cr_assert_eq((int)be, 77);
    cr_assert_eq(kiln_sampler_backend(s.sampler, NULL), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "backend") != NULL, "\"%s\"", kiln_last_error());
    cr_assert_eq(kiln_sampler_backend(s.sampler, &be), KILN_SUCCESS);
    cr_assert_eq(be, KILN_BACKEND_CPU);
    kt_destroy(&s);
}

/* ----------------------------------------------------- a realistic batch */

#define RB 6
#define RV 500
#define RN 3
#define RH 5

typedef struct rbatch {
    float x[RB * RV];
    int64_t off[RB + 1];
    int32_t ids[RB * RH];
    int32_t prompt[RB];
    float temp[RB];
    int32_t top_k[RB];
    uint64_t seed[RB];
    kiln_batch batch;
    kiln_sampling_params params;
} rbatch;

static void rbatch_build(rbatch *t)
{
    memset(t, 0, sizeof *t);
    for (int r = 0; r < RB; ++r) {
        ks_zipf(t->x + r * RV, RV, 50 + (uint64_t)r);
        t->temp[r] = r == 2 ? 0.0f : 0.6f + 0.1f * (float)r;
        t->top_k[r] = r * 40;
        t->seed[r] = 31u * (uint64_t)r;
        t->off[r] = r * RH;
        for (int i = 0; i < RH; ++i)
            t->ids[r * RH + i] = (r * 13 + i * 7) % RV;
        t->prompt[r] = 2;
    }
    t->off[RB] = RB * RH;
    t->batch = kt_batch_f32(t->x, RB, RV, RN);
    t->batch.history_offsets = t->off;
    t->batch.history_ids = t->ids;
    t->batch.prompt_lengths = t->prompt;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = t->temp;
    p.top_k = t->top_k;
    p.seed = t->seed;
    p.top_p_all = 0.9f;
    p.min_p_all = 0.01f;
    p.repetition_penalty_all = 1.3f;
    p.presence_penalty_all = 0.4f;
    p.frequency_penalty_all = 0.2f;
    p.offset_all = 5;
    t->params = p;
}

static kiln_status sample_with(kiln_sampler *s, const kiln_batch *b, const kiln_sampling_params *p,
                               const kiln_outputs *o, void *ws, size_t wsz)
{
    return kiln_sample(s, b, p, o, ws, wsz, NULL);
}

/* ------------------------------------------------------------- workspace */

Test(workspace, any_alignment_gives_the_same_bytes)
{
    static rbatch t;
    rbatch_build(&t);
    kt_sampler s = cpu_create(RB, RV, RN, RH, 2);
    const size_t size = s.workspace_size;
    kt_result ref = kt_result_alloc(RB, RV, RN);
    cr_assert_eq(kt_sample(&s, &t.batch, &t.params, &ref), KILN_SUCCESS, "%s", kiln_last_error());

    /* The documented size includes the slack to round any pointer up to 256
     * bytes: every shift must work, with no byte outside [ws, ws + size)
     * touched. */
    unsigned char *base = NULL;
    const size_t guard = 512, total = guard + 256 + size + guard;
    cr_assert_eq(posix_memalign((void **)&base, 256, total), 0);
    const size_t shifts[] = { 0, 1, 2, 3, 4, 7, 8, 16, 63, 64, 100, 128, 200, 255 };
    kt_result r = kt_result_alloc(RB, RV, RN);
    for (size_t i = 0; i < sizeof shifts / sizeof *shifts; ++i) {
        memset(base, 0xEE, total);
        unsigned char *ws = base + guard + shifts[i];
        kiln_outputs o = kt_outputs(&r);
        kt_result_poison(&r);
        kiln_status st = sample_with(s.sampler, &t.batch, &t.params, &o, ws, size);
        cr_assert_eq(st, KILN_SUCCESS, "shift %zu: %s", shifts[i], kiln_last_error());
        cr_assert(kt_result_equal(&ref, &r), "shift %zu: different bytes", shifts[i]);
        cr_assert(all_bytes(base, guard + shifts[i], 0xEE), "shift %zu: wrote before", shifts[i]);
        cr_assert(all_bytes(ws + size, total - guard - shifts[i] - size, 0xEE),
                  "shift %zu: wrote after the workspace", shifts[i]);
    }
    /* A larger workspace than needed is fine too. */
    kiln_outputs o = kt_outputs(&r);
    cr_assert_eq(sample_with(s.sampler, &t.batch, &t.params, &o, base, total), KILN_SUCCESS);
    cr_assert(kt_result_equal(&ref, &r));
    free(base);
    kt_result_free(&r);
    kt_result_free(&ref);
    kt_destroy(&s);
}

/* ---------------------------------------------- struct_size: older callers */

/* Copies the first `n` bytes of `src` to the end of a readable page followed
 * by an inaccessible one, so a read past n bytes crashes the test. */
typedef struct guarded {
    unsigned char *map;
    size_t page;
} guarded;

static void *guarded_copy(guarded *g, const void *src, size_t n)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    cr_assert(n % 8 == 0 && n <= g->page);
    g->map = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq((void *)g->map, MAP_FAILED);
    cr_assert_eq(mprotect(g->map + g->page, g->page, PROT_NONE), 0);
    unsigned char *p = g->map + g->page - n;
    memcpy(p, src, n);
    return p;
}

static void guarded_free(guarded *g)
{
    munmap(g->map, 2 * g->page);
}

Test(struct_size, outputs_before_valid)
{
    static rbatch t;
    rbatch_build(&t);
    kt_sampler s = cpu_create(RB, RV, RN, RH, 2);
    kt_result ref = kt_result_alloc(RB, RV, RN);
    cr_assert_eq(kt_sample(&s, &t.batch, &t.params, &ref), KILN_SUCCESS);

    kt_result r = kt_result_alloc(RB, RV, RN);
    uint8_t sentinel[RB + 8];
    memset(sentinel, 0x77, sizeof sentinel);
    kiln_outputs full = kt_outputs(&r);
    full.valid = sentinel;
    full.struct_size = offsetof(kiln_outputs, valid);
    guarded g;
    const kiln_outputs *o = guarded_copy(&g, &full, full.struct_size);
    cr_assert_eq(sample_with(s.sampler, &t.batch, &t.params, o, s.workspace, s.workspace_size),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert(all_bytes(sentinel, sizeof sentinel, 0x77), "valid written past struct_size");
    memcpy(r.valid, ref.valid, RB); /* the only output not asked for */
    cr_assert(kt_result_equal(&ref, &r));
    guarded_free(&g);

    /* Stopping before probs_row_stride: the caller's stride, kept_counts and
     * valid fields are beyond its struct and never read. */
    kt_result_poison(&r);
    int32_t kept_sentinel[RB];
    memset(kept_sentinel, 0x77, sizeof kept_sentinel);
    full = kt_outputs(&r);
    full.probs_row_stride = RV + 7;
    full.kept_counts = kept_sentinel;
    full.valid = sentinel;
    full.struct_size = offsetof(kiln_outputs, probs_row_stride);
    o = guarded_copy(&g, &full, full.struct_size);
    cr_assert_eq(sample_with(s.sampler, &t.batch, &t.params, o, s.workspace, s.workspace_size),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert(all_bytes(sentinel, sizeof sentinel, 0x77));
    cr_assert(all_bytes(kept_sentinel, sizeof kept_sentinel, 0x77));
    cr_assert(all_bytes(r.kept, sizeof(int32_t) * RB, 0xA5));
    cr_assert(memcmp(r.probs, ref.probs, sizeof(float) * RB * RV) == 0, "probs not at stride V");
    cr_assert(memcmp(r.tokens, ref.tokens, sizeof(int32_t) * RB * RN) == 0);
    guarded_free(&g);

    /* The smallest struct: only tokens. */
    kt_result_poison(&r);
    full = kt_outputs(&r);
    full.struct_size = offsetof(kiln_outputs, logprobs);
    o = guarded_copy(&g, &full, full.struct_size);
    cr_assert_eq(sample_with(s.sampler, &t.batch, &t.params, o, s.workspace, s.workspace_size),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert(memcmp(r.tokens, ref.tokens, sizeof(int32_t) * RB * RN) == 0);
    cr_assert(all_bytes(r.logprobs, sizeof(float) * RB * RN, 0xA5));
    cr_assert(all_bytes(r.probs, sizeof(float) * RB * RV, 0xA5));
    guarded_free(&g);
    kt_result_free(&r);
    kt_result_free(&ref);
    kt_destroy(&s);
}

Test(struct_size, params_missing_fields_get_defaults)
{
    static rbatch t;
    rbatch_build(&t);
    kt_sampler s = cpu_create(RB, RV, RN, RH, 2);
    kt_result ref = kt_result_alloc(RB, RV, RN), r = kt_result_alloc(RB, RV, RN);
    const size_t cuts[] = { offsetof(kiln_sampling_params, seed),
                            offsetof(kiln_sampling_params, offset),
                            offsetof(kiln_sampling_params, repetition_penalty),
                            offsetof(kiln_sampling_params, top_p),
                            offsetof(kiln_sampling_params, temperature) };
    const uint64_t seeds[RB] = { 1, 2, 3, 4, 5, 6 };
    const float nan_row[RB] = { NAN, NAN, NAN, NAN, NAN, NAN };
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; ++i) {
        /* The reference: what the library must use -- the defaults past the cut. */
        kiln_sampling_params want = KILN_SAMPLING_PARAMS_INIT;
        memcpy(&want, &t.params, cuts[i]);
        want.struct_size = sizeof want;
        cr_assert_eq(kt_sample(&s, &t.batch, &want, &ref), KILN_SUCCESS, "%s",
                     kiln_last_error());
        /* The caller's struct has bad values past the cut; never read. */
        kiln_sampling_params older = t.params;
        older.struct_size = cuts[i];
        if (cuts[i] <= offsetof(kiln_sampling_params, repetition_penalty)) {
            older.repetition_penalty_all = NAN;
            older.presence_penalty = nan_row;
        }
        if (cuts[i] <= offsetof(kiln_sampling_params, top_p))
            older.top_p_all = -3.0f;
        if (cuts[i] <= offsetof(kiln_sampling_params, seed))
            older.seed = seeds;
        older.offset_all = 999;
        guarded g;
        const kiln_sampling_params *p = guarded_copy(&g, &older, cuts[i]);
        kiln_outputs o = kt_outputs(&r);
        kt_result_poison(&r);
        cr_assert_eq(sample_with(s.sampler, &t.batch, p, &o, s.workspace, s.workspace_size),
                     KILN_SUCCESS, "cut %zu: %s", cuts[i], kiln_last_error());
        cr_assert(kt_result_equal(&ref, &r), "cut %zu: not the defaults", cuts[i]);
        guarded_free(&g);
    }
    kt_result_free(&r);
    kt_result_free(&ref);
    kt_destroy(&s);
}

Test(struct_size, batch_missing_history_fields)
{
    static rbatch t;
    rbatch_build(&t);
    kt_sampler s = cpu_create(RB, RV, RN, RH, 2);
    kt_result ref = kt_result_alloc(RB, RV, RN), r = kt_result_alloc(RB, RV, RN);
    const size_t cuts[] = { offsetof(kiln_batch, prompt_lengths),
                            offsetof(kiln_batch, history_offsets) };
    for (size_t i = 0; i < 2; ++i) {
        kiln_batch want = KILN_BATCH_INIT;
        memcpy(&want, &t.batch, cuts[i]);
        want.struct_size = sizeof want;
        cr_assert_eq(kt_sample(&s, &want, &t.params, &ref), KILN_SUCCESS, "%s",
                     kiln_last_error());
        kiln_batch older = t.batch;
        older.struct_size = cuts[i];
        guarded g;
        const kiln_batch *b = guarded_copy(&g, &older, cuts[i]);
        kiln_outputs o = kt_outputs(&r);
        kt_result_poison(&r);
        cr_assert_eq(sample_with(s.sampler, b, &t.params, &o, s.workspace, s.workspace_size),
                     KILN_SUCCESS, "cut %zu: %s", cuts[i], kiln_last_error());
        cr_assert(kt_result_equal(&ref, &r), "cut %zu: not the defaults", cuts[i]);
        guarded_free(&g);
    }
    /* The cut really dropped something: the full batch differs. */
    cr_assert_eq(kt_sample(&s, &t.batch, &t.params, &r), KILN_SUCCESS);
    cr_assert(!kt_result_equal(&ref, &r), "history has no effect on this batch");
    kt_result_free(&r);
    kt_result_free(&ref);
    kt_destroy(&s);
}

Test(struct_size, config_missing_fields)
{
    kiln_config full = KILN_CONFIG_INIT;
    full.max_batch = 4;
    full.max_vocab = 100;
    full.max_samples = 2;
    full.max_history = 10;
    full.num_threads = -5; /* invalid, but past the cut */
    full.struct_size = offsetof(kiln_config, num_threads);
    guarded g;
    const kiln_config *c = guarded_copy(&g, &full, full.struct_size);
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(c, &s), KILN_SUCCESS, "%s", kiln_last_error());
    size_t bytes = 0;
    cr_assert_eq(kiln_sampler_workspace_size(s, &bytes), KILN_SUCCESS);
    kiln_sampler_destroy(s);
    guarded_free(&g);
    full.struct_size = sizeof full;
    full.num_threads = 0; /* the default */
    cr_assert_eq(kiln_sampler_create(&full, &s), KILN_SUCCESS);
    size_t want = 0;
    cr_assert_eq(kiln_sampler_workspace_size(s, &want), KILN_SUCCESS);
    cr_assert_eq(bytes, want);
    kiln_sampler_destroy(s);

    /* Before max_history: 0 (no histories), so a history is refused. */
    full.struct_size = offsetof(kiln_config, max_history);
    full.max_history = -1;
    c = guarded_copy(&g, &full, full.struct_size);
    cr_assert_eq(kiln_sampler_create(c, &s), KILN_SUCCESS, "%s", kiln_last_error());
    guarded_free(&g);
    float x[100] = { 0 };
    int64_t off[2] = { 0, 1 };
    int32_t ids[1] = { 3 }, tok[2];
    kiln_batch b = kt_batch_f32(x, 1, 100, 2);
    b.history_offsets = off;
    b.history_ids = ids;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = tok;
    cr_assert_eq(kiln_sampler_workspace_size(s, &bytes), KILN_SUCCESS);
    void *ws = malloc(bytes);
    cr_assert_eq(kiln_sample(s, &b, &p, &o, ws, bytes, NULL), KILN_ERROR_INVALID_SHAPE);
    cr_assert(strstr(kiln_last_error(), "max_history = 0") != NULL, "\"%s\"",
              kiln_last_error());
    free(ws);
    kiln_sampler_destroy(s);
}

/* -------------------------------------------------------------- best-of-n */

static kt_sampler bon_sampler(void)
{
    return cpu_create(1, 1, 1, 0, 1);
}

static void expect_best(const float *scores, int32_t n, int32_t want, const char *what)
{
    kt_sampler s = bon_sampler();
    int32_t best = 12345;
    cr_assert_eq(kiln_best_of_n(s.sampler, scores, 1, n, &best, NULL), KILN_SUCCESS, "%s: %s",
                 what, kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "");
    cr_assert_eq(best, want, "%s: best %d, expected %d", what, best, want);
    kt_destroy(&s);
}

Test(best_of_n, single_groups)
{
    const float inf = INFINITY;
    const float ties[] = { 1.0f, 3.0f, 3.0f, 2.0f, 3.0f };
    expect_best(ties, 5, 1, "ties to the lowest index");
    const float nan_first[] = { NAN, 1.0f, NAN, 2.0f, NAN };
    expect_best(nan_first, 5, 3, "NaN skipped");
    const float nan_big[] = { 1.0f, NAN, 0.5f };
    expect_best(nan_big, 3, 0, "NaN never beats a number");
    const float all_nan[] = { NAN, -NAN, NAN };
    expect_best(all_nan, 3, -1, "all NaN");
    const float one_nan[] = { NAN };
    expect_best(one_nan, 1, -1, "single NaN");
    const float one[] = { -7.0f };
    expect_best(one, 1, 0, "n = 1");
    const float ninf[] = { NAN, -inf, NAN };
    expect_best(ninf, 3, 1, "-inf is a valid score");
    const float all_ninf[] = { -inf, -inf, -inf };
    expect_best(all_ninf, 3, 0, "all -inf ties to index 0");
    const float pinf[] = { 5.0f, inf, inf, NAN };
    expect_best(pinf, 4, 1, "+inf wins, ties to the lower");
    const float zeros[] = { -0.0f, 0.0f };
    expect_best(zeros, 2, 0, "-0 ties +0");
    const float zeros2[] = { 0.0f, -0.0f };
    expect_best(zeros2, 2, 0, "+0 ties -0");
    const float logs[] = { -12.5f, -3.25f, -3.2500002f, -100.0f };
    expect_best(logs, 4, 1, "cumulative log-probabilities");
}

Test(best_of_n, many_groups_match_a_reference)
{
    kt_sampler s = bon_sampler();
    enum { G = 257, NN = 9 };
    static float scores[G * NN];
    static int32_t best[G];
    ks_rng rng = { 77 };
    for (int i = 0; i < G * NN; ++i) {
        uint64_t u = ks_rng_u64(&rng);
        float v = (float)(int)(u % 7) - 3.0f; /* many ties */
        if (u % 11 == 0)
            v = NAN;
        if (u % 13 == 0)
            v = -INFINITY;
        scores[i] = v;
    }
    for (int i = 0; i < NN; ++i)
        scores[5 * NN + i] = NAN; /* group 5: all NaN */
    cr_assert_eq(kiln_best_of_n(s.sampler, scores, G, NN, best, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    for (int g = 0; g < G; ++g) {
        int32_t want = -1;
        for (int i = 0; i < NN; ++i) {
            float v = scores[g * NN + i];
            if (!isnan(v) && (want < 0 || v > scores[g * NN + want]))
                want = i;
        }
        cr_assert_eq(best[g], want, "group %d: %d, expected %d", g, best[g], want);
    }
    cr_assert_eq(best[5], -1);
    kt_destroy(&s);
}

Test(best_of_n, zero_groups_is_a_no_op)
{
    kt_sampler s = bon_sampler();
    float scores[2] = { 1.0f, 2.0f };
    int32_t best[2] = { 111, 222 };
    cr_assert_eq(kiln_best_of_n(s.sampler, scores, 0, 2, best, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    cr_assert_eq(best[0], 111);
    cr_assert_eq(best[1], 222);
    kt_destroy(&s);
}

static void expect_bon_error_at(int line, kiln_sampler *s, const float *scores, int64_t groups,
                                int32_t n, int32_t *best, kiln_status want, const char *need,
                                const int32_t *watch, size_t watch_n)
{
    kiln_status st = kiln_best_of_n(s, scores, groups, n, best, NULL);
    cr_assert_eq(st, want, "line %d: status %d (%s), expected %d; \"%s\"", line, (int)st,
                 kiln_status_string(st), (int)want, kiln_last_error());
    cr_assert(strstr(kiln_last_error(), need) != NULL, "line %d: \"%s\" lacks \"%s\"", line,
              kiln_last_error(), need);
    for (size_t i = 0; i < watch_n; ++i)
        cr_assert_eq(watch[i], -77, "line %d: best[%zu] written", line, i);
}
#define EXPECT_BON(s, sc, g, n, b, want, need) \
    expect_bon_error_at(__LINE__, s, sc, g, n, b, want, need, watch, 4)

Test(best_of_n, errors)
{
    kt_sampler ks = bon_sampler();
    kiln_sampler *s = ks.sampler;
    static _Alignas(16) float scores[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    static _Alignas(16) int32_t watch[4 + 1];
    for (int i = 0; i < 5; ++i)
        watch[i] = -77;
    int32_t *best = watch;
    EXPECT_BON(NULL, scores, 4, 4, best, KILN_ERROR_NULL_POINTER, "sampler");
    EXPECT_BON(s, NULL, 4, 4, best, KILN_ERROR_NULL_POINTER, "scores");
    EXPECT_BON(s, scores, 4, 4, NULL, KILN_ERROR_NULL_POINTER, "best");
    EXPECT_BON(s, scores, 4, 0, best, KILN_ERROR_INVALID_SHAPE, "n = 0");
    EXPECT_BON(s, scores, 4, -1, best, KILN_ERROR_INVALID_SHAPE, "n = -1");
    EXPECT_BON(s, scores, 4, INT32_MIN, best, KILN_ERROR_INVALID_SHAPE, "n = ");
    EXPECT_BON(s, scores, -1, 4, best, KILN_ERROR_INVALID_SHAPE, "num_groups = -1");
    EXPECT_BON(s, scores, INT64_MAX / 4, 4, best, KILN_ERROR_INVALID_SHAPE, "num_groups");
    EXPECT_BON(s, (const float *)(const void *)((const char *)scores + 2), 2, 4, best,
               KILN_ERROR_MISALIGNED, "scores");
    int32_t *odd = (int32_t *)(void *)((char *)watch + 1);
    expect_bon_error_at(__LINE__, s, scores, 2, 4, odd, KILN_ERROR_MISALIGNED, "best", NULL, 0);
    cr_assert(watch[0] == -77 && watch[1] == -77 && watch[2] == -77, "misaligned best written");
    /* best inside scores, at either end. */
    EXPECT_BON(s, scores, 4, 4, (int32_t *)(void *)scores, KILN_ERROR_OVERLAP, "best");
    cr_assert(strstr(kiln_last_error(), "scores") != NULL, "\"%s\"", kiln_last_error());
    float before[16];
    memcpy(before, scores, sizeof before);
    EXPECT_BON(s, scores, 3, 4, (int32_t *)(void *)(scores + 11), KILN_ERROR_OVERLAP, "best");
    EXPECT_BON(s, scores + 2, 3, 4, (int32_t *)(void *)scores, KILN_ERROR_OVERLAP, "best");
    cr_assert(memcmp(before, scores, sizeof before) == 0, "scores written");
    /* Adjacent is fine: 3 groups of 4 then best right after. */
    cr_assert_eq(kiln_best_of_n(s, scores, 3, 4, (int32_t *)(void *)(scores + 12), NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    kt_destroy(&ks);
}

/* ------------------------------------------------------- sampler reuse */

typedef struct shape {
    int64_t rows, vocab, stride;
    int32_t n;
    kiln_dtype dtype;
    int history;
    float temperature;
} shape;

static const shape shapes[] = {
    { 3, 200, 0, 2, KILN_DTYPE_F32, 1, 0.8f },
    { 16, 700, 0, 5, KILN_DTYPE_F32, 0, 1.0f },
    { 1, 1, 0, 1, KILN_DTYPE_F32, 0, 1.0f },
    { 7, 333, 350, 3, KILN_DTYPE_F16, 1, 0.7f },
    { 16, 700, 701, 1, KILN_DTYPE_BF16, 1, 1.3f },
    { 2, 64, 0, 4, KILN_DTYPE_F32, 1, 0.0f },
    { 9, 699, 0, 5, KILN_DTYPE_F32, 1, 0.5f },
    { 5, 2, 0, 5, KILN_DTYPE_BF16, 0, 2.0f },
};
#define NUM_SHAPES (sizeof shapes / sizeof *shapes)
#define REUSE_MAX_H 12

typedef struct shape_data {
    void *logits;
    int64_t off[17];
    int32_t ids[16 * REUSE_MAX_H];
    int32_t prompt[16];
    uint64_t seed[16];
    int32_t top_k[16];
    kiln_batch batch;
    kiln_sampling_params params;
} shape_data;

static void shape_build(const shape *sh, uint64_t salt, shape_data *d)
{
    memset(d, 0, sizeof *d);
    const int64_t stride = sh->stride ? sh->stride : sh->vocab;
    const size_t es = sh->dtype == KILN_DTYPE_F32 ? 4 : 2;
    d->logits = malloc((size_t)(sh->rows * stride) * es);
    cr_assert_not_null(d->logits);
    float *row = malloc((size_t)sh->vocab * sizeof(float));
    ks_rng rng = { salt };
    for (int64_t r = 0; r < sh->rows; ++r) {
        ks_zipf(row, sh->vocab, salt * 100 + (uint64_t)r);
        for (int64_t i = 0; i < stride; ++i) {
            float v = i < sh->vocab ? row[i] : NAN; /* the gap is never read */
            uint32_t u;
            memcpy(&u, &v, 4);
            if (sh->dtype == KILN_DTYPE_F32)
                ((float *)d->logits)[r * stride + i] = v;
            else if (sh->dtype == KILN_DTYPE_BF16)
                ((uint16_t *)d->logits)[r * stride + i] = (uint16_t)(u >> 16);
            else /* some finite f16: sign, exponent 10..17, any mantissa */
                ((uint16_t *)d->logits)[r * stride + i] =
                    (uint16_t)((ks_rng_u64(&rng) & 0x83FFu) | ((10u + ks_rng_u64(&rng) % 8) << 10));
        }
        d->seed[r] = ks_rng_u64(&rng);
        d->top_k[r] = (int32_t)(ks_rng_u64(&rng) % 50);
        int64_t len = sh->history ? (int64_t)(ks_rng_u64(&rng) % (REUSE_MAX_H + 1)) : 0;
        d->off[r + 1] = d->off[r] + len;
        for (int64_t i = 0; i < len; ++i)
            d->ids[d->off[r] + i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)sh->vocab);
        d->prompt[r] = (int32_t)(len / 3);
    }
    free(row);
    d->batch = kt_batch_f32(NULL, sh->rows, sh->vocab, sh->n);
    d->batch.dtype = sh->dtype;
    d->batch.logits = d->logits;
    d->batch.row_stride = sh->stride;
    if (sh->history) {
        d->batch.history_offsets = d->off;
        d->batch.history_ids = d->ids;
        d->batch.prompt_lengths = d->prompt;
    }
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = sh->temperature;
    p.seed = d->seed;
    p.top_k = d->top_k;
    p.top_p_all = 0.92f;
    p.min_p_all = 0.001f;
    p.repetition_penalty_all = 1.15f;
    p.presence_penalty_all = 0.3f;
    p.frequency_penalty_all = 0.1f;
    p.offset_all = salt;
    d->params = p;
}

Test(reuse, one_sampler_many_shapes_equals_fresh_samplers)
{
    static shape_data data[NUM_SHAPES];
    kt_result fresh[NUM_SHAPES];
    for (size_t i = 0; i < NUM_SHAPES; ++i) {
        const shape *sh = &shapes[i];
        shape_build(sh, 1 + i, &data[i]);
        /* A sampler sized exactly for this call, one thread. */
        kt_sampler s = cpu_create(sh->rows, sh->vocab, sh->n,
                                 sh->history ? REUSE_MAX_H : 0, 1);
        fresh[i] = kt_result_alloc(sh->rows, sh->vocab, sh->n);
        cr_assert_eq(kt_sample(&s, &data[i].batch, &data[i].params, &fresh[i]), KILN_SUCCESS,
                     "shape %zu: %s", i, kiln_last_error());
        for (int64_t r = 0; r < sh->rows; ++r)
            cr_assert_eq(fresh[i].valid[r], 1, "shape %zu row %lld", i, (long long)r);
        kt_destroy(&s);
    }
    /* One big sampler, its workspace never cleaned, shapes forwards then
     * backwards then forwards again. */
    kt_sampler big = cpu_create(16, 700, 5, REUSE_MAX_H, 3);
    for (int pass = 0; pass < 3; ++pass)
        for (size_t k = 0; k < NUM_SHAPES; ++k) {
            const size_t i = pass == 1 ? NUM_SHAPES - 1 - k : k;
            const shape *sh = &shapes[i];
            kt_result r = kt_result_alloc(sh->rows, sh->vocab, sh->n);
            cr_assert_eq(kt_sample(&big, &data[i].batch, &data[i].params, &r), KILN_SUCCESS,
                         "pass %d shape %zu: %s", pass, i, kiln_last_error());
            cr_assert(kt_result_equal(&fresh[i], &r), "pass %d shape %zu: different bytes", pass,
                      i);
            kt_result_free(&r);
        }
    kt_destroy(&big);
    for (size_t i = 0; i < NUM_SHAPES; ++i) {
        kt_result_free(&fresh[i]);
        free(data[i].logits);
    }
}
