"""Vanilla 3DGS against Deblurring 3DGS on the synthetic benchmark suite, for defocus and camera-motion blur.

    python bench/deblur.py [--data data/bench] [--scenes gallery_defocus blocks_motion] [--blur defocus]
                           [--family in|out] [--iterations 3000 | --full] [--variant NAME=FLAGS ...] [--no-default]
                           [--no-official] [--no-sharp] [--with-nerf] [--with-2d [--2d-iterations N]] [--jobs N]

The suite (python -m scene.synthetic --suite bench --out data/bench) holds data/bench/<layout>_<blur>/, whose blur
comes from the blur models' own family (a cubic shake path recorded at mid-exposure, an ideal thin lens with a
round aperture), and a few gallery scenes whose blur does not (a random-walk or jerking shake path, a pose recorded
elsewhere on the path, a bladed or aberrated aperture, defocus and shake in one photo; see the scene's scene.json
and scene.synthetic's OUT_OF_FAMILY_SCENES). --blur and --family pick scenes by blur type and by family. Each scene
is trained with the synthetic_<blur> preset (synthetic_motion for mixed blur) three times: "vanilla_3dgs" with
--blur none (the same recipe without a blur model, the KNN augmentation and depth-scaled pruning),
"deblurring_3dgs" with train.py's default blur model (--blur_model camera, what demo.py trains with) and
"official_deblurring_3dgs" with the paper's (--blur_model official); each --variant adds a deblurring run with
extra train.py flags, e.g. --variant "knn=--knn_iteration 375" or --variant "official_lens=--blur_model official
--lens_blur". --no-vanilla, --no-default and --no-official skip those runs, e.g. to add rows to runs kept in OUT.
--with-2d adds the image-space baselines of baselines/image: each scene copied with its training photos deblurred by
the analysis-synthesis pair ("asn_2d_3dgs") or by Blur2Blur-style conversion into that deblurrer's blur domain
("blur2blur_2d_3dgs"), then trained as vanilla; their rows also give the photos' own PSNR before and after.
"sharp_3dgs", trained unless --no-sharp, is the vanilla recipe trained on the sharp truth of the training photos,
which the generator keeps in images_sharp/: the ceiling of deblurring at the same schedule. Each method's recovered
fraction of a scene, (method - vanilla) / (ceiling - vanilla) in PSNR, is scale-free where absolute gains are not (a
weak blur leaves little to recover); the tables give it per scene and its mean per blur type and family.

CPU scale by default: the official schedule compressed to --iterations (training.with_cpu_scale; a blur model
that skips the KNN augmentation still skips it). --full trains the paper's 20 000 iterations with the presets' own
settings, on the GPU when there is one. --jobs N trains up to N runs at once, each in a process of its own (on
a CPU, share the cores out with OMP_NUM_THREADS); the render speeds are measured once every training has ended.

Every model is scored on the held-out sharp views under both metric protocols (see metrics.py) and its render
speed measured as render.py --fps-only does. Writes OUT/deblur_bench.json (one row per scene and method, the
per-scene table of recovered fractions and both summaries) and OUT/deblur_bench.md (the tables: per blur type the
mean gain of deblurring over vanilla on the in-family scenes against the targets: +2 dB PSNR on defocus, +3 dB on
camera motion, equal FPS within noise, see summarise; and per blur type and family the mean recovered fraction,
see summarise_families).
"""

import os

# OpenMP threads that spin while they wait starve each other when other jobs share the cores; see demo.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import multiprocessing
import shlex
import sys
from argparse import ArgumentParser
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPOSITORY)

import metrics
from baselines.image.asn import DEFAULT_CACHE
from baselines.image.deblur import deblur_scene
from blur.presets import OFFICIAL_ITERATIONS
from gaussian_renderer.speed import measure_fps
from scene.gaussian_model import GaussianModel
from scene.scene import Scene
from scene.synthetic import BLUR_TYPES, SHARP_IMAGES_FOLDER, SceneConfig
from training import TrainingOptions, explicit_options, run_training, training_options, with_cpu_scale
from utils.atomic_file import atomic_write
from utils.errors import UserError, report_user_errors
from utils.logs import configure_cli_logging

