"""Scene folders to cameras, images and initial points.

Three layouts are recognised, in this order:
- NeRF-synthetic: transforms_train.json and transforms_test.json (Blender/OpenGL camera-to-world matrices).
- Deblur-NeRF (LLFF): images/ and poses_bounds.npy, optionally sparse/0 and an empty file named hold=N.
- COLMAP: images/ and a sparse model in sparse/0 (binary or text).

Every camera comes out as a pinhole camera in the OpenCV convention (x right, y down, z forward) with pixel
centres at (i + 0.5, j + 0.5); distorted COLMAP cameras are undistorted on load.
"""

import json
import numbers
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from scene.colmap_model import DatasetError, model_extension, read_model, rotation_problem
from scene.llff import load_poses_bounds
from utils.geometry import (camera_centre, camera_to_world_matrix, quaternion_to_rotation_matrix,
                            world_to_camera_matrix)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
DOWNSCALE_FACTORS = (1, 2, 4, 8)
DEFAULT_HOLD = 8
RANDOM_POINT_COUNT = 100_000
RANDOM_POINT_SEED = 0
# The depth range NeRF uses for its Blender scenes, whose cameras sit about 4 units from the object.
NERF_SYNTHETIC_NEAR, NERF_SYNTHETIC_FAR = 2.0, 6.0
# Camera models whose lens distortion cv2 models exactly, by their COLMAP parameter layout.
DISTORTED_MODELS = ("SIMPLE_RADIAL", "RADIAL", "OPENCV")
# Gaussians start sized by the spacing of their SfM point to its nearest neighbours, so a point needs another one.
MIN_SFM_POINTS = 2


@dataclass
class BasicPointCloud:
    points: np.ndarray
    colors: np.ndarray


@dataclass
class CameraInfo:
    uid: int
    name: str
    image: np.ndarray
    world_to_camera: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float
    far: float
    image_path: str


@dataclass
class SceneInfo:
    train_cameras: list
    test_cameras: list
    point_cloud: BasicPointCloud
    scene_extent: float
    source_kind: str


def load_scene_info(source_path, resolution=1, eval=True, hold=None, white_background=False):
    """Read the scene in source_path.

    resolution: 1, 2, 4 or 8 divide the image size; a larger value is a target width in pixels.
    eval: hold out test views (False trains on every view, as original 3DGS does).
    hold: for COLMAP and Deblur-NeRF scenes, every hold-th image (by name, starting with the first) is a test
    view; by default the scene's hold=N file decides, or 8.
    white_background: colour composited under transparent pixels.
    """
    check_resolution(resolution)
    if not os.path.isdir(source_path):
        raise DatasetError(f"{source_path}: scene folder not found")
    background = np.ones(3, np.float32) if white_background else np.zeros(3, np.float32)

    if os.path.isfile(os.path.join(source_path, "transforms_train.json")):
        source_kind = "nerf_synthetic"
        train_cameras, test_cameras = read_nerf_synthetic(source_path, resolution, background)
        if not eval:
            train_cameras, test_cameras = train_cameras + test_cameras, []
        point_cloud = None
    else:
        hold = scene_hold(source_path, hold)
        has_colmap_model = os.path.isdir(os.path.join(source_path, "sparse", "0"))
        if os.path.isfile(os.path.join(source_path, "poses_bounds.npy")):
            source_kind = "deblur_nerf"
            if has_colmap_model:
                # The Deblurring-3DGS release: COLMAP cameras, Deblur-NeRF's split over every image in images/.
                views, point_cloud = read_colmap(
                    source_path, resolution, background, os.path.join(source_path, "poses_bounds.npy")
                )
            else:
                views, point_cloud = read_poses_bounds(source_path, resolution, background), None
        elif has_colmap_model:
            source_kind = "colmap"
            views, point_cloud = read_colmap(source_path, resolution, background)
        else:
            raise DatasetError(
                f"{source_path}: unrecognised scene folder (expected transforms_train.json, poses_bounds.npy or "
                f"sparse/0 with images/; for your own photos put them in {os.path.join(source_path, 'input')} "
                f"and run python convert.py -s {source_path})"
            )
        if eval:
            train_cameras = [camera for index, camera in views if index % hold != 0]
            test_cameras = [camera for index, camera in views if index % hold == 0]
        else:
            train_cameras, test_cameras = [camera for _, camera in views], []

    if not train_cameras:
        raise DatasetError(f"{source_path}: no training views (hold out fewer test views with a larger hold)")
    if point_cloud is None:
        # Only training views lend their colours: the test views of Deblur-NeRF scenes are the sharp references.
        point_cloud = random_points_in_frusta(train_cameras, RANDOM_POINT_COUNT, RANDOM_POINT_SEED)
    return SceneInfo(train_cameras, test_cameras, point_cloud, scene_extent(train_cameras), source_kind)


