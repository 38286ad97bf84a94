"""Render a trained model: its train and test views, a camera-path video, and its rendering speed; or view it
interactively in the browser.

    python render.py -m output/run [--iteration N] [--skip_train] [--skip_test] [--video] [--fps-only]
    python render.py -m output/run --view [--port 8080] [--watch]
"""

import json
import os
from argparse import ArgumentParser, Namespace
from typing import Any

import imageio
import imageio.v3 as iio
import numpy as np
import torch
from tqdm import tqdm

from arguments import ModelParams, PipelineParams, default_device, read_cfg_args
from gaussian_renderer import render
from gaussian_renderer.speed import measure_fps
from scene.camera_paths import video_cameras
from scene.gaussian_model import GaussianModel
from scene.scene import Scene
from utils.atomic_file import atomic_write
from utils.errors import report_user_errors
from utils.images import background_color, to_uint8
from utils.logs import configure_cli_logging
from viewer import Viewer, load_viewer_scene


def render_set(model_path, split, iteration, cameras, gaussians, background, backend):
    base = os.path.join(model_path, split, f"ours_{iteration}")
    folders = {kind: os.path.join(base, kind) for kind in ("renders", "gt", "side_by_side")}
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    params = gaussians.render_params()
    for index, camera in enumerate(tqdm(cameras, desc=f"Rendering {split} views")):
        rendering = to_uint8(render(camera, params, background, backend).image)
        ground_truth = to_uint8(camera.ground_truth())
        name = f"{index:05d}.png"
        iio.imwrite(os.path.join(folders["renders"], name), rendering)
        iio.imwrite(os.path.join(folders["gt"], name), ground_truth)
        iio.imwrite(os.path.join(folders["side_by_side"], name), np.concatenate([rendering, ground_truth], axis=1))


def render_video(path, cameras, gaussians, background, backend, fps):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = gaussians.render_params()
    with imageio.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", macro_block_size=2) as writer:
        for camera in tqdm(cameras, desc="Video"):
            frame = to_uint8(render(camera, params, background, backend).image)
            # imageio's stubs type the writer that `with` gives as the base class, which lacks append_data.
            writer.append_data(frame)  # type: ignore[attr-defined]


# ---- speed ----------------------------------------------------------------------------------------------------------


