// Stage 2 on the GPU: one 64-bit key per (Gaussian, tile) pair, tile id in the
// high word and depth bits in the low word, so a single radix sort groups the
// pairs by tile and orders each tile front to back. Depths are positive (past
// the near plane), and positive floats order like their bit patterns. Every
// camera's tiles are numbered after the previous camera's; the caller keeps
// their count within 32 bits.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "stages_cuda.h"

namespace splat {
namespace cuda {

namespace {

constexpr int kBlockSize = 256;
// CUB wants its temporary storage, and its buffers read best, on 256-byte boundaries.
constexpr size_t kAlignment = 256;

size_t aligned(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// Tile ids are below num_tiles, so the key bits above 32 + bit_length(num_tiles) are all zero.
int sort_end_bit(int64_t num_tiles) {
    int bits = 0;
    while (bits < 32 && (num_tiles >> bits) != 0) ++bits;
    return 32 + bits;
}

// Where each buffer lies in the workspace, relative to its first 256-byte
// boundary. The sorted ids double-buffer with the output array itself.
struct WorkspaceLayout {
    size_t offsets, keys, alternate_keys, alternate_ids, cub_temp;
    size_t cub_temp_bytes;
    size_t total;  // including the slack for aligning the workspace start
};

WorkspaceLayout workspace_layout(int64_t num_gaussians, int64_t num_pairs, int64_t num_tiles) {
    size_t scan_bytes = 0, sort_bytes = 0;
    check_cuda(cub::DeviceScan::InclusiveSum(nullptr, scan_bytes, (const int32_t*)nullptr, (int32_t*)nullptr,
                                             (int)num_gaussians),
               "bin_and_sort (scan size)");
    cub::DoubleBuffer<uint64_t> keys(nullptr, nullptr);
    cub::DoubleBuffer<int32_t> ids(nullptr, nullptr);
    check_cuda(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, keys, ids, (int)num_pairs, 0,
                                               sort_end_bit(num_tiles)),
               "bin_and_sort (sort size)");

    WorkspaceLayout layout;
    size_t cursor = 0;
    auto carve = [&](size_t bytes) {
        const size_t at = cursor;
        cursor += aligned(bytes);
        return at;
    };
    layout.offsets = carve((size_t)num_gaussians * sizeof(int32_t));
    layout.keys = carve((size_t)num_pairs * sizeof(uint64_t));
    layout.alternate_keys = carve((size_t)num_pairs * sizeof(uint64_t));
    layout.alternate_ids = carve((size_t)num_pairs * sizeof(int32_t));
    // The scan is finished before the sort starts, so they share one temporary area.
    layout.cub_temp_bytes = scan_bytes > sort_bytes ? scan_bytes : sort_bytes;
    layout.cub_temp = carve(layout.cub_temp_bytes);
    layout.total = cursor + kAlignment - 1;
    return layout;
}

// Writes the pairs of Gaussian i into its slots [offsets[i-1], offsets[i]),
// visiting the same tiles in the same order as the CPU backend.
__global__ void __launch_bounds__(kBlockSize)
    duplicate_keys_kernel(int num_gaussians, const float* means2d, const float* depths,
                          const int32_t* tiles_touched, const int32_t* tile_extents, const int32_t* offsets,
                          int tiles_x, int tiles_y, int per_camera, int num_pairs, uint64_t* keys, int32_t* ids) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= num_gaussians || tiles_touched[i] <= 0) return;
    const uint64_t first_tile = (uint64_t)(i / per_camera) * (uint64_t)(tiles_x * tiles_y);
    int slot = i == 0 ? 0 : offsets[i - 1];
    const int slot_end = min(offsets[i], num_pairs);
    const uint64_t depth_bits = __float_as_uint(depths[i]);
    int rect_min[2], rect_max[2];
    tile_rect(means2d + 2 * i, tile_extents + 2 * i, tiles_x, tiles_y, rect_min, rect_max);
    for (int ty = rect_min[1]; ty < rect_max[1]; ++ty)
        for (int tx = rect_min[0]; tx < rect_max[0]; ++tx) {
            if (slot >= slot_end) return;
            keys[slot] = ((first_tile + (uint64_t)(ty * tiles_x + tx)) << 32) | depth_bits;
            ids[slot] = i;
            ++slot;
        }
}

// Each tile's [start, end) in the sorted pairs: a pair whose tile differs from
// its predecessor's starts one range and ends the other.
__global__ void __launch_bounds__(kBlockSize)
    tile_ranges_kernel(int num_pairs, const uint64_t* sorted_keys, int64_t num_tiles, int32_t* tile_ranges) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= num_pairs) return;
    const uint64_t tile = sorted_keys[k] >> 32;
    if (tile >= (uint64_t)num_tiles) return;
    if (k == 0) {
        tile_ranges[2 * tile] = 0;
    } else {
        const uint64_t previous = sorted_keys[k - 1] >> 32;
        if (tile != previous) {
            tile_ranges[2 * tile] = k;
            if (previous < (uint64_t)num_tiles) tile_ranges[2 * previous + 1] = k;
        }
    }
    if (k == num_pairs - 1) tile_ranges[2 * tile + 1] = num_pairs;
}

}  // namespace

