"""Hierarchical volume sampling and alpha compositing along rays."""

import torch
import torch.nn.functional as F

# Stands in for the infinite length of the last sample's interval: whatever the ray has not hit by then is
# absorbed there rather than showing the background.
LAST_INTERVAL = 1e10
# Added to the coarse weights before sampling the fine depths, so that rays through empty space still get a
# well-defined (uniform) distribution.
PDF_FLOOR = 1e-5


def stratified_depths(near, far, ray_count, sample_count, generator, device):
    """Depths in sample_count equal bins of [near, far]: one uniform draw per bin with a generator (training),
    the bin centres without (test views render deterministically). Returns (ray_count, sample_count)."""
    edges = torch.linspace(near, far, sample_count + 1, device=device)
    lower, upper = edges[:-1], edges[1:]
    if generator is None:
        return (0.5 * (lower + upper)).expand(ray_count, sample_count)
    draws = torch.rand(ray_count, sample_count, generator=generator, device=device)
    return lower + (upper - lower) * draws


def sample_pdf(edges, weights, sample_count, generator):
    """sample_count depths per ray drawn by inverse transform sampling from the piecewise-constant density that
    weights (N, B) put on bins with the given edges (N, B + 1): random with a generator, evenly spaced quantiles
    without. Returns (N, sample_count), unsorted."""
    weights = weights + PDF_FLOOR
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)
    if generator is None:
        quantiles = (torch.arange(sample_count, device=edges.device) + 0.5) / sample_count
        quantiles = quantiles.expand(len(edges), sample_count).contiguous()
    else:
        quantiles = torch.rand(len(edges), sample_count, generator=generator, device=edges.device)
    bins = weights.shape[-1]
    below = (torch.searchsorted(cdf, quantiles, right=True) - 1).clamp(0, bins - 1)
    cdf_below, cdf_above = cdf.gather(-1, below), cdf.gather(-1, below + 1)
    edge_below, edge_above = edges.gather(-1, below), edges.gather(-1, below + 1)
    fraction = ((quantiles - cdf_below) / (cdf_above - cdf_below).clamp(min=1e-10)).clamp(0.0, 1.0)
    return edge_below + fraction * (edge_above - edge_below)


def composite(colours, densities, depths, directions, background):
    """Alpha-composite samples front to back: colours (N, S, 3) and non-negative densities (N, S) at depths
    (N, S) along rays with the given directions (N, 3). Returns (colour (N, 3), weights (N, S))."""
    intervals = torch.cat([depths[:, 1:] - depths[:, :-1], torch.full_like(depths[:, :1], LAST_INTERVAL)], dim=-1)
    alphas = 1.0 - torch.exp(-densities * intervals * directions.norm(dim=-1, keepdim=True))
    # The small constant keeps cumprod differentiable where a sample is fully opaque.
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(alphas[:, :1]), 1.0 - alphas[:, :-1] + 1e-10], dim=-1), dim=-1
    )
    weights = alphas * transmittance
    colour = (weights[..., None] * colours).sum(dim=-2) + (1.0 - weights.sum(dim=-1, keepdim=True)) * background
    return colour, weights


class VolumeRenderer:
    """NeRF's two-pass rendering: the coarse field at stratified depths, then the fine field at those depths
    and as many more drawn where the coarse pass found matter."""

    def __init__(self, coarse_field, fine_field, space, coarse_samples, fine_samples, density_noise, background):
        self.coarse_field = coarse_field
        self.fine_field = fine_field
        self.space = space
        self.coarse_samples = coarse_samples
        self.fine_samples = fine_samples
        self.density_noise = density_noise
        self.background = background

    def __call__(self, origins, directions, generator=None):
        """Colours (..., 3) of the coarse and fine passes along world rays (..., 3), in the fields' colour space.
        generator: the randomness of training (jittered depths, density noise); None renders deterministically."""
        shape = origins.shape[:-1]
        origins, directions, view_directions = self.space(origins.reshape(-1, 3), directions.reshape(-1, 3))
        depths = stratified_depths(
            self.space.near, self.space.far, len(origins), self.coarse_samples, generator, origins.device
        )
        coarse_colour, weights = self.march(self.coarse_field, origins, directions, view_directions, depths, generator)
        midpoints = 0.5 * (depths[:, 1:] + depths[:, :-1])
        fine_depths = sample_pdf(midpoints, weights[:, 1:-1].detach(), self.fine_samples, generator)
        depths = torch.sort(torch.cat([depths, fine_depths], dim=-1), dim=-1).values
        fine_colour, _ = self.march(self.fine_field, origins, directions, view_directions, depths, generator)
        return coarse_colour.reshape(*shape, 3), fine_colour.reshape(*shape, 3)

    def march(self, field, origins, directions, view_directions, depths, generator):
        points = origins[:, None] + depths[..., None] * directions[:, None]
        raw_colours, raw_densities = field(points, view_directions[:, None].expand_as(points))
        raw_densities = raw_densities.squeeze(-1)
        if generator is not None and self.density_noise > 0:
            # NeRF's regulariser against floaters: noisy densities make semi-transparent fog costly.
            noise = torch.randn(raw_densities.shape, generator=generator, device=raw_densities.device)
            raw_densities = raw_densities + self.density_noise * noise
        return composite(torch.sigmoid(raw_colours), F.relu(raw_densities), depths, directions, self.background)
