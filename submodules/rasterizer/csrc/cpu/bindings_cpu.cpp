// The CPU extension module: the stage functions of cpu/*.cpp behind the
// shared torch bindings.
#include "../bindings.h"

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

}  // namespace splat

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { splat::Bindings<splat::CpuBackend>::define(m); }
