"""Renders a built-in procedural Gaussian scene from a few viewpoints.

    python render_procedural_scene.py --out output/demo [--backend cpu] [--views 4]

The scene: a two-armed spiral of coloured Gaussians above a checkered floor.
Writes one PNG per view (colour, and depth beside it) and prints where.
"""
import argparse
import math
import os
import time

import imageio.v3 as iio
import numpy as np
import torch

from gaussian_rasterizer import Camera, rasterize_gaussians

SH_C0 = 0.28209479177387814


def spiral_and_floor(seed=0):
    g = torch.Generator().manual_seed(seed)
    # Spiral: two arms, colour varying along the arm.
    n_arm = 6000
    t = torch.rand(n_arm, generator=g) * 3.0
    arm = (torch.rand(n_arm, generator=g) > 0.5).float() * math.pi
    angle = 2.2 * t + arm
    radius = 0.35 + 0.5 * t
    spiral = torch.stack([radius * torch.cos(angle), 0.6 - 0.25 * t, radius * torch.sin(angle)], dim=1)
    spiral += torch.randn(n_arm, 3, generator=g) * 0.04
    hue = t / 3.0
    spiral_rgb = torch.stack([0.5 + 0.5 * torch.cos(2 * math.pi * (hue - shift)) for shift in (0, 1 / 3, 2 / 3)],
                             dim=1)
    spiral_scales = torch.full((n_arm, 3), 0.03) * torch.exp(torch.randn(n_arm, 3, generator=g) * 0.3)

    # Floor: a grid of flat Gaussians with a checker pattern.
    side = 60
    u, v = torch.meshgrid(torch.linspace(-2.5, 2.5, side), torch.linspace(-2.5, 2.5, side), indexing="ij")
    floor = torch.stack([u.reshape(-1), torch.full((side * side,), 1.0), v.reshape(-1)], dim=1)
    checker = ((torch.floor(u * 1.2) + torch.floor(v * 1.2)) % 2).reshape(-1, 1)
    floor_rgb = 0.25 + 0.5 * checker.expand(-1, 3)
    floor_scales = torch.tensor([0.06, 0.005, 0.06]).expand(side * side, 3)

    means = torch.cat([spiral, floor])
    rgb = torch.cat([spiral_rgb, floor_rgb])
    n = means.shape[0]
    return dict(
        means=means,
        scales=torch.cat([spiral_scales, floor_scales]).contiguous(),
        rotations=torch.tensor([1.0, 0, 0, 0]).expand(n, 4).contiguous(),
        opacities=torch.full((n, 1), 0.85),
        sh_coeffs=((rgb - 0.5) / SH_C0)[:, None, :].contiguous(),  # degree 0: colour = SH_C0 c + 0.5
    )


def orbit_camera(angle, width, height, distance=5.0, elevation=0.45):
    """World-to-camera matrix of a camera on a circle, looking at the origin (OpenCV axes)."""
    eye = torch.tensor([distance * math.sin(angle), -distance * math.sin(elevation), -distance * math.cos(angle)])
    forward = -eye / eye.norm()
    right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0]), forward)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    view = torch.eye(4)
    view[:3, :3] = rotation
    view[:3, 3] = -rotation @ eye
    focal = 0.9 * width
    return Camera(view, fx=focal, fy=focal, cx=width / 2, cy=height / 2, width=width, height=height)


def to_uint8(image):
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="output/demo")
    parser.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "reference"])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    device = "cuda" if args.backend == "cuda" else "cpu"
    scene = {k: v.to(device) for k, v in spiral_and_floor().items()}
    os.makedirs(args.out, exist_ok=True)
    print(f"rendering {scene['means'].shape[0]:,} Gaussians at {args.width}x{args.height} with the "
          f"{args.backend} backend")
    for i in range(args.views):
        camera = orbit_camera(2 * math.pi * i / args.views, args.width, args.height)
        camera = Camera(camera.world_to_camera.to(device), camera.fx, camera.fy, camera.cx, camera.cy, camera.width,
                        camera.height)
        start = time.perf_counter()
        out = rasterize_gaussians(**scene, camera=camera, sh_degree=0, backend=args.backend)
        elapsed = time.perf_counter() - start
        depth = out.depth / max(out.depth.max().item(), 1e-6)
        panel = np.concatenate([to_uint8(out.image.cpu()), to_uint8(depth.expand(3, -1, -1).cpu())], axis=1)
        path = os.path.join(args.out, f"view_{i:02d}.png")
        iio.imwrite(path, panel)
        print(f"  {path}  (colour | depth, {elapsed * 1e3:.0f} ms)")
    print(f"wrote {args.views} views to {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
