/* The draw: kept mass per tile of KILN_TILE tokens (and the final
 * probabilities on the way), then one warp per (row, draw) that finds the
 * tile holding r and the token inside it by warp scans in ascending id
 * order, exactly as docs/semantics.md section 7 defines. */
#include <cub/block/block_reduce.cuh>

#include "curand_draw.cuh"
#include "device_call.cuh"
#include "launchers.cuh"

namespace {

constexpr int kTileThreads = 256;
constexpr int kDrawThreads = 256;
constexpr unsigned kFull = 0xFFFFFFFFu;

using reduce_u64 = cub::BlockReduce<unsigned long long, kTileThreads>;

template <int DTYPE>
__global__ void __launch_bounds__(kTileThreads) tile_kernel(const kiln_dev_call c)
{
    __shared__ reduce_u64::TempStorage tmp;
    const int64_t blocks = c.rows * c.tiles;
    for (int64_t blk = blockIdx.x; blk < blocks; blk += gridDim.x) {
        const int64_t b = blk / c.tiles, t = blk % c.tiles;
        const int64_t begin = t * KILN_TILE;
        const int64_t end = begin + KILN_TILE < c.vocab ? begin + KILN_TILE : c.vocab;
        const kiln_dev_row row = c.row[b];
        float *probs = c.out.probs ? c.out.probs + b * c.out.probs_row_stride : nullptr;
        uint64_t sum = 0;
        if (row.status == KILN_ROW_SAMPLE) {
            for (int64_t i = begin + threadIdx.x; i < end; i += kTileThreads) {
                const float x = kiln_load<DTYPE>(c, b, row.penalised, i);
                const uint64_t w = kiln_mass(x, row.max, row.exp2_factor);
                const bool kept = kiln_is_kept(row, x, i, w);
                sum += kept ? w : 0;
                if (probs)
                    probs[i] = kept ? kiln_prob(w, row.inv_s) : 0.0f;
            }
        } else if (probs) {
            const int64_t one = row.status == KILN_ROW_GREEDY ? row.argmax : -1;
            for (int64_t i = begin + threadIdx.x; i < end; i += kTileThreads)
                probs[i] = i == one ? 1.0f : 0.0f;
        }
        sum = reduce_u64(tmp).Sum((unsigned long long)sum);
        if (threadIdx.x == 0)
            c.tile_sums[b * c.tiles + t] = sum;
        __syncthreads();
    }
}

__device__ __forceinline__ uint64_t warp_inclusive_sum(uint64_t v, int lane)
{
    for (int d = 1; d < 32; d <<= 1) {
        const uint64_t up = __shfl_up_sync(kFull, (unsigned long long)v, d);
        if (lane >= d)
            v += up;
    }
    return v;
}


template <int DTYPE>
__global__ void __launch_bounds__(kDrawThreads) draw_kernel(const kiln_dev_call c)
{
    const int lane = threadIdx.x & 31;
    const int64_t warps = c.rows * c.num_samples;
    const int64_t warps_per_grid = (int64_t)gridDim.x * (kDrawThreads / 32);
    for (int64_t gw = (int64_t)blockIdx.x * (kDrawThreads / 32) + threadIdx.x / 32; gw < warps;
         gw += warps_per_grid) {
        const int64_t b = gw / c.num_samples, j = gw % c.num_samples;
        const kiln_dev_row row = c.row[b];
        const int64_t at = gw; /* tokens[b * n + j] */
        if (row.status != KILN_ROW_SAMPLE) {
            if (lane == 0) {
                const bool greedy = row.status == KILN_ROW_GREEDY;
                const float nan = __uint_as_float(0x7FC00000u);
                c.out.tokens[at] = greedy ? row.argmax : -1;
                if (c.out.logprobs)
                    c.out.logprobs[at] = greedy ? 0.0f : nan;
                if (c.out.raw_logprobs)
                    c.out.raw_logprobs[at] =
                        greedy ? kiln_logprob(kiln_load<DTYPE>(c, b, row.penalised, row.argmax),
                                              row.max, 1.0f, row.log_s1)
                               : nan;
                if (j == 0) {
                    if (c.out.kept_counts)
                        c.out.kept_counts[b] = greedy ? 1 : 0;
                    if (c.out.valid)
                        c.out.valid[b] = greedy ? 1 : 0;
                }
            }
            continue;
        }
        const kiln_row_params p = kiln_row_params_at(&c.params, b);
        const uint64_t u = curand_draw64(p.seed, (uint64_t)j, p.offset);
        const uint64_t r = kiln_scale_draw(u, row.total);

        /* the tile: first whose inclusive prefix of tile sums exceeds r */
        const uint64_t *sums = c.tile_sums + b * c.tiles;
        uint64_t base = 0;
        int64_t tile = c.tiles - 1;
        for (int64_t t0 = 0; t0 < c.tiles; t0 += 32) {
            const int64_t t = t0 + lane;
            const uint64_t v = t < c.tiles ? sums[t] : 0;
            const uint64_t incl = warp_inclusive_sum(v, lane);
            const unsigned hit = __ballot_sync(kFull, t < c.tiles && base + incl > r);
            if (hit) {
                const int l = __ffs(hit) - 1;
                tile = t0 + l;
                base += __shfl_sync(kFull, (unsigned long long)(incl - v), l);
                break;
            }
            base += __shfl_sync(kFull, (unsigned long long)incl, 31);
        }

        /* the token inside the tile, 32 ids at a time */
        const int64_t begin = tile * KILN_TILE;
        const int64_t end = begin + KILN_TILE < c.vocab ? begin + KILN_TILE : c.vocab;
        int64_t token = row.argmax; /* unreachable fallback: r < S guarantees a hit */
        for (int64_t i0 = begin; i0 < end; i0 += 32) {
            const int64_t i = i0 + lane;
            uint64_t w = 0;
            if (i < end) {
                const float x = kiln_load<DTYPE>(c, b, row.penalised, i);
                w = kiln_mass(x, row.max, row.exp2_factor);
                if (!kiln_is_kept(row, x, i, w))
                    w = 0;
            }
            const uint64_t incl = warp_inclusive_sum(w, lane);
            const unsigned hit = __ballot_sync(kFull, base + incl > r);
            if (hit) {
                token = i0 + __ffs(hit) - 1;
                break;
            }
            base += __shfl_sync(kFull, (unsigned long long)incl, 31);
        }
        if (lane == 0) {
            const float x = kiln_load<DTYPE>(c, b, row.penalised, token);
            c.out.tokens[at] = (int32_t)token;
            if (c.out.logprobs)
                c.out.logprobs[at] = kiln_logprob(x, row.max, row.temperature, row.log_s);
            if (c.out.raw_logprobs)
                c.out.raw_logprobs[at] = kiln_logprob(x, row.max, 1.0f, row.log_s1);
            if (j == 0) {
                if (c.out.kept_counts)
                    c.out.kept_counts[b] = row.kept;
                if (c.out.valid)
                    c.out.valid[b] = 1;
            }
        }
    }
}

unsigned grid_for(int64_t work, int per_block)
{
    const int64_t blocks = (work + per_block - 1) / per_block;
    return (unsigned)(blocks < 65536 * 32 ? blocks : 65536 * 32);
}

} // namespace

cudaError_t kiln_launch_draw(const kiln_dev_call &c, cudaStream_t stream)
{
    const unsigned tile_grid = grid_for(c.rows * c.tiles, 1);
    const unsigned draw_grid = grid_for(c.rows * c.num_samples, kDrawThreads / 32);
    switch (c.dtype) {
    case KILN_DTYPE_F32:
        tile_kernel<KILN_DTYPE_F32><<<tile_grid, kTileThreads, 0, stream>>>(c);
        draw_kernel<KILN_DTYPE_F32><<<draw_grid, kDrawThreads, 0, stream>>>(c);
        break;
    case KILN_DTYPE_F16:
        tile_kernel<KILN_DTYPE_F16><<<tile_grid, kTileThreads, 0, stream>>>(c);
        draw_kernel<KILN_DTYPE_F16><<<draw_grid, kDrawThreads, 0, stream>>>(c);
        break;
    default:
        tile_kernel<KILN_DTYPE_BF16><<<tile_grid, kTileThreads, 0, stream>>>(c);
        draw_kernel<KILN_DTYPE_BF16><<<draw_grid, kDrawThreads, 0, stream>>>(c);
        break;
    }
    return cudaGetLastError();
}
