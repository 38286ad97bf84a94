"""The analysis-synthesis deblurrer (Kaufman and Fattal, "Deblurring using Analysis-Synthesis Networks Pair",
CVPR 2020): an analysis network estimates a photo's blur kernel and a synthesis network deblurs the photo guided by
that kernel. Trained once on pairs of data.PairSampler and cached under its settings.

What follows the paper: the split into the two networks, so that the kernel enters training explicitly; the
analysis network's feature extraction at three scales, its channels reduced before the cross-correlation layers, and
the kernel rebuilt from coarse to fine (networks.AnalysisNetwork); a synthesis network whose convolutions the kernel
controls (networks.KernelGuidance); the training in stages: the synthesis network on the true kernels, the analysis
network on a loss between its kernel and the true one, then the synthesis network on the analysis network's
kernels so that it learns to live with their errors.

Losses used here: on the kernel, the squared error summed over its pixels relative to the true kernel's sum of
squares (kernel_loss); on the image, the mean absolute error in sRGB over the crop's centre (image_loss); Adam with
a cosine-decaying learning rate per stage. The paper states its own losses and schedules, whose text we could not
consult in full: these are our choices, as are the sizes (small enough to train on two CPU cores in minutes; --full
for a GPU), the image derivatives correlated beside the learned features, and, to make such small networks useful,
the Wiener deconvolutions by the kernel that the synthesis network is fed beside the photo, which it mixes per
pixel.

Photos are deblurred in overlapping tiles (tile pixels wide, of which the centre, margin = kernel radius inside each
edge, is kept and blended), each with its own kernel estimate: blur that varies across a photo, as defocus does
with depth, gets a kernel per tile.
"""

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from scene.synthetic.imaging import srgb_to_linear
from utils.atomic_file import atomic_write
from utils.errors import UserError
from utils.torch_files import load_torch_file

from .data import PairSampler, builtin_sharp_images, folder_sharp_images, pyramid_levels
from .kernels import KERNEL_FAMILIES, check_kernel_size
from .networks import AnalysisNetwork, KernelEncoder, SynthesisNetwork, wiener_deconvolution

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_CACHE = os.path.join("output", "image_deblur", "cache")
# The independent random streams of a training run: its pairs, and the held-out pairs it is checked on.
PAIR_STREAM, HELD_OUT_STREAM = 0, 1
HELD_OUT_BATCHES = 8
# The last stage fine-tunes a synthesis network already trained: a smaller step keeps what it learnt.
FINE_TUNE_RATE_SCALE = 0.3
LOG_EVERY = 50
TILE_CHUNK = 32


class DeblurrerError(UserError, ValueError):
    """A deblurrer setting out of range, or a training that diverged; the message names it."""


@dataclass(frozen=True)
class DeblurrerSettings:
    """Everything a trained deblurrer depends on (its cache key).

    tile: side of the crops the networks see, a multiple of 4; the image loss, and a deblurred photo, use their
    centre, kernel_size // 2 inside each edge, so that every kept pixel had the whole blur around it in view.
    max_noise: largest standard deviation of the Gaussian noise on the blurred crops (sRGB). kernel_bank: kernels
    drawn per sampler (data.PairSampler). sharp_sources: folders of extra sharp photos to crop from
    (data.folder_sharp_images)."""
    kernel_size: int = 33
    tile: int = 64
    batch: int = 8
    families: tuple = KERNEL_FAMILIES
    max_noise: float = 0.02
    kernel_bank: int = 1024
    analysis_width: int = 16
    correlation_channels: int = 6
    synthesis_width: int = 16
    code_size: int = 32
    wiener_regularisations: tuple = (0.003, 0.03)
    synthesis_steps: int = 800
    analysis_steps: int = 1200
    fine_tune_steps: int = 400
    synthesis_learning_rate: float = 1e-3
    analysis_learning_rate: float = 3e-3
    seed: int = 0
    sharp_sources: tuple = ()

    @property
    def margin(self) -> int:
        return self.kernel_size // 2

    def check(self) -> None:
        try:
            check_kernel_size(self.kernel_size)
        except ValueError as error:
            raise DeblurrerError(str(error)) from None
        if self.tile % 4 or self.tile - 2 * self.margin < 8:
            raise DeblurrerError(f"tile must be a multiple of 4 leaving a centre of at least 8 pixels inside the "
                                 f"kernel's radius ({self.margin}) from each edge, got {self.tile}")
        unknown = set(self.families) - set(KERNEL_FAMILIES)
        if not self.families or unknown:
            raise DeblurrerError(f"kernel families must be some of {', '.join(KERNEL_FAMILIES)}, got "
                                 f"{', '.join(self.families) or 'none'}")
        for name in ("synthesis_steps", "analysis_steps", "fine_tune_steps"):
            if getattr(self, name) < 1:
                raise DeblurrerError(f"{name} must be at least 1, got {getattr(self, name)}")


