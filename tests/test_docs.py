"""The docs are part of the product: the README's commands, its links, the settings page and the
public API are checked (each other page by the tests of what it describes: docs/data.md's headers by
test_io, docs/batch.md's deploy files by test_batch)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matcher
from matcher.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    """The two set-up commands: the first two ```bash blocks of the README."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    return [b.strip() for b in blocks[:2]]


def test_ci_runs_the_readme_commands() -> None:
    """CI runs the README's first command (its `&&` parts, in order) and ends with the second."""
    install_and_run, test_cmd = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    parts = [part.strip() for part in install_and_run.split("&&")]
    assert len(parts) >= 2 and parts[-1].startswith("matcher match ")
    at = 0
    for part in parts:
        found = ci.find(part, at)
        assert found >= 0, f"CI does not run {part!r} (after the README's earlier parts)"
        at = found + len(part)
    assert re.search(rf"^{re.escape(test_cmd)}$", ci, re.M), "CI must end with the README's test command"
    assert ci.rstrip().endswith(test_cmd)


def test_ci_installs_into_a_fresh_virtual_environment_from_the_lock() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    venv = ci.index("python -m venv")
    assert venv < ci.index("bin/activate") < ci.index("python -m pip install")
    assert "--require-hashes -r requirements-dev.lock" in ci
    assert "--no-deps -e ." in ci, "the project must not pull unpinned dependencies past the lock"
    assert "pip check" in ci


DOCS = ROOT / "docs"


def test_the_readme_is_a_newcomers_page_that_links_every_page() -> None:
    """At most ~300 lines: what it is, set-up, a first match, the pages, the commands, the layout and
    links; the long parts are pages of docs/, each linked and present."""
    assert len(README.splitlines()) <= 300
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", README))
    pages = {p.name for p in DOCS.glob("*.md")}
    assert linked == pages, f"not linked: {pages - linked}; missing: {linked - pages}"
    for page in pages:  # every page leads back, and its own links lead somewhere
        text = (DOCS / page).read_text(encoding="utf-8")
        for target in re.findall(r"\]\((?!https?:)([^)#]+)", text):
            assert (DOCS / target).exists(), f"docs/{page} links {target}, which does not exist"



def test_every_screenshot_is_a_page_of_the_staff_day_and_linked_from_the_readme() -> None:
    """docs/screenshots/ holds one picture per page the browser test's staff day meets (the names
    its `seen(...)` calls give), no stale one, and the README links each."""
    shots = {p.stem for p in (DOCS / "screenshots").glob("*.png")}
    day = (ROOT / "tests" / "staff_day.py").read_text(encoding="utf-8")
    played = set(re.findall(r"""\bseen\("(\w+)"\)""", day))
    assert shots == played, f"no screenshot: {played - shots}; stale: {shots - played}"
    linked = set(re.findall(r"\]\(docs/screenshots/(\w+)\.png\)", README))
    assert linked == shots, f"not linked from the README: {shots - linked}"

def test_every_setting_is_documented() -> None:
    page = (DOCS / "operations.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`MATCHER_([A-Z0-9_]+)`", page))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields == documented, f"undocumented: {fields - documented}; stale: {documented - fields}"
    for name, f in Settings.model_fields.items():
        assert f.description, f"setting {name} has no description"


def test_public_api_is_small_sorted_and_importable() -> None:
    assert matcher.__all__ == sorted(matcher.__all__)
    for name in matcher.__all__:
        assert hasattr(matcher, name), name
    assert set(matcher.__all__) == {
        "AuthError", "ChineseTokenizer", "DataImportError", "Demand", "Document", "Engine", "Evidence",
        "Expert", "Explanation", "Filters", "IndexStateError", "InputError", "Match", "MatcherError",
        "NotFoundError", "PayloadTooLargeError", "Settings", "StoreError", "get_settings", "normalize",
    }


HEAVY = ("jieba", "matcher.store", "matcher.engine", "matcher.ranking", "sqlite_utils", "numpy", "scipy")


def _loaded_by(code: str) -> tuple[list[str], float]:
    """The heavy modules a fresh interpreter has loaded after `code`, and the seconds it took."""
    probe = (f"import json, sys, time\nt = time.perf_counter()\n{code}\n"
             f"print(json.dumps([sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
             f"or m in {HEAVY!r}), time.perf_counter() - t]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.strip().splitlines()[-1]
    modules, seconds = json.loads(out)
    return modules, seconds


def test_the_settings_and_the_help_load_neither_jieba_nor_the_store() -> None:
    """`matcher/__init__` imports its public names when first used: reading the settings or asking
    the command line for help does not load jieba, the store, the engine or numpy."""
    for code in ("import matcher.config", "import matcher", "import matcher.errors, matcher.models",
                 "from typer.testing import CliRunner\nfrom matcher.cli import app\n"
                 "assert 'rank experts' in CliRunner().invoke(app, ['--help']).output\n"
                 "assert '--top' in CliRunner().invoke(app, ['match', '--help']).output"):
        modules, seconds = _loaded_by(code)
        assert modules == [], f"{code!r} loaded {modules}"
        print(f"{code.splitlines()[-1]!r}: {seconds:.2f} s")  # the figure, for whoever looks (-s)
    modules, _ = _loaded_by("import matcher\nmatcher.Engine")  # the names still work, when used
    assert "matcher.engine" in modules and "jieba" in modules
