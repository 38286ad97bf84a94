"""Train 3D Gaussians on a scene, optionally from blurry photos: with a model of the camera's blur (the default
--blur_model camera) or with the blur MLP of Deblurring 3D Gaussian Splatting (--blur_model official).

    python train.py -s data/scene [-m output/name] [--blur none] [--iterations 20000] [--resolution 4] [--eval]
    python train.py -s data/scene --config synthetic_defocus [--iterations 3000]
    python train.py -s data/scene --config synthetic_defocus --blur_model official   # the paper's exact method
"""

import copy
import math
import os
import random
import sys
import time
from argparse import ArgumentError, ArgumentParser, Namespace
from datetime import datetime

import numpy as np
import torch
from tqdm import tqdm

import metrics
from arguments import ModelParams, OptimizationParams, PipelineParams
from blur import (
    DEBLUR_TRAINING_DEFAULTS,
    AugmentationError,
    BlurModel,
    BlurParams,
    CameraShake,
    PresetError,
    augment_points,
    blur_model_defaults,
    blur_model_path,
    blur_model_state,
    cpu_scale_options,
    mean_image,
    prune_by_depth_scaled_opacity,
    read_preset,
    save_blur_model,
)
from blur.presets import OFFICIAL_SCHEDULE, as_arguments, preset_path, scaled_schedule
from gaussian_rasterizer import DeferredFiniteCheck
from gaussian_renderer import render, render_moments, total_blending_weights
from metrics import MetricsError
from scene.dataset_readers import DatasetError
from scene.gaussian_model import GaussianModel, PlyFormatError
from scene.scene import Scene
from utils.atomic_file import atomic_write, remove_stale_temporaries
from utils.checkpoints import checkpoint_iterations_in, checkpoint_path
from utils.phase_timer import BLUR_MODEL, DENSIFICATION, LOSS, OPTIMIZER_STEP, OTHER, RASTERIZER_FORWARD, NO_TIMER

class TrainingError(RuntimeError):
    """Training cannot go on: a missing or unreadable checkpoint, a diverged loss, no Gaussians left."""


