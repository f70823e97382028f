/* The CPU backend's vectorised row passes (csrc/cpu/cpu_mass.c,
 * cpu_scan.c, cpu_dense.c), compiled into this test, against the scalar
 * contract of csrc/shared/numerics.h, under every instruction set this CPU
 * has (scalar, AVX2, AVX-512): masses, chunk sums, fbits, masked passes, the
 * bf16 scans and the logit thresholds of min-p. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cpu/cpu_kept.h"
#include "cpu/cpu_row.h"
#include "logit_shapes.h"

static const char *isa_name(int isa)
{
    return isa == KILN_ISA_AVX512 ? "avx512" : isa == KILN_ISA_AVX2 ? "avx2" : "scalar";
}

/* Every instruction set up to the best one present. */
static int isa_count(void)
{
    kiln_cpu_isa_force(KILN_ISA_AVX512);
    return (int)kiln_cpu_isa_level() + 1;
}

static uint16_t bf16_of(float f)
{
    return kiln_f32_to_bf16(f);
}

/* One row through the mass pass, every output against kiln_mass. */
static void check_row(const kiln_cpu_row *row, float m, float c, int32_t qmin, const char *what)
{
    const int64_t V = row->n, nch = (V + KILN_CPU_CHUNK - 1) / KILN_CPU_CHUNK;
    uint64_t *ref = malloc((size_t)V * 8), *chunks = malloc((size_t)nch * 8);
    uint32_t *fb = malloc((size_t)V * 4);
    uint64_t total = 0;
    for (int64_t i = 0; i < V; ++i) {
        const float x = kiln_cpu_row_at(row, i);
        const uint64_t w = kiln_mass(x, m, c);
        cr_assert_eq(kiln_cpu_mass_of_q(kiln_cpu_mass_q(x, m, c)), w, "%s: mass_of_q at %lld", what,
                     (long long)i);
        cr_assert_eq(kiln_cpu_fbits_mass(kiln_cpu_mass_fbits(x, m, c)), w, "%s: fbits at %lld",
                     what, (long long)i);
        ref[i] = kiln_cpu_mass_q(x, m, c) >= qmin ? w : 0;
        total += ref[i];
    }
    for (int isa = 0; isa < isa_count(); ++isa) {
        kiln_cpu_isa_force(isa);
        kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(m, c);
        mc.qmin = qmin;
        mc.masked = qmin > -(64 << 23);
        memset(fb, 0xAB, (size_t)V * 4);
        const uint64_t got = kiln_cpu_mass_chunks(row, &mc, chunks, mc.masked ? NULL : fb);
        cr_assert_eq(got, total, "%s %s: total %llu, expected %llu", what, isa_name(isa),
                     (unsigned long long)got, (unsigned long long)total);
        for (int64_t ch = 0; ch < nch; ++ch) {
            uint64_t want = 0, w[KILN_CPU_CHUNK];
            const int64_t start = ch * KILN_CPU_CHUNK;
            const int64_t len = V - start < KILN_CPU_CHUNK ? V - start : KILN_CPU_CHUNK;
            for (int64_t i = 0; i < len; ++i)
                want += ref[start + i];
            cr_assert_eq(chunks[ch], want, "%s %s: chunk %lld", what, isa_name(isa), (long long)ch);
            kiln_cpu_mass_span(row, start, len, &mc, w);
            for (int64_t i = 0; i < len; ++i)
                cr_assert_eq(w[i], ref[start + i], "%s %s: span at %lld", what, isa_name(isa),
                             (long long)(start + i));
        }
        if (!mc.masked) {
            for (int64_t i = 0; i < V; ++i)
                cr_assert_eq(fb[i], kiln_cpu_mass_fbits(kiln_cpu_row_at(row, i), m, c),
                             "%s %s: fbits at %lld", what, isa_name(isa), (long long)i);
            /* the pass that also leaves every 16th token's fbits (top-p's sample) */
            const int64_t n16 = (V + 15) / 16;
            uint32_t *e16 = malloc((size_t)(n16 + 1) * 4);
            memset(fb, 0xAB, (size_t)V * 4);
            e16[n16] = 0xCDCDCDCDu;
            cr_assert_eq(kiln_cpu_mass_fbits_every16(row, &mc, fb, e16), total, "%s %s: every16 total",
                         what, isa_name(isa));
            for (int64_t i = 0; i < V; ++i)
                cr_assert_eq(fb[i], kiln_cpu_mass_fbits(kiln_cpu_row_at(row, i), m, c),
                             "%s %s: every16's fbits at %lld", what, isa_name(isa), (long long)i);
            for (int64_t t = 0; t < n16; ++t)
                cr_assert_eq(e16[t], fb[16 * t], "%s %s: every16[%lld]", what, isa_name(isa),
                             (long long)t);
            cr_assert_eq(e16[n16], 0xCDCDCDCDu, "%s %s: every16 wrote past its end", what,
                         isa_name(isa));
            free(e16);
        }
        /* the entropy sums, over every counted token and over a canonical
         * prefix cut at a token (ties at its key split by id) */
        for (int with_cut = 0; with_cut < 2; ++with_cut) {
            const int64_t at = V / 3;
            const kiln_cpu_cut cut = { kiln_order_key(kiln_cpu_row_at(row, at)), (uint32_t)at };
            uint64_t s = 0;
            int64_t count = 0;
            kiln_u128 e = kiln_u128_zero();
            for (int64_t i = 0; i < V; ++i) {
                const float x = kiln_cpu_row_at(row, i);
                const uint32_t k = kiln_order_key(x);
                if (with_cut && !(k > cut.key || (k == cut.key && i <= at)))
                    continue;
                s += ref[i];
                count += ref[i] != 0;
                e = kiln_u128_add(e, kiln_entropy_term(ref[i], kiln_mass_exponent(x, m, c)));
            }
            const kiln_cpu_entropy_sums es = kiln_cpu_mass_entropy(row, &mc, with_cut ? &cut : NULL);
            cr_assert(es.mass == s && es.count == count && es.exponent.lo == e.lo &&
                          es.exponent.hi == e.hi,
                      "%s %s cut %d: entropy sums (%llu, %lld, %llx:%llx), expected (%llu, %lld, "
                      "%llx:%llx)",
                      what, isa_name(isa), with_cut, (unsigned long long)es.mass,
                      (long long)es.count, (unsigned long long)es.exponent.hi,
                      (unsigned long long)es.exponent.lo, (unsigned long long)s, (long long)count,
                      (unsigned long long)e.hi, (unsigned long long)e.lo);
        }
    }
    kiln_cpu_isa_force(KILN_ISA_AVX512);
    free(ref);
    free(chunks);
    free(fb);
}

