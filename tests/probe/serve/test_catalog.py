import os

import pytest

from probe.errors import RunNotFoundError
from probe.serve import catalog
from probe.serve.catalog import Catalog, grid_columns


def test_finds_the_runs_of_a_sweep_by_relative_name_with_their_grid(sweep):
    cat = Catalog(sweep)
    names = [e.name for e in cat.runs()]
    assert names == ["runs/lr=0.1/run.zarr", "runs/lr=0.2/run.zarr"]
    assert grid_columns(cat.runs()) == {
        "lr": {"runs/lr=0.1/run.zarr": "0.1", "runs/lr=0.2/run.zarr": "0.2"}
    }
    assert cat.resolve("runs/lr=0.2/run.zarr").path == sweep / "runs" / "lr=0.2" / "run.zarr"


def test_a_run_store_itself_is_served_as_one_run_named_by_its_folder(sweep):
    cat = Catalog(sweep / "runs" / "lr=0.1" / "run.zarr")
    assert [e.name for e in cat.runs()] == ["run.zarr"]  # not ".": a link /run/. reads /run/
    assert cat.resolve("run.zarr").path == sweep / "runs" / "lr=0.1" / "run.zarr"
    assert grid_columns(cat.runs()) == {}


@pytest.mark.parametrize(
    "name",
    ["../lr=0.2/run.zarr", "runs/../runs/lr=0.1/run.zarr", "/etc/passwd", "..", "runs/lr=0.1"],
)
def test_names_outside_the_catalog_are_refused(sweep, name):
    with pytest.raises(RunNotFoundError, match="no run .* under .*the run list at / shows"):
        Catalog(sweep).resolve(name)


def test_a_symlink_leaving_the_served_folder_is_not_followed(tmp_path, sweep):
    root = tmp_path / "served"
    root.mkdir()
    os.symlink(sweep / "runs", root / "elsewhere")
    assert Catalog(root).runs() == []
    with pytest.raises(RunNotFoundError, match="no run 'elsewhere/lr=0.1/run.zarr'"):
        Catalog(root).resolve("elsewhere/lr=0.1/run.zarr")


def test_a_file_is_not_a_folder_of_runs(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(RunNotFoundError, match="needs a run store or a folder of them"):
        Catalog(tmp_path / "f.txt")


def test_a_folder_that_is_not_a_run_is_skipped_and_runs_deeper_than_the_limit_too(tmp_path, record):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "zarr.json").write_text('{"attributes": {"schema": "other"}}')
    record(tmp_path / "a" / "b" / "c" / "d" / "run.zarr", 1)  # depth 5 > MAX_DEPTH
    record(tmp_path / "x" / "run.zarr", 1)
    assert [e.name for e in Catalog(tmp_path).runs()] == ["x/run.zarr"]


def test_resolve_walks_again_only_for_a_name_it_has_not_seen(tmp_path, record, monkeypatch):
    record(tmp_path / "a.zarr", 1)
    cat = Catalog(tmp_path)
    walks = []
    real_walk = cat._walk
    monkeypatch.setattr(cat, "_walk", lambda *a: (walks.append(a[0]), real_walk(*a))[1])
    assert [e.name for e in cat.runs()] == ["a.zarr"]
    n = len(walks)
    for _ in range(3):  # a sweep's list resolves every run at every poll: no walk for known runs
        cat.resolve("a.zarr")
    assert len(walks) == n
    record(tmp_path / "b.zarr", 1)  # a run that appeared since the last walk is found ...
    with pytest.raises(RunNotFoundError, match="no run 'b.zarr'"):
        cat.resolve("b.zarr")  # ... not by walking at every request for an unknown name
    assert len(walks) == n
    monkeypatch.setattr(catalog, "WALK_EVERY_S", 0.0)  # ... but once the last walk is old
    assert cat.resolve("b.zarr").path == tmp_path / "b.zarr"
    assert len(walks) > n
    with pytest.raises(RunNotFoundError, match="no run 'c.zarr'"):
        cat.resolve("c.zarr")


def test_runs_sort_numbers_by_value_and_grid_strings_read_as_written(tmp_path, record):
    for seed, model in [(10, "gru"), (2, "lstm"), (1, "gru")]:
        record(tmp_path / f"seed={seed}.zarr", 1, config={"seed": seed, "model": model})
    cat = Catalog(tmp_path)
    assert [e.name for e in cat.runs()] == ["seed=1.zarr", "seed=2.zarr", "seed=10.zarr"]
    assert grid_columns(cat.runs())["model"] == {
        "seed=1.zarr": "gru", "seed=2.zarr": "lstm", "seed=10.zarr": "gru"
    }


def test_runs_reuses_a_recent_walk_when_asked_and_finds_new_runs_after(tmp_path, record):
    record(tmp_path / "a.zarr", 1)
    cat = Catalog(tmp_path)
    assert len(cat.runs()) == 1
    record(tmp_path / "b.zarr", 1)
    assert len(cat.runs(max_age_s=60.0)) == 1  # the walk of a moment ago
    assert len(cat.runs(max_age_s=0.0)) == 2
