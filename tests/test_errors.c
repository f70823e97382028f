/* Bad input (docs/semantics.md section 12): every check returns its exact
 * status, names the field (and row) in kiln_last_error(), and writes nothing
 * -- outputs, workspace and every other buffer are compared byte for byte
 * around each failing call. Also: values at the edge of the valid ranges are
 * accepted, and invalid rows (section 2) succeed without disturbing their
 * neighbours. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define B 24
#define V 40
#define N 3
#define MAXH 8
#define IDS_CAP (B * (MAXH + 4))
#define ARENA (1 << 16)

/* Every input of the fixture call, in one block so it can be snapshotted. */
typedef struct inputs {
    float logits[B * V];
    int64_t off[B + 1];
    int32_t ids[IDS_CAP];
    int32_t prompt[B];
    float temp[B], top_p[B], min_p[B], rep[B], pres[B], freq[B];
    int32_t top_k[B];
    uint64_t seed[B], offset[B];
} inputs;

static struct {
    kt_sampler s;
    inputs in;
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs outputs;
    kt_result r;
    /* What kiln_sample receives; a test replaces any of them. */
    kiln_sampler *sp;
    const kiln_batch *bp;
    const kiln_sampling_params *pp;
    const kiln_outputs *op;
    void *ws;
    size_t wsz;
} fx;

/* Scratch memory for misaligned or overlapping pointers; snapshotted too. */
static _Alignas(256) unsigned char arena[ARENA];
static unsigned char arena_before[ARENA];
static inputs in_before;

/* Row r gets lens[r] history ids (r % (MAXH + 1) when lens is NULL). */
static void build_history(const int64_t *lens)
{
    int64_t pos = 0;
    for (int r = 0; r < B; ++r) {
        int64_t len = lens ? lens[r] : r % (MAXH + 1);
        cr_assert(pos + len <= IDS_CAP);
        fx.in.off[r] = pos;
        for (int64_t i = 0; i < len; ++i)
            fx.in.ids[pos++] = (int32_t)((r * 7 + i * 3) % V);
        fx.in.prompt[r] = (int32_t)(len / 2);
    }
    fx.in.off[B] = pos;
}

static void setup(void)
{
    memset(&fx, 0, sizeof fx);
    fx.s = cpu_create(B, V, N, MAXH, 2);
    for (int r = 0; r < B; ++r) {
        ks_zipf(fx.in.logits + r * V, V, 100 + (uint64_t)r);
        fx.in.temp[r] = r == 3 ? 0.0f : 0.5f + 0.05f * (float)r;
        fx.in.top_k[r] = (r % 5) * 3;
        fx.in.top_p[r] = r % 2 ? 0.9f : 1.0f;
        fx.in.min_p[r] = r % 3 ? 0.0f : 0.02f;
        fx.in.rep[r] = 1.1f;
        fx.in.pres[r] = 0.2f;
        fx.in.freq[r] = 0.1f;
        fx.in.seed[r] = 7u * (uint64_t)r + 1u;
        fx.in.offset[r] = (uint64_t)r;
    }
    build_history(NULL);
    fx.batch = kt_batch_f32(fx.in.logits, B, V, N);
    fx.batch.history_offsets = fx.in.off;
    fx.batch.history_ids = fx.in.ids;
    fx.batch.prompt_lengths = fx.in.prompt;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = fx.in.temp;
    p.top_k = fx.in.top_k;
    p.top_p = fx.in.top_p;
    p.min_p = fx.in.min_p;
    p.repetition_penalty = fx.in.rep;
    p.presence_penalty = fx.in.pres;
    p.frequency_penalty = fx.in.freq;
    p.seed = fx.in.seed;
    p.offset = fx.in.offset;
    fx.params = p;
    fx.r = kt_result_alloc(B, V, N);
    fx.outputs = kt_outputs(&fx.r);
    fx.sp = fx.s.sampler;
    fx.bp = &fx.batch;
    fx.pp = &fx.params;
    fx.op = &fx.outputs;
    fx.ws = fx.s.workspace;
    fx.wsz = fx.s.workspace_size;
    memset(arena, 0x5A, sizeof arena);
}

static void teardown(void)
{
    kt_result_free(&fx.r);
    kt_destroy(&fx.s);
}

TestSuite(errors, .init = setup, .fini = teardown);

static int all_bytes(const void *p, size_t n, unsigned char v)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; ++i)
        if (c[i] != v)
            return 0;
    return 1;
}

static kiln_status call_fx(void)
{
    return kiln_sample(fx.sp, fx.bp, fx.pp, fx.op, fx.ws, fx.wsz, NULL);
}

/* The fixture call fails with `want`, the message contains need1 (and need2),
 * and not one byte of the outputs, workspace, inputs or arena changed. */
static void expect_at(int line, kiln_status want, const char *need1, const char *need2)
{
    kt_result_poison(&fx.r);
    memset(fx.s.workspace, 0x3C, fx.s.workspace_size);
    memcpy(&in_before, &fx.in, sizeof fx.in);
    memcpy(arena_before, arena, sizeof arena);
    kiln_status st = call_fx();
    const char *msg = kiln_last_error();
    cr_assert_not_null(msg);
    cr_assert_eq(st, want, "line %d: status %d (%s), expected %d (%s); message \"%s\"", line,
                 (int)st, kiln_status_string(st), (int)want, kiln_status_string(want), msg);
    cr_assert(strstr(msg, need1) != NULL, "line %d: message \"%s\" does not contain \"%s\"",
              line, msg, need1);
    if (need2)
        cr_assert(strstr(msg, need2) != NULL, "line %d: message \"%s\" does not contain \"%s\"",
                  line, msg, need2);
    const size_t draws = (size_t)B * N;
    cr_assert(all_bytes(fx.r.tokens, draws * 4, 0xA5), "line %d: tokens written", line);
    cr_assert(all_bytes(fx.r.logprobs, draws * 4, 0xA5), "line %d: logprobs written", line);
    cr_assert(all_bytes(fx.r.raw_logprobs, draws * 4, 0xA5), "line %d: raw_logprobs written",
              line);
    cr_assert(all_bytes(fx.r.probs, (size_t)B * V * 4, 0xA5), "line %d: probs written", line);
    cr_assert(all_bytes(fx.r.kept, (size_t)B * 4, 0xA5), "line %d: kept_counts written", line);
    cr_assert(all_bytes(fx.r.valid, (size_t)B, 0xA5), "line %d: valid written", line);
    cr_assert(all_bytes(fx.s.workspace, fx.s.workspace_size, 0x3C), "line %d: workspace written",
              line);
    cr_assert(memcmp(&in_before, &fx.in, sizeof fx.in) == 0, "line %d: an input changed", line);
    cr_assert(memcmp(arena_before, arena, sizeof arena) == 0, "line %d: arena memory written",
              line);
}
#define EXPECT(want, need1, need2) expect_at(__LINE__, want, need1, need2)

