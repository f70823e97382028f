/* Byte-level invariance (docs/semantics.md sections 7 and 13): a row's
 * output bytes depend on its own logits, parameters, seed and offset only:
 * not on its batch neighbours, its position, the thread count, the row
 * strides or the input dtype. Every comparison is a memcmp of every output,
 * requested and poisoned before the call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define V 2053
#define N 4
#define ROWS 257

typedef struct row_params {
    float t;
    int32_t k;
    float p, min_p;
    uint64_t seed, offset;
} row_params;

enum row_kind {
    KIND_ZIPF_LIKE,
    KIND_ZIPF,
    KIND_PEAKED,
    KIND_FLAT,
    KIND_MASKED,
    KIND_TIED,
    KIND_NAN,
    KIND_POS_INF,
    KIND_ALL_NEG_INF,
    KIND_COUNT
};

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void fill_row(float *x, int64_t vocab, uint64_t seed, int kind)
{
    ks_rng g = { seed * 0x9E3779B97F4A7C15ull + 17 };
    int64_t at = (int64_t)(ks_rng_u64(&g) % (uint64_t)vocab);
    switch (kind) {
    case KIND_ZIPF_LIKE: ks_zipf_like(x, vocab, seed); break;
    case KIND_ZIPF: ks_zipf(x, vocab, seed); break;
    case KIND_PEAKED: ks_peaked(x, vocab, seed); break;
    case KIND_FLAT: ks_flat(x, vocab, seed); break;
    case KIND_MASKED:
        ks_zipf(x, vocab, seed);
        for (int64_t i = 0; i < vocab; ++i)
            if (ks_rng_u64(&g) % 3 == 0)
                x[i] = -INFINITY;
        break;
    case KIND_TIED:
        ks_flat(x, vocab, seed);
        for (int64_t i = 0; i < vocab; i += 37)
            x[i] = 1.0f;
        x[vocab / 2] = -0.0f;
        break;
    case KIND_NAN:
        ks_zipf_like(x, vocab, seed);
        x[at] = f32_from_bits(0x7FC00000u | (uint32_t)(seed & 0xFFFF)); /* any payload */
        break;
    case KIND_POS_INF:
        ks_zipf(x, vocab, seed);
        x[at] = INFINITY;
        break;
    case KIND_ALL_NEG_INF:
        for (int64_t i = 0; i < vocab; ++i)
            x[i] = -INFINITY;
        break;
    }
}

static row_params random_params(ks_rng *g, int64_t vocab)
{
    static const float temps[] = { 0.0f, 0.25f, 0.7f, 1.0f, 1.3f, 3.0f, 1e-20f };
    static const float ps[] = { 1.0f, 1.0f, 0.95f, 0.8f, 0.5f, 1e-7f };
    static const float mps[] = { 0.0f, 0.0f, 0.02f, 0.1f, 0.5f, 1.0f };
    const int32_t ks[] = { 0, 0, -1, 1, 7, 50, (int32_t)vocab, (int32_t)vocab + 5 };
    row_params r;
    r.t = temps[ks_rng_u64(g) % (sizeof temps / sizeof *temps)];
    r.k = ks[ks_rng_u64(g) % (sizeof ks / sizeof *ks)];
    r.p = ps[ks_rng_u64(g) % (sizeof ps / sizeof *ps)];
    r.min_p = mps[ks_rng_u64(g) % (sizeof mps / sizeof *mps)];
    r.seed = ks_rng_u64(g);
    r.offset = ks_rng_u64(g) % 4 == 0 ? ks_rng_u64(g) : ks_rng_u64(g) % 1000;
    return r;
}

/* A batch of `rows` varied rows: every shape, about one invalid row in six. */
static void make_batch(float *x, row_params *rp, int64_t rows, int64_t vocab, uint64_t seed)
{
    ks_rng g = { seed };
    for (int64_t b = 0; b < rows; ++b) {
        int kind = (int)(ks_rng_u64(&g) % KIND_COUNT);
        fill_row(x + b * vocab, vocab, ks_rng_u64(&g), kind);
        rp[b] = random_params(&g, vocab);
    }
}

typedef struct param_arrays {
    float *t, *p, *min_p;
    int32_t *k;
    uint64_t *seed, *offset;
} param_arrays;

