"""The interactive viewer: a viser web page showing frames that our rasterizer renders from the browser's camera.

Each connected browser gets its own controls and its own render thread. The thread renders whenever the camera,
the controls or the model change; on the CPU it renders small while the camera moves and refines to the canvas's
full resolution once the camera has been still for a moment.
"""

import logging
import math
import socket
import threading
import time

import numpy as np
import torch
import viser

from blur import BlurModelError
from gaussian_renderer import render
from scene.gaussian_model import PlyFormatError
from utils.geometry import quaternion_to_rotation_matrix
from utils.images import to_uint8
from viewer.frames import RENDER_MODES, frame_pixels, moving_scale, pad_to_aspect
from viewer.poses import ViewerPoseError, camera_from_viewer_pose, mean_up_direction, scaled_size, viewer_pose_of
from viewer.snapshots import ViewerError, find_snapshot, load_model

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
# While the camera moves on the CPU, frames are shrunk to render in about this long, but not below this scale ...
MOVING_FRAME_SECONDS = 1.0 / 15.0
MINIMUM_MOVING_SCALE = 0.1
# ... and the full-resolution frame follows once the camera has been still this long.
REFINE_DELAY_SECONDS = 0.3
WATCH_INTERVAL_SECONDS = 2.0
JPEG_QUALITY = 90
# Weight of the newest frame in the smoothed cost per pixel.
SMOOTHING = 0.3
# A render thread that does not finish its frame within this long when stopping is left to end on its own; the
# server's socket gets as long to close.
STOP_TIMEOUT_SECONDS = 30.0


def smoothed(previous, value):
    return value if previous is None else SMOOTHING * value + (1.0 - SMOOTHING) * previous


class Viewer:
    """Serves a ViewerScene on HOST:port until stop(); with watch, reloads when training saves a newer snapshot.

    adaptive_resolution (default: on unless rendering on a GPU) shrinks frames while the camera moves; the
    full-resolution frame follows once the camera has been still for refine_delay seconds, which the render
    threads read anew at each frame.
    """

    def __init__(self, scene, port=8080, watch=False, adaptive_resolution=None,
                 moving_frame_seconds=MOVING_FRAME_SECONDS, refine_delay=REFINE_DELAY_SECONDS,
                 watch_interval=WATCH_INTERVAL_SECONDS):
        self.scene = scene
        self.model = scene.model
        self.adaptive_resolution = scene.device.type != "cuda" if adaptive_resolution is None else adaptive_resolution
        self.moving_frame_seconds = moving_frame_seconds
        self.refine_delay = refine_delay
        self.watch_interval = watch_interval
        self.views_by_label = {
            f"{split} {index}: {camera.image_name}": (camera, split == "train")
            for split, cameras in (("train", scene.train_cameras), ("test", scene.test_cameras))
            for index, camera in enumerate(cameras)
        }
        # Renders share the machine's cores (or the GPU): one at a time, whichever browser asks.
        self.render_lock = threading.Lock()
        self.clients_lock = threading.Lock()
        self.clients = {}
        self.stopping = threading.Event()

        self.server = viser.ViserServer(host=HOST, port=port, label="Gaussian splatting viewer", verbose=False)
        self.server.scene.set_up_direction(mean_up_direction(scene.train_cameras))
        position, look_at, up, fov = self.orbit_pose(scene.train_cameras[0])
        self.server.initial_camera.position = position
        self.server.initial_camera.look_at = look_at
        self.server.initial_camera.up = up
        self.server.initial_camera.fov = fov
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.watcher = None
        if watch:
            self.watcher = threading.Thread(target=self._watch, name="viewer-watch", daemon=True)
            self.watcher.start()

    @property
    def port(self):
        return self.server.get_port()

    @property
    def url(self):
        return f"http://{HOST}:{self.port}"

    def orbit_pose(self, camera):
        """(position, look_at, up, vertical_fov) that put the browser camera at camera: viser derives the
        orientation from the look-at point and the up direction, and the camera's own up keeps its roll. The
        look-at point is in front of the camera level with the scene's centre, so that orbiting turns around
        the scene rather than around the camera."""
        wxyz, position, fov = viewer_pose_of(camera)
        rotation = quaternion_to_rotation_matrix(wxyz)
        forward, up = rotation[:, 2], -rotation[:, 1]
        distance = float(np.dot(self.model.center - position, forward))
        return position, position + max(distance, 1e-3) * forward, up, fov

    def _connect(self, client):
        with self.clients_lock:
            if not self.stopping.is_set():
                self.clients[client.client_id] = ClientView(self, client)

    def _disconnect(self, client):
        with self.clients_lock:
            view = self.clients.pop(client.client_id, None)
        if view is not None:
            view.stop()

    def _watch(self):
        failed = None
        while not self.stopping.wait(self.watch_interval):
            try:
                newest = find_snapshot(self.scene.model_path)
            except ViewerError:
                continue
            if newest.iteration <= self.model.snapshot.iteration:
                continue
            try:
                model = load_model(self.scene.model_path, newest, self.scene.device)
            except (PlyFormatError, ViewerError, BlurModelError) as error:
                # Training may still be writing the file: try again at the next poll, reporting the problem once.
                if failed != newest:
                    logger.warning(f"Viewer: cannot load {newest.describe()} yet: {error}")
                    failed = newest
                continue
            self.model = model
            logger.info(f"Viewer: showing {model.snapshot.describe()}, {model.num_points} Gaussians")
            with self.clients_lock:
                views = list(self.clients.values())
            for view in views:
                view.model_changed()

    def wait_until_stopped(self):
        # Waiting in short steps keeps the main thread responsive to Ctrl+C.
        while not self.stopping.wait(1.0):
            pass

    def stop(self):
        """Stop every render thread, the watcher and the server; the port is closed when this returns."""
        self.stopping.set()
        with self.clients_lock:
            views = list(self.clients.values())
            self.clients.clear()
        for view in views:
            view.stop()
        if self.watcher is not None:
            self.watcher.join()
        port = self.port
        self.server.stop()
        # viser's stop() waits for its server thread only a second, which a busy machine can outlast.
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while port_accepts_connections(port) and time.monotonic() < deadline:
            time.sleep(0.05)


