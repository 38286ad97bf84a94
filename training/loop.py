"""The training loop of 3D Gaussian Splatting, with or without a blur model, and the run around it: the model
folder, cfg_args, evaluation of the test views, checkpoints and resuming."""
import logging
import math
import os
import time
from argparse import Namespace
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import metrics
from blur import augment_points, blur_model_path, save_blur_model
from gaussian_rasterizer import DeferredFiniteCheck
from gaussian_renderer import render
from scene.gaussian_model import GaussianModel
from scene.scene import Scene
from training.blur_model import (
    AnyBlurModel,
    blur_optimizer,
    capture_blur,
    create_blur_model,
    render_training_view,
    restore_blur,
)
from training.density import accumulate_densification_stats, adaptive_density_control, prune_by_contribution
from training.errors import TrainingError
from training.options import TrainingOptions
from utils.atomic_file import atomic_write, remove_stale_temporaries
from utils.checkpoints import (
    capture_rng_states,
    checkpoint_iterations_in,
    checkpoint_path,
    load_checkpoint,
    remove_older_periodic_checkpoints,
    restore_rng_states,
    save_checkpoint,
    seed_everything,
)
from utils.images import background_color
from utils.phase_timer import BLUR_MODEL, DENSIFICATION, LOSS, NO_TIMER, OPTIMIZER_STEP, OTHER, NoTimer

logger = logging.getLogger(__name__)

# Iterations between reads of the loss, the PSNR and the finiteness checks.
PROGRESS_INTERVAL = 10


class CameraSampler:
    """Draws training views in random order, every view once before any repeats (3DGS's shrinking view stack),
    from its own generator so that its position in the sequence can be checkpointed."""

    def __init__(self, view_count: int, seed: int):
        self.view_count = view_count
        self.generator = np.random.default_rng(seed)
        self.remaining: list[int] = []

    def next_index(self) -> int:
        if not self.remaining:
            self.remaining = self.generator.permutation(self.view_count).tolist()
        return self.remaining.pop()

    def state_dict(self) -> dict[str, Any]:
        return {
            "view_count": self.view_count,
            "remaining": list(self.remaining),
            "generator": self.generator.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["view_count"] != self.view_count:
            raise ValueError(
                f"the checkpoint was trained on {state['view_count']} views but the scene now has {self.view_count}"
            )
        self.remaining = list(state["remaining"])
        self.generator.bit_generator.state = state["generator"]


class ProgressWindow:
    """The loss and finiteness of the iterations since the last read, kept on the device: on a GPU each read waits
    for the device, so they are read together every few iterations. Renders made inside
    `with window.rasterizer_inputs:` leave the rasterizer's NaN/Inf check of their inputs to the same read."""

    def __init__(self, first_iteration: int):
        self.rasterizer_inputs = DeferredFiniteCheck()
        self._restart(first_iteration)

    def _restart(self, first_iteration: int) -> None:
        self.first_iteration = first_iteration
        self.rasterizer_inputs.clear()
        self.loss_sum: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum = loss.detach() + self.loss_sum
        self.count += 1

    def read(self, iteration: int, psnr: torch.Tensor) -> tuple[float, float]:
        """The mean loss of the iterations from the last read to iteration, and psnr (a device scalar) read along;
        a TrainingError if the loss or an input of the rasterizer was non-finite in any of those iterations."""
        inputs_finite = self.rasterizer_inputs.all_finite
        values = [self.loss_sum, psnr] + ([] if inputs_finite is None else [inputs_finite])
        loss_sum, psnr_value, *inputs_verdict = torch.stack([torch.as_tensor(value).to(psnr)
                                                             for value in values]).tolist()
        # A sum of losses is finite exactly when each of them is.
        if not (math.isfinite(loss_sum) and all(inputs_verdict)):
            span = (f"at iteration {iteration}" if iteration == self.first_iteration
                    else f"between iterations {self.first_iteration} and {iteration}")
            raise TrainingError(f"the loss or the Gaussians became non-finite {span}")
        mean_loss = loss_sum / self.count
        self._restart(iteration + 1)
        return mean_loss, psnr_value


def training_loss(image: torch.Tensor, gt_image: torch.Tensor, lambda_dssim: float) -> torch.Tensor:
    l1 = torch.abs(image - gt_image).mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - metrics.ssim(image, gt_image))


