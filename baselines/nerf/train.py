"""Train a NeRF-based baseline on a scene, then render and score its test views.

    python -m baselines.nerf.train -s data/scene -m output/name --method nerf|deblurnerf|dpnerf|dynamic
        [--iterations N] [--resolution R] [--device cpu|cuda] [--seed S] [--resume]

Writes, under the model folder: results.json (metrics.write_results, num_gaussians null), fps.json (render speed
of the test views), the test renders and their ground truth as PNG in test/ours_<iteration>/{renders,gt}, and
chkpnt<iteration>.pth every --checkpoint_interval iterations and at the end (only the newest is kept).
"""

import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from argparse import ArgumentParser
from dataclasses import dataclass

import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

import metrics
from arguments import default_device
from baselines.nerf.method import METHODS, BaselineInputError, NeRFMethod, check_method
from baselines.nerf.rays import RaySpace, ViewCameras
from scene.dataset_readers import load_scene_info
from utils.atomic_file import atomic_write
from utils.checkpoints import checkpoint_iterations_in, checkpoint_path
from utils.devices import synchronize
from utils.errors import UserError, report_user_errors
from utils.images import background_color, to_uint8
from utils.logs import configure_cli_logging
from utils.torch_files import load_torch_file

logger = logging.getLogger(__name__)


class TrainingError(UserError, RuntimeError):
    """Training cannot go on: an unreadable or mismatched checkpoint, or a diverged loss."""


@dataclass
class Settings:
    iterations: int
    batch_rays: int  # training pixels per step; the deblurring methods render kernel_points rays for each
    coarse_samples: int
    fine_samples: int
    net_depth: int
    net_width: int
    learning_rate: float
    kernel_points: int
    density_noise: float  # NeRF's noise on raw densities in training, against floaters (NDC scenes only)
    chunk: int  # rays per forward pass when rendering a view


# The papers' settings (NeRF on LLFF scenes, Deblur-NeRF, DP-NeRF).
GPU_SETTINGS = Settings(iterations=200_000, batch_rays=1024, coarse_samples=64, fine_samples=64, net_depth=8,
                        net_width=256, learning_rate=5e-4, kernel_points=5, density_noise=1.0, chunk=32768)
# Small enough to train the tiny synthetic scenes (160x120, 16 views) on a CPU in minutes.
CPU_SETTINGS = Settings(iterations=1000, batch_rays=256, coarse_samples=32, fine_samples=32, net_depth=4,
                        net_width=64, learning_rate=5e-3, kernel_points=5, density_noise=1.0, chunk=4096)
NON_NEGATIVE_SETTINGS = ("density_noise",)
# Lower bounds above 1: the colour branch is a half-width layer, and the fine samples are drawn between neighbouring
# coarse ones.
MIN_SETTINGS = {"net_width": 2, "coarse_samples": 2}
# Settings that a checkpoint's model shape depends on: a run resumes only with the same ones.
ARCHITECTURE_FIELDS = ("net_depth", "net_width", "kernel_points")
# Deblur-NeRF's weight of the loss that keeps kernel point 0 on the pixel's own ray.
ALIGNMENT_WEIGHT = 0.1
# The learning rate falls tenfold over 1.25 times the run, as NeRF's decays over 250k steps of a 200k-step run.
DECAY_SPAN = 1.25
DEFAULT_CHECKPOINT_INTERVAL = 1000


def default_settings(device, **overrides):
    """The device's preset (GPU: the papers' settings; CPU: a small model) with the given fields replaced
    (None keeps the preset's value)."""
    preset = GPU_SETTINGS if torch.device(device).type == "cuda" else CPU_SETTINGS
    unknown = set(overrides) - {field.name for field in dataclasses.fields(Settings)}
    if unknown:
        raise BaselineInputError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    settings = dataclasses.replace(preset, **{name: value for name, value in overrides.items() if value is not None})
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        expected = (int, float) if field.type is float else int
        if isinstance(value, bool) or not isinstance(value, expected):
            raise BaselineInputError(f"--{field.name} must be {'an integer' if field.type is int else 'a number'}, "
                                     f"got {value!r}")
        if field.name in NON_NEGATIVE_SETTINGS:
            if not value >= 0:
                raise BaselineInputError(f"--{field.name} must be 0 or positive, got {value!r}")
        elif not value > 0:
            raise BaselineInputError(f"--{field.name} must be positive, got {value!r}")
        minimum = MIN_SETTINGS.get(field.name)
        if minimum is not None and value < minimum:
            raise BaselineInputError(f"--{field.name} must be at least {minimum}, got {value!r}")
    return settings


