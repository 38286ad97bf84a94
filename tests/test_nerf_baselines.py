"""The NeRF baselines: ray geometry, the blur kernels, training, resuming, the benchmark rows and bad inputs."""

import json
import os
from types import SimpleNamespace

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from torch import nn

from baselines.nerf import benchmark
from baselines.nerf import train as nerf_train
from baselines.nerf.kernels import deformed_rays, se3_exp
from baselines.nerf.rays import RaySpace, RaySpaceError, ViewCameras
from baselines.nerf.volume_rendering import composite, sample_pdf
from scene.readers.views import CameraInfo
from utils.images import linear_to_srgb

WIDTH, HEIGHT, FOCAL = 16, 12, 20.0
# Small enough for a few seconds per run on two cores; the tiny scene is read at a quarter of its 160x120. So small
# a network learns fast at a high learning rate.
TINY_SETTINGS = dict(batch_rays=128, coarse_samples=16, fine_samples=16, net_depth=2, net_width=32, kernel_points=3,
                     learning_rate=5e-3, chunk=2048)
TINY_RUN = dict(resolution=4, progress=False, **TINY_SETTINGS)


def forward_facing_cameras(count=3, seed=0):
    """Cameras a little apart, turned a little, all looking roughly along +z, with random images."""
    rng = np.random.default_rng(seed)
    cameras = []
    for index in range(count):
        rotation, _ = cv2.Rodrigues(np.array([0.05 * index, -0.04 * index, 0.03]))
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = rotation
        world_to_camera[:3, 3] = [0.2 * index, -0.1 * index, 0.05 * index]
        image = rng.uniform(size=(HEIGHT, WIDTH, 3)).astype(np.float32)
        cameras.append(CameraInfo(index, f"{index:03d}.png", image, world_to_camera, FOCAL, FOCAL, WIDTH / 2,
                                  HEIGHT / 2, WIDTH, HEIGHT, 2.0, 10.0, ""))
    return cameras


def tiny_model(method, cameras=None, density_noise=0.0):
    settings = nerf_train.default_settings("cpu", density_noise=density_noise, **TINY_SETTINGS)
    scene_info = SimpleNamespace(train_cameras=cameras or forward_facing_cameras())
    model, _ = nerf_train.build_model(scene_info, method, settings, torch.device("cpu"), True, False, seed=0)
    return model


# Pixels of views 0..2 of forward_facing_cameras, corners and sub-pixel positions included.
VIEWS = torch.tensor([0, 1, 2, 1, 0])
PIXELS = torch.tensor([[0.5, 0.5], [8.0, 6.0], [15.5, 11.5], [3.25, 7.75], [12.0, 2.5]])


def pose_spread(poses):
    """Per pixel, the summed distance of the kernel poses (N, K, 3, 4) from pose 0, the camera's."""
    return (poses[:, 1:] - poses[:, :1]).flatten(2).norm(dim=-1).sum(dim=-1)


def ray_spread(kernel_rays):
    """Per pixel, the summed distance of the kernel rays' origins and unit directions from ray 0's."""
    directions = kernel_rays.directions / kernel_rays.directions.norm(dim=-1, keepdim=True)
    return ((kernel_rays.origins[:, 1:] - kernel_rays.origins[:, :1]).norm(dim=-1)
            + (directions[:, 1:] - directions[:, :1]).norm(dim=-1)).sum(dim=-1)


# ---- geometry and rendering ----

def test_ndc_rays_pass_through_the_ndc_projection_of_their_world_points():
    cameras = forward_facing_cameras()
    space = RaySpace(cameras, ndc=True, device="cpu")
    view_cameras = ViewCameras(cameras, "cpu")
    origins, directions = view_cameras.rays(VIEWS, PIXELS)
    ndc_origins, ndc_directions, _ = space(origins, directions)
    for depth in (3.0, 7.0, 40.0):
        points = origins + depth * directions
        local = (points - space.centre) @ space.rotation
        z = local[:, 2:]
        projected = torch.cat([space.focal_scale * local[:, :2] / z, 1.0 - 2.0 * space.near_plane / z], dim=-1)
        t = 1.0 - space.near_plane / z
        assert torch.allclose(ndc_origins + t * ndc_directions, projected, atol=1e-5)
    assert torch.allclose(ndc_origins[:, 2], torch.tensor(-1.0))


