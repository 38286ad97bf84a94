import os

import cv2
import numpy as np
import pytest
from skimage import data as skimage_data

pycolmap = pytest.importorskip("pycolmap")

import convert  # noqa: E402  (after the pycolmap check: convert.py is useless without it)
from scene.colmap_model import read_model  # noqa: E402
from scene.dataset_readers import load_scene_info  # noqa: E402
from utils.geometry import quaternion_to_rotation_matrix  # noqa: E402

WIDTH, HEIGHT = 320, 240
FOCAL = 280.0
TARGET = np.array([0.0, 0.0, 2.0])


def look_at(position, target):
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    rotation = np.stack([right, np.cross(forward, right), forward])
    return rotation, -rotation @ position


def rectangle(center, axis_u, axis_v):
    """Corners of the rectangle center +- axis_u +- axis_v, in the order of a photo's top-left, top-right,
    bottom-right and bottom-left corners: axis_u points right and axis_v down as seen from the visible side."""
    center, axis_u, axis_v = (np.asarray(vector, float) for vector in (center, axis_u, axis_v))
    return np.array([center - axis_u - axis_v, center + axis_u - axis_v, center + axis_u + axis_v,
                     center - axis_u + axis_v])


def textured_scene():
    """(corners, texture) for a back wall and three visible faces of a box in front of it (world y down)."""
    photos = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    return [
        (rectangle([0, 0, 4.0], [2.6, 0, 0], [0, 2.0, 0]), photos[0]),
        (rectangle([0, 0.2, 1.4], [0.6, 0, 0], [0, 0.6, 0]), photos[1]),  # box front, facing the cameras
        (rectangle([-0.6, 0.2, 2.0], [0, 0, -0.6], [0, 0.6, 0]), photos[2]),  # left side
        (rectangle([0, -0.4, 2.0], [0.6, 0, 0], [0, 0, -0.6]), photos[3]),  # top
    ]


def signed_area(polygon):
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)


def render_view(rotation, translation, surfaces):
    """Each planar surface is a homography of its photo; surfaces seen from behind are skipped and far ones are
    painted first (the box is convex and in front of the wall, so this depth order is exact)."""
    matrix = np.array([[FOCAL, 0, WIDTH / 2 - 0.5], [0, FOCAL, HEIGHT / 2 - 0.5], [0, 0, 1]])
    center = -rotation.T @ translation
    image = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
    ordered = sorted(surfaces, key=lambda surface: -np.linalg.norm(surface[0].mean(axis=0) - center))
    for corners, photo in ordered:
        camera_corners = corners @ rotation.T + translation
        projected = camera_corners @ matrix.T
        projected = (projected[:, :2] / projected[:, 2:]).astype(np.float32)
        if signed_area(projected) <= 0:
            continue
        height, width = photo.shape[:2]
        source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        homography = cv2.getPerspectiveTransform(source, projected)
        warped = cv2.warpPerspective(photo, homography, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        coverage = cv2.warpPerspective(np.full((height, width), 255, np.uint8), homography, (WIDTH, HEIGHT))
        image[coverage > 127] = warped[coverage > 127]
    return image


def write_photos(folder, count):
    """Photos from count cameras on a 30 degree arc around the box; returns their (rotation, translation)."""
    surfaces = textured_scene()
    poses = []
    os.makedirs(folder)
    for index, angle in enumerate(np.radians(np.linspace(-15, 15, count))):
        position = TARGET + 4.0 * np.array([np.sin(angle), -0.25 + 0.05 * (index % 2), -np.cos(angle)])
        rotation, translation = look_at(position, TARGET)
        poses.append((rotation, translation))
        cv2.imwrite(os.path.join(folder, f"photo_{index:02d}.jpg"),
                    render_view(rotation, translation, surfaces)[:, :, ::-1])
    return poses


def relative_rotation_angles(poses):
    """Angle (degrees) of each camera's rotation relative to the first camera."""
    first = poses[0]
    angles = []
    for rotation in poses:
        relative = rotation @ first.T
        angles.append(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1, 1))))
    return np.array(angles)


