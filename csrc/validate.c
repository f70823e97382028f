#include "validate.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "error.h"
#include "shared/row_params.h"
#include "validate_stages.h"
#include "validate_verify.h"
#include "validate_util.h"

/* ------------------------------------------------------------------ structs */

/* The struct sizes a caller may pass: every prefix that ends where a field
 * starts, and the whole struct. A size inside a field would hand the library
 * half a pointer, so it is refused. Appending a field appends its offset. */
#define END(T, f) offsetof(T, f)
/* Bounds H so that f32 sums of H products stay meaningful and every
 * hidden/weight extent fits 64-bit byte counts. */
#define KILN_MAX_HIDDEN ((int64_t)1 << 20)
/* Top-N outputs are selected per row in the workspace; this bounds it. */
#define KILN_MAX_TOP_LOGPROBS 1024
static const size_t config_sizes[] = {
    END(kiln_config, backend), END(kiln_config, device), END(kiln_config, max_batch),
    END(kiln_config, max_vocab), END(kiln_config, max_samples), END(kiln_config, max_history),
    END(kiln_config, num_threads), END(kiln_config, algorithm), END(kiln_config, max_hidden),
    END(kiln_config, max_top_logprobs), sizeof(kiln_config)
};
static const size_t batch_sizes[] = {
    END(kiln_batch, dtype), END(kiln_batch, logits), END(kiln_batch, num_rows),
    END(kiln_batch, vocab_size), END(kiln_batch, row_stride), END(kiln_batch, num_samples),
    END(kiln_batch, history_offsets), END(kiln_batch, history_ids),
    END(kiln_batch, prompt_lengths), END(kiln_batch, allowed_mask),
    END(kiln_batch, allowed_mask_stride), END(kiln_batch, logit_bias_offsets),
    END(kiln_batch, logit_bias_ids), END(kiln_batch, logit_bias_values), sizeof(kiln_batch)
};
static const size_t params_sizes[] = {
    END(kiln_sampling_params, temperature), END(kiln_sampling_params, temperature_all),
    END(kiln_sampling_params, top_k), END(kiln_sampling_params, top_k_all),
    END(kiln_sampling_params, top_p), END(kiln_sampling_params, top_p_all),
    END(kiln_sampling_params, min_p), END(kiln_sampling_params, min_p_all),
    END(kiln_sampling_params, repetition_penalty),
    END(kiln_sampling_params, repetition_penalty_all),
    END(kiln_sampling_params, presence_penalty), END(kiln_sampling_params, presence_penalty_all),
    END(kiln_sampling_params, frequency_penalty),
    END(kiln_sampling_params, frequency_penalty_all), END(kiln_sampling_params, seed),
    END(kiln_sampling_params, seed_all), END(kiln_sampling_params, offset),
    END(kiln_sampling_params, offset_all), END(kiln_sampling_params, dynatemp_range),
    END(kiln_sampling_params, dynatemp_range_all), END(kiln_sampling_params, dynatemp_exponent),
    END(kiln_sampling_params, dynatemp_exponent_all), sizeof(kiln_sampling_params)
};
static const size_t outputs_sizes[] = {
    END(kiln_outputs, tokens), END(kiln_outputs, logprobs), END(kiln_outputs, raw_logprobs),
    END(kiln_outputs, probs), END(kiln_outputs, probs_row_stride),
    END(kiln_outputs, kept_counts), END(kiln_outputs, valid), END(kiln_outputs, num_top_logprobs),
    END(kiln_outputs, raw_top_ids), END(kiln_outputs, raw_top_logprobs),
    END(kiln_outputs, final_top_ids), END(kiln_outputs, final_top_logprobs),
    END(kiln_outputs, raw_ranks), END(kiln_outputs, entropy), END(kiln_outputs, raw_entropy),
    END(kiln_outputs, temperatures), sizeof(kiln_outputs)
};
static const size_t lm_head_sizes[] = {
    END(kiln_lm_head, dtype), END(kiln_lm_head, hidden), END(kiln_lm_head, hidden_size),
    END(kiln_lm_head, hidden_stride), END(kiln_lm_head, weight), END(kiln_lm_head, bias),
    END(kiln_lm_head, logits_dtype), sizeof(kiln_lm_head)
};
static const size_t score_outputs_sizes[] = {
    END(kiln_score_outputs, logprobs), END(kiln_score_outputs, ranks),
    END(kiln_score_outputs, num_top_logprobs), END(kiln_score_outputs, top_ids),
    END(kiln_score_outputs, top_logprobs), END(kiln_score_outputs, entropy),
    END(kiln_score_outputs, valid), sizeof(kiln_score_outputs)
};
#undef END

