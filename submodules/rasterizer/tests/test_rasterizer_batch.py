"""One call for several cameras against one call per camera, and the batched call's own errors."""
import pytest
import torch

from gaussian_rasterizer import Camera, rasterize_gaussians
from gaussian_rasterizer import rasterize as rasterize_module
from scenes import DIFFERENTIABLE, look_at_camera, random_scene

# Channels of the inputs that fit one per camera; the others are shared by the cameras.
PER_CAMERA_CASES = [
    dict(per_camera=()),
    dict(per_camera=("means", "rotations")),
    dict(per_camera=("means", "scales", "rotations", "opacities", "sh_coeffs")),
    dict(per_camera=("means", "features"), channels=5),
    dict(per_camera=("scales",), sh_degree=3, width=33, height=70),
]
PER_GAUSSIAN_DIMS = {"means": 2, "scales": 2, "rotations": 2, "opacities": 2, "sh_coeffs": 3, "features": 2}


def batched_scene(seed, cameras=3, per_camera=(), **case):
    """random_scene seen by several cameras of different poses, the inputs named in per_camera differing slightly
    from camera to camera (as the moments of a motion-blurred exposure do)."""
    scene = random_scene(seed, **case)
    g = torch.Generator().manual_seed(seed + 100)
    for name in per_camera:
        value = scene[name]
        jitter = 1 + 0.1 * torch.rand((cameras, *value.shape), generator=g)
        scene[name] = value[None] * jitter if name != "means" else value[None] + 0.1 * (jitter - 1)
    base = scene["camera"]
    scene["cameras"] = [
        look_at_camera(base.width, base.height, yaw=0.05 * c - 0.05, translation=(0.1 * c, -0.2, 0.3 - 0.1 * c))
        for c in range(cameras)
    ]
    del scene["camera"]
    return scene


def leaves_of(scene):
    leaves = {k: scene[k].detach().clone().requires_grad_(True) for k in DIFFERENTIABLE if k in scene}
    poses = [cam.world_to_camera.detach().clone().requires_grad_(True) for cam in scene["cameras"]]
    cameras = [Camera(pose, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, cam.near, cam.far)
               for pose, cam in zip(poses, scene["cameras"])]
    return leaves, poses, cameras


