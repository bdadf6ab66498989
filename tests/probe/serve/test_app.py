"""The served app over HTTP (Flask's test client): routes, traversal, error cards, no writes."""

import json
import os

import pytest

from probe.errors import RunNotFoundError
from probe.serve import build_app, catalog
from probe.serve.client import callback, run_list


def _call(client, output, inputs, state=()):
    return callback(client, output, inputs, state)


def _page(client, path, query=""):
    url = [(("url", "pathname"), path), (("url", "search"), query)]
    return json.dumps(_call(client, ["page.children"], url))


@pytest.fixture
def client(sweep):
    return build_app(sweep).server.test_client()


def test_the_routes_render_the_run_list_a_run_and_compare(client):
    assert client.get("/").status_code == 200
    assert "runs-table" in _page(client, "/")
    assert "run-name" in _page(client, "/run/runs%2Flr%3D0.1%2Frun.zarr")
    assert "compare-runs" in _page(client, "/compare")
    assert "no such page" in _page(client, "/nowhere")


@pytest.mark.parametrize(
    "path",
    ["/run/..%2F..%2F..%2Fetc%2Fpasswd", "/run/%2Fetc%2Fpasswd", "/run/runs%2F..%2F..", "/run/"],
)
def test_run_urls_outside_the_folder_get_an_error_card(client, path):
    page = _page(client, path)
    assert "error-card" in page and "no run" in page and "root:" not in page


