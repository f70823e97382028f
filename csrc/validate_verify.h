/* Validation of kiln_verify_drafts' own arguments: the drafts and their
 * outputs (docs/semantics.md section 19). The batch and parameters go
 * through validate.c like any call's. */
#ifndef KILN_VALIDATE_VERIFY_H
#define KILN_VALIDATE_VERIFY_H

#include "sampler.h"
#include "validate_util.h"

typedef struct kiln_verify_args {
    kiln_drafts drafts;          /* full size */
    kiln_verify_outputs outputs; /* full size */
} kiln_verify_args;

/* NULL checks and the struct_size copies. */
kiln_status kiln_copy_verify_args(const kiln_drafts *drafts, const kiln_verify_outputs *outputs,
                                  kiln_verify_args *out);

/* Required pointers, the probability stride (resolved in place), alignment. */
kiln_status kiln_validate_verify_shapes(kiln_drafts *d, const kiln_verify_outputs *o,
                                        const kiln_batch *bt);

/* Host-visible draft counts, ids and the draft probabilities of the drafts. */
kiln_status kiln_validate_drafts_values(const kiln_drafts *d, const kiln_batch *bt);

void kiln_add_verify_regions(region_list *list, const kiln_drafts *d,
                             const kiln_verify_outputs *o, const kiln_batch *bt);

#endif
