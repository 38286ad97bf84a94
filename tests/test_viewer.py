import base64
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import imageio.v3 as iio
import msgspec
import numpy as np
import pytest
import torch
import viser
import zstandard
from websockets.sync.client import connect

import render
import train
from arguments import ModelParams, read_cfg_args
from gaussian_renderer import render as render_view
from scene.cameras import Camera
from tiny_scene import HEIGHT, WIDTH, make_tiny_scene, train_tiny_run
from utils.checkpoints import checkpoint_path, load_checkpoint
from utils.images import to_uint8
from viewer import Viewer, camera_from_viewer_pose, load_viewer_scene, viewer_pose_of
from viewer.frames import depth_to_uint8, moving_scale, pad_to_aspect
from viewer.server import MINIMUM_MOVING_SCALE, port_accepts_connections

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A canvas 2.5 times the tiny scene's 64x48 views, with the same aspect ratio.
CANVAS_WIDTH, CANVAS_HEIGHT = 160, 120
# Mean absolute difference (of 255) allowed between a rendered frame and the JPEG the browser receives (quality 90).
JPEG_TOLERANCE = 2.0


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory, "--checkpoint_iterations", "40")


@pytest.fixture(scope="module")
def blur_run(tmp_path_factory):
    scene_folder = tmp_path_factory.mktemp("tiny_blur_scene")
    make_tiny_scene(scene_folder)
    model_path = str(tmp_path_factory.mktemp("blur_run"))
    train.main(["-s", str(scene_folder), "-m", model_path, "--eval", "--hold", "4", "--device", "cpu",
                "--blur", "defocus", "--iterations", "10", "--save_iterations", "10", "--test_iterations", "10",
                "--checkpoint_iterations", "5"])
    return model_path


def open_scene(model_path, iteration=-1):
    dataset = ModelParams.extract(read_cfg_args(model_path))
    dataset.model_path, dataset.device = model_path, "cpu"
    return load_viewer_scene(dataset, "cpu", iteration)


def copy_run(model_path, destination, point_cloud_iterations=(), checkpoint_iterations=()):
    """A model folder with the run's cfg_args and only the chosen snapshots."""
    os.makedirs(destination, exist_ok=True)
    shutil.copy(os.path.join(model_path, "cfg_args"), destination)
    for iteration in point_cloud_iterations:
        add_point_cloud(model_path, destination, iteration)
    for iteration in checkpoint_iterations:
        shutil.copy(checkpoint_path(model_path, iteration), destination)
    return str(destination)


def add_point_cloud(model_path, destination, iteration):
    shutil.copytree(os.path.join(model_path, "point_cloud", f"iteration_{iteration}"),
                    os.path.join(destination, "point_cloud", f"iteration_{iteration}"))


def render_pixels(camera, scene):
    with torch.no_grad():
        return to_uint8(render_view(camera, scene.model.params, scene.background, "cpu").image)


def scaled_camera(camera, width, height):
    """camera with its intrinsics scaled to width x height (of the same aspect ratio)."""
    factor = width / camera.width
    return Camera(camera.world_to_camera.double().numpy(), camera.fx * factor, camera.fy * factor,
                  camera.cx * factor, camera.cy * factor, width, height, camera.near, camera.far, "cpu")


def mean_difference(first, second):
    return np.abs(first.astype(np.float64) - second.astype(np.float64)).mean()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ---- the browser's camera and our cameras ---------------------------------------------------------------------------


def test_viewer_pose_of_a_training_camera_reproduces_its_render(trained_run):
    scene = open_scene(trained_run)
    for camera in scene.train_cameras[:2] + scene.test_cameras[:1]:
        rebuilt = camera_from_viewer_pose(*viewer_pose_of(camera), camera.width, camera.height, "cpu")
        np.testing.assert_allclose(rebuilt.world_to_camera.numpy(), camera.world_to_camera.numpy(), atol=1e-6)
        assert (rebuilt.fx, rebuilt.fy, rebuilt.cx, rebuilt.cy) == pytest.approx(
            (camera.fx, camera.fy, camera.cx, camera.cy), rel=1e-9)
        # The same float32 camera up to rounding: the renders agree far below one 8-bit level.
        with torch.no_grad():
            original = render_view(camera, scene.model.params, scene.background, "cpu").image
            through_viewer = render_view(rebuilt, scene.model.params, scene.background, "cpu").image
        assert (original - through_viewer).abs().max().item() < 1e-3


