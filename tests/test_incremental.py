"""The incremental index: updates equal a full rebuild (lexical signals exactly, rankings within the
documented tolerance), are visible to `match` at once, and are saved as a delta beside the base."""

from __future__ import annotations

import json
import random
import shutil
import time

import bm25s
import numpy as np
import pytest

from matcher.config import DEFAULT_CORPORA
from matcher.engine import Engine, card
from matcher.errors import IndexStateError
from matcher.index import TermIndex
from matcher.models import Demand, Expert, expert_digest
from matcher.rank import ExpertIndex, Query
from matcher.store import Store

from .conftest import demo_demands, demo_experts, make_settings

DEMO = DEFAULT_CORPORA / "demo"
WORDS = ["焊接", "激光", "不锈钢", "保温杯", "真空", "电池", "bms", "plc", "sic", "蚕桑", "茶叶", "锂电池",
         "5g"]
LEXICAL = ("bm25", "profile", "fields", "chars", "prior")


def random_corpus(rng: random.Random, n: int, extra: tuple[str, ...] = ()) -> list[list[str]]:
    words = [*WORDS, *extra]
    return [[rng.choice(words) for _ in range(rng.randint(1, 25))] for _ in range(n)]


def query_of(demand: Demand, tokenizer) -> Query:
    return Query.build(demand.text, tokenizer, emphasis=" ".join([demand.title, *demand.keywords]))


def top_ids(index: ExpertIndex, scored, k: int = 10) -> list[str]:
    order = np.argsort(-scored.total, kind="stable")[:k]
    return [index.expert_ids_[i] for i in order if scored.total[i] > 0]


# -- TermIndex --------------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["bm25", "tfidf"])
def test_term_index_updates_equal_a_fresh_fit(weighting: str) -> None:
    rng = random.Random(7)
    first = random_corpus(rng, 80)
    added = random_corpus(rng, 12, extra=("新词", "石墨烯"))
    ix = TermIndex(weighting).fit(first)
    before = ix.score(["焊接", "激光"])
    up = ix.updated(add=added, remove=[3, 17, 40]).updated(remove=[85], add=[["石墨烯", "焊接"]])
    live = [d for i, d in enumerate([*first, *added, ["石墨烯", "焊接"]]) if i not in (3, 17, 40, 85)]
    fresh = TermIndex(weighting).fit(live)
    rows = np.flatnonzero(up.alive_)
    assert up.n_docs_ == fresh.n_docs_ == len(live) and up.avgdl_ == pytest.approx(fresh.avgdl_, rel=1e-12)
    for query in (["焊接"], ["石墨烯", "bms", "新词"], ["茶叶", "茶叶", "plc"], ["nowhere"]):
        got = up.score(query)
        assert np.allclose(got[rows], fresh.score(query), rtol=1e-5, atol=1e-7), query
        assert not got[~up.alive_].any(), "removed rows score nothing"
    # the old index is untouched (readers on other threads keep using it)
    assert np.array_equal(ix.score(["焊接", "激光"]), before)
    assert ix.n_rows_ == 80 and "石墨烯" not in ix.vocabulary_
    # compaction is a fresh fit without re-tokenising
    compact = up.compacted()
    assert compact.n_changed_ == 0 and compact.n_rows_ == len(live)
    assert set(compact.vocabulary_) == set(fresh.vocabulary_)
    assert np.allclose(compact.score(["石墨烯", "焊接"]), fresh.score(["石墨烯", "焊接"]), rtol=1e-6)


def test_bm25_after_updates_equals_bm25s_on_the_live_documents() -> None:
    rng = random.Random(11)
    first, added = random_corpus(rng, 50), random_corpus(rng, 10, extra=("sic",))
    up = TermIndex("bm25").fit(first).updated(add=added, remove=range(0, 50, 7))
    live = [d for i, d in enumerate([*first, *added]) if i % 7 or i >= 50]
    ref = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    ref.index(live, show_progress=False)
    rows = np.flatnonzero(up.alive_)
    for query in (["焊接", "sic"], ["电池", "bms", "bms"]):
        assert np.allclose(up.score(query)[rows], ref.get_scores(query), rtol=1e-5, atol=1e-6)