VANILLA, DEBLURRING, OFFICIAL, SHARP = "vanilla_3dgs", "deblurring_3dgs", "official_deblurring_3dgs", "sharp_3dgs"
PSNR_TARGETS = {"defocus": 2.0, "motion": 3.0}
# The training preset of a blur type, where it is not synthetic_<blur>.
TRAINING_BLUR = {"mixed": "motion"}
IN_FAMILY, OUT_OF_FAMILY = "in-family", "out-of-family"
FAMILY_OPTIONS = {"in": IN_FAMILY, "out": OUT_OF_FAMILY}
# Below this much headroom the ceiling is not told apart from vanilla (seeds move a PSNR by some hundredths of a
# dB), so a recovered fraction would be noise divided by noise: it is left out.
MIN_HEADROOM_DB = 0.1
# The image-space baselines (baselines/image): each training photo deblurred by a 2D method, then vanilla 3DGS.
IMAGE_METHODS = {"asn": "asn_2d_3dgs", "blur2blur": "blur2blur_2d_3dgs"}
# Published NeRF baselines are slow on a CPU; these two bracket them (vanilla, and the deblurring pioneer).
DEFAULT_NERF_METHODS = ("nerf", "deblurnerf")
FPS_TURNS = 5


class BenchmarkError(UserError, ValueError):
    """A missing suite, an unknown scene name or an unusable option; the message says which."""


def scene_description(folder):
    """The blur of a generated scene from its scene.json: {"blur", "family", "departures"}, where departures name
    how the blur leaves the blur models' family (none for an in-family scene)."""
    path = os.path.join(folder, "scene.json")
    try:
        with open(path) as file:
            config = SceneConfig.from_dict(json.load(file).get("config"), path)
    except (OSError, ValueError, AttributeError) as error:
        raise BenchmarkError(f"{path}: not a scene description of scene.synthetic ({error})") from None
    departures = config.departures()
    return {"blur": config.blur, "family": OUT_OF_FAMILY if departures else IN_FAMILY, "departures": departures}


def find_scenes(data, names, blur_types, families=(IN_FAMILY, OUT_OF_FAMILY)):
    """(name, folder, description) of the suite's scenes (see scene_description), filtered by folder name, blur type
    and family."""
    if not os.path.isdir(data):
        raise BenchmarkError(f"{data}: no benchmark suite here; generate it with "
                             f"`python -m scene.synthetic --suite bench --out {data}` (make bench-data)")
    found = {name: os.path.join(data, name) for name in sorted(os.listdir(data))
             if os.path.isfile(os.path.join(data, name, "scene.json"))}
    unknown = sorted(set(names or ()) - set(found))
    if unknown:
        raise BenchmarkError(f"{data}: no scene {', '.join(unknown)} (found: {', '.join(found) or 'none'})")
    scenes = [(name, folder, scene_description(folder)) for name, folder in found.items()
              if not names or name in names]
    return [(name, folder, description) for name, folder, description in scenes
            if description["blur"] in blur_types and description["family"] in families]


def parse_variant(text):
    """--variant NAME=FLAGS as (name, flags): FLAGS are train.py's command-line flags."""
    name, separator, flags = text.partition("=")
    if not separator or not name or name in (VANILLA, DEBLURRING, OFFICIAL, SHARP):
        raise BenchmarkError(f"--variant {text!r}: expected NAME=FLAGS with a new name, e.g. "
                             f"\"improved=--max_clamp 1.5 --initial_scale_factor 1.05\"")
    return name, shlex.split(flags)


def method_options(method, variants):
    """The training options that set a method apart: {option name: value}."""
    if method in (VANILLA, SHARP, *IMAGE_METHODS.values()):
        return {"blur": "none"}
    if method == OFFICIAL:
        return {"blur_model": "official"}
    return explicit_options(dict(variants).get(method, []))


