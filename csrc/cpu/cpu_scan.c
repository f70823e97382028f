/* Whole-row scans that need no exponential, on f32 or bf16 rows in place:
 * the key range (validity and the max), the first token equal to a value,
 * the sampled key histogram and the count of tokens at or above a threshold
 * (cpu_collect.c collects them). Mostly plain loops that gcc vectorises
 * (clones for AVX-512 and AVX2, as in cpu_kernels.c; a bf16 row is scanned
 * as 16-bit keys, 32 to a 512-bit register); the f32 key range and the
 * histogram's blocks are AVX2 (and the key range AVX-512) intrinsics, whose
 * shape gcc does not find. */
#include <string.h>

#include "cpu_backend.h"
#include "cpu_row.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(KILN_NO_CLONES)
#define KILN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KILN_CLONES
#endif

/* kiln_order_key on the 16 bits of a bf16: the top half of the f32 key,
 * since the f32's low half is zero (-0 maps to +0 the same way). */
static inline uint16_t bf16_key(uint16_t h)
{
    h = (uint16_t)(h << 1) ? h : 0;
    const uint16_t flip = (uint16_t)((0u - (uint32_t)(h >> 15)) | 0x8000u);
    return (uint16_t)(h ^ flip);
}

KILN_CLONES
static void key_range_bf16(const uint16_t *h, int64_t n, uint16_t *min_key, uint16_t *max_key)
{
    int16_t lo = INT16_MAX, hi = INT16_MIN;
    for (int64_t i = 0; i < n; ++i) {
        const int16_t k = kiln_bf16_signed_key(h[i]);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    *min_key = kiln_bf16_key_of_signed(lo);
    *max_key = kiln_bf16_key_of_signed(hi);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(KILN_NO_CLONES)
#define KILN_X86_KERNELS 1
#include <immintrin.h>
#define KILN_T256 __attribute__((target("avx2")))
#define KILN_T512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl")))

/* The key range of an f32 row as float min and max (MINPS/MAXPS, four
 * accumulators) plus an unordered-compare flag: 1.5 instructions per token
 * fewer than keys per token. Keys are monotone in the value with -0 tied to
 * +0, so key(max) and key(min) are the key range of a row without NaN; a
 * row with NaN (invalid) gets 0 and its range from the key loop, which
 * tells the NaN's sign as the validity test reads it. */
KILN_T256 static int key_range_f32_256(const float *x, int64_t n, uint32_t *min_key,
                                       uint32_t *max_key)
{
    __m256 hi[4], lo[4], nan = _mm256_setzero_ps();
    for (int a = 0; a < 4; ++a) {
        hi[a] = _mm256_set1_ps(-__builtin_inff());
        lo[a] = _mm256_set1_ps(__builtin_inff());
    }
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int a = 0; a < 4; ++a) {
            const __m256 v = _mm256_loadu_ps(x + i + 8 * a);
            hi[a] = _mm256_max_ps(hi[a], v);
            lo[a] = _mm256_min_ps(lo[a], v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
    if (_mm256_movemask_ps(nan))
        return 0;
    hi[0] = _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3]));
    lo[0] = _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3]));
    float h[8], l[8];
    _mm256_storeu_ps(h, hi[0]);
    _mm256_storeu_ps(l, lo[0]);
    return kiln_cpu_lanes_key_range(h, l, 8, x + i, n - i, min_key, max_key);
}

/* The same on 512-bit registers: the NaN flag as a mask register. */
KILN_T512 static int key_range_f32_512(const float *x, int64_t n, uint32_t *min_key,
                                       uint32_t *max_key)
{
    __m512 hi[4], lo[4];
    __mmask16 nan = 0;
    for (int a = 0; a < 4; ++a) {
        hi[a] = _mm512_set1_ps(-__builtin_inff());
        lo[a] = _mm512_set1_ps(__builtin_inff());
    }
    int64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int a = 0; a < 4; ++a) {
            const __m512 v = _mm512_loadu_ps(x + i + 16 * a);
            hi[a] = _mm512_max_ps(hi[a], v);
            lo[a] = _mm512_min_ps(lo[a], v);
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        }
    if (nan)
        return 0;
    hi[0] = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
    lo[0] = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
    float h[16], l[16];
    _mm512_storeu_ps(h, hi[0]);
    _mm512_storeu_ps(l, lo[0]);
    return kiln_cpu_lanes_key_range(h, l, 16, x + i, n - i, min_key, max_key);
}

/* The row copied out as f32 and its key range in the same pass (AVX2 and
 * AVX-512; the range as in key_range_f32_256, the float min and max and an
 * unordered-compare flag). */
