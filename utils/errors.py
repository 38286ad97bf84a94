"""The one family of errors that bad input raises.

Every error that a user can cause with a file, a folder or an option derives from UserError and names that input in
its message. The command lines catch UserError in one place (report_user_errors) and exit with one status, the
status argparse uses for a bad command line, so that a script calling any of them can tell bad input from a crash.
"""
import sys
from collections.abc import Iterator
from contextlib import contextmanager

USER_ERROR_STATUS = 2


class UserError(Exception):
    """Bad input, named in the message: the file, folder or option and what is wrong with it."""


@contextmanager
def report_user_errors(program: str) -> Iterator[None]:
    """Turn a UserError raised inside into one line `<program>: error: <message>` on stderr and exit status
    USER_ERROR_STATUS; every other exception passes through as the crash it is."""
    try:
        yield
    except UserError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
