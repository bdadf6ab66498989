"""The runs that `probe serve` may show: `Catalog` finds the run stores under one folder.

A run is named by its folder relative to the served folder (``runs/seed=0/run.zarr``); only
names the catalog found are ever opened, so a request cannot reach a path outside the folder
(``..``, absolute paths and symlinks that leave it are refused). `grid_columns` names the
settings that differ between runs (a sweep's grid), for the run list's filters.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hooks import schema
from probe.errors import RunNotFoundError

__all__ = ["WALK_EVERY_S", "Catalog", "RunEntry", "grid_columns", "natural_key"]

#: How deep below the served folder run stores are looked for (a sweep: runs/<name>/run.zarr).
MAX_DEPTH = 4
#: Pages look for new run stores at most this often (seconds; a walk of 750 runs: 0.1-0.6 s).
WALK_EVERY_S = 5.0


@dataclass(frozen=True)
class RunEntry:
    """One run store found under the served folder: its name (relative path) and folder."""

    name: str
    path: Path
    config: dict[str, Any] = field(default_factory=dict, compare=False)


def _root_attrs(path: Path) -> dict[str, Any] | None:
    """Return the root attrs of a run store at ``path``, or None when it is not one."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = meta.get("attributes") if isinstance(meta, dict) else None
    if not isinstance(attrs, dict) or attrs.get("schema") != schema.SCHEMA:
        return None
    return attrs


def _inside(path: Path, root: Path) -> bool:
    """Return whether ``path`` resolves to ``root`` or a folder below it (symlinks followed)."""
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False


class Catalog:
    """The run stores under ``root``: ``root`` itself when it is one, else those below it.

    Parameters
    ----------
    root : path
        A run store, or a folder of them (e.g. a sweep's folder or its ``runs/``).

    Raises
    ------
    RunNotFoundError
        ``root`` is not a folder.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.fspath(root)).expanduser().resolve()
        if not self.root.is_dir():
            msg = (
                f"probe serve needs a run store or a folder of them; {str(self.root)!r} is not "
                "a folder. Pass e.g. artifacts/demo or a sweep's runs/ folder."
            )
            raise RunNotFoundError(msg)
        self._known: dict[str, RunEntry] = {}  # the last walk's runs by name
        self._walked: tuple[float, list[RunEntry]] = (-float("inf"), [])  # (monotonic t, runs)

    def runs(self, max_age_s: float = 0.0) -> list[RunEntry]:
        """Return every run store under the root, sorted by name (numbers in it by value).

        Parameters
        ----------
        max_age_s : float
            Reuse the last walk's answer when it is younger than this (seconds); 0: walk now.
            A walk lists every folder (0.1-0.6 s for a 750-run sweep), so pages that poll pass
            a few seconds: a new run then appears within that time.
        """
        when, entries = self._walked
        if time.monotonic() - when < max_age_s:
            return list(entries)
        found: list[RunEntry] = []
        self._walk(self.root, 0, found)
        entries = sorted(found, key=lambda e: natural_key(e.name))
        self._known = {e.name: e for e in entries}
        self._walked = (time.monotonic(), entries)
        return list(entries)

    def _walk(self, folder: Path, depth: int, found: list[RunEntry]) -> None:
        attrs = _root_attrs(folder)
        if attrs is not None:
            # the served store itself is named by its folder: "." would make the link /run/.,
            # which a browser reads as /run/
            name = folder.name if folder == self.root else folder.relative_to(self.root).as_posix()
            config = attrs.get("config")
            found.append(RunEntry(name, folder, config if isinstance(config, dict) else {}))
            return  # a run's own groups (ranks/<r>) are not runs of their own
        if depth >= MAX_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if not child.name.startswith(".") and _inside(child, self.root):
                self._walk(child, depth + 1, found)

    def resolve(self, name: str) -> RunEntry:
        """Return the run called ``name`` (a name from `runs`).

        Raises
        ------
        RunNotFoundError
            No run of that name under the root; names that leave the root (``..``, absolute,
            symlinked out) are never found.
        """
        if isinstance(name, str) and not name.startswith("/") and ".." not in name.split("/"):
            # The last walk's runs first: a walk reads every run's attrs (0.1-0.6 s for 750
            # runs), and the run list resolves every run at each poll. An unknown name walks
            # again, at most every WALK_EVERY_S (a page left open on a deleted run polls).
            entry = self._known.get(name)
            if entry is None:
                entry = {e.name: e for e in self.runs(max_age_s=WALK_EVERY_S)}.get(name)
            if entry is not None and _inside(entry.path, self.root):
                return entry
        msg = (
            f"no run {name!r} under {str(self.root)!r}; the run list at / shows the runs "
            "served here."
        )
        raise RunNotFoundError(msg)


def natural_key(name: str) -> list[tuple[int, float | str]]:
    """Return a sort key of ``name`` that orders the numbers in it by value.

    Examples
    --------
    >>> sorted(["seed=10", "seed=2", "lr=0.1", "lr=0.05"], key=natural_key)
    ['lr=0.05', 'lr=0.1', 'seed=2', 'seed=10']
    """
    parts = re.split(r"(\d+(?:\.\d+)?)", name)
    return [(0, float(p)) if p[:1].isdigit() else (1, p) for p in parts if p]


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten nested settings to ``a.b`` keys with text values (JSON text but for strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            # JSON text (1 and 1.0 stay apart, lists read as lists), but a string as itself
            out[f"{prefix}{key}"] = value if isinstance(value, str) else json.dumps(value)
    return out


def grid_columns(entries: list[RunEntry]) -> dict[str, dict[str, str]]:
    """Return the settings that differ between runs: ``{column: {run name: value text}}``.

    A sweep's runs share every setting but its grid's, so these are the grid's columns.

    Examples
    --------
    >>> from pathlib import Path
    >>> runs = [RunEntry(f"r{i}", Path("."), {"lr": v, "width": 8}) for i, v in enumerate([0.1, 1])]
    >>> grid_columns(runs)
    {'lr': {'r0': '0.1', 'r1': '1'}}
    """
    flat = {e.name: _flat(e.config) for e in entries}
    keys = sorted({k for f in flat.values() for k in f})
    columns = {}
    for key in keys:
        values = {name: f.get(key, "") for name, f in flat.items()}
        if len(set(values.values())) > 1:
            columns[key] = values
    return columns
