// Unit tests of the shared math header and the CPU stages, with no torch:
// closed-form values, invariants, and every VJP against central differences.
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "splat_math.h"
#include "stages.h"

using namespace splat;

static int failures = 0;

#define EXPECT(cond, ...)                                         \
    do {                                                          \
        if (!(cond)) {                                            \
            ++failures;                                           \
            std::printf("FAIL %s:%d: ", __FILE__, __LINE__);      \
            std::printf(__VA_ARGS__);                             \
            std::printf("\n");                                    \
        }                                                         \
    } while (0)

using Function = std::function<std::vector<float>(const std::vector<float>&)>;

// <upstream, f(x + h e_i) - f(x - h e_i)> / 2h for every i.
static std::vector<double> numeric_vjp(const Function& f, std::vector<float> x, const std::vector<float>& upstream,
                                       float h) {
    std::vector<double> grad(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const float keep = x[i];
        x[i] = keep + h;
        const auto plus = f(x);
        x[i] = keep - h;
        const auto minus = f(x);
        x[i] = keep;
        double g = 0.0;
        for (size_t k = 0; k < plus.size(); ++k) g += upstream[k] * ((double)plus[k] - minus[k]);
        grad[i] = g / (2.0 * h);
    }
    return grad;
}

static void expect_gradient_close(const char* what, const std::vector<double>& numeric,
                                  const std::vector<float>& analytic) {
    double scale = 1e-3;
    for (double v : numeric) scale = std::fmax(scale, std::fabs(v));
    for (size_t i = 0; i < numeric.size(); ++i)
        EXPECT(std::fabs(numeric[i] - analytic[i]) <= 2e-2 * scale, "%s[%zu]: numeric %g analytic %g", what, i,
               numeric[i], (double)analytic[i]);
}

static Camera test_camera() {
    const float c = std::cos(0.2f), s = std::sin(0.2f);
    const float view[16] = {c, 0.f, s, 0.3f, 0.f, 1.f, 0.f, -0.2f, -s, 0.f, c, 0.5f, 0.f, 0.f, 0.f, 1.f};
    return make_camera(view, 60.f, 55.f, 33.f, 21.f, 64, 40, 0.01f, 100.f);
}

static void test_rotation_matrix() {
    const float q[4] = {0.8f, 0.2f, -0.4f, 0.3f};
    float qn[4];
    normalize_quat(q, qn);
    const Mat3 r = quat_to_rotmat_raw(qn);
    const Mat3 rrt = matmul(r, transpose(r));
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            EXPECT(std::fabs(rrt.m[i][j] - (i == j ? 1.f : 0.f)) < 1e-5f, "R R^T[%d][%d] = %g", i, j, rrt.m[i][j]);
    // Without normalisation a scaled quaternion gives a different, non-orthonormal matrix.
    const float q2[4] = {2 * qn[0], 2 * qn[1], 2 * qn[2], 2 * qn[3]};
    const Mat3 r2 = quat_to_rotmat_raw(q2);
    EXPECT(std::fabs(r2.m[0][0] - r.m[0][0]) > 1e-2f, "scaled quaternion should change the raw matrix");
    const float s[3] = {0.5f, 1.f, 2.f};
    const Mat3 normalised = covariance_3d(s, q2, true), unit = covariance_3d(s, qn, false);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            EXPECT(std::fabs(normalised.m[i][j] - unit.m[i][j]) < 1e-5f, "normalize flag must normalise");
}

static void test_sh_addition_theorem() {
    // sum_m Y_lm(d)^2 = (2l + 1) / (4 pi) for every unit direction d.
    const Vec3 d = view_direction({0.3f, -0.5f, 0.8f}, {0.f, 0.f, 0.f});
    float Y[kMaxShCoeffs];
    sh_basis(3, d, Y);
    for (int l = 0; l <= 3; ++l) {
        double sum = 0.0;
        for (int k = l * l; k < (l + 1) * (l + 1); ++k) sum += (double)Y[k] * Y[k];
        EXPECT(std::fabs(sum - (2 * l + 1) / (4 * M_PI)) < 1e-5, "band %d sums to %g", l, sum);
    }
}

