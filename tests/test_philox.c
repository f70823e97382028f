/* Philox4x32-10 (csrc/shared/philox.h) against the published Random123
 * known answers and against cuRAND's own host generator, plus the 64-bit
 * draw layout of docs/semantics.md section 7 and the uniformity of
 * kiln_scale_draw. */
#include <stdint.h>
#include <stdlib.h>

#include <criterion/criterion.h>

#include "harness.h"
#include "shared/numerics.h"
#include "shared/philox.h"
#include "stats.h"

#ifdef KILN_TEST_HAVE_CURAND
#include <curand.h>
#endif

/* ------------------------------------------------------------ known answers */

static void check_kat(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1,
                      uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3)
{
    kiln_philox_block ctr = { { c0, c1, c2, c3 } };
    kiln_philox_block r = kiln_philox4x32_10(ctr, k0, k1);
    cr_assert(r.v[0] == e0 && r.v[1] == e1 && r.v[2] == e2 && r.v[3] == e3,
              "philox(%08x %08x %08x %08x, key %08x %08x) = %08x %08x %08x %08x, "
              "expected %08x %08x %08x %08x",
              c0, c1, c2, c3, k0, k1, r.v[0], r.v[1], r.v[2], r.v[3], e0, e1, e2, e3);
}

/* Random123's kat_vectors for philox4x32 with 10 rounds. */
Test(philox, random123_known_answers)
{
    check_kat(0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8);
    check_kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
              0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
    check_kat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
              0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1);
}

/* ------------------------------------------------------------------ cuRAND */

#ifdef KILN_TEST_HAVE_CURAND
/* cuRAND's host Philox generator does not emit one subsequence in order: it
 * emulates a grid of 65536 device threads, thread t running
 * curand_init(seed, t, 0), and writes 4 outputs (one counter block) per
 * thread in turn. Output p of the generator (p counted from 0, offset
 * included) is therefore output 4 * ((p / 4) / 65536) + p % 4 of subsequence
 * (p / 4) % 65536. That covers subsequence 0 (p / 4 a multiple of 65536) and
 * every other subsequence below 65536, with kiln's draws as the reference.
 * LEGACY ordering is the one cuRAND promises never to change. */
#define HOST_THREADS 65536u

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* 32-bit output P of kiln's subsequence `sub` under `seed`, as section 7
 * defines it from the 64-bit draws: draw d = outputs 2d (high) and 2d + 1. */
static uint32_t kiln_output32(uint64_t seed, uint64_t sub, uint64_t P)
{
    uint64_t d = kiln_philox_draw64(seed, sub, P >> 1);
    return (P & 1) ? (uint32_t)d : (uint32_t)(d >> 32);
}

static uint32_t host_generator_output(uint64_t seed, uint64_t p)
{
    uint64_t q = p / 4;
    return kiln_output32(seed, q % HOST_THREADS, 4 * (q / HOST_THREADS) + p % 4);
}

static curandGenerator_t make_generator(uint64_t seed, uint64_t offset)
{
    curandGenerator_t g;
    cr_assert_eq(curandCreateGeneratorHost(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10),
                 CURAND_STATUS_SUCCESS);
    cr_assert_eq(curandSetGeneratorOrdering(g, CURAND_ORDERING_PSEUDO_LEGACY),
                 CURAND_STATUS_SUCCESS);
    cr_assert_eq(curandSetPseudoRandomGeneratorSeed(g, (unsigned long long)seed),
                 CURAND_STATUS_SUCCESS);
    cr_assert_eq(curandSetGeneratorOffset(g, (unsigned long long)offset), CURAND_STATUS_SUCCESS);
    return g;
}

static void generate(uint64_t seed, uint64_t offset, uint32_t *out, size_t n)
{
    curandGenerator_t g = make_generator(seed, offset);
    cr_assert_eq(curandGenerate(g, (unsigned int *)out, n), CURAND_STATUS_SUCCESS,
                 "curandGenerate(seed %llu, offset %llu)", (unsigned long long)seed,
                 (unsigned long long)offset);
    curandDestroyGenerator(g);
}
#endif

