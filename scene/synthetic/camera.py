"""Camera geometry for the generator: intrinsics, the forward-facing arc of views, hand-shake trajectories
and the stratified sample patterns of the pixel footprint and the lens aperture.

Poses are camera-to-world rotations (3, 3) with camera centres (3,), in the OpenCV convention (x right,
y down, z forward). The world uses the same axes: the cameras look roughly along +z and "up" is -y.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PinholeIntrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_field_of_view(cls, width, height, horizontal_fov_degrees):
        focal = 0.5 * width / np.tan(np.radians(horizontal_fov_degrees) / 2.0)
        return cls(float(focal), float(focal), width / 2.0, height / 2.0, int(width), int(height))


def look_at(centre, target):
    """Camera-to-world rotation of a camera at centre looking at target, with no roll."""
    forward = np.asarray(target, np.float64) - np.asarray(centre, np.float64)
    forward /= np.linalg.norm(forward)
    world_down = np.array([0.0, 1.0, 0.0])
    right = np.cross(world_down, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def world_to_camera_matrix(rotation, centre):
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.T
    matrix[:3, 3] = -rotation.T @ centre
    return matrix


def forward_facing_arc(num_views, rng, radius=6.0, tilt=0.25, arc_degrees=16.0, vertical_sway=0.1, jitter=0.02):
    """Views on a horizontal arc around a point `radius` ahead of and `tilt` below the middle camera, left to
    right in capture order, swaying slightly up and down (as a hand-held capture does, and so that the
    cameras do not all lie on one line). Returns rotations (N, 3, 3) and centres (N, 3)."""
    pivot = np.array([0.0, tilt, radius])
    fractions = np.linspace(0.0, 1.0, num_views)
    angles = np.radians(arc_degrees) * (fractions - 0.5)
    centres = np.stack([radius * np.sin(angles),
                        vertical_sway * np.sin(2.0 * np.pi * fractions),
                        radius * (1.0 - np.cos(angles))], axis=1)
    centres += rng.normal(0.0, jitter, size=centres.shape)
    targets = pivot + rng.normal(0.0, jitter * 5.0, size=centres.shape)
    rotations = np.stack([look_at(centre, target) for centre, target in zip(centres, targets)])
    return rotations, centres


def axis_angle_to_matrix(rotation_vectors):
    """Rodrigues' formula for (K, 3) rotation vectors; a zero vector gives exactly the identity."""
    rotation_vectors = np.asarray(rotation_vectors, np.float64)
    angles = np.linalg.norm(rotation_vectors, axis=1)
    axes = rotation_vectors / np.where(angles > 0.0, angles, 1.0)[:, None]
    cross = np.zeros((len(axes), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    cross -= cross.transpose(0, 2, 1)
    sin = np.sin(angles)[:, None, None]
    one_minus_cos = (1.0 - np.cos(angles))[:, None, None]
    return np.eye(3) + sin * cross + one_minus_cos * (cross @ cross)


def _bezier(control_points, times):
    """Cubic Bezier curve through 4 control points (4, D), evaluated at times (K,)."""
    t = times[:, None]
    weights = [(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t ** 2 * (1 - t), t ** 3]
    return sum(weight * point for weight, point in zip(weights, control_points))


def _scaled_to_peak(path, peak):
    largest = np.linalg.norm(path, axis=1).max()
    return path * (peak / largest) if largest > 0.0 else path


def shake_trajectory(rng, num_subframes, rotation_amplitude, translation_amplitude):
    """A smooth random hand-shake path through the exposure, relative to the mid-exposure pose.

    Rotation vectors (K, 3, radians) and camera-frame translations (K, 3) at the K sub-frame times
    (k + 0.5) / K. Each is a random cubic Bezier curve, shifted so that it passes through zero at mid-exposure
    and scaled so that its largest excursion equals the amplitude; an amplitude of zero gives exact zeros.
    """
    times = (np.arange(num_subframes) + 0.5) / num_subframes
    curves = []
    for amplitude in (rotation_amplitude, translation_amplitude):
        control_points = rng.normal(size=(4, 3))
        path = _bezier(control_points, times) - _bezier(control_points, np.array([0.5]))
        curves.append(_scaled_to_peak(path, amplitude))
    return curves[0], curves[1]


def apply_shake(rotation, centre, rotation_vectors, translations):
    """Sub-frame camera-to-world poses: the mid-exposure pose perturbed in its own camera frame."""
    rotations = rotation @ axis_angle_to_matrix(rotation_vectors)
    centres = centre + translations @ rotation.T
    return rotations, centres


def stratum_corners(count):
    """Splits the unit square into `count` equal cells on a grid as square as possible; returns each cell's
    lower corner (count, 2) and the cell size (2,)."""
    columns = max(divisor for divisor in range(1, int(np.sqrt(count)) + 1) if count % divisor == 0)
    rows = count // columns
    index = np.arange(count)
    corners = np.stack([index % columns / columns, index // columns / rows], axis=1).astype(np.float32)
    return corners, np.array([1.0 / columns, 1.0 / rows], np.float32)


def square_to_disk(x, y):
    """Shirley and Chiu's concentric map from [0, 1)^2 to the unit disk; it keeps strata compact, so a
    stratified square gives a stratified aperture."""
    a = 2.0 * x - 1.0
    b = 2.0 * y - 1.0
    a_dominant = np.abs(a) > np.abs(b)
    radius = np.where(a_dominant, a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.where(a_dominant, (np.pi / 4.0) * (b / a), np.pi / 2.0 - (np.pi / 4.0) * (a / b))
    angle = np.where(radius == 0.0, 0.0, angle)
    return radius * np.cos(angle), radius * np.sin(angle)
