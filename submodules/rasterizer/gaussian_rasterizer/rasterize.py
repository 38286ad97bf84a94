"""The public entry point: a thin autograd wrapper over the native stages.

Forward runs preprocess -> bin and sort -> blend in the chosen backend;
backward runs blend backward -> preprocess backward. Both backends expose the
same five stage functions, so this one wrapper serves the CPU and the CUDA
builds alike.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import torch

from . import reference
from .camera import Camera
from .checks import camera_list, check_inputs, free_bytes

# Imported by their full names, which the type checker's settings list among the modules without type hints.
try:
    import gaussian_rasterizer._cpu as _cpu
except ImportError:  # a source checkout that was never built
    _cpu = None
try:
    import gaussian_rasterizer._cuda as _cuda
except ImportError:  # built without CUDA
    _cuda = None

# Sorted (Gaussian, tile) pairs are indexed with int32 in the kernels.
MAX_TILE_PAIRS = 2**31 - 1
# Bytes held per (Gaussian, tile) pair while sorting: keys and values, double-buffered on CUDA.
BYTES_PER_TILE_PAIR = {"cpu": 4, "cuda": 24}
# The rows of every camera's Gaussians and the tiles of every camera's image are numbered with int32 (the CUDA sort
# key holds the tile in its high 32 bits).
MAX_ROWS = 2**31 - 1
MAX_TILES = 2**31 - 2
TILE_SIZE = reference.TILE_SIZE
# CUDA blends one layer of blocks per camera and group of this many channels, at most MAX_CUDA_GRID_Z layers.
CUDA_CHANNELS_PER_BLOCK = 4
MAX_CUDA_GRID_Z = 65535


class TilePairOverflowError(MemoryError):
    """The scene needs more (Gaussian, tile) pairs than can be held."""


@dataclass
class RasterOutput:
    """What one render returns. A call with a list of cameras gives each tensor a leading dimension of one entry
    per camera: image (cameras, C, H, W), depth and alpha (cameras, H, W), radii (cameras, N), means2d and
    means2d_absgrad (cameras, N, 2).

    image: (C, H, W), background composited under the Gaussians.
    depth: (H, W) expected depth (alpha-weighted mean camera-space z), 0 where alpha is 0.
    alpha: (H, W) accumulated opacity.
    radii: (N,) int32 screen-space radius in pixels; 0 for culled Gaussians.
    means2d: (N, 2) projected centres in pixels; after backward its .grad
        holds dL/d(2D mean), the densification statistic.
    means2d_absgrad: (N, 2) tensor whose .grad holds the sum over pixels of
        |dL/d(2D mean)| (the AbsGS statistic); None for the reference backend.
    camera_leaves: of a batched call, the per-camera (N, 2) tensors that means2d and means2d_absgrad stack, for
        unbind(); None otherwise. The reference backend's batched means2d gets no .grad: its per-camera tensors,
        which unbind() hands out, do.
    """

    image: torch.Tensor
    depth: torch.Tensor
    alpha: torch.Tensor
    radii: torch.Tensor
    means2d: torch.Tensor
    means2d_absgrad: Optional[torch.Tensor]
    camera_leaves: Optional[Tuple[List[torch.Tensor], Optional[List[torch.Tensor]]]] = field(default=None,
                                                                                              repr=False)

    def unbind(self) -> List["RasterOutput"]:
        """A batched call's output as one RasterOutput per camera, each as a call for that camera alone returns
        it: its means2d (and means2d_absgrad) receives that camera's screen-space gradients."""
        if self.camera_leaves is None:
            raise ValueError("unbind() needs the output of a call with a list of cameras")
        means2d, absgrad = self.camera_leaves
        return [
            RasterOutput(image=self.image[c], depth=self.depth[c], alpha=self.alpha[c], radii=self.radii[c],
                         means2d=means2d[c], means2d_absgrad=None if absgrad is None else absgrad[c])
            for c in range(len(means2d))
        ]


def available_backends() -> List[str]:
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


def _check_tile_pairs(num_pairs, num_gaussians, num_cameras, camera, backend, device):
    needed = num_pairs * BYTES_PER_TILE_PAIR[backend]
    if num_pairs > MAX_TILE_PAIRS or needed > free_bytes(device):
        views = "1 camera" if num_cameras == 1 else f"{num_cameras} cameras"
        raise TilePairOverflowError(
            f"{num_gaussians:,} Gaussians seen by {views} of {camera.width}x{camera.height} pixels cover "
            f"{num_pairs:,} (Gaussian, tile) pairs, needing {needed / 2**30:.1f} GiB to sort (limit "
            f"{MAX_TILE_PAIRS:,} pairs and the free memory of {device}); render at a lower resolution "
            "(camera.width, camera.height) or with fewer or smaller Gaussians (means, scales)"
        )


