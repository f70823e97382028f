/* The kept set of a row (docs/semantics.md section 6) in the three forms the
 * CPU paths produce, and what the draw and the outputs read from it. */
#ifndef KILN_CPU_KEPT_H
#define KILN_CPU_KEPT_H

#include "cpu_backend.h"
#include "cpu_row.h"

typedef enum kiln_cpu_kept_form {
    KILN_KEPT_SPARSE,  /* ids ascending, inclusive prefix sums of their masses */
    KILN_KEPT_PREFIX,  /* inclusive prefix of kept masses over every token */
    KILN_KEPT_CHUNKED, /* kept mass per KILN_CPU_CHUNK tokens; a token is kept iff its
                        * q reaches mc.qmin (mc.masked) and, with a cut, it is in the
                        * cut's canonical prefix; masses recomputed per chunk */
} kiln_cpu_kept_form;

typedef struct kiln_cpu_kept {
    kiln_cpu_kept_form form;
    const uint32_t *ids;    /* SPARSE */
    const uint64_t *prefix; /* SPARSE: [n]; PREFIX: [V] */
    int64_t n;
    const uint64_t *chunks; /* CHUNKED */
    kiln_cpu_mass_ctx mc;   /* CHUNKED */
    int has_cut;            /* CHUNKED */
    kiln_cpu_cut cut;
    int64_t count; /* kept tokens; -1 until kiln_cpu_kept_count */
    uint64_t total;
} kiln_cpu_kept;

/* Every token with mass >= kiln_cpu_mass_of_q(mc->qmin) when mc->masked, every
 * token with mass otherwise: one mass pass, chunk sums into `chunks`. */
kiln_cpu_kept kiln_cpu_keep_dense(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                  uint64_t *chunks);

/* min-p alone (no top-k, no top-p): the tokens with mass >= min_mass, found
 * as a threshold on the logits (the mass is monotone in the logit), masses
 * only for them. Sparse in ids/w (V entries each) when few are kept, else
 * chunked in `chunks`. */
kiln_cpu_kept kiln_cpu_keep_min_p(const kiln_cpu_row *row, float m, float c, uint64_t min_mass,
                                  uint32_t *ids, uint64_t *w, uint64_t *chunks);

/* The smallest q whose mass reaches `mass` (1 <= mass <= 2^40). */
int32_t kiln_cpu_q_for_mass(uint64_t mass);
/* The smallest logit x <= m (x = -inf included) with kiln_cpu_mass_q(x, m, c) >= q. */
float kiln_cpu_logit_for_q(float m, float c, int32_t q);

/* The kept token whose inclusive prefix (ascending id) first exceeds r < total. */
int64_t kiln_cpu_kept_token(const kiln_cpu_kept *k, const kiln_cpu_row *row, uint64_t r);
/* probs[i] = kiln_prob(mass of i, 1 / total) for kept i, 0 for the rest. */
void kiln_cpu_kept_probs(const kiln_cpu_kept *k, const kiln_cpu_row *row, float *probs);
/* The kept count (computed once). */
int64_t kiln_cpu_kept_count(kiln_cpu_kept *k, const kiln_cpu_row *row);

#endif
