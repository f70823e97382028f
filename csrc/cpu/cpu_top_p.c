/* top-p without top-k (docs/semantics.md section 5): the nucleus from one
 * mass pass and a select over a narrow band of tokens, instead of a weighted
 * radix select over every token.
 *
 * The cut is the first token in canonical order whose inclusive mass reaches
 * target = ceil(p * S). The mass pass leaves each token's fbits (cpu_row.h):
 * monotone in the logit, and its mass without an exponential. So for
 * thresholds t_lo < t_hi on the fbits, every token at or above t_hi precedes
 * the band t_lo <= fbits < t_hi, which precedes the rest. With A the mass at
 * or above t_hi and B the band's, A < target <= A + B puts the cut in the
 * band: a select over the band (target - A) finds the same token as one over
 * the whole row, and every token above the band is kept. A sample of the
 * fbits only chooses t_lo and t_hi; the condition is checked exactly, and the
 * caller takes the exact path when it fails, so the sample decides speed,
 * never the answer. */
#include <string.h>

#include "cpu_kept.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T256 __attribute__((target("avx2")))
#define KILN_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))
#endif

enum { SAMPLES = 2048, BAND_SAMPLES = 24 };

/* One pass over the fbits: the mass of the tokens with fbits >= hi, per
 * chunk and in all, and the ids of the band lo <= fbits < hi, ascending
 * (1 <= lo < hi). fbits are below 2^31 (F >= 0), so signed compares order
 * them. The AVX2 code takes floor(F) apart into its low 20 bits and the
 * rest, as the mass pass does, so a chunk's 256 parts sum exactly in 32-bit
 * lanes; and since the band holds a token or two of every 64, a branch per
 * token would mispredict, so it appends the set bits of a compare mask. */
static uint64_t band_pass_scalar(const uint32_t *fb, int64_t from, int64_t n, uint32_t lo,
                                 uint32_t hi, uint64_t *sums, uint32_t *ids, size_t *count,
                                 uint32_t *starts)
{
    uint64_t total = 0;
    for (int64_t base = from; base < n; base += KILN_CPU_CHUNK) {
        const int64_t end = base + KILN_CPU_CHUNK < n ? base + KILN_CPU_CHUNK : n;
        starts[base / KILN_CPU_CHUNK] = (uint32_t)*count;
        uint64_t s = 0;
        for (int64_t i = base; i < end; ++i) {
            s += fb[i] >= hi ? kiln_cpu_fbits_mass(fb[i]) : 0;
            if (fb[i] >= lo && fb[i] < hi)
                ids[(*count)++] = (uint32_t)i;
        }
        sums[base / KILN_CPU_CHUNK] = s;
        total += s;
    }
    starts[(n + KILN_CPU_CHUNK - 1) / KILN_CPU_CHUNK] = (uint32_t)*count;
    return total;
}