static void test_radius_and_tiles() {
    // Variances 9 and 1 along the axes: three standard deviations of the major axis.
    EXPECT(screen_radius({9.f, 0.f, 1.f}, 100.f) == 9, "radius %d", screen_radius({9.f, 0.f, 1.f}, 100.f));
    // A 3-sigma radius of 3e9 pixels overflows int32: the radius that covers the image stands in for it.
    const float centre[2] = {10.f, 5.f};
    EXPECT(image_reach(centre, 64, 40) == 54.f, "reach %g", image_reach(centre, 64, 40));
    EXPECT(screen_radius({1e18f, 0.f, 1e18f}, image_reach(centre, 64, 40)) == 54, "huge radius %d",
           screen_radius({1e18f, 0.f, 1e18f}, image_reach(centre, 64, 40)));
    int lo[2], hi[2];
    const float mean[2] = {20.f, 5.f};
    const int32_t box[2] = {6, 12};
    tile_rect(mean, box, 4, 3, lo, hi);
    EXPECT(lo[0] == 0 && hi[0] == 2 && lo[1] == 0 && hi[1] == 2, "rect %d..%d x %d..%d", lo[0], hi[0], lo[1], hi[1]);
    const float far_away[2] = {-1e30f, 1e30f};
    tile_rect(far_away, box, 4, 3, lo, hi);
    EXPECT(hi[0] - lo[0] <= 0 || hi[1] - lo[1] <= 0, "an off-screen Gaussian touches no tile");
}

static void test_tile_extent() {
    // The covariance of test_radius_and_tiles: variances 9 and 1, 3-sigma radius 9.
    const Sym2 conic = inverse({9.f, 0.f, 1.f});
    int32_t extent[2];
    // Opaque: alpha reaches 1/255 beyond 3 sigma along x, so the radius bounds the box there.
    EXPECT(tile_extent(conic, 1.f, 9, extent) && extent[0] == 9 && extent[1] == 4, "opaque box %d x %d", extent[0],
           extent[1]);
    // Faint: 2 ln(0.02 x 255) = 3.26, so alpha reaches 1/255 out to 5.4 pixels along x and 1.8 along y.
    EXPECT(tile_extent(conic, 0.02f, 9, extent) && extent[0] == 6 && extent[1] == 2, "faint box %d x %d", extent[0],
           extent[1]);
    EXPECT(splat_alpha(conic, 0.02f, 5.f, 0.f) > 0.f && splat_alpha(conic, 0.02f, 6.f, 0.f) == 0.f &&
               splat_alpha(conic, 0.02f, 0.f, 1.f) > 0.f && splat_alpha(conic, 0.02f, 0.f, 2.f) == 0.f,
           "the faint box holds every sample that blending keeps, and no more whole pixels");
    EXPECT(!tile_extent(conic, 0.003f, 9, extent), "under 1/255 everywhere: no box");
}

static void test_alpha_rules() {
    const Sym2 conic = {1.f, 0.f, 1.f};
    EXPECT(splat_alpha(conic, 1.f, 0.f, 0.f) == kMaxAlpha, "alpha is capped at 0.99");
    EXPECT(splat_alpha(conic, 0.5f, 0.f, 0.f) == 0.5f, "alpha at the centre is the opacity");
    EXPECT(splat_alpha(conic, 1.f, 4.f, 0.f) == 0.f, "samples under 1/255 are skipped");
}

