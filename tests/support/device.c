#include "device.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef KILN_TEST_HAVE_CUDART
#include <cuda_runtime_api.h>

int kt_cuda_device_count(const char **why)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
        cudaGetLastError();
        if (why)
            *why = cudaGetErrorString(err);
        return 0;
    }
    if (n == 0 && why)
        *why = "cudaGetDeviceCount found 0 devices";
    return n;
}

void *kt_device_alloc(size_t bytes)
{
    void *p = NULL;
    return cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess ? p : NULL;
}

void kt_device_free(void *p)
{
    cudaFree(p);
}

/* A device copy of `bytes` of host memory (NULL stays NULL). */
static void *upload(const void *host, size_t bytes, void **list, int *count)
{
    if (!host)
        return NULL;
    void *d = kt_device_alloc(bytes);
    if (!d)
        return NULL;
    cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice);
    list[(*count)++] = d;
    return d;
}

static void *scratch(size_t bytes, void **list, int *count)
{
    void *d = kt_device_alloc(bytes);
    if (d) {
        cudaMemset(d, 0xA5, bytes);
        list[(*count)++] = d;
    }
    return d;
}

kiln_status kt_sample_device(kt_sampler *s, const kiln_batch *batch,
                             const kiln_sampling_params *params, kt_result *out)
{
    void *owned[32];
    int n_owned = 0;
    kiln_batch b = *batch;
    kiln_sampling_params p = *params;
    const size_t rows = (size_t)b.num_rows, V = (size_t)b.vocab_size;
    const size_t stride = b.row_stride ? (size_t)b.row_stride : V;
    const size_t esize = b.dtype == KILN_DTYPE_F32 ? 4 : 2;
    b.logits = upload(b.logits, ((rows - 1) * stride + V) * esize, owned, &n_owned);
    if (b.history_offsets) {
        size_t ids = (size_t)b.history_offsets[rows];
        b.history_ids = upload(b.history_ids, ids * 4, owned, &n_owned);
        b.history_offsets = upload(b.history_offsets, (rows + 1) * 8, owned, &n_owned);
    }
    b.prompt_lengths = upload(b.prompt_lengths, rows * 4, owned, &n_owned);
    p.temperature = upload(p.temperature, rows * 4, owned, &n_owned);
    p.top_k = upload(p.top_k, rows * 4, owned, &n_owned);
    p.top_p = upload(p.top_p, rows * 4, owned, &n_owned);
    p.min_p = upload(p.min_p, rows * 4, owned, &n_owned);
    p.repetition_penalty = upload(p.repetition_penalty, rows * 4, owned, &n_owned);
    p.presence_penalty = upload(p.presence_penalty, rows * 4, owned, &n_owned);
    p.frequency_penalty = upload(p.frequency_penalty, rows * 4, owned, &n_owned);
    p.seed = upload(p.seed, rows * 8, owned, &n_owned);
    p.offset = upload(p.offset, rows * 8, owned, &n_owned);

    const size_t draws = rows * (size_t)out->n;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = scratch(draws * 4, owned, &n_owned);
    o.logprobs = scratch(draws * 4, owned, &n_owned);
    o.raw_logprobs = scratch(draws * 4, owned, &n_owned);
    o.probs = scratch(rows * V * 4, owned, &n_owned);
    o.kept_counts = scratch(rows * 4, owned, &n_owned);
    o.valid = scratch(rows, owned, &n_owned);

    kiln_status st = kiln_sample(s->sampler, &b, &p, &o, s->workspace, s->workspace_size, NULL);
    if (st == KILN_SUCCESS) {
        cudaError_t err = cudaDeviceSynchronize();
        if (err != cudaSuccess)
            st = KILN_ERROR_CUDA;
        cudaMemcpy(out->tokens, o.tokens, draws * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->logprobs, o.logprobs, draws * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->raw_logprobs, o.raw_logprobs, draws * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->probs, o.probs, rows * V * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->kept, o.kept_counts, rows * 4, cudaMemcpyDeviceToHost);
        cudaMemcpy(out->valid, o.valid, rows, cudaMemcpyDeviceToHost);
    }
    for (int i = 0; i < n_owned; ++i)
        cudaFree(owned[i]);
    return st;
}

#else /* no CUDA runtime in this build */

int kt_cuda_device_count(const char **why)
{
    if (why)
        *why = "the tests were built without the CUDA runtime";
    return 0;
}

void *kt_device_alloc(size_t bytes)
{
    (void)bytes;
    return NULL;
}

void kt_device_free(void *p)
{
    (void)p;
}

kiln_status kt_sample_device(kt_sampler *s, const kiln_batch *batch,
                             const kiln_sampling_params *params, kt_result *out)
{
    (void)s;
    (void)batch;
    (void)params;
    (void)out;
    return KILN_ERROR_BACKEND_UNAVAILABLE;
}

#endif
