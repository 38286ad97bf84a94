import json
import logging
import os
import re

import cv2
import numpy as np
import pytest

import train
from scene.colmap_model import ColmapCamera, ColmapImage, ColmapPoint3D, read_model, write_model
from scene.dataset_readers import load_scene_info, scene_extent
from scene.errors import DatasetError
from scene.llff import load_poses_bounds, save_poses_bounds
from utils.geometry import rotation_matrix_to_quaternion

WIDTH, HEIGHT = 48, 32
FOCAL = 40.0


def swap_red_blue(image):
    """RGB(A) to cv2's BGR(A) order and back."""
    return image[:, :, [2, 1, 0, 3][:image.shape[2]]]


def write_png(path, rgb):
    """Write float RGB(A) in [0, 1] as an 8-bit image, PNG unless the path says otherwise."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), swap_red_blue(np.round(rgb * 255).astype(np.uint8)))


def read_png(path):
    return swap_red_blue(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)).astype(np.float32) / 255.0


def look_at(position, target=np.zeros(3)):
    """World-to-camera (OpenCV axes) of a camera at position looking at target, world y down."""
    forward = (target - position) / np.linalg.norm(target - position)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = np.stack([right, down, forward])
    world_to_camera[:3, 3] = -world_to_camera[:3, :3] @ position
    return world_to_camera


def camera_poses(count):
    angles = np.linspace(-0.5, 0.5, count)
    return [look_at(np.array([4 * np.sin(a), -0.5, -4 * np.cos(a)])) for a in angles]


def random_image(rng, width=WIDTH, height=HEIGHT, channels=3):
    return rng.uniform(size=(height, width, channels))


def write_colmap_scene(folder, count=6, ext=".bin", camera=None, image_size=(WIDTH, HEIGHT), seed=0,
                       point_count=30, image_ext=".png"):
    """images/ and sparse/0 for count views; returns (poses, points)."""
    rng = np.random.default_rng(seed)
    camera = camera or ColmapCamera(1, "PINHOLE", WIDTH, HEIGHT, np.array([FOCAL, FOCAL + 1, 23.0, 17.0]))
    poses = camera_poses(count)
    points = rng.uniform(-1, 1, size=(point_count, 3))
    images = {}
    for index, pose in enumerate(poses):
        name = f"img_{index:03d}{image_ext}"
        write_png(folder / "images" / name, random_image(rng, *image_size))
        # Image ids in reverse order: the readers must sort by name, not by id.
        image_id = count - index
        # Each view observes the first ten points; -1 and 999 are observations without a (known) 3D point.
        images[image_id] = ColmapImage(image_id, rotation_matrix_to_quaternion(pose[:3, :3]), pose[:3, 3], camera.id,
                                       name, np.zeros((12, 2)), np.array([*range(1, 11), -1, 999]))
    points3d = {
        index + 1: ColmapPoint3D(index + 1, point, np.array([index, 2 * index, 255 - index], np.uint8), 0.5,
                                 np.zeros(0, np.int64), np.zeros(0, np.int64))
        for index, point in enumerate(points)
    }
    write_model(folder / "sparse" / "0", {camera.id: camera}, images, points3d, ext=ext)
    return poses, points


def write_poses_bounds_scene(folder, count=10, seed=0, with_images=True):
    rng = np.random.default_rng(seed)
    poses = camera_poses(count)
    camera_to_world = np.array([np.linalg.inv(pose)[:3, :] for pose in poses])
    hwf = np.tile([HEIGHT, WIDTH, FOCAL], (count, 1))
    bounds = np.column_stack([rng.uniform(2.0, 2.5, count), rng.uniform(6.0, 7.0, count)])
    save_poses_bounds(folder / "poses_bounds.npy", camera_to_world, hwf, bounds)
    if with_images:
        for index in range(count):
            write_png(folder / "images" / f"{index:03d}.png", random_image(rng))
    return poses, bounds


# ---- poses_bounds.npy ----

def test_poses_bounds_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    poses = camera_poses(5)
    camera_to_world = np.array([np.linalg.inv(pose)[:3, :] for pose in poses])
    hwf = rng.uniform(100, 200, size=(5, 3))
    bounds = np.sort(rng.uniform(1, 10, size=(5, 2)), axis=1)
    save_poses_bounds(tmp_path / "poses_bounds.npy", camera_to_world, hwf, bounds)
    data = np.load(tmp_path / "poses_bounds.npy")
    assert data.shape == (5, 17) and data.dtype == np.float64
    loaded = load_poses_bounds(tmp_path / "poses_bounds.npy")
    for expected, actual in zip((camera_to_world, hwf, bounds), loaded):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


def test_poses_bounds_follows_llff_column_order(tmp_path):
    """An OpenGL camera with identity rotation ([right, up, back] = [x, y, z]) is stored by LLFF as
    [down, right, back] = [-y, x, z]; in OpenCV axes it is [x, -y, -z]."""
    pose = np.zeros((3, 5))
    pose[:, :3] = np.column_stack([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    pose[:, 3] = [1.0, 2.0, 3.0]
    pose[:, 4] = [HEIGHT, WIDTH, FOCAL]
    np.save(tmp_path / "poses_bounds.npy", np.concatenate([pose.ravel(), [2.0, 9.0]])[None])
    camera_to_world, hwf, bounds = load_poses_bounds(tmp_path / "poses_bounds.npy")
    np.testing.assert_array_equal(camera_to_world[0], np.column_stack([np.diag([1.0, -1.0, -1.0]), [1, 2, 3]]))
    np.testing.assert_array_equal(hwf[0], [HEIGHT, WIDTH, FOCAL])
    np.testing.assert_array_equal(bounds[0], [2.0, 9.0])


@pytest.mark.parametrize("content, message", [
    (np.zeros((4, 15)), "N x 17"),
    (np.full((2, 17), np.nan), "non-finite"),
    (None, "not a readable"),
])
def test_bad_poses_bounds(tmp_path, content, message):
    path = tmp_path / "poses_bounds.npy"
    if content is None:
        path.write_bytes(b"garbage")
    else:
        np.save(path, content)
    with pytest.raises(DatasetError, match=f"poses_bounds.npy.*{message}"):
        load_poses_bounds(path)


@pytest.mark.parametrize("factor, message", [
    (np.diag([2.0, 2.0, 2.0]), "pose 1 is not a rotation (its columns stray 3 from orthonormal)"),
    (np.diag([1.0, 1.0, -1.0]), "pose 1 is not a rotation but a mirroring (determinant -1)"),
    (np.diag([1.0, 1.0, 1e-4]), "pose 1 is singular"),
])
def test_poses_bounds_rotations_must_be_rotations(tmp_path, factor, message):
    """Scaled or mirrored cameras would render a distorted scene without a word."""
    write_poses_bounds_scene(tmp_path, count=3, with_images=False)
    data = np.load(tmp_path / "poses_bounds.npy")
    pose = data[1, :15].reshape(3, 5)
    pose[:, :3] = pose[:, :3] @ factor
    data[1, :15] = pose.ravel()
    np.save(tmp_path / "poses_bounds.npy", data)
    with pytest.raises(DatasetError, match=re.escape(f"poses_bounds.npy: {message}")):
        load_poses_bounds(tmp_path / "poses_bounds.npy")


# ---- COLMAP scenes ----

@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_colmap_scene(tmp_path, ext):
    poses, points = write_colmap_scene(tmp_path, count=6, ext=ext)
    (tmp_path / "hold=3").touch()
    info = load_scene_info(str(tmp_path))
    assert info.source_kind == "colmap"
    assert [camera.name for camera in info.test_cameras] == ["img_000.png", "img_003.png"]
    assert [camera.name for camera in info.train_cameras] == ["img_001.png", "img_002.png", "img_004.png",
                                                              "img_005.png"]
    for camera in info.train_cameras + info.test_cameras:
        index = int(camera.name[4:7])
        np.testing.assert_allclose(camera.world_to_camera, poses[index], atol=1e-12)
        assert (camera.fx, camera.fy, camera.cx, camera.cy) == (FOCAL, FOCAL + 1, 23.0, 17.0)
        assert camera.image.dtype == np.float32 and camera.image.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(camera.image, read_png(tmp_path / "images" / camera.name))
        assert 0 < camera.near < camera.far
    np.testing.assert_allclose(info.point_cloud.points, points, atol=1e-6)
    assert info.point_cloud.colors[3] == pytest.approx(np.array([3, 6, 252]) / 255)

    everything = load_scene_info(str(tmp_path), eval=False)
    assert len(everything.train_cameras) == 6 and everything.test_cameras == []
    assert len(load_scene_info(str(tmp_path), hold=2).test_cameras) == 3


def test_colmap_depth_bounds_enclose_observed_points(tmp_path):
    _, points = write_colmap_scene(tmp_path, count=3)
    for camera in load_scene_info(str(tmp_path), eval=False).train_cameras:
        depths = points[:10] @ camera.world_to_camera[:3, :3].T[:, 2] + camera.world_to_camera[2, 3]
        # The 0.1 and 99.9 percentiles of ten depths (about 0.2 apart) lie within 2e-3 of the extremes.
        assert depths.min() - 1e-2 <= camera.near <= depths.min() + 1e-2
        assert depths.max() - 1e-2 <= camera.far <= depths.max() + 1e-2


@pytest.mark.parametrize("resolution, size", [(2, (24, 16)), (4, (12, 8)), (8, (6, 4)), (24, (24, 16))])
def test_resolution_scales_intrinsics(tmp_path, resolution, size):
    write_colmap_scene(tmp_path, count=2)
    camera = load_scene_info(str(tmp_path), resolution=resolution, eval=False).train_cameras[0]
    assert (camera.width, camera.height) == size and camera.image.shape == (size[1], size[0], 3)
    scale = size[0] / WIDTH
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == pytest.approx(
        (FOCAL * scale, (FOCAL + 1) * scale, 23.0 * scale, 17.0 * scale))
    full = read_png(tmp_path / "images" / camera.name)
    # Area downscaling: every output pixel is the mean of its block of input pixels.
    factor = WIDTH // size[0]
    blocks = full.reshape(size[1], factor, size[0], factor, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(camera.image, blocks, atol=1e-5)


def test_prescaled_folder_is_used_when_it_matches(tmp_path):
    write_colmap_scene(tmp_path, count=2)
    for index in range(2):
        # Re-encoded under another extension, as LLFF's downscaling does with JPEG photos.
        write_png(tmp_path / "images_4" / f"img_{index:03d}.PNG", np.full((8, 12, 3), 0.2 * (index + 1)))
    camera = load_scene_info(str(tmp_path), resolution=4, eval=False).train_cameras[1]
    assert camera.image_path.endswith(os.path.join("images_4", "img_001.PNG"))
    np.testing.assert_allclose(camera.image, np.round(0.4 * 255) / 255)
    assert camera.fx == pytest.approx(FOCAL / 4)

    # The factor-2 request ignores images_4 and resizes images/.
    assert load_scene_info(str(tmp_path), resolution=2, eval=False).train_cameras[1].image_path.endswith(
        os.path.join("images", "img_001.png"))


def warned(caplog, fragment):
    return any(record.levelno == logging.WARNING and fragment in record.getMessage() for record in caplog.records)


def test_mismatched_prescaled_folder_falls_back(tmp_path, caplog):
    write_colmap_scene(tmp_path, count=2)
    for index in range(2):
        write_png(tmp_path / "images_4" / f"img_{index:03d}.png", np.zeros((20, 30, 3)))
    camera = load_scene_info(str(tmp_path), resolution=4, eval=False).train_cameras[0]
    assert warned(caplog, "does not match")
    assert camera.image_path.endswith(os.path.join("images", "img_000.png")) and camera.width == 12


# COLMAP parameters and their meaning as (fx, fy, cx, cy, k1, k2, p1, p2) of the OPENCV lens model.
DISTORTED_CAMERAS = [
    ("SIMPLE_RADIAL", [150.0, 81.0, 59.0, -0.2], [150.0, 150.0, 81.0, 59.0, -0.2, 0.0, 0.0, 0.0]),
    ("RADIAL", [150.0, 81.0, 59.0, -0.25, 0.06], [150.0, 150.0, 81.0, 59.0, -0.25, 0.06, 0.0, 0.0]),
    ("OPENCV", [150.0, 148.0, 81.0, 59.0, -0.25, 0.06, 0.002, -0.001],
     [150.0, 148.0, 81.0, 59.0, -0.25, 0.06, 0.002, -0.001]),
]


@pytest.mark.parametrize("model, params, lens", DISTORTED_CAMERAS)
def test_distorted_camera_is_undistorted(tmp_path, model, params, lens):
    """A smooth pattern seen through a distorting lens comes out as the same pattern through the pinhole camera
    the reader reports."""
    width, height = 160, 120
    fx, fy, cx, cy, *distortion = lens
    camera = ColmapCamera(1, model, width, height, np.array(params))
    write_colmap_scene(tmp_path, count=1, camera=camera, image_size=(width, height))

    def pattern(x, y):
        return np.stack([0.5 + 0.4 * np.sin(12 * x) * np.cos(9 * y), 0.5 + 0.4 * np.cos(7 * x + 5 * y),
                         0.5 + 0.3 * np.sin(10 * y)], axis=-1)

    def distort(x, y):
        """The OPENCV lens model (COLMAP's, which covers the radial ones) on normalised coordinates."""
        k1, k2, p1, p2 = distortion
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        return x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y

    # Ideal (undistorted) normalised coordinates of every pixel centre of the distorted photo, by fixed-point
    # iteration of the lens model.
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    distorted_x, distorted_y = (u - cx) / fx, (v - cy) / fy
    x, y = distorted_x.copy(), distorted_y.copy()
    for _ in range(200):
        forward_x, forward_y = distort(x, y)
        x, y = x + distorted_x - forward_x, y + distorted_y - forward_y
    np.testing.assert_allclose(distort(x, y), (distorted_x, distorted_y), atol=1e-10)
    photo = pattern(x, y)
    path = tmp_path / "images" / "img_000.png"
    cv2.imwrite(str(path), np.round(photo[:, :, ::-1] * 65535).astype(np.uint16))

    view = load_scene_info(str(tmp_path), eval=False).train_cameras[0]
    assert (view.width, view.height) == (width, height)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    expected = pattern((u - view.cx) / view.fx, (v - view.cy) / view.fy)
    inner = (slice(2, -2), slice(2, -2))
    # Bilinear resampling of this smooth pattern errs by under 1e-3 (measured 7e-4); shifting the pixel grid by half
    # a pixel would err by 0.017, and skipping the undistortion by 0.016 on average.
    assert np.abs(view.image - expected)[inner].max() < 3e-3
    assert np.abs(photo - expected)[inner].mean() > 0.01


def test_unsupported_camera_model_says_how_to_undistort(tmp_path):
    camera = ColmapCamera(1, "OPENCV_FISHEYE", WIDTH, HEIGHT, np.array([FOCAL, FOCAL, 24.0, 16.0, 0.1, 0, 0, 0]))
    write_colmap_scene(tmp_path, count=2, camera=camera)
    with pytest.raises(DatasetError, match="sparse.0.*OPENCV_FISHEYE.*image_undistorter.*convert.py"):
        load_scene_info(str(tmp_path))


def test_image_size_must_match_camera(tmp_path):
    write_colmap_scene(tmp_path, count=2)
    write_png(tmp_path / "images" / "img_001.png", np.zeros((HEIGHT, WIDTH + 10, 3)))
    with pytest.raises(DatasetError, match="img_001.png.*aspect ratio"):
        load_scene_info(str(tmp_path))


def test_corrupt_and_missing_images(tmp_path):
    write_colmap_scene(tmp_path, count=2)
    (tmp_path / "images" / "img_001.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="img_001.png: not a readable image"):
        load_scene_info(str(tmp_path))
    os.remove(tmp_path / "images" / "img_001.png")
    with pytest.raises(DatasetError, match="img_001.png: image not found"):
        load_scene_info(str(tmp_path))


def truncate(path, keep):
    """Cut the file at path to its first keep bytes (negative: all but the last -keep)."""
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize("image_ext, keep, message", [
    (".jpg", -200, "image data is truncated"),
    (".jpg", -2, "image data is truncated"),
    (".png", -200, "not a readable image"),
])
def test_truncated_image_is_an_error(tmp_path, image_ext, keep, message):
    """cv2 decodes a truncated JPEG with grey rows where the data ends (only libjpeg's stderr says so)."""
    write_colmap_scene(tmp_path, count=2, image_ext=image_ext)
    assert len(load_scene_info(str(tmp_path), eval=False).train_cameras) == 2
    truncate(tmp_path / "images" / f"img_001{image_ext}", keep)
    with pytest.raises(DatasetError, match=re.escape(f"img_001{image_ext}: {message}")):
        load_scene_info(str(tmp_path))


def test_jpeg_smaller_than_eight_pixels(tmp_path):
    """The completeness check decodes JPEG files at an eighth of their size, which must not round to nothing."""
    write_colmap_scene(tmp_path, count=1, image_ext=".jpg", image_size=(6, 4))
    assert load_scene_info(str(tmp_path), eval=False).train_cameras[0].image.shape == (HEIGHT, WIDTH, 3)


# ---- Deblur-NeRF scenes ----

def test_deblur_nerf_scene_without_colmap_model(tmp_path):
    poses, bounds = write_poses_bounds_scene(tmp_path, count=10)
    (tmp_path / "hold=4").touch()
    info = load_scene_info(str(tmp_path))
    assert info.source_kind == "deblur_nerf"
    assert [camera.name for camera in info.test_cameras] == ["000.png", "004.png", "008.png"]
    assert len(info.train_cameras) == 7
    for camera in info.train_cameras + info.test_cameras:
        index = int(camera.name[:3])
        np.testing.assert_allclose(camera.world_to_camera, poses[index], atol=1e-12)
        assert (camera.fx, camera.fy, camera.cx, camera.cy) == (FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2)
        assert (camera.near, camera.far) == tuple(bounds[index])

    # Random initial points: reproducible, and each inside the frustum of a training view within its bounds.
    points = info.point_cloud.points
    assert points.shape == (100_000, 3) and points.dtype == np.float32
    np.testing.assert_array_equal(points, load_scene_info(str(tmp_path)).point_cloud.points)
    inside_some_frustum = np.zeros(len(points), bool)
    for camera in info.train_cameras:
        local = points @ camera.world_to_camera[:3, :3].T + camera.world_to_camera[:3, 3]
        u = camera.fx * local[:, 0] / local[:, 2] + camera.cx
        v = camera.fy * local[:, 1] / local[:, 2] + camera.cy
        inside_some_frustum |= ((local[:, 2] > camera.near * (1 - 1e-5)) & (local[:, 2] < camera.far * (1 + 1e-5))
                                & (u > -1e-3) & (u < WIDTH + 1e-3) & (v > -1e-3) & (v < HEIGHT + 1e-3))
    assert inside_some_frustum.all()
    assert info.point_cloud.colors.min() >= 0 and info.point_cloud.colors.max() <= 1


def test_deblur_nerf_scene_with_colmap_model(tmp_path, caplog):
    """Cameras come from sparse/0 by name; the split counts every image in images/, registered or not."""
    poses, _ = write_colmap_scene(tmp_path, count=6)
    write_poses_bounds_scene(tmp_path, count=7, with_images=False)
    write_png(tmp_path / "images" / "img_001b.png", np.zeros((HEIGHT, WIDTH, 3)))
    (tmp_path / "hold=3").touch()
    info = load_scene_info(str(tmp_path))
    assert warned(caplog, "img_001b.png")
    assert info.source_kind == "deblur_nerf"
    # Name order: img_000, img_001, img_001b (unregistered), img_002, img_003, img_004, img_005.
    assert [camera.name for camera in info.test_cameras] == ["img_000.png", "img_002.png", "img_005.png"]
    assert [camera.name for camera in info.train_cameras] == ["img_001.png", "img_003.png", "img_004.png"]
    for camera in info.test_cameras:
        np.testing.assert_allclose(camera.world_to_camera, poses[int(camera.name[4:7])], atol=1e-12)
    assert len(info.point_cloud.points) == 30


def test_deblur_nerf_photos_must_match_poses_with_colmap_model(tmp_path):
    """poses_bounds.npy has one row per photo in name order, which the split follows: a photo more or less would
    shift the split index of every later view, turning sharp test views into training views."""
    write_colmap_scene(tmp_path, count=6)
    write_poses_bounds_scene(tmp_path, count=6, with_images=False)
    (tmp_path / "hold=3").touch()
    write_png(tmp_path / "images" / "img_002b.png", np.zeros((HEIGHT, WIDTH, 3)))
    with pytest.raises(DatasetError, match="poses_bounds.npy: 6 poses for 7 images in .*images.*images without a "
                                           "COLMAP pose: img_002b.png$"):
        load_scene_info(str(tmp_path))
    os.remove(tmp_path / "images" / "img_002b.png")
    os.remove(tmp_path / "images" / "img_004.png")
    with pytest.raises(DatasetError, match="poses_bounds.npy: 6 poses for 5 images in .*images.*COLMAP images "
                                           "missing from .*images: img_004.png$"):
        load_scene_info(str(tmp_path))


def test_pose_count_must_match_images(tmp_path):
    write_poses_bounds_scene(tmp_path, count=5)
    os.remove(tmp_path / "images" / "002.png")
    with pytest.raises(DatasetError, match="poses_bounds.npy: 5 poses for 4 images"):
        load_scene_info(str(tmp_path))


@pytest.mark.parametrize("names, message", [(["hold=x"], "hold=N"), (["hold=1"], "hold=N"),
                                            (["hold=4", "hold=5"], "several hold files")])
def test_bad_hold_files(tmp_path, names, message):
    write_poses_bounds_scene(tmp_path, count=4)
    for name in names:
        (tmp_path / name).touch()
    with pytest.raises(DatasetError, match=message):
        load_scene_info(str(tmp_path))


# ---- NeRF-synthetic scenes ----

def write_transforms(path, frames, angle=0.8):
    path.write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))


