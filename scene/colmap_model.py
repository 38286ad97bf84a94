"""Reading and writing COLMAP sparse models (cameras, images, points3D) in COLMAP's binary and text formats.

Poses follow COLMAP: qvec (w, x, y, z) and tvec map world points into the camera frame (x right, y down,
z forward).
"""

import os
import struct
from dataclasses import dataclass

import numpy as np

from scene.errors import DatasetError


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: np.ndarray


@dataclass
class ColmapImage:
    id: int
    qvec: np.ndarray
    tvec: np.ndarray
    camera_id: int
    name: str
    xys: np.ndarray
    point3d_ids: np.ndarray


@dataclass
class ColmapPoint3D:
    id: int
    xyz: np.ndarray
    rgb: np.ndarray
    error: float
    image_ids: np.ndarray
    point2d_idxs: np.ndarray


# COLMAP's camera model ids (the order of its model enumeration), their parameter counts and how many of the
# leading parameters are focal lengths (f, or fx and fy).
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3, 1),
    1: ("PINHOLE", 4, 2),
    2: ("SIMPLE_RADIAL", 4, 1),
    3: ("RADIAL", 5, 1),
    4: ("OPENCV", 8, 2),
    5: ("OPENCV_FISHEYE", 8, 2),
    6: ("FULL_OPENCV", 12, 2),
    7: ("FOV", 5, 2),
    8: ("SIMPLE_RADIAL_FISHEYE", 4, 1),
    9: ("RADIAL_FISHEYE", 5, 1),
    10: ("THIN_PRISM_FISHEYE", 12, 2),
}
MODEL_IDS = {name: model_id for model_id, (name, _, _) in CAMERA_MODELS.items()}
PARAM_COUNTS = {name: count for name, count, _ in CAMERA_MODELS.values()}
FOCAL_COUNTS = {name: count for name, _, count in CAMERA_MODELS.values()}
# How far a camera rotation read from a file may be from orthonormal: float32 storage errs by about 1e-7.
ROTATION_TOLERANCE = 1e-3

MODEL_FILES = ("cameras", "images", "points3D")

POINT2D_DTYPE = np.dtype([("x", "<f8"), ("y", "<f8"), ("point3d_id", "<i8")])
TRACK_DTYPE = np.dtype([("image_id", "<i4"), ("point2d_idx", "<i4")])


def rotation_problem(rotation):
    """What keeps a 3x3 matrix from being a camera rotation, as the end of a sentence ("is singular (...)"), or None
    when it is one within ROTATION_TOLERANCE."""
    rotation = np.asarray(rotation, dtype=np.float64)
    determinant = np.linalg.det(rotation)
    if abs(determinant) < ROTATION_TOLERANCE:
        return f"is singular (determinant {determinant:.3g})"
    if determinant < 0:
        return f"is not a rotation but a mirroring (determinant {determinant:.6g})"
    deviation = np.abs(rotation.T @ rotation - np.eye(3)).max()
    if deviation > ROTATION_TOLERANCE:
        return f"is not a rotation (its columns stray {deviation:.3g} from orthonormal)"
    return None


def model_extension(folder):
    """".bin" or ".txt", whichever complete set of model files the folder holds (binary preferred)."""
    for ext in (".bin", ".txt"):
        if all(os.path.isfile(os.path.join(folder, name + ext)) for name in MODEL_FILES):
            return ext
    raise DatasetError(
        f"{folder}: no COLMAP model found (expected cameras, images and points3D as .bin or .txt files)"
    )


def read_model(folder):
    """Read a COLMAP sparse model; returns (cameras, images, points3d), dicts keyed by id."""
    ext = model_extension(folder)
    if ext == ".bin":
        readers = (read_cameras_binary, read_images_binary, read_points3d_binary)
    else:
        readers = (read_cameras_text, read_images_text, read_points3d_text)
    cameras, images, points3d = (
        reader(os.path.join(folder, name + ext)) for reader, name in zip(readers, MODEL_FILES)
    )
    for image in images.values():
        if image.camera_id not in cameras:
            raise DatasetError(
                f"{os.path.join(folder, 'images' + ext)}: image {image.name!r} refers to camera {image.camera_id}, "
                f"which is not in cameras{ext}"
            )
    return cameras, images, points3d


