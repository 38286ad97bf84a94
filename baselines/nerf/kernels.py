"""Blur kernels: how a blurry training pixel is formed from several rays.

Every kernel maps a batch of training pixels to KernelRays: K world rays per pixel and the weights that mix
their (linear) colours into the blurry colour. Kernel point 0 stands for the pixel's sharp ray, the one test
views render; the kernels are used in training only.
"""

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from baselines.nerf.encoding import PositionalEncoding

# Rotation angles (radians) below which the exponential map uses its Taylor series: the closed form divides by
# powers of the angle.
SMALL_ANGLE = 0.1


@dataclass
class KernelRays:
    origins: torch.Tensor  # (N, K, 3), world
    directions: torch.Tensor  # (N, K, 3), world
    weights: torch.Tensor  # (N, K), non-negative, summing to 1 over K
    alignment_loss: Optional[torch.Tensor] = None  # scalar: how far kernel point 0 strays from the sharp ray


def normalised_pixels(pixels, sizes):
    """Pixel coordinates (x, y) to [-1, 1] across the image (grid_sample's convention without align_corners)."""
    return 2.0 * pixels / sizes - 1.0


class ViewPixelMLP(nn.Module):
    """The kernels' per-pixel predictor: a small MLP on a learned embedding of the view and the encoded position of
    the pixel. Its output layer starts at zero, so a kernel starts from its initial pattern with uniform weights."""

    def __init__(self, num_views, output_dims, embedding_dims=32, width=64, depth=3, pixel_frequencies=4):
        super().__init__()
        self.embedding = nn.Embedding(num_views, embedding_dims)
        self.pixel_encoding = PositionalEncoding(2, pixel_frequencies)
        layers = []
        inputs = embedding_dims + self.pixel_encoding.output_dims
        for _ in range(depth):
            layers += [nn.Linear(inputs, width), nn.ReLU()]
            inputs = width
        self.hidden = nn.Sequential(*layers)
        self.output = nn.Linear(width, output_dims)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, view_indices, positions):
        """(N, output_dims) for views (N,) and normalised pixel positions (N, 2)."""
        features = torch.cat([self.embedding(view_indices), self.pixel_encoding(positions)], dim=-1)
        return self.output(self.hidden(features))


# ---- Deblur-NeRF ----

def deformed_rays(cameras, view_indices, pixels, pixel_offsets, origin_offsets):
    """Rays (N, K, 3) through pixels (N, 2) moved by pixel_offsets (N, K, 2), from the camera centres moved by
    origin_offsets (N, K, 3; camera axes, world units)."""
    kernel_points = pixel_offsets.shape[1]
    origins, directions = cameras.rays(view_indices[:, None].expand(-1, kernel_points), pixels[:, None] + pixel_offsets)
    rotations = cameras.camera_to_world[view_indices, :, :3]
    return origins + (rotations[:, None] @ origin_offsets[..., None]).squeeze(-1), directions


class DeformableSparseKernel(nn.Module):
    """Deblur-NeRF's deformable sparse kernel: K rays per pixel whose pixel positions and origins are moved by
    offsets that an MLP predicts from the view embedding and the pixel position, mixed with predicted softmax
    weights. An alignment loss keeps kernel point 0 on the pixel's own ray, so that the sharp scene stays
    registered to the cameras.

    translation_scale: world length of a unit origin offset (a fraction of the scene's near depth).
    initial_spread: the other kernel points start at fixed random pixel offsets up to this many pixels; starting
    them all on the pixel would give them identical gradients forever.
    """

    def __init__(self, num_views, num_points, translation_scale, initial_spread=1.0):
        super().__init__()
        self.num_points = num_points
        self.translation_scale = translation_scale
        # Per kernel point: a pixel offset (2), an origin offset (3) and a weight logit (1).
        self.mlp = ViewPixelMLP(num_views, 6 * num_points)
        initial_offsets = (2.0 * torch.rand(num_points, 2) - 1.0) * initial_spread
        initial_offsets[0] = 0.0
        self.register_buffer("initial_offsets", initial_offsets)

    def forward(self, view_indices, pixels, cameras):
        positions = normalised_pixels(pixels, cameras.sizes[view_indices])
        outputs = self.mlp(view_indices, positions).view(-1, self.num_points, 6)
        pixel_offsets = self.initial_offsets + outputs[..., :2]
        origin_offsets = outputs[..., 2:5]
        origins, directions = deformed_rays(
            cameras, view_indices, pixels, pixel_offsets, origin_offsets * self.translation_scale
        )
        alignment_loss = (pixel_offsets[:, 0] ** 2).sum(-1).mean() + (origin_offsets[:, 0] ** 2).sum(-1).mean()
        return KernelRays(origins, directions, torch.softmax(outputs[..., 5], dim=-1), alignment_loss)


# ---- DP-NeRF ----

