"""Camera geometry for the generator: intrinsics, the forward-facing arc of views, hand-shake trajectories
and the stratified sample patterns of the pixel footprint and the lens aperture.

Poses are camera-to-world rotations (3, 3) with camera centres (3,), in the OpenCV convention (x right,
y down, z forward). The world uses the same axes: the cameras look roughly along +z and "up" is -y.
"""

from dataclasses import dataclass

import numpy as np

from utils.geometry import look_at


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
    rotations = np.stack([look_at(centre, target)[:3, :3] for centre, target in zip(centres, targets)])
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


SHAKE_PATHS = ("cubic", "walk", "jerk")
RECORDED_POSES = ("mid", "mean", "start")
# A least-squares cubic in time has 4 coefficients per axis, so it passes through up to 4 sub-frame poses exactly:
# a walk or a jerk needs more sub-frames than that to show that it is not a cubic.
MIN_SUBFRAMES_OFF_CUBIC = 8
# A drawn walk or jerk whose sub-frame poses a least-squares cubic follows to within this fraction of the path's
# largest excursion (root mean square) is drawn again: the family exists to be out of reach of cubic-path models.
# About 2% of raw walks and no raw jerks fall under it at 16 sub-frames, so the guard hardly changes either family.
MIN_CUBIC_RESIDUAL = 0.08
MAX_PATH_DRAWS = 100
# The walk takes this many steps per exposure (Boracchi and Foi take a few hundred to 2000).
WALK_STEPS = 512
# Standard deviation of the heading's jitter per step (radians) at the highest anxiety: the heading then wanders
# by about a radian over a fifth of the exposure.
WALK_JITTER = 0.06
# How long the camera takes to jump, as a fraction of the exposure: well under a sub-frame's share of it.
JERK_DURATION = 0.02
# The small slow sway of a jerking camera between its jumps, relative to its first jump.
JERK_SWAY = 0.05


def _cubic_path(rng):
    control_points = rng.normal(size=(4, 3))
    return lambda times: _bezier(control_points, times)


def _walk_path(rng):
    """A random walk with inertia, after Boracchi and Foi (2012): a point moving at constant speed (path length 1
    over the exposure) whose heading gets, at every step, a Gaussian jitter and a centripetal pull back towards
    where it started, both scaled by an anxiety drawn per path, and now and then (up to 3 times per exposure on
    average) an impulsive big shake that turns it about. A path turns several times per exposure, rarely along a
    single simple curve."""
    anxiety = rng.uniform(0.3, 1.0)
    centripetal = rng.uniform(0.0, 3.0)
    big_shake_probability = anxiety * rng.uniform(0.0, 3.0) / WALK_STEPS
    heading = rng.normal(size=3)
    heading /= np.linalg.norm(heading)
    positions = np.zeros((WALK_STEPS + 1, 3))
    for step in range(WALK_STEPS):
        change = anxiety * (WALK_JITTER * rng.normal(size=3) - centripetal * positions[step])
        if rng.random() < big_shake_probability:
            change += -2.0 * heading + 0.5 * rng.normal(size=3)
        heading = heading + change
        heading /= np.linalg.norm(heading)
        positions[step + 1] = positions[step] + heading / WALK_STEPS
    step_times = np.linspace(0.0, 1.0, WALK_STEPS + 1)
    return lambda times: np.stack([np.interp(times, step_times, positions[:, axis]) for axis in range(3)], axis=1)


def _jerk_path(rng):
    """A camera held nearly still (a slow sway) that jumps once or twice, as when the shutter button is pressed:
    each jump is a smooth step over JERK_DURATION of the exposure, the second one 0.3 to 1 times the first, in
    random directions, at random times between 10% and 90% of the exposure."""
    jump_times = np.sort(rng.uniform(0.1, 0.9, size=rng.integers(1, 3)))
    jumps = rng.normal(size=(len(jump_times), 3))
    jumps /= np.linalg.norm(jumps, axis=1, keepdims=True)
    jumps[1:] *= rng.uniform(0.3, 1.0, size=(len(jump_times) - 1, 1))
    sway = JERK_SWAY * rng.normal(size=(4, 3)) / np.sqrt(3.0)

    def path(times):
        progress = np.clip((times[:, None] - jump_times) / JERK_DURATION + 0.5, 0.0, 1.0)
        smooth_steps = progress * progress * (3.0 - 2.0 * progress)
        return smooth_steps @ jumps + _bezier(sway, times)
    return path


PATH_DRAWERS = {"cubic": _cubic_path, "walk": _walk_path, "jerk": _jerk_path}


def cubic_fit_residual(path, times):
    """Root mean square distance of the path's points (K, 3) at times (K,) from the least-squares cubic in time."""
    powers = np.vander(np.asarray(times, np.float64) - 0.5, 4)
    coefficients = np.linalg.lstsq(powers, path, rcond=None)[0]
    return float(np.sqrt(((path - powers @ coefficients) ** 2).sum(axis=1).mean()))


