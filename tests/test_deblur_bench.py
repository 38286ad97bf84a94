"""The deblurring benchmark: its sharp-photo ceiling (the scene it trains on, the names it reserves), its choice
of scenes by blur type and family, its parallel trainings, its verdicts on the targets and its table of recovered
fractions."""

import json
import math
import os

import numpy as np
import pytest

from bench import deblur
from scene.synthetic import SceneConfig


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
            "--out", out, "--no-sharp"]


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_failed_parallel_training_names_its_run_and_log(tiny_suite, tmp_path, capsys):
    out = str(tmp_path / "bench")
    with pytest.raises(SystemExit):
        deblur.main(bench_arguments(tiny_suite, out) + ["--jobs", "2", "--no-vanilla", "--no-default",
                                                         "--no-official", "--variant", "broken=--min_contribution 1e9"])
    error = capsys.readouterr().err
    runs = os.path.join(out, "runs", "tiny_defocus")
    assert sorted(os.listdir(runs)) == ["broken", "broken.log"]  # --no-default: the variant's run alone
    log = os.path.join(runs, "broken.log")
    assert "tiny_defocus / broken: --min_contribution 1e+09 would prune every Gaussian" in error
    assert f"see {log}" in error
    assert "min_contribution" in read(log)


# Slow: the tiny suite's defocus scene is generated first.
@pytest.mark.slow
def test_a_variant_s_bad_option_stops_the_benchmark_before_any_training(tiny_suite, tmp_path, capsys):
    out = str(tmp_path / "bench")
    with pytest.raises(SystemExit) as exit_info:
        deblur.main(bench_arguments(tiny_suite, out) + ["--jobs", "2", "--no-vanilla", "--no-official",
                                                         "--variant", "broken=--lambda_s -1"])
    assert exit_info.value.code == 2
    assert "--lambda_s must be in (0, 1], got -1.0" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(out, "runs"))


def test_the_rows_train_the_default_and_the_official_blur_models(tmp_path):
    def options(method, blur, variants=(), iterations=3000, full=False):
        method_options = deblur.method_options(method, list(variants))
        return deblur.run_training_options(str(tmp_path), blur, str(tmp_path / method), iterations, full, "cpu", 0,
                                           None, method_options).values

    # At 3000 iterations the compressed official schedule puts the KNN augmentation at 375.
    lens = options(deblur.DEBLURRING, "defocus")
    assert (lens.blur_model, lens.lens_blur, lens.knn_iteration, lens.iterations) == ("camera", True, 0, 3000)
    shake = options(deblur.DEBLURRING, "motion")
    assert (shake.camera_shake, shake.lens_blur, shake.linear_exposure) == (True, True, True)
    assert (shake.min_contribution, shake.knn_iteration) == (1.0, 375)
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
           "num_gaussians": 1000, "render_resolution": "400x300", "metrics": {"deblur_nerf": scores, "3dgs": scores},
           "family": deblur.IN_FAMILY, "departures": []}
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


def write_scene(suite, name, with_sharp=True, **fields):
    """A scene folder of the suite whose scene.json holds the config of these fields (the rest: defaults)."""
    write(os.path.join(suite, name, "scene.json"), json.dumps({"config": SceneConfig(**fields).as_dict()}))
    if with_sharp:
        write(os.path.join(suite, name, "images_sharp", "001.png"), "training view, sharp")


def test_scenes_are_picked_by_blur_type_and_family(tmp_path):
    suite = str(tmp_path / "suite")
    write_scene(suite, "gallery_defocus", blur="defocus")
    write_scene(suite, "gallery_motion", blur="motion")
    write_scene(suite, "gallery_motion_walk", blur="motion", shake_path="walk", recorded_pose="mean")
    write_scene(suite, "gallery_defocus_blades", blur="defocus", aperture_blades=6)
    write_scene(suite, "gallery_mixed", blur="mixed")
    os.makedirs(os.path.join(suite, "notes"))

    def names(blur_types, families=(deblur.IN_FAMILY, deblur.OUT_OF_FAMILY), scenes=None):
        return [name for name, _, _ in deblur.find_scenes(suite, scenes, blur_types, families)]

    assert names(["motion"]) == ["gallery_motion", "gallery_motion_walk"]
    assert names(["defocus", "motion", "mixed"], [deblur.OUT_OF_FAMILY]) == [
        "gallery_defocus_blades", "gallery_mixed", "gallery_motion_walk"]
    assert names(["defocus", "motion", "mixed"], [deblur.IN_FAMILY]) == ["gallery_defocus", "gallery_motion"]
    assert names(["mixed"], scenes=["gallery_mixed", "gallery_motion"]) == ["gallery_mixed"]
    _, _, walk = deblur.find_scenes(suite, ["gallery_motion_walk"], ["motion"])[0]
    assert walk == {"blur": "motion", "family": deblur.OUT_OF_FAMILY, "departures": ["walk path", "mean pose"]}
    # Mixed blur trains with the motion preset, whose copies of the scene can also change the Gaussians' shapes.
    options = deblur.run_training_options(suite, "mixed", "model", 100, False, "cpu", 0, None, {})
    assert options.values.config == "synthetic_motion"

    write(os.path.join(suite, "broken", "scene.json"), json.dumps({"config": {"blur": "zoom"}}))
    with pytest.raises(deblur.BenchmarkError, match=r"broken.scene\.json: .*zoom"):
        deblur.find_scenes(suite, None, ["motion"])