KILN_T256 static inline __attribute__((always_inline)) int
copy_key_range_256_body(const kiln_cpu_row *row, float *out, uint32_t *min_key, uint32_t *max_key,
                        const int bf16)
{
    const int64_t n = row->n;
    __m256 hi[2], lo[2], nan = _mm256_setzero_ps();
    for (int a = 0; a < 2; ++a) {
        hi[a] = _mm256_set1_ps(-__builtin_inff());
        lo[a] = _mm256_set1_ps(__builtin_inff());
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int a = 0; a < 2; ++a) {
            const __m256 v =
                bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(
                           _mm256_cvtepu16_epi32(_mm_loadu_si128(
                               (const __m128i *)((const uint16_t *)row->data + i + 8 * a))),
                           16))
                     : _mm256_loadu_ps((const float *)row->data + i + 8 * a);
            _mm256_storeu_ps(out + i + 8 * a, v);
            hi[a] = _mm256_max_ps(hi[a], v);
            lo[a] = _mm256_min_ps(lo[a], v);
            nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        }
    for (; i < n; ++i)
        out[i] = kiln_cpu_row_at(row, i);
    if (_mm256_movemask_ps(nan))
        return 0;
    float h[8], l[8];
    _mm256_storeu_ps(h, _mm256_max_ps(hi[0], hi[1]));
    _mm256_storeu_ps(l, _mm256_min_ps(lo[0], lo[1]));
    return kiln_cpu_lanes_key_range(h, l, 8, out + (n - n % 16), n % 16,
                                    min_key, max_key);
}

KILN_T256 static int copy_key_range_256(const kiln_cpu_row *row, float *out, uint32_t *min_key,
                                        uint32_t *max_key)
{
    return row->bf16 ? copy_key_range_256_body(row, out, min_key, max_key, 1)
                     : copy_key_range_256_body(row, out, min_key, max_key, 0);
}

KILN_T512 static inline __attribute__((always_inline)) int
copy_key_range_512_body(const kiln_cpu_row *row, float *out, uint32_t *min_key, uint32_t *max_key,
                        const int bf16)
{
    const int64_t n = row->n;
    __m512 hi[2], lo[2];
    __mmask16 nan = 0;
    for (int a = 0; a < 2; ++a) {
        hi[a] = _mm512_set1_ps(-__builtin_inff());
        lo[a] = _mm512_set1_ps(__builtin_inff());
    }
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int a = 0; a < 2; ++a) {
            const __m512 v =
                bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(
                                _mm512_cvtepu16_epi32(_mm256_loadu_si256(
                                    (const __m256i *)((const uint16_t *)row->data + i + 16 * a))),
                                16))
                          : _mm512_loadu_ps((const float *)row->data + i + 16 * a);
            _mm512_storeu_ps(out + i + 16 * a, v);
            hi[a] = _mm512_max_ps(hi[a], v);
            lo[a] = _mm512_min_ps(lo[a], v);
            nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        }
    for (; i < n; ++i)
        out[i] = kiln_cpu_row_at(row, i);
    if (nan)
        return 0;
    float h[16], l[16];
    _mm512_storeu_ps(h, _mm512_max_ps(hi[0], hi[1]));
    _mm512_storeu_ps(l, _mm512_min_ps(lo[0], lo[1]));
    return kiln_cpu_lanes_key_range(h, l, 16, out + (n - n % 32), n % 32,
                                    min_key, max_key);
}

KILN_T512 static int copy_key_range_512(const kiln_cpu_row *row, float *out, uint32_t *min_key,
                                        uint32_t *max_key)
{
    return row->bf16 ? copy_key_range_512_body(row, out, min_key, max_key, 1)
                     : copy_key_range_512_body(row, out, min_key, max_key, 0);
}
#endif

int kiln_cpu_row_copy_key_range(const kiln_cpu_row *row, float *out, uint32_t *min_key,
                                uint32_t *max_key)
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX512)
        return copy_key_range_512(row, out, min_key, max_key);
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2)
        return copy_key_range_256(row, out, min_key, max_key);
#endif
    kiln_cpu_row_to_f32(row, out);
    return 0;
}

void kiln_cpu_row_key_range(const kiln_cpu_row *row, uint32_t *min_key, uint32_t *max_key)
{
    if (!row->bf16) {
#ifdef KILN_X86_KERNELS
        const kiln_cpu_isa isa = kiln_cpu_isa_level();
        const float *x = (const float *)row->data;
        if (isa >= KILN_ISA_AVX512 ? key_range_f32_512(x, row->n, min_key, max_key)
            : isa >= KILN_ISA_AVX2 ? key_range_f32_256(x, row->n, min_key, max_key)
                                   : 0)
            return;
#endif
        kiln_cpu_key_range((const float *)row->data, row->n, min_key, max_key);
        return;
    }
    uint16_t lo, hi;
    key_range_bf16((const uint16_t *)row->data, row->n, &lo, &hi);
    /* the f32 key of a bf16 with key k: k's bits on top, then 16 bits that
     * are the flip of zero (all ones for negative values, zero otherwise) */
    *min_key = ((uint32_t)lo << 16) | (lo & 0x8000u ? 0u : 0xFFFFu);
    *max_key = ((uint32_t)hi << 16) | (hi & 0x8000u ? 0u : 0xFFFFu);
}