Test(curand, stream_matches_kiln)
{
#ifndef KILN_TEST_HAVE_CURAND
    cr_skip_test("built without cuRAND (CUDA::curand not found): "
                 "the Philox stream is not compared with cuRAND's host generator");
#else
    uint64_t rs = 23;
    const uint64_t seeds[] = { 0,          1,          42, ((uint64_t)1 << 32) + 7, UINT64_MAX,
                               splitmix64(&rs), splitmix64(&rs), splitmix64(&rs) };
    const uint64_t offsets[] = { 0,
                                 1,
                                 2,
                                 3,
                                 5,
                                 1000,
                                 4 * HOST_THREADS - 1,
                                 4 * HOST_THREADS + 2,
                                 ((uint64_t)1 << 40) + 3,
                                 ((uint64_t)1 << 62) + 9,
                                 UINT64_MAX - ((uint64_t)1 << 21) };
    /* two rounds of all 65536 subsequences and then some */
    const size_t n = 8 * HOST_THREADS + 13;
    uint32_t *out = malloc(n * sizeof *out);
    cr_assert_not_null(out);
    for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; ++si)
        for (size_t oi = 0; oi < sizeof offsets / sizeof offsets[0]; ++oi) {
            uint64_t seed = seeds[si], off = offsets[oi];
            generate(seed, off, out, n);
            for (size_t i = 0; i < n; ++i) {
                uint64_t p = off + i;
                uint32_t want = host_generator_output(seed, p);
                if (out[i] != want)
                    cr_assert_fail("seed %llu offset %llu output %zu: cuRAND %08x, kiln %08x "
                                   "(subsequence %llu, output %llu)",
                                   (unsigned long long)seed, (unsigned long long)off, i, out[i],
                                   want, (unsigned long long)(p / 4 % HOST_THREADS),
                                   (unsigned long long)(4 * (p / 4 / HOST_THREADS) + p % 4));
            }
        }
    free(out);
#endif
}

/* kiln_philox_draw64(seed, j, d) against the generator's output at offset 0:
 * subsequence j's outputs 2d and 2d + 1 sit at 4 (65536 (d / 2) + j) +
 * 2 (d % 2) and the next. For j = 0 and d < 2 that is out[2d], out[2d + 1]. */
Test(curand, draw64_matches_generator)
{
#ifndef KILN_TEST_HAVE_CURAND
    cr_skip_test("built without cuRAND (CUDA::curand not found): "
                 "kiln_philox_draw64 is not compared with cuRAND's host generator");
#else
    const size_t n = 8 * HOST_THREADS;
    uint32_t *out = malloc(n * sizeof *out);
    cr_assert_not_null(out);
    const uint64_t seeds[] = { 0, 42, ((uint64_t)1 << 32) + 7, UINT64_MAX };
    for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; ++si) {
        uint64_t seed = seeds[si];
        generate(seed, 0, out, n);
        for (uint64_t d = 0; d < 2; ++d) {
            uint64_t want = ((uint64_t)out[2 * d] << 32) | out[2 * d + 1];
            cr_assert_eq(kiln_philox_draw64(seed, 0, d), want, "seed %llu draw %llu",
                         (unsigned long long)seed, (unsigned long long)d);
        }
        for (uint64_t j = 0; j < HOST_THREADS; ++j)
            for (uint64_t d = 0; d < 4; ++d) {
                size_t at = 4 * (HOST_THREADS * (d / 2) + j) + 2 * (d % 2);
                uint64_t want = ((uint64_t)out[at] << 32) | out[at + 1];
                uint64_t got = kiln_philox_draw64(seed, j, d);
                if (got != want)
                    cr_assert_fail("seed %llu subsequence %llu draw %llu: kiln %016llx, "
                                   "cuRAND %016llx",
                                   (unsigned long long)seed, (unsigned long long)j,
                                   (unsigned long long)d, (unsigned long long)got,
                                   (unsigned long long)want);
            }
    }
    free(out);

    /* Far draws, where the block index needs its high word: the generator's
     * offset reaches them directly. */
    const uint64_t draws[] = { ((uint64_t)1 << 33) - 1, (uint64_t)1 << 33,
                               ((uint64_t)1 << 33) + 1, ((uint64_t)1 << 40) + 5,
                               ((uint64_t)1 << 46) - 1 };
    const uint64_t subs[] = { 0, 1, HOST_THREADS - 1 };
    for (size_t di = 0; di < sizeof draws / sizeof draws[0]; ++di)
        for (size_t ji = 0; ji < sizeof subs / sizeof subs[0]; ++ji) {
            uint64_t d = draws[di], j = subs[ji], seed = 0x0123456789ABCDEFull;
            uint32_t pair[2];
            generate(seed, 4 * (HOST_THREADS * (d / 2) + j) + 2 * (d % 2), pair, 2);
            uint64_t want = ((uint64_t)pair[0] << 32) | pair[1];
            uint64_t got = kiln_philox_draw64(seed, j, d);
            cr_assert_eq(got, want, "subsequence %llu draw %llu: kiln %016llx, cuRAND %016llx",
                         (unsigned long long)j, (unsigned long long)d, (unsigned long long)got,
                         (unsigned long long)want);
        }
