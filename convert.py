"""Structure from motion on your own photos with pycolmap, on the CPU.

Put the photos in <scene>/input and run `python convert.py -s <scene>`. The result is the layout train.py reads:
<scene>/images (undistorted pinhole images) and <scene>/sparse/0 (the COLMAP model); the database and the
distorted model stay in <scene>/distorted.

The default settings suit blurry photos, whose features are few and poorly localised: one shared
SIMPLE_PINHOLE camera, SIFT with affine-shape estimation and domain-size pooling, guided matching, at least 16
matches per image pair and a 1.5 degree triangulation angle. --standard uses COLMAP's defaults with one shared
OPENCV camera instead, as the original 3DGS conversion does.
"""

import os
import shutil
import sys
from argparse import ArgumentParser

import cv2

from scene.readers.views import IMAGE_EXTENSIONS
from utils.errors import UserError, report_user_errors
from utils.logs import configure_cli_logging

# Fewer registered photos than this fraction (or than 3) is a failed reconstruction, not a usable one.
MIN_REGISTERED_FRACTION = 0.5
MIN_REGISTERED_IMAGES = 3
RESIZE_FACTORS = (2, 4, 8)


class ConversionError(UserError, RuntimeError):
    """Structure from motion could not produce a usable model; the message says what to try."""


def import_pycolmap():
    try:
        import pycolmap
    except ImportError:
        raise ConversionError("convert.py needs pycolmap: pip install pycolmap") from None
    return pycolmap


