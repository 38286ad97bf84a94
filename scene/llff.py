"""LLFF poses_bounds.npy files, as shipped with the Deblur-NeRF scenes.

Each row holds 17 float64 values: a 3x5 matrix flattened row by row, whose first three columns are the
camera-to-world rotation with LLFF's axis order [down, right, backwards], whose fourth column is the camera
centre and whose fifth column is [image height, image width, focal length]; then the near and far depth bounds.
Here poses are exchanged as camera-to-world matrices in the OpenCV convention [right, down, forward].
"""

import os

import numpy as np

from scene.colmap_model import rotation_problem
from scene.errors import DatasetError


def swap_rotation_axes(rotation):
    """Reorder rotation columns between LLFF's [down, right, backwards] and OpenCV's [right, down, forward].

    The same column swap and sign flip converts in both directions.
    """
    return np.stack([rotation[..., 1], rotation[..., 0], -rotation[..., 2]], axis=-1)


def load_poses_bounds(path):
    """Read poses_bounds.npy; returns (camera_to_world (N,3,4) OpenCV, hwf (N,3) [H, W, focal], bounds (N,2))."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .npy array ({error})") from error
    if data.ndim != 2 or data.shape[1] != 17 or data.shape[0] == 0:
        raise DatasetError(f"{path}: expected an N x 17 array (N >= 1), got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number):
        raise DatasetError(f"{path}: expected numbers, got dtype {data.dtype}")
    data = data.astype(np.float64)
    if not np.isfinite(data).all():
        bad_rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
        raise DatasetError(f"{path}: non-finite values in rows {bad_rows.tolist()}")
    poses = data[:, :15].reshape(-1, 3, 5)
    hwf = poses[:, :, 4].copy()
    bounds = data[:, 15:17].copy()
    for index, (height, width, focal) in enumerate(hwf):
        # Sizes are whole pixels, and the images' aspect ratio divides by the width.
        if min(height, width) < 1:
            raise DatasetError(
                f"{path}: pose {index} has an image size under one pixel (height {height:g}, width {width:g})"
            )
        if focal <= 0:
            raise DatasetError(f"{path}: pose {index} has focal length {focal:g} (it must be positive)")
    if (bounds[:, 0] <= 0).any() or (bounds[:, 1] <= bounds[:, 0]).any():
        raise DatasetError(f"{path}: every row needs bounds with 0 < near < far")
    camera_to_world = np.concatenate([swap_rotation_axes(poses[:, :, :3]), poses[:, :, 3:4]], axis=2)
    for index, rotation in enumerate(camera_to_world[:, :, :3]):
        problem = rotation_problem(rotation)
        if problem is not None:
            raise DatasetError(f"{path}: pose {index} {problem}")
    return camera_to_world, hwf, bounds


def save_poses_bounds(path, camera_to_world, hwf, bounds):
    """Write poses_bounds.npy from OpenCV camera-to-world (N,3,4), hwf (N,3) and bounds (N,2)."""
    camera_to_world = np.asarray(camera_to_world, dtype=np.float64)
    hwf = np.asarray(hwf, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.float64)
    count = len(camera_to_world)
    if camera_to_world.shape != (count, 3, 4) or hwf.shape != (count, 3) or bounds.shape != (count, 2):
        raise ValueError(
            f"save_poses_bounds: expected shapes (N,3,4), (N,3), (N,2); got {camera_to_world.shape}, "
            f"{hwf.shape}, {bounds.shape}"
        )
    rotation = swap_rotation_axes(camera_to_world[:, :, :3])
    poses = np.concatenate([rotation, camera_to_world[:, :, 3:4], hwf[:, :, None]], axis=2)
    with open(path, "wb") as file:
        np.save(file, np.concatenate([poses.reshape(count, 15), bounds], axis=1))