def write_model(folder, cameras, images, points3d, ext=".txt"):
    """Write a COLMAP sparse model into folder (created if needed) as ".txt" or ".bin" files."""
    if ext not in (".txt", ".bin"):
        raise ValueError(f"write_model: ext must be '.txt' or '.bin', not {ext!r}")
    os.makedirs(folder, exist_ok=True)
    if ext == ".bin":
        writers = (write_cameras_binary, write_images_binary, write_points3d_binary)
    else:
        writers = (write_cameras_text, write_images_text, write_points3d_text)
    for writer, name, items in zip(writers, MODEL_FILES, (cameras, images, points3d)):
        writer(os.path.join(folder, name + ext), items)


def make_camera(location, camera_id, model, width, height, params):
    """location: the file, and the line for text files, that error messages name."""
    if model not in PARAM_COUNTS:
        raise DatasetError(f"{location}: camera {camera_id} has unknown camera model {model!r}")
    params = np.asarray(params, dtype=np.float64)
    if len(params) != PARAM_COUNTS[model]:
        raise DatasetError(
            f"{location}: camera {camera_id} ({model}) has {len(params)} parameters, expected {PARAM_COUNTS[model]}"
        )
    if width <= 0 or height <= 0:
        raise DatasetError(f"{location}: camera {camera_id} has invalid size {width}x{height}")
    if not np.isfinite(params).all():
        raise DatasetError(f"{location}: camera {camera_id} has non-finite parameters {params.tolist()}")
    for focal in params[:FOCAL_COUNTS[model]]:
        if focal <= 0:
            raise DatasetError(f"{location}: camera {camera_id} has focal length {focal} (it must be positive)")
    return ColmapCamera(int(camera_id), model, int(width), int(height), params)


def checked_qvec(location, image_id, qvec, tvec):
    """The pose's quaternion scaled to unit length, as COLMAP does on reading: any other norm would scale and skew
    the rotation matrix."""
    norm = np.linalg.norm(qvec)
    if not (np.isfinite(qvec).all() and np.isfinite(tvec).all()) or not 1e-8 < norm < np.inf:
        raise DatasetError(
            f"{location}: image {image_id} has an invalid pose (qvec {qvec.tolist()}, tvec {tvec.tolist()})"
        )
    return qvec / norm


def check_position(location, point_id, xyz):
    if not np.isfinite(xyz).all():
        raise DatasetError(f"{location}: point {point_id} has a non-finite position {xyz.tolist()}")


# ---- binary files ----

class BinaryReader:
    """Sequential reads from a file's bytes; running past the end is a DatasetError naming the file."""

    def __init__(self, path):
        try:
            with open(path, "rb") as file:
                self.data = file.read()
        except OSError as error:
            raise DatasetError(f"{path}: cannot read ({error.strerror})") from error
        self.path = path
        self.offset = 0

    def unpack(self, fmt):
        size = struct.calcsize("<" + fmt)
        if self.offset + size > len(self.data):
            raise DatasetError(f"{self.path}: file is truncated (ends at byte {len(self.data)})")
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return values

    def array(self, dtype, count):
        size = dtype.itemsize * count
        if count < 0 or self.offset + size > len(self.data):
            raise DatasetError(f"{self.path}: file is truncated (ends at byte {len(self.data)})")
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += size
        return values

    def string(self):
        end = self.data.find(b"\0", self.offset)
        if end < 0:
            raise DatasetError(f"{self.path}: file is truncated inside an image name")
        try:
            text = self.data[self.offset:end].decode("utf-8")
        except UnicodeDecodeError as error:
            raise DatasetError(f"{self.path}: image name at byte {self.offset} is not valid UTF-8") from error
        self.offset = end + 1
        return text

    def finish(self):
        if self.offset != len(self.data):
            raise DatasetError(
                f"{self.path}: {len(self.data) - self.offset} unexpected bytes after the last record"
            )


