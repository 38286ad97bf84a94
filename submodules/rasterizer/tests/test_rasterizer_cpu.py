"""The CPU backend against the pure-torch reference, edge cases and errors."""
import math
import re

import pytest
import torch

from gaussian_rasterizer import (
    Camera,
    DeferredFiniteCheck,
    RasterOutput,
    TilePairOverflowError,
    project_gaussians,
    rasterize_gaussians,
    reference,
)
from gaussian_rasterizer.checks import check_inputs
from gaussian_rasterizer.rasterize import BYTES_PER_TILE_PAIR, TILE_SIZE, _cpu, _expected_depth
from gaussian_rasterizer.reference import blend_tile
from scenes import DIFFERENTIABLE, look_at_camera, random_scene, render_with_grads

# float32 sums of a few dozen terms of order 1: a few ulp at most.
FORWARD_ATOL = 1e-5
# Relative to the largest gradient entry of each tensor.
GRADIENT_RTOL = 1e-3


def assert_gradients_close(actual, expected, rtol=GRADIENT_RTOL):
    for name, ref in expected.items():
        got = actual[name]
        assert got is not None and ref is not None, name
        assert got.shape == ref.shape, name
        if ref.numel() == 0:
            continue
        scale = ref.abs().max().item()
        err = (got - ref).abs().max().item()
        assert err <= rtol * max(scale, 1e-8), f"{name}: max error {err:.3e} vs max gradient {scale:.3e}"


def assert_forward_close(out, ref):
    assert torch.equal(out.radii, ref.radii)
    assert (out.image - ref.image).abs().max() <= FORWARD_ATOL
    assert (out.alpha - ref.alpha).abs().max() <= FORWARD_ATOL
    # Depth is of order 5 here, so its float32 rounding is larger.
    depth_scale = max(1.0, ref.depth.abs().max().item())
    assert (out.depth - ref.depth).abs().max() <= FORWARD_ATOL * depth_scale


CASES = [
    dict(sh_degree=0), dict(sh_degree=1), dict(sh_degree=2), dict(sh_degree=3),
    dict(channels=1), dict(channels=5), dict(sh_degree=3, width=16, height=16), dict(sh_degree=1, width=33, height=70),
]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_cpu_matches_reference(seed, case):
    scene = random_scene(seed, **case)
    ref, ref_grads = render_with_grads(rasterize_gaussians, scene, "reference")
    out, grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    assert (ref.radii > 0).sum() > 10, "the scene should be mostly visible"
    assert_forward_close(out, ref)
    assert_gradients_close(grads, ref_grads)


@pytest.mark.parametrize("normalize", [False, True])
def test_cpu_matches_reference_with_unnormalised_quaternions(normalize):
    scene = random_scene(7)
    scene["rotations"] = scene["rotations"] * (0.5 + torch.rand(scene["rotations"].shape[0], 1))
    ref, ref_grads = render_with_grads(rasterize_gaussians, scene, "reference", normalize_rotations=normalize)
    out, grads = render_with_grads(rasterize_gaussians, scene, "cpu", normalize_rotations=normalize)
    assert_forward_close(out, ref)
    assert_gradients_close(grads, ref_grads)


def test_quaternions_are_used_as_given_unless_normalised():
    scene = random_scene(3)
    unit = scene["rotations"] / scene["rotations"].norm(dim=1, keepdim=True)
    args = {k: scene[k] for k in ("means", "scales", "opacities", "sh_coeffs", "sh_degree", "camera")}
    sharp = rasterize_gaussians(rotations=unit, **args).image
    grown = rasterize_gaussians(rotations=unit * 1.05, **args).image
    normalised = rasterize_gaussians(rotations=unit * 1.05, normalize_rotations=True, **args).image
    assert (grown - sharp).abs().max() > 1e-3
    assert (normalised - sharp).abs().max() < 1e-5


