"""Drive the app without a browser: `callback` sends one Dash callback request, as a page does.

For tests and benchmarks, with the app's Flask test client (``build_app(root).server
.test_client()``): what a browser posts to ``/_dash-update-component`` when an input changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["callback"]

Prop = tuple[str, str]


def callback(
    client: Any,
    outputs: Sequence[str],
    inputs: Sequence[tuple[Prop, Any]],
    state: Sequence[tuple[Prop, Any]] = (),
) -> dict[str, Any] | None:
    """Return a callback's response, or None when it made no update (HTTP 204).

    Parameters
    ----------
    client : flask.testing.FlaskClient
        The app's test client.
    outputs : sequence of str
        The callback's outputs as ``"id.property"``, in its order.
    inputs, state : sequence of ((id, property), value)
        Its inputs (the first one is reported as the one that changed) and states, in order.

    Raises
    ------
    RuntimeError
        The server answered with an error (the message holds the start of its answer).
    """
    ids = [dict(zip(("id", "property"), o.split("."), strict=True)) for o in outputs]
    body = {
        "output": f"..{'...'.join(outputs)}.." if len(outputs) > 1 else outputs[0],
        "outputs": ids if len(ids) > 1 else ids[0],
        "inputs": [{"id": i, "property": p, "value": v} for (i, p), v in inputs],
        "changedPropIds": [f"{i}.{p}" for (i, p), _ in inputs[:1]],
        "state": [{"id": i, "property": p, "value": v} for (i, p), v in state],
    }
    r = client.post("/_dash-update-component", json=body)
    if r.status_code not in (200, 204):
        msg = f"callback {outputs} answered HTTP {r.status_code}: {r.data[:2000].decode()}"
        raise RuntimeError(msg)
    return None if r.status_code == 204 else dict(json.loads(r.data)["response"])
