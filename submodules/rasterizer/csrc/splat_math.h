// Shared math of the Gaussian splatting pipeline, compiled by both backends
// (plain C++ for the CPU, nvcc for CUDA). Every forward function has its
// vector-Jacobian product ("_vjp") next to it so the two stay in step.
//
// Conventions: camera space is OpenCV (x right, y down, z forward); pixel
// (i, j) is sampled at its centre (i + 0.5, j + 0.5); quaternions are (w, x, y, z).
// Gradients of symmetric matrices are carried as full-matrix gradients.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SPLAT_HD __host__ __device__ inline
#else
#define SPLAT_HD inline
#endif

namespace splat {

constexpr int kTileSize = 16;
constexpr int kMaxShCoeffs = 16;
constexpr float kMaxAlpha = 0.99f;
constexpr float kMinAlpha = 1.0f / 255.0f;
constexpr float kMinTransmittance = 1e-4f;
constexpr float kLowPassDilation = 0.3f;
// Points far outside the view would get a degenerate linearisation of the
// perspective map, so the Jacobian is evaluated at most 30% of the half-FOV
// beyond the image border.
constexpr float kFrustumMargin = 0.3f;
// Screen radii are int32; a radius this large already covers any image the checks let through.
constexpr float kMaxScreenRadius = 1073741824.f;  // 2^30

struct Vec3 {
    float x, y, z;
};

struct Mat3 {
    float m[3][3];
};

// Symmetric 2x2 matrix [[a, b], [b, c]].
struct Sym2 {
    float a, b, c;
};

SPLAT_HD float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }
SPLAT_HD float maxf(float a, float b) { return a > b ? a : b; }
SPLAT_HD float minf(float a, float b) { return a < b ? a : b; }

SPLAT_HD Vec3 add(Vec3 a, Vec3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
SPLAT_HD Vec3 sub(Vec3 a, Vec3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
SPLAT_HD Vec3 scale(Vec3 a, float s) { return {a.x * s, a.y * s, a.z * s}; }
SPLAT_HD float dot(Vec3 a, Vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }

SPLAT_HD Mat3 zero_mat3() {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = 0.f;
    return r;
}

SPLAT_HD Mat3 matmul(const Mat3& a, const Mat3& b) {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j] + a.m[i][2] * b.m[2][j];
    return r;
}

SPLAT_HD Mat3 transpose(const Mat3& a) {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[j][i];
    return r;
}

SPLAT_HD Mat3 mat_add(const Mat3& a, const Mat3& b) {
    Mat3 r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) r.m[i][j] = a.m[i][j] + b.m[i][j];
    return r;
}

SPLAT_HD Vec3 matvec(const Mat3& a, Vec3 v) {
    return {a.m[0][0] * v.x + a.m[0][1] * v.y + a.m[0][2] * v.z,
            a.m[1][0] * v.x + a.m[1][1] * v.y + a.m[1][2] * v.z,
            a.m[2][0] * v.x + a.m[2][1] * v.y + a.m[2][2] * v.z};
}

// ---------------------------------------------------------------------------
// Camera: world-to-camera 4x4, row-major.

struct Camera {
    Mat3 rotation;
    Vec3 translation;
    float fx, fy, cx, cy;
    int width, height;
    float near_plane, far_plane;
};

SPLAT_HD Camera make_camera(const float* world_to_camera, float fx, float fy, float cx, float cy, int width,
                            int height, float near_plane, float far_plane) {
    Camera cam;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) cam.rotation.m[i][j] = world_to_camera[i * 4 + j];
    cam.translation = {world_to_camera[3], world_to_camera[7], world_to_camera[11]};
    cam.fx = fx;
    cam.fy = fy;
    cam.cx = cx;
    cam.cy = cy;
    cam.width = width;
    cam.height = height;
    cam.near_plane = near_plane;
    cam.far_plane = far_plane;
    return cam;
}

// Camera centre in world space: -R^T t.
SPLAT_HD Vec3 camera_centre(const Camera& cam) {
    return scale(matvec(transpose(cam.rotation), cam.translation), -1.f);
}

