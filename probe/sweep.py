"""Many runs: `run_sweep` trains every combination of a settings grid in worker processes.

A sweep config names an experiment, a ``grid`` (field -> list of values, crossed) and ``base``
settings; `plan_sweep` checks it and names the runs. Each run writes ``out/runs/<name>/``
(run store, tidy rows, then a done-marker), so an interrupted sweep resumes where it stopped;
the rows of all finished runs become ``out/table.csv`` (and ``out/table.parquet``).
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import json
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from tqdm.auto import tqdm

from probe.errors import ConfigError, ProbeError
from probe.experiments.seq_mnist import (
    SeqMnistConfig,
    readout_table,
    train_seq_mnist,
    validate_config,
)

__all__ = [
    "EXPERIMENTS",
    "SweepConfigError",
    "SweepPlan",
    "SweepResult",
    "SweepRun",
    "SweepRunError",
    "plan_sweep",
    "run_sweep",
]

DONE = "done.json"
ROWS = "rows.csv"
ERROR = "error.txt"
_KEYS = ("experiment", "grid", "base")


class SweepConfigError(ConfigError):
    """A sweep config that cannot be run (unknown experiment or field, empty grid, bad value)."""


class SweepRunError(ProbeError, RuntimeError):
    """One or more runs of a sweep failed; the others were kept (see ``result``)."""

    result: SweepResult


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


@dataclass
class SweepResult:
    """What `run_sweep` did: the table, which runs ran, were skipped (done) or failed."""

    out: Path
    table: Path
    parquet: Path | None
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


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
            return dict(json.loads(path.read_text()))
        import tomllib  # Python >= 3.11

        return tomllib.loads(path.read_text())
    except ImportError as err:
        msg = f"reading {path.name} needs Python >= 3.11 (tomllib); write the config as JSON."
        raise SweepConfigError(msg) from err
    except ValueError as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        msg = f"sweep config {str(path)!r} is not valid {path.suffix[1:].upper()}: {err}"
        raise SweepConfigError(msg) from err


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    """Return the message for an unknown name: the closest valid names, then all of them."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    return (
        f"unknown {kind} {name!r}; closest: {', '.join(map(repr, close)) or 'none'}. "
        f"Valid: {', '.join(valid)}."
    )


def _fmt(value: Any) -> str:
    """Return a grid value as a short file-name-safe string (lists joined by '-')."""
    if isinstance(value, (list, tuple)):
        return "-".join(_fmt(v) for v in value)
    text = str(value).lower() if value is None or isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "-", text)


def _as_config(cls: type, values: Mapping[str, Any]) -> Any:
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
        run_name = "_".join(f"{k}={_fmt(v)}" for k, v in values.items())
        if run_name in runs:
            msg = f"two grid combinations are both named {run_name!r}; remove duplicate values."
            raise SweepConfigError(msg)
        try:
            cfg = _as_config(exp.config, {**base, **values})
            exp.validate(cfg)
        except ConfigError as err:
            msg = f"run {run_name!r}: {err}"
            raise SweepConfigError(msg) from err
        runs[run_name] = SweepRun(run_name, values, json.loads(json.dumps(asdict(cfg))))
    return SweepPlan(name, list(grid), list(runs.values()), raw)


def _is_done(folder: Path, config: dict[str, Any]) -> bool:
    """Return whether the run finished with this very config (a changed config runs again)."""
    try:
        marker = json.loads((folder / DONE).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("config") == config and (folder / ROWS).is_file()


def _execute(experiment: str, run: SweepRun, folder: str) -> tuple[str, str | None]:
    """Run one combination; return (name, None) or (name, traceback). Never raises."""
    path = Path(folder)
    t0 = time.perf_counter()
    try:
        path.mkdir(parents=True, exist_ok=True)
        for stale in (DONE, ERROR):
            (path / stale).unlink(missing_ok=True)
        exp = EXPERIMENTS[experiment]
        exp.run(_as_config(exp.config, run.config), path).to_csv(path / ROWS, index=False)
        marker = {
            "config": run.config,
            "wall_s": time.perf_counter() - t0,
            "finished_unix": time.time(),
            "pid": os.getpid(),
        }
        # Written last and atomically: a run killed before this line counts as not done.
        (path / f"{DONE}.tmp").write_text(json.dumps(marker, indent=1))
        os.replace(path / f"{DONE}.tmp", path / DONE)
        return run.name, None
    except Exception:
        text = traceback.format_exc()
        with contextlib.suppress(OSError):
            (path / ERROR).write_text(text)
        return run.name, text


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per run: the workers share the machine


def _aggregate(plan: SweepPlan, runs_dir: Path) -> pd.DataFrame:
    """Concatenate the rows of every finished run, prefixed by run, grid values and seed."""
    tables = []
    for run in plan.runs:
        folder = runs_dir / run.name
        if not _is_done(folder, run.config):
            continue
        rows = pd.read_csv(folder / ROWS)
        lead = {"run": run.name}
        lead |= {k: _fmt(v) if isinstance(v, list) else v for k, v in run.grid.items()}
        lead.setdefault("seed", run.config.get("seed"))
        tables.append(pd.concat([pd.DataFrame(lead, index=rows.index), rows], axis=1))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"run": []})


