// Plain-C++ interface of the pipeline stages, shared by the CPU and CUDA
// backends. Buffers are raw pointers into memory the caller owns (host memory
// for the CPU backend, device memory for CUDA); no torch types appear here, so
// the kernels compile without torch headers.
//
// Pipeline: preprocess -> bin and sort -> blend, and backward in reverse.
//
// One call renders one or more cameras of one image size. With C cameras the
// per-Gaussian arrays hold C blocks of N rows, block c holding the Gaussians
// as camera c sees them, so every stage treats the C x N rows as Gaussians of
// their own; tiles are numbered camera by camera (camera c's tile t is
// c x tiles per camera + t), so one sort and one blend cover every camera.
#pragma once

#include <cstdint>

#include "splat_math.h"

namespace splat {

struct GaussianParams {
    int num_gaussians;        // rows: C x N
    const float* means;       // rows x 3
    const float* scales;      // rows x 3, activated
    const float* rotations;   // rows x 4, (w, x, y, z), used as given unless normalize_rotations
    const float* opacities;   // rows, activated
    // N x K x 3, one set shared by the cameras, or rows x K x 3 with sh_per_camera; null when colours are given
    // directly.
    const float* sh_coeffs;
    int sh_coeffs_per_gaussian;  // K
    int sh_degree;               // active degree, (sh_degree+1)^2 <= K
    bool normalize_rotations;
    int num_cameras = 1;  // C
    bool sh_per_camera = false;
};

// The cameras of one call, camera c for the rows [c N, (c + 1) N); all of one image size. In device memory for
// the CUDA backend.
struct CameraList {
    const Camera* cameras;
    int count;
    CameraList(const Camera& one) : cameras(&one), count(1) {}
    CameraList(const Camera* cameras_, int count_) : cameras(cameras_), count(count_) {}
};

// Row i's SH coefficients.
SPLAT_HD const float* sh_coeffs_of(const GaussianParams& g, int i) {
    const int row = g.sh_per_camera ? i : i % (g.num_gaussians / g.num_cameras);
    return g.sh_coeffs + (int64_t)row * g.sh_coeffs_per_gaussian * 3;
}

struct PreprocessOutputs {
    int32_t* radii;          // N, 0 where culled
    float* means2d;          // N x 2
    float* depths;           // N, camera-space z
    float* conics;           // N x 3
    float* colors;           // N x 3 from SH; unused without SH
    int32_t* tiles_touched;  // N
    int32_t* tile_extents;   // N x 2, half-widths in pixels of the box of tiles the Gaussian is binned to
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
    float* d_sh_coeffs;  // rows x K x 3 (per row, also where the cameras share them), or null
    float* d_world_to_camera;  // C x 4 x 4, accumulated
};

struct BlendInputs {
    int num_channels;
    int width, height;           // of each camera's image
    const int32_t* tile_ranges;  // C x tiles per camera x 2, [start, end) into sorted_ids
    const int32_t* sorted_ids;   // Gaussian index per (Gaussian, tile) pair
    const float* means2d;
    const float* conics;
    const float* opacities;
    const float* colors;         // N x C
    const float* depths;
    const float* background;     // num_channels
    int num_cameras = 1;         // C
};

// Each of them one image per camera.
struct BlendOutputs {
    float* image;            // C x num_channels x H x W, background included
    float* depth;            // C x H x W, sum of weight x depth
    float* final_transmittance;  // C x H x W
    int32_t* num_processed;  // C x H x W, list entries up to the last contributor
};

struct BlendGradients {
    const float* d_image;  // C x num_channels x H x W
    const float* d_depth;  // C x H x W
    const float* d_final_transmittance;  // C x H x W
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

SPLAT_HD int tiles_per_camera(int width, int height) { return tiles_along(width) * tiles_along(height); }

// ---------------------------------------------------------------------------
// The per-Gaussian work of the preprocess stage, run by both backends: one
// loop iteration on the CPU, one thread on the GPU.

// Projects Gaussian i; leaves radius and tile count at 0 where it is culled: outside the depth range, or where no
// pixel on screen can reach kMinAlpha.
SPLAT_HD void preprocess_gaussian(int i, const GaussianParams& g, const Camera& cam, Vec3 centre,
                                  const PreprocessOutputs& out) {
    out.radii[i] = 0;
    out.tiles_touched[i] = 0;
    const Vec3 mean = {g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2]};
    const Vec3 t = add(matvec(cam.rotation, mean), cam.translation);
    if (!(t.z > cam.near_plane && t.z < cam.far_plane)) return;

    const Mat3 cov = covariance_3d(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations);
    const Projection p = project_gaussian(cam, mean, cov);
    if (!(determinant(p.cov2d) > 0.f)) return;
    const int radius = screen_radius(p.cov2d, image_reach(p.mean2d, cam.width, cam.height));
    const Sym2 conic = inverse(p.cov2d);
    int32_t extent[2];
    if (radius <= 0 || !tile_extent(conic, g.opacities[i], radius, extent)) return;
    int rect_min[2], rect_max[2];
    tile_rect(p.mean2d, extent, tiles_along(cam.width), tiles_along(cam.height), rect_min, rect_max);
    const int touched = (rect_max[0] - rect_min[0]) * (rect_max[1] - rect_min[1]);
    if (touched <= 0) return;