// d(centre) -> d(rotation), d(translation).
SPLAT_HD void camera_centre_vjp(const Camera& cam, Vec3 d_centre, Mat3& d_rotation, Vec3& d_translation) {
    const float t[3] = {cam.translation.x, cam.translation.y, cam.translation.z};
    const float dc[3] = {d_centre.x, d_centre.y, d_centre.z};
    for (int j = 0; j < 3; ++j)
        for (int i = 0; i < 3; ++i) d_rotation.m[j][i] -= t[j] * dc[i];
    d_translation = add(d_translation, scale(matvec(cam.rotation, d_centre), -1.f));
}

// ---------------------------------------------------------------------------
// 3D covariance from scale and quaternion: Sigma = (R S)(R S)^T.
// The quaternion is used as given unless `normalize` is set: the deblurring
// method scales its components independently and relies on the resulting
// non-orthonormal matrix.

SPLAT_HD Mat3 quat_to_rotmat_raw(const float q[4]) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    Mat3 r;
    r.m[0][0] = 1.f - 2.f * (y * y + z * z);
    r.m[0][1] = 2.f * (x * y - w * z);
    r.m[0][2] = 2.f * (x * z + w * y);
    r.m[1][0] = 2.f * (x * y + w * z);
    r.m[1][1] = 1.f - 2.f * (x * x + z * z);
    r.m[1][2] = 2.f * (y * z - w * x);
    r.m[2][0] = 2.f * (x * z - w * y);
    r.m[2][1] = 2.f * (y * z + w * x);
    r.m[2][2] = 1.f - 2.f * (x * x + y * y);
    return r;
}

SPLAT_HD void quat_to_rotmat_raw_vjp(const float q[4], const Mat3& dr, float dq[4]) {
    const float w = q[0], x = q[1], y = q[2], z = q[3];
    const float(*g)[3] = dr.m;
    dq[0] = 2.f * (-z * g[0][1] + y * g[0][2] + z * g[1][0] - x * g[1][2] - y * g[2][0] + x * g[2][1]);
    dq[1] = 2.f * (y * g[0][1] + z * g[0][2] + y * g[1][0] - 2.f * x * g[1][1] - w * g[1][2] + z * g[2][0] +
                   w * g[2][1] - 2.f * x * g[2][2]);
    dq[2] = 2.f * (-2.f * y * g[0][0] + x * g[0][1] + w * g[0][2] + x * g[1][0] + z * g[1][2] - w * g[2][0] +
                   z * g[2][1] - 2.f * y * g[2][2]);
    dq[3] = 2.f * (-2.f * z * g[0][0] - w * g[0][1] + x * g[0][2] + w * g[1][0] - 2.f * z * g[1][1] +
                   y * g[1][2] + x * g[2][0] + y * g[2][1]);
}

SPLAT_HD void normalize_quat(const float q[4], float out[4]) {
    const float norm = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    const float inv = norm > 0.f ? 1.f / norm : 0.f;
    for (int i = 0; i < 4; ++i) out[i] = q[i] * inv;
}

// d(q / |q|) -> dq.
SPLAT_HD void normalize_quat_vjp(const float q[4], const float d_unit[4], float dq[4]) {
    const float norm = sqrtf(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    if (!(norm > 0.f)) {
        for (int i = 0; i < 4; ++i) dq[i] = 0.f;
        return;
    }
    const float inv = 1.f / norm;
    float proj = 0.f;
    for (int i = 0; i < 4; ++i) proj += q[i] * inv * d_unit[i];
    for (int i = 0; i < 4; ++i) dq[i] = (d_unit[i] - q[i] * inv * proj) * inv;
}

// M = R(q) diag(s); Sigma = M M^T.
SPLAT_HD Mat3 scale_rotation_matrix(const float s[3], const float q[4], bool normalize) {
    float qn[4];
    if (normalize)
        normalize_quat(q, qn);
    else
        for (int i = 0; i < 4; ++i) qn[i] = q[i];
    Mat3 m = quat_to_rotmat_raw(qn);
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) m.m[i][j] *= s[j];
    return m;
}

