"""The ground-truth renderer: a vectorised ray caster with a thin-lens camera and a shaking exposure.

Radiance is computed in linear light: diffuse texture albedo lit by an ambient term and one directional light.
A rendered pixel is the mean of samples_per_pixel rays spread over the pixel footprint, the lens aperture and
the exposure time, so defocus and motion blur come from the same integral as antialiasing.
"""

from dataclasses import dataclass

import numpy as np

from .camera import aperture_points, stratum_corners

# Upper bound on rays traced at once; keeps the working set to some tens of megabytes.
RAYS_PER_BATCH = 1 << 17


class TexturedScene:
    """Primitives (see primitives.py) lit by an ambient term and a directional light; rays that miss every
    primitive see a uniform sky."""

    def __init__(self, primitives, textures, light_direction=(-0.35, -1.0, -0.6), ambient=0.3, diffuse=0.75,
                 sky=(0.55, 0.65, 0.8)):
        self.primitives = list(primitives)
        self.textures = textures
        light = np.asarray(light_direction, np.float32)
        self.light_direction = light / np.linalg.norm(light)
        self.ambient = ambient
        self.diffuse = diffuse
        self.sky = np.asarray(sky, np.float32)

    def nearest_hits(self, origins, directions):
        """Distance to the nearest hit (N,), inf on a miss, and the index of the primitive hit (N,), -1."""
        nearest = np.full(origins.shape[1], np.inf, np.float32)
        primitive_index = np.full(origins.shape[1], -1, np.int32)
        for index, primitive in enumerate(self.primitives):
            t = primitive.intersect(origins, directions)
            np.copyto(primitive_index, index, where=t < nearest)
            np.minimum(nearest, t, out=nearest)
        return nearest, primitive_index

    def radiance(self, origins, directions):
        """Linear RGB radiance (N, 3) seen along rays given as (3, N) origins and directions."""
        nearest, primitive_index = self.nearest_hits(origins, directions)
        colours = np.empty((origins.shape[1], 3), np.float32)
        colours[:] = self.sky
        for index, primitive in enumerate(self.primitives):
            rays = np.nonzero(primitive_index == index)[0]
            if rays.size == 0:
                continue
            ray_directions = directions[:, rays]
            points = origins[:, rays] + nearest[rays] * ray_directions
            u, v, normals = primitive.surface(points)
            # Surfaces are two-sided: light the side the ray sees.
            towards_light = (normals * self.light_direction[:, None]).sum(axis=0)
            seen_from_behind = (normals * ray_directions).sum(axis=0) > 0.0
            lambert = np.maximum(np.where(seen_from_behind, -towards_light, towards_light), 0.0)
            shading = np.float32(self.ambient) + np.float32(self.diffuse) * lambert
            colours[rays] = self.textures[primitive.texture].sample(u, v) * shading[:, None]
        return colours


@dataclass(frozen=True)
class Exposure:
    """What one photograph integrates: K sub-frame camera-to-world poses, rotations (K, 3, 3) and centres
    (K, 3), visited in equal time slices, seen through a thin lens of the given aperture radius (world units)
    focused at focus_distance (depth along the optical axis). A pinhole is an aperture radius of 0.

    The aperture is a uniformly lit disk by default; aperture_blades (5 to 9) makes it a regular polygon of the
    disk's area turned by aperture_rotation (radians), and spherical_aberration (0 to 1) makes it brighter at
    its rim (see camera.aperture_points)."""

    rotations: np.ndarray
    centres: np.ndarray
    aperture_radius: float = 0.0
    focus_distance: float = 1.0
    aperture_blades: int = 0
    aperture_rotation: float = 0.0
    spherical_aberration: float = 0.0

    @classmethod
    def pinhole(cls, rotation, centre):
        return cls(np.asarray(rotation)[None], np.asarray(centre)[None])


def _rotate(rotations, vectors):
    """Applies rotation s (S, 3, 3) to the vectors (3, S, P) of sample s."""
    return np.stack([sum(rotations[:, row, column, None] * vectors[column] for column in range(3))
                     for row in range(3)])


