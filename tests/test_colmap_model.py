import os
import struct

import numpy as np
import pytest

from scene.colmap_model import ColmapCamera, ColmapImage, ColmapPoint3D, DatasetError, read_model, write_model
from utils.geometry import quaternion_to_rotation_matrix, rotation_matrix_to_quaternion


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def sample_model(rng):
    cameras = {
        1: ColmapCamera(1, "PINHOLE", 640, 480, np.array([500.0, 510.0, 320.5, 239.5])),
        3: ColmapCamera(3, "OPENCV", 320, 240, np.array([300.0, 301.0, 160.0, 120.0, 0.01, -0.02, 1e-3, -2e-3])),
    }
    images = {}
    for image_id, camera_id, point_count in ((1, 1, 5), (2, 3, 0), (7, 1, 3)):
        images[image_id] = ColmapImage(
            image_id, rotation_matrix_to_quaternion(random_rotation(rng)), rng.normal(size=3), camera_id,
            f"photo {image_id}.png",
            rng.uniform(0, 300, size=(point_count, 2)), rng.integers(-1, 10, size=point_count),
        )
    points3d = {
        point_id: ColmapPoint3D(
            point_id, rng.normal(size=3), rng.integers(0, 256, size=3).astype(np.uint8), float(rng.uniform()),
            rng.integers(1, 8, size=track_length), rng.integers(0, 5, size=track_length),
        )
        for point_id, track_length in ((1, 2), (4, 0), (9, 3))
    }
    return cameras, images, points3d


def assert_same_model(expected, actual):
    for expected_items, actual_items in zip(expected, actual):
        assert list(expected_items) == list(actual_items)
        for key, item in expected_items.items():
            for field, value in vars(item).items():
                loaded = getattr(actual_items[key], field)
                if isinstance(value, np.ndarray):
                    # Text files store repr() of doubles, which round-trips exactly.
                    np.testing.assert_array_equal(np.asarray(loaded), value)
                    assert np.asarray(loaded).shape == value.shape
                else:
                    assert loaded == value


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_model_round_trip(tmp_path, ext):
    model = sample_model(np.random.default_rng(0))
    write_model(tmp_path, *model, ext=ext)
    assert all(os.path.isfile(tmp_path / (name + ext)) for name in ("cameras", "images", "points3D"))
    assert_same_model(model, read_model(tmp_path))


def test_binary_layout_matches_colmap_format(tmp_path):
    """Byte sizes follow COLMAP's record layout: a uint64 count, then fixed-size fields."""
    cameras = {2: ColmapCamera(2, "SIMPLE_PINHOLE", 10, 8, np.array([9.0, 5.0, 4.0]))}
    write_model(tmp_path, cameras, {}, {}, ext=".bin")
    data = (tmp_path / "cameras.bin").read_bytes()
    assert len(data) == 8 + 4 + 4 + 8 + 8 + 3 * 8
    assert struct.unpack_from("<QiiQQ", data) == (1, 2, 0, 10, 8)


def test_quaternion_conversions_are_inverse():
    rng = np.random.default_rng(1)
    rotations = [random_rotation(rng) for _ in range(50)]
    # Rotations by (nearly) 180 degrees, where the trace-based formula alone breaks down.
    rotations += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0])]
    for rotation in rotations:
        qvec = rotation_matrix_to_quaternion(rotation)
        assert qvec[0] >= 0
        assert np.linalg.norm(qvec) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(quaternion_to_rotation_matrix(qvec), rotation, atol=1e-12)


def test_quaternion_convention_is_w_first():
    angle = 0.3
    rotation = quaternion_to_rotation_matrix([np.cos(angle / 2), 0.0, 0.0, np.sin(angle / 2)])
    expected = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(rotation, expected, atol=1e-15)


