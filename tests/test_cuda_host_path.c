/* The host side of every CUDA-backend call, run on a machine without a GPU.
 * Every "device" pointer points into a PROT_NONE mapping, so any host read
 * of device memory (validation, history or prompt-length handling, the
 * launch preparation) faults here, in CI, instead of on the first GPU. The
 * sampler is configured without a device (kiln_cuda_configure), so each call
 * runs its host path up to its first CUDA runtime call, which fails for want
 * of a device: KILN_ERROR_CUDA. On a machine with a GPU this test skips:
 * the calls would reach the device with these pointers, and test_gpu covers
 * that machine. Links libkiln.a to reach the internal entry points. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, MAP_NORESERVE */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <criterion/criterion.h>

#include "cuda_backend.h"
#include "sampler.h"
#include "validate.h"

enum { ROWS = 7, VOCAB = 1000, DRAWS = 3, HISTORY = 16, HIDDEN = 64, TOP = 5 };

/* A PROT_NONE arena handing out aligned "device" addresses. */
typedef struct arena {
    char *base;
    size_t size, used;
} arena;

static arena arena_make(size_t size)
{
    arena a;
    a.base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert(a.base != MAP_FAILED, "mmap of %zu bytes failed", size);
    a.size = size;
    a.used = 0;
    return a;
}

static void *take(arena *a, size_t bytes)
{
    a->used = (a->used + 255) / 256 * 256;
    cr_assert(a->used + bytes <= a->size, "arena too small");
    void *p = a->base + a->used;
    a->used += bytes;
    return p;
}

static void arena_free(arena *a)
{
    munmap(a->base, a->size);
}

static void skip_if_device_present(void)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    kiln_sampler *real = NULL;
    if (kiln_sampler_create(&cfg, &real) == KILN_SUCCESS) {
        kiln_sampler_destroy(real);
        cr_skip_test("a CUDA device is present: these calls would reach it with PROT_NONE "
                     "pointers; tests/test_gpu.c covers machines with a GPU");
    }
}

/* A CUDA sampler built without a device. */
static kiln_sampler *fake_cuda_sampler(kiln_algorithm algorithm, int64_t max_hidden)
{
    skip_if_device_present();
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_batch = ROWS;
    cfg.max_vocab = VOCAB;
    cfg.max_samples = DRAWS;
    cfg.max_history = HISTORY;
    cfg.algorithm = algorithm;
    cfg.max_hidden = max_hidden;
    cfg.max_top_logprobs = TOP;
    kiln_sampler *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    cr_assert_eq(kiln_validate_config(&cfg, &s->config), KILN_SUCCESS, "%s", kiln_last_error());
    const kiln_status st = kiln_cuda_configure(s);
    if (st == KILN_ERROR_BACKEND_UNAVAILABLE) {
        free(s);
        cr_skip_test("kiln was built without CUDA: %s", kiln_last_error());
    }
    cr_assert_eq(st, KILN_SUCCESS, "kiln_cuda_configure: %s", kiln_last_error());
    return s;
}

static void free_fake(kiln_sampler *s)
{
    kiln_cuda_destroy(s);
    free(s);
}

typedef struct device_call {
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs outputs;
    void *workspace;
    size_t workspace_size;
} device_call;

/* Every array a call can take, all in the arena; with_arrays = 0 leaves the
 * parameters as host scalars. */
