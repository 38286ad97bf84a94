// Stage 1 on the CPU: per-Gaussian projection, colour and tile count, and its
// backward pass. Parallel over Gaussians.
#include <omp.h>

#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

void preprocess_forward(const GaussianParams& g, CameraList cams, const PreprocessOutputs& out) {
    const int per_camera = g.num_gaussians / cams.count;
    std::vector<Vec3> centres(cams.count);
    for (int c = 0; c < cams.count; ++c) centres[c] = camera_centre(cams.cameras[c]);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < g.num_gaussians; ++i)
        preprocess_gaussian(i, g, cams.cameras[i / per_camera], centres[i / per_camera], out);
}

void preprocess_backward(const GaussianParams& g, CameraList cams, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out) {
    const int per_camera = g.num_gaussians / cams.count;
    const int num_threads = omp_get_max_threads();
    // Per-thread camera gradients, summed in a fixed order for reproducibility. Each camera's rows are shared out
    // among the threads as one camera's alone would be, so that its gradient is summed as a call of its own sums it.
    std::vector<CameraGradient> camera((size_t)num_threads * cams.count, zero_camera_gradient());
#pragma omp parallel num_threads(num_threads)
    for (int c = 0; c < cams.count; ++c) {
        const Camera& cam = cams.cameras[c];
        const Vec3 centre = camera_centre(cam);
        CameraGradient& mine = camera[(size_t)omp_get_thread_num() * cams.count + c];
#pragma omp for schedule(static) nowait
        for (int i = c * per_camera; i < (c + 1) * per_camera; ++i)
            preprocess_gaussian_backward(i, g, cam, centre, radii, colors, grads, out, mine);
    }
    for (int c = 0; c < cams.count; ++c) {
        CameraGradient sum = zero_camera_gradient();
        for (int t = 0; t < num_threads; ++t) {
            const CameraGradient& part = camera[(size_t)t * cams.count + c];
            sum.d_rotation = mat_add(sum.d_rotation, part.d_rotation);
            sum.d_translation = add(sum.d_translation, part.d_translation);
            sum.d_centre = add(sum.d_centre, part.d_centre);
        }
        camera_gradient_to_matrix(cams.cameras[c], sum, out.d_world_to_camera + 16 * c);
    }
}

}  // namespace cpu
}  // namespace splat