def check_resolution(resolution):
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral) or not (
        resolution in DOWNSCALE_FACTORS or resolution > max(DOWNSCALE_FACTORS)
    ):
        raise DatasetError(
            f"resolution={resolution!r}: expected a downscale factor 1, 2, 4 or 8, or a target width in pixels "
            f"larger than 8"
        )


def scene_hold(source_path, hold):
    """The test-view spacing: the hold argument, else the scene's hold=N file, else 8."""
    if hold is not None:
        if isinstance(hold, bool) or not isinstance(hold, numbers.Integral) or hold < 2:
            raise DatasetError(f"hold={hold!r}: expected an integer of at least 2")
        return int(hold)
    hold_files = [name for name in os.listdir(source_path) if name.startswith("hold=")]
    if not hold_files:
        return DEFAULT_HOLD
    if len(hold_files) > 1:
        raise DatasetError(f"{source_path}: several hold files ({', '.join(sorted(hold_files))}); keep one")
    match = re.fullmatch(r"hold=(\d+)", hold_files[0])
    if match is None or int(match.group(1)) < 2:
        raise DatasetError(
            f"{os.path.join(source_path, hold_files[0])}: a hold file must be named hold=N with an integer N >= 2"
        )
    return int(match.group(1))


def list_images(source_path):
    """Names of the image files in source_path/images, sorted."""
    folder = os.path.join(source_path, "images")
    if not os.path.isdir(folder):
        raise DatasetError(f"{folder}: image folder not found")
    names = sorted(name for name in os.listdir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise DatasetError(f"{folder}: no .png or .jpg images")
    return names


# ---- images ----

def read_image(path, background):
    """An image file as float32 RGB in [0, 1], transparent pixels composited over background."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: image not found")
    check_jpeg_is_complete(path)
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"{path}: not a readable image (an unknown format, or truncated or corrupt data)")
    if data.dtype == np.uint8:
        image = data.astype(np.float32) / 255.0
    elif data.dtype == np.uint16:
        image = data.astype(np.float32) / 65535.0
    else:
        raise DatasetError(f"{path}: unsupported pixel type {data.dtype} (expected 8- or 16-bit images)")
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    if channels == 4:
        rgb, alpha = image[:, :, 2::-1], image[:, :, 3:]
        return np.ascontiguousarray(rgb * alpha + background * (1.0 - alpha), dtype=np.float32)
    raise DatasetError(f"{path}: unsupported image with {channels} channels")


def check_jpeg_is_complete(path):
    """Decode a JPEG file with Pillow, which refuses compressed data that ends early, where cv2 fills the missing
    rows with grey and only warns on stderr (truncated PNG files cv2 refuses itself)."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return
            # An eighth of the size still decodes every byte of the compressed data, in half the time.
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        # A format or a size Pillow does not take: cv2 alone decides.
        return
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"{path}: image data is truncated or corrupt ({error})") from None


