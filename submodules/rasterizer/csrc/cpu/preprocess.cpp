// Stage 1 on the CPU: per-Gaussian projection, colour and tile count, and its
// backward pass. Parallel over Gaussians.
#include <omp.h>

#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

void preprocess_forward(const GaussianParams& g, const Camera& cam, const PreprocessOutputs& out) {
    const Vec3 centre = camera_centre(cam);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < g.num_gaussians; ++i) preprocess_gaussian(i, g, cam, centre, out);
}

void preprocess_backward(const GaussianParams& g, const Camera& cam, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out) {
    const Vec3 centre = camera_centre(cam);
    const int num_threads = omp_get_max_threads();
    // Per-thread camera gradients, summed in a fixed order for reproducibility.
    std::vector<CameraGradient> camera(num_threads, zero_camera_gradient());
#pragma omp parallel num_threads(num_threads)
    {
        CameraGradient& mine = camera[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int i = 0; i < g.num_gaussians; ++i)
            preprocess_gaussian_backward(i, g, cam, centre, radii, colors, grads, out, mine);
    }
    CameraGradient sum = zero_camera_gradient();
    for (const CameraGradient& t : camera) {
        sum.d_rotation = mat_add(sum.d_rotation, t.d_rotation);
        sum.d_translation = add(sum.d_translation, t.d_translation);
        sum.d_centre = add(sum.d_centre, t.d_centre);
    }
    camera_gradient_to_matrix(cam, sum, out.d_world_to_camera);
}

}  // namespace cpu
}  // namespace splat
