"""The blur MLP of Deblurring 3D Gaussian Splatting: per-Gaussian covariance (and, for camera motion, position)
changes that turn the sharp Gaussians into the blurry photo they were trained on.

The MLP only runs during training. Test views, evaluation and render.py render the plain Gaussians, which stay
sharp and render exactly as fast as vanilla 3DGS.
"""

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gaussian_rasterizer import RasterOutput, project_gaussians
from gaussian_renderer import raster_camera, render_moments
from scene.cameras import Camera
from scene.gaussian_model import GaussianParams
from utils.images import linear_to_srgb, srgb_to_linear

BLUR_MODES = ("defocus", "motion")
POSITION_FREQUENCIES = 3
VIEW_FREQUENCIES = 10
HIDDEN_WIDTH = 64
HIDDEN_LAYERS = 3
# Heads this narrow (the defocus scale head) start with small weights, as in the official code.
SMALL_HEAD_OUTPUTS = 3
SMALL_HEAD_GAIN = 0.1
# The thin-lens blur starts at this many pixels per unit of |median depth / depth - median depth / focus|, focused
# nearer than the median depth: photographers focus on the subject, and a start beyond the true focus can settle
# on the mirror-image focus behind the median (near Gaussians blurred, far ones sharp).
LENS_INITIAL_BLUR_PIXELS = 2.0
LENS_INITIAL_FOCUS = 0.75
MIN_LENS_DEPTH = 1e-3


def positional_encoding(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """NeRF's encoding of (..., D) values: x itself, then sin(2^k x) and cos(2^k x) for k < frequencies,
    giving (..., D * (1 + 2 * frequencies))."""
    bands = 2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)
    scaled = x[..., None, :] * bands[:, None]
    periodic = torch.stack([scaled.sin(), scaled.cos()], dim=-2)
    return torch.cat([x, periodic.flatten(start_dim=-3)], dim=-1)


def encoded_size(dimensions: int, frequencies: int) -> int:
    return dimensions * (1 + 2 * frequencies)


def input_size() -> int:
    """Encoded position, encoded camera centre, scale (3) and quaternion (4): 21 + 63 + 7 = 91."""
    return encoded_size(3, POSITION_FREQUENCIES) + encoded_size(3, VIEW_FREQUENCIES) + 3 + 4


def initialise_linear(layer: nn.Linear) -> None:
    gain = SMALL_HEAD_GAIN if layer.out_features <= SMALL_HEAD_OUTPUTS else 1.0
    nn.init.xavier_normal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


class BlurredRendering(nn.Module, ABC):
    """A blur model: blurred_params(params, camera) gives the Gaussians whose renders, averaged, make camera's
    blurry photo."""

    mode: str  # the blur it models: one of BLUR_MODES
    linear_exposure = False  # whether its renders are averaged in linear light (see mean_image)

    @abstractmethod
    def blurred_params(self, params: GaussianParams, camera: Camera) -> list[GaussianParams]:
        """The Gaussians to render for camera's blurry photo, one set per render."""

    @property
    @abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """The constructor's arguments, as blur.storage saves them with the weights."""

    def blurred_render(self, camera: Camera, params: GaussianParams, background: torch.Tensor,
                       backend: str = "auto") -> torch.Tensor:
        """The (3, H, W) image compared with camera's blurry photo in training."""
        return self.exposure_image(render_moments(camera, self.blurred_params(params, camera), background, backend))

    def exposure_image(self, outputs: Sequence[RasterOutput]) -> torch.Tensor:
        """The photo its renders (one per set of blurred_params) make together: their mean, in linear light with
        linear_exposure."""
        return mean_image(outputs, self.linear_exposure)


class ThinLens(nn.Sequential):
    """A thin lens per training view, as a small network from the view's encoded camera centre to its aperture and
    focus. A defocused point spreads into a disc whose radius in pixels is aperture * focal * |1/depth - 1/focus|;
    defocused() convolves each Gaussian with an isotropic Gaussian of that size, i.e. its variance grows by blur^2
    along every axis, which is isotropic only for orthonormal rotation matrices. The convolution keeps each
    Gaussian's coverage: its opacity falls as its screen footprint grows, so that the sharp Gaussians must cover the
    scene as densely as the blurred ones."""

    def __init__(self) -> None:
        lens_output = nn.Linear(HIDDEN_WIDTH, 2)
        super().__init__(nn.Linear(encoded_size(3, VIEW_FREQUENCIES), HIDDEN_WIDTH), nn.ReLU(), lens_output)
        # Outputs are log blur strength and log relative inverse focus, both 0 at the start: every view starts with
        # the same lens.
        nn.init.zeros_(lens_output.weight)
        nn.init.zeros_(lens_output.bias)

    def view_lens(self, camera: Camera) -> tuple[torch.Tensor, torch.Tensor]:
        """The view's thin lens as (blur strength in pixels, focus relative to the median depth)."""
        view = positional_encoding(camera.camera_center.detach().reshape(1, 3), VIEW_FREQUENCIES)
        log_strength, log_inverse_focus = self(view)[0].unbind()
        return LENS_INITIAL_BLUR_PIXELS * log_strength.exp(), LENS_INITIAL_FOCUS * (-log_inverse_focus).exp()

    def blur_pixels(self, depths: torch.Tensor, camera: Camera) -> torch.Tensor:
        """Each Gaussian's defocus blur (standard deviation, pixels) at camera-space depths (N,)."""
        strength, relative_focus = self.view_lens(camera)
        median = depths.median()
        return strength * (median / depths - 1.0 / relative_focus).abs()

    def defocused(self, params: GaussianParams, camera: Camera) -> GaussianParams:
        """params (with orthonormal rotations) convolved with each Gaussian's defocus blur, their opacities lowered
        to keep their coverage."""
        depths = camera_depths(params.means.detach(), camera)
        blur = (self.blur_pixels(depths, camera) * depths / camera.fx)[:, None]
        defocused = dataclasses.replace(params, scales=torch.sqrt(params.scales ** 2 + blur ** 2))
        return dataclasses.replace(defocused, opacities=params.opacities * footprint_ratio(params, defocused, camera))


