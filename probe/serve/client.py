"""Drive the app without a browser: `callback` sends one Dash callback request, as a page does.

`run_list` sends the run list's poll (its filters are pattern-matching inputs, which `callback`
does not write).

For tests and benchmarks, with the app's Flask test client (``build_app(root).server
.test_client()``): what a browser posts to ``/_dash-update-component`` when an input changes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = ["callback", "run_list"]

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


def run_list(
    client: Any,
    filters: dict[str, list[str]] | None = None,
    states: list[str] | None = None,
    page_data: Any = None,
    changed: str = "runs-tick",
    digest: str | None = None,
) -> dict[str, Any] | None:
    """Return the run list's answer to one poll, or None when nothing changed (HTTP 204).

    Parameters
    ----------
    client : flask.testing.FlaskClient
        The app's test client.
    filters : dict of str to list of str, optional
        The grid-column filters' values (``{column: [value text, ...]}``).
    states : list of str, optional
        The state filter's values.
    page_data : optional
        The ``runs-page`` data of the list's last answer (its page and the filters it was
        for); None: the list was just opened.
    changed : str
        The input that fired: ``runs-tick``, ``runs-prev``, ``runs-next``, ``runs-state``.
    digest : str, optional
        The digest of what the list shows now (None: it shows nothing yet).

    Raises
    ------
    RuntimeError
        The server answered with an error.
    """
    filters = filters or {}
    outputs = ["runs-table.children", "runs-count.children", "runs-page.data", "runs-digest.data",
               "runs-compare.href", "runs-filters.children"]
    prop = {"runs-tick": "n_intervals", "runs-prev": "n_clicks", "runs-next": "n_clicks"}
    options = [{"id": {"filter": c}, "property": "options"} for c in filters]
    body = {
        "output": f"..{'...'.join(outputs)}...{{\"filter\":[\"ALL\"]}}.options..",
        "outputs": [
            *[dict(zip(("id", "property"), o.split("."), strict=True)) for o in outputs],
            options,
        ],
        "inputs": [
            {"id": "runs-tick", "property": "n_intervals", "value": 1},
            [{"id": {"filter": c}, "property": "value", "value": v} for c, v in filters.items()],
            {"id": "runs-state", "property": "value", "value": states},
            {"id": "runs-prev", "property": "n_clicks", "value": None},
            {"id": "runs-next", "property": "n_clicks", "value": None},
        ],
        "state": [
            [{"id": {"filter": c}, "property": "id", "value": {"filter": c}} for c in filters],
            {"id": "runs-page", "property": "data", "value": page_data},
            {"id": "runs-digest", "property": "data", "value": digest},
        ],
        "changedPropIds": [f"{changed}.{prop.get(changed, 'value')}"],
    }
    r = client.post("/_dash-update-component", json=body)
    if r.status_code not in (200, 204):
        msg = f"the run list answered HTTP {r.status_code}: {r.data[:2000].decode()}"
        raise RuntimeError(msg)
    return None if r.status_code == 204 else dict(json.loads(r.data)["response"])