def test_term_index_delta_saves_beside_its_base(tmp_path) -> None:
    rng = random.Random(3)
    ix = TermIndex("tfidf").fit(random_corpus(rng, 30))
    ix.save(tmp_path, "t")
    up = ix.updated(add=[["石墨烯", "焊接"]], remove=[2])
    (tmp_path / "d").mkdir()
    up.save_delta(tmp_path / "d", "t")
    again = TermIndex.load(tmp_path, "t", delta=tmp_path / "d")
    for query in (["石墨烯"], ["焊接", "激光"]):
        assert np.array_equal(again.score(query), up.score(query))
    # the delta is small: no copy of the base's counts
    assert (tmp_path / "d" / "t.npz").stat().st_size < (tmp_path / "t.npz").stat().st_size
    other = TermIndex("tfidf").fit(random_corpus(rng, 5))
    (tmp_path / "other").mkdir()
    other.save(tmp_path / "other", "t")
    with pytest.raises(IndexStateError, match="another base"):
        TermIndex.load(tmp_path / "other", "t", delta=tmp_path / "d")
    with pytest.raises(IndexError):
        ix.updated(remove=[999])


# -- ExpertIndex on the demo corpus -----------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_fit(tokenizer) -> tuple[list[Expert], ExpertIndex]:
    experts = demo_experts()
    return experts, ExpertIndex().fit(experts[:-3], tokenizer)


def changed_corpus(experts: list[Expert]) -> tuple[list[Expert], list[Expert], list[str]]:
    """3 new experts, 1 edited, 2 deleted: the upserts, the removed ids and the final corpus."""
    base = experts[:-3]
    edited = Expert.from_dict({**base[5].to_dict(), "bio": base[5].bio + " 激光焊接 真空保温杯",
                               "research_fields": [*base[5].research_fields, "锂电池回收"]})
    removed = [base[7].id, base[20].id]
    final = [edited if e.id == edited.id else e for e in experts if e.id not in removed]
    return final, [*experts[-3:], edited], removed


def test_an_updated_expert_index_equals_a_full_rebuild(demo_fit, tokenizer) -> None:
    experts, index = demo_fit
    final, upserts, removed = changed_corpus(experts)
    t0 = time.perf_counter()
    up = index.updated(upserts, removed, tokenizer)
    elapsed = time.perf_counter() - t0
    full = ExpertIndex().fit(final, tokenizer)
    # exactly the same experts, with the same records
    pos = up.positions()
    assert sorted(pos) == sorted(full.expert_ids_) and up.n_experts == full.n_experts
    assert [up.digests_[pos[i]] for i in full.expert_ids_] == full.digests_
    assert up.live_digests() == {e.id: expert_digest(e) for e in final}  # nothing stale, nothing missing
    assert 0 < up.drift < 0.10 and elapsed < 1.0
    order = np.asarray([pos[i] for i in full.expert_ids_])
    overlaps = []
    plain = dict(full.weights, lsa=0.0)
    for demand in demo_demands():
        q = query_of(demand, tokenizer)
        a, b = up.score(q), full.score(q)
        for name in LEXICAL:  # BM25 and TF-IDF signals: exact up to float32 rounding
            same = np.allclose(a.signals[name][order], b.signals[name], rtol=1e-5, atol=1e-6)
            assert same, (demand.id, name)
        # without the LSA signal the rankings are the full rebuild's, in order
        assert top_ids(up, up.score(q, plain)) == top_ids(full, full.score(q, plain)), demand.id
        overlaps.append(len(set(top_ids(up, a)) & set(top_ids(full, b))) / 10)
    # with it, the documented tolerance: top-10 lists overlap >= 90% on average (new documents are
    # projected on the LSA basis fitted before; a refitted basis moves the semantic signal)
    assert np.mean(overlaps) >= 0.9, overlaps


def test_positions_and_the_records_by_position_follow_updates_without_a_full_pass(demo_fit, tokenizer) -> None:
    experts, index = demo_fit
    final, upserts, removed = changed_corpus(experts)
    by_id = {e.id: e for e in experts[:-3]}
    aligned = index.align(by_id)
    new = index.updated(upserts, removed, tokenizer)
    fresh_positions = {new.expert_ids_[i]: int(i) for i in np.flatnonzero(new.expert_alive_)}
    assert dict(new.positions()) == fresh_positions  # the cache carried over from `index`
    with pytest.raises(TypeError):
        new.positions()["X"] = 1  # type: ignore[index]  # read-only
    # realign (the old alignment plus the upserts' records) equals align over every record
    assert new.realign(index, aligned, {e.id: e for e in upserts}) == new.align({e.id: e for e in final})
    compact = new.compacted()
    assert dict(compact.positions()) == {e: i for i, e in enumerate(compact.expert_ids_)}
    with pytest.raises(IndexStateError):
        compact.realign(index, aligned, {e.id: e for e in upserts})


