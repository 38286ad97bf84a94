"""A separable image filter, differentiable: the Gaussian window of the SSIM loss that training computes every step;
and that SSIM fused around it on the CPU.

On the CPU, float32 images go through the native backend, several times faster than torch's depthwise convolution
there; elsewhere (CUDA, float64, a source checkout never built) through two depthwise convolutions.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

try:
    import gaussian_rasterizer._cpu as _cpu
except ImportError:  # a source checkout that was never built
    _cpu = None


def _correlate(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    if _cpu is not None and images.device.type == "cpu" and images.dtype == torch.float32:
        return _cpu.separable_filter(images.contiguous(), taps.to(images).contiguous())
    height, width = images.shape[-2:]
    planes = images.reshape(1, -1, height, width)
    count, radius = planes.shape[1], taps.numel() // 2
    taps = taps.to(images)
    rows = F.conv2d(planes, taps.view(1, 1, 1, -1).expand(count, 1, 1, -1), padding=(0, radius), groups=count)
    both = F.conv2d(rows, taps.view(1, 1, -1, 1).expand(count, 1, -1, 1), padding=(radius, 0), groups=count)
    return both.reshape(images.shape)


class _SeparableFilter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, taps):
        ctx.save_for_backward(taps)
        return _correlate(images, taps)

    @staticmethod
    def backward(ctx, grad):
        (taps,) = ctx.saved_tensors
        # With zero padding, the adjoint of a correlation is the correlation with the taps reversed.
        return _SeparableFilter.apply(grad, taps.flip(0)), None


def separable_filter(images: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) plane of images (..., H, W) correlated with the outer product of taps with itself, borders
    zero-padded: out[y, x] = sum_ij taps[i] taps[j] images[y + i - r, x + j - r], r = len(taps) // 2. Differentiable
    in images (twice and more); taps, one-dimensional of odd length, are constants."""
    if images.dim() < 2:
        raise ValueError(f"images must be (..., H, W), got shape {tuple(images.shape)}")
    if taps.dim() != 1 or taps.numel() % 2 != 1:
        raise ValueError(f"taps must be one-dimensional, of odd length, got shape {tuple(taps.shape)}")
    if taps.requires_grad:
        raise ValueError("separable_filter gives no gradient of its taps")
    return _SeparableFilter.apply(images, taps)


def fused_ssim_available(images: torch.Tensor) -> bool:
    """Whether fused_ssim_forward and fused_ssim_backward take these images: float32 on the CPU, extension built."""
    return _cpu is not None and images.device.type == "cpu" and images.dtype == torch.float32


def fused_ssim_forward(x: torch.Tensor, y: torch.Tensor, taps: torch.Tensor, c1: float,
                       c2: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(map, statistics): the per-pixel SSIM of images x and y (..., H, W), their local statistics filtered with the
    outer product of taps (one-dimensional, odd length) with itself (borders zero-padded), with stabilisers c1 and
    c2; and what fused_ssim_backward takes of the forward pass. Not differentiable itself: the caller's autograd
    Function calls fused_ssim_backward."""
    return _cpu.ssim_forward(x.contiguous(), y.contiguous(), taps.to(x).contiguous(), c1, c2)


def fused_ssim_backward(x: torch.Tensor, y: torch.Tensor, statistics: torch.Tensor, grad_map: torch.Tensor,
                        adjoint_taps: torch.Tensor, c1: float, c2: float, want_x: bool,
                        want_y: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The gradients of sum(grad_map * map) with respect to x and y, None where not wanted; adjoint_taps are the
    forward's taps reversed."""
    grad_x, grad_y = _cpu.ssim_backward(x.contiguous(), y.contiguous(), statistics, grad_map.contiguous(),
                                        adjoint_taps.to(x).contiguous(), c1, c2, want_x, want_y)
    return (grad_x if want_x else None), (grad_y if want_y else None)
