"""Colour encoding, image files and the sharpness measure used to certify blur."""

import os

import cv2
import numpy as np


def srgb_to_linear(srgb):
    """Decodes sRGB values in [0, 1] to linear light (IEC 61966-2-1 transfer curve)."""
    srgb = np.asarray(srgb, dtype=np.float32)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb8(linear):
    """Encodes linear radiance to 8-bit sRGB; values outside [0, 1] are clipped like a sensor saturates."""
    linear = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1.0 / 2.4) - 0.055)
    return np.round(srgb * 255.0).astype(np.uint8)


def mean_gradient_magnitude(image_rgb8):
    """Mean finite-difference gradient magnitude of the grey image, in units of full intensity per pixel."""
    grey = np.asarray(image_rgb8, dtype=np.float64).mean(axis=2) / 255.0
    dx = grey[:-1, 1:] - grey[:-1, :-1]
    dy = grey[1:, :-1] - grey[:-1, :-1]
    return float(np.sqrt(dx * dx + dy * dy).mean())


def write_png(path, image_rgb8):
    # OpenCV's PNG encoder writes no timestamps, so equal pixels give byte-identical files.
    if not cv2.imwrite(os.fspath(path), cv2.cvtColor(image_rgb8, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write image {path}")

