/* How the CUDA backend's cluster path (cuda/cluster_row.cu) splits a row of
 * V tokens over the C CTAs of one thread-block cluster: C a power of two up
 * to 16 (sm_90's non-portable maximum), chunks of a multiple of 8 tokens so
 * every chunk starts 16-byte aligned relative to the row (8 x 2 bytes,
 * 8 x 4 bytes), about 8192 tokens per CTA when V allows (32 KiB of f32 in
 * shared memory). Host-only integer arithmetic, shared with the tests; the
 * bytes of a call never depend on the plan (every combination across CTAs
 * is an integer sum or an exact compare). */
#ifndef KILN_CLUSTER_PLAN_H
#define KILN_CLUSTER_PLAN_H

#include <stdint.h>

#define KILN_CLUSTER_MAX_CTAS 16
#define KILN_CLUSTER_CHUNK_AIM 8192

typedef struct kiln_cluster_plan {
    int32_t ctas;  /* C: CTAs per row, a power of two in [1, 16] */
    int64_t chunk; /* tokens per CTA; CTA r holds [r * chunk, min(V, (r + 1) * chunk)) */
} kiln_cluster_plan;

static inline int64_t kiln_cluster_round8(int64_t v)
{
    return (v + 7) / 8 * 8;
}

static inline kiln_cluster_plan kiln_cluster_plan_for(int64_t vocab)
{
    const int64_t need = (vocab + KILN_CLUSTER_CHUNK_AIM - 1) / KILN_CLUSTER_CHUNK_AIM;
    int32_t c = 1;
    while (c < need && c < KILN_CLUSTER_MAX_CTAS)
        c <<= 1;
    kiln_cluster_plan p;
    p.ctas = c;
    p.chunk = kiln_cluster_round8((vocab + c - 1) / c);
    return p;
}

/* The largest chunk of any V in [1, max_vocab]: up to 16 x 8192 tokens the
 * chunk is at most 8192 (and at most V rounded up); past that C = 16 and
 * the chunk grows with V. The shared-memory size set at sampler creation. */
static inline int64_t kiln_cluster_max_chunk(int64_t max_vocab)
{
    const int64_t r = kiln_cluster_round8(max_vocab);
    const int64_t small = r < KILN_CLUSTER_CHUNK_AIM ? r : KILN_CLUSTER_CHUNK_AIM;
    const int64_t big = kiln_cluster_plan_for(max_vocab).chunk;
    return small > big ? small : big;
}

#endif
