"""Training speed: iterations per second of vanilla 3DGS and of the two blur models, and where the time goes.

    python bench/train_speed.py [--device cpu|cuda] [--iterations 300] [--warmup 20] [--runs vanilla defocus motion]
                                [--data data/bench] [--layout gallery | --source SCENE] [--train_args "..."]
                                [--json output/bench/train_speed.json]

Each run is the training loop (training.train_gaussians) with train.py's default options for that --blur
("vanilla" is --blur none, "defocus" --blur defocus, "motion" --blur motion), on a 400x300 scene of the synthetic
benchmark suite:
<data>/<layout>_defocus for vanilla and defocus, <data>/<layout>_motion for motion, generated first where missing
(the scenes of `python -m scene.synthetic --suite bench`). --source trains every run on one scene folder instead.
After --warmup iterations, --iterations are timed phase by phase as utils.phase_timer describes (on CUDA with
events, so that timing adds no synchronisation). Nothing is saved or evaluated. Prints a table of milliseconds per
iteration by phase and writes the results as JSON.
"""

import os

# OpenMP threads that spin while they wait starve each other when other jobs share the cores; see demo.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import json
import shlex
import sys
import tempfile
from argparse import ArgumentParser

import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

from scene.synthetic import generate_scene, preset_config
from training import explicit_options, layered_values, train_gaussians, training_options
from training.options import SCHEDULE_OPTIONS
from utils.atomic_file import atomic_write
from utils.errors import report_user_errors
from utils.logs import configure_cli_logging
from utils.phase_timer import (
    BLUR_MODEL,
    DENSIFICATION,
    LOSS,
    OPTIMIZER_STEP,
    OTHER,
    PHASES,
    RASTERIZER_BACKWARD,
    RASTERIZER_FORWARD,
    PhaseTimer,
)

RUN_BLUR = {"vanilla": "none", "defocus": "defocus", "motion": "motion"}
# Vanilla trains on the defocus scene: it has no blur model, and any blurry photo costs it the same.
RUN_SCENE_BLUR = {"vanilla": "defocus", "defocus": "defocus", "motion": "motion"}
SCENE_PRESET = "bench"
PHASE_LABELS = {RASTERIZER_FORWARD: "rast fwd", RASTERIZER_BACKWARD: "rast bwd", BLUR_MODEL: "blur", LOSS: "loss",
                OPTIMIZER_STEP: "optim", DENSIFICATION: "densify", OTHER: "other"}


def scene_folder(data, layout, blur):
    """<data>/<layout>_<blur>, generated first when it holds no scene."""
    folder = os.path.join(data, f"{layout}_{blur}")
    if not os.path.isfile(os.path.join(folder, "scene.json")):
        print(f"generating {folder} (python -m scene.synthetic --suite {SCENE_PRESET} makes the same scene)",
              file=sys.stderr)
        generate_scene(preset_config(SCENE_PRESET, blur, layout=layout), folder, log=lambda message: None)
    return folder


def timed_training(source, blur, device, iterations, warmup, train_args=(), seed=0):
    """Training with train.py's options for --blur blur and train_args (command-line tokens), timed by a PhaseTimer
    after warmup iterations, saving and evaluating nothing; returns the timer, the trained GaussianModel and its
    Scene."""
    with tempfile.TemporaryDirectory() as model_path:
        explicit = {"source_path": source, "model_path": model_path, "blur": blur, "device": device, "seed": seed}
        extra = explicit_options(train_args)
        # The schedule of a whole run, chosen explicitly so that this short one is not compressed to its length: the
        # timed iterations are those of a run's densifying start.
        full = layered_values({**explicit, **extra})
        explicit.update({name: full[name] for name in SCHEDULE_OPTIONS})
        options = training_options({**explicit, **extra, "iterations": warmup + iterations})
        # Nothing is saved, scored or checkpointed: only the training step is timed.
        nothing: frozenset[int] = frozenset()
        options = dataclasses.replace(options, run=dataclasses.replace(
            options.run, test_iterations=nothing, save_iterations=nothing, checkpoint_iterations=nothing,
            checkpoint_interval=0))
        timer = PhaseTimer(device, first_timed_iteration=warmup + 1)
        trained = train_gaussians(options, timer=timer)
    return timer, trained.gaussians, trained.scene


