"""The image-space deblurring baselines: their training pairs, the analysis network's kernel estimates, and deblurring
a generated scene end to end into a copy that train.py reads."""

import json
import os

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from baselines.image.asn import DeblurrerSettings, ImageDeblurrer, kernel_errors, kernel_loss, run_stage
from baselines.image.data import PairSampler, blur_crop, builtin_sharp_images, pyramid_levels
from baselines.image.deblur import RECORD_NAME, deblur_scene, main
from baselines.image.kernels import KERNEL_FAMILIES, draw_kernel
from scene.dataset_readers import load_scene_info, read_image
from scene.synthetic import SHARP_IMAGES_FOLDER, generate_scene, preset_config
from scene.synthetic.imaging import srgb_to_linear

KERNEL_SIZE = 13


def srgb_encode(linear):
    """The sRGB curve written out independently of the code under test."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1.0 / 2.4) - 0.055)


@pytest.fixture(scope="module")
def sharp_images():
    return builtin_sharp_images()


@pytest.mark.parametrize("family", KERNEL_FAMILIES)
def test_kernels_are_normalised_and_centred(family):
    rng = np.random.default_rng(0)
    size = 33
    for _ in range(20):
        drawn = draw_kernel(rng, size, (family,))
        kernel = drawn.kernel.astype(np.float64)
        assert kernel.shape == (size, size) and drawn.family == family
        assert kernel.min() >= 0.0
        assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
        # Bilinear splatting keeps each point's mean position, so the centre of mass is the centre to float precision.
        offsets = np.arange(size) - size // 2
        assert (kernel.sum(axis=0) @ offsets, kernel.sum(axis=1) @ offsets) == pytest.approx((0.0, 0.0), abs=1e-4)
        # Every shift lies within the drawn radius, spread over the pixels around it.
        rows, columns = np.nonzero(kernel > 1e-7)
        assert np.hypot(rows - size // 2, columns - size // 2).max() <= drawn.radius + np.sqrt(2.0) + 1e-6


def test_blur_convolves_in_linear_light():
    rng = np.random.default_rng(1)
    sharp = rng.uniform(0.0, 1.0, size=(2, 3, 24, 20)).astype(np.float32)
    kernels = np.stack([draw_kernel(rng, 9, (family,)).kernel for family in ("walk", "polygon")])
    blurred = blur_crop(torch.from_numpy(sharp), torch.from_numpy(kernels)).numpy()
    assert blurred.shape == (2, 3, 16, 12)
    for index in range(2):
        for channel in range(3):
            linear = convolve2d(srgb_to_linear(sharp[index, channel]).astype(np.float64), kernels[index], "valid")
            assert blurred[index, channel] == pytest.approx(srgb_encode(linear), abs=1e-5)


def test_pairs_are_their_sharp_crop_blurred_by_their_kernel(sharp_images):
    levels = pyramid_levels(sharp_images.values(), 32 + KERNEL_SIZE - 1)
    sampler = PairSampler(levels, 32, KERNEL_SIZE, np.random.default_rng(2))
    pairs = sampler.draw(4)
    assert pairs.blurred.shape == pairs.sharp.shape == (4, 3, 32, 32)
    margin = KERNEL_SIZE // 2
    for blurred, sharp, kernel in zip(pairs.blurred.numpy(), pairs.sharp.numpy(), pairs.kernels.numpy()):
        assert np.all(np.round(blurred * 255.0) == blurred * 255.0)
        # Inside the crop by the kernel's radius, the blurred pixels draw on the sharp crop alone; the photo file's
        # 8 bits round them by at most half a level.
        for channel in range(3):
            expected = srgb_encode(convolve2d(srgb_to_linear(sharp[channel]).astype(np.float64), kernel, "valid"))
            interior = blurred[channel, margin:-margin, margin:-margin]
            assert interior == pytest.approx(expected, abs=0.5 / 255.0 + 1e-5)


@pytest.mark.slow
def test_analysis_network_estimates_kernels_of_held_out_crops(sharp_images):
    """After 120 steps on scikit-image's photographs, the analysis network's kernels for crops of the generator's
    textures, which it never saw, have a relative squared error (kernel_loss) under a tenth of a centred delta
    kernel's (no blur), under 0.65 times that of the best constant guess (the mean of the true kernels) and under
    0.75 times the untrained network's (a nearly flat kernel). Seeded on one thread (conftest), the run gives the
    same numbers every time: about 0.55 against 15.8 (delta), 1.08 (mean kernel) and 0.90 (untrained)."""
    held_out_names = [name for name in sharp_images if name.startswith("texture/")]
    settings = DeblurrerSettings(kernel_size=KERNEL_SIZE, tile=32, batch=8, analysis_width=8, correlation_channels=4,
                                 max_noise=0.01)
    side = settings.tile + KERNEL_SIZE - 1
    training = pyramid_levels([image for name, image in sharp_images.items() if name not in held_out_names], side)
    held_out = pyramid_levels([sharp_images[name] for name in held_out_names], side)

    def held_out_errors(model):
        sampler = PairSampler(held_out, settings.tile, KERNEL_SIZE, np.random.default_rng(4), max_noise=0.01)
        return kernel_errors(model, sampler, 4, 32)

    torch.manual_seed(0)
    model = ImageDeblurrer(settings)
    untrained = held_out_errors(model)
    sampler = PairSampler(training, settings.tile, KERNEL_SIZE, np.random.default_rng(3), max_noise=0.01)
    run_stage("analysis", 120, model.analysis.parameters(), settings.analysis_learning_rate,
              lambda blurred, sharp, kernels: kernel_loss(model.analysis(blurred), kernels), sampler, settings, "cpu")
    trained = held_out_errors(model)
    assert trained["no_blur"] == untrained["no_blur"] and trained["mean_kernel"] == untrained["mean_kernel"]
    assert trained["network"] < 0.1 * trained["no_blur"]
    assert trained["network"] < 0.65 * trained["mean_kernel"]
    assert trained["network"] < 0.75 * untrained["network"]


@pytest.fixture(scope="module")
def small_scene(tmp_path_factory):
    """A generated defocus scene of 5 views of 64x48 (views 0 and 4 sharp test views) with its sharp truth."""
    folder = tmp_path_factory.mktemp("image_baselines") / "small_defocus"
    config = preset_config("tiny", "defocus", width=64, height=48, num_views=5, hold=4, samples_per_pixel=16,
                           num_points=100)
    generate_scene(config, folder, log=lambda message: None)
    return str(folder)


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory):
    """A deblurrer cache the quick runs share: the first trains its deblurrer, the others load it."""
    return str(tmp_path_factory.mktemp("deblurrer_cache"))


# Slow: it trains both the deblurrer and the converter, if only for a few steps.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["asn", "blur2blur"])
def test_deblur_scene_writes_a_scene_train_reads(small_scene, quick_cache, tmp_path, method):
    out = tmp_path / "deblurred"
    result = deblur_scene(small_scene, str(out), method, iterations=2, cache_dir=quick_cache, device="cpu")
    source, copy = load_scene_info(small_scene), load_scene_info(str(out))
    assert copy.source_kind == source.source_kind == "deblur_nerf"
    assert [camera.name for camera in copy.test_cameras] == [camera.name for camera in source.test_cameras]
    assert [camera.name for camera in copy.train_cameras] == [camera.name for camera in source.train_cameras]
    for before, after in zip(source.test_cameras, copy.test_cameras):
        assert np.array_equal(before.image, after.image)
        np.testing.assert_array_equal(before.world_to_camera, after.world_to_camera)
    assert all(not np.array_equal(before.image, after.image)
               for before, after in zip(source.train_cameras, copy.train_cameras))
    assert sorted(os.listdir(out / SHARP_IMAGES_FOLDER)) == sorted(os.listdir(os.path.join(small_scene,
                                                                                          SHARP_IMAGES_FOLDER)))
    # The reported PSNRs are those of the photos written, against the truth.
    psnrs = []
    for camera in copy.train_cameras:
        truth = read_image(os.path.join(small_scene, SHARP_IMAGES_FOLDER, camera.name), np.zeros(3))
        psnrs.append(10.0 * np.log10(1.0 / np.mean((camera.image - truth) ** 2)))
    assert result.photo_psnr_after == pytest.approx(np.mean(psnrs), abs=1e-3)
    assert result.photo_psnr_before is not None and np.isfinite(result.photo_psnr_before)
    with open(out / RECORD_NAME) as file:
        assert json.load(file)["method"] == method


def test_deblur_scene_copies_a_colmap_scene(tiny_scene, quick_cache, tmp_path):
    """The COLMAP layout (images/ and sparse/0, no sharp truth): its training photos are deblurred, the rest copied,
    and no PSNR is claimed."""
    out = tmp_path / "deblurred"
    result = deblur_scene(tiny_scene, str(out), "asn", iterations=2, hold=4, cache_dir=quick_cache, device="cpu")
    assert result.photo_psnr_before is None and result.photo_psnr_after is None
    source, copy = load_scene_info(tiny_scene, hold=4), load_scene_info(str(out), hold=4)
    assert copy.source_kind == source.source_kind == "colmap"
    assert all(np.array_equal(before.image, after.image)
               for before, after in zip(source.test_cameras, copy.test_cameras))
    assert all(not np.array_equal(before.image, after.image)
               for before, after in zip(source.train_cameras, copy.train_cameras))
    np.testing.assert_array_equal(copy.point_cloud.points, source.point_cloud.points)


def test_cli_names_bad_input(small_scene, tmp_path, refusal):
    missing = str(tmp_path / "no_scene")
    message = refusal(main, ["-s", missing, "-o", str(tmp_path / "out"), "--method", "asn"])
    assert message == f"python -m baselines.image.deblur: error: {missing}: scene folder not found\n"
    message = refusal(main, ["-s", small_scene, "-o", os.path.join(small_scene, "deblurred"), "--method", "asn"])
    assert "must lie outside the scene folder" in message
    truth = os.path.join(small_scene, SHARP_IMAGES_FOLDER)
    message = refusal(main, ["-s", small_scene, "-o", str(tmp_path / "out"), "--method", "asn", "--sharp-sources",
                             truth])
    assert "lies in the scene being deblurred" in message
    message = refusal(main, ["-s", small_scene, "-o", str(tmp_path / "out"), "--method", "asn", "--iterations", "0"])
    assert message.count("\n") == 1 and "--iterations must be a positive integer" in message
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    message = refusal(main, ["-s", small_scene, "-o", str(occupied), "--method", "asn"])
    assert "holds no deblurred scene" in message
    assert (occupied / "notes.txt").read_text() == "mine"
