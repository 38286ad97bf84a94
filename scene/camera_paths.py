"""Smooth camera paths through a scene's views, for camera-path videos: a spiral around forward-facing views, or a
tour through the views otherwise."""

import numpy as np

from scene.cameras import Camera
from utils.errors import UserError
from utils.geometry import (
    camera_to_world_matrices,
    look_at,
    mean_camera_rotation,
    quaternion_to_rotation_matrix,
    rotation_matrix_to_quaternion,
)


class CameraPathError(UserError, ValueError):
    """The views do not allow a camera path to be built."""


# Views whose viewing directions all lie within this angle of their mean count as forward-facing.
FORWARD_FACING_MAX_ANGLE_DEG = 45.0


def is_forward_facing(camera_to_world: np.ndarray) -> bool:
    forward = camera_to_world[:, :3, 2]
    mean_forward = forward.mean(axis=0)
    norm = np.linalg.norm(mean_forward)
    if norm < 1e-6:
        return False
    cosines = forward @ (mean_forward / norm)
    return bool(cosines.min() > np.cos(np.radians(FORWARD_FACING_MAX_ANGLE_DEG)))


def spiral_path(camera_to_world: np.ndarray, near: float, far: float, frame_count: int, turns: int = 2) -> np.ndarray:
    """A spiral around the mean pose of forward-facing views, looking at a point at a typical scene depth
    (the LLFF convention: a disparity-weighted blend of the near and far bounds)."""
    center = camera_to_world[:, :3, 3].mean(axis=0)
    mean_rotation = mean_camera_rotation(camera_to_world)
    down, forward = mean_rotation[:, 1], mean_rotation[:, 2]

    # Spread of the captured positions along the mean camera's axes.
    radii = np.percentile(np.abs((camera_to_world[:, :3, 3] - center) @ mean_rotation), 90, axis=0)
    close_depth, far_depth = 0.9 * near, 5.0 * far
    focus_depth = 1.0 / (0.25 / close_depth + 0.75 / far_depth)
    target = center + focus_depth * forward

    poses = []
    for angle in np.linspace(0.0, 2.0 * np.pi * turns, frame_count, endpoint=False):
        offset = radii * np.array([np.cos(angle), np.sin(angle), np.sin(0.5 * angle)])
        poses.append(look_at(center + mean_rotation @ offset, target, down))
    return np.stack(poses)


def nearest_neighbour_tour(positions: np.ndarray) -> list[int]:
    """Visiting order of the positions, each step going to the closest position not visited yet."""
    order = [0]
    unvisited = set(range(1, len(positions)))
    while unvisited:
        last = positions[order[-1]]
        following = min(unvisited, key=lambda index: np.linalg.norm(positions[index] - last))
        order.append(following)
        unvisited.remove(following)
    return order


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    cosine = float(np.dot(q0, q1))
    if cosine < 0.0:  # take the short way round
        q1, cosine = -q1, -cosine
    if cosine > 0.9995:
        blended = (1.0 - t) * q0 + t * q1
        return blended / np.linalg.norm(blended)
    angle = np.arccos(cosine)
    return (np.sin((1.0 - t) * angle) * q0 + np.sin(t * angle) * q1) / np.sin(angle)


def interpolated_path(camera_to_world: np.ndarray, frame_count: int) -> np.ndarray:
    """A path through the training poses (in nearest-neighbour order), moving at constant speed and
    interpolating rotations spherically."""
    positions = camera_to_world[:, :3, 3]
    order = nearest_neighbour_tour(positions)
    keys = camera_to_world[order]
    quaternions = [rotation_matrix_to_quaternion(pose[:3, :3]) for pose in keys]
    lengths = np.linalg.norm(np.diff(keys[:, :3, 3], axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(lengths)])
    if arc[-1] == 0.0:
        arc = np.arange(len(keys), dtype=np.float64)
    poses = []
    for distance in np.linspace(0.0, arc[-1], frame_count):
        segment = min(int(np.searchsorted(arc, distance, side="right")) - 1, len(keys) - 2)
        t = (distance - arc[segment]) / max(arc[segment + 1] - arc[segment], 1e-12)
        pose = np.eye(4)
        pose[:3, :3] = quaternion_to_rotation_matrix(slerp(quaternions[segment], quaternions[segment + 1], t))
        pose[:3, 3] = (1.0 - t) * keys[segment, :3, 3] + t * keys[segment + 1, :3, 3]
        poses.append(pose)
    return np.stack(poses)


def video_cameras(cameras: list[Camera], frame_count: int, device) -> list[Camera]:
    """Cameras along a smooth path through the scene, with the intrinsics of the first view; the size is
    trimmed to even numbers as H.264 requires."""
    if len(cameras) < 2:
        raise CameraPathError("a camera path needs at least two training views")
    camera_to_world = camera_to_world_matrices(cameras)
    if is_forward_facing(camera_to_world):
        near = min(camera.near for camera in cameras)
        far = max(camera.far for camera in cameras)
        if not (0.0 < near < far < np.inf):
            raise CameraPathError(f"the scene's depth bounds ({near}, {far}) cannot place a spiral path")
        path = spiral_path(camera_to_world, near, far, frame_count)
    else:
        path = interpolated_path(camera_to_world, frame_count)
    first = cameras[0]
    return [
        Camera(
            np.linalg.inv(pose), first.fx, first.fy, first.cx, first.cy, first.width - first.width % 2,
            first.height - first.height % 2, first.near, first.far, device, image_name=f"path_{index:05d}",
        )
        for index, pose in enumerate(path)
    ]
