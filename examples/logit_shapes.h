/* Rows of logits with the shapes real models produce, from a seed: the
 * textbook's Zipf-like row, peaked rows (one token >= 0.9) and flat rows.
 * Shared by the demo, the tests and the bench so all see the same data. */
#ifndef KILN_EXAMPLES_LOGIT_SHAPES_H
#define KILN_EXAMPLES_LOGIT_SHAPES_H

#include <stdint.h>

/* splitmix64: small, seedable, the same on every platform. */
typedef struct ks_rng {
    uint64_t state;
} ks_rng;

uint64_t ks_rng_u64(ks_rng *rng);
double ks_rng_unit(ks_rng *rng);   /* [0, 1) */
double ks_rng_normal(ks_rng *rng); /* N(0, 1), Box-Muller */

/* The textbook notebook's 1000-token row generalised to any V: N(0, 2)
 * noise, one dominant token at 8, four strong ones at 5, 4.5, 4, 3.5 and
 * fifteen moderate ones in [1, 3), at ids 0..19. */
void ks_zipf_like(float *out, int64_t vocab, uint64_t seed);

/* A Zipf law over a random permutation: logit = -1.1 * ln(rank), the
 * long-tailed shape of a large LM's next-token distribution. */
void ks_zipf(float *out, int64_t vocab, uint64_t seed);

/* One token holds at least 90% of the probability at T = 1. */
void ks_peaked(float *out, int64_t vocab, uint64_t seed);

/* Near-uniform: N(0, 0.1) noise; top-p must keep most of the vocabulary. */
void ks_flat(float *out, int64_t vocab, uint64_t seed);

#endif