def test_compaction_is_a_full_rebuild_without_tokenising(demo_fit, tokenizer) -> None:
    experts, index = demo_fit
    final, upserts, removed = changed_corpus(experts)
    compact = index.updated(upserts, removed, tokenizer).compacted()
    full = ExpertIndex().fit(final, tokenizer)
    assert compact.expert_ids_ == full.expert_ids_ and compact.drift == 0.0
    assert compact.base_id_ != index.base_id_
    agree = 0
    for demand in demo_demands():
        q = query_of(demand, tokenizer)
        a, b = compact.score(q), full.score(q)
        for name in LEXICAL:
            assert np.allclose(a.signals[name], b.signals[name], rtol=1e-5, atol=1e-6), (demand.id, name)
        agree += top_ids(compact, a) == top_ids(full, b)
    assert agree >= 0.9 * len(demo_demands())


def test_updates_with_nothing_new_return_the_same_index(demo_fit, tokenizer) -> None:
    experts, index = demo_fit
    assert index.updated(experts[:5], ["no-such-id"], tokenizer) is index
    with pytest.raises(ValueError, match="string"):
        index.updated("X0001", [], tokenizer)


# -- the engine: visible at once, saved as a delta ------------------------------------------------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory, tokenizer):
    """A demo database with its saved index, built once; each test works on a copy."""
    folder = tmp_path_factory.mktemp("demo-db")
    e = Engine(make_settings(folder), tokenizer=tokenizer)
    e.load_demo()
    e.ensure_index()
    e.close()
    return folder


@pytest.fixture()
def engine_copy(demo_store, tmp_path, tokenizer):
    shutil.copytree(demo_store, tmp_path / "db")
    engines: list[Engine] = []

    def make(**kw) -> Engine:
        e = Engine(make_settings(tmp_path / "db", **kw), tokenizer=tokenizer)
        engines.append(e)
        return e

    yield make
    for e in engines:
        e.close()


GRAPHENE = Expert.from_dict({"id": "N1", "name": "测试专家", "institution": "某大学",
                             "research_fields": ["石墨烯散热膜", "导热界面材料"]})


def test_a_created_expert_is_found_at_once_and_saved_as_a_delta(engine_copy) -> None:
    engine = engine_copy()
    base_id = engine.ensure_index().index.base_id_
    t0 = time.perf_counter()
    engine.upsert_experts([GRAPHENE])
    matches = engine.match("石墨烯散热膜的导热性能", top_k=3)
    assert time.perf_counter() - t0 < 1.0
    assert matches[0].expert.id == "N1" and "石墨烯" in "".join(matches[0].explanation.terms)
    assert engine.ensure_index().index.base_id_ == base_id, "updated, not rebuilt"
    # on disk: the base untouched, the change in a delta folder named by state.json
    state = json.loads((engine.index_dir / "state.json").read_text(encoding="utf-8"))
    assert state["delta"] and (engine.index_dir / state["delta"]).is_dir()
    assert state["data_version"] == engine.store.data_version
    saved = ExpertIndex.load(engine.index_dir)
    assert saved.base_id_ == base_id and "N1" in saved.positions()
    # another process opening the database uses the saved index as it is
    other = engine_copy()
    loaded = other.ensure_index()
    assert loaded.index.base_id_ == base_id and other.match("石墨烯散热膜", top_k=1)[0].expert.id == "N1"


def test_edits_and_deletes_are_visible_at_once(engine_copy) -> None:
    engine = engine_copy()
    engine.upsert_experts([GRAPHENE])
    edited = Expert.from_dict({**GRAPHENE.to_dict(), "research_fields": ["茶园病虫害绿色防控"]})
    engine.upsert_experts([edited])
    assert all(m.expert.id != "N1" for m in engine.match("石墨烯散热膜", top_k=10))
    # The ranking votes with every matching document, so an expert with several tea-pest documents
    # may lead; the edited expert must be among the first few, with the edited record.
    top = {m.expert.id: m.expert for m in engine.match("茶园病虫害绿色防控技术", top_k=3)}
    assert "N1" in top and top["N1"].research_fields == ("茶园病虫害绿色防控",)
    engine.delete_expert("N1")
    assert all(m.expert.id != "N1" for m in engine.match("茶园病虫害绿色防控技术", top_k=50))
    assert "N1" not in ExpertIndex.load(engine.index_dir).positions()


