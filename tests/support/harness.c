#include "harness.h"
#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

kt_sampler kt_create(kiln_backend backend, int64_t max_batch, int64_t max_vocab,
                     int32_t max_samples, int64_t max_history, int num_threads)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = backend;
    cfg.max_batch = max_batch;
    cfg.max_vocab = max_vocab;
    cfg.max_samples = max_samples;
    cfg.max_history = max_history;
    cfg.num_threads = num_threads;
    if (backend == KILN_BACKEND_CPU)
        cfg.backend = kt_test_backend();
    const char *why = "";
    if (cfg.backend == KILN_BACKEND_CUDA && !kt_have_cuda(&why))
        KT_GPU_UNAVAILABLE("%s but no CUDA device: %s",
                           backend == KILN_BACKEND_CUDA ? "a CUDA sampler was asked for"
                                                        : "KILN_TEST_BACKEND=cuda",
                           why);
    kt_sampler s = { NULL, NULL, 0, cfg.backend };
    kiln_status st = kiln_sampler_create(&cfg, &s.sampler);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sampler_create: %s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, &s.workspace_size), KILN_SUCCESS);
    s.workspace = cfg.backend == KILN_BACKEND_CPU ? malloc(s.workspace_size ? s.workspace_size : 1)
                                                  : kt_device_alloc(s.workspace_size);
    cr_assert_not_null(s.workspace, "cannot allocate %zu bytes of workspace", s.workspace_size);
    return s;
}

void kt_destroy(kt_sampler *s)
{
    kiln_sampler_destroy(s->sampler);
    if (s->backend == KILN_BACKEND_CPU)
        free(s->workspace);
    else
        kt_device_free(s->workspace);
    s->sampler = NULL;
    s->workspace = NULL;
}

kt_result kt_result_alloc(int64_t rows, int64_t vocab, int32_t n)
{
    kt_result r;
    r.rows = rows;
    r.vocab = vocab;
    r.n = n;
    size_t draws = (size_t)(rows * n);
    r.tokens = malloc(draws * sizeof *r.tokens);
    r.logprobs = malloc(draws * sizeof *r.logprobs);
    r.raw_logprobs = malloc(draws * sizeof *r.raw_logprobs);
    r.probs = malloc((size_t)(rows * vocab) * sizeof *r.probs);
    r.kept = malloc((size_t)rows * sizeof *r.kept);
    r.valid = malloc((size_t)rows);
    cr_assert(r.tokens && r.logprobs && r.raw_logprobs && r.probs && r.kept && r.valid);
    kt_result_poison(&r);
    return r;
}

void kt_result_free(kt_result *r)
{
    free(r->tokens);
    free(r->logprobs);
    free(r->raw_logprobs);
    free(r->probs);
    free(r->kept);
    free(r->valid);
    memset(r, 0, sizeof *r);
}

void kt_result_poison(kt_result *r)
{
    size_t draws = (size_t)(r->rows * r->n);
    memset(r->tokens, 0xA5, draws * sizeof *r->tokens);
    memset(r->logprobs, 0xA5, draws * sizeof *r->logprobs);
    memset(r->raw_logprobs, 0xA5, draws * sizeof *r->raw_logprobs);
    memset(r->probs, 0xA5, (size_t)(r->rows * r->vocab) * sizeof *r->probs);
    memset(r->kept, 0xA5, (size_t)r->rows * sizeof *r->kept);
    memset(r->valid, 0xA5, (size_t)r->rows);
}

kiln_outputs kt_outputs(kt_result *r)
{
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = r->tokens;
    o.logprobs = r->logprobs;
    o.raw_logprobs = r->raw_logprobs;
    o.probs = r->probs;
    o.kept_counts = r->kept;
    o.valid = r->valid;
    return o;
}

kiln_status kt_sample(kt_sampler *s, const kiln_batch *batch, const kiln_sampling_params *params,
                      kt_result *out)
{
    kt_error_reset();
    if (s->backend == KILN_BACKEND_CUDA)
        return kt_sample_device(s, batch, params, out);
    kiln_outputs o = kt_outputs(out);
    return kiln_sample(s->sampler, batch, params, &o, s->workspace, s->workspace_size, NULL);
}

kiln_batch kt_batch_f32(const float *logits, int64_t rows, int64_t vocab, int32_t n)
{
    kiln_batch b = KILN_BATCH_INIT;
    b.logits = logits;
    b.num_rows = rows;
    b.vocab_size = vocab;
    b.num_samples = n;
    return b;
}

int kt_row_equal(const kt_result *a, int64_t ra, const kt_result *b, int64_t rb)
{
    if (a->vocab != b->vocab || a->n != b->n)
        return 0;
    const size_t n = (size_t)a->n, v = (size_t)a->vocab;
    return memcmp(a->tokens + ra * n, b->tokens + rb * n, n * 4) == 0 &&
           memcmp(a->logprobs + ra * n, b->logprobs + rb * n, n * 4) == 0 &&
           memcmp(a->raw_logprobs + ra * n, b->raw_logprobs + rb * n, n * 4) == 0 &&
           memcmp(a->probs + ra * v, b->probs + rb * v, v * 4) == 0 &&
           a->kept[ra] == b->kept[rb] && a->valid[ra] == b->valid[rb];
}

int kt_result_equal(const kt_result *a, const kt_result *b)
{
    if (a->rows != b->rows)
        return 0;
    for (int64_t r = 0; r < a->rows; ++r)
        if (!kt_row_equal(a, r, b, r))
            return 0;
    return 1;
}

int kt_have_cuda(const char **why)
{
    if (!kt_cuda_device_count(why))
        return 0;
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_vocab = 1;
    kiln_sampler *s = NULL;
    kiln_status st = kiln_sampler_create(&cfg, &s);
    if (st != KILN_SUCCESS) {
        /* kiln's own words: "built without CUDA", or what the runtime said */
        static _Thread_local char msg[320];
        snprintf(msg, sizeof msg, "kiln_sampler_create(CUDA): %s: %s", kiln_status_string(st),
                 kiln_last_error());
        if (why)
            *why = msg;
        return 0;
    }
    kiln_sampler_destroy(s);
    return 1;
}

int kt_require_gpu(void)
{
    const char *v = getenv("KILN_REQUIRE_GPU");
    return v && strcmp(v, "1") == 0;
}

kiln_backend kt_test_backend(void)
{
    const char *b = getenv("KILN_TEST_BACKEND");
    return b && strcmp(b, "cuda") == 0 ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU;
}
