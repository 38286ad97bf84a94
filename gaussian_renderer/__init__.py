"""Renders a set of Gaussians from a scene camera with our rasterizer."""

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from gaussian_rasterizer import Camera as RasterCamera
from gaussian_rasterizer import RasterOutput, rasterize_gaussians


class ViewCamera(Protocol):
    """What the renderer needs of a view (a scene.cameras.Camera, say): its pose and pinhole intrinsics."""

    @property
    def world_to_camera(self) -> torch.Tensor: ...  # (4, 4)
    @property
    def fx(self) -> float: ...
    @property
    def fy(self) -> float: ...
    @property
    def cx(self) -> float: ...
    @property
    def cy(self) -> float: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


class RenderableGaussians(Protocol):
    """What the renderer needs of a set of N Gaussians (a scene.gaussian_model.GaussianParams, say): activated
    values, as the rasterizer takes them."""

    @property
    def means(self) -> torch.Tensor: ...  # (N, 3)
    @property
    def scales(self) -> torch.Tensor: ...  # (N, 3)
    @property
    def rotations(self) -> torch.Tensor: ...  # (N, 4)
    @property
    def opacities(self) -> torch.Tensor: ...  # (N, 1)
    @property
    def sh_coeffs(self) -> torch.Tensor: ...  # (N, K, 3)
    @property
    def sh_degree(self) -> int: ...


def raster_camera(camera: ViewCamera) -> RasterCamera:
    """The rasterizer's view of a scene.cameras.Camera; the renderer keeps its default near and far planes."""
    return RasterCamera(
        world_to_camera=camera.world_to_camera,
        fx=camera.fx,
        fy=camera.fy,
        cx=camera.cx,
        cy=camera.cy,
        width=camera.width,
        height=camera.height,
    )


def render(camera: ViewCamera, gaussians: RenderableGaussians, background: torch.Tensor,
           backend: str = "auto") -> RasterOutput:
    """Render GaussianParams (activated values, see GaussianModel.render_params) from camera.

    Returns the rasterizer output: image (3, H, W), depth, alpha, radii (0 for culled Gaussians) and means2d,
    whose .grad after backward() is the per-pixel screen-space gradient used by densification.
    """
    return rasterize_gaussians(
        gaussians.means,
        gaussians.scales,
        gaussians.rotations,
        gaussians.opacities,
        raster_camera(camera),
        sh_coeffs=gaussians.sh_coeffs,
        sh_degree=gaussians.sh_degree,
        background=background,
        backend=backend,
    )


def render_moments(camera: ViewCamera, moments: Sequence[RenderableGaussians], background: torch.Tensor,
                   backend: str = "auto") -> list[RasterOutput]:
    """Render several GaussianParams from camera (the moments of one exposure, say) in one rasterizer call.

    Returns one output per entry of moments, each what render returns for it alone: its means2d's .grad after
    backward() holds that render's screen-space gradient. Parameters that every moment shares (the same tensor)
    are passed once.
    """
    if len(moments) == 1:
        return [render(camera, moments[0], background, backend)]
    degrees = {moment.sh_degree for moment in moments}
    if len(degrees) > 1:
        raise ValueError(f"the moments must share one sh_degree, got {sorted(degrees)}")

    def per_moment(name: str) -> torch.Tensor:
        values = [getattr(moment, name) for moment in moments]
        return values[0] if all(value is values[0] for value in values) else torch.stack(values)

    return rasterize_gaussians(
        per_moment("means"),
        per_moment("scales"),
        per_moment("rotations"),
        per_moment("opacities"),
        [raster_camera(camera)] * len(moments),
        sh_coeffs=per_moment("sh_coeffs"),
        sh_degree=degrees.pop(),
        background=background,
        backend=backend,
    ).unbind()


def total_blending_weights(cameras: Iterable[ViewCamera], gaussians: RenderableGaussians,
                           backend: str = "auto") -> torch.Tensor:
    """(N,): each Gaussian's blending weight (alpha times transmittance) summed over every pixel of cameras, i.e.
    how many pixels' worth of colour it gives those views.

    It is the gradient of the summed image with respect to a one-channel feature of 1 per Gaussian, so the
    rasterizer's own backward pass computes it.
    """
    count, device = gaussians.means.shape[0], gaussians.means.device
    ones = torch.ones(count, 1, device=device, requires_grad=True)
    means, scales, rotations, opacities = (value.detach() for value in (
        gaussians.means, gaussians.scales, gaussians.rotations, gaussians.opacities))
    background = torch.zeros(1, device=device)
    with torch.enable_grad():
        for camera in cameras:
            image = rasterize_gaussians(means, scales, rotations, opacities, raster_camera(camera), features=ones,
                                        background=background, backend=backend).image
            image.sum().backward()
    # Without cameras no pixel has weighed anything.
    return torch.zeros(count, device=device) if ones.grad is None else ones.grad[:, 0]
