"""Tests of the synthetic blur scene generator (scene/synthetic): determinism, the Deblur-NeRF layout, and the
optics of its defocus and camera-motion blur."""

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

from scene.colmap_model import qvec_to_rotmat, read_model
from scene.llff import load_poses_bounds
from scene.synthetic import (BLUR_TYPES, LAYOUTS, PRESETS, SceneConfig, SyntheticSceneError, generate_scene,
                             generate_suite, preset_config, view_name)
from scene.synthetic.__main__ import main
from scene.synthetic.camera import PinholeIntrinsics, apply_shake, shake_trajectory
from scene.synthetic.generator import draw_exposure
from scene.synthetic.imaging import mean_gradient_magnitude
from scene.synthetic.primitives import Rectangle
from scene.synthetic.raycaster import Exposure, TexturedScene, render
from scene.synthetic.sparse import sfm_like_points
from scene.synthetic.textures import Texture

# Smaller than the tiny preset, so that each generation takes about a second. Blur in pixels shrinks with the
# image, so these views need a stronger lens and shake than the preset's to stay measurably blurred.
SMALL = dict(width=80, height=60, num_views=10, samples_per_pixel=16, num_points=150, max_aperture=0.6,
             max_shake_rotation_degrees=6.0)


def small_config(blur, **overrides):
    return preset_config("tiny", blur, **dict(SMALL, **overrides))


def quiet(message):
    pass


def files_in(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file()}


@pytest.fixture(scope="module")
def motion_scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated") / "blocks_motion"
    record = generate_scene(small_config("motion", layout="blocks", seed=3), folder, log=quiet)
    return folder, record


def test_same_seed_gives_byte_identical_files(motion_scene, tmp_path):
    folder, _ = motion_scene
    generate_scene(small_config("motion", layout="blocks", seed=3), tmp_path / "again", log=quiet)
    generate_scene(small_config("motion", layout="blocks", seed=4), tmp_path / "other", log=quiet)
    first, again, other = files_in(folder), files_in(tmp_path / "again"), files_in(tmp_path / "other")
    assert first.keys() == again.keys()
    for name in first:
        assert first[name] == again[name], name
    assert first["images/001.png"] != other["images/001.png"]


def test_layout_matches_deblur_nerf(motion_scene):
    folder, record = motion_scene
    names = sorted(path.name for path in (folder / "images").iterdir())
    assert names == [view_name(index) for index in range(SMALL["num_views"])]
    train = [name for index, name in enumerate(names) if index % 8 != 0]
    assert sorted(path.name for path in (folder / "images_sharp").iterdir()) == train
    assert (folder / "hold=8").read_bytes() == b""
    assert json.loads((folder / "scene.json").read_text()) == record
    assert [view["split"] for view in record["views"]] == ["test" if index % 8 == 0 else "train"
                                                         for index in range(len(names))]


def test_poses_bounds_and_colmap_model_describe_the_same_cameras(motion_scene):
    folder, _ = motion_scene
    camera_to_world, hwf, bounds = load_poses_bounds(str(folder / "poses_bounds.npy"))
    cameras, images, points3d = read_model(str(folder / "sparse" / "0"))

    assert list(cameras) == [1] and cameras[1].model == "PINHOLE"
    fx, fy, cx, cy = cameras[1].params
    assert (cameras[1].width, cameras[1].height) == (SMALL["width"], SMALL["height"])
    assert fx == fy and (cx, cy) == (SMALL["width"] / 2, SMALL["height"] / 2)
    np.testing.assert_array_equal(hwf, np.tile([SMALL["height"], SMALL["width"], fx], (SMALL["num_views"], 1)))

    ordered = sorted(images.values(), key=lambda image: image.name)
    assert [image.name for image in ordered] == [view_name(index) for index in range(SMALL["num_views"])]
    for image, pose in zip(ordered, camera_to_world):
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = qvec_to_rotmat(image.qvec)
        world_to_camera[:3, 3] = image.tvec
        # Both files store float64 values written at full precision; only quaternion round-off remains.
        np.testing.assert_allclose(np.linalg.inv(world_to_camera)[:3], pose, atol=1e-9)

    assert len(points3d) > 20
    for point in points3d.values():
        assert len(point.image_ids) >= 2
        reprojection = []
        for image_id, index in zip(point.image_ids, point.point2d_idxs):
            image = images[image_id]
            assert image.point3d_ids[index] == point.id
            camera_point = qvec_to_rotmat(image.qvec) @ point.xyz + image.tvec
            near, far = bounds[int(image.name[:3])]
            assert near <= camera_point[2] <= far
            projected = np.array([fx, fy]) * camera_point[:2] / camera_point[2] + np.array([cx, cy])
            reprojection.append(np.linalg.norm(projected - image.xys[index]))
        # The stored error is the mean reprojection distance, recomputed here from the written numbers.
        assert point.error == pytest.approx(np.mean(reprojection), abs=1e-6)
    observations = sum(int((image.point3d_ids >= 0).sum()) for image in images.values())
    assert observations == sum(len(point.image_ids) for point in points3d.values())