class TrainingPixels:
    """The training photos as one flat tensor of colours, to draw batches of random pixels across all views."""

    def __init__(self, cameras, device):
        self.colours = torch.cat([torch.from_numpy(camera.image).reshape(-1, 3) for camera in cameras]).to(device)
        self.sizes = torch.tensor([[camera.width, camera.height] for camera in cameras], device=device)
        counts = self.sizes[:, 0] * self.sizes[:, 1]
        self.offsets = torch.cumsum(counts, 0) - counts
        self.images = [
            self.colours[offset:offset + camera.width * camera.height].view(camera.height, camera.width, 3)
            .permute(2, 0, 1)
            for offset, camera in zip(self.offsets.tolist(), cameras)
        ]

    def sample(self, count, generator):
        """View indices (count,), pixel centres (count, 2) and colours (count, 3) of random pixels."""
        device = self.colours.device
        views = torch.randint(len(self.sizes), (count,), generator=generator, device=device)
        sizes = self.sizes[views]
        draws = torch.rand(count, 2, generator=generator, device=device)
        xy = torch.minimum((draws * sizes).long(), sizes - 1)
        indices = self.offsets[views] + xy[:, 1] * sizes[:, 0] + xy[:, 0]
        return views, xy.float() + 0.5, self.colours[indices]


# ---- files ----

def write_atomically(path, write):
    """write(file) receives the binary file that replaces path once complete (see utils.atomic_file)."""
    with atomic_write(path) as file:
        write(file)


def write_json(path, data):
    write_atomically(path, lambda file: file.write(json.dumps(data, indent=2).encode("utf-8")))


def save_checkpoint(model_path, iteration, state):
    """Write chkpnt<iteration>.pth and remove the folder's other checkpoints: older ones are no longer needed,
    newer ones are left from an earlier run that this one replaces, and --resume must not pick them."""
    write_atomically(checkpoint_path(model_path, iteration), lambda file: torch.save(state, file))
    for other in checkpoint_iterations_in(model_path):
        if other != iteration:
            os.remove(checkpoint_path(model_path, other))


def load_checkpoint(model_path, method, settings):
    """The newest checkpoint in model_path, checked against the run it should continue."""
    saved = checkpoint_iterations_in(model_path)
    if not saved:
        raise TrainingError(f"--resume: no chkpnt<N>.pth checkpoint in {model_path}")
    path = checkpoint_path(model_path, saved[-1])
    state = load_torch_file(path, TrainingError, "cannot read checkpoint")
    keys = ("iteration", "train_seconds", "method", "architecture", "model", "optimizer", "generator")
    if any(key not in state for key in keys):
        raise TrainingError(f"{path}: not a checkpoint written by baselines.nerf.train")
    if state["method"] != method:
        raise TrainingError(f"{path}: the checkpoint is of method {state['method']!r}, not {method!r}")
    architecture = {name: getattr(settings, name) for name in ARCHITECTURE_FIELDS}
    if state["architecture"] != architecture:
        raise TrainingError(f"{path}: the checkpoint's model has {state['architecture']}, this run asks for "
                            f"{architecture}; pass the same settings to resume")
    return path, state


# ---- training and evaluation ----

def evaluate(model, test_infos, model_path, iteration, train_seconds, chunk, lpips_weights):
    """Render the test views (timed: one warm-up render, then each view; the speed is the median), save them as
    PNG with their ground truth, and write results.json and fps.json. Returns the fps.json contents."""
    device = next(model.parameters()).device
    cameras = ViewCameras(test_infos, device)
    base = os.path.join(model_path, "test", f"ours_{iteration}")
    for kind in ("renders", "gt"):
        os.makedirs(os.path.join(base, kind), exist_ok=True)
    model.render_view(cameras, 0, chunk)
    synchronize(device)
    seconds, pairs = [], {}
    for view, info in enumerate(tqdm(test_infos, desc="Rendering test views", leave=False)):
        started = time.perf_counter()
        image = model.render_view(cameras, view, chunk)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
        ground_truth = torch.from_numpy(info.image).permute(2, 0, 1)
        iio.imwrite(os.path.join(base, "renders", f"{view:05d}.png"), to_uint8(image))
        iio.imwrite(os.path.join(base, "gt", f"{view:05d}.png"), to_uint8(ground_truth))
        pairs[info.name] = (image.cpu(), ground_truth)
    per_view = metrics.evaluate_images(pairs, lpips_weights=lpips_weights)
    metrics.write_results(os.path.join(model_path, "results.json"), per_view, iteration, None, train_seconds)
    median = statistics.median(seconds)
    speed = {
        "iteration": iteration,
        "device": str(device),
        "render_resolution": f"{test_infos[0].width}x{test_infos[0].height}",
        "render_fps": 1.0 / median,
        "median_seconds": median,
        "seconds_per_view": seconds,
    }
    write_json(os.path.join(model_path, "fps.json"), speed)
    return speed