def test_dense_scene_reaches_the_transmittance_floor():
    # Many opaque Gaussians stacked in depth: pixels must stop early, identically in both.
    scene = random_scene(11, n=150)
    scene["opacities"] = torch.full_like(scene["opacities"], 0.95)
    scene["scales"] = scene["scales"] + 0.4
    ref, ref_grads = render_with_grads(rasterize_gaussians, scene, "reference")
    out, grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    assert out.alpha.max() > 1 - 2e-4
    assert_forward_close(out, ref)
    assert_gradients_close(grads, ref_grads)


def test_absolute_mean2d_gradient_sums_per_pixel_magnitudes():
    scene = random_scene(5, n=6, width=12, height=10)
    out, grads = render_with_grads(rasterize_gaussians, scene, "cpu")
    absgrad = out.means2d_absgrad.grad
    assert (absgrad >= grads["means2d"].abs() - 1e-6).all()

    # Per-pixel gradients from the reference, one pixel at a time.
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(t.shape, generator=g) for t in (out.image, out.depth, out.alpha)]
    expected = torch.zeros_like(absgrad)
    for y in range(10):
        for x in range(12):
            ref = rasterize_gaussians(backend="reference", **dict(scene, means=scene["means"].requires_grad_()))
            pixel_loss = ((ref.image[:, y, x] * upstream[0][:, y, x]).sum() + ref.depth[y, x] * upstream[1][y, x]
                          + ref.alpha[y, x] * upstream[2][y, x])
            pixel_loss.backward()
            expected += ref.means2d.grad.abs()
    assert torch.allclose(absgrad, expected, rtol=1e-3, atol=1e-6)


def test_cpu_gradients_are_reproducible():
    scene = random_scene(2, n=200, width=70, height=50)
    _, first = render_with_grads(rasterize_gaussians, scene, "cpu")
    _, second = render_with_grads(rasterize_gaussians, scene, "cpu")
    for name in first:
        assert torch.equal(first[name], second[name]), name


# ---------------------------------------------------------------------------
# Edge cases: each must render finite outputs with finite gradients.

def edge_scenes():
    empty = random_scene(0, n=0)
    behind = random_scene(1)
    behind["means"] = behind["means"] * torch.tensor([1.0, 1.0, -1.0])
    covering = random_scene(2, n=1, width=40, height=30)
    covering["means"] = torch.tensor([[0.0, 0.0, 4.0]])
    covering["scales"] = torch.full((1, 3), 50.0)
    covering["opacities"] = torch.full((1, 1), 0.7)
    # A standard deviation of about 1e9 pixels: its 3-sigma radius overflows int32.
    beyond_int32 = dict(covering, scales=torch.full((1, 3), 1.2e8))
    one_pixel = random_scene(3, width=1, height=1)
    odd = random_scene(4, width=17, height=33)
    return {"no Gaussians": empty, "all behind": behind, "covers image": covering,
            "3-sigma radius beyond int32": beyond_int32, "1x1 image": one_pixel, "17x33 image": odd}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("name", list(edge_scenes()))
def test_edge_cases(name, backend):
    scene = edge_scenes()[name]
    out, grads = render_with_grads(rasterize_gaussians, scene, backend)
    cam = scene["camera"]
    assert out.image.shape == (3, cam.height, cam.width)
    for t in (out.image, out.depth, out.alpha, *grads.values()):
        assert torch.isfinite(t).all()
    if name in ("no Gaussians", "all behind"):
        assert torch.allclose(out.image, scene["background"][:, None, None].expand_as(out.image))
        assert (out.alpha == 0).all() and (out.radii == 0).all()
    if name in ("covers image", "3-sigma radius beyond int32"):
        assert torch.allclose(out.alpha, torch.full_like(out.alpha, 0.7), atol=1e-3)


