"""Uniform blur kernels drawn from the synthetic generator's own blur models: its hand-shake paths projected to the
image plane, and its lens apertures.

A kernel is a small odd-sized image (size, size) of non-negative weights summing to 1 whose centre pixel is the
zero shift; blurring is the convolution blurred(x) = sum_d kernel(d) sharp(x - d), so a kernel pixel at shift d holds
the light that a point of the scene leaves d pixels away from where it would be in the sharp photo.

Every kernel's centre of mass lies at its centre: from one photo no one can tell a blur from a blur shifted along
with the photo, so the deblurrers learn (and return) the photo as the camera saw it on average over the exposure.
"""

from dataclasses import dataclass

import numpy as np

from scene.synthetic.camera import (
    APERTURE_BLADES,
    SHAKE_PATHS,
    aperture_points,
    axis_angle_to_matrix,
    shake_trajectory,
    stratum_corners,
)

LENS_SHAPES = ("round", "polygon")
# Every family: a shake path of the generator (cubic, walk or jerk) or a lens aperture.
KERNEL_FAMILIES = SHAKE_PATHS + LENS_SHAPES
# Poses along a shake path: the generator's 16 per exposure (SceneConfig.num_subframes), whose photos show a
# streak of separate images where the path is fast, or a nearly continuous path as a real exposure has.
SHAKE_SUBFRAMES = (16, 64)
# Enough aperture points that a disk of radius 15 gets several per pixel: the kernel is the blur's mean.
APERTURE_STRATA = 4096
# A rotation this small (radians) keeps the projected path in its linear regime; the path is scaled to its drawn
# extent in pixels afterwards.
PROBE_ROTATION = 1e-3
# The half width of the view in focal lengths (a 53 degree field) over which the projected scene point is drawn:
# off the optical axis a roll or a push along it moves a point too.
HALF_FIELD = 0.5


@dataclass(frozen=True)
class DrawnKernel:
    """A kernel and how it was drawn: its family, its radius in pixels (largest distance of its light from its
    centre) and, for lens kernels, the aperture's blades (0: round) and spherical aberration."""
    kernel: np.ndarray
    family: str
    radius: float
    blades: int = 0
    aberration: float = 0.0


def check_kernel_size(size: int, source: str = "kernel size") -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"{source} must be an odd integer of at least 3, got {size!r}")


def splat(points: np.ndarray, size: int) -> np.ndarray:
    """The kernel (size, size) of equal light at the given shifts (N, 2) in pixels (x right, y down), spread over the
    four nearest pixels bilinearly; every shift must lie within size // 2 - 1 of the centre."""
    centre = size // 2
    positions = points + centre
    corners = np.floor(positions).astype(np.int64)
    fractions = positions - corners
    kernel = np.zeros(size * size, np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            weights = (fractions[:, 0] if dx else 1.0 - fractions[:, 0]) * \
                      (fractions[:, 1] if dy else 1.0 - fractions[:, 1])
            kernel += np.bincount((corners[:, 1] + dy) * size + corners[:, 0] + dx, weights, size * size)
    return (kernel / kernel.sum()).reshape(size, size).astype(np.float32)


def centred_to_radius(points: np.ndarray, radius: float) -> np.ndarray:
    """points (N, 2) moved so that their mean is the origin and scaled so that the farthest lies at radius."""
    centred = points - points.mean(axis=0)
    largest = np.linalg.norm(centred, axis=1).max()
    return centred * (radius / largest) if largest > 0.0 else np.zeros_like(centred)


def shake_points(rng: np.random.Generator, family: str, subframes: int) -> np.ndarray:
    """The image-plane path (subframes, 2) of one scene point under a hand-shake path of the family, in focal lengths
    relative to its place at mid-exposure.

    The path is the generator's (camera.shake_trajectory: a rotation and a translation path of the camera); the
    point is drawn across the view at depth 1, the translation's amplitude up to the rotation's, so that a push
    along the optical axis and a roll move it too."""
    translation_share = rng.uniform(0.0, 1.0)
    rotation_vectors, translations = shake_trajectory(rng, subframes, PROBE_ROTATION,
                                                      PROBE_ROTATION * translation_share, family)
    point = np.array([*rng.uniform(-HALF_FIELD, HALF_FIELD, size=2), 1.0])
    # The point in each sub-frame's camera frame: rotations are camera-to-mid-camera, translations the sub-frame
    # camera's centre in the mid-exposure camera's frame.
    in_subframes = np.einsum("kji,kj->ki", axis_angle_to_matrix(rotation_vectors), point - translations)
    return in_subframes[:, :2] / in_subframes[:, 2:] - point[:2]


def aperture_shape_points(rng: np.random.Generator, blades: int, aberration: float,
                          count: int = APERTURE_STRATA) -> np.ndarray:
    """Stratified points (count, 2) of the generator's lens aperture (camera.aperture_points): a disk (blades 0) or
    a polygon turned at random, brighter at its rim for a spherical aberration in (0, 1]."""
    corners, cell = stratum_corners(count)
    samples = corners + rng.uniform(0.0, 1.0, size=corners.shape).astype(np.float32) * cell
    rotation = rng.uniform(0.0, 2.0 * np.pi / blades) if blades else 0.0
    lens_x, lens_y = aperture_points(samples[:, 0], samples[:, 1], blades, rotation, aberration)
    return np.stack([lens_x, lens_y], axis=1).astype(np.float64)


def draw_kernel(rng: np.random.Generator, size: int, families=KERNEL_FAMILIES,
                max_radius: float | None = None) -> DrawnKernel:
    """A kernel of a family drawn uniformly from families, its radius uniform between 0 (no blur) and max_radius
    (default size // 2 - 1, the largest that fits). A shake kernel has either number of SHAKE_SUBFRAMES with even
    odds; a polygonal aperture 5 to 9 blades (the generator's APERTURE_BLADES), and a lens kernel a spherical
    aberration (uniform in [0, 1)) with even odds."""
    largest = size // 2 - 1
    max_radius = largest if max_radius is None else min(max_radius, largest)
    family = families[rng.integers(len(families))]
    radius = rng.uniform(0.0, max_radius)
    if family in SHAKE_PATHS:
        points = shake_points(rng, family, int(rng.choice(SHAKE_SUBFRAMES)))
        return DrawnKernel(splat(centred_to_radius(points, radius), size), family, radius)
    blades = int(rng.choice(APERTURE_BLADES)) if family == "polygon" else 0
    aberration = float(rng.uniform(0.0, 1.0)) if rng.random() < 0.5 else 0.0
    # Light that comes through a point of the aperture lands at that point's image, mirrored or not depending on
    # which side of the focus plane the scene lies: a turn of the polygon covers both.
    points = aperture_shape_points(rng, blades, aberration)
    return DrawnKernel(splat(centred_to_radius(points, radius), size), family, radius, blades, aberration)