@pytest.mark.parametrize("white_background", [False, True])
def test_nerf_synthetic_scene(tmp_path, white_background):
    rng = np.random.default_rng(0)
    camera_to_world_gl = np.eye(4)
    camera_to_world_gl[:3, 3] = [0.0, 0.0, 4.0]  # looking down -z at the origin
    rgba = random_image(rng, channels=4)
    write_png(tmp_path / "train" / "r_0.png", rgba)
    write_png(tmp_path / "test" / "r_0.png", rgba)
    write_transforms(tmp_path / "transforms_train.json",
                     [{"file_path": "./train/r_0", "transform_matrix": camera_to_world_gl.tolist()}])
    write_transforms(tmp_path / "transforms_test.json",
                     [{"file_path": "./test/r_0.png", "transform_matrix": camera_to_world_gl.tolist()}])
    info = load_scene_info(str(tmp_path), white_background=white_background)
    assert info.source_kind == "nerf_synthetic"
    camera = info.train_cameras[0]
    assert len(info.test_cameras) == 1 and camera.name == "r_0"
    # The origin is 4 units in front of the camera (OpenCV: +z forward) and projects to the image centre.
    origin = camera.world_to_camera @ np.array([0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(origin[:3], [0.0, 0.0, 4.0], atol=1e-12)
    np.testing.assert_allclose(camera.world_to_camera[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    assert camera.fx == pytest.approx(WIDTH / 2 / np.tan(0.4)) and camera.fy == camera.fx
    assert (camera.cx, camera.cy) == (WIDTH / 2, HEIGHT / 2)
    stored = read_png(tmp_path / "train" / "r_0.png")
    background = 1.0 if white_background else 0.0
    expected = stored[:, :, :3] * stored[:, :, 3:] + background * (1 - stored[:, :, 3:])
    np.testing.assert_allclose(camera.image, expected, atol=1e-6)
    everything = load_scene_info(str(tmp_path), eval=False)
    assert len(everything.train_cameras) == 2 and everything.test_cameras == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "not a readable JSON"),
    (json.dumps({"frames": []}), "camera_angle_x"),
    (json.dumps({"camera_angle_x": 0.5, "frames": [{"file_path": "a"}]}), "frame 0 needs a finite 4x4"),
    (json.dumps({"camera_angle_x": 0.5, "frames": [{"file_path": "a", "transform_matrix": [
        [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]}]}),
     re.escape("frame 0's transform_matrix must end with the row [0, 0, 0, 1]")),
    (json.dumps({"camera_angle_x": 0.5, "frames": [{"file_path": "a", "transform_matrix": [
        [1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}),
     "frame 0's transform_matrix is not a rotation but a mirroring"),
])
def test_bad_transforms(tmp_path, content, message):
    (tmp_path / "transforms_train.json").write_text(content)
    with pytest.raises(DatasetError, match=f"transforms_train.json: {message}"):
        load_scene_info(str(tmp_path))


# ---- arguments and folders ----

@pytest.mark.parametrize("resolution", [0, 3, -4, 2.5, "4", True])
def test_bad_resolution(tmp_path, resolution):
    write_colmap_scene(tmp_path, count=2)
    with pytest.raises(DatasetError, match="resolution="):
        load_scene_info(str(tmp_path), resolution=resolution)


def test_target_width_larger_than_images(tmp_path):
    write_colmap_scene(tmp_path, count=2)
    with pytest.raises(DatasetError, match="resolution=100.*larger than the image width 48"):
        load_scene_info(str(tmp_path), resolution=100)


def test_unrecognised_and_missing_folders(tmp_path):
    with pytest.raises(DatasetError, match="scene folder not found"):
        load_scene_info(str(tmp_path / "nowhere"))
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="unrecognised scene folder.*convert.py"):
        load_scene_info(str(tmp_path))


# ---- broken datasets: one line naming the file from train.py, never a traceback ----

def singular_pose_in_poses_bounds(folder):
    write_poses_bounds_scene(folder, count=5)
    data = np.load(folder / "poses_bounds.npy")
    pose = data[3, :15].reshape(3, 5)
    pose[:, 2] = pose[:, 0]
    data[3, :15] = pose.ravel()
    np.save(folder / "poses_bounds.npy", data)
    return "poses_bounds.npy: pose 3 is singular"


def image_width_below_one_pixel_in_poses_bounds(folder):
    write_poses_bounds_scene(folder, count=4)
    data = np.load(folder / "poses_bounds.npy")
    data[2, 9] = 0.4  # the width entry of the [H, W, focal] column
    np.save(folder / "poses_bounds.npy", data)
    return "poses_bounds.npy: pose 2 has an image size under one pixel (height 32, width 0.4)"


def singular_transform_matrix(folder):
    rng = np.random.default_rng(0)
    write_png(folder / "train" / "r_0.png", random_image(rng))
    camera_to_world = np.eye(4)
    camera_to_world[:3, 1] = 0.0
    write_transforms(folder / "transforms_train.json",
                     [{"file_path": "train/r_0", "transform_matrix": camera_to_world.tolist()}])
    write_transforms(folder / "transforms_test.json",
                     [{"file_path": "train/r_0", "transform_matrix": np.eye(4).tolist()}])
    return "transforms_train.json: frame 0's transform_matrix is singular"


def zero_focal_length_in_colmap_camera(folder):
    write_colmap_scene(folder, count=3, camera=ColmapCamera(1, "PINHOLE", WIDTH, HEIGHT,
                                                            np.array([0.0, FOCAL, 23.0, 17.0])))
    return "cameras.bin: camera 1 has focal length 0.0"


def nan_in_points3d_text(folder):
    write_colmap_scene(folder, count=3, ext=".txt")
    path = folder / "sparse" / "0" / "points3D.txt"
    lines = path.read_text().splitlines()
    assert lines[6].startswith("4 ")  # three comment lines, then points 1, 2, 3
    fields = lines[6].split()
    fields[2] = "nan"
    lines[6] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return "points3D.txt, line 7: point 4 has a non-finite position"


def inf_in_points3d_binary(folder):
    write_colmap_scene(folder, count=3)
    model_folder = folder / "sparse" / "0"
    cameras, images, points3d = read_model(model_folder)
    points3d[5].xyz[2] = np.inf
    write_model(model_folder, cameras, images, points3d, ext=".bin")
    return "points3D.bin: point 5 has a non-finite position"


def single_sfm_point(folder):
    write_colmap_scene(folder, count=3, point_count=1)
    return "points3D.bin: only 1 3D point"


def truncated_jpeg(folder):
    write_colmap_scene(folder, count=3, image_ext=".jpg")
    truncate(folder / "images" / "img_002.jpg", -200)
    return "img_002.jpg: image data is truncated"


def extra_photo_beside_colmap_model(folder):
    write_colmap_scene(folder, count=3)
    write_poses_bounds_scene(folder, count=3, with_images=False)
    write_png(folder / "images" / "img_000b.png", np.zeros((HEIGHT, WIDTH, 3)))
    return "poses_bounds.npy: 3 poses for 4 images"


@pytest.mark.parametrize("break_dataset", [
    singular_pose_in_poses_bounds, image_width_below_one_pixel_in_poses_bounds, singular_transform_matrix,
    zero_focal_length_in_colmap_camera, nan_in_points3d_text, inf_in_points3d_binary, single_sfm_point,
    truncated_jpeg, extra_photo_beside_colmap_model,
], ids=lambda break_dataset: break_dataset.__name__)
def test_broken_dataset_ends_training_with_one_line_naming_the_file(tmp_path, capsys, break_dataset):
    scene_folder = tmp_path / "scene"
    scene_folder.mkdir()
    expected = break_dataset(scene_folder)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["-s", str(scene_folder), "-m", str(tmp_path / "run"), "--device", "cpu", "--iterations", "1"])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "Traceback" not in message
    assert re.fullmatch(f"train.py: error: {re.escape(str(scene_folder) + os.sep)}.*{re.escape(expected)}.*", message)


def test_scene_extent_is_3dgs_radius():
    class View:
        def __init__(self, center):
            self.world_to_camera = np.eye(4)
            self.world_to_camera[:3, 3] = -np.asarray(center, float)

    views = [View([0, 0, 0]), View([2, 0, 0]), View([1, 3, 0])]
    # Mean centre (1, 1, 0); the farthest centre is (1, 3, 0) at distance 2.
    assert scene_extent(views) == pytest.approx(2.2)