static param_arrays arrays_from(const row_params *rp, int64_t rows)
{
    param_arrays a;
    a.t = malloc((size_t)rows * 4);
    a.p = malloc((size_t)rows * 4);
    a.min_p = malloc((size_t)rows * 4);
    a.k = malloc((size_t)rows * 4);
    a.seed = malloc((size_t)rows * 8);
    a.offset = malloc((size_t)rows * 8);
    for (int64_t b = 0; b < rows; ++b) {
        a.t[b] = rp[b].t;
        a.p[b] = rp[b].p;
        a.min_p[b] = rp[b].min_p;
        a.k[b] = rp[b].k;
        a.seed[b] = rp[b].seed;
        a.offset[b] = rp[b].offset;
    }
    return a;
}

static void arrays_free(param_arrays *a)
{
    free(a->t);
    free(a->p);
    free(a->min_p);
    free(a->k);
    free(a->seed);
    free(a->offset);
}

static kiln_sampling_params params_of(const param_arrays *a)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature = a->t;
    p.top_k = a->k;
    p.top_p = a->p;
    p.min_p = a->min_p;
    p.seed = a->seed;
    p.offset = a->offset;
    return p;
}

static kiln_sampling_params params_scalar(const row_params *r)
{
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.temperature_all = r->t;
    p.top_k_all = r->k;
    p.top_p_all = r->p;
    p.min_p_all = r->min_p;
    p.seed_all = r->seed;
    p.offset_all = r->offset;
    return p;
}

static void run(kt_sampler *s, const kiln_batch *b, const kiln_sampling_params *p, kt_result *out)
{
    kt_result_poison(out);
    kiln_status st = kt_sample(s, b, p, out);
    cr_assert_eq(st, KILN_SUCCESS, "kiln_sample: %s (%s)", kiln_status_string(st),
                 kiln_last_error());
}

static void run_batch(kt_sampler *s, const float *x, const row_params *rp, int64_t rows,
                      int64_t vocab, int32_t n, kt_result *out)
{
    param_arrays a = arrays_from(rp, rows);
    kiln_sampling_params p = params_of(&a);
    kiln_batch b = kt_batch_f32(x, rows, vocab, n);
    run(s, &b, &p, out);
    arrays_free(&a);
}

/* One row alone; `scalars` passes its parameters as the *_all values rather
 * than as length-1 arrays (both must mean the same). */
static void run_alone(kt_sampler *s, const float *x, const row_params *rp, int64_t vocab,
                      int32_t n, int scalars, kt_result *out)
{
    if (!scalars) {
        run_batch(s, x, rp, 1, vocab, n, out);
        return;
    }
    kiln_sampling_params p = params_scalar(rp);
    kiln_batch b = kt_batch_f32(x, 1, vocab, n);
    run(s, &b, &p, out);
}

static void describe_row(const kt_result *r, int64_t row, char *buf, size_t len)
{
    snprintf(buf, len, "token0 %d logprob0 %08x raw0 %08x kept %d valid %d", r->tokens[row * r->n],
             f32_bits(r->logprobs[row * r->n]), f32_bits(r->raw_logprobs[row * r->n]),
             r->kept[row], r->valid[row]);
}

static void assert_row_equal(const kt_result *a, int64_t ra, const kt_result *b, int64_t rb,
                             const char *what)
{
    if (kt_row_equal(a, ra, b, rb))
        return;
    char da[160], db[160];
    describe_row(a, ra, da, sizeof da);
    describe_row(b, rb, db, sizeof db);
    cr_assert_fail("%s: row %lld (%s) differs from row %lld (%s)", what, (long long)ra, da,
                   (long long)rb, db);
}

/* ------------------------------------------------------------- batch */

Test(batch, each_row_alone_equals_its_row_in_the_batch)
{
    float *x = malloc(ROWS * V * sizeof *x);
    row_params rp[ROWS];
    make_batch(x, rp, ROWS, V, 101);
    kt_sampler s = kt_create(KILN_BACKEND_CPU, ROWS, V, N, 0, 2);
    kt_result all = kt_result_alloc(ROWS, V, N), one = kt_result_alloc(1, V, N);
    run_batch(&s, x, rp, ROWS, V, N, &all);

    int invalid = 0, greedy = 0;
    for (int64_t b = 0; b < ROWS; ++b) {
        invalid += all.valid[b] == 0;
        greedy += all.valid[b] && rp[b].t == 0.0f;
        run_alone(&s, x + b * V, &rp[b], V, N, (int)(b & 1), &one);
        assert_row_equal(&all, b, &one, 0, "batch vs alone");
    }
    cr_assert(invalid >= 10 && greedy >= 10, "the batch should mix row kinds: %d invalid, %d greedy",
              invalid, greedy);
    kt_result_free(&all);
    kt_result_free(&one);
    kt_destroy(&s);
    free(x);
}

