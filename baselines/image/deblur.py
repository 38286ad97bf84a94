"""Deblur a scene's training photos in image space, for plain 3DGS to train on afterwards.

    python -m baselines.image.deblur -s SCENE -o OUT --method asn|blur2blur [--iterations N] [--full]
        [--families F [F ...]] [--cache DIR] [--seed S] [--hold N] [--sharp-sources DIR [DIR ...]] [--overwrite]
        [--device cpu|cuda]

Writes OUT, a copy of SCENE in the same layout (python train.py -s OUT reads it) whose training photos are
deblurred; the test views, the poses and the sharp truth stay as they are, and each training photo's downscaled
copies (images_N/) are remade from its deblurred photo. asn deblurs with the analysis-synthesis deblurrer (asn.py),
trained once and cached; blur2blur first converts the scene's photos into that deblurrer's blur (blur2blur.py,
trained per scene); --families narrows the blur that deblurrer learns, which gives the converter a known domain to
convert into (by default it learns every kernel family of kernels.py, the families the generator's scenes draw
their blur from, and the converter has little left to do). When the scene keeps the sharp truth of its training
photos (the generator's images_sharp/), prints their PSNR against it before and after. OUT/image_deblur.json
records the run.
"""

import os

# OpenMP threads that spin while they wait starve each other on shared cores (see demo.py); set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from argparse import ArgumentParser
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from arguments import default_device
from metrics import psnr
from scene.dataset_readers import DOWNSCALE_FACTORS, load_scene_info, read_image
from scene.readers.views import find_image
from scene.synthetic import SHARP_IMAGES_FOLDER
from utils.errors import UserError, report_user_errors
from utils.logs import configure_cli_logging

from .asn import DEFAULT_CACHE, cached_deblurrer, deblurrer_settings
from .blur2blur import convert_photo, converter_settings, train_converter
from .data import folder_sharp_images
from .kernels import KERNEL_FAMILIES

logger = logging.getLogger(__name__)

METHODS = ("asn", "blur2blur")
RECORD_NAME = "image_deblur.json"
JPEG_QUALITY = 95


class ImageDeblurError(UserError, ValueError):
    """Bad input to the image-space deblurring: the scene, the output folder or an option, named in the message."""


@dataclass
class DeblurredScene:
    """What deblur_scene wrote: the scene copy's folder, the method, the mean PSNR (dB, over every pixel and channel)
    of the training photos against their sharp truth before and after deblurring (None without a truth), the cached
    deblurrer's file, the seconds spent training (the deblurrer when it was not cached yet, the converter) and
    deblurring."""
    folder: str
    method: str
    photo_psnr_before: float | None
    photo_psnr_after: float | None
    deblurrer: str
    train_seconds: float
    deblur_seconds: float


def check_folders(scene: str, out: str, overwrite: bool, sharp_sources) -> None:
    if not os.path.isdir(scene):
        raise ImageDeblurError(f"{scene}: scene folder not found")
    scene_path, out_path = os.path.realpath(scene), os.path.realpath(out)
    if os.path.commonpath([scene_path, out_path]) in (scene_path, out_path):
        raise ImageDeblurError(f"output folder {out} must lie outside the scene folder {scene}, and not hold it")
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ImageDeblurError(f"output path {out} exists and is not a folder")
        if os.listdir(out) and not os.path.isfile(os.path.join(out, RECORD_NAME)):
            raise ImageDeblurError(f"output folder {out} is not empty and holds no deblurred scene; choose another -o")
        if os.listdir(out) and not overwrite:
            raise ImageDeblurError(f"output folder {out} already holds a deblurred scene; pass --overwrite to replace "
                                   f"it")
    for folder in sharp_sources:
        if os.path.commonpath([scene_path, os.path.realpath(folder)]) == scene_path:
            raise ImageDeblurError(f"--sharp-sources {folder} lies in the scene being deblurred, whose sharp truth and "
                                   f"test views score the result; train on other scenes' photos")
        folder_sharp_images(folder)


def training_photos(scene: str, hold: int | None) -> list:
    """The paths, relative to the scene folder, of the photos of its training views (the split train.py makes)."""
    info = load_scene_info(scene, eval=True, hold=hold)
    paths = []
    for camera in info.train_cameras:
        relative = os.path.relpath(camera.image_path, scene)
        if relative.startswith(os.pardir):
            raise ImageDeblurError(f"{camera.image_path}: the training photo lies outside the scene folder {scene}, "
                                   f"so a copy of the scene cannot hold its deblurred version")
        paths.append(relative)
    return paths


def levels_of(pixels: np.ndarray) -> int:
    """The largest value of 8- or 16-bit pixels."""
    return 255 if pixels.dtype == np.uint8 else 65535


