/*
 * kiln — batched LLM token sampling on the CPU and on CUDA GPUs.
 *
 * One call turns a batch of logits [B, V] into sampled token ids: repetition,
 * presence and frequency penalties, temperature (T = 0 is greedy), top-k,
 * top-p, min-p, n draws per row with log-probabilities. The CPU and CUDA
 * backends return the same bytes for the same input; docs/semantics.md is the
 * contract both are held to.
 *
 * Conventions used throughout this header:
 *  - Every fallible function returns a kiln_status and writes results through
 *    pointers. On failure, kiln_last_error() names the field (and row) at fault.
 *    The library never prints and never aborts.
 *  - "Backend memory" means host memory for KILN_BACKEND_CPU and device memory
 *    (or managed memory) of the sampler's device for KILN_BACKEND_CUDA.
 *  - Structs that start with `struct_size` can grow: fields are only appended,
 *    and a caller compiled against an older header gets defaults for the rest.
 *    Always start from the *_INIT macro.
 *  - The stream is the last argument. The CPU backend ignores it and works
 *    synchronously on the calling thread (with OpenMP threads under it).
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/kiln_version.h"

#if defined(_WIN32)
#define KILN_API
#elif defined(__GNUC__) || defined(__clang__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ limits */

/* Token masses are unsigned 64-bit fixed-point numbers with this many
 * fractional bits; the most likely token of a row has mass 2^40 exactly. */
#define KILN_MASS_FRACTION_BITS 40
/* Largest vocabulary: V * 2^40 must stay below 2^64 so that every sum of
 * masses is exact. */
#define KILN_MAX_VOCAB_SIZE ((int64_t)((1 << 24) - 1))

/* ------------------------------------------------------------------ status */

/* Values are fixed forever; new codes are only appended. */
typedef enum kiln_status {
    KILN_SUCCESS = 0,
    KILN_ERROR_NULL_POINTER = 1,        /* a required pointer is NULL */
    KILN_ERROR_INVALID_SHAPE = 2,       /* B, V, n, stride, or over the sampler's limits */
    KILN_ERROR_INVALID_PARAMETER = 3,   /* a parameter value, dtype, or history id */
    KILN_ERROR_INVALID_CONFIG = 4,      /* a kiln_config field at creation */
    KILN_ERROR_WORKSPACE_TOO_SMALL = 5, /* workspace smaller than the query said */
    KILN_ERROR_MISALIGNED = 6,          /* a pointer not aligned to its element type */
    KILN_ERROR_OVERLAP = 7,             /* an output overlaps another buffer */
    KILN_ERROR_OUT_OF_MEMORY = 8,       /* handle creation could not allocate */
    KILN_ERROR_BACKEND_UNAVAILABLE = 9, /* backend not built in, or no such device */
    KILN_ERROR_CUDA = 10,               /* a CUDA call failed; the message holds its string */
    KILN_ERROR_INTERNAL = 11            /* a bug in kiln; please report the message */
} kiln_status;

/* A static, never-NULL English name for a status ("KILN_ERROR_OVERLAP: ..."). */
KILN_API const char *kiln_status_string(kiln_status status);

/* The detail of the last failure on the calling thread, e.g.
 * "top_p[17] = 1.5 is outside (0, 1]". Thread-local; never NULL; "" after a
 * success. Valid until the next kiln call on this thread. */
KILN_API const char *kiln_last_error(void);

/* ----------------------------------------------------------------- version */

/* KILN_VERSION_NUMBER of the library actually linked (compare with the
 * header's KILN_VERSION_NUMBER to detect a mismatch). */
KILN_API unsigned kiln_version_number(void);
/* "MAJOR.MINOR.PATCH" of the library actually linked. */
KILN_API const char *kiln_version_string(void);

/* ------------------------------------------------------------------- types */

typedef enum kiln_backend {
    KILN_BACKEND_CPU = 0,
    KILN_BACKEND_CUDA = 1
} kiln_backend;