Test(batch, permuting_rows_permutes_outputs)
{
    float *x = malloc(ROWS * V * sizeof *x), *px = malloc(ROWS * V * sizeof *px);
    row_params rp[ROWS], prp[ROWS];
    int64_t perm[ROWS];
    make_batch(x, rp, ROWS, V, 202);
    for (int64_t i = 0; i < ROWS; ++i)
        perm[i] = i;
    ks_rng g = { 7 };
    for (int64_t i = ROWS - 1; i > 0; --i) {
        int64_t j = (int64_t)(ks_rng_u64(&g) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < ROWS; ++i) {
        memcpy(px + i * V, x + perm[i] * V, V * sizeof *x);
        prp[i] = rp[perm[i]];
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, ROWS, V, N, 0, 2);
    kt_result a = kt_result_alloc(ROWS, V, N), b = kt_result_alloc(ROWS, V, N);
    run_batch(&s, x, rp, ROWS, V, N, &a);
    run_batch(&s, px, prp, ROWS, V, N, &b);
    for (int64_t i = 0; i < ROWS; ++i)
        assert_row_equal(&b, i, &a, perm[i], "permuted vs original");
    kt_result_free(&a);
    kt_result_free(&b);
    kt_destroy(&s);
    free(x);
    free(px);
}

Test(batch, one_row_repeated_1000_times)
{
    enum { R = 1000 };
    float *x = malloc((size_t)R * V * sizeof *x);
    ks_zipf_like(x, V, 5);
    for (int64_t b = 1; b < R; ++b)
        memcpy(x + b * V, x, V * sizeof *x);
    row_params rp[R];
    const row_params one_rp = { 0.8f, 50, 0.9f, 0.01f, 0xDEADBEEFCAFEull, 3 };
    for (int b = 0; b < R; ++b)
        rp[b] = one_rp;
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, V, N, 0, 3);
    kt_result all = kt_result_alloc(R, V, N), one = kt_result_alloc(1, V, N);
    run_batch(&s, x, rp, R, V, N, &all);
    run_alone(&s, x, &one_rp, V, N, 1, &one);
    cr_assert_eq(one.valid[0], 1);
    for (int64_t b = 0; b < R; ++b)
        assert_row_equal(&all, b, &one, 0, "repeated row vs alone");
    /* The same again with scalar parameters for the whole batch. */
    kiln_sampling_params p = params_scalar(&one_rp);
    kiln_batch bt = kt_batch_f32(x, R, V, N);
    run(&s, &bt, &p, &all);
    for (int64_t b = 0; b < R; ++b)
        assert_row_equal(&all, b, &one, 0, "repeated row (scalar params) vs alone");
    kt_result_free(&all);
    kt_result_free(&one);
    kt_destroy(&s);
    free(x);
}

/* ------------------------------------------------------------ threads */