def test_ndc_refuses_cameras_that_do_not_face_forward():
    cameras = forward_facing_cameras()
    turned = np.eye(4)
    turned[:3, :3], _ = cv2.Rodrigues(np.array([0.0, np.pi / 2, 0.0]))
    cameras[1].world_to_camera = turned
    with pytest.raises(RaySpaceError, match="'001.png'.*--no_ndc"):
        RaySpace(cameras, ndc=True, device="cpu")


def test_se3_exp_matches_the_matrix_exponential():
    twists = torch.tensor([[0.0, 0.0, 0.0, 0.1, -0.2, 0.3], [1e-4, -2e-4, 3e-4, 0.5, 0.1, 0.0],
                           [0.05, 0.02, -0.07, 0.0, 1.0, 0.0], [0.8, -1.1, 0.4, 0.3, 0.2, -0.6]], dtype=torch.float64)
    generators = torch.zeros(len(twists), 4, 4, dtype=torch.float64)
    x, y, z = twists[:, :3].unbind(-1)
    generators[:, 0, 1], generators[:, 0, 2], generators[:, 1, 2] = -z, y, -x
    generators[:, 1, 0], generators[:, 2, 0], generators[:, 2, 1] = z, -y, x
    generators[:, :3, 3] = twists[:, 3:]
    assert torch.allclose(se3_exp(twists), torch.linalg.matrix_exp(generators)[:, :3], atol=1e-12)


def test_fine_samples_fall_where_the_coarse_weights_are():
    edges = torch.linspace(0.0, 1.0, 11).expand(2, 11).contiguous()
    weights = torch.zeros(2, 10)
    weights[0, 3] = 1.0
    weights[1, 7] = weights[1, 8] = 0.5
    for generator in (None, torch.Generator().manual_seed(0)):
        samples = sample_pdf(edges, weights, 64, generator)
        # The floor that keeps empty rays defined gives the empty bins 1e-5 of the mass each.
        assert ((samples[0] >= 0.3) & (samples[0] <= 0.4)).float().mean() >= 63 / 64
        assert ((samples[1] >= 0.7) & (samples[1] <= 0.9)).float().mean() >= 63 / 64


def test_compositing_stops_at_an_opaque_sample_and_shows_the_background_through_empty_space():
    colours = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]).expand(2, 2, 3)
    densities = torch.tensor([[1e4, 0.0], [0.0, 0.0]])
    depths = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    colour, weights = composite(colours, densities, depths, torch.ones(2, 3), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(colour, torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.tensor([1.0, 0.0]), atol=1e-5)


# ---- blur kernels ----

def test_deformable_kernel_with_zero_offsets_casts_the_pixel_ray():
    model = tiny_model("deblurnerf")
    kernel, cameras = model.kernel, model.train_cameras
    with torch.no_grad():
        kernel.initial_offsets.zero_()
        kernel.mlp.output.weight.zero_()
        # Zero offsets but unequal weights: the blurred colour must still be the pixel's own.
        bias = kernel.mlp.output.bias.view(-1, 6)
        bias.zero_()
        bias[:, 5] = torch.tensor([0.5, -1.0, 2.0])
    rays = kernel(VIEWS, PIXELS, cameras)
    origins, directions = cameras.rays(VIEWS, PIXELS)
    assert torch.allclose(rays.origins, origins[:, None].expand_as(rays.origins), atol=1e-6)
    assert torch.allclose(rays.directions, directions[:, None].expand_as(rays.directions), atol=1e-6)
    assert rays.alignment_loss.item() == 0.0
    assert rays.weights[0].max() > 0.7
    _, blurred, _ = model.training_colours(VIEWS, PIXELS, generator=None)
    _, sharp = model.renderer(origins, directions)
    assert torch.allclose(blurred, linear_to_srgb(sharp), atol=1e-5)


def test_deformable_kernel_offsets_move_pixels_and_camera_centres():
    cameras = ViewCameras(forward_facing_cameras(), "cpu")
    pixel_offsets = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-2.0, 0.5]]).expand(len(VIEWS), 3, 2)
    origin_offsets = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.01, -0.02, 0.03]]).expand(len(VIEWS), 3, 3)
    origins, directions = deformed_rays(cameras, VIEWS, PIXELS, pixel_offsets, origin_offsets)
    for point in range(3):
        expected_origins, expected_directions = cameras.rays(VIEWS, PIXELS + pixel_offsets[:, point])
        shift = (cameras.camera_to_world[VIEWS, :, :3] @ origin_offsets[:, point, :, None]).squeeze(-1)
        assert torch.allclose(directions[:, point], expected_directions, atol=1e-6)
        assert torch.allclose(origins[:, point], expected_origins + shift, atol=1e-6)


