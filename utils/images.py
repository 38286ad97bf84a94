"""Images as the renderer makes them ((3, H, W) float tensors in [0, 1]) and as files hold them (8 bits)."""

import numpy as np
import torch


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] to (H, W, 3) uint8; values outside [0, 1] are clamped, not wrapped."""
    return (image.clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)


def srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values to linear light (IEC 61966-2-1), differentiable; values above 1 follow the same curve."""
    return torch.where(image <= 0.04045, image / 12.92, ((image.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB-encoded values, the inverse of srgb_to_linear. The linear segment near black keeps the
    gradients of dark pixels finite where a pure power curve's would not be; the clamp in the power branch keeps its
    unused gradient there finite too (torch.where backpropagates through both branches)."""
    return torch.where(image <= 0.0031308, image * 12.92, 1.055 * image.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055)


def background_color(white_background: bool, device: torch.device | str) -> torch.Tensor:
    """The (3,) RGB colour behind the Gaussians: white, or black."""
    return torch.tensor([1.0, 1.0, 1.0] if white_background else [0.0, 0.0, 0.0], device=device)