def test_edge_cases_agree_between_backends():
    for name, scene in edge_scenes().items():
        ref, ref_grads = render_with_grads(rasterize_gaussians, scene, "reference")
        out, grads = render_with_grads(rasterize_gaussians, scene, "cpu")
        assert_forward_close(out, ref)
        assert_gradients_close(grads, ref_grads)


# Inputs where a rule of the backends, not rounding, decides: the reference must apply the same rule.
DEGENERACIES = {
    "zero quaternion": lambda scene, i: scene["rotations"][i].zero_(),
    "zero scales": lambda scene, i: scene["scales"][i].zero_(),
    "at the camera centre": lambda scene, i: scene["means"][i].zero_(),
    "transparent": lambda scene, i: scene["opacities"][i].zero_(),
    "no SH": lambda scene, i: scene["sh_coeffs"][i].zero_(),
}


def degenerate_scene(seed):
    """A small scene, seen from the origin, where about half the Gaussians are degenerate."""
    generator = torch.Generator().manual_seed(seed)
    scene = random_scene(seed, n=8, width=20, height=16, sh_degree=seed % 4)
    scene["camera"] = look_at_camera(20, 16, yaw=0.2, translation=(0.0, 0.0, 0.0))
    kinds = list(DEGENERACIES.values())
    for i in range(8):
        pick = int(torch.randint(2 * len(kinds), (1,), generator=generator))
        if pick < len(kinds):
            kinds[pick](scene, i)
    return scene


def reference_in_float64(backend, camera, **inputs):
    """The reference rasterizer as rasterize_gaussians returns it, on float64 copies of the inputs."""
    assert backend == "reference"
    camera = Camera(camera.world_to_camera.double(), camera.fx, camera.fy, camera.cx, camera.cy, camera.width,
                    camera.height, camera.near, camera.far)
    inputs = {name: value.double() if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
    image, weighted_depth, final_t, radii, means2d = reference.rasterize_reference(camera=camera, **inputs)
    means2d.retain_grad()
    alpha = 1 - final_t
    return RasterOutput(image, _expected_depth(weighted_depth, alpha), alpha, radii, means2d, None)


@pytest.mark.parametrize("seed", range(12))
def test_reference_follows_the_cpu_backend_on_degenerate_inputs(seed):
    scene = degenerate_scene(seed)
    normalize = seed % 2 == 1
    out, grads = render_with_grads(rasterize_gaussians, scene, "cpu", normalize_rotations=normalize)
    ref, ref_grads = render_with_grads(reference_in_float64, scene, "reference", normalize_rotations=normalize)
    for name, gradient in grads.items():
        assert torch.isfinite(gradient).all() and torch.isfinite(ref_grads[name]).all(), name
    assert_forward_close(out, ref)
    assert_gradients_close(grads, ref_grads)


def test_too_many_tile_pairs_is_a_clear_error():
    n = 10_000
    camera = look_at_camera(8192, 8192)
    with pytest.raises(TilePairOverflowError, match="pairs"):
        rasterize_gaussians(torch.zeros(n, 3) + torch.tensor([0, 0, 4.0]), torch.full((n, 3), 20.0),
                            torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), torch.full((n, 1), 0.5), camera,
                            features=torch.ones(n, 1))