typedef enum kiln_dtype {
    KILN_DTYPE_F32 = 0,
    KILN_DTYPE_F16 = 1, /* IEEE binary16 */
    KILN_DTYPE_BF16 = 2 /* bfloat16 */
} kiln_dtype;

/* How top-k and top-p find their cut. Every choice returns the same bytes;
 * only speed and workspace size differ. */
typedef enum kiln_algorithm {
    KILN_ALGORITHM_AUTO = 0,  /* the fastest for each row's shape */
    KILN_ALGORITHM_SORT = 1,  /* sort each filtered row (the reference path) */
    KILN_ALGORITHM_SELECT = 2 /* exact radix select over the keys, no sort */
} kiln_algorithm;

/* cudaStream_t without including the CUDA headers: a cudaStream_t converts to
 * it implicitly. NULL is the legacy default stream. */
typedef struct CUstream_st *kiln_stream;

/* Opaque sampler: caches the backend, device properties and workspace size.
 * Use one sampler per host thread; different samplers may be used
 * concurrently from different threads. */
typedef struct kiln_sampler kiln_sampler;

/* How a sampler is created. Start from KILN_CONFIG_INIT. */
typedef struct kiln_config {
    size_t struct_size;   /* sizeof(kiln_config) */
    kiln_backend backend; /* default KILN_BACKEND_CPU */
    int device;           /* CUDA device ordinal; ignored by the CPU backend */
    int64_t max_batch;    /* rows per call, 1..2^31 - 1 */
    int64_t max_vocab;    /* vocabulary size per call, 1..KILN_MAX_VOCAB_SIZE */
    int32_t max_samples;  /* draws per row (n) per call, >= 1 */
    int64_t max_history;  /* history ids per row for penalties, >= 0 (0: no histories) */
    int num_threads;      /* CPU backend: OpenMP threads per call; 0 = OpenMP's default */
    kiln_algorithm algorithm; /* default KILN_ALGORITHM_AUTO */
    int64_t max_hidden;   /* largest hidden size for kiln_sample_hidden, 0..2^20;
                             0 (default): kiln_sample_hidden is unavailable */
    int32_t max_top_logprobs; /* largest num_top_logprobs of a call, 0..1024
                                 (OpenAI allows 20); default 0 */
} kiln_config;

#define KILN_CONFIG_INIT \
    { sizeof(kiln_config), KILN_BACKEND_CPU, 0, 1, 0, 1, 0, 0, KILN_ALGORITHM_AUTO, 0, 0 }

/* The batch to sample. Start from KILN_BATCH_INIT.
 *
 * logits: backend memory, row b starts at element b * row_stride, V elements
 *   of `dtype`, aligned to the element size. Not modified.
 * history: optional token history per row in CSR form, for the penalties.
 *   Row b's ids are history_ids[history_offsets[b] .. history_offsets[b+1]),
 *   all in [0, V); the first prompt_lengths[b] of them are prompt tokens, the
 *   rest generated tokens. history_offsets has num_rows + 1 non-decreasing
 *   entries; history_offsets == NULL means no history for any row.
 *   prompt_lengths == NULL means every history token was generated.
 * allowed_mask: optional per-row bitmask in the layout grammar engines
 *   (xgrammar) produce: bit j % 32 of word j / 32 of row b's words set means
 *   token j may be drawn; a cleared bit makes the logit -inf before anything
 *   else (so it is never drawn, has no mass and no top-k place, and what the
 *   logit held does not matter). Bits past V are ignored. A row with no
 *   allowed token is invalid (tokens -1, valid 0), like an all -inf row.
 * logit_bias: optional OpenAI logit_bias per row in CSR form: row b adds
 *   logit_bias_values[i] to the logit of logit_bias_ids[i] for i in
 *   [logit_bias_offsets[b], logit_bias_offsets[b+1]), in that order, after
 *   the mask and before the penalties. Ids in [0, V); values finite. */
