/* The sort path of top-k / top-p / min-p: CUB's stable segmented radix sort
 * of the canonical keys (descending; equal keys keep ascending ids, so the
 * result is exactly the canonical order), then one block per row walks the
 * sorted prefix with exact integer sums to find the cut. */
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "device_call.cuh"
#include "launchers.cuh"

namespace {

constexpr int kThreads = 256;
constexpr int kItems = 8; /* consecutive sorted entries per thread per chunk */

using scan_u64 = cub::BlockScan<unsigned long long, kThreads>;
using reduce_u64 = cub::BlockReduce<unsigned long long, kThreads>;

union cut_storage {
    scan_u64::TempStorage scan;
    reduce_u64::TempStorage sum;
};

__device__ uint64_t block_sum(uint64_t v, cut_storage &tmp, uint64_t &slot)
{
    uint64_t s = reduce_u64(tmp.sum).Sum((unsigned long long)v);
    if (threadIdx.x == 0)
        slot = s;
    __syncthreads();
    s = slot;
    __syncthreads();
    return s;
}

__global__ void __launch_bounds__(kThreads) cut_kernel(const kiln_dev_call c)
{
    __shared__ cut_storage tmp;
    __shared__ uint64_t slot;
    __shared__ int found; /* an index < k <= V < 2^24: a native 32-bit shared atomicMin */
    const int64_t b = blockIdx.x;
    kiln_dev_row &row = c.row[b];
    if (row.status != KILN_ROW_SAMPLE || !row.need_order)
        return;
    const uint32_t *keys = c.keys_sorted + b * c.vocab;
    const int32_t *ids = c.ids_sorted + b * c.vocab;
    const float m = row.max, cexp = row.exp2_factor;
    const int64_t k = row.top_k;

    /* The mass of a sorted entry comes back from its key: the key is the
     * logit's bits (up to the sign of zero, which does not change the mass). */
    uint64_t mass_k = 0;
    for (int64_t i = threadIdx.x; i < k; i += kThreads)
        mass_k += kiln_mass(kiln_key_to_float(keys[i]), m, cexp);
    mass_k = block_sum(mass_k, tmp, slot);

    int64_t len = k;
    if (kiln_flt(row.top_p, 1.0f)) {
        /* Shortest prefix whose mass reaches need: chunks of kThreads * kItems
         * consecutive entries, a block scan of per-thread sums, then each
         * thread walks its own entries. need <= mass_k, so it is found. */
        const uint64_t need = kiln_ceil_scale(row.top_p, mass_k);
        if (threadIdx.x == 0)
            found = (int)k;
        __syncthreads();
        uint64_t base = 0;
        for (int64_t start = 0; start < k; start += (int64_t)kThreads * kItems) {
            uint64_t w[kItems];
            uint64_t mine = 0;
            const int64_t first = start + (int64_t)threadIdx.x * kItems;
#pragma unroll
            for (int j = 0; j < kItems; ++j) {
                const int64_t i = first + j;
                w[j] = i < k ? kiln_mass(kiln_key_to_float(keys[i]), m, cexp) : 0;
                mine += w[j];
            }
            unsigned long long before, chunk_total;
            scan_u64(tmp.scan).ExclusiveSum((unsigned long long)mine, before, chunk_total);
            uint64_t cum = base + before;
#pragma unroll
            for (int j = 0; j < kItems; ++j) {
                cum += w[j];
                if (first + j < k && cum >= need) {
                    atomicMin(&found, (int)(first + j));
                    break;
                }
            }
            __syncthreads();
            if (found < k)
                break;
            base += chunk_total;
        }
        len = found + 1;
    }

    /* The kept set: the prefix [0, len) minus tokens under the min-p mass
     * (a suffix of it, masses being monotone along the canonical order). */
    const uint64_t lo = row.min_mass;
    uint64_t kept = 0, kept_mass = 0;
    for (int64_t i = threadIdx.x; i < len; i += kThreads) {
        const uint64_t w = kiln_mass(kiln_key_to_float(keys[i]), m, cexp);
        if (w >= lo) {
            kept += 1;
            kept_mass += w;
        }
    }
    kept = block_sum(kept, tmp, slot);
    kept_mass = block_sum(kept_mass, tmp, slot);
    if (threadIdx.x == 0) {
        row.cut_key = keys[len - 1];
        row.cut_id = ids[len - 1];
        row.total = kept_mass;
        row.kept = (int32_t)kept;
        row.log_s = kiln_log_mass(kept_mass);
        row.inv_s = kiln_ddiv(1.0, kiln_u64_to_f64(kept_mass));
    }
}

} // namespace

cudaError_t kiln_sort_temp_bytes(int64_t rows_per_chunk, int64_t vocab, size_t *bytes)
{
    /* The DoubleBuffer form may overwrite its input, so CUB needs no
     * alternate buffers of its own: the temp storage stays small. */
    cub::DoubleBuffer<uint32_t> keys(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
    *bytes = 0;
    return cub::DeviceSegmentedRadixSort::SortPairsDescending(
        nullptr, *bytes, keys, ids, (int)(rows_per_chunk * vocab), (int)rows_per_chunk,
        (const int32_t *)nullptr, (const int32_t *)nullptr, 0, 32, (cudaStream_t)0);
}

cudaError_t kiln_launch_sort_and_cut(kiln_dev_call c, void *temp, size_t temp_bytes,
                                     cudaStream_t stream)
{
    int selector = 0;
    for (int64_t first = 0; first < c.rows; first += c.rows_per_chunk) {
        const int64_t n = c.rows - first < c.rows_per_chunk ? c.rows - first : c.rows_per_chunk;
        const int64_t base = first * c.vocab;
        cub::DoubleBuffer<uint32_t> keys(c.keys[0] + base, c.keys[1] + base);
        cub::DoubleBuffer<int32_t> ids(c.ids[0] + base, c.ids[1] + base);
        size_t need = 0;
        cudaError_t err = cub::DeviceSegmentedRadixSort::SortPairsDescending(
            nullptr, need, keys, ids, (int)(n * c.vocab), (int)n, c.seg_begin + first,
            c.seg_end + first, 0, 32, stream);
        if (err == cudaSuccess && need > temp_bytes)
            err = cudaErrorInvalidValue; /* the creation-time query was too small */
        if (err == cudaSuccess)
            err = cub::DeviceSegmentedRadixSort::SortPairsDescending(
                temp, temp_bytes, keys, ids, (int)(n * c.vocab), (int)n, c.seg_begin + first,
                c.seg_end + first, 0, 32, stream);
        if (err != cudaSuccess)
            return err;
        /* Every chunk sorts the same 32 bits in the same number of passes,
         * so the result lands in the same buffer for all of them. */
        selector = keys.selector;
    }
    c.keys_sorted = c.keys[selector];
    c.ids_sorted = c.ids[selector];
    cut_kernel<<<(unsigned)c.rows, kThreads, 0, stream>>>(c);
    return cudaGetLastError();
}