@pytest.mark.parametrize("limit", ["pairs", "memory"])
def test_a_tile_pair_overflow_names_the_inputs_that_set_the_count(limit, monkeypatch):
    """Either limit, lowered to the pairs of one view of a small scene, stops a render that needs more before
    anything is sorted, with an error that names the Gaussians, the cameras and their size; at the limit itself
    the view renders."""
    n, width, height = 50, 64, 48
    gaussians = dict(means=torch.zeros(n, 3) + torch.tensor([0, 0, 4.0]), scales=torch.full((n, 3), 20.0),
                     rotations=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1), opacities=torch.full((n, 1), 0.5),
                     features=torch.ones(n, 1), backend="cpu")
    camera = look_at_camera(width, height)
    # Every Gaussian is far wider than the image: it covers every tile.
    pairs_per_view = n * math.ceil(width / TILE_SIZE) * math.ceil(height / TILE_SIZE)

    def set_limit(pairs):
        if limit == "pairs":
            monkeypatch.setattr("gaussian_rasterizer.rasterize.MAX_TILE_PAIRS", pairs)
        else:
            monkeypatch.setattr("gaussian_rasterizer.rasterize.free_bytes",
                                lambda device: pairs * BYTES_PER_TILE_PAIR["cpu"])

    set_limit(pairs_per_view - 1)
    for cameras, views, pairs in ((camera, "1 camera", pairs_per_view), ([camera] * 3, "3 cameras",
                                                                          3 * pairs_per_view)):
        with pytest.raises(TilePairOverflowError) as raised:
            rasterize_gaussians(camera=cameras, **gaussians)
        message = str(raised.value)
        assert f"{n} Gaussians seen by {views} of {width}x{height} pixels cover {pairs:,} (Gaussian, tile) pairs" \
            in message
        assert "(camera.width, camera.height)" in message and "(means, scales)" in message
    set_limit(pairs_per_view)
    assert rasterize_gaussians(camera=camera, **gaussians).image.shape == (1, height, width)


# ---------------------------------------------------------------------------
# Bad input: a ValueError that names the argument.

def good_args():
    scene = random_scene(0, n=5, width=8, height=8)
    return {k: scene[k] for k in ("means", "scales", "rotations", "opacities", "sh_coeffs", "sh_degree", "camera")}


def with_camera(**changes):
    cam = good_args()["camera"]
    fields = dict(world_to_camera=cam.world_to_camera, fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, width=cam.width,
                  height=cam.height, near=cam.near, far=cam.far)
    fields.update(changes)
    return Camera(**fields)


BAD_INPUTS = {
    "means": ("means", torch.zeros(5, 2)),
    "scales": ("scales", torch.zeros(4, 3)),
    "rotations": ("rotations", torch.zeros(5, 4, dtype=torch.float64)),
    "opacities": ("opacities", torch.zeros(5)),
    "sh_coeffs": ("sh_coeffs", torch.zeros(5, 4, 3)),
    "nan": ("means", torch.full((5, 3), math.nan)),
    "inf": ("scales", torch.full((5, 3), math.inf)),
    "device": ("scales", torch.zeros(5, 3, device="meta")),
    "list": ("means", [[0.0, 0.0, 1.0]] * 5),
    "sh_degree": ("sh_degree", 4),
    "camera.width": ("camera", with_camera(width=0)),
    "camera.height": ("camera", with_camera(height=-3)),
    "camera.fx": ("camera", with_camera(fx=0.0)),
    "camera.near": ("camera", with_camera(near=-1.0)),
    "camera.far": ("camera", with_camera(far=0.001)),
    "camera.world_to_camera": ("camera", with_camera(world_to_camera=torch.eye(3))),
    "camera.cx": ("camera", with_camera(cx=math.nan)),
}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_argument(case, backend):
    key, value = BAD_INPUTS[case]
    args = good_args()
    args[key] = value
    expected = case.split(".")[0] if case in ("nan", "inf", "device", "list") else case
    expected = {"nan": "means", "inf": "scales", "device": "scales", "list": "means"}.get(case, expected)
    with pytest.raises(ValueError, match=expected.replace(".", r"\.")):
        rasterize_gaussians(backend=backend, **args)