/* Copies a caller's struct over `dst` (pre-filled with defaults). Only the
 * caller's struct_size bytes are read, so an older, shorter struct works. */
static kiln_status copy_sized(void *dst, const void *src, const size_t *sizes, size_t count,
                              const char *type, kiln_status status)
{
    size_t given;
    memcpy(&given, src, sizeof given);
    for (size_t i = 0; i < count; ++i)
        if (given == sizes[i]) {
            memcpy(dst, src, given);
            return KILN_SUCCESS;
        }
    return kiln_fail(status,
                     "%s.struct_size = %zu is not a size this library knows (the whole struct "
                     "is %zu bytes; start from the %s initializer macro)",
                     type, given, sizes[count - 1], type);
}

#define COPY_SIZED(dst, src, sizes, type, status) \
    copy_sized(dst, src, sizes, sizeof sizes / sizeof sizes[0], type, status)

kiln_status kiln_validate_config(const kiln_config *in, kiln_config *out)
{
    if (!in)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "config is NULL");
    kiln_config defaults = KILN_CONFIG_INIT;
    *out = defaults;
    kiln_status st =
        COPY_SIZED(out, in, config_sizes, "kiln_config", KILN_ERROR_INVALID_CONFIG);
    if (st)
        return st;
    if (out->backend != KILN_BACKEND_CPU && out->backend != KILN_BACKEND_CUDA)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.backend = %d is not a kiln_backend",
                         (int)out->backend);
    if (out->algorithm != KILN_ALGORITHM_AUTO && out->algorithm != KILN_ALGORITHM_SORT &&
        out->algorithm != KILN_ALGORITHM_SELECT)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.algorithm = %d is not a kiln_algorithm",
                         (int)out->algorithm);
    if (out->max_batch < 1)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_batch = %lld must be >= 1",
                         (long long)out->max_batch);
    if (out->max_vocab < 1 || out->max_vocab > KILN_MAX_VOCAB_SIZE)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG,
                         "config.max_vocab = %lld is outside [1, %lld] (masses have %d "
                         "fractional bits and every sum must fit 64 bits)",
                         (long long)out->max_vocab, (long long)KILN_MAX_VOCAB_SIZE,
                         KILN_MASS_FRACTION_BITS);
    if (out->max_samples < 1)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_samples = %d must be >= 1",
                         (int)out->max_samples);
    if (out->max_history < 0)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_history = %lld must be >= 0",
                         (long long)out->max_history);
    if (out->num_threads < 0)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG,
                         "config.num_threads = %d must be >= 0 (0: OpenMP's default)",
                         out->num_threads);
    /* Bound the products the workspace size is built from. */
    /* CUDA grids put rows on gridDim.x, whose limit is 2^31 - 1. */
    if (out->max_batch > INT32_MAX)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_batch = %lld is over 2^31 - 1",
                         (long long)out->max_batch);
    if (out->max_samples > (1 << 24))
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_samples = %d is over 2^24",
                         (int)out->max_samples);
    if (out->max_history > ((int64_t)1 << 31))
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.max_history = %lld is over 2^31",
                         (long long)out->max_history);
    if (out->num_threads > 4096)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG, "config.num_threads = %d is over 4096",
                         out->num_threads);
    if (out->max_top_logprobs < 0 || out->max_top_logprobs > KILN_MAX_TOP_LOGPROBS)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG,
                         "config.max_top_logprobs = %d is outside [0, %d]",
                         (int)out->max_top_logprobs, KILN_MAX_TOP_LOGPROBS);
    if (out->max_hidden < 0 || out->max_hidden > KILN_MAX_HIDDEN)
        return kiln_fail(KILN_ERROR_INVALID_CONFIG,
                         "config.max_hidden = %lld is outside [0, 2^20] (0: no "
                         "kiln_sample_hidden)",
                         (long long)out->max_hidden);
    return KILN_SUCCESS;
}

/* --------------------------------------------------------------- parameters */

static const char *field_name(kiln_field f)
{
    switch (f) {
    case KILN_FIELD_TEMPERATURE: return "temperature";
    case KILN_FIELD_TOP_P: return "top_p";
    case KILN_FIELD_MIN_P: return "min_p";
    case KILN_FIELD_REPETITION_PENALTY: return "repetition_penalty";
    case KILN_FIELD_PRESENCE_PENALTY: return "presence_penalty";
    case KILN_FIELD_FREQUENCY_PENALTY: return "frequency_penalty";
    case KILN_FIELD_DYNATEMP_RANGE: return "dynatemp_range";
    case KILN_FIELD_DYNATEMP_EXPONENT: return "dynatemp_exponent";
    case KILN_FIELD_NONE: break;
    }
    return "?";
}

