"""The facade on the demo corpus: golden rankings, conflict rules, index freshness, bad input."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine
from matcher.errors import InputError
from matcher.rank import Filters
from matcher.text import ChineseTokenizer, normalize

from .conftest import THERMOS, make_settings

# Demo experts written about stainless laser welding / vacuum insulation of thermos cups
# (corpora/README.md lists them); the distractors only mention 焊接 or 不锈钢 in passing.
WELDING_VACUUM = {"X0001", "X0002", "X0003", "X0004", "X0005", "X0006", "X0007"}


def demands() -> dict[str, dict]:
    lines = (DEFAULT_CORPORA / "demo" / "demands.jsonl").read_text(encoding="utf-8").splitlines()
    return {d["id"]: d for d in map(json.loads, lines)}


def test_thermos_demand_finds_the_welding_and_vacuum_experts(demo_engine: Engine) -> None:
    matches = demo_engine.match(THERMOS, top_k=10)
    top5 = [m.expert_id for m in matches[:5]]
    assert set(top5) <= WELDING_VACUUM, top5
    for m in matches[:3]:
        assert {"激光焊接", "焊接"} & set(m.explanation.terms), m.explanation.terms
        assert m.explanation.evidence
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert [m.rank for m in matches] == list(range(1, len(matches) + 1))


def test_explanations_name_real_evidence(demo_engine: Engine) -> None:
    q_tokens = set(demo_engine.tokenizer.tokenize(THERMOS))
    u = demo_engine.understand(THERMOS)
    added = {t for e in u.expanded for t in demo_engine.tokenizer.tokenize(e.term)}
    for m in demo_engine.match(THERMOS, top_k=5):
        said = q_tokens | {t for x in q_tokens for t in demo_engine.synonyms.equivalents(x)}
        for term in m.explanation.terms:
            # the demand's word, a synonym, a concept the understanding stage added (and says where
            # from), or a character string the demand contains (字面相近)
            assert term in said or term in m.explanation.expanded or term in THERMOS, term
        for term, origin in m.explanation.expanded.items():
            assert term in added and origin in THERMOS
        for ev in m.explanation.evidence:
            assert ev.field in {"research_fields", "bio", "paper", "patent", "project", "achievement"}
            assert ev.terms or ev.match == "dense"
            full = demo_engine.get_expert(m.expert.id)  # a match carries the card, without documents
            assert m.expert.documents == () and full.documents
            texts = [*full.research_fields, full.bio, *(d.title for d in full.documents)]
            assert any(ev.text in t or t in ev.text for t in texts if t)


@pytest.mark.parametrize(
    "text,expected_any",
    [
        ("锂电池包BMS均衡策略不成熟，电芯一致性差", "bms"),
        ("家蚕养殖病害多，蚕茧产量下降", "蚕"),
        ("智能门锁指纹识别误识率高", "指纹识别"),
    ],
)
def test_other_industries_rank_experts_who_share_the_terms(demo_engine: Engine, text, expected_any) -> None:
    top = demo_engine.match(text, top_k=3)
    assert top
    assert any(expected_any in normalize(t) for t in top[0].explanation.terms), top[0].explanation.terms


def test_conflict_of_interest_rules(demo_engine: Engine) -> None:
    d = demands()
    store = demo_engine.store
    q2 = store.get_demand("Q0002")
    assert "X0003" not in [m.expert_id for m in demo_engine.match_demand(q2, top_k=20)]
    assert "X0003" in [m.expert_id for m in demo_engine.match(q2.text, top_k=20)], "the rule, not the text, excludes"
    q19 = store.get_demand("Q0019")
    assert d["Q0019"]["enterprise"] == demo_engine.get_expert("X0032").institution
    assert "X0032" not in [m.expert_id for m in demo_engine.match_demand(q19, top_k=20)]
    q26 = store.get_demand("Q0026")
    assert "X0041" not in [m.expert_id for m in demo_engine.match_demand(q26, top_k=20)]
    reasons = dict((e.id, why) for e, why in Engine.conflicts(q19, list(store.iter_experts())))
    assert reasons["X0032"] == f"回避：就职于提出需求的企业（{d['Q0019']['enterprise']}）"


def test_filters(demo_engine: Engine) -> None:
    academicians = demo_engine.match("激光焊接 不锈钢", top_k=10, filters=Filters(title="院士"))
    assert academicians and all("院士" in m.expert.title for m in academicians)
    hz = demo_engine.match("激光焊接 不锈钢", top_k=10, filters=Filters(region="杭州"))
    assert hz and all("杭州" in m.expert.region for m in hz)
    first = demo_engine.match(THERMOS, top_k=1)[0].expert
    rest = demo_engine.match(THERMOS, top_k=10, filters=Filters(exclude_institutions=(first.institution,)))
    assert first.institution not in {m.expert.institution for m in rest}


@pytest.mark.parametrize("text", ["", "   \n\t", "x" * 20_001])
def test_bad_text(demo_engine: Engine, text: str) -> None:
    with pytest.raises(InputError):
        demo_engine.match(text)


def test_text_without_known_terms_gives_no_matches(demo_engine: Engine) -> None:
    assert demo_engine.match("，。！？") == []
    with pytest.raises(InputError):
        demo_engine.match(THERMOS, top_k=0)


def test_saved_index_is_reused_and_refreshed(tmp_path, tokenizer) -> None:
    settings = make_settings(tmp_path)
    with Engine(settings, tokenizer=tokenizer) as e1:
        e1.load_demo()
        before = [m.expert_id for m in e1.match(THERMOS)]
    meta = tmp_path / "matcher.db.index" / "meta.json"
    stamp = meta.stat().st_mtime_ns
    with Engine(settings, tokenizer=tokenizer) as e2:
        assert [m.expert_id for m in e2.match(THERMOS)] == before
        assert meta.stat().st_mtime_ns == stamp, "a fresh saved index must be loaded, not rebuilt"
        e2.add_experts([e2.get_expert("X0001").__class__.from_dict(
            {"id": "NEW1", "name": "新专家", "research_fields": ["保温杯真空层激光焊接", "激光焊接"],
             "documents": [{"kind": "paper", "title": "不锈钢保温杯真空层激光焊接合格率提升", "keywords": ["激光焊接", "保温杯"]}]}
        )])
        assert "NEW1" in [m.expert_id for m in e2.match(THERMOS)]


def test_damaged_index_is_rebuilt(tmp_path, tokenizer) -> None:
    settings = make_settings(tmp_path)
    with Engine(settings, tokenizer=tokenizer) as e1:
        e1.load_demo()
        expected = [m.expert_id for m in e1.match(THERMOS)]
    (tmp_path / "matcher.db.index" / "units.npz").write_bytes(b"garbage")
    with Engine(settings, tokenizer=tokenizer) as e2:
        assert [m.expert_id for m in e2.match(THERMOS)] == expected


def test_dictionary_change_triggers_rebuild(tmp_path) -> None:
    corpora = tmp_path / "corpora"
    shutil.copytree(DEFAULT_CORPORA, corpora)
    settings = make_settings(tmp_path, corpora_dir=corpora)
    with Engine(settings) as e1:
        e1.load_demo()
        e1.match(THERMOS)
    meta = tmp_path / "matcher.db.index" / "meta.json"
    fp = json.loads(meta.read_text(encoding="utf-8"))["fingerprint"]
    with (corpora / "domain_dict.txt").open("a", encoding="utf-8") as f:
        f.write("杯体旋压减薄 3000 nz\n")
    with Engine(settings) as e2:
        e2.match(THERMOS)
    assert json.loads(meta.read_text(encoding="utf-8"))["fingerprint"] != fp


def test_a_single_expert_is_found(engine: Engine) -> None:
    from matcher.models import Expert

    engine.upsert_experts([Expert.from_dict({"id": "S1", "name": "独", "research_fields": ["窑变釉", "陶瓷釉料"]})])
    (m,) = engine.match("窑变釉呈色不稳定")
    assert m.expert_id == "S1" and m.score > 0 and "窑变" in m.explanation.terms


def test_every_listed_expert_is_explained_by_what_matched(demo_engine: Engine) -> None:
    # No word mask: an expert may be listed without a shared word, but then its evidence says
    # honestly what matched: shared character strings (字面相近) or documents near in meaning (语义相近).
    for text in ("窑变釉呈色不稳定", THERMOS, "锂电池BMS", "电池管理做得不好，电芯老是不均衡"):
        norm = demo_engine.tokenizer.tokenize(text)
        for m in demo_engine.match(text, top_k=20):
            ev = m.explanation.evidence
            assert ev, (text, m.expert_id)
            for e in ev:
                if e.match == "chars":
                    # shared with the demand, or with a concept added for one of its phrases
                    assert e.terms and all(len(t) >= 2 and (normalize(t) in normalize(text)
                                                            or m.explanation.expanded[t] in text)
                                           for t in e.terms)
                elif e.match == "words":  # shown as written (BMS), matched folded
                    assert {normalize(t) for t in e.terms} <= set(norm) | {
                        normalize(t) for t in m.explanation.expanded} | \
                        {s for t in norm for s in demo_engine.synonyms.equivalents(t)}
                else:
                    assert e.match == "dense" and not e.terms


def test_a_text_that_shares_nothing_with_the_library_lists_nobody(demo_engine: Engine) -> None:
    # the dense and LSA neighbourhoods of any text are never empty; without one shared word or
    # character string they are noise, and nobody is listed
    assert demo_engine.match("今天天气晴朗，我们去公园散步吧") == []


def test_bare_small_numbers_are_not_terms(tokenizer) -> None:
    toks = tokenizer.tokenize("4号线 5台 304不锈钢 2019年 12")
    assert "4" not in toks and "5" not in toks and "12" not in toks
    assert "304不锈钢" in toks and "2019" in toks


def test_a_write_rolled_back_by_the_callers_transaction_never_reaches_the_index(tmp_path, tokenizer) -> None:
    """The API writes an expert and its audit entry in one transaction; when that rolls back (a
    failed audit, a full disk, a lost lock), the index must not keep the expert. Before, it did,
    and the next write by anyone (here another process's import, through the store) moved the
    store's change counter to the very value the index already claimed: the ghost stayed listed
    and the real write was never indexed."""
    from matcher.config import Settings
    from matcher.models import Expert

    from .conftest import copy_db, demo_template

    db = copy_db(demo_template(tmp_path / "t", tokenizer), tmp_path / "w")
    engine = Engine(Settings(db=db), tokenizer=tokenizer)
    try:
        engine.ensure_index()
        ghost = Expert.from_dict({"id": "G1", "name": "幽灵", "research_fields": ["蚕丝蛋白膜"]})
        with pytest.raises(RuntimeError), engine.store.transaction():
            engine.upsert_experts([ghost])
            assert "G1" not in {m.expert_id for m in engine.match("蚕丝蛋白膜", top_k=50)}, \
                "the index follows committed writes only"
            raise RuntimeError("the audit entry could not be written")
        other = Engine(Settings(db=db), tokenizer=tokenizer)
        try:
            real = Expert.from_dict({"id": "R1", "name": "真人", "research_fields": ["蚕丝蛋白膜"]})
            other.store.upsert_experts([real])
        finally:
            other.close()
        found = [m.expert_id for m in engine.match("蚕丝蛋白膜", top_k=50)]
        assert "R1" in found and "G1" not in found
        with engine.store.transaction():
            engine.upsert_experts([Expert.from_dict({"id": "R2", "name": "又一人",
                                                     "research_fields": ["蚕丝蛋白膜"]})])
        assert "R2" in {m.expert_id for m in engine.match("蚕丝蛋白膜", top_k=50)}, "followed at the commit"
        assert engine.ensure_index().index.n_experts == engine.store.count_experts()
    finally:
        engine.close()


def test_a_closed_engine_frees_its_index_at_once(tmp_path: Path, tokenizer: ChineseTokenizer) -> None:
    """The engine's parts point back to it weakly (`LiveIndex`): no reference cycle keeps a dropped
    engine's index (2 GB at 10,000 experts) until the next garbage collection."""
    e = Engine(make_settings(tmp_path), tokenizer=tokenizer)
    assert e.load_demo()
    e.match(THERMOS, top_k=3)
    index = weakref.ref(e.live.current().index)
    gc.disable()
    try:
        e.close()
        del e
        assert index() is None
    finally:
        gc.enable()


def test_matching_without_pruning_does_not_load_numba(tmp_path: Path) -> None:
    """numba (the `scale` extra, 40 MB of LLVM) is loaded only when MATCHER_TOPK_PRUNING is on."""
    probe = ("import sys\nfrom pathlib import Path\nfrom matcher.config import Settings\n"
             "from matcher.engine import Engine\n"
             f"e = Engine(Settings(db=Path({str(tmp_path / 'm.db')!r}), encoder='none', weight_dense=0.0))\n"
             "assert e.load_demo()\n"
             f"assert e.match({THERMOS!r}, top_k=3)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
