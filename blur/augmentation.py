"""KNN point augmentation: SfM on blurry photos finds few points, so once during training the method scatters new
points over the scene, colours them from their nearest Gaussians, and restarts every Gaussian from its
initial shape."""

from argparse import Namespace

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.neighbors import NearestNeighbors

from scene.gaussian_model import GaussianModel, inverse_sigmoid, mean_squared_distance_to_neighbours
from utils.errors import UserError

COLOR_WEIGHTINGS = ("distance", "inverse_distance")
# Per axis, the sampling box runs from the 10th smallest to the 10th largest coordinate of the SfM points, so
# that a few stray points do not stretch it.
ROBUST_BOUND_RANK = 10
INITIAL_OPACITY = 0.1
# Squared neighbour spacing below which a Gaussian's initial size is floored, as at initialisation.
MIN_SQUARED_SPACING = 1e-7


class AugmentationError(UserError, ValueError):
    """Points that cannot be augmented: too few, or not finite."""


def robust_bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis (lower, upper) of points (P, 3) ignoring the ROBUST_BOUND_RANK - 1 most extreme values on each
    side (fewer for small point sets)."""
    ordered = np.sort(points, axis=0)
    rank = min(ROBUST_BOUND_RANK, (len(points) + 1) // 2)
    return ordered[rank - 1], ordered[len(points) - rank]


def augmentation_count(points: np.ndarray, rate: float, max_points: int) -> int:
    """N_p: the volume of the points' bounding box in cells of side rate, at most max_points."""
    volume = float(np.prod(points.max(axis=0) - points.min(axis=0)))
    return int(min(volume / rate**3, max_points))


def neighbour_weights(new_points: np.ndarray, existing_points: np.ndarray, neighbours: int, max_distance: float,
                      weighting: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each new point, its `neighbours` nearest existing points closer than max_distance and their colour
    weights (summing to 1).

    Returns (keep (P,) bool: points with at least one such neighbour, indices (Q, K), weights (Q, K)) for the
    Q kept points; a neighbour beyond max_distance has weight 0. "distance" weighs each neighbour in proportion
    to its distance (the official code's choice), "inverse_distance" in proportion to 1 / distance.
    """
    if weighting not in COLOR_WEIGHTINGS:
        raise ValueError(f"colour weighting must be one of {', '.join(COLOR_WEIGHTINGS)}, got {weighting!r}")
    neighbours = min(neighbours, len(existing_points))
    if len(new_points) == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, neighbours), dtype=np.int64), np.zeros((0, neighbours))
    search = NearestNeighbors(n_neighbors=neighbours).fit(existing_points)
    distances, indices = search.kneighbors(new_points)
    close = distances < max_distance
    keep = close.any(axis=1)
    distances, indices, close = distances[keep], indices[keep], close[keep]
    if weighting == "distance":
        weights = np.where(close, distances, 0.0)
    else:
        weights = np.where(close, 1.0 / np.maximum(distances, np.finfo(np.float64).tiny), 0.0)
    totals = weights.sum(axis=1, keepdims=True)
    # A new point lying exactly on all its close neighbours has no distances to weigh by: they count equally.
    equal = close / close.sum(axis=1, keepdims=True)
    weights = np.where(totals > 0.0, weights / np.where(totals > 0.0, totals, 1.0), equal)
    return keep, indices, weights


def augment_points(gaussians: GaussianModel, initial_points: ArrayLike, opt: Namespace, neighbours: int = 4,
                   max_distance: float = 2.0, rate: float = 1.1, max_points: int = 200_000,
                   color_weighting: str = "distance") -> tuple[int, int]:
    """Add KNN-coloured points to gaussians, then reset every Gaussian and the optimizer.

    N_p = augmentation_count(initial_points) points are drawn uniformly (from torch's generator) in the robust
    bounding box of initial_points (P, 3), the SfM points training started from. Each takes the weighted mean
    of all SH coefficients of its nearest Gaussians (see neighbour_weights); a point with no Gaussian within
    max_distance is dropped. Afterwards every Gaussian, old and new, keeps its position and colour but restarts
    from the initial shape: isotropic scale from the spacing of its 3 nearest neighbours, identity rotation,
    opacity 0.1; the Adam state of opt's optimizer starts over. Returns (points drawn, points added).
    """
    initial_points = np.asarray(initial_points, dtype=np.float64)
    if initial_points.ndim != 2 or initial_points.shape[1] != 3 or len(initial_points) < 2:
        raise AugmentationError(f"initial points must be a (P, 3) array with P >= 2, got shape {initial_points.shape}")
    if not np.isfinite(initial_points).all():
        raise AugmentationError("initial points contain non-finite coordinates")
    if gaussians.num_points < 2:
        raise AugmentationError(f"cannot augment a model of {gaussians.num_points} Gaussian(s): at least 2 are needed")

    lower, upper = robust_bounds(initial_points)
    count = augmentation_count(initial_points, rate, max_points)
    unit_samples = torch.rand(count, 3, dtype=torch.float64).numpy()
    samples = lower + unit_samples * (upper - lower)

    device = gaussians.device
    existing_means = gaussians.get_xyz.detach()
    existing_features = gaussians.get_features.detach()
    keep, neighbour_indices, neighbour_colour_weights = neighbour_weights(
        samples, existing_means.cpu().numpy(), neighbours, max_distance, color_weighting)
    indices = torch.from_numpy(neighbour_indices).to(device)
    weights = torch.from_numpy(neighbour_colour_weights).to(device=device, dtype=existing_features.dtype)
    # One gather per neighbour rank rather than one (Q, K, coefficients, 3) block: memory stays linear in Q.
    new_features = existing_features.new_zeros((len(indices), *existing_features.shape[1:]))
    for rank in range(indices.shape[1]):
        new_features += weights[:, rank, None, None] * existing_features[indices[:, rank]]
    new_means = torch.tensor(samples[keep], dtype=existing_means.dtype, device=device)

    means = torch.cat([existing_means, new_means])
    features = torch.cat([existing_features, new_features])
    reset_to_initial_shape(gaussians, means, features, opt)
    return count, len(new_means)


def reset_to_initial_shape(gaussians: GaussianModel, means: torch.Tensor, features: torch.Tensor,
                           opt: Namespace) -> None:
    """Replace the Gaussians by ones at means (N, 3) with SH coefficients features (N, K, 3) in the shape a
    freshly initialised model has, and restart their optimizer."""
    squared_spacing = np.maximum(mean_squared_distance_to_neighbours(means.cpu().numpy()), MIN_SQUARED_SPACING)
    log_scale = torch.log(torch.sqrt(torch.tensor(squared_spacing, dtype=means.dtype, device=means.device)))
    count = len(means)
    rotations = torch.zeros(count, 4, dtype=means.dtype, device=means.device)
    rotations[:, 0] = 1.0
    gaussians._set_parameters(
        xyz=means,
        f_dc=features[:, :1],
        f_rest=features[:, 1:],
        opacity=inverse_sigmoid(torch.full((count, 1), INITIAL_OPACITY, dtype=means.dtype, device=means.device)),
        scaling=log_scale[:, None].repeat(1, 3),
        rotation=rotations,
    )
    gaussians.training_setup(opt)
