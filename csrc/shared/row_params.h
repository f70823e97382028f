/* One row's sampling parameters, read from the per-row arrays (or the
 * all-rows scalars), and the rule for which values are valid. Shared so the
 * CPU validation and the CUDA kernels agree on both. */
#ifndef KILN_SHARED_ROW_PARAMS_H
#define KILN_SHARED_ROW_PARAMS_H

#include "hd.h"
#include "numerics.h"
#include "kiln/kiln.h"

typedef struct kiln_row_params {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    float repetition;
    float presence;
    float frequency;
    uint64_t seed;
    uint64_t offset;
    float dynatemp_range;
    float dynatemp_exponent;
} kiln_row_params;

/* The parameter that makes a row's values invalid; KILN_FIELD_NONE if none. */
typedef enum kiln_field {
    KILN_FIELD_NONE = 0,
    KILN_FIELD_TEMPERATURE,
    KILN_FIELD_TOP_P,
    KILN_FIELD_MIN_P,
    KILN_FIELD_REPETITION_PENALTY,
    KILN_FIELD_PRESENCE_PENALTY,
    KILN_FIELD_FREQUENCY_PENALTY,
    KILN_FIELD_DYNATEMP_RANGE,
    KILN_FIELD_DYNATEMP_EXPONENT
} kiln_field;

KILN_HD kiln_row_params kiln_row_params_at(const kiln_sampling_params *p, int64_t row)
{
    kiln_row_params r;
    r.temperature = p->temperature ? p->temperature[row] : p->temperature_all;
    r.top_k = p->top_k ? p->top_k[row] : p->top_k_all;
    r.top_p = p->top_p ? p->top_p[row] : p->top_p_all;
    r.min_p = p->min_p ? p->min_p[row] : p->min_p_all;
    r.repetition = p->repetition_penalty ? p->repetition_penalty[row] : p->repetition_penalty_all;
    r.presence = p->presence_penalty ? p->presence_penalty[row] : p->presence_penalty_all;
    r.frequency = p->frequency_penalty ? p->frequency_penalty[row] : p->frequency_penalty_all;
    r.seed = p->seed ? p->seed[row] : p->seed_all;
    r.offset = p->offset ? p->offset[row] : p->offset_all;
    r.dynatemp_range = p->dynatemp_range ? p->dynatemp_range[row] : p->dynatemp_range_all;
    r.dynatemp_exponent =
        p->dynatemp_exponent ? p->dynatemp_exponent[row] : p->dynatemp_exponent_all;
    return r;
}

KILN_HD int kiln_is_finite(float x)
{
    return (kiln_f32_bits(x) & 0x7F800000u) != 0x7F800000u;
}

/* Written as !(in range) so NaN fails every test. */
KILN_HD kiln_field kiln_row_params_fault(const kiln_row_params *r)
{
    if (!kiln_fge(r->temperature, 0.0f) || !kiln_is_finite(r->temperature))
        return KILN_FIELD_TEMPERATURE;
    if (!(kiln_fgt(r->top_p, 0.0f) && kiln_fle(r->top_p, 1.0f)))
        return KILN_FIELD_TOP_P;
    if (!(kiln_fge(r->min_p, 0.0f) && kiln_fle(r->min_p, 1.0f)))
        return KILN_FIELD_MIN_P;
    if (!kiln_fgt(r->repetition, 0.0f) || !kiln_is_finite(r->repetition))
        return KILN_FIELD_REPETITION_PENALTY;
    if (!kiln_is_finite(r->presence))
        return KILN_FIELD_PRESENCE_PENALTY;
    if (!kiln_is_finite(r->frequency))
        return KILN_FIELD_FREQUENCY_PENALTY;
    if (!kiln_fge(r->dynatemp_range, 0.0f) || !kiln_is_finite(r->dynatemp_range))
        return KILN_FIELD_DYNATEMP_RANGE;
    if (!kiln_fgt(r->dynatemp_exponent, 0.0f) || !kiln_is_finite(r->dynatemp_exponent))
        return KILN_FIELD_DYNATEMP_EXPONENT;
    return KILN_FIELD_NONE;
}

/* dynatemp is on for the row (a range of -0 is off, like +0). */
KILN_HD int kiln_dynatemp_on(const kiln_row_params *r)
{
    return kiln_fgt(r->dynatemp_range, 0.0f);
}

/* top-k as a count in [1, V]: k <= 0 or k >= V keep everything. */
KILN_HD int64_t kiln_effective_top_k(int32_t k, int64_t vocab)
{
    return (k <= 0 || k >= vocab) ? vocab : (int64_t)k;
}

#endif