Test(threads, thread_count_does_not_change_bytes)
{
    enum { H = 40 };
    float *x = malloc(ROWS * V * sizeof *x);
    row_params rp[ROWS];
    make_batch(x, rp, ROWS, V, 303);
    /* Histories too: the per-thread scratch that counts history tokens must
     * not leak from one row to the next on the same thread. */
    int64_t off[ROWS + 1];
    int32_t *ids = malloc(ROWS * H * sizeof *ids), prompt[ROWS];
    float rep[ROWS], pres[ROWS], freq[ROWS];
    ks_rng g = { 99 };
    off[0] = 0;
    for (int64_t b = 0; b < ROWS; ++b) {
        int64_t len = (int64_t)(ks_rng_u64(&g) % H);
        for (int64_t i = 0; i < len; ++i)
            ids[off[b] + i] = (int32_t)(ks_rng_u64(&g) % 64);
        off[b + 1] = off[b] + len;
        prompt[b] = (int32_t)(ks_rng_u64(&g) % (uint64_t)(len + 1));
        rep[b] = (float)(0.5 + ks_rng_unit(&g));
        pres[b] = (float)(ks_rng_unit(&g) - 0.5);
        freq[b] = (float)(0.5 * ks_rng_unit(&g));
    }
    param_arrays a = arrays_from(rp, ROWS);
    kiln_sampling_params p = params_of(&a);
    p.repetition_penalty = rep;
    p.presence_penalty = pres;
    p.frequency_penalty = freq;
    kiln_batch bt = kt_batch_f32(x, ROWS, V, N);
    bt.history_offsets = off;
    bt.history_ids = ids;
    bt.prompt_lengths = prompt;

    static const int threads[] = { 1, 2, 3, 7, 0 };
    kt_result ref = kt_result_alloc(ROWS, V, N), r = kt_result_alloc(ROWS, V, N);
    for (size_t i = 0; i < sizeof threads / sizeof *threads; ++i) {
        kt_sampler s = kt_create(KILN_BACKEND_CPU, ROWS, V, N, H, threads[i]);
        kt_result *out = i == 0 ? &ref : &r;
        run(&s, &bt, &p, out);
        if (i > 0)
            for (int64_t b = 0; b < ROWS; ++b)
                if (!kt_row_equal(&ref, b, &r, b))
                    cr_assert_fail("num_threads %d: row %lld differs from num_threads 1 "
                                   "(token0 %d vs %d)",
                                   threads[i], (long long)b, r.tokens[b * N], ref.tokens[b * N]);
        /* Twice on the same sampler: the scratch left by a call is clean. */
        kt_result again = kt_result_alloc(ROWS, V, N);
        run(&s, &bt, &p, &again);
        cr_assert(kt_result_equal(out, &again), "num_threads %d: a second call differs",
                  threads[i]);
        kt_result_free(&again);
        kt_destroy(&s);
    }
    arrays_free(&a);
    kt_result_free(&ref);
    kt_result_free(&r);
    free(ids);
    free(x);
}

/* ---------------------------------------------------- reproducibility */

Test(reproducibility, same_seed_and_offset_same_bytes)
{
    float *x = malloc(ROWS * V * sizeof *x);
    row_params rp[ROWS];
    make_batch(x, rp, ROWS, V, 404);
    kt_sampler s = kt_create(KILN_BACKEND_CPU, ROWS, V, N, 0, 2);
    kt_result a = kt_result_alloc(ROWS, V, N), b = kt_result_alloc(ROWS, V, N);
    run_batch(&s, x, rp, ROWS, V, N, &a);
    run_batch(&s, x, rp, ROWS, V, N, &b);
    cr_assert(kt_result_equal(&a, &b), "two calls on one sampler differ");
    kt_destroy(&s);
    s = kt_create(KILN_BACKEND_CPU, ROWS * 2, V * 2, N * 4, 16, 1);
    run_batch(&s, x, rp, ROWS, V, N, &b);
    cr_assert(kt_result_equal(&a, &b), "a fresh sampler with other limits differs");
    kt_result_free(&a);
    kt_result_free(&b);
    kt_destroy(&s);
    free(x);
}

/* Samples 100 copies of a flat row, row i with seed seeds[i] and offset
 * offsets[i], and returns how many distinct 16-draw sequences came out. */
static int distinct_sequences(const uint64_t *seeds, const uint64_t *offsets)
{
    enum { R = 100, D = 16, VF = 1024 };
    float *x = malloc((size_t)R * VF * sizeof *x);
    ks_flat(x, VF, 8);
    for (int b = 1; b < R; ++b)
        memcpy(x + (size_t)b * VF, x, VF * sizeof *x);
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, VF, D, 0, 2);
    kt_result r = kt_result_alloc(R, VF, D);
    kiln_sampling_params p = KILN_SAMPLING_PARAMS_INIT;
    p.seed = seeds;
    p.offset = offsets;
    kiln_batch bt = kt_batch_f32(x, R, VF, D);
    run(&s, &bt, &p, &r);
    int distinct = 0;
    for (int i = 0; i < R; ++i) {
        int seen = 0;
        for (int j = 0; j < i && !seen; ++j)
            seen = memcmp(r.tokens + i * D, r.tokens + j * D, D * 4) == 0;
        distinct += !seen;
        cr_assert_eq(r.valid[i], 1);
    }
    kt_result_free(&r);
    kt_destroy(&s);
    free(x);
    return distinct;
}

