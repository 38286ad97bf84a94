"""Generates a blurred scene with known sharp ground truth and writes it in the Deblur-NeRF layout:

    images/            sharp test views (index % hold == 0) and blurred training views, in capture order
    images_sharp/      the sharp ground truth of the blurred training views, under the same names
    poses_bounds.npy   LLFF poses, [H, W, focal] and near/far bounds, one row per view
    sparse/0/          COLMAP text model: one PINHOLE camera, the poses and an SfM-like point cloud
    hold=N             empty file whose name sets the test split (N = config.hold, 8 by default)
    scene.json         every generation parameter and per-view draw, and the blur check of every view

Randomness is drawn from independent streams keyed by (seed, purpose, view, attempt), so a view's blur does
not depend on how many draws other views needed, and the same config always gives byte-identical files.
"""

import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from scene.colmap_model import ColmapCamera, ColmapImage, ColmapPoint3D, write_model
from scene.llff import save_poses_bounds
from utils.geometry import rotation_matrix_to_quaternion, world_to_camera_from_centre

from .camera import PinholeIntrinsics, apply_shake, forward_facing_arc, shake_trajectory
from .config import (
    LENS_BLUR_TYPES,
    OUT_OF_FAMILY_SCENES,
    SHAKING_BLUR_TYPES,
    SUITE_BLUR_TYPES,
    SyntheticSceneError,
    preset_config,
)
from .imaging import linear_to_srgb8, mean_gradient_magnitude, write_png
from .layouts import FOCUS_RANGE, LAYOUTS, NEAREST_OBJECT_DEPTH, build_scene
from .primitives import json_numbers
from .raycaster import Exposure, render, render_depth
from .sparse import sfm_like_points
from .textures import texture_library

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# The sharp truth of the blurred training views, under their names in images/.
SHARP_IMAGES_FOLDER = "images_sharp"
LAYOUT_STREAM, CAMERA_STREAM, SAMPLING_STREAM, BLUR_STREAM, POINT_STREAM = range(5)
# Bounds are widened beyond the depths the pinhole sees, since blur brings in light from just outside them.
BOUNDS_MARGIN = 0.1


def _random_stream(seed, stream, *keys):
    return np.random.default_rng([seed, stream, *keys])


def view_name(index):
    """Zero-padded to the 3 digits that config's 1000 views at most need, so sorting by name gives capture order."""
    return f"{index:03d}.png"


def draw_exposure(config, view_index, attempt, rotation, centre):
    """The blurred exposure of a training view (draw number `attempt`) and a JSON-ready record of its draw."""
    rng = _random_stream(config.seed, BLUR_STREAM, view_index, attempt)
    lens: dict[str, Any] = {}
    record: dict[str, object] = {}
    if config.blur in LENS_BLUR_TYPES:
        aperture = config.max_aperture * rng.uniform(0.5, 1.0)
        # Uniform in inverse depth: focused anywhere from the nearest objects to the middle distance.
        focus = 1.0 / rng.uniform(1.0 / FOCUS_RANGE[1], 1.0 / FOCUS_RANGE[0])
        lens = dict(aperture_radius=aperture, focus_distance=focus, aperture_blades=config.aperture_blades,
                    spherical_aberration=config.spherical_aberration)
        record.update(aperture_radius=round(aperture, 6), focus_distance=round(focus, 6))
        if config.aperture_blades:
            # A polygon looks the same turned by a whole blade.
            lens["aperture_rotation"] = rng.uniform(0.0, 2.0 * math.pi / config.aperture_blades)
            record["aperture_rotation_degrees"] = round(math.degrees(lens["aperture_rotation"]), 6)
    if config.blur not in SHAKING_BLUR_TYPES:
        return Exposure(rotation[None], centre[None], **lens), record
    rotation_amplitude = config.max_shake_rotation_degrees * rng.uniform(0.5, 1.0)
    translation_amplitude = config.max_shake_translation * rng.uniform(0.5, 1.0)
    rotation_vectors, translations = shake_trajectory(rng, config.num_subframes, math.radians(rotation_amplitude),
                                                      translation_amplitude, config.shake_path,
                                                      config.recorded_pose)
    rotations, centres = apply_shake(rotation, centre, rotation_vectors, translations)
    record.update(shake_rotation_degrees=round(rotation_amplitude, 6),
                  shake_translation=round(translation_amplitude, 6),
                  subframe_rotation_vectors=json_numbers(rotation_vectors, 8),
                  subframe_camera_translations=json_numbers(translations, 8))
    return Exposure(rotations, centres, **lens), record


