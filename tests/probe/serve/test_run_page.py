"""The run page's callbacks over HTTP, and its step slider."""

import json

import pytest

from probe.serve import build_app
from probe.serve.client import callback
from probe.serve.run_page import _slider

STEPS = [0, 10, 20, 30, 40]


def test_the_slider_follows_the_newest_snapshot_only_while_on_the_last():
    top, marks, value = _slider(5, STEPS, None, None)  # first draw: the last snapshot
    assert (top, value) == (4, 4) and marks[0] == "0" and marks[4] == "40"
    assert _slider(5, STEPS, 3, 3)[2] == 4  # was on the last (3): follows to the new last
    assert _slider(5, STEPS, 1, 3)[2] == 1  # off the last: stays put as snapshots arrive
    assert _slider(5, STEPS, 1, 4)[2] == 1  # ... and when nothing new came
    assert _slider(3, STEPS[:3], 4, 4)[2] == 2  # the run got shorter (rewritten): clamped
    assert _slider(3, STEPS[:3], 3, 4)[2] == 2  # ... also when off the last
    assert _slider(0, [], None, None)[:2] == (0, {})


def _damaged(tmp_path, record):
    """Serve a run whose last chunk of layer 2's activations and of layer 0's AGOP is damaged."""
    path = tmp_path / "r.zarr"
    record(path, 3, agop=True)
    for array in ("layers/2/acts", "layers/0/agop"):
        chunk = sorted((path / array).glob("c.*"))[-1]
        chunk.write_bytes(b"\0" * 7)
    client = build_app(tmp_path).server.test_client()
    state = [(("run-name", "data"), "r.zarr"), (("version", "data"), None)]
    callback(client, ["version.data"], [(("tick", "n_intervals"), 1)], state)  # opens the run
    return client


def _text(out):
    return json.dumps(out)


@pytest.mark.parametrize(
    ("outputs", "inputs", "title"),
    [
        (["cka-steps.figure"], [(("version", "data"), 1), (("layer", "value"), "2")],
         "CKA step x step"),
        (["cka-layers.figure"], [(("step", "value"), 0), (("version", "data"), 1)],
         "CKA layer x layer"),
    ],
)
def test_damaged_activations_give_the_heatmaps_a_message(tmp_path, record, outputs, inputs, title):
    client = _damaged(tmp_path, record)
    out = callback(client, outputs, inputs, [(("run-name", "data"), "r.zarr")])
    fig = out[outputs[0].split(".")[0]]["figure"]
    assert fig["data"] == [] and fig["layout"]["title"]["text"] == title
    note = fig["layout"]["annotations"][0]["text"]
    assert "layers/2/acts" in note and "checksum" in note and "damaged" in note


def test_damaged_activations_give_the_geometry_a_message(tmp_path, record):
    client = _damaged(tmp_path, record)
    state = [(("step", "value"), 0), (("run-name", "data"), "r.zarr")]
    out = callback(client, ["geometry.children"], [(("geometry-go", "n_clicks"), 1)], state)
    text = out["geometry"]["children"]
    assert text.startswith("geometry at step 0 cannot be computed: chunk 'layers/2/acts")
    assert "checksum" in text


def test_a_damaged_agop_gives_the_theory_tab_a_message(tmp_path, record):
    client = _damaged(tmp_path, record)
    out = callback(
        client, ["nfa.figure", "two-point.figure"],
        [(("version", "data"), 1), (("theory-layer", "value"), "0")],
        [(("run-name", "data"), "r.zarr")],
    )
    note = out["nfa"]["figure"]["layout"]["annotations"][0]["text"]
    assert "layers/0/agop" in note and "checksum" in note
    assert "two-point fit" in _text(out["two-point"])
