// Stage 1 on the GPU: one thread per Gaussian, the same per-Gaussian logic as
// cpu/preprocess.cpp; blockIdx.y is the camera, so no block mixes two. In
// backward every Gaussian adds to its camera's gradient, so it is summed per
// warp and then per block, and each block adds its sum with one atomic per
// entry.
#include "stages_cuda.h"

namespace splat {
namespace cuda {

namespace {

constexpr int kBlockSize = 256;
constexpr int kWarpsPerBlock = kBlockSize / kWarpSize;

// Camera gradient of one Gaussian, or a sum over many, as flat floats for the
// reductions: d(rotation) row-major, d(translation), d(camera centre).
constexpr int kCameraGradientSize = 15;

// The row of this thread's Gaussian as blockIdx.y's camera sees it, or -1 past the end.
__device__ int row_of_thread(const GaussianParams& g) {
    const int per_camera = g.num_gaussians / g.num_cameras;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    return i < per_camera ? (int)blockIdx.y * per_camera + i : -1;
}

__global__ void __launch_bounds__(kBlockSize)
    preprocess_forward_kernel(GaussianParams g, const Camera* cameras, PreprocessOutputs out) {
    const int i = row_of_thread(g);
    const Camera cam = cameras[blockIdx.y];
    if (i >= 0) preprocess_gaussian(i, g, cam, camera_centre(cam), out);
}

// CameraGradient as flat floats for the reductions, and back.
__device__ void flatten(const CameraGradient& c, float flat[kCameraGradientSize]) {
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) flat[3 * r + k] = c.d_rotation.m[r][k];
    flat[9] = c.d_translation.x;
    flat[10] = c.d_translation.y;
    flat[11] = c.d_translation.z;
    flat[12] = c.d_centre.x;
    flat[13] = c.d_centre.y;
    flat[14] = c.d_centre.z;
}

__device__ CameraGradient unflatten(const float flat[kCameraGradientSize]) {
    CameraGradient c;
    for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) c.d_rotation.m[r][k] = flat[3 * r + k];
    c.d_translation = {flat[9], flat[10], flat[11]};
    c.d_centre = {flat[12], flat[13], flat[14]};
    return c;
}

__global__ void __launch_bounds__(kBlockSize)
    preprocess_backward_kernel(GaussianParams g, const Camera* cameras, const int32_t* radii, const float* colors,
                               PreprocessGradients grads, ParamGradients out) {
    __shared__ float warp_sums[kWarpsPerBlock][kCameraGradientSize];
    const int i = row_of_thread(g);
    const Camera cam = cameras[blockIdx.y];
    // Threads past the end add zeros: every lane must take part in the reductions.
    CameraGradient mine = zero_camera_gradient();
    if (i >= 0) preprocess_gaussian_backward(i, g, cam, camera_centre(cam), radii, colors, grads, out, mine);
    float camera_gradient[kCameraGradientSize];
    flatten(mine, camera_gradient);

    const int warp = threadIdx.x / kWarpSize;
#pragma unroll
    for (int k = 0; k < kCameraGradientSize; ++k) camera_gradient[k] = warp_sum(camera_gradient[k]);
    if (lane_index() == 0)
        for (int k = 0; k < kCameraGradientSize; ++k) warp_sums[warp][k] = camera_gradient[k];
    __syncthreads();
    if (threadIdx.x == 0) {
        float block_sum[kCameraGradientSize] = {};
        for (int w = 0; w < kWarpsPerBlock; ++w)
            for (int k = 0; k < kCameraGradientSize; ++k) block_sum[k] += warp_sums[w][k];
        // One atomic per entry and block; camera_gradient_to_matrix is linear, so
        // applying it to the block's sum equals applying it per Gaussian.
        float d_world_to_camera[16] = {};
        camera_gradient_to_matrix(cam, unflatten(block_sum), d_world_to_camera);
        float* target = out.d_world_to_camera + 16 * blockIdx.y;
        for (int k = 0; k < 12; ++k) atomicAdd(target + k, d_world_to_camera[k]);  // top 3 rows
    }
}

}  // namespace

// One row of blocks per camera.
dim3 camera_grid(const GaussianParams& g) {
    return dim3(blocks_for(g.num_gaussians / g.num_cameras, kBlockSize), (unsigned)g.num_cameras);
}

void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out,
                        cudaStream_t stream) {
    if (g.num_gaussians <= 0) return;
    preprocess_forward_kernel<<<camera_grid(g), kBlockSize, 0, stream>>>(g, cams.cameras, out);
    check_launch("preprocess_forward");
}

void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out, cudaStream_t stream) {
    if (g.num_gaussians <= 0) return;
    preprocess_backward_kernel<<<camera_grid(g), kBlockSize, 0, stream>>>(g, cams.cameras, radii, colors, grads,
                                                                          out);
    check_launch("preprocess_backward");
}

}  // namespace cuda
}  // namespace splat
