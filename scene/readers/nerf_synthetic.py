"""The NeRF-synthetic layout: transforms_train.json and transforms_test.json, holding Blender (OpenGL) camera-to-world
matrices and the images' paths."""

import json
import numbers
import os

import numpy as np

from scene.colmap_model import rotation_problem
from scene.errors import DatasetError
from scene.readers.views import IMAGE_EXTENSIONS, CameraInfo, load_view_image

# The depth range NeRF uses for its Blender scenes, whose cameras sit about 4 units from the object.
NERF_SYNTHETIC_NEAR, NERF_SYNTHETIC_FAR = 2.0, 6.0


def read_transforms(path: str, resolution: int, background: np.ndarray, first_uid: int) -> list[CameraInfo]:
    """The views of one transforms_*.json file, numbered from first_uid."""
    try:
        with open(path, "r", encoding="utf-8") as file:
            transforms = json.load(file)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(transforms, dict):
        raise DatasetError(f"{path}: expected a JSON object with camera_angle_x and frames")
    angle = transforms.get("camera_angle_x")
    if isinstance(angle, bool) or not isinstance(angle, numbers.Real) or not 0 < float(angle) < np.pi:
        raise DatasetError(f"{path}: camera_angle_x must be a number of radians in (0, pi), got {angle!r}")
    angle = float(angle)
    frames = transforms.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: frames must be a non-empty list")

    folder = os.path.dirname(path)
    cameras = []
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise DatasetError(f"{path}: frame {number} has no file_path string")
        try:
            camera_to_world = np.array(frame.get("transform_matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            camera_to_world = np.zeros(0)
        if camera_to_world.shape != (4, 4) or not np.isfinite(camera_to_world).all():
            raise DatasetError(f"{path}: frame {number} needs a finite 4x4 transform_matrix")
        problem = rotation_problem(camera_to_world[:3, :3])
        if problem is not None:
            raise DatasetError(f"{path}: frame {number}'s transform_matrix {problem}")
        if not np.allclose(camera_to_world[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-6):
            raise DatasetError(
                f"{path}: frame {number}'s transform_matrix must end with the row [0, 0, 0, 1], got "
                f"{camera_to_world[3].tolist()}"
            )
        # Blender cameras look down -z with y up; OpenCV's look down +z with y down.
        camera_to_world[:3, 1:3] *= -1
        file_path = frame["file_path"]
        if not file_path.lower().endswith(IMAGE_EXTENSIONS):
            file_path += ".png"
        image, image_path, _ = load_view_image(os.path.join(folder, file_path), None, resolution, background)
        width, height = image.shape[1], image.shape[0]
        focal = width / (2.0 * np.tan(angle / 2.0))
        cameras.append(CameraInfo(
            first_uid + number, os.path.splitext(os.path.basename(file_path))[0], image,
            np.linalg.inv(camera_to_world), focal, focal, width / 2.0, height / 2.0, width, height,
            NERF_SYNTHETIC_NEAR, NERF_SYNTHETIC_FAR, image_path,
        ))
    return cameras


def read_nerf_synthetic(
    source_path: str, resolution: int, background: np.ndarray,
) -> tuple[list[CameraInfo], list[CameraInfo]]:
    """The train and test views of source_path."""
    train_cameras = read_transforms(os.path.join(source_path, "transforms_train.json"), resolution, background, 0)
    test_cameras = read_transforms(
        os.path.join(source_path, "transforms_test.json"), resolution, background, len(train_cameras)
    )
    return train_cameras, test_cameras
