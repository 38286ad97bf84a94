"""Generation parameters, their validation and the named presets."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from .layouts import LAYOUTS

BLUR_TYPES = ("defocus", "motion")


class SyntheticSceneError(ValueError):
    """A generation parameter is invalid, or a generated view fails its blur check."""


@dataclass(frozen=True)
class SceneConfig:
    """Everything that determines a generated scene; the same config gives byte-identical files. The
    defaults are the tiny preset.

    Blur strengths are maxima: each blurred view draws its own value uniformly between half the maximum and
    the maximum. max_aperture is the radius of the thin lens in world units (the scene spans about 2 to 10
    units); max_shake_rotation_degrees and max_shake_translation (world units) are the largest excursions of
    the hand-shake path from the mid-exposure pose.
    """

    blur: str
    layout: str = "gallery"
    seed: int = 0
    preset: Optional[str] = None
    width: int = 160
    height: int = 120
    num_views: int = 16
    hold: int = 8
    horizontal_fov_degrees: float = 60.0
    samples_per_pixel: int = 32
    num_subframes: int = 16
    max_aperture: float = 0.3
    max_shake_rotation_degrees: float = 3.0
    max_shake_translation: float = 0.05
    num_points: int = 800
    min_blur_reduction: float = 0.25
    max_blur_draws: int = 8

    def __post_init__(self):
        if self.blur not in BLUR_TYPES:
            raise SyntheticSceneError(f"unknown blur type {self.blur!r}: choose one of {', '.join(BLUR_TYPES)}")
        if self.layout not in LAYOUTS:
            raise SyntheticSceneError(f"unknown layout {self.layout!r}: choose one of {', '.join(LAYOUTS)}")
        _require_int(self, "seed", 0, None)
        _require_int(self, "width", 16, 4096)
        _require_int(self, "height", 16, 4096)
        _require_int(self, "num_views", 2, 1000, "a scene needs a sharp test view and a blurred training view")
        _require_int(self, "hold", 2, None)
        _require_int(self, "samples_per_pixel", 1, 4096)
        _require_int(self, "num_subframes", 1, 1024)
        _require_int(self, "num_points", 0, 1_000_000)
        _require_int(self, "max_blur_draws", 1, 100)
        _require_float(self, "horizontal_fov_degrees", 1.0, 150.0)
        _require_float(self, "max_aperture", 0.0, 1.0)
        _require_float(self, "max_shake_rotation_degrees", 0.0, 20.0)
        _require_float(self, "max_shake_translation", 0.0, 1.0)
        _require_float(self, "min_blur_reduction", 0.0, 0.99)
        if self.blur == "motion" and self.samples_per_pixel % self.num_subframes != 0:
            raise SyntheticSceneError(f"samples_per_pixel ({self.samples_per_pixel}) must be a multiple of "
                                      f"num_subframes ({self.num_subframes}) for motion blur")

    def as_dict(self):
        return dataclasses.asdict(self)


def _require_int(config, name, minimum, maximum, reason=""):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        allowed = f"of at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        because = f" ({reason})" if reason else ""
        raise SyntheticSceneError(f"{name} must be an integer {allowed}{because}, got {value!r}")


def _require_float(config, name, low, high):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise SyntheticSceneError(f"{name} must be a number between {low} and {high}, got {value!r}")


# The field defaults of SceneConfig are the tiny preset.
PRESETS = {
    "tiny": {},
    "bench": dict(width=400, height=300, num_views=33, samples_per_pixel=64, max_aperture=0.1,
                  max_shake_rotation_degrees=1.0, max_shake_translation=0.03, num_points=4000),
}


def preset_config(preset, blur, **overrides):
    """The config of a named preset for the given blur type; keyword arguments override single fields
    (None leaves the preset's value)."""
    if preset not in PRESETS:
        raise SyntheticSceneError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    fields = dict(PRESETS[preset], preset=preset, blur=blur)
    fields.update({name: value for name, value in overrides.items() if value is not None})
    unknown = set(fields) - {field.name for field in dataclasses.fields(SceneConfig)}
    if unknown:
        raise SyntheticSceneError(f"unknown scene parameter(s): {', '.join(sorted(unknown))}")
    return SceneConfig(**fields)