def measure(run_name, source, device, iterations, warmup, train_args):
    """Train one run; returns its result record."""
    timer, gaussians, scene = timed_training(source, RUN_BLUR[run_name], device, iterations, warmup, train_args)
    camera = scene.train_cameras[0]
    summary = timer.summary()
    phase_ms = {name: 1000.0 * seconds / summary["iterations"] for name, seconds in summary["phase_seconds"].items()}
    rasterizer_ms = phase_ms[RASTERIZER_FORWARD] + phase_ms[RASTERIZER_BACKWARD]
    iteration_ms = 1000.0 * summary["seconds"] / summary["iterations"]
    return {
        "run": run_name,
        "blur": RUN_BLUR[run_name],
        "scene": source,
        "resolution": f"{camera.width}x{camera.height}",
        "num_gaussians": gaussians.num_points,
        "iterations": summary["iterations"],
        "warmup": warmup,
        "iterations_per_second": summary["iterations_per_second"],
        "iteration_ms": iteration_ms,
        "phase_ms": phase_ms,
        "outside_rasterizer_fraction": 1.0 - rasterizer_ms / iteration_ms,
    }


def device_name(device):
    return torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def print_table(results):
    print(f"{'run':8s} {'it/s':>6s} {'ms/it':>7s} " + " ".join(f"{PHASE_LABELS[name]:>8s}" for name in PHASES)
          + f" {'outside rast':>12s} {'Gaussians':>9s}")
    for r in results:
        print(f"{r['run']:8s} {r['iterations_per_second']:6.2f} {r['iteration_ms']:7.1f} "
              + " ".join(f"{r['phase_ms'][name]:8.2f}" for name in PHASES)
              + f" {100 * r['outside_rasterizer_fraction']:11.0f}% {r['num_gaussians']:9d}")
    print("(phases in ms per iteration; 'outside rast' is the share of the iteration outside the rasterizer's "
          "forward and backward)")


def main(argv=None):
    parser = ArgumentParser(description="Training iterations per second and their time by phase")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=300, help="timed iterations per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed iterations before them")
    parser.add_argument("--runs", nargs="+", choices=tuple(RUN_BLUR), default=list(RUN_BLUR))
    parser.add_argument("--data", default=os.path.join("data", "bench"), help="folder of the benchmark suite")
    parser.add_argument("--layout", default="gallery", help="layout of the suite's scenes to train on")
    parser.add_argument("--source", default=None, help="train every run on this scene folder instead")
    parser.add_argument("--train_args", default="", help="extra train.py options for every run, e.g. \"--sh_degree 1\"")
    parser.add_argument("--json", default=os.path.join("output", "bench", "train_speed.json"),
                        help="write the results here")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.warmup < 0:
        parser.error("--iterations must be positive and --warmup at least 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.source is not None and not os.path.isdir(args.source):
        parser.error(f"--source: {args.source} is not a folder")

    configure_cli_logging()
    results = []
    with report_user_errors("bench/train_speed.py"):
        for run_name in args.runs:
            source = args.source or scene_folder(args.data, args.layout, RUN_SCENE_BLUR[run_name])
            print(f"=== {run_name}: {args.warmup} + {args.iterations} iterations on {source}", file=sys.stderr)
            results.append(measure(run_name, source, args.device, args.iterations, args.warmup,
                                   shlex.split(args.train_args)))
    print_table(results)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    settings = {"device": device_name(args.device), "iterations": args.iterations, "warmup": args.warmup,
                "torch": torch.__version__, "train_args": args.train_args}
    with atomic_write(args.json, "w") as file:
        json.dump({"settings": settings, "results": results}, file, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
