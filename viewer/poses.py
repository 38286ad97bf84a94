"""Conversions between the browser's camera, as viser reports it, and our scene cameras.

viser describes the browser camera by its camera-to-world rotation (a (w, x, y, z) quaternion) and position, in the
OpenCV axes our cameras use (x right, y down, z forward), plus the vertical field of view and the canvas size in
pixels. Our cameras hold the inverse, a world-to-camera matrix, and focal lengths in pixels.
"""

import numpy as np

from scene.cameras import Camera
from utils.errors import UserError
from utils.geometry import camera_to_world_matrix, quaternion_to_rotation_matrix, rotation_matrix_to_quaternion


class ViewerPoseError(UserError, ValueError):
    """A browser camera that does not describe a view."""


def camera_from_viewer_pose(wxyz, position, vertical_fov, width, height, device, near=0.01, far=1000.0):
    """The pinhole camera (square pixels, centred principal point) that the browser shows, rendered at
    width x height pixels."""
    wxyz = np.asarray(wxyz, dtype=np.float64)
    position = np.asarray(position, dtype=np.float64)
    norm = np.linalg.norm(wxyz)
    if wxyz.shape != (4,) or position.shape != (3,) or not (np.isfinite(norm) and norm > 0.0):
        raise ViewerPoseError(f"browser camera: wxyz {wxyz.tolist()} and position {position.tolist()} are not a pose")
    if not (0.0 < vertical_fov < np.pi):
        raise ViewerPoseError(f"browser camera: field of view of {vertical_fov} radians")
    if width < 1 or height < 1:
        raise ViewerPoseError(f"browser camera: canvas of {width}x{height} pixels")
    camera_to_world = np.eye(4)
    camera_to_world[:3, :3] = quaternion_to_rotation_matrix(wxyz / norm)
    camera_to_world[:3, 3] = position
    focal = 0.5 * height / np.tan(0.5 * vertical_fov)
    return Camera(np.linalg.inv(camera_to_world), focal, focal, 0.5 * width, 0.5 * height, width, height, near, far,
                  device, image_name="viewer")


def viewer_pose_of(camera):
    """(wxyz, position, vertical_fov) that put the browser camera where camera is."""
    camera_to_world = camera_to_world_matrix(camera.world_to_camera)
    vertical_fov = 2.0 * np.arctan(0.5 * camera.height / camera.fy)
    return rotation_matrix_to_quaternion(camera_to_world[:3, :3]), camera_to_world[:3, 3], float(vertical_fov)


def scaled_size(width, height, scale):
    """A canvas size shrunk by scale, keeping at least one pixel per side."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def mean_up_direction(cameras):
    """World direction of the cameras' average image up (-y), the natural up axis for orbiting the scene."""
    ups = [-camera_to_world_matrix(camera.world_to_camera)[:3, 1] for camera in cameras]
    up = np.mean(ups, axis=0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
