"""Check a verb's ``--out`` before any work: a report or export must not fail at its last line.

What cannot be known in advance (a full disk, a file system that refuses the write) still
reaches `probe.cli.main` as an `OSError`, reported in one line.
"""

from __future__ import annotations

import os
from pathlib import Path

from probe.errors import OutputPathError

__all__ = ["check_output"]


def check_output(path: str | os.PathLike[str], *, flag: str, folder: bool) -> Path:
    """Return ``path`` if it can be written as a folder (``folder``) or as a file.

    An existing file is replaced by the verb; an existing folder is written into. Folders
    missing on the way are created later, by the verb.

    Parameters
    ----------
    path : str or path
        The output the user asked for.
    flag : str
        Its flag in messages (``"--out"``).
    folder : bool
        Whether the verb writes a folder (several files) rather than one file.

    Raises
    ------
    OutputPathError
        A file stands where a folder must be (``path`` itself or a parent), a folder where the
        file must be, or the nearest existing folder is not writable.
    """
    path = Path(path).expanduser()
    kind = "a folder (the verb writes several files into it)" if folder else "a file"
    if path.exists() and path.is_dir() != folder:
        msg = (
            f"{flag} must be {kind}; {str(path)!r} is {'a file' if folder else 'a folder'}. "
            f"Choose another {flag}" + ("." if folder else f", e.g. {str(path / 'report.html')!r}.")
        )
        raise OutputPathError(msg)
    parent = path if path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        msg = (
            f"{flag} {str(path)!r} cannot be created: {str(parent)!r} is a file, not a folder. "
            f"Choose another {flag}."
        )
        raise OutputPathError(msg)
    if not os.access(parent, os.W_OK | os.X_OK):
        msg = (
            f"{flag} {str(path)!r} cannot be written: no write permission in {str(parent)!r}. "
            f"Choose a {flag} under a folder you can write (e.g. under artifacts/)."
        )
        raise OutputPathError(msg)
    return path
