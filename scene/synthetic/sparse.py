"""A sparse point cloud like the one structure-from-motion recovers from blurry photographs.

Points are seeded where the image at hand shows strong corners, so sharp, textured, near surfaces get many
and blurred or distant ones few. Each point is a noisy copy of the surface point seen at that pixel, coloured
from the (blurry) photograph, and observed in every view that sees that surface point unoccluded.
"""

from dataclasses import dataclass

import cv2
import numpy as np

# Corner strengths are compared with this percentile over all views: a pixel at least that strong is as
# easy to match as features get.
STRONG_CORNER_PERCENTILE = 99.0
# Triangulation error grows with the square of depth for a fixed baseline (world units at unit depth).
POSITION_NOISE_AT_UNIT_DEPTH = 5e-4
KEYPOINT_NOISE_PIXELS = 0.5
# A surface point counts as visible in a view when the depth seen there agrees to this fraction.
VISIBILITY_DEPTH_TOLERANCE = 0.02


@dataclass
class SparsePoints:
    """Points (P, 3) with colours (P, 3) uint8 and mean reprojection errors (P,) in pixels, and their
    observations: observation i is point observation_point[i] seen in view observation_view[i] at pixel
    position observation_xy[i] (pixel centres at +0.5)."""

    xyz: np.ndarray
    rgb: np.ndarray
    error: np.ndarray
    observation_point: np.ndarray
    observation_view: np.ndarray
    observation_xy: np.ndarray


def _project(intrinsics, rotation, centre, points):
    """Pixel positions (P, 2) and depths (P,) of world points in a view."""
    camera_points = (points - centre) @ rotation
    depth = camera_points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.stack([intrinsics.fx * camera_points[:, 0] / depth + intrinsics.cx,
                       intrinsics.fy * camera_points[:, 1] / depth + intrinsics.cy], axis=1)
    return xy, depth


def _corner_strength(image_rgb8):
    grey = cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return cv2.cornerMinEigenVal(grey, blockSize=3, ksize=3)


def _seed_weights(images, depths, full_density_depth):
    strengths = np.stack([_corner_strength(image) for image in images])
    reference = max(float(np.percentile(strengths, STRONG_CORNER_PERCENTILE)), 1e-12)
    with np.errstate(divide="ignore"):
        nearness = np.where(np.isfinite(depths), np.minimum(full_density_depth / depths, 1.0) ** 2, 0.0)
    return np.clip(strengths / reference, 0.0, 1.0) * nearness


def _visibility(intrinsics, rotations, centres, depths, points):
    """(P, N) booleans: whether each point is inside view n and not hidden behind what that view sees."""
    visible = []
    for rotation, centre, depth_map in zip(rotations, centres, depths):
        xy, point_depth = _project(intrinsics, rotation, centre, points)
        inside = (point_depth > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < intrinsics.width) & (xy[:, 1] >= 0) \
            & (xy[:, 1] < intrinsics.height)
        pixel = np.where(inside[:, None], xy, 0.0).astype(np.int64)
        depth_seen = depth_map[pixel[:, 1], pixel[:, 0]]
        visible.append(inside & (np.abs(depth_seen - point_depth) <= VISIBILITY_DEPTH_TOLERANCE * point_depth))
    return np.stack(visible, axis=1)


def sfm_like_points(intrinsics, rotations, centres, images, depths, num_points, full_density_depth, rng):
    """Samples about num_points points (fewer once points seen in a single view are dropped) from the surfaces
    the views see. rotations (N, 3, 3) and centres (N, 3) are the camera-to-world poses of images (N, H, W, 3)
    uint8 RGB, and depths (N, H, W) the depth seen at their pixel centres (inf where nothing is). Beyond
    full_density_depth, the chance of a point falls with the square of depth, as matching gets harder when
    the same texture covers fewer pixels."""
    weights = _seed_weights(images, depths, full_density_depth)
    keep_probability = np.minimum(weights * (num_points / max(weights.sum(), 1e-12)), 1.0)
    view, row, column = np.nonzero(rng.random(weights.shape) < keep_probability)
    depth = depths[view, row, column]
    camera_directions = np.stack([(column + 0.5 - intrinsics.cx) / intrinsics.fx,
                                  (row + 0.5 - intrinsics.cy) / intrinsics.fy, np.ones(view.size)], axis=1)
    surface_points = centres[view] + depth[:, None] * np.einsum("pij,pj->pi", rotations[view], camera_directions)
    noisy_points = surface_points + rng.normal(size=surface_points.shape) * (
        POSITION_NOISE_AT_UNIT_DEPTH * depth ** 2)[:, None]
    colours = images[view, row, column]

    seen = _visibility(intrinsics, rotations, centres, depths, surface_points)
    seen[np.arange(view.size), view] = True
    # Triangulation needs a point matched in at least two views.
    kept = seen.sum(axis=1) >= 2
    surface_points, noisy_points, colours, seen = surface_points[kept], noisy_points[kept], colours[kept], seen[kept]

    observation_point, observation_view = np.nonzero(seen)
    observed_xy = np.empty((observation_point.size, 2))
    reprojected_xy = np.empty((observation_point.size, 2))
    for index, (rotation, centre) in enumerate(zip(rotations, centres)):
        here = observation_view == index
        observed_xy[here] = _project(intrinsics, rotation, centre, surface_points[observation_point[here]])[0]
        reprojected_xy[here] = _project(intrinsics, rotation, centre, noisy_points[observation_point[here]])[0]
    observed_xy += rng.normal(0.0, KEYPOINT_NOISE_PIXELS, size=observed_xy.shape)
    distances = np.linalg.norm(observed_xy - reprojected_xy, axis=1)
    error = np.bincount(observation_point, distances, minlength=len(noisy_points)) / seen.sum(axis=1)
    return SparsePoints(noisy_points, colours, error, observation_point, observation_view, observed_xy)