def test_rigid_kernel_spread_grows_with_the_extent_and_vanishes_at_zero():
    model = tiny_model("dpnerf")
    kernel, cameras = model.kernel, model.train_cameras
    camera_poses = cameras.camera_to_world[VIEWS][:, None]
    poses = kernel.poses(VIEWS, cameras, torch.zeros(len(VIEWS)))
    assert torch.allclose(poses, camera_poses.expand_as(poses), atol=1e-6)
    spreads = [pose_spread(kernel.poses(VIEWS, cameras, torch.full((len(VIEWS),), extent)))
               for extent in (0.25, 0.5, 1.0)]
    assert (spreads[0] > 0).all() and (spreads[1] > spreads[0]).all() and (spreads[2] > spreads[1]).all()
    # The initial motions are small, where the exponential map is nearly linear: spread doubles with the extent.
    assert torch.allclose(spreads[1] / spreads[0], torch.tensor(2.0), rtol=0.02)
    assert torch.allclose(pose_spread(kernel.poses(VIEWS, cameras)), spreads[2], rtol=1e-6)


class ConstantLogits(nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, images):
        return torch.full_like(images[:, :1], self.value)


class RampLogits(nn.Module):
    """Blur extent growing from left (sharp) to right (blurred) across the image."""

    def forward(self, images):
        return torch.linspace(-6.0, 6.0, images.shape[-1]).expand_as(images[:, :1])


def test_dynamic_kernel_size_follows_the_mask():
    model = tiny_model("dynamic")
    kernel, cameras = model.kernel, model.train_cameras
    origins, directions = cameras.rays(VIEWS, PIXELS)

    kernel.extent_net.layers = ConstantLogits(-40.0)
    rays = kernel(VIEWS, PIXELS, cameras)
    assert torch.allclose(rays.origins, origins[:, None].expand_as(rays.origins), atol=1e-6)
    assert torch.allclose(rays.directions, directions[:, None].expand_as(rays.directions), atol=1e-6)

    kernel.extent_net.layers = ConstantLogits(40.0)
    full = kernel(VIEWS, PIXELS, cameras)
    unscaled = kernel.rigid(VIEWS, PIXELS, cameras)
    assert torch.allclose(full.origins, unscaled.origins, atol=1e-6)
    assert torch.allclose(full.directions, unscaled.directions, atol=1e-6)

    # Along one row of one view, the kernel widens with the mask.
    kernel.extent_net.layers = RampLogits()
    row = torch.tensor([[x, 6.5] for x in (0.5, 4.5, 8.5, 12.5, 15.5)])
    views = torch.ones(len(row), dtype=torch.long)
    extent = kernel.extent(views, row)
    assert (extent[1:] > extent[:-1]).all() and extent[0] < 0.05 and extent[-1] > 0.95
    spread = ray_spread(kernel(views, row, cameras))
    assert (spread[1:] > spread[:-1]).all()
    assert spread[0] < 0.05 * spread[-1]