typedef struct kiln_batch {
    size_t struct_size;             /* sizeof(kiln_batch) */
    kiln_dtype dtype;               /* dtype of the logits */
    const void *logits;             /* [num_rows, row_stride] backend memory */
    int64_t num_rows;               /* B >= 1 */
    int64_t vocab_size;             /* V >= 1 */
    int64_t row_stride;             /* elements between rows, >= V; 0 means V */
    int32_t num_samples;            /* n >= 1 draws per row */
    const int64_t *history_offsets; /* [num_rows + 1] backend memory, or NULL */
    const int32_t *history_ids;     /* [history_offsets[num_rows]] backend memory */
    const int32_t *prompt_lengths;  /* [num_rows] backend memory, or NULL */
    const int32_t *allowed_mask;    /* [num_rows, allowed_mask_stride] backend memory, or NULL */
    int64_t allowed_mask_stride;    /* 32-bit words between rows, >= ceil(V / 32); 0 means that */
    const int64_t *logit_bias_offsets; /* [num_rows + 1] backend memory, or NULL */
    const int32_t *logit_bias_ids;     /* [logit_bias_offsets[num_rows]] backend memory */
    const float *logit_bias_values;    /* [logit_bias_offsets[num_rows]] backend memory */
} kiln_batch;

#define KILN_BATCH_INIT                                                                   \
    { sizeof(kiln_batch), KILN_DTYPE_F32, NULL, 0, 0, 0, 1, NULL, NULL, NULL, NULL, 0, NULL, \
      NULL, NULL }

/* Per-row parameters. For each parameter, `name` points to num_rows values in
 * backend memory, or is NULL and `name_all` applies to every row (a host
 * value). Start from KILN_SAMPLING_PARAMS_INIT, whose defaults disable every
 * transform (T = 1, no filter, no penalty).
 *
 * temperature         finite, >= 0; 0 is greedy (argmax, ties to the lowest id)
 * top_k               keep the k most likely tokens; k <= 0 or k >= V disables
 * top_p               in (0, 1]; keep the shortest most-likely prefix holding p
 *                     of the top-k mass; 1 disables
 * min_p               in [0, 1]; keep tokens with mass >= min_p * max mass;
 *                     0 disables
 * repetition_penalty  finite, > 0; HF/CTRL rule over prompt and generated
 *                     tokens; 1 disables
 * presence_penalty    finite; subtracted once from each generated token; 0 disables
 * frequency_penalty   finite; subtracted per generated occurrence; 0 disables
 * seed, offset        Philox key and draw counter; a row's draws depend on its
 *                     seed, offset and sample index only
 * dynatemp_range      finite, >= 0: entropy-adaptive temperature (llama.cpp's
 *                     dynatemp). With base T and range d the row is sampled at
 *                     T_min + (T_max - T_min) * (H / H_max)^e, T_min =
 *                     max(0, T - d), T_max = T + d, H the entropy of the raw
 *                     distribution, H_max = ln(tokens with mass at T = 1);
 *                     0 disables (the row's T, bit for bit)
 * dynatemp_exponent   finite, > 0: the e above; default 1 */
typedef struct kiln_sampling_params {
    size_t struct_size; /* sizeof(kiln_sampling_params) */
    const float *temperature;
    float temperature_all;
    const int32_t *top_k;
    int32_t top_k_all;
    const float *top_p;
    float top_p_all;
    const float *min_p;
    float min_p_all;
    const float *repetition_penalty;
    float repetition_penalty_all;
    const float *presence_penalty;
    float presence_penalty_all;
    const float *frequency_penalty;
    float frequency_penalty_all;
    const uint64_t *seed;
    uint64_t seed_all;
    const uint64_t *offset;
    uint64_t offset_all;
    const float *dynatemp_range;
    float dynatemp_range_all;
    const float *dynatemp_exponent;
    float dynatemp_exponent_all;
} kiln_sampling_params;

#define KILN_SAMPLING_PARAMS_INIT                                                            \
    { sizeof(kiln_sampling_params), NULL, 1.0f, NULL, 0, NULL, 1.0f, NULL, 0.0f, NULL, 1.0f, \
      NULL, 0.0f, NULL, 0.0f, NULL, 0, NULL, 0, NULL, 0.0f, NULL, 1.0f }