def render(scene, intrinsics, exposure, samples_per_pixel, sampling_seed):
    """Renders an (H, W, 3) float32 linear-light image.

    Sample s of a pixel uses sub-frame s % K, aperture stratum s and the pixel-footprint stratum that a random
    per-pixel permutation assigns to s, so footprint and aperture are both stratified yet uncorrelated. The random
    jitter depends only on sampling_seed and the image size, never on the exposure: a pinhole render and a
    render whose aperture and shake are zero trace exactly the same rays and give identical images. Only an
    exposure with both a lens and several sub-frames permutes the aperture strata too, per pixel, since stratum s
    and sub-frame s % K would otherwise tie each sub-frame to one strip of the aperture.
    """
    num_subframes = len(exposure.rotations)
    if samples_per_pixel % num_subframes != 0:
        raise ValueError(f"samples_per_pixel ({samples_per_pixel}) must be a multiple of the number of "
                         f"sub-frames ({num_subframes})")
    width, height = intrinsics.width, intrinsics.height
    rng = np.random.default_rng(sampling_seed)
    corners, cell_size = stratum_corners(samples_per_pixel)
    sample_index = np.arange(samples_per_pixel)
    subframe = sample_index % num_subframes
    rotations = exposure.rotations.astype(np.float32)[subframe]
    centres = exposure.centres.astype(np.float32)[subframe]
    lens_scale = np.float32(exposure.aperture_radius)
    lens_to_slope = np.float32(1.0 / exposure.focus_distance)
    shaking_lens = num_subframes > 1 and exposure.aperture_radius > 0.0

    image = np.empty((height * width, 3), np.float32)
    pixels_per_batch = max(1, RAYS_PER_BATCH // samples_per_pixel)
    for first in range(0, height * width, pixels_per_batch):
        pixel = np.arange(first, min(first + pixels_per_batch, height * width))
        footprint_stratum = rng.permuted(np.broadcast_to(sample_index, (pixel.size, samples_per_pixel)), axis=1).T
        footprint = corners[footprint_stratum] + rng.random((samples_per_pixel, pixel.size, 2), np.float32) * cell_size
        if shaking_lens:
            aperture_stratum = rng.permuted(np.broadcast_to(sample_index, (pixel.size, samples_per_pixel)), axis=1).T
            aperture_corners = corners[aperture_stratum]
        else:
            aperture_corners = corners[:, None]
        aperture = aperture_corners + rng.random((samples_per_pixel, pixel.size, 2), np.float32) * cell_size
        lens_x, lens_y = aperture_points(aperture[..., 0], aperture[..., 1], exposure.aperture_blades,
                                         exposure.aperture_rotation, exposure.spherical_aberration)
        lens_x = lens_x * lens_scale
        lens_y = lens_y * lens_scale
        # Camera-frame ray through the footprint sample that passes through the lens point and meets the
        # pinhole ray on the plane of focus; its z component stays 1.
        slope_x = ((pixel % width).astype(np.float32) + footprint[..., 0] - intrinsics.cx) / intrinsics.fx
        slope_y = ((pixel // width).astype(np.float32) + footprint[..., 1] - intrinsics.cy) / intrinsics.fy
        camera_directions = np.stack([slope_x - lens_x * lens_to_slope, slope_y - lens_y * lens_to_slope,
                                      np.ones_like(slope_x)])
        camera_origins = np.stack([lens_x, lens_y, np.zeros_like(lens_x)])
        directions = _rotate(rotations, camera_directions)
        origins = _rotate(rotations, camera_origins) + centres.T[:, :, None]
        colours = scene.radiance(origins.reshape(3, -1), directions.reshape(3, -1))
        image[pixel] = colours.reshape(samples_per_pixel, pixel.size, 3).mean(axis=0)
    return image.reshape(height, width, 3)


def pixel_centre_rays(intrinsics, rotation, centre):
    """World rays (3, H*W) through the pixel centres of a pinhole camera, each with unit depth along the
    optical axis, so that a hit distance is the depth of the hit."""
    rows, columns = np.mgrid[0:intrinsics.height, 0:intrinsics.width]
    camera_directions = np.stack([(columns.ravel() + 0.5 - intrinsics.cx) / intrinsics.fx,
                                  (rows.ravel() + 0.5 - intrinsics.cy) / intrinsics.fy,
                                  np.ones(rows.size)])
    directions = (rotation @ camera_directions).astype(np.float32)
    origins = np.repeat(np.asarray(centre, np.float32)[:, None], rows.size, axis=1)
    return origins, directions


def render_depth(scene, intrinsics, rotation, centre):
    """Depth along the optical axis (H, W) of the surface seen at each pixel centre; inf where none is."""
    origins, directions = pixel_centre_rays(intrinsics, rotation, centre)
    depth, _ = scene.nearest_hits(origins, directions)
    return depth.reshape(intrinsics.height, intrinsics.width)