static void expect_ok_at(int line)
{
    kt_result_poison(&fx.r);
    kiln_status st = call_fx();
    cr_assert_eq(st, KILN_SUCCESS, "line %d: status %d (%s); message \"%s\"", line, (int)st,
                 kiln_status_string(st), kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "", "line %d", line);
}
#define EXPECT_OK() expect_ok_at(__LINE__)

/* ------------------------------------------------------------- fixture */

Test(errors, fixture_call_is_valid)
{
    EXPECT_OK();
    for (int r = 0; r < B; ++r) {
        cr_assert_eq(fx.r.valid[r], 1, "row %d", r);
        for (int j = 0; j < N; ++j)
            cr_assert(fx.r.tokens[r * N + j] >= 0 && fx.r.tokens[r * N + j] < V);
    }
    /* Row 8 and 17 have exactly MAXH history ids: the limit is inclusive. */
    cr_assert_eq(fx.in.off[18] - fx.in.off[17], MAXH);
}

/* --------------------------------------------------------- NULL pointers */

Test(errors, null_sampler)
{
    fx.sp = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "sampler", NULL);
}

Test(errors, null_batch)
{
    fx.bp = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "batch", NULL);
}

Test(errors, null_params)
{
    fx.pp = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "params", NULL);
}

Test(errors, null_outputs)
{
    fx.op = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "outputs", NULL);
}

Test(errors, null_logits)
{
    fx.batch.logits = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "batch.logits", NULL);
}

Test(errors, null_tokens)
{
    fx.outputs.tokens = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "outputs.tokens", NULL);
}

Test(errors, null_workspace)
{
    fx.ws = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "workspace", NULL);
}

Test(errors, history_ids_without_offsets_and_reverse)
{
    fx.batch.history_ids = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "batch.history_ids", NULL);
    fx.batch.history_ids = fx.in.ids;
    fx.batch.history_offsets = NULL;
    EXPECT(KILN_ERROR_NULL_POINTER, "batch.history_offsets", NULL);
    fx.batch.history_ids = NULL; /* prompt_lengths alone is as meaningless */
    EXPECT(KILN_ERROR_NULL_POINTER, "batch.history_offsets", NULL);
    fx.batch.prompt_lengths = NULL;
    EXPECT_OK();
}

Test(errors, optional_outputs_may_be_null)
{
    fx.outputs.logprobs = NULL;
    fx.outputs.raw_logprobs = NULL;
    fx.outputs.probs = NULL;
    fx.outputs.kept_counts = NULL;
    fx.outputs.valid = NULL;
    EXPECT_OK();
    cr_assert(all_bytes(fx.r.probs, (size_t)B * V * 4, 0xA5));
    cr_assert(all_bytes(fx.r.valid, B, 0xA5));
}

/* ----------------------------------------------------------------- shapes */

Test(errors, num_rows)
{
    const int64_t bad[] = { 0, -1, INT64_MIN, B + 1, INT64_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "batch.num_rows = %lld", (long long)bad[i]);
        fx.batch.num_rows = bad[i];
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, NULL);
    }
}

Test(errors, vocab_size)
{
    const int64_t bad[] = { 0, -1, INT64_MIN, V + 1, KILN_MAX_VOCAB_SIZE + 1, INT64_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "batch.vocab_size = %lld", (long long)bad[i]);
        fx.batch.vocab_size = bad[i];
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, NULL);
    }
}

Test(errors, num_samples)
{
    const int32_t bad[] = { 0, -1, INT32_MIN, N + 1, INT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "batch.num_samples = %d", (int)bad[i]);
        fx.batch.num_samples = bad[i];
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, NULL);
    }
}

Test(errors, row_stride)
{
    /* Below V, negative, and so large that (B - 1) * stride * 4 bytes
     * overflows int64 (the last one just past that limit). */
    const int64_t bad[] = { V - 1, 1, -1, INT64_MIN, INT64_MAX, INT64_MAX / 4,
                            INT64_MAX / 4 / (B - 1) + 1 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "batch.row_stride = %lld", (long long)bad[i]);
        fx.batch.row_stride = bad[i];
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, NULL);
    }
    fx.batch.row_stride = V;
    EXPECT_OK();
}

Test(errors, row_stride_overflow_f16)
{
    /* 2-byte elements: the bound is half the f32 one. */
    fx.batch.dtype = KILN_DTYPE_F16;
    fx.batch.row_stride = INT64_MAX / 2 / (B - 1) + 1;
    EXPECT(KILN_ERROR_INVALID_SHAPE, "batch.row_stride", NULL);
}

Test(errors, probs_row_stride)
{
    const int64_t bad[] = { V - 1, -1, INT64_MIN, INT64_MAX, INT64_MAX / 4 / (B - 1) + 1 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "outputs.probs_row_stride = %lld", (long long)bad[i]);
        fx.outputs.probs_row_stride = bad[i];
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, NULL);
    }
}

Test(errors, history_row_over_max_history)
{
    int64_t lens[B];
    for (int r = 0; r < B; ++r)
        lens[r] = r % (MAXH + 1);
    lens[11] = MAXH + 1;
    build_history(lens);
    EXPECT(KILN_ERROR_INVALID_SHAPE, "row 11 has 9 history ids", "max_history = 8");
}

Test(errors, history_with_max_history_zero)
{
    kt_sampler s0 = cpu_create(B, V, N, 0, 2);
    cr_assert(s0.workspace_size <= fx.wsz);
    fx.sp = s0.sampler;
    EXPECT(KILN_ERROR_INVALID_SHAPE, "max_history = 0", NULL);
    int64_t lens[B] = { 0 }; /* empty histories are still histories */
    build_history(lens);
    EXPECT(KILN_ERROR_INVALID_SHAPE, "max_history = 0", NULL);
    fx.batch.history_offsets = NULL;
    fx.batch.history_ids = NULL;
    fx.batch.prompt_lengths = NULL;
    EXPECT_OK();
    kt_destroy(&s0);
}

Test(errors, history_offsets_absurd_total)
{
    /* The last offset so large that offsets[B] * 4 bytes wraps: the row is
     * still just too long, not an overlap. */
    const int64_t bad[] = { INT64_MAX, INT64_MAX / 2, INT64_MAX / 4 + 1, (int64_t)1 << 40 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        fx.in.off[B] = bad[i];
        char need[96];
        snprintf(need, sizeof need, "row %d has %lld history ids", B - 1,
                 (long long)(bad[i] - fx.in.off[B - 1]));
        EXPECT(KILN_ERROR_INVALID_SHAPE, need, "max_history");
    }
}

/* ------------------------------------------------------------- parameters */

typedef struct fcase {
    const char *name;
    float value;
} fcase;

