"""Reading the files torch.save writes (checkpoints, weights) without trusting them."""

import os

import torch


def load_torch_file(path: str | os.PathLike, error_type: type[Exception], unreadable: str) -> dict:
    """The dict that torch.save wrote at path, its tensors on the CPU. weights_only=True runs no code from the file.

    A file torch cannot read, or one holding anything but a dict, raises error_type with the message
    "<path>: <unreadable> (<why>)", e.g. unreadable="cannot read checkpoint".
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise error_type(f"{path}: {unreadable} ({error})") from None
    if not isinstance(state, dict):
        raise error_type(f"{path}: {unreadable} (it holds a {type(state).__name__}, not a dict)")
    return state
