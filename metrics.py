"""Image-quality metrics under the two protocols found in the literature, and the results.json they go into.

- "3dgs" (3D Gaussian Splatting papers): PSNR from the mean squared error over all pixels and channels; SSIM with
  an 11x11 Gaussian window (sigma 1.5), zero-padded borders included.
- "deblur_nerf" (Deblur-NeRF and the deblurring papers that follow it): PSNR averaged over the per-channel PSNRs;
  SSIM from scikit-image's structural_similarity on the colour image (7x7 uniform window, data_range 1).
Both report LPIPS with the AlexNet backbone (v0.1), which needs local weights (see LPIPS below); without them
LPIPS is reported as unavailable rather than estimated.

Usage: python metrics.py -m output/run [-m output/other] [--iteration N] [--lpips_weights alex_lpips.pth]
scores <model>/test/ours_<N>/renders against <model>/test/ours_<N>/gt and writes <model>/results.json.
"""

import json
import os
import re
import sys
from argparse import ArgumentParser
from collections.abc import Mapping, Sequence
from typing import Any

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch.autograd.function import once_differentiable

from gaussian_rasterizer.image_filter import (
    fused_ssim_available,
    fused_ssim_backward,
    fused_ssim_forward,
    separable_filter,
)
from utils.atomic_file import atomic_write
from utils.errors import UserError, report_user_errors
from utils.logs import configure_cli_logging
from utils.torch_files import load_torch_file

PROTOCOLS = {
    "3dgs": "PSNR over all pixels and channels; SSIM with an 11x11 Gaussian window (sigma 1.5); "
            "LPIPS AlexNet v0.1",
    "deblur_nerf": "PSNR as the mean of per-channel PSNRs; SSIM from skimage.metrics.structural_similarity "
                   "(7x7 uniform window, channel_axis, data_range=1); LPIPS AlexNet v0.1",
}
NO_LPIPS_WEIGHTS = "no AlexNet LPIPS weights given (pass a local weights file, e.g. --lpips_weights)"


class MetricsError(UserError, ValueError):
    """Images or files that cannot be scored; the message names them."""


# ---- PSNR and SSIM ----

