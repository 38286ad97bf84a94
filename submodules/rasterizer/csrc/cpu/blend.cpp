// Stage 3 on the CPU: front-to-back alpha blending per 16x16 tile, and its
// backward pass walking each pixel's list back to front. Parallel over tiles;
// gradients go to per-thread buffers that are summed at the end, so threads
// never contend on the same Gaussian.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

namespace {

struct TilePixels {
    int x0, y0, x1, y1;
};

TilePixels tile_pixels(int tile, int width, int height) {
    const int tiles_x = tiles_along(width);
    const int x0 = (tile % tiles_x) * kTileSize, y0 = (tile / tiles_x) * kTileSize;
    return {x0, y0, std::min(x0 + kTileSize, width), std::min(y0 + kTileSize, height)};
}

Sym2 conic_of(const float* conics, int g) { return {conics[3 * g], conics[3 * g + 1], conics[3 * g + 2]}; }

}  // namespace

void blend_forward(const BlendInputs& in, const BlendOutputs& out) {
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;
    const int num_tiles = tiles_along(in.width) * tiles_along(in.height);
#pragma omp parallel
    {
        std::vector<float> accum(C);
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < num_tiles; ++tile) {
            const TilePixels px = tile_pixels(tile, in.width, in.height);
            const int start = in.tile_ranges[2 * tile], end = in.tile_ranges[2 * tile + 1];
            for (int y = px.y0; y < px.y1; ++y)
                for (int x = px.x0; x < px.x1; ++x) {
                    const float fx = x + 0.5f, fy = y + 0.5f;
                    std::fill(accum.begin(), accum.end(), 0.f);
                    float T = 1.f, depth = 0.f;
                    int processed = 0;
                    for (int k = start; k < end; ++k) {
                        const int g = in.sorted_ids[k];
                        const float alpha = splat_alpha(conic_of(in.conics, g), in.opacities[g],
                                                        fx - in.means2d[2 * g], fy - in.means2d[2 * g + 1]);
                        if (alpha == 0.f) continue;
                        const float next_T = T * (1.f - alpha);
                        if (next_T < kMinTransmittance) break;
                        const float weight = alpha * T;
                        for (int c = 0; c < C; ++c) accum[c] += weight * in.colors[(int64_t)g * C + c];
                        depth += weight * in.depths[g];
                        T = next_T;
                        processed = k - start + 1;
                    }
                    const int64_t pix = (int64_t)y * in.width + x;
                    for (int c = 0; c < C; ++c) out.image[c * plane + pix] = accum[c] + T * in.background[c];
                    out.depth[pix] = depth;
                    out.final_transmittance[pix] = T;
                    out.num_processed[pix] = processed;
                }
        }
    }
}

void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out) {
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;
    const int num_tiles = tiles_along(in.width) * tiles_along(in.height);
    const int num_threads = omp_get_max_threads();
    // Per-Gaussian layout of a thread buffer: mean2d(2) abs(2) conic(3) opacity depth colour(C).
    const int stride = 9 + C;
    std::vector<float> buffers((size_t)num_threads * num_gaussians * stride, 0.f);

#pragma omp parallel num_threads(num_threads)
    {
        float* buf = buffers.data() + (size_t)omp_get_thread_num() * num_gaussians * stride;
        std::vector<float> d_pixel(C), behind(C), last_color(C);
        // A fixed tile-to-thread assignment keeps the sums reproducible.
#pragma omp for schedule(static, 1)
        for (int tile = 0; tile < num_tiles; ++tile) {
            const TilePixels px = tile_pixels(tile, in.width, in.height);
            const int start = in.tile_ranges[2 * tile];
            for (int y = px.y0; y < px.y1; ++y)
                for (int x = px.x0; x < px.x1; ++x) {
                    const int64_t pix = (int64_t)y * in.width + x;
                    const float fx = x + 0.5f, fy = y + 0.5f;
                    const float T_final = final_transmittance[pix];
                    float d_T_final = grads.d_final_transmittance[pix];
                    for (int c = 0; c < C; ++c) {
                        d_pixel[c] = grads.d_image[c * plane + pix];
                        d_T_final += in.background[c] * d_pixel[c];
                        behind[c] = 0.f;
                    }
                    const float d_depth_pixel = grads.d_depth[pix];
                    float depth_behind = 0.f, T = T_final;
                    for (int k = start + num_processed[pix] - 1; k >= start; --k) {
                        const int g = in.sorted_ids[k];
                        const Sym2 conic = conic_of(in.conics, g);
                        const float dx = fx - in.means2d[2 * g], dy = fy - in.means2d[2 * g + 1];
                        const float alpha = splat_alpha(conic, in.opacities[g], dx, dy);
                        if (alpha == 0.f) continue;
                        T /= (1.f - alpha);  // transmittance in front of this Gaussian
                        const float weight = alpha * T;
                        float* gb = buf + (size_t)g * stride;
                        float d_alpha = 0.f;
                        const float* color = in.colors + (int64_t)g * C;
                        for (int c = 0; c < C; ++c) {
                            gb[9 + c] += weight * d_pixel[c];
                            d_alpha += (color[c] - behind[c]) * d_pixel[c];
                            behind[c] = alpha * color[c] + (1.f - alpha) * behind[c];
                        }
                        gb[8] += weight * d_depth_pixel;
                        d_alpha += (in.depths[g] - depth_behind) * d_depth_pixel;
                        depth_behind = alpha * in.depths[g] + (1.f - alpha) * depth_behind;
                        d_alpha = d_alpha * T - T_final / (1.f - alpha) * d_T_final;

                        const AlphaGradient ag = splat_alpha_vjp(conic, in.opacities[g], dx, dy, d_alpha);
                        gb[0] += ag.d_mean2d[0];
                        gb[1] += ag.d_mean2d[1];
                        gb[2] += std::abs(ag.d_mean2d[0]);
                        gb[3] += std::abs(ag.d_mean2d[1]);
                        gb[4] += ag.d_conic.a;
                        gb[5] += ag.d_conic.b;
                        gb[6] += ag.d_conic.c;
                        gb[7] += ag.d_opacity;
                    }
                }
        }
    }

#pragma omp parallel for schedule(static)
    for (int g = 0; g < num_gaussians; ++g) {
        float* sum = buffers.data() + (size_t)g * stride;  // thread 0's buffer
        for (int t = 1; t < num_threads; ++t) {
            const float* gb = buffers.data() + ((size_t)t * num_gaussians + g) * stride;
            for (int k = 0; k < stride; ++k) sum[k] += gb[k];
        }
        out.d_means2d[2 * g] = sum[0];
        out.d_means2d[2 * g + 1] = sum[1];
        out.d_means2d_abs[2 * g] = sum[2];
        out.d_means2d_abs[2 * g + 1] = sum[3];
        for (int k = 0; k < 3; ++k) out.d_conics[3 * g + k] = sum[4 + k];
        out.d_opacities[g] = sum[7];
        out.d_depths[g] = sum[8];
        for (int c = 0; c < C; ++c) out.d_colors[(int64_t)g * C + c] = sum[9 + c];
    }
}

}  // namespace cpu
}  // namespace splat
