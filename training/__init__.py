"""Training 3D Gaussians, with or without a model of the photos' blur: the run's options (options), the loop and
the run around it (loop), adaptive density control (density), the blur model's share (blur_model).

    from training import run_training, training_options
    run_training(training_options({"source_path": "data/scene", "model_path": "output/run", "blur": "defocus"}))

train.py is this package's command line; demo.py and the benchmarks call it with the same option names.
"""
from training.errors import TrainingError
from training.loop import TrainedModel, run_training, train_gaussians
from training.options import (
    OptionsError,
    RunOptions,
    TrainingOptions,
    build_parser,
    explicit_options,
    layered_values,
    training_options,
    with_cpu_scale,
)

__all__ = [
    "OptionsError",
    "RunOptions",
    "TrainedModel",
    "TrainingError",
    "TrainingOptions",
    "build_parser",
    "explicit_options",
    "layered_values",
    "run_training",
    "train_gaussians",
    "training_options",
    "with_cpu_scale",
]
