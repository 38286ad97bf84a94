"""Turning rasterizer outputs into the 8-bit frames the browser shows, and choosing their resolution."""

import cv2
import numpy as np

from utils.images import to_uint8

RENDER_MODES = ("RGB", "Depth", "Alpha")

# Depth is colour-mapped over this percentile range of the covered pixels, so that a few stray far Gaussians do
# not squash the rest of the scene into one colour.
DEPTH_PERCENTILES = (1.0, 99.0)
# Pixels at least this opaque count as covered when choosing the depth range.
COVERED_ALPHA = 0.5


def gray_to_uint8(values):
    """(H, W) float in [0, 1] to (H, W, 3) uint8 grey."""
    gray = (np.clip(values, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def depth_to_uint8(depth, alpha):
    """Expected depth as a colour map (near: blue, far: red), faded to black where nothing is in front."""
    covered = alpha >= COVERED_ALPHA
    if not covered.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    low, high = np.percentile(depth[covered], DEPTH_PERCENTILES)
    normalised = np.clip((depth - low) / max(high - low, 1e-12), 0.0, 1.0)
    colored = cv2.applyColorMap((normalised * 255.0).round().astype(np.uint8), cv2.COLORMAP_TURBO)
    colored = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB).astype(np.float32)
    return (colored * np.clip(alpha, 0.0, 1.0)[:, :, None]).round().astype(np.uint8)


def frame_pixels(output, mode):
    """The frame of a rasterizer output (RasterOutput) in one of RENDER_MODES."""
    if mode == "RGB":
        return to_uint8(output.image)
    alpha = output.alpha.cpu().numpy()
    if mode == "Alpha":
        return gray_to_uint8(alpha)
    if mode == "Depth":
        return depth_to_uint8(output.depth.cpu().numpy(), alpha)
    raise ValueError(f"render mode must be one of {', '.join(RENDER_MODES)}, got {mode!r}")


def pad_to_aspect(image, aspect):
    """Centre image on a black frame of the given width / height ratio: the browser stretches every frame over
    its canvas, so a frame of another shape must be letterboxed to keep its proportions."""
    height, width = image.shape[:2]
    if width / height > aspect:
        padded_width, padded_height = width, max(height, round(width / aspect))
    else:
        padded_width, padded_height = max(width, round(height * aspect)), height
    padded = np.zeros((padded_height, padded_width, 3), np.uint8)
    top, left = (padded_height - height) // 2, (padded_width - width) // 2
    padded[top:top + height, left:left + width] = image
    return padded


def moving_scale(seconds_per_pixel, pixel_count, frame_seconds, minimum_scale):
    """Resolution scale (per side) at which a frame of pixel_count full-size pixels renders in about frame_seconds,
    given the measured cost per pixel; between minimum_scale and 1."""
    if seconds_per_pixel is None:
        return minimum_scale
    scale = np.sqrt(frame_seconds / max(seconds_per_pixel * pixel_count, 1e-12))
    return float(np.clip(scale, minimum_scale, 1.0))
