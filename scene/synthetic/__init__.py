"""Synthetic blur benchmark scenes with known sharp ground truth, written in the Deblur-NeRF layout.

    python -m scene.synthetic --blur defocus --preset tiny --out data/tiny_defocus --seed 0
    python -m scene.synthetic --suite bench --out data/bench
"""

from .config import (
    BLUR_TYPES,
    OUT_OF_FAMILY_SCENES,
    PRESETS,
    SUITE_BLUR_TYPES,
    SceneConfig,
    SyntheticSceneError,
    preset_config,
)
from .generator import SHARP_IMAGES_FOLDER, generate_scene, generate_suite, suite_configs, view_name
from .layouts import LAYOUTS

__all__ = ["BLUR_TYPES", "LAYOUTS", "OUT_OF_FAMILY_SCENES", "PRESETS", "SHARP_IMAGES_FOLDER", "SUITE_BLUR_TYPES",
           "SceneConfig", "SyntheticSceneError", "generate_scene", "generate_suite", "preset_config", "suite_configs",
           "view_name"]
