// CUDA launchers of the pipeline stages: the same contract as splat::cpu in
// stages.h, with every buffer in device memory and the work queued on
// `stream`. Plain CUDA/C++ without torch, so nvcc compiles the kernels on its
// own. A failed CUDA call throws std::runtime_error naming the stage.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "../stages.h"

namespace splat {
namespace cuda {

// cams.cameras in device memory.
void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out,
                        cudaStream_t stream);
void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out, cudaStream_t stream);

// Bytes of device scratch that bin_and_sort needs for these sizes.
size_t sort_workspace_bytes(int64_t num_gaussians, int64_t num_pairs, int64_t num_tiles);
// Fills tile_ranges (num_cameras x tiles per camera x 2, zero-initialised by
// the caller) and sorted_ids (num_pairs); num_gaussians counts the rows of
// every camera; tiles_touched and tile_extents must be what preprocess_forward wrote.
void bin_and_sort(int num_gaussians, const float* means2d, const float* depths, const int32_t* tiles_touched,
                  const int32_t* tile_extents, int width, int height, int64_t num_pairs, int32_t* tile_ranges,
                  int32_t* sorted_ids, uint8_t* workspace, size_t workspace_bytes, int num_cameras,
                  cudaStream_t stream);

void blend_forward(const BlendInputs& in, const BlendOutputs& out, cudaStream_t stream);
void blend_backward(const BlendInputs& in, const float* final_transmittance, const int32_t* num_processed,
                    const BlendGradients& grads, int num_gaussians, const BlendParamGradients& out,
                    cudaStream_t stream);

inline void check_cuda(cudaError_t status, const char* stage) {
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("gaussian_rasterizer CUDA ") + stage + " failed: " +
                                 cudaGetErrorString(status));
}

// Kernel launches report bad configurations only through cudaGetLastError.
inline void check_launch(const char* stage) { check_cuda(cudaGetLastError(), stage); }

inline unsigned blocks_for(int64_t count, int block_size) {
    return (unsigned)((count + block_size - 1) / block_size);
}

#if defined(__CUDACC__)
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

// Sum over the 32 lanes of a warp, valid in lane 0. Every lane must call it.
__device__ inline float warp_sum(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_down_sync(kFullWarp, value, offset);
    return value;
}

__device__ inline int lane_index() { return (int)(threadIdx.x + threadIdx.y * blockDim.x) % kWarpSize; }
#endif

}  // namespace cuda
}  // namespace splat
