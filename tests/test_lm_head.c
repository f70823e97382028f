/* kiln_sample_hidden: the LM head's logits, their sampling, and bad input.
 *
 * What is checked, and how honestly:
 *  - CPU logits equal, bit for bit, an independent re-implementation here of
 *    the documented summation order (8 lanes over h, fixed tree, + bias,
 *    bf16 rounded to nearest even), and lie within a stated error bound of
 *    a double-precision reference (f32, f16, bf16 inputs; f32, bf16 logits).
 *  - The logits are read back from the workspace (white box: the layout in
 *    csrc/sampler.h), and kiln_sample on a copy of them returns the same
 *    bytes as kiln_sample_hidden: the sampling contract holds unchanged.
 *  - Same bytes for 1, 2 and 3 threads and across repeated calls.
 *  - Every bad input fails with its status and a message naming the field.
 *  - GPU (skipped without a device): GPU logits within a bound of the CPU
 *    GEMM; CPU and GPU sample the same logits to the same bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "device.h"
#include "harness.h"
#include "sampler.h"
#include "shared/numerics.h"

#ifdef KILN_TEST_HAVE_CUDART
#include <cuda_runtime_api.h>
#endif

/* ----------------------------------------------------------------- data */

static uint16_t to_bf16(float f)
{
    return kiln_f32_to_bf16(f);
}

