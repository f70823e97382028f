/* Philox4x32-10 exactly as cuRAND's device API runs it, and the 64-bit draw
 * kiln takes from it. Integer-only, so gcc and nvcc agree by construction. */
#ifndef KILN_SHARED_PHILOX_H
#define KILN_SHARED_PHILOX_H

#include "hd.h"

#define KILN_PHILOX_M0 0xD2511F53u
#define KILN_PHILOX_M1 0xCD9E8D57u
#define KILN_PHILOX_W0 0x9E3779B9u
#define KILN_PHILOX_W1 0xBB67AE85u

typedef struct kiln_philox_block {
    uint32_t v[4];
} kiln_philox_block;

KILN_HD uint32_t kiln_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi)
{
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* One call of the 10-round bijection on a 128-bit counter under a 64-bit key. */
KILN_HD kiln_philox_block kiln_philox4x32_10(kiln_philox_block ctr, uint32_t k0, uint32_t k1)
{
    for (int round = 0; round < 10; ++round) {
        uint32_t hi0, hi1;
        uint32_t lo0 = kiln_mulhilo32(KILN_PHILOX_M0, ctr.v[0], &hi0);
        uint32_t lo1 = kiln_mulhilo32(KILN_PHILOX_M1, ctr.v[2], &hi1);
        kiln_philox_block next;
        next.v[0] = hi1 ^ ctr.v[1] ^ k0;
        next.v[1] = lo1;
        next.v[2] = hi0 ^ ctr.v[3] ^ k1;
        next.v[3] = lo0;
        ctr = next;
        k0 += KILN_PHILOX_W0;
        k1 += KILN_PHILOX_W1;
    }
    return ctr;
}

/* The 64 random bits of draw `draw` in subsequence `subsequence` under `seed`.
 *
 * cuRAND's curand_init(seed, subsequence, 0) stream emits 32-bit output P from
 * counter block (P / 4) + (subsequence << 64), lane P % 4, key = seed. Draw d
 * takes outputs 2d (high half) and 2d + 1 (low half): block d / 2, lanes
 * 2 (d % 2) and 2 (d % 2) + 1. Writing the block index as d >> 1 instead of
 * going through a 32-bit offset keeps every d in [0, 2^64) distinct. */
KILN_HD uint64_t kiln_philox_draw64(uint64_t seed, uint64_t subsequence, uint64_t draw)
{
    uint64_t block = draw >> 1;
    kiln_philox_block ctr;
    ctr.v[0] = (uint32_t)block;
    ctr.v[1] = (uint32_t)(block >> 32);
    ctr.v[2] = (uint32_t)subsequence;
    ctr.v[3] = (uint32_t)(subsequence >> 32);
    kiln_philox_block out = kiln_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
    uint32_t hi = (draw & 1) ? out.v[2] : out.v[0];
    uint32_t lo = (draw & 1) ? out.v[3] : out.v[1];
    return ((uint64_t)hi << 32) | lo;
}

#endif