#define KILN_BLOCK 64

/* The first token whose order key is `key`, compared as bits: one value
 * has it, or two when it is zero's (-0 and +0, equal once the sign is
 * masked off). */
KILN_CLONES
static int64_t find_first_bf16(const uint16_t *h, int64_t n, uint16_t key)
{
    const uint16_t mask = key == 0x8000u ? 0x7FFFu : 0xFFFFu;
    const uint16_t want = key == 0x8000u ? 0 : key & 0x8000u ? key ^ 0x8000u : (uint16_t)~key;
    for (int64_t base = 0; base < n; base += KILN_BLOCK) {
        const int64_t end = base + KILN_BLOCK < n ? base + KILN_BLOCK : n;
        int hit = 0;
        for (int64_t i = base; i < end; ++i)
            hit |= (h[i] & mask) == want;
        if (hit)
            for (int64_t i = base; i < end; ++i)
                if ((h[i] & mask) == want)
                    return i;
    }
    return -1;
}

int64_t kiln_cpu_row_find_first(const kiln_cpu_row *row, float value)
{
    if (!row->bf16)
        return kiln_cpu_find_first((const float *)row->data, row->n, value);
    return find_first_bf16((const uint16_t *)row->data, row->n,
                           (uint16_t)(kiln_order_key(value) >> 16));
}

/* The samples read blocks a cache line apart or more, before any pass has
 * brought the row into the cache: each loop prefetches the block 16 ahead
 * (without, the top-k sample took longer than the pass after it). */
static inline void prefetch_token(const kiln_cpu_row *row, int64_t i)
{
    if (i < row->n)
        __builtin_prefetch((const char *)row->data + (size_t)i * (row->bf16 ? 2 : 4));
}

/* The key histogram of a row in place: a bf16's 16-bit key is the top half
 * of the f32 one, so its top 11 bits are too. stride 1 counts every token;
 * a larger stride counts blocks of 8 consecutive tokens every 8 stride
 * tokens, the same share of the row as every stride-th token, but read as
 * whole vectors (the keys of a block in a few instructions, then eight
 * increments into two alternating histograms). */
#ifdef KILN_X86_KERNELS
KILN_T256 static inline __m256i block_digit_vec_256(const kiln_cpu_row *row, int64_t i)
{
    const __m256i u =
        row->bf16 ? _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                                          (const __m128i *)((const uint16_t *)row->data + i))),
                                      16)
                  : _mm256_loadu_si256((const __m256i *)((const float *)row->data + i));
    /* kiln_order_key: -0 -> +0, then flip all bits of negatives, the sign of the rest */
    const __m256i zero = _mm256_cmpeq_epi32(_mm256_slli_epi32(u, 1), _mm256_setzero_si256());
    const __m256i v = _mm256_andnot_si256(zero, u);
    const __m256i flip = _mm256_or_si256(_mm256_srai_epi32(v, 31), _mm256_set1_epi32((int)0x80000000u));
    return _mm256_srli_epi32(_mm256_xor_si256(v, flip), 21);
}

KILN_T256 static void block_digits_256(const kiln_cpu_row *row, int64_t i, uint32_t d[8])
{
    _mm256_storeu_si256((__m256i *)d, block_digit_vec_256(row, i));
}

/* The sampled histogram near the sample's top: a digit counts when it is at
 * most `span` below the largest digit its lane has seen so far, a bound that
 * only rises, so every digit within span of the final max is counted (and
 * some below, dropped after); a compare per block, and an increment only
 * for the few tokens near the top. */
KILN_T256 static uint32_t key_hist_top_256(const kiln_cpu_row *row, int64_t stride, uint32_t span,
                                           uint32_t hist[2048])
{
    const __m256i reach = _mm256_set1_epi32((int)span + 1);
    __m256i top = _mm256_setzero_si256();
    /* a mispredicted `bits` test discards the loads issued after it */
    for (int64_t i = 0; i + 8 <= row->n; i += 8 * stride) {
        prefetch_token(row, i + 16 * 8 * stride);
        const __m256i dv = block_digit_vec_256(row, i);
        top = _mm256_max_epu32(top, dv);
        uint32_t bits = (uint32_t)_mm256_movemask_ps(
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(dv, _mm256_sub_epi32(top, reach))));
        if (bits) {
            uint32_t d[8];
            _mm256_storeu_si256((__m256i *)d, dv);
            while (bits) {
                hist[d[__builtin_ctz(bits)]]++;
                bits &= bits - 1;
            }
        }
    }
    uint32_t t[8], max = 0;
    _mm256_storeu_si256((__m256i *)t, top);
    for (int k = 0; k < 8; ++k)
        max = t[k] > max ? t[k] : max;
    return max;
}
#endif