@pytest.mark.parametrize("method", ["deblurnerf", "dpnerf", "dynamic"])
def test_kernel_is_trained_but_never_used_for_test_views(method):
    model = tiny_model(method)
    calls = []
    model.kernel.register_forward_hook(lambda *arguments: calls.append(1))
    image = model.render_view(model.train_cameras, 1, chunk=50)
    assert calls == [] and image.shape == (3, HEIGHT, WIDTH)
    pixels = model.train_cameras.pixel_centres(1)
    origins, directions = model.train_cameras.rays(1, pixels)
    sharp = linear_to_srgb(model.renderer(origins, directions)[1])
    assert torch.allclose(image, sharp.reshape(HEIGHT, WIDTH, 3).permute(2, 0, 1), atol=1e-6)

    coarse, fine, _ = model.training_colours(VIEWS, PIXELS, torch.Generator().manual_seed(0))
    (coarse.sum() + fine.sum()).backward()
    assert len(calls) == 1
    learned = {name for name, parameter in model.kernel.named_parameters()
               if parameter.grad is not None and parameter.grad.abs().sum() > 0}
    expected = {"deblurnerf": "mlp.output.weight", "dpnerf": "twists", "dynamic": "extent_net.layers.6.weight"}
    assert expected[method] in learned


# ---- training, resuming, benchmark ----

def training_loss(model_path, method, scene_folder, iteration=None):
    """Mean squared error of the fine pass over every training pixel, without training noise: of the model
    saved at iteration (the newest), or of the untrained model (iteration 0)."""
    settings = nerf_train.default_settings("cpu", **TINY_SETTINGS)
    scene_info = nerf_train.load_scene_info(scene_folder, 4)
    model, pixels = nerf_train.build_model(scene_info, method, settings, torch.device("cpu"), True, False, seed=0)
    if iteration != 0:
        model.load_state_dict(nerf_train.load_checkpoint(model_path, method, settings)[1]["model"])
    errors = []
    with torch.no_grad():
        for view in range(len(pixels.images)):
            positions = model.train_cameras.pixel_centres(view)
            _, fine, _ = model.training_colours(torch.full((len(positions),), view), positions, None)
            errors.append(((fine - pixels.images[view].permute(1, 2, 0).reshape(-1, 3)) ** 2).mean())
    return float(torch.stack(errors).mean())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nerf", "deblurnerf", "dpnerf", "dynamic"])
