#include "device.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char harness_error[256];

const char *kt_error(void)
{
    return harness_error[0] ? harness_error : kiln_last_error();
}

void kt_error_reset(void)
{
    harness_error[0] = 0;
}

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

/* One call's device copies; the first CUDA failure is kept, later steps
 * are skipped. */
typedef struct transfer {
    cudaStream_t stream;
    int async; /* stream-ordered allocation */
    void *owned[32];
    int n_owned;
    cudaError_t err;
    const char *what;
} transfer;

static void note(transfer *t, cudaError_t err, const char *what)
{
    if (t->err == cudaSuccess && err != cudaSuccess) {
        t->err = err;
        t->what = what;
    }
}

static void *alloc(transfer *t, size_t bytes)
{
    if (t->err != cudaSuccess)
        return NULL;
    void *d = NULL;
    bytes = bytes ? bytes : 1;
    note(t, t->async ? cudaMallocAsync(&d, bytes, t->stream) : cudaMalloc(&d, bytes),
         t->async ? "cudaMallocAsync" : "cudaMalloc");
    if (t->err != cudaSuccess)
        return NULL;
    t->owned[t->n_owned++] = d;
    return d;
}

/* A device copy of `bytes` of host memory (NULL stays NULL). */
static void *upload(transfer *t, const void *host, size_t bytes)
{
    if (!host)
        return NULL;
    void *d = alloc(t, bytes);
    if (d)
        note(t, cudaMemcpyAsync(d, host, bytes, cudaMemcpyHostToDevice, t->stream),
             "cudaMemcpyAsync (host to device)");
    return d;
}

/* An output buffer, poisoned so that bytes kiln did not write show. */
static void *scratch(transfer *t, size_t bytes)
{
    void *d = alloc(t, bytes);
    if (d)
        note(t, cudaMemsetAsync(d, 0xA5, bytes, t->stream), "cudaMemsetAsync");
    return d;
}

static void download(transfer *t, void *host, const void *dev, size_t bytes)
{
    if (t->err == cudaSuccess)
        note(t, cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, t->stream),
             "cudaMemcpyAsync (device to host)");
}

static kiln_status run(kt_sampler *s, const kiln_batch *batch, const kiln_sampling_params *params,
                       kt_result *out, cudaStream_t stream, int async)
{
    harness_error[0] = 0;
    transfer t;
    memset(&t, 0, sizeof t);
    t.stream = stream;
    t.async = async;
    kiln_batch b = *batch;
    kiln_sampling_params p = *params;
    const size_t rows = (size_t)b.num_rows, V = (size_t)b.vocab_size;
    const size_t stride = b.row_stride ? (size_t)b.row_stride : V;
    const size_t esize = b.dtype == KILN_DTYPE_F32 ? 4 : 2;
    b.logits = upload(&t, b.logits, ((rows - 1) * stride + V) * esize);
    if (b.history_offsets) {
        size_t ids = (size_t)b.history_offsets[rows];
        b.history_ids = upload(&t, b.history_ids, ids * 4);
        b.history_offsets = upload(&t, b.history_offsets, (rows + 1) * 8);
    }
    b.prompt_lengths = upload(&t, b.prompt_lengths, rows * 4);
    if (b.logit_bias_offsets) {
        const size_t entries = (size_t)b.logit_bias_offsets[rows];
        b.logit_bias_ids = upload(&t, b.logit_bias_ids, entries * 4 + 4);
        b.logit_bias_values = upload(&t, b.logit_bias_values, entries * 4 + 4);
        b.logit_bias_offsets = upload(&t, b.logit_bias_offsets, (rows + 1) * 8);
    }
    if (b.allowed_mask) {
        const size_t words = (V + 31) / 32;
        const size_t mstride = b.allowed_mask_stride ? (size_t)b.allowed_mask_stride : words;
        b.allowed_mask = upload(&t, b.allowed_mask, ((rows - 1) * mstride + words) * 4);
    }
    p.temperature = upload(&t, p.temperature, rows * 4);
    p.top_k = upload(&t, p.top_k, rows * 4);
    p.top_p = upload(&t, p.top_p, rows * 4);
    p.min_p = upload(&t, p.min_p, rows * 4);
    p.repetition_penalty = upload(&t, p.repetition_penalty, rows * 4);
    p.presence_penalty = upload(&t, p.presence_penalty, rows * 4);
    p.frequency_penalty = upload(&t, p.frequency_penalty, rows * 4);
    p.seed = upload(&t, p.seed, rows * 8);
    p.offset = upload(&t, p.offset, rows * 8);

    const size_t draws = rows * (size_t)out->n;
    kiln_outputs o = KILN_OUTPUTS_INIT;
    o.tokens = scratch(&t, draws * 4);
    o.logprobs = scratch(&t, draws * 4);
    o.raw_logprobs = scratch(&t, draws * 4);
    o.probs = scratch(&t, rows * V * 4);
    o.kept_counts = scratch(&t, rows * 4);
    o.valid = scratch(&t, rows);

    kiln_status st = KILN_ERROR_CUDA;
    if (t.err == cudaSuccess) {
        st = kiln_sample(s->sampler, &b, &p, &o, s->workspace, s->workspace_size,
                         (kiln_stream)stream);
        if (st == KILN_SUCCESS) {
            note(&t, cudaGetLastError(), "a kernel launch (cudaGetLastError)");
            download(&t, out->tokens, o.tokens, draws * 4);
            download(&t, out->logprobs, o.logprobs, draws * 4);
            download(&t, out->raw_logprobs, o.raw_logprobs, draws * 4);
            download(&t, out->probs, o.probs, rows * V * 4);
            download(&t, out->kept, o.kept_counts, rows * 4);
            download(&t, out->valid, o.valid, rows);
        }
    }
    for (int i = 0; i < t.n_owned; ++i)
        note(&t, async ? cudaFreeAsync(t.owned[i], stream) : cudaFree(t.owned[i]),
             async ? "cudaFreeAsync" : "cudaFree");
    note(&t, async ? cudaStreamSynchronize(stream) : cudaDeviceSynchronize(),
         async ? "cudaStreamSynchronize" : "cudaDeviceSynchronize");
    if (t.err != cudaSuccess) {
        snprintf(harness_error, sizeof harness_error, "test harness: %s: %s (%s)", t.what,
                 cudaGetErrorName(t.err), cudaGetErrorString(t.err));
        return KILN_ERROR_CUDA;
    }
    return st;
}

kiln_status kt_sample_device(kt_sampler *s, const kiln_batch *batch,
                             const kiln_sampling_params *params, kt_result *out)
{
    return run(s, batch, params, out, NULL, 0);
}

kiln_status kt_sample_device_on(kt_sampler *s, const kiln_batch *batch,
                                const kiln_sampling_params *params, kt_result *out,
                                kiln_stream stream)
{
    return run(s, batch, params, out, (cudaStream_t)stream, 1);
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
    snprintf(harness_error, sizeof harness_error, "the tests were built without the CUDA runtime");
    return KILN_ERROR_BACKEND_UNAVAILABLE;
}

kiln_status kt_sample_device_on(kt_sampler *s, const kiln_batch *batch,
                                const kiln_sampling_params *params, kt_result *out,
                                kiln_stream stream)
{
    (void)stream;
    return kt_sample_device(s, batch, params, out);
}

#endif