#ifdef KILN_X86_KERNELS
KILN_T256 static uint64_t band_pass_256(const uint32_t *fb, int64_t n, uint32_t lo, uint32_t hi,
                                        uint64_t *sums, uint32_t *ids, size_t *count,
                                        uint32_t *starts)
{
    const __m256i vlo = _mm256_set1_epi32((int32_t)lo), vhi = _mm256_set1_epi32((int32_t)hi);
    const __m256 down = _mm256_set1_ps(0x1p-20f), up = _mm256_set1_ps(0x1p20f);
    uint64_t total = 0;
    size_t c = *count;
    int64_t base = 0;
    for (; base + KILN_CPU_CHUNK <= n; base += KILN_CPU_CHUNK) {
        starts[base / KILN_CPU_CHUNK] = (uint32_t)c;
        __m256i alo = _mm256_setzero_si256(), ahi = alo;
        for (int64_t b = base; b < base + KILN_CPU_CHUNK; b += 64) {
            uint64_t bits = 0;
            for (int v = 0; v < 8; ++v) {
                const __m256i f = _mm256_loadu_si256((const __m256i *)(fb + b + 8 * v));
                const __m256i below_hi = _mm256_cmpgt_epi32(vhi, f);
                const __m256i in = _mm256_andnot_si256(_mm256_cmpgt_epi32(vlo, f), below_hi);
                bits |= (uint64_t)(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(in)) << (8 * v);
                /* floor(F) = h 2^20 + l for the float F with bits f >= 0:
                 * h = floor(F 2^-20) (an exact scaling, truncated), and
                 * F - h 2^20 is exact (Sterbenz when h >= 1), so l is its
                 * truncation: h < 2^21 and l < 2^20 */
                const __m256 F = _mm256_castsi256_ps(f);
                const __m256i h = _mm256_cvttps_epi32(_mm256_mul_ps(F, down));
                const __m256i l = _mm256_cvttps_epi32(
                    _mm256_sub_ps(F, _mm256_mul_ps(_mm256_cvtepi32_ps(h), up)));
                alo = _mm256_add_epi32(alo, _mm256_andnot_si256(below_hi, l));
                ahi = _mm256_add_epi32(ahi, _mm256_andnot_si256(below_hi, h));
            }
            while (bits) {
                ids[c++] = (uint32_t)(b + __builtin_ctzll(bits));
                bits &= bits - 1;
            }
        }
        uint32_t l[8], h[8];
        _mm256_storeu_si256((__m256i *)l, alo);
        _mm256_storeu_si256((__m256i *)h, ahi);
        uint64_t lo_sum = 0, hi_sum = 0;
        for (int k = 0; k < 8; ++k) {
            lo_sum += l[k];
            hi_sum += h[k];
        }
        const uint64_t s = (hi_sum << 20) + lo_sum;
        sums[base / KILN_CPU_CHUNK] = s;
        total += s;
    }
    *count = c;
    return total + band_pass_scalar(fb, base, n, lo, hi, sums, ids, count, starts);
}

/* AVX-512DQ converts floats to 64-bit integers: floor(F) of eight tokens in
 * one instruction (truncation is floor for F >= 0, and F < 2^41 fits), so a
 * chunk sums in two 64-bit accumulators under the compare's mask. The band
 * ids are packed by a compress in a register, stored at the band's end: no
 * branch per band token (a row's band tokens fall at random, so a loop over
 * a mask's set bits mispredicts about once per 64 tokens, which cost as much
 * as the rest of the pass on rows the predictor had not seen before). Each
 * store writes 16 lanes: those past the band's end are overwritten by the
 * next or are scratch, and since the band so far is at most the tokens
 * read, the store stays within the V entries of ids. starts[c] is the band's
 * length when chunk c begins (starts[chunks]: its end). */
KILN_T512 static uint64_t band_pass_512(const uint32_t *fb, int64_t n, uint32_t lo, uint32_t hi,
                                        uint64_t *sums, uint32_t *ids, size_t *count,
                                        uint32_t *starts)
{
    const __m512i vlo = _mm512_set1_epi32((int32_t)lo), vhi = _mm512_set1_epi32((int32_t)hi);
    const __m512i step = _mm512_set1_epi32(16);
    uint64_t total = 0;
    size_t c = *count;
    int64_t base = 0;
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (; base + KILN_CPU_CHUNK <= n; base += KILN_CPU_CHUNK) {
        starts[base / KILN_CPU_CHUNK] = (uint32_t)c;
        __m512i a0 = _mm512_setzero_si512(), a1 = a0;
        for (int64_t b = base; b < base + KILN_CPU_CHUNK; b += 16) {
            const __m512i f = _mm512_loadu_si512((const void *)(fb + b));
            const __mmask16 heavy = _mm512_cmpge_epi32_mask(f, vhi);
            const __mmask16 in = _mm512_mask_cmpge_epi32_mask((__mmask16)~heavy, f, vlo);
            const unsigned k = (unsigned)__builtin_popcount((unsigned)in);
            /* all 16 lanes: c <= b, so the store ends by b + 16 <= n, inside ids */
            _mm512_storeu_si512((void *)(ids + c), _mm512_maskz_compress_epi32(in, idx));
            c += k;
            idx = _mm512_add_epi32(idx, step);
            /* the halves converted from memory: no extract on the shuffle port */
            a0 = _mm512_mask_add_epi64(a0, (__mmask8)heavy, a0,
                                       _mm512_cvttps_epu64(_mm256_loadu_ps((const float *)fb + b)));
            a1 = _mm512_mask_add_epi64(a1, (__mmask8)(heavy >> 8), a1,
                                       _mm512_cvttps_epu64(_mm256_loadu_ps((const float *)fb + b + 8)));
        }
        const uint64_t s = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(a0, a1));
        sums[base / KILN_CPU_CHUNK] = s;
        total += s;
    }
    *count = c;
    return total + band_pass_scalar(fb, base, n, lo, hi, sums, ids, count, starts);
}

