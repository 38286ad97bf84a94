// Stage 3 on the CPU: front-to-back alpha blending per 16x16 tile, and its
// backward pass walking back to front. Parallel over the tiles of every camera.
//
// Within a tile the loops run Gaussian by Gaussian, each over only the pixels
// of its visible ellipse, with every pixel's compositing state kept in
// tile-sized arrays. Per pixel, the Gaussians are still met in the same order
// as a per-pixel loop would meet them, so the result is the same; pixels
// outside the ellipse would have skipped that Gaussian anyway.
// The pixels of a row are independent of each other for a fixed Gaussian, so
// each row is handled in runs of kLanes pixels by branch-free loops that the
// compiler vectorises: the compositing rules become per-lane masks.
// What the loops need of each Gaussian is packed first into one record per
// Gaussian, so that a tile's Gaussians, scattered in memory, cost a cache
// line each rather than one per input array.
// Gradients go to per-thread buffers that are summed at the end, so threads
// never contend on the same Gaussian.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "../stages.h"
#include "vector_clones.h"

namespace splat {
namespace cpu {

namespace {

constexpr int kTilePixels = kTileSize * kTileSize;
// One AVX2 register of floats. A visible span of up to kLanes pixels, most of
// them here, takes one run; any wider span takes the whole tile row.
constexpr int kLanes = 8;
static_assert(kTileSize % kLanes == 0, "runs tile a row");
static_assert(kLanes == 8, "the lane sums of blend_tile_backward add 8 lanes");

struct TilePixels {
    int x0, y0, x1, y1;
};

// kLanes pixels of a tile row, from tile pixel p, whose first pixel is at
// offset (dx, dy) from the Gaussian's mean.
struct Run {
    int p;
    float dx, dy;
};
constexpr int kMaxRuns = kTileSize * (kTileSize / kLanes);
// A tile's Gaussians are scattered in memory: their records are fetched this many ahead.
constexpr int kPrefetchAhead = 4;

// The pixels of a camera's own tile.
TilePixels tile_pixels(int tile, int width, int height) {
    const int tiles_x = tiles_along(width);
    const int x0 = (tile % tiles_x) * kTileSize, y0 = (tile / tiles_x) * kTileSize;
    return {x0, y0, std::min(x0 + kTileSize, width), std::min(y0 + kTileSize, height)};
}

// expf of the Gaussian power, accurate to about 1 ulp for arguments in
// [-87, 0], to which they are clamped (anything lower is far below kMinAlpha).
// libm's expf is a call that stops a loop from vectorising; this is plain
// arithmetic: Cody-Waite range reduction and the polynomial of Cephes' expf.
inline float exp_of_power(float x) {
    x = clampf(x, -87.f, 0.f);
    // Adding 1.5 * 2^23 rounds x / ln 2 to the integer n and leaves n in the low mantissa bits.
    const float shifted = x * 1.44269504f + 12582912.f;
    const float n = shifted - 12582912.f;
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.f;
    int32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000 + 127) << 23;  // 2^n, a normal float as n >= -126
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// Offsets within a record of GaussianTable. The visible span of the row at
// offset dy from the mean is where the power reaches min_visible_power, a
// quadratic in dx with roots -skew dy +- sqrt(reach - det dy^2) / conic.a;
// half_y is the half-height of the visible ellipse, negative or NaN if there
// is none.
// The values a Gaussian blends into a pixel are its depth and then its C
// colour channels: depth is blended like one more channel.
enum Field { kMeanX, kMeanY, kConicA, kConicB, kConicC, kOpacity, kSkew, kReach, kDet, kInvA, kHalfY, kValues };

// One record per Gaussian, each starting a cache line: with up to four colour
// channels a record is one line.
class GaussianTable {
  public:
    GaussianTable(const BlendInputs& in, int num_gaussians)
        : stride_((kValues + 1 + in.num_channels + kLineFloats - 1) / kLineFloats * kLineFloats),
          storage_(new float[(size_t)num_gaussians * stride_ + kLineFloats]) {
        base_ = storage_.get();
        while ((uintptr_t)base_ % (kLineFloats * sizeof(float))) ++base_;
        const int C = in.num_channels;
#pragma omp parallel for schedule(static)
        for (int g = 0; g < num_gaussians; ++g) {
            float* r = base_ + (size_t)g * stride_;
            const Sym2 q = {in.conics[3 * g], in.conics[3 * g + 1], in.conics[3 * g + 2]};
            const float min_power = min_visible_power(in.opacities[g]);
            float half_x, half_y;  // both negative where nothing is visible
            visible_half_extent(q, min_power, half_x, half_y);
            r[kMeanX] = in.means2d[2 * g];
            r[kMeanY] = in.means2d[2 * g + 1];
            r[kConicA] = q.a;
            r[kConicB] = q.b;
            r[kConicC] = q.c;
            r[kOpacity] = in.opacities[g];
            r[kSkew] = q.b / q.a;
            r[kReach] = -2.f * min_power * q.a;
            r[kDet] = determinant(q);
            r[kInvA] = 1.f / q.a;
            r[kHalfY] = half_y;
            r[kValues] = in.depths[g];
            for (int c = 0; c < C; ++c) r[kValues + 1 + c] = in.colors[(int64_t)g * C + c];
        }
    }