SPLAT_HD Mat3 covariance_3d(const float s[3], const float q[4], bool normalize) {
    const Mat3 m = scale_rotation_matrix(s, q, normalize);
    return matmul(m, transpose(m));
}

// d(Sigma) (full, symmetric) -> d(scale), d(quaternion).
SPLAT_HD void covariance_3d_vjp(const float s[3], const float q[4], bool normalize, const Mat3& d_cov,
                                float ds[3], float dq[4]) {
    float qn[4];
    if (normalize)
        normalize_quat(q, qn);
    else
        for (int i = 0; i < 4; ++i) qn[i] = q[i];
    const Mat3 r = quat_to_rotmat_raw(qn);
    Mat3 m = r;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) m.m[i][j] *= s[j];
    // Sigma = M M^T  =>  dM = (dSigma + dSigma^T) M
    const Mat3 dm = matmul(mat_add(d_cov, transpose(d_cov)), m);
    Mat3 dr;
    for (int j = 0; j < 3; ++j) {
        ds[j] = 0.f;
        for (int i = 0; i < 3; ++i) {
            dr.m[i][j] = dm.m[i][j] * s[j];
            ds[j] += dm.m[i][j] * r.m[i][j];
        }
    }
    float d_qn[4];
    quat_to_rotmat_raw_vjp(qn, dr, d_qn);
    if (normalize)
        normalize_quat_vjp(q, d_qn, dq);
    else
        for (int i = 0; i < 4; ++i) dq[i] = d_qn[i];
}

// ---------------------------------------------------------------------------
// EWA projection of one Gaussian.

struct Projection {
    Vec3 mean_camera;
    float mean2d[2];
    Sym2 cov2d;  // low-pass dilated
};

SPLAT_HD void frustum_limits(const Camera& cam, float& lim_x_neg, float& lim_x_pos, float& lim_y_neg,
                             float& lim_y_pos) {
    const float margin_x = kFrustumMargin * 0.5f * cam.width / cam.fx;
    const float margin_y = kFrustumMargin * 0.5f * cam.height / cam.fy;
    lim_x_neg = cam.cx / cam.fx + margin_x;
    lim_x_pos = (cam.width - cam.cx) / cam.fx + margin_x;
    lim_y_neg = cam.cy / cam.fy + margin_y;
    lim_y_pos = (cam.height - cam.cy) / cam.fy + margin_y;
}

// Jacobian of the perspective map at the (frustum-clamped) camera-space point,
// as its four non-zero entries: J = [[j00, 0, j02], [0, j11, j12]].
struct PerspectiveJacobian {
    float j00, j02, j11, j12;
};

SPLAT_HD PerspectiveJacobian perspective_jacobian(const Camera& cam, Vec3 t) {
    float lxn, lxp, lyn, lyp;
    frustum_limits(cam, lxn, lxp, lyn, lyp);
    const float u = clampf(t.x / t.z, -lxn, lxp);
    const float v = clampf(t.y / t.z, -lyn, lyp);
    return {cam.fx / t.z, -cam.fx * u / t.z, cam.fy / t.z, -cam.fy * v / t.z};
}

SPLAT_HD Sym2 project_covariance(const PerspectiveJacobian& J, const Mat3& cov_camera) {
    // rows of J as 3-vectors
    const float a[3] = {J.j00, 0.f, J.j02};
    const float b[3] = {0.f, J.j11, J.j12};
    float ca[3], cb[3];
    for (int i = 0; i < 3; ++i) {
        ca[i] = cov_camera.m[i][0] * a[0] + cov_camera.m[i][1] * a[1] + cov_camera.m[i][2] * a[2];
        cb[i] = cov_camera.m[i][0] * b[0] + cov_camera.m[i][1] * b[1] + cov_camera.m[i][2] * b[2];
    }
    Sym2 r;
    r.a = a[0] * ca[0] + a[1] * ca[1] + a[2] * ca[2];
    r.b = a[0] * cb[0] + a[1] * cb[1] + a[2] * cb[2];
    r.c = b[0] * cb[0] + b[1] * cb[1] + b[2] * cb[2];
    return r;
}

