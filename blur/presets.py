"""Training presets of the deblurring method: the official code's defaults, its four per-dataset configurations
(blur/configs/*.json) and the same schedule compressed to fewer iterations."""

import json
import os
from collections.abc import Mapping
from typing import Any

from utils.errors import UserError

PRESET_FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# Where the official deblurring code trains differently from 3DGS's defaults. These apply to every run with a
# blur model or a preset, below the preset's own values and the command line.
DEBLUR_TRAINING_DEFAULTS = {
    "iterations": 20_000,
    "position_lr_init": 0.0016,
    "position_lr_final": 0.000016,
    "position_lr_max_steps": 30_000,
    "opacity_reset_interval": 0,
    "max_screen_size": 0,
    "test_iterations": [10_000, 20_000],
}

# What --blur_model sets for each blur type, above DEBLUR_TRAINING_DEFAULTS and below a preset and the command
# line. "camera" models the camera's own blur and is the default: a thin lens per photo for defocus, without the
# KNN augmentation (its reset of every Gaussian leaves them larger in a short schedule, which costs PSNR and render
# speed), and the camera's rigid path for motion, each render through a thin lens of the photo's own and averaged in
# linear light, pruned of what the training views barely see (as fast as vanilla for 0.01-0.03 dB). Both deblurred
# best in bench/deblur.py (README, "Deblurring settings"). "official" is the paper's per-Gaussian MLP with the
# official code's defaults.
BLUR_MODEL_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "camera": {
        "defocus": {"lens_blur": True, "knn_iteration": 0},
        "motion": {"camera_shake": True, "lens_blur": True, "linear_exposure": True, "min_contribution": 1.0},
    },
    "official": {"defocus": {}, "motion": {}},
}
BLUR_MODELS = tuple(BLUR_MODEL_DEFAULTS)

# The official schedule, by iteration, which scaled_schedule compresses. The densification interval (100) is
# kept: shorter ones judge the gradients on fewer views and grow the Gaussians much faster.
OFFICIAL_SCHEDULE = {
    "densify_from_iter": 500,
    "densify_until_iter": 15_000,
    "knn_iteration": 2_500,
    "sh_degree_interval": 1_000,
    "position_lr_max_steps": 30_000,
}
OFFICIAL_ITERATIONS = 20_000
# On a CPU the Gaussian count sets the cost of an iteration. In 1000 iterations of the compressed schedule the tiny
# scene grows to about 17 000 Gaussians at the official defocus threshold (2e-4), to about 6 000 at this one (the
# official motion threshold).
CPU_DENSIFY_GRAD_THRESHOLD = 5e-4


class PresetError(UserError, ValueError):
    """A preset that does not exist or cannot be read; the message names it."""


def preset_names() -> list[str]:
    return sorted(name[: -len(".json")] for name in os.listdir(PRESET_FOLDER) if name.endswith(".json"))


def preset_path(name_or_path: str) -> str:
    """The file of a named preset (e.g. real_defocus), or name_or_path itself when it is a JSON file."""
    if name_or_path in preset_names():
        return os.path.join(PRESET_FOLDER, f"{name_or_path}.json")
    if os.path.isfile(name_or_path):
        return name_or_path
    raise PresetError(
        f"--config {name_or_path}: neither a preset ({', '.join(preset_names())}) nor an existing JSON file"
    )


def read_preset(name_or_path: str) -> dict[str, Any]:
    """The option values of a preset: a JSON object mapping option names (as train.py spells them, without
    dashes) to values."""
    path = preset_path(name_or_path)
    try:
        with open(path, encoding="utf-8") as file:
            preset = json.load(file)
    except (OSError, ValueError) as error:
        raise PresetError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(preset, dict):
        raise PresetError(f"{path}: expected a JSON object of option names and values")
    for name, value in preset.items():
        if not (value is None or isinstance(value, (bool, int, float, str, list))):
            raise PresetError(f"{path}: option {name!r} has a value of unsupported type {type(value).__name__}")
    return preset


def blur_model_defaults(blur: str, blur_model: str) -> dict[str, Any]:
    """The option values that --blur_model blur_model brings to a run with --blur blur (none for --blur none)."""
    if blur == "none":
        return {}
    return dict(BLUR_MODEL_DEFAULTS[blur_model][blur])


def as_flags(options: Mapping[str, Any]) -> str:
    """options as they would be typed on the command line, e.g. "--lens_blur --knn_iteration 0"."""
    return " ".join(f"--{name}" if value is True else f"--{name} {value:g}" if isinstance(value, float)
                    else f"--{name} {value}" for name, value in options.items())


def scaled_schedule(iterations: int, schedule: Mapping[str, int] | None = None,
                    schedule_iterations: int = OFFICIAL_ITERATIONS) -> dict[str, int]:
    """A schedule of options counted in iterations, written for a run of schedule_iterations, compressed to
    `iterations`; by default the official 20 000-iteration one (densification window, KNN augmentation, SH degree
    steps, position learning-rate decay), for CPU-scale runs. An option at 0 (off, or "follow --iterations") stays
    0."""
    if iterations < 1:
        raise ValueError(f"iterations must be positive, got {iterations}")
    fraction = iterations / schedule_iterations
    full = OFFICIAL_SCHEDULE if schedule is None else schedule
    scaled = {name: max(1, round(value * fraction)) if value else 0 for name, value in full.items()}
    scaled["iterations"] = iterations
    return scaled


def cpu_scale_options(iterations: int, knn_augmentation: bool = True) -> dict[str, Any]:
    """scaled_schedule(iterations) with a densification threshold that keeps CPU training affordable. Without
    knn_augmentation it leaves out the KNN iteration, which as an option would turn the augmentation back on for a
    run that skips it."""
    options: dict[str, Any] = dict(scaled_schedule(iterations), densify_grad_threshold=CPU_DENSIFY_GRAD_THRESHOLD)
    if not knn_augmentation:
        del options["knn_iteration"]
    return options
