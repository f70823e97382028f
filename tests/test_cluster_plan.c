/* The CUDA cluster path's split of a row (csrc/cluster_plan.h), checked on
 * the host for every vocabulary up to 2^18 and sampled beyond: the chunks
 * tile [0, V) exactly with no empty CTA, start 16-byte aligned for 2- and
 * 4-byte logits, use a power-of-two cluster of at most 16, and never exceed
 * the shared memory the sampler sets for its max_vocab. The kernel's bytes
 * do not depend on the plan; tests/test_gpu.c (gpu_parity/cluster_*) holds
 * them to the CPU's at the plan's steps. */
#include <stdint.h>

#include <criterion/criterion.h>

#include "cluster_plan.h"

static void check_plan(int64_t V)
{
    const kiln_cluster_plan p = kiln_cluster_plan_for(V);
    cr_assert(p.ctas >= 1 && p.ctas <= KILN_CLUSTER_MAX_CTAS && (p.ctas & (p.ctas - 1)) == 0,
              "V=%lld: %d CTAs", (long long)V, (int)p.ctas);
    cr_assert_eq(p.chunk % 8, 0, "V=%lld: chunk %lld is not a multiple of 8", (long long)V,
                 (long long)p.chunk);
    cr_assert_geq(p.chunk * p.ctas, V, "V=%lld: the chunks do not cover the row", (long long)V);
    cr_assert_lt(p.chunk * (p.ctas - 1), V, "V=%lld: the last CTA is empty", (long long)V);
    if (V <= (int64_t)KILN_CLUSTER_MAX_CTAS * KILN_CLUSTER_CHUNK_AIM)
        cr_assert_leq(p.chunk, KILN_CLUSTER_CHUNK_AIM, "V=%lld: chunk %lld", (long long)V,
                      (long long)p.chunk);
    /* the fewest CTAs that keep the chunk at the aim */
    if (p.ctas > 1 && p.ctas < KILN_CLUSTER_MAX_CTAS)
        cr_assert_gt(V, (int64_t)(p.ctas / 2) * KILN_CLUSTER_CHUNK_AIM, "V=%lld: %d CTAs",
                     (long long)V, (int)p.ctas);
}

Test(cluster_plan, chunks_tile_every_row)
{
    for (int64_t V = 1; V <= (1 << 18); ++V)
        check_plan(V);
    for (int64_t V = (1 << 18); V < (1 << 24); V = V * 9 / 8 + 7)
        check_plan(V);
    check_plan((1 << 24) - 1);
}

/* kiln_cluster_max_chunk(max_vocab) is the largest chunk of any V <=
 * max_vocab (the kernel's dynamic shared memory is set to it once, at
 * sampler creation), and not more. */
Test(cluster_plan, max_chunk_bounds_every_smaller_vocabulary)
{
    int64_t running = 0;
    for (int64_t V = 1; V <= (1 << 19); ++V) {
        const int64_t c = kiln_cluster_plan_for(V).chunk;
        running = c > running ? c : running;
        cr_assert_eq(kiln_cluster_max_chunk(V), running, "max_vocab=%lld: %lld, want %lld",
                     (long long)V, (long long)kiln_cluster_max_chunk(V), (long long)running);
    }
}

/* Common vocabularies: the figures docs/performance.md's model uses. */
Test(cluster_plan, known_vocabularies)
{
    static const struct {
        int64_t vocab;
        int32_t ctas;
        int64_t chunk;
    } want[] = {
        { 32000, 4, 8000 },    { 50257, 8, 6288 },     { 128256, 16, 8016 },
        { 151936, 16, 9496 },  { 256000, 16, 16000 },  { 262144, 16, 16384 },
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; ++i) {
        const kiln_cluster_plan p = kiln_cluster_plan_for(want[i].vocab);
        cr_assert(p.ctas == want[i].ctas && p.chunk == want[i].chunk,
                  "V=%lld: %d x %lld, want %d x %lld", (long long)want[i].vocab, (int)p.ctas,
                  (long long)p.chunk, (int)want[i].ctas, (long long)want[i].chunk);
    }
}