def test_text_images_without_trailing_points_line(tmp_path):
    model = sample_model(np.random.default_rng(2))
    write_model(tmp_path, *model, ext=".txt")
    path = tmp_path / "images.txt"
    path.write_text(path.read_text().rstrip("\n") + "\n\n\n")
    assert list(read_model(tmp_path)[1]) == [1, 2, 7]
    last_image_without_points = {**model[1], 7: ColmapImage(7, np.array([1.0, 0, 0, 0]), np.zeros(3), 1, "last.png",
                                                             np.zeros((0, 2)), np.zeros(0, dtype=np.int64))}
    write_model(tmp_path, model[0], last_image_without_points, model[2], ext=".txt")
    path.write_text(path.read_text().rstrip("\n"))
    images = read_model(tmp_path)[1]
    assert images[7].name == "last.png" and len(images[7].point3d_ids) == 0


def test_missing_model(tmp_path):
    (tmp_path / "cameras.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="no COLMAP model"):
        read_model(tmp_path)


@pytest.mark.parametrize("name", ["cameras", "images", "points3D"])
def test_truncated_binary_names_file(tmp_path, name):
    write_model(tmp_path, *sample_model(np.random.default_rng(3)), ext=".bin")
    path = tmp_path / f"{name}.bin"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=f"{name}.bin.*truncated"):
        read_model(tmp_path)


@pytest.mark.parametrize("name, line, message", [
    ("cameras", "1 PINHOLE 640 480 500 500 320", "3 parameters, expected 4"),
    ("cameras", "1 FISHEYE_X 640 480 500", "unknown camera model"),
    ("cameras", "1 PINHOLE 640 480 500 500 320 abc", "expected numbers"),
    ("points3D", "1 0.5 0.5 0.5 300 0 0 0.1", "outside 0..255"),
    ("points3D", "1 0.5 0.5 0.5 1 0 0 0.1 4", "pairs"),
    ("cameras", "5 PINHOLE 640 480 500 0 320 240", "line 6: camera 5 has focal length 0.0"),
    ("cameras", "5 SIMPLE_RADIAL 640 480 -400 320 240 0.1", "line 6: camera 5 has focal length -400.0"),
    ("points3D", "12 0.5 inf 0.5 1 0 0 0.1", "line 7: point 12 has a non-finite position"),
])
def test_malformed_text_line_names_file(tmp_path, name, line, message):
    write_model(tmp_path, *sample_model(np.random.default_rng(4)), ext=".txt")
    with open(tmp_path / f"{name}.txt", "a") as file:
        file.write(line + "\n")
    with pytest.raises(DatasetError, match=f"{name}.txt.*{message}"):
        read_model(tmp_path)


def test_image_with_unknown_camera(tmp_path):
    cameras, images, points3d = sample_model(np.random.default_rng(5))
    del cameras[3]
    write_model(tmp_path, cameras, images, points3d, ext=".bin")
    with pytest.raises(DatasetError, match="images.bin.*camera 3"):
        read_model(tmp_path)


def test_binary_point_with_non_finite_position(tmp_path):
    cameras, images, points3d = sample_model(np.random.default_rng(6))
    points3d[4].xyz[0] = np.nan
    write_model(tmp_path, cameras, images, points3d, ext=".bin")
    with pytest.raises(DatasetError, match="points3D.bin: point 4 has a non-finite position"):
        read_model(tmp_path)


@pytest.mark.parametrize("ext", [".txt", ".bin"])
def test_quaternions_are_normalised_on_read(tmp_path, ext):
    """As COLMAP does: a quaternion stored with another norm still means the same rotation, while the rotation
    matrix of the stored numbers would be scaled and skewed."""
    cameras, images, points3d = sample_model(np.random.default_rng(7))
    unit_qvec = images[7].qvec.copy()
    images[7].qvec = 2.5 * unit_qvec
    write_model(tmp_path, cameras, images, points3d, ext=ext)
    np.testing.assert_allclose(read_model(tmp_path)[1][7].qvec, unit_qvec, rtol=0, atol=1e-15)
