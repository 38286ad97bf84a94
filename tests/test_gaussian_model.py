import math
from argparse import Namespace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from numpy.lib.recfunctions import repack_fields
from plyfile import PlyData, PlyElement

from arguments import OptimizationParams
from scene.gaussian_model import GaussianModel, PlyFormatError, get_expon_lr_func, inverse_sigmoid, sh_to_rgb
from utils.geometry import quaternion_to_rotation_matrix


def default_opt(**overrides):
    opt = OptimizationParams.extract(Namespace())
    for name, value in overrides.items():
        setattr(opt, name, value)
    return opt


def random_point_cloud(count, seed=0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        points=rng.normal(size=(count, 3)).astype(np.float32), colors=rng.uniform(size=(count, 3)).astype(np.float32)
    )


def random_model(count=50, sh_degree=3, seed=0):
    """A model whose every raw parameter holds distinct random values."""
    model = GaussianModel(sh_degree)
    model.create_from_pcd(random_point_cloud(count, seed), spatial_lr_scale=2.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in model.param_names:
            parameter = getattr(model, model.attribute_of[name])
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
    return model


def take_adam_steps(model, steps=3):
    for _ in range(steps):
        loss = sum((getattr(model, model.attribute_of[name]) ** 2).sum() for name in model.param_names)
        loss.backward()
        model.optimizer.step()
        model.optimizer.zero_grad(set_to_none=True)


def test_ply_round_trip_preserves_every_parameter(tmp_path):
    model = random_model()
    model.save_ply(tmp_path / "point_cloud.ply")
    loaded = GaussianModel(sh_degree=0)
    loaded.load_ply(tmp_path / "point_cloud.ply")
    assert loaded.max_sh_degree == 3 and loaded.active_sh_degree == 3
    for name in model.param_names:
        assert torch.equal(loaded.raw_parameter(name), model.raw_parameter(name)), name


def test_ply_uses_the_standard_attribute_layout(tmp_path):
    model = random_model(count=5)
    model.save_ply(tmp_path / "point_cloud.ply")
    vertex = PlyData.read(tmp_path / "point_cloud.ply")["vertex"]
    expected = (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(45)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )
    assert list(vertex.data.dtype.names) == expected
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in expected)
    # Channel-major: the 15 higher-order coefficients of red come first, then green, then blue.
    rest = model._features_rest.detach().numpy()
    for channel in range(3):
        for coefficient in range(15):
            np.testing.assert_array_equal(vertex[f"f_rest_{channel * 15 + coefficient}"], rest[:, coefficient, channel])
    np.testing.assert_array_equal(vertex["opacity"], model._opacity.detach().numpy()[:, 0])
    np.testing.assert_array_equal(vertex["scale_1"], model._scaling.detach().numpy()[:, 1])
    np.testing.assert_array_equal(vertex["rot_0"], model._rotation.detach().numpy()[:, 0])


def test_ply_round_trip_at_degree_one(tmp_path):
    model = random_model(count=7, sh_degree=1)
    model.save_ply(tmp_path / "degree1.ply")
    loaded = GaussianModel(sh_degree=3)
    loaded.load_ply(tmp_path / "degree1.ply")
    assert loaded.max_sh_degree == 1
    assert loaded.get_features.shape == (7, 4, 3)
    assert torch.equal(loaded.get_features, model.get_features.detach())


def test_ply_errors_name_the_file(tmp_path):
    with pytest.raises(PlyFormatError, match="missing.ply"):
        GaussianModel(3).load_ply(tmp_path / "missing.ply")

    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"this is not a ply file")
    with pytest.raises(PlyFormatError, match="garbage.ply"):
        GaussianModel(3).load_ply(garbage)

    model = random_model(count=3, sh_degree=1)
    model.save_ply(tmp_path / "good.ply")
    vertex = PlyData.read(tmp_path / "good.ply")["vertex"].data
    without_one_coefficient = [name for name in vertex.dtype.names if name != "f_rest_8"]
    truncated = tmp_path / "truncated.ply"
    PlyData([PlyElement.describe(repack_fields(vertex[without_one_coefficient]), "vertex")]).write(truncated)
    with pytest.raises(PlyFormatError, match="truncated.ply.*f_rest"):
        GaussianModel(3).load_ply(truncated)


def test_initialisation_from_points():
    cloud = random_point_cloud(40, seed=3)
    model = GaussianModel(sh_degree=3)
    model.create_from_pcd(cloud, spatial_lr_scale=5.0)

    points = cloud.points.astype(np.float64)
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    expected_scale = np.sqrt(np.sort(squared, axis=1)[:, :3].mean(axis=1))
    scales = model.get_scaling.detach().numpy()
    np.testing.assert_allclose(scales, np.repeat(expected_scale[:, None], 3, axis=1), rtol=1e-5)

    np.testing.assert_allclose(sh_to_rgb(model._features_dc[:, 0]).detach().numpy(), cloud.colors, atol=1e-6)
    assert torch.all(model._features_rest == 0)
    np.testing.assert_allclose(model.get_opacity.detach().numpy(), 0.1, rtol=1e-6)
    assert torch.equal(model.get_rotation, torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(40, 4))
    assert model.active_sh_degree == 0 and model.spatial_lr_scale == 5.0


