"""What every scene layout shares: the view and point-cloud records the readers return, and reading a view's image
at the requested resolution."""

import logging
import os
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from scene.errors import DatasetError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DOWNSCALE_FACTORS = (1, 2, 4, 8)


@dataclass
class BasicPointCloud:
    points: np.ndarray
    colors: np.ndarray


@dataclass
class CameraInfo:
    uid: int
    name: str
    image: np.ndarray
    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float
    far: float
    image_path: str


def list_images(source_path: str) -> list[str]:
    """Names of the image files in source_path/images, sorted."""
    folder = os.path.join(source_path, "images")
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: image folder not found")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise DatasetError(f"{folder}: no .png or .jpg images")
    return names


def read_image(path: str, background: np.ndarray | None) -> np.ndarray:
    """An image file as float32 RGB in [0, 1], transparent pixels composited over background (an RGB colour, which
    only images with an alpha channel need)."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image not found")
    check_jpeg_is_complete(path)
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"{path}: not a readable image (an unknown format, or truncated or corrupt data)")
    if data.dtype == np.uint8:
        image = data.astype(np.float32) / 255.0
    elif data.dtype == np.uint16:
        image = data.astype(np.float32) / 65535.0
    else:
        raise DatasetError(f"{path}: unsupported pixel type {data.dtype} (expected 8- or 16-bit images)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    if channels == 4:
        if background is None:
            raise DatasetError(f"{path}: has an alpha channel, but no background colour to composite it over")
        rgb, alpha = image[:, :, 2::-1], image[:, :, 3:]
        return np.ascontiguousarray(rgb * alpha + background * (1.0 - alpha), dtype=np.float32)
    raise DatasetError(f"{path}: unsupported image with {channels} channels")


def check_jpeg_is_complete(path: str) -> None:
    """Decode a JPEG file with Pillow, which refuses compressed data that ends early, where cv2 fills the missing
    rows with grey and only warns on stderr (truncated PNG files cv2 refuses itself)."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return
            # An eighth of the size still decodes every byte of the compressed data, in half the time.
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        # A format or a size Pillow does not take: cv2 alone decides.
        return
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: image data is truncated or corrupt ({error})") from None


def target_size(reference_width: int, reference_height: int, resolution: int, path: str) -> tuple[int, int]:
    """Output (width, height) for images whose full size is the reference size."""
    if resolution in DOWNSCALE_FACTORS:
        width, height = reference_width / resolution, reference_height / resolution
    else:
        if resolution > reference_width:
            raise DatasetError(
                f"resolution={resolution}: target width larger than the image width {reference_width} of {path}"
            )
        width, height = resolution, reference_height * resolution / reference_width
    return max(1, round(width)), max(1, round(height))


def find_image(folder: str, name: str) -> str | None:
    """Path of name in folder, or of a file with its stem and another image extension (downscaled copies are
    often re-encoded, e.g. JPEG to PNG); None when there is neither."""
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        return path
    stem = os.path.splitext(path)[0]
    for ext in IMAGE_EXTENSIONS:
        for candidate in (stem + ext, stem + ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    return None


def downscaled_copy(source_path: str, name: str, resolution: int) -> str | None:
    """The copy of images/name in an images_<resolution> folder (LLFF's pre-downscaled images), if any."""
    folder = os.path.join(source_path, f"images_{resolution}")
    if resolution == 1 or resolution not in DOWNSCALE_FACTORS or not os.path.isdir(folder):
        return None
    return find_image(folder, name)


def load_view_image(
    image_path: str, reference_size: tuple[int, int] | None, resolution: int, background: np.ndarray,
    downscaled_path: str | None = None,
) -> tuple[np.ndarray, str, tuple[float, float]]:
    """The image of one view at the requested resolution; returns (image, path read, (scale x, scale y)) where
    the scales map the reference (full-size) intrinsics to the returned image.

    reference_size: (width, height) the camera's intrinsics refer to, or None for the image file's own size.
    downscaled_path: a pre-downscaled copy, used when its size matches the requested one.
    """
    if reference_size is None:
        image = read_image(image_path, background)
        reference_size = (image.shape[1], image.shape[0])
    else:
        image = None
    width, height = target_size(*reference_size, resolution, image_path)
    if downscaled_path is not None:
        downscaled = read_image(downscaled_path, background)
        if abs(downscaled.shape[1] - width) <= 1 and abs(downscaled.shape[0] - height) <= 1:
            return downscaled, downscaled_path, scales(downscaled, reference_size)
        logger.warning(
            f"{downscaled_path}: size {downscaled.shape[1]}x{downscaled.shape[0]} does not match the requested "
            f"{width}x{height}; resizing {image_path} instead"
        )
    if image is None:
        image = read_image(image_path, background)
    # A photo of the right shape but another size (e.g. already downscaled) is fine: intrinsics scale with it.
    expected_height = image.shape[1] * reference_size[1] / reference_size[0]
    if abs(image.shape[0] - expected_height) > 1.0:
        raise DatasetError(
            f"{image_path}: size {image.shape[1]}x{image.shape[0]} does not have the aspect ratio of its camera "
            f"({reference_size[0]}x{reference_size[1]})"
        )
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image, image_path, scales(image, reference_size)


def scales(image: np.ndarray, reference_size: tuple[int, int]) -> tuple[float, float]:
    return image.shape[1] / reference_size[0], image.shape[0] / reference_size[1]
