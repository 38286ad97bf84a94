"""Deblurring 3D Gaussian Splatting (Lee et al., ECCV 2024): the blur MLP that is used in training only, the KNN
point augmentation, depth-scaled pruning and the method's presets; and the default blur models of the camera itself
(--blur_model camera): a thin lens per photo for defocus, a rigid camera-shake path for motion blur.

    python train.py -s data/scene --config synthetic_defocus      # or real_defocus, ...: a thin lens per photo
    python train.py -s data/scene --blur motion --num_moments 4   # the camera's own path per photo
    python train.py -s data/scene --config synthetic_motion --blur_model official   # the paper's MLP
"""

from blur.augmentation import COLOR_WEIGHTINGS, AugmentationError, augment_points
from blur.camera_shake import CameraShake
from blur.model import BLUR_MODES, BlurModel, mean_image
from blur.params import BlurParams
from blur.presets import (
    DEBLUR_TRAINING_DEFAULTS,
    PresetError,
    blur_model_defaults,
    cpu_scale_options,
    preset_names,
    read_preset,
    scaled_schedule,
)
from blur.pruning import depth_scaled_thresholds, prune_by_depth_scaled_opacity
from blur.storage import (
    BLUR_MODEL_FILE,
    BlurModelError,
    blur_model_from_state,
    blur_model_path,
    blur_model_state,
    load_blur_model,
    save_blur_model,
)

__all__ = [
    "BLUR_MODEL_FILE",
    "BLUR_MODES",
    "COLOR_WEIGHTINGS",
    "DEBLUR_TRAINING_DEFAULTS",
    "AugmentationError",
    "BlurModel",
    "BlurModelError",
    "BlurParams",
    "CameraShake",
    "PresetError",
    "augment_points",
    "blur_model_defaults",
    "blur_model_from_state",
    "blur_model_path",
    "blur_model_state",
    "cpu_scale_options",
    "depth_scaled_thresholds",
    "load_blur_model",
    "mean_image",
    "preset_names",
    "prune_by_depth_scaled_opacity",
    "read_preset",
    "save_blur_model",
    "scaled_schedule",
]
