"""Files that appear whole or not at all."""
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

# atomic_write's temporaries: ".<name of the file written>.<8 random characters>.tmp" beside that file. The
# characters are those of tempfile's names, which earlier versions used, so that their leftovers match too.
TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")


@contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yields a file open for writing; only once the block completes does it replace `path`, synced to disk.

    The file gets the permissions of any new file (0666 less the umask). A process killed mid-write leaves the
    previous file intact and, at worst, a hidden temporary beside it, which the next complete write of `path`
    removes: a file has one writer at a time.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    # Created as open() creates files, so that the umask applies; tempfile.mkstemp would make it 0600.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    remove_stale_temporaries(folder, os.path.basename(path))


def remove_stale_temporaries(folder: str, target: str | None = None) -> None:
    """Delete the temporaries that atomic_write left in folder (only those of the file named target, if given)
    when its process died mid-write. Call it only while no atomic_write into folder (of target) is under way."""
    for name in os.listdir(folder):
        match = TEMPORARY_NAME.fullmatch(name)
        if match and (target is None or match.group("target") == target):
            os.remove(os.path.join(folder, name))