def port_accepts_connections(port):
    try:
        socket.create_connection((HOST, port), timeout=1.0).close()
        return True
    except OSError:
        return False


class ClientView:
    """One browser's controls, camera and render thread."""

    def __init__(self, viewer, client):
        self.viewer = viewer
        self.client = client
        self.condition = threading.Condition()
        self.stopped = False
        self.needs_frame = True
        self.frame_is_full = False
        self.camera_changed_at = time.monotonic()
        self.seconds_per_pixel = None
        self.headline = "Waiting for the first frame"
        self.frames_sent = 0
        self.last_frame_shape = None
        self.blur_pair = None  # (model, label, pixels) of the last blurred-beside-sharp frame
        self._add_controls()
        client.camera.on_update(lambda _: self.request_frame(camera_moved=True))
        self.thread = threading.Thread(target=self._render_loop, name=f"viewer-client-{client.client_id}",
                                       daemon=True)
        self.thread.start()

    def _add_controls(self):
        gui = self.client.gui
        labels = list(self.viewer.views_by_label)
        with gui.add_folder("Camera"):
            self.view_dropdown = gui.add_dropdown("View", labels, initial_value=labels[0],
                                                  hint="Jump to a training or test camera")
            self.back_button = gui.add_button("Back to this view")
            self.fov_slider = gui.add_slider("Field of view", min=10.0, max=150.0, step=1.0,
                                             initial_value=float(round(math.degrees(self.client.camera.fov))),
                                             hint="Vertical field of view in degrees")
        with gui.add_folder("Display"):
            self.mode_dropdown = gui.add_dropdown("Render mode", RENDER_MODES, initial_value=RENDER_MODES[0])
            self.blur_checkbox = gui.add_checkbox(
                "Sharp | blurred", False, visible=self.viewer.model.blur_model is not None,
                hint="Show the selected training camera sharp (left) beside the blurred render the blur model "
                     "learned to match its photo (right)",
            )
        self.stats = gui.add_markdown("")
        self._update_stats()

        self.view_dropdown.on_update(lambda _: self.go_to_view())
        self.back_button.on_click(lambda _: self.go_to_view())
        self.fov_slider.on_update(lambda _: self._set_fov())
        self.mode_dropdown.on_update(lambda _: self.request_frame())
        self.blur_checkbox.on_update(lambda _: self.request_frame())

    def selected_view(self):
        """(camera, is_training_camera) chosen in the View dropdown."""
        return self.viewer.views_by_label[self.view_dropdown.value]

    def go_to_view(self):
        camera, is_training = self.selected_view()
        position, look_at, up, fov = self.viewer.orbit_pose(camera)
        with self.client.atomic():
            self.client.camera.position = position
            self.client.camera.look_at = look_at
            self.client.camera.up_direction = up
            self.fov_slider.value = float(round(math.degrees(fov)))
            self.client.camera.fov = fov
        self.blur_checkbox.disabled = not is_training
        if not is_training:
            self.blur_checkbox.value = False
        self.request_frame(camera_moved=True)

    def _set_fov(self):
        self.client.camera.fov = math.radians(self.fov_slider.value)
        self.request_frame(camera_moved=True)

    def model_changed(self):
        self.blur_checkbox.visible = self.viewer.model.blur_model is not None
        self.request_frame()

    def request_frame(self, camera_moved=False):
        with self.condition:
            if camera_moved:
                self.camera_changed_at = time.monotonic()
            self.needs_frame = True
            self.condition.notify()

    def stop(self):
        with self.condition:
            self.stopped = True
            self.condition.notify()
        self.thread.join(STOP_TIMEOUT_SECONDS)

    def _next_frame_is_full(self):
        """Wait until a frame is due; True for a full-resolution one, False for a moving-camera one, None to stop."""
        with self.condition:
            while not self.stopped:
                refine_delay = self.viewer.refine_delay
                still_for = time.monotonic() - self.camera_changed_at
                if self.needs_frame or (not self.frame_is_full and still_for >= refine_delay):
                    self.needs_frame = False
                    self.frame_is_full = not self.viewer.adaptive_resolution or still_for >= refine_delay
                    return self.frame_is_full
                self.condition.wait(None if self.frame_is_full else refine_delay - still_for)
            return None

    def _render_loop(self):
        while True:
            full = self._next_frame_is_full()
            if full is None:
                return
            try:
                self._send_frame(full)
            except (ViewerPoseError, MemoryError, RuntimeError) as error:
                self.stats.content = f"**Cannot render this view:** {error}"
                logger.warning(f"Viewer: cannot render for browser {self.client.client_id}: {error}")

    def _send_frame(self, full):
        model = self.viewer.model
        camera = self.client.camera
        width, height = camera.image_width, camera.image_height
        if width < 1 or height < 1:
            return  # a hidden or collapsed canvas
        camera_for_blur, is_training = self.selected_view()
        if self.blur_checkbox.value and is_training and model.blur_model is not None:
            pixels = pad_to_aspect(self._blur_pair_pixels(model, camera_for_blur), width / height)
            self.headline = f"Left: sharp; right: as the {model.blur_model.mode} blur model renders it for training"
        else:
            if not full:
                scale = moving_scale(self.seconds_per_pixel, width * height, self.viewer.moving_frame_seconds,
                                     MINIMUM_MOVING_SCALE)
                width, height = scaled_size(width, height, scale)
            view = camera_from_viewer_pose(camera.wxyz, camera.position, camera.fov, width, height,
                                           self.viewer.scene.device, camera.near, camera.far)
            with self.viewer.render_lock, torch.no_grad():
                started = time.perf_counter()
                output = render(view, model.params, self.viewer.scene.background, self.viewer.scene.backend)
                pixels = frame_pixels(output, self.mode_dropdown.value)
                seconds = time.perf_counter() - started
            self.seconds_per_pixel = smoothed(self.seconds_per_pixel, seconds / (width * height))
            self.headline = f"{1.0 / max(seconds, 1e-6):.1f} FPS at {width}×{height}"
        self.client.scene.set_background_image(pixels, format="jpeg", jpeg_quality=JPEG_QUALITY)
        self.client.flush()
        self.frames_sent += 1
        self.last_frame_shape = pixels.shape
        self._update_stats()

    def _blur_pair_pixels(self, model, camera):
        """The training camera rendered sharp beside the blur model's render of it, kept until either changes."""
        label = self.view_dropdown.value
        if self.blur_pair is None or self.blur_pair[0] is not model or self.blur_pair[1] != label:
            scene = self.viewer.scene
            with self.viewer.render_lock, torch.no_grad():
                sharp = render(camera, model.params, scene.background, scene.backend).image
                blurred = model.blur_model.blurred_render(camera, model.params, scene.background, backend=scene.backend)
            self.blur_pair = (model, label, np.concatenate([to_uint8(sharp), to_uint8(blurred)], axis=1))
        return self.blur_pair[2]

    def _update_stats(self):
        model = self.viewer.model
        self.stats.content = (
            f"**{self.headline}**  \n"
            f"{model.num_points:,} Gaussians, {model.snapshot.describe()}  \n"
            f"Model: `{self.viewer.scene.model_path}`"
        )
