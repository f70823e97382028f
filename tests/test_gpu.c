/* The CUDA backend against the CPU backend, byte for byte, plus what only a
 * GPU has: CUDA-graph capture and replay, two streams from two host threads,
 * parameters that live in device memory, and cuRAND's own device API as the
 * reference for the draws of libkiln's real draw kernel. Every test skips
 * with the reason when there is no CUDA device (or kiln was built without
 * CUDA), and fails instead under KILN_REQUIRE_GPU=1 (scripts/gpu-check sets
 * it on the GPU machine, where a skip would hide a broken setup). */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "device.h"
#include "harness.h"
#include "sampler.h" /* sort_chunk_rows_cap */
#include "shared/philox.h"

#ifdef KILN_TEST_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif
#ifdef KILN_TEST_HAVE_CUDA_KERNELS
#include "gpu/curand_reference.h"
#endif

#ifdef KILN_TEST_HAVE_CUDART
#define CUDA_OK(call)                                                                    \
    do {                                                                                 \
        cudaError_t err_ = (call);                                                       \
        cr_assert_eq(err_, cudaSuccess, "%s: %s (%s)", #call, cudaGetErrorName(err_),   \
                     cudaGetErrorString(err_));                                          \
    } while (0)
#endif

/* ----------------------------------------------------------- test data */

static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t exp = (u >> 23) & 0xFFu;
    uint32_t man = u & 0x7FFFFFu;
    if (exp == 0xFFu)
        return (uint16_t)(sign | 0x7C00u | (man ? 0x200u : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7C00u);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1)))
        half++;
    return (uint16_t)(sign | half);
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* Row shapes cycle through realistic and edge cases, including invalid rows. */
static void fill_row(float *x, int64_t V, int64_t b, uint64_t seed)
{
    ks_rng rng = { seed * 1000003u + (uint64_t)b };
    switch (b % 10) {
    case 0: ks_zipf(x, V, seed + b); break;
    case 1: ks_zipf_like(x, V, seed + b); break;
    case 2: ks_flat(x, V, seed + b); break;
    case 3: ks_peaked(x, V, seed + b); break;
    case 4:
        for (int64_t i = 0; i < V; ++i)
            x[i] = 0.5f;
        break;
    case 5:
        ks_zipf(x, V, seed + b);
        for (int64_t i = 0; i < V; i += 2)
            x[i] = -INFINITY;
        break;
    case 6:
        ks_zipf(x, V, seed + b);
        x[ks_rng_u64(&rng) % (uint64_t)V] = NAN;
        break;
    case 7:
        ks_flat(x, V, seed + b);
        x[ks_rng_u64(&rng) % (uint64_t)V] = INFINITY;
        break;
    case 8:
        for (int64_t i = 0; i < V; ++i)
            x[i] = -INFINITY;
        break;
    default:
        /* -0 and +0 tie at the top */
        ks_zipf(x, V, seed + b);
        for (int64_t i = 0; i < V; ++i)
            x[i] = x[i] > -1.0f ? -1.0f : x[i];
        x[V / 3] = -0.0f;
        x[V - 1] = 0.0f;
        break;
    }
}

typedef struct batch_data {
    int64_t rows, vocab;
    int64_t shift; /* row b has the shape and parameters of row b + shift */
    int32_t n;
    kiln_dtype dtype;
    void *logits;
    float *temperature, *top_p, *min_p, *repetition, *presence, *frequency;
    int32_t *top_k, *prompt;
    uint64_t *seed, *offset;
    int64_t *hist_off;
    int32_t *hist_ids;
} batch_data;

/* Per-row parameters cycle through every filter alone and combined, with
 * edge values, so a batch mixes greedy, filtered and plain rows. */
static batch_data make_batch_shifted(int64_t B, int64_t V, kiln_dtype dt, int32_t n,
                                     uint64_t seed, int64_t shift)
{
    batch_data d;
    memset(&d, 0, sizeof d);
    d.shift = shift;
    d.rows = B;
    d.vocab = V;
    d.n = n;
    d.dtype = dt;
    float *x = malloc((size_t)(B * V) * 4);
    for (int64_t b = 0; b < B; ++b)
        fill_row(x + b * V, V, b + shift, seed);
    if (dt == KILN_DTYPE_F32) {
        d.logits = x;
    } else {
        uint16_t *h = malloc((size_t)(B * V) * 2);
        for (int64_t i = 0; i < B * V; ++i)
            h[i] = dt == KILN_DTYPE_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
        free(x);
        d.logits = h;
    }
    d.temperature = malloc((size_t)B * 4);
    d.top_p = malloc((size_t)B * 4);
    d.min_p = malloc((size_t)B * 4);
    d.repetition = malloc((size_t)B * 4);
    d.presence = malloc((size_t)B * 4);
    d.frequency = malloc((size_t)B * 4);
    d.top_k = malloc((size_t)B * 4);
    d.prompt = malloc((size_t)B * 4);
    d.seed = malloc((size_t)B * 8);
    d.offset = malloc((size_t)B * 8);
    d.hist_off = malloc((size_t)(B + 1) * 8);
    d.hist_ids = malloc((size_t)B * 24 * 4);
    ks_rng rng = { seed };
    d.hist_off[0] = 0;
    for (int64_t b = 0; b < B; ++b) {
        const int cfg = (int)(((b + shift) * 7 + 3) % 13);
        d.temperature[b] = 1.0f;
        d.top_k[b] = 0;
        d.top_p[b] = 1.0f;
        d.min_p[b] = 0.0f;
        switch (cfg) {
        case 1: d.temperature[b] = 0.7f; break;
        case 2: d.temperature[b] = 0.0f; break;
        case 3: d.top_k[b] = 1; break;
        case 4: d.top_k[b] = 50; d.temperature[b] = 0.8f; break;
        case 5: d.top_k[b] = (int32_t)V; break;
        case 6: d.top_p[b] = 0.9f; break;
        case 7: d.top_p[b] = 1e-7f; break;
        case 8: d.min_p[b] = 0.05f; break;
        case 9: d.min_p[b] = 1.0f; break;
        case 10: d.temperature[b] = 0.7f; d.top_k[b] = 50; d.top_p[b] = 0.9f; break;
        case 11: d.temperature[b] = 1e-30f; d.top_p[b] = 0.95f; break;
        case 12: d.temperature[b] = 1e4f; d.min_p[b] = 0.5f; break;
        default: break;
        }
        const int penalised = (b + shift) % 3 == 1;
        d.repetition[b] = penalised ? 1.3f : 1.0f;
        d.presence[b] = penalised ? 0.5f : 0.0f;
        d.frequency[b] = penalised ? 0.25f : 0.0f;
        int64_t len = penalised ? 24 : 0;
        for (int64_t i = 0; i < len; ++i)
            d.hist_ids[d.hist_off[b] + i] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)(V < 64 ? V : 64));
        d.hist_off[b + 1] = d.hist_off[b] + len;
        d.prompt[b] = (int32_t)(len / 3);
        d.seed[b] = ks_rng_u64(&rng);
        d.offset[b] = (uint64_t)b * 3;
    }
    return d;
}

static batch_data make_batch(int64_t B, int64_t V, kiln_dtype dt, int32_t n, uint64_t seed)
{
    return make_batch_shifted(B, V, dt, n, seed, 0);
}

static void free_batch(batch_data *d)
{
    void *all[] = { d->logits, d->temperature, d->top_p, d->min_p, d->repetition, d->presence,
                    d->frequency, d->top_k, d->prompt, d->seed, d->offset, d->hist_off,
                    d->hist_ids };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        free(all[i]);
}

static void batch_views(const batch_data *d, kiln_batch *b, kiln_sampling_params *p)
{
    kiln_batch bi = KILN_BATCH_INIT;
    bi.dtype = d->dtype;
    bi.logits = d->logits;
    bi.num_rows = d->rows;
    bi.vocab_size = d->vocab;
    bi.num_samples = d->n;
    bi.history_offsets = d->hist_off;
    bi.history_ids = d->hist_ids;
    bi.prompt_lengths = d->prompt;
    *b = bi;
    kiln_sampling_params pi = KILN_SAMPLING_PARAMS_INIT;
    pi.temperature = d->temperature;
    pi.top_k = d->top_k;
    pi.top_p = d->top_p;
    pi.min_p = d->min_p;
    pi.repetition_penalty = d->repetition;
    pi.presence_penalty = d->presence;
    pi.frequency_penalty = d->frequency;
    pi.seed = d->seed;
    pi.offset = d->offset;
    *p = pi;
}

static kt_sampler make_sampler_with(kiln_backend backend, kiln_algorithm alg, int64_t B, int64_t V,
                                    int32_t n)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = backend;
    cfg.algorithm = alg;
    cfg.max_batch = B;
    cfg.max_vocab = V;
    cfg.max_samples = n;
    cfg.max_history = 64;
    cfg.max_top_logprobs = 16;
    kt_sampler s = { NULL, NULL, 0, backend };
    cr_assert_eq(kiln_sampler_create(&cfg, &s.sampler), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, &s.workspace_size), KILN_SUCCESS);
    s.workspace = backend == KILN_BACKEND_CPU ? malloc(s.workspace_size)
                                              : kt_device_alloc(s.workspace_size);
    cr_assert_not_null(s.workspace, "cannot allocate %zu bytes of workspace", s.workspace_size);
    return s;
}

static kt_sampler make_sampler(kiln_backend backend, int64_t B, int64_t V, int32_t n)
{
    return make_sampler_with(backend, KILN_ALGORITHM_AUTO, B, V, n);
}

static void free_sampler(kt_sampler *s)
{
    kiln_sampler_destroy(s->sampler);
    if (s->backend == KILN_BACKEND_CPU)
        free(s->workspace);
    else
        kt_device_free(s->workspace);
}

/* Names the first differing row and output, for a failure message. */
static void first_difference(const kt_result *a, const kt_result *b, int64_t shift, char *msg,
                             size_t size)
{
    for (int64_t r = 0; r < a->rows; ++r) {
        const size_t n = (size_t)a->n, V = (size_t)a->vocab;
        const char *what = NULL;
        if (memcmp(a->tokens + r * n, b->tokens + r * n, n * 4))
            what = "tokens";
        else if (memcmp(a->logprobs + r * n, b->logprobs + r * n, n * 4))
            what = "logprobs";
        else if (memcmp(a->raw_logprobs + r * n, b->raw_logprobs + r * n, n * 4))
            what = "raw_logprobs";
        else if (memcmp(a->probs + r * V, b->probs + r * V, V * 4))
            what = "probs";
        else if (a->kept[r] != b->kept[r])
            what = "kept_counts";
        else if (a->valid[r] != b->valid[r])
            what = "valid";
        if (what) {
            snprintf(msg, size,
                     "row %lld (shape %lld, params %lld): %s differ (GPU token %d, CPU %d; "
                     "kept %d / %d; valid %d / %d)",
                     (long long)r, (long long)((r + shift) % 10),
                     (long long)(((r + shift) * 7 + 3) % 13), what, (int)a->tokens[r * n],
                     (int)b->tokens[r * n], (int)a->kept[r], (int)b->kept[r], (int)a->valid[r],
                     (int)b->valid[r]);
            return;
        }
    }
    snprintf(msg, size, "no difference");
}

