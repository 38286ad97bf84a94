"""Camera poses and rotations, for every part of the project that places or moves cameras.

Cameras use the OpenCV/COLMAP axes: x right, y down, z forward. A world-to-camera matrix (4, 4) maps a world point x
to rotation @ x + translation, as COLMAP's qvec and tvec do; its inverse, the camera-to-world matrix, holds the
camera's right, down and forward axes as the columns of its rotation and the camera centre as its translation.
Quaternions are (w, x, y, z).
"""

from collections.abc import Callable, Iterable
from typing import Any, overload

import numpy as np
import torch
from numpy.typing import ArrayLike

# The world's down axis, when the world shares the cameras' axes ("up" is -y).
WORLD_DOWN = np.array([0.0, 1.0, 0.0])


def world_to_camera_matrix(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(4, 4) world-to-camera matrix of a world-to-camera rotation (3, 3) and translation (3,)."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = translation
    return matrix


def world_to_camera_from_centre(camera_to_world_rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(4, 4) world-to-camera matrix of a camera at centre (3,) whose axes are the columns of
    camera_to_world_rotation (3, 3)."""
    rotation = camera_to_world_rotation.T
    return world_to_camera_matrix(rotation, -rotation @ centre)


def camera_to_world_matrix(world_to_camera: np.ndarray | torch.Tensor) -> np.ndarray:
    """(4, 4) float64 inverse of a world-to-camera matrix, given as an array or as a tensor on any device."""
    if isinstance(world_to_camera, torch.Tensor):
        world_to_camera = world_to_camera.detach().double().cpu().numpy()
    return np.linalg.inv(np.asarray(world_to_camera, np.float64))


def camera_to_world_matrices(cameras: Iterable) -> np.ndarray:
    """(V, 4, 4) float64 camera-to-world matrices of views that carry a world_to_camera matrix (scene cameras or
    dataset CameraInfos)."""
    return np.stack([camera_to_world_matrix(camera.world_to_camera) for camera in cameras])


def camera_centre(world_to_camera: np.ndarray | torch.Tensor) -> np.ndarray:
    """(3,) float64 world position of the camera of a world-to-camera matrix."""
    return camera_to_world_matrix(world_to_camera)[:3, 3]


def rotation_from_forward(forward: np.ndarray, down_hint: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation (3, 3) that looks along forward, with its down axis the part of down_hint
    orthogonal to forward (no roll)."""
    forward = np.asarray(forward, np.float64) / np.linalg.norm(forward)
    right = np.cross(down_hint, forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def look_at(centre: np.ndarray, target: np.ndarray, down_hint: np.ndarray = WORLD_DOWN) -> np.ndarray:
    """(4, 4) camera-to-world matrix of a camera at centre looking at target, its image y axis along down_hint."""
    centre = np.asarray(centre, np.float64)
    pose = np.eye(4)
    pose[:3, :3] = rotation_from_forward(np.asarray(target, np.float64) - centre, down_hint)
    pose[:3, 3] = centre
    return pose


def mean_camera_rotation(camera_to_world: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation (3, 3) looking along the mean viewing direction of camera-to-world matrices
    (V, 3 or 4, 4), with their mean down axis made orthogonal to it."""
    return rotation_from_forward(camera_to_world[:, :3, 2].mean(axis=0), camera_to_world[:, :3, 1].mean(axis=0))


@overload
def quaternion_to_rotation_matrix(quaternions: torch.Tensor) -> torch.Tensor: ...
@overload
def quaternion_to_rotation_matrix(quaternions: ArrayLike) -> np.ndarray: ...
def quaternion_to_rotation_matrix(quaternions: torch.Tensor | ArrayLike) -> torch.Tensor | np.ndarray:
    """(..., 4) quaternions (w, x, y, z), not renormalised, to (..., 3, 3) matrices: tensors (differentiable) to
    tensors, anything else to float64 arrays. A unit quaternion gives its rotation."""
    stack: Callable[..., Any]
    if isinstance(quaternions, torch.Tensor):
        w, x, y, z = quaternions.unbind(-1)
        stack = torch.stack
    else:
        w, x, y, z = np.moveaxis(np.asarray(quaternions, np.float64), -1, 0)
        stack = np.stack
    entries = stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1)
    return entries.reshape(*entries.shape[:-1], 3, 3)


def rotation_matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation matrix (3, 3).

    Built from the largest of the four diagonal combinations so that the division stays well conditioned for
    every rotation, including those near 180 degrees.
    """
    R = np.asarray(rotation, dtype=np.float64)
    trace = np.trace(R)
    candidates = [trace, R[0, 0], R[1, 1], R[2, 2]]
    largest = int(np.argmax(candidates))
    if largest == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        qvec = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    elif largest == 1:
        s = 2.0 * np.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        qvec = np.array([(R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s])
    elif largest == 2:
        s = 2.0 * np.sqrt(max(1.0 + R[1, 1] - R[0, 0] - R[2, 2], 0.0))
        qvec = np.array([(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s])
    else:
        s = 2.0 * np.sqrt(max(1.0 + R[2, 2] - R[0, 0] - R[1, 1], 0.0))
        qvec = np.array([(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s])
    if qvec[0] < 0:
        qvec = -qvec
    return qvec / np.linalg.norm(qvec)


def quaternion_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) quaternions (w, x, y, z): the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)