class CameraSampler:
    """Draws training views in random order, every view once before any repeats (3DGS's shrinking view stack),
    from its own generator so that its position in the sequence can be checkpointed."""

    def __init__(self, view_count, seed):
        self.view_count = view_count
        self.generator = np.random.default_rng(seed)
        self.remaining = []

    def next_index(self):
        if not self.remaining:
            self.remaining = self.generator.permutation(self.view_count).tolist()
        return self.remaining.pop()

    def state_dict(self):
        return {
            "view_count": self.view_count,
            "remaining": list(self.remaining),
            "generator": self.generator.bit_generator.state,
        }

    def load_state_dict(self, state):
        if state["view_count"] != self.view_count:
            raise ValueError(
                f"the checkpoint was trained on {state['view_count']} views but the scene now has {self.view_count}"
            )
        self.remaining = list(state["remaining"])
        self.generator.bit_generator.state = state["generator"]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_states():
    # The numpy state is stored as plain lists so that checkpoints load with torch.load(weights_only=True).
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states):
    random.setstate(states["python"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = dict(numpy_state["state"], key=np.array(numpy_state["state"]["key"], dtype=np.uint32))
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path, state):
    """Write atomically: a run killed mid-write leaves the previous checkpoint intact and no partial file."""
    with atomic_write(path) as file:
        torch.save(state, file)


CHECKPOINT_KEYS = ("iteration", "train_seconds", "gaussians", "sampler", "rng")


def load_checkpoint(path):
    """The checkpoint's tensors stay on the CPU, where RNG states must be; restoring moves the rest."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainingError(f"{path}: cannot read checkpoint ({error})") from error
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        raise TrainingError(f"{path}: not a checkpoint written by train.py")
    return state


# Iterations between reads of the loss, the PSNR and the finiteness checks.
PROGRESS_INTERVAL = 10


class ProgressWindow:
    """The loss and finiteness of the iterations since the last read, kept on the device: on a GPU each read waits
    for the device, so they are read together every few iterations. Renders made inside
    `with window.rasterizer_inputs:` leave the rasterizer's NaN/Inf check of their inputs to the same read."""

    def __init__(self, first_iteration):
        self.rasterizer_inputs = DeferredFiniteCheck()
        self._restart(first_iteration)

    def _restart(self, first_iteration):
        self.first_iteration = first_iteration
        self.rasterizer_inputs.clear()
        self.loss_sum = 0.0
        self.count = 0

    def add(self, loss):
        self.loss_sum = loss.detach() + self.loss_sum
        self.count += 1

    def read(self, iteration, psnr):
        """The mean loss of the iterations from the last read to iteration, and psnr (a device scalar) read along;
        a TrainingError if the loss or an input of the rasterizer was non-finite in any of those iterations."""
        inputs_finite = self.rasterizer_inputs.all_finite
        values = [self.loss_sum, psnr] + ([] if inputs_finite is None else [inputs_finite])
        loss_sum, psnr_value, *inputs_verdict = torch.stack([value.to(psnr) for value in values]).tolist()
        # A sum of losses is finite exactly when each of them is.
        if not (math.isfinite(loss_sum) and all(inputs_verdict)):
            span = (f"at iteration {iteration}" if iteration == self.first_iteration
                    else f"between iterations {self.first_iteration} and {iteration}")
            raise TrainingError(f"the loss or the Gaussians became non-finite {span}")
        mean_loss = loss_sum / self.count
        self._restart(iteration + 1)
        return mean_loss, psnr_value


def training_loss(image, gt_image, lambda_dssim):
    l1 = torch.abs(image - gt_image).mean()
    return (1.0 - lambda_dssim) * l1 + lambda_dssim * (1.0 - metrics.ssim(image, gt_image))


def evaluate(scene, gaussians, background, pipe, iteration, train_seconds, lpips_weights):
    """Render every test view, score it under both metric protocols and write <model>/results_<iteration>.json."""
    params = gaussians.render_params()
    pairs = {}
    for camera in scene.test_cameras:
        image = render(camera, params, background, pipe.backend).image.clamp(0.0, 1.0)
        pairs[camera.image_name] = (image, camera.original_image)
    per_view = metrics.evaluate_images(pairs, lpips_weights=lpips_weights)
    path = os.path.join(scene.model_path, f"results_{iteration}.json")
    metrics.write_results(path, per_view, iteration, gaussians.num_points, train_seconds)
    return path


def adaptive_density_control(iteration, gaussians, opt, scene_extent, white_background, depth_prune_range=None):
    """The 3DGS schedule of densification rounds and opacity resets, for an iteration before densify_until_iter.

    With depth_prune_range (deblurring runs), the opacity threshold of each Gaussian is scaled down with its depth
    (see blur.depth_scaled_thresholds) instead of being --min_opacity for all.
    """
    if iteration > opt.densify_from_iter and iteration % opt.densification_interval == 0:
        size_threshold = opt.max_screen_size if iteration > opt.opacity_reset_interval else None
        if depth_prune_range is None:
            gaussians.densify_and_prune(opt.densify_grad_threshold, opt.min_opacity, scene_extent, size_threshold)
        else:
            # No opacity is below 0: this densifies (and prunes by size) only, so that the depth-scaled thresholds
            # are computed for the densified set, as the official code does.
            gaussians.densify_and_prune(opt.densify_grad_threshold, 0.0, scene_extent, size_threshold)
            prune_by_depth_scaled_opacity(gaussians, opt.min_opacity, depth_prune_range)
        if gaussians.num_points == 0:
            raise TrainingError(
                f"every Gaussian was pruned at iteration {iteration}; lower --min_opacity or --max_screen_size"
            )
    # As in 3DGS, white-background scenes get one extra reset when densification starts. A reset lowers every
    # opacity to 0.01, so none comes in the last opacity_reset_interval iterations, the time 3DGS gives opacities
    # to recover before its next reset. (Vanilla on the tiny defocus scene, 1000 iterations: a reset at the last
    # one left 6.6 dB of held-out PSNR, one 50 iterations before the end 21.0 dB, none 21.4 dB.)
    if opt.opacity_reset_interval and iteration <= opt.iterations - opt.opacity_reset_interval and (
        iteration % opt.opacity_reset_interval == 0 or (white_background and iteration == opt.densify_from_iter)
    ):
        gaussians.reset_opacity()


def prune_by_contribution(gaussians, cameras, min_contribution, backend):
    """Prune the Gaussians whose blending weights, summed over every pixel of cameras, stay below min_contribution
    pixels: with colours in [0, 1], removing one changes the renders of cameras by at most that many pixels' worth
    of colour, and each costs render time. Returns how many were pruned."""
    weights = total_blending_weights(cameras, gaussians.render_params(), backend)
    faint = weights < min_contribution
    if bool(faint.all()):
        raise TrainingError(
            f"--min_contribution {min_contribution:g} would prune every Gaussian (the largest contribution is "
            f"{weights.max().item():.3g} pixels)"
        )
    gaussians.prune_points(faint)
    return int(faint.sum())


def accumulate_densification_stats(gaussians, outputs, camera):
    """Add the screen-space gradients of every render of one training image. Together the renders count as one
    observation: each adds 1/len(outputs) to the denominator of the Gaussians it shows, as the official code
    counts the moments of a motion-blurred image."""
    denom_before = gaussians.denom.clone()
    for output in outputs:
        gaussians.add_densification_stats(output.means2d.grad, output.radii, camera.width, camera.height)
    if len(outputs) > 1:
        gaussians.denom = denom_before + (gaussians.denom - denom_before) / len(outputs)


def render_training_view(camera, params, blur_model, background, backend, timer=NO_TIMER):
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
    return mean_image(outputs), outputs


def create_blur_model(blur_args, device):
    """The blur model (the MLP, or the camera-shake paths) and its optimizer (Adam with the Gaussians' epsilon), or
    (None, None) for --blur none."""
    if blur_args.blur == "none":
        return None, None
    if blur_args.camera_shake:
        blur_model = CameraShake(blur_args.num_moments)
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


def blur_optimizer(blur_model, blur_args):
    fused = next(blur_model.parameters()).device.type == "cuda"
    return torch.optim.Adam(blur_model.parameters(), lr=blur_args.blur_lr, eps=1e-15, fused=fused)


def capture_blur(blur_model, optimizer):
    if blur_model is None:
        return None
    # state_dict() hands out the live moment tensors, which later steps update in place.
    return dict(blur_model_state(blur_model), optimizer=copy.deepcopy(optimizer.state_dict()))


def restore_blur(state, blur_model, optimizer, path):
    """Load the blur part of a checkpoint into blur_model and its optimizer, checking that both runs agree."""
    saved_mode = "none" if state is None else state["mode"]
    current_mode = "none" if blur_model is None else blur_model.mode
    if saved_mode != current_mode:
        raise TrainingError(f"{path}: the checkpoint was trained with --blur {saved_mode}, not --blur {current_mode}")
    if blur_model is None:
        return
    saved_moments = state["hyperparameters"]["num_moments"]
    if blur_model.mode == "motion" and saved_moments != blur_model.num_moments:
        raise TrainingError(
            f"{path}: the checkpoint's blur model has --num_moments {saved_moments}, not {blur_model.num_moments}"
        )
    # Checked before the weights, whose names differ between these models; runs from before --blur_model made them
    # the default were trained without them.
    for flag in ("camera_shake", "lens_blur"):
        saved = state["hyperparameters"].get(flag, False)
        if saved != blur_model.hyperparameters.get(flag, False):
            raise TrainingError(
                f"{path}: the checkpoint was trained {'with' if saved else 'without'} --{flag}, this run "
                f"{'without' if saved else 'with'} it; resume with the --blur_model and flags it was trained with"
            )
    blur_model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])