    out.radii[i] = radius;
    out.tiles_touched[i] = touched;
    out.tile_extents[2 * i] = extent[0];
    out.tile_extents[2 * i + 1] = extent[1];
    out.means2d[2 * i] = p.mean2d[0];
    out.means2d[2 * i + 1] = p.mean2d[1];
    out.depths[i] = t.z;
    out.conics[3 * i] = conic.a;
    out.conics[3 * i + 1] = conic.b;
    out.conics[3 * i + 2] = conic.c;
    if (g.sh_coeffs)
        sh_to_color(g.sh_degree, sh_coeffs_of(g, i), view_direction(mean, centre), out.colors + 3 * i);
}

// What one Gaussian, or a sum over many, contributes to the camera gradient.
// The centre part still has to go through camera_centre_vjp, which is linear,
// so backends apply it once to their sum.
struct CameraGradient {
    Mat3 d_rotation;
    Vec3 d_translation;
    Vec3 d_centre;
};

SPLAT_HD CameraGradient zero_camera_gradient() { return {zero_mat3(), {0.f, 0.f, 0.f}, {0.f, 0.f, 0.f}}; }

// Writes the parameter gradients of Gaussian i and adds its camera gradient to `camera`.
SPLAT_HD void preprocess_gaussian_backward(int i, const GaussianParams& g, const Camera& cam, Vec3 centre,
                                           const int32_t* radii, const float* colors,
                                           const PreprocessGradients& grads, const ParamGradients& out,
                                           CameraGradient& camera) {
    const int64_t sh_stride = (int64_t)g.sh_coeffs_per_gaussian * 3;
    float* d_scale = out.d_scales + 3 * i;
    float* d_rot = out.d_rotations + 4 * i;
    for (int k = 0; k < 3; ++k) out.d_means[3 * i + k] = d_scale[k] = 0.f;
    for (int k = 0; k < 4; ++k) d_rot[k] = 0.f;
    if (out.d_sh_coeffs)
        for (int64_t k = 0; k < sh_stride; ++k) out.d_sh_coeffs[i * sh_stride + k] = 0.f;
    if (radii[i] <= 0) return;

    const Vec3 mean = {g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2]};
    const Mat3 cov = covariance_3d(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations);
    const Projection p = project_gaussian(cam, mean, cov);
    const Sym2 d_conic = {grads.d_conics[3 * i], grads.d_conics[3 * i + 1], grads.d_conics[3 * i + 2]};
    const Sym2 d_cov2d = inverse_vjp(inverse(p.cov2d), d_conic);

    Vec3 d_mean = {0.f, 0.f, 0.f};
    Mat3 d_cov = zero_mat3();
    project_gaussian_vjp(cam, mean, cov, grads.d_means2d + 2 * i, d_cov2d, grads.d_depths[i], d_mean, d_cov,
                         camera.d_rotation, camera.d_translation);
    covariance_3d_vjp(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations, d_cov, d_scale, d_rot);
    if (g.sh_coeffs)
        sh_to_color_vjp(g.sh_degree, sh_coeffs_of(g, i), mean, centre, colors + 3 * i,
                        grads.d_colors + 3 * i, out.d_sh_coeffs + i * sh_stride, d_mean, camera.d_centre);
    out.d_means[3 * i] = d_mean.x;
    out.d_means[3 * i + 1] = d_mean.y;
    out.d_means[3 * i + 2] = d_mean.z;
}

// Adds a summed camera gradient to the 4x4 world-to-camera gradient.
SPLAT_HD void camera_gradient_to_matrix(const Camera& cam, CameraGradient sum, float d_world_to_camera[16]) {
    camera_centre_vjp(cam, sum.d_centre, sum.d_rotation, sum.d_translation);
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) d_world_to_camera[4 * r + c] += sum.d_rotation.m[r][c];
    d_world_to_camera[3] += sum.d_translation.x;
    d_world_to_camera[7] += sum.d_translation.y;
    d_world_to_camera[11] += sum.d_translation.z;
}

namespace cpu {

void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out);
void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out);

// Fills tile_ranges (num_cameras x tiles per camera x 2) and sorted_ids (one
// entry per (Gaussian, tile) pair), each tile's Gaussians ordered front to
// back. num_gaussians counts the rows of every camera; tiles_touched and
// tile_extents are what preprocess_forward wrote.
void bin_and_sort(int num_gaussians, const float* means2d, const float* depths, const int32_t* tiles_touched,
                  const int32_t* tile_extents, int width, int height, int32_t* tile_ranges, int32_t* sorted_ids,
                  int num_cameras = 1);

void blend_forward(const BlendInputs& in, const BlendOutputs& out);
void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out);

}  // namespace cpu
}  // namespace splat