Test(reproducibility, different_seeds_and_offsets_differ)
{
    uint64_t seeds[100], offsets[100];
    struct {
        const char *what;
        uint64_t seed_mul, seed_add, off_mul, off_add;
    } cases[] = {
        { "consecutive seeds", 1, 1000, 0, 5 },
        { "seeds differing in the high 32 bits", 1ull << 32, 77, 0, 5 },
        { "consecutive offsets", 0, 42, 1, 0 },
        { "offsets differing in bits 40..46", 0, 42, 1ull << 40, 3 },
        { "offsets near 2^64", 0, 42, 1, ~0ull - 200 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; ++c) {
        for (uint64_t i = 0; i < 100; ++i) {
            seeds[i] = cases[c].seed_mul * i + cases[c].seed_add;
            offsets[i] = cases[c].off_mul * i + cases[c].off_add;
        }
        int d = distinct_sequences(seeds, offsets);
        cr_assert(d >= 95, "%s: only %d of 100 16-draw sequences are distinct", cases[c].what, d);
    }
}

Test(reproducibility, draw_j_does_not_depend_on_n)
{
    enum { NMAX = 64 };
    float x[V];
    ks_zipf_like(x, V, 31);
    const row_params rp = { 1.2f, 0, 1.0f, 0.0f, 12345, 678 };
    kt_sampler s = kt_create(KILN_BACKEND_CPU, 1, V, NMAX, 0, 1);
    kt_result big = kt_result_alloc(1, V, NMAX);
    run_alone(&s, x, &rp, V, NMAX, 1, &big);
    int distinct_tokens = 0;
    for (int j = 0; j < NMAX; ++j) {
        int seen = 0;
        for (int i = 0; i < j; ++i)
            seen |= big.tokens[i] == big.tokens[j];
        distinct_tokens += !seen;
    }
    cr_assert(distinct_tokens >= 4, "64 draws at T = 1.2 gave only %d distinct tokens",
              distinct_tokens);
    static const int ns[] = { 1, 2, 7, 33, 63 };
    for (size_t c = 0; c < sizeof ns / sizeof *ns; ++c) {
        int n = ns[c];
        kt_result small = kt_result_alloc(1, V, n);
        run_alone(&s, x, &rp, V, n, 0, &small);
        for (int j = 0; j < n; ++j)
            cr_assert(small.tokens[j] == big.tokens[j] &&
                          f32_bits(small.logprobs[j]) == f32_bits(big.logprobs[j]) &&
                          f32_bits(small.raw_logprobs[j]) == f32_bits(big.raw_logprobs[j]),
                      "n = %d: draw %d is token %d (logprob %a), with n = %d it is %d (%a)", n, j,
                      small.tokens[j], (double)small.logprobs[j], NMAX, big.tokens[j],
                      (double)big.logprobs[j]);
        cr_assert(memcmp(small.probs, big.probs, V * 4) == 0 && small.kept[0] == big.kept[0] &&
                      small.valid[0] == big.valid[0],
                  "n = %d: probs/kept/valid differ from n = %d", n, NMAX);
        kt_result_free(&small);
    }
    kt_result_free(&big);
    kt_destroy(&s);
}

/* ------------------------------------------------------------ strides */

Test(strides, strided_logits_equal_packed_rows)
{
    enum { R = 24, STRIDE = V + 13 };
    float *x = malloc(R * V * sizeof *x), *sx = malloc(R * STRIDE * sizeof *sx);
    row_params rp[R];
    make_batch(x, rp, R, V, 505);
    ks_rng g = { 3 };
    for (int64_t b = 0; b < R; ++b) {
        memcpy(sx + b * STRIDE, x + b * V, V * sizeof *x);
        for (int64_t i = V; i < STRIDE; ++i) {
            static const uint32_t garbage[] = { 0x7FC00000u, 0x7F800000u, 0xFF800000u,
                                                0x7F7FFFFFu, 0x00000001u, 0xFFFFFFFFu };
            sx[b * STRIDE + i] = f32_from_bits(garbage[ks_rng_u64(&g) % 6]);
        }
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, V, N, 0, 2);
    kt_result packed = kt_result_alloc(R, V, N), strided = kt_result_alloc(R, V, N);
    param_arrays a = arrays_from(rp, R);
    kiln_sampling_params p = params_of(&a);
    kiln_batch bt = kt_batch_f32(x, R, V, N);
    run(&s, &bt, &p, &packed);
    bt.logits = sx;
    bt.row_stride = STRIDE;
    run(&s, &bt, &p, &strided);
    for (int64_t b = 0; b < R; ++b)
        assert_row_equal(&strided, b, &packed, b, "strided vs packed");

    /* bf16 rows with a stride: the same padding rule for 16-bit input. */
    uint16_t *hx = malloc(R * STRIDE * sizeof *hx);
    for (int64_t b = 0; b < R; ++b)
        for (int64_t i = 0; i < STRIDE; ++i) {
            uint32_t u = f32_bits(sx[b * STRIDE + i]);
            hx[b * STRIDE + i] = (uint16_t)(u >> 16);
            if (i < V)
                x[b * V + i] = f32_from_bits(u & 0xFFFF0000u);
        }
    bt.logits = x;
    bt.row_stride = 0;
    run(&s, &bt, &p, &packed);
    bt.dtype = KILN_DTYPE_BF16;
    bt.logits = hx;
    bt.row_stride = STRIDE;
    run(&s, &bt, &p, &strided);
    for (int64_t b = 0; b < R; ++b)
        assert_row_equal(&strided, b, &packed, b, "strided bf16 vs packed f32");
    arrays_free(&a);
    kt_result_free(&packed);
    kt_result_free(&strided);
    kt_destroy(&s);
    free(hx);
    free(sx);
    free(x);
}

Test(strides, probs_row_stride_writes_exactly_v_entries)
{
    enum { R = 40, PS = V + 9 };
    const uint32_t sentinel = 0x7FBADBADu;
    float *x = malloc(R * V * sizeof *x);
    row_params rp[R];
    make_batch(x, rp, R, V, 606);
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, V, N, 0, 2);
    if (s.backend != KILN_BACKEND_CPU) {
        /* kt_sample packs probs on the way back from a device; this check
         * needs the caller's own padded buffer, so host memory. */
        kt_destroy(&s);
        free(x);
        cr_skip_test("probs_row_stride check runs on the CPU backend only");
    }
    kt_result packed = kt_result_alloc(R, V, N), r = kt_result_alloc(R, V, N);
    run_batch(&s, x, rp, R, V, N, &packed);

    /* One spare padded row after the last, to see nothing runs past it. */
    uint32_t *probs = malloc((R + 1) * PS * 4);
    for (int64_t i = 0; i < (R + 1) * PS; ++i)
        probs[i] = sentinel;
    param_arrays a = arrays_from(rp, R);
    kiln_sampling_params p = params_of(&a);
    kiln_batch bt = kt_batch_f32(x, R, V, N);
    kiln_outputs o = kt_outputs(&r);
    o.probs = (float *)probs;
    o.probs_row_stride = PS;
    kt_result_poison(&r);
    kiln_status st = kiln_sample(s.sampler, &bt, &p, &o, s.workspace, s.workspace_size, NULL);
    cr_assert_eq(st, KILN_SUCCESS, "%s", kiln_last_error());
    int kinds[3] = { 0, 0, 0 }; /* invalid, greedy, sampled */
    for (int64_t b = 0; b < R; ++b) {
        kinds[!r.valid[b] ? 0 : rp[b].t == 0.0f ? 1 : 2]++;
        cr_assert(memcmp(probs + b * PS, packed.probs + b * V, V * 4) == 0,
                  "row %lld: probs with probs_row_stride %d differ from packed", (long long)b, PS);
        memcpy(r.probs + b * V, probs + b * PS, V * 4);
        for (int64_t i = V; i < PS; ++i)
            cr_assert_eq(probs[b * PS + i], sentinel,
                         "row %lld: padding entry %lld overwritten with %08x", (long long)b,
                         (long long)i, probs[b * PS + i]);
    }
    for (int64_t i = R * PS; i < (R + 1) * PS; ++i)
        cr_assert_eq(probs[i], sentinel, "entry %lld past the last row overwritten", (long long)i);
    cr_assert(kt_result_equal(&r, &packed), "other outputs differ with a probs stride");
    cr_assert(kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0,
              "want invalid, greedy and sampled rows: %d %d %d", kinds[0], kinds[1], kinds[2]);
    arrays_free(&a);
    free(probs);
    kt_result_free(&packed);
    kt_result_free(&r);
    kt_destroy(&s);
    free(x);
}

