"""Command-line parameter groups shared by train.py and render.py, with the option names of the original 3DGS."""

import ast
import builtins
import os
from argparse import SUPPRESS, ArgumentParser, Namespace, _ArgumentGroup
from dataclasses import dataclass

import torch

from utils.errors import UserError


class ConfigFileError(UserError, ValueError):
    """A cfg_args file that cannot be read back."""


@dataclass(frozen=True)
class Option:
    name: str
    default: object
    help: str
    short: str | None = None
    # builtins.type: in the class body, type names this field once it is assigned.
    type: builtins.type | None = None
    choices: tuple | None = None

    def add_to(self, group: _ArgumentGroup, suppress_default: bool) -> None:
        flags = ([f"-{self.short}"] if self.short else []) + [f"--{self.name}"]
        # Suppressed defaults leave unset options out of the namespace, so that values read from a
        # trained model's cfg_args are only overridden by what the user actually typed.
        default = SUPPRESS if suppress_default else self.default
        if isinstance(self.default, bool):
            group.add_argument(*flags, action="store_true", default=default, help=self.help)
        elif isinstance(self.default, list):
            group.add_argument(*flags, nargs="+", type=self.type or int, default=default, help=self.help)
        else:
            value_type = self.type or type(self.default)
            group.add_argument(*flags, type=value_type, choices=self.choices, default=default, help=self.help)


class ParamGroup:
    title = ""
    options: tuple[Option, ...] = ()

    def __init__(self, parser: ArgumentParser, suppress_defaults: bool = False):
        group = parser.add_argument_group(self.title)
        for option in self.options:
            option.add_to(group, suppress_defaults)

    @classmethod
    def extract(cls, args: Namespace) -> Namespace:
        """The group's options as their own namespace, taking defaults for options absent from args."""
        return Namespace(**{option.name: getattr(args, option.name, option.default) for option in cls.options})


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelParams(ParamGroup):
    title = "Loading Parameters"
    options = (
        Option("sh_degree", 3, "maximum spherical-harmonics degree of the Gaussians' colour"),
        Option("source_path", "", "scene folder (COLMAP, Deblur-NeRF/LLFF or NeRF-synthetic layout)", short="s"),
        Option("model_path", "", "output folder of the trained model", short="m"),
        Option(
            "resolution", 1, "1, 2, 4 or 8: image downscale factor; a larger value: target width in pixels", short="r"
        ),
        Option("white_background", False, "composite on a white instead of a black background", short="w"),
        Option("eval", False, "hold out test views (every hold-th image) instead of training on all of them"),
        Option("hold", None, "test-view spacing; default: the scene's hold=N file, or 8", type=int),
        Option("device", default_device(), "device for training and rendering", choices=("cpu", "cuda")),
    )


class PipelineParams(ParamGroup):
    title = "Pipeline Parameters"
    options = (
        Option(
            "backend",
            "auto",
            "rasterizer implementation; auto follows the device",
            choices=("auto", "cpu", "cuda", "reference"),
        ),
    )


class OptimizationParams(ParamGroup):
    title = "Optimization Parameters"
    options = (
        Option("iterations", 30_000, "number of training iterations; fewer than the default compress the rest of the "
               "schedule alike, except the options given explicitly"),
        Option("position_lr_init", 0.00016, "initial position learning rate, times the scene extent"),
        Option("position_lr_final", 0.0000016, "final position learning rate, times the scene extent"),
        Option("position_lr_delay_steps", 0, "length of a warm-up ramp of the position learning rate; 0: none"),
        Option("position_lr_delay_mult", 0.01, "fraction of the position learning rate at the start of the ramp"),
        Option("position_lr_max_steps", 0, "steps over which the position learning rate decays; 0: --iterations"),
        Option("feature_lr", 0.0025, "learning rate of the SH DC coefficients (higher degrees use 1/20 of it)"),
        Option("opacity_lr", 0.05, "opacity learning rate"),
        Option("scaling_lr", 0.005, "log-scale learning rate"),
        Option("rotation_lr", 0.001, "rotation learning rate"),
        Option("percent_dense", 0.01, "fraction of the scene extent separating small (cloned) from large (split)"),
        Option("lambda_dssim", 0.2, "weight of the D-SSIM term in the loss"),
        Option("densification_interval", 100, "iterations between densification rounds"),
        Option("opacity_reset_interval", 3000, "iterations between opacity resets; 0 disables them"),
        Option("densify_from_iter", 500, "first iteration of adaptive density control"),
        Option("densify_until_iter", 15_000, "last iteration of adaptive density control"),
        Option("densify_grad_threshold", 0.0002, "screen-space gradient (NDC units) above which Gaussians densify"),
        Option("min_opacity", 0.005, "Gaussians below this opacity are pruned"),
        Option(
            "max_screen_size",
            20,
            "prune Gaussians wider than this many pixels (or than 10%% of the scene extent) once the first "
            "opacity reset has passed (from the start when resets are disabled); 0 disables",
        ),
        Option("sh_degree_interval", 1000, "iterations between increases of the active SH degree"),
        Option(
            "min_contribution",
            0.0,
            "after the last iteration, prune Gaussians that give the training views less than this many pixels' "
            "worth of colour in all (their blending weights summed over every pixel); 0 disables",
        ),
    )


def read_cfg_args(model_path: str) -> Namespace:
    """The namespace train.py stored in <model_path>/cfg_args (a Namespace repr, as the original 3DGS writes)."""
    path = os.path.join(model_path, "cfg_args")
    if not os.path.isfile(path):
        raise ConfigFileError(f"{path}: no such file; is {model_path!r} a model folder written by train.py?")
    with open(path) as file:
        text = file.read()
    try:
        call = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "Namespace"):
            raise ValueError("expected Namespace(...)")
        values = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError("expected name=value arguments, got **")
            values[keyword.arg] = ast.literal_eval(keyword.value)
        return Namespace(**values)
    except (SyntaxError, ValueError) as error:
        raise ConfigFileError(f"{path}: not a Namespace(...) of plain values ({error})") from error
