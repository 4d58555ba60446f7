"""Bounded imports and text that is not text (issue 27, findings 5 and 6): every limit refuses with a
Chinese message naming the limit (and the row, for a cell), writes nothing, and never shows a
traceback; a lone surrogate is a 422, never a 500."""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import create_app
from matcher.cli import app as cli_app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.errors import DataImportError, InputError

from .conftest import copy_db, demo_template

KEY = "bounds-admin-key-8c2f0e6a4d19b7"
runner = CliRunner()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    return demo_template(tmp_path_factory.mktemp("bounds"), tokenizer)


def engine_at(tmp_path: Path, template: Path, tokenizer, **kw: object) -> Engine:
    return Engine(Settings(db=copy_db(template, tmp_path), api_keys=(KEY,), **kw), tokenizer=tokenizer)


def workbook(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def counts(engine: Engine) -> tuple[int, int]:
    return engine.store.count_experts(), engine.store.count_demands()


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, template, tokenizer) -> None:
    engine = engine_at(tmp_path, template, tokenizer, max_import_bytes=2_000)
    try:
        before = counts(engine)
        path = tmp_path / "big.jsonl"
        path.write_text("\n".join(json.dumps({"name": f"专家{i}", "research_fields": ["焊接"]},
                                             ensure_ascii=False)
                                  for i in range(200)), encoding="utf-8")
        with pytest.raises(DataImportError, match="超过导入上限 2,000 字节") as err:
            engine.import_experts(path)
        assert "MATCHER_MAX_IMPORT_BYTES" in err.value.message
        assert counts(engine) == before
    finally:
        engine.close()


def test_a_zip_bomb_is_refused_by_its_unpacked_size(tmp_path, template, tokenizer) -> None:
    """A small workbook whose sheet unpacks to far more than the limit (here 40 MB of one repeated
    row in 60 KB): refused from the zip's directory, before openpyxl reads a byte of it."""
    engine = engine_at(tmp_path, template, tokenizer, max_import_unpacked_bytes=5_000_000)
    try:
        real = workbook(tmp_path / "real.xlsx", ["姓名", "研究方向"], [["甲", "焊接"]])
        bomb = tmp_path / "bomb.xlsx"
        row = '<row><c t="inlineStr"><is><t>焊接</t></is></c></row>'.encode()
        with zipfile.ZipFile(real) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename.startswith("xl/worksheets/sheet"):
                    data = data.replace(b"</sheetData>", row * 800_000 + b"</sheetData>")
                dst.writestr(item, data)
        assert bomb.stat().st_size < 200_000
        before = counts(engine)
        with pytest.raises(DataImportError, match="解压后有 .*超过上限 5 MB"):
            engine.import_experts(bomb)
        assert counts(engine) == before
    finally:
        engine.close()


@pytest.mark.parametrize("content", [b"PK\x03\x04 not really a zip", "姓名,研究方向\n甲,焊接\n".encode()])
def test_a_file_that_is_not_a_workbook_says_so(tmp_path, template, tokenizer, content: bytes) -> None:
    engine = engine_at(tmp_path, template, tokenizer)
    try:
        path = tmp_path / "专家库.xlsx"
        path.write_bytes(content)
        with pytest.raises(DataImportError, match="不是有效的 Excel 工作簿"):
            engine.import_experts(path)
    finally:
        engine.close()


def test_an_oversized_cell_is_an_error_of_its_row_and_column(tmp_path, template, tokenizer) -> None:
    engine = engine_at(tmp_path, template, tokenizer, max_cell_chars=1_000)
    try:
        path = workbook(tmp_path / "e.xlsx", ["姓名", "研究方向", "简介"],
                        [["甲", "焊接", "短简介"], ["乙", "涂层", "长" * 5_000], ["丙", "轴承", ""]])
        before = counts(engine)
        with pytest.raises(DataImportError) as err:
            engine.import_experts(path)
        assert [(e.row, e.column) for e in err.value.errors] == [(3, "简介")]
        assert "5,000 字，超过单元格上限 1,000 字" in err.value.errors[0].message
        assert counts(engine) == before, "nothing written while a row is bad"
        report = engine.import_experts(path, skip_invalid=True)
        assert (report.inserted, report.rejected) == (2, 1)
    finally:
        engine.close()