def _blurred_view(config, scene, intrinsics, view_index, rotation, centre, sharp, log):
    """Renders a training view, redrawing its blur (with the next draw number) while it is too weak."""
    sharp_gradient = mean_gradient_magnitude(sharp)
    for attempt in range(config.max_blur_draws):
        exposure, record = draw_exposure(config, view_index, attempt, rotation, centre)
        blurred = linear_to_srgb8(render(scene, intrinsics, exposure, config.samples_per_pixel,
                                         [config.seed, SAMPLING_STREAM, view_index]))
        blurred_gradient = mean_gradient_magnitude(blurred)
        reduction = 1.0 - blurred_gradient / sharp_gradient if sharp_gradient > 0.0 else 0.0
        if reduction >= config.min_blur_reduction:
            record.update(blur_draws=attempt + 1, gradient_sharp=round(sharp_gradient, 6),
                          gradient_blurred=round(blurred_gradient, 6), gradient_reduction=round(reduction, 6))
            return blurred, record
        log(f"  {view_name(view_index)}: gradient only {100 * reduction:.1f}% below sharp after draw "
            f"{attempt + 1}, drawing again")
    raise SyntheticSceneError(
        f"view {view_name(view_index)} is not blurred enough: after {config.max_blur_draws} draws its mean gradient "
        f"is only {100 * reduction:.1f}% below its sharp ground truth (needs {100 * config.min_blur_reduction:.0f}%); "
        f"raise the blur strength or max_blur_draws")


def _describe_blur(record):
    parts = []
    if "aperture_radius" in record:
        parts.append(f"aperture {record['aperture_radius']:.3f} focus {record['focus_distance']:.2f}")
    if "shake_rotation_degrees" in record:
        parts.append(f"shake {record['shake_rotation_degrees']:.2f} deg {record['shake_translation']:.3f}")
    return "  ".join(parts)


def _check_output_folder(folder, overwrite):
    if not folder.exists():
        return
    if not folder.is_dir():
        raise SyntheticSceneError(f"output path {folder} exists and is not a folder")
    if not any(folder.iterdir()):
        return
    if not (folder / "scene.json").is_file():
        raise SyntheticSceneError(f"output folder {folder} is not empty and holds no generated scene; "
                                  f"choose another --out")
    if not overwrite:
        raise SyntheticSceneError(f"output folder {folder} already holds a generated scene; pass --overwrite "
                                  f"to replace it")


def _colmap_model(intrinsics, rotations, centres, points):
    cameras = {1: ColmapCamera(1, "PINHOLE", intrinsics.width, intrinsics.height,
                               np.array([intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy]))}
    # Index of each observation among the observations of its own image, which is what tracks refer to.
    point2d_index = np.empty(points.observation_view.size, np.int64)
    images = {}
    for index, (rotation, centre) in enumerate(zip(rotations, centres)):
        here = np.nonzero(points.observation_view == index)[0]
        point2d_index[here] = np.arange(here.size)
        world_to_camera = world_to_camera_from_centre(rotation, centre)
        images[index + 1] = ColmapImage(index + 1, rotation_matrix_to_quaternion(world_to_camera[:3, :3]),
                                        world_to_camera[:3, 3], 1, view_name(index), points.observation_xy[here],
                                        points.observation_point[here] + 1)
    track_starts = np.searchsorted(points.observation_point, np.arange(len(points.xyz) + 1))
    points3d = {}
    for index in range(len(points.xyz)):
        track = slice(track_starts[index], track_starts[index + 1])
        points3d[index + 1] = ColmapPoint3D(index + 1, points.xyz[index], points.rgb[index], float(points.error[index]),
                                            points.observation_view[track] + 1, point2d_index[track])
    return cameras, images, points3d


def _write_scene(folder, config, intrinsics, rotations, centres, images, sharp_images, bounds, points, record):
    (folder / "images").mkdir()
    (folder / SHARP_IMAGES_FOLDER).mkdir()
    for index, image in enumerate(images):
        write_png(folder / "images" / view_name(index), image)
    for name, image in sharp_images.items():
        write_png(folder / SHARP_IMAGES_FOLDER / name, image)
    camera_to_world = np.concatenate([rotations, centres[:, :, None]], axis=2)
    hwf = np.tile([float(intrinsics.height), float(intrinsics.width), intrinsics.fx], (len(images), 1))
    save_poses_bounds(folder / "poses_bounds.npy", camera_to_world, hwf, bounds)
    cameras, colmap_images, points3d = _colmap_model(intrinsics, rotations, centres, points)
    write_model(folder / "sparse" / "0", cameras, colmap_images, points3d, ext=".txt")
    (folder / f"hold={config.hold}").touch()
    with open(folder / "scene.json", "w", encoding="utf-8") as file:
        json.dump(record, file, indent=1)
        file.write("\n")


def _depth_bounds(depths):
    """Per-view [near, far] from the depths the pixel centres see."""
    finite = np.where(np.isfinite(depths), depths, np.nan).reshape(len(depths), -1)
    return np.stack([np.nanmin(finite, axis=1) * (1.0 - BOUNDS_MARGIN),
                     np.nanmax(finite, axis=1) * (1.0 + BOUNDS_MARGIN)], axis=1)


