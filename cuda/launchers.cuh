/* The launchers behind the CUDA backend, one per kernel file. Each enqueues
 * on `stream` and returns the launch's cudaError_t; none synchronises. */
#ifndef KILN_CUDA_LAUNCHERS_CUH
#define KILN_CUDA_LAUNCHERS_CUH

#include <cuda_runtime.h>

#include "device_call.cuh"
#include "kiln/kiln.h"

/* prepare.cu: penalties, validity, max, masses, sort keys. */
cudaError_t kiln_launch_prepare(const kiln_dev_call &c, cudaStream_t stream);

/* topk_sort.cu: CUB temp storage for one sort chunk, and the sort + cut. */
cudaError_t kiln_sort_temp_bytes(int64_t rows_per_chunk, int64_t vocab, size_t *bytes);
cudaError_t kiln_launch_sort_and_cut(kiln_dev_call c, void *temp, size_t temp_bytes,
                                     cudaStream_t stream);

/* topk_select.cu: the radix-select cut, no sort. kiln_select_cut_configure
 * lets its kernel use its dynamic shared memory (over the 48 KB default) on
 * the current device; called once when a sampler is created, so no sampling
 * call (or captured graph) makes a host-side function-attribute call. */
cudaError_t kiln_select_cut_configure(void);
cudaError_t kiln_launch_select_cut(const kiln_dev_call &c, cudaStream_t stream);

/* cluster_row.cu: the one-kernel path of plain calls (no histories, bias,
 * drafts or score targets). kiln_cluster_row_configure sets its attributes
 * for max_vocab on the current device at sampler creation and says whether
 * its largest cluster fits there (*usable); cudaSuccess with *usable = 0
 * when the device cannot run it (the per-row kernels then serve). */
cudaError_t kiln_cluster_row_configure(int64_t max_vocab, int *usable);
size_t kiln_cluster_row_smem_bytes(int64_t chunk, int32_t ctas);
cudaError_t kiln_launch_cluster_row(const kiln_dev_call &c, cudaStream_t stream);

/* draw.cu: tile sums and probabilities, then the draws. */
cudaError_t kiln_launch_draw(const kiln_dev_call &c, cudaStream_t stream);

/* extras.cu: the final entropy and the raw ranks, after the draws. */
cudaError_t kiln_launch_extras(const kiln_dev_call &c, cudaStream_t stream);

/* verify.cu: kiln_verify_drafts' rule, one block per request, after the
 * prepare and cut kernels ran over the B * (K + 1) target rows. */
cudaError_t kiln_launch_verify(const kiln_dev_call &c, int64_t requests, cudaStream_t stream);

/* best_of_n.cu */
cudaError_t kiln_launch_best_of_n(const float *scores, int64_t num_groups, int32_t n,
                                  int32_t *best, cudaStream_t stream);

/* lm_head.cu: the cuBLAS handle (created with the sampler) and the LM head
 * of kiln_sample_hidden. These return a kiln status with the error set. */
kiln_status kiln_lm_head_create(void **handle);
void kiln_lm_head_destroy(void *handle);
kiln_status kiln_lm_head_run(void *handle, cudaStream_t stream, const kiln_lm_head &head,
                             int64_t rows, int64_t vocab, float *logits, uint16_t *logits_bf16,
                             void *cublas_workspace, size_t cublas_workspace_bytes);

#endif
