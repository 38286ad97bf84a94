"""Torch-side view: pose, intrinsics and (for dataset views) the ground-truth image, on the training device."""

import numpy as np
import torch
from numpy.typing import ArrayLike

from scene.readers.views import CameraInfo
from utils.geometry import camera_centre


class Camera:
    """A pinhole view in the OpenCV/COLMAP convention (x right, y down, z forward; pixel centres at i + 0.5).

    near and far are the scene's depth bounds from the dataset, used to place camera paths; the renderer
    clips with its own fixed near plane so that Gaussians in front of the SfM bounds are kept.
    """

    def __init__(self, world_to_camera: ArrayLike, fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                 near: float, far: float, device: torch.device | str, image: np.ndarray | None = None,
                 image_name: str = "", uid: int = 0):
        world_to_camera = np.asarray(world_to_camera, dtype=np.float64)
        if world_to_camera.shape != (4, 4) or not np.isfinite(world_to_camera).all():
            raise ValueError(f"camera {image_name!r}: world_to_camera must be a finite 4x4 matrix")
        self.uid = uid
        self.image_name = image_name
        self.fx, self.fy, self.cx, self.cy = float(fx), float(fy), float(cx), float(cy)
        self.width, self.height = int(width), int(height)
        self.near, self.far = float(near), float(far)
        self.world_to_camera = torch.tensor(world_to_camera, dtype=torch.float32, device=device)
        self.camera_center = torch.tensor(camera_centre(world_to_camera), dtype=torch.float32, device=device)
        self.original_image: torch.Tensor | None = None  # (3, H, W) in [0, 1]
        if image is not None:
            if image.shape != (self.height, self.width, 3):
                raise ValueError(
                    f"camera {image_name!r}: image of shape {image.shape} does not match the camera size "
                    f"{self.width}x{self.height}"
                )
            pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)
            self.original_image = pixels.contiguous().to(device)

    def ground_truth(self) -> torch.Tensor:
        """original_image, which every dataset view has; a ValueError for a view without one (a camera path's)."""
        if self.original_image is None:
            raise ValueError(f"camera {self.image_name!r} has no image to compare renders with")
        return self.original_image

    @classmethod
    def from_info(cls, info: CameraInfo, device: torch.device | str) -> "Camera":
        """Build from a scene.readers.views.CameraInfo."""
        return cls(
            info.world_to_camera, info.fx, info.fy, info.cx, info.cy, info.width, info.height, info.near, info.far,
            device, image=info.image, image_name=info.name, uid=info.uid,
        )
