// Plain-C++ interface of the pipeline stages, shared by the CPU and CUDA
// backends. Buffers are raw pointers into memory the caller owns (host memory
// for the CPU backend, device memory for CUDA); no torch types appear here, so
// the kernels compile without torch headers.
//
// Pipeline: preprocess -> bin and sort -> blend, and backward in reverse.
#pragma once

#include <cstdint>

#include "splat_math.h"

namespace splat {

struct GaussianParams {
    int num_gaussians;
    const float* means;       // N x 3
    const float* scales;      // N x 3, activated
    const float* rotations;   // N x 4, (w, x, y, z), used as given unless normalize_rotations
    const float* opacities;   // N, activated
    const float* sh_coeffs;   // N x K x 3, or null when colours are given directly
    int sh_coeffs_per_gaussian;  // K
    int sh_degree;               // active degree, (sh_degree+1)^2 <= K
    bool normalize_rotations;
};

struct PreprocessOutputs {
    int32_t* radii;          // N, 0 where culled
    float* means2d;          // N x 2
    float* depths;           // N, camera-space z
    float* conics;           // N x 3
    float* colors;           // N x 3 from SH; unused without SH
    int32_t* tiles_touched;  // N
};

struct PreprocessGradients {
    const float* d_means2d;  // N x 2
    const float* d_conics;   // N x 3, full-matrix gradient
    const float* d_colors;   // N x 3, or null without SH
    const float* d_depths;   // N
};

struct ParamGradients {
    float* d_means;      // N x 3
    float* d_scales;     // N x 3
    float* d_rotations;  // N x 4
    float* d_sh_coeffs;  // N x K x 3, or null
    float* d_world_to_camera;  // 4 x 4, accumulated
};

struct BlendInputs {
    int num_channels;
    int width, height;
    const int32_t* tile_ranges;  // num_tiles x 2, [start, end) into sorted_ids
    const int32_t* sorted_ids;   // Gaussian index per (Gaussian, tile) pair
    const float* means2d;
    const float* conics;
    const float* opacities;
    const float* colors;         // N x C
    const float* depths;
    const float* background;     // C
};

struct BlendOutputs {
    float* image;            // C x H x W, background included
    float* depth;            // H x W, sum of weight x depth
    float* final_transmittance;  // H x W
    int32_t* num_processed;  // H x W, list entries up to the last contributor
};

struct BlendGradients {
    const float* d_image;  // C x H x W
    const float* d_depth;  // H x W
    const float* d_final_transmittance;  // H x W
};

struct BlendParamGradients {
    float* d_means2d;      // N x 2
    float* d_means2d_abs;  // N x 2, sum over pixels of |per-pixel gradient|
    float* d_conics;       // N x 3
    float* d_opacities;    // N
    float* d_colors;       // N x C
    float* d_depths;       // N
};

SPLAT_HD int tiles_along(int pixels) { return (pixels + kTileSize - 1) / kTileSize; }

namespace cpu {

void preprocess_forward(const GaussianParams& g, const Camera& cam, const PreprocessOutputs& out);
void preprocess_backward(const GaussianParams& g, const Camera& cam, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out);

// Fills tile_ranges (num_tiles x 2) and sorted_ids (one entry per
// (Gaussian, tile) pair), each tile's Gaussians ordered front to back.
void bin_and_sort(int num_gaussians, const float* means2d, const float* depths, const int32_t* radii, int width,
                  int height, int32_t* tile_ranges, int32_t* sorted_ids);

void blend_forward(const BlendInputs& in, const BlendOutputs& out);
void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out);

}  // namespace cpu
}  // namespace splat
