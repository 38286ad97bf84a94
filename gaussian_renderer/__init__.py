"""Renders a set of Gaussians from a scene camera with our rasterizer."""

import dataclasses

import torch
from gaussian_rasterizer import Camera as RasterCamera
from gaussian_rasterizer import rasterize_gaussians
from gaussian_rasterizer.reference import SH_C0


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

    It is the gradient of the summed image with respect to the Gaussians' colours when every colour is 1, so the
    rasterizer's own backward pass computes it.
    """
    count = gaussians.means.shape[0]
    # Colour is SH_C0 * DC + 0.5 at degree 0.
    white = torch.full((count, 1, 3), 0.5 / SH_C0, device=gaussians.means.device, requires_grad=True)
    plain = dataclasses.replace(
        gaussians,
        means=gaussians.means.detach(),
        scales=gaussians.scales.detach(),
        rotations=gaussians.rotations.detach(),
        opacities=gaussians.opacities.detach(),
        sh_coeffs=white,
        sh_degree=0,
    )
    background = torch.zeros(3, device=gaussians.means.device)
    with torch.enable_grad():
        for camera in cameras:
            render(camera, plain, background, backend).image[0].sum().backward()
    return white.grad[:, 0, 0] / SH_C0