SPLAT_HD Projection project_gaussian(const Camera& cam, Vec3 mean_world, const Mat3& cov_world) {
    Projection p;
    p.mean_camera = add(matvec(cam.rotation, mean_world), cam.translation);
    const Vec3 t = p.mean_camera;
    p.mean2d[0] = cam.fx * t.x / t.z + cam.cx;
    p.mean2d[1] = cam.fy * t.y / t.z + cam.cy;
    const Mat3 cov_camera = matmul(matmul(cam.rotation, cov_world), transpose(cam.rotation));
    p.cov2d = project_covariance(perspective_jacobian(cam, t), cov_camera);
    p.cov2d.a += kLowPassDilation;
    p.cov2d.c += kLowPassDilation;
    return p;
}

// Gradients of project_gaussian. d_cov2d is the full-matrix gradient of the
// 2D covariance ([[da, db], [db, dc]]); d_depth is the gradient of mean_camera.z.
// Accumulates into d_mean_world, d_cov_world and the camera gradients.
SPLAT_HD void project_gaussian_vjp(const Camera& cam, Vec3 mean_world, const Mat3& cov_world,
                                   const float d_mean2d[2], Sym2 d_cov2d, float d_depth, Vec3& d_mean_world,
                                   Mat3& d_cov_world, Mat3& d_rotation, Vec3& d_translation) {
    const Vec3 t = add(matvec(cam.rotation, mean_world), cam.translation);
    const Mat3 rt = transpose(cam.rotation);
    const Mat3 cov_camera = matmul(matmul(cam.rotation, cov_world), rt);
    const PerspectiveJacobian J = perspective_jacobian(cam, t);

    // cov2d = J C J^T with J's rows a, b:  dJ = 2 dCov2d J C (dCov2d and C symmetric)
    const float a[3] = {J.j00, 0.f, J.j02};
    const float b[3] = {0.f, J.j11, J.j12};
    float ca[3], cb[3];
    for (int i = 0; i < 3; ++i) {
        ca[i] = cov_camera.m[i][0] * a[0] + cov_camera.m[i][1] * a[1] + cov_camera.m[i][2] * a[2];
        cb[i] = cov_camera.m[i][0] * b[0] + cov_camera.m[i][1] * b[1] + cov_camera.m[i][2] * b[2];
    }
    float da[3], db[3];
    for (int i = 0; i < 3; ++i) {
        da[i] = 2.f * (d_cov2d.a * ca[i] + d_cov2d.b * cb[i]);
        db[i] = 2.f * (d_cov2d.b * ca[i] + d_cov2d.c * cb[i]);
    }
    // dC = J^T dCov2d J
    Mat3 d_cov_camera;
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j)
            d_cov_camera.m[i][j] = a[i] * (d_cov2d.a * a[j] + d_cov2d.b * b[j]) +
                                   b[i] * (d_cov2d.b * a[j] + d_cov2d.c * b[j]);

    // Jacobian entries as functions of t (u, v are the clamped x/z, y/z).
    float lxn, lxp, lyn, lyp;
    frustum_limits(cam, lxn, lxp, lyn, lyp);
    const float inv_z = 1.f / t.z;
    const float u_raw = t.x * inv_z, v_raw = t.y * inv_z;
    const float u = clampf(u_raw, -lxn, lxp);
    const float v = clampf(v_raw, -lyn, lyp);
    const float d_j00 = da[0], d_j02 = da[2], d_j11 = db[1], d_j12 = db[2];
    float dz = -cam.fx * inv_z * inv_z * d_j00 - cam.fy * inv_z * inv_z * d_j11 +
               cam.fx * u * inv_z * inv_z * d_j02 + cam.fy * v * inv_z * inv_z * d_j12;
    const float du = (u_raw > -lxn && u_raw < lxp) ? -cam.fx * inv_z * d_j02 : 0.f;
    const float dv = (v_raw > -lyn && v_raw < lyp) ? -cam.fy * inv_z * d_j12 : 0.f;
    float dx = du * inv_z;
    float dy = dv * inv_z;
    dz -= (du * u_raw + dv * v_raw) * inv_z;

    // mean2d = (fx x/z + cx, fy y/z + cy)
    dx += cam.fx * inv_z * d_mean2d[0];
    dy += cam.fy * inv_z * d_mean2d[1];
    dz -= (cam.fx * u_raw * d_mean2d[0] + cam.fy * v_raw * d_mean2d[1]) * inv_z;
    dz += d_depth;

    const Vec3 dt = {dx, dy, dz};
    // t = R p + T
    d_mean_world = add(d_mean_world, matvec(rt, dt));
    d_translation = add(d_translation, dt);
    const float p[3] = {mean_world.x, mean_world.y, mean_world.z};
    const float g[3] = {dx, dy, dz};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) d_rotation.m[i][j] += g[i] * p[j];

    // C = R S R^T:  dS = R^T dC R,  dR = dC R S^T + dC^T R S
    d_cov_world = mat_add(d_cov_world, matmul(matmul(rt, d_cov_camera), cam.rotation));
    const Mat3 rs = matmul(cam.rotation, cov_world);
    const Mat3 rst = matmul(cam.rotation, transpose(cov_world));
    d_rotation = mat_add(d_rotation, mat_add(matmul(d_cov_camera, rst), matmul(transpose(d_cov_camera), rs)));
}

