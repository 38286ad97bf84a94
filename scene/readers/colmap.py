"""The COLMAP layout: images/ and a sparse model in sparse/0 (binary or text), distorted cameras undistorted on
load."""

import logging
import os
from functools import lru_cache

import cv2
import numpy as np

from scene.colmap_model import ColmapCamera, model_extension, read_model
from scene.errors import DatasetError
from scene.llff import load_poses_bounds
from scene.readers.deblur_nerf import check_image_count
from scene.readers.views import BasicPointCloud, CameraInfo, downscaled_copy, list_images, load_view_image
from utils.geometry import quaternion_to_rotation_matrix, world_to_camera_matrix

logger = logging.getLogger(__name__)

# Camera models whose lens distortion cv2 models exactly, by their COLMAP parameter layout.
DISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV")
# Gaussians start sized by the spacing of their SfM point to its nearest neighbours, so a point needs another one.
MIN_SFM_POINTS = 2

# (fx, fy, cx, cy, OpenCV distortion coefficients or None)
Intrinsics = tuple[float, float, float, float, np.ndarray | None]


def colmap_intrinsics(camera: ColmapCamera, model_folder: str) -> Intrinsics:
    """(fx, fy, cx, cy, OpenCV distortion coefficients or None) of a COLMAP camera."""
    params = camera.params
    if camera.model == "SIMPLE_PINHOLE":
        return params[0], params[0], params[1], params[2], None
    if camera.model == "PINHOLE":
        return params[0], params[1], params[2], params[3], None
    if camera.model == "SIMPLE_RADIAL":
        return params[0], params[0], params[1], params[2], np.array([params[3], 0.0, 0.0, 0.0])
    if camera.model == "RADIAL":
        return params[0], params[0], params[1], params[2], np.array([params[3], params[4], 0.0, 0.0])
    if camera.model == "OPENCV":
        return params[0], params[1], params[2], params[3], np.array(params[4:8])
    raise DatasetError(
        f"{model_folder}: camera {camera.id} uses the {camera.model} model, which is not supported (supported: "
        f"PINHOLE, SIMPLE_PINHOLE, and {', '.join(DISTORTED_MODELS)}, undistorted on load); undistort the images "
        f"first, e.g. with colmap image_undistorter, or run python convert.py on the original photos"
    )


@lru_cache(maxsize=2)
def undistortion(fx: float, fy: float, cx: float, cy: float, distortion: tuple[float, ...], width: int,
                 height: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float, float]]:
    """Remap tables and pinhole intrinsics (fx, fy, cx, cy) of the undistorted image, of the same size, framed so
    that every output pixel sees the scene (no black borders to learn)."""
    # cv2 puts pixel centres at integer coordinates, half a pixel away from ours.
    matrix = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    coefficients = np.array(distortion)
    new_matrix, _ = cv2.getOptimalNewCameraMatrix(matrix, coefficients, (width, height), 0.0, (width, height))
    map_x, map_y = cv2.initUndistortRectifyMap(matrix, coefficients, None, new_matrix, (width, height), cv2.CV_32FC1)
    intrinsics = (new_matrix[0, 0], new_matrix[1, 1], new_matrix[0, 2] + 0.5, new_matrix[1, 2] + 0.5)
    return map_x, map_y, intrinsics


