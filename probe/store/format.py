"""Plain-text rendering of run summaries for the terminal."""

from __future__ import annotations

from typing import Any


def _steps(steps: list[int]) -> str:
    if len(steps) <= 8:
        return str(steps)
    return f"[{', '.join(map(str, steps[:4]))}, ..., {', '.join(map(str, steps[-3:]))}]"


def format_info(info: dict[str, Any]) -> str:
    """Return `Run.info()` as an aligned, one-screen text summary."""
    lines = [
        f"run          {info['path']}",
        f"state        {info['state']} (schema v{info['schema_version']}, "
        f"created {info['created_utc']}, "
        f"toolkit {info['toolkit_version']})",
        f"model        {info['model_class']}; {info['n_samples']} probe samples "
        f"stored as {info['dtype']}",
        f"snapshots    {info['n_snapshots']} at steps {_steps(info['steps'])}",
        f"metrics      {info['n_metric_records']} records: {', '.join(info['metrics']) or 'none'}",
        f"stream       {info['n_stream_rows']} rows",
        "layers       " + ", ".join(info["layers"]),
        "arrays",
    ]
    width = max((len(k) for k in info["arrays"]), default=0)
    lines += [f"  {k:<{width}}  {tuple(v)}" for k, v in info["arrays"].items()]
    if info["nonfinite"]:
        lines.append("NaN/Inf      (recorded as is)")
        for path, entries in info["nonfinite"].items():
            lines.append(
                f"  {path}: at steps {[e[0] for e in entries]} "
                f"({sum(e[1] for e in entries)} values)"
            )
    else:
        lines.append("NaN/Inf      none")
    if info.get("absent_rows"):
        lines.append("not recorded (rows hold fill values)")
        lines += [f"  {path}: rows {spans}" for path, spans in info["absent_rows"].items()]
    lines.append(
        f"verified     no: only metadata was read; `probe verify {info['path']}` reads and "
        "checks every chunk"
    )
    return "\n".join(lines)