static const fcase bad_floats[] = {
    { "temperature", NAN },
    { "temperature", -NAN },
    { "temperature", -1.0f },
    { "temperature", -FLT_TRUE_MIN },
    { "temperature", INFINITY },
    { "temperature", -INFINITY },
    { "top_p", 0.0f },
    { "top_p", -0.0f },
    { "top_p", -0.1f },
    { "top_p", 1.5f },
    { "top_p", 1.00000012f }, /* nextafter(1, 2) */
    { "top_p", NAN },
    { "top_p", INFINITY },
    { "min_p", -0.1f },
    { "min_p", -FLT_TRUE_MIN },
    { "min_p", 1.1f },
    { "min_p", 1.00000012f },
    { "min_p", NAN },
    { "min_p", -INFINITY },
    { "repetition_penalty", 0.0f },
    { "repetition_penalty", -0.0f },
    { "repetition_penalty", -1.0f },
    { "repetition_penalty", NAN },
    { "repetition_penalty", INFINITY },
    { "presence_penalty", NAN },
    { "presence_penalty", INFINITY },
    { "presence_penalty", -INFINITY },
    { "frequency_penalty", NAN },
    { "frequency_penalty", INFINITY },
    { "frequency_penalty", -INFINITY },
};

static float *row_array(const char *name)
{
    if (!strcmp(name, "temperature")) return fx.in.temp;
    if (!strcmp(name, "top_p")) return fx.in.top_p;
    if (!strcmp(name, "min_p")) return fx.in.min_p;
    if (!strcmp(name, "repetition_penalty")) return fx.in.rep;
    if (!strcmp(name, "presence_penalty")) return fx.in.pres;
    if (!strcmp(name, "frequency_penalty")) return fx.in.freq;
    cr_assert_fail("no field %s", name);
    return NULL;
}

static const float **array_slot(const char *name)
{
    if (!strcmp(name, "temperature")) return &fx.params.temperature;
    if (!strcmp(name, "top_p")) return &fx.params.top_p;
    if (!strcmp(name, "min_p")) return &fx.params.min_p;
    if (!strcmp(name, "repetition_penalty")) return &fx.params.repetition_penalty;
    if (!strcmp(name, "presence_penalty")) return &fx.params.presence_penalty;
    if (!strcmp(name, "frequency_penalty")) return &fx.params.frequency_penalty;
    cr_assert_fail("no field %s", name);
    return NULL;
}

static float *scalar_slot(const char *name)
{
    if (!strcmp(name, "temperature")) return &fx.params.temperature_all;
    if (!strcmp(name, "top_p")) return &fx.params.top_p_all;
    if (!strcmp(name, "min_p")) return &fx.params.min_p_all;
    if (!strcmp(name, "repetition_penalty")) return &fx.params.repetition_penalty_all;
    if (!strcmp(name, "presence_penalty")) return &fx.params.presence_penalty_all;
    if (!strcmp(name, "frequency_penalty")) return &fx.params.frequency_penalty_all;
    cr_assert_fail("no field %s", name);
    return NULL;
}

Test(errors, bad_value_in_a_row)
{
    const int rows[] = { 17, 0, B - 1 };
    for (size_t c = 0; c < sizeof bad_floats / sizeof *bad_floats; ++c)
        for (size_t i = 0; i < sizeof rows / sizeof *rows; ++i) {
            const fcase *fc = &bad_floats[c];
            float *a = row_array(fc->name);
            const float keep = a[rows[i]];
            a[rows[i]] = fc->value;
            char need[96];
            snprintf(need, sizeof need, "%s[%d] = %.9g", fc->name, rows[i], (double)fc->value);
            EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
            a[rows[i]] = keep;
        }
}

Test(errors, bad_value_in_a_scalar)
{
    for (size_t c = 0; c < sizeof bad_floats / sizeof *bad_floats; ++c) {
        const fcase *fc = &bad_floats[c];
        const float **arr = array_slot(fc->name);
        float *sc = scalar_slot(fc->name);
        const float *keep_arr = *arr;
        const float keep = *sc;
        *arr = NULL;
        *sc = fc->value;
        char need[96];
        snprintf(need, sizeof need, "%s_all = %.9g", fc->name, (double)fc->value);
        EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
        /* With the array given, the bad scalar is not used: no error. */
        *arr = keep_arr;
        EXPECT_OK();
        *sc = keep;
    }
}

Test(errors, documented_message_example)
{
    fx.in.top_p[17] = 1.5f;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "top_p[17] = 1.5 is outside (0, 1]", NULL);
}

Test(errors, first_bad_row_is_named)
{
    fx.in.min_p[20] = 2.0f;
    fx.in.rep[9] = -1.0f;
    fx.in.temp[13] = NAN;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "repetition_penalty[9] = -1", NULL);
}

Test(errors, history_id_out_of_range)
{
    const int32_t bad[] = { -1, V, INT32_MIN, INT32_MAX };
    const int row = 5; /* 5 ids at fx.in.off[5] */
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i)
        for (int64_t k = 0; k < 5; k += 2) {
            const int64_t pos = fx.in.off[row] + k;
            const int32_t keep = fx.in.ids[pos];
            fx.in.ids[pos] = bad[i];
            char need[96], need_row[32];
            snprintf(need, sizeof need, "history_ids[%lld] = %d", (long long)pos, (int)bad[i]);
            snprintf(need_row, sizeof need_row, "row %d", row);
            EXPECT(KILN_ERROR_INVALID_PARAMETER, need, need_row);
            fx.in.ids[pos] = keep;
        }
    /* The last id of the last row (position offsets[B] - 1). */
    const int64_t last = fx.in.off[B] - 1;
    fx.in.ids[last] = V;
    char need[96];
    snprintf(need, sizeof need, "history_ids[%lld] = %d (row %d)", (long long)last, V, B - 1);
    EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
    fx.in.ids[last] = V - 1;
    EXPECT_OK();
}

Test(errors, prompt_length_out_of_range)
{
    fx.in.prompt[5] = -1;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "prompt_lengths[5] = -1", "[0, 5]");
    fx.in.prompt[5] = 6;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "prompt_lengths[5] = 6", "[0, 5]");
    fx.in.prompt[5] = INT32_MIN;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "prompt_lengths[5]", NULL);
    fx.in.prompt[5] = 5; /* all prompt: allowed */
    fx.in.prompt[9] = 1; /* row 9 has no history */
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "prompt_lengths[9] = 1", "[0, 0]");
    fx.in.prompt[9] = 0;
    EXPECT_OK();
}

Test(errors, history_offsets_decreasing)
{
    fx.in.off[6] = fx.in.off[5] - 1;
    char need[96];
    snprintf(need, sizeof need, "history_offsets[6] = %lld is below history_offsets[5]",
             (long long)fx.in.off[6]);
    EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
}

Test(errors, history_offsets_negative_start)
{
    fx.in.off[0] = -1;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "history_offsets[0] = -1", NULL);
    fx.in.off[0] = INT64_MIN;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "history_offsets[0]", NULL);
}

