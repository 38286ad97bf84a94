// Stage 1 on the CPU: per-Gaussian projection, colour and tile count, and its
// backward pass. Parallel over Gaussians.
#include <omp.h>

#include <vector>

#include "../stages.h"

namespace splat {
namespace cpu {

void preprocess_forward(const GaussianParams& g, const Camera& cam, const PreprocessOutputs& out) {
    const int tiles_x = tiles_along(cam.width), tiles_y = tiles_along(cam.height);
    const Vec3 centre = camera_centre(cam);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < g.num_gaussians; ++i) {
        out.radii[i] = 0;
        out.tiles_touched[i] = 0;
        const Vec3 mean = {g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2]};
        const Vec3 t = add(matvec(cam.rotation, mean), cam.translation);
        if (!(t.z > cam.near_plane && t.z < cam.far_plane)) continue;

        const Mat3 cov = covariance_3d(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations);
        const Projection p = project_gaussian(cam, mean, cov);
        const float det = determinant(p.cov2d);
        if (!(det > 0.f)) continue;
        const int radius = screen_radius(p.cov2d);
        int rect_min[2], rect_max[2];
        tile_rect(p.mean2d, radius, tiles_x, tiles_y, rect_min, rect_max);
        const int touched = (rect_max[0] - rect_min[0]) * (rect_max[1] - rect_min[1]);
        if (radius <= 0 || touched <= 0) continue;

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
}

void preprocess_backward(const GaussianParams& g, const Camera& cam, const int32_t* radii, const float* colors,
                         const PreprocessGradients& grads, const ParamGradients& out) {
    const Vec3 centre = camera_centre(cam);
    const int num_threads = omp_get_max_threads();
    // Per-thread camera gradients, reduced in a fixed order for reproducibility.
    std::vector<Mat3> d_rotation(num_threads, zero_mat3());
    std::vector<Vec3> d_translation(num_threads, Vec3{0.f, 0.f, 0.f});
    std::vector<Vec3> d_centre(num_threads, Vec3{0.f, 0.f, 0.f});
    const int64_t sh_stride = (int64_t)g.sh_coeffs_per_gaussian * 3;

#pragma omp parallel num_threads(num_threads)
    {
        const int tid = omp_get_thread_num();
#pragma omp for schedule(static)
        for (int i = 0; i < g.num_gaussians; ++i) {
            float* d_scale = out.d_scales + 3 * i;
            float* d_rot = out.d_rotations + 4 * i;
            for (int k = 0; k < 3; ++k) out.d_means[3 * i + k] = d_scale[k] = 0.f;
            for (int k = 0; k < 4; ++k) d_rot[k] = 0.f;
            if (out.d_sh_coeffs)
                for (int64_t k = 0; k < sh_stride; ++k) out.d_sh_coeffs[i * sh_stride + k] = 0.f;
            if (radii[i] <= 0) continue;

            const Vec3 mean = {g.means[3 * i], g.means[3 * i + 1], g.means[3 * i + 2]};
            const Mat3 cov = covariance_3d(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations);
            const Projection p = project_gaussian(cam, mean, cov);
            const Sym2 d_conic = {grads.d_conics[3 * i], grads.d_conics[3 * i + 1], grads.d_conics[3 * i + 2]};
            const Sym2 d_cov2d = inverse_vjp(inverse(p.cov2d), d_conic);

            Vec3 d_mean = {0.f, 0.f, 0.f};
            Mat3 d_cov = zero_mat3();
            project_gaussian_vjp(cam, mean, cov, grads.d_means2d + 2 * i, d_cov2d, grads.d_depths[i], d_mean, d_cov,
                                 d_rotation[tid], d_translation[tid]);
            covariance_3d_vjp(g.scales + 3 * i, g.rotations + 4 * i, g.normalize_rotations, d_cov, d_scale, d_rot);
            if (g.sh_coeffs)
                sh_to_color_vjp(g.sh_degree, g.sh_coeffs + i * sh_stride, mean, centre, colors + 3 * i,
                                grads.d_colors + 3 * i, out.d_sh_coeffs + i * sh_stride, d_mean, d_centre[tid]);
            out.d_means[3 * i] = d_mean.x;
            out.d_means[3 * i + 1] = d_mean.y;
            out.d_means[3 * i + 2] = d_mean.z;
        }
    }

    Mat3 total_rotation = zero_mat3();
    Vec3 total_translation = {0.f, 0.f, 0.f};
    for (int t = 0; t < num_threads; ++t) {
        camera_centre_vjp(cam, d_centre[t], d_rotation[t], d_translation[t]);
        total_rotation = mat_add(total_rotation, d_rotation[t]);
        total_translation = add(total_translation, d_translation[t]);
    }
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 3; ++c) out.d_world_to_camera[4 * r + c] += total_rotation.m[r][c];
    out.d_world_to_camera[3] += total_translation.x;
    out.d_world_to_camera[7] += total_translation.y;
    out.d_world_to_camera[11] += total_translation.z;
}

}  // namespace cpu
}  // namespace splat
