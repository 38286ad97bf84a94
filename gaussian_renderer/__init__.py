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