def run_sweep(
    config: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str] = "artifacts/sweep",
    *,
    workers: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run every combination of a sweep config, skipping runs that already finished.

    Parameters
    ----------
    config : str, path or mapping
        See `plan_sweep`.
    out : str or path
        Sweep folder: ``runs/<name>/`` (``run.zarr``, ``rows.csv``, ``done.json``; ``error.txt``
        if it failed), ``sweep.json`` (the config), ``table.csv`` and ``table.parquet``.
    workers : int, default 2
        Worker processes (spawned, one torch thread each); 0 runs in this process.
    progress : bool
        Show a tqdm progress bar over runs.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepConfigError
        The config is invalid (see `plan_sweep`) or ``workers`` is not an int >= 0.
    SweepRunError
        Some runs failed; the message names them and the error's ``result`` holds the
        `SweepResult` (``failed``: name -> traceback). The table of the finished runs is
        written first, and running the sweep again retries only the failed runs.

    Notes
    -----
    The table is tidy: one row per (run, epoch, time step t, read-out), columns ``run``, one
    per grid field (lists as '3-8'), ``seed``, then the experiment's rows (for ``seq-mnist``
    see `probe.experiments.seq_mnist.readout_table`). A run is skipped when its ``done.json``
    holds the same config; with another config it runs again. Worker processes are spawned,
    so a script that calls `run_sweep` needs an ``if __name__ == "__main__":`` guard.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        msg = f"workers must be an int >= 0 (0: run in this process); got {workers!r}."
        raise SweepConfigError(msg)
    t0 = time.perf_counter()
    plan = plan_sweep(config)
    out = Path(out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(plan.source, indent=1))
    todo = [r for r in plan.runs if not _is_done(runs_dir / r.name, r.config)]
    skipped = [r.name for r in plan.runs if r not in todo]
    ran: list[str] = []
    failed: dict[str, str] = {}
    bar = tqdm(
        total=len(plan.runs),
        initial=len(skipped),
        desc=f"sweep {plan.experiment}",
        unit="run",
        disable=not progress,
    )

    def record(name: str, error: str | None) -> None:
        if error is None:
            ran.append(name)
        else:
            failed[name] = error
        bar.update()
        bar.set_postfix_str(f"{name}{' FAILED' if error else ''}")

    if workers == 0 or not todo:
        for r in todo:
            record(*_execute(plan.experiment, r, str(runs_dir / r.name)))
    else:
        ctx = multiprocessing.get_context("spawn")
        n = min(workers, len(todo))
        pool = ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker)
        futures = {
            pool.submit(_execute, plan.experiment, r, str(runs_dir / r.name)): r.name for r in todo
        }
        try:
            for fut in as_completed(futures):
                try:
                    record(*fut.result())
                except BrokenProcessPool as err:  # a worker was killed (e.g. out of memory)
                    record(futures[fut], f"worker process died: {err!r}")
        finally:
            # Every run has returned (or we were interrupted): cancel what is queued and let
            # the workers' interpreters tear down (seconds with torch) while we aggregate.
            pool.shutdown(wait=False, cancel_futures=True)
    bar.close()
    table = _aggregate(plan, runs_dir)
    table.to_csv(out / "table.csv", index=False)
    parquet: Path | None = out / "table.parquet"
    try:
        table.to_parquet(parquet, index=False)
    except ImportError:  # pyarrow (or fastparquet) not installed: CSV only
        parquet.unlink(missing_ok=True)  # never leave a stale table beside the new one
        parquet = None
    wall_s = time.perf_counter() - t0
    result = SweepResult(out, out / "table.csv", parquet, ran, skipped, failed, wall_s)
    if failed:
        lines = [
            f"  {n}: {e.strip().splitlines()[-1]} (see {runs_dir / n / ERROR})"
            for n, e in failed.items()
        ]
        msg = (
            f"{len(failed)} of {len(plan.runs)} runs failed:\n" + "\n".join(lines) + "\n"
            f"The {len(plan.runs) - len(failed)} finished runs are in {out / 'table.csv'}; "
            "run the same sweep again to retry only the failed runs."
        )
        error = SweepRunError(msg)
        error.result = result
        raise error
    return result