def target_size(reference_width, reference_height, resolution, path):
    """Output (width, height) for images whose full size is the reference size."""
    if resolution in DOWNSCALE_FACTORS:
        width, height = reference_width / resolution, reference_height / resolution
    else:
        if resolution > reference_width:
            raise DatasetError(
                f"resolution={resolution}: target width larger than the image width {reference_width} of {path}"
            )
        width, height = resolution, reference_height * resolution / reference_width
    return max(1, round(width)), max(1, round(height))


def find_image(folder, name):
    """Path of name in folder, or of a file with its stem and another image extension (downscaled copies are
    often re-encoded, e.g. JPEG to PNG); None when there is neither."""
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        return path
    stem = os.path.splitext(path)[0]
    for ext in IMAGE_EXTENSIONS:
        for candidate in (stem + ext, stem + ext.upper()):
            if os.path.isfile(candidate):
                return candidate
    return None


def downscaled_copy(source_path, name, resolution):
    """The copy of images/name in an images_<resolution> folder (LLFF's pre-downscaled images), if any."""
    folder = os.path.join(source_path, f"images_{resolution}")
    if resolution == 1 or resolution not in DOWNSCALE_FACTORS or not os.path.isdir(folder):
        return None
    return find_image(folder, name)


def load_view_image(image_path, reference_size, resolution, background, downscaled_path=None):
    """The image of one view at the requested resolution; returns (image, path read, (scale x, scale y)) where
    the scales map the reference (full-size) intrinsics to the returned image.

    reference_size: (width, height) the camera's intrinsics refer to, or None for the image file's own size.
    downscaled_path: a pre-downscaled copy, used when its size matches the requested one.
    """
    if reference_size is None:
        image = read_image(image_path, background)
        reference_size = (image.shape[1], image.shape[0])
    else:
        image = None
    width, height = target_size(*reference_size, resolution, image_path)
    if downscaled_path is not None:
        downscaled = read_image(downscaled_path, background)
        if abs(downscaled.shape[1] - width) <= 1 and abs(downscaled.shape[0] - height) <= 1:
            return downscaled, downscaled_path, scales(downscaled, reference_size)
        warnings.warn(
            f"{downscaled_path}: size {downscaled.shape[1]}x{downscaled.shape[0]} does not match the requested "
            f"{width}x{height}; resizing {image_path} instead"
        )
    if image is None:
        image = read_image(image_path, background)
    # A photo of the right shape but another size (e.g. already downscaled) is fine: intrinsics scale with it.
    expected_height = image.shape[1] * reference_size[1] / reference_size[0]
    if abs(image.shape[0] - expected_height) > 1.0:
        raise DatasetError(
            f"{image_path}: size {image.shape[1]}x{image.shape[0]} does not have the aspect ratio of its camera "
            f"({reference_size[0]}x{reference_size[1]})"
        )
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image, image_path, scales(image, reference_size)


def scales(image, reference_size):
    return image.shape[1] / reference_size[0], image.shape[0] / reference_size[1]


# ---- COLMAP ----

def colmap_intrinsics(camera, model_folder):
    """(fx, fy, cx, cy, OpenCV distortion coefficients or None) of a COLMAP camera."""
    params = camera.params
    if camera.model == "SIMPLE_PINHOLE":
        return params[0], params[0], params[1], params[2], None
    if camera.model == "PINHOLE":
        return params[0], params[1], params[2], params[3], None
    if camera.model == "SIMPLE_RADIAL":
        return params[0], params[0], params[1], params[2], np.array([params[3], 0.0, 0.0, 0.0])
    if camera.model == "RADIAL":
        return params[0], params[0], params[1], params[2], np.array([params[3], params[4], 0.0, 0.0])
    if camera.model == "OPENCV":
        return params[0], params[1], params[2], params[3], np.array(params[4:8])
    raise DatasetError(
        f"{model_folder}: camera {camera.id} uses the {camera.model} model, which is not supported (supported: "
        f"PINHOLE, SIMPLE_PINHOLE, and {', '.join(DISTORTED_MODELS)}, undistorted on load); undistort the images "
        f"first, e.g. with colmap image_undistorter, or run python convert.py on the original photos"
    )


