import json
import math
import os

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

import metrics
from metrics import (
    LPIPS,
    MetricsError,
    evaluate_images,
    psnr,
    psnr_per_channel,
    ssim,
    ssim_map,
    ssim_skimage,
    write_results,
)


def random_image(seed, height=48, width=64):
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def signed_noise(seed, shape, amplitude):
    """Noise of exactly +-amplitude: its mean square is amplitude ** 2."""
    signs = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return amplitude * signs.double()


# ---- PSNR ----

def test_psnr_of_known_noise():
    gt = torch.full((3, 40, 50), 0.5, dtype=torch.float64)
    noisy = gt + signed_noise(0, gt.shape, 0.1)
    # MSE 0.01 in every channel: 20 dB under both protocols.
    assert float(psnr(noisy, gt)) == pytest.approx(20.0, abs=1e-9)
    assert float(psnr_per_channel(noisy, gt)) == pytest.approx(20.0, abs=1e-9)


def test_psnr_protocols_differ_when_channel_errors_differ():
    gt = torch.full((3, 40, 50), 0.5, dtype=torch.float64)
    amplitudes = torch.tensor([0.1, 0.01, 0.01], dtype=torch.float64).view(3, 1, 1)
    noisy = gt + signed_noise(1, gt.shape, 1.0) * amplitudes
    # Per channel: 20, 40 and 40 dB, mean 33.33; globally MSE (1e-2 + 2e-4) / 3 gives 24.68 dB.
    assert float(psnr_per_channel(noisy, gt)) == pytest.approx(100.0 / 3.0, abs=1e-9)
    assert float(psnr(noisy, gt)) == pytest.approx(10 * math.log10(3 / 0.0102), abs=1e-9)


# ---- SSIM ----

def test_ssim_of_identical_images_is_one():
    image = random_image(0)
    assert float(ssim(image, image)) == pytest.approx(1.0, abs=1e-12)
    assert ssim_skimage(image, image) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_independent_gaussian_ssim():
    """Away from the borders (where we zero-pad like 3DGS), our SSIM map is Wang et al.'s SSIM with an 11x11
    Gaussian window, sigma 1.5, as scikit-image computes it (its truncation at 3.5 sigma gives 11 taps)."""
    image = random_image(1)
    other = (image + 0.2 * random_image(2)).clamp(0, 1)
    reference = structural_similarity(
        image.permute(1, 2, 0).numpy(), other.permute(1, 2, 0).numpy(), channel_axis=-1, data_range=1.0,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    ours = ssim_map(image, other)[:, 5:-5, 5:-5].mean()
    assert float(ours) == pytest.approx(reference, abs=1e-10)


def test_ssim_protocols_differ_on_blur():
    """A blurred copy of a texture, the case deblurring papers score: the 7x7 uniform window and the 11x11
    Gaussian window weigh the lost detail differently (0.35 against 0.29 here), so the protocols do not mix."""
    image = random_image(3)
    blurred = torch.from_numpy(cv2.GaussianBlur(image.permute(1, 2, 0).numpy(), (0, 0), 1.0)).permute(2, 0, 1)
    assert float(ssim(image, blurred)) - ssim_skimage(image, blurred) > 0.02


def test_ssim_is_differentiable_and_batched():
    image = random_image(5).float().requires_grad_()
    target = random_image(6).float()
    (1 - ssim(image, target)).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
    batch = torch.stack([image.detach(), target])
    assert ssim_map(batch, batch).shape == batch.shape


def ssim_map_by_autograd(img1, img2):
    """SSIM written as its formula, every operation recorded by autograd: what the hand-written gradient of
    metrics.ssim_map must equal."""
    profile = metrics.gaussian_profile(11, 1.5, img1)
    window = torch.outer(profile, profile).expand(img1.shape[1], 1, 11, 11)

    def blur(image):
        return torch.nn.functional.conv2d(image, window, padding=5, groups=img1.shape[1])

    mu1, mu2 = blur(img1), blur(img2)
    variance1, variance2 = blur(img1 * img1) - mu1 * mu1, blur(img2 * img2) - mu2 * mu2
    covariance = blur(img1 * img2) - mu1 * mu2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu1 * mu2 + c1) * (2 * covariance + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (variance1 + variance2 + c2))


