"""The four methods as one model: coarse and fine radiance fields, their volume renderer, and the blur kernel of
the deblurring methods."""

import torch
from torch import nn

from baselines.nerf.kernels import DeformableSparseKernel, DynamicBlurKernel, RigidBlurKernel
from baselines.nerf.models import RadianceField
from baselines.nerf.volume_rendering import VolumeRenderer
from utils.errors import UserError
from utils.images import linear_to_srgb

METHODS = ("nerf", "deblurnerf", "dpnerf", "dynamic")
# Deblur-NeRF's origin offsets are in hundredths of the scene's near depth: the camera moves little during an
# exposure compared with the distance to the scene.
DEFORMABLE_TRANSLATION_UNIT = 0.01


class BaselineInputError(UserError, ValueError):
    """A method, setting or scene the NeRF baselines cannot run with; the message names it."""


def check_method(method):
    if method not in METHODS:
        raise BaselineInputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")


def build_kernel(method, num_views, num_points, scene_scale, images):
    """The blur kernel of a method (None for vanilla NeRF)."""
    check_method(method)
    if method == "nerf":
        return None
    if num_points < 2:
        raise BaselineInputError(f"--kernel_points must be at least 2 for {method} (the sharp ray and one more), "
                         f"got {num_points}")
    if method == "deblurnerf":
        return DeformableSparseKernel(num_views, num_points, DEFORMABLE_TRANSLATION_UNIT * scene_scale)
    if method == "dpnerf":
        return RigidBlurKernel(num_views, num_points, scene_scale)
    return DynamicBlurKernel(num_views, num_points, scene_scale, images)


class NeRFMethod(nn.Module):
    """A NeRF baseline ready to train on the pixels of train_cameras (rays.ViewCameras) and to render any view.

    The deblurring methods mix the kernel's rays as light, in linear colour, and tone-map the mixture to compare it
    with the photo (Deblur-NeRF's gamma step, here the sRGB curve); their sharp renders are tone-mapped the same
    way. Vanilla NeRF's fields output display colour directly.
    images: the training photos (3, H, W), which the dynamic kernel's mask CNN reads.
    """

    def __init__(self, method, train_cameras, space, images, net_depth, net_width, coarse_samples, fine_samples,
                 kernel_points, density_noise, background):
        super().__init__()
        self.method = method
        self.coarse_field = RadianceField(net_depth, net_width)
        self.fine_field = RadianceField(net_depth, net_width)
        self.kernel = build_kernel(method, len(train_cameras), kernel_points, space.scene_scale, images)
        self.renderer = VolumeRenderer(
            self.coarse_field, self.fine_field, space, coarse_samples, fine_samples, density_noise, background
        )
        self.train_cameras = train_cameras

    def display_colour(self, colour):
        return colour if self.kernel is None else linear_to_srgb(colour.clamp(0.0, 1.0))

    def training_colours(self, view_indices, pixels, generator):
        """Colours (N, 3) of the coarse and fine passes at training pixels as the camera recorded them (blurred by
        the kernel), and the kernel's alignment loss (None when it has none)."""
        if self.kernel is None:
            origins, directions = self.train_cameras.rays(view_indices, pixels)
            coarse, fine = self.renderer(origins, directions, generator)
            return coarse, fine, None
        kernel_rays = self.kernel(view_indices, pixels, self.train_cameras)
        coarse, fine = self.renderer(kernel_rays.origins, kernel_rays.directions, generator)
        weights = kernel_rays.weights[..., None]
        blurred = [self.display_colour((weights * colours).sum(dim=1)) for colours in (coarse, fine)]
        return blurred[0], blurred[1], kernel_rays.alignment_loss

    @torch.no_grad()
    def render_view(self, cameras, view, chunk):
        """The sharp image (3, H, W) of a view of cameras (rays.ViewCameras): its own rays, never the kernel."""
        pixels = cameras.pixel_centres(view)
        colours = []
        for start in range(0, len(pixels), chunk):
            origins, directions = cameras.rays(view, pixels[start:start + chunk])
            colours.append(self.renderer(origins, directions)[1])
        width, height = cameras.sizes[view].tolist()
        image = self.display_colour(torch.cat(colours)).clamp(0.0, 1.0)
        return image.reshape(height, width, 3).permute(2, 0, 1)