Test(errors, dtype)
{
    const int bad[] = { 3, -1, 100, INT_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        char need[64];
        snprintf(need, sizeof need, "batch.dtype = %d", bad[i]);
        fx.batch.dtype = (kiln_dtype)bad[i];
        EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
    }
}

/* ------------------------------------------------------------ struct_size */

static const size_t bad_sizes[] = { 0, 1, 4, 7, SIZE_MAX };

Test(errors, batch_struct_size)
{
    const size_t extra[] = { sizeof(kiln_batch) + 1, sizeof(kiln_batch) + 8 };
    for (size_t i = 0; i < 7; ++i) {
        size_t sz = i < 5 ? bad_sizes[i] : extra[i - 5];
        char need[96];
        snprintf(need, sizeof need, "kiln_batch.struct_size = %zu", sz);
        fx.batch.struct_size = sz;
        EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
    }
}

Test(errors, params_struct_size)
{
    const size_t extra[] = { sizeof(kiln_sampling_params) + 1, sizeof(kiln_sampling_params) + 8 };
    for (size_t i = 0; i < 7; ++i) {
        size_t sz = i < 5 ? bad_sizes[i] : extra[i - 5];
        char need[96];
        snprintf(need, sizeof need, "kiln_sampling_params.struct_size = %zu", sz);
        fx.params.struct_size = sz;
        EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
    }
}

Test(errors, outputs_struct_size)
{
    const size_t extra[] = { sizeof(kiln_outputs) + 1, sizeof(kiln_outputs) + 8 };
    for (size_t i = 0; i < 7; ++i) {
        size_t sz = i < 5 ? bad_sizes[i] : extra[i - 5];
        char need[96];
        snprintf(need, sizeof need, "kiln_outputs.struct_size = %zu", sz);
        fx.outputs.struct_size = sz;
        EXPECT(KILN_ERROR_INVALID_PARAMETER, need, NULL);
    }
}

/* A size that ends inside a field was never sizeof any version of the struct
 * ("a struct_size the library does not know"); accepting it splices the
 * caller's bytes with the defaults -- for a pointer field, a truncated
 * pointer. Uses non-pointer fields so that a failure cannot crash. */
Test(errors, struct_size_inside_a_field)
{
    fx.batch.struct_size = offsetof(kiln_batch, num_samples) + 1;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "kiln_batch.struct_size", NULL);
    fx.batch.struct_size = sizeof(kiln_batch);
    fx.params.struct_size = offsetof(kiln_sampling_params, seed_all) + 3;
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "kiln_sampling_params.struct_size", NULL);
}

/* -------------------------------------------------------------- alignment */

/* A copy of `bytes` of src at arena + 1024 * slot + shift. */
static void *arena_copy(int slot, size_t shift, const void *src, size_t bytes)
{
    cr_assert(1024u * (size_t)slot + shift + bytes <= ARENA);
    unsigned char *p = arena + 1024u * (size_t)slot + shift;
    memcpy(p, src, bytes);
    return p;
}

Test(errors, misaligned_logits)
{
    static const size_t shifts[] = { 1, 2, 3 };
    static uint16_t half[B * V];
    for (size_t i = 0; i < 3; ++i) {
        fx.batch.logits = arena + 8 + shifts[i]; /* content is never read */
        EXPECT(KILN_ERROR_MISALIGNED, "batch.logits", NULL);
    }
    /* f16 and bf16: odd addresses fail, 2-byte aligned ones work. */
    const kiln_dtype halves[] = { KILN_DTYPE_F16, KILN_DTYPE_BF16 };
    for (int d = 0; d < 2; ++d) {
        for (int i = 0; i < B * V; ++i)
            half[i] = (uint16_t)(0x3C00 + (i % 97)); /* finite in both formats */
        fx.batch.dtype = halves[d];
        unsigned char *buf = malloc(sizeof half + 8);
        cr_assert_not_null(buf);
        memcpy(buf + 1, half, sizeof half);
        fx.batch.logits = buf + 1;
        EXPECT(KILN_ERROR_MISALIGNED, "batch.logits", NULL);
        memcpy(buf + 2, half, sizeof half);
        fx.batch.logits = buf + 2;
        EXPECT_OK();
        free(buf);
    }
}

Test(errors, misaligned_outputs)
{
    int32_t **ip[] = { &fx.outputs.tokens, &fx.outputs.kept_counts };
    const char *iname[] = { "outputs.tokens", "outputs.kept_counts" };
    float **fp[] = { &fx.outputs.logprobs, &fx.outputs.raw_logprobs, &fx.outputs.probs };
    const char *fname[] = { "outputs.logprobs", "outputs.raw_logprobs", "outputs.probs" };
    for (size_t shift = 1; shift < 4; ++shift) {
        for (int i = 0; i < 2; ++i) {
            int32_t *keep = *ip[i];
            *ip[i] = (int32_t *)(void *)(arena + 4096 * (i + 1) + shift);
            EXPECT(KILN_ERROR_MISALIGNED, iname[i], NULL);
            *ip[i] = keep;
        }
        for (int i = 0; i < 3; ++i) {
            float *keep = *fp[i];
            *fp[i] = (float *)(void *)(arena + 4096 * (i + 3) + shift);
            EXPECT(KILN_ERROR_MISALIGNED, fname[i], NULL);
            *fp[i] = keep;
        }
    }
    /* valid is bytes: any address works. */
    fx.outputs.valid = arena + 4096 * 7 + 1;
    EXPECT_OK();
    cr_assert(all_bytes(fx.r.valid, B, 0xA5));
    cr_assert(all_bytes(arena + 4096 * 7 + 1, B, 1));
}

Test(errors, misaligned_params_and_history)
{
    struct {
        const void **slot;
        const void *src;
        size_t bytes, align;
        const char *name;
    } c[] = {
        { (const void **)&fx.params.temperature, fx.in.temp, 4 * B, 4, "params.temperature" },
        { (const void **)&fx.params.top_k, fx.in.top_k, 4 * B, 4, "params.top_k" },
        { (const void **)&fx.params.top_p, fx.in.top_p, 4 * B, 4, "params.top_p" },
        { (const void **)&fx.params.min_p, fx.in.min_p, 4 * B, 4, "params.min_p" },
        { (const void **)&fx.params.repetition_penalty, fx.in.rep, 4 * B, 4,
          "params.repetition_penalty" },
        { (const void **)&fx.params.presence_penalty, fx.in.pres, 4 * B, 4,
          "params.presence_penalty" },
        { (const void **)&fx.params.frequency_penalty, fx.in.freq, 4 * B, 4,
          "params.frequency_penalty" },
        { (const void **)&fx.params.seed, fx.in.seed, 8 * B, 8, "params.seed" },
        { (const void **)&fx.params.offset, fx.in.offset, 8 * B, 8, "params.offset" },
        { (const void **)&fx.batch.history_offsets, fx.in.off, 8 * (B + 1), 8,
          "batch.history_offsets" },
        { (const void **)&fx.batch.history_ids, fx.in.ids, 4 * IDS_CAP, 4,
          "batch.history_ids" },
        { (const void **)&fx.batch.prompt_lengths, fx.in.prompt, 4 * B, 4,
          "batch.prompt_lengths" },
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; ++i) {
        const void *keep = *c[i].slot;
        for (size_t shift = 1; shift < c[i].align; ++shift) {
            *c[i].slot = arena_copy(1, shift, c[i].src, c[i].bytes);
            EXPECT(KILN_ERROR_MISALIGNED, c[i].name, NULL);
        }
        /* The same data at an aligned address is fine. */
        *c[i].slot = arena_copy(1, c[i].align == 8 ? 8 : 4, c[i].src, c[i].bytes);
        EXPECT_OK();
        *c[i].slot = keep;
    }
}

