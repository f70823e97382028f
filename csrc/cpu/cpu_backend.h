/* The CPU backend: the contract of docs/semantics.md on host memory, rows in
 * parallel with OpenMP, every buffer carved from the caller's workspace. */
#ifndef KILN_CPU_BACKEND_H
#define KILN_CPU_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../sampler.h"
#include "../shared/entropy.h"
#include "../shared/row_params.h"

/* Worker threads the CPU backend uses for `requested` (0: OpenMP's default). */
int kiln_cpu_thread_count(int requested);

size_t kiln_cpu_workspace_size(const kiln_config *config);

/* Samples a validated call. Cannot fail once validation passed. */
void kiln_cpu_sample(const kiln_sampler *sampler, const kiln_call *call);

/* The LM head of a validated kiln_sample_hidden call (cpu_lm_head.c): the
 * [rows, vocab] logits, dense, into `logits` (f32), or into `logits_bf16`
 * when that is not NULL. Deterministic whatever the thread count. */
void kiln_cpu_lm_head(const kiln_sampler *sampler, const kiln_lm_head *head, int64_t rows,
                      int64_t vocab, float *logits, uint16_t *logits_bf16);

void kiln_cpu_best_of_n(const float *scores, int64_t num_groups, int32_t n, int32_t *best);

/* Whole-row passes (cpu_kernels.c), vectorised. */
/* w[i] = kiln_mass(x[i], m, c); returns their sum. */
uint64_t kiln_cpu_masses(const float *x, int64_t n, float m, float c, uint64_t *w);
/* Smallest and largest kiln_order_key(x[i]): the max logit, and whether the
 * row holds NaN (keys above +inf's or below -inf's) or +inf. */
void kiln_cpu_key_range(const float *x, int64_t n, uint32_t *min_key, uint32_t *max_key);
/* The first i with x[i] == value (-1 if none); -0 == +0. */
int64_t kiln_cpu_find_first(const float *x, int64_t n, float value);
/* Writes the ids of the tokens with x[i] >= threshold, ascending; returns
 * how many. */
size_t kiln_cpu_collect_at_least(const float *x, int64_t n, float threshold, uint32_t *ids);
/* hist[d] = number of tokens x[0], x[stride], ... whose key's top 11 bits
 * are d. */
void kiln_cpu_key_hist(const float *x, int64_t n, int64_t stride, uint32_t hist[2048]);

/* A list of token ids (ascending) with optional weights alongside. */
typedef struct kiln_cpu_list {
    uint32_t *id;
    uint64_t *w;
    size_t n;
} kiln_cpu_list;

/* The last token of a canonical prefix: its order key and id. A token is in
 * the prefix iff key > cut.key, or key == cut.key and id <= cut.id. */
typedef struct kiln_cpu_cut {
    uint32_t key;
    uint32_t id;
} kiln_cpu_cut;

/* Radix select (cpu_select.c): the cut of the shortest canonical prefix of
 * the n candidates whose weight reaches `target` (1 <= target <= total).
 * Candidates are ids[0..n) ascending (ids == NULL: 0..n-1) with weights
 * w[0..n) (w == NULL: 1 each). tmp_a and tmp_b hold n entries each. */
kiln_cpu_cut kiln_cpu_radix_cut(const float *x, const uint32_t *ids, const uint64_t *w, size_t n,
                                uint64_t target, kiln_cpu_list *tmp_a, kiln_cpu_list *tmp_b);

/* The same select over keys already computed: candidate j has order key
 * key[j] and weight w[j] (w == NULL: 1 each), candidates in ascending id
 * order. Returns the index j of the cut token. The digits start at the
 * highest bit where the keys differ, so a narrow band of keys takes one or
 * two levels. idx_a and idx_b hold n entries each. */
size_t kiln_cpu_packed_cut(const uint32_t *key, const uint64_t *w, size_t n, uint64_t target,
                           uint32_t *idx_a, uint32_t *idx_b);

/* Whether packed candidate j (key key_j) is in the canonical prefix that
 * ends at candidate `at` (key key_at): indices are in id order, so ties go
 * to the lower index. */
static inline int kiln_cpu_in_packed_prefix(uint32_t key_j, size_t j, uint32_t key_at, size_t at)
{
    return key_j > key_at || (key_j == key_at && j <= at);
}

/* Stable sort of n (key, id) pairs by descending key, so equal keys keep
 * ascending ids when the input ids ascend. The pointers are swapped as the
 * passes ping-pong; on return *key and *id hold the sorted pairs. */
void kiln_cpu_sort_desc(uint32_t **key, uint32_t **id, uint32_t **key_tmp, uint32_t **id_tmp,
                        size_t n);

/* v[0..m) in ascending order: an LSD radix sort with 8-bit digits. Returns
 * the sorted array (v or tmp, each m entries). */
uint32_t *kiln_cpu_sort_u32(uint32_t *v, uint32_t *tmp, size_t m);

/* The logit edits before the penalties (cpu_logit_edits.c): tokens whose bit
 * in `words` is clear become -inf; then x[ids[i]] += values[i] in order. */
void kiln_cpu_apply_mask(float *x, const int32_t *words, int64_t n);
/* dst[i] = src[i], or -inf where the bit is clear (dst may equal src). */
void kiln_cpu_copy_masked(float *dst, const float *src, const int32_t *words, int64_t n);
void kiln_cpu_apply_logit_bias(float *x, const int32_t *ids, const float *values, int64_t n);

