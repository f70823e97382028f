/* The CUDA backend behind csrc/cuda_backend.h: device checks at creation,
 * the workspace layout, and the launch sequence of one kiln_sample call:
 * prepare -> (segmented sort -> cut) -> tiles -> draws, all on the caller's
 * stream, with no allocation, synchronisation or device-to-host copy. */
#include <stdlib.h>

#include <cuda_runtime.h>

#include "cluster_plan.h"
#include "cuda_backend.h"
#include "error.h"
#include "launchers.cuh"

namespace {

struct cuda_state {
    int device;
    int64_t tiles;          /* per row at max_vocab */
    int64_t rows_per_chunk; /* rows per CUB sort call */
    size_t sort_temp_bytes;
    void *cublas; /* cuBLAS handle for kiln_sample_hidden; NULL when max_hidden == 0 */
    int cluster_usable; /* the device runs cluster_row.cu's clusters for max_vocab */
};

/* cuBLAS's workspace for the LM-head GEMM, a slice of kiln's: NVIDIA
 * recommends 32 MiB on Hopper, and a caller-set workspace is what keeps
 * cuBLAS from allocating during graph capture. */
const size_t cublas_workspace_bytes = (size_t)32 << 20;

/* Byte offsets of the workspace arrays, from an address aligned to
 * KILN_WORKSPACE_ALIGN (the caller's pointer is rounded up; the total
 * includes that slack). */
struct layout {
    size_t row, tile_sums, xbuf, marks, keys0, keys1, ids0, ids1, seg_begin, seg_end, sort_temp;
    size_t total;
};

size_t align_up(size_t v)
{
    return (v + KILN_WORKSPACE_ALIGN - 1) / KILN_WORKSPACE_ALIGN * KILN_WORKSPACE_ALIGN;
}

layout make_layout(const kiln_config &cfg, const cuda_state &st)
{
    const size_t rows = (size_t)cfg.max_batch, V = (size_t)cfg.max_vocab;
    const size_t per_row_tokens = rows * V * 4;
    layout l;
    size_t at = 0;
    auto take = [&at](size_t bytes) {
        size_t here = at;
        at += align_up(bytes);
        return here;
    };
    l.row = take(rows * sizeof(kiln_dev_row));
    l.tile_sums = take(rows * (size_t)st.tiles * 8);
    /* xbuf holds the rows the logit bias or the penalties edit; any call
     * may bring a bias, so it is always there (marks only with histories) */
    const bool history = cfg.max_history > 0;
    l.xbuf = take(per_row_tokens);
    l.marks = history ? take(per_row_tokens) : 0;
    /* only the sort algorithm needs the key/id buffers */
    const bool sort = cfg.algorithm == KILN_ALGORITHM_SORT;
    l.keys0 = sort ? take(per_row_tokens) : 0;
    l.keys1 = sort ? take(per_row_tokens) : 0;
    l.ids0 = sort ? take(per_row_tokens) : 0;
    l.ids1 = sort ? take(per_row_tokens) : 0;
    l.seg_begin = sort ? take(rows * 4) : 0;
    l.seg_end = sort ? take(rows * 4) : 0;
    l.sort_temp = sort ? take(st.sort_temp_bytes) : 0;
    l.total = at + KILN_WORKSPACE_ALIGN;
    return l;
}

kiln_status cuda_fail(const char *what, cudaError_t err)
{
    return kiln_fail(KILN_ERROR_CUDA, "%s: %s (%s)", what, cudaGetErrorName(err),
                     cudaGetErrorString(err));
}

/* Makes `device` current for the scope and restores the caller's. */
struct device_scope {
    int previous = -1;
    cudaError_t err = cudaSuccess;
    explicit device_scope(int device)
    {
        err = cudaGetDevice(&previous);
        if (err == cudaSuccess && previous != device)
            err = cudaSetDevice(device);
    }
    ~device_scope()
    {
        int now = -1;
        if (previous >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous)
            cudaSetDevice(previous);
    }
};

/* The extras kernel, after the draws, when an output needs it. */
kiln_status launch_extras_if_asked(const kiln_dev_call &c, const kiln_call *call,
                                   cudaStream_t stream)
{
    const kiln_outputs &o = call->outputs;
    const bool top_n = o.num_top_logprobs > 0 && (o.raw_top_ids || o.raw_top_logprobs ||
                                                  o.final_top_ids || o.final_top_logprobs);
    if (call->is_score || o.entropy || o.raw_ranks || top_n) {
        const cudaError_t err = kiln_launch_extras(c, stream);
        if (err != cudaSuccess)
            return cuda_fail("extras kernel launch", err);
    }
    return KILN_SUCCESS;
}

} // namespace