def training(dataset, opt, pipe, run, blur_args, timer=NO_TIMER):
    """Optimise Gaussians for dataset.source_path; run holds the train.py-only options (iterations to save,
    test and checkpoint at, seed, resume), blur_args the BlurParams; timer (a utils.phase_timer.PhaseTimer) times
    the phases of each iteration."""
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
    background = torch.tensor([1.0, 1.0, 1.0] if dataset.white_background else [0.0, 0.0, 0.0], device=device)

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
        print(f"Resuming from {path} (iteration {first_iter})")
    elif 0 in run.test_iterations and scene.test_cameras:
        evaluate(scene, gaussians, background, pipe, 0, train_seconds, run.lpips_weights)

    if not scene.test_cameras and run.test_iterations:
        print("No test views (train.py without --eval trains on every view): skipping evaluation")

    progress = tqdm(
        range(first_iter + 1, opt.iterations + 1), initial=first_iter, total=opt.iterations, desc="Training"
    )
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
        loss = training_loss(image, camera.original_image, opt.lambda_dssim)
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
            if blur_model is not None:
                blur_model_optimizer.step()
                blur_model_optimizer.zero_grad(set_to_none=True)
            if iteration < opt.densify_until_iter:
                timer.phase(DENSIFICATION)
                adaptive_density_control(iteration, gaussians, opt, scene.cameras_extent, dataset.white_background,
                                         depth_prune_range)
            timer.phase(OTHER)
            if blur_model is not None and iteration == blur_args.knn_iteration:
                drawn, added = augment_points(
                    gaussians, initial_points, opt, blur_args.knn_neighbours, blur_args.knn_max_distance,
                    blur_args.knn_rate, blur_args.knn_max_points, blur_args.knn_color_weights,
                )
                # The official code keeps the MLP in the optimizer it rebuilds here: the MLP's Adam state restarts.
                blur_model_optimizer = blur_optimizer(blur_model, blur_args)
                tqdm.write(f"[iteration {iteration}] KNN augmentation: {added} of {drawn} drawn points kept, "
                           f"{gaussians.num_points} Gaussians reset")
            if iteration == opt.iterations and opt.min_contribution > 0.0:
                pruned = prune_by_contribution(gaussians, scene.train_cameras, opt.min_contribution, pipe.backend)
                tqdm.write(f"[iteration {iteration}] pruned {pruned} Gaussians whose blending weights over the training "
                           f"views sum to less than {opt.min_contribution:g}; {gaussians.num_points} left")
            periodic = run.checkpoint_interval > 0 and iteration % run.checkpoint_interval == 0
            # Also wherever the Gaussians leave the loop, so that none are saved or scored unchecked.
            if (iteration % PROGRESS_INTERVAL == 0 or iteration == opt.iterations or periodic
                    or iteration in run.save_iterations or iteration in run.test_iterations
                    or iteration in run.checkpoint_iterations):
                mean_loss, psnr = window.read(iteration, metrics.psnr(image.clamp(0.0, 1.0), camera.original_image))
                progress.set_postfix(
                    loss=f"{mean_loss:.5f}", psnr=f"{psnr:.2f}", gaussians=gaussians.num_points, refresh=False
                )
            train_seconds += time.perf_counter() - started

            if iteration in run.save_iterations:
                scene.save(iteration)
                if blur_model is not None:
                    save_blur_model(blur_model, blur_model_path(scene.model_path, iteration))
            if iteration in run.test_iterations and scene.test_cameras:
                path = evaluate(scene, gaussians, background, pipe, iteration, train_seconds, run.lpips_weights)
                tqdm.write(f"[iteration {iteration}] evaluation written to {path}")
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
    print(f"Training complete: {gaussians.num_points} Gaussians, {train_seconds:.1f} s of optimisation")
    return gaussians, scene, blur_model


