// The separable filter as two passes of one-dimensional correlation, rows
// then columns, each a loop over taps around a contiguous loop over pixels
// that the compiler vectorises; the SSIM with its per-pixel terms fused
// around it. Parallel over the planes. The indices are
// 64-bit: under -fwrapv, which Python's build flags bring, GCC vectorises a
// loop over an int index offset by a variable three times slower.
#include "image_filter.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vector_clones.h"

namespace splat {
namespace cpu {

namespace {

// out[x] = sum_k taps[k] in[x + k - r] over the x + k - r inside [0, length).
SPLAT_VECTOR_CLONES
void correlate_row(const float* in, int64_t length, const float* taps, int num_taps, float* out) {
    const int64_t r = num_taps / 2;
    std::fill(out, out + length, 0.0f);
    for (int k = 0; k < num_taps; ++k) {
        const int64_t offset = k - r;
        const int64_t begin = std::max<int64_t>(0, -offset), end = std::min(length, length - offset);
        const float* source = in + offset;
        const float tap = taps[k];
        for (int64_t x = begin; x < end; ++x) out[x] += tap * source[x];
    }
}

// Row y of the column pass: sum_k taps[k] rows[y + k - r], rows being the
// plane after the row pass.
SPLAT_VECTOR_CLONES
void correlate_columns(const float* rows, int height, int64_t width, int y, const float* taps, int num_taps,
                       float* out) {
    const int r = num_taps / 2;
    std::fill(out, out + width, 0.0f);
    for (int k = std::max(0, r - y); k < std::min(num_taps, height + r - y); ++k) {
        const float* source = rows + (y + k - r) * width;
        const float tap = taps[k];
        for (int64_t x = 0; x < width; ++x) out[x] += tap * source[x];
    }
}

// One plane filtered, through rows, a plane of scratch.
void filter_plane(const float* in, int height, int64_t width, const float* taps, int num_taps, float* rows,
                  float* out) {
    for (int y = 0; y < height; ++y) correlate_row(in + y * width, width, taps, num_taps, rows + y * width);
    for (int y = 0; y < height; ++y) correlate_columns(rows, height, width, y, taps, num_taps, out + y * width);
}

// With A1 = 2 mu1 mu2 + c1, A2 = 2 cov + c2, B1 = mu1^2 + mu2^2 + c1 and B2 =
// var1 + var2 + c2, SSIM = A1 A2 / (B1 B2).
struct SsimTerms {
    float a1, a2, b1, b2, value;
};

inline SsimTerms ssim_terms(const float* stats, int64_t block, int64_t i, float c1, float c2) {
    const float mu1 = stats[kMu1 * block + i], mu2 = stats[kMu2 * block + i];
    SsimTerms t;
    t.a1 = 2.0f * mu1 * mu2 + c1;
    t.a2 = 2.0f * (stats[kMean12 * block + i] - mu1 * mu2) + c2;
    t.b1 = mu1 * mu1 + mu2 * mu2 + c1;
    t.b2 = stats[kMean11 * block + i] - mu1 * mu1 + stats[kMean22 * block + i] - mu2 * mu2 + c2;
    t.value = t.a1 * t.a2 / (t.b1 * t.b2);
    return t;
}

SPLAT_VECTOR_CLONES
void ssim_of_plane(const float* stats, int64_t block, int64_t first, int64_t count, float c1, float c2, float* map) {
    for (int64_t i = first; i < first + count; ++i) map[i] = ssim_terms(stats, block, i, c1, c2).value;
}

// The per-pixel factors of ssim_backward, each a plane of terms.
enum GradientTerm { kGradMu1, kGradMu2, kGradSquares, kGradMean12, kGradientTerms };

SPLAT_VECTOR_CLONES
void gradient_terms_of_plane(const float* stats, int64_t block, int64_t first, int64_t count, const float* grad_map,
                             float c1, float c2, float* terms) {
    for (int64_t i = 0; i < count; ++i) {
        const SsimTerms t = ssim_terms(stats, block, first + i, c1, c2);
        const float g = grad_map[first + i];
        const float grad_over_denominator = g / (t.b1 * t.b2);
        const float grad_squares = -g * t.value / t.b2;
        const float shared = 2.0f * (t.a2 - t.a1) * grad_over_denominator;
        const float contrast = 2.0f * grad_squares * (t.b2 - t.b1) / t.b1;
        const float mu1 = stats[kMu1 * block + first + i], mu2 = stats[kMu2 * block + first + i];
        terms[kGradMu1 * count + i] = mu2 * shared + mu1 * contrast;
        terms[kGradMu2 * count + i] = mu1 * shared + mu2 * contrast;
        terms[kGradSquares * count + i] = grad_squares;
        terms[kGradMean12 * count + i] = 2.0f * t.a1 * grad_over_denominator;
    }
}

SPLAT_VECTOR_CLONES
void gradient_of_image(const float* mu, const float* squares, const float* mean12, const float* self,
                       const float* other, int64_t count, float* out) {
    for (int64_t i = 0; i < count; ++i) out[i] = mu[i] + 2.0f * self[i] * squares[i] + other[i] * mean12[i];
}

}  // namespace

void separable_filter(const float* images, int64_t planes, int height, int width, const float* taps, int num_taps,
                      float* out) {
    const int64_t plane_size = (int64_t)height * width;
#pragma omp parallel
    {
        std::vector<float> rows(plane_size);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < planes; ++p)
            filter_plane(images + p * plane_size, height, width, taps, num_taps, rows.data(), out + p * plane_size);
    }
}

void ssim_forward(const SsimImages& in, float* stats, float* map) {
    const int64_t plane_size = (int64_t)in.height * in.width, block = in.planes * plane_size;
#pragma omp parallel
    {
        std::vector<float> rows(plane_size), product(plane_size);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < in.planes; ++p) {
            const float* x = in.x + p * plane_size;
            const float* y = in.y + p * plane_size;
            const float* products[kSsimStats] = {x, y, nullptr, nullptr, nullptr};
            for (int s = 0; s < kSsimStats; ++s) {
                if (!products[s]) {
                    const float* a = s == kMean22 ? y : x;
                    const float* b = s == kMean11 ? x : y;
                    for (int64_t i = 0; i < plane_size; ++i) product[i] = a[i] * b[i];
                }
                filter_plane(products[s] ? products[s] : product.data(), in.height, in.width, in.taps, in.num_taps,
                             rows.data(), stats + s * block + p * plane_size);
            }
            ssim_of_plane(stats, block, p * plane_size, plane_size, in.c1, in.c2, map);
        }
    }
}

