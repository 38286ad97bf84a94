"""The blur model's share of a training run: building it and its optimizer from the options, the image each
training view is compared with, and its part of a checkpoint."""
import copy
from argparse import Namespace
from typing import Any

import torch

from blur import BlurModel, CameraShake, blur_model_state
from gaussian_rasterizer import RasterOutput
from gaussian_renderer import render, render_moments
from scene.cameras import Camera
from scene.gaussian_model import GaussianParams
from training.errors import TrainingError
from utils.phase_timer import BLUR_MODEL, NO_TIMER, OTHER, RASTERIZER_FORWARD, NoTimer

AnyBlurModel = BlurModel | CameraShake


def create_blur_model(blur_args: Namespace, device: torch.device) -> tuple[AnyBlurModel | None,
                                                                          torch.optim.Optimizer | None]:
    """The blur model (the MLP, or the camera-shake paths) and its optimizer (Adam with the Gaussians' epsilon), or
    (None, None) for --blur none."""
    if blur_args.blur == "none":
        return None, None
    blur_model: AnyBlurModel
    if blur_args.camera_shake:
        blur_model = CameraShake(blur_args.num_moments, blur_args.linear_exposure, blur_args.path_anchor,
                                 blur_args.lens_blur)
    else:
        blur_model = BlurModel(
            blur_args.blur,
            num_moments=blur_args.num_moments,
            lambda_s=blur_args.lambda_s,
            lambda_p=blur_args.lambda_p,
            max_clamp=blur_args.max_clamp,
            normalize_rotations=blur_args.normalize_rotations,
            initial_scale_factor=blur_args.initial_scale_factor,
            lens_blur=blur_args.lens_blur,
        )
    blur_model = blur_model.to(device)
    return blur_model, blur_optimizer(blur_model, blur_args)


def blur_optimizer(blur_model: AnyBlurModel, blur_args: Namespace) -> torch.optim.Optimizer:
    fused = next(blur_model.parameters()).device.type == "cuda"
    return torch.optim.Adam(blur_model.parameters(), lr=blur_args.blur_lr, eps=1e-15, fused=fused)


def render_training_view(camera: Camera, params: GaussianParams, blur_model: AnyBlurModel | None,
                         background: torch.Tensor, backend: str,
                         timer: NoTimer = NO_TIMER) -> tuple[torch.Tensor, list[RasterOutput]]:
    """The image compared with camera's photo, and the renders it is the mean of: the plain Gaussians without a
    blur model, otherwise the blur model's transformed Gaussians (one render for defocus, M + 1 for motion, all from
    one rasterizer call)."""
    if blur_model is None:
        timer.phase(RASTERIZER_FORWARD)
        outputs = [render(camera, params, background, backend)]
        timer.phase(OTHER)
    else:
        timer.phase(BLUR_MODEL)
        moments = blur_model.blurred_params(params, camera)
        timer.phase(RASTERIZER_FORWARD)
        outputs = render_moments(camera, moments, background, backend)
        timer.phase(BLUR_MODEL)
    return (outputs[0].image if blur_model is None else blur_model.exposure_image(outputs)), outputs


def capture_blur(blur_model: AnyBlurModel | None, optimizer: torch.optim.Optimizer | None) -> dict[str, Any] | None:
    if blur_model is None or optimizer is None:
        return None
    # state_dict() hands out the live moment tensors, which later steps update in place.
    return dict(blur_model_state(blur_model), optimizer=copy.deepcopy(optimizer.state_dict()))


def restore_blur(state: dict[str, Any] | None, blur_model: AnyBlurModel | None,
                 optimizer: torch.optim.Optimizer | None, path: str) -> None:
    """Load the blur part of a checkpoint into blur_model and its optimizer, checking that both runs agree."""
    saved_mode = "none" if state is None else state["mode"]
    current_mode = "none" if blur_model is None else blur_model.mode
    if saved_mode != current_mode:
        raise TrainingError(f"{path}: the checkpoint was trained with --blur {saved_mode}, not --blur {current_mode}")
    if blur_model is None or optimizer is None or state is None:
        return
    # Checked before the weights, whose names differ between these models; runs from before --blur_model made them
    # the default were trained without them.
    for flag in ("camera_shake", "lens_blur", "linear_exposure"):
        saved = state["hyperparameters"].get(flag, False)
        if saved != blur_model.hyperparameters.get(flag, False):
            raise TrainingError(
                f"{path}: the checkpoint was trained {'with' if saved else 'without'} --{flag}, this run "
                f"{'without' if saved else 'with'} it; resume with the --blur_model and flags it was trained with"
            )
    # The settings that shape the renders, with the value of runs from before the setting existed.
    shaping = {"path_anchor": "mid", **({"num_moments": None} if blur_model.mode == "motion" else {})}
    for name, earlier in shaping.items():
        saved, current = state["hyperparameters"].get(name, earlier), blur_model.hyperparameters.get(name, earlier)
        if saved != current:
            raise TrainingError(f"{path}: the checkpoint was trained with --{name} {saved}, not {current}; resume "
                                f"with it")
    blur_model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