/* The band's masses (w[j] = the mass of fbits fb[ids[j]], summed) and its
 * keys (key[j] = kiln_order_key of token ids[j]): 16 tokens a gather on
 * AVX-512 instead of a dependent load each. A bf16 is read as the top half
 * of the 32 bits that end at it (the token before it in the low half), so
 * only token 0, which has none before it, is read alone. */
KILN_T512 static uint64_t band_masses_512(const uint32_t *fb, const uint32_t *ids, size_t n,
                                          uint64_t *w)
{
    __m512i acc = _mm512_setzero_si512();
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512i idx = _mm512_loadu_si512((const void *)(ids + j));
        const __m512 F = _mm512_castsi512_ps(_mm512_i32gather_epi32(idx, (const void *)fb, 4));
        const __m512i w0 = _mm512_cvttps_epu64(_mm512_castps512_ps256(F));
        const __m512i w1 = _mm512_cvttps_epu64(_mm512_extractf32x8_ps(F, 1));
        _mm512_storeu_si512((void *)(w + j), w0);
        _mm512_storeu_si512((void *)(w + j + 8), w1);
        acc = _mm512_add_epi64(acc, _mm512_add_epi64(w0, w1));
    }
    uint64_t band = (uint64_t)_mm512_reduce_add_epi64(acc);
    for (; j < n; ++j)
        band += w[j] = kiln_cpu_fbits_mass(fb[ids[j]]);
    return band;
}

KILN_T512 static void band_keys_512(const kiln_cpu_row *row, const uint32_t *ids, size_t n,
                                    uint32_t *key)
{
    size_t j = 0;
    if (row->bf16 && n && ids[0] == 0)
        key[j++] = kiln_order_key(kiln_cpu_row_at(row, 0));
    const void *base = row->bf16 ? (const void *)((const uint16_t *)row->data - 1) : row->data;
    const int scale_is_2 = row->bf16;
    for (; j + 16 <= n; j += 16) {
        const __m512i idx = _mm512_loadu_si512((const void *)(ids + j));
        __m512i u = scale_is_2 ? _mm512_and_si512(_mm512_i32gather_epi32(idx, base, 2),
                                                  _mm512_set1_epi32((int)0xFFFF0000u))
                               : _mm512_i32gather_epi32(idx, base, 4);
        /* kiln_order_key: -0 -> +0, then flip all bits of negatives, the sign of the rest */
        u = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(u, _mm512_set1_epi32(0x7FFFFFFF)), u);
        const __m512i flip = _mm512_or_si512(_mm512_srai_epi32(u, 31), _mm512_set1_epi32((int)0x80000000u));
        _mm512_storeu_si512((void *)(key + j), _mm512_xor_si512(u, flip));
    }
    for (; j < n; ++j)
        key[j] = kiln_order_key(kiln_cpu_row_at(row, ids[j]));
}
#endif

/* w[j] becomes the inclusive prefix sum of the kept band masses: w[i] of
 * the band tokens i <= j in the cut's prefix (key above the cut's, or equal
 * and at or before it, i <= at), 0 for the rest. Eight tokens a step: the
 * prefix within a vector by three lane shifts, then the carry. */
