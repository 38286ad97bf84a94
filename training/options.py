"""The options of a training run, layered and checked once.

A run's options come in layers, in increasing priority: the defaults of the original 3DGS (arguments.py,
blur.BlurParams and the run options below); for a run with a blur model or a preset, the official deblurring code's
defaults (blur.DEBLUR_TRAINING_DEFAULTS) and those of --blur_model for the blur type (blur.BLUR_MODEL_DEFAULTS);
that schedule compressed to a shorter --iterations (compressed_schedule); the --config preset; the options chosen
explicitly. train.py's command line, demo.py and the benchmarks all hand the explicit options to training_options
as a dict of values, keyed by option name (without dashes).
"""

import argparse
import os
from argparse import ArgumentParser, Namespace
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import torch

from arguments import ModelParams, OptimizationParams, PipelineParams
from blur import DEBLUR_TRAINING_DEFAULTS, BlurParams, blur_model_defaults, cpu_scale_options, read_preset
from blur.presets import OFFICIAL_SCHEDULE, preset_path, scaled_schedule
from metrics import lpips_weights_argument
from utils.errors import UserError


class OptionsError(UserError, ValueError):
    """An option value that training cannot use; the message names the option."""


# Options that describe one run's own files and actions rather than a way of training: a preset cannot set them.
RUN_SPECIFIC_OPTIONS = ("source_path", "model_path", "config", "resume")

# Options counted in iterations, which a shorter --iterations compresses with the rest of the schedule. The
# densification interval stays (see blur.presets.OFFICIAL_SCHEDULE).
SCHEDULE_OPTIONS = (*OFFICIAL_SCHEDULE, "opacity_reset_interval")


def build_parser(exit_on_error: bool = True, prog: str | None = None) -> ArgumentParser:
    """Every option of a training run, with the option names of the original 3DGS."""
    parser = ArgumentParser(prog=prog, description="Train 3D Gaussians on a scene", exit_on_error=exit_on_error)
    for group in (ModelParams, OptimizationParams, PipelineParams, BlurParams):
        group(parser)
    parser.add_argument("--config", default=None, metavar="PRESET",
                        help="deblurring preset: real_defocus, real_motion, synthetic_defocus, synthetic_motion "
                             "(blur/configs/) or a JSON file of option values; options typed on the command line "
                             "override it")
    parser.add_argument("--test_iterations", nargs="+", type=int, default=[7_000, 30_000],
                        help="iterations after which the test views are evaluated (0: before training); with "
                             "--eval the last one always is")
    parser.add_argument("--save_iterations", nargs="+", type=int, default=[7_000, 30_000],
                        help="iterations after which the Gaussians are saved (the last one always is)")
    parser.add_argument("--checkpoint_iterations", nargs="+", type=int, default=[],
                        help="iterations whose checkpoints are kept")
    parser.add_argument("--checkpoint_interval", type=int, default=1000,
                        help="write a checkpoint every this many iterations, replacing the previous one; 0 disables")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in -m")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random number generator")
    parser.add_argument("--lpips_weights", nargs="+", default=None, metavar="FILE",
                        help="local LPIPS AlexNet weights for evaluation: one combined file, or the linear heads "
                             "followed by the AlexNet backbone (see metrics.LPIPS)")
    return parser


_PARSER = build_parser()
_ACTIONS = {action.dest: action for action in _PARSER._actions if action.dest != "help"}
DEFAULTS: dict[str, Any] = {name: action.default for name, action in _ACTIONS.items()}

_UNSET = object()


def explicit_options(tokens: Sequence[str], parser: ArgumentParser = _PARSER) -> dict[str, Any]:
    """The options that command-line tokens set, as values; those they leave at their defaults are absent."""
    parsed = parser.parse_args(list(tokens), namespace=Namespace(**dict.fromkeys(DEFAULTS, _UNSET)))
    return {name: value for name, value in vars(parsed).items() if value is not _UNSET}


def _checked_value(name: str, value: Any) -> Any:
    """value as the command line would give it for option name; a ValueError says why it cannot be."""
    action = _ACTIONS[name]
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ValueError(f"--{name} is a flag: expected true or false, got {value!r}")
        return value
    if value is None:
        if action.default is not None:
            raise ValueError(f"--{name} needs a value")
        return None
    items = value if action.nargs == "+" else [value]
    if action.nargs == "+" and not (isinstance(value, list) and value):
        raise ValueError(f"--{name} expects a non-empty list, got {value!r}")
    # Every option's type is a class (int, float, ...) or None (text), as arguments.Option makes it.
    kind = action.type if isinstance(action.type, type) else None
    checked = []
    for item in items:
        if kind is not None:
            # Through the text the command line would hold, so that a preset is read exactly as if it had been typed.
            try:
                item = kind(str(item))
            except (TypeError, ValueError):
                raise ValueError(f"argument --{name}: invalid {kind.__name__} value: {item!r}") from None
        if action.choices is not None and item not in action.choices:
            raise ValueError(f"argument --{name}: invalid choice: {item!r} (choose from "
                             f"{', '.join(map(str, action.choices))})")
        checked.append(item)
    return checked if action.nargs == "+" else checked[0]


