"""Command-line options of the deblurring method, in the style of arguments.py."""

from argparse import Namespace

from arguments import Option, ParamGroup
from blur.augmentation import COLOR_WEIGHTINGS
from blur.camera_shake import PATH_ANCHORS
from blur.presets import BLUR_MODEL_DEFAULTS, BLUR_MODELS, as_flags

BLUR_CHOICES = ("none", "defocus", "motion")


class BlurParams(ParamGroup):
    title = "Deblurring Parameters (with --blur defocus or motion)"
    options = (
        Option("blur", "none", "blur model used during training", choices=BLUR_CHOICES),
        Option("blur_model", "camera",
               "camera (the default): the camera's own blur, a thin lens per training photo for defocus (as "
               f"{as_flags(BLUR_MODEL_DEFAULTS['camera']['defocus'])}) and the camera's rigid path through the "
               "exposure for motion, each render through the photo's thin lens, averaged in linear light (as "
               f"{as_flags(BLUR_MODEL_DEFAULTS['camera']['motion'])}); official: the paper's per-Gaussian MLP and "
               "KNN augmentation, as the official code trains them. Options typed on the command line or set by "
               "--config override these",
               choices=BLUR_MODELS),
        Option("num_moments", 4, "motion: renders along the camera motion besides the unshifted one (M)"),
        Option("lambda_s", 0.01, "weight of the MLP's outputs in the scale and rotation factors"),
        Option("lambda_p", 0.01, "motion: weight of the MLP's position offsets"),
        Option("max_clamp", 1.1, "largest scale and rotation factor (the smallest is 1)"),
        Option("blur_lr", 0.001, "learning rate of the blur MLP"),
        Option("initial_scale_factor", None,
               "start the scale factors here (in [1, --max_clamp]) rather than at 1, where the official "
               "initialisation leaves them clamped and without gradient", type=float),
        Option("normalize_rotations", False,
               "renormalise each quaternion after the MLP's factors (the official code does not)"),
        Option("lens_blur", False,
               "blur each Gaussian by a thin lens learned per training view (aperture and focus), keeping its "
               "coverage. defocus: implies --normalize_rotations; motion: needs --camera_shake, and defocuses every "
               "render along the path. Set by --blur_model camera"),
        Option("camera_shake", False,
               "motion: learn each training photo's blur as the camera's own smooth rigid path through the exposure "
               "(num_moments + 1 renders along it) instead of the per-Gaussian MLP. Set by --blur_model camera"),
        Option("linear_exposure", False,
               "motion, with --camera_shake: average the renders along the exposure in linear light, as a sensor "
               "integrates it, rather than in the sRGB-encoded colour the Gaussians hold"),
        Option("path_anchor", "mid",
               "motion, with --camera_shake: which pose of each photo's path its camera pose is, mid (the "
               "mid-exposure pose) or mean (the path's mean pose, nearer what SfM recovers from blurry photos)",
               choices=PATH_ANCHORS),
        Option("knn_iteration", 2500, "iteration of the one-off KNN point augmentation; 0 disables it"),
        Option("knn_neighbours", 4, "nearest Gaussians that colour each added point"),
        Option("knn_max_distance", 2.0,
               "neighbours farther than this (world units) are ignored; points left with none are dropped"),
        Option("knn_rate", 1.1, "one point is drawn per cube of this side (world units) in the SfM points' box"),
        Option("knn_max_points", 200_000, "most points drawn by the KNN augmentation"),
        Option("knn_color_weights", "distance",
               "weights of the neighbours' colours: proportional to distance (official) or to its inverse",
               choices=COLOR_WEIGHTINGS),
        Option("depth_prune_range", 3.0,
               "the farthest Gaussians are pruned below --min_opacity divided by this, the nearest below "
               "--min_opacity; 1 disables depth-scaled pruning"),
    )

    @staticmethod
    def problems(args: Namespace) -> list[str]:
        """Messages for out-of-range values in args (a namespace holding these options)."""
        checks = (
            ("num_moments", args.num_moments >= 1, "must be positive"),
            ("lambda_s", 0.0 < args.lambda_s <= 1.0, "must be in (0, 1]"),
            ("lambda_p", args.lambda_p >= 0.0, "must be 0 or positive"),
            ("max_clamp", args.max_clamp >= 1.0, "must be at least 1"),
            ("initial_scale_factor",
             args.initial_scale_factor is None or 1.0 <= args.initial_scale_factor <= args.max_clamp,
             "must be in [1, --max_clamp]"),
            ("blur_lr", args.blur_lr > 0.0, "must be positive"),
            ("lens_blur", not args.lens_blur or args.blur == "defocus" or args.camera_shake,
             "needs --blur defocus, or --blur motion with --camera_shake"),
            ("camera_shake", not args.camera_shake or args.blur == "motion", "needs --blur motion"),
            ("linear_exposure", not args.linear_exposure or args.camera_shake, "needs --camera_shake"),
            ("path_anchor", args.path_anchor == "mid" or args.camera_shake, "needs --camera_shake"),
            ("knn_iteration", args.knn_iteration >= 0, "must be 0 (off) or positive"),
            ("knn_neighbours", args.knn_neighbours >= 1, "must be positive"),
            ("knn_max_distance", args.knn_max_distance > 0.0, "must be positive"),
            ("knn_rate", args.knn_rate > 0.0, "must be positive"),
            ("knn_max_points", args.knn_max_points >= 0, "must be 0 or positive"),
            ("depth_prune_range", args.depth_prune_range >= 1.0, "must be at least 1"),
        )
        return [f"--{name} {requirement}, got {getattr(args, name)}" for name, ok, requirement in checks if not ok]
