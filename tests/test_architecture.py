"""The house keeps its shape: imports run one way, and no two modules import each other.

Layers, lowest first (docs/architecture.md):

    serve       nbdeploy.serve.*                            imports only serve (it is copied into bundles)
    base        nbdeploy._version, nbdeploy.base.*          + serve (the version lives there)
    capture     nbdeploy.capture.*                          + base
    job         nbdeploy.job.*                              + capture
    bundle      nbdeploy.bundle.*                           + job
    container   nbdeploy.container.*                        + bundle
    release     nbdeploy.release.*  (registry, promote)     + container
    score       nbdeploy.score.*    (batch scoring)         + container
    frontends   nbdeploy.frontends.*                        + all of the core (never imported by it)
    entry       nbdeploy/__init__.py, nbdeploy/__main__.py  the package's hooks: anything

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbdeploy"
RANKS = {"serve": 0, "base": 1, "capture": 2, "job": 3, "bundle": 4, "container": 5, "release": 6, "score": 6,
         "frontends": 7}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if module in ("nbdeploy", "nbdeploy.__main__"):
        return "entry"
    if parts[1] == "_version":
        return "base"
    if parts[1] not in RANKS:
        raise AssertionError(f"{module} is in no layer: put it in base/, a stage folder or frontends/")
    return parts[1]


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(path: Path) -> set[str]:
    """Every nbdeploy module (or package) this file imports, at any depth of its code."""
    module = _module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            found.add(target)
            for a in node.names:  # `from nbdeploy.bundle import servers` imports a module
                if (PACKAGE.parent / (target + "." + a.name).replace(".", "/")).with_suffix(".py").is_file():
                    found.add(f"{target}.{a.name}")
    return {f for f in found if f == "nbdeploy" or f.startswith("nbdeploy.")} - {module}


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))
            if "labextension" not in p.parts}


def test_every_import_runs_down_the_layers() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = _layer(module)
        if layer == "entry":
            continue
        for target in targets:
            if target == "nbdeploy":
                wrong.append(f"{module} imports the package root (import from the module that holds the name)")
                continue
            other = _layer(target)
            if layer == "serve" and other != "serve":
                wrong.append(f"{module} (serve) imports {target}: the serving runtime must stay self-contained")
            elif other == "entry" or RANKS[other] > RANKS[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other}), a higher layer")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_two_modules_import_each_other() -> None:
    graph = _graph()
    # a package's __init__ that re-exports its modules lazily is not a circle with them
    for module in graph:
        if (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file():
            graph[module] = {t for t in graph[module] if not t.startswith(module + ".")}
    assert _cycles(graph) == []


@pytest.mark.parametrize("graph,expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert _cycles(graph) == expected


def test_the_layer_check_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    """The check reads imports inside functions too."""
    f = PACKAGE / "capture" / "_probe_for_test.py"
    f.write_text("def f():\n    from nbdeploy.frontends.cli import main\n    return main\n")
    try:
        assert "nbdeploy.frontends.cli" in _imports(f)
        with pytest.raises(AssertionError, match="capture._probe_for_test .capture. imports nbdeploy.frontends.cli"):
            test_every_import_runs_down_the_layers()
    finally:
        f.unlink()


def test_the_version_has_one_source() -> None:
    """The wheel, the package, the API and the JupyterLab extension say the same version."""
    import json
    import tomllib

    from nbdeploy import __version__
    from nbdeploy.serve.protocol import SERVER_VERSION

    root = PACKAGE.parent
    hatch = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["hatch"]["version"]["path"]
    assert hatch == "nbdeploy/serve/version.py"
    assert SERVER_VERSION == __version__
    assert json.loads((root / "labextension" / "package.json").read_text())["version"] == __version__
    written = [p.relative_to(root).as_posix() for p in PACKAGE.rglob("*.py")
               if "labextension" not in p.parts and f'"{__version__}"' in p.read_text(encoding="utf-8")]
    assert written == ["nbdeploy/serve/version.py"]