def preset_values(name_or_path: str) -> dict[str, Any]:
    """The option values of a --config preset, each checked as if it had been typed."""
    path = preset_path(name_or_path)
    values = {}
    for name, value in read_preset(path).items():
        if name not in DEFAULTS or name in RUN_SPECIFIC_OPTIONS:
            raise OptionsError(f"{path}: {name!r} is not an option a preset can set")
        try:
            values[name] = _checked_value(name, value)
        except ValueError as error:
            raise OptionsError(f"{path}: {error}") from None
    return values


def compressed_schedule(base: Mapping[str, Any], chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule of base (written for its --iterations) compressed to a shorter --iterations among chosen (the
    preset's and the explicit values), leaving out the options that chosen sets itself."""
    iterations = chosen.get("iterations", base["iterations"])
    if not 1 <= iterations < base["iterations"]:
        return {}
    schedule = scaled_schedule(iterations, {name: base[name] for name in SCHEDULE_OPTIONS}, base["iterations"])
    return {name: value for name, value in schedule.items() if name not in chosen}


def layered_values(explicit: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value for the explicit ones, over the layers the module describes; not checked yet."""
    unknown = sorted(set(explicit) - set(DEFAULTS))
    if unknown:
        raise OptionsError(f"unknown training option(s): {', '.join(unknown)}")
    explicit = {name: _checked_value(name, value) for name, value in explicit.items()}
    preset = {} if explicit.get("config") is None else preset_values(explicit["config"])
    chosen = {**preset, **explicit}
    deblur = {}
    # The preset may choose the blur mode and model, on which the next layers depend.
    blur = chosen.get("blur", DEFAULTS["blur"])
    if blur != "none" or explicit.get("config") is not None:
        deblur = {**DEBLUR_TRAINING_DEFAULTS, **blur_model_defaults(blur, chosen.get("blur_model",
                                                                                      DEFAULTS["blur_model"]))}
    base = {**DEFAULTS, **deblur}
    return {**base, **compressed_schedule(base, chosen), **chosen}


def with_cpu_scale(explicit: Mapping[str, Any], iterations: int) -> dict[str, Any]:
    """explicit over blur.cpu_scale_options(iterations): the official schedule compressed to iterations, with the
    KNN augmentation's iteration only where the run does the augmentation (not with --blur_model camera's
    defocus)."""
    knn_augmentation = layered_values(explicit)["knn_iteration"] > 0
    return {**cpu_scale_options(iterations, knn_augmentation), **explicit}


@dataclass(frozen=True)
class RunOptions:
    """What train.py adds to the 3DGS parameter groups: when to save, evaluate and checkpoint, and how to start."""

    seed: int
    resume: bool
    test_iterations: frozenset[int]
    save_iterations: frozenset[int]
    checkpoint_iterations: frozenset[int]
    checkpoint_interval: int
    lpips_weights: str | tuple[str, str] | None


@dataclass(frozen=True)
class TrainingOptions:
    """A run's options: every value (as cfg_args records them) and the groups that each part of training takes."""

    values: Namespace
    model: Namespace
    optimization: Namespace
    pipeline: Namespace
    blur: Namespace
    run: RunOptions

    @property
    def model_path(self) -> str:
        return self.model.model_path


def _problems(values: Namespace) -> list[str]:
    problems = list(BlurParams.problems(values))
    if not values.source_path:
        problems.append("-s/--source_path is required")
    elif not os.path.isdir(values.source_path):
        problems.append(f"-s/--source_path: {values.source_path} is not a folder")
    if values.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device cuda: no CUDA device is available; use --device cpu")
    if not 0 <= values.sh_degree <= 3:
        problems.append(f"--sh_degree must be between 0 and 3, got {values.sh_degree}")
    if values.iterations < 1:
        problems.append(f"--iterations must be positive, got {values.iterations}")
    if not values.min_contribution >= 0.0:
        problems.append(f"--min_contribution must be 0 (off) or positive, got {values.min_contribution}")
    if values.checkpoint_interval < 0:
        problems.append(f"--checkpoint_interval must be 0 or positive, got {values.checkpoint_interval}")
    if values.resume and not values.model_path:
        problems.append("--resume needs -m/--model_path, the folder of the run to continue")
    return problems


def training_options(explicit: Mapping[str, Any]) -> TrainingOptions:
    """The checked options of a run whose explicitly chosen values are explicit ({option name: value}); an
    OptionsError names the first option that cannot be used. Without a model_path the run gets a new folder under
    output/, named after the scene and the time."""
    values = Namespace(**layered_values(explicit))
    problems = _problems(values)
    if problems:
        raise OptionsError(problems[0])
    try:
        lpips_weights = lpips_weights_argument(values.lpips_weights)
    except ValueError as error:
        raise OptionsError(str(error)) from None
    if not values.model_path:
        scene_name = os.path.basename(os.path.normpath(values.source_path))
        values.model_path = os.path.join("output", f"{scene_name}-{datetime.now():%Y%m%d-%H%M%S}")
    values.save_iterations = sorted(set(values.save_iterations) | {values.iterations})
    values.test_iterations = sorted(set(values.test_iterations) | {values.iterations})
    run = RunOptions(
        seed=values.seed,
        resume=values.resume,
        test_iterations=frozenset(values.test_iterations),
        save_iterations=frozenset(values.save_iterations),
        checkpoint_iterations=frozenset(values.checkpoint_iterations),
        checkpoint_interval=values.checkpoint_interval,
        lpips_weights=lpips_weights,
    )
    return TrainingOptions(values, ModelParams.extract(values), OptimizationParams.extract(values),
                           PipelineParams.extract(values), BlurParams.extract(values), run)
