/* The CPU backend: the contract of docs/semantics.md on host memory, rows in
 * parallel with OpenMP, every buffer carved from the caller's workspace. */
#ifndef KILN_CPU_BACKEND_H
#define KILN_CPU_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../sampler.h"
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
/* The sum of kiln_mass(x[i], m, c). */
uint64_t kiln_cpu_mass_sum(const float *x, int64_t n, float m, float c);
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

/* Stable sort of n (key, id) pairs by descending key, so equal keys keep
 * ascending ids when the input ids ascend. The pointers are swapped as the
 * passes ping-pong; on return *key and *id hold the sorted pairs. */
void kiln_cpu_sort_desc(uint32_t **key, uint32_t **id, uint32_t **key_tmp, uint32_t **id_tmp,
                        size_t n);

/* Applies the penalties of one row's history to its logits `x` in place.
 * `marks` is a V-entry array that must be all zero and is left all zero. */
void kiln_cpu_apply_history(float *x, uint32_t *marks, const int32_t *ids, int64_t len,
                            int64_t prompt_len, const kiln_row_params *r);

#endif