// ---------------------------------------------------------------------------
// Conic (inverse 2D covariance) and screen extent.

SPLAT_HD float determinant(Sym2 c) { return c.a * c.c - c.b * c.b; }

SPLAT_HD Sym2 inverse(Sym2 c) {
    const float inv_det = 1.f / determinant(c);
    return {c.c * inv_det, -c.b * inv_det, c.a * inv_det};
}

// d(conic) -> d(cov2d), both as full-matrix gradients. The textbook form
// dCov = -Q dQ Q loses the gradient along the long axis of a thin ellipse in
// float32; for symmetric 2x2 matrices it equals det(Q) adj(dQ) - <dQ, Q> Q,
// which stays accurate there.
SPLAT_HD Sym2 inverse_vjp(Sym2 conic, Sym2 d_conic) {
    const float det = determinant(conic);
    const float inner = conic.a * d_conic.a + 2.f * conic.b * d_conic.b + conic.c * d_conic.c;
    return {det * d_conic.c - inner * conic.a, -det * d_conic.b - inner * conic.b,
            det * d_conic.a - inner * conic.c};
}

// The radius at which the box around mean2d covers every pixel of the image, within int32.
SPLAT_HD float image_reach(const float mean2d[2], int width, int height) {
    const float reach = maxf(maxf(fabsf(mean2d[0]), fabsf(mean2d[0] - width)),
                             maxf(fabsf(mean2d[1]), fabsf(mean2d[1] - height)));
    return minf(reach, kMaxScreenRadius);
}

// Three standard deviations of the major axis, in whole pixels, at most `reach` (see image_reach): a Gaussian
// larger than the image still covers it, where its 3-sigma radius would overflow int32.
SPLAT_HD int screen_radius(Sym2 cov2d, float reach) {
    const float mid = 0.5f * (cov2d.a + cov2d.c);
    const float lambda_max = mid + sqrtf(maxf(0.1f, mid * mid - determinant(cov2d)));
    return (int)ceilf(minf(3.f * sqrtf(lambda_max), reach));
}

// Tiles touched by the box of half-widths `extent` pixels at `mean2d`: [min, max) per axis.
SPLAT_HD void tile_rect(const float mean2d[2], const int32_t extent[2], int tiles_x, int tiles_y, int rect_min[2],
                        int rect_max[2]) {
    const float fx = (float)extent[0], fy = (float)extent[1];
    rect_min[0] = (int)clampf(floorf((mean2d[0] - fx) / kTileSize), 0.f, (float)tiles_x);
    rect_min[1] = (int)clampf(floorf((mean2d[1] - fy) / kTileSize), 0.f, (float)tiles_y);
    rect_max[0] = (int)clampf(floorf((mean2d[0] + fx) / kTileSize) + 1.f, 0.f, (float)tiles_x);
    rect_max[1] = (int)clampf(floorf((mean2d[1] + fy) / kTileSize) + 1.f, 0.f, (float)tiles_y);
}