@pytest.mark.parametrize("flags, camera_model", [([], "SIMPLE_PINHOLE"), (["--standard"], "PINHOLE")])
def test_convert_registers_every_photo(tmp_path, flags, camera_model):
    count = 6
    poses = write_photos(tmp_path / "input", count)
    assert convert.main(["-s", str(tmp_path), "--resize", "--threads", "1", *flags]) == 0

    cameras, images, points3d = read_model(tmp_path / "sparse" / "0")
    assert sorted(image.name for image in images.values()) == [f"photo_{index:02d}.jpg" for index in range(count)]
    # Undistortion leaves a SIMPLE_PINHOLE camera as it is and turns the standard OPENCV camera into PINHOLE.
    assert len(cameras) == 1 and next(iter(cameras.values())).model == camera_model
    assert len(points3d) > 100
    # SfM recovers poses up to a similarity: relative rotations are invariant to it. On 320x240 photos with
    # a 30 degree arc the estimate is off by about 0.5 degree at the ends (the focal length trades off against
    # the rotation); neighbouring views are 6 degrees apart, so a view matched to the wrong pose fails.
    estimated = [quaternion_to_rotation_matrix(image.qvec)
                 for image in sorted(images.values(), key=lambda image: image.name)]
    np.testing.assert_allclose(relative_rotation_angles(estimated),
                               relative_rotation_angles([rotation for rotation, _ in poses]), atol=1.5)
    if camera_model == "SIMPLE_PINHOLE":
        # The photos are pinhole images, so the blur settings' camera model is exact and its focal length comes
        # out near the truth. (The OPENCV fit of the standard settings trades focal length for distortion on six
        # small photos, and the undistorted image is framed anew.)
        assert next(iter(cameras.values())).params[0] == pytest.approx(FOCAL, rel=0.05)

    # The undistorted size is the camera's (the standard settings' undistortion crops).
    info = load_scene_info(str(tmp_path), resolution=2, eval=False)
    undistorted_width = next(iter(cameras.values())).width
    assert len(info.train_cameras) == count and info.train_cameras[0].width == round(undistorted_width / 2)
    assert info.train_cameras[0].image_path.endswith(os.path.join("images_2", "photo_00.jpg"))


def test_too_few_registered_photos(tmp_path, refusal):
    rng = np.random.default_rng(0)
    os.makedirs(tmp_path / "input")
    for index in range(3):
        # Unrelated smooth noise: nothing to match between photos.
        noise = cv2.GaussianBlur(rng.uniform(0, 255, size=(HEIGHT, WIDTH, 3)).astype(np.uint8), (0, 0), 3)
        cv2.imwrite(str(tmp_path / "input" / f"{index}.png"), noise)
    # One thread: RANSAC and bundle adjustment then give the same verdict every run.
    assert "photos could be registered" in refusal(convert.main, ["-s", str(tmp_path), "--threads", "1"])


def test_missing_input_folder(tmp_path, refusal):
    assert "input: folder not found" in refusal(convert.main, ["-s", str(tmp_path)])


def test_one_thread_gives_the_same_model_every_time(tmp_path):
    models = []
    for run in ("first", "second"):
        write_photos(tmp_path / run / "input", 6)
        assert convert.main(["-s", str(tmp_path / run), "--threads", "1", "--standard"]) == 0
        model = tmp_path / run / "sparse" / "0"
        models.append({name: (model / name).read_bytes() for name in sorted(os.listdir(model))})
    assert models[0] == models[1]


def test_threads_must_be_every_core_or_positive(tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert.main(["-s", str(tmp_path), "--threads", "0"])
    assert "--threads must be -1 (every core) or positive, got 0" in capsys.readouterr().err