static uint64_t kept_prefix_scalar(const uint32_t *key, uint64_t *w, size_t from, size_t n,
                                   uint32_t cut_key, size_t at, uint64_t run)
{
    for (size_t j = from; j < n; ++j) {
        const uint64_t in = (uint64_t)((key[j] > cut_key) | ((key[j] == cut_key) & (j <= at)));
        run += w[j] & (0 - in);
        w[j] = run;
    }
    return run;
}

#ifdef KILN_X86_KERNELS
KILN_T512 static uint64_t kept_prefix_512(const uint32_t *key, uint64_t *w, size_t n,
                                          uint32_t cut_key, size_t at)
{
    const __m256i vcut = _mm256_set1_epi32((int32_t)cut_key);
    const __m512i vat = _mm512_set1_epi64((int64_t)at), step = _mm512_set1_epi64(8);
    const __m512i zero = _mm512_setzero_si512(), last = _mm512_set1_epi64(7);
    __m512i idx = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), carry = zero;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256i k = _mm256_loadu_si256((const __m256i *)(key + j));
        const __mmask8 in = (__mmask8)(_mm256_cmpgt_epu32_mask(k, vcut) |
                                       (_mm256_cmpeq_epi32_mask(k, vcut) &
                                        _mm512_cmple_epu64_mask(idx, vat)));
        __m512i v = _mm512_maskz_loadu_epi64(in, w + j);
        v = _mm512_add_epi64(v, _mm512_alignr_epi64(v, zero, 7));
        v = _mm512_add_epi64(v, _mm512_alignr_epi64(v, zero, 6));
        v = _mm512_add_epi64(v, _mm512_alignr_epi64(v, zero, 4));
        v = _mm512_add_epi64(v, carry);
        _mm512_storeu_si512((void *)(w + j), v);
        carry = _mm512_permutexvar_epi64(last, v);
        idx = _mm512_add_epi64(idx, step);
    }
    const uint64_t run = j ? w[j - 1] : 0;
    return kept_prefix_scalar(key, w, j, n, cut_key, at, run);
}
#endif

static uint64_t kept_prefix(const uint32_t *key, uint64_t *w, size_t n, uint32_t cut_key, size_t at)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return kept_prefix_512(key, w, n, cut_key, at);
#endif
    return kept_prefix_scalar(key, w, 0, n, cut_key, at, 0);
}

static uint64_t band_masses(const uint32_t *fb, const uint32_t *ids, size_t n, uint64_t *w)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return band_masses_512(fb, ids, n, w);
#endif
    uint64_t band = 0;
    for (size_t j = 0; j < n; ++j)
        band += w[j] = kiln_cpu_fbits_mass(fb[ids[j]]);
    return band;
}

static void band_keys(const kiln_cpu_row *row, const uint32_t *ids, size_t n, uint32_t *key)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512) {
        band_keys_512(row, ids, n, key);
        return;
    }
#endif
    for (size_t j = 0; j < n; ++j)
        key[j] = kiln_order_key(kiln_cpu_row_at(row, ids[j]));
}

static uint64_t band_pass(const uint32_t *fb, int64_t n, uint32_t lo, uint32_t hi, uint64_t *sums,
                          uint32_t *ids, size_t *count, uint32_t *starts)
{
    *count = 0;
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return band_pass_512(fb, n, lo, hi, sums, ids, count, starts);
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2)
        return band_pass_256(fb, n, lo, hi, sums, ids, count, starts);
#endif
    return band_pass_scalar(fb, 0, n, lo, hi, sums, ids, count, starts);
}