def photo_names(input_folder):
    if not os.path.isdir(input_folder):
        raise ConversionError(f"{input_folder}: folder not found (put the photos to reconstruct there)")
    names = sorted(name for name in os.listdir(input_folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if len(names) < MIN_REGISTERED_IMAGES:
        raise ConversionError(
            f"{input_folder}: found {len(names)} .png/.jpg photo(s); structure from motion needs at least "
            f"{MIN_REGISTERED_IMAGES} overlapping photos"
        )
    return names


# Seeds pycolmap's random number generator and the mapper's.
SFM_SEED = 0


def sfm_options(pycolmap, standard, threads=-1):
    """(camera model, extraction, matching, two-view verification, mapping) options; threads -1 uses every core."""
    extraction = pycolmap.FeatureExtractionOptions()
    matching = pycolmap.FeatureMatchingOptions()
    verification = pycolmap.TwoViewGeometryOptions()
    mapping = pycolmap.IncrementalPipelineOptions()
    # With one thread and the seed, the same photos give the same model; more threads finish RANSAC and bundle
    # adjustment in an order that varies from run to run.
    extraction.num_threads = matching.num_threads = mapping.num_threads = threads
    mapping.random_seed = SFM_SEED
    if standard:
        return "OPENCV", extraction, matching, verification, mapping
    # Blur removes the fine detail SIFT relies on: affine-adapted, scale-pooled descriptors match more reliably.
    extraction.sift.estimate_affine_shape = True
    extraction.sift.domain_size_pooling = True
    matching.guided_matching = True
    verification.min_num_inliers = 16
    mapping.min_num_matches = 16
    # Hand-held captures of a scene have small baselines; the default 16 degree initial angle rejects them.
    mapping.mapper.init_min_tri_angle = 1.5
    mapping.mapper.filter_min_tri_angle = 1.5
    mapping.triangulation.min_angle = 1.5
    return "SIMPLE_PINHOLE", extraction, matching, verification, mapping


def run_sfm(source_path, standard=False, log=print, threads=-1):
    """Features, exhaustive matching and incremental mapping of source_path/input into source_path/distorted;
    returns the largest reconstruction and the folder it was written to."""
    pycolmap = import_pycolmap()
    input_folder = os.path.join(source_path, "input")
    names = photo_names(input_folder)
    distorted = os.path.join(source_path, "distorted")
    # A database from an earlier run would mix old features with new ones.
    shutil.rmtree(distorted, ignore_errors=True)
    os.makedirs(os.path.join(distorted, "sparse"))
    database = os.path.join(distorted, "database.db")
    camera_model, extraction, matching, verification, mapping = sfm_options(pycolmap, standard, threads)
    pycolmap.set_random_seed(SFM_SEED)

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = camera_model
    log(f"Extracting features from {len(names)} photos ({'standard' if standard else 'blur'} settings)")
    pycolmap.extract_features(database, input_folder, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                              reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
    log("Matching features")
    pycolmap.match_exhaustive(database, matching_options=matching, verification_options=verification,
                              device=pycolmap.Device.cpu)
    log("Reconstructing")
    reconstructions = pycolmap.incremental_mapping(database, input_folder, os.path.join(distorted, "sparse"),
                                                   options=mapping)
    best_index = max(reconstructions, key=lambda index: reconstructions[index].num_reg_images(), default=None)
    best = reconstructions.get(best_index)
    registered = 0 if best is None else best.num_reg_images()
    if registered < max(MIN_REGISTERED_IMAGES, MIN_REGISTERED_FRACTION * len(names)):
        hint = "; for blurry photos, try without --standard" if standard else ""
        raise ConversionError(
            f"{input_folder}: only {registered} of {len(names)} photos could be registered; take more photos with "
            f"more overlap between neighbouring views, or sharper ones{hint}"
        )
    registered_names = {best.image(image_id).name for image_id in best.reg_image_ids()}
    unregistered = [name for name in names if name not in registered_names]
    if unregistered:
        log(f"Warning: {len(unregistered)} photo(s) could not be registered and are left out: "
            f"{', '.join(unregistered)}")
    return best, os.path.join(distorted, "sparse", str(best_index))


def undistort(source_path, model_folder):
    """Undistort the photos registered in model_folder into source_path/images, with the pinhole model in
    source_path/sparse/0."""
    pycolmap = import_pycolmap()
    # The undistorter also writes multi-view-stereo files, which have no use here: keep them out of the way.
    output = os.path.join(source_path, "distorted", "undistorted")
    shutil.rmtree(output, ignore_errors=True)
    pycolmap.undistort_images(output, model_folder, os.path.join(source_path, "input"), output_type="COLMAP")
    for folder in ("images", "sparse"):
        shutil.rmtree(os.path.join(source_path, folder), ignore_errors=True)
    shutil.move(os.path.join(output, "images"), os.path.join(source_path, "images"))
    os.makedirs(os.path.join(source_path, "sparse"))
    shutil.move(os.path.join(output, "sparse"), os.path.join(source_path, "sparse", "0"))


def write_downscaled_copies(source_path):
    """images_2, images_4 and images_8: the undistorted images at 1/2, 1/4 and 1/8 size."""
    images = os.path.join(source_path, "images")
    for factor in RESIZE_FACTORS:
        folder = os.path.join(source_path, f"images_{factor}")
        shutil.rmtree(folder, ignore_errors=True)
        for root, _, files in os.walk(images):
            for name in files:
                relative = os.path.relpath(os.path.join(root, name), images)
                image = cv2.imread(os.path.join(root, name), cv2.IMREAD_UNCHANGED)
                if image is None:
                    raise ConversionError(f"{os.path.join(root, name)}: not a readable image")
                size = (max(1, round(image.shape[1] / factor)), max(1, round(image.shape[0] / factor)))
                os.makedirs(os.path.dirname(os.path.join(folder, relative)), exist_ok=True)
                cv2.imwrite(os.path.join(folder, relative), cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def convert(source_path, standard=False, resize=False, log=print, threads=-1):
    reconstruction, model_folder = run_sfm(source_path, standard, log, threads)
    log(f"Registered {reconstruction.num_reg_images()} photos, {reconstruction.num_points3D()} points; undistorting")
    undistort(source_path, model_folder)
    if resize:
        write_downscaled_copies(source_path)
    log(f"Done: {os.path.join(source_path, 'images')} and {os.path.join(source_path, 'sparse', '0')}")


def main(argv=None):
    configure_cli_logging()
    parser = ArgumentParser(description="Structure from motion on <source>/input with pycolmap (CPU)")
    parser.add_argument("--source_path", "-s", required=True, help="scene folder whose input/ holds the photos")
    parser.add_argument("--standard", action="store_true",
                        help="COLMAP's standard settings (OPENCV camera) instead of the settings for blurry photos")
    parser.add_argument("--resize", action="store_true", help="also write images_2, images_4 and images_8")
    parser.add_argument("--threads", type=int, default=-1,
                        help="threads of feature extraction, matching and mapping (default -1: every core); with 1 "
                             "the same photos always give the same model")
    args = parser.parse_args(argv)
    if args.threads == 0 or args.threads < -1:
        parser.error(f"--threads must be -1 (every core) or positive, got {args.threads}")
    with report_user_errors("convert.py"):
        convert(args.source_path, standard=args.standard, resize=args.resize, threads=args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
