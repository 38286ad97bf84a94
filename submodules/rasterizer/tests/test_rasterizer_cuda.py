"""The CUDA backend against the CPU backend; skipped where no GPU is present."""
import math
import re

import pytest
import torch

from gaussian_rasterizer import available_backends, rasterize_gaussians
from gaussian_rasterizer.checks import check_inputs
from gaussian_rasterizer.rasterize import _cpu, _cuda
from scenes import random_scene, render_with_grads
from test_rasterizer_batch import PER_CAMERA_CASES, batched_scene, render_batch, render_one_by_one
from test_rasterizer_cpu import (
    CASES,
    NON_FINITE_NAMES,
    args_with_a_non_finite_entry,
    assert_forward_close,
    assert_gradients_close,
    edge_scenes,
    faint_gaussian_tiles,
    largest_finite_args,
)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif("cuda" not in available_backends(), reason="needs a GPU and the CUDA backend")]


def to_cuda(scene):
    moved = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in scene.items()}
    cam = scene["camera"]
    moved["camera"] = type(cam)(cam.world_to_camera.cuda(), cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height,
                                cam.near, cam.far)
    return moved


def on_cpu(out, grads):
    return (type(out)(**{k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in vars(out).items()}),
            {k: v.cpu() for k, v in grads.items()})


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_cuda_matches_cpu(seed, case):
    scene = random_scene(seed, **case)
    cpu, cpu_grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    out, grads = on_cpu(*render_with_grads(rasterize_gaussians, to_cuda(scene), "cuda"))
    assert_forward_close(out, cpu)
    assert_gradients_close(grads, cpu_grads)
    assert torch.allclose(out.means2d_absgrad, cpu.means2d_absgrad)


@pytest.mark.parametrize("name", list(edge_scenes()))
def test_cuda_edge_cases(name):
    scene = edge_scenes()[name]
    cpu, cpu_grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    out, grads = on_cpu(*render_with_grads(rasterize_gaussians, to_cuda(scene), "cuda"))
    assert_forward_close(out, cpu)
    assert_gradients_close(grads, cpu_grads)


def test_cuda_large_scene_matches_cpu():
    scene = random_scene(0, n=20_000, width=320, height=240, sh_degree=3)
    scene["scales"] = scene["scales"] * 0.3
    cpu, cpu_grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    out, grads = on_cpu(*render_with_grads(rasterize_gaussians, to_cuda(scene), "cuda"))
    assert_forward_close(out, cpu)
    assert_gradients_close(grads, cpu_grads, rtol=5e-3)


def test_cuda_nan_input_is_a_value_error():
    scene = to_cuda(random_scene(0, n=5))
    scene["means"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="means"):
        rasterize_gaussians(backend="cuda", **{k: v for k, v in scene.items() if k != "background"})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", NON_FINITE_NAMES)
def test_cuda_non_finite_entry_names_its_tensor(name, value):
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} contains NaN or Inf"):
        rasterize_gaussians(backend="cuda", **args_with_a_non_finite_entry(name, value, "cuda"))


def test_cuda_the_largest_finite_values_pass_the_finiteness_check():
    assert check_inputs(background=None, features=None, **largest_finite_args("cuda")) == 3


def test_cuda_bins_faint_gaussians_to_their_alpha_boxes_like_the_cpu():
    box_tiles, square_tiles = faint_gaussian_tiles("cuda", _cuda, "cuda")
    cpu_box_tiles, _ = faint_gaussian_tiles("cpu", _cpu)
    assert box_tiles < 0.9 * square_tiles
    # A box's half-widths are whole pixels rounded up from float32 arithmetic, which nvcc contracts into fused
    # multiply-adds: a half-width that lands on a whole number can round up on one device only and move that
    # Gaussian's count by one row or column of tiles.
    assert abs(box_tiles - cpu_box_tiles) <= 0.02 * cpu_box_tiles


def batch_to_cuda(scene):
    moved = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in scene.items()}
    moved["cameras"] = [to_cuda({"camera": camera})["camera"] for camera in scene["cameras"]]
    return moved


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", PER_CAMERA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_cuda_batch_matches_single_calls(seed, case):
    scene = batch_to_cuda(batched_scene(seed, **case))
    batched, batched_grads, weights = render_batch(scene, "cuda")
    singles, single_grads = render_one_by_one(scene, "cuda", weights)
    # The forward pass does each camera's arithmetic as its own call does; gradients are summed with atomics in
    # an order that changes from run to run, so they agree to float32 rounding of sums over a tile's pixels.
    for name in ("image", "depth", "alpha", "radii"):
        assert torch.equal(getattr(batched, name), torch.stack([getattr(out, name) for out in singles])), name
    for part, single in zip(batched.unbind(), singles):
        assert_gradients_close({"means2d": part.means2d.grad}, {"means2d": single.means2d.grad}, rtol=1e-5)
    assert_gradients_close(batched_grads, single_grads, rtol=1e-5)


def test_cuda_batch_matches_the_cpu_batch():
    scene = batched_scene(5, per_camera=("means", "rotations"), sh_degree=3)
    cpu, cpu_grads, _ = render_batch(scene, "cpu")
    out, grads, _ = render_batch(batch_to_cuda(scene), "cuda")
    for gpu_part, cpu_part in zip(out.unbind(), cpu.unbind()):
        assert_forward_close(on_cpu(gpu_part, {})[0], cpu_part)
    assert_gradients_close({k: v.cpu() for k, v in grads.items()}, cpu_grads)
