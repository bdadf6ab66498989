"""Sweep configs: `plan_sweep` checks one and names its runs; `EXPERIMENTS` lists what can run.

A sweep config names an experiment, a ``grid`` (field -> list of values, crossed) and ``base``
settings. Re-exported by `probe.experiments.sweep`, which runs the plan.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from probe.errors import ConfigError, SweepConfigError
from probe.experiments.seq_mnist import (
    SeqMnistConfig,
    readout_table,
    train_seq_mnist,
    validate_config,
)

__all__ = [
    "EXPERIMENTS",
    "SweepPlan",
    "SweepRun",
    "as_config",
    "format_value",
    "plan_sweep",
]

_KEYS = ("experiment", "grid", "base")
_SHAPE = '{"experiment": "seq-mnist", "grid": {"seed": [0, 1]}, "base": {"epochs": 2}}'


class _Experiment(NamedTuple):
    config: type
    validate: Callable[[Any], None]
    run: Callable[[Any, Path], pd.DataFrame]  # trains into a folder, returns its tidy rows


def _run_seq_mnist(cfg: SeqMnistConfig, out: Path) -> pd.DataFrame:
    res = train_seq_mnist(cfg, out, progress=False)
    return readout_table(res.store, seed=cfg.seed)


#: Experiments a sweep can run: name -> (config dataclass, validator, run-and-tabulate function).
EXPERIMENTS: dict[str, _Experiment] = {
    "seq-mnist": _Experiment(SeqMnistConfig, validate_config, _run_seq_mnist),
}


@dataclass(frozen=True)
class SweepRun:
    """One combination: its folder ``name``, its ``grid`` values and the full ``config``."""

    name: str
    grid: dict[str, Any]
    config: dict[str, Any]


@dataclass
class SweepPlan:
    """A checked sweep config: the experiment, grid fields, every run in grid order, the source."""

    experiment: str
    fields: list[str]
    runs: list[SweepRun]
    source: dict[str, Any]


def _load(config: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Read a sweep config from a mapping or a .json / .toml file."""
    if isinstance(config, Mapping):
        return dict(config)
    path = Path(config)
    if path.suffix not in (".json", ".toml"):
        msg = f"sweep config must be a .json or .toml file; got {str(path)!r}."
        raise SweepConfigError(msg)
    if not path.is_file():
        msg = f"sweep config file {str(path)!r} does not exist."
        raise SweepConfigError(msg)
    try:
        if path.suffix == ".json":
            doc = json.loads(path.read_text())
        else:
            import tomllib  # Python >= 3.11

            doc = tomllib.loads(path.read_text())
    except ImportError as err:
        msg = f"reading {path.name} needs Python >= 3.11 (tomllib); write the config as JSON."
        raise SweepConfigError(msg) from err
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        msg = f"sweep config {str(path)!r} is not valid {path.suffix[1:].upper()}: {err}"
        raise SweepConfigError(msg) from err
    if not isinstance(doc, dict):
        msg = (
            f"sweep config {str(path)!r} must hold one JSON object; got a "
            f"{type(doc).__name__}. Write it as {_SHAPE}."
        )
        raise SweepConfigError(msg)
    return doc


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    """Return the message for an unknown name: the closest valid names, then all of them."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return (
        f"unknown {kind} {name!r}; closest: {', '.join(map(repr, close)) or 'none'}. "
        f"Valid: {', '.join(valid)}."
    )


def format_value(value: Any) -> str:
    """Return a grid value as a short file-name-safe string (lists joined by '-')."""
    if isinstance(value, (list, tuple)):
        return "-".join(format_value(v) for v in value)
    text = str(value).lower() if value is None or isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def as_config(cls: type, values: Mapping[str, Any]) -> Any:
    """Build ``cls`` from JSON values: lists become tuples where the default is a tuple."""
    kwargs = {}
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
            as_tuple = isinstance(f.default, tuple) and isinstance(value, list)
            kwargs[f.name] = tuple(value) if as_tuple else value
    return cls(**kwargs)


def plan_sweep(config: str | os.PathLike[str] | Mapping[str, Any]) -> SweepPlan:
    """Check a sweep config and list its runs, without running anything.

    Parameters
    ----------
    config : str, path or mapping
        A .json/.toml file or a mapping ``{"experiment": name, "grid": {field: [values]},
        "base": {field: value}}``; ``base`` is optional. Every grid list is crossed with the
        others (`itertools.product`, in the order given).

    Returns
    -------
    SweepPlan
        Runs named ``field=value_field=value`` from their grid values (lists joined by '-',
        e.g. ``pair=3-8_seed=0``).

    Raises
    ------
    SweepConfigError
        Unreadable file; unknown top-level key, experiment or field (with the closest names);
        a grid that is empty or has a value that is not a non-empty list; a ``base`` that is
        not a mapping; a field both in
        ``grid`` and ``base``; two runs with the same name; a setting the experiment rejects.

    Examples
    --------
    >>> plan = plan_sweep({"experiment": "seq-mnist", "grid": {"pair": [[0, 1], [3, 8]]}})
    >>> [run.name for run in plan.runs]
    ['pair=0-1', 'pair=3-8']
    """
    raw = _load(config)
    for key in raw:
        if key not in _KEYS:
            msg = _unknown("sweep config key", key, list(_KEYS))
            raise SweepConfigError(msg)
    name = raw.get("experiment")
    if name not in EXPERIMENTS:
        msg = _unknown("experiment", str(name), sorted(EXPERIMENTS))
        raise SweepConfigError(msg)
    exp = EXPERIMENTS[name]
    grid, base = raw.get("grid"), raw.get("base", {})
    if not isinstance(grid, Mapping) or not grid:
        msg = f"grid must be a non-empty mapping of field -> list of values; got {grid!r}."
        raise SweepConfigError(msg)
    if not isinstance(base, Mapping):
        msg = f"base must be a mapping of field -> value; got {base!r}."
        raise SweepConfigError(msg)
    valid = [f.name for f in fields(exp.config)]
    for key, values in grid.items():
        if key not in valid:
            msg = _unknown(f"{name} field in grid:", key, valid)
            raise SweepConfigError(msg)
        if not isinstance(values, list) or not values:
            msg = f"grid[{key!r}] must be a non-empty list of values; got {values!r}."
            raise SweepConfigError(msg)
    for key in base:
        if key not in valid:
            msg = _unknown(f"{name} field in base:", key, valid)
            raise SweepConfigError(msg)
        if key in grid:
            msg = f"field {key!r} is in both grid and base; keep it in one of them."
            raise SweepConfigError(msg)
    runs: dict[str, SweepRun] = {}
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        run_name = "_".join(f"{k}={format_value(v)}" for k, v in values.items())
        if run_name in runs:
            msg = f"two grid combinations are both named {run_name!r}; remove duplicate values."
            raise SweepConfigError(msg)
        try:
            cfg = as_config(exp.config, {**base, **values})
            exp.validate(cfg)
        except ConfigError as err:
            msg = f"run {run_name!r}: {err}"
            raise SweepConfigError(msg) from err
        runs[run_name] = SweepRun(run_name, values, json.loads(json.dumps(asdict(cfg))))
    return SweepPlan(name, list(grid), list(runs.values()), raw)