def remove_older_periodic_checkpoints(model_path, newest, requested_iterations):
    """Keep disk use bounded: only the newest periodic checkpoint is needed to resume; those at requested
    --checkpoint_iterations stay."""
    for iteration in checkpoint_iterations_in(model_path):
        if iteration < newest and iteration not in requested_iterations:
            os.remove(checkpoint_path(model_path, iteration))


def build_parser(exit_on_error=True):
    parser = ArgumentParser(description="Train 3D Gaussians on a scene", exit_on_error=exit_on_error)
    model_params = ModelParams(parser)
    optimization_params = OptimizationParams(parser)
    pipeline_params = PipelineParams(parser)
    blur_params = BlurParams(parser)
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
    return parser, model_params, optimization_params, pipeline_params, blur_params


# Options that describe one run's own files and actions rather than a way of training.
RUN_SPECIFIC_OPTIONS = ("source_path", "model_path", "config", "resume")


def preset_arguments(parser, name_or_path):
    """The command-line tokens of a --config preset, each checked as if it had been typed."""
    path = preset_path(name_or_path)
    preset = read_preset(path)
    known = vars(parser.parse_args([]))
    for name in preset:
        if name not in known or name in RUN_SPECIFIC_OPTIONS:
            raise PresetError(f"{path}: {name!r} is not an option a preset can set")
    tokens = as_arguments(preset)
    try:
        build_parser(exit_on_error=False)[0].parse_args(tokens)
    except ArgumentError as error:
        raise PresetError(f"{path}: {error}") from None
    return tokens


