"""Train and score the NeRF baselines on scenes: one row per (scene, method), for the deblurring benchmark.

    python -m baselines.nerf.benchmark data/scene [data/scene2 ...] [--methods nerf deblurnerf dpnerf dynamic]
        [--iterations N] [--device cpu|cuda] [--out output/nerf_benchmark] [--json PATH]

Prints a markdown table and writes the rows as JSON (default: <out>/nerf_benchmark.json).
"""

import json
import os
import sys
from argparse import ArgumentParser

from arguments import default_device
from baselines.nerf.method import METHODS, BaselineInputError, check_method
from baselines.nerf.train import train_baseline, write_json
from utils.errors import report_user_errors
from utils.logs import configure_cli_logging

# Deblur-NeRF's scene folders are named after their blur: defocus<name> and blur<name> (camera motion).
FOLDER_PREFIXES = (("defocus", "defocus"), ("blur", "motion"))


def benchmark_rows(scene_dir, blur, methods, iterations, device, out_root, **train_options):
    """Train each method on scene_dir into out_root/<scene>/<method> and score its test views.

    Returns one row per method: {"scene", "blur", "method", "iterations", "train_seconds", "render_fps",
    "render_resolution" ("WxH"), "num_gaussians" (None), "metrics"}, where metrics holds the mean scores of both
    protocols (metrics.mean_scores). iterations None keeps the device's preset; train_options go to
    baselines.nerf.train.train_baseline (e.g. resolution, seed, batch_rays, progress).
    """
    for method in methods:
        check_method(method)
    if not methods:
        raise BaselineInputError("benchmark_rows: no methods given")
    scene = os.path.basename(os.path.normpath(scene_dir))
    rows = []
    for method in methods:
        summary = train_baseline(scene_dir, os.path.join(out_root, scene, method), method, device=device,
                                 iterations=iterations, **train_options)
        with open(summary["results"]) as file:
            mean = json.load(file)["mean"]
        rows.append({
            "scene": scene,
            "blur": blur,
            "method": method,
            "iterations": summary["iteration"],
            "train_seconds": summary["train_seconds"],
            "render_fps": summary["speed"]["render_fps"],
            "render_resolution": summary["speed"]["render_resolution"],
            "num_gaussians": None,
            "metrics": mean,
        })
    return rows


def scene_blur(scene_dir):
    """The blur of a scene: from the scene.json of scene.synthetic, else from Deblur-NeRF's folder names."""
    description = os.path.join(scene_dir, "scene.json")
    if os.path.isfile(description):
        try:
            with open(description) as file:
                return json.load(file)["config"]["blur"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BaselineInputError(f"{description}: no config.blur entry ({error}); pass --blur") from None
    name = os.path.basename(os.path.normpath(scene_dir))
    for prefix, blur in FOLDER_PREFIXES:
        if name.startswith(prefix):
            return blur
    raise BaselineInputError(f"{scene_dir}: cannot tell its blur (no scene.json, and the folder name starts with "
                             f"neither 'defocus' nor 'blur'); pass --blur")


def number(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(rows):
    lines = [
        "| scene | blur | method | iterations | PSNR | SSIM | LPIPS | PSNR (3DGS) | train s | render FPS "
        "| resolution |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        deblur_nerf, gaussian = row["metrics"]["deblur_nerf"], row["metrics"]["3dgs"]
        lines.append(
            f"| {row['scene']} | {row['blur']} | {row['method']} | {row['iterations']} | "
            f"{number(deblur_nerf['psnr'], 2)} | {number(deblur_nerf['ssim'], 3)} | "
            f"{number(deblur_nerf['lpips'], 3)} | "
            f"{number(gaussian['psnr'], 2)} | {row['train_seconds']:.0f} | {row['render_fps']:.3g} | "
            f"{row['render_resolution']} |"
        )
    lines.append("")
    lines.append("PSNR, SSIM and LPIPS follow the Deblur-NeRF protocol (per-channel PSNR, scikit-image SSIM); "
                 "PSNR (3DGS) is the global PSNR of 3DGS papers.")
    return "\n".join(lines)


def main(argv=None):
    configure_cli_logging()
    parser = ArgumentParser(prog="python -m baselines.nerf.benchmark",
                            description="Train and score the NeRF baselines on one or more scenes")
    parser.add_argument("scenes", nargs="+", help="scene folders")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--blur", default=None,
                        help="blur label of every scene (default: from scene.json or the folder name)")
    parser.add_argument("--iterations", type=int, default=None, help="default: the device's preset")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device())
    parser.add_argument("--resolution", "-r", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("output", "nerf_benchmark"),
                        help="folder of the trained models")
    parser.add_argument("--json", default=None, help="where to write the rows (default: <out>/nerf_benchmark.json)")
    args = parser.parse_args(argv)
    rows = []
    with report_user_errors(parser.prog):
        blurs = [args.blur or scene_blur(scene) for scene in args.scenes]
        for scene, blur in zip(args.scenes, blurs):
            rows += benchmark_rows(scene, blur, args.methods, args.iterations, args.device, args.out,
                                   resolution=args.resolution, seed=args.seed)
    path = args.json or os.path.join(args.out, "nerf_benchmark.json")
    write_json(path, rows)
    print(markdown_table(rows))
    print(f"\nrows written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
