"""How fast Gaussians render: the FPS that render.py --fps-only and the benchmarks report."""
import time
from collections.abc import Sequence

import numpy as np
import torch

from gaussian_renderer import RenderableGaussians, ViewCamera, render
from utils.devices import synchronize


def measure_fps(cameras: Sequence[ViewCamera], params: RenderableGaussians, background: torch.Tensor, backend: str,
                device: torch.device, warmup_frames: int, timed_frames: int) -> dict[str, float | int]:
    """Render-only speed of params (GaussianModel.render_params, computed once as a viewer would) over cameras in
    turn: the first frames warm caches and kernels up, and every timed frame waits for the device to finish."""
    for index in range(warmup_frames):
        render(cameras[index % len(cameras)], params, background, backend)
    synchronize(device)
    seconds = []
    for index in range(timed_frames):
        started = time.perf_counter()
        render(cameras[index % len(cameras)], params, background, backend)
        synchronize(device)
        seconds.append(time.perf_counter() - started)
    median = float(np.median(seconds))
    return {
        "fps": 1.0 / median,
        "median_ms": 1000.0 * median,
        "mean_ms": 1000.0 * float(np.mean(seconds)),
        "timed_frames": timed_frames,
        "warmup_frames": warmup_frames,
    }
