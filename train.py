"""Train 3D Gaussians on a scene, optionally from blurry photos: with a model of the camera's blur (the default
--blur_model camera) or with the blur MLP of Deblurring 3D Gaussian Splatting (--blur_model official).

    python train.py -s data/scene [-m output/name] [--blur none] [--iterations 20000] [--resolution 4] [--eval]
    python train.py -s data/scene --config synthetic_defocus [--iterations 3000]
    python train.py -s data/scene --config synthetic_defocus --blur_model official   # the paper's exact method

The options and the loop live in the training package; this is its command line, with the option names of the
original 3DGS, and it records the run's options in <model>/cfg_args.
"""

import sys
from collections.abc import Sequence

from training import TrainingOptions, build_parser, explicit_options, run_training, training_options
from utils.errors import report_user_errors
from utils.logs import configure_cli_logging

PROGRAM = "train.py"


def options_from_command_line(argv: Sequence[str]) -> TrainingOptions:
    return training_options(explicit_options(argv, build_parser(prog=PROGRAM)))


def main(argv: Sequence[str] | None = None) -> None:
    configure_cli_logging()
    with report_user_errors(PROGRAM):
        options = options_from_command_line(sys.argv[1:] if argv is None else argv)
        print(f"Output folder: {options.model_path}")
        run_training(options)


if __name__ == "__main__":
    main()