/* Every 23-bit fraction j: the vector 2^f (kiln_exp2_fraction without its
 * clamp) must equal the scalar one for each, or the clamp is not the
 * identity the kernels assume. x = -k 2^-23 with m = 0, c = 1 gives q = -k. */
Test(cpu_kernels, every_fraction)
{
    const int64_t V = (int64_t)1 << 23;
    float *x = malloc((size_t)V * 4);
    for (int64_t k = 0; k < V; ++k)
        x[k] = -(float)k * 0x1p-23f;
    kiln_cpu_row row = { x, 0, V };
    check_row(&row, 0.0f, 1.0f, -(64 << 23), "every fraction");
    free(x);
}

/* Rows that reach every n, the clamp, -inf, -0, subnormals, the max, odd
 * lengths; temperatures that take the fused and the unfused multiply. */
Test(cpu_kernels, masses_chunks_spans)
{
    static const int64_t lens[] = { 1, 7, 16, 17, 255, 256, 257, 1000, 4099 };
    static const float temps[] = { 1.0f, 0.7f, 5.0f, 1e-30f, 1e30f, 0.01f };
    ks_rng rng = { 42 };
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; ++li)
        for (size_t ti = 0; ti < sizeof temps / sizeof temps[0]; ++ti)
            for (int shape = 0; shape < 4; ++shape) {
                const int64_t V = lens[li];
                float *x = malloc((size_t)V * 4);
                uint16_t *h = malloc((size_t)V * 2);
                float m = shape == 3 ? 0.0f : 3.5f;
                for (int64_t i = 0; i < V; ++i) {
                    const double u = ks_rng_unit(&rng);
                    float v = (float)(m - 80.0 * u * u);
                    if (shape == 1)
                        v = (float)(m - 1e-3 * u);
                    if (shape == 3) /* a max of zero: x - m = x, down to subnormals */
                        v = -(float)ldexp(u, -(int)(ks_rng_u64(&rng) % 160));
                    switch (ks_rng_u64(&rng) % 23) {
                    case 0: v = -INFINITY; break;
                    case 1: v = -0.0f; break;
                    case 2: v = m; break;
                    case 3: v = -1e38f; break;
                    default: break;
                    }
                    x[i] = v <= m ? v : m;
                }
                x[(int64_t)(ks_rng_u64(&rng) % (uint64_t)V)] = m;
                for (int64_t i = 0; i < V; ++i)
                    h[i] = bf16_of(x[i]);
                const float c = kiln_exp2_factor(temps[ti]);
                kiln_cpu_row rf = { x, 0, V }, rb = { h, 1, V };
                const float mb = kiln_bf16_to_f32(bf16_of(m));
                check_row(&rf, m, c, -(64 << 23), "f32");
                check_row(&rb, mb, c, -(64 << 23), "bf16");
                const int32_t qmin = -(int32_t)(ks_rng_u64(&rng) % (40u << 23));
                check_row(&rf, m, c, qmin, "f32 masked");
                check_row(&rb, mb, c, qmin, "bf16 masked");
                free(x);
                free(h);
            }
}