static const char *field_rule(kiln_field f)
{
    switch (f) {
    case KILN_FIELD_TEMPERATURE: return "must be finite and >= 0 (0 is greedy)";
    case KILN_FIELD_TOP_P: return "is outside (0, 1] (1 disables top-p)";
    case KILN_FIELD_MIN_P: return "is outside [0, 1] (0 disables min-p)";
    case KILN_FIELD_REPETITION_PENALTY: return "must be finite and > 0 (1 disables it)";
    case KILN_FIELD_PRESENCE_PENALTY: return "must be finite (0 disables it)";
    case KILN_FIELD_FREQUENCY_PENALTY: return "must be finite (0 disables it)";
    case KILN_FIELD_DYNATEMP_RANGE: return "must be finite and >= 0 (0 disables dynatemp)";
    case KILN_FIELD_DYNATEMP_EXPONENT: return "must be finite and > 0";
    case KILN_FIELD_NONE: break;
    }
    return "";
}

static float field_value(const kiln_row_params *r, kiln_field f)
{
    switch (f) {
    case KILN_FIELD_TEMPERATURE: return r->temperature;
    case KILN_FIELD_TOP_P: return r->top_p;
    case KILN_FIELD_MIN_P: return r->min_p;
    case KILN_FIELD_REPETITION_PENALTY: return r->repetition;
    case KILN_FIELD_PRESENCE_PENALTY: return r->presence;
    case KILN_FIELD_FREQUENCY_PENALTY: return r->frequency;
    case KILN_FIELD_DYNATEMP_RANGE: return r->dynatemp_range;
    case KILN_FIELD_DYNATEMP_EXPONENT: return r->dynatemp_exponent;
    case KILN_FIELD_NONE: break;
    }
    return 0.0f;
}

static const void *field_array(const kiln_sampling_params *p, kiln_field f)
{
    switch (f) {
    case KILN_FIELD_TEMPERATURE: return p->temperature;
    case KILN_FIELD_TOP_P: return p->top_p;
    case KILN_FIELD_MIN_P: return p->min_p;
    case KILN_FIELD_REPETITION_PENALTY: return p->repetition_penalty;
    case KILN_FIELD_PRESENCE_PENALTY: return p->presence_penalty;
    case KILN_FIELD_FREQUENCY_PENALTY: return p->frequency_penalty;
    case KILN_FIELD_DYNATEMP_RANGE: return p->dynatemp_range;
    case KILN_FIELD_DYNATEMP_EXPONENT: return p->dynatemp_exponent;
    case KILN_FIELD_NONE: break;
    }
    return NULL;
}

static kiln_status param_fault(const kiln_sampling_params *p, const kiln_row_params *r,
                               kiln_field f, int64_t row)
{
    if (field_array(p, f))
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER, "%s[%lld] = %.9g %s", field_name(f),
                         (long long)row, (double)field_value(r, f), field_rule(f));
    return kiln_fail(KILN_ERROR_INVALID_PARAMETER, "%s_all = %.9g %s", field_name(f),
                     (double)field_value(r, f), field_rule(f));
}

/* The all-rows scalars that are in use (their array is NULL); array-backed
 * fields are replaced by a valid placeholder. */
static kiln_status check_scalars(const kiln_sampling_params *p)
{
    kiln_sampling_params s = *p;
    kiln_sampling_params defaults = KILN_SAMPLING_PARAMS_INIT;
    if (p->temperature) s.temperature_all = defaults.temperature_all;
    if (p->top_p) s.top_p_all = defaults.top_p_all;
    if (p->min_p) s.min_p_all = defaults.min_p_all;
    if (p->repetition_penalty) s.repetition_penalty_all = defaults.repetition_penalty_all;
    if (p->presence_penalty) s.presence_penalty_all = defaults.presence_penalty_all;
    if (p->frequency_penalty) s.frequency_penalty_all = defaults.frequency_penalty_all;
    if (p->dynatemp_range) s.dynatemp_range_all = defaults.dynatemp_range_all;
    if (p->dynatemp_exponent) s.dynatemp_exponent_all = defaults.dynatemp_exponent_all;
    /* Every array pointer is dropped before row 0 is read: on the CUDA
     * backend they are device pointers, which the host must never read. */
    s.temperature = NULL;
    s.top_p = s.min_p = s.repetition_penalty = s.presence_penalty = s.frequency_penalty = NULL;
    s.dynatemp_range = s.dynatemp_exponent = NULL;
    s.top_k = NULL;
    s.seed = NULL;
    s.offset = NULL;
    kiln_row_params r = kiln_row_params_at(&s, 0);
    kiln_field f = kiln_row_params_fault(&r);
    return f == KILN_FIELD_NONE ? KILN_SUCCESS : param_fault(&s, &r, f, 0);
}