/* Where results go; all backend memory, none may overlap another buffer of
 * the call. Start from KILN_OUTPUTS_INIT. Only `tokens` is required.
 *
 * tokens        [B, n]  sampled ids in [0, V), or -1 for an invalid row
 * logprobs      [B, n]  log-probability of each draw under the final
 *                       distribution (0 for greedy rows; NaN if invalid)
 * raw_logprobs  [B, n]  log-softmax of the penalised logits at T = 1
 * probs         [B, probs_row_stride]  final probabilities, 0 outside the
 *                       kept set, V written per row (all 0 if invalid)
 * kept_counts   [B]     number of tokens that could be drawn (0 if invalid)
 * valid         [B]     1 if the row was sampled, 0 if it was invalid
 *
 * With N = num_top_logprobs (0..the sampler's max_top_logprobs; 0 with any of
 * the four top-N pointers set is an error):
 * raw_top_ids, raw_top_logprobs      [B, N]  the first N tokens of the
 *                       canonical order (most likely first, ties to the lower
 *                       id) and their raw log-probabilities; id -1 and -inf
 *                       past V
 * final_top_ids, final_top_logprobs  [B, N]  the first N kept tokens in that
 *                       order and their log-probabilities under the final
 *                       distribution; id -1 and -inf past the kept count
 * raw_ranks     [B, n]  rank of each draw under the raw distribution: 1 + the
 *                       tokens before it in canonical order (0 if invalid)
 * entropy, raw_entropy  [B]  entropy in nats of the final and of the raw
 *                       distribution, from the exact masses
 *                       (docs/semantics.md section 15); NaN if invalid
 * temperatures  [B]     the temperature the row was sampled at (T, or the
 *                       dynatemp temperature); NaN if invalid
 * The raw distribution is the log-softmax of the penalised logits at T = 1,
 * before any filter (raw_logprobs' distribution). */
typedef struct kiln_outputs {
    size_t struct_size; /* sizeof(kiln_outputs) */
    int32_t *tokens;
    float *logprobs;
    float *raw_logprobs;
    float *probs;
    int64_t probs_row_stride; /* elements, >= V; 0 means V */
    int32_t *kept_counts;
    uint8_t *valid;
    int32_t num_top_logprobs;
    int32_t *raw_top_ids;
    float *raw_top_logprobs;
    int32_t *final_top_ids;
    float *final_top_logprobs;
    int32_t *raw_ranks;
    float *entropy;
    float *raw_entropy;
    float *temperatures;
} kiln_outputs;

#define KILN_OUTPUTS_INIT                                                                   \
    { sizeof(kiln_outputs), NULL, NULL, NULL, NULL, 0, NULL, NULL, 0, NULL, NULL, NULL, NULL, \
      NULL, NULL, NULL, NULL }

/* ------------------------------------------------------- sampler lifecycle */

/* Creates a sampler for `config`. For KILN_BACKEND_CUDA the device is
 * queried here, once. *sampler is set to NULL on failure.
 * Errors: NULL_POINTER, INVALID_CONFIG, BACKEND_UNAVAILABLE (CUDA not built in,
 * no device, or bad ordinal), OUT_OF_MEMORY, CUDA. */
KILN_API kiln_status kiln_sampler_create(const kiln_config *config, kiln_sampler **sampler);

/* Destroys a sampler; NULL is a no-op. Work enqueued on a stream must be
 * complete (or the stream synchronised) before the sampler is destroyed. */
KILN_API kiln_status kiln_sampler_destroy(kiln_sampler *sampler);

/* Bytes of workspace kiln_sample (and kiln_sample_hidden, when max_hidden
 * > 0) needs for any call within the sampler's limits. Launches nothing, allocates nothing. The workspace is backend
 * memory (device memory for CUDA), owned by the caller, aligned to 256 bytes,
 * and must not be used by another call in flight.
 * Errors: NULL_POINTER. */
KILN_API kiln_status kiln_sampler_workspace_size(const kiln_sampler *sampler, size_t *bytes);

