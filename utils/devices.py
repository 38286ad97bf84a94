"""The device work runs on."""

import torch


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the work queued on it, so that a clock read next counts that work; the CPU
    runs every operation before returning."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