CPU_SETTINGS = DeblurrerSettings()
# For a GPU: wider networks, more context per tile, ten times the batches of twice the size.
FULL_SETTINGS = dataclasses.replace(CPU_SETTINGS, tile=96, batch=16, kernel_bank=16384, analysis_width=48,
                                    correlation_channels=12, synthesis_width=48, code_size=64, synthesis_steps=8000,
                                    analysis_steps=12000, fine_tune_steps=4000)


def deblurrer_settings(iterations: int | None = None, full: bool = False, seed: int = 0, sharp_sources=(),
                       families=KERNEL_FAMILIES) -> DeblurrerSettings:
    """The CPU preset (or the GPU one for full) trained on kernels of families, every stage shortened to iterations
    steps when given."""
    # In one order, so that a choice of families has one cache key; check() names any unknown one.
    families = tuple(family for family in KERNEL_FAMILIES if family in families) + \
        tuple(family for family in families if family not in KERNEL_FAMILIES)
    settings = dataclasses.replace(FULL_SETTINGS if full else CPU_SETTINGS, seed=seed, families=families,
                                   sharp_sources=tuple(os.path.abspath(folder) for folder in sharp_sources))
    if iterations is not None:
        settings = dataclasses.replace(settings, synthesis_steps=iterations, analysis_steps=iterations,
                                       fine_tune_steps=iterations)
    settings.check()
    return settings


