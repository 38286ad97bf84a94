"""Depth-scaled pruning: far Gaussians cover few pixels and collect small gradients, so they are pruned against a
lower opacity threshold than near ones and the sparse far field of a blurry capture survives."""

import torch

from scene.gaussian_model import GaussianModel


def depth_scaled_thresholds(depths: torch.Tensor, min_opacity: float, depth_range: float) -> torch.Tensor:
    """Per-Gaussian opacity thresholds min_opacity / d for depths (N,), with the depths rescaled linearly to d in
    [1, depth_range]: the nearest Gaussian is pruned below min_opacity, the farthest below
    min_opacity / depth_range. depth_range 1 gives every Gaussian min_opacity."""
    if depth_range < 1.0:
        raise ValueError(f"depth_range must be at least 1, got {depth_range}")
    if depths.numel() == 0:
        return depths.new_zeros(0)
    nearest, farthest = depths.min(), depths.max()
    span = farthest - nearest
    # All Gaussians at one depth are all "near".
    unit = (depths - nearest) / span if span > 0 else torch.zeros_like(depths)
    return min_opacity / (1.0 + unit * (depth_range - 1.0))


def prune_by_depth_scaled_opacity(gaussians: GaussianModel, min_opacity: float, depth_range: float) -> None:
    """Prune the Gaussians whose opacity is below their depth-scaled threshold. Depth is the world z coordinate,
    as in the official code, which suits forward-facing captures whose cameras look along z."""
    thresholds = depth_scaled_thresholds(gaussians.get_xyz[:, 2], min_opacity, depth_range)
    gaussians.prune_points(gaussians.get_opacity.squeeze(-1) < thresholds)
