"""Tests of the synthetic blur scene generator (scene/synthetic): determinism, the Deblur-NeRF layout, and the
optics of its defocus and camera-motion blur."""

import hashlib
import json
import math

import imageio.v3 as iio
import numpy as np
import pytest

from scene.colmap_model import read_model
from scene.llff import load_poses_bounds
from scene.synthetic import (
    LAYOUTS,
    OUT_OF_FAMILY_SCENES,
    PRESETS,
    SUITE_BLUR_TYPES,
    SceneConfig,
    SyntheticSceneError,
    generate_scene,
    generate_suite,
    preset_config,
    view_name,
)
from scene.synthetic.__main__ import main
from scene.synthetic.camera import (
    MIN_CUBIC_RESIDUAL,
    PinholeIntrinsics,
    aperture_points,
    apply_shake,
    cubic_fit_residual,
    shake_trajectory,
)
from scene.synthetic.generator import draw_exposure
from scene.synthetic.imaging import mean_gradient_magnitude
from scene.synthetic.primitives import Rectangle
from scene.synthetic.raycaster import Exposure, TexturedScene, render
from scene.synthetic.sparse import sfm_like_points
from scene.synthetic.textures import Texture
from utils.geometry import quaternion_to_rotation_matrix

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
        world_to_camera[:3, :3] = quaternion_to_rotation_matrix(image.qvec)
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
            camera_point = quaternion_to_rotation_matrix(image.qvec) @ point.xyz + image.tvec
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
    in_family = sorted(f"{layout}_{blur}" for layout in LAYOUTS for blur in SUITE_BLUR_TYPES)
    expected = sorted(in_family + list(OUT_OF_FAMILY_SCENES))
    assert len(in_family) >= 8
    assert sorted(path.name for path in tmp_path.iterdir()) == expected
    layouts = {json.loads((tmp_path / name / "scene.json").read_text())["config"]["layout"] for name in in_family}
    assert layouts == set(LAYOUTS)
    for name, fields in OUT_OF_FAMILY_SCENES.items():
        config = SceneConfig.from_dict(json.loads((tmp_path / name / "scene.json").read_text())["config"])
        assert config == preset_config("small", **fields) and config.departures()
        # The pose SfM recovers from a shaken photo is nearer the path's mean than its mid-exposure pose.
        assert config.recorded_pose == ("mid" if config.blur == "defocus" else "mean")
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


@pytest.mark.parametrize("amplitude_degrees", [0.0, 1.0])
def test_mixed_blur_is_the_thin_lens_blur_along_the_shake_path(amplitude_degrees):
    # Each sub-frame must see the whole lens: the edge profile is the disk's shadow averaged over the edge
    # positions of the sub-frames. Tying sub-frame s % K to aperture stratum s would give each a strip of the lens.
    aperture, focus = 0.3, 2.0
    angles = np.radians(amplitude_degrees) * np.linspace(-1.0, 1.0, 16)
    rotations, centres = apply_shake(np.eye(3), np.zeros(3), np.stack([0 * angles, angles, 0 * angles], axis=1),
                                     np.zeros((16, 3)))
    exposure = Exposure(rotations, centres, aperture_radius=aperture, focus_distance=focus)
    radius = aperture * EDGE_CAMERA.fx * abs(1.0 / focus - 1.0 / EDGE_DEPTH)
    edge_positions = EDGE_CAMERA.cx - EDGE_CAMERA.fx * np.tan(angles)
    expected = pixel_averaged(lambda x: np.mean([disk_shadow_fraction(x - edge, radius) for edge in edge_positions],
                                                axis=0))
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


def test_command_line_reports_bad_parameters(tmp_path, capsys, refusal):
    out = ["--out", str(tmp_path / "scene")]
    assert "max_aperture" in refusal(main, ["--blur", "defocus", "--aperture", "-1"] + out)
    assert "num_views" in refusal(main, ["--blur", "defocus", "--views", "0"] + out)
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


# sha256 of every file of two small scenes: with the shake-path, recorded-pose and aperture options at their
# defaults, scenes stay byte for byte what they were before those options existed. The textures are drawn and
# resampled by OpenCV, whose 5.0 and 5.1 releases draw different pixels, so the digests hold for the version that
# requirements.txt pins. They were taken again when OpenCV was pinned at 5.1.0.95, from code that had matched the
# older digests under the OpenCV release of its time.
PINNED_SCENES = {
    "motion": (dict(layout="blocks", seed=3), "f7cd7e95f84c061e9961adf8f545dd7384b89e105eee7525f4cd03ff49525b42"),
    "defocus": (dict(layout="gallery", seed=0), "9397e2c6d363f96e915424d896b1027a3c6f313a4a9cd7db16b5b18993d3fa29"),
}