def sharp_scene(scene_folder, out_folder):
    """out_folder made into scene_folder with each photo that has a sharp truth in images_sharp/ replaced by it,
    all by symbolic links; returns out_folder."""
    sharp_images = os.path.join(scene_folder, SHARP_IMAGES_FOLDER)
    if not os.path.isdir(sharp_images):
        raise BenchmarkError(f"{SHARP}: {scene_folder} has no {SHARP_IMAGES_FOLDER}/ folder of sharp "
                             f"training photos (--no-sharp skips the ceiling)")
    images = os.path.join(scene_folder, "images")
    links = {name: os.path.join(scene_folder, name) for name in os.listdir(scene_folder) if name != "images"}
    for name in os.listdir(images):
        sharp = os.path.join(sharp_images, name)
        links[os.path.join("images", name)] = sharp if os.path.isfile(sharp) else os.path.join(images, name)
    os.makedirs(os.path.join(out_folder, "images"), exist_ok=True)
    for name, target in links.items():
        link = os.path.join(out_folder, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(target), link)
    return out_folder


def run_training_options(scene_folder, blur, model_path, iterations, full, device, seed, lpips_weights,
                         method) -> TrainingOptions:
    """One run's training options: the benchmark's, the schedule, then the method's own (see method_options)."""
    explicit = {"source_path": scene_folder, "model_path": model_path, "eval": True,
                "config": f"synthetic_{TRAINING_BLUR.get(blur, blur)}", "device": device, "seed": seed,
                "test_iterations": [iterations], "save_iterations": [iterations], "checkpoint_interval": 0}
    if lpips_weights:
        explicit["lpips_weights"] = lpips_weights
    if full:
        return training_options({**explicit, "iterations": iterations, **method})
    return training_options(with_cpu_scale({**explicit, **method}, iterations))


def results_path(model_path, iterations):
    return os.path.join(model_path, f"results_{iterations}.json")


def train_logged(label, options: TrainingOptions):
    """Train one run with its output (progress, messages, errors) written to its model path + ".log"; returns the
    message of a UserError that stopped it, None when it finished."""
    os.makedirs(os.path.dirname(os.path.abspath(options.model_path)), exist_ok=True)
    log_path = options.model_path + ".log"
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "w") as log:
        # The file descriptors, so that native code's output lands in the log too; a pool's worker process runs one
        # training at a time.
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    configure_cli_logging()
    try:
        run_training(options)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return f"{label}: {error}; see {log_path}"
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return None


def train_in_parallel(runs, jobs):
    """Train each (label, TrainingOptions) of runs in a process of its own, up to jobs at once; see train_logged. A
    run that fails stops the benchmark once the others have ended."""
    for label, options in runs:
        print(f"=== {label}: training into {options.model_path} (output in {options.model_path}.log)", flush=True)
    # Spawned, not forked: a fork would copy this process's OpenMP and torch thread pools mid-state.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_logged, label, options) for label, options in runs]
    failures = [str(future.exception()) if future.exception() is not None else future.result()
                for future in futures]
    failures = [failure for failure in failures if failure is not None]
    if failures:
        raise BenchmarkError("; ".join(failures))


def train_row(scene_name, blur, method, options: TrainingOptions, iterations, reuse):
    """Train (unless reuse finds the run finished) and read its scores: one result row, without its speed."""
    results_file = results_path(options.model_path, iterations)
    if not (reuse and os.path.isfile(results_file)):
        print(f"\n=== {scene_name} / {method}: training into {options.model_path}")
        run_training(options)
    with open(results_file) as file:
        results = json.load(file)
    return {
        "scene": scene_name,
        "blur": blur,
        "method": method,
        "iterations": iterations,
        "train_seconds": results["train_seconds"],
        "render_fps": None,
        "render_ms_turns": None,
        "render_resolution": None,
        "num_gaussians": results["num_gaussians"],
        "metrics": results["mean"],
    }