class BlurModel(BlurredRendering):
    """Maps the Gaussians seen from one training camera to the Gaussians that render its blurry photo.

    defocus: each Gaussian's scale and quaternion are multiplied element-wise by factors in [1, max_clamp] (a
        scale never shrinks); one render.
    motion: num_moments + 1 sets of factors and num_moments position offsets (scaled by lambda_p) give
        num_moments + 1 renders along the camera's motion; the training image is their mean.

    The factors are clamp(lambda_s * output + (1 - lambda_s), 1, max_clamp). The product of a unit quaternion
    with its factors is not renormalised (the rotation matrix stops being orthonormal, as in the official
    code) unless normalize_rotations is set.

    With the official initialisation the scale head's outputs start near 0, so its factors start clamped at 1,
    where they get no gradient. initial_scale_factor (in [1, max_clamp]) sets the scale head's biases so that its
    factors start there instead, inside the clamp range.

    lens_blur (defocus only) adds a ThinLens per training view after the factors; rotations are then normalised,
    so that the lens's growth of the variance stays isotropic.
    """

    def __init__(self, mode: str, num_moments: int = 4, lambda_s: float = 0.01, lambda_p: float = 0.01,
                 max_clamp: float = 1.1, normalize_rotations: bool = False, initial_scale_factor: float | None = None,
                 lens_blur: bool = False):
        super().__init__()
        if mode not in BLUR_MODES:
            raise ValueError(f"blur mode must be one of {', '.join(BLUR_MODES)}, got {mode!r}")
        if isinstance(num_moments, bool) or not isinstance(num_moments, int) or num_moments < 1:
            raise ValueError(f"num_moments must be a positive integer, got {num_moments!r}")
        if not 0.0 < lambda_s <= 1.0:
            raise ValueError(f"lambda_s must be in (0, 1], got {lambda_s}")
        if not max_clamp >= 1.0:
            raise ValueError(f"max_clamp must be at least 1, got {max_clamp}")
        if initial_scale_factor is not None and not 1.0 <= initial_scale_factor <= max_clamp:
            raise ValueError(
                f"initial_scale_factor must be in [1, max_clamp = {max_clamp}], got {initial_scale_factor}"
            )
        if lens_blur and mode != "defocus":
            raise ValueError(f"lens blur models defocus, not {mode} blur")
        self.mode = mode
        self.num_moments = num_moments
        self.lambda_s = float(lambda_s)
        self.lambda_p = float(lambda_p)
        self.max_clamp = float(max_clamp)
        self.lens_blur = bool(lens_blur)
        # The lens adds variance along the local axes, which is isotropic only for orthonormal rotation matrices.
        self.normalize_rotations = bool(normalize_rotations) or self.lens_blur
        self.initial_scale_factor = None if initial_scale_factor is None else float(initial_scale_factor)

        layers = []
        width_in = input_size()
        for _ in range(HIDDEN_LAYERS):
            layers += [nn.Linear(width_in, HIDDEN_WIDTH), nn.ReLU()]
            width_in = HIDDEN_WIDTH
        self.trunk = nn.Sequential(*layers)
        self.scale_head = nn.Linear(HIDDEN_WIDTH, 3 * self.slot_count)
        self.rotation_head = nn.Linear(HIDDEN_WIDTH, 4 * self.slot_count)
        self.position_head = nn.Linear(HIDDEN_WIDTH, 3 * num_moments) if mode == "motion" else None
        for module in self.modules():
            if isinstance(module, nn.Linear):
                initialise_linear(module)
        self.lens_network = ThinLens() if self.lens_blur else None
        if self.initial_scale_factor is not None:
            nn.init.constant_(self.scale_head.bias, (self.initial_scale_factor - 1.0 + self.lambda_s) / self.lambda_s)

    @property
    def slot_count(self) -> int:
        """Sets of scale and rotation factors: one per render."""
        return 1 if self.mode == "defocus" else self.num_moments + 1

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {
            "num_moments": self.num_moments,
            "lambda_s": self.lambda_s,
            "lambda_p": self.lambda_p,
            "max_clamp": self.max_clamp,
            "normalize_rotations": self.normalize_rotations,
            "initial_scale_factor": self.initial_scale_factor,
            "lens_blur": self.lens_blur,
        }

    def bounded_factors(self, outputs: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.lambda_s * outputs + (1.0 - self.lambda_s), 1.0, self.max_clamp)

    def forward(self, means: torch.Tensor, scales: torch.Tensor, rotations: torch.Tensor,
                camera_center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Factors and offsets for N Gaussians seen from a camera at camera_center (3,).

        Returns scale factors (N, S, 3), rotation factors (N, S, 4), S = slot_count, and for motion the position
        offsets (N, num_moments, 3), already scaled by lambda_p (None for defocus). The Gaussians are inputs
        only: no gradient flows back to them through the MLP.
        """
        count = means.shape[0]
        view = positional_encoding(camera_center.detach().reshape(1, 3), VIEW_FREQUENCIES).expand(count, -1)
        features = torch.cat(
            [positional_encoding(means.detach(), POSITION_FREQUENCIES), view, scales.detach(), rotations.detach()],
            dim=-1,
        )
        hidden = self.trunk(features)
        scale_factors = self.bounded_factors(self.scale_head(hidden)).view(count, self.slot_count, 3)
        rotation_factors = self.bounded_factors(self.rotation_head(hidden)).view(count, self.slot_count, 4)
        offsets = None
        if self.position_head is not None:
            offsets = self.lambda_p * self.position_head(hidden).view(count, self.num_moments, 3)
        return scale_factors, rotation_factors, offsets

    def blurred_params(self, params: GaussianParams, camera: Camera) -> list[GaussianParams]:
        """The GaussianParams to render for camera's blurry photo: one set for defocus, num_moments + 1 for
        motion (the first unshifted, each other shifted by its own offsets)."""
        scale_factors, rotation_factors, offsets = self(params.means, params.scales, params.rotations,
                                                        camera.camera_center)
        if self.mode == "defocus":
            blurred = self.transformed(params, scale_factors[:, 0], rotation_factors[:, 0])
            return [blurred if self.lens_network is None else self.lens_network.defocused(blurred, camera)]
        assert offsets is not None  # motion blur has a position head
        # The unshifted moment uses the last slot of factors, the shifted moment i slot i.
        last = self.num_moments
        moments = [self.transformed(params, scale_factors[:, last], rotation_factors[:, last])]
        moments += [
            self.transformed(params, scale_factors[:, i], rotation_factors[:, i], offsets[:, i])
            for i in range(self.num_moments)
        ]
        return moments

    def transformed(self, params: GaussianParams, scale_factors: torch.Tensor, rotation_factors: torch.Tensor,
                    offsets: torch.Tensor | None = None) -> GaussianParams:
        rotations = params.rotations * rotation_factors
        if self.normalize_rotations:
            rotations = nn.functional.normalize(rotations, dim=-1)
        return dataclasses.replace(
            params,
            means=params.means if offsets is None else params.means + offsets,
            scales=params.scales * scale_factors,
            rotations=rotations,
        )


def camera_depths(means: torch.Tensor, camera: Camera) -> torch.Tensor:
    """Camera-space depths of means (N, 3), kept positive for Gaussians behind the camera (which are culled)."""
    world_to_camera = camera.world_to_camera
    return (means @ world_to_camera[2, :3] + world_to_camera[2, 3]).clamp_min(MIN_LENS_DEPTH)


def footprint_ratio(sharp: GaussianParams, blurred: GaussianParams, camera: Camera) -> torch.Tensor:
    """(N, 1): sqrt(det sharp / det blurred) of the Gaussians' screen-space covariances. Multiplying a blurred
    Gaussian's opacity by it keeps the integral of its alpha over the image, as a convolution does."""
    view = raster_camera(camera)
    sharp_covariances = project_gaussians(sharp.means, sharp.scales, sharp.rotations, view, True).covariances2d
    blurred_covariances = project_gaussians(blurred.means, blurred.scales, blurred.rotations, view, True).covariances2d
    return (torch.linalg.det(sharp_covariances) / torch.linalg.det(blurred_covariances)).sqrt()[:, None]


def mean_image(outputs: Sequence[RasterOutput], linear_light: bool = False) -> torch.Tensor:
    """The mean of the renders' images: the camera's exposure integrates over its moments. The Gaussians hold
    sRGB-encoded colour; with linear_light the renders are averaged in linear light, as a sensor integrates it, and
    encoded again. One render's image is its own mean, without the copies of stacking it."""
    if len(outputs) == 1:
        return outputs[0].image
    images = torch.stack([output.image for output in outputs])
    if linear_light:
        return linear_to_srgb(srgb_to_linear(images).mean(dim=0))
    return images.mean(dim=0)
