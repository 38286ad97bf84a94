"""utils.geometry. The round trip between quaternions and rotation matrices, and their (w, x, y, z) order, are tested
in test_colmap_model.py, on the poses COLMAP files hold."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from utils.geometry import (
    camera_centre,
    camera_to_world_matrices,
    camera_to_world_matrix,
    look_at,
    mean_camera_rotation,
    quaternion_product,
    quaternion_to_rotation_matrix,
    world_to_camera_from_centre,
    world_to_camera_matrix,
)

# float64 products of a few unit-sized terms: rounding stays far below this.
ATOL = 1e-12


def random_unit_quaternions(rng, count):
    quaternions = rng.normal(size=(count, 4))
    return quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)


def assert_rotation(matrix):
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=ATOL)
    assert np.linalg.det(matrix) == pytest.approx(1.0, abs=ATOL)


def test_quaternion_to_matrix_takes_tensors_and_arrays_alike():
    quaternions = random_unit_quaternions(np.random.default_rng(1), 6).reshape(2, 3, 4)
    from_array = quaternion_to_rotation_matrix(quaternions)
    from_tensor = quaternion_to_rotation_matrix(torch.tensor(quaternions, requires_grad=True))
    assert from_array.shape == from_tensor.shape == (2, 3, 3, 3)
    assert from_tensor.requires_grad
    np.testing.assert_allclose(from_tensor.detach().numpy(), from_array, atol=ATOL)


def test_quaternion_product_composes_rotations():
    rng = np.random.default_rng(2)
    a, b = torch.tensor(random_unit_quaternions(rng, 2))
    product = quaternion_product(a, b)
    torch.testing.assert_close(quaternion_to_rotation_matrix(product[None])[0],
                               quaternion_to_rotation_matrix(a[None])[0] @ quaternion_to_rotation_matrix(b[None])[0],
                               rtol=0.0, atol=ATOL)


def test_look_at_points_the_camera_at_the_target_without_roll():
    centre, target = np.array([1.0, -2.0, 0.5]), np.array([-3.0, 0.5, 4.0])
    pose = look_at(centre, target)
    assert_rotation(pose[:3, :3])
    np.testing.assert_allclose(pose[3], [0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(pose[:3, 3], centre)
    np.testing.assert_allclose(pose[:3, 2], (target - centre) / np.linalg.norm(target - centre), atol=ATOL)
    # No roll: the camera's x axis stays horizontal, and its image y axis points down (+y) in the world.
    assert abs(pose[1, 0]) < ATOL
    assert pose[1, 1] > 0.0


def test_world_to_camera_inverts_camera_to_world():
    pose = look_at(np.array([0.3, -1.0, -4.0]), np.zeros(3))
    rotation, centre = pose[:3, :3], pose[:3, 3]
    world_to_camera = world_to_camera_from_centre(rotation, centre)
    np.testing.assert_allclose(world_to_camera @ pose, np.eye(4), atol=ATOL)
    np.testing.assert_allclose(world_to_camera, world_to_camera_matrix(rotation.T, world_to_camera[:3, 3]))
    # The centre maps to the camera's origin; the target, the world's origin, lies straight ahead.
    np.testing.assert_allclose(world_to_camera[:3, :3] @ centre + world_to_camera[:3, 3], 0.0, atol=ATOL)
    ahead = world_to_camera[:3, 3]
    np.testing.assert_allclose(ahead[:2], 0.0, atol=ATOL)
    assert ahead[2] == pytest.approx(np.linalg.norm(centre))

    np.testing.assert_allclose(camera_to_world_matrix(world_to_camera), pose, atol=ATOL)
    np.testing.assert_allclose(camera_to_world_matrix(torch.tensor(world_to_camera)), pose, atol=ATOL)
    np.testing.assert_allclose(camera_centre(world_to_camera), centre, atol=ATOL)


def test_mean_camera_rotation_of_views_around_one_direction():
    centres = [np.array([x, 0.0, 0.0]) for x in (-1.0, 0.0, 1.0)]
    views = [SimpleNamespace(world_to_camera=world_to_camera_from_centre(look_at(c, [0.0, 0.0, 5.0])[:3, :3], c))
             for c in centres]
    camera_to_world = camera_to_world_matrices(views)
    assert camera_to_world.shape == (3, 4, 4)
    np.testing.assert_allclose(camera_to_world[:, :3, 3], centres, atol=ATOL)
    # The outer views turn inwards by the same angle: their mean looks straight ahead, along +z.
    np.testing.assert_allclose(mean_camera_rotation(camera_to_world), np.eye(3), atol=ATOL)
    np.testing.assert_allclose(mean_camera_rotation(camera_to_world[:, :3]), np.eye(3), atol=ATOL)
