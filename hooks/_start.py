"""Start recording into a run: open (or resume) this process's group and start its writer.

What the Recorder holds afterwards: the group's writer locks, the step and epoch it continues
from, and the writer (thread or process). A failure after the locks are taken frees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hooks._lock import WriterLock
from hooks._ranks import GroupSpec, Ranks, open_group, resume_point
from hooks._writer_process import ProcessWriter, make_writer
from hooks.writer import RunWriter


@dataclass
class Started:
    """A run opened for recording by this process."""

    resumed: bool
    locks: list[WriterLock]
    step: int
    epoch: int
    writer: RunWriter | ProcessWriter


def start_recording(
    path: Path,
    ranks: Ranks,
    root: GroupSpec,
    own: GroupSpec,
    *,
    resume: bool,
    overwrite: bool,
    writer: str,
    max_bytes: int,
    compressors: object,
) -> Started:
    """Open the group this process records into, locked, and start its writer.

    Raises
    ------
    StoreLockedError, StoreExistsError, ResumeMismatchError, StoreCorruptError
        See `hooks._ranks.open_group`; nothing is left locked.
    """
    group, resumed, locks = open_group(path, ranks, root, own, resume=resume, overwrite=overwrite)
    try:
        step, epoch = resume_point(path, ranks, group) if resumed else (0, 0)
        started = make_writer(writer, group, max_bytes=max_bytes, compressors=compressors)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return Started(resumed, locks, step, epoch, started)
