"""Which installed distributions a notebook's code really imports.

Imports are read from the code the kernel executes (cells, ``%run`` scripts and
local helper modules, recursively) and resolved in the *live* interpreter:
module -> file -> the installed distribution that owns it, with its exact
version. Standard-library modules are skipped, local ``.py`` files beside the
notebook become project code to ship, and a module nobody provides is reported
as unresolved instead of crashing anything.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

_PIP_LINE = re.compile(
    r"^\s*[%!]\s*(?:\{[^}]*\}\s+-m\s+|python3?\s+-m\s+)?pip3?\s+install\s+(?P<args>.+)$"
)
_RUN_LINE = re.compile(r"^\s*%run\s+(?:-\S+\s+)*(?P<file>[^\s;]+\.(?:py|ipynb))")
#: ``%load_ext watermark``: the notebook imports the extension's module
_EXT_LINE = re.compile(r"^\s*%(?P<magic>(?:re)?load_ext)\s+(?P<module>[A-Za-z_][\w.]*)\s*$")
#: extensions IPython ships (``IPython.extensions.<name>``): nothing to install
_IPYTHON_EXTENSIONS = frozenset({"autoreload", "storemagic"})
_CANON = re.compile(r"[-_.]+")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return _CANON.sub("-", name).lower()


@dataclass
class ImportSite:
    module: str  # dotted name as written
    found_by: str  # "import", "dynamic import", "%run <file>", "helper <file>"
    cell: int | None = None


@dataclass
class CodeScan:
    imports: list[ImportSite] = field(default_factory=list)
    pip_installs: list[str] = field(default_factory=list)
    run_files: list[str] = field(default_factory=list)


def _to_python(source: str) -> str:
    """Cell source with IPython syntax (magics, ``!cmd``) turned into Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # a cell IPython cannot transform cannot run either
        return ""


def logical_lines(source: str) -> list[tuple[int, int, str]]:
    """(first, last line index, text) of each line of ``source`` with its ``\\`` continuations joined,
    as IPython joins them for a ``!cmd`` or ``%magic`` line (``!pip install a \\`` then ``b``)."""
    lines = source.splitlines()
    out, i = [], 0
    while i < len(lines):
        first, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1].rstrip() + " " + lines[i].strip()
        out.append((first, i, text))
        i += 1
    return out