/* CPU == GPU select == GPU sort, every byte. `chunk_cap` > 0 caps the rows
 * per CUB segmented-sort call of the GPU sort sampler (csrc/sampler.h), so
 * the chunked path, otherwise reached only when rows * V >= 2^31, runs. */
static void parity_capped(int64_t B, int64_t V, kiln_dtype dt, int64_t chunk_cap)
{
    const int32_t n = 3;
    batch_data d = make_batch(B, V, dt, n, (uint64_t)(B * 131 + V + dt));
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS, "CPU: %s", kt_error());
    static const kiln_algorithm algs[2] = { KILN_ALGORITHM_SELECT, KILN_ALGORITHM_SORT };
    for (int a = chunk_cap > 0 ? 1 : 0; a < 2; ++a) {
        kt_sampler gpu = make_sampler_with(KILN_BACKEND_CUDA, algs[a], B, V, n);
        if (algs[a] == KILN_ALGORITHM_SORT)
            gpu.sampler->sort_chunk_rows_cap = chunk_cap;
        kt_result_poison(&rg);
        cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "GPU: %s", kt_error());
        char msg[320];
        first_difference(&rg, &rc, 0, msg, sizeof msg);
        cr_assert(kt_result_equal(&rg, &rc), "B=%lld V=%lld dtype=%d GPU %s (chunk cap %lld): %s",
                  (long long)B, (long long)V, (int)dt, a == 0 ? "select" : "sort",
                  (long long)chunk_cap, msg);
        free_sampler(&gpu);
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_batch(&d);
}

static void parity(int64_t B, int64_t V, kiln_dtype dt)
{
    parity_capped(B, V, dt, 0);
}

/* ------------------------------------------------------------- parity */

static const int64_t grid_rows[] = { 1, 7, 64, 257 };
static const int64_t grid_vocab[] = { 2, 111, 32000, 128256, 151936, 262144 };

/* KILN_GPU_GRID=small keeps the first two row counts and the first three
 * vocabularies, for runs under compute-sanitizer (which slows kernels by
 * 10-100x) and for the first, quick pass of scripts/gpu-check. */
static void parity_grid(kiln_dtype dt)
{
    const char *g = getenv("KILN_GPU_GRID");
    const int small = g && strcmp(g, "small") == 0;
    const size_t nr = small ? 2 : sizeof grid_rows / sizeof grid_rows[0];
    const size_t nv = small ? 3 : sizeof grid_vocab / sizeof grid_vocab[0];
    for (size_t i = 0; i < nr; ++i)
        for (size_t j = 0; j < nv; ++j)
            parity(grid_rows[i], grid_vocab[j], dt);
}

#define PARITY_TEST(dt, name)                   \
    Test(gpu_parity, name, .timeout = 1200)     \
    {                                           \
        KT_REQUIRE_GPU();                       \
        parity_grid(dt);                        \
    }

PARITY_TEST(KILN_DTYPE_F32, f32_grid)
PARITY_TEST(KILN_DTYPE_F16, f16_grid)
PARITY_TEST(KILN_DTYPE_BF16, bf16_grid)

/* The token mask and the logit bias (docs/semantics.md section 1) on the
 * GPU: CPU == GPU select == GPU sort, every byte, over the parity batch
 * (penalised, greedy, filtered and invalid rows) with a random mask per
 * row, NaN and +inf tokens masked away on every other row (such a row is
 * valid: the mask comes first), a row whose mask allows nothing (invalid),
 * a padded mask stride, and bias entries on most rows (repeated ids, masked
 * ids, +-100), before the penalties of the penalised rows. */
/* KILN_GPU_GRID=small (compute-sanitizer runs): the stage tests keep
 * their smaller vocabularies only. */
static int small_grid(void)
{
    const char *g = getenv("KILN_GPU_GRID");
    return g && strcmp(g, "small") == 0;
}

/* Whether logit i of row r is NaN or +inf, in the batch's own dtype. */
static int is_special(const batch_data *d, int64_t r, int64_t i)
{
    const int64_t at = r * d->vocab + i;
    if (d->dtype == KILN_DTYPE_F32) {
        const float x = ((const float *)d->logits)[at];
        return x != x || x == INFINITY;
    }
    const uint16_t h = ((const uint16_t *)d->logits)[at];
    const uint16_t exp_bits = d->dtype == KILN_DTYPE_F16 ? 0x7C00 : 0x7F80;
    const uint16_t neg_inf = (uint16_t)(0x8000 | exp_bits);
    return (h & exp_bits) == exp_bits && h != neg_inf;
}

/* `plain`: no bias and no histories, so the GPU call takes the cluster
 * path (the mask applied as each chunk is loaded). */
static void mask_parity(int64_t B, int64_t V, kiln_dtype dt, int plain)
{
    const int32_t n = 3;
    batch_data d = make_batch(B, V, dt, n, (uint64_t)(B * 977 + V + dt));
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    if (plain) {
        b.history_offsets = NULL;
        b.history_ids = NULL;
        b.prompt_lengths = NULL;
    }
    const int64_t words = (V + 31) / 32, stride = words + 1;
    int32_t *mask = malloc((size_t)(B * stride) * 4);
    ks_rng rng = { (uint64_t)(V * 31 + B) };
    for (int64_t r = 0; r < B; ++r)
        for (int64_t w = 0; w < stride; ++w)
            mask[r * stride + w] = (int32_t)(uint32_t)(ks_rng_u64(&rng) | ks_rng_u64(&rng));
    /* every other row masks its NaN and +inf tokens away, which makes an
     * invalid row valid: the mask comes before the validity check */
    for (int64_t r = 0; r < B; r += 2)
        for (int64_t i = 0; i < V; ++i)
            if (is_special(&d, r, i))
                mask[r * stride + i / 32] &= (int32_t) ~(1u << (i % 32));
    memset(mask + 2 * stride, 0, (size_t)words * 4); /* row 2: nothing allowed */
    b.allowed_mask = mask;
    b.allowed_mask_stride = stride;
    /* a logit bias on most rows: ids twice (both additions, in order), on
     * masked tokens (they stay -inf), +-100 (force, ban) */
    int64_t *boff = malloc((size_t)(B + 1) * 8);
    int32_t *bids = malloc((size_t)B * 6 * 4);
    float *bvals = malloc((size_t)B * 6 * 4);
    boff[0] = 0;
    for (int64_t r = 0; r < B; ++r) {
        const int64_t m = r % 4 == 3 ? 0 : 1 + r % 6;
        for (int64_t e = 0; e < m; ++e) {
            const int64_t at = boff[r] + e;
            bids[at] = e == 2 ? bids[boff[r]] : (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
            bvals[at] = e == 4 ? (r % 2 ? 100.0f : -100.0f) : (float)(ks_rng_unit(&rng) * 6.0 - 3.0);
        }
        boff[r + 1] = boff[r] + m;
    }
    if (!plain) {
        b.logit_bias_offsets = boff;
        b.logit_bias_ids = bids;
        b.logit_bias_values = bvals;
    }
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS, "CPU: %s", kt_error());
    cr_assert_eq(rc.valid[2], 0, "a row with no allowed token is invalid");
    static const kiln_algorithm algs[2] = { KILN_ALGORITHM_SELECT, KILN_ALGORITHM_SORT };
    for (int a = 0; a < 2; ++a) {
        kt_sampler gpu = make_sampler_with(KILN_BACKEND_CUDA, algs[a], B, V, n);
        kt_result_poison(&rg);
        cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "GPU: %s", kt_error());
        char msg[320];
        first_difference(&rg, &rc, 0, msg, sizeof msg);
        cr_assert(kt_result_equal(&rg, &rc), "mask B=%lld V=%lld dtype=%d plain=%d GPU %s: %s",
                  (long long)B, (long long)V, (int)dt, plain, a == 0 ? "select" : "sort", msg);
        free_sampler(&gpu);
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free(mask);
    free(boff);
    free(bids);
    free(bvals);
    free_batch(&d);
}

Test(gpu_parity, token_mask_and_logit_bias, .timeout = 900)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 111, 32000, 128256 };
    static const kiln_dtype dts[] = { KILN_DTYPE_F32, KILN_DTYPE_BF16, KILN_DTYPE_F16 };
    const size_t nv = small_grid() ? 2 : 3;
    for (size_t i = 0; i < nv; ++i)
        for (size_t j = 0; j < 3; ++j)
            for (int plain = 0; plain < 2; ++plain)
                mask_parity(i == 2 ? 7 : 33, vs[i], dts[j], plain);
}

/* The CUB sort in chunks: caps that divide the rows, that leave a short
 * last chunk, and one row per chunk. */
Test(gpu_parity, sort_in_chunks, .timeout = 600)
{
    KT_REQUIRE_GPU();
    parity_capped(9, 111, KILN_DTYPE_F32, 1);
    parity_capped(64, 32000, KILN_DTYPE_F32, 7);
    parity_capped(64, 32000, KILN_DTYPE_BF16, 16);
    const char *g = getenv("KILN_GPU_GRID");
    if (!(g && strcmp(g, "small") == 0))
        parity_capped(257, 151936, KILN_DTYPE_F16, 100);
}

Test(gpu_parity, many_draws_per_row, .timeout = 600)
{
    KT_REQUIRE_GPU();
    const int64_t B = 5, V = 50000;
    const int32_t n = 4096;
    batch_data d = make_batch(B, V, KILN_DTYPE_F32, n, 99);
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS, "%s", kt_error());
    cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "%s", kt_error());
    char msg[320];
    first_difference(&rg, &rc, 0, msg, sizeof msg);
    cr_assert(kt_result_equal(&rg, &rc), "%s", msg);
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
    free_batch(&d);
}

/* ------------------------------------------------- the cluster path */

/* Calls without histories or bias take cuda/cluster_row.cu's one kernel
 * (one cluster of CTAs per row, the row in shared memory). CPU == GPU
 * cluster == GPU per-row kernels (the sampler's tests-only switch), every
 * byte, over the parity batch's rows (greedy, top-k, top-p, min-p, tiny
 * and huge temperatures, NaN/inf rows, bad device parameters) at
 * vocabularies around the plan's chunk and cluster-size steps
 * (csrc/cluster_plan.h: 8192 tokens per CTA, 16 CTAs from 131073).
 * `pad` > 0 lays the rows out with row_stride = V + pad, so most rows start
 * off 16-byte alignment (the scalar load path). */
static void cluster_parity(int64_t B, int64_t V, kiln_dtype dt, int32_t n, int64_t pad)
{
    batch_data d = make_batch(B, V, dt, n, (uint64_t)(B * 433 + V + dt + pad));
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    b.history_offsets = NULL;
    b.history_ids = NULL;
    b.prompt_lengths = NULL;
    void *padded = NULL;
    if (pad > 0) {
        const size_t es = dt == KILN_DTYPE_F32 ? 4 : 2, stride = (size_t)(V + pad);
        padded = calloc((size_t)B * stride, es);
        for (int64_t r = 0; r < B; ++r)
            memcpy((char *)padded + (size_t)r * stride * es, (char *)d.logits + (size_t)(r * V) * es,
                   (size_t)V * es);
        b.logits = padded;
        b.row_stride = (int64_t)stride;
    }
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    kt_result rc = kt_result_alloc(B, V, n), rg = kt_result_alloc(B, V, n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS, "CPU: %s", kt_error());
    for (int off = 0; off < 2; ++off) {
        kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
        gpu.sampler->cuda_cluster_off = off;
        kt_result_poison(&rg);
        cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "GPU: %s", kt_error());
        char msg[320];
        first_difference(&rg, &rc, 0, msg, sizeof msg);
        cr_assert(kt_result_equal(&rg, &rc), "B=%lld V=%lld dtype=%d n=%d pad=%lld GPU %s: %s",
                  (long long)B, (long long)V, (int)dt, (int)n, (long long)pad,
                  off ? "per-row kernels" : "cluster", msg);
        free_sampler(&gpu);
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free(padded);
    free_batch(&d);
}

