"""Training pairs for the image-space deblurrers: sharp crops blurred in linear light by kernels of known blur.

Sharp crops come from photographs that ship with scikit-image, from the synthetic generator's textures, and from any
folders of sharp photos given (e.g. the images_sharp/ truth of other generated scenes), each at full size, half and
a quarter (downscaled in linear light), since the generator's views show its textures shrunk. A pair takes a crop
with a margin of the kernel's radius, decodes it from sRGB to linear light, convolves it with a kernel of
kernels.draw_kernel, encodes the result back to sRGB, adds noise and rounds to 8 bits as a photo file does: the
blurred crop and the sharp crop under it, with the kernel that relates them.
"""

import functools
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skimage_data

from scene.dataset_readers import read_image
from scene.readers.views import IMAGE_EXTENSIONS
from scene.synthetic.imaging import linear_to_srgb8
from scene.synthetic.imaging import srgb_to_linear as srgb_to_linear_array
from scene.synthetic.textures import texture_images
from utils.errors import UserError
from utils.images import linear_to_srgb, srgb_to_linear

from .kernels import KERNEL_FAMILIES, draw_kernel

# scikit-image's bundled photographs (no download): colour and grey, natural, text, astronomy and microscopy.
SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "colorwheel",
                  "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
                  "text")
PYRAMID_SCALES = (1.0, 0.5, 0.25)


class SharpSourceError(UserError, ValueError):
    """A folder of sharp photos that cannot be used; the message names it."""


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """An 8-bit image as (H, W, 3): grey repeated, alpha dropped."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    return np.ascontiguousarray(np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[:, :, :3])


@functools.lru_cache(maxsize=1)
def builtin_sharp_images() -> dict:
    """scikit-image's photographs and the generator's textures by name, 8-bit sRGB (H, W, 3); built once per process,
    to be read only."""
    images = {f"skimage/{name}": as_rgb8(getattr(skimage_data, name)()) for name in SKIMAGE_PHOTOS}
    images.update({f"texture/{name}": image for name, image in texture_images().items()})
    return images


def folder_sharp_images(folder: str) -> dict:
    """The .png and .jpg photos of a folder, 8-bit sRGB (H, W, 3) by path."""
    if not os.path.isdir(folder):
        raise SharpSourceError(f"{folder}: sharp photo folder not found")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise SharpSourceError(f"{folder}: no .png or .jpg photos in it")
    return {os.path.join(folder, name): np.round(read_image(os.path.join(folder, name), np.zeros(3)) * 255.0)
            .astype(np.uint8) for name in names}


def pyramid_levels(images, smallest_side: int) -> list:
    """Each image (H, W, 3) at each of PYRAMID_SCALES (shrunk in linear light) whose sides stay at least
    smallest_side, 8-bit sRGB: the images a PairSampler crops."""
    levels = []
    for image in images:
        for scale in PYRAMID_SCALES:
            height, width = (round(side * scale) for side in image.shape[:2])
            if min(height, width) < smallest_side:
                break
            if scale == 1.0:
                levels.append(image)
                continue
            linear = cv2.resize(srgb_to_linear_array(image / 255.0), (width, height), interpolation=cv2.INTER_AREA)
            levels.append(linear_to_srgb8(linear))
    if not levels:
        raise SharpSourceError(f"no sharp photo is {smallest_side} pixels on its shorter side, as the crops and "
                               f"their kernel's margin need")
    return levels


def blur_crop(sharp_srgb: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Sharp sRGB crops (B, 3, H, W) in [0, 1] convolved with their kernels (B, k, k) in linear light, where the
    kernel covers the crop (a 'valid' convolution): sRGB (B, 3, H - k + 1, W - k + 1), not rounded."""
    batch, channels, height, width = sharp_srgb.shape
    linear = srgb_to_linear(sharp_srgb)
    # conv2d correlates; a convolution is the correlation with the kernel turned by half a turn.
    weights = kernels.flip(-2, -1).repeat_interleave(channels, dim=0)[:, None]
    blurred = F.conv2d(linear.reshape(1, batch * channels, height, width), weights, groups=batch * channels)
    return linear_to_srgb(blurred.reshape(batch, channels, *blurred.shape[-2:]).clamp(0.0, 1.0))


@dataclass
class PairBatch:
    """Blurred crops (B, 3, S, S) as 8-bit photos would hold them, the sharp crops under them (B, 3, S, S), both sRGB
    in [0, 1], and the kernels (B, k, k) that relate them."""
    blurred: torch.Tensor
    sharp: torch.Tensor
    kernels: torch.Tensor


class PairSampler:
    """Draws batches of training pairs, reproducibly from rng, from levels (pyramid_levels of sharp images, each at
    least crop + kernel_size - 1 pixels on its shorter side).

    A crop comes from a level drawn uniformly, at a uniform place, turned by a multiple of a quarter turn and maybe
    mirrored. The first kernel_bank kernels are drawn by draw_kernel over families and kept; later ones are kept
    ones drawn again, turned and mirrored likewise, which keeps them kernels of the same families (a walk path takes
    milliseconds to draw). The noise is Gaussian in sRGB with a standard deviation uniform in [0, max_noise] (the
    generator's photos carry the noise of their finite samples per pixel)."""

    def __init__(self, levels, crop: int, kernel_size: int, rng: np.random.Generator, families=KERNEL_FAMILIES,
                 max_noise: float = 0.0, kernel_bank: int = 1024):
        self.levels, self.crop, self.kernel_size, self.rng = levels, crop, kernel_size, rng
        self.families, self.max_noise, self.kernel_bank = tuple(families), max_noise, kernel_bank
        self.context = crop + kernel_size - 1
        small = [level.shape for level in levels if min(level.shape[:2]) < self.context]
        if small:
            raise ValueError(f"crops of {self.context} pixels do not fit an image of {small[0][1]}x{small[0][0]}")
        self.kernels: list[np.ndarray] = []

    def turned(self, image: np.ndarray) -> np.ndarray:
        image = np.rot90(image, int(self.rng.integers(4)))
        return image[:, ::-1] if self.rng.random() < 0.5 else image

    def sharp_context(self) -> np.ndarray:
        level = self.levels[self.rng.integers(len(self.levels))]
        top = self.rng.integers(level.shape[0] - self.context + 1)
        left = self.rng.integers(level.shape[1] - self.context + 1)
        return self.turned(level[top:top + self.context, left:left + self.context])

    def kernel(self) -> np.ndarray:
        if len(self.kernels) < self.kernel_bank:
            self.kernels.append(draw_kernel(self.rng, self.kernel_size, self.families).kernel)
            return self.kernels[-1]
        return self.turned(self.kernels[self.rng.integers(len(self.kernels))])

    def draw(self, batch: int) -> PairBatch:
        contexts = torch.from_numpy(np.stack([self.sharp_context() for _ in range(batch)]).astype(np.float32) / 255.0)
        kernels = torch.from_numpy(np.stack([self.kernel() for _ in range(batch)]))
        contexts = contexts.permute(0, 3, 1, 2)
        blurred = blur_crop(contexts, kernels)
        noise = self.rng.normal(size=blurred.shape) * self.rng.uniform(0.0, self.max_noise, size=(batch, 1, 1, 1))
        blurred = torch.round((blurred + torch.from_numpy(noise.astype(np.float32))).clamp(0.0, 1.0) * 255.0) / 255.0
        margin = self.kernel_size // 2
        sharp = contexts[:, :, margin:margin + self.crop, margin:margin + self.crop]
        return PairBatch(blurred, sharp.contiguous(), kernels)