Test(cpu_kernels, fused_guard)
{
    /* a product that rounds to -0 unfused but not fused must not be fused */
    kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(0.0f, kiln_exp2_factor(1e30f));
    cr_assert_eq(mc.fused, 0);
    mc = kiln_cpu_mass_ctx_init(8.0f, kiln_exp2_factor(0.7f));
    cr_assert_eq(mc.fused, 1);
    mc = kiln_cpu_mass_ctx_init(8.0f, kiln_exp2_factor(1e-30f)); /* c clamped near FLT_MAX */
    cr_assert_eq(mc.fused, 0);
    /* the case itself: x - m = -2^-149, c tiny */
    float x[2] = { 0.0f, -0x1p-149f };
    kiln_cpu_row row = { x, 0, 2 };
    check_row(&row, 0.0f, kiln_exp2_factor(3e38f), -(64 << 23), "tiny product");
}

/* bf16 scans against the same scans of the row widened to f32 (valid rows:
 * -inf but no NaN or +inf). */
Test(cpu_kernels, bf16_scans)
{
    ks_rng rng = { 7 };
    for (int rep = 0; rep < 200; ++rep) {
        const int64_t V = 1 + (int64_t)(ks_rng_u64(&rng) % 3000);
        uint16_t *h = malloc((size_t)V * 2);
        float *x = malloc((size_t)V * 4);
        uint32_t *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
        for (int64_t i = 0; i < V; ++i) {
            h[i] = (uint16_t)ks_rng_u64(&rng);
            if ((h[i] & 0x7F80u) == 0x7F80u && h[i] != 0xFF80u) /* rows here hold no NaN, no +inf */
                h[i] = 0xFF80u;
            if (rep % 2) /* few distinct values: ties, -0 and +0 */
                h[i] = (uint16_t[]){ 0x0000, 0x8000, 0x3F80, 0xBF80, 0xFF80, 0x4000 }[ks_rng_u64(&rng) % 6];
            x[i] = kiln_bf16_to_f32(h[i]);
        }
        kiln_cpu_row rb = { h, 1, V }, rf = { x, 0, V };
        for (int isa = 0; isa < isa_count(); ++isa) {
            kiln_cpu_isa_force(isa);
            uint32_t lo_b, hi_b, lo_f, hi_f;
            kiln_cpu_row_key_range(&rb, &lo_b, &hi_b);
            kiln_cpu_row_key_range(&rf, &lo_f, &hi_f);
            cr_assert_eq(lo_b, lo_f);
            cr_assert_eq(hi_b, hi_f);
            if (rep % 4 == 2) { /* any bits, NaN of either sign included: the key range only */
                uint32_t want_lo = 0xFFFFFFFFu, want_hi = 0;
                for (int64_t i = 0; i < V; ++i) {
                    const uint16_t r = (uint16_t)ks_rng_u64(&rng);
                    h[i] = r;
                    const uint32_t k = kiln_order_key(kiln_f32_from_bits((uint32_t)r << 16));
                    want_lo = k < want_lo ? k : want_lo;
                    want_hi = k > want_hi ? k : want_hi;
                }
                kiln_cpu_row_key_range(&rb, &lo_b, &hi_b);
                cr_assert(lo_b == want_lo && hi_b == want_hi, "isa %d: bf16 key range with NaN", isa);
                for (int64_t i = 0; i < V; ++i)
                    h[i] = kiln_f32_bits(x[i]) >> 16;
                continue;
            }
            for (int t = 0; t < 8; ++t) {
                const float thr = t == 0 ? -0.0f : t == 1 ? 0.0f
                                        : kiln_bf16_to_f32((uint16_t)ks_rng_u64(&rng)) +
                                              (t > 4 ? 1e-3f : 0.0f);
                if (thr != thr)
                    continue;
                cr_assert_eq(kiln_cpu_row_count_at_least(&rb, thr), kiln_cpu_row_count_at_least(&rf, thr));
                const size_t na = kiln_cpu_row_collect_at_least(&rb, thr, a);
                const size_t nb = kiln_cpu_row_collect_at_least(&rf, thr, b);
                cr_assert_eq(na, nb, "threshold %a", (double)thr);
                cr_assert_eq(memcmp(a, b, na * 4), 0);
                size_t nr = 0; /* the definition: ids ascending with x >= thr */
                for (int64_t i = 0; i < V; ++i)
                    if (x[i] >= thr) {
                        cr_assert(nr < na && a[nr] == (uint32_t)i, "isa %d V %lld id %lld", isa,
                                  (long long)V, (long long)i);
                        ++nr;
                    }
                cr_assert_eq(nr, na);
                /* the capped collect: the same list when it fits, else more
                 * than the cap and a prefix of the list */
                const size_t cap = (size_t)(ks_rng_u64(&rng) % (na + 2));
                const size_t nc = kiln_cpu_row_collect_at_most(&rb, thr, b, cap);
                cr_assert(na <= cap ? nc == na : nc > cap && nc <= na, "cap %zu: %zu of %zu", cap, nc, na);
                cr_assert_eq(memcmp(a, b, (nc < na ? nc : na) * 4), 0);
                const float v = x[ks_rng_u64(&rng) % (uint64_t)V];
                if (v == v)
                    cr_assert_eq(kiln_cpu_row_find_first(&rb, v), kiln_cpu_row_find_first(&rf, v));
            }
        }
        kiln_cpu_isa_force(KILN_ISA_AVX512);
        free(h);
        free(x);
        free(a);
        free(b);
    }
}