/* ---------------------------------------------------------------- overlap */

Test(errors, output_overlaps_logits)
{
    float *lg = arena_copy(4, 0, fx.in.logits, sizeof fx.in.logits);
    fx.batch.logits = lg;
    fx.outputs.tokens = (int32_t *)(void *)lg;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.tokens", "batch.logits");
    /* One element of overlap at the end of the logits... */
    fx.outputs.tokens = (int32_t *)(void *)(lg + B * V - 1);
    EXPECT(KILN_ERROR_OVERLAP, "outputs.tokens", "batch.logits");
    /* ...or at their start. */
    fx.outputs.tokens = fx.r.tokens;
    fx.outputs.kept_counts = (int32_t *)(void *)(lg - B + 1);
    EXPECT(KILN_ERROR_OVERLAP, "outputs.kept_counts", "batch.logits");
    /* Adjacent is not overlapping. */
    fx.outputs.kept_counts = (int32_t *)(void *)(lg - B);
    fx.outputs.tokens = (int32_t *)(void *)(lg + B * V);
    EXPECT_OK();
}

Test(errors, output_overlaps_logits_with_stride)
{
    /* Rows of stride 2V: the gaps count as part of the logits' extent. */
    static float strided[B * 2 * V];
    for (int r = 0; r < B; ++r)
        memcpy(strided + r * 2 * V, fx.in.logits + r * V, sizeof(float) * V);
    fx.batch.logits = strided;
    fx.batch.row_stride = 2 * V;
    fx.outputs.kept_counts = (int32_t *)(void *)(strided + V);
    EXPECT(KILN_ERROR_OVERLAP, "outputs.kept_counts", "batch.logits");
}

Test(errors, outputs_overlap_each_other)
{
    float *lp = (float *)(void *)(arena + 256);
    fx.outputs.logprobs = lp;
    fx.outputs.probs = lp + B * N - 1;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.logprobs", "outputs.probs");
    fx.outputs.probs = fx.r.probs;
    fx.outputs.raw_logprobs = lp;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.logprobs", "outputs.raw_logprobs");
    fx.outputs.raw_logprobs = fx.r.raw_logprobs;
    fx.outputs.logprobs = fx.r.logprobs;
    fx.outputs.valid = (uint8_t *)fx.r.kept + 4 * B - 1;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.kept_counts", "outputs.valid");
    fx.outputs.valid = fx.r.valid;
    fx.outputs.tokens = fx.r.kept;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.tokens", "outputs.kept_counts");
    fx.outputs.tokens = fx.r.tokens;
    /* probs rows with a stride: the extent is (B - 1) * stride + V. */
    fx.outputs.probs = lp;
    fx.outputs.probs_row_stride = 2 * V;
    fx.outputs.kept_counts = (int32_t *)(void *)(lp + (B - 1) * 2 * V + V - 1);
    EXPECT(KILN_ERROR_OVERLAP, "outputs.probs", "outputs.kept_counts");
    fx.outputs.kept_counts = (int32_t *)(void *)(lp + (B - 1) * 2 * V + V);
    EXPECT_OK();
}

Test(errors, output_overlaps_workspace)
{
    /* The workspace in the arena, so that buffers can touch its ends. */
    cr_assert(8192 + fx.wsz + 4096 <= ARENA);
    unsigned char *ws = arena + 8192;
    fx.ws = ws;
    fx.outputs.kept_counts = (int32_t *)(void *)(ws + 256);
    EXPECT(KILN_ERROR_OVERLAP, "outputs.kept_counts", "workspace");
    fx.outputs.kept_counts = fx.r.kept;
    fx.outputs.valid = ws + fx.wsz - 1;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.valid", "workspace");
    fx.outputs.valid = ws - B + 1;
    EXPECT(KILN_ERROR_OVERLAP, "outputs.valid", "workspace");
    fx.outputs.valid = fx.r.valid;
    /* An input inside the workspace is overlapped by it, too. */
    fx.params.top_k = (const int32_t *)(const void *)(ws + 512);
    EXPECT(KILN_ERROR_OVERLAP, "params.top_k", "workspace");
    fx.params.top_k = fx.in.top_k;
    /* Touching either end is fine. */
    fx.outputs.valid = ws + fx.wsz;
    fx.outputs.kept_counts = (int32_t *)(void *)(ws - 4 * B);
    EXPECT_OK();
}

Test(errors, output_overlaps_params_and_history)
{
    fx.outputs.tokens = (int32_t *)fx.in.top_k;
    EXPECT(KILN_ERROR_OVERLAP, "params.top_k", "outputs.tokens");
    fx.outputs.tokens = fx.r.tokens;
    fx.outputs.kept_counts = (int32_t *)(fx.in.seed + B - 1);
    EXPECT(KILN_ERROR_OVERLAP, "params.seed", "outputs.kept_counts");
    fx.outputs.kept_counts = fx.r.kept;
    fx.outputs.valid = (uint8_t *)(fx.in.temp + 5);
    EXPECT(KILN_ERROR_OVERLAP, "params.temperature", "outputs.valid");
    fx.outputs.valid = (uint8_t *)(fx.in.ids + fx.in.off[B] - 1);
    EXPECT(KILN_ERROR_OVERLAP, "batch.history_ids", "outputs.valid");
    fx.outputs.valid = (uint8_t *)(fx.in.off + B);
    EXPECT(KILN_ERROR_OVERLAP, "batch.history_offsets", "outputs.valid");
    fx.outputs.valid = (uint8_t *)(fx.in.prompt + 3);
    EXPECT(KILN_ERROR_OVERLAP, "batch.prompt_lengths", "outputs.valid");
    fx.outputs.valid = (uint8_t *)(fx.in.offset);
    EXPECT(KILN_ERROR_OVERLAP, "params.offset", "outputs.valid");
}