static uint16_t to_f16(float f) /* round to nearest even, normal range only */
{
    uint32_t u = kiln_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    int e = (int)((u >> 23) & 0xFFu) - 127 + 15;
    uint32_t man = u & 0x7FFFFFu;
    if ((u & 0x7FFFFFFFu) == 0 || e <= 0)
        return (uint16_t)sign; /* test data never goes subnormal in f16 */
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

/* Inputs of one dtype, with their exact f32 values alongside. */
typedef struct head_data {
    kiln_dtype dtype;
    int64_t rows, vocab, H, stride;
    void *hidden, *weight; /* in `dtype` */
    float *hidden_f, *weight_f, *bias;
} head_data;

static float uniform(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static head_data make_data(kiln_dtype dtype, int64_t rows, int64_t vocab, int64_t H,
                           int64_t stride, int with_bias, uint64_t seed)
{
    head_data d;
    d.dtype = dtype;
    d.rows = rows;
    d.vocab = vocab;
    d.H = H;
    d.stride = stride ? stride : H;
    const size_t es = dtype == KILN_DTYPE_F32 ? 4 : 2;
    const size_t nh = (size_t)(rows * d.stride), nw = (size_t)(vocab * H);
    d.hidden = calloc(nh, es);
    d.weight = calloc(nw, es);
    d.hidden_f = calloc(nh, 4);
    d.weight_f = calloc(nw, 4);
    d.bias = with_bias ? calloc((size_t)vocab, 4) : NULL;
    uint64_t st = seed;
    for (size_t i = 0; i < nh + nw; ++i) {
        float v = uniform(&st) * (i < nh ? 2.0f : 0.05f);
        float *f = i < nh ? &d.hidden_f[i] : &d.weight_f[i - nh];
        void *raw = i < nh ? d.hidden : d.weight;
        size_t j = i < nh ? i : i - nh;
        if (dtype == KILN_DTYPE_F32) {
            ((float *)raw)[j] = v;
            *f = v;
        } else if (dtype == KILN_DTYPE_BF16) {
            ((uint16_t *)raw)[j] = to_bf16(v);
            *f = kiln_bf16_to_f32(((uint16_t *)raw)[j]);
        } else {
            ((uint16_t *)raw)[j] = to_f16(v);
            *f = kiln_f16_to_f32(((uint16_t *)raw)[j]);
        }
    }
    for (int64_t v = 0; with_bias && v < vocab; ++v)
        d.bias[v] = uniform(&st);
    return d;
}

static void free_data(head_data *d)
{
    free(d->hidden);
    free(d->weight);
    free(d->hidden_f);
    free(d->weight_f);
    free(d->bias);
}

static kiln_lm_head head_of(const head_data *d, kiln_dtype logits_dtype)
{
    kiln_lm_head h = KILN_LM_HEAD_INIT;
    h.dtype = d->dtype;
    h.hidden = d->hidden;
    h.hidden_size = d->H;
    h.hidden_stride = d->stride;
    h.weight = d->weight;
    h.bias = d->bias;
    h.logits_dtype = logits_dtype;
    return h;
}

/* The documented CPU order, written independently of cpu_lm_head.c. */
static float fixed_order_logit(const head_data *d, int64_t b, int64_t v)
{
    float p[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
    for (int64_t h = 0; h < d->H; ++h) {
        float prod = d->hidden_f[b * d->stride + h] * d->weight_f[v * d->H + h];
        p[h % 8] = p[h % 8] + prod;
    }
    float y = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    return d->bias ? y + d->bias[v] : y;
}

/* Exact-ish reference and the magnitude the error bound scales with. */
static double ref_logit(const head_data *d, int64_t b, int64_t v, double *abs_sum)
{
    double s = 0, a = 0;
    for (int64_t h = 0; h < d->H; ++h) {
        double prod = (double)d->hidden_f[b * d->stride + h] * (double)d->weight_f[v * d->H + h];
        s += prod;
        a += fabs(prod);
    }
    if (d->bias) {
        s += d->bias[v];
        a += fabs(d->bias[v]);
    }
    *abs_sum = a;
    return s;
}

/* ------------------------------------------------------------- samplers */

typedef struct hs {
    kiln_sampler *sampler;
    void *workspace;
    size_t workspace_size;
} hs;

static hs cpu_hidden_sampler(int64_t rows, int64_t vocab, int64_t max_hidden, int threads)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = rows;
    cfg.max_vocab = vocab;
    cfg.max_samples = 4;
    cfg.max_history = 8;
    cfg.num_threads = threads;
    cfg.max_hidden = max_hidden;
    hs s;
    cr_assert_eq(kiln_sampler_create(&cfg, &s.sampler), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_eq(kiln_sampler_workspace_size(s.sampler, &s.workspace_size), KILN_SUCCESS);
    s.workspace = malloc(s.workspace_size);
    cr_assert_not_null(s.workspace);
    return s;
}

static void hs_destroy(hs *s)
{
    kiln_sampler_destroy(s->sampler);
    free(s->workspace);
}

/* Where kiln_sample_hidden left the logits (csrc/sampler.h's layout). */
static const void *workspace_logits(const hs *s, int64_t max_batch, int64_t max_vocab,
                                    kiln_dtype logits_dtype)
{
    char *base = kiln_workspace_base(s->workspace);
    if (logits_dtype == KILN_DTYPE_F32)
        return base;
    return base + kiln_round_up_align((size_t)max_batch * (size_t)max_vocab * 4);
}

static float logit_at(const void *logits, kiln_dtype dt, size_t i)
{
    return dt == KILN_DTYPE_F32 ? ((const float *)logits)[i]
                                : kiln_bf16_to_f32(((const uint16_t *)logits)[i]);
}

static kiln_batch hidden_batch(int64_t rows, int64_t vocab, int32_t n)
{
    kiln_batch b = KILN_BATCH_INIT;
    b.num_rows = rows;
    b.vocab_size = vocab;
    b.num_samples = n;
    return b;
}

static kiln_sampling_params some_params(void)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = 0.8f;
    p.top_k_all = 40;
    p.top_p_all = 0.9f;
    p.min_p_all = 0.01f;
    p.seed_all = 1234;
    p.offset_all = 7;
    return p;
}

/* ---------------------------------------------------------------- tests */

/* The bound: lane sums of H/8 terms, a 3-level tree and the bias add give
 * (H/8 + 4) roundings of at most 2^-24 relative to the sum of |terms|; f32
 * inputs add one rounding per product. bf16 logits add half a bf16 ulp,
 * 2^-8 of |logit|. */
static double cpu_bound(int64_t H, double abs_sum, double ref, kiln_dtype logits_dtype)
{
    double t = ((double)(H / 8) + 6.0) * ldexp(1.0, -24) * abs_sum;
    if (logits_dtype == KILN_DTYPE_BF16)
        t += ldexp(1.0, -8) * (fabs(ref) + t);
    return t;
}

static void check_cpu_logits(kiln_dtype dtype, kiln_dtype ldt, int64_t rows, int64_t vocab,
                             int64_t H, int64_t stride, int bias)
{
    head_data d = make_data(dtype, rows, vocab, H, stride, bias, 99 + (uint64_t)dtype * 7 + H);
    hs s = cpu_hidden_sampler(rows, vocab, H, 2);
    kiln_lm_head h = head_of(&d, ldt);
    kiln_batch b = hidden_batch(rows, vocab, 2);
    kiln_sampling_params p = some_params();
    kt_result r = kt_result_alloc(rows, vocab, 2);
    kiln_outputs o = kt_outputs(&r);
    kiln_status st = kiln_sample_hidden(s.sampler, &h, &b, &p, &o, s.workspace, s.workspace_size,
                                        NULL);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample_hidden: %s", kiln_last_error());
    const void *lg = workspace_logits(&s, rows, vocab, ldt);
    double worst = 0;
    for (int64_t bb = 0; bb < rows; ++bb)
        for (int64_t v = 0; v < vocab; ++v) {
            size_t i = (size_t)(bb * vocab + v);
            float got = logit_at(lg, ldt, i);
            float fixed = fixed_order_logit(&d, bb, v);
            uint32_t want_bits = ldt == KILN_DTYPE_BF16 ? (uint32_t)to_bf16(fixed) << 16
                                                        : kiln_f32_bits(fixed);
            cr_assert_eq(kiln_f32_bits(got), want_bits,
                         "row %lld token %lld: %a, the documented order gives %a", (long long)bb,
                         (long long)v, (double)got, (double)kiln_f32_from_bits(want_bits));
            double a;
            double ref = ref_logit(&d, bb, v, &a);
            double err = fabs((double)got - ref), tol = cpu_bound(H, a, ref, ldt);
            cr_assert(err <= tol, "row %lld token %lld: %.9g vs reference %.12g (error %.3g > %.3g)",
                      (long long)bb, (long long)v, (double)got, ref, err, tol);
            if (a > 0 && err / a > worst)
                worst = err / a;
        }

    /* kiln_sample on the same logits: the same bytes. */
    size_t bytes = (size_t)(rows * vocab) * (ldt == KILN_DTYPE_F32 ? 4 : 2);
    void *copy = malloc(bytes);
    memcpy(copy, lg, bytes);
    hs plain = cpu_hidden_sampler(rows, vocab, 0, 2);
    kiln_batch pb = hidden_batch(rows, vocab, 2);
    pb.logits = copy;
    pb.dtype = ldt;
    kt_result r2 = kt_result_alloc(rows, vocab, 2);
    kiln_outputs o2 = kt_outputs(&r2);
    st = kiln_sample(plain.sampler, &pb, &p, &o2, plain.workspace, plain.workspace_size, NULL);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample: %s", kiln_last_error());
    cr_assert(kt_result_equal(&r, &r2), "kiln_sample_hidden and kiln_sample on its logits differ");
    kt_result_free(&r);
    kt_result_free(&r2);
    free(copy);
    hs_destroy(&plain);
    hs_destroy(&s);
    free_data(&d);
}

Test(lm_head, cpu_f32_inputs_f32_logits)
{
    check_cpu_logits(KILN_DTYPE_F32, KILN_DTYPE_F32, 5, 333, 1000, 0, 1);
}

Test(lm_head, cpu_f32_inputs_bf16_logits)
{
    check_cpu_logits(KILN_DTYPE_F32, KILN_DTYPE_BF16, 3, 257, 515, 530, 0);
}

Test(lm_head, cpu_f16_inputs)
{
    check_cpu_logits(KILN_DTYPE_F16, KILN_DTYPE_F32, 7, 111, 777, 0, 1);
    check_cpu_logits(KILN_DTYPE_F16, KILN_DTYPE_BF16, 2, 40, 9, 0, 1);
}

Test(lm_head, cpu_bf16_inputs)
{
    check_cpu_logits(KILN_DTYPE_BF16, KILN_DTYPE_F32, 9, 500, 1536, 1600, 1);
    check_cpu_logits(KILN_DTYPE_BF16, KILN_DTYPE_BF16, 1, 2, 1, 0, 0);
}

/* History, penalties, n > 1 and every output, through the hidden path. */
Test(lm_head, cpu_penalties_match_kiln_sample)
{
    const int64_t rows = 4, vocab = 300, H = 64;
    head_data d = make_data(KILN_DTYPE_BF16, rows, vocab, H, 0, 1, 5);
    hs s = cpu_hidden_sampler(rows, vocab, H, 2);
    kiln_lm_head h = head_of(&d, KILN_DTYPE_F32);
    int64_t off[5] = { 0, 3, 3, 8, 10 };
    int32_t ids[10] = { 1, 2, 1, 5, 6, 7, 8, 9, 299, 0 };
    int32_t prompt[4] = { 1, 0, 2, 2 };
    kiln_batch b = hidden_batch(rows, vocab, 4);
    b.history_offsets = off;
    b.history_ids = ids;
    b.prompt_lengths = prompt;
    kiln_sampling_params p = some_params();
    p.repetition_penalty_all = 1.3f;
    p.presence_penalty_all = 0.5f;
    p.frequency_penalty_all = 0.25f;
    kt_result r = kt_result_alloc(rows, vocab, 4), r2 = kt_result_alloc(rows, vocab, 4);
    kiln_outputs o = kt_outputs(&r), o2 = kt_outputs(&r2);
    cr_assert_eq(kiln_sample_hidden(s.sampler, &h, &b, &p, &o, s.workspace, s.workspace_size,
                                     NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    float *copy = malloc((size_t)(rows * vocab) * 4);
    memcpy(copy, workspace_logits(&s, rows, vocab, KILN_DTYPE_F32), (size_t)(rows * vocab) * 4);
    b.logits = copy;
    cr_assert_eq(kiln_sample(s.sampler, &b, &p, &o2, s.workspace, s.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert(kt_result_equal(&r, &r2));
    free(copy);
    kt_result_free(&r);
    kt_result_free(&r2);
    hs_destroy(&s);
    free_data(&d);
}

Test(lm_head, cpu_same_bytes_for_any_thread_count)
{
    const int64_t rows = 6, vocab = 1000, H = 300;
    head_data d = make_data(KILN_DTYPE_F32, rows, vocab, H, 0, 1, 11);
    float *first = NULL;
    for (int threads = 1; threads <= 3; ++threads)
        for (int rep = 0; rep < 2; ++rep) {
            hs s = cpu_hidden_sampler(rows, vocab, H, threads);
            kiln_lm_head h = head_of(&d, KILN_DTYPE_F32);
            kiln_batch b = hidden_batch(rows, vocab, 1);
            kiln_sampling_params p = some_params();
            kt_result r = kt_result_alloc(rows, vocab, 1);
            kiln_outputs o = kt_outputs(&r);
            cr_assert_eq(kiln_sample_hidden(s.sampler, &h, &b, &p, &o, s.workspace,
                                            s.workspace_size, NULL),
                         KILN_SUCCESS, "%s", kiln_last_error());
            const float *lg = workspace_logits(&s, rows, vocab, KILN_DTYPE_F32);
            if (!first) {
                first = malloc((size_t)(rows * vocab) * 4);
                memcpy(first, lg, (size_t)(rows * vocab) * 4);
            } else {
                cr_assert(memcmp(first, lg, (size_t)(rows * vocab) * 4) == 0,
                          "logits differ with %d threads", threads);
            }
            kt_result_free(&r);
            hs_destroy(&s);
        }
    free(first);
    free_data(&d);
}

/* ----------------------------------------------------------- bad input */

#define EXPECT_FAIL(call, status, needle)                                                   \
    do {                                                                                    \
        kiln_status st_ = (call);                                                           \
        cr_assert_eq(st_, status, "expected %s, got %s (%s)", #status,                      \
                     kiln_status_string(st_), kiln_last_error());                           \
        cr_assert(strstr(kiln_last_error(), needle) != NULL,                                \
                  "message \"%s\" does not name \"%s\"", kiln_last_error(), needle);        \
    } while (0)

Test(lm_head, bad_input)
{
    const int64_t rows = 2, vocab = 16, H = 8;
    head_data d = make_data(KILN_DTYPE_F32, rows, vocab, H, 0, 1, 3);
    hs s = cpu_hidden_sampler(rows, vocab, H, 1);
    kiln_batch b = hidden_batch(rows, vocab, 1);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    kt_result r = kt_result_alloc(rows, vocab, 1);
    kiln_outputs o = kt_outputs(&r);
    kiln_lm_head h;
#define CALL(hp) kiln_sample_hidden(s.sampler, hp, &b, &p, &o, s.workspace, s.workspace_size, NULL)

    EXPECT_FAIL(kiln_sample_hidden(NULL, &h, &b, &p, &o, s.workspace, s.workspace_size, NULL),
                KILN_ERROR_NULL_POINTER, "sampler");
    EXPECT_FAIL(CALL(NULL), KILN_ERROR_NULL_POINTER, "head is NULL");
    h = head_of(&d, KILN_DTYPE_F32);
    h.struct_size = 3;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_PARAMETER, "kiln_lm_head.struct_size");
    h = head_of(&d, KILN_DTYPE_F32);
    h.hidden = NULL;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_NULL_POINTER, "head.hidden");
    h = head_of(&d, KILN_DTYPE_F32);
    h.weight = NULL;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_NULL_POINTER, "head.weight");
    h = head_of(&d, KILN_DTYPE_F32);
    h.dtype = (kiln_dtype)7;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_PARAMETER, "head.dtype");
    h = head_of(&d, KILN_DTYPE_F16);
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_PARAMETER, "head.logits_dtype");
    h = head_of(&d, KILN_DTYPE_F32);
    h.hidden_size = 0;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "head.hidden_size");
    h.hidden_size = H + 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "max_hidden");
    h = head_of(&d, KILN_DTYPE_F32);
    h.hidden_stride = H - 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "head.hidden_stride");
    h.hidden_stride = (int64_t)1 << 31;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "head.hidden_stride");
    h = head_of(&d, KILN_DTYPE_F32);
    h.hidden = (const char *)d.hidden + 2;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_MISALIGNED, "head.hidden");
    h = head_of(&d, KILN_DTYPE_F32);
    h.weight = (const char *)d.weight + 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_MISALIGNED, "head.weight");
    h = head_of(&d, KILN_DTYPE_F32);
    h.bias = (const float *)((const char *)d.bias + 2);
    EXPECT_FAIL(CALL(&h), KILN_ERROR_MISALIGNED, "head.bias");

    /* batch rules of the hidden path */
    h = head_of(&d, KILN_DTYPE_F32);
    b.logits = d.hidden_f;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_PARAMETER, "batch.logits must be NULL");
    b.logits = NULL;
    b.row_stride = vocab + 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "batch.row_stride");
    b.row_stride = 0;
    b.num_rows = rows + 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "batch.num_rows");
    b.num_rows = rows;
    b.vocab_size = vocab + 1;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_SHAPE, "batch.vocab_size");
    b.vocab_size = vocab;
    p.top_p_all = 2.0f;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_INVALID_PARAMETER, "top_p_all");
    p.top_p_all = 1.0f;
    EXPECT_FAIL(kiln_sample_hidden(s.sampler, &h, &b, &p, &o, s.workspace, s.workspace_size - 1,
                                   NULL),
                KILN_ERROR_WORKSPACE_TOO_SMALL, "workspace_size");

    /* outputs may not overlap the head's inputs */
    kiln_outputs bad = o;
    bad.probs = (float *)d.weight; /* weight is vocab * H floats, probs needs rows * vocab */
    cr_assert_eq(CALL(&h), KILN_SUCCESS, "the unaltered call: %s", kiln_last_error());
    EXPECT_FAIL(kiln_sample_hidden(s.sampler, &h, &b, &p, &bad, s.workspace, s.workspace_size,
                                   NULL),
                KILN_ERROR_OVERLAP, "head.weight");
    bad = o;
    bad.tokens = (int32_t *)d.hidden;
    EXPECT_FAIL(kiln_sample_hidden(s.sampler, &h, &b, &p, &bad, s.workspace, s.workspace_size,
                                   NULL),
                KILN_ERROR_OVERLAP, "head.hidden");
    bad = o;
    bad.kept_counts = (int32_t *)d.bias;
    EXPECT_FAIL(kiln_sample_hidden(s.sampler, &h, &b, &p, &bad, s.workspace, s.workspace_size,
                                   NULL),
                KILN_ERROR_OVERLAP, "head.bias");
    h.weight = (const char *)s.workspace + 1024;
    EXPECT_FAIL(CALL(&h), KILN_ERROR_OVERLAP, "workspace");