def test_viewer_pose_follows_opencv_axes():
    # Identity rotation: the camera looks down world +z with image x along world +x and image y along world +y.
    position = np.array([1.0, -2.0, 0.5])
    camera = camera_from_viewer_pose([1.0, 0.0, 0.0, 0.0], position, np.radians(90.0), 200, 100, "cpu")
    world_to_camera = camera.world_to_camera.double().numpy()
    ahead_right_below = np.append(position + [0.5, 0.25, 2.0], 1.0)
    x, y, z = (world_to_camera @ ahead_right_below)[:3]
    assert z == pytest.approx(2.0)
    # A 90 degree vertical field of view over 100 pixels: focal length 50 pixels.
    assert (camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy) == pytest.approx((112.5, 56.25))


@pytest.mark.parametrize("bad", [
    dict(wxyz=[0.0, 0.0, 0.0, 0.0]),
    dict(wxyz=[np.nan, 0.0, 0.0, 1.0]),
    dict(vertical_fov=0.0),
    dict(vertical_fov=np.pi),
    dict(width=0),
])
def test_a_browser_camera_that_is_no_view_is_rejected(bad):
    arguments = dict(wxyz=[1.0, 0.0, 0.0, 0.0], position=[0.0, 0.0, 0.0], vertical_fov=1.0, width=4, height=3,
                     device="cpu")
    with pytest.raises(ValueError, match="browser camera"):
        camera_from_viewer_pose(**{**arguments, **bad})


# ---- frames ---------------------------------------------------------------------------------------------------------


def test_moving_scale_aims_at_the_frame_time():
    # A full frame would take 4 times the budget: half the resolution per side, a quarter of the pixels.
    assert moving_scale(4e-6, 100_000, 0.1, 0.1) == pytest.approx(0.5)
    assert moving_scale(1e-9, 100_000, 0.1, 0.1) == 1.0
    assert moving_scale(1.0, 100_000, 0.1, 0.1) == 0.1
    assert moving_scale(None, 100_000, 0.1, 0.1) == 0.1


def test_pad_to_aspect_letterboxes_without_resampling():
    image = np.full((10, 40, 3), 200, np.uint8)
    padded = pad_to_aspect(image, 2.0)
    assert padded.shape == (20, 40, 3)
    np.testing.assert_array_equal(padded[5:15], image)
    assert padded[:5].max() == 0 and padded[15:].max() == 0
    assert pad_to_aspect(image, 8.0).shape == (10, 80, 3)


def test_depth_frames_map_near_to_blue_far_to_red_and_empty_to_black():
    depth = np.tile(np.linspace(1.0, 5.0, 50, dtype=np.float32), (4, 1))
    alpha = np.ones_like(depth)
    alpha[:, 25] = 0.0
    pixels = depth_to_uint8(depth, alpha).astype(int)
    near, far = pixels[0, 0], pixels[0, -1]
    assert near[2] > near[0] and far[0] > far[2] + 50
    assert far[0] > near[0] + 50
    assert pixels[:, 25].max() == 0


# ---- the server, driven through viser's websocket protocol ----------------------------------------------------------


class BrowserStandIn:
    """Speaks viser's protocol as its web client does: msgpack messages up; windows of zstd-compressed msgpack
    followed by 8-byte-aligned binary buffers down."""

    def __init__(self, port):
        self.connection = connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"],
                                  max_size=None, open_timeout=10)
        self.decompressor = zstandard.ZstdDecompressor()
        self.received_types = []

    def send_camera(self, wxyz, position, vertical_fov, width=CANVAS_WIDTH, height=CANVAS_HEIGHT):
        forward = camera_from_viewer_pose(wxyz, position, vertical_fov, width, height, "cpu")
        camera_to_world = np.linalg.inv(forward.world_to_camera.double().numpy())
        self.connection.send(msgspec.msgpack.encode({
            "type": "ViewerCameraMessage",
            "wxyz": [float(value) for value in wxyz],
            "position": [float(value) for value in position],
            "fov": float(vertical_fov),
            "near": 0.01,
            "far": 1000.0,
            "image_height": height,
            "image_width": width,
            "look_at": (camera_to_world[:3, 3] + camera_to_world[:3, 2]).tolist(),
            "up_direction": (-camera_to_world[:3, 1]).tolist(),
        }))

    def messages(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                raw = self.connection.recv(timeout=remaining)
            except TimeoutError:
                return
            msgpack_size, compressed_size = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:16], "little")
            window = msgspec.msgpack.decode(
                self.decompressor.decompress(raw[16:16 + compressed_size], max_output_size=msgpack_size))
            buffers, offset = [], 16 + compressed_size
            for length in window["binaryBufferLengths"]:
                offset += -offset % 8
                buffers.append(raw[offset:offset + length])
                offset += length
            for message in window["messages"]:
                self.received_types.append(message["type"])
                yield message, buffers

    def next_frame(self, timeout=30.0, shape=None):
        """The next background image (of the given (H, W, 3) shape, when given), decoded."""
        for message, buffers in self.messages(timeout):
            # The server's replayed state starts with a cleared background (no data).
            if message["type"] == "BackgroundImageMessage" and message["rgb_data"] is not None:
                data = message["rgb_data"]
                if isinstance(data, dict):
                    data = buffers[data["__binary_index"]]
                frame = iio.imread(bytes(data), extension=".jpg")
                if shape is None or frame.shape == shape:
                    return frame
        raise AssertionError(f"no frame{'' if shape is None else f' of shape {shape}'} within {timeout} s")

    def close(self):
        self.connection.close()


