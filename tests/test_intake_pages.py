"""Data in from the pages (issue 23), through FastAPI's TestClient on a real SQLite file: the 新建需求
form, 保存到收件箱 from the match page, the uploads of a demands and an experts workbook (a dry
run, then 确认导入, by the import of `matcher import`), an expert's record corrected, a merge undone;
and the refusals: each says why in Chinese and writes nothing."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from api import create_app
from matcher.accounts import Accounts
from matcher.batch import BatchOptions, run_batch
from matcher.config import Settings
from matcher.engine import Engine
from matcher.intake import Intake
from matcher.ranking.filters import Filters

from .conftest import PASSWORD, THERMOS, copy_db, csrf_of, demo_template, english_words, sign_in, visible_text

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    db = demo_template(tmp_path_factory.mktemp("intake"), tokenizer)
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    accounts = Accounts(engine.store, engine.settings)
    accounts.add_user("lihua", PASSWORD, "staff")
    accounts.add_user("admin1", PASSWORD, "admin")
    engine.close()
    return db


def client_for(db: Path, tokenizer, **settings: object) -> TestClient:
    s = Settings(db=db, api_keys=("intake-pages-key-7c1f0e9a3b5d2468",), **settings)
    engine = Engine(s, tokenizer=tokenizer)
    client = TestClient(create_app(s, engine=engine), base_url="http://testserver")
    client.engine = engine  # type: ignore[attr-defined]
    return client


@pytest.fixture()
def app_client(tmp_path: Path, template: Path, tokenizer) -> TestClient:
    with client_for(copy_db(template, tmp_path), tokenizer) as c:
        yield c
    c.engine.close()


def workbook(header: list[str], rows: list[list[object]]) -> bytes:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def audit_actions(client: TestClient) -> list[str]:
    entries, _ = client.engine.store.list_audit(limit=1000)
    return [a.action for a in reversed(entries)]


def snapshot(client: TestClient) -> tuple[int, int, int, int]:
    store = client.engine.store
    return (store.count_demands(), store.count_experts(), len(store.list_audit(limit=10_000)[0]),
            len(store.list_merges()))


def staged_files(client: TestClient) -> list[Path]:
    folder = Path(f"{client.engine.store.path}.uploads")
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def page_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


# -- 新建需求 ------------------------------------------------------------------------------------------
def test_a_demand_made_by_the_form_is_stored_new_audited_and_ranked_live(app_client: TestClient) -> None:
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/demands/new").text)
    res = app_client.post(
        "/demands/new",
        data={
            "csrf_token": csrf,
            "enterprise": "永康市恒创杯业有限公司",
            "contact": "王经理 13800000000",
            "region": "浙江省金华市永康市",
            "industry": "保温杯",
            "title": "保温杯真空层激光焊接合格率低",
            "keywords": "激光焊接、气孔",
            "description": THERMOS,
            "deadline": "2026-12-31",
        },
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    demand_id = res.headers["location"].split("/demands/")[1].split("?")[0]
    demand = app_client.engine.store.get_demand(demand_id)
    assert (
        demand.status == "new" and demand.deadline == "2026-12-31" and demand.contact == "王经理 13800000000"
    )
    assert demand.keywords == ("激光焊接", "气孔") and demand.description == THERMOS
    assert audit_actions(app_client)[-1] == "demand.create"
    page = app_client.get(res.headers["location"])
    assert "需求已保存到收件箱" in page.text and 'data-source="live"' in page.text
    assert "王经理 13800000000" in page.text and "2026-12-31" in page.text
    # the inbox says why it has no list yet, instead of a bare dash
    inbox = app_client.get("/demands?status=new").text
    assert f'data-demand="{demand_id}"' in inbox and "待批处理推荐" in inbox


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"title": "", "description": "  "}, "需求描述：为空（需求名称也为空）"),
        (
            {"title": "焊接", "deadline": "2026-11-31"},
            "截止日期：「2026-11-31」不是有效日期：2026 年 11 月没有 31 日",
        ),
        ({"title": "焊接", "deadline": "31/12/2026"}, "截止日期：「31/12/2026」不是日期"),
        ({"title": "焊接", "description": "焊" * 20_001}, "超过上限 20,000 字"),
        ({"title": "焊" * 501}, "需求名称最多 500 字"),
    ],
)
def test_the_form_refuses_in_chinese_keeps_what_was_typed_and_writes_nothing(
        app_client: TestClient, fields: dict[str, str], said: str) -> None:
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/demands/new").text)
    before = snapshot(app_client)
    res = app_client.post("/demands/new", data={"csrf_token": csrf, "enterprise": "某某公司", **fields})
    assert res.status_code == 422 and said in res.text
    assert 'value="某某公司"' in res.text  # nothing typed is lost
    assert snapshot(app_client) == before


# -- 保存到收件箱 ----------------------------------------------------------------------------------------
def test_save_stores_the_demand_its_term_edits_and_the_list_the_page_showed(app_client: TestClient) -> None:
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/").text)
    engine = app_client.engine
    shown = engine.analyse(THERMOS, 10, Filters(), exclude_terms=["保温杯"]).matches  # what the page showed
    res = app_client.post("/demands/save", data={
        "csrf_token": csrf, "text": THERMOS, "top_k": "10", "filter_region": "", "filter_title": "",
        "exclude_terms": json.dumps(["保温杯"]), "extra_terms": "[]", "enterprise": "永康市恒创杯业有限公司"},
        follow_redirects=False)
    assert res.status_code == 303, res.text
    demand_id = res.headers["location"].split("/demands/")[1].split("?")[0]
    demand = engine.store.get_demand(demand_id)
    assert (
        demand.exclude_terms == ("保温杯",)
        and demand.status == "matched"
        and demand.title == THERMOS[:30] + "…"
    )
    stored = engine.store.last_recommendations(demand_id)
    assert stored.source == "live" and stored.saved_by == "staff:lihua"
    assert [(m.expert_id, m.rank) for m in stored.matches] == [(m.expert.id, m.rank) for m in shown]
    entry = engine.store.list_audit(action="demand.save")[0][0]
    assert entry.detail["exclude_terms"] == ["保温杯"] and entry.detail["experts"] == [
        m.expert.id for m in shown
    ]
    page = app_client.get(f"/demands/{demand_id}").text
    assert 'data-source="saved"' in page and "排除的词：「保温杯」" in page
    assert re.findall(r'<tr data-expert="([^"]+)"', page) == [m.expert.id for m in shown]
    top3 = app_client.get("/demands?status=matched").text
    row = top3.split(f'data-demand="{demand_id}"')[1].split("</tr>")[0]
    assert [m.expert.name for m in shown[:3]] == re.findall(r'<a href="/experts/[^"]+">([^<]+)</a>', row)
    # the saved list counts as recommended: the nightly batch leaves the demand alone
    run = run_batch(engine, BatchOptions(run_key="after-save")).run
    assert demand_id not in {o.demand_id for o in engine.store.list_batch_outcomes(run.id)}
    assert engine.store.last_recommendations(demand_id).source == "live"


def _save(client: TestClient, shown: list[str]) -> tuple[str, str]:
    res = client.post("/demands/save", data={
        "csrf_token": csrf_of(client.get("/").text), "text": THERMOS, "top_k": "10",
        "exclude_terms": "[]", "extra_terms": "[]", "shown": json.dumps(shown)}, follow_redirects=False)
    assert res.status_code == 303, res.text
    location = res.headers["location"]
    return location.split("/demands/")[1].split("?")[0], location


def test_save_keeps_the_list_the_page_showed_when_the_library_changed_in_between(
        app_client: TestClient) -> None:
    """CI's staff day once stored another 5th expert than the page had shown: the library changed
    between the match and the save. The order staff saw is kept while the ranking still gives each
    expert listed; otherwise the ranking's own list is stored and the page says the list changed."""
    sign_in(app_client)
    engine = app_client.engine
    shown = [m.expert.id for m in engine.analyse(THERMOS, 10).matches]
    from matcher.models import Expert

    engine.add_experts([Expert(id="e-new-weld", name="新来的焊接专家", title="高级工程师",
                               research_fields=("不锈钢保温杯激光焊接", "真空层焊接工艺", "焊接合格率"))])
    now = [m.expert.id for m in engine.analyse(THERMOS, 10).matches]
    assert "e-new-weld" in now and now != shown  # the ranking moved after the page showed its list
    demand_id, location = _save(app_client, shown)
    assert "done=saved:" in location
    stored = engine.store.last_recommendations(demand_id)
    assert [m.expert_id for m in stored.matches] == shown and [m.rank for m in stored.matches] == list(
        range(1, len(shown) + 1))
    assert "推荐名单保存到收件箱" in visible_text(app_client.get(location).text)

    # an expert listed that the ranking no longer gives (deleted since): the ranking's own list, said so
    engine.delete_expert(shown[1])
    demand_id, location = _save(app_client, shown)
    assert "done=saved-updated:" in location
    stored = engine.store.last_recommendations(demand_id)
    assert [m.expert_id for m in stored.matches] == [m.expert.id for m in engine.analyse(THERMOS, 10).matches]
    assert shown[1] not in [m.expert_id for m in stored.matches]
    assert "与刚才页面上的名单略有不同" in visible_text(app_client.get(location).text)
    entry = engine.store.list_audit(action="demand.save")[0][0]
    assert entry.detail["shown"] == shown
    # a browser cannot store an expert the ranking does not give, nor list one twice
    for forged in (["e-unknown"] + shown[1:], [shown[0], shown[0]]):
        demand_id, location = _save(app_client, forged)
        assert "done=saved-updated:" in location
        assert "e-unknown" not in [m.expert_id for m in engine.store.last_recommendations(demand_id).matches]
    res = app_client.post("/demands/save", data={"csrf_token": csrf_of(app_client.get("/").text),
                                                 "text": THERMOS, "shown": "{not json"})
    assert res.status_code == 422 and "页面列出的专家格式有误" in res.text