def skew(vectors):
    """Cross-product matrices (..., 3, 3) of vectors (..., 3)."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(*vectors.shape[:-1], 3, 3)


def se3_exp(twists):
    """Rigid motions (..., 3, 4) = [R | t] of twists (..., 6) = (rotation vector, translational part v): the
    exponential map of se(3), R = exp([w]x) and t = V v."""
    rotation_vectors, translations = twists[..., :3], twists[..., 3:]
    angle_sq = (rotation_vectors ** 2).sum(-1)[..., None, None]
    small = angle_sq < SMALL_ANGLE ** 2
    # The closed forms see a safe angle where the series is used, so that neither branch yields NaN gradients.
    angle_sq_safe = torch.where(small, torch.ones_like(angle_sq), angle_sq)
    angle = angle_sq_safe.sqrt()
    sin_term = torch.where(small, 1.0 - angle_sq / 6.0 + angle_sq ** 2 / 120.0, torch.sin(angle) / angle)
    cos_term = torch.where(small, 0.5 - angle_sq / 24.0 + angle_sq ** 2 / 720.0,
                           (1.0 - torch.cos(angle)) / angle_sq_safe)
    cubic_term = torch.where(small, 1.0 / 6.0 - angle_sq / 120.0 + angle_sq ** 2 / 5040.0,
                             (angle - torch.sin(angle)) / (angle_sq_safe * angle))
    cross = skew(rotation_vectors)
    cross_sq = cross @ cross
    identity = torch.eye(3, dtype=twists.dtype, device=twists.device)
    rotation = identity + sin_term * cross + cos_term * cross_sq
    left_jacobian = identity + cos_term * cross + cubic_term * cross_sq
    return torch.cat([rotation, left_jacobian @ translations[..., None]], dim=-1)


def compose(first, second):
    """The rigid transform (..., 3, 4) that applies second, then first."""
    rotation = first[..., :3, :3] @ second[..., :3, :3]
    translation = first[..., :3, :3] @ second[..., :3, 3:] + first[..., :3, 3:]
    return torch.cat([rotation, translation], dim=-1)


class RigidBlurKernel(nn.Module):
    """DP-NeRF's rigid blurring kernel: a blurry pixel mixes the rays through it from K poses of its camera, the
    camera itself (kernel point 0) and K - 1 copies moved by a learned rigid motion per view and kernel point, the
    poses the camera passed through during the exposure. Each pixel's weights come from a small MLP on the view
    embedding and the pixel position (DP-NeRF's adaptive weight proposal, here without its radiance-field
    features).

    translation_scale: world length of a unit translational twist (the scene's near depth).
    initial_std: spread of the initial twists; small, so that the kernel starts nearly sharp, but not zero, which
    would give the copies identical gradients.
    """

    def __init__(self, num_views, num_points, translation_scale, initial_std=1e-2):
        super().__init__()
        self.translation_scale = translation_scale
        self.twists = nn.Parameter(initial_std * torch.randn(num_views, num_points - 1, 6))
        self.weight_mlp = ViewPixelMLP(num_views, num_points)

    def poses(self, view_indices, cameras, extent=None):
        """Camera-to-world poses (N, K, 3, 4) of the kernel points for pixels of the given views. extent (N,) in
        [0, 1] scales each pixel's motions: 0 gives K copies of the camera."""
        twists = self.twists[view_indices]
        if extent is not None:
            twists = twists * extent[:, None, None]
        motions = se3_exp(torch.cat([twists[..., :3], twists[..., 3:] * self.translation_scale], dim=-1))
        camera_to_world = cameras.camera_to_world[view_indices][:, None]
        return torch.cat([camera_to_world, compose(camera_to_world, motions)], dim=1)

    def forward(self, view_indices, pixels, cameras, extent=None):
        poses = self.poses(view_indices, cameras, extent)
        kernel_points = poses.shape[1]
        origins, directions = cameras.rays(
            view_indices[:, None].expand(-1, kernel_points), pixels[:, None].expand(-1, kernel_points, -1), poses
        )
        logits = self.weight_mlp(view_indices, normalised_pixels(pixels, cameras.sizes[view_indices]))
        return KernelRays(origins, directions, torch.softmax(logits, dim=-1))


# ---- the dynamic-kernel variant ----

class BlurExtentNet(nn.Module):
    """The mask CNN: each pixel's blur extent in [0, 1] from the blurry photo. Two stride-2 layers and a dilated
    one give it a wide view cheaply; blur extent varies smoothly, so its quarter-resolution map is sampled
    bilinearly at the pixels."""

    def __init__(self, channels=16):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * channels, 2 * channels, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv2d(2 * channels, 1, 1),
        )

    def forward(self, image):
        """Blur-extent map (1, 1, h, w) of an image (3, H, W) in [0, 1]."""
        return torch.sigmoid(self.layers(2.0 * image[None] - 1.0))

    def extent_at(self, image, pixels):
        """Blur extent (P,) at pixel positions (P, 2) of the image."""
        size = torch.tensor([image.shape[2], image.shape[1]], dtype=pixels.dtype, device=pixels.device)
        grid = normalised_pixels(pixels, size).view(1, 1, -1, 2)
        return F.grid_sample(self(image), grid, align_corners=False, padding_mode="border").view(-1)


class DynamicBlurKernel(nn.Module):
    """DP-NeRF's rigid kernel with a per-pixel size: the rigid motions are scaled by the blur extent that the mask
    CNN predicts from the blurry training photo, so that sharp regions get a point-like kernel and strongly blurred
    ones a wide kernel, within one view.

    images: the training photos (3, H, W) in view order, the mask CNN's input (not part of the module's state).
    """

    def __init__(self, num_views, num_points, translation_scale, images):
        super().__init__()
        if len(images) != num_views:
            raise ValueError(f"DynamicBlurKernel: {len(images)} images for {num_views} views")
        self.rigid = RigidBlurKernel(num_views, num_points, translation_scale)
        self.extent_net = BlurExtentNet()
        self.images = images

    def extent(self, view_indices, pixels):
        """The mask CNN's blur extent (N,) at each pixel, running it once per view in the batch."""
        extent = pixels.new_empty(len(pixels))
        for view in torch.unique(view_indices).tolist():
            chosen = view_indices == view
            extent[chosen] = self.extent_net.extent_at(self.images[view], pixels[chosen])
        return extent

    def forward(self, view_indices, pixels, cameras):
        return self.rigid(view_indices, pixels, cameras, self.extent(view_indices, pixels))
