"""The run store, read-only: `open_run(path)` returns a `Run` (rank merge, summaries behind it)."""

from probe.store.run import Run, StreamRows, open_run

__all__ = ["Run", "StreamRows", "open_run"]
