"""Builders shared by the blur tests on the CPU (test_blur.py) and on the GPU (test_cuda_training.py): random
Gaussians, a camera of the tiny scene, blur models set to known states, and a short training schedule. They live
apart from test_blur.py, whose command-line tests import the viewer and its packages."""

import numpy as np
import torch

from blur.model import LENS_INITIAL_BLUR_PIXELS, LENS_INITIAL_FOCUS
from tiny_scene import camera_at, gaussian_params, random_unit_quaternions


def as_arguments(options):
    """train.py's command-line tokens that set options ({name: value}); a flag set to false is left out (flags
    default to off)."""
    tokens = []
    for name, value in options.items():
        if isinstance(value, bool):
            if value:
                tokens.append(f"--{name}")
        elif isinstance(value, list):
            tokens += [f"--{name}"] + [str(item) for item in value]
        elif value is not None:
            tokens += [f"--{name}", str(value)]
    return tokens

# Schedules shrunk to a few dozen iterations: densification, the KNN augmentation and SH growth all happen.
SHORT_SCHEDULE = [
    "--device", "cpu",
    "--sh_degree", "1",
    "--sh_degree_interval", "10",
    "--densify_from_iter", "5",
    "--densify_until_iter", "35",
    "--densification_interval", "5",
    "--knn_iteration", "25",
    "--knn_rate", "0.25",
    "--position_lr_max_steps", "40",
]


def random_params(count=300, seed=0, sh_degree=1):
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0.1, 0.9, size=(count, 3))
    means = rng.uniform(-1.0, 1.0, size=(count, 3))
    scales = rng.uniform(0.03, 0.15, size=(count, 3))
    rotations = random_unit_quaternions(rng, count)
    return gaussian_params(means, scales, rotations, rng.uniform(0.5, 0.9, size=(count, 1)), colors, sh_degree)


def tiny_camera(angle_degrees=10.0):
    angle = np.radians(angle_degrees)
    return camera_at(4.0 * np.array([np.sin(angle), -0.3, -np.cos(angle)]))


def randomise_weights(blur_model, std, seed=0):
    """Weights far from their initialisation, so that the MLP's outputs spread over and beyond the clamp range."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in blur_model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def set_lens(blur_model, blur_pixels, relative_focus):
    """Give every view the same lens: blur_pixels per unit of |median depth / depth - median depth / focus|, focus
    at relative_focus times the median depth."""
    last = blur_model.lens_network[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([np.log(blur_pixels / LENS_INITIAL_BLUR_PIXELS),
                                      np.log(LENS_INITIAL_FOCUS / relative_focus)]))