#endif
}

/* ------------------------------------------------------------ draw layout */

/* draw64 from the raw bijection, as section 7 spells it: block d / 2 of
 * subsequence j is counter (d / 2) + j * 2^64; even d takes lanes 0, 1 and
 * odd d lanes 2, 3 of that one block. */
Test(draw64, counter_and_lane_layout)
{
    const uint64_t seeds[] = { 0, 7, ((uint64_t)1 << 32) + 7, UINT64_MAX };
    const uint64_t subs[] = { 0, 1, 0xFFFFFFFFull, 0x100000000ull, UINT64_MAX };
    const uint64_t blocks[] = { 0, 1, 0xFFFFFFFFull, 0x100000000ull, ((uint64_t)1 << 62) + 3,
                                UINT64_MAX >> 1 };
    for (size_t si = 0; si < sizeof seeds / sizeof seeds[0]; ++si)
        for (size_t ji = 0; ji < sizeof subs / sizeof subs[0]; ++ji)
            for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; ++bi) {
                uint64_t seed = seeds[si], j = subs[ji], b = blocks[bi];
                kiln_philox_block ctr = { { (uint32_t)b, (uint32_t)(b >> 32), (uint32_t)j,
                                            (uint32_t)(j >> 32) } };
                kiln_philox_block r =
                    kiln_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
                uint64_t even = ((uint64_t)r.v[0] << 32) | r.v[1];
                uint64_t odd = ((uint64_t)r.v[2] << 32) | r.v[3];
                cr_assert_eq(kiln_philox_draw64(seed, j, 2 * b), even,
                             "seed %llx sub %llx draw %llx", (unsigned long long)seed,
                             (unsigned long long)j, (unsigned long long)(2 * b));
                cr_assert_eq(kiln_philox_draw64(seed, j, 2 * b + 1), odd,
                             "seed %llx sub %llx draw %llx", (unsigned long long)seed,
                             (unsigned long long)j, (unsigned long long)(2 * b + 1));
            }
    /* the last draw index is block 2^63 - 1, lanes 2, 3 */
    kiln_philox_block last = { { 0xFFFFFFFFu, 0x7FFFFFFFu, 0, 0 } };
    kiln_philox_block r = kiln_philox4x32_10(last, 5, 0);
    cr_assert_eq(kiln_philox_draw64(5, 0, UINT64_MAX), ((uint64_t)r.v[2] << 32) | r.v[3]);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Different (subsequence, draw) pairs, and different seeds, give different
 * 64-bit values; a collision among 2^17 honest 64-bit values has probability
 * about 2^-31. */
Test(draw64, distinct_across_subsequences_draws_and_seeds)
{
    const size_t J = 256, D = 256;
    uint64_t *v = malloc(2 * J * D * sizeof *v);
    cr_assert_not_null(v);
    size_t k = 0;
    for (uint64_t seed = 1; seed <= 2; ++seed)
        for (uint64_t j = 0; j < J; ++j)
            for (uint64_t d = 0; d < D; ++d)
                v[k++] = kiln_philox_draw64(seed, j, d);
    qsort(v, k, sizeof *v, cmp_u64);
    for (size_t i = 1; i < k; ++i)
        cr_assert_neq(v[i], v[i - 1], "value %016llx repeats", (unsigned long long)v[i]);
    free(v);

    /* the 64-bit halves of one block differ, and subsequences that differ
     * only in the high word, or draws only in the block's high word, differ */
    for (uint64_t d = 0; d < 1000; d += 2)
        cr_assert_neq(kiln_philox_draw64(3, 0, d), kiln_philox_draw64(3, 0, d + 1));
    cr_assert_neq(kiln_philox_draw64(3, 0, 0), kiln_philox_draw64(3, (uint64_t)1 << 32, 0));
    cr_assert_neq(kiln_philox_draw64(3, 0, 0), kiln_philox_draw64(3, 0, (uint64_t)1 << 33));
    cr_assert_neq(kiln_philox_draw64(3, 0, 0), kiln_philox_draw64(3, 0, (uint64_t)1 << 63));
    cr_assert_neq(kiln_philox_draw64(0, 0, 0), kiln_philox_draw64((uint64_t)1 << 32, 0, 0));
}

/* ----------------------------------------------------- kiln_scale_draw */

