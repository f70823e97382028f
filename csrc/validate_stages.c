#include "validate_stages.h"

#include "shared/row_params.h"

kiln_status kiln_validate_stage_inputs(kiln_batch *bt, int64_t logit_rows)
{
    const int64_t words = (bt->vocab_size + 31) / 32;
    if (bt->allowed_mask) {
        if (bt->allowed_mask_stride == 0)
            bt->allowed_mask_stride = words;
        if (bt->allowed_mask_stride < words ||
            bt->allowed_mask_stride > (INT64_MAX / 4 - words) / logit_rows)
            return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                             "batch.allowed_mask_stride = %lld is outside [ceil(vocab_size / 32) "
                             "= %lld, 2^63 / (rows * 4)]",
                             (long long)bt->allowed_mask_stride, (long long)words);
        CHECK(check_aligned(bt->allowed_mask, 4, "batch.allowed_mask"));
    }
    if (bt->logit_bias_offsets && (!bt->logit_bias_ids || !bt->logit_bias_values))
        return kiln_fail(KILN_ERROR_NULL_POINTER,
                         "batch.logit_bias_%s is NULL but batch.logit_bias_offsets is set",
                         bt->logit_bias_ids ? "values" : "ids");
    if (!bt->logit_bias_offsets && (bt->logit_bias_ids || bt->logit_bias_values))
        return kiln_fail(KILN_ERROR_NULL_POINTER,
                         "batch.logit_bias_offsets is NULL but logit_bias_ids or "
                         "logit_bias_values is set");
    CHECK(check_aligned(bt->logit_bias_offsets, 8, "batch.logit_bias_offsets"));
    CHECK(check_aligned(bt->logit_bias_ids, 4, "batch.logit_bias_ids"));
    CHECK(check_aligned(bt->logit_bias_values, 4, "batch.logit_bias_values"));
    return KILN_SUCCESS;
}

kiln_status kiln_validate_logit_bias_values(const kiln_batch *bt)
{
    const int64_t *off = bt->logit_bias_offsets;
    if (!off)
        return KILN_SUCCESS;
    if (off[0] < 0)
        return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                         "logit_bias_offsets[0] = %lld is negative", (long long)off[0]);
    for (int64_t b = 0; b < bt->num_rows; ++b) {
        if (off[b + 1] < off[b])
            return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                             "logit_bias_offsets[%lld] = %lld is below logit_bias_offsets[%lld] "
                             "= %lld",
                             (long long)(b + 1), (long long)off[b + 1], (long long)b,
                             (long long)off[b]);
        for (int64_t i = off[b]; i < off[b + 1]; ++i) {
            const int32_t id = bt->logit_bias_ids[i];
            if (id < 0 || id >= bt->vocab_size)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "logit_bias_ids[%lld] = %d (row %lld) is outside [0, %lld)",
                                 (long long)i, (int)id, (long long)b, (long long)bt->vocab_size);
            if (!kiln_is_finite(bt->logit_bias_values[i]))
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "logit_bias_values[%lld] = %.9g (row %lld, token %d) must be "
                                 "finite",
                                 (long long)i, (double)bt->logit_bias_values[i], (long long)b,
                                 (int)id);
        }
    }
    return KILN_SUCCESS;
}

kiln_status kiln_validate_stage_outputs(const kiln_outputs *o, const kiln_config *cfg)
{
    if (o->num_top_logprobs < 0 || o->num_top_logprobs > cfg->max_top_logprobs)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "outputs.num_top_logprobs = %d is outside [0, %d] (the sampler's "
                         "max_top_logprobs)",
                         (int)o->num_top_logprobs, (int)cfg->max_top_logprobs);
    if (o->num_top_logprobs == 0 &&
        (o->raw_top_ids || o->raw_top_logprobs || o->final_top_ids || o->final_top_logprobs))
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "a top-N output is set but outputs.num_top_logprobs = 0");
    CHECK(check_aligned(o->raw_top_ids, 4, "outputs.raw_top_ids"));
    CHECK(check_aligned(o->raw_top_logprobs, 4, "outputs.raw_top_logprobs"));
    CHECK(check_aligned(o->final_top_ids, 4, "outputs.final_top_ids"));
    CHECK(check_aligned(o->final_top_logprobs, 4, "outputs.final_top_logprobs"));
    CHECK(check_aligned(o->raw_ranks, 4, "outputs.raw_ranks"));
    CHECK(check_aligned(o->entropy, 4, "outputs.entropy"));
    CHECK(check_aligned(o->raw_entropy, 4, "outputs.raw_entropy"));
    CHECK(check_aligned(o->temperatures, 4, "outputs.temperatures"));
    return KILN_SUCCESS;
}

void kiln_add_stage_regions(region_list *list, const kiln_batch *bt, const kiln_outputs *o,
                            int64_t logit_rows, int arrays_on_host)
{
    const uint64_t rows = (uint64_t)bt->num_rows;
    const uint64_t draws = rows * (uint64_t)bt->num_samples;
    const uint64_t top = rows * (uint64_t)o->num_top_logprobs;
    if (bt->allowed_mask)
        add_region(list, "batch.allowed_mask", bt->allowed_mask,
                   (((uint64_t)logit_rows - 1) * (uint64_t)bt->allowed_mask_stride +
                    (uint64_t)((bt->vocab_size + 31) / 32)) * 4,
                   0);
    if (bt->logit_bias_offsets) {
        add_region(list, "batch.logit_bias_offsets", bt->logit_bias_offsets, (rows + 1) * 8, 0);
        if (arrays_on_host) {
            const int64_t n = bt->logit_bias_offsets[rows];
            const uint64_t entries = n > 0 ? (uint64_t)n : 0;
            add_region(list, "batch.logit_bias_ids", bt->logit_bias_ids, entries * 4, 0);
            add_region(list, "batch.logit_bias_values", bt->logit_bias_values, entries * 4, 0);
        }
    }
    add_region(list, "outputs.raw_top_ids", o->raw_top_ids, top * 4, 1);
    add_region(list, "outputs.raw_top_logprobs", o->raw_top_logprobs, top * 4, 1);
    add_region(list, "outputs.final_top_ids", o->final_top_ids, top * 4, 1);
    add_region(list, "outputs.final_top_logprobs", o->final_top_logprobs, top * 4, 1);
    add_region(list, "outputs.raw_ranks", o->raw_ranks, draws * 4, 1);
    add_region(list, "outputs.entropy", o->entropy, rows * 4, 1);
    add_region(list, "outputs.raw_entropy", o->raw_entropy, rows * 4, 1);
    add_region(list, "outputs.temperatures", o->temperatures, rows * 4, 1);
}