def scan_source(source: str, *, found_by: str = "import", cell: int | None = None,
                ipython: bool = True) -> CodeScan:
    """Imports (``%load_ext`` ones too), ``%pip install`` requirements and ``%run`` files in one cell or file."""
    scan = CodeScan()
    for _, _, line in logical_lines(source):
        m = _PIP_LINE.match(line)
        if m:
            scan.pip_installs.extend(_pip_requirements(m["args"]))
        m = _RUN_LINE.match(line)
        if m:
            scan.run_files.append(m["file"])
        m = _EXT_LINE.match(line)
        if m and m["module"] not in _IPYTHON_EXTENSIONS:
            scan.imports.append(ImportSite(m["module"], f"%{m['magic']} {m['module']}", cell))
    code = _to_python(source) if ipython else source
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return scan
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            scan.imports += [ImportSite(a.name, found_by, cell) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            scan.imports.append(ImportSite(node.module, found_by, cell))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                scan.imports.append(ImportSite(arg.value, "dynamic import", cell))
    return scan


def _is_dynamic_import(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in {"import_module", "__import__"} and bool(node.args)


#: ``pip install`` options followed by a value (``--retries 0``): the value is no requirement
_PIP_VALUE_OPTIONS = frozenset({
    "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--src", "--upgrade-strategy", "--platform",
    "--python-version", "--implementation", "--abi", "--no-binary", "--only-binary", "--progress-bar",
    "--log", "--log-file", "--exists-action", "--global-option", "--config-settings", "-C", "--report",
    "--root-user-action", "--keyring-provider", "--use-feature", "--use-deprecated", "--python", "--retries",
    "--timeout", "--trusted-host", "--proxy", "--cert", "--client-cert", "--cache-dir", "--resume-retries",
    "--group", "--build-constraint",
})


def _pip_requirements(args: str) -> list[str]:
    """Requirement specs from the argument list of ``pip install``."""
    out, skip = [], False
    for tok in args.split("#")[0].split():
        if skip:
            skip = False
            continue
        if tok in _PIP_VALUE_OPTIONS:
            skip = True
            continue
        if tok.startswith("-") or tok.startswith("{") or tok.startswith("$"):
            continue
        out.append(tok.strip("'\""))
    return out


def pip_install_args(line: str) -> str | None:
    """The arguments of a ``!pip install ...`` / ``%pip install ...`` line (also ``!python -m pip``
    and ``!{sys.executable} -m pip``), or None for any other line."""
    m = _PIP_LINE.match(line)
    return m["args"] if m else None


@dataclass
class RequirementCheck:
    """What a ``pip install`` line asks for, against what this interpreter has installed."""

    requirements: list[str] = field(default_factory=list)  # the specs, as written
    installed: list[str] = field(default_factory=list)  # "scikit-learn 1.9.1": satisfied
    missing: list[str] = field(default_factory=list)  # "catboost is not installed", ...
    to_install: list[str] = field(default_factory=list)  # for each of those: "catboost", "pytest<1"
    unchecked: list[str] = field(default_factory=list)  # URLs, paths, files that could not be read


def check_requirements(args: str, folder: Path | None = None) -> RequirementCheck:
    """Whether the packages a ``pip install ARGS`` line names are installed here at versions it
    accepts, without installing anything. ``-r FILE`` is read (relative to ``folder``); a
    URL, a path or a VCS reference is listed as unchecked."""
    from packaging.requirements import InvalidRequirement, Requirement

    unreadable: list[str] = []
    specs = _pip_requirements(args)
    words = args.split("#")[0].split()
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("-r", "--requirement"):
            specs += _requirements_file((folder or Path.cwd()) / value.strip("'\""), unreadable)
    check = RequirementCheck(requirements=specs, unchecked=unreadable)
    for spec in specs:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            check.unchecked.append(spec)
            continue
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            check.missing.append(f"{req.name} is not installed")
            check.to_install.append(req.name)
            continue
        name = dist.metadata["Name"] or req.name
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            check.missing.append(f"{req} is asked for, {name} {dist.version} is installed")
            check.to_install.append(str(req))
        else:
            check.installed.append(f"{name} {dist.version}")
    return check


def _requirements_file(path: Path, unreadable: list[str]) -> list[str]:
    """The requirement lines of a requirements file (options, comments and includes skipped)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        unreadable.append(f"-r {path} (cannot be read)")
        return []
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.split("#")[0].strip() and not line.lstrip().startswith("-")]


def is_stdlib(module: str) -> bool:
    top = module.split(".")[0]
    return top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "__future__"


@dataclass
class Resolution:
    module: str
    kind: str  # "stdlib" | "distribution" | "project" | "unresolved"
    distribution: str | None = None
    version: str | None = None
    path: str | None = None  # file for project modules
    reason: str | None = None  # why unresolved; for a project module installed from a folder, from where


@lru_cache(maxsize=1)
def _top_level_index() -> dict[str, list[str]]:
    return {k: list(dict.fromkeys(v)) for k, v in md.packages_distributions().items()}


def index_installed() -> None:
    """Index the installed distributions now (a third of a second).

    A capture session does it at its first write; a batch's kernel server does it
    once, before it forks the kernels (:mod:`nbdeploy.job.kernels`).
    """
    _top_level_index()
    _local_dists()


def _module_file(module: str) -> str | None:
    mod = sys.modules.get(module)
    f = getattr(mod, "__file__", None) if mod is not None else None
    if f:
        return f
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError, AttributeError):
        return None
    if spec is None:
        return None
    if spec.origin and spec.origin not in {"built-in", "frozen", "namespace"}:
        return spec.origin
    locs = list(spec.submodule_search_locations or [])
    return locs[0] if locs else None


def _is_findable(module: str) -> bool:
    if module in sys.modules:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _owner_by_file(candidates: list[str], file: str) -> str | None:
    target = Path(file).resolve()
    for name in candidates:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for f in dist.files or ():
            try:
                # str(): a distribution in a zip file on sys.path locates its files as zipfile.Path,
                # which Path() refuses; its text is the zip's path and the member's, as a module's
                # __file__ from that zip reads
                if Path(str(dist.locate_file(f))).resolve() == target:
                    return name
            except OSError:
                continue
    return None


@dataclass(frozen=True)
class LocalDist:
    """A distribution installed from a folder on this machine (PEP 610 ``dir_info``): ``pip install
    -e .`` or ``pip install ./lib``. No package index has it, so a lock cannot pin it: its code
    ships with the model, as the notebook's own."""

    name: str
    version: str
    folder: Path  # the source folder it was installed from
    editable: bool


@lru_cache(maxsize=1)
def _local_dists() -> dict[str, LocalDist]:
    """Every distribution installed from a local folder, by canonical name."""
    import json
    from urllib.parse import unquote, urlsplit

    found: dict[str, LocalDist] = {}
    for dist in md.distributions():
        raw = dist.read_text("direct_url.json")
        if not raw:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        url, dir_info, name = doc.get("url"), doc.get("dir_info"), dist.metadata["Name"]
        if isinstance(dir_info, dict) and isinstance(url, str) and url.startswith("file://") and name:
            found.setdefault(canonical(name), LocalDist(name, dist.version, Path(unquote(urlsplit(url).path)).resolve(),
                                                        bool(dir_info.get("editable"))))
    return found


def _editable_owner(file: str, top: str) -> str | None:
    """The editable distribution whose project provides ``top`` (flat or src layout).

    Only the package itself counts: a notebook's helper module that merely lives
    somewhere inside an editable project's folder is the notebook's own code.
    """
    p = Path(file).resolve()
    for local in _local_dists().values():
        if not local.editable:
            continue
        for base in (local.folder, local.folder / "src"):
            if p == base / f"{top}.py" or p.is_relative_to(base / top):
                return local.name
    return None


def _site_dirs() -> list[Path]:
    import site

    dirs = list(site.getsitepackages()) + [site.getusersitepackages(), sys.prefix, sys.base_prefix]
    return [Path(d).resolve() for d in dirs if d]


#: files that mark a project's top folder (a repository, a package's source tree)
_PROJECT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg")


def project_scope(project_dir: Path) -> Path:
    """The folder whose code is the notebook's own: the nearest folder at or above the notebook's
    (three levels up at most) holding ``.git``, ``pyproject.toml``, ``setup.py`` or
    ``setup.cfg`` (cookiecutter-data-science keeps notebooks in ``notebooks/`` and code in
    ``src/`` beside it), else the notebook's folder."""
    here = project_dir.resolve()
    for folder in [here, *here.parents][:4]:
        if any((folder / m).exists() for m in _PROJECT_MARKERS):
            return folder
    return here


def module_root(path: str | Path) -> Path:
    """The folder a top-level module or package is imported from (its ``sys.path`` entry):
    ``/p/src`` for ``/p/src/features.py``, ``/p`` for the package ``/p/src/__init__.py``."""
    p = Path(path)
    return p.parent.parent if p.name == "__init__.py" else p.parent


def project_files(path: str | Path) -> list[Path]:
    """The Python files a project module ships: its file, or every ``.py`` file in its package's
    folder (``path`` is the package's ``__init__.py`` or the folder itself)."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent if p.name == "__init__.py" else None
    if folder is None:
        return [p] if p.suffix == ".py" else []
    return sorted(f for f in folder.rglob("*.py") if "__pycache__" not in f.parts)


def file_imports(path: Path) -> list[str]:
    """The modules a Python file imports by absolute name (relative imports stay in its package)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [site.module for site in scan_source(text, ipython=False).imports]


def _own_code(p: Path, project_dir: Path) -> bool:
    """Whether a module file (not in site-packages) is the notebook's own code: beside the
    notebook or below it, inside its project (:func:`project_scope`), or imported from a
    folder above it that the notebook put on ``sys.path`` (``sys.path.append('..')``)."""
    here = project_dir.resolve()
    return (p.is_relative_to(here) or p.is_relative_to(project_scope(here))
            or module_root(p) in list(here.parents)[:3])


def resolve(module: str, project_dir: Path) -> Resolution:
    """Resolve one imported module name in this interpreter."""
    top = module.split(".")[0]
    if is_stdlib(module):
        return Resolution(module, "stdlib")
    if top == "nbdeploy":  # the tool itself (%load_ext nbdeploy): known, never something to resolve or ship
        from nbdeploy._version import __version__

        return Resolution(module, "distribution", distribution="nbdeploy", version=__version__)
    if not _is_findable(top):
        return Resolution(module, "unresolved",
                          reason=f"module {top!r} is imported but not installed in this kernel")
    file = _module_file(top)
    editable = _editable_owner(file, top) if file else None
    if file and editable is None:
        p = Path(file).resolve()
        in_site = any(p.is_relative_to(d) for d in _site_dirs())
        if not in_site and _own_code(p, project_dir):
            return Resolution(module, "project", path=str(p))
    candidates = _top_level_index().get(top, []) or ([editable] if editable else [])
    dist_name = None
    if len(candidates) == 1:
        dist_name = candidates[0]
    elif len(candidates) > 1:  # namespace packages: ask who owns the submodule's file
        sub_file = _module_file(module) if _is_findable(module) else None
        dist_name = _owner_by_file(candidates, sub_file) if sub_file else None
        dist_name = dist_name or candidates[0]
    if dist_name is None:
        where = f" (found at {file})" if file else ""
        return Resolution(module, "unresolved",
                          reason=f"module {top!r} is importable{where} but no installed distribution provides it")
    local = _local_dists().get(canonical(dist_name))
    if local is not None and file:
        # installed from a folder here (``pip install -e .``): no index has it, its code ships
        how = "editable" if local.editable else "installed"
        return Resolution(module, "project", distribution=local.name, version=local.version,
                          path=str(Path(file).resolve()), reason=f"{how} from {local.folder}")
    dist = md.distribution(dist_name)
    return Resolution(module, "distribution", distribution=dist.metadata["Name"], version=dist.version)