# Each too large for the kernels' int32 indices, or for the memory of any machine (8 TiB of buffers).
HUGE_IMAGES = {
    "width": (dict(width=2**31), r"^camera\.width must be at most"),
    "height": (dict(height=2**31 + 5), r"^camera\.height must be at most"),
    "tiles": (dict(width=2**20, height=2**20), r"^camera\.width x camera\.height .* tiles"),
    "buffers": (dict(width=2**19, height=2**19), r"^camera\.width x camera\.height .* GiB of image buffers"),
}


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("case", list(HUGE_IMAGES))
def test_image_size_is_checked_before_any_allocation(case, backend):
    changes, message = HUGE_IMAGES[case]
    with pytest.raises(ValueError, match=message):
        rasterize_gaussians(backend=backend, **dict(good_args(), camera=with_camera(**changes)))


NON_FINITE_NAMES = ["means", "scales", "rotations", "opacities", "sh_coeffs", "background", "features",
                    "camera.world_to_camera"]


def args_with_a_non_finite_entry(name, value, device="cpu"):
    """good_args() on device, with a background, and value in the last entry of the tensor called name."""
    args = {key: arg.to(device) if isinstance(arg, torch.Tensor) else arg for key, arg in good_args().items()}
    args["background"] = torch.zeros(3, device=device)
    if name == "features":
        args.pop("sh_coeffs")
        args["features"] = torch.ones(5, 3, device=device)
    pose = args["camera"].world_to_camera.to(device, copy=True)
    if name == "camera.world_to_camera":
        pose[1, 2] = value
    else:
        args[name] = args[name].clone()
        args[name].view(-1)[-1] = value
    args["camera"] = with_camera(world_to_camera=pose)
    return args


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", NON_FINITE_NAMES)
def test_a_non_finite_entry_names_its_tensor(name, value):
    with pytest.raises(ValueError, match=rf"^{re.escape(name)} contains NaN or Inf"):
        rasterize_gaussians(backend="cpu", **args_with_a_non_finite_entry(name, value))


def largest_finite_args(device="cpu"):
    """good_args() on device, its SH coefficients all at the largest float32: summed in float32, they would
    overflow to Inf."""
    args = {key: arg.to(device) if isinstance(arg, torch.Tensor) else arg for key, arg in good_args().items()}
    args["sh_coeffs"] = torch.full_like(args["sh_coeffs"], torch.finfo(torch.float32).max)
    args["camera"] = with_camera(world_to_camera=args["camera"].world_to_camera.to(device))
    return args


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_a_deferred_finite_check_keeps_its_verdict_until_read(backend):
    args = good_args()
    with_nan = dict(args, opacities=args["opacities"].clone())
    with_nan["opacities"][2, 0] = math.nan
    check = DeferredFiniteCheck()
    with check:
        rasterize_gaussians(backend=backend, **args)
    assert check.all_finite.dtype == torch.bool and bool(check.all_finite)
    with check:
        image = rasterize_gaussians(backend=backend, **with_nan).image
        rasterize_gaussians(backend=backend, **args)
    assert image.shape == (3, 8, 8)
    assert not bool(check.all_finite), "one call with a NaN input makes the verdict of the check false"
    check.clear()
    assert check.all_finite is None
    # Outside the block, a direct call still stops at once.
    with pytest.raises(ValueError, match=r"^opacities contains NaN or Inf"):
        rasterize_gaussians(backend=backend, **with_nan)


def test_the_largest_finite_values_pass_the_finiteness_check():
    assert check_inputs(background=None, features=None, **largest_finite_args()) == 3


def faint_gaussian(generator):
    """One anisotropic Gaussian of opacity under 0.3, whose alpha falls under 1/255 inside its 3-sigma disc."""
    return {
        "means": torch.randn(1, 3, generator=generator, dtype=torch.float64) * 0.3 + torch.tensor([0.0, 0.0, 4.0],
                                                                                               dtype=torch.float64),
        "scales": torch.rand(1, 3, generator=generator, dtype=torch.float64) * 0.4 + 0.01,
        "rotations": torch.randn(1, 4, generator=generator, dtype=torch.float64),
        "opacities": torch.rand(1, 1, generator=generator, dtype=torch.float64) * 0.29 + 0.01,
    }


