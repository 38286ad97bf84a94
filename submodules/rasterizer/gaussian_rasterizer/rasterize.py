"""The public entry point: a thin autograd wrapper over the native stages.

Forward runs preprocess -> bin and sort -> blend in the chosen backend;
backward runs blend backward -> preprocess backward. Both backends expose the
same five stage functions, so this one wrapper serves the CPU and the CUDA
builds alike.
"""
from dataclasses import dataclass
from typing import Optional

import torch

from . import reference
from .camera import Camera
from .checks import check_inputs, free_bytes

try:
    from . import _cpu
except ImportError:  # a source checkout that was never built
    _cpu = None
try:
    from . import _cuda
except ImportError:  # built without CUDA
    _cuda = None

# Sorted (Gaussian, tile) pairs are indexed with int32 in the kernels.
MAX_TILE_PAIRS = 2**31 - 1
# Bytes held per (Gaussian, tile) pair while sorting: keys and values, double-buffered on CUDA.
BYTES_PER_TILE_PAIR = {"cpu": 4, "cuda": 24}


class TilePairOverflowError(MemoryError):
    """The scene needs more (Gaussian, tile) pairs than can be held."""


@dataclass
class RasterOutput:
    """What one render returns.

    image: (C, H, W), background composited under the Gaussians.
    depth: (H, W) expected depth (alpha-weighted mean camera-space z), 0 where alpha is 0.
    alpha: (H, W) accumulated opacity.
    radii: (N,) int32 screen-space radius in pixels; 0 for culled Gaussians.
    means2d: (N, 2) projected centres in pixels; after backward its .grad
        holds dL/d(2D mean), the densification statistic.
    means2d_absgrad: (N, 2) tensor whose .grad holds the sum over pixels of
        |dL/d(2D mean)| (the AbsGS statistic); None for the reference backend.
    """

    image: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor
    means2d_absgrad: Optional[torch.Tensor]


def available_backends():
    """Names of the backends usable in this build, fastest last."""
    names = ["reference"]
    if _cpu is not None:
        names.append("cpu")
    if _cuda is not None and torch.cuda.is_available():
        names.append("cuda")
    return names


def _native_module(backend, device):
    if backend == "auto":
        backend = "cuda" if device.type == "cuda" else "cpu"
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"backend 'cpu' needs tensors on the CPU, got {device}")
        if _cpu is None:
            raise RuntimeError("the CPU backend is not built: pip install --no-build-isolation ./submodules/rasterizer")
        return "cpu", _cpu
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"backend 'cuda' needs tensors on a CUDA device, got {device}")
        if _cuda is None:
            raise RuntimeError("the CUDA backend is not built: install torch with CUDA, then rebuild the rasterizer")
        return "cuda", _cuda
    raise ValueError(f"backend must be 'auto', 'cpu', 'cuda' or 'reference', got {backend!r}")


def _check_tile_pairs(num_pairs, backend, device):
    needed = num_pairs * BYTES_PER_TILE_PAIR[backend]
    if num_pairs > MAX_TILE_PAIRS or needed > free_bytes(device):
        raise TilePairOverflowError(
            f"the scene covers {num_pairs:,} (Gaussian, tile) pairs, needing {needed / 2**30:.1f} GiB to sort "
            f"(limit {MAX_TILE_PAIRS:,} pairs and the free memory of {device}); "
            "render at a lower resolution or with fewer or smaller Gaussians"
        )


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, native, backend, camera, settings, means, scales, rotations, opacities, sh_coeffs, features,
                world_to_camera, background, means2d_leaf, absgrad_leaf):
        sh_degree, normalize_rotations, uses_sh = settings
        cam_args = (world_to_camera, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                    camera.near, camera.far, sh_degree, normalize_rotations)
        radii, means2d, depths, conics, sh_colors, tiles_touched, tile_extents = native.preprocess_forward(
            means, scales, rotations, opacities, sh_coeffs, *cam_args)
        colors = sh_colors if uses_sh else features
        num_pairs = int(tiles_touched.sum(dtype=torch.int64))
        _check_tile_pairs(num_pairs, backend, means.device)
        tile_ranges, sorted_ids = native.bin_and_sort(means2d, depths, tiles_touched, tile_extents, camera.width,
                                                      camera.height, num_pairs)
        blend_args = (tile_ranges, sorted_ids, means2d, conics, opacities, colors, depths, background,
                      camera.width, camera.height)
        image, depth, final_t, num_processed = native.blend_forward(*blend_args)

        ctx.native, ctx.cam_args = native, cam_args
        ctx.blend_sizes = (camera.width, camera.height)
        ctx.uses_sh = uses_sh
        ctx.save_for_backward(means, scales, rotations, opacities, sh_coeffs, world_to_camera, background, radii,
                              means2d, depths, conics, colors, tile_ranges, sorted_ids, final_t, num_processed)
        ctx.mark_non_differentiable(radii, means2d)
        return image, depth, final_t, radii, means2d

    @staticmethod
    def backward(ctx, d_image, d_depth, d_final_t, _d_radii, _d_means2d):
        (means, scales, rotations, opacities, sh_coeffs, world_to_camera, background, radii, means2d, depths, conics,
         colors, tile_ranges, sorted_ids, final_t, num_processed) = ctx.saved_tensors
        native = ctx.native
        d_image, d_depth, d_final_t = (g.contiguous() for g in (d_image, d_depth, d_final_t))
        d_means2d, d_means2d_abs, d_conics, d_opacities, d_colors, d_depths = native.blend_backward(
            tile_ranges, sorted_ids, means2d, conics, opacities, colors, depths, background, *ctx.blend_sizes,
            final_t, num_processed, d_image, d_depth, d_final_t)
        d_means, d_scales, d_rotations, d_sh, d_world_to_camera = native.preprocess_backward(
            means, scales, rotations, opacities, sh_coeffs, *ctx.cam_args, radii, colors if ctx.uses_sh else
            colors.new_empty(0), d_means2d, d_conics, d_colors if ctx.uses_sh else d_colors.new_empty(0), d_depths)
        d_background = (d_image * final_t).sum(dim=(1, 2))
        d_features = None if ctx.uses_sh else d_colors
        return (None, None, None, None, d_means, d_scales, d_rotations, d_opacities.view(-1, 1),
                d_sh if ctx.uses_sh else None, d_features, d_world_to_camera, d_background, d_means2d, d_means2d_abs)


