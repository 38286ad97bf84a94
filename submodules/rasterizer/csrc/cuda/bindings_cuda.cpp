// The CUDA extension module: the launchers of cuda/*.cu behind the shared
// torch bindings, queued on torch's current stream of the tensors' device (the
// bindings hold a device guard). A failed CUDA call surfaces as RuntimeError.
#include <c10/cuda/CUDAStream.h>

#include "../bindings.h"
#include "stages_cuda.h"

namespace splat {

struct CudaBackend {
    static void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out) {
        cuda::preprocess_forward(g, cams, out, at::cuda::getCurrentCUDAStream());
    }
    static void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii,
                                    const float* colors, const PreprocessGradients& grads,
                                    const ParamGradients& out) {
        cuda::preprocess_backward(g, cams, radii, colors, grads, out, at::cuda::getCurrentCUDAStream());
    }
    static size_t sort_workspace_bytes(int64_t num_gaussians, int64_t num_pairs, int64_t num_tiles) {
        return cuda::sort_workspace_bytes(num_gaussians, num_pairs, num_tiles);
    }
    static void bin_and_sort(int num_gaussians, const float* means2d, const float* depths,
                             const int32_t* tiles_touched, const int32_t* tile_extents, int width, int height,
                             int64_t num_pairs, int32_t* tile_ranges, int32_t* sorted_ids, uint8_t* workspace,
                             size_t workspace_bytes, int num_cameras) {
        cuda::bin_and_sort(num_gaussians, means2d, depths, tiles_touched, tile_extents, width, height, num_pairs,
                           tile_ranges, sorted_ids, workspace, workspace_bytes, num_cameras,
                           at::cuda::getCurrentCUDAStream());
    }
    static void blend_forward(const BlendInputs& in, const BlendOutputs& out) {
        cuda::blend_forward(in, out, at::cuda::getCurrentCUDAStream());
    }
    static void blend_backward(const BlendInputs& in, const float* final_T, const int32_t* num_processed,
                               const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out) {
        cuda::blend_backward(in, final_T, num_processed, grads, num_gaussians, out,
                             at::cuda::getCurrentCUDAStream());
    }
};

}  // namespace splat

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { splat::Bindings<splat::CudaBackend>::define(m); }