def test_the_ceiling_is_trained_unless_skipped(tmp_path, capsys):
    suite = str(tmp_path / "suite")
    write_scene(suite, "gallery_motion", with_sharp=False, blur="motion")
    # The ceiling's scene is made before any training, so a scene without sharp photos stops the benchmark at once.
    with pytest.raises(SystemExit):
        deblur.main(["--data", suite, "--device", "cpu", "--out", str(tmp_path / "out")])
    assert "gallery_motion has no images_sharp/ folder" in capsys.readouterr().err


def scene_rows(scene, blur, departures, psnrs):
    """Fabricated result rows of a scene, one per method, from {method: PSNR} (the same under both protocols)."""
    rows = []
    for method, psnr in psnrs.items():
        row = bench_row(method, psnr, [10.0, 10.0, 10.0])
        rows.append(dict(row, scene=scene, blur=blur, family=deblur.OUT_OF_FAMILY if departures else deblur.IN_FAMILY,
                         departures=departures))
    return rows


def test_the_tables_give_each_methods_recovered_fraction_per_scene_and_family():
    shake, vanilla, ours, ceiling = "shake", deblur.VANILLA, deblur.DEBLURRING, deblur.SHARP
    rows = (scene_rows("gallery_motion", "motion", [], {vanilla: 24.0, ours: 27.0, shake: 28.0, ceiling: 29.0})
            + scene_rows("blocks_motion", "motion", [], {vanilla: 25.0, ours: 26.0, shake: 28.0, ceiling: 29.0})
            + scene_rows("gallery_motion_walk", "motion", ["walk path"],
                         {vanilla: 24.0, ours: 25.0, shake: 24.5, ceiling: 28.0})
            # No headroom: the ceiling is within MIN_HEADROOM_DB of vanilla, so no fraction is made up.
            + scene_rows("gallery_motion_jerk", "motion", ["jerk path", "mean pose"],
                         {vanilla: 24.0, ours: 24.5, shake: 24.0, ceiling: 24.05})
            + scene_rows("gallery_mixed", "mixed", ["defocus and shake"], {vanilla: 20.0, ours: 22.0, ceiling: 24.0})
            + scene_rows("gallery_defocus", "defocus", [], {vanilla: 21.0, ours: 21.5}))  # --no-sharp: no ceiling
    table = deblur.scene_table(rows)
    assert list(table) == ["gallery_motion", "blocks_motion", "gallery_motion_walk", "gallery_motion_jerk",
                           "gallery_mixed", "gallery_defocus"]
    walk = table["gallery_motion_walk"]
    assert walk["vanilla"]["deblur_nerf"] == 24.0 and walk["ceiling"]["3dgs"] == 28.0
    assert walk["methods"][ours]["recovered_fraction"]["deblur_nerf"] == pytest.approx(0.25)
    assert walk["methods"][shake]["recovered_fraction"]["3dgs"] == pytest.approx(0.125)
    assert table["gallery_motion_jerk"]["methods"][ours]["recovered_fraction"]["deblur_nerf"] is None
    assert table["gallery_defocus"]["methods"][ours]["recovered_fraction"]["deblur_nerf"] is None

    families = deblur.summarise_families(table)
    assert list(families) == ["mixed/out-of-family/deblurring_3dgs", "motion/in-family/deblurring_3dgs",
                              "motion/in-family/shake", "motion/out-of-family/deblurring_3dgs",
                              "motion/out-of-family/shake", "all/in-family/deblurring_3dgs", "all/in-family/shake",
                              "all/out-of-family/deblurring_3dgs", "all/out-of-family/shake"]
    in_family = families["motion/in-family/deblurring_3dgs"]
    assert in_family["scenes"] == ["gallery_motion", "blocks_motion"]
    assert in_family["recovered_fraction"]["deblur_nerf"] == pytest.approx((3 / 5 + 1 / 4) / 2)
    assert in_family["psnr_gain"]["3dgs"] == pytest.approx(2.0)
    assert families["motion/out-of-family/shake"]["scenes"] == ["gallery_motion_walk"]
    assert families["all/out-of-family/deblurring_3dgs"]["recovered_fraction"]["3dgs"] == pytest.approx(
        (0.25 + 0.5) / 2)

    # The targets stay a verdict on the scenes of the models' own family.
    summary = deblur.summarise(rows, [ours, shake])
    assert summary["motion/deblurring_3dgs"]["scenes"] == ["blocks_motion", "gallery_motion"]
    assert not any(key.startswith("mixed/") for key in summary)

    document, text = deblur.report(rows, [ours, shake], {"scale": "cpu", "device": "cpu"})
    assert json.loads(json.dumps(document))["scenes"]["gallery_mixed"]["methods"][ours]["recovered_fraction"][
        "deblur_nerf"] == pytest.approx(0.5)
    assert ("| scene | blur | family | vanilla | deblurring_3dgs | recovered | shake | recovered | "
            "ceiling (sharp_3dgs) |") in text
    assert "| gallery_motion_walk | motion | out-of-family: walk path | 24.00 | 25.00 | 0.25 | 24.50 | 0.12 | 28.00 |" \
        in text
    assert "| gallery_mixed | mixed | out-of-family: defocus and shake | 20.00 | 22.00 | 0.50 |  |  | 24.00 |" in text
    assert "| gallery_defocus | defocus | in-family | 21.00 | 21.50 | n/a |  |  | n/a |" in text
    assert "| motion/in-family/deblurring_3dgs | 2 | 0.42 | 0.42 | +2.00 dB |" in text