size_t sort_workspace_bytes(int64_t num_gaussians, int64_t num_pairs, int64_t num_tiles) {
    return workspace_layout(num_gaussians, num_pairs, num_tiles).total;
}

void bin_and_sort(int num_gaussians, const float* means2d, const float* depths, const int32_t* tiles_touched,
                  const int32_t* tile_extents, int width, int height, int64_t num_pairs, int32_t* tile_ranges,
                  int32_t* sorted_ids, uint8_t* workspace, size_t workspace_bytes, int num_cameras,
                  cudaStream_t stream) {
    if (num_gaussians <= 0 || num_pairs <= 0) return;
    const int tiles_x = tiles_along(width), tiles_y = tiles_along(height);
    const int64_t num_tiles = (int64_t)num_cameras * tiles_x * tiles_y;
    const WorkspaceLayout layout = workspace_layout(num_gaussians, num_pairs, num_tiles);
    if (workspace_bytes < layout.total)
        throw std::runtime_error("gaussian_rasterizer CUDA bin_and_sort: workspace of " +
                                 std::to_string(workspace_bytes) + " bytes, " + std::to_string(layout.total) +
                                 " needed");
    uint8_t* base = workspace + (kAlignment - (uintptr_t)workspace % kAlignment) % kAlignment;
    int32_t* offsets = reinterpret_cast<int32_t*>(base + layout.offsets);
    cub::DoubleBuffer<uint64_t> keys(reinterpret_cast<uint64_t*>(base + layout.keys),
                                     reinterpret_cast<uint64_t*>(base + layout.alternate_keys));
    cub::DoubleBuffer<int32_t> ids(sorted_ids, reinterpret_cast<int32_t*>(base + layout.alternate_ids));
    void* cub_temp = base + layout.cub_temp;
    size_t cub_temp_bytes = layout.cub_temp_bytes;

    check_cuda(cub::DeviceScan::InclusiveSum(cub_temp, cub_temp_bytes, tiles_touched, offsets, num_gaussians,
                                             stream),
               "bin_and_sort (scan)");
    duplicate_keys_kernel<<<blocks_for(num_gaussians, kBlockSize), kBlockSize, 0, stream>>>(
        num_gaussians, means2d, depths, tiles_touched, tile_extents, offsets, tiles_x, tiles_y,
        num_gaussians / num_cameras, (int)num_pairs, keys.Current(), ids.Current());
    check_launch("bin_and_sort (keys)");

    // Equal keys (same tile, same depth) must stay in Gaussian order, as the
    // CPU's index tie-break orders them: the slots hold each tile's pairs in
    // Gaussian order and the radix sort is stable, so that order survives.
    cub_temp_bytes = layout.cub_temp_bytes;
    check_cuda(cub::DeviceRadixSort::SortPairs(cub_temp, cub_temp_bytes, keys, ids, (int)num_pairs, 0,
                                               sort_end_bit(num_tiles), stream),
               "bin_and_sort (sort)");
    if (ids.Current() != sorted_ids)
        check_cuda(cudaMemcpyAsync(sorted_ids, ids.Current(), (size_t)num_pairs * sizeof(int32_t),
                                   cudaMemcpyDeviceToDevice, stream),
                   "bin_and_sort (copy)");

    tile_ranges_kernel<<<blocks_for(num_pairs, kBlockSize), kBlockSize, 0, stream>>>(
        (int)num_pairs, keys.Current(), num_tiles, tile_ranges);
    check_launch("bin_and_sort (tile ranges)");
}

}  // namespace cuda
}  // namespace splat