def evaluate(scene: Scene, gaussians: GaussianModel, background: torch.Tensor, pipe: Namespace, iteration: int,
             train_seconds: float, lpips_weights: str | tuple[str, str] | None) -> str:
    """Render every test view, score it under both metric protocols and write <model>/results_<iteration>.json."""
    params = gaussians.render_params()
    pairs = {}
    for camera in scene.test_cameras:
        image = render(camera, params, background, pipe.backend).image.clamp(0.0, 1.0)
        pairs[camera.image_name] = (image, camera.ground_truth())
    per_view = metrics.evaluate_images(pairs, lpips_weights=lpips_weights)
    path = os.path.join(scene.model_path, f"results_{iteration}.json")
    metrics.write_results(path, per_view, iteration, gaussians.num_points, train_seconds)
    return path


@dataclass
class TrainedModel:
    gaussians: GaussianModel
    scene: Scene
    blur_model: AnyBlurModel | None


def train_gaussians(options: TrainingOptions, timer: NoTimer = NO_TIMER) -> TrainedModel:
    """Optimise Gaussians for the options' scene; timer (a utils.phase_timer.PhaseTimer) times the phases of each
    iteration. Writes what the run options ask for (saved models, evaluations, checkpoints) under the model path."""
    dataset, opt, pipe, blur_args, run = options.model, options.optimization, options.pipeline, options.blur, \
        options.run
    device = torch.device(dataset.device)
    seed_everything(run.seed)
    gaussians = GaussianModel(dataset.sh_degree, device)
    scene = Scene(dataset, gaussians)
    # The KNN augmentation samples the box of the SfM points, which the Gaussians are now initialised from; a
    # copy, since the optimizer updates the positions in place.
    initial_points = gaussians.get_xyz.detach().cpu().numpy().copy()
    gaussians.training_setup(opt)
    blur_model, blur_model_optimizer = create_blur_model(blur_args, device)
    depth_prune_range = None if blur_model is None else blur_args.depth_prune_range
    sampler = CameraSampler(len(scene.train_cameras), run.seed)
    background = background_color(dataset.white_background, device)

    first_iter = 0
    train_seconds = 0.0
    if run.resume:
        saved = checkpoint_iterations_in(dataset.model_path)
        if not saved:
            raise TrainingError(f"--resume: no chkpnt<N>.pth checkpoint in {dataset.model_path}")
        path = checkpoint_path(dataset.model_path, saved[-1])
        state = load_checkpoint(path)
        try:
            gaussians.restore(state["gaussians"], opt)
            sampler.load_state_dict(state["sampler"])
        except ValueError as error:
            raise TrainingError(f"{path}: cannot continue this run: {error}") from error
        restore_blur(state.get("blur"), blur_model, blur_model_optimizer, path)
        restore_rng_states(state["rng"])
        first_iter = state["iteration"]
        train_seconds = state["train_seconds"]
        logger.info("Resuming from %s (iteration %d)", path, first_iter)
    elif 0 in run.test_iterations and scene.test_cameras:
        evaluate(scene, gaussians, background, pipe, 0, train_seconds, run.lpips_weights)

    if not scene.test_cameras and run.test_iterations:
        logger.info("No test views (train.py without --eval trains on every view): skipping evaluation")

    with logging_redirect_tqdm():
        progress = tqdm(range(first_iter + 1, opt.iterations + 1), initial=first_iter, total=opt.iterations,
                        desc="Training")
        window = ProgressWindow(first_iter + 1)
        for iteration in progress:
            timer.iteration(iteration)
            started = time.perf_counter()
            gaussians.update_learning_rate(iteration)
            if iteration % opt.sh_degree_interval == 0:
                gaussians.oneup_sh_degree()

            camera = scene.train_cameras[sampler.next_index()]
            with window.rasterizer_inputs:
                image, outputs = render_training_view(camera, gaussians.render_params(), blur_model, background,
                                                      pipe.backend, timer)
            timer.phase(LOSS)
            loss = training_loss(image, camera.ground_truth(), opt.lambda_dssim)
            timer.time_rasterizer_backward(outputs, then=OTHER if blur_model is None else BLUR_MODEL)
            loss.backward()
            timer.phase(OTHER)

            with torch.no_grad():
                window.add(loss)
                if iteration < opt.densify_until_iter:
                    timer.phase(DENSIFICATION)
                    accumulate_densification_stats(gaussians, outputs, camera)
                timer.phase(OPTIMIZER_STEP)
                gaussians.optimizer.step()
                gaussians.optimizer.zero_grad(set_to_none=True)
                if blur_model_optimizer is not None:
                    blur_model_optimizer.step()
                    blur_model_optimizer.zero_grad(set_to_none=True)
                if iteration < opt.densify_until_iter:
                    timer.phase(DENSIFICATION)
                    adaptive_density_control(iteration, gaussians, opt, scene.cameras_extent,
                                             dataset.white_background, depth_prune_range)
                timer.phase(OTHER)
                if blur_model is not None and iteration == blur_args.knn_iteration:
                    drawn, added = augment_points(
                        gaussians, initial_points, opt, blur_args.knn_neighbours, blur_args.knn_max_distance,
                        blur_args.knn_rate, blur_args.knn_max_points, blur_args.knn_color_weights,
                    )
                    # The official code keeps the MLP in the optimizer it rebuilds here: the MLP's Adam state
                    # restarts.
                    blur_model_optimizer = blur_optimizer(blur_model, blur_args)
                    logger.info("[iteration %d] KNN augmentation: %d of %d drawn points kept, %d Gaussians reset",
                                iteration, added, drawn, gaussians.num_points)
                if iteration == opt.iterations and opt.min_contribution > 0.0:
                    pruned = prune_by_contribution(gaussians, scene.train_cameras, opt.min_contribution,
                                                   pipe.backend)
                    logger.info("[iteration %d] pruned %d Gaussians whose blending weights over the training views "
                                "sum to less than %g; %d left", iteration, pruned, opt.min_contribution,
                                gaussians.num_points)
                periodic = run.checkpoint_interval > 0 and iteration % run.checkpoint_interval == 0
                # Also wherever the Gaussians leave the loop, so that none are saved or scored unchecked.
                if (iteration % PROGRESS_INTERVAL == 0 or iteration == opt.iterations or periodic
                        or iteration in run.save_iterations or iteration in run.test_iterations
                        or iteration in run.checkpoint_iterations):
                    mean_loss, psnr = window.read(iteration,
                                                  metrics.psnr(image.clamp(0.0, 1.0), camera.ground_truth()))
                    progress.set_postfix(
                        loss=f"{mean_loss:.5f}", psnr=f"{psnr:.2f}", gaussians=gaussians.num_points, refresh=False
                    )
                train_seconds += time.perf_counter() - started

                if iteration in run.save_iterations:
                    scene.save(iteration)
                    if blur_model is not None:
                        save_blur_model(blur_model, blur_model_path(scene.model_path, iteration))
                if iteration in run.test_iterations and scene.test_cameras:
                    path = evaluate(scene, gaussians, background, pipe, iteration, train_seconds,
                                    run.lpips_weights)
                    logger.info("[iteration %d] evaluation written to %s", iteration, path)
                if periodic or iteration in run.checkpoint_iterations:
                    state = {
                        "iteration": iteration,
                        "train_seconds": train_seconds,
                        "gaussians": gaussians.capture(),
                        "sampler": sampler.state_dict(),
                        "rng": capture_rng_states(),
                        "blur": capture_blur(blur_model, blur_model_optimizer),
                    }
                    save_checkpoint(checkpoint_path(dataset.model_path, iteration), state)
                    if periodic:
                        remove_older_periodic_checkpoints(dataset.model_path, iteration, run.checkpoint_iterations)
        timer.finish()
        progress.close()
    logger.info("Training complete: %d Gaussians, %.1f s of optimisation", gaussians.num_points, train_seconds)
    return TrainedModel(gaussians, scene, blur_model)


def run_training(options: TrainingOptions, timer: NoTimer = NO_TIMER) -> TrainedModel:
    """A whole run: the model folder (cleared of the temporaries of interrupted writes), its cfg_args (a resumed
    run keeps the record of the options it was started with), then train_gaussians."""
    model_path = options.model_path
    os.makedirs(model_path, exist_ok=True)
    for folder, _, _ in os.walk(model_path):
        remove_stale_temporaries(folder)
    config_path = os.path.join(model_path, "cfg_args")
    if not (options.run.resume and os.path.isfile(config_path)):
        with atomic_write(config_path, "w") as file:
            file.write(str(Namespace(**vars(options.values))))
    return train_gaussians(options, timer)