@pytest.mark.slow
def test_ssim_gradient_is_the_gradient_of_its_formula():
    image = random_image(7, 13, 15)[None]
    other = (image + 0.3 * random_image(8, 13, 15)[None]).clamp(0, 1)
    # Both inputs, each alone, and a weighting of the pixels that is not uniform, in float64.
    for needs_grad in ((True, True), (True, False), (False, True)):
        inputs = [tensor.clone().requires_grad_(needed) for tensor, needed in zip((image, other), needs_grad)]
        assert torch.autograd.gradcheck(lambda a, b: ssim_map(a, b) * torch.linspace(0, 1, 15, dtype=a.dtype),
                                        inputs)
    # In float32, at a training image's size, against autograd through the formula.
    image, other = random_image(9, 120, 160).float(), random_image(10, 120, 160).float()
    ours, formula = image.clone().requires_grad_(), image.clone().requires_grad_()
    value = ssim(ours, other)
    reference = ssim_map_by_autograd(formula[None], other[None]).mean()
    value.backward()
    reference.backward()
    # Forward and gradient sum the formula's terms in float32 in another order (on the CPU in the fused native
    # kernel), each pixel's from a few hundred float32 products.
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    scale = float(formula.grad.abs().max())
    torch.testing.assert_close(ours.grad, formula.grad, rtol=1e-4, atol=1e-4 * scale)


def test_fused_ssim_is_the_unfused_ssim(monkeypatch):
    """Float32 on the CPU takes the native fused SSIM; the torch version (CUDA's) must give the same map and
    gradients, for each input that needs one."""
    assert metrics.fused_ssim_available(torch.zeros(1)), "the CPU extension is not built"
    image, other = random_image(11, 60, 80).float()[None], random_image(12, 60, 80).float()[None]
    weights = torch.rand(image.shape, generator=torch.Generator().manual_seed(13))
    results = {}
    for fused in (True, False):
        monkeypatch.setattr(metrics, "fused_ssim_available", lambda images, fused=fused: fused)
        for needs_grad in ((True, True), (True, False), (False, True)):
            inputs = [tensor.clone().requires_grad_(needed) for tensor, needed in zip((image, other), needs_grad)]
            value = ssim_map(*inputs)
            (value * weights).sum().backward()
            results[fused, needs_grad] = [value.detach()] + [tensor.grad for tensor in inputs]
    for needs_grad in ((True, True), (True, False), (False, True)):
        fused, unfused = results[True, needs_grad], results[False, needs_grad]
        # Sums of a few hundred float32 products per pixel, in different orders.
        torch.testing.assert_close(fused[0], unfused[0], rtol=0, atol=1e-5)
        for got, expected in zip(fused[1:], unfused[1:]):
            assert (got is None) == (expected is None)
            if expected is not None:
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


# ---- LPIPS ----

def random_lpips_state(seed):
    """Randomly initialised weights under the key names of the lpips package and torchvision's AlexNet."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, in_channels, out_channels, kernel, _, _ in metrics.ALEXNET_CONVOLUTIONS:
        fan_in = in_channels * kernel * kernel
        state[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, kernel, kernel,
                                                        generator=generator) / math.sqrt(fan_in)
        state[f"features.{index}.bias"] = 0.01 * torch.randn(out_channels, generator=generator)
    for layer, (_, _, channels, _, _, _) in enumerate(metrics.ALEXNET_CONVOLUTIONS):
        state[f"lin{layer}.model.1.weight"] = torch.rand(1, channels, 1, 1, generator=generator)
    return state


def test_lpips_structure_with_random_weights(tmp_path):
    state = random_lpips_state(0)
    torch.save(state, tmp_path / "combined.pth")
    torch.save({key: value for key, value in state.items() if key.startswith("lin")}, tmp_path / "alex.pth")
    torch.save({key: value for key, value in state.items() if key.startswith("features")}, tmp_path / "alexnet.pth")
    combined = LPIPS(str(tmp_path / "combined.pth"))
    separate = LPIPS(str(tmp_path / "alex.pth"), str(tmp_path / "alexnet.pth"))

    image, other = random_image(0, 64, 80).float(), random_image(1, 64, 80).float()
    assert float(combined(image, image)) == 0.0
    distance = combined(image, other)
    assert distance.shape == () and float(distance) > 0
    assert float(separate(image, other)) == float(distance)
    batch = combined(torch.stack([image, image]), torch.stack([other, image]))
    assert batch.shape == (2,) and float(batch[1]) == 0.0
    assert float(batch[0]) == pytest.approx(float(distance), rel=1e-5)


def test_lpips_accepts_lpips_package_key_names(tmp_path):
    """The lpips package's full state_dict names the backbone net.sliceK.<torchvision index>."""
    state = random_lpips_state(1)
    slices = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    renamed = {}
    for key, value in state.items():
        if key.startswith("features."):
            index = int(key.split(".")[1])
            key = f"net.slice{slices[index]}.{key[len('features.'):]}"
        renamed[key] = value
    torch.save(state, tmp_path / "torchvision_names.pth")
    torch.save(renamed, tmp_path / "lpips_names.pth")
    image, other = random_image(2, 64, 64).float(), random_image(3, 64, 64).float()
    assert float(LPIPS(str(tmp_path / "lpips_names.pth"))(image, other)) == float(
        LPIPS(str(tmp_path / "torchvision_names.pth"))(image, other))