def psnr(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """PSNR in dB from the mean squared error over every pixel and channel (3DGS protocol), images in [0, 1]."""
    return 10.0 * torch.log10(1.0 / ((img1 - img2) ** 2).mean())


def psnr_per_channel(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """Mean over channels of each channel's PSNR in dB (Deblur-NeRF protocol); (C, H, W) images in [0, 1]."""
    channel_mse = ((img1 - img2) ** 2).flatten(start_dim=-2).mean(dim=-1)
    return (10.0 * torch.log10(1.0 / channel_mse)).mean(dim=-1)


def gaussian_profile(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    coordinates = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    profile = torch.exp(-coordinates ** 2 / (2 * sigma ** 2))
    return profile / profile.sum()


# Stabilisers of Wang et al. for a dynamic range of 1.
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2


class _SSIMMap(torch.autograd.Function):
    """Per-pixel SSIM of (N, C, H, W) images with its gradient written out: it is the training loss, run every
    step, and autograd through the formula would record some forty per-pixel operations and differentiate the
    convolution of all five local statistics, where one convolution of three per-pixel gradients suffices.

    With A1 = 2 mu1 mu2 + c1, A2 = 2 cov + c2, B1 = mu1^2 + mu2^2 + c1, B2 = var1 + var2 + c2 and SSIM = A1 A2 /
    (B1 B2), as functions of the blurred mu1 = G x, E11 = G x^2 and E12 = G x y (var1 = E11 - mu1^2, cov = E12 -
    mu1 mu2): dSSIM/dE12 = 2 A1 / (B1 B2), dSSIM/dE11 = -SSIM / B2, dSSIM/dmu1 = 2 mu2 (A2 - A1) / (B1 B2) - 2 mu1
    SSIM (1 / B1 - 1 / B2), and symmetrically for y. The gradient of x is then G*(g dSSIM/dmu1) + 2 x G*(g
    dSSIM/dE11) + y G*(g dSSIM/dE12), G* being the adjoint of G: the filter with its taps reversed. Float32 images
    on the CPU take the native backend's fused version of the same (gaussian_rasterizer.image_filter); the rest
    take this one."""

    @staticmethod
    def forward(ctx, img1, img2, taps):
        ctx.adjoint_taps = taps.flip(0)
        if fused_ssim_available(img1):
            result, statistics = fused_ssim_forward(img1, img2, taps, SSIM_C1, SSIM_C2)
            ctx.fused = True
            ctx.save_for_backward(img1, img2, statistics)
            return result
        ctx.fused = False
        stacked = torch.cat([img1, img2, img1 * img1, img2 * img2, img1 * img2], dim=1)
        mu1, mu2, mean11, mean22, mean12 = separable_filter(stacked, taps).chunk(5, dim=1)
        variance1 = mean11 - mu1 * mu1
        variance2 = mean22 - mu2 * mu2
        covariance = mean12 - mu1 * mu2
        luminance_numerator = 2 * mu1 * mu2 + SSIM_C1
        structure_numerator = 2 * covariance + SSIM_C2
        luminance_denominator = mu1 * mu1 + mu2 * mu2 + SSIM_C1
        structure_denominator = variance1 + variance2 + SSIM_C2
        result = (luminance_numerator * structure_numerator) / (luminance_denominator * structure_denominator)
        ctx.save_for_backward(img1, img2, mu1, mu2, luminance_numerator, structure_numerator, luminance_denominator,
                              structure_denominator, result)
        return result

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_map):
        if ctx.fused:
            img1, img2, statistics = ctx.saved_tensors
            grad1, grad2 = fused_ssim_backward(img1, img2, statistics, grad_map, ctx.adjoint_taps, SSIM_C1, SSIM_C2,
                                               *ctx.needs_input_grad[:2])
            return grad1, grad2, None
        img1, img2, mu1, mu2, a1, a2, b1, b2, result = ctx.saved_tensors
        grad_over_denominator = grad_map / (b1 * b2)
        # g dSSIM/dE12, and g dSSIM/dE11 = g dSSIM/dE22.
        grad_mean12 = 2 * a1 * grad_over_denominator
        grad_mean_squares = -(grad_map * result / b2)
        shared = 2 * (a2 - a1) * grad_over_denominator
        contrast = 2 * grad_mean_squares * (b2 - b1) / b1
        # One convolution blurs g dSSIM/dmu of each image that needs a gradient, and the two shared terms.
        wanted = [index for index in (0, 1) if ctx.needs_input_grad[index]]
        images, mus = (img1, img2), (mu1, mu2)
        grad_mus = [mus[1 - index] * shared + mus[index] * contrast for index in wanted]
        blurred = separable_filter(torch.cat(grad_mus + [grad_mean_squares, grad_mean12], dim=1), ctx.adjoint_taps)
        *blurred_mus, blurred_squares, blurred_mean12 = blurred.chunk(len(wanted) + 2, dim=1)
        grads = [None, None]
        for index, blurred_mu in zip(wanted, blurred_mus):
            grads[index] = blurred_mu + 2 * images[index] * blurred_squares + images[1 - index] * blurred_mean12
        return grads[0], grads[1], None


def ssim_map(img1: torch.Tensor, img2: torch.Tensor, window_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of (C, H, W) or (N, C, H, W) images in [0, 1] (Gaussian window, zero-padded borders)."""
    batched = img1.dim() == 4
    if not batched:
        img1, img2 = img1.unsqueeze(0), img2.unsqueeze(0)
    result = _SSIMMap.apply(img1, img2, gaussian_profile(window_size, sigma, img1))
    return result if batched else result.squeeze(0)


def ssim(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), differentiable: the 3DGS training loss and metric."""
    return ssim_map(img1, img2).mean()


def ssim_skimage(img1: torch.Tensor, img2: torch.Tensor) -> float:
    """SSIM as the deblurring papers compute it: scikit-image on the (C, H, W) colour images, data_range 1."""
    return float(structural_similarity(
        to_numpy_hwc(img1), to_numpy_hwc(img2), channel_axis=-1, data_range=1.0
    ))


def to_numpy_hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().to(dtype=torch.float64, device="cpu").permute(1, 2, 0).numpy()


# ---- LPIPS ----

# AlexNet's convolutions as (index in torchvision's `features`, in channels, out channels, kernel, stride, padding).
ALEXNET_CONVOLUTIONS = ((0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1),
                        (8, 384, 256, 3, 1, 1), (10, 256, 256, 3, 1, 1))
# LPIPS compares inputs in [-1, 1] after this per-channel shift and scale (ImageNet statistics in that range).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
# Smaller images vanish in AlexNet's strided convolution and pooling.
LPIPS_MIN_SIZE = 32


class LPIPS(torch.nn.Module):
    """LPIPS v0.1 with the AlexNet backbone, from local weights.

    weights_path holds the five linear heads as the `lpips` package stores them (its weights/v0.1/alex.pth: keys
    lin0.model.1.weight .. lin4.model.1.weight). The AlexNet convolutions come from backbone_path, a torchvision
    AlexNet state_dict (keys features.0.weight, features.0.bias, ...; e.g. alexnet-owt-7be5be79.pth), or, when
    backbone_path is None, from weights_path itself: a combined file holding both sets of keys (the `lpips`
    package's full model state_dict, with net.sliceK.N.* backbone keys, is accepted too).
    """

    # (1, 3, 1, 1) buffers: LPIPS_SHIFT and LPIPS_SCALE
    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, weights_path: str | os.PathLike, backbone_path: str | os.PathLike | None = None):
        super().__init__()
        state = load_state_dict(weights_path)
        if backbone_path is not None:
            state = {**load_state_dict(backbone_path), **state}
        sources = weights_path if backbone_path is None else f"{weights_path} and {backbone_path}"
        backbone = {}
        for key, value in state.items():
            match = re.fullmatch(r"(?:features|net\.slice\d)\.(\d+)\.(weight|bias)", key)
            if match:
                backbone[(int(match.group(1)), match.group(2))] = value
        self.convolutions = torch.nn.ModuleList()
        for index, in_channels, out_channels, kernel, stride, padding in ALEXNET_CONVOLUTIONS:
            convolution = torch.nn.Conv2d(in_channels, out_channels, kernel, stride, padding)
            for name in ("weight", "bias"):
                assign(convolution, name, backbone.get((index, name)), f"features.{index}.{name}", sources)
            self.convolutions.append(convolution)
        self.heads = torch.nn.ModuleList()
        for layer, (_, _, channels, _, _, _) in enumerate(ALEXNET_CONVOLUTIONS):
            head = torch.nn.Conv2d(channels, 1, 1, bias=False)
            key = f"lin{layer}.model.1.weight"
            assign(head, "weight", state.get(key), key, sources)
            self.heads.append(head)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def features(self, image: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs LPIPS compares (after conv1 .. conv5; max pooling follows conv1, conv2)."""
        x = ((image * 2.0 - 1.0) - self.shift) / self.scale
        outputs = []
        for layer, convolution in enumerate(self.convolutions):
            if layer in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(convolution(x))
            outputs.append(x)
        return outputs

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        """Distance of (3, H, W) or (N, 3, H, W) images in [0, 1]: a scalar, or one value per image."""
        batched = img1.dim() == 4
        if not batched:
            img1, img2 = img1.unsqueeze(0), img2.unsqueeze(0)
        if img1.shape[1] != 3 or min(img1.shape[-2:]) < LPIPS_MIN_SIZE:
            raise MetricsError(
                f"LPIPS needs RGB images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels, got {tuple(img1.shape)}"
            )
        distance = img1.new_zeros(img1.shape[0])
        for head, features1, features2 in zip(self.heads, self.features(img1), self.features(img2)):
            # Unit-length feature vectors per pixel; the small constant keeps all-zero activations finite.
            unit1 = features1 / (features1.norm(dim=1, keepdim=True) + 1e-10)
            unit2 = features2 / (features2.norm(dim=1, keepdim=True) + 1e-10)
            distance = distance + head((unit1 - unit2) ** 2).mean(dim=(1, 2, 3))
        return distance if batched else distance.squeeze(0)


def load_state_dict(path: str | os.PathLike) -> dict:
    if not os.path.isfile(path):
        raise MetricsError(f"{path}: LPIPS weights file not found")
    return load_torch_file(path, MetricsError, "not a readable torch weights file")


def assign(module: torch.nn.Module, name: str, value: object, key: str, sources: str | os.PathLike) -> None:
    expected = getattr(module, name).shape
    if value is None:
        raise MetricsError(f"{sources}: missing LPIPS/AlexNet weight {key}")
    if not isinstance(value, torch.Tensor) or value.shape != expected:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise MetricsError(f"{sources}: {key} has shape {shape}, expected {tuple(expected)}")
    getattr(module, name).data.copy_(value.float())


# ---- evaluation and results ----

def evaluate_images(pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
                    lpips_weights: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
                    ) -> dict[str, dict[str, Any]]:
    """Score each (rendering, ground truth) pair of (3, H, W) images in [0, 1], given as {view name: pair}.

    Returns {view name: {"3dgs": {...}, "deblur_nerf": {...}}}, each protocol with psnr, ssim and lpips; without
    lpips_weights, lpips is None and the view carries the reason under "lpips_unavailable".
    lpips_weights: a combined LPIPS file, or a (linear heads, AlexNet backbone) pair of paths; see LPIPS.
    """
    lpips = None
    if lpips_weights is not None:
        lpips = LPIPS(lpips_weights) if isinstance(lpips_weights, (str, os.PathLike)) else LPIPS(*lpips_weights)
    per_view: dict[str, dict[str, Any]] = {}
    with torch.no_grad():
        for name, (image, gt_image) in pairs.items():
            if image.shape != gt_image.shape or image.dim() != 3:
                raise MetricsError(
                    f"view {name!r}: rendering {tuple(image.shape)} and ground truth {tuple(gt_image.shape)} must be "
                    f"(C, H, W) images of the same shape"
                )
            for label, tensor in (("rendering", image), ("ground truth", gt_image)):
                if not torch.isfinite(tensor).all():
                    raise MetricsError(f"view {name!r}: the {label} has non-finite values")
            gt_image = gt_image.to(image.device, image.dtype)
            lpips_value = None
            if lpips is not None:
                lpips_value = float(lpips.to(image.device)(image.float(), gt_image.float()))
            per_view[name] = {
                "3dgs": {"psnr": float(psnr(image, gt_image)), "ssim": float(ssim(image, gt_image)),
                         "lpips": lpips_value},
                "deblur_nerf": {"psnr": float(psnr_per_channel(image, gt_image)),
                                "ssim": ssim_skimage(image, gt_image), "lpips": lpips_value},
            }
            if lpips is None:
                per_view[name]["lpips_unavailable"] = NO_LPIPS_WEIGHTS
    return per_view


def mean_scores(per_view: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each metric averaged over the views (None when a view lacks it)."""
    views = list(per_view.values())
    mean: dict[str, Any] = {}
    for protocol in PROTOCOLS:
        mean[protocol] = {}
        for metric in ("psnr", "ssim", "lpips"):
            values = [view[protocol][metric] for view in views]
            mean[protocol][metric] = None if None in values else float(np.mean(values))
    reasons = {view["lpips_unavailable"] for view in views if "lpips_unavailable" in view}
    if reasons:
        mean["lpips_unavailable"] = "; ".join(sorted(reasons))
    return mean


def json_safe(value: Any) -> Any:
    """Infinite PSNRs (identical images) become null: JSON has no infinity."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_results(path: str, per_view: Mapping[str, Mapping[str, Any]], iteration: int, num_gaussians: int | None,
                  train_seconds: float | None) -> None:
    """Write the mean and per-view scores with the run's iteration, Gaussian count and training time (seconds,
    None when unknown) to path as JSON, atomically: readers never see a partial file."""
    if not per_view:
        raise MetricsError(f"{path}: no views to write results for")
    results = {
        "iteration": int(iteration),
        "num_gaussians": None if num_gaussians is None else int(num_gaussians),
        "train_seconds": None if train_seconds is None else float(train_seconds),
        "num_views": len(per_view),
        "protocols": PROTOCOLS,
        "mean": mean_scores(per_view),
        "per_view": per_view,
    }
    with atomic_write(path, "w") as file:
        json.dump(json_safe(results), file, indent=2, allow_nan=False)


# ---- command line ----

def read_rgb(path: str) -> torch.Tensor:
    try:
        image = iio.imread(path)
    except Exception as error:
        raise MetricsError(f"{path}: not a readable image ({error})") from None
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise MetricsError(f"{path}: expected an 8-bit RGB image, got {image.dtype} of shape {image.shape}")
    return torch.from_numpy(image[:, :, :3].astype(np.float32) / 255.0).permute(2, 0, 1)


def rendered_iterations(model_path: str) -> list[int]:
    folder = os.path.join(model_path, "test")
    if not os.path.isdir(folder):
        return []
    return sorted(int(match.group(1)) for match in (re.fullmatch(r"ours_(\d+)", name) for name in os.listdir(folder))
                  if match)


def point_count(model_path: str, iteration: int) -> int | None:
    """Vertex count from the header of the saved point cloud, or None when it was not saved."""
    path = os.path.join(model_path, "point_cloud", f"iteration_{iteration}", "point_cloud.ply")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as file:
        for line in iter(file.readline, b""):
            match = re.fullmatch(rb"element vertex (\d+)\s*", line)
            if match:
                return int(match.group(1))
            if line.strip() == b"end_header":
                break
    raise MetricsError(f"{path}: no vertex count in the PLY header")


def recorded_train_seconds(model_path: str, iteration: int) -> float | None:
    """Training time recorded by train.py in results_<iteration>.json, or None."""
    path = os.path.join(model_path, f"results_{iteration}.json")
    try:
        with open(path) as file:
            return json.load(file).get("train_seconds")
    except (OSError, ValueError, AttributeError):
        return None


def evaluate_model(model_path: str, iteration: int | None = None,
                   lpips_weights: str | tuple[str, str] | None = None) -> str:
    """Score <model_path>/test/ours_<iteration> (default: the latest rendered) and write <model_path>/results.json;
    returns the path written."""
    available = rendered_iterations(model_path)
    if not available:
        raise MetricsError(f"{model_path}: no test/ours_<iteration> folders (render the test views with render.py)")
    if iteration is None:
        iteration = available[-1]
    elif iteration not in available:
        raise MetricsError(f"{model_path}: no test/ours_{iteration} (rendered: {', '.join(map(str, available))})")
    base = os.path.join(model_path, "test", f"ours_{iteration}")
    renders_folder, gt_folder = os.path.join(base, "renders"), os.path.join(base, "gt")
    names = {}
    for folder in (renders_folder, gt_folder):
        if not os.path.isdir(folder):
            raise MetricsError(f"{folder}: folder not found")
        names[folder] = sorted(name for name in os.listdir(folder) if name.lower().endswith(".png"))
    if not names[renders_folder] or names[renders_folder] != names[gt_folder]:
        raise MetricsError(f"{renders_folder} and {gt_folder} must hold PNG images with the same names")
    pairs = {
        name: (read_rgb(os.path.join(renders_folder, name)), read_rgb(os.path.join(gt_folder, name)))
        for name in names[renders_folder]
    }
    per_view = evaluate_images(pairs, lpips_weights=lpips_weights)
    path = os.path.join(model_path, "results.json")
    write_results(path, per_view, iteration, point_count(model_path, iteration),
                  recorded_train_seconds(model_path, iteration))
    return path


def lpips_weights_argument(paths: list[str] | None) -> str | tuple[str, str] | None:
    """The lpips_weights of evaluate_images from the files given to --lpips_weights: one combined weights file as
    its path, two as a (linear heads, AlexNet backbone) pair; None without the option."""
    if paths is None:
        return None
    if not 1 <= len(paths) <= 2:
        raise MetricsError(f"--lpips_weights takes one combined file or two files (linear heads, AlexNet backbone), "
                           f"got {len(paths)}")
    for path in paths:
        if not os.path.isfile(path):
            raise MetricsError(f"--lpips_weights: {path} is not a file")
    return paths[0] if len(paths) == 1 else (paths[0], paths[1])


def main(argv: Sequence[str] | None = None) -> int:
    configure_cli_logging()
    parser = ArgumentParser(description="Score rendered test views under the 3DGS and Deblur-NeRF protocols")
    parser.add_argument("--model_paths", "-m", nargs="+", action="extend", required=True,
                        help="model folders holding test/ours_<iteration>/{renders,gt}")
    parser.add_argument("--iteration", type=int, default=None, help="rendered iteration to score (default: latest)")
    parser.add_argument("--lpips_weights", nargs="+", default=None, metavar="FILE",
                        help="LPIPS AlexNet weights: the lpips package's alex.pth followed by a torchvision AlexNet "
                             "state_dict, or one file holding both")
    args = parser.parse_args(argv)
    try:
        lpips_weights = lpips_weights_argument(args.lpips_weights)
    except MetricsError as error:
        parser.error(str(error))
    for model_path in args.model_paths:
        with report_user_errors("metrics.py"):
            path = evaluate_model(model_path, args.iteration, lpips_weights)
        with open(path) as file:
            mean = json.load(file)["mean"]
        print(f"{model_path}:")
        for protocol in PROTOCOLS:
            scores = ", ".join(f"{metric.upper()} {'n/a' if value is None else f'{value:.4f}'}"
                               for metric, value in mean[protocol].items())
            print(f"  [{protocol}] {scores}")
        if "lpips_unavailable" in mean:
            print(f"  LPIPS unavailable: {mean['lpips_unavailable']}")
        print(f"  written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
