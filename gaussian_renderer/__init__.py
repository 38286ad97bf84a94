"""Renders a set of Gaussians from a scene camera with our rasterizer."""

import torch

from gaussian_rasterizer import Camera as RasterCamera
from gaussian_rasterizer import rasterize_gaussians


def raster_camera(camera):
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


def render(camera, gaussians, background, backend="auto"):
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


def render_moments(camera, moments, background, backend="auto"):
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

    def per_moment(name):
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


def total_blending_weights(cameras, gaussians, backend="auto"):
    """(N,): each Gaussian's blending weight (alpha times transmittance) summed over every pixel of cameras, i.e.
    how many pixels' worth of colour it gives those views.

    It is the gradient of the summed image with respect to a one-channel feature of 1 per Gaussian, so the
    rasterizer's own backward pass computes it.
    """
    ones = torch.ones(gaussians.means.shape[0], 1, device=gaussians.means.device, requires_grad=True)
    geometry = [gaussians.means.detach(), gaussians.scales.detach(), gaussians.rotations.detach(),
                gaussians.opacities.detach()]
    background = torch.zeros(1, device=gaussians.means.device)
    with torch.enable_grad():
        for camera in cameras:
            image = rasterize_gaussians(*geometry, raster_camera(camera), features=ones, background=background,
                                        backend=backend).image
            image.sum().backward()
    return ones.grad[:, 0]