/* The backend a sampler was created with. Errors: NULL_POINTER. */
KILN_API kiln_status kiln_sampler_backend(const kiln_sampler *sampler, kiln_backend *backend);

/* ---------------------------------------------------------------- sampling */

/* Samples every row of `batch`: penalties, temperature, top-k, top-p, min-p,
 * then n draws per row (docs/semantics.md). Rows are independent: a row's
 * output bytes depend only on its own logits, history, parameters, seed and
 * offset, and are identical on every backend.
 *
 * A row whose penalised logits contain NaN or +inf, or are all -inf, is
 * invalid: its tokens are -1, valid 0, and the call still succeeds.
 * Host-visible input (scalars, and every array for the CPU backend) is
 * checked before anything is written; on error nothing is written.
 * Device-resident per-row values (CUDA backend) are checked on the device:
 * a row with a bad value comes back invalid.
 *
 * CUDA backend: enqueued on `stream`, returns without waiting; no allocation,
 * no host synchronisation, no device-to-host copy, so it can be captured in a
 * CUDA graph. CPU backend: synchronous; `stream` is ignored.
 * Errors: NULL_POINTER, INVALID_SHAPE, INVALID_PARAMETER, MISALIGNED, OVERLAP,
 * WORKSPACE_TOO_SMALL, CUDA. */
KILN_API kiln_status kiln_sample(kiln_sampler *sampler, const kiln_batch *batch,
                                 const kiln_sampling_params *params,
                                 const kiln_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream);

/* Best-of-n: for each of num_groups groups of n consecutive candidates in
 * `scores` (backend memory, [num_groups, n], typically cumulative
 * log-probabilities), writes to best[g] (backend memory) the index in [0, n)
 * of the highest score, ties to the lowest index. NaN scores are never
 * chosen; a group of only NaN gets -1. Same stream rules as kiln_sample.
 * Errors: NULL_POINTER, INVALID_SHAPE, MISALIGNED, OVERLAP, CUDA. */
KILN_API kiln_status kiln_best_of_n(kiln_sampler *sampler, const float *scores,
                                    int64_t num_groups, int32_t n, int32_t *best,
                                    kiln_stream stream);

/* ----------------------------------------------------------------- scoring */

/* What kiln_score writes; backend memory, optional unless said, none may
 * overlap another buffer of the call. Start from KILN_SCORE_OUTPUTS_INIT.
 * With K = num_targets and N = num_top_logprobs (0..max_top_logprobs):
 * logprobs      [B, K]  raw log-probability of each target (NaN for a target
 *                       of -1 and for an invalid row)
 * ranks         [B, K]  its rank under the raw distribution: 1 + the tokens
 *                       before it in canonical order (0 for -1 or invalid)
 * top_ids, top_logprobs [B, N]  as kiln_outputs.raw_top_ids / raw_top_logprobs
 * entropy       [B]     entropy of the raw distribution in nats (NaN if invalid)
 * valid         [B]     1, or 0 for an invalid row */
typedef struct kiln_score_outputs {
    size_t struct_size; /* sizeof(kiln_score_outputs) */
    float *logprobs;
    int32_t *ranks;
    int32_t num_top_logprobs;
    int32_t *top_ids;
    float *top_logprobs;
    float *entropy;
    uint8_t *valid;
} kiln_score_outputs;

#define KILN_SCORE_OUTPUTS_INIT \
    { sizeof(kiln_score_outputs), NULL, NULL, 0, NULL, NULL, NULL, NULL }

/* Scores given tokens under each row's raw distribution, for prompt
 * log-probabilities and evaluation: no filters, no draws, no random numbers.
 * The raw distribution is kiln_sample's (docs/semantics.md): the batch's
 * mask, logit bias and history penalties (params supplies the penalties;
 * its other fields must be valid, as for kiln_sample, but do not change the
 * result; NULL means no penalties), then the
 * log-softmax at T = 1. targets: [B, K] backend memory, ids in [0, V) or -1
 * for none (padding); may be NULL when K = 0. batch.num_samples must be 1.
 * Same validity, bad-input and stream rules as kiln_sample; a device-resident
 * target outside [0, V) makes its row invalid on the CUDA backend.
 * Errors: NULL_POINTER, INVALID_SHAPE, INVALID_PARAMETER, MISALIGNED, OVERLAP,
 * WORKSPACE_TOO_SMALL, CUDA. */