def read_cameras_binary(path):
    reader = BinaryReader(path)
    cameras = {}
    (count,) = reader.unpack("Q")
    for _ in range(count):
        camera_id, model_id, width, height = reader.unpack("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DatasetError(f"{path}: camera {camera_id} has unknown camera model id {model_id}")
        model, param_count, _ = CAMERA_MODELS[model_id]
        params = reader.unpack("d" * param_count)
        cameras[camera_id] = make_camera(path, camera_id, model, width, height, params)
    reader.finish()
    return cameras


def read_images_binary(path):
    reader = BinaryReader(path)
    images = {}
    (count,) = reader.unpack("Q")
    for _ in range(count):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.unpack("idddddddi")
        name = reader.string()
        (point_count,) = reader.unpack("Q")
        points2d = reader.array(POINT2D_DTYPE, point_count)
        tvec = np.array([tx, ty, tz])
        qvec = checked_qvec(path, image_id, np.array([qw, qx, qy, qz]), tvec)
        images[image_id] = ColmapImage(
            image_id, qvec, tvec, camera_id, name,
            np.stack([points2d["x"], points2d["y"]], axis=1), points2d["point3d_id"].astype(np.int64),
        )
    reader.finish()
    return images


def read_points3d_binary(path):
    reader = BinaryReader(path)
    points3d = {}
    (count,) = reader.unpack("Q")
    for _ in range(count):
        point_id, x, y, z, r, g, b, error, track_length = reader.unpack("QdddBBBdQ")
        track = reader.array(TRACK_DTYPE, track_length)
        xyz = np.array([x, y, z])
        check_position(path, point_id, xyz)
        points3d[point_id] = ColmapPoint3D(
            point_id, xyz, np.array([r, g, b], dtype=np.uint8), error,
            track["image_id"].astype(np.int64), track["point2d_idx"].astype(np.int64),
        )
    reader.finish()
    return points3d


def write_cameras_binary(path, cameras):
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(cameras)))
        for camera in cameras.values():
            params = np.asarray(camera.params, dtype="<f8")
            file.write(struct.pack("<iiQQ", camera.id, MODEL_IDS[camera.model], camera.width, camera.height))
            file.write(params.tobytes())


def write_images_binary(path, images):
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(images)))
        for image in images.values():
            file.write(struct.pack("<i", image.id))
            file.write(np.asarray(image.qvec, dtype="<f8").tobytes())
            file.write(np.asarray(image.tvec, dtype="<f8").tobytes())
            file.write(struct.pack("<i", image.camera_id))
            file.write(image.name.encode("utf-8") + b"\0")
            points2d = np.empty(len(image.point3d_ids), dtype=POINT2D_DTYPE)
            xys = np.asarray(image.xys, dtype=np.float64).reshape(-1, 2)
            points2d["x"], points2d["y"] = xys[:, 0], xys[:, 1]
            points2d["point3d_id"] = image.point3d_ids
            file.write(struct.pack("<Q", len(points2d)))
            file.write(points2d.tobytes())


def write_points3d_binary(path, points3d):
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(points3d)))
        for point in points3d.values():
            file.write(struct.pack("<Q", point.id))
            file.write(np.asarray(point.xyz, dtype="<f8").tobytes())
            file.write(np.asarray(point.rgb, dtype=np.uint8).tobytes())
            file.write(struct.pack("<d", point.error))
            track = np.empty(len(point.image_ids), dtype=TRACK_DTYPE)
            track["image_id"], track["point2d_idx"] = point.image_ids, point.point2d_idxs
            file.write(struct.pack("<Q", len(track)))
            file.write(track.tobytes())


# ---- text files ----

