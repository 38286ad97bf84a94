"""Command line: one scene, or the whole benchmark suite.

    python -m scene.synthetic --blur defocus|motion --preset tiny|bench --out DIR --seed S [--layout NAME|K]
    python -m scene.synthetic --suite bench --out data/bench [--seed S]
"""

import argparse
import sys

from .config import BLUR_TYPES, PRESETS, SyntheticSceneError, preset_config
from .generator import generate_scene, generate_suite
from .layouts import LAYOUTS


def layout_name(text):
    """A layout given by name or by its position in the list of layouts."""
    if text.isdigit():
        index = int(text)
        if index >= len(LAYOUTS):
            raise argparse.ArgumentTypeError(f"layout index {index} is out of range 0..{len(LAYOUTS) - 1}")
        return list(LAYOUTS)[index]
    if text not in LAYOUTS:
        raise argparse.ArgumentTypeError(f"unknown layout {text!r}: choose one of {', '.join(LAYOUTS)} "
                                         f"or an index 0..{len(LAYOUTS) - 1}")
    return text


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m scene.synthetic",
        description="Render a forward-facing scene with defocus or camera-motion blur and its sharp ground truth, "
                    "in the Deblur-NeRF layout.")
    parser.add_argument("--out", required=True, help="output folder (the suite puts one folder per scene in it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", choices=sorted(PRESETS),
                        help=f"generate every layout with every blur type ({len(LAYOUTS) * len(BLUR_TYPES)} scenes) "
                             f"with this preset, into OUT/<layout>_<blur>; scenes already up to date are kept")
    parser.add_argument("--blur", choices=BLUR_TYPES, help="blur of the training views (required without --suite)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                        help="tiny: 160x120, 16 views; bench: 400x300, 33 views (default: tiny)")
    parser.add_argument("--layout", type=layout_name, default=None,
                        help=f"scene layout, by name or index: {', '.join(LAYOUTS)} (default: {next(iter(LAYOUTS))})")
    parser.add_argument("--overwrite", action="store_true", help="replace a scene already generated in OUT")
    overrides = parser.add_argument_group("overrides of the preset")
    overrides.add_argument("--views", dest="num_views", type=int)
    overrides.add_argument("--width", type=int)
    overrides.add_argument("--height", type=int)
    overrides.add_argument("--hold", type=int, help="every hold-th view is a sharp test view (default 8)")
    overrides.add_argument("--fov", dest="horizontal_fov_degrees", type=float, help="horizontal field of view, degrees")
    overrides.add_argument("--spp", dest="samples_per_pixel", type=int, help="rays per pixel")
    overrides.add_argument("--subframes", dest="num_subframes", type=int,
                           help="poses along the shake path of a motion-blurred exposure")
    overrides.add_argument("--aperture", dest="max_aperture", type=float,
                           help="largest thin-lens radius, world units (views draw half of it to all of it)")
    overrides.add_argument("--shake-rotation", dest="max_shake_rotation_degrees", type=float,
                           help="largest rotation of the shake path from the mid-exposure pose, degrees")
    overrides.add_argument("--shake-translation", dest="max_shake_translation", type=float,
                           help="largest translation of the shake path from the mid-exposure pose, world units")
    overrides.add_argument("--points", dest="num_points", type=int, help="about how many sparse points to make")
    overrides.add_argument("--min-blur-reduction", type=float,
                           help="fraction by which a blurred view's mean gradient must fall below its sharp "
                                "truth (default 0.25; 0 disables the check)")
    overrides.add_argument("--max-blur-draws", type=int,
                           help="how many times a too weakly blurred view redraws its blur before failing")
    return parser


OVERRIDES = ("num_views", "width", "height", "hold", "horizontal_fov_degrees", "samples_per_pixel", "num_subframes",
             "max_aperture", "max_shake_rotation_degrees", "max_shake_translation", "num_points",
             "min_blur_reduction", "max_blur_draws")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    try:
        if args.suite:
            if args.blur or args.layout or overrides:
                parser.error("--suite generates fixed scenes; it takes only --out, --seed and --overwrite")
            generate_suite(args.out, preset=args.suite, seed=args.seed, overwrite=args.overwrite)
            return 0
        if args.blur is None:
            parser.error("--blur is required (or use --suite)")
        config = preset_config(args.preset, args.blur, seed=args.seed, layout=args.layout, **overrides)
        generate_scene(config, args.out, overwrite=args.overwrite)
    except SyntheticSceneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
