"""The package layout holds: import layers (import-linter), no import cycle, no private reach-in.

docs/layout.md describes the layers; pyproject.toml's [tool.importlinter] states them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_import_layers_contract_is_kept(capsys):
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 broken" in out


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the components of more than one node of ``graph`` (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_strongly_connected_finds_a_cycle_and_ignores_a_chain():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["probe", "hooks"])
def test_no_import_cycle(package):
    """TYPE_CHECKING imports count: a cycle there is still two modules that know each other."""
    g = grimp.build_graph(package)
    graph = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    assert strongly_connected(graph) == []


def private_reach_ins(package: Path) -> list[str]:
    """Return ``importer: imported`` for each import of a private module or name (``_x``) from
    outside the package that owns it (a package's own modules and subpackages may use it)."""
    found = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts)
        owner_of_importer = ".".join(parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [(node.module, None)] + [(node.module, a.name) for a in node.names]
                if any(p.startswith("_") for p in node.module.split(".")):
                    names = names[:1]  # the private module itself is the reach-in
            elif isinstance(node, ast.Import):
                names = [(a.name, None) for a in node.names]
            else:
                continue
            for target, name in names:
                pieces = target.split(".")
                if pieces[0] != package.name:
                    continue
                private = [i for i, p in enumerate(pieces) if p.startswith("_")]
                if private:
                    owner = ".".join(pieces[: private[0]])
                elif name and name.startswith("_"):
                    is_package = package.parent.joinpath(*pieces, "__init__.py").is_file()
                    owner = target if is_package else ".".join(pieces[:-1])
                else:
                    continue
                if not (owner_of_importer + ".").startswith(owner + "."):
                    found.append(f"{module}: {target}" + (f".{name}" if name else ""))
    return found


def test_no_module_imports_a_private_name_of_another_package():
    assert private_reach_ins(ROOT / "probe") == []


def test_private_reach_ins_are_found(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "a" / "_helper.py").write_text("")
    (pkg / "a" / "mod.py").write_text("from pkg.a._helper import x\n")
    (pkg / "b" / "mod.py").write_text("from pkg.a._helper import x\nfrom pkg.a.mod import _y\n")
    assert private_reach_ins(pkg) == ["pkg.b.mod: pkg.a._helper", "pkg.b.mod: pkg.a.mod._y"]
