"""Seeded random scenes shared by the rasterizer tests."""
import math

import torch

from gaussian_rasterizer import Camera


def look_at_camera(width, height, yaw=0.1, translation=(0.1, -0.2, 0.3), focal=None, dtype=torch.float32):
    focal = focal or 0.9 * max(width, height)
    c, s = math.cos(yaw), math.sin(yaw)
    view = torch.eye(4, dtype=dtype)
    view[:3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=dtype)
    view[:3, 3] = torch.tensor(translation, dtype=dtype)
    return Camera(view, fx=focal, fy=1.05 * focal, cx=width / 2 + 1.3, cy=height / 2 - 0.7, width=width,
                  height=height)


def random_scene(seed, n=40, width=45, height=37, sh_degree=2, channels=None, dtype=torch.float32):
    """Gaussians in front of a camera. channels=None gives SH colours, else (N, C) features."""
    g = torch.Generator().manual_seed(seed)
    scene = {
        "means": torch.randn(n, 3, generator=g, dtype=dtype) * 0.6 + torch.tensor([0, 0, 4.0], dtype=dtype),
        "scales": torch.rand(n, 3, generator=g, dtype=dtype) * 0.25 + 0.02,
        "rotations": torch.randn(n, 4, generator=g, dtype=dtype),
        "opacities": torch.rand(n, 1, generator=g, dtype=dtype) * 0.9 + 0.05,
    }
    if channels is None:
        scene["sh_coeffs"] = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=dtype) * 0.4
        scene["sh_degree"] = sh_degree
        channels = 3
    else:
        scene["features"] = torch.rand(n, channels, generator=g, dtype=dtype)
    scene["background"] = torch.rand(channels, generator=g, dtype=dtype)
    scene["camera"] = look_at_camera(width, height, yaw=0.3 * torch.rand(1, generator=g).item(), dtype=dtype)
    return scene


DIFFERENTIABLE = ("means", "scales", "rotations", "opacities", "sh_coeffs", "features", "background")


def render_with_grads(rasterize, scene, backend, seed=1, **kwargs):
    """Renders, back-propagates fixed random upstream gradients through image,
    depth and alpha, and returns (output, {name: gradient})."""
    leaves = {k: scene[k].detach().clone().requires_grad_(True) for k in DIFFERENTIABLE if k in scene}
    cam = scene["camera"]
    view = cam.world_to_camera.detach().clone().requires_grad_(True)
    camera = type(cam)(view, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, cam.near, cam.far)
    out = rasterize(camera=camera, sh_degree=scene.get("sh_degree", 0), backend=backend, **leaves, **kwargs)
    g = torch.Generator().manual_seed(seed)
    loss = sum((t * torch.randn(t.shape, generator=g).to(t)).sum() for t in (out.image, out.depth, out.alpha))
    loss.backward()
    grads = {k: v.grad for k, v in leaves.items()}
    grads["world_to_camera"] = view.grad
    grads["means2d"] = out.means2d.grad
    return out, grads