def faint_gaussian_tiles(backend, native, device="cpu"):
    """Renders 100 faint Gaussians one at a time with backend, checking that each pixel clearly above alpha 1/255
    renders and none clearly below. Returns the tiles that native's preprocess binned them to and the tiles of
    their 3-sigma squares, each summed over the Gaussians."""
    generator = torch.Generator().manual_seed(5)
    camera64 = look_at_camera(64, 48, dtype=torch.float64)
    camera = look_at_camera(64, 48)
    camera = Camera(camera.world_to_camera.to(device), camera.fx, camera.fy, camera.cx, camera.cy, camera.width,
                    camera.height, camera.near, camera.far)
    ys, xs = torch.meshgrid(torch.arange(48, dtype=torch.float64) + 0.5, torch.arange(64, dtype=torch.float64) + 0.5,
                            indexing="ij")
    box_tiles = square_tiles = 0
    for _ in range(100):
        gaussian = faint_gaussian(generator)
        _, means2d, cov2d, _ = project_gaussians(gaussian["means"], gaussian["scales"], gaussian["rotations"],
                                                 camera64, False)
        conic = torch.linalg.inv(cov2d[0])
        d = torch.stack([xs - means2d[0, 0], ys - means2d[0, 1]], dim=-1)
        power = -0.5 * torch.einsum("hwi,ij,hwj->hw", d, conic, d)
        alpha = gaussian["opacities"][0, 0] * torch.exp(power)

        float32 = {name: value.float().to(device) for name, value in gaussian.items()}
        rendered = rasterize_gaussians(**float32, camera=camera, features=torch.ones(1, 1, device=device),
                                       backend=backend)
        assert rendered.radii[0] > 0
        reached = rendered.image[0].double().cpu()
        assert torch.all(reached[alpha > 1.05 * reference.MIN_ALPHA] > 0)
        assert torch.all(reached[alpha < 0.95 * reference.MIN_ALPHA] == 0)

        _, _, _, _, _, tiles_touched, _ = native.preprocess_forward(
            float32["means"], float32["scales"], float32["rotations"], float32["opacities"].view(-1),
            float32["means"].new_empty(0), camera.world_to_camera, camera.fx, camera.fy, camera.cx, camera.cy,
            camera.width, camera.height, camera.near, camera.far, 0, False)
        square_min, square_max = reference.tile_rects(rendered.means2d.detach().cpu(),
                                                      rendered.radii.float().cpu()[:, None], 4, 3)
        box_tiles += int(tiles_touched[0])
        square_tiles += int((square_max - square_min).prod())
        assert box_tiles <= square_tiles
    return box_tiles, square_tiles


def test_tiles_of_a_faint_gaussian_hold_every_pixel_it_reaches():
    """Binning uses the box where alpha can reach 1/255: each pixel clearly above that renders, and faint
    Gaussians are binned to fewer tiles than their 3-sigma discs touch."""
    box_tiles, square_tiles = faint_gaussian_tiles("cpu", _cpu)
    # 929 against 1102 tiles with this seed, on an image only 4 x 3 tiles large.
    assert box_tiles < 0.9 * square_tiles


def test_colour_source_must_be_exactly_one():
    args = good_args()
    with pytest.raises(ValueError, match="exactly one"):
        rasterize_gaussians(features=torch.ones(5, 2), **args)
    args.pop("sh_coeffs")
    with pytest.raises(ValueError, match="exactly one"):
        rasterize_gaussians(**args)
    with pytest.raises(ValueError, match="background"):
        rasterize_gaussians(features=torch.ones(5, 2), background=torch.zeros(3), **args)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        rasterize_gaussians(backend="vulkan", **good_args())


