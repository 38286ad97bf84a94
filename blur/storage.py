"""The blur MLP on disk: point_cloud/iteration_N/blur_model.pth next to each saved point cloud, and its share of
train.py's checkpoints."""

import os
from typing import Any

import torch

from arguments import ConfigFileError, read_cfg_args
from blur.camera_shake import CameraShake
from blur.model import BlurModel, BlurredRendering
from scene.scene import point_cloud_path, saved_iterations
from utils.atomic_file import atomic_write
from utils.errors import UserError
from utils.torch_files import load_torch_file

BLUR_MODEL_FILE = "blur_model.pth"


class BlurModelError(UserError, ValueError):
    """A blur model that cannot be found or read; the message names the file."""


def blur_model_path(model_path: str, iteration: int) -> str:
    return os.path.join(os.path.dirname(point_cloud_path(model_path, iteration)), BLUR_MODEL_FILE)


def blur_model_state(blur_model: BlurredRendering) -> dict[str, Any]:
    """Mode, hyperparameters and weights, as plain values and CPU tensors (loadable with weights_only=True)."""
    return {
        "mode": blur_model.mode,
        "hyperparameters": blur_model.hyperparameters,
        "state_dict": {name: tensor.detach().cpu() for name, tensor in blur_model.state_dict().items()},
    }


def blur_model_from_state(state: dict[str, Any], device: torch.device | str, source: str) -> BlurredRendering:
    """Inverse of blur_model_state; source names the file in error messages."""
    blur_model: BlurredRendering
    try:
        hyperparameters = dict(state["hyperparameters"])
        if hyperparameters.pop("camera_shake", False):
            if state["mode"] != CameraShake.mode:
                raise ValueError(f"camera shake is motion blur, not {state['mode']} blur")
            blur_model = CameraShake(**hyperparameters)
        else:
            blur_model = BlurModel(state["mode"], **hyperparameters)
        blur_model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise BlurModelError(f"{source}: not a blur model written by train.py ({error})") from None
    return blur_model.to(device)


def save_blur_model(blur_model: BlurredRendering, path: str) -> None:
    with atomic_write(path) as file:
        torch.save(blur_model_state(blur_model), file)


def load_blur_model(model_path: str, iteration: int | None = None,
                    device: torch.device | str = "cpu") -> BlurredRendering | None:
    """The blur MLP saved with the point cloud of `iteration` (default: the latest saved) in a train.py output
    folder, in eval mode; None for a run trained with --blur none."""
    available = saved_iterations(model_path)
    if not available:
        raise BlurModelError(f"{model_path}: no point_cloud/iteration_*/point_cloud.ply found")
    if iteration is None:
        iteration = available[-1]
    elif iteration not in available:
        raise BlurModelError(
            f"{model_path}: no point cloud saved at iteration {iteration} (saved: {', '.join(map(str, available))})"
        )
    path = blur_model_path(model_path, iteration)
    if not os.path.isfile(path):
        try:
            mode = getattr(read_cfg_args(model_path), "blur", "none")
        except ConfigFileError as error:
            raise BlurModelError(f"{path}: not found, and the run's settings are unreadable ({error})") from None
        if mode == "none":
            return None
        raise BlurModelError(f"{path}: not found, though {model_path} was trained with --blur {mode}")
    state = load_torch_file(path, BlurModelError, "cannot read the blur model")
    return blur_model_from_state(state, device, path).eval()