// ---------------------------------------------------------------------------
// Spherical harmonics, degrees 0 to 3, real basis in the 3DGS sign convention.

constexpr float kShC0 = 0.28209479177387814f;
constexpr float kShC1 = 0.4886025119029199f;
// Device code cannot read namespace-scope constexpr arrays, hence accessors.
SPLAT_HD float sh_c2(int i) {
    constexpr float c[5] = {1.0925484305920792f, -1.0925484305920792f, 0.31539156525252005f, -1.0925484305920792f,
                            0.5462742152960396f};
    return c[i];
}
SPLAT_HD float sh_c3(int i) {
    constexpr float c[7] = {-0.5900435899266435f, 2.890611442640554f, -0.4570457994644658f, 0.3731763325901154f,
                            -0.4570457994644658f, 1.445305721320277f, -0.5900435899266435f};
    return c[i];
}

SPLAT_HD int sh_coeffs_for_degree(int degree) { return (degree + 1) * (degree + 1); }

// Basis values Y[k] at unit direction d, for k < (degree+1)^2.
SPLAT_HD void sh_basis(int degree, Vec3 d, float Y[kMaxShCoeffs]) {
    const float x = d.x, y = d.y, z = d.z;
    Y[0] = kShC0;
    if (degree < 1) return;
    Y[1] = -kShC1 * y;
    Y[2] = kShC1 * z;
    Y[3] = -kShC1 * x;
    if (degree < 2) return;
    const float xx = x * x, yy = y * y, zz = z * z;
    Y[4] = sh_c2(0) * x * y;
    Y[5] = sh_c2(1) * y * z;
    Y[6] = sh_c2(2) * (2.f * zz - xx - yy);
    Y[7] = sh_c2(3) * x * z;
    Y[8] = sh_c2(4) * (xx - yy);
    if (degree < 3) return;
    Y[9] = sh_c3(0) * y * (3.f * xx - yy);
    Y[10] = sh_c3(1) * x * y * z;
    Y[11] = sh_c3(2) * y * (4.f * zz - xx - yy);
    Y[12] = sh_c3(3) * z * (2.f * zz - 3.f * xx - 3.f * yy);
    Y[13] = sh_c3(4) * x * (4.f * zz - xx - yy);
    Y[14] = sh_c3(5) * z * (xx - yy);
    Y[15] = sh_c3(6) * x * (xx - 3.f * yy);
}

// Partial derivatives dY[k]/d(x, y, z) of the basis.
SPLAT_HD void sh_basis_jacobian(int degree, Vec3 d, Vec3 dY[kMaxShCoeffs]) {
    const float x = d.x, y = d.y, z = d.z;
    dY[0] = {0.f, 0.f, 0.f};
    if (degree < 1) return;
    dY[1] = {0.f, -kShC1, 0.f};
    dY[2] = {0.f, 0.f, kShC1};
    dY[3] = {-kShC1, 0.f, 0.f};
    if (degree < 2) return;
    const float xx = x * x, yy = y * y, zz = z * z;
    dY[4] = {sh_c2(0) * y, sh_c2(0) * x, 0.f};
    dY[5] = {0.f, sh_c2(1) * z, sh_c2(1) * y};
    dY[6] = {-2.f * sh_c2(2) * x, -2.f * sh_c2(2) * y, 4.f * sh_c2(2) * z};
    dY[7] = {sh_c2(3) * z, 0.f, sh_c2(3) * x};
    dY[8] = {2.f * sh_c2(4) * x, -2.f * sh_c2(4) * y, 0.f};
    if (degree < 3) return;
    dY[9] = {sh_c3(0) * 6.f * x * y, sh_c3(0) * (3.f * xx - 3.f * yy), 0.f};
    dY[10] = {sh_c3(1) * y * z, sh_c3(1) * x * z, sh_c3(1) * x * y};
    dY[11] = {-2.f * sh_c3(2) * x * y, sh_c3(2) * (4.f * zz - xx - 3.f * yy), 8.f * sh_c3(2) * y * z};
    dY[12] = {-6.f * sh_c3(3) * x * z, -6.f * sh_c3(3) * y * z, sh_c3(3) * (6.f * zz - 3.f * xx - 3.f * yy)};
    dY[13] = {sh_c3(4) * (4.f * zz - 3.f * xx - yy), -2.f * sh_c3(4) * x * y, 8.f * sh_c3(4) * x * z};
    dY[14] = {2.f * sh_c3(5) * x * z, -2.f * sh_c3(5) * y * z, sh_c3(5) * (xx - yy)};
    dY[15] = {sh_c3(6) * (3.f * xx - 3.f * yy), -6.f * sh_c3(6) * x * y, 0.f};
}

