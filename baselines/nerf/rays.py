"""Rays through the pixels of CameraInfo views, and the space the radiance field samples them in."""

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.geometry import camera_to_world_matrices, mean_camera_rotation

# NeRF puts the NDC near plane at 3/4 of the closest near bound, so that no visible surface lies in front of it.
NDC_NEAR_FRACTION = 0.75
# Rays closer than this to parallel with the NDC near plane (cosine with the mean view direction) would map to
# infinity: NDC suits forward-facing views only.
MIN_FORWARD_COSINE = 0.05


class RaySpaceError(UserError, ValueError):
    """The cameras do not suit the requested ray parametrisation."""


class ViewCameras:
    """The pinhole cameras of a list of views as tensors, to cast rays through any sub-pixel position."""

    def __init__(self, cameras, device):
        self.camera_to_world = torch.tensor(camera_to_world_matrices(cameras)[:, :3], dtype=torch.float32,
                                            device=device)
        self.intrinsics = torch.tensor(
            [[camera.fx, camera.fy, camera.cx, camera.cy] for camera in cameras], dtype=torch.float32, device=device
        )
        self.sizes = torch.tensor([[camera.width, camera.height] for camera in cameras], device=device)

    def __len__(self):
        return len(self.sizes)

    def rays(self, view_indices, pixels, camera_to_world=None):
        """World-space origins and directions (unit depth along the camera axis) of the rays through pixels
        (x, y; pixel centres at i + 0.5) of the views. camera_to_world (..., 3, 4) replaces the views' own poses,
        e.g. with the moved copies of a blur kernel. Leading dimensions of the arguments must match."""
        if camera_to_world is None:
            camera_to_world = self.camera_to_world[view_indices]
        fx, fy, cx, cy = self.intrinsics[view_indices].unbind(-1)
        directions_in_camera = torch.stack(
            [(pixels[..., 0] - cx) / fx, (pixels[..., 1] - cy) / fy, torch.ones_like(pixels[..., 0])], dim=-1
        )
        directions = (camera_to_world[..., :3, :3] @ directions_in_camera[..., None]).squeeze(-1)
        origins = camera_to_world[..., :3, 3].expand_as(directions)
        return origins, directions

    def pixel_centres(self, view):
        """(H * W, 2) coordinates of every pixel centre of a view, row by row."""
        width, height = self.sizes[view].tolist()
        device = self.sizes.device
        y, x = torch.meshgrid(
            torch.arange(height, device=device) + 0.5, torch.arange(width, device=device) + 0.5, indexing="ij"
        )
        return torch.stack([x, y], dim=-1).reshape(-1, 2)


class RaySpace:
    """Where the radiance field is sampled, and the range [near, far] of the ray parameter t.

    ndc: NeRF's normalised device coordinates of a reference camera (the mean of the training cameras), for
    forward-facing scenes: depths from the near plane to infinity map to t in [0, 1], so that uniform samples in t
    are uniform in disparity and the distant background stays reachable. Otherwise world coordinates, centred
    on the cameras and divided by the farthest far bound to suit the positional encoding; t is the depth along
    the camera axis between the nearest near and the farthest far bound.
    """

    def __init__(self, cameras, ndc, device):
        camera_to_world = camera_to_world_matrices(cameras)[:, :3]
        self.ndc = ndc
        # The length unit of the blur kernels' camera translations.
        self.scene_scale = float(min(camera.near for camera in cameras))
        self.centre = torch.tensor(camera_to_world[:, :, 3].mean(axis=0), dtype=torch.float32, device=device)
        if not ndc:
            self.near = self.scene_scale
            self.far = float(max(camera.far for camera in cameras))
            self.scale = self.far
            return
        rotation = mean_camera_rotation(camera_to_world)
        check_forward_facing(cameras, camera_to_world, rotation)
        self.rotation = torch.tensor(rotation, dtype=torch.float32, device=device)
        self.near_plane = NDC_NEAR_FRACTION * self.scene_scale
        self.focal_scale = torch.tensor(
            [np.mean([2.0 * camera.fx / camera.width for camera in cameras]),
             np.mean([2.0 * camera.fy / camera.height for camera in cameras])],
            dtype=torch.float32, device=device,
        )
        self.near, self.far = 0.0, 1.0

    def __call__(self, origins, directions):
        """World rays to (origins, directions) in sampling space, and the unit world viewing directions the
        colour depends on."""
        view_directions = F.normalize(directions, dim=-1)
        if not self.ndc:
            return (origins - self.centre) / self.scale, directions / self.scale, view_directions
        origins = (origins - self.centre) @ self.rotation
        directions = directions @ self.rotation
        # Start every ray on the near plane z = n; NDC then maps depth z to 1 - 2n / z.
        origins = origins + ((self.near_plane - origins[..., 2:]) / directions[..., 2:]) * directions
        xy_over_z = origins[..., :2] / origins[..., 2:]
        ndc_origins = torch.cat([self.focal_scale * xy_over_z, torch.full_like(origins[..., 2:], -1.0)], dim=-1)
        ndc_directions = torch.cat([
            self.focal_scale * (directions[..., :2] / directions[..., 2:] - xy_over_z),
            2.0 * self.near_plane / origins[..., 2:],
        ], dim=-1)
        return ndc_origins, ndc_directions, view_directions


def check_forward_facing(cameras, camera_to_world, rotation):
    """NDC needs every ray to point away from the near plane of the reference camera."""
    for camera, pose in zip(cameras, camera_to_world):
        corners = np.array([[x, y, 1.0] for x in (-camera.cx / camera.fx, (camera.width - camera.cx) / camera.fx)
                            for y in (-camera.cy / camera.fy, (camera.height - camera.cy) / camera.fy)])
        directions = corners @ pose[:, :3].T @ rotation
        cosines = directions[:, 2] / np.linalg.norm(directions, axis=1)
        if cosines.min() < MIN_FORWARD_COSINE:
            raise RaySpaceError(
                f"view {camera.name!r} looks more than {np.degrees(np.arccos(MIN_FORWARD_COSINE)):.0f} degrees away "
                f"from the mean view direction: NDC rays suit forward-facing scenes only (use --no_ndc)"
            )
