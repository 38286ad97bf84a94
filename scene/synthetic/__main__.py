"""Command line: one scene, or the whole benchmark suite.

    python -m scene.synthetic --blur defocus|motion|mixed --preset tiny|bench --out DIR --seed S [--layout NAME|K]
                              [--shake-path cubic|walk|jerk] [--recorded-pose mid|mean|start]
                              [--aperture-blades N] [--spherical-aberration A]
    python -m scene.synthetic --suite bench --out data/bench [--seed S]
"""

import argparse
import sys

from utils.errors import report_user_errors
from utils.logs import configure_cli_logging

from .camera import RECORDED_POSES, SHAKE_PATHS
from .config import BLUR_TYPES, OUT_OF_FAMILY_SCENES, PRESETS, SUITE_BLUR_TYPES, preset_config
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
        description="Render a forward-facing scene with defocus or camera-motion blur (or both) and its sharp ground "
                    "truth, in the Deblur-NeRF layout.")
    parser.add_argument("--out", required=True, help="output folder (the suite puts one folder per scene in it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--suite", choices=sorted(PRESETS),
                        help=f"generate every layout with {' and with '.join(SUITE_BLUR_TYPES)} blur into "
                             f"OUT/<layout>_<blur>, and {len(OUT_OF_FAMILY_SCENES)} scenes of blur outside the blur "
                             f"models' family ({', '.join(OUT_OF_FAMILY_SCENES)}), with this preset; scenes already up "
                             f"to date are kept")
    parser.add_argument("--blur", choices=BLUR_TYPES,
                        help="blur of the training views, mixed being defocus and shake at once (required without "
                             "--suite)")
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
    overrides.add_argument("--shake-path", dest="shake_path", choices=SHAKE_PATHS,
                           help="cubic: a smooth Bezier curve (default, what --camera_shake fits); walk: a random walk "
                                "with inertia and sudden turns; jerk: steady with one or two abrupt jumps")
    overrides.add_argument("--recorded-pose", dest="recorded_pose", choices=RECORDED_POSES,
                           help="the pose along the shake path that the camera files record: mid-exposure (default), "
                                "the mean of the path's poses, or its start")
    overrides.add_argument("--aperture-blades", dest="aperture_blades", type=int,
                           help="a polygonal aperture of this many blades, 5 to 9, turned at random per view "
                                "(default 0: round)")
    overrides.add_argument("--spherical-aberration", dest="spherical_aberration", type=float,
                           help="0 to 1: an aperture brighter at its rim, (1 + A) / (1 - A) times its centre "
                                "(default 0: uniform)")
    overrides.add_argument("--points", dest="num_points", type=int, help="about how many sparse points to make")
    overrides.add_argument("--min-blur-reduction", type=float,
                           help="fraction by which a blurred view's mean gradient must fall below its sharp "
                                "truth (default 0.25; 0 disables the check)")
    overrides.add_argument("--max-blur-draws", type=int,
                           help="how many times a too weakly blurred view redraws its blur before failing")
    return parser


OVERRIDES = ("num_views", "width", "height", "hold", "horizontal_fov_degrees", "samples_per_pixel", "num_subframes",
             "max_aperture", "max_shake_rotation_degrees", "max_shake_translation", "num_points",
             "min_blur_reduction", "max_blur_draws", "shake_path", "recorded_pose", "aperture_blades",
             "spherical_aberration")


def main(argv=None):
    configure_cli_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    if args.suite and (args.blur or args.layout or overrides):
        parser.error("--suite generates fixed scenes; it takes only --out, --seed and --overwrite")
    if not args.suite and args.blur is None:
        parser.error("--blur is required (or use --suite)")
    with report_user_errors(parser.prog):
        if args.suite:
            generate_suite(args.out, preset=args.suite, seed=args.seed, overwrite=args.overwrite)
        else:
            config = preset_config(args.preset, args.blur, seed=args.seed, layout=args.layout, **overrides)
            generate_scene(config, args.out, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