@pytest.mark.parametrize(
    "url",
    [
        "/_dash-component-suites/dash/../../../../../../etc/passwd",
        "/_dash-component-suites/dash/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/assets/../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_static_routes_do_not_serve_files_outside_the_package(client, url):
    r = client.get(url)
    assert b"root:" not in r.data


def test_run_callbacks_refuse_names_outside_the_folder(client):
    out = _call(
        client,
        ["version.data"],
        [(("tick", "n_intervals"), 1)],
        [(("run-name", "data"), "../../etc"), (("version", "data"), None)],
    )
    assert out is None  # no update: the route shows the error card


def _runs_table(client, filters=None, states=None, page=None, changed="runs-tick", digest=None):
    """Poll the run list; ``page``: the ``runs-page`` data of the answer before."""
    return run_list(client, filters, states, page, changed, digest)


def _page_of(answer):
    return answer["runs-page"]["data"]


def _text(answer):
    return json.dumps(answer["runs-table"]["children"])


def _cells(answer):
    """Return the run list's rows as lists of cell contents (run, model class, state, ...)."""
    body = answer["runs-table"]["children"]["props"]["children"][1]
    return [[td["props"]["children"] for td in tr["props"]["children"]]
            for tr in body["props"]["children"]]


def test_the_run_list_shows_every_run_and_filters_by_grid_column(client):
    answer = _runs_table(client)
    every = _text(answer)
    assert "lr=0.1" in every and "lr=0.2" in every and "closed" in every
    assert every.count("base64,PHN2Zy") == 2  # the loss sparklines: "<svg" in base64
    assert answer["runs-count"]["children"] == "runs 1-2 of 2 · 2 closed"
    only = _text(_runs_table(client, {"lr": ["0.2"]}))
    assert "lr=0.2" in only and "lr=0.1/run.zarr" not in only
    assert _runs_table(client, digest=answer["runs-digest"]["data"]) is None  # nothing changed


def test_a_malformed_run_shows_an_error_card_and_the_others_are_still_served(tmp_path, record):
    record(tmp_path / "good.zarr", 2)
    record(tmp_path / "bad.zarr", 2)
    meta = tmp_path / "bad.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["n_committed"] = "three"
    meta.write_text(json.dumps(doc))
    client = build_app(tmp_path).server.test_client()
    table = _text(_runs_table(client))
    assert "error-card" in table and "cannot be read" in table and "good.zarr" in table
    version = _call(
        client, ["version.data"], [(("tick", "n_intervals"), 1)],
        [(("run-name", "data"), "bad.zarr"), (("version", "data"), None)],
    )
    assert "n_committed" in json.dumps(version)
    info = _call(
        client,
        ["run-info.children", "curves.figure", "summaries.figure", "layer.options", "layer.value",
         "step.max", "step.marks", "step.value", "theory-layer.options", "theory-layer.value"],
        [(("version", "data"), version["version"]["data"])],
        [(("run-name", "data"), "bad.zarr"), (("layer", "value"), None), (("step", "value"), None),
         (("step", "max"), None), (("theory-layer", "value"), None)],
    )
    assert "this run cannot be read" in json.dumps(info)
    version = None
    for _ in range(20):  # a poll summarises for 0.5 s: the first may not finish all three
        good = _call(
            client, ["version.data"], [(("tick", "n_intervals"), 1)],
            [(("run-name", "data"), "good.zarr"), (("version", "data"), version)],
        )
        version = good["version"]["data"] if good else version
        if version[2] == 3:
            break
    assert version[:3] == [3, 2, 3] and version[4] is None  # snapshots, records, summarised


def test_build_app_needs_a_folder(tmp_path):
    with pytest.raises(RunNotFoundError, match="is not a folder"):
        build_app(tmp_path / "missing")


def test_a_callback_that_fails_raises_with_the_servers_answer(client):
    with pytest.raises(RuntimeError, match=r"callback \['nope.children'\] answered HTTP 500"):
        callback(client, ["nope.children"], [(("url", "pathname"), "/")])


@pytest.mark.parametrize(("metric", "n_points"), [("loss", [4, 6]), ("effective_rank:2", [5, 7])])
def test_compare_draws_one_line_per_run_of_a_metric_or_a_layers_summary(
    client, metric, n_points, monkeypatch
):
    import probe.serve.app as served

    monkeypatch.setattr(served, "COMPARE_BUDGET_S", 60.0)  # every snapshot in one redraw
    assert "compare-runs" in _page(client, "/compare")
    names = ["runs/lr=0.1/run.zarr", "runs/lr=0.2/run.zarr", "../outside"]
    options = _call(
        client,
        ["compare-runs.options", "compare-metric.options", "compare-metric.value"],
        [(("compare-runs", "value"), names), (("compare-tick", "n_intervals"), 1)],
        [(("compare-runs", "options"), None), (("compare-metric", "options"), None),
         (("compare-metric", "value"), None)],
    )
    assert options["compare-runs"]["options"] == names[:2]
    assert "effective_rank:2" in options["compare-metric"]["options"]
    assert options["compare-metric"]["value"] == "loss"
    out = _call(
        client,
        ["compare-graph.figure"],
        [(("compare-runs", "value"), names), (("compare-metric", "value"), metric),
         (("compare-tick", "n_intervals"), 1), (("compare-log", "value"), ["log y"])],
    )
    data = out["compare-graph"]["figure"]["data"]
    assert [t["name"] for t in data] == names[:2]
    assert [len(t["y"]) for t in data] == n_points
    assert out["compare-graph"]["figure"]["layout"]["yaxis"]["type"] == "log"


def test_the_run_list_links_to_compare_with_the_runs_it_shows(client):
    href = _runs_table(client, {"lr": ["0.2"]}, changed="runs-state")["runs-compare"]["href"]
    assert href == "/compare?run=runs%2Flr%3D0.2%2Frun.zarr"
    page = json.loads(_page(client, "/compare", href.partition("/compare")[2]))
    runs = page["page"]["children"]["props"]["children"][2]["props"]
    assert runs["id"] == "compare-runs" and runs["value"] == ["runs/lr=0.2/run.zarr"]
    unknown = json.loads(_page(client, "/compare", "?run=..%2Fsecret&run=nope"))
    runs = unknown["page"]["children"]["props"]["children"][2]["props"]
    assert runs["value"] == ["runs/lr=0.1/run.zarr", "runs/lr=0.2/run.zarr"]  # the default


def test_the_server_runs_blas_on_one_thread(sweep, monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from probe.serve.app import limit_blas_threads

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = threadpool_info()
    try:
        limit_blas_threads()
        assert {p["num_threads"] for p in threadpool_info()} == {1}
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    finally:
        for pool in before:
            threadpool_limits(limits=pool["num_threads"], user_api=pool["user_api"])


def test_serving_every_view_leaves_the_store_unchanged_and_uses_no_pickle(sweep, client):
    import hashlib
    from pathlib import Path

    def digest():
        h = hashlib.sha256()
        for p in sorted(sweep.rglob("*")):
            if p.is_file():
                h.update(str(p).encode() + p.read_bytes() + str(p.stat().st_mtime_ns).encode())
        return h.hexdigest()

    before = digest()
    name = [(("run-name", "data"), "runs/lr=0.1/run.zarr")]
    version = _call(client, ["version.data"], [(("tick", "n_intervals"), 1)],
                    name + [(("version", "data"), None)])["version"]["data"]
    v, step, layer = (("version", "data"), version), ("step", "value"), ("layer", "value")
    _call(client, ["embedding.figure"], [(step, 2), (layer, "2")], name)
    _call(client, ["cka-steps.figure"], [v, (layer, "2")], name)
    _call(client, ["cka-layers.figure"], [(step, 2), v], name)
    _call(client, ["geometry.children"], [(("geometry-go", "n_clicks"), 1)], [(step, 2)] + name)
    _call(client, ["nfa.figure", "two-point.figure"], [v, (("theory-layer", "value"), "0")], name)
    _runs_table(client)
    assert digest() == before
    sources = Path(__file__).resolve().parents[3] / "probe" / "serve"
    assert not any("pickle" in p.read_text() for p in sources.glob("*.py"))


def test_a_long_run_list_appears_at_once_and_fills_in_poll_by_poll(sweep, monkeypatch):
    import probe.serve.run_list as run_list

    monkeypatch.setattr(run_list, "LIST_BUDGET_S", 0.0)  # one new run opened per poll
    client = build_app(sweep).server.test_client()
    first = _runs_table(client)
    assert _text(first).count('"opening"') == 1 and _text(first).count('"closed"') == 1
    assert "lr=0.2" in _text(first)  # listed by name before it is opened
    assert first["runs-count"]["children"] == "runs 1-2 of 2 · 1 closed · 1 opening"
    second = _runs_table(client)
    assert _text(second).count('"opening"') == 0 and _text(second).count('"closed"') == 2


def test_the_run_list_pages_and_filters_by_state(sweep, record, monkeypatch):
    import probe.serve.run_list as run_list

    monkeypatch.setattr(run_list, "PAGE_SIZE", 1)
    client = build_app(sweep).server.test_client()
    first = _runs_table(client)
    assert first["runs-count"]["children"] == "runs 1-1 of 2 · 2 closed"
    assert "lr=0.1" in _text(first) and "lr=0.2" not in _text(first)
    second = _runs_table(client, page=_page_of(first), changed="runs-next")
    assert _page_of(second)[0] == 1 and "lr=0.2" in _text(second)
    assert second["runs-count"]["children"] == "runs 2-2 of 2 · 2 closed"
    past = _runs_table(client, page=_page_of(second), changed="runs-next")  # stays on the last
    assert _page_of(past)[0] == 1
    back = _runs_table(client, page=_page_of(past), changed="runs-prev")
    assert _page_of(back)[0] == 0 and "lr=0.1" in _text(back)
    tick = _runs_table(client, page=_page_of(second))  # a poll keeps the page
    assert _page_of(tick)[0] == 1 and "lr=0.2" in _text(tick)
    refiltered = _runs_table(client, {"lr": ["0.2"]}, page=_page_of(second))  # first page
    assert _page_of(refiltered) == [0, [{"lr": ["0.2"]}, []]] and "lr=0.2" in _text(refiltered)
    none = _runs_table(client, states=["recording"], changed="runs-state")
    assert none["runs-count"]["children"] == "no run matches the filters · 2 closed"
    assert "run-row" not in _text(none)


def test_the_run_list_counts_recording_runs_and_finds_new_ones(tmp_path, record, monkeypatch):

    monkeypatch.setattr(catalog, "WALK_EVERY_S", 0.0)  # look for new runs at every poll
    record(tmp_path / "done.zarr", 2)
    client = build_app(tmp_path).server.test_client()
    assert _runs_table(client)["runs-count"]["children"] == "runs 1-1 of 1 · 1 closed"
    live = record(tmp_path / "live.zarr", 2, close=False)
    try:
        answer = _runs_table(client, states=["recording"], changed="runs-state")
        assert answer["runs-count"]["children"] == (
            "runs 1-1 of 1 · 1 recording · 1 closed"
        )
        assert "live.zarr" in _text(answer) and "done.zarr" not in _text(answer)
    finally:
        live.close()


def test_the_theory_tab_shows_the_chosen_layer(client):
    name = [(("run-name", "data"), "runs/lr=0.1/run.zarr")]
    version = _call(client, ["version.data"], [(("tick", "n_intervals"), 1)],
                    name + [(("version", "data"), None)])["version"]["data"]
    outputs = ["run-info.children", "curves.figure", "summaries.figure", "layer.options",
               "layer.value", "step.max", "step.marks", "step.value", "theory-layer.options",
               "theory-layer.value"]
    state = [(("layer", "value"), None), (("step", "value"), None), (("step", "max"), None),
             (("theory-layer", "value"), None)]
    overview = _call(client, outputs, [(("version", "data"), version)], name + state)
    assert overview["theory-layer"] == {"options": ["0", "2"], "value": "0"}
    for layer in ("0", "2"):
        out = _call(client, ["nfa.figure", "two-point.figure"],
                    [(("version", "data"), version), (("theory-layer", "value"), layer)], name)
        assert out["nfa"]["figure"]["layout"]["title"]["text"] == f"NFM vs AGOP: {layer}"
        two = json.dumps(out["two-point"]["figure"])
        assert "applies to a regression probe of exactly 2 samples" in two


def test_a_run_list_poll_that_fails_raises_with_the_servers_answer(client):
    with pytest.raises(RuntimeError, match="the run list answered HTTP 500"):
        run_list(client, {"lr": 5})  # a filter's value must be a list


def test_the_grid_filters_gain_the_values_of_new_runs(tmp_path, record, monkeypatch):

    monkeypatch.setattr(catalog, "WALK_EVERY_S", 0.0)
    for lr in (0.1, 0.2):
        record(tmp_path / f"lr={lr}.zarr", 1, config={"lr": lr})
    client = build_app(tmp_path).server.test_client()
    first = _runs_table(client, {"lr": []})
    assert first["runs-count"]["children"] == "runs 1-2 of 2 · 2 closed"
    record(tmp_path / "lr=0.05.zarr", 1, config={"lr": 0.05})
    answer = _runs_table(client, {"lr": []}, digest=first["runs-digest"]["data"])
    assert answer[json.dumps({"filter": "lr"}, separators=(",", ":"))]["options"] == [
        "0.05", "0.1", "0.2"
    ]


def test_a_new_grid_column_adds_a_filter_and_keeps_the_chosen_values(tmp_path, record, monkeypatch):

    monkeypatch.setattr(catalog, "WALK_EVERY_S", 0.0)
    for lr in (0.1, 0.2):
        record(tmp_path / f"lr={lr}.zarr", 1, config={"lr": lr, "width": 8})
    client = build_app(tmp_path).server.test_client()
    first = _runs_table(client, {"lr": ["0.1"]})
    assert "runs-filters" not in first  # the same columns: the filters are left as they are
    record(tmp_path / "wide.zarr", 1, config={"lr": 0.1, "width": 16})
    answer = _runs_table(client, {"lr": ["0.1"]}, digest=first["runs-digest"]["data"])
    filters = answer["runs-filters"]["children"]
    dropdowns = [f["props"]["children"][1]["props"] for f in filters]
    assert [(d["id"], d["value"], d["options"]) for d in dropdowns] == [
        ({"filter": "lr"}, ["0.1"], ["0.1", "0.2"]),
        ({"filter": "width"}, [], ["8", "16"]),
    ]
    assert answer["runs-count"]["children"] == "runs 1-2 of 2 · 2 closed"  # lr=0.1 still chosen


def test_the_list_opens_the_runs_of_the_page_shown_first(sweep, monkeypatch):
    import probe.serve.run_list as run_list_module

    monkeypatch.setattr(run_list_module, "PAGE_SIZE", 1)
    monkeypatch.setattr(run_list_module, "LIST_BUDGET_S", 0.0)  # one new run opened per poll
    client = build_app(sweep).server.test_client()
    answer = _runs_table(client, page=[1, [{}, []]])  # the second page, no filter
    assert "lr=0.2" in _text(answer) and '"closed"' in _text(answer)  # its run, opened
    assert answer["runs-count"]["children"] == "runs 2-2 of 2 · 1 closed · 1 opening"


def test_a_list_row_follows_new_commits(tmp_path, record):
    rec = record(tmp_path / "live.zarr", 2, close=False)
    try:
        rec.flush()
        client = build_app(tmp_path).server.test_client()
        first = _runs_table(client)
        (row,) = _cells(first)
        assert row[2]["props"]["children"] == "recording" and row[3:5] == [3, 2]
        rec.step(loss=0.1)
        rec.flush()
        second = _runs_table(client, digest=first["runs-digest"]["data"])
        (row,) = _cells(second)
        assert row[3:5] == [4, 3]  # snapshots, last step: the row was redrawn
    finally:
        rec.close()


def test_compare_ignores_runs_that_are_not_a_list_and_shares_its_budget(sweep, monkeypatch):
    import probe.serve.app as served

    client = build_app(sweep).server.test_client()
    graph = ["compare-graph.figure"]
    metric, tick, log = ("compare-metric", "value"), ("compare-tick", "n_intervals"), (
        "compare-log", "value")
    out = _call(client, graph, [(("compare-runs", "value"), "runs/lr=0.1/run.zarr"),
                                (metric, "loss"), (tick, 1), (log, [])])
    assert "choose runs to compare" in json.dumps(out)  # a string is not a list of runs
    monkeypatch.setattr(served, "COMPARE_BUDGET_S", 1e-9)  # one snapshot per redraw in all
    names = ["runs/lr=0.1/run.zarr", "runs/lr=0.2/run.zarr"]
    lengths = []
    for _ in range(2):
        out = _call(client, graph, [(("compare-runs", "value"), names),
                                    (metric, "effective_rank:2"), (tick, 1), (log, [])])
        lengths.append([len(t["y"]) for t in out["compare-graph"]["figure"]["data"]])
    assert lengths == [[1, 0], [1, 1]]  # the least summarised run goes next