def test_a_stored_demands_term_edits_act_on_every_ranking_of_it(app_client: TestClient) -> None:
    engine = app_client.engine
    intake = Intake(engine)
    from matcher.intake import DemandForm

    plain = intake.build_demand(DemandForm(description=THERMOS))
    edited = intake.build_demand(DemandForm(description=THERMOS), exclude_terms=["激光焊接", "焊接"],
                                 extra_terms=["真空钎焊"])
    assert [m.expert.id for m in engine.match_demand(plain)] == [m.expert.id for m in engine.match(THERMOS)]
    reference = engine.analyse(
        THERMOS, 10, exclude_terms=["激光焊接", "焊接"], extra_terms=["真空钎焊"]
    ).matches
    assert [m.expert.id for m in engine.match_demand(edited)] == [m.expert.id for m in reference]
    assert [m.expert.id for m in engine.match_demand(edited)] != [m.expert.id for m in engine.match(THERMOS)]


def test_save_needs_a_signed_in_member_and_refuses_bad_terms_in_chinese(app_client: TestClient) -> None:
    res = app_client.post("/demands/save", data={"text": THERMOS}, follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/login")
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/").text)
    before = snapshot(app_client)
    res = app_client.post(
        "/demands/save", data={"csrf_token": csrf, "text": THERMOS, "exclude_terms": "{not json"}
    )
    assert res.status_code == 422 and "排除或补充的词格式有误" in res.text
    res = app_client.post("/demands/save", data={"csrf_token": csrf, "text": "焊" * 20_001})
    assert res.status_code == 422 and "超过上限 20,000 字" in res.text
    assert snapshot(app_client) == before


# -- 不合适: renumbered, never pre-ticked ----------------------------------------------------------------
def test_an_unsuitable_expert_leaves_the_list_which_is_renumbered_and_is_never_ticked(
    app_client: TestClient,
) -> None:
    engine = app_client.engine
    run_batch(engine, BatchOptions(run_key="n1"))
    sign_in(app_client)
    page = app_client.get("/demands/Q0001").text
    first = re.findall(r'<tr data-expert="([^"]+)"', page)
    assert len(first) == 10
    csrf = csrf_of(page)
    res = app_client.post("/demands/Q0001/feedback", data={"csrf_token": csrf, "expert_id": first[0],
                                                          "verdict": "unsuitable"})
    assert res.status_code == 200
    page = res.text
    assert re.findall(r'<tr data-expert="([^"]+)"', page) == first[1:]
    ranks = re.findall(r'<tr data-expert="[^"]+">\s*<td class="num">(\d+)</td>', page)
    assert ranks == [str(i) for i in range(1, 10)]  # 1 to 9, not 2 to 10
    outcome_form = page.split('id="outcome-experts"')[1].split("</fieldset>")[0]
    assert first[0] not in outcome_form and "checked" not in outcome_form
    # once an expert agreed, the outcome form ticks them (and still not the unsuitable one)
    app_client.post(
        "/demands/Q0001/feedback", data={"csrf_token": csrf, "expert_id": first[1], "verdict": "accepted"}
    )
    outcome_form = (
        app_client.get("/demands/Q0001").text.split('id="outcome-experts"')[1].split("</fieldset>")[0]
    )
    assert re.findall(r'value="([^"]+)" checked', outcome_form) == [first[1]] and first[0] not in outcome_form


# -- uploads: a dry run, then 确认导入 -------------------------------------------------------------------
DEMAND_HEADER = [
    "需求编号",
    "企业名称",
    "需求名称",
    "需求描述",
    "所在地区",
    "所属行业",
    "提交日期",
    "截止日期",
]


def test_a_demands_workbook_is_checked_then_imported_without_its_bad_row(app_client: TestClient) -> None:
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/demands").text)
    data = workbook(
        DEMAND_HEADER,
        [
            [
                "U001",
                "甲公司",
                "不锈钢焊缝发黑",
                "焊缝发黑，想改善外观",
                "浙江省金华市",
                "五金",
                "2026-12-01",
                "",
            ],
            [
                "U002",
                "乙公司",
                "电池包液冷",
                "液冷板流道设计",
                "浙江省金华市",
                "新能源电池",
                "2026-11-31",
                "",
            ],
            [
                "U003",
                "丙公司",
                "酸奶发酵",
                "发酵时间长",
                "江苏省无锡市",
                "食品",
                "2026/12/02",
                "2027年1月5日",
            ],
        ],
    )
    before = snapshot(app_client)
    res = app_client.post("/demands/upload", data={"csrf_token": csrf},
                          files={"file": ("2026年12月需求.xlsx", data, XLSX)})
    assert res.status_code == 200, res.text
    assert snapshot(app_client) == before  # a dry run writes nothing
    text = page_text(res.text)
    assert "可以导入 2 行" in text and "1 行有误，不会导入" in text
    error = page_text(res.text.split('id="row-errors"')[1].split("</table>")[0])
    assert "第 3 行 提交日期 「2026-11-31」不是有效日期：2026 年 11 月没有 31 日" in error
    preview = re.findall(
        r'<tr class="action-(\w+)" data-row="(\d+)"><td class="num">第 \d+ 行</td><td>([^<]+)</td>', res.text
    )
    assert preview == [("insert", "2", "U001"), ("insert", "4", "U003")]
    token = re.search(r'action="/uploads/([0-9a-f]{32})/confirm"', res.text).group(1)
    assert len(staged_files(app_client)) == 1
    done = app_client.post(f"/uploads/{token}/confirm", data={"csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/demands?done=imported")
    store = app_client.engine.store
    assert (
        store.get_demand("U003").created_at == "2026-12-02"
        and store.get_demand("U003").deadline == "2027-01-05"
    )
    assert store.count_demands() == before[0] + 2 and not store.get_demands(["U002"])
    entry = store.list_audit(action="import.demands")[0][0]
    assert entry.target == "file:2026年12月需求.xlsx" and (
        entry.detail["inserted"],
        entry.detail["rejected"],
    ) == (2, 1)
    assert "导入完成：新增 2 条" in app_client.get(done.headers["location"]).text
    assert staged_files(app_client) == []  # the staged file is gone once imported
    again = app_client.post(f"/uploads/{token}/confirm", data={"csrf_token": csrf})
    assert again.status_code == 404 and "找不到待导入的文件" in again.text


def test_the_page_and_the_command_line_import_a_file_the_same_way(
    app_client: TestClient, tmp_path: Path
) -> None:
    """One code path: the page's dry run reports what `Engine.import_demands(dry_run=True)` reports."""
    data = workbook(
        DEMAND_HEADER,
        [
            ["V1", "甲", "焊接", "焊缝气孔", "", "", "2026-11-31", ""],
            ["V2", "乙", "", "", "", "", "", ""],
            ["Q0001", "改名", "焊接", "x", "", "", "", ""],
        ],
    )
    (tmp_path / "d.xlsx").write_bytes(data)
    direct = app_client.engine.import_demands(tmp_path / "d.xlsx", skip_invalid=True, dry_run=True)
    intake = Intake(app_client.engine)
    staged = intake.stage("demands", "d.xlsx", data)
    via_page = intake.preview(staged.token)
    assert [str(e) for e in via_page.errors] == [str(e) for e in direct.errors]
    assert via_page.preview == direct.preview and via_page.preview[0].action == "update"
    assert (via_page.inserted, via_page.updated, via_page.rejected) == (direct.inserted, direct.updated, 2)


EXPERT_HEADER = ["姓名", "工作单位", "研究方向", "联系电话", "职称"]


def test_an_experts_workbook_shows_its_merge_and_the_merge_can_be_undone(app_client: TestClient) -> None:
    sign_in(app_client)
    csrf = csrf_of(app_client.get("/experts").text)
    x1 = app_client.engine.store.get_expert("X0001")
    data = workbook(EXPERT_HEADER, [
        [x1.name, x1.institution, "新方向：超快激光微加工", x1.contact.phone or "13800009999", "教授"],
        ["钱新", "宁波大学机械学院", "机器人柔性抓取", "13911112222", "副教授"],
    ])
    res = app_client.post(
        "/experts/upload", data={"csrf_token": csrf}, files={"file": ("专家.xlsx", data, XLSX)}
    )
    assert res.status_code == 200, res.text
    merges = page_text(res.text.split('id="merges"')[1].split("</table>")[0])
    assert f"第 2 行 {x1.name}" in merges and "X0001" in merges
    assert re.findall(r'<tr class="action-(\w+)" data-row="(\d+)"', res.text) == [
        ("merge", "2"),
        ("insert", "3"),
    ]
    token = re.search(r'action="/uploads/([0-9a-f]{32})/confirm"', res.text).group(1)
    app_client.post(f"/uploads/{token}/confirm", data={"csrf_token": csrf})
    merged = app_client.engine.store.get_expert("X0001")
    assert "新方向：超快激光微加工" in merged.research_fields
    # the merge reaches the ranking at once, and the page lists it with 撤销合并
    assert app_client.engine.match("超快激光微加工", 1)[0].expert.id == "X0001"
    library = app_client.get("/experts").text
    merge_id = re.search(r'action="/merges/(\d+)/undo"', library).group(1)
    res = app_client.post(f"/merges/{merge_id}/undo", data={"csrf_token": csrf}, follow_redirects=False)
    assert res.status_code == 303
    assert app_client.engine.store.get_expert("X0001") == x1
    assert audit_actions(app_client)[-2:] == ["import.experts", "merge.undo"]
    assert "已于" in app_client.get("/experts").text.split(f'data-merge="{merge_id}"')[1].split("</tr>")[0]


def zip_bomb() -> bytes:
    """A small .xlsx whose one sheet unpacks to 40 MB (the same cell over and over)."""
    row = "<row><c t=\"inlineStr\"><is><t>" + "焊" * 200 + "</t></is></c></row>"
    sheet = ('<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             "<sheetData>" + row * 70_000 + "</sheetData></worksheet>")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    return out.getvalue()


@pytest.mark.parametrize(("name", "data", "status", "said"), [
    ("大.xlsx", "LARGE", 413, "超过导入上限 2,000 字节"),
    ("更大.xlsx", "LARGER", 413, "文件超过导入上限"),  # refused before the app reads it
    ("炸弹.xlsx", "BOMB", 422, "解压后有"),
    ("假的.xlsx", "NOT", 422, "不是有效的 Excel 工作簿"),
    ("照片.png", "PNG", 422, "不支持的文件类型"),
    ("空.csv", "", 422, "文件是空的"),
], ids=["over-the-limit", "far-over-the-limit", "zip-bomb", "not-a-workbook", "not-a-table", "empty"])
@pytest.mark.parametrize("kind", ["demands", "experts"])
def test_uploads_refuse_a_large_file_a_zip_bomb_and_a_non_workbook_in_chinese_and_write_nothing(
        tmp_path: Path, template: Path, tokenizer, kind: str, name: str, data: str, status: int,
        said: str) -> None:
    limits = {
        "max_import_unpacked_bytes": 5_000_000,
        **({"max_import_bytes": 2_000} if "LARGE" in data else {}),
    }
    body = {"LARGE": b"PK" + b"\0" * 3000, "LARGER": b"PK" + b"\0" * 100_000, "BOMB": zip_bomb(),
            "NOT": b"this is not a workbook at all" * 10, "PNG": b"\x89PNG\r\n" + b"\0" * 100, "": b""}[data]
    with client_for(copy_db(template, tmp_path), tokenizer, **limits) as client:
        sign_in(client)
        csrf = csrf_of(client.get("/demands").text)
        before = snapshot(client)
        res = client.post(f"/{kind}/upload", data={"csrf_token": csrf}, files={"file": (name, body, XLSX)})
        assert res.status_code == status and said in res.text, res.text[:500]
        assert res.headers["content-type"].startswith("text/html")
        assert english_words(visible_text(res.text), {"lihua", "png"}) == [], visible_text(res.text)
        assert snapshot(client) == before and staged_files(client) == []
    client.engine.close()


# -- an expert's record, corrected on the page ----------------------------------------------------
def test_an_experts_fields_and_a_new_paper_reach_the_ranking_at_once(app_client: TestClient) -> None:
    sign_in(app_client)
    page = app_client.get("/experts/X0002").text
    csrf = csrf_of(page)
    x2 = app_client.engine.store.get_expert("X0002")
    assert app_client.engine.match("石墨烯导热膜卷对卷涂布", 1)[0].expert.id != "X0002"
    res = app_client.post("/experts/X0002/documents", data={
        "csrf_token": csrf, "kind": "patent", "title": "一种石墨烯导热膜的卷对卷涂布装置", "year": "2025",
        "keywords": "石墨烯、导热膜、卷对卷涂布"}, follow_redirects=False)
    assert res.status_code == 303 and "done=document" in res.headers["location"]
    assert app_client.engine.match("石墨烯导热膜卷对卷涂布", 1)[0].expert.id == "X0002"
    res = app_client.post(
        "/experts/X0002/edit",
        data={
            "csrf_token": csrf,
            "name": x2.name,
            "title": "研究员",
            "institution": x2.institution,
            "region": x2.region,
            "research_fields": "、".join(x2.research_fields) + "、柔性电子封装",
            "tags": "、".join(x2.tags),
            "bio": x2.bio,
        },
        follow_redirects=False,
    )
    assert "done=edited" in res.headers["location"]
    after = app_client.engine.store.get_expert("X0002")
    assert (
        after.title == "研究员"
        and after.research_fields[-1] == "柔性电子封装"
        and len(after.documents) == len(x2.documents) + 1
    )
    entry = app_client.engine.store.list_audit(action="expert.update")[0][0]
    assert entry.detail["fields"] == ["title", "research_fields"]
    assert "档案已保存" in app_client.get(res.headers["location"]).text
    before = snapshot(app_client)
    for data, said in (({"name": ""}, "姓名"), ({"kind": "patent", "title": ""}, "题目不能为空"),
                       ({"kind": "patent", "title": "某专利", "year": "20x5"}, "年份「20x5」无效")):
        path = "/experts/X0002/edit" if "name" in data else "/experts/X0002/documents"
        res = app_client.post(path, data={"csrf_token": csrf, **data})
        assert res.status_code == 422 and said in res.text
    assert snapshot(app_client) == before