@pytest.mark.slow
def test_the_2d_baselines_add_rows_trained_on_their_deblurred_photos(tiny_suite, tmp_path):
    out = str(tmp_path / "bench")
    deblur.main(bench_arguments(tiny_suite, out) + ["--no-official", "--with-2d", "--2d-iterations", "2",
                                                     "--2d-cache", str(tmp_path / "cache")])
    with open(os.path.join(out, "deblur_bench.json")) as file:
        table = json.load(file)
    rows = {row["method"]: row for row in table["rows"]}
    assert list(rows) == [deblur.VANILLA, deblur.DEBLURRING, *deblur.IMAGE_METHODS.values()]
    for method, row_method in deblur.IMAGE_METHODS.items():
        row = rows[row_method]
        assert math.isfinite(row["metrics"]["deblur_nerf"]["psnr"]) and row["render_fps"] > 0
        # The generated scene keeps its sharp truth, so the photos' own PSNR is measured before and after.
        assert math.isfinite(row["photo_psnr_before"]) and math.isfinite(row["photo_psnr_after"])
        # Vanilla 3DGS trained on the copy whose training photos the 2D method rewrote.
        copy = os.path.join(out, "image_deblurred", "tiny_defocus", method)
        with open(os.path.join(out, "runs", "tiny_defocus", row_method, "cfg_args")) as file:
            recorded = file.read()
        assert f"source_path='{copy}'" in recorded and "blur='none'" in recorded
    assert "2D deblurring: PSNR of the training photos" in read(os.path.join(out, "deblur_bench.md"))

    # --reuse deblurs nothing again: the copies' records stay as they were, and so do the rows.
    records = [os.path.join(out, "image_deblurred", "tiny_defocus", method, "image_deblur.json")
               for method in deblur.IMAGE_METHODS]
    modified = [os.path.getmtime(record) for record in records]
    deblur.main(bench_arguments(tiny_suite, out) + ["--no-official", "--with-2d", "--2d-iterations", "2",
                                                     "--2d-cache", str(tmp_path / "cache"), "--reuse"])
    assert [os.path.getmtime(record) for record in records] == modified
    with open(os.path.join(out, "deblur_bench.json")) as file:
        reused = {row["method"]: row for row in json.load(file)["rows"]}
    for row_method in deblur.IMAGE_METHODS.values():
        assert reused[row_method]["photo_psnr_after"] == rows[row_method]["photo_psnr_after"]
