"""Generation parameters, their validation and the named presets."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

from utils.errors import UserError

from .camera import APERTURE_BLADES, MIN_SUBFRAMES_OFF_CUBIC, RECORDED_POSES, SHAKE_PATHS
from .layouts import LAYOUTS

# mixed: defocus and camera shake in the same photograph.
BLUR_TYPES = ("defocus", "motion", "mixed")
SHAKING_BLUR_TYPES = ("motion", "mixed")
# The suite makes every layout with each of these.
SUITE_BLUR_TYPES = ("defocus", "motion")
LENS_BLUR_TYPES = ("defocus", "mixed")
# Fields added after the first scenes were made: scene.json leaves them out while they keep these defaults, so
# those scenes' files stay byte for byte what they were (and generate_suite finds them up to date).
LATER_FIELD_DEFAULTS = {"shake_path": "cubic", "recorded_pose": "mid", "aperture_blades": 0,
                        "spherical_aberration": 0.0}


class SyntheticSceneError(UserError, ValueError):
    """A generation parameter is invalid, or a generated view fails its blur check."""


@dataclass(frozen=True)
class SceneConfig:
    """Everything that determines a generated scene; the same config gives byte-identical files. The
    defaults are the tiny preset.

    Blur strengths are maxima: each blurred view draws its own value uniformly between half the maximum and
    the maximum. max_aperture is the radius of the thin lens in world units (the scene spans about 2 to 10
    units); max_shake_rotation_degrees and max_shake_translation (world units) are the largest excursions of
    the hand-shake path from the mid-exposure pose.

    The defaults draw blur from the family the blur models assume; the last fields leave it. shake_path: cubic
    (a smooth Bezier curve), walk (a random walk with inertia and sudden turns) or jerk (steady, with one or two
    abrupt jumps). recorded_pose: which pose of the path the camera files give, mid (mid-exposure), mean (the
    mean of the sub-frame poses, nearer what SfM finds in blurry photos) or start. aperture_blades: 0 for a round
    aperture, or 5 to 9 straight blades making a polygon of the same area, turned at random per view.
    spherical_aberration: 0 for a uniformly lit aperture, up to 1 for one that is brighter at its rim (rim to
    centre brightness (1 + A) / (1 - A)).
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
    shake_path: str = "cubic"
    recorded_pose: str = "mid"
    aperture_blades: int = 0
    spherical_aberration: float = 0.0

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
        if self.blur in SHAKING_BLUR_TYPES and self.samples_per_pixel % self.num_subframes != 0:
            raise SyntheticSceneError(f"samples_per_pixel ({self.samples_per_pixel}) must be a multiple of "
                                      f"num_subframes ({self.num_subframes}) for {self.blur} blur")
        _require_choice(self, "shake_path", SHAKE_PATHS)
        _require_choice(self, "recorded_pose", RECORDED_POSES)
        _require_int(self, "aperture_blades", 0, APERTURE_BLADES.stop - 1)
        if 0 < self.aperture_blades < APERTURE_BLADES.start:
            raise SyntheticSceneError(f"aperture_blades must be 0 (a round aperture) or {APERTURE_BLADES.start} to "
                                      f"{APERTURE_BLADES.stop - 1}, got {self.aperture_blades}")
        _require_float(self, "spherical_aberration", 0.0, 1.0)
        shake_options = [name for name in ("shake_path", "recorded_pose")
                         if getattr(self, name) != LATER_FIELD_DEFAULTS[name]]
        if shake_options and self.blur not in SHAKING_BLUR_TYPES:
            raise SyntheticSceneError(f"{shake_options[0]} applies to {' or '.join(SHAKING_BLUR_TYPES)} blur, "
                                      f"not {self.blur}")
        if self.shake_path != "cubic" and self.num_subframes < MIN_SUBFRAMES_OFF_CUBIC:
            raise SyntheticSceneError(f"num_subframes must be at least {MIN_SUBFRAMES_OFF_CUBIC} for a "
                                      f"{self.shake_path} shake path (a cubic passes through 4 poses exactly), "
                                      f"got {self.num_subframes}")
        lens_options = [name for name in ("aperture_blades", "spherical_aberration") if getattr(self, name)]
        if lens_options and self.blur not in LENS_BLUR_TYPES:
            raise SyntheticSceneError(f"{lens_options[0]} applies to {' or '.join(LENS_BLUR_TYPES)} blur, "
                                      f"not {self.blur}")

    def as_dict(self):
        fields = dataclasses.asdict(self)
        return {name: value for name, value in fields.items()
                if name not in LATER_FIELD_DEFAULTS or value != LATER_FIELD_DEFAULTS[name]}

    @classmethod
    def from_dict(cls, fields, source="config"):
        """The config that as_dict gave (fields left out take their defaults); source names it in errors."""
        if not isinstance(fields, dict):
            raise SyntheticSceneError(f"{source}: expected an object of scene parameters, got {fields!r}")
        unknown = set(fields) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise SyntheticSceneError(f"{source}: unknown scene parameter(s): {', '.join(sorted(unknown))}")
        if "blur" not in fields:
            raise SyntheticSceneError(f"{source}: no blur parameter")
        return cls(**fields)

    def departures(self):
        """How the blur departs from what the blur models assume (one kind of blur per photograph, a cubic shake
        path recorded at mid-exposure, an ideal thin lens with a round, uniformly lit aperture); empty when the
        scene stays within that family."""
        found = []
        if self.blur == "mixed":
            found.append("defocus and shake")
        if self.shake_path != "cubic":
            found.append(f"{self.shake_path} path")
        if self.recorded_pose != "mid":
            found.append(f"{self.recorded_pose} pose")
        if self.aperture_blades:
            found.append(f"{self.aperture_blades} blades")
        if self.spherical_aberration:
            found.append("spherical aberration")
        return found


def _require_int(config, name, minimum, maximum, reason=""):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        allowed = f"of at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        because = f" ({reason})" if reason else ""
        raise SyntheticSceneError(f"{name} must be an integer {allowed}{because}, got {value!r}")


def _require_choice(config, name, choices):
    value = getattr(config, name)
    if value not in choices:
        raise SyntheticSceneError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


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


# The suite's scenes beyond every layout with defocus and with motion blur: blur from outside the models' family,
# on one layout only, since each costs a row of trainings in the benchmark. A jerk's jump leaves a double image whose
# edges stay sharp, so its mean gradient falls less than under a smear of the same extent: its check asks for less.
# Shaken ones record the path's mean pose, as SfM on real blurry photos recovers, not the mid-exposure pose that the
# camera-path model passes through.
OUT_OF_FAMILY_SCENES: dict[str, dict[str, object]] = {
    "gallery_motion_walk": dict(blur="motion", layout="gallery", shake_path="walk", recorded_pose="mean"),
    "gallery_motion_jerk": dict(blur="motion", layout="gallery", shake_path="jerk", recorded_pose="mean",
                                min_blur_reduction=0.15),
    "gallery_defocus_blades": dict(blur="defocus", layout="gallery", aperture_blades=6),
    "gallery_defocus_aberration": dict(blur="defocus", layout="gallery", spherical_aberration=0.7),
    "gallery_mixed": dict(blur="mixed", layout="gallery", recorded_pose="mean"),
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
