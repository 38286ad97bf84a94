"""Argument checks with messages that name the offending argument.

The native kernels trust their inputs; everything a user can get wrong is
caught here first, before any memory is touched.
"""
import math
import numbers

import torch

from .camera import Camera

MAX_SH_DEGREE = 3
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
    """Names the first tensor that holds a NaN or an Inf. On a GPU each read of a result waits for the device, so
    all tensors are read at once: through their float64 sums, which are non-finite exactly when an element is
    (float32 values cannot overflow a float64 sum)."""
    sums = torch.stack([value.sum(dtype=torch.float64) for _, value in named_tensors])
    for (name, _), finite in zip(named_tensors, torch.isfinite(sums).tolist()):
        if not finite:
            raise ValueError(f"{name} contains NaN or Inf")


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
    _positive_number(camera.near, f"{name}.near")
    if not isinstance(camera.far, numbers.Real) or not camera.far > camera.near:
        raise ValueError(f"{name}.far must be greater than {name}.near, got near={camera.near}, far={camera.far}")
    return pose


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
    return channels