    const float* operator[](int g) const { return base_ + (size_t)g * stride_; }

    void prefetch(int g) const {
        for (int i = 0; i < stride_; i += kLineFloats) __builtin_prefetch(base_ + (size_t)g * stride_ + i);
    }

  private:
    static constexpr int kLineFloats = 64 / sizeof(float);
    int stride_;
    std::unique_ptr<float[]> storage_;  // not zeroed: every record is written
    float* base_;
};

// Fills `runs` with the runs of kLanes pixels that cover the visible ellipse
// of the Gaussian with record `g` within the tile, and returns their number,
// at most kMaxRuns. A row's span holds the pixels sampled between the roots;
// min_visible_power's margin keeps any sample that reaches kMinAlpha well
// inside them, and kSpanSlack absorbs the rounding of the roots themselves.
inline int visible_runs(const float* g, const TilePixels& px, Run* runs) {
    constexpr float kSpanSlack = 1e-3f;
    if (!(g[kHalfY] >= 0.f)) return 0;
    // Pixel i is sampled at i + 0.5; one row of margin absorbs rounding. NaN
    // bounds fall back to the whole tile.
    const int row_begin = (int)std::max(0.f, std::floor(g[kMeanY] - g[kHalfY] - 0.5f) - 1.f - px.y0);
    const int row_end = (int)std::min((float)(px.y1 - px.y0), std::ceil(g[kMeanY] + g[kHalfY] - 0.5f) + 2.f - px.y0);
    float dy[kTileSize];
    int32_t begin[kTileSize], end[kTileSize];
    const float centre = g[kMeanX] - 0.5f - px.x0, width = (float)(px.x1 - px.x0);
#pragma omp simd
    for (int r = 0; r < kTileSize; ++r) {
        dy[r] = (float)(px.y0 + r) + 0.5f - g[kMeanY];
        const float disc = g[kReach] - g[kDet] * dy[r] * dy[r];
        const float mid = centre - g[kSkew] * dy[r], half = std::sqrt(std::max(disc, 0.f)) * g[kInvA];
        begin[r] = (int)std::max(0.f, std::ceil(mid - half - kSpanSlack));
        end[r] = disc >= 0.f ? (int)std::min(width, std::floor(mid + half + kSpanSlack) + 1.f) : 0;
    }
    int count = 0;
    for (int r = row_begin; r < row_end; ++r) {
        if (begin[r] >= end[r]) continue;
        for (int x = end[r] - begin[r] <= kLanes ? std::min(begin[r], kTileSize - kLanes) : 0; x < end[r];
             x += kLanes)
            runs[count++] = {r * kTileSize + x, (float)(px.x0 + x) + 0.5f - g[kMeanX], dy[r]};
    }
    return count;
}

// Opacity of a Gaussian at offset (dx, dy) by splat_alpha's rules, and the
// exponential G behind it, which the backward pass needs too.
inline float sample_alpha(Sym2 conic, float opacity, float dx, float dy, float& G) {
    const float power = gaussian_power(conic, dx, dy);
    G = exp_of_power(power);
    return splat_alpha_from_exp(opacity, power, G);
}

// Per-thread compositing state of a tile's pixels.
struct ForwardTile {
    // The sign marks pixels that are done: they reached kMinTransmittance, or
    // lie outside the image. The magnitude is the transmittance.
    std::vector<float> T;
    std::vector<float> accum;  // a plane of kTilePixels per blended value
    std::vector<int32_t> processed;
};

// Blends the tile's `count` Gaussians, `ids` in depth order.
SPLAT_VECTOR_CLONES
void blend_tile_forward(const GaussianTable& table, const int32_t* ids, int count, int num_values,
                        const TilePixels& px, ForwardTile& s) {
    const int w = px.x1 - px.x0, h = px.y1 - px.y0;
    for (int p = 0; p < kTilePixels; ++p) s.T[p] = p % kTileSize < w && p / kTileSize < h ? 1.f : -1.f;
    std::fill(s.accum.begin(), s.accum.end(), 0.f);
    std::fill(s.processed.begin(), s.processed.end(), 0);
    // Pixels that reached kMinTransmittance, counted per lane.
    int32_t finished[kLanes] = {};
    Run runs[kMaxRuns];
    for (int k = 0; k < count; ++k) {
        if (k + kPrefetchAhead < count) table.prefetch(ids[k + kPrefetchAhead]);
        const float* g = table[ids[k]];
        const Sym2 conic = {g[kConicA], g[kConicB], g[kConicC]};
        const float opacity = g[kOpacity];
        const float* value = g + kValues;
        const int num_runs = visible_runs(g, px, runs);
        for (int r = 0; r < num_runs; ++r) {
            const Run run = runs[r];
            float* T = &s.T[run.p];
            int32_t* processed = &s.processed[run.p];
            float weight[kLanes];
            // Live pixels have T >= kMinTransmittance and done ones T < 0, so a
            // skipped sample (alpha 0) leaves T as it is and cannot finish a
            // pixel. Nothing here tests alpha itself: GCC cannot vectorise the
            // masks it derives from such a test through splat_alpha's rules.
#pragma omp simd
            for (int i = 0; i < kLanes; ++i) {
                float G;
                const float alpha = sample_alpha(conic, opacity, run.dx + i, run.dy, G);
                const float next_T = T[i] * (1.f - alpha);
                const bool contributes = next_T >= kMinTransmittance;
                const bool finishes = (T[i] > 0.f) & !contributes;
                finished[i] += finishes;
                weight[i] = contributes ? alpha * T[i] : 0.f;
                processed[i] = weight[i] > 0.f ? k + 1 : processed[i];
                T[i] = contributes ? next_T : (finishes ? -T[i] : T[i]);
            }
            for (int v = 0; v < num_values; ++v) {
                float* accum = &s.accum[(size_t)v * kTilePixels + run.p];
#pragma omp simd
                for (int i = 0; i < kLanes; ++i) accum[i] += weight[i] * value[v];
            }
        }
        int all_finished = 0;
        for (int i = 0; i < kLanes; ++i) all_finished += finished[i];
        if (all_finished == w * h) break;
    }
}

// Per-thread state of the back-to-front walk over a tile's pixels.
struct BackwardTile {
    std::vector<float> T;
    // T_final * d(T_final), the final transmittance's part of d(alpha).
    std::vector<float> final_term;
    // The values behind the current Gaussian enter d(alpha) only through their
    // dot product with d(pixel), which obeys the same blending recurrence.
    std::vector<float> behind;
    std::vector<float> d_pixel;  // a plane of kTilePixels per blended value
    std::vector<int32_t> processed;
    // Per-lane partial sums of the current Gaussian's gradient, kLanes per entry.
    std::vector<float> grad;
};

// Per-Gaussian layout of a gradient: mean2d(2) abs(2) conic(3) opacity, then
// the blended values: depth, colour(C).
constexpr int kValueGrad = 8;

// Adds the gradient over the tile's pixels of each of its first `count`
// Gaussians, `ids` in depth order, to its entry of `buf`.
SPLAT_VECTOR_CLONES
void blend_tile_backward(const GaussianTable& table, const int32_t* ids, int count, int num_values,
                         const TilePixels& px, BackwardTile& s, float* buf) {
    const int stride = kValueGrad + num_values;
    float* grad = s.grad.data();
    Run runs[kMaxRuns];
    for (int k = count - 1; k >= 0; --k) {
        if (k >= kPrefetchAhead) table.prefetch(ids[k - kPrefetchAhead]);
        const float* g = table[ids[k]];
        const Sym2 conic = {g[kConicA], g[kConicB], g[kConicC]};
        const float opacity = g[kOpacity];
        const float* value = g + kValues;
        std::fill(s.grad.begin(), s.grad.end(), 0.f);
        const int num_runs = visible_runs(g, px, runs);
        for (int r = 0; r < num_runs; ++r) {
            const Run run = runs[r];
            float* T = &s.T[run.p];
            const int32_t* processed = &s.processed[run.p];
            float alpha[kLanes], G[kLanes], undo[kLanes], weight[kLanes], dot[kLanes];
#pragma omp simd
            for (int i = 0; i < kLanes; ++i) {
                const float a = sample_alpha(conic, opacity, run.dx + i, run.dy, G[i]);
                alpha[i] = k < processed[i] ? a : 0.f;
                // Undoing this Gaussian's blend gives the transmittance in
                // front of it; where alpha is 0, T stays as it is.
                undo[i] = 1.f / (1.f - alpha[i]);
                T[i] *= undo[i];
                weight[i] = alpha[i] * T[i];
                dot[i] = 0.f;
            }
            for (int v = 0; v < num_values; ++v) {
                const float* d_pixel = &s.d_pixel[(size_t)v * kTilePixels + run.p];
                float* d_value = grad + (kValueGrad + v) * kLanes;
#pragma omp simd
                for (int i = 0; i < kLanes; ++i) {
                    d_value[i] += weight[i] * d_pixel[i];
                    dot[i] += value[v] * d_pixel[i];
                }
            }
            const float* final_term = &s.final_term[run.p];
            float* behind = &s.behind[run.p];
#pragma omp simd
            for (int i = 0; i < kLanes; ++i) {
                const float a = alpha[i], dx = run.dx + i;
                const float d_alpha = (dot[i] - behind[i]) * T[i] - final_term[i] * undo[i];
                behind[i] = a * dot[i] + (1.f - a) * behind[i];  // stays where alpha is 0
                const AlphaGradient ag =
                    splat_alpha_vjp_from_exp(conic, opacity, G[i], dx, run.dy, a > 0.f ? d_alpha : 0.f);
                grad[0 * kLanes + i] += ag.d_mean2d[0];
                grad[1 * kLanes + i] += ag.d_mean2d[1];
                grad[2 * kLanes + i] += std::abs(ag.d_mean2d[0]);
                grad[3 * kLanes + i] += std::abs(ag.d_mean2d[1]);
                grad[4 * kLanes + i] += ag.d_conic.a;
                grad[5 * kLanes + i] += ag.d_conic.b;
                grad[6 * kLanes + i] += ag.d_conic.c;
                grad[7 * kLanes + i] += ag.d_opacity;
            }
        }
        if (k > 0) {
            // The next Gaussian's entry, most likely not in cache.
            const float* next = buf + (size_t)ids[k - 1] * stride;
            __builtin_prefetch(next, 1);
            __builtin_prefetch(next + stride - 1, 1);
        }
        float* gb = buf + (size_t)ids[k] * stride;
        for (int j = 0; j < stride; ++j) {
            const float* g = grad + j * kLanes;
            gb[j] += ((g[0] + g[4]) + (g[1] + g[5])) + ((g[2] + g[6]) + (g[3] + g[7]));
        }
    }
}

}  // namespace

void blend_forward(const BlendInputs& in, const BlendOutputs& out) {
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;
    const int camera_tiles = tiles_per_camera(in.width, in.height);
    const int num_tiles = in.num_cameras * camera_tiles;
    // The inputs do not say how many Gaussians there are; the pairs name every one drawn.
    int num_gaussians = 0;
    for (int tile = 0; tile < num_tiles; ++tile)
        for (int i = in.tile_ranges[2 * tile]; i < in.tile_ranges[2 * tile + 1]; ++i)
            num_gaussians = std::max(num_gaussians, in.sorted_ids[i] + 1);
    const GaussianTable table(in, num_gaussians);
#pragma omp parallel
    {
        ForwardTile s;
        s.T.resize(kTilePixels);
        s.accum.resize((size_t)kTilePixels * (C + 1));
        s.processed.resize(kTilePixels);
#pragma omp for schedule(dynamic, 1)
        for (int tile = 0; tile < num_tiles; ++tile) {
            const int camera = tile / camera_tiles;
            const TilePixels px = tile_pixels(tile % camera_tiles, in.width, in.height);
            const int start = in.tile_ranges[2 * tile], count = in.tile_ranges[2 * tile + 1] - start;
            blend_tile_forward(table, in.sorted_ids + start, count, C + 1, px, s);
            const int w = px.x1 - px.x0;
            for (int y = px.y0; y < px.y1; ++y) {
                const int row = (y - px.y0) * kTileSize;
                const int64_t local = (int64_t)y * in.width + px.x0, pix = camera * plane + local;
                float* T = &s.T[row];
                for (int x = 0; x < w; ++x) T[x] = std::abs(T[x]);
                for (int c = 0; c < C; ++c) {
                    const float* accum = &s.accum[(size_t)(1 + c) * kTilePixels + row];
                    const float background = in.background[c];
                    float* image = out.image + ((int64_t)camera * C + c) * plane + local;
                    for (int x = 0; x < w; ++x) image[x] = accum[x] + T[x] * background;
                }
                std::copy(T, T + w, out.final_transmittance + pix);
                std::copy(&s.accum[row], &s.accum[row] + w, out.depth + pix);
                std::copy(&s.processed[row], &s.processed[row] + w, out.num_processed + pix);
            }
        }
    }
}

void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out) {
    const int C = in.num_channels;
    const int64_t plane = (int64_t)in.width * in.height;
    const int camera_tiles = tiles_per_camera(in.width, in.height);
    const int num_threads = omp_get_max_threads();
    const int stride = kValueGrad + 1 + C;
    std::vector<float> buffers((size_t)num_threads * num_gaussians * stride, 0.f);
    const GaussianTable table(in, num_gaussians);

#pragma omp parallel num_threads(num_threads)
    {
        float* buf = buffers.data() + (size_t)omp_get_thread_num() * num_gaussians * stride;
        BackwardTile s;
        for (auto* v : {&s.T, &s.final_term, &s.behind}) v->resize(kTilePixels);
        s.d_pixel.resize((size_t)kTilePixels * (C + 1));
        s.processed.resize(kTilePixels);
        s.grad.resize((size_t)stride * kLanes);
        // A fixed tile-to-thread assignment keeps the sums reproducible; each camera's tiles are assigned as a
        // call for that camera alone assigns them, so that its gradients are the same sums.
        for (int camera = 0; camera < in.num_cameras; ++camera)
#pragma omp for schedule(static, 1) nowait
        for (int camera_tile = 0; camera_tile < camera_tiles; ++camera_tile) {
            const int tile = camera * camera_tiles + camera_tile;
            const TilePixels px = tile_pixels(camera_tile, in.width, in.height);
            const int start = in.tile_ranges[2 * tile], count = in.tile_ranges[2 * tile + 1] - start;
            // Pixels outside the image contribute nothing: processed is 0 there.
            std::fill(s.processed.begin(), s.processed.end(), 0);
            int last = 0;  // one past the last Gaussian any pixel of the tile reached
            const int w = px.x1 - px.x0;
            for (int y = px.y0; y < px.y1; ++y) {
                const int row = (y - px.y0) * kTileSize;
                const int64_t local = (int64_t)y * in.width + px.x0, pix = camera * plane + local;
                float d_T_final[kTileSize];
                std::copy(grads.d_final_transmittance + pix, grads.d_final_transmittance + pix + w, d_T_final);
                std::copy(grads.d_depth + pix, grads.d_depth + pix + w, &s.d_pixel[row]);
                for (int c = 0; c < C; ++c) {
                    const float* d_image = grads.d_image + ((int64_t)camera * C + c) * plane + local;
                    const float background = in.background[c];
                    float* d_pixel = &s.d_pixel[(size_t)(1 + c) * kTilePixels + row];
                    for (int x = 0; x < w; ++x) {
                        d_pixel[x] = d_image[x];
                        d_T_final[x] += background * d_image[x];
                    }
                }
                for (int x = 0; x < w; ++x) {
                    s.T[row + x] = final_transmittance[pix + x];
                    s.final_term[row + x] = s.T[row + x] * d_T_final[x];
                    s.behind[row + x] = 0.f;
                    s.processed[row + x] = num_processed[pix + x];
                    last = std::max(last, s.processed[row + x]);
                }
            }
            blend_tile_backward(table, in.sorted_ids + start, std::min(last, count), C + 1, px, s, buf);
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
        out.d_depths[g] = sum[kValueGrad];
        for (int c = 0; c < C; ++c) out.d_colors[(int64_t)g * C + c] = sum[kValueGrad + 1 + c];
    }
}

}  // namespace cpu
}  // namespace splat
