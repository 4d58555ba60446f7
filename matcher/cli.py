"""The `matcher` command line: parse, call the engine, format; `MatcherError` becomes exit code 2."""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from matcher.config import Settings
from matcher.errors import MatcherError
from matcher.models import Match

app = typer.Typer(
    help="金桥 Matcher: rank experts and academicians for enterprises' technical demands.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="SQLite database file [default: $MATCHER_DB or ./matcher.db]", show_default=False),
]


def _settings(db: Path | None) -> Settings:
    return Settings(db=db) if db is not None else Settings()


def _engine(db: Path | None):  # noqa: ANN202 - imported lazily to keep `--help` fast
    from matcher.engine import Engine

    return Engine(_settings(db))


def _fail_cleanly(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MatcherError as exc:
            typer.secho(f"error: {exc.message}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _cell(s: str, width: int) -> str:
    out, w = "", 0
    for c in s:
        cw = _width(c)
        if w + cw > width:
            out = out[:-1] + "…" if out else out
            w = _width(out)
            break
        out += c
        w += cw
    return out + " " * (width - w)


def format_matches(matches: list[Match]) -> str:
    cols = [("#", 3), ("姓名", 8), ("职称", 14), ("单位", 26), ("得分", 7), ("匹配词", 40)]
    lines = ["  ".join(_cell(name, w) for name, w in cols)]
    for m in matches:
        e = m.expert
        vals = [str(m.rank), e.name or e.id, e.title, e.institution, f"{m.score:.3f}",
                "、".join(m.explanation.terms[:8])]
        lines.append("  ".join(_cell(v, w) for v, (_, w) in zip(vals, cols, strict=True)))
        for ev in m.explanation.evidence[:1]:
            lines.append(f"     └ {ev.field}: {ev.text[:60]}")
    return "\n".join(lines)


@app.command()
@_fail_cleanly
def match(
    text: Annotated[str, typer.Argument(help="The enterprise's technical problem, in Chinese (or '-' for stdin).")],
    top: Annotated[int, typer.Option("--top", "-n", help="How many experts to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    region: Annotated[str, typer.Option(help="Only experts whose region contains this.")] = "",
    title: Annotated[str, typer.Option(help="Only experts whose title contains this (e.g. 院士).")] = "",
    db: DbOption = None,
) -> None:
    """Rank experts for a pasted demand, with the terms and documents that matched."""
    from matcher.rank import Filters

    if text == "-":
        text = sys.stdin.read()
    engine = _engine(db)
    with engine:
        if engine.load_demo():
            typer.echo(f"The database {engine.settings.db} was empty: loaded the demo corpus "
                       f"({engine.store.count_experts()} fictional experts).", err=True)
        matches = engine.match(text, top_k=top, filters=Filters(region=region, title=title))
    if as_json:
        payload = {"query": text, "matches": [m.to_dict() for m in matches]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    elif not matches:
        typer.echo("No expert shares a term with this text. Try other words or fewer filters.")
    else:
        typer.echo(format_matches(matches))


@app.command("import")
@_fail_cleanly
def import_(
    kind: Annotated[str, typer.Argument(help="What the file holds: experts or demands.")],
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv (UTF-8 or GBK) or .xlsx file.")],
    db: DbOption = None,
) -> None:
    """Import experts or demands from a file, all rows or none."""
    if kind not in ("experts", "demands"):
        raise typer.BadParameter("must be 'experts' or 'demands'", param_hint="KIND")
    with _engine(db) as engine:
        summary = engine.import_experts(file) if kind == "experts" else engine.import_demands(file)
        if kind == "experts" and (summary.inserted or summary.updated):
            engine.rebuild()
    typer.echo(f"{kind}: {summary.inserted} inserted, {summary.updated} updated, {summary.unchanged} unchanged")


@app.command()
@_fail_cleanly
def index(db: DbOption = None) -> None:
    """Rebuild the search index from every expert in the database."""
    with _engine(db) as engine:
        idx = engine.rebuild()
        typer.echo(f"index rebuilt: {idx.n_experts} experts, {idx.units_.n_docs_} documents, "
                   f"{idx.units_.n_terms} terms -> {engine.index_dir}")


@app.command("eval")
@_fail_cleanly
def eval_(
    benchdir: Annotated[Path, typer.Argument(help="Folder with experts.jsonl, queries.jsonl and qrels.tsv.")],
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of the metrics.")] = False,
    top: Annotated[int, typer.Option("--top", help="Ranking depth per query.")] = 100,
    run: Annotated[Path | None, typer.Option("--run", help="Also write the ranking as a TREC run file.")] = None,
) -> None:
    """Score the ranker and a BM25 reference (same tokens) on a benchmark folder."""
    from matcher.engine import Engine
    from matcher.evaluate import evaluate, format_table, load_benchmark, write_trec_run
    from matcher.store import Store

    bench = load_benchmark(benchdir)
    engine = Engine(Settings(db=Path(":memory:")), store=Store(":memory:"))
    result = evaluate(bench, engine.tokenizer, engine.new_index, lambda t, e: engine.query(t, e), top=top)
    if run is not None:
        write_trec_run(run, result.runs)
    typer.echo(format_table(result))
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its start-up chatter is not the user's business
    app()


if __name__ == "__main__":
    main()
