// Stage 1 on the GPU: one thread per Gaussian, the same per-Gaussian logic as
// cpu/preprocess.cpp. In backward every Gaussian adds to the same camera
// gradient, so it is summed per warp and then per block, and each block adds
// its sum with one atomic per entry.
#include "stages_cuda.h"

namespace splat {
namespace cuda {

namespace {

constexpr int kBlockSize = 256;
constexpr int kWarpsPerBlock = kBlockSize / kWarpSize;

// Camera gradient of one Gaussian, or a sum over many, as flat floats for the
// reductions: d(rotation) row-major, d(translation), d(camera centre).
constexpr int kCameraGradientSize = 15;

__global__ void __launch_bounds__(kBlockSize)
    preprocess_forward_kernel(GaussianParams g, Camera cam, Vec3 centre, PreprocessOutputs out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= g.num_gaussians) return;
    const int tiles_x = tiles_along(cam.width), tiles_y = tiles_along(cam.height);
    out.radii[i] = 0;
    out.tiles_touched[i] = 0;
    const Vec3 mean = {g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2]};
    const Vec3 t = add(matvec(cam.rotation, mean), cam.translation);
    if (!(t.z > cam.near_plane && t.z < cam.far_plane)) return;

    const Mat3 cov = covariance_3d(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations);
    const Projection p = project_gaussian(cam, mean, cov);
    const float det = determinant(p.cov2d);
    if (!(det > 0.f)) return;
    const int radius = screen_radius(p.cov2d);
    int rect_min[2], rect_max[2];
    tile_rect(p.mean2d, radius, tiles_x, tiles_y, rect_min, rect_max);
    const int touched = (rect_max[0] - rect_min[0]) * (rect_max[1] - rect_min[1]);
    if (radius <= 0 || touched <= 0) return;

    const Sym2 conic = inverse(p.cov2d);
    out.radii[i] = radius;
    out.tiles_touched[i] = touched;
    out.means2d[2 * i] = p.mean2d[0];
    out.means2d[2 * i + 1] = p.mean2d[1];
    out.depths[i] = t.z;
    out.conics[3 * i] = conic.a;
    out.conics[3 * i + 1] = conic.b;
    out.conics[3 * i + 2] = conic.c;
    if (g.sh_coeffs)
        sh_to_color(g.sh_degree, g.sh_coeffs + (int64_t)i * g.sh_coeffs_per_gaussian * 3,
                    view_direction(mean, centre), out.colors + 3 * i);
}

// Gradients of Gaussian i; its camera gradient goes to `camera_gradient`.
__device__ void backward_one(int i, const GaussianParams& g, const Camera& cam, Vec3 centre, const int32_t* radii,
                             const float* colors, const PreprocessGradients& grads, const ParamGradients& out,
                             float camera_gradient[kCameraGradientSize]) {
    const int64_t sh_stride = (int64_t)g.sh_coeffs_per_gaussian * 3;
    for (int k = 0; k < 3; ++k) out.d_means[3 * i + k] = out.d_scales[3 * i + k] = 0.f;
    for (int k = 0; k < 4; ++k) out.d_rotations[4 * i + k] = 0.f;
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
    Mat3 d_rotation = zero_mat3();
    Vec3 d_translation = {0.f, 0.f, 0.f}, d_centre = {0.f, 0.f, 0.f};
    project_gaussian_vjp(cam, mean, cov, grads.d_means2d + 2 * i, d_cov2d, grads.d_depths[i], d_mean, d_cov,
                         d_rotation, d_translation);
    float d_scale[3], d_rot[4];
    covariance_3d_vjp(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations, d_cov, d_scale, d_rot);
    if (g.sh_coeffs)
        sh_to_color_vjp(g.sh_degree, g.sh_coeffs + i * sh_stride, mean, centre, colors + 3 * i,
                        grads.d_colors + 3 * i, out.d_sh_coeffs + i * sh_stride, d_mean, d_centre);
    for (int k = 0; k < 3; ++k) out.d_scales[3 * i + k] = d_scale[k];
    for (int k = 0; k < 4; ++k) out.d_rotations[4 * i + k] = d_rot[k];
    out.d_means[3 * i] = d_mean.x;
    out.d_means[3 * i + 1] = d_mean.y;
    out.d_means[3 * i + 2] = d_mean.z;

    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) camera_gradient[3 * r + c] = d_rotation.m[r][c];
    camera_gradient[9] = d_translation.x;
    camera_gradient[10] = d_translation.y;
    camera_gradient[11] = d_translation.z;
    camera_gradient[12] = d_centre.x;
    camera_gradient[13] = d_centre.y;
    camera_gradient[14] = d_centre.z;
}

// camera_centre_vjp is linear in d(centre), so applying it to a block's sum
// equals applying it per Gaussian.
__device__ void add_camera_gradient(const Camera& cam, const float sum[kCameraGradientSize],
                                    float* d_world_to_camera) {
    Mat3 d_rotation;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) d_rotation.m[r][c] = sum[3 * r + c];
    Vec3 d_translation = {sum[9], sum[10], sum[11]};
    camera_centre_vjp(cam, Vec3{sum[12], sum[13], sum[14]}, d_rotation, d_translation);
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) atomicAdd(d_world_to_camera + 4 * r + c, d_rotation.m[r][c]);
    atomicAdd(d_world_to_camera + 3, d_translation.x);
    atomicAdd(d_world_to_camera + 7, d_translation.y);
    atomicAdd(d_world_to_camera + 11, d_translation.z);
}

__global__ void __launch_bounds__(kBlockSize)
    preprocess_backward_kernel(GaussianParams g, Camera cam, Vec3 centre, const int32_t* radii,
                               const float* colors, PreprocessGradients grads, ParamGradients out) {
    __shared__ float warp_sums[kWarpsPerBlock][kCameraGradientSize];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    // Threads past the end add zeros: every lane must take part in the reductions.
    float camera_gradient[kCameraGradientSize] = {};
    if (i < g.num_gaussians) backward_one(i, g, cam, centre, radii, colors, grads, out, camera_gradient);

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
        add_camera_gradient(cam, block_sum, out.d_world_to_camera);
    }
}

}  // namespace

void preprocess_forward(const GaussianParams& g, const Camera& cam, const PreprocessOutputs& out,
                        cudaStream_t stream) {
    if (g.num_gaussians <= 0) return;
    preprocess_forward_kernel<<<blocks_for(g.num_gaussians, kBlockSize), kBlockSize, 0, stream>>>(
        g, cam, camera_centre(cam), out);
    check_launch("preprocess_forward");
}

void preprocess_backward(const GaussianParams& g, const Camera& cam, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out, cudaStream_t stream) {
    if (g.num_gaussians <= 0) return;
    preprocess_backward_kernel<<<blocks_for(g.num_gaussians, kBlockSize), kBlockSize, 0, stream>>>(
        g, cam, camera_centre(cam), radii, colors, grads, out);
    check_launch("preprocess_backward");
}

}  // namespace cuda
}  // namespace splat
