"""One run group's arrays, read so that they return what was committed or raise.

Reads go through `probe.store.checked_store.CheckedLocalStore` (a missing or damaged chunk
raises); each array's metadata is checked against the digest the writer kept in the group's
manifest (root attr ``arrays``), and reads are trimmed to the committed rows they are given.
`probe.store.run.Run` reads every array through one of these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr

from hooks import schema
from probe.errors import CorruptRunError, LayerNotInRunError
from probe.store.checked_store import CheckedLocalStore

__all__ = ["CheckedGroup"]

Array = npt.NDArray[Any]


class CheckedGroup:
    """The arrays of one run group (a run, or one rank's group of a multi-process run).

    Parameters
    ----------
    path : Path
        The group's folder.
    attrs : dict
        Its validated root attrs (`probe.store._run_attrs.read_run_attrs`).

    Raises
    ------
    CorruptRunError
        An array the writer created (listed in the manifest) is gone.
    """

    def __init__(self, path: Path, attrs: dict[str, Any]) -> None:
        self.path = path
        self.manifest: dict[str, str] = dict(attrs.get(schema.MANIFEST, {}))
        self.store = CheckedLocalStore(path)
        self.group = zarr.open_group(self.store, mode="r", zarr_format=3)
        gone = sorted(p for p in self.manifest if not (path / p / "zarr.json").is_file())
        if gone:
            msg = (
                f"the run at {str(path)!r} lacks arrays its writer created: {gone}; "
                f"the run is damaged. Run `probe verify {path}`."
            )
            raise CorruptRunError(msg)

    def check_last_step(self, last: int | None, steps: npt.NDArray[np.int64]) -> None:
        """Raise if the ``last_step`` attr is not the step of the last committed snapshot.

        Raises
        ------
        CorruptRunError
            The counters were changed after the commit that wrote them together.
        """
        if steps.size and last is not None and last != steps[-1]:
            msg = (
                f"the run at {str(self.path)!r} says its last snapshot is at step {last}, but "
                f"snapshot {steps.size - 1} (the last of n_committed={steps.size}) is at step "
                f"{int(steps[-1])}: its counters were changed after the commit. The run is "
                f"damaged; run `probe verify {self.path}`."
            )
            raise CorruptRunError(msg)

    def open(self, key: str) -> zarr.Array[Any]:
        """Open the array ``key`` (checked reads), its metadata checked against the manifest.

        A fresh handle each time: an opened zarr.Array never sees later appends.

        Raises
        ------
        CorruptRunError
            It cannot be opened, or its dtype, byte order, codecs or chunks differ from what
            the writer created.
        """
        try:
            arr = zarr.open_array(self.store, path=key, mode="r", zarr_format=3)
        except Exception as err:
            msg = (
                f"array {key!r} of {str(self.path)!r} cannot be opened ({err}); "
                "the run is corrupted."
            )
            raise CorruptRunError(msg) from err
        want = self.manifest.get(key)
        if want is not None and schema.metadata_digest(arr.metadata.to_dict()) != want:
            msg = (
                f"the metadata of array {key!r} of {str(self.path)!r} (dtype, byte order, "
                "codecs, chunks or row shape) differs from what the writer created; its values "
                f"would be misread. The run is damaged; run `probe verify {self.path}`."
            )
            raise CorruptRunError(msg)
        return arr

    def read(self, key: str, n: int | None, index: Any = slice(None)) -> Array:
        """Return rows ``index`` of the array ``key``, of its first ``n`` rows (None: all).

        Raises
        ------
        LayerNotInRunError
            The group has no array ``key``.
        CorruptRunError
            It has fewer than ``n`` rows, or a chunk is missing, damaged or undecodable.
        """
        if not (self.path / key / "zarr.json").is_file():
            msg = f"the run has no array {key!r}."
            raise LayerNotInRunError(msg)
        arr = self.open(key)
        if n is not None and arr.shape[0] < n:
            msg = (
                f"array {key!r} has {arr.shape[0]} rows but {n} are committed; "
                "the run's metadata is corrupted."
            )
            raise CorruptRunError(msg)
        try:
            if isinstance(index, slice):
                start, stop, _ = index.indices(n if n is not None else arr.shape[0])
                return np.asarray(arr[start:stop])
            return np.asarray(arr[index])
        except CorruptRunError:
            raise
        except (ValueError, TypeError, OSError) as err:  # e.g. a chunk of the wrong size
            msg = (
                f"array {key!r} of {str(self.path)!r} cannot be read ({err}); the run is "
                f"damaged. Run `probe verify {self.path}`."
            )
            raise CorruptRunError(msg) from err
