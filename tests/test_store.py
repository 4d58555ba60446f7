"""The SQLite store on a real file: migrations, upserts, transactions, the benchmark's shape."""

from __future__ import annotations

import json

import pytest

from matcher.errors import NotFoundError
from matcher.models import Demand, Expert
from matcher.store import MIGRATIONS, Store

from .conftest import BENCH


def expert(i: str, **kw) -> Expert:
    return Expert.from_dict({"id": i, "name": f"专家{i}", "research_fields": "激光焊接", **kw})


def test_migrations_set_the_schema_version(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    assert s.schema_version == len(MIGRATIONS)
    assert {"experts", "demands", "meta", "feedback"} <= set(s.db.table_names())
    s.close()
    # reopening does not re-run them
    s2 = Store(tmp_path / "a.db")
    assert s2.schema_version == len(MIGRATIONS)
    s2.close()


def test_the_team_migration_keeps_an_older_database(tmp_path) -> None:
    """A database of schema 5 (before team recommendation) opens, migrates and keeps its demands,
    which are not marked as needing a team; the flag then round-trips."""
    import sqlite_utils

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    for version, step in enumerate(MIGRATIONS[:5], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {version}")
    db["demands"].insert({"id": "D1", "title": "焊缝发黑", "keywords": "[]", "status": "new",
                          "avoid_institutions": "[]", "avoid_experts": "[]", "created_at": "2026-01-01"})
    db.conn.commit()
    db.close()
    s = Store(path)
    assert s.schema_version == len(MIGRATIONS) >= 6
    assert s.get_demand("D1").needs_team is False
    assert {"team", "aspects"} <= set(s.db["matches"].columns_dict)
    assert "team_size" in s.db["batch_runs"].columns_dict
    s.db.execute("PRAGMA user_version = 5")  # the step again (a renumbered merge): nothing breaks
    s.db.conn.commit()
    s.close()
    s = Store(path)
    assert s.schema_version == len(MIGRATIONS) and s.get_demand("D1").needs_team is False
    s.upsert_demands([Demand(id="D2", title="组团", needs_team=True)])
    assert s.get_demand("D2").needs_team is True and s.get_demand("D2") == Demand(
        id="D2", title="组团", needs_team=True, created_at=s.get_demand("D2").created_at)
    s.close()


def test_upsert_counts_and_data_version(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    assert s.upsert_experts([expert("1"), expert("2")]).inserted == 2
    v = s.data_version
    same = s.upsert_experts([expert("1")])
    assert (same.inserted, same.updated, same.unchanged) == (0, 0, 1)
    assert s.data_version == v, "an unchanged import must not make the index stale"
    changed = s.upsert_experts([expert("1", bio="新简介")])
    assert changed.updated == 1 and s.data_version == v + 1
    assert s.get_expert("1").bio == "新简介"
    s.delete_expert("2")
    assert s.count_experts() == 1
    with pytest.raises(NotFoundError):
        s.get_expert("2")


def test_a_failed_transaction_writes_nothing(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    s.upsert_experts([expert("1")])
    with pytest.raises(RuntimeError), s.transaction():
        s.upsert_experts([expert("2"), expert("3")])
        raise RuntimeError("crash mid-import")
    assert [e.id for e in s.iter_experts()] == ["1"]


def test_round_trip_of_every_field(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    e = Expert.from_dict({
        "id": "X1", "name": "李四", "title": "教授", "institution": "浙江大学", "region": "浙江省杭州市",
        "research_fields": ["激光焊接", "真空保温"], "bio": "简介",
        "documents": [{"kind": "patent", "title": "一种保温杯", "keywords": ["保温杯"], "abstract": "摘要", "year": 2021}],
        "tags": ["金桥工程"], "contact": {"phone": "0571-0000", "email": "x@example.org"},
    })
    s.upsert_experts([e])
    assert s.get_expert("X1") == e
    d = Demand.from_dict({"id": "D1", "title": "焊接", "keywords": "焊接、真空", "avoid_experts": ["X1"]})
    s.upsert_demands([d])
    assert s.get_demand("D1") == d
    assert s.get_demand("D1").keywords == ("焊接", "真空")


def test_hostile_strings_are_data_not_sql(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    evil = "'); DROP TABLE experts;--"
    s.upsert_experts([expert(evil, name=evil)])
    assert s.get_expert(evil).name == evil
    found, total = s.search_experts(evil)
    assert total == 1 and found[0].id == evil
    assert "experts" in s.db.table_names()


def test_feedback_is_stored(tmp_path) -> None:
    s = Store(tmp_path / "a.db")
    fid = s.add_feedback("D1", "X1", "accepted", "好")
    assert s.list_feedback("D1")[0]["id"] == fid
    with pytest.raises(ValueError):
        s.add_feedback("D1", "X1", "maybe")


def test_benchmark_shape_imports_as_is(tmp_path) -> None:
    line = {"id": "E0002", "research_fields": "天然药物化学和分析化学",
            "documents": [{"title": "荧光探针", "keywords": ["二氧化硫衍生物"], "abstract": "摘要"}]}
    e = Expert.from_dict(line)
    assert e.research_fields == ("天然药物化学和分析化学",) and e.documents[0].kind == "paper"
    if BENCH.exists():
        experts = [Expert.from_dict(json.loads(x)) for x in (BENCH / "experts.jsonl").open(encoding="utf-8")]
        s = Store(tmp_path / "b.db")
        assert s.upsert_experts(experts).inserted == len(experts) == 1033


def test_an_unreadable_database_is_a_clear_error_and_is_left_as_it_was(tmp_path) -> None:
    from matcher.errors import StoreError

    bad = tmp_path / "bad.db"
    garbage = b"this is not sqlite" * 100
    bad.write_bytes(garbage)
    with pytest.raises(StoreError, match="cannot open the database") as exc:
        Store(bad)
    assert str(bad) in exc.value.message  # it names the file
    assert bad.read_bytes() == garbage  # nothing was written over it (no migration, no WAL switch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]
