"""A loaded scene: its train and test cameras on the device, and the Gaussians initialised or loaded for it."""

import json
import os
import re
from argparse import Namespace
from collections.abc import Sequence

import numpy as np
from plyfile import PlyData, PlyElement

from scene.cameras import Camera
from scene.dataset_readers import BasicPointCloud, CameraInfo, load_scene_info
from scene.gaussian_model import GaussianModel
from utils.atomic_file import atomic_write
from utils.errors import UserError
from utils.geometry import camera_to_world_matrix


class ModelFolderError(UserError, ValueError):
    """A model folder without the expected saved point clouds."""


def saved_iterations(model_path: str) -> list[int]:
    """Iterations with a saved point_cloud/iteration_N/point_cloud.ply, ascending."""
    folder = os.path.join(model_path, "point_cloud")
    if not os.path.isdir(folder):
        return []
    iterations = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"iteration_(\d+)", name)
        if match and os.path.isfile(os.path.join(folder, name, "point_cloud.ply")):
            iterations.append(int(match.group(1)))
    return sorted(iterations)


def point_cloud_path(model_path: str, iteration: int) -> str:
    return os.path.join(model_path, "point_cloud", f"iteration_{iteration}", "point_cloud.ply")


class Scene:
    def __init__(self, args: Namespace, gaussians: GaussianModel, load_iteration: int | None = None):
        """Load the dataset described by ModelParams args; with load_iteration (-1: the latest) read the Gaussians
        saved at that iteration, otherwise initialise them from the SfM points and describe the inputs in
        args.model_path (input.ply, cameras.json) for viewers."""
        self.model_path = args.model_path
        self.gaussians = gaussians
        info = load_scene_info(
            args.source_path,
            resolution=args.resolution,
            eval=args.eval,
            hold=args.hold,
            white_background=args.white_background,
        )
        self.source_kind = info.source_kind
        self.cameras_extent = info.scene_extent
        self.train_cameras = [Camera.from_info(camera, args.device) for camera in info.train_cameras]
        self.test_cameras = [Camera.from_info(camera, args.device) for camera in info.test_cameras]

        self.loaded_iter: int | None  # the iteration whose Gaussians were read; None for new ones
        if load_iteration is None:
            self.loaded_iter = None
            gaussians.create_from_pcd(info.point_cloud, self.cameras_extent)
            os.makedirs(self.model_path, exist_ok=True)
            write_point_cloud_ply(os.path.join(self.model_path, "input.ply"), info.point_cloud)
            write_cameras_json(os.path.join(self.model_path, "cameras.json"), info.train_cameras + info.test_cameras)
        else:
            available = saved_iterations(self.model_path)
            if not available:
                raise ModelFolderError(f"{self.model_path}: no point_cloud/iteration_*/point_cloud.ply found")
            if load_iteration == -1:
                load_iteration = available[-1]
            elif load_iteration not in available:
                raise ModelFolderError(
                    f"{self.model_path}: no point cloud saved at iteration {load_iteration} "
                    f"(saved: {', '.join(map(str, available))})"
                )
            self.loaded_iter = load_iteration
            gaussians.load_ply(point_cloud_path(self.model_path, load_iteration))

    def save(self, iteration: int) -> None:
        self.gaussians.save_ply(point_cloud_path(self.model_path, iteration))


def write_point_cloud_ply(path: str, point_cloud: BasicPointCloud) -> None:
    points = np.asarray(point_cloud.points, dtype=np.float32)
    colors = np.clip(np.round(np.asarray(point_cloud.colors) * 255.0), 0, 255).astype(np.uint8)
    vertices = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                            ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertices[name] = colors[:, channel]
    with atomic_write(path) as file:
        PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(file)


def write_cameras_json(path: str, camera_infos: Sequence[CameraInfo]) -> None:
    """Camera poses in the cameras.json layout 3DGS viewers read (camera-to-world position and rotation rows)."""
    entries = []
    for index, info in enumerate(camera_infos):
        camera_to_world = camera_to_world_matrix(info.world_to_camera)
        entries.append({
            "id": index,
            "img_name": info.name,
            "width": int(info.width),
            "height": int(info.height),
            "position": camera_to_world[:3, 3].tolist(),
            "rotation": camera_to_world[:3, :3].tolist(),
            "fy": float(info.fy),
            "fx": float(info.fx),
        })
    with atomic_write(path, "w") as file:
        json.dump(entries, file, indent=1)
