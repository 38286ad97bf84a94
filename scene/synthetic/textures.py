"""Surface textures: the photographs scikit-image ships, dressed with text and fine stripes so that blur shows.

Every texture is fixed (independent of the scene seed); layouts choose which texture goes where.
"""

import functools

import cv2
import numpy as np
from skimage import data as skimage_data

from .imaging import srgb_to_linear

MAX_TEXTURE_SIDE = 512

# Photographs bundled with scikit-image itself, so they load without a network connection.
PHOTOGRAPHS = {
    "astronaut": skimage_data.astronaut,
    "coffee": skimage_data.coffee,
    "chelsea": skimage_data.chelsea,
    "rocket": skimage_data.rocket,
    "hubble": skimage_data.hubble_deep_field,
    "cells": skimage_data.immunohistochemistry,
}

# Grey photographs used as tiling materials, with the sRGB tint that turns them into a plausible surface.
MATERIALS = {
    "brick": (skimage_data.brick, (205, 120, 90)),
    "gravel": (skimage_data.gravel, (190, 175, 150)),
    "page": (skimage_data.page, (255, 250, 235)),
}


class Texture:
    """An image in linear light, sampled bilinearly and repeated outside [0, 1)."""

    def __init__(self, image_srgb8):
        texels = srgb_to_linear(image_srgb8.astype(np.float32) / 255.0)
        self.height, self.width = texels.shape[:2]
        # One wrapped-around extra column and row let bilinear lookups take the next texel without a modulo.
        padded = np.concatenate([texels, texels[:, :1]], axis=1)
        self._padded_texels = np.concatenate([padded, padded[:1]], axis=0).reshape(-1, 3)

    def sample(self, u, v):
        """Colour (N, 3) at texture coordinates u (across, left to right) and v (down, top to bottom)."""
        x = u * np.float32(self.width) - np.float32(0.5)
        y = v * np.float32(self.height) - np.float32(0.5)
        x0 = np.floor(x)
        y0 = np.floor(y)
        wx = (x - x0)[:, None]
        wy = (y - y0)[:, None]
        stride = self.width + 1
        top_left = (y0.astype(np.int32) % self.height) * stride + x0.astype(np.int32) % self.width
        top = self._padded_texels.take(top_left, axis=0)
        top += (self._padded_texels.take(top_left + 1, axis=0) - top) * wx
        bottom = self._padded_texels.take(top_left + stride, axis=0)
        bottom += (self._padded_texels.take(top_left + stride + 1, axis=0) - bottom) * wx
        return top + (bottom - top) * wy


def _fit_to_max_side(image):
    scale = MAX_TEXTURE_SIDE / max(image.shape[:2])
    if scale >= 1.0:
        return np.ascontiguousarray(image)
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _pseudo_words(rng, count):
    consonants = list("bcdfghklmnprstvz")
    vowels = list("aeiou")
    words = []
    for _ in range(count):
        syllables = rng.integers(1, 4)
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        if rng.random() < 0.3:
            word += str(rng.integers(0, 1000))
        words.append(word)
    return words


def _striped_frame(image, width=12, period=4):
    """Frames the image with stripes running across the border, a few texels apart."""
    framed = image.copy()
    height, full_width = image.shape[:2]
    rows, columns = np.mgrid[0:height, 0:full_width]
    stripe_is_dark = ((rows + columns) // (period // 2)) % 2 == 0
    border = (rows < width) | (rows >= height - width) | (columns < width) | (columns >= full_width - width)
    framed[border & stripe_is_dark] = 20
    framed[border & ~stripe_is_dark] = 235
    return framed


def _with_caption(image, caption):
    """Adds a white band of black text along the bottom edge, inside the frame."""
    captioned = image.copy()
    height, width = image.shape[:2]
    band_top = height - 52
    captioned[band_top:height - 12, 12:width - 12] = 245
    cv2.putText(captioned, caption, (20, height - 22), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (10, 10, 10), 2,
                cv2.LINE_AA)
    return captioned


def _photograph(name, loader):
    image = _fit_to_max_side(loader())
    # The caption is the photograph's name and a made-up catalogue number: small print that blur erases.
    return _striped_frame(_with_caption(image, f"{name.upper()} 0{len(name)}7-{sum(map(ord, name)) % 100}"))


def _material(loader, tint):
    grey = _fit_to_max_side(loader()).astype(np.float32) / 255.0
    return np.round(grey[:, :, None] * np.asarray(tint, np.float32)).astype(np.uint8)


def _siemens_star(size, spokes):
    coordinates = np.arange(size) - (size - 1) / 2.0
    x, y = np.meshgrid(coordinates, coordinates)
    dark = np.sin(spokes * np.arctan2(y, x)) > 0
    inside = np.hypot(x, y) <= size / 2.0 - 1
    star = np.full((size, size), 255, np.uint8)
    star[inside & dark] = 0
    return star


def _resolution_chart():
    """A white board with a Siemens star, bar groups of decreasing period and lines of text."""
    chart = np.full((512, 512, 3), 250, np.uint8)
    chart[16:256, 16:256] = _siemens_star(240, 36)[:, :, None]
    for group, period in enumerate((16, 10, 6, 4, 2)):
        left = 280 + group * 46
        offsets = np.arange(100)
        bars = np.where((offsets // (period // 2)) % 2 == 0, 0, 250).astype(np.uint8)
        chart[20:120, left:left + 40] = bars[None, :40, None]
        chart[140:240, left:left + 40] = bars[:, None, None]
    rng = np.random.default_rng(7)
    for line, scale in enumerate((1.2, 1.0, 0.8, 0.6, 0.5, 0.4, 0.4, 0.35)):
        text = " ".join(_pseudo_words(rng, 6))
        cv2.putText(chart, text, (16, 290 + line * 28), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return chart


def _poster():
    """A paper-coloured sheet covered in lines of coloured text of several sizes and fonts."""
    poster = np.full((512, 512, 3), (235, 225, 200), np.uint8)
    rng = np.random.default_rng(11)
    fonts = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
             cv2.FONT_HERSHEY_TRIPLEX)
    baseline = 30
    while baseline < 500:
        scale = float(rng.choice((0.5, 0.7, 0.9, 1.3)))
        colour = tuple(int(c) for c in rng.integers(0, 140, size=3))
        font = fonts[rng.integers(0, len(fonts))]
        cv2.putText(poster, " ".join(_pseudo_words(rng, 8)), (8, baseline), font, scale, colour,
                    1 + int(scale > 1.0), cv2.LINE_AA)
        baseline += int(34 * scale) + 6
    return poster


@functools.lru_cache(maxsize=1)
def texture_images():
    """Every texture's 8-bit sRGB image (H, W, 3) by name; built once per process because decoding and drawing
    them takes a moment."""
    images = {name: _photograph(name, loader) for name, loader in PHOTOGRAPHS.items()}
    for name, (loader, tint) in MATERIALS.items():
        images[name] = _material(loader, tint)
    images["chart"] = _resolution_chart()
    images["poster"] = _poster()
    return images


@functools.lru_cache(maxsize=1)
def texture_library():
    """All textures by name, sampled in linear light."""
    return {name: Texture(image) for name, image in texture_images().items()}
