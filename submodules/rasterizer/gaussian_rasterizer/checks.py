"""Argument checks with messages that name the offending argument.

The native kernels trust their inputs; everything a user can get wrong is
caught here first, before any memory is touched.
"""
import contextvars
import math
import numbers
import os
from typing import List, Optional

import torch

from .camera import Camera
from .reference import TILE_SIZE

MAX_SH_DEGREE = 3
# The kernels hold image sides, tile counts and tile ids in int32: a side must leave room to round up to whole
# tiles, and the tiles must be numbered below 2^31.
MAX_IMAGE_SIDE = 2**31 - TILE_SIZE
MAX_TILES = 2**31 - 1
# A CUDA grid has at most 65,535 blocks along y, and the blend kernels run one block per row of tiles.
MAX_CUDA_TILE_ROWS = 65_535
# Per pixel, a render holds the image's channels, the weighted depth, the transmittance and the per-pixel list
# length that backward reads, then the alpha and depth it returns: (channels + 5) 4-byte values. Per tile it holds
# one int32 range [start, end).
PLANES_BEYOND_CHANNELS = 5
BYTES_PER_TILE = 8

_deferred_check: contextvars.ContextVar[Optional["DeferredFiniteCheck"]] = contextvars.ContextVar(
    "gaussian_rasterizer deferred finite check", default=None)


class DeferredFiniteCheck:
    """Inside `with check:`, rasterize_gaussians leaves the verdict of its NaN/Inf check of the input tensors on
    their device instead of reading it (on a GPU each read waits for the device) and raises nothing; all_finite
    then holds, unread, whether every such call had finite inputs. Outside any such block a call with a NaN or Inf
    input raises ValueError naming the tensor. A check can be entered again and again: it gathers every call until
    clear()."""

    def __init__(self) -> None:
        self.all_finite: Optional[torch.Tensor] = None  # a bool scalar on the inputs' device; None before any call
        self._tokens: List[contextvars.Token[Optional[DeferredFiniteCheck]]] = []

    def __enter__(self) -> "DeferredFiniteCheck":
        self._tokens.append(_deferred_check.set(self))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _deferred_check.reset(self._tokens.pop())

    def record(self, finite: torch.Tensor) -> None:
        self.all_finite = finite if self.all_finite is None else self.all_finite & finite

    def clear(self) -> None:
        self.all_finite = None
# What the cameras of one call must have in common.
SHARED_CAMERA_FIELDS = ("width", "height", "fx", "fy", "cx", "cy", "near", "far")


def _tensor(value, name, shape, device=None):
    """Checks type, dtype, shape (None = any size) and device; returns (name, value) for _check_finite."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype != torch.float32:
        raise ValueError(f"{name} must be float32, got {value.dtype}")
    if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(value.shape)}")
    if device is not None and value.device != device:
        raise ValueError(f"{name} is on {value.device} but means are on {device}")
    return name, value


def _check_finite(named_tensors):
    """Names the first tensor that holds a NaN or an Inf, or inside a DeferredFiniteCheck records the verdict
    there. On a GPU each read of a result waits for the device, so all tensors are read at once: through their
    float64 sums, which are non-finite exactly when an element is (float32 values cannot overflow a float64 sum)."""
    sums = torch.stack([value.sum(dtype=torch.float64) for _, value in named_tensors])
    deferred = _deferred_check.get()
    if deferred is not None:
        deferred.record(torch.isfinite(sums).all())
        return
    for (name, _), finite in zip(named_tensors, torch.isfinite(sums).tolist()):
        if not finite:
            raise ValueError(f"{name} contains NaN or Inf")


def free_bytes(device):
    """Memory that the device has free now."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _positive_number(value, name, integer=False):
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value <= 0:
        what = "a positive integer" if integer else "a positive finite number"
        raise ValueError(f"{name} must be {what}, got {value!r}")