def test_lpips_weight_errors_name_the_file(tmp_path):
    state = random_lpips_state(2)
    del state["lin3.model.1.weight"]
    torch.save(state, tmp_path / "incomplete.pth")
    with pytest.raises(MetricsError, match="incomplete.pth: missing LPIPS/AlexNet weight lin3.model.1.weight"):
        LPIPS(str(tmp_path / "incomplete.pth"))
    state = random_lpips_state(2)
    state["features.3.weight"] = torch.zeros(5)
    torch.save(state, tmp_path / "wrong_shape.pth")
    with pytest.raises(MetricsError, match=r"wrong_shape.pth: features.3.weight has shape \(5,\)"):
        LPIPS(str(tmp_path / "wrong_shape.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"garbage")
    with pytest.raises(MetricsError, match="garbage.pth: not a readable torch weights file"):
        LPIPS(str(tmp_path / "garbage.pth"))
    with pytest.raises(MetricsError, match="absent.pth: LPIPS weights file not found"):
        LPIPS(str(tmp_path / "absent.pth"))


def test_lpips_rejects_tiny_images(tmp_path):
    torch.save(random_lpips_state(3), tmp_path / "combined.pth")
    image = torch.rand(3, 16, 16)
    with pytest.raises(MetricsError, match="at least 32x32"):
        LPIPS(str(tmp_path / "combined.pth"))(image, image)


# ---- evaluation and results.json ----

def test_evaluate_images_labels_protocols_and_reports_missing_lpips():
    gt = random_image(7)
    image = (gt + signed_noise(2, gt.shape, 0.05)).clamp(0, 1)
    per_view = evaluate_images({"a.png": (image, gt), "b.png": (gt, gt)})
    scores = per_view["a.png"]
    assert scores["3dgs"]["psnr"] == pytest.approx(float(psnr(image, gt)))
    assert scores["3dgs"]["ssim"] == pytest.approx(float(ssim(image, gt)))
    assert scores["deblur_nerf"]["psnr"] == pytest.approx(float(psnr_per_channel(image, gt)))
    assert scores["deblur_nerf"]["ssim"] == pytest.approx(ssim_skimage(image, gt))
    assert scores["3dgs"]["lpips"] is None and scores["deblur_nerf"]["lpips"] is None
    assert "weights" in scores["lpips_unavailable"]
    assert per_view["b.png"]["3dgs"]["psnr"] == math.inf


def test_evaluate_images_with_lpips_weights(tmp_path):
    torch.save(random_lpips_state(4), tmp_path / "combined.pth")
    gt = random_image(8).float()
    per_view = evaluate_images({"same": (gt, gt)}, lpips_weights=str(tmp_path / "combined.pth"))
    assert per_view["same"]["3dgs"]["lpips"] == 0.0 and "lpips_unavailable" not in per_view["same"]


@pytest.mark.parametrize("image, message", [
    (torch.zeros(3, 10, 12), "same shape"),
    (torch.full((3, 10, 11), float("nan")), "non-finite"),
])
def test_evaluate_images_rejects_bad_pairs(image, message):
    with pytest.raises(MetricsError, match=f"view 'v'.*{message}"):
        evaluate_images({"v": (image, torch.zeros(3, 10, 11))})


def test_write_results_is_complete_json(tmp_path):
    gt = random_image(9)
    per_view = evaluate_images({
        "a.png": ((gt + signed_noise(3, gt.shape, 0.1)).clamp(0, 1), gt),
        "b.png": ((gt + signed_noise(4, gt.shape, 0.01)).clamp(0, 1), gt),
        "c.png": (gt, gt),
    })
    path = tmp_path / "run" / "results.json"
    write_results(str(path), per_view, iteration=7000, num_gaussians=1234, train_seconds=56.5)
    assert os.listdir(path.parent) == ["results.json"]  # no temporary file left behind
    results = json.loads(path.read_text())
    assert (results["iteration"], results["num_gaussians"], results["train_seconds"]) == (7000, 1234, 56.5)
    assert set(results["protocols"]) == {"3dgs", "deblur_nerf"} and results["num_views"] == 3
    # Identical images have infinite PSNR, which JSON cannot hold: null, and so is the mean.
    assert results["per_view"]["c.png"]["3dgs"]["psnr"] is None and results["mean"]["3dgs"]["psnr"] is None
    expected_ssim = np.mean([per_view[name]["deblur_nerf"]["ssim"] for name in per_view])
    assert results["mean"]["deblur_nerf"]["ssim"] == pytest.approx(expected_ssim, abs=1e-12)
    assert results["mean"]["3dgs"]["lpips"] is None and "weights" in results["mean"]["lpips_unavailable"]


def test_write_results_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"old": true}')
    with pytest.raises(TypeError):
        write_results(str(path), {"v": {"3dgs": {"psnr": object()}}}, 1, 1, 1.0)
    assert json.loads(path.read_text()) == {"old": True} and os.listdir(tmp_path) == ["results.json"]


# ---- command line ----

def write_rendered_views(model_path, iteration, count, seed):
    rng = np.random.default_rng(seed)
    base = model_path / "test" / f"ours_{iteration}"
    for folder in ("renders", "gt"):
        os.makedirs(base / folder)
    for index in range(count):
        gt = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        render = np.clip(gt.astype(int) + rng.integers(-10, 11, size=gt.shape), 0, 255).astype(np.uint8)
        iio.imwrite(base / "gt" / f"{index:05d}.png", gt)
        iio.imwrite(base / "renders" / f"{index:05d}.png", render)


def test_cli_scores_latest_rendering(tmp_path, capsys):
    model = tmp_path / "run"
    write_rendered_views(model, 1000, 2, seed=0)
    write_rendered_views(model, 7000, 3, seed=1)
    os.makedirs(model / "point_cloud" / "iteration_7000")
    (model / "point_cloud" / "iteration_7000" / "point_cloud.ply").write_bytes(
        b"ply\nformat binary_little_endian 1.0\nelement vertex 321\nproperty float x\nend_header\n")
    (model / "results_7000.json").write_text(json.dumps({"train_seconds": 12.5}))
    assert metrics.main(["-m", str(model)]) == 0
    results = json.loads((model / "results.json").read_text())
    assert (results["iteration"], results["num_gaussians"], results["train_seconds"]) == (7000, 321, 12.5)
    assert sorted(results["per_view"]) == ["00000.png", "00001.png", "00002.png"]
    # Noise of at most 10 levels out of 255 keeps PSNR between 20*log10(255/10) = 28.1 dB and about 35 dB.
    assert 28.1 < results["mean"]["3dgs"]["psnr"] < 36
    assert "[deblur_nerf]" in capsys.readouterr().out

    assert metrics.main(["-m", str(model), "--iteration", "1000"]) == 0
    assert json.loads((model / "results.json").read_text())["num_gaussians"] is None


def test_cli_errors(tmp_path, refusal):
    assert "no test/ours_<iteration>" in refusal(metrics.main, ["-m", str(tmp_path)])
    write_rendered_views(tmp_path, 10, 2, seed=2)
    os.remove(tmp_path / "test" / "ours_10" / "gt" / "00001.png")
    assert "same names" in refusal(metrics.main, ["-m", str(tmp_path)])
    assert "no test/ours_5" in refusal(metrics.main, ["-m", str(tmp_path), "--iteration", "5"])