static kiln_status check_param_arrays(const kiln_sampling_params *p, int64_t rows)
{
    for (int64_t b = 0; b < rows; ++b) {
        kiln_row_params r = kiln_row_params_at(p, b);
        kiln_field f = kiln_row_params_fault(&r);
        if (f != KILN_FIELD_NONE)
            return param_fault(p, &r, f, b);
    }
    return KILN_SUCCESS;
}

/* ------------------------------------------------------------------ history */

static kiln_status check_history(const kiln_batch *bt, int64_t max_history)
{
    const int64_t *off = bt->history_offsets;
    if (off[0] < 0)
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER, "history_offsets[0] = %lld is negative",
                         (long long)off[0]);
    for (int64_t b = 0; b < bt->num_rows; ++b) {
        /* order first: with off[b] >= 0 (by induction) and off[b + 1] >=
         * off[b], the difference cannot overflow */
        if (off[b + 1] < off[b])
            return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                             "history_offsets[%lld] = %lld is below history_offsets[%lld] = %lld",
                             (long long)(b + 1), (long long)off[b + 1], (long long)b,
                             (long long)off[b]);
        const int64_t len = off[b + 1] - off[b];
        if (len > max_history)
            return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                             "row %lld has %lld history ids, over the sampler's max_history = %lld",
                             (long long)b, (long long)len, (long long)max_history);
        if (bt->prompt_lengths) {
            int32_t pl = bt->prompt_lengths[b];
            if (pl < 0 || pl > len)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "prompt_lengths[%lld] = %d is outside [0, %lld] (the row's "
                                 "history length)",
                                 (long long)b, (int)pl, (long long)len);
        }
        for (int64_t i = off[b]; i < off[b + 1]; ++i) {
            int32_t id = bt->history_ids[i];
            if (id < 0 || id >= bt->vocab_size)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "history_ids[%lld] = %d (row %lld) is outside [0, %lld)",
                                 (long long)i, (int)id, (long long)b,
                                 (long long)bt->vocab_size);
        }
    }
    return KILN_SUCCESS;
}

/* --------------------------------------------------------------------- call */



/* kiln_score's targets: ids in [0, V), or -1 for none. */
static kiln_status check_targets(const kiln_batch *bt, const int32_t *targets, int32_t k)
{
    for (int64_t b = 0; b < bt->num_rows; ++b)
        for (int32_t j = 0; j < k; ++j) {
            const int32_t id = targets[b * k + j];
            if (id < -1 || id >= bt->vocab_size)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "targets[%lld] = %d (row %lld) is outside [0, %lld) and not -1",
                                 (long long)(b * k + j), (int)id, (long long)b,
                                 (long long)bt->vocab_size);
        }
    return KILN_SUCCESS;
}

/* One kiln_sample call, or the sampling half of a kiln_sample_hidden call
 * when `head` (validated, full size) is given: then the logits live in the
 * workspace, so batch.logits must be NULL and head's inputs join the
 * overlap and alignment checks. */
