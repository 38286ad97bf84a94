"""The main job on the built-in scene: Gaussian splatting deblurred by train.py's default defocus model (a thin lens
per photo) trained on the CPU from blurry photos, then scored on held-out sharp views.

    python demo.py [--out output/demo] [--iterations 1500] [--scene data/demo/tiny_defocus]

Generates the synthetic generator's tiny defocus scene unless it is already there, trains with the
synthetic_defocus preset and the default --blur_model on a compressed schedule, renders the sharp test views and
writes:

    OUT/results.json        PSNR / SSIM of the test views under both metric protocols (see metrics.py)
    OUT/test/renders, gt    our renders and the sharp ground truth of the test views
    OUT/comparisons         per test view: the nearest blurry training photo | our render | ground truth
    OUT/model               the trained model (point cloud, blur MLP, cfg_args), for render.py
"""

import os

# OpenMP threads that spin while they wait starve each other when other jobs share the cores (training ran
# about 25 times slower on a busy 2-core machine); waiting passively costs little on an idle one. This must be
# set before torch loads the OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import shutil
import time
from argparse import ArgumentParser

import cv2
import numpy as np
import torch

import metrics
from gaussian_renderer import render
from scene.dataset_readers import read_image
from scene.gaussian_model import GaussianModel
from scene.scene import Scene
from scene.synthetic import SHARP_IMAGES_FOLDER, generate_scene, preset_config
from training import TrainingOptions, run_training, training_options, with_cpu_scale
from utils.errors import report_user_errors
from utils.images import to_uint8
from utils.logs import configure_cli_logging

PRESET = "synthetic_defocus"
# Panels are enlarged so that the 160x120 views and their labels stay readable.
PANEL_ZOOM = 2
LABEL_HEIGHT = 22


def ensure_scene(folder, seed):
    """Generate the tiny defocus scene into folder unless a generated scene is already there."""
    if os.path.isfile(os.path.join(folder, "scene.json")):
        print(f"Scene: {folder}")
        return
    print(f"Generating the tiny defocus scene into {folder}")
    generate_scene(preset_config("tiny", "defocus", seed=seed), folder)


def demo_training_options(scene_folder: str, model_path: str, iterations: int, seed: int) -> TrainingOptions:
    """The preset's default model on a CPU-scale schedule of iterations, evaluated at the end."""
    explicit = {"source_path": scene_folder, "model_path": model_path, "eval": True, "config": PRESET,
                "device": "cpu", "seed": seed, "test_iterations": [iterations], "save_iterations": [iterations],
                "checkpoint_interval": 0}
    return training_options(with_cpu_scale(explicit, iterations))


