"""Differentiable tile-based Gaussian splatting with CPU and CUDA backends.

    from gaussian_rasterizer import Camera, rasterize_gaussians
    out = rasterize_gaussians(means, scales, rotations, opacities, camera, sh_coeffs=sh, sh_degree=3)
    out.image  # (3, H, W)
"""
from .camera import Camera
from .checks import DeferredFiniteCheck
from .rasterize import RasterOutput, TilePairOverflowError, available_backends, rasterize_gaussians

__all__ = ["Camera", "DeferredFiniteCheck", "RasterOutput", "TilePairOverflowError", "available_backends",
           "rasterize_gaussians"]
