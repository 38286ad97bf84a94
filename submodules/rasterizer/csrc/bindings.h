// Torch-facing wrappers of the pipeline stages, shared by the CPU and CUDA
// extension modules. `Backend` supplies the device and the stage functions of
// stages.h; everything here only allocates tensors and passes raw pointers.
// Argument checking with readable messages happens in Python; the checks here
// only guard the pointer arithmetic.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "stages.h"

namespace splat {

inline void check_input(const at::Tensor& t, const char* name, at::Device device) {
    TORCH_CHECK(t.device() == device, name, " must be on ", device, ", got ", t.device());
    TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32");
    TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// The cameras of one call, in the memory of the device whose stages read them.
struct Cameras {
    at::Tensor storage;  // count Camera structs
    int count;
    CameraList list() const { return {reinterpret_cast<const Camera*>(storage.data_ptr()), count}; }
};

// world_to_camera holds one 4x4 pose per camera (C x 4 x 4, or 4 x 4 for one); the cameras share the intrinsics.
inline Cameras cameras_from(const at::Tensor& world_to_camera, double fx, double fy, double cx, double cy,
                            int64_t width, int64_t height, double near_plane, double far_plane, at::Device device) {
    TORCH_CHECK(world_to_camera.numel() > 0 && world_to_camera.numel() % 16 == 0,
                "world_to_camera must be 4x4 or C x 4 x 4");
    const int64_t count = world_to_camera.numel() / 16;
    const at::Tensor host = world_to_camera.detach().to(at::kCPU, at::kFloat).contiguous();
    at::Tensor storage = at::empty({count * (int64_t)sizeof(Camera)}, at::TensorOptions().dtype(at::kByte));
    Camera* cameras = reinterpret_cast<Camera*>(storage.data_ptr());
    for (int64_t c = 0; c < count; ++c)
        cameras[c] = make_camera(host.data_ptr<float>() + 16 * c, (float)fx, (float)fy, (float)cx, (float)cy,
                                 (int)width, (int)height, (float)near_plane, (float)far_plane);
    return {storage.to(device), (int)count};
}

inline float* optional_ptr(const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<float>() : nullptr; }

template <class Backend>
struct Bindings {
    static GaussianParams gaussian_params(const at::Tensor& means, const at::Tensor& scales,
                                          const at::Tensor& rotations, const at::Tensor& opacities,
                                          const at::Tensor& sh_coeffs, int64_t sh_degree, bool normalize_rotations,
                                          int num_cameras) {
        const at::Device device = means.device();
        check_input(means, "means", device);
        check_input(scales, "scales", device);
        check_input(rotations, "rotations", device);
        check_input(opacities, "opacities", device);
        check_input(sh_coeffs, "sh_coeffs", device);
        const int64_t n = means.size(0);
        TORCH_CHECK(scales.numel() == 3 * n && rotations.numel() == 4 * n && opacities.numel() == n,
                    "per-Gaussian inputs disagree in length");
        TORCH_CHECK(n % num_cameras == 0 && n <= INT32_MAX, "means must hold the same Gaussians for every camera");
        GaussianParams g;
        g.num_gaussians = (int)n;
        g.num_cameras = num_cameras;
        g.sh_per_camera = num_cameras > 1 && sh_coeffs.numel() > 0 && sh_coeffs.size(0) == n;
        g.means = means.data_ptr<float>();
        g.scales = scales.data_ptr<float>();
        g.rotations = rotations.data_ptr<float>();
        g.opacities = opacities.data_ptr<float>();
        g.sh_coeffs = optional_ptr(sh_coeffs);
        g.sh_coeffs_per_gaussian = g.sh_coeffs ? (int)sh_coeffs.size(1) : 0;
        g.sh_degree = (int)sh_degree;
        g.normalize_rotations = normalize_rotations;
        TORCH_CHECK(!g.sh_coeffs || ((g.sh_per_camera || sh_coeffs.size(0) == n / num_cameras) &&
                                     sh_coeffs.size(2) == 3 &&
                                     sh_coeffs_for_degree(g.sh_degree) <= g.sh_coeffs_per_gaussian),
                    "sh_coeffs must be N x K x 3 or C N x K x 3 with K >= (sh_degree+1)^2");
        return g;
    }

    // -> radii, means2d, depths, conics, colors (empty without SH), tiles_touched, tile_extents
    static std::vector<at::Tensor> preprocess_forward(const at::Tensor& means, const at::Tensor& scales,
                                                      const at::Tensor& rotations, const at::Tensor& opacities,
                                                      const at::Tensor& sh_coeffs, const at::Tensor& world_to_camera,
                                                      double fx, double fy, double cx, double cy, int64_t width,
                                                      int64_t height, double near_plane, double far_plane,
                                                      int64_t sh_degree, bool normalize_rotations) {
        const at::OptionalDeviceGuard guard(device_of(means));
        const Cameras cams =
            cameras_from(world_to_camera, fx, fy, cx, cy, width, height, near_plane, far_plane, means.device());
        const GaussianParams g = gaussian_params(means, scales, rotations, opacities, sh_coeffs, sh_degree,
                                                 normalize_rotations, cams.count);
        const int64_t n = g.num_gaussians;
        const auto f = means.options();
        const auto i = f.dtype(at::kInt);
        at::Tensor radii = at::zeros({n}, i), tiles_touched = at::zeros({n}, i);
        at::Tensor means2d = at::zeros({n, 2}, f), depths = at::zeros({n}, f), conics = at::zeros({n, 3}, f);
        at::Tensor colors = at::zeros({g.sh_coeffs ? n : 0, 3}, f), tile_extents = at::zeros({n, 2}, i);
        PreprocessOutputs out = {radii.data_ptr<int32_t>(), means2d.data_ptr<float>(), depths.data_ptr<float>(),
                                 conics.data_ptr<float>(), colors.data_ptr<float>(), tiles_touched.data_ptr<int32_t>(),
                                 tile_extents.data_ptr<int32_t>()};
        if (n > 0) Backend::preprocess_forward(g, cams.list(), out);
        return {radii, means2d, depths, conics, colors, tiles_touched, tile_extents};
    }

    // -> d_means, d_scales, d_rotations, d_sh_coeffs (one set per row; empty without SH), d_world_to_camera
    static std::vector<at::Tensor> preprocess_backward(
        const at::Tensor& means, const at::Tensor& scales, const at::Tensor& rotations, const at::Tensor& opacities,
        const at::Tensor& sh_coeffs, const at::Tensor& world_to_camera, double fx, double fy, double cx, double cy,
        int64_t width, int64_t height, double near_plane, double far_plane, int64_t sh_degree,
        bool normalize_rotations, const at::Tensor& radii, const at::Tensor& colors, const at::Tensor& d_means2d,
        const at::Tensor& d_conics, const at::Tensor& d_colors, const at::Tensor& d_depths) {
        const at::OptionalDeviceGuard guard(device_of(means));
        const Cameras cams =
            cameras_from(world_to_camera, fx, fy, cx, cy, width, height, near_plane, far_plane, means.device());
        const GaussianParams g = gaussian_params(means, scales, rotations, opacities, sh_coeffs, sh_degree,
                                                 normalize_rotations, cams.count);
        const at::Device device = means.device();
        check_input(d_means2d, "d_means2d", device);
        check_input(d_conics, "d_conics", device);
        check_input(d_depths, "d_depths", device);
        if (g.sh_coeffs) {
            check_input(colors, "colors", device);
            check_input(d_colors, "d_colors", device);
        }
        at::Tensor d_means = at::zeros_like(means), d_scales = at::zeros_like(scales);
        at::Tensor d_rotations = at::zeros_like(rotations);
        at::Tensor d_sh = g.sh_coeffs ? at::zeros({means.size(0), sh_coeffs.size(1), 3}, means.options())
                                      : at::zeros_like(sh_coeffs);
        at::Tensor d_world_to_camera = at::zeros(world_to_camera.sizes(), means.options());
        const PreprocessGradients grads = {d_means2d.data_ptr<float>(), d_conics.data_ptr<float>(),
                                           g.sh_coeffs ? d_colors.data_ptr<float>() : nullptr,
                                           d_depths.data_ptr<float>()};
        const ParamGradients out = {d_means.data_ptr<float>(), d_scales.data_ptr<float>(),
                                    d_rotations.data_ptr<float>(), optional_ptr(d_sh),
                                    d_world_to_camera.data_ptr<float>()};
        if (g.num_gaussians > 0)
            Backend::preprocess_backward(g, cams.list(), radii.data_ptr<int32_t>(), optional_ptr(colors), grads, out);
        return {d_means, d_scales, d_rotations, d_sh, d_world_to_camera};
    }

    // -> tile_ranges (num_cameras x tiles per camera x 2), sorted_ids (num_pairs)
    static std::vector<at::Tensor> bin_and_sort(const at::Tensor& means2d, const at::Tensor& depths,
                                                const at::Tensor& tiles_touched, const at::Tensor& tile_extents,
                                                int64_t width, int64_t height, int64_t num_pairs,
                                                int64_t num_cameras) {
        const at::OptionalDeviceGuard guard(device_of(means2d));
        TORCH_CHECK(num_pairs >= 0 && num_pairs <= INT32_MAX, "num_pairs out of range");
        const int64_t num_tiles = num_cameras * tiles_per_camera((int)width, (int)height);
        TORCH_CHECK(num_cameras > 0 && num_tiles < INT32_MAX && means2d.size(0) % num_cameras == 0,
                    "num_cameras out of range");
        const auto i = means2d.options().dtype(at::kInt);
        at::Tensor tile_ranges = at::zeros({num_tiles, 2}, i);
        at::Tensor sorted_ids = at::empty({num_pairs}, i);
        at::Tensor workspace = at::empty(
            {(int64_t)Backend::sort_workspace_bytes(means2d.size(0), num_pairs, num_tiles)},
            means2d.options().dtype(at::kByte));
        Backend::bin_and_sort((int)means2d.size(0), means2d.data_ptr<float>(), depths.data_ptr<float>(),
                              tiles_touched.data_ptr<int32_t>(), tile_extents.data_ptr<int32_t>(), (int)width,
                              (int)height, num_pairs, tile_ranges.data_ptr<int32_t>(),
                              sorted_ids.data_ptr<int32_t>(), workspace.data_ptr<uint8_t>(),
                              (size_t)workspace.numel(), (int)num_cameras);
        return {tile_ranges, sorted_ids};
    }

    static BlendInputs blend_inputs(const at::Tensor& tile_ranges, const at::Tensor& sorted_ids,
                                    const at::Tensor& means2d, const at::Tensor& conics,
                                    const at::Tensor& opacities, const at::Tensor& colors, const at::Tensor& depths,
                                    const at::Tensor& background, int64_t width, int64_t height,
                                    int64_t num_cameras) {
        const at::Device device = means2d.device();
        check_input(colors, "colors", device);
        check_input(opacities, "opacities", device);
        check_input(background, "background", device);
        TORCH_CHECK(colors.dim() == 2 && background.numel() == colors.size(1),
                    "background must have one value per colour channel");
        return {(int)colors.size(1), (int)width, (int)height, tile_ranges.data_ptr<int32_t>(),
                sorted_ids.data_ptr<int32_t>(), means2d.data_ptr<float>(), conics.data_ptr<float>(),
                opacities.data_ptr<float>(), colors.data_ptr<float>(), depths.data_ptr<float>(),
                background.data_ptr<float>(), (int)num_cameras};
    }

    // -> image (num_cameras x channels x H x W), depth (num_cameras x H x W, unnormalised), final_transmittance,
    // num_processed
    static std::vector<at::Tensor> blend_forward(const at::Tensor& tile_ranges, const at::Tensor& sorted_ids,
                                                 const at::Tensor& means2d, const at::Tensor& conics,
                                                 const at::Tensor& opacities, const at::Tensor& colors,
                                                 const at::Tensor& depths, const at::Tensor& background,
                                                 int64_t width, int64_t height, int64_t num_cameras) {
        const at::OptionalDeviceGuard guard(device_of(means2d));
        const BlendInputs in = blend_inputs(tile_ranges, sorted_ids, means2d, conics, opacities, colors, depths,
                                            background, width, height, num_cameras);
        const auto f = means2d.options();
        at::Tensor image = at::empty({num_cameras, in.num_channels, height, width}, f);
        at::Tensor depth = at::empty({num_cameras, height, width}, f);
        at::Tensor final_T = at::empty({num_cameras, height, width}, f);
        at::Tensor num_processed = at::empty({num_cameras, height, width}, f.dtype(at::kInt));
        const BlendOutputs out = {image.data_ptr<float>(), depth.data_ptr<float>(), final_T.data_ptr<float>(),
                                  num_processed.data_ptr<int32_t>()};
        Backend::blend_forward(in, out);
        return {image, depth, final_T, num_processed};
    }

    // -> d_means2d, d_means2d_abs, d_conics, d_opacities, d_colors, d_depths
    static std::vector<at::Tensor> blend_backward(const at::Tensor& tile_ranges, const at::Tensor& sorted_ids,
                                                  const at::Tensor& means2d, const at::Tensor& conics,
                                                  const at::Tensor& opacities, const at::Tensor& colors,
                                                  const at::Tensor& depths, const at::Tensor& background,
                                                  int64_t width, int64_t height, int64_t num_cameras,
                                                  const at::Tensor& final_T,
                                                  const at::Tensor& num_processed, const at::Tensor& d_image,
                                                  const at::Tensor& d_depth, const at::Tensor& d_final_T) {
        const at::OptionalDeviceGuard guard(device_of(means2d));
        const BlendInputs in = blend_inputs(tile_ranges, sorted_ids, means2d, conics, opacities, colors, depths,
                                            background, width, height, num_cameras);
        const at::Device device = means2d.device();
        check_input(d_image, "d_image", device);
        check_input(d_depth, "d_depth", device);
        check_input(d_final_T, "d_final_transmittance", device);
        const int64_t n = means2d.size(0);
        const auto f = means2d.options();
        at::Tensor d_means2d = at::zeros({n, 2}, f), d_means2d_abs = at::zeros({n, 2}, f);
        at::Tensor d_conics = at::zeros({n, 3}, f), d_opacities = at::zeros({n}, f);
        at::Tensor d_colors = at::zeros({n, in.num_channels}, f), d_depths = at::zeros({n}, f);
        const BlendGradients grads = {d_image.data_ptr<float>(), d_depth.data_ptr<float>(),
                                      d_final_T.data_ptr<float>()};
        const BlendParamGradients out = {d_means2d.data_ptr<float>(), d_means2d_abs.data_ptr<float>(),
                                         d_conics.data_ptr<float>(), d_opacities.data_ptr<float>(),
                                         d_colors.data_ptr<float>(), d_depths.data_ptr<float>()};
        Backend::blend_backward(in, final_T.data_ptr<float>(), num_processed.data_ptr<int32_t>(), grads, (int)n,
                                out);
        return {d_means2d, d_means2d_abs, d_conics, d_opacities, d_colors, d_depths};
    }

    static void define(pybind11::module& m) {
        m.def("preprocess_forward", &preprocess_forward);
        m.def("preprocess_backward", &preprocess_backward);
        m.def("bin_and_sort", &bin_and_sort);
        m.def("blend_forward", &blend_forward);
        m.def("blend_backward", &blend_backward);
    }
};

}  // namespace splat