/* The sampled histogram's top digits alone: dmin `span` below the sample's
 * largest digit, the full sample's counts at and above it, zeros below, and
 * their number, on both dtypes and every instruction set (the top-k
 * threshold search reads only these). */
Test(cpu_kernels, key_hist_top)
{
    ks_rng rng = { 11 };
    for (int rep = 0; rep < 60; ++rep) {
        const int64_t V = 16 + (int64_t)(ks_rng_u64(&rng) % 40000);
        float *x = malloc((size_t)V * 4);
        uint16_t *h = malloc((size_t)V * 2);
        ks_zipf_like(x, V, (uint64_t)rep);
        for (int64_t i = 0; i < V; ++i) {
            if (rep % 3 == 1)
                x[i] = -x[i]; /* negative digits count down */
            h[i] = (uint16_t)(kiln_f32_bits(x[i]) >> 16);
        }
        const int64_t stride = 1 + (int64_t)(ks_rng_u64(&rng) % 20);
        const uint32_t span = (uint32_t)(ks_rng_u64(&rng) % (rep % 4 ? 40 : 2048));
        for (int b = 0; b < 2; ++b) {
            const kiln_cpu_row r = { b ? (const void *)h : (const void *)x, b, V };
            for (int isa = 0; isa < isa_count(); ++isa) {
                kiln_cpu_isa_force(isa);
                uint32_t full[2048], top[2048], dmin;
                kiln_cpu_row_key_hist(&r, stride < 2 ? 2 : stride, full);
                const uint64_t n = kiln_cpu_row_key_hist_top(&r, stride < 2 ? 2 : stride, span, top, &dmin);
                uint32_t max = 0;
                for (uint32_t d = 0; d < 2048; ++d)
                    max = full[d] ? d : max;
                cr_assert_eq(dmin, max > span ? max - span : 0, "isa %d: dmin %u, max digit %u", isa,
                             dmin, max);
                uint64_t want = 0;
                for (uint32_t d = 0; d < 2048; ++d) {
                    cr_assert_eq(top[d], d >= dmin ? full[d] : 0u, "isa %d digit %u", isa, d);
                    want += d >= dmin ? full[d] : 0;
                }
                cr_assert_eq(n, want);
            }
        }
        kiln_cpu_isa_force(KILN_ISA_AVX512);
        free(x);
        free(h);
    }
}

/* The copy that takes the key range on the way: the row as f32 exactly, and
 * when it answers, the key range of kiln_cpu_row_key_range; NaN anywhere
 * (the tail included) makes it decline, never answer wrong. */
Test(cpu_kernels, copy_key_range)
{
    ks_rng rng = { 5 };
    for (int rep = 0; rep < 120; ++rep) {
        const int64_t V = 1 + (int64_t)(ks_rng_u64(&rng) % 700);
        float *x = malloc((size_t)V * 4), *out = malloc((size_t)V * 4);
        uint16_t *h = malloc((size_t)V * 2);
        ks_zipf_like(x, V, (uint64_t)rep);
        if (rep % 5 == 1)
            x[ks_rng_u64(&rng) % (uint64_t)V] = (rep & 8) ? NAN : -NAN;
        if (rep % 5 == 2)
            x[ks_rng_u64(&rng) % (uint64_t)V] = (rep & 8) ? -0.0f : INFINITY;
        for (int64_t i = 0; i < V; ++i)
            h[i] = (uint16_t)(kiln_f32_bits(x[i]) >> 16);
        for (int b = 0; b < 2; ++b) {
            const kiln_cpu_row r = { b ? (const void *)h : (const void *)x, b, V };
            uint32_t lo, hi, want_lo, want_hi;
            kiln_cpu_row_key_range(&r, &want_lo, &want_hi);
            for (int isa = 0; isa < isa_count(); ++isa) {
                kiln_cpu_isa_force(isa);
                memset(out, 0xA5, (size_t)V * 4);
                const int known = kiln_cpu_row_copy_key_range(&r, out, &lo, &hi);
                for (int64_t i = 0; i < V; ++i)
                    cr_assert_eq(kiln_f32_bits(out[i]), kiln_f32_bits(kiln_cpu_row_at(&r, i)),
                                 "isa %d dtype %d V %lld token %lld", isa, b, (long long)V, (long long)i);
                if (known)
                    cr_assert(lo == want_lo && hi == want_hi, "isa %d dtype %d V %lld: range", isa, b,
                              (long long)V);
                if (rep % 5 == 1)
                    cr_assert(!known, "isa %d: a row with NaN answered", isa);
                if (isa > 0 && rep % 5 != 1)
                    cr_assert(known, "isa %d: a vector copy without NaN must answer", isa);
            }
        }
        kiln_cpu_isa_force(KILN_ISA_AVX512);
        free(x);
        free(out);
        free(h);
    }
}