Test(scale_draw, edges)
{
    const uint64_t totals[] = { 1, 2, 3, 7, ((uint64_t)1 << 40) + 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; ++i) {
        uint64_t t = totals[i];
        cr_assert_eq(kiln_scale_draw(0, t), 0);
        cr_assert_eq(kiln_scale_draw(UINT64_MAX, t), t - 1, "total %llu",
                     (unsigned long long)t);
    }
    cr_assert_eq(kiln_scale_draw((uint64_t)1 << 63, 3), 1);
    cr_assert_eq(kiln_scale_draw(0x5555555555555555ull, 3), 0);
    cr_assert_eq(kiln_scale_draw(0x5555555555555556ull, 3), 1);
    cr_assert_eq(kiln_scale_draw(0xAAAAAAAAAAAAAAABull, 3), 2);
}

/* Counts of r = scale_draw(u, total) over 10^6 Philox draws, binned into
 * k categories by bin(r), against probabilities p: G-test and Pearson's
 * chi-square at alpha = 1e-6. `along_subsequences`: draw j uses subsequence
 * j at a fixed offset, as n draws of a row do; otherwise one subsequence,
 * successive offsets, as successive decoding steps do. */
static void check_uniform(uint64_t total, int k, const double *p, int (*bin)(uint64_t),
                          uint64_t seed, int along_subsequences)
{
    const uint64_t N = 1000000;
    uint64_t counts[32] = { 0 };
    cr_assert(k <= 32);
    for (uint64_t i = 0; i < N; ++i) {
        uint64_t u = along_subsequences ? kiln_philox_draw64(seed, i, 77) :
                                          kiln_philox_draw64(seed, 0, i);
        uint64_t r = kiln_scale_draw(u, total);
        cr_assert(r < total, "r = %llu for total %llu", (unsigned long long)r,
                  (unsigned long long)total);
        counts[bin(r)]++;
    }
    kt_gtest g = kt_gtest_run(counts, p, k, N);
    cr_assert(g.p_value > 1e-6, "total %llu: G = %.3f, df %.0f, p = %.3g",
              (unsigned long long)total, g.g, g.df, g.p_value);
    double chi2 = 0.0;
    int cats = 0;
    for (int c = 0; c < k; ++c) {
        double e = p[c] * (double)N;
        if (e < 5.0) {
            cr_assert(counts[c] <= 5, "total %llu: %llu draws in rare category %d",
                      (unsigned long long)total, (unsigned long long)counts[c], c);
            continue;
        }
        chi2 += ((double)counts[c] - e) * ((double)counts[c] - e) / e;
        ++cats;
    }
    double pv = kt_chi2_sf(chi2, cats - 1);
    cr_assert(pv > 1e-6, "total %llu: chi2 = %.3f, df %d, p = %.3g", (unsigned long long)total,
              chi2, cats - 1, pv);
}

static int bin_identity(uint64_t r)
{
    return (int)r;
}

/* 2^40 + 1 values: 16 bins of 2^36, and r = 2^40 alone (p ~ 1e-12) */
static int bin_2_40(uint64_t r)
{
    return (int)(r >> 36);
}

Test(scale_draw, uniform_total_3)
{
    double p[3] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 };
    check_uniform(3, 3, p, bin_identity, 1234, 0);
    check_uniform(3, 3, p, bin_identity, 99, 1);
}

Test(scale_draw, uniform_total_7)
{
    double p[7];
    for (int i = 0; i < 7; ++i)
        p[i] = 1.0 / 7;
    check_uniform(7, 7, p, bin_identity, 42, 0);
    check_uniform(7, 7, p, bin_identity, UINT64_MAX, 1);
}

Test(scale_draw, uniform_total_2_40_plus_1)
{
    const uint64_t total = ((uint64_t)1 << 40) + 1;
    double p[17];
    for (int i = 0; i < 16; ++i)
        p[i] = 0x1p36 / (double)total;
    p[16] = 1.0 / (double)total;
    check_uniform(total, 17, p, bin_2_40, 7, 0);
    check_uniform(total, 17, p, bin_2_40, ((uint64_t)1 << 32) + 7, 1);
}

/* The statistics can fail: a map that sends half of all u to r = 0 (the top
 * two bits, with 3 folded onto 0) is rejected at the same alpha. */
Test(scale_draw, chi_square_rejects_bias)
{
    const uint64_t N = 1000000;
    uint64_t counts[3] = { 0 };
    for (uint64_t i = 0; i < N; ++i) {
        uint64_t u = kiln_philox_draw64(5, 0, i);
        uint64_t r = u >> 62; /* 0..3 */
        counts[r == 3 ? 0 : r]++;
    }
    double p[3] = { 1.0 / 3, 1.0 / 3, 1.0 / 3 };
    kt_gtest g = kt_gtest_run(counts, p, 3, N);
    cr_assert(g.p_value < 1e-6, "biased counts passed: p = %.3g", g.p_value);
}