def test_written_training_views_are_measurably_blurred(motion_scene):
    folder, record = motion_scene
    for view in record["views"]:
        if view["split"] != "train":
            continue
        sharp = mean_gradient_magnitude(iio.imread(folder / "images_sharp" / view["name"]))
        blurred = mean_gradient_magnitude(iio.imread(folder / "images" / view["name"]))
        assert blurred <= 0.75 * sharp
        assert view["gradient_reduction"] == pytest.approx(1.0 - blurred / sharp, abs=1e-5)


def test_suite_generates_every_layout_with_every_blur_once(tmp_path, monkeypatch):
    monkeypatch.setitem(PRESETS, "small", dict(SMALL, num_views=3))
    generate_suite(tmp_path, preset="small", log=quiet)
    expected = sorted(f"{layout}_{blur}" for layout in LAYOUTS for blur in BLUR_TYPES)
    assert len(expected) >= 8
    assert sorted(path.name for path in tmp_path.iterdir()) == expected
    layouts = {json.loads((tmp_path / name / "scene.json").read_text())["config"]["layout"] for name in expected}
    assert layouts == set(LAYOUTS)
    messages = []
    generate_suite(tmp_path, preset="small", log=messages.append)
    assert len(messages) == len(expected) and all(message.endswith("is up to date") for message in messages)


@pytest.mark.parametrize("blur, no_blur", [("defocus", dict(max_aperture=0.0)),
                                           ("motion", dict(max_shake_rotation_degrees=0.0, max_shake_translation=0.0))])
def test_zero_blur_gives_the_sharp_image_exactly(blur, no_blur, tmp_path):
    config = small_config(blur, num_views=4, min_blur_reduction=0.0, **no_blur)
    generate_scene(config, tmp_path, log=quiet)
    for index in range(1, 4):
        name = view_name(index)
        assert (tmp_path / "images" / name).read_bytes() == (tmp_path / "images_sharp" / name).read_bytes()


# A camera at the origin looking along +z at a white half-plane x >= 0 against black: a vertical edge through
# the image centre, whose blurred profile across the image shows the blur kernel.
EDGE_CAMERA = PinholeIntrinsics.from_field_of_view(96, 24, 60.0)
EDGE_DEPTH = 4.0
EDGE_SAMPLES_PER_PIXEL = 256
# Even a fully random estimate of a pixel from 256 samples errs by at most 0.5 / sqrt(256) = 0.031 (one
# standard deviation); stratification brings it to about 0.013 at the edge. The profile averages 24 rows,
# which leaves about 0.003; the tolerance is four times that, small enough to notice a blur radius 10% off.
PROFILE_TOLERANCE = 0.012


def edge_scene():
    white = Texture(np.full((4, 4, 3), 255, np.uint8))
    half_plane = Rectangle("white", (50.0, 0.0, EDGE_DEPTH), (1, 0, 0), (0, 1, 0), 50.0, 50.0)
    return TexturedScene([half_plane], {"white": white}, ambient=1.0, diffuse=0.0, sky=(0.0, 0.0, 0.0))


def rendered_profile(exposure):
    return render(edge_scene(), EDGE_CAMERA, exposure, EDGE_SAMPLES_PER_PIXEL, 0)[..., 0].mean(axis=0)


