/* The sampler handle and one validated call, shared by the API entry points,
 * the validation and the backends. */
#ifndef KILN_SAMPLER_H
#define KILN_SAMPLER_H

#include "kiln/kiln.h"

struct kiln_sampler {
    kiln_config config;     /* every field resolved (num_threads >= 1 for CPU) */
    size_t workspace_bytes; /* fixed at creation */
    void *cuda;             /* CUDA backend state, NULL for CPU */
};

/* A kiln_sample call after validation: full-size structs (defaults filled in
 * for fields past the caller's struct_size), strides resolved. */
typedef struct kiln_call {
    kiln_batch batch;
    kiln_sampling_params params;
    kiln_outputs outputs;
    void *workspace;
    size_t workspace_size;
    kiln_stream stream;
} kiln_call;

/* Every workspace is carved from an address rounded up to this, so callers
 * may pass any pointer; the size query adds the slack. */
#define KILN_WORKSPACE_ALIGN 256

#endif