static void test_covariance_vjp() {
    const std::vector<float> x = {0.3f, 0.7f, 1.2f, 0.9f, 0.3f, -0.5f, 0.2f};  // scale(3), quat(4)
    const std::vector<float> up = {0.3f, -1.f, 0.5f, 0.2f, 0.7f, -0.4f, 0.1f, 0.9f, -0.6f};
    for (bool normalize : {false, true}) {
        Function f = [&](const std::vector<float>& v) {
            const Mat3 c = covariance_3d(v.data(), v.data() + 3, normalize);
            return std::vector<float>(&c.m[0][0], &c.m[0][0] + 9);
        };
        Mat3 d_cov;
        for (int i = 0; i < 9; ++i) (&d_cov.m[0][0])[i] = up[i];
        std::vector<float> analytic(7);
        covariance_3d_vjp(x.data(), x.data() + 3, normalize, d_cov, analytic.data(), analytic.data() + 3);
        expect_gradient_close(normalize ? "covariance (normalised)" : "covariance", numeric_vjp(f, x, up, 1e-3f),
                              analytic);
    }
}

static void test_projection_vjp() {
    const Camera cam = test_camera();
    const float s[3] = {0.2f, 0.35f, 0.1f}, q[4] = {0.9f, 0.1f, 0.3f, -0.2f};
    const Mat3 cov = covariance_3d(s, q, false);
    // x = mean(3), cov(9), rotation(9), translation(3); outputs mean2d(2), cov2d(a, b, c), depth
    std::vector<float> x = {0.4f, -0.3f, 3.f};
    for (int i = 0; i < 9; ++i) x.push_back(0.5f * (&cov.m[0][0])[i]);
    for (int i = 0; i < 9; ++i) x.push_back((&cam.rotation.m[0][0])[i]);
    x.push_back(cam.translation.x);
    x.push_back(cam.translation.y);
    x.push_back(cam.translation.z);
    auto unpack = [&](const std::vector<float>& v, Vec3& mean, Mat3& c, Camera& camera) {
        mean = {v[0], v[1], v[2]};
        camera = cam;
        for (int i = 0; i < 9; ++i) {
            (&c.m[0][0])[i] = v[3 + i];
            (&camera.rotation.m[0][0])[i] = v[12 + i];
        }
        camera.translation = {v[21], v[22], v[23]};
    };
    Function f = [&](const std::vector<float>& v) {
        Vec3 mean;
        Mat3 c;
        Camera camera;
        unpack(v, mean, c, camera);
        // Perturb the covariance symmetrically, as a covariance can only move.
        const Projection p = project_gaussian(camera, mean, mat_add(c, transpose(c)));
        return std::vector<float>{p.mean2d[0], p.mean2d[1], p.cov2d.a, p.cov2d.b, p.cov2d.c, p.mean_camera.z};
    };
    // Full-matrix gradient of cov2d: the off-diagonal upstream is shared by b's two entries.
    const std::vector<float> up = {0.7f, -0.4f, 0.5f, 0.3f, -0.8f, 0.6f};
    const std::vector<float> up_numeric = {up[0], up[1], up[2], 2.f * up[3], up[4], up[5]};
    Vec3 d_mean = {0.f, 0.f, 0.f}, d_t = {0.f, 0.f, 0.f};
    Mat3 d_cov = zero_mat3(), d_rot = zero_mat3();
    const float d_mean2d[2] = {up[0], up[1]};
    project_gaussian_vjp(cam, {x[0], x[1], x[2]}, cov, d_mean2d, {up[2], up[3], up[4]}, up[5], d_mean, d_cov, d_rot,
                         d_t);
    std::vector<float> analytic = {d_mean.x, d_mean.y, d_mean.z};
    // d/dc of (c + c^T) is the symmetrised gradient.
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) analytic.push_back(d_cov.m[i][j] + d_cov.m[j][i]);
    for (int i = 0; i < 9; ++i) analytic.push_back((&d_rot.m[0][0])[i]);
    analytic.push_back(d_t.x);
    analytic.push_back(d_t.y);
    analytic.push_back(d_t.z);
    expect_gradient_close("projection", numeric_vjp(f, x, up_numeric, 1e-3f), analytic);
}