/* The entropy sums of docs/semantics.md section 15 (cpu_entropy.c). */
typedef struct kiln_cpu_entropy_sums {
    uint64_t mass;      /* S */
    int64_t count;      /* tokens with mass > 0 */
    kiln_u128 exponent; /* E = sum w_i d_i */
} kiln_cpu_entropy_sums;
/* Over a kept set given as inclusive prefix sums of its masses, at ids[j]
 * (ids == NULL: token j). */
kiln_cpu_entropy_sums kiln_cpu_entropy_prefix(const float *x, const uint32_t *ids,
                                              const uint64_t *prefix, int64_t n, float m, float c);

/* The head of the canonical order and ranks in it (cpu_top_n.c). Writes the
 * first min(want, V) tokens of x's canonical order to out, in order, and
 * returns how many; cand, tmp_a and tmp_b hold V entries each. */
size_t kiln_cpu_first_in_order(const float *x, int64_t V, size_t want, uint32_t *out,
                               uint32_t *cand, kiln_cpu_list *tmp_a, kiln_cpu_list *tmp_b);
/* ranks[j] = 1 + the tokens before tokens[j] in canonical order, tokens in
 * [0, V); scratch_ids and scratch_counts hold min(n, V) entries. */
void kiln_cpu_ranks(const float *x, int64_t V, const int32_t *tokens, int64_t n, int32_t *ranks,
                    uint32_t *scratch_ids, uint64_t *scratch_counts);

/* One thread's scratch, carved from the caller's workspace (cpu_sample.c). */
typedef struct kiln_cpu_scratch {
    float *x;             /* [V] the row as f32 after its edits, when it differs from the input */
    uint64_t *w;          /* [V] masses, then inclusive prefix sums of kept masses */
    uint32_t *marks;      /* [V] history bookkeeping (apply_history), then top-p band starts */
    uint32_t *cand;       /* [V] candidate ids: the top-k set, then the kept set */
    kiln_cpu_list tmp[2]; /* [V] each: radix-select levels; the sort path's buffers */
} kiln_cpu_scratch;

kiln_cpu_scratch kiln_cpu_scratch_for(const kiln_sampler *s, const kiln_call *call, int thread);

/* Where a row's logits and edits come from: kiln_sample's row b, or one
 * position of a kiln_verify_drafts request, whose history goes on with the
 * drafts before it (generated tokens after the history). */
typedef struct kiln_cpu_row_input {
    const void *logits;  /* V logits in the batch's dtype */
    const int32_t *mask; /* the row's words, or NULL */
    const int32_t *bias_ids;
    const float *bias_values;
    int64_t bias_len;
    const int32_t *history;
    int64_t history_len, prompt_len;
    const int32_t *drafts;
    int64_t drafts_len;
} kiln_cpu_row_input;

kiln_cpu_row_input kiln_cpu_input_of(const kiln_call *c, int64_t b);

/* kiln_verify_drafts (cpu_verify.c); fails only on a draft-probability row
 * found bad at a rejection, before anything is written. */
kiln_status kiln_cpu_verify(const kiln_sampler *s, const kiln_call *c);
/* Its share of the workspace, after the threads' scratch. */
size_t kiln_cpu_verify_bytes(const kiln_config *cfg);
char *kiln_cpu_verify_area(const kiln_sampler *s, const kiln_call *c);

/* Scratch a row's later stages may use once its kept set is consumed: each
 * array holds V entries (out_ids 2 V). */
typedef struct kiln_cpu_work {
    uint32_t *cand;
    kiln_cpu_list *tmp_a, *tmp_b;
    uint32_t *out_ids;
} kiln_cpu_work;

/* A valid row after its draws, as the stages of cpu_row_extras.c see it. */
typedef struct kiln_cpu_row_state {
    const float *x; /* penalised logits */
    float max;
    float temperature; /* the row's temperature (dynatemp applied); 0: greedy */
    float exp2_factor; /* kiln_exp2_factor(temperature), when > 0 */
    int64_t argmax;
    /* the kept set (temperature > 0): inclusive prefix sums of its masses at
     * kept_ids (NULL: token j), kept_n entries, kept_count tokens */
    const uint32_t *kept_ids;
    const uint64_t *kept_prefix;
    int64_t kept_n, kept_count;
    double log_s; /* kiln_log_mass of the kept mass */
    /* raw (T = 1) sums when a stage computed them, else NULL */
    const kiln_cpu_entropy_sums *raw;
    /* the kept set's sums when computed, else NULL (then read from the prefix) */
    const kiln_cpu_entropy_sums *final;
    double log_s1; /* kiln_log_mass of every mass at T = 1, for raw_top_logprobs */
} kiln_cpu_row_state;

/* The optional outputs of docs/semantics.md sections 15-17 for row b:
 * top-N raw and final, raw ranks of the row's draws (read back from
 * outputs.tokens), entropies, temperatures. The kept set in `st` is read
 * first, then wk is used. */
void kiln_cpu_write_extras(const kiln_call *c, int64_t b, const kiln_cpu_row_state *st,
                           kiln_cpu_work *wk);
/* The same outputs of an invalid row. */
void kiln_cpu_write_invalid_extras(const kiln_call *c, int64_t b);

/* One kiln_score row (cpu_score.c), valid, with max m and argmax. */
void kiln_cpu_score_row(const kiln_call *c, int64_t b, const float *x, float m,
                        kiln_cpu_work *wk);

/* Applies the penalties of one row's history to its V logits `x` in place;
 * more_generated[0..more_len) continue the history as generated tokens.
 * `work` is V words of scratch (any contents). */
void kiln_cpu_apply_history(float *x, int64_t V, uint32_t *work, const int32_t *ids, int64_t len,
                            int64_t prompt_len, const int32_t *more_generated, int64_t more_len,
                            const kiln_row_params *r);

#endif
