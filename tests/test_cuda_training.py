"""Training, resuming and rendering on the GPU against the same on the CPU; skipped where no GPU is present."""

import copy
import dataclasses
import json
import logging
import math
import os
import re

import numpy as np
import pytest
import torch

import train
from blur import BlurModel, CameraShake, load_blur_model
from blur_helpers import SHORT_SCHEDULE as BLUR_SCHEDULE
from blur_helpers import as_arguments, random_params, randomise_weights, set_lens, tiny_camera
from gaussian_rasterizer import available_backends
from gaussian_renderer import render, total_blending_weights
from scene.cameras import Camera as SceneCamera
from scene.gaussian_model import GaussianModel
from scene.scene import Scene, point_cloud_path
from test_training import SHORT_SCHEDULE as TRAINING_SCHEDULE
from test_training import gaussians_at
from tiny_scene import camera_at
from training import explicit_options, with_cpu_scale
from training.blur_model import render_training_view
from utils.checkpoints import checkpoint_iterations_in

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available() or "cuda" not in available_backends(),
                                 reason="needs a GPU and the CUDA backend")]

ITERATIONS = 400
# The GPU sums gradients with atomics, in another order than the CPU, so the two runs drift apart and densify
# differently; the CUDA run must still learn as much. Runs of this length on this scene differ by a few tenths of a
# dB from seed to seed.
PSNR_MARGIN_DB = 0.5