KILN_API kiln_status kiln_score(kiln_sampler *sampler, const kiln_batch *batch,
                                const kiln_sampling_params *params, const int32_t *targets,
                                int32_t num_targets, const kiln_score_outputs *outputs,
                                void *workspace, size_t workspace_size, kiln_stream stream);

/* ---------------------------------------------------- speculative decoding */

/* The draft tokens kiln_verify_drafts checks, per request b of B. Start from
 * KILN_DRAFTS_INIT.
 * draft_ids     [B, K] backend memory: request b's drafts are its first K_b
 *               entries, ids in [0, V); the rest are not read.
 * num_drafts    [B] backend memory, K_b in [0, K]; NULL: every K_b is K.
 * draft_probs   [B, K, draft_probs_stride] f32 backend memory: the draft
 *               model's distribution q at each draft position (values in
 *               [0, 1], q(draft) > 0); NULL: one-hot drafts (n-gram or
 *               greedy proposers). Only q at the drafts and, when the
 *               residual draw needs it (not at a greedy position), the row
 *               of the first rejected position are read. */
typedef struct kiln_drafts {
    size_t struct_size;         /* sizeof(kiln_drafts) */
    int32_t max_drafts;         /* K >= 0 */
    const int32_t *draft_ids;   /* [B, K] backend memory */
    const int32_t *num_drafts;  /* [B] backend memory, or NULL */
    const float *draft_probs;   /* [B, K, draft_probs_stride] backend memory, or NULL */
    int64_t draft_probs_stride; /* elements between distributions, >= V; 0 means V */
} kiln_drafts;

#define KILN_DRAFTS_INIT { sizeof(kiln_drafts), 0, NULL, NULL, NULL, 0 }

/* What kiln_verify_drafts writes; backend memory, none may overlap another
 * buffer of the call. Start from KILN_VERIFY_OUTPUTS_INIT. Only tokens is
 * required.
 * tokens        [B, K + 1]  the accepted drafts, then the correction (at the
 *                           first rejection) or the bonus token, then -1
 * num_accepted  [B]         accepted drafts (0 if invalid)
 * logprobs      [B, K + 1]  log-probability of each emitted token under the
 *                           target distribution at its position; NaN past it
 * valid         [B]         1, or 0 for an invalid request (tokens all -1) */
typedef struct kiln_verify_outputs {
    size_t struct_size; /* sizeof(kiln_verify_outputs) */
    int32_t *tokens;
    int32_t *num_accepted;
    float *logprobs;
    uint8_t *valid;
} kiln_verify_outputs;

#define KILN_VERIFY_OUTPUTS_INIT { sizeof(kiln_verify_outputs), NULL, NULL, NULL, NULL }

/* Verifies draft tokens by exact rejection sampling (Leviathan et al. 2023;
 * Chen et al. 2023) against kiln's own final distribution at every
 * position: the same bytes kiln_sample's filters give that row, so the
 * emitted tokens follow the target distribution (docs/semantics.md section
 * 19 states exactly how, given the quantised draft probabilities).
 * batch: B = num_rows requests; batch.logits holds B * (K + 1) target rows,
 *   row (b, i) at index b * (K + 1) + i, each row_stride apart, and
 *   B * (K + 1) must be at most the sampler's max_batch. The history,
 *   prompt lengths and logit bias are per request (num_rows + 1 offsets);
 *   at position i the history also holds drafts 0..i-1 as generated tokens.
 *   allowed_mask, when given, has a row per target row (B * (K + 1) rows).
 *   num_samples must be 1.
 * params: per request; seed and offset as for kiln_sample. With K_b = 0 the
 *   call returns kiln_sample's token and log-probability for the same row,
 *   seed and offset; after a step, advancing offset by num_accepted + 1
 *   never reuses random bits.
 * Same validity, bad-input and stream rules as kiln_sample (device-resident
 * drafts or draft probabilities that are out of range make their request
 * invalid on the CUDA backend).
 * Errors: NULL_POINTER, INVALID_SHAPE, INVALID_PARAMETER, MISALIGNED, OVERLAP,
 * WORKSPACE_TOO_SMALL, CUDA. */