/* Host-only: the state and the workspace size of s->config. No CUDA call
 * but CUB's temp-storage query for the sort algorithm. */
extern "C" kiln_status kiln_cuda_configure(kiln_sampler *s)
{
    const kiln_config &cfg = s->config;
    if (cfg.max_batch * cfg.max_samples > ((int64_t)1 << 40))
        return kiln_fail(KILN_ERROR_INVALID_CONFIG,
                         "config.max_batch * max_samples = %lld is over 2^40",
                         (long long)(cfg.max_batch * cfg.max_samples));
    cuda_state st;
    st.device = cfg.device;
    st.tiles = (cfg.max_vocab + KILN_TILE - 1) / KILN_TILE;
    const int64_t fit = (int64_t)0x7FFFFFFF / cfg.max_vocab; /* CUB counts items in int */
    st.rows_per_chunk = cfg.max_batch < fit ? cfg.max_batch : fit;
    st.sort_temp_bytes = 0;
    st.cublas = nullptr;
    st.cluster_usable = 0; /* kiln_cuda_create asks the device */
    if (cfg.algorithm == KILN_ALGORITHM_SORT) {
        cudaError_t err =
            kiln_sort_temp_bytes(st.rows_per_chunk, cfg.max_vocab, &st.sort_temp_bytes);
        if (err != cudaSuccess)
            return cuda_fail("cub::DeviceSegmentedRadixSort temp storage query", err);
    }
    cuda_state *heap = (cuda_state *)malloc(sizeof *heap);
    if (!heap)
        return kiln_fail(KILN_ERROR_OUT_OF_MEMORY, "could not allocate the CUDA sampler state");
    *heap = st;
    s->cuda = heap;
    s->lm_head_bytes =
        cfg.max_hidden > 0 ? kiln_lm_head_logits_bytes(&cfg) + cublas_workspace_bytes : 0;
    s->workspace_bytes = s->lm_head_bytes + make_layout(cfg, st).total;
    return KILN_SUCCESS;
}

extern "C" kiln_status kiln_cuda_create(kiln_sampler *s)
{
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        cudaGetLastError(); /* not sticky: clear it for the caller */
        return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE, "no CUDA device: %s",
                         err == cudaSuccess ? "cudaGetDeviceCount found 0"
                                            : cudaGetErrorString(err));
    }
    const kiln_config &cfg = s->config;
    if (cfg.device < 0 || cfg.device >= count)
        return kiln_fail(KILN_ERROR_BACKEND_UNAVAILABLE,
                         "config.device = %d, but there are %d CUDA devices", cfg.device, count);
    device_scope scope(cfg.device);
    if (scope.err != cudaSuccess)
        return cuda_fail("cudaSetDevice", scope.err);
    kiln_status status = kiln_cuda_configure(s);
    if (status != KILN_SUCCESS)
        return status;
    err = kiln_select_cut_configure();
    if (err != cudaSuccess) {
        free(s->cuda);
        s->cuda = nullptr;
        return cuda_fail("cudaFuncSetAttribute (select kernel shared memory)", err);
    }
    err = kiln_cluster_row_configure(cfg.max_vocab, &((cuda_state *)s->cuda)->cluster_usable);
    if (err != cudaSuccess) {
        free(s->cuda);
        s->cuda = nullptr;
        return cuda_fail("cluster kernel attributes", err);
    }
    if (cfg.max_hidden > 0) {
        status = kiln_lm_head_create(&((cuda_state *)s->cuda)->cublas);
        if (status != KILN_SUCCESS) {
            free(s->cuda);
            s->cuda = nullptr;
            return status;
        }
    }
    return KILN_SUCCESS;
}

