#include <string.h>

#include "cpu_backend.h"

#define DIGIT_BITS 11
#define BUCKETS (1u << DIGIT_BITS)

/* LSD radix sort on ~key (ascending ~key is descending key) in three 11-bit
 * passes; each pass is a stable counting sort, so ties keep input order.
 * Passes whose digit is the same for every key are skipped. */
void kiln_cpu_sort_desc(uint32_t **key, uint32_t **id, uint32_t **key_tmp, uint32_t **id_tmp,
                        size_t n)
{
    uint32_t count[BUCKETS];
    for (int shift = 0; shift < 32; shift += DIGIT_BITS) {
        uint32_t *ks = *key, *is = *id, *kd = *key_tmp, *id_d = *id_tmp;
        memset(count, 0, sizeof count);
        for (size_t i = 0; i < n; ++i)
            ++count[(~ks[i] >> shift) & (BUCKETS - 1)];
        if (n == 0 || count[(~ks[0] >> shift) & (BUCKETS - 1)] == n)
            continue;
        uint32_t sum = 0;
        for (uint32_t d = 0; d < BUCKETS; ++d) {
            uint32_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; ++i) {
            uint32_t pos = count[(~ks[i] >> shift) & (BUCKETS - 1)]++;
            kd[pos] = ks[i];
            id_d[pos] = is[i];
        }
        *key_tmp = ks;
        *id_tmp = is;
        *key = kd;
        *id = id_d;
    }
}

uint32_t *kiln_cpu_sort_u32(uint32_t *v, uint32_t *tmp, size_t m)
{
    /* digits every value shares are skipped (values from a narrow range
     * share the top ones, small ones the top zeros) */
    uint32_t all_and = 0xFFFFFFFFu, all_or = 0;
    for (size_t i = 0; i < m; ++i) {
        all_and &= v[i];
        all_or |= v[i];
    }
    for (int shift = 0; shift < 32; shift += 8) {
        if ((((all_and ^ all_or) >> shift) & 0xFF) == 0)
            continue;
        uint32_t count[256] = { 0 };
        for (size_t i = 0; i < m; ++i)
            ++count[(v[i] >> shift) & 0xFF];
        uint32_t sum = 0;
        for (int d = 0; d < 256; ++d) {
            const uint32_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < m; ++i)
            tmp[count[(v[i] >> shift) & 0xFF]++] = v[i];
        uint32_t *t = v;
        v = tmp;
        tmp = t;
    }
    return v;
}