def _expected_depth(weighted_depth, alpha):
    return torch.where(alpha > 0, weighted_depth / alpha.clamp_min(1e-10), torch.zeros_like(alpha))


def rasterize_gaussians(means, scales, rotations, opacities, camera: Camera, sh_coeffs=None, sh_degree=0,
                        features=None, background=None, normalize_rotations=False, backend="auto"):
    """Renders N 3D Gaussians into one view, differentiably.

    means: (N, 3) world-space centres.
    scales: (N, 3) activated (positive) standard deviations along the local axes.
    rotations: (N, 4) quaternions (w, x, y, z), used as given: a non-unit
        quaternion yields a non-orthonormal rotation (the deblurring method
        relies on this); normalize_rotations=True normalises them first.
    opacities: (N, 1) activated opacities in [0, 1].
    camera: a Camera.
    sh_coeffs: (N, K, 3) SH coefficients, with sh_degree (0..3) the active
        degree, K >= (sh_degree+1)^2; colour = max(0, SH(view dir) + 0.5).
    features: (N, C) per-Gaussian values blended as they are, any C >= 1;
        pass exactly one of sh_coeffs and features.
    background: (C,) colour under the Gaussians; zeros by default.
    backend: 'auto' (the tensors' device), 'cpu', 'cuda' or 'reference'.

    All tensors are float32 on one device. Gradients flow to means, scales,
    rotations, opacities, sh_coeffs or features, background and
    camera.world_to_camera. Returns a RasterOutput.
    """
    channels = check_inputs(means, scales, rotations, opacities, camera, sh_coeffs, sh_degree, features, background)
    if background is None:
        background = torch.zeros(channels, dtype=means.dtype, device=means.device)
    n = means.shape[0]

    if backend == "reference":
        image, weighted_depth, final_t, radii, means2d = reference.rasterize_reference(
            means, scales, rotations, opacities, camera, sh_coeffs, sh_degree, features, background,
            normalize_rotations)
        if means2d.requires_grad:
            means2d.retain_grad()
        absgrad = None
    else:
        backend, native = _native_module(backend, means.device)
        means2d = torch.zeros((n, 2), dtype=means.dtype, device=means.device, requires_grad=True)
        absgrad = torch.zeros_like(means2d, requires_grad=True)
        empty = means.new_empty(0)
        image, weighted_depth, final_t, radii, projected = _Rasterize.apply(
            native, backend, camera, (int(sh_degree), bool(normalize_rotations), sh_coeffs is not None),
            means.contiguous(), scales.contiguous(), rotations.contiguous(), opacities.contiguous(),
            empty if sh_coeffs is None else sh_coeffs.contiguous(), empty if features is None else features.contiguous(),
            camera.world_to_camera.contiguous(), background.contiguous(), means2d, absgrad)
        # The leaves receive the screen-space gradients; give them the projected values too.
        with torch.no_grad():
            means2d.copy_(projected)

    alpha = 1 - final_t
    return RasterOutput(image=image, depth=_expected_depth(weighted_depth, alpha), alpha=alpha, radii=radii,
                        means2d=means2d, means2d_absgrad=absgrad)
