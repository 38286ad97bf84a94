"""Blur2Blur-style conversion (Pham et al., "Blur2Blur: Blur Conversion for Unsupervised Image Deblurring on Unknown
Domains", CVPR 2024): rather than deblur photos whose blur a deblurrer was not trained on, convert them into the blur
it was trained on, then let it deblur them.

Per scene, without any sharp photo of it: a converter (networks.BlurConverter) learns to map crops of the scene's
blurry training photos into the known blur domain, here the analysis-synthesis deblurrer's own training pairs
(asn.pair_sampler: sharp crops blurred by the kernels of its families). It is trained adversarially against a
patch discriminator (networks.PatchDiscriminator) that tells its output from blurry crops of the known domain, with
least-squares GAN losses, plus a reconstruction term, the mean absolute difference between the photo and its
conversion shrunk by reconstruction_pool (at that scale a change of blur hardly shows while a change of content
does; the paper's reconstruction term compares deep features, which no pretrained network here provides), and an
identity term, the same on crops already in the known domain, which the converter must leave as they are.
"""

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .asn import DeblurrerSettings, pair_sampler
from .networks import BlurConverter, PatchDiscriminator

logger = logging.getLogger(__name__)

KNOWN_BLUR_STREAM, SCENE_CROP_STREAM = 2, 3
LOG_EVERY = 50
# Adam's momentum as GANs usually take it: a lower first moment keeps the two players from overshooting.
ADAM_BETAS = (0.5, 0.999)


@dataclass(frozen=True)
class ConverterSettings:
    width: int = 16
    discriminator_width: int = 16
    crop: int = 64
    batch: int = 8
    steps: int = 400
    learning_rate: float = 2e-4
    reconstruction_weight: float = 10.0
    identity_weight: float = 5.0
    reconstruction_pool: int = 4
    seed: int = 0


CPU_CONVERTER = ConverterSettings()
FULL_CONVERTER = dataclasses.replace(CPU_CONVERTER, width=48, discriminator_width=48, batch=16, steps=4000)


def converter_settings(iterations: int | None = None, full: bool = False, seed: int = 0) -> ConverterSettings:
    settings = dataclasses.replace(FULL_CONVERTER if full else CPU_CONVERTER, seed=seed)
    return settings if iterations is None else dataclasses.replace(settings, steps=iterations)


class PhotoCrops:
    """Random crops (crop x crop) of photos (H, W, 3) in [0, 1], mirrored out where a photo is smaller, turned by
    quarter turns and maybe mirrored."""

    def __init__(self, photos, crop: int, rng: np.random.Generator):
        self.crop, self.rng = crop, rng
        self.photos = [np.pad(photo, [(0, max(0, crop - photo.shape[0])), (0, max(0, crop - photo.shape[1])), (0, 0)],
                              mode="symmetric") for photo in photos]

    def draw(self, batch: int) -> torch.Tensor:
        crops = []
        for _ in range(batch):
            photo = self.photos[self.rng.integers(len(self.photos))]
            top = self.rng.integers(photo.shape[0] - self.crop + 1)
            left = self.rng.integers(photo.shape[1] - self.crop + 1)
            crop = np.rot90(photo[top:top + self.crop, left:left + self.crop], int(self.rng.integers(4)))
            crops.append(crop[:, ::-1] if self.rng.random() < 0.5 else crop)
        return torch.from_numpy(np.stack(crops).astype(np.float32)).permute(0, 3, 1, 2)


def train_converter(photos, deblurrer: DeblurrerSettings, settings: ConverterSettings, device: str = "cpu") -> \
        BlurConverter:
    """A converter from the blur of photos (a scene's blurry training photos, (H, W, 3) in [0, 1]) to the blur the
    deblurrer of the given settings was trained on."""
    torch.manual_seed(settings.seed)
    known = pair_sampler(deblurrer, KNOWN_BLUR_STREAM, settings.crop)
    unknown = PhotoCrops(photos, settings.crop, np.random.default_rng([settings.seed, SCENE_CROP_STREAM]))
    converter = BlurConverter(settings.width).to(device)
    discriminator = PatchDiscriminator(settings.discriminator_width).to(device)
    converter_optimizer = torch.optim.Adam(converter.parameters(), settings.learning_rate, betas=ADAM_BETAS)
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), settings.learning_rate, betas=ADAM_BETAS)

    def shrunk(images):
        return F.avg_pool2d(images, settings.reconstruction_pool)

    for step in range(1, settings.steps + 1):
        scene_crops = unknown.draw(settings.batch).to(device)
        known_crops = known.draw(settings.batch).blurred.to(device)
        converted = converter(scene_crops)
        adversarial = (discriminator(converted) - 1.0).square().mean()
        reconstruction = (shrunk(converted) - shrunk(scene_crops)).abs().mean()
        identity = (converter(known_crops) - known_crops).abs().mean()
        loss = adversarial + settings.reconstruction_weight * reconstruction + settings.identity_weight * identity
        converter_optimizer.zero_grad()
        loss.backward()
        converter_optimizer.step()

        judged_known = discriminator(known_crops)
        judged_converted = discriminator(converted.detach())
        discriminator_loss = 0.5 * ((judged_known - 1.0).square().mean() + judged_converted.square().mean())
        discriminator_optimizer.zero_grad()
        discriminator_loss.backward()
        discriminator_optimizer.step()
        if step % LOG_EVERY == 0 or step == settings.steps:
            logger.info(f"  converter {step}/{settings.steps}: adversarial {adversarial.item():.4f} reconstruction "
                f"{reconstruction.item():.4f} identity {identity.item():.4f} discriminator "
                f"{discriminator_loss.item():.4f}")
    return converter.eval()


@torch.no_grad()
def convert_photo(converter: BlurConverter, photo: np.ndarray) -> np.ndarray:
    """A photo (H, W, 3) in [0, 1] converted into the known blur, clipped to [0, 1]."""
    device = next(converter.parameters()).device
    image = torch.from_numpy(np.ascontiguousarray(photo, np.float32)).permute(2, 0, 1)[None].to(device)
    return converter(image)[0].permute(1, 2, 0).clamp(0.0, 1.0).cpu().numpy()
