"""Scene folders to cameras, images and initial points.

Three layouts are recognised, in this order, each read by its module in scene.readers:
- NeRF-synthetic (nerf_synthetic): transforms_train.json and transforms_test.json (Blender/OpenGL camera-to-world
  matrices).
- Deblur-NeRF (deblur_nerf): images/ and poses_bounds.npy, optionally sparse/0 and an empty file named hold=N.
- COLMAP (colmap): images/ and a sparse model in sparse/0 (binary or text).

Every camera comes out as a pinhole camera in the OpenCV convention (x right, y down, z forward) with pixel
centres at (i + 0.5, j + 0.5); distorted COLMAP cameras are undistorted on load.
"""

import numbers
import os
import re
from dataclasses import dataclass

import numpy as np

from scene.errors import DatasetError
from scene.readers.colmap import read_colmap
from scene.readers.deblur_nerf import read_poses_bounds
from scene.readers.nerf_synthetic import read_nerf_synthetic
from scene.readers.views import DOWNSCALE_FACTORS, BasicPointCloud, CameraInfo, read_image
from utils.geometry import camera_centre, camera_to_world_matrix

# The public face of scene loading: callers take the records, read_image and DatasetError from here too.
__all__ = ["BasicPointCloud", "CameraInfo", "DatasetError", "SceneInfo", "load_scene_info", "read_image",
           "scene_extent"]

DEFAULT_HOLD = 8
RANDOM_POINT_COUNT = 100_000
RANDOM_POINT_SEED = 0


@dataclass
class SceneInfo:
    train_cameras: list[CameraInfo]
    test_cameras: list[CameraInfo]
    point_cloud: BasicPointCloud
    scene_extent: float
    source_kind: str


def load_scene_info(
    source_path: str | os.PathLike, resolution: int = 1, eval: bool = True, hold: int | None = None,
    white_background: bool = False,
) -> SceneInfo:
    """Read the scene in source_path.

    resolution: 1, 2, 4 or 8 divide the image size; a larger value is a target width in pixels.
    eval: hold out test views (False trains on every view, as original 3DGS does).
    hold: for COLMAP and Deblur-NeRF scenes, every hold-th image (by name, starting with the first) is a test
    view; by default the scene's hold=N file decides, or 8.
    white_background: colour composited under transparent pixels.
    """
    check_resolution(resolution)
    source_path = os.fspath(source_path)
    if not os.path.isdir(source_path):
        raise DatasetError(f"{source_path}: scene folder not found")
    background = np.ones(3, np.float32) if white_background else np.zeros(3, np.float32)

    if os.path.isfile(os.path.join(source_path, "transforms_train.json")):
        source_kind = "nerf_synthetic"
        train_cameras, test_cameras = read_nerf_synthetic(source_path, resolution, background)
        if not eval:
            train_cameras, test_cameras = train_cameras + test_cameras, []
        point_cloud = None
    else:
        hold = scene_hold(source_path, hold)
        has_colmap_model = os.path.isdir(os.path.join(source_path, "sparse", "0"))
        if os.path.isfile(os.path.join(source_path, "poses_bounds.npy")):
            source_kind = "deblur_nerf"
            if has_colmap_model:
                # The Deblurring-3DGS release: COLMAP cameras, Deblur-NeRF's split over every image in images/.
                views, point_cloud = read_colmap(
                    source_path, resolution, background, os.path.join(source_path, "poses_bounds.npy")
                )
            else:
                views, point_cloud = read_poses_bounds(source_path, resolution, background), None
        elif has_colmap_model:
            source_kind = "colmap"
            views, point_cloud = read_colmap(source_path, resolution, background)
        else:
            raise DatasetError(
                f"{source_path}: unrecognised scene folder (expected transforms_train.json, poses_bounds.npy or "
                f"sparse/0 with images/; for your own photos put them in {os.path.join(source_path, 'input')} "
                f"and run python convert.py -s {source_path})"
            )
        if eval:
            train_cameras = [camera for index, camera in views if index % hold != 0]
            test_cameras = [camera for index, camera in views if index % hold == 0]
        else:
            train_cameras, test_cameras = [camera for _, camera in views], []

    if not train_cameras:
        raise DatasetError(f"{source_path}: no training views (hold out fewer test views with a larger hold)")
    if point_cloud is None:
        # Only training views lend their colours: the test views of Deblur-NeRF scenes are the sharp references.
        point_cloud = random_points_in_frusta(train_cameras, RANDOM_POINT_COUNT, RANDOM_POINT_SEED)
    return SceneInfo(train_cameras, test_cameras, point_cloud, scene_extent(train_cameras), source_kind)


def check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or not (
        resolution in DOWNSCALE_FACTORS or resolution > max(DOWNSCALE_FACTORS)
    ):
        raise DatasetError(
            f"resolution={resolution!r}: expected a downscale factor 1, 2, 4 or 8, or a target width in pixels "
            f"larger than 8"
        )


def scene_hold(source_path: str, hold: int | None) -> int:
    """The test-view spacing: the hold argument, else the scene's hold=N file, else 8."""
    if hold is not None:
        if isinstance(hold, bool) or not isinstance(hold, numbers.Integral) or int(hold) < 2:
            raise DatasetError(f"hold={hold!r}: expected an integer of at least 2")
        return int(hold)
    hold_files = [name for name in os.listdir(source_path) if name.startswith("hold=")]
    if not hold_files:
        return DEFAULT_HOLD
    if len(hold_files) > 1:
        raise DatasetError(f"{source_path}: several hold files ({', '.join(sorted(hold_files))}); keep one")
    match = re.fullmatch(r"hold=(\d+)", hold_files[0])
    if match is None or int(match.group(1)) < 2:
        raise DatasetError(
            f"{os.path.join(source_path, hold_files[0])}: a hold file must be named hold=N with an integer N >= 2"
        )
    return int(match.group(1))


# ---- initial points and normalisation ----

def random_points_in_frusta(cameras: list[CameraInfo], count: int, seed: int) -> BasicPointCloud:
    """Points spread over the cameras' view frusta between their near and far bounds, coloured by the pixel
    they were drawn through.

    Depths are uniform in inverse depth, as NeRF samples forward-facing scenes: a uniform depth would put almost
    every point near the far bound, where the scene is least detailed.
    """
    rng = np.random.default_rng(seed)
    camera_of_point = rng.integers(len(cameras), size=count)
    points = np.empty((count, 3), np.float32)
    colors = np.empty((count, 3), np.float32)
    for index, camera in enumerate(cameras):
        chosen = np.flatnonzero(camera_of_point == index)
        u = rng.uniform(0.0, camera.width, size=len(chosen))
        v = rng.uniform(0.0, camera.height, size=len(chosen))
        depth = 1.0 / rng.uniform(1.0 / camera.far, 1.0 / camera.near, size=len(chosen))
        camera_points = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], 1)
        camera_to_world = camera_to_world_matrix(camera.world_to_camera)
        points[chosen] = (camera_points * depth[:, None]) @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
        colors[chosen] = camera.image[v.astype(np.int64), u.astype(np.int64)]
    return BasicPointCloud(points, colors)


def scene_extent(cameras: list[CameraInfo]) -> float:
    """3DGS's normalisation radius: 1.1 times the largest distance of a camera centre from their mean."""
    centers = np.array([camera_centre(camera.world_to_camera) for camera in cameras])
    radius = 1.1 * np.linalg.norm(centers - centers.mean(axis=0), axis=1).max()
    # A single view (or views from one spot) has no spread; a unit radius keeps learning rates meaningful.
    return float(radius) if radius > 1e-6 else 1.0
