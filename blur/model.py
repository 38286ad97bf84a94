"""The blur MLP of Deblurring 3D Gaussian Splatting: per-Gaussian covariance (and, for camera motion, position)
changes that turn the sharp Gaussians into the blurry photo they were trained on.

The MLP only runs during training. Test views, evaluation and render.py render the plain Gaussians, which stay
sharp and render exactly as fast as vanilla 3DGS.
"""

import dataclasses

import torch
from torch import nn

from gaussian_renderer import render

BLUR_MODES = ("defocus", "motion")
POSITION_FREQUENCIES = 3
VIEW_FREQUENCIES = 10
HIDDEN_WIDTH = 64
HIDDEN_LAYERS = 3
# Heads this narrow (the defocus scale head) start with small weights, as in the official code.
SMALL_HEAD_OUTPUTS = 3
SMALL_HEAD_GAIN = 0.1


def positional_encoding(x, frequencies):
    """NeRF's encoding of (..., D) values: x itself, then sin(2^k x) and cos(2^k x) for k < frequencies,
    giving (..., D * (1 + 2 * frequencies))."""
    bands = 2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)
    scaled = x[..., None, :] * bands[:, None]
    periodic = torch.stack([scaled.sin(), scaled.cos()], dim=-2)
    return torch.cat([x, periodic.flatten(start_dim=-3)], dim=-1)


def encoded_size(dimensions, frequencies):
    return dimensions * (1 + 2 * frequencies)


def input_size():
    """Encoded position, encoded camera centre, scale (3) and quaternion (4): 21 + 63 + 7 = 91."""
    return encoded_size(3, POSITION_FREQUENCIES) + encoded_size(3, VIEW_FREQUENCIES) + 3 + 4


def initialise_linear(layer):
    gain = SMALL_HEAD_GAIN if layer.out_features <= SMALL_HEAD_OUTPUTS else 1.0
    nn.init.xavier_normal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


class BlurModel(nn.Module):
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
    """

    def __init__(self, mode, num_moments=4, lambda_s=0.01, lambda_p=0.01, max_clamp=1.1, normalize_rotations=False,
                 initial_scale_factor=None):
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
        self.mode = mode
        self.num_moments = num_moments
        self.lambda_s = float(lambda_s)
        self.lambda_p = float(lambda_p)
        self.max_clamp = float(max_clamp)
        self.normalize_rotations = bool(normalize_rotations)
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
        if self.initial_scale_factor is not None:
            nn.init.constant_(self.scale_head.bias, (self.initial_scale_factor - 1.0 + self.lambda_s) / self.lambda_s)

    @property
    def slot_count(self):
        """Sets of scale and rotation factors: one per render."""
        return 1 if self.mode == "defocus" else self.num_moments + 1

    @property
    def hyperparameters(self):
        return {
            "num_moments": self.num_moments,
            "lambda_s": self.lambda_s,
            "lambda_p": self.lambda_p,
            "max_clamp": self.max_clamp,
            "normalize_rotations": self.normalize_rotations,
            "initial_scale_factor": self.initial_scale_factor,
        }

    def bounded_factors(self, outputs):
        return torch.clamp(self.lambda_s * outputs + (1.0 - self.lambda_s), 1.0, self.max_clamp)

    def forward(self, means, scales, rotations, camera_center):
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

    def blurred_params(self, params, camera):
        """The GaussianParams to render for camera's blurry photo: one set for defocus, num_moments + 1 for
        motion (the first unshifted, each other shifted by its own offsets)."""
        scale_factors, rotation_factors, offsets = self(params.means, params.scales, params.rotations,
                                                        camera.camera_center)
        if self.mode == "defocus":
            return [self.transformed(params, scale_factors[:, 0], rotation_factors[:, 0])]
        # The unshifted moment uses the last slot of factors, the shifted moment i slot i.
        last = self.num_moments
        moments = [self.transformed(params, scale_factors[:, last], rotation_factors[:, last])]
        moments += [
            self.transformed(params, scale_factors[:, i], rotation_factors[:, i], offsets[:, i])
            for i in range(self.num_moments)
        ]
        return moments

    def transformed(self, params, scale_factors, rotation_factors, offsets=None):
        rotations = params.rotations * rotation_factors
        if self.normalize_rotations:
            rotations = nn.functional.normalize(rotations, dim=-1)
        return dataclasses.replace(
            params,
            means=params.means if offsets is None else params.means + offsets,
            scales=params.scales * scale_factors,
            rotations=rotations,
        )

    def blurred_render(self, camera, params, background, backend="auto"):
        """The (3, H, W) image compared with camera's blurry photo in training."""
        outputs = [render(camera, moment, background, backend) for moment in self.blurred_params(params, camera)]
        return mean_image(outputs)


def mean_image(outputs):
    """The plain mean of the renders' images: the camera's exposure integrates over its moments."""
    return torch.stack([output.image for output in outputs]).mean(dim=0)