def test_a_csv_cell_beyond_the_csv_modules_limit_is_no_traceback(tmp_path, template, tokenizer) -> None:
    """A cell over 131,072 characters ended in a bare csv.Error traceback."""
    db = copy_db(template, tmp_path)
    path = tmp_path / "e.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["姓名", "研究方向", "简介"])
        w.writerow(["甲", "焊接", "长" * 200_000])
        w.writerow(["乙", "涂层", "正常"])
    res = runner.invoke(cli_app, ["import", "experts", str(path), "--db", str(db)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "第2行" in res.output and "100,000" in res.output


def test_a_demand_over_the_apis_text_limit_is_refused_in_an_import_too(tmp_path, template, tokenizer) -> None:
    engine = engine_at(tmp_path, template, tokenizer, max_cell_chars=2_000_000)
    try:
        path = tmp_path / "d.jsonl"
        path.write_text(json.dumps({"id": "long", "title": "保温杯", "description": "焊" * 1_000_000},
                                   ensure_ascii=False) + "\n"
                        + json.dumps({"id": "ok", "title": "保温杯焊接漏气"}, ensure_ascii=False) + "\n",
                        encoding="utf-8")
        with pytest.raises(DataImportError) as err:
            engine.import_demands(path)
        assert [(e.row, e.column) for e in err.value.errors] == [(1, "description")]
        assert "超过上限 20,000 字" in err.value.errors[0].message
        assert engine.store.count_demands() == 56
    finally:
        engine.close()


def test_a_lone_surrogate_in_an_import_is_a_row_error(tmp_path, template, tokenizer) -> None:
    engine = engine_at(tmp_path, template, tokenizer)
    try:
        path = tmp_path / "e.jsonl"
        path.write_text('{"name": "甲", "research_fields": ["\\ud800焊接"]}\n'
                        '{"name": "乙", "research_fields": ["涂层"]}\n',
                        encoding="utf-8")
        with pytest.raises(DataImportError) as err:
            engine.import_experts(path)
        assert [e.row for e in err.value.errors] == [1] and "孤立的代理项" in err.value.errors[0].message
    finally:
        engine.close()


@pytest.fixture()
def client(tmp_path: Path, template: Path, tokenizer) -> Iterator[TestClient]:
    engine = engine_at(tmp_path, template, tokenizer)
    with TestClient(create_app(engine.settings, engine=engine), raise_server_exceptions=False) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c
    engine.close()


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/match", '{"text": "\\ud800 激光焊接"}'),
    ("/api/v1/match.xlsx", '{"text": "激光焊接 \\udfff"}'),
    ("/api/v1/team", '{"text": "激光焊接\\ud83d"}'),
    ("/api/v1/match", '{"text": "激光焊接", "filters": {"region": "\\ud800"}}'),
    ("/api/v1/demands", '{"title": "焊接", "keywords": ["\\udc00"]}'),
    ("/api/v1/experts", '{"name": "\\ud800", "research_fields": ["焊接"]}'),
])
def test_a_lone_surrogate_is_a_422_everywhere(client: TestClient, path: str, body: str) -> None:
    """`{"text": "\\ud800 激光焊接"}` made /match, /match.xlsx and /team answer 500 with no key."""
    before = counts(client.engine)
    res = client.post(path, content=body.encode(),
                      headers={"Content-Type": "application/json", "X-API-Key": KEY})
    assert res.status_code == 422, res.text
    assert "孤立的代理项" in res.json()["error"]["message"]
    assert counts(client.engine) == before
    # a proper pair (an emoji) is text like any other
    ok = client.post("/api/v1/match", content='{"text": "激光焊接 \\ud83d\\ude00"}'.encode(),
                     headers={"Content-Type": "application/json"})
    assert ok.status_code == 200


def test_the_library_refuses_a_lone_surrogate_too(tmp_path, template, tokenizer) -> None:
    engine = engine_at(tmp_path, template, tokenizer)
    try:
        with pytest.raises(InputError, match="孤立的代理项"):
            engine.match("\ud800 激光焊接")
    finally:
        engine.close()
