// Stage 2 on the CPU: bin every (Gaussian, tile) pair by tile, then sort each
// tile's list by depth. A counting pass gives each tile its slice directly, so
// the per-tile sorts are independent and run in parallel. Every camera's
// tiles are numbered after the previous camera's.
#include <algorithm>
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

    // Ties in depth are broken by index so the order never depends on the sort.
#pragma omp parallel for schedule(dynamic, 8)
    for (int t = 0; t < num_tiles; ++t)
        std::sort(sorted_ids + tile_ranges[2 * t], sorted_ids + tile_ranges[2 * t + 1], [&](int32_t a, int32_t b) {
            return depths[a] < depths[b] || (depths[a] == depths[b] && a < b);
        });
}

}  // namespace cpu
}  // namespace splat