/* The bands a stride sample of the fbits suggests, tried in turn: first
 * [lo, hi) around the sample's estimate of the cut (walking the sample up
 * from its lightest tokens, the tail mass scaled by the stride crosses
 * S - target there), `width` sample points either side; width grows with
 * the binomial spread of the number of sample points below the cut, so
 * near-uniform rows get a band their sampling error fits in. When the
 * sample puts few tokens above the band (a head it may have missed: peaked
 * rows, small p), hi is +inf, so one pass holds the head too. On a miss, a
 * band five widths further in that direction (up_hi, or down_lo), then
 * everything beyond it. The sample is binned by fbits, 64 bins an octave of
 * mass (the top 6 bits of the significand), instead of sorted; only the
 * points of the few bins around the estimate are sorted, for the first
 * band's edges (the retries' edges are bin edges). The band starts at a
 * non-zero mass, so a peaked row collects only its few tokens. */
typedef struct band_plan {
    uint32_t lo, hi, up_hi, down_lo;
} band_plan;

enum {
    ABOVE_CAP = 1024, /* tokens a first band may hold above the estimate */
    BIN_SHIFT = 20,
    BIN_BASE = 0x3F800000 >> BIN_SHIFT, /* the bin of mass 1 */
    BINS = (0x54000000 >> BIN_SHIFT) - BIN_BASE /* masses below 2^41 */
};

typedef struct sample_bins {
    uint32_t count[BINS + 1]; /* the last: the points of zero mass */
    uint64_t mass[BINS + 1];
    uint32_t point[2 * SAMPLES];                 /* the sample, read once from the fbits */
    uint32_t point_bin[2 * SAMPLES];             /* each point's bin (BINS: zero mass) */
    uint64_t point_mass[2 * SAMPLES];            /* and its mass */
    uint32_t near[2 * SAMPLES], tmp[2 * SAMPLES]; /* the sample points near the cut */
} sample_bins;

/* it lives in the scratch w, V >= 8 SAMPLES words of 8 bytes, followed by
 * the V / 16 words of every16: 8 V - 4 V / 16 >= 62 SAMPLES bytes */
_Static_assert(sizeof(sample_bins) + 64 <= 62 * SAMPLES, "sample_bins and every16 fit in w");

static uint32_t bin_edge(int b)
{
    return (uint32_t)(b + BIN_BASE) << BIN_SHIFT;
}

static int bin_of(uint32_t f)
{
    return (int)(f >> BIN_SHIFT) - BIN_BASE;
}

/* The sample's points fb[s * stride], s < n, with their bins (BINS for a
 * zero mass: branch-free, as how many there are depends on the row) and
 * masses; AVX-512 bins and converts them in vectors, which leaves the
 * binning loop two increments a point. */
static void sample_points_scalar(const uint32_t *fb, int64_t stride, int64_t from, int64_t n,
                                 sample_bins *sb)
{
    const uint32_t one = kiln_f32_bits(1.0f);
    for (int64_t s = from; s < n; ++s) {
        const uint32_t f = sb->point[s] = fb[s * stride];
        sb->point_bin[s] = f < one ? BINS : (uint32_t)bin_of(f);
        sb->point_mass[s] = kiln_cpu_fbits_mass(f);
    }
}

#ifdef KILN_X86_KERNELS
KILN_T512 static void sample_points_512(const uint32_t *fb, int64_t stride, int64_t n,
                                        sample_bins *sb)
{
    /* plain loads first (a gather of sixteen lines was slower), then the
     * bins and masses of sixteen points at a time from L1 */
    for (int64_t s = 0; s < n; ++s)
        sb->point[s] = fb[s * stride];
    const __m512i one = _mm512_set1_epi32((int32_t)kiln_f32_bits(1.0f));
    const __m512i base = _mm512_set1_epi32(BIN_BASE), zero_bin = _mm512_set1_epi32(BINS);
    int64_t s = 0;
    for (; s + 16 <= n; s += 16) {
        const __m512i f = _mm512_loadu_si512((const void *)(sb->point + s));
        const __mmask16 zero = _mm512_cmplt_epu32_mask(f, one);
        const __m512i bin = _mm512_mask_mov_epi32(_mm512_sub_epi32(_mm512_srli_epi32(f, BIN_SHIFT), base),
                                                  zero, zero_bin);
        _mm512_storeu_si512((void *)(sb->point_bin + s), bin);
        _mm512_storeu_si512((void *)(sb->point_mass + s),
                            _mm512_cvttps_epu64(_mm256_loadu_ps((const float *)(sb->point + s))));
        _mm512_storeu_si512((void *)(sb->point_mass + s + 8),
                            _mm512_cvttps_epu64(_mm256_loadu_ps((const float *)(sb->point + s + 8))));
    }
    sample_points_scalar(fb, stride, s, n, sb);
}

