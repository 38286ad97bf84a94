"""Pure-PyTorch reference rasterizer: slow, dense and differentiable by autograd.

It is the readable statement of the math the native backends implement, and
the oracle the tests compare them against. It follows the same rules exactly:
tile-based culling (a Gaussian only reaches the 16x16 tiles of the box where
its alpha can reach 1/255, within its 3-sigma radius), front-to-back order by
depth (ties by index), alpha capped at 0.99, samples under 1/255 skipped, and
a pixel stops before its transmittance would fall under 1e-4. Its first step,
the projection, is public in projection.py.
"""
import math

import torch

from .projection import normalize, project_gaussians

TILE_SIZE = 16
MAX_ALPHA = 0.99
MIN_ALPHA = 1.0 / 255.0
# Widens the ellipse where a Gaussian can reach MIN_ALPHA, clear of rounding.
VISIBLE_POWER_MARGIN = 1e-3
MIN_TRANSMITTANCE = 1e-4
MAX_SCREEN_RADIUS = 2.0**30

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(degree, d):
    """Real SH basis in the 3DGS sign convention at unit directions d (N, 3) -> (N, (degree+1)^2)."""
    x, y, z = d.unbind(-1)
    basis = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        basis += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                  SH_C2[4] * (xx - yy)]
    if degree >= 3:
        basis += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                  SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                  SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(basis, dim=-1)


def sh_to_color(degree, sh_coeffs, means, camera_centre):
    """RGB = max(0, SH(view direction) + 0.5), as in 3DGS."""
    # A Gaussian at the camera centre looks along +z.
    dirs = normalize(means - camera_centre, torch.tensor([0.0, 0.0, 1.0], dtype=means.dtype, device=means.device))
    n = (degree + 1) ** 2
    rgb = (sh_basis(degree, dirs)[:, :, None] * sh_coeffs[:, :n]).sum(1) + 0.5
    return rgb.clamp_min(0.0)


def tile_extents(conics, opacities, radii):
    """(N, 2) half-widths in whole pixels of the box where each Gaussian's alpha can reach MIN_ALPHA, within its
    3-sigma radius, and whether it reaches MIN_ALPHA anywhere."""
    level = -2 * (torch.log(MIN_ALPHA / opacities) - VISIBLE_POWER_MARGIN)
    qa, qb, qc = conics.unbind(-1)
    det = qa * qc - qb * qb
    reaches = (level >= 0) & (det > 0)
    level, det = level.clamp_min(0), torch.where(det > 0, det, torch.ones_like(det))
    half = torch.sqrt(level[:, None] * torch.stack([qc, qa], dim=-1) / det[:, None])
    return torch.minimum(radii[:, None].to(half.dtype), torch.ceil(half)), reaches


def tile_rects(means2d, extents, tiles_x, tiles_y):
    """Tiles touched by each Gaussian's box of half-widths extents (N, 2): [min, max) per axis."""
    lo = torch.floor((means2d - extents) / TILE_SIZE)
    hi = torch.floor((means2d + extents) / TILE_SIZE) + 1
    limit = torch.tensor([tiles_x, tiles_y], dtype=means2d.dtype, device=means2d.device)
    return torch.minimum(lo.clamp_min(0), limit).long(), torch.minimum(hi.clamp_min(0), limit).long()


def blend_tile(pixels, means2d, conics, opacities, colors, depths, background):
    """Front-to-back compositing of the (already depth-sorted) Gaussians of one tile.

    pixels: (P, 2) pixel centres. Returns colour (P, C), weighted depth (P,),
    final transmittance (P,).
    """
    d = pixels[:, None, :] - means2d[None, :, :]
    a, b, c = conics[:, 0], conics[:, 1], conics[:, 2]
    power = -0.5 * (a * d[..., 0] ** 2 + c * d[..., 1] ** 2) - b * d[..., 0] * d[..., 1]
    alpha = torch.clamp(opacities[None, :] * torch.exp(power), max=MAX_ALPHA)
    alpha = torch.where((power > 0) | (alpha < MIN_ALPHA), torch.zeros_like(alpha), alpha)
    # A pixel stops at the first sample that would push its transmittance under
    # the threshold; transmittance only falls, so every later sample is dropped too.
    with torch.no_grad():
        keep = torch.cumprod(1 - alpha, dim=1) >= MIN_TRANSMITTANCE
    alpha = alpha * keep
    transmittance = torch.cumprod(1 - alpha, dim=1)
    before = torch.cat([torch.ones_like(transmittance[:, :1]), transmittance[:, :-1]], dim=1)
    weights = alpha * before
    final_t = transmittance[:, -1] if transmittance.shape[1] else torch.ones_like(pixels[:, 0])
    color = weights @ colors + final_t[:, None] * background[None, :]
    return color, weights @ depths, final_t


