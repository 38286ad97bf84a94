import dataclasses
import json
import logging
import os
from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import demo
import gaussian_renderer
import render as render_cli
import train
import training.blur_model
from arguments import OptimizationParams
from blur import (
    DEBLUR_TRAINING_DEFAULTS,
    AugmentationError,
    BlurModel,
    BlurModelError,
    CameraShake,
    augment_points,
    blur_model_from_state,
    blur_model_path,
    blur_model_state,
    depth_scaled_thresholds,
    load_blur_model,
    mean_image,
    preset_names,
    prune_by_depth_scaled_opacity,
    read_preset,
    scaled_schedule,
)
from blur.augmentation import augmentation_count, robust_bounds
from blur.camera_shake import exposure_times, rigidly_moved, rotation_quaternion
from blur.model import input_size
from blur.presets import BLUR_MODEL_DEFAULTS, as_flags
from blur_helpers import SHORT_SCHEDULE, random_params, randomise_weights, set_lens, tiny_camera
from gaussian_rasterizer import project_gaussians, rasterize_gaussians
from gaussian_renderer import raster_camera, render, render_moments
from scene.cameras import Camera
from scene.gaussian_model import GaussianModel, GaussianParams, inverse_sigmoid, mean_squared_distance_to_neighbours
from scene.scene import point_cloud_path
from tiny_scene import FOCAL
from training import build_parser, explicit_options, training_options, with_cpu_scale
from training.blur_model import create_blur_model, render_training_view
from training.density import accumulate_densification_stats
from utils.checkpoints import checkpoint_iterations_in, checkpoint_path, load_checkpoint
from utils.geometry import quaternion_to_rotation_matrix
from utils.images import linear_to_srgb, srgb_to_linear


def default_opt():
    return OptimizationParams.extract(Namespace())


# ---- the MLP ----


def test_mlp_has_the_official_inputs_layers_and_initialisation():
    assert input_size() == 21 + 63 + 3 + 4 == 91
    torch.manual_seed(0)
    for mode, scale_outputs, rotation_outputs in (("defocus", 3, 4), ("motion", 15, 20)):
        model = BlurModel(mode)
        linears = [layer for layer in model.trunk if isinstance(layer, torch.nn.Linear)]
        assert [(layer.in_features, layer.out_features) for layer in linears] == [(91, 64), (64, 64), (64, 64)]
        assert model.scale_head.out_features == scale_outputs
        assert model.rotation_head.out_features == rotation_outputs
        for layer in linears + [model.scale_head, model.rotation_head]:
            assert torch.count_nonzero(layer.bias) == 0
    motion = BlurModel("motion", num_moments=4)
    assert motion.position_head.out_features == 12
    # Xavier-normal: std = gain * sqrt(2 / (fan_in + fan_out)); the 3-output defocus scale head has gain 0.1.
    defocus = BlurModel("defocus")
    expected = {"trunk": np.sqrt(2.0 / (91 + 64)), "scale": 0.1 * np.sqrt(2.0 / 67), "rotation": np.sqrt(2.0 / 68)}
    measured = {"trunk": defocus.trunk[0].weight.std().item(), "scale": defocus.scale_head.weight.std().item(),
                "rotation": defocus.rotation_head.weight.std().item()}
    for name, std in expected.items():
        # 192 to 5824 samples of a normal: the sample std is within 25% of the true one.
        assert measured[name] == pytest.approx(std, rel=0.25), name


