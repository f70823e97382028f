/* Whole-row scans that need no exponential, on f32 or bf16 rows in place:
 * the key range (validity and the max), the first token equal to a value,
 * and the tokens at or above a threshold. Plain loops that gcc vectorises
 * (clones for AVX-512 and AVX2, as in cpu_kernels.c); a bf16 row is scanned
 * as 16-bit keys, 32 to a 512-bit register. */
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
    uint16_t lo = 0xFFFFu, hi = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint16_t k = bf16_key(h[i]);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    *min_key = lo;
    *max_key = hi;
}

void kiln_cpu_row_key_range(const kiln_cpu_row *row, uint32_t *min_key, uint32_t *max_key)
{
    if (!row->bf16) {
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

KILN_CLONES
static int64_t find_first_bf16(const uint16_t *h, int64_t n, uint16_t key)
{
    for (int64_t base = 0; base < n; base += KILN_BLOCK) {
        const int64_t end = base + KILN_BLOCK < n ? base + KILN_BLOCK : n;
        int hit = 0;
        for (int64_t i = base; i < end; ++i)
            hit |= bf16_key(h[i]) == key;
        if (hit)
            for (int64_t i = base; i < end; ++i)
                if (bf16_key(h[i]) == key)
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

/* Tokens at or above a threshold, on 16-bit keys: x >= t iff key(x) >= key(t)
 * for non-NaN values; bf16_key_floor is the smallest 16-bit key whose f32
 * key reaches key(t) (callers first rule out a t above every bf16). */
/* The sampled key histogram (kiln_cpu_key_hist) of a row in place: a bf16's
 * 16-bit key is the top half of the f32 one, so its top 11 bits are too. */
void kiln_cpu_row_key_hist(const kiln_cpu_row *row, int64_t stride, uint32_t hist[2048])
{
    if (!row->bf16) {
        kiln_cpu_key_hist((const float *)row->data, row->n, stride, hist);
        return;
    }
    const uint16_t *h = (const uint16_t *)row->data;
    memset(hist, 0, 2048 * sizeof hist[0]);
    for (int64_t i = 0; i < row->n; i += stride)
        hist[bf16_key(h[i]) >> 5]++;
}

static uint16_t bf16_key_floor(float threshold)
{
    const uint32_t k = kiln_order_key(threshold);
    /* a positive 16-bit key's f32 keys end in 0x0000, a negative one's in
     * 0xFFFF, so only a positive key needs the next one up */
    const uint32_t k16 = (k >> 16) + ((k & 0xFFFFu) != 0 && (k >> 16) >= 0x8000u);
    return (uint16_t)k16;
}

KILN_CLONES
static size_t collect_bf16(const uint16_t *h, int64_t n, uint16_t key, uint32_t *ids)
{
    size_t count = 0;
    for (int64_t base = 0; base < n; base += KILN_BLOCK) {
        const int64_t end = base + KILN_BLOCK < n ? base + KILN_BLOCK : n;
        int hit = 0;
        for (int64_t i = base; i < end; ++i)
            hit |= bf16_key(h[i]) >= key;
        if (hit)
            for (int64_t i = base; i < end; ++i)
                if (bf16_key(h[i]) >= key)
                    ids[count++] = (uint32_t)i;
    }
    return count;
}

size_t kiln_cpu_row_collect_at_least(const kiln_cpu_row *row, float threshold, uint32_t *ids)
{
    if (!row->bf16)
        return kiln_cpu_collect_at_least((const float *)row->data, row->n, threshold, ids);
    const uint32_t k = kiln_order_key(threshold);
    if ((k >> 16) == 0xFFFFu && (k & 0xFFFFu) != 0)
        return 0; /* above every bf16 key */
    return collect_bf16((const uint16_t *)row->data, row->n, bf16_key_floor(threshold), ids);
}

KILN_CLONES
static int64_t count_f32(const float *x, int64_t n, float threshold)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i)
        count += x[i] >= threshold;
    return count;
}

KILN_CLONES
static int64_t count_bf16(const uint16_t *h, int64_t n, uint16_t key)
{
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i)
        count += bf16_key(h[i]) >= key;
    return count;
}

int64_t kiln_cpu_row_count_at_least(const kiln_cpu_row *row, float threshold)
{
    if (!row->bf16)
        return count_f32((const float *)row->data, row->n, threshold);
    const uint32_t k = kiln_order_key(threshold);
    if ((k >> 16) == 0xFFFFu && (k & 0xFFFFu) != 0)
        return 0;
    return count_bf16((const uint16_t *)row->data, row->n, bf16_key_floor(threshold));
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