def arguments(scene, model_path, device, blur):
    config = "synthetic_motion" if blur == "motion" else "synthetic_defocus"
    argv = ["-s", scene, "-m", model_path, "--eval", "--config", config, "--blur", blur, "--device", device,
            "--seed", "0", "--test_iterations", str(ITERATIONS), "--save_iterations", str(ITERATIONS),
            "--checkpoint_interval", "0", "--checkpoint_iterations", str(ITERATIONS // 2)]
    scaled = with_cpu_scale(explicit_options(argv), ITERATIONS)
    return argv + as_arguments({name: value for name, value in scaled.items() if name not in explicit_options(argv)})


def held_out_psnr(model_path):
    with open(os.path.join(model_path, f"results_{ITERATIONS}.json")) as file:
        return json.load(file)["mean"]["deblur_nerf"]["psnr"]


@pytest.mark.parametrize("blur", ["none", "defocus", "motion"])
def test_cuda_training_learns_as_much_as_cpu_training(tiny_defocus_scene, tmp_path, blur):
    cpu_run, cuda_run = str(tmp_path / "cpu"), str(tmp_path / "cuda")
    train.main(arguments(tiny_defocus_scene, cpu_run, "cpu", blur))
    train.main(arguments(tiny_defocus_scene, cuda_run, "cuda", blur))
    cpu_psnr, cuda_psnr = held_out_psnr(cpu_run), held_out_psnr(cuda_run)
    print(f"{blur}: held-out PSNR {cpu_psnr:.2f} dB on the CPU, {cuda_psnr:.2f} dB on the GPU")
    assert math.isfinite(cuda_psnr) and cuda_psnr > cpu_psnr - PSNR_MARGIN_DB

    # A model trained on the GPU renders alike with both backends. A Gaussian whose alpha sits at the 1/255 cut-off
    # may be blended by one backend and skipped by the other, which moves a few pixels by about 1/255; the rest
    # agree to float32 rounding.
    images = {}
    with torch.no_grad():
        for device in ("cpu", "cuda"):
            gaussians, camera = saved_model(tiny_defocus_scene, cuda_run, device, blur)
            background = torch.zeros(3, device=device)
            images[device] = render(camera, gaussians.render_params(), background, backend=device).image.cpu()
    difference = (images["cuda"] - images["cpu"]).abs()
    assert difference.max() < 0.01 and difference.mean() < 1e-5


def saved_model(scene, model_path, device, blur):
    """The run's final Gaussians on device, and its first test view."""
    dataset = train.options_from_command_line(arguments(scene, model_path, device, blur)).model
    gaussians = GaussianModel(dataset.sh_degree, device)
    return gaussians, Scene(dataset, gaussians, load_iteration=ITERATIONS).test_cameras[0]


def test_a_gpu_checkpoint_resumes_on_the_gpu(tiny_defocus_scene, tmp_path):
    model_path = str(tmp_path / "run")
    argv = arguments(tiny_defocus_scene, model_path, "cuda", "motion")
    train.main(argv)
    os.remove(point_cloud_path(model_path, ITERATIONS))
    train.main(argv + ["--resume"])
    assert checkpoint_iterations_in(model_path)[0] == ITERATIONS // 2
    assert math.isfinite(held_out_psnr(model_path))
    assert os.path.isfile(point_cloud_path(model_path, ITERATIONS))


# ---- The blur options and the pruning by contribution, each of which had only run on the CPU ----


def on_cuda(argv):
    """argv with its --device value replaced by cuda."""
    return [("cuda" if before == "--device" else option) for before, option in zip([None] + argv[:-1], argv)]


def params_on(params, device):
    tensors = {field.name: getattr(params, field.name).to(device) for field in dataclasses.fields(params)
               if isinstance(getattr(params, field.name), torch.Tensor)}
    return dataclasses.replace(params, **tensors)


def camera_on(camera, device):
    return SceneCamera(camera.world_to_camera.double().cpu().numpy(), camera.fx, camera.fy, camera.cx, camera.cy,
                       camera.width, camera.height, camera.near, camera.far, device)


def shaken():
    model = CameraShake(num_moments=4)
    randomise_weights(model, 1.0)
    return model


def lens():
    model = BlurModel("defocus", lens_blur=True)
    randomise_weights(model.trunk, 1.0)
    set_lens(model, blur_pixels=5.0, relative_focus=0.8)
    return model


def shaken_through_a_lens():
    model = CameraShake(num_moments=4, lens_blur=True)
    randomise_weights(model.path_network, 1.0)
    set_lens(model, blur_pixels=5.0, relative_focus=0.8)
    return model


@pytest.mark.parametrize("make_blur_model, network",
                         [(shaken, "path_network"), (lens, "lens_network"), (shaken_through_a_lens, "lens_network")],
                         ids=["camera_shake", "lens_blur", "camera_shake_lens_blur"])
def test_a_blurred_training_view_and_its_gradients_agree_on_both_devices(make_blur_model, network):
    torch.manual_seed(0)
    cpu_model = make_blur_model()
    renders = {}
    for device, model in (("cpu", cpu_model), ("cuda", copy.deepcopy(cpu_model).to("cuda"))):
        params = params_on(random_params(300), device)
        for field in ("means", "scales", "rotations", "opacities", "sh_coeffs"):
            getattr(params, field).requires_grad_(True)
        image, _ = render_training_view(camera_on(tiny_camera(), device), params, model,
                                              torch.zeros(3, device=device), device)
        upstream = torch.randn(image.shape, generator=torch.Generator().manual_seed(1)).to(device)
        (image * upstream).sum().backward()
        gradients = {f"model.{name}": parameter.grad for name, parameter in model.named_parameters()
                     if parameter.grad is not None}
        gradients.update({field: getattr(params, field).grad
                          for field in ("means", "scales", "rotations", "opacities", "sh_coeffs")})
        renders[device] = image.detach().cpu(), {name: value.cpu() for name, value in gradients.items()}

    (cpu_image, cpu_gradients), (cuda_image, cuda_gradients) = renders["cpu"], renders["cuda"]
    # As after training: a Gaussian whose alpha sits at the 1/255 cut-off may be blended by one device and skipped
    # by the other, which moves a few pixels by about 1/255; the rest agree to float32 rounding.
    difference = (cuda_image - cpu_image).abs()
    assert difference.max() < 0.01 and difference.mean() < 1e-5
    assert cpu_gradients.keys() == cuda_gradients.keys()
    assert {f"model.{network}.0.weight", f"model.{network}.2.bias"} <= cpu_gradients.keys()
    for name, expected in cpu_gradients.items():
        # The GPU sums gradients with atomics, in another order, which float32 rounding tells apart by about 1e-6
        # of each tensor's norm. A sample at the alpha cut-off that one device blends and the other skips moves a
        # single entry by up to a few hundredths, which against the norm of hundreds of entries is under 1e-3.
        norm = torch.linalg.vector_norm(expected).item()
        error = torch.linalg.vector_norm(cuda_gradients[name] - expected).item()
        assert error <= 1e-3 * norm, f"{name}: error norm {error:.3e} vs gradient norm {norm:.3e}"


def test_blending_weights_agree_on_both_devices_and_add_up_to_the_rendered_alpha():
    rng = np.random.default_rng(1)
    params = gaussians_at(rng.uniform(-1, 1, (200, 3)), rng.uniform(0.03, 0.2, (200, 3)), rng.uniform(0.2, 0.9, 200))
    positions = [[0.0, -1.0, -4.0], [2.0, 0.5, -3.5]]
    cpu_weights = total_blending_weights([camera_at(p) for p in positions], params, "cpu")
    cuda_cameras = [camera_on(camera_at(p), "cuda") for p in positions]
    cuda_params = params_on(params, "cuda")
    weights = total_blending_weights(cuda_cameras, cuda_params, "cuda")
    assert weights.shape == (200,) and torch.all(weights >= 0)
    with torch.no_grad():
        alpha = sum(render(camera, cuda_params, torch.zeros(3, device="cuda"), "cuda").alpha.sum()
                    for camera in cuda_cameras)
    torch.testing.assert_close(weights.sum(), alpha, rtol=1e-4, atol=0)
    # Weights are pixel counts of order 1 to 100. A pair at the 1/255 cut-off on one device only moves a weight by
    # at most 1/255; a few such pairs stay under 0.02.
    torch.testing.assert_close(weights.cpu(), cpu_weights, rtol=1e-4, atol=0.02)


def test_min_contribution_prunes_on_the_gpu(tiny_scene, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    # On the CPU the faintest Gaussians of this run give its training views 7 to 10 pixels each. The GPU run
    # densifies with other random draws, so the threshold is set above that range.
    model_path = str(tmp_path / "compact")
    argv = on_cuda(["-s", tiny_scene, "-m", model_path, "--iterations", "60", "--save_iterations", "60",
                    "--min_contribution", "20"] + TRAINING_SCHEDULE)
    train.main(argv)
    printed = caplog.text
    pruned, left = map(int, re.search(r"pruned (\d+) Gaussians .* less than 20; (\d+) left", printed).groups())
    assert pruned > 0
    dataset = train.options_from_command_line(argv).model
    gaussians = GaussianModel(dataset.sh_degree, "cuda")
    scene = Scene(dataset, gaussians, load_iteration=60)
    assert gaussians.num_points == left
    with torch.no_grad():
        weights = total_blending_weights(scene.train_cameras, gaussians.render_params(), "cuda")
    # Removing Gaussians only lets more light through to the others, so no survivor's weight fell.
    assert weights.min() >= 20.0 - 1e-3


@pytest.mark.parametrize("blur_options", [["--blur", "motion", "--camera_shake", "--num_moments", "2"],
                                          ["--blur", "defocus", "--lens_blur"]], ids=["camera_shake", "lens_blur"])
def test_blur_options_train_and_resume_on_the_gpu(tiny_scene, tmp_path, blur_options):
    model_path = str(tmp_path / "run")
    argv = on_cuda(["-s", tiny_scene, "-m", model_path, "--eval", "--hold", "4", "--iterations", "20",
                    "--test_iterations", "20", "--save_iterations", "20", "--checkpoint_interval", "0",
                    "--checkpoint_iterations", "10"] + blur_options + BLUR_SCHEDULE)
    train.main(argv)
    os.remove(point_cloud_path(model_path, 20))
    train.main(argv + ["--resume"])
    assert checkpoint_iterations_in(model_path) == [10]
    with open(os.path.join(model_path, "results_20.json")) as file:
        assert math.isfinite(json.load(file)["mean"]["deblur_nerf"]["psnr"])
    loaded = load_blur_model(model_path)
    assert isinstance(loaded, CameraShake if "--camera_shake" in blur_options else BlurModel)
    assert all(torch.isfinite(tensor).all() for tensor in loaded.state_dict().values())
