/* The CPU backend's results do not depend on the caller's floating-point
 * mode. PyTorch's torch.set_flush_denormal(True) sets FTZ and DAZ in MXCSR,
 * a -ffast-math shared library sets them when it loads, and fesetround
 * changes the rounding: the GPU does none of that, so kiln pins the mode
 * for its own work (csrc/cpu/fp_mode.h) on every thread it runs on, and
 * gives the caller's back. Rows here are built so that each of those modes
 * would change the bytes if kiln did not. */
#include <fenv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "harness.h"

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#define FTZ_DAZ 0x8040u
#else
#define HAVE_MXCSR 0
#endif

enum { ROWS = 12, VOCAB = 40, DRAWS = 3, THREADS = 2 };

static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Rows whose answer hinges on subnormals. Row 0 is greedy over
 * {-tiny, +0, +tiny, -0}: its max is +tiny at id 2, and under DAZ +tiny
 * would equal +0 (id 1). Other rows mix subnormal logits, differences that
 * round to subnormals, penalties that scale subnormals, and tiny
 * temperatures. */
static void fill(float *x)
{
    for (int b = 0; b < ROWS; ++b)
        for (int i = 0; i < VOCAB; ++i) {
            const uint32_t mag = (uint32_t)(1 + (b * 7 + i * 13) % 0x7FFFFF);
            float v = from_bits(((i + b) % 3 == 0 ? 0x80000000u : 0u) | mag);
            if (b % 4 == 3 && i % 5 == 0)
                v = (float)(i % 7) * 0.25f; /* a few normal values among them */
            x[b * VOCAB + i] = v;
        }
    x[0] = from_bits(0x80000001u);
    x[1] = 0.0f;
    x[2] = from_bits(0x00000001u);
    x[3] = from_bits(0x80000000u);
    for (int i = 4; i < VOCAB; ++i)
        x[i] = from_bits(0x80000000u | (uint32_t)i);
}

typedef struct call_data {
    float logits[ROWS * VOCAB];
    float temperature[ROWS];
    float repetition[ROWS];
    float presence[ROWS];
    int64_t hist_off[ROWS + 1];
    int32_t hist_ids[ROWS * 4];
    uint64_t seed[ROWS];
} call_data;

static void make_call(call_data *d)
{
    fill(d->logits);
    d->hist_off[0] = 0;
    for (int b = 0; b < ROWS; ++b) {
        d->temperature[b] = b == 0 ? 0.0f : b % 3 == 1 ? from_bits(0x00000100u) : 1.0f + 0.5f * b;
        d->repetition[b] = b % 2 ? 1.5f : 1.0f;
        d->presence[b] = b % 5 == 2 ? from_bits(0x00000003u) : 0.0f;
        for (int j = 0; j < 4; ++j)
            d->hist_ids[b * 4 + j] = (b * 3 + j * 11) % VOCAB;
        d->hist_off[b + 1] = d->hist_off[b] + (b % 4);
        d->seed[b] = 1000u + (uint64_t)b;
    }
}

static kiln_sampler *create(void)
{
    kiln_config cfg = KILN_CONFIG_INIT;
    cfg.max_batch = ROWS;
    cfg.max_vocab = VOCAB;
    cfg.max_samples = DRAWS;
    cfg.max_history = 4;
    cfg.num_threads = THREADS;
    kiln_sampler *s = NULL;
    cr_assert_eq(kiln_sampler_create(&cfg, &s), KILN_SUCCESS, "%s", kiln_last_error());
    return s;
}

static void run(kiln_sampler *s, const call_data *d, kt_result *r)
{
    size_t bytes = 0;
    cr_assert_eq(kiln_sampler_workspace_size(s, &bytes), KILN_SUCCESS);
    void *ws = malloc(bytes);
    cr_assert_not_null(ws);
    kiln_batch bt = kt_batch_f32(d->logits, ROWS, VOCAB, DRAWS);
    bt.history_offsets = d->hist_off;
    bt.history_ids = d->hist_ids;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = d->temperature;
    p.repetition_penalty = d->repetition;
    p.presence_penalty = d->presence;
    p.seed = d->seed;
    p.offset_all = 7;
    kt_result_poison(r);
    kiln_outputs o = kt_outputs(r);
    cr_assert_eq(kiln_sample(s, &bt, &p, &o, ws, bytes, NULL), KILN_SUCCESS, "%s",
                 kiln_last_error());
    free(ws);
}

