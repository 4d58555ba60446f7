"""What the project imports is declared, and what is declared is locked.

A fresh virtual environment gets exactly `requirements-dev.lock` (hash-checked) and the project
with `--no-deps` (see `.ci/run`): an import that pyproject.toml does not declare, or a declaration
the lock does not pin, fails here with its name instead of as a ModuleNotFoundError on a new machine.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
LOCK = ROOT / "requirements-dev.lock"
# Our own top-level packages and the benchmark scripts' sibling modules.
LOCAL = {"matcher", "api", "tests", "synth", "bench_common", "scale"}


def _sources(folder: str) -> Iterator[tuple[str, str]]:
    """(name, Python source) of every .py file and notebook code cell under `folder`."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        yield str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / folder).rglob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        # IPython magics and shell escapes are not Python
        code = "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith(("%", "!")))
        yield str(path.relative_to(ROOT)), code


def third_party_imports(folder: str) -> dict[str, set[str]]:
    """{top-level module: files importing it} for absolute imports outside the stdlib and the project."""
    found: dict[str, set[str]] = {}
    for name, source in _sources(folder):
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LOCAL:
                    found.setdefault(top, set()).add(name)
    return found


def _declared(*groups: str) -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
    for g in groups:
        reqs += [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][g]]
    return {canonicalize_name(r.name): r for r in reqs}


def _with_extras(declared: dict[str, Requirement]) -> set[str]:
    """Declared distributions plus those an extra asks for (`dask[distributed]` -> distributed)."""
    names = set(declared)
    env = default_environment()
    for req in declared.values():
        for extra in req.extras:
            try:
                deps = requires(req.name) or []
            except PackageNotFoundError:
                continue
            for dep in map(Requirement, deps):
                if dep.marker is not None and dep.marker.evaluate({**env, "extra": extra}) and \
                        not dep.marker.evaluate({**env, "extra": ""}):
                    names.add(canonicalize_name(dep.name))
    return names


def _undeclared(folders: tuple[str, ...], groups: tuple[str, ...]) -> dict[str, set[str]]:
    dists = packages_distributions()
    allowed = _with_extras(_declared(*groups))
    missing: dict[str, set[str]] = {}
    for folder in folders:
        for mod, files in third_party_imports(folder).items():
            # a package of an optional extra need not be installed: its module name then has to
            # be its distribution's (sentence_transformers -> sentence-transformers)
            owners = {canonicalize_name(d) for d in dists.get(mod, [])} or {canonicalize_name(mod)}
            if not owners & allowed:
                missing.setdefault(f"{mod} ({', '.join(sorted(owners)) or 'not installed'})", set()).update(files)
    return missing


def test_the_library_and_the_service_import_only_runtime_dependencies() -> None:
    # `scale` is the optional extra of the partitioned batch (matcher/distributed.py imports
    # dask's client inside the function that needs it)
    assert _undeclared(("matcher", "api"), ("scale", "models")) == {}


def test_tests_notebooks_and_benchmarks_import_only_declared_packages() -> None:
    assert _undeclared(("tests", "notebooks", "benchmarks", "docs"), ("dev",)) == {}


def test_the_import_scan_sees_third_party_imports() -> None:
    # the scan itself, on files known to import these: it must not pass by finding nothing
    assert {"numpy", "scipy", "jieba"} <= set(third_party_imports("matcher"))
    assert {"pytest", "schemathesis", "nbformat", "playwright"} <= set(third_party_imports("tests"))
    assert "matplotlib" in third_party_imports("notebooks")


def _locked() -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", LOCK.read_text(encoding="utf-8"), re.M)
    return {canonicalize_name(n): Version(v) for n, v in pins}


def test_every_declared_dependency_is_pinned_by_the_lock_within_its_bounds() -> None:
    locked = _locked()
    for group in ((), ("dev",), ("scale",)):
        for name, req in _declared(*group).items():
            assert name in locked, f"{name} is declared in pyproject.toml but not in requirements-dev.lock; " \
                                   "refresh the lock (README, 'Dependencies')"
            assert req.specifier.contains(locked[name], prereleases=True), \
                f"the lock pins {name}=={locked[name]}, outside pyproject.toml's {req.specifier}"


def test_every_pin_of_the_lock_carries_hashes() -> None:
    text = LOCK.read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text.split("\n", 2)[2])
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9_.\-]+==", b)]
    assert len(pinned) == len(_locked()) > 50
    assert all("--hash=sha256:" in b for b in pinned)
