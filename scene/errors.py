"""The error every scene reader raises on a missing or malformed dataset file."""

from utils.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset file that is missing or malformed; the message names the file and what is wrong."""