def build_model(scene_info, method, settings, device, ndc, white_background, seed):
    """The untrained model of a method for a scene (its initial weights depend on seed only) and its training
    pixels."""
    torch.manual_seed(seed)
    pixels = TrainingPixels(scene_info.train_cameras, device)
    train_cameras = ViewCameras(scene_info.train_cameras, device)
    space = RaySpace(scene_info.train_cameras, ndc, device)
    background = background_color(white_background, device)
    model = NeRFMethod(
        method, train_cameras, space, pixels.images, settings.net_depth, settings.net_width, settings.coarse_samples,
        settings.fine_samples, settings.kernel_points, settings.density_noise if ndc else 0.0, background,
    )
    return model.to(device), pixels


def train_baseline(source_path, model_path, method, device=None, resolution=1, seed=0, resume=False,
                   checkpoint_interval=DEFAULT_CHECKPOINT_INTERVAL, white_background=False, hold=None, ndc=None,
                   lpips_weights=None, progress=True, **setting_overrides):
    """Train method on the scene in source_path, then render and score its test views into model_path.

    device: "cpu" or "cuda" (default: cuda when available); it picks the preset settings, which keyword
    arguments named like Settings fields override (e.g. iterations=500). ndc: sample NDC rays (default: for
    scenes in the Deblur-NeRF layout, which are forward-facing). Returns {"iteration", "train_seconds",
    "results" (path of results.json), "speed" (the fps.json contents)}.
    """
    check_method(method)
    device = torch.device(device or default_device())
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BaselineInputError("--device cuda: no CUDA device is available; use --device cpu")
    settings = default_settings(device, **setting_overrides)
    if checkpoint_interval < 0:
        raise BaselineInputError(f"--checkpoint_interval must be 0 or positive, got {checkpoint_interval}")
    if not os.path.isdir(source_path):
        raise BaselineInputError(f"-s/--source_path: scene folder {source_path} not found")
    scene_info = load_scene_info(source_path, resolution, eval=True, hold=hold, white_background=white_background)
    if not scene_info.test_cameras:
        raise BaselineInputError(f"{source_path}: no test views to score (every hold-th view is one; check --hold)")
    if ndc is None:
        ndc = scene_info.source_kind == "deblur_nerf"

    model, pixels = build_model(scene_info, method, settings, device, ndc, white_background, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)

    first_iteration, train_seconds = 0, 0.0
    if resume:
        path, state = load_checkpoint(model_path, method, settings)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        first_iteration, train_seconds = state["iteration"], state["train_seconds"]
        logger.info(f"Resuming from {path} (iteration {first_iteration})")
    os.makedirs(model_path, exist_ok=True)

    def checkpoint(iteration):
        save_checkpoint(model_path, iteration, {
            "iteration": iteration,
            "train_seconds": train_seconds,
            "method": method,
            "architecture": {name: getattr(settings, name) for name in ARCHITECTURE_FIELDS},
            "settings": dataclasses.asdict(settings),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
        })

    bar = tqdm(range(first_iteration + 1, settings.iterations + 1), initial=first_iteration,
               total=settings.iterations, desc=f"Training {method}", disable=not progress)
    ema_loss = ema_psnr = None
    for iteration in bar:
        synchronize(device)
        started = time.perf_counter()
        learning_rate = settings.learning_rate * 0.1 ** (iteration / (DECAY_SPAN * settings.iterations))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        views, pixel_positions, colours = pixels.sample(settings.batch_rays, generator)
        coarse, fine, alignment_loss = model.training_colours(views, pixel_positions, generator)
        fine_error = torch.mean((fine - colours) ** 2)
        loss = torch.mean((coarse - colours) ** 2) + fine_error
        if alignment_loss is not None:
            loss = loss + ALIGNMENT_WEIGHT * alignment_loss
        loss_value = loss.item()
        if not np.isfinite(loss_value):
            raise TrainingError(f"the loss became {loss_value} at iteration {iteration}; lower --learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        train_seconds += time.perf_counter() - started

        psnr = -10.0 * np.log10(max(fine_error.item(), 1e-10))
        ema_loss = loss_value if ema_loss is None else 0.9 * ema_loss + 0.1 * loss_value
        ema_psnr = psnr if ema_psnr is None else 0.9 * ema_psnr + 0.1 * psnr
        if iteration % 10 == 0 or iteration == settings.iterations:
            bar.set_postfix(loss=f"{ema_loss:.5f}", psnr=f"{ema_psnr:.2f}", refresh=False)
        if checkpoint_interval and iteration % checkpoint_interval == 0 and iteration != settings.iterations:
            checkpoint(iteration)
    bar.close()
    if first_iteration < settings.iterations:
        checkpoint(settings.iterations)
    iteration = max(first_iteration, settings.iterations)
    speed = evaluate(model, scene_info.test_cameras, model_path, iteration, train_seconds, settings.chunk,
                     lpips_weights)
    return {"iteration": iteration, "train_seconds": train_seconds,
            "results": os.path.join(model_path, "results.json"), "speed": speed}


# ---- command line ----

def build_parser():
    parser = ArgumentParser(prog="python -m baselines.nerf.train",
                            description="Train a NeRF-based deblurring baseline and score its test views")
    parser.add_argument("-s", "--source_path", required=True, help="scene folder (Deblur-NeRF, COLMAP or "
                                                                     "NeRF-synthetic layout)")
    parser.add_argument("-m", "--model_path", default=None, help="output folder (default: output/<scene>-<method>)")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--resolution", "-r", type=int, default=1,
                        help="1, 2, 4 or 8: image downscale factor; a larger value: target width in pixels")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device(),
                        help="also picks the default settings: the papers' on cuda, a small model on cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in -m")
    parser.add_argument("--checkpoint_interval", type=int, default=DEFAULT_CHECKPOINT_INTERVAL,
                        help="write a checkpoint every this many iterations (0: only at the end)")
    parser.add_argument("--white_background", "-w", action="store_true")
    parser.add_argument("--hold", type=int, default=None, help="test-view spacing (default: the scene's hold=N)")
    parser.add_argument("--no_ndc", action="store_true",
                        help="sample world-space rays even for a forward-facing (Deblur-NeRF layout) scene")
    parser.add_argument("--lpips_weights", nargs="+", default=None, metavar="FILE",
                        help="local LPIPS AlexNet weights: one combined file, or the linear heads followed by the "
                             "AlexNet backbone (see metrics.LPIPS)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    presets = parser.add_argument_group("overrides of the device's preset settings")
    for field in dataclasses.fields(Settings):
        presets.add_argument(f"--{field.name}", type=field.type, default=None,
                             help=f"cpu: {getattr(CPU_SETTINGS, field.name)}, "
                                  f"cuda: {getattr(GPU_SETTINGS, field.name)}")
    return parser


def main(argv=None):
    configure_cli_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    model_path = args.model_path or os.path.join(
        "output", f"{os.path.basename(os.path.normpath(args.source_path))}-{args.method}"
    )
    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(Settings)}
    with report_user_errors(parser.prog):
        lpips_weights = metrics.lpips_weights_argument(args.lpips_weights)
        summary = train_baseline(
            args.source_path, model_path, args.method, device=args.device, resolution=args.resolution,
            seed=args.seed, resume=args.resume, checkpoint_interval=args.checkpoint_interval,
            white_background=args.white_background, hold=args.hold, ndc=False if args.no_ndc else None,
            lpips_weights=lpips_weights, progress=not args.quiet, **overrides,
        )
    with open(summary["results"]) as file:
        mean = json.load(file)["mean"]
    print(f"{model_path}: {summary['iteration']} iterations in {summary['train_seconds']:.1f} s; test views at "
          f"{summary['speed']['render_fps']:.3g} FPS ({summary['speed']['render_resolution']}); "
          f"PSNR {mean['deblur_nerf']['psnr']:.2f} (Deblur-NeRF protocol), {mean['3dgs']['psnr']:.2f} (3DGS)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