def test_initialisation_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least 2"):
        GaussianModel(3).create_from_pcd(random_point_cloud(1), spatial_lr_scale=1.0)


def test_sh_degree_grows_one_step_at_a_time_up_to_the_maximum():
    model = GaussianModel(sh_degree=2)
    degrees = []
    for _ in range(4):
        model.oneup_sh_degree()
        degrees.append(model.active_sh_degree)
    assert degrees == [1, 2, 2, 2]


def test_position_learning_rate_schedule():
    schedule = get_expon_lr_func(1.6e-4, 1.6e-6, max_steps=30_000)
    assert schedule(0) == pytest.approx(1.6e-4, rel=1e-12)
    assert schedule(15_000) == pytest.approx(math.sqrt(1.6e-4 * 1.6e-6), rel=1e-12)
    assert schedule(30_000) == pytest.approx(1.6e-6, rel=1e-12)
    assert schedule(60_000) == pytest.approx(1.6e-6, rel=1e-12)

    warming_up = get_expon_lr_func(1.6e-4, 1.6e-6, lr_delay_steps=100, lr_delay_mult=0.01, max_steps=30_000)
    assert warming_up(0) == pytest.approx(0.01 * 1.6e-4, rel=1e-12)
    assert warming_up(50) == pytest.approx((0.01 + 0.99 * math.sin(math.pi / 4)) * schedule(50), rel=1e-12)
    assert warming_up(100) == pytest.approx(schedule(100), rel=1e-12)

    model = random_model(count=10)
    model.training_setup(default_opt(iterations=20_000))
    rates = {group["name"]: group["lr"] for group in model.optimizer.param_groups}
    assert rates == pytest.approx(
        {"xyz": 3.2e-4, "f_dc": 2.5e-3, "f_rest": 1.25e-4, "opacity": 0.05, "scaling": 5e-3, "rotation": 1e-3}
    )
    assert model.optimizer.defaults["eps"] == 1e-15
    # position_lr_max_steps 0 follows --iterations; the rate scales with the scene extent (2.0 here).
    assert model.update_learning_rate(20_000) == pytest.approx(2.0 * 1.6e-6, rel=1e-12)
    assert model.update_learning_rate(10_000) == pytest.approx(2.0 * math.sqrt(1.6e-4 * 1.6e-6), rel=1e-12)
    assert {group["name"]: group["lr"] for group in model.optimizer.param_groups}["xyz"] == pytest.approx(
        2.0 * math.sqrt(1.6e-4 * 1.6e-6), rel=1e-12
    )


def crafted_model(scene_extent):
    """Four Gaussians: small with a large gradient, large with a large gradient, nearly transparent,
    and small with a small gradient."""
    model = GaussianModel(sh_degree=0)
    cloud = SimpleNamespace(
        points=np.array([[0, 0, 0], [5, 0, 0], [0, 5, 0], [0, 0, 5]], dtype=np.float32),
        colors=np.full((4, 3), 0.5, dtype=np.float32),
    )
    model.create_from_pcd(cloud, spatial_lr_scale=scene_extent)
    small = 0.001 * scene_extent
    large = 0.05 * scene_extent
    with torch.no_grad():
        model._scaling.copy_(torch.log(torch.tensor([[small] * 3, [large, small, small], [small] * 3, [small] * 3])))
        model._rotation.copy_(torch.tensor([[1.0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], [1, 0, 0, 0]]))
        model._opacity.copy_(inverse_sigmoid(torch.tensor([[0.5], [0.5], [0.001], [0.5]])))
    model.training_setup(default_opt())
    return model


def test_densification_statistics_are_in_ndc_units_and_skip_invisible_gaussians():
    model = crafted_model(scene_extent=1.0)
    width, height = 64, 48
    pixel_grad = torch.tensor([[1e-5, 0.0], [0.0, 2e-5], [3e-5, 4e-5], [1.0, 1.0]])
    radii = torch.tensor([3, 4, 5, 0], dtype=torch.int32)
    model.add_densification_stats(pixel_grad, radii, width, height)
    model.add_densification_stats(pixel_grad, radii, width, height)
    expected = torch.tensor([1e-5 * 32, 2e-5 * 24, math.hypot(3e-5 * 32, 4e-5 * 24), 0.0])
    torch.testing.assert_close(model.xyz_gradient_accum[:, 0], 2 * expected)
    assert model.denom[:, 0].tolist() == [2, 2, 2, 0]
    assert model.max_radii2D.tolist() == [3, 4, 5, 0]


