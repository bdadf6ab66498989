"""Whether a run is still being written: `run_state` reads it from the writer's attrs and times.

``closed``: every writer called ``close()`` (``closed_utc`` is set; in a multi-process run, every
rank's). ``recording``: a writer has not closed and is alive: its process (``writer`` attrs: pid,
host) still runs on this host, or, for a writer on another host, the run committed within
`STALE_S`. ``stopped without close``: neither, i.e. the writer was killed or crashed (or a rank of
a multi-process run never started while the others ended); its committed snapshots stay readable.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from hooks import schema

__all__ = ["CLOSED", "RECORDING", "STALE_S", "STOPPED", "run_state"]

CLOSED, RECORDING, STOPPED = "closed", "recording", "stopped without close"
#: A writer on another host whose run has not committed for this long counts as stopped.
STALE_S = 300.0


def _pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` runs on this host (a zombie, killed, unreaped: no)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True
    return fields[0] != "Z"


def _writer_alive(attrs: dict[str, Any], folder: Path, now: float) -> bool:
    """Return whether the writer of one run group (root or rank) looks alive."""
    writer = attrs.get("writer")
    if isinstance(writer, dict) and writer.get("host") == socket.gethostname():
        pid = writer.get("pid")
        return isinstance(pid, int) and _pid_alive(pid)
    try:
        last_commit = (folder / "zarr.json").stat().st_mtime
    except OSError:
        return False
    return now - last_commit < STALE_S


def _group_state(attrs: dict[str, Any], folder: Path, now: float) -> str:
    if attrs.get("closed_utc"):
        return CLOSED
    return RECORDING if _writer_alive(attrs, folder, now) else STOPPED


def run_state(attrs: dict[str, Any], folder: Path, ranks: list[dict[str, Any] | None]) -> str:
    """Return `CLOSED`, `RECORDING` or `STOPPED` for a run.

    Parameters
    ----------
    attrs : dict
        The run's root attrs.
    folder : Path
        The run's folder.
    ranks : list of (dict or None)
        A multi-process run's rank groups' attrs in rank order (None: that rank has not
        started); empty for a single-process run.
    """
    now = time.time()
    if not ranks:
        return _group_state(attrs, folder, now)
    states = [
        _group_state(a, folder / schema.rank_group(r), now)
        for r, a in enumerate(ranks)
        if a is not None  # a rank that has not started yet has no writer to ask
    ]
    if not states:
        return _group_state(attrs, folder, now)
    if RECORDING in states:
        return RECORDING
    # every rank that started has closed or died; one that never started did not close either
    return CLOSED if len(states) == len(ranks) and all(s == CLOSED for s in states) else STOPPED
