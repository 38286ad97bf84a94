"""Pinhole camera description shared by every backend."""
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in the OpenCV convention (x right, y down, z forward).

    world_to_camera: (4, 4) float32 tensor. Gradients flow into it when it
        requires grad, for pose refinement and camera-motion blur.
    fx, fy, cx, cy: intrinsics in pixels; pixel (i, j) is sampled at its
        centre (i + 0.5, j + 0.5).
    width, height: image size in pixels.
    near, far: Gaussians whose camera-space depth is outside (near, far) are
        culled.
    """

    world_to_camera: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10
