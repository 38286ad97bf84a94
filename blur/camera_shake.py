"""Camera motion blur as the camera's own rigid motion through the exposure (--camera_shake).

The per-Gaussian MLP of the official method moves every Gaussian on its own. A shaken hand-held camera moves the
whole scene rigidly instead: a photo blurred by it is the mean of sharp renders from poses along a short path.
This model learns that path for each training photo, as a rotation and a translation of the camera in its own
frame, each a cubic in exposure time. A cubic is smooth enough for a hand's motion within one exposure, and holds
the straight path of a steady pan as a special case. The given pose is the path's mid-exposure pose, or with
path_anchor "mean" the mean of its poses: SfM on blurry photos recovers something nearer the mean, while synthetic
scenes can record either. With lens_blur, each render along the path also passes through a thin lens of the photo's
own: a hand-held photo is rarely both still and in focus, and a lens that learns no blur costs little.

Like the MLP, it only runs during training: test views and render.py render the plain Gaussians.
"""

import dataclasses
from typing import Any

import torch
from torch import nn

from blur.model import (
    HIDDEN_WIDTH,
    VIEW_FREQUENCIES,
    BlurredRendering,
    ThinLens,
    encoded_size,
    positional_encoding,
)
from scene.cameras import Camera
from scene.gaussian_model import GaussianParams
from utils.geometry import quaternion_product, quaternion_to_rotation_matrix

PATH_DEGREE = 3
# Network outputs of order 1 stand for rotations of this many radians and translations of this many world units:
# hand shake within one exposure is a degree or so, and a step of the blur optimizer's learning rate should move a
# path by a small part of that.
SHAKE_UNIT = 0.01
# The path starts almost still. Exactly still is a saddle: renders from one pose have no gradient towards spreading
# symmetrically along a path.
INITIAL_PATH_SCALE = 0.01
# Which pose of its path a training photo's camera file gives (--path_anchor).
PATH_ANCHORS = ("mid", "mean")


def exposure_times(count: int) -> torch.Tensor:
    """The midpoints of count equal parts of the exposure [-1, 1]. For odd count one of them is 0, the given
    mid-exposure pose."""
    return (2.0 * torch.arange(count, dtype=torch.float32) + 1.0) / count - 1.0


def rotation_quaternion(rotation_vector: torch.Tensor) -> torch.Tensor:
    """The unit quaternion (w, x, y, z) of a rotation about rotation_vector (3,) by 2 atan(|v| / 2), which is |v|
    to third order. Unlike the exponential map it is smooth at zero, where every path starts."""
    return nn.functional.normalize(torch.cat([rotation_vector.new_ones(1), 0.5 * rotation_vector]), dim=0)


def rigidly_moved(params: GaussianParams, camera: Camera, rotation_vector: torch.Tensor,
                  translation: torch.Tensor) -> GaussianParams:
    """params as camera sees them after it rotates by rotation_vector and moves by translation, both in its own
    frame: the Gaussians moved by the inverse motion, seen from the unmoved camera.

    View-dependent colour is still evaluated along the unmoved camera's rays, which differ by the shake's small
    rotation.
    """
    camera_to_world = camera.world_to_camera[:3, :3].T
    centre = camera.camera_center
    # The camera's rotation R_c exp(w) seen from the world is the rotation by R_c w about its centre; the scene
    # turns the other way.
    inverse_rotation = rotation_quaternion(-(camera_to_world @ rotation_vector))
    matrix = quaternion_to_rotation_matrix(inverse_rotation[None])[0]
    moved_centre = centre + camera_to_world @ translation
    return dataclasses.replace(
        params,
        means=centre + (params.means - moved_centre) @ matrix.T,
        rotations=quaternion_product(inverse_rotation, params.rotations),
    )


class CameraShake(BlurredRendering):
    """Renders a training photo as the mean of num_moments + 1 renders along its camera's learned path, each
    defocused by the photo's ThinLens with lens_blur.

    A small network maps the encoded camera centre to the path's coefficients: for rotation and translation, the
    terms in t, t^2 and t^3 of exposure time t in [-1, 1]. The renders sample the exposure at its midpoints.
    """

    mode = "motion"
    times: torch.Tensor  # (num_moments + 1,) buffer: the sample times in [-1, 1]

    def __init__(self, num_moments: int = 4, linear_exposure: bool = False, path_anchor: str = "mid",
                 lens_blur: bool = False):
        super().__init__()
        if isinstance(num_moments, bool) or not isinstance(num_moments, int) or num_moments < 1:
            raise ValueError(f"num_moments must be a positive integer, got {num_moments!r}")
        if path_anchor not in PATH_ANCHORS:
            raise ValueError(f"path_anchor must be one of {', '.join(PATH_ANCHORS)}, got {path_anchor!r}")
        self.num_moments = num_moments
        self.linear_exposure = linear_exposure
        self.path_anchor = path_anchor
        path_input = nn.Linear(encoded_size(3, VIEW_FREQUENCIES), HIDDEN_WIDTH)
        path_output = nn.Linear(HIDDEN_WIDTH, PATH_DEGREE * 6)
        self.path_network = nn.Sequential(path_input, nn.ReLU(), path_output)
        nn.init.normal_(path_output.weight, std=INITIAL_PATH_SCALE)
        nn.init.zeros_(path_output.bias)
        self.register_buffer("times", exposure_times(num_moments + 1), persistent=False)
        self.lens_network = ThinLens() if lens_blur else None

    @property
    def lens_blur(self) -> bool:
        return self.lens_network is not None

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {"num_moments": self.num_moments, "camera_shake": True, "linear_exposure": self.linear_exposure,
                "path_anchor": self.path_anchor, "lens_blur": self.lens_blur}

    def path(self, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """The camera's (rotation vectors, translations), each (num_moments + 1, 3), at the sample times, relative
        to the given pose: zero at mid-exposure, or with path_anchor "mean" zero on average over the samples."""
        view = positional_encoding(camera.camera_center.detach().reshape(1, 3), VIEW_FREQUENCIES)
        coefficients = SHAKE_UNIT * self.path_network(view).view(PATH_DEGREE, 6)
        powers = self.times[:, None] ** torch.arange(1, PATH_DEGREE + 1, device=self.times.device)
        poses = powers @ coefficients
        if self.path_anchor == "mean":
            poses = poses - poses.mean(dim=0, keepdim=True)
        return poses[:, :3], poses[:, 3:]

    def blurred_params(self, params: GaussianParams, camera: Camera) -> list[GaussianParams]:
        """The num_moments + 1 rigidly moved (and with lens_blur defocused) copies of params that camera's blurry
        photo is the mean of."""
        rotation_vectors, translations = self.path(camera)
        moved = [
            rigidly_moved(params, camera, rotation_vector, translation)
            for rotation_vector, translation in zip(rotation_vectors, translations)
        ]
        lens = self.lens_network
        return moved if lens is None else [lens.defocused(copy, camera) for copy in moved]
