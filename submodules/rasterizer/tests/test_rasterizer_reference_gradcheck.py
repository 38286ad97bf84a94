"""Finite-difference check of the reference rasterizer's autograd gradients, in float64."""
import pytest
import torch

from gaussian_rasterizer import Camera
from gaussian_rasterizer.reference import rasterize_reference
from scenes import random_scene


# Slow: float64 finite differences over every input of the dense reference, about 1-2 s per case.
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("colour", ["sh", "features"])
def test_reference_gradients_match_finite_differences(seed, colour):
    scene = random_scene(seed, n=4, width=12, height=10, sh_degree=3, channels=None if colour == "sh" else 2,
                         dtype=torch.float64)
    cam = scene["camera"]
    colour_key = "sh_coeffs" if colour == "sh" else "features"
    inputs = [scene[k].clone().requires_grad_(True)
              for k in ("means", "scales", "rotations", "opacities", colour_key, "background")]
    view = cam.world_to_camera.clone().requires_grad_(True)

    def render(means, scales, rotations, opacities, colours, background, world_to_camera):
        camera = Camera(world_to_camera, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
        kwargs = {colour_key: colours}
        image, depth, final_t, _, means2d = rasterize_reference(
            means, scales, rotations, opacities, camera, sh_degree=3, background=background, **kwargs)
        return image, depth, final_t, means2d

    image = render(*inputs, view)[0]
    assert (image.detach() != scene["background"][:, None, None]).any(), "Gaussians must be on screen"
    assert torch.autograd.gradcheck(render, (*inputs, view), eps=1e-6, atol=1e-6, rtol=1e-4)