static kiln_status validate_call(const kiln_sampler *sampler, const kiln_batch *batch,
                                 const kiln_sampling_params *params,
                                 const kiln_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream, int arrays_on_host,
                                 const kiln_lm_head *head, const kiln_score_args *score,
                                 const kiln_verify_args *verify, kiln_call *call)
{
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    if (!batch)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "batch is NULL");
    if (!params && !score)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "params is NULL");
    const int own_outputs = score || verify;
    if (!outputs && !own_outputs)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "outputs is NULL");
    if (score && !score->outputs)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "outputs is NULL");
    const kiln_config *cfg = &sampler->config;

    kiln_batch bdef = KILN_BATCH_INIT;
    kiln_sampling_params pdef = KILN_SAMPLING_PARAMS_INIT;
    kiln_outputs odef = KILN_OUTPUTS_INIT;
    call->batch = bdef;
    call->params = pdef;
    call->outputs = odef;
    call->is_score = score != NULL;
    call->targets = NULL;
    call->num_targets = 0;
    call->target_logprobs = NULL;
    call->target_ranks = NULL;
    call->is_verify = verify != NULL;
    if (verify) {
        call->drafts = verify->drafts;
        call->verify = verify->outputs;
    }
    CHECK(COPY_SIZED(&call->batch, batch, batch_sizes, "kiln_batch",
                     KILN_ERROR_INVALID_PARAMETER));
    if (params)
        CHECK(COPY_SIZED(&call->params, params, params_sizes, "kiln_sampling_params",
                         KILN_ERROR_INVALID_PARAMETER));
    if (score) {
        kiln_score_outputs so = KILN_SCORE_OUTPUTS_INIT;
        CHECK(COPY_SIZED(&so, score->outputs, score_outputs_sizes, "kiln_score_outputs",
                         KILN_ERROR_INVALID_PARAMETER));
        call->targets = score->targets;
        call->num_targets = score->num_targets;
        call->target_logprobs = so.logprobs;
        call->target_ranks = so.ranks;
        call->outputs.num_top_logprobs = so.num_top_logprobs;
        call->outputs.raw_top_ids = so.top_ids;
        call->outputs.raw_top_logprobs = so.top_logprobs;
        call->outputs.raw_entropy = so.entropy;
        call->outputs.valid = so.valid;
    } else if (!verify) {
        CHECK(COPY_SIZED(&call->outputs, outputs, outputs_sizes, "kiln_outputs",
                         KILN_ERROR_INVALID_PARAMETER));
    }
    call->workspace = workspace;
    call->workspace_size = workspace_size;
    call->stream = stream;
    kiln_batch *bt = &call->batch;
    kiln_sampling_params *p = &call->params;
    kiln_outputs *o = &call->outputs;

    if (head) {
        if (bt->logits)
            return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                             "batch.logits must be NULL for kiln_sample_hidden (the logits are "
                             "computed into the workspace, not read)");
        if (bt->row_stride != 0 && bt->row_stride != bt->vocab_size)
            return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                             "batch.row_stride = %lld must be 0 or vocab_size = %lld for "
                             "kiln_sample_hidden (the workspace logits are dense)",
                             (long long)bt->row_stride, (long long)bt->vocab_size);
        bt->dtype = head->logits_dtype;
    }

    /* shapes */
    if (bt->dtype != KILN_DTYPE_F32 && bt->dtype != KILN_DTYPE_F16 &&
        bt->dtype != KILN_DTYPE_BF16)
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER, "batch.dtype = %d is not a kiln_dtype",
                         (int)bt->dtype);
    if (bt->num_rows < 1 || bt->num_rows > cfg->max_batch)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.num_rows = %lld is outside [1, %lld] (the sampler's max_batch)",
                         (long long)bt->num_rows, (long long)cfg->max_batch);
    /* kiln_verify_drafts reads K + 1 target rows of logits per request */
    const int64_t logit_rows =
        verify ? bt->num_rows * ((int64_t)verify->drafts.max_drafts + 1) : bt->num_rows;
    if (verify && (verify->drafts.max_drafts < 0 ||
                   (int64_t)verify->drafts.max_drafts + 1 > cfg->max_batch / bt->num_rows))
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "drafts.max_drafts = %d with batch.num_rows = %lld needs num_rows * "
                         "(max_drafts + 1) target rows, outside [1, %lld] (the sampler's "
                         "max_batch)",
                         (int)verify->drafts.max_drafts, (long long)bt->num_rows,
                         (long long)cfg->max_batch);
    if (bt->vocab_size < 1 || bt->vocab_size > cfg->max_vocab)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.vocab_size = %lld is outside [1, %lld] (the sampler's max_vocab)",
                         (long long)bt->vocab_size, (long long)cfg->max_vocab);
    if (bt->num_samples < 1 || bt->num_samples > cfg->max_samples)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.num_samples = %d is outside [1, %d] (the sampler's max_samples)",
                         (int)bt->num_samples, (int)cfg->max_samples);
    if (verify && bt->num_samples != 1)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.num_samples = %d must be 1 for kiln_verify_drafts",
                         (int)bt->num_samples);
    if (score && bt->num_samples != 1)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.num_samples = %d must be 1 for kiln_score (it draws nothing)",
                         (int)bt->num_samples);
    if (score && (score->num_targets < 0 ||
                  (uint64_t)score->num_targets > (uint64_t)(INT64_MAX / 4) / (uint64_t)bt->num_rows))
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "num_targets = %d is outside [0, 2^63 / (rows * 4)]",
                         (int)score->num_targets);
    if (bt->row_stride == 0)
        bt->row_stride = bt->vocab_size;
    const size_t esize = kiln_dtype_size(bt->dtype);
    if (bt->row_stride < bt->vocab_size ||
        bt->row_stride > (INT64_MAX / (int64_t)esize - bt->vocab_size) / logit_rows)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.row_stride = %lld is outside [vocab_size = %lld, 2^63 / (rows "
                         "* element size)]",
                         (long long)bt->row_stride, (long long)bt->vocab_size);
    if (o->probs_row_stride == 0 || !o->probs)
        o->probs_row_stride = bt->vocab_size;
    if (o->probs_row_stride < bt->vocab_size ||
        o->probs_row_stride > (INT64_MAX / 4 - bt->vocab_size) / bt->num_rows)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "outputs.probs_row_stride = %lld is outside [vocab_size = %lld, 2^63 / "
                         "(rows * 4)]",
                         (long long)o->probs_row_stride, (long long)bt->vocab_size);

    CHECK(kiln_validate_stage_inputs(bt, logit_rows));
    if (verify)
        CHECK(kiln_validate_verify_shapes(&call->drafts, &call->verify, bt));
    CHECK(kiln_validate_stage_outputs(o, cfg));

    /* required pointers */
    if (!bt->logits && !head)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "batch.logits is NULL");
    if (!o->tokens && !own_outputs)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "outputs.tokens is NULL");
    if (score && score->num_targets > 0 && !score->targets)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "targets is NULL but num_targets = %d",
                         (int)score->num_targets);
    if (bt->history_offsets && !bt->history_ids)
        return kiln_fail(KILN_ERROR_NULL_POINTER,
                         "batch.history_ids is NULL but batch.history_offsets is set");
    if (!bt->history_offsets && (bt->history_ids || bt->prompt_lengths))
        return kiln_fail(KILN_ERROR_NULL_POINTER,
                         "batch.history_offsets is NULL but history_ids or prompt_lengths is set");
    if (bt->history_offsets && cfg->max_history == 0)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.history_offsets is set but the sampler was created with "
                         "max_history = 0");
    if (sampler->workspace_bytes > 0 && !workspace)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "workspace is NULL (%zu bytes needed)",
                         sampler->workspace_bytes);
    if (workspace_size < sampler->workspace_bytes)
        return kiln_fail(KILN_ERROR_WORKSPACE_TOO_SMALL,
                         "workspace_size = %zu is below the %zu bytes kiln_sampler_workspace_size "
                         "reported",
                         workspace_size, sampler->workspace_bytes);

    /* alignment */
    CHECK(check_aligned(bt->logits, esize, "batch.logits"));
    if (head) {
        const size_t hsize = kiln_dtype_size(head->dtype);
        CHECK(check_aligned(head->hidden, hsize, "head.hidden"));
        CHECK(check_aligned(head->weight, hsize, "head.weight"));
        CHECK(check_aligned(head->bias, 4, "head.bias"));
    }
    CHECK(check_aligned(bt->history_offsets, 8, "batch.history_offsets"));
    CHECK(check_aligned(bt->history_ids, 4, "batch.history_ids"));
    CHECK(check_aligned(bt->prompt_lengths, 4, "batch.prompt_lengths"));
    CHECK(check_aligned(p->temperature, 4, "params.temperature"));
    CHECK(check_aligned(p->top_k, 4, "params.top_k"));
    CHECK(check_aligned(p->top_p, 4, "params.top_p"));
    CHECK(check_aligned(p->min_p, 4, "params.min_p"));
    CHECK(check_aligned(p->repetition_penalty, 4, "params.repetition_penalty"));
    CHECK(check_aligned(p->presence_penalty, 4, "params.presence_penalty"));
    CHECK(check_aligned(p->frequency_penalty, 4, "params.frequency_penalty"));
    CHECK(check_aligned(p->seed, 8, "params.seed"));
    CHECK(check_aligned(p->offset, 8, "params.offset"));
    CHECK(check_aligned(p->dynatemp_range, 4, "params.dynatemp_range"));
    CHECK(check_aligned(p->dynatemp_exponent, 4, "params.dynatemp_exponent"));
    if (score) {
        CHECK(check_aligned(score->targets, 4, "targets"));
        CHECK(check_aligned(call->target_logprobs, 4, "outputs.logprobs"));
        CHECK(check_aligned(call->target_ranks, 4, "outputs.ranks"));
    }
    CHECK(check_aligned(o->tokens, 4, "outputs.tokens"));
    CHECK(check_aligned(o->logprobs, 4, "outputs.logprobs"));
    CHECK(check_aligned(o->raw_logprobs, 4, "outputs.raw_logprobs"));
    CHECK(check_aligned(o->probs, 4, "outputs.probs"));
    CHECK(check_aligned(o->kept_counts, 4, "outputs.kept_counts"));

    /* History and bias structure before anything is sized from them. */
    if (arrays_on_host && bt->history_offsets)
        CHECK(check_history(bt, cfg->max_history));
    if (arrays_on_host)
        CHECK(kiln_validate_logit_bias_values(bt));
    if (arrays_on_host && score && score->num_targets > 0)
        CHECK(check_targets(bt, score->targets, score->num_targets));
    if (arrays_on_host && verify)
        CHECK(kiln_validate_drafts_values(&call->drafts, bt));

    /* overlaps */
    const uint64_t rows = (uint64_t)bt->num_rows, draws = rows * (uint64_t)bt->num_samples;
    region_list list;
    list.n = 0;
    if (bt->logits)
        add_region(&list, "batch.logits", bt->logits,
                   (((uint64_t)logit_rows - 1) * (uint64_t)bt->row_stride +
                    (uint64_t)bt->vocab_size) * esize,
                   0);
    if (head) {
        const uint64_t hsize = kiln_dtype_size(head->dtype);
        add_region(&list, "head.hidden", head->hidden,
                   ((rows - 1) * (uint64_t)head->hidden_stride + (uint64_t)head->hidden_size) *
                       hsize,
                   0);
        add_region(&list, "head.weight", head->weight,
                   (uint64_t)bt->vocab_size * (uint64_t)head->hidden_size * hsize, 0);
        add_region(&list, "head.bias", head->bias, (uint64_t)bt->vocab_size * 4, 0);
    }
    if (bt->history_offsets) {
        add_region(&list, "batch.history_offsets", bt->history_offsets, (rows + 1) * 8, 0);
        if (arrays_on_host)
            add_region(&list, "batch.history_ids", bt->history_ids,
                       (uint64_t)(bt->history_offsets[rows] > 0 ? bt->history_offsets[rows] : 0) * 4,
                       0);
    }
    add_region(&list, "batch.prompt_lengths", bt->prompt_lengths, rows * 4, 0);
    add_region(&list, "params.temperature", p->temperature, rows * 4, 0);
    add_region(&list, "params.top_k", p->top_k, rows * 4, 0);
    add_region(&list, "params.top_p", p->top_p, rows * 4, 0);
    add_region(&list, "params.min_p", p->min_p, rows * 4, 0);
    add_region(&list, "params.repetition_penalty", p->repetition_penalty, rows * 4, 0);
    add_region(&list, "params.presence_penalty", p->presence_penalty, rows * 4, 0);
    add_region(&list, "params.frequency_penalty", p->frequency_penalty, rows * 4, 0);
    add_region(&list, "params.seed", p->seed, rows * 8, 0);
    add_region(&list, "params.offset", p->offset, rows * 8, 0);
    add_region(&list, "params.dynatemp_range", p->dynatemp_range, rows * 4, 0);
    add_region(&list, "params.dynatemp_exponent", p->dynatemp_exponent, rows * 4, 0);
    kiln_add_stage_regions(&list, bt, o, logit_rows, arrays_on_host);
    if (verify)
        kiln_add_verify_regions(&list, &call->drafts, &call->verify, bt);
    if (score) {
        const uint64_t cells = rows * (uint64_t)score->num_targets;
        add_region(&list, "targets", score->targets, cells * 4, 0);
        add_region(&list, "outputs.logprobs", call->target_logprobs, cells * 4, 1);
        add_region(&list, "outputs.ranks", call->target_ranks, cells * 4, 1);
    }
    add_region(&list, "outputs.tokens", o->tokens, draws * 4, 1);
    add_region(&list, "outputs.logprobs", o->logprobs, draws * 4, 1);
    add_region(&list, "outputs.raw_logprobs", o->raw_logprobs, draws * 4, 1);
    add_region(&list, "outputs.probs", o->probs,
               ((rows - 1) * (uint64_t)o->probs_row_stride + (uint64_t)bt->vocab_size) * 4, 1);
    add_region(&list, "outputs.kept_counts", o->kept_counts, rows * 4, 1);
    add_region(&list, "outputs.valid", o->valid, rows, 1);
    add_region(&list, "workspace", workspace, sampler->workspace_bytes, 1);
    CHECK(check_overlaps(&list));

    /* values */
    CHECK(check_scalars(p));
    if (arrays_on_host)
        CHECK(check_param_arrays(p, bt->num_rows));
    return KILN_SUCCESS;
}

