/* The row as the CPU passes read it, and the passes that read every token.
 *
 * A row is read in place in its own dtype (f32 or bf16: a bf16 is the top
 * half of an f32, so it is widened in registers, never copied); f16 rows and
 * rows changed by penalties are f32 copies in the thread's scratch. Every
 * pass returns the same bits whatever instruction set runs it: the AVX-512
 * and AVX2 code performs the IEEE operations of csrc/shared/numerics.h in
 * the same order (no FMA), tests/test_cpu_kernels.c holds each against the
 * scalar contract, and KILN_CPU_ISA=scalar|avx2|avx512 caps the set used so
 * the parity tests can run each one. */
#ifndef KILN_CPU_ROW_H
#define KILN_CPU_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "../shared/numerics.h"

typedef struct kiln_cpu_row {
    const void *data;
    int bf16; /* 0: f32, 1: bf16 */
    int64_t n;
} kiln_cpu_row;

static inline float kiln_cpu_row_at(const kiln_cpu_row *r, int64_t i)
{
    return r->bf16 ? kiln_bf16_to_f32(((const uint16_t *)r->data)[i])
                   : ((const float *)r->data)[i];
}

/* Instruction sets a pass may use, best last. */
typedef enum kiln_cpu_isa { KILN_ISA_SCALAR = 0, KILN_ISA_AVX2 = 1, KILN_ISA_AVX512 = 2 } kiln_cpu_isa;

/* The best the CPU has, capped by KILN_CPU_ISA (read once). */
kiln_cpu_isa kiln_cpu_isa_level(void);
/* Tests: use at most `level` from now on (the best the CPU has if lower). */
void kiln_cpu_isa_force(int level);

/* ----------------------------------------------------------- the mass pass */

/* Tokens per chunk: the mass pass sums each chunk, so a draw can find its
 * chunk from the sums and recompute 256 masses instead of storing V. */
#define KILN_CPU_CHUNK 256

/* What the mass pass needs of a row: its max m and factor c, and whether
 * (x - m) * (c * 2^23) may stand for ((x - m) * c) * 2^23 (it may when no
 * nonzero x - m times c can round to zero or below the normal range, which
 * is the only place the two roundings can differ; see kiln_cpu_mass_ctx_init). */
typedef struct kiln_cpu_mass_ctx {
    float m, c, c23;
    int fused;
    /* masked: only tokens with q >= qmin count (their masses are the ones
     * >= kiln_cpu_mass_of_q(qmin), mass being monotone in q); init sets
     * qmin = -64 * 2^23, which every token reaches, and masked = 0 */
    int32_t qmin;
    int masked;
} kiln_cpu_mass_ctx;

kiln_cpu_mass_ctx kiln_cpu_mass_ctx_init(float m, float c);

/* kiln_mass's q = floor(max((x - m) * c, -64) * 2^23) of one token, and the
 * mass kiln_mass gives for a q: kiln_mass(x, m, c) ==
 * kiln_cpu_mass_of_q(kiln_cpu_mass_q(x, m, c)), both monotone. */
int32_t kiln_cpu_mass_q(float x, float m, float c);
uint64_t kiln_cpu_mass_of_q(int32_t q);

/* Every token's kiln_mass, summed. chunk_sums (NULL: not wanted) gets the
 * sum of each KILN_CPU_CHUNK tokens; fbits (NULL: not wanted) gets, per
 * token, the bits of the binary32 F = 2^f * 2^(40 + n) whose floor is the
 * mass (kiln_cpu_fbits_mass): monotone in the logit like the mass, and a
 * mass that later passes recover without the exponential. Returns the total. */
uint64_t kiln_cpu_mass_chunks(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                              uint64_t *chunk_sums, uint32_t *fbits);

/* kiln_cpu_mass_chunks with fbits wanted and no chunk sums, and every16[t] =
 * fbits[16 t] for 16 t < row->n (a sample the pass writes as it goes). */
uint64_t kiln_cpu_mass_fbits_every16(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                     uint32_t *fbits, uint32_t *every16);

/* w[i] = kiln_mass of token start + i, for i < len (len <= KILN_CPU_CHUNK). */
void kiln_cpu_mass_span(const kiln_cpu_row *row, int64_t start, int64_t len,
                        const kiln_cpu_mass_ctx *mc, uint64_t *w);

/* The mass that fbits stand for: floor(F), F = P * 2^(40 + n) exactly. */
static inline uint64_t kiln_cpu_fbits_mass(uint32_t fb)
{
    /* F >= 0: truncation is floor; F < 2^63, so the signed conversion (one
     * instruction) converts it, where one to unsigned tests and branches */
    return (uint64_t)(int64_t)kiln_f32_from_bits(fb);
}

/* The fbits of one token, by the steps of kiln_mass (the scalar reference). */
uint32_t kiln_cpu_mass_fbits(float x, float m, float c);

/* ------------------------------------------------------ whole-row scans */

/* A bf16 as a signed 16-bit integer in value order: sign-magnitude to two's
 * complement by flipping the magnitude bits of negatives, so one shift, one
 * and, one xor and signed min/max/compare order 32 tokens at once. It is
 * strictly monotone in the value with -0 one below +0 (-1 and 0) and NaN
 * beyond the infinities; kiln_bf16_key_of_signed maps it to the bf16's
 * order key (the top half of kiln_order_key, -0 with +0), a monotone map,
 * so it turns a min or max of signed keys into the min or max of keys. */
static inline int16_t kiln_bf16_signed_key(uint16_t h)
{
    const int16_t s = (int16_t)h;
    return (int16_t)(s ^ ((s >> 15) & 0x7FFF));
}

