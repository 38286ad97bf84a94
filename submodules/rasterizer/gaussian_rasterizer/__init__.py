"""Differentiable tile-based Gaussian splatting with CPU and CUDA backends.

    from gaussian_rasterizer import Camera, rasterize_gaussians
    out = rasterize_gaussians(means, scales, rotations, opacities, camera, sh_coeffs=sh, sh_degree=3)
    out.image  # (3, H, W)

project_gaussians gives the screen-space means and covariances the rasterizer draws, differentiable in PyTorch;
separable_filter is the Gaussian window of the SSIM loss, native on the CPU.
"""
from .camera import Camera
from .checks import DeferredFiniteCheck
from .image_filter import separable_filter
from .projection import ProjectedGaussians, project_gaussians
from .rasterize import RasterOutput, TilePairOverflowError, available_backends, rasterize_gaussians

__all__ = ["Camera", "DeferredFiniteCheck", "ProjectedGaussians", "RasterOutput", "TilePairOverflowError",
           "available_backends", "project_gaussians", "rasterize_gaussians", "separable_filter"]