/* The collect with the key range on the way: the collect's ids exactly, and
 * when it answers, kiln_cpu_row_key_range's range (NaN rows, whose ids no
 * caller reads: f32 declines, bf16 answers with the NaN's key, as the key
 * range does). */
Test(cpu_kernels, range_collect)
{
    ks_rng rng = { 8 };
    for (int rep = 0; rep < 150; ++rep) {
        const int64_t V = 1 + (int64_t)(ks_rng_u64(&rng) % 1500);
        float *x = malloc((size_t)V * 4);
        uint16_t *h = malloc((size_t)V * 2);
        uint32_t *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
        ks_zipf_like(x, V, (uint64_t)rep);
        if (rep % 6 == 1)
            x[ks_rng_u64(&rng) % (uint64_t)V] = (rep & 8) ? NAN : -NAN;
        if (rep % 6 == 2)
            for (int64_t i = 0; i < V; ++i)
                x[i] = (float[]){ 0.0f, -0.0f, -1.0f, -INFINITY }[ks_rng_u64(&rng) % 4];
        for (int64_t i = 0; i < V; ++i)
            h[i] = (uint16_t)(kiln_f32_bits(x[i]) >> 16);
        const float thr = rep % 6 == 2 ? (rep & 4 ? 0.0f : -0.0f)
                                       : kiln_bf16_to_f32((uint16_t)(kiln_f32_bits(x[ks_rng_u64(&rng) % (uint64_t)V]) >> 16)) -
                                             (rep & 1 ? 1e-3f : 0.0f);
        if (thr != thr) {
            free(x), free(h), free(a), free(b);
            continue;
        }
        for (int bf = 0; bf < 2; ++bf) {
            const kiln_cpu_row r = { bf ? (const void *)h : (const void *)x, bf, V };
            uint32_t want_lo, want_hi;
            kiln_cpu_row_key_range(&r, &want_lo, &want_hi);
            const size_t want_n = kiln_cpu_row_collect_at_least(&r, thr, a);
            for (int isa = 0; isa < isa_count(); ++isa) {
                kiln_cpu_isa_force(isa);
                int known = -1;
                uint32_t lo = 0, hi = 0;
                const size_t cap = rep % 3 ? (size_t)V : (size_t)(ks_rng_u64(&rng) % (want_n + 2));
                const size_t n = kiln_cpu_row_range_collect(&r, thr, b, cap, &known, &lo, &hi);
                if (rep % 6 != 1) { /* collects run on valid rows only */
                    cr_assert(want_n <= cap ? n == want_n : n > cap && n <= want_n,
                              "isa %d dtype %d V %lld: count %zu of %zu, cap %zu", isa, bf,
                              (long long)V, n, want_n, cap);
                    cr_assert(memcmp(a, b, (n < want_n ? n : want_n) * 4) == 0,
                              "isa %d dtype %d V %lld: ids", isa, bf, (long long)V);
                }
                if (known)
                    cr_assert(lo == want_lo && hi == want_hi, "isa %d dtype %d V %lld: range", isa, bf,
                              (long long)V);
                if (!bf && rep % 6 == 1)
                    cr_assert(!known, "isa %d: an f32 row with NaN answered", isa);
                if (isa == KILN_ISA_AVX512 && !(rep % 6 == 1 && !bf))
                    cr_assert(known, "the AVX-512 pass must answer");
            }
            kiln_cpu_isa_force(KILN_ISA_AVX512);
        }
        free(x);
        free(h);
        free(a);
        free(b);
    }
}

/* -0 at either end of a bf16 row's range is +0's key, whatever the row's
 * length (the vector loops and the tail) and instruction set. */
Test(cpu_kernels, bf16_negative_zero_range)
{
    const uint32_t zero = kiln_order_key(0.0f);
    for (int64_t V = 1; V < 200; V += 13)
        for (int isa = 0; isa < isa_count(); ++isa) {
            kiln_cpu_isa_force(isa);
            uint16_t *h = malloc((size_t)V * 2);
            for (int with = 0; with < 2; ++with) { /* with 0: -0 and -1; 1: -0 and 1 */
                for (int64_t i = 0; i < V; ++i)
                    h[i] = i % 3 == 1 ? (with ? 0x3F80 : 0xBF80) : 0x8000;
                const kiln_cpu_row r = { h, 1, V };
                uint32_t lo, hi;
                kiln_cpu_row_key_range(&r, &lo, &hi);
                const uint32_t other = kiln_order_key(with ? 1.0f : -1.0f);
                const int has_other = V > 1;
                cr_assert_eq(with ? lo : hi, zero, "isa %d V %lld: -0 at the %s", isa, (long long)V,
                             with ? "bottom" : "top");
                cr_assert_eq(with ? hi : lo, has_other ? other : zero);
                cr_assert_eq(kiln_cpu_row_find_first(&r, 0.0f), 0);
                cr_assert_eq(kiln_cpu_row_count_at_least(&r, 0.0f), with ? V : V - V / 3 - (V % 3 == 2));
            }
            free(h);
        }
    kiln_cpu_isa_force(KILN_ISA_AVX512);
}

