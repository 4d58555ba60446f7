"""Schemathesis over the whole OpenAPI schema of a real uvicorn server: no 5xx, every response as
documented. Bounded for CI (a few hundred cases, derandomised so a failure replays); writes carry a
valid API key so the write paths (incremental index updates included) are fuzzed too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api import create_app
from matcher.config import Settings
from matcher.engine import Engine
from matcher.models import Expert

from .test_load import expert as load_expert
from .test_load import serve_in_thread

KEY = "fuzz-test-key-00000001"
EXAMPLES = 20  # per operation and generation mode
CASES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Iterator[schemathesis.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    cfg = Settings(db=tmp / "fuzz.db", api_keys=(KEY,))
    engine = Engine(cfg, tokenizer=tokenizer)
    engine.upsert_experts(Expert.from_dict(load_expert(i)) for i in range(12))
    engine.ensure_index()
    with serve_in_thread(create_app(cfg, engine=engine)) as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")
    engine.close()
    total = sum(CASES.values())
    print(f"\n[fuzz] {total} cases over {len(CASES)} operations; statuses {dict(sorted(STATUSES.items()))}")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_response_as_documented(case: schemathesis.Case) -> None:
    CASES[case.operation.label] += 1
    response = case.call_and_validate(
        headers={"X-API-Key": KEY},
        checks=[not_a_server_error, response_schema_conformance],
        timeout=60,
    )
    STATUSES[response.status_code] += 1