SPLAT_HD Vec3 view_direction(Vec3 mean_world, Vec3 centre) {
    const Vec3 v = sub(mean_world, centre);
    const float len = sqrtf(dot(v, v));
    return len > 0.f ? scale(v, 1.f / len) : Vec3{0.f, 0.f, 1.f};
}

// RGB colour = max(0, sum_k c_k Y_k(dir) + 0.5). `coeffs` holds K x 3 values;
// only the first (degree+1)^2 rows are used.
SPLAT_HD void sh_to_color(int degree, const float* coeffs, Vec3 dir, float rgb[3]) {
    float Y[kMaxShCoeffs];
    sh_basis(degree, dir, Y);
    const int n = sh_coeffs_for_degree(degree);
    for (int c = 0; c < 3; ++c) {
        float v = 0.5f;
        for (int k = 0; k < n; ++k) v += Y[k] * coeffs[k * 3 + c];
        rgb[c] = maxf(v, 0.f);
    }
}

// d(rgb) -> d(coeffs) (written, K x 3) and d(mean_world), d(camera centre)
// (accumulated). Clamped channels pass no gradient.
SPLAT_HD void sh_to_color_vjp(int degree, const float* coeffs, Vec3 mean_world, Vec3 centre,
                              const float rgb[3], const float d_rgb[3], float* d_coeffs, Vec3& d_mean_world,
                              Vec3& d_centre) {
    const Vec3 v = sub(mean_world, centre);
    const float len = sqrtf(dot(v, v));
    const Vec3 dir = len > 0.f ? scale(v, 1.f / len) : Vec3{0.f, 0.f, 1.f};
    float Y[kMaxShCoeffs];
    Vec3 dY[kMaxShCoeffs];
    sh_basis(degree, dir, Y);
    sh_basis_jacobian(degree, dir, dY);
    const int n = sh_coeffs_for_degree(degree);
    float g[3];
    for (int c = 0; c < 3; ++c) g[c] = rgb[c] > 0.f ? d_rgb[c] : 0.f;
    Vec3 d_dir = {0.f, 0.f, 0.f};
    for (int k = 0; k < n; ++k) {
        float w = 0.f;
        for (int c = 0; c < 3; ++c) {
            d_coeffs[k * 3 + c] = Y[k] * g[c];
            w += coeffs[k * 3 + c] * g[c];
        }
        d_dir = add(d_dir, scale(dY[k], w));
    }
    if (!(len > 0.f)) return;
    // dir = v / |v|
    const Vec3 dv = scale(sub(d_dir, scale(dir, dot(dir, d_dir))), 1.f / len);
    d_mean_world = add(d_mean_world, dv);
    d_centre = sub(d_centre, dv);
}

// ---------------------------------------------------------------------------
// Compositing.

// Exponent of the Gaussian at offset (dx, dy) = pixel - mean2d.
SPLAT_HD float gaussian_power(Sym2 conic, float dx, float dy) {
    return -0.5f * (conic.a * dx * dx + conic.c * dy * dy) - conic.b * dx * dy;
}