def pinhole_view(intrinsics: Intrinsics, image: np.ndarray,
                 scale: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Intrinsics (from colmap_intrinsics) scaled to image, and the image undistorted when they include lens
    distortion."""
    fx, fy, cx, cy, distortion = intrinsics
    fx, fy, cx, cy = fx * scale[0], fy * scale[1], cx * scale[0], cy * scale[1]
    if distortion is None or not distortion.any():
        return image, (fx, fy, cx, cy)
    map_x, map_y, pinhole = undistortion(fx, fy, cx, cy, tuple(distortion), image.shape[1], image.shape[0])
    undistorted = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return undistorted, pinhole


def depth_bounds(world_to_camera: np.ndarray, points: np.ndarray) -> tuple[float, float] | None:
    """Near and far depth of the points in front of the camera (0.1 and 99.9 percentiles, as LLFF does)."""
    depths = points @ world_to_camera[:3, :3].T[:, 2] + world_to_camera[2, 3]
    depths = depths[depths > 0]
    if len(depths) == 0:
        return None
    near, far = np.percentile(depths, [0.1, 99.9])
    return float(near), float(max(far, near * 1.01))


def read_colmap(
    source_path: str, resolution: int, background: np.ndarray, poses_path: str | None = None,
) -> tuple[list[tuple[int, CameraInfo]], BasicPointCloud]:
    """Views as (split index, CameraInfo) and the SfM points of source_path/sparse/0.

    The split index is the place in name order among the registered images or, given the poses_bounds.npy of a
    Deblur-NeRF scene (poses_path), among all the images in images/, one per row of that file; images COLMAP did not
    register are then skipped with a warning.
    """
    model_folder = os.path.join(source_path, "sparse", "0")
    cameras, images, points3d = read_model(model_folder)
    if not images:
        raise DatasetError(f"{model_folder}: the COLMAP model has no registered images")
    if len(points3d) < MIN_SFM_POINTS:
        raise DatasetError(
            f"{os.path.join(model_folder, 'points3D' + model_extension(model_folder))}: only {len(points3d)} 3D "
            f"point(s), and the initial Gaussians need at least {MIN_SFM_POINTS} (re-run the reconstruction, e.g. "
            f"python convert.py)"
        )
    by_name = {image.name: image for image in images.values()}
    if poses_path is None:
        split_names = sorted(by_name)
    else:
        split_names = list_images(source_path)
        check_image_count(poses_path, len(load_poses_bounds(poses_path)[0]), source_path, split_names, by_name)
        missing = [name for name in split_names if name not in by_name]
        if missing:
            logger.warning(f"{model_folder}: images without a COLMAP pose are skipped: {', '.join(missing)}")

    point_ids = np.array(list(points3d), dtype=np.int64)
    xyz = np.array([point.xyz for point in points3d.values()], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([point.rgb for point in points3d.values()], dtype=np.float32).reshape(-1, 3)
    row_of_id = dict(zip(point_ids.tolist(), range(len(point_ids))))
    intrinsics = {
        image.camera_id: colmap_intrinsics(cameras[image.camera_id], model_folder) for image in images.values()
    }

    views = []
    for index, name in enumerate(split_names):
        if name not in by_name:
            continue
        colmap_image = by_name[name]
        camera = cameras[colmap_image.camera_id]
        world_to_camera = world_to_camera_matrix(quaternion_to_rotation_matrix(colmap_image.qvec), colmap_image.tvec)
        image, image_path, scale = load_view_image(
            os.path.join(source_path, "images", name), (camera.width, camera.height), resolution, background,
            downscaled_copy(source_path, name, resolution),
        )
        image, (fx, fy, cx, cy) = pinhole_view(intrinsics[camera.id], image, scale)
        seen = [row_of_id[point_id] for point_id in colmap_image.point3d_ids.tolist() if point_id in row_of_id]
        bounds = depth_bounds(world_to_camera, xyz[seen]) or depth_bounds(world_to_camera, xyz)
        if bounds is None:
            raise DatasetError(
                f"{model_folder}: no 3D point lies in front of image {name!r}, so its depth range is unknown "
                f"(re-run the reconstruction, e.g. python convert.py)"
            )
        near, far = bounds
        views.append((index, CameraInfo(
            index, name, image, world_to_camera, fx, fy, cx, cy, image.shape[1], image.shape[0], near, far, image_path,
        )))
    if not views:
        raise DatasetError(f"{model_folder}: none of the images in {source_path}/images has a COLMAP pose")
    return views, BasicPointCloud(xyz.astype(np.float32), rgb / 255.0)
