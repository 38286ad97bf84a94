"""The Deblur-NeRF (LLFF) layout: images/ matched in name order with the rows of poses_bounds.npy."""

import os
from collections.abc import Collection

import numpy as np

from scene.errors import DatasetError
from scene.llff import load_poses_bounds
from scene.readers.views import CameraInfo, downscaled_copy, list_images, load_view_image


def check_image_count(
    poses_path: str, pose_count: int, source_path: str, names: list[str], registered_names: Collection[str] = (),
) -> None:
    """poses_bounds.npy pairs its rows with the images in name order, and the split counts along that order: an
    image more or less would move sharp test views into training. registered_names: the images of a COLMAP model
    beside it, which tell which images are the odd ones out."""
    if len(names) == pose_count:
        return
    folder = os.path.join(source_path, "images")
    message = f"{poses_path}: {pose_count} poses for {len(names)} images in {folder}"
    unregistered = [name for name in names if name not in registered_names]
    absent = sorted(set(registered_names) - set(names))
    if len(names) > pose_count and unregistered:
        message += f"; images without a COLMAP pose: {', '.join(unregistered)}"
    elif len(names) < pose_count and absent:
        message += f"; COLMAP images missing from {folder}: {', '.join(absent)}"
    raise DatasetError(message)


def read_poses_bounds(source_path: str, resolution: int, background: np.ndarray) -> list[tuple[int, CameraInfo]]:
    """Views as (split index, CameraInfo) from poses_bounds.npy and images/ (matched in name order)."""
    poses_path = os.path.join(source_path, "poses_bounds.npy")
    camera_to_world, hwf, bounds = load_poses_bounds(poses_path)
    names = list_images(source_path)
    check_image_count(poses_path, len(camera_to_world), source_path, names)
    views = []
    for index, name in enumerate(names):
        height, width, focal = hwf[index]
        reference_size = (int(round(width)), int(round(height)))
        image, image_path, scale = load_view_image(
            os.path.join(source_path, "images", name), reference_size, resolution, background,
            downscaled_copy(source_path, name, resolution),
        )
        world_to_camera = np.linalg.inv(np.vstack([camera_to_world[index], [0.0, 0.0, 0.0, 1.0]]))
        views.append((index, CameraInfo(
            index, name, image, world_to_camera, focal * scale[0], focal * scale[1], width / 2 * scale[0],
            height / 2 * scale[1], image.shape[1], image.shape[0], bounds[index, 0], bounds[index, 1], image_path,
        )))
    return views
