"""The error that stops a training run."""
from utils.errors import UserError


class TrainingError(UserError, RuntimeError):
    """Training cannot go on: a checkpoint that does not fit the run, a diverged loss, no Gaussians left; the
    message says which and what to change."""
