/* Validation of the optional stages a call carries beyond the filters: the
 * allowed-token mask and the logit bias (inputs), and the top-N, rank,
 * entropy and temperature outputs. Called by validate.c. */
#ifndef KILN_VALIDATE_STAGES_H
#define KILN_VALIDATE_STAGES_H

#include "sampler.h"
#include "validate_util.h"

/* Pointer pairing, strides (the mask's is resolved in place) and alignment
 * of the mask and logit-bias inputs. logit_rows: rows of logits (and mask
 * rows), num_rows but for kiln_verify_drafts. */
kiln_status kiln_validate_stage_inputs(kiln_batch *bt, int64_t logit_rows);

/* The logit-bias CSR structure and values; host-visible arrays only. */
kiln_status kiln_validate_logit_bias_values(const kiln_batch *bt);

/* num_top_logprobs against the sampler's limit, and alignment of the
 * stage outputs. */
kiln_status kiln_validate_stage_outputs(const kiln_outputs *o, const kiln_config *cfg);

/* The stage inputs' and outputs' byte ranges, for the overlap check. The
 * bias ids and values are sized from the offsets only when those are host
 * memory. */
void kiln_add_stage_regions(region_list *list, const kiln_batch *bt, const kiln_outputs *o,
                            int64_t logit_rows, int arrays_on_host);

#endif