#undef CALL

    /* a sampler created without max_hidden */
    hs plain = cpu_hidden_sampler(rows, vocab, 0, 1);
    h = head_of(&d, KILN_DTYPE_F32);
    EXPECT_FAIL(kiln_sample_hidden(plain.sampler, &h, &b, &p, &o, plain.workspace,
                                   plain.workspace_size, NULL),
                KILN_ERROR_INVALID_SHAPE, "max_hidden = 0");
    hs_destroy(&plain);

    kt_result_free(&r);
    hs_destroy(&s);
    free_data(&d);
}

Test(lm_head, config_max_hidden)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_vocab = 10;
    kiln_sampler *s = NULL;
    cfg.max_hidden = -1;
    EXPECT_FAIL(kiln_sampler_create(&cfg, &s), KILN_ERROR_INVALID_CONFIG, "config.max_hidden");
    cfg.max_hidden = ((int64_t)1 << 20) + 1;
    EXPECT_FAIL(kiln_sampler_create(&cfg, &s), KILN_ERROR_INVALID_CONFIG, "config.max_hidden");
    cfg.max_hidden = (int64_t)1 << 20;
    cr_assert_eq(kiln_sampler_create(&cfg, &s), KILN_SUCCESS, "%s", kiln_last_error());
    size_t with = 0, without = 0;
    kiln_sampler_workspace_size(s, &with);
    kiln_sampler_destroy(s);
    cfg.max_hidden = 0;
    cr_assert_eq(kiln_sampler_create(&cfg, &s), KILN_SUCCESS);
    kiln_sampler_workspace_size(s, &without);
    kiln_sampler_destroy(s);
    cr_assert_geq(with, without + 10 * 4 + 10 * 2, "the logits must have their own space");
    /* a caller built before max_hidden existed */
    cfg.struct_size = offsetof(kiln_config, max_hidden);
    cr_assert_eq(kiln_sampler_create(&cfg, &s), KILN_SUCCESS, "%s", kiln_last_error());
    kiln_sampler_destroy(s);
}