/* The points in [lo, hi), packed in order, sixteen compared at a time. */
KILN_T512 static size_t near_points_512(const uint32_t *point, int64_t n, uint32_t lo, uint32_t hi,
                                        uint32_t *near)
{
    const __m512i vlo = _mm512_set1_epi32((int32_t)lo), vhi = _mm512_set1_epi32((int32_t)hi);
    size_t m = 0;
    int64_t s = 0;
    for (; s + 16 <= n; s += 16) {
        const __m512i f = _mm512_loadu_si512((const void *)(point + s));
        const __mmask16 in = _mm512_mask_cmplt_epu32_mask(_mm512_cmpge_epu32_mask(f, vlo), f, vhi);
        /* 16 lanes at m <= s: within near's 2 SAMPLES entries */
        _mm512_storeu_si512((void *)(near + m), _mm512_maskz_compress_epi32(in, f));
        m += (size_t)__builtin_popcount((unsigned)in);
    }
    for (; s < n; ++s) {
        near[m] = point[s];
        m += point[s] >= lo && point[s] < hi;
    }
    return m;
}
#endif

static void sample_points(const uint32_t *fb, int64_t stride, int64_t n, sample_bins *sb)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512) {
        sample_points_512(fb, stride, n, sb);
        return;
    }
#endif
    sample_points_scalar(fb, stride, 0, n, sb);
}

static size_t near_points(const uint32_t *point, int64_t n, uint32_t lo, uint32_t hi, uint32_t *near)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return near_points_512(point, n, lo, hi, near);
#endif
    size_t m = 0;
    for (int64_t s = 0; s < n; ++s) { /* a branch here would mispredict at every near point */
        near[m] = point[s];
        m += point[s] >= lo && point[s] < hi;
    }
    return m;
}

/* The sample's stride: a multiple of 16, so its points are among the fbits
 * the mass pass leaves in every16 (every16[t] = fbits[16 t]). */
static int64_t sample_stride(int64_t V)
{
    const int64_t s = V / SAMPLES / 16 * 16;
    return s > 16 ? s : 16;
}