kiln_status kiln_validate_call(const kiln_sampler *sampler, const kiln_batch *batch,
                               const kiln_sampling_params *params,
                               const kiln_outputs *outputs, void *workspace,
                               size_t workspace_size, kiln_stream stream,
                               int arrays_on_host, kiln_call *call)
{
    return validate_call(sampler, batch, params, outputs, workspace, workspace_size, stream,
                         arrays_on_host, NULL, NULL, NULL, call);
}

kiln_status kiln_validate_hidden(const kiln_sampler *sampler, const kiln_lm_head *head_in,
                                 const kiln_batch *batch, const kiln_sampling_params *params,
                                 const kiln_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream, int arrays_on_host,
                                 kiln_lm_head *head, kiln_call *call)
{
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    if (!head_in)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "head is NULL");
    kiln_lm_head hdef = KILN_LM_HEAD_INIT;
    *head = hdef;
    CHECK(COPY_SIZED(head, head_in, lm_head_sizes, "kiln_lm_head",
                     KILN_ERROR_INVALID_PARAMETER));
    const int64_t max_hidden = sampler->config.max_hidden;
    if (max_hidden == 0)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "kiln_sample_hidden needs a sampler created with config.max_hidden > 0 "
                         "(this one has max_hidden = 0)");
    if (head->dtype != KILN_DTYPE_F32 && head->dtype != KILN_DTYPE_F16 &&
        head->dtype != KILN_DTYPE_BF16)
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER, "head.dtype = %d is not a kiln_dtype",
                         (int)head->dtype);
    if (head->logits_dtype != KILN_DTYPE_F32 && head->logits_dtype != KILN_DTYPE_BF16)
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                         "head.logits_dtype = %d must be KILN_DTYPE_F32 or KILN_DTYPE_BF16",
                         (int)head->logits_dtype);
    if (!head->hidden)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "head.hidden is NULL");
    if (!head->weight)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "head.weight is NULL");
    if (head->hidden_size < 1 || head->hidden_size > max_hidden)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "head.hidden_size = %lld is outside [1, %lld] (the sampler's "
                         "max_hidden)",
                         (long long)head->hidden_size, (long long)max_hidden);
    if (head->hidden_stride == 0)
        head->hidden_stride = head->hidden_size;
    /* cuBLAS takes leading dimensions as int; the same bound on every
     * backend keeps the errors backend-independent. */
    if (head->hidden_stride < head->hidden_size || head->hidden_stride > INT32_MAX)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "head.hidden_stride = %lld is outside [hidden_size = %lld, 2^31 - 1]",
                         (long long)head->hidden_stride, (long long)head->hidden_size);
    return validate_call(sampler, batch, params, outputs, workspace, workspace_size, stream,
                         arrays_on_host, head, NULL, NULL, call);
}