def test_short_run_lowers_the_loss_and_writes_results(method, tiny_defocus_scene, tmp_path):
    model_path = str(tmp_path / method)
    argv = ["-s", tiny_defocus_scene, "-m", model_path, "--method", method, "--iterations", "120", "--resolution", "4",
            "--device", "cpu", "--quiet"] + [f"--{name}={value}" for name, value in TINY_SETTINGS.items()]
    assert nerf_train.main(argv) == 0

    # The untrained fields are grey (the sigmoid's 0.5; 0.735 after the deblurring methods' tone curve), not far
    # from the photos' mean colour; learning the layout of the scene at least halves the error.
    initial = training_loss(model_path, method, tiny_defocus_scene, iteration=0)
    trained = training_loss(model_path, method, tiny_defocus_scene)
    assert trained < 0.5 * initial

    with open(os.path.join(model_path, "results.json")) as file:
        results = json.load(file)
    assert results["iteration"] == 120 and results["num_gaussians"] is None and results["train_seconds"] > 0
    assert results["num_views"] == 2 and results["mean"]["deblur_nerf"]["psnr"] > 10
    with open(os.path.join(model_path, "fps.json")) as file:
        speed = json.load(file)
    assert speed["render_fps"] > 0 and speed["render_resolution"] == "40x30"
    renders = os.path.join(model_path, "test", "ours_120", "renders")
    assert sorted(os.listdir(renders)) == ["00000.png", "00001.png"]
    assert iio.imread(os.path.join(renders, "00001.png")).shape == (30, 40, 3)
    assert sorted(os.listdir(os.path.join(model_path, "test", "ours_120", "gt"))) == ["00000.png", "00001.png"]
    assert [name for name in os.listdir(model_path) if name.endswith(".pth")] == ["chkpnt120.pth"]


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tiny_defocus_scene, tmp_path, monkeypatch):
    options = dict(TINY_RUN, device="cpu", iterations=30, checkpoint_interval=10)
    nerf_train.train_baseline(tiny_defocus_scene, str(tmp_path / "straight"), "dynamic", **options)

    save_checkpoint = nerf_train.save_checkpoint

    def save_then_stop(model_path, iteration, state):
        save_checkpoint(model_path, iteration, state)
        if iteration == 20:
            raise KeyboardInterrupt

    monkeypatch.setattr(nerf_train, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        nerf_train.train_baseline(tiny_defocus_scene, str(tmp_path / "resumed"), "dynamic", **options)
    monkeypatch.undo()
    assert nerf_train.checkpoint_iterations_in(str(tmp_path / "resumed")) == [20]
    nerf_train.train_baseline(tiny_defocus_scene, str(tmp_path / "resumed"), "dynamic", resume=True, **options)

    states = [torch.load(nerf_train.checkpoint_path(str(tmp_path / run), 30), weights_only=True)
              for run in ("straight", "resumed")]
    assert states[0]["model"].keys() == states[1]["model"].keys()
    for name, value in states[0]["model"].items():
        assert torch.allclose(value, states[1]["model"][name], atol=1e-6), name


@pytest.mark.slow
def test_benchmark_rows(tiny_defocus_scene, tmp_path):
    assert benchmark.scene_blur(tiny_defocus_scene) == "defocus"
    rows = benchmark.benchmark_rows(tiny_defocus_scene, "defocus", ["nerf", "dpnerf"], 5, "cpu", str(tmp_path),
                                    **TINY_RUN)
    assert [row["method"] for row in rows] == ["nerf", "dpnerf"]
    for row in rows:
        assert row["scene"] == "tiny_defocus" and row["blur"] == "defocus" and row["iterations"] == 5
        assert row["num_gaussians"] is None and row["render_resolution"] == "40x30"
        assert row["train_seconds"] > 0 and row["render_fps"] > 0
        assert set(row["metrics"]) >= {"3dgs", "deblur_nerf"} and row["metrics"]["deblur_nerf"]["psnr"] > 0
        assert os.path.isfile(os.path.join(tmp_path, "tiny_defocus", row["method"], "results.json"))
    table = benchmark.markdown_table(rows)
    assert table.count("| tiny_defocus | defocus |") == 2


# ---- bad inputs ----
# Any valid scene will do: the small COLMAP one is made in a fraction of the synthetic one's time.

def test_unknown_method_is_refused(tiny_scene, tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        nerf_train.main(["-s", tiny_scene, "-m", str(tmp_path / "run"), "--method", "mipnerf"])
    assert raised.value.code == 2 and "invalid choice: 'mipnerf'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown method 'mipnerf'"):
        nerf_train.train_baseline(tiny_scene, str(tmp_path / "run"), "mipnerf", device="cpu")
    with pytest.raises(ValueError, match="unknown method 'mipnerf'"):
        benchmark.benchmark_rows(tiny_scene, "defocus", ["nerf", "mipnerf"], 5, "cpu", str(tmp_path / "bench"))
    assert not os.path.exists(tmp_path / "bench")


def test_missing_scene_and_bad_settings_give_clear_errors(tiny_scene, tmp_path, refusal):
    missing = str(tmp_path / "no_such_scene")
    message = refusal(nerf_train.main,
                      ["-s", missing, "-m", str(tmp_path / "run"), "--method", "nerf", "--device", "cpu"])
    assert missing in message and "not found" in message
    run = ["-s", tiny_scene, "-m", str(tmp_path / "run"), "--device", "cpu"]
    assert "--iterations must be positive" in refusal(nerf_train.main, run + ["--method", "nerf", "--iterations", "0"])
    assert "--kernel_points must be at least 2" in refusal(nerf_train.main,
                                                           run + ["--method", "dpnerf", "--kernel_points", "1"])
    assert "--net_width must be at least 2" in refusal(nerf_train.main, run + ["--method", "nerf", "--net_width", "1"])
    assert "--coarse_samples must be at least 2" in refusal(nerf_train.main,
                                                           run + ["--method", "nerf", "--coarse_samples", "1"])
    assert "no chkpnt<N>.pth checkpoint in" in refusal(nerf_train.main, [
        "-s", tiny_scene, "-m", str(tmp_path / "empty"), "--method", "nerf", "--device", "cpu", "--resume"])
    with pytest.raises(ValueError, match="cannot tell its blur"):
        benchmark.scene_blur(str(tmp_path))
