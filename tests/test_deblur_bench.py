"""The deblurring benchmark: its sharp-photo ceiling (the scene it trains on, the names it reserves), its
parallel trainings and its verdicts on the targets."""

import json
import math
import os

import numpy as np
import pytest

import train
from bench import deblur


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as file:
        file.write(text)


@pytest.fixture
def blurry_scene(tmp_path):
    """A scene folder in the generator's layout: a sharp test photo, a blurry training photo with its sharp
    truth, and the poses beside them (their contents only label them)."""
    folder = tmp_path / "gallery_motion"
    write(folder / "images" / "000.png", "test view, sharp")
    write(folder / "images" / "001.png", "training view, blurry")
    write(folder / "images_sharp" / "001.png", "training view, sharp")
    write(folder / "poses_bounds.npy", "poses")
    write(folder / "hold=8", "")
    return str(folder)


def read(path):
    with open(path) as file:
        return file.read()


def test_sharp_scene_trains_on_the_sharp_truth_and_keeps_the_rest(blurry_scene, tmp_path):
    out = str(tmp_path / "sharp")
    for _ in range(2):  # a rerun (the benchmark's --reuse) replaces the links it made before
        assert deblur.sharp_scene(blurry_scene, out) == out
        assert read(os.path.join(out, "images", "001.png")) == "training view, sharp"
        assert read(os.path.join(out, "images", "000.png")) == "test view, sharp"
        assert read(os.path.join(out, "poses_bounds.npy")) == "poses"
        assert os.path.exists(os.path.join(out, "hold=8"))
    assert sorted(os.listdir(os.path.join(out, "images"))) == ["000.png", "001.png"]
    assert read(os.path.join(blurry_scene, "images", "001.png")) == "training view, blurry"


def test_sharp_scene_needs_the_sharp_photos(blurry_scene, tmp_path):
    os.remove(os.path.join(blurry_scene, "images_sharp", "001.png"))
    os.rmdir(os.path.join(blurry_scene, "images_sharp"))
    with pytest.raises(deblur.BenchmarkError, match="gallery_motion has no images_sharp"):
        deblur.sharp_scene(blurry_scene, str(tmp_path / "sharp"))


@pytest.mark.parametrize("name", [deblur.VANILLA, deblur.DEBLURRING, deblur.OFFICIAL, deblur.SHARP])
def test_a_variant_cannot_take_a_method_name(name):
    with pytest.raises(deblur.BenchmarkError, match="expected NAME=FLAGS with a new name"):
        deblur.parse_variant(f"{name}=--lambda_p 0.03")


@pytest.fixture
def tiny_suite(tiny_defocus_scene):
    return os.path.dirname(tiny_defocus_scene)


def bench_arguments(suite, out):
    return ["--data", suite, "--blur", "defocus", "--iterations", "20", "--fps-frames", "5", "--device", "cpu",
            "--out", out]


def test_parallel_trainings_fill_the_table(tiny_suite, tmp_path):
    out = str(tmp_path / "bench")
    deblur.main(bench_arguments(tiny_suite, out) + ["--jobs", "2", "--no-official"])
    with open(os.path.join(out, "deblur_bench.json")) as file:
        table = json.load(file)
    assert [row["method"] for row in table["rows"]] == [deblur.VANILLA, deblur.DEBLURRING]
    for row in table["rows"]:
        assert row["iterations"] == 20 and row["render_fps"] > 0
        assert math.isfinite(row["metrics"]["deblur_nerf"]["psnr"])
    runs = os.path.join(out, "runs", "tiny_defocus")
    logs = {method: os.path.join(runs, method + ".log") for method in (deblur.VANILLA, deblur.DEBLURRING)}
    assert all(os.path.getsize(log) > 0 for log in logs.values())

    # --reuse trains nothing again: the processes' logs stay as they were.
    modified = {method: os.path.getmtime(log) for method, log in logs.items()}
    deblur.main(bench_arguments(tiny_suite, out) + ["--jobs", "2", "--no-official", "--reuse"])
    assert {method: os.path.getmtime(log) for method, log in logs.items()} == modified


def test_a_failed_parallel_training_names_its_run_and_log(tiny_suite, tmp_path, capsys):
    out = str(tmp_path / "bench")
    with pytest.raises(SystemExit):
        deblur.main(bench_arguments(tiny_suite, out) + ["--jobs", "2", "--no-vanilla", "--no-official",
                                                         "--variant", "broken=--lambda_s -1"])
    error = capsys.readouterr().err
    log = os.path.join(out, "runs", "tiny_defocus", "broken.log")
    assert f"tiny_defocus / broken: train.py exited with status 2; see {log}" in error
    assert "lambda_s" in read(log)