def pixel_averaged(brightness_at):
    """Expected pixel values across a row: brightness_at(x) (x in pixels) averaged over each pixel's width."""
    positions = np.arange(EDGE_CAMERA.width)[:, None] + (np.arange(1000) + 0.5) / 1000
    return brightness_at(positions).mean(axis=1)


def disk_shadow_fraction(offset, radius):
    """Fraction of a uniform disk of the given radius lying left of the vertical line at offset."""
    if radius == 0.0:
        return (offset >= 0.0).astype(float)
    t = np.clip(offset / radius, -1.0, 1.0)
    return 0.5 + (t * np.sqrt(1.0 - t * t) + np.arcsin(t)) / np.pi


@pytest.mark.parametrize("aperture, focus", [(0.0, 2.0), (0.15, 4.0), (0.15, 2.0), (0.3, 2.0), (0.3, 3.0)])
def test_defocus_matches_the_thin_lens_circle_of_confusion(aperture, focus):
    exposure = Exposure(np.eye(3)[None], np.zeros((1, 3)), aperture_radius=aperture, focus_distance=focus)
    # Through a lens point at horizontal offset l, a scene point appears shifted by fx * l * (1/focus - 1/depth)
    # pixels, so the edge is smeared by the disk's horizontal extent scaled to that radius.
    radius = aperture * EDGE_CAMERA.fx * abs(1.0 / focus - 1.0 / EDGE_DEPTH)
    expected = pixel_averaged(lambda x: disk_shadow_fraction(x - EDGE_CAMERA.cx, radius))
    np.testing.assert_allclose(rendered_profile(exposure), expected, atol=PROFILE_TOLERANCE)


@pytest.mark.parametrize("amplitude_degrees", [0.0, 1.0, 2.0, 4.0])
def test_motion_blur_matches_the_shake_path(amplitude_degrees):
    angles = np.radians(amplitude_degrees) * np.linspace(-1.0, 1.0, 16)
    rotation_vectors = np.stack([np.zeros(16), angles, np.zeros(16)], axis=1)
    rotations, centres = apply_shake(np.eye(3), np.zeros(3), rotation_vectors, np.zeros((16, 3)))
    # Turning by an angle about the camera's vertical axis moves the edge by -fx * tan(angle) pixels; each
    # sub-frame holds an equal share of the exposure.
    edge_positions = EDGE_CAMERA.cx - EDGE_CAMERA.fx * np.tan(angles)
    expected = pixel_averaged(lambda x: (x[..., None] >= edge_positions).mean(axis=-1))
    np.testing.assert_allclose(rendered_profile(Exposure(rotations, centres)), expected, atol=PROFILE_TOLERANCE)


def test_blur_grows_with_aperture_and_shake():
    def spread(exposure):
        profile = rendered_profile(exposure)
        return int(((profile > 0.02) & (profile < 0.98)).sum())

    apertures = [spread(Exposure(np.eye(3)[None], np.zeros((1, 3)), aperture, 2.0)) for aperture in (0.0, 0.1, 0.2)]
    shakes = []
    for degrees in (0.0, 1.0, 2.0):
        angles = np.radians(degrees) * np.linspace(-1.0, 1.0, 16)
        rotations, centres = apply_shake(np.eye(3), np.zeros(3), np.stack([0 * angles, angles, 0 * angles], axis=1),
                                         np.zeros((16, 3)))
        shakes.append(spread(Exposure(rotations, centres)))
    assert apertures[0] < apertures[1] < apertures[2]
    assert shakes[0] < shakes[1] < shakes[2]