def _check_batch_size(num_cameras, num_gaussians, camera, channels, backend):
    """The kernels index the rows of all cameras and the tiles of all cameras with int32; the sort key of a pair
    holds its tile in 32 bits; CUDA launches one block row per camera."""
    tiles = num_cameras * math.ceil(camera.width / TILE_SIZE) * math.ceil(camera.height / TILE_SIZE)
    if num_cameras * num_gaussians > MAX_ROWS:
        raise ValueError(f"{num_cameras} cameras x {num_gaussians:,} Gaussians exceed the {MAX_ROWS:,} rows that one "
                         "call can project; render the cameras in smaller groups")
    if tiles > MAX_TILES:
        raise ValueError(f"{num_cameras} cameras of {camera.width}x{camera.height} pixels make {tiles:,} tiles, over "
                         f"the {MAX_TILES:,} that the sort keys can number; render the cameras in smaller groups")
    blocks = num_cameras * math.ceil(channels / CUDA_CHANNELS_PER_BLOCK)
    if backend == "cuda" and blocks > MAX_CUDA_GRID_Z:
        raise ValueError(f"{num_cameras} cameras of {channels} channels need {blocks:,} CUDA block layers, over the "
                         f"{MAX_CUDA_GRID_Z:,} of one launch; render the cameras in smaller groups")


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, native, backend, camera, settings, means, scales, rotations, opacities, sh_coeffs, features,
                world_to_camera, background, means2d_leaf, absgrad_leaf):
        sh_degree, normalize_rotations, uses_sh, num_cameras = settings
        cam_args = (world_to_camera, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                    camera.near, camera.far, sh_degree, normalize_rotations)
        radii, means2d, depths, conics, sh_colors, tiles_touched, tile_extents = native.preprocess_forward(
            means, scales, rotations, opacities, sh_coeffs, *cam_args)
        colors = sh_colors if uses_sh else features
        num_pairs = int(tiles_touched.sum(dtype=torch.int64))
        _check_tile_pairs(num_pairs, means.shape[0] // num_cameras, num_cameras, camera, backend, means.device)
        tile_ranges, sorted_ids = native.bin_and_sort(means2d, depths, tiles_touched, tile_extents, camera.width,
                                                      camera.height, num_pairs, num_cameras)
        blend_args = (tile_ranges, sorted_ids, means2d, conics, opacities, colors, depths, background,
                      camera.width, camera.height, num_cameras)
        image, depth, final_t, num_processed = native.blend_forward(*blend_args)

        ctx.native, ctx.cam_args = native, cam_args
        ctx.blend_sizes = (camera.width, camera.height, num_cameras)
        ctx.uses_sh = uses_sh
        ctx.leaf_shape = means2d_leaf.shape
        ctx.shared_sh_shape = sh_coeffs.shape if uses_sh and sh_coeffs.shape[0] != means.shape[0] else None
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
        if ctx.shared_sh_shape is not None:
            # One row of gradients per camera and Gaussian, for coefficients the cameras share.
            d_sh = d_sh.view(-1, *ctx.shared_sh_shape).sum(0)
        d_background = (d_image * final_t[:, None]).sum(dim=(2, 3)).sum(0)
        d_features = None if ctx.uses_sh else d_colors
        return (None, None, None, None, d_means, d_scales, d_rotations, d_opacities.view(-1, 1),
                d_sh if ctx.uses_sh else None, d_features, d_world_to_camera, d_background,
                d_means2d.view(ctx.leaf_shape), d_means2d_abs.view(ctx.leaf_shape))

def _expected_depth(weighted_depth, alpha):
    return torch.where(alpha > 0, weighted_depth / alpha.clamp_min(1e-10), torch.zeros_like(alpha))


def _per_camera(value, dims):
    """Whether a per-Gaussian input of a batched call holds one set per camera (one more dimension than dims)."""
    return value.dim() == dims + 1


def _rasterize_reference(cameras, inputs, sh_degree, background, normalize_rotations):
    """The reference backend renders a batched call one camera after another."""
    outputs = []
    for c, camera in enumerate(cameras):
        means, scales, rotations, opacities, sh_coeffs, features = (
            None if value is None else value[c] if _per_camera(value, dims) else value
            for value, dims in zip(inputs, (2, 2, 2, 2, 3, 2)))
        outputs.append(reference.rasterize_reference(means, scales, rotations, opacities, camera, sh_coeffs,
                                                     sh_degree, features, background, normalize_rotations))
    return [torch.stack(parts) for parts in zip(*outputs)], [output[4] for output in outputs]


def rasterize_gaussians(means: torch.Tensor, scales: torch.Tensor, rotations: torch.Tensor, opacities: torch.Tensor,
                        camera: Union[Camera, Sequence[Camera]], sh_coeffs: Optional[torch.Tensor] = None,
                        sh_degree: int = 0, features: Optional[torch.Tensor] = None,
                        background: Optional[torch.Tensor] = None, normalize_rotations: bool = False,
                        backend: str = "auto") -> RasterOutput:
    """Renders N 3D Gaussians into one view, or into C views in one pass, differentiably.

    means: (N, 3) world-space centres.
    scales: (N, 3) activated (positive) standard deviations along the local axes.
    rotations: (N, 4) quaternions (w, x, y, z), used as given: a non-unit
        quaternion yields a non-orthonormal rotation (the deblurring method
        relies on this); normalize_rotations=True normalises them first.
    opacities: (N, 1) activated opacities in [0, 1].
    camera: a Camera, or a list of C Cameras that differ in world_to_camera
        alone. A list renders every camera with one projection pass, one sort
        and one blend; each per-Gaussian input may then be (C, N, ...), one
        set per camera (e.g. Gaussians that move between the moments of an
        exposure), or (N, ...), seen by every camera, and every output gains
        a leading camera dimension (see RasterOutput).
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
    batched = isinstance(camera, (list, tuple))
    cameras = camera_list(camera)
    num_cameras, n = len(cameras), means.shape[-2]
    leaves: Optional[Tuple[List[torch.Tensor], Optional[List[torch.Tensor]]]]
    absgrad: Optional[torch.Tensor]

    if backend == "reference":
        inputs = (means, scales, rotations, opacities, sh_coeffs, features)
        (image, weighted_depth, final_t, radii, means2d), camera_means2d = _rasterize_reference(
            cameras, inputs, sh_degree, background, normalize_rotations)
        leaves, absgrad = (camera_means2d, None), None
        if not batched:
            radii, means2d = radii[0], camera_means2d[0]
        if means2d.requires_grad:
            for camera_leaf in camera_means2d:
                camera_leaf.retain_grad()
            means2d.retain_grad()
    else:
        backend, native = _native_module(backend, means.device)
        _check_batch_size(num_cameras, n, cameras[0], channels, backend)

        def rows(value, dims):
            """A per-Gaussian input as the native stages take it: one row per camera and Gaussian."""
            if not batched:
                return value.contiguous()
            if not _per_camera(value, dims):
                value = value.expand(num_cameras, *value.shape)
            return value.reshape(num_cameras * n, *value.shape[2:]).contiguous()

        def leaf():
            return torch.zeros((n, 2), dtype=means.dtype, device=means.device, requires_grad=True)

        # A batched call's means2d stacks one tensor per camera, so that unbind() can hand each camera its own.
        if batched:
            camera_means2d, camera_absgrad = [leaf() for _ in cameras], [leaf() for _ in cameras]
            leaves = (camera_means2d, camera_absgrad)
            means2d, absgrad = torch.stack(camera_means2d), torch.stack(camera_absgrad)
            if means2d.requires_grad:  # not under torch.no_grad()
                means2d.retain_grad()
                absgrad.retain_grad()
            world_to_camera = torch.stack([view.world_to_camera for view in cameras])
            # Coefficients that every camera sees stay one set: the stages read them per Gaussian.
            sh_rows = None if sh_coeffs is None else rows(sh_coeffs, 3) if _per_camera(sh_coeffs, 3) else sh_coeffs
        else:
            leaves = None
            means2d, absgrad = leaf(), leaf()
            world_to_camera = cameras[0].world_to_camera
            sh_rows = sh_coeffs
        empty = means.new_empty(0)
        image, weighted_depth, final_t, radii, projected = _Rasterize.apply(
            native, backend, cameras[0],
            (int(sh_degree), bool(normalize_rotations), sh_coeffs is not None, num_cameras),
            rows(means, 2), rows(scales, 2), rows(rotations, 2), rows(opacities, 2),
            empty if sh_rows is None else sh_rows.contiguous(), empty if features is None else rows(features, 2),
            world_to_camera.contiguous(), background.contiguous(), means2d, absgrad)
        # The leaves receive the screen-space gradients; give them the projected values too.
        with torch.no_grad():
            means2d.copy_(projected.view_as(means2d))
        if batched:
            with torch.no_grad():
                for camera_leaf, values in zip(camera_means2d, means2d):
                    camera_leaf.copy_(values)
            radii = radii.view(num_cameras, n)
    if not batched:
        image, weighted_depth, final_t = image[0], weighted_depth[0], final_t[0]

    alpha = 1 - final_t
    return RasterOutput(image=image, depth=_expected_depth(weighted_depth, alpha), alpha=alpha, radii=radii,
                        means2d=means2d, means2d_absgrad=absgrad, camera_leaves=leaves if batched else None)