/* ---------------------------------------------------------------- GPU */

/* What runs here, on a GPU (KILN_TEST_HAVE_CUDART is a PUBLIC definition of
 * kiln_test_support, so this part is compiled wherever the CUDA runtime is;
 * a build without it fails these tests under KILN_REQUIRE_GPU=1 instead of
 * passing an empty body):
 *  - kiln_sample_hidden on the CUDA backend: its logits (read back from the
 *    workspace) within the documented bound of the CPU's;
 *  - its sampled outputs, every one of them, equal to the CPU backend's
 *    kiln_sample of those very GPU logits (given the same logits, the same
 *    bytes);
 *  - the CPU's logits sampled by the GPU's kiln_sample: the CPU's bytes. */

#ifdef KILN_TEST_HAVE_CUDART
#define CUDA_OK(call)                                                                    \
    do {                                                                                 \
        cudaError_t err_ = (call);                                                       \
        cr_assert_eq(err_, cudaSuccess, "%s: %s (%s)", #call, cudaGetErrorName(err_),   \
                     cudaGetErrorString(err_));                                          \
    } while (0)

static void *to_device(const void *host, size_t bytes)
{
    void *p = NULL;
    CUDA_OK(cudaMalloc(&p, bytes ? bytes : 1));
    if (host)
        CUDA_OK(cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice));
    return p;
}