def test_drawn_blur_scales_with_the_configured_strength():
    rotation, centre = np.eye(3), np.zeros(3)
    weak = draw_exposure(small_config("defocus", max_aperture=0.1), 1, 0, rotation, centre)[1]
    strong = draw_exposure(small_config("defocus", max_aperture=0.2), 1, 0, rotation, centre)[1]
    assert strong["aperture_radius"] == pytest.approx(2 * weak["aperture_radius"], abs=2e-6)
    assert strong["focus_distance"] == weak["focus_distance"]
    weak = draw_exposure(small_config("motion", max_shake_rotation_degrees=1.0), 1, 0, rotation, centre)[0]
    strong = draw_exposure(small_config("motion", max_shake_rotation_degrees=2.0), 1, 0, rotation, centre)[0]
    weak_angles = [math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1)) for r in weak.rotations]
    strong_angles = [math.acos(np.clip((np.trace(r) - 1) / 2, -1, 1)) for r in strong.rotations]
    np.testing.assert_allclose(strong_angles, 2 * np.array(weak_angles), atol=1e-6)


def test_shake_path_is_smooth_and_centred():
    rotation_vectors, translations = shake_trajectory(np.random.default_rng(0), 16, math.radians(2.0), 0.05)
    for path, amplitude in ((rotation_vectors, math.radians(2.0)), (translations, 0.05)):
        assert np.linalg.norm(path, axis=1).max() == pytest.approx(amplitude)
        # Mid-exposure lies halfway between the two middle sub-frames.
        assert np.linalg.norm(path[7] + path[8]) < 0.25 * amplitude
        # A smooth path changes little between sub-frames: far less than a random one would.
        assert np.abs(np.diff(path, axis=0)).max() < 0.3 * amplitude


def test_sparse_points_avoid_blurred_and_far_regions():
    rng = np.random.default_rng(0)
    intrinsics = PinholeIntrinsics.from_field_of_view(64, 32, 60.0)
    texture = (rng.random((32, 64, 1)) * 255).astype(np.uint8).repeat(3, axis=2)
    blurred_left = texture.copy()
    blurred_left[:, :32] = np.round(texture[:, :32].astype(float).mean()).astype(np.uint8)
    far_right = np.full((32, 64), 2.2)
    far_right[:, 32:] = 9.0
    rotations, centres = np.stack([np.eye(3)] * 2), np.zeros((2, 3))
    for images, depth, fewer_on_left in (((blurred_left, blurred_left), np.full((32, 64), 2.2), True),
                                         ((texture, texture), far_right, False)):
        points = sfm_like_points(intrinsics, rotations, centres, np.stack(images), np.stack([depth, depth]), 200,
                                 2.2, np.random.default_rng(1))
        on_left = (points.xyz[:, 0] < 0).sum()
        on_right = (points.xyz[:, 0] > 0).sum()
        assert len(points.xyz) > 50
        assert (on_left < 0.2 * on_right) if fewer_on_left else (on_right < 0.2 * on_left)


@pytest.mark.parametrize("field, value, named", [
    ("blur", "zoom", "zoom"), ("max_aperture", -0.1, "max_aperture"), ("num_views", 0, "num_views"),
    ("layout", "castle", "castle"), ("max_shake_rotation_degrees", float("nan"), "max_shake_rotation_degrees"),
    ("samples_per_pixel", 24, "num_subframes"), ("width", 10.5, "width")])
def test_bad_parameters_are_named(field, value, named):
    with pytest.raises(SyntheticSceneError, match=named):
        preset_config("tiny", **{"blur": "motion", field: value})


def test_command_line_reports_bad_parameters(tmp_path, capsys):
    assert main(["--blur", "defocus", "--aperture", "-1", "--out", str(tmp_path / "scene")]) == 2
    assert "max_aperture" in capsys.readouterr().err
    assert main(["--blur", "defocus", "--views", "0", "--out", str(tmp_path / "scene")]) == 2
    assert "num_views" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--blur", "zoom", "--out", str(tmp_path / "scene")])
    assert exit_info.value.code == 2
    assert "zoom" in capsys.readouterr().err
    assert not (tmp_path / "scene").exists()


def test_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SyntheticSceneError, match="not empty"):
        generate_scene(SceneConfig(blur="defocus"), tmp_path, log=quiet)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_too_weak_blur_fails_loudly_naming_the_view(tmp_path):
    config = small_config("defocus", num_views=2, max_aperture=0.01, max_blur_draws=2)
    with pytest.raises(SyntheticSceneError, match="001.png"):
        generate_scene(config, tmp_path / "scene", log=quiet)
    assert not (tmp_path / "scene").exists()
