// Stage 3 on the GPU: one 16x16 thread block per tile, one thread per pixel,
// the same per-pixel arithmetic as cpu/blend.cpp. The grid's z layers are the
// cameras (in forward, each camera's groups of channels). The tile's Gaussians are
// brought into shared memory in batches of one per thread; threads whose pixel
// lies outside the image still load their share.
//
// Backward walks each tile back to front. All 32 lanes of a warp visit the same
// Gaussian at the same step, so each per-Gaussian gradient is summed over the
// warp first and reaches global memory with one atomic per warp, not per pixel.
#include "stages_cuda.h"

namespace splat {
namespace cuda {

namespace {

constexpr int kBlockSize = kTileSize * kTileSize;
constexpr int kBatchSize = kBlockSize;
// Forward keeps this many colour accumulators in registers; wider inputs get
// one block per group of channels (blockIdx.z).
constexpr int kChannelsPerBlock = 4;

struct Batch {
    int32_t ids[kBatchSize];
    float2 means2d[kBatchSize];
    Sym2 conics[kBatchSize];
    float opacities[kBatchSize];
};

__device__ void load_into_batch(Batch& batch, int slot, int g, const BlendInputs& in) {
    batch.ids[slot] = g;
    batch.means2d[slot] = make_float2(in.means2d[2 * g], in.means2d[2 * g + 1]);
    batch.conics[slot] = {in.conics[3 * g], in.conics[3 * g + 1], in.conics[3 * g + 2]};
    batch.opacities[slot] = in.opacities[g];
}

// The pixel of this thread and the list of its tile.
struct TilePixel {
    int rank;  // thread index within the block
    bool inside;
    int64_t local;  // y * width + x within the camera's image, valid when inside
    int64_t index;  // camera * width * height + local
    int64_t image_offset;  // of the camera's channel 0 in the C x channels x H x W images: the pixel is at local
    float fx, fy;   // pixel centre
    int start, end;  // the tile's range in sorted_ids
};

__device__ TilePixel tile_pixel(const BlendInputs& in, int camera) {
    TilePixel p;
    p.rank = threadIdx.y * kTileSize + threadIdx.x;
    const int x = blockIdx.x * kTileSize + threadIdx.x, y = blockIdx.y * kTileSize + threadIdx.y;
    const int64_t plane = (int64_t)in.width * in.height;
    p.inside = x < in.width && y < in.height;
    p.local = (int64_t)y * in.width + x;
    p.index = camera * plane + p.local;
    p.image_offset = (int64_t)camera * in.num_channels * plane;
    p.fx = x + 0.5f;
    p.fy = y + 0.5f;
    const int64_t tile = ((int64_t)camera * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    p.start = in.tile_ranges[2 * tile];
    p.end = in.tile_ranges[2 * tile + 1];
    return p;
}

__global__ void __launch_bounds__(kBlockSize) blend_forward_kernel(BlendInputs in, BlendOutputs out) {
    __shared__ Batch batch;
    const int C = in.num_channels;
    const int channel_groups = (C + kChannelsPerBlock - 1) / kChannelsPerBlock;
    const TilePixel px = tile_pixel(in, blockIdx.z / channel_groups);
    const int first_channel = blockIdx.z % channel_groups * kChannelsPerBlock;
    float accum[kChannelsPerBlock] = {};
    float T = 1.f, depth = 0.f;
    int processed = 0;
    bool done = !px.inside;

    for (int batch_start = px.start; batch_start < px.end; batch_start += kBatchSize) {
        // Also the barrier that keeps the previous batch until every thread has used it.
        if (__syncthreads_count(done) == kBlockSize) break;
        if (batch_start + px.rank < px.end) load_into_batch(batch, px.rank, in.sorted_ids[batch_start + px.rank], in);
        __syncthreads();
        const int batch_count = min(kBatchSize, px.end - batch_start);
        for (int j = 0; j < batch_count && !done; ++j) {
            const float alpha = splat_alpha(batch.conics[j], batch.opacities[j], px.fx - batch.means2d[j].x,
                                            px.fy - batch.means2d[j].y);
            if (alpha == 0.f) continue;
            const float next_T = T * (1.f - alpha);
            if (next_T < kMinTransmittance) {
                done = true;
                break;
            }
            const float weight = alpha * T;
            const int g = batch.ids[j];
#pragma unroll
            for (int c = 0; c < kChannelsPerBlock; ++c)
                if (first_channel + c < C) accum[c] += weight * in.colors[(int64_t)g * C + first_channel + c];
            depth += weight * in.depths[g];
            T = next_T;
            processed = batch_start + j - px.start + 1;
        }
    }

    if (!px.inside) return;
    const int64_t plane = (int64_t)in.width * in.height;
#pragma unroll
    for (int c = 0; c < kChannelsPerBlock; ++c)
        if (first_channel + c < C)
            out.image[px.image_offset + (first_channel + c) * plane + px.local] =
                accum[c] + T * in.background[first_channel + c];
    if (first_channel == 0) {
        out.depth[px.index] = depth;
        out.final_transmittance[px.index] = T;
        out.num_processed[px.index] = processed;
    }
}

// Lanes whose pixel does not contribute pass 0.
__device__ void atomic_add_warp_sum(float* target, float value) {
    const float sum = warp_sum(value);
    if (lane_index() == 0) atomicAdd(target, sum);
}

__global__ void __launch_bounds__(kBlockSize)
    blend_backward_kernel(BlendInputs in, const float* final_transmittance, const int32_t* num_processed,
                          BlendGradients grads, BlendParamGradients out) {
    __shared__ Batch batch;
    __shared__ int walk_start;
    const TilePixel px = tile_pixel(in, blockIdx.z);
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;

    float T_final = 1.f, d_T_final = 0.f, d_depth_pixel = 0.f;
    int last = px.start;  // one past the last list entry of this pixel
    if (px.inside) {
        T_final = final_transmittance[px.index];
        d_T_final = grads.d_final_transmittance[px.index];
        for (int c = 0; c < C; ++c)
            d_T_final += in.background[c] * grads.d_image[px.image_offset + c * plane + px.local];
        d_depth_pixel = grads.d_depth[px.index];
        last = px.start + max(0, min(num_processed[px.index], px.end - px.start));
    }
    // The walk starts at the furthest last entry of any pixel of the tile.
    if (px.rank == 0) walk_start = px.start;
    __syncthreads();
    atomicMax(&walk_start, last);
    __syncthreads();

    // The colour behind a Gaussian enters d(alpha) only through its dot
    // product with d(pixel), which obeys the same blending recurrence, so one
    // scalar replaces the CPU's per-channel `behind` and any C works.
    float T = T_final, behind_dot = 0.f, depth_behind = 0.f;
    for (int batch_end = walk_start; batch_end > px.start; batch_end -= kBatchSize) {
        const int batch_count = min(kBatchSize, batch_end - px.start);
        __syncthreads();  // every thread is done with the previous batch
        if (px.rank < batch_count) load_into_batch(batch, px.rank, in.sorted_ids[batch_end - 1 - px.rank], in);
        __syncthreads();

        // Branches on warp votes keep the warp together for the reductions.
        for (int j = 0; j < batch_count; ++j) {
            const int k = batch_end - 1 - j;
            if (!__any_sync(kFullWarp, k < last)) continue;
            const Sym2 conic = batch.conics[j];
            const float opacity = batch.opacities[j];
            const float dx = px.fx - batch.means2d[j].x, dy = px.fy - batch.means2d[j].y;
            const float alpha = k < last ? splat_alpha(conic, opacity, dx, dy) : 0.f;
            const bool contributes = alpha != 0.f;
            if (!__any_sync(kFullWarp, contributes)) continue;

            const int g = batch.ids[j];
            float weight = 0.f;
            if (contributes) {
                T /= (1.f - alpha);  // transmittance in front of this Gaussian
                weight = alpha * T;
            }
            float color_dot = 0.f;
            for (int c = 0; c < C; ++c) {
                const float d_pixel = contributes ? grads.d_image[px.image_offset + c * plane + px.local] : 0.f;
                color_dot += in.colors[(int64_t)g * C + c] * d_pixel;
                atomic_add_warp_sum(out.d_colors + (int64_t)g * C + c, weight * d_pixel);
            }
            atomic_add_warp_sum(out.d_depths + g, weight * d_depth_pixel);

            AlphaGradient ag = {{0.f, 0.f, 0.f}, {0.f, 0.f}, 0.f};
            if (contributes) {
                const float depth = in.depths[g];
                float d_alpha = color_dot - behind_dot + (depth - depth_behind) * d_depth_pixel;
                behind_dot = alpha * color_dot + (1.f - alpha) * behind_dot;
                depth_behind = alpha * depth + (1.f - alpha) * depth_behind;
                d_alpha = d_alpha * T - T_final / (1.f - alpha) * d_T_final;
                ag = splat_alpha_vjp(conic, opacity, dx, dy, d_alpha);
            }
            atomic_add_warp_sum(out.d_means2d + 2 * g, ag.d_mean2d[0]);
            atomic_add_warp_sum(out.d_means2d + 2 * g + 1, ag.d_mean2d[1]);
            atomic_add_warp_sum(out.d_means2d_abs + 2 * g, fabsf(ag.d_mean2d[0]));
            atomic_add_warp_sum(out.d_means2d_abs + 2 * g + 1, fabsf(ag.d_mean2d[1]));
            atomic_add_warp_sum(out.d_conics + 3 * g, ag.d_conic.a);
            atomic_add_warp_sum(out.d_conics + 3 * g + 1, ag.d_conic.b);
            atomic_add_warp_sum(out.d_conics + 3 * g + 2, ag.d_conic.c);
            atomic_add_warp_sum(out.d_opacities + g, ag.d_opacity);
        }
    }
}

dim3 tile_grid(const BlendInputs& in, int channel_groups) {
    return dim3(tiles_along(in.width), tiles_along(in.height), (unsigned)(in.num_cameras * channel_groups));
}

void zero(float* data, int64_t count, cudaStream_t stream) {
    check_cuda(cudaMemsetAsync(data, 0, (size_t)count * sizeof(float), stream), "blend_backward (zero gradients)");
}

}  // namespace

void blend_forward(const BlendInputs& in, const BlendOutputs& out, cudaStream_t stream) {
    if (in.width <= 0 || in.height <= 0 || in.num_channels <= 0) return;
    const int channel_groups = (in.num_channels + kChannelsPerBlock - 1) / kChannelsPerBlock;
    blend_forward_kernel<<<tile_grid(in, channel_groups), dim3(kTileSize, kTileSize), 0, stream>>>(in, out);
    check_launch("blend_forward");
}

void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out,
                    cudaStream_t stream) {
    if (num_gaussians <= 0 || in.width <= 0 || in.height <= 0 || in.num_channels <= 0) return;
    // The kernel accumulates; the stage, like the CPU one, writes every gradient.
    const int64_t n = num_gaussians;
    zero(out.d_means2d, 2 * n, stream);
    zero(out.d_means2d_abs, 2 * n, stream);
    zero(out.d_conics, 3 * n, stream);
    zero(out.d_opacities, n, stream);
    zero(out.d_colors, n * in.num_channels, stream);
    zero(out.d_depths, n, stream);
    blend_backward_kernel<<<tile_grid(in, 1), dim3(kTileSize, kTileSize), 0, stream>>>(
        in, final_transmittance, num_processed, grads, out);
    check_launch("blend_backward");
}

}  // namespace cuda
}  // namespace splat