/* A device output buffer filled with 0xA5 bytes. */
static void *poisoned(size_t bytes)
{
    void *p = to_device(NULL, bytes);
    CUDA_OK(cudaMemset(p, 0xA5, bytes ? bytes : 1));
    return p;
}

/* GPU logits against the CPU GEMM: any summation order of H products is
 * within H * 2^-24 * sum|terms| of the exact value (twice that between two
 * orders); bf16 logits add one bf16 ulp (2^-7 relative) between the two.
 * Then the GPU's sampled outputs against the CPU sampling the GPU's logits. */
static void check_gpu_logits(kiln_dtype dtype, kiln_dtype ldt, int64_t rows, int64_t vocab,
                             int64_t H)
{
    const int32_t n = 3;
    head_data d = make_data(dtype, rows, vocab, H, 0, 1, 77 + (uint64_t)H);
    hs cpu = cpu_hidden_sampler(rows, vocab, H, 0);
    kiln_lm_head h = head_of(&d, ldt);
    kiln_batch b = hidden_batch(rows, vocab, n);
    kiln_sampling_params p = some_params();
    kt_result rc = kt_result_alloc(rows, vocab, n);
    kiln_outputs oc = kt_outputs(&rc);
    cr_assert_eq(kiln_sample_hidden(cpu.sampler, &h, &b, &p, &oc, cpu.workspace,
                                    cpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());

    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.backend = KILN_BACKEND_CUDA;
    cfg.max_batch = rows;
    cfg.max_vocab = vocab;
    cfg.max_samples = 4;
    cfg.max_history = 8;
    cfg.max_hidden = H;
    kiln_sampler *gs = NULL;
    cr_assert_eq(kiln_sampler_create(&cfg, &gs), KILN_SUCCESS, "%s", kiln_last_error());
    size_t ws_bytes = 0;
    cr_assert_eq(kiln_sampler_workspace_size(gs, &ws_bytes), KILN_SUCCESS);
    void *ws = poisoned(ws_bytes);
    const size_t es = dtype == KILN_DTYPE_F32 ? 4 : 2;
    kiln_lm_head gh = h;
    gh.hidden = to_device(d.hidden, (size_t)(rows * H) * es);
    gh.weight = to_device(d.weight, (size_t)(vocab * H) * es);
    gh.bias = to_device(d.bias, (size_t)vocab * 4);
    const size_t draws = (size_t)(rows * n);
    kiln_outputs go = KILN_OUTPUTS_INIT;
    go.tokens = poisoned(draws * 4);
    go.logprobs = poisoned(draws * 4);
    go.raw_logprobs = poisoned(draws * 4);
    go.probs = poisoned((size_t)(rows * vocab) * 4);
    go.kept_counts = poisoned((size_t)rows * 4);
    go.valid = poisoned((size_t)rows);
    cr_assert_eq(kiln_sample_hidden(gs, &gh, &b, &p, &go, ws, ws_bytes, NULL), KILN_SUCCESS,
                 "%s", kiln_last_error());
    CUDA_OK(cudaGetLastError());
    CUDA_OK(cudaDeviceSynchronize());

    const size_t lb = (size_t)(rows * vocab) * (ldt == KILN_DTYPE_F32 ? 4 : 2);
    void *glog = malloc(lb);
    char *gbase = kiln_workspace_base(ws);
    if (ldt == KILN_DTYPE_BF16)
        gbase += kiln_round_up_align((size_t)rows * (size_t)vocab * 4);
    CUDA_OK(cudaMemcpy(glog, gbase, lb, cudaMemcpyDeviceToHost));
    const void *clog = workspace_logits(&cpu, rows, vocab, ldt);
    double worst = 0.0;
    for (int64_t bb = 0; bb < rows; ++bb)
        for (int64_t v = 0; v < vocab; ++v) {
            size_t i = (size_t)(bb * vocab + v);
            double a;
            double ref = ref_logit(&d, bb, v, &a);
            double g = logit_at(glog, ldt, i), c = logit_at(clog, ldt, i);
            double tol = 2.0 * (double)H * ldexp(1.0, -24) * a;
            if (ldt == KILN_DTYPE_BF16)
                tol += ldexp(1.0, -7) * (fabs(ref) + tol);
            cr_assert(isfinite(g), "row %lld token %lld: GPU logit %g", (long long)bb,
                      (long long)v, g);
            cr_assert(fabs(g - c) <= tol, "row %lld token %lld: GPU %.9g, CPU %.9g (tol %.3g)",
                      (long long)bb, (long long)v, g, c, tol);
            if (tol > 0 && fabs(g - c) / tol > worst)
                worst = fabs(g - c) / tol;
        }

    /* the GPU's sampled bytes == the CPU sampling the GPU's logits */
    kt_result rg = kt_result_alloc(rows, vocab, n), rcg = kt_result_alloc(rows, vocab, n);
    CUDA_OK(cudaMemcpy(rg.tokens, go.tokens, draws * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.logprobs, go.logprobs, draws * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.raw_logprobs, go.raw_logprobs, draws * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.probs, go.probs, (size_t)(rows * vocab) * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.kept, go.kept_counts, (size_t)rows * 4, cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(rg.valid, go.valid, (size_t)rows, cudaMemcpyDeviceToHost));
    kiln_batch lb_batch = hidden_batch(rows, vocab, n);
    lb_batch.logits = glog;
    lb_batch.dtype = ldt;
    kiln_outputs ocg = kt_outputs(&rcg);
    cr_assert_eq(kiln_sample(cpu.sampler, &lb_batch, &p, &ocg, cpu.workspace, cpu.workspace_size,
                             NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    for (int64_t bb = 0; bb < rows; ++bb)
        cr_assert(kt_row_equal(&rg, bb, &rcg, bb),
                  "row %lld: kiln_sample_hidden on CUDA and the CPU sampling its logits differ "
                  "(GPU token %d, CPU %d; kept %d / %d; valid %d / %d)",
                  (long long)bb, rg.tokens[bb * n], rcg.tokens[bb * n], rg.kept[bb],
                  rcg.kept[bb], rg.valid[bb], rcg.valid[bb]);
    fprintf(stderr, "lm_head_gpu: B=%lld V=%lld H=%lld in %s, logits %s: worst |GPU - CPU| = "
                    "%.3f of the bound; sampled bytes equal\n",
            (long long)rows, (long long)vocab, (long long)H,
            dtype == KILN_DTYPE_F32 ? "f32" : dtype == KILN_DTYPE_BF16 ? "bf16" : "f16",
            ldt == KILN_DTYPE_F32 ? "f32" : "bf16", worst);

    kt_result_free(&rg);
    kt_result_free(&rcg);
    free(glog);
    void *dev[] = { (void *)gh.hidden, (void *)gh.weight, (void *)gh.bias, go.tokens,
                    go.logprobs, go.raw_logprobs, go.probs, go.kept_counts, go.valid, ws };
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; ++i)
        CUDA_OK(cudaFree(dev[i]));
    kiln_sampler_destroy(gs);
    kt_result_free(&rc);
    hs_destroy(&cpu);
    free_data(&d);
}
#endif

Test(lm_head_gpu, logits_within_tolerance_of_cpu, .timeout = 300)
{
    KT_REQUIRE_GPU();
#ifdef KILN_TEST_HAVE_CUDART
    check_gpu_logits(KILN_DTYPE_F32, KILN_DTYPE_F32, 7, 1001, 512);
    check_gpu_logits(KILN_DTYPE_BF16, KILN_DTYPE_F32, 64, 32000, 4096);
    check_gpu_logits(KILN_DTYPE_BF16, KILN_DTYPE_BF16, 3, 4099, 1000);
    check_gpu_logits(KILN_DTYPE_F16, KILN_DTYPE_F32, 5, 777, 300);
    check_gpu_logits(KILN_DTYPE_F16, KILN_DTYPE_BF16, 1, 50000, 64);
#else
    cr_assert_fail("a CUDA device is here but the test was built without the CUDA runtime");
#endif
}

/* Given the same logits (the CPU GEMM's), both backends sample the same
 * bytes: the GPU's GEMM differs in rounding, its sampling does not. */
Test(lm_head_gpu, same_logits_same_tokens, .timeout = 120)
{
    KT_REQUIRE_GPU();
    const int64_t rows = 9, vocab = 4099, H = 256;
    head_data d = make_data(KILN_DTYPE_BF16, rows, vocab, H, 0, 1, 21);
    hs cpu = cpu_hidden_sampler(rows, vocab, H, 0);
    kiln_lm_head h = head_of(&d, KILN_DTYPE_F32);
    kiln_batch b = hidden_batch(rows, vocab, 3);
    kiln_sampling_params p = some_params();
    kt_result rc = kt_result_alloc(rows, vocab, 3), rg = kt_result_alloc(rows, vocab, 3);
    kiln_outputs oc = kt_outputs(&rc);
    cr_assert_eq(kiln_sample_hidden(cpu.sampler, &h, &b, &p, &oc, cpu.workspace,
                                    cpu.workspace_size, NULL),
                 KILN_SUCCESS, "%s", kiln_last_error());
    float *logits = malloc((size_t)(rows * vocab) * 4);
    memcpy(logits, workspace_logits(&cpu, rows, vocab, KILN_DTYPE_F32), (size_t)(rows * vocab) * 4);
    kt_sampler g = kt_create(KILN_BACKEND_CUDA, rows, vocab, 3, 0, 0);
    cr_assert_eq(g.backend, KILN_BACKEND_CUDA);
    kiln_batch gb = kt_batch_f32(logits, rows, vocab, 3);
    cr_assert_eq(kt_sample(&g, &gb, &p, &rg), KILN_SUCCESS, "%s", kt_error());
    cr_assert(kt_result_equal(&rc, &rg), "CPU and GPU sample the same logits differently");
    kt_destroy(&g);
    free(logits);
    kt_result_free(&rc);
    kt_result_free(&rg);
    hs_destroy(&cpu);
    free_data(&d);
}
