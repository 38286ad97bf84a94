"""A tiny scene with known ground truth for training tests: random coloured Gaussians rendered by our rasterizer
from a few cameras, stored like a COLMAP reconstruction (images/ and sparse/0 as a text model)."""

import os

import imageio.v3 as iio
import numpy as np
import torch

import train
from gaussian_rasterizer import Camera, rasterize_gaussians
from scene.cameras import Camera as SceneCamera
from scene.colmap_model import ColmapCamera, ColmapImage, ColmapPoint3D, write_model
from scene.gaussian_model import GaussianParams, rgb_to_sh
from utils.geometry import rotation_matrix_to_quaternion

WIDTH, HEIGHT = 64, 48
FOCAL = 60.0


def look_at_origin(position):
    """World-to-camera matrix (OpenCV axes, world y down) of a camera at position looking at the origin."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = rotation
    world_to_camera[:3, 3] = -rotation @ position
    return world_to_camera


def random_unit_quaternions(rng, count):
    quaternions = rng.normal(size=(count, 4))
    return quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)


def camera_at(position):
    """A training-side camera of the tiny scene's size at position (3,), looking at the origin."""
    return SceneCamera(look_at_origin(np.asarray(position, float)), FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2, WIDTH,
                       HEIGHT, 0.1, 10.0, "cpu")


def gaussian_params(means, scales, rotations, opacities, colors, sh_degree):
    """GaussianParams from arrays; each colour (N, 3) becomes the degree-0 coefficient, the higher bands 0."""

    def tensor(array):
        return torch.tensor(np.asarray(array), dtype=torch.float32)

    sh = torch.zeros(len(colors), (sh_degree + 1) ** 2, 3)
    sh[:, 0] = rgb_to_sh(tensor(colors))
    return GaussianParams(means=tensor(means), scales=tensor(scales), rotations=tensor(rotations),
                          opacities=tensor(opacities).reshape(-1, 1), sh_coeffs=sh, sh_degree=sh_degree)


def make_tiny_scene(folder, view_count=8, gaussian_count=40, seed=0):
    """Write the scene into folder and return the world-to-camera matrices of its views (in name order)."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-1.0, 1.0, size=(gaussian_count, 3))
    colors = rng.uniform(0.1, 0.9, size=(gaussian_count, 3))

    def as_tensor(array):
        return torch.tensor(array, dtype=torch.float32)

    gaussians = dict(
        means=as_tensor(means),
        scales=as_tensor(rng.uniform(0.08, 0.25, size=(gaussian_count, 3))),
        rotations=as_tensor(random_unit_quaternions(rng, gaussian_count)),
        opacities=as_tensor(rng.uniform(0.7, 0.95, size=(gaussian_count, 1))),
        sh_coeffs=rgb_to_sh(as_tensor(colors))[:, None, :],
    )

    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    cameras = {1: ColmapCamera(1, "PINHOLE", WIDTH, HEIGHT, np.array([FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2]))}
    images = {}
    poses = []
    for index, angle in enumerate(np.radians(np.linspace(-40.0, 40.0, view_count))):
        position = 4.0 * np.array([np.sin(angle), -0.3, -np.cos(angle)])
        world_to_camera = look_at_origin(position)
        poses.append(world_to_camera)
        camera = Camera(as_tensor(world_to_camera), FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2, WIDTH, HEIGHT)
        with torch.no_grad():
            image = rasterize_gaussians(camera=camera, sh_degree=0, backend="cpu", **gaussians).image
        name = f"view_{index:02d}.png"
        pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        iio.imwrite(os.path.join(folder, "images", name), pixels)
        images[index + 1] = ColmapImage(
            index + 1, rotation_matrix_to_quaternion(world_to_camera[:3, :3]), world_to_camera[:3, 3], 1, name,
            np.zeros((0, 2)), np.zeros(0, dtype=np.int64),
        )

    # Stand-in SfM points: two noisy samples near each Gaussian, with its colour.
    points3d = {}
    for index in range(2 * gaussian_count):
        source = index % gaussian_count
        points3d[index + 1] = ColmapPoint3D(
            index + 1, means[source] + rng.normal(scale=0.05, size=3), np.round(colors[source] * 255).astype(np.uint8),
            0.5, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
        )
    os.makedirs(os.path.join(folder, "sparse", "0"), exist_ok=True)
    write_model(os.path.join(folder, "sparse", "0"), cameras, images, points3d, ext=".txt")
    return poses


def train_tiny_run(tmp_path_factory, *extra_arguments):
    """A model trained for 60 iterations on a new tiny scene (snapshots at 30 and 60); returns its folder."""
    scene_folder = tmp_path_factory.mktemp("tiny_scene")
    make_tiny_scene(scene_folder)
    model_path = str(tmp_path_factory.mktemp("run"))
    train.main(["-s", str(scene_folder), "-m", model_path, "--eval", "--hold", "4", "--device", "cpu",
                "--iterations", "60", "--save_iterations", "30", "60", "--test_iterations", "60",
                "--densify_from_iter", "20", "--densification_interval", "20", *extra_arguments])
    return model_path
