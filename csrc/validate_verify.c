#include "validate_verify.h"

#include <stddef.h>
#include <string.h>

#include "shared/speculative.h"

#define END(T, f) offsetof(T, f)
static const size_t drafts_sizes[] = {
    END(kiln_drafts, max_drafts), END(kiln_drafts, draft_ids), END(kiln_drafts, num_drafts),
    END(kiln_drafts, draft_probs), END(kiln_drafts, draft_probs_stride), sizeof(kiln_drafts)
};
static const size_t verify_outputs_sizes[] = {
    END(kiln_verify_outputs, tokens), END(kiln_verify_outputs, num_accepted),
    END(kiln_verify_outputs, logprobs), END(kiln_verify_outputs, valid),
    sizeof(kiln_verify_outputs)
};
#undef END

static kiln_status copy_sized(void *dst, const void *src, const size_t *sizes, size_t count,
                              const char *type)
{
    size_t given;
    memcpy(&given, src, sizeof given);
    for (size_t i = 0; i < count; ++i)
        if (given == sizes[i]) {
            memcpy(dst, src, given);
            return KILN_SUCCESS;
        }
    return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                     "%s.struct_size = %zu is not a size this library knows (the whole struct "
                     "is %zu bytes; start from the %s initializer macro)",
                     type, given, sizes[count - 1], type);
}

kiln_status kiln_copy_verify_args(const kiln_drafts *drafts, const kiln_verify_outputs *outputs,
                                  kiln_verify_args *out)
{
    if (!drafts)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "drafts is NULL");
    if (!outputs)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "outputs is NULL");
    const kiln_drafts ddef = KILN_DRAFTS_INIT;
    const kiln_verify_outputs odef = KILN_VERIFY_OUTPUTS_INIT;
    out->drafts = ddef;
    out->outputs = odef;
    CHECK(copy_sized(&out->drafts, drafts, drafts_sizes,
                     sizeof drafts_sizes / sizeof drafts_sizes[0], "kiln_drafts"));
    return copy_sized(&out->outputs, outputs, verify_outputs_sizes,
                      sizeof verify_outputs_sizes / sizeof verify_outputs_sizes[0],
                      "kiln_verify_outputs");
}

kiln_status kiln_validate_verify_shapes(kiln_drafts *d, const kiln_verify_outputs *o,
                                        const kiln_batch *bt)
{
    if (!o->tokens)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "outputs.tokens is NULL");
    if (d->max_drafts > 0 && !d->draft_ids)
        return kiln_fail(KILN_ERROR_NULL_POINTER, "drafts.draft_ids is NULL but max_drafts = %d",
                         (int)d->max_drafts);
    if (d->draft_probs) {
        if (d->draft_probs_stride == 0)
            d->draft_probs_stride = bt->vocab_size;
        const int64_t rows = bt->num_rows * (int64_t)(d->max_drafts > 0 ? d->max_drafts : 1);
        if (d->draft_probs_stride < bt->vocab_size ||
            d->draft_probs_stride > (INT64_MAX / 4 - bt->vocab_size) / rows)
            return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                             "drafts.draft_probs_stride = %lld is outside [vocab_size = %lld, "
                             "2^63 / (rows * max_drafts * 4)]",
                             (long long)d->draft_probs_stride, (long long)bt->vocab_size);
    }
    CHECK(check_aligned(d->draft_ids, 4, "drafts.draft_ids"));
    CHECK(check_aligned(d->num_drafts, 4, "drafts.num_drafts"));
    CHECK(check_aligned(d->draft_probs, 4, "drafts.draft_probs"));
    CHECK(check_aligned(o->tokens, 4, "outputs.tokens"));
    CHECK(check_aligned(o->num_accepted, 4, "outputs.num_accepted"));
    CHECK(check_aligned(o->logprobs, 4, "outputs.logprobs"));
    return KILN_SUCCESS;
}

kiln_status kiln_validate_drafts_values(const kiln_drafts *d, const kiln_batch *bt)
{
    const int64_t K = d->max_drafts;
    for (int64_t b = 0; b < bt->num_rows; ++b) {
        const int32_t kb = d->num_drafts ? d->num_drafts[b] : (int32_t)K;
        if (kb < 0 || kb > K)
            return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                             "drafts.num_drafts[%lld] = %d is outside [0, max_drafts = %lld]",
                             (long long)b, (int)kb, (long long)K);
        for (int32_t i = 0; i < kb; ++i) {
            const int32_t id = d->draft_ids[b * K + i];
            if (id < 0 || id >= bt->vocab_size)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "drafts.draft_ids[%lld] = %d (request %lld, position %d) is "
                                 "outside [0, %lld)",
                                 (long long)(b * K + i), (int)id, (long long)b, (int)i,
                                 (long long)bt->vocab_size);
            if (!d->draft_probs)
                continue;
            const float q = d->draft_probs[(b * K + i) * d->draft_probs_stride + id];
            if (!kiln_is_probability(q) || q == 0.0f)
                return kiln_fail(KILN_ERROR_INVALID_PARAMETER,
                                 "drafts.draft_probs[request %lld, position %d, token %d] = %.9g: "
                                 "the draft's own probability must be in (0, 1]",
                                 (long long)b, (int)i, (int)id, (double)q);
        }
    }
    return KILN_SUCCESS;
}

void kiln_add_verify_regions(region_list *list, const kiln_drafts *d,
                             const kiln_verify_outputs *o, const kiln_batch *bt)
{
    const uint64_t B = (uint64_t)bt->num_rows, K = (uint64_t)d->max_drafts;
    add_region(list, "drafts.draft_ids", d->draft_ids, B * K * 4, 0);
    add_region(list, "drafts.num_drafts", d->num_drafts, B * 4, 0);
    if (d->draft_probs && K > 0)
        add_region(list, "drafts.draft_probs", d->draft_probs,
                   ((B * K - 1) * (uint64_t)d->draft_probs_stride + (uint64_t)bt->vocab_size) * 4,
                   0);
    add_region(list, "outputs.tokens", o->tokens, B * (K + 1) * 4, 1);
    add_region(list, "outputs.num_accepted", o->num_accepted, B * 4, 1);
    add_region(list, "outputs.logprobs", o->logprobs, B * (K + 1) * 4, 1);
    add_region(list, "outputs.valid", o->valid, B, 1);
}