def measure_render_speeds(rows, runs_options, iterations, fps_frames):
    """Fill in the rows' render speed: the saved models take turns, a few frames each, so that a change of load
    on a shared machine affects every model alike; each speed is the median of its turns' median frame times."""
    models = []
    with torch.no_grad():
        for options in runs_options:
            dataset, pipe = options.model, options.pipeline
            gaussians = GaussianModel(dataset.sh_degree, dataset.device)
            scene = Scene(dataset, gaussians, load_iteration=iterations)
            models.append((gaussians, scene.test_cameras, pipe.backend, torch.device(dataset.device)))
        turns: dict[int, list[float]] = {index: [] for index in range(len(models))}
        for _ in range(FPS_TURNS):
            for index, (gaussians, cameras, backend, device) in enumerate(models):
                background = torch.zeros(3, device=device)
                speed = measure_fps(cameras, gaussians.render_params(), background, backend, device,
                                    warmup_frames=2, timed_frames=max(1, fps_frames // FPS_TURNS))
                turns[index].append(speed["median_ms"])
    for index, row in enumerate(rows):
        camera = models[index][1][0]
        row["render_fps"] = 1000.0 / float(np.median(turns[index]))
        row["render_ms_turns"] = turns[index]
        row["render_resolution"] = f"{camera.width}x{camera.height}"


def image_deblurred_scenes(scene_name, scene_folder, out_root, iterations, full, device, cache_dir, reuse):
    """{row method: baselines.image.DeblurredScene}: the scene copied with its training photos deblurred by each
    image-space method, for vanilla 3DGS to train on; with reuse, a copy made with the same settings is kept."""
    deblurred = {}
    for method, row_method in IMAGE_METHODS.items():
        print(f"\n=== {scene_name} / {row_method}: deblurring the training photos with {method}")
        deblurred[row_method] = deblur_scene(scene_folder, os.path.join(out_root, scene_name, method), method,
                                             iterations, full, cache_dir=cache_dir, overwrite=True, reuse=reuse,
                                             device=device)
    return deblurred


def nerf_rows(scene_folder, blur, methods, iterations, device, out_root):
    try:
        from baselines.nerf.benchmark import benchmark_rows
    except ImportError as error:
        raise BenchmarkError(f"--with-nerf: the NeRF baselines are unavailable ({error})") from None
    try:
        return benchmark_rows(scene_folder, blur, list(methods), iterations, device, out_root)
    except UserError as error:
        raise BenchmarkError(f"--with-nerf: {error}") from None


def ratio_interval(ratios):
    """[low, high]: the geometric mean of ratios, two standard errors either side (none for a single ratio)."""
    logs = np.log(ratios)
    spread = 2.0 * logs.std(ddof=1) / np.sqrt(len(logs)) if len(logs) > 1 else 0.0
    return [float(np.exp(logs.mean() - spread)), float(np.exp(logs.mean() + spread))]


def summarise(rows, targeted_methods):
    """Per blur type: the mean PSNR gain of each method over vanilla 3DGS on the in-family scenes both ran, under
    both protocols, the mean FPS ratio, and for the targeted methods (the Gaussian deblurring runs, not the NeRF
    baselines) whether the PSNR target and the speed target are met. The targets were set on blur from the
    models' own family; summarise_families covers the scenes outside it.

    In each turn of the speed measurement the models rendered one after the other, so a turn's FPS ratio sees the
    same machine load on both sides. fps_ratio_interval is the geometric mean of those ratios over all turns and
    scenes within two standard errors. The speed target (equal FPS within noise) is met when that interval reaches
    1: the deblurred models are not measurably slower."""
    summary = {}
    rows = [row for row in rows if row["family"] == IN_FAMILY]
    by_key = {(row["scene"], row["method"]): row for row in rows}
    for blur in BLUR_TYPES:
        scenes = sorted({row["scene"] for row in rows if row["blur"] == blur and row["method"] == VANILLA})
        methods = sorted({row["method"] for row in rows if row["blur"] == blur and row["method"] != VANILLA})
        for method in methods:
            paired = [(by_key[(scene, VANILLA)], by_key[(scene, method)]) for scene in scenes
                      if (scene, method) in by_key]
            if not paired:
                continue
            gains = {protocol: float(np.mean([ours["metrics"][protocol]["psnr"] - vanilla["metrics"][protocol]["psnr"]
                                              for vanilla, ours in paired]))
                     for protocol in metrics.PROTOCOLS}
            fps_ratio = float(np.mean([ours["render_fps"] / vanilla["render_fps"] for vanilla, ours in paired]))
            # The NeRF baselines time themselves, not in turns with the Gaussian models.
            turn_ratios = [vanilla_ms / ours_ms for vanilla, ours in paired
                           for vanilla_ms, ours_ms in zip(vanilla["render_ms_turns"], ours.get("render_ms_turns", []))]
            interval = ratio_interval(turn_ratios) if turn_ratios else None
            target = PSNR_TARGETS.get(blur) if method in targeted_methods else None
            summary[f"{blur}/{method}"] = {
                "scenes": [vanilla["scene"] for vanilla, _ in paired],
                "psnr_gain": gains,
                "psnr_target": target,
                "psnr_target_met": None if target is None else gains["deblur_nerf"] >= target,
                "fps_ratio": fps_ratio,
                "fps_ratio_interval": interval,
                "fps_target_met": None if target is None or interval is None else interval[1] >= 1.0,
            }
    return summary


def recovered_fraction(method_psnr, vanilla_psnr, ceiling_psnr):
    """(method - vanilla) / (ceiling - vanilla), or None when the ceiling is within MIN_HEADROOM_DB of vanilla."""
    headroom = ceiling_psnr - vanilla_psnr
    return (method_psnr - vanilla_psnr) / headroom if headroom >= MIN_HEADROOM_DB else None


def scene_table(rows):
    """Per scene (in the order of rows): its blur, family and departures, the PSNR of vanilla, of the ceiling and
    of each other method under both protocols, and each method's recovered fraction (None without a vanilla and a
    ceiling row, or without headroom between them)."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(row["scene"], {"blur": row["blur"], "family": row["family"],
                                                "departures": row["departures"], "vanilla": None, "ceiling": None,
                                                "methods": {}})
        psnr = {protocol: row["metrics"][protocol]["psnr"] for protocol in metrics.PROTOCOLS}
        if row["method"] == VANILLA:
            entry["vanilla"] = psnr
        elif row["method"] == SHARP:
            entry["ceiling"] = psnr
        else:
            entry["methods"][row["method"]] = {"psnr": psnr}
    for entry in table.values():
        for method in entry["methods"].values():
            method["recovered_fraction"] = {
                protocol: None if entry["vanilla"] is None or entry["ceiling"] is None else recovered_fraction(
                    method["psnr"][protocol], entry["vanilla"][protocol], entry["ceiling"][protocol])
                for protocol in metrics.PROTOCOLS}
    return table


def summarise_families(table):
    """Per blur type and family ("<blur>/<family>/<method>") and per family over every blur type
    ("all/<family>/<method>"): the scenes where the method has a recovered fraction, and its mean there under both
    protocols, with the mean PSNR gain over vanilla on the same scenes."""
    groups: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for scene, entry in table.items():
        for method, result in entry["methods"].items():
            if result["recovered_fraction"]["deblur_nerf"] is None:
                continue
            for blur in (entry["blur"], "all"):
                groups.setdefault(f"{blur}/{entry['family']}/{method}", []).append((scene, entry, result))
    summary = {}
    for key in sorted(groups, key=lambda key: (key.startswith("all/"), key)):
        members = groups[key]
        summary[key] = {
            "scenes": [scene for scene, _, _ in members],
            "recovered_fraction": {protocol: float(np.mean([result["recovered_fraction"][protocol]
                                                            for _, _, result in members]))
                                   for protocol in metrics.PROTOCOLS},
            "psnr_gain": {protocol: float(np.mean([result["psnr"][protocol] - entry["vanilla"][protocol]
                                                   for _, entry, result in members]))
                          for protocol in metrics.PROTOCOLS},
        }
    return summary


def score(value, digits):
    return "n/a" if value is None else f"{value:.{digits}f}"


def scene_markdown(table):
    """The per-scene table: Deblur-NeRF-protocol PSNR of vanilla, each method with its recovered fraction, and the
    ceiling."""
    methods = list(dict.fromkeys(method for entry in table.values() for method in entry["methods"]))
    lines = ["| scene | blur | family | vanilla | " + " | ".join(f"{method} | recovered" for method in methods)
             + f" | ceiling ({SHARP}) |",
             "|---|---|---|---|" + "---|---|" * len(methods) + "---|"]
    for scene, entry in table.items():
        family = entry["family"] + (f": {', '.join(entry['departures'])}" if entry["departures"] else "")
        cells = [scene, entry["blur"], family, score((entry["vanilla"] or {}).get("deblur_nerf"), 2)]
        for method in methods:
            result = entry["methods"].get(method)
            cells += ["", ""] if result is None else [score(result["psnr"]["deblur_nerf"], 2),
                                                      score(result["recovered_fraction"]["deblur_nerf"], 2)]
        cells.append(score((entry["ceiling"] or {}).get("deblur_nerf"), 2))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(rows, summary, settings, table=None, family_summary=None):
    lines = [f"# Deblurring benchmark ({settings['scale']}, {settings['device']})", "",
             "PSNR/SSIM on held-out sharp views. DN: Deblur-NeRF protocol (mean per-channel PSNR, scikit-image SSIM); "
             "3DGS: 3DGS protocol (global PSNR, 11x11 Gaussian SSIM). LPIPS: AlexNet, when weights were given.", ""]
    if any(row["method"] == SHARP for row in rows):
        lines += [f"{SHARP}: vanilla trained on the sharp truth of the training photos, the ceiling of deblurring.", ""]
    lines += ["| scene | method | iterations | PSNR DN | SSIM DN | PSNR 3DGS | SSIM 3DGS | LPIPS | train s | "
              "Gaussians | FPS | resolution |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        dn, gs = row["metrics"]["deblur_nerf"], row["metrics"]["3dgs"]
        lines.append(
            f"| {row['scene']} | {row['method']} | {row['iterations']} | {score(dn['psnr'], 2)} | "
            f"{score(dn['ssim'], 4)} | {score(gs['psnr'], 2)} | {score(gs['ssim'], 4)} | {score(dn['lpips'], 4)} | "
            f"{score(row['train_seconds'], 0)} | {score(row.get('num_gaussians'), 0)} | "
            f"{score(row['render_fps'], 1)} | {row['render_resolution']} |")
    lines += ["", "| blur / method | scenes | PSNR gain DN | PSNR gain 3DGS | target | met | FPS ratio | "
              "FPS ratio, turn by turn | equal FPS within noise |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, entry in summary.items():
        target, met, speed_met, interval = "n/a", "n/a", "n/a", "n/a"
        if entry["psnr_target"] is not None:
            target, met = f"+{entry['psnr_target']:.0f} dB", "yes" if entry["psnr_target_met"] else "no"
        if entry["fps_target_met"] is not None:
            speed_met = "yes" if entry["fps_target_met"] else "no"
        if entry["fps_ratio_interval"] is not None:
            interval = "{:.3g}–{:.3g}".format(*entry["fps_ratio_interval"])
        lines.append(f"| {key} | {len(entry['scenes'])} | {entry['psnr_gain']['deblur_nerf']:+.2f} dB | "
                     f"{entry['psnr_gain']['3dgs']:+.2f} dB | {target} | {met} | {entry['fps_ratio']:.3g} | "
                     f"{interval} | {speed_met} |")
    if table:
        lines += ["", "Per scene, PSNR DN; recovered: (method - vanilla) / (ceiling - vanilla), n/a without a "
                      f"ceiling or with less than {MIN_HEADROOM_DB} dB between it and vanilla. In-family: blur of "
                      "the kind the blur models assume; out-of-family: the ways the scene's blur departs from it.", ""]
        lines += scene_markdown(table)
    photo_rows = [row for row in rows if "photo_psnr_after" in row]
    if photo_rows:
        lines += ["", "2D deblurring: PSNR of the training photos against their sharp truth, before and after.", "",
                  "| scene | method | photos before | photos after | 2D training s |", "|---|---|---|---|---|"]
        lines += [f"| {row['scene']} | {row['method']} | {score(row['photo_psnr_before'], 2)} | "
                  f"{score(row['photo_psnr_after'], 2)} | {score(row['image_train_seconds'], 0)} |"
                  for row in photo_rows]
    if family_summary:
        lines += ["", "| blur / family / method | scenes | recovered DN | recovered 3DGS | PSNR gain DN |",
                  "|---|---|---|---|---|"]
        for key, entry in family_summary.items():
            lines.append(f"| {key} | {len(entry['scenes'])} | {entry['recovered_fraction']['deblur_nerf']:.2f} | "
                         f"{entry['recovered_fraction']['3dgs']:.2f} | {entry['psnr_gain']['deblur_nerf']:+.2f} dB |")
    return "\n".join(lines) + "\n"


def report(rows, targeted_methods, settings):
    """The JSON document and the markdown of the benchmark's rows."""
    summary = summarise(rows, targeted_methods)
    table = scene_table(rows)
    family_summary = summarise_families(table)
    document = {"settings": settings, "rows": rows, "scenes": table, "summary": summary,
                "family_summary": family_summary}
    return document, markdown(rows, summary, settings, table, family_summary)


def write_atomically(path, text):
    with atomic_write(path, "w") as file:
        file.write(text)


def main(argv=None):
    parser = ArgumentParser(description="Vanilla 3DGS against Deblurring 3DGS on the synthetic benchmark suite")
    parser.add_argument("--data", default=os.path.join("data", "bench"), help="folder of the benchmark suite")
    parser.add_argument("--scenes", nargs="+", default=None, help="scene folder names (default: all)")
    parser.add_argument("--blur", nargs="+", choices=BLUR_TYPES, default=list(BLUR_TYPES), help="blur types to run")
    parser.add_argument("--family", nargs="+", choices=sorted(FAMILY_OPTIONS), default=sorted(FAMILY_OPTIONS),
                        help="in: scenes whose blur is of the kind the blur models assume; out: scenes whose blur "
                             "departs from it (default: both)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations (default: 3000 at CPU scale, 20000 with --full)")
    parser.add_argument("--full", action="store_true", help="the paper's schedule (GPU recommended)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help="an extra deblurring run with these train.py flags (repeatable)")
    parser.add_argument("--no-vanilla", dest="vanilla", action="store_false", help="skip the vanilla runs")
    parser.add_argument("--no-default", dest="default", action="store_false",
                        help="skip the runs of train.py's default blur model")
    parser.add_argument("--no-official", dest="official", action="store_false",
                        help="skip the runs of the paper's blur model (--blur_model official)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps-frames", type=int, default=100,
                        help="timed frames per model of the render-speed measurement, in turns between the models")
    parser.add_argument("--lpips_weights", nargs="+", default=None, metavar="FILE",
                        help="local LPIPS AlexNet weights (see train.py)")
    parser.add_argument("--no-sharp", dest="with_sharp", action="store_false",
                        help="skip the ceiling: vanilla trained on the sharp training photos, which the recovered "
                             "fractions need")
    parser.add_argument("--with-nerf", action="store_true", help="also run the NeRF baselines (baselines/nerf)")
    parser.add_argument("--with-2d", dest="with_image", action="store_true",
                        help="also the image-space baselines (baselines/image): the training photos deblurred by "
                             "the analysis-synthesis pair and by Blur2Blur-style conversion, then vanilla 3DGS")
    parser.add_argument("--2d-iterations", dest="image_iterations", type=int, default=None,
                        help="training steps of each 2D network (default: their own)")
    parser.add_argument("--2d-cache", dest="image_cache", default=DEFAULT_CACHE,
                        help="where the trained 2D deblurrer is cached")
    parser.add_argument("--nerf-methods", nargs="+", default=list(DEFAULT_NERF_METHODS))
    parser.add_argument("--nerf-iterations", type=int, default=None, help="default: the NeRF benchmark's own")
    parser.add_argument("--reuse", action="store_true", help="reuse runs under OUT that already finished")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings run at once, each in its own process (default: 1, in this process)")
    parser.add_argument("--out", default=os.path.join("output", "bench", "deblur"), help="output folder")
    args = parser.parse_args(argv)
    iterations = args.iterations or (OFFICIAL_ITERATIONS if args.full else 3000)
    if iterations < 1 or args.fps_frames < 1 or args.jobs < 1:
        parser.error("--iterations, --fps-frames and --jobs must be positive")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    configure_cli_logging()
    with report_user_errors("bench/deblur.py"):
        run_benchmark(args, iterations)


def run_benchmark(args, iterations):
    variants = [parse_variant(text) for text in args.variant]
    scenes = find_scenes(args.data, args.scenes, args.blur, [FAMILY_OPTIONS[name] for name in args.family])
    if not scenes:
        raise BenchmarkError(f"{args.data}: no scene matches --scenes/--blur/--family")
    # Made before any training, so that a scene without sharp photos stops the benchmark at once.
    sharp_sources = {name: sharp_scene(folder, os.path.join(args.out, "sharp_scenes", name))
                     for name, folder, _ in scenes} if args.with_sharp else {}

    methods = (([VANILLA] if args.vanilla else []) + ([DEBLURRING] if args.default else [])
               + ([OFFICIAL] if args.official else []) + [name for name, _ in variants])
    image_methods = list(IMAGE_METHODS.values()) if args.with_image else []
    reference_methods = [SHARP] if args.with_sharp else []
    image_scenes = {name: image_deblurred_scenes(name, folder, os.path.join(args.out, "image_deblurred"),
                                                 args.image_iterations, args.full, args.device, args.image_cache,
                                                 args.reuse)
                    for name, folder, _ in scenes} if args.with_image else {}
    settings = {"scale": "full" if args.full else "cpu", "iterations": iterations, "device": args.device,
                "seed": args.seed, "data": args.data, "variants": {name: flags for name, flags in variants}}
    rows = []
    json_path = os.path.join(args.out, "deblur_bench.json")
    markdown_path = os.path.join(args.out, "deblur_bench.md")
    scene_runs: dict[str, list[tuple[str, TrainingOptions]]] = {}
    for scene_name, folder, description in scenes:
        scene_runs[scene_name] = []
        for method in methods + image_methods + reference_methods:
            model_path = os.path.join(args.out, "runs", scene_name, method)
            source = (sharp_sources[scene_name] if method == SHARP
                      else image_scenes[scene_name][method].folder if method in image_methods else folder)
            options = run_training_options(source, description["blur"], model_path, iterations, args.full,
                                           args.device, args.seed, args.lpips_weights,
                                           method_options(method, variants))
            scene_runs[scene_name].append((method, options))
    if args.jobs > 1:
        train_in_parallel([(f"{scene_name} / {method}", options)
                           for scene_name, runs in scene_runs.items() for method, options in runs
                           if not (args.reuse and os.path.isfile(results_path(options.model_path, iterations)))],
                          args.jobs)
    for scene_name, folder, description in scenes:
        blur = description["blur"]
        scene_rows = [train_row(scene_name, blur, method, options, iterations, reuse=args.reuse or args.jobs > 1)
                      for method, options in scene_runs[scene_name]]
        measure_render_speeds(scene_rows, [options for _, options in scene_runs[scene_name]], iterations,
                              args.fps_frames)
        for row in scene_rows:
            if row["method"] in image_methods:
                deblurred = image_scenes[scene_name][row["method"]]
                row.update(photo_psnr_before=deblurred.photo_psnr_before, photo_psnr_after=deblurred.photo_psnr_after,
                           image_train_seconds=deblurred.train_seconds)
        if args.with_nerf:
            scene_rows += nerf_rows(folder, blur, args.nerf_methods, args.nerf_iterations, args.device,
                                    os.path.join(args.out, "nerf"))
        rows += [dict(row, family=description["family"], departures=description["departures"]) for row in scene_rows]
        document, table_markdown = report(rows, methods, settings)
        # Rewritten after every scene: an interrupted benchmark keeps what it measured.
        write_atomically(json_path, json.dumps(document, indent=2))
        write_atomically(markdown_path, table_markdown)
    print()
    print(table_markdown)
    print(f"Written {markdown_path} and {json_path}")


if __name__ == "__main__":
    main()