/* The f32 key range (float min/max with a NaN flag on AVX2) against the
 * definition, on rows with ties of -0 and +0, infinities, and NaN of either
 * sign at any position, the vector tail included. */
Test(cpu_kernels, key_range_f32)
{
    ks_rng rng = { 11 };
    const float special[] = { 0.0f, -0.0f, __builtin_inff(), -__builtin_inff(), 1.0f, -1.0f,
                              __builtin_nanf(""), -__builtin_nanf(""), 0x1p-149f, -0x1p-149f };
    for (int rep = 0; rep < 400; ++rep) {
        const int64_t V = 1 + (int64_t)(ks_rng_u64(&rng) % 200);
        float *x = malloc((size_t)V * 4);
        const int mode = rep % 4; /* 0: random; 1: specials; 2: one NaN; 3: zeros only */
        for (int64_t i = 0; i < V; ++i) {
            const uint64_t u = ks_rng_u64(&rng);
            x[i] = mode == 1   ? special[u % 10]
                   : mode == 3 ? (u & 1 ? 0.0f : -0.0f)
                               : (float)((int64_t)(u % 2001) - 1000) / 37.0f;
            if (mode == 1 && x[i] != x[i] && ks_rng_u64(&rng) % 4)
                x[i] = special[ks_rng_u64(&rng) % 6]; /* NaN only now and then */
        }
        if (mode == 2)
            x[ks_rng_u64(&rng) % (uint64_t)V] = ks_rng_u64(&rng) & 1 ? __builtin_nanf("") : -__builtin_nanf("");
        uint32_t want_lo = 0xFFFFFFFFu, want_hi = 0;
        for (int64_t i = 0; i < V; ++i) {
            const uint32_t k = kiln_order_key(x[i]);
            want_lo = k < want_lo ? k : want_lo;
            want_hi = k > want_hi ? k : want_hi;
        }
        kiln_cpu_row row = { x, 0, V };
        for (int isa = 0; isa < isa_count(); ++isa) {
            kiln_cpu_isa_force(isa);
            uint32_t lo, hi;
            kiln_cpu_row_key_range(&row, &lo, &hi);
            cr_assert_eq(lo, want_lo, "%s V %lld mode %d", isa_name(isa), (long long)V, mode);
            cr_assert_eq(hi, want_hi, "%s V %lld mode %d", isa_name(isa), (long long)V, mode);
        }
        kiln_cpu_isa_force(KILN_ISA_AVX512);
        free(x);
    }
}

