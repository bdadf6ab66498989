"""Read and validate the root attrs of a run store (the first thing `probe.open_run` does)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hooks import schema
from probe.errors import CorruptRunError, NotARunError, RunNotFoundError, SchemaVersionError


def read_run_attrs(path: Path) -> dict[str, Any]:
    """Return the validated root attrs of the run at ``path``.

    Raises
    ------
    RunNotFoundError
        Nothing exists at ``path``.
    NotARunError
        ``path`` exists but is not a probe run.
    SchemaVersionError
        The run was written with another schema version.
    CorruptRunError
        Its metadata cannot be parsed or contradicts itself.
    """
    meta = path / "zarr.json"
    if not path.exists():
        msg = f"no run at {str(path)!r}: the path does not exist."
        raise RunNotFoundError(msg)
    if not meta.is_file():
        msg = f"{str(path)!r} is not a probe run (no zarr.json); pass the folder a Recorder wrote."
        raise NotARunError(msg)
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError) as err:
        msg = f"{meta} cannot be parsed ({err}); the run's metadata is corrupted."
        raise CorruptRunError(msg) from err
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    if not isinstance(attrs, dict) or attrs.get("schema") != schema.SCHEMA:
        msg = (
            f"{str(path)!r} is a zarr store but not a probe run "
            f"(attrs schema={None if attrs is None else attrs.get('schema')!r})."
        )
        raise NotARunError(msg)
    if attrs.get("schema_version") != schema.SCHEMA_VERSION:
        msg = (
            f"run schema_version must be {schema.SCHEMA_VERSION}; got "
            f"{attrs.get('schema_version')!r}. Open it with the toolkit version that wrote it "
            f"({attrs.get('toolkit_version', 'unknown')})."
        )
        raise SchemaVersionError(msg)
    problem = schema.check_root_attrs(attrs)
    if problem:
        msg = f"{meta}: {problem}; the run's metadata is corrupted."
        raise CorruptRunError(msg)
    want = attrs.get(schema.COMMIT_DIGEST)
    if want is not None and schema.commit_digest(attrs) != want:
        msg = (
            f"{meta}: the commit counters (n_committed, last_step, array manifest ...) do not "
            "match their digest; they were damaged or edited after the commit, so the run's "
            f"committed rows cannot be told. Run `probe verify {path}`."
        )
        raise CorruptRunError(msg)
    return attrs