Test(gpu_parity, cluster_plain_rows, .timeout = 1800)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 2, 111, 8192, 8193, 32000, 128256, 131072, 131073, 151936, 262144 };
    static const int64_t bs[] = { 1, 7, 64 };
    static const kiln_dtype dts[] = { KILN_DTYPE_F32, KILN_DTYPE_BF16, KILN_DTYPE_F16 };
    const size_t nv = small_grid() ? 5 : sizeof vs / sizeof vs[0];
    const size_t nb = small_grid() ? 2 : 3;
    for (size_t k = 0; k < 3; ++k)
        for (size_t i = 0; i < nb; ++i)
            for (size_t j = 0; j < nv; ++j)
                cluster_parity(bs[i], vs[j], dts[k], 3, 0);
}

Test(gpu_parity, cluster_misaligned_rows, .timeout = 600)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 111, 32003, 128256 };
    const size_t nv = small_grid() ? 2 : 3;
    for (size_t j = 0; j < nv; ++j) {
        cluster_parity(9, vs[j], KILN_DTYPE_F32, 2, 1);
        cluster_parity(9, vs[j], KILN_DTYPE_BF16, 2, 3);
        cluster_parity(9, vs[j], KILN_DTYPE_F16, 2, 5);
    }
}

/* More draws than the cluster has warps (16 CTAs x 8 at V = 131073): every
 * warp loops, draws land in every CTA's chunk. */
Test(gpu_parity, cluster_many_draws, .timeout = 600)
{
    KT_REQUIRE_GPU();
    cluster_parity(5, 50000, KILN_DTYPE_F32, 4096, 0);
    if (!small_grid())
        cluster_parity(3, 131073, KILN_DTYPE_BF16, 1000, 0);
}

#ifdef KILN_TEST_HAVE_CUDART

/* ------------------------------------------------------------ CUDA graph */

static void *dmalloc(size_t bytes)
{
    void *p = kt_device_alloc(bytes);
    cr_assert_not_null(p, "cudaMalloc(%zu)", bytes);
    return p;
}

/* Every input and output of a call in device memory, at fixed addresses (a
 * captured graph holds the pointers; a decode loop rewrites the contents). */
typedef struct device_call {
    int64_t rows, vocab;
    int32_t n;
    void *logits;
    int64_t *hist_off;
    int32_t *hist_ids, *prompt, *top_k;
    float *temperature, *top_p, *min_p, *repetition, *presence, *frequency;
    uint64_t *seed, *offset;
    int32_t *tokens, *kept;
    float *logprobs, *raw_logprobs, *probs;
    uint8_t *valid;
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs out;
} device_call;

static device_call device_call_alloc(int64_t B, int64_t V, int32_t n)
{
    device_call c;
    memset(&c, 0, sizeof c);
    c.rows = B;
    c.vocab = V;
    c.n = n;
    const size_t rows = (size_t)B, draws = (size_t)(B * n);
    c.logits = dmalloc(rows * (size_t)V * 4);
    c.hist_off = dmalloc((rows + 1) * 8);
    c.hist_ids = dmalloc(rows * 24 * 4); /* make_batch's most */
    c.prompt = dmalloc(rows * 4);
    c.top_k = dmalloc(rows * 4);
    c.temperature = dmalloc(rows * 4);
    c.top_p = dmalloc(rows * 4);
    c.min_p = dmalloc(rows * 4);
    c.repetition = dmalloc(rows * 4);
    c.presence = dmalloc(rows * 4);
    c.frequency = dmalloc(rows * 4);
    c.seed = dmalloc(rows * 8);
    c.offset = dmalloc(rows * 8);
    c.tokens = dmalloc(draws * 4);
    c.logprobs = dmalloc(draws * 4);
    c.raw_logprobs = dmalloc(draws * 4);
    c.probs = dmalloc(rows * (size_t)V * 4);
    c.kept = dmalloc(rows * 4);
    c.valid = dmalloc(rows);

    kiln_batch b = KILN_BATCH_INIT;
    b.logits = c.logits;
    b.num_rows = B;
    b.vocab_size = V;
    b.num_samples = n;
    b.history_offsets = c.hist_off;
    b.history_ids = c.hist_ids;
    b.prompt_lengths = c.prompt;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.repetition_penalty = c.repetition;
    p.presence_penalty = c.presence;
    p.frequency_penalty = c.frequency;
    p.seed = c.seed;
    p.offset = c.offset;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = c.tokens;
    o.logprobs = c.logprobs;
    o.raw_logprobs = c.raw_logprobs;
    o.probs = c.probs;
    o.kept_counts = c.kept;
    o.valid = c.valid;
    c.batch = b;
    c.params = p;
    c.out = o;
    return c;
}

static void device_call_free(device_call *c)
{
    void *all[] = { c->logits, c->hist_off, c->hist_ids, c->prompt, c->top_k, c->temperature,
                    c->top_p, c->min_p, c->repetition, c->presence, c->frequency, c->seed,
                    c->offset, c->tokens, c->logprobs, c->raw_logprobs, c->probs, c->kept,
                    c->valid };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
        CUDA_OK(cudaFree(all[i]));
}

/* New contents for every input (f32 logits), then every output poisoned. */
static void device_call_load(device_call *c, const batch_data *d, cudaStream_t s)
{
    const size_t rows = (size_t)c->rows;
    cr_assert_eq(d->rows, c->rows);
    cr_assert_eq(d->dtype, KILN_DTYPE_F32);
    cr_assert_leq(d->hist_off[d->rows], (int64_t)rows * 24);
    CUDA_OK(cudaMemcpyAsync(c->logits, d->logits, rows * (size_t)c->vocab * 4,
                            cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->hist_off, d->hist_off, (rows + 1) * 8, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->hist_ids, d->hist_ids, (size_t)d->hist_off[d->rows] * 4 + 4,
                            cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->prompt, d->prompt, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->top_k, d->top_k, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->temperature, d->temperature, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->top_p, d->top_p, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->min_p, d->min_p, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->repetition, d->repetition, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->presence, d->presence, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->frequency, d->frequency, rows * 4, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->seed, d->seed, rows * 8, cudaMemcpyHostToDevice, s));
    CUDA_OK(cudaMemcpyAsync(c->offset, d->offset, rows * 8, cudaMemcpyHostToDevice, s));
    const size_t draws = rows * (size_t)c->n;
    CUDA_OK(cudaMemsetAsync(c->tokens, 0xA5, draws * 4, s));
    CUDA_OK(cudaMemsetAsync(c->logprobs, 0xA5, draws * 4, s));
    CUDA_OK(cudaMemsetAsync(c->raw_logprobs, 0xA5, draws * 4, s));
    CUDA_OK(cudaMemsetAsync(c->probs, 0xA5, rows * (size_t)c->vocab * 4, s));
    CUDA_OK(cudaMemsetAsync(c->kept, 0xA5, rows * 4, s));
    CUDA_OK(cudaMemsetAsync(c->valid, 0xA5, rows, s));
}