def test_mlp_inputs_are_detached_from_the_gaussians():
    params = random_params(50)
    for tensor in (params.means, params.scales, params.rotations):
        tensor.requires_grad_(True)
    model = BlurModel("motion")
    seen = []
    model.trunk[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    blurred = model.blurred_params(params, tiny_camera())
    assert seen and not seen[0].requires_grad
    assert seen[0].shape == (50, 91)
    # The MLP's own parameters still learn from the render loss.
    sum(moment.scales.sum() + moment.rotations.sum() + moment.means.sum() for moment in blurred).backward()
    assert model.rotation_head.weight.grad is not None
    # The Gaussians receive only the direct gradient of s * factor: with the factors detached, exactly the factors.
    factors = sum(moment.scales.detach() / params.scales.detach() for moment in blurred)
    torch.testing.assert_close(params.scales.grad, factors, rtol=1e-5, atol=1e-6)


def test_defocus_never_shrinks_a_gaussian():
    params = random_params(2000)
    model = BlurModel("defocus", lambda_s=0.01, max_clamp=1.1)
    for seed, std in ((0, 1.0), (1, 30.0), (2, 300.0)):
        randomise_weights(model, std, seed)
        (blurred,) = model.blurred_params(params, tiny_camera())
        scale_factors = blurred.scales / params.scales
        rotation_factors = blurred.rotations / params.rotations
        assert torch.all(blurred.scales >= params.scales)
        assert torch.all(scale_factors <= 1.1 * (1 + 1e-6))
        assert torch.all(rotation_factors >= 1 - 1e-6) and torch.all(rotation_factors <= 1.1 * (1 + 1e-6))
        assert torch.equal(blurred.means, params.means)
        assert blurred.opacities is params.opacities and blurred.sh_coeffs is params.sh_coeffs
    # With these weights the factors reach both ends of the clamp range.
    assert scale_factors.min().item() == 1.0 and scale_factors.max().item() == pytest.approx(1.1)


def covariances(params):
    matrices = quaternion_to_rotation_matrix(params.rotations / params.rotations.norm(dim=-1, keepdim=True))
    scaled = matrices * params.scales[:, None, :]
    return scaled @ scaled.transpose(1, 2)


def assert_lens_convolved(blurred, sharp, camera, blur_pixels, relative_focus):
    """blurred is sharp convolved with the defocus of a thin lens set by set_lens(blur_pixels, relative_focus) at
    sharp's depths from camera, its opacities lowered to keep each Gaussian's coverage. Returns the blur in world
    units (N,)."""
    depths = sharp.means @ camera.world_to_camera[2, :3] + camera.world_to_camera[2, 3]
    median = depths.median()
    blur = blur_pixels * median * (1.0 / depths - 1.0 / (relative_focus * median)).abs() * depths / camera.fx
    # Convolving with an isotropic Gaussian adds its variance along every direction.
    torch.testing.assert_close(covariances(blurred), covariances(sharp) + blur[:, None, None] ** 2 * torch.eye(3),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(blurred.rotations, sharp.rotations)
    assert torch.equal(blurred.means, sharp.means) and blurred.sh_coeffs is sharp.sh_coeffs
    # Opacity times the footprint's area (sqrt of the screen covariance's determinant) is kept by the lens.
    view = raster_camera(camera)
    _, _, sharp_covariances, _ = project_gaussians(sharp.means, sharp.scales, sharp.rotations, view, True)
    _, _, blurred_covariances, _ = project_gaussians(blurred.means, blurred.scales, blurred.rotations, view, True)
    torch.testing.assert_close(blurred.opacities[:, 0] * torch.linalg.det(blurred_covariances).sqrt(),
                               sharp.opacities[:, 0] * torch.linalg.det(sharp_covariances).sqrt(),
                               rtol=1e-4, atol=0)
    assert torch.all(blurred.opacities <= sharp.opacities * (1 + 1e-6))
    return blur


def test_lens_blur_convolves_each_gaussian_with_its_defocus_and_keeps_its_coverage():
    params = random_params(2000)
    camera = tiny_camera()
    model = BlurModel("defocus", lens_blur=True)
    assert model.normalize_rotations
    randomise_weights(model.trunk, 1.0)
    set_lens(model, blur_pixels=10.0, relative_focus=0.8)
    (blurred,) = model.blurred_params(params, camera)
    # The MLP's own factors, without the lens.
    scale_factors, rotation_factors, _ = model(params.means, params.scales, params.rotations, camera.camera_center)
    factored = model.transformed(params, scale_factors[:, 0], rotation_factors[:, 0])
    blur = assert_lens_convolved(blurred, factored, camera, blur_pixels=10.0, relative_focus=0.8)
    assert blur.max() > params.scales.max()
    assert torch.any(blurred.opacities < 0.5 * params.opacities)


def test_lens_blur_spreads_a_rendered_gaussian_without_changing_its_total_alpha():
    camera = tiny_camera(0.0)
    centre = camera.camera_center / camera.camera_center.norm() * 0.5  # 3.5 units in front of the camera
    depth = (camera.world_to_camera[2, :3] @ centre + camera.world_to_camera[2, 3]).item()
    sigma_pixels = 3.0
    params = GaussianParams(
        means=centre[None].clone(),
        scales=torch.full((1, 3), sigma_pixels * depth / FOCAL),
        rotations=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        opacities=torch.tensor([[0.5]]),
        sh_coeffs=torch.zeros(1, 1, 3),
        sh_degree=0,
    )
    model = BlurModel("defocus", lens_blur=True)
    # One Gaussian is its own median depth: focused at 1 / 1.5 of it, it is blurred by 4 * |1 - 1.5| = 2 pixels.
    set_lens(model, blur_pixels=4.0, relative_focus=1.0 / 1.5)
    (blurred,) = model.blurred_params(params, camera)
    background = torch.zeros(3)
    sharp_alpha = render(camera, params, background, "cpu").alpha
    blurred_alpha = render(camera, blurred, background, "cpu").alpha
    # sigma 3 -> sqrt(3^2 + 2^2) pixels (+0.3 px^2 low-pass), so the peak falls by about 13 / (9 + 0.3) ...
    assert blurred_alpha.max() < 0.75 * sharp_alpha.max()
    # ... while the total stays. Alpha under 1/255 is skipped: about 1-3% of a Gaussian this faint, so 5% apart.
    assert blurred_alpha.sum().item() == pytest.approx(sharp_alpha.sum().item(), rel=0.05)


def test_lens_blur_learns_its_lens_from_the_render_loss_and_is_only_for_defocus():
    params = random_params(300)
    camera = tiny_camera()
    model = BlurModel("defocus", lens_blur=True)
    image, _ = render_training_view(camera, params, model, torch.zeros(3), "cpu")
    image.sum().backward()
    gradients = [parameter.grad for parameter in model.lens_network.parameters()]
    assert all(gradient is not None for gradient in gradients)
    assert model.lens_network[-1].bias.grad.abs().min() > 0
    # Saved and loaded, the lens blurs the same.
    set_lens(model, blur_pixels=5.0, relative_focus=1.2)
    loaded = blur_model_from_state(blur_model_state(model), "cpu", "memory")
    assert loaded.lens_blur
    torch.testing.assert_close(loaded.blurred_params(params, camera)[0].scales,
                               model.blurred_params(params, camera)[0].scales, rtol=0, atol=0)
    with pytest.raises(ValueError, match="lens blur models defocus"):
        BlurModel("motion", lens_blur=True)


def test_rotations_are_left_unnormalised_unless_asked():
    params = random_params(500)
    for normalize, unit in ((False, False), (True, True)):
        model = BlurModel("defocus", normalize_rotations=normalize)
        randomise_weights(model, 30.0)
        (blurred,) = model.blurred_params(params, tiny_camera())
        norms = blurred.rotations.norm(dim=-1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) == unit
        if not unit:
            assert norms.max() > 1.01


def test_motion_moments():
    params = random_params(400)
    model = BlurModel("motion", num_moments=3, lambda_p=0.01)
    randomise_weights(model, 3.0)
    moments = model.blurred_params(params, tiny_camera())
    assert len(moments) == 4
    # The first moment stays in place; the others move by lambda_p times the position head's outputs.
    assert torch.equal(moments[0].means, params.means)
    with torch.no_grad():
        scale_factors, rotation_factors, offsets = model(params.means, params.scales, params.rotations,
                                                         tiny_camera().camera_center)
    for index, moment in enumerate(moments[1:]):
        torch.testing.assert_close(moment.means, params.means + offsets[:, index])
        assert torch.all(moment.scales >= params.scales)
    assert offsets.abs().max() > 1e-3
    # Each moment has its own factors; the unshifted one uses the last slot.
    torch.testing.assert_close(moments[0].scales, params.scales * scale_factors[:, 3])
    assert not torch.allclose(moments[1].scales, moments[2].scales)


def test_motion_training_image_is_the_mean_of_its_renders():
    params = random_params(300)
    model = BlurModel("motion", num_moments=4, lambda_p=0.05)
    randomise_weights(model, 2.0)
    camera = tiny_camera()
    background = torch.zeros(3)
    image, outputs = render_training_view(camera, params, model, background, "cpu")
    assert len(outputs) == 5
    renders = [render(camera, moment, background, "cpu").image for moment in model.blurred_params(params, camera)]
    torch.testing.assert_close(image, sum(renders) / 5, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.blurred_render(camera, params, background, "cpu"), image, rtol=0, atol=1e-6)
    # The moments differ, so the mean is not any one of them.
    assert min((render_image - image).abs().max() for render_image in renders) > 1e-3


def test_srgb_encoding_round_trips_and_has_gradients_everywhere():
    values = torch.linspace(0.0, 1.2, 1201, dtype=torch.float64, requires_grad=True)
    linear = srgb_to_linear(values)
    torch.testing.assert_close(linear_to_srgb(linear), values, rtol=0, atol=1e-12)
    # The standard's anchor points: mid-grey 0.5 is 21.4% of white's light; the curve is continuous at the seam.
    assert float(srgb_to_linear(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0.21404, abs=1e-5)
    seam = torch.tensor([0.04045 - 1e-9, 0.04045 + 1e-9], dtype=torch.float64)
    assert float(srgb_to_linear(seam).diff().abs()) < 1e-7
    linear.sum().backward()
    assert torch.isfinite(values.grad).all() and (values.grad > 0).all()


def test_linear_exposure_averages_the_moments_in_linear_light():
    params = random_params(300)
    model = CameraShake(num_moments=4, linear_exposure=True)
    randomise_weights(model, 1.0)
    camera = tiny_camera()
    background = torch.zeros(3)
    image, outputs = render_training_view(camera, params, model, background, "cpu")
    image, renders = image.detach(), torch.stack([output.image for output in outputs]).detach()
    # float32 through the curve and back: a few ulp of values of order 1.
    torch.testing.assert_close(image, linear_to_srgb(srgb_to_linear(renders).mean(dim=0)), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.blurred_render(camera, params, background, "cpu"), image, rtol=0, atol=1e-6)
    # Light adds up before the encoding's curve: a mix is brighter than the mean of the encoded values.
    assert float((image - renders.mean(dim=0)).min()) > -1e-6
    assert float((image - renders.mean(dim=0)).max()) > 0.01
    # Black and white, half and half: half the light, which sRGB encodes as 0.735.
    halves = [SimpleNamespace(image=torch.zeros(3, 2, 2)), SimpleNamespace(image=torch.ones(3, 2, 2))]
    torch.testing.assert_close(mean_image(halves, linear_light=True), torch.full((3, 2, 2), 0.7354), atol=1e-4, rtol=0)
    torch.testing.assert_close(mean_image(halves), torch.full((3, 2, 2), 0.5), atol=0, rtol=0)
    loaded = blur_model_from_state(blur_model_state(model), "cpu", "memory")
    assert isinstance(loaded, CameraShake) and loaded.linear_exposure
    assert not CameraShake(num_moments=4).linear_exposure


def motion_model(kind):
    if kind == "camera_shake":
        model = CameraShake(num_moments=4)
        randomise_weights(model, 1.0)
    else:
        model = BlurModel("motion", num_moments=4, lambda_p=0.05)
        randomise_weights(model, 2.0)
    return model


@pytest.mark.parametrize("kind", ["mlp", "camera_shake"])
def test_the_moments_of_a_motion_blurred_view_render_in_one_call_as_one_by_one(kind, monkeypatch):
    model = motion_model(kind)
    camera = tiny_camera()
    background = torch.tensor([0.1, 0.2, 0.3])
    plain = random_params(300, sh_degree=2)
    weights = torch.rand((3, camera.height, camera.width), generator=torch.Generator().manual_seed(3))
    rasterizer_calls = []

    def counted(*args, **kwargs):
        rasterizer_calls.append(args[4])
        return rasterize_gaussians(*args, **kwargs)

    monkeypatch.setattr(gaussian_renderer, "rasterize_gaussians", counted)

    def gradients_of(render_view):
        model.zero_grad()
        leaves = {name: getattr(plain, name).detach().clone().requires_grad_(True)
                  for name in ("means", "scales", "rotations", "opacities", "sh_coeffs")}
        image, outputs = render_view(dataclasses.replace(plain, **leaves))
        (image * weights).sum().backward()
        gradients = {name: leaf.grad for name, leaf in leaves.items()}
        gradients.update({name: parameter.grad.clone() for name, parameter in model.named_parameters()})
        return image, outputs, gradients

    image, outputs, gradients = gradients_of(
        lambda params: render_training_view(camera, params, model, background, "cpu"))
    # The moments share one call: one list of five cameras.
    assert len(rasterizer_calls) == 1 and len(rasterizer_calls[0]) == 5

    def one_by_one(params):
        renders = [render(camera, moment, background, "cpu") for moment in model.blurred_params(params, camera)]
        return mean_image(renders), renders

    expected_image, expected_outputs, expected_gradients = gradients_of(one_by_one)
    assert torch.equal(image, expected_image)
    assert len(outputs) == len(expected_outputs) == 5
    for output, expected in zip(outputs, expected_outputs):
        assert torch.equal(output.image, expected.image) and torch.equal(output.radii, expected.radii)
        torch.testing.assert_close(output.means2d.grad, expected.means2d.grad, rtol=0, atol=0)
    # Gradients of what the moments share are summed over the moments in another order: float32 rounding.
    for name, expected in expected_gradients.items():
        assert (gradients[name] - expected).abs().max() <= 1e-6 * expected.abs().max(), name


def test_a_blurred_image_counts_once_in_the_densification_statistics():
    gaussians = GaussianModel(0)
    gaussians.create_from_pcd(SimpleNamespace(points=np.random.default_rng(0).normal(size=(6, 3)),
                                              colors=np.full((6, 3), 0.5)), 1.0)
    outputs = []
    for visible in ([1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0]):
        means2d = torch.zeros(6, 2, requires_grad=True)
        means2d.grad = torch.full((6, 2), 0.001)
        outputs.append(SimpleNamespace(means2d=means2d, radii=torch.tensor(visible)))
    camera = SimpleNamespace(width=200, height=100)
    accumulate_densification_stats(gaussians, outputs, camera)
    torch.testing.assert_close(gaussians.denom.squeeze(-1), torch.tensor([1.0, 1.0, 0.5, 0.5, 0.0, 0.0]))
    one_render = np.hypot(0.001 * 100, 0.001 * 50)
    expected = torch.tensor([2, 2, 1, 1, 0, 0], dtype=torch.float32) * one_render
    torch.testing.assert_close(gaussians.xyz_gradient_accum.squeeze(-1), expected)


# ---- camera shake ----


def moved_camera(camera, rotation_vector, translation):
    """camera after rotating by rotation_vector and moving by translation in its own frame, built from its pose
    in float64: the geometry that rigidly_moved must reproduce by moving the Gaussians instead."""
    camera_to_world = camera.world_to_camera[:3, :3].T.double()
    turn = quaternion_to_rotation_matrix(rotation_quaternion(rotation_vector.double())[None])[0]
    rotation = camera_to_world @ turn
    centre = camera.camera_center.double() + camera_to_world @ translation.double()
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = rotation.T.numpy()
    world_to_camera[:3, 3] = (-rotation.T @ centre).numpy()
    return Camera(world_to_camera, camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height,
                  camera.near, camera.far, "cpu")


def test_camera_shake_moves_the_scene_as_the_camera_would_move():
    # Degree 0: without view-dependent colour, moving the scene and moving the camera give the same picture.
    params = random_params(300, sh_degree=0)
    camera = tiny_camera()
    background = torch.zeros(3)
    rotation_vector, translation = torch.tensor([0.02, -0.03, 0.015]), torch.tensor([0.05, -0.02, 0.03])
    moved = rigidly_moved(params, camera, rotation_vector, translation)
    expected = render(moved_camera(camera, rotation_vector, translation), params, background, "reference").image
    image = render(camera, moved, background, "reference").image
    # float32 rounding of positions a few units from the camera, against shifts of several pixels.
    assert (image - expected).abs().max() < 1e-4
    assert (image - render(camera, params, background, "reference").image).abs().max() > 0.3
    norms = moved.rotations.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    torch.testing.assert_close(moved.scales, params.scales, rtol=0, atol=0)


def test_camera_shake_renders_along_a_cubic_path_through_the_given_pose():
    torch.testing.assert_close(exposure_times(5), torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8]))
    params = random_params(300)
    camera = tiny_camera()
    model = CameraShake(num_moments=4)
    randomise_weights(model, 1.0)
    moments = model.blurred_params(params, camera)
    assert len(moments) == 5
    # The middle of the exposure is the given pose; the other renders move.
    torch.testing.assert_close(moments[2].means, params.means, rtol=0, atol=1e-6)
    assert all((moment.means - params.means).abs().max() > 1e-3 for i, moment in enumerate(moments) if i != 2)
    rotation_vectors, translations = model.path(camera)
    # A cubic without constant term, sampled at 5 evenly spaced times, has a zero fourth difference.
    for path in (rotation_vectors, translations):
        fourth_difference = path[0] - 4 * path[1] + 6 * path[2] - 4 * path[3] + path[4]
        assert fourth_difference.abs().max() < 1e-6 * path.abs().max()
    # Each training view has its own path.
    other_path, _ = model.path(tiny_camera(angle_degrees=-20.0))
    assert (other_path - rotation_vectors).abs().max() > 1e-3

    background = torch.zeros(3)
    image, outputs = render_training_view(camera, params, model, background, "cpu")
    assert len(outputs) == 5
    renders = [render(camera, moment, background, "cpu").image for moment in moments]
    torch.testing.assert_close(image, sum(renders) / 5, rtol=0, atol=1e-6)
    torch.testing.assert_close(model.blurred_render(camera, params, background, "cpu"), image, rtol=0, atol=1e-6)


def test_a_mean_anchored_path_averages_to_the_given_pose():
    camera = tiny_camera()
    mid = CameraShake(num_moments=4)
    randomise_weights(mid, 1.0)
    mean = CameraShake(num_moments=4, path_anchor="mean")
    mean.load_state_dict(mid.state_dict())
    for mid_path, mean_path in zip(mid.path(camera), mean.path(camera)):
        # The same path, shifted so that its samples average to the given pose rather than pass through it at t = 0.
        assert mid_path[2].abs().max() == 0 and mid_path.mean(dim=0).abs().max() > 1e-4
        torch.testing.assert_close(mean_path.mean(dim=0), torch.zeros(3), rtol=0, atol=1e-7)
        torch.testing.assert_close(mean_path, mid_path - mid_path.mean(dim=0), rtol=0, atol=1e-7)
    assert blur_model_from_state(blur_model_state(mean), "cpu", "memory").path_anchor == "mean"
    with pytest.raises(ValueError, match="path_anchor must be one of mid, mean, got 'start'"):
        CameraShake(path_anchor="start")


def test_camera_shake_with_a_lens_defocuses_each_render_where_the_path_puts_it():
    params = random_params(2000)
    camera = tiny_camera()
    model = CameraShake(num_moments=4, lens_blur=True)
    randomise_weights(model.path_network, 1.0)
    set_lens(model, blur_pixels=10.0, relative_focus=0.8)
    still = CameraShake(num_moments=4)
    still.path_network.load_state_dict(model.path_network.state_dict())
    lensed, moved = model.blurred_params(params, camera), still.blurred_params(params, camera)
    assert len(lensed) == 5
    for defocused, sharp in zip(lensed, moved):
        # The lens blurs each render by the depths of the moved Gaussians, as the moved camera sees them.
        assert_lens_convolved(defocused, sharp, camera, blur_pixels=10.0, relative_focus=0.8)
    assert (moved[0].means - moved[4].means).abs().max() > 1e-3

    # The path and the lens both learn from the render loss; saved and loaded, the model blurs the same.
    image, _ = render_training_view(camera, params, model, torch.zeros(3), "cpu")
    image.sum().backward()
    assert model.lens_network[-1].bias.grad.abs().min() > 0
    assert model.path_network[-1].weight.grad.abs().max() > 0
    loaded = blur_model_from_state(blur_model_state(model), "cpu", "memory")
    assert isinstance(loaded, CameraShake) and loaded.lens_blur
    for loaded_moment, moment in zip(loaded.blurred_params(params, camera), lensed):
        torch.testing.assert_close(loaded_moment.scales, moment.scales, rtol=0, atol=0)
    assert not CameraShake(num_moments=4).lens_blur


def test_camera_shake_learns_the_blur_of_a_known_path():
    torch.manual_seed(0)
    params = random_params(300)
    camera = tiny_camera()
    background = torch.zeros(3)
    truth = CameraShake(num_moments=4)
    # Turns of up to about 0.06 radians, 3 to 4 pixels at the tiny camera's focal length.
    with torch.no_grad():
        truth.path_network[-1].bias.copy_(torch.tensor([[6.0, -4.5, 3.0, 9.0, 3.0, -6.0],
                                                        [1.5, 1.5, -1.5, 0.0, 0.0, 0.0],
                                                        [-3.0, 1.5, 1.5, 0.0, 0.0, 0.0]]).flatten())
        blurry = truth.blurred_render(camera, params, background, "cpu")
    model = CameraShake(num_moments=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-15)

    def error():
        return (model.blurred_render(camera, params, background, "cpu") - blurry).abs().mean()

    with torch.no_grad():
        start = error().item()
    for _ in range(150):
        optimizer.zero_grad()
        error().backward()
        optimizer.step()
    # Seeds 0 to 2 end at 0.09 to 0.11 of the starting error.
    with torch.no_grad():
        assert error().item() < 0.25 * start


def test_camera_shake_trains_saves_resumes_and_never_runs_at_test_time(tiny_scene, tmp_path, monkeypatch, capsys):
    calls = {"count": 0}
    original = CameraShake.path

    def counted(self, camera):
        calls["count"] += 1
        return original(self, camera)

    monkeypatch.setattr(CameraShake, "path", counted)
    model_path = str(tmp_path / "shake")
    common = ["-s", tiny_scene, "--blur", "motion", "--camera_shake", "--num_moments", "2", "--eval", "--hold", "4",
              "--iterations", "20", "--test_iterations", "20", "--checkpoint_interval", "10"] + SHORT_SCHEDULE
    train.main(["-m", model_path] + common)
    assert calls["count"] == 20
    render_cli.main(["-m", model_path, "--skip_train", "--fps_warmup", "0", "--fps_frames", "2"])
    assert calls["count"] == 20

    loaded = load_blur_model(model_path)
    assert isinstance(loaded, CameraShake) and loaded.num_moments == 2 and not loaded.training
    checkpoint = load_checkpoint(checkpoint_path(model_path, 20))
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint["blur"]["state_dict"][name], rtol=0, atol=0)
    assert not torch.equal(loaded.path_network[-1].weight, CameraShake(2).path_network[-1].weight)

    mlp_options = [option for option in common if option != "--camera_shake"] + ["--blur_model", "official"]
    with pytest.raises(SystemExit) as exit_info:
        train.main(["-m", model_path, "--resume"] + mlp_options)
    assert exit_info.value.code == 2 and "trained with --camera_shake, this run without it" in capsys.readouterr().err
    for other, difference in ((["--path_anchor", "mean"], "--path_anchor mid, not mean"),
                              (["--num_moments", "3"], "--num_moments 2, not 3")):
        with pytest.raises(SystemExit) as exit_info:
            train.main(["-m", model_path, "--resume"] + common + other)
        assert exit_info.value.code == 2 and f"trained with {difference}; resume with it" in capsys.readouterr().err