static void test_conic_vjp() {
    const std::vector<float> x = {2.f, 0.4f, 1.5f};
    Function f = [](const std::vector<float>& v) {
        const Sym2 q = inverse({v[0], v[1], v[2]});
        return std::vector<float>{q.a, q.b, q.c};
    };
    const Sym2 d_conic = {0.3f, -0.2f, 0.8f};  // full-matrix gradient
    const Sym2 d_cov = inverse_vjp(inverse({x[0], x[1], x[2]}), d_conic);
    // As functions of the three parameters, b enters the matrix twice.
    expect_gradient_close("conic", numeric_vjp(f, x, {d_conic.a, 2.f * d_conic.b, d_conic.c}, 1e-3f),
                          {d_cov.a, 2.f * d_cov.b, d_cov.c});
}

static void test_sh_vjp() {
    const int degree = 3, K = 16;
    std::vector<float> x(3 + 3 * K);  // mean, coeffs
    x[0] = 0.4f;
    x[1] = -0.7f;
    x[2] = 2.f;
    for (int i = 0; i < 3 * K; ++i) x[3 + i] = 0.3f * std::sin(1.7f * i + 0.3f);
    const Vec3 centre = {0.1f, 0.2f, -0.5f};
    Function f = [&](const std::vector<float>& v) {
        std::vector<float> rgb(3);
        sh_to_color(degree, v.data() + 3, view_direction({v[0], v[1], v[2]}, centre), rgb.data());
        return rgb;
    };
    const std::vector<float> up = {0.5f, -0.3f, 0.9f};
    const std::vector<float> rgb = f(x);
    EXPECT(rgb[0] > 0.f && rgb[1] > 0.f && rgb[2] > 0.f, "test point should not be clamped");
    std::vector<float> analytic(3 + 3 * K);
    Vec3 d_mean = {0.f, 0.f, 0.f}, d_centre = {0.f, 0.f, 0.f};
    sh_to_color_vjp(degree, x.data() + 3, {x[0], x[1], x[2]}, centre, rgb.data(), up.data(), analytic.data() + 3,
                    d_mean, d_centre);
    analytic[0] = d_mean.x;
    analytic[1] = d_mean.y;
    analytic[2] = d_mean.z;
    expect_gradient_close("sh colour", numeric_vjp(f, x, up, 1e-3f), analytic);
    EXPECT(std::fabs(d_centre.x + d_mean.x) < 1e-6f, "direction depends on mean - centre only");
}

static void test_alpha_vjp() {
    const std::vector<float> x = {0.8f, 0.3f, 0.6f, 10.f, 12.f, 0.7f};  // conic(3), mean(2), opacity
    const float px = 10.6f, py = 11.5f;
    Function f = [&](const std::vector<float>& v) {
        return std::vector<float>{splat_alpha({v[0], v[1], v[2]}, v[5], px - v[3], py - v[4])};
    };
    const AlphaGradient g = splat_alpha_vjp({x[0], x[1], x[2]}, x[5], px - x[3], py - x[4], 1.f);
    expect_gradient_close("alpha", numeric_vjp(f, x, {1.f}, 1e-3f),
                          {g.d_conic.a, 2.f * g.d_conic.b, g.d_conic.c, g.d_mean2d[0], g.d_mean2d[1], g.d_opacity});
}

