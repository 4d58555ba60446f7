"""The house's shape, checked on the source: the library never imports the faces; no import circle
in any package (every import statement counts, those inside functions and under TYPE_CHECKING too);
the faces import only what the README's Layout section names; no class over 400 lines and no
function over 80 in matcher/ and api/."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_CLASS, MAX_FUNCTION = 400, 80
FACES = ("api", "matcher.cli", "matcher.__main__")


def modules() -> dict[str, Path]:
    out = {}
    for p in [*ROOT.glob("matcher/**/*.py"), *ROOT.glob("api/**/*.py")]:
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = modules()


def _resolve(name: str) -> str | None:
    """The project module `name` is (or is inside): a package's submodule, else the package."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> Iterator[tuple[str, int]]:
    """(imported project module, line) for every import statement of `module`."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            found = _resolve(t)
            if found and found != module:
                yield found, node.lineno


def edges() -> dict[str, set[str]]:
    return {m: {t for t, _ in imports_of(m)} for m in MODULES}


def is_face(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FACES)


def test_the_library_never_imports_the_faces() -> None:
    for module, path in MODULES.items():
        if is_face(module):
            continue
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) (fastapi|starlette|uvicorn)\b", text, re.M), module
        faces = [(t, line) for t, line in imports_of(module) if is_face(t)]
        assert not faces, f"{module} imports the faces: {faces}"


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph`: its strongly connected components of two modules or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_package_has_an_import_circle() -> None:
    assert circles(edges()) == []


def allowed_for_faces() -> set[str]:
    """What the README's Layout section says the faces may import."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    sentence = layout[layout.index("Faces import only"):].split("\n\n", 1)[0]
    return set(re.findall(r"`(matcher(?:\.\w+)*)`", sentence))


def test_the_faces_import_only_the_facade_the_records_and_the_named_services() -> None:
    allowed = allowed_for_faces()
    assert {"matcher.engine", "matcher.models", "matcher.errors", "matcher.workflow"} <= allowed
    assert all(_resolve(m) == m for m in allowed), "the README names a module that does not exist"
    for module in MODULES:
        if not is_face(module):
            continue
        reached = {(t, line) for t, line in imports_of(module) if not is_face(t)}
        wrong = sorted((t, line) for t, line in reached if t not in allowed)
        assert not wrong, f"{module} imports {wrong}: go through the facade or a service the README names"


def test_no_class_over_400_lines_and_no_function_over_80() -> None:
    too_big = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "end_lineno") else 0
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS:
                too_big.append(f"class {module}.{node.name}: {size} lines")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and size > MAX_FUNCTION:
                too_big.append(f"function {module}.{node.name}: {size} lines")
    assert too_big == []


def test_the_checks_see_a_circle_and_a_face(tmp_path: Path) -> None:
    """The checks above would fail on what they forbid (their own test)."""
    global MODULES
    saved = MODULES
    try:
        MODULES = {"matcher.a": tmp_path / "a.py", "matcher.b": tmp_path / "b.py", "api.x": tmp_path / "x.py"}
        (tmp_path / "a.py").write_text("def f():\n    from matcher import b\n", encoding="utf-8")
        (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                       "    import matcher.a\nimport api.x\n", encoding="utf-8")
        (tmp_path / "x.py").write_text("", encoding="utf-8")
        assert edges() == {"matcher.a": {"matcher.b"}, "matcher.b": {"matcher.a", "api.x"}, "api.x": set()}
        assert circles(edges()) == [["matcher.a", "matcher.b"]]
        assert [t for t, _ in imports_of("matcher.b") if is_face(t)] == ["api.x"]
    finally:
        MODULES = saved
