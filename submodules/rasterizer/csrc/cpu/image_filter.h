// Not a pipeline stage: the separable image filter and the SSIM built on it,
// which the training loss computes every step. On the CPU, torch's depthwise
// convolution and some forty per-pixel operations made the loss cost as much
// as the rasterizer's forward pass.
#pragma once

#include <cstdint>

namespace splat {
namespace cpu {

// Each of `planes` height x width images correlated with the outer product of
// taps (num_taps, odd, centred) with itself, borders zero-padded: out[y][x] =
// sum_ij taps[i] taps[j] in[y + i - r][x + j - r], r = num_taps / 2.
void separable_filter(const float* images, int64_t planes, int height, int width, const float* taps, int num_taps,
                      float* out);

// The local statistics of SSIM, each a plane of the filtered images x, y, x^2,
// y^2, xy: stats holds kSsimStats blocks of planes x height x width.
enum SsimStat { kMu1, kMu2, kMean11, kMean22, kMean12, kSsimStats };

struct SsimImages {
    const float* x;
    const float* y;
    int64_t planes;
    int height, width;
    const float* taps;  // odd length; for ssim_backward, the forward's taps reversed
    int num_taps;
    float c1, c2;  // the stabilisers of Wang et al.
};

// Per-pixel SSIM of x and y into map, and the statistics that ssim_backward
// takes.
void ssim_forward(const SsimImages& in, float* stats, float* map);

// The gradients of sum(grad_map * map) with respect to x and y, into grad_x
// and grad_y where they are not null.
void ssim_backward(const SsimImages& in, const float* stats, const float* grad_map, float* grad_x, float* grad_y);

}  // namespace cpu
}  // namespace splat