/* ------------------------------------------------------- f16 and bf16 */

/* binary16 bits of a float that binary16 holds exactly (asserted), written
 * on the bits so it shares nothing with kiln's converter. */
static uint16_t f16_exact(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t e = (u >> 23) & 0xFFu, man = u & 0x7FFFFFu;
    if (e == 0xFFu) {
        cr_assert(man == 0 || (man >> 13) != 0, "NaN payload %06x lost in f16", man);
        return (uint16_t)(sign | 0x7C00u | (man >> 13));
    }
    if (e == 0) {
        cr_assert_eq(man, 0u, "f32 subnormal %a is not a binary16 value", (double)f);
        return sign;
    }
    int exp = (int)e - 127;
    cr_assert(exp <= 15, "%a overflows binary16", (double)f);
    if (exp >= -14) {
        cr_assert_eq(man & 0x1FFFu, 0u, "%a has too many bits for binary16", (double)f);
        return (uint16_t)(sign | (uint32_t)(exp + 15) << 10 | (man >> 13));
    }
    uint32_t full = man | 0x800000u; /* value = full * 2^(exp - 23) = m * 2^-24 */
    int sh = -(exp + 1);
    cr_assert(sh < 24 && (full & ((1u << sh) - 1)) == 0, "%a is below binary16's subnormals",
              (double)f);
    return (uint16_t)(sign | (full >> sh));
}

