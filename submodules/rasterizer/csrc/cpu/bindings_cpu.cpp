// The CPU extension module: the stage functions of cpu/*.cpp behind the
// shared torch bindings.
#include "../bindings.h"
#include "image_filter.h"

namespace splat {

struct CpuBackend {
    static void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out) {
        cpu::preprocess_forward(g, cams, out);
    }
    static void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii,
                                    const float* colors, const PreprocessGradients& grads,
                                    const ParamGradients& out) {
        cpu::preprocess_backward(g, cams, radii, colors, grads, out);
    }
    static size_t sort_workspace_bytes(int64_t, int64_t, int64_t) { return 0; }
    static void bin_and_sort(int num_gaussians, const float* means2d, const float* depths,
                             const int32_t* tiles_touched, const int32_t* tile_extents, int width, int height,
                             int64_t, int32_t* tile_ranges, int32_t* sorted_ids, uint8_t*, size_t, int num_cameras) {
        cpu::bin_and_sort(num_gaussians, means2d, depths, tiles_touched, tile_extents, width, height, tile_ranges,
                          sorted_ids, num_cameras);
    }
    static void blend_forward(const BlendInputs& in, const BlendOutputs& out) { cpu::blend_forward(in, out); }
    static void blend_backward(const BlendInputs& in, const float* final_T, const int32_t* num_processed,
                               const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out) {
        cpu::blend_backward(in, final_T, num_processed, grads, num_gaussians, out);
    }
};

inline void check_taps(const at::Tensor& taps) {
    check_input(taps, "taps", at::kCPU);
    TORCH_CHECK(taps.dim() == 1 && taps.size(0) % 2 == 1, "taps must be one-dimensional, of odd length");
}

// images (..., H, W), taps (K) with K odd; see cpu::separable_filter.
inline at::Tensor separable_filter(const at::Tensor& images, const at::Tensor& taps) {
    check_input(images, "images", at::kCPU);
    check_taps(taps);
    TORCH_CHECK(images.dim() >= 2, "images must be (..., H, W)");
    const int64_t height = images.size(-2), width = images.size(-1);
    at::Tensor out = at::empty_like(images);
    if (out.numel() > 0)
        cpu::separable_filter(images.data_ptr<float>(), images.numel() / (height * width), (int)height, (int)width,
                              taps.data_ptr<float>(), (int)taps.size(0), out.data_ptr<float>());
    return out;
}

// x and y (..., H, W) alike, taps as for separable_filter (reversed for ssim_backward).
inline cpu::SsimImages ssim_images(const at::Tensor& x, const at::Tensor& y, const at::Tensor& taps, double c1,
                                   double c2) {
    check_input(x, "x", at::kCPU);
    check_input(y, "y", at::kCPU);
    check_taps(taps);
    TORCH_CHECK(x.dim() >= 2 && x.sizes() == y.sizes(), "x and y must be (..., H, W) of one shape");
    const int64_t height = x.size(-2), width = x.size(-1);
    return {x.data_ptr<float>(), y.data_ptr<float>(), height * width > 0 ? x.numel() / (height * width) : 0,
            (int)height, (int)width, taps.data_ptr<float>(), (int)taps.size(0), (float)c1, (float)c2};
}

// (map, stats): the per-pixel SSIM and the statistics ssim_backward takes.
inline std::tuple<at::Tensor, at::Tensor> ssim_forward(const at::Tensor& x, const at::Tensor& y,
                                                       const at::Tensor& taps, double c1, double c2) {
    const cpu::SsimImages in = ssim_images(x, y, taps, c1, c2);
    at::Tensor map = at::empty_like(x);
    std::vector<int64_t> stats_shape{cpu::kSsimStats};
    stats_shape.insert(stats_shape.end(), x.sizes().begin(), x.sizes().end());
    at::Tensor stats = at::empty(stats_shape, x.options());
    if (in.planes > 0) cpu::ssim_forward(in, stats.data_ptr<float>(), map.data_ptr<float>());
    return {map, stats};
}

// (grad_x, grad_y), each empty where not wanted.
inline std::tuple<at::Tensor, at::Tensor> ssim_backward(const at::Tensor& x, const at::Tensor& y,
                                                        const at::Tensor& stats, const at::Tensor& grad_map,
                                                        const at::Tensor& taps, double c1, double c2, bool want_x,
                                                        bool want_y) {
    const cpu::SsimImages in = ssim_images(x, y, taps, c1, c2);
    check_input(stats, "stats", at::kCPU);
    check_input(grad_map, "grad_map", at::kCPU);
    TORCH_CHECK(grad_map.sizes() == x.sizes() && stats.numel() == cpu::kSsimStats * x.numel(),
                "grad_map and stats must match x");
    at::Tensor grad_x = want_x ? at::empty_like(x) : at::empty({0}, x.options());
    at::Tensor grad_y = want_y ? at::empty_like(y) : at::empty({0}, y.options());
    if (in.planes > 0)
        cpu::ssim_backward(in, stats.data_ptr<float>(), grad_map.data_ptr<float>(), optional_ptr(grad_x),
                           optional_ptr(grad_y));
    return {grad_x, grad_y};
}

}  // namespace splat

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    splat::Bindings<splat::CpuBackend>::define(m);
    m.def("separable_filter", &splat::separable_filter);
    m.def("ssim_forward", &splat::ssim_forward);
    m.def("ssim_backward", &splat::ssim_backward);
}