# Options counted in iterations, which a shorter --iterations compresses with the rest of the schedule. The
# densification interval stays (see blur.presets.OFFICIAL_SCHEDULE).
SCHEDULE_OPTIONS = (*OFFICIAL_SCHEDULE, "opacity_reset_interval")


def options_set_by(parser, tokens):
    """Names of the options that tokens set, as opposed to leave at their defaults."""
    unset = object()
    parsed = parser.parse_args(tokens, namespace=Namespace(**dict.fromkeys(vars(parser.parse_args([])), unset)))
    return {name for name, value in vars(parsed).items() if value is not unset}


def shortened_schedule(parser, defaults, explicit):
    """Tokens that compress the schedule of the defaults (train.py's, under the tokens of defaults), written for
    their --iterations, to a shorter --iterations among explicit (the preset's and the command line's tokens). The
    options that explicit sets itself keep their values."""
    full = parser.parse_args(defaults)
    iterations = parser.parse_args(defaults + explicit).iterations
    if not 1 <= iterations < full.iterations:  # parse_args reports a non-positive one
        return []
    schedule = scaled_schedule(iterations, {name: getattr(full, name) for name in SCHEDULE_OPTIONS}, full.iterations)
    set_explicitly = options_set_by(parser, explicit)
    return as_arguments({name: value for name, value in schedule.items() if name not in set_explicitly})


def layered_options(parser, argv):
    """argv parsed over its layers, in increasing priority: train.py's defaults, the official deblurring defaults
    (for a run with a blur model or a preset, see blur.DEBLUR_TRAINING_DEFAULTS), those of --blur_model for the blur
    type (see blur.presets.BLUR_MODEL_DEFAULTS), their schedule compressed to a shorter --iterations (see
    shortened_schedule), the --config preset, the command line. The values are not checked yet."""
    args = parser.parse_args(argv)
    layers = []
    if args.config is not None:
        try:
            layers = preset_arguments(parser, args.config)
        except PresetError as error:
            parser.error(str(error))
        # The preset may choose the blur mode and model, on which the next layers depend.
        args = parser.parse_args(layers + argv)
    defaults = []
    if args.blur != "none" or args.config is not None:
        defaults = as_arguments({**DEBLUR_TRAINING_DEFAULTS, **blur_model_defaults(args.blur, args.blur_model)})
    return parser.parse_args(defaults + shortened_schedule(parser, defaults, layers + argv) + layers + argv)