#if HAVE_MXCSR
/* Sets `add` in MXCSR on this thread and on every OpenMP thread kiln's
 * parallel regions will run on (the same libgomp pool). */
static void set_mxcsr_everywhere(unsigned add, unsigned clear)
{
#ifdef _OPENMP
#pragma omp parallel num_threads(THREADS)
#endif
    _mm_setcsr((_mm_getcsr() & ~clear) | add);
    _mm_setcsr((_mm_getcsr() & ~clear) | add);
}

static int threads_with(unsigned bits)
{
    int with = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(THREADS) reduction(+ : with)
#endif
    with += (_mm_getcsr() & bits) == bits;
    return with;
}
#endif

/* Without kiln's own mode, DAZ makes row 0's greedy pick id 1 (+tiny == +0). */
Test(fp_mode, greedy_known_answer_on_subnormals)
{
    kiln_sampler *s = create();
    call_data d;
    make_call(&d);
    kt_result ref = kt_result_alloc(ROWS, VOCAB, DRAWS);
    run(s, &d, &ref);
    for (int j = 0; j < DRAWS; ++j)
        cr_assert_eq(ref.tokens[j], 2, "row 0 draw %d: token %d, want 2 (+tiny is the max)", j,
                     ref.tokens[j]);
    cr_assert_eq(ref.probs[2], 1.0f);
    kt_result_free(&ref);
    kiln_sampler_destroy(s);
}

Test(fp_mode, flush_to_zero_and_denormals_are_zero_change_nothing)
{
#if !HAVE_MXCSR
    cr_skip_test("no MXCSR on this target");
#else
    kiln_sampler *s = create();
    call_data d;
    make_call(&d);
    kt_result ref = kt_result_alloc(ROWS, VOCAB, DRAWS), got = kt_result_alloc(ROWS, VOCAB, DRAWS);
    run(s, &d, &ref);
    const unsigned before = _mm_getcsr();
    set_mxcsr_everywhere(FTZ_DAZ, 0);
    cr_assert_eq(threads_with(FTZ_DAZ), THREADS, "could not set FTZ/DAZ on every thread");
    run(s, &d, &got);
    const unsigned after = _mm_getcsr();
    const int still = threads_with(FTZ_DAZ);
    set_mxcsr_everywhere(0, 0xFFFFu);
    set_mxcsr_everywhere(before, 0);
    cr_assert_eq(after & FTZ_DAZ, FTZ_DAZ, "the caller's FTZ/DAZ were not given back");
    cr_assert_eq(still, THREADS, "an OpenMP thread lost its FTZ/DAZ");
    cr_assert(kt_result_equal(&ref, &got), "FTZ/DAZ changed kiln's output bytes");
    kt_result_free(&ref);
    kt_result_free(&got);
    kiln_sampler_destroy(s);
#endif
}

/* Set again on the calling thread after the region: LLVM's libomp gives the
 * primary thread back the floating-point control it had at the fork when the
 * region joins, so a mode set inside the region does not stick there. */
static void set_round_everywhere(int mode)
{
#ifdef _OPENMP
#pragma omp parallel num_threads(THREADS)
#endif
    fesetround(mode);
    fesetround(mode);
}

Test(fp_mode, rounding_mode_changes_nothing)
{
    kiln_sampler *s = create();
    call_data d;
    make_call(&d);
    kt_result ref = kt_result_alloc(ROWS, VOCAB, DRAWS), got = kt_result_alloc(ROWS, VOCAB, DRAWS);
    run(s, &d, &ref);
    const int modes[] = { FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO };
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; ++m) {
        set_round_everywhere(modes[m]);
        run(s, &d, &got);
        const int now = fegetround();
        set_round_everywhere(FE_TONEAREST);
        cr_assert_eq(now, modes[m], "the caller's rounding mode was not given back");
        cr_assert(kt_result_equal(&ref, &got), "rounding mode %d changed kiln's output bytes",
                  modes[m]);
    }
    kt_result_free(&ref);
    kt_result_free(&got);
    kiln_sampler_destroy(s);
}