Test(errors, inputs_may_share_memory)
{
    /* Only outputs must be disjoint: inputs can alias each other. */
    fx.params.top_p = fx.in.min_p; /* 0.02, 0, ...: a bad top_p in row 1... */
    EXPECT(KILN_ERROR_INVALID_PARAMETER, "top_p[1] = 0", NULL);
    for (int r = 0; r < B; ++r)
        fx.in.min_p[r] = 0.5f; /* ...now valid for both */
    fx.params.top_k = fx.in.ids;
    fx.params.seed = (const uint64_t *)(const void *)fx.in.off;
    fx.params.offset = (const uint64_t *)(const void *)fx.in.off;
    EXPECT_OK();
}

/* -------------------------------------------------------------- workspace */

Test(errors, workspace_too_small)
{
    char need[128];
    const size_t bad[] = { fx.wsz - 1, fx.wsz / 2, 1, 0 };
    for (size_t i = 0; i < 4; ++i) {
        fx.wsz = bad[i];
        snprintf(need, sizeof need, "workspace_size = %zu", bad[i]);
        EXPECT(KILN_ERROR_WORKSPACE_TOO_SMALL, need, NULL);
    }
    fx.wsz = fx.s.workspace_size;
    EXPECT_OK();
}

/* ----------------------------------------------------- valid extreme values */

Test(errors, extreme_valid_values)
{
    fx.in.top_k[17] = INT32_MIN;
    fx.in.top_k[3] = INT32_MAX;
    fx.in.top_k[4] = -1;
    fx.in.top_k[5] = V;
    fx.in.top_k[6] = V + 1;
    fx.in.top_k[7] = 1;
    fx.in.temp[8] = 0.0f;
    fx.in.temp[9] = -0.0f;
    fx.in.temp[10] = FLT_TRUE_MIN; /* any T > 0 is valid (section 5) */
    fx.in.temp[11] = FLT_MAX;
    fx.in.top_p[12] = 1.0f;
    fx.in.top_p[13] = FLT_TRUE_MIN;
    fx.in.min_p[14] = 0.0f;
    fx.in.min_p[15] = 1.0f;
    fx.in.min_p[16] = -0.0f;
    fx.in.rep[18] = FLT_MAX;
    fx.in.rep[19] = 1e-3f;
    fx.in.pres[20] = -5.0f;
    fx.in.freq[20] = -2.0f;
    fx.in.pres[21] = -FLT_MAX / 4;
    fx.in.seed[22] = UINT64_MAX;
    fx.in.offset[22] = UINT64_MAX;
    fx.in.seed[23] = 0;
    fx.in.offset[23] = UINT64_MAX;
    EXPECT_OK();
    for (int r = 0; r < B; ++r) {
        cr_assert_eq(fx.r.valid[r], 1, "row %d", r);
        for (int j = 0; j < N; ++j)
            cr_assert(fx.r.tokens[r * N + j] >= 0 && fx.r.tokens[r * N + j] < V, "row %d: %d",
                      r, fx.r.tokens[r * N + j]);
    }
    cr_assert_eq(fx.r.kept[7], 1, "top_k 1 keeps %d", fx.r.kept[7]);
    cr_assert_eq(fx.r.kept[13], 1, "tiny top_p keeps %d", fx.r.kept[13]);

    /* Disabled spellings give the bytes of the canonical disabled value. */
    kt_result first = kt_result_alloc(B, V, N);
    memcpy(first.tokens, fx.r.tokens, (size_t)B * N * 4);
    memcpy(first.logprobs, fx.r.logprobs, (size_t)B * N * 4);
    memcpy(first.raw_logprobs, fx.r.raw_logprobs, (size_t)B * N * 4);
    memcpy(first.probs, fx.r.probs, (size_t)B * V * 4);
    memcpy(first.kept, fx.r.kept, (size_t)B * 4);
    memcpy(first.valid, fx.r.valid, (size_t)B);
    fx.in.top_k[17] = fx.in.top_k[3] = fx.in.top_k[4] = fx.in.top_k[5] = fx.in.top_k[6] = 0;
    fx.in.temp[9] = 0.0f;
    fx.in.min_p[16] = 0.0f;
    EXPECT_OK();
    const int same[] = { 17, 3, 4, 5, 6, 9, 16 };
    for (size_t i = 0; i < sizeof same / sizeof *same; ++i)
        cr_assert(kt_row_equal(&first, same[i], &fx.r, same[i]), "row %d differs", same[i]);
    kt_result_free(&first);

    /* The same extremes as scalars. */
    fx.params.top_k = NULL;
    fx.params.top_k_all = INT32_MIN;
    fx.params.seed = fx.params.offset = NULL;
    fx.params.seed_all = fx.params.offset_all = UINT64_MAX;
    fx.params.temperature = NULL;
    fx.params.temperature_all = FLT_TRUE_MIN;
    EXPECT_OK();
    fx.params.top_k_all = INT32_MAX;
    fx.params.min_p = NULL;
    fx.params.min_p_all = 1.0f;
    fx.params.top_p = NULL;
    fx.params.top_p_all = 1.0f;
    EXPECT_OK();
}

Test(errors, history_offsets_need_not_start_at_zero)
{
    kt_result first = kt_result_alloc(B, V, N);
    kiln_outputs o = kt_outputs(&first);
    cr_assert_eq(kiln_sample(fx.sp, &fx.batch, &fx.params, &o, fx.ws, fx.wsz, NULL),
                 KILN_SUCCESS);
    for (int64_t i = fx.in.off[B] - 1; i >= 0; --i)
        fx.in.ids[i + 3] = fx.in.ids[i];
    for (int r = 0; r <= B; ++r)
        fx.in.off[r] += 3;
    fx.in.ids[0] = fx.in.ids[1] = fx.in.ids[2] = -7; /* not in any row: never checked */
    EXPECT_OK();
    cr_assert(kt_result_equal(&first, &fx.r));
    kt_result_free(&first);
}

/* ------------------------------------------------------------------ config */

typedef struct ccase {
    const char *field;
    int64_t value;
    const char *need;
} ccase;

static void set_config(kiln_config *c, const char *field, int64_t v)
{
    if (!strcmp(field, "max_batch")) c->max_batch = v;
    else if (!strcmp(field, "max_vocab")) c->max_vocab = v;
    else if (!strcmp(field, "max_samples")) c->max_samples = (int32_t)v;
    else if (!strcmp(field, "max_history")) c->max_history = v;
    else if (!strcmp(field, "num_threads")) c->num_threads = (int)v;
    else if (!strcmp(field, "backend")) c->backend = (kiln_backend)v;
    else cr_assert_fail("no field %s", field);
}

static kiln_config valid_config(void)
{
    kiln_config c = KILN_CONFIG_INIT;
    c.max_batch = 4;
    c.max_vocab = 100;
    c.max_samples = 2;
    c.max_history = 10;
    c.num_threads = 1;
    return c;
}

