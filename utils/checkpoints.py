"""Where a run's checkpoints live: <model>/chkpnt<N>.pth."""
import os
import re


def checkpoint_path(model_path, iteration):
    return os.path.join(model_path, f"chkpnt{iteration}.pth")


def checkpoint_iterations_in(model_path):
    """Iterations of the checkpoints in model_path, ascending."""
    if not os.path.isdir(model_path):
        return []
    found = (re.fullmatch(r"chkpnt(\d+)\.pth", name) for name in os.listdir(model_path))
    return sorted(int(match.group(1)) for match in found if match)
