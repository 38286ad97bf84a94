"""A short deblurring run against a vanilla run of the same length on the tiny synthetic defocus scene."""

import json
import os

import pytest
import torch

import train
from blur import cpu_scale_options, load_blur_model
from blur.presets import as_arguments
from scene.gaussian_model import GaussianModel
from scene.scene import Scene
from scene.synthetic import generate_scene, preset_config

ITERATIONS = 600
# Below the smallest gain measured at this length over seeds 0 to 2 (see the test's docstring).
MARGIN_DB = 0.1


@pytest.fixture(scope="module")
def defocus_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_defocus") / "scene"
    generate_scene(preset_config("tiny", "defocus", seed=0), folder, log=lambda message: None)
    return str(folder)


def held_out_psnr(model_path):
    with open(os.path.join(model_path, f"results_{ITERATIONS}.json")) as file:
        return json.load(file)["mean"]["deblur_nerf"]["psnr"]


def test_deblurring_beats_vanilla_on_the_held_out_sharp_views(defocus_scene, tmp_path):
    """The same preset, schedule and seed with and without the defocus blur model.

    The official initialisation leaves the scale head's factors clamped at 1 without gradient (then the model
    deblurs nothing measurable here); --initial_scale_factor starts them inside the clamp range. Over seeds 0 to 2
    it gained 0.21, 0.32 and 0.29 dB at this length (0.4 to 0.6 dB at 1000 iterations).
    """
    common = ["-s", defocus_scene, "--eval", "--config", "synthetic_defocus", "--device", "cpu", "--seed", "0",
              "--test_iterations", str(ITERATIONS), "--save_iterations", str(ITERATIONS),
              "--checkpoint_interval", "0"] + as_arguments(cpu_scale_options(ITERATIONS))
    vanilla, deblurred = str(tmp_path / "vanilla"), str(tmp_path / "deblurred")
    train.main(common + ["-m", vanilla, "--blur", "none"])
    train.main(common + ["-m", deblurred, "--initial_scale_factor", "1.05"])
    assert held_out_psnr(deblurred) > held_out_psnr(vanilla) + MARGIN_DB

    # Each photo has its own aperture and focus distance: the learned enlargement differs from view to view.
    dataset = train.parse_args(common + ["-m", deblurred])[1]
    gaussians = GaussianModel(dataset.sh_degree)
    scene = Scene(dataset, gaussians, load_iteration=ITERATIONS)
    blur_model = load_blur_model(deblurred)
    with torch.no_grad():
        params = gaussians.render_params()
        mean_factors = [blur_model(params.means, params.scales, params.rotations, camera.camera_center)[0].mean()
                        for camera in scene.train_cameras]
    assert max(mean_factors) - min(mean_factors) > 0.01