// As functions of mu1 = G x, E11 = G x^2 and E12 = G x y: dSSIM/dE12 = 2 A1 /
// (B1 B2), dSSIM/dE11 = -SSIM / B2, dSSIM/dmu1 = 2 mu2 (A2 - A1) / (B1 B2) - 2
// mu1 SSIM (1 / B1 - 1 / B2), and symmetrically for y. The gradient of x is
// then G*(g dSSIM/dmu1) + 2 x G*(g dSSIM/dE11) + y G*(g dSSIM/dE12), G* being
// the adjoint of G: the filter with the taps reversed, which in.taps holds.
void ssim_backward(const SsimImages& in, const float* stats, const float* grad_map, float* grad_x, float* grad_y) {
    const int64_t plane_size = (int64_t)in.height * in.width, block = in.planes * plane_size;
#pragma omp parallel
    {
        std::vector<float> rows(plane_size), terms(kGradientTerms * plane_size),
            filtered(kGradientTerms * plane_size);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < in.planes; ++p) {
            const int64_t first = p * plane_size;
            gradient_terms_of_plane(stats, block, first, plane_size, grad_map, in.c1, in.c2, terms.data());
            for (int term = 0; term < kGradientTerms; ++term) {
                if ((term == kGradMu1 && !grad_x) || (term == kGradMu2 && !grad_y)) continue;
                filter_plane(terms.data() + term * plane_size, in.height, in.width, in.taps, in.num_taps, rows.data(),
                             filtered.data() + term * plane_size);
            }
            const float* x = in.x + first;
            const float* y = in.y + first;
            const float* squares = filtered.data() + kGradSquares * plane_size;
            const float* mean12 = filtered.data() + kGradMean12 * plane_size;
            if (grad_x)
                gradient_of_image(filtered.data() + kGradMu1 * plane_size, squares, mean12, x, y, plane_size,
                                  grad_x + first);
            if (grad_y)
                gradient_of_image(filtered.data() + kGradMu2 * plane_size, squares, mean12, y, x, plane_size,
                                  grad_y + first);
        }
    }
}

}  // namespace cpu
}  // namespace splat