def test_densify_clones_small_splits_large_and_prunes_transparent():
    torch.manual_seed(0)
    extent = 2.0
    model = crafted_model(scene_extent=extent)
    take_adam_steps(model, steps=1)
    before = {name: model.raw_parameter(name).clone() for name in model.param_names}
    moments_before = {
        group["name"]: model.optimizer.state[group["params"][0]]["exp_avg"].clone()
        for group in model.optimizer.param_groups
    }
    # Per-view NDC gradient norms: above the 2e-4 threshold for the first three, below it for the last.
    model.xyz_gradient_accum = torch.tensor([[6e-4], [6e-4], [6e-4], [1e-4]])
    model.denom = torch.tensor([[2.0], [2.0], [2.0], [2.0]])

    model.densify_and_prune(grad_threshold=2e-4, min_opacity=0.005, scene_extent=extent)

    # Original 0 and 3 kept, a clone of 0 appended, 1 replaced by two halves, 2 pruned.
    assert model.num_points == 5
    xyz = model.get_xyz.detach()
    assert torch.equal(xyz[0], before["xyz"][0]) and torch.equal(xyz[1], before["xyz"][3])
    for name in model.param_names:
        assert torch.equal(model.raw_parameter(name)[2], before[name][0]), name
    children_scaling = model.get_scaling.detach()[3:]
    torch.testing.assert_close(children_scaling, torch.exp(before["scaling"][1]).expand(2, 3) / 1.6)
    # The children are sampled inside the parent: along its long (rotated x) axis mostly.
    parent_axis = quaternion_to_rotation_matrix(torch.nn.functional.normalize(before["rotation"][1:2], dim=-1))[0][:, 0]
    offsets = xyz[3:] - before["xyz"][1]
    along = offsets @ parent_axis
    across = torch.linalg.norm(offsets - along[:, None] * parent_axis, dim=1)
    assert torch.all(across < 5 * 0.001 * extent)
    assert torch.all(torch.abs(along) < 5 * 0.05 * extent)

    # Adam moments follow their Gaussians; new ones start from zero.
    for group in model.optimizer.param_groups:
        parameter = group["params"][0]
        state = model.optimizer.state[parameter]
        assert state["exp_avg"].shape == parameter.shape
        assert torch.equal(state["exp_avg"][:2], moments_before[group["name"]][[0, 3]])
        assert torch.all(state["exp_avg"][2:] == 0)
    assert model.xyz_gradient_accum.shape == (5, 1) and torch.all(model.xyz_gradient_accum == 0)
    assert model.max_radii2D.shape == (5,)


def test_max_screen_size_prunes_gaussians_too_big_on_screen():
    model = crafted_model(scene_extent=1.0)
    model.max_radii2D = torch.tensor([30.0, 5.0, 5.0, 5.0])
    model.densify_and_prune(grad_threshold=1.0, min_opacity=0.005, scene_extent=1.0, max_screen_size=20)
    # Gaussian 0 is too wide on screen, 2 too transparent; nothing is large in the world (0.05 < 0.1 extent).
    assert model.num_points == 2
    torch.testing.assert_close(model.get_xyz.detach(), torch.tensor([[5.0, 0, 0], [0, 0, 5.0]]))


def test_opacity_reset_clamps_and_forgets_moments():
    model = crafted_model(scene_extent=1.0)
    take_adam_steps(model)
    opacity_before = model.get_opacity.detach().clone()
    xyz_moment_before = model.optimizer.state[model._xyz]["exp_avg"].clone()
    model.reset_opacity()
    expected = torch.minimum(opacity_before, torch.tensor(0.01))
    torch.testing.assert_close(model.get_opacity.detach(), expected, rtol=1e-5, atol=0)
    assert opacity_before[2] < 0.01 and opacity_before[0] > 0.01
    state = model.optimizer.state[model._opacity]
    assert torch.all(state["exp_avg"] == 0) and torch.all(state["exp_avg_sq"] == 0)
    assert torch.equal(model.optimizer.state[model._xyz]["exp_avg"], xyz_moment_before)
    assert xyz_moment_before.abs().sum() > 0


def test_capture_and_restore_continue_identically():
    opt = default_opt()
    model = random_model(count=20)
    model.training_setup(opt)
    take_adam_steps(model)
    model.oneup_sh_degree()
    model.xyz_gradient_accum += 0.5
    state = model.capture()

    restored = GaussianModel(sh_degree=3)
    restored.restore(state, opt)
    assert restored.active_sh_degree == 1 and restored.spatial_lr_scale == 2.0
    assert torch.equal(restored.xyz_gradient_accum, model.xyz_gradient_accum)
    take_adam_steps(model, steps=2)
    take_adam_steps(restored, steps=2)
    for name in model.param_names:
        assert torch.equal(restored.raw_parameter(name), model.raw_parameter(name)), name

    with pytest.raises(ValueError, match="SH degree"):
        GaussianModel(sh_degree=1).restore(state, opt)