static void expect_create_at(int line, const kiln_config *c, kiln_status want, const char *need)
{
    kiln_sampler *s = (kiln_sampler *)(uintptr_t)0x1234; /* must become NULL */
    kiln_status st = kiln_sampler_create(c, &s);
    const char *msg = kiln_last_error();
    cr_assert_eq(st, want, "line %d: status %d (%s), expected %d; message \"%s\"", line, (int)st,
                 kiln_status_string(st), (int)want, msg);
    if (want == KILN_SUCCESS) {
        cr_assert_not_null(s);
        cr_assert_str_eq(msg, "");
        kiln_sampler_destroy(s);
        return;
    }
    cr_assert_null(s, "line %d: *sampler not reset to NULL on failure", line);
    cr_assert(strstr(msg, need) != NULL, "line %d: message \"%s\" does not contain \"%s\"", line,
              msg, need);
}
#define EXPECT_CREATE(c, want, need) expect_create_at(__LINE__, c, want, need)

Test(config, bad_fields)
{
    const ccase cases[] = {
        { "max_vocab", 0, "config.max_vocab = 0" },
        { "max_vocab", -1, "config.max_vocab = -1" },
        { "max_vocab", (int64_t)1 << 24, "config.max_vocab = 16777216" },
        { "max_vocab", INT64_MAX, "config.max_vocab" },
        { "max_batch", 0, "config.max_batch = 0" },
        { "max_batch", -1, "config.max_batch = -1" },
        { "max_batch", INT64_MIN, "config.max_batch" },
        { "max_batch", (int64_t)1 << 31, "config.max_batch = 2147483648 is over 2^31 - 1" },
        { "max_batch", ((int64_t)1 << 31) + 1, "max_batch" },
        { "max_samples", 0, "config.max_samples = 0" },
        { "max_samples", -1, "config.max_samples = -1" },
        { "max_samples", (1 << 24) + 1, "max_samples" },
        { "max_history", -1, "config.max_history = -1" },
        { "max_history", INT64_MIN, "config.max_history" },
        { "max_history", ((int64_t)1 << 31) + 1, "max_history" },
        { "num_threads", -1, "config.num_threads = -1" },
        { "num_threads", INT_MIN, "config.num_threads" },
        { "backend", 2, "config.backend = 2" },
        { "backend", -1, "config.backend = -1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        kiln_config c = valid_config();
        set_config(&c, cases[i].field, cases[i].value);
        EXPECT_CREATE(&c, KILN_ERROR_INVALID_CONFIG, cases[i].need);
    }
}

Test(config, limits_at_the_edge_are_accepted)
{
    const ccase cases[] = {
        { "max_vocab", 1, NULL },
        { "max_vocab", KILN_MAX_VOCAB_SIZE, NULL },
        { "max_batch", INT32_MAX, NULL },
        { "max_samples", 1 << 24, NULL },
        { "max_history", 0, NULL },
        { "max_history", (int64_t)1 << 31, NULL },
        { "num_threads", 0, NULL },
        { "num_threads", 64, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        kiln_config c = valid_config();
        set_config(&c, cases[i].field, cases[i].value);
        EXPECT_CREATE(&c, KILN_SUCCESS, NULL);
    }
}

Test(config, null_arguments)
{
    kiln_config c = valid_config();
    EXPECT_CREATE(NULL, KILN_ERROR_NULL_POINTER, "config");
    cr_assert_eq(kiln_sampler_create(&c, NULL), KILN_ERROR_NULL_POINTER);
    cr_assert(strstr(kiln_last_error(), "sampler") != NULL, "\"%s\"", kiln_last_error());
}

Test(config, struct_size)
{
    const size_t bad[] = { 0, 1, 7, sizeof(kiln_config) + 1, sizeof(kiln_config) + 8, SIZE_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        kiln_config c = valid_config();
        c.struct_size = bad[i];
        char need[96];
        snprintf(need, sizeof need, "kiln_config.struct_size = %zu", bad[i]);
        EXPECT_CREATE(&c, KILN_ERROR_INVALID_CONFIG, need);
    }
}

Test(config, cuda_backend)
{
    /* Either CUDA is built in and a device exists, or the backend is
     * unavailable -- with a message, and *sampler NULL. */
    kiln_config c = valid_config();
    c.backend = KILN_BACKEND_CUDA;
    kiln_sampler *s = (kiln_sampler *)(uintptr_t)0x1234;
    kiln_status st = kiln_sampler_create(&c, &s);
    /* on the GPU machine (scripts/gpu-check) the backend must be there */
    if (kt_require_gpu())
        cr_assert_eq(st, KILN_SUCCESS, "KILN_REQUIRE_GPU=1 but the CUDA backend is unavailable: %s",
                     kiln_last_error());
    if (st == KILN_SUCCESS) {
        cr_assert(kt_have_cuda(NULL));
        kiln_backend be = KILN_BACKEND_CPU;
        cr_assert_eq(kiln_sampler_backend(s, &be), KILN_SUCCESS);
        cr_assert_eq(be, KILN_BACKEND_CUDA);
        kiln_sampler_destroy(s);
    } else {
        cr_assert_eq(st, KILN_ERROR_BACKEND_UNAVAILABLE, "status %d (%s): %s", (int)st,
                     kiln_status_string(st), kiln_last_error());
        cr_assert_neq(kiln_last_error()[0], '\0', "no message");
        cr_assert_null(s);
        cr_assert(!kt_have_cuda(NULL));
    }
    /* A device ordinal that cannot exist is unavailable either way. */
    const int devices[] = { -1, 1 << 20 };
    for (int i = 0; i < 2; ++i) {
        c.device = devices[i];
        EXPECT_CREATE(&c, KILN_ERROR_BACKEND_UNAVAILABLE, "");
        cr_assert_neq(kiln_last_error()[0], '\0', "device %d: no message", devices[i]);
    }
}

/* ----------------------------------------------------------- invalid rows */

#define IB 10
#define IV 16
#define IN 4
#define IH 4

/* A batch with invalid rows between valid ones, with everything per row so
 * any row can be re-run alone from pointers into the same arrays. */
typedef struct irows {
    float x[IB * IV];
    int64_t off[IB + 1];
    int32_t ids[IB * IH];
    int32_t prompt[IB];
    float temp[IB], rep[IB], pres[IB], freq[IB], top_p[IB];
    int32_t top_k[IB];
    uint64_t seed[IB];
} irows;

static void irows_build(irows *t)
{
    memset(t, 0, sizeof *t);
    for (int r = 0; r < IB; ++r) {
        ks_zipf(t->x + r * IV, IV, 900 + (uint64_t)r);
        t->temp[r] = 0.9f;
        t->rep[r] = 1.2f;
        t->pres[r] = 0.3f;
        t->freq[r] = 0.2f;
        t->top_p[r] = 0.95f;
        t->top_k[r] = r % 2 ? 0 : 6;
        t->seed[r] = 1000u + (uint64_t)r;
        t->off[r] = r * IH;
        t->ids[r * IH + 0] = (r + 1) % IV;
        t->ids[r * IH + 1] = (r + 2) % IV;
        t->ids[r * IH + 2] = (r + 2) % IV;
        t->ids[r * IH + 3] = (r + 5) % IV;
        t->prompt[r] = 1;
    }
    t->off[IB] = IB * IH;
    const float inf = INFINITY;
    t->x[1 * IV + 5] = NAN;                    /* row 1: NaN logit */
    t->x[2 * IV + 9] = inf;                    /* row 2: +inf logit */
    for (int i = 0; i < IV; ++i)               /* row 3: all -inf, greedy */
        t->x[3 * IV + i] = -inf;
    t->temp[3] = 0.0f;
    t->x[4 * IV + 6] = 3e38f;                  /* row 4: 3e38 / 0.5 = +inf */
    t->rep[4] = 0.5f;                          /* (id 6 is in row 4's history) */
    t->x[5 * IV + 7] = -inf;                   /* row 5: -inf - (-FLT_MAX * 2) = NaN */
    t->freq[5] = -FLT_MAX;                     /* (id 7 generated twice) */
    t->rep[5] = 1.0f;
    t->x[6 * IV + 8] = 3e38f;                  /* row 6: 3e38 - (-3e38) = +inf */
    t->pres[6] = -3e38f;
    t->rep[6] = 1.0f;
    t->freq[6] = 0.0f;
    for (int i = 0; i < IV; ++i)               /* row 7: one finite logit, valid */
        t->x[7 * IV + i] = i == 11 ? -3.0f : -inf;
    t->temp[8] = 0.0f;                         /* row 8: greedy, valid */
}

static int row_is_invalid_ok(const kt_result *r, int64_t row, char *why, size_t len)
{
    for (int j = 0; j < r->n; ++j) {
        uint32_t lp, raw;
        memcpy(&lp, &r->logprobs[row * r->n + j], 4);
        memcpy(&raw, &r->raw_logprobs[row * r->n + j], 4);
        if (r->tokens[row * r->n + j] != -1 || lp != 0x7FC00000u || raw != 0x7FC00000u) {
            snprintf(why, len, "draw %d: token %d, logprob 0x%08x, raw 0x%08x", j,
                     r->tokens[row * r->n + j], lp, raw);
            return 0;
        }
    }
    if (r->valid[row] != 0 || r->kept[row] != 0) {
        snprintf(why, len, "valid %d, kept %d", r->valid[row], r->kept[row]);
        return 0;
    }
    if (!all_bytes(r->probs + row * r->vocab, (size_t)r->vocab * 4, 0)) {
        snprintf(why, len, "probs not all +0");
        return 0;
    }
    return 1;
}

static kiln_status sample_irows(kt_sampler *s, const irows *t, int64_t first, int64_t rows,
                                kt_result *out)
{
    int64_t off[IB + 1];
    for (int64_t r = 0; r <= rows; ++r)
        off[r] = t->off[first + r] - t->off[first];
    kiln_batch b = kt_batch_f32(t->x + first * IV, rows, IV, IN);
    b.history_offsets = off;
    b.history_ids = t->ids + t->off[first];
    b.prompt_lengths = t->prompt + first;
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = t->temp + first;
    p.repetition_penalty = t->rep + first;
    p.presence_penalty = t->pres + first;
    p.frequency_penalty = t->freq + first;
    p.top_p = t->top_p + first;
    p.top_k = t->top_k + first;
    p.seed = t->seed + first;
    p.offset_all = 42;
    return kt_sample(s, &b, &p, out);
}

Test(invalid_rows, succeed_and_leave_neighbours_alone)
{
    static irows t;
    irows_build(&t);
    const int invalid[IB] = { 0, 1, 1, 1, 1, 1, 1, 0, 0, 0 };
    kt_sampler s = cpu_create(IB, IV, IN, IH, 3);
    kt_result all = kt_result_alloc(IB, IV, IN);
    cr_assert_eq(sample_irows(&s, &t, 0, IB, &all), KILN_SUCCESS, "%s", kiln_last_error());
    cr_assert_str_eq(kiln_last_error(), "");
    kt_result one = kt_result_alloc(1, IV, IN);
    for (int r = 0; r < IB; ++r) {
        char why[128] = "";
        if (invalid[r])
            cr_assert(row_is_invalid_ok(&all, r, why, sizeof why), "row %d: %s", r, why);
        else
            cr_assert_eq(all.valid[r], 1, "row %d should be valid", r);
        kt_result_poison(&one);
        cr_assert_eq(sample_irows(&s, &t, r, 1, &one), KILN_SUCCESS, "%s", kiln_last_error());
        cr_assert(kt_row_equal(&all, r, &one, 0), "row %d differs in the batch and alone", r);
    }
    cr_assert_eq(all.kept[7], 1);
    cr_assert_eq(all.tokens[7 * IN], 11);
    kt_result_free(&one);
    kt_result_free(&all);
    kt_destroy(&s);
}

Test(invalid_rows, half_precision)
{
    /* f16 NaN / +inf and bf16 +inf / NaN are invalid; -inf masks. */
    const uint16_t f16[4 * 4] = { 0x3C00, 0x7E00, 0x4000, 0x3800,   /* NaN */
                                  0x3C00, 0x4000, 0x7C00, 0x3800,   /* +inf */
                                  0xFC00, 0xFC00, 0xFC00, 0xFC00,   /* all -inf */
                                  0xFC00, 0x4000, 0xFC00, 0x3C00 }; /* valid */
    const uint16_t bf16[4 * 4] = { 0x3F80, 0x7FC0, 0x4000, 0x3F00,
                                   0x3F80, 0x4000, 0x7F80, 0x3F00,
                                   0xFF80, 0xFF80, 0xFF80, 0xFF80,
                                   0xFF80, 0x4000, 0xFF80, 0x3F80 };
    const uint16_t *data[2] = { f16, bf16 };
    const kiln_dtype dt[2] = { KILN_DTYPE_F16, KILN_DTYPE_BF16 };
    kt_sampler s = cpu_create(4, 4, 2, 0, 2);
    for (int d = 0; d < 2; ++d) {
        kt_result r = kt_result_alloc(4, 4, 2);
        kiln_batch b = kt_batch_f32(NULL, 4, 4, 2);
        b.dtype = dt[d];
        b.logits = data[d];
        kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
        cr_assert_eq(kt_sample(&s, &b, &p, &r), KILN_SUCCESS, "%s", kiln_last_error());
        for (int row = 0; row < 3; ++row) {
            char why[128] = "";
            cr_assert(row_is_invalid_ok(&r, row, why, sizeof why), "dtype %d row %d: %s", d, row,
                      why);
        }
        cr_assert_eq(r.valid[3], 1);
        cr_assert_eq(r.kept[3], 2);
        for (int j = 0; j < 2; ++j)
            cr_assert(r.tokens[6 + j] == 1 || r.tokens[6 + j] == 3, "drew %d", r.tokens[6 + j]);
        kt_result_free(&r);
    }
    kt_destroy(&s);
}