def cpu_scale_arguments(argv, iterations):
    """The options of blur.cpu_scale_options(iterations) for the run of argv, to be placed before argv: with the
    compressed KNN iteration only where that run does the augmentation (not with --blur_model camera's defocus)."""
    knn_augmentation = layered_options(build_parser()[0], argv).knn_iteration > 0
    return as_arguments(cpu_scale_options(iterations, knn_augmentation))


def parse_args(argv=None):
    """The run's options, layered as layered_options describes, and checked."""
    parser, model_params, optimization_params, pipeline_params, blur_params = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = layered_options(parser, argv)
    for problem in BlurParams.problems(args):
        parser.error(problem)
    if not args.source_path:
        parser.error("-s/--source_path is required")
    if not os.path.isdir(args.source_path):
        parser.error(f"-s/--source_path: {args.source_path} is not a folder")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    if not 0 <= args.sh_degree <= 3:
        parser.error(f"--sh_degree must be between 0 and 3, got {args.sh_degree}")
    if args.iterations < 1:
        parser.error(f"--iterations must be positive, got {args.iterations}")
    if not args.min_contribution >= 0.0:
        parser.error(f"--min_contribution must be 0 (off) or positive, got {args.min_contribution}")
    if args.checkpoint_interval < 0:
        parser.error(f"--checkpoint_interval must be 0 or positive, got {args.checkpoint_interval}")
    if args.lpips_weights is not None:
        if len(args.lpips_weights) > 2:
            parser.error("--lpips_weights takes one combined file or two files (linear heads, AlexNet backbone)")
        for path in args.lpips_weights:
            if not os.path.isfile(path):
                parser.error(f"--lpips_weights: {path} is not a file")
    if args.resume and not args.model_path:
        parser.error("--resume needs -m/--model_path, the folder of the run to continue")
    if not args.model_path:
        scene_name = os.path.basename(os.path.normpath(args.source_path))
        args.model_path = os.path.join("output", f"{scene_name}-{datetime.now():%Y%m%d-%H%M%S}")
    args.save_iterations = sorted(set(args.save_iterations) | {args.iterations})
    args.test_iterations = sorted(set(args.test_iterations) | {args.iterations})
    return (args, model_params.extract(args), optimization_params.extract(args), pipeline_params.extract(args),
            blur_params.extract(args))


def lpips_weights_argument(paths):
    """metrics.evaluate_images takes one combined weights file as a path, two as a (heads, backbone) pair."""
    if paths is None:
        return None
    return paths[0] if len(paths) == 1 else tuple(paths)


def run_options(args: Namespace) -> Namespace:
    """The train.py-only options that training() takes as run, from parse_args' namespace."""
    return Namespace(
        seed=args.seed,
        resume=args.resume,
        test_iterations=set(args.test_iterations),
        save_iterations=set(args.save_iterations),
        checkpoint_iterations=set(args.checkpoint_iterations),
        checkpoint_interval=args.checkpoint_interval,
        lpips_weights=lpips_weights_argument(args.lpips_weights),
    )


def main(argv=None):
    args, dataset, opt, pipe, blur_args = parse_args(argv)
    print(f"Output folder: {args.model_path}")
    os.makedirs(args.model_path, exist_ok=True)
    for folder, _, _ in os.walk(args.model_path):
        remove_stale_temporaries(folder)
    config_path = os.path.join(args.model_path, "cfg_args")
    # A resumed run keeps the record of the arguments it was started with.
    if not (args.resume and os.path.isfile(config_path)):
        with atomic_write(config_path, "w") as file:
            file.write(str(Namespace(**vars(args))))
    try:
        training(dataset, opt, pipe, run_options(args), blur_args)
    except (AugmentationError, DatasetError, MetricsError, PlyFormatError, TrainingError) as error:
        sys.exit(f"train.py: error: {error}")


if __name__ == "__main__":
    main()
