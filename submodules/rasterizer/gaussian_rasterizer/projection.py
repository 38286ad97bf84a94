"""The EWA projection of 3D Gaussians onto a camera's image, in PyTorch and differentiable by autograd.

It is the projection every backend applies before blending, stated in PyTorch: the reference backend renders
with it, and a caller that needs a Gaussian's screen-space footprint with gradients (e.g. to keep its coverage as
its covariance changes) gets exactly what the rasterizer draws.

    from gaussian_rasterizer import project_gaussians
    projected = project_gaussians(means, scales, rotations, camera)
    projected.covariances2d  # (N, 2, 2) pixels^2
"""
from typing import NamedTuple

import torch

from .camera import Camera

# Added to the variances of every 2D covariance (pixels^2), as in 3DGS: no Gaussian is drawn thinner than about
# half a pixel.
LOW_PASS_DILATION = 0.3
# Off screen, the perspective Jacobian is evaluated at most this fraction of the half field of view beyond the
# image border.
FRUSTUM_MARGIN = 0.3


class ProjectedGaussians(NamedTuple):
    """What project_gaussians returns, for N Gaussians."""

    camera_means: torch.Tensor  # (N, 3) means in camera space
    means2d: torch.Tensor  # (N, 2) projected means in pixels
    covariances2d: torch.Tensor  # (N, 2, 2) screen-space covariances in pixels^2, LOW_PASS_DILATION added
    in_depth_range: torch.Tensor  # (N,) bool: depth within (near, far); the others are culled


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions (w, x, y, z), not renormalised -> (N, 3, 3)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(-1, 3, 3)


def normalize(vectors: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(N, D) rows scaled to unit length, as the backends do: a row whose squared norm is 0 (or underflows to 0)
    becomes `fallback` (D,), and passes no gradient."""
    squared_norm = (vectors * vectors).sum(dim=-1, keepdim=True)
    nonzero = squared_norm > 0
    norm = torch.sqrt(torch.where(nonzero, squared_norm, torch.ones_like(squared_norm)))
    return torch.where(nonzero, vectors / norm, fallback)


def project_gaussians(means: torch.Tensor, scales: torch.Tensor, rotations: torch.Tensor, camera: Camera,
                      normalize_rotations: bool = False) -> ProjectedGaussians:
    """EWA projection of Gaussians with means (N, 3), scales (N, 3) and quaternions (N, 4; w, x, y, z) onto camera,
    as rasterize_gaussians projects them (normalize_rotations as there). Culled Gaussians get finite values too."""
    view = camera.world_to_camera
    R, t = view[:3, :3], view[:3, 3]
    mean_cam = means @ R.T + t
    if normalize_rotations:
        # A quaternion of norm 0 stays 0: its matrix is the identity.
        rotations = normalize(rotations, torch.zeros_like(rotations[0]))
    M = quaternion_to_matrix(rotations) * scales[:, None, :]
    cov_world = M @ M.transpose(1, 2)
    cov_cam = R @ cov_world @ R.T

    x, y, z = mean_cam.unbind(-1)
    in_depth_range = (z > camera.near) & (z < camera.far)
    # Culled Gaussians still go through the arithmetic; a harmless depth keeps
    # their NaNs out of the gradients.
    z = torch.where(in_depth_range, z, torch.ones_like(z))
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    margin_x = FRUSTUM_MARGIN * 0.5 * camera.width / fx
    margin_y = FRUSTUM_MARGIN * 0.5 * camera.height / fy
    u = (x / z).clamp(-(cx / fx + margin_x), (camera.width - cx) / fx + margin_x)
    v = (y / z).clamp(-(cy / fy + margin_y), (camera.height - cy) / fy + margin_y)
    zero = torch.zeros_like(z)
    J = torch.stack([fx / z, zero, -fx * u / z, zero, fy / z, -fy * v / z], dim=-1).reshape(-1, 2, 3)
    cov2d = J @ cov_cam @ J.transpose(1, 2)
    cov2d = cov2d + LOW_PASS_DILATION * torch.eye(2, dtype=means.dtype, device=means.device)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return ProjectedGaussians(mean_cam, means2d, cov2d, in_depth_range)