def _relative_path(rng, family, times):
    """A path of the family drawn from rng: its sub-frame points relative to its mid-exposure point, and itself."""
    for _ in range(MAX_PATH_DRAWS):
        path_at = PATH_DRAWERS[family](rng)
        relative = path_at(times) - path_at(np.array([0.5]))
        largest = np.linalg.norm(relative, axis=1).max()
        if family == "cubic" or cubic_fit_residual(relative, times) >= MIN_CUBIC_RESIDUAL * largest:
            return relative, largest, path_at
    raise ValueError(f"no {family} shake path in {MAX_PATH_DRAWS} draws leaves a cubic fit residual of "
                     f"{MIN_CUBIC_RESIDUAL} of its excursion; it needs at least {MIN_SUBFRAMES_OFF_CUBIC} sub-frames")


def shake_trajectory(rng, num_subframes, rotation_amplitude, translation_amplitude, family="cubic",
                     recorded_pose="mid"):
    """A random hand-shake path through the exposure, relative to the pose the camera files record.

    Rotation vectors (K, 3, radians) and camera-frame translations (K, 3) at the K sub-frame times
    (k + 0.5) / K. Each is drawn from the family (SHAKE_PATHS: a smooth cubic Bezier curve, a random walk or a
    jerk; see PATH_DRAWERS) and scaled so that its largest excursion from the mid-exposure pose equals the
    amplitude; an amplitude of zero gives exact zeros. The path is then expressed relative to the recorded pose
    (RECORDED_POSES): the mid-exposure pose, the mean of the sub-frame poses, or the pose at the shutter's opening.
    """
    times = (np.arange(num_subframes) + 0.5) / num_subframes
    curves = []
    for amplitude in (rotation_amplitude, translation_amplitude):
        relative, largest, path_at = _relative_path(rng, family, times)
        scale = amplitude / largest if largest > 0.0 else 0.0
        path = relative * scale
        if recorded_pose == "mean":
            path = path - path.mean(axis=0)
        elif recorded_pose == "start":
            path = path - (path_at(np.array([0.0])) - path_at(np.array([0.5]))) * scale
        curves.append(path)
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


APERTURE_BLADES = range(5, 10)


def _aberration_remap(area_fraction, aberration):
    """Moves points of a uniform aperture outwards so that the density at the fraction u of the aperture's area
    (u = relative radius squared) becomes 1 + aberration * (2u - 1): brighter at the rim, dimmer at the centre,
    the same light in all. This inverts that density's distribution function aberration * u^2 + (1 - aberration)
    * u, in a form that stays exact at aberration 0."""
    return 2.0 * area_fraction / ((1.0 - aberration) + np.sqrt((1.0 - aberration) ** 2
                                                               + 4.0 * aberration * area_fraction))


def aperture_points(x, y, blades=0, rotation=0.0, aberration=0.0):
    """Maps stratified points of [0, 1)^2 to an aperture of the area of the unit disk: the disk itself (blades 0)
    or a regular polygon of that many blades whose first corner lies at the angle rotation (radians), uniformly
    lit, or brighter at its rim for a spherical aberration in (0, 1] (see _aberration_remap).

    A polygon is cut into one triangle per blade from its centre; x picks the triangle and the place along its
    outer edge, y the area fraction from the centre, so the points stay uniform and stratified."""
    if not blades:
        lens_x, lens_y = square_to_disk(x, y)
        if aberration:
            area_fraction = lens_x * lens_x + lens_y * lens_y
            with np.errstate(divide="ignore", invalid="ignore"):
                stretch = np.sqrt(_aberration_remap(area_fraction, aberration) / area_fraction)
            stretch = np.where(area_fraction > 0.0, stretch, 0.0).astype(lens_x.dtype)
            lens_x, lens_y = lens_x * stretch, lens_y * stretch
        return lens_x, lens_y
    circumradius = np.sqrt(2.0 * np.pi / (blades * np.sin(2.0 * np.pi / blades)))
    sector = np.minimum(np.floor(x * blades), blades - 1)
    along_edge = x * blades - sector
    first_corner = rotation + 2.0 * np.pi * sector / blades
    second_corner = first_corner + 2.0 * np.pi / blades
    area_fraction = _aberration_remap(y, aberration) if aberration else y
    radius = circumradius * np.sqrt(area_fraction)
    lens_x = radius * ((1.0 - along_edge) * np.cos(first_corner) + along_edge * np.cos(second_corner))
    lens_y = radius * ((1.0 - along_edge) * np.sin(first_corner) + along_edge * np.sin(second_corner))
    return lens_x.astype(np.asarray(x).dtype), lens_y.astype(np.asarray(x).dtype)