def upstream(out, seed=1):
    """Fixed random upstream gradients of image, depth and alpha, one set per camera."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g).to(t) for t in (out.image, out.depth, out.alpha)]


def render_batch(scene, backend):
    leaves, poses, cameras = leaves_of(scene)
    out = rasterize_gaussians(camera=cameras, sh_degree=scene.get("sh_degree", 0), backend=backend, **leaves)
    weights = upstream(out)
    sum((t * w).sum() for t, w in zip((out.image, out.depth, out.alpha), weights)).backward()
    grads = {k: v.grad for k, v in leaves.items()}
    grads["world_to_camera"] = torch.stack([pose.grad for pose in poses])
    return out, grads, weights


def render_one_by_one(scene, backend, weights):
    """The same renders and loss as render_batch, one call per camera."""
    leaves, poses, cameras = leaves_of(scene)
    outputs = []
    for c, camera in enumerate(cameras):
        inputs = {k: v[c] if v.dim() > PER_GAUSSIAN_DIMS.get(k, 1) else v for k, v in leaves.items()}
        out = rasterize_gaussians(camera=camera, sh_degree=scene.get("sh_degree", 0), backend=backend, **inputs)
        sum((t * w[c]).sum() for t, w in zip((out.image, out.depth, out.alpha), weights)).backward()
        outputs.append(out)
    grads = {k: v.grad for k, v in leaves.items()}
    grads["world_to_camera"] = torch.stack([pose.grad for pose in poses])
    return outputs, grads


def assert_batch_matches_single_calls(batched, batched_grads, singles, single_grads):
    """Each camera's part of the batched call is its own call: the stages do the same arithmetic for it. Only
    gradients of inputs that cameras share are summed in another order (over the cameras), a few float32 ulp of
    their largest entry."""
    for name in ("image", "depth", "alpha", "radii"):
        expected = torch.stack([getattr(out, name) for out in singles])
        assert getattr(batched, name).shape == expected.shape, name
        assert torch.equal(getattr(batched, name), expected), name
    for c, (part, single) in enumerate(zip(batched.unbind(), singles)):
        torch.testing.assert_close(part.means2d, single.means2d, rtol=0, atol=0)
        torch.testing.assert_close(part.means2d.grad, single.means2d.grad, rtol=0, atol=0)
        torch.testing.assert_close(batched.means2d.grad[c], single.means2d.grad, rtol=0, atol=0)
        torch.testing.assert_close(part.means2d_absgrad.grad, single.means2d_absgrad.grad, rtol=0, atol=0)
    for name, expected in single_grads.items():
        got = batched_grads[name]
        assert got.shape == expected.shape, name
        scale = expected.abs().max().item()
        assert scale > 0, name
        assert (got - expected).abs().max().item() <= 1e-6 * scale, name


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", PER_CAMERA_CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_batch_matches_single_calls_on_the_cpu(seed, case):
    scene = batched_scene(seed, **case)
    batched, batched_grads, weights = render_batch(scene, "cpu")
    singles, single_grads = render_one_by_one(scene, "cpu", weights)
    assert (batched.radii > 0).sum() > 30, "the scene should be mostly visible"
    assert_batch_matches_single_calls(batched, batched_grads, singles, single_grads)


def test_batched_reference_matches_the_cpu_batch():
    scene = batched_scene(4, per_camera=("means", "scales"), sh_degree=1)
    cpu, cpu_grads, _ = render_batch(scene, "cpu")
    ref, ref_grads, _ = render_batch(scene, "reference")
    assert torch.equal(cpu.radii, ref.radii)
    assert (cpu.image - ref.image).abs().max() <= 1e-5
    assert (cpu.alpha - ref.alpha).abs().max() <= 1e-5
    for name, expected in ref_grads.items():
        assert (cpu_grads[name] - expected).abs().max() <= 1e-3 * expected.abs().max(), name
    for cpu_part, ref_part in zip(cpu.unbind(), ref.unbind()):
        expected = ref_part.means2d.grad
        assert (cpu_part.means2d.grad - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_a_list_of_one_camera_is_a_batch_of_one():
    scene = random_scene(2)
    args = {k: scene[k] for k in ("means", "scales", "rotations", "opacities", "sh_coeffs", "sh_degree")}
    single = rasterize_gaussians(camera=scene["camera"], **args)
    batch = rasterize_gaussians(camera=[scene["camera"]], **args)
    assert batch.image.shape == (1, *single.image.shape) and batch.radii.shape == (1, *single.radii.shape)
    assert torch.equal(batch.image[0], single.image) and torch.equal(batch.depth[0], single.depth)
    assert batch.means2d.shape == (1, *single.means2d.shape)


def test_without_grad_a_batch_renders_and_unbinds():
    scene = batched_scene(1, per_camera=("means",))
    leaves, _, cameras = leaves_of(scene)
    with torch.no_grad():
        out = rasterize_gaussians(camera=cameras, sh_degree=2, **leaves)
    assert [part.image.shape for part in out.unbind()] == [out.image.shape[1:]] * 3


def good_batch():
    scene = batched_scene(0, per_camera=("means",))
    args = {k: scene[k] for k in ("means", "scales", "rotations", "opacities", "sh_coeffs", "sh_degree")}
    return args, scene["cameras"]


def replaced(camera, **changes):
    fields = dict(world_to_camera=camera.world_to_camera, fx=camera.fx, fy=camera.fy, cx=camera.cx, cy=camera.cy,
                  width=camera.width, height=camera.height, near=camera.near, far=camera.far)
    fields.update(changes)
    return Camera(**fields)


@pytest.mark.parametrize("field, value", [("width", 46), ("height", 30), ("fx", 10.0), ("cy", 3.0), ("far", 50.0)])
def test_the_cameras_of_one_call_differ_in_their_pose_alone(field, value):
    args, cameras = good_batch()
    cameras[2] = replaced(cameras[2], **{field: value})
    with pytest.raises(ValueError, match=rf"camera\[2\]\.{field} is .* but camera\[0\]\.{field}"):
        rasterize_gaussians(camera=cameras, **args)


def test_bad_batches_name_the_argument():
    args, cameras = good_batch()
    with pytest.raises(ValueError, match="camera must hold at least one Camera"):
        rasterize_gaussians(camera=[], **args)
    with pytest.raises(ValueError, match=r"camera\[1\]\.fy must be"):
        rasterize_gaussians(camera=[cameras[0], replaced(cameras[1], fy=-1.0), cameras[2]], **args)
    with pytest.raises(ValueError, match=r"camera\[1\] must be a gaussian_rasterizer.Camera"):
        rasterize_gaussians(camera=[cameras[0], "camera", cameras[2]], **args)
    with pytest.raises(ValueError, match=r"means must have shape \(2, \*, 3\)"):
        rasterize_gaussians(camera=cameras[:2], **args)
    with pytest.raises(ValueError, match=r"scales must have shape \(3, 40, 3\)"):
        rasterize_gaussians(camera=cameras, **dict(args, scales=args["scales"].expand(2, 40, 3)))
    pose = cameras[1].world_to_camera.clone()
    pose[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^camera\[1\]\.world_to_camera contains NaN or Inf"):
        rasterize_gaussians(camera=[cameras[0], replaced(cameras[1], world_to_camera=pose), cameras[2]], **args)


@pytest.mark.parametrize("limit, message", [("MAX_ROWS", "Gaussians exceed the 100 rows"),
                                            ("MAX_TILES", "tiles, over the 20 that the sort keys can number")])
def test_a_batch_beyond_the_index_range_is_a_clear_error(monkeypatch, limit, message):
    # 3 cameras x 40 Gaussians are 120 rows, 3 x 3 x 3 tiles are 27: both fit the real limits of 2^31.
    monkeypatch.setattr(rasterize_module, limit, {"MAX_ROWS": 100, "MAX_TILES": 20}[limit])
    args, cameras = good_batch()
    with pytest.raises(ValueError, match=message):
        rasterize_gaussians(camera=cameras, backend="cpu", **args)