static band_plan sampled_band(const uint32_t *every16, int64_t V, uint64_t tail_mass,
                              sample_bins *sb)
{
    const int64_t stride = sample_stride(V);
    const int64_t n = V / stride; /* < 2 SAMPLES: stride > V / SAMPLES / 2, and n <= V / 16 */
    const uint32_t one = kiln_f32_bits(1.0f); /* the smallest fbits of a non-zero mass */
    const uint32_t infinite = kiln_f32_bits(__builtin_inff());
    memset(sb->count, 0, sizeof sb->count);
    memset(sb->mass, 0, sizeof sb->mass);
    sample_points(every16, stride / 16, n, sb); /* fbits[s * stride] */
    for (int64_t s = 0; s < n; ++s) {
        sb->count[sb->point_bin[s]]++;
        sb->mass[sb->point_bin[s]] += sb->point_mass[s];
    }
    const int64_t zero = sb->count[BINS];
    int c = 0, top = 0;
    for (int b = 0; b < BINS; ++b)
        top = sb->count[b] ? b : top;
    uint64_t tail = 0;
    int64_t below = zero;
    for (c = 0; c < top; ++c) {
        if (tail + sb->mass[c] * (uint64_t)stride > tail_mass)
            break;
        tail += sb->mass[c] * (uint64_t)stride;
        below += sb->count[c];
    }
    /* 1.5 standard deviations of a binomial count of `below` points in n
     * (an integer square root: no libm, and the band only decides speed) */
    const int64_t variance = below * (n - below) / n;
    int64_t sd = 0;
    while ((sd + 1) * (sd + 1) <= variance)
        ++sd;
    const int64_t spread = sd + sd / 2 + 1;
    const int64_t width = spread > BAND_SAMPLES ? spread : BAND_SAMPLES;
    const int64_t few = (ABOVE_CAP + stride - 1) / stride;
    /* Coarse edges: the lower edge of the bin where `steps` widths of points
     * below c are reached (one if they never are), and the upper edge of the
     * bin where they are reached above c (+inf if at most `few` points lie
     * above it). */
    int64_t run = 0;
    int b = c, lo_bin[2], hi_bin[2];
    uint64_t tail_lo = tail; /* the sampled tail below lo_bin[0] */
    band_plan plan = { one, infinite, infinite, one };
    for (int k = 0; k < 2; ++k) {
        const int64_t steps = k ? 5 : 1;
        while (b > 0 && run < steps * width) {
            run += sb->count[--b];
            if (k == 0)
                tail_lo -= sb->mass[b] * (uint64_t)stride;
        }
        lo_bin[k] = b;
        *(k ? &plan.down_lo : &plan.lo) = run >= steps * width ? bin_edge(b) : one;
    }
    run = 0;
    b = c;
    int64_t above = n - below - sb->count[c];
    for (int k = 0; k < 2; ++k) {
        const int64_t steps = k ? 5 : 1;
        while (b < top && run < steps * width) {
            run += sb->count[++b];
            above -= sb->count[b];
        }
        hi_bin[k] = b;
        *(k ? &plan.up_hi : &plan.hi) = above > few ? bin_edge(b + 1) : infinite;
    }
    /* Fine edges for the first band: the points of bins lo_bin[0]..hi_bin[0]
     * in order, the crossing point among them, `width` points either side
     * (a band of few bins' worth of tokens even where one bin holds many) */
    const uint32_t near_lo = bin_edge(lo_bin[0]) > one ? bin_edge(lo_bin[0]) : one;
    const uint32_t near_hi = bin_edge(hi_bin[0] + 1);
    const size_t m = near_points(sb->point, n, near_lo, near_hi, sb->near);
    const uint32_t *v = kiln_cpu_sort_u32(sb->near, sb->tmp, m);
    size_t i = 0;
    for (uint64_t t = tail_lo; i + 1 < m; ++i) {
        t += kiln_cpu_fbits_mass(v[i]) * (uint64_t)stride;
        if (t > tail_mass)
            break;
    }
    if (plan.lo != one && i >= (size_t)width)
        plan.lo = v[i - (size_t)width];
    if (plan.hi != infinite && i + (size_t)width < m)
        plan.hi = v[i + (size_t)width];
    if (plan.hi <= plan.lo)
        plan.hi = plan.lo + 1;
    if (plan.up_hi <= plan.hi)
        plan.up_hi = infinite;
    if (plan.down_lo >= plan.lo)
        plan.down_lo = one;
    return plan;
}