def test_blend_of_nothing_is_background():
    color, depth, final_t = blend_tile(torch.zeros(4, 2), torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0),
                                       torch.zeros(0, 3), torch.zeros(0), torch.tensor([0.2, 0.4, 0.6]))
    assert torch.allclose(color, torch.tensor([0.2, 0.4, 0.6]).expand(4, 3)) and (final_t == 1).all()
    assert (depth == 0).all()


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("colour", ["sh", "features"])
def test_the_gradient_tests_differentiate_every_tensor_input(colour, backend):
    """render_with_grads, which the gradient comparisons use, makes a leaf of each input that DIFFERENTIABLE
    lists: every tensor a scene passes to the rasterizer must be among them and get a gradient, so that no
    input's gradient goes unchecked."""
    scene = random_scene(0, channels=None if colour == "sh" else 2)
    _, grads = render_with_grads(rasterize_gaussians, scene, backend)
    tensors = {name for name, value in scene.items() if isinstance(value, torch.Tensor)}
    assert tensors <= set(DIFFERENTIABLE)
    for name in tensors | {"world_to_camera"}:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name


def needle_gaussian(generator):
    """One long, thin Gaussian (1 to 3 units long, a few thousandths thick) at depth about 5, in float64."""
    length = torch.rand(1, generator=generator, dtype=torch.float64) + 1.0
    thickness = torch.rand(2, generator=generator, dtype=torch.float64) * 0.004 + 0.001
    return {
        "means": torch.randn(1, 3, generator=generator, dtype=torch.float64) * 0.3 + torch.tensor(
            [0.0, 0.0, 5.0], dtype=torch.float64),
        "scales": torch.cat([length, thickness])[torch.randperm(3, generator=generator)][None],
        "rotations": torch.randn(1, 4, generator=generator, dtype=torch.float64),
        "opacities": torch.rand(1, 1, generator=generator, dtype=torch.float64) * 0.5 + 0.4,
        "features": torch.rand(1, 3, generator=generator, dtype=torch.float64),
    }


def test_needle_gradients_match_the_float64_reference():
    """Scale and rotation gradients of needle-thin Gaussians, in float32, against the reference in float64. A
    needle's 2D covariance has eigenvalues of about 1e3 to 1e4 and 0.3 (the low-pass): the textbook inverse VJP
    -Q dQ Q then lost up to 1e-2 of relative accuracy, where float32 rounding of the conic costs about 1e-4."""
    generator = torch.Generator().manual_seed(0)
    camera, camera64 = look_at_camera(64, 48), look_at_camera(64, 48, dtype=torch.float64)
    worst = {"scales": 0.0, "rotations": 0.0}
    tested = 0
    for _ in range(48):
        needle = needle_gaussian(generator)
        upstream = torch.randn(3, 48, 64, generator=generator, dtype=torch.float64)
        images, grads = {}, {}
        for backend, cam, dtype in (("cpu", camera, torch.float32), ("reference", camera64, torch.float64)):
            leaves = {name: value.detach().to(dtype).requires_grad_(True) for name, value in needle.items()}
            if backend == "cpu":
                images[backend] = rasterize_gaussians(camera=cam, backend=backend, **leaves).image
            else:  # the float64 oracle, past the float32-only argument checks
                images[backend] = reference.rasterize_reference(camera=cam, **leaves)[0]
            (images[backend] * upstream.to(dtype)).sum().backward()
            grads[backend] = {name: leaves[name].grad.double() for name in worst}
        # Where float32 rounding already moves the image (a pixel crossing the 1/255 cutoff, or the conic of a
        # needle hundreds of pixels long), no gradient can be accurate: only needles rendered faithfully count.
        if (images["cpu"].double() - images["reference"].detach()).abs().max() > 2e-5:
            continue
        tested += 1
        for name in worst:
            expected = grads["reference"][name]
            error = ((grads["cpu"][name] - expected).abs().max() / expected.abs().max()).item()
            worst[name] = max(worst[name], error)
    assert tested >= 24
    assert worst["scales"] < 3e-3 and worst["rotations"] < 3e-3, worst