def labelled_panel(image, label):
    """The image enlarged, under a black strip holding its label."""
    height, width = image.shape[:2]
    panel = cv2.resize(image, (width * PANEL_ZOOM, height * PANEL_ZOOM), interpolation=cv2.INTER_NEAREST)
    strip = np.zeros((LABEL_HEIGHT, panel.shape[1], 3), dtype=np.uint8)
    cv2.putText(strip, label, (4, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([strip, panel], axis=0)


def write_rgb(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


def nearest_camera(camera, cameras):
    return min(cameras, key=lambda other: float(torch.linalg.norm(other.camera_center - camera.camera_center)))


def input_blur_psnr(scene_folder, cameras):
    """Mean PSNR of the blurry training photos against their sharp truth: how blurred the inputs are."""
    values = []
    for camera in cameras:
        path = os.path.join(scene_folder, SHARP_IMAGES_FOLDER, camera.image_name)
        sharp = torch.from_numpy(read_image(path, background=None)).permute(2, 0, 1)
        values.append(float(metrics.psnr_per_channel(camera.ground_truth(), sharp)))
    return float(np.mean(values))


def evaluate_and_illustrate(scene_folder, options: TrainingOptions, out):
    """Render the test views of the trained model, score them into OUT/results.json and draw the comparisons;
    returns the mean scores."""
    dataset, pipe, model_path = options.model, options.pipeline, options.model_path
    with torch.no_grad():
        gaussians = GaussianModel(dataset.sh_degree, dataset.device)
        scene = Scene(dataset, gaussians, load_iteration=-1)
        iteration = scene.loaded_iter
        assert iteration is not None  # load_iteration=-1 reads the latest saved Gaussians
        background = torch.zeros(3)
        params = gaussians.render_params()
        pairs = {}
        for camera in scene.test_cameras:
            pairs[camera.image_name] = (render(camera, params, background, pipe.backend).image.clamp(0.0, 1.0),
                                        camera.ground_truth())
        per_view = metrics.evaluate_images(pairs)
    with open(os.path.join(model_path, f"results_{iteration}.json")) as file:
        train_seconds = json.load(file)["train_seconds"]
    metrics.write_results(os.path.join(out, "results.json"), per_view, iteration, gaussians.num_points,
                          train_seconds)

    for camera in scene.test_cameras:
        rendering, ground_truth = (to_uint8(image) for image in pairs[camera.image_name])
        write_rgb(os.path.join(out, "test", "renders", camera.image_name), rendering)
        write_rgb(os.path.join(out, "test", "gt", camera.image_name), ground_truth)
        # Test views have no blurry photo; the nearest training view's shows the input the model learned from.
        nearest = nearest_camera(camera, scene.train_cameras)
        scores = per_view[camera.image_name]["deblur_nerf"]
        panels = [
            labelled_panel(to_uint8(nearest.ground_truth()), f"blurry input (nearest view {nearest.image_name})"),
            labelled_panel(rendering, f"our sharp render, {scores['psnr']:.2f} dB"),
            labelled_panel(ground_truth, f"ground truth {camera.image_name}"),
        ]
        write_rgb(os.path.join(out, "comparisons", camera.image_name), np.concatenate(panels, axis=1))
    return metrics.mean_scores(per_view), input_blur_psnr(scene_folder, scene.train_cameras), gaussians.num_points


def main(argv=None):
    parser = ArgumentParser(description="Train Deblurring 3DGS (defocus) on the built-in scene and show the result")
    parser.add_argument("--out", default=os.path.join("output", "demo"), help="output folder")
    parser.add_argument("--scene", default=os.path.join("data", "demo", "tiny_defocus"),
                        help="scene folder; the tiny defocus scene is generated there if it holds no scene")
    parser.add_argument("--iterations", type=int, default=1500, help="training iterations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene and of training")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"--iterations must be positive, got {args.iterations}")

    configure_cli_logging()
    started = time.perf_counter()
    with report_user_errors("demo.py"):
        ensure_scene(args.scene, args.seed)
        model_path = os.path.join(args.out, "model")
        if os.path.isdir(model_path):
            shutil.rmtree(model_path)
        options = demo_training_options(args.scene, model_path, args.iterations, args.seed)
        run_training(options)
        mean, input_psnr, num_gaussians = evaluate_and_illustrate(args.scene, options, args.out)

    print()
    blur_model = options.blur.blur_model
    print(f"Deblurring 3DGS ({PRESET}, --blur_model {blur_model}, {args.iterations} iterations, "
          f"{num_gaussians} Gaussians) in {time.perf_counter() - started:.0f} s")
    print(f"  blurry training photos vs their sharp truth: {input_psnr:.2f} dB")
    for protocol in metrics.PROTOCOLS:
        print(f"  held-out sharp views [{protocol}]: PSNR {mean[protocol]['psnr']:.2f} dB, "
              f"SSIM {mean[protocol]['ssim']:.4f}")
    print(f"Results:     {os.path.join(args.out, 'results.json')}")
    print(f"Renders:     {os.path.join(args.out, 'test', 'renders')}")
    print(f"Comparisons: {os.path.join(args.out, 'comparisons')}")
    print(f"Model:       {model_path}  (python render.py -m {model_path})")


if __name__ == "__main__":
    main()