@pytest.fixture
def serving(trained_run):
    """A viewer of the trained run on a free port, with a browser stand-in; both stopped afterwards."""
    scene = open_scene(trained_run)
    # A frame budget nothing can meet: moving frames always come at the smallest scale.
    viewer = Viewer(scene, port=0, moving_frame_seconds=1e-9)
    browser = BrowserStandIn(viewer.port)
    yield scene, viewer, browser
    browser.close()
    viewer.stop()


def only_view(viewer):
    wait_until(lambda: len(viewer.clients) == 1, 10, "the browser to register")
    return next(iter(viewer.clients.values()))


def test_page_is_served_and_frames_follow_the_browser_camera(serving):
    scene, viewer, browser = serving
    with urllib.request.urlopen(viewer.url, timeout=10) as response:
        assert response.status == 200
        assert "<title>Viser</title>" in response.read().decode()

    camera = scene.test_cameras[0]
    # While the camera moves, a frame at the smallest scale; once it is still, the full canvas. Which frame comes
    # must not depend on how soon the render thread runs: the camera counts as moving until the refine delay, an
    # hour at first, is lowered to nothing.
    viewer.refine_delay = 3600.0
    browser.send_camera(*viewer_pose_of(camera))
    small_width, small_height = round(CANVAS_WIDTH * MINIMUM_MOVING_SCALE), round(CANVAS_HEIGHT * MINIMUM_MOVING_SCALE)
    assert browser.next_frame().shape == (small_height, small_width, 3)
    view = only_view(viewer)
    viewer.refine_delay = 0.0
    view.request_frame()
    frame = browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3))
    expected = render_pixels(scaled_camera(camera, CANVAS_WIDTH, CANVAS_HEIGHT), scene)
    assert mean_difference(frame, expected) < JPEG_TOLERANCE
    assert (expected.max(axis=2) > 40).mean() > 0.2  # the view shows the scene, not an empty background

    wait_until(lambda: "FPS at 160×120" in view.stats.content, 10, "the page to show the frame rate")
    assert f"{scene.model.num_points:,} Gaussians" in view.stats.content
    assert "iteration 60 (point cloud)" in view.stats.content
    assert scene.model_path in view.stats.content

    view.mode_dropdown.value = "Alpha"
    alpha_frame = browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3)).astype(int)
    assert np.abs(alpha_frame[..., 0] - alpha_frame[..., 2]).mean() < JPEG_TOLERANCE  # grey
    assert mean_difference(alpha_frame, frame) > 10.0
    view.mode_dropdown.value = "Depth"
    depth_frame = browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3)).astype(int)
    assert np.abs(depth_frame[..., 0] - depth_frame[..., 2]).mean() > 10.0  # colour-mapped


def test_jumping_to_a_training_camera_moves_the_browser_camera_there(serving):
    scene, viewer, browser = serving
    browser.send_camera(*viewer_pose_of(scene.test_cameras[0]))
    browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3))
    view = only_view(viewer)

    target = scene.train_cameras[3]
    label = next(label for label, (camera, _) in viewer.views_by_label.items() if camera is target)
    view.view_dropdown.value = label
    frame = browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3))
    assert {"SetCameraPositionMessage", "SetCameraLookAtMessage", "SetCameraUpDirectionMessage",
            "SetCameraFovMessage"} <= set(browser.received_types)
    state = view.client.camera
    landed = camera_from_viewer_pose(state.wxyz, state.position, state.fov, WIDTH, HEIGHT, "cpu")
    np.testing.assert_allclose(landed.world_to_camera.numpy(), target.world_to_camera.numpy(), atol=1e-5)
    assert landed.fy == pytest.approx(target.fy, rel=1e-6)
    expected = render_pixels(scaled_camera(target, CANVAS_WIDTH, CANVAS_HEIGHT), scene)
    assert mean_difference(frame, expected) < JPEG_TOLERANCE