static void test_camera_centre_vjp() {
    const Camera cam = test_camera();
    std::vector<float> x;
    for (int i = 0; i < 9; ++i) x.push_back((&cam.rotation.m[0][0])[i]);
    x.push_back(cam.translation.x);
    x.push_back(cam.translation.y);
    x.push_back(cam.translation.z);
    Function f = [&](const std::vector<float>& v) {
        Camera c = cam;
        for (int i = 0; i < 9; ++i) (&c.rotation.m[0][0])[i] = v[i];
        c.translation = {v[9], v[10], v[11]};
        const Vec3 centre = camera_centre(c);
        return std::vector<float>{centre.x, centre.y, centre.z};
    };
    Mat3 d_rot = zero_mat3();
    Vec3 d_t = {0.f, 0.f, 0.f};
    camera_centre_vjp(cam, {0.4f, -0.9f, 0.2f}, d_rot, d_t);
    std::vector<float> analytic(&d_rot.m[0][0], &d_rot.m[0][0] + 9);
    analytic.push_back(d_t.x);
    analytic.push_back(d_t.y);
    analytic.push_back(d_t.z);
    expect_gradient_close("camera centre", numeric_vjp(f, x, {0.4f, -0.9f, 0.2f}, 1e-3f), analytic);
}

// One opaque-ish Gaussian straight ahead, through the three CPU stages.
static void test_cpu_pipeline() {
    const float view[16] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1};
    // The centre projects onto the corner shared by all four tiles of a 20 x 18 image.
    const Camera cam = make_camera(view, 20.f, 20.f, 16.f, 16.f, 20, 18, 0.01f, 100.f);
    const float means[3] = {0.f, 0.f, 2.f}, scales[3] = {0.1f, 0.1f, 0.1f}, rotations[4] = {1.f, 0.f, 0.f, 0.f};
    const float opacities[1] = {0.8f}, colors[2] = {0.25f, 1.f}, background[2] = {0.5f, 0.f};
    GaussianParams g = {1, means, scales, rotations, opacities, nullptr, 0, 0, false};
    int32_t radii[1], touched[1], extents[2];
    float means2d[2], depths[1], conics[3];
    cpu::preprocess_forward(g, cam, {radii, means2d, depths, conics, nullptr, touched, extents});
    EXPECT(radii[0] > 0 && touched[0] == 4, "radius %d, tiles %d", radii[0], touched[0]);
    EXPECT(std::fabs(means2d[0] - 16.f) < 1e-6f && std::fabs(depths[0] - 2.f) < 1e-6f, "projected centre");

    std::vector<int32_t> ranges(2 * 4), ids(touched[0]);
    cpu::bin_and_sort(1, means2d, depths, touched, extents, cam.width, cam.height, ranges.data(), ids.data());
    std::vector<float> image(2 * 20 * 18), depth(20 * 18), final_t(20 * 18);
    std::vector<int32_t> processed(20 * 18);
    const BlendInputs in = {2, 20, 18, ranges.data(), ids.data(), means2d, conics, opacities, colors, depths,
                            background};
    cpu::blend_forward(in, {image.data(), depth.data(), final_t.data(), processed.data()});
    // Pixel (15, 15), centred at (15.5, 15.5), next to the mean (16, 16).
    const int pix = 15 * 20 + 15;
    const float alpha = splat_alpha({conics[0], conics[1], conics[2]}, 0.8f, -0.5f, -0.5f);
    EXPECT(std::fabs(image[pix] - (alpha * 0.25f + (1 - alpha) * 0.5f)) < 1e-6f, "composited colour %g", image[pix]);
    EXPECT(std::fabs(final_t[pix] - (1 - alpha)) < 1e-6f, "transmittance");
    EXPECT(std::fabs(depth[pix] - alpha * 2.f) < 1e-6f, "weighted depth");
    EXPECT(final_t[0] == 1.f && image[0] == 0.5f, "corner pixel shows the background");
}

int main() {
    test_rotation_matrix();
    test_sh_addition_theorem();
    test_radius_and_tiles();
    test_tile_extent();
    test_alpha_rules();
    test_covariance_vjp();
    test_projection_vjp();
    test_conic_vjp();
    test_sh_vjp();
    test_alpha_vjp();
    test_camera_centre_vjp();
    test_cpu_pipeline();
    std::printf(failures ? "%d check(s) failed\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