def read_text_lines(path):
    """(line number, stripped line) for every line that is not a comment."""
    try:
        with open(path, "r", encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read as text ({error})") from error
    return [(number, line.strip()) for number, line in enumerate(lines, start=1) if not line.lstrip().startswith("#")]


def parse_numbers(path, number, fields, kind):
    try:
        return [kind(field) for field in fields]
    except ValueError as error:
        raise DatasetError(f"{path}, line {number}: expected numbers, got {' '.join(fields)!r}") from error


def read_cameras_text(path):
    cameras = {}
    for number, line in read_text_lines(path):
        if not line:
            continue
        fields = line.split()
        if len(fields) < 4:
            raise DatasetError(f"{path}, line {number}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[], got {line!r}")
        camera_id, width, height = parse_numbers(path, number, [fields[0], fields[2], fields[3]], int)
        params = parse_numbers(path, number, fields[4:], float)
        cameras[camera_id] = make_camera(f"{path}, line {number}", camera_id, fields[1], width, height, params)
    return cameras


def read_images_text(path):
    """Images take two lines each: the pose line, then the (possibly empty) line of 2D points."""
    lines = read_text_lines(path)
    # Blank lines are meaningful (an image without points), except at the end of the file, where files
    # written by other tools may add or omit them.
    while lines and not lines[-1][1]:
        lines.pop()
    if len(lines) % 2 == 1:
        lines.append((lines[-1][0] + 1, ""))
    images = {}
    for (number, pose_line), (points_number, points_line) in zip(lines[0::2], lines[1::2]):
        fields = pose_line.split(maxsplit=9)
        if len(fields) != 10:
            raise DatasetError(
                f"{path}, line {number}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, got {pose_line!r}"
            )
        image_id, camera_id = parse_numbers(path, number, [fields[0], fields[8]], int)
        pose = np.array(parse_numbers(path, number, fields[1:8], float))
        qvec = checked_qvec(f"{path}, line {number}", image_id, pose[:4], pose[4:])
        points = points_line.split()
        if len(points) % 3:
            raise DatasetError(f"{path}, line {points_number}: 2D points must come as X Y POINT3D_ID triples")
        xs = parse_numbers(path, points_number, points[0::3], float)
        ys = parse_numbers(path, points_number, points[1::3], float)
        point3d_ids = parse_numbers(path, points_number, points[2::3], int)
        images[image_id] = ColmapImage(
            image_id, qvec, pose[4:], camera_id, fields[9],
            np.array([xs, ys], dtype=np.float64).T.reshape(-1, 2), np.array(point3d_ids, dtype=np.int64),
        )
    return images


def read_points3d_text(path):
    points3d = {}
    for number, line in read_text_lines(path):
        if not line:
            continue
        fields = line.split()
        if len(fields) < 8 or (len(fields) - 8) % 2:
            raise DatasetError(
                f"{path}, line {number}: expected POINT3D_ID X Y Z R G B ERROR and (IMAGE_ID, POINT2D_IDX) pairs"
            )
        (point_id,) = parse_numbers(path, number, fields[:1], int)
        xyz = np.array(parse_numbers(path, number, fields[1:4], float))
        check_position(f"{path}, line {number}", point_id, xyz)
        rgb = parse_numbers(path, number, fields[4:7], int)
        if not all(0 <= value <= 255 for value in rgb):
            raise DatasetError(f"{path}, line {number}: colour {rgb} is outside 0..255")
        (error,) = parse_numbers(path, number, fields[7:8], float)
        track = parse_numbers(path, number, fields[8:], int)
        points3d[point_id] = ColmapPoint3D(
            point_id, xyz, np.array(rgb, dtype=np.uint8), error,
            np.array(track[0::2], dtype=np.int64), np.array(track[1::2], dtype=np.int64),
        )
    return points3d


def format_numbers(values):
    return " ".join(repr(float(value)) for value in values)


def write_cameras_text(path, cameras):
    with open(path, "w", encoding="utf-8") as file:
        file.write("# Camera list with one line of data per camera:\n")
        file.write("#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n")
        file.write(f"# Number of cameras: {len(cameras)}\n")
        for camera in cameras.values():
            file.write(f"{camera.id} {camera.model} {camera.width} {camera.height} {format_numbers(camera.params)}\n")


def write_images_text(path, images):
    with open(path, "w", encoding="utf-8") as file:
        file.write("# Image list with two lines of data per image:\n")
        file.write("#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n")
        file.write("#   POINTS2D[] as (X, Y, POINT3D_ID)\n")
        file.write(f"# Number of images: {len(images)}\n")
        for image in images.values():
            pose = format_numbers(list(image.qvec) + list(image.tvec))
            file.write(f"{image.id} {pose} {image.camera_id} {image.name}\n")
            xys = np.asarray(image.xys, dtype=np.float64).reshape(-1, 2)
            file.write(" ".join(
                f"{float(x)!r} {float(y)!r} {int(point_id)}" for (x, y), point_id in zip(xys, image.point3d_ids)
            ) + "\n")


def write_points3d_text(path, points3d):
    with open(path, "w", encoding="utf-8") as file:
        file.write("# 3D point list with one line of data per point:\n")
        file.write("#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n")
        file.write(f"# Number of points: {len(points3d)}\n")
        for point in points3d.values():
            rgb = " ".join(str(int(value)) for value in point.rgb)
            track = "".join(f" {int(image)} {int(idx)}" for image, idx in zip(point.image_ids, point.point2d_idxs))
            file.write(f"{point.id} {format_numbers(point.xyz)} {rgb} {float(point.error)!r}{track}\n")