extern "C" void kiln_cuda_destroy(kiln_sampler *s)
{
    cuda_state *st = (cuda_state *)s->cuda;
    if (st && st->cublas) {
        device_scope scope(st->device);
        kiln_lm_head_destroy(st->cublas);
    }
    free(s->cuda);
    s->cuda = nullptr;
}

extern "C" kiln_status kiln_cuda_sample(const kiln_sampler *s, const kiln_call *call)
{
    const cuda_state &st = *(const cuda_state *)s->cuda;
    const layout l = make_layout(s->config, st);
    char *ws = (char *)(((uintptr_t)call->workspace + KILN_WORKSPACE_ALIGN - 1) &
                        ~(uintptr_t)(KILN_WORKSPACE_ALIGN - 1));
    const kiln_batch &bt = call->batch;
    const kiln_sampling_params &p = call->params;

    kiln_dev_call c = {};
    c.logits = bt.logits;
    c.dtype = (int)bt.dtype;
    c.rows = bt.num_rows;
    c.vocab = bt.vocab_size;
    c.row_stride = bt.row_stride;
    c.num_samples = bt.num_samples;
    c.history_offsets = bt.history_offsets;
    c.history_ids = bt.history_ids;
    c.prompt_lengths = bt.prompt_lengths;
    c.max_history = s->config.max_history;
    c.allowed_mask = bt.allowed_mask;
    c.allowed_mask_stride = bt.allowed_mask_stride;
    c.bias_offsets = bt.logit_bias_offsets;
    c.bias_ids = bt.logit_bias_ids;
    c.bias_values = bt.logit_bias_values;
    c.is_verify = call->is_verify;
    if (call->is_verify) {
        c.max_drafts = call->drafts.max_drafts;
        c.draft_ids = call->drafts.draft_ids;
        c.num_drafts = call->drafts.num_drafts;
        c.draft_probs = call->drafts.draft_probs;
        c.draft_probs_stride = call->drafts.draft_probs_stride;
        c.verify = call->verify;
        /* the kernels before the rule see the B * (K + 1) target rows */
        c.rows = bt.num_rows * ((int64_t)call->drafts.max_drafts + 1);
    }
    c.is_score = call->is_score;
    c.targets = call->targets;
    c.num_targets = call->num_targets;
    c.target_logprobs = call->target_logprobs;
    c.target_ranks = call->target_ranks;
    c.params = p;
    c.out = call->outputs;
    c.row = (kiln_dev_row *)(ws + l.row);
    c.tile_sums = (uint64_t *)(ws + l.tile_sums);
    c.tiles = (bt.vocab_size + KILN_TILE - 1) / KILN_TILE;
    c.xbuf = (float *)(ws + l.xbuf);
    c.marks = s->config.max_history > 0 ? (uint32_t *)(ws + l.marks) : nullptr;
    /* A cut kernel runs unless the host can see that no row uses top-k or
     * top-p. AUTO is the select path: it reads each row a few times from
     * cache where the sort writes and re-reads 16 bytes per token. */
    c.order = !call->is_score &&
              (p.top_k != nullptr || kiln_effective_top_k(p.top_k_all, bt.vocab_size) < bt.vocab_size ||
               p.top_p != nullptr || p.top_p_all < 1.0f);
    c.sort = c.order && s->config.algorithm == KILN_ALGORITHM_SORT;
    const bool sort_buffers = s->config.algorithm == KILN_ALGORITHM_SORT;
    c.keys[0] = sort_buffers ? (uint32_t *)(ws + l.keys0) : nullptr;
    c.keys[1] = sort_buffers ? (uint32_t *)(ws + l.keys1) : nullptr;
    c.ids[0] = sort_buffers ? (int32_t *)(ws + l.ids0) : nullptr;
    c.ids[1] = sort_buffers ? (int32_t *)(ws + l.ids1) : nullptr;
    c.keys_sorted = c.keys[0];
    c.ids_sorted = c.ids[0];
    c.seg_begin = sort_buffers ? (int32_t *)(ws + l.seg_begin) : nullptr;
    c.seg_end = sort_buffers ? (int32_t *)(ws + l.seg_end) : nullptr;
    /* Chunks must hold rows * V < 2^31 for this call's V too. */
    const int64_t fit = (int64_t)0x7FFFFFFF / bt.vocab_size;
    c.rows_per_chunk = st.rows_per_chunk < fit ? st.rows_per_chunk : fit;
    if (s->sort_chunk_rows_cap > 0 && c.rows_per_chunk > s->sort_chunk_rows_cap)
        c.rows_per_chunk = s->sort_chunk_rows_cap;

    /* Calls whose rows need no xbuf edits take the one-kernel cluster
     * path: one read of the logits (docs/performance.md). The host sees
     * everything this needs: histories and bias are per call. */
    const kiln_cluster_plan plan = kiln_cluster_plan_for(bt.vocab_size);
    c.cluster_ctas = plan.ctas;
    c.cluster_chunk = plan.chunk;
    const bool cluster = st.cluster_usable && !s->cuda_cluster_off && !call->is_verify &&
                         !call->is_score && s->config.algorithm != KILN_ALGORITHM_SORT &&
                         bt.history_offsets == nullptr && bt.logit_bias_offsets == nullptr;

    device_scope scope(st.device);
    if (scope.err != cudaSuccess)
        return cuda_fail("cudaSetDevice", scope.err);
    cudaStream_t stream = (cudaStream_t)call->stream;
    cudaError_t err;
    if (cluster) {
        err = kiln_launch_cluster_row(c, stream);
        if (err != cudaSuccess)
            return cuda_fail("cluster kernel launch", err);
        return launch_extras_if_asked(c, call, stream);
    }
    err = kiln_launch_prepare(c, stream);
    if (err != cudaSuccess)
        return cuda_fail("prepare kernel launch", err);
    if (c.sort) {
        err = kiln_launch_sort_and_cut(c, ws + l.sort_temp, st.sort_temp_bytes, stream);
        if (err != cudaSuccess)
            return cuda_fail("segmented sort / cut kernel launch", err);
    } else if (c.order) {
        err = kiln_launch_select_cut(c, stream);
        if (err != cudaSuccess)
            return cuda_fail("radix-select cut kernel launch", err);
    }
    if (call->is_verify) {
        err = kiln_launch_verify(c, bt.num_rows, stream);
        if (err != cudaSuccess)
            return cuda_fail("verify kernel launch", err);
        return KILN_SUCCESS;
    }
    if (!call->is_score) { /* kiln_score draws nothing */
        err = kiln_launch_draw(c, stream);
        if (err != cudaSuccess)
            return cuda_fail("draw kernel launch", err);
    }
    return launch_extras_if_asked(c, call, stream);
}