def test_the_server_stops_cleanly(trained_run):
    viewer = Viewer(open_scene(trained_run), port=0)
    port = viewer.port
    browser = BrowserStandIn(port)
    browser.send_camera(*viewer_pose_of(viewer.scene.train_cameras[0]))
    browser.next_frame()
    threads = [view.thread for view in viewer.clients.values()]
    assert threads and port_accepts_connections(port)
    viewer.stop()
    assert not port_accepts_connections(port)
    assert not any(thread.is_alive() for thread in threads)
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("viewer-")]
    browser.close()


def test_the_blur_toggle_shows_the_blurred_training_render_beside_the_sharp_one(blur_run):
    scene = open_scene(blur_run)
    blur_model = scene.model.blur_model
    assert blur_model.mode == "defocus"
    # A short run's MLP leaves the Gaussians as they are (its factors start clamped at 1), and the default model's
    # lens blurs them only a little: push every scale factor to the top of its range, so that the blurred half can be
    # told from the sharp one.
    with torch.no_grad():
        blur_model.scale_head.bias.fill_(100.0)
    viewer = Viewer(scene, port=0)
    browser = BrowserStandIn(viewer.port)
    try:
        browser.send_camera(*viewer_pose_of(scene.train_cameras[0]))
        browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3))
        view = only_view(viewer)
        assert view.blur_checkbox.visible

        camera = scene.train_cameras[2]
        view.view_dropdown.value = next(label for label, (view_camera, _) in viewer.views_by_label.items()
                                        if view_camera is camera)
        view.blur_checkbox.value = True
        # Sharp and blurred side by side (128x48), letterboxed to the canvas's 4:3.
        frame = browser.next_frame(shape=(2 * WIDTH * 3 // 4, 2 * WIDTH, 3))
        top = (frame.shape[0] - HEIGHT) // 2
        sharp_half, blurred_half = frame[top:top + HEIGHT, :WIDTH], frame[top:top + HEIGHT, WIDTH:]
        sharp = render_pixels(camera, scene)
        with torch.no_grad():
            blurred = to_uint8(blur_model.blurred_render(camera, scene.model.params, scene.background, "cpu"))
        assert mean_difference(sharp_half, sharp) < JPEG_TOLERANCE
        assert mean_difference(blurred_half, blurred) < JPEG_TOLERANCE
        assert mean_difference(blurred_half, sharp) > mean_difference(blurred_half, blurred) + 1.0
        assert frame[:top].mean() < JPEG_TOLERANCE and frame[top + HEIGHT:].mean() < JPEG_TOLERANCE

        # Test cameras have no blurred photo to explain: the toggle is off there.
        view.view_dropdown.value = next(label for label in viewer.views_by_label if label.startswith("test"))
        assert view.blur_checkbox.disabled and not view.blur_checkbox.value
        browser.next_frame(shape=(CANVAS_HEIGHT, CANVAS_WIDTH, 3))
    finally:
        browser.close()
        viewer.stop()
    # A checkpoint of a blur run carries its blur model.
    assert open_scene(blur_run, iteration=5).model.blur_model.mode == "defocus"


# ---- snapshots: finished runs, checkpoints, watching ----------------------------------------------------------------


def test_a_checkpoint_mid_training_is_viewable(trained_run, tmp_path):
    model_path = copy_run(trained_run, tmp_path / "mid_training", checkpoint_iterations=[40])
    scene = open_scene(model_path)
    assert scene.model.snapshot.is_checkpoint and scene.model.snapshot.iteration == 40
    saved = load_checkpoint(checkpoint_path(trained_run, 40))["gaussians"]["params"]
    assert scene.model.num_points == len(saved["xyz"])
    torch.testing.assert_close(scene.model.params.means, saved["xyz"])
    torch.testing.assert_close(scene.model.params.opacities, torch.sigmoid(saved["opacity"]))
    # The finished run's newest snapshot is its last point cloud; an older one can be asked for.
    assert open_scene(trained_run).model.snapshot.describe() == "iteration 60 (point cloud)"
    assert open_scene(trained_run, iteration=40).model.snapshot.is_checkpoint


def test_watch_reloads_each_newer_snapshot(trained_run, tmp_path, caplog):
    model_path = copy_run(trained_run, tmp_path / "training", point_cloud_iterations=[30])
    viewer = Viewer(open_scene(model_path), port=0, watch=True, watch_interval=0.1)
    browser = BrowserStandIn(viewer.port)
    try:
        browser.send_camera(*viewer_pose_of(viewer.scene.train_cameras[0]))
        browser.next_frame()
        view = only_view(viewer)

        shutil.copy(checkpoint_path(trained_run, 40), model_path)
        wait_until(lambda: viewer.model.snapshot.iteration == 40, 20, "the checkpoint at iteration 40")
        wait_until(lambda: "iteration 40 (checkpoint)" in view.stats.content, 20, "the page to show iteration 40")

        # A point cloud still being written is retried, not fatal.
        broken = os.path.join(model_path, "point_cloud", "iteration_50", "point_cloud.ply")
        os.makedirs(os.path.dirname(broken))
        with open(broken, "wb") as file:
            file.write(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\n")
        wait_until(lambda: "iteration 50" in caplog.text, 20, "the unreadable point cloud to be reported")
        assert viewer.model.snapshot.iteration == 40

        add_point_cloud(trained_run, model_path, 60)
        wait_until(lambda: viewer.model.snapshot.iteration == 60, 20, "the point cloud at iteration 60")
        assert viewer.model.num_points == open_scene(trained_run).model.num_points
    finally:
        browser.close()
        viewer.stop()


# ---- the command line -----------------------------------------------------------------------------------------------


def expect_view_error(refusal, argv, monkeypatch, *fragments):
    def refuse_to_serve(*args, **kwargs):
        raise AssertionError("the server was started despite the bad model")

    monkeypatch.setattr(viser, "ViserServer", refuse_to_serve)
    message = refusal(render.main, argv + ["--view", "--port", "0", "--device", "cpu"])
    assert message.startswith("render.py: error:")
    for fragment in fragments:
        assert fragment in message


def test_a_missing_or_corrupt_model_is_reported_before_serving(trained_run, tmp_path, monkeypatch, refusal):
    expect_view_error(refusal, ["-m", str(tmp_path / "nowhere")], monkeypatch, "cfg_args")

    empty = copy_run(trained_run, tmp_path / "empty")
    expect_view_error(refusal, ["-m", empty], monkeypatch, "nothing to view")

    corrupt_cloud = copy_run(trained_run, tmp_path / "corrupt_cloud", point_cloud_iterations=[60])
    ply = os.path.join(corrupt_cloud, "point_cloud", "iteration_60", "point_cloud.ply")
    with open(ply, "wb") as file:
        file.write(b"not a point cloud")
    expect_view_error(refusal, ["-m", corrupt_cloud], monkeypatch, ply)

    corrupt_checkpoint = copy_run(trained_run, tmp_path / "corrupt_checkpoint")
    with open(checkpoint_path(corrupt_checkpoint, 40), "wb") as file:
        file.write(b"\x00" * 64)
    expect_view_error(refusal, ["-m", corrupt_checkpoint], monkeypatch, "chkpnt40.pth")

    expect_view_error(refusal, ["-m", trained_run, "--iteration", "45"], monkeypatch, "iteration 45",
                      "saved: 30, 40, 60")

    moved_scene = copy_run(trained_run, tmp_path / "moved_scene", point_cloud_iterations=[60])
    with open(os.path.join(moved_scene, "cfg_args"), "w") as file:
        file.write(str(read_cfg_args(trained_run)).replace(read_cfg_args(trained_run).source_path,
                                                            str(tmp_path / "gone")))
    expect_view_error(refusal, ["-m", moved_scene], monkeypatch, str(tmp_path / "gone"))


def test_watch_needs_the_viewer(trained_run):
    with pytest.raises(SystemExit) as exit_info:
        render.parse_args(["-m", trained_run, "--watch"])
    assert exit_info.value.code == 2


def run_render_cli(*arguments, **options):
    return subprocess.Popen([sys.executable, "render.py", *arguments], cwd=REPOSITORY, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stdout_lines(process):
    """A queue receiving the process's output lines as they come, then None at the end."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_render_py_view_serves_until_interrupted(trained_run):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A child inherits an ignored SIGINT (as in a shell's background job) but never a handler: give it a handler
    # while starting it, so that it gets Ctrl+C however this suite was launched.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = run_render_cli("-m", trained_run, "--view", "--port", str(port), "--device", "cpu")
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        lines = stdout_lines(process)
        line = ""
        # viser prints the address in its own banner while the server is still being built: wait for render.py's.
        while not line.startswith(f"Open {url}"):
            line = lines.get(timeout=120)
            assert line is not None, f"render.py --view ended without serving {url}: {process.stderr.read()}"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        errors = process.stderr.read()
    finally:
        process.kill()
    assert process.returncode == 0, errors
    assert "Traceback" not in errors
    assert not port_accepts_connections(port)


def test_render_py_view_of_a_missing_model_fails_without_a_traceback(tmp_path):
    process = run_render_cli("-m", str(tmp_path / "nowhere"), "--view")
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 2
    assert errors.startswith("render.py: error:") and "cfg_args" in errors and "Traceback" not in errors


# ---- a real browser -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium, installed when missing (the project's machines run as root with apt)."""
    path = shutil.which("chromium")
    if path is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("Chromium is missing and cannot be installed here: apt-get install chromium")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=environment, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=environment, capture_output=True)
        path = shutil.which("chromium")
    return path


class DevTools:
    """A headless Chromium page driven through the DevTools protocol."""

    def __init__(self, chromium, width, height):
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        # Without the background-networking flags Chromium's own connections fail slowly on a closed network.
        # viser's page needs WebGL: without a GPU that is SwiftShader, which Chromium wants explicitly allowed.
        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={width},{height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = os.path.join(self.profile, "DevToolsActivePort")

        def port_and_path():
            if not os.path.exists(port_file):
                return []
            with open(port_file) as file:
                return file.read().split()

        # Chromium writes the file (port, then browser target path) once DevTools listens.
        wait_until(lambda: len(port_and_path()) == 2, 60, "Chromium's DevTools port")
        port = port_and_path()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            page = next(target for target in json.load(response) if target["type"] == "page")
        self.connection = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.connection.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.connection.recv(timeout=60))
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]

    def screenshot(self):
        return iio.imread(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))[..., :3]

    def close(self):
        self.connection.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.mark.browser
def test_headless_chromium_shows_the_render(trained_run, chromium, tmp_path):
    scene = open_scene(trained_run)
    viewer = Viewer(scene, port=0)
    browser = DevTools(chromium, 900, 600)
    try:
        browser.call("Page.navigate", url=viewer.url)
        view = only_view(viewer)
        camera = view.client.camera

        def full_frame_shown():
            return view.last_frame_shape == (camera.image_height, camera.image_width, 3)

        wait_until(full_frame_shown, 60, "a full-resolution frame")
        # Compare where no control overlaps the canvas: below the notice at the top left, left of the panel.
        region = (slice(160, camera.image_height - 10), slice(60, camera.image_width - 360))
        screenshot = expected = None

        def render_drawn():
            # Rendered again at each look: the browser may still report a new camera after the first frame.
            nonlocal screenshot, expected
            expected = render_pixels(camera_from_viewer_pose(camera.wxyz, camera.position, camera.fov,
                                                             camera.image_width, camera.image_height, "cpu"), scene)
            screenshot = browser.screenshot()
            iio.imwrite(tmp_path / "viewer.png", screenshot)
            return screenshot.shape[:2] == expected.shape[:2] and \
                mean_difference(screenshot[region], expected[region]) < JPEG_TOLERANCE

        # The page draws a frame some time after it arrives, later on a loaded machine.
        wait_until(render_drawn, 30, f"the page to draw the frame (last screenshot: {tmp_path / 'viewer.png'})")
    finally:
        browser.close()
        viewer.stop()

    # The page opens at the first training camera: the pose the browser reports is that camera's.
    first = scene.train_cameras[0]
    landed = camera_from_viewer_pose(camera.wxyz, camera.position, camera.fov, first.width, first.height, "cpu")
    np.testing.assert_allclose(landed.world_to_camera.numpy(), first.world_to_camera.numpy(), atol=1e-5)
    assert landed.fy == pytest.approx(first.fy, rel=1e-5)

    assert screenshot.shape[:2] == (camera.image_height, camera.image_width)
    shown = screenshot[region]
    assert (shown.max(axis=2) > 40).mean() > 0.2, f"the page shows no render (see {tmp_path / 'viewer.png'})"
    assert mean_difference(shown, expected[region]) < JPEG_TOLERANCE