# ---- KNN augmentation ----


def clustered_model(seed=0, sh_degree=1):
    """Gaussians on a jittered grid in [0, 4]^3 with a gap along x in [2, 3] and distinct SH coefficients, plus
    far outliers on both sides of every axis."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(0.0, 4.01, 0.5)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = grid[(grid[:, 0] < 2.0) | (grid[:, 0] > 3.0)]
    grid += rng.normal(scale=0.02, size=grid.shape)
    outliers = np.concatenate([sign * 100.0 * np.eye(3)[axis][None].repeat(9, 0) for axis in range(3)
                               for sign in (-1.0, 1.0)])
    points = np.concatenate([grid, outliers])
    gaussians = GaussianModel(sh_degree)
    gaussians.create_from_pcd(SimpleNamespace(points=points, colors=rng.uniform(size=points.shape)), 1.0)
    with torch.no_grad():
        gaussians._features_rest.copy_(torch.tensor(rng.normal(size=gaussians._features_rest.shape)))
        gaussians._opacity.fill_(2.0)
        gaussians._scaling.fill_(-1.0)
    gaussians.training_setup(default_opt())
    gaussians.active_sh_degree = sh_degree
    return gaussians, points


def expected_colors(new_points, old_points, old_features, neighbours, max_distance, inverse):
    distances = np.linalg.norm(new_points[:, None] - old_points[None], axis=-1)
    nearest = np.argsort(distances, axis=1)[:, :neighbours]
    colors = []
    for row, indices in enumerate(nearest):
        near = distances[row, indices]
        indices, near = indices[near < max_distance], near[near < max_distance]
        weights = 1.0 / near if inverse else near
        colors.append(np.tensordot(weights / weights.sum(), old_features[indices], axes=1))
    return np.stack(colors)


@pytest.mark.parametrize("weighting", ["distance", "inverse_distance"])
def test_knn_augmentation_adds_coloured_points_and_resets_every_gaussian(weighting):
    gaussians, points = clustered_model()
    old_count = gaussians.num_points
    old_means = gaussians.get_xyz.detach().numpy().copy()
    old_features = gaussians.get_features.detach().numpy().astype(np.float64)
    torch.manual_seed(0)
    drawn, added = augment_points(gaussians, points, default_opt(), neighbours=4, max_distance=0.3, rate=0.2,
                                  max_points=3000, color_weighting=weighting)
    # The outliers make the full box huge: the count is capped.
    assert drawn == 3000
    # Points in the gap farther than 0.3 from the grid are dropped, the others kept.
    assert 0 < added < drawn and gaussians.num_points == old_count + added

    new_means = gaussians.get_xyz.detach().numpy()[old_count:]
    lower, upper = robust_bounds(points)
    np.testing.assert_allclose(lower, [0.0, 0.0, 0.0], atol=0.1)
    np.testing.assert_allclose(upper, [4.0, 4.0, 4.0], atol=0.1)
    assert np.all(new_means >= lower - 1e-6) and np.all(new_means <= upper + 1e-6)
    nearest_distance = np.linalg.norm(new_means[:, None] - old_means[None], axis=-1).min(axis=1)
    assert nearest_distance.max() < 0.3

    expected = expected_colors(new_means.astype(np.float64), old_means.astype(np.float64), old_features, 4, 0.3,
                               weighting == "inverse_distance")
    np.testing.assert_allclose(gaussians.get_features.detach().numpy()[old_count:], expected, rtol=1e-4, atol=1e-5)

    # The existing Gaussians keep position and colour; every Gaussian restarts from the initial shape.
    np.testing.assert_array_equal(gaussians.get_xyz.detach().numpy()[:old_count], old_means)
    np.testing.assert_array_equal(gaussians.get_features.detach().numpy()[:old_count], old_features.astype(np.float32))
    torch.testing.assert_close(gaussians.get_opacity, torch.full((gaussians.num_points, 1), 0.1))
    torch.testing.assert_close(gaussians.get_rotation, torch.tensor([[1.0, 0, 0, 0]]).expand(gaussians.num_points, 4))
    # The outliers coincide in groups of 9: their spacing is floored as at initialisation.
    spacing = np.sqrt(np.maximum(mean_squared_distance_to_neighbours(gaussians.get_xyz.detach().numpy()), 1e-7))
    np.testing.assert_allclose(gaussians.get_scaling.detach().numpy(), np.repeat(spacing[:, None], 3, axis=1),
                               rtol=1e-5)
    assert gaussians.active_sh_degree == 1

    # The new Gaussians are in a fresh optimizer, which trains them.
    groups = {group["name"]: group["params"][0] for group in gaussians.optimizer.param_groups}
    assert groups["xyz"] is gaussians._xyz and groups["f_rest"] is gaussians._features_rest
    assert all(tensor.shape[0] == gaussians.num_points for tensor in groups.values())
    assert not gaussians.optimizer.state
    gaussians.get_features.sum().backward()
    gaussians.optimizer.step()
    assert gaussians.optimizer.state[gaussians._features_dc]["exp_avg"].shape[0] == gaussians.num_points


def test_augmentation_count_is_the_box_volume_in_cells_capped():
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.5], [1.0, 2.0, 3.0]])
    assert augmentation_count(points, 0.5, 200_000) == 48
    assert augmentation_count(points * 1000, 0.5, 200_000) == 200_000


def test_knn_augmentation_rejects_unusable_points():
    gaussians, points = clustered_model()
    with pytest.raises(AugmentationError, match="non-finite"):
        augment_points(gaussians, np.where(np.arange(len(points))[:, None] == 3, np.nan, points), default_opt())
    with pytest.raises(AugmentationError, match=r"\(P, 3\)"):
        augment_points(gaussians, points[:, :2], default_opt())


# ---- depth-scaled pruning ----


def test_pruning_threshold_falls_monotonically_with_depth():
    depths = torch.tensor(np.random.default_rng(0).uniform(-3.0, 40.0, size=500), dtype=torch.float32)
    thresholds = depth_scaled_thresholds(depths, 0.01, 3.0)
    order = torch.argsort(depths)
    assert torch.all(thresholds[order][1:] <= thresholds[order][:-1])
    assert thresholds[order[0]] == pytest.approx(0.01)
    assert thresholds[order[-1]] == pytest.approx(0.01 / 3.0)
    torch.testing.assert_close(depth_scaled_thresholds(depths, 0.01, 1.0), torch.full_like(depths, 0.01))
    torch.testing.assert_close(depth_scaled_thresholds(torch.full((4,), 2.0), 0.01, 3.0), torch.full((4,), 0.01))
    with pytest.raises(ValueError, match="depth_range"):
        depth_scaled_thresholds(depths, 0.01, 0.5)


def test_far_faint_gaussians_survive_pruning_near_ones_do_not():
    gaussians = GaussianModel(0)
    points = np.array([[0.0, 0.0, z] for z in (1.0, 1.0, 10.0, 10.0, 5.5)])
    # Thresholds: 0.005 at z = 1, 0.0025 at z = 5.5, 0.005 / 3 at z = 10.
    gaussians.create_from_pcd(SimpleNamespace(points=points, colors=np.full((5, 3), 0.5)), 1.0)
    gaussians.training_setup(default_opt())
    opacities = torch.tensor([[0.004], [0.2], [0.004], [0.001], [0.004]])
    with torch.no_grad():
        gaussians._opacity.copy_(inverse_sigmoid(opacities))
    prune_by_depth_scaled_opacity(gaussians, 0.005, 3.0)
    np.testing.assert_allclose(gaussians.get_xyz.detach().numpy()[:, 2], [1.0, 10.0, 5.5])


# ---- presets and options ----


def test_presets_hold_the_official_per_dataset_settings():
    assert preset_names() == ["real_defocus", "real_motion", "synthetic_defocus", "synthetic_motion"]
    expected = {
        "real_defocus": dict(blur="defocus", densify_grad_threshold=2e-4, min_opacity=5e-3, lambda_s=0.01,
                             resolution=4),
        "real_motion": dict(blur="motion", densify_grad_threshold=5e-4, min_opacity=1e-2, lambda_s=0.01,
                            lambda_p=0.01, resolution=4),
        "synthetic_defocus": dict(blur="defocus", densify_grad_threshold=2e-4, min_opacity=5e-3, lambda_s=0.01,
                                  position_lr_init=4.8e-4, position_lr_final=4.8e-6, resolution=1),
        "synthetic_motion": dict(blur="motion", densify_grad_threshold=5e-4, min_opacity=1e-2, lambda_s=0.005,
                                 lambda_p=0.001, scaling_lr=0.015, resolution=1),
    }
    for name, values in expected.items():
        assert read_preset(name) == values


def parsed(argv):
    return train.options_from_command_line(argv).values


def test_preset_layers_and_command_line_overrides(tmp_path):
    source = ["-s", str(tmp_path), "--device", "cpu"]
    vanilla = parsed(source)
    assert (vanilla.blur, vanilla.iterations, vanilla.opacity_reset_interval) == ("none", 30_000, 3000)

    # The official blur model alone brings the official code's defaults.
    defocus = parsed(source + ["--blur", "defocus", "--blur_model", "official"])
    assert (defocus.iterations, defocus.position_lr_init, defocus.position_lr_max_steps) == (20_000, 0.0016, 30_000)
    assert (defocus.opacity_reset_interval, defocus.max_screen_size, defocus.lambda_s) == (0, 0, 0.01)
    assert (defocus.knn_iteration, defocus.knn_neighbours, defocus.depth_prune_range) == (2500, 4, 3.0)

    motion = parsed(source + ["--config", "synthetic_motion"])
    assert (motion.blur, motion.lambda_s, motion.lambda_p, motion.scaling_lr) == ("motion", 0.005, 0.001, 0.015)
    assert (motion.iterations, motion.densify_grad_threshold, motion.min_opacity) == (20_000, 5e-4, 1e-2)

    overridden = parsed(source + ["--lambda_p", "0.5", "--config", "synthetic_motion", "--iterations", "50",
                                  "--test_iterations", "10", "50"])
    assert (overridden.lambda_p, overridden.iterations, overridden.test_iterations) == (0.5, 50, [10, 50])
    assert overridden.scaling_lr == 0.015

    # The same recipe without blur modelling: the benchmark's vanilla baseline.
    baseline = parsed(source + ["--config", "synthetic_defocus", "--blur", "none"])
    assert (baseline.blur, baseline.iterations, baseline.position_lr_init) == ("none", 20_000, 4.8e-4)


def created_blur_model(argv):
    blur_args = train.options_from_command_line(argv).blur
    return create_blur_model(blur_args, torch.device("cpu"))[0]


def test_the_blur_models_defaults_are_written_as_they_are_typed(tmp_path):
    assert as_flags({"lens_blur": True, "knn_iteration": 0, "min_contribution": 1.0, "lambda_p": 0.03}) == (
        "--lens_blur --knn_iteration 0 --min_contribution 1 --lambda_p 0.03")
    motion = as_flags(BLUR_MODEL_DEFAULTS["camera"]["motion"])
    assert motion == "--camera_shake --lens_blur --linear_exposure --min_contribution 1"
    args = parsed(["-s", str(tmp_path), "--blur", "motion", "--blur_model", "official", *motion.split()])
    assert (args.camera_shake, args.lens_blur, args.linear_exposure, args.min_contribution) == (True, True, True, 1.0)


def test_blur_defocus_and_motion_train_the_camera_blur_models_by_default(tmp_path):
    source = ["-s", str(tmp_path), "--device", "cpu"]
    official_defocus = BlurModel("defocus").hyperparameters
    for choice in (["--blur", "defocus"], ["--config", "synthetic_defocus"], ["--config", "real_defocus"]):
        args = parsed(source + choice)
        assert (args.blur, args.blur_model, args.lens_blur, args.knn_iteration) == ("defocus", "camera", True, 0)
        assert (args.camera_shake, args.min_contribution) == (False, 0.0)
        lens = created_blur_model(source + choice)
        assert type(lens) is BlurModel and lens.mode == "defocus"
        # The official MLP's settings, with the thin lens, which renormalises the rotations it blurs.
        assert lens.hyperparameters == dict(official_defocus, lens_blur=True, normalize_rotations=True)
    for choice in (["--blur", "motion"], ["--config", "synthetic_motion"], ["--config", "real_motion"]):
        args = parsed(source + choice)
        assert (args.blur, args.blur_model, args.camera_shake, args.min_contribution) == ("motion", "camera", True, 1.0)
        assert args.lens_blur and args.linear_exposure and args.knn_iteration == 2500
        shake = created_blur_model(source + choice)
        assert type(shake) is CameraShake
        assert shake.hyperparameters == {"num_moments": 4, "camera_shake": True, "linear_exposure": True,
                                         "path_anchor": "mid", "lens_blur": True}

    # The presets' own values stay, and options typed on the command line win over the model's.
    motion = parsed(source + ["--config", "synthetic_motion", "--min_contribution", "0"])
    assert (motion.lambda_s, motion.lambda_p, motion.scaling_lr, motion.min_contribution) == (0.005, 0.001, 0.015, 0.0)
    defocus = parsed(source + ["--blur", "defocus", "--knn_iteration", "2500", "--lens_blur"])
    assert (defocus.lens_blur, defocus.knn_iteration) == (True, 2500)
    assert parsed(source + ["--blur", "motion", "--camera_shake", "--num_moments", "2"]).camera_shake
    lensless = created_blur_model(source + ["--blur_model", "official", "--blur", "motion", "--camera_shake"])
    assert type(lensless) is CameraShake and lensless.lens_network is None and not lensless.linear_exposure
    assert parsed(source + ["--config", "synthetic_defocus", "--blur", "none"]).min_contribution == 0.0


def test_blur_model_official_trains_the_paper_s_method(tmp_path):
    source = ["-s", str(tmp_path), "-m", str(tmp_path / "run"), "--device", "cpu", "--blur_model", "official"]
    defaults = vars(build_parser().parse_args([]))
    choices = [("defocus", None), ("motion", None)] + [(read_preset(name)["blur"], name) for name in preset_names()]
    for blur, preset in choices:
        argv = source + (["--config", preset] if preset else ["--blur", blur])
        # train.py's defaults under the official code's and the preset's, as before --blur_model existed.
        expected = {**defaults, **DEBLUR_TRAINING_DEFAULTS, **(read_preset(preset) if preset else {}), "blur": blur,
                    "config": preset, "blur_model": "official", "source_path": str(tmp_path),
                    "model_path": str(tmp_path / "run"), "device": "cpu"}
        expected["save_iterations"] = sorted(set(expected["save_iterations"]) | {expected["iterations"]})
        args = parsed(argv)
        assert vars(args) == expected
        assert (args.lens_blur, args.camera_shake) == (False, False)
        assert (args.knn_iteration, args.min_contribution) == (2500, 0.0)
        mlp = created_blur_model(argv)
        assert type(mlp) is BlurModel and not mlp.lens_blur
        assert mlp.hyperparameters == BlurModel(blur, lambda_s=args.lambda_s, lambda_p=args.lambda_p).hyperparameters

    # Options typed on the command line still win.
    pruned = parsed(source + ["--config", "synthetic_motion", "--min_contribution", "1"])
    assert (pruned.camera_shake, pruned.min_contribution) == (False, 1.0)
    assert created_blur_model(source + ["--blur", "defocus", "--lens_blur"]).lens_blur
    assert type(created_blur_model(source + ["--blur", "motion", "--camera_shake"])) is CameraShake


def test_compressed_schedules_keep_the_blur_model_s_choice_of_the_knn_augmentation(tmp_path):
    source = ["-s", str(tmp_path), "--device", "cpu"]
    # The official schedule compressed to 3000 iterations puts the KNN augmentation at 375.
    for options, knn_iteration in (
        (["--config", "synthetic_defocus"], 0),
        (["--config", "synthetic_defocus", "--blur_model", "official"], 375),
        (["--config", "synthetic_defocus", "--knn_iteration", "100"], 100),
        (["--config", "synthetic_motion"], 375),
    ):
        args = training_options(with_cpu_scale(explicit_options(source + options), 3000)).values
        assert (args.iterations, args.densify_until_iter, args.knn_iteration) == (3000, 2250, knn_iteration)
    # make demo trains the default model.
    demo_args = demo.demo_training_options(str(tmp_path), str(tmp_path / "demo"), 1500, seed=0).values
    assert (demo_args.blur_model, demo_args.lens_blur, demo_args.knn_iteration) == ("camera", True, 0)
    assert demo_args.densify_until_iter == 1125


def test_resuming_with_another_blur_model_names_the_difference(tiny_scene, tmp_path, capsys):
    common = ["-s", tiny_scene, "-m", str(tmp_path / "run"), "--blur", "defocus", "--iterations", "10",
              "--checkpoint_interval", "10"] + SHORT_SCHEDULE
    train.main(common + ["--blur_model", "official"])
    with pytest.raises(SystemExit) as exit_info:
        train.main(common + ["--resume"])
    assert exit_info.value.code == 2 and "trained without --lens_blur, this run with it" in capsys.readouterr().err


def expect_parse_error(argv, capsys, *fragments):
    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in message


@pytest.mark.parametrize("content, fragments", [
    ({"blur": "gaussian"}, ["--blur", "gaussian"]),
    ({"iterations": "many"}, ["--iterations", "many"]),
    ({"learning_rate": 0.1}, ["'learning_rate' is not an option"]),
    ({"model_path": "elsewhere"}, ["'model_path' is not an option"]),
    ([1, 2], ["JSON object"]),
])
def test_bad_presets_are_named_in_the_error(tmp_path, capsys, content, fragments):
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps(content))
    expect_parse_error(["-s", str(tmp_path), "--config", str(preset)], capsys, "mine.json", *fragments)


def test_unknown_preset_and_bad_blur_options(tmp_path, capsys):
    expect_parse_error(["-s", str(tmp_path), "--config", "sharp_dreams"], capsys, "sharp_dreams", "real_defocus")
    (tmp_path / "broken.json").write_text("{")
    expect_parse_error(["-s", str(tmp_path), "--config", str(tmp_path / "broken.json")], capsys, "broken.json")
    expect_parse_error(["-s", str(tmp_path), "--blur", "defocus", "--lambda_s", "0"], capsys, "--lambda_s")
    expect_parse_error(["-s", str(tmp_path), "--blur", "motion", "--num_moments", "0"], capsys, "--num_moments")
    expect_parse_error(["-s", str(tmp_path), "--blur", "defocus", "--max_clamp", "nan"], capsys, "--max_clamp")
    expect_parse_error(["-s", str(tmp_path), "--blur", "defocus", "--depth_prune_range", "0.5"], capsys,
                       "--depth_prune_range")
    expect_parse_error(["-s", str(tmp_path), "--blur", "motion", "--blur_model", "official", "--lens_blur"], capsys,
                       "--lens_blur needs --blur defocus, or --blur motion with --camera_shake")
    expect_parse_error(["-s", str(tmp_path), "--blur", "defocus", "--camera_shake"], capsys,
                       "--camera_shake needs --blur motion")
    expect_parse_error(["-s", str(tmp_path), "--blur", "defocus", "--linear_exposure"], capsys,
                       "--linear_exposure needs --camera_shake")
    expect_parse_error(["-s", str(tmp_path), "--blur", "motion", "--blur_model", "official", "--linear_exposure"],
                       capsys, "--linear_exposure needs --camera_shake")
    expect_parse_error(["-s", str(tmp_path), "--blur", "motion", "--blur_model", "official", "--path_anchor", "mean"],
                       capsys, "--path_anchor needs --camera_shake")
    expect_parse_error(["-s", str(tmp_path), "--blur", "motion", "--path_anchor", "end"], capsys, "--path_anchor",
                       "end")


def test_scaled_schedule_compresses_the_official_one():
    schedule = scaled_schedule(2000)
    assert schedule == dict(iterations=2000, densify_from_iter=50, densify_until_iter=1500, knn_iteration=250,
                            sh_degree_interval=100, position_lr_max_steps=3000)
    assert scaled_schedule(20_000) == dict(iterations=20_000, densify_from_iter=500, densify_until_iter=15_000,
                                           knn_iteration=2500, sh_degree_interval=1000, position_lr_max_steps=30_000)


# ---- training, saving and resuming ----


def count_mlp_calls(monkeypatch):
    calls = {"count": 0}
    original = BlurModel.forward

    def counted(self, *args):
        calls["count"] += 1
        return original(self, *args)

    monkeypatch.setattr(BlurModel, "forward", counted)
    return calls


def test_the_mlp_runs_once_per_training_step_and_never_at_test_time(tiny_scene, tmp_path, monkeypatch):
    calls = count_mlp_calls(monkeypatch)
    model_path = str(tmp_path / "run")
    train.main(["-s", tiny_scene, "-m", model_path, "--blur", "defocus", "--blur_model", "official", "--eval",
                "--hold", "4", "--iterations", "20", "--test_iterations", "0", "10", "20", "--checkpoint_interval", "0"]
               + SHORT_SCHEDULE)
    # Three evaluations rendered the two test views; only the 20 training steps ran the MLP.
    assert calls["count"] == 20
    assert all(os.path.isfile(os.path.join(model_path, f"results_{i}.json")) for i in (0, 10, 20))
    render_cli.main(["-m", model_path, "--skip_train", "--fps_warmup", "0", "--fps_frames", "2"])
    assert len(os.listdir(os.path.join(model_path, "test", "ours_20", "renders"))) == 2
    assert calls["count"] == 20


def test_the_blur_model_is_saved_with_each_point_cloud(tiny_scene, tmp_path):
    model_path = str(tmp_path / "motion")
    train.main(["-s", tiny_scene, "-m", model_path, "--blur", "motion", "--blur_model", "official",
                "--num_moments", "2", "--iterations", "30", "--save_iterations", "10", "--checkpoint_iterations", "30",
                "--checkpoint_interval", "0"] + SHORT_SCHEDULE)
    for iteration in (10, 30):
        path = blur_model_path(model_path, iteration)
        assert os.path.dirname(path) == os.path.dirname(point_cloud_path(model_path, iteration))
        state = torch.load(path, weights_only=True)
        assert state["mode"] == "motion" and state["hyperparameters"]["num_moments"] == 2
    loaded = load_blur_model(model_path)
    assert loaded.mode == "motion" and loaded.num_moments == 2 and not loaded.training
    checkpoint = load_checkpoint(checkpoint_path(model_path, 30))
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint["blur"]["state_dict"][name], rtol=0, atol=0)
    assert checkpoint["blur"]["optimizer"]["state"], "the MLP's Adam moments are checkpointed"
    earlier = load_blur_model(model_path, iteration=10)
    assert not torch.equal(earlier.scale_head.weight, loaded.scale_head.weight)

    with pytest.raises(BlurModelError, match="iteration 20"):
        load_blur_model(model_path, iteration=20)
    os.remove(blur_model_path(model_path, 30))
    with pytest.raises(BlurModelError, match="trained with --blur motion"):
        load_blur_model(model_path)
    with pytest.raises(BlurModelError, match="no point_cloud"):
        load_blur_model(str(tmp_path / "nothing"))

    vanilla_path = str(tmp_path / "vanilla")
    train.main(["-s", tiny_scene, "-m", vanilla_path, "--iterations", "5", "--checkpoint_interval", "0"]
               + SHORT_SCHEDULE)
    assert load_blur_model(vanilla_path) is None


def test_resume_restores_the_blur_model_and_its_optimizer(tiny_scene, tmp_path, monkeypatch, caplog, capsys):
    common = ["-s", tiny_scene, "--blur", "motion", "--blur_model", "official", "--num_moments", "2", "--iterations",
              "40", "--checkpoint_interval", "20", "--save_iterations", "40", "--seed", "5"] + SHORT_SCHEDULE
    uninterrupted = str(tmp_path / "uninterrupted")
    resumed = str(tmp_path / "resumed")
    train.main(["-m", uninterrupted] + common)

    # One rasterizer call renders an iteration's three moments: the run dies in iteration 30, after the checkpoint
    # of iteration 20 and the KNN augmentation of iteration 25, which the resumed run repeats.
    renders = {"count": 0}

    def interrupted_render(*args, **kwargs):
        renders["count"] += 1
        if renders["count"] == 29 + 1:
            raise KeyboardInterrupt
        return render_moments(*args, **kwargs)

    monkeypatch.setattr(training.blur_model, "render_moments", interrupted_render)
    with pytest.raises(KeyboardInterrupt):
        train.main(["-m", resumed] + common)
    monkeypatch.undo()
    assert checkpoint_iterations_in(resumed) == [20]
    caplog.clear()
    caplog.set_level(logging.INFO)
    train.main(["-m", resumed, "--resume"] + common)
    assert "KNN augmentation" in caplog.text

    reference, continued = GaussianModel(1), GaussianModel(1)
    reference.load_ply(point_cloud_path(uninterrupted, 40))
    continued.load_ply(point_cloud_path(resumed, 40))
    assert continued.num_points == reference.num_points
    for name in reference.param_names:
        torch.testing.assert_close(continued.raw_parameter(name), reference.raw_parameter(name), rtol=0, atol=1e-5)
    reference_mlp, continued_mlp = load_blur_model(uninterrupted), load_blur_model(resumed)
    for name, tensor in reference_mlp.state_dict().items():
        torch.testing.assert_close(continued_mlp.state_dict()[name], tensor, rtol=0, atol=1e-5)

    with pytest.raises(SystemExit) as exit_info:
        train.main(["-m", resumed, "--resume", "-s", tiny_scene, "--blur", "none"] + SHORT_SCHEDULE)
    assert exit_info.value.code == 2 and "trained with --blur motion, not --blur none" in capsys.readouterr().err