KILN_API kiln_status kiln_verify_drafts(kiln_sampler *sampler, const kiln_batch *batch,
                                        const kiln_sampling_params *params,
                                        const kiln_drafts *drafts,
                                        const kiln_verify_outputs *outputs, void *workspace,
                                        size_t workspace_size, kiln_stream stream);

/* ---------------------------------------------------- sampling from hidden */

/* The LM head of kiln_sample_hidden: logits[b, v] = sum_h hidden[b, h] *
 * weight[v, h] (+ bias[v]), accumulated in f32. Start from KILN_LM_HEAD_INIT.
 * hidden, weight and bias are backend memory, aligned to their element size;
 * f16 and bf16 inputs are converted to f32 exactly. */
typedef struct kiln_lm_head {
    size_t struct_size;      /* sizeof(kiln_lm_head) */
    kiln_dtype dtype;        /* dtype of hidden and weight */
    const void *hidden;      /* [num_rows, hidden_stride] backend memory */
    int64_t hidden_size;     /* H, 1..the sampler's max_hidden */
    int64_t hidden_stride;   /* elements between rows of hidden, >= H; 0 means H */
    const void *weight;      /* [vocab_size, hidden_size] row-major backend memory */
    const float *bias;       /* [vocab_size] backend memory, or NULL */
    kiln_dtype logits_dtype; /* KILN_DTYPE_F32 (default) or KILN_DTYPE_BF16 */
} kiln_lm_head;

#define KILN_LM_HEAD_INIT \
    { sizeof(kiln_lm_head), KILN_DTYPE_F32, NULL, 0, 0, NULL, NULL, KILN_DTYPE_F32 }

/* Computes the logits of `batch`'s rows from hidden states with the LM head
 * into the workspace, then samples them exactly as kiln_sample samples the
 * same logits (every option and output of kiln_sample; same bytes). The
 * sampler needs max_hidden > 0. batch supplies num_rows, vocab_size,
 * num_samples and the history; batch.logits must be NULL and row_stride 0 or
 * vocab_size; batch.dtype is not read (head.logits_dtype is the logits'
 * dtype: bf16 logits are the f32 sums rounded to nearest even).
 * CUDA backend: one cuBLAS GEMM (f32 accumulation; tensor cores for f16 and
 * bf16) on `stream`, with the cuBLAS workspace carved from `workspace`: no
 * allocation or synchronisation, capturable in a CUDA graph. The GEMM's
 * summation order is cuBLAS's, so GPU logits match the CPU's within rounding,
 * not bit for bit, and, because cuBLAS picks its kernel and split-K by the
 * GEMM's shape, a row's GPU logits may change with num_rows: the one
 * exception to batch invariance (docs/semantics.md section 14). They repeat
 * exactly for the same num_rows on the same GPU. The call binds the
 * sampler's cuBLAS handle to `stream`: one sampler per host thread.
 * CPU backend: a blocked GEMM whose per-logit summation order is fixed, so
 * results depend on neither the thread count nor num_rows.
 * Errors: NULL_POINTER, INVALID_SHAPE, INVALID_PARAMETER, MISALIGNED, OVERLAP,
 * WORKSPACE_TOO_SMALL, CUDA. */
KILN_API kiln_status kiln_sample_hidden(kiln_sampler *sampler, const kiln_lm_head *head,
                                        const kiln_batch *batch,
                                        const kiln_sampling_params *params,
                                        const kiln_outputs *outputs, void *workspace,
                                        size_t workspace_size, kiln_stream stream);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KILN_H */