def _render_views(config, scene, intrinsics, rotations, centres, log):
    """Renders every view: (images in view order, sharp truth of the training views by name, view records)."""
    images, sharp_images, view_records = [], {}, []
    for index in range(config.num_views):
        name = view_name(index)
        sharp = linear_to_srgb8(render(scene, intrinsics, Exposure.pinhole(rotations[index], centres[index]),
                                       config.samples_per_pixel, [config.seed, SAMPLING_STREAM, index]))
        view_record = {"name": name, "world_to_camera": json_numbers(world_to_camera_from_centre(rotations[index],
                                                                                              centres[index]), 8)}
        if index % config.hold == 0:
            images.append(sharp)
            view_records.append(dict(view_record, split="test"))
            log(f"  {name} test   sharp")
            continue
        blurred, blur_record = _blurred_view(config, scene, intrinsics, index, rotations[index], centres[index],
                                             sharp, log)
        images.append(blurred)
        sharp_images[name] = sharp
        view_records.append(dict(view_record, split="train", **blur_record))
        log(f"  {name} train  {_describe_blur(blur_record)}  gradient {blur_record['gradient_sharp']:.4f} -> "
            f"{blur_record['gradient_blurred']:.4f} ({-100 * blur_record['gradient_reduction']:.0f}%)")
    return np.stack(images), sharp_images, view_records


def generate_scene(config, out_dir, overwrite=False, log=logger.info):
    """Renders and writes the scene that config describes into out_dir; returns the scene.json record.

    The scene is written to a temporary sibling folder and moved into place at the end, so an interrupted
    run never leaves a half-written scene behind. Raises SyntheticSceneError for an unusable out_dir or a
    training view whose blur stays under config.min_blur_reduction after config.max_blur_draws draws. log takes
    each progress line (by default this module's logger, at INFO).
    """
    out_dir = Path(out_dir)
    _check_output_folder(out_dir, overwrite)
    started = time.perf_counter()
    textures = texture_library()
    scene = build_scene(config.layout, textures, _random_stream(config.seed, LAYOUT_STREAM))
    intrinsics = PinholeIntrinsics.from_field_of_view(config.width, config.height, config.horizontal_fov_degrees)
    rotations, centres = forward_facing_arc(config.num_views, _random_stream(config.seed, CAMERA_STREAM))
    log(f"{config.layout} / {config.blur}: {config.num_views} views of {config.width}x{config.height}, "
        f"{config.samples_per_pixel} samples per pixel")
    images, sharp_images, view_records = _render_views(config, scene, intrinsics, rotations, centres, log)

    depths = np.stack([render_depth(scene, intrinsics, rotation, centre)
                       for rotation, centre in zip(rotations, centres)])
    points = sfm_like_points(intrinsics, rotations, centres, images, depths, config.num_points, NEAREST_OBJECT_DEPTH,
                             _random_stream(config.seed, POINT_STREAM))
    reductions = [view["gradient_reduction"] for view in view_records if view["split"] == "train"]
    record = {
        "generator": "scene.synthetic",
        "format_version": FORMAT_VERSION,
        "config": config.as_dict(),
        "intrinsics": {"fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy,
                       "width": intrinsics.width, "height": intrinsics.height},
        "focus_range": list(FOCUS_RANGE),
        "primitives": [primitive.describe() for primitive in scene.primitives],
        "blur_check": {"measure": "mean gradient magnitude of the 8-bit grey image, blurred vs its sharp truth",
                       "required_reduction": config.min_blur_reduction,
                       "min_reduction": round(min(reductions), 6),
                       "mean_reduction": round(float(np.mean(reductions)), 6)},
        "num_points": int(len(points.xyz)),
        "num_observations": int(points.observation_point.size),
        "views": view_records,
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)
        _write_scene(staging, config, intrinsics, rotations, centres, images, sharp_images, _depth_bounds(depths),
                     points, record)
        _check_output_folder(out_dir, overwrite)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log(f"wrote {out_dir}: {len(points.xyz)} points, blur reduction min {100 * min(reductions):.0f}% "
        f"mean {100 * np.mean(reductions):.0f}%, {time.perf_counter() - started:.1f} s")
    return record


def suite_configs(preset="bench", seed=0):
    """The suite's scenes by folder name: every layout with each of SUITE_BLUR_TYPES (<layout>_<blur>), then the
    scenes of OUT_OF_FAMILY_SCENES."""
    configs = {f"{layout}_{blur}": preset_config(preset, blur, layout=layout, seed=seed)
               for layout in LAYOUTS for blur in SUITE_BLUR_TYPES}
    configs.update({name: preset_config(preset, seed=seed, **fields) for name, fields in OUT_OF_FAMILY_SCENES.items()})
    return configs


def generate_suite(out_root, preset="bench", seed=0, overwrite=False, log=logger.info):
    """Generates the scenes of suite_configs into out_root/<name>/. A scene whose scene.json already records the
    same config is kept as it is (unless overwrite), so re-running only fills gaps."""
    out_root = Path(out_root)
    for name, config in suite_configs(preset, seed).items():
        folder = out_root / name
        if not overwrite and _holds_scene_of(folder, config):
            log(f"{folder} is up to date")
            continue
        generate_scene(config, folder, overwrite=True, log=log)


def _holds_scene_of(folder, config):
    try:
        with open(folder / "scene.json", encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, ValueError):
        return False
    return record.get("format_version") == FORMAT_VERSION and record.get("config") == config.as_dict()
