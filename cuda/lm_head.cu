/* The CUDA LM head of kiln_sample_hidden: one cuBLAS GEMM into the
 * workspace logits, then (when asked) a pass adding the bias and writing
 * bf16. The handle is the sampler's; each call binds it to the caller's
 * stream and to a slice of kiln's workspace, so the call allocates nothing,
 * never synchronises, and can be captured in a CUDA graph. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "error.h"
#include "launchers.cuh"
#include "shared/numerics.h"

namespace {

kiln_status cublas_fail(const char *what, cublasStatus_t st)
{
    return kiln_fail(KILN_ERROR_CUDA, "%s: %s (%s)", what, cublasGetStatusName(st),
                     cublasGetStatusString(st));
}

cudaDataType_t cuda_type(kiln_dtype d)
{
    switch (d) {
    case KILN_DTYPE_F16: return CUDA_R_16F;
    case KILN_DTYPE_BF16: return CUDA_R_16BF;
    case KILN_DTYPE_F32: break;
    }
    return CUDA_R_32F;
}

/* y = logits + bias (f32, unfused), then kept as f32 in place or rounded to
 * bf16 with the CPU backend's rounding (numerics.h). */
__global__ void finish_logits(float *logits, uint16_t *logits_bf16, const float *bias,
                              int64_t rows, int64_t vocab)
{
    const int64_t total = rows * vocab;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        float y = logits[i];
        if (bias)
            y = kiln_fadd(y, bias[i % vocab]);
        if (logits_bf16)
            logits_bf16[i] = kiln_f32_to_bf16(y);
        else
            logits[i] = y;
    }
}

} // namespace

kiln_status kiln_lm_head_create(void **handle)
{
    cublasHandle_t h = nullptr;
    cublasStatus_t st = cublasCreate(&h);
    if (st != CUBLAS_STATUS_SUCCESS)
        return st == CUBLAS_STATUS_ALLOC_FAILED ? kiln_fail(KILN_ERROR_OUT_OF_MEMORY,
                                                            "cublasCreate could not allocate")
                                                : cublas_fail("cublasCreate", st);
    /* alpha and beta are host scalars; the default math mode keeps f32
     * inputs on f32 arithmetic (no TF32 rounding of the operands). */
    st = cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST);
    if (st != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(h);
        return cublas_fail("cublasSetPointerMode", st);
    }
    *handle = h;
    return KILN_SUCCESS;
}

void kiln_lm_head_destroy(void *handle)
{
    if (handle)
        cublasDestroy((cublasHandle_t)handle);
}

kiln_status kiln_lm_head_run(void *handle, cudaStream_t stream, const kiln_lm_head &head,
                             int64_t rows, int64_t vocab, float *logits, uint16_t *logits_bf16,
                             void *cublas_workspace, size_t cublas_workspace_bytes)
{
    cublasHandle_t h = (cublasHandle_t)handle;
    if (rows > 0x7FFFFFFF)
        return kiln_fail(KILN_ERROR_INVALID_SHAPE,
                         "batch.num_rows = %lld is over cuBLAS's int limit", (long long)rows);
    /* SetStream resets the handle's workspace to cuBLAS's own pool, so the
     * workspace is set after it, every call. */
    cublasStatus_t st = cublasSetStream(h, stream);
    if (st != CUBLAS_STATUS_SUCCESS)
        return cublas_fail("cublasSetStream", st);
    st = cublasSetWorkspace(h, cublas_workspace, cublas_workspace_bytes);
    if (st != CUBLAS_STATUS_SUCCESS)
        return cublas_fail("cublasSetWorkspace", st);
    /* Row-major logits [B, V] are column-major V x B (ld V); row-major
     * weight [V, H] is column-major H x V (ld H), transposed to V x H;
     * row-major hidden [B, stride] is column-major H x B (ld stride). */
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t t = cuda_type(head.dtype);
    st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)vocab, (int)rows, (int)head.hidden_size,
                      &alpha, head.weight, t, (int)head.hidden_size, head.hidden, t,
                      (int)head.hidden_stride, &beta, logits, CUDA_R_32F, (int)vocab,
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS)
        return cublas_fail("cublasGemmEx (LM head)", st);
    const bool bf16 = head.logits_dtype == KILN_DTYPE_BF16;
    if (head.bias || bf16) {
        const int64_t total = rows * vocab;
        int64_t blocks = (total + 255) / 256;
        if (blocks > 65536)
            blocks = 65536;
        finish_logits<<<(unsigned)blocks, 256, 0, stream>>>(logits, bf16 ? logits_bf16 : nullptr,
                                                            head.bias, rows, vocab);
        cudaError_t err = cudaGetLastError();
        if (err != cudaSuccess)
            return kiln_fail(KILN_ERROR_CUDA, "LM-head bias/bf16 kernel launch: %s (%s)",
                             cudaGetErrorName(err), cudaGetErrorString(err));
    }
    return KILN_SUCCESS;
}
