"""The networks of the image-space baselines: the analysis-synthesis pair (Kaufman and Fattal, CVPR 2020) and the
blur converter and discriminator of Blur2Blur (Pham et al., CVPR 2024).

Images enter and leave as sRGB in [0, 1], (B, 3, H, W); kernels are (B, k, k), see kernels.py.
"""

import torch
import torch.nn.functional as F
from torch import nn

from utils.images import linear_to_srgb

# Keeps the normalised cross-correlation finite on a flat crop, whose features have no variance.
FEATURE_EPSILON = 1e-4


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, dilation * (kernel_size // 2), dilation)


def zeroed(layer: nn.Conv2d) -> nn.Conv2d:
    """The convolution with its weights and bias zero, so that what it adds starts as nothing."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def cross_correlations(features: torch.Tensor, radius: int) -> torch.Tensor:
    """The normalised cross-correlation of every pair of feature channels at every shift up to radius pixels:
    (B, C, H, W) -> (B, C * C, 2 radius + 1, 2 radius + 1), where channel i * C + j at shift u is the mean over the
    crop of f_i(x) f_j(x + u), each channel made zero-mean and of unit variance first.

    A blur shows in the correlations of an image's derivatives at shifts within the kernel's reach (they are those of
    the sharp image, nearly white, convolved with the kernel's autocorrelation); correlating learned features, and
    pairs of them, generalises that."""
    batch, channels, height, width = features.shape
    centred = features - features.mean(dim=(2, 3), keepdim=True)
    normalised = centred / (centred.square().mean(dim=(2, 3), keepdim=True) + FEATURE_EPSILON).sqrt()
    # Zero padding by the radius keeps the circular correlation of the FFT from wrapping shifts within it around.
    size = (height + radius, width + radius)
    spectra = torch.fft.rfft2(normalised, s=size)
    products = spectra.conj()[:, :, None] * spectra[:, None]
    correlations = torch.fft.irfft2(products, s=size).reshape(batch, channels * channels, *size)
    shifted = correlations.roll((radius, radius), dims=(2, 3))[:, :, :2 * radius + 1, :2 * radius + 1]
    return shifted / (height * width)


# The horizontal and vertical derivatives of image_derivatives.
DERIVATIVE_CHANNELS = 2


def image_derivatives(images: torch.Tensor) -> torch.Tensor:
    """The horizontal and vertical differences of the grey image (B, 2, H, W), the last ones repeated."""
    grey = images.mean(dim=1, keepdim=True)
    horizontal = F.pad(grey[..., :, 1:] - grey[..., :, :-1], (0, 1, 0, 0), mode="replicate")
    vertical = F.pad(grey[..., 1:, :] - grey[..., :-1, :], (0, 0, 0, 1), mode="replicate")
    return torch.cat([horizontal, vertical], dim=1)


class AnalysisNetwork(nn.Module):
    """Estimates a photo's blur kernel (Kaufman and Fattal's analysis network).

    Features at three scales (two 3x3 convolutions per scale, halving the size between scales), reduced by a 1x1
    convolution to correlation_channels and joined by the grey image's derivatives at that scale (the classical
    statistic, handed over rather than learnt) before their cross-correlations (cross_correlations) at shifts up to
    the kernel's radius at that scale; the kernel is rebuilt from coarse to fine, each scale's estimate upsampled to the
    next and refined by convolutions together with that scale's correlations. A softmax over the kernel's pixels
    makes it non-negative and sum to 1."""

    def __init__(self, kernel_size: int, width: int, correlation_channels: int, scales: int = 3):
        super().__init__()
        self.radii = [(kernel_size // 2) >> scale for scale in range(scales)]
        widths = [width] + [2 * width] * (scales - 1)
        self.extract = nn.ModuleList()
        self.reduce = nn.ModuleList()
        previous = 3
        for channels in widths:
            self.extract.append(nn.Sequential(conv(previous, channels), nn.ReLU(), conv(channels, channels), nn.ReLU()))
            self.reduce.append(conv(channels, correlation_channels, 1))
            previous = channels
        pairs = (correlation_channels + DERIVATIVE_CHANNELS) ** 2
        self.rebuild = nn.ModuleList(
            nn.Sequential(conv(pairs + (0 if scale == scales - 1 else width), width), nn.ReLU(), conv(width, width),
                          nn.ReLU())
            for scale in range(scales))
        self.to_logits = conv(width, 1)

    def forward(self, blurred: torch.Tensor) -> torch.Tensor:
        correlations = []
        features, image = blurred, blurred
        for scale, (extract, reduce) in enumerate(zip(self.extract, self.reduce)):
            if scale:
                features, image = F.avg_pool2d(features, 2), F.avg_pool2d(image, 2)
            features = extract(features)
            correlated = torch.cat([reduce(features), image_derivatives(image)], dim=1)
            correlations.append(cross_correlations(correlated, self.radii[scale]))
        estimate = self.rebuild[-1](correlations[-1])
        for scale in reversed(range(len(correlations) - 1)):
            inputs = correlations[scale]
            # Odd sizes with their corners aligned keep the zero shift at the centre pixel of every scale.
            estimate = F.interpolate(estimate, size=inputs.shape[-2:], mode="bilinear", align_corners=True)
            estimate = self.rebuild[scale](torch.cat([inputs, estimate], dim=1))
        logits = self.to_logits(estimate).flatten(1)
        return torch.softmax(logits, dim=1).reshape(len(blurred), *estimate.shape[-2:])


class KernelEncoder(nn.Module):
    """A kernel (B, k, k) as a code (B, code_size) that guides the synthesis network."""

    def __init__(self, kernel_size: int, code_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.layers = nn.Sequential(nn.Linear(kernel_size ** 2, 4 * code_size), nn.ReLU(),
                                    nn.Linear(4 * code_size, code_size), nn.ReLU())

    def forward(self, kernels: torch.Tensor) -> torch.Tensor:
        # Scaled so that a uniform kernel's entries are 1: the encoder sees every blur extent on the same footing.
        return self.layers(kernels.flatten(1) * self.kernel_size ** 2)


class KernelGuidance(nn.Module):
    """Multiplies and offsets each feature channel by amounts computed from the kernel's code: the code (B, D, h, w),
    either one per crop (h = w = 1) or a map that varies across the photo, is resized to the features. Starts as
    the identity."""

    def __init__(self, code_size: int, channels: int):
        super().__init__()
        self.modulation = zeroed(conv(code_size, 2 * channels, 1))

    def forward(self, features: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        modulation = self.modulation(codes)
        if modulation.shape[-2:] != (1, 1):
            modulation = F.interpolate(modulation, size=features.shape[-2:], mode="bilinear", align_corners=False)
        scale, offset = modulation.chunk(2, dim=1)
        return features * (1.0 + scale) + offset


def wiener_deconvolution(blurred_linear: torch.Tensor, kernels: torch.Tensor, regularisations) -> torch.Tensor:
    """Wiener-like deconvolutions of linear-light crops (B, 3, H, W) by their kernels (B, k, k), one per
    regularisation (the noise-to-signal power ratio assumed): (B, 3 * R, H, W), sRGB in [0, 1].

    The crop is extended by mirroring to twice its size, which makes it periodic without a jump at its edges, so the
    FFT's circular convolution does not ring there."""
    height, width = blurred_linear.shape[-2:]
    extended = torch.cat([blurred_linear, blurred_linear.flip(-1)], dim=-1)
    extended = torch.cat([extended, extended.flip(-2)], dim=-2)
    size = extended.shape[-2:]
    radius = kernels.shape[-1] // 2
    # The kernel's centre goes to the origin of the periodic grid.
    padded = F.pad(kernels, (0, size[1] - kernels.shape[-1], 0, size[0] - kernels.shape[-2]))
    transfer = torch.fft.rfft2(padded.roll((-radius, -radius), dims=(-2, -1)))[:, None]
    spectrum = torch.fft.rfft2(extended)
    power = transfer.abs().square()
    restored = [torch.fft.irfft2(spectrum * transfer.conj() / (power + regularisation), s=size)[..., :height, :width]
                for regularisation in regularisations]
    return linear_to_srgb(torch.cat(restored, dim=1).clamp(0.0, 1.0))