kiln_status kiln_validate_score(const kiln_sampler *sampler, const kiln_batch *batch,
                                const kiln_sampling_params *params, const kiln_score_args *score,
                                void *workspace, size_t workspace_size, kiln_stream stream,
                                int arrays_on_host, kiln_call *call)
{
    return validate_call(sampler, batch, params, NULL, workspace, workspace_size, stream,
                         arrays_on_host, NULL, score, NULL, call);
}

kiln_status kiln_validate_best_of_n(const float *scores, int64_t num_groups, int32_t n,
                                    const int32_t *best)
{
    if (!scores)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "scores is NULL");
    if (!best)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "best is NULL");
    if (num_groups < 0)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE, "num_groups = %lld must be >= 0",
                         (long long)num_groups);
    if (n < 1)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE, "n = %d must be >= 1", (int)n);
    if (num_groups > INT64_MAX / 4 / n)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE, "num_groups * n is too large");
    CHECK(check_aligned(scores, 4, "scores"));
    CHECK(check_aligned(best, 4, "best"));
    region_list list;
    list.n = 0;
    add_region(&list, "scores", scores, (uint64_t)num_groups * (uint64_t)n * 4, 0);
    add_region(&list, "best", best, (uint64_t)num_groups * 4, 1);
    return check_overlaps(&list);
}

kiln_status kiln_validate_verify(const kiln_sampler *sampler, const kiln_batch *batch,
                                 const kiln_sampling_params *params, const kiln_drafts *drafts,
                                 const kiln_verify_outputs *outputs, void *workspace,
                                 size_t workspace_size, kiln_stream stream, int arrays_on_host,
                                 kiln_call *call)
{
    if (!sampler)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "sampler is NULL");
    kiln_verify_args v;
    CHECK(kiln_copy_verify_args(drafts, outputs, &v));
    return validate_call(sampler, batch, params, NULL, workspace, workspace_size, stream,
                         arrays_on_host, NULL, NULL, &v, call);
}