class ImageDeblurrer(nn.Module):
    """The analysis network, the kernel encoder and the synthesis network, with the settings they were built by."""

    def __init__(self, settings: DeblurrerSettings):
        super().__init__()
        self.settings = settings
        self.analysis = AnalysisNetwork(settings.kernel_size, settings.analysis_width, settings.correlation_channels)
        self.encoder = KernelEncoder(settings.kernel_size, settings.code_size)
        self.synthesis = SynthesisNetwork(settings.synthesis_width, settings.code_size,
                                          len(settings.wiener_regularisations))

    def restore(self, blurred: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Crops (B, 3, tile, tile) deblurred by the synthesis network, given their kernels (B, k, k)."""
        linear = torch.from_numpy(srgb_to_linear(blurred.detach().cpu().numpy())).to(blurred.device)
        wiener = wiener_deconvolution(linear, kernels, self.settings.wiener_regularisations)
        return self.synthesis(blurred, wiener, self.encoder(kernels)[:, :, None, None])

    @torch.no_grad()
    def deblur_photo(self, photo: np.ndarray) -> np.ndarray:
        """A photo (H, W, 3), sRGB in [0, 1], deblurred tile by tile (see the module's docstring)."""
        settings = self.settings
        device = next(self.parameters()).device
        centre = settings.tile - 2 * settings.margin
        stride = centre // 2
        height, width = photo.shape[:2]
        pad = settings.margin + stride
        # Tiles every stride pixels whose centres cover the photo twice over everywhere; the padding mirrors it.
        extra = [(-(side + 2 * pad - settings.tile)) % stride for side in (height, width)]
        padded = np.pad(photo, ((pad, pad + extra[0]), (pad, pad + extra[1]), (0, 0)), mode="symmetric")
        tops = range(0, padded.shape[0] - settings.tile + 1, stride)
        lefts = range(0, padded.shape[1] - settings.tile + 1, stride)
        corners = [(top, left) for top in tops for left in lefts]
        tiles = torch.from_numpy(np.stack([padded[top:top + settings.tile, left:left + settings.tile]
                                           for top, left in corners]).astype(np.float32)).permute(0, 3, 1, 2)
        # A squared sine over the centre: at half-centre strides the overlapping windows add up to one.
        profile = np.sin(np.pi * (np.arange(centre) + 0.5) / centre) ** 2
        window = np.outer(profile, profile)[:, :, None]
        total = np.zeros(padded.shape, np.float64)
        weight = np.zeros(padded.shape[:2] + (1,), np.float64)
        inside = slice(settings.margin, settings.margin + centre)
        for start in range(0, len(corners), TILE_CHUNK):
            batch = tiles[start:start + TILE_CHUNK].to(device)
            restored = self.restore(batch, self.analysis(batch))[:, :, inside, inside].permute(0, 2, 3, 1)
            for (top, left), tile in zip(corners[start:start + TILE_CHUNK], restored.cpu().numpy()):
                rows = slice(top + settings.margin, top + settings.margin + centre)
                columns = slice(left + settings.margin, left + settings.margin + centre)
                total[rows, columns] += tile * window
                weight[rows, columns] += window
        photo_part = (slice(pad, pad + height), slice(pad, pad + width))
        return np.clip(total[photo_part] / weight[photo_part], 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=4)
def crop_levels(sharp_sources: tuple, smallest_side: int) -> list:
    """The pyramid levels of the built-in sharp photos and those of the folders sharp_sources; made once per process
    for each choice, to be read only."""
    images = dict(builtin_sharp_images())
    for folder in sharp_sources:
        images.update(folder_sharp_images(folder))
    return pyramid_levels(images.values(), smallest_side)


def pair_sampler(settings: DeblurrerSettings, stream: int, crop: int | None = None) -> PairSampler:
    """The sampler of the deblurrer's training pairs (crops of tile pixels unless crop), on its own random stream."""
    crop = crop or settings.tile
    rng = np.random.default_rng([settings.seed, stream])
    return PairSampler(crop_levels(settings.sharp_sources, crop + settings.kernel_size - 1), crop,
                       settings.kernel_size, rng, settings.families, settings.max_noise, settings.kernel_bank)


def image_loss(settings: DeblurrerSettings, restored: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    inside = slice(settings.margin, settings.tile - settings.margin)
    return (restored - sharp)[:, :, inside, inside].abs().mean()


def kernel_loss(estimated: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """The squared error summed over the kernel, relative to the true kernel's own sum of squares: a wide blur,
    whose kernel's entries are small, counts as much as a narrow one (a plain squared error is all but blind to its
    shape)."""
    return ((estimated - true).square().sum(dim=(1, 2)) / true.square().sum(dim=(1, 2))).mean()


def run_stage(name, steps, parameters, learning_rate, loss_of_batch, sampler, settings, device):
    """steps of Adam on parameters, the learning rate decaying along a cosine; returns the mean loss of the last
    tenth of the steps."""
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    recent: list[float] = []
    for step in range(1, steps + 1):
        batch = sampler.draw(settings.batch)
        loss = loss_of_batch(batch.blurred.to(device), batch.sharp.to(device), batch.kernels.to(device))
        if not torch.isfinite(loss):
            raise DeblurrerError(f"the {name} stage diverged at step {step} (loss {loss.item()}); lower the "
                                 f"learning rate ({learning_rate})")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        recent = (recent + [loss.item()])[-max(1, steps // 10):]
        if step % LOG_EVERY == 0 or step == steps:
            logger.info(f"  {name} {step}/{steps}: loss {np.mean(recent):.5f}")
    return float(np.mean(recent))


def train_deblurrer(settings: DeblurrerSettings, device: str = "cpu") -> tuple:
    """A deblurrer trained from scratch in the three stages; returns it and {stage: final loss}."""
    settings.check()
    torch.manual_seed(settings.seed)
    sampler = pair_sampler(settings, PAIR_STREAM)
    model = ImageDeblurrer(settings).to(device)
    guided_synthesis = list(model.encoder.parameters()) + list(model.synthesis.parameters())
    losses = {
        "synthesis": run_stage(
            "synthesis (true kernels)", settings.synthesis_steps, guided_synthesis, settings.synthesis_learning_rate,
            lambda blurred, sharp, kernels: image_loss(settings, model.restore(blurred, kernels), sharp),
            sampler, settings, device),
        "analysis": run_stage(
            "analysis", settings.analysis_steps, model.analysis.parameters(), settings.analysis_learning_rate,
            lambda blurred, sharp, kernels: kernel_loss(model.analysis(blurred), kernels), sampler, settings, device),
    }

    def fine_tune_loss(blurred, sharp, kernels):
        with torch.no_grad():
            estimated = model.analysis(blurred)
        return image_loss(settings, model.restore(blurred, estimated), sharp)
    losses["fine_tune"] = run_stage("synthesis (estimated kernels)", settings.fine_tune_steps, guided_synthesis,
                                    FINE_TUNE_RATE_SCALE * settings.synthesis_learning_rate, fine_tune_loss, sampler,
                                    settings, device)
    return model.eval(), losses


def settings_record(settings: DeblurrerSettings) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def cache_key(settings: DeblurrerSettings) -> str:
    """A digest of the settings and of the names and sizes of the extra sharp photos."""
    sources = [sorted((name, os.path.getsize(os.path.join(folder, name))) for name in os.listdir(folder))
               for folder in settings.sharp_sources if os.path.isdir(folder)]
    text = json.dumps({"format": FORMAT_VERSION, "settings": settings_record(settings), "sources": sources},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CachedDeblurrer:
    model: ImageDeblurrer
    path: str
    train_seconds: float  # spent training it in this call: 0 when it came from the cache
    losses: dict


def cached_deblurrer(settings: DeblurrerSettings, cache_dir: str = DEFAULT_CACHE, device: str = "cpu") -> \
        CachedDeblurrer:
    """The deblurrer of these settings from cache_dir, trained and cached there (atomically) when absent."""
    settings.check()
    path = os.path.join(cache_dir, f"asn-{cache_key(settings)}.pt")
    if os.path.isfile(path):
        try:
            state = load_torch_file(path, DeblurrerError, "unreadable cached deblurrer")
            if state.get("format") != FORMAT_VERSION or state.get("settings") != settings_record(settings):
                raise DeblurrerError(f"{path}: a cached deblurrer of other settings")
            model = ImageDeblurrer(settings)
            model.load_state_dict(state["weights"])
            logger.info(f"deblurrer from {path}")
            return CachedDeblurrer(model.to(device).eval(), path, 0.0, state["losses"])
        except (DeblurrerError, RuntimeError, KeyError) as error:
            logger.warning(f"{error}; training it again")
    logger.info(f"training the analysis-synthesis deblurrer ({settings.synthesis_steps} + {settings.analysis_steps} "
                f"+ {settings.fine_tune_steps} steps on {device})")
    started = time.perf_counter()
    model, losses = train_deblurrer(settings, device)
    seconds = time.perf_counter() - started
    losses["held_out_kernel"] = kernel_errors(model, pair_sampler(settings, HELD_OUT_STREAM), HELD_OUT_BATCHES,
                                              settings.batch)
    with atomic_write(path) as file:
        torch.save({"format": FORMAT_VERSION, "settings": settings_record(settings), "weights": model.state_dict(),
                    "losses": losses, "train_seconds": seconds}, file)
    errors = losses["held_out_kernel"]
    logger.info(f"trained in {seconds:.0f} s; kernel error on new pairs {errors['network']:.3f} (no blur "
                f"{errors['no_blur']:.3f}, the mean kernel {errors['mean_kernel']:.3f}); cached as {path}")
    return CachedDeblurrer(model, path, seconds, losses)


def kernel_errors(model: ImageDeblurrer, sampler: PairSampler, batches: int, batch: int) -> dict:
    """The kernel loss on batches of pairs that training did not see (another random stream, or other photos) of the
    analysis network ("network"), of a centred delta kernel ("no_blur") and of the mean of those pairs' true kernels
    ("mean_kernel": the best constant guess, which knows the distribution of kernels but not the photo)."""
    size = model.settings.kernel_size
    device = next(model.parameters()).device
    delta = torch.zeros(size, size, device=device)
    delta[size // 2, size // 2] = 1.0
    drawn = [sampler.draw(batch) for _ in range(batches)]
    with torch.no_grad():
        estimated = torch.cat([model.analysis(pairs.blurred.to(device)) for pairs in drawn])
    kernels = torch.cat([pairs.kernels.to(device) for pairs in drawn])
    return {"network": kernel_loss(estimated, kernels).item(),
            "no_blur": kernel_loss(delta.expand_as(kernels), kernels).item(),
            "mean_kernel": kernel_loss(kernels.mean(dim=0).expand_as(kernels), kernels).item()}
