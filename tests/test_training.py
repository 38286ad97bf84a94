import json
import logging
import os
import re
import subprocess
import sys
from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import render as render_cli
import train
import training.blur_model
import training.loop
from arguments import OptimizationParams, read_cfg_args
from blur import scaled_schedule
from gaussian_renderer import render, total_blending_weights
from scene.gaussian_model import GaussianModel
from scene.scene import Scene, point_cloud_path
from tiny_scene import camera_at, gaussian_params, random_unit_quaternions
from training.blur_model import render_training_view
from training.density import adaptive_density_control
from training.loop import training_loss
from utils.checkpoints import checkpoint_iterations_in, checkpoint_path, load_checkpoint

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Schedules shrunk to a few hundred iterations: densification, SH growth and an opacity reset all happen.
SHORT_SCHEDULE = [
    "--device", "cpu",
    "--sh_degree", "1",
    "--sh_degree_interval", "100",
    "--densify_from_iter", "40",
    "--densify_until_iter", "200",
    "--densification_interval", "40",
    "--opacity_reset_interval", "150",
    "--position_lr_init", "0.0016",
    "--position_lr_final", "0.000016",
]


def mean_training_loss(gaussians, scene):
    background = torch.zeros(3)
    with torch.no_grad():
        losses = [
            training_loss(render(camera, gaussians.render_params(), background).image, camera.original_image, 0.2)
            for camera in scene.train_cameras
        ]
    return float(torch.stack(losses).mean())


def test_training_reduces_the_loss_and_raises_test_psnr(tiny_scene, tmp_path):
    model_path = str(tmp_path / "run")
    argv = ["-s", tiny_scene, "-m", model_path, "--eval", "--hold", "4", "--iterations", "300",
            "--test_iterations", "0", "300", "--save_iterations", "300", "--seed", "3"] + SHORT_SCHEDULE
    train.main(argv)

    dataset = train.options_from_command_line(argv).model
    initial = GaussianModel(dataset.sh_degree)
    initial_scene = Scene(dataset, initial)
    trained = GaussianModel(dataset.sh_degree)
    trained_scene = Scene(dataset, trained, load_iteration=300)
    assert len(trained_scene.test_cameras) == 2 and len(trained_scene.train_cameras) == 6
    initial_loss = mean_training_loss(initial, initial_scene)
    trained_loss = mean_training_loss(trained, trained_scene)
    assert trained_loss < 0.5 * initial_loss

    psnr_before = mean_test_psnr(os.path.join(model_path, "results_0.json"))
    psnr_after = mean_test_psnr(os.path.join(model_path, "results_300.json"))
    print(f"held-out PSNR {psnr_before:.2f} dB before training, {psnr_after:.2f} dB after")
    # On one thread (see conftest.py) it rose from 20.45 to 30.04 dB: the margin is a third of the gain.
    assert psnr_after > psnr_before + 3.0

    assert os.path.isfile(point_cloud_path(model_path, 300))
    with open(os.path.join(model_path, "cfg_args")) as file:
        assert file.read().startswith("Namespace(")


def gaussians_at(means, scales, opacities, seed=0):
    """Gaussians at given places, sizes and opacities, with random colours and rotations."""
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0.1, 0.9, (len(means), 3))
    return gaussian_params(means, scales, random_unit_quaternions(rng, len(means)), opacities, colors, sh_degree=1)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_blending_weights_add_up_to_the_rendered_alpha(backend):
    rng = np.random.default_rng(1)
    params = gaussians_at(rng.uniform(-1, 1, (200, 3)), rng.uniform(0.03, 0.2, (200, 3)), rng.uniform(0.2, 0.9, 200))
    cameras = [camera_at([0.0, -1.0, -4.0]), camera_at([2.0, 0.5, -3.5])]
    weights = total_blending_weights(cameras, params, backend)
    assert weights.shape == (200,) and torch.all(weights >= 0)
    with torch.no_grad():
        alpha = sum(render(camera, params, torch.zeros(3), backend).alpha.sum() for camera in cameras)
    # Blending gives each pixel sum_i alpha_i T_i = 1 - T: the rendered alpha.
    torch.testing.assert_close(weights.sum(), alpha, rtol=1e-4, atol=0)


