"""Where the project's log records go when a command line runs.

Library modules log through `logging.getLogger(__name__)` and never print; a command line calls
configure_cli_logging() first, so that their records of level INFO and above reach the terminal as plain lines.
"""
import logging
import os
import sys
from typing import TextIO

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CurrentStderrHandler(logging.StreamHandler):
    """Writes each record to sys.stderr as it is at that moment: tests and tools replace sys.stderr between runs,
    and a handler holding the stream of the first run would write the later ones to a closed file."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr


def project_logger_names() -> list[str]:
    """The top-level modules and packages of the repository, whose loggers name the project's records."""
    names = []
    for entry in sorted(os.listdir(REPOSITORY)):
        path = os.path.join(REPOSITORY, entry)
        if entry.endswith(".py"):
            names.append(entry[:-3])
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            names.append(entry)
    return names


def configure_cli_logging() -> None:
    """The project's INFO records and everyone's warnings to stderr, as the bare message, the way the command lines
    printed them; other libraries' INFO records (a web server's connections, say) stay out. Calling it again
    changes nothing."""
    for name in project_logger_names():
        logging.getLogger(name).setLevel(logging.INFO)
    root = logging.getLogger()
    if not any(isinstance(handler, CurrentStderrHandler) for handler in root.handlers):
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