def test_the_rows_train_the_default_and_the_official_blur_models(tmp_path):
    def options(method, blur, variants=(), iterations=3000, full=False):
        flags = deblur.method_arguments(method, list(variants))
        argv = deblur.training_arguments(str(tmp_path), blur, str(tmp_path / method), iterations, full, "cpu", 0,
                                         None, flags)
        return train.parse_args(argv)[0]

    # At 3000 iterations the compressed official schedule puts the KNN augmentation at 375.
    lens = options(deblur.DEBLURRING, "defocus")
    assert (lens.blur_model, lens.lens_blur, lens.knn_iteration, lens.iterations) == ("camera", True, 0, 3000)
    shake = options(deblur.DEBLURRING, "motion")
    assert (shake.camera_shake, shake.min_contribution, shake.knn_iteration) == (True, 1.0, 375)
    for blur in ("defocus", "motion"):
        official = options(deblur.OFFICIAL, blur)
        assert (official.blur, official.blur_model, official.lens_blur, official.camera_shake) == (
            blur, "official", False, False)
        assert (official.knn_iteration, official.min_contribution) == (375, 0.0)
        vanilla = options(deblur.VANILLA, blur)
        assert (vanilla.blur, vanilla.min_contribution) == ("none", 0.0)
    variant = deblur.parse_variant("official_lens=--blur_model official --lens_blur")
    official_lens = options("official_lens", "defocus", [variant])
    assert (official_lens.lens_blur, official_lens.knn_iteration) == (True, 375)
    full = options(deblur.DEBLURRING, "defocus", iterations=20_000, full=True)
    assert (full.lens_blur, full.knn_iteration, full.iterations) == (True, 0, 20_000)


def bench_row(method, psnr, render_ms_turns):
    scores = {"psnr": psnr, "ssim": 0.9, "lpips": None}
    row = {"scene": "blocks_motion", "blur": "motion", "method": method, "iterations": 3000, "train_seconds": 60.0,
           "num_gaussians": 1000, "render_resolution": "400x300", "metrics": {"deblur_nerf": scores, "3dgs": scores}}
    if render_ms_turns is None:
        return dict(row, render_fps=5.0)
    return dict(row, render_fps=1000.0 / sorted(render_ms_turns)[1], render_ms_turns=render_ms_turns)


def test_the_speed_verdict_compares_the_models_turn_by_turn():
    rows = [
        bench_row(deblur.VANILLA, 25.0, [10.0, 20.0, 10.0]),
        # Slower in the median, but as fast in one turn: the turns' ratios 10/11, 1 and 10/10.5 do not show a
        # slowdown beyond their own spread.
        bench_row(deblur.DEBLURRING, 28.5, [11.0, 20.0, 10.5]),
        # A uniform 10% slowdown is slower in every turn, however much the load moved between turns.
        bench_row("slow", 27.5, [11.0, 22.0, 11.0]),
        bench_row("deblurnerf", 24.0, None),
    ]
    summary = deblur.summarise(rows, [deblur.DEBLURRING, "slow"])
    ours, slow, nerf = summary["motion/deblurring_3dgs"], summary["motion/slow"], summary["motion/deblurnerf"]
    assert ours["psnr_target_met"] and ours["psnr_gain"]["deblur_nerf"] == pytest.approx(3.5)
    ratios = np.array([10.0 / 11.0, 1.0, 10.0 / 10.5])
    log_mean, log_error = np.log(ratios).mean(), np.log(ratios).std(ddof=1) / np.sqrt(3)
    assert ours["fps_ratio_interval"] == pytest.approx(np.exp([log_mean - 2 * log_error, log_mean + 2 * log_error]))
    assert ours["fps_ratio_interval"][0] < 1.0 < ours["fps_ratio_interval"][1] and ours["fps_target_met"]
    assert slow["fps_ratio_interval"] == pytest.approx([10.0 / 11.0, 10.0 / 11.0])
    assert not slow["fps_target_met"] and not slow["psnr_target_met"]
    assert nerf["fps_ratio_interval"] is None and nerf["fps_target_met"] is None and nerf["psnr_target"] is None
    table = deblur.markdown(rows, summary, {"scale": "cpu", "device": "cpu"})
    assert "| motion/deblurring_3dgs | 1 | +3.50 dB | +3.50 dB | +3 dB | yes | " in table
    assert "| 0.909–0.909 | no |" in table