@lru_cache(maxsize=2)
def undistortion(fx, fy, cx, cy, distortion, width, height):
    """Remap tables and pinhole intrinsics (fx, fy, cx, cy) of the undistorted image, of the same size, framed so
    that every output pixel sees the scene (no black borders to learn)."""
    # cv2 puts pixel centres at integer coordinates, half a pixel away from ours.
    matrix = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    coefficients = np.array(distortion)
    new_matrix, _ = cv2.getOptimalNewCameraMatrix(matrix, coefficients, (width, height), 0.0, (width, height))
    map_x, map_y = cv2.initUndistortRectifyMap(matrix, coefficients, None, new_matrix, (width, height), cv2.CV_32FC1)
    intrinsics = (new_matrix[0, 0], new_matrix[1, 1], new_matrix[0, 2] + 0.5, new_matrix[1, 2] + 0.5)
    return map_x, map_y, intrinsics


def pinhole_view(intrinsics, image, scale):
    """Intrinsics (from colmap_intrinsics) scaled to image, and the image undistorted when they include lens
    distortion."""
    fx, fy, cx, cy, distortion = intrinsics
    fx, fy, cx, cy = fx * scale[0], fy * scale[1], cx * scale[0], cy * scale[1]
    if distortion is None or not distortion.any():
        return image, (fx, fy, cx, cy)
    map_x, map_y, intrinsics = undistortion(fx, fy, cx, cy, tuple(distortion), image.shape[1], image.shape[0])
    undistorted = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return undistorted, intrinsics


def depth_bounds(world_to_camera, points):
    """Near and far depth of the points in front of the camera (0.1 and 99.9 percentiles, as LLFF does)."""
    depths = points @ world_to_camera[:3, :3].T[:, 2] + world_to_camera[2, 3]
    depths = depths[depths > 0]
    if len(depths) == 0:
        return None
    near, far = np.percentile(depths, [0.1, 99.9])
    return float(near), float(max(far, near * 1.01))


