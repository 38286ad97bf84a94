// Stage 2 on the CPU: bin every (Gaussian, tile) pair by tile, then sort each
// tile's list by depth. A counting pass gives each tile its slice directly, so
// the per-tile sorts are independent and run in parallel. Every camera's
// tiles are numbered after the previous camera's.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

void bin_and_sort(int num_gaussians, const float* means2d, const float* depths, const int32_t* tiles_touched,
                  const int32_t* tile_extents, int width, int height, int32_t* tile_ranges, int32_t* sorted_ids,
                  int num_cameras) {
    const int tiles_x = tiles_along(width), tiles_y = tiles_along(height);
    const int camera_tiles = tiles_x * tiles_y, per_camera = num_gaussians / num_cameras;
    const int num_tiles = num_cameras * camera_tiles;

    auto for_each_tile = [&](int i, auto&& visit) {
        int rect_min[2], rect_max[2];
        tile_rect(means2d + 2 * i, tile_extents + 2 * i, tiles_x, tiles_y, rect_min, rect_max);
        const int first = i / per_camera * camera_tiles;
        for (int ty = rect_min[1]; ty < rect_max[1]; ++ty)
            for (int tx = rect_min[0]; tx < rect_max[0]; ++tx) visit(first + ty * tiles_x + tx);
    };

    std::vector<int64_t> cursor(num_tiles + 1, 0);
    for (int i = 0; i < num_gaussians; ++i)
        if (tiles_touched[i] > 0) for_each_tile(i, [&](int tile) { ++cursor[tile + 1]; });
    for (int t = 0; t < num_tiles; ++t) {
        cursor[t + 1] += cursor[t];
        tile_ranges[2 * t] = (int32_t)cursor[t];
        tile_ranges[2 * t + 1] = (int32_t)cursor[t + 1];
    }
    for (int i = 0; i < num_gaussians; ++i)
        if (tiles_touched[i] > 0) for_each_tile(i, [&](int tile) { sorted_ids[cursor[tile]++] = i; });

    // Ties in depth are broken by index so the order never depends on the sort: each pair is sorted by one
    // integer, the depth's bits above the index (positive floats order like their bit patterns, and depths are
    // past the near plane), which keeps the sort from reading depths scattered in memory.
#pragma omp parallel
    {
        std::vector<uint64_t> keys;
#pragma omp for schedule(dynamic, 8)
        for (int t = 0; t < num_tiles; ++t) {
            int32_t* ids = sorted_ids + tile_ranges[2 * t];
            const int count = tile_ranges[2 * t + 1] - tile_ranges[2 * t];
            keys.resize(count);
            for (int k = 0; k < count; ++k) {
                uint32_t depth_bits;
                std::memcpy(&depth_bits, depths + ids[k], sizeof depth_bits);
                keys[k] = (uint64_t)depth_bits << 32 | (uint32_t)ids[k];
            }
            std::sort(keys.begin(), keys.end());
            for (int k = 0; k < count; ++k) ids[k] = (int32_t)(uint32_t)keys[k];
        }
    }
}

}  // namespace cpu
}  // namespace splat
