import json
import os
import subprocess
import sys

import imageio
import imageio.v3 as iio
import numpy as np
import pytest

import render
from scene.camera_paths import interpolated_path, is_forward_facing, spiral_path
from tiny_scene import HEIGHT, WIDTH, train_tiny_run
from utils.geometry import look_at

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory)


def run_render_cli(*arguments):
    return subprocess.run([sys.executable, "render.py", *arguments], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=300)


def test_render_writes_views_video_and_speed(trained_run):
    result = run_render_cli("-m", trained_run, "--video", "--video_frames", "12", "--fps_frames", "20",
                            "--fps_warmup", "3")
    assert result.returncode == 0, result.stderr

    for split, count in (("train", 6), ("test", 2)):
        base = os.path.join(trained_run, split, "ours_60")
        for kind, width in (("renders", WIDTH), ("gt", WIDTH), ("side_by_side", 2 * WIDTH)):
            names = sorted(os.listdir(os.path.join(base, kind)))
            assert names == [f"{index:05d}.png" for index in range(count)]
            assert iio.imread(os.path.join(base, kind, names[0])).shape == (HEIGHT, width, 3)
        side_by_side = iio.imread(os.path.join(base, "side_by_side", "00001.png"))
        np.testing.assert_array_equal(side_by_side[:, :WIDTH], iio.imread(os.path.join(base, "renders", "00001.png")))
        np.testing.assert_array_equal(side_by_side[:, WIDTH:], iio.imread(os.path.join(base, "gt", "00001.png")))

    frames = imageio.mimread(os.path.join(trained_run, "video", "ours_60.mp4"), format="FFMPEG")
    assert len(frames) == 12 and frames[0].shape == (HEIGHT, WIDTH, 3)
    # The camera moves along the path.
    assert np.abs(frames[0].astype(int) - frames[6].astype(int)).mean() > 0.5

    with open(os.path.join(trained_run, "fps.json")) as file:
        speed = json.load(file)
    assert speed["iteration"] == 60 and speed["timed_frames"] == 20 and speed["warmup_frames"] == 3
    assert (speed["width"], speed["height"]) == (WIDTH, HEIGHT)
    assert speed["fps"] > 0 and speed["fps"] == pytest.approx(1000.0 / speed["median_ms"])
    assert "FPS" in result.stdout


def test_fps_only_renders_no_images_and_loads_the_requested_iteration(trained_run):
    speed_file = os.path.join(trained_run, "fps.json")
    if os.path.exists(speed_file):
        os.remove(speed_file)
    render.main(["-m", trained_run, "--iteration", "30", "--fps-only", "--fps_frames", "5"])
    assert not os.path.exists(os.path.join(trained_run, "test", "ours_30"))
    with open(speed_file) as file:
        assert json.load(file)["iteration"] == 30


def expect_render_error(refusal, argv, *fragments):
    message = refusal(render.main, argv)
    assert message.startswith("render.py: error:")
    for fragment in fragments:
        assert fragment in message


def test_render_errors_are_clear(trained_run, tmp_path, refusal):
    expect_render_error(refusal, ["-m", str(tmp_path)], "cfg_args", str(tmp_path))
    expect_render_error(refusal, ["-m", trained_run, "--iteration", "45", "--fps-only"], "iteration 45",
                        "saved: 30, 60")


def poses_are_rigid(camera_to_world):
    rotations = camera_to_world[:, :3, :3]
    identity = np.broadcast_to(np.eye(3), rotations.shape)
    return np.allclose(rotations @ rotations.transpose(0, 2, 1), identity, atol=1e-9) and np.allclose(
        np.linalg.det(rotations), 1.0
    )


def test_spiral_path_orbits_the_mean_pose_and_looks_at_the_focus():
    rng = np.random.default_rng(0)
    captured = np.stack([np.eye(4) for _ in range(10)])
    captured[:, :3, 3] = rng.normal(scale=[0.3, 0.2, 0.05], size=(10, 3))
    path = spiral_path(captured, near=2.0, far=10.0, frame_count=40)
    assert path.shape == (40, 4, 4) and poses_are_rigid(path)
    focus_depth = 1.0 / (0.25 / 1.8 + 0.75 / 50.0)
    target = captured[:, :3, 3].mean(axis=0) + np.array([0.0, 0.0, focus_depth])
    to_target = target - path[:, :3, 3]
    np.testing.assert_allclose(path[:, :3, 2], to_target / np.linalg.norm(to_target, axis=1, keepdims=True),
                               atol=1e-9)
    center = captured[:, :3, 3].mean(axis=0)
    np.testing.assert_allclose(path[:, :3, 3].mean(axis=0), center, atol=1e-9)
    # Two turns in 40 frames: no step is longer than the arc swept at the largest captured offsets.
    largest_offsets = np.abs(captured[:, :3, 3] - center).max(axis=0)
    steps = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1)
    assert steps.max() <= 4 * np.pi / 40 * np.linalg.norm(largest_offsets)


def test_interpolated_path_passes_through_the_training_poses():
    # Seven positions on a circle, 45 degrees apart: the tour walks round them in order.
    angles = np.radians(np.arange(0, 315, 45))
    captured = np.stack([look_at(np.array([4 * np.cos(a), -1.0, 4 * np.sin(a)]), np.zeros(3),
                                 np.array([0.0, 1.0, 0.0])) for a in angles])
    assert not is_forward_facing(captured)
    path = interpolated_path(captured, frame_count=61)
    assert poses_are_rigid(path)
    np.testing.assert_allclose(path[0], captured[0], atol=1e-9)
    # Constant speed along the tour: every step covers the same distance.
    steps = np.linalg.norm(np.diff(path[:, :3, 3], axis=0), axis=1)
    np.testing.assert_allclose(steps, steps.mean(), rtol=1e-6)
    # Each training position is visited by some frame (61 frames = 10 steps per segment).
    for position in captured[:, :3, 3]:
        assert np.linalg.norm(path[:, :3, 3] - position, axis=1).min() < 1e-9