class SynthesisNetwork(nn.Module):
    """Deblurs a photo guided by its kernel (Kaufman and Fattal's synthesis network): a three-level U-Net whose
    blocks are modulated by the kernel's code (KernelGuidance), fed the blurred photo and its Wiener
    deconvolutions by the kernel. It outputs, per pixel, a convex mixture of those candidates plus a correction;
    it starts as their plain mean."""

    def __init__(self, width: int, code_size: int, wiener_count: int):
        super().__init__()
        inputs = 3 * (1 + wiener_count)
        self.encode1 = conv(inputs, width)
        self.refine1 = conv(width, width)
        self.down2 = conv(width, 2 * width, 3, 2)
        self.encode2 = conv(2 * width, 2 * width)
        self.down3 = conv(2 * width, 4 * width, 3, 2)
        self.middle = nn.ModuleList(conv(4 * width, 4 * width, dilation=dilation) for dilation in (1, 2, 4))
        self.up2 = conv(4 * width, 2 * width)
        self.decode2 = conv(4 * width, 2 * width)
        self.up1 = conv(2 * width, width)
        self.decode1 = conv(2 * width, width)
        self.to_mixture = zeroed(conv(width, 3 + 1 + wiener_count))
        self.guides = nn.ModuleList(KernelGuidance(code_size, channels)
                                    for channels in (width, 2 * width, 4 * width, 2 * width, width))

    def forward(self, blurred: torch.Tensor, wiener: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """blurred (B, 3, H, W), H and W multiples of 4; wiener (B, 3R, H, W); codes (B, D, 1, 1) or (B, D, H, W)."""
        level1 = F.relu(self.refine1(F.relu(self.guides[0](self.encode1(torch.cat([blurred, wiener], 1)), codes))))
        level2 = F.relu(self.guides[1](self.encode2(F.relu(self.down2(level1))), codes))
        level3 = F.relu(self.down3(level2))
        level3 = F.relu(self.guides[2](self.middle[0](level3), codes))
        for layer in self.middle[1:]:
            level3 = level3 + F.relu(layer(level3))
        up2 = F.relu(self.up2(F.interpolate(level3, scale_factor=2.0, mode="nearest")))
        decoded2 = F.relu(self.guides[3](self.decode2(torch.cat([up2, level2], 1)), codes))
        up1 = F.relu(self.up1(F.interpolate(decoded2, scale_factor=2.0, mode="nearest")))
        decoded1 = F.relu(self.guides[4](self.decode1(torch.cat([up1, level1], 1)), codes))
        mixture = self.to_mixture(decoded1)
        weights = torch.softmax(mixture[:, 3:], dim=1)[:, :, None]
        candidates = torch.stack([blurred, *wiener.split(3, dim=1)], dim=1)
        return (weights * candidates).sum(dim=1) + mixture[:, :3]


class BlurConverter(nn.Module):
    """Blur2Blur's translator: maps a photo of unknown blur to one of the known blur, as a correction of the photo by
    a few dilated convolutions (reaching about 30 pixels), initialised to the identity."""

    def __init__(self, width: int, dilations=(1, 2, 4, 8, 1)):
        super().__init__()
        self.first = conv(3, width)
        self.layers = nn.ModuleList(conv(width, width, dilation=dilation) for dilation in dilations)
        self.to_correction = zeroed(conv(width, 3))

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.first(photos))
        for layer in self.layers:
            features = features + F.relu(layer(features))
        return photos + self.to_correction(features)


class PatchDiscriminator(nn.Module):
    """Scores each patch of about 40 pixels of a photo for how much its blur looks like the known blur's."""

    def __init__(self, width: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 3, 1, 1))

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        return self.layers(photos)