// Below this exponent a Gaussian of the given opacity stays under kMinAlpha,
// so a sample can be skipped without evaluating the exponential. The margin
// keeps it clear of rounding: it never skips a sample splat_alpha would keep.
SPLAT_HD float min_visible_power(float opacity) { return logf(kMinAlpha / opacity) - 1e-3f; }

// Half-extents along x and y of the ellipse where a Gaussian can reach
// kMinAlpha: the bounding box of {d : -0.5 d^T Q d >= min_power}.
SPLAT_HD void visible_half_extent(Sym2 conic, float min_power, float& half_x, float& half_y) {
    const float level = -2.f * min_power;
    const float det = determinant(conic);
    if (!(level >= 0.f) || !(det > 0.f)) {
        half_x = half_y = -1.f;
        return;
    }
    half_x = sqrtf(level * conic.c / det);
    half_y = sqrtf(level * conic.a / det);
}

// Half-widths in whole pixels of the box of pixels that a Gaussian can reach: the box of its visible ellipse,
// within its 3-sigma radius. Binning to the tiles of this box drops no sample that blending would keep, and a
// faint Gaussian reaches far fewer tiles than its 3-sigma disc. False, where no pixel can reach kMinAlpha.
SPLAT_HD bool tile_extent(Sym2 conic, float opacity, int radius, int32_t extent[2]) {
    float half_x, half_y;
    visible_half_extent(conic, min_visible_power(opacity), half_x, half_y);
    if (!(half_x >= 0.f && half_y >= 0.f)) return false;
    extent[0] = (int32_t)minf((float)radius, ceilf(half_x));
    extent[1] = (int32_t)minf((float)radius, ceilf(half_y));
    return true;
}

// splat_alpha of a sample whose exponential G = exp(power) is given, so that
// a backend can evaluate the exponential its own way (the CPU, vectorised).
SPLAT_HD float splat_alpha_from_exp(float opacity, float power, float G) {
    // Testing before the cap is the same test, as kMinAlpha < kMaxAlpha, and
    // keeps the cap's branch out of the masks of the CPU's vectorised loops.
    const float alpha = opacity * G;
    return power > 0.f || alpha < kMinAlpha ? 0.f : minf(kMaxAlpha, alpha);
}

// Opacity of one Gaussian at one pixel, or 0 where it is skipped.
SPLAT_HD float splat_alpha(Sym2 conic, float opacity, float dx, float dy) {
    const float power = gaussian_power(conic, dx, dy);
    return splat_alpha_from_exp(opacity, power, expf(power));
}

// d(alpha) of a contributing sample -> d(conic) (full-matrix gradient),
// d(mean2d), d(opacity). The alpha cap at 0.99 is a constant, so capped
// samples pass no gradient.
struct AlphaGradient {
    Sym2 d_conic;
    float d_mean2d[2];
    float d_opacity;
};

// splat_alpha_vjp with the sample's G = exp(power) given, as for splat_alpha_from_exp.
SPLAT_HD AlphaGradient splat_alpha_vjp_from_exp(Sym2 conic, float opacity, float G, float dx, float dy,
                                                float d_alpha) {
    AlphaGradient g = {{0.f, 0.f, 0.f}, {0.f, 0.f}, 0.f};
    if (opacity * G > kMaxAlpha) return g;
    g.d_opacity = G * d_alpha;
    const float d_power = opacity * G * d_alpha;
    g.d_conic.a = -0.5f * dx * dx * d_power;
    g.d_conic.b = -0.5f * dx * dy * d_power;
    g.d_conic.c = -0.5f * dy * dy * d_power;
    // d(power)/d(mean) = -d(power)/d(dx)
    g.d_mean2d[0] = (conic.a * dx + conic.b * dy) * d_power;
    g.d_mean2d[1] = (conic.b * dx + conic.c * dy) * d_power;
    return g;
}

SPLAT_HD AlphaGradient splat_alpha_vjp(Sym2 conic, float opacity, float dx, float dy, float d_alpha) {
    return splat_alpha_vjp_from_exp(conic, opacity, expf(gaussian_power(conic, dx, dy)), dx, dy, d_alpha);
}

}  // namespace splat