@pytest.mark.parametrize("blur", sorted(PINNED_SCENES))
def test_default_options_leave_scenes_byte_identical(blur, tmp_path):
    fields, expected = PINNED_SCENES[blur]
    generate_scene(small_config(blur, num_views=4, **fields), tmp_path / "scene", log=quiet)
    digest = hashlib.sha256()
    for name, contents in files_in(tmp_path / "scene").items():
        digest.update(name.encode())
        digest.update(contents)
    assert digest.hexdigest() == expected


def test_departures_name_what_leaves_the_models_family():
    assert small_config("motion").departures() == [] and small_config("defocus").departures() == []
    assert small_config("motion", shake_path="walk", recorded_pose="mean").departures() == ["walk path", "mean pose"]
    assert small_config("defocus", aperture_blades=6, spherical_aberration=0.5).departures() == [
        "6 blades", "spherical aberration"]
    assert small_config("mixed").departures() == ["defocus and shake"]
    config = small_config("motion", shake_path="jerk")
    assert "shake_path" in config.as_dict() and "aperture_blades" not in config.as_dict()
    assert SceneConfig.from_dict(config.as_dict()) == config


@pytest.mark.parametrize("fields, named", [
    (dict(blur="motion", shake_path="spiral"), "shake_path"),
    (dict(blur="motion", recorded_pose="end"), "recorded_pose"),
    (dict(blur="defocus", aperture_blades=4), "aperture_blades"),
    (dict(blur="defocus", aperture_blades=10), "aperture_blades"),
    (dict(blur="defocus", spherical_aberration=1.5), "spherical_aberration"),
    (dict(blur="defocus", shake_path="walk"), "shake_path applies to motion or mixed"),
    (dict(blur="motion", aperture_blades=6), "aperture_blades applies to defocus or mixed"),
    (dict(blur="motion", shake_path="jerk", num_subframes=4, samples_per_pixel=32), "num_subframes must be at least 8"),
    (dict(blur="mixed", samples_per_pixel=24), "num_subframes")])
def test_bad_blur_options_are_named(fields, named):
    with pytest.raises(SyntheticSceneError, match=named):
        preset_config("tiny", **fields)


def test_command_line_passes_the_blur_options(tmp_path, refusal):
    out = ["--out", str(tmp_path / "scene")]
    assert "aperture_blades" in refusal(main, ["--blur", "defocus", "--aperture-blades", "3"] + out)
    assert "recorded_pose applies to motion or mixed" in refusal(main, ["--blur", "defocus", "--recorded-pose", "mean"]
                                                                 + out)


SHAKE_SAMPLES = 16
ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE = math.radians(2.0), 0.05


def shake(seed, family, recorded_pose="mid", num_subframes=SHAKE_SAMPLES):
    return shake_trajectory(np.random.default_rng(seed), num_subframes, ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE,
                            family, recorded_pose)


@pytest.mark.parametrize("family", ["walk", "jerk"])
def test_new_shake_paths_are_deterministic_and_reach_the_peak(family):
    first, again, other = shake(5, family), shake(5, family), shake(6, family)
    for path, path_again, path_other, amplitude in zip(first, again, other,
                                                       (ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE)):
        np.testing.assert_array_equal(path, path_again)
        assert not np.allclose(path, path_other)
        assert np.linalg.norm(path, axis=1).max() == pytest.approx(amplitude, rel=1e-12)


