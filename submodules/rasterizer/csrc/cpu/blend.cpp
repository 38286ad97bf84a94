// Stage 3 on the CPU: front-to-back alpha blending per 16x16 tile, and its
// backward pass walking back to front. Parallel over tiles.
//
// Within a tile the loops run Gaussian by Gaussian, each over only the pixels
// of its visible ellipse's bounding box, with every pixel's compositing state
// kept in tile-sized arrays. Per pixel, the Gaussians are still met in the same
// order as a per-pixel loop would meet them, so the result is the same; pixels
// outside the box would have skipped that Gaussian anyway.
// Gradients go to per-thread buffers that are summed at the end, so threads
// never contend on the same Gaussian.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

namespace {

constexpr int kTilePixels = kTileSize * kTileSize;

struct TilePixels {
    int x0, y0, x1, y1;
};

TilePixels tile_pixels(int tile, int width, int height) {
    const int tiles_x = tiles_along(width);
    const int x0 = (tile % tiles_x) * kTileSize, y0 = (tile / tiles_x) * kTileSize;
    return {x0, y0, std::min(x0 + kTileSize, width), std::min(y0 + kTileSize, height)};
}

// The Gaussians of one tile, in depth order, laid out contiguously (the CPU
// counterpart of the CUDA kernels' shared-memory batches), each with the
// pixel box its visible ellipse covers within the tile.
struct TileGaussians {
    std::vector<int32_t> id;
    std::vector<float> mean_x, mean_y, opacity, min_power, depth, color;
    std::vector<Sym2> conic;
    std::vector<TilePixels> box;

    void gather(const BlendInputs& in, int start, int end, const TilePixels& px) {
        const int count = end - start, C = in.num_channels;
        for (auto* v : {&mean_x, &mean_y, &opacity, &min_power, &depth}) v->resize(count);
        id.resize(count);
        conic.resize(count);
        box.resize(count);
        color.resize((size_t)count * C);
        for (int k = 0; k < count; ++k) {
            const int g = in.sorted_ids[start + k];
            id[k] = g;
            mean_x[k] = in.means2d[2 * g];
            mean_y[k] = in.means2d[2 * g + 1];
            conic[k] = {in.conics[3 * g], in.conics[3 * g + 1], in.conics[3 * g + 2]};
            opacity[k] = in.opacities[g];
            min_power[k] = min_visible_power(in.opacities[g]);
            depth[k] = in.depths[g];
            for (int c = 0; c < C; ++c) color[(size_t)k * C + c] = in.colors[(int64_t)g * C + c];
            float half_x, half_y;
            visible_half_extent(conic[k], min_power[k], half_x, half_y);
            // Pixel i is sampled at i + 0.5; one pixel of margin absorbs rounding.
            box[k] = {std::max(px.x0, (int)std::floor(mean_x[k] - half_x - 0.5f) - 1),
                      std::max(px.y0, (int)std::floor(mean_y[k] - half_y - 0.5f) - 1),
                      std::min(px.x1, (int)std::ceil(mean_x[k] + half_x - 0.5f) + 2),
                      std::min(px.y1, (int)std::ceil(mean_y[k] + half_y - 0.5f) + 2)};
            if (half_x < 0.f) box[k] = {px.x0, px.y0, px.x0, px.y0};
        }
    }

    // splat_alpha, with the exponential skipped where it cannot reach kMinAlpha.
    float alpha(int k, float dx, float dy) const {
        if (gaussian_power(conic[k], dx, dy) < min_power[k]) return 0.f;
        return splat_alpha(conic[k], opacity[k], dx, dy);
    }
};

}  // namespace