def read_colmap(source_path, resolution, background, poses_path=None):
    """Views as (split index, CameraInfo) and the SfM points of source_path/sparse/0.

    The split index is the place in name order among the registered images or, given the poses_bounds.npy of a
    Deblur-NeRF scene (poses_path), among all the images in images/, one per row of that file; images COLMAP did not
    register are then skipped with a warning.
    """
    model_folder = os.path.join(source_path, "sparse", "0")
    cameras, images, points3d = read_model(model_folder)
    if not images:
        raise DatasetError(f"{model_folder}: the COLMAP model has no registered images")
    if len(points3d) < MIN_SFM_POINTS:
        raise DatasetError(
            f"{os.path.join(model_folder, 'points3D' + model_extension(model_folder))}: only {len(points3d)} 3D "
            f"point(s), and the initial Gaussians need at least {MIN_SFM_POINTS} (re-run the reconstruction, e.g. "
            f"python convert.py)"
        )
    by_name = {image.name: image for image in images.values()}
    if poses_path is None:
        split_names = sorted(by_name)
    else:
        split_names = list_images(source_path)
        check_image_count(poses_path, len(load_poses_bounds(poses_path)[0]), source_path, split_names, by_name)
        missing = [name for name in split_names if name not in by_name]
        if missing:
            warnings.warn(f"{model_folder}: images without a COLMAP pose are skipped: {', '.join(missing)}")

    point_ids = np.array(list(points3d), dtype=np.int64)
    xyz = np.array([point.xyz for point in points3d.values()], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([point.rgb for point in points3d.values()], dtype=np.float32).reshape(-1, 3)
    row_of_id = dict(zip(point_ids.tolist(), range(len(point_ids))))
    intrinsics = {
        image.camera_id: colmap_intrinsics(cameras[image.camera_id], model_folder) for image in images.values()
    }

    views = []
    for index, name in enumerate(split_names):
        if name not in by_name:
            continue
        colmap_image = by_name[name]
        camera = cameras[colmap_image.camera_id]
        world_to_camera = world_to_camera_matrix(quaternion_to_rotation_matrix(colmap_image.qvec), colmap_image.tvec)
        image, image_path, scale = load_view_image(
            os.path.join(source_path, "images", name), (camera.width, camera.height), resolution, background,
            downscaled_copy(source_path, name, resolution),
        )
        image, (fx, fy, cx, cy) = pinhole_view(intrinsics[camera.id], image, scale)
        seen = [row_of_id[point_id] for point_id in colmap_image.point3d_ids.tolist() if point_id in row_of_id]
        bounds = depth_bounds(world_to_camera, xyz[seen]) or depth_bounds(world_to_camera, xyz)
        if bounds is None:
            raise DatasetError(
                f"{model_folder}: no 3D point lies in front of image {name!r}, so its depth range is unknown "
                f"(re-run the reconstruction, e.g. python convert.py)"
            )
        views.append((index, CameraInfo(
            index, name, image, world_to_camera, fx, fy, cx, cy, image.shape[1], image.shape[0], *bounds, image_path,
        )))
    if not views:
        raise DatasetError(f"{model_folder}: none of the images in {source_path}/images has a COLMAP pose")
    return views, BasicPointCloud(xyz.astype(np.float32), rgb / 255.0)


# ---- Deblur-NeRF ----

def check_image_count(poses_path, pose_count, source_path, names, registered_names=()):
    """poses_bounds.npy pairs its rows with the images in name order, and the split counts along that order: an
    image more or less would move sharp test views into training. registered_names: the images of a COLMAP model
    beside it, which tell which images are the odd ones out."""
    if len(names) == pose_count:
        return
    folder = os.path.join(source_path, "images")
    message = f"{poses_path}: {pose_count} poses for {len(names)} images in {folder}"
    unregistered = [name for name in names if name not in registered_names]
    absent = sorted(set(registered_names) - set(names))
    if len(names) > pose_count and unregistered:
        message += f"; images without a COLMAP pose: {', '.join(unregistered)}"
    elif len(names) < pose_count and absent:
        message += f"; COLMAP images missing from {folder}: {', '.join(absent)}"
    raise DatasetError(message)


def read_poses_bounds(source_path, resolution, background):
    """Views as (split index, CameraInfo) from poses_bounds.npy and images/ (matched in name order)."""
    poses_path = os.path.join(source_path, "poses_bounds.npy")
    camera_to_world, hwf, bounds = load_poses_bounds(poses_path)
    names = list_images(source_path)
    check_image_count(poses_path, len(camera_to_world), source_path, names)
    views = []
    for index, name in enumerate(names):
        height, width, focal = hwf[index]
        reference_size = (int(round(width)), int(round(height)))
        image, image_path, scale = load_view_image(
            os.path.join(source_path, "images", name), reference_size, resolution, background,
            downscaled_copy(source_path, name, resolution),
        )
        world_to_camera = np.linalg.inv(np.vstack([camera_to_world[index], [0.0, 0.0, 0.0, 1.0]]))
        views.append((index, CameraInfo(
            index, name, image, world_to_camera, focal * scale[0], focal * scale[1], width / 2 * scale[0],
            height / 2 * scale[1], image.shape[1], image.shape[0], bounds[index, 0], bounds[index, 1], image_path,
        )))
    return views


# ---- NeRF-synthetic ----

def read_transforms(path, resolution, background, first_uid):
    try:
        with open(path, "r", encoding="utf-8") as file:
            transforms = json.load(file)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(transforms, dict):
        raise DatasetError(f"{path}: expected a JSON object with camera_angle_x and frames")
    angle = transforms.get("camera_angle_x")
    if isinstance(angle, bool) or not isinstance(angle, numbers.Real) or not 0 < angle < np.pi:
        raise DatasetError(f"{path}: camera_angle_x must be a number of radians in (0, pi), got {angle!r}")
    frames = transforms.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: frames must be a non-empty list")

    folder = os.path.dirname(path)
    cameras = []
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise DatasetError(f"{path}: frame {number} has no file_path string")
        try:
            camera_to_world = np.array(frame.get("transform_matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            camera_to_world = np.zeros(0)
        if camera_to_world.shape != (4, 4) or not np.isfinite(camera_to_world).all():
            raise DatasetError(f"{path}: frame {number} needs a finite 4x4 transform_matrix")
        problem = rotation_problem(camera_to_world[:3, :3])
        if problem is not None:
            raise DatasetError(f"{path}: frame {number}'s transform_matrix {problem}")
        if not np.allclose(camera_to_world[3], [0.0, 0.0, 0.0, 1.0], rtol=0.0, atol=1e-6):
            raise DatasetError(
                f"{path}: frame {number}'s transform_matrix must end with the row [0, 0, 0, 1], got "
                f"{camera_to_world[3].tolist()}"
            )
        # Blender cameras look down -z with y up; OpenCV's look down +z with y down.
        camera_to_world[:3, 1:3] *= -1
        file_path = frame["file_path"]
        if not file_path.lower().endswith(IMAGE_EXTENSIONS):
            file_path += ".png"
        image, image_path, _ = load_view_image(os.path.join(folder, file_path), None, resolution, background)
        width, height = image.shape[1], image.shape[0]
        focal = width / (2.0 * np.tan(angle / 2.0))
        cameras.append(CameraInfo(
            first_uid + number, os.path.splitext(os.path.basename(file_path))[0], image,
            np.linalg.inv(camera_to_world), focal, focal, width / 2.0, height / 2.0, width, height,
            NERF_SYNTHETIC_NEAR, NERF_SYNTHETIC_FAR, image_path,
        ))
    return cameras


def read_nerf_synthetic(source_path, resolution, background):
    train_cameras = read_transforms(os.path.join(source_path, "transforms_train.json"), resolution, background, 0)
    test_cameras = read_transforms(
        os.path.join(source_path, "transforms_test.json"), resolution, background, len(train_cameras)
    )
    return train_cameras, test_cameras


# ---- initial points and normalisation ----

def random_points_in_frusta(cameras, count, seed):
    """Points spread over the cameras' view frusta between their near and far bounds, coloured by the pixel
    they were drawn through.

    Depths are uniform in inverse depth, as NeRF samples forward-facing scenes: a uniform depth would put almost
    every point near the far bound, where the scene is least detailed.
    """
    rng = np.random.default_rng(seed)
    camera_of_point = rng.integers(len(cameras), size=count)
    points = np.empty((count, 3), np.float32)
    colors = np.empty((count, 3), np.float32)
    for index, camera in enumerate(cameras):
        chosen = np.flatnonzero(camera_of_point == index)
        u = rng.uniform(0.0, camera.width, size=len(chosen))
        v = rng.uniform(0.0, camera.height, size=len(chosen))
        depth = 1.0 / rng.uniform(1.0 / camera.far, 1.0 / camera.near, size=len(chosen))
        camera_points = np.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones_like(u)], 1)
        camera_to_world = camera_to_world_matrix(camera.world_to_camera)
        points[chosen] = (camera_points * depth[:, None]) @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
        colors[chosen] = camera.image[v.astype(np.int64), u.astype(np.int64)]
    return BasicPointCloud(points, colors)


def scene_extent(cameras):
    """3DGS's normalisation radius: 1.1 times the largest distance of a camera centre from their mean."""
    centers = np.array([camera_centre(camera.world_to_camera) for camera in cameras])
    radius = 1.1 * np.linalg.norm(centers - centers.mean(axis=0), axis=1).max()
    # A single view (or views from one spot) has no spread; a unit radius keeps learning rates meaningful.
    return float(radius) if radius > 1e-6 else 1.0