extern "C" kiln_status kiln_cuda_sample_hidden(const kiln_sampler *s, const kiln_lm_head *head,
                                               const kiln_call *call, float *logits,
                                               uint16_t *logits_bf16)
{
    const cuda_state &st = *(const cuda_state *)s->cuda;
    /* api.c put the logits at the front of the lm-head part; cuBLAS's
     * workspace follows them (kiln_cuda_create sized it). */
    char *cublas_ws = (char *)logits + kiln_lm_head_logits_bytes(&s->config);
    {
        device_scope scope(st.device);
        if (scope.err != cudaSuccess)
            return cuda_fail("cudaSetDevice", scope.err);
        kiln_status status = kiln_lm_head_run(st.cublas, (cudaStream_t)call->stream, *head,
                                              call->batch.num_rows, call->batch.vocab_size,
                                              logits, logits_bf16, cublas_ws,
                                              cublas_workspace_bytes);
        if (status != KILN_SUCCESS)
            return status;
    }
    return kiln_cuda_sample(s, call);
}

extern "C" kiln_status kiln_cuda_best_of_n(const kiln_sampler *s, const float *scores,
                                           int64_t num_groups, int32_t n, int32_t *best,
                                           kiln_stream stream)
{
    const cuda_state &st = *(const cuda_state *)s->cuda;
    device_scope scope(st.device);
    if (scope.err != cudaSuccess)
        return cuda_fail("cudaSetDevice", scope.err);
    cudaError_t err = kiln_launch_best_of_n(scores, num_groups, n, best, (cudaStream_t)stream);
    if (err != cudaSuccess)
        return cuda_fail("best-of-n kernel launch", err);
    return KILN_SUCCESS;
}