def test_a_hidden_gaussian_contributes_nothing():
    # A small Gaussian behind a large, almost opaque one, as the camera on the -z axis sees them.
    params = gaussians_at([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [[0.6, 0.6, 0.05], [0.05, 0.05, 0.05]], [0.99, 0.9])
    front, side = camera_at([0.0, 0.0, -4.0]), camera_at([4.0, 0.0, 1.0])
    hidden, seen = total_blending_weights([front], params, "cpu"), total_blending_weights([side], params, "cpu")
    assert hidden[1] < 1e-3 * hidden[0]
    assert seen[1] > 1.0


def mean_test_psnr(results_path):
    with open(results_path) as file:
        return json.load(file)["mean"]["3dgs"]["psnr"]


def run_to_completion_or_interrupt(argv, interrupt_at_render=None, monkeypatch=None):
    """Train; with interrupt_at_render, die (as a killed process would) during that render call."""
    if interrupt_at_render is not None:
        calls = {"count": 0}

        def interrupted_render(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == interrupt_at_render:
                raise KeyboardInterrupt
            return render(*args, **kwargs)

        monkeypatch.setattr(training.blur_model, "render", interrupted_render)
    train.main(argv)


def test_resume_after_interruption_matches_an_uninterrupted_run(tiny_scene, tmp_path, monkeypatch):
    common = ["-s", tiny_scene, "--iterations", "120", "--checkpoint_interval", "50", "--save_iterations", "120",
              "--seed", "7"] + SHORT_SCHEDULE
    uninterrupted = str(tmp_path / "uninterrupted")
    resumed = str(tmp_path / "resumed")
    run_to_completion_or_interrupt(["-m", uninterrupted] + common)

    # Without --eval there are no test views, so training renders exactly once per iteration: the run dies in
    # iteration 110, after the checkpoint of iteration 100. Densification (with its random splits) and the SH
    # degree increase happen both before and after the checkpoint.
    with pytest.raises(KeyboardInterrupt):
        run_to_completion_or_interrupt(["-m", resumed] + common, interrupt_at_render=110, monkeypatch=monkeypatch)
    monkeypatch.undo()
    assert checkpoint_iterations_in(resumed) == [100]
    assert not any(name.endswith(".tmp") for name in os.listdir(resumed))
    run_to_completion_or_interrupt(["-m", resumed, "--resume"] + common)

    reference = GaussianModel(1)
    reference.load_ply(point_cloud_path(uninterrupted, 120))
    continued = GaussianModel(1)
    continued.load_ply(point_cloud_path(resumed, 120))
    assert continued.num_points == reference.num_points
    for name in reference.param_names:
        torch.testing.assert_close(continued.raw_parameter(name), reference.raw_parameter(name), rtol=0, atol=1e-6)
    # Only the newest periodic checkpoint is kept.
    assert checkpoint_iterations_in(uninterrupted) == [100]


def test_checkpoints_hold_the_full_training_state(tiny_scene, tmp_path, capsys):
    model_path = str(tmp_path / "run")
    train.main(["-s", tiny_scene, "-m", model_path, "--iterations", "30", "--checkpoint_interval", "0",
                "--checkpoint_iterations", "10", "20"] + SHORT_SCHEDULE)
    assert checkpoint_iterations_in(model_path) == [10, 20]
    state = load_checkpoint(checkpoint_path(model_path, 20))
    assert state["iteration"] == 20
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    # Eight training views drawn without repeats: 20 draws leave 4 of the third round.
    assert len(state["sampler"]["remaining"]) == 4
    assert state["gaussians"]["optimizer"]["state"], "Adam moments are saved"
    assert state["gaussians"]["xyz_gradient_accum"].shape == (state["gaussians"]["params"]["xyz"].shape[0], 1)

    expect_cli_error(["-s", tiny_scene, "-m", model_path, "--resume", "--device", "cpu", "--sh_degree", "2"], capsys,
                     "chkpnt20.pth", "SH degree 1", "--sh_degree 2")


def expect_cli_error(argv, capsys, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code != 0
    message = capsys.readouterr().err + (exit_info.value.code if isinstance(exit_info.value.code, str) else "")
    for fragment in fragments:
        assert fragment in message
    return message


@pytest.mark.parametrize("extra, window", [([], "between iterations 41 and 50"),
                                           (["--checkpoint_iterations", "45"], "between iterations 41 and 45")])
def test_a_nan_in_the_gaussians_stops_training_within_its_window(tiny_scene, tmp_path, monkeypatch, capsys, extra,
                                                                   window):
    """The finiteness of the loss and of the rasterizer's inputs stays on the device until the progress bar reads
    it, every tenth iteration and before anything is written; the error names the iterations since the last read."""
    model_path = str(tmp_path / "run")
    calls = {"count": 0}

    def poisoned_render_training_view(camera, params, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 43:
            with torch.no_grad():
                params.means[0, 0] = float("nan")  # the trained positions themselves
        return render_training_view(camera, params, *args, **kwargs)

    monkeypatch.setattr(training.loop, "render_training_view", poisoned_render_training_view)
    expect_cli_error(["-s", tiny_scene, "-m", model_path, "--iterations", "80", "--checkpoint_interval", "0"]
                     + extra + SHORT_SCHEDULE, capsys, f"the loss or the Gaussians became non-finite {window}")
    assert checkpoint_iterations_in(model_path) == []


def test_missing_source_folder(tmp_path, capsys):
    expect_cli_error(["-s", str(tmp_path / "no_such_scene")], capsys, "no_such_scene", "is not a folder")


@pytest.mark.parametrize("resolution", ["3", "-2", "0"])
def test_bad_resolution(tiny_scene, tmp_path, capsys, resolution):
    message = expect_cli_error(["-s", tiny_scene, "-m", str(tmp_path / "run"), "--resolution", resolution,
                                "--device", "cpu"], capsys)
    assert "resolution" in message.lower()


def test_non_numeric_resolution(tiny_scene, capsys):
    expect_cli_error(["-s", tiny_scene, "--resolution", "quarter"], capsys, "--resolution", "quarter")


def test_resume_without_checkpoint(tiny_scene, tmp_path, capsys):
    expect_cli_error(["-s", tiny_scene, "-m", str(tmp_path / "empty"), "--resume", "--device", "cpu"], capsys,
                     "no chkpnt<N>.pth checkpoint", "empty")


def test_resume_from_a_damaged_checkpoint(tiny_scene, tmp_path, capsys):
    model_path = tmp_path / "damaged"
    model_path.mkdir()
    (model_path / "chkpnt40.pth").write_bytes(b"truncated")
    expect_cli_error(["-s", tiny_scene, "-m", str(model_path), "--resume", "--device", "cpu"], capsys,
                     "chkpnt40.pth", "cannot read checkpoint")


def test_command_line_reports_errors_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "-s", str(tmp_path / "missing"), "--device", "cpu"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "missing is not a folder" in result.stderr


def test_min_contribution_prunes_what_the_training_views_barely_see(tiny_scene, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO)
    # After 60 iterations the tiny scene's faintest Gaussians give its training views 7 to 10 pixels each.
    model_path = str(tmp_path / "compact")
    argv = ["-s", tiny_scene, "-m", model_path, "--iterations", "60", "--save_iterations", "60",
            "--min_contribution", "10"] + SHORT_SCHEDULE
    train.main(argv)
    printed = caplog.text
    pruned, left = map(int, re.search(r"pruned (\d+) Gaussians .* less than 10; (\d+) left", printed).groups())
    assert pruned > 0
    dataset = train.options_from_command_line(argv).model
    gaussians = GaussianModel(dataset.sh_degree)
    scene = Scene(dataset, gaussians, load_iteration=60)
    assert gaussians.num_points == left
    with torch.no_grad():
        weights = total_blending_weights(scene.train_cameras, gaussians.render_params(), "cpu")
    # Removing Gaussians only lets more light through to the others, so no survivor's weight fell.
    assert weights.min() >= 10.0 - 1e-3

    expect_cli_error(["-s", tiny_scene, "-m", str(tmp_path / "everything"), "--iterations", "5",
                      "--min_contribution", "1e9"] + SHORT_SCHEDULE, capsys, "--min_contribution 1e+09",
                     "every Gaussian")
    expect_cli_error(["-s", tiny_scene, "--min_contribution", "-1"], capsys, "--min_contribution")


def test_eval_scores_the_last_iteration_whatever_test_iterations_says(tiny_scene, tmp_path):
    # The default --test_iterations, 3DGS's 7000 and 30000, lie beyond a shorter run.
    options = train.options_from_command_line(["-s", tiny_scene, "--iterations", "600"])
    assert options.values.test_iterations == [600, 7_000, 30_000]
    model_path = str(tmp_path / "run")
    train.main(["-s", tiny_scene, "-m", model_path, "--eval", "--hold", "4", "--iterations", "10",
                "--test_iterations", "5", "--checkpoint_interval", "0"] + SHORT_SCHEDULE)
    assert sorted(name for name in os.listdir(model_path) if name.startswith("results_")) == [
        "results_10.json", "results_5.json"]


def test_a_shorter_run_compresses_the_schedule(tiny_scene):
    def parsed(*options):
        return train.options_from_command_line(["-s", tiny_scene, *options]).values

    schedule = ("densify_from_iter", "densify_until_iter", "opacity_reset_interval", "sh_degree_interval",
                "densification_interval", "position_lr_max_steps")
    full = parsed()
    assert [getattr(full, name) for name in schedule] == [500, 15_000, 3000, 1000, 100, 0]
    # 3DGS's schedule a tenth as long: its four opacity resets end by 1200, densification by 1500, the position
    # learning rate still decays over --iterations (0), and the interval between densifications stays.
    short = parsed("--iterations", "3000")
    assert [getattr(short, name) for name in schedule] == [50, 1500, 300, 100, 100, 0]
    typed = parsed("--iterations", "3000", "--densify_until_iter", "2900", "--opacity_reset_interval", "0")
    assert [getattr(typed, name) for name in schedule] == [50, 2900, 0, 100, 100, 0]
    assert [getattr(parsed("--iterations", "40000"), name) for name in schedule] == [500, 15_000, 3000, 1000, 100, 0]

    # A deblurring run compresses the official 20 000-iteration schedule, which has no opacity reset.
    deblurring = parsed("--config", "synthetic_defocus", "--blur_model", "official", "--iterations", "2000")
    assert {name: getattr(deblurring, name) for name in scaled_schedule(2000)} == scaled_schedule(2000)
    assert deblurring.opacity_reset_interval == 0
    # The default defocus model skips the KNN augmentation, at any length.
    assert parsed("--config", "synthetic_defocus", "--iterations", "2000").knn_iteration == 0


def test_no_opacity_reset_at_the_end_of_training(tiny_scene, tmp_path):
    # This schedule resets every opacity to 0.01 at iteration 60, the last one: the saved model would be almost
    # transparent (a mean alpha of 0.02 over the training views, against 0.25 without the reset).
    model_path = str(tmp_path / "run")
    argv = ["-s", tiny_scene, "-m", model_path, "--checkpoint_interval", "0"] + SHORT_SCHEDULE + [
        "--iterations", "60", "--opacity_reset_interval", "60", "--densify_until_iter", "100"]
    train.main(argv)
    dataset = train.options_from_command_line(argv).model
    gaussians = GaussianModel(dataset.sh_degree)
    scene = Scene(dataset, gaussians, load_iteration=60)
    with torch.no_grad():
        alpha = torch.stack([render(camera, gaussians.render_params(), torch.zeros(3)).alpha.mean()
                             for camera in scene.train_cameras]).mean()
    assert gaussians.get_opacity.max() > 0.1
    assert alpha > 0.1


def opacities_after_density_control(iteration, white_background, **schedule):
    """The opacities of 30 new Gaussians (each at 0.1) after adaptive_density_control at iteration of a 1000-iteration
    run that densifies every 100 iterations from iteration 50 and resets opacities every 150 (unless schedule
    says otherwise)."""
    rng = np.random.default_rng(0)
    gaussians = GaussianModel(0)
    gaussians.create_from_pcd(SimpleNamespace(points=rng.normal(size=(30, 3)), colors=rng.uniform(size=(30, 3))), 1.0)
    opt = OptimizationParams.extract(Namespace())
    for name, value in dict(dict(iterations=1000, densify_from_iter=50, densification_interval=100,
                                 opacity_reset_interval=150), **schedule).items():
        setattr(opt, name, value)
    gaussians.training_setup(opt)
    adaptive_density_control(iteration, gaussians, opt, 1.0, white_background)
    return gaussians.get_opacity.detach()


def test_a_white_background_adds_one_opacity_reset_where_densification_starts():
    """As in 3DGS, a white background resets every opacity (to at most 0.01) once more, at densify_from_iter, where a
    black one leaves them; both reset at each multiple of opacity_reset_interval. The extra reset keeps to the rules
    of the others: none in the last opacity_reset_interval iterations, none when resets are off (interval 0, as in
    the deblurring presets)."""
    untouched = torch.full((30, 1), 0.1)

    def is_reset(opacities):
        return bool(opacities.max() <= 0.01 + 1e-6)

    assert is_reset(opacities_after_density_control(50, white_background=True))
    torch.testing.assert_close(opacities_after_density_control(50, white_background=False), untouched)
    for white_background in (True, False):
        assert is_reset(opacities_after_density_control(150, white_background))
    torch.testing.assert_close(opacities_after_density_control(900, True, densify_from_iter=900), untouched)
    torch.testing.assert_close(opacities_after_density_control(50, True, opacity_reset_interval=0), untouched)


def test_a_run_removes_the_temporaries_of_interrupted_writes(tiny_scene, tmp_path):
    model_path = tmp_path / "run"
    snapshot = model_path / "point_cloud" / "iteration_5"
    snapshot.mkdir(parents=True)
    stale = [model_path / ".chkpnt100.pth.k3v_9qzx.tmp", snapshot / ".point_cloud.ply.0f3a9c21.tmp"]
    kept = [model_path / "notes.tmp", model_path / ".chkpnt100.pth.tmp", snapshot / "notes.txt"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    train.main(["-s", tiny_scene, "-m", str(model_path), "--iterations", "2", "--checkpoint_interval", "0"]
               + SHORT_SCHEDULE)
    assert [path for path in stale if path.exists()] == []
    assert all(path.exists() for path in kept)


def test_every_output_appears_whole(tiny_scene, tmp_path, monkeypatch):
    """Each file of a run is written beside its place and renamed into it once complete, so that a run killed
    mid-write leaves the previous version whole."""
    model_path = str(tmp_path / "run")
    renamed = set()
    rename = os.replace

    def recording_rename(source, destination):
        renamed.add(os.path.relpath(destination, model_path))
        rename(source, destination)

    monkeypatch.setattr(os, "replace", recording_rename)
    train.main(["-s", tiny_scene, "-m", model_path, "--blur", "defocus", "--knn_iteration", "0", "--eval", "--hold",
                "4", "--iterations", "4", "--checkpoint_iterations", "4", "--checkpoint_interval", "0"]
               + SHORT_SCHEDULE)
    render_cli.main(["-m", model_path, "--skip_train", "--skip_test", "--fps_warmup", "0", "--fps_frames", "2"])
    snapshot = os.path.join("point_cloud", "iteration_4")
    assert renamed >= {"cfg_args", "input.ply", "cameras.json", os.path.join(snapshot, "point_cloud.ply"),
                       os.path.join(snapshot, "blur_model.pth"), "chkpnt4.pth", "results_4.json", "fps.json"}


def test_resume_keeps_the_recorded_arguments_of_the_run(tiny_scene, tmp_path):
    model_path = str(tmp_path / "run")
    common = ["-s", tiny_scene, "-m", model_path, "--checkpoint_interval", "5"] + SHORT_SCHEDULE
    train.main(common + ["--iterations", "5"])
    with open(os.path.join(model_path, "cfg_args")) as file:
        recorded = file.read()
    train.main(common + ["--iterations", "10", "--resume"])
    assert os.path.isfile(point_cloud_path(model_path, 10))
    with open(os.path.join(model_path, "cfg_args")) as file:
        assert file.read() == recorded
    assert read_cfg_args(model_path).resume is False