@pytest.mark.parametrize("family", ["cubic", "walk", "jerk"])
def test_recorded_pose_is_where_the_option_puts_it(family):
    # Many sub-frames, so that the first lies 1/2048 of the exposure from its start and the middle two 1/2048
    # either side of mid-exposure. Every family moves far less than 5% of its peak excursion in that time: a walk
    # travels 1/2048 of its path length, and its largest excursion from mid-exposure is far above 1/100 of that
    # length (over seeds 0 to 49 the first sub-frame lies within 0.8% of the peak from the start pose); a jerk
    # only sways until its first jump at 10% of the exposure (0.02%); a cubic moves smoothly (0.4%).
    count = 1024
    mid = shake(7, family, "mid", count)
    for recorded_pose in ("mean", "start"):
        moved = shake(7, family, recorded_pose, count)
        for path, path_from_mid, amplitude in zip(moved, mid, (ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE)):
            # The same path, only measured from another pose: the peak excursion from mid-exposure is unchanged.
            offset = path_from_mid - path
            np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-15)
            assert np.linalg.norm(path_from_mid, axis=1).max() == pytest.approx(amplitude, rel=1e-12)
            if recorded_pose == "mean":
                np.testing.assert_allclose(path.mean(axis=0), 0.0, atol=1e-15)
            else:
                assert np.linalg.norm(path[0]) < 0.05 * amplitude
                assert np.linalg.norm(path[-1]) > 0.2 * amplitude
    for path, amplitude in zip(mid, (ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE)):
        assert np.linalg.norm(path[count // 2 - 1] + path[count // 2]) / 2 < 0.05 * amplitude


def test_walk_and_jerk_are_not_cubics():
    """The root mean square distance of a path's 16 sub-frame poses from their least-squares cubic in time,
    relative to the path's peak excursion: zero (to round-off) for the cubic family, at least MIN_CUBIC_RESIDUAL
    (0.08) for every walk and jerk, and about 0.3 (walk) and 0.19 (jerk) typically.

    The bound holds for every draw because the generator draws a path again when its cubic fit comes closer (about
    2% of raw walks do, no raw jerk: a single jump anywhere between 10% and 90% of the exposure alone leaves 0.14).
    """
    times = (np.arange(SHAKE_SAMPLES) + 0.5) / SHAKE_SAMPLES
    residuals = {}
    for family in ("cubic", "walk", "jerk"):
        residuals[family] = np.array([[cubic_fit_residual(path, times) / amplitude
                                       for path, amplitude in zip(shake(seed, family),
                                                                  (ROTATION_AMPLITUDE, TRANSLATION_AMPLITUDE))]
                                      for seed in range(100)])
    assert residuals["cubic"].max() < 1e-12
    assert residuals["walk"].min() >= MIN_CUBIC_RESIDUAL and np.median(residuals["walk"]) > 0.25
    assert residuals["jerk"].min() >= MIN_CUBIC_RESIDUAL and np.median(residuals["jerk"]) > 0.15


def test_walk_turns_several_times_per_exposure():
    # Summed turning of the heading between consecutive sub-frames, over 100 walks: a cubic at 16 sub-frames turns
    # by at most a little over half a turn in total, a walk typically by several right angles.
    turning = []
    for seed in range(100):
        for path in shake(seed, "walk"):
            headings = np.diff(path, axis=0)
            headings /= np.linalg.norm(headings, axis=1, keepdims=True)
            turning.append(np.arccos(np.clip((headings[1:] * headings[:-1]).sum(axis=1), -1.0, 1.0)).sum())
    assert np.median(turning) > 3 * np.pi / 2


UNIFORM_SAMPLES = 200_000
# A region holding the fraction p of the samples gets n p of them within 5 binomial standard deviations,
# sqrt(n p (1 - p)), unless a one-in-a-million event: the seeded draws below are fixed and lie well within.
BINOMIAL_SIGMAS = 5.0


def polygon_edge_radius(angles, blades, rotation):
    """Distance from the centre to the edge of the regular polygon of unit-disk area, along each angle."""
    circumradius = np.sqrt(2.0 * np.pi / (blades * np.sin(2.0 * np.pi / blades)))
    apothem = circumradius * np.cos(np.pi / blades)
    within_blade = np.mod(angles - rotation, 2.0 * np.pi / blades) - np.pi / blades
    return apothem / np.cos(within_blade)


def polygon_wedge_area(start, end, blades, rotation):
    """Area of the polygon between two angles (end - start under one blade's angle): the integral of r^2 / 2,
    apothem^2 / 2 * tan(angle from the edge's normal), split where the wedge crosses a corner."""
    circumradius = np.sqrt(2.0 * np.pi / (blades * np.sin(2.0 * np.pi / blades)))
    apothem = circumradius * np.cos(np.pi / blades)
    area, angle = 0.0, start
    while angle < end - 1e-15:
        corner = rotation + 2.0 * np.pi * (np.floor((angle - rotation) / (2.0 * np.pi / blades) + 1e-12) + 1) / blades
        piece_end = min(end, corner)
        normal = corner - np.pi / blades
        area += apothem ** 2 / 2.0 * (np.tan(piece_end - normal) - np.tan(angle - normal))
        angle = piece_end
    return area


def binomial_bound(probability):
    return BINOMIAL_SIGMAS * math.sqrt(UNIFORM_SAMPLES * probability * (1.0 - probability))


@pytest.mark.parametrize("blades", [5, 6, 7, 8, 9])
def test_polygonal_aperture_is_filled_uniformly(blades):
    rng = np.random.default_rng(blades)
    rotation = rng.uniform(0.0, 2.0 * np.pi)
    x, y = aperture_points(*rng.random((2, UNIFORM_SAMPLES)), blades=blades, rotation=rotation)
    angles, radii = np.arctan2(y, x), np.hypot(x, y)
    relative_radius = radii / polygon_edge_radius(angles, blades, rotation)
    assert relative_radius.max() <= 1.0 + 1e-9
    assert sum(polygon_wedge_area(k * np.pi / 6, (k + 1) * np.pi / 6, blades, rotation)
               for k in range(12)) == pytest.approx(np.pi, rel=1e-9)
    # Cells cut by 12 wedges that do not line up with the blades and 3 shrunken copies of the polygon: a cell
    # between copies scaled by a and b holds (b^2 - a^2) of its wedge's area.
    offset = rng.uniform(0.0, np.pi / 6)
    wedge = np.floor(np.mod(angles - offset, 2.0 * np.pi) / (np.pi / 6)).astype(int)
    ring = np.minimum((relative_radius ** 2 * 3).astype(int), 2)
    for k in range(12):
        wedge_share = polygon_wedge_area(offset + k * np.pi / 6, offset + (k + 1) * np.pi / 6, blades,
                                         rotation) / np.pi
        for band in range(3):
            probability = wedge_share / 3
            count = np.count_nonzero((wedge == k) & (ring == band))
            assert abs(count - UNIFORM_SAMPLES * probability) < binomial_bound(probability), (k, band)


@pytest.mark.parametrize("blades", [0, 7])
def test_aberrated_aperture_is_brighter_at_its_rim(blades):
    aberration = 0.7
    rng = np.random.default_rng(11)
    x, y = aperture_points(*rng.random((2, UNIFORM_SAMPLES)), blades=blades, rotation=0.3, aberration=aberration)
    angles, radii = np.arctan2(y, x), np.hypot(x, y)
    edge = polygon_edge_radius(angles, blades, 0.3) if blades else np.ones_like(radii)
    area_fraction = (radii / edge) ** 2
    assert area_fraction.max() <= 1.0 + 1e-6
    # Ten rings of equal area: the density 1 + A (2u - 1) at area fraction u puts u1 - u0 + A (u1^2 - u0^2 -
    # (u1 - u0)) of the samples between u0 and u1, rising from ring to ring (uniform would be 0.1 each).
    counts = np.bincount(np.minimum((area_fraction * 10).astype(int), 9), minlength=10)
    edges = np.linspace(0.0, 1.0, 11)
    expected = np.diff(edges) + aberration * (np.diff(edges ** 2) - np.diff(edges))
    for count, probability in zip(counts, expected):
        assert abs(count - UNIFORM_SAMPLES * probability) < binomial_bound(probability)
    assert np.all(np.diff(counts) > 0) and counts[-1] > 4 * counts[0]


@pytest.mark.parametrize("name", sorted(OUT_OF_FAMILY_SCENES))
def test_out_of_family_scenes_are_deterministic_and_blurred(name, tmp_path):
    config = small_config(**dict(OUT_OF_FAMILY_SCENES[name], num_views=3))
    first = generate_scene(config, tmp_path / "first", log=quiet)
    generate_scene(config, tmp_path / "again", log=quiet)
    assert files_in(tmp_path / "first") == files_in(tmp_path / "again")
    assert first["blur_check"]["min_reduction"] >= config.min_blur_reduction
    train_view = first["views"][1]
    assert ("aperture_radius" in train_view) == (config.blur != "motion")
    assert ("subframe_rotation_vectors" in train_view) == (config.blur != "defocus")
    assert ("aperture_rotation_degrees" in train_view) == bool(config.aperture_blades)