static int u32_ascending(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The radix sort against qsort: wide values, narrow ranges, all equal. */
Test(cpu_kernels, sort_u32)
{
    ks_rng rng = { 29 };
    for (int rep = 0; rep < 300; ++rep) {
        const size_t m = (size_t)(ks_rng_u64(&rng) % 2000);
        uint32_t *v = malloc((m + 1) * 4), *tmp = malloc((m + 1) * 4), *want = malloc((m + 1) * 4);
        const uint32_t base = (uint32_t)ks_rng_u64(&rng), mask = rep % 3 == 0 ? 0xFFFFFFFFu : rep % 3 == 1 ? 0xFFFu : 0u;
        for (size_t i = 0; i < m; ++i)
            want[i] = v[i] = mask == 0xFFFFFFFFu ? (uint32_t)ks_rng_u64(&rng) : base + ((uint32_t)ks_rng_u64(&rng) & mask);
        qsort(want, m, 4, u32_ascending);
        const uint32_t *got = kiln_cpu_sort_u32(v, tmp, m);
        cr_assert(m == 0 || memcmp(got, want, m * 4) == 0, "rep %d m %zu", rep, m);
        free(v);
        free(tmp);
        free(want);
    }
}

/* The packed cut against the definition: sort (key descending, index
 * ascending), walk the weights to the first prefix reaching the target. Keys
 * in narrow ranges (one or two levels), wide ones, all equal; weights 0 too. */
static const uint32_t *packed_keys;

static int packed_desc(const void *a, const void *b)
{
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (packed_keys[i] != packed_keys[j])
        return packed_keys[i] > packed_keys[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

Test(cpu_kernels, packed_cut)
{
    ks_rng rng = { 23 };
    for (int rep = 0; rep < 600; ++rep) {
        const size_t n = 1 + (size_t)(ks_rng_u64(&rng) % 3000);
        uint32_t *key = malloc(n * 4), *order = malloc(n * 4), *a = malloc(n * 4), *b = malloc(n * 4);
        uint64_t *w = malloc(n * 8), total = 0;
        const int mode = rep % 4;
        const uint32_t base = (uint32_t)ks_rng_u64(&rng);
        for (size_t j = 0; j < n; ++j) {
            const uint64_t u = ks_rng_u64(&rng);
            key[j] = mode == 0   ? (uint32_t)u
                     : mode == 1 ? (base & 0xFFFFF000u) + (uint32_t)(u % 4096)
                     : mode == 2 ? base + (uint32_t)(u % 3)
                                 : base;
            w[j] = (u >> 40) % 5 == 0 ? 0 : (u >> 20) % ((uint64_t)1 << 40);
            total += w[j];
            order[j] = (uint32_t)j;
        }
        if (total == 0) {
            w[0] = 1;
            total = 1;
        }
        packed_keys = key;
        qsort(order, n, 4, packed_desc);
        for (int t = 0; t < 4; ++t) {
            const uint64_t target = t == 0 ? 1 : t == 1 ? total : 1 + ks_rng_u64(&rng) % total;
            uint64_t run = 0;
            size_t want = n;
            for (size_t i = 0; i < n; ++i) {
                run += w[order[i]];
                if (run >= target) {
                    want = order[i];
                    break;
                }
            }
            cr_assert_eq(kiln_cpu_packed_cut(key, w, n, target, a, b), want, "rep %d n %zu mode %d", rep,
                         n, mode);
        }
        free(key);
        free(order);
        free(a);
        free(b);
        free(w);
    }
}

/* min-p's threshold: mass >= L iff x >= logit_for_q(q_for_mass(L)). */
Test(cpu_kernels, min_p_threshold)
{
    ks_rng rng = { 9 };
    static const float temps[] = { 1.0f, 0.7f, 3.0f, 1e-20f };
    for (int rep = 0; rep < 400; ++rep) {
        const float T = temps[rep % 4], c = kiln_exp2_factor(T);
        const float m = (float)(10.0 * ks_rng_unit(&rng) - 5.0);
        const uint64_t L = rep % 7 == 0 ? KILN_MASS_ONE : 1 + ks_rng_u64(&rng) % KILN_MASS_ONE;
        const int32_t q = kiln_cpu_q_for_mass(L);
        cr_assert(kiln_cpu_mass_of_q(q) >= L);
        cr_assert(q == -(64 << 23) || kiln_cpu_mass_of_q(q - 1) < L);
        const float x0 = kiln_cpu_logit_for_q(m, c, q);
        cr_assert(kiln_mass(x0, m, c) >= L);
        const float below = nextafterf(x0, -INFINITY);
        if (x0 != -INFINITY)
            cr_assert(kiln_mass(below, m, c) < L, "m %a T %g L %llu", (double)m, (double)T,
                      (unsigned long long)L);
    }
}

/* ---------------------------------------------- top-p alone (cpu_top_p.c) */

static const float *canonical_x; /* qsort has no context argument */

static int canonical_desc(const void *a, const void *b)
{
    const float *x = canonical_x;
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    const uint32_t ki = kiln_order_key(x[i]), kj = kiln_order_key(x[j]);
    if (ki != kj)
        return ki > kj ? -1 : 1;
    return i < j ? -1 : 1;
}

/* The band path against the definition: every token's kept mass equals the
 * mass of the canonical prefix that first reaches ceil(p * S) (and min-p),
 * under every instruction set; returns whether the band path answered. */
static int check_top_p(const float *x, int64_t V, int bf16, float t, float p, float min_p)
{
    uint16_t *h = malloc((size_t)V * 2);
    float *xf = malloc((size_t)V * 4);
    for (int64_t i = 0; i < V; ++i) {
        h[i] = bf16_of(x[i]);
        xf[i] = bf16 ? kiln_bf16_to_f32(h[i]) : x[i];
    }
    const kiln_cpu_row row = { bf16 ? (const void *)h : (const void *)xf, bf16, V };
    float m = -INFINITY;
    for (int64_t i = 0; i < V; ++i)
        m = kiln_order_key(xf[i]) > kiln_order_key(m) ? xf[i] : m;
    const float c = kiln_exp2_factor(t);
    uint32_t *order = malloc((size_t)V * 4);
    uint64_t *want = calloc((size_t)V, 8), total = 0, want_total = 0;
    for (int64_t i = 0; i < V; ++i) {
        order[i] = (uint32_t)i;
        total += kiln_mass(xf[i], m, c);
    }
    canonical_x = xf;
    qsort(order, (size_t)V, 4, canonical_desc);
    const uint64_t target = kiln_ceil_scale(p, total);
    const uint64_t lo = min_p > 0.0f ? kiln_ceil_scale(min_p, KILN_MASS_ONE) : 1;
    uint64_t run = 0;
    for (int64_t j = 0; j < V && run < target; ++j) {
        const uint64_t w = kiln_mass(xf[order[j]], m, c);
        run += w;
        if (w >= lo) {
            want[order[j]] = w;
            want_total += w;
        }
    }
    const size_t v = (size_t)V;
    kiln_cpu_scratch sc;
    sc.x = malloc(v * 4);
    sc.w = malloc(v * 8);
    sc.marks = calloc(v, 4);
    sc.cand = malloc(v * 4);
    for (int i = 0; i < 2; ++i) {
        sc.tmp[i].id = malloc(v * 4);
        sc.tmp[i].w = malloc(v * 8);
    }
    int answered = -1;
    for (int isa = 0; isa < isa_count(); ++isa) {
        kiln_cpu_isa_force(isa);
        kiln_cpu_kept k;
        uint64_t all = 0;
        const int got = kiln_cpu_keep_top_p(&row, m, c, p, lo, &sc, &k, &all);
        cr_assert(answered < 0 || got == answered, "the band path depends on the ISA");
        answered = got;
        if (!got)
            continue;
        cr_assert_eq(all, total, "%s: S", isa_name(isa));
        cr_assert_eq(k.total, want_total, "%s: kept total %llu, expected %llu (V %lld, p %g)",
                     isa_name(isa), (unsigned long long)k.total, (unsigned long long)want_total,
                     (long long)V, (double)p);
        for (int64_t i = 0; i < V; ++i)
            cr_assert_eq(kiln_cpu_kept_mass_at(&k, &row, i), want[i], "%s: token %lld",
                         isa_name(isa), (long long)i);
        /* the kept count and the final entropy's sums over the kept set */
        int64_t want_count = 0;
        kiln_u128 want_e = kiln_u128_zero();
        for (int64_t i = 0; i < V; ++i) {
            want_count += want[i] != 0;
            want_e = kiln_u128_add(want_e, kiln_entropy_term(want[i], kiln_mass_exponent(xf[i], m, c)));
        }
        k.count = -1;
        cr_assert_eq(kiln_cpu_kept_count(&k, &row), want_count, "%s: kept count", isa_name(isa));
        const kiln_cpu_entropy_sums es = kiln_cpu_mass_entropy(&row, &k.mc, k.has_cut ? &k.cut : NULL);
        cr_assert(es.mass == want_total && es.count == want_count && es.exponent.lo == want_e.lo &&
                      es.exponent.hi == want_e.hi,
                  "%s: kept entropy sums", isa_name(isa));
        const int64_t chunks = (V + KILN_CPU_CHUNK - 1) / KILN_CPU_CHUNK;
        for (int64_t ch = 0; ch < chunks; ++ch) {
            uint64_t s = 0;
            for (int64_t i = ch * KILN_CPU_CHUNK; i < V && i < (ch + 1) * KILN_CPU_CHUNK; ++i)
                s += want[i];
            cr_assert_eq(k.chunks[ch], s, "%s: chunk %lld", isa_name(isa), (long long)ch);
        }
    }
    kiln_cpu_isa_force(KILN_ISA_AVX512);
    free(sc.x);
    free(sc.w);
    free(sc.marks);
    free(sc.cand);
    for (int i = 0; i < 2; ++i) {
        free(sc.tmp[i].id);
        free(sc.tmp[i].w);
    }
    free(order);
    free(want);
    free(h);
    free(xf);
    return answered;
}

Test(cpu_kernels, top_p_band)
{
    static const int64_t vs[] = { 16384, 50021, 128256 };
    static const float ps[] = { 0.9f, 0.5f, 0.999f, 1e-7f, 0.95f };
    static const float ts[] = { 1.0f, 0.7f, 1.5f, 5.0f };
    int answered = 0, rows = 0;
    for (size_t vi = 0; vi < 3; ++vi) {
        const int64_t V = vs[vi];
        float *x = malloc((size_t)V * 4);
        for (int shape = 0; shape < 7; ++shape) {
            const uint64_t seed = 40 + (uint64_t)shape + 7 * vi;
            if (shape == 0)
                ks_zipf_like(x, V, seed);
            else if (shape == 1)
                ks_zipf(x, V, seed);
            else if (shape == 2)
                ks_flat(x, V, seed);
            else if (shape == 3)
                ks_peaked(x, V, seed);
            else if (shape == 4) /* the sample sees only light tokens */
                for (int64_t i = 0; i < V; ++i)
                    x[i] = i % (V / 2048) == 0 ? -2.0f : (float)(i % 13) * 0.1f;
            else if (shape == 5) /* ties everywhere, a -inf third */
                for (int64_t i = 0; i < V; ++i)
                    x[i] = i % 3 == 0 ? -INFINITY : (float)(i * 2654435761u % 5) * 0.5f;
            else /* two values, token 0 heavy: in the band at small p (a bf16 gather's edge) */
                for (int64_t i = 0; i < V; ++i)
                    x[i] = i == 0 || (i * 2654435761u >> 7) % 2 ? 1.0f : 0.0f;
            for (int j = 0; j < 4; ++j) {
                const float p = ps[(shape + j) % 5], t = ts[(shape + 2 * j) % 4];
                const float min_p = j == 3 ? 0.001f : 0.0f;
                answered += check_top_p(x, V, (j + shape) % 2, t, p, min_p);
                ++rows;
            }
        }
        free(x);
    }
    /* most rows must take the band path (66 of 72 did when this was
     * written: the misses are min-p rows), or it goes untested */
    cr_assert_geq(answered, rows * 3 / 4, "the band path answered %d of %d rows", answered, rows);
}