static void device_call_fetch(const device_call *c, kt_result *r, cudaStream_t s)
{
    const size_t rows = (size_t)c->rows, draws = rows * (size_t)c->n;
    kt_result_poison(r);
    CUDA_OK(cudaMemcpyAsync(r->tokens, c->tokens, draws * 4, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaMemcpyAsync(r->logprobs, c->logprobs, draws * 4, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaMemcpyAsync(r->raw_logprobs, c->raw_logprobs, draws * 4, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaMemcpyAsync(r->probs, c->probs, rows * (size_t)c->vocab * 4,
                            cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaMemcpyAsync(r->kept, c->kept, rows * 4, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaMemcpyAsync(r->valid, c->valid, rows, cudaMemcpyDeviceToHost, s));
    CUDA_OK(cudaStreamSynchronize(s));
}

/* One graph, captured once, replayed as a decode loop would: every step
 * writes new logits, histories, per-row parameters, seeds and offsets into
 * the same device buffers, poisons every output, replays, and every output
 * must equal the CPU backend's for that step's inputs; a direct (uncaptured)
 * call on the same buffers must too. */
/* `plain`: the call carries no histories, so it takes the cluster path. */
static void graph_case(kiln_algorithm alg, int64_t chunk_cap, int plain)
{
    const int64_t B = 64, V = 32000;
    const int32_t n = 2;
    kt_sampler gpu = make_sampler_with(KILN_BACKEND_CUDA, alg, B, V, n);
    gpu.sampler->sort_chunk_rows_cap = chunk_cap;
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
    device_call c = device_call_alloc(B, V, n);
    if (plain) {
        c.batch.history_offsets = NULL;
        c.batch.history_ids = NULL;
        c.batch.prompt_lengths = NULL;
    }
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));

    /* capture with the first step's contents in place (they do not matter) */
    batch_data first = make_batch_shifted(B, V, KILN_DTYPE_F32, n, 4000, 0);
    device_call_load(&c, &first, stream);
    CUDA_OK(cudaStreamSynchronize(stream));
    free_batch(&first);
    /* one direct call first, as a serving loop warms up: with lazy module
     * loading (CUDA 12.2+'s default) the kernels load at their first launch,
     * which should not be what the capture sees first */
    cr_assert_eq(kiln_sample(gpu.sampler, &c.batch, &c.params, &c.out, gpu.workspace,
                             gpu.workspace_size, (kiln_stream)stream),
                 KILN_SUCCESS, "warm-up: %s", kiln_last_error());
    CUDA_OK(cudaStreamSynchronize(stream));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    kiln_status st = kiln_sample(gpu.sampler, &c.batch, &c.params, &c.out, gpu.workspace,
                                 gpu.workspace_size, (kiln_stream)stream);
    cudaError_t end = cudaStreamEndCapture(stream, &graph);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample under capture: %s", kiln_last_error());
    cr_assert_eq(end, cudaSuccess, "the sampling call is not capturable: %s",
                 cudaGetErrorString(end));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));

    kt_result via_graph = kt_result_alloc(B, V, n), direct = kt_result_alloc(B, V, n),
              want = kt_result_alloc(B, V, n);
    for (int step = 0; step < 5; ++step) {
        /* the shift moves every row's shape and parameters; seeds and
         * offsets are new; step 3 puts offsets past 2^63 */
        batch_data d = make_batch_shifted(B, V, KILN_DTYPE_F32, n, 5000 + (uint64_t)step,
                                          step * 3);
        for (int64_t r = 0; r < B; ++r) {
            d.offset[r] += (uint64_t)step * 1000;
            if (step == 3)
                d.offset[r] |= (uint64_t)1 << 63;
        }
        kiln_batch hb;
        kiln_sampling_params hp;
        batch_views(&d, &hb, &hp);
        if (plain) {
            hb.history_offsets = NULL;
            hb.history_ids = NULL;
            hb.prompt_lengths = NULL;
        }
        kt_result_poison(&want);
        cr_assert_eq(kt_sample(&cpu, &hb, &hp, &want), KILN_SUCCESS, "CPU: %s", kt_error());
        char msg[320];

        device_call_load(&c, &d, stream);
        CUDA_OK(cudaGraphLaunch(exec, stream));
        device_call_fetch(&c, &via_graph, stream);
        first_difference(&via_graph, &want, d.shift, msg, sizeof msg);
        cr_assert(kt_result_equal(&via_graph, &want), "%s, step %d, graph replay vs CPU: %s",
                  alg == KILN_ALGORITHM_SORT ? "sort" : "auto", step, msg);

        device_call_load(&c, &d, stream);
        cr_assert_eq(kiln_sample(gpu.sampler, &c.batch, &c.params, &c.out, gpu.workspace,
                                 gpu.workspace_size, (kiln_stream)stream),
                     KILN_SUCCESS, "%s", kiln_last_error());
        CUDA_OK(cudaGetLastError());
        device_call_fetch(&c, &direct, stream);
        first_difference(&direct, &want, d.shift, msg, sizeof msg);
        cr_assert(kt_result_equal(&direct, &want), "%s, step %d, direct call vs CPU: %s",
                  alg == KILN_ALGORITHM_SORT ? "sort" : "auto", step, msg);
        free_batch(&d);
    }
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
    CUDA_OK(cudaStreamDestroy(stream));
    device_call_free(&c);
    kt_result_free(&via_graph);
    kt_result_free(&direct);
    kt_result_free(&want);
    free_sampler(&gpu);
    free_sampler(&cpu);
}

/* outputs.temperatures on the GPU: each row's temperature (0 for greedy),
 * NaN for an invalid row, the CPU's bytes. */
Test(gpu_outputs, temperatures_match_cpu, .timeout = 120)
{
    KT_REQUIRE_GPU();
    const int64_t B = 13, V = 5000;
    batch_data d = make_batch(B, V, KILN_DTYPE_F32, 1, 77);
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    b.history_offsets = NULL;
    b.history_ids = NULL;
    b.prompt_lengths = NULL;
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, 1);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, 1);
    int32_t tok_c[13];
    float temp_c[13], temp_g[13];
    kiln_outputs oc = KILN_OUTPUTS_INIT;
    oc.tokens = tok_c;
    oc.temperatures = temp_c;
    (void)p;
    void *dl = dmalloc((size_t)(B * V) * 4), *dt = dmalloc((size_t)B * 4),
         *dtok = dmalloc((size_t)B * 4), *dtemp = dmalloc((size_t)B * 4);
    cr_assert_eq(cudaMemcpy(dl, d.logits, (size_t)(B * V) * 4, cudaMemcpyHostToDevice), cudaSuccess);
    cr_assert_eq(cudaMemcpy(dt, d.temperature, (size_t)B * 4, cudaMemcpyHostToDevice), cudaSuccess);
    kiln_batch bg = b;
    bg.logits = dl;
    kiln_sampling_params pg = KILN_SAMPLING_PARAMS_INIT;
    pg.temperature = dt;
    pg.seed_all = 3;
    kiln_sampling_params pc = pg;
    pc.temperature = d.temperature;
    cr_assert_eq(kiln_sample(cpu.sampler, &b, &pc, &oc, cpu.workspace, cpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    kiln_outputs og = KILN_OUTPUTS_INIT;
    og.tokens = dtok;
    og.temperatures = dtemp;
    cr_assert_eq(kiln_sample(gpu.sampler, &bg, &pg, &og, gpu.workspace, gpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(cudaMemcpy(temp_g, dtemp, (size_t)B * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    cr_assert_eq(memcmp(temp_g, temp_c, (size_t)B * 4), 0, "temperatures differ");
    int invalid = 0;
    for (int64_t r = 0; r < B; ++r)
        invalid += temp_c[r] != temp_c[r];
    cr_assert_gt(invalid, 0, "the batch has invalid rows (NaN temperatures)");
    kt_device_free(dl);
    kt_device_free(dt);
    kt_device_free(dtok);
    kt_device_free(dtemp);
    free_sampler(&cpu);
    free_sampler(&gpu);
    free_batch(&d);
}

/* Dynatemp (section 16), both entropies (section 15), the raw ranks and
 * the raw and final top-7 (section 17) on the GPU: the parity batch
 * (greedy, filtered, tied, invalid rows) with a per-row dynatemp range and
 * exponent (0 on some rows: the plain temperature), every draw,
 * log-probability, probability, temperature, entropy, rank and top-N id
 * and log-probability byte for byte the CPU's; V = 5 pads the top-7. */
Test(gpu_outputs, dynatemp_entropies_ranks_top_n_match_cpu, .timeout = 300)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 5, 111, 32000, 128256 };
    const size_t nv = small_grid() ? 3 : 4;
    for (size_t vi = 0; vi < nv; ++vi) {
        const int64_t B = 13, V = vs[vi];
        const int32_t n = 2;
        batch_data d = make_batch(B, V, KILN_DTYPE_F32, n, 91 + vi);
        float range[13], expo[13];
        for (int64_t r = 0; r < B; ++r) {
            range[r] = r % 4 == 0 ? 0.0f : 0.15f * (float)(r % 5);
            expo[r] = 0.5f + 0.25f * (float)(r % 3);
        }
        kiln_batch b;
        kiln_sampling_params p;
        batch_views(&d, &b, &p);
        b.history_offsets = NULL;
        b.history_ids = NULL;
        b.prompt_lengths = NULL;
        p.repetition_penalty = p.presence_penalty = p.frequency_penalty = NULL;
        p.dynatemp_range = range;
        p.dynatemp_exponent = expo;
        kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
        kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
        const size_t draws = (size_t)(B * n), rows = (size_t)B;
        enum { TOPN = 7 };
        int32_t *tok[2], *rank[2], *rtid[2], *ftid[2];
        float *lp[2], *pr[2], *temp[2], *ent[2], *fent[2], *rtlp[2], *ftlp[2];
        for (int k = 0; k < 2; ++k) {
            rtid[k] = malloc(rows * TOPN * 4);
            ftid[k] = malloc(rows * TOPN * 4);
            rtlp[k] = malloc(rows * TOPN * 4);
            ftlp[k] = malloc(rows * TOPN * 4);
            rank[k] = malloc(draws * 4);
            fent[k] = malloc(rows * 4);
            tok[k] = malloc(draws * 4);
            lp[k] = malloc(draws * 4);
            pr[k] = malloc(rows * (size_t)V * 4);
            temp[k] = malloc(rows * 4);
            ent[k] = malloc(rows * 4);
        }
        kiln_outputs oc = KILN_OUTPUTS_INIT;
        oc.tokens = tok[0];
        oc.logprobs = lp[0];
        oc.probs = pr[0];
        oc.temperatures = temp[0];
        oc.raw_entropy = ent[0];
        oc.entropy = fent[0];
        oc.raw_ranks = rank[0];
        oc.num_top_logprobs = TOPN;
        oc.raw_top_ids = rtid[0];
        oc.raw_top_logprobs = rtlp[0];
        oc.final_top_ids = ftid[0];
        oc.final_top_logprobs = ftlp[0];
        cr_assert_eq(kiln_sample(cpu.sampler, &b, &p, &oc, cpu.workspace, cpu.workspace_size, NULL),
                     KILN_SUCCESS, "CPU: %s", kiln_last_error());
        /* the same call with every array on the device */
        void *dl = dmalloc(rows * (size_t)V * 4);
        cr_assert_eq(cudaMemcpy(dl, d.logits, rows * (size_t)V * 4, cudaMemcpyHostToDevice),
                     cudaSuccess);
        kiln_sampling_params pg = p;
        void **fields[] = { (void **)&pg.temperature, (void **)&pg.top_k, (void **)&pg.top_p,
                            (void **)&pg.min_p, (void **)&pg.dynatemp_range,
                            (void **)&pg.dynatemp_exponent };
        void *owned[8];
        int n_owned = 0;
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; ++f) {
            void *dev = dmalloc(rows * 4);
            cr_assert_eq(cudaMemcpy(dev, *fields[f], rows * 4, cudaMemcpyHostToDevice), cudaSuccess);
            *fields[f] = dev;
            owned[n_owned++] = dev;
        }
        void *dseed = dmalloc(rows * 8), *doff = dmalloc(rows * 8);
        cr_assert_eq(cudaMemcpy(dseed, d.seed, rows * 8, cudaMemcpyHostToDevice), cudaSuccess);
        cr_assert_eq(cudaMemcpy(doff, d.offset, rows * 8, cudaMemcpyHostToDevice), cudaSuccess);
        pg.seed = dseed;
        pg.offset = doff;
        kiln_batch bg = b;
        bg.logits = dl;
        void *dtok = dmalloc(draws * 4), *dlp = dmalloc(draws * 4), *dpr = dmalloc(rows * (size_t)V * 4),
             *dtemp = dmalloc(rows * 4), *dent = dmalloc(rows * 4), *dfent = dmalloc(rows * 4),
             *drank = dmalloc(draws * 4), *drtid = dmalloc(rows * TOPN * 4),
             *drtlp = dmalloc(rows * TOPN * 4), *dftid = dmalloc(rows * TOPN * 4),
             *dftlp = dmalloc(rows * TOPN * 4);
        kiln_outputs og = KILN_OUTPUTS_INIT;
        og.tokens = dtok;
        og.logprobs = dlp;
        og.probs = dpr;
        og.temperatures = dtemp;
        og.raw_entropy = dent;
        og.entropy = dfent;
        og.raw_ranks = drank;
        og.num_top_logprobs = TOPN;
        og.raw_top_ids = drtid;
        og.raw_top_logprobs = drtlp;
        og.final_top_ids = dftid;
        og.final_top_logprobs = dftlp;
        cr_assert_eq(kiln_sample(gpu.sampler, &bg, &pg, &og, gpu.workspace, gpu.workspace_size, NULL),
                     KILN_SUCCESS, "GPU: %s", kiln_last_error());
        cr_assert_eq(cudaMemcpy(tok[1], dtok, draws * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(lp[1], dlp, draws * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(pr[1], dpr, rows * (size_t)V * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(temp[1], dtemp, rows * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(ent[1], dent, rows * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(fent[1], dfent, rows * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(rank[1], drank, draws * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(rtid[1], drtid, rows * TOPN * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(rtlp[1], drtlp, rows * TOPN * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(ftid[1], dftid, rows * TOPN * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        cr_assert_eq(cudaMemcpy(ftlp[1], dftlp, rows * TOPN * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int64_t r = 0; r < B; ++r) {
            cr_assert_eq(memcmp(temp[0] + r, temp[1] + r, 4), 0, "V %lld row %lld: T' CPU %.9g GPU %.9g",
                         (long long)V, (long long)r, (double)temp[0][r], (double)temp[1][r]);
            cr_assert_eq(memcmp(ent[0] + r, ent[1] + r, 4), 0, "V %lld row %lld: raw entropy", (long long)V,
                         (long long)r);
            cr_assert_eq(memcmp(fent[0] + r, fent[1] + r, 4), 0, "V %lld row %lld: entropy CPU %.9g GPU %.9g",
                         (long long)V, (long long)r, (double)fent[0][r], (double)fent[1][r]);
            cr_assert_eq(memcmp(rank[0] + r * n, rank[1] + r * n, (size_t)n * 4), 0,
                         "V %lld row %lld: raw ranks", (long long)V, (long long)r);
            cr_assert_eq(memcmp(rtid[0] + r * TOPN, rtid[1] + r * TOPN, TOPN * 4), 0,
                         "V %lld row %lld: raw top ids", (long long)V, (long long)r);
            cr_assert_eq(memcmp(rtlp[0] + r * TOPN, rtlp[1] + r * TOPN, TOPN * 4), 0,
                         "V %lld row %lld: raw top logprobs", (long long)V, (long long)r);
            cr_assert_eq(memcmp(ftid[0] + r * TOPN, ftid[1] + r * TOPN, TOPN * 4), 0,
                         "V %lld row %lld: final top ids", (long long)V, (long long)r);
            cr_assert_eq(memcmp(ftlp[0] + r * TOPN, ftlp[1] + r * TOPN, TOPN * 4), 0,
                         "V %lld row %lld: final top logprobs", (long long)V, (long long)r);
            cr_assert_eq(memcmp(tok[0] + r * n, tok[1] + r * n, (size_t)n * 4), 0, "V %lld row %lld: tokens",
                         (long long)V, (long long)r);
            cr_assert_eq(memcmp(lp[0] + r * n, lp[1] + r * n, (size_t)n * 4), 0, "V %lld row %lld: logprobs",
                         (long long)V, (long long)r);
            cr_assert_eq(memcmp(pr[0] + r * V, pr[1] + r * V, (size_t)V * 4), 0, "V %lld row %lld: probs",
                         (long long)V, (long long)r);
        }
        void *dev_all[] = { dl, dseed, doff, dtok, dlp, dpr, dtemp, dent, dfent, drank, drtid, drtlp,
                            dftid, dftlp };
        for (size_t i = 0; i < sizeof dev_all / sizeof dev_all[0]; ++i)
            kt_device_free(dev_all[i]);
        for (int i = 0; i < n_owned; ++i)
            kt_device_free(owned[i]);
        for (int k = 0; k < 2; ++k) {
            free(tok[k]);
            free(lp[k]);
            free(pr[k]);
            free(temp[k]);
            free(ent[k]);
            free(fent[k]);
            free(rank[k]);
            free(rtid[k]);
            free(rtlp[k]);
            free(ftid[k]);
            free(ftlp[k]);
        }
        free_sampler(&cpu);
        free_sampler(&gpu);
        free_batch(&d);
    }
}

/* A device copy of host memory, remembered in `owned` for freeing. */
static void *to_dev(const void *host, size_t bytes, void **owned, int *n_owned)
{
    void *d = dmalloc(bytes ? bytes : 1);
    cr_assert_eq(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    owned[(*n_owned)++] = d;
    return d;
}

/* kiln_score on the GPU (section 18): the parity batch with its histories
 * and penalties and a random mask, targets mixing ids and -1 padding; every
 * log-probability, rank, raw top-5 id and log-probability, entropy and
 * valid flag byte for byte the CPU's; then a device-resident target of V
 * in one row makes that row invalid and leaves the others' bytes alone. */
Test(gpu_score, matches_cpu, .timeout = 300)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 5, 111, 32000 };
    for (size_t vi = 0; vi < 3; ++vi) {
        enum { B = 13, K = 6, TOPN = 5 };
        const int64_t V = vs[vi], words = (V + 31) / 32;
        batch_data d = make_batch(B, V, KILN_DTYPE_F32, 1, 501 + vi);
        kiln_batch b;
        kiln_sampling_params p;
        batch_views(&d, &b, &p);
        int32_t *mask = malloc((size_t)(B * words) * 4), targets[B * K];
        ks_rng rng = { 77 + vi };
        for (int64_t i = 0; i < B * words; ++i)
            mask[i] = (int32_t)(uint32_t)(ks_rng_u64(&rng) | ks_rng_u64(&rng));
        for (int i = 0; i < B * K; ++i)
            targets[i] = i % 5 == 4 ? -1 : (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
        b.allowed_mask = mask;
        kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, 1);
        kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, 1);
        float lp[2][B * K], tlp[2][B * TOPN], ent[2][B];
        int32_t rk[2][B * K], tid[2][B * TOPN];
        uint8_t val[2][B];
        kiln_score_outputs so = KILN_SCORE_OUTPUTS_INIT;
        so.logprobs = lp[0];
        so.ranks = rk[0];
        so.num_top_logprobs = TOPN;
        so.top_ids = tid[0];
        so.top_logprobs = tlp[0];
        so.entropy = ent[0];
        so.valid = val[0];
        cr_assert_eq(kiln_score(cpu.sampler, &b, &p, targets, K, &so, cpu.workspace,
                                cpu.workspace_size, NULL),
                     KILN_SUCCESS, "CPU: %s", kiln_last_error());
        for (int bad = 0; bad < 2; ++bad) {
            void *owned[32];
            int n_owned = 0;
            const size_t rows = B;
            kiln_batch bg = b;
            bg.logits = to_dev(d.logits, rows * (size_t)V * 4, owned, &n_owned);
            bg.history_offsets = to_dev(d.hist_off, (rows + 1) * 8, owned, &n_owned);
            bg.history_ids = to_dev(d.hist_ids, (size_t)d.hist_off[B] * 4 + 4, owned, &n_owned);
            bg.prompt_lengths = to_dev(d.prompt, rows * 4, owned, &n_owned);
            bg.allowed_mask = to_dev(mask, (size_t)(B * words) * 4, owned, &n_owned);
            kiln_sampling_params pg = p;
            pg.temperature = to_dev(d.temperature, rows * 4, owned, &n_owned);
            pg.top_k = to_dev(d.top_k, rows * 4, owned, &n_owned);
            pg.top_p = to_dev(d.top_p, rows * 4, owned, &n_owned);
            pg.min_p = to_dev(d.min_p, rows * 4, owned, &n_owned);
            pg.repetition_penalty = to_dev(d.repetition, rows * 4, owned, &n_owned);
            pg.presence_penalty = to_dev(d.presence, rows * 4, owned, &n_owned);
            pg.frequency_penalty = to_dev(d.frequency, rows * 4, owned, &n_owned);
            pg.seed = to_dev(d.seed, rows * 8, owned, &n_owned);
            pg.offset = to_dev(d.offset, rows * 8, owned, &n_owned);
            int32_t tg[B * K];
            memcpy(tg, targets, sizeof tg);
            if (bad)
                tg[4 * K + 1] = (int32_t)V;
            const int32_t *dtg = to_dev(tg, sizeof tg, owned, &n_owned);
            kiln_score_outputs sg = KILN_SCORE_OUTPUTS_INIT;
            sg.logprobs = dmalloc(sizeof lp[1]);
            sg.ranks = dmalloc(sizeof rk[1]);
            sg.num_top_logprobs = TOPN;
            sg.top_ids = dmalloc(sizeof tid[1]);
            sg.top_logprobs = dmalloc(sizeof tlp[1]);
            sg.entropy = dmalloc(sizeof ent[1]);
            sg.valid = dmalloc(sizeof val[1]);
            cr_assert_eq(kiln_score(gpu.sampler, &bg, &pg, dtg, K, &sg, gpu.workspace,
                                    gpu.workspace_size, NULL),
                         KILN_SUCCESS, "GPU: %s", kiln_last_error());
            cr_assert_eq(cudaMemcpy(lp[1], sg.logprobs, sizeof lp[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(rk[1], sg.ranks, sizeof rk[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(tid[1], sg.top_ids, sizeof tid[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(tlp[1], sg.top_logprobs, sizeof tlp[1], cudaMemcpyDeviceToHost),
                         cudaSuccess);
            cr_assert_eq(cudaMemcpy(ent[1], sg.entropy, sizeof ent[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(val[1], sg.valid, sizeof val[1], cudaMemcpyDeviceToHost), cudaSuccess);
            for (int r = 0; r < B; ++r) {
                if (bad && r == 4) {
                    cr_assert_eq(val[1][r], 0, "a bad device target makes its row invalid");
                    cr_assert(ent[1][r] != ent[1][r] && lp[1][r * K] != lp[1][r * K]);
                    cr_assert_eq(tid[1][r * TOPN], -1);
                    continue;
                }
                cr_assert_eq(val[1][r], val[0][r], "V %lld row %d: valid", (long long)V, r);
                cr_assert_eq(memcmp(lp[0] + r * K, lp[1] + r * K, K * 4), 0, "V %lld row %d: logprobs",
                             (long long)V, r);
                cr_assert_eq(memcmp(rk[0] + r * K, rk[1] + r * K, K * 4), 0, "V %lld row %d: ranks",
                             (long long)V, r);
                cr_assert_eq(memcmp(tid[0] + r * TOPN, tid[1] + r * TOPN, TOPN * 4), 0,
                             "V %lld row %d: top ids", (long long)V, r);
                cr_assert_eq(memcmp(tlp[0] + r * TOPN, tlp[1] + r * TOPN, TOPN * 4), 0,
                             "V %lld row %d: top logprobs", (long long)V, r);
                cr_assert_eq(memcmp(ent[0] + r, ent[1] + r, 4), 0, "V %lld row %d: entropy",
                             (long long)V, r);
            }
            void *outs[] = { sg.logprobs, sg.ranks, sg.top_ids, sg.top_logprobs, sg.entropy, sg.valid };
            for (size_t i = 0; i < sizeof outs / sizeof outs[0]; ++i)
                kt_device_free(outs[i]);
            for (int i = 0; i < n_owned; ++i)
                kt_device_free(owned[i]);
        }
        free(mask);
        free_sampler(&cpu);
        free_sampler(&gpu);
        free_batch(&d);
    }
}

/* kiln_verify_drafts on the GPU (section 19): requests of the parity batch's
 * shapes and parameters (greedy, filtered, penalised through the drafts,
 * invalid target rows), K = 3 with K_b from 0 to 3, drafts drawn near the
 * targets (so some are accepted) and elsewhere, with draft probabilities and
 * one-hot, a mask per target row and a logit bias; tokens, counts,
 * log-probabilities and valid flags byte for byte the CPU's. */
Test(gpu_verify, matches_cpu, .timeout = 300)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 111, 32000 };
    for (size_t vi = 0; vi < 2; ++vi)
        for (int with_q = 0; with_q < 2; ++with_q) {
            enum { B = 12, K = 3, P = K + 1 };
            const int64_t V = vs[vi], words = (V + 31) / 32, rows = B * P;
            batch_data d = make_batch(rows, V, KILN_DTYPE_F32, 1, 701 + vi * 2 + (uint64_t)with_q);
            ks_rng rng = { 31 + vi };
            /* per request: the parameters and history of its first target row */
            int64_t hoff[B + 1];
            hoff[0] = 0;
            int32_t hids[B * 24], prompt[B], nd[B], drafts[B * K];
            float temp[B], top_p[B], min_p[B], rep[B], pres[B], freq[B];
            int32_t top_k[B];
            uint64_t seed[B], off[B];
            for (int r = 0; r < B; ++r) {
                const int64_t src = r * P;
                const int64_t len = d.hist_off[src + 1] - d.hist_off[src];
                memcpy(hids + hoff[r], d.hist_ids + d.hist_off[src], (size_t)len * 4);
                hoff[r + 1] = hoff[r] + len;
                prompt[r] = d.prompt[src];
                temp[r] = d.temperature[src];
                top_k[r] = d.top_k[src];
                top_p[r] = d.top_p[src];
                min_p[r] = d.min_p[src];
                rep[r] = d.repetition[src];
                pres[r] = d.presence[src];
                freq[r] = d.frequency[src];
                seed[r] = d.seed[src];
                off[r] = d.offset[src];
                nd[r] = r % (K + 1);
                for (int i = 0; i < K; ++i) {
                    /* every other draft the row's top token, which greedy and
                     * peaked rows accept */
                    const float *x = (const float *)d.logits + (src + i) * V;
                    int32_t best = 0;
                    for (int64_t v = 1; v < V; ++v)
                        best = x[v] > x[best] ? (int32_t)v : best;
                    drafts[r * K + i] = (i + r) % 2 ? best : (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
                }
            }
            float *q = with_q ? malloc((size_t)(B * K * V) * 4) : NULL;
            if (q)
                for (int64_t j = 0; j < B * K; ++j) {
                    double sum = 0.0;
                    for (int64_t v = 0; v < V; ++v)
                        sum += q[j * V + v] = (float)(0.05 + ks_rng_unit(&rng));
                    for (int64_t v = 0; v < V; ++v)
                        q[j * V + v] = (float)(q[j * V + v] / sum);
                }
            int32_t *mask = malloc((size_t)(rows * words) * 4);
            for (int64_t i = 0; i < rows * words; ++i)
                mask[i] = (int32_t)(uint32_t)(ks_rng_u64(&rng) | ks_rng_u64(&rng) | ks_rng_u64(&rng));
            for (int r = 0; r < B; ++r) /* the drafts stay allowed */
                for (int i = 0; i < K; ++i) {
                    const int64_t row = r * P + i, v = drafts[r * K + i];
                    mask[row * words + v / 32] |= (int32_t)(1u << (v % 32));
                }
            int64_t boff[B + 1];
            int32_t bids[B * 2];
            float bvals[B * 2];
            boff[0] = 0;
            for (int r = 0; r < B; ++r) {
                const int m = r % 3;
                for (int e = 0; e < m; ++e) {
                    bids[boff[r] + e] = (int32_t)(ks_rng_u64(&rng) % (uint64_t)V);
                    bvals[boff[r] + e] = (float)(ks_rng_unit(&rng) * 4.0 - 2.0);
                }
                boff[r + 1] = boff[r] + m;
            }
            kiln_batch b = KILN_BATCH_INIT;
            b.logits = d.logits;
            b.num_rows = B;
            b.vocab_size = V;
            b.history_offsets = hoff;
            b.history_ids = hids;
            b.prompt_lengths = prompt;
            b.allowed_mask = mask;
            b.logit_bias_offsets = boff;
            b.logit_bias_ids = bids;
            b.logit_bias_values = bvals;
            kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
            p.temperature = temp;
            p.top_k = top_k;
            p.top_p = top_p;
            p.min_p = min_p;
            p.repetition_penalty = rep;
            p.presence_penalty = pres;
            p.frequency_penalty = freq;
            p.seed = seed;
            p.offset = off;
            kiln_drafts dr = KILN_DRAFTS_INIT;
            dr.max_drafts = K;
            dr.draft_ids = drafts;
            dr.num_drafts = nd;
            dr.draft_probs = q;
            kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, rows, V, 1);
            kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, rows, V, 1);
            int32_t tok[2][B * P], acc[2][B];
            float lp[2][B * P];
            uint8_t val[2][B];
            kiln_verify_outputs vo = KILN_VERIFY_OUTPUTS_INIT;
            vo.tokens = tok[0];
            vo.num_accepted = acc[0];
            vo.logprobs = lp[0];
            vo.valid = val[0];
            cr_assert_eq(kiln_verify_drafts(cpu.sampler, &b, &p, &dr, &vo, cpu.workspace,
                                            cpu.workspace_size, NULL),
                         KILN_SUCCESS, "CPU: %s", kiln_last_error());
            void *owned[32];
            int n_owned = 0;
            kiln_batch bg = b;
            bg.logits = to_dev(d.logits, (size_t)(rows * V) * 4, owned, &n_owned);
            bg.history_offsets = to_dev(hoff, sizeof hoff, owned, &n_owned);
            bg.history_ids = to_dev(hids, (size_t)hoff[B] * 4 + 4, owned, &n_owned);
            bg.prompt_lengths = to_dev(prompt, sizeof prompt, owned, &n_owned);
            bg.allowed_mask = to_dev(mask, (size_t)(rows * words) * 4, owned, &n_owned);
            bg.logit_bias_offsets = to_dev(boff, sizeof boff, owned, &n_owned);
            bg.logit_bias_ids = to_dev(bids, sizeof bids, owned, &n_owned);
            bg.logit_bias_values = to_dev(bvals, sizeof bvals, owned, &n_owned);
            kiln_sampling_params pg = p;
            pg.temperature = to_dev(temp, sizeof temp, owned, &n_owned);
            pg.top_k = to_dev(top_k, sizeof top_k, owned, &n_owned);
            pg.top_p = to_dev(top_p, sizeof top_p, owned, &n_owned);
            pg.min_p = to_dev(min_p, sizeof min_p, owned, &n_owned);
            pg.repetition_penalty = to_dev(rep, sizeof rep, owned, &n_owned);
            pg.presence_penalty = to_dev(pres, sizeof pres, owned, &n_owned);
            pg.frequency_penalty = to_dev(freq, sizeof freq, owned, &n_owned);
            pg.seed = to_dev(seed, sizeof seed, owned, &n_owned);
            pg.offset = to_dev(off, sizeof off, owned, &n_owned);
            kiln_drafts dg = dr;
            dg.draft_ids = to_dev(drafts, sizeof drafts, owned, &n_owned);
            dg.num_drafts = to_dev(nd, sizeof nd, owned, &n_owned);
            dg.draft_probs = q ? to_dev(q, (size_t)(B * K * V) * 4, owned, &n_owned) : NULL;
            kiln_verify_outputs vg = KILN_VERIFY_OUTPUTS_INIT;
            vg.tokens = dmalloc(sizeof tok[1]);
            vg.num_accepted = dmalloc(sizeof acc[1]);
            vg.logprobs = dmalloc(sizeof lp[1]);
            vg.valid = dmalloc(sizeof val[1]);
            cr_assert_eq(kiln_verify_drafts(gpu.sampler, &bg, &pg, &dg, &vg, gpu.workspace,
                                            gpu.workspace_size, NULL),
                         KILN_SUCCESS, "GPU: %s", kiln_last_error());
            cr_assert_eq(cudaMemcpy(tok[1], vg.tokens, sizeof tok[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(acc[1], vg.num_accepted, sizeof acc[1], cudaMemcpyDeviceToHost),
                         cudaSuccess);
            cr_assert_eq(cudaMemcpy(lp[1], vg.logprobs, sizeof lp[1], cudaMemcpyDeviceToHost), cudaSuccess);
            cr_assert_eq(cudaMemcpy(val[1], vg.valid, sizeof val[1], cudaMemcpyDeviceToHost), cudaSuccess);
            int accepted = 0;
            for (int r = 0; r < B; ++r) {
                accepted += acc[0][r];
                cr_assert(val[0][r] == val[1][r] && acc[0][r] == acc[1][r] &&
                              !memcmp(tok[0] + r * P, tok[1] + r * P, P * 4) &&
                              !memcmp(lp[0] + r * P, lp[1] + r * P, P * 4),
                          "V %lld q %d request %d: CPU (valid %d, accepted %d, first token %d), GPU "
                          "(valid %d, accepted %d, first token %d)",
                          (long long)V, with_q, r, val[0][r], acc[0][r], tok[0][r * P], val[1][r],
                          acc[1][r], tok[1][r * P]);
            }
            cr_assert_gt(accepted, 0, "no draft was accepted: the case does not reach the accept path");
            kt_device_free(vg.tokens);
            kt_device_free(vg.num_accepted);
            kt_device_free(vg.logprobs);
            kt_device_free(vg.valid);
            for (int i = 0; i < n_owned; ++i)
                kt_device_free(owned[i]);
            free(q);
            free(mask);
            free_sampler(&cpu);
            free_sampler(&gpu);
            free_batch(&d);
        }
}

/* The top-N at its limit (N = 1024) on the GPU: heavy ties across several
 * 256-token tiles (integer logits), N at and around V, rows mostly masked
 * to -inf, a row of +-0, and the raw ranks of three draws (repeats
 * likely); every top-N id and log-probability, rank and token the CPU's. */
Test(gpu_outputs, top_n_at_the_limit_with_ties, .timeout = 300)
{
    KT_REQUIRE_GPU();
    static const int64_t vs[] = { 1000, 1024, 1025, 4097 };
    enum { B = 5, N = 1024, n = 3 };
    const size_t nv = small_grid() ? 2 : 4;
    for (size_t vi = 0; vi < nv; ++vi) {
        const int64_t V = vs[vi], words = (V + 31) / 32;
        float *x = malloc((size_t)(B * V) * 4);
        int32_t *mask = malloc((size_t)(B * words) * 4);
        ks_rng rng = { 900 + vi };
        for (int64_t r = 0; r < B; ++r)
            for (int64_t i = 0; i < V; ++i)
                x[r * V + i] = r == 3 ? (i % 2 ? 0.0f : -0.0f)
                             : r == 4 ? (float)(ks_rng_unit(&rng) * 8.0 - 4.0)
                                      : (float)((int)(ks_rng_u64(&rng) % 7) - 3);
        for (int64_t i = 0; i < B * words; ++i)
            mask[i] = i / words == 2 ? (int32_t)(uint32_t)(ks_rng_u64(&rng) & ks_rng_u64(&rng) &
                                                          ks_rng_u64(&rng))
                                     : -1;
        kiln_config cfg = KILN_CONFIG_INIT;
        cfg.max_batch = B;
        cfg.max_vocab = V;
        cfg.max_samples = n;
        cfg.max_top_logprobs = N;
        kt_sampler sm[2];
        for (int k = 0; k < 2; ++k) {
            cfg.backend = k ? KILN_BACKEND_CUDA : KILN_BACKEND_CPU;
            sm[k].backend = cfg.backend;
            cr_assert_eq(kiln_sampler_create(&cfg, &sm[k].sampler), KILN_SUCCESS, "%s", kiln_last_error());
            cr_assert_eq(kiln_sampler_workspace_size(sm[k].sampler, &sm[k].workspace_size), KILN_SUCCESS);
            sm[k].workspace = k ? dmalloc(sm[k].workspace_size) : malloc(sm[k].workspace_size);
        }
        const size_t tops = (size_t)(B * N) * 4, draws = (size_t)(B * n) * 4;
        void *host[2][7];
        for (int k = 0; k < 2; ++k)
            for (int j = 0; j < 7; ++j)
                host[k][j] = malloc(j < 4 ? tops : draws);
        void *dev[7];
        for (int j = 0; j < 7; ++j)
            dev[j] = dmalloc(j < 4 ? tops : draws);
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        p.temperature_all = 0.8f;
        p.top_p_all = 0.97f;
        p.seed_all = 5;
        for (int k = 0; k < 2; ++k) {
            void *const *o = k ? dev : host[0];
            void *owned[4];
            int n_owned = 0;
            kiln_batch b = kt_batch_f32(x, B, V, n);
            b.allowed_mask = mask;
            if (k) {
                b.logits = to_dev(x, (size_t)(B * V) * 4, owned, &n_owned);
                b.allowed_mask = to_dev(mask, (size_t)(B * words) * 4, owned, &n_owned);
            }
            kiln_outputs out = KILN_OUTPUTS_INIT;
            out.num_top_logprobs = N;
            out.raw_top_ids = o[0];
            out.raw_top_logprobs = o[1];
            out.final_top_ids = o[2];
            out.final_top_logprobs = o[3];
            out.tokens = o[4];
            out.raw_ranks = o[5];
            out.logprobs = o[6];
            cr_assert_eq(kiln_sample(sm[k].sampler, &b, &p, &out, sm[k].workspace,
                                     sm[k].workspace_size, NULL),
                         KILN_SUCCESS, "%s: %s", k ? "GPU" : "CPU", kiln_last_error());
            for (int i = 0; i < n_owned; ++i)
                kt_device_free(owned[i]);
        }
        for (int j = 0; j < 7; ++j)
            cr_assert_eq(cudaMemcpy(host[1][j], dev[j], j < 4 ? tops : draws, cudaMemcpyDeviceToHost),
                         cudaSuccess);
        static const char *names[7] = { "raw top ids", "raw top logprobs", "final top ids",
                                        "final top logprobs", "tokens", "raw ranks", "logprobs" };
        for (int j = 0; j < 7; ++j)
            cr_assert_eq(memcmp(host[0][j], host[1][j], j < 4 ? tops : draws), 0, "V %lld: %s differ",
                         (long long)V, names[j]);
        for (int k = 0; k < 2; ++k) {
            for (int j = 0; j < 7; ++j)
                free(host[k][j]);
            kiln_sampler_destroy(sm[k].sampler);
        }
        free(sm[0].workspace);
        kt_device_free(sm[1].workspace);
        for (int j = 0; j < 7; ++j)
            kt_device_free(dev[j]);
        free(x);
        free(mask);
    }
}

Test(gpu_graph, capture_and_replay_with_new_parameters, .timeout = 300)
{
    KT_REQUIRE_GPU();
    graph_case(KILN_ALGORITHM_AUTO, 0, 0);
}

/* cudaLaunchKernelEx with a cluster dimension, captured and replayed. */
Test(gpu_graph, cluster_capture_and_replay, .timeout = 300)
{
    KT_REQUIRE_GPU();
    graph_case(KILN_ALGORITHM_AUTO, 0, 1);
}

Test(gpu_graph, sort_in_chunks_capture_and_replay, .timeout = 300)
{
    KT_REQUIRE_GPU();
    graph_case(KILN_ALGORITHM_SORT, 16, 0); /* 4 CUB calls inside the graph */
}

/* ----------------------------------------------------------- concurrency */

/* Two host threads, each with its own sampler and its own non-blocking
 * stream, sampling at once (a barrier starts them together; nothing in the
 * loop touches the NULL stream or synchronises the device); every result
 * must equal the CPU's. */
typedef struct worker {
    batch_data *data;
    kt_result *expect;
    pthread_barrier_t *start;
    int ok;
    char msg[320];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_batch = w->data->rows;
    cfg.max_vocab = w->data->vocab;
    cfg.max_samples = w->data->n;
    cfg.max_history = 64;
    kiln_sampler *s = NULL;
    cudaStream_t stream = NULL;
    size_t bytes = 0;
    void *ws = NULL;
    cudaError_t err = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    kiln_status st = kiln_sampler_create(&cfg, &s);
    if (st == KILN_SUCCESS)
        st = kiln_sampler_workspace_size(s, &bytes);
    if (err == cudaSuccess && st == KILN_SUCCESS)
        err = cudaMalloc(&ws, bytes ? bytes : 1);
    w->ok = err == cudaSuccess && st == KILN_SUCCESS;
    if (!w->ok)
        snprintf(w->msg, sizeof w->msg, "setup: %s / %s (%s)", kiln_status_string(st),
                 cudaGetErrorString(err), kiln_last_error());
    kt_sampler ks = { s, ws, bytes, KILN_BACKEND_CUDA };
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(w->data, &b, &p);
    kt_result r = kt_result_alloc(w->data->rows, w->data->vocab, w->data->n);
    pthread_barrier_wait(w->start);
    for (int it = 0; it < 10 && w->ok; ++it) {
        kt_result_poison(&r);
        st = kt_sample_device_on(&ks, &b, &p, &r, (kiln_stream)stream);
        if (st != KILN_SUCCESS) {
            snprintf(w->msg, sizeof w->msg, "call %d: %s: %s", it, kiln_status_string(st),
                     kt_error());
            w->ok = 0;
        } else if (!kt_result_equal(&r, w->expect)) {
            first_difference(&r, w->expect, 0, w->msg, sizeof w->msg);
            w->ok = 0;
        }
    }
    kt_result_free(&r);
    if (ws)
        cudaFree(ws);
    if (stream)
        cudaStreamDestroy(stream);
    kiln_sampler_destroy(s);
    return NULL;
}

Test(gpu_concurrency, two_threads_two_samplers, .timeout = 300)
{
    KT_REQUIRE_GPU();
    batch_data d[2] = { make_batch(33, 20000, KILN_DTYPE_F32, 2, 1),
                        make_batch(17, 50000, KILN_DTYPE_BF16, 2, 2) };
    kt_result expect[2];
    worker w[2];
    pthread_t t[2];
    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, 2), 0);
    for (int i = 0; i < 2; ++i) {
        kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, d[i].rows, d[i].vocab, d[i].n);
        kiln_batch b;
        kiln_sampling_params p;
        batch_views(&d[i], &b, &p);
        expect[i] = kt_result_alloc(d[i].rows, d[i].vocab, d[i].n);
        cr_assert_eq(kt_sample(&cpu, &b, &p, &expect[i]), KILN_SUCCESS);
        free_sampler(&cpu);
        w[i].data = &d[i];
        w[i].expect = &expect[i];
        w[i].start = &start;
        w[i].msg[0] = 0;
    }
    for (int i = 0; i < 2; ++i)
        cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < 2; ++i)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; ++i) {
        cr_assert(w[i].ok, "thread %d: %s", i, w[i].msg);
        kt_result_free(&expect[i]);
        free_batch(&d[i]);
    }
}

/* A bad value in a device-resident parameter array cannot fail the call (the
 * host cannot see it); the row comes back invalid and its neighbours are
 * untouched. */
Test(gpu_validation, bad_device_parameters_make_rows_invalid, .timeout = 120)
{
    KT_REQUIRE_GPU();
    batch_data d = make_batch(10, 3000, KILN_DTYPE_F32, 2, 5);
    /* make every row valid first (no NaN/inf shapes) */
    for (int64_t b = 0; b < d.rows; ++b)
        ks_zipf((float *)d.logits + b * d.vocab, d.vocab, 70 + b);
    kiln_batch b;
    kiln_sampling_params p;
    batch_views(&d, &b, &p);
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, d.rows, d.vocab, d.n);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, d.rows, d.vocab, d.n);
    kt_result rc = kt_result_alloc(d.rows, d.vocab, d.n), rg = kt_result_alloc(d.rows, d.vocab, d.n);
    cr_assert_eq(kt_sample(&cpu, &b, &p, &rc), KILN_SUCCESS);
    d.top_p[3] = 1.5f;
    d.temperature[5] = NAN;
    d.hist_ids[d.hist_off[7]] = (int32_t)d.vocab; /* row 7 has a history (7 % 3 == 1) */
    cr_assert_eq(kt_sample_device(&gpu, &b, &p, &rg), KILN_SUCCESS, "%s", kt_error());
    for (int64_t r = 0; r < d.rows; ++r) {
        if (r == 3 || r == 5 || r == 7) {
            cr_assert_eq(rg.valid[r], 0, "row %lld should be invalid", (long long)r);
            cr_assert_eq(rg.tokens[r * d.n], -1);
            cr_assert_eq(rg.kept[r], 0);
        } else {
            cr_assert(kt_row_equal(&rg, r, &rc, r), "row %lld disturbed by a bad neighbour",
                      (long long)r);
        }
    }
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
    free_batch(&d);
}

/* Row offsets past 2^31 elements: a strided view whose rows sit 2^30 + 7
 * half-precision elements apart (about 4.3 GB). */
Test(gpu_indexing, row_offsets_beyond_32_bits, .timeout = 300)
{
    KT_REQUIRE_GPU();
    const int64_t V = 1000, stride = ((int64_t)1 << 30) + 7, B = 3;
    const size_t elems = (size_t)((B - 1) * stride + V);
    uint16_t *d_logits = kt_device_alloc(elems * 2);
    if (!d_logits)
        KT_GPU_UNAVAILABLE("cannot allocate %zu bytes on the device", elems * 2);
    float x[1000];
    uint16_t h[1000];
    kt_result rc = kt_result_alloc(B, V, 1), rg = kt_result_alloc(B, V, 1);
    uint16_t *packed = malloc((size_t)(B * V) * 2);
    for (int64_t b = 0; b < B; ++b) {
        ks_zipf(x, V, 900 + b);
        for (int64_t i = 0; i < V; ++i)
            h[i] = f32_to_bf16(x[i]);
        memcpy(packed + b * V, h, sizeof h);
        CUDA_OK(cudaMemcpy(d_logits + b * stride, h, sizeof h, cudaMemcpyHostToDevice));
    }
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, 1);
    kiln_batch bp = KILN_BATCH_INIT;
    bp.dtype = KILN_DTYPE_BF16;
    bp.logits = packed;
    bp.num_rows = B;
    bp.vocab_size = V;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.top_k_all = 20;
    p.seed_all = 3;
    cr_assert_eq(kt_sample(&cpu, &bp, &p, &rc), KILN_SUCCESS);

    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, 1);
    kiln_batch bg = bp;
    bg.logits = d_logits;
    bg.row_stride = stride;
    int32_t *d_tok = dmalloc((size_t)B * 4);
    float *d_probs = dmalloc((size_t)(B * V) * 4);
    CUDA_OK(cudaMemset(d_tok, 0xA5, (size_t)B * 4));
    CUDA_OK(cudaMemset(d_probs, 0xA5, (size_t)(B * V) * 4));
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = d_tok;
    o.probs = d_probs;
    cr_assert_eq(kiln_sample(gpu.sampler, &bg, &p, &o, gpu.workspace, gpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaMemcpy(rg.tokens, d_tok, (size_t)B * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.probs, d_probs, (size_t)(B * V) * 4, cudaMemcpyDeviceToHost));
    cr_assert(memcmp(rg.tokens, rc.tokens, (size_t)B * 4) == 0);
    cr_assert(memcmp(rg.probs, rc.probs, (size_t)(B * V) * 4) == 0);
    kt_device_free(d_logits);
    kt_device_free(d_tok);
    kt_device_free(d_probs);
    free(packed);
    kt_result_free(&rc);
    kt_result_free(&rg);
    free_sampler(&cpu);
    free_sampler(&gpu);
}

Test(gpu_best_of_n, matches_cpu)
{
    KT_REQUIRE_GPU();
    const int64_t G = 1000;
    const int32_t n = 5;
    float scores[5000];
    ks_rng rng = { 4 };
    for (int i = 0; i < G * n; ++i) {
        scores[i] = (float)(ks_rng_u64(&rng) % 7);
        if (i % 13 == 0)
            scores[i] = NAN;
    }
    for (int i = 0; i < n; ++i)
        scores[i] = NAN; /* an all-NaN group */
    kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, 1, 1, 1);
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, 1, 1, 1);
    int32_t want[1000], got[1000];
    cr_assert_eq(kiln_best_of_n(cpu.sampler, scores, G, n, want, NULL), KILN_SUCCESS);
    float *d_scores = dmalloc(sizeof scores);
    int32_t *d_best = dmalloc(sizeof got);
    CUDA_OK(cudaMemcpy(d_scores, scores, sizeof scores, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(d_best, 0xA5, sizeof got));
    cr_assert_eq(kiln_best_of_n(gpu.sampler, d_scores, G, n, d_best, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaMemcpy(got, d_best, sizeof got, cudaMemcpyDeviceToHost));
    cr_assert(memcmp(got, want, sizeof got) == 0);
    cr_assert_eq(got[0], -1);
    kt_device_free(d_scores);
    kt_device_free(d_best);
    free_sampler(&cpu);
    free_sampler(&gpu);
}

#endif /* KILN_TEST_HAVE_CUDART */

/* -------------------------------------------------------------- draws */

#ifdef KILN_TEST_HAVE_CUDA_KERNELS
/* libkiln's real draw kernel against cuRAND's device API. A row of
 * V = 65536 equal logits gives every token mass 2^40 and S = 2^56, so
 * (docs/semantics.md section 7) r = floor(u * 2^56 / 2^64) = u >> 8 and the
 * drawn token, the first whose inclusive prefix (t + 1) * 2^40 exceeds r,
 * is t = r >> 40 = u >> 48: each token shows the top 16 bits of the draw's
 * 64-bit u. That u is computed here by curand_init/curand in the test's own
 * kernel (tests/gpu/curand_reference.cu) for every (seed, offset, draw
 * index), over offsets that cross every lane and carry boundary, offsets
 * >= 2^63 and draw indices (subsequences) up to 2^17 - 1; the host's
 * kiln_philox_draw64 (the CPU backend's) must give the whole u, and the CPU
 * backend the same tokens. */
static void draws_case(int64_t B, int32_t n, uint64_t seed0, int check_cpu)
{
    const int64_t V = 65536;
    static const uint64_t special[] = {
        0, 1, 2, 3, 4, 5, 7, 8,
        0x7FFFFFFFull, 0x80000000ull, 0xFFFFFFFFull, 0x100000000ull, 0x100000001ull,
        0x3FFFFFFFFFFFFFFFull, 0x4000000000000000ull,
        0x7FFFFFFFFFFFFFFEull, 0x7FFFFFFFFFFFFFFFull, 0x8000000000000000ull,
        0x8000000000000001ull, 0x8000000000000002ull, 0x8000000000000003ull,
        0xC000000000000000ull, 0xFFFFFFFFFFFFFFFCull, 0xFFFFFFFFFFFFFFFDull,
        0xFFFFFFFFFFFFFFFEull, 0xFFFFFFFFFFFFFFFFull,
    };
    const int n_special = (int)(sizeof special / sizeof special[0]);
    uint64_t *seeds = malloc((size_t)B * 8), *offsets = malloc((size_t)B * 8);
    ks_rng rng = { seed0 };
    for (int64_t b = 0; b < B; ++b) {
        const uint64_t r1 = ks_rng_u64(&rng), r2 = ks_rng_u64(&rng);
        seeds[b] = b == 0 ? 0 : b == 1 ? ~(uint64_t)0 : b == 2 ? 1 : r1;
        offsets[b] = b < n_special                ? special[b]
                     : b < 2 * n_special          ? special[b - n_special]
                     : b % 3 == 0                 ? r2 | ((uint64_t)1 << 63)
                     : b % 3 == 1                 ? r2 >> 1
                                                  : r2 >> 40;
    }
    float *x = calloc((size_t)(B * V), 4); /* all 0.0f: every token equal */
    kt_sampler gpu = make_sampler(KILN_BACKEND_CUDA, B, V, n);
    float *d_logits = dmalloc((size_t)(B * V) * 4);
    uint64_t *d_seed = dmalloc((size_t)B * 8), *d_offset = dmalloc((size_t)B * 8);
    const size_t draws = (size_t)(B * n);
    int32_t *d_tokens = dmalloc(draws * 4), *d_kept = dmalloc((size_t)B * 4);
    uint8_t *d_valid = dmalloc((size_t)B);
    CUDA_OK(cudaMemcpy(d_logits, x, (size_t)(B * V) * 4, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_seed, seeds, (size_t)B * 8, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemcpy(d_offset, offsets, (size_t)B * 8, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(d_tokens, 0xA5, draws * 4));
    CUDA_OK(cudaMemset(d_kept, 0xA5, (size_t)B * 4));
    CUDA_OK(cudaMemset(d_valid, 0xA5, (size_t)B));
    kiln_batch bt = kt_batch_f32(d_logits, B, V, n);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT; /* T = 1, no filter */
    p.seed = d_seed;
    p.offset = d_offset;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = d_tokens;
    o.kept_counts = d_kept;
    o.valid = d_valid;
    cr_assert_eq(kiln_sample(gpu.sampler, &bt, &p, &o, gpu.workspace, gpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());
    int32_t *tokens = malloc(draws * 4), *kept = malloc((size_t)B * 4);
    uint8_t *valid = malloc((size_t)B);
    CUDA_OK(cudaMemcpy(tokens, d_tokens, draws * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(kept, d_kept, (size_t)B * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(valid, d_valid, (size_t)B, cudaMemcpyDeviceToHost));

    uint64_t *rs = malloc(draws * 8), *ro = malloc(draws * 8), *rj = malloc(draws * 8),
             *u = malloc(draws * 8);
    for (int64_t b = 0; b < B; ++b)
        for (int32_t j = 0; j < n; ++j) {
            rs[b * n + j] = seeds[b];
            ro[b * n + j] = offsets[b];
            rj[b * n + j] = (uint64_t)j;
        }
    cr_assert_eq(kt_curand_draw_u64(rs, ro, rj, (int)draws, u), 0, "the cuRAND reference kernel");
    for (int64_t b = 0; b < B; ++b) {
        cr_assert_eq(valid[b], 1, "row %lld: valid %d", (long long)b, valid[b]);
        cr_assert_eq(kept[b], (int32_t)V, "row %lld: kept %d", (long long)b, kept[b]);
        for (int32_t j = 0; j < n; ++j) {
            const size_t i = (size_t)(b * n + j);
            cr_assert_eq((int64_t)tokens[i], (int64_t)(u[i] >> 48),
                         "seed %016llx offset %016llx draw %d: libkiln drew token %d, cuRAND's "
                         "u = %016llx gives %d",
                         (unsigned long long)seeds[b], (unsigned long long)offsets[b], (int)j,
                         (int)tokens[i], (unsigned long long)u[i], (int)(u[i] >> 48));
            cr_assert_eq(kiln_philox_draw64(seeds[b], (uint64_t)j, offsets[b]), u[i],
                         "seed %016llx offset %016llx draw %d: host Philox %016llx, cuRAND %016llx",
                         (unsigned long long)seeds[b], (unsigned long long)offsets[b], (int)j,
                         (unsigned long long)kiln_philox_draw64(seeds[b], (uint64_t)j, offsets[b]),
                         (unsigned long long)u[i]);
        }
    }
    if (check_cpu) {
        kt_sampler cpu = make_sampler(KILN_BACKEND_CPU, B, V, n);
        kiln_batch hb = kt_batch_f32(x, B, V, n);
        kiln_sampling_params hp = KILN_SAMPLING_PARAMS_INIT;
        hp.seed = seeds;
        hp.offset = offsets;
        kt_result rc = kt_result_alloc(B, V, n);
        cr_assert_eq(kt_sample(&cpu, &hb, &hp, &rc), KILN_SUCCESS, "%s", kt_error());
        cr_assert(memcmp(rc.tokens, tokens, draws * 4) == 0, "the CPU backend drew other tokens");
        kt_result_free(&rc);
        free_sampler(&cpu);
    }
    fprintf(stderr, "gpu_philox: %lld rows x %d draws: every token == cuRAND's u >> 48\n",
            (long long)B, (int)n);
    void *dev[] = { d_logits, d_seed, d_offset, d_tokens, d_kept, d_valid };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i)
        kt_device_free(dev[i]);
    void *host[] = { seeds, offsets, x, tokens, kept, valid, rs, ro, rj, u };
    for (size_t i = 0; i < sizeof host / sizeof host[0]; ++i)
        free(host[i]);
    free_sampler(&gpu);
}

Test(gpu_philox, draws_match_curand_device_api, .timeout = 300)
{
    KT_REQUIRE_GPU();
    const char *g = getenv("KILN_GPU_GRID"); /* small: under compute-sanitizer */
    const int small = g && strcmp(g, "small") == 0;
    draws_case(small ? 64 : 256, 16, 11, 1);     /* many seeds and offsets */
    draws_case(3, small ? 8192 : 131072, 12, 0); /* draw indices up to 2^17 - 1 */
}

/* The shared header's Philox (the CPU backend's) compiled by nvcc and run on
 * the device equals cuRAND's curand_init(seed, subsequence, 2 * draw). */
Test(gpu_philox, shared_header_matches_curand_device_api)
{
    KT_REQUIRE_GPU();
    enum { N = 4096 };
    static uint64_t seeds[N], subs[N], draws[N], offsets[N], want[N], got[N];
    ks_rng rng = { 11 };
    for (int i = 0; i < N; ++i) {
        seeds[i] = i < 8 ? (uint64_t)i : ks_rng_u64(&rng);
        subs[i] = i % 3 == 0 ? (uint64_t)(i % 17) : ks_rng_u64(&rng);
        draws[i] = i % 5 == 0 ? (uint64_t)(i % 9) : ks_rng_u64(&rng) >> 2;
        offsets[i] = 2 * draws[i];
    }
    cr_assert_eq(kt_curand_pairs(seeds, subs, offsets, N, want), 0);
    cr_assert_eq(kt_kiln_device_draws(seeds, subs, draws, N, got), 0);
    for (int i = 0; i < N; ++i) {
        cr_assert_eq(got[i], want[i], "seed %llu subsequence %llu draw %llu: kiln %016llx, cuRAND %016llx",
                     (unsigned long long)seeds[i], (unsigned long long)subs[i],
                     (unsigned long long)draws[i], (unsigned long long)got[i],
                     (unsigned long long)want[i]);
        cr_assert_eq(kiln_philox_draw64(seeds[i], subs[i], draws[i]), want[i],
                     "host and device disagree");
    }
}
#endif