def check_camera(camera, device, name="camera"):
    """Returns (name, world_to_camera) for _check_finite."""
    if not isinstance(camera, Camera):
        raise ValueError(f"{name} must be a gaussian_rasterizer.Camera, got {type(camera).__name__}")
    pose = _tensor(camera.world_to_camera, f"{name}.world_to_camera", (4, 4), device)
    for field in ("fx", "fy"):
        _positive_number(getattr(camera, field), f"{name}.{field}")
    for field in ("cx", "cy"):
        value = getattr(camera, field)
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"{name}.{field} must be a finite number, got {value!r}")
    for field in ("width", "height"):
        _positive_number(getattr(camera, field), f"{name}.{field}", integer=True)
        if getattr(camera, field) > MAX_IMAGE_SIDE:
            raise ValueError(f"{name}.{field} must be at most {MAX_IMAGE_SIDE:,} (int32 pixel and tile indices), "
                             f"got {getattr(camera, field):,}")
    tiles_x, tiles_y = -(-camera.width // TILE_SIZE), -(-camera.height // TILE_SIZE)
    if tiles_x * tiles_y > MAX_TILES:
        raise ValueError(f"{name}.width x {name}.height = {camera.width:,} x {camera.height:,} covers "
                         f"{tiles_x * tiles_y:,} tiles of {TILE_SIZE}x{TILE_SIZE} pixels; the kernels number at most "
                         f"{MAX_TILES:,} (int32)")
    if device.type == "cuda" and tiles_y > MAX_CUDA_TILE_ROWS:
        raise ValueError(f"{name}.height must be at most {MAX_CUDA_TILE_ROWS * TILE_SIZE:,} on CUDA (a grid of at "
                         f"most {MAX_CUDA_TILE_ROWS:,} rows of tiles), got {camera.height:,}")
    _positive_number(camera.near, f"{name}.near")
    if not isinstance(camera.far, numbers.Real) or not camera.far > camera.near:
        raise ValueError(f"{name}.far must be greater than {name}.near, got near={camera.near}, far={camera.far}")
    return pose


def check_image_size(camera, channels, device):
    """Raises where the buffers of one render of `channels` channels, for each camera of the call, cannot fit in the
    device's free memory."""
    cameras = camera_list(camera)
    first = cameras[0]
    tiles = -(-first.width // TILE_SIZE) * -(-first.height // TILE_SIZE)
    needed = len(cameras) * (4 * (channels + PLANES_BEYOND_CHANNELS) * first.width * first.height
                             + BYTES_PER_TILE * tiles)
    available = free_bytes(device)
    if needed > available:
        views = f" for {len(cameras)} cameras" if len(cameras) > 1 else ""
        raise ValueError(f"camera.width x camera.height = {first.width:,} x {first.height:,} needs "
                         f"{needed / 2**30:,.1f} GiB of image buffers ({channels} channels){views}, more than the "
                         f"{available / 2**30:,.1f} GiB free on {device}")


def camera_list(camera):
    """The cameras of a call: [camera] for one Camera, the cameras of a list or tuple for a batched call."""
    if isinstance(camera, (list, tuple)):
        if not camera:
            raise ValueError("camera must hold at least one Camera, got an empty list")
        return list(camera)
    return [camera]


def _check_cameras(camera, device):
    """Checks one Camera, or a list of them that differ in their poses alone; returns what _check_finite reads."""
    if not isinstance(camera, (list, tuple)):
        return [check_camera(camera, device)]
    cameras = camera_list(camera)
    poses = [check_camera(view, device, f"camera[{index}]") for index, view in enumerate(cameras)]
    # The native stages blend every camera into one grid of tiles of one size and share the intrinsics.
    for index, view in enumerate(cameras[1:], start=1):
        for field in SHARED_CAMERA_FIELDS:
            if getattr(view, field) != getattr(cameras[0], field):
                raise ValueError(
                    f"camera[{index}].{field} is {getattr(view, field)!r} but camera[0].{field} is "
                    f"{getattr(cameras[0], field)!r}: the cameras of one call differ in world_to_camera alone"
                )
    return poses


def _per_camera_tensor(value, name, shape, cameras, device):
    """A per-Gaussian input: shape, or (C, *shape) with one set per camera in a call of C cameras (None for a call
    with one Camera)."""
    if cameras is not None and isinstance(value, torch.Tensor) and value.dim() == len(shape) + 1:
        return _tensor(value, name, (cameras, *shape), device)
    return _tensor(value, name, shape, device)


def check_inputs(means, scales, rotations, opacities, camera, sh_coeffs, sh_degree, features, background):
    """Validates every input; returns the number of colour channels.

    With a list of C cameras each per-Gaussian input may hold one set per camera, (C, N, ...), or one set that
    every camera sees, (N, ...)."""
    cameras = len(camera_list(camera)) if isinstance(camera, (list, tuple)) else None
    tensors = [_per_camera_tensor(means, "means", (None, 3), cameras, None)]
    n, device = means.shape[-2], means.device
    tensors += [_per_camera_tensor(scales, "scales", (n, 3), cameras, device),
                _per_camera_tensor(rotations, "rotations", (n, 4), cameras, device),
                _per_camera_tensor(opacities, "opacities", (n, 1), cameras, device)]
    tensors += _check_cameras(camera, device)

    if (sh_coeffs is None) == (features is None):
        raise ValueError("pass exactly one of sh_coeffs (N, K, 3) and features (N, C)")
    if sh_coeffs is not None:
        tensors.append(_per_camera_tensor(sh_coeffs, "sh_coeffs", (n, None, 3), cameras, device))
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, numbers.Integral):
            raise ValueError(f"sh_degree must be an integer, got {sh_degree!r}")
        sh_degree = int(sh_degree)
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be between 0 and {MAX_SH_DEGREE}, got {sh_degree}")
        if sh_coeffs.shape[-2] < (sh_degree + 1) ** 2:
            raise ValueError(
                f"sh_coeffs has {sh_coeffs.shape[-2]} coefficients per channel; "
                f"degree {sh_degree} needs {(sh_degree + 1) ** 2}"
            )
        channels = 3
    else:
        tensors.append(_per_camera_tensor(features, "features", (n, None), cameras, device))
        channels = features.shape[-1]
        if channels < 1:
            raise ValueError("features must have at least one channel")

    if background is not None:
        tensors.append(_tensor(background, "background", (channels,), device))
    _check_finite(tensors)
    check_image_size(camera, channels, device)
    return channels