def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# ---- command line ---------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = ArgumentParser(description="Render a trained model's views, a camera-path video and its FPS")
    # Options left out on the command line keep the values train.py stored in <model>/cfg_args.
    ModelParams(parser, suppress_defaults=True)
    PipelineParams(parser, suppress_defaults=True)
    parser.add_argument("--iteration", type=int, default=-1, help="saved iteration to render; -1: the latest")
    parser.add_argument("--skip_train", action="store_true", help="do not render the training views")
    parser.add_argument("--skip_test", action="store_true", help="do not render the test views")
    parser.add_argument("--video", action="store_true", help="render a smooth camera path to MP4")
    parser.add_argument("--video_frames", type=int, default=120, help="frames of the camera-path video")
    parser.add_argument("--video_fps", type=int, default=30, help="frame rate of the camera-path video")
    parser.add_argument("--fps-only", "--fps_only", dest="fps_only", action="store_true",
                        help="only measure the rendering speed")
    parser.add_argument("--fps_warmup", type=int, default=10, help="untimed frames before measuring")
    parser.add_argument("--fps_frames", type=int, default=100, help="timed frames; the median is reported")
    parser.add_argument("--view", action="store_true",
                        help="instead of rendering files, serve an interactive viewer on 127.0.0.1 until Ctrl+C")
    parser.add_argument("--port", type=int, default=8080,
                        help="viewer port (the next free one if taken; 0: any free port)")
    parser.add_argument("--watch", action="store_true",
                        help="viewer: show each newer point cloud or checkpoint as training writes it")
    args = parser.parse_args(argv)
    if "model_path" not in args or not args.model_path:
        parser.error("-m/--model_path is required")
    for name in ("video_frames", "video_fps", "fps_frames"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.fps_warmup < 0:
        parser.error(f"--fps_warmup must be 0 or positive, got {args.fps_warmup}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be between 0 and 65535, got {args.port}")
    if args.watch and not args.view:
        parser.error("--watch only applies to the viewer: add --view")
    if args.watch and args.iteration != -1:
        parser.error("--watch follows the newest snapshot; leave out --iteration")
    if getattr(args, "device", None) == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available; use --device cpu")
    return args


def stored_settings(args):
    """ModelParams and PipelineParams of the trained model, overridden by the options given on the command line."""
    stored = read_cfg_args(args.model_path)
    merged = Namespace(**{**vars(stored), **vars(args)})
    dataset = ModelParams.extract(merged)
    pipe = PipelineParams.extract(merged)
    # Render where this machine can, not where the model happened to be trained.
    dataset.device = getattr(args, "device", default_device())
    return dataset, pipe


def viewing(args):
    dataset, pipe = stored_settings(args)
    # Everything is loaded and checked before the server starts, so that a bad model folder serves nothing.
    scene = load_viewer_scene(dataset, pipe.backend, args.iteration)
    viewer = Viewer(scene, port=args.port, watch=args.watch)
    try:
        if args.port not in (0, viewer.port):
            print(f"Port {args.port} is taken: using {viewer.port}")
        print(f"Viewing {scene.model.snapshot.describe()} of {scene.model_path} ({scene.model.num_points} Gaussians)"
              + (", reloading as training saves" if args.watch else ""))
        print(f"Open {viewer.url} in a browser; Ctrl+C stops the viewer", flush=True)
        viewer.wait_until_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()


def rendering(args):
    dataset, pipe = stored_settings(args)
    device = torch.device(dataset.device)

    with torch.no_grad():
        gaussians = GaussianModel(dataset.sh_degree, device)
        scene = Scene(dataset, gaussians, load_iteration=args.iteration)
        iteration = scene.loaded_iter
        background = background_color(dataset.white_background, device)
        print(f"Loaded {gaussians.num_points} Gaussians saved at iteration {iteration} from {args.model_path}")

        if not args.fps_only:
            if not args.skip_train:
                render_set(args.model_path, "train", iteration, scene.train_cameras, gaussians, background,
                           pipe.backend)
            if not args.skip_test and scene.test_cameras:
                render_set(args.model_path, "test", iteration, scene.test_cameras, gaussians, background,
                           pipe.backend)
            if args.video:
                path = os.path.join(args.model_path, "video", f"ours_{iteration}.mp4")
                cameras = video_cameras(scene.train_cameras, args.video_frames, device)
                render_video(path, cameras, gaussians, background, pipe.backend, args.video_fps)
                print(f"Video written to {path}")

        views = scene.test_cameras or scene.train_cameras
        speed: dict[str, Any] = measure_fps(views, gaussians.render_params(), background, pipe.backend, device,
                                            args.fps_warmup, args.fps_frames)
        speed.update(
            iteration=iteration,
            width=views[0].width,
            height=views[0].height,
            num_gaussians=gaussians.num_points,
            device=device_name(device),
            backend=device.type if pipe.backend == "auto" else pipe.backend,
            views="test" if scene.test_cameras else "train",
        )
        with atomic_write(os.path.join(args.model_path, "fps.json"), "w") as file:
            json.dump(speed, file, indent=2)
        print(
            f"Rendering speed: {speed['fps']:.1f} FPS (median of {speed['timed_frames']} frames, "
            f"{speed['width']}x{speed['height']}, {speed['num_gaussians']} Gaussians, {speed['device']})"
        )


def main(argv=None):
    configure_cli_logging()
    args = parse_args(argv)
    with report_user_errors("render.py"):
        if args.view:
            viewing(args)
        else:
            rendering(args)


if __name__ == "__main__":
    main()