/* Independent decoder used only to check f16_exact round-trips. */
static float f16_decode(uint16_t h)
{
    int e = (h >> 10) & 0x1F, man = h & 0x3FF;
    double v = e == 0 ? ldexp(man, -24) : e == 31 ? (man ? NAN : INFINITY) : ldexp(1024 + man, e - 25);
    return (float)((h & 0x8000) ? -v : v);
}

static uint16_t bf16_exact(float f)
{
    uint32_t u = f32_bits(f);
    cr_assert_eq(u & 0xFFFFu, 0u, "%a has too many bits for bf16", (double)f);
    return (uint16_t)(u >> 16);
}

/* Rows of binary16/bf16-exact values: quantised shapes plus the special
 * values (masks, -0, subnormals, extremes, invalid rows). */
static void make_half_rows(float *x, row_params *rp, int64_t rows, int bf16)
{
    make_batch(x, rp, rows, V, bf16 ? 808 : 707);
    const double scale = bf16 ? 16.0 : 128.0; /* 8 or 11 significant bits below 16 */
    for (int64_t b = 0; b < rows; ++b) {
        float *r = x + b * V;
        for (int64_t i = 0; i < V; ++i) {
            uint32_t u = f32_bits(r[i]);
            if ((u & 0x7F800000u) == 0x7F800000u) {
                r[i] = f32_from_bits(u & 0xFFC00000u); /* NaN payload both formats keep */
                continue;
            }
            double q = nearbyint((double)r[i] * scale) / scale;
            r[i] = (float)fmax(-15.5, fmin(15.5, q));
        }
        switch (b % 5) {
        case 0:
            r[1] = -0.0f;
            r[2] = bf16 ? f32_from_bits(0x00010000u) : (float)ldexp(5.0, -24);
            r[3] = bf16 ? f32_from_bits(0x80030000u) : (float)ldexp(-3.0, -24);
            break;
        case 1: r[b % V] = bf16 ? f32_from_bits(0x7F7F0000u) : 65504.0f; break;
        case 2: r[(b * 7) % V] = bf16 ? f32_from_bits(0xFF7F0000u) : -65504.0f; break;
        default: break;
        }
    }
}

