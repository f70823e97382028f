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
 * chunked in `chunks`. pre_n >= 0: ids already holds the pre_n tokens
 * (ascending) at kiln_cpu_min_p_threshold(m0, c, min_mass) for some m0 <= m,
 * a superset of the kept set (when more than V / 16, a list that proves
 * nothing); -1: none. */
kiln_cpu_kept kiln_cpu_keep_min_p(const kiln_cpu_row *row, float m, float c, uint64_t min_mass,
                                  uint32_t *ids, int64_t pre_n, uint64_t *w, uint64_t *chunks);
/* The logit threshold of min-p's kept set for the max m: the smallest x
 * whose mass reaches min_mass; non-decreasing in m. */
float kiln_cpu_min_p_threshold(float m, float c, uint64_t min_mass);

/* top-p alone (no top-k, cpu_top_p.c): the nucleus as a chunked set with a
 * cut, found in a band of tokens a sample chose (checked exactly); 0 when
 * the caller must take the exact path over every token. total_all gets S,
 * the mass of every token. Uses every scratch buffer but marks. */
int kiln_cpu_keep_top_p(const kiln_cpu_row *row, float m, float c, float top_p, uint64_t lo,
                        kiln_cpu_scratch *sc, kiln_cpu_kept *out, uint64_t *total_all);

/* The entropy sums of docs/semantics.md section 15 (S, the tokens with
 * mass, E = sum w_i d_i) over the tokens kiln_cpu_mass_chunks counts for
 * mc (mc->masked included) that are, when cut is given, in its canonical
 * prefix: one vectorised mass pass over the row in place. */
kiln_cpu_entropy_sums kiln_cpu_mass_entropy(const kiln_cpu_row *row, const kiln_cpu_mass_ctx *mc,
                                            const kiln_cpu_cut *cut);

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


/* The mass of token v in the kept set (0 if it is not kept). */
uint64_t kiln_cpu_kept_mass_at(const kiln_cpu_kept *k, const kiln_cpu_row *row, int64_t v);
/* A chunked kept set as inclusive prefix sums over every token (V entries). */
void kiln_cpu_kept_prefix(const kiln_cpu_kept *k, const kiln_cpu_row *row, uint64_t *prefix);

enum { KILN_CPU_ROW_SAMPLE = 0, KILN_CPU_ROW_GREEDY = 1, KILN_CPU_ROW_INVALID = 2 };

/* A row's final distribution, docs/semantics.md sections 1-6 (with the
 * dynatemp temperature of section 16 in r.temperature), as the draws, the
 * optional stages and kiln_verify_drafts read it. The kept set lives in
 * the scratch it was computed in. */
typedef struct kiln_cpu_dist {
    int status;
    kiln_cpu_row row; /* the penalised logits */
    float m;
    int64_t argmax; /* greedy rows (and a top key of zero); else -1 */
    kiln_row_params r;
    float cexp;
    kiln_cpu_kept kept;
    uint64_t total;
    int64_t count; /* -1 until counted */
    double log_s;
    uint64_t total_all; /* every token's mass at cexp, when have_total_all */
    int have_total_all;
    kiln_cpu_entropy_sums raw; /* when have_raw: the T = 1 sums */
    int have_raw;
    /* after kiln_cpu_dist_expand: the row as f32, the count, and (asked for)
     * the kept set as sparse ids or a prefix over every token */
    const float *x;
    const uint32_t *ids;
    const uint64_t *prefix;
    int64_t n;
} kiln_cpu_dist;

/* want_raw: compute the T = 1 entropy sums even without dynatemp. */
void kiln_cpu_distribution(const kiln_sampler *s, const kiln_call *c, const kiln_cpu_row_input *in,
                           kiln_row_params r, int want_raw, kiln_cpu_scratch *sc,
                           kiln_cpu_dist *d);
void kiln_cpu_dist_expand(kiln_cpu_dist *d, int want_kept, kiln_cpu_scratch *sc);

/* First entry whose inclusive prefix exceeds r (prefix[n-1] > r holds). */
int64_t kiln_cpu_upper_bound(const uint64_t *prefix, int64_t n, uint64_t r);

/* The kept token a draw's 64 bits u select (section 7). */
int64_t kiln_cpu_draw(const kiln_cpu_dist *d, uint64_t u);
/* The kept mass of token v (0 if not kept). */
uint64_t kiln_cpu_kept_mass(const kiln_cpu_dist *d, int64_t v);

#endif
