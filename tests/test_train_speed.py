"""The training-speed benchmark: phase marks that account for the whole of each iteration, and its end-to-end run."""

import json
import math

import pytest

import train
from bench import train_speed
from utils.phase_timer import (
    BLUR_MODEL,
    DENSIFICATION,
    LOSS,
    OPTIMIZER_STEP,
    OTHER,
    PHASES,
    RASTERIZER_BACKWARD,
    RASTERIZER_FORWARD,
)

WARMUP, TIMED = 2, 4


@pytest.mark.parametrize("blur", ["none", "motion"])
def test_the_phases_of_each_iteration_add_up_to_it(tiny_scene, blur):
    # The motion blur model renders its moments and the unshifted Gaussians.
    options = train.options_from_command_line(["-s", tiny_scene, "--blur", blur])
    renders = 1 if blur == "none" else options.blur.num_moments + 1
    timer, _, _ = train_speed.timed_training(tiny_scene, blur, "cpu", TIMED, WARMUP)
    first_timed = WARMUP + 1
    marks = [(iteration, name, stamp) for iteration, name, stamp in timer.marks
             if iteration is None or iteration >= first_timed]
    stamps = [stamp for _, _, stamp in marks]
    assert stamps == sorted(stamps), "the marks follow one another in time, the backward hooks' included"
    for iteration in range(first_timed, first_timed + TIMED):
        names = [name for marked, name, _ in marks if marked == iteration]
        assert names[0] == OTHER
        # Each render's backward is marked once, after the loss and before the optimizer step.
        assert names.count(RASTERIZER_BACKWARD) == renders
        assert names.index(LOSS) < names.index(RASTERIZER_BACKWARD) < names.index(OPTIMIZER_STEP)
        assert {RASTERIZER_FORWARD, DENSIFICATION} <= set(names)
        assert (BLUR_MODEL in names) == (blur != "none")

    summary = timer.summary()
    span = stamps[-1] - stamps[0]
    assert summary["iterations"] == TIMED
    assert set(summary["phase_seconds"]) == set(PHASES)
    assert all(seconds >= 0.0 for seconds in summary["phase_seconds"].values())
    # The phases partition the timed span: their sum is the span up to the rounding of float additions.
    assert math.isclose(sum(summary["phase_seconds"].values()), span, rel_tol=1e-9)
    assert math.isclose(summary["seconds"], span, rel_tol=1e-9)
    assert math.isclose(summary["iterations_per_second"], TIMED / span, rel_tol=1e-9)


def test_the_benchmark_runs_end_to_end(tiny_scene, tmp_path, capsys):
    path = tmp_path / "speed.json"
    train_speed.main(["--device", "cpu", "--source", tiny_scene, "--iterations", "2", "--warmup", "1",
                      "--json", str(path)])
    with open(path) as file:
        written = json.load(file)
    results = written["results"]
    assert [result["run"] for result in results] == ["vanilla", "defocus", "motion"]
    for result in results:
        assert result["iterations"] == 2 and result["resolution"] == "64x48"
        assert math.isclose(sum(result["phase_ms"].values()), result["iteration_ms"], rel_tol=1e-9)
        assert math.isclose(result["iteration_ms"], 1000.0 / result["iterations_per_second"], rel_tol=1e-9)
        assert (result["phase_ms"][BLUR_MODEL] > 0.0) == (result["run"] != "vanilla")
        assert 0.0 < result["outside_rasterizer_fraction"] < 1.0
    assert written["settings"]["device"].startswith("CPU")
    table = capsys.readouterr().out
    assert "rast fwd" in table and all(run in table for run in ("vanilla", "defocus", "motion"))


def test_a_missing_suite_scene_is_generated_from_the_bench_preset(tmp_path, monkeypatch):
    made = []

    def fake_generate_scene(config, folder, log):
        made.append((config.preset, config.layout, config.blur, config.width, config.height, str(folder)))

    monkeypatch.setattr(train_speed, "generate_scene", fake_generate_scene)
    folder = train_speed.scene_folder(str(tmp_path), "blocks", "motion")
    assert made == [("bench", "blocks", "motion", 400, 300, folder)]
    assert folder == str(tmp_path / "blocks_motion")


def test_bad_options_are_refused(tiny_scene, capsys):
    for argv, fragment in ((["--iterations", "0"], "--iterations"), (["--source", "/no/such/scene"], "--source")):
        with pytest.raises(SystemExit):
            train_speed.main(argv)
        assert fragment in capsys.readouterr().err