static device_call make_call(arena *a, const kiln_sampler *s, int with_arrays, int with_history)
{
    device_call c;
    kiln_batch b = KILN_BATCH_INIT;
    b.logits = take(a, (size_t)ROWS * VOCAB * 4);
    b.num_rows = ROWS;
    b.vocab_size = VOCAB;
    b.num_samples = DRAWS;
    if (with_arrays) { /* the token mask and the logit bias, applied on the device */
        b.allowed_mask = take(a, (size_t)ROWS * ((VOCAB + 31) / 32) * 4);
        b.logit_bias_offsets = take(a, (ROWS + 1) * 8);
        b.logit_bias_ids = take(a, ROWS * 8 * 4);
        b.logit_bias_values = take(a, ROWS * 8 * 4);
    }
    if (with_history) {
        b.history_offsets = take(a, (ROWS + 1) * 8);
        b.history_ids = take(a, (size_t)ROWS * HISTORY * 4);
        b.prompt_lengths = take(a, ROWS * 4);
    }
    c.batch = b;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = 0.7f;
    p.top_k_all = 50;
    p.top_p_all = 0.9f;
    p.min_p_all = 0.05f;
    p.repetition_penalty_all = 1.1f;
    p.presence_penalty_all = 0.5f;
    p.frequency_penalty_all = 0.25f;
    p.seed_all = 1;
    p.offset_all = 2;
    if (with_arrays) {
        p.temperature = take(a, ROWS * 4);
        p.top_k = take(a, ROWS * 4);
        p.top_p = take(a, ROWS * 4);
        p.min_p = take(a, ROWS * 4);
        p.repetition_penalty = take(a, ROWS * 4);
        p.presence_penalty = take(a, ROWS * 4);
        p.frequency_penalty = take(a, ROWS * 4);
        p.seed = take(a, ROWS * 8);
        p.offset = take(a, ROWS * 8);
        p.dynatemp_range = take(a, ROWS * 4);
        p.dynatemp_exponent = take(a, ROWS * 4);
    }
    c.params = p;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = take(a, (size_t)ROWS * DRAWS * 4);
    o.logprobs = take(a, (size_t)ROWS * DRAWS * 4);
    o.raw_logprobs = take(a, (size_t)ROWS * DRAWS * 4);
    o.probs = take(a, (size_t)ROWS * VOCAB * 4);
    o.kept_counts = take(a, ROWS * 4);
    o.valid = take(a, ROWS);
    o.temperatures = take(a, ROWS * 4);
    o.raw_entropy = take(a, ROWS * 4);
    o.entropy = take(a, ROWS * 4);
    o.raw_ranks = take(a, (size_t)ROWS * DRAWS * 4);
    o.num_top_logprobs = TOP;
    o.raw_top_ids = take(a, ROWS * TOP * 4);
    o.raw_top_logprobs = take(a, ROWS * TOP * 4);
    o.final_top_ids = take(a, ROWS * TOP * 4);
    o.final_top_logprobs = take(a, ROWS * TOP * 4);
    c.outputs = o;
    c.workspace_size = s->workspace_bytes;
    c.workspace = take(a, c.workspace_size);
    return c;
}

static void expect_cuda_failure(kiln_status st, const char *what)
{
    cr_assert_eq(st, KILN_ERROR_CUDA,
                 "%s: status %d (%s), want KILN_ERROR_CUDA from the first CUDA call", what,
                 (int)st, kiln_last_error());
    cr_assert(strstr(kiln_last_error(), "cuda") || strstr(kiln_last_error(), "CUDA"),
              "%s: \"%s\"", what, kiln_last_error());
}

Test(cuda_host_path, sample_reads_no_device_memory)
{
    const kiln_algorithm algorithms[] = { KILN_ALGORITHM_AUTO, KILN_ALGORITHM_SELECT };
    for (size_t alg = 0; alg < 2; ++alg)
        for (int arrays = 0; arrays < 2; ++arrays)
            for (int history = 0; history < 2; ++history) {
                kiln_sampler *s = fake_cuda_sampler(algorithms[alg], 0);
                arena a = arena_make((size_t)1 << 30);
                device_call c = make_call(&a, s, arrays, history);
                expect_cuda_failure(kiln_sample(s, &c.batch, &c.params, &c.outputs, c.workspace,
                                                c.workspace_size, NULL),
                                    "kiln_sample");
                arena_free(&a);
                free_fake(s);
            }
}

/* Host-visible faults are still caught on the host, without reading the
 * device arrays beside them. */
Test(cuda_host_path, bad_scalars_are_reported_without_reading_arrays)
{
    kiln_sampler *s = fake_cuda_sampler(KILN_ALGORITHM_AUTO, 0);
    arena a = arena_make((size_t)1 << 30);
    device_call c = make_call(&a, s, 1, 1);
    c.params.top_p = NULL;
    c.params.top_p_all = 1.5f;
    kiln_status st = kiln_sample(s, &c.batch, &c.params, &c.outputs, c.workspace,
                                 c.workspace_size, NULL);
    cr_assert_eq(st, KILN_ERROR_INVALID_PARAMETER, "%s", kiln_last_error());
    cr_assert(strstr(kiln_last_error(), "top_p_all") != NULL, "%s", kiln_last_error());
    c = make_call(&a, s, 1, 1);
    c.outputs.logprobs = c.outputs.raw_logprobs; /* overlap: decided from addresses alone */
    st = kiln_sample(s, &c.batch, &c.params, &c.outputs, c.workspace, c.workspace_size, NULL);
    cr_assert_eq(st, KILN_ERROR_OVERLAP, "%s", kiln_last_error());
    arena_free(&a);
    free_fake(s);
}