void blend_forward(const BlendInputs& in, const BlendOutputs& out) {
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;
    const int num_tiles = tiles_along(in.width) * tiles_along(in.height);
#pragma omp parallel
    {
        std::vector<float> T(kTilePixels), accum((size_t)kTilePixels * C), depth(kTilePixels);
        std::vector<int32_t> processed(kTilePixels);
        std::vector<char> done(kTilePixels);
        TileGaussians tg;
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < num_tiles; ++tile) {
            const TilePixels px = tile_pixels(tile, in.width, in.height);
            const int start = in.tile_ranges[2 * tile], count = in.tile_ranges[2 * tile + 1] - start;
            tg.gather(in, start, start + count, px);
            std::fill(T.begin(), T.end(), 1.f);
            std::fill(accum.begin(), accum.end(), 0.f);
            std::fill(depth.begin(), depth.end(), 0.f);
            std::fill(processed.begin(), processed.end(), 0);
            std::fill(done.begin(), done.end(), 0);
            int active = (px.x1 - px.x0) * (px.y1 - px.y0);
            for (int k = 0; k < count && active > 0; ++k) {
                const TilePixels& b = tg.box[k];
                const float* color = &tg.color[(size_t)k * C];
                for (int y = b.y0; y < b.y1; ++y)
                    for (int x = b.x0; x < b.x1; ++x) {
                        const int p = (y - px.y0) * kTileSize + (x - px.x0);
                        if (done[p]) continue;
                        const float alpha = tg.alpha(k, x + 0.5f - tg.mean_x[k], y + 0.5f - tg.mean_y[k]);
                        if (alpha == 0.f) continue;
                        const float next_T = T[p] * (1.f - alpha);
                        if (next_T < kMinTransmittance) {
                            done[p] = 1;
                            --active;
                            continue;
                        }
                        const float weight = alpha * T[p];
                        for (int c = 0; c < C; ++c) accum[(size_t)p * C + c] += weight * color[c];
                        depth[p] += weight * tg.depth[k];
                        T[p] = next_T;
                        processed[p] = k + 1;
                    }
            }
            for (int y = px.y0; y < px.y1; ++y)
                for (int x = px.x0; x < px.x1; ++x) {
                    const int p = (y - px.y0) * kTileSize + (x - px.x0);
                    const int64_t pix = (int64_t)y * in.width + x;
                    for (int c = 0; c < C; ++c)
                        out.image[c * plane + pix] = accum[(size_t)p * C + c] + T[p] * in.background[c];
                    out.depth[pix] = depth[p];
                    out.final_transmittance[pix] = T[p];
                    out.num_processed[pix] = processed[p];
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
        // Per-pixel state of the back-to-front walk.
        std::vector<float> T(kTilePixels), T_final(kTilePixels), d_T_final(kTilePixels), d_depth(kTilePixels);
        std::vector<float> depth_behind(kTilePixels), d_pixel((size_t)kTilePixels * C);
        std::vector<float> behind((size_t)kTilePixels * C), grad(stride);
        std::vector<int32_t> processed(kTilePixels, 0);
        TileGaussians tg;
        // A fixed tile-to-thread assignment keeps the sums reproducible.
#pragma omp for schedule(static, 1)
        for (int tile = 0; tile < num_tiles; ++tile) {
            const TilePixels px = tile_pixels(tile, in.width, in.height);
            const int start = in.tile_ranges[2 * tile], count = in.tile_ranges[2 * tile + 1] - start;
            tg.gather(in, start, start + count, px);
            for (int y = px.y0; y < px.y1; ++y)
                for (int x = px.x0; x < px.x1; ++x) {
                    const int p = (y - px.y0) * kTileSize + (x - px.x0);
                    const int64_t pix = (int64_t)y * in.width + x;
                    T[p] = T_final[p] = final_transmittance[pix];
                    d_T_final[p] = grads.d_final_transmittance[pix];
                    for (int c = 0; c < C; ++c) {
                        d_pixel[(size_t)p * C + c] = grads.d_image[c * plane + pix];
                        d_T_final[p] += in.background[c] * grads.d_image[c * plane + pix];
                        behind[(size_t)p * C + c] = 0.f;
                    }
                    d_depth[p] = grads.d_depth[pix];
                    depth_behind[p] = 0.f;
                    processed[p] = num_processed[pix];
                }
            for (int k = count - 1; k >= 0; --k) {
                const TilePixels& b = tg.box[k];
                const float* color = &tg.color[(size_t)k * C];
                std::fill(grad.begin(), grad.end(), 0.f);
                for (int y = b.y0; y < b.y1; ++y)
                    for (int x = b.x0; x < b.x1; ++x) {
                        const int p = (y - px.y0) * kTileSize + (x - px.x0);
                        if (k >= processed[p]) continue;
                        const float dx = x + 0.5f - tg.mean_x[k], dy = y + 0.5f - tg.mean_y[k];
                        const float alpha = tg.alpha(k, dx, dy);
                        if (alpha == 0.f) continue;
                        T[p] /= (1.f - alpha);  // transmittance in front of this Gaussian
                        const float weight = alpha * T[p];
                        float* pixel_behind = &behind[(size_t)p * C];
                        const float* d_color = &d_pixel[(size_t)p * C];
                        float d_alpha = 0.f;
                        for (int c = 0; c < C; ++c) {
                            grad[9 + c] += weight * d_color[c];
                            d_alpha += (color[c] - pixel_behind[c]) * d_color[c];
                            pixel_behind[c] = alpha * color[c] + (1.f - alpha) * pixel_behind[c];
                        }
                        grad[8] += weight * d_depth[p];
                        d_alpha += (tg.depth[k] - depth_behind[p]) * d_depth[p];
                        depth_behind[p] = alpha * tg.depth[k] + (1.f - alpha) * depth_behind[p];
                        d_alpha = d_alpha * T[p] - T_final[p] / (1.f - alpha) * d_T_final[p];

                        const AlphaGradient ag = splat_alpha_vjp(tg.conic[k], tg.opacity[k], dx, dy, d_alpha);
                        grad[0] += ag.d_mean2d[0];
                        grad[1] += ag.d_mean2d[1];
                        grad[2] += std::abs(ag.d_mean2d[0]);
                        grad[3] += std::abs(ag.d_mean2d[1]);
                        grad[4] += ag.d_conic.a;
                        grad[5] += ag.d_conic.b;
                        grad[6] += ag.d_conic.c;
                        grad[7] += ag.d_opacity;
                    }
                float* gb = buf + (size_t)tg.id[k] * stride;
                for (int j = 0; j < stride; ++j) gb[j] += grad[j];
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