static void check_half(int bf16)
{
    enum { R = 120 };
    float *x = malloc(R * V * sizeof *x);
    uint16_t *h = malloc(R * V * sizeof *h);
    row_params rp[R];
    make_half_rows(x, rp, R, bf16);
    int specials = 0;
    for (int64_t i = 0; i < R * V; ++i) {
        h[i] = bf16 ? bf16_exact(x[i]) : f16_exact(x[i]);
        if (!bf16 && x[i] == x[i])
            cr_assert_eq(f32_bits(f16_decode(h[i])), f32_bits(x[i]), "f16 round trip of %a",
                         (double)x[i]);
        specials += (h[i] & 0x7FFF) != 0 && (h[i] & 0x7C00) == 0;
    }
    cr_assert(bf16 || specials > 0, "no f16 subnormal in the data");
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, V, N, 0, 2);
    kt_result a = kt_result_alloc(R, V, N), b = kt_result_alloc(R, V, N);
    param_arrays pa = arrays_from(rp, R);
    kiln_sampling_params p = params_of(&pa);
    kiln_batch bt = kt_batch_f32(x, R, V, N);
    run(&s, &bt, &p, &a);
    bt.dtype = bf16 ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
    bt.logits = h;
    run(&s, &bt, &p, &b);
    int valid = 0;
    for (int64_t r = 0; r < R; ++r) {
        valid += a.valid[r];
        assert_row_equal(&b, r, &a, r, bf16 ? "bf16 vs f32" : "f16 vs f32");
    }
    cr_assert(valid > R / 2 && valid < R, "%d of %d rows valid", valid, R);
    arrays_free(&pa);
    kt_result_free(&a);
    kt_result_free(&b);
    kt_destroy(&s);
    free(h);
    free(x);
}

Test(dtypes, f16_equals_f32)
{
    check_half(0);
}

Test(dtypes, bf16_equals_f32)
{
    check_half(1);
}

/* ------------------------------------------------------- invalid rows */

Test(invalid, invalid_rows_never_disturb_neighbours)
{
    enum { R = 30, NI = 8 };
    float *x = malloc(R * V * sizeof *x);
    row_params rp[R];
    ks_rng g = { 11 };
    for (int64_t b = 0; b < R; ++b) {
        float *r = x + b * V;
        rp[b] = random_params(&g, V);
        if (b % 2 == 0) {
            fill_row(r, V, (uint64_t)b, (int)(b / 2) % 6); /* valid kinds */
            continue;
        }
        ks_zipf_like(r, V, (uint64_t)b);
        switch ((b / 2) % 7) {
        case 0: r[0] = NAN; break;
        case 1: r[V - 1] = NAN; break;
        case 2: r[V / 2] = f32_from_bits(0xFFC01234u); break; /* negative NaN with payload */
        case 3: r[5] = INFINITY; break;
        case 4: r[0] = f32_from_bits(0x7F800001u); break; /* signalling NaN */
        case 5:
            for (int64_t i = 0; i < V; ++i)
                r[i] = -INFINITY;
            break;
        case 6:
            for (int64_t i = 0; i < V; ++i)
                r[i] = i == 9 ? NAN : -INFINITY;
            break;
        }
    }
    kt_sampler s = kt_create(KILN_BACKEND_CPU, R, V, NI, 0, 2);
    kt_result all = kt_result_alloc(R, V, NI), one = kt_result_alloc(1, V, NI);
    run_batch(&s, x, rp, R, V, NI, &all);
    for (int64_t b = 0; b < R; ++b) {
        run_alone(&s, x + b * V, &rp[b], V, NI, 0, &one);
        assert_row_equal(&all, b, &one, 0, "batch with invalid rows vs alone");
        if (b % 2 == 0) {
            cr_assert_eq(all.valid[b], 1, "row %lld should be valid", (long long)b);
            continue;
        }
        cr_assert(all.valid[b] == 0 && all.kept[b] == 0, "row %lld: valid %d kept %d",
                  (long long)b, all.valid[b], all.kept[b]);
        for (int j = 0; j < NI; ++j) {
            cr_assert_eq(all.tokens[b * NI + j], -1);
            cr_assert_eq(f32_bits(all.logprobs[b * NI + j]), 0x7FC00000u, "logprob %08x",
                         f32_bits(all.logprobs[b * NI + j]));
            cr_assert_eq(f32_bits(all.raw_logprobs[b * NI + j]), 0x7FC00000u, "raw %08x",
                         f32_bits(all.raw_logprobs[b * NI + j]));
        }
        for (int64_t i = 0; i < V; ++i)
            cr_assert_eq(f32_bits(all.probs[b * V + i]), 0u, "row %lld prob %lld = %a",
                         (long long)b, (long long)i, (double)all.probs[b * V + i]);
    }
    kt_result_free(&all);
    kt_result_free(&one);
    kt_destroy(&s);
    free(x);
}