Test(cuda_host_path, sample_hidden_reads_no_device_memory)
{
    for (int arrays = 0; arrays < 2; ++arrays) {
        kiln_sampler *s = fake_cuda_sampler(KILN_ALGORITHM_AUTO, HIDDEN);
        arena a = arena_make((size_t)1 << 30);
        device_call c = make_call(&a, s, arrays, 1);
        c.batch.logits = NULL;
        kiln_lm_head h = KILN_LM_HEAD_INIT;
        h.dtype = KILN_DTYPE_BF16;
        h.hidden = take(&a, (size_t)ROWS * HIDDEN * 2);
        h.hidden_size = HIDDEN;
        h.weight = take(&a, (size_t)VOCAB * HIDDEN * 2);
        h.bias = take(&a, VOCAB * 4);
        h.logits_dtype = KILN_DTYPE_BF16;
        expect_cuda_failure(kiln_sample_hidden(s, &h, &c.batch, &c.params, &c.outputs,
                                               c.workspace, c.workspace_size, NULL),
                            "kiln_sample_hidden");
        arena_free(&a);
        free_fake(s);
    }
}

Test(cuda_host_path, best_of_n_reads_no_device_memory)
{
    kiln_sampler *s = fake_cuda_sampler(KILN_ALGORITHM_AUTO, 0);
    arena a = arena_make((size_t)1 << 20);
    const float *scores = take(&a, 64 * 4 * 4);
    int32_t *best = take(&a, 64 * 4);
    expect_cuda_failure(kiln_best_of_n(s, scores, 64, 4, best, NULL), "kiln_best_of_n");
    arena_free(&a);
    free_fake(s);
}

Test(cuda_host_path, score_reads_no_device_memory)
{
    for (int arrays = 0; arrays < 2; ++arrays)
        for (int history = 0; history < 2; ++history) {
            kiln_sampler *s = fake_cuda_sampler(KILN_ALGORITHM_AUTO, 0);
            arena a = arena_make((size_t)1 << 30);
            device_call c = make_call(&a, s, arrays, history);
            enum { K = 4 };
            const int32_t *targets = take(&a, ROWS * K * 4);
            kiln_score_outputs so = KILN_SCORE_OUTPUTS_INIT;
            so.logprobs = take(&a, ROWS * K * 4);
            so.ranks = take(&a, ROWS * K * 4);
            so.num_top_logprobs = TOP;
            so.top_ids = take(&a, ROWS * TOP * 4);
            so.top_logprobs = take(&a, ROWS * TOP * 4);
            so.entropy = take(&a, ROWS * 4);
            so.valid = take(&a, ROWS);
            kiln_batch b = c.batch;
            b.num_samples = 1;
            expect_cuda_failure(kiln_score(s, &b, &c.params, targets, K, &so, c.workspace,
                                           c.workspace_size, NULL),
                                "kiln_score");
            arena_free(&a);
            free_fake(s);
        }
}

Test(cuda_host_path, verify_drafts_reads_no_device_memory)
{
    for (int arrays = 0; arrays < 2; ++arrays)
        for (int with_q = 0; with_q < 2; ++with_q) {
            kiln_sampler *s = fake_cuda_sampler(KILN_ALGORITHM_AUTO, 0);
            arena a = arena_make((size_t)1 << 30);
            device_call c = make_call(&a, s, arrays, 1);
            enum { REQ = 1, K = 3 };
            kiln_batch b = c.batch;
            b.num_rows = REQ; /* REQ * (K + 1) target rows of the call's logits */
            b.num_samples = 1;
            kiln_drafts d = KILN_DRAFTS_INIT;
            d.max_drafts = K;
            d.draft_ids = take(&a, REQ * K * 4);
            d.num_drafts = take(&a, REQ * 4);
            d.draft_probs = with_q ? take(&a, (size_t)REQ * K * VOCAB * 4) : NULL;
            kiln_verify_outputs o = KILN_VERIFY_OUTPUTS_INIT;
            o.tokens = take(&a, REQ * (K + 1) * 4);
            o.num_accepted = take(&a, REQ * 4);
            o.logprobs = take(&a, REQ * (K + 1) * 4);
            o.valid = take(&a, REQ);
            expect_cuda_failure(kiln_verify_drafts(s, &b, &c.params, &d, &o, c.workspace,
                                                   c.workspace_size, NULL),
                                "kiln_verify_drafts");
            arena_free(&a);
            free_fake(s);
        }
}