static inline uint16_t kiln_bf16_key_of_signed(int16_t k)
{
    const uint16_t u = (uint16_t)((uint16_t)k ^ 0x8000u);
    return u == 0x7FFFu ? 0x8000u : u; /* -0 */
}

/* The signed-key threshold t with kiln_bf16_signed_key(h) >= t exactly when
 * h's order key >= `key` (a 16-bit order key): key's own signed value,
 * except that a threshold at zero lets -0 in too. */
static inline int16_t kiln_bf16_signed_threshold(uint16_t key)
{
    const int16_t t = (int16_t)(key ^ 0x8000u);
    return t == 0 ? -1 : t;
}

/* The signed-key threshold of x >= threshold over bf16 values without NaN:
 * 1 and *t such that kiln_bf16_signed_key(h) >= *t exactly when the bf16 h
 * >= threshold, or 0 when no bf16 reaches it. The 16-bit key floor is the
 * smallest bf16 order key whose f32 key reaches the threshold's: a positive
 * 16-bit key's f32 keys end in 0x0000 and a negative one's in 0xFFFF, so
 * only a positive key needs the next one up. */
static inline int kiln_bf16_threshold(float threshold, int16_t *t)
{
    const uint32_t k = kiln_order_key(threshold);
    if ((k >> 16) == 0xFFFFu && (k & 0xFFFFu) != 0)
        return 0;
    const uint32_t k16 = (k >> 16) + ((k & 0xFFFFu) != 0 && (k >> 16) >= 0x8000u);
    *t = kiln_bf16_signed_threshold((uint16_t)k16);
    return 1;
}

/* The key range from a vector pass's float lane maxima hi[] and minima lo[]
 * (`lanes` of each) and the f32 tail it left: 0 when the tail holds a NaN.
 * Keys are monotone in the value with -0 tied to +0, so key(max) and
 * key(min) are the range. */
static inline int kiln_cpu_lanes_key_range(const float *hi, const float *lo, int lanes,
                                           const float *tail, int64_t tail_n, uint32_t *min_key,
                                           uint32_t *max_key)
{
    uint32_t kmax = 0, kmin = 0xFFFFFFFFu;
    for (int a = 0; a < lanes; ++a) {
        const uint32_t kh = kiln_order_key(hi[a]), kl = kiln_order_key(lo[a]);
        kmax = kh > kmax ? kh : kmax;
        kmin = kl < kmin ? kl : kmin;
    }
    for (int64_t i = 0; i < tail_n; ++i) {
        if (tail[i] != tail[i])
            return 0;
        const uint32_t k = kiln_order_key(tail[i]);
        kmax = k > kmax ? k : kmax;
        kmin = k < kmin ? k : kmin;
    }
    *min_key = kmin;
    *max_key = kmax;
    return 1;
}

/* Smallest and largest kiln_order_key over the row. */
void kiln_cpu_row_key_range(const kiln_cpu_row *row, uint32_t *min_key, uint32_t *max_key);
/* The first i whose value equals `value` (-1 if none); -0 == +0. */
int64_t kiln_cpu_row_find_first(const kiln_cpu_row *row, float value);
/* Ids of the tokens with x >= threshold, ascending; returns how many. */
size_t kiln_cpu_row_collect_at_least(const kiln_cpu_row *row, float threshold, uint32_t *ids);
/* The same, stopping once more than `limit` are found: returns their count
 * when it is <= limit, else some count > limit (ids then holds a prefix of
 * the list, at most row->n entries). */
size_t kiln_cpu_row_collect_at_most(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                    size_t limit);
/* kiln_cpu_row_collect_at_most, and where one pass can do both (AVX-512),
 * the key range on the way (*range_known 1, the range of
 * kiln_cpu_row_key_range); 0 when it did not (no fast path, or a NaN). */
size_t kiln_cpu_row_range_collect(const kiln_cpu_row *row, float threshold, uint32_t *ids,
                                  size_t limit, int *range_known, uint32_t *min_key,
                                  uint32_t *max_key);
/* The largest value in a small sample of the row (8 tokens every 1024),
 * -inf if none is above -inf: a lower bound on the row's max, for
 * thresholds that must not exceed the max's own. */
float kiln_cpu_row_sample_max(const kiln_cpu_row *row);
/* hist[d] = number of sampled tokens whose key's top 11 bits are d: every
 * token for stride 1, else blocks of 8 consecutive tokens every 8 stride
 * (1 / stride of the row). */
void kiln_cpu_row_key_hist(const kiln_cpu_row *row, int64_t stride, uint32_t hist[2048]);
/* The same sample (stride > 1) counting only the digits at most `span`
 * below the sample's largest: *dmin gets that bound, hist[d] the full
 * sample's count for d >= *dmin and zero below; returns their total. */
uint64_t kiln_cpu_row_key_hist_top(const kiln_cpu_row *row, int64_t stride, uint32_t span,
                                   uint32_t hist[2048], uint32_t *dmin);
/* Number of tokens with x >= threshold. */
int64_t kiln_cpu_row_count_at_least(const kiln_cpu_row *row, float threshold);
/* The row as f32 (exact for bf16). */
void kiln_cpu_row_to_f32(const kiln_cpu_row *row, float *out);
/* The same, and where one pass can do both, the key range of the row (as
 * kiln_cpu_row_key_range) on the way: returns 1 when it did, 0 when the
 * range is not known (no fast path, or a NaN, whose range the caller takes
 * from the copy as edited). */
int kiln_cpu_row_copy_key_range(const kiln_cpu_row *row, float *out, uint32_t *min_key,
                                uint32_t *max_key);

#endif