def test_changes_made_by_another_process_are_picked_up_incrementally(engine_copy) -> None:
    serving, writer = engine_copy(), engine_copy()
    base_id = serving.ensure_index().index.base_id_
    writer.store.upsert_experts([GRAPHENE])  # a write that bypasses the serving engine's index
    assert serving.match("石墨烯散热膜", top_k=1)[0].expert.id == "N1"
    assert serving.ensure_index().index.base_id_ == base_id


def test_start_up_reads_whole_only_the_records_whose_stored_digest_differs(engine_copy, monkeypatch) -> None:
    engine_copy().ensure_index()  # the saved index, in step with the database
    writer = engine_copy()
    first_id = next(writer.store.iter_expert_cards())[0].id
    edited = Expert.from_dict({**writer.store.get_expert(first_id).to_dict(), "research_fields": ["石墨烯散热膜"]})
    writer.store.upsert_experts([edited, GRAPHENE])  # another process: one edit, one new expert
    # A row whose digest a foreign write left empty is read whole, and re-indexed only if it changed.
    blank = next(e for e, _ in writer.store.iter_expert_cards() if e.id not in (edited.id, "N1"))
    writer.store.db.execute("UPDATE experts SET digest = NULL WHERE id = ?", [blank.id])
    writer.store.db.conn.commit()

    starting = engine_copy()
    read: list[str] = []
    real = starting.store.get_experts
    monkeypatch.setattr(starting.store, "get_experts", lambda ids: (read.extend(ids), real(ids))[1])
    indexed: list[str] = []
    index = starting.live.load_saved()
    real_updated = type(index).updated
    monkeypatch.setattr(type(index), "updated",
                        lambda self, up, rm, tok: (indexed.extend(e.id for e in up), real_updated(self, up, rm, tok))[1])
    loaded = starting.ensure_index()
    assert sorted(read) == sorted([edited.id, "N1", blank.id])
    assert sorted(indexed) == sorted([edited.id, "N1"])
    # the cards are what the whole records give, and matching sees the edit
    whole = {e.id: e for e in starting.store.iter_experts()}
    assert all(c is None or c == card(whole[c.id]) for c in loaded.experts)
    assert {m.expert.id for m in starting.match("石墨烯散热膜", top_k=3)} >= {edited.id, "N1"}


def test_every_write_keeps_the_stored_digest_and_an_old_database_gets_them(tmp_path) -> None:
    store = Store(tmp_path / "m.db")
    store.upsert_experts([GRAPHENE, *demo_experts()[:5]])
    store.upsert_experts([Expert.from_dict({**GRAPHENE.to_dict(), "bio": "改过的简介"})])
    for c, digest in store.iter_expert_cards():
        assert digest == expert_digest(store.get_expert(c.id))
    # a database of schema 4 (no digest column) gets the column filled when it is opened
    store.db.execute("ALTER TABLE experts DROP COLUMN digest")
    store.db.execute("PRAGMA user_version = 4")
    store.db.conn.commit()
    store.close()
    reopened = Store(tmp_path / "m.db")
    pairs = list(reopened.iter_expert_cards())
    assert len(pairs) == 6 and all(d == expert_digest(reopened.get_expert(c.id)) for c, d in pairs)
    reopened.close()


def test_drift_past_the_threshold_compacts(engine_copy, tokenizer) -> None:
    engine = engine_copy(index_max_drift=0.0)
    base_id = engine.ensure_index().index.base_id_
    engine.upsert_experts([GRAPHENE])
    index = engine.ensure_index().index
    assert index.base_id_ != base_id and index.drift == 0.0
    assert engine.match("石墨烯散热膜", top_k=1)[0].expert.id == "N1"
    assert ExpertIndex.load(engine.index_dir).base_id_ == index.base_id_
    assert not list(engine.index_dir.glob("delta-*"))


def test_a_saved_index_of_an_older_format_is_rebuilt(engine_copy) -> None:
    engine = engine_copy()
    meta = engine.index_dir / "meta.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    meta.write_text(json.dumps({**data, "format_version": 1}), encoding="utf-8")
    with pytest.raises(IndexStateError, match="rebuild it with `matcher index`"):
        ExpertIndex.load(engine.index_dir)
    assert engine.match("不锈钢保温杯激光焊接", top_k=1)
    assert ExpertIndex.load(engine.index_dir).base_id_ != data["base_id"]


def test_other_parameters_mean_a_rebuild(engine_copy) -> None:
    base_id = engine_copy().ensure_index().index.base_id_
    assert engine_copy(bm25_k1=1.5).ensure_index().index.base_id_ != base_id
