"""A run's checkpoints, <model>/chkpnt<N>.pth: where they live, how they are written and read, and the random
number generators' states they carry so that a resumed run continues exactly where it stopped."""
import os
import random
import re
from typing import Any

import numpy as np
import torch

from utils.atomic_file import atomic_write
from utils.errors import UserError
from utils.torch_files import load_torch_file

CHECKPOINT_KEYS = ("iteration", "train_seconds", "gaussians", "sampler", "rng")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be read or is not one; the message names the file."""


def checkpoint_path(model_path: str, iteration: int) -> str:
    return os.path.join(model_path, f"chkpnt{iteration}.pth")


def checkpoint_iterations_in(model_path: str) -> list[int]:
    """Iterations of the checkpoints in model_path, ascending."""
    if not os.path.isdir(model_path):
        return []
    found = (re.fullmatch(r"chkpnt(\d+)\.pth", name) for name in os.listdir(model_path))
    return sorted(int(match.group(1)) for match in found if match)


def save_checkpoint(path: str, state: dict[str, Any]) -> None:
    """Write atomically: a run killed mid-write leaves the previous checkpoint intact and no partial file."""
    with atomic_write(path) as file:
        torch.save(state, file)


def load_checkpoint(path: str) -> dict[str, Any]:
    """The checkpoint's tensors stay on the CPU, where RNG states must be; restoring moves the rest."""
    state = load_torch_file(path, CheckpointError, "cannot read checkpoint")
    if any(key not in state for key in CHECKPOINT_KEYS):
        raise CheckpointError(f"{path}: not a checkpoint written by train.py")
    return state


def remove_older_periodic_checkpoints(model_path: str, newest: int, requested_iterations: frozenset[int]) -> None:
    """Keep disk use bounded: only the newest periodic checkpoint is needed to resume; those at requested
    iterations stay."""
    for iteration in checkpoint_iterations_in(model_path):
        if iteration < newest and iteration not in requested_iterations:
            os.remove(checkpoint_path(model_path, iteration))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_states() -> dict[str, Any]:
    # The numpy state is stored as plain lists so that checkpoints load with torch.load(weights_only=True).
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy_state = dict(states["numpy"])
    numpy_state["state"] = dict(numpy_state["state"], key=np.array(numpy_state["state"]["key"], dtype=np.uint32))
    np.random.set_state(numpy_state)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