int kiln_cpu_keep_top_p(const kiln_cpu_row *row, float m, float c, float top_p, uint64_t lo,
                        kiln_cpu_scratch *sc, kiln_cpu_kept *out, uint64_t *total_all)
{
    const int64_t V = row->n;
    if (V < 8 * SAMPLES)
        return 0;
    const kiln_cpu_mass_ctx mc = kiln_cpu_mass_ctx_init(m, c);
    uint32_t *fb = sc->tmp[0].id;
    /* the every-16th fbits after the sample's bins in w (it fits:
     * _Static_assert at sample_bins) */
    uint32_t *every16 = (uint32_t *)((char *)sc->w + (sizeof(sample_bins) + 63) / 64 * 64);
    const uint64_t total = kiln_cpu_mass_fbits_every16(row, &mc, fb, every16);
    *total_all = total;
    const uint64_t target = kiln_ceil_scale(top_p, total);
    const uint32_t one = kiln_f32_bits(1.0f), infinite = kiln_f32_bits(__builtin_inff());
    /* target <= 2^40: the first max token (mass exactly 2^40) is the cut,
     * and the band is the tokens tied with it */
    const band_plan max_ties = { kiln_f32_bits(0x1p40f), infinite, infinite, one };
    const band_plan plan = target <= KILN_MASS_ONE
                               ? max_ties
                               : sampled_band(every16, V, total - target, (sample_bins *)sc->w);

    /* the chunk sums at the end of w, the band's masses at its start; a cut
     * above the band (a head the sample missed) or below it takes the next
     * band in that direction, then everything beyond */
    const int64_t chunks = (V + KILN_CPU_CHUNK - 1) / KILN_CPU_CHUNK;
    uint64_t *sums = sc->w + V - chunks, *w = sc->w;
    uint32_t *ids = sc->cand;
    uint32_t *starts = sc->marks; /* chunks + 1 entries: where each chunk's band ids begin */
    uint32_t t_lo = plan.lo, t_hi = plan.hi;
    uint64_t above = 0, band = 0;
    size_t n = 0;
    for (int attempt = 0;; ++attempt) {
        /* min-p must not remove a band token: then it removes nothing kept */
        if (attempt == 3 || t_lo >= t_hi || kiln_cpu_fbits_mass(t_lo) < lo)
            return 0;
        above = band_pass(fb, V, t_lo, t_hi, sums, ids, &n, starts);
        if (above >= target) {
            t_lo = t_hi;
            t_hi = t_hi == plan.hi ? plan.up_hi : infinite;
            continue;
        }
        if ((int64_t)n > V - chunks)
            return 0; /* the band's masses would reach the chunk sums */
        band = band_masses(fb, ids, n, w);
        if (above + band >= target)
            break;
        t_hi = t_lo;
        t_lo = t_lo == plan.lo ? plan.down_lo : one;
    }

    /* the select runs over the band's keys packed in id order (tmp[1].w is
     * free until the chunk sums go there; x may hold the row itself) */
    uint32_t *key = (uint32_t *)sc->tmp[1].w;
    band_keys(row, ids, n, key);
    const size_t at = kiln_cpu_packed_cut(key, w, n, target - above, sc->tmp[0].id, sc->tmp[1].id);
    const kiln_cpu_cut cut = { key[at], ids[at] };
    /* the kept set is chunked: the tokens of the cut's prefix (every one
     * above the band, and min-p removes none of them); its chunk sums live
     * in tmp[1].w, where the other chunked sets keep theirs */
    /* ids ascend, so a chunk's band tokens are the run starts[c] ..
     * starts[c + 1] - 1: the kept band masses become inclusive prefix sums in
     * place, and a chunk adds the difference at its run's ends. No branch
     * per token (a chunk's run ends at random), and membership selects the
     * mass instead of branching on a coin-flip (the cut splits the band; the
     * test of kiln_cpu_in_packed_prefix in bitwise form, kept_prefix) */
    const uint64_t kept = above + kept_prefix(key, w, n, cut.key, at);
    for (int64_t ch = 0; ch < chunks; ++ch) {
        const uint32_t s0 = starts[ch], s1 = starts[ch + 1];
        sums[ch] += (s1 ? w[s1 - 1] : 0) - (s0 ? w[s0 - 1] : 0);
    }
    memcpy(sc->tmp[1].w, sums, (size_t)chunks * sizeof *sums);
    memset(out, 0, sizeof *out);
    out->form = KILN_KEPT_CHUNKED;
    out->chunks = sc->tmp[1].w;
    out->mc = mc;
    out->has_cut = 1;
    out->cut = cut;
    out->count = -1;
    out->total = kept;
    return 1;
}