def read_photo(path: str) -> tuple:
    """A photo file's colour (H, W, 3) in [0, 1] and its pixels as stored (H, W, C): 8 or 16 bits, BGR(A) or grey."""
    stored = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if stored is None or stored.dtype not in (np.uint8, np.uint16):
        raise ImageDeblurError(f"{path}: not a readable 8- or 16-bit image")
    if stored.ndim == 2:
        stored = stored[:, :, None]
    colour = stored[:, :, 2::-1] if stored.shape[2] >= 3 else np.repeat(stored, 3, axis=2)
    return colour.astype(np.float32) / levels_of(stored), stored


def write_photo(path: str, colour: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Writes colour (H, W, 3) in [0, 1] in the depth and channels of stored (its alpha kept) to path; returns the
    colour as written."""
    levels = levels_of(stored)
    pixels = stored.copy()
    if stored.shape[2] >= 3:
        pixels[:, :, 2::-1] = np.round(np.clip(colour, 0.0, 1.0) * levels).astype(stored.dtype)
        written = pixels[:, :, 2::-1]
    else:
        pixels[:, :, 0] = np.round(np.clip(colour.mean(axis=2), 0.0, 1.0) * levels).astype(stored.dtype)
        written = np.repeat(pixels, 3, axis=2)
    options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if path.lower().endswith((".jpg", ".jpeg")) else []
    if not cv2.imwrite(path, pixels, options):
        raise OSError(f"could not write image {path}")
    return written.astype(np.float32) / levels


def rewrite_downscaled_copies(folder: str, relative: str, colour: np.ndarray) -> None:
    """Remakes the copies of images/<name> in folder's images_<factor>/ (LLFF's downscaled photos) from colour."""
    parts = relative.split(os.sep)
    if len(parts) != 2 or parts[0] != "images":
        return
    for factor in DOWNSCALE_FACTORS[1:]:
        copy = find_image(os.path.join(folder, f"images_{factor}"), parts[1])
        if copy is None:
            continue
        _, stored = read_photo(copy)
        shrunk = cv2.resize(colour, (stored.shape[1], stored.shape[0]), interpolation=cv2.INTER_AREA)
        write_photo(copy, shrunk, stored)


def photo_psnrs(scene: str, relative: str, before: np.ndarray, after: np.ndarray) -> tuple[float | None, float | None]:
    """PSNR of the training photo images/<name> before and after deblurring against its sharp truth, read once;
    (None, None) when the scene keeps no truth for it."""
    parts = relative.split(os.sep)
    truth = find_image(os.path.join(scene, SHARP_IMAGES_FOLDER), parts[-1]) if parts[0] == "images" else None
    if truth is None:
        return None, None
    sharp = torch.from_numpy(read_image(truth, None))
    if sharp.shape != before.shape:
        raise ImageDeblurError(f"{truth}: size {sharp.shape[1]}x{sharp.shape[0]} differs from its photo's "
                               f"{before.shape[1]}x{before.shape[0]}")
    return float(psnr(torch.from_numpy(before), sharp)), float(psnr(torch.from_numpy(after), sharp))


def mean_or_none(values) -> float | None:
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def deblur_scene(scene: str, out: str, method: str, iterations: int | None = None, full: bool = False, *,
                 families=KERNEL_FAMILIES, cache_dir: str = DEFAULT_CACHE, seed: int = 0, hold: int | None = None,
                 sharp_sources=(), overwrite: bool = False, reuse: bool = False,
                 device: str | None = None) -> DeblurredScene:
    """Writes to out a copy of the scene whose training photos method ("asn" or "blur2blur") deblurred.

    iterations: steps of every training (each stage of the deblurrer, the converter) instead of the presets'. full:
    the GPU presets (bigger networks, more steps). The deblurrer is cached in cache_dir under its settings, which
    these, the kernel families it learns (kernels.KERNEL_FAMILIES), seed and sharp_sources (folders of extra sharp
    training photos, never inside the scene) choose. hold: the test-view spacing, as train.py's --hold (default: the
    scene's hold file, else 8). overwrite: replace an out that holds an earlier result. reuse: return the result that
    out records when it was made from this scene by this method with these settings, training nothing. device: default
    arguments.default_device(). Raises a UserError (ImageDeblurError, a scene's DatasetError, ...) naming the bad
    input.
    """
    if method not in METHODS:
        raise ImageDeblurError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        raise ImageDeblurError(f"--iterations must be a positive integer, got {iterations!r}")
    check_folders(scene, out, overwrite, sharp_sources)
    settings = deblurrer_settings(iterations, full, seed, sharp_sources, families)
    run = {"source": os.path.abspath(scene), "method": method, "iterations": iterations, "full": full, "seed": seed,
           "families": list(settings.families), "sharp_sources": list(settings.sharp_sources), "hold": hold}
    recorded = recorded_result(out, run) if reuse else None
    if recorded is not None:
        logger.info(f"{out}: reusing the {method} deblurring recorded there")
        return recorded
    relatives = training_photos(scene, hold)
    device = device or default_device()
    deblurrer = cached_deblurrer(settings, cache_dir, device)
    photos = [read_photo(os.path.join(scene, relative)) for relative in relatives]
    train_seconds = deblurrer.train_seconds
    inputs = [colour for colour, _ in photos]
    started = time.perf_counter()
    if method == "blur2blur":
        conversion = converter_settings(iterations, full, seed)
        logger.info(f"training the blur converter on {len(photos)} photos ({conversion.steps} steps)")
        converter = train_converter(inputs, settings, conversion, device)
        train_seconds += time.perf_counter() - started
        started = time.perf_counter()
        inputs = [convert_photo(converter, colour) for colour in inputs]
    deblurred = []
    for index, colour in enumerate(inputs):
        deblurred.append(deblurrer.model.deblur_photo(colour))
        logger.info(f"  deblurred {relatives[index]} ({index + 1}/{len(inputs)})")
    deblur_seconds = time.perf_counter() - started

    def write_photos(folder: str) -> DeblurredScene:
        per_photo = {}
        for relative, (colour, stored), restored in zip(relatives, photos, deblurred):
            written = write_photo(os.path.join(folder, relative), restored, stored)
            rewrite_downscaled_copies(folder, relative, written)
            psnr_before, psnr_after = photo_psnrs(scene, relative, colour, written)
            per_photo[relative] = {"psnr_before": psnr_before, "psnr_after": psnr_after}
        result = DeblurredScene(os.path.normpath(out), method,
                                mean_or_none(view["psnr_before"] for view in per_photo.values()),
                                mean_or_none(view["psnr_after"] for view in per_photo.values()), deblurrer.path,
                                train_seconds, deblur_seconds)
        with open(os.path.join(folder, RECORD_NAME), "w", encoding="utf-8") as file:
            json.dump({**dataclasses.asdict(result), **run, "deblurrer_losses": deblurrer.losses,
                       "photos": per_photo}, file, indent=1)
            file.write("\n")
        return result

    return write_scene_copy(scene, out, write_photos)


def recorded_result(out: str, run: dict) -> DeblurredScene | None:
    """The DeblurredScene that out's record holds, if a finished run with exactly these settings (run) wrote it."""
    try:
        with open(os.path.join(out, RECORD_NAME), encoding="utf-8") as file:
            record = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(record.get(name) != value for name, value in run.items()):
        return None
    try:
        return DeblurredScene(**{field.name: record[field.name] for field in dataclasses.fields(DeblurredScene)})
    except KeyError:
        return None


def write_scene_copy(scene: str, out: str, change: Callable[[str], DeblurredScene]) -> DeblurredScene:
    """Copies the scene into a hidden folder beside out, lets change(folder) rewrite its photos, then puts it in
    out's place (replacing what was there): an interrupted run leaves no half-written out."""
    out = os.path.normpath(out)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    try:
        os.chmod(staging, 0o755)
        shutil.copytree(scene, staging, dirs_exist_ok=True)
        result = change(staging)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
    return result


def decibels(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} dB"


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m baselines.image.deblur",
                            description="Deblur a scene's training photos with a 2D network, into a copy of the scene "
                                        "that plain 3DGS can train on")
    parser.add_argument("-s", "--source", required=True, help="scene folder")
    parser.add_argument("-o", "--out", required=True, help="folder of the copy with deblurred training photos")
    parser.add_argument("--method", required=True, choices=METHODS,
                        help="asn: the analysis-synthesis deblurrer; blur2blur: its photos converted into that "
                             "deblurrer's blur first, by a converter trained on the scene")
    parser.add_argument("--iterations", type=int, default=None,
                        help="steps of every training, for a quick run (default: the presets')")
    parser.add_argument("--full", action="store_true", help="the GPU presets: bigger networks, more steps")
    parser.add_argument("--families", nargs="+", choices=KERNEL_FAMILIES, default=list(KERNEL_FAMILIES),
                        help="the kernel families the deblurrer learns: shake paths and apertures (default: all)")
    parser.add_argument("--cache", default=DEFAULT_CACHE,
                        help=f"folder of trained deblurrers (default {DEFAULT_CACHE})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold", type=int, default=None,
                        help="every hold-th photo is a test view, as train.py's --hold (default: the scene's)")
    parser.add_argument("--sharp-sources", nargs="+", default=[],
                        help="folders of extra sharp photos for the deblurrer's training (e.g. other generated "
                             "scenes' images_sharp/)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier result in OUT")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=default_device())
    args = parser.parse_args(argv)
    configure_cli_logging()
    with report_user_errors(parser.prog):
        result = deblur_scene(args.source, args.out, args.method, args.iterations, args.full, families=args.families,
                              cache_dir=args.cache, seed=args.seed, hold=args.hold, sharp_sources=args.sharp_sources,
                              overwrite=args.overwrite, device=args.device)
    print(f"wrote {result.folder} ({result.method}); training {result.train_seconds:.0f} s, deblurring "
          f"{result.deblur_seconds:.0f} s")
    if result.photo_psnr_before is not None:
        print(f"training photos against their sharp truth: PSNR {decibels(result.photo_psnr_before)} before, "
              f"{decibels(result.photo_psnr_after)} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