static void block_digits(const kiln_cpu_row *row, int64_t i, uint32_t d[8])
{
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2) {
        block_digits_256(row, i, d);
        return;
    }
#endif
    for (int k = 0; k < 8; ++k)
        d[k] = kiln_order_key(kiln_cpu_row_at(row, i + k)) >> 21;
}

void kiln_cpu_row_key_hist(const kiln_cpu_row *row, int64_t stride, uint32_t hist[2048])
{
    if (stride == 1 && !row->bf16) {
        kiln_cpu_key_hist((const float *)row->data, row->n, 1, hist);
        return;
    }
    memset(hist, 0, 2048 * sizeof hist[0]);
    if (stride == 1) {
        const uint16_t *h = (const uint16_t *)row->data;
        for (int64_t i = 0; i < row->n; ++i)
            hist[bf16_key(h[i]) >> 5]++;
        return;
    }
    uint32_t h2[2048];
    memset(h2, 0, sizeof h2);
    for (int64_t i = 0; i + 8 <= row->n; i += 8 * stride) {
        uint32_t d[8];
        block_digits(row, i, d);
        for (int k = 0; k < 8; k += 2) {
            hist[d[k]]++;
            h2[d[k + 1]]++;
        }
    }
    for (int d = 0; d < 2048; ++d)
        hist[d] += h2[d];
}

KILN_CLONES
static int64_t count_f32(const float *x, int64_t n, float threshold)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i)
        count += x[i] >= threshold;
    return count;
}

uint64_t kiln_cpu_row_key_hist_top(const kiln_cpu_row *row, int64_t stride, uint32_t span,
                                   uint32_t hist[2048], uint32_t *dmin)
{
    memset(hist, 0, 2048 * sizeof hist[0]);
    uint32_t max = 0;
#ifdef KILN_X86_KERNELS
    if (kiln_cpu_isa_level() >= KILN_ISA_AVX2) {
        max = key_hist_top_256(row, stride, span, hist);
    } else
#endif
    {
        for (int64_t i = 0; i + 8 <= row->n; i += 8 * stride)
            for (int k = 0; k < 8; ++k) {
                const uint32_t d = kiln_order_key(kiln_cpu_row_at(row, i + k)) >> 21;
                max = d > max ? d : max;
                if (d + span >= max)
                    hist[d]++;
            }
    }
    *dmin = max > span ? max - span : 0;
    uint64_t counted = 0;
    for (uint32_t d = 0; d < 2048; ++d) {
        hist[d] = d >= *dmin ? hist[d] : 0;
        counted += hist[d];
    }
    return counted;
}

float kiln_cpu_row_sample_max(const kiln_cpu_row *row)
{
    float best = -__builtin_inff();
    for (int64_t i = 0; i < row->n; i += 1024) {
        prefetch_token(row, i + 16 * 1024);
        for (int64_t k = i; k < i + 8 && k < row->n; ++k) {
            const float x = kiln_cpu_row_at(row, k);
            best = x > best ? x : best; /* NaN never wins */
        }
    }
    return best;
}

/* Counts at or above a threshold, on signed 16-bit keys (kiln_bf16_threshold). */
KILN_CLONES
static int64_t count_bf16(const uint16_t *h, int64_t n, int16_t t)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i)
        count += kiln_bf16_signed_key(h[i]) >= t;
    return count;
}

int64_t kiln_cpu_row_count_at_least(const kiln_cpu_row *row, float threshold)
{
    if (!row->bf16)
        return count_f32((const float *)row->data, row->n, threshold);
    int16_t t;
    if (!kiln_bf16_threshold(threshold, &t))
        return 0;
    return count_bf16((const uint16_t *)row->data, row->n, t);
}

KILN_CLONES
static void widen_bf16(const uint16_t *h, int64_t n, uint32_t *out)
{
    for (int64_t i = 0; i < n; ++i)
        out[i] = (uint32_t)h[i] << 16;
}

void kiln_cpu_row_to_f32(const kiln_cpu_row *row, float *out)
{
    if (row->bf16)
        widen_bf16((const uint16_t *)row->data, row->n, (uint32_t *)out);
    else if ((const float *)row->data != out)
        memcpy(out, row->data, (size_t)row->n * sizeof(float));
}