def rasterize_reference(means, scales, rotations, opacities, camera, sh_coeffs=None, sh_degree=0, features=None,
                        background=None, normalize_rotations=False):
    """Same inputs as gaussian_rasterizer.rasterize_gaussians (checked by the caller).

    Returns (image (C, H, W), weighted depth (H, W), final transmittance (H, W),
    radii (N,), means2d (N, 2)).
    """
    W, H = camera.width, camera.height
    mean_cam, means2d, cov2d, in_depth_range = project_gaussians(means, scales, rotations, camera,
                                                                 normalize_rotations)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det = a * c - b * b
    invertible = det > 0
    det = torch.where(invertible, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lambda_max = mid + torch.sqrt(torch.clamp_min(mid * mid - det, 0.1))
        # A radius that covers the image is enough, and keeps huge Gaussians within int32.
        reach = torch.maximum(torch.maximum(means2d[:, 0].abs(), (means2d[:, 0] - W).abs()),
                              torch.maximum(means2d[:, 1].abs(), (means2d[:, 1] - H).abs()))
        reach = reach.clamp_max(MAX_SCREEN_RADIUS)
        three_sigma = 3 * torch.sqrt(lambda_max)
        radii = torch.ceil(torch.where(three_sigma < reach, three_sigma, reach)).to(torch.int32)
        extents, reaches = tile_extents(conics, opacities[:, 0], radii)
        tiles_x, tiles_y = math.ceil(W / TILE_SIZE), math.ceil(H / TILE_SIZE)
        rect_min, rect_max = tile_rects(means2d, extents, tiles_x, tiles_y)
        touched = (rect_max - rect_min).prod(dim=-1)
        visible = in_depth_range & invertible & reaches & (radii > 0) & (touched > 0)
        radii = torch.where(visible, radii, torch.zeros_like(radii))

    if sh_coeffs is not None:
        view = camera.world_to_camera
        camera_centre = -view[:3, :3].T @ view[:3, 3]
        colors = sh_to_color(sh_degree, sh_coeffs, means, camera_centre)
    else:
        colors = features
    channels = colors.shape[1]
    if background is None:
        background = torch.zeros(channels, dtype=means.dtype, device=means.device)
    depths = mean_cam[:, 2]
    opacities = opacities[:, 0]

    rows_color, rows_depth, rows_t = [], [], []
    for ty in range(tiles_y):
        tiles_color, tiles_depth, tiles_t = [], [], []
        for tx in range(tiles_x):
            x0, y0 = tx * TILE_SIZE, ty * TILE_SIZE
            x1, y1 = min(x0 + TILE_SIZE, W), min(y0 + TILE_SIZE, H)
            in_tile = visible & (rect_min[:, 0] <= tx) & (tx < rect_max[:, 0]) & (rect_min[:, 1] <= ty) & (
                ty < rect_max[:, 1])
            ids = in_tile.nonzero()[:, 0]
            ids = ids[torch.sort(depths[ids].detach(), stable=True).indices]
            ys, xs = torch.meshgrid(torch.arange(y0, y1, dtype=means.dtype, device=means.device) + 0.5,
                                    torch.arange(x0, x1, dtype=means.dtype, device=means.device) + 0.5,
                                    indexing="ij")
            pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)
            color, depth, final_t = blend_tile(pixels, means2d[ids], conics[ids], opacities[ids], colors[ids],
                                               depths[ids], background)
            tiles_color.append(color.T.reshape(channels, y1 - y0, x1 - x0))
            tiles_depth.append(depth.reshape(y1 - y0, x1 - x0))
            tiles_t.append(final_t.reshape(y1 - y0, x1 - x0))
        rows_color.append(torch.cat(tiles_color, dim=2))
        rows_depth.append(torch.cat(tiles_depth, dim=1))
        rows_t.append(torch.cat(tiles_t, dim=1))
    image = torch.cat(rows_color, dim=1)
    return image, torch.cat(rows_depth, dim=0), torch.cat(rows_t, dim=0), radii, means2d
